/* test_kafka_consumer.c: the "kafka" connector's reverse path against a kafka-mock-broker
 * process: records addressed by header or key are handed to env->publish (a fake gateway that
 * acknowledges from its own thread), a failed send is retried, a record without an address is
 * skipped, and the group's committed offsets (read back by a separate consumer) move only past
 * records whose send finished.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kafka/kafka_consumer.h"
#include "publish.h"
#include "test_kafka_common.h"

#define FAKE_MAX 256

/* A fake gateway: publish() queues the request; a thread completes it after a little while.
 * Sends to a peer whose key starts with "ee" fail the first time (not acknowledged). */
struct sent {
    int kind;
    char target[130];
    char topic[64];
    char body[64];
    int ok;
};

struct fake {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    pthread_t thread;
    int stop;
    struct {
        void (*done)(void *, const gw_publish_result *);
        void *arg;
        int ok;
    } queue[FAKE_MAX];
    size_t qn;
    struct sent sent[FAKE_MAX];
    size_t nsent, acked, failed;
    int refuse_next; /* answer ITR_ERR_WOULDBLOCK this many times */
};

static struct fake fake;

static int fake_publish(struct gw_gateway *g, const gw_publish_req *req)
{
    (void)g;
    pthread_mutex_lock(&fake.lock);
    if (fake.refuse_next > 0) {
        fake.refuse_next--;
        pthread_mutex_unlock(&fake.lock);
        return ITR_ERR_WOULDBLOCK;
    }
    if (fake.nsent == FAKE_MAX || fake.qn == FAKE_MAX) {
        pthread_mutex_unlock(&fake.lock);
        return ITR_ERR_WOULDBLOCK;
    }
    struct sent *s = &fake.sent[fake.nsent++];
    s->kind = req->kind;
    snprintf(s->target, sizeof(s->target), "%s", req->target ? req->target : "");
    snprintf(s->topic, sizeof(s->topic), "%.*s", (int)req->topic_len, req->topic);
    snprintf(s->body, sizeof(s->body), "%.*s", (int)req->body_len, (const char *)req->body);
    assert_int_equal(req->intent, ITR_INTENT_RELIABLE);
    /* Fail the first send to an "ee..." peer. */
    int first = 1;
    for (size_t i = 0; i + 1 < fake.nsent; i++)
        first &= strcmp(fake.sent[i].target, s->target) != 0;
    s->ok = !(first && !strncmp(s->target, "ee", 2));
    fake.queue[fake.qn].done = req->done;
    fake.queue[fake.qn].arg = req->arg;
    fake.queue[fake.qn].ok = s->ok;
    fake.qn++;
    pthread_cond_signal(&fake.cv);
    pthread_mutex_unlock(&fake.lock);
    return ITR_OK;
}

static void *fake_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fake.lock);
    while (!fake.stop) {
        if (!fake.qn) {
            pthread_cond_wait(&fake.cv, &fake.lock);
            continue;
        }
        void (*done)(void *, const gw_publish_result *) = fake.queue[0].done;
        void *darg = fake.queue[0].arg;
        int ok = fake.queue[0].ok;
        memmove(fake.queue, fake.queue + 1, (fake.qn - 1) * sizeof(fake.queue[0]));
        fake.qn--;
        if (ok)
            fake.acked++;
        else
            fake.failed++;
        pthread_mutex_unlock(&fake.lock);
        usleep(2000); /* the peer takes a moment to acknowledge */
        gw_publish_result res = {
            .status = ITR_OK, .targeted = 1, .sent = 1, .acked = ok ? 1 : 0, .failed = ok ? 0 : 1};
        done(darg, &res);
        pthread_mutex_lock(&fake.lock);
    }
    pthread_mutex_unlock(&fake.lock);
    return NULL;
}

static void fake_start(void)
{
    memset(&fake, 0, sizeof(fake));
    pthread_mutex_init(&fake.lock, NULL);
    pthread_cond_init(&fake.cv, NULL);
    assert_int_equal(pthread_create(&fake.thread, NULL, fake_thread, NULL), 0);
}

static void fake_stop(void)
{
    pthread_mutex_lock(&fake.lock);
    fake.stop = 1;
    pthread_cond_signal(&fake.cv);
    pthread_mutex_unlock(&fake.lock);
    pthread_join(fake.thread, NULL);
    pthread_mutex_destroy(&fake.lock);
    pthread_cond_destroy(&fake.cv);
}

