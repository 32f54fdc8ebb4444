/* test_driver_loopback.c: two endpoints, each with an itr_driver, over real UDP sockets on
 * 127.0.0.1, through a lossy shim (a third socket on the same loop relaying both ways with 5%
 * loss, 2% reorder, 2% duplication from a seeded PRNG): 100,000 Reliable messages arrive
 * complete, in order, exactly once, and 100,000 Realtime messages are never duplicated.
 * Also: the SO_RXQ_OVFL kernel drop counter, hard send errors, pause/resume. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <intentra/intentra.h>

#define MS         1000000ull
#define N_MSGS     100000u
#define TEST_LIMIT (120000 * MS) /* fail, don't hang */

/* ---- one endpoint + driver + socket ---- */

struct side {
    const char *name;
    itr_endpoint *ep;
    itr_driver *drv;
    int fd;
    itr_addr addr;
    uint8_t pub[ITR_KEY_LEN];
    itr_peer_id peer;
    int open;
    int closed;
    /* Receiver state. */
    uint32_t rel_next; /* next Reliable index expected */
    uint32_t rel_errors;
    uint32_t ackq[ITR_RELIABLE_WINDOW];
    size_t ackq_len;
    uint8_t *rt_seen; /* N_MSGS flags */
    uint32_t rt_received, rt_dups, rt_bad;
    /* Sender state. */
    uint32_t acked;
};

static void s_open(void *user, const itr_peer_info *info)
{
    struct side *s = user;
    s->peer = info->id;
    s->open = 1;
}

