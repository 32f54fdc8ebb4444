/* test_endpoint_basic.c: handshakes (both suites, IPv4/IPv6, cookies, pinned key, allowlist),
 * session lifecycle (close, idle, keepalive, replaced, stale ids, handshake timeout), names,
 * settings validation and memory per session. Scripted time over memnet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <intentra/keys.h>

#include "itr_alloc.h"
#include "itr_session.h"
#include "memnet.h"
#include "test_endpoint_util.h"

typedef struct world {
    memnet *net;
    tpeer srv, cli;
} world;

static world *world_new(const itr_settings *srv, const itr_settings *cli)
{
    memnet_config c;
    world *w = test_calloc(1, sizeof(*w));
    memnet_config_default(&c);
    assert_int_equal(memnet_new(&w->net, &c, SEC(1000)), 0);
    tpeer_init(&w->srv, w->net, 7400, 1, srv);
    tpeer_init(&w->cli, w->net, 40000, 2, cli);
    return w;
}

static void world_free(world *w)
{
    tpeer_free(&w->cli);
    tpeer_free(&w->srv);
    memnet_free(w->net);
    test_free(w);
}

/* ---- names ---- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(itr_drop_reason_name(ITR_DROP_TOO_SHORT), "too_short");
    assert_string_equal(itr_drop_reason_name(ITR_DROP_RATE_LIMIT), "rate_limit");
    assert_string_equal(itr_drop_reason_name(ITR_DROP_CRYPTO), "crypto");
    assert_string_equal(itr_drop_reason_name(ITR_DROP_TX_RING_FULL), "tx_ring_full");
    assert_string_equal(itr_drop_reason_name(ITR_DROP_REASON_COUNT), "unknown");
    assert_string_equal(itr_close_reason_name(ITR_CLOSE_IDLE), "idle");
    assert_string_equal(itr_close_reason_name(ITR_CLOSE_HANDSHAKE_TIMEOUT), "handshake_timeout");
    assert_string_equal(itr_close_reason_name(ITR_CLOSE_REASON_COUNT), "unknown");
    assert_string_equal(itr_security_event_name(ITR_SEC_HANDSHAKE_FLOOD), "handshake_flood");
    assert_string_equal(itr_security_event_name(ITR_SEC_EVENT_COUNT), "unknown");
    /* Every name is snake_case and unique (they are metric labels). */
    for (int i = 0; i < ITR_DROP_REASON_COUNT; i++) {
        const char *a = itr_drop_reason_name((itr_drop_reason)i);
        assert_non_null(a);
        assert_true(strlen(a) > 0);
        for (const char *p = a; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
        for (int j = 0; j < i; j++)
            assert_string_not_equal(a, itr_drop_reason_name((itr_drop_reason)j));
    }
    for (int i = 0; i < ITR_CLOSE_REASON_COUNT; i++)
        for (int j = 0; j < i; j++)
            assert_string_not_equal(itr_close_reason_name((itr_close_reason)i),
                                    itr_close_reason_name((itr_close_reason)j));
    for (int i = 0; i < ITR_SEC_EVENT_COUNT; i++)
        for (int j = 0; j < i; j++)
            assert_string_not_equal(itr_security_event_name((itr_security_event)i),
                                    itr_security_event_name((itr_security_event)j));
}

/* ---- settings ---- */

static void test_settings(void **state)
{
    itr_settings s;
    itr_endpoint *ep = NULL;
    (void)state;
    itr_settings_default(&s);
    assert_int_equal(s.max_handshakes_in_flight, 100);
    assert_int_equal(s.max_handshakes_per_ip, 5);
    assert_int_equal(s.rate_limit_pps, 10000);
    assert_int_equal(s.rate_limit_burst, 500);
    assert_int_equal(s.strike_limit, 10);
    assert_true(s.idle_timeout_ns == SEC(60));
    assert_true(s.handshake_timeout_ns == SEC(5));
    assert_int_equal(s.max_packet, 2048);
    assert_true(s.reject_after_ns == SEC(180));
    assert_int_equal(s.prologue_len, 10);
    assert_memory_equal(s.prologue, "intentra/1", 10);
    /* The identity must be set. */
    assert_int_equal(itr_endpoint_new(&ep, &s, NULL, NULL, 0), ITR_ERR_INVALID);
    assert_null(ep);
    tsettings(&s, 9);
    assert_int_equal(itr_endpoint_new(&ep, &s, NULL, NULL, 0), ITR_OK);
    itr_endpoint_free(ep);
    itr_endpoint_free(NULL);

    /* One field at a time out of range. */
    for (int i = 0; i < 12; i++) {
        tsettings(&s, 9);
        switch (i) {
        case 0:
            s.max_packet = 100;
            break;
        case 1:
            s.max_packet = 4096;
            break;
        case 2:
            s.tx_ring_slots = 0;
            break;
        case 3:
            s.conn_id_modulus = 0;
            break;
        case 4:
            s.conn_id_residue = 5;
            s.conn_id_modulus = 5;
            break;
        case 5:
            s.strike_limit = 17;
            break;
        case 6:
            s.reject_after_ns = s.rekey_after_ns;
            break;
        case 7:
            s.rto_min_ns = 0;
            break;
        case 8:
            s.rto_initial_ns = SEC(5);
            break;
        case 9:
            s.cookie_mode = (itr_cookie_mode)7;
            break;
        case 10:
            s.max_peers = 0;
            break;
        case 11:
            s.rate_limit_burst = 0;
            break;
        }
        assert_int_equal(itr_endpoint_new(&ep, &s, NULL, NULL, 0), ITR_ERR_INVALID);
    }
}

