/* test_file_sink.c: the file connector alone, driven through a scripted gw_sink_env on a
 * real itr_loop: exact line format, UTF-8 vs base64, fsync policies, rotation and pruning,
 * reopening, and write failures (RLIMIT_FSIZE -> EFBIG) that keep the deliveries, truncate
 * partial lines and recover.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "connector.h"
#include "file_format.h"

extern const gw_connector gw_file_connector;

#define WALL_NS 1795418179123456789ull /* 2026-11-23T07:16:19.123456789Z */
#define MAXD    10000

/* ---- a scripted environment ---- */

struct fake_env {
    gw_sink_env env;
    gw_delivery *done[MAXD];
    gw_result result[MAXD];
    uint64_t done_at[MAXD];
    size_t ndone;
    unsigned errors;
    char last_stage[32];
    char last_error[512];
    unsigned ready_calls;
};

static void fe_complete(gw_sink_env *env, gw_delivery *d, gw_result r, const char *reason)
{
    struct fake_env *fe = (struct fake_env *)env;
    (void)reason;
    assert_true(fe->ndone < MAXD);
    fe->done[fe->ndone] = d;
    fe->result[fe->ndone] = r;
    fe->done_at[fe->ndone] = itr_now_ns();
    fe->ndone++;
}

static void fe_error(gw_sink_env *env, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fe_error(gw_sink_env *env, const char *stage, const char *fmt, ...)
{
    struct fake_env *fe = (struct fake_env *)env;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fe->last_error, sizeof(fe->last_error), fmt, ap);
    va_end(ap);
    snprintf(fe->last_stage, sizeof(fe->last_stage), "%s", stage);
    fe->errors++;
}

