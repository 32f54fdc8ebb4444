/* test_endpoint_attacks.c: hostile input against the endpoint: forged (every bit flipped),
 * truncated, replayed, wrong-key, wrong-version and unknown-conn_id packets are dropped under
 * the right reason and never delivered; a spoofed handshake flood allocates no session and
 * bounded slots while an established session keeps delivering; the rate limit runs before any
 * AEAD; strikes close a session; roaming only after authentication; forged handshake
 * messages cannot cancel a real handshake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>

#include <cmocka.h>

#include "itr_session.h"
#include "itr_wire.h"
#include "memnet.h"
#include "test_endpoint_util.h"

typedef struct capture {
    int want_type; /* capture the next packet of this type from node `from` */
    int from;
    uint8_t pkt[ITR_MAX_PACKET];
    size_t len;
    int have;
    int hold; /* drop what was captured instead of forwarding it */
} capture;

static int capture_filter(void *arg, int from, int to, uint8_t *pkt, size_t *len)
{
    capture *c = arg;
    (void)to;
    if (!c->have && from == c->from && (pkt[0] & 0x0f) == c->want_type) {
        memcpy(c->pkt, pkt, *len);
        c->len = *len;
        c->have = 1;
        return !c->hold;
    }
    return 1;
}

typedef struct world {
    memnet *net;
    tpeer srv, cli;
    itr_peer_id cid, sid;
    capture cap;
} world;

static world *world_new(const itr_settings *ss)
{
    memnet_config mc;
    world *w = test_calloc(1, sizeof(*w));
    memnet_config_default(&mc);
    assert_int_equal(memnet_new(&w->net, &mc, SEC(10)), 0);
    tpeer_init(&w->srv, w->net, 7400, 1, ss);
    tpeer_init(&w->cli, w->net, 40000, 2, NULL);
    w->cap.want_type = -1;
    memnet_set_filter(w->net, capture_filter, &w->cap);
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

static uint64_t total_drops(const tpeer *p)
{
    itr_stats st;
    uint64_t n = 0;
    tstats(p, &st);
    for (int i = 0; i < ITR_DROP_REASON_COUNT; i++)
        n += st.dropped[i];
    return n;
}

/* A DATA packet (Reliable, delivered once) captured on its way to the server. */
static void capture_data(world *w, int hold)
{
    w->cap.want_type = ITR_PT_DATA;
    w->cap.from = w->cli.node;
    w->cap.have = 0;
    w->cap.hold = hold;
    assert_int_equal(itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_REALTIME, 2, "topic/a", 7,
                                       "payload-bytes", 13, memnet_now(w->net), NULL),
                     ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(5));
    assert_true(w->cap.have);
}

static void test_bit_flips(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    capture_data(w, 1);
    uint64_t delivered = w->srv.messages;
    uint8_t pkt[ITR_MAX_PACKET];
    /* Every single-bit change is dropped, counted once, and never delivered. */
    for (size_t bit = 0; bit < w->cap.len * 8; bit++) {
        memcpy(pkt, w->cap.pkt, w->cap.len);
        pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        uint64_t before = total_drops(&w->srv);
        int rc = memnet_inject(w->net, w->srv.node, &w->cli.addr, pkt, w->cap.len);
        assert_true(rc < 0);
        assert_int_equal(total_drops(&w->srv), before + 1);
        itr_drop_reason r = (itr_drop_reason)(-rc - 1);
        size_t byte = bit / 8;
        if (byte == 0 && bit % 8 >= 4)
            assert_int_equal(r, ITR_DROP_BAD_VERSION);
        else if (byte == 0)
            assert_true(r == ITR_DROP_BAD_TYPE || r == ITR_DROP_BAD_HEADER ||
                        r == ITR_DROP_TOO_SHORT || r == ITR_DROP_CRYPTO);
        else if (byte == 1 || byte == 2 || byte == 3)
            assert_true(r == ITR_DROP_BAD_HEADER || r == ITR_DROP_CRYPTO);
        else if (byte >= 4 && byte < 8)
            assert_int_equal(r, ITR_DROP_UNKNOWN_CONN);
        else if (byte >= 8 && byte < 12)
            assert_true(r == ITR_DROP_CRYPTO || r == ITR_DROP_REPLAY); /* counter seen */
        else
            assert_int_equal(r, ITR_DROP_CRYPTO);
    }
    assert_int_equal(w->srv.messages, delivered);
    /* The original still passes once, then is a replay. */
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, w->cap.pkt, w->cap.len),
                     ITR_OK);
    assert_int_equal(w->srv.messages, delivered + 1);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, w->cap.pkt, w->cap.len),
                     -(1 + ITR_DROP_REPLAY));
    assert_int_equal(w->srv.messages, delivered + 1);
    /* Unauthenticated garbage is never a strike. */
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.strike_events, 0);
    assert_int_equal(w->srv.closes, 0);
    world_free(w);
}

