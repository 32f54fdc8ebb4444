/* test_endpoint_rekey.c: rekeying (PROTOCOL.md §8) with scripted time: rekeys during traffic
 * lose nothing and keep the Reliable stream; old keys are accepted for old_keys_grace and then
 * refused; keys past reject_after are never used (packets dropped, sessions closed); the
 * responder's REKEY_REQUEST; counter-based rekeying. */
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

typedef struct rk {
    memnet *net;
    tpeer srv, cli;
    itr_peer_id cid, sid;
    uint32_t expect_srv, expect_cli; /* next Reliable seq at each receiver */
    uint64_t got_srv, got_cli;
    int block_handshakes;
} rk;

static int rk_message(tpeer *p, const itr_message *m)
{
    rk *r = p->user;
    if (m->intent != ITR_INTENT_RELIABLE)
        return ITR_OK;
    uint32_t *expect = p == &r->srv ? &r->expect_srv : &r->expect_cli;
    assert_int_equal(m->seq, *expect);
    uint32_t k;
    assert_int_equal(m->body_len, 4);
    memcpy(&k, m->body, 4);
    assert_int_equal(k, m->seq);
    (*expect)++;
    if (p == &r->srv)
        r->got_srv++;
    else
        r->got_cli++;
    assert_int_equal(itr_endpoint_ack(p->ep, m->peer, m->seq, memnet_now(p->net)), ITR_OK);
    return ITR_OK;
}

static int rk_filter(void *arg, int from, int to, uint8_t *pkt, size_t *len)
{
    rk *r = arg;
    (void)from;
    (void)to;
    (void)len;
    return !(r->block_handshakes && (pkt[0] & 0x0f) == ITR_PT_HANDSHAKE);
}

static rk *rk_new(const memnet_config *mc, const itr_settings *ss, const itr_settings *cs)
{
    rk *r = test_calloc(1, sizeof(*r));
    assert_int_equal(memnet_new(&r->net, mc, SEC(50)), 0);
    tpeer_init(&r->srv, r->net, 7400, 1, ss);
    tpeer_init(&r->cli, r->net, 40000, 2, cs);
    r->srv.user = r->cli.user = r;
    r->srv.on_message = rk_message;
    r->cli.on_message = rk_message;
    memnet_set_filter(r->net, rk_filter, r);
    r->cid = tconnect(&r->cli, &r->srv, ITR_SUITE_AESGCM);
    r->sid = tpeer_find(&r->srv, &r->cli);
    return r;
}

static void rk_free(rk *r)
{
    tpeer_free(&r->cli);
    tpeer_free(&r->srv);
    memnet_free(r->net);
    test_free(r);
}

static int rk_send(rk *r, tpeer *p, itr_peer_id id, uint32_t k)
{
    return itr_endpoint_send(p->ep, id, ITR_INTENT_RELIABLE, 0, "s", 1, &k, 4, memnet_now(r->net),
                             NULL);
}

static itr_session *session_of(tpeer *p, itr_peer_id id)
{
    return p->ep->peers[(uint32_t)id].s;
}

static void test_rekey_during_traffic(void **state)
{
    memnet_config mc;
    (void)state;
    memnet_config_default(&mc);
    mc.seed = 5;
    mc.loss = 0.02;
    mc.reorder = 0.05;
    mc.reorder_delay_ns = MS(4);
    mc.jitter_ns = MS(1);
    rk *r = rk_new(&mc, NULL, NULL);
    uint32_t up = 0, down = 0;
    uint64_t t = memnet_now(r->net), end = t + SEC(400);
    /* 400 s at 500 messages/s up and 100/s down, across three rekeys. */
    while (memnet_now(r->net) < end) {
        for (int i = 0; i < 5; i++)
            if (rk_send(r, &r->cli, r->cid, up) == ITR_OK)
                up++;
        if (rk_send(r, &r->srv, r->sid, down) == ITR_OK)
            down++;
        t += MS(10);
        memnet_advance(r->net, t);
    }
    memnet_advance(r->net, t + SEC(2));
    assert_true(up > 190000);
    assert_int_equal(r->got_srv, up);
    assert_int_equal(r->got_cli, down);
    assert_int_equal(r->cli.closes + r->srv.closes, 0);
    itr_peer_info ci, si;
    assert_int_equal(itr_endpoint_peer_info(r->cli.ep, r->cid, &ci), ITR_OK);
    assert_int_equal(itr_endpoint_peer_info(r->srv.ep, r->sid, &si), ITR_OK);
    assert_int_equal(ci.rekeys, 3);
    assert_int_equal(si.rekeys, 3);
    assert_true(ci.session_id == si.session_id);
    assert_int_equal(ci.unacked_out, 0);
    itr_stats cst, sst;
    tstats(&r->cli, &cst);
    tstats(&r->srv, &sst);
    assert_int_equal(cst.rekeys, 3);
    assert_int_equal(sst.handshakes_completed, 4);
    assert_int_equal(sst.dropped[ITR_DROP_KEY_EXPIRED] + cst.dropped[ITR_DROP_KEY_EXPIRED], 0);
    assert_int_equal(sst.dropped[ITR_DROP_UNKNOWN_CONN] + cst.dropped[ITR_DROP_UNKNOWN_CONN], 0);
    /* After the grace only the current keypair remains. */
    assert_int_equal(itr_endpoint_test_session_bytes(r->srv.ep),
                     sizeof(itr_session) + sizeof(itr_keypair));
    rk_free(r);
}

