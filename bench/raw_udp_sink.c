/* raw_udp_sink: the receive ceiling of bench/run's ingest scenario: what one thread can take
 * off a UDP socket with recvmmsg batches and no cryptography, no routing and no sink.
 *
 *   raw-udp-sink [--listen HOST:PORT] [--batch N] [--rcvbuf BYTES] [--stats-file PATH]
 *                [--duration SECONDS] [--coalesce-us N] [--gro]
 *
 * The socket is opened exactly like the gateway's (itr_udp_open: non-blocking, SO_RXQ_OVFL,
 * the same receive buffer) and read the same way (wait for readability, then recvmmsg until
 * EAGAIN, at most 8 batches per wake-up; with --coalesce-us, the gateway's receive coalescing:
 * after a batch of 2..batch-1 datagrams sleep N us and read again), so the only difference to
 * the gateway is the work done per datagram. With --gro, UDP_GRO like the gateway's
 * transport.udp_gro: a buffer may hold several datagrams, counted one by one. The first
 * stdout line is "listening HOST:PORT"; on SIGTERM/SIGINT (or after --duration) one JSON line
 * with the totals follows. --stats-file exposes live counters (struct raw_stats below, native
 * endianness) through a shared mapping, so the benchmark runner can read them at the edges of
 * its measurement window without disturbing the receive loop.
 */
#define _GNU_SOURCE /* recvmmsg, SO_RXQ_OVFL */
#include <netinet/in.h>
#include <netinet/udp.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <intentra/intentra.h>

#define MAX_BATCH       1024
#define FAIR_BATCHES    8                                  /* like the driver's DRV_FAIR_BATCHES */
#define CMSG_SPACE_OVFL (2 * CMSG_SPACE(sizeof(uint32_t))) /* SO_RXQ_OVFL and UDP_GRO */
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* The live counters of --stats-file: five u64 in this order (the runner reads them with
 * struct.unpack("=5Q")). Written with relaxed atomic stores once per batch. */
struct raw_stats {
    uint64_t packets;
    uint64_t bytes;
    uint64_t kernel_drops; /* SO_RXQ_OVFL: datagrams the kernel dropped, our buffer full */
    uint64_t first_ns;     /* itr_now_ns() of the first datagram */
    uint64_t last_ns;      /* itr_now_ns() of the latest datagram */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: raw-udp-sink [--listen HOST:PORT] [--batch N] [--rcvbuf BYTES]\n"
               "                    [--stats-file PATH] [--duration SECONDS] [--coalesce-us N]\n"
               "                    [--gro]\n"
               "Counts UDP datagrams with recvmmsg and no processing (the ingest ceiling).\n"
               "  --listen HOST:PORT   bind address (default 127.0.0.1:0: a free port)\n"
               "  --batch N            datagrams per recvmmsg (default 64, like the gateway)\n"
               "  --rcvbuf BYTES       SO_RCVBUF (default 4194304, like the gateway)\n"
               "  --stats-file PATH    live counters for the runner (5 x u64)\n"
               "  --duration SECONDS   exit after this long (default: until SIGTERM)\n"
               "  --coalesce-us N      receive coalescing like the gateway's\n"
               "                       transport.receive_coalesce_us (default 0: off)\n"
               "  --gro                UDP_GRO like the gateway's transport.udp_gro\n");
}

/* Datagrams in a received buffer: several with GRO (the UDP_GRO control message gives their
 * size; the last may be shorter). */
static uint64_t datagrams_in(const struct mmsghdr *m)
{
    size_t seg = itr_udp_gro_segment(&m->msg_hdr);
    return seg ? (m->msg_len + seg - 1) / seg : 1;
}