static void test_truncated_and_malformed(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    capture_data(w, 1);
    uint64_t delivered = w->srv.messages;
    for (size_t len = 0; len < w->cap.len; len++) {
        int rc = memnet_inject(w->net, w->srv.node, &w->cli.addr, w->cap.pkt, len);
        if (len < 16)
            assert_int_equal(rc, -(1 + ITR_DROP_TOO_SHORT));
        else
            assert_int_equal(rc, -(1 + ITR_DROP_BAD_HEADER)); /* payload_len mismatch */
    }
    /* Truncated but consistent: payload_len fixed to the shorter length. */
    uint8_t pkt[ITR_MAX_PACKET];
    for (size_t len = 16; len < w->cap.len; len++) {
        memcpy(pkt, w->cap.pkt, len);
        itr_put_u16(pkt + 2, (uint16_t)(len - 16));
        int rc = memnet_inject(w->net, w->srv.node, &w->cli.addr, pkt, len);
        assert_int_equal(rc, len < 32 ? -(1 + ITR_DROP_TOO_SHORT) : -(1 + ITR_DROP_CRYPTO));
    }
    /* Too long. */
    static uint8_t big[ITR_MAX_PACKET + 1];
    memcpy(big, w->cap.pkt, 16);
    itr_put_u16(big + 2, ITR_MAX_PACKET + 1 - 16);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, big, sizeof(big)),
                     -(1 + ITR_DROP_TOO_LONG));
    /* Wrong version, reserved type, unknown conn_id. */
    memcpy(pkt, w->cap.pkt, w->cap.len);
    pkt[0] = (uint8_t)(2 << 4 | (pkt[0] & 0x0f));
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, pkt, w->cap.len),
                     -(1 + ITR_DROP_BAD_VERSION));
    memcpy(pkt, w->cap.pkt, w->cap.len);
    pkt[0] = (uint8_t)(1 << 4 | 9);
    pkt[1] = 0;
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, pkt, w->cap.len),
                     -(1 + ITR_DROP_BAD_TYPE));
    memcpy(pkt, w->cap.pkt, w->cap.len);
    uint32_t cid;
    itr_get_u32(pkt + 4, &cid);
    itr_put_u32(pkt + 4, cid ^ 0x5a5a5a5a);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, pkt, w->cap.len),
                     -(1 + ITR_DROP_UNKNOWN_CONN));
    itr_put_u32(pkt + 4, 0);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, pkt, w->cap.len),
                     -(1 + ITR_DROP_UNKNOWN_CONN));
    assert_int_equal(w->srv.messages, delivered);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.dropped[ITR_DROP_TOO_LONG], 1);
    assert_int_equal(st.dropped[ITR_DROP_BAD_VERSION], 1);
    assert_int_equal(st.strike_events, 0);
    world_free(w);
}

static void test_wrong_key(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    /* A second, legitimate client; its packet re-addressed to the first one's keypair. */
    tpeer other;
    tpeer_init(&other, w->net, 40001, 3, NULL);
    itr_peer_id oid = tconnect(&other, &w->srv, ITR_SUITE_AESGCM);
    uint8_t pkt[128];
    const char pt[] = "\0\0\0\0\1tbody";
    int len = itr_endpoint_test_seal(other.ep, oid, ITR_PT_DATA, 0, (const uint8_t *)pt,
                                     sizeof(pt) - 1, pkt, sizeof(pkt));
    assert_true(len > 0);
    /* The server's keypair id for cli is the conn_id cli's packets carry. */
    itr_session *s = w->srv.ep->peers[(uint32_t)w->sid].s;
    uint32_t target = s->cur->local_id;
    itr_put_u32(pkt + 4, target);
    uint64_t delivered = w->srv.messages;
    assert_int_equal(memnet_inject(w->net, w->srv.node, &other.addr, pkt, (size_t)len),
                     -(1 + ITR_DROP_CRYPTO));
    assert_int_equal(w->srv.messages, delivered);
    /* The victim's address did not move. */
    assert_true(s->addr.u.in.sin_port == w->cli.addr.u.in.sin_port);
    tpeer_free(&other);
    world_free(w);
}