static void fe_log(gw_sink_env *env, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fe_log(gw_sink_env *env, int level, const char *fmt, ...)
{
    (void)env;
    (void)level;
    (void)fmt;
}

static void fe_ready(gw_sink_env *env)
{
    ((struct fake_env *)env)->ready_calls++;
}

static void fe_init(struct fake_env *fe, itr_loop *loop)
{
    memset(fe, 0, sizeof(*fe));
    fe->env.name = "test: sinks.archive";
    fe->env.loop = loop;
    fe->env.complete = fe_complete;
    fe->env.error = fe_error;
    fe->env.log = fe_log;
    fe->env.ready = fe_ready;
}

/* Run the loop until fe has `want` completions or timeout_ms passes. */
static void run_until_done(itr_loop *loop, struct fake_env *fe, size_t want, int timeout_ms)
{
    uint64_t end = itr_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (fe->ndone < want && itr_now_ns() < end)
        itr_loop_run_once(loop, 10);
}

static void run_for(itr_loop *loop, int ms)
{
    uint64_t end = itr_now_ns() + (uint64_t)ms * 1000000u;
    while (itr_now_ns() < end)
        itr_loop_run_once(loop, 5);
}

/* ---- messages ---- */

struct tmsg {
    gw_msg m;
    gw_delivery d;
};

static void tmsg_init(struct tmsg *t, const char *topic, const void *body, size_t len, uint32_t seq,
                      int reliable)
{
    memset(t, 0, sizeof(*t));
    t->m.recv_wall_ns = WALL_NS;
    t->m.recv_mono_ns = itr_now_ns();
    t->m.shard_name = "alpha";
    t->m.shard_name_len = 5;
    memset(t->m.peer_hex, 'a', 64);
    t->m.peer_hex[64] = 0;
    t->m.seq = seq;
    t->m.intent = reliable ? ITR_INTENT_RELIABLE : ITR_INTENT_REALTIME;
    t->m.topic = topic;
    t->m.topic_len = (uint16_t)strlen(topic);
    t->m.body = body;
    t->m.body_len = (uint32_t)len;
    t->d.msg = &t->m;
    t->d.reliable = (uint8_t)reliable;
}

/* ---- temporary directories and files ---- */

static char tmpdir[256];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_file_sink.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char p[600];
            snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(tmpdir);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    if (len)
        *len = got;
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static cJSON *conf_for(const char *extra_json)
{
    char txt[1024];
    snprintf(txt, sizeof(txt), "{\"type\":\"file\",\"path\":\"%s/out.jsonl\"%s%s}", tmpdir,
             extra_json[0] ? "," : "", extra_json);
    cJSON *c = cJSON_Parse(txt);
    assert_non_null(c);
    return c;
}

static void out_path(char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/out.jsonl", tmpdir);
}

struct rig {
    itr_loop *loop;
    struct fake_env fe;
    gw_sink *s;
    cJSON *conf;
};

static void rig_open(struct rig *r, const char *extra)
{
    assert_int_equal(itr_loop_new(&r->loop), 0);
    fe_init(&r->fe, r->loop);
    r->conf = conf_for(extra);
    char err[GW_ERR_LEN] = "";
    int rc = gw_file_connector.open(&r->s, r->conf, &r->fe.env, err, sizeof(err));
    if (rc)
        fail_msg("open: %s", err);
}

static void rig_close(struct rig *r)
{
    gw_file_connector.close(r->s);
    cJSON_Delete(r->conf);
    itr_loop_free(r->loop);
}

static size_t submit_all(struct rig *r, struct tmsg *t, size_t n)
{
    gw_delivery *ds[MAXD];
    for (size_t i = 0; i < n; i++)
        ds[i] = &t[i].d;
    return gw_file_connector.submit(r->s, ds, n);
}

/* ---- format ---- */

static void test_format_exact(void **state)
{
    (void)state;
    struct tmsg t;
    tmsg_init(&t, "pose", "{\"x\":1}", 7, 42, 1);
    char line[1024];
    struct file_ts_cache tc = {0};
    size_t n = gw_file_format_line(line, &t.m, FILE_PAYLOAD_AUTO, &tc);
    line[n] = 0;
    assert_string_equal(line,
                        "{\"ts\":\"2026-11-23T07:16:19.123456789Z\",\"shard\":\"alpha\",\"peer\":\""
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
                        "\"topic\":\"pose\",\"seq\":42,\"intent\":\"reliable\",\"payload\":"
                        "\"{\\\"x\\\":1}\"}\n");
    assert_true(n <= gw_file_line_max(&t.m, FILE_PAYLOAD_AUTO));

    /* realtime, control characters escaped, multi-byte UTF-8 kept as is */
    static const char body[] = "a\nb\t\"c\\\x01 \xC3\xA9\xE2\x82\xAC";
    tmsg_init(&t, "s/t", body, sizeof(body) - 1, 4294967295u, 0);
    t.m.recv_wall_ns = 1000000007ull; /* 1970-01-01T00:00:01.000000007Z */
    n = gw_file_format_line(line, &t.m, FILE_PAYLOAD_AUTO, &tc);
    line[n] = 0;
    assert_non_null(strstr(line, "\"ts\":\"1970-01-01T00:00:01.000000007Z\""));
    assert_non_null(strstr(line, "\"seq\":4294967295,\"intent\":\"realtime\""));
    assert_non_null(
        strstr(line, "\"payload\":\"a\\nb\\t\\\"c\\\\\\u0001 \xC3\xA9\xE2\x82\xAC\"}\n"));
    cJSON *j = cJSON_Parse(line);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "payload")->valuestring, body);
    cJSON_Delete(j);
}

static void test_format_binary(void **state)
{
    (void)state;
    static const uint8_t bin[] = {0xff, 0x00, 0x80, 'A'};
    struct tmsg t;
    tmsg_init(&t, "raw", bin, sizeof(bin), 1, 1);
    char line[1024];
    struct file_ts_cache tc = {0};
    size_t n = gw_file_format_line(line, &t.m, FILE_PAYLOAD_AUTO, &tc);
    line[n] = 0;
    assert_non_null(strstr(line, "\"payload\":\"/wCAQQ==\",\"payload_encoding\":\"base64\"}\n"));

    /* utf8 mode: invalid bytes become U+FFFD, NUL is escaped */
    n = gw_file_format_line(line, &t.m, FILE_PAYLOAD_UTF8, &tc);
    line[n] = 0;
    assert_non_null(strstr(line, "\"payload\":\"\xEF\xBF\xBD\\u0000\xEF\xBF\xBD"
                                 "A\"}\n"));
    assert_null(strstr(line, "payload_encoding"));

    /* base64 mode: even text is encoded */
    tmsg_init(&t, "raw", "hi", 2, 1, 1);
    n = gw_file_format_line(line, &t.m, FILE_PAYLOAD_BASE64, &tc);
    line[n] = 0;
    assert_non_null(strstr(line, "\"payload\":\"aGk=\",\"payload_encoding\":\"base64\"}\n"));

    /* empty body */
    tmsg_init(&t, "raw", "", 0, 1, 1);
    n = gw_file_format_line(line, &t.m, FILE_PAYLOAD_AUTO, &tc);
    line[n] = 0;
    assert_non_null(strstr(line, "\"payload\":\"\"}\n"));
}

