/* test_endpoint_edges.c: the endpoint's less travelled paths: a full transmit ring (sends
 * refused, internal packets counted and retried, timers still terminate), callbacks that close
 * their own session in the middle of processing, an exhausted reorder pool, low-order
 * ephemeral keys, rekeys overlapping their grace period, sessions closed while queued for a
 * flush or waiting for the tx pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "itr_session.h"
#include "itr_wire.h"
#include "memnet.h"
#include "test_endpoint_util.h"

typedef struct world {
    memnet *net;
    tpeer srv, cli;
    itr_peer_id cid, sid;
    /* held DATA packets from the client */
    uint8_t held[64][ITR_MAX_PACKET];
    size_t held_len[64];
    int nheld, hold;
    int close_at; /* close the session when this Reliable seq is delivered (-1: never) */
    uint32_t got[8192];
    int ngot;
} world;

static int hold_data(void *arg, int from, int to, uint8_t *pkt, size_t *len)
{
    world *w = arg;
    (void)to;
    if (w->hold && from == w->cli.node && (pkt[0] & 0x0f) == ITR_PT_DATA && w->nheld < 64) {
        memcpy(w->held[w->nheld], pkt, *len);
        w->held_len[w->nheld++] = *len;
        return 0;
    }
    return 1;
}

static int record_and_maybe_close(tpeer *p, const itr_message *m)
{
    world *w = p->user;
    if (m->intent == ITR_INTENT_RELIABLE) {
        assert_true(w->ngot < 8192);
        w->got[w->ngot++] = m->seq;
        assert_int_equal(itr_endpoint_ack(p->ep, m->peer, m->seq, memnet_now(p->net)), ITR_OK);
        if ((int)m->seq == w->close_at)
            assert_int_equal(itr_endpoint_close_peer(p->ep, m->peer, memnet_now(p->net)), ITR_OK);
    }
    return ITR_OK;
}

static world *world_new(const itr_settings *ss, const itr_settings *cs)
{
    memnet_config mc;
    world *w = test_calloc(1, sizeof(*w));
    memnet_config_default(&mc);
    assert_int_equal(memnet_new(&w->net, &mc, SEC(20)), 0);
    tpeer_init(&w->srv, w->net, 7400, 1, ss);
    tpeer_init(&w->cli, w->net, 40000, 2, cs);
    w->srv.user = w->cli.user = w;
    w->close_at = -1;
    w->srv.on_message = record_and_maybe_close;
    memnet_set_filter(w->net, hold_data, w);
    w->cid = tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
    w->sid = tpeer_find(&w->srv, &w->cli);
    return w;
}

static void world_free(world *w)
{
    tpeer_free(&w->cli);
    tpeer_free(&w->srv);
    memnet_free(w->net);
    test_free(w);
}

static int send_rel(world *w, uint32_t k)
{
    return itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_RELIABLE, 0, "e", 1, &k, sizeof(k),
                             memnet_now(w->net), NULL);
}

/* ---- transmit ring full ---- */

