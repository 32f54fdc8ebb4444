/* intentra-bench: N simulated fleet peers against a gateway.
 *
 * Each peer is a real intentra initiator (own static key, own endpoint, own session); all of
 * them share one UDP socket, demultiplexed by conn_id (peer i's connection ids are i mod N),
 * and are driven by one thread with recvmmsg/sendmmsg so the load generator costs little CPU.
 * Offered load is paced globally at peers x rate messages per second; a message the transport
 * refuses (Reliable window full: the gateway is throttling) is counted as refused, not queued.
 * Payloads carry a sequence number and a checksum so any consumer can verify integrity and
 * count exactly-once without this program:
 *     ib1 <peer_index> <seq> <send_ns> <filler x...>#<crc32 of everything before '#', 8 hex>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include <intentra/intentra.h>

#include "bench_payload.h"
#include "fleet.h"
#include "histogram.h"

#define RECV_BATCH 64
#define SEND_BATCH 64

typedef struct bench_peer {
    struct bench *b;
    uint32_t index;
    itr_endpoint *ep;
    itr_peer_id pid;
    itr_timer timer;
    int state; /* 0 idle, 1 connecting, 2 open, 3 failed */
    int attempts;
    int dirty; /* has queued datagrams, is on the dirty list */
    uint64_t seq;
    uint64_t connect_started;
    uint64_t send_ns[ITR_RELIABLE_WINDOW];   /* by Reliable seq % window */
    uint64_t bench_seq[ITR_RELIABLE_WINDOW]; /* payload seq, by Reliable seq % window */
    uint32_t unacked;
} bench_peer;

typedef struct bench {
    fleet_opts o;
    uint32_t npeers;
    double rate, duration, mix, linger;
    size_t size;
    int json, parallel, print_keys;
    int gso;       /* UDP GSO per peer (itr_udp_pack), default on */
    FILE *ack_log; /* --ack-log: "peer_index seq" of every acknowledged message */
    uint8_t key_seed[32];
    int have_seed;

    itr_loop *loop;
    int fd;
    itr_addr gw;
    bench_peer *peers;
    uint32_t *dirty;
    uint32_t ndirty;
    int want_write;
    uint8_t rxbuf[RECV_BATCH][ITR_MAX_PACKET];

    uint32_t connecting, connected, connect_failed, next_connect;
    uint64_t t_connect_start, t_connect_end, t_start, t_end;
    uint64_t offered, sent[2], acked, refused, failed, received, closed;
    uint64_t send_errors;
    uint32_t rr; /* round-robin cursor for sends */
    size_t topic_len;
    uint64_t rx_now; /* clock read once per received batch: acks in it share the reading */
    histogram lat;
    uint64_t last_progress;
    itr_timer tick;
    int phase; /* 0 connect, 1 run, 2 linger, 3 done */
} bench;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void mark_dirty(bench_peer *p)
{
    if (!p->dirty && itr_endpoint_tx_pending(p->ep)) {
        p->dirty = 1;
        p->b->dirty[p->b->ndirty++] = p->index;
    }
}

static void peer_timer_cb(void *arg, uint64_t now);

static void rearm(bench_peer *p)
{
    uint64_t t = itr_endpoint_expiry(p->ep);
    if (t == UINT64_MAX)
        itr_loop_timer_cancel(p->b->loop, &p->timer);
    else
        itr_loop_timer_set(p->b->loop, &p->timer, t);
    mark_dirty(p);
}

static void peer_timer_cb(void *arg, uint64_t now)
{
    bench_peer *p = arg;
    itr_endpoint_on_expiry(p->ep, now);
    rearm(p);
}

static void on_socket(void *arg, int fd, uint32_t events);

/* Transmit every dirty peer's queued datagrams with sendmmsg. Batches are filled from the
 * tail of the dirty list and emptied peers are popped from the tail, so the work is linear in
 * the datagrams sent, whatever the number of peers. */
