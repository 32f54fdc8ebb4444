/* test_loop.c: itr_loop: timer order, re-arm and cancel (also from inside callbacks), fd
 * watches (event changes, disable, unwatch during dispatch), wake from another thread, stop,
 * and how precisely run_once honours timeouts and timer deadlines. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <intentra/driver.h>

#define MS 1000000ull

/* Upper bound on scheduling noise of a shared 2-core CI box: lateness beyond this fails. */
#define SLACK_MS 40

/* ---- timers ---- */

struct rec {
    itr_loop *loop;
    int order[64];
    int n;
};

struct tctx {
    struct rec *rec;
    int id;
    itr_timer t;
    itr_timer *victim; /* cancel this one when fired */
    int rearm;         /* re-arm this many times */
};

static void on_timer(void *arg, uint64_t now)
{
    struct tctx *c = arg;
    (void)now;
    c->rec->order[c->rec->n++] = c->id;
    if (c->victim)
        itr_loop_timer_cancel(c->rec->loop, c->victim);
    if (c->rearm > 0) {
        c->rearm--;
        itr_loop_timer_set(c->rec->loop, &c->t, itr_now_ns() + 1 * MS);
    }
}

static void test_timer_order(void **state)
{
    (void)state;
    struct rec rec = {0};
    struct tctx c[8];
    assert_int_equal(itr_loop_new(&rec.loop), ITR_OK);
    /* Armed out of order; deadlines 1..8 ms ahead in a shuffled order. */
    static const int delay[8] = {5, 1, 8, 3, 7, 2, 6, 4};
    uint64_t now = itr_now_ns();
    for (int i = 0; i < 8; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        c[i].rec = &rec;
        c[i].id = delay[i];
        itr_timer_init(&c[i].t, on_timer, &c[i]);
        assert_false(itr_timer_armed(&c[i].t));
        itr_loop_timer_set(rec.loop, &c[i].t, now + (uint64_t)delay[i] * 2 * MS);
        assert_true(itr_timer_armed(&c[i].t));
    }
    uint64_t end = now + 2000 * MS;
    while (rec.n < 8 && itr_now_ns() < end)
        assert_true(itr_loop_run_once(rec.loop, -1) >= 0);
    assert_int_equal(rec.n, 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(rec.order[i], i + 1);
        assert_false(itr_timer_armed(&c[i].t));
    }
    itr_loop_free(rec.loop);
}

static void test_timer_rearm_cancel(void **state)
{
    (void)state;
    struct rec rec = {0};
    struct tctx a = {.rec = &rec, .id = 1}, b = {.rec = &rec, .id = 2}, k = {.rec = &rec, .id = 3};
    assert_int_equal(itr_loop_new(&rec.loop), ITR_OK);
    itr_timer_init(&a.t, on_timer, &a);
    itr_timer_init(&b.t, on_timer, &b);
    itr_timer_init(&k.t, on_timer, &k);
    uint64_t now = itr_now_ns();

    /* Re-arming is idempotent: the last deadline wins, the timer is in the heap once. */
    itr_loop_timer_set(rec.loop, &a.t, now + 500 * MS);
    itr_loop_timer_set(rec.loop, &a.t, now + 2 * MS);
    itr_loop_timer_set(rec.loop, &a.t, now + 4 * MS);
    itr_loop_timer_set(rec.loop, &b.t, now + 6 * MS);
    /* Cancel twice: also idempotent. */
    itr_loop_timer_set(rec.loop, &k.t, now + 1 * MS);
    itr_loop_timer_cancel(rec.loop, &k.t);
    itr_loop_timer_cancel(rec.loop, &k.t);
    assert_false(itr_timer_armed(&k.t));

    uint64_t end = now + 2000 * MS;
    while (rec.n < 2 && itr_now_ns() < end)
        assert_true(itr_loop_run_once(rec.loop, -1) >= 0);
    assert_int_equal(rec.n, 2);
    assert_int_equal(rec.order[0], 1);
    assert_int_equal(rec.order[1], 2);
    /* Nothing else fires: the loop waits the full max_wait with no timer armed. */
    assert_int_equal(itr_loop_run_once(rec.loop, 20), 0);
    assert_int_equal(rec.n, 2);

    /* A timer re-arming itself from its callback fires again (3 times in total). */
    rec.n = 0;
    a.rearm = 2;
    itr_loop_timer_set(rec.loop, &a.t, itr_now_ns());
    end = itr_now_ns() + 2000 * MS;
    while (rec.n < 3 && itr_now_ns() < end)
        assert_true(itr_loop_run_once(rec.loop, 50) >= 0);
    assert_int_equal(rec.n, 3);
    assert_false(itr_timer_armed(&a.t));
    itr_loop_free(rec.loop);
}

