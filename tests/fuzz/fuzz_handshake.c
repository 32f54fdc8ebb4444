/* fuzz_handshake.c: libFuzzer target for the handshake layer of the endpoint: fuzzed message
 * 1s (optionally with a valid mac1, so they get past the cheap checks), message 2s and cookie
 * replies aimed at the initiator's pending handshake, message 3s aimed at the responder's
 * slots, mutated copies of the real messages, real protocol steps, time jumps and reconnects,
 * in any order. Fixed keys, deterministic randomness, scripted time.
 *
 * Input: a config byte (cookie mode, suite, allowlist refusal), then records of
 * [op (1)] [len (1)] [len bytes]. Invariants: slots and sessions stay within their bounds, a
 * refused key never gets a session, timers never stay due after on_expiry. Built with
 * -DFUZZ_ENDPOINT_STANDALONE it replays files (the ctest over the seed corpus) and
 * `--make-seeds DIR` writes the seeds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "itr_cookie.h"
#include "itr_session.h"
#include "itr_wire.h"

#define MAX_RECORDS 128
#define MS_NS       1000000ull

typedef struct side {
    itr_endpoint *ep;
    itr_addr addr;
    uint64_t rng;
    uint64_t opens, closes;
    int refuse;
} side;

typedef struct fz {
    side r, i;
    itr_peer_id pending; /* initiator's latest connect */
    uint8_t r_pub[ITR_KEY_LEN];
    itr_suite suite;
    uint64_t now;
} fz;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_handshake invariant broken: %s\n", what);
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

static int cb_check(void *user, const uint8_t key[ITR_KEY_LEN], const itr_addr *from)
{
    side *s = user;
    (void)key;
    (void)from;
    return s->refuse ? -1 : 0;
}

static void cb_open(void *user, const itr_peer_info *info)
{
    side *s = user;
    (void)info;
    if (s->refuse)
        fail("a refused key got a session");
    s->opens++;
}

