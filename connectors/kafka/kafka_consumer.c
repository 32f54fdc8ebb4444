/* kafka_consumer.c: the reverse path (kafka_consumer.h): Kafka records -> env->publish().
 *
 * Sink thread only, except publish_done (a gateway thread), which hands finished publishes
 * back through the hub: a mutex-protected list plus an eventfd watched on the sink's loop.
 * The hub is reference-counted (one reference per publish in progress plus the consumer's)
 * so that a done callback arriving after close finds it alive.
 *
 * Offsets: records of a partition are kept in consumption order; a partition's committed
 * offset moves past a record only when it and every record before it finished, so a record
 * whose publish never finished is consumed again after a restart or rebalance (at least once).
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <intentra/driver.h>
#include <intentra/endpoint.h>
#include <intentra/error.h>

#include "kafka_consumer.h"
#include "publish.h"

#define CONSUMER_TARGET_HEADER "intentra-target"
#define CONSUMER_TOPIC_HEADER  "intentra-topic"
#define CONSUMER_RETRY_MIN_NS  (200ull * 1000 * 1000)
#define CONSUMER_RETRY_MAX_NS  (30ull * 1000 * 1000 * 1000)
#define CONSUMER_CLOSE_WAIT_NS (5ull * 1000 * 1000 * 1000)
#define CONSUMER_TOPIC_MAX     1024

struct crec;

/* Finished publishes on their way back to the sink thread. */
struct hub {
    pthread_mutex_t lock;
    struct crec *done; /* LIFO, reversed when taken */
    int efd;
    int closed; /* the consumer is gone: free records as they finish */
    unsigned refs;
};

/* A partition being consumed: its records in consumption order. */
struct part {
    char *topic;
    int32_t partition;
    struct crec *head, *tail;
    int64_t commit_next; /* offset to commit (the next record to consume), -1: none */
    int64_t committed;
    int assigned;
};

/* One consumed record. */
struct crec {
    struct kafka_consumer *c; /* NULL once the consumer closed (freed by publish_done) */
    struct hub *hub;
    struct crec *all_prev, *all_next; /* every record of the consumer */
    struct part *part;                /* NULL once its partition was revoked */
    struct crec *next;                /* in its partition */
    struct crec *done_next;
    int64_t offset;
    int kind; /* gw_target_kind */
    char *target;
    char *topic;
    size_t topic_len;
    void *body;
    size_t body_len;
    uint32_t attempts;
    int finished;   /* may be committed */
    int publishing; /* done callback pending */
    gw_publish_result res;
    uint64_t backoff_ns;
    itr_timer retry_due;
};

struct kafka_consumer {
    const struct kafka_conf *kc;
    const struct kafka_consumer_conf *cc;
    gw_sink_env *env;
    struct kafka_dlq *dlq;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int pipe[2];
    struct hub *hub;
    struct part **parts;
    size_t nparts, parts_cap;
    struct crec all;  /* list sentinel */
    size_t in_flight; /* records consumed and not finished */
    int closing;
    _Atomic uint64_t received, published, retried, invalid, committed;
};

static void serve(struct kafka_consumer *c);
static void publish_record(struct crec *r);

static void bump(_Atomic uint64_t *v)
{
    atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

/* ---- addresses ---- */

int kafka_parse_target(const char *s, size_t len, int *kind, const char **target,
                       size_t *target_len)
{
    if (len == 3 && !memcmp(s, "all", 3)) {
        *kind = GW_TARGET_ALL;
        *target = s;
        *target_len = 0;
        return 0;
    }
    if (len == 5 + 64 && !memcmp(s, "peer:", 5)) {
        for (size_t i = 5; i < len; i++) {
            char ch = s[i];
            if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
                return -1;
        }
        *kind = GW_TARGET_PEER;
        *target = s + 5;
        *target_len = 64;
        return 0;
    }
    if (len > 6 && len <= 6 + 127 && !memcmp(s, "shard:", 6)) {
        for (size_t i = 6; i < len; i++) {
            char ch = s[i];
            if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == '.' || ch == '-'))
                return -1;
        }
        *kind = GW_TARGET_SHARD;
        *target = s + 6;
        *target_len = len - 6;
        return 0;
    }
    return -1;
}

/* ---- the hub ---- */

static void hub_unref(struct hub *h)
{
    pthread_mutex_lock(&h->lock);
    unsigned left = --h->refs;
    pthread_mutex_unlock(&h->lock);
    if (left)
        return;
    pthread_mutex_destroy(&h->lock);
    if (h->efd >= 0)
        close(h->efd);
    free(h);
}