static size_t fake_acked(void)
{
    pthread_mutex_lock(&fake.lock);
    size_t n = fake.acked;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

/* Produce one record with optional headers (NULL: none), synchronously. */
static void produce(const char *bootstrap, const char *topic, const char *key, const char *target,
                    const char *itopic, const char *body)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    if (target)
        rd_kafka_header_add(h, "intentra-target", -1, target, -1);
    if (itopic)
        rd_kafka_header_add(h, "intentra-topic", -1, itopic, -1);
    char kbuf[160], vbuf[64];
    snprintf(kbuf, sizeof(kbuf), "%s", key ? key : "");
    snprintf(vbuf, sizeof(vbuf), "%s", body);
    /* (librdkafka's macros do not parenthesise their arguments) */
    char *kp = key ? kbuf : NULL;
    size_t kl = key ? strlen(kbuf) : 0;
    rd_kafka_resp_err_t e =
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(kp, kl), RD_KAFKA_V_VALUE(vbuf, strlen(vbuf)),
                          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    assert_int_equal(e, 0);
    assert_int_equal(rd_kafka_flush(rk, 10000), 0);
    rd_kafka_destroy(rk);
}

/* Sum of the group's committed offsets over partitions 0..parts-1 of topic (-1 if any is
 * unknown). */
static int64_t committed_sum(const char *bootstrap, const char *group, const char *topic, int parts)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    int64_t sum = -1;
    if (rd_kafka_committed(rk, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        sum = 0;
        for (int p = 0; p < parts; p++)
            sum += l->elems[p].offset > 0 ? l->elems[p].offset : 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return sum;
}

struct wait_acked {
    size_t want;
};
static struct wait_acked wa;

static int acked_enough(struct tenv *t)
{
    (void)t;
    return fake_acked() >= wa.want;
}

static void run_reverse_path(int by_key)
{
    struct broker b;
    struct tenv t;
    const size_t n = 20;
    fake_start();
    broker_start(&b, "cmd:2");
    tenv_init(&t, "k");
    t.env.publish = fake_publish;
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "{\"type\": \"kafka\", \"brokers\": \"%s\", \"consumer\": {\"group_id\": \"g1\", "
             "\"topics\": [\"cmd\"], \"address\": \"%s\", \"topic\": \"%s\", "
             "\"properties\": {\"auto.offset.reset\": \"earliest\"}}}",
             b.bootstrap, by_key ? "key" : "header", by_key ? "fleet.{topic}" : "header");
    gw_sink *s = sink_open(&t, conf);
    /* n records to n peers (one of them "ee..." fails once), one without an address. */
    for (size_t i = 0; i < n; i++) {
        char target[80], body[32];
        snprintf(target, sizeof(target), "peer:%s%062zx", i == 7 ? "ee" : "0a", i);
        snprintf(body, sizeof(body), "command %zu", i);
        produce(b.bootstrap, "cmd", by_key ? target : "k", by_key ? NULL : target, "go", body);
    }
    produce(b.bootstrap, "cmd", by_key ? "nobody" : "k", NULL, "go", "lost");
    wa.want = n;
    if (!run_until(&t, acked_enough, 60000))
        fail_msg("only %zu of %zu sends acknowledged; errors:\n%s", fake_acked(), n, t.errors_text);
    /* Every peer got its command once acknowledged; the failed one was sent again. */
    pthread_mutex_lock(&fake.lock);
    assert_int_equal(fake.failed, 1);
    assert_int_equal(fake.nsent, n + 1);
    for (size_t i = 0; i < n; i++) {
        char want[80], body[32];
        snprintf(want, sizeof(want), "%s%062zx", i == 7 ? "ee" : "0a", i);
        snprintf(body, sizeof(body), "command %zu", i);
        size_t hits = 0;
        for (size_t k = 0; k < fake.nsent; k++) {
            if (!strcmp(fake.sent[k].target, want)) {
                hits++;
                assert_int_equal(fake.sent[k].kind, GW_TARGET_PEER);
                assert_string_equal(fake.sent[k].body, body);
                assert_string_equal(fake.sent[k].topic, by_key ? "fleet.cmd" : "go");
            }
        }
        assert_int_equal(hits, i == 7 ? 2 : 1);
    }
    pthread_mutex_unlock(&fake.lock);
    assert_non_null(strstr(t.errors_text, "no valid address"));
    /* All n + 1 records committed (the skipped one too), once their sends finished. */
    int64_t sum = -1;
    uint64_t end = itr_now_ns() + 20000000000ull;
    while (itr_now_ns() < end) {
        itr_loop_run_once(t.loop, 200);
        sum = committed_sum(b.bootstrap, "g1", "cmd", 2);
        if (sum == (int64_t)n + 1)
            break;
    }
    assert_int_equal(sum, (int64_t)n + 1);
    gw_kafka_connector.close(s);
    tenv_free(&t);
    broker_stop(&b);
    fake_stop();
}

