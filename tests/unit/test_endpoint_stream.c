/* test_endpoint_stream.c: Reliable and Realtime delivery through a lossy in-memory network
 * (100,000 messages each: 5% loss, 2% reordering, 2% duplication), the 256-message window
 * stalling on late, out-of-order application acknowledgements and resuming, the DEFER path,
 * tx pool exhaustion and the `writable` callback, and the reorder buffer bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "itr_session.h"
#include "itr_wire.h"
#include "memnet.h"
#include "test_endpoint_util.h"

#define N_MESSAGES 100000u

typedef struct stream {
    memnet *net;
    tpeer srv, cli;
    itr_peer_id cid, sid;
    /* receiver bookkeeping */
    uint32_t expect;    /* next Reliable seq expected */
    uint64_t delivered; /* Reliable messages taken */
    uint8_t *seen;      /* Realtime: counter seen */
    uint64_t rt_delivered, rt_dups;
    int ack_inline; /* ack inside the callback */
    uint32_t held[ITR_RELIABLE_WINDOW * 2];
    size_t nheld;
    uint32_t defer_seq; /* refuse this seq ... */
    int defer_times;    /* ... this many times */
    int deferred;
    uint64_t acked_seen;
    uint32_t next_acked; /* acked callbacks must come in order */
    int writable_flag;
} stream;

static int stream_message(tpeer *p, const itr_message *m)
{
    stream *s = p->user;
    if (m->intent == ITR_INTENT_REALTIME) {
        uint32_t k;
        assert_int_equal(m->body_len, 64);
        memcpy(&k, m->body, 4);
        assert_true(k < N_MESSAGES);
        assert_int_equal(m->seq, k); /* the sender's Realtime counter */
        if (s->seen[k])
            s->rt_dups++;
        s->seen[k] = 1;
        s->rt_delivered++;
        return ITR_OK;
    }
    /* Reliable: in order, exactly once, intact. */
    assert_int_equal(m->seq, s->expect);
    assert_int_equal(m->topic_len, 9);
    assert_memory_equal(m->topic, "telemetry", 9);
    assert_int_equal(m->body_len, 4 + (m->seq % 200));
    uint32_t k;
    memcpy(&k, m->body, 4);
    assert_int_equal(k, m->seq);
    for (size_t i = 4; i < m->body_len; i++)
        assert_int_equal(m->body[i], (uint8_t)(m->seq + i));
    if (s->defer_times > 0 && m->seq == s->defer_seq) {
        s->defer_times--;
        s->deferred++;
        return ITR_ERR_WOULDBLOCK;
    }
    s->expect++;
    s->delivered++;
    if (s->ack_inline)
        assert_int_equal(itr_endpoint_ack(p->ep, m->peer, m->seq, memnet_now(p->net)), ITR_OK);
    else
        s->held[s->nheld++] = m->seq;
    return ITR_OK;
}

static void stream_acked(tpeer *p, itr_peer_id peer, uint32_t seq)
{
    stream *s = p->user;
    (void)peer;
    /* The sender learns of acknowledgements in stream order (cumulative ack). */
    assert_int_equal(seq, s->next_acked);
    s->next_acked++;
    s->acked_seen++;
}

static void stream_writable(tpeer *p, itr_peer_id peer)
{
    stream *s = p->user;
    (void)peer;
    s->writable_flag = 1;
}

static stream *stream_new(const memnet_config *mc, const itr_settings *srv, const itr_settings *cli)
{
    stream *s = test_calloc(1, sizeof(*s));
    assert_int_equal(memnet_new(&s->net, mc, SEC(100)), 0);
    tpeer_init(&s->srv, s->net, 7400, 1, srv);
    tpeer_init(&s->cli, s->net, 40000, 2, cli);
    s->srv.user = s->cli.user = s;
    s->srv.on_message = stream_message;
    s->cli.on_acked = stream_acked;
    s->cli.on_writable = stream_writable;
    s->ack_inline = 1;
    s->seen = test_calloc(1, N_MESSAGES);
    s->cid = tconnect(&s->cli, &s->srv, ITR_SUITE_AESGCM);
    s->sid = tpeer_find(&s->srv, &s->cli);
    return s;
}