static void crec_free(struct crec *r)
{
    if (r->c) {
        itr_loop_timer_cancel(r->c->env->loop, &r->retry_due);
        r->all_prev->all_next = r->all_next;
        r->all_next->all_prev = r->all_prev;
    }
    free(r->target);
    free(r->topic);
    free(r->body);
    free(r);
}

/* Any gateway thread. */
static void publish_done(void *arg, const gw_publish_result *res)
{
    struct crec *r = arg;
    struct hub *h = r->hub;
    pthread_mutex_lock(&h->lock);
    if (h->closed) {
        pthread_mutex_unlock(&h->lock);
        crec_free(r);
        hub_unref(h);
        return;
    }
    r->res = *res;
    r->done_next = h->done;
    h->done = r;
    pthread_mutex_unlock(&h->lock);
    uint64_t one = 1;
    if (write(h->efd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is already non-zero, the sink thread will look */
    }
    hub_unref(h);
}

/* ---- partitions and commits ---- */

static struct part *part_find(struct kafka_consumer *c, const char *topic, int32_t partition,
                              int create)
{
    for (size_t i = 0; i < c->nparts; i++) {
        struct part *p = c->parts[i];
        if (p->partition == partition && !strcmp(p->topic, topic))
            return p;
    }
    if (!create)
        return NULL;
    if (c->nparts == c->parts_cap) {
        size_t cap = c->parts_cap ? c->parts_cap * 2 : 16;
        struct part **n = realloc(c->parts, cap * sizeof(*n));
        if (!n)
            return NULL;
        c->parts = n;
        c->parts_cap = cap;
    }
    struct part *p = calloc(1, sizeof(*p));
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->commit_next = p->committed = -1;
    c->parts[c->nparts++] = p;
    return p;
}

/* Drop finished records from the front of p; the commit position follows. */
static void part_advance(struct part *p)
{
    while (p->head && p->head->finished) {
        struct crec *r = p->head;
        p->head = r->next;
        if (!p->head)
            p->tail = NULL;
        p->commit_next = r->offset + 1;
        crec_free(r);
    }
}

/* Commit every partition whose position moved (asynchronously; the result is an event). */
static void commit_ready(struct kafka_consumer *c)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    for (size_t i = 0; i < c->nparts; i++) {
        struct part *p = c->parts[i];
        if (!p->assigned || p->commit_next < 0 || p->commit_next == p->committed)
            continue;
        if (!l)
            l = rd_kafka_topic_partition_list_new(4);
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->commit_next;
        p->committed = p->commit_next;
    }
    if (!l)
        return;
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, l, 1);
    if (err)
        c->env->error(c->env, "delivery", "kafka consumer: commit: %s", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(l);
}

static void record_finished(struct kafka_consumer *c, struct crec *r)
{
    r->finished = 1;
    c->in_flight--;
    if (r->part) {
        part_advance(r->part);
    } else {
        crec_free(r); /* its partition was revoked: another member consumes it again */
    }
}

/* ---- publishing ---- */

static void on_record_retry(void *arg, uint64_t now)
{
    struct crec *r = arg;
    (void)now;
    publish_record(r);
}

static void retry_later(struct crec *r)
{
    struct kafka_consumer *c = r->c;
    r->backoff_ns = r->backoff_ns ? r->backoff_ns * 2 : CONSUMER_RETRY_MIN_NS;
    if (r->backoff_ns > CONSUMER_RETRY_MAX_NS)
        r->backoff_ns = CONSUMER_RETRY_MAX_NS;
    bump(&c->retried);
    itr_loop_timer_set(c->env->loop, &r->retry_due, itr_now_ns() + r->backoff_ns);
}

/* A record that will not be published: into the dead-letter file (or only the log). */
static void give_up(struct kafka_consumer *c, struct crec *r, const char *why)
{
    c->env->error(c->env, "delivery",
                  "kafka consumer: %s[%" PRId32 "]@%" PRId64 " to %s: %s after %" PRIu32
                  " attempts: given up",
                  r->part ? r->part->topic : "?", r->part ? r->part->partition : -1, r->offset,
                  r->target ? r->target : "all", why, r->attempts);
    if (c->dlq) {
        gw_spool_header h = {CONSUMER_TARGET_HEADER, sizeof(CONSUMER_TARGET_HEADER) - 1,
                             r->target ? r->target : "all", r->target ? strlen(r->target) : 3};
        gw_spool_record rec = {.partition = r->part ? r->part->partition : -1,
                               .topic = r->topic,
                               .topic_len = r->topic_len,
                               .headers = &h,
                               .header_count = 1,
                               .value = r->body,
                               .value_len = r->body_len};
        if (kafka_dlq_add(c->dlq, c->env->name, "publish_failed", why, &rec) ||
            kafka_dlq_commit(c->dlq))
            c->env->error(c->env, "dead_letter", "writing %s: %s", kafka_dlq_path(c->dlq),
                          strerror(errno));
    }
}

