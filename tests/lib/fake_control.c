/* fake_control.c: the in-memory gw_gateway behind the admin API's unit tests
 * (fake_control.h). Everything is guarded by one mutex; publish completions run on a
 * detached thread, as the real gateway calls done from one of its own threads.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, strdup */
#include "fake_control.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <intentra/error.h>
#include <intentra/keys.h>

#include "sinks.h"

#define FAKE_MAX_PEERS 4096
#define FAKE_SINKS     2

struct gw_sinkset {
    int unused;
};

struct fake_pub_pending {
    void (*done)(void *arg, const gw_publish_result *res);
    void *arg;
    gw_publish_result res;
    uint32_t delay_ms;
};

struct gw_gateway {
    pthread_mutex_t lock;
    gw_state *state;
    cJSON *shards, *routes;
    int healthy, ready;
    char why[128];
    gw_peer_row *peers;
    size_t npeers;
    int peers_unavailable;
    int apply_count, fail_next_apply;
    /* publish */
    int pub_sync_rc, pub_status, pub_hold;
    uint32_t pub_targets, pub_delay_ms;
    fake_publish_seen seen;
    struct fake_pub_pending held[16];
    size_t nheld;
    struct gw_sinkset sinks;
};

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        abort();
    return p;
}

gw_gateway *fake_gateway_new(const char *state_path)
{
    gw_gateway *g = xcalloc(1, sizeof(*g));
    pthread_mutex_init(&g->lock, NULL);
    char err[512];
    if (gw_state_open(&g->state, state_path, err, sizeof(err)) != ITR_OK) {
        fprintf(stderr, "fake_gateway_new: %s\n", err);
        abort();
    }
    /* Like the daemon: persisted overrides replace the config's documents. */
    const cJSON *ss = gw_state_shards(g->state), *sr = gw_state_routes(g->state);
    g->shards = ss ? cJSON_Duplicate(ss, 1) : cJSON_Parse("{\"default\": {}}");
    g->routes = sr ? cJSON_Duplicate(sr, 1)
                   : cJSON_Parse("[{\"name\": \"all\", \"match\": {\"shard\": \"*\", \"topic\": "
                                 "\"*\"}, \"sinks\": [{\"sink\": \"archive\"}]}]");
    if (!g->shards || !g->routes)
        abort();
    g->healthy = g->ready = 1;
    g->peers = xcalloc(FAKE_MAX_PEERS, sizeof(*g->peers));
    g->pub_targets = 1;
    return g;
}