static void stream_free(stream *s)
{
    tpeer_free(&s->cli);
    tpeer_free(&s->srv);
    memnet_free(s->net);
    test_free(s->seen);
    test_free(s);
}

static int send_reliable(stream *s, uint32_t k)
{
    uint8_t body[4 + 200];
    size_t len = 4 + (k % 200);
    memcpy(body, &k, 4);
    for (size_t i = 4; i < len; i++)
        body[i] = (uint8_t)(k + i);
    uint32_t seq = UINT32_MAX;
    int rc = itr_endpoint_send(s->cli.ep, s->cid, ITR_INTENT_RELIABLE, (uint8_t)(k % 8),
                               "telemetry", 9, body, len, memnet_now(s->net), &seq);
    if (rc == ITR_OK)
        assert_int_equal(seq, k);
    return rc;
}

static void lossy_config(memnet_config *mc, uint64_t seed)
{
    memnet_config_default(mc);
    mc->seed = seed;
    mc->loss = 0.05;
    mc->reorder = 0.02;
    mc->dup = 0.02;
    mc->latency_ns = MS(1);
    mc->jitter_ns = 200000;
    mc->reorder_delay_ns = MS(3);
}

static void fast_settings(itr_settings *s, uint8_t seed)
{
    tsettings(s, seed);
    /* The stream, not the rate limiter, is under test here. */
    s->rate_limit_pps = 1000000;
    s->rate_limit_burst = 10000;
}

static void test_reliable_100k_lossy(void **state)
{
    memnet_config mc;
    itr_settings ss, cs;
    (void)state;
    lossy_config(&mc, 7);
    fast_settings(&ss, 1);
    fast_settings(&cs, 2);
    stream *s = stream_new(&mc, &ss, &cs);
    uint64_t t0 = memnet_now(s->net);
    uint32_t sent = 0;
    uint64_t steps = 0;
    while (s->acked_seen < N_MESSAGES && memnet_now(s->net) - t0 < SEC(600) && steps < 50000000) {
        while (sent < N_MESSAGES) {
            int rc = send_reliable(s, sent);
            if (rc == ITR_ERR_WOULDBLOCK)
                break;
            assert_int_equal(rc, ITR_OK);
            sent++;
        }
        memnet_run(s->net, SEC(10), 1, NULL, NULL);
        steps++;
    }
    assert_int_equal(s->delivered, N_MESSAGES);
    assert_int_equal(s->acked_seen, N_MESSAGES);
    assert_int_equal(s->expect, N_MESSAGES);
    itr_stats cst, sst;
    tstats(&s->cli, &cst);
    tstats(&s->srv, &sst);
    memnet_stats ns;
    memnet_stats_get(s->net, &ns);
    print_message("reliable 100k: %.1f s protocol time, %llu retransmits, %llu lost, %llu dup, "
                  "%llu reordered; receiver drops: duplicate %llu replay %llu\n",
                  (double)(memnet_now(s->net) - t0) / 1e9, (unsigned long long)cst.retransmits,
                  (unsigned long long)ns.lost, (unsigned long long)ns.duplicated,
                  (unsigned long long)ns.reordered,
                  (unsigned long long)sst.dropped[ITR_DROP_DUPLICATE],
                  (unsigned long long)sst.dropped[ITR_DROP_REPLAY]);
    assert_true(cst.retransmits > 0);
    assert_true(sst.dropped[ITR_DROP_REPLAY] > 0); /* network duplicates stopped by the window */
    assert_int_equal(cst.tx_pool_in_use, 0);
    assert_int_equal(sst.reorder_bytes, 0);
    assert_int_equal(cst.strike_events + sst.strike_events, 0);
    assert_int_equal(s->srv.closes + s->cli.closes, 0);
    itr_peer_info info;
    assert_int_equal(itr_endpoint_peer_info(s->cli.ep, s->cid, &info), ITR_OK);
    assert_int_equal(info.unacked_out, 0);
    assert_int_equal(info.msgs_out, N_MESSAGES);
    assert_true(info.rtt_ns >= MS(2) && info.rtt_ns < MS(50));
    assert_int_equal(itr_endpoint_peer_info(s->srv.ep, s->sid, &info), ITR_OK);
    assert_int_equal(info.unacked_in, 0);
    assert_int_equal(info.msgs_in, N_MESSAGES);
    stream_free(s);
}