static void s_close(void *user, itr_peer_id peer, itr_close_reason why)
{
    struct side *s = user;
    (void)why;
    if (peer == s->peer) {
        s->open = 0;
        s->closed = 1;
    }
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int s_message(void *user, const itr_message *m)
{
    struct side *s = user;
    if (m->body_len != 16) {
        s->rel_errors++;
        return ITR_OK;
    }
    uint32_t idx = get_u32(m->body);
    if (m->intent == ITR_INTENT_RELIABLE) {
        /* In order, exactly once: the index is the stream sequence. */
        if (idx != s->rel_next || m->seq != idx || m->topic_len != 5 ||
            memcmp(m->topic, "t.rel", 5) != 0)
            s->rel_errors++;
        s->rel_next++;
        if (s->ackq_len == ITR_RELIABLE_WINDOW) {
            s->rel_errors++; /* more than a window unacknowledged: cannot happen */
            return ITR_ERR_WOULDBLOCK;
        }
        s->ackq[s->ackq_len++] = m->seq;
        return ITR_OK;
    }
    if (idx >= N_MSGS || !s->rt_seen) {
        s->rt_bad++;
        return ITR_OK;
    }
    if (s->rt_seen[idx])
        s->rt_dups++;
    s->rt_seen[idx] = 1;
    s->rt_received++;
    return ITR_OK;
}

static void s_acked(void *user, itr_peer_id peer, uint32_t seq)
{
    struct side *s = user;
    (void)peer;
    (void)seq;
    s->acked++;
}

/* The application acknowledges what it took at the end of each receive batch. */
static void s_batch(void *arg, uint64_t now)
{
    struct side *s = arg;
    for (size_t i = 0; i < s->ackq_len; i++)
        assert_int_equal(itr_endpoint_ack(s->ep, s->peer, s->ackq[i], now), ITR_OK);
    s->ackq_len = 0;
}

static void side_open(struct side *s, const char *name, itr_loop *loop, int responder)
{
    itr_settings set;
    uint8_t priv[ITR_KEY_LEN];
    memset(s, 0, sizeof(*s));
    s->name = name;
    assert_int_equal(itr_key_generate(priv, s->pub), ITR_OK);
    itr_settings_default(&set);
    memcpy(set.static_private, priv, ITR_KEY_LEN);
    set.accept_handshakes = responder;
    set.rate_limit_pps = 0; /* the test pushes far more than 10,000 pps through one peer */
    set.max_peers = 16;
    static const itr_callbacks cbs = {
        .peer_open = s_open,
        .peer_close = s_close,
        .message = s_message,
        .acked = s_acked,
    };
    assert_int_equal(itr_endpoint_new(&s->ep, &set, &cbs, s, itr_now_ns()), ITR_OK);
    itr_addr a;
    assert_int_equal(itr_addr_parse(&a, "127.0.0.1:0", NULL, 0), ITR_OK);
    itr_udp_options o = {.rcvbuf_bytes = 4 << 20, .sndbuf_bytes = 4 << 20};
    assert_int_equal(itr_udp_open(&a, &o, &s->fd), ITR_OK);
    assert_int_equal(itr_udp_local_addr(s->fd, &s->addr), ITR_OK);
    assert_int_equal(itr_driver_new(&s->drv, loop, s->ep, 64), ITR_OK);
    uint32_t local = 99;
    assert_int_equal(itr_driver_add_socket(s->drv, s->fd, &local), ITR_OK);
    assert_int_equal(local, 0);
    itr_driver_set_batch_hook(s->drv, s_batch, s);
    itr_wipe(priv, sizeof(priv));
    itr_wipe(&set, sizeof(set));
}

static void side_close(struct side *s)
{
    itr_driver_free(s->drv);
    itr_endpoint_free(s->ep);
    close(s->fd);
    free(s->rt_seen);
}

/* ---- the lossy shim ---- */

#define HELD_MAX 64

struct held {
    uint8_t buf[ITR_MAX_PACKET];
    size_t len;
    int to_b;
    int countdown; /* released after this many later datagrams */
};

struct shim {
    itr_loop *loop;
    int fd;
    itr_addr addr, a, b;
    uint64_t rng;
    struct held held[HELD_MAX];
    int nheld;
    itr_timer release;
    uint64_t seen, forwarded, lost, reordered, duplicated, send_fail;
};

static uint32_t rnd(struct shim *sh)
{
    /* xorshift64*: deterministic from the seed. */
    sh->rng ^= sh->rng >> 12;
    sh->rng ^= sh->rng << 25;
    sh->rng ^= sh->rng >> 27;
    return (uint32_t)((sh->rng * 2685821657736338717ull) >> 32);
}

static void shim_send(struct shim *sh, const uint8_t *p, size_t len, int to_b)
{
    const itr_addr *to = to_b ? &sh->b : &sh->a;
    if (sendto(sh->fd, p, len, MSG_DONTWAIT, &to->u.sa, itr_addr_len(to)) == (ssize_t)len)
        sh->forwarded++;
    else
        sh->send_fail++; /* a full loopback queue is just more loss */
}

static void shim_release_all(void *arg, uint64_t now)
{
    struct shim *sh = arg;
    (void)now;
    for (int i = 0; i < sh->nheld; i++)
        shim_send(sh, sh->held[i].buf, sh->held[i].len, sh->held[i].to_b);
    sh->nheld = 0;
}

static void shim_tick_held(struct shim *sh)
{
    int j = 0;
    for (int i = 0; i < sh->nheld; i++) {
        if (--sh->held[i].countdown <= 0)
            shim_send(sh, sh->held[i].buf, sh->held[i].len, sh->held[i].to_b);
        else
            sh->held[j++] = sh->held[i];
    }
    sh->nheld = j;
}

static void shim_on_read(void *arg, int fd, uint32_t events)
{
    struct shim *sh = arg;
    uint8_t buf[ITR_MAX_PACKET];
    (void)events;
    for (int k = 0; k < 512; k++) {
        itr_addr from;
        socklen_t alen = (socklen_t)sizeof(from.u);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, &from.u.sa, &alen);
        if (n < 0)
            break;
        sh->seen++;
        int to_b;
        if (itr_addr_equal(&from, &sh->a))
            to_b = 1;
        else if (itr_addr_equal(&from, &sh->b))
            to_b = 0;
        else
            continue;
        uint32_t r = rnd(sh) % 100;
        if (r < 5) {
            sh->lost++;
        } else if (r < 7 && sh->nheld < HELD_MAX) {
            struct held *h = &sh->held[sh->nheld++];
            memcpy(h->buf, buf, (size_t)n);
            h->len = (size_t)n;
            h->to_b = to_b;
            h->countdown = 1 + (int)(rnd(sh) % 4);
            sh->reordered++;
            continue; /* not forwarded yet: later datagrams overtake it */
        } else if (r < 9) {
            shim_send(sh, buf, (size_t)n, to_b);
            shim_send(sh, buf, (size_t)n, to_b);
            sh->duplicated++;
        } else {
            shim_send(sh, buf, (size_t)n, to_b);
        }
        shim_tick_held(sh);
    }
    /* Whatever is still held goes out within 2 ms even if traffic stops. */
    if (sh->nheld > 0 && !itr_timer_armed(&sh->release))
        itr_loop_timer_set(sh->loop, &sh->release, itr_now_ns() + 2 * MS);
}

