/* test_kafka.c: the "kafka" connector driven through its vtable against a real
 * kafka-mock-broker process; results are read back with a real librdkafka consumer (never
 * from connector internals): exactly-once with headers and shard partitions, a 10 s broker
 * outage mid-stream with and without the disk buffer, restart replay from the disk buffer with
 * a torn last record, bad properties, an unreachable broker, permanent errors into the
 * dead-letter file, and a fatal producer error.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <dirent.h>

#include "test_kafka_common.h"

#define SHARDS                                                                                    \
    "{\"s1\": {\"peers\": [\"0101010101010101010101010101010101010101010101010101010101010101\"," \
    "\"0202020202020202020202020202020202020202020202020202020202020202\"],"                      \
    "\"attributes\": {\"kafka_partition\": 2}},"                                                  \
    " \"s2\": {\"peers\": "                                                                       \
    "[\"0303030303030303030303030303030303030303030303030303030303030303\"]}}"
#define ROUTES                                                                         \
    "[{\"match\": {\"shard\": \"*\"}, \"sinks\": [{\"sink\": \"k\", \"destination\": " \
    "\"t.{topic}\", \"key\": \"{peer}\"}]}]"

static char *tmp_dir(void)
{
    char tmpl[] = "/tmp/test_kafka.XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_rf(const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return;
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[1024];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_rf(p);
        else
            unlink(p);
    }
    closedir(dh);
    rmdir(dir);
}

static gw_sink_state sink_state(gw_sink *s)
{
    gw_sink_status st;
    memset(&st, 0, sizeof(st));
    gw_kafka_connector.status(s, &st);
    return st.state;
}

/* Every completed delivery is in the topic: Reliable exactly once when exact, else at least
 * once. Returns how many records were read. */
static size_t check_present(struct broker *b, struct tenv *t, const char *topic, int exact)
{
    size_t durable = 0;
    for (size_t i = 0; i < t->nmsgs; i++)
        durable += t->msgs[i].result == GW_DURABLE;
    struct seen *seen = calloc(t->nmsgs * 2 + 16, sizeof(*seen));
    assert_non_null(seen);
    size_t n = consume_topic(b->bootstrap, topic, seen, t->nmsgs * 2 + 16, durable, 30000);
    assert_true(n >= durable);
    seen_sort(seen, n < t->nmsgs * 2 + 16 ? n : t->nmsgs * 2 + 16);
    size_t m = n < t->nmsgs * 2 + 16 ? n : t->nmsgs * 2 + 16;
    for (size_t i = 0; i < t->nmsgs; i++) {
        struct tmsg *tm = &t->msgs[i];
        if (tm->result != GW_DURABLE)
            continue;
        size_t c = seen_count(seen, m, tm->m.peer_hex, tm->m.seq);
        if (c == 0)
            fail_msg("completed delivery %zu (peer %.8s seq %u) is not in %s", i, tm->m.peer_hex,
                     tm->m.seq, topic);
        if (exact && tm->d.reliable && c != 1)
            fail_msg("delivery %zu (peer %.8s seq %u) is in %s %zu times", i, tm->m.peer_hex,
                     tm->m.seq, topic, c);
    }
    free(seen);
    return n;
}

/* ---- N Reliable deliveries arrive exactly once, with headers, shard partitions ---- */