static void flush_tx(bench *b)
{
    struct mmsghdr msgs[SEND_BATCH];
    struct iovec iov[SEND_BATCH];
    itr_datagram dg[SEND_BATCH];
    size_t counts[SEND_BATCH];
    uint32_t per_msg[SEND_BATCH];
    uint8_t ctrl[SEND_BATCH * ITR_GSO_CTRL_LEN];

    while (b->ndirty > 0) {
        size_t n = 0, npeers = 0, nmsg = 0;
        for (uint32_t j = b->ndirty; j > 0 && n < SEND_BATCH; j--) {
            bench_peer *p = &b->peers[b->dirty[j - 1]];
            size_t k = itr_endpoint_tx_peek(p->ep, dg + n, SEND_BATCH - n);
            /* Peer by peer: every peer stands for a host of its own, so a GSO message never
             * mixes two peers' datagrams even though they share this socket. */
            nmsg += itr_udp_pack(dg + n, k, b->gso, msgs + nmsg, iov + n,
                                 ctrl + nmsg * ITR_GSO_CTRL_LEN, per_msg + nmsg);
            counts[npeers++] = k;
            n += k;
        }
        if (n > 0) {
            int r = sendmmsg(b->fd, msgs, (unsigned)nmsg, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                    b->want_write = 1;
                    itr_loop_watch(b->loop, b->fd, ITR_EV_READ | ITR_EV_WRITE, on_socket, b);
                    return;
                }
                if (per_msg[0] > 1 && itr_udp_gso_refused(errno)) {
                    b->gso = 0; /* the kernel cannot segment here: one by one from now on */
                    continue;
                }
                /* A hard error (e.g. ECONNREFUSED from an ICMP): drop the first message. */
                b->send_errors++;
                r = 1;
            }
            /* Consume, peer by peer, in the order the batch was filled. */
            size_t done = 0;
            for (int i = 0; i < r; i++)
                done += per_msg[i];
            for (size_t i = 0; i < npeers && done > 0; i++) {
                size_t k = counts[i] < done ? counts[i] : done;
                if (k)
                    itr_endpoint_tx_consume(b->peers[b->dirty[b->ndirty - 1 - i]].ep, k);
                done -= k;
            }
            if ((size_t)r < nmsg) {
                /* Partial send: the socket is full; the write watch resumes it. */
                b->want_write = 1;
                itr_loop_watch(b->loop, b->fd, ITR_EV_READ | ITR_EV_WRITE, on_socket, b);
            }
        }
        /* Pop the peers with nothing left from the tail. */
        while (b->ndirty > 0) {
            bench_peer *p = &b->peers[b->dirty[b->ndirty - 1]];
            if (itr_endpoint_tx_pending(p->ep))
                break;
            p->dirty = 0;
            b->ndirty--;
        }
        if (b->want_write)
            return;
    }
}

