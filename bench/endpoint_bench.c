/* endpoint_bench.c (endpoint-bench): what the IO-free core costs on one core, with no sockets:
 * complete handshakes in memory (both roles, the responder's share timed separately), seal and
 * open of DATA packets through the endpoint (Realtime, and Reliable including acknowledgements),
 * the cost of a spoofed message 1 flood, and the memory of idle sessions (allocation
 * accounting and heap growth for N sessions).
 * Each rate is the median of 5 runs.
 *
 * Usage: endpoint-bench [--sessions N] [--quick]
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <malloc.h>

#include <intentra/keys.h>

#include "itr_cookie.h"
#include "itr_session.h"
#include "itr_wire.h"

#define RUNS 5

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
    return v[n / 2];
}

static size_t rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *fp = fopen("/proc/self/statm", "r");
    if (!fp)
        return 0;
    if (fscanf(fp, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(fp);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Bytes the allocator has handed out and not got back (heap and mmapped chunks), headers
 * included: the honest cost of what a test allocated. */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
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

/* ---- a pair of endpoints wired back to back ---- */

typedef struct node {
    itr_endpoint *ep;
    itr_addr addr;
    itr_peer_id last_open;
    uint64_t opens, messages;
    int ack_inline;
} node;

static int cb_message(void *user, const itr_message *m)
{
    node *n = user;
    n->messages++;
    if (n->ack_inline && m->intent == ITR_INTENT_RELIABLE)
        itr_endpoint_ack(n->ep, m->peer, m->seq, 0);
    return ITR_OK;
}

static void cb_open(void *user, const itr_peer_info *info)
{
    node *n = user;
    n->opens++;
    n->last_open = info->id;
}

static int node_new(node *n, uint32_t key_seed, itr_settings *s, uint16_t port)
{
    itr_callbacks cb;
    memset(n, 0, sizeof(*n));
    memset(&cb, 0, sizeof(cb));
    cb.message = cb_message;
    cb.peer_open = cb_open;
    for (int i = 0; i < ITR_KEY_LEN; i++)
        s->static_private[i] = (uint8_t)(key_seed * 131 + (uint32_t)i * 7 + (key_seed >> 8) + 1);
    s->static_private[0] = (uint8_t)key_seed;
    s->static_private[1] = (uint8_t)(key_seed >> 8);
    s->static_private[2] = (uint8_t)(key_seed >> 16);
    n->addr = addr4(port);
    return itr_endpoint_new(&n->ep, s, &cb, n, 0);
}

/* Move every queued datagram of `from` into `to`; returns how many. `spent` accumulates the
 * time spent inside to's recv calls. */
static size_t pass(node *from, node *to, uint64_t now, uint64_t *spent)
{
    itr_datagram dg[64];
    size_t total = 0, k;
    while ((k = itr_endpoint_tx_peek(from->ep, dg, 64)) > 0) {
        uint64_t t0 = spent ? mono_ns() : 0;
        for (size_t i = 0; i < k; i++)
            itr_endpoint_recv(to->ep, &from->addr, dg[i].data, dg[i].len, now);
        itr_endpoint_flush(to->ep, now);
        if (spent)
            *spent += mono_ns() - t0;
        itr_endpoint_tx_consume(from->ep, k);
        total += k;
    }
    return total;
}

/* ---- handshakes ---- */

