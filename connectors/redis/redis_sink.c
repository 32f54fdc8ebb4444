/* redis_sink.c: the "redis" connector: each delivery becomes one XADD (mode "stream") or
 * PUBLISH (mode "publish") on one pipelined hiredis async connection, driven by the sink
 * thread's itr_loop through a small adapter (the ev.addRead/delRead/addWrite/delWrite/cleanup
 * hooks hiredis offers foreign event loops). Nothing blocks except the name lookup of a
 * non-numeric host at connect time (hiredis calls getaddrinfo) and dead-letter writes.
 *
 * Every delivery taken by submit sits in one FIFO ring, in order: the first `sent` entries
 * have a command on the connection (replies come back in the same order, so a reply always
 * belongs to the ring's head), the rest wait for the connection or for room in the pipeline
 * (max_pipeline). A reply completes the head: OK -> GW_DURABLE; a permanent error reply ->
 * dead-letter file, GW_DEAD_LETTER; a retriable one (LOADING, BUSY, OOM, ...) drops the
 * connection like a network error does. When the connection goes, every entry is unsent
 * again: Realtime ones are discarded (reason sink_down), Reliable ones are sent again after
 * the reconnect (exponential backoff, +-20% jitter) in their original order. A command whose
 * reply was lost may have been applied: at-least-once (docs/SINKS.md).
 */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "connector.h"
#include "kafka/kafka_dlq.h" /* the dead-letter file format is shared with the Kafka sink */
#include "log.h"
#include "router.h"

#define REDIS_DEST_MAX       1024 /* rendered channel / stream key */
#define REDIS_RETRY_MIN_NS   (50ull * 1000 * 1000)
#define REDIS_RETRY_MAX_NS   (2ull * 1000 * 1000 * 1000)
#define REDIS_MAX_PIPELINE   65536
#define REDIS_MAX_TIMEOUT_MS 3600000
#define REDIS_HOST_MAX       256
#define REDIS_UNIX_MAX       107 /* sun_path */
#define REDIS_SECRET_MAX     512

enum redis_mode { MODE_STREAM = 0, MODE_PUBLISH };

struct redis_conf {
    char host[REDIS_HOST_MAX]; /* empty with a unix path */
    int port;
    char unix_path[REDIS_UNIX_MAX + 1];
    enum redis_mode mode;
    uint64_t maxlen; /* 0: no trimming */
    char username[REDIS_SECRET_MAX];
    char password[REDIS_SECRET_MAX];
    int have_password;
    uint64_t database;
    uint64_t connect_timeout_ms;
    uint64_t command_timeout_ms;
    uint64_t max_pipeline;
    char *dead_letter_file;
};

enum conn_state { CONN_NONE = 0, CONN_CONNECTING, CONN_READY };

struct ent {
    gw_delivery *d;
    uint64_t sent_ns; /* when its command was written to hiredis */
};

struct gw_sink {
    gw_sink_env *env;
    struct redis_conf c;
    redisAsyncContext *ac; /* NULL while disconnected */
    enum conn_state conn;
    uint32_t ev_mask; /* ITR_EV_* hiredis asked for */
    int watched_fd;   /* -1: none */
    int hello_left;   /* handshake replies (AUTH, SELECT, PING) still expected */
    int down;         /* a connect failed or the connection was lost: Realtime is discarded */
    int closing;      /* close() is tearing the context down */
    int dropping;     /* redisAsyncFree was called: no more commands on this context */
    int refused;      /* submit refused some: env->ready() once the ring has room */
    uint64_t backoff_ns;
    uint64_t rng;

    struct ent *ring; /* FIFO of held deliveries; cap is a power of two */
    size_t cap, head, count;
    size_t sent; /* ring[head .. head+sent) have a command on the connection */

    itr_timer retry_due;   /* reconnect */
    itr_timer connect_due; /* connect_timeout_ms */
    itr_timer reply_due;   /* command_timeout_ms for the oldest command */
    itr_timer write_due;   /* commands buffered in hiredis: write them this loop iteration */
    int want_write;        /* hiredis has output buffered */

    char *cmd; /* RESP formatting scratch, grows to the largest command seen */
    size_t cmd_cap;
    char dest[REDIS_DEST_MAX];
    struct kafka_dlq *dlq;

    _Atomic int state;
    _Atomic uint64_t in_flight;
};

/* ---- configuration ---- */

static int conf_fail_got(char *err, size_t errlen, const char *where, const char *key,
                         const char *expected, const cJSON *got)
{
    char *txt = cJSON_PrintUnformatted(got);
    snprintf(err, errlen, "%s.%s: expected %s, got %s", where, key, expected, txt ? txt : "?");
    cJSON_free(txt);
    return -1;
}