static void test_realtime_100k_lossy(void **state)
{
    memnet_config mc;
    itr_settings ss, cs;
    (void)state;
    lossy_config(&mc, 11);
    fast_settings(&ss, 1);
    fast_settings(&cs, 2);
    stream *s = stream_new(&mc, &ss, &cs);
    uint8_t body[64];
    memset(body, 0xab, sizeof(body));
    uint32_t sent = 0;
    uint64_t t = memnet_now(s->net);
    /* 50 messages per millisecond. */
    while (sent < N_MESSAGES) {
        for (int i = 0; i < 50 && sent < N_MESSAGES; i++, sent++) {
            uint32_t seq;
            memcpy(body, &sent, 4);
            assert_int_equal(itr_endpoint_send(s->cli.ep, s->cid, ITR_INTENT_REALTIME, 1, "pos", 3,
                                               body, sizeof(body), memnet_now(s->net), &seq),
                             ITR_OK);
            assert_int_equal(seq, sent);
        }
        t += MS(1);
        memnet_advance(s->net, t);
    }
    memnet_advance(s->net, t + MS(50));
    memnet_stats ns;
    memnet_stats_get(s->net, &ns);
    itr_stats sst;
    tstats(&s->srv, &sst);
    print_message("realtime 100k: delivered %llu, lost %llu, duplicated %llu, replay drops %llu\n",
                  (unsigned long long)s->rt_delivered, (unsigned long long)ns.lost,
                  (unsigned long long)ns.duplicated,
                  (unsigned long long)sst.dropped[ITR_DROP_REPLAY]);
    /* Never duplicated; only what the network lost is missing. */
    assert_int_equal(s->rt_dups, 0);
    assert_true(s->rt_delivered <= N_MESSAGES);
    assert_true(s->rt_delivered >= N_MESSAGES - ns.lost - 200);
    assert_true(s->rt_delivered >= N_MESSAGES * 9 / 10);
    assert_true(sst.dropped[ITR_DROP_REPLAY] > 0);
    /* Realtime never waits behind or leaves gaps in the Reliable stream. */
    assert_int_equal(send_reliable(s, 0), ITR_OK);
    assert_true(trun_until_u64(s->net, &s->acked_seen, 1, SEC(5)));
    stream_free(s);
}

/* ---- window stall with late, out-of-order acknowledgements ---- */

typedef struct ka_count {
    uint64_t ack_requests;
} ka_count;