static void test_timer_cancel_from_callback(void **state)
{
    (void)state;
    struct rec rec = {0};
    struct tctx a = {.rec = &rec, .id = 1}, b = {.rec = &rec, .id = 2}, c = {.rec = &rec, .id = 3};
    assert_int_equal(itr_loop_new(&rec.loop), ITR_OK);
    itr_timer_init(&a.t, on_timer, &a);
    itr_timer_init(&b.t, on_timer, &b);
    itr_timer_init(&c.t, on_timer, &c);
    /* All three due in the same dispatch; a cancels b before b runs, and c cancels itself
     * (a no-op: it is already disarmed while its callback runs). */
    a.victim = &b.t;
    c.victim = &c.t;
    uint64_t now = itr_now_ns();
    itr_loop_timer_set(rec.loop, &a.t, now - 3);
    itr_loop_timer_set(rec.loop, &b.t, now - 2);
    itr_loop_timer_set(rec.loop, &c.t, now - 1);
    assert_int_equal(itr_loop_run_once(rec.loop, 0), 2);
    assert_int_equal(rec.n, 2);
    assert_int_equal(rec.order[0], 1);
    assert_int_equal(rec.order[1], 3);
    assert_false(itr_timer_armed(&b.t));
    assert_false(itr_timer_armed(&c.t));
    itr_loop_free(rec.loop);
}

/* A timer that re-arms itself in the past must not keep run_once from returning. */
static void self_past(void *arg, uint64_t now)
{
    struct tctx *c = arg;
    c->rec->n++;
    itr_loop_timer_set(c->rec->loop, &c->t, now - 1);
}

static void test_timer_no_livelock(void **state)
{
    (void)state;
    struct rec rec = {0};
    struct tctx a = {.rec = &rec};
    assert_int_equal(itr_loop_new(&rec.loop), ITR_OK);
    itr_timer_init(&a.t, self_past, &a);
    itr_loop_timer_set(rec.loop, &a.t, 0);
    assert_int_equal(itr_loop_run_once(rec.loop, 0), 1);
    assert_int_equal(itr_loop_run_once(rec.loop, 0), 1);
    assert_int_equal(rec.n, 2);
    itr_loop_timer_cancel(rec.loop, &a.t);
    itr_loop_free(rec.loop);
}

/* Many timers: the heap stays ordered through random arm/re-arm/cancel. */
enum { HEAP_N = 500 };

struct heap_rec {
    uint64_t fired[HEAP_N];
    int n;
};

struct heap_timer {
    itr_timer t;
    struct heap_rec *rec;
};

static void heap_fire(void *arg, uint64_t now)
{
    struct heap_timer *h = arg;
    (void)now;
    h->rec->fired[h->rec->n++] = h->t.deadline;
}

