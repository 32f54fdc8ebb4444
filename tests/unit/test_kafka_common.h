/* test_kafka_common.h: helpers for the Kafka connector tests: a kafka-mock-broker process, a
 * test sink environment (loop, completion log), messages routed by a real router, and a
 * librdkafka consumer that reads back what reached the broker. Header-only: one test program.
 */
#ifndef TEST_KAFKA_COMMON_H
#define TEST_KAFKA_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#include <intentra/driver.h>
#include <intentra/endpoint.h>
#include <intentra/error.h>

#include "connector.h"
#include "router.h"
#include "shards.h"

extern char **environ;
extern const gw_connector gw_kafka_connector;

/* ---- the broker process ---- */

struct broker {
    pid_t pid;
    FILE *in, *out;
    char bootstrap[256];
};

static __attribute__((unused)) void broker_start(struct broker *b, const char *topics)
{
    int to[2], from[2];
    memset(b, 0, sizeof(*b));
    if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
        fail_msg("pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    char *argv[32];
    int argc = 0;
    char buf[512], prog[] = KAFKA_MOCK_BROKER, flag[] = "--topic";
    argv[argc++] = prog;
    snprintf(buf, sizeof(buf), "%s", topics ? topics : "");
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && argc < 30;
         t = strtok_r(NULL, " ", &save)) {
        argv[argc++] = flag;
        argv[argc++] = t;
    }
    argv[argc] = NULL;
    if (posix_spawn(&b->pid, KAFKA_MOCK_BROKER, &fa, NULL, argv, environ) != 0)
        fail_msg("spawn %s failed", KAFKA_MOCK_BROKER);
    posix_spawn_file_actions_destroy(&fa);
    close(to[0]);
    close(from[1]);
    b->in = fdopen(to[1], "w");
    b->out = fdopen(from[0], "r");
    assert_non_null(b->in);
    assert_non_null(b->out);
    if (!fgets(b->bootstrap, sizeof(b->bootstrap), b->out))
        fail_msg("kafka-mock-broker printed no address");
    b->bootstrap[strcspn(b->bootstrap, "\r\n")] = 0;
    assert_true(strncmp(b->bootstrap, "127.0.0.1:", 10) == 0);
}

static __attribute__((unused)) void broker_cmd(struct broker *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static __attribute__((unused)) void broker_cmd(struct broker *b, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vfprintf(b->in, fmt, ap);
    va_end(ap);
    fputc('\n', b->in);
    fflush(b->in);
    if (!fgets(line, sizeof(line), b->out))
        fail_msg("kafka-mock-broker went away");
    if (strncmp(line, "ok", 2) != 0)
        fail_msg("kafka-mock-broker: %s", line);
}

static __attribute__((unused)) void broker_stop(struct broker *b)
{
    if (!b->pid)
        return;
    fclose(b->in); /* EOF: the broker exits */
    int st;
    for (int i = 0; i < 100; i++) {
        if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
            b->pid = 0;
            break;
        }
        usleep(50000);
    }
    if (b->pid) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, &st, 0);
        b->pid = 0;
    }
    fclose(b->out);
}

/* ---- the sink environment ---- */

struct tmsg {
    gw_msg m;
    gw_delivery d;
    char topic[32];
    char body[96];
    int result; /* -1 pending, else gw_result */
    char reason[32];
    int order; /* completion order */
};

struct tenv {
    gw_sink_env env;
    itr_loop *loop;
    size_t done, by_result[3];
    size_t broker_down;
    int errors;
    char last_error[512];
    char last_stage[32];
    char errors_text[8192]; /* every error line, for searching */
    char logs_text[8192];   /* every log line */
    int ready_calls;
    struct tmsg *msgs;
    size_t nmsgs;
};

