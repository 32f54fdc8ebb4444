/* test_kafka_spool.c: the Kafka sink's disk buffer (connectors/kafka/spool.h): codec round
 * trip, commit/replay in order, acknowledgement and segment deletion, restart replay, torn and
 * corrupt records, the size bound and the directory lock. Real files in a temporary dir.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

#include <intentra/error.h>

#include "kafka/spool.h"

struct logbook {
    int lines;
    char last[512];
};

static void log_cb(void *arg, const char *msg)
{
    struct logbook *lb = arg;
    lb->lines++;
    snprintf(lb->last, sizeof(lb->last), "%s", msg);
}

static char *make_dir(void)
{
    char tmpl[] = "/tmp/test_kafka_spool.XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void remove_dir(const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return;
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (de->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(dh);
    rmdir(dir);
}

/* Number of segment files in dir. */
static int count_segments(const char *dir)
{
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dh)))
        n += strncmp(de->d_name, "spool-", 6) == 0;
    closedir(dh);
    return n;
}

/* The newest segment file's path. */
static void last_segment(const char *dir, char *out, size_t cap)
{
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    char best[300] = "";
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (strncmp(de->d_name, "spool-", 6) == 0 && strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", de->d_name);
    }
    closedir(dh);
    assert_true(best[0]);
    snprintf(out, cap, "%s/%s", dir, best);
}

static gw_spool *open_spool(const char *dir, uint64_t max_bytes, uint64_t seg_bytes,
                            struct logbook *lb)
{
    gw_spool_options o = {.dir = dir,
                          .max_bytes = max_bytes,
                          .segment_bytes = seg_bytes,
                          .log = log_cb,
                          .log_arg = lb};
    gw_spool *sp = NULL;
    char err[256] = "";
    int rc = gw_spool_open(&sp, &o, err, sizeof(err));
    if (rc)
        fail_msg("gw_spool_open: %s", err);
    return sp;
}

/* Record i: topic "t<i%3>", key "k<i>", partition i%4 (or -1), two headers, value "v<i>...". */
static void append_n(gw_spool *sp, int from, int to)
{
    for (int i = from; i < to; i++) {
        char topic[16], key[16], val[64], seq[16];
        snprintf(topic, sizeof(topic), "t%d", i % 3);
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "value-%d-%s", i, "padding-padding");
        snprintf(seq, sizeof(seq), "%d", i);
        gw_spool_header h[2] = {{"intentra-seq", 12, seq, strlen(seq)},
                                {"intentra-empty", 14, "", 0}};
        gw_spool_record r = {.flags = (uint8_t)(i & 1),
                             .partition = i % 5 == 0 ? -1 : i % 4,
                             .timestamp_ms = 1700000000000 + i,
                             .topic = topic,
                             .topic_len = strlen(topic),
                             .key = i % 7 == 0 ? NULL : key,
                             .key_len = i % 7 == 0 ? 0 : strlen(key),
                             .headers = h,
                             .header_count = 2,
                             .value = val,
                             .value_len = strlen(val)};
        assert_int_equal(gw_spool_append(sp, &r), 0);
    }
}

static void check_record(const gw_spool_record *r, int i)
{
    char topic[16], key[16], val[64], seq[16];
    snprintf(topic, sizeof(topic), "t%d", i % 3);
    snprintf(key, sizeof(key), "k%d", i);
    snprintf(val, sizeof(val), "value-%d-%s", i, "padding-padding");
    snprintf(seq, sizeof(seq), "%d", i);
    assert_int_equal(r->flags, i & 1);
    assert_int_equal(r->partition, i % 5 == 0 ? -1 : i % 4);
    assert_int_equal(r->timestamp_ms, 1700000000000 + i);
    assert_int_equal(r->topic_len, strlen(topic));
    assert_memory_equal(r->topic, topic, r->topic_len);
    if (i % 7 == 0) {
        assert_null(r->key);
    } else {
        assert_int_equal(r->key_len, strlen(key));
        assert_memory_equal(r->key, key, r->key_len);
    }
    assert_int_equal(r->header_count, 2);
    assert_int_equal(r->headers[0].value_len, strlen(seq));
    assert_memory_equal(r->headers[0].value, seq, strlen(seq));
    assert_int_equal(r->headers[1].value_len, 0);
    assert_int_equal(r->value_len, strlen(val));
    assert_memory_equal(r->value, val, r->value_len);
}