static void test_window_stall_and_resume(void **state)
{
    memnet_config mc;
    (void)state;
    memnet_config_default(&mc);
    stream *s = stream_new(&mc, NULL, NULL);
    s->ack_inline = 0;
    uint32_t sent = 0;
    int rc;
    while ((rc = send_reliable(s, sent)) == ITR_OK)
        sent++;
    assert_int_equal(rc, ITR_ERR_WOULDBLOCK);
    assert_int_equal(sent, ITR_RELIABLE_WINDOW);
    /* Everything arrives; nothing is acknowledged by the application. */
    assert_true(trun_until_u64(s->net, &s->delivered, ITR_RELIABLE_WINDOW, SEC(2)));
    itr_stats before;
    tstats(&s->cli, &before);
    memnet_advance(s->net, memnet_now(s->net) + SEC(10));
    itr_stats after;
    tstats(&s->cli, &after);
    /* Held by the receiving application: the sender probes, it does not retransmit. */
    assert_int_equal(after.retransmits, before.retransmits);
    assert_int_equal(s->acked_seen, 0);
    assert_int_equal(send_reliable(s, sent), ITR_ERR_WOULDBLOCK);
    itr_peer_info info;
    assert_int_equal(itr_endpoint_peer_info(s->srv.ep, s->sid, &info), ITR_OK);
    assert_int_equal(info.unacked_in, ITR_RELIABLE_WINDOW);
    assert_int_equal(itr_endpoint_peer_info(s->cli.ep, s->cid, &info), ITR_OK);
    assert_int_equal(info.unacked_out, ITR_RELIABLE_WINDOW);

    uint64_t now = memnet_now(s->net);
    /* Invalid acknowledgements. */
    assert_int_equal(itr_endpoint_ack(s->srv.ep, s->sid, ITR_RELIABLE_WINDOW, now),
                     ITR_ERR_INVALID);
    assert_int_equal(itr_endpoint_ack(s->srv.ep, s->sid, UINT32_MAX, now), ITR_ERR_INVALID);
    /* Out of order: 5..9 first: the cumulative ack does not move. */
    for (uint32_t q = 5; q < 10; q++)
        assert_int_equal(itr_endpoint_ack(s->srv.ep, s->sid, q, now), ITR_OK);
    assert_int_equal(itr_endpoint_ack(s->srv.ep, s->sid, 7, now), ITR_ERR_INVALID);
    itr_endpoint_flush(s->srv.ep, now);
    memnet_advance(s->net, now + MS(20));
    assert_int_equal(s->acked_seen, 0);
    assert_int_equal(itr_endpoint_peer_info(s->srv.ep, s->sid, &info), ITR_OK);
    assert_int_equal(info.unacked_in, ITR_RELIABLE_WINDOW - 5);
    /* 0..4: now 0..9 are acknowledged, the window opens by 10 and writable fires. */
    now = memnet_now(s->net);
    s->writable_flag = 0;
    for (uint32_t q = 0; q < 5; q++)
        assert_int_equal(itr_endpoint_ack(s->srv.ep, s->sid, q, now), ITR_OK);
    itr_endpoint_flush(s->srv.ep, now);
    assert_true(trun_until_u64(s->net, &s->acked_seen, 10, SEC(1)));
    assert_int_equal(s->acked_seen, 10);
    assert_true(s->writable_flag);
    for (int i = 0; i < 10; i++, sent++)
        assert_int_equal(send_reliable(s, sent), ITR_OK);
    assert_int_equal(send_reliable(s, sent), ITR_ERR_WOULDBLOCK);
    /* The rest in reverse order, then the stream completes. */
    assert_true(trun_until_u64(s->net, &s->delivered, sent, SEC(2)));
    now = memnet_now(s->net);
    for (uint32_t q = sent; q-- > 10;)
        assert_int_equal(itr_endpoint_ack(s->srv.ep, s->sid, q, now), ITR_OK);
    itr_endpoint_flush(s->srv.ep, now);
    assert_true(trun_until_u64(s->net, &s->acked_seen, sent, SEC(5)));
    assert_int_equal(itr_endpoint_peer_info(s->cli.ep, s->cid, &info), ITR_OK);
    assert_int_equal(info.unacked_out, 0);
    assert_int_equal(itr_endpoint_peer_info(s->srv.ep, s->sid, &info), ITR_OK);
    assert_int_equal(info.unacked_in, 0);
    stream_free(s);
}