static int conf_uint(const cJSON *it, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!cJSON_IsNumber(it))
        return -1;
    double v = it->valuedouble;
    if (v < (double)min || v > (double)max || v != (double)(uint64_t)v)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* "host:port", "[v6]:port" or "unix:/path". */
static int parse_address(const char *a, struct redis_conf *rc)
{
    if (!strncmp(a, "unix:", 5)) {
        const char *p = a + 5;
        if (!p[0] || strlen(p) > REDIS_UNIX_MAX)
            return -1;
        memcpy(rc->unix_path, p, strlen(p) + 1);
        rc->host[0] = 0;
        return 0;
    }
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a)
        return -1;
    const char *h = a;
    size_t hn = (size_t)(colon - a);
    if (a[0] == '[') {
        if (hn < 3 || a[hn - 1] != ']')
            return -1;
        h = a + 1;
        hn -= 2;
    } else if (memchr(a, ':', hn)) {
        return -1; /* a bare IPv6 address needs brackets */
    }
    if (hn >= REDIS_HOST_MAX)
        return -1;
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || colon[1] == '-' || colon[1] == '+' || port < 1 ||
        port > 65535)
        return -1;
    memcpy(rc->host, h, hn);
    rc->host[hn] = 0;
    for (size_t i = 0; i < hn; i++) {
        if (rc->host[i] <= ' ' || rc->host[i] == '/' || rc->host[i] == '[' || rc->host[i] == ']')
            return -1;
    }
    rc->port = (int)port;
    return 0;
}

static void redis_conf_free(struct redis_conf *rc)
{
    free(rc->dead_letter_file);
    rc->dead_letter_file = NULL;
}

static int redis_parse_keys(const cJSON *conf, const char *where, struct redis_conf *rc, char *err,
                            size_t errlen)
{
    static const char known[] = "address, mode, maxlen, username, password, database, "
                                "connect_timeout_ms, command_timeout_ms, max_pipeline, "
                                "dead_letter_file";
    memset(rc, 0, sizeof(*rc));
    snprintf(rc->host, sizeof(rc->host), "127.0.0.1");
    rc->port = 6379;
    rc->mode = MODE_STREAM;
    rc->connect_timeout_ms = 5000;
    rc->command_timeout_ms = 10000;
    rc->max_pipeline = 1024;
    int have_user = 0;
    if (!cJSON_IsObject(conf)) {
        snprintf(err, errlen, "%s: expected an object", where);
        return -1;
    }
    for (const cJSON *it = conf->child; it; it = it->next) {
        const char *k = it->string;
        if (!strcmp(k, "type") || !strcmp(k, "required") || !strcmp(k, "max_inflight_bytes") ||
            !strcmp(k, "queue_messages"))
            continue; /* the runtime's keys */
        if (!strcmp(k, "address")) {
            if (!cJSON_IsString(it) || parse_address(it->valuestring, rc))
                return conf_fail_got(err, errlen, where, k,
                                     "\"host:port\", \"[ipv6]:port\" or \"unix:/path\"", it);
        } else if (!strcmp(k, "mode")) {
            const char *v = cJSON_IsString(it) ? it->valuestring : "";
            if (!strcmp(v, "stream"))
                rc->mode = MODE_STREAM;
            else if (!strcmp(v, "publish"))
                rc->mode = MODE_PUBLISH;
            else
                return conf_fail_got(err, errlen, where, k, "\"stream\" or \"publish\"", it);
        } else if (!strcmp(k, "maxlen")) {
            if (conf_uint(it, 0, (1ull << 53), &rc->maxlen))
                return conf_fail_got(err, errlen, where, k, "an integer >= 0 (0: no trimming)", it);
        } else if (!strcmp(k, "username") || !strcmp(k, "password")) {
            /* Never echo the value: it may be a secret. */
            if (!cJSON_IsString(it) || !it->valuestring[0] ||
                strlen(it->valuestring) >= REDIS_SECRET_MAX) {
                snprintf(err, errlen, "%s.%s: expected a non-empty string of at most %d bytes",
                         where, k, REDIS_SECRET_MAX - 1);
                return -1;
            }
            if (k[0] == 'u') {
                snprintf(rc->username, sizeof(rc->username), "%s", it->valuestring);
                have_user = 1;
            } else {
                snprintf(rc->password, sizeof(rc->password), "%s", it->valuestring);
                rc->have_password = 1;
            }
        } else if (!strcmp(k, "database")) {
            if (conf_uint(it, 0, 2147483647, &rc->database))
                return conf_fail_got(err, errlen, where, k, "an integer 0..2147483647", it);
        } else if (!strcmp(k, "connect_timeout_ms")) {
            if (conf_uint(it, 1, REDIS_MAX_TIMEOUT_MS, &rc->connect_timeout_ms))
                return conf_fail_got(err, errlen, where, k, "an integer 1..3600000", it);
        } else if (!strcmp(k, "command_timeout_ms")) {
            if (conf_uint(it, 1, REDIS_MAX_TIMEOUT_MS, &rc->command_timeout_ms))
                return conf_fail_got(err, errlen, where, k, "an integer 1..3600000", it);
        } else if (!strcmp(k, "max_pipeline")) {
            if (conf_uint(it, 1, REDIS_MAX_PIPELINE, &rc->max_pipeline))
                return conf_fail_got(err, errlen, where, k, "an integer 1..65536", it);
        } else if (!strcmp(k, "dead_letter_file")) {
            if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) > 4000)
                return conf_fail_got(err, errlen, where, k, "a non-empty file path", it);
            free(rc->dead_letter_file);
            if (!(rc->dead_letter_file = strdup(it->valuestring))) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        } else if (!strcmp(k, "tls")) {
            snprintf(err, errlen,
                     "%s.tls: not supported (the hiredis this gateway is built with has no TLS; "
                     "use a local TLS tunnel such as stunnel)",
                     where);
            return -1;
        } else {
            snprintf(err, errlen, "%s.%s: unknown key (expected one of: %s)", where, k, known);
            return -1;
        }
    }
    if (have_user && !rc->have_password) {
        snprintf(err, errlen, "%s.username: needs \"password\" as well (AUTH username password)",
                 where);
        return -1;
    }
    if (rc->maxlen && rc->mode != MODE_STREAM) {
        snprintf(err, errlen, "%s.maxlen: only valid with \"mode\": \"stream\"", where);
        return -1;
    }
    return 0;
}

