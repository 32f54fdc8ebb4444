/* udp_blast: a paced sendmmsg blaster of plain UDP datagrams, the load generator for the raw
 * recvmmsg ceiling (raw_udp_sink) and for rsyslog's imudp in bench/run.
 *
 *   udp-blast --target HOST:PORT --rate PPS --size BYTES [--duration S] [--count N]
 *             [--sources N] [--batch N] [--gso N] [--syslog]
 *
 * Each datagram is an intentra-bench payload (tools/bench_payload.h: "ib1 <source> <seq>
 * <send_ns> x...#<crc32>"), exactly --size bytes, so whatever receives it (a Kafka topic fed
 * by rsyslog, for instance) can be checked for integrity and counted exactly once the same way
 * as the gateway's output. --syslog prefixes "<134>" (local0.info) so rsyslog sees a PRI and
 * the rest of the datagram reaches %rawmsg% unchanged; the size includes the prefix.
 * Offered load is paced globally at --rate datagrams per second on a 1 ms tick, round-robin
 * over --sources sockets (distinct source ports, like distinct peers). One JSON line with the
 * totals goes to stdout at the end. --gso N sends up to N datagrams of a batch as one UDP GSO
 * message (itr_udp_pack, as intentra-bench sends each peer's queued datagrams): a receiver
 * with UDP_GRO gets them as one buffer, any other gets them cut apart by the kernel.
 */
#define _GNU_SOURCE /* sendmmsg */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <intentra/intentra.h>

#include "bench_payload.h"

#define MAX_BATCH   1024
#define MAX_SOURCES 4096
#define SYSLOG_PRI  "<134>"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: udp-blast --target HOST:PORT --rate PPS --size BYTES [--duration S]\n"
            "                 [--count N] [--sources N] [--batch N] [--gso N] [--syslog]\n"
            "Sends self-checking bench payloads over plain UDP at a paced rate (sendmmsg).\n"
            "  --target HOST:PORT   destination\n"
            "  --rate PPS           datagrams per second in total (0: as fast as possible)\n"
            "  --size BYTES         datagram size, %d..%d (default 170)\n"
            "  --duration S         sending time (default 10)\n"
            "  --count N            stop after N datagrams (default: no limit)\n"
            "  --sources N          source sockets, round-robin (default 1)\n"
            "  --batch N            datagrams per sendmmsg (default 64)\n"
            "  --gso N              up to N datagrams per UDP GSO message (default 1: off)\n"
            "  --syslog             prefix each datagram with a syslog PRI (%s)\n",
            BENCH_PAYLOAD_MIN + (int)sizeof(SYSLOG_PRI) - 1, ITR_MAX_PACKET, SYSLOG_PRI);
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "udp-blast: %s %s: expected a number in [%g, %g]\n", flag, v, lo, hi);
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

static void sleep_until(uint64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000ull),
                          .tv_nsec = (long)(deadline_ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop_requested)
        ;
}

