/* fuzz_packet.c: libFuzzer target for the endpoint's transport path. Each input is a script
 * run against a fresh responder/initiator pair with one established session (fixed keys,
 * deterministic randomness, scripted time): raw datagrams (optionally aimed at the live
 * keypair's conn_id so they pass the lookup), plaintexts sealed under the live keys (so every
 * frame parser, the Reliable stream and the strike logic are reachable), time jumps, and
 * application calls. Invariants checked on every step: Reliable delivery stays in order and
 * exactly once, timers never stay due after on_expiry, gauges stay within their bounds.
 *
 * Input: records of [op (1)] [len (1)] [len bytes]. Built with -DFUZZ_ENDPOINT_STANDALONE it
 * replays files given on the command line (ctest runs the seed corpus that way), and
 * `--make-seeds DIR` writes the seed corpus.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "itr_session.h"
#include "itr_wire.h"

#define MAX_RECORDS 256
#define PUMP_ROUNDS 32
#define MS_NS       1000000ull

typedef struct side {
    itr_endpoint *ep;
    itr_addr addr;
    itr_peer_id peer;
    uint64_t rng;
    int open;
    int64_t last_seq; /* last Reliable seq delivered on this side, -1: none */
    uint32_t held[64];
    size_t nheld;
    int defer_next;
} side;

static uint64_t reliable_delivered; /* over all inputs (the replay reports it) */

typedef struct fz {
    side r, i;
    itr_addr other;
    uint64_t now;
} fz;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_packet invariant broken: %s\n", what);
    abort();
}

static void det_rng(void *arg, void *buf, size_t len)
{
    uint64_t *x = arg;
    uint8_t *p = buf;
    while (len) {
        uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        size_t n = len < 8 ? len : 8;
        memcpy(p, &z, n);
        p += n;
        len -= n;
    }
}

static void cb_open(void *user, const itr_peer_info *info)
{
    side *s = user;
    s->open = 1;
    s->peer = info->id;
    s->last_seq = -1;
    s->nheld = 0;
}

static void cb_close(void *user, itr_peer_id peer, itr_close_reason why)
{
    side *s = user;
    (void)why;
    if (peer == s->peer)
        s->open = 0;
}

static int cb_message(void *user, const itr_message *m)
{
    side *s = user;
    if (m->topic_len == 0 || m->topic_len > ITR_MAX_TOPIC ||
        !itr_topic_valid(m->topic, m->topic_len))
        fail("delivered an invalid topic");
    if (m->intent != ITR_INTENT_RELIABLE)
        return ITR_OK;
    if (s->defer_next) {
        s->defer_next = 0;
        return ITR_ERR_WOULDBLOCK;
    }
    if (s->last_seq >= 0 && m->seq != (uint32_t)(s->last_seq + 1))
        fail("Reliable delivery out of order or duplicated");
    if (s->last_seq < 0 && m->seq != 0)
        fail("Reliable stream does not start at 0");
    s->last_seq = m->seq;
    reliable_delivered++;
    if (s->nheld < 64)
        s->held[s->nheld++] = m->seq;
    return ITR_OK;
}

static itr_addr addr4(uint16_t port)
{
    itr_addr a;
    memset(&a, 0, sizeof(a));
    a.u.in.sin_family = AF_INET;
    a.u.in.sin_port = htons(port);
    a.u.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int same_addr(const itr_addr *a, const itr_addr *b)
{
    return a->u.in.sin_family == b->u.in.sin_family && a->u.in.sin_port == b->u.in.sin_port &&
           a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
}

static void check(fz *f, side *s)
{
    itr_stats st;
    itr_endpoint_stats(s->ep, &st);
    if (st.sessions_active > s->ep->set.max_peers)
        fail("sessions over max_peers");
    if (st.handshakes_in_flight > (uint64_t)s->ep->hs_resp_cap + s->ep->hs_init_cap)
        fail("handshake slots over their bound");
    if (st.tx_pool_in_use > s->ep->set.tx_pool_slots)
        fail("tx pool over its bound");
    if (st.reorder_bytes > (uint64_t)s->ep->set.reorder_max_bytes * s->ep->set.max_peers)
        fail("reorder bytes over their bound");
    if (itr_endpoint_tx_pending(s->ep) > s->ep->set.tx_ring_slots)
        fail("tx ring over its bound");
    (void)f;
}

static void deliver_ring(fz *f, side *from)
{
    itr_datagram dg[16];
    size_t n = itr_endpoint_tx_peek(from->ep, dg, 16);
    for (size_t k = 0; k < n; k++) {
        side *to = same_addr(&dg[k].addr, &f->r.addr)   ? &f->r
                   : same_addr(&dg[k].addr, &f->i.addr) ? &f->i
                                                        : NULL;
        if (dg[k].len > ITR_MAX_PACKET)
            fail("datagram over max_packet");
        if (to)
            itr_endpoint_recv(to->ep, &from->addr, dg[k].data, dg[k].len, f->now);
    }
    itr_endpoint_tx_consume(from->ep, n);
}

static void pump(fz *f)
{
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        if (!itr_endpoint_tx_pending(f->r.ep) && !itr_endpoint_tx_pending(f->i.ep))
            break;
        deliver_ring(f, &f->r);
        deliver_ring(f, &f->i);
        itr_endpoint_flush(f->r.ep, f->now);
        itr_endpoint_flush(f->i.ep, f->now);
    }
}