static void publish_record(struct crec *r)
{
    struct kafka_consumer *c = r->c;
    gw_publish_req req = {
        .kind = (gw_target_kind)r->kind,
        .target = r->target ? r->target : "",
        .intent = c->cc->reliable ? ITR_INTENT_RELIABLE : ITR_INTENT_REALTIME,
        .topic = r->topic,
        .topic_len = r->topic_len,
        .body = r->body,
        .body_len = r->body_len,
        .timeout_ms = c->cc->timeout_ms,
        .done = publish_done,
        .arg = r,
    };
    r->attempts++;
    r->publishing = 1;
    pthread_mutex_lock(&c->hub->lock);
    c->hub->refs++; /* held by the publish until its done callback */
    pthread_mutex_unlock(&c->hub->lock);
    int rc = c->env->publish(c->env->gateway, &req);
    if (rc == ITR_OK)
        return;
    r->publishing = 0;
    hub_unref(c->hub);
    if (rc == ITR_ERR_INVALID) {
        bump(&c->invalid);
        give_up(c, r, "the gateway refused the message (bad target, topic or size)");
        record_finished(c, r);
        commit_ready(c);
        return;
    }
    /* Mailboxes full or the gateway draining: the same record again, later. */
    retry_later(r);
}

static void publish_finished(struct kafka_consumer *c, struct crec *r)
{
    const gw_publish_result *res = &r->res;
    r->publishing = 0;
    int ok = res->status == ITR_OK &&
             (c->cc->reliable ? res->targeted > 0 && res->acked == res->targeted : 1);
    if (ok) {
        bump(&c->published);
        record_finished(c, r);
        return;
    }
    char why[160];
    snprintf(why, sizeof(why),
             "%s (targeted %" PRIu32 ", acknowledged %" PRIu32 ", failed %" PRIu32 ")",
             res->status ? itr_strerror(res->status) : "not acknowledged by every peer",
             res->targeted, res->acked, res->failed);
    if (c->cc->max_attempts && r->attempts >= c->cc->max_attempts) {
        give_up(c, r, why);
        record_finished(c, r);
        return;
    }
    retry_later(r);
}

/* Take the publishes that finished from the hub, oldest first, and settle them. */
static void take_finished(struct kafka_consumer *c)
{
    pthread_mutex_lock(&c->hub->lock);
    struct crec *list = c->hub->done;
    c->hub->done = NULL;
    pthread_mutex_unlock(&c->hub->lock);
    struct crec *rev = NULL;
    while (list) { /* oldest first */
        struct crec *n = list->done_next;
        list->done_next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        struct crec *n = rev->done_next;
        publish_finished(c, rev);
        rev = n;
    }
}

static void on_hub_ready(void *arg, int fd, uint32_t events)
{
    struct kafka_consumer *c = arg;
    uint64_t v;
    (void)events;
    if (read(fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: spurious */
    }
    take_finished(c);
    commit_ready(c);
    serve(c); /* room again for records left in the queue */
}

/* ---- consuming ---- */

static int header_value(const rd_kafka_message_t *m, const char *name, const char **val,
                        size_t *len)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    if (rd_kafka_message_headers(m, &h) || !h || rd_kafka_header_get_last(h, name, &v, len) || !v)
        return -1;
    *val = v;
    return 0;
}