static void drain_socket(bench *b)
{
    struct mmsghdr msgs[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    struct sockaddr_storage from[RECV_BATCH];

    for (int round = 0; round < 16; round++) {
        memset(msgs, 0, sizeof(msgs));
        for (int i = 0; i < RECV_BATCH; i++) {
            iov[i].iov_base = b->rxbuf[i];
            iov[i].iov_len = ITR_MAX_PACKET;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
        }
        int n = recvmmsg(b->fd, msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            break;
        uint64_t now = itr_now_ns();
        b->rx_now = now;
        for (int i = 0; i < n; i++) {
            size_t len = msgs[i].msg_len;
            if (len < ITR_HEADER_LEN)
                continue;
            const uint8_t *pk = b->rxbuf[i];
            uint32_t conn =
                (uint32_t)pk[4] << 24 | (uint32_t)pk[5] << 16 | (uint32_t)pk[6] << 8 | pk[7];
            bench_peer *p = &b->peers[conn % b->npeers];
            itr_addr a;
            memset(&a, 0, sizeof(a));
            memcpy(&a.u, &from[i],
                   msgs[i].msg_hdr.msg_namelen < sizeof(a.u) ? msgs[i].msg_hdr.msg_namelen
                                                             : sizeof(a.u));
            itr_endpoint_recv(p->ep, &a, pk, len, now);
            itr_endpoint_flush(p->ep, now);
            rearm(p);
        }
        if (n < RECV_BATCH)
            break;
    }
}

static void on_socket(void *arg, int fd, uint32_t events)
{
    bench *b = arg;
    (void)fd;
    if (events & ITR_EV_WRITE) {
        b->want_write = 0;
        itr_loop_watch(b->loop, b->fd, ITR_EV_READ, on_socket, b);
    }
    if (events & ITR_EV_READ)
        drain_socket(b);
    flush_tx(b);
}

/* ---- endpoint callbacks ---- */

static void cb_open(void *user, const itr_peer_info *info)
{
    bench_peer *p = user;
    (void)info;
    if (p->state == 1) {
        p->b->connecting--;
        p->b->connected++;
    }
    p->state = 2;
}

static void cb_close(void *user, itr_peer_id peer, itr_close_reason why)
{
    bench_peer *p = user;
    bench *b = p->b;
    (void)peer;
    if (p->state == 1) {
        b->connecting--;
        if (why == ITR_CLOSE_HANDSHAKE_TIMEOUT && ++p->attempts < 3) {
            p->state = 0; /* retried by the connect scheduler */
            return;
        }
        b->connect_failed++;
        if (!b->json)
            fprintf(stderr, "intentra-bench: peer %u: connect failed: %s\n", p->index,
                    itr_close_reason_name(why));
    } else if (p->state == 2) {
        b->closed++;
        if (b->phase < 3 && !b->json)
            fprintf(stderr, "intentra-bench: peer %u: session closed: %s\n", p->index,
                    itr_close_reason_name(why));
        b->failed += p->unacked;
        p->unacked = 0;
    }
    p->state = 3;
}

static int cb_message(void *user, const itr_message *m)
{
    bench_peer *p = user;
    p->b->received++;
    if (m->intent == ITR_INTENT_RELIABLE)
        itr_endpoint_ack(p->ep, m->peer, m->seq, p->b->rx_now);
    return ITR_OK;
}

static void cb_acked(void *user, itr_peer_id peer, uint32_t seq)
{
    bench_peer *p = user;
    uint64_t now = p->b->rx_now; /* acks arrive only from drain_socket */
    (void)peer;
    histogram_add(&p->b->lat, now - p->send_ns[seq % ITR_RELIABLE_WINDOW]);
    if (p->b->ack_log)
        fprintf(p->b->ack_log, "%u %llu\n", p->index,
                (unsigned long long)p->bench_seq[seq % ITR_RELIABLE_WINDOW]);
    p->b->acked++;
    if (p->unacked)
        p->unacked--;
}

/* ---- scheduling ---- */

static void start_connects(bench *b, uint64_t now)
{
    /* Keep at most `parallel` handshakes in flight: the gateway allows 5 per source IP. */
    for (uint32_t scanned = 0; scanned < b->npeers && b->connecting < (uint32_t)b->parallel;
         scanned++) {
        bench_peer *p = &b->peers[b->next_connect];
        b->next_connect = (b->next_connect + 1) % b->npeers;
        if (p->state != 0)
            continue;
        int rc = itr_endpoint_connect(p->ep, &b->gw, b->o.gateway_pub, b->o.suite, now, &p->pid);
        if (rc != ITR_OK) {
            fprintf(stderr, "intentra-bench: peer %u: connect: %s\n", p->index, itr_strerror(rc));
            p->state = 3;
            b->connect_failed++;
            continue;
        }
        p->state = 1;
        p->connect_started = now;
        b->connecting++;
        rearm(p);
    }
}

static void send_due(bench *b, uint64_t now)
{
    double elapsed = (double)(now - b->t_start) / 1e9;
    uint64_t due = (uint64_t)(elapsed * b->rate * b->npeers);
    char payload[ITR_MAX_PACKET];
    uint64_t budget = 20000; /* bound one tick's work so the socket is served */

    while (b->offered < due && budget--) {
        bench_peer *p = &b->peers[b->rr];
        if (++b->rr == b->npeers)
            b->rr = 0;
        b->offered++;
        if (p->state != 2) {
            b->refused++;
            continue;
        }
        itr_intent intent = b->o.intent;
        if (b->mix >= 0)
            intent = (randombytes_uniform(1000000) < (uint32_t)(b->mix * 1e6))
                         ? ITR_INTENT_RELIABLE
                         : ITR_INTENT_REALTIME;
        size_t len = bench_payload_make(payload, b->size, p->index, p->seq, now);
        uint32_t seq;
        int rc = itr_endpoint_send(p->ep, p->pid, intent, 0, b->o.topic, b->topic_len, payload, len,
                                   now, &seq);
        if (rc == ITR_OK) {
            p->seq++;
            b->sent[intent]++;
            if (intent == ITR_INTENT_RELIABLE) {
                p->send_ns[seq % ITR_RELIABLE_WINDOW] = now;
                p->bench_seq[seq % ITR_RELIABLE_WINDOW] = p->seq - 1;
                p->unacked++;
            }
            rearm(p);
        } else {
            b->refused++;
        }
    }
}

static uint64_t unacked_total(const bench *b)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < b->npeers; i++)
        n += b->peers[i].unacked;
    return n;
}