static void test_ring_full(void **state)
{
    itr_settings ss, cs;
    (void)state;
    tsettings(&ss, 1);
    ss.tx_ring_slots = 2;
    tsettings(&cs, 2);
    cs.tx_ring_slots = 4;
    world *w = world_new(&ss, &cs);
    uint64_t now = memnet_now(w->net);
    /* Application sends: refused with WOULDBLOCK once the ring is full, nothing consumed. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_REALTIME, 0, "t", 1, "x", 1, now, NULL),
            ITR_OK);
    assert_int_equal(itr_endpoint_tx_pending(w->cli.ep), 4);
    uint32_t seq = 77;
    assert_int_equal(
        itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_RELIABLE, 0, "t", 1, "x", 1, now, &seq),
        ITR_ERR_WOULDBLOCK);
    assert_int_equal(seq, 77);
    assert_int_equal(
        itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_REALTIME, 0, "t", 1, "x", 1, now, NULL),
        ITR_ERR_WOULDBLOCK);
    assert_int_equal(tstat_drop(&w->cli, ITR_DROP_TX_RING_FULL), 0); /* the app was told */
    memnet_advance(w->net, now + MS(5));
    /* The server's ring (2 slots) overflows with ACKs when nobody drains it: counted as
     * drops, retried by the timer, and on_expiry still terminates. */
    w->hold = 1;
    for (uint32_t k = 0; k < 4; k++)
        assert_int_equal(send_rel(w, k), ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(2));
    assert_int_equal(w->nheld, 4);
    w->hold = 0;
    now = memnet_now(w->net);
    itr_endpoint_tx_consume(w->srv.ep, itr_endpoint_tx_pending(w->srv.ep));
    /* Fill the server's ring first with Realtime sends of its own. */
    assert_int_equal(
        itr_endpoint_send(w->srv.ep, w->sid, ITR_INTENT_REALTIME, 0, "t", 1, "x", 1, now, NULL),
        ITR_OK);
    assert_int_equal(
        itr_endpoint_send(w->srv.ep, w->sid, ITR_INTENT_REALTIME, 0, "t", 1, "x", 1, now, NULL),
        ITR_OK);
    for (int i = 0; i < w->nheld; i++) {
        assert_int_equal(
            itr_endpoint_recv(w->srv.ep, &w->cli.addr, w->held[i], w->held_len[i], now), ITR_OK);
        itr_endpoint_flush(w->srv.ep, now);
    }
    assert_int_equal(w->ngot, 4);
    assert_true(tstat_drop(&w->srv, ITR_DROP_TX_RING_FULL) >= 1);
    for (int i = 1; i <= 20; i++) {
        itr_endpoint_on_expiry(w->srv.ep, now + MS(i));
        assert_true(itr_endpoint_expiry(w->srv.ep) > now + MS(i));
    }
    /* Drain: the retried ACK goes out, the client's window empties. */
    memnet_advance(w->net, now + MS(100));
    assert_true(trun_until_u64(w->net, &w->cli.acked, 4, SEC(2)));
    itr_stats st;
    tstats(&w->cli, &st);
    assert_int_equal(st.tx_pool_in_use, 0);
    world_free(w);
}

/* Retransmissions with a full ring are retried, not lost. */
static void test_ring_full_retransmit(void **state)
{
    itr_settings cs;
    (void)state;
    tsettings(&cs, 2);
    cs.tx_ring_slots = 3;
    world *w = world_new(NULL, &cs);
    w->hold = 1;
    assert_int_equal(send_rel(w, 0), ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(2));
    assert_int_equal(w->nheld, 1); /* the first transmission is lost */
    w->hold = 0;
    uint64_t now = memnet_now(w->net);
    /* Keep the ring full past the retransmission timeout. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_REALTIME, 0, "t", 1, "x", 1, now, NULL),
            ITR_OK);
    for (int i = 1; i <= 300; i++)
        itr_endpoint_on_expiry(w->cli.ep, now + MS(i));
    assert_true(tstat_drop(&w->cli, ITR_DROP_TX_RING_FULL) >= 1);
    assert_int_equal(w->ngot, 0);
    memnet_advance(w->net, now + MS(300));
    assert_true(trun_until_u64(w->net, &w->cli.acked, 1, SEC(2)));
    assert_int_equal(w->ngot, 1);
    world_free(w);
}

/* ---- callbacks closing their own session ---- */

static void test_close_in_message_callback(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    w->close_at = 5;
    /* 6..9 arrive first (reorder buffer), then 0..5: closing at 5 abandons the drain. */
    w->hold = 1;
    for (uint32_t k = 0; k < 10; k++)
        assert_int_equal(send_rel(w, k), ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(2));
    w->hold = 0;
    assert_int_equal(w->nheld, 10);
    for (int i = 6; i < 10; i++)
        assert_int_equal(
            memnet_inject(w->net, w->srv.node, &w->cli.addr, w->held[i], w->held_len[i]), ITR_OK);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_true(st.reorder_bytes > 0);
    for (int i = 0; i < 6; i++)
        memnet_inject(w->net, w->srv.node, &w->cli.addr, w->held[i], w->held_len[i]);
    assert_int_equal(w->ngot, 6);
    assert_int_equal(w->srv.closes, 1);
    assert_int_equal(w->srv.last_close_reason, ITR_CLOSE_LOCAL);
    tstats(&w->srv, &st);
    assert_int_equal(st.reorder_bytes, 0);
    assert_int_equal(st.sessions_active, 0);
    memnet_advance(w->net, memnet_now(w->net) + MS(5));
    assert_int_equal(w->cli.closes, 1);
    assert_int_equal(w->cli.last_close_reason, ITR_CLOSE_REMOTE);
    world_free(w);
}

static void close_on_acked(tpeer *p, itr_peer_id peer, uint32_t seq)
{
    if (seq == 2)
        assert_int_equal(itr_endpoint_close_peer(p->ep, peer, memnet_now(p->net)), ITR_OK);
}

static void test_close_in_acked_callback(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    w->cli.on_acked = close_on_acked;
    for (uint32_t k = 0; k < 8; k++)
        assert_int_equal(send_rel(w, k), ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(50));
    assert_int_equal(w->cli.closes, 1);
    assert_int_equal(w->cli.acked, 3); /* no callbacks after the close */
    itr_stats st;
    tstats(&w->cli, &st);
    assert_int_equal(st.tx_pool_in_use, 0);
    assert_int_equal(w->srv.closes, 1);
    world_free(w);
}

static void close_on_open(void *user, const itr_peer_info *info);

static void test_close_in_open_callback(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    /* A second client whose peer_open closes the session at once. */
    tpeer c2;
    tpeer_init(&c2, w->net, 40001, 3, NULL);
    itr_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.peer_open = close_on_open;
    itr_endpoint *ep;
    itr_settings s = c2.settings;
    assert_int_equal(itr_endpoint_new(&ep, &s, &cb, &c2, memnet_now(w->net)), ITR_OK);
    memnet_set_endpoint(w->net, c2.node, ep);
    itr_endpoint_free(c2.ep);
    c2.ep = ep;
    itr_peer_id id;
    assert_int_equal(itr_endpoint_connect(ep, &w->srv.addr, w->srv.pub, ITR_SUITE_AESGCM,
                                          memnet_now(w->net), &id),
                     ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(50));
    assert_int_equal(c2.opens, 1);
    itr_peer_info info;
    assert_int_equal(itr_endpoint_peer_info(ep, id, &info), ITR_ERR_NOT_FOUND);
    assert_int_equal(w->srv.opens, 2);
    assert_int_equal(w->srv.closes, 1); /* CLOSE arrived */
    tpeer_free(&c2);
    world_free(w);
}

static void close_on_open(void *user, const itr_peer_info *info)
{
    tpeer *p = user;
    p->opens++;
    assert_int_equal(itr_endpoint_close_peer(p->ep, info->id, memnet_now(p->net)), ITR_OK);
}

/* Closing a session with an ACK queued for the flush. */
static void test_close_with_flush_pending(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    w->hold = 1;
    assert_int_equal(send_rel(w, 0), ITR_OK);
    assert_int_equal(send_rel(w, 1), ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(2));
    w->hold = 0;
    uint64_t now = memnet_now(w->net);
    /* Out of order: an ACK is queued for the flush; then the application closes. */
    assert_int_equal(itr_endpoint_recv(w->srv.ep, &w->cli.addr, w->held[1], w->held_len[1], now),
                     ITR_OK);
    assert_true(w->srv.ep->flush_head != NULL);
    assert_int_equal(itr_endpoint_close_peer(w->srv.ep, w->sid, now), ITR_OK);
    assert_null(w->srv.ep->flush_head);
    itr_endpoint_flush(w->srv.ep, now);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.reorder_bytes, 0);
    world_free(w);
}