void fake_gateway_free(gw_gateway *g)
{
    if (!g)
        return;
    fake_publish_release(g);
    gw_state_free(g->state);
    cJSON_Delete(g->shards);
    cJSON_Delete(g->routes);
    free(g->peers);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

void fake_set_health(gw_gateway *g, int healthy, int ready, const char *why)
{
    pthread_mutex_lock(&g->lock);
    g->healthy = healthy;
    g->ready = ready;
    snprintf(g->why, sizeof(g->why), "%s", why ? why : "");
    pthread_mutex_unlock(&g->lock);
}

void fake_add_peer(gw_gateway *g, uint8_t seed, const char *shard)
{
    pthread_mutex_lock(&g->lock);
    if (g->npeers < FAKE_MAX_PEERS) {
        gw_peer_row *r = &g->peers[g->npeers++];
        memset(r, 0, sizeof(*r));
        memset(r->info.static_key, seed, ITR_KEY_LEN);
        r->info.id = g->npeers;
        r->info.addr.u.in.sin_family = AF_INET;
        r->info.addr.u.in.sin_port = htons((uint16_t)(40000 + seed));
        r->info.addr.u.in.sin_addr.s_addr = htonl(0x7f000001);
        r->info.suite = ITR_SUITE_AESGCM;
        r->info.opened_ns = itr_now_ns();
        r->info.last_recv_ns = itr_now_ns();
        r->info.rtt_ns = 1500000;
        r->info.msgs_in = seed;
        r->info.bytes_in = 100u * seed;
        snprintf(r->shard, sizeof(r->shard), "%s", shard);
    }
    pthread_mutex_unlock(&g->lock);
}

size_t fake_peer_count(gw_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    size_t n = g->npeers;
    pthread_mutex_unlock(&g->lock);
    return n;
}

void fake_set_peers_unavailable(gw_gateway *g, int on)
{
    pthread_mutex_lock(&g->lock);
    g->peers_unavailable = on;
    pthread_mutex_unlock(&g->lock);
}

void fake_set_publish(gw_gateway *g, int sync_rc, int status, uint32_t n_targets, uint32_t delay_ms,
                      int hold)
{
    pthread_mutex_lock(&g->lock);
    g->pub_sync_rc = sync_rc;
    g->pub_status = status;
    g->pub_targets = n_targets;
    g->pub_delay_ms = delay_ms;
    g->pub_hold = hold;
    pthread_mutex_unlock(&g->lock);
}

static void *publish_thread(void *arg)
{
    struct fake_pub_pending *p = arg;
    struct timespec ts = {(time_t)(p->delay_ms / 1000), (long)(p->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    p->done(p->arg, &p->res);
    free(p);
    return NULL;
}

static void run_done_async(const struct fake_pub_pending *src)
{
    struct fake_pub_pending *p = xcalloc(1, sizeof(*p));
    *p = *src;
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, publish_thread, p) != 0)
        abort();
    pthread_attr_destroy(&at);
}

void fake_publish_release(gw_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    size_t n = g->nheld;
    struct fake_pub_pending held[16];
    memcpy(held, g->held, sizeof(held));
    g->nheld = 0;
    g->pub_hold = 0;
    pthread_mutex_unlock(&g->lock);
    /* Synchronously, so nothing runs after the fake is freed. */
    for (size_t i = 0; i < n; i++)
        held[i].done(held[i].arg, &held[i].res);
}

void fake_last_publish(gw_gateway *g, fake_publish_seen *out)
{
    pthread_mutex_lock(&g->lock);
    *out = g->seen;
    pthread_mutex_unlock(&g->lock);
}

int fake_apply_count(gw_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    int n = g->apply_count;
    pthread_mutex_unlock(&g->lock);
    return n;
}

void fake_fail_next_apply(gw_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    g->fail_next_apply = 1;
    pthread_mutex_unlock(&g->lock);
}

void fake_set_live_shards(gw_gateway *g, const cJSON *shards)
{
    cJSON *copy = cJSON_Duplicate(shards, 1);
    if (!copy)
        abort();
    pthread_mutex_lock(&g->lock);
    cJSON_Delete(g->shards);
    g->shards = copy;
    pthread_mutex_unlock(&g->lock);
}

/* ---- gateway.h (documents) ---- */

/* A small stand-in for the config module's validation: shape, hex keys, known sinks. */
static int validate_shards(const cJSON *shards, char *err, size_t errlen, char *field,
                           size_t fieldlen)
{
    if (!cJSON_IsObject(shards)) {
        snprintf(field, fieldlen, "%s", "");
        snprintf(err, errlen, "request body: expected an object");
        return ITR_ERR_INVALID;
    }
    for (const cJSON *s = shards->child; s; s = s->next) {
        if (!cJSON_IsObject(s)) {
            snprintf(field, fieldlen, "%s", s->string);
            snprintf(err, errlen, "request body: %s: expected an object", s->string);
            return ITR_ERR_INVALID;
        }
        for (const cJSON *m = s->child; m; m = m->next) {
            if (strcmp(m->string, "peers") && strcmp(m->string, "labels") &&
                strcmp(m->string, "attributes")) {
                snprintf(field, fieldlen, "%s.%s", s->string, m->string);
                snprintf(err, errlen, "request body: %s.%s: unknown key", s->string, m->string);
                return ITR_ERR_INVALID;
            }
        }
        const cJSON *peers = cJSON_GetObjectItemCaseSensitive(s, "peers");
        if (peers && !cJSON_IsArray(peers)) {
            snprintf(field, fieldlen, "%s.peers", s->string);
            snprintf(err, errlen, "request body: %s.peers: expected an array", s->string);
            return ITR_ERR_INVALID;
        }
        int i = 0;
        for (const cJSON *p = peers ? peers->child : NULL; p; p = p->next, i++) {
            uint8_t key[ITR_KEY_LEN];
            if (!cJSON_IsString(p) || strlen(p->valuestring) != 64 ||
                itr_hex_decode(key, sizeof(key), p->valuestring, 64) != ITR_OK) {
                snprintf(field, fieldlen, "%s.peers[%d]", s->string, i);
                snprintf(err, errlen, "request body: %s.peers[%d]: expected 64 hex digits",
                         s->string, i);
                return ITR_ERR_INVALID;
            }
        }
    }
    return ITR_OK;
}

static int validate_routes(const cJSON *routes, char *err, size_t errlen, char *field,
                           size_t fieldlen)
{
    if (!cJSON_IsArray(routes)) {
        snprintf(field, fieldlen, "%s", "");
        snprintf(err, errlen, "request body: expected an array");
        return ITR_ERR_INVALID;
    }
    int i = 0;
    for (const cJSON *r = routes->child; r; r = r->next, i++) {
        const cJSON *sinks = cJSON_GetObjectItemCaseSensitive(r, "sinks");
        if (!cJSON_IsObject(r) || !cJSON_IsArray(sinks)) {
            snprintf(field, fieldlen, "[%d].sinks", i);
            snprintf(err, errlen, "request body: [%d].sinks: expected an array", i);
            return ITR_ERR_INVALID;
        }
        int j = 0;
        for (const cJSON *s = sinks->child; s; s = s->next, j++) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(s, "sink");
            if (!cJSON_IsString(name) ||
                (strcmp(name->valuestring, "archive") && strcmp(name->valuestring, "kafka"))) {
                snprintf(field, fieldlen, "[%d].sinks[%d].sink", i, j);
                snprintf(err, errlen,
                         "request body: [%d].sinks[%d].sink: unknown sink (defined: archive, "
                         "kafka)",
                         i, j);
                return ITR_ERR_INVALID;
            }
        }
    }
    return ITR_OK;
}