static void test_utf8_validation(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int valid;
    } cases[] = {
        {"plain", 1},
        {"\xC3\xA9", 1},         /* é */
        {"\xF0\x9F\x98\x80", 1}, /* U+1F600 */
        {"\xC0\xAF", 0},         /* overlong '/' */
        {"\xE0\x80\xAF", 0},     /* overlong */
        {"\xED\xA0\x80", 0},     /* surrogate */
        {"\xF4\x90\x80\x80", 0}, /* > U+10FFFF */
        {"\xC3", 0},             /* truncated */
        {"\x80", 0},             /* lone continuation */
        {"\xEF\xBF\xBD", 1},     /* U+FFFD itself */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const uint8_t *p = (const uint8_t *)cases[i].s;
        if (gw_file_utf8_valid(p, strlen(cases[i].s)) != cases[i].valid)
            fail_msg("case %zu", i);
    }
    assert_true(gw_file_json_plain((const uint8_t *)"abc \xC3\xA9", 6));
    assert_false(gw_file_json_plain((const uint8_t *)"a\"b", 3));
    assert_false(gw_file_json_plain((const uint8_t *)"a\\b", 3));
    assert_false(gw_file_json_plain((const uint8_t *)"a\nb", 3));
    assert_true(gw_file_rotated_suffix("20261123T071619Z.1"));
    assert_true(gw_file_rotated_suffix("20261123T071619Z.12"));
    assert_false(gw_file_rotated_suffix("20261123T071619Z.0"));
    assert_false(gw_file_rotated_suffix("20261123T071619Z."));
    assert_false(gw_file_rotated_suffix("20261123T071619Z.1x"));
    assert_false(gw_file_rotated_suffix("2026112xT071619Z.1"));
    assert_false(gw_file_rotated_suffix("tmp"));
}

/* ---- validate ---- */

static void expect_invalid(const char *json, const char *msg)
{
    cJSON *c = cJSON_Parse(json);
    assert_non_null(c);
    char err[GW_ERR_LEN] = "";
    assert_int_not_equal(gw_file_connector.validate(c, "gw.json: sinks.archive", err, sizeof(err)),
                         0);
    assert_string_equal(err, msg);
    cJSON_Delete(c);
}

static void test_validate(void **state)
{
    (void)state;
    cJSON *ok = cJSON_Parse("{\"type\":\"file\",\"required\":true,\"queue_messages\":10,"
                            "\"path\":\"/x/y\",\"fsync\":\"interval\",\"fsync_interval_ms\":5,"
                            "\"rotate_bytes\":0,\"max_files\":3,\"payload\":\"base64\","
                            "\"dir_mode\":\"0750\",\"file_mode\":\"0600\"}");
    char err[GW_ERR_LEN] = "";
    assert_int_equal(gw_file_connector.validate(ok, "w", err, sizeof(err)), 0);
    cJSON_Delete(ok);
    expect_invalid("{\"type\":\"file\"}",
                   "gw.json: sinks.archive.path: missing (expected a file path string)");
    expect_invalid("{\"path\":\"\"}",
                   "gw.json: sinks.archive.path: expected a non-empty file path, got \"\"");
    expect_invalid("{\"path\":\"/tmp/\"}", "gw.json: sinks.archive.path: expected a file path, "
                                           "not a directory, got \"/tmp/\"");
    expect_invalid("{\"path\":\"a\",\"fsync\":\"sometimes\"}",
                   "gw.json: sinks.archive.fsync: expected \"batch\", \"interval\" or "
                   "\"never\", got \"sometimes\"");
    expect_invalid("{\"path\":\"a\",\"fsync_interval_ms\":0}",
                   "gw.json: sinks.archive.fsync_interval_ms: expected an integer 1..3600000, "
                   "got 0");
    expect_invalid("{\"path\":\"a\",\"rotate_bytes\":-1}",
                   "gw.json: sinks.archive.rotate_bytes: expected an integer >= 0 (0: never "
                   "rotate), got -1");
    expect_invalid("{\"path\":\"a\",\"max_files\":1.5}",
                   "gw.json: sinks.archive.max_files: expected an integer 0..100000 (0: keep "
                   "all), got 1.5");
    expect_invalid("{\"path\":\"a\",\"payload\":\"hex\"}",
                   "gw.json: sinks.archive.payload: expected \"auto\", \"utf8\" or \"base64\", "
                   "got \"hex\"");
    expect_invalid("{\"path\":\"a\",\"file_mode\":\"0400\"}",
                   "gw.json: sinks.archive.file_mode: expected an octal mode string "
                   "\"0600\"..\"0777\" with owner rw, got \"0400\"");
    expect_invalid("{\"path\":\"a\",\"dir_mode\":750}",
                   "gw.json: sinks.archive.dir_mode: expected an octal mode string "
                   "\"0700\"..\"0777\" with owner rwx, got 750");
    expect_invalid("{\"path\":\"a\",\"colour\":1}",
                   "gw.json: sinks.archive.colour: unknown key (expected one of: path, fsync, "
                   "fsync_interval_ms, rotate_bytes, max_files, payload, dir_mode, file_mode)");
}

