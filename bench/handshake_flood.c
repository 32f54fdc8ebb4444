/* handshake_flood: a spoofed handshake-initiation flood for bench/run's handshake scenario.
 *
 *   handshake-flood --target HOST:PORT --gateway-key HEX|FILE --rate PPS [--duration S]
 *                   [--ips N] [--sockets-per-ip M] [--batch N]
 *
 * Sends well-formed message 1 datagrams (docs/PROTOCOL.md §4.1) with a valid mac1 for the
 * gateway's static key, a fresh random ephemeral key and connection id each, and no cookie,
 * from N loopback source addresses (127.1.x.y: each its own per-IP handshake budget) times M
 * sockets each (distinct random source ports), round-robin, with sendmmsg. That is the
 * cheapest attack that gets past mac1: it makes the responder either spend a DH and a slot or
 * answer with a cookie. The flood never completes a handshake and never echoes a cookie, as a
 * spoofer who cannot receive at the forged address could not. Replies that do reach us
 * (COOKIE_REPLY, message 2) are drained and counted, which shows what the responder chose.
 * One JSON line with the totals goes to stdout at the end.
 *
 * Links libintentra's internal headers (itr_wire.h, itr_cookie.h) so the packets are built by
 * the same code as a real initiator's.
 */
#define _GNU_SOURCE /* sendmmsg, recvmmsg */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <intentra/intentra.h>

#include "itr_cookie.h"
#include "itr_wire.h"

#define MAX_BATCH    256
#define MAX_SOCKETS  16384
#define RECV_BATCH   64
#define EPOLL_EVENTS 64
#define MSG1_I_OFF   ITR_MSG1_PAYLOAD_OFF /* the payload repeats I first */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: handshake-flood --target HOST:PORT --gateway-key HEX|FILE --rate PPS\n"
            "                       [--duration S] [--ips N] [--sockets-per-ip M] [--batch N]\n"
            "Floods a responder with spoofed handshake message 1 (valid mac1, no cookie).\n"
            "  --target HOST:PORT        the gateway (IPv4 loopback)\n"
            "  --gateway-key HEX|FILE    its static public key (mac1 is keyed by it)\n"
            "  --rate PPS                message 1 datagrams per second (0: as fast as possible)\n"
            "  --duration S              flood time (default 10)\n"
            "  --ips N                   source addresses 127.1.x.y (default 64)\n"
            "  --sockets-per-ip M        sockets (source ports) per address (default 4)\n"
            "  --batch N                 datagrams per sendmmsg (default 16)\n");
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "handshake-flood: %s %s: expected a number in [%g, %g]\n", flag, v, lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* One spoofed message 1: random I and e, the Noise payload I || 40 zeros, mac1, no cookie. */
static void build_msg1(uint8_t out[ITR_MSG1_LEN], const itr_cookie_keys *keys)
{
    uint32_t conn_i;
    itr_header h;

    do {
        randombytes_buf(&conn_i, sizeof(conn_i));
    } while (conn_i == 0);
    memset(out, 0, ITR_MSG1_LEN);
    memset(&h, 0, sizeof(h));
    h.version = ITR_VERSION;
    h.type = ITR_PT_HANDSHAKE;
    h.payload_len = ITR_MSG1_LEN - ITR_HEADER_LEN;
    h.conn_id = 0;
    h.seq = 1;
    h.ack = conn_i;
    itr_header_write(out, &h);
    out[ITR_MSG1_SUITE_OFF] = ITR_SUITE_AESGCM;
    randombytes_buf(out + ITR_MSG1_E_OFF, 32);
    itr_put_u32(out + MSG1_I_OFF, conn_i);
    itr_mac1_write(keys, out);
}

typedef struct flood_counts {
    uint64_t cookie_replies, msg2, other;
} flood_counts;