static int redis_parse(const cJSON *conf, const char *where, struct redis_conf *rc, char *err,
                       size_t errlen)
{
    if (redis_parse_keys(conf, where, rc, err, errlen) == 0)
        return 0;
    redis_conf_free(rc);
    return -1;
}

static int redis_validate(const cJSON *conf, const char *where, char *err, size_t errlen)
{
    struct redis_conf rc;
    if (redis_parse(conf, where, &rc, err, errlen))
        return -1;
    redis_conf_free(&rc);
    sodium_memzero(rc.password, sizeof(rc.password));
    return 0;
}

/* ---- small helpers ---- */

static uint64_t jitter(gw_sink *s, uint64_t ns)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    uint64_t span = ns / 5;
    return ns - span + (span ? s->rng % (2 * span + 1) : 0);
}

static void set_state(gw_sink *s, gw_sink_state st)
{
    atomic_store_explicit(&s->state, st, memory_order_relaxed);
}

static void update_in_flight(gw_sink *s)
{
    atomic_store_explicit(&s->in_flight, (uint64_t)s->count, memory_order_relaxed);
}

static struct ent *ring_at(gw_sink *s, size_t i)
{
    return &s->ring[(s->head + i) & (s->cap - 1)];
}

static gw_delivery *ring_pop(gw_sink *s)
{
    gw_delivery *d = s->ring[s->head].d;
    s->head = (s->head + 1) & (s->cap - 1);
    s->count--;
    return d;
}

static void address_text(const gw_sink *s, char *out, size_t cap)
{
    if (s->c.unix_path[0])
        snprintf(out, cap, "unix:%s", s->c.unix_path);
    else
        snprintf(out, cap, strchr(s->c.host, ':') ? "[%s]:%d" : "%s:%d", s->c.host, s->c.port);
}

/* Completions free room: let the runtime offer more. */
static void maybe_ready(gw_sink *s)
{
    if (s->refused && s->count < s->cap) {
        s->refused = 0;
        s->env->ready(s->env);
    }
}

/* ---- RESP formatting (into s->cmd; no allocation once it is large enough) ---- */

struct argv_buf {
    const char *p[24];
    size_t n[24];
    int argc;
};

static void arg_add(struct argv_buf *a, const void *p, size_t n)
{
    a->p[a->argc] = p;
    a->n[a->argc] = n;
    a->argc++;
}