static void test_exactly_once_with_headers(void **state)
{
    (void)state;
    struct broker b;
    struct tenv t;
    struct routing r;
    broker_start(&b, "t.pose:4");
    tenv_init(&t, "k");
    routing_build(&r, SHARDS, ROUTES);
    char conf[512];
    snprintf(conf, sizeof(conf),
             "{\"type\": \"kafka\", \"brokers\": \"%s\", \"partitioner\": \"shard\"}", b.bootstrap);
    gw_sink *s = sink_open(&t, conf);
    const size_t n = 3000;
    make_msgs(&t, &r, n, 6, 0, "pose");
    submit_range(&t, s, 0, n, 30000);
    assert_true(run_until(&t, all_done, 30000));
    assert_int_equal(t.by_result[GW_DURABLE], n);
    assert_int_equal(sink_state(s), GW_SINK_UP);
    assert_int_equal(gw_kafka_connector.flush(s, itr_now_ns() + 1000000000u), 0);

    struct seen *seen = calloc(n + 16, sizeof(*seen));
    size_t got = consume_topic(b.bootstrap, "t.pose", seen, n + 16, n, 30000);
    assert_int_equal(got, n);
    /* In order per peer (each peer's records share one partition). */
    for (unsigned p = 0; p < 6; p++) {
        uint8_t key[32];
        char hex[65];
        peer_key(p, key, hex);
        int32_t part = -1;
        int64_t last_off = -1;
        uint32_t next_seq = 0;
        /* seen is in consumption order per partition; collect this peer's by offset */
        for (int pass = 0; pass < 1; pass++) {
            for (size_t i = 0; i < got; i++) {
                if (strcmp(seen[i].peer, hex))
                    continue;
                if (part < 0)
                    part = seen[i].partition;
                assert_int_equal(seen[i].partition, part);
                assert_true(seen[i].offset > last_off);
                last_off = seen[i].offset;
                assert_int_equal(seen[i].seq, next_seq);
                next_seq++;
                /* headers */
                assert_string_equal(seen[i].intent, "reliable");
                assert_string_equal(seen[i].itopic, "pose");
                assert_true(seen[i].has_recv);
                assert_string_equal(seen[i].key, hex); /* key template {peer} */
                assert_string_equal(seen[i].shard, p < 2 ? "s1" : p == 2 ? "s2" : "default");
            }
        }
        assert_int_equal(next_seq, n / 6);
        if (p < 2)
            assert_int_equal(part, 2); /* shard s1's kafka_partition */
    }
    seen_sort(seen, got);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seen_count(seen, got, t.msgs[i].m.peer_hex, t.msgs[i].m.seq), 1);
    free(seen);
    gw_kafka_connector.close(s);
    routing_free(&r);
    tenv_free(&t);
    broker_stop(&b);
}

/* ---- the broker goes down for 10 s mid-stream ---- */

struct stream {
    struct tenv *t;
    gw_sink *s;
    struct broker *b;
    size_t next;    /* next message to submit */
    uint64_t start; /* stream start */
    uint64_t down_at, up_at;
    int is_down, was_up_again;
    size_t done_at_down, done_at_up;
    size_t rel_done_at_down, rel_done_at_up;
    int degraded_seen;
    itr_timer tick;
};

static size_t reliable_done(struct tenv *t)
{
    size_t c = 0;
    for (size_t i = 0; i < t->nmsgs; i++)
        c += t->msgs[i].result == GW_DURABLE && t->msgs[i].d.reliable;
    return c;
}

/* Every 10 ms: submit the next 20 messages (as many as the connector takes); take the
 * broker down and up at the scheduled times. */
static void on_tick(void *arg, uint64_t now)
{
    struct stream *st = arg;
    if (!st->is_down && !st->was_up_again && now >= st->down_at) {
        broker_cmd(st->b, "down 1");
        st->is_down = 1;
        st->done_at_down = st->t->done;
        st->rel_done_at_down = reliable_done(st->t);
    } else if (st->is_down && now >= st->up_at) {
        st->rel_done_at_up = reliable_done(st->t);
        st->done_at_up = st->t->done;
        broker_cmd(st->b, "up 1");
        st->is_down = 0;
        st->was_up_again = 1;
    }
    if (st->is_down && now > st->down_at + 3000000000ull && sink_state(st->s) == GW_SINK_DEGRADED)
        st->degraded_seen = 1;
    size_t want = st->next + 20 <= st->t->nmsgs ? 20 : st->t->nmsgs - st->next;
    gw_delivery *batch[20];
    for (size_t i = 0; i < want; i++)
        batch[i] = &st->t->msgs[st->next + i].d;
    if (want)
        st->next += gw_kafka_connector.submit(st->s, batch, want);
    if (st->next < st->t->nmsgs || st->is_down)
        itr_loop_timer_set(st->t->loop, &st->tick, now + 10000000u);
}

static int stream_over(struct tenv *t)
{
    (void)t;
    return 0;
}