static void cb_close(void *user, itr_peer_id peer, itr_close_reason why)
{
    side *s = user;
    (void)peer;
    if ((unsigned)why >= ITR_CLOSE_REASON_COUNT)
        fail("close reason out of range");
    s->closes++;
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

static int side_new(side *s, uint8_t key_seed, int responder, itr_cookie_mode mode, uint64_t now,
                    uint64_t rng)
{
    itr_settings st;
    itr_callbacks cb;
    itr_settings_default(&st);
    for (int k = 0; k < ITR_KEY_LEN; k++)
        st.static_private[k] = (uint8_t)(key_seed + 5 * k + 3);
    st.accept_handshakes = responder;
    st.cookie_mode = mode;
    st.cookie_load_threshold = 2;
    st.max_peers = 4;
    st.max_handshakes_in_flight = 6;
    st.max_handshakes_per_ip = 3;
    st.tx_ring_slots = 64;
    st.tx_pool_slots = 16;
    st.reorder_pool_slots = 16;
    st.aead_cache_entries = 4;
    memset(&cb, 0, sizeof(cb));
    cb.check_peer = cb_check;
    cb.peer_open = cb_open;
    cb.peer_close = cb_close;
    s->rng = rng;
    if (itr_endpoint_new(&s->ep, &st, &cb, s, now) != ITR_OK)
        return -1;
    itr_endpoint_test_rng(s->ep, det_rng, &s->rng);
    memset(s->ep->jar.cur, 0x3c, sizeof(s->ep->jar.cur));
    return 0;
}

static void check(const side *s, uint64_t now)
{
    itr_stats st;
    itr_endpoint_stats(s->ep, &st);
    if (st.sessions_active > s->ep->set.max_peers)
        fail("sessions over max_peers");
    if (s->ep->hs_resp_used > s->ep->set.max_handshakes_in_flight ||
        s->ep->hs_resp_used > s->ep->hs_resp_cap || s->ep->hs_init_used > s->ep->hs_init_cap)
        fail("handshake slots over their bound");
    if (st.handshakes_in_flight != (uint64_t)s->ep->hs_resp_used + s->ep->hs_init_used)
        fail("handshakes_in_flight gauge out of step");
    if (itr_endpoint_tx_pending(s->ep) > s->ep->set.tx_ring_slots)
        fail("tx ring over its bound");
    (void)now;
}

/* Deliver every queued datagram of `from` (to whichever side it is addressed). */
static void deliver_ring(fz *f, side *from)
{
    itr_datagram dg[16];
    size_t n = itr_endpoint_tx_peek(from->ep, dg, 16);
    for (size_t k = 0; k < n; k++) {
        side *to = same_addr(&dg[k].addr, &f->r.addr)   ? &f->r
                   : same_addr(&dg[k].addr, &f->i.addr) ? &f->i
                                                        : NULL;
        if (to)
            itr_endpoint_recv(to->ep, &from->addr, dg[k].data, dg[k].len, f->now);
    }
    itr_endpoint_tx_consume(from->ep, n);
}

static void step(fz *f)
{
    deliver_ring(f, &f->i);
    deliver_ring(f, &f->r);
    itr_endpoint_flush(f->r.ep, f->now);
    itr_endpoint_flush(f->i.ep, f->now);
}

/* The initiator's handshake slot (pending connect or rekey), or NULL. */
static const itr_hs *initiator_hs(const fz *f)
{
    const itr_endpoint *ep = f->i.ep;
    for (uint32_t k = ep->hs_resp_cap; k < ep->hs_resp_cap + ep->hs_init_cap; k++)
        if (ep->hs[k].state != ITR_HS_FREE)
            return &ep->hs[k];
    return NULL;
}

static const itr_hs *responder_hs(const fz *f, uint8_t pick)
{
    const itr_endpoint *ep = f->r.ep;
    const itr_hs *found = NULL;
    for (uint32_t k = 0; k < ep->hs_resp_cap; k++) {
        if (ep->hs[k].state != ITR_HS_FREE) {
            found = &ep->hs[k];
            if (pick-- == 0)
                break;
        }
    }
    return found;
}

static void header(uint8_t *p, uint8_t type, uint16_t plen, uint32_t conn, uint32_t seq,
                   uint32_t ack)
{
    itr_header h;
    memset(&h, 0, sizeof(h));
    h.version = ITR_VERSION;
    h.type = type;
    h.payload_len = plen;
    h.conn_id = conn;
    h.seq = seq;
    h.ack = ack;
    itr_header_write(p, &h);
}

static void fill(uint8_t *out, size_t n, const uint8_t *d, size_t len)
{
    memset(out, 0, n);
    memcpy(out, d, len < n ? len : n);
}

static void run_record(fz *f, uint8_t op, const uint8_t *d, size_t len)
{
    uint8_t pkt[ITR_MAX_PACKET];
    const itr_hs *hs;
    uint32_t v = len >= 4 ? ((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | d[2] << 8 | d[3]) : 1;
    switch (op % 10) {
    case 0: { /* message 1 from a fuzzed body, mac1 fixed up on request */
        itr_cookie_keys ck;
        header(pkt, ITR_PT_HANDSHAKE, ITR_MSG1_LEN - ITR_HEADER_LEN, 0, 1, v);
        fill(pkt + ITR_HEADER_LEN, ITR_MSG1_LEN - ITR_HEADER_LEN, d + (len >= 4 ? 4 : 0),
             len >= 4 ? len - 4 : 0);
        if (len > 0 && (d[0] & 1)) {
            pkt[ITR_MSG1_SUITE_OFF] = (uint8_t)(1 + (d[0] >> 1 & 1));
            memset(pkt + ITR_MSG1_SUITE_OFF + 1, 0, 3);
            itr_put_u32(pkt + ITR_MSG1_PAYLOAD_OFF, v);
            memset(pkt + ITR_MSG1_PAYLOAD_OFF + 4, 0, ITR_MSG1_PAYLOAD_LEN - 4);
            itr_cookie_keys_derive(&ck, f->r_pub);
            itr_mac1_write(&ck, pkt);
        }
        itr_addr from = addr4((uint16_t)(len > 1 ? 30000 + d[1] % 8 : 30000));
        itr_endpoint_recv(f->r.ep, &from, pkt, ITR_MSG1_LEN, f->now);
        break;
    }
    case 1: /* anything at the responder */
        itr_endpoint_recv(f->r.ep, &f->i.addr, d, len, f->now);
        break;
    case 2: /* message 2 at the initiator's pending handshake */
    case 3: /* cookie reply at it */
        hs = initiator_hs(f);
        if (!hs)
            break;
        if (op % 10 == 2) {
            header(pkt, ITR_PT_HANDSHAKE, ITR_MSG2_LEN - ITR_HEADER_LEN, hs->local_id, 2, v);
            fill(pkt + ITR_HEADER_LEN, ITR_MSG2_LEN - ITR_HEADER_LEN, d, len);
            itr_endpoint_recv(f->i.ep, &f->r.addr, pkt, ITR_MSG2_LEN, f->now);
        } else {
            header(pkt, ITR_PT_COOKIE_REPLY, ITR_COOKIE_REPLY_LEN - ITR_HEADER_LEN, hs->local_id, 0,
                   0);
            fill(pkt + ITR_HEADER_LEN, ITR_COOKIE_REPLY_LEN - ITR_HEADER_LEN, d, len);
            itr_endpoint_recv(f->i.ep, &f->r.addr, pkt, ITR_COOKIE_REPLY_LEN, f->now);
        }
        break;
    case 4: /* message 3 at a responder slot */
        hs = responder_hs(f, len ? d[0] : 0);
        if (!hs)
            break;
        header(pkt, ITR_PT_HANDSHAKE, ITR_MSG3_LEN - ITR_HEADER_LEN, hs->local_id, 3,
               (len && (d[0] & 0x80)) ? v : hs->remote_id);
        fill(pkt + ITR_HEADER_LEN, ITR_MSG3_LEN - ITR_HEADER_LEN, d, len);
        itr_endpoint_recv(f->r.ep, (len && (d[0] & 0x40)) ? &f->r.addr : &hs->addr, pkt,
                          ITR_MSG3_LEN, f->now);
        break;
    case 5: /* the real protocol moves one step */
        step(f);
        break;
    case 6: { /* mutate the oldest real datagram in flight and deliver it */
        side *from = (len && (d[0] & 1)) ? &f->r : &f->i;
        side *to = from == &f->r ? &f->i : &f->r;
        itr_datagram dg;
        if (itr_endpoint_tx_peek(from->ep, &dg, 1) != 1)
            break;
        size_t n = dg.len;
        memcpy(pkt, dg.data, n);
        itr_endpoint_tx_consume(from->ep, 1);
        for (size_t k = 1; k < len; k++)
            pkt[(k - 1) % n] ^= d[k];
        if (len && (d[0] & 2) && n > 16)
            n -= d[0] % 16;
        itr_endpoint_recv(to->ep, &from->addr, pkt, n, f->now);
        break;
    }
    case 7: { /* time passes */
        uint64_t ms = len >= 2 ? ((uint64_t)d[0] | (uint64_t)d[1] << 8) : (len ? d[0] : 1);
        f->now += ms * MS_NS;
        itr_endpoint_on_expiry(f->r.ep, f->now);
        itr_endpoint_on_expiry(f->i.ep, f->now);
        if (itr_endpoint_expiry(f->r.ep) <= f->now || itr_endpoint_expiry(f->i.ep) <= f->now)
            fail("a timer stayed due after on_expiry");
        break;
    }
    case 8: /* reconnect or close */
        if (len && (d[0] & 1))
            itr_endpoint_close_peer(f->i.ep, f->pending, f->now);
        else
            itr_endpoint_connect(f->i.ep, &f->r.addr, f->r_pub,
                                 (len && (d[0] & 2)) ? ITR_SUITE_CHACHAPOLY : f->suite, f->now,
                                 &f->pending);
        break;
    case 9: /* anything at the initiator */
        itr_endpoint_recv(f->i.ep, &f->r.addr, d, len, f->now);
        break;
    }
    check(&f->r, f->now);
    check(&f->i, f->now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t completed_handshakes; /* inputs where both sides opened a session */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f;
    if (size < 1)
        return 0;
    memset(&f, 0, sizeof(f));
    uint8_t cfg = data[0];
    f.now = 5000 * MS_NS;
    f.suite = (cfg & 4) ? ITR_SUITE_CHACHAPOLY : ITR_SUITE_AESGCM;
    f.r.addr = addr4(7400);
    f.i.addr = addr4(40000);
    f.r.refuse = (cfg & 8) != 0;
    if (side_new(&f.r, 1, 1, (itr_cookie_mode)(cfg % 3), f.now, 33) ||
        side_new(&f.i, 2, 0, ITR_COOKIE_OFF, f.now, 44))
        goto out;
    itr_endpoint_public_key(f.r.ep, f.r_pub);
    if (itr_endpoint_connect(f.i.ep, &f.r.addr, f.r_pub, f.suite, f.now, &f.pending) != ITR_OK)
        fail("connect failed");
    size_t pos = 1;
    for (int rec = 0; rec < MAX_RECORDS && pos + 2 <= size; rec++) {
        uint8_t op = data[pos];
        size_t len = data[pos + 1];
        pos += 2;
        if (len > size - pos)
            len = size - pos;
        run_record(&f, op, data + pos, len);
        pos += len;
    }
out:
    if (f.r.opens && f.i.opens)
        completed_handshakes++;
    itr_endpoint_free(f.r.ep);
    itr_endpoint_free(f.i.ep);
    return 0;
}

#ifdef FUZZ_ENDPOINT_STANDALONE
#include "fuzz_replay.h"
/* ---- seed corpus and replay without libFuzzer ---- */

typedef struct seed {
    uint8_t b[2048];
    size_t n;
} seed;

static void rec(seed *s, uint8_t op, const void *d, size_t len)
{
    s->b[s->n++] = op;
    s->b[s->n++] = (uint8_t)len;
    memcpy(s->b + s->n, d, len);
    s->n += len;
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
    uint8_t d[255];
    int rc = 0;
    const uint8_t none[1] = {0};

    /* Complete handshakes: each cookie mode, both suites. */
    for (uint8_t cfg = 0; cfg < 6; cfg++) {
        char name[64];
        memset(&s, 0, sizeof(s));
        s.b[s.n++] = (uint8_t)(cfg % 3 | (cfg >= 3 ? 4 : 0));
        for (int k = 0; k < 6; k++)
            rec(&s, 5, none, 0);
        snprintf(name, sizeof(name), "complete_mode%u_suite%u", cfg % 3, cfg >= 3 ? 2u : 1u);
        rc |= write_seed(dir, name, &s);
    }
    /* Refused by the allowlist. */
    memset(&s, 0, sizeof(s));
    s.b[s.n++] = 8;
    for (int k = 0; k < 4; k++)
        rec(&s, 5, none, 0);
    rec(&s, 7, (uint8_t[]){0x88, 0x13}, 2);
    rc |= write_seed(dir, "refused", &s);
    /* Spoofed message 1s with valid mac1, then the real flow under load (cookies). */
    memset(&s, 0, sizeof(s));
    s.b[s.n++] = 1;
    for (uint8_t k = 0; k < 5; k++) {
        memset(d, 0, 40);
        d[0] = 1;
        d[1] = k;
        d[3] = (uint8_t)(k + 1);
        memset(d + 8, 0x40 + k, 32);
        rec(&s, 0, d, 40);
    }
    for (int k = 0; k < 6; k++)
        rec(&s, 5, none, 0);
    rc |= write_seed(dir, "spoofed_then_real", &s);
    /* Forged message 2, cookie reply, message 3 interleaved with the real flow. */
    memset(&s, 0, sizeof(s));
    s.b[s.n++] = 0;
    memset(d, 0x61, 100);
    rec(&s, 2, d, 100);
    rec(&s, 3, d, 56);
    rec(&s, 5, none, 0);
    rec(&s, 4, d, 80);
    rec(&s, 4, (uint8_t[]){0x40, 1, 2}, 3);
    rec(&s, 5, none, 0);
    rec(&s, 2, d, 100);
    rec(&s, 5, none, 0);
    rec(&s, 5, none, 0);
    rc |= write_seed(dir, "forged_interleaved", &s);
    /* Mutations of the real messages. */
    memset(&s, 0, sizeof(s));
    s.b[s.n++] = 2;
    rec(&s, 6, (uint8_t[]){0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 22);
    rec(&s, 7, (uint8_t[]){0xfa, 0}, 2);
    rec(&s, 5, none, 0);
    rec(&s, 6, (uint8_t[]){1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80}, 13);
    rec(&s, 5, none, 0);
    rec(&s, 7, (uint8_t[]){0xe8, 0x03}, 2);
    rec(&s, 5, none, 0);
    rec(&s, 5, none, 0);
    rc |= write_seed(dir, "mutated_retransmitted", &s);
    /* Timeouts, reconnects and closes. */
    memset(&s, 0, sizeof(s));
    s.b[s.n++] = 0;
    rec(&s, 7, (uint8_t[]){0x70, 0x17}, 2); /* 6 s: the first connect times out */
    rec(&s, 8, (uint8_t[]){2}, 1);
    rec(&s, 5, none, 0);
    rec(&s, 5, none, 0);
    rec(&s, 5, none, 0);
    rec(&s, 8, (uint8_t[]){1}, 1);
    rec(&s, 5, none, 0);
    rec(&s, 8, (uint8_t[]){0}, 1);
    for (int k = 0; k < 4; k++)
        rec(&s, 5, none, 0);
    rec(&s, 7, (uint8_t[]){0x60, 0xea}, 2); /* 60 s */
    rec(&s, 7, (uint8_t[]){0x60, 0xea}, 2);
    rec(&s, 5, none, 0);
    rc |= write_seed(dir, "timeouts_reconnects", &s);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--make-seeds") == 0)
        return make_seeds(argv[2]);
    int n = fuzz_replay_files(argc, argv);
    if (n < 0)
        return 1;
    printf("replayed %d inputs, %llu completed handshakes\n", n,
           (unsigned long long)completed_handshakes);
    return 0;
}
#endif