static size_t digits(size_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Returns the command length, 0 on ENOMEM. */
static size_t resp_format(gw_sink *s, const struct argv_buf *a)
{
    /* +1: a NUL after the command. hiredis' redisAsyncFormattedCommand finds the command name
     * with strchr(), which (strictly) reads a C string. */
    size_t need = 1 + digits((size_t)a->argc) + 2 + 1;
    for (int i = 0; i < a->argc; i++)
        need += 1 + digits(a->n[i]) + 2 + a->n[i] + 2;
    if (need > s->cmd_cap) {
        size_t cap = s->cmd_cap ? s->cmd_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *p = realloc(s->cmd, cap);
        if (!p)
            return 0;
        s->cmd = p;
        s->cmd_cap = cap;
    }
    char *o = s->cmd;
    o += sprintf(o, "*%d\r\n", a->argc);
    for (int i = 0; i < a->argc; i++) {
        o += sprintf(o, "$%zu\r\n", a->n[i]);
        memcpy(o, a->p[i], a->n[i]);
        o += a->n[i];
        *o++ = '\r';
        *o++ = '\n';
    }
    *o = '\0';
    return (size_t)(o - s->cmd);
}

/* Format d's command. Returns its length; 0 with *why set when d cannot be sent. */
static size_t format_delivery(gw_sink *s, const gw_delivery *d, const char **why)
{
    const gw_msg *m = d->msg;
    size_t dn = gw_route_sink_destination(d->rs, m, s->dest, sizeof(s->dest));
    if (dn == (size_t)-1 || dn == 0) {
        *why = dn ? "destination longer than 1023 bytes" : "destination renders empty";
        return 0;
    }
    struct argv_buf a = {.argc = 0};
    char seq[16], ts[24], maxlen[24];
    if (s->c.mode == MODE_PUBLISH) {
        arg_add(&a, "PUBLISH", 7);
        arg_add(&a, s->dest, dn);
        arg_add(&a, m->body, m->body_len);
    } else {
        arg_add(&a, "XADD", 4);
        arg_add(&a, s->dest, dn);
        if (s->c.maxlen) {
            arg_add(&a, "MAXLEN", 6);
            arg_add(&a, "~", 1);
            arg_add(&a, maxlen, (size_t)snprintf(maxlen, sizeof(maxlen), "%" PRIu64, s->c.maxlen));
        }
        arg_add(&a, "*", 1);
        arg_add(&a, "peer", 4);
        arg_add(&a, m->peer_hex, strlen(m->peer_hex));
        arg_add(&a, "shard", 5);
        arg_add(&a, m->shard_name ? m->shard_name : "", m->shard_name ? m->shard_name_len : 0);
        arg_add(&a, "topic", 5);
        arg_add(&a, m->topic, m->topic_len);
        arg_add(&a, "seq", 3);
        arg_add(&a, seq, (size_t)snprintf(seq, sizeof(seq), "%" PRIu32, m->seq));
        arg_add(&a, "intent", 6);
        if (m->intent == ITR_INTENT_RELIABLE)
            arg_add(&a, "reliable", 8);
        else
            arg_add(&a, "realtime", 8);
        arg_add(&a, "ts", 2);
        arg_add(&a, ts, (size_t)snprintf(ts, sizeof(ts), "%" PRIu64, m->recv_wall_ns));
        arg_add(&a, "payload", 7);
        arg_add(&a, m->body, m->body_len);
    }
    size_t n = resp_format(s, &a);
    if (!n)
        *why = NULL; /* ENOMEM: retried */
    return n;
}

/* ---- dead letters ---- */

/* Returns 0 when handled (written, or counted when there is no dead-letter file), -1 when
 * the write failed and the delivery must be kept. */
static int dead_letter(gw_sink *s, const gw_delivery *d, const char *dest, const char *reason,
                       const char *error)
{
    const gw_msg *m = d->msg;
    if (!s->dlq) {
        s->env->error(s->env, "dead_letter",
                      "permanent failure for %s (%s: %s): no dead_letter_file configured, "
                      "message not kept",
                      dest, reason, error);
        return 0;
    }
    char seq[16], ts[24];
    const char *intent = m->intent == ITR_INTENT_RELIABLE ? "reliable" : "realtime";
    gw_spool_header h[6] = {
        {"intentra-peer", 13, m->peer_hex, strlen(m->peer_hex)},
        {"intentra-shard", 14, m->shard_name ? m->shard_name : "",
         m->shard_name ? m->shard_name_len : 0},
        {"intentra-topic", 14, m->topic, m->topic_len},
        {"intentra-seq", 12, seq, (size_t)snprintf(seq, sizeof(seq), "%" PRIu32, m->seq)},
        {"intentra-intent", 15, intent, strlen(intent)},
        {"intentra-received-ns", 20, ts,
         (size_t)snprintf(ts, sizeof(ts), "%" PRIu64, m->recv_wall_ns)},
    };
    gw_spool_record rec = {
        .partition = -1,
        .timestamp_ms = (int64_t)(m->recv_wall_ns / 1000000u),
        .topic = dest,
        .topic_len = strlen(dest),
        .headers = h,
        .header_count = 6,
        .value = m->body,
        .value_len = m->body_len,
    };
    if (kafka_dlq_add(s->dlq, s->env->name, reason, error, &rec) || kafka_dlq_commit(s->dlq)) {
        s->env->error(s->env, "dead_letter", "writing %s: %s", kafka_dlq_path(s->dlq),
                      strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- the connection ---- */

static void drop_connection(gw_sink *s);
static void on_io(void *arg, int fd, uint32_t events);
static void start_connect(gw_sink *s);
static void pump(gw_sink *s);

static void schedule_reconnect(gw_sink *s)
{
    s->backoff_ns = s->backoff_ns ? s->backoff_ns * 2 : REDIS_RETRY_MIN_NS;
    if (s->backoff_ns > REDIS_RETRY_MAX_NS)
        s->backoff_ns = REDIS_RETRY_MAX_NS;
    itr_loop_timer_set(s->env->loop, &s->retry_due, itr_now_ns() + jitter(s, s->backoff_ns));
}

/* The connection is gone (hiredis' cleanup hook, every teardown path comes here once): every
 * held delivery is unsent again; Realtime ones are discarded, Reliable ones keep their order
 * and are sent again after the reconnect. */
static void connection_gone(gw_sink *s)
{
    s->ac = NULL;
    s->dropping = 0;
    s->conn = CONN_NONE;
    s->sent = 0;
    s->hello_left = 0;
    if (s->watched_fd >= 0)
        itr_loop_unwatch(s->env->loop, s->watched_fd);
    s->watched_fd = -1;
    s->ev_mask = 0;
    itr_loop_timer_cancel(s->env->loop, &s->connect_due);
    itr_loop_timer_cancel(s->env->loop, &s->reply_due);
    itr_loop_timer_cancel(s->env->loop, &s->write_due);
    s->want_write = 0;
    if (s->closing)
        return;
    s->down = 1;
    set_state(s, GW_SINK_DOWN);
    /* Compact the ring in place: Reliable entries keep their relative order. */
    size_t n = s->count, w = 0;
    for (size_t i = 0; i < n; i++) {
        struct ent e = *ring_at(s, i);
        if (e.d->reliable)
            *ring_at(s, w++) = e;
        else
            s->env->complete(s->env, e.d, GW_DISCARDED, "sink_down");
    }
    s->count = w;
    update_in_flight(s);
    schedule_reconnect(s);
    maybe_ready(s);
}

static void ev_update(gw_sink *s)
{
    if (!s->ac)
        return;
    int fd = s->ac->c.fd;
    if (fd < 0)
        return;
    s->watched_fd = fd;
    if (itr_loop_watch(s->env->loop, fd, s->ev_mask, on_io, s) < 0)
        s->env->error(s->env, "connect", "watching the Redis socket: %s", strerror(errno));
}

/* hiredis calls addWrite for every command it buffers: touch epoll only on a change. */
static void ev_set(gw_sink *s, uint32_t mask, uint32_t bit, int on)
{
    uint32_t next = on ? mask | bit : mask & ~bit;
    if (next == mask && s->watched_fd >= 0)
        return;
    s->ev_mask = next;
    ev_update(s);
}

static void ev_add_read(void *p)
{
    ev_set(p, ((gw_sink *)p)->ev_mask, ITR_EV_READ, 1);
}

static void ev_del_read(void *p)
{
    ev_set(p, ((gw_sink *)p)->ev_mask, ITR_EV_READ, 0);
}

/* Connected, hiredis asks for writability once per command it buffers: instead of watching
 * for EPOLLOUT (two epoll_ctl per batch), write at the end of this loop iteration, so all
 * commands of one iteration go out in one write; EPOLLOUT is watched only when the socket
 * buffer is full. Connecting, writability is how the connect completes: watch it. */
static void ev_add_write(void *p)
{
    gw_sink *s = p;
    s->want_write = 1;
    if (s->ac && (s->ac->c.flags & REDIS_CONNECTED)) {
        if (!(s->ev_mask & ITR_EV_WRITE) && !itr_timer_armed(&s->write_due))
            itr_loop_timer_set(s->env->loop, &s->write_due, itr_now_ns());
        return;
    }
    ev_set(s, s->ev_mask, ITR_EV_WRITE, 1);
}

static void ev_del_write(void *p)
{
    gw_sink *s = p;
    s->want_write = 0;
    ev_set(s, s->ev_mask, ITR_EV_WRITE, 0);
}

static void ev_cleanup(void *p)
{
    connection_gone(p);
}

/* Tear the connection down; the cleanup hook (connection_gone) runs now, or when hiredis
 * returns from the callback we are in. */
static void drop_connection(gw_sink *s)
{
    if (s->ac && !s->dropping) {
        s->dropping = 1;
        redisAsyncFree(s->ac);
    }
}

static void became_ready(gw_sink *s)
{
    char addr[REDIS_HOST_MAX + 16];
    s->conn = CONN_READY;
    itr_loop_timer_cancel(s->env->loop, &s->connect_due);
    if (s->down || s->backoff_ns) {
        address_text(s, addr, sizeof(addr));
        s->env->log(s->env, GW_LOG_INFO, "redis %s: connected again", addr);
    }
    s->down = 0;
    s->backoff_ns = 0;
    set_state(s, GW_SINK_UP);
    pump(s);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    gw_sink *s = ac->data;
    if (s->closing)
        return;
    if (status != REDIS_OK) {
        char addr[REDIS_HOST_MAX + 16];
        address_text(s, addr, sizeof(addr));
        s->env->error(s->env, "connect", "connect to %s: %s", addr,
                      ac->errstr ? ac->errstr : "failed");
        return; /* hiredis frees the context next: ev_cleanup */
    }
    if (!s->hello_left)
        became_ready(s);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    gw_sink *s = ac->data;
    if (s->closing || status == REDIS_OK)
        return;
    char addr[REDIS_HOST_MAX + 16];
    address_text(s, addr, sizeof(addr));
    s->env->error(s->env, "connect", "connection to %s lost: %s", addr,
                  ac->errstr ? ac->errstr : "disconnected");
}

/* AUTH and SELECT replies. */
static void on_hello(redisAsyncContext *ac, void *r, void *priv)
{
    gw_sink *s = priv;
    redisReply *rep = r;
    (void)ac;
    if (!rep || s->closing || s->dropping)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        char addr[REDIS_HOST_MAX + 16];
        address_text(s, addr, sizeof(addr));
        /* The server's text never contains the password. */
        s->env->error(s->env, "connect", "redis %s: %s refused: %.*s", addr,
                      s->hello_left > 1 || !s->c.database ? "AUTH" : "SELECT", (int)rep->len,
                      rep->str);
        drop_connection(s);
        return;
    }
    if (--s->hello_left == 0 && s->conn == CONN_CONNECTING)
        became_ready(s);
}

/* Error replies after which the same command may succeed later: the connection is dropped
 * and everything unconfirmed is sent again after a backoff. Anything else is permanent for
 * that message. OOM is retriable on purpose: an out-of-memory Redis throttles the senders
 * (the sink's budget fills up) instead of dead-lettering every message. */
static int retriable_error(const char *e, size_t n)
{
    static const char *const codes[] = {"LOADING",    "BUSY",     "TRYAGAIN",   "CLUSTERDOWN",
                                        "MASTERDOWN", "READONLY", "NOREPLICAS", "MISCONF",
                                        "OOM",        "NOAUTH",   "NOTREADY"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        size_t l = strlen(codes[i]);
        if (n >= l && !memcmp(e, codes[i], l) && (n == l || e[l] == ' '))
            return 1;
    }
    return 0;
}

/* One reply: it belongs to the ring's head. */
static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    gw_sink *s = priv;
    redisReply *rep = r;
    (void)ac;
    if (!rep || s->closing || s->dropping || !s->sent)
        return; /* NULL: the connection is going away; connection_gone requeues */
    gw_delivery *d = s->ring[s->head].d;
    if (rep->type == REDIS_REPLY_ERROR) {
        const char *dest = s->dest;
        if (gw_route_sink_destination(d->rs, d->msg, s->dest, sizeof(s->dest)) == (size_t)-1)
            dest = "?";
        if (retriable_error(rep->str, rep->len)) {
            s->env->error(s->env, "delivery", "%s %s: %.*s: reconnecting and retrying",
                          s->c.mode == MODE_STREAM ? "XADD" : "PUBLISH", dest, (int)rep->len,
                          rep->str);
            drop_connection(s);
            return;
        }
        const char *reason = !strncmp(rep->str, "WRONGTYPE", 9) ? "invalid_destination" : "other";
        if (dead_letter(s, d, dest, reason, rep->str)) {
            drop_connection(s); /* kept: sent again after the reconnect */
            return;
        }
        ring_pop(s);
        s->sent--;
        s->env->complete(s->env, d, GW_DEAD_LETTER, reason);
        return;
    }
    ring_pop(s);
    s->sent--;
    s->env->complete(s->env, d, GW_DURABLE, NULL);
}

static void on_io(void *arg, int fd, uint32_t events)
{
    gw_sink *s = arg;
    redisAsyncContext *ac = s->ac;
    (void)fd;
    if (!ac)
        return;
    if ((events & (ITR_EV_READ | ITR_EV_ERROR)) && (s->ev_mask & ITR_EV_READ)) {
        redisAsyncHandleRead(ac);
        if (s->ac != ac)
            goto out; /* freed (a new context is only ever made from a timer) */
        /* One read may complete many commands: refill the pipeline once for all of them. */
        update_in_flight(s);
        pump(s);
    }
    if (s->ac == ac && (events & (ITR_EV_WRITE | ITR_EV_ERROR)) && (s->ev_mask & ITR_EV_WRITE))
        redisAsyncHandleWrite(ac);
out:
    maybe_ready(s);
}

static void start_connect(gw_sink *s)
{
    char addr[REDIS_HOST_MAX + 16];
    address_text(s, addr, sizeof(addr));
    redisAsyncContext *ac = s->c.unix_path[0] ? redisAsyncConnectUnix(s->c.unix_path)
                                              : redisAsyncConnect(s->c.host, s->c.port);
    if (!ac) {
        s->env->error(s->env, "connect", "connect to %s: out of memory", addr);
        s->down = 1;
        set_state(s, GW_SINK_DOWN);
        schedule_reconnect(s);
        return;
    }
    s->ac = ac;
    s->dropping = 0;
    s->conn = CONN_CONNECTING;
    ac->data = s;
    ac->ev.data = s;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    if (ac->err) {
        s->env->error(s->env, "connect", "connect to %s: %s", addr, ac->errstr);
        drop_connection(s); /* ev_cleanup: down, reconnect later */
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect); /* watches for writability: the connect */
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->hello_left = 0;
    if (s->c.have_password) {
        const char *argv[3] = {"AUTH", s->c.username, s->c.password};
        size_t lens[3] = {4, strlen(s->c.username), strlen(s->c.password)};
        if (s->c.username[0])
            redisAsyncCommandArgv(ac, on_hello, s, 3, argv, lens);
        else
            redisAsyncCommandArgv(ac, on_hello, s, 2, (const char *[]){"AUTH", s->c.password},
                                  (const size_t[]){4, lens[2]});
        s->hello_left++;
    }
    if (s->c.database) {
        char db[24];
        int n = snprintf(db, sizeof(db), "%" PRIu64, s->c.database);
        redisAsyncCommandArgv(ac, on_hello, s, 2, (const char *[]){"SELECT", db},
                              (const size_t[]){6, (size_t)n});
        s->hello_left++;
    }
    itr_loop_timer_set(s->env->loop, &s->connect_due,
                       itr_now_ns() + s->c.connect_timeout_ms * 1000000u);
}

/* Put waiting deliveries on the connection, up to max_pipeline commands in flight. */
static void pump(gw_sink *s)
{
    if (!s->ac || s->conn != CONN_READY || s->dropping)
        return;
    uint64_t now = itr_now_ns();
    while (s->sent < s->count && s->sent < s->c.max_pipeline) {
        struct ent *e = ring_at(s, s->sent);
        const char *why = NULL;
        size_t n = format_delivery(s, e->d, &why);
        if (!n) {
            if (!why || s->sent) {
                /* ENOMEM: try again later; a bad destination behind commands in flight
                 * waits until it is the head, so completions stay in order. */
                if (!why)
                    itr_loop_timer_set(s->env->loop, &s->retry_due, now + REDIS_RETRY_MIN_NS);
                break;
            }
            char tmpl[80];
            snprintf(tmpl, sizeof(tmpl), "%.60s", gw_route_sink_destination_template(e->d->rs));
            if (dead_letter(s, e->d, tmpl, "invalid_destination", why)) {
                itr_loop_timer_set(s->env->loop, &s->retry_due, now + REDIS_RETRY_MAX_NS);
                break;
            }
            gw_delivery *d = ring_pop(s);
            s->env->complete(s->env, d, GW_DEAD_LETTER, "invalid_destination");
            continue;
        }
        if (redisAsyncFormattedCommand(s->ac, on_reply, s, s->cmd, n) != REDIS_OK)
            break; /* the context is going away */
        e->sent_ns = now;
        s->sent++;
    }
    update_in_flight(s);
    if (s->sent && !itr_timer_armed(&s->reply_due))
        itr_loop_timer_set(s->env->loop, &s->reply_due,
                           ring_at(s, 0)->sent_ns + s->c.command_timeout_ms * 1000000u);
}

/* ---- timers ---- */

static void on_retry_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    (void)now;
    if (!s->ac)
        start_connect(s);
    else
        pump(s);
    maybe_ready(s);
}

static void on_write_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    redisAsyncContext *ac = s->ac;
    (void)now;
    if (!ac || !s->want_write)
        return;
    redisAsyncHandleWrite(ac); /* calls delWrite when everything was written */
    if (s->ac == ac && s->want_write)
        ev_set(s, s->ev_mask, ITR_EV_WRITE, 1); /* socket buffer full: wait for EPOLLOUT */
}