static void run_outage(int disk, uint64_t outage_ms)
{
    struct broker b;
    struct tenv t;
    struct routing r;
    char *dir = disk ? tmp_dir() : NULL;
    broker_start(&b, "t.pose:4");
    tenv_init(&t, "k");
    routing_build(&r, SHARDS, ROUTES);
    char conf[1024];
    int o = snprintf(conf, sizeof(conf),
                     "{\"type\": \"kafka\", \"brokers\": \"%s\", \"queue_messages\": 4096",
                     b.bootstrap);
    if (disk)
        o += snprintf(conf + o, sizeof(conf) - (size_t)o,
                      ", \"disk_buffer\": {\"dir\": \"%s/spool\", \"spool_after_ms\": 500}", dir);
    snprintf(conf + o, sizeof(conf) - (size_t)o, "}");
    gw_sink *s = sink_open(&t, conf);
    /* 2,000 messages per second for outage + 4 s; every 10th Realtime. */
    const size_t n = (size_t)(2 * (outage_ms + 4000));
    make_msgs(&t, &r, n, 10, 10, "pose");
    struct stream st = {.t = &t, .s = s, .b = &b};
    st.start = itr_now_ns();
    st.down_at = st.start + 1000000000ull;
    st.up_at = st.down_at + outage_ms * 1000000u;
    itr_timer_init(&st.tick, on_tick, &st);
    itr_loop_timer_set(t.loop, &st.tick, st.start);
    run_until(&t, stream_over, (int)(outage_ms + 1500)); /* the stream and the outage */
    assert_true(st.was_up_again);
    assert_true(run_until(&t, all_done, 60000));
    itr_loop_timer_cancel(t.loop, &st.tick);
    assert_int_equal(t.by_result[GW_DEAD_LETTER], 0);
    /* Realtime messages that met the outage were discarded, counted as broker_down; no
     * Reliable delivery was dropped. */
    assert_true(t.broker_down > 0);
    for (size_t i = 0; i < n; i++) {
        if (t.msgs[i].d.reliable)
            assert_int_equal(t.msgs[i].result, GW_DURABLE);
    }
    if (disk) {
        /* Reliable deliveries kept completing during the outage (into the disk buffer). */
        assert_true(st.rel_done_at_up > st.rel_done_at_down + 1000);
        assert_true(st.degraded_seen);
    } else {
        /* Without a disk buffer they waited for the broker (their senders are throttled). */
        assert_true(st.rel_done_at_up < st.rel_done_at_down + 100);
    }
    check_present(&b, &t, "t.pose", !disk);
    /* Everything replayed: the disk buffer is empty again. */
    gw_sink_status ss;
    gw_kafka_connector.status(s, &ss);
    assert_int_equal(ss.buffered_bytes, 0);
    assert_int_equal(ss.in_flight, 0);
    assert_int_equal(gw_kafka_connector.flush(s, itr_now_ns() + 1000000000u), 0);
    gw_kafka_connector.close(s);
    routing_free(&r);
    tenv_free(&t);
    broker_stop(&b);
    if (dir) {
        rm_rf(dir);
        free(dir);
    }
}

static void test_broker_down_10s_midstream(void **state)
{
    (void)state;
    run_outage(0, 10000);
}

static void test_broker_down_10s_disk_buffer(void **state)
{
    (void)state;
    run_outage(1, 10000);
}

/* ---- disk buffer: restart replay, torn last record ---- */

static int spool_last_segment(const char *dir, char *out, size_t cap)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return -1;
    char best[300] = "";
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (!strncmp(de->d_name, "spool-", 6) && strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", de->d_name);
    }
    closedir(dh);
    if (!best[0])
        return -1;
    snprintf(out, cap, "%s/%s", dir, best);
    return 0;
}