static void test_reverse_path_by_header(void **state)
{
    (void)state;
    run_reverse_path(0);
}

static void test_reverse_path_by_key(void **state)
{
    (void)state;
    run_reverse_path(1);
}

/* A record whose send never finished is not committed: the next consumer gets it again. */
static void test_uncommitted_redelivered(void **state)
{
    (void)state;
    struct broker b;
    fake_start();
    broker_start(&b, "cmd:1");
    char target[80];
    snprintf(target, sizeof(target), "peer:%064x", 5);
    produce(b.bootstrap, "cmd", "k", target, NULL, "once");
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "{\"type\": \"kafka\", \"brokers\": \"%s\", \"consumer\": {\"group_id\": \"g2\", "
             "\"topics\": [\"cmd\"], \"properties\": {\"auto.offset.reset\": \"earliest\", "
             "\"session.timeout.ms\": \"3000\", \"heartbeat.interval.ms\": \"500\"}}}",
             b.bootstrap);
    /* (The mock broker lets a new member join only once the old one's session expired.) */
    /* First run: the gateway's mailboxes are full for the whole run. */
    struct tenv t;
    tenv_init(&t, "k");
    t.env.publish = fake_publish;
    fake.refuse_next = 1000000;
    gw_sink *s = sink_open(&t, conf);
    uint64_t end = itr_now_ns() + 8000000000ull;
    while (itr_now_ns() < end)
        itr_loop_run_once(t.loop, 100);
    assert_int_equal(fake_acked(), 0);
    gw_kafka_connector.close(s);
    tenv_free(&t);
    assert_true(committed_sum(b.bootstrap, "g2", "cmd", 1) <= 0);
    /* Second run: delivered. */
    fake.refuse_next = 0;
    tenv_init(&t, "k");
    t.env.publish = fake_publish;
    s = sink_open(&t, conf);
    wa.want = 1;
    assert_true(run_until(&t, acked_enough, 30000));
    int64_t sum = -1;
    end = itr_now_ns() + 20000000000ull;
    while (sum != 1 && itr_now_ns() < end) {
        itr_loop_run_once(t.loop, 200);
        sum = committed_sum(b.bootstrap, "g2", "cmd", 1);
    }
    assert_int_equal(sum, 1);
    gw_kafka_connector.close(s);
    tenv_free(&t);
    broker_stop(&b);
    fake_stop();
}

static void test_parse_target(void **state)
{
    (void)state;
    int kind;
    const char *tg;
    size_t tl;
    char peer[80];
    snprintf(peer, sizeof(peer), "peer:%064x", 1);
    assert_int_equal(kafka_parse_target(peer, strlen(peer), &kind, &tg, &tl), 0);
    assert_int_equal(kind, GW_TARGET_PEER);
    assert_int_equal(tl, 64);
    assert_int_equal(kafka_parse_target("shard:fleet_a", 13, &kind, &tg, &tl), 0);
    assert_int_equal(kind, GW_TARGET_SHARD);
    assert_int_equal(tl, 7);
    assert_int_equal(kafka_parse_target("all", 3, &kind, &tg, &tl), 0);
    assert_int_equal(kind, GW_TARGET_ALL);
    assert_int_equal(kafka_parse_target("peer:12", 7, &kind, &tg, &tl), -1);
    assert_int_equal(kafka_parse_target("shard:", 6, &kind, &tg, &tl), -1);
    assert_int_equal(kafka_parse_target("shard:a b", 9, &kind, &tg, &tl), -1);
    assert_int_equal(kafka_parse_target("everyone", 8, &kind, &tg, &tl), -1);
    peer[20] = 'g';
    assert_int_equal(kafka_parse_target(peer, strlen(peer), &kind, &tg, &tl), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_target),
        cmocka_unit_test(test_reverse_path_by_header),
        cmocka_unit_test(test_reverse_path_by_key),
        cmocka_unit_test(test_uncommitted_redelivered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