static void on_connect_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    (void)now;
    if (!s->ac || s->conn == CONN_READY)
        return;
    char addr[REDIS_HOST_MAX + 16];
    address_text(s, addr, sizeof(addr));
    s->env->error(s->env, "connect", "connect to %s: no answer within %" PRIu64 " ms", addr,
                  s->c.connect_timeout_ms);
    drop_connection(s);
}

static void on_reply_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    if (!s->sent || !s->ac)
        return;
    uint64_t limit = s->c.command_timeout_ms * 1000000u;
    uint64_t due = ring_at(s, 0)->sent_ns + limit;
    if (now < due) {
        itr_loop_timer_set(s->env->loop, &s->reply_due, due);
        return;
    }
    char addr[REDIS_HOST_MAX + 16];
    address_text(s, addr, sizeof(addr));
    s->env->error(s->env, "delivery",
                  "redis %s: no reply within %" PRIu64 " ms (%zu commands waiting): reconnecting",
                  addr, s->c.command_timeout_ms, s->sent);
    drop_connection(s);
}

/* ---- connector interface ---- */

static void redis_close(gw_sink *s);

static int redis_open(gw_sink **out, const cJSON *conf, gw_sink_env *env, char *err, size_t errlen)
{
    gw_sink *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->env = env;
    s->watched_fd = -1;
    itr_timer_init(&s->retry_due, on_retry_due, s);
    itr_timer_init(&s->connect_due, on_connect_due, s);
    itr_timer_init(&s->reply_due, on_reply_due, s);
    itr_timer_init(&s->write_due, on_write_due, s);
    if (redis_parse(conf, env->name, &s->c, err, errlen))
        goto fail;
    s->cap = 4096;
    while (s->cap < 4 * s->c.max_pipeline)
        s->cap *= 2;
    s->ring = calloc(s->cap, sizeof(*s->ring));
    s->cmd_cap = 4096;
    s->cmd = malloc(s->cmd_cap);
    if (!s->ring || !s->cmd) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (s->c.dead_letter_file && kafka_dlq_open(&s->dlq, s->c.dead_letter_file, err, errlen))
        goto fail;
    s->rng = itr_now_ns() ^ (uint64_t)(uintptr_t)s;
    if (!s->rng)
        s->rng = 1;
    set_state(s, GW_SINK_STARTING);
    start_connect(s); /* non-blocking: the sink is "up" once Redis answered */
    *out = s;
    return 0;
fail:
    redis_close(s);
    return -1;
}