static void test_old_keys_grace(void **state)
{
    memnet_config mc;
    uint8_t a[64], b[64], c[64], d[64];
    uint8_t flags = 0;
    (void)state;
    memnet_config_default(&mc);
    rk *r = rk_new(&mc, NULL, NULL);
    uint64_t opened = memnet_now(r->net);
    memnet_advance(r->net, opened + SEC(119));
    /* Packets sealed under the keys about to be replaced, delivered later. */
    int la = itr_endpoint_test_seal(r->cli.ep, r->cid, ITR_PT_KEEPALIVE, 0, &flags, 1, a, 64);
    int lb = itr_endpoint_test_seal(r->cli.ep, r->cid, ITR_PT_KEEPALIVE, 0, &flags, 1, b, 64);
    int lc = itr_endpoint_test_seal(r->srv.ep, r->sid, ITR_PT_KEEPALIVE, 0, &flags, 1, c, 64);
    int ld = itr_endpoint_test_seal(r->srv.ep, r->sid, ITR_PT_KEEPALIVE, 0, &flags, 1, d, 64);
    assert_int_equal(la, 33);
    assert_int_equal(lc, 33);
    uint32_t old_srv_id = itr_endpoint_test_conn_id(r->srv.ep, r->sid);
    memnet_advance(r->net, opened + SEC(125));
    assert_int_equal(session_of(&r->cli, r->cid)->rekeys, 1);
    assert_true(itr_endpoint_test_conn_id(r->srv.ep, r->sid) != old_srv_id);
    /* Within the grace: accepted on both sides. */
    assert_int_equal(memnet_inject(r->net, r->srv.node, &r->cli.addr, a, (size_t)la), ITR_OK);
    assert_int_equal(memnet_inject(r->net, r->cli.node, &r->srv.addr, c, (size_t)lc), ITR_OK);
    /* After it: the old keypair is gone. */
    memnet_advance(r->net, opened + SEC(136));
    assert_int_equal(memnet_inject(r->net, r->srv.node, &r->cli.addr, b, (size_t)lb),
                     -(1 + ITR_DROP_UNKNOWN_CONN));
    assert_int_equal(memnet_inject(r->net, r->cli.node, &r->srv.addr, d, (size_t)ld),
                     -(1 + ITR_DROP_UNKNOWN_CONN));
    assert_int_equal(r->cli.closes + r->srv.closes, 0);
    rk_free(r);
}

static void test_reject_after_closes(void **state)
{
    memnet_config mc;
    (void)state;
    memnet_config_default(&mc);
    rk *r = rk_new(&mc, NULL, NULL);
    uint64_t opened = memnet_now(r->net);
    r->block_handshakes = 1;
    /* Traffic keeps flowing under the old keys while rekeys fail... */
    memnet_advance(r->net, opened + SEC(170));
    assert_int_equal(rk_send(r, &r->cli, r->cid, 0), ITR_OK);
    memnet_advance(r->net, opened + SEC(171));
    assert_int_equal(r->got_srv, 1);
    assert_int_equal(r->cli.closes + r->srv.closes, 0);
    itr_stats st;
    tstats(&r->cli, &st);
    assert_true(st.handshakes_failed >= 9);
    /* ... until the keys are 180 s old: both sides stop using them. */
    memnet_advance(r->net, opened + SEC(181));
    assert_int_equal(r->cli.closes, 1);
    assert_int_equal(r->srv.closes, 1);
    assert_int_equal(r->cli.last_close_reason, ITR_CLOSE_KEY_EXPIRED);
    assert_int_equal(r->srv.last_close_reason, ITR_CLOSE_KEY_EXPIRED);
    rk_free(r);
}

