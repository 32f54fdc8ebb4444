/* sinks.c: the sink runtime (gateway/sinks.h): sink threads, worker->sink queues with
 * Reliable admission and Realtime drop-oldest, completions back to the workers, metrics,
 * drain and reload.
 *
 * Ownership at a glance:
 *   struct sink      shared by every set that carries it (refs); its thread owns the
 *                    connector instance, the carry arrays and the in-flight slot table.
 *   sink->lock       guards the two queue rings (workers push, the sink thread pops).
 *   reservations     atomics: workers add, the sink thread subtracts on completion.
 *   struct hub       the workers' completion lists (lock-free stacks), shared by a set and
 *                    every set reloaded from it, and by their sinks (refs).
 *   staging          per set, per worker, per sink: touched only by that worker.
 *   done lists       per sink, per worker: completions of one loop iteration, touched only
 *                    by the sink thread, handed to the hub in one push per worker.
 *
 * Completions are batched: a connector completes deliveries one by one (e.g. a Kafka delivery
 * report event carries thousands), and handing each back on its own cost an atomic exchange
 * on the worker's list, eight atomic counter updates (two of them on lines the workers write
 * per message) and possibly a wake-up. The sink thread collects them in per-worker lists and
 * plain counters and publishes them at the end of the loop iteration (a due-now timer), after
 * DONE_FLUSH of them, and before it checks whether it is idle.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "sinks.h"

#define STAGE_CAP       256  /* staged deliveries per worker per sink before an early commit */
#define CARRY_CAP       256  /* deliveries taken from a ring per submit call */
#define DONE_FLUSH      1024 /* completions collected before they are handed back early */
#define NOW_REUSE       32   /* completions timed with one clock read */
#define DRAIN_SLICE_NS  (50ull * 1000 * 1000)
#define LOG_INTERVAL_NS (10ull * 1000 * 1000 * 1000) /* sink error log lines: 1 per 10 s */

const char *const gw_sink_reason_names[GW_REASON_COUNT] = {
    "queue_full",  "draining", "shutdown", "message_too_large", "invalid_destination", "sink_down",
    "broker_down", "rejected", "other",
};

const char *const gw_sink_stage_names[GW_STAGE_COUNT] = {
    "open",        "connect", "write", "fsync",    "rotate",   "delivery", "spool",
    "dead_letter", "timeout", "tls",   "http_4xx", "http_429", "http_5xx", "other",
};

