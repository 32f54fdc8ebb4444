/* test_driver_faults.c: the driver's transmit path under a full socket and refused sends, and
 * "no allocation after itr_driver_new". Linked with --wrap for sendmmsg, malloc, calloc and
 * realloc, so calls from libintentra's objects pass through the wrappers below:
 *  - a real EAGAIN: the driver's socket is one end of an AF_UNIX datagram socketpair whose
 *    receive queue the test fills by not reading (the wrapper only drops the UDP address,
 *    which a connected unix socket would refuse); the loop must not spin while blocked, and
 *    must resume when the reader makes room, losing nothing;
 *  - injected hard errors: the refused datagram is consumed and counted, the rest is sent;
 *  - allocation counting over a steady stream of messages between two endpoints. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <intentra/intentra.h>

#define MS 1000000ull

/* ---- wrappers ---- */

int __real_sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags);
int __wrap_sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags);
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

static int unix_fd = -1;    /* strip destination addresses on this fd */
static int inject_fd = -1;  /* inject errors on this fd */
static int inject_errno;    /* errno to inject */
static int inject_count;    /* how many calls fail */
static atomic_int counting; /* count allocations */
static atomic_uint allocations;

int __wrap_sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags)
{
    if (fd == inject_fd && inject_count > 0) {
        inject_count--;
        errno = inject_errno;
        return -1;
    }
    if (fd == unix_fd) {
        for (unsigned i = 0; i < n; i++) {
            msgs[i].msg_hdr.msg_name = NULL;
            msgs[i].msg_hdr.msg_namelen = 0;
        }
    }
    return __real_sendmmsg(fd, msgs, n, flags);
}

void *__wrap_malloc(size_t n)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&allocations, 1);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&allocations, 1);
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&allocations, 1);
    return __real_realloc(p, n);
}

/* ---- endpoints ---- */

struct side {
    itr_endpoint *ep;
    itr_driver *drv;
    int fd;
    itr_addr addr;
    uint8_t pub[ITR_KEY_LEN];
    itr_peer_id peer;
    int open;
    uint32_t rel_next, rel_errors, rt_received, acked;
    uint32_t ackq[ITR_RELIABLE_WINDOW];
    size_t ackq_len;
};

static void s_open(void *user, const itr_peer_info *info)
{
    struct side *s = user;
    s->peer = info->id;
    s->open = 1;
}

static int s_message(void *user, const itr_message *m)
{
    struct side *s = user;
    if (m->intent == ITR_INTENT_REALTIME) {
        s->rt_received++;
        return ITR_OK;
    }
    if (m->seq != s->rel_next)
        s->rel_errors++;
    s->rel_next++;
    s->ackq[s->ackq_len++] = m->seq;
    return ITR_OK;
}

static void s_acked(void *user, itr_peer_id peer, uint32_t seq)
{
    struct side *s = user;
    (void)peer;
    (void)seq;
    s->acked++;
}

static void s_batch(void *arg, uint64_t now)
{
    struct side *s = arg;
    for (size_t i = 0; i < s->ackq_len; i++)
        (void)itr_endpoint_ack(s->ep, s->peer, s->ackq[i], now);
    s->ackq_len = 0;
}

/* fd < 0: open a UDP socket on 127.0.0.1; otherwise drive the given fd. */
static void side_open(struct side *s, itr_loop *loop, int responder, int fd, uint32_t max_peers)
{
    itr_settings set;
    uint8_t priv[ITR_KEY_LEN];
    memset(s, 0, sizeof(*s));
    assert_int_equal(itr_key_generate(priv, s->pub), ITR_OK);
    itr_settings_default(&set);
    memcpy(set.static_private, priv, ITR_KEY_LEN);
    set.accept_handshakes = responder;
    set.rate_limit_pps = 0;
    set.max_peers = max_peers;
    static const itr_callbacks cbs = {
        .peer_open = s_open,
        .message = s_message,
        .acked = s_acked,
    };
    assert_int_equal(itr_endpoint_new(&s->ep, &set, &cbs, s, itr_now_ns()), ITR_OK);
    if (fd < 0) {
        itr_addr a;
        assert_int_equal(itr_addr_parse(&a, "127.0.0.1:0", NULL, 0), ITR_OK);
        itr_udp_options o = {.rcvbuf_bytes = 4 << 20, .sndbuf_bytes = 4 << 20};
        assert_int_equal(itr_udp_open(&a, &o, &fd), ITR_OK);
        assert_int_equal(itr_udp_local_addr(fd, &s->addr), ITR_OK);
    }
    s->fd = fd;
    assert_int_equal(itr_driver_new(&s->drv, loop, s->ep, 64), ITR_OK);
    assert_int_equal(itr_driver_add_socket(s->drv, s->fd, NULL), ITR_OK);
    itr_driver_set_batch_hook(s->drv, s_batch, s);
    itr_wipe(priv, sizeof(priv));
    itr_wipe(&set, sizeof(set));
}

