/* itr_loop.c: the epoll event loop: fd watches, caller-owned timers in a binary heap, and a
 * thread-safe wake-up (eventfd) with on_wake hooks.
 *
 * Callbacks may watch, unwatch, arm or cancel anything (themselves included) while the loop
 * dispatches. Two mechanisms make that safe:
 *  - every watch registration carries a generation, stored next to the fd in the epoll event;
 *    an event whose generation no longer matches the fd's current registration (unwatched, or
 *    unwatched and watched again, during this dispatch) is skipped, so a callback is never
 *    called for a watch that is gone;
 *  - one dispatch runs at most as many timers as were armed when it started, so a timer that
 *    re-arms itself in the past cannot keep the loop from returning.
 *
 * Wake-ups: a waker writes the eventfd only when the loop is blocked for longer than its wake
 * slack (see itr_loop_set_wake_slack); a loop that is running callbacks, or napping for at most
 * its slack, finds the pending flag itself (checked before every block and after every
 * return), so it costs no system call and no context switch. The flag and the loop's state are
 * a Dekker pair (both sides store, then load, sequentially consistent): a waker that skips
 * the write is certain the loop sees the flag before it blocks, or within its slack.
 *
 * Memory: the watch table (indexed by fd), the timer heap and the hook list grow when a new fd,
 * timer or hook is first registered, never while dispatching steady-state traffic. The timer
 * API returns void (it is called on paths that cannot fail), so a failed heap growth aborts
 * with a message, as libev does: the alternative is a timer that silently never fires.
 */
#define _GNU_SOURCE /* eventfd, epoll */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <intentra/driver.h>

#define LOOP_MAX_EVENTS 64
#define TIMER_UNARMED   ((size_t)-1)
/* epoll data of the wake eventfd: generation 0 is never given to a watch. */
#define WAKE_TOKEN ((uint64_t)0)

/* What a waker needs to know about the loop thread (loop->state). */
enum {
    LOOP_RUNNING = 0, /* dispatching (or not in itr_loop_run_once): checks the flag itself */
    LOOP_NAPPING = 1, /* blocked for at most its wake slack: finds the flag when it returns */
    LOOP_SLEEPING = 2 /* blocked for longer: only the eventfd wakes it in time */
};

typedef struct loop_watch {
    itr_fd_cb cb;
    void *arg;
    uint32_t events; /* ITR_EV_READ|ITR_EV_WRITE requested; 0: registered but disabled */
    uint32_t gen;    /* registration generation; 0: fd not watched */
    int in_epoll;    /* registered with the kernel (a disabled watch is not: see watch) */
} loop_watch;

typedef struct loop_hook {
    void (*cb)(void *arg);
    void *arg;
} loop_hook;

struct itr_loop {
    int epfd;
    int wakefd;
    loop_watch *watches; /* indexed by fd */
    size_t watch_cap;
    uint32_t next_gen;
    itr_timer **heap; /* min-heap on deadline; heap[i]->heap_index == i */
    size_t heap_len, heap_cap;
    loop_hook *hooks;
    size_t hook_len, hook_cap;
    /* Written by any thread. */
    atomic_int stop;
    atomic_int wake_pending; /* 1 while a wake is not yet seen by the loop: wakes coalesce */
    atomic_int state;        /* LOOP_*, written by the loop thread */
    int wake_slack_ms;       /* loop thread only */
};

static void oom(const char *what)
{
    fprintf(stderr, "intentra: itr_loop: out of memory growing the %s\n", what);
    abort();
}

/* ---- timers: binary min-heap ---- */

