/* test_sinks.c: the sink runtime with real sink threads (null and file connectors) and a
 * fake worker (this thread with its own itr_loop): reserve/stage/commit/complete, Reliable
 * never dropped, Realtime drop-oldest counted, a slow sink throttling only its own Reliable
 * traffic, drain, close, reload carrying unchanged sinks, open failures and status.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "sinks.h"

/* ---- a fake worker ---- */

#define MAXM 20000

struct tmsg {
    gw_msg m;
    gw_delivery d[2];
    int pending;
    int done_count;
    gw_result last;
};

struct worker {
    itr_loop *loop;
    gw_sinkset *set;
    size_t completed;
    size_t durable, discarded, dead;
    gw_delivery *order[MAXM];
    size_t norder;
};

static void on_complete(void *arg, gw_delivery *d, gw_result r)
{
    struct worker *w = arg;
    struct tmsg *t = (struct tmsg *)((uintptr_t)d->msg - offsetof(struct tmsg, m));
    t->pending--;
    t->done_count++;
    t->last = r;
    w->completed++;
    if (r == GW_DURABLE)
        w->durable++;
    else if (r == GW_DISCARDED)
        w->discarded++;
    else
        w->dead++;
    if (w->norder < MAXM)
        w->order[w->norder++] = d;
}

static void on_worker_wake(void *arg)
{
    struct worker *w = arg;
    gw_sinkset_poll(w->set, 0);
}

static void worker_init(struct worker *w)
{
    memset(w, 0, sizeof(*w));
    assert_int_equal(itr_loop_new(&w->loop), 0);
    itr_loop_on_wake(w->loop, on_worker_wake, w);
}

static void worker_attach(struct worker *w, gw_sinkset *set)
{
    w->set = set;
    assert_int_equal(gw_sinkset_attach(set, 0, w->loop, on_complete, w), 0);
}

static void worker_run_until(struct worker *w, size_t completed, int timeout_ms)
{
    uint64_t end = itr_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (w->completed < completed && itr_now_ns() < end)
        itr_loop_run_once(w->loop, 10);
}

static void worker_free(struct worker *w)
{
    itr_loop_free(w->loop);
}

static void tmsg_init(struct tmsg *t, uint32_t seq, int reliable)
{
    memset(t, 0, sizeof(*t));
    t->m.recv_wall_ns = itr_wall_ns();
    t->m.recv_mono_ns = itr_now_ns();
    t->m.shard_name = "s";
    t->m.shard_name_len = 1;
    memset(t->m.peer_hex, 'b', 64);
    t->m.seq = seq;
    t->m.intent = reliable ? ITR_INTENT_RELIABLE : ITR_INTENT_REALTIME;
    t->m.topic = "t";
    t->m.topic_len = 1;
    t->m.body = (const uint8_t *)"0123456789";
    t->m.body_len = 10;
    for (int i = 0; i < 2; i++) {
        t->d[i].msg = &t->m;
        t->d[i].reliable = (uint8_t)reliable;
    }
}

/* Route t to `sink` the way a worker does; returns 0 or the refusal. */
static int route(gw_sinkset *set, struct tmsg *t, unsigned sink, int slot)
{
    if (t->d[slot].reliable) {
        int rc = gw_sinkset_reserve(set, sink, &t->m);
        if (rc)
            return rc;
    }
    t->pending++;
    gw_sinkset_stage(set, 0, sink, &t->d[slot]);
    return 0;
}

/* ---- specs ---- */

struct specs {
    gw_sink_spec s[4];
    cJSON *conf[4];
    size_t n;
};

static void spec_add(struct specs *sp, const char *name, const char *json, int required,
                     uint32_t queue, uint64_t bytes)
{
    size_t i = sp->n++;
    sp->conf[i] = cJSON_Parse(json);
    assert_non_null(sp->conf[i]);
    sp->s[i].name = name;
    sp->s[i].type = cJSON_GetObjectItem(sp->conf[i], "type")->valuestring;
    sp->s[i].conf = sp->conf[i];
    sp->s[i].required = required;
    sp->s[i].queue_messages = queue;
    sp->s[i].max_inflight_bytes = bytes;
}

static void specs_free(struct specs *sp)
{
    for (size_t i = 0; i < sp->n; i++)
        cJSON_Delete(sp->conf[i]);
    sp->n = 0;
}