static void expire(fz *f)
{
    itr_endpoint_on_expiry(f->r.ep, f->now);
    itr_endpoint_on_expiry(f->i.ep, f->now);
    if (itr_endpoint_expiry(f->r.ep) <= f->now || itr_endpoint_expiry(f->i.ep) <= f->now)
        fail("a timer stayed due after on_expiry");
}

static int side_new(side *s, uint8_t key_seed, int responder, uint64_t now, uint64_t rng)
{
    itr_settings st;
    itr_callbacks cb;
    itr_settings_default(&st);
    for (int k = 0; k < ITR_KEY_LEN; k++)
        st.static_private[k] = (uint8_t)(key_seed + 3 * k + 1);
    st.accept_handshakes = responder;
    st.cookie_mode = ITR_COOKIE_OFF;
    st.max_peers = 4;
    st.max_handshakes_in_flight = 4;
    st.tx_ring_slots = 128;
    st.tx_pool_slots = 300;
    st.reorder_pool_slots = 64;
    st.reorder_max_bytes = 4096;
    st.aead_cache_entries = 8;
    st.rate_limit_pps = 100000;
    st.rate_limit_burst = 2000;
    memset(&cb, 0, sizeof(cb));
    cb.peer_open = cb_open;
    cb.peer_close = cb_close;
    cb.message = cb_message;
    s->rng = rng;
    s->last_seq = -1;
    if (itr_endpoint_new(&s->ep, &st, &cb, s, now) != ITR_OK)
        return -1;
    itr_endpoint_test_rng(s->ep, det_rng, &s->rng);
    /* A fixed cookie secret too, so a crash reproduces exactly. */
    memset(s->ep->jar.cur, 0x5c, sizeof(s->ep->jar.cur));
    return 0;
}

static int setup(fz *f)
{
    memset(f, 0, sizeof(*f));
    f->now = 1000 * MS_NS;
    f->r.addr = addr4(7400);
    f->i.addr = addr4(40000);
    f->other = addr4(40001);
    if (side_new(&f->r, 1, 1, f->now, 11) || side_new(&f->i, 2, 0, f->now, 22))
        return -1;
    uint8_t pub[ITR_KEY_LEN];
    itr_endpoint_public_key(f->r.ep, pub);
    itr_peer_id id;
    if (itr_endpoint_connect(f->i.ep, &f->r.addr, pub, ITR_SUITE_AESGCM, f->now, &id) != ITR_OK)
        return -1;
    for (int k = 0; k < 8 && !(f->r.open && f->i.open); k++) {
        f->now += MS_NS;
        pump(f);
    }
    if (!f->r.open || !f->i.open)
        fail("setup handshake did not complete");
    return 0;
}

static void teardown(fz *f)
{
    itr_endpoint_free(f->r.ep);
    itr_endpoint_free(f->i.ep);
}

/* The receiver's conn_id of its live keypair (0 once the session is gone). */
static uint32_t live_conn_id(const side *s)
{
    return itr_endpoint_test_conn_id(s->ep, s->peer);
}

static void app_action(fz *f, const uint8_t *d, size_t len)
{
    if (len == 0)
        return;
    side *s = (d[0] & 1) ? &f->r : &f->i;
    const char *topics[] = {"a", "fleet/pos", "x.y:z-1", "t"};
    const char *topic = topics[(d[0] >> 1) & 3];
    switch ((d[0] >> 3) % 6) {
    case 0: /* send Reliable */
    case 1: /* send Realtime */
        itr_endpoint_send(
            s->ep, s->peer, (d[0] >> 3) % 6 == 0 ? ITR_INTENT_RELIABLE : ITR_INTENT_REALTIME,
            (uint8_t)(len > 1 ? d[1] & 7 : 0), topic, strlen(topic), d + 1, len - 1, f->now, NULL);
        break;
    case 2: /* acknowledge held messages, in an order chosen by the input */
        for (size_t k = 1; k < len && s->nheld; k++) {
            size_t idx = d[k] % s->nheld;
            itr_endpoint_ack(s->ep, s->peer, s->held[idx], f->now);
            s->held[idx] = s->held[--s->nheld];
        }
        break;
    case 3: /* refuse the next Reliable message */
        s->defer_next = 1;
        break;
    case 4: /* bogus calls */
        itr_endpoint_ack(s->ep, s->peer, len > 4 ? ((uint32_t)d[1] << 24 | d[2]) : 0, f->now);
        itr_endpoint_ack(s->ep, s->peer ^ 0x100000000ull, 0, f->now);
        break;
    case 5:
        if (len > 1 && d[1] == 0xcc)
            itr_endpoint_close_peer(s->ep, s->peer, f->now);
        else
            itr_endpoint_flush(s->ep, f->now);
        break;
    }
}