/* The last ACK is lost: the sender's ACK_REQUEST probe recovers it without retransmitting. */
static int drop_acks(void *arg, int from, int to, uint8_t *pkt, size_t *len)
{
    int *on = arg;
    (void)to;
    (void)len;
    return !(*on && from == 0 && (pkt[0] & 0x0f) == ITR_PT_ACK);
}

static void test_probe_recovers_lost_ack(void **state)
{
    memnet_config mc;
    int dropping = 0;
    (void)state;
    memnet_config_default(&mc);
    stream *s = stream_new(&mc, NULL, NULL);
    memnet_set_filter(s->net, drop_acks, &dropping);
    s->ack_inline = 0;
    for (uint32_t k = 0; k < 3; k++)
        assert_int_equal(send_reliable(s, k), ITR_OK);
    assert_true(trun_until_u64(s->net, &s->delivered, 3, SEC(1)));
    memnet_advance(s->net, memnet_now(s->net) + MS(50)); /* received reported */
    dropping = 1;
    uint64_t now = memnet_now(s->net);
    for (uint32_t k = 0; k < 3; k++)
        assert_int_equal(itr_endpoint_ack(s->srv.ep, s->sid, k, now), ITR_OK);
    itr_endpoint_flush(s->srv.ep, now);
    memnet_advance(s->net, now + MS(5));
    assert_int_equal(s->acked_seen, 0);
    dropping = 0;
    itr_stats before, after;
    tstats(&s->cli, &before);
    assert_true(trun_until_u64(s->net, &s->acked_seen, 3, SEC(3)));
    tstats(&s->cli, &after);
    assert_int_equal(after.retransmits, before.retransmits);
    stream_free(s);
}

/* ---- DEFER ---- */

static void test_defer(void **state)
{
    memnet_config mc;
    (void)state;
    memnet_config_default(&mc);
    mc.reorder = 0.3;
    mc.reorder_delay_ns = MS(2);
    mc.seed = 3;
    stream *s = stream_new(&mc, NULL, NULL);
    s->defer_seq = 10;
    s->defer_times = 3;
    uint32_t sent = 0;
    uint64_t t0 = memnet_now(s->net);
    while (s->acked_seen < 200 && memnet_now(s->net) - t0 < SEC(60)) {
        while (sent < 200 && send_reliable(s, sent) == ITR_OK)
            sent++;
        memnet_run(s->net, SEC(10), 1, NULL, NULL);
    }
    assert_int_equal(s->delivered, 200);
    assert_int_equal(s->deferred, 3);
    assert_int_equal(tstat_drop(&s->srv, ITR_DROP_DEFERRED), 3);
    itr_stats st;
    tstats(&s->srv, &st);
    assert_int_equal(st.reorder_bytes, 0);
    /* Deferring a message that may come out of the reorder buffer. */
    s->defer_seq = 250;
    s->defer_times = 2;
    while (s->acked_seen < 400 && memnet_now(s->net) - t0 < SEC(120)) {
        while (sent < 400 && send_reliable(s, sent) == ITR_OK)
            sent++;
        memnet_run(s->net, SEC(10), 1, NULL, NULL);
    }
    assert_int_equal(s->delivered, 400);
    assert_int_equal(s->deferred, 5);
    tstats(&s->srv, &st);
    assert_int_equal(st.reorder_bytes, 0);
    stream_free(s);
}

/* ---- shared pool exhaustion and writable ---- */