const double gw_sink_latency_bounds[GW_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
static const uint64_t latency_bounds_ns[GW_LATENCY_BUCKETS] = {
    500000,    1000000,   2500000,   5000000,    10000000,   25000000,   50000000,
    100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};

/* ---- the workers' completion lists ---- */

struct hub_worker {
    _Atomic(gw_delivery *) head; /* completed deliveries, newest first (Treiber stack) */
    pthread_mutex_t wake_lock;   /* keeps loop alive while a sink thread wakes it */
    itr_loop *loop;              /* NULL: detached */
    gw_sink_complete_fn cb;      /* worker thread only */
    void *arg;
    char pad[64]; /* producers of different workers do not share a cache line */
};

struct hub {
    _Atomic unsigned refs;
    unsigned workers;
    struct hub_worker w[];
};

static struct hub *hub_new(unsigned workers)
{
    struct hub *h = calloc(1, sizeof(*h) + workers * sizeof(h->w[0]));
    if (!h)
        return NULL;
    atomic_init(&h->refs, 1);
    h->workers = workers;
    for (unsigned i = 0; i < workers; i++) {
        atomic_init(&h->w[i].head, NULL);
        pthread_mutex_init(&h->w[i].wake_lock, NULL);
    }
    return h;
}

static void hub_ref(struct hub *h)
{
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
}

static void hub_unref(struct hub *h)
{
    if (!h || atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (unsigned i = 0; i < h->workers; i++)
        pthread_mutex_destroy(&h->w[i].wake_lock);
    free(h);
}

/* Any thread: hand a chain of completed deliveries back to worker `worker`. The chain is
 * linked through owner, newest (head) to oldest (tail), like the list itself. Wakes the worker
 * only when its list was empty: a non-empty list already has a wake-up on the way (the worker
 * empties it atomically). */
static void hub_push_chain(struct hub *h, unsigned worker, gw_delivery *head, gw_delivery *tail)
{
    struct hub_worker *w = &h->w[worker];
    gw_delivery *old = atomic_load_explicit(&w->head, memory_order_relaxed);
    do {
        tail->owner = old;
    } while (!atomic_compare_exchange_weak_explicit(&w->head, &old, head, memory_order_release,
                                                    memory_order_relaxed));
    if (!old) {
        pthread_mutex_lock(&w->wake_lock);
        if (w->loop)
            itr_loop_wake(w->loop);
        pthread_mutex_unlock(&w->wake_lock);
    }
}

static void hub_push(struct hub *h, gw_delivery *d, gw_result r)
{
    d->result = (uint8_t)r;
    d->ahead = NULL;
    hub_push_chain(h, d->worker, d, d);
}

/* ---- sinks ---- */

/* The worker walks a list in a chain of cache misses (the sink thread wrote it). Each entry
 * also points DONE_AHEAD entries further along, so the walk can load them early. */
#define DONE_AHEAD 8
#define POLL_AHEAD 16 /* the worker's distance, in entries, when it walks a list again */

/* The three lines of a message the completion callback reads first. */
GW_PREFETCH_FN gw_prefetch_msg(const gw_msg *m)
{
    __builtin_prefetch(m, 1);
    __builtin_prefetch((const char *)m + 64, 1);
    __builtin_prefetch((const char *)m + 128, 1);
}

struct done_list {
    gw_delivery *head, *tail;        /* newest first */
    gw_delivery *recent[DONE_AHEAD]; /* the last DONE_AHEAD added, by n % DONE_AHEAD */
    size_t n;
};

enum { Q_REL = 0, Q_RT = 1 };

struct ring {
    gw_delivery **v;
    size_t head, n, cap;
};

struct sink {
    _Atomic unsigned refs; /* sets holding this sink */
    char *name;
    char *type;
    cJSON *conf;
    const gw_connector *conn;
    int required;
    uint64_t max_bytes;
    uint32_t qcap;
    struct hub *hub;
    struct gw_gateway *gateway;
    int (*publish)(struct gw_gateway *g, const struct gw_publish_req *req);

    /* worker -> sink queues (lock) */
    pthread_mutex_t lock;
    struct ring q[2];
    _Atomic int wake_pending; /* a wake-up of the sink thread is on its way */

    /* admission: lock-free */
    _Atomic int accepting;
    _Atomic uint64_t res_msgs, res_bytes;

    /* sink thread */
    pthread_t thread;
    int thread_started;
    itr_loop *loop;
    gw_sink_env env;
    gw_sink *inst; /* NULL until open succeeds and after close; changed under inst_lock */
    pthread_mutex_t inst_lock; /* status() readers vs. open/close on the sink thread */
    gw_delivery *carry[2][CARRY_CAP];
    size_t carry_n[2];
    gw_delivery **slots; /* in the connector: d->owner points at d's entry while in flight */
    uint32_t *free_slots;
    size_t free_n, slot_cap;
    uint64_t rt_in_flight;
    int pumping, pump_again;

    /* completions not yet handed back (sink thread; see the top of this file) */
    struct done_list done[GW_MAX_WORKERS];
    uint16_t done_workers[GW_MAX_WORKERS]; /* workers with a non-empty done list */
    size_t done_nworkers, done_n;
    itr_timer done_due; /* armed while done_n > 0: fires at the end of this loop iteration */
    uint64_t d_delivered, d_in_flight, d_in_flight_bytes, d_res_msgs, d_res_bytes;
    uint64_t d_lat[GW_LATENCY_BUCKETS + 1], d_lat_count, d_lat_sum_ns;
    uint64_t now_ns; /* one clock read times NOW_REUSE completions */
    unsigned now_left;
    itr_timer open_retry; /* a failed non-required sink opens again */
    uint64_t backoff_ns;
    uint64_t rng;
    int open_tried;

    /* control (ctl_lock): main thread asks, sink thread answers */
    pthread_mutex_t ctl_lock;
    pthread_cond_t ctl_cond;
    int open_done, open_rc;
    char open_err[GW_ERR_LEN];
    int drain_req, drain_done, drain_rc;
    uint64_t drain_deadline;
    _Atomic int stop_req;

    /* metrics: relaxed atomics, any reader */
    _Atomic int state; /* runtime view while no instance runs */
    _Atomic uint64_t delivered, discarded[GW_REASON_COUNT], dead[GW_REASON_COUNT];
    _Atomic uint64_t errors[GW_STAGE_COUNT];
    _Atomic uint64_t lat[GW_LATENCY_BUCKETS + 1], lat_count, lat_sum_ns;
    _Atomic uint64_t in_flight, in_flight_bytes, q_depth[2], open_attempts;
    pthread_mutex_t err_lock;
    char last_error[256];
    uint64_t last_error_wall_ns;
    gw_lograte *lograte; /* sink error lines: one per stage per LOG_INTERVAL_NS */
};

struct gw_sinkset {
    unsigned n;
    unsigned workers;
    struct sink **sinks;
    struct hub *hub;
    gw_sinkset_options opt;
    /* staging[w * n + i]: worker w's deliveries for sink i, count in staged[w * n + i] */
    gw_delivery *(*staging)[STAGE_CAP];
    uint32_t *staged;
};

uint64_t gw_msg_cost(const gw_msg *m)
{
    return (uint64_t)m->topic_len + m->body_len;
}

static int reason_index(const char *reason)
{
    if (!reason)
        return GW_REASON_OTHER;
    for (int i = 0; i < GW_REASON_COUNT; i++)
        if (!strcmp(gw_sink_reason_names[i], reason))
            return i;
    return GW_REASON_OTHER;
}

static int stage_index(const char *stage)
{
    if (!stage)
        return GW_STAGE_OTHER;
    for (int i = 0; i < GW_STAGE_COUNT; i++)
        if (!strcmp(gw_sink_stage_names[i], stage))
            return i;
    return GW_STAGE_OTHER;
}

static void count(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static void uncount(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_sub_explicit(c, v, memory_order_relaxed);
}

static void ring_push(struct ring *r, gw_delivery *d)
{
    r->v[(r->head + r->n) % r->cap] = d;
    r->n++;
}

static gw_delivery *ring_pop(struct ring *r)
{
    gw_delivery *d = r->v[r->head];
    r->head = (r->head + 1) % r->cap;
    r->n--;
    return d;
}

/* Discarded before it reached the connector (on whichever thread noticed). */
static void discard_queued(struct sink *k, gw_delivery *d, int reason)
{
    count(&k->discarded[reason], 1);
    if (d->reliable) {
        uncount(&k->res_msgs, 1);
        uncount(&k->res_bytes, gw_msg_cost(d->msg));
    }
    hub_push(k->hub, d, GW_DISCARDED);
}

/* ---- errors and logs (sink thread) ---- */

static void set_last_error(struct sink *k, const char *msg)
{
    pthread_mutex_lock(&k->err_lock);
    snprintf(k->last_error, sizeof(k->last_error), "%s", msg);
    k->last_error_wall_ns = itr_wall_ns();
    pthread_mutex_unlock(&k->err_lock);
}

/* One line per (sink, stage) per interval; the next one says how many were held back. */
static void log_sink_line(struct sink *k, gw_log_level level, const char *event, const char *stage,
                          const char *msg)
{
    const char *key = stage ? stage : event;
    gw_log_field f[4] = {GW_F_STR("sink", k->name), GW_F_STR("type", k->type), GW_F_STR("msg", msg),
                         GW_F_STR("stage", stage)};
    size_t n = stage ? 4 : 3;
    if (k->lograte)
        gw_lograte_emit(k->lograte, key, strlen(key), itr_now_ns(), level, event, f, n);
    else
        gw_log_emit(level, event, f, n);
}

static void env_error(gw_sink_env *env, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void env_error(gw_sink_env *env, const char *stage, const char *fmt, ...)
{
    struct sink *k = env->runtime;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    count(&k->errors[stage_index(stage)], 1);
    set_last_error(k, msg);
    log_sink_line(k, GW_LOG_WARN, "sink_error", stage ? stage : "other", msg);
}

static void env_log(gw_sink_env *env, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void env_log(gw_sink_env *env, int level, const char *fmt, ...)
{
    struct sink *k = env->runtime;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_sink_line(k, (gw_log_level)level, "sink_log", NULL, msg);
}

/* ---- completions (sink thread) ---- */

static void observe_latency(struct sink *k, const gw_msg *m)
{
    if (!k->now_left) {
        k->now_ns = itr_now_ns();
        k->now_left = NOW_REUSE;
    }
    k->now_left--;
    uint64_t now = k->now_ns;
    uint64_t lat = now > m->recv_mono_ns ? now - m->recv_mono_ns : 0;
    size_t b = 0;
    while (b < GW_LATENCY_BUCKETS && lat > latency_bounds_ns[b])
        b++;
    k->d_lat[b]++;
    k->d_lat_count++;
    k->d_lat_sum_ns += lat;
}

static void publish(_Atomic uint64_t *c, uint64_t *pending)
{
    if (*pending) {
        count(c, *pending);
        *pending = 0;
    }
}

static void unpublish(_Atomic uint64_t *c, uint64_t *pending)
{
    if (*pending) {
        uncount(c, *pending);
        *pending = 0;
    }
}

/* Hand back every collected completion and publish the counters (sink thread). */
static void done_flush(struct sink *k)
{
    if (itr_timer_armed(&k->done_due))
        itr_loop_timer_cancel(k->loop, &k->done_due);
    /* Reservations first: a worker woken below may admit new messages at once. */
    unpublish(&k->res_msgs, &k->d_res_msgs);
    unpublish(&k->res_bytes, &k->d_res_bytes);
    unpublish(&k->in_flight, &k->d_in_flight);
    unpublish(&k->in_flight_bytes, &k->d_in_flight_bytes);
    publish(&k->delivered, &k->d_delivered);
    if (k->d_lat_count) {
        for (size_t b = 0; b <= GW_LATENCY_BUCKETS; b++)
            publish(&k->lat[b], &k->d_lat[b]);
        publish(&k->lat_sum_ns, &k->d_lat_sum_ns);
        publish(&k->lat_count, &k->d_lat_count);
    }
    for (size_t i = 0; i < k->done_nworkers; i++) {
        struct done_list *l = &k->done[k->done_workers[i]];
        hub_push_chain(k->hub, k->done_workers[i], l->head, l->tail);
        l->head = l->tail = NULL;
        l->n = 0;
    }
    k->done_nworkers = 0;
    k->done_n = 0;
    k->now_left = 0; /* the next batch reads the clock afresh */
}

static void on_done_due(void *arg, uint64_t now)
{
    (void)now;
    done_flush(arg);
}

static void done_add(struct sink *k, gw_delivery *d, gw_result r)
{
    struct done_list *l = &k->done[d->worker];
    d->result = (uint8_t)r;
    d->owner = l->head;
    /* The list runs newest to oldest: the entry DONE_AHEAD further is the one added
     * DONE_AHEAD before this one. */
    d->ahead = l->n >= DONE_AHEAD ? l->recent[l->n % DONE_AHEAD] : NULL;
    l->recent[l->n++ % DONE_AHEAD] = d;
    if (!l->head) {
        l->tail = d;
        k->done_workers[k->done_nworkers++] = d->worker;
    }
    l->head = d;
    if (!k->done_n++)
        itr_loop_timer_set(k->loop, &k->done_due, 0); /* due now: after this iteration */
    if (k->done_n >= DONE_FLUSH)
        done_flush(k);
}

/* Take d out of the slot table; returns 0 if it was not in flight (a connector bug). */
static int slot_release(struct sink *k, gw_delivery *d)
{
    /* d->owner points at its entry in the slot table (gw_prefetch_completion loads it). */
    uintptr_t at = (uintptr_t)d->owner, base = (uintptr_t)k->slots;
    if (at < base || (at - base) % sizeof(*k->slots))
        return 0;
    size_t slot = (at - base) / sizeof(*k->slots);
    if (slot >= k->slot_cap || k->slots[slot] != d)
        return 0;
    k->slots[slot] = NULL;
    k->free_slots[k->free_n++] = (uint32_t)slot;
    k->d_in_flight++;
    k->d_in_flight_bytes += gw_msg_cost(d->msg);
    if (!d->reliable)
        k->rt_in_flight--;
    return 1;
}

static void finish(struct sink *k, gw_delivery *d, gw_result r, const char *reason)
{
    switch (r) {
    case GW_DURABLE:
        k->d_delivered++;
        observe_latency(k, d->msg);
        break;
    case GW_DISCARDED:
        count(&k->discarded[reason_index(reason)], 1);
        break;
    case GW_DEAD_LETTER:
        count(&k->dead[reason_index(reason)], 1);
        break;
    }
    if (d->reliable) {
        k->d_res_msgs++;
        k->d_res_bytes += gw_msg_cost(d->msg);
    }
    done_add(k, d, r);
}

static void env_complete(gw_sink_env *env, gw_delivery *d, gw_result r, const char *reason)
{
    struct sink *k = env->runtime;
    if (!slot_release(k, d)) {
        /* Completing twice or completing something never submitted would hand the worker
         * a message it may already have freed: refuse and make it loud. */
        count(&k->errors[GW_STAGE_OTHER], 1);
        log_sink_line(k, GW_LOG_ERROR, "sink_error", "other",
                      "connector completed a delivery it does not hold (ignored)");
        return;
    }
    if (d->reliable && r == GW_DISCARDED) {
        /* The connector contract forbids it; the worker will not acknowledge the message. */
        count(&k->errors[GW_STAGE_OTHER], 1);
        log_sink_line(k, GW_LOG_ERROR, "sink_error", "other",
                      "connector discarded a Reliable delivery: message not acknowledged");
    }
    finish(k, d, r, reason);
}

/* ---- moving deliveries into the connector (sink thread) ---- */

static int queues_empty(struct sink *k)
{
    pthread_mutex_lock(&k->lock);
    int empty = !k->q[Q_REL].n && !k->q[Q_RT].n;
    pthread_mutex_unlock(&k->lock);
    return empty && !k->carry_n[Q_REL] && !k->carry_n[Q_RT];
}

/* Offer queue q to the connector until it refuses or the queue is empty. Returns 1 if any
 * delivery was taken. */
static int pump_queue(struct sink *k, int q)
{
    int progress = 0;
    for (;;) {
        if (!k->carry_n[q]) {
            size_t room = CARRY_CAP;
            if (q == Q_RT) {
                /* Realtime inside the connector is bounded like the ring. */
                size_t left = k->qcap > k->rt_in_flight ? k->qcap - k->rt_in_flight : 0;
                if (left < room)
                    room = left;
            }
            pthread_mutex_lock(&k->lock);
            struct ring *r = &k->q[q];
            while (k->carry_n[q] < room && r->n)
                k->carry[q][k->carry_n[q]++] = ring_pop(r);
            atomic_store_explicit(&k->q_depth[q], r->n, memory_order_relaxed);
            pthread_mutex_unlock(&k->lock);
        }
        size_t n = k->carry_n[q];
        if (n > k->free_n)
            n = k->free_n; /* only if a worker staged Reliable without reserving */
        if (!n)
            return progress;
        uint64_t bytes = 0;
        for (size_t i = 0; i < n; i++) {
            gw_delivery *d = k->carry[q][i];
            uint32_t slot = k->free_slots[--k->free_n];
            k->slots[slot] = d;
            d->owner = &k->slots[slot];
            bytes += gw_msg_cost(d->msg);
            if (q == Q_RT)
                k->rt_in_flight++;
        }
        count(&k->in_flight, n);
        count(&k->in_flight_bytes, bytes);
        /* Copy: the connector may complete some inside submit, and the carry array is
         * rewritten below. */
        gw_delivery *offer[CARRY_CAP];
        memcpy(offer, k->carry[q], n * sizeof(offer[0]));
        size_t taken = k->conn->submit(k->inst, offer, n);
        if (taken > n)
            taken = n;
        for (size_t i = taken; i < n; i++)
            slot_release(k, offer[i]);
        if (taken < n) {
            unpublish(&k->in_flight, &k->d_in_flight);
            unpublish(&k->in_flight_bytes, &k->d_in_flight_bytes);
        }
        size_t left = k->carry_n[q] - taken;
        memmove(k->carry[q], k->carry[q] + taken, left * sizeof(offer[0]));
        k->carry_n[q] = left;
        if (taken)
            progress = 1;
        if (taken < n)
            return progress; /* backpressure: offered again after env->ready() */
    }
}

static void pump(struct sink *k)
{
    if (!k->inst)
        return;
    if (k->pumping) {
        k->pump_again = 1; /* env->ready() from inside submit */
        return;
    }
    k->pumping = 1;
    int progress;
    do {
        k->pump_again = 0;
        progress = pump_queue(k, Q_REL);
        progress |= pump_queue(k, Q_RT);
    } while (progress || k->pump_again);
    k->pumping = 0;
}

static void env_ready(gw_sink_env *env)
{
    pump(env->runtime);
}

static void on_sink_wake(void *arg)
{
    struct sink *k = arg;
    atomic_store(&k->wake_pending, 0);
    pump(k);
}

/* ---- open with retry (sink thread) ---- */

static uint64_t jitter(struct sink *k, uint64_t ns)
{
    k->rng ^= k->rng << 13;
    k->rng ^= k->rng >> 7;
    k->rng ^= k->rng << 17;
    uint64_t span = ns / 5; /* +-20% */
    return ns - span + (span ? k->rng % (2 * span + 1) : 0);
}

static void try_open(struct sink *k)
{
    char err[GW_ERR_LEN] = "";
    gw_sink *inst = NULL;
    count(&k->open_attempts, 1);
    int rc = k->conn->open(&inst, k->conf, &k->env, err, sizeof(err));
    if (rc == 0 && inst) {
        pthread_mutex_lock(&k->inst_lock);
        k->inst = inst;
        pthread_mutex_unlock(&k->inst_lock);
        atomic_store(&k->state, GW_SINK_UP);
        if (k->backoff_ns)
            log_sink_line(k, GW_LOG_INFO, "sink_open", NULL, "opened after retrying");
        k->backoff_ns = 0;
    } else {
        if (!err[0])
            snprintf(err, sizeof(err), "open failed");
        count(&k->errors[GW_STAGE_OPEN], 1);
        set_last_error(k, err);
        atomic_store(&k->state, GW_SINK_DOWN);
        rc = rc ? rc : ITR_ERR_IO;
        if (k->open_tried || !k->required) {
            k->backoff_ns = k->backoff_ns ? k->backoff_ns * 2 : GW_SINK_RETRY_MIN_NS;
            if (k->backoff_ns > GW_SINK_RETRY_MAX_NS)
                k->backoff_ns = GW_SINK_RETRY_MAX_NS;
            itr_loop_timer_set(k->loop, &k->open_retry, itr_now_ns() + jitter(k, k->backoff_ns));
            if (k->open_tried) /* the first failure is reported by gw_sinkset_open */
                log_sink_line(k, GW_LOG_WARN, "sink_error", "open", err);
        }
    }
    if (!k->open_tried) {
        k->open_tried = 1;
        pthread_mutex_lock(&k->ctl_lock);
        k->open_done = 1;
        k->open_rc = rc < 0 ? rc : 0;
        snprintf(k->open_err, sizeof(k->open_err), "%s", err);
        pthread_cond_broadcast(&k->ctl_cond);
        pthread_mutex_unlock(&k->ctl_lock);
    }
    if (k->inst)
        pump(k);
}

static void on_open_retry(void *arg, uint64_t now)
{
    (void)now;
    try_open(arg);
}

/* ---- drain and shutdown (sink thread) ---- */

static int sink_idle(struct sink *k)
{
    done_flush(k);
    return queues_empty(k) && atomic_load(&k->in_flight) == 0;
}

static int do_drain(struct sink *k, uint64_t deadline)
{
    for (;;) {
        pump(k);
        if (k->inst) {
            uint64_t now = itr_now_ns();
            uint64_t slice = now + DRAIN_SLICE_NS < deadline ? now + DRAIN_SLICE_NS : deadline;
            int rc = k->conn->flush(k->inst, slice);
            if (rc == 0 && sink_idle(k))
                return 0;
        } else if (sink_idle(k)) {
            return 0;
        }
        uint64_t now = itr_now_ns();
        if (now >= deadline)
            return sink_idle(k) ? 0 : ITR_ERR_WOULDBLOCK;
        if (!k->inst) {
            /* Down: wait for the open retry (its timer runs in the loop). */
            uint64_t ms = (deadline - now + 999999) / 1000000;
            itr_loop_run_once(k->loop, (int)(ms > 50 ? 50 : ms));
        }
    }
}

/* Close the connector and give back everything still held as not stored. */
static void sink_shutdown(struct sink *k)
{
    itr_loop_timer_cancel(k->loop, &k->open_retry);
    if (k->inst) {
        gw_sink *inst = k->inst;
        pthread_mutex_lock(&k->inst_lock);
        k->inst = NULL;
        pthread_mutex_unlock(&k->inst_lock);
        k->conn->close(inst);
    }
    for (size_t i = 0; i < k->slot_cap; i++) {
        gw_delivery *d = k->slots[i];
        if (d && slot_release(k, d))
            finish(k, d, GW_DISCARDED, "shutdown");
    }
    done_flush(k);
    for (int q = 0; q < 2; q++) {
        for (size_t i = 0; i < k->carry_n[q]; i++)
            discard_queued(k, k->carry[q][i], GW_REASON_SHUTDOWN);
        k->carry_n[q] = 0;
        pthread_mutex_lock(&k->lock);
        while (k->q[q].n)
            discard_queued(k, ring_pop(&k->q[q]), GW_REASON_SHUTDOWN);
        atomic_store(&k->q_depth[q], 0);
        pthread_mutex_unlock(&k->lock);
    }
    atomic_store(&k->state, GW_SINK_CLOSED);
}

static void block_async_signals(void)
{
    /* Signals belong to the main thread (signalfd); synchronous faults stay deliverable. */
    sigset_t set;
    sigfillset(&set);
    sigdelset(&set, SIGSEGV);
    sigdelset(&set, SIGBUS);
    sigdelset(&set, SIGFPE);
    sigdelset(&set, SIGILL);
    sigdelset(&set, SIGABRT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *sink_main(void *arg)
{
    struct sink *k = arg;
    block_async_signals();
    char tname[16];
    snprintf(tname, sizeof(tname), "sink:%s", k->name);
    pthread_setname_np(pthread_self(), tname);
    try_open(k);
    if (!k->inst && k->required) {
        sink_shutdown(k);
        return NULL; /* gw_sinkset_open fails and joins */
    }
    while (!atomic_load(&k->stop_req)) {
        if (itr_loop_run_once(k->loop, -1) < 0) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL); /* epoll failing: do not spin */
        }
        pthread_mutex_lock(&k->ctl_lock);
        int drain = k->drain_req;
        uint64_t deadline = k->drain_deadline;
        k->drain_req = 0;
        pthread_mutex_unlock(&k->ctl_lock);
        if (drain) {
            int rc = do_drain(k, deadline);
            pthread_mutex_lock(&k->ctl_lock);
            k->drain_done = 1;
            k->drain_rc = rc;
            pthread_cond_broadcast(&k->ctl_cond);
            pthread_mutex_unlock(&k->ctl_lock);
        }
    }
    sink_shutdown(k);
    return NULL;
}

/* ---- sink construction (main thread) ---- */

static void sink_free(struct sink *k)
{
    if (!k)
        return;
    if (k->loop)
        itr_loop_free(k->loop);
    gw_lograte_free(k->lograte);
    for (int q = 0; q < 2; q++)
        free(k->q[q].v);
    free(k->slots);
    free(k->free_slots);
    cJSON_Delete(k->conf);
    free(k->name);
    free(k->type);
    hub_unref(k->hub);
    pthread_mutex_destroy(&k->lock);
    pthread_mutex_destroy(&k->inst_lock);
    pthread_mutex_destroy(&k->ctl_lock);
    pthread_cond_destroy(&k->ctl_cond);
    pthread_mutex_destroy(&k->err_lock);
    free(k);
}

static void sink_stop(struct sink *k)
{
    if (k->thread_started) {
        atomic_store(&k->stop_req, 1);
        itr_loop_wake(k->loop);
        pthread_join(k->thread, NULL);
        k->thread_started = 0;
    }
}

static void sink_unref(struct sink *k)
{
    if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
        return;
    sink_stop(k);
    sink_free(k);
}

static int check_spec(const gw_sink_spec *sp, char *err, size_t errlen)
{
    if (!sp->name || !sp->name[0] || !sp->type || !sp->conf) {
        snprintf(err, errlen, "sinks: a sink needs a name, a type and its JSON object");
        return ITR_ERR_INVALID;
    }
    if (!gw_connector_find(sp->type)) {
        snprintf(err, errlen, "sinks.%s.type: unknown sink type \"%s\" (known: %s)", sp->name,
                 sp->type, gw_connector_types());
        return ITR_ERR_INVALID;
    }
    if (!sp->max_inflight_bytes || !sp->queue_messages || sp->queue_messages > (1u << 30)) {
        snprintf(err, errlen,
                 "sinks.%s: max_inflight_bytes and queue_messages must be >= 1 (queue_messages "
                 "<= 1073741824)",
                 sp->name);
        return ITR_ERR_INVALID;
    }
    return 0;
}

/* Create the sink and start its thread; the first open attempt is awaited by sink_wait. */
static int sink_start(struct sink **out, const gw_sink_spec *sp, struct hub *hub,
                      const gw_sinkset_options *opt, char *err, size_t errlen)
{
    struct sink *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, errlen, "sinks.%s: out of memory", sp->name);
        return ITR_ERR_NOMEM;
    }
    pthread_mutex_init(&k->lock, NULL);
    pthread_mutex_init(&k->inst_lock, NULL);
    pthread_mutex_init(&k->ctl_lock, NULL);
    pthread_cond_init(&k->ctl_cond, NULL);
    pthread_mutex_init(&k->err_lock, NULL);
    atomic_init(&k->refs, 1);
    atomic_init(&k->accepting, 1);
    atomic_init(&k->state, GW_SINK_STARTING);
    k->hub = hub;
    hub_ref(hub);
    k->conn = gw_connector_find(sp->type);
    k->required = !!sp->required;
    k->max_bytes = sp->max_inflight_bytes;
    k->qcap = sp->queue_messages;
    k->gateway = opt->gateway;
    k->publish = opt->publish;
    k->name = strdup(sp->name);
    k->type = strdup(sp->type);
    k->conf = cJSON_Duplicate(sp->conf, 1);
    k->slot_cap = 2 * (size_t)k->qcap;
    k->slots = calloc(k->slot_cap, sizeof(*k->slots));
    k->free_slots = calloc(k->slot_cap, sizeof(*k->free_slots));
    for (int q = 0; q < 2; q++) {
        k->q[q].cap = k->qcap;
        k->q[q].v = calloc(k->qcap, sizeof(gw_delivery *));
    }
    if (!k->name || !k->type || !k->conf || !k->slots || !k->free_slots || !k->q[0].v ||
        !k->q[1].v) {
        snprintf(err, errlen, "sinks.%s: out of memory", sp->name);
        sink_free(k);
        return ITR_ERR_NOMEM;
    }
    for (size_t i = 0; i < k->slot_cap; i++)
        k->free_slots[i] = (uint32_t)(k->slot_cap - 1 - i);
    k->free_n = k->slot_cap;
    k->rng = itr_now_ns() ^ (uint64_t)(uintptr_t)k;
    if (!k->rng)
        k->rng = 1;
    itr_timer_init(&k->open_retry, on_open_retry, k);
    itr_timer_init(&k->done_due, on_done_due, k);
    int rc = gw_lograte_new(&k->lograte, 16, LOG_INTERVAL_NS, 0);
    if (rc) {
        snprintf(err, errlen, "sinks.%s: out of memory", sp->name);
        sink_free(k);
        return rc;
    }
    rc = itr_loop_new(&k->loop);
    if (rc) {
        snprintf(err, errlen, "sinks.%s: cannot create its event loop: %s", sp->name,
                 itr_strerror(rc));
        sink_free(k);
        return rc;
    }
    itr_loop_on_wake(k->loop, on_sink_wake, k);
    k->env.name = k->name;
    k->env.loop = k->loop;
    k->env.complete = env_complete;
    k->env.error = env_error;
    k->env.log = env_log;
    k->env.ready = env_ready;
    k->env.gateway = k->gateway;
    k->env.publish = k->publish;
    k->env.runtime = k;
    rc = pthread_create(&k->thread, NULL, sink_main, k);
    if (rc) {
        snprintf(err, errlen, "sinks.%s: cannot start its thread: %s", sp->name, strerror(rc));
        sink_free(k);
        return ITR_ERR_IO;
    }
    k->thread_started = 1;
    *out = k;
    return 0;
}

/* Wait for the first open attempt. A required sink's failure is the caller's error. */
static int sink_wait_open(struct sink *k, char *err, size_t errlen)
{
    pthread_mutex_lock(&k->ctl_lock);
    while (!k->open_done)
        pthread_cond_wait(&k->ctl_cond, &k->ctl_lock);
    int rc = k->open_rc;
    pthread_mutex_unlock(&k->ctl_lock);
    if (rc && k->required) {
        snprintf(err, errlen, "sinks.%s: %s", k->name, k->open_err);
        return ITR_ERR_IO;
    }
    if (rc)
        GW_LOG(GW_LOG_WARN, "sink_down", GW_F_STR("sink", k->name), GW_F_STR("type", k->type),
               GW_F_STR("msg", k->open_err), GW_F_STR("retry", "backoff"));
    return 0;
}

/* ---- sets ---- */

static void set_free(gw_sinkset *set)
{
    if (!set)
        return;
    if (set->sinks)
        for (unsigned i = 0; i < set->n; i++)
            sink_unref(set->sinks[i]);
    free(set->sinks);
    free(set->staging);
    free(set->staged);
    hub_unref(set->hub);
    free(set);
}

static gw_sinkset *set_alloc(size_t n, const gw_sinkset_options *opt, struct hub *hub)
{
    gw_sinkset *set = calloc(1, sizeof(*set));
    if (!set)
        return NULL;
    set->n = (unsigned)n;
    set->workers = opt->workers;
    set->opt = *opt;
    set->sinks = calloc(n ? n : 1, sizeof(*set->sinks));
    set->staging = calloc((n ? n : 1) * opt->workers, sizeof(*set->staging));
    set->staged = calloc((n ? n : 1) * opt->workers, sizeof(*set->staged));
    set->hub = hub;
    if (!set->sinks || !set->staging || !set->staged) {
        set->hub = NULL;
        set_free(set);
        return NULL;
    }
    return set;
}

/* Build a set from specs, reusing the sinks of old whose name, type and JSON are equal. */
static int build_set(gw_sinkset **out, const gw_sink_spec *specs, size_t n,
                     const gw_sinkset_options *opt, struct hub *hub, gw_sinkset *old, char *err,
                     size_t errlen)
{
    if (n > GW_MAX_SINKS) {
        snprintf(err, errlen, "sinks: %zu sinks configured, at most %d", n, GW_MAX_SINKS);
        return ITR_ERR_INVALID;
    }
    if (!opt || !opt->workers || opt->workers > GW_MAX_WORKERS) {
        snprintf(err, errlen, "sinks: workers must be 1..%d", GW_MAX_WORKERS);
        return ITR_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = check_spec(&specs[i], err, errlen);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(specs[i].name, specs[j].name)) {
                snprintf(err, errlen, "sinks.%s: defined twice", specs[i].name);
                return ITR_ERR_INVALID;
            }
        }
    }
    gw_sinkset *set = set_alloc(n, opt, hub);
    if (!set) {
        snprintf(err, errlen, "sinks: out of memory");
        return ITR_ERR_NOMEM;
    }
    hub_ref(hub);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const gw_sink_spec *sp = &specs[i];
        struct sink *reuse = NULL;
        for (unsigned j = 0; old && j < old->n; j++) {
            struct sink *o = old->sinks[j];
            if (!strcmp(o->name, sp->name) && !strcmp(o->type, sp->type) &&
                o->required == !!sp->required && o->max_bytes == sp->max_inflight_bytes &&
                o->qcap == sp->queue_messages && cJSON_Compare(o->conf, sp->conf, 1)) {
                reuse = o;
                break;
            }
        }
        if (reuse) {
            atomic_fetch_add(&reuse->refs, 1);
            set->sinks[i] = reuse;
        } else {
            rc = sink_start(&set->sinks[i], sp, hub, opt, err, errlen);
        }
    }
    /* Every new sink opens in parallel; now collect the first attempts. */
    for (size_t i = 0; i < n && !rc; i++) {
        struct sink *k = set->sinks[i];
        if (atomic_load(&k->refs) == 1)
            rc = sink_wait_open(k, err, errlen);
    }
    if (rc) {
        set_free(set); /* stops new sinks, drops the references taken on reused ones */
        return rc;
    }
    *out = set;
    return 0;
}