/* ---- pools ---- */

static void test_reorder_pool_exhausted(void **state)
{
    itr_settings ss;
    (void)state;
    tsettings(&ss, 1);
    ss.reorder_pool_slots = 3;
    world *w = world_new(&ss, NULL);
    w->hold = 1;
    for (uint32_t k = 0; k < 10; k++)
        assert_int_equal(send_rel(w, k), ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(2));
    w->hold = 0;
    for (int i = 1; i < 10; i++)
        memnet_inject(w->net, w->srv.node, &w->cli.addr, w->held[i], w->held_len[i]);
    assert_int_equal(tstat_drop(&w->srv, ITR_DROP_REORDER_FULL), 6);
    /* The sender retransmits what was refused; everything arrives in order. */
    assert_true(trun_until_u64(w->net, &w->cli.acked, 10, SEC(5)));
    assert_int_equal(w->ngot, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(w->got[i], (uint32_t)i);
    world_free(w);
}

static void test_pool_waitlist_close(void **state)
{
    memnet_config mc;
    itr_settings cs;
    tpeer s1, s2, c;
    (void)state;
    memnet_config_default(&mc);
    memnet *net;
    assert_int_equal(memnet_new(&net, &mc, SEC(1)), 0);
    tpeer_init(&s1, net, 7401, 1, NULL);
    tpeer_init(&s2, net, 7402, 3, NULL);
    tsettings(&cs, 2);
    cs.tx_pool_slots = 2;
    tpeer_init(&c, net, 40000, 2, &cs);
    itr_peer_id a = tconnect(&c, &s1, ITR_SUITE_AESGCM);
    itr_peer_id b = tconnect(&c, &s2, ITR_SUITE_AESGCM);
    uint64_t now = memnet_now(net);
    assert_int_equal(itr_endpoint_send(c.ep, a, ITR_INTENT_RELIABLE, 0, "t", 1, "x", 1, now, NULL),
                     ITR_OK);
    assert_int_equal(itr_endpoint_send(c.ep, a, ITR_INTENT_RELIABLE, 0, "t", 1, "x", 1, now, NULL),
                     ITR_OK);
    assert_int_equal(itr_endpoint_send(c.ep, b, ITR_INTENT_RELIABLE, 0, "t", 1, "x", 1, now, NULL),
                     ITR_ERR_WOULDBLOCK);
    assert_true(c.ep->wait_head != NULL);
    /* b waits for pool room; closing it takes it off the list. */
    assert_int_equal(itr_endpoint_close_peer(c.ep, b, now), ITR_OK);
    assert_null(c.ep->wait_head);
    s1.on_message = NULL;
    /* a's messages are acknowledged (tpeer acks nothing by itself: ack them here). */
    assert_true(trun_until_u64(net, &s1.messages, 2, SEC(1)));
    itr_peer_id sa = tpeer_find(&s1, &c);
    assert_int_equal(itr_endpoint_ack(s1.ep, sa, 0, memnet_now(net)), ITR_OK);
    assert_int_equal(itr_endpoint_ack(s1.ep, sa, 1, memnet_now(net)), ITR_OK);
    itr_endpoint_flush(s1.ep, memnet_now(net));
    assert_true(trun_until_u64(net, &c.acked, 2, SEC(1)));
    assert_int_equal(c.writable, 0); /* nobody waiting */
    tpeer_free(&c);
    tpeer_free(&s2);
    tpeer_free(&s1);
    memnet_free(net);
}

/* ---- handshake edges ---- */

static void test_low_order_ephemeral(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    uint8_t m1[128], e[32];
    itr_addr from = memnet_addr_v4(50000);
    /* 0 and 1 are points of small order: every DH with them is all-zero. */
    for (int v = 0; v < 2; v++) {
        memset(e, 0, sizeof(e));
        e[0] = (uint8_t)v;
        tmsg1(m1, w->srv.pub, 4242 + (uint32_t)v, e, NULL);
        assert_int_equal(memnet_inject(w->net, w->srv.node, &from, m1, sizeof(m1)),
                         -(1 + ITR_DROP_CRYPTO));
    }
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.handshakes_failed, 2);
    assert_int_equal(st.handshakes_in_flight, 0);
    world_free(w);
}