static gw_sinkset *open_set(struct specs *sp)
{
    gw_sinkset_options opt = {.workers = 1};
    gw_sinkset *set = NULL;
    char err[GW_ERR_LEN] = "";
    int rc = gw_sinkset_open_specs(&set, sp->s, sp->n, &opt, err, sizeof(err));
    if (rc)
        fail_msg("open: %s", err);
    return set;
}

static struct tmsg msgs[MAXM];

/* ---- tests ---- */

static void test_basic_flow(void **state)
{
    (void)state;
    struct specs sp = {0};
    spec_add(&sp, "nul", "{\"type\":\"null\"}", 1, 1000, 1 << 20);
    gw_sinkset *set = open_set(&sp);
    struct worker w;
    worker_init(&w);
    worker_attach(&w, set);
    assert_int_equal(gw_sinkset_count(set), 1);
    assert_string_equal(gw_sinkset_name(set, 0), "nul");
    assert_string_equal(gw_sinkset_type(set, 0), "null");
    assert_int_equal(gw_sinkset_index(set, "nul"), 0);
    assert_int_equal(gw_sinkset_index(set, "nope"), -1);
    char why[256];
    assert_int_equal(gw_sinkset_ready(set, why, sizeof(why)), 1);

    for (int i = 0; i < 500; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, i % 2);
        assert_int_equal(route(set, &msgs[i], 0, 0), 0);
        if (i % 64 == 63)
            gw_sinkset_commit(set, 0);
    }
    gw_sinkset_commit(set, 0);
    worker_run_until(&w, 500, 5000);
    assert_int_equal(w.completed, 500);
    assert_int_equal(w.durable, 500);
    for (int i = 0; i < 500; i++)
        assert_int_equal(msgs[i].done_count, 1);
    gw_sink_metrics m;
    gw_sinkset_metrics(set, 0, &m);
    assert_int_equal(m.delivered_total, 500);
    assert_int_equal(m.latency_count, 500);
    assert_int_equal(m.latency_bucket[GW_LATENCY_BUCKETS - 1], 500);
    assert_int_equal(m.in_flight, 0);
    assert_int_equal(m.reserved_messages, 0);
    assert_int_equal(m.reserved_bytes, 0);
    gw_sink_status st;
    gw_sinkset_status(set, 0, &st);
    assert_int_equal(st.state, GW_SINK_UP);

    cJSON *j = gw_sinkset_json(set);
    assert_non_null(j);
    cJSON *o = cJSON_GetArrayItem(j, 0);
    assert_string_equal(cJSON_GetObjectItem(o, "name")->valuestring, "nul");
    assert_string_equal(cJSON_GetObjectItem(o, "state")->valuestring, "up");
    assert_int_equal(cJSON_GetObjectItem(o, "delivered")->valueint, 500);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "discarded"), "queue_full"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "last_error")));
    cJSON_Delete(j);

    gw_sinkset_close(set);
    worker_free(&w);
    specs_free(&sp);
}

/* Completions are handed back in batches (one push per worker per sink loop iteration, and
 * early every DONE_FLUSH): the worker still sees each exactly once, in completion order, with
 * the counters and reservations already released when it does. */
static void test_batched_completions(void **state)
{
    (void)state;
    enum { N = 5000 };
    struct specs sp = {0};
    spec_add(&sp, "nul", "{\"type\":\"null\"}", 1, N, 1 << 24);
    gw_sinkset *set = open_set(&sp);
    struct worker w;
    worker_init(&w);
    worker_attach(&w, set);
    for (int round = 1; round <= 2; round++) {
        /* The queue holds exactly N: the second round fits only if every reservation of the
         * first came back. */
        for (int i = 0; i < N; i++) {
            tmsg_init(&msgs[i], (uint32_t)i, 1);
            assert_int_equal(route(set, &msgs[i], 0, 0), 0);
        }
        gw_sinkset_commit(set, 0);
        worker_run_until(&w, (size_t)round * N, 10000);
        assert_int_equal(w.completed, (size_t)round * N);
        for (int i = 0; i < N; i++) {
            assert_int_equal(msgs[i].done_count, 1);
            assert_int_equal(msgs[i].last, GW_DURABLE);
        }
        for (size_t i = 0; i < N && round == 1; i++)
            assert_ptr_equal(w.order[i], &msgs[i].d[0]);
        gw_sink_metrics m;
        gw_sinkset_metrics(set, 0, &m);
        assert_int_equal(m.delivered_total, (uint64_t)round * N);
        assert_int_equal(m.latency_count, (uint64_t)round * N);
        assert_int_equal(m.in_flight, 0);
        assert_int_equal(m.in_flight_bytes, 0);
        assert_int_equal(m.reserved_messages, 0);
        assert_int_equal(m.reserved_bytes, 0);
    }
    gw_sinkset_close(set);
    worker_free(&w);
    specs_free(&sp);
}