/* ---- writing ---- */

static void test_batch_policy_lines(void **state)
{
    (void)state;
    static struct rig r;
    rig_open(&r, "\"fsync\":\"batch\"");
    static struct tmsg t[100];
    char big[600];
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 100; i++) {
        if (i == 50)
            tmsg_init(&t[i], "big", big, sizeof(big), (uint32_t)i, 1); /* direct iovec path */
        else
            tmsg_init(&t[i], "pose", "{}", 2, (uint32_t)i, i % 2);
    }
    assert_int_equal(submit_all(&r, t, 100), 100);
    assert_int_equal(r.fe.ndone, 0); /* nothing completes before the batch is written */
    run_until_done(r.loop, &r.fe, 100, 5000);
    assert_int_equal(r.fe.ndone, 100);
    for (size_t i = 0; i < 100; i++) {
        assert_ptr_equal(r.fe.done[i], &t[i].d); /* completion order = write order */
        assert_int_equal(r.fe.result[i], GW_DURABLE);
    }
    char path[512];
    out_path(path, sizeof(path));
    size_t len;
    char *txt = slurp(path, &len);
    assert_non_null(txt);
    assert_int_equal(count_lines(txt), 100);
    /* each line is JSON with the right seq, in order */
    char *line = txt;
    for (int i = 0; i < 100; i++) {
        char *nl = strchr(line, '\n');
        *nl = 0;
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        assert_int_equal(cJSON_GetObjectItem(j, "seq")->valueint, i);
        if (i == 50)
            assert_int_equal(strlen(cJSON_GetObjectItem(j, "payload")->valuestring), 600);
        cJSON_Delete(j);
        line = nl + 1;
    }
    free(txt);
    gw_sink_status st = {0};
    gw_file_connector.status(r.s, &st);
    assert_int_equal(st.state, GW_SINK_UP);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(gw_file_connector.flush(r.s, itr_now_ns() + 1000000000u), 0);
    rig_close(&r);
}

static void test_interval_policy(void **state)
{
    (void)state;
    static struct rig r;
    rig_open(&r, "\"fsync\":\"interval\",\"fsync_interval_ms\":300");
    static struct tmsg t[4];
    tmsg_init(&t[0], "a", "1", 1, 1, 1);
    tmsg_init(&t[1], "a", "2", 1, 2, 0);
    tmsg_init(&t[2], "a", "3", 1, 3, 1);
    tmsg_init(&t[3], "a", "4", 1, 4, 0);
    uint64_t t0 = itr_now_ns();
    assert_int_equal(submit_all(&r, t, 4), 4);
    run_for(r.loop, 100);
    /* Realtime ones complete after the write, Reliable ones wait for the fsync. */
    assert_int_equal(r.fe.ndone, 2);
    assert_ptr_equal(r.fe.done[0], &t[1].d);
    assert_ptr_equal(r.fe.done[1], &t[3].d);
    char path[512];
    out_path(path, sizeof(path));
    char *txt = slurp(path, NULL);
    assert_int_equal(count_lines(txt), 4); /* all written */
    free(txt);
    run_until_done(r.loop, &r.fe, 4, 3000);
    assert_int_equal(r.fe.ndone, 4);
    assert_ptr_equal(r.fe.done[2], &t[0].d);
    assert_ptr_equal(r.fe.done[3], &t[2].d);
    assert_true(r.fe.done_at[2] - t0 >= 290ull * 1000000u);
    rig_close(&r);
}