static __attribute__((unused)) void tenv_complete(gw_sink_env *env, gw_delivery *d, gw_result r,
                                                  const char *reason)
{
    struct tenv *t = (struct tenv *)env;
    struct tmsg *tm = (struct tmsg *)((char *)d - offsetof(struct tmsg, d));
    if (tm->result != -1)
        fail_msg("delivery completed twice");
    tm->result = (int)r;
    tm->order = (int)t->done;
    snprintf(tm->reason, sizeof(tm->reason), "%s", reason ? reason : "");
    t->done++;
    t->by_result[r]++;
    if (reason && !strcmp(reason, "broker_down"))
        t->broker_down++;
}

static __attribute__((unused)) void tenv_error(gw_sink_env *env, const char *stage, const char *fmt,
                                               ...) __attribute__((format(printf, 3, 4)));
static __attribute__((unused)) void tenv_error(gw_sink_env *env, const char *stage, const char *fmt,
                                               ...)
{
    struct tenv *t = (struct tenv *)env;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->last_error, sizeof(t->last_error), fmt, ap);
    va_end(ap);
    snprintf(t->last_stage, sizeof(t->last_stage), "%s", stage);
    t->errors++;
    size_t used = strlen(t->errors_text);
    if (used + 2 < sizeof(t->errors_text))
        snprintf(t->errors_text + used, sizeof(t->errors_text) - used, "%s: %s\n", stage,
                 t->last_error);
    if (getenv("TEST_KAFKA_VERBOSE"))
        fprintf(stderr, "error %s: %s\n", stage, t->last_error);
}

static __attribute__((unused)) void tenv_log(gw_sink_env *env, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static __attribute__((unused)) void tenv_log(gw_sink_env *env, int level, const char *fmt, ...)
{
    struct tenv *t = (struct tenv *)env;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    size_t used = strlen(t->logs_text);
    /* The connector's own lines only (librdkafka's would fill the buffer). */
    if (!strncmp(line, "kafka:", 6) && used + 2 < sizeof(t->logs_text))
        snprintf(t->logs_text + used, sizeof(t->logs_text) - used, "%s\n", line);
    if (getenv("TEST_KAFKA_VERBOSE"))
        fprintf(stderr, "log %d: %s\n", level, line);
}

static __attribute__((unused)) void tenv_ready(gw_sink_env *env)
{
    ((struct tenv *)env)->ready_calls++;
}

static __attribute__((unused)) void tenv_init(struct tenv *t, const char *name)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(itr_loop_new(&t->loop), 0);
    t->env.name = name;
    t->env.loop = t->loop;
    t->env.complete = tenv_complete;
    t->env.error = tenv_error;
    t->env.log = tenv_log;
    t->env.ready = tenv_ready;
}

static __attribute__((unused)) void tenv_free(struct tenv *t)
{
    itr_loop_free(t->loop);
    free(t->msgs);
}

/* ---- routing ---- */

struct routing {
    gw_shards *shards;
    gw_router *router;
};

static __attribute__((unused)) void routing_build(struct routing *r, const char *shards_json,
                                                  const char *routes_json)
{
    char err[512];
    cJSON *sj = cJSON_Parse(shards_json), *rj = cJSON_Parse(routes_json);
    assert_non_null(sj);
    assert_non_null(rj);
    const char *names[] = {"k"};
    if (gw_shards_build(&r->shards, sj, "test", "shards", err, sizeof(err), NULL, 0))
        fail_msg("shards: %s", err);
    if (gw_router_compile(&r->router, rj, "test", "routes", r->shards, names, 1, err, sizeof(err),
                          NULL, 0))
        fail_msg("routes: %s", err);
    cJSON_Delete(sj);
    cJSON_Delete(rj);
}

static __attribute__((unused)) void routing_free(struct routing *r)
{
    gw_router_free(r->router);
    gw_shards_free(r->shards);
}

/* Peer p's key: 32 bytes of p+1 (lower-case hex in peer_hex). */
static __attribute__((unused)) void peer_key(unsigned p, uint8_t key[32], char hex[65])
{
    memset(key, (int)(p + 1), 32);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
}