static void test_timer_heap_many(void **state)
{
    (void)state;
    static struct heap_timer c[HEAP_N];
    static struct heap_rec rec;
    itr_loop *loop;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    memset(&rec, 0, sizeof(rec));
    uint32_t x = 12345;
    /* Deadlines in the past (1..100,000 ns after 1 s of monotonic time): all due at once. */
    for (int i = 0; i < HEAP_N; i++) {
        c[i].rec = &rec;
        itr_timer_init(&c[i].t, heap_fire, &c[i]);
    }
    for (int round = 0; round < 20000; round++) {
        x = x * 1103515245u + 12345u;
        int i = (int)((x >> 8) % HEAP_N);
        if ((x >> 28) < 3)
            itr_loop_timer_cancel(loop, &c[i].t);
        else
            itr_loop_timer_set(loop, &c[i].t, 1000000000ull + (x >> 4) % 100000);
    }
    int armed = 0;
    for (int i = 0; i < HEAP_N; i++)
        armed += itr_timer_armed(&c[i].t);
    assert_true(armed > 0);
    /* One dispatch runs every timer that was due when it started, in deadline order. */
    assert_int_equal(itr_loop_run_once(loop, 0), armed);
    assert_int_equal(rec.n, armed);
    for (int i = 1; i < rec.n; i++)
        assert_true(rec.fired[i - 1] <= rec.fired[i]);
    for (int i = 0; i < HEAP_N; i++)
        assert_false(itr_timer_armed(&c[i].t));
    itr_loop_free(loop);
}

/* ---- watches ---- */

struct wctx {
    itr_loop *loop;
    int fds[2];
    int calls;
    uint32_t last_events;
    int unwatch_self;
    int unwatch_other; /* fd to unwatch from the callback */
};

static void on_fd(void *arg, int fd, uint32_t events)
{
    struct wctx *w = arg;
    w->calls++;
    w->last_events = events;
    if (w->unwatch_self)
        itr_loop_unwatch(w->loop, fd);
    if (w->unwatch_other >= 0)
        itr_loop_unwatch(w->loop, w->unwatch_other);
}

static void test_watch_basic(void **state)
{
    (void)state;
    struct wctx w = {.unwatch_other = -1};
    assert_int_equal(itr_loop_new(&w.loop), ITR_OK);
    assert_int_equal(pipe(w.fds), 0);

    /* Nothing to read yet. */
    assert_int_equal(itr_loop_watch(w.loop, w.fds[0], ITR_EV_READ, on_fd, &w), ITR_OK);
    assert_int_equal(itr_loop_run_once(w.loop, 0), 0);
    assert_int_equal(write(w.fds[1], "x", 1), 1);
    assert_int_equal(itr_loop_run_once(w.loop, 100), 1);
    assert_int_equal(w.calls, 1);
    assert_true(w.last_events & ITR_EV_READ);

    /* Level-triggered: still readable, reported again; watching again is idempotent. */
    assert_int_equal(itr_loop_watch(w.loop, w.fds[0], ITR_EV_READ, on_fd, &w), ITR_OK);
    assert_int_equal(itr_loop_run_once(w.loop, 0), 1);
    assert_int_equal(w.calls, 2);

    /* events == 0 disables without forgetting; re-enabling works. */
    assert_int_equal(itr_loop_watch(w.loop, w.fds[0], 0, on_fd, &w), ITR_OK);
    assert_int_equal(itr_loop_run_once(w.loop, 20), 0);
    assert_int_equal(w.calls, 2);
    assert_int_equal(itr_loop_watch(w.loop, w.fds[0], ITR_EV_READ, on_fd, &w), ITR_OK);
    assert_int_equal(itr_loop_run_once(w.loop, 0), 1);
    assert_int_equal(w.calls, 3);

    /* Changing the event set: the write end is writable. */
    assert_int_equal(itr_loop_watch(w.loop, w.fds[1], ITR_EV_READ, on_fd, &w), ITR_OK);
    char c;
    assert_int_equal(read(w.fds[0], &c, 1), 1);
    assert_int_equal(itr_loop_run_once(w.loop, 0), 0);
    assert_int_equal(itr_loop_watch(w.loop, w.fds[1], ITR_EV_WRITE, on_fd, &w), ITR_OK);
    assert_int_equal(itr_loop_run_once(w.loop, 0), 1);
    assert_true(w.last_events & ITR_EV_WRITE);

    /* Unwatch: a no-op twice and for fds never watched. */
    itr_loop_unwatch(w.loop, w.fds[1]);
    itr_loop_unwatch(w.loop, w.fds[1]);
    itr_loop_unwatch(w.loop, 1000);
    itr_loop_unwatch(w.loop, -1);
    assert_int_equal(itr_loop_run_once(w.loop, 0), 0);

    /* Hang-up of the write end while the read end is disabled: no wake-ups (no spin). */
    assert_int_equal(itr_loop_watch(w.loop, w.fds[0], 0, on_fd, &w), ITR_OK);
    close(w.fds[1]);
    uint64_t t0 = itr_now_ns();
    assert_int_equal(itr_loop_run_once(w.loop, 30), 0);
    assert_true(itr_now_ns() - t0 >= 29 * MS);
    /* Enabled again, the hang-up is reported. */
    assert_int_equal(itr_loop_watch(w.loop, w.fds[0], ITR_EV_READ, on_fd, &w), ITR_OK);
    assert_int_equal(itr_loop_run_once(w.loop, 100), 1);
    assert_true(w.last_events & (ITR_EV_READ | ITR_EV_ERROR));
    itr_loop_unwatch(w.loop, w.fds[0]);
    close(w.fds[0]);

    /* Bad fd. */
    assert_int_equal(itr_loop_watch(w.loop, -1, ITR_EV_READ, on_fd, &w), ITR_ERR_IO);
    itr_loop_free(w.loop);
}