/* ---- handshakes ---- */

static int echo_reliable(tpeer *p, const itr_message *m)
{
    if (m->intent == ITR_INTENT_RELIABLE)
        assert_int_equal(itr_endpoint_ack(p->ep, m->peer, m->seq, memnet_now(p->net)), ITR_OK);
    return ITR_OK;
}

static void handshake_and_talk(itr_suite suite, int v6)
{
    itr_settings ss, cs;
    tsettings(&ss, 1);
    tsettings(&cs, 2);
    cs.accept_handshakes = 0;
    world *w = world_new(&ss, &cs);
    if (v6) {
        w->srv.addr = memnet_addr_v6(7400);
        memnet_set_addr(w->net, w->srv.node, &w->srv.addr);
        w->cli.addr = memnet_addr_v6(40000);
        memnet_set_addr(w->net, w->cli.node, &w->cli.addr);
    }
    itr_peer_id cid = tconnect(&w->cli, &w->srv, suite);
    itr_peer_id sid = tpeer_find(&w->srv, &w->cli);
    itr_peer_info ci, si;
    assert_int_equal(itr_endpoint_peer_info(w->cli.ep, cid, &ci), ITR_OK);
    assert_int_equal(itr_endpoint_peer_info(w->srv.ep, sid, &si), ITR_OK);
    assert_int_equal(ci.initiator, 1);
    assert_int_equal(si.initiator, 0);
    assert_int_equal(ci.suite, suite);
    assert_int_equal(si.suite, suite);
    assert_true(ci.session_id == si.session_id && ci.session_id != 0);
    assert_memory_equal(ci.static_key, w->srv.pub, 32);
    assert_memory_equal(si.static_key, w->cli.pub, 32);
    assert_int_equal(w->srv.opens, 1);
    assert_true(w->srv.last_open == sid);

    /* Both directions, both intents. */
    w->srv.on_message = echo_reliable;
    w->cli.on_message = echo_reliable;
    uint32_t seq = 99;
    assert_int_equal(itr_endpoint_send(w->cli.ep, cid, ITR_INTENT_RELIABLE, 3, "a/b", 3, "hi", 2,
                                       memnet_now(w->net), &seq),
                     ITR_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(itr_endpoint_send(w->cli.ep, cid, ITR_INTENT_REALTIME, 0, "rt", 2, "x", 1,
                                       memnet_now(w->net), NULL),
                     ITR_OK);
    assert_int_equal(itr_endpoint_send(w->srv.ep, sid, ITR_INTENT_RELIABLE, 7, "cmd", 3, NULL, 0,
                                       memnet_now(w->net), &seq),
                     ITR_OK);
    assert_true(trun_until_u64(w->net, &w->cli.acked, 1, SEC(1)));
    assert_true(trun_until_u64(w->net, &w->srv.acked, 1, SEC(1)));
    assert_int_equal(w->srv.messages, 2);
    assert_int_equal(w->cli.messages, 1);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.handshakes_completed, 1);
    assert_int_equal(st.sessions_active, 1);
    assert_int_equal(st.messages_delivered, 2);
    assert_int_equal(st.handshakes_in_flight, 0);
    tstats(&w->cli, &st);
    assert_int_equal(st.handshakes_initiated, 1);
    assert_int_equal(st.handshakes_completed, 1);
    assert_int_equal(st.tx_pool_in_use, 0);
    assert_int_equal(itr_endpoint_peer_info(w->cli.ep, cid, &ci), ITR_OK);
    assert_true(ci.rtt_ns > 0);
    assert_int_equal(ci.unacked_out, 0);
    world_free(w);
}

static void test_handshake_aesgcm(void **state)
{
    (void)state;
    handshake_and_talk(ITR_SUITE_AESGCM, 0);
}

static void test_handshake_chachapoly(void **state)
{
    (void)state;
    handshake_and_talk(ITR_SUITE_CHACHAPOLY, 0);
}

static void test_handshake_ipv6(void **state)
{
    (void)state;
    handshake_and_talk(ITR_SUITE_AESGCM, 1);
}

/* Counts handshake messages by direction. */
typedef struct hs_count {
    uint64_t msg1, msg2, msg3, cookie_replies;
} hs_count;