int main(int argc, char **argv)
{
    const char *target = NULL;
    double rate = -1, size_d = 170, duration = 10, count_d = 0, sources_d = 1, batch_d = 64,
           gso_d = 1;
    int syslog_pri = 0, status = 1;
    int *fds = NULL;
    uint64_t *seq = NULL;
    char err[256];
    itr_addr to;
    struct mmsghdr *msgs = NULL;
    struct iovec *iov = NULL;
    char *bufs = NULL;
    itr_datagram *dg = NULL;
    uint32_t *per_msg = NULL;
    uint8_t *ctrl = NULL;

    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(f, "--syslog")) {
            syslog_pri = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "udp-blast: unknown flag or missing value: %s\n", f);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(f, "--target"))
            target = v;
        else if (!strcmp(f, "--rate"))
            bad = parse_num(f, v, 0, 1e8, &rate);
        else if (!strcmp(f, "--size"))
            bad = parse_num(f, v, BENCH_PAYLOAD_MIN, ITR_MAX_PACKET, &size_d);
        else if (!strcmp(f, "--duration"))
            bad = parse_num(f, v, 0, 86400, &duration);
        else if (!strcmp(f, "--count"))
            bad = parse_num(f, v, 0, 1e12, &count_d);
        else if (!strcmp(f, "--sources"))
            bad = parse_num(f, v, 1, MAX_SOURCES, &sources_d);
        else if (!strcmp(f, "--batch"))
            bad = parse_num(f, v, 1, MAX_BATCH, &batch_d);
        else if (!strcmp(f, "--gso"))
            bad = parse_num(f, v, 1, ITR_GSO_MAX_SEGMENTS, &gso_d);
        else {
            fprintf(stderr, "udp-blast: unknown flag %s (see --help)\n", f);
            return 2;
        }
        if (bad)
            return 2;
    }
    if (!target || rate < 0) {
        fprintf(stderr, "udp-blast: --target and --rate are required (see --help)\n");
        return 2;
    }
    size_t size = (size_t)size_d, batch = (size_t)batch_d, nsources = (size_t)sources_d;
    size_t gso = (size_t)gso_d;
    size_t prefix = syslog_pri ? sizeof(SYSLOG_PRI) - 1 : 0;
    uint64_t count = (uint64_t)count_d;
    if (size < BENCH_PAYLOAD_MIN + prefix) {
        fprintf(stderr, "udp-blast: --size %zu too small for the payload (min %zu)\n", size,
                BENCH_PAYLOAD_MIN + prefix);
        return 2;
    }
    if (itr_addr_parse(&to, target, err, sizeof(err)) != ITR_OK) {
        fprintf(stderr, "udp-blast: --target: %s\n", err);
        return 2;
    }

    fds = malloc(nsources * sizeof(int));
    seq = calloc(nsources, sizeof(uint64_t)); /* per source: payload sequence numbers */
    msgs = calloc(batch, sizeof(*msgs));
    iov = calloc(batch, sizeof(*iov));
    bufs = malloc(batch * size);
    dg = calloc(batch, sizeof(*dg));
    per_msg = calloc(batch, sizeof(*per_msg));
    ctrl = calloc(batch, ITR_GSO_CTRL_LEN);
    if (!fds || !seq || !msgs || !iov || !bufs || !dg || !per_msg || !ctrl) {
        fprintf(stderr, "udp-blast: out of memory\n");
        goto out;
    }
    for (size_t s = 0; s < nsources; s++)
        fds[s] = -1;
    for (size_t s = 0; s < nsources; s++) {
        /* Blocking sockets: a full send buffer makes us wait instead of spinning. */
        fds[s] = socket(to.u.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fds[s] < 0) {
            fprintf(stderr, "udp-blast: socket: %s\n", strerror(errno));
            goto out;
        }
        int sndbuf = 4 << 20;
        setsockopt(fds[s], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    }
    for (size_t i = 0; i < batch; i++) {
        iov[i].iov_base = bufs + i * size;
        iov[i].iov_len = size;
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
    size_t src = 0;
    uint64_t t0 = itr_now_ns(), tick = t0, t_end = t0;
    uint64_t limit_ns = (uint64_t)(duration * 1e9);
    for (;;) {
        uint64_t now = itr_now_ns();
        if (stop_requested || now - t0 >= limit_ns || (count && attempted >= count))
            break;
        uint64_t due = rate > 0 ? (uint64_t)((double)(now - t0) / 1e9 * rate) : attempted + batch;
        if (count && due > count)
            due = count;
        /* Bound one tick's work (about 20 ms at full speed) so the deadline is noticed. */
        uint64_t budget = 64 * batch;
        while (attempted < due && budget > 0 && !stop_requested) {
            size_t n = (size_t)(due - attempted);
            if (n > batch)
                n = batch;
            uint64_t send_ns = itr_now_ns();
            for (size_t i = 0; i < n; i++) {
                char *b = bufs + i * size;
                if (prefix)
                    memcpy(b, SYSLOG_PRI, prefix);
                bench_payload_make(b + prefix, size - prefix, (uint32_t)src, seq[src]++, send_ns);
            }
            size_t nmsg = n;
            if (gso > 1) {
                nmsg = 0;
                for (size_t off = 0; off < n; off += gso) {
                    size_t k = n - off < gso ? n - off : gso;
                    for (size_t j = off; j < off + k; j++)
                        dg[j] = (itr_datagram){
                            .addr = to, .data = (uint8_t *)bufs + j * size, .len = size};
                    nmsg += itr_udp_pack(dg + off, k, 1, msgs + nmsg, iov + off,
                                         ctrl + nmsg * ITR_GSO_CTRL_LEN, per_msg + nmsg);
                }
            }
            int r = sendmmsg(fds[src], msgs, (unsigned)nmsg, 0);
            attempted += n;
            budget = budget > n ? budget - n : 0;
            if (r < 0) {
                /* Counted, not retried: the next datagrams carry fresh sequence numbers. */
                send_errors += n;
            } else {
                size_t done = (size_t)r;
                if (gso > 1) {
                    done = 0;
                    for (int m = 0; m < r; m++)
                        done += per_msg[m];
                }
                sent += done;
                send_errors += n - done;
            }
            src = (src + 1) % nsources;
        }
        t_end = itr_now_ns();
        if (rate > 0) {
            tick += 1000000ull; /* 1 ms pacing tick; catch up without sleeping if behind */
            if (tick > t_end)
                sleep_until(tick);
            else
                tick = t_end;
        }
    }
    double secs = (double)(t_end - t0) / 1e9;
    /* offered: what the schedule demanded by the end (rate x time), so a generator that fell
     * behind shows it as sent < offered instead of hiding the backlog it never reached. */
    uint64_t offered = rate > 0 ? (uint64_t)(secs * rate) : attempted;
    if (count && offered > count)
        offered = count;
    if (offered < attempted)
        offered = attempted;
    printf("{\"offered\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"send_errors\":%" PRIu64
           ",\"size\":%zu,\"sources\":%zu,\"seconds\":%.6f,\"pps\":%.1f,\"cpu_seconds\":%.3f}\n",
           offered, sent, send_errors, size, nsources, secs, secs > 0 ? (double)sent / secs : 0,
           cpu_seconds());
    fflush(stdout);
    status = 0;
out:
    if (fds)
        for (size_t s = 0; s < nsources; s++)
            if (fds[s] >= 0)
                close(fds[s]);
    free(fds);
    free(seq);
    free(msgs);
    free(iov);
    free(bufs);
    free(dg);
    free(per_msg);
    free(ctrl);
    return status;
}
