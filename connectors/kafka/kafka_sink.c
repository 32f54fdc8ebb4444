/* kafka_sink.c: the "kafka" connector: a librdkafka producer whose delivery reports complete
 * the gateway's deliveries, with a disk buffer for outages, a dead-letter file for permanent
 * failures and an optional reverse-path consumer (docs/SINKS.md, "kafka").
 *
 * Everything runs on the sink thread. librdkafka's main queue (delivery reports, errors, logs,
 * statistics) is wired into the sink's itr_loop with rd_kafka_queue_io_event_enable: a pipe
 * becomes readable when events are waiting, and they are served from that fd callback. There
 * is no polling timer.
 *
 * Where a delivery can be, in order (the order is kept per partition):
 *   retry   FIFO of failed messages waiting to be produced again (oldest data first)
 *   back    FIFO of deliveries taken by submit and not yet produced
 *   spool   the disk buffer (when configured): committed records waiting to be replayed
 *   kafka   handed to librdkafka (outstanding), waiting for the delivery report
 * A Reliable delivery completes GW_DURABLE when its delivery report succeeds, or once its
 * record is committed (fdatasync) to the disk buffer; GW_DEAD_LETTER once its dead-letter
 * line is committed. A failed report that is not permanent is retried (or spooled); nothing
 * Reliable is dropped.
 *
 * With a disk buffer, Reliable deliveries go to the spool instead of librdkafka while the
 * brokers are down (librdkafka reported all brokers down, or no delivery report arrived for
 * spool_after_ms), while librdkafka's queue is full, and while the spool still holds records
 * not yet replayed (so that replay keeps the order). Entering the down state purges what
 * librdkafka still queues (never sent, or waiting for a retry) so those deliveries are spooled
 * and acknowledged too. Records purged after being sent may have reached the broker
 * (POSSIBLY_PERSISTED): they are replayed and may be duplicated. Without a purge, librdkafka's
 * idempotent producer would retry them with their original sequence numbers and the broker
 * would drop duplicates; without a disk buffer that is what happens: the deliveries wait
 * inside librdkafka (bounded by the runtime's budget, so their senders are throttled) and
 * librdkafka retries until the broker is back or message.timeout.ms passes, after which they
 * are produced again (only then can a duplicate appear).
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <intentra/driver.h>
#include <intentra/endpoint.h>
#include <intentra/error.h>

#include "connector.h"
#include "kafka_conf.h"
#include "kafka_consumer.h"
#include "kafka_dlq.h"
#include "router.h"
#include "shards.h"
#include "spool.h"

#define KAFKA_TOPIC_MAX     249  /* Kafka's limit on topic names */
#define KAFKA_KEY_MAX       4096 /* rendered key */
#define KAFKA_REPLAY_WINDOW 4096 /* spooled records handed to librdkafka at once */
#define KAFKA_TOPIC_CACHE   1024 /* topic handles kept (power of two) */
#define KAFKA_NHEADERS      6
#define KAFKA_RETRY_MIN_NS  (100ull * 1000 * 1000)
#define KAFKA_RECREATE_WAIT (5ull * 1000 * 1000 * 1000) /* collecting an old producer's reports */
#define KAFKA_DLQ_STASH     1024 /* permanent failures per delivery-report event batch */
#define KAFKA_DR_CHUNK      256  /* delivery reports taken from an event at once */

/* One message handed to librdkafka (its opaque). */
struct kmsg {
    gw_delivery *d;           /* the delivery; NULL for a record replayed from the spool */
    uint64_t spool_id;        /* replayed record */
    struct kmsg *prev, *next; /* outstanding list, or free list (next only) */
    uint32_t key_hash;        /* crc32 of the key, when nonzero (see partition_by_key) */
    uint8_t replay;
};

/* A queued item: a delivery, or a copy of a replayed record (encoded like the spool). */
struct pend {
    gw_delivery *d;
    uint8_t *copy;
    size_t copy_len;
    uint64_t spool_id;
};

struct ring {
    struct pend *e;
    size_t cap, head, n;
};

struct topic_slot {
    uint64_t hash;
    char *name;
    rd_kafka_topic_t *rkt;
};

struct producer {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int pipe[2];
};

/* A message's fields, rendered from a delivery (or decoded from a record). */
struct rendered {
    gw_spool_record rec;
    char topic[KAFKA_TOPIC_MAX + 2];
    char key[KAFKA_KEY_MAX];
    char seq[20], recv[20]; /* decimal, not NUL-terminated */
    gw_spool_header hdr[KAFKA_NHEADERS];
};

/* A permanent failure of one delivery-report batch, waiting for the dead-letter commit. */
struct dead_letter {
    struct kmsg *km;
    const rd_kafka_message_t *rkm;
    const char *reason;
};

struct gw_sink {
    gw_sink_env *env;
    struct kafka_conf c;
    struct producer p; /* p.rk is NULL while a producer could not be created */
    size_t max_outstanding;

    struct kmsg *kmsgs, *free_km;
    struct kmsg out_head; /* outstanding list (sentinel) */
    size_t outstanding, replay_outstanding;
    struct ring retry, back;
    gw_delivery **spooled; /* appended to the spool, waiting for its commit */
    size_t spooled_n, spooled_cap;

    gw_spool *spool;
    struct kafka_dlq *dlq;
    struct kafka_consumer *consumer;
    struct topic_slot topics[KAFKA_TOPIC_CACHE];

    int seen_up; /* a broker was reachable at least once */
    int down;    /* brokers unreachable: Realtime discarded, Reliable spooled */
    int backoff; /* retry_due is armed: nothing is produced until it fires */
    int fatal;   /* the producer hit a fatal error: recreate it */
    int refused; /* submit refused some: env->ready() once there is room */
    int in_pump, pump_again;
    int waiting_room; /* this pump pass stopped at a delivery waiting for room in the buffer */
    uint64_t backoff_ns;
    uint64_t last_progress_ns; /* last delivery report, or when the first message went out */
    uint64_t rng;
    itr_timer retry_due, stall_check, recreate_due;
    itr_timer spool_due; /* the disk buffer is locked by the instance being replaced */

    size_t held; /* deliveries taken and not completed */
    _Atomic int state;
    _Atomic uint64_t held_view;
    struct rendered scratch;
    struct dead_letter dead[KAFKA_DLQ_STASH];
};

static void pump(gw_sink *s);
static void serve_queue(gw_sink *s);

/* ---- small helpers ---- */

static uint64_t jitter(gw_sink *s, uint64_t ns)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    uint64_t span = ns / 5; /* +-20%: gateways sharing a cluster do not retry in step */
    return ns - span + (span ? s->rng % (2 * span + 1) : 0);
}