static int count_hs(void *arg, int from, int to, uint8_t *pkt, size_t *len)
{
    hs_count *c = arg;
    (void)from;
    (void)to;
    if ((pkt[0] & 0x0f) == 2 && *len >= 12) {
        if (pkt[11] == 1)
            c->msg1++;
        else if (pkt[11] == 2)
            c->msg2++;
        else if (pkt[11] == 3)
            c->msg3++;
    }
    if ((pkt[0] & 0x0f) == 3)
        c->cookie_replies++;
    return 1;
}

static void test_cookie_always(void **state)
{
    itr_settings ss;
    hs_count c = {0};
    (void)state;
    tsettings(&ss, 1);
    ss.cookie_mode = ITR_COOKIE_ALWAYS;
    world *w = world_new(&ss, NULL);
    memnet_set_filter(w->net, count_hs, &c);
    tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
    /* One extra round trip: msg1, COOKIE_REPLY, msg1 with cookie, msg2, msg3. */
    assert_int_equal(c.msg1, 2);
    assert_int_equal(c.cookie_replies, 1);
    assert_int_equal(c.msg2, 1);
    assert_int_equal(c.msg3, 1);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.cookies_sent, 1);
    assert_int_equal(st.dropped[ITR_DROP_COOKIE_REQUIRED], 1);
    assert_int_equal(st.handshakes_completed, 1);

    /* A wrong (nonzero) cookie is refused and reported. */
    uint8_t e[32], cookie[16], m1[128];
    memset(e, 0x55, sizeof(e));
    memset(cookie, 0x77, sizeof(cookie));
    tmsg1(m1, w->srv.pub, 1234, e, cookie);
    itr_addr from = memnet_addr_v4(50000);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &from, m1, sizeof(m1)),
                     -(1 + ITR_DROP_BAD_COOKIE));
    assert_int_equal(w->srv.sec[ITR_SEC_BAD_COOKIE], 1);
    /* A cookie for another source port is wrong too. */
    itr_cookie_make(&w->srv.ep->jar, &from, e, cookie);
    tmsg1(m1, w->srv.pub, 1234, e, cookie);
    itr_addr other = memnet_addr_v4(50001);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &other, m1, sizeof(m1)),
                     -(1 + ITR_DROP_BAD_COOKIE));
    /* ... and right from its own address: a slot is taken. */
    assert_int_equal(memnet_inject(w->net, w->srv.node, &from, m1, sizeof(m1)), ITR_OK);
    tstats(&w->srv, &st);
    assert_int_equal(st.handshakes_in_flight, 1);
    world_free(w);
}

static void test_cookie_under_load(void **state)
{
    itr_settings ss;
    hs_count c = {0};
    (void)state;
    tsettings(&ss, 1);
    ss.cookie_load_threshold = 3;
    ss.max_handshakes_per_ip = 10;
    world *w = world_new(&ss, NULL);
    /* Below the threshold: no cookie. */
    uint8_t e[32], m1[128];
    for (uint32_t i = 0; i < 3; i++) {
        memset(e, (int)(0x10 + i), sizeof(e));
        tmsg1(m1, w->srv.pub, 100 + i, e, NULL);
        itr_addr from = memnet_addr_v4((uint16_t)(50000 + i));
        assert_int_equal(memnet_inject(w->net, w->srv.node, &from, m1, sizeof(m1)), ITR_OK);
    }
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.handshakes_in_flight, 3);
    assert_int_equal(st.cookies_sent, 0);
    /* At the threshold a real client gets a cookie first and still connects. */
    memnet_set_filter(w->net, count_hs, &c);
    tconnect(&w->cli, &w->srv, ITR_SUITE_CHACHAPOLY);
    assert_int_equal(c.cookie_replies, 1);
    tstats(&w->srv, &st);
    assert_int_equal(st.cookies_sent, 1);
    /* The spoofed slots expire after handshake_timeout and are counted as failed. */
    memnet_advance(w->net, memnet_now(w->net) + SEC(6));
    tstats(&w->srv, &st);
    assert_int_equal(st.handshakes_in_flight, 0);
    assert_int_equal(st.handshakes_failed, 3);
    world_free(w);
}

static void test_cookie_off(void **state)
{
    itr_settings ss;
    (void)state;
    tsettings(&ss, 1);
    ss.cookie_mode = ITR_COOKIE_OFF;
    ss.cookie_load_threshold = 0;
    world *w = world_new(&ss, NULL);
    tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.cookies_sent, 0);
    world_free(w);
}