/* Drain whatever the responder sent back to our sockets; count it by packet type. */
static void drain_replies(int ep, flood_counts *c)
{
    struct epoll_event evs[EPOLL_EVENTS];
    static uint8_t bufs[RECV_BATCH][ITR_MAX_PACKET];
    struct mmsghdr msgs[RECV_BATCH];
    struct iovec iov[RECV_BATCH];

    int n = epoll_wait(ep, evs, EPOLL_EVENTS, 0);
    for (int e = 0; e < n; e++) {
        int fd = evs[e].data.fd;
        for (;;) {
            memset(msgs, 0, sizeof(msgs));
            for (int i = 0; i < RECV_BATCH; i++) {
                iov[i].iov_base = bufs[i];
                iov[i].iov_len = sizeof(bufs[i]);
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            int r = recvmmsg(fd, msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
            if (r <= 0)
                break;
            for (int i = 0; i < r; i++) {
                uint8_t type = msgs[i].msg_len > 0 ? (bufs[i][0] & 0x0f) : 0xff;
                if (type == ITR_PT_COOKIE_REPLY && msgs[i].msg_len == ITR_COOKIE_REPLY_LEN)
                    c->cookie_replies++;
                else if (type == ITR_PT_HANDSHAKE && msgs[i].msg_len == ITR_MSG2_LEN)
                    c->msg2++;
                else
                    c->other++;
            }
            if (r < RECV_BATCH)
                break;
        }
    }
}

static void sleep_until(uint64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000ull),
                          .tv_nsec = (long)(deadline_ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop_requested)
        ;
}

int main(int argc, char **argv)
{
    const char *target = NULL, *gw_key = NULL;
    double rate = -1, duration = 10, ips_d = 64, per_ip_d = 4, batch_d = 16;
    uint8_t gw_pub[ITR_KEY_LEN];
    itr_cookie_keys keys;
    itr_addr to;
    char err[512];
    int *fds = NULL, ep = -1, status = 1;
    size_t nfds = 0;
    flood_counts counts = {0, 0, 0};
    static uint8_t pkts[MAX_BATCH][ITR_MSG1_LEN];
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];

    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "handshake-flood: unknown flag or missing value: %s\n", f);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(f, "--target"))
            target = v;
        else if (!strcmp(f, "--gateway-key"))
            gw_key = v;
        else if (!strcmp(f, "--rate"))
            bad = parse_num(f, v, 0, 1e8, &rate);
        else if (!strcmp(f, "--duration"))
            bad = parse_num(f, v, 0, 86400, &duration);
        else if (!strcmp(f, "--ips"))
            bad = parse_num(f, v, 1, 65000, &ips_d);
        else if (!strcmp(f, "--sockets-per-ip"))
            bad = parse_num(f, v, 1, 1024, &per_ip_d);
        else if (!strcmp(f, "--batch"))
            bad = parse_num(f, v, 1, MAX_BATCH, &batch_d);
        else {
            fprintf(stderr, "handshake-flood: unknown flag %s (see --help)\n", f);
            return 2;
        }
        if (bad)
            return 2;
    }
    if (!target || !gw_key || rate < 0) {
        fprintf(stderr, "handshake-flood: --target, --gateway-key and --rate are required\n");
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "handshake-flood: libsodium failed to initialise\n");
        return 1;
    }
    if (itr_addr_parse(&to, target, err, sizeof(err)) != ITR_OK || to.u.sa.sa_family != AF_INET) {
        fprintf(stderr, "handshake-flood: --target: %s\n",
                to.u.sa.sa_family != AF_INET ? "expected an IPv4 address" : err);
        return 2;
    }
    if (itr_key_parse_public(gw_key, gw_pub, err, sizeof(err)) != ITR_OK) {
        fprintf(stderr, "handshake-flood: --gateway-key: %s\n", err);
        return 2;
    }
    itr_cookie_keys_derive(&keys, gw_pub);

    size_t nips = (size_t)ips_d, per_ip = (size_t)per_ip_d, batch = (size_t)batch_d;
    if (nips * per_ip > MAX_SOCKETS) {
        fprintf(stderr, "handshake-flood: --ips x --sockets-per-ip must be <= %d\n", MAX_SOCKETS);
        return 2;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    fds = malloc(nips * per_ip * sizeof(int));
    if (ep < 0 || !fds) {
        fprintf(stderr, "handshake-flood: %s\n", ep < 0 ? strerror(errno) : "out of memory");
        goto out;
    }
    /* 127.1.x.y with x.y = 0.1, 0.2, ...: every address on 127/8 is local on Linux. */
    for (size_t a = 0; a < nips; a++) {
        for (size_t k = 0; k < per_ip; k++) {
            struct sockaddr_in src;
            memset(&src, 0, sizeof(src));
            src.sin_family = AF_INET;
            src.sin_addr.s_addr = htonl(0x7f010000u | (uint32_t)(a + 1));
            int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
                fprintf(stderr, "handshake-flood: socket on 127.1.%zu.%zu: %s\n", (a + 1) >> 8,
                        (a + 1) & 0xff, strerror(errno));
                if (fd >= 0)
                    close(fd);
                goto out;
            }
            fds[nfds++] = fd;
            struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
                fprintf(stderr, "handshake-flood: epoll_ctl: %s\n", strerror(errno));
                goto out;
            }
        }
    }

    memset(msgs, 0, sizeof(msgs));
    for (size_t i = 0; i < batch; i++) {
        iov[i].iov_base = pkts[i];
        iov[i].iov_len = ITR_MSG1_LEN;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to.u.sa;
        msgs[i].msg_hdr.msg_namelen = itr_addr_len(&to);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    uint64_t attempted = 0, sent = 0, send_errors = 0;
    size_t sock = 0;
    uint64_t t0 = itr_now_ns(), tick = t0, t_end = t0;
    uint64_t limit_ns = (uint64_t)(duration * 1e9);
    while (!stop_requested && itr_now_ns() - t0 < limit_ns) {
        uint64_t now = itr_now_ns();
        uint64_t due = rate > 0 ? (uint64_t)((double)(now - t0) / 1e9 * rate) : attempted + batch;
        uint64_t budget = 16 * batch;
        while (attempted < due && budget > 0) {
            size_t n = (size_t)(due - attempted);
            if (n > batch)
                n = batch;
            for (size_t i = 0; i < n; i++)
                build_msg1(pkts[i], &keys);
            /* One sendmmsg per source socket, rotating: a batch shares its source address,
             * so small batches interleave the sources more finely. */
            int r = sendmmsg(fds[sock], msgs, (unsigned)n, 0);
            attempted += n;
            budget = budget > n ? budget - n : 0;
            if (r < 0) {
                send_errors += n;
            } else {
                sent += (uint64_t)r;
                send_errors += n - (size_t)r;
            }
            sock = (sock + 1) % nfds;
        }
        drain_replies(ep, &counts);
        t_end = itr_now_ns();
        if (rate > 0) {
            tick += 1000000ull;
            if (tick > t_end)
                sleep_until(tick);
            else
                tick = t_end;
        }
    }
    drain_replies(ep, &counts);
    double secs = (double)(t_end - t0) / 1e9;
    /* offered: what the schedule demanded by the end (rate x time), so a generator that fell
     * behind shows it as sent < offered instead of hiding the backlog it never reached. */
    uint64_t offered = rate > 0 ? (uint64_t)(secs * rate) : attempted;
    if (offered < attempted)
        offered = attempted;
    printf("{\"offered\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"send_errors\":%" PRIu64
           ",\"sources\":%zu,\"seconds\":%.6f,\"pps\":%.1f,\"cookie_replies\":%" PRIu64
           ",\"msg2_received\":%" PRIu64 ",\"other_received\":%" PRIu64 ",\"cpu_seconds\":%.3f}\n",
           offered, sent, send_errors, nfds, secs, secs > 0 ? (double)sent / secs : 0,
           counts.cookie_replies, counts.msg2, counts.other, cpu_seconds());
    fflush(stdout);
    status = 0;
out:
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    free(fds);
    if (ep >= 0)
        close(ep);
    return status;
}