static void progress(bench *b, uint64_t now)
{
    if (b->json || now - b->last_progress < 1000000000ull)
        return;
    b->last_progress = now;
    double t = b->t_start ? (double)(now - b->t_start) / 1e9 : 0;
    fprintf(stderr,
            "\rt=%5.1fs conn=%u/%u offered=%" PRIu64 " sent=%" PRIu64 " acked=%" PRIu64
            " refused=%" PRIu64 " unacked=%" PRIu64 " p99=%.2fms   ",
            t, b->connected, b->npeers, b->offered, b->sent[0] + b->sent[1], b->acked, b->refused,
            unacked_total(b), (double)histogram_quantile(&b->lat, 0.99) / 1e6);
}

static void tick_cb(void *arg, uint64_t now)
{
    bench *b = arg;

    switch (b->phase) {
    case 0:
        start_connects(b, now);
        if (b->connected + b->connect_failed >= b->npeers ||
            now - b->t_connect_start > (uint64_t)b->o.timeout_ms * 1000000ull * 6) {
            b->t_connect_end = now;
            b->phase = 1;
            b->t_start = now;
        }
        break;
    case 1:
        send_due(b, now);
        if ((double)(now - b->t_start) / 1e9 >= b->duration) {
            b->t_end = now;
            b->phase = 2;
        }
        break;
    case 2:
        if (unacked_total(b) == 0 || (double)(now - b->t_end) / 1e9 >= b->linger)
            b->phase = 3;
        break;
    default:
        break;
    }
    progress(b, now);
    flush_tx(b);
    if (interrupted)
        b->phase = 3;
    if (b->phase == 3)
        itr_loop_stop(b->loop);
    else
        itr_loop_timer_set(b->loop, &b->tick, now + 1000000ull); /* 1 ms pacing tick */
}

/* ---- set-up ---- */

