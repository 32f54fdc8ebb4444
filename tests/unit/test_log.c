/* test_log.c: gateway/log.c: logfmt and JSON escaping, truncation, level filtering, one line
 * per write from many threads, redaction, and the per-key rate limiter with scripted time. */
#define _POSIX_C_SOURCE 200809L /* mkstemp, pread */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <intentra/error.h>

#include "log.h"

#define SEC 1000000000ull

static char line[GW_LOG_LINE_MAX];

static const char *fmt_logfmt(const gw_log_field *f, size_t n)
{
    gw_log_format_line(line, sizeof(line), GW_LOG_LOGFMT, 0, GW_LOG_INFO, "ev", f, n);
    return line;
}

static const char *fmt_json(const gw_log_field *f, size_t n)
{
    gw_log_format_line(line, sizeof(line), GW_LOG_JSON, 0, GW_LOG_INFO, "ev", f, n);
    return line;
}

static void test_logfmt_escaping(void **state)
{
    (void)state;
    gw_log_field f[] = {
        GW_F_STR("plain", "abc"),
        GW_F_STR("space", "a b"),
        GW_F_STR("quote", "say \"hi\""),
        GW_F_STR("eq", "k=v"),
        GW_F_STR("empty", ""),
        GW_F_STR("nl", "x\ny\tz"),
        GW_F_STR("utf8", "caf\xc3\xa9"),
        GW_F_STRN("bad",
                  "a\xff"
                  "b",
                  3),
        GW_F_STR("bs", "c:\\tmp"),
        GW_F_I64("neg", -42),
        GW_F_U64("big", UINT64_MAX),
        GW_F_BOOL("ok", 1),
        GW_F_STR("nul", NULL),
    };
    assert_string_equal(fmt_logfmt(f, sizeof(f) / sizeof(f[0])),
                        "level=info event=ev plain=abc space=\"a b\" quote=\"say \\\"hi\\\"\" "
                        "eq=\"k=v\" empty=\"\" nl=\"x\\ny\\tz\" utf8=caf\xc3\xa9 "
                        "bad=\"a\\xffb\" bs=\"c:\\\\tmp\" neg=-42 big=18446744073709551615 "
                        "ok=true nul=\"\"\n");
}

static void test_json_escaping(void **state)
{
    (void)state;
    gw_log_field f[] = {
        GW_F_STR("s", "a \"b\" \\ c"),    GW_F_STR("ctl", "\x01\n"), GW_F_STRN("bad", "\xc3(", 2),
        GW_F_STR("utf8", "\xe2\x82\xac"), GW_F_I64("i", -1),         GW_F_F64("f", 0.5),
        GW_F_F64("nan", 0.0 / 0.0),       GW_F_BOOL("b", 0),         GW_F_STR("bad key!", "v"),
    };
    assert_string_equal(fmt_json(f, sizeof(f) / sizeof(f[0])),
                        "{\"level\":\"info\",\"event\":\"ev\",\"s\":\"a \\\"b\\\" \\\\ c\","
                        "\"ctl\":\"\\u0001\\n\",\"bad\":\"\\ufffd(\",\"utf8\":\"\xe2\x82\xac\","
                        "\"i\":-1,\"f\":0.5,\"nan\":null,\"b\":false,\"bad_key_\":\"v\"}\n");
}

static void test_timestamp_and_levels(void **state)
{
    (void)state;
    gw_log_field f[] = {GW_F_U64("n", 1)};
    gw_log_format_line(line, sizeof(line), GW_LOG_LOGFMT, 1700000000123456789ull, GW_LOG_WARN, "x",
                       f, 1);
    assert_string_equal(line, "ts=2023-11-14T22:13:20.123456Z level=warn event=x n=1\n");
    gw_log_format_line(line, sizeof(line), GW_LOG_JSON, 1700000000123456789ull, GW_LOG_DEBUG, "x",
                       NULL, 0);
    assert_string_equal(line, "{\"ts\":\"2023-11-14T22:13:20.123456Z\",\"level\":\"debug\","
                              "\"event\":\"x\"}\n");

    gw_log_level l;
    gw_log_format fm;
    assert_int_equal(gw_log_level_parse("warn", &l), ITR_OK);
    assert_int_equal(l, GW_LOG_WARN);
    assert_int_equal(gw_log_level_parse("verbose", &l), ITR_ERR_INVALID);
    assert_int_equal(gw_log_format_parse("json", &fm), ITR_OK);
    assert_int_equal(fm, GW_LOG_JSON);
    assert_int_equal(gw_log_format_parse("text", &fm), ITR_ERR_INVALID);
    assert_string_equal(gw_log_level_name(GW_LOG_ERROR), "error");
}