static void shim_open(struct shim *sh, itr_loop *loop, const struct side *a, const struct side *b,
                      uint64_t seed)
{
    memset(sh, 0, sizeof(*sh));
    sh->loop = loop;
    sh->rng = seed;
    sh->a = a->addr;
    sh->b = b->addr;
    itr_addr any;
    assert_int_equal(itr_addr_parse(&any, "127.0.0.1:0", NULL, 0), ITR_OK);
    itr_udp_options o = {.rcvbuf_bytes = 4 << 20, .sndbuf_bytes = 4 << 20};
    assert_int_equal(itr_udp_open(&any, &o, &sh->fd), ITR_OK);
    assert_int_equal(itr_udp_local_addr(sh->fd, &sh->addr), ITR_OK);
    itr_timer_init(&sh->release, shim_release_all, sh);
    assert_int_equal(itr_loop_watch(loop, sh->fd, ITR_EV_READ, shim_on_read, sh), ITR_OK);
}

static void shim_close(struct shim *sh)
{
    itr_loop_timer_cancel(sh->loop, &sh->release);
    itr_loop_unwatch(sh->loop, sh->fd);
    close(sh->fd);
}

/* ---- the big run ---- */

static void handshake(itr_loop *loop, struct side *a, struct side *b, const itr_addr *to)
{
    itr_peer_id id;
    assert_int_equal(itr_endpoint_connect(a->ep, to, b->pub, ITR_SUITE_AESGCM, itr_now_ns(), &id),
                     ITR_OK);
    itr_driver_kick(a->drv);
    uint64_t end = itr_now_ns() + 20000 * MS;
    while (!(a->open && b->open) && itr_now_ns() < end)
        assert_true(itr_loop_run_once(loop, 50) >= 0);
    assert_true(a->open);
    assert_true(b->open);
    assert_int_equal(a->peer, id);
}

static int send_one(struct side *a, itr_intent intent, uint32_t idx)
{
    uint8_t body[16];
    memset(body, 0, sizeof(body));
    put_u32(body, idx);
    put_u32(body + 4, ~idx);
    const char *topic = intent == ITR_INTENT_RELIABLE ? "t.rel" : "t.rtm";
    return itr_endpoint_send(a->ep, a->peer, intent, 3, topic, 5, body, sizeof(body), itr_now_ns(),
                             NULL);
}

static void test_lossy_100k(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side a, b;
    struct shim sh;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&a, "a", loop, 0);
    side_open(&b, "b", loop, 1);
    b.rt_seen = calloc(N_MSGS, 1);
    assert_non_null(b.rt_seen);
    shim_open(&sh, loop, &a, &b, 0x1234567887654321ull);
    handshake(loop, &a, &b, &sh.addr);

    uint32_t rel_sent = 0, rt_sent = 0;
    uint64_t t0 = itr_now_ns(), end = t0 + TEST_LIMIT;
    int iters = 0;
    while (itr_now_ns() < end) {
        /* Reliable until the window (or ring) is full, then as many Realtime: both streams
         * share the link at about the same rate. */
        uint32_t burst = 0;
        int rc = ITR_OK;
        while (rel_sent < N_MSGS && (rc = send_one(&a, ITR_INTENT_RELIABLE, rel_sent)) == ITR_OK) {
            rel_sent++;
            burst++;
        }
        assert_true(rc == ITR_OK || rc == ITR_ERR_WOULDBLOCK);
        uint32_t rt_quota = rel_sent < N_MSGS ? burst : 256;
        while (rt_quota-- > 0 && rt_sent < N_MSGS &&
               (rc = send_one(&a, ITR_INTENT_REALTIME, rt_sent)) == ITR_OK)
            rt_sent++;
        assert_true(rc == ITR_OK || rc == ITR_ERR_WOULDBLOCK);
        itr_driver_kick(a.drv);
        if (b.rel_next == N_MSGS && a.acked == N_MSGS && rt_sent == N_MSGS)
            break;
        assert_true(itr_loop_run_once(loop, 5) >= 0);
        iters++;
    }
    uint64_t took = itr_now_ns() - t0;
    /* Let the last Realtime datagrams and held packets arrive. */
    uint64_t settle = itr_now_ns() + 50 * MS;
    while (itr_now_ns() < settle)
        assert_true(itr_loop_run_once(loop, 5) >= 0);

    itr_driver_stats da, db;
    itr_stats ea, eb;
    itr_driver_stats_get(a.drv, &da);
    itr_driver_stats_get(b.drv, &db);
    itr_endpoint_stats(a.ep, &ea);
    itr_endpoint_stats(b.ep, &eb);
    print_message("lossy 100k: %.2f s, %d loop iterations; shim seen %lu, lost %lu, reordered %lu, "
                  "duplicated %lu\n",
                  (double)took / 1e9, iters, (unsigned long)sh.seen, (unsigned long)sh.lost,
                  (unsigned long)sh.reordered, (unsigned long)sh.duplicated);
    print_message("a: sent %lu pkts in %lu batches, recv %lu in %lu batches, retransmits %lu, "
                  "kernel drops %lu, send errors %lu, blocked %lu\n",
                  (unsigned long)da.send_packets, (unsigned long)da.send_batches,
                  (unsigned long)da.recv_packets, (unsigned long)da.recv_batches,
                  (unsigned long)ea.retransmits, (unsigned long)da.kernel_drops,
                  (unsigned long)da.send_errors, (unsigned long)da.send_blocked);
    print_message("b: Realtime received %u of %u (%.1f%%), duplicates %u; kernel drops %lu\n",
                  b.rt_received, N_MSGS, 100.0 * b.rt_received / N_MSGS, b.rt_dups,
                  (unsigned long)db.kernel_drops);

    /* Reliable: complete, in order, exactly once, all acknowledged end to end. */
    assert_int_equal(rel_sent, N_MSGS);
    assert_int_equal(b.rel_next, N_MSGS);
    assert_int_equal(b.rel_errors, 0);
    assert_int_equal(a.acked, N_MSGS);
    /* Realtime: never duplicated, never corrupted; lossy but most arrive. */
    assert_int_equal(rt_sent, N_MSGS);
    assert_int_equal(b.rt_dups, 0);
    assert_int_equal(b.rt_bad, 0);
    assert_true(b.rt_received > N_MSGS / 2);
    assert_true(b.rt_received <= N_MSGS);
    /* The shim really was lossy, and the duplicates it made were caught by the endpoint. */
    assert_true(sh.lost > 0 && sh.reordered > 0 && sh.duplicated > 0);
    assert_true(eb.dropped[ITR_DROP_REPLAY] + eb.dropped[ITR_DROP_DUPLICATE] > 0);
    assert_true(ea.retransmits > 0);
    /* The drivers batched: fewer syscalls than datagrams. */
    assert_true(da.send_batches < da.send_packets);
    assert_true(db.recv_batches < db.recv_packets);
    assert_int_equal(da.send_errors, 0);
    assert_int_equal(db.send_errors, 0);
    /* Every datagram the endpoints queued was sent. */
    assert_int_equal(da.send_packets, ea.packets_sent);
    assert_int_equal(db.send_packets, eb.packets_sent);
    assert_int_equal(db.recv_packets, eb.packets_received);
    assert_true(a.open && b.open);

    shim_close(&sh);
    side_close(&a);
    side_close(&b);
    itr_loop_free(loop);
}