static int parse_u64(const char *flag, const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "raw-udp-sink: %s %s: expected an integer in [%" PRIu64 ", %" PRIu64 "]\n",
                flag, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Peak resident memory of this process image (VmHWM). Not getrusage's ru_maxrss: that one
 * survives execve, so a child of a large parent (the benchmark runner) would report the
 * parent's size. Returns -1 if /proc cannot be read. */
static long peak_rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Map the stats file (created or truncated to one struct). Returns NULL on failure. */
static struct raw_stats *stats_map(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "raw-udp-sink: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    if (ftruncate(fd, sizeof(struct raw_stats)) != 0) {
        fprintf(stderr, "raw-udp-sink: %s: %s\n", path, strerror(errno));
        close(fd);
        return NULL;
    }
    void *p = mmap(NULL, sizeof(struct raw_stats), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        fprintf(stderr, "raw-udp-sink: mmap %s: %s\n", path, strerror(errno));
        return NULL;
    }
    return p;
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0", *stats_path = NULL;
    uint64_t batch = 64, rcvbuf = 4u << 20, duration_s = 0, coalesce_us = 0;
    struct raw_stats local, *shared = NULL;
    struct mmsghdr *msgs = NULL;
    struct iovec *iov = NULL;
    uint8_t *bufs = NULL, *ctrl = NULL;
    int fd = -1, status = 1, gro = 0;
    char err[256], addr_text[64];
    itr_addr bind_addr, bound;

    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(f, "--gro")) {
            gro = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "raw-udp-sink: unknown flag or missing value: %s\n", f);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(f, "--listen")) {
            listen = v;
        } else if (!strcmp(f, "--stats-file")) {
            stats_path = v;
        } else if (!strcmp(f, "--batch")) {
            if (parse_u64(f, v, 1, MAX_BATCH, &batch))
                return 2;
        } else if (!strcmp(f, "--rcvbuf")) {
            if (parse_u64(f, v, 0, 1u << 30, &rcvbuf))
                return 2;
        } else if (!strcmp(f, "--duration")) {
            if (parse_u64(f, v, 0, 86400, &duration_s))
                return 2;
        } else if (!strcmp(f, "--coalesce-us")) {
            if (parse_u64(f, v, 0, ITR_RX_COALESCE_MAX_US, &coalesce_us))
                return 2;
        } else {
            fprintf(stderr, "raw-udp-sink: unknown flag %s\n", f);
            usage(stderr);
            return 2;
        }
    }
    if (itr_addr_parse(&bind_addr, listen, err, sizeof(err)) != ITR_OK) {
        fprintf(stderr, "raw-udp-sink: --listen: %s\n", err);
        return 2;
    }

    /* Handlers before "listening" is printed: the runner may signal us right after it. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR at once */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    memset(&local, 0, sizeof(local));
    if (stats_path && !(shared = stats_map(stats_path)))
        goto out;
    msgs = calloc(batch, sizeof(*msgs));
    iov = calloc(batch, sizeof(*iov));
    size_t slot = gro ? ITR_GRO_BUF_LEN : ITR_MAX_PACKET;
    bufs = malloc(batch * slot);
    ctrl = calloc(batch, CMSG_SPACE_OVFL);
    if (!msgs || !iov || !bufs || !ctrl) {
        fprintf(stderr, "raw-udp-sink: out of memory\n");
        goto out;
    }
    itr_udp_options uo = {.rcvbuf_bytes = (int)rcvbuf, .sndbuf_bytes = 0};
    if (itr_udp_open(&bind_addr, &uo, &fd) != ITR_OK || itr_udp_local_addr(fd, &bound) != ITR_OK) {
        fprintf(stderr, "raw-udp-sink: %s: %s\n", listen, strerror(errno));
        goto out;
    }
    int on = 1;
    if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) != 0) {
        fprintf(stderr, "raw-udp-sink: --gro: setsockopt UDP_GRO: %s\n", strerror(errno));
        goto out;
    }
    itr_addr_format(&bound, addr_text, sizeof(addr_text));
    printf("listening %s\n", addr_text);
    fflush(stdout);

    uint64_t deadline = duration_s ? itr_now_ns() + duration_s * 1000000000ull : UINT64_MAX;
    uint32_t ovfl_last = 0;
    size_t used = batch; /* headers to reset before the next recvmmsg: all, the first time */
    while (!stop_requested && itr_now_ns() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, 100); /* wake now and then to notice the deadline */
        if (pr < 0 && errno != EINTR) {
            fprintf(stderr, "raw-udp-sink: poll: %s\n", strerror(errno));
            goto out;
        }
        if (pr <= 0)
            continue;
        /* Drain like the gateway's driver: batches until the socket is empty, at most
         * FAIR_BATCHES per wake-up (coalescing waits count); only the headers the kernel
         * wrote last time are reset. */
        for (int round = 0; round < FAIR_BATCHES; round++) {
            for (size_t i = 0; i < used; i++) {
                iov[i].iov_base = bufs + i * slot;
                iov[i].iov_len = slot;
                memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_control = ctrl + i * CMSG_SPACE_OVFL;
                msgs[i].msg_hdr.msg_controllen = CMSG_SPACE_OVFL;
            }
            used = 0;
            int n = recvmmsg(fd, msgs, (unsigned)batch, MSG_DONTWAIT, NULL);
            if (n <= 0)
                break;
            used = (size_t)n;
            uint64_t now = itr_now_ns();
            uint64_t got = 0;
            for (int i = 0; i < n; i++) {
                local.bytes += msgs[i].msg_len;
                got += datagrams_in(&msgs[i]);
            }
            /* The kernel's drop count is cumulative: the newest datagram's is enough (as the
             * gateway's driver reads it). */
            struct msghdr *last = &msgs[n - 1].msg_hdr;
            for (struct cmsghdr *c = last->msg_controllen ? CMSG_FIRSTHDR(last) : NULL; c;
                 c = CMSG_NXTHDR(last, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
                    uint32_t ovfl;
                    memcpy(&ovfl, CMSG_DATA(c), sizeof(ovfl));
                    local.kernel_drops += (uint32_t)(ovfl - ovfl_last);
                    ovfl_last = ovfl;
                }
            }
            if (!local.packets)
                local.first_ns = now;
            local.packets += got;
            local.last_ns = now;
            if (shared) {
                __atomic_store_n(&shared->packets, local.packets, __ATOMIC_RELAXED);
                __atomic_store_n(&shared->bytes, local.bytes, __ATOMIC_RELAXED);
                __atomic_store_n(&shared->kernel_drops, local.kernel_drops, __ATOMIC_RELAXED);
                __atomic_store_n(&shared->first_ns, local.first_ns, __ATOMIC_RELAXED);
                __atomic_store_n(&shared->last_ns, local.last_ns, __ATOMIC_RELAXED);
            }
            if ((size_t)n < batch) {
                if (coalesce_us == 0 || n < 2)
                    break;
                struct timespec ts = {0, (long)coalesce_us * 1000};
                (void)nanosleep(&ts, NULL);
            }
        }
    }

    double active =
        local.last_ns > local.first_ns ? (double)(local.last_ns - local.first_ns) / 1e9 : 0;
    printf("{\"packets\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"kernel_drops\":%" PRIu64
           ",\"active_seconds\":%.6f,\"pps\":%.1f,\"cpu_seconds\":%.3f,\"peak_rss_kib\":%ld}\n",
           local.packets, local.bytes, local.kernel_drops, active,
           active > 0 ? (double)local.packets / active : 0, cpu_seconds(), peak_rss_kib());
    fflush(stdout);
    status = 0;
out:
    if (fd >= 0)
        close(fd);
    if (shared)
        munmap(shared, sizeof(*shared));
    free(msgs);
    free(iov);
    free(bufs);
    free(ctrl);
    return status;
}
