/* file_sink_disk.c: the file sink against real file-system failures, run by
 * file_sink_disk.sh inside a private mount namespace (as namespace root):
 *   enospc  a 64 KiB tmpfs fills up mid-batch: nothing of the batch is completed, the file
 *           is cut back to whole lines, the sink is DOWN; space freed -> every line written
 *           exactly once, state UP.
 *   erofs   the directory becomes read-only (read-only bind mount on top): rotation fails
 *           with EROFS and keeps the batch; opening a new sink there fails with the error;
 *           writable again -> rotation and the batch complete.
 * Usage: file_sink_disk WORKDIR   (exit 0 ok, 1 failure, 77 mounts not permitted)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include "connector.h"

extern const gw_connector gw_file_connector;

#define MAXD 4096

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
            goto out;                                                       \
        }                                                                   \
    } while (0)

struct env {
    gw_sink_env env;
    size_t ndone;
    unsigned errors;
    char stage[32];
    char last_error[512];
};

static void e_complete(gw_sink_env *env, gw_delivery *d, gw_result r, const char *reason)
{
    struct env *e = (struct env *)env;
    (void)d;
    (void)reason;
    if (r != GW_DURABLE)
        fprintf(stderr, "unexpected result %d\n", (int)r);
    e->ndone++;
}

static void e_error(gw_sink_env *env, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void e_error(gw_sink_env *env, const char *stage, const char *fmt, ...)
{
    struct env *e = (struct env *)env;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->last_error, sizeof(e->last_error), fmt, ap);
    va_end(ap);
    snprintf(e->stage, sizeof(e->stage), "%s", stage);
    e->errors++;
}

static void e_log(gw_sink_env *env, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void e_log(gw_sink_env *env, int level, const char *fmt, ...)
{
    (void)env;
    (void)level;
    (void)fmt;
}

static void e_ready(gw_sink_env *env)
{
    (void)env;
}

struct tmsg {
    gw_msg m;
    gw_delivery d;
    char body[160];
};

static struct tmsg msgs[MAXD];

static void msg_init(struct tmsg *t, uint32_t seq)
{
    memset(t, 0, sizeof(*t));
    t->m.recv_wall_ns = itr_wall_ns();
    t->m.recv_mono_ns = itr_now_ns();
    t->m.shard_name = "disk";
    t->m.shard_name_len = 4;
    memset(t->m.peer_hex, 'c', 64);
    t->m.seq = seq;
    t->m.intent = ITR_INTENT_RELIABLE;
    t->m.topic = "fill";
    t->m.topic_len = 4;
    memset(t->body, 'z', sizeof(t->body));
    t->m.body = (const uint8_t *)t->body;
    t->m.body_len = sizeof(t->body);
    t->d.msg = &t->m;
    t->d.reliable = 1;
}

static void run_until(itr_loop *loop, struct env *e, size_t want, int ms)
{
    uint64_t end = itr_now_ns() + (uint64_t)ms * 1000000u;
    while (e->ndone < want && itr_now_ns() < end)
        itr_loop_run_once(loop, 10);
}

static void run_for(itr_loop *loop, int ms)
{
    uint64_t end = itr_now_ns() + (uint64_t)ms * 1000000u;
    while (itr_now_ns() < end)
        itr_loop_run_once(loop, 5);
}

static int open_sink(gw_sink **s, struct env *e, itr_loop *loop, const char *path,
                     const char *extra, char *err, size_t errlen)
{
    memset(e, 0, sizeof(*e));
    e->env.name = "disk: sinks.file";
    e->env.loop = loop;
    e->env.complete = e_complete;
    e->env.error = e_error;
    e->env.log = e_log;
    e->env.ready = e_ready;
    char json[1024];
    snprintf(json, sizeof(json), "{\"type\":\"file\",\"path\":\"%s\"%s}", path, extra);
    cJSON *c = cJSON_Parse(json);
    int rc = gw_file_connector.open(s, c, &e->env, err, errlen);
    cJSON_Delete(c);
    return rc;
}

/* Count lines, check each is whole JSON with a seq seen once; returns lines or -1. */
static long check_file(const char *path, unsigned char *seen, size_t nseen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[4096];
    long n = 0;
    while (fgets(line, sizeof(line), f)) {
        size_t len = strlen(line);
        if (!len || line[len - 1] != '\n') {
            fprintf(stderr, "partial line %ld in %s\n", n + 1, path);
            n = -1;
            break;
        }
        cJSON *j = cJSON_Parse(line);
        cJSON *seq = j ? cJSON_GetObjectItem(j, "seq") : NULL;
        if (!cJSON_IsNumber(seq) || seq->valuedouble >= (double)nseen ||
            seen[(size_t)seq->valuedouble]++) {
            fprintf(stderr, "bad or duplicate line %ld in %s\n", n + 1, path);
            cJSON_Delete(j);
            n = -1;
            break;
        }
        cJSON_Delete(j);
        n++;
    }
    fclose(f);
    return n;
}