/* ---- kernel drops ---- */

static void test_kernel_drops(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side b;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&b, "b", loop, 1);
    /* Shrink the receive buffer so that a burst overflows it (the kernel's minimum is
     * about 2 KiB, doubled). */
    int small = 1;
    assert_int_equal(setsockopt(b.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);

    int cli = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(cli >= 0);
    uint8_t junk[200];
    memset(junk, 0x11, sizeof(junk)); /* version 1, type 1: dropped by the endpoint */
    enum { BURST = 1000 };
    for (int i = 0; i < BURST; i++)
        assert_int_equal(sendto(cli, junk, sizeof(junk), 0, &b.addr.u.sa, itr_addr_len(&b.addr)),
                         sizeof(junk));
    /* Read what fit. */
    for (int i = 0; i < 20; i++)
        assert_true(itr_loop_run_once(loop, 10) >= 0);
    /* The count rides on the next datagram queued after the drops. */
    assert_int_equal(sendto(cli, junk, sizeof(junk), 0, &b.addr.u.sa, itr_addr_len(&b.addr)),
                     sizeof(junk));
    itr_driver_stats st;
    uint64_t end = itr_now_ns() + 2000 * MS;
    do {
        assert_true(itr_loop_run_once(loop, 10) >= 0);
        itr_driver_stats_get(b.drv, &st);
    } while (st.recv_packets + st.kernel_drops < BURST + 1 && itr_now_ns() < end);
    print_message("burst of %d + 1: received %lu, kernel dropped %lu\n", BURST,
                  (unsigned long)st.recv_packets, (unsigned long)st.kernel_drops);
    assert_true(st.kernel_drops > 0);
    /* On loopback nothing else loses datagrams: every one is either read or counted. */
    assert_int_equal(st.recv_packets + st.kernel_drops, BURST + 1);
    itr_stats es;
    itr_endpoint_stats(b.ep, &es);
    assert_int_equal(es.packets_received, st.recv_packets);
    close(cli);
    side_close(&b);
    itr_loop_free(loop);
}

/* ---- hard send errors, oversize datagrams ---- */