/* The intentra topic for m: "header", or the template over {topic} and {key}. */
static char *record_topic(struct kafka_consumer *c, const rd_kafka_message_t *m, size_t *len)
{
    const char *kt = rd_kafka_topic_name(m->rkt);
    char out[CONSUMER_TOPIC_MAX + 1];
    size_t o = 0;
    if (!c->cc->topic) {
        const char *v;
        size_t n;
        if (header_value(m, CONSUMER_TOPIC_HEADER, &v, &n) || n == 0 || n > CONSUMER_TOPIC_MAX) {
            v = kt;
            n = strlen(kt);
        }
        memcpy(out, v, n);
        o = n;
    } else {
        for (const char *p = c->cc->topic; *p && o < CONSUMER_TOPIC_MAX; p++) {
            const char *add = NULL;
            size_t n = 0;
            if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
                out[o++] = *p++;
                continue;
            }
            if (!strncmp(p, "{topic}", 7)) {
                add = kt;
                n = strlen(kt);
                p += 6;
            } else if (!strncmp(p, "{key}", 5)) {
                add = m->key;
                n = m->key ? m->key_len : 0;
                p += 4;
            } else {
                out[o++] = *p;
                continue;
            }
            if (n > CONSUMER_TOPIC_MAX - o)
                n = CONSUMER_TOPIC_MAX - o;
            memcpy(out + o, add, n);
            o += n;
        }
    }
    char *t = malloc(o + 1);
    if (t) {
        memcpy(t, out, o);
        t[o] = 0;
    }
    *len = o;
    return t;
}

static void handle_record(struct kafka_consumer *c, const rd_kafka_message_t *m)
{
    const char *kt = rd_kafka_topic_name(m->rkt);
    struct part *p = part_find(c, kt, m->partition, 1);
    struct crec *r = calloc(1, sizeof(*r));
    if (!p || !r) {
        /* Not committed: consumed again after a restart. */
        free(r);
        c->env->error(c->env, "other", "kafka consumer: out of memory");
        return;
    }
    bump(&c->received);
    r->c = c;
    r->hub = c->hub;
    r->all_next = c->all.all_next;
    r->all_prev = &c->all;
    c->all.all_next->all_prev = r;
    c->all.all_next = r;
    r->part = p;
    r->offset = m->offset;
    itr_timer_init(&r->retry_due, on_record_retry, r);
    if (p->tail)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;
    c->in_flight++;

    const char *addr = NULL;
    size_t alen = 0;
    if (c->cc->address == KAFKA_ADDRESS_KEY) {
        addr = m->key;
        alen = m->key ? m->key_len : 0;
    } else if (header_value(m, CONSUMER_TARGET_HEADER, &addr, &alen)) {
        addr = NULL;
    }
    const char *target;
    size_t tlen;
    if (!addr || kafka_parse_target(addr, alen, &r->kind, &target, &tlen)) {
        bump(&c->invalid);
        c->env->error(c->env, "other",
                      "kafka consumer: %s[%" PRId32 "]@%" PRId64 ": no valid address in the "
                      "record's %s (expected \"peer:<64 hex>\", \"shard:<id>\" or \"all\"): "
                      "skipped",
                      kt, m->partition, m->offset,
                      c->cc->address == KAFKA_ADDRESS_KEY ? "key" : "intentra-target header");
        record_finished(c, r);
        return;
    }
    /* Not strndup: the key is not NUL-terminated and ASan's strndup reads one byte past n. */
    r->target = tlen ? malloc(tlen + 1) : NULL;
    if (r->target) {
        memcpy(r->target, target, tlen);
        r->target[tlen] = 0;
    }
    r->topic = record_topic(c, m, &r->topic_len);
    r->body_len = m->payload ? m->len : 0;
    r->body = malloc(r->body_len ? r->body_len : 1);
    if ((tlen && !r->target) || !r->topic || !r->body) {
        /* Left unfinished: its offset is never committed, so it is consumed again after a
         * restart (the partition's commits wait behind it meanwhile). */
        c->env->error(c->env, "other",
                      "kafka consumer: out of memory: record %s[%" PRId32 "]@%" PRId64
                      " left uncommitted",
                      kt, m->partition, m->offset);
        return;
    }
    if (r->body_len)
        memcpy(r->body, m->payload, r->body_len);
    publish_record(r);
}