static void test_tx_pool_writable(void **state)
{
    memnet_config mc;
    itr_settings cs;
    (void)state;
    memnet_config_default(&mc);
    tsettings(&cs, 2);
    cs.tx_pool_slots = 10;
    stream *s = stream_new(&mc, NULL, &cs);
    uint32_t sent = 0;
    while (send_reliable(s, sent) == ITR_OK)
        sent++;
    assert_int_equal(sent, 10);
    itr_stats st;
    tstats(&s->cli, &st);
    assert_int_equal(st.tx_pool_in_use, 10);
    s->writable_flag = 0;
    assert_true(trun_until_u64(s->net, &s->acked_seen, 1, SEC(1)));
    assert_true(s->writable_flag);
    assert_int_equal(s->cli.writable, 1);
    uint64_t t0 = memnet_now(s->net);
    while (s->acked_seen < 1000 && memnet_now(s->net) - t0 < SEC(30)) {
        while (sent < 1000 && send_reliable(s, sent) == ITR_OK)
            sent++;
        memnet_run(s->net, SEC(10), 1, NULL, NULL);
    }
    assert_int_equal(s->delivered, 1000);
    tstats(&s->cli, &st);
    assert_int_equal(st.tx_pool_in_use, 0);
    stream_free(s);
}

/* ---- reorder bound ---- */

static int drop_first_data(void *arg, int from, int to, uint8_t *pkt, size_t *len)
{
    int *n = arg;
    (void)to;
    (void)len;
    if (from == 1 && (pkt[0] & 0x0f) == ITR_PT_DATA && *n > 0) {
        (*n)--;
        return 0;
    }
    return 1;
}

static void test_reorder_full(void **state)
{
    memnet_config mc;
    itr_settings ss;
    int drop = 1;
    (void)state;
    memnet_config_default(&mc);
    tsettings(&ss, 1);
    ss.reorder_max_bytes = 600;
    stream *s = stream_new(&mc, &ss, NULL);
    memnet_set_filter(s->net, drop_first_data, &drop);
    uint32_t sent = 0;
    for (; sent < 50; sent++)
        assert_int_equal(send_reliable(s, sent), ITR_OK);
    assert_true(trun_until_u64(s->net, &s->acked_seen, 50, SEC(10)));
    assert_int_equal(s->delivered, 50);
    assert_true(tstat_drop(&s->srv, ITR_DROP_REORDER_FULL) > 0);
    itr_stats st;
    tstats(&s->srv, &st);
    assert_int_equal(st.reorder_bytes, 0);
    stream_free(s);
}

/* Both directions at once over a lossy network. */
static int echo_ack(tpeer *p, const itr_message *m)
{
    stream *s = p->user;
    s->rt_delivered++;
    assert_int_equal(itr_endpoint_ack(p->ep, m->peer, m->seq, memnet_now(p->net)), ITR_OK);
    return ITR_OK;
}

static void test_bidirectional(void **state)
{
    memnet_config mc;
    (void)state;
    lossy_config(&mc, 23);
    stream *s = stream_new(&mc, NULL, NULL);
    s->cli.on_message = echo_ack;
    uint32_t sent = 0, back = 0;
    uint64_t t0 = memnet_now(s->net);
    uint8_t b[8] = {0};
    while ((s->acked_seen < 3000 || s->srv.acked < 3000) && memnet_now(s->net) - t0 < SEC(120)) {
        while (sent < 3000 && send_reliable(s, sent) == ITR_OK)
            sent++;
        while (back < 3000 && itr_endpoint_send(s->srv.ep, s->sid, ITR_INTENT_RELIABLE, 0, "cmd", 3,
                                                b, sizeof(b), memnet_now(s->net), NULL) == ITR_OK)
            back++;
        memnet_run(s->net, SEC(10), 1, NULL, NULL);
    }
    assert_int_equal(s->delivered, 3000);
    assert_int_equal(s->rt_delivered, 3000);
    assert_int_equal(s->srv.acked, 3000);
    stream_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reliable_100k_lossy),
        cmocka_unit_test(test_realtime_100k_lossy),
        cmocka_unit_test(test_window_stall_and_resume),
        cmocka_unit_test(test_probe_recovers_lost_ack),
        cmocka_unit_test(test_defer),
        cmocka_unit_test(test_tx_pool_writable),
        cmocka_unit_test(test_reorder_full),
        cmocka_unit_test(test_bidirectional),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