static void heap_place(itr_loop *loop, size_t i, itr_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(itr_loop *loop, size_t i)
{
    itr_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->deadline <= t->deadline)
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void heap_down(itr_loop *loop, size_t i)
{
    itr_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len &&
            loop->heap[child + 1]->deadline < loop->heap[child]->deadline)
            child++;
        if (t->deadline <= loop->heap[child]->deadline)
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

static void heap_remove(itr_loop *loop, itr_timer *t)
{
    size_t i = t->heap_index;
    itr_timer *last = loop->heap[--loop->heap_len];
    t->heap_index = TIMER_UNARMED;
    if (last == t)
        return;
    heap_place(loop, i, last);
    if (i > 0 && loop->heap[(i - 1) / 2]->deadline > last->deadline)
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

void itr_timer_init(itr_timer *t, void (*cb)(void *arg, uint64_t now), void *arg)
{
    t->deadline = 0;
    t->cb = cb;
    t->arg = arg;
    t->heap_index = TIMER_UNARMED;
}

int itr_timer_armed(const itr_timer *t)
{
    return t->heap_index != TIMER_UNARMED;
}

void itr_loop_timer_set(itr_loop *loop, itr_timer *t, uint64_t deadline)
{
    if (t->heap_index != TIMER_UNARMED) {
        uint64_t old = t->deadline;
        t->deadline = deadline;
        if (deadline < old)
            heap_up(loop, t->heap_index);
        else if (deadline > old)
            heap_down(loop, t->heap_index);
        return;
    }
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        itr_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (!heap)
            oom("timer heap");
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    t->deadline = deadline;
    heap_place(loop, loop->heap_len++, t);
    heap_up(loop, t->heap_index);
}

void itr_loop_timer_cancel(itr_loop *loop, itr_timer *t)
{
    if (t->heap_index != TIMER_UNARMED)
        heap_remove(loop, t);
}

/* ---- construction ---- */

int itr_loop_new(itr_loop **out)
{
    int err = ITR_ERR_NOMEM;
    itr_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        goto out;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        err = ITR_ERR_IO;
        goto err_free;
    }
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakefd < 0) {
        err = ITR_ERR_IO;
        goto err_epoll;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TOKEN};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) != 0) {
        err = ITR_ERR_IO;
        goto err_wake;
    }
    loop->next_gen = 1;
    atomic_init(&loop->stop, 0);
    atomic_init(&loop->wake_pending, 0);
    atomic_init(&loop->state, LOOP_RUNNING);
    *out = loop;
    return ITR_OK;

err_wake:
    close(loop->wakefd);
err_epoll:
    close(loop->epfd);
err_free:
    free(loop);
out:
    return err;
}

void itr_loop_free(itr_loop *loop)
{
    if (!loop)
        return;
    /* Timers are caller-owned and may outlive the loop: leave them disarmed, not dangling. */
    for (size_t i = 0; i < loop->heap_len; i++)
        loop->heap[i]->heap_index = TIMER_UNARMED;
    close(loop->wakefd);
    close(loop->epfd);
    free(loop->heap);
    free(loop->watches);
    free(loop->hooks);
    free(loop);
}

/* ---- fd watches ---- */

static uint32_t to_epoll(uint32_t events)
{
    uint32_t e = 0;
    if (events & ITR_EV_READ)
        e |= EPOLLIN;
    if (events & ITR_EV_WRITE)
        e |= EPOLLOUT;
    return e;
}

static uint32_t from_epoll(uint32_t e)
{
    uint32_t events = 0;
    if (e & (EPOLLIN | EPOLLPRI))
        events |= ITR_EV_READ;
    if (e & EPOLLOUT)
        events |= ITR_EV_WRITE;
    if (e & (EPOLLERR | EPOLLHUP))
        events |= ITR_EV_ERROR;
    return events;
}

static int watch_table_fit(itr_loop *loop, int fd)
{
    if ((size_t)fd < loop->watch_cap)
        return ITR_OK;
    size_t cap = loop->watch_cap ? loop->watch_cap : 64;
    while (cap <= (size_t)fd)
        cap *= 2;
    loop_watch *w = realloc(loop->watches, cap * sizeof(*w));
    if (!w)
        return ITR_ERR_NOMEM;
    memset(w + loop->watch_cap, 0, (cap - loop->watch_cap) * sizeof(*w));
    loop->watches = w;
    loop->watch_cap = cap;
    return ITR_OK;
}

static uint32_t new_gen(itr_loop *loop)
{
    uint32_t g = loop->next_gen++;
    if (loop->next_gen == 0) /* 0 means "not watched" and marks the wake eventfd */
        loop->next_gen = 1;
    return g;
}