static void test_send_hard_error(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side a;
    uint8_t other_pub[ITR_KEY_LEN], other_priv[ITR_KEY_LEN];
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&a, "a", loop, 0);
    assert_int_equal(itr_key_generate(other_priv, other_pub), ITR_OK);
    /* An IPv6 destination on an IPv4 socket: the kernel refuses every attempt. */
    itr_addr v6;
    assert_int_equal(itr_addr_parse(&v6, "[::1]:9", NULL, 0), ITR_OK);
    itr_peer_id id;
    assert_int_equal(
        itr_endpoint_connect(a.ep, &v6, other_pub, ITR_SUITE_AESGCM, itr_now_ns(), &id), ITR_OK);
    assert_int_equal(itr_endpoint_tx_pending(a.ep), 1);
    itr_driver_kick(a.drv);
    /* Consumed and counted, not stuck at the head of the ring. */
    assert_int_equal(itr_endpoint_tx_pending(a.ep), 0);
    itr_driver_stats st;
    itr_driver_stats_get(a.drv, &st);
    assert_int_equal(st.send_errors, 1);
    assert_int_equal(st.send_packets, 0);
    /* The handshake retransmits from the expiry timer; each attempt fails the same way. */
    uint64_t end = itr_now_ns() + 3000 * MS;
    while (st.send_errors < 2 && itr_now_ns() < end) {
        assert_true(itr_loop_run_once(loop, 50) >= 0);
        itr_driver_stats_get(a.drv, &st);
    }
    assert_true(st.send_errors >= 2);
    assert_int_equal(itr_endpoint_tx_pending(a.ep), 0);
    side_close(&a);
    itr_loop_free(loop);
}

static void test_oversize_datagram(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side b;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&b, "b", loop, 1);
    int cli = socket(AF_INET, SOCK_DGRAM, 0);
    static uint8_t big[4000];
    memset(big, 0x10, sizeof(big));
    assert_int_equal(sendto(cli, big, sizeof(big), 0, &b.addr.u.sa, itr_addr_len(&b.addr)),
                     sizeof(big));
    itr_stats es;
    uint64_t end = itr_now_ns() + 2000 * MS;
    do {
        assert_true(itr_loop_run_once(loop, 10) >= 0);
        itr_endpoint_stats(b.ep, &es);
    } while (es.packets_received == 0 && itr_now_ns() < end);
    /* Truncated by the kernel, still seen as too long (not as a 2,048-byte prefix). */
    assert_int_equal(es.packets_received, 1);
    assert_int_equal(es.dropped[ITR_DROP_TOO_LONG], 1);
    close(cli);
    side_close(&b);
    itr_loop_free(loop);
}

/* ---- pause ---- */

static void test_pause(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side b;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&b, "b", loop, 1);
    int cli = socket(AF_INET, SOCK_DGRAM, 0);
    uint8_t junk[32];
    memset(junk, 0x11, sizeof(junk));
    itr_driver_pause(b.drv, 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(sendto(cli, junk, sizeof(junk), 0, &b.addr.u.sa, itr_addr_len(&b.addr)),
                         sizeof(junk));
    /* Paused: the datagrams wait in the socket, the loop does not spin on them. */
    uint64_t t0 = itr_now_ns();
    assert_int_equal(itr_loop_run_once(loop, 30), 0);
    assert_true(itr_now_ns() - t0 >= 29 * MS);
    itr_driver_stats st;
    itr_driver_stats_get(b.drv, &st);
    assert_int_equal(st.recv_packets, 0);
    itr_driver_pause(b.drv, 0);
    uint64_t end = itr_now_ns() + 2000 * MS;
    do {
        assert_true(itr_loop_run_once(loop, 10) >= 0);
        itr_driver_stats_get(b.drv, &st);
    } while (st.recv_packets < 10 && itr_now_ns() < end);
    assert_int_equal(st.recv_packets, 10);
    assert_int_equal(st.recv_batches, 1);
    close(cli);
    side_close(&b);
    itr_loop_free(loop);
}

/* ---- receive coalescing ---- */

struct coalesce_ctx {
    int cli;
    itr_addr to;
    int refills; /* batches after which the hook queues REFILL more datagrams */
};

#define REFILL 3

static void send_junk(int cli, const itr_addr *to, int n)
{
    uint8_t junk[64];
    memset(junk, 0x11, sizeof(junk)); /* version 1, type 1: dropped by the endpoint */
    for (int i = 0; i < n; i++)
        assert_int_equal(sendto(cli, junk, sizeof(junk), 0, &to->u.sa, itr_addr_len(to)),
                         sizeof(junk));
}

/* On loopback sendto queues the datagram before it returns: what the hook sends is in the
 * socket when the driver reads after its wait. */
static void coalesce_hook(void *arg, uint64_t now)
{
    struct coalesce_ctx *c = arg;
    (void)now;
    if (c->refills > 0) {
        c->refills--;
        send_junk(c->cli, &c->to, REFILL);
    }
}