static int derive_key(bench *b, uint32_t i, uint8_t priv[32])
{
    if (!b->have_seed) {
        uint8_t pub[32];
        return itr_key_generate(priv, pub);
    }
    uint8_t in[36];
    memcpy(in, b->key_seed, 32);
    in[32] = (uint8_t)(i >> 24);
    in[33] = (uint8_t)(i >> 16);
    in[34] = (uint8_t)(i >> 8);
    in[35] = (uint8_t)i;
    crypto_generichash(priv, 32, in, sizeof(in), NULL, 0);
    return ITR_OK;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: intentra-bench [flags]\n"
            "Simulates --peers fleet peers, each sending --rate messages/s of --size bytes for\n"
            "--duration seconds, and reports delivery and send->ack latency.\n\n"
            "flags:\n%s"
            "  --peers N                simulated peers (default 10)\n"
            "  --rate HZ                messages per second per peer (default 100)\n"
            "  --size BYTES             payload size, >= %d (default 128)\n"
            "  --duration SECONDS       sending time (default 10)\n"
            "  --mix FRACTION           fraction of Reliable messages (overrides --intent)\n"
            "  --linger SECONDS         wait for outstanding acknowledgements (default 10)\n"
            "  --parallel N             handshakes in flight while connecting (default 4)\n"
            "  --key-seed HEX           derive peer i's key from this 32-byte seed (stable\n"
            "                           identities for allowlists); default: random keys\n"
            "  --print-keys             print the peers' public keys (one per line) and exit\n"
            "  --json                   print one JSON summary on stdout, no progress line\n"
            "  --no-gso                 one datagram per send (default: a peer's datagrams\n"
            "                           queued together leave as one UDP GSO message)\n"
            "  --ack-log FILE           write \"peer_index seq\" for every acknowledged message\n"
            "  --help, --version\n",
            fleet_usage, BENCH_PAYLOAD_MIN);
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (*end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "intentra-bench: %s %s: expected a number in [%g, %g]\n", flag, v, lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_args(bench *b, int argc, char **argv)
{
    double d;
    fleet_opts_default(&b->o);
    b->npeers = 10;
    b->rate = 100;
    b->gso = 1;
    b->size = 128;
    b->duration = 10;
    b->mix = -1;
    b->linger = 10;
    b->parallel = 4;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int rc = fleet_parse_flag(&b->o, argc, argv, &i);
        if (rc < 0)
            return 2;
        if (rc > 0)
            continue;
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(f, "--version")) {
            printf("intentra-bench %s\n", INTENTRA_VERSION);
            exit(0);
        } else if (!strcmp(f, "--no-gso")) {
            b->gso = 0;
        } else if (!strcmp(f, "--json")) {
            b->json = 1;
        } else if (!strcmp(f, "--print-keys")) {
            b->print_keys = 1;
        } else if (i + 1 >= argc) {
            fprintf(stderr, "intentra-bench: unknown flag or missing value: %s\n", f);
            return 2;
        } else if (!strcmp(f, "--peers")) {
            if (parse_num(f, argv[++i], 1, 1000000, &d))
                return 2;
            b->npeers = (uint32_t)d;
        } else if (!strcmp(f, "--rate")) {
            if (parse_num(f, argv[++i], 0, 10000000, &b->rate))
                return 2;
        } else if (!strcmp(f, "--size")) {
            if (parse_num(f, argv[++i], BENCH_PAYLOAD_MIN, 1800, &d))
                return 2;
            b->size = (size_t)d;
        } else if (!strcmp(f, "--duration")) {
            if (parse_num(f, argv[++i], 0, 86400, &b->duration))
                return 2;
        } else if (!strcmp(f, "--mix")) {
            if (parse_num(f, argv[++i], 0, 1, &b->mix))
                return 2;
        } else if (!strcmp(f, "--linger")) {
            if (parse_num(f, argv[++i], 0, 3600, &b->linger))
                return 2;
        } else if (!strcmp(f, "--parallel")) {
            if (parse_num(f, argv[++i], 1, 1000, &d))
                return 2;
            b->parallel = (int)d;
        } else if (!strcmp(f, "--ack-log")) {
            const char *v = argv[++i];
            if (!(b->ack_log = fopen(v, "w"))) {
                fprintf(stderr, "intentra-bench: --ack-log %s: %s\n", v, strerror(errno));
                return 2;
            }
        } else if (!strcmp(f, "--key-seed")) {
            const char *v = argv[++i];
            if (itr_hex_decode(b->key_seed, 32, v, strlen(v)) != ITR_OK) {
                fprintf(stderr, "intentra-bench: --key-seed: expected 64 hex digits\n");
                return 2;
            }
            b->have_seed = 1;
        } else {
            fprintf(stderr, "intentra-bench: unknown flag %s (see --help)\n", f);
            return 2;
        }
    }
    return 0;
}