static void test_never_policy_and_flush(void **state)
{
    (void)state;
    static struct rig r;
    rig_open(&r, "\"fsync\":\"never\"");
    static struct tmsg t[3];
    for (int i = 0; i < 3; i++)
        tmsg_init(&t[i], "a", "x", 1, (uint32_t)i, 1);
    assert_int_equal(submit_all(&r, t, 3), 3);
    /* flush writes without waiting for the loop */
    assert_int_equal(gw_file_connector.flush(r.s, itr_now_ns() + 1000000000u), 0);
    assert_int_equal(r.fe.ndone, 3);
    rig_close(&r);

    /* interval policy: flush fsyncs at once instead of waiting for the timer */
    rig_open(&r, "\"fsync\":\"interval\",\"fsync_interval_ms\":3600000");
    for (int i = 0; i < 3; i++)
        tmsg_init(&t[i], "a", "x", 1, (uint32_t)i, 1);
    assert_int_equal(submit_all(&r, t, 3), 3);
    run_for(r.loop, 20);
    assert_int_equal(r.fe.ndone, 0);
    assert_int_equal(gw_file_connector.flush(r.s, itr_now_ns() + 1000000000u), 0);
    assert_int_equal(r.fe.ndone, 3);
    rig_close(&r);
}

static size_t count_rotated(const char *prefix)
{
    DIR *d = opendir(tmpdir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix)) &&
            gw_file_rotated_suffix(e->d_name + strlen(prefix)))
            n++;
    closedir(d);
    return n;
}

static void test_rotation_and_reopen(void **state)
{
    (void)state;
    static struct rig r;
    rig_open(&r, "\"rotate_bytes\":1000,\"max_files\":3");
    static struct tmsg t[8][10];
    char path[512];
    out_path(path, sizeof(path));
    size_t total = 0;
    for (int b = 0; b < 8; b++) {
        for (int i = 0; i < 10; i++)
            tmsg_init(&t[b][i], "rot", "payload", 7, (uint32_t)(b * 10 + i), 1);
        assert_int_equal(submit_all(&r, t[b], 10), 10);
        total += 10;
        run_until_done(r.loop, &r.fe, total, 5000);
        assert_int_equal(r.fe.ndone, total);
    }
    /* each batch is ~2 KB: the file is rotated before every batch after the first; only the
     * newest 3 rotated files are kept */
    assert_int_equal(count_rotated("out.jsonl."), 3);
    char *txt = slurp(path, NULL);
    assert_int_equal(count_lines(txt), 10);
    assert_non_null(strstr(txt, "\"seq\":79,"));
    free(txt);
    assert_int_equal(r.fe.errors, 0);
    rig_close(&r);

    /* reopening appends to the current file, after cutting a partial last line */
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"partial", 9), 9);
    close(fd);
    rig_open(&r, "\"rotate_bytes\":0");
    static struct tmsg more[2];
    tmsg_init(&more[0], "after", "1", 1, 100, 1);
    tmsg_init(&more[1], "after", "2", 1, 101, 1);
    assert_int_equal(submit_all(&r, more, 2), 2);
    run_until_done(r.loop, &r.fe, 2, 5000);
    txt = slurp(path, NULL);
    assert_int_equal(count_lines(txt), 12);
    assert_null(strstr(txt, "partial"));
    assert_non_null(strstr(txt, "\"seq\":101,"));
    free(txt);
    rig_close(&r);
}