static int test_enospc(const char *dir)
{
    itr_loop *loop = NULL;
    gw_sink *s = NULL;
    struct env e;
    char err[GW_ERR_LEN];
    char path[600], filler[600];
    static unsigned char seen[MAXD];
    memset(seen, 0, sizeof(seen));
    int mounted = 0;
    CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST, "mkdir %s", dir);
    CHECK(mount("tmpfs", dir, "tmpfs", 0, "size=64k") == 0, "mount tmpfs: %s", strerror(errno));
    mounted = 1;
    snprintf(path, sizeof(path), "%s/out.jsonl", dir);
    snprintf(filler, sizeof(filler), "%s/filler", dir);
    /* take half the space so the sink hits ENOSPC quickly, and can be given room later */
    FILE *f = fopen(filler, "w");
    CHECK(f, "filler: %s", strerror(errno));
    static char block[32768];
    memset(block, 'f', sizeof(block));
    size_t wrote = fwrite(block, 1, sizeof(block), f);
    fclose(f);
    CHECK(wrote == sizeof(block), "filler write");
    CHECK(itr_loop_new(&loop) == 0, "loop");
    CHECK(open_sink(&s, &e, loop, path, ",\"rotate_bytes\":0", err, sizeof(err)) == 0, "%s", err);

    size_t submitted = 0;
    uint32_t seq = 0;
    /* batches of 10 lines (~3 KB) until one fails */
    for (int b = 0; b < 40 && !e.errors; b++) {
        gw_delivery *ds[10];
        for (int i = 0; i < 10; i++) {
            msg_init(&msgs[seq], seq);
            ds[i] = &msgs[seq].d;
            seq++;
        }
        CHECK(gw_file_connector.submit(s, ds, 10) == 10, "submit");
        submitted += 10;
        run_until(loop, &e, submitted, 2000);
    }
    CHECK(e.errors > 0, "the disk never filled");
    CHECK(!strcmp(e.stage, "write") || !strcmp(e.stage, "fsync"), "stage %s", e.stage);
    CHECK(strstr(e.last_error, "No space left on device"), "error: %s", e.last_error);
    size_t done_before = e.ndone;
    CHECK(done_before + 10 == submitted, "completed %zu of %zu", done_before, submitted);
    gw_sink_status st;
    memset(&st, 0, sizeof(st));
    gw_file_connector.status(s, &st);
    CHECK(st.state == GW_SINK_DOWN, "state %d", (int)st.state);
    CHECK(st.in_flight == 10, "in flight %llu", (unsigned long long)st.in_flight);
    long lines = check_file(path, seen, MAXD);
    CHECK(lines == (long)done_before, "lines %ld, completed %zu", lines, done_before);
    run_for(loop, 300); /* retries keep failing, nothing completes */
    CHECK(e.ndone == done_before, "completed while failing");

    CHECK(unlink(filler) == 0, "unlink filler");
    run_until(loop, &e, submitted, 15000);
    CHECK(e.ndone == submitted, "completed %zu of %zu after space came back", e.ndone, submitted);
    gw_file_connector.status(s, &st);
    CHECK(st.state == GW_SINK_UP, "state %d after recovery", (int)st.state);
    memset(seen, 0, sizeof(seen));
    lines = check_file(path, seen, MAXD);
    CHECK(lines == (long)submitted, "lines %ld, submitted %zu", lines, submitted);
    printf("enospc: %zu lines, failed batch kept and rewritten once\n", submitted);
out:
    if (s)
        gw_file_connector.close(s);
    itr_loop_free(loop);
    if (mounted)
        umount2(dir, MNT_DETACH);
    return failures ? 1 : 0;
}