static void test_rx_coalesce(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side b;
    itr_driver_stats st;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&b, "b", loop, 1);
    assert_int_equal(itr_driver_set_rx_coalesce(b.drv, ITR_RX_COALESCE_MAX_US + 1),
                     ITR_ERR_INVALID);
    assert_int_equal(itr_driver_set_rx_coalesce(b.drv, 1000), ITR_OK);
    struct coalesce_ctx c = {.cli = socket(AF_INET, SOCK_DGRAM, 0), .to = b.addr};
    assert_true(c.cli >= 0);
    itr_driver_set_batch_hook(b.drv, coalesce_hook, &c);

    /* One datagram: no wait, the socket goes back to epoll at once. */
    send_junk(c.cli, &b.addr, 1);
    assert_true(itr_loop_run_once(loop, 1000) >= 1);
    itr_driver_stats_get(b.drv, &st);
    assert_int_equal(st.recv_packets, 1);
    assert_int_equal(st.rx_coalesce_waits, 0);

    /* Two: a short batch of more than one waits, takes what came meanwhile in one batch,
     * waits again (3 > 1), finds nothing and stops. */
    c.refills = 1;
    send_junk(c.cli, &b.addr, 2);
    uint64_t t0 = itr_now_ns();
    assert_true(itr_loop_run_once(loop, 1000) >= 1);
    uint64_t took = itr_now_ns() - t0;
    itr_driver_stats_get(b.drv, &st);
    assert_int_equal(st.recv_packets, 1 + 2 + REFILL);
    assert_int_equal(st.recv_batches, 1 + 2);
    assert_int_equal(st.rx_coalesce_waits, 2);
    assert_true(took >= 2 * MS);

    /* Steady traffic: at most DRV_FAIR_BATCHES (8) rounds per readiness event, waits
     * included, then the loop gets its turn (timers, wakes). */
    c.refills = 100;
    send_junk(c.cli, &b.addr, 2);
    assert_true(itr_loop_run_once(loop, 1000) >= 1);
    itr_driver_stats_get(b.drv, &st);
    assert_int_equal(st.recv_batches, 3 + 8);
    assert_int_equal(st.rx_coalesce_waits, 2 + 8);

    /* Off: the same burst is read without waiting. */
    assert_int_equal(itr_driver_set_rx_coalesce(b.drv, 0), ITR_OK);
    c.refills = 0;
    uint64_t before = st.rx_coalesce_waits;
    for (int i = 0; i < 20 && itr_loop_run_once(loop, 10) > 0; i++)
        ;
    send_junk(c.cli, &b.addr, 2);
    assert_true(itr_loop_run_once(loop, 1000) >= 1);
    itr_driver_stats_get(b.drv, &st);
    assert_int_equal(st.rx_coalesce_waits, before);
    close(c.cli);
    side_close(&b);
    itr_loop_free(loop);
}

/* ---- UDP offloads (GSO out, GRO in) ---- */

/* Send n datagrams of len bytes (the last one `last` bytes) in one UDP_SEGMENT message. */
static void send_gso(int cli, const itr_addr *to, size_t len, size_t last, int n)
{
    static uint8_t buf[64 * 256];
    itr_datagram dg[64];
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    uint8_t ctrl[64 * ITR_GSO_CTRL_LEN];
    uint32_t counts[64];
    memset(buf, 0x11, sizeof(buf)); /* version 1, type 1: dropped by the endpoint */
    for (int i = 0; i < n; i++)
        dg[i] = (itr_datagram){.addr = *to, .data = buf + i * 256, .len = i == n - 1 ? last : len};
    assert_int_equal(itr_udp_pack(dg, (size_t)n, 1, msgs, iov, ctrl, counts), 1);
    assert_int_equal(counts[0], n);
    assert_int_equal(sendmmsg(cli, msgs, 1, 0), 1);
}

static void run_until_packets(itr_loop *loop, itr_endpoint *ep, uint64_t want)
{
    itr_stats es;
    uint64_t end = itr_now_ns() + 2000 * MS;
    do {
        assert_true(itr_loop_run_once(loop, 10) >= 0);
        itr_endpoint_stats(ep, &es);
    } while (es.packets_received < want && itr_now_ns() < end);
    assert_int_equal(es.packets_received, want);
}