static void handle_rebalance(struct kafka_consumer *c, rd_kafka_event_t *ev)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_event_topic_partition_list(ev);
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(c->rk), "COOPERATIVE");
    rd_kafka_resp_err_t what = rd_kafka_event_error(ev);
    if (what == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; l && i < l->cnt; i++) {
            struct part *p = part_find(c, l->elems[i].topic, l->elems[i].partition, 1);
            if (p) {
                p->assigned = 1;
                p->commit_next = p->committed = -1;
            }
        }
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(c->rk, l);
            if (e) {
                c->env->error(c->env, "connect", "kafka consumer: assign: %s",
                              rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(c->rk, l);
        }
        return;
    }
    /* Revoked: commit what finished, then forget the partitions (records still publishing
     * are consumed again by the next owner: at least once). */
    commit_ready(c);
    for (int i = 0; l && i < l->cnt; i++) {
        struct part *p = part_find(c, l->elems[i].topic, l->elems[i].partition, 0);
        if (!p)
            continue;
        p->assigned = 0;
        for (struct crec *r = p->head, *n; r; r = n) {
            n = r->next;
            r->part = NULL;
            r->next = NULL;
            if (r->finished)
                crec_free(r);
        }
        p->head = p->tail = NULL;
    }
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(c->rk, l);
        if (e)
            rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(c->rk, NULL);
    }
}

static void handle_event(struct kafka_consumer *c, rd_kafka_event_t *ev)
{
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_FETCH: {
        const rd_kafka_message_t *m;
        while ((m = rd_kafka_event_message_next(ev))) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                continue;
            if (m->err) {
                c->env->error(c->env, "connect", "kafka consumer: %s", rd_kafka_message_errstr(m));
                continue;
            }
            if (!c->closing)
                handle_record(c, m);
        }
        break;
    }
    case RD_KAFKA_EVENT_REBALANCE:
        handle_rebalance(c, ev);
        break;
    case RD_KAFKA_EVENT_OFFSET_COMMIT: {
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            c->env->error(c->env, "delivery", "kafka consumer: commit failed: %s",
                          rd_kafka_err2str(e));
        else if (!e)
            bump(&c->committed);
        break;
    }
    case RD_KAFKA_EVENT_ERROR:
        c->env->error(c->env, "connect", "kafka consumer: %s: %s",
                      rd_kafka_err2name(rd_kafka_event_error(ev)), rd_kafka_event_error_string(ev));
        break;
    case RD_KAFKA_EVENT_LOG: {
        const char *fac, *str;
        int level;
        if (rd_kafka_event_log(ev, &fac, &str, &level) == 0)
            c->env->log(c->env,
                        level <= 3   ? 0
                        : level == 4 ? 1
                        : level <= 6 ? 2
                                     : 3,
                        "librdkafka consumer %s: %s", fac, str);
        break;
    }
    default:
        break;
    }
}

/* Serve the consumer's queue while fewer than max_in_flight records are being published;
 * the rest stays queued (librdkafka stops fetching once its buffers are full). */
static void serve(struct kafka_consumer *c)
{
    rd_kafka_event_t *ev;
    while (c->in_flight < c->cc->max_in_flight && (ev = rd_kafka_queue_poll(c->q, 0))) {
        handle_event(c, ev);
        rd_kafka_event_destroy(ev);
    }
    commit_ready(c);
}

static void on_queue_ready(void *arg, int fd, uint32_t events)
{
    struct kafka_consumer *c = arg;
    char buf[256];
    (void)events;
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    serve(c);
}