static void test_spool_restart_torn_record(void **state)
{
    (void)state;
    struct broker b;
    struct tenv t;
    struct routing r;
    char *dir = tmp_dir();
    broker_start(&b, "t.pose:4");
    broker_cmd(&b, "down -1");
    tenv_init(&t, "k");
    routing_build(&r, SHARDS, ROUTES);
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "{\"type\": \"kafka\", \"brokers\": \"%s\", \"disk_buffer\": {\"dir\": "
             "\"%s/spool\", \"segment_bytes\": 65536, \"max_bytes\": 1048576}}",
             b.bootstrap, dir);
    gw_sink *s = sink_open(&t, conf);
    const size_t n = 1000;
    make_msgs(&t, &r, n, 5, 0, "pose");
    /* Broker down: every Reliable delivery completes once it is in the disk buffer. */
    submit_range(&t, s, 0, n, 20000);
    assert_true(run_until(&t, all_done, 20000));
    assert_int_equal(t.by_result[GW_DURABLE], n);
    gw_sink_status ss;
    gw_kafka_connector.status(s, &ss);
    assert_true(ss.buffered_bytes > 0);
    assert_int_equal(ss.state, GW_SINK_DEGRADED);
    gw_kafka_connector.close(s); /* the "restart" */

    /* A crash in the middle of the last write: its record is torn. */
    char spool[600], seg[900];
    snprintf(spool, sizeof(spool), "%s/spool", dir);
    assert_int_equal(spool_last_segment(spool, seg, sizeof(seg)), 0);
    struct stat sb;
    assert_int_equal(stat(seg, &sb), 0);
    assert_int_equal(truncate(seg, sb.st_size - 7), 0);

    broker_cmd(&b, "up -1");
    struct tenv t2;
    tenv_init(&t2, "k");
    s = sink_open(&t2, conf);
    /* Replayed on open, with no new traffic; the torn record is reported once. */
    uint64_t end = itr_now_ns() + 30000000000ull;
    do {
        itr_loop_run_once(t2.loop, 50);
        gw_kafka_connector.status(s, &ss);
    } while (ss.buffered_bytes > 0 && itr_now_ns() < end);
    assert_int_equal(ss.buffered_bytes, 0);
    assert_non_null(strstr(t2.errors_text, "torn record"));
    struct seen *seen = calloc(n + 16, sizeof(*seen));
    size_t got = consume_topic(b.bootstrap, "t.pose", seen, n + 16, n - 1, 30000);
    seen_sort(seen, got);
    size_t missing = 0;
    for (size_t i = 0; i < n; i++)
        missing += seen_count(seen, got, t.msgs[i].m.peer_hex, t.msgs[i].m.seq) == 0;
    assert_int_equal(missing, 1); /* only the torn one */
    free(seen);
    gw_kafka_connector.close(s);
    tenv_free(&t2);
    routing_free(&r);
    tenv_free(&t);
    broker_stop(&b);
    rm_rf(dir);
    free(dir);
}

/* A full disk buffer while the broker is down: Reliable deliveries wait (never dropped),
 * and complete once the broker is back. */
static void test_disk_buffer_full_waits(void **state)
{
    (void)state;
    struct broker b;
    struct tenv t;
    struct routing r;
    char *dir = tmp_dir();
    broker_start(&b, "t.pose:4");
    broker_cmd(&b, "down -1");
    tenv_init(&t, "k");
    routing_build(&r, SHARDS, ROUTES);
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "{\"type\": \"kafka\", \"brokers\": \"%s\", \"queue_messages\": 8192, "
             "\"disk_buffer\": {\"dir\": \"%s/spool\", \"max_bytes\": 1048576, "
             "\"segment_bytes\": 131072}}",
             b.bootstrap, dir);
    gw_sink *s = sink_open(&t, conf);
    const size_t n = 8000; /* ~330 bytes each on disk: more than 1 MiB */
    make_msgs(&t, &r, n, 8, 0, "pose");
    submit_range(&t, s, 0, n, 20000);
    uint64_t end = itr_now_ns() + 5000000000ull;
    while (itr_now_ns() < end)
        itr_loop_run_once(t.loop, 100);
    gw_sink_status ss;
    gw_kafka_connector.status(s, &ss);
    assert_true(ss.buffered_bytes <= 1048576);
    assert_true(t.by_result[GW_DURABLE] > 1000); /* the buffer took what fitted */
    assert_true(t.done < n);                     /* the rest waits */
    assert_int_equal(t.by_result[GW_DISCARDED] + t.by_result[GW_DEAD_LETTER], 0);
    assert_int_equal(ss.in_flight, n - t.done);
    broker_cmd(&b, "up -1");
    assert_true(run_until(&t, all_done, 60000));
    assert_int_equal(t.by_result[GW_DURABLE], n);
    check_present(&b, &t, "t.pose", 0);
    gw_kafka_connector.close(s);
    routing_free(&r);
    tenv_free(&t);
    broker_stop(&b);
    rm_rf(dir);
    free(dir);
}

/* A reload that changes the sink opens the new instance before the old one is closed: the
 * new one waits for the disk buffer's lock and then replays what the old one left. */