static void test_pinned_key_mismatch(void **state)
{
    itr_settings ss;
    (void)state;
    tsettings(&ss, 1);
    world *w = world_new(&ss, NULL);
    /* An impostor that answers message 1s meant for key X (it knows X's public key, so it can
     * check mac1) with its own static key. */
    uint8_t x_priv[32], x_pub[32];
    memset(x_priv, 0x42, sizeof(x_priv));
    assert_int_equal(itr_key_public(x_priv, x_pub), ITR_OK);
    itr_cookie_keys_derive(&w->srv.ep->cookie_keys, x_pub);
    itr_peer_id id;
    assert_int_equal(itr_endpoint_connect(w->cli.ep, &w->srv.addr, x_pub, ITR_SUITE_AESGCM,
                                          memnet_now(w->net), &id),
                     ITR_OK);
    assert_true(trun_until_u64(w->net, &w->cli.closes, 1, SEC(1)));
    assert_int_equal(w->cli.last_close_reason, ITR_CLOSE_REFUSED);
    assert_true(w->cli.last_closed == id);
    assert_int_equal(w->cli.opens, 0);
    assert_int_equal(tstat_drop(&w->cli, ITR_DROP_PINNED_KEY), 1);
    assert_int_equal(w->cli.sec[ITR_SEC_PINNED_KEY], 1);
    assert_int_equal(itr_endpoint_send(w->cli.ep, id, ITR_INTENT_REALTIME, 0, "t", 1, "x", 1,
                                       memnet_now(w->net), NULL),
                     ITR_ERR_NOT_FOUND);
    itr_stats st;
    tstats(&w->cli, &st);
    assert_int_equal(st.sessions_active, 0);
    assert_int_equal(st.handshakes_in_flight, 0);
    /* The impostor never got a session either (no message 3). */
    memnet_advance(w->net, memnet_now(w->net) + SEC(6));
    tstats(&w->srv, &st);
    assert_int_equal(st.sessions_active, 0);
    assert_int_equal(w->srv.opens, 0);
    world_free(w);
}

static void test_wrong_pinned_key_no_answer(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    /* Pinning a key the server does not have: mac1 fails, the server stays silent, the
     * connect times out after handshake_timeout with retransmissions in between. */
    uint8_t other[32];
    memset(other, 0x33, sizeof(other));
    hs_count c = {0};
    memnet_set_filter(w->net, count_hs, &c);
    itr_peer_id id;
    uint64_t t0 = memnet_now(w->net);
    assert_int_equal(
        itr_endpoint_connect(w->cli.ep, &w->srv.addr, other, ITR_SUITE_AESGCM, t0, &id), ITR_OK);
    assert_true(trun_until_u64(w->net, &w->cli.closes, 1, SEC(10)));
    assert_int_equal(w->cli.last_close_reason, ITR_CLOSE_HANDSHAKE_TIMEOUT);
    assert_true(memnet_now(w->net) - t0 >= SEC(5) && memnet_now(w->net) - t0 <= SEC(5) + MS(5));
    /* 0, 250, 750, 1750, 3750 ms: five copies of message 1. */
    assert_int_equal(c.msg1, 5);
    assert_int_equal(tstat_drop(&w->srv, ITR_DROP_BAD_MAC1), 5);
    assert_int_equal(w->srv.sec[ITR_SEC_BAD_MAC1], 5);
    itr_stats st;
    tstats(&w->cli, &st);
    assert_int_equal(st.handshakes_failed, 1);
    assert_int_equal(st.closes[ITR_CLOSE_HANDSHAKE_TIMEOUT], 1);
    world_free(w);
}

static void test_allowlist_refused(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    w->srv.refuse = 1;
    itr_peer_id id;
    assert_int_equal(itr_endpoint_connect(w->cli.ep, &w->srv.addr, w->srv.pub, ITR_SUITE_AESGCM,
                                          memnet_now(w->net), &id),
                     ITR_OK);
    assert_true(trun_until_u64(w->net, &w->cli.closes, 1, SEC(10)));
    assert_int_equal(w->cli.last_close_reason, ITR_CLOSE_HANDSHAKE_TIMEOUT);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_true(st.dropped[ITR_DROP_REFUSED_KEY] >= 1);
    assert_int_equal(st.sessions_active, 0);
    assert_int_equal(st.handshakes_completed, 0);
    assert_int_equal(st.handshakes_in_flight, 0);
    assert_int_equal(w->srv.opens, 0);
    assert_true(w->srv.sec[ITR_SEC_REFUSED_KEY] >= 1);
    assert_true(w->srv.check_calls >= 1);
    assert_int_equal(itr_endpoint_test_session_bytes(w->srv.ep), 0);
    world_free(w);
}

/* ---- session lifecycle ---- */