static void run_record(fz *f, uint8_t op, const uint8_t *d, size_t len)
{
    uint8_t pkt[ITR_MAX_PACKET + 64];
    switch (op % 7) {
    case 0: /* raw datagram to the responder */
        itr_endpoint_recv(f->r.ep, &f->i.addr, d, len, f->now);
        break;
    case 1: /* raw, aimed at the live keypair (passes the conn_id lookup) */
    case 5: {
        side *to = op % 7 == 1 ? &f->r : &f->i;
        side *from = op % 7 == 1 ? &f->i : &f->r;
        memcpy(pkt, d, len);
        if (len >= 8)
            itr_put_u32(pkt + 4, live_conn_id(to));
        if (len >= 4)
            itr_put_u16(pkt + 2, (uint16_t)(len >= 16 ? len - 16 : 0));
        itr_endpoint_recv(to->ep, (len && (d[0] & 1)) ? &f->other : &from->addr, pkt, len, f->now);
        break;
    }
    case 2: /* sealed by the initiator's live keys: type, byte 1, plaintext */
    case 6: {
        side *from = op % 7 == 2 ? &f->i : &f->r;
        side *to = op % 7 == 2 ? &f->r : &f->i;
        if (len < 2)
            break;
        int n = itr_endpoint_test_seal(from->ep, from->peer, (uint8_t)(d[0] % 8), d[1], d + 2,
                                       len - 2, pkt, sizeof(pkt));
        if (n > 0 && (size_t)n <= ITR_MAX_PACKET)
            itr_endpoint_recv(to->ep, (d[0] & 0x80) ? &f->other : &from->addr, pkt, (size_t)n,
                              f->now);
        break;
    }
    case 3: { /* time passes */
        uint64_t ms = len >= 2 ? ((uint64_t)d[0] | (uint64_t)d[1] << 8) : (len ? d[0] : 1);
        f->now += ms * MS_NS;
        expire(f);
        break;
    }
    case 4:
        app_action(f, d, len);
        break;
    }
    itr_endpoint_flush(f->r.ep, f->now);
    itr_endpoint_flush(f->i.ep, f->now);
    pump(f);
    check(f, &f->r);
    check(f, &f->i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f;
    if (setup(&f) != 0) {
        teardown(&f);
        return 0;
    }
    size_t pos = 0;
    for (int rec = 0; rec < MAX_RECORDS && pos + 2 <= size; rec++) {
        uint8_t op = data[pos];
        size_t len = data[pos + 1];
        pos += 2;
        if (len > size - pos)
            len = size - pos;
        run_record(&f, op, data + pos, len);
        pos += len;
    }
    teardown(&f);
    return 0;
}

#ifdef FUZZ_ENDPOINT_STANDALONE
#include "fuzz_replay.h"
/* ---- seed corpus and replay without libFuzzer ---- */

typedef struct seed {
    uint8_t b[4096];
    size_t n;
} seed;

static void rec(seed *s, uint8_t op, const void *d, size_t len)
{
    s->b[s->n++] = op;
    s->b[s->n++] = (uint8_t)len;
    memcpy(s->b + s->n, d, len);
    s->n += len;
}

/* A sealed DATA frame record: type, byte1, mseq, envelope. */
static void rec_data(seed *s, uint8_t op, int reliable, uint32_t mseq, const char *topic,
                     const char *body)
{
    uint8_t d[200];
    size_t tl = strlen(topic), bl = strlen(body);
    d[0] = ITR_PT_DATA;
    d[1] = (uint8_t)(reliable ? 1 << 6 : 0);
    itr_put_u32(d + 2, mseq);
    d[6] = (uint8_t)tl;
    memcpy(d + 7, topic, tl);
    memcpy(d + 7 + tl, body, bl);
    rec(s, op, d, 7 + tl + bl);
}

static int write_seed(const char *dir, const char *name, const seed *s)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(s->b, 1, s->n, fp) != s->n) {
        perror(path);
        if (fp)
            fclose(fp);
        return -1;
    }
    return fclose(fp);
}