int gw_sinkset_open_specs(gw_sinkset **out, const gw_sink_spec *specs, size_t n,
                          const gw_sinkset_options *opt, char *err, size_t errlen)
{
    if (!opt || !opt->workers || opt->workers > GW_MAX_WORKERS) {
        snprintf(err, errlen, "sinks: workers must be 1..%d", GW_MAX_WORKERS);
        return ITR_ERR_INVALID;
    }
    struct hub *hub = hub_new(opt->workers);
    if (!hub) {
        snprintf(err, errlen, "sinks: out of memory");
        return ITR_ERR_NOMEM;
    }
    int rc = build_set(out, specs, n, opt, hub, NULL, err, errlen);
    hub_unref(hub);
    return rc;
}

int gw_sinkset_reload_specs(gw_sinkset *old, const gw_sink_spec *specs, size_t n,
                            gw_sinkset **new_set, char *err, size_t errlen)
{
    return build_set(new_set, specs, n, &old->opt, old->hub, old, err, errlen);
}

int gw_sinkset_open(gw_sinkset **out, const struct gw_config *cfg, const gw_sinkset_options *opt,
                    char *err, size_t errlen)
{
    size_t n = 0;
    const gw_sink_spec *sp = gw_config_sinks(cfg, &n);
    return gw_sinkset_open_specs(out, sp, n, opt, err, errlen);
}