int gw_gateway_apply_docs(gw_gateway *g, const cJSON *shards, const cJSON *routes, char *err,
                          size_t errlen, char *field, size_t fieldlen)
{
    pthread_mutex_lock(&g->lock);
    int rc = ITR_OK;
    if (g->fail_next_apply) {
        g->fail_next_apply = 0;
        snprintf(err, errlen, "forced failure");
        snprintf(field, fieldlen, "%s", "");
        rc = ITR_ERR_INVALID;
        goto out;
    }
    if (shards && (rc = validate_shards(shards, err, errlen, field, fieldlen)) != ITR_OK)
        goto out;
    if (routes && (rc = validate_routes(routes, err, errlen, field, fieldlen)) != ITR_OK)
        goto out;
    cJSON *ns = shards ? cJSON_Duplicate(shards, 1) : NULL;
    cJSON *nr = routes ? cJSON_Duplicate(routes, 1) : NULL;
    if ((shards && !ns) || (routes && !nr)) {
        cJSON_Delete(ns);
        cJSON_Delete(nr);
        rc = ITR_ERR_NOMEM;
        goto out;
    }
    if (ns) {
        cJSON_Delete(g->shards);
        g->shards = ns;
    }
    if (nr) {
        cJSON_Delete(g->routes);
        g->routes = nr;
    }
    g->apply_count++;
out:
    pthread_mutex_unlock(&g->lock);
    return rc;
}

cJSON *gw_gateway_shards_doc(gw_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    cJSON *d = cJSON_Duplicate(g->shards, 1);
    pthread_mutex_unlock(&g->lock);
    return d;
}

cJSON *gw_gateway_routes_doc(gw_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    cJSON *d = cJSON_Duplicate(g->routes, 1);
    pthread_mutex_unlock(&g->lock);
    return d;
}

gw_state *gw_gateway_state(struct gw_gateway *g)
{
    return g->state;
}

/* ---- control.h ---- */

int gw_ctl_healthy(gw_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    int h = g->healthy;
    pthread_mutex_unlock(&g->lock);
    return h;
}

int gw_ctl_ready(gw_gateway *g, char *why, size_t whylen)
{
    pthread_mutex_lock(&g->lock);
    int r = g->ready;
    if (!r && why)
        snprintf(why, whylen, "%s", g->why);
    pthread_mutex_unlock(&g->lock);
    return r;
}

static int row_cmp(const void *a, const void *b)
{
    const gw_peer_row *x = a, *y = b;
    return memcmp(x->info.static_key, y->info.static_key, ITR_KEY_LEN);
}

int gw_ctl_peers(gw_gateway *g, size_t offset, gw_peer_row *rows, size_t cap, size_t *n,
                 size_t *total)
{
    pthread_mutex_lock(&g->lock);
    if (g->peers_unavailable) {
        pthread_mutex_unlock(&g->lock);
        return ITR_ERR_WOULDBLOCK;
    }
    qsort(g->peers, g->npeers, sizeof(*g->peers), row_cmp);
    *total = g->npeers;
    *n = 0;
    for (size_t i = offset; i < g->npeers && *n < cap; i++)
        rows[(*n)++] = g->peers[i];
    pthread_mutex_unlock(&g->lock);
    return ITR_OK;
}