static void test_disk_buffer_handover(void **state)
{
    (void)state;
    struct broker b;
    struct tenv t, t2;
    struct routing r;
    char *dir = tmp_dir();
    broker_start(&b, "t.pose:4");
    broker_cmd(&b, "down -1");
    tenv_init(&t, "k");
    tenv_init(&t2, "k");
    routing_build(&r, SHARDS, ROUTES);
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "{\"type\": \"kafka\", \"brokers\": \"%s\", \"disk_buffer\": {\"dir\": "
             "\"%s/spool\"}}",
             b.bootstrap, dir);
    gw_sink *old = sink_open(&t, conf);
    const size_t n = 300;
    make_msgs(&t, &r, n, 3, 0, "pose");
    submit_range(&t, old, 0, n, 20000);
    assert_true(run_until(&t, all_done, 20000));
    assert_int_equal(t.by_result[GW_DURABLE], n);
    gw_sink *neu = sink_open(&t2, conf); /* the lock is held: opens without the buffer */
    gw_kafka_connector.close(old);
    broker_cmd(&b, "up -1");
    struct seen *seen = calloc(n + 16, sizeof(*seen));
    size_t got = 0;
    uint64_t end = itr_now_ns() + 30000000000ull;
    while (got < n && itr_now_ns() < end) {
        uint64_t step = itr_now_ns() + 1000000000u;
        while (itr_now_ns() < step)
            itr_loop_run_once(t2.loop, 100);
        got = consume_topic(b.bootstrap, "t.pose", seen, n + 16, n, 2000);
    }
    if (got < n)
        fail_msg("%zu of %zu in Kafka after the handover; errors:\n%s", got, n, t2.errors_text);
    assert_non_null(strstr(t2.logs_text, "is in use by another process or sink"));
    assert_non_null(strstr(t2.logs_text, "opened"));
    seen_sort(seen, got);
    for (size_t i = 0; i < n; i++)
        assert_true(seen_count(seen, got, t.msgs[i].m.peer_hex, t.msgs[i].m.seq) >= 1);
    free(seen);
    gw_kafka_connector.close(neu);
    routing_free(&r);
    tenv_free(&t2);
    tenv_free(&t);
    broker_stop(&b);
    rm_rf(dir);
    free(dir);
}

/* ---- configuration errors ---- */

static void expect_invalid(const char *json, const char *want)
{
    cJSON *c = cJSON_Parse(json);
    assert_non_null(c);
    char err[GW_ERR_LEN] = "";
    int rc = gw_kafka_connector.validate(c, "conf/gateway.json: sinks.k", err, sizeof(err));
    cJSON_Delete(c);
    assert_int_equal(rc, ITR_ERR_INVALID);
    if (strcmp(err, want))
        fail_msg("got:  %s\nwant: %s", err, want);
}

static void test_bad_properties(void **state)
{
    (void)state;
    /* librdkafka's own text, after the JSON path. */
    expect_invalid(
        "{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"properties\":{\"linger.ms\":\"-5\"}}",
        "conf/gateway.json: sinks.k.properties[\"linger.ms\"]: Configuration property "
        "\"queue.buffering.max.ms\" value -5 is outside allowed range 0..900000");
    expect_invalid(
        "{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"properties\":{\"lingr.ms\":\"5\"}}",
        "conf/gateway.json: sinks.k.properties[\"lingr.ms\"]: No such configuration "
        "property: \"lingr.ms\"");
    expect_invalid("{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"properties\":{\"acks\":1}}",
                   "conf/gateway.json: sinks.k.properties.acks: expected a string value, got 1");
    expect_invalid("{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"properties\":"
                   "{\"delivery.report.only.error\":\"true\"}}",
                   "conf/gateway.json: sinks.k.properties[\"delivery.report.only.error\"]: set by "
                   "the connector (delivery reports drive acknowledgements)");
    expect_invalid("{\"type\":\"kafka\"}",
                   "conf/gateway.json: sinks.k.brokers: missing required key (expected "
                   "\"host:port,...\")");
    expect_invalid("{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"partitioner\":\"random\"}",
                   "conf/gateway.json: sinks.k.partitioner: expected \"key\" | \"shard\", got "
                   "\"random\"");
    expect_invalid("{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"disk_buffer\":{}}",
                   "conf/gateway.json: sinks.k.disk_buffer.dir: missing required key (expected a "
                   "string)");
    expect_invalid("{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"consumer\":{\"group_id\":\"g\","
                   "\"topics\":[\"cmd\"],\"address\":\"body\"}}",
                   "conf/gateway.json: sinks.k.consumer.address: expected \"header\" | "
                   "\"key\", got \"body\"");
    /* A good one with everything passes. */
    cJSON *c = cJSON_Parse(
        "{\"type\":\"kafka\",\"brokers\":\"b:9092\",\"partitioner\":\"shard\",\"headers\":true,"
        "\"properties\":{\"security.protocol\":\"sasl_ssl\",\"sasl.mechanisms\":\"SCRAM-SHA-512\","
        "\"sasl.username\":\"u\",\"sasl.password\":\"p\"},\"disk_buffer\":{\"dir\":\"/tmp/x\"},"
        "\"dead_letter_file\":\"/tmp/x/dl.jsonl\",\"max_retry_backoff_ms\":5000,"
        "\"consumer\":{\"group_id\":\"g\",\"topics\":[\"cmd\"],\"address\":\"key\","
        "\"intent\":\"realtime\",\"topic\":\"cmd.{topic}\"}}");
    char err[GW_ERR_LEN] = "";
    int rc = gw_kafka_connector.validate(c, "conf/gateway.json: sinks.k", err, sizeof(err));
    cJSON_Delete(c);
    if (rc)
        fail_msg("%s", err);
}