static void test_roaming(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    itr_session *s = w->srv.ep->peers[(uint32_t)w->sid].s;
    capture_data(w, 1);
    itr_addr evil = memnet_addr_v4(6666);
    /* A captured packet never delivered is fresh: relayed from elsewhere it authenticates and
     * the session follows it (what any on-path relay can do, PROTOCOL.md §5.2). */
    assert_int_equal(memnet_inject(w->net, w->srv.node, &evil, w->cap.pkt, w->cap.len), ITR_OK);
    assert_true(s->addr.u.in.sin_port == htons(6666));
    /* The next real packet moves it back; a replay or forgery from elsewhere does not. */
    assert_int_equal(itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_REALTIME, 0, "t", 1, "x", 1,
                                       memnet_now(w->net), NULL),
                     ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(5));
    assert_true(s->addr.u.in.sin_port == w->cli.addr.u.in.sin_port);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &evil, w->cap.pkt, w->cap.len),
                     -(1 + ITR_DROP_REPLAY));
    assert_true(s->addr.u.in.sin_port == w->cli.addr.u.in.sin_port);
    uint8_t forged[ITR_MAX_PACKET];
    memcpy(forged, w->cap.pkt, w->cap.len);
    forged[w->cap.len - 1] ^= 1;
    itr_put_u32(forged + 8, 1000);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &evil, forged, w->cap.len),
                     -(1 + ITR_DROP_CRYPTO));
    assert_true(s->addr.u.in.sin_port == w->cli.addr.u.in.sin_port);
    /* The client really moves (NAT rebinding): the session follows its first packet. */
    itr_addr moved = memnet_addr_v4(40999);
    memnet_set_addr(w->net, w->cli.node, &moved);
    w->cli.addr = moved;
    uint64_t before = w->srv.messages;
    assert_int_equal(itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_RELIABLE, 0, "t", 1, "x", 1,
                                       memnet_now(w->net), NULL),
                     ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(50));
    assert_int_equal(w->srv.messages, before + 1);
    assert_true(s->addr.u.in.sin_port == htons(40999));
    /* Replies reach the new address. */
    assert_int_equal(itr_endpoint_send(w->srv.ep, w->sid, ITR_INTENT_REALTIME, 0, "t", 1, "y", 1,
                                       memnet_now(w->net), NULL),
                     ITR_OK);
    before = w->cli.messages;
    memnet_advance(w->net, memnet_now(w->net) + MS(5));
    assert_int_equal(w->cli.messages, before + 1);
    world_free(w);
}

/* ---- spoofed handshake floods ---- */

static void flood(world *w, int n, int random_ips, uint64_t *max_slots)
{
    uint8_t m1[128], e[32];
    uint32_t resp, init;
    for (int i = 0; i < n; i++) {
        uint64_t r = memnet_rand(w->net);
        for (int j = 0; j < 32; j++)
            e[j] = (uint8_t)(memnet_rand(w->net) >> 24);
        tmsg1(m1, w->srv.pub, (uint32_t)r | 1, e, NULL);
        itr_addr from = memnet_addr_v4((uint16_t)(1024 + (r >> 32) % 60000));
        if (random_ips)
            from.u.in.sin_addr.s_addr = htonl((uint32_t)(0x0a000000u | ((r >> 40) & 0xffffff)));
        int rc = memnet_inject(w->net, w->srv.node, &from, m1, sizeof(m1));
        assert_true(rc == ITR_OK || rc < 0);
        itr_endpoint_test_hs_used(w->srv.ep, &resp, &init);
        if (resp > *max_slots)
            *max_slots = resp;
        /* Keep the real session busy meanwhile. */
        if (i % 100 == 0) {
            assert_int_equal(itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_RELIABLE, 0, "t", 1,
                                               "x", 1, memnet_now(w->net), NULL),
                             ITR_OK);
            memnet_advance(w->net, memnet_now(w->net) + MS(3));
        }
    }
}