/* Read records from..to-1 in order, acknowledging each if ack is set. */
static void read_n(gw_spool *sp, int from, int to, int ack)
{
    for (int i = from; i < to; i++) {
        gw_spool_record r;
        uint64_t id;
        int rc = gw_spool_next(sp, &r, &id);
        if (rc)
            fail_msg("record %d: gw_spool_next = %d", i, rc);
        check_record(&r, i);
        if (ack)
            assert_int_equal(gw_spool_ack(sp, id), 0);
    }
}

static void test_codec_round_trip(void **state)
{
    (void)state;
    uint8_t buf[512];
    gw_spool_header h[1] = {{"a", 1, "bc", 2}};
    gw_spool_record r = {.flags = 3,
                         .partition = 7,
                         .timestamp_ms = -5,
                         .topic = "topic",
                         .topic_len = 5,
                         .key = "",
                         .key_len = 0,
                         .headers = h,
                         .header_count = 1,
                         .value = "\x00\x01\xff",
                         .value_len = 3};
    size_t n = gw_spool_encode(&r, buf, sizeof(buf));
    assert_int_equal(n, gw_spool_encoded_size(&r));
    gw_spool_record d;
    gw_spool_header dh[GW_SPOOL_MAX_HEADERS];
    size_t need;
    assert_int_equal(gw_spool_decode(buf, n, &d, dh, &need), (long)n);
    assert_int_equal(d.flags, 3);
    assert_int_equal(d.partition, 7);
    assert_int_equal(d.timestamp_ms, -5);
    assert_non_null(d.key); /* an empty key is not "no key" */
    assert_int_equal(d.key_len, 0);
    assert_int_equal(d.header_count, 1);
    assert_memory_equal(d.headers[0].value, "bc", 2);
    assert_memory_equal(d.value, "\x00\x01\xff", 3);

    /* Every truncation is partial; every single-byte change is detected. */
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(gw_spool_decode(buf, cut, &d, dh, &need), ITR_ERR_PARTIAL);
    for (size_t i = 0; i < n; i++) {
        buf[i] ^= 0x40;
        long rc = gw_spool_decode(buf, n, &d, dh, &need);
        assert_true(rc == ITR_ERR_PROTO || rc == ITR_ERR_PARTIAL);
        buf[i] ^= 0x40;
    }
    /* Known CRC-32C check value. */
    assert_int_equal(gw_spool_crc32c(0, "123456789", 9), 0xE3069283u);
    /* Too many headers cannot be encoded. */
    gw_spool_header many[GW_SPOOL_MAX_HEADERS + 1];
    memset(many, 0, sizeof(many));
    r.headers = many;
    r.header_count = GW_SPOOL_MAX_HEADERS + 1;
    assert_int_equal(gw_spool_encoded_size(&r), 0);
}

static void test_commit_replay_ack_delete(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct logbook lb = {0};
    gw_spool *sp = open_spool(dir, 1 << 20, 4096, &lb);
    uint64_t id;
    gw_spool_record r;

    /* Nothing is readable before commit. */
    append_n(sp, 0, 10);
    assert_int_equal(gw_spool_uncommitted(sp), 10);
    assert_int_equal(gw_spool_next(sp, &r, &id), ITR_ERR_WOULDBLOCK);
    assert_false(gw_spool_has_unread(sp));
    assert_int_equal(gw_spool_commit(sp), 0);
    assert_true(gw_spool_has_unread(sp));
    assert_true(gw_spool_bytes(sp) > 0);

    /* Many commits: segments roll over at 4 KiB. */
    for (int i = 10; i < 400; i += 10) {
        append_n(sp, i, i + 10);
        assert_int_equal(gw_spool_commit(sp), 0);
    }
    int segs = count_segments(dir);
    assert_true(segs > 3);

    /* Read all without acknowledging: nothing deleted. */
    read_n(sp, 0, 400, 0);
    assert_int_equal(gw_spool_next(sp, &r, &id), ITR_ERR_WOULDBLOCK);
    assert_int_equal(gw_spool_unacked(sp), 400);
    assert_int_equal(count_segments(dir), segs);
    gw_spool_close(sp);

    /* A restart replays everything that was not acknowledged, in order. */
    sp = open_spool(dir, 1 << 20, 4096, &lb);
    uint64_t ids[400];
    for (int i = 0; i < 400; i++) {
        assert_int_equal(gw_spool_next(sp, &r, &ids[i]), 0);
        check_record(&r, i);
    }
    /* Acknowledge out of order: segments go once all their records are delivered. */
    for (int i = 399; i >= 0; i -= 2)
        assert_int_equal(gw_spool_ack(sp, ids[i]), 0);
    assert_int_equal(count_segments(dir), segs);
    for (int i = 0; i < 400; i += 2)
        assert_int_equal(gw_spool_ack(sp, ids[i]), 0);
    assert_int_equal(count_segments(dir), 0);
    assert_int_equal(gw_spool_bytes(sp), 0);
    assert_int_equal(gw_spool_ack(sp, ids[0]), ITR_ERR_NOT_FOUND);

    /* Appending after everything was delivered starts a new segment. */
    append_n(sp, 0, 5);
    assert_int_equal(gw_spool_commit(sp), 0);
    read_n(sp, 0, 5, 1);
    /* The fully delivered active segment is retired too (a restart must not replay it). */
    assert_int_equal(count_segments(dir), 0);
    gw_spool_close(sp);
    sp = open_spool(dir, 1 << 20, 4096, &lb);
    assert_int_equal(gw_spool_next(sp, &r, &id), ITR_ERR_WOULDBLOCK);
    assert_int_equal(lb.lines, 0);
    gw_spool_close(sp);
    remove_dir(dir);
    free(dir);
}