/* ---- unreachable broker ---- */

static int is_down(struct tenv *t)
{
    return t->errors > 0 && strstr(t->errors_text, "all brokers down") != NULL;
}

static void test_unreachable_broker(void **state)
{
    (void)state;
    struct tenv t;
    tenv_init(&t, "k");
    /* Port 1 on loopback: connection refused. */
    gw_sink *s = sink_open(&t, "{\"type\": \"kafka\", \"brokers\": \"127.0.0.1:1\"}");
    if (!run_until(&t, is_down, 10000))
        fail_msg("no \"all brokers down\" error; errors:\n%s", t.errors_text);
    assert_int_equal(sink_state(s), GW_SINK_DOWN);
    assert_non_null(strstr(t.errors_text, "Connection refused"));
    assert_string_equal(t.last_stage, "connect");
    /* Realtime is discarded at once while down; Reliable waits (never discarded). */
    struct routing r;
    routing_build(&r, SHARDS, ROUTES);
    make_msgs(&t, &r, 10, 2, 2, "pose");
    submit_range(&t, s, 0, 10, 1000);
    itr_loop_run_once(t.loop, 10);
    assert_int_equal(t.broker_down, 5);
    assert_int_equal(t.by_result[GW_DURABLE], 0);
    assert_int_equal(gw_kafka_connector.flush(s, itr_now_ns() + 200000000u), ITR_ERR_WOULDBLOCK);
    gw_kafka_connector.close(s);
    routing_free(&r);
    tenv_free(&t);
}

/* ---- permanent errors go to the dead-letter file ---- */