static void test_backpressure_ready(void **state)
{
    (void)state;
    static struct rig r;
    rig_open(&r, "\"fsync\":\"never\"");
    enum { N = 8192 + 100 };
    struct tmsg *t = calloc(N, sizeof(*t));
    gw_delivery **ds = calloc(N, sizeof(*ds));
    assert_non_null(t);
    for (size_t i = 0; i < N; i++) {
        tmsg_init(&t[i], "bp", "x", 1, (uint32_t)i, 0);
        ds[i] = &t[i].d;
    }
    size_t taken = gw_file_connector.submit(r.s, ds, N);
    assert_int_equal(taken, 8192); /* the rest is refused: the runtime keeps it queued */
    run_until_done(r.loop, &r.fe, taken, 5000);
    assert_int_equal(r.fe.ready_calls, 1); /* and offers it again after ready() */
    assert_int_equal(gw_file_connector.submit(r.s, ds + taken, N - taken), N - taken);
    assert_int_equal(gw_file_connector.flush(r.s, itr_now_ns() + 2000000000u), 0);
    rig_close(&r);
    free(t);
    free(ds);
}

/* RLIMIT_FSIZE makes the kernel refuse writes past a size with EFBIG (SIGXFSZ ignored),
 * like a full disk. Nothing may be completed, the partial line must go, and after the limit
 * is lifted every delivery is written exactly once. */
static void test_efbig_keeps_and_truncates(void **state)
{
    (void)state;
    signal(SIGXFSZ, SIG_IGN);
    static struct rig r;
    rig_open(&r, "\"fsync\":\"batch\"");
    char path[512];
    out_path(path, sizeof(path));
    static struct tmsg first[3], second[20];
    for (int i = 0; i < 3; i++)
        tmsg_init(&first[i], "ok", "before", 6, (uint32_t)i, 1);
    assert_int_equal(submit_all(&r, first, 3), 3);
    run_until_done(r.loop, &r.fe, 3, 5000);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    off_t good = st.st_size;

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)good + 300; /* mid-line of the next batch */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    for (int i = 0; i < 20; i++)
        tmsg_init(&second[i], "big", "after the limit", 15, (uint32_t)(100 + i), i % 2);
    assert_int_equal(submit_all(&r, second, 20), 20);
    run_for(r.loop, 300);
    assert_int_equal(r.fe.ndone, 3); /* nothing of the failed batch completed */
    assert_true(r.fe.errors >= 1);
    assert_string_equal(r.fe.last_stage, "write");
    assert_non_null(strstr(r.fe.last_error, "File too large"));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, good); /* cut back to the last complete line */
    gw_sink_status ss = {0};
    gw_file_connector.status(r.s, &ss);
    assert_int_equal(ss.state, GW_SINK_DOWN);
    assert_int_equal(ss.in_flight, 20);
    /* while failing, flush gives up at its deadline */
    assert_int_equal(gw_file_connector.flush(r.s, itr_now_ns() + 50000000u), ITR_ERR_WOULDBLOCK);

    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    run_until_done(r.loop, &r.fe, 23, 15000); /* retried with backoff */
    assert_int_equal(r.fe.ndone, 23);
    gw_file_connector.status(r.s, &ss);
    assert_int_equal(ss.state, GW_SINK_UP);
    char *txt = slurp(path, NULL);
    assert_int_equal(count_lines(txt), 23);
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof(key), "\"seq\":%d,", 100 + i);
        char *p = strstr(txt, key);
        assert_non_null(p);
        assert_null(strstr(p + 1, key)); /* exactly once */
    }
    free(txt);
    rig_close(&r);
}

static void test_open_failure(void **state)
{
    (void)state;
    itr_loop *loop;
    assert_int_equal(itr_loop_new(&loop), 0);
    struct fake_env fe;
    fe_init(&fe, loop);
    cJSON *c = cJSON_Parse("{\"type\":\"file\",\"path\":\"/proc/self/nonexistent/x.jsonl\"}");
    gw_sink *s = NULL;
    char err[GW_ERR_LEN] = "";
    assert_int_not_equal(gw_file_connector.open(&s, c, &fe.env, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "/proc/self/nonexistent"));
    cJSON_Delete(c);
    itr_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_exact),
        cmocka_unit_test(test_format_binary),
        cmocka_unit_test(test_utf8_validation),
        cmocka_unit_test(test_validate),
        cmocka_unit_test_setup_teardown(test_batch_policy_lines, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_interval_policy, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_never_policy_and_flush, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_rotation_and_reopen, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_backpressure_ready, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_efbig_keeps_and_truncates, setup_dir, teardown_dir),
        cmocka_unit_test(test_open_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