static int ack_all(tpeer *p, const itr_message *m)
{
    assert_int_equal(itr_endpoint_ack(p->ep, m->peer, m->seq, memnet_now(p->net)), ITR_OK);
    return ITR_OK;
}

static void test_spoofed_flood_one_ip(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    w->srv.on_message = ack_all;
    size_t bytes = itr_endpoint_test_session_bytes(w->srv.ep);
    uint64_t max_slots = 0, msgs = w->srv.messages;
    flood(w, 10000, 0, &max_slots);
    itr_stats st;
    tstats(&w->srv, &st);
    print_message("flood from one IP: max slots %llu, per_ip drops %llu, cookies %llu\n",
                  (unsigned long long)max_slots,
                  (unsigned long long)st.dropped[ITR_DROP_HANDSHAKE_PER_IP],
                  (unsigned long long)st.cookies_sent);
    assert_true(max_slots <= w->srv.settings.max_handshakes_per_ip);
    assert_int_equal(st.sessions_active, 1);
    assert_int_equal(itr_endpoint_test_session_bytes(w->srv.ep), bytes);
    assert_true(st.dropped[ITR_DROP_HANDSHAKE_PER_IP] > 9000);
    assert_true(w->srv.sec[ITR_SEC_HANDSHAKE_FLOOD] > 9000);
    /* The established session kept delivering throughout. */
    assert_int_equal(w->srv.messages, msgs + 100);
    assert_int_equal(w->srv.closes + w->cli.closes, 0);
    world_free(w);
}

static void test_spoofed_flood_many_ips(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    w->srv.on_message = ack_all;
    uint64_t max_slots = 0, msgs = w->srv.messages;
    flood(w, 10000, 1, &max_slots);
    itr_stats st;
    tstats(&w->srv, &st);
    print_message("flood from random IPs: max slots %llu, cookies %llu\n",
                  (unsigned long long)max_slots, (unsigned long long)st.cookies_sent);
    /* Under load cookies are demanded: spoofers cannot answer, slots stay at the threshold. */
    assert_true(max_slots <= w->srv.settings.cookie_load_threshold);
    assert_true(st.cookies_sent > 9000);
    assert_int_equal(st.sessions_active, 1);
    assert_int_equal(w->srv.messages, msgs + 100);
    /* A real client still gets in (cookie round trip) during the flood. */
    tpeer late;
    tpeer_init(&late, w->net, 40002, 4, NULL);
    tconnect(&late, &w->srv, ITR_SUITE_CHACHAPOLY);
    tpeer_free(&late);
    world_free(w);
}

static void test_spoofed_flood_cookies_always(void **state)
{
    itr_settings ss;
    (void)state;
    tsettings(&ss, 1);
    ss.cookie_mode = ITR_COOKIE_ALWAYS;
    world *w = world_new(&ss);
    w->srv.on_message = ack_all;
    uint64_t max_slots = 0, msgs = w->srv.messages;
    flood(w, 10000, 1, &max_slots);
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(max_slots, 0);
    assert_int_equal(st.cookies_sent, 10000 + 1); /* + the real client's first attempt */
    assert_int_equal(st.dropped[ITR_DROP_COOKIE_REQUIRED], 10001);
    assert_int_equal(st.sessions_active, 1);
    assert_int_equal(w->srv.messages, msgs + 100);
    world_free(w);
}

static void test_handshake_limits(void **state)
{
    itr_settings ss;
    (void)state;
    tsettings(&ss, 1);
    ss.cookie_mode = ITR_COOKIE_OFF;
    ss.max_handshakes_in_flight = 20;
    world *w = world_new(&ss);
    uint64_t max_slots = 0;
    flood(w, 1000, 1, &max_slots);
    assert_int_equal(max_slots, 20);
    assert_true(tstat_drop(&w->srv, ITR_DROP_HANDSHAKE_LIMIT) > 900);
    /* The slots expire after handshake_timeout; then handshakes proceed again. */
    memnet_advance(w->net, memnet_now(w->net) + SEC(6));
    uint32_t resp, init;
    itr_endpoint_test_hs_used(w->srv.ep, &resp, &init);
    assert_int_equal(resp, 0);
    tpeer late;
    tpeer_init(&late, w->net, 40002, 4, NULL);
    tconnect(&late, &w->srv, ITR_SUITE_AESGCM);
    tpeer_free(&late);
    world_free(w);
}