static void report(bench *b)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    double secs = b->t_end > b->t_start ? (double)(b->t_end - b->t_start) / 1e9 : 0;
    uint64_t sent = b->sent[0] + b->sent[1];
    uint64_t offered_rel = b->mix >= 0 || b->o.intent == ITR_INTENT_RELIABLE ? b->offered : 0;
    double ratio_rel = b->sent[1] ? (double)b->acked / (double)(b->offered ? b->offered : 1) : 0;
    double ratio_sent = b->offered ? (double)sent / (double)b->offered : 0;
    double p50 = (double)histogram_quantile(&b->lat, 0.50) / 1e6;
    double p99 = (double)histogram_quantile(&b->lat, 0.99) / 1e6;
    double p999 = (double)histogram_quantile(&b->lat, 0.999) / 1e6;
    (void)offered_rel;

    if (!b->json)
        fputc('\n', stderr);
    if (b->json) {
        printf("{\"peers\":%u,\"connected\":%u,\"connect_failed\":%u,\"connect_seconds\":%.3f,"
               "\"rate_per_peer\":%g,\"size\":%zu,\"duration_seconds\":%.3f,"
               "\"offered\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"sent_reliable\":%" PRIu64
               ",\"sent_realtime\":%" PRIu64 ",\"acknowledged\":%" PRIu64 ",\"refused\":%" PRIu64
               ",\"unacknowledged\":%" PRIu64 ",\"delivery_ratio\":%.6f,\"sent_ratio\":%.6f,"
               "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
               "\"sent_per_second\":%.1f,\"cpu_seconds\":%.3f,\"received\":%" PRIu64
               ",\"sessions_closed\":%" PRIu64 ",\"send_errors\":%" PRIu64 "}\n",
               b->npeers, b->connected, b->connect_failed,
               (double)(b->t_connect_end - b->t_connect_start) / 1e9, b->rate, b->size, secs,
               b->offered, sent, b->sent[1], b->sent[0], b->acked, b->refused,
               unacked_total(b) + b->failed, ratio_rel, ratio_sent, p50, p99, p999,
               (double)histogram_max(&b->lat) / 1e6, secs > 0 ? (double)sent / secs : 0, cpu,
               b->received, b->closed, b->send_errors);
    } else {
        printf("peers            %u connected, %u failed (%.2f s to connect)\n", b->connected,
               b->connect_failed, (double)(b->t_connect_end - b->t_connect_start) / 1e9);
        printf("offered          %" PRIu64 " (%g/s per peer x %u peers, %zu B, %.1f s)\n",
               b->offered, b->rate, b->npeers, b->size, secs);
        printf("sent             %" PRIu64 " (reliable %" PRIu64 ", realtime %" PRIu64
               ", %.0f/s)\n",
               sent, b->sent[1], b->sent[0], secs > 0 ? (double)sent / secs : 0);
        printf("acknowledged     %" PRIu64 "\n", b->acked);
        printf("refused          %" PRIu64 " (window full or session down)\n", b->refused);
        printf("unacknowledged   %" PRIu64 "\n", unacked_total(b) + b->failed);
        if (b->sent[1])
            printf("delivery ratio   %.4f (acknowledged / offered)\n", ratio_rel);
        else
            printf("sent ratio       %.4f (realtime: sent / offered)\n", ratio_sent);
        printf("send->ack ms     p50 %.3f  p99 %.3f  p999 %.3f\n", p50, p99, p999);
        printf("bench cpu        %.2f s\n", cpu);
    }
}