static void test_udp_pack(void **state)
{
    (void)state;
    static uint8_t data[2048];
    itr_addr x, y;
    assert_int_equal(itr_addr_parse(&x, "127.0.0.1:1000", NULL, 0), ITR_OK);
    assert_int_equal(itr_addr_parse(&y, "127.0.0.1:1001", NULL, 0), ITR_OK);
    /* x 100, x 100, x 60 (shorter: ends the group), x 100, y 100, y 100, x 1500 (too big
     * for a segment), x 0 (empty: alone) */
    size_t lens[] = {100, 100, 60, 100, 100, 100, 1500, 0};
    const itr_addr *to[] = {&x, &x, &x, &x, &y, &y, &x, &x};
    itr_datagram dg[8];
    for (int i = 0; i < 8; i++)
        dg[i] = (itr_datagram){.addr = *to[i], .data = data, .len = lens[i]};
    struct mmsghdr msgs[8];
    struct iovec iov[8];
    uint8_t ctrl[8 * ITR_GSO_CTRL_LEN];
    uint32_t counts[8];
    assert_int_equal(itr_udp_pack(dg, 8, 1, msgs, iov, ctrl, counts), 5);
    uint32_t want[] = {3, 1, 2, 1, 1};
    for (int i = 0; i < 5; i++)
        assert_int_equal(counts[i], want[i]);
    assert_int_equal(msgs[0].msg_hdr.msg_iovlen, 3);
    assert_non_null(msgs[0].msg_hdr.msg_control);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[0].msg_hdr);
    if (!c) {
        fail_msg("no control message on a GSO group");
        return;
    }
    uint16_t seg;
    memcpy(&seg, CMSG_DATA(c), sizeof(seg));
    assert_int_equal(c->cmsg_level, SOL_UDP);
    assert_int_equal(seg, 100);
    assert_null(msgs[1].msg_hdr.msg_control); /* a group of one: a plain datagram */
    assert_int_equal(itr_addr_equal((const itr_addr *)msgs[2].msg_hdr.msg_name, &y), 1);
    /* Another local socket never joins, and at most ITR_GSO_MAX_SEGMENTS per message. */
    dg[1].addr.local = 1;
    assert_int_equal(itr_udp_pack(dg, 3, 1, msgs, iov, ctrl, counts), 3);
    itr_datagram many[100];
    for (int i = 0; i < 100; i++)
        many[i] = (itr_datagram){.addr = x, .data = data, .len = 100};
    struct mmsghdr mm[100];
    struct iovec mi[100];
    uint8_t mc[100 * ITR_GSO_CTRL_LEN];
    uint32_t mcounts[100];
    assert_int_equal(itr_udp_pack(many, 100, 1, mm, mi, mc, mcounts), 2);
    assert_int_equal(mcounts[0], ITR_GSO_MAX_SEGMENTS);
    /* Only errors about segmentation turn GSO off. */
    assert_true(itr_udp_gso_refused(EIO));
    assert_true(itr_udp_gso_refused(EINVAL));
    assert_false(itr_udp_gso_refused(ECONNREFUSED));
    assert_false(itr_udp_gso_refused(EAGAIN));
    /* Without gso: one message per datagram. */
    assert_int_equal(itr_udp_pack(many, 100, 0, mm, mi, mc, mcounts), 100);
    assert_int_equal(mcounts[99], 1);
}

/* A GSO burst reaches a GRO socket as one buffer and is cut into its datagrams; without GRO
 * the kernel cuts it. Either way the endpoint sees every datagram once. */
static void test_gro_receive(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side b;
    itr_driver_stats st;
    itr_stats es;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&b, "b", loop, 1);
    assert_int_equal(itr_driver_set_offload(b.drv, 4), ITR_ERR_INVALID);
    int cli = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(cli >= 0);

    send_gso(cli, &b.addr, 100, 100, 5);
    run_until_packets(loop, b.ep, 5);
    itr_driver_stats_get(b.drv, &st);
    assert_int_equal(st.recv_packets, 5);
    assert_int_equal(st.gro_datagrams, 0);

    assert_int_equal(itr_driver_set_offload(b.drv, ITR_DRIVER_GRO), ITR_OK);
    send_gso(cli, &b.addr, 100, 40, 7); /* the last one shorter */
    run_until_packets(loop, b.ep, 5 + 7);
    itr_driver_stats_get(b.drv, &st);
    assert_int_equal(st.recv_packets, 5 + 7);
    assert_int_equal(st.recv_batches, 1 + 1); /* seven datagrams, one buffer */
    assert_int_equal(st.gro_datagrams, 7);
    itr_endpoint_stats(b.ep, &es);
    assert_int_equal(es.dropped[ITR_DROP_TOO_LONG], 0);

    /* An oversize datagram with GRO on: whole in its 64 KiB slot, still too long. */
    static uint8_t big[4000];
    memset(big, 0x10, sizeof(big));
    assert_int_equal(sendto(cli, big, sizeof(big), 0, &b.addr.u.sa, itr_addr_len(&b.addr)),
                     sizeof(big));
    run_until_packets(loop, b.ep, 13);
    itr_endpoint_stats(b.ep, &es);
    assert_int_equal(es.dropped[ITR_DROP_TOO_LONG], 1);

    /* Off again: bursts are cut by the kernel. */
    assert_int_equal(itr_driver_set_offload(b.drv, 0), ITR_OK);
    send_gso(cli, &b.addr, 100, 100, 3);
    run_until_packets(loop, b.ep, 16);
    itr_driver_stats_get(b.drv, &st);
    assert_int_equal(st.gro_datagrams, 7);
    close(cli);
    side_close(&b);
    itr_loop_free(loop);
}