static void test_reliable_bounded_never_dropped(void **state)
{
    (void)state;
    struct specs sp = {0};
    spec_add(&sp, "slow", "{\"type\":\"null\",\"delay_ms\":200}", 1, 100, 1 << 20);
    gw_sinkset *set = open_set(&sp);
    struct worker w;
    worker_init(&w);
    worker_attach(&w, set);
    /* queue_messages bounds admission: the 101st is refused (the sender is throttled) */
    size_t admitted = 0;
    for (int i = 0; i < 150; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        int rc = route(set, &msgs[i], 0, 0);
        if (rc == 0)
            admitted++;
        else
            assert_int_equal(rc, ITR_ERR_WOULDBLOCK);
    }
    assert_int_equal(admitted, 100);
    gw_sinkset_commit(set, 0);
    gw_sink_metrics m;
    gw_sinkset_metrics(set, 0, &m);
    assert_int_equal(m.reserved_messages, 100);
    assert_int_equal(m.reserved_bytes, 100 * 11);
    worker_run_until(&w, 100, 5000);
    assert_int_equal(w.durable, 100);
    assert_int_equal(w.discarded, 0);
    /* room again */
    tmsg_init(&msgs[200], 200, 1);
    assert_int_equal(route(set, &msgs[200], 0, 0), 0);
    gw_sinkset_commit(set, 0);
    worker_run_until(&w, 101, 5000);
    assert_int_equal(w.durable, 101);
    gw_sinkset_close(set);
    specs_free(&sp);

    /* the byte bound: 5 messages of 11 bytes fit in 55, the 6th does not */
    spec_add(&sp, "bytes", "{\"type\":\"null\",\"delay_ms\":100}", 1, 1000, 55);
    set = open_set(&sp);
    worker_attach(&w, set);
    for (int i = 0; i < 5; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        assert_int_equal(route(set, &msgs[i], 0, 0), 0);
    }
    tmsg_init(&msgs[5], 5, 1);
    assert_int_equal(gw_sinkset_reserve(set, 0, &msgs[5].m), ITR_ERR_WOULDBLOCK);
    gw_sinkset_commit(set, 0);
    w.completed = 0;
    worker_run_until(&w, 5, 5000);
    assert_int_equal(w.completed, 5);
    gw_sinkset_close(set);
    specs_free(&sp);
    worker_free(&w);
}

static void test_realtime_drop_oldest(void **state)
{
    (void)state;
    struct specs sp = {0};
    /* a sink that cannot open (not required): DOWN, takes nothing, so the ring fills */
    spec_add(&sp, "down", "{\"type\":\"file\",\"path\":\"/proc/self/nonexistent/x\"}", 0, 10,
             1 << 20);
    gw_sinkset *set = open_set(&sp);
    struct worker w;
    worker_init(&w);
    worker_attach(&w, set);
    gw_sink_status st;
    gw_sinkset_status(set, 0, &st);
    assert_int_equal(st.state, GW_SINK_DOWN);
    assert_non_null(strstr(st.last_error, "/proc/self/nonexistent"));
    assert_int_equal(gw_sinkset_ready(set, NULL, 0), 1); /* not required */

    for (int i = 0; i < 25; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 0);
        assert_int_equal(route(set, &msgs[i], 0, 0), 0);
    }
    gw_sinkset_commit(set, 0);
    worker_run_until(&w, 15, 5000);
    assert_int_equal(w.discarded, 15);
    for (int i = 0; i < 15; i++) { /* the oldest ones went */
        assert_int_equal(msgs[i].done_count, 1);
        assert_int_equal(msgs[i].last, GW_DISCARDED);
        assert_ptr_equal(w.order[i], &msgs[i].d[0]);
    }
    for (int i = 15; i < 25; i++)
        assert_int_equal(msgs[i].done_count, 0);
    gw_sink_metrics m;
    gw_sinkset_metrics(set, 0, &m);
    assert_int_equal(m.discarded_total[GW_REASON_QUEUE_FULL], 15);
    assert_int_equal(m.queue_realtime, 10);
    assert_true(m.errors_total[GW_STAGE_OPEN] >= 1);

    gw_sinkset_close(set);
    worker_free(&w);
    specs_free(&sp);
}