/* n messages: message i from peer i % peers with seq i / peers, every rt_every-th Realtime
 * (0: none). */
static __attribute__((unused)) void make_msgs(struct tenv *t, const struct routing *r, size_t n,
                                              unsigned peers, unsigned rt_every, const char *topic)
{
    t->msgs = calloc(n, sizeof(*t->msgs));
    assert_non_null(t->msgs);
    t->nmsgs = n;
    for (size_t i = 0; i < n; i++) {
        struct tmsg *tm = &t->msgs[i];
        uint8_t key[32];
        unsigned p = (unsigned)(i % peers);
        peer_key(p, key, tm->m.peer_hex);
        const gw_shard *sh = gw_shards_lookup_peer(r->shards, key);
        tm->m.shard = sh;
        tm->m.shard_name = sh ? gw_shard_id(sh) : "default";
        tm->m.shard_name_len = (uint32_t)strlen(tm->m.shard_name);
        tm->m.seq = (uint32_t)(i / peers);
        tm->m.intent =
            (rt_every && i % rt_every == rt_every - 1) ? ITR_INTENT_REALTIME : ITR_INTENT_RELIABLE;
        snprintf(tm->topic, sizeof(tm->topic), "%s", topic);
        tm->m.topic = tm->topic;
        tm->m.topic_len = (uint16_t)strlen(tm->topic);
        int bl = snprintf(tm->body, sizeof(tm->body), "{\"peer\":%u,\"seq\":%u}", p, tm->m.seq);
        tm->m.body = (const uint8_t *)tm->body;
        tm->m.body_len = (uint32_t)bl;
        tm->m.recv_wall_ns = itr_wall_ns();
        tm->m.recv_mono_ns = itr_now_ns();
        const gw_route_sink *out[GW_MAX_DELIVERIES];
        size_t k = gw_router_match(r->router, sh, key, tm->topic, tm->m.topic_len, out, NULL);
        assert_true(k >= 1);
        tm->d.msg = &tm->m;
        tm->d.rs = out[0];
        tm->d.reliable = tm->m.intent == ITR_INTENT_RELIABLE;
        tm->result = -1;
    }
}

/* Run the loop until cond(t) or timeout. Returns 1 if cond became true. */
static __attribute__((unused)) int run_until(struct tenv *t, int (*cond)(struct tenv *),
                                             int timeout_ms)
{
    uint64_t end = itr_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!cond(t)) {
        if (itr_now_ns() >= end)
            return 0;
        itr_loop_run_once(t->loop, 50);
    }
    return 1;
}

static __attribute__((unused)) int all_done(struct tenv *t)
{
    return t->done == t->nmsgs;
}

/* Submit msgs[from, to) through the connector, waiting (running the loop) when refused. */
static __attribute__((unused)) void submit_range(struct tenv *t, gw_sink *s, size_t from, size_t to,
                                                 int timeout_ms)
{
    gw_delivery *batch[256];
    uint64_t end = itr_now_ns() + (uint64_t)timeout_ms * 1000000u;
    size_t i = from;
    while (i < to) {
        size_t n = 0;
        while (n < 256 && i + n < to) {
            batch[n] = &t->msgs[i + n].d;
            n++;
        }
        size_t taken = gw_kafka_connector.submit(s, batch, n);
        i += taken;
        if (taken < n) {
            if (itr_now_ns() >= end)
                fail_msg("submit refused for %d ms", timeout_ms);
            itr_loop_run_once(t->loop, 20);
        }
    }
}

static __attribute__((unused)) gw_sink *sink_open(struct tenv *t, const char *json)
{
    cJSON *conf = cJSON_Parse(json);
    assert_non_null(conf);
    char err[GW_ERR_LEN] = "";
    gw_sink *s = NULL;
    int rc = gw_kafka_connector.open(&s, conf, &t->env, err, sizeof(err));
    cJSON_Delete(conf);
    if (rc)
        fail_msg("open: %s", err);
    return s;
}