/* A duplicate message 1 gets the stored message 2 back, without a second slot. */
static void test_duplicate_msg1(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    uint8_t m1[128], e[32];
    memset(e, 0x21, sizeof(e));
    tmsg1(m1, w->srv.pub, 777, e, NULL);
    itr_addr from = memnet_addr_v4(50505);
    itr_stats st0, st1;
    assert_int_equal(memnet_inject(w->net, w->srv.node, &from, m1, sizeof(m1)), ITR_OK);
    tstats(&w->srv, &st0);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &from, m1, sizeof(m1)), ITR_OK);
    tstats(&w->srv, &st1);
    assert_int_equal(st1.packets_sent, st0.packets_sent + 1); /* the stored message 2 again */
    uint32_t resp, init;
    itr_endpoint_test_hs_used(w->srv.ep, &resp, &init);
    assert_int_equal(resp, 1);
    /* Same I and e from another port: a separate attempt. */
    itr_addr other = memnet_addr_v4(50506);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &other, m1, sizeof(m1)), ITR_OK);
    itr_endpoint_test_hs_used(w->srv.ep, &resp, &init);
    assert_int_equal(resp, 2);
    /* Malformed message 1s. */
    uint8_t bad[128];
    memcpy(bad, m1, 128);
    bad[ITR_MSG1_SUITE_OFF] = 3;
    assert_int_equal(memnet_inject(w->net, w->srv.node, &from, bad, 128),
                     -(1 + ITR_DROP_BAD_HEADER));
    memcpy(bad, m1, 128);
    bad[ITR_MSG1_MAC1_OFF] ^= 1;
    assert_int_equal(memnet_inject(w->net, w->srv.node, &from, bad, 128), -(1 + ITR_DROP_BAD_MAC1));
    memcpy(bad, m1, 128);
    itr_put_u32(bad + 12, 0);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &from, bad, 128),
                     -(1 + ITR_DROP_BAD_HEADER));
    /* Payload not I || zeros (mac1 recomputed so only the payload is wrong). */
    tmsg1(bad, w->srv.pub, 778, e, NULL);
    itr_put_u32(bad + ITR_MSG1_PAYLOAD_OFF, 779);
    itr_cookie_keys ck;
    itr_cookie_keys_derive(&ck, w->srv.pub);
    itr_mac1_write(&ck, bad);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &from, bad, 128),
                     -(1 + ITR_DROP_BAD_HEADER));
    world_free(w);
}

/* Forged message 2 and 3 and cookie replies do not cancel a real handshake: the real
 * messages are held back by the filter, forgeries go first, then the real ones. */
typedef struct holder {
    uint8_t msg[2][ITR_MAX_PACKET]; /* [0] message 2, [1] message 3 */
    size_t len[2];
    uint64_t have[2];
} holder;

static int hold_filter(void *arg, int from, int to, uint8_t *pkt, size_t *len)
{
    holder *h = arg;
    (void)from;
    (void)to;
    if ((pkt[0] & 0x0f) != ITR_PT_HANDSHAKE || (pkt[11] != 2 && pkt[11] != 3))
        return 1;
    int k = pkt[11] - 2;
    if (h->have[k])
        return 1;
    memcpy(h->msg[k], pkt, *len);
    h->len[k] = *len;
    h->have[k] = 1;
    return 0;
}