int gw_sinkset_reload(gw_sinkset *old, const struct gw_config *new_cfg, gw_sinkset **new_set,
                      char *err, size_t errlen)
{
    size_t n = 0;
    const gw_sink_spec *sp = gw_config_sinks(new_cfg, &n);
    return gw_sinkset_reload_specs(old, sp, n, new_set, err, errlen);
}

/* Drain the sinks of set selected by `only_unshared` (1: those no other set holds). */
static int drain_some(gw_sinkset *set, uint64_t deadline, int only_unshared)
{
    int rc = 0;
    for (unsigned i = 0; i < set->n; i++) {
        struct sink *k = set->sinks[i];
        if (only_unshared && atomic_load(&k->refs) != 1)
            continue;
        atomic_store(&k->accepting, 0);
        pthread_mutex_lock(&k->ctl_lock);
        k->drain_done = 0;
        k->drain_req = 1;
        k->drain_deadline = deadline;
        pthread_mutex_unlock(&k->ctl_lock);
        itr_loop_wake(k->loop);
    }
    /* A connector stuck in a system call must not hold the process forever: wait at most
     * a little past the deadline. */
    uint64_t wall_limit =
        itr_wall_ns() + (deadline > itr_now_ns() ? deadline - itr_now_ns() : 0) + 2000000000ull;
    struct timespec until = {(time_t)(wall_limit / 1000000000u), (long)(wall_limit % 1000000000u)};
    for (unsigned i = 0; i < set->n; i++) {
        struct sink *k = set->sinks[i];
        if (only_unshared && atomic_load(&k->refs) != 1)
            continue;
        pthread_mutex_lock(&k->ctl_lock);
        while (!k->drain_done && k->thread_started) {
            if (pthread_cond_timedwait(&k->ctl_cond, &k->ctl_lock, &until) == ETIMEDOUT)
                break;
        }
        int r = k->drain_done ? k->drain_rc : ITR_ERR_WOULDBLOCK;
        pthread_mutex_unlock(&k->ctl_lock);
        if (r && !rc)
            rc = r;
    }
    return rc;
}