static void side_close(struct side *s)
{
    itr_driver_free(s->drv);
    itr_endpoint_free(s->ep);
    close(s->fd);
}

static void connect_sides(itr_loop *loop, struct side *a, struct side *b)
{
    itr_peer_id id;
    assert_int_equal(
        itr_endpoint_connect(a->ep, &b->addr, b->pub, ITR_SUITE_AESGCM, itr_now_ns(), &id), ITR_OK);
    itr_driver_kick(a->drv);
    uint64_t end = itr_now_ns() + 10000 * MS;
    while (!(a->open && b->open) && itr_now_ns() < end)
        assert_true(itr_loop_run_once(loop, 20) >= 0);
    assert_true(a->open && b->open);
}

/* ---- a socket that really is full ---- */

static int drain_fd(int fd)
{
    uint8_t buf[ITR_MAX_PACKET];
    int n = 0;
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        n++;
    return n;
}

static void test_blocked_socket_resumes_without_spinning(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side a;
    int sp[2];
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    /* A socketpair's queue is bounded by the sender's buffer: make it hold a few. */
    int small = 4096;
    assert_int_equal(setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    unix_fd = sp[0];
    side_open(&a, loop, 0, sp[0], 256);

    /* 80 handshake initiations to absent responders: 80 datagrams in the ring. */
    enum { N = 80 }; /* below the 100 handshakes an endpoint keeps in flight */
    itr_addr to;
    assert_int_equal(itr_addr_parse(&to, "127.0.0.1:9", NULL, 0), ITR_OK);
    for (int i = 0; i < N; i++) {
        uint8_t priv[ITR_KEY_LEN], pub[ITR_KEY_LEN];
        itr_peer_id id;
        assert_int_equal(itr_key_generate(priv, pub), ITR_OK);
        assert_int_equal(itr_endpoint_connect(a.ep, &to, pub, ITR_SUITE_AESGCM, itr_now_ns(), &id),
                         ITR_OK);
    }
    assert_int_equal(itr_endpoint_tx_pending(a.ep), N);
    itr_driver_kick(a.drv);
    itr_driver_stats st;
    itr_driver_stats_get(a.drv, &st);
    /* The peer's queue filled up: the rest waits in the ring. */
    assert_int_equal(st.send_blocked, 1);
    assert_true(st.send_packets > 0 && st.send_packets < N);
    assert_int_equal(itr_endpoint_tx_pending(a.ep), N - st.send_packets);

    /* Blocked: the loop sleeps instead of spinning on a writable-looking socket. */
    uint64_t t0 = itr_now_ns();
    int callbacks = 0;
    for (int i = 0; i < 5; i++)
        callbacks += itr_loop_run_once(loop, 20);
    assert_int_equal(callbacks, 0);
    assert_true(itr_now_ns() - t0 >= 95 * MS);

    /* The reader makes room, the driver resumes on EPOLLOUT; repeat until all arrived. */
    int received = 0, rounds = 0;
    uint64_t end = itr_now_ns() + 10000 * MS;
    while (received < N && itr_now_ns() < end) {
        received += drain_fd(sp[1]);
        assert_true(itr_loop_run_once(loop, 20) >= 0);
        rounds++;
    }
    received += drain_fd(sp[1]);
    itr_driver_stats_get(a.drv, &st);
    print_message("%d datagrams through a %d-deep queue: %d rounds, blocked %lu times\n", N,
                  (int)(st.send_packets / st.send_blocked), rounds, (unsigned long)st.send_blocked);
    /* Nothing was lost or sent twice: what the endpoint queued (N, plus handshake
     * retransmits if this took over 250 ms) is what the driver sent and the reader got. */
    itr_stats es;
    itr_endpoint_stats(a.ep, &es);
    assert_true(received >= N);
    assert_int_equal(received, st.send_packets);
    assert_int_equal(st.send_packets, es.packets_sent);
    assert_int_equal(st.send_errors, 0);
    assert_true(st.send_blocked > 1);
    assert_int_equal(itr_endpoint_tx_pending(a.ep), 0);
    unix_fd = -1;
    side_close(&a);
    close(sp[1]);
    itr_loop_free(loop);
}

/* ---- refused sends ---- */

static void test_hard_errors_consume_one(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side a, b;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&a, loop, 0, -1, 16);
    side_open(&b, loop, 1, -1, 16);
    connect_sides(loop, &a, &b);

    /* Two refused sendmmsg calls: EPERM (a firewall), EMSGSIZE. Each loses exactly one
     * Realtime datagram; the others go out. */
    static const int errs[] = {EPERM, EMSGSIZE};
    uint32_t lost_total = 0;
    for (size_t e = 0; e < 2; e++) {
        uint32_t before = b.rt_received;
        uint8_t body[8] = {0};
        for (int i = 0; i < 10; i++)
            assert_int_equal(itr_endpoint_send(a.ep, a.peer, ITR_INTENT_REALTIME, 0, "rt", 2, body,
                                               sizeof(body), itr_now_ns(), NULL),
                             ITR_OK);
        inject_fd = a.fd;
        inject_errno = errs[e];
        inject_count = 1;
        itr_driver_kick(a.drv);
        inject_fd = -1;
        assert_int_equal(itr_endpoint_tx_pending(a.ep), 0);
        uint64_t end = itr_now_ns() + 2000 * MS;
        while (b.rt_received < before + 9 && itr_now_ns() < end)
            assert_true(itr_loop_run_once(loop, 10) >= 0);
        assert_int_equal(b.rt_received, before + 9);
        lost_total++;
    }
    itr_driver_stats st;
    itr_driver_stats_get(a.drv, &st);
    assert_int_equal(st.send_errors, lost_total);
    assert_int_equal(st.send_blocked, 0);

    /* An injected EAGAIN on a socket that is in fact writable: one retry round, no loss. */
    uint32_t before = b.rel_next;
    uint8_t body[8] = {0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(itr_endpoint_send(a.ep, a.peer, ITR_INTENT_RELIABLE, 0, "rel", 3, body,
                                           sizeof(body), itr_now_ns(), NULL),
                         ITR_OK);
    inject_fd = a.fd;
    inject_errno = EAGAIN;
    inject_count = 1;
    itr_driver_kick(a.drv);
    inject_fd = -1;
    assert_int_equal(itr_endpoint_tx_pending(a.ep), 5);
    uint64_t end = itr_now_ns() + 2000 * MS;
    while (b.rel_next < before + 5 && itr_now_ns() < end)
        assert_true(itr_loop_run_once(loop, 10) >= 0);
    assert_int_equal(b.rel_next, before + 5);
    itr_driver_stats_get(a.drv, &st);
    assert_int_equal(st.send_blocked, 1);
    assert_int_equal(st.send_errors, lost_total);
    assert_int_equal(b.rel_errors, 0);
    side_close(&a);
    side_close(&b);
    itr_loop_free(loop);
}

/* ---- no allocation in steady state ---- */

static void test_no_allocation_after_setup(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side a, b;
    /* The wrappers do see libintentra's allocations: set-up allocates. */
    atomic_store(&allocations, 0);
    atomic_store(&counting, 1);
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&a, loop, 0, -1, 16);
    atomic_store(&counting, 0);
    assert_true(atomic_load(&allocations) >= 3);
    side_open(&b, loop, 1, -1, 16);
    connect_sides(loop, &a, &b);

    enum { N = 20000 };
    uint8_t body[64];
    memset(body, 0x5A, sizeof(body));
    atomic_store(&allocations, 0);
    atomic_store(&counting, 1);
    uint32_t rel = 0, rt = 0;
    uint64_t end = itr_now_ns() + 60000 * MS;
    while ((b.rel_next < N || a.acked < N) && itr_now_ns() < end) {
        while (rel < N && itr_endpoint_send(a.ep, a.peer, ITR_INTENT_RELIABLE, 0, "rel", 3, body,
                                            sizeof(body), itr_now_ns(), NULL) == ITR_OK)
            rel++;
        for (int i = 0; i < 64 && rt < N; i++, rt++)
            if (itr_endpoint_send(a.ep, a.peer, ITR_INTENT_REALTIME, 0, "rt", 2, body, sizeof(body),
                                  itr_now_ns(), NULL) != ITR_OK)
                break;
        itr_driver_kick(a.drv);
        if (itr_loop_run_once(loop, 5) < 0)
            break;
    }
    atomic_store(&counting, 0);
    unsigned allocs = atomic_load(&allocations);
    print_message("%u Reliable + %u Realtime messages sent (%u Realtime received), %u "
                  "allocations\n",
                  b.rel_next, rt, b.rt_received, allocs);
    assert_int_equal(b.rel_next, N);
    assert_int_equal(a.acked, N);
    assert_int_equal(b.rel_errors, 0);
    assert_int_equal(allocs, 0);
    side_close(&a);
    side_close(&b);
    itr_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocked_socket_resumes_without_spinning),
        cmocka_unit_test(test_hard_errors_consume_one),
        cmocka_unit_test(test_no_allocation_after_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