static void test_interleaved_append_and_read(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct logbook lb = {0};
    gw_spool *sp = open_spool(dir, 1 << 20, 2048, &lb);
    int written = 0, readn = 0;
    for (int round = 0; round < 50; round++) {
        append_n(sp, written, written + 7);
        written += 7;
        assert_int_equal(gw_spool_commit(sp), 0);
        int k = round % 3 == 0 ? 3 : 9;
        if (readn + k > written)
            k = written - readn;
        read_n(sp, readn, readn + k, 1);
        readn += k;
    }
    read_n(sp, readn, written, 1);
    assert_int_equal(gw_spool_unacked(sp), 0);
    assert_int_equal(count_segments(dir), 0);
    gw_spool_close(sp);
    remove_dir(dir);
    free(dir);
}

static void test_torn_last_record(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct logbook lb = {0};
    gw_spool *sp = open_spool(dir, 1 << 20, 1 << 20, &lb);
    append_n(sp, 0, 20);
    assert_int_equal(gw_spool_commit(sp), 0);
    gw_spool_close(sp);

    /* A crash in the middle of writing the last record: cut its last 5 bytes. */
    char path[600];
    last_segment(dir, path, sizeof(path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 5), 0);

    sp = open_spool(dir, 1 << 20, 1 << 20, &lb);
    read_n(sp, 0, 19, 1);
    gw_spool_record r;
    uint64_t id;
    assert_int_equal(gw_spool_next(sp, &r, &id), ITR_ERR_WOULDBLOCK);
    assert_int_equal(gw_spool_skipped(sp), 1);
    assert_int_equal(lb.lines, 1);
    assert_non_null(strstr(lb.last, "torn record"));
    /* The damaged segment is deleted once its good records are delivered. */
    assert_int_equal(count_segments(dir), 0);

    /* New records after recovery go to a new segment and replay normally. */
    append_n(sp, 100, 103);
    assert_int_equal(gw_spool_commit(sp), 0);
    read_n(sp, 100, 103, 1);
    assert_int_equal(lb.lines, 1); /* logged once */
    gw_spool_close(sp);
    remove_dir(dir);
    free(dir);
}

static void test_corrupt_middle_record(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct logbook lb = {0};
    gw_spool *sp = open_spool(dir, 1 << 20, 1 << 20, &lb);
    append_n(sp, 0, 3);
    assert_int_equal(gw_spool_commit(sp), 0);
    gw_spool_close(sp);

    /* Flip a byte inside the second record's value: its CRC fails, the others are fine. */
    char path[600];
    last_segment(dir, path, sizeof(path));
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t hdr[8];
    assert_int_equal(pread(fd, hdr, 8, 8), 8);
    uint32_t len0 = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    off_t second = 8 + 8 + (off_t)len0;
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, second + 20), 1);
    b ^= 0xff;
    assert_int_equal(pwrite(fd, &b, 1, second + 20), 1);
    close(fd);

    sp = open_spool(dir, 1 << 20, 1 << 20, &lb);
    gw_spool_record r;
    uint64_t id;
    assert_int_equal(gw_spool_next(sp, &r, &id), 0);
    check_record(&r, 0);
    assert_int_equal(gw_spool_next(sp, &r, &id), 0);
    check_record(&r, 2);
    assert_int_equal(gw_spool_skipped(sp), 1);
    assert_non_null(strstr(lb.last, "CRC mismatch"));
    gw_spool_close(sp);
    remove_dir(dir);
    free(dir);
}