static void test_key_expired_drop(void **state)
{
    memnet_config mc;
    itr_settings ss;
    uint8_t a[64];
    uint8_t flags = 0;
    (void)state;
    memnet_config_default(&mc);
    tsettings(&ss, 1);
    ss.old_keys_grace_ns = SEC(30); /* previous keys outlive their 180 s */
    rk *r = rk_new(&mc, &ss, NULL);
    uint64_t opened = memnet_now(r->net);
    r->block_handshakes = 1;
    memnet_advance(r->net, opened + SEC(170));
    int la = itr_endpoint_test_seal(r->cli.ep, r->cid, ITR_PT_KEEPALIVE, 0, &flags, 1, a, 64);
    /* A late rekey: the old keys live on as `previous` past their 180 s. */
    r->block_handshakes = 0;
    memnet_advance(r->net, opened + SEC(178));
    assert_int_equal(session_of(&r->cli, r->cid)->rekeys, 1);
    memnet_advance(r->net, opened + SEC(182));
    assert_non_null(session_of(&r->srv, r->sid)->prev);
    assert_int_equal(memnet_inject(r->net, r->srv.node, &r->cli.addr, a, (size_t)la),
                     -(1 + ITR_DROP_KEY_EXPIRED));
    assert_int_equal(r->cli.closes + r->srv.closes, 0);
    rk_free(r);
}

static void test_rekey_request(void **state)
{
    memnet_config mc;
    itr_settings ss, cs;
    (void)state;
    memnet_config_default(&mc);
    tsettings(&ss, 1);
    ss.rekey_after_ns = SEC(30);
    tsettings(&cs, 2);
    cs.rekey_after_ns = SEC(170);
    cs.reject_after_ns = SEC(230);
    rk *r = rk_new(&mc, &ss, &cs);
    uint64_t opened = memnet_now(r->net);
    memnet_advance(r->net, opened + SEC(39));
    assert_int_equal(session_of(&r->cli, r->cid)->rekeys, 0);
    /* The responder asks at rekey_after + 10 s; the initiator rekeys at once. */
    memnet_advance(r->net, opened + SEC(41));
    assert_int_equal(session_of(&r->cli, r->cid)->rekeys, 1);
    assert_int_equal(session_of(&r->srv, r->sid)->rekeys, 1);
    rk_free(r);
}

static void test_counter_rekey(void **state)
{
    memnet_config mc;
    (void)state;
    memnet_config_default(&mc);
    rk *r = rk_new(&mc, NULL, NULL);
    itr_session *cs = session_of(&r->cli, r->cid);
    /* Near the end of the counter space the initiator rekeys long before 120 s. */
    cs->cur->send_n = ITR_REKEY_AFTER_MESSAGES - 2;
    for (uint32_t k = 0; k < 4; k++)
        assert_int_equal(rk_send(r, &r->cli, r->cid, k), ITR_OK);
    memnet_advance(r->net, memnet_now(r->net) + SEC(1));
    assert_int_equal(r->got_srv, 4);
    assert_int_equal(cs->rekeys, 1);
    assert_true(cs->cur->send_n < 100);
    /* A keypair never sends at or beyond reject_after_messages. */
    cs->cur->send_n = ITR_REJECT_AFTER_MESSAGES;
    assert_int_equal(rk_send(r, &r->cli, r->cid, 4), ITR_ERR_WOULDBLOCK);
    assert_int_equal(itr_endpoint_send(r->cli.ep, r->cid, ITR_INTENT_REALTIME, 0, "s", 1, "x", 1,
                                       memnet_now(r->net), NULL),
                     ITR_ERR_WOULDBLOCK);
    rk_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rekey_during_traffic), cmocka_unit_test(test_old_keys_grace),
        cmocka_unit_test(test_reject_after_closes),  cmocka_unit_test(test_key_expired_drop),
        cmocka_unit_test(test_rekey_request),        cmocka_unit_test(test_counter_rekey),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