static void test_forged_handshake_messages(void **state)
{
    memnet_config mc;
    holder h;
    uint8_t junk[ITR_MAX_PACKET];
    (void)state;
    memset(&h, 0, sizeof(h));
    world *w = test_calloc(1, sizeof(*w));
    memnet_config_default(&mc);
    assert_int_equal(memnet_new(&w->net, &mc, SEC(10)), 0);
    tpeer_init(&w->srv, w->net, 7400, 1, NULL);
    tpeer_init(&w->cli, w->net, 40000, 2, NULL);
    memnet_set_filter(w->net, hold_filter, &h);
    itr_peer_id id;
    assert_int_equal(itr_endpoint_connect(w->cli.ep, &w->srv.addr, w->srv.pub, ITR_SUITE_AESGCM,
                                          memnet_now(w->net), &id),
                     ITR_OK);
    assert_true(trun_until_u64(w->net, &h.have[0], 1, SEC(1)));
    /* Forged message 2 (real header, garbage body) and cookie replies. */
    memcpy(junk, h.msg[0], h.len[0]);
    for (size_t i = 16; i < h.len[0]; i++)
        junk[i] ^= 0xa5;
    assert_int_equal(memnet_inject(w->net, w->cli.node, &w->srv.addr, junk, h.len[0]),
                     -(1 + ITR_DROP_CRYPTO));
    uint8_t cr[72];
    memset(cr, 0x11, sizeof(cr));
    itr_header hd;
    memset(&hd, 0, sizeof(hd));
    hd.version = 1;
    hd.type = ITR_PT_COOKIE_REPLY;
    hd.payload_len = 56;
    itr_get_u32(h.msg[0] + 4, &hd.conn_id);
    itr_header_write(cr, &hd);
    assert_int_equal(memnet_inject(w->net, w->cli.node, &w->srv.addr, cr, sizeof(cr)),
                     -(1 + ITR_DROP_CRYPTO));
    hd.conn_id ^= 1;
    itr_header_write(cr, &hd);
    assert_int_equal(memnet_inject(w->net, w->cli.node, &w->srv.addr, cr, sizeof(cr)),
                     -(1 + ITR_DROP_HANDSHAKE_STATE));
    /* Message 2 sent to the responder is out of place. */
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, h.msg[0], h.len[0]),
                     -(1 + ITR_DROP_UNKNOWN_CONN));
    /* The real message 2 still works; message 3 is held in turn. */
    assert_int_equal(memnet_inject(w->net, w->cli.node, &w->srv.addr, h.msg[0], h.len[0]), ITR_OK);
    assert_true(h.have[1]);
    /* A second copy of message 2 is now out of state. */
    assert_int_equal(memnet_inject(w->net, w->cli.node, &w->srv.addr, h.msg[0], h.len[0]),
                     -(1 + ITR_DROP_HANDSHAKE_STATE));
    memcpy(junk, h.msg[1], h.len[1]);
    for (size_t i = 16; i < h.len[1]; i++)
        junk[i] ^= 0x5a;
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, junk, h.len[1]),
                     -(1 + ITR_DROP_CRYPTO));
    itr_addr evil = memnet_addr_v4(1234);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &evil, h.msg[1], h.len[1]),
                     -(1 + ITR_DROP_CRYPTO));
    assert_int_equal(w->srv.opens, 0);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, h.msg[1], h.len[1]), ITR_OK);
    assert_int_equal(w->srv.opens, 1);
    /* A retransmitted message 3 is answered with another CONFIRM, no second session. */
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, h.msg[1], h.len[1]), ITR_OK);
    assert_true(trun_until_u64(w->net, &w->cli.opens, 1, SEC(1)));
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.handshakes_completed, 1);
    assert_int_equal(st.sessions_active, 1);
    tpeer_free(&w->cli);
    tpeer_free(&w->srv);
    memnet_free(w->net);
    test_free(w);
}

/* ---- rate limit before decryption ---- */