static void test_truncation(void **state)
{
    (void)state;
    static char big[3 * GW_LOG_LINE_MAX];
    char small[128];
    memset(big, 'x', sizeof(big) - 1);
    big[100] = '"'; /* an escape near the start, so the cut happens inside a quoted value */
    gw_log_field f[] = {GW_F_STR("a", "1"), GW_F_STR("big", big), GW_F_STR("after", "y")};

    size_t n = gw_log_format_line(line, sizeof(line), GW_LOG_LOGFMT, 0, GW_LOG_INFO, "t", f, 3);
    assert_true(n < sizeof(line));
    assert_int_equal(strlen(line), n);
    assert_string_equal(line + n - strlen("\" truncated=true\n"), "\" truncated=true\n");
    assert_null(strstr(line, "after="));

    n = gw_log_format_line(line, sizeof(line), GW_LOG_JSON, 0, GW_LOG_INFO, "t", f, 3);
    assert_true(n < sizeof(line));
    assert_string_equal(line + n - strlen("\",\"truncated\":true}\n"), "\",\"truncated\":true}\n");

    /* A number that does not fit is left out whole. */
    gw_log_field g[] = {GW_F_STR("pad", "pppppppppppppppppppppppppppppppppppppppppppppppppp"),
                        GW_F_U64("num", 12345678901234ull)};
    n = gw_log_format_line(small, 100, GW_LOG_LOGFMT, 0, GW_LOG_INFO, "t", g, 2);
    assert_true(n < 100);
    assert_string_equal(small, "level=info event=t "
                               "pad=pppppppppppppppppppppppppppppppppppppppppppppppppp "
                               "truncated=true\n");
}

static int evaluated;
static const char *count_eval(void)
{
    evaluated++;
    return "v";
}

/* Point the log at a temp file; returns its fd for reading. */
static int capture(gw_log_level level, gw_log_format format, char *path)
{
    strcpy(path, "/tmp/test_log_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    gw_log_options o;
    gw_log_options_default(&o);
    o.fd = fd;
    o.level = level;
    o.format = format;
    o.timestamps = 0;
    gw_log_configure(&o);
    return fd;
}

static void restore(int fd)
{
    gw_log_options o;
    gw_log_options_default(&o);
    gw_log_configure(&o);
    close(fd);
}

static size_t read_all(int fd, char *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return (size_t)n;
}

static void test_emit_and_levels(void **state)
{
    (void)state;
    char path[64], buf[4096];
    int fd = capture(GW_LOG_INFO, GW_LOG_LOGFMT, path);
    evaluated = 0;
    GW_LOG(GW_LOG_DEBUG, "hidden", GW_F_STR("k", count_eval()));
    assert_int_equal(evaluated, 0);
    GW_LOG(GW_LOG_INFO, "shown", GW_F_STR("k", count_eval()), GW_F_U64("n", 7));
    assert_int_equal(evaluated, 1);
    gw_logf(GW_LOG_WARN, "sink_error", "broker %s down after %d tries", "k1", 3);
    gw_log_emit(GW_LOG_ERROR, "bare", NULL, 0);
    assert_true(gw_log_enabled(GW_LOG_INFO));
    assert_false(gw_log_enabled(GW_LOG_DEBUG));
    read_all(fd, buf, sizeof(buf));
    assert_string_equal(buf, "level=info event=shown k=v n=7\n"
                             "level=warn event=sink_error msg=\"broker k1 down after 3 tries\"\n"
                             "level=error event=bare\n");
    restore(fd);
}

#define THREADS 4
#define LINES   500

static void *log_thread(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    char filler[600];
    memset(filler, 'a' + (int)id, sizeof(filler) - 1);
    filler[sizeof(filler) - 1] = '\0';
    for (unsigned i = 0; i < LINES; i++)
        GW_LOG(GW_LOG_INFO, "t", GW_F_U64("thread", id), GW_F_U64("i", i),
               GW_F_STR("filler", filler));
    return NULL;
}

static void test_threads_one_write_per_line(void **state)
{
    (void)state;
    char path[64];
    int fd = capture(GW_LOG_INFO, GW_LOG_JSON, path);
    /* O_APPEND so concurrent writes never overwrite each other. */
    int fl = fcntl(fd, F_GETFL);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_APPEND), 0);
    pthread_t th[THREADS];
    for (uintptr_t t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, log_thread, (void *)t), 0);
    for (unsigned t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    size_t cap = (size_t)THREADS * LINES * 700;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n = read_all(fd, buf, cap);
    unsigned lines = 0, seen[THREADS] = {0};
    for (char *p = buf; p < buf + n;) {
        char *nl = memchr(p, '\n', (size_t)(buf + n - p));
        assert_non_null(nl);
        *nl = '\0';
        unsigned t, i;
        char c;
        /* Every line whole: its own thread id, index and an unbroken filler of its letter. */
        assert_int_equal(sscanf(p,
                                "{\"level\":\"info\",\"event\":\"t\",\"thread\":%u,\"i\":%u,"
                                "\"filler\":\"%c",
                                &t, &i, &c),
                         3);
        assert_true(t < THREADS);
        assert_int_equal(c, 'a' + (int)t);
        assert_int_equal(i, seen[t]); /* in order per thread */
        seen[t]++;
        const char *fill = strstr(p, "\"filler\":\"");
        assert_non_null(fill);
        fill += strlen("\"filler\":\"");
        assert_int_equal(strspn(fill, (char[]){c, 0}), 599);
        assert_string_equal(fill + 599, "\"}");
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, THREADS * LINES);
    free(buf);
    restore(fd);
}