int main(int argc, char **argv)
{
    bench *b;
    itr_settings s;
    itr_callbacks cb;
    char err[256];
    int status = 1;

    signal(SIGPIPE, SIG_IGN);
    b = calloc(1, sizeof(*b));
    if (!b)
        return 1;
    if (parse_args(b, argc, argv))
        return 2;
    if (b->print_keys) {
        if (!b->have_seed) {
            fprintf(stderr, "intentra-bench: --print-keys needs --key-seed\n");
            return 2;
        }
        for (uint32_t i = 0; i < b->npeers; i++) {
            uint8_t priv[32], pub[32];
            char hex[65];
            derive_key(b, i, priv);
            itr_key_public(priv, pub);
            itr_hex_encode(hex, pub, 32);
            printf("%s\n", hex);
            itr_wipe(priv, sizeof(priv));
        }
        return 0;
    }
    if (fleet_resolve(&b->o, "intentra-bench") < 0)
        return 1;
    if (itr_addr_parse(&b->gw, b->o.gateway, err, sizeof(err)) != ITR_OK) {
        fprintf(stderr, "intentra-bench: --gateway: %s\n", err);
        return 2;
    }
    /* Thousands of sessions share one socket: give it room. */
    itr_addr local;
    memset(&local, 0, sizeof(local));
    if (b->gw.u.sa.sa_family == AF_INET6) {
        local.u.in6.sin6_family = AF_INET6;
        local.u.in6.sin6_addr = in6addr_loopback;
    } else {
        local.u.in.sin_family = AF_INET;
        local.u.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (b->gw.u.in.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
            local.u.in.sin_addr.s_addr = htonl(INADDR_ANY);
    }
    itr_udp_options uo = {.rcvbuf_bytes = 8 << 20, .sndbuf_bytes = 8 << 20};
    if (itr_udp_open(&local, &uo, &b->fd) != ITR_OK) {
        fprintf(stderr, "intentra-bench: socket: %s\n", strerror(errno));
        return 1;
    }
    if (itr_loop_new(&b->loop) != ITR_OK)
        return 1;
    b->peers = calloc(b->npeers, sizeof(bench_peer));
    b->dirty = calloc(b->npeers, sizeof(uint32_t));
    if (!b->peers || !b->dirty) {
        fprintf(stderr, "intentra-bench: out of memory for %u peers\n", b->npeers);
        return 1;
    }
    histogram_init(&b->lat);
    b->topic_len = strlen(b->o.topic);

    memset(&cb, 0, sizeof(cb));
    cb.peer_open = cb_open;
    cb.peer_close = cb_close;
    cb.message = cb_message;
    cb.acked = cb_acked;
    uint64_t now = itr_now_ns();
    for (uint32_t i = 0; i < b->npeers; i++) {
        bench_peer *p = &b->peers[i];
        p->b = b;
        p->index = i;
        itr_settings_default(&s);
        if (derive_key(b, i, s.static_private) != ITR_OK)
            return 1;
        s.accept_handshakes = 0;
        /* Small per-peer pools (thousands of peers share this process): at most the Reliable
         * window in flight, slots just large enough for this run's messages (datagrams from
         * the gateway up to that size are accepted: ACKs, keepalives, short reverse-path
         * messages). */
        s.max_packet = (uint32_t)(b->size + b->topic_len + 96);
        if (s.max_packet < 512)
            s.max_packet = 512;
        if (s.max_packet > ITR_MAX_PACKET)
            s.max_packet = ITR_MAX_PACKET;
        s.tx_ring_slots = 32;
        s.tx_pool_slots = ITR_RELIABLE_WINDOW;
        s.reorder_pool_slots = 16;
        s.max_peers = 1;
        /* Expanded AES-GCM keys (512 B each): without them every seal and open expands its
         * key again. Eight slots keep a session's two keys apart. They pay only while every
         * peer's state stays in cache between its turns: CPU per message 0.94 of without at
         * 80 peers, but 1.7 times at 2,000 (each turn loaded 512 cold bytes). */
        s.aead_cache_entries = b->npeers <= 256 ? 8 : 0;
        s.conn_id_modulus = b->npeers;
        s.conn_id_residue = i;
        int rc = itr_endpoint_new(&p->ep, &s, &cb, p, now);
        itr_wipe(s.static_private, sizeof(s.static_private));
        if (rc != ITR_OK) {
            fprintf(stderr, "intentra-bench: peer %u: %s\n", i, itr_strerror(rc));
            goto out;
        }
        itr_timer_init(&p->timer, peer_timer_cb, p);
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    itr_loop_watch(b->loop, b->fd, ITR_EV_READ, on_socket, b);
    itr_timer_init(&b->tick, tick_cb, b);
    b->t_connect_start = itr_now_ns();
    itr_loop_timer_set(b->loop, &b->tick, b->t_connect_start);
    if (itr_loop_run(b->loop) != ITR_OK) {
        fprintf(stderr, "intentra-bench: event loop: %s\n", strerror(errno));
        goto out;
    }
    if (!b->t_end)
        b->t_end = itr_now_ns();
    report(b);
    status = b->connected == b->npeers ? 0 : 1;

    /* Say goodbye so the gateway frees the sessions at once. */
    now = itr_now_ns();
    for (uint32_t i = 0; i < b->npeers; i++) {
        if (b->peers[i].state == 2) {
            itr_endpoint_close_peer(b->peers[i].ep, b->peers[i].pid, now);
            mark_dirty(&b->peers[i]);
        }
    }
    flush_tx(b);
out:
    for (uint32_t i = 0; i < b->npeers; i++)
        if (b->peers[i].ep) {
            itr_loop_timer_cancel(b->loop, &b->peers[i].timer);
            itr_endpoint_free(b->peers[i].ep);
        }
    itr_loop_unwatch(b->loop, b->fd);
    close(b->fd);
    itr_loop_free(b->loop);
    if (b->ack_log)
        fclose(b->ack_log);
    free(b->peers);
    free(b->dirty);
    free(b);
    return status;
}