int itr_loop_watch(itr_loop *loop, int fd, uint32_t events, itr_fd_cb cb, void *arg)
{
    if (fd < 0 || !cb) {
        errno = EBADF;
        return ITR_ERR_IO;
    }
    int err = watch_table_fit(loop, fd);
    if (err != ITR_OK)
        return err;
    loop_watch *w = &loop->watches[fd];
    int fresh = w->gen == 0;
    if (fresh)
        w->gen = new_gen(loop);
    w->cb = cb;
    w->arg = arg;
    events &= ITR_EV_READ | ITR_EV_WRITE;
    if (events == 0) {
        /* Disabled watches leave the epoll set: epoll reports EPOLLERR/EPOLLHUP even for an
         * empty event mask, and a hung-up fd would then wake the loop forever. */
        if (w->in_epoll)
            (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
        w->in_epoll = 0;
        w->events = 0;
        return ITR_OK;
    }
    struct epoll_event ev = {
        .events = to_epoll(events),
        .data.u64 = ((uint64_t)w->gen << 32) | (uint32_t)fd,
    };
    int rc;
    if (w->in_epoll) {
        rc = epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
        /* The fd was closed (epoll forgot it) and its number reused: register anew. */
        if (rc != 0 && errno == ENOENT)
            rc = epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
    } else {
        rc = epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
        if (rc != 0 && errno == EEXIST)
            rc = epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    if (rc != 0) {
        if (fresh)
            memset(w, 0, sizeof(*w));
        return ITR_ERR_IO;
    }
    w->in_epoll = 1;
    w->events = events;
    return ITR_OK;
}

void itr_loop_unwatch(itr_loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->watch_cap || loop->watches[fd].gen == 0)
        return;
    if (loop->watches[fd].in_epoll)
        (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    memset(&loop->watches[fd], 0, sizeof(loop->watches[fd]));
}

/* ---- wake-ups ---- */

void itr_loop_wake(itr_loop *loop)
{
    /* Only the first wake since the loop last ran its hooks can need a system call, and only
     * when the loop sleeps longer than its slack (see the top of this file). */
    if (atomic_exchange(&loop->wake_pending, 1) == 0 &&
        atomic_load(&loop->state) == LOOP_SLEEPING) {
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(loop->wakefd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
        /* EAGAIN means the counter is saturated: the loop is certain to wake anyway. */
    }
}

void itr_loop_stop(itr_loop *loop)
{
    atomic_store_explicit(&loop->stop, 1, memory_order_release);
    itr_loop_wake(loop);
}

void itr_loop_on_wake(itr_loop *loop, void (*cb)(void *arg), void *arg)
{
    for (size_t i = 0; i < loop->hook_len; i++)
        if (loop->hooks[i].cb == cb && loop->hooks[i].arg == arg)
            return;
    if (loop->hook_len == loop->hook_cap) {
        size_t cap = loop->hook_cap ? loop->hook_cap * 2 : 4;
        loop_hook *h = realloc(loop->hooks, cap * sizeof(*h));
        if (!h)
            oom("wake hook list");
        loop->hooks = h;
        loop->hook_cap = cap;
    }
    loop->hooks[loop->hook_len].cb = cb;
    loop->hooks[loop->hook_len].arg = arg;
    loop->hook_len++;
}

void itr_loop_set_wake_slack(itr_loop *loop, int max_ms)
{
    loop->wake_slack_ms = max_ms > 0 ? max_ms : 0;
}

static int run_wake_hooks(itr_loop *loop, int signalled)
{
    if (signalled) {
        uint64_t count;
        ssize_t n;
        do
            n = read(loop->wakefd, &count, sizeof(count));
        while (n < 0 && errno == EINTR);
    }
    /* Cleared after the read: a wake that lands between the two finds the flag still set and
     * skips its write, which is fine because the hooks below run after it and see its data.
     * The exchange (not a store) synchronizes with that waker's exchange. A wake whose write
     * is still on its way when the flag was seen here leaves the eventfd readable: the next
     * wait returns at once and runs the hooks once more, harmlessly. */
    (void)atomic_exchange_explicit(&loop->wake_pending, 0, memory_order_acq_rel);
    int ran = 0;
    /* A hook may register another one (the list may move): index, don't hold a pointer. */
    for (size_t i = 0; i < loop->hook_len; i++) {
        loop->hooks[i].cb(loop->hooks[i].arg);
        ran++;
    }
    return ran;
}

/* ---- dispatch ---- */

static int wait_ms(const itr_loop *loop, int max_wait_ms)
{
    if (loop->heap_len == 0)
        return max_wait_ms < 0 ? -1 : max_wait_ms;
    uint64_t now = itr_now_ns();
    uint64_t deadline = loop->heap[0]->deadline;
    if (deadline <= now)
        return 0;
    /* Round up: waking a little late is harmless, waking early would spin until due. */
    uint64_t ms = (deadline - now + 999999u) / 1000000u;
    if (ms > INT_MAX)
        ms = INT_MAX;
    if (max_wait_ms >= 0 && (uint64_t)max_wait_ms < ms)
        return max_wait_ms;
    return (int)ms;
}

int itr_loop_run_once(itr_loop *loop, int max_wait_ms)
{
    struct epoll_event evs[LOOP_MAX_EVENTS];
    int ran = 0, woke = 0;
    int timeout = wait_ms(loop, max_wait_ms);
    int slack = loop->wake_slack_ms;
    if (slack > 0 && (timeout < 0 || timeout > slack))
        timeout = slack;
    if (timeout != 0) {
        /* Publish how long we may block, then look for a wake that came before: the waker
         * does the reverse (see the top of this file). */
        atomic_store(&loop->state, slack > 0 ? LOOP_NAPPING : LOOP_SLEEPING);
        if (atomic_load(&loop->wake_pending))
            timeout = 0;
    }
    int n = epoll_wait(loop->epfd, evs, LOOP_MAX_EVENTS, timeout);
    atomic_store(&loop->state, LOOP_RUNNING);
    if (n < 0) {
        if (errno != EINTR)
            return ITR_ERR_IO;
        n = 0;
    }
    for (int i = 0; i < n; i++) {
        uint64_t token = evs[i].data.u64;
        if (token == WAKE_TOKEN) {
            woke = 1;
            continue;
        }
        int fd = (int)(uint32_t)token;
        uint32_t gen = (uint32_t)(token >> 32);
        if ((size_t)fd >= loop->watch_cap)
            continue;
        /* Re-read the slot for every event: an earlier callback may have grown the table,
         * unwatched this fd or changed its events. */
        const loop_watch *w = &loop->watches[fd];
        if (w->gen != gen || !w->in_epoll)
            continue;
        uint32_t report = from_epoll(evs[i].events) & (w->events | ITR_EV_ERROR);
        if (report == 0)
            continue;
        w->cb(w->arg, fd, report);
        ran++;
    }
    /* A wake that skipped the eventfd write is seen here. */
    if (woke || atomic_load_explicit(&loop->wake_pending, memory_order_acquire))
        ran += run_wake_hooks(loop, woke);
    if (loop->heap_len > 0) {
        uint64_t now = itr_now_ns();
        size_t budget = loop->heap_len;
        while (budget-- > 0 && loop->heap_len > 0 && loop->heap[0]->deadline <= now) {
            itr_timer *t = loop->heap[0];
            heap_remove(loop, t);
            t->cb(t->arg, now);
            ran++;
        }
    }
    return ran;
}

int itr_loop_run(itr_loop *loop)
{
    int rc = ITR_OK;
    while (!atomic_load_explicit(&loop->stop, memory_order_acquire)) {
        if (itr_loop_run_once(loop, -1) < 0) {
            rc = ITR_ERR_IO;
            break;
        }
    }
    /* A stop is consumed by the run it ends (or by the next run, if it came first). */
    atomic_store_explicit(&loop->stop, 0, memory_order_relaxed);
    return rc;
}