static int test_erofs(const char *dir)
{
    itr_loop *loop = NULL;
    gw_sink *s = NULL, *s2 = NULL;
    struct env e, e2;
    char err[GW_ERR_LEN];
    char path[600];
    static unsigned char seen[MAXD];
    int mounted = 0, ro = 0;
    CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST, "mkdir %s", dir);
    CHECK(mount("tmpfs", dir, "tmpfs", 0, "size=1m") == 0, "mount tmpfs: %s", strerror(errno));
    mounted = 1;
    snprintf(path, sizeof(path), "%s/out.jsonl", dir);
    CHECK(itr_loop_new(&loop) == 0, "loop");
    CHECK(open_sink(&s, &e, loop, path, ",\"rotate_bytes\":1000", err, sizeof(err)) == 0, "%s",
          err);
    gw_delivery *ds[10];
    for (uint32_t i = 0; i < 10; i++) {
        msg_init(&msgs[i], i);
        ds[i] = &msgs[i].d;
    }
    CHECK(gw_file_connector.submit(s, ds, 10) == 10, "submit");
    run_until(loop, &e, 10, 2000);
    CHECK(e.ndone == 10, "first batch");

    /* read-only from now on: the open file stays writable, but rotation needs a rename */
    CHECK(mount(dir, dir, NULL, MS_BIND, NULL) == 0, "bind: %s", strerror(errno));
    ro = 1;
    CHECK(mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) == 0, "remount ro: %s",
          strerror(errno));
    for (uint32_t i = 10; i < 20; i++) {
        msg_init(&msgs[i], i);
        ds[i - 10] = &msgs[i].d;
    }
    CHECK(gw_file_connector.submit(s, ds, 10) == 10, "submit");
    run_for(loop, 300);
    CHECK(e.ndone == 10, "completed on a read-only file system");
    CHECK(!strcmp(e.stage, "rotate"), "stage %s", e.stage);
    CHECK(strstr(e.last_error, "Read-only file system"), "error: %s", e.last_error);
    gw_sink_status st;
    memset(&st, 0, sizeof(st));
    gw_file_connector.status(s, &st);
    CHECK(st.state == GW_SINK_DOWN, "state %d", (int)st.state);

    /* a new sink cannot create its file there */
    char path2[700];
    snprintf(path2, sizeof(path2), "%s/other.jsonl", dir);
    CHECK(open_sink(&s2, &e2, loop, path2, "", err, sizeof(err)) != 0, "opened on ro");
    CHECK(strstr(err, "Read-only file system") && strstr(err, path2), "open error: %s", err);

    CHECK(umount2(dir, 0) == 0, "umount ro bind: %s", strerror(errno));
    ro = 0;
    run_until(loop, &e, 20, 15000);
    CHECK(e.ndone == 20, "completed %zu of 20 after the file system became writable", e.ndone);
    memset(seen, 0, sizeof(seen));
    long now_lines = check_file(path, seen, MAXD);
    CHECK(now_lines == 10, "current file has %ld lines", now_lines);
    /* the first batch went to the rotated file */
    DIR *dh = opendir(dir);
    CHECK(dh, "opendir");
    int rotated = 0;
    struct dirent *de;
    while ((de = readdir(dh)))
        rotated += !strncmp(de->d_name, "out.jsonl.", 10);
    closedir(dh);
    CHECK(rotated == 1, "%d rotated files", rotated);
    printf("erofs: rotation refused and retried, open refused with the error\n");
out:
    if (s)
        gw_file_connector.close(s);
    if (s2)
        gw_file_connector.close(s2);
    itr_loop_free(loop);
    if (ro)
        umount2(dir, MNT_DETACH);
    if (mounted)
        umount2(dir, MNT_DETACH);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
        return 2;
    }
    char a[512], b[512];
    snprintf(a, sizeof(a), "%s/enospc", argv[1]);
    snprintf(b, sizeof(b), "%s/erofs", argv[1]);
    /* probe: can we mount here at all? */
    if (mkdir(a, 0700) < 0 && errno != EEXIST)
        return 1;
    if (mount("tmpfs", a, "tmpfs", 0, "size=64k") < 0) {
        fprintf(stderr, "SKIP: cannot mount tmpfs (%s)\n", strerror(errno));
        return 77;
    }
    umount2(a, MNT_DETACH);
    int rc = test_enospc(a);
    rc |= test_erofs(b);
    rmdir(a);
    rmdir(b);
    return rc ? 1 : 0;
}