int gw_sinkset_drain(gw_sinkset *set, uint64_t deadline_ns)
{
    return drain_some(set, deadline_ns, 0);
}

int gw_sinkset_retire(gw_sinkset *old, uint64_t deadline_ns)
{
    if (!old)
        return 0;
    int rc = drain_some(old, deadline_ns, 1);
    gw_sinkset_close(old);
    return rc;
}

void gw_sinkset_close(gw_sinkset *set)
{
    set_free(set);
}

/* ---- worker side ---- */

int gw_sinkset_attach(gw_sinkset *set, unsigned worker, itr_loop *loop, gw_sink_complete_fn cb,
                      void *arg)
{
    if (worker >= set->workers || !cb)
        return ITR_ERR_INVALID;
    struct hub_worker *w = &set->hub->w[worker];
    pthread_mutex_lock(&w->wake_lock);
    w->loop = loop;
    w->cb = cb;
    w->arg = arg;
    pthread_mutex_unlock(&w->wake_lock);
    return 0;
}

void gw_sinkset_detach(gw_sinkset *set, unsigned worker)
{
    if (worker >= set->workers)
        return;
    struct hub_worker *w = &set->hub->w[worker];
    pthread_mutex_lock(&w->wake_lock);
    w->loop = NULL;
    pthread_mutex_unlock(&w->wake_lock);
}

