/* null_sink.c: the "null" connector: completes every delivery GW_DURABLE without any IO
 * (benchmarks measure ingest without sink cost), or after "delay_ms" to play a slow sink in
 * tests (the deliveries wait in a bounded FIFO; a full FIFO refuses more: backpressure).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connector.h"

#define NULL_HOLD_CAP     65536u /* deliveries waiting for their delay (power of two) */
#define NULL_MAX_DELAY_MS 3600000

struct null_held {
    gw_delivery *d;
    uint64_t due_ns;
};

struct gw_sink {
    gw_sink_env *env;
    uint64_t delay_ns;
    itr_timer due;              /* fires when the oldest held delivery's delay has passed */
    struct null_held *held;     /* FIFO ring, NULL_HOLD_CAP entries (delay only) */
    size_t head, count;         /* sink thread only */
    _Atomic uint64_t in_flight; /* read by status() from any thread */
    int refused;                /* submit refused some: call env->ready() once room frees up */
};

static int null_validate(const cJSON *conf, const char *where, char *err, size_t errlen)
{
    for (const cJSON *it = conf ? conf->child : NULL; it; it = it->next) {
        const char *k = it->string;
        if (!strcmp(k, "type") || !strcmp(k, "required") || !strcmp(k, "max_inflight_bytes") ||
            !strcmp(k, "queue_messages"))
            continue;
        if (!strcmp(k, "delay_ms")) {
            if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int64_t)it->valuedouble ||
                it->valuedouble < 0 || it->valuedouble > NULL_MAX_DELAY_MS) {
                char *got = cJSON_PrintUnformatted(it);
                snprintf(err, errlen, "%s.delay_ms: expected an integer 0..%d, got %s", where,
                         NULL_MAX_DELAY_MS, got ? got : "?");
                cJSON_free(got);
                return -1;
            }
            continue;
        }
        snprintf(err, errlen, "%s.%s: unknown key (expected one of: delay_ms)", where, k);
        return -1;
    }
    return 0;
}

static void null_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    while (s->count && s->held[s->head].due_ns <= now) {
        gw_delivery *d = s->held[s->head].d;
        s->head = (s->head + 1) & (NULL_HOLD_CAP - 1);
        s->count--;
        atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
        s->env->complete(s->env, d, GW_DURABLE, NULL);
    }
    if (s->count)
        itr_loop_timer_set(s->env->loop, &s->due, s->held[s->head].due_ns);
    if (s->refused) {
        s->refused = 0;
        s->env->ready(s->env);
    }
}

static int null_open(gw_sink **out, const cJSON *conf, gw_sink_env *env, char *err, size_t errlen)
{
    gw_sink *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->env = env;
    const cJSON *delay = cJSON_GetObjectItemCaseSensitive(conf, "delay_ms");
    if (cJSON_IsNumber(delay) && delay->valuedouble > 0) {
        s->delay_ns = (uint64_t)delay->valuedouble * 1000000u;
        s->held = calloc(NULL_HOLD_CAP, sizeof(*s->held));
        if (!s->held) {
            free(s);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    itr_timer_init(&s->due, null_due, s);
    *out = s;
    return 0;
}

static size_t null_submit(gw_sink *s, gw_delivery **d, size_t n)
{
    if (!s->delay_ns) {
        for (size_t i = 0; i < n; i++)
            s->env->complete(s->env, d[i], GW_DURABLE, NULL);
        return n;
    }
    uint64_t due = itr_now_ns() + s->delay_ns;
    size_t taken = 0;
    while (taken < n && s->count < NULL_HOLD_CAP) {
        size_t slot = (s->head + s->count) & (NULL_HOLD_CAP - 1);
        s->held[slot].d = d[taken++];
        s->held[slot].due_ns = due;
        s->count++;
    }
    atomic_fetch_add_explicit(&s->in_flight, taken, memory_order_relaxed);
    if (taken < n)
        s->refused = 1;
    if (s->count && !itr_timer_armed(&s->due))
        itr_loop_timer_set(s->env->loop, &s->due, s->held[s->head].due_ns);
    return taken;
}

static int null_flush(gw_sink *s, uint64_t deadline_ns)
{
    /* Waiting out the delay is the point of a slow sink: run the loop until the FIFO is
     * empty or the deadline passes. */
    while (s->count) {
        int rc = gw_sink_run_until(s->env->loop, deadline_ns);
        if (rc)
            return rc;
    }
    return 0;
}

static void null_status(gw_sink *s, gw_sink_status *st)
{
    st->state = GW_SINK_UP;
    st->in_flight = atomic_load_explicit(&s->in_flight, memory_order_relaxed);
    st->buffered_bytes = 0;
}

static void null_close(gw_sink *s)
{
    if (!s)
        return;
    itr_loop_timer_cancel(s->env->loop, &s->due);
    free(s->held); /* deliveries still held are completed by the runtime */
    free(s);
}

const gw_connector gw_null_connector = {
    .type = "null",
    .validate = null_validate,
    .open = null_open,
    .submit = null_submit,
    .flush = null_flush,
    .status = null_status,
    .close = null_close,
};