static void test_max_bytes_and_lock(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct logbook lb = {0};
    gw_spool *sp = open_spool(dir, 2048, 1024, &lb);
    int n = 0;
    int rc = 0;
    for (; n < 1000; n++) {
        append_n(sp, n, n + 1);
        if (n % 4 == 3) {
            assert_int_equal(gw_spool_commit(sp), 0);
        }
        gw_spool_record r = {.topic = "t", .topic_len = 1, .value = "x", .value_len = 1};
        if ((rc = gw_spool_append(sp, &r)) == ITR_ERR_WOULDBLOCK)
            break;
        assert_int_equal(rc, 0);
        assert_int_equal(gw_spool_commit(sp), 0);
    }
    assert_int_equal(rc, ITR_ERR_WOULDBLOCK);
    assert_int_equal(gw_spool_commit(sp), 0);
    assert_true(gw_spool_bytes(sp) <= 2048);

    /* A second process (here: a second open) is refused. */
    gw_spool_options o = {.dir = dir, .max_bytes = 2048, .segment_bytes = 1024};
    gw_spool *other = NULL;
    char err[256];
    assert_int_equal(gw_spool_open(&other, &o, err, sizeof(err)), ITR_ERR_WOULDBLOCK);
    assert_non_null(strstr(err, "in use by another process"));

    /* Delivering frees room. */
    gw_spool_record r;
    uint64_t id;
    while (gw_spool_next(sp, &r, &id) == 0)
        assert_int_equal(gw_spool_ack(sp, id), 0);
    assert_int_equal(gw_spool_bytes(sp), 0);
    append_n(sp, 0, 1);
    assert_int_equal(gw_spool_commit(sp), 0);
    gw_spool_close(sp);
    remove_dir(dir);
    free(dir);
}

static void test_commit_failure_forgets(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct logbook lb = {0};
    gw_spool *sp = open_spool(dir, 1 << 20, 1 << 20, &lb);
    append_n(sp, 0, 2);
    assert_int_equal(gw_spool_commit(sp), 0);
    char path[600];
    last_segment(dir, path, sizeof(path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    off_t good_size = st.st_size;

    /* A file size limit just past the current size: the next commit's write fails part way
     * (EFBIG, SIGXFSZ ignored), like a full disk. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_sa;
    sigaction(SIGXFSZ, &ign, &old_sa);
    struct rlimit old_rl, rl;
    getrlimit(RLIMIT_FSIZE, &old_rl);
    rl = old_rl;
    rl.rlim_cur = (rlim_t)st.st_size + 10;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    append_n(sp, 2, 40);
    assert_int_equal(gw_spool_uncommitted(sp), 38);
    assert_int_equal(gw_spool_commit(sp), ITR_ERR_IO);
    assert_int_equal(gw_spool_uncommitted(sp), 0); /* forgotten: the caller appends again */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_rl), 0);
    sigaction(SIGXFSZ, &old_sa, NULL);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, good_size); /* the partial write was cut off */

    /* The caller appends them again: the spool holds each record exactly once, in order. */
    append_n(sp, 2, 40);
    assert_int_equal(gw_spool_commit(sp), 0);
    read_n(sp, 0, 40, 1);
    gw_spool_record r;
    uint64_t id;
    assert_int_equal(gw_spool_next(sp, &r, &id), ITR_ERR_WOULDBLOCK);
    gw_spool_close(sp);

    /* And so does a restart (nothing of the failed commit was left behind). */
    sp = open_spool(dir, 1 << 20, 1 << 20, &lb);
    assert_int_equal(gw_spool_next(sp, &r, &id), ITR_ERR_WOULDBLOCK);
    assert_int_equal(lb.lines, 0);
    gw_spool_close(sp);
    remove_dir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_commit_replay_ack_delete),
        cmocka_unit_test(test_interleaved_append_and_read),
        cmocka_unit_test(test_torn_last_record),
        cmocka_unit_test(test_corrupt_middle_record),
        cmocka_unit_test(test_max_bytes_and_lock),
        cmocka_unit_test(test_commit_failure_forgets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