static void test_slow_sink_isolated(void **state)
{
    (void)state;
    struct specs sp = {0};
    spec_add(&sp, "slow", "{\"type\":\"null\",\"delay_ms\":300}", 1, 50, 1 << 20);
    /* the fast sink's bounds are larger than the test traffic: any refusal would come from
     * the slow sink leaking into it */
    spec_add(&sp, "fast", "{\"type\":\"null\"}", 1, 10000, 1 << 20);
    gw_sinkset *set = open_set(&sp);
    struct worker w;
    worker_init(&w);
    worker_attach(&w, set);
    size_t slow_ok = 0, slow_refused = 0, fast_ok = 0, fast_refused = 0;
    uint64_t start = itr_now_ns();
    /* offered alternately; a refused message is retried later by its sender (dropped here) */
    for (int i = 0; i < 4000; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        unsigned sink = (unsigned)(i % 2);
        int rc = route(set, &msgs[i], sink, 0);
        if (sink == 0)
            rc ? slow_refused++ : slow_ok++;
        else
            rc ? fast_refused++ : fast_ok++;
        if (i % 32 == 31) {
            gw_sinkset_commit(set, 0);
            itr_loop_run_once(w.loop, 0);
        }
    }
    gw_sinkset_commit(set, 0);
    worker_run_until(&w, fast_ok + slow_ok, 5000);
    uint64_t elapsed_ms = (itr_now_ns() - start) / 1000000u;
    assert_int_equal(fast_ok, 2000); /* the fast sink never refused */
    assert_int_equal(fast_refused, 0);
    assert_true(slow_refused > 0); /* the slow sink throttled its own senders */
    assert_true(slow_ok >= 50);
    assert_int_equal(w.completed, fast_ok + slow_ok);
    assert_int_equal(w.discarded, 0);
    assert_true(elapsed_ms < 5000);
    gw_sink_metrics m;
    gw_sinkset_metrics(set, 0, &m);
    assert_int_equal(m.latency_count, slow_ok);
    /* receive->durable latency of the slow sink is at least its delay */
    assert_int_equal(m.latency_bucket[6], 0); /* le 0.05 s */
    gw_sinkset_close(set);
    worker_free(&w);
    specs_free(&sp);
}

static void test_drain_and_close(void **state)
{
    (void)state;
    struct specs sp = {0};
    spec_add(&sp, "slow", "{\"type\":\"null\",\"delay_ms\":200}", 1, 1000, 1 << 20);
    gw_sinkset *set = open_set(&sp);
    struct worker w;
    worker_init(&w);
    worker_attach(&w, set);
    for (int i = 0; i < 100; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        assert_int_equal(route(set, &msgs[i], 0, 0), 0);
    }
    gw_sinkset_commit(set, 0);
    assert_int_equal(gw_sinkset_drain(set, itr_now_ns() + 3000000000ull), 0);
    /* everything was durable before drain returned */
    gw_sink_metrics m;
    gw_sinkset_metrics(set, 0, &m);
    assert_int_equal(m.delivered_total, 100);
    assert_int_equal(m.in_flight, 0);
    /* draining: no new Reliable admission, Realtime discarded "draining" */
    tmsg_init(&msgs[100], 100, 1);
    assert_int_equal(gw_sinkset_reserve(set, 0, &msgs[100].m), ITR_ERR_CLOSED);
    tmsg_init(&msgs[101], 101, 0);
    assert_int_equal(route(set, &msgs[101], 0, 0), 0);
    gw_sinkset_commit(set, 0);
    worker_run_until(&w, 101, 3000);
    assert_int_equal(w.durable, 100);
    assert_int_equal(w.discarded, 1);
    gw_sinkset_metrics(set, 0, &m);
    assert_int_equal(m.discarded_total[GW_REASON_DRAINING], 1);
    gw_sinkset_close(set);
    specs_free(&sp);

    /* a deadline shorter than the sink's delay: WOULDBLOCK, then close hands back the
     * held deliveries as not stored (never acknowledged) */
    spec_add(&sp, "slower", "{\"type\":\"null\",\"delay_ms\":5000}", 1, 1000, 1 << 20);
    set = open_set(&sp);
    worker_attach(&w, set);
    w.completed = w.durable = w.discarded = 0;
    for (int i = 0; i < 10; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        assert_int_equal(route(set, &msgs[i], 0, 0), 0);
    }
    gw_sinkset_commit(set, 0);
    uint64_t t0 = itr_now_ns();
    assert_int_equal(gw_sinkset_drain(set, t0 + 200000000u), ITR_ERR_WOULDBLOCK);
    assert_true(itr_now_ns() - t0 < 2500000000ull);
    gw_sinkset_metrics(set, 0, &m);
    assert_int_equal(m.in_flight, 10);
    /* closing the last set: held deliveries end "shutdown" (never acknowledged) */
    gw_sinkset_detach(set, 0);
    gw_sinkset_close(set);
    worker_free(&w);
    specs_free(&sp);
}