static void test_rate_limit_before_aead(void **state)
{
    itr_settings ss;
    (void)state;
    tsettings(&ss, 1);
    ss.rate_limit_pps = 100;
    ss.rate_limit_burst = 10;
    world *w = world_new(&ss);
    memnet_advance(w->net, memnet_now(w->net) + SEC(1)); /* bucket full again */
    capture_data(w, 1);
    /* Forged packets (bad tag) with valid conn_id, all at one instant. */
    uint8_t pkt[ITR_MAX_PACKET];
    uint64_t hits0, misses0, hits1, misses1;
    itr_aead_cache_stats(w->srv.ep->aead, &hits0, &misses0);
    uint64_t crypto0 = tstat_drop(&w->srv, ITR_DROP_CRYPTO);
    for (int i = 0; i < 1000; i++) {
        memcpy(pkt, w->cap.pkt, w->cap.len);
        itr_put_u32(pkt + 8, (uint32_t)(5000 + i));
        pkt[w->cap.len - 1] ^= 0x80;
        int rc = itr_endpoint_recv(w->srv.ep, &w->cli.addr, pkt, w->cap.len, memnet_now(w->net));
        assert_true(rc == -(1 + ITR_DROP_RATE_LIMIT) || rc == -(1 + ITR_DROP_CRYPTO));
    }
    itr_aead_cache_stats(w->srv.ep->aead, &hits1, &misses1);
    uint64_t crypto = tstat_drop(&w->srv, ITR_DROP_CRYPTO) - crypto0;
    uint64_t limited = tstat_drop(&w->srv, ITR_DROP_RATE_LIMIT);
    print_message("rate limit: %llu AEAD attempts, %llu rate-limited of 1000\n",
                  (unsigned long long)((hits1 + misses1) - (hits0 + misses0)),
                  (unsigned long long)limited);
    /* The burst (minus the one captured packet) got an AEAD attempt, the rest none. */
    assert_true(crypto <= 10);
    assert_int_equal(crypto + limited, 1000);
    if (itr_crypto_have_aesgcm()) /* without AES-NI the cache is bypassed (EVP fallback) */
        assert_int_equal((hits1 + misses1) - (hits0 + misses0), crypto);
    /* Not strikes: the session lives. */
    assert_int_equal(w->srv.closes, 0);
    /* It refills: a real packet gets through a little later. */
    memnet_advance(w->net, memnet_now(w->net) + MS(100));
    uint64_t before = w->srv.messages;
    assert_int_equal(itr_endpoint_send(w->cli.ep, w->cid, ITR_INTENT_REALTIME, 0, "t", 1, "x", 1,
                                       memnet_now(w->net), NULL),
                     ITR_OK);
    memnet_advance(w->net, memnet_now(w->net) + MS(5));
    assert_int_equal(w->srv.messages, before + 1);
    world_free(w);
}

/* ---- strikes ---- */

static int seal_inject(world *w, uint8_t type, uint8_t byte1, const void *pt, size_t ptlen)
{
    uint8_t pkt[ITR_MAX_PACKET];
    int len = itr_endpoint_test_seal(w->cli.ep, w->cid, type, byte1, pt, ptlen, pkt, sizeof(pkt));
    assert_true(len > 0);
    return memnet_inject(w->net, w->srv.node, &w->cli.addr, pkt, (size_t)len);
}

static void test_strike_reasons(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    uint8_t b[64];
    memset(b, 0, sizeof(b));
    /* DATA shorter than mseq + topic_len + 1. */
    assert_int_equal(seal_inject(w, ITR_PT_DATA, 0, b, 5), -(1 + ITR_DROP_BAD_FRAME));
    /* Bad envelopes: topic_len 0, topic with a space, topic longer than the plaintext. */
    uint8_t env[16] = {0, 0, 0, 0, 0, 'a', 'b'};
    assert_int_equal(seal_inject(w, ITR_PT_DATA, 0, env, 7), -(1 + ITR_DROP_BAD_ENVELOPE));
    uint8_t env2[] = {0, 0, 0, 0, 2, 'a', ' '};
    assert_int_equal(seal_inject(w, ITR_PT_DATA, 0, env2, sizeof(env2)),
                     -(1 + ITR_DROP_BAD_ENVELOPE));
    uint8_t env3[] = {0, 0, 0, 0, 9, 'a', 'b'};
    assert_int_equal(seal_inject(w, ITR_PT_DATA, 0, env3, sizeof(env3)),
                     -(1 + ITR_DROP_BAD_ENVELOPE));
    /* Reliable beyond the 256-message window. */
    uint8_t far[] = {0, 0, 1, 0, 1, 't', 'x'};
    assert_int_equal(seal_inject(w, ITR_PT_DATA, 1 << 6, far, sizeof(far)), -(1 + ITR_DROP_WINDOW));
    /* ACK of the wrong size, and acknowledging what was never sent. */
    assert_int_equal(seal_inject(w, ITR_PT_ACK, 0, b, 35), -(1 + ITR_DROP_BAD_FRAME));
    uint8_t ack[36] = {0, 0, 0, 5};
    assert_int_equal(seal_inject(w, ITR_PT_ACK, 0, ack, 36), -(1 + ITR_DROP_BAD_ACK));
    /* KEEPALIVE with an unknown flag, CLOSE of the wrong size. */
    uint8_t ka = 0x08;
    assert_int_equal(seal_inject(w, ITR_PT_KEEPALIVE, 0, &ka, 1), -(1 + ITR_DROP_BAD_FRAME));
    assert_int_equal(seal_inject(w, ITR_PT_CLOSE, 0, b, 2), -(1 + ITR_DROP_BAD_FRAME));
    itr_stats st;
    tstats(&w->srv, &st);
    assert_int_equal(st.strike_events, 9);
    assert_int_equal(w->srv.sec[ITR_SEC_STRIKE], 9);
    assert_int_equal(w->srv.closes, 0);
    /* The tenth within 5 s closes the session with CLOSE(strikes). */
    assert_int_equal(seal_inject(w, ITR_PT_KEEPALIVE, 0, &ka, 1), -(1 + ITR_DROP_BAD_FRAME));
    assert_int_equal(w->srv.closes, 1);
    assert_int_equal(w->srv.last_close_reason, ITR_CLOSE_STRIKES);
    assert_int_equal(w->srv.sec[ITR_SEC_STRIKES_CLOSED], 1);
    memnet_advance(w->net, memnet_now(w->net) + MS(5));
    assert_int_equal(w->cli.closes, 1);
    assert_int_equal(w->cli.last_close_reason, ITR_CLOSE_REMOTE);
    world_free(w);
}