size_t gw_sinkset_poll(gw_sinkset *set, unsigned worker)
{
    if (worker >= set->workers)
        return 0;
    struct hub_worker *w = &set->hub->w[worker];
    if (!atomic_load_explicit(&w->head, memory_order_relaxed))
        return 0;
    gw_delivery *d = atomic_exchange_explicit(&w->head, NULL, memory_order_acquire);
    /* The stack is newest first: reverse it so the worker sees completion order. On the
     * way each entry's ahead is repointed at the entry POLL_AHEAD places after it in that
     * order (visited POLL_AHEAD steps earlier here): with a thousand completions the
     * callbacks evict the list again before they reach its end, and chasing the links a few
     * entries ahead stalled on every one of them. */
    gw_delivery *fifo = NULL, *seen[POLL_AHEAD];
    size_t k = 0;
    while (d) {
        if (d->ahead)
            gw_prefetch_delivery(d->ahead);
        gw_delivery *next = d->owner;
        d->owner = fifo;
        d->ahead = k >= POLL_AHEAD ? seen[k % POLL_AHEAD] : NULL;
        seen[k++ % POLL_AHEAD] = d;
        fifo = d;
        d = next;
    }
    /* The first POLL_AHEAD entries were visited last, so are in cache: load their messages. */
    gw_delivery *first = fifo;
    for (int i = 0; i < POLL_AHEAD && first; i++, first = first->owner)
        gw_prefetch_msg(first->msg);
    /* Then entry i loads entry i + POLL_AHEAD, and the message of the one loaded half as
     * many entries ago (by now in cache). */
    gw_delivery *loaded[POLL_AHEAD] = {0};
    size_t n = 0;
    while (fifo) {
        gw_delivery *far = fifo->ahead, *next = fifo->owner; /* the callback may free fifo */
        if (far)
            gw_prefetch_delivery(far);
        loaded[n % POLL_AHEAD] = far;
        gw_delivery *mid = loaded[(n + POLL_AHEAD / 2) % POLL_AHEAD];
        if (mid)
            gw_prefetch_msg(mid->msg);
        fifo->owner = NULL;
        fifo->ahead = NULL;
        if (w->cb)
            w->cb(w->arg, fifo, (gw_result)fifo->result);
        fifo = next;
        n++;
    }
    return n;
}