static int make_seeds(const char *dir)
{
    seed s;
    uint8_t d[64];
    int rc = 0;

    memset(&s, 0, sizeof(s));
    for (uint32_t k = 0; k < 5; k++)
        rec_data(&s, 2, 1, k, "fleet/pos", "hello");
    rec(&s, 4, (uint8_t[]){2 << 3 | 1, 0, 1, 2, 3, 4}, 6); /* responder acks */
    rec(&s, 3, (uint8_t[]){10, 0}, 2);
    rc |= write_seed(dir, "reliable_in_order", &s);

    memset(&s, 0, sizeof(s));
    rec_data(&s, 2, 1, 2, "t", "c");
    rec_data(&s, 2, 1, 1, "t", "b");
    rec_data(&s, 2, 1, 1, "t", "b");
    rec_data(&s, 2, 1, 0, "t", "a");
    rec_data(&s, 2, 1, 300, "t", "far");
    rec_data(&s, 2, 0, 7, "rt", "x");
    rec(&s, 3, (uint8_t[]){50, 0}, 2);
    rc |= write_seed(dir, "reliable_reorder_dup_window", &s);

    memset(&s, 0, sizeof(s));
    d[0] = ITR_PT_ACK;
    d[1] = 0;
    memset(d + 2, 0, 36);
    rec(&s, 2, d, 38);
    itr_put_u32(d + 2, 9);
    rec(&s, 2, d, 38);
    d[0] = ITR_PT_KEEPALIVE;
    d[2] = ITR_KA_ACK_REQUEST | ITR_KA_REKEY_REQUEST;
    rec(&s, 2, d, 3);
    d[2] = 0x80;
    rec(&s, 2, d, 3);
    d[0] = ITR_PT_DATA;
    memset(d + 2, 0, 8);
    rec(&s, 2, d, 6);
    rec(&s, 3, (uint8_t[]){0x30, 0x75}, 2); /* 30 s */
    d[0] = ITR_PT_CLOSE;
    d[2] = 1;
    rec(&s, 2, d, 3);
    rc |= write_seed(dir, "frames_and_strikes", &s);

    memset(&s, 0, sizeof(s));
    rec(&s, 4, (uint8_t[]){0 << 3 | 0, 1, 'a', 'b'}, 4); /* initiator sends Reliable */
    rec(&s, 4, (uint8_t[]){0 << 3 | 1, 2, 'c'}, 3);      /* responder sends Reliable */
    rec(&s, 4, (uint8_t[]){1 << 3 | 0, 3, 'r', 't'}, 4); /* Realtime */
    rec(&s, 4, (uint8_t[]){3 << 3 | 1}, 1);              /* responder defers the next */
    rec(&s, 4, (uint8_t[]){0 << 3 | 0, 1, 'd'}, 3);
    rec(&s, 3, (uint8_t[]){0xf4, 0x01}, 2); /* 500 ms: retransmission */
    rec(&s, 4, (uint8_t[]){2 << 3 | 1, 0, 0}, 3);
    rec(&s, 3, (uint8_t[]){0xe0, 0x2e}, 2); /* 12 s: keepalives */
    rec(&s, 4, (uint8_t[]){5 << 3 | 0, 0xcc}, 2);
    rc |= write_seed(dir, "app_calls_and_timers", &s);

    memset(&s, 0, sizeof(s));
    for (int k = 0; k < 12; k++)
        rec(&s, 3, (uint8_t[]){0x10, 0x27}, 2); /* 12 x 10 s: rekey, grace, keepalives */
    rec_data(&s, 2, 1, 0, "after/rekey", "x");
    rec_data(&s, 6, 1, 0, "down", "y");
    rc |= write_seed(dir, "rekey", &s);

    memset(&s, 0, sizeof(s));
    uint8_t raw[48];
    memset(raw, 0, sizeof(raw));
    raw[0] = 0x10; /* version 1, DATA */
    itr_put_u16(raw + 2, 32);
    rec(&s, 0, raw, 48);
    rec(&s, 1, raw, 48);
    raw[0] = 0x14; /* KEEPALIVE */
    rec(&s, 1, raw, 33);
    rec(&s, 5, raw, 33);
    raw[0] = 0x12; /* HANDSHAKE message 3 to a keypair */
    raw[11] = 3;
    rec(&s, 1, raw, 48);
    rc |= write_seed(dir, "raw", &s);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--make-seeds") == 0)
        return make_seeds(argv[2]);
    int n = fuzz_replay_files(argc, argv);
    if (n < 0)
        return 1;
    printf("replayed %d inputs, %llu Reliable deliveries\n", n,
           (unsigned long long)reliable_delivered);
    return 0;
}
#endif