/* A callback unwatches another fd that is ready in the same dispatch: the other's event,
 * already collected, must not be delivered. */
static void test_watch_unwatch_during_dispatch(void **state)
{
    (void)state;
    struct wctx w = {.unwatch_other = -1};
    int p1[2], p2[2];
    assert_int_equal(itr_loop_new(&w.loop), ITR_OK);
    assert_int_equal(pipe(p1), 0);
    assert_int_equal(pipe(p2), 0);
    assert_int_equal(write(p1[1], "x", 1), 1);
    assert_int_equal(write(p2[1], "x", 1), 1);
    /* Both callbacks unwatch the other: whichever runs first, the other must not run. */
    struct wctx w2 = {.loop = w.loop, .unwatch_other = p1[0]};
    w.unwatch_other = p2[0];
    assert_int_equal(itr_loop_watch(w.loop, p1[0], ITR_EV_READ, on_fd, &w), ITR_OK);
    assert_int_equal(itr_loop_watch(w.loop, p2[0], ITR_EV_READ, on_fd, &w2), ITR_OK);
    assert_int_equal(itr_loop_run_once(w.loop, 100), 1);
    assert_int_equal(w.calls + w2.calls, 1);
    /* The survivor is still readable and fires again; the unwatched one never does. */
    int first_was_w = w.calls == 1;
    w.unwatch_other = w2.unwatch_other = -1;
    assert_int_equal(itr_loop_run_once(w.loop, 0), 1);
    assert_int_equal(first_was_w ? w.calls : w2.calls, 2);
    assert_int_equal(first_was_w ? w2.calls : w.calls, 0);
    itr_loop_unwatch(w.loop, first_was_w ? p1[0] : p2[0]);
    assert_int_equal(itr_loop_run_once(w.loop, 0), 0);

    /* Unwatch self from the callback. */
    struct wctx w3 = {.loop = w.loop, .unwatch_other = -1, .unwatch_self = 1};
    assert_int_equal(itr_loop_watch(w.loop, p1[0], ITR_EV_READ, on_fd, &w3), ITR_OK);
    assert_int_equal(itr_loop_run_once(w.loop, 100), 1);
    assert_int_equal(w3.calls, 1);
    assert_int_equal(itr_loop_run_once(w.loop, 0), 0);
    assert_int_equal(w3.calls, 1);

    close(p1[0]);
    close(p1[1]);
    close(p2[0]);
    close(p2[1]);
    itr_loop_free(w.loop);
}

/* Two ready fds; the first callback to run unwatches and closes the other, then watches a new
 * pipe that reuses its fd number. The other fd's event, already collected in this dispatch,
 * must reach neither the old callback nor the new one. */