static void test_redaction(void **state)
{
    (void)state;
    assert_true(gw_log_key_is_secret("sasl.password"));
    assert_true(gw_log_key_is_secret("ssl.key.password"));
    assert_true(gw_log_key_is_secret("webhook_secret"));
    assert_true(gw_log_key_is_secret("Authorization"));
    assert_true(gw_log_key_is_secret("api_key"));
    assert_true(gw_log_key_is_secret("admin_token"));
    assert_true(gw_log_key_is_secret("ssl.key.pem"));
    assert_true(gw_log_key_is_secret("sasl.oauthbearer.config"));
    assert_false(gw_log_key_is_secret("token_file"));
    assert_false(gw_log_key_is_secret("token_env"));
    assert_false(gw_log_key_is_secret("key"));
    assert_false(gw_log_key_is_secret("brokers"));
    assert_false(gw_log_key_is_secret(NULL));

    cJSON *in = cJSON_Parse("{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"properties\":"
                            "{\"sasl.password\":\"hunter2\",\"acks\":\"all\"},"
                            "\"list\":[{\"secret\":{\"deep\":1}}]}");
    assert_non_null(in);
    cJSON *out = gw_log_redact_json(in);
    assert_non_null(out);
    char *s = cJSON_PrintUnformatted(out);
    assert_string_equal(s, "{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"properties\":"
                           "{\"sasl.password\":\"<redacted>\",\"acks\":\"all\"},"
                           "\"list\":[{\"secret\":\"<redacted>\"}]}");
    free(s);
    /* The input is untouched. */
    s = cJSON_PrintUnformatted(in);
    assert_non_null(strstr(s, "hunter2"));
    free(s);
    cJSON_Delete(out);
    cJSON_Delete(in);
}

/* Rate limiter cases with scripted time: (key, now, expected allow, expected suppressed). */
static void test_lograte_per_key(void **state)
{
    (void)state;
    gw_lograte *r;
    uint64_t sup, other;
    static const struct {
        const char *key;
        uint64_t now;
        int allow;
        uint64_t sup;
    } cases[] = {
        /* 1 */ {"peer:a", 0, 1, 0},
        /* 2 */ {"peer:a", 1 * SEC, 0, 0},
        /* 3 */ {"peer:a", 59 * SEC, 0, 0},
        /* 4 */ {"peer:b", 59 * SEC, 1, 0}, /* other keys are independent */
        /* 5 */ {"peer:a", 60 * SEC, 1, 2}, /* interval passed: reports the 2 held back */
        /* 6 */ {"peer:a", 61 * SEC, 0, 0},
        /* 7 */ {"peer:a", 200 * SEC, 1, 1},
        /* 8 */ {"peer:b", 200 * SEC, 1, 0},
        /* 9 */ {"peer:b", 200 * SEC + 1, 0, 0},
    };
    assert_int_equal(gw_lograte_new(&r, 64, 60 * SEC, 0), ITR_OK);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sup = other = 99;
        int a = gw_lograte_check(r, cases[i].key, strlen(cases[i].key), cases[i].now, &sup, &other);
        assert_int_equal(a, cases[i].allow);
        if (a) {
            assert_int_equal(sup, cases[i].sup);
            assert_int_equal(other, 0);
        }
    }
    gw_lograte_free(r);
    assert_int_equal(gw_lograte_new(&r, 16, 0, 0), ITR_ERR_INVALID);
    gw_lograte_free(NULL);
}