static size_t redis_submit(gw_sink *s, gw_delivery **d, size_t n)
{
    size_t take = 0;
    for (; take < n; take++) {
        if (!d[take]->reliable && s->down) {
            s->env->complete(s->env, d[take], GW_DISCARDED, "sink_down");
            continue;
        }
        if (s->count == s->cap) {
            s->refused = 1;
            break;
        }
        s->ring[(s->head + s->count) & (s->cap - 1)] = (struct ent){.d = d[take]};
        s->count++;
    }
    pump(s);
    update_in_flight(s);
    return take;
}

static int redis_flush(gw_sink *s, uint64_t deadline_ns)
{
    for (;;) {
        pump(s);
        if (!s->count)
            return 0;
        int rc = gw_sink_run_until(s->env->loop, deadline_ns);
        if (rc)
            return rc;
    }
}

static void redis_status(gw_sink *s, gw_sink_status *st)
{
    st->state = (gw_sink_state)atomic_load_explicit(&s->state, memory_order_relaxed);
    st->in_flight = atomic_load_explicit(&s->in_flight, memory_order_relaxed);
    st->buffered_bytes = 0;
}

static void redis_close(gw_sink *s)
{
    if (!s)
        return;
    s->closing = 1;
    if (s->env && s->env->loop) {
        itr_loop_timer_cancel(s->env->loop, &s->retry_due);
        itr_loop_timer_cancel(s->env->loop, &s->connect_due);
        itr_loop_timer_cancel(s->env->loop, &s->reply_due);
        itr_loop_timer_cancel(s->env->loop, &s->write_due);
    }
    if (s->ac) {
        /* Pending callbacks run with NULL replies and return at once (closing); deliveries
         * still held are completed by the runtime as not durable. */
        s->dropping = 0;
        drop_connection(s);
    }
    kafka_dlq_close(s->dlq);
    redis_conf_free(&s->c);
    free(s->ring);
    free(s->cmd);
    sodium_memzero(s->c.password, sizeof(s->c.password));
    free(s);
}

const gw_connector gw_redis_connector = {
    .type = "redis",
    .validate = redis_validate,
    .open = redis_open,
    .submit = redis_submit,
    .flush = redis_flush,
    .status = redis_status,
    .close = redis_close,
};