static void test_close_and_stale_ids(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    itr_peer_id cid = tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
    itr_peer_id sid = tpeer_find(&w->srv, &w->cli);
    assert_int_equal(itr_endpoint_close_peer(w->cli.ep, cid, memnet_now(w->net)), ITR_OK);
    assert_int_equal(w->cli.last_close_reason, ITR_CLOSE_LOCAL);
    assert_true(trun_until_u64(w->net, &w->srv.closes, 1, SEC(1)));
    assert_int_equal(w->srv.last_close_reason, ITR_CLOSE_REMOTE);
    assert_true(w->srv.last_closed == sid);
    uint64_t now = memnet_now(w->net);
    itr_peer_info info;
    assert_int_equal(itr_endpoint_close_peer(w->cli.ep, cid, now), ITR_ERR_NOT_FOUND);
    assert_int_equal(
        itr_endpoint_send(w->cli.ep, cid, ITR_INTENT_RELIABLE, 0, "t", 1, "x", 1, now, NULL),
        ITR_ERR_NOT_FOUND);
    assert_int_equal(itr_endpoint_ack(w->srv.ep, sid, 0, now), ITR_ERR_NOT_FOUND);
    assert_int_equal(itr_endpoint_peer_info(w->srv.ep, sid, &info), ITR_ERR_NOT_FOUND);
    assert_int_equal(itr_endpoint_peer_info(w->srv.ep, 0, &info), ITR_ERR_NOT_FOUND);
    /* A new session reuses the slot with a new generation: the old id stays stale. */
    itr_peer_id cid2 = tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
    itr_peer_id sid2 = tpeer_find(&w->srv, &w->cli);
    assert_true(cid2 != cid);
    assert_true(sid2 != sid);
    assert_true((uint32_t)sid2 == (uint32_t)sid);
    assert_int_equal(itr_endpoint_peer_info(w->srv.ep, sid, &info), ITR_ERR_NOT_FOUND);
    assert_int_equal(itr_endpoint_peer_info(w->srv.ep, sid2, &info), ITR_OK);
    world_free(w);
}

static void test_idle_keepalive(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    itr_peer_id cid = tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
    /* Five minutes of silence: keepalives (and rekeys) keep the session. */
    memnet_advance(w->net, memnet_now(w->net) + SEC(300));
    assert_int_equal(w->cli.closes, 0);
    assert_int_equal(w->srv.closes, 0);
    itr_peer_info info;
    assert_int_equal(itr_endpoint_peer_info(w->cli.ep, cid, &info), ITR_OK);
    assert_true(memnet_now(w->net) - info.last_recv_ns <= SEC(11));
    assert_true(info.rekeys >= 2);
    /* A partition: both sides close as idle after idle_timeout, without CLOSE. */
    memnet_set_impairments(w->net, 1.0, 0, 0);
    uint64_t t0 = memnet_now(w->net);
    memnet_advance(w->net, t0 + SEC(61));
    assert_int_equal(w->cli.closes, 1);
    assert_int_equal(w->srv.closes, 1);
    assert_int_equal(w->cli.last_close_reason, ITR_CLOSE_IDLE);
    assert_int_equal(w->srv.last_close_reason, ITR_CLOSE_IDLE);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.closes[ITR_CLOSE_IDLE], 1);
    assert_int_equal(st.sessions_active, 0);
    assert_true(itr_endpoint_expiry(w->srv.ep) >= memnet_now(w->net));
    world_free(w);
}

static void test_replaced(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
    itr_peer_id sid = tpeer_find(&w->srv, &w->cli);
    /* The initiator restarts (same key, new session_id): the old session is replaced. */
    tpeer_restart(&w->cli, NULL);
    tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
    assert_int_equal(w->srv.closes, 1);
    assert_int_equal(w->srv.last_close_reason, ITR_CLOSE_REPLACED);
    assert_true(w->srv.last_closed == sid);
    assert_int_equal(w->srv.opens, 2);
    itr_peer_id sid2 = tpeer_find(&w->srv, &w->cli);
    assert_true(sid2 != sid);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.sessions_active, 1);
    assert_int_equal(st.closes[ITR_CLOSE_REPLACED], 1);
    world_free(w);
}