/* A session with GSO on the sender and GRO on the receiver: 20,000 Reliable messages arrive
 * in order, exactly once, most of them through GSO messages and GRO buffers. */
static void test_offload_session(void **state)
{
    (void)state;
    const uint32_t n = 20000;
    itr_loop *loop;
    struct side a, b;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&a, "a", loop, 0);
    side_open(&b, "b", loop, 1);
    assert_int_equal(itr_driver_set_offload(a.drv, ITR_DRIVER_GSO | ITR_DRIVER_GRO), ITR_OK);
    assert_int_equal(itr_driver_set_offload(b.drv, ITR_DRIVER_GSO | ITR_DRIVER_GRO), ITR_OK);
    handshake(loop, &a, &b, &b.addr);
    uint32_t sent = 0;
    uint64_t end = itr_now_ns() + 30000 * MS;
    while (itr_now_ns() < end && !(b.rel_next == n && a.acked == n)) {
        while (sent < n && send_one(&a, ITR_INTENT_RELIABLE, sent) == ITR_OK)
            sent++;
        itr_driver_kick(a.drv);
        assert_true(itr_loop_run_once(loop, 5) >= 0);
    }
    itr_driver_stats da, db;
    itr_driver_stats_get(a.drv, &da);
    itr_driver_stats_get(b.drv, &db);
    print_message("offload: a sent %lu datagrams, %lu in GSO messages; b received %lu, %lu in "
                  "GRO buffers\n",
                  (unsigned long)da.send_packets, (unsigned long)da.gso_datagrams,
                  (unsigned long)db.recv_packets, (unsigned long)db.gro_datagrams);
    assert_int_equal(b.rel_next, n);
    assert_int_equal(b.rel_errors, 0);
    assert_int_equal(a.acked, n);
    assert_true(da.gso_datagrams > n / 2);
    assert_true(db.gro_datagrams > n / 2);
    assert_int_equal(da.send_errors, 0);
    side_close(&a);
    side_close(&b);
    itr_loop_free(loop);
}

/* ---- argument checks ---- */

static void test_driver_args(void **state)
{
    (void)state;
    itr_loop *loop;
    struct side b;
    itr_driver *d;
    assert_int_equal(itr_loop_new(&loop), ITR_OK);
    side_open(&b, "b", loop, 1);
    assert_int_equal(itr_driver_new(&d, loop, b.ep, 0), ITR_ERR_INVALID);
    assert_int_equal(itr_driver_new(&d, loop, b.ep, 100000), ITR_ERR_INVALID);
    assert_int_equal(itr_driver_new(&d, NULL, b.ep, 8), ITR_ERR_INVALID);
    /* Sixteen sockets, not seventeen. */
    assert_int_equal(itr_driver_new(&d, loop, b.ep, 8), ITR_OK);
    int fds[17];
    itr_addr any;
    assert_int_equal(itr_addr_parse(&any, "127.0.0.1:0", NULL, 0), ITR_OK);
    for (int i = 0; i < 17; i++) {
        assert_int_equal(itr_udp_open(&any, NULL, &fds[i]), ITR_OK);
        uint32_t local;
        int rc = itr_driver_add_socket(d, fds[i], &local);
        if (i < 16) {
            assert_int_equal(rc, ITR_OK);
            assert_int_equal(local, (uint32_t)i);
        } else {
            assert_int_equal(rc, ITR_ERR_LIMIT);
        }
    }
    assert_int_equal(itr_driver_add_socket(d, -1, NULL), ITR_ERR_INVALID);
    itr_driver_free(d);
    itr_driver_free(NULL);
    for (int i = 0; i < 17; i++)
        close(fds[i]);
    side_close(&b);
    itr_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_driver_args),       cmocka_unit_test(test_pause),
        cmocka_unit_test(test_oversize_datagram), cmocka_unit_test(test_kernel_drops),
        cmocka_unit_test(test_send_hard_error),   cmocka_unit_test(test_lossy_100k),
        cmocka_unit_test(test_rx_coalesce),       cmocka_unit_test(test_udp_pack),
        cmocka_unit_test(test_gro_receive),       cmocka_unit_test(test_offload_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