int kafka_consumer_open(struct kafka_consumer **out, const struct kafka_conf *kc, gw_sink_env *env,
                        struct kafka_dlq *dlq, char *err, size_t errlen)
{
    char errstr[512];
    *out = NULL;
    if (!env->publish) {
        snprintf(err, errlen,
                 "%s.consumer: the reverse path needs the gateway (no publish "
                 "function in this process)",
                 env->name);
        return ITR_ERR_INVALID;
    }
    struct kafka_consumer *c = calloc(1, sizeof(*c));
    struct hub *h = calloc(1, sizeof(*h));
    if (!c || !h) {
        free(c);
        free(h);
        snprintf(err, errlen, "out of memory");
        return ITR_ERR_NOMEM;
    }
    c->kc = kc;
    c->cc = &kc->consumer;
    c->env = env;
    c->dlq = dlq;
    c->pipe[0] = c->pipe[1] = -1;
    c->hub = h;
    c->all.all_next = c->all.all_prev = &c->all;
    pthread_mutex_init(&h->lock, NULL);
    h->refs = 1;
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = ITR_ERR_IO;
    if (h->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    rd_kafka_conf_t *conf = kafka_conf_consumer(kc, err, errlen);
    if (!conf) {
        rc = ITR_ERR_INVALID;
        goto fail;
    }
    rd_kafka_conf_set(conf, "log.queue", "true", errstr, sizeof(errstr));
    rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_FETCH | RD_KAFKA_EVENT_REBALANCE |
                                       RD_KAFKA_EVENT_OFFSET_COMMIT | RD_KAFKA_EVENT_ERROR |
                                       RD_KAFKA_EVENT_LOG);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!c->rk) {
        snprintf(err, errlen, "creating the consumer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_set_log_queue(c->rk, NULL);
    /* One queue for records, rebalances, commits, errors and logs: the main queue is
     * forwarded to the consumer queue, so the io event goes on the consumer queue (an io
     * event on the forwarded main queue would never fire). */
    rd_kafka_poll_set_consumer(c->rk);
    c->q = rd_kafka_queue_get_consumer(c->rk);
    if (pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    rd_kafka_queue_io_event_enable(c->q, c->pipe[1], "1", 1);
    if (itr_loop_watch(env->loop, c->pipe[0], ITR_EV_READ, on_queue_ready, c) < 0 ||
        itr_loop_watch(env->loop, h->efd, ITR_EV_READ, on_hub_ready, c) < 0) {
        snprintf(err, errlen, "watching the consumer's event pipe failed");
        goto fail;
    }
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new((int)c->cc->ntopics);
    for (size_t i = 0; i < c->cc->ntopics; i++)
        rd_kafka_topic_partition_list_add(topics, c->cc->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        snprintf(err, errlen, "subscribing to the consumer topics: %s", rd_kafka_err2str(e));
        goto fail;
    }
    serve(c); /* events queued before the pipe was attached never write to it */
    *out = c;
    return 0;
fail:
    kafka_consumer_close(c);
    return rc;
}

void kafka_consumer_close(struct kafka_consumer *c)
{
    if (!c)
        return;
    c->closing = 1;
    if (c->rk) {
        /* Leave the group, serving the revoke on this thread; commit what finished. */
        if (c->hub)
            take_finished(c);
        commit_ready(c);
        rd_kafka_error_t *e = rd_kafka_consumer_close_queue(c->rk, c->q);
        if (e) {
            rd_kafka_error_destroy(e);
        } else {
            uint64_t deadline = itr_now_ns() + CONSUMER_CLOSE_WAIT_NS;
            while (!rd_kafka_consumer_closed(c->rk) && itr_now_ns() < deadline) {
                rd_kafka_event_t *ev = rd_kafka_queue_poll(c->q, 100);
                if (ev) {
                    handle_event(c, ev);
                    rd_kafka_event_destroy(ev);
                }
            }
        }
    }
    if (c->pipe[0] >= 0)
        itr_loop_unwatch(c->env->loop, c->pipe[0]);
    if (c->hub && c->hub->efd >= 0)
        itr_loop_unwatch(c->env->loop, c->hub->efd);
    if (c->q) {
        rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
        rd_kafka_queue_destroy(c->q);
    }
    if (c->rk)
        rd_kafka_destroy(c->rk);
    for (int i = 0; i < 2; i++)
        if (c->pipe[i] >= 0)
            close(c->pipe[i]);
    /* Records: those with a publish in progress are freed by their done callback (the hub
     * stays alive for them); the others now. Finished publishes not yet taken from the hub
     * no longer hold it. */
    struct hub *h = c->hub;
    if (h) {
        pthread_mutex_lock(&h->lock);
        h->closed = 1;
        struct crec *list = h->done;
        h->done = NULL;
        pthread_mutex_unlock(&h->lock);
        for (; list; list = list->done_next)
            list->publishing = 0;
    }
    while (c->all.all_next != &c->all) {
        struct crec *r = c->all.all_next;
        itr_loop_timer_cancel(c->env->loop, &r->retry_due);
        r->all_prev->all_next = r->all_next;
        r->all_next->all_prev = r->all_prev;
        int publishing = r->publishing;
        r->c = NULL;
        if (!publishing)
            crec_free(r);
    }
    for (size_t i = 0; i < c->nparts; i++) {
        free(c->parts[i]->topic);
        free(c->parts[i]);
    }
    free(c->parts);
    if (h)
        hub_unref(h);
    free(c);
}

void kafka_consumer_stats_get(const struct kafka_consumer *c, kafka_consumer_stats *out)
{
    out->received = atomic_load_explicit(&c->received, memory_order_relaxed);
    out->published = atomic_load_explicit(&c->published, memory_order_relaxed);
    out->retried = atomic_load_explicit(&c->retried, memory_order_relaxed);
    out->invalid = atomic_load_explicit(&c->invalid, memory_order_relaxed);
    out->committed = atomic_load_explicit(&c->committed, memory_order_relaxed);
}