int gw_sinkset_reserve(gw_sinkset *set, unsigned sink, const gw_msg *m)
{
    if (sink >= set->n)
        return ITR_ERR_INVALID;
    struct sink *k = set->sinks[sink];
    if (!atomic_load_explicit(&k->accepting, memory_order_relaxed))
        return ITR_ERR_CLOSED;
    uint64_t cost = gw_msg_cost(m);
    uint64_t msgs = atomic_fetch_add_explicit(&k->res_msgs, 1, memory_order_relaxed);
    if (msgs >= k->qcap) {
        uncount(&k->res_msgs, 1);
        return ITR_ERR_WOULDBLOCK;
    }
    uint64_t bytes = atomic_fetch_add_explicit(&k->res_bytes, cost, memory_order_relaxed);
    /* A message larger than the whole budget still passes when nothing else is held, so
     * it cannot be refused forever. */
    if (bytes + cost > k->max_bytes && bytes != 0) {
        uncount(&k->res_bytes, cost);
        uncount(&k->res_msgs, 1);
        return ITR_ERR_WOULDBLOCK;
    }
    return 0;
}

void gw_sinkset_unreserve(gw_sinkset *set, unsigned sink, const gw_msg *m)
{
    if (sink >= set->n)
        return;
    struct sink *k = set->sinks[sink];
    uncount(&k->res_msgs, 1);
    uncount(&k->res_bytes, gw_msg_cost(m));
}

static void commit_one(gw_sinkset *set, unsigned worker, unsigned sink)
{
    size_t slot = (size_t)worker * set->n + sink;
    uint32_t n = set->staged[slot];
    if (!n)
        return;
    set->staged[slot] = 0;
    struct sink *k = set->sinks[sink];
    gw_delivery **st = set->staging[slot];
    gw_delivery *dropped[STAGE_CAP], *overflow[STAGE_CAP];
    size_t ndropped = 0, noverflow = 0;
    int draining = !atomic_load_explicit(&k->accepting, memory_order_relaxed);
    pthread_mutex_lock(&k->lock);
    for (uint32_t i = 0; i < n; i++) {
        gw_delivery *d = st[i];
        if (d->reliable) {
            /* Bounded by the reservation taken before staging; a worker that staged
             * without one gets the delivery back as not stored instead of a corrupt ring. */
            assert(k->q[Q_REL].n < k->q[Q_REL].cap);
            if (k->q[Q_REL].n < k->q[Q_REL].cap)
                ring_push(&k->q[Q_REL], d);
            else
                overflow[noverflow++] = d;
        } else if (draining) {
            dropped[ndropped++] = d;
        } else {
            if (k->q[Q_RT].n == k->q[Q_RT].cap)
                dropped[ndropped++] = ring_pop(&k->q[Q_RT]); /* drop-oldest */
            ring_push(&k->q[Q_RT], d);
        }
    }
    atomic_store_explicit(&k->q_depth[Q_REL], k->q[Q_REL].n, memory_order_relaxed);
    atomic_store_explicit(&k->q_depth[Q_RT], k->q[Q_RT].n, memory_order_relaxed);
    pthread_mutex_unlock(&k->lock);
    for (size_t i = 0; i < ndropped; i++)
        discard_queued(k, dropped[i], draining ? GW_REASON_DRAINING : GW_REASON_QUEUE_FULL);
    for (size_t i = 0; i < noverflow; i++) {
        count(&k->errors[GW_STAGE_OTHER], 1);
        count(&k->discarded[GW_REASON_OTHER], 1);
        hub_push(k->hub, overflow[i], GW_DISCARDED);
    }
    if (!atomic_exchange(&k->wake_pending, 1))
        itr_loop_wake(k->loop);
}

void gw_sinkset_stage(gw_sinkset *set, unsigned worker, unsigned sink, gw_delivery *d)
{
    assert(worker < set->workers && sink < set->n);
    size_t slot = (size_t)worker * set->n + sink;
    d->sink_index = (uint8_t)sink;
    d->worker = (uint16_t)worker;
    d->owner = NULL;
    d->result = 0;
    set->staging[slot][set->staged[slot]++] = d;
    if (set->staged[slot] == STAGE_CAP)
        commit_one(set, worker, sink);
}

void gw_sinkset_commit(gw_sinkset *set, unsigned worker)
{
    if (worker >= set->workers)
        return;
    for (unsigned i = 0; i < set->n; i++)
        commit_one(set, worker, i);
}

/* ---- status ---- */