static void test_close_completes_shutdown(void **state)
{
    (void)state;
    /* two sets share a hub through reload; closing the old one with a removed, busy sink
     * completes its deliveries "shutdown" to the worker, which polls through the new set */
    struct specs a = {0}, b = {0};
    spec_add(&a, "keep", "{\"type\":\"null\"}", 1, 1000, 1 << 20);
    spec_add(&a, "busy", "{\"type\":\"null\",\"delay_ms\":5000}", 1, 1000, 1 << 20);
    gw_sinkset *old = open_set(&a);
    struct worker w;
    worker_init(&w);
    worker_attach(&w, old);
    for (int i = 0; i < 5; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        assert_int_equal(route(old, &msgs[i], 1, 0), 0);
    }
    gw_sinkset_commit(old, 0);
    spec_add(&b, "keep", "{\"type\":\"null\"}", 1, 1000, 1 << 20);
    gw_sinkset *nw = NULL;
    char err[GW_ERR_LEN] = "";
    assert_int_equal(gw_sinkset_reload_specs(old, b.s, b.n, &nw, err, sizeof(err)), 0);
    w.set = nw;
    assert_int_equal(gw_sinkset_retire(old, itr_now_ns() + 100000000u), ITR_ERR_WOULDBLOCK);
    worker_run_until(&w, 5, 3000);
    assert_int_equal(w.discarded, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(msgs[i].last, GW_DISCARDED);
    gw_sinkset_close(nw);
    worker_free(&w);
    specs_free(&a);
    specs_free(&b);
}

static void test_reload(void **state)
{
    (void)state;
    struct specs a = {0}, b = {0}, bad = {0};
    spec_add(&a, "one", "{\"type\":\"null\"}", 1, 1000, 1 << 20);
    spec_add(&a, "two", "{\"type\":\"null\",\"delay_ms\":50}", 1, 1000, 1 << 20);
    gw_sinkset *old = open_set(&a);
    struct worker w;
    worker_init(&w);
    worker_attach(&w, old);
    for (int i = 0; i < 10; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        assert_int_equal(route(old, &msgs[i], 1, 0), 0);
    }
    gw_sinkset_commit(old, 0);

    /* a failing reload changes nothing */
    spec_add(&bad, "two", "{\"type\":\"null\",\"delay_ms\":50}", 1, 1000, 1 << 20);
    spec_add(&bad, "broken", "{\"type\":\"file\",\"path\":\"/proc/self/nonexistent/y\"}", 1, 1000,
             1 << 20);
    gw_sinkset *nw = NULL;
    char err[GW_ERR_LEN] = "";
    assert_int_equal(gw_sinkset_reload_specs(old, bad.s, bad.n, &nw, err, sizeof(err)), ITR_ERR_IO);
    assert_null(nw);
    assert_non_null(strstr(err, "sinks.broken: "));
    assert_non_null(strstr(err, "/proc/self/nonexistent/y"));
    worker_run_until(&w, 10, 3000);
    assert_int_equal(w.durable, 10); /* old set still delivering */

    /* "two" unchanged (carried, now index 0), "one" removed, "three" new */
    spec_add(&b, "two", "{\"type\":\"null\",\"delay_ms\":50}", 1, 1000, 1 << 20);
    spec_add(&b, "three", "{\"type\":\"null\"}", 1, 1000, 1 << 20);
    for (int i = 10; i < 20; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        assert_int_equal(route(old, &msgs[i], 1, 0), 0);
    }
    gw_sinkset_commit(old, 0);
    assert_int_equal(gw_sinkset_reload_specs(old, b.s, b.n, &nw, err, sizeof(err)), 0);
    assert_int_equal(gw_sinkset_count(nw), 2);
    assert_int_equal(gw_sinkset_index(nw, "two"), 0);
    assert_int_equal(gw_sinkset_index(nw, "three"), 1);
    w.set = nw;
    assert_int_equal(gw_sinkset_retire(old, itr_now_ns() + 2000000000u), 0);
    /* the carried sink kept its queue and counters across the swap */
    worker_run_until(&w, 20, 3000);
    assert_int_equal(w.durable, 20);
    gw_sink_metrics m;
    gw_sinkset_metrics(nw, 0, &m);
    assert_int_equal(m.delivered_total, 20);
    gw_sinkset_metrics(nw, 1, &m);
    assert_int_equal(m.delivered_total, 0);
    /* and the new set takes traffic, attachments carried over */
    for (int i = 20; i < 30; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        assert_int_equal(route(nw, &msgs[i], 1, 0), 0);
    }
    gw_sinkset_commit(nw, 0);
    worker_run_until(&w, 30, 3000);
    assert_int_equal(w.durable, 30);
    gw_sinkset_close(nw);
    worker_free(&w);
    specs_free(&a);
    specs_free(&b);
    specs_free(&bad);
}

static void test_open_errors_and_retry(void **state)
{
    (void)state;
    struct specs sp = {0};
    gw_sinkset_options opt = {.workers = 1};
    gw_sinkset *set = NULL;
    char err[GW_ERR_LEN] = "";
    spec_add(&sp, "archive", "{\"type\":\"file\",\"path\":\"/proc/self/nonexistent/z\"}", 1, 1000,
             1 << 20);
    assert_int_equal(gw_sinkset_open_specs(&set, sp.s, sp.n, &opt, err, sizeof(err)), ITR_ERR_IO);
    assert_true(strncmp(err, "sinks.archive: ", 15) == 0);
    specs_free(&sp);

    spec_add(&sp, "x", "{\"type\":\"kafak\"}", 1, 1000, 1 << 20);
    assert_int_equal(gw_sinkset_open_specs(&set, sp.s, sp.n, &opt, err, sizeof(err)),
                     ITR_ERR_INVALID);
    assert_non_null(strstr(err, "sinks.x.type: unknown sink type \"kafak\" (known: "));
    specs_free(&sp);

    /* a required sink that is down makes the set not ready; a non-required one retries */
    spec_add(&sp, "opt", "{\"type\":\"file\",\"path\":\"/proc/self/nonexistent/w\"}", 0, 1000,
             1 << 20);
    set = open_set(&sp);
    gw_sink_metrics m;
    gw_sinkset_metrics(set, 0, &m);
    assert_int_equal(m.open_attempts, 1);
    uint64_t end = itr_now_ns() + 3000000000ull;
    while (m.open_attempts < 2 && itr_now_ns() < end) {
        usleep(20000);
        gw_sinkset_metrics(set, 0, &m);
    }
    assert_int_equal(m.open_attempts, 2); /* retried after ~1 s (0.8..1.2 s) */
    gw_sinkset_close(set);
    specs_free(&sp);
}

static char tmpdir[256];

static void test_file_sink_through_runtime(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_sinks.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char json[512];
    snprintf(json, sizeof(json), "{\"type\":\"file\",\"path\":\"%s/sub/m.jsonl\"}", tmpdir);
    struct specs sp = {0};
    spec_add(&sp, "archive", json, 1, 1000, 1 << 20);
    gw_sinkset *set = open_set(&sp);
    struct worker w;
    worker_init(&w);
    worker_attach(&w, set);
    for (int i = 0; i < 300; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        assert_int_equal(route(set, &msgs[i], 0, 0), 0);
        if (i % 50 == 49)
            gw_sinkset_commit(set, 0);
    }
    gw_sinkset_commit(set, 0);
    worker_run_until(&w, 300, 5000);
    assert_int_equal(w.durable, 300);
    gw_sinkset_close(set);
    char path[512];
    snprintf(path, sizeof(path), "%s/sub/m.jsonl", tmpdir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        char key[32];
        snprintf(key, sizeof(key), "\"seq\":%d,", n);
        assert_non_null(strstr(line, key));
        n++;
    }
    fclose(f);
    assert_int_equal(n, 300);
    unlink(path);
    snprintf(path, sizeof(path), "%s/sub", tmpdir);
    rmdir(path);
    rmdir(tmpdir);
    worker_free(&w);
    specs_free(&sp);
}

static gw_config *parse_config(const char *sinks_json)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"listen\":[\"127.0.0.1:0\"],\"key_file\":\"/tmp/unused.key\","
             "\"unknown_peers\":\"admit\",\"default_shard\":\"default\","
             "\"shards\":{\"default\":{}},\"sinks\":%s,"
             "\"routes\":[{\"name\":\"all\",\"match\":{\"shard\":\"*\",\"topic\":\"*\"},"
             "\"sinks\":[{\"sink\":\"b\"}]}],\"admin\":{\"enabled\":false}}",
             sinks_json);
    gw_config *cfg = NULL;
    char err[GW_ERR_LEN] = "";
    if (gw_config_parse_text(text, strlen(text), "test.json", &cfg, err, sizeof(err)))
        fail_msg("config: %s", err);
    return cfg;
}