/* ---- reading back ---- */

struct seen {
    char peer[65];
    uint32_t seq;
    int32_t partition;
    int64_t offset;
    char intent[16];
    char shard[64];
    char itopic[64];
    char key[80];
    int has_recv;
};

static __attribute__((unused)) void header_str(rd_kafka_headers_t *h, const char *name, char *out,
                                               size_t cap)
{
    const void *v;
    size_t n;
    out[0] = 0;
    if (h && rd_kafka_header_get_last(h, name, &v, &n) == 0 && v)
        snprintf(out, cap, "%.*s", (int)n, (const char *)v);
}

/* Read the whole topic from the beginning. Returns the number of records (at most cap). */
static __attribute__((unused)) size_t consume_topic(const char *bootstrap, const char *topic,
                                                    struct seen *out, size_t cap, size_t expect,
                                                    int timeout_ms)
{
    char errstr[512], gid[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(gid, sizeof(gid), "verify-%d-%" PRIu64, (int)getpid(), itr_now_ns());
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", gid, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int parts = 0;
    for (int i = 0; i < 50 && !parts; i++) {
        if (rd_kafka_metadata(rk, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 && !md->topics[0].err)
                parts = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
        }
        if (!parts)
            usleep(100000);
    }
    rd_kafka_topic_destroy(rkt);
    assert_true(parts > 0);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    int eof[256] = {0};
    size_t n = 0;
    uint64_t end = itr_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (itr_now_ns() < end) {
        int all_eof = 1;
        for (int p = 0; p < parts && p < 256; p++)
            all_eof &= eof[p];
        if (all_eof && n >= expect)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < 256)
                eof[m->partition] = 1;
        } else if (!m->err) {
            if (m->partition >= 0 && m->partition < 256)
                eof[m->partition] = 0;
            if (n < cap) {
                struct seen *s = &out[n];
                rd_kafka_headers_t *h = NULL;
                char seq[16], recv[32];
                rd_kafka_message_headers(m, &h);
                header_str(h, "intentra-peer", s->peer, sizeof(s->peer));
                header_str(h, "intentra-seq", seq, sizeof(seq));
                header_str(h, "intentra-intent", s->intent, sizeof(s->intent));
                header_str(h, "intentra-shard", s->shard, sizeof(s->shard));
                header_str(h, "intentra-topic", s->itopic, sizeof(s->itopic));
                header_str(h, "intentra-received-ns", recv, sizeof(recv));
                s->has_recv = recv[0] != 0;
                s->seq = (uint32_t)strtoul(seq, NULL, 10);
                s->partition = m->partition;
                s->offset = m->offset;
                snprintf(s->key, sizeof(s->key), "%.*s", m->key ? (int)m->key_len : 0,
                         m->key ? (const char *)m->key : "");
            }
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static __attribute__((unused)) int seen_cmp(const void *a, const void *b)
{
    const struct seen *x = a, *y = b;
    int c = strcmp(x->peer, y->peer);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort by (peer, seq) for seen_count. Per-peer order checks must run before. */
static __attribute__((unused)) void seen_sort(struct seen *seen, size_t n)
{
    qsort(seen, n, sizeof(*seen), seen_cmp);
}

/* How often (peer_hex, seq) occurs in sorted seen. */
static __attribute__((unused)) size_t seen_count(const struct seen *seen, size_t n,
                                                 const char *peer, uint32_t seq)
{
    struct seen key;
    snprintf(key.peer, sizeof(key.peer), "%s", peer);
    key.seq = seq;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (seen_cmp(&seen[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t c = 0;
    while (lo + c < n && seen_cmp(&seen[lo + c], &key) == 0)
        c++;
    return c;
}

#endif