struct reuse_ctx {
    itr_loop *loop;
    int fd[2];
    int calls[2];
    int acted;
    int newp[2];
    int new_calls;
};

static void on_new_fd(void *arg, int fd, uint32_t events)
{
    struct reuse_ctx *r = arg;
    (void)fd;
    (void)events;
    r->new_calls++;
}

static void on_reuse(void *arg, int fd, uint32_t events)
{
    struct reuse_ctx *r = arg;
    (void)events;
    int me = fd == r->fd[0] ? 0 : 1;
    r->calls[me]++;
    if (r->acted)
        return;
    r->acted = 1;
    int other = r->fd[1 - me];
    itr_loop_unwatch(r->loop, other);
    close(other);
    assert_int_equal(pipe(r->newp), 0);
    assert_int_equal(r->newp[0], other); /* lowest free number: the one just closed */
    assert_int_equal(write(r->newp[1], "y", 1), 1);
    assert_int_equal(itr_loop_watch(r->loop, r->newp[0], ITR_EV_READ, on_new_fd, r), ITR_OK);
}

static void test_watch_fd_reuse_during_dispatch(void **state)
{
    (void)state;
    struct reuse_ctx r = {0};
    int p1[2], p2[2];
    assert_int_equal(itr_loop_new(&r.loop), ITR_OK);
    assert_int_equal(pipe(p1), 0);
    assert_int_equal(pipe(p2), 0);
    r.fd[0] = p1[0];
    r.fd[1] = p2[0];
    assert_int_equal(write(p1[1], "x", 1), 1);
    assert_int_equal(write(p2[1], "x", 1), 1);
    assert_int_equal(itr_loop_watch(r.loop, p1[0], ITR_EV_READ, on_reuse, &r), ITR_OK);
    assert_int_equal(itr_loop_watch(r.loop, p2[0], ITR_EV_READ, on_reuse, &r), ITR_OK);
    assert_int_equal(itr_loop_run_once(r.loop, 100), 1);
    assert_int_equal(r.calls[0] + r.calls[1], 1);
    assert_int_equal(r.new_calls, 0);
    /* The new registration works from the next dispatch on. */
    int survivor = r.calls[0] ? p1[0] : p2[0];
    itr_loop_unwatch(r.loop, survivor);
    assert_int_equal(itr_loop_run_once(r.loop, 100), 1);
    assert_int_equal(r.new_calls, 1);
    itr_loop_unwatch(r.loop, r.newp[0]);
    close(survivor);
    close(r.newp[0]);
    close(r.newp[1]);
    close(p1[1]);
    close(p2[1]);
    itr_loop_free(r.loop);
}

/* ---- wake and stop ---- */

struct wake_ctx {
    itr_loop *loop;
    int hook_calls;
    int hook2_calls;
};

static void on_wake(void *arg)
{
    struct wake_ctx *w = arg;
    w->hook_calls++;
}

static void on_wake2(void *arg)
{
    struct wake_ctx *w = arg;
    w->hook2_calls++;
}

static void *waker_thread(void *arg)
{
    struct wake_ctx *w = arg;
    usleep(30000);
    itr_loop_wake(w->loop);
    return NULL;
}

static void *stopper_thread(void *arg)
{
    struct wake_ctx *w = arg;
    usleep(30000);
    itr_loop_stop(w->loop);
    return NULL;
}