static void ring_push(struct ring *r, struct pend e)
{
    r->e[(r->head + r->n) % r->cap] = e;
    r->n++;
}

static struct pend *ring_front(struct ring *r)
{
    return &r->e[r->head];
}

/* Deliveries were written by a worker on another core, so the first touch of each one and
 * of its message misses the cache. While one is produced, start loading the ones a few
 * places behind it: the delivery 8 ahead; the message of the one 4 ahead (whose delivery is
 * in cache by then: all three lines of it, without reading through it); the body of the one
 * 2 ahead (whose message is in cache by then). */
GW_PREFETCH_FN ring_prefetch(const struct ring *r)
{
    if (r->n > 8) {
        const gw_delivery *d = r->e[(r->head + 8) % r->cap].d;
        if (d)
            gw_prefetch_delivery(d);
    }
    if (r->n > 4) {
        const gw_delivery *d = r->e[(r->head + 4) % r->cap].d;
        if (d) {
            const char *m = (const char *)d->msg;
            for (size_t off = 0; off < sizeof(gw_msg); off += 64)
                __builtin_prefetch(m + off);
        }
    }
    if (r->n > 2) {
        const gw_delivery *d = r->e[(r->head + 2) % r->cap].d;
        if (d)
            __builtin_prefetch(d->msg->body);
    }
}

static void ring_pop(struct ring *r)
{
    r->head = (r->head + 1) % r->cap;
    r->n--;
}

static int ring_init(struct ring *r, size_t cap)
{
    r->e = calloc(cap, sizeof(*r->e));
    r->cap = cap;
    return r->e ? 0 : -1;
}

static void ring_free(struct ring *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->e[(r->head + i) % r->cap].copy);
    free(r->e);
}

static struct kmsg *km_get(gw_sink *s)
{
    struct kmsg *k = s->free_km;
    if (!k)
        return NULL;
    s->free_km = k->next;
    /* The free list is long (one per outstanding message) and cold beyond its first few:
     * load the next one while this one is produced. */
    if (s->free_km)
        __builtin_prefetch(s->free_km, 1);
    memset(k, 0, sizeof(*k));
    /* Linked into the outstanding list so a destroyed producer's messages can be found. */
    k->next = s->out_head.next;
    k->prev = &s->out_head;
    s->out_head.next->prev = k;
    s->out_head.next = k;
    return k;
}

static void km_put(gw_sink *s, struct kmsg *k)
{
    k->prev->next = k->next;
    k->next->prev = k->prev;
    k->next = s->free_km;
    k->prev = NULL;
    s->free_km = k;
}

static void update_state(gw_sink *s)
{
    gw_sink_state st;
    if (!s->p.rk)
        st = GW_SINK_DOWN;
    else if (s->down)
        st = s->spool ? GW_SINK_DEGRADED : GW_SINK_DOWN;
    else if (!s->seen_up)
        st = GW_SINK_STARTING;
    else if (s->backoff || (s->spool && gw_spool_bytes(s->spool)))
        st = GW_SINK_DEGRADED;
    else
        st = GW_SINK_UP;
    atomic_store_explicit(&s->state, (int)st, memory_order_relaxed);
}

static void complete(gw_sink *s, gw_delivery *d, gw_result r, const char *reason)
{
    s->held--;
    atomic_store_explicit(&s->held_view, s->held, memory_order_relaxed);
    s->env->complete(s->env, d, r, reason);
}

/* Errors that retrying cannot fix: the message goes to the dead-letter file. Returns the
 * reason label, or NULL for an error worth retrying. */
static const char *permanent_reason(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return "message_too_large";
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return "invalid_destination";
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
        return "other";
    default:
        return NULL;
    }
}

/* ---- rendering ---- */