static void bench_handshakes(itr_suite suite, int count)
{
    itr_settings rs, is;
    node r, i;
    double total[RUNS], resp[RUNS];
    itr_settings_default(&rs);
    rs.cookie_mode = ITR_COOKIE_OFF;
    itr_settings_default(&is);
    is.accept_handshakes = 0;
    if (node_new(&r, 1, &rs, 7400) || node_new(&i, 2, &is, 40000)) {
        fprintf(stderr, "endpoint-bench: endpoint_new failed\n");
        exit(1);
    }
    uint8_t rpub[ITR_KEY_LEN];
    itr_endpoint_public_key(r.ep, rpub);
    uint64_t now = 1000000000ull;
    for (int run = 0; run < RUNS; run++) {
        uint64_t responder_ns = 0, t0 = mono_ns();
        for (int h = 0; h < count; h++) {
            itr_peer_id id;
            uint64_t opens = r.opens;
            if (itr_endpoint_connect(i.ep, &r.addr, rpub, suite, now, &id) != ITR_OK) {
                fprintf(stderr, "endpoint-bench: connect failed\n");
                exit(1);
            }
            pass(&i, &r, now, &responder_ns); /* message 1 */
            pass(&r, &i, now, NULL);          /* message 2 */
            pass(&i, &r, now, &responder_ns); /* message 3 */
            pass(&r, &i, now, NULL);          /* KEEPALIVE(CONFIRM) */
            if (r.opens != opens + 1 || i.last_open != id) {
                fprintf(stderr, "endpoint-bench: handshake %d did not complete\n", h);
                exit(1);
            }
            itr_endpoint_close_peer(i.ep, id, now);
            pass(&i, &r, now, NULL); /* CLOSE */
            now += 1000;
        }
        uint64_t t = mono_ns() - t0;
        total[run] = (double)t / count;
        resp[run] = (double)responder_ns / count;
    }
    double tot = median(total, RUNS), res = median(resp, RUNS);
    printf("handshake %-10s both roles %7.1f us (%6.0f/s)   responder %6.1f us (%6.0f/s)\n",
           suite == ITR_SUITE_AESGCM ? "AESGCM" : "ChaChaPoly", tot / 1e3, 1e9 / tot, res / 1e3,
           1e9 / res);
    itr_endpoint_free(i.ep);
    itr_endpoint_free(r.ep);
}

/* ---- DATA packets ---- */

static void bench_data(itr_suite suite, itr_intent intent, size_t body_len, int count)
{
    itr_settings rs, is;
    node r, i;
    double send_ns[RUNS], recv_ns[RUNS], total[RUNS];
    uint8_t body[1500];
    memset(body, 0x5a, sizeof(body));
    itr_settings_default(&rs);
    rs.rate_limit_pps = 0; /* the limiter is not what is measured */
    itr_settings_default(&is);
    is.accept_handshakes = 0;
    if (node_new(&r, 3, &rs, 7400) || node_new(&i, 4, &is, 40000))
        exit(1);
    r.ack_inline = 1;
    uint8_t rpub[ITR_KEY_LEN];
    itr_endpoint_public_key(r.ep, rpub);
    uint64_t now = 1000000000ull;
    itr_peer_id id;
    if (itr_endpoint_connect(i.ep, &r.addr, rpub, suite, now, &id) != ITR_OK)
        exit(1);
    for (int k = 0; k < 4; k++) {
        pass(&i, &r, now, NULL);
        pass(&r, &i, now, NULL);
    }
    for (int run = 0; run < RUNS; run++) {
        uint64_t s_ns = 0, r_ns = 0, t0 = mono_ns();
        int sent = 0;
        while (sent < count) {
            /* A batch: as many as the ring (and for Reliable the window) takes. */
            uint64_t a = mono_ns();
            int batch = 0;
            while (sent < count && batch < 256) {
                int rc = itr_endpoint_send(i.ep, id, intent, 0, "bench/data", 10, body, body_len,
                                           now, NULL);
                if (rc == ITR_ERR_WOULDBLOCK)
                    break;
                if (rc != ITR_OK) {
                    fprintf(stderr, "endpoint-bench: send: %s\n", itr_strerror(rc));
                    exit(1);
                }
                sent++;
                batch++;
            }
            s_ns += mono_ns() - a;
            pass(&i, &r, now, &r_ns);
            /* ACKs back to the sender (Reliable): counted as sender time. */
            pass(&r, &i, now, &s_ns);
            now += 100000;
        }
        uint64_t t = mono_ns() - t0;
        send_ns[run] = (double)s_ns / count;
        recv_ns[run] = (double)r_ns / count;
        total[run] = (double)t / count;
    }
    double s = median(send_ns, RUNS), rv = median(recv_ns, RUNS), t = median(total, RUNS);
    printf("%-8s %-10s %4zu B body   send %6.0f ns   recv %6.0f ns   per message %6.0f ns "
           "(%5.2f M msg/s)\n",
           intent == ITR_INTENT_RELIABLE ? "Reliable" : "Realtime",
           suite == ITR_SUITE_AESGCM ? "AESGCM" : "ChaChaPoly", body_len, s, rv, t, 1e3 / t);
    if (r.messages < (uint64_t)count * RUNS) {
        fprintf(stderr, "endpoint-bench: only %llu of %d messages delivered\n",
                (unsigned long long)r.messages, count * RUNS);
        exit(1);
    }
    itr_endpoint_free(i.ep);
    itr_endpoint_free(r.ep);
}