static void test_wake_thread(void **state)
{
    (void)state;
    struct wake_ctx w = {0};
    pthread_t th;
    assert_int_equal(itr_loop_new(&w.loop), ITR_OK);
    itr_loop_on_wake(w.loop, on_wake, &w);
    itr_loop_on_wake(w.loop, on_wake, &w); /* the same hook twice: registered once */
    itr_loop_on_wake(w.loop, on_wake2, &w);

    /* Blocked without timers or fds, the loop returns when another thread wakes it. */
    uint64_t t0 = itr_now_ns();
    assert_int_equal(pthread_create(&th, NULL, waker_thread, &w), 0);
    int ran = itr_loop_run_once(w.loop, 5000);
    assert_int_equal(pthread_join(th, NULL), 0);
    uint64_t took = itr_now_ns() - t0;
    assert_int_equal(ran, 2);
    assert_int_equal(w.hook_calls, 1);
    assert_int_equal(w.hook2_calls, 1);
    assert_true(took >= 25 * MS);
    assert_true(took < (30 + 500) * MS);

    /* Wakes coalesce: three wakes before the loop runs give one round of hooks. */
    itr_loop_wake(w.loop);
    itr_loop_wake(w.loop);
    itr_loop_wake(w.loop);
    assert_int_equal(itr_loop_run_once(w.loop, 100), 2);
    assert_int_equal(w.hook_calls, 2);
    assert_int_equal(itr_loop_run_once(w.loop, 0), 0);

    /* A wake after the drain is not lost. */
    itr_loop_wake(w.loop);
    assert_int_equal(itr_loop_run_once(w.loop, 100), 2);
    assert_int_equal(w.hook_calls, 3);
    itr_loop_free(w.loop);
}

/* Many wakes from a thread while the loop runs: every wake is followed by a hook run. */
struct hammer {
    itr_loop *loop;
    atomic_uint posted;
    unsigned seen;
    atomic_int done;
};

static void hammer_hook(void *arg)
{
    struct hammer *h = arg;
    h->seen = atomic_load(&h->posted);
    if (atomic_load(&h->done) && h->seen == 20000)
        itr_loop_stop(h->loop);
}

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    for (unsigned i = 0; i < 20000; i++) {
        atomic_fetch_add(&h->posted, 1);
        itr_loop_wake(h->loop);
    }
    atomic_store(&h->done, 1);
    itr_loop_wake(h->loop);
    return NULL;
}

static void stop_guard(void *arg, uint64_t now)
{
    (void)now;
    itr_loop_stop(arg);
}

static void test_wake_hammer(void **state)
{
    (void)state;
    struct hammer h = {0};
    pthread_t th;
    itr_timer guard;
    assert_int_equal(itr_loop_new(&h.loop), ITR_OK);
    itr_loop_on_wake(h.loop, hammer_hook, &h);
    itr_timer_init(&guard, stop_guard, h.loop);
    itr_loop_timer_set(h.loop, &guard, itr_now_ns() + 20000 * MS);
    assert_int_equal(pthread_create(&th, NULL, hammer_thread, &h), 0);
    assert_int_equal(itr_loop_run(h.loop), ITR_OK);
    assert_int_equal(pthread_join(th, NULL), 0);
    /* The guard must not have been what stopped the loop: the last wake was seen. */
    assert_true(itr_timer_armed(&guard));
    assert_int_equal(h.seen, 20000);
    itr_loop_free(h.loop);
}

/* Ping-pong: each wake waits for the hook run it caused before the next one, with varying
 * delays, so wakes land while the loop dispatches, is about to block and is blocked. Without
 * slack a lost wake would stall a round until the 2 s limit; none may. */
struct pingpong {
    itr_loop *loop;
    atomic_uint posted, seen;
    atomic_int failed;
};

static void pingpong_hook(void *arg)
{
    struct pingpong *p = arg;
    atomic_store(&p->seen, atomic_load(&p->posted));
}

static void *pingpong_thread(void *arg)
{
    struct pingpong *p = arg;
    for (unsigned i = 1; i <= 3000 && !atomic_load(&p->failed); i++) {
        atomic_store(&p->posted, i);
        if (i % 3 == 1)
            usleep(i % 50);
        itr_loop_wake(p->loop);
        uint64_t limit = itr_now_ns() + 2000 * MS;
        while (atomic_load(&p->seen) < i) {
            if (itr_now_ns() > limit) {
                atomic_store(&p->failed, (int)i);
                break;
            }
            if (i % 2)
                usleep(1);
        }
    }
    itr_loop_stop(p->loop);
    return NULL;
}