int gw_ctl_peer_disconnect(gw_gateway *g, const char *key_hex)
{
    uint8_t key[ITR_KEY_LEN];
    if (!key_hex || strlen(key_hex) != 64 || itr_hex_decode(key, sizeof(key), key_hex, 64) != 0)
        return ITR_ERR_INVALID;
    pthread_mutex_lock(&g->lock);
    int rc = ITR_ERR_NOT_FOUND;
    for (size_t i = 0; i < g->npeers; i++) {
        if (!memcmp(g->peers[i].info.static_key, key, ITR_KEY_LEN)) {
            g->peers[i] = g->peers[--g->npeers];
            rc = ITR_OK;
            break;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

cJSON *gw_ctl_sinks_json(gw_gateway *g)
{
    (void)g;
    return cJSON_Parse("[{\"name\":\"archive\",\"type\":\"file\",\"state\":\"up\",\"required\":"
                       "true,\"queue_reliable\":0,\"queue_realtime\":0,\"in_flight\":0,"
                       "\"in_flight_bytes\":0,\"delivered\":12,\"discarded\":{},\"errors\":{},"
                       "\"last_error\":null,\"last_error_time\":null},"
                       "{\"name\":\"kafka\",\"type\":\"kafka\",\"state\":\"down\",\"required\":"
                       "false,\"queue_reliable\":3,\"queue_realtime\":1,\"in_flight\":2,"
                       "\"in_flight_bytes\":200,\"delivered\":0,\"discarded\":{\"queue_full\":1},"
                       "\"errors\":{\"connect\":4},\"last_error\":\"broker unreachable\","
                       "\"last_error_time\":\"2026-11-23T07:16:19.123Z\"}]");
}

unsigned gw_ctl_worker_count(gw_gateway *g)
{
    (void)g;
    return 2;
}

void gw_ctl_worker_stats(gw_gateway *g, unsigned worker, itr_stats *ep, itr_driver_stats *drv)
{
    (void)g;
    memset(ep, 0, sizeof(*ep));
    memset(drv, 0, sizeof(*drv));
    uint64_t w = worker + 1;
    ep->packets_received = 1000 * w;
    ep->bytes_received = 100000 * w;
    for (int r = 0; r < ITR_DROP_REASON_COUNT; r++)
        ep->dropped[r] = (uint64_t)r * w;
    for (int r = 0; r < ITR_CLOSE_REASON_COUNT; r++)
        ep->closes[r] = (uint64_t)r + w;
    ep->handshakes_completed = 10 * w;
    ep->strike_events = w;
    ep->handshakes_in_flight = w;
    ep->sessions_active = 5 * w;
    ep->reorder_bytes = 64 * w;
    drv->kernel_drops = 7 * w;
}

void gw_ctl_foreach_shard(gw_gateway *g,
                          void (*cb)(void *arg, const char *shard, const gw_shard_counters *c),
                          void *arg)
{
    (void)g;
    gw_shard_counters c;
    memset(&c, 0, sizeof(c));
    c.messages[ITR_INTENT_RELIABLE] = 40;
    c.messages[ITR_INTENT_REALTIME] = 2;
    c.peers = 3;
    cb(arg, "default", &c);
    c.deferred = 9;
    /* A shard id with characters that need escaping in a label value. */
    cb(arg, "odd\"shard\\with\nnewline", &c);
}

void gw_ctl_counters(gw_gateway *g, gw_gateway_counters *out)
{
    (void)g;
    memset(out, 0, sizeof(*out));
    out->start_wall_ns = 1795000000ull * 1000000000ull;
    out->reloads_ok = 2;
    out->reloads_failed = 1;
    out->message_pool_bytes = 1 << 26;
    out->message_pool_bytes_in_use = 4096;
    out->security_events[ITR_SEC_BAD_MAC1] = 5;
}

struct gw_sinkset *gw_ctl_sinks_lock(gw_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    return &g->sinks;
}

void gw_ctl_sinks_unlock(gw_gateway *g)
{
    pthread_mutex_unlock(&g->lock);
}

/* ---- publish.h ---- */

int gw_publish(struct gw_gateway *g, const gw_publish_req *req)
{
    pthread_mutex_lock(&g->lock);
    int rc = g->pub_sync_rc;
    if (rc != ITR_OK) {
        pthread_mutex_unlock(&g->lock);
        return rc;
    }
    fake_publish_seen *s = &g->seen;
    s->count++;
    s->kind = req->kind;
    snprintf(s->target, sizeof(s->target), "%s", req->target ? req->target : "");
    snprintf(s->topic, sizeof(s->topic), "%.*s", (int)req->topic_len, req->topic);
    s->body_len = req->body_len < sizeof(s->body) ? req->body_len : sizeof(s->body);
    memcpy(s->body, req->body, s->body_len);
    s->intent = req->intent;
    s->priority = req->priority;
    s->timeout_ms = req->timeout_ms;
    s->has_done = req->done != NULL;
    if (req->done) {
        struct fake_pub_pending p;
        memset(&p, 0, sizeof(p));
        p.done = req->done;
        p.arg = req->arg;
        p.delay_ms = g->pub_delay_ms;
        p.res.status = g->pub_status;
        p.res.targeted = g->pub_targets;
        p.res.sent = g->pub_status == ITR_OK ? g->pub_targets : 0;
        p.res.acked = g->pub_status == ITR_OK ? g->pub_targets : 0;
        p.res.failed = g->pub_status == ITR_OK ? 0 : g->pub_targets;
        if (g->pub_hold && g->nheld < 16)
            g->held[g->nheld++] = p;
        else
            run_done_async(&p);
    }
    pthread_mutex_unlock(&g->lock);
    return ITR_OK;
}

/* ---- sinks.h (status side only) ---- */

const char *const gw_sink_reason_names[GW_REASON_COUNT] = {
    "queue_full",  "draining", "shutdown", "message_too_large", "invalid_destination", "sink_down",
    "broker_down", "rejected", "other"};
const char *const gw_sink_stage_names[GW_STAGE_COUNT] = {
    "open",        "connect", "write", "fsync",    "rotate",   "delivery", "spool",
    "dead_letter", "timeout", "tls",   "http_4xx", "http_429", "http_5xx", "other"};
const double gw_sink_latency_bounds[GW_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static const char *const fake_sink_names[FAKE_SINKS] = {"archive", "kafka"};
static const char *const fake_sink_types[FAKE_SINKS] = {"file", "kafka"};

unsigned gw_sinkset_count(const gw_sinkset *set)
{
    (void)set;
    return FAKE_SINKS;
}

const char *gw_sinkset_name(const gw_sinkset *set, unsigned i)
{
    (void)set;
    return i < FAKE_SINKS ? fake_sink_names[i] : NULL;
}

const char *gw_sinkset_type(const gw_sinkset *set, unsigned i)
{
    (void)set;
    return i < FAKE_SINKS ? fake_sink_types[i] : NULL;
}

int gw_sinkset_required(const gw_sinkset *set, unsigned i)
{
    (void)set;
    return i == 0;
}

void gw_sinkset_status(const gw_sinkset *set, unsigned i, gw_sink_status *st)
{
    (void)set;
    memset(st, 0, sizeof(*st));
    st->state = i == 0 ? GW_SINK_UP : GW_SINK_DOWN;
    st->in_flight = i;
    if (i == 1)
        snprintf(st->last_error, sizeof(st->last_error), "broker unreachable");
}

void gw_sinkset_metrics(const gw_sinkset *set, unsigned i, gw_sink_metrics *m)
{
    (void)set;
    memset(m, 0, sizeof(*m));
    m->delivered_total = 12 + i;
    m->discarded_total[GW_REASON_QUEUE_FULL] = i;
    m->errors_total[GW_STAGE_CONNECT] = 4 * i;
    m->queue_reliable = 3 * i;
    m->in_flight = i;
    uint64_t c = 0;
    for (int b = 0; b < GW_LATENCY_BUCKETS; b++) {
        c += (uint64_t)b;
        m->latency_bucket[b] = c;
    }
    m->latency_count = c + 2;
    m->latency_sum_seconds = 12.5;
}

const char *gw_sink_state_name(gw_sink_state s)
{
    static const char *const names[] = {"starting", "up", "degraded", "down", "closed"};
    return (unsigned)s < 5 ? names[s] : "unknown";
}