static void test_peers_iteration(void **state)
{
    memnet_config c;
    memnet *net;
    tpeer srv, cli[5];
    (void)state;
    memnet_config_default(&c);
    assert_int_equal(memnet_new(&net, &c, SEC(1)), 0);
    tpeer_init(&srv, net, 7400, 1, NULL);
    for (int i = 0; i < 5; i++) {
        tpeer_init(&cli[i], net, (uint16_t)(41000 + i), (uint8_t)(10 + i), NULL);
        tconnect(&cli[i], &srv, ITR_SUITE_AESGCM);
    }
    itr_peer_info infos[2];
    uint64_t cursor = 0;
    size_t total = 0, k;
    int seen[5] = {0};
    while ((k = itr_endpoint_peers(srv.ep, &cursor, infos, 2)) > 0) {
        for (size_t j = 0; j < k; j++) {
            total++;
            for (int i = 0; i < 5; i++)
                if (memcmp(infos[j].static_key, cli[i].pub, 32) == 0)
                    seen[i]++;
        }
    }
    assert_int_equal(total, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(seen[i], 1);
    itr_peer_id id;
    uint8_t nobody[32];
    memset(nobody, 9, sizeof(nobody));
    assert_int_equal(itr_endpoint_find_peer(srv.ep, nobody, &id), ITR_ERR_NOT_FOUND);
    /* Shutdown reports every session. */
    tpeer_free(&srv);
    assert_int_equal(srv.closes, 5);
    assert_int_equal(srv.last_close_reason, ITR_CLOSE_SHUTDOWN);
    for (int i = 0; i < 5; i++)
        tpeer_free(&cli[i]);
    memnet_free(net);
}

static void test_max_peers(void **state)
{
    memnet_config c;
    memnet *net;
    itr_settings ss;
    tpeer srv, cli[3];
    (void)state;
    memnet_config_default(&c);
    assert_int_equal(memnet_new(&net, &c, SEC(1)), 0);
    tsettings(&ss, 1);
    ss.max_peers = 2;
    tpeer_init(&srv, net, 7400, 1, &ss);
    for (int i = 0; i < 3; i++)
        tpeer_init(&cli[i], net, (uint16_t)(41000 + i), (uint8_t)(10 + i), NULL);
    tconnect(&cli[0], &srv, ITR_SUITE_AESGCM);
    tconnect(&cli[1], &srv, ITR_SUITE_AESGCM);
    itr_peer_id id;
    assert_int_equal(
        itr_endpoint_connect(cli[2].ep, &srv.addr, srv.pub, ITR_SUITE_AESGCM, memnet_now(net), &id),
        ITR_OK);
    assert_true(trun_until_u64(net, &cli[2].closes, 1, SEC(10)));
    assert_true(tstat_drop(&srv, ITR_DROP_PEERS_FULL) >= 1);
    /* Initiator side: max_peers bounds connect. */
    itr_settings cs;
    tsettings(&cs, 30);
    cs.max_peers = 1;
    tpeer one;
    tpeer_init(&one, net, 42000, 30, &cs);
    assert_int_equal(
        itr_endpoint_connect(one.ep, &srv.addr, srv.pub, ITR_SUITE_AESGCM, memnet_now(net), &id),
        ITR_OK);
    assert_int_equal(
        itr_endpoint_connect(one.ep, &srv.addr, srv.pub, ITR_SUITE_AESGCM, memnet_now(net), &id),
        ITR_ERR_LIMIT);
    tpeer_free(&one);
    for (int i = 0; i < 3; i++)
        tpeer_free(&cli[i]);
    tpeer_free(&srv);
    memnet_free(net);
}

static void test_send_errors(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    uint64_t now = memnet_now(w->net);
    itr_peer_id id;
    assert_int_equal(
        itr_endpoint_connect(w->cli.ep, &w->srv.addr, w->srv.pub, ITR_SUITE_AESGCM, now, &id),
        ITR_OK);
    /* Not established yet. */
    assert_int_equal(
        itr_endpoint_send(w->cli.ep, id, ITR_INTENT_RELIABLE, 0, "t", 1, "x", 1, now, NULL),
        ITR_ERR_NOT_READY);
    assert_true(trun_until_u64(w->net, &w->cli.opens, 1, SEC(1)));
    now = memnet_now(w->net);
    assert_int_equal(
        itr_endpoint_send(w->cli.ep, id, ITR_INTENT_RELIABLE, 8, "t", 1, "x", 1, now, NULL),
        ITR_ERR_INVALID);
    assert_int_equal(
        itr_endpoint_send(w->cli.ep, id, ITR_INTENT_RELIABLE, 0, "bad topic", 9, "x", 1, now, NULL),
        ITR_ERR_INVALID);
    assert_int_equal(
        itr_endpoint_send(w->cli.ep, id, ITR_INTENT_RELIABLE, 0, "", 0, "x", 1, now, NULL),
        ITR_ERR_INVALID);
    assert_int_equal(itr_endpoint_send(w->cli.ep, id, (itr_intent)2, 0, "t", 1, "x", 1, now, NULL),
                     ITR_ERR_INVALID);
    static uint8_t big[ITR_MAX_PACKET];
    size_t max = itr_endpoint_max_body(w->cli.ep, 5);
    assert_int_equal(max, 2048 - 16 - 16 - 4 - 1 - 5);
    assert_int_equal(itr_endpoint_max_body(w->cli.ep, 0), 0);
    assert_int_equal(itr_endpoint_max_body(w->cli.ep, 129), 0);
    assert_int_equal(itr_endpoint_send(w->cli.ep, id, ITR_INTENT_REALTIME, 0, "abcde", 5, big,
                                       max + 1, now, NULL),
                     ITR_ERR_TOO_BIG);
    assert_int_equal(itr_endpoint_send(w->cli.ep, id, ITR_INTENT_RELIABLE, 0, "abcde", 5, big,
                                       max + 1, now, NULL),
                     ITR_ERR_TOO_BIG);
    /* The largest body fits in exactly max_packet. */
    assert_int_equal(
        itr_endpoint_send(w->cli.ep, id, ITR_INTENT_REALTIME, 0, "abcde", 5, big, max, now, NULL),
        ITR_OK);
    itr_datagram dg[4];
    size_t n = itr_endpoint_tx_peek(w->cli.ep, dg, 4);
    assert_true(n >= 1);
    assert_int_equal(dg[n - 1].len, 2048);
    uint64_t before = w->srv.messages;
    assert_true(trun_until_u64(w->net, &w->srv.messages, before + 1, SEC(1)));
    world_free(w);
}

/* ---- memory ---- */

static void test_memory_per_session(void **state)
{
    memnet_config c;
    memnet *net;
    enum { N = 20 };
    tpeer srv, cli[N];
    (void)state;
    size_t per = sizeof(itr_session) + sizeof(itr_keypair);
    print_message("sizeof(itr_session) = %zu, sizeof(itr_keypair) = %zu, idle session = %zu B\n",
                  sizeof(itr_session), sizeof(itr_keypair), per);
    print_message("sizeof(itr_hs) = %zu (handshake slot)\n", sizeof(itr_hs));
    assert_true(per <= 1024);
    assert_true(sizeof(itr_keypair) <= 256);

    memnet_config_default(&c);
    assert_int_equal(memnet_new(&net, &c, SEC(1)), 0);
    tpeer_init(&srv, net, 7400, 1, NULL);
    size_t fixed = itr_endpoint_test_fixed_bytes(srv.ep);
    for (int i = 0; i < N; i++) {
        tpeer_init(&cli[i], net, (uint16_t)(41000 + i), (uint8_t)(10 + i), NULL);
        tconnect(&cli[i], &srv, ITR_SUITE_AESGCM);
    }
    /* Idle: one keypair each after the grace of any rekey, nothing in the pools. */
    memnet_advance(net, memnet_now(net) + SEC(30));
    assert_int_equal(itr_endpoint_test_session_bytes(srv.ep), N * per);
    itr_stats st;
    tstats(&srv, &st);
    assert_int_equal(st.tx_pool_in_use, 0);
    assert_int_equal(st.reorder_bytes, 0);
    assert_int_equal(st.handshakes_in_flight, 0);
    assert_int_equal(itr_endpoint_test_fixed_bytes(srv.ep), fixed);
    print_message("responder fixed allocation with the test settings: %zu B\n", fixed);
    for (int i = 0; i < N; i++)
        tpeer_free(&cli[i]);
    tpeer_free(&srv);
    memnet_free(net);
}

/* ---- allocation failures ---- */

typedef struct failer {
    long countdown; /* allocations to let through before failing; < 0: never fail */
    long seen;
    int failed;
} failer;

static int fail_nth(void *arg, size_t size)
{
    failer *f = arg;
    (void)size;
    f->seen++;
    if (f->countdown < 0)
        return 0;
    if (f->countdown-- == 0) {
        f->failed = 1;
        return 1;
    }
    return 0;
}

static void test_failing_allocator(void **state)
{
    itr_settings s;
    failer f;
    (void)state;
    /* itr_endpoint_new: every allocation in turn fails cleanly with ITR_ERR_NOMEM. */
    tsettings(&s, 9);
    long n;
    for (n = 0;; n++) {
        itr_endpoint *ep = NULL;
        memset(&f, 0, sizeof(f));
        f.countdown = n;
        itr_alloc_test_failer(fail_nth, &f);
        int rc = itr_endpoint_new(&ep, &s, NULL, NULL, 0);
        itr_alloc_test_failer(NULL, NULL);
        if (rc == ITR_OK) {
            assert_false(f.failed);
            itr_endpoint_free(ep);
            break;
        }
        assert_int_equal(rc, ITR_ERR_NOMEM);
        assert_null(ep);
        assert_true(n < 100);
    }
    print_message("itr_endpoint_new makes %ld allocations\n", n);
    assert_true(n >= 10);

    /* Handshakes: fail each allocation made during a handshake in turn (sessions, keypairs,
     * table growth, on either side); every outcome is clean: a session on both sides, or a
     * failed connect / handshake timeout, and never a leak (LeakSanitizer) or a crash. */
    for (long k = 0;; k++) {
        world *w = world_new(NULL, NULL);
        memset(&f, 0, sizeof(f));
        f.countdown = k;
        itr_alloc_test_failer(fail_nth, &f);
        itr_peer_id id = 0;
        int rc = itr_endpoint_connect(w->cli.ep, &w->srv.addr, w->srv.pub, ITR_SUITE_AESGCM,
                                      memnet_now(w->net), &id);
        if (rc == ITR_OK) {
            memnet_advance(w->net, memnet_now(w->net) + SEC(6));
        } else {
            assert_int_equal(rc, ITR_ERR_NOMEM);
        }
        itr_alloc_test_failer(NULL, NULL);
        int failed = f.failed;
        if (failed) {
            assert_true(w->cli.opens == 0 || w->srv.opens == 1);
            if (rc == ITR_OK && w->cli.opens == 0)
                assert_int_equal(w->cli.closes, 1); /* reported as a failed connect */
        } else {
            assert_int_equal(w->cli.opens, 1);
            assert_int_equal(w->srv.opens, 1);
        }
        /* Either way a new connect now works. */
        if (w->cli.opens == 0 || w->cli.closes)
            tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
        world_free(w);
        if (!failed) {
            print_message("a handshake makes %ld allocations (both sides)\n", k);
            break;
        }
        assert_true(k < 50);
    }
}

/* ---- worker steering: conn ids by residue ---- */

typedef struct residue_check {
    int srv_node;
    uint32_t modulus, residue;
    uint64_t checked, wrong;
} residue_check;

static int check_residue(void *arg, int from, int to, uint8_t *pkt, size_t *len)
{
    residue_check *r = arg;
    (void)from;
    uint32_t conn_id =
        (uint32_t)pkt[4] << 24 | (uint32_t)pkt[5] << 16 | (uint32_t)pkt[6] << 8 | pkt[7];
    /* Everything the server receives names one of its ids, except message 1 (conn_id 0). */
    if (to == r->srv_node && *len >= 16 && conn_id != 0) {
        r->checked++;
        if (conn_id % r->modulus != r->residue)
            r->wrong++;
    }
    return 1;
}

static void test_conn_id_residue(void **state)
{
    itr_settings ss;
    (void)state;
    tsettings(&ss, 1);
    ss.conn_id_modulus = 4;
    ss.conn_id_residue = 3;
    world *w = world_new(&ss, NULL);
    residue_check rc = {w->srv.node, 4, 3, 0, 0};
    memnet_set_filter(w->net, check_residue, &rc);
    itr_peer_id cid = tconnect(&w->cli, &w->srv, ITR_SUITE_AESGCM);
    for (int i = 0; i < 20; i++)
        assert_int_equal(itr_endpoint_send(w->cli.ep, cid, ITR_INTENT_RELIABLE, 0, "t", 1, "x", 1,
                                           memnet_now(w->net), NULL),
                         ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + SEC(130)); /* through a rekey */
    assert_true(rc.checked > 20);
    assert_int_equal(rc.wrong, 0);
    itr_peer_id sid = tpeer_find(&w->srv, &w->cli);
    assert_int_equal(itr_endpoint_test_conn_id(w->srv.ep, sid) % 4, 3);
    /* A modulus so large that few ids exist still works (ids k * m + r, nonzero). */
    tsettings(&ss, 5);
    ss.conn_id_modulus = 0x80000000u;
    ss.conn_id_residue = 0;
    itr_endpoint *ep;
    assert_int_equal(itr_endpoint_new(&ep, &ss, NULL, NULL, 0), ITR_OK);
    uint32_t id = itr_ep_new_conn_id(ep);
    assert_int_equal(id, 0x80000000u);
    itr_endpoint_free(ep);
    world_free(w);
}

/* A replayed COOKIE_REPLY does not make the initiator send message 1 again. */
typedef struct cr_capture {
    uint8_t reply[72];
    int have;
    uint64_t msg1;
} cr_capture;

static int capture_reply_drop_msg2(void *arg, int from, int to, uint8_t *pkt, size_t *len)
{
    cr_capture *c = arg;
    (void)from;
    (void)to;
    if ((pkt[0] & 0x0f) == 3 && *len == 72 && !c->have) {
        memcpy(c->reply, pkt, 72);
        c->have = 1;
    }
    if ((pkt[0] & 0x0f) == 2 && pkt[11] == 1)
        c->msg1++;
    return !((pkt[0] & 0x0f) == 2 && pkt[11] == 2); /* message 2 never arrives */
}

static void test_cookie_reply_replay(void **state)
{
    itr_settings ss;
    cr_capture c;
    (void)state;
    memset(&c, 0, sizeof(c));
    tsettings(&ss, 1);
    ss.cookie_mode = ITR_COOKIE_ALWAYS;
    world *w = world_new(&ss, NULL);
    memnet_set_filter(w->net, capture_reply_drop_msg2, &c);
    itr_peer_id id;
    assert_int_equal(itr_endpoint_connect(w->cli.ep, &w->srv.addr, w->srv.pub, ITR_SUITE_AESGCM,
                                          memnet_now(w->net), &id),
                     ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(10));
    assert_true(c.have);
    assert_int_equal(c.msg1, 2); /* without and with the cookie */
    assert_int_equal(memnet_inject(w->net, w->cli.node, &w->srv.addr, c.reply, 72),
                     -(1 + ITR_DROP_HANDSHAKE_STATE));
    memnet_advance(w->net, memnet_now(w->net) + MS(10));
    assert_int_equal(c.msg1, 2);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_handshake_aesgcm),
        cmocka_unit_test(test_handshake_chachapoly),
        cmocka_unit_test(test_handshake_ipv6),
        cmocka_unit_test(test_cookie_always),
        cmocka_unit_test(test_cookie_under_load),
        cmocka_unit_test(test_cookie_off),
        cmocka_unit_test(test_cookie_reply_replay),
        cmocka_unit_test(test_pinned_key_mismatch),
        cmocka_unit_test(test_wrong_pinned_key_no_answer),
        cmocka_unit_test(test_allowlist_refused),
        cmocka_unit_test(test_close_and_stale_ids),
        cmocka_unit_test(test_idle_keepalive),
        cmocka_unit_test(test_replaced),
        cmocka_unit_test(test_peers_iteration),
        cmocka_unit_test(test_max_peers),
        cmocka_unit_test(test_send_errors),
        cmocka_unit_test(test_memory_per_session),
        cmocka_unit_test(test_failing_allocator),
        cmocka_unit_test(test_conn_id_residue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