static void test_strikes_spread_out(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    uint8_t ka = 0x40;
    /* 30 violations, 9 per 5 s window at most: never 10 within the window. */
    for (int i = 0; i < 30; i++) {
        assert_int_equal(seal_inject(w, ITR_PT_KEEPALIVE, 0, &ka, 1), -(1 + ITR_DROP_BAD_FRAME));
        memnet_advance(w->net, memnet_now(w->net) + MS(600));
    }
    assert_int_equal(w->srv.closes, 0);
    /* Header ack beyond what the server sent is bad_ack too. */
    uint8_t pkt[64];
    uint8_t flags = 0;
    int len = itr_endpoint_test_seal(w->cli.ep, w->cid, ITR_PT_KEEPALIVE, 0, &flags, 1, pkt, 64);
    assert_true(len > 0);
    /* The ack field is authenticated: changing it after sealing is just a crypto drop. */
    itr_put_u32(pkt + 12, 77);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, pkt, (size_t)len),
                     -(1 + ITR_DROP_CRYPTO));
    itr_session *cs = w->cli.ep->peers[(uint32_t)w->cid].s;
    cs->rcv_ack = 77; /* a client that claims acknowledgements of messages never sent */
    len = itr_endpoint_test_seal(w->cli.ep, w->cid, ITR_PT_KEEPALIVE, 0, &flags, 1, pkt, 64);
    assert_int_equal(memnet_inject(w->net, w->srv.node, &w->cli.addr, pkt, (size_t)len),
                     -(1 + ITR_DROP_BAD_ACK));
    cs->rcv_ack = 0;
    world_free(w);
}

/* CLOSE ends the session at the receiver, which does not answer. */
static void test_close_frame(void **state)
{
    (void)state;
    world *w = world_new(NULL);
    uint8_t reason = ITR_CLOSE_LOCAL;
    assert_int_equal(seal_inject(w, ITR_PT_CLOSE, 0, &reason, 1), ITR_OK);
    assert_int_equal(w->srv.closes, 1);
    assert_int_equal(w->srv.last_close_reason, ITR_CLOSE_REMOTE);
    itr_stats st;
    tstats(&w->srv, &st);
    uint64_t sent = st.packets_sent;
    memnet_advance(w->net, memnet_now(w->net) + MS(10));
    tstats(&w->srv, &st);
    assert_int_equal(st.packets_sent, sent); /* no reply */
    assert_int_equal(w->cli.closes, 0);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_truncated_and_malformed),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_roaming),
        cmocka_unit_test(test_spoofed_flood_one_ip),
        cmocka_unit_test(test_spoofed_flood_many_ips),
        cmocka_unit_test(test_spoofed_flood_cookies_always),
        cmocka_unit_test(test_handshake_limits),
        cmocka_unit_test(test_duplicate_msg1),
        cmocka_unit_test(test_forged_handshake_messages),
        cmocka_unit_test(test_rate_limit_before_aead),
        cmocka_unit_test(test_strike_reasons),
        cmocka_unit_test(test_strikes_spread_out),
        cmocka_unit_test(test_close_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
