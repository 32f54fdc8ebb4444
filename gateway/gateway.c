/* gateway.c: one running gateway: key, routing snapshots, workers, sinks, admin, and the
 * read side of control.h. Lifecycle functions run on the main thread; snapshot builds are
 * serialized by apply_mu and may come from the admin threads too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "gateway_int.h"

/* ---- snapshots ---- */

static void snapshot_free(gw_snapshot *s)
{
    if (!s)
        return;
    if (s->g) {
        pthread_mutex_lock(&s->g->snaps_mu);
        if (s->prev)
            s->prev->next = s->next;
        else
            s->g->snaps = s->next;
        if (s->next)
            s->next->prev = s->prev;
        pthread_mutex_unlock(&s->g->snaps_mu);
    }
    gw_router_free(s->router); /* borrows the shard table: first */
    gw_shards_free(s->shards);
    cJSON_Delete(s->shards_doc);
    cJSON_Delete(s->routes_doc);
    free(s);
}

void gw_snapshot_ref(gw_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void gw_snapshot_ref_n(gw_snapshot *s, uint64_t n)
{
    if (n)
        atomic_fetch_add_explicit(&s->refs, n, memory_order_relaxed);
}

void gw_snapshot_unref(gw_snapshot *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}

gw_snapshot *gw_gateway_current_snapshot(gw_gateway *g)
{
    /* Under apply_mu so the snapshot cannot be replaced (and freed) between load and ref. */
    pthread_mutex_lock(&g->apply_mu);
    gw_snapshot *s = atomic_load(&g->snap);
    gw_snapshot_ref(s);
    pthread_mutex_unlock(&g->apply_mu);
    return s;
}

/* Build (not publish) a snapshot of cfg with these documents and sink set. origin names the
 * documents in error messages. */
static int snapshot_build(const gw_config *cfg, const cJSON *shards_doc, const cJSON *routes_doc,
                          gw_sinkset *sinks, gw_snapshot **out, const char *origin, char *err,
                          size_t errlen, char *field, size_t fieldlen)
{
    gw_snapshot *s = calloc(1, sizeof(*s));
    int rc = ITR_ERR_NOMEM;

    if (field && fieldlen)
        field[0] = 0;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    atomic_store(&s->refs, 1);
    s->sinks = sinks;
    s->shards_doc = cJSON_Duplicate(shards_doc, 1);
    s->routes_doc = cJSON_Duplicate(routes_doc, 1);
    if (!s->shards_doc || !s->routes_doc) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    rc = gw_config_build_routing(cfg, s->shards_doc, origin, s->routes_doc, origin, &s->shards,
                                 &s->router, err, errlen, field, fieldlen);
    if (rc != ITR_OK)
        goto fail;
    s->admit_unknown = gw_config_unknown_peers(cfg) == GW_UNKNOWN_ADMIT;
    if (s->admit_unknown)
        s->default_shard = gw_shards_find(s->shards, gw_config_default_shard(cfg));
    *out = s;
    return ITR_OK;
fail:
    snapshot_free(s);
    return rc;
}

static void snapshots_free_all(gw_gateway *g)
{
    while (g->snaps)
        snapshot_free(g->snaps);
}

/* Publish s (takes the caller's reference); the old snapshot's gateway reference drops. */
static void snapshot_publish(gw_gateway *g, gw_snapshot *s)
{
    s->gen = ++g->next_gen;
    s->g = g;
    pthread_mutex_lock(&g->snaps_mu);
    s->next = g->snaps;
    if (g->snaps)
        g->snaps->prev = s;
    g->snaps = s;
    pthread_mutex_unlock(&g->snaps_mu);
    gw_snapshot *old = atomic_exchange(&g->snap, s);
    atomic_fetch_add(&g->snapshots, 1);
    for (unsigned i = 0; g->workers && i < g->nworkers; i++)
        if (g->workers[i].loop)
            itr_loop_wake(g->workers[i].loop);
    if (old)
        gw_snapshot_unref(old);
}

int gw_gateway_apply_docs(gw_gateway *g, const cJSON *shards, const cJSON *routes, char *err,
                          size_t errlen, char *field, size_t fieldlen)
{
    gw_snapshot *s = NULL;
    int rc;

    pthread_mutex_lock(&g->apply_mu);
    gw_snapshot *cur = atomic_load(&g->snap);
    rc =
        snapshot_build(g->cfg, shards ? shards : cur->shards_doc, routes ? routes : cur->routes_doc,
                       cur->sinks, &s, "request body", err, errlen, field, fieldlen);
    if (rc == ITR_OK)
        snapshot_publish(g, s);
    pthread_mutex_unlock(&g->apply_mu);
    return rc;
}

cJSON *gw_gateway_shards_doc(gw_gateway *g)
{
    gw_snapshot *s = gw_gateway_current_snapshot(g);
    cJSON *d = cJSON_Duplicate(s->shards_doc, 1);
    gw_snapshot_unref(s);
    return d;
}

cJSON *gw_gateway_routes_doc(gw_gateway *g)
{
    gw_snapshot *s = gw_gateway_current_snapshot(g);
    cJSON *d = cJSON_Duplicate(s->routes_doc, 1);
    gw_snapshot_unref(s);
    return d;
}

gw_state *gw_gateway_state(gw_gateway *g)
{
    return g->state;
}

/* The documents a snapshot of cfg starts from: the admin state's, if it has them. */
static void effective_docs(gw_gateway *g, const gw_config *cfg, const cJSON **shards,
                           const cJSON **routes)
{
    *shards = gw_state_shards(g->state) ? gw_state_shards(g->state) : gw_config_shards_doc(cfg);
    *routes = gw_state_routes(g->state) ? gw_state_routes(g->state) : gw_config_routes_doc(cfg);
}

/* ---- lifecycle ---- */

/* mkdir -p of path's parent directory (mode 0700: it holds the private key). */
static int make_parent_dirs(const char *path, char *err, size_t errlen)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof(buf)) {
        snprintf(err, errlen, "key_file: path too long");
        return ITR_ERR_INVALID;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "key_file: cannot create directory %s: %s", buf, strerror(errno));
            return ITR_ERR_IO;
        }
        *p = '/';
    }
    return ITR_OK;
}