static void test_lograte_global_cap_and_eviction(void **state)
{
    (void)state;
    gw_lograte *r;
    uint64_t sup, other, total_reported = 0;
    char key[32];
    unsigned allowed = 0;
    /* Global cap of 5 lines per interval over all keys. */
    assert_int_equal(gw_lograte_new(&r, 1024, 10 * SEC, 5), ITR_OK);
    for (unsigned i = 0; i < 100; i++) {
        int n = snprintf(key, sizeof(key), "ip:%u", i);
        allowed += (unsigned)gw_lograte_check(r, key, (size_t)n, 1 * SEC, NULL, NULL);
    }
    assert_int_equal(allowed, 5);
    /* Next interval: a held-back key gets through and reports its own count. */
    int n = snprintf(key, sizeof(key), "ip:%u", 50u);
    assert_int_equal(gw_lograte_check(r, key, (size_t)n, 12 * SEC, &sup, &other), 1);
    assert_int_equal(sup, 1);
    gw_lograte_free(r);

    /* A tiny table flooded with distinct keys: evicted keys' held-back counts are reported as
     * suppressed_other, so nothing is lost from the totals. */
    assert_int_equal(gw_lograte_new(&r, 16, 10 * SEC, 0), ITR_OK);
    uint64_t held = 0;
    for (unsigned round = 0; round < 2; round++) {
        for (unsigned i = 0; i < 16; i++) {
            n = snprintf(key, sizeof(key), "k%u", i);
            if (!gw_lograte_check(r, key, (size_t)n, round, &sup, &other))
                held++;
            else
                total_reported += sup + other;
        }
    }
    for (unsigned i = 100; i < 400; i++) {
        n = snprintf(key, sizeof(key), "k%u", i);
        assert_int_equal(gw_lograte_check(r, key, (size_t)n, 5, &sup, &other), 1);
        total_reported += sup + other;
    }
    /* After the interval every remembered key reports its own count. */
    for (unsigned i = 0; i < 16; i++) {
        n = snprintf(key, sizeof(key), "k%u", i);
        if (gw_lograte_check(r, key, (size_t)n, 100 * SEC, &sup, &other))
            total_reported += sup + other;
    }
    assert_true(held > 0);
    assert_int_equal(total_reported, held);
    gw_lograte_free(r);
}

static void test_lograte_emit(void **state)
{
    (void)state;
    char path[64], buf[1024];
    gw_lograte *r;
    int fd = capture(GW_LOG_INFO, GW_LOG_LOGFMT, path);
    assert_int_equal(gw_lograte_new(&r, 64, 10 * SEC, 0), ITR_OK);
    gw_log_field f[] = {GW_F_STR("peer", "ab12"), GW_F_STR("reason", "bad_mac1")};
    assert_int_equal(gw_lograte_emit(r, "ab12", 4, 0, GW_LOG_WARN, "security_event", f, 2), 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_lograte_emit(r, "ab12", 4, SEC, GW_LOG_WARN, "security_event", f, 2),
                         0);
    assert_int_equal(gw_lograte_emit(r, "ab12", 4, 11 * SEC, GW_LOG_WARN, "security_event", f, 2),
                     1);
    read_all(fd, buf, sizeof(buf));
    assert_string_equal(buf,
                        "level=warn event=security_event peer=ab12 reason=bad_mac1\n"
                        "level=warn event=security_event peer=ab12 reason=bad_mac1 suppressed=3\n");
    gw_lograte_set_interval(r, 1);
    assert_int_equal(gw_lograte_check(r, "ab12", 4, 11 * SEC + 1, NULL, NULL), 1);
    gw_lograte_free(r);
    restore(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logfmt_escaping),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_timestamp_and_levels),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_emit_and_levels),
        cmocka_unit_test(test_threads_one_write_per_line),
        cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_lograte_per_key),
        cmocka_unit_test(test_lograte_global_cap_and_eviction),
        cmocka_unit_test(test_lograte_emit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