/* ---- spoofed message 1 flood ---- */

/* What one spoofed message 1 with a valid mac1 costs the responder: with cookies demanded
 * (mac1 + cookie reply) and with cookies off once the slot limits are reached (mac1 + the
 * duplicate and limit checks). Sources are random IPs so the per-IP limit does not help. */
static void bench_flood(itr_cookie_mode mode, int count)
{
    itr_settings rs;
    node r;
    double per[RUNS];
    itr_settings_default(&rs);
    rs.cookie_mode = mode;
    if (node_new(&r, 7, &rs, 7400))
        exit(1);
    uint8_t rpub[ITR_KEY_LEN];
    itr_endpoint_public_key(r.ep, rpub);
    itr_cookie_keys ck;
    itr_cookie_keys_derive(&ck, rpub);
    uint8_t *msgs = malloc((size_t)count * ITR_MSG1_LEN);
    if (!msgs)
        exit(1);
    for (int k = 0; k < count; k++) {
        uint8_t *m = msgs + (size_t)k * ITR_MSG1_LEN;
        itr_header h;
        memset(m, 0, ITR_MSG1_LEN);
        memset(&h, 0, sizeof(h));
        h.version = ITR_VERSION;
        h.type = ITR_PT_HANDSHAKE;
        h.payload_len = ITR_MSG1_LEN - ITR_HEADER_LEN;
        h.seq = 1;
        h.ack = (uint32_t)k + 1;
        itr_header_write(m, &h);
        m[ITR_MSG1_SUITE_OFF] = ITR_SUITE_AESGCM;
        itr_random(m + ITR_MSG1_E_OFF, 32);
        itr_put_u32(m + ITR_MSG1_PAYLOAD_OFF, h.ack);
        itr_mac1_write(&ck, m);
    }
    uint64_t now = 1000000000ull;
    for (int run = 0; run < RUNS; run++) {
        uint64_t t0 = mono_ns();
        for (int k = 0; k < count; k++) {
            itr_addr from = addr4((uint16_t)(1024 + k % 60000));
            from.u.in.sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)k);
            itr_endpoint_recv(r.ep, &from, msgs + (size_t)k * ITR_MSG1_LEN, ITR_MSG1_LEN, now);
            if ((k & 255) == 255)
                itr_endpoint_tx_consume(r.ep, itr_endpoint_tx_pending(r.ep));
        }
        per[run] = (double)(mono_ns() - t0) / count;
        itr_endpoint_tx_consume(r.ep, itr_endpoint_tx_pending(r.ep));
    }
    itr_stats st;
    itr_endpoint_stats(r.ep, &st);
    double p = median(per, RUNS);
    printf("spoofed message 1, cookies %-6s %6.0f ns each (%5.2f M/s); slots in use %llu, "
           "sessions %llu\n",
           mode == ITR_COOKIE_ALWAYS ? "always" : "off", p, 1e3 / p,
           (unsigned long long)st.handshakes_in_flight, (unsigned long long)st.sessions_active);
    free(msgs);
    itr_endpoint_free(r.ep);
}

/* ---- idle sessions ---- */