static int topic_name_valid(const char *t, size_t n)
{
    if (n == 0 || n > KAFKA_TOPIC_MAX || (n == 1 && t[0] == '.') ||
        (n == 2 && t[0] == '.' && t[1] == '.'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Decimal digits of v into out (no NUL); returns the length. Two digits per division:
 * snprintf cost ~10x more, and a receive time has 19 digits, twice per message. */
static size_t fmt_u64(char *out, uint64_t v)
{
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324"
                                   "25262728293031323334353637383940414243444546474849"
                                   "50515253545556575859606162636465666768697071727374"
                                   "75767778798081828384858687888990919293949596979899";
    char tmp[20];
    size_t i = sizeof(tmp);
    while (v >= 100) {
        size_t d = (size_t)(v % 100) * 2;
        v /= 100;
        tmp[--i] = pairs[d + 1];
        tmp[--i] = pairs[d];
    }
    if (v >= 10) {
        tmp[--i] = pairs[v * 2 + 1];
        tmp[--i] = pairs[v * 2];
    } else {
        tmp[--i] = (char)('0' + v);
    }
    size_t n = sizeof(tmp) - i;
    memcpy(out, tmp + i, n);
    return n;
}

/* Fill r from d. Returns NULL, or why the message cannot be sent (a permanent failure). */
static const char *render(gw_sink *s, const gw_delivery *d, struct rendered *r)
{
    const gw_msg *m = d->msg;
    memset(&r->rec, 0, sizeof(r->rec));
    r->rec.timestamp_ms = (int64_t)(m->recv_wall_ns / 1000000u);
    r->rec.value = m->body;
    r->rec.value_len = m->body_len;
    r->rec.flags = d->reliable;
    r->rec.partition = RD_KAFKA_PARTITION_UA;
    if (s->c.partitioner == KAFKA_PARTITION_BY_SHARD && m->shard) {
        const gw_shard_attrs *a = gw_shard_attributes(m->shard);
        if (a && a->kafka_partition >= 0)
            r->rec.partition = a->kafka_partition;
    }
    if (s->c.headers) {
        size_t sl = fmt_u64(r->seq, m->seq);
        size_t rl = fmt_u64(r->recv, m->recv_wall_ns);
        const char *intent = m->intent == ITR_INTENT_RELIABLE ? "reliable" : "realtime";
        r->hdr[0] = (gw_spool_header){"intentra-peer", 13, m->peer_hex, strlen(m->peer_hex)};
        r->hdr[1] = (gw_spool_header){"intentra-shard", 14, m->shard_name, m->shard_name_len};
        r->hdr[2] = (gw_spool_header){"intentra-topic", 14, m->topic, m->topic_len};
        r->hdr[3] = (gw_spool_header){"intentra-seq", 12, r->seq, sl};
        r->hdr[4] = (gw_spool_header){"intentra-intent", 15, intent, 8};
        r->hdr[5] = (gw_spool_header){"intentra-received-ns", 20, r->recv, rl};
        r->rec.headers = r->hdr;
        r->rec.header_count = KAFKA_NHEADERS;
    }
    size_t tl = gw_route_sink_destination(d->rs, m, r->topic, sizeof(r->topic));
    if (tl == (size_t)-1)
        return "destination longer than a Kafka topic name (249 characters)";
    r->rec.topic = r->topic;
    r->rec.topic_len = tl;
    if (!topic_name_valid(r->topic, tl))
        return "destination is not a valid Kafka topic name (1..249 of [A-Za-z0-9._-])";
    size_t kl = gw_route_sink_key(d->rs, m, r->key, sizeof(r->key));
    if (kl == (size_t)-1)
        return "rendered key longer than 4096 bytes";
    r->rec.key = kl ? r->key : NULL; /* empty: no key (librdkafka picks a partition) */
    r->rec.key_len = kl;
    return NULL;
}

/* The record view of a delivery report's message (for copies and dead letters). headers:
 * GW_SPOOL_MAX_HEADERS entries. */
static void record_from_message(const rd_kafka_message_t *rkm, gw_spool_record *rec,
                                gw_spool_header *headers)
{
    memset(rec, 0, sizeof(*rec));
    const char *t = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "";
    rec->topic = t;
    rec->topic_len = strlen(t);
    rec->partition = rkm->partition;
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(rkm, &tst);
    rec->timestamp_ms = ts > 0 ? ts : 0;
    rec->key = rkm->key;
    rec->key_len = rkm->key ? rkm->key_len : 0;
    rec->value = rkm->payload;
    rec->value_len = rkm->payload ? rkm->len : 0;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        size_t n = rd_kafka_header_cnt(hdrs);
        if (n > GW_SPOOL_MAX_HEADERS)
            n = GW_SPOOL_MAX_HEADERS;
        for (size_t i = 0; i < n; i++) {
            const char *name;
            const void *val;
            size_t vlen;
            if (rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen))
                break;
            headers[i] = (gw_spool_header){name, strlen(name), val ? val : "", val ? vlen : 0};
            rec->header_count = i + 1;
        }
        rec->headers = headers;
    }
}

/* A queue entry holding a copy of rec (for a replayed record that must be sent again). */
static struct pend record_copy(const gw_spool_record *rec, uint64_t spool_id)
{
    struct pend e = {.spool_id = spool_id};
    size_t n = gw_spool_encoded_size(rec);
    e.copy = n ? malloc(n) : NULL;
    if (e.copy)
        e.copy_len = gw_spool_encode(rec, e.copy, n);
    return e;
}

/* ---- the producer ---- */

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The cached topic handle for a NUL-terminated name (NULL when the cache is full: then the
 * topic is named per message). */
static rd_kafka_topic_t *topic_get(gw_sink *s, const char *name, size_t n)
{
    uint64_t h = fnv1a(name, n);
    for (size_t i = 0; i < KAFKA_TOPIC_CACHE; i++) {
        struct topic_slot *t = &s->topics[(h + i) & (KAFKA_TOPIC_CACHE - 1)];
        if (!t->name) {
            if (i > KAFKA_TOPIC_CACHE / 2)
                return NULL; /* keep probes short */
            rd_kafka_topic_t *rkt = rd_kafka_topic_new(s->p.rk, name, NULL);
            char *copy = rkt ? strdup(name) : NULL;
            if (!copy) {
                if (rkt)
                    rd_kafka_topic_destroy(rkt);
                return NULL;
            }
            t->hash = h;
            t->name = copy;
            t->rkt = rkt;
            return rkt;
        }
        if (t->hash == h && !strcmp(t->name, name))
            return t->rkt;
    }
    return NULL;
}

static void topics_clear(gw_sink *s)
{
    for (size_t i = 0; i < KAFKA_TOPIC_CACHE; i++) {
        struct topic_slot *t = &s->topics[i];
        if (t->name) {
            rd_kafka_topic_destroy(t->rkt);
            free(t->name);
        }
        memset(t, 0, sizeof(*t));
    }
}

/* rendered: rec comes from render(), whose topic is checked and NUL-terminated already. */
static rd_kafka_resp_err_t produce_record(gw_sink *s, const gw_spool_record *rec, struct kmsg *km,
                                          int rendered)
{
    char copy[KAFKA_TOPIC_MAX + 1];
    const char *topic = rec->topic;
    if (!rendered) {
        if (!topic_name_valid(rec->topic, rec->topic_len))
            return RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION;
        memcpy(copy, rec->topic, rec->topic_len);
        copy[rec->topic_len] = 0;
        topic = copy;
    }
    rd_kafka_headers_t *hdrs = NULL;
    if (rec->header_count) {
        hdrs = rd_kafka_headers_new(rec->header_count);
        for (size_t i = 0; i < rec->header_count; i++) {
            const gw_spool_header *h = &rec->headers[i];
            rd_kafka_header_add(hdrs, h->name, (ssize_t)h->name_len, h->value,
                                (ssize_t)h->value_len);
        }
    }
    rd_kafka_topic_t *rkt = topic_get(s, topic, rec->topic_len);
    rd_kafka_resp_err_t err;
    /* librdkafka's macros take non-const pointers; with F_COPY nothing is written through
     * them. An empty key is no key (NULL): the sticky partitioner, whatever the callback. */
    void *key = rec->key_len ? (void *)(uintptr_t)rec->key : NULL;
    void *value = (void *)(uintptr_t)rec->value;
    /* F_COPY: a delivery completed from the spool may free its message while librdkafka
     * still holds the record; the copy rides in the allocation librdkafka makes anyway. */
    if (rkt)
        err = rd_kafka_producev(
            s->p.rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(rec->partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE(value, rec->value_len),
            RD_KAFKA_V_KEY(key, rec->key_len), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_TIMESTAMP(rec->timestamp_ms), RD_KAFKA_V_OPAQUE(km), RD_KAFKA_V_END);
    else
        err = rd_kafka_producev(
            s->p.rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(rec->partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE(value, rec->value_len),
            RD_KAFKA_V_KEY(key, rec->key_len), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_TIMESTAMP(rec->timestamp_ms), RD_KAFKA_V_OPAQUE(km), RD_KAFKA_V_END);
    if (err && hdrs)
        rd_kafka_headers_destroy(hdrs); /* ownership passes only on success */
    return err;
}

/* librdkafka's default partitioner, consistent_random, puts a keyed record on crc32(key) %
 * partitions (keyless ones never get here: they take the sticky partitioner). Hashing the
 * 64-byte peer key per message cost ~4 % of the gateway's CPU on the Kafka path; a key that
 * is the peer's own carries the hash its worker computed once per session. Same partitions,
 * byte for byte: tests/integration/kafka_e2e.py checks them against zlib's crc32. */
static int32_t partition_by_key(const rd_kafka_topic_t *rkt, const void *key, size_t keylen,
                                int32_t partition_cnt, void *rkt_opaque, void *msg_opaque)
{
    const struct kmsg *km = msg_opaque;
    if (km && km->key_hash && key && partition_cnt > 0)
        return (int32_t)(km->key_hash % (uint32_t)partition_cnt);
    return rd_kafka_msg_partitioner_consistent_random(rkt, key, keylen, partition_cnt, rkt_opaque,
                                                      msg_opaque);
}

/* Install partition_by_key when the configured partitioner is librdkafka's default (a
 * partitioner set under properties is left alone). */
static int use_key_hash(rd_kafka_conf_t *conf)
{
    char val[64];
    size_t n = sizeof(val);
    rd_kafka_topic_conf_t *tc = rd_kafka_conf_get_default_topic_conf(conf);
    if (!tc) {
        tc = rd_kafka_topic_conf_new();
        if (!tc)
            return -1;
        rd_kafka_conf_set_default_topic_conf(conf, tc); /* conf owns it */
    }
    if (rd_kafka_topic_conf_get(tc, "partitioner", val, &n) == RD_KAFKA_CONF_OK &&
        !strcmp(val, "consistent_random"))
        rd_kafka_topic_conf_set_partitioner_cb(tc, partition_by_key);
    return 0;
}

static void on_queue_ready(void *arg, int fd, uint32_t events)
{
    gw_sink *s = arg;
    char buf[256];
    (void)events;
    /* Empty the pipe first: a wake-up written while the queue is served is kept. */
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    serve_queue(s);
    pump(s);
}

static int producer_new(gw_sink *s, char *err, size_t errlen)
{
    char errstr[512], val[64];
    size_t vlen = sizeof(val);
    struct producer p = {.pipe = {-1, -1}};
    rd_kafka_conf_t *conf = kafka_conf_producer(&s->c, err, errlen);
    if (!conf)
        return ITR_ERR_INVALID;
    if (rd_kafka_conf_set(conf, "log.queue", "true", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "%s", errstr);
        rd_kafka_conf_destroy(conf);
        return ITR_ERR_INVALID;
    }
    if (use_key_hash(conf)) {
        snprintf(err, errlen, "out of memory");
        rd_kafka_conf_destroy(conf);
        return ITR_ERR_NOMEM;
    }
    rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG |
                                       RD_KAFKA_EVENT_STATS);
    size_t cap = 2 * (size_t)s->c.queue_messages + KAFKA_REPLAY_WINDOW;
    if (rd_kafka_conf_get(conf, "queue.buffering.max.messages", val, &vlen) == RD_KAFKA_CONF_OK) {
        unsigned long long q = strtoull(val, NULL, 10);
        if (q > 0 && q < cap)
            cap = (size_t)q;
    }
    s->max_outstanding = cap;
    p.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!p.rk) {
        snprintf(err, errlen, "creating the producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return ITR_ERR_IO;
    }
    rd_kafka_set_log_queue(p.rk, NULL); /* logs to the main queue, served on this thread */
    p.q = rd_kafka_queue_get_main(p.rk);
    if (pipe2(p.pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    rd_kafka_queue_io_event_enable(p.q, p.pipe[1], "1", 1);
    if (itr_loop_watch(s->env->loop, p.pipe[0], ITR_EV_READ, on_queue_ready, s) < 0) {
        snprintf(err, errlen, "watching the producer's event pipe failed");
        goto fail;
    }
    s->p = p;
    update_state(s);
    /* Events queued before the pipe was attached never write to it: serve them now. */
    serve_queue(s);
    return 0;
fail:
    if (p.q) {
        rd_kafka_queue_io_event_enable(p.q, -1, NULL, 0);
        rd_kafka_queue_destroy(p.q);
    }
    rd_kafka_destroy(p.rk);
    for (int i = 0; i < 2; i++)
        if (p.pipe[i] >= 0)
            close(p.pipe[i]);
    return ITR_ERR_IO;
}

/* Tear the producer down. Whatever it still holds was purged and its reports served by the
 * caller, or is given back here from the outstanding list. */
static void producer_free(gw_sink *s, struct producer *p)
{
    if (!p->rk)
        return;
    itr_loop_unwatch(s->env->loop, p->pipe[0]);
    rd_kafka_queue_io_event_enable(p->q, -1, NULL, 0);
    topics_clear(s);
    rd_kafka_queue_destroy(p->q);
    rd_kafka_destroy(p->rk);
    close(p->pipe[0]);
    close(p->pipe[1]);
    memset(p, 0, sizeof(*p));
    p->pipe[0] = p->pipe[1] = -1;
}

/* ---- states ---- */

static void start_backoff(gw_sink *s)
{
    if (s->backoff)
        return;
    uint64_t max = s->c.max_retry_backoff_ms * 1000000u;
    s->backoff_ns = s->backoff_ns ? s->backoff_ns * 2 : KAFKA_RETRY_MIN_NS;
    if (s->backoff_ns > max)
        s->backoff_ns = max;
    s->backoff = 1;
    itr_loop_timer_set(s->env->loop, &s->retry_due, itr_now_ns() + jitter(s, s->backoff_ns));
    update_state(s);
}

static void on_retry_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    (void)now;
    s->backoff = 0;
    update_state(s);
    pump(s);
}

/* Take back what librdkafka still queues (not in flight) so it can be spooled. */
static void purge_queued(gw_sink *s)
{
    if (s->spool && s->p.rk && s->outstanding)
        rd_kafka_purge(s->p.rk, RD_KAFKA_PURGE_F_QUEUE);
}

static void set_down(gw_sink *s, const char *stage, const char *why)
{
    if (!s->down) {
        s->down = 1;
        s->env->error(s->env, stage, "%s%s", why,
                      s->spool ? ": Reliable messages go to the disk buffer"
                               : ": Reliable messages wait, Realtime messages are discarded");
        update_state(s);
    }
    purge_queued(s);
}

static void set_up(gw_sink *s)
{
    s->seen_up = 1;
    if (s->down) {
        s->down = 0;
        s->env->log(s->env, 2, "kafka: brokers reachable again%s",
                    s->spool && gw_spool_bytes(s->spool) ? ": replaying the disk buffer" : "");
        s->last_progress_ns = itr_now_ns();
        pump(s);
    }
    update_state(s);
}

static void arm_stall_check(gw_sink *s)
{
    if (s->outstanding && !itr_timer_armed(&s->stall_check))
        itr_loop_timer_set(s->env->loop, &s->stall_check,
                           s->last_progress_ns + s->c.spool_after_ms * 1000000u);
}

static void on_stall_check(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    if (!s->outstanding)
        return;
    uint64_t limit = s->c.spool_after_ms * 1000000u;
    if (now - s->last_progress_ns >= limit) {
        char why[160];
        snprintf(why, sizeof(why), "no delivery report for %" PRIu64 " ms (%zu messages waiting)",
                 (now - s->last_progress_ns) / 1000000u, s->outstanding);
        set_down(s, "delivery", why);
        /* Down already: take back what librdkafka re-queued since (retries). */
        serve_queue(s);
        pump(s);
    }
    if (s->outstanding) {
        uint64_t next = s->last_progress_ns + limit;
        itr_loop_timer_set(s->env->loop, &s->stall_check, next > now ? next : now + limit);
    }
}

/* ---- dead letters ---- */

/* Write one permanently failed record to the dead-letter file now. Returns 0 when handled
 * (written, or logged when there is no dead-letter file), -1 when it must be retried. */
static int dead_letter_one(gw_sink *s, const gw_spool_record *rec, const char *reason,
                           const char *error)
{
    if (!s->dlq) {
        s->env->error(s->env, "dead_letter",
                      "permanent failure for topic %.*s (%s: %s): no dead_letter_file "
                      "configured, message not kept",
                      (int)rec->topic_len, rec->topic, reason, error);
        return 0;
    }
    if (kafka_dlq_add(s->dlq, s->env->name, reason, error, rec) || kafka_dlq_commit(s->dlq)) {
        s->env->error(s->env, "dead_letter", "writing %s: %s", kafka_dlq_path(s->dlq),
                      strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- moving messages along ---- */

enum { DISPATCH_DONE = 0, DISPATCH_STOP = 1 };

static int should_spool(gw_sink *s)
{
    return s->down || s->outstanding >= s->max_outstanding || gw_spool_uncommitted(s->spool) ||
           gw_spool_has_unread(s->spool);
}

/* Hand one produced message's failure at produce() time. */
static int produce_failed(gw_sink *s, struct pend *e, const gw_spool_record *rec,
                          rd_kafka_resp_err_t err)
{
    const char *reason = permanent_reason(err);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return DISPATCH_STOP; /* delivery reports make room and pump again */
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        if (!s->fatal) {
            s->fatal = 1;
            itr_loop_timer_set(s->env->loop, &s->recreate_due, itr_now_ns());
        }
        return DISPATCH_STOP;
    }
    if (reason) {
        if (dead_letter_one(s, rec, reason, rd_kafka_err2str(err))) {
            start_backoff(s);
            return DISPATCH_STOP;
        }
        if (e->d)
            complete(s, e->d, GW_DEAD_LETTER, reason);
        else
            gw_spool_ack(s->spool, e->spool_id);
        free(e->copy);
        e->copy = NULL;
        return DISPATCH_DONE;
    }
    s->env->error(s->env, "delivery", "produce to %.*s: %s: retrying", (int)rec->topic_len,
                  rec->topic, rd_kafka_err2str(err));
    start_backoff(s);
    return DISPATCH_STOP;
}

static int dispatch(gw_sink *s, struct pend *e)
{
    struct rendered *r = &s->scratch;
    const gw_spool_record *rec;
    gw_spool_record decoded;
    gw_spool_header dh[GW_SPOOL_MAX_HEADERS];
    if (e->d) {
        gw_delivery *d = e->d;
        if (!d->reliable && s->down) {
            complete(s, d, GW_DISCARDED, "broker_down");
            return DISPATCH_DONE;
        }
        const char *bad = render(s, d, r);
        if (bad) {
            if (dead_letter_one(s, &r->rec, "invalid_destination", bad)) {
                start_backoff(s);
                return DISPATCH_STOP;
            }
            complete(s, d, GW_DEAD_LETTER, "invalid_destination");
            return DISPATCH_DONE;
        }
        if (d->reliable && s->spool && should_spool(s)) {
            int rc = gw_spool_append(s->spool, &r->rec);
            if (rc == 0) {
                s->spooled[s->spooled_n++] = d;
                return DISPATCH_DONE;
            }
            /* Full (or failing): wait while there is no broker, or while older records are
             * still in the buffer (producing this one now would overtake them; replay
             * frees the room). */
            if (rc != ITR_ERR_WOULDBLOCK)
                return DISPATCH_STOP;
            if (gw_spool_uncommitted(s->spool) || gw_spool_has_unread(s->spool)) {
                s->waiting_room = 1; /* newer than what is in the buffer: replay first */
                return DISPATCH_STOP;
            }
            if (s->down)
                return DISPATCH_STOP;
            /* Full of records already handed to librdkafka, and a working broker: produce
             * directly (behind them in librdkafka's queue). */
        }
        if (s->outstanding >= s->max_outstanding) {
            if (!d->reliable) {
                complete(s, d, GW_DISCARDED, "queue_full");
                return DISPATCH_DONE;
            }
            return DISPATCH_STOP;
        }
        rec = &r->rec;
    } else {
        size_t need;
        if (s->down || s->outstanding >= s->max_outstanding)
            return DISPATCH_STOP;
        long used = e->copy ? gw_spool_decode(e->copy, e->copy_len, &decoded, dh, &need) : -1;
        if (used <= 0) {
            /* Out of memory when the copy was made: the record stays in the spool
             * unacknowledged and is replayed by the next process. */
            s->env->error(s->env, "spool",
                          "a replayed record could not be kept for a retry: "
                          "replayed again after a restart");
            free(e->copy);
            e->copy = NULL;
            return DISPATCH_DONE;
        }
        rec = &decoded;
    }
    struct kmsg *km = km_get(s);
    if (!km)
        return DISPATCH_STOP;
    km->d = e->d;
    km->replay = e->d == NULL;
    km->spool_id = e->spool_id;
    if (e->d && rec->partition == RD_KAFKA_PARTITION_UA &&
        rec->key_len == sizeof(e->d->msg->peer_hex) - 1 &&
        !memcmp(rec->key, e->d->msg->peer_hex, rec->key_len))
        km->key_hash = e->d->msg->peer_hash; /* the key is the peer: hashed once per session */
    rd_kafka_resp_err_t err = produce_record(s, rec, km, rec == &r->rec);
    if (err) {
        km_put(s, km);
        return produce_failed(s, e, rec, err);
    }
    if (!s->outstanding)
        s->last_progress_ns = itr_now_ns();
    s->outstanding++;
    if (km->replay)
        s->replay_outstanding++;
    free(e->copy);
    e->copy = NULL;
    return DISPATCH_DONE;
}

/* Make the spooled deliveries durable and complete them. */
static void spool_commit(gw_sink *s)
{
    if (!s->spool || !s->spooled_n)
        return;
    if (gw_spool_commit(s->spool) < 0) {
        int e = errno;
        s->env->error(s->env, "spool", "writing the disk buffer: %s", strerror(e));
        /* Forgotten by the spool: they go back in front of everything, in order. */
        struct ring *r = &s->retry;
        size_t n = s->spooled_n;
        for (size_t i = n; i-- > 0;) {
            r->head = (r->head + r->cap - 1) % r->cap;
            r->e[r->head] = (struct pend){.d = s->spooled[i]};
            r->n++;
        }
        s->spooled_n = 0;
        start_backoff(s);
        return;
    }
    size_t n = s->spooled_n;
    s->spooled_n = 0;
    for (size_t i = 0; i < n; i++)
        complete(s, s->spooled[i], GW_DURABLE, NULL);
    update_state(s);
}

static void replay(gw_sink *s)
{
    while (!s->down && (!s->retry.n || s->waiting_room) &&
           s->replay_outstanding < KAFKA_REPLAY_WINDOW && s->outstanding < s->max_outstanding) {
        gw_spool_record rec;
        uint64_t id;
        int rc = gw_spool_next(s->spool, &rec, &id);
        if (rc == ITR_ERR_WOULDBLOCK)
            return;
        if (rc < 0) {
            s->env->error(s->env, "spool", "reading the disk buffer: %s", itr_strerror(rc));
            start_backoff(s);
            return;
        }
        struct kmsg *km = km_get(s);
        if (!km) {
            ring_push(&s->retry, record_copy(&rec, id));
            return;
        }
        km->replay = 1;
        km->spool_id = id;
        rd_kafka_resp_err_t err = produce_record(s, &rec, km, 0);
        if (err) {
            km_put(s, km);
            /* Keep it in memory (the spool's read position moved on), first in line. */
            ring_push(&s->retry, record_copy(&rec, id));
            if (produce_failed(s, ring_front(&s->retry), &rec, err) == DISPATCH_DONE)
                ring_pop(&s->retry);
            return;
        }
        if (!s->outstanding)
            s->last_progress_ns = itr_now_ns();
        s->outstanding++;
        s->replay_outstanding++;
    }
}

static void pump_once(gw_sink *s)
{
    s->waiting_room = 0;
    if (s->p.rk && !s->backoff && !s->fatal) {
        int stop = 0;
        while (s->retry.n && !stop) {
            if (dispatch(s, ring_front(&s->retry)) == DISPATCH_DONE)
                ring_pop(&s->retry);
            else
                stop = 1;
        }
        while (!stop && s->back.n) {
            ring_prefetch(&s->back);
            if (dispatch(s, ring_front(&s->back)) == DISPATCH_DONE)
                ring_pop(&s->back);
            else
                stop = 1;
        }
        spool_commit(s);
        /* The buffer's unread records are older than anything in back (which goes to the
         * buffer while they exist), so replay also when back waits for room in a full
         * buffer. Replay otherwise waits for retry (older data), unless retry's head itself
         * waits for room (then it is newer than what the buffer holds). */
        if (s->spool && !s->backoff && (!s->retry.n || s->waiting_room))
            replay(s);
        arm_stall_check(s);
    } else {
        spool_commit(s);
    }
    if (s->refused && s->back.n < s->back.cap / 2) {
        s->refused = 0;
        s->env->ready(s->env);
    }
}

static void pump(gw_sink *s)
{
    if (s->in_pump) {
        s->pump_again = 1;
        return;
    }
    s->in_pump = 1;
    do {
        s->pump_again = 0;
        pump_once(s);
    } while (s->pump_again);
    s->in_pump = 0;
}

/* ---- librdkafka events ---- */

static void dr_failed(gw_sink *s, struct kmsg *km, const rd_kafka_message_t *rkm, int *retry)
{
    if (km->d && !km->d->reliable) {
        complete(s, km->d, GW_DISCARDED, "broker_down");
        return;
    }
    if (km->d) {
        ring_push(&s->retry, (struct pend){.d = km->d});
    } else {
        gw_spool_record rec;
        gw_spool_header h[GW_SPOOL_MAX_HEADERS];
        record_from_message(rkm, &rec, h);
        ring_push(&s->retry, record_copy(&rec, km->spool_id));
    }
    *retry = 1;
}

/* A report chains objects last touched long ago or on other cores: librdkafka's message,
 * our kmsg and its list neighbours, the delivery and its message. Load them a few reports ahead,
 * one link per step, so no step waits on memory (a report batch holds thousands). */
GW_PREFETCH_FN dr_prefetch(const rd_kafka_message_t *const *m, size_t n, size_t i)
{
    if (i + 12 < n) {
        __builtin_prefetch(m[i + 12]);
        __builtin_prefetch((const char *)m[i + 12] + 64);
    }
    if (i + 8 < n)
        __builtin_prefetch(m[i + 8]->_private);
    if (i + 4 < n) {
        /* km_put unlinks it from the outstanding list: its neighbours are written too. */
        const struct kmsg *km = m[i + 4]->_private;
        __builtin_prefetch(km->prev, 1);
        __builtin_prefetch(km->next, 1);
        if (km->d)
            gw_prefetch_delivery(km->d);
    }
    if (i + 2 < n) {
        const struct kmsg *km = m[i + 2]->_private;
        if (km->d)
            gw_prefetch_completion(km->d);
    }
}

static void handle_dr(gw_sink *s, rd_kafka_event_t *ev)
{
    const rd_kafka_message_t *batch[KAFKA_DR_CHUNK];
    struct dead_letter *dead = s->dead;
    size_t ndead = 0, got;
    int retry = 0, purged = 0, progress = 0;
    size_t failed = 0;
    rd_kafka_resp_err_t first_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    while ((got = rd_kafka_event_message_array(ev, batch, KAFKA_DR_CHUNK)) > 0) {
        for (size_t i = 0; i < got; i++) {
            dr_prefetch(batch, got, i);
            const rd_kafka_message_t *rkm = batch[i];
            struct kmsg *km = rkm->_private;
            s->outstanding--;
            if (km->replay)
                s->replay_outstanding--;
            if (!rkm->err) {
                progress = 1;
                s->backoff_ns = 0;
                if (km->d)
                    complete(s, km->d, GW_DURABLE, NULL);
                else
                    gw_spool_ack(s->spool, km->spool_id);
                km_put(s, km);
                if (!s->seen_up || s->down)
                    set_up(s);
                continue;
            }
            const char *reason = permanent_reason(rkm->err);
            if (reason && ndead < KAFKA_DLQ_STASH) {
                dead[ndead].km = km;
                dead[ndead].rkm = rkm;
                dead[ndead++].reason = reason;
                continue;
            }
            if (!failed++)
                first_err = rkm->err;
            if (rkm->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                rkm->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
                purged = 1;
            dr_failed(s, km, rkm, &retry);
            km_put(s, km);
        }
    }
    if (progress)
        s->last_progress_ns = itr_now_ns(); /* once per event: one clock read per batch */
    if (ndead) {
        /* Permanent failures: into the dead-letter file (one fdatasync for the batch). */
        int ok = 1;
        if (s->dlq) {
            for (size_t i = 0; i < ndead && ok; i++) {
                gw_spool_record rec;
                gw_spool_header h[GW_SPOOL_MAX_HEADERS];
                record_from_message(dead[i].rkm, &rec, h);
                ok = kafka_dlq_add(s->dlq, s->env->name, dead[i].reason,
                                   rd_kafka_err2str(dead[i].rkm->err), &rec) == 0;
            }
            if (!ok || kafka_dlq_commit(s->dlq)) {
                s->env->error(s->env, "dead_letter", "writing %s: %s", kafka_dlq_path(s->dlq),
                              strerror(errno));
                ok = 0;
            }
        } else {
            const rd_kafka_message_t *m0 = dead[0].rkm;
            s->env->error(s->env, "dead_letter",
                          "%zu messages failed permanently (first: topic %s: %s): no "
                          "dead_letter_file configured, messages not kept",
                          ndead, m0->rkt ? rd_kafka_topic_name(m0->rkt) : "?",
                          rd_kafka_err2str(m0->err));
        }
        for (size_t i = 0; i < ndead; i++) {
            struct kmsg *km = dead[i].km;
            if (!ok) {
                dr_failed(s, km, dead[i].rkm, &retry);
            } else if (km->d) {
                complete(s, km->d, GW_DEAD_LETTER, dead[i].reason);
            } else {
                gw_spool_ack(s->spool, km->spool_id);
            }
            km_put(s, km);
        }
    }
    if (failed) {
        s->env->error(s->env, "delivery", "%zu deliveries failed (first: %s)%s", failed,
                      rd_kafka_err2str(first_err),
                      s->spool ? ": Reliable ones go to the disk buffer or are retried"
                               : ": Reliable ones are retried");
    }
    /* Our own purge hands them back to be spooled at once; anything else waits a little. */
    if (retry && !(purged && s->spool && s->down))
        start_backoff(s);
}

static void handle_stats(gw_sink *s, const char *json)
{
    /* Only the brokers' states are needed: a scan, not a parse (the document can be large). */
    const char *b = strstr(json, "\"brokers\":");
    if (!b)
        return;
    const char *end = strstr(b, "\"topics\":");
    const char *up = strstr(b, "\"state\":\"UP\"");
    if (up && (!end || up < end))
        set_up(s);
}

static void handle_event(gw_sink *s, rd_kafka_event_t *ev)
{
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_DR:
        handle_dr(s, ev);
        break;
    case RD_KAFKA_EVENT_ERROR: {
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (rd_kafka_event_error_is_fatal(ev)) {
            char fatal[512];
            rd_kafka_resp_err_t fe = rd_kafka_fatal_error(s->p.rk, fatal, sizeof(fatal));
            s->env->error(s->env, "delivery",
                          "fatal producer error %s: %s: recreating the "
                          "producer and resending what was not confirmed",
                          rd_kafka_err2name(fe ? fe : e),
                          fe ? fatal : rd_kafka_event_error_string(ev));
            if (!s->fatal) {
                s->fatal = 1;
                itr_loop_timer_set(s->env->loop, &s->recreate_due, itr_now_ns());
            }
        } else if (e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
            char why[600];
            snprintf(why, sizeof(why), "all brokers down (%s)", rd_kafka_event_error_string(ev));
            set_down(s, "connect", why);
        } else if (e == RD_KAFKA_RESP_ERR__TRANSPORT || e == RD_KAFKA_RESP_ERR__RESOLVE ||
                   e == RD_KAFKA_RESP_ERR__AUTHENTICATION || e == RD_KAFKA_RESP_ERR__SSL) {
            s->env->error(s->env, "connect", "%s", rd_kafka_event_error_string(ev));
        } else {
            s->env->error(s->env, "delivery", "%s: %s", rd_kafka_err2name(e),
                          rd_kafka_event_error_string(ev));
        }
        break;
    }
    case RD_KAFKA_EVENT_LOG: {
        const char *fac, *str;
        int level;
        if (rd_kafka_event_log(ev, &fac, &str, &level) == 0) {
            /* syslog levels -> error/warn/info/debug */
            int l = level <= 3 ? 0 : level == 4 ? 1 : level <= 6 ? 2 : 3;
            s->env->log(s->env, l, "librdkafka %s: %s", fac, str);
        }
        break;
    }
    case RD_KAFKA_EVENT_STATS:
        handle_stats(s, rd_kafka_event_stats(ev));
        break;
    default:
        break;
    }
}

static void serve_queue(gw_sink *s)
{
    rd_kafka_event_t *ev;
    while (s->p.q && (ev = rd_kafka_queue_poll(s->p.q, 0))) {
        handle_event(s, ev);
        rd_kafka_event_destroy(ev);
    }
}

/* A fatal error (e.g. the idempotent producer was fenced): purge the old producer, collect
 * its reports (the purged messages go to retry in their order), replace it and resend. */
static void on_recreate_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    (void)now;
    char err[512];
    if (s->p.rk) {
        rd_kafka_purge(s->p.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        uint64_t deadline = itr_now_ns() + KAFKA_RECREATE_WAIT;
        while (s->outstanding && itr_now_ns() < deadline) {
            rd_kafka_event_t *ev = rd_kafka_queue_poll(s->p.q, 100);
            if (ev) {
                if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR)
                    handle_dr(s, ev);
                rd_kafka_event_destroy(ev);
            }
        }
        struct producer old = s->p;
        memset(&s->p, 0, sizeof(s->p));
        producer_free(s, &old);
        /* Reports that never came: the messages are resent (deliveries from their message,
         * replayed records stay unacknowledged in the spool for the next process). */
        while (s->out_head.next != &s->out_head) {
            struct kmsg *km = s->out_head.next;
            s->outstanding--;
            if (km->replay)
                s->replay_outstanding--;
            else if (km->d)
                ring_push(&s->retry, (struct pend){.d = km->d});
            km_put(s, km);
        }
    }
    s->fatal = 0;
    s->backoff = 0;
    itr_loop_timer_cancel(s->env->loop, &s->retry_due);
    if (producer_new(s, err, sizeof(err)) < 0) {
        s->env->error(s->env, "connect", "%s", err);
        s->fatal = 1;
        itr_loop_timer_set(s->env->loop, &s->recreate_due,
                           itr_now_ns() + jitter(s, s->c.max_retry_backoff_ms * 1000000u));
        update_state(s);
        return;
    }
    s->env->log(s->env, 2, "kafka: producer recreated; resending %zu messages", s->retry.n);
    pump(s);
}

/* ---- connector interface ---- */

static void spool_log(void *arg, const char *msg)
{
    gw_sink *s = arg;
    s->env->error(s->env, "spool", "%s", msg);
}

static int spool_try_open(gw_sink *s, char *err, size_t errlen)
{
    gw_spool_options o = {.dir = s->c.spool_dir,
                          .max_bytes = s->c.spool_max_bytes,
                          .segment_bytes = s->c.spool_segment_bytes,
                          .log = spool_log,
                          .log_arg = s};
    return gw_spool_open(&s->spool, &o, err, errlen);
}

static void on_spool_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    char err[GW_ERR_LEN];
    int rc = spool_try_open(s, err, sizeof(err));
    if (rc == ITR_ERR_WOULDBLOCK) {
        itr_loop_timer_set(s->env->loop, &s->spool_due, now + 1000000000u);
        return;
    }
    if (rc < 0) {
        s->env->error(s->env, "spool", "%s: running without the disk buffer", err);
        return;
    }
    s->env->log(s->env, 2, "kafka: disk buffer %s opened", s->c.spool_dir);
    update_state(s);
    pump(s); /* replay what the previous instance left */
}

static int kafka_validate(const cJSON *conf, const char *where, char *err, size_t errlen)
{
    struct kafka_conf kc;
    int rc = kafka_conf_parse(&kc, conf, where, err, errlen);
    kafka_conf_free(&kc);
    return rc;
}

static void kafka_close(gw_sink *s);

static int kafka_open(gw_sink **out, const cJSON *conf, gw_sink_env *env, char *err, size_t errlen)
{
    gw_sink *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return ITR_ERR_NOMEM;
    }
    int rc;
    s->env = env;
    s->out_head.next = s->out_head.prev = &s->out_head;
    s->p.pipe[0] = s->p.pipe[1] = -1;
    itr_timer_init(&s->retry_due, on_retry_due, s);
    itr_timer_init(&s->stall_check, on_stall_check, s);
    itr_timer_init(&s->recreate_due, on_recreate_due, s);
    itr_timer_init(&s->spool_due, on_spool_due, s);
    s->rng = itr_now_ns() ^ (uint64_t)(uintptr_t)s;
    if (!s->rng)
        s->rng = 1;
    if ((rc = kafka_conf_parse(&s->c, conf, env->name, err, errlen)) < 0)
        goto fail;

    /* Tables sized by the runtime's bound on what it hands us (2 x queue_messages slots)
     * plus the replay window: nothing here grows while running. */
    size_t cap = 2 * (size_t)s->c.queue_messages + KAFKA_REPLAY_WINDOW + 16;
    s->kmsgs = calloc(cap, sizeof(*s->kmsgs));
    s->spooled = calloc(cap, sizeof(*s->spooled));
    s->spooled_cap = cap;
    if (!s->kmsgs || !s->spooled || ring_init(&s->retry, cap) || ring_init(&s->back, cap)) {
        snprintf(err, errlen, "out of memory");
        rc = ITR_ERR_NOMEM;
        goto fail;
    }
    for (size_t i = cap; i-- > 0;) {
        s->kmsgs[i].next = s->free_km;
        s->free_km = &s->kmsgs[i];
    }
    if (s->c.disk_buffer && (rc = spool_try_open(s, err, errlen)) < 0) {
        if (rc != ITR_ERR_WOULDBLOCK)
            goto fail;
        /* Locked by the instance this one replaces (a reload changed the sink): run
         * without the buffer until that one has drained and closed. */
        env->log(env, 1, "kafka: %s: retrying every second", err);
        itr_loop_timer_set(env->loop, &s->spool_due, itr_now_ns() + 1000000000u);
    }
    if (s->c.dead_letter_file &&
        (rc = kafka_dlq_open(&s->dlq, s->c.dead_letter_file, err, errlen)) < 0)
        goto fail;
    if ((rc = producer_new(s, err, errlen)) < 0)
        goto fail;
    if (s->c.has_consumer &&
        (rc = kafka_consumer_open(&s->consumer, &s->c, env, s->dlq, err, errlen)) < 0)
        goto fail;
    if (s->spool && gw_spool_has_unread(s->spool))
        env->log(env, 2,
                 "kafka: disk buffer %s holds %" PRIu64 " bytes from an earlier run: "
                 "replaying",
                 s->c.spool_dir, gw_spool_bytes(s->spool));
    s->last_progress_ns = itr_now_ns();
    update_state(s);
    pump(s); /* replay what an earlier run left */
    *out = s;
    return 0;
fail:
    kafka_close(s);
    return rc;
}

static size_t kafka_submit(gw_sink *s, gw_delivery **d, size_t n)
{
    size_t room = s->back.cap - s->back.n - s->retry.n;
    size_t take = n < room ? n : room;
    for (size_t i = 0; i < take; i++)
        ring_push(&s->back, (struct pend){.d = d[i]});
    s->held += take;
    atomic_store_explicit(&s->held_view, s->held, memory_order_relaxed);
    if (take < n)
        s->refused = 1;
    pump(s);
    return take;
}

static int kafka_flush(gw_sink *s, uint64_t deadline_ns)
{
    for (;;) {
        pump(s);
        if (!s->held)
            return 0;
        int rc = gw_sink_run_until(s->env->loop, deadline_ns);
        if (rc)
            return rc;
    }
}

static void kafka_status(gw_sink *s, gw_sink_status *st)
{
    st->state = (gw_sink_state)atomic_load_explicit(&s->state, memory_order_relaxed);
    st->in_flight = atomic_load_explicit(&s->held_view, memory_order_relaxed);
    st->buffered_bytes = s->spool ? gw_spool_bytes(s->spool) : 0;
}

static void kafka_close(gw_sink *s)
{
    if (!s)
        return;
    kafka_consumer_close(s->consumer);
    if (s->env && s->env->loop) {
        itr_loop_timer_cancel(s->env->loop, &s->retry_due);
        itr_loop_timer_cancel(s->env->loop, &s->stall_check);
        itr_loop_timer_cancel(s->env->loop, &s->recreate_due);
        itr_loop_timer_cancel(s->env->loop, &s->spool_due);
    }
    if (s->p.rk) {
        /* What is still held is completed by the runtime as not durable; spooled records
         * handed out stay in the spool for the next run. */
        rd_kafka_purge(s->p.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        producer_free(s, &s->p);
    }
    gw_spool_close(s->spool);
    kafka_dlq_close(s->dlq);
    ring_free(&s->retry);
    ring_free(&s->back);
    free(s->kmsgs);
    free(s->spooled);
    kafka_conf_free(&s->c);
    free(s);
}

const gw_connector gw_kafka_connector = {
    .type = "kafka",
    .validate = kafka_validate,
    .open = kafka_open,
    .submit = kafka_submit,
    .flush = kafka_flush,
    .status = kafka_status,
    .close = kafka_close,
};