static size_t count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[8192];
    size_t n = 0;
    while (fgets(line, sizeof(line), f))
        n += !needle || strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void test_permanent_error_dead_letter(void **state)
{
    (void)state;
    struct broker b;
    struct tenv t;
    struct routing r;
    char *dir = tmp_dir();
    broker_start(&b, "t.pose:4");
    tenv_init(&t, "k");
    routing_build(&r, SHARDS,
                  "[{\"match\": {\"topic\": \"bad\"}, \"sinks\": [{\"sink\": \"k\", "
                  "\"destination\": \"no spaces {topic}\"}]},"
                  " {\"match\": {\"shard\": \"*\"}, \"sinks\": [{\"sink\": \"k\", "
                  "\"destination\": \"t.{topic}\", \"key\": \"{peer}\"}]}]");
    char conf[1024], dlq[600];
    snprintf(dlq, sizeof(dlq), "%s/dead/letters.jsonl", dir);
    snprintf(conf, sizeof(conf),
             "{\"type\": \"kafka\", \"brokers\": \"%s\", \"dead_letter_file\": \"%s\"}",
             b.bootstrap, dlq);
    gw_sink *s = sink_open(&t, conf);
    const size_t n = 400;
    make_msgs(&t, &r, n, 4, 0, "pose");
    /* Warm up: the first 100 go through. */
    submit_range(&t, s, 0, 100, 10000);
    struct tenv *tp = &t;
    uint64_t end = itr_now_ns() + 20000000000ull;
    while (tp->done < 100 && itr_now_ns() < end)
        itr_loop_run_once(t.loop, 50);
    assert_int_equal(t.by_result[GW_DURABLE], 100);
    /* The broker refuses the next produce requests: topic authorization failed. */
    broker_cmd(&b, "error produce 3 TOPIC_AUTHORIZATION_FAILED");
    submit_range(&t, s, 100, n, 10000);
    assert_true(run_until(&t, all_done, 30000));
    assert_true(t.by_result[GW_DEAD_LETTER] > 0);
    assert_int_equal(t.by_result[GW_DURABLE] + t.by_result[GW_DEAD_LETTER], n);
    assert_int_equal(count_lines(dlq, NULL), t.by_result[GW_DEAD_LETTER]);
    assert_int_equal(count_lines(dlq, "\"reason\":\"invalid_destination\""),
                     t.by_result[GW_DEAD_LETTER]);
    assert_int_equal(count_lines(dlq, "authorization failed"), t.by_result[GW_DEAD_LETTER]);
    /* Each line carries the message: its payload and its identity headers. */
    for (size_t i = 0; i < n; i++) {
        if (t.msgs[i].result != GW_DEAD_LETTER)
            continue;
        char needle[128];
        snprintf(needle, sizeof(needle), "\"intentra-seq\":\"%u\"", t.msgs[i].m.seq);
        assert_true(count_lines(dlq, needle) >= 1);
        assert_true(count_lines(dlq, t.msgs[i].m.peer_hex) >= 1);
        assert_string_equal(t.msgs[i].reason, "invalid_destination");
    }
    check_present(&b, &t, "t.pose", 1);

    /* A destination that is not a valid topic name: dead-lettered at once. */
    struct tenv t2;
    tenv_init(&t2, "k");
    gw_kafka_connector.close(s);
    s = sink_open(&t2, conf);
    make_msgs(&t2, &r, 3, 1, 0, "bad");
    submit_range(&t2, s, 0, 3, 5000);
    assert_true(run_until(&t2, all_done, 5000));
    assert_int_equal(t2.by_result[GW_DEAD_LETTER], 3);
    assert_true(count_lines(dlq, "\"topic\":\"no spaces bad\"") == 3);
    gw_kafka_connector.close(s);
    tenv_free(&t2);
    routing_free(&r);
    tenv_free(&t);
    broker_stop(&b);
    rm_rf(dir);
    free(dir);
}

/* ---- a fatal producer error: the producer is recreated, nothing is lost ---- */

static void test_fatal_error_recreates_producer(void **state)
{
    (void)state;
    struct broker b;
    struct tenv t;
    struct routing r;
    broker_start(&b, "t.pose:4");
    tenv_init(&t, "k");
    routing_build(&r, SHARDS, ROUTES);
    char conf[512];
    snprintf(conf, sizeof(conf), "{\"type\": \"kafka\", \"brokers\": \"%s\"}", b.bootstrap);
    gw_sink *s = sink_open(&t, conf);
    const size_t n = 2000;
    make_msgs(&t, &r, n, 4, 0, "pose");
    submit_range(&t, s, 0, 200, 10000);
    uint64_t end = itr_now_ns() + 20000000000ull;
    while (t.done < 200 && itr_now_ns() < end)
        itr_loop_run_once(t.loop, 50);
    /* A sequence desynchronisation is fatal for an idempotent producer. */
    broker_cmd(&b, "error produce 1 OUT_OF_ORDER_SEQUENCE_NUMBER");
    submit_range(&t, s, 200, n, 20000);
    assert_true(run_until(&t, all_done, 40000));
    assert_int_equal(t.by_result[GW_DURABLE], n);
    assert_non_null(strstr(t.errors_text, "fatal producer error"));
    check_present(&b, &t, "t.pose", 0);
    gw_kafka_connector.close(s);
    routing_free(&r);
    tenv_free(&t);
    broker_stop(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_properties),
        cmocka_unit_test(test_exactly_once_with_headers),
        cmocka_unit_test(test_unreachable_broker),
        cmocka_unit_test(test_permanent_error_dead_letter),
        cmocka_unit_test(test_fatal_error_recreates_producer),
        cmocka_unit_test(test_spool_restart_torn_record),
        cmocka_unit_test(test_disk_buffer_handover),
        cmocka_unit_test(test_disk_buffer_full_waits),
        cmocka_unit_test(test_broker_down_10s_midstream),
        cmocka_unit_test(test_broker_down_10s_disk_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