static void test_wake_pingpong(void **state)
{
    (void)state;
    struct pingpong p;
    pthread_t th;
    memset(&p, 0, sizeof(p));
    itr_timer guard; /* a loop that missed the final stop would block forever */
    assert_int_equal(itr_loop_new(&p.loop), ITR_OK);
    itr_loop_on_wake(p.loop, pingpong_hook, &p);
    itr_timer_init(&guard, stop_guard, p.loop);
    itr_loop_timer_set(p.loop, &guard, itr_now_ns() + 60000 * MS);
    assert_int_equal(pthread_create(&th, NULL, pingpong_thread, &p), 0);
    assert_int_equal(itr_loop_run(p.loop), ITR_OK);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&p.failed), 0);
    assert_int_equal(atomic_load(&p.seen), 3000);
    itr_loop_free(p.loop);
}

/* With a wake slack the loop never blocks longer than the slack, and a wake that arrives
 * while it naps is delivered when the nap ends (no system call), not at once. */
static void test_wake_slack(void **state)
{
    (void)state;
    struct wake_ctx w = {0};
    pthread_t th;
    assert_int_equal(itr_loop_new(&w.loop), ITR_OK);
    itr_loop_on_wake(w.loop, on_wake, &w);

    /* No wake: returns after the slack, not after max_wait_ms, with nothing run. */
    itr_loop_set_wake_slack(w.loop, 50);
    uint64_t t0 = itr_now_ns();
    assert_int_equal(itr_loop_run_once(w.loop, 5000), 0);
    uint64_t took = itr_now_ns() - t0;
    assert_true(took >= 45 * MS);
    assert_true(took < (50 + 10 * SLACK_MS) * MS);

    /* A wake at 30 ms into a 300 ms nap is seen when the nap ends. */
    itr_loop_set_wake_slack(w.loop, 300);
    t0 = itr_now_ns();
    assert_int_equal(pthread_create(&th, NULL, waker_thread, &w), 0);
    int ran = 0;
    while (ran == 0 && itr_now_ns() - t0 < 5000 * MS)
        ran = itr_loop_run_once(w.loop, 5000);
    assert_int_equal(pthread_join(th, NULL), 0);
    took = itr_now_ns() - t0;
    assert_int_equal(ran, 1);
    assert_int_equal(w.hook_calls, 1);
    assert_true(took >= 250 * MS);
    assert_true(took < (300 + 10 * SLACK_MS) * MS);

    /* Back to no slack: a wake ends a long block at once again. */
    itr_loop_set_wake_slack(w.loop, 0);
    t0 = itr_now_ns();
    assert_int_equal(pthread_create(&th, NULL, waker_thread, &w), 0);
    assert_int_equal(itr_loop_run_once(w.loop, 5000), 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    took = itr_now_ns() - t0;
    assert_int_equal(w.hook_calls, 2);
    assert_true(took >= 25 * MS);
    assert_true(took < (30 + 10 * SLACK_MS) * MS);
    itr_loop_free(w.loop);
}

static void test_stop(void **state)
{
    (void)state;
    struct wake_ctx w = {0};
    pthread_t th;
    assert_int_equal(itr_loop_new(&w.loop), ITR_OK);
    /* Stop from another thread ends itr_loop_run. */
    uint64_t t0 = itr_now_ns();
    assert_int_equal(pthread_create(&th, NULL, stopper_thread, &w), 0);
    assert_int_equal(itr_loop_run(w.loop), ITR_OK);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(itr_now_ns() - t0 < 5000 * MS);

    /* Stop from a timer callback on the loop's thread. */
    itr_timer t;
    itr_timer_init(&t, stop_guard, w.loop);
    itr_loop_timer_set(w.loop, &t, itr_now_ns() + 5 * MS);
    assert_int_equal(itr_loop_run(w.loop), ITR_OK);
    assert_false(itr_timer_armed(&t));

    /* A stop that comes before run makes that run return at once. */
    itr_loop_stop(w.loop);
    t0 = itr_now_ns();
    assert_int_equal(itr_loop_run(w.loop), ITR_OK);
    assert_true(itr_now_ns() - t0 < 1000 * MS);
    itr_loop_free(w.loop);
}

/* ---- precision ---- */

static void fire_flag(void *arg, uint64_t now)
{
    *(uint64_t *)arg = now;
}

static void test_run_once_precision(void **state)
{
    (void)state;
    itr_loop *loop;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);

    /* max_wait_ms with nothing to do: at least that long, not much more. */
    static const int waits[] = {0, 1, 5, 20, 50};
    for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
        uint64_t t0 = itr_now_ns();
        assert_int_equal(itr_loop_run_once(loop, waits[i]), 0);
        uint64_t took = itr_now_ns() - t0;
        assert_true(took >= (uint64_t)waits[i] * MS);
        assert_true(took < ((uint64_t)waits[i] + SLACK_MS) * MS);
    }

    /* A timer 7.3 ms ahead with an unbounded wait: it fires on the first run_once (the wait
     * rounds up, never early) and not much later than due. */
    static const uint64_t ahead[] = {300000, 1 * MS, 7300000, 25 * MS};
    for (size_t i = 0; i < sizeof(ahead) / sizeof(ahead[0]); i++) {
        uint64_t fired = 0;
        itr_timer t;
        itr_timer_init(&t, fire_flag, &fired);
        uint64_t deadline = itr_now_ns() + ahead[i];
        itr_loop_timer_set(loop, &t, deadline);
        int ran = itr_loop_run_once(loop, -1);
        assert_int_equal(ran, 1);
        assert_true(fired >= deadline);
        assert_true(fired - deadline < SLACK_MS * MS);
    }

    /* max_wait shorter than the timer: returns at max_wait without firing it. */
    {
        uint64_t fired = 0;
        itr_timer t;
        itr_timer_init(&t, fire_flag, &fired);
        uint64_t t0 = itr_now_ns();
        itr_loop_timer_set(loop, &t, t0 + 200 * MS);
        assert_int_equal(itr_loop_run_once(loop, 10), 0);
        uint64_t took = itr_now_ns() - t0;
        assert_true(took >= 10 * MS && took < (10 + SLACK_MS) * MS);
        assert_int_equal(fired, 0);
        itr_loop_timer_cancel(loop, &t);
    }

    /* A timer already due: run_once(-1) does not block. */
    {
        uint64_t fired = 0;
        itr_timer t;
        itr_timer_init(&t, fire_flag, &fired);
        uint64_t t0 = itr_now_ns();
        itr_loop_timer_set(loop, &t, t0 - 1000);
        assert_int_equal(itr_loop_run_once(loop, -1), 1);
        assert_true(itr_now_ns() - t0 < SLACK_MS * MS);
    }
    itr_loop_free(loop);
}

/* Freeing a loop with timers armed leaves them disarmed (they are caller memory). */
static void test_free_with_armed_timer(void **state)
{
    (void)state;
    itr_loop *loop;
    uint64_t fired = 0;
    itr_timer t;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    itr_timer_init(&t, fire_flag, &fired);
    itr_loop_timer_set(loop, &t, itr_now_ns() + 1000 * MS);
    itr_loop_free(loop);
    assert_false(itr_timer_armed(&t));
    itr_loop_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_order),
        cmocka_unit_test(test_timer_rearm_cancel),
        cmocka_unit_test(test_timer_cancel_from_callback),
        cmocka_unit_test(test_timer_no_livelock),
        cmocka_unit_test(test_timer_heap_many),
        cmocka_unit_test(test_watch_basic),
        cmocka_unit_test(test_watch_unwatch_during_dispatch),
        cmocka_unit_test(test_watch_fd_reuse_during_dispatch),
        cmocka_unit_test(test_wake_thread),
        cmocka_unit_test(test_wake_hammer),
        cmocka_unit_test(test_wake_pingpong),
        cmocka_unit_test(test_wake_slack),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_run_once_precision),
        cmocka_unit_test(test_free_with_armed_timer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