static void bench_idle_sessions(uint32_t n)
{
    itr_settings rs, is;
    node r;
    itr_settings_default(&rs);
    rs.cookie_mode = ITR_COOKIE_OFF;
    rs.max_peers = n + 16;
    if (node_new(&r, 5, &rs, 7400))
        exit(1);
    uint8_t rpub[ITR_KEY_LEN];
    itr_endpoint_public_key(r.ep, rpub);
    size_t fixed = itr_endpoint_test_fixed_bytes(r.ep);
    size_t table0 = itr_ctab_bytes(&r.ep->conns) + itr_ctab_bytes(&r.ep->keys);
    size_t rss0 = rss_bytes(), heap0 = heap_in_use();
    uint64_t now = 1000000000ull, t0 = mono_ns();
    for (uint32_t k = 0; k < n; k++) {
        /* A fresh identity per session (a session is one static key), minimal pools. */
        node i;
        itr_settings_default(&is);
        is.accept_handshakes = 0;
        is.max_peers = 1;
        is.tx_ring_slots = 8;
        is.tx_pool_slots = 0;
        is.reorder_pool_slots = 0;
        is.aead_cache_entries = 0;
        is.max_handshakes_in_flight = 1;
        if (node_new(&i, 1000 + k, &is, (uint16_t)(10000 + k % 50000))) {
            fprintf(stderr, "endpoint-bench: initiator %u\n", k);
            exit(1);
        }
        i.addr.u.in.sin_addr.s_addr = htonl(0x0a000000u + k); /* distinct source addresses */
        itr_peer_id id;
        if (itr_endpoint_connect(i.ep, &r.addr, rpub, ITR_SUITE_AESGCM, now, &id) != ITR_OK)
            exit(1);
        for (int s = 0; s < 3; s++) {
            pass(&i, &r, now, NULL);
            pass(&r, &i, now, NULL);
        }
        itr_endpoint_free(i.ep); /* the responder's session stays, idle */
    }
    double secs = (double)(mono_ns() - t0) / 1e9;
    /* Let every handshake slot and previous key go: only idle sessions remain. */
    itr_endpoint_on_expiry(r.ep, now + 6000000000ull);
    itr_stats st;
    itr_endpoint_stats(r.ep, &st);
    size_t rss1 = rss_bytes(), heap1 = heap_in_use();
    size_t sess = itr_endpoint_test_session_bytes(r.ep);
    size_t table1 = itr_ctab_bytes(&r.ep->conns) + itr_ctab_bytes(&r.ep->keys);
    printf("idle sessions: %llu established in %.1f s\n", (unsigned long long)st.sessions_active,
           secs);
    printf("  per session: struct %zu B + keypair %zu B = %zu B (malloc accounting %.0f B)\n",
           sizeof(itr_session), sizeof(itr_keypair), sizeof(itr_session) + sizeof(itr_keypair),
           (double)sess / (double)st.sessions_active);
    printf("  per session incl. hash tables (grown %zu -> %zu B), peer slot and timer entry: "
           "%.0f B\n",
           table0, table1,
           (double)(sess + (table1 - table0)) / (double)st.sessions_active +
               (double)(sizeof(itr_peer_slot) + sizeof(uint32_t) + sizeof(itr_timerq_node)));
    printf("  heap in use grew %.1f MiB = %.0f B per session (malloc headers and table growth "
           "included; RSS grew %.1f MiB)\n",
           (double)(heap1 - heap0) / 1048576.0,
           (double)(heap1 - heap0) / (double)st.sessions_active, (double)(rss1 - rss0) / 1048576.0);
    printf("  responder fixed allocation (pools, ring, slots, tables) with defaults but "
           "max_peers=%u: %.1f MiB\n",
           rs.max_peers, (double)fixed / 1048576.0);
    itr_endpoint_free(r.ep);
}

int main(int argc, char **argv)
{
    uint32_t sessions = 20000;
    int quick = 0;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--sessions") == 0 && a + 1 < argc)
            sessions = (uint32_t)strtoul(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "--quick") == 0)
            quick = 1;
        else {
            fprintf(stderr, "usage: endpoint-bench [--sessions N] [--quick]\n");
            return 2;
        }
    }
    if (itr_crypto_init() != ITR_OK)
        return 1;
    printf("endpoint-bench: one core, in memory, no sockets; AES-NI %s\n",
           itr_crypto_have_aesgcm() ? "yes" : "no (OpenSSL fallback)");
    int hs = quick ? 200 : 1000, msgs = quick ? 20000 : 200000;
    bench_handshakes(ITR_SUITE_AESGCM, hs);
    bench_handshakes(ITR_SUITE_CHACHAPOLY, hs);
    bench_data(ITR_SUITE_AESGCM, ITR_INTENT_REALTIME, 128, msgs);
    bench_data(ITR_SUITE_CHACHAPOLY, ITR_INTENT_REALTIME, 128, msgs);
    bench_data(ITR_SUITE_AESGCM, ITR_INTENT_RELIABLE, 128, msgs);
    bench_data(ITR_SUITE_AESGCM, ITR_INTENT_REALTIME, 1200, msgs);
    bench_flood(ITR_COOKIE_ALWAYS, quick ? 20000 : 100000);
    bench_flood(ITR_COOKIE_OFF, quick ? 20000 : 100000);
    bench_idle_sessions(quick ? sessions / 10 : sessions);
    return 0;
}