unsigned gw_sinkset_count(const gw_sinkset *set)
{
    return set ? set->n : 0;
}

const char *gw_sinkset_name(const gw_sinkset *set, unsigned i)
{
    return i < set->n ? set->sinks[i]->name : NULL;
}

const char *gw_sinkset_type(const gw_sinkset *set, unsigned i)
{
    return i < set->n ? set->sinks[i]->type : NULL;
}

int gw_sinkset_required(const gw_sinkset *set, unsigned i)
{
    return i < set->n ? set->sinks[i]->required : 0;
}

int gw_sinkset_index(const gw_sinkset *set, const char *name)
{
    for (unsigned i = 0; i < set->n; i++)
        if (!strcmp(set->sinks[i]->name, name))
            return (int)i;
    return -1;
}

void gw_sinkset_status(const gw_sinkset *set, unsigned i, gw_sink_status *st)
{
    memset(st, 0, sizeof(*st));
    if (i >= set->n) {
        st->state = GW_SINK_CLOSED;
        return;
    }
    struct sink *k = set->sinks[i];
    pthread_mutex_lock(&k->inst_lock);
    if (k->inst) {
        k->conn->status(k->inst, st);
    } else {
        st->state = (gw_sink_state)atomic_load(&k->state);
    }
    pthread_mutex_unlock(&k->inst_lock);
    st->in_flight = atomic_load_explicit(&k->in_flight, memory_order_relaxed);
    pthread_mutex_lock(&k->err_lock);
    if (k->last_error[0]) {
        snprintf(st->last_error, sizeof(st->last_error), "%s", k->last_error);
        st->last_error_wall_ns = k->last_error_wall_ns;
    }
    pthread_mutex_unlock(&k->err_lock);
}

void gw_sinkset_metrics(const gw_sinkset *set, unsigned i, gw_sink_metrics *m)
{
    memset(m, 0, sizeof(*m));
    if (i >= set->n)
        return;
    struct sink *k = set->sinks[i];
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
    m->delivered_total = LOAD(k->delivered);
    for (int r = 0; r < GW_REASON_COUNT; r++) {
        m->discarded_total[r] = LOAD(k->discarded[r]);
        m->dead_letter_total[r] = LOAD(k->dead[r]);
    }
    for (int s = 0; s < GW_STAGE_COUNT; s++)
        m->errors_total[s] = LOAD(k->errors[s]);
    m->queue_reliable = LOAD(k->q_depth[Q_REL]);
    m->queue_realtime = LOAD(k->q_depth[Q_RT]);
    m->in_flight = LOAD(k->in_flight);
    m->in_flight_bytes = LOAD(k->in_flight_bytes);
    m->reserved_messages = LOAD(k->res_msgs);
    m->reserved_bytes = LOAD(k->res_bytes);
    uint64_t cum = 0;
    for (int b = 0; b < GW_LATENCY_BUCKETS; b++) {
        cum += LOAD(k->lat[b]);
        m->latency_bucket[b] = cum;
    }
    cum += LOAD(k->lat[GW_LATENCY_BUCKETS]);
    /* Buckets and count are read at slightly different moments: keep +Inf >= every le. */
    m->latency_count = cum;
    m->latency_sum_seconds = (double)LOAD(k->lat_sum_ns) / 1e9;
    m->open_attempts = LOAD(k->open_attempts);
#undef LOAD
}

const char *gw_sink_state_name(gw_sink_state s)
{
    switch (s) {
    case GW_SINK_STARTING:
        return "starting";
    case GW_SINK_UP:
        return "up";
    case GW_SINK_DEGRADED:
        return "degraded";
    case GW_SINK_DOWN:
        return "down";
    case GW_SINK_CLOSED:
        return "closed";
    }
    return "unknown";
}

int gw_sinkset_ready(const gw_sinkset *set, char *why, size_t whylen)
{
    for (unsigned i = 0; i < set->n; i++) {
        if (!set->sinks[i]->required)
            continue;
        gw_sink_status st;
        gw_sinkset_status(set, i, &st);
        if (st.state == GW_SINK_UP || st.state == GW_SINK_DEGRADED)
            continue;
        if (why)
            snprintf(why, whylen, "sink %s: %s%s%s", set->sinks[i]->name,
                     gw_sink_state_name(st.state), st.last_error[0] ? ": " : "", st.last_error);
        return 0;
    }
    if (why && whylen)
        why[0] = 0;
    return 1;
}

cJSON *gw_sinkset_json(const gw_sinkset *set)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return NULL;
    for (unsigned i = 0; i < set->n; i++) {
        gw_sink_status st;
        gw_sink_metrics m;
        gw_sinkset_status(set, i, &st);
        gw_sinkset_metrics(set, i, &m);
        cJSON *o = cJSON_CreateObject();
        cJSON *disc = cJSON_CreateObject();
        cJSON *errs = cJSON_CreateObject();
        cJSON *dead = cJSON_CreateObject();
        if (!o || !disc || !errs || !dead) {
            cJSON_Delete(o);
            cJSON_Delete(disc);
            cJSON_Delete(errs);
            cJSON_Delete(dead);
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "name", set->sinks[i]->name);
        cJSON_AddStringToObject(o, "type", set->sinks[i]->type);
        cJSON_AddStringToObject(o, "state", gw_sink_state_name(st.state));
        cJSON_AddBoolToObject(o, "required", set->sinks[i]->required);
        cJSON_AddNumberToObject(o, "queue_reliable", (double)m.queue_reliable);
        cJSON_AddNumberToObject(o, "queue_realtime", (double)m.queue_realtime);
        cJSON_AddNumberToObject(o, "in_flight", (double)m.in_flight);
        cJSON_AddNumberToObject(o, "in_flight_bytes", (double)m.in_flight_bytes);
        cJSON_AddNumberToObject(o, "delivered", (double)m.delivered_total);
        for (int r = 0; r < GW_REASON_COUNT; r++)
            cJSON_AddNumberToObject(disc, gw_sink_reason_names[r], (double)m.discarded_total[r]);
        cJSON_AddItemToObject(o, "discarded", disc);
        for (int r = 0; r < GW_REASON_COUNT; r++)
            cJSON_AddNumberToObject(dead, gw_sink_reason_names[r], (double)m.dead_letter_total[r]);
        cJSON_AddItemToObject(o, "dead_letter", dead);
        for (int s = 0; s < GW_STAGE_COUNT; s++)
            cJSON_AddNumberToObject(errs, gw_sink_stage_names[s], (double)m.errors_total[s]);
        cJSON_AddItemToObject(o, "errors", errs);
        if (st.last_error[0]) {
            char ts[40];
            time_t sec = (time_t)(st.last_error_wall_ns / 1000000000u);
            struct tm tm;
            gmtime_r(&sec, &tm);
            strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
            cJSON_AddStringToObject(o, "last_error", st.last_error);
            cJSON_AddStringToObject(o, "last_error_time", ts);
        } else {
            cJSON_AddNullToObject(o, "last_error");
            cJSON_AddNullToObject(o, "last_error_time");
        }
    }
    return arr;
}