static void test_from_config(void **state)
{
    (void)state;
    gw_config *c1 = parse_config("{\"a\":{\"type\":\"null\"},\"b\":{\"type\":\"null\","
                                 "\"delay_ms\":10,\"queue_messages\":7}}");
    gw_sinkset_options opt = {.workers = 1};
    gw_sinkset *set = NULL;
    char err[GW_ERR_LEN] = "";
    assert_int_equal(gw_sinkset_open(&set, c1, &opt, err, sizeof(err)), 0);
    assert_int_equal(gw_sinkset_count(set), gw_config_sink_count(c1));
    for (unsigned i = 0; i < gw_sinkset_count(set); i++)
        assert_int_equal(gw_config_sink_index(c1, gw_sinkset_name(set, i)), (int)i);
    /* queue_messages from the config bounds admission */
    int b = gw_sinkset_index(set, "b");
    assert_true(b >= 0);
    for (int i = 0; i < 7; i++) {
        tmsg_init(&msgs[i], (uint32_t)i, 1);
        assert_int_equal(gw_sinkset_reserve(set, (unsigned)b, &msgs[i].m), 0);
    }
    assert_int_equal(gw_sinkset_reserve(set, (unsigned)b, &msgs[7].m), ITR_ERR_WOULDBLOCK);
    for (int i = 0; i < 7; i++)
        gw_sinkset_unreserve(set, (unsigned)b, &msgs[i].m);

    /* reload: "b" unchanged is carried, "a" changed is a new instance */
    gw_config *c2 = parse_config("{\"b\":{\"type\":\"null\",\"delay_ms\":10,"
                                 "\"queue_messages\":7},\"a\":{\"type\":\"null\","
                                 "\"delay_ms\":1}}");
    gw_sinkset *nw = NULL;
    assert_int_equal(gw_sinkset_reload(set, c2, &nw, err, sizeof(err)), 0);
    for (unsigned i = 0; i < gw_sinkset_count(nw); i++)
        assert_int_equal(gw_config_sink_index(c2, gw_sinkset_name(nw, i)), (int)i);
    gw_sink_metrics m;
    gw_sinkset_metrics(nw, (unsigned)gw_sinkset_index(nw, "b"), &m);
    assert_int_equal(m.open_attempts, 1); /* the same instance */
    assert_int_equal(gw_sinkset_retire(set, itr_now_ns() + 1000000000u), 0);
    gw_sinkset_close(nw);
    gw_config_free(c1);
    gw_config_free(c2);
}

static void test_registry(void **state)
{
    (void)state;
    static const char *const types[] = {"file", "null", "kafka", "webhook", "redis"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        const gw_connector *c = gw_connector_find(types[i]);
        assert_non_null(c);
        assert_string_equal(c->type, types[i]);
        assert_non_null(strstr(gw_connector_types(), types[i]));
    }
    assert_null(gw_connector_find("kafak"));
    assert_null(gw_connector_find(NULL));
    assert_string_equal(gw_connector_types(), "file, null, kafka, webhook, redis");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_basic_flow),
        cmocka_unit_test(test_batched_completions),
        cmocka_unit_test(test_reliable_bounded_never_dropped),
        cmocka_unit_test(test_realtime_drop_oldest),
        cmocka_unit_test(test_slow_sink_isolated),
        cmocka_unit_test(test_drain_and_close),
        cmocka_unit_test(test_close_completes_shutdown),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_open_errors_and_retry),
        cmocka_unit_test(test_file_sink_through_runtime),
        cmocka_unit_test(test_from_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