static void test_overlapping_rekeys(void **state)
{
    itr_settings ss, cs;
    (void)state;
    tsettings(&ss, 1);
    tsettings(&cs, 2);
    /* Rekeys every 3 s, previous keys kept 10 s: up to four key periods overlap. */
    ss.rekey_after_ns = cs.rekey_after_ns = SEC(3);
    ss.reject_after_ns = cs.reject_after_ns = SEC(60);
    world *w = world_new(&ss, &cs);
    memnet_set_impairments(w->net, 0.05, 0, 0);
    uint32_t k = 0;
    uint64_t end = memnet_now(w->net) + SEC(40);
    while (memnet_now(w->net) < end) {
        if (send_rel(w, k) == ITR_OK)
            k++;
        memnet_advance(w->net, memnet_now(w->net) + MS(20));
    }
    memnet_set_impairments(w->net, 0, 0, 0);
    assert_true(trun_until_u64(w->net, &w->cli.acked, k, SEC(10)));
    assert_int_equal(w->ngot, (int)k);
    itr_peer_info info;
    assert_int_equal(itr_endpoint_peer_info(w->cli.ep, w->cid, &info), ITR_OK);
    assert_true(info.rekeys >= 10);
    assert_int_equal(w->cli.closes + w->srv.closes, 0);
    print_message("overlapping rekeys: %llu rekeys, %u messages\n", (unsigned long long)info.rekeys,
                  k);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_full),
        cmocka_unit_test(test_ring_full_retransmit),
        cmocka_unit_test(test_close_in_message_callback),
        cmocka_unit_test(test_close_in_acked_callback),
        cmocka_unit_test(test_close_in_open_callback),
        cmocka_unit_test(test_close_with_flush_pending),
        cmocka_unit_test(test_reorder_pool_exhausted),
        cmocka_unit_test(test_pool_waitlist_close),
        cmocka_unit_test(test_low_order_ephemeral),
        cmocka_unit_test(test_overlapping_rekeys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