static int open_sinks(gw_gateway *g, const gw_config *cfg, gw_sinkset **out, char *err,
                      size_t errlen)
{
    gw_sinkset_options o = {
        .workers = g->nworkers,
        .gateway = g,
        .publish = gw_publish,
    };
    return gw_sinkset_open(out, cfg, &o, err, errlen);
}

int gw_gateway_new(gw_gateway **out, gw_config *cfg, const char *config_path, char *err,
                   size_t errlen)
{
    gw_gateway *g = calloc(1, sizeof(*g));
    gw_sinkset *sinks = NULL;
    gw_snapshot *s = NULL;
    const cJSON *shards, *routes;
    char kerr[256], hex[2 * ITR_KEY_LEN + 1];
    int created = 0, rc = ITR_ERR_NOMEM;

    *out = NULL;
    if (!g) {
        gw_config_free(cfg);
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    g->cfg = cfg;
    g->config_path = strdup(config_path ? config_path : "");
    g->nworkers = gw_config_workers(cfg);
    g->start_wall_ns = itr_wall_ns();
    pthread_mutex_init(&g->apply_mu, NULL);
    pthread_mutex_init(&g->sinks_mu, NULL);
    pthread_mutex_init(&g->snaps_mu, NULL);
    /* Security events: one line per (event, peer) per interval, and at most 100 lines per
     * interval overall however many peers misbehave. */
    if (!g->config_path ||
        gw_lograte_new(&g->secrate, 4096, gw_config_log(cfg)->security_interval_ns, 100)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }

    const char *key_file = gw_config_key_file(cfg);
    rc = make_parent_dirs(key_file, err, errlen);
    if (rc != ITR_OK)
        goto fail;
    rc = itr_keyfile_load_or_create(key_file, g->priv, &created, kerr, sizeof(kerr));
    if (rc != ITR_OK) {
        snprintf(err, errlen, "key_file: %s", kerr);
        goto fail;
    }
    itr_key_public(g->priv, g->pub);
    itr_hex_encode(hex, g->pub, ITR_KEY_LEN);
    GW_LOG(GW_LOG_INFO, created ? "key_created" : "key_loaded", GW_F_STR("key_file", key_file),
           GW_F_STR("public_key", hex));

    const gw_admin_config *ac = gw_config_admin(cfg);
    rc = gw_state_open(&g->state, ac->enabled ? ac->state_file : NULL, err, errlen);
    if (rc != ITR_OK)
        goto fail;
    rc = open_sinks(g, cfg, &sinks, err, errlen);
    if (rc != ITR_OK)
        goto fail;
    atomic_store(&g->sinks, sinks);
    effective_docs(g, cfg, &shards, &routes);
    rc = snapshot_build(cfg, shards, routes, sinks, &s,
                        gw_state_shards(g->state) || gw_state_routes(g->state)
                            ? ac->state_file
                            : gw_config_origin(cfg),
                        err, errlen, NULL, 0);
    if (rc != ITR_OK)
        goto fail;
    snapshot_publish(g, s);

    g->workers = calloc(g->nworkers, sizeof(gw_worker));
    if (!g->workers) {
        rc = ITR_ERR_NOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < g->nworkers; i++) {
        rc = gw_worker_init(&g->workers[i], g, i, err, errlen);
        if (rc != ITR_OK)
            goto fail;
    }
    if (g->nworkers > 1) {
        for (size_t i = 0; i < g->workers[0].nfds; i++) {
            rc = itr_udp_attach_steering(g->workers[0].fds[i], g->nworkers);
            if (rc != ITR_OK) {
                snprintf(err, errlen, "listen[%zu]: SO_REUSEPORT steering: %s", i, strerror(errno));
                goto fail;
            }
        }
    }
    *out = g;
    return ITR_OK;
fail:
    gw_gateway_free(g);
    return rc;
}

int gw_gateway_start(gw_gateway *g, char *err, size_t errlen)
{
    for (unsigned i = 0; i < g->nworkers; i++) {
        int rc = gw_worker_start(&g->workers[i]);
        if (rc != ITR_OK) {
            snprintf(err, errlen, "worker %u: cannot start: %s", i, itr_strerror(rc));
            return rc;
        }
    }
    const gw_admin_config *ac = gw_config_admin(g->cfg);
    if (ac->enabled) {
        int rc = gw_admin_start(&g->admin, g, ac, err, errlen);
        if (rc != ITR_OK)
            return rc;
    }
    char addr[64];
    for (unsigned i = 0; i < g->workers[0].nfds; i++) {
        gw_gateway_listen_addr(g, i, addr, sizeof(addr));
        GW_LOG(GW_LOG_INFO, "listening", GW_F_STR("addr", addr), GW_F_U64("workers", g->nworkers));
    }
    return ITR_OK;
}

int gw_gateway_listen_addr(const gw_gateway *g, unsigned i, char *buf, size_t len)
{
    itr_addr a;
    if (!g->workers || i >= g->workers[0].nfds ||
        itr_udp_local_addr(g->workers[0].fds[i], &a) != ITR_OK)
        return ITR_ERR_INVALID;
    itr_addr_format(&a, buf, len);
    return ITR_OK;
}

void gw_gateway_public_key(const gw_gateway *g, uint8_t out[32])
{
    memcpy(out, g->pub, ITR_KEY_LEN);
}

/* Wait until every running worker has switched to snapshot gen (bounded). */
static void wait_workers_switched(gw_gateway *g, uint64_t gen)
{
    for (int tries = 0; tries < 2000; tries++) {
        unsigned done = 0;
        for (unsigned i = 0; i < g->nworkers; i++) {
            gw_worker *w = &g->workers[i];
            if (!atomic_load(&w->running) || atomic_load(&w->snap_gen) >= gen)
                done++;
            else
                itr_loop_wake(w->loop);
        }
        if (done == g->nworkers)
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Keys whose change needs a restart (sockets, identity, transport, admin server). */
static const char *restart_needed(const gw_config *a, const gw_config *b)
{
    static const char *const keys[] = {"listen",    "key_file", "workers",
                                       "transport", "limits",   "admin"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(gw_config_json(a), keys[i]);
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(gw_config_json(b), keys[i]);
        if ((x == NULL) != (y == NULL) || (x && !cJSON_Compare(x, y, 1)))
            return keys[i];
    }
    return NULL;
}

int gw_gateway_reload(gw_gateway *g, char *err, size_t errlen)
{
    gw_config *cfg = NULL;
    gw_sinkset *old = atomic_load(&g->sinks), *sinks = NULL;
    gw_snapshot *s = NULL;
    const cJSON *shards, *routes;
    int rc;

    if (!*g->config_path) {
        snprintf(err, errlen,
                 "running the embedded default configuration: there is no file "
                 "to reload (start with -c FILE to reload one)");
        rc = ITR_ERR_INVALID;
        goto refused;
    }
    rc = gw_config_load(g->config_path, &cfg, err, errlen);
    if (rc != ITR_OK)
        goto refused;
    const char *restart = restart_needed(g->cfg, cfg);
    if (restart)
        GW_LOG(GW_LOG_WARN, "reload_partial", GW_F_STR("changed", restart),
               GW_F_STR("note", "takes effect after a restart; shards, routes, sinks and "
                                "logging are reloaded now"));
    rc = gw_sinkset_reload(old, cfg, &sinks, err, errlen);
    if (rc != ITR_OK)
        goto refused;
    effective_docs(g, cfg, &shards, &routes);
    pthread_mutex_lock(&g->apply_mu);
    rc = snapshot_build(cfg, shards, routes, sinks, &s, g->config_path, err, errlen, NULL, 0);
    if (rc != ITR_OK) {
        pthread_mutex_unlock(&g->apply_mu);
        gw_sinkset_close(sinks); /* stops only the sinks it opened */
        goto refused;
    }
    /* Commit: from here the new config is the gateway's. The new set shares the old one's
     * completion lists, so the workers' attachments carry over. */
    gw_config *oldcfg = g->cfg;
    pthread_mutex_lock(&g->sinks_mu);
    atomic_store(&g->sinks, sinks);
    pthread_mutex_unlock(&g->sinks_mu);
    g->cfg = cfg;
    snapshot_publish(g, s);
    uint64_t gen = s->gen;
    pthread_mutex_unlock(&g->apply_mu);
    const gw_log_config *lc = gw_config_log(cfg);
    gw_log_options lo;
    gw_log_get(&lo);
    lo.format = lc->format;
    lo.level = lc->level;
    gw_log_configure(&lo);
    gw_lograte_set_interval(g->secrate, lc->security_interval_ns);
    /* Once no worker stages into the old set, drain and close its sinks that were dropped. */
    wait_workers_switched(g, gen);
    gw_sinkset_retire(old, itr_now_ns() + gw_config_drain_timeout_ns(cfg));
    /* The old config may still be referenced by the admin server's copy: it copied it. */
    gw_config_free(oldcfg);
    atomic_fetch_add(&g->reloads_ok, 1);
    GW_LOG(GW_LOG_INFO, "reloaded", GW_F_STR("config", g->config_path),
           GW_F_U64("generation", gen));
    return ITR_OK;
refused:
    gw_config_free(cfg);
    atomic_fetch_add(&g->reloads_failed, 1);
    return rc;
}

int gw_gateway_drain(gw_gateway *g, uint64_t deadline_ns)
{
    int rc;
    atomic_store(&g->draining, 1);
    /* 1. Stop reading: nothing new is accepted, so nothing new needs acknowledging. */
    for (unsigned i = 0; i < g->nworkers; i++) {
        gw_cmd *c = calloc(1, sizeof(*c));
        if (c) {
            c->kind = GW_CMD_PAUSE;
            gw_worker_post(&g->workers[i], c);
        }
    }
    /* 2. Flush every sink; completions flow back to the running workers, which acknowledge
     *    to the peers what became durable. */
    rc = gw_sinkset_drain(atomic_load(&g->sinks), deadline_ns);
    /* 3. Let the workers process the last completions and send their ACKs. */
    for (;;) {
        uint64_t busy = 0;
        for (unsigned i = 0; i < g->nworkers; i++)
            busy += atomic_load(&g->workers[i].pool_in_use);
        if (!busy || itr_now_ns() >= deadline_ns)
            break;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    /* 4. Tell the peers we are going (CLOSE), so they reconnect elsewhere at once. */
    for (unsigned i = 0; i < g->nworkers; i++) {
        gw_cmd *c = calloc(1, sizeof(*c));
        if (c) {
            c->kind = GW_CMD_CLOSE_ALL;
            gw_worker_post(&g->workers[i], c);
        }
    }
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    return rc;
}

void gw_gateway_free(gw_gateway *g)
{
    if (!g)
        return;
    if (g->admin)
        gw_admin_stop(g->admin);
    for (unsigned i = 0; g->workers && i < g->nworkers; i++)
        gw_worker_join(&g->workers[i]);
    gw_sinkset *sinks = atomic_load(&g->sinks);
    if (sinks) {
        /* The workers are stopped: release, on their behalf, the messages whose deliveries
         * completed after they stopped, then detach them and stop the sinks. Deliveries a
         * sink still held were never durable: their messages were never acknowledged. */
        for (unsigned i = 0; g->workers && i < g->nworkers; i++) {
            if (!g->workers[i].loop)
                continue;
            gw_sinkset_poll(sinks, i);
            gw_sinkset_detach(sinks, i);
            g->workers[i].sinks = NULL;
        }
        gw_sinkset_close(sinks);
    }
    for (unsigned i = 0; g->workers && i < g->nworkers; i++)
        gw_worker_destroy(&g->workers[i]);
    free(g->workers);
    gw_snapshot *s = atomic_load(&g->snap);
    if (s)
        gw_snapshot_unref(s);
    /* Snapshots still referenced by messages that never completed (a sink closed while
     * holding them) are freed with the gateway. */
    snapshots_free_all(g);
    gw_state_free(g->state);
    pthread_mutex_destroy(&g->sinks_mu);
    gw_lograte_free(g->secrate);
    gw_config_free(g->cfg);
    free(g->config_path);
    itr_wipe(g->priv, sizeof(g->priv));
    pthread_mutex_destroy(&g->apply_mu);
    pthread_mutex_destroy(&g->snaps_mu);
    free(g);
}

/* ---- control.h: health, peers, sinks, counters ---- */

int gw_ctl_healthy(gw_gateway *g)
{
    for (unsigned i = 0; i < g->nworkers; i++)
        if (!atomic_load(&g->workers[i].running))
            return 0;
    return 1;
}

int gw_ctl_ready(gw_gateway *g, char *why, size_t whylen)
{
    if (!gw_ctl_healthy(g)) {
        snprintf(why, whylen, "workers not running");
        return 0;
    }
    if (atomic_load(&g->draining)) {
        snprintf(why, whylen, "draining");
        return 0;
    }
    gw_sinkset *s = gw_ctl_sinks_lock(g);
    int ok = gw_sinkset_ready(s, why, whylen);
    gw_ctl_sinks_unlock(g);
    return ok;
}

static int row_cmp(const void *a, const void *b)
{
    return memcmp(((const gw_peer_row *)a)->info.static_key,
                  ((const gw_peer_row *)b)->info.static_key, ITR_KEY_LEN);
}

/* Ask every worker; reply freed by the caller after the wait (even on timeout the workers
 * still hold it, so it is only freed once they all answered). */
static gw_reply *ask_workers(gw_gateway *g, gw_cmd_kind kind, const uint8_t *key, int *timed_out)
{
    gw_reply *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->status = kind == GW_CMD_DISCONNECT ? ITR_ERR_NOT_FOUND : ITR_OK;
    r->remaining = g->nworkers;
    gw_cmd *cmds = calloc(g->nworkers, sizeof(gw_cmd));
    if (!cmds) {
        free(r);
        return NULL;
    }
    for (unsigned i = 0; i < g->nworkers; i++) {
        cmds[i].kind = kind;
        cmds[i].reply = r;
        if (key)
            memcpy(cmds[i].key, key, ITR_KEY_LEN);
        gw_worker_post(&g->workers[i], &cmds[i]);
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    pthread_mutex_lock(&r->mu);
    while (r->remaining > 0) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT) {
            *timed_out = 1;
            /* A stuck worker still owns cmds and r: wait for it without a deadline. It can
             * only be stuck inside a bounded call, so this ends. */
            while (r->remaining > 0)
                pthread_cond_wait(&r->cv, &r->mu);
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    free(cmds);
    return r;
}

static void reply_free(gw_reply *r)
{
    for (size_t i = 0; i < 64; i++)
        free(r->rows[i]);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

int gw_ctl_peers(gw_gateway *g, size_t offset, gw_peer_row *rows, size_t cap, size_t *n,
                 size_t *total)
{
    int timed_out = 0, rc;
    gw_reply *r = ask_workers(g, GW_CMD_PEERS, NULL, &timed_out);
    size_t all = 0;

    *n = 0;
    *total = 0;
    if (!r)
        return ITR_ERR_NOMEM;
    rc = r->status;
    if (rc != ITR_OK)
        goto out;
    for (unsigned i = 0; i < g->nworkers; i++)
        all += r->nrows[i];
    gw_peer_row *merged = malloc((all ? all : 1) * sizeof(*merged));
    if (!merged) {
        rc = ITR_ERR_NOMEM;
        goto out;
    }
    size_t k = 0;
    for (unsigned i = 0; i < g->nworkers; i++) {
        memcpy(merged + k, r->rows[i], r->nrows[i] * sizeof(*merged));
        k += r->nrows[i];
    }
    qsort(merged, all, sizeof(*merged), row_cmp);
    for (size_t i = offset; i < all && *n < cap; i++)
        rows[(*n)++] = merged[i];
    *total = all;
    free(merged);
    if (timed_out)
        GW_LOG(GW_LOG_WARN, "admin_slow_worker", GW_F_STR("request", "peers"));
out:
    reply_free(r);
    return rc;
}

int gw_ctl_peer_disconnect(gw_gateway *g, const char *key_hex)
{
    uint8_t key[ITR_KEY_LEN];
    int timed_out = 0;
    if (!key_hex || itr_hex_decode(key, sizeof(key), key_hex, strlen(key_hex)) != ITR_OK)
        return ITR_ERR_INVALID;
    gw_reply *r = ask_workers(g, GW_CMD_DISCONNECT, key, &timed_out);
    if (!r)
        return ITR_ERR_NOMEM;
    int rc = r->status;
    reply_free(r);
    return rc;
}

cJSON *gw_ctl_sinks_json(gw_gateway *g)
{
    gw_sinkset *s = gw_ctl_sinks_lock(g);
    cJSON *j = gw_sinkset_json(s);
    gw_ctl_sinks_unlock(g);
    return j;
}

unsigned gw_ctl_worker_count(gw_gateway *g)
{
    return g->nworkers;
}

void gw_ctl_worker_stats(gw_gateway *g, unsigned worker, itr_stats *ep, itr_driver_stats *drv)
{
    gw_worker *w = &g->workers[worker];
    if (ep)
        itr_endpoint_stats(w->ep, ep);
    if (drv)
        itr_driver_stats_get(w->drv, drv);
}

void gw_ctl_foreach_shard(gw_gateway *g,
                          void (*cb)(void *arg, const char *shard, const gw_shard_counters *c),
                          void *arg)
{
    /* Sum by name over workers; names are few (bounded by the shard table). */
    for (unsigned i = 0; i < g->nworkers; i++) {
        gw_worker *w = &g->workers[i];
        uint32_t n = atomic_load_explicit(&w->nctrs, memory_order_acquire);
        for (uint32_t k = 0; k < n; k++) {
            const char *name = w->ctrs[k].name;
            int seen = 0;
            /* Skip a name an earlier worker already reported. */
            for (unsigned j = 0; j < i && !seen; j++) {
                gw_worker *v = &g->workers[j];
                uint32_t m = atomic_load_explicit(&v->nctrs, memory_order_acquire);
                for (uint32_t q = 0; q < m; q++)
                    if (!strcmp(v->ctrs[q].name, name)) {
                        seen = 1;
                        break;
                    }
            }
            if (seen)
                continue;
            gw_shard_counters sum;
            memset(&sum, 0, sizeof(sum));
            for (unsigned j = i; j < g->nworkers; j++) {
                gw_worker *v = &g->workers[j];
                uint32_t m = atomic_load_explicit(&v->nctrs, memory_order_acquire);
                for (uint32_t q = 0; q < m; q++) {
                    gw_shard_ctr *c = &v->ctrs[q];
                    if (strcmp(c->name, name))
                        continue;
                    for (int t = 0; t < 2; t++) {
                        sum.messages[t] += ctr_get(&c->messages[t]);
                        sum.bytes[t] += ctr_get(&c->bytes[t]);
                    }
                    sum.unrouted += ctr_get(&c->unrouted);
                    sum.deferred += ctr_get(&c->deferred);
                    sum.dropped += ctr_get(&c->dropped);
                    sum.peers += ctr_get(&c->peers);
                }
            }
            cb(arg, name, &sum);
        }
    }
}

void gw_ctl_counters(gw_gateway *g, gw_gateway_counters *out)
{
    memset(out, 0, sizeof(*out));
    out->start_wall_ns = g->start_wall_ns;
    out->reloads_ok = atomic_load(&g->reloads_ok);
    out->reloads_failed = atomic_load(&g->reloads_failed);
    out->snapshots_published = atomic_load(&g->snapshots);
    for (unsigned i = 0; i < g->nworkers; i++) {
        out->message_pool_bytes_in_use += atomic_load(&g->workers[i].pool_in_use);
        out->message_pool_bytes += g->workers[i].pool.capacity;
    }
    out->publishes = atomic_load(&g->publishes);
    out->publish_failures = atomic_load(&g->publish_failures);
    for (int i = 0; i < ITR_SEC_EVENT_COUNT; i++)
        out->security_events[i] = atomic_load(&g->sec_events[i]);
}

struct gw_sinkset *gw_ctl_sinks_lock(gw_gateway *g)
{
    pthread_mutex_lock(&g->sinks_mu);
    return atomic_load(&g->sinks);
}

void gw_ctl_sinks_unlock(gw_gateway *g)
{
    pthread_mutex_unlock(&g->sinks_mu);
}
