/* itr_driver.c: binds an itr_endpoint to a loop and UDP sockets. recvmmsg batches in,
 * sendmmsg batches out, the endpoint's expiry as one loop timer.
 *
 * Receive: a readable socket is read in batches of `batch` datagrams until EAGAIN, or for at
 * most DRV_FAIR_BATCHES batches, then the driver yields to the loop (epoll is level-triggered,
 * so the socket is reported again and other fds get their turn). After each batch: the batch
 * hook, itr_endpoint_flush, transmit.
 *
 * Receive coalescing (itr_driver_set_rx_coalesce, off by default): a batch that found more
 * than one datagram but not a full batch means traffic is flowing and the queue was just
 * drained. Going straight back to epoll would take the next datagrams a few at a time, each
 * time paying a readiness check, a recvmmsg and often a sleep and a wake-up, and the sender
 * pays for waking us too. Instead the driver sleeps `usec` and reads again, so the next batch
 * is fuller: a NIC's interrupt moderation, for a socket. A batch of one datagram (or none)
 * ends it, so a quiet socket adds no latency and no extra wake-up; the wait counts as one of
 * the DRV_FAIR_BATCHES rounds, so wakes and timers wait at most that many waits.
 *
 * Transmit: the endpoint's ring is FIFO and only its oldest datagrams can be consumed, so the
 * driver sends the ring's head in runs of datagrams for the same socket, one sendmmsg per run.
 * EAGAIN leaves the rest queued and watches the socket for EPOLLOUT: transmission resumes when
 * the kernel has room, without spinning. A datagram the kernel refuses outright (EMSGSIZE, an
 * address of the wrong family, ...) can never be sent: it is consumed and counted in
 * send_errors, so one bad datagram cannot wedge the ring. With several sockets a blocked one
 * holds back the datagrams queued behind it for the others (head of line): the ring has one
 * order.
 *
 * UDP offloads (itr_driver_set_offload, off by default). GSO: within a run, datagrams for the
 * same address with the same length (the last may be shorter) leave as one message with a
 * UDP_SEGMENT control message, up to ITR_GSO_MAX_SEGMENTS, and the kernel cuts them apart:
 * one trip through the socket layer instead of one per datagram. A kernel or device that
 * refuses it (EIO, EINVAL, ...) turns GSO off for this driver and the same datagrams go again
 * one by one. GRO: the sockets' UDP_GRO option; the kernel may then deliver such a burst (or
 * what a NIC coalesced) as one buffer plus its segment size, and receive() cuts it apart
 * before the endpoint sees the datagrams. Every receive slot then holds ITR_GRO_BUF_LEN
 * bytes, the most one UDP payload can be, so nothing is ever truncated.
 *
 * Timer: itr_endpoint_expiry() is re-read after every interaction with the endpoint and the
 * loop timer re-armed (the loop makes re-arming idempotent and cheap).
 *
 * Memory: all buffers (batch x (ITR_MAX_PACKET + 1) bytes, message headers, addresses,
 * control buffers) are allocated by itr_driver_new, and the receive buffers again, at
 * batch x ITR_GRO_BUF_LEN, by itr_driver_set_offload when GRO is turned on; nothing is
 * allocated on the packet path.
 */
#define _GNU_SOURCE /* recvmmsg, sendmmsg, SO_RXQ_OVFL */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <time.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <intentra/driver.h>

#include "itr_io.h"

#define DRV_MAX_SOCKETS  16
#define DRV_FAIR_BATCHES 8    /* receive batches per readiness event before yielding */
#define DRV_MAX_BATCH    1024 /* UIO_MAXIOV: the kernel's limit on one sendmmsg/recvmmsg */
#define DRV_CTRL_LEN     64   /* SO_RXQ_OVFL and UDP_GRO control messages (24 bytes each) */
#define DRV_RETRY_NS     1000000ull
/* One byte more than the largest valid datagram: a longer one arrives truncated to this
 * length, which the endpoint then counts as too_long instead of seeing a valid-looking
 * prefix. */
#define DRV_RX_BUF_LEN (ITR_MAX_PACKET + 1)
#ifndef UDP_GRO
#define UDP_GRO 104 /* linux/udp.h, 5.0 */
#endif

typedef struct drv_socket {
    struct itr_driver *d;
    int fd;
    uint32_t index;
    uint32_t ovfl_seen; /* last SO_RXQ_OVFL value: the kernel's counter is cumulative */
    uint32_t watched;   /* events currently requested from the loop */
    int blocked;        /* EAGAIN on send: waiting for EPOLLOUT */
} drv_socket;

/* Single writer (the loop thread), read from any thread: relaxed loads and stores suffice. */
typedef struct drv_stats {
    _Atomic uint64_t kernel_drops, recv_batches, recv_packets, send_batches, send_packets;
    _Atomic uint64_t send_errors, send_blocked, rx_coalesce_waits, gro_datagrams, gso_datagrams;
} drv_stats;

struct itr_driver {
    itr_loop *loop;
    itr_endpoint *ep;
    size_t batch;
    drv_socket socks[DRV_MAX_SOCKETS];
    uint32_t nsocks;
    int paused;
    int watch_failed; /* could not watch for EPOLLOUT: retry transmitting from the timer */
    itr_timer expiry;
    void (*hook)(void *arg, uint64_t now);
    void *hook_arg;
    void (*error_hook)(void *arg, uint32_t local, int err);
    void *error_arg;
    /* Receive batch. */
    uint8_t *rx_buf;
    size_t rx_slot;   /* bytes per receive slot: DRV_RX_BUF_LEN, or ITR_GRO_BUF_LEN with GRO */
    uint32_t offload; /* ITR_DRIVER_GSO | ITR_DRIVER_GRO */
    itr_addr *rx_addr;
    uint8_t *rx_ctrl;
    struct iovec *rx_iov;
    struct mmsghdr *rx_msgs;
    size_t rx_used;      /* headers the kernel wrote in the last recvmmsg: reset before the next */
    long rx_coalesce_ns; /* 0: off (see the top of this file) */
    /* Transmit batch. */
    itr_datagram *tx_dg;
    struct iovec *tx_iov;
    struct mmsghdr *tx_msgs;
    uint8_t *tx_ctrl;
    uint32_t *tx_counts; /* datagrams in each tx_msgs entry */
    drv_stats st;
};

static void stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static void report_error(itr_driver *d, uint32_t local, int err)
{
    if (d->error_hook)
        d->error_hook(d->error_arg, local, err);
}

static void sock_on_event(void *arg, int fd, uint32_t events);

static void sock_update_watch(drv_socket *s)
{
    itr_driver *d = s->d;
    uint32_t want = (d->paused ? 0 : ITR_EV_READ) | (s->blocked ? ITR_EV_WRITE : 0);
    if (want == s->watched)
        return;
    if (itr_loop_watch(d->loop, s->fd, want, sock_on_event, s) != ITR_OK) {
        /* Practically only ENOMEM in epoll_ctl. Keep the old set and let the timer retry. */
        if (s->blocked)
            d->watch_failed = 1;
        return;
    }
    s->watched = want;
}

static void rearm(itr_driver *d)
{
    uint64_t t = itr_endpoint_expiry(d->ep);
    if (d->watch_failed) {
        uint64_t soon = itr_now_ns() + DRV_RETRY_NS;
        if (soon < t)
            t = soon;
    }
    if (t == UINT64_MAX)
        itr_loop_timer_cancel(d->loop, &d->expiry);
    else
        itr_loop_timer_set(d->loop, &d->expiry, t);
}

/* Send the ring's head until it is empty or a socket would block. Every pass consumes at
 * least one datagram or returns, so this ends. */
static void transmit(itr_driver *d)
{
    for (;;) {
        size_t n = itr_endpoint_tx_peek(d->ep, d->tx_dg, d->batch);
        if (n == 0)
            return;
        uint32_t local = d->tx_dg[0].addr.local;
        if (local >= d->nsocks) {
            /* No such socket: the datagram cannot leave. */
            itr_endpoint_tx_consume(d->ep, 1);
            stat_add(&d->st.send_errors, 1);
            report_error(d, local, EBADF);
            continue;
        }
        drv_socket *s = &d->socks[local];
        if (s->blocked)
            return;
        size_t run = 1;
        while (run < n && d->tx_dg[run].addr.local == local)
            run++;
        int gso = (d->offload & ITR_DRIVER_GSO) != 0;
        size_t nmsg =
            itr_udp_pack(d->tx_dg, run, gso, d->tx_msgs, d->tx_iov, d->tx_ctrl, d->tx_counts);
        int m = sendmmsg(s->fd, d->tx_msgs, (unsigned)nmsg, MSG_DONTWAIT);
        if (m > 0) {
            size_t sent = 0, grouped = 0;
            for (int i = 0; i < m; i++) {
                sent += d->tx_counts[i];
                grouped += d->tx_counts[i] > 1 ? d->tx_counts[i] : 0;
            }
            itr_endpoint_tx_consume(d->ep, sent);
            stat_add(&d->st.send_batches, 1);
            stat_add(&d->st.send_packets, (uint64_t)sent);
            stat_add(&d->st.gso_datagrams, (uint64_t)grouped);
            continue;
        }
        int err = m < 0 ? errno : EIO;
        if (err == EINTR)
            continue;
        if (d->tx_counts[0] > 1 && itr_udp_gso_refused(err)) {
            /* The kernel or the route's device cannot segment (no checksum offload: EIO; a
             * path MTU below the segment size: EINVAL): send one by one from now on. Other
             * errors (an ICMP error on a connected socket) are the peer's, reported below. */
            d->offload &= ~ITR_DRIVER_GSO;
            continue;
        }
        if (err == EAGAIN || err == EWOULDBLOCK) {
            s->blocked = 1;
            stat_add(&d->st.send_blocked, 1);
            sock_update_watch(s);
            return;
        }
        /* A hard error concerns the first datagram of the run (the kernel stops at it). */
        itr_endpoint_tx_consume(d->ep, 1);
        stat_add(&d->st.send_errors, 1);
        report_error(d, local, err);
    }
}

static void count_overflow(drv_socket *s, struct msghdr *h)
{
    if (h->msg_controllen == 0)
        return;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_RXQ_OVFL)
            continue;
        uint32_t total;
        memcpy(&total, CMSG_DATA(c), sizeof(total));
        /* Cumulative since the socket was created (and wrapping): count the increase. */
        uint32_t delta = total - s->ovfl_seen;
        if (delta != 0 && delta < 0x80000000u) {
            stat_add(&s->d->st.kernel_drops, delta);
            s->ovfl_seen = total;
        }
    }
}

static void receive(drv_socket *s)
{
    itr_driver *d = s->d;
    for (int b = 0; b < DRV_FAIR_BATCHES && !d->paused; b++) {
        /* Only the headers of datagrams received last time were written by the kernel. */
        for (size_t i = 0; i < d->rx_used; i++) {
            struct msghdr *h = &d->rx_msgs[i].msg_hdr;
            h->msg_namelen = (socklen_t)sizeof(d->rx_addr[i].u);
            h->msg_controllen = DRV_CTRL_LEN;
            h->msg_flags = 0;
        }
        d->rx_used = 0;
        int n = recvmmsg(s->fd, d->rx_msgs, (unsigned)d->batch, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR) {
                b--;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                report_error(d, s->index, errno);
            break;
        }
        if (n == 0)
            break;
        d->rx_used = (size_t)n;
        uint64_t now = itr_now_ns();
        stat_add(&d->st.recv_batches, 1);
        stat_add(&d->st.recv_packets, (uint64_t)n);
        /* The kernel's drop counter is cumulative: the newest datagram's value is enough. */
        count_overflow(s, &d->rx_msgs[n - 1].msg_hdr);
        for (int i = 0; i < n; i++) {
            d->rx_addr[i].local = s->index;
            uint8_t *p = d->rx_buf + (size_t)i * d->rx_slot;
            size_t len = d->rx_msgs[i].msg_len;
            size_t seg =
                (d->offload & ITR_DRIVER_GRO) ? itr_udp_gro_segment(&d->rx_msgs[i].msg_hdr) : 0;
            if (seg == 0 || seg >= len) {
                (void)itr_endpoint_recv(d->ep, &d->rx_addr[i], p, len, now);
                continue;
            }
            /* A GRO buffer: datagrams of `seg` bytes back to back, the last may be shorter. */
            size_t k = 0;
            for (size_t off = 0; off < len; off += seg, k++)
                (void)itr_endpoint_recv(d->ep, &d->rx_addr[i], p + off,
                                        len - off < seg ? len - off : seg, now);
            stat_add(&d->st.recv_packets, k - 1);
            stat_add(&d->st.gro_datagrams, k);
        }
        if (d->hook)
            d->hook(d->hook_arg, now);
        itr_endpoint_flush(d->ep, now);
        transmit(d);
        /* A short batch means the queue was empty a moment ago: save the EAGAIN call, or
         * let more arrive first (coalescing, see the top of this file). */
        if ((size_t)n < d->batch) {
            if (d->rx_coalesce_ns == 0 || n < 2)
                break;
            struct timespec ts = {0, d->rx_coalesce_ns};
            (void)nanosleep(&ts, NULL); /* EINTR: a shorter wait, harmless */
            stat_add(&d->st.rx_coalesce_waits, 1);
        }
    }
}

static void sock_on_event(void *arg, int fd, uint32_t events)
{
    drv_socket *s = arg;
    itr_driver *d = s->d;
    if (events & ITR_EV_ERROR) {
        /* Reading SO_ERROR clears the pending error, which would otherwise keep the socket
         * reporting EPOLLERR. */
        int err = 0;
        socklen_t len = (socklen_t)sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
            report_error(d, s->index, err);
    }
    if ((events & ITR_EV_WRITE) && s->blocked) {
        s->blocked = 0;
        sock_update_watch(s);
        transmit(d);
    }
    if ((events & ITR_EV_READ) && !d->paused)
        receive(s);
    rearm(d);
}

static void on_expiry(void *arg, uint64_t now)
{
    itr_driver *d = arg;
    if (d->watch_failed) {
        d->watch_failed = 0;
        for (uint32_t i = 0; i < d->nsocks; i++)
            d->socks[i].blocked = 0;
    }
    itr_endpoint_on_expiry(d->ep, now);
    itr_endpoint_flush(d->ep, now);
    transmit(d);
    rearm(d);
}

/* Point the receive headers at rx_buf in slots of `slot` bytes. */
static void rx_layout(itr_driver *d, size_t slot)
{
    d->rx_slot = slot;
    for (size_t i = 0; i < d->batch; i++) {
        d->rx_iov[i].iov_base = d->rx_buf + i * slot;
        d->rx_iov[i].iov_len = slot;
        struct msghdr *h = &d->rx_msgs[i].msg_hdr;
        h->msg_name = &d->rx_addr[i].u;
        h->msg_iov = &d->rx_iov[i];
        h->msg_iovlen = 1;
        h->msg_control = d->rx_ctrl + i * DRV_CTRL_LEN;
    }
    d->rx_used = d->batch; /* the next receive initializes every header */
}

static int set_gro(int fd, int on)
{
    return setsockopt(fd, SOL_UDP, UDP_GRO, &on, (socklen_t)sizeof(on)) == 0 ? ITR_OK : ITR_ERR_IO;
}

int itr_driver_new(itr_driver **out, itr_loop *loop, itr_endpoint *ep, size_t batch)
{
    if (!out || !loop || !ep || batch == 0 || batch > DRV_MAX_BATCH)
        return ITR_ERR_INVALID;
    itr_driver *d = calloc(1, sizeof(*d));
    if (!d)
        return ITR_ERR_NOMEM;
    d->loop = loop;
    d->ep = ep;
    d->batch = batch;
    d->rx_buf = malloc(batch * DRV_RX_BUF_LEN);
    d->rx_addr = calloc(batch, sizeof(*d->rx_addr));
    d->rx_ctrl = calloc(batch, DRV_CTRL_LEN);
    d->rx_iov = calloc(batch, sizeof(*d->rx_iov));
    d->rx_msgs = calloc(batch, sizeof(*d->rx_msgs));
    d->tx_dg = calloc(batch, sizeof(*d->tx_dg));
    d->tx_iov = calloc(batch, sizeof(*d->tx_iov));
    d->tx_msgs = calloc(batch, sizeof(*d->tx_msgs));
    d->tx_ctrl = calloc(batch, ITR_GSO_CTRL_LEN);
    d->tx_counts = calloc(batch, sizeof(*d->tx_counts));
    if (!d->rx_buf || !d->rx_addr || !d->rx_ctrl || !d->rx_iov || !d->rx_msgs || !d->tx_dg ||
        !d->tx_iov || !d->tx_msgs || !d->tx_ctrl || !d->tx_counts) {
        itr_driver_free(d);
        return ITR_ERR_NOMEM;
    }
    rx_layout(d, DRV_RX_BUF_LEN);
    itr_timer_init(&d->expiry, on_expiry, d);
    *out = d;
    return ITR_OK;
}

void itr_driver_free(itr_driver *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < d->nsocks; i++)
        itr_loop_unwatch(d->loop, d->socks[i].fd);
    itr_loop_timer_cancel(d->loop, &d->expiry);
    free(d->rx_buf);
    free(d->rx_addr);
    free(d->rx_ctrl);
    free(d->rx_iov);
    free(d->rx_msgs);
    free(d->tx_dg);
    free(d->tx_iov);
    free(d->tx_msgs);
    free(d->tx_ctrl);
    free(d->tx_counts);
    free(d);
}

int itr_driver_add_socket(itr_driver *d, int fd, uint32_t *local_out)
{
    if (fd < 0)
        return ITR_ERR_INVALID;
    if (d->nsocks == DRV_MAX_SOCKETS)
        return ITR_ERR_LIMIT;
    if ((d->offload & ITR_DRIVER_GRO) && set_gro(fd, 1) != ITR_OK)
        return ITR_ERR_IO;
    drv_socket *s = &d->socks[d->nsocks];
    memset(s, 0, sizeof(*s));
    s->d = d;
    s->fd = fd;
    s->index = d->nsocks;
    uint32_t want = d->paused ? 0 : ITR_EV_READ;
    int rc = itr_loop_watch(d->loop, fd, want, sock_on_event, s);
    if (rc != ITR_OK)
        return rc;
    s->watched = want;
    if (local_out)
        *local_out = s->index;
    d->nsocks++;
    return ITR_OK;
}

void itr_driver_set_batch_hook(itr_driver *d, void (*hook)(void *arg, uint64_t now), void *arg)
{
    d->hook = hook;
    d->hook_arg = arg;
}

void itr_driver_set_error_hook(itr_driver *d, void (*hook)(void *arg, uint32_t local, int err),
                               void *arg)
{
    d->error_hook = hook;
    d->error_arg = arg;
}

void itr_driver_kick(itr_driver *d)
{
    itr_endpoint_flush(d->ep, itr_now_ns());
    transmit(d);
    rearm(d);
}

int itr_driver_set_rx_coalesce(itr_driver *d, uint32_t usec)
{
    if (usec > ITR_RX_COALESCE_MAX_US)
        return ITR_ERR_INVALID;
    d->rx_coalesce_ns = (long)usec * 1000;
    return ITR_OK;
}

int itr_driver_set_offload(itr_driver *d, uint32_t flags)
{
    if (flags & ~(ITR_DRIVER_GSO | ITR_DRIVER_GRO))
        return ITR_ERR_INVALID;
    int gro = (flags & ITR_DRIVER_GRO) != 0;
    if (gro != ((d->offload & ITR_DRIVER_GRO) != 0)) {
        size_t slot = gro ? ITR_GRO_BUF_LEN : DRV_RX_BUF_LEN;
        uint8_t *buf = malloc(d->batch * slot);
        if (!buf)
            return ITR_ERR_NOMEM;
        for (uint32_t i = 0; i < d->nsocks; i++) {
            if (set_gro(d->socks[i].fd, gro) != ITR_OK) {
                int saved = errno;
                while (i-- > 0) /* back to the old setting on the ones done */
                    (void)set_gro(d->socks[i].fd, !gro);
                free(buf);
                errno = saved;
                return ITR_ERR_IO;
            }
        }
        free(d->rx_buf);
        d->rx_buf = buf;
        rx_layout(d, slot);
    }
    d->offload = flags;
    return ITR_OK;
}

void itr_driver_pause(itr_driver *d, int paused)
{
    d->paused = paused ? 1 : 0;
    for (uint32_t i = 0; i < d->nsocks; i++)
        sock_update_watch(&d->socks[i]);
}

void itr_driver_stats_get(const itr_driver *d, itr_driver_stats *out)
{
    out->kernel_drops = atomic_load_explicit(&d->st.kernel_drops, memory_order_relaxed);
    out->recv_batches = atomic_load_explicit(&d->st.recv_batches, memory_order_relaxed);
    out->rx_coalesce_waits = atomic_load_explicit(&d->st.rx_coalesce_waits, memory_order_relaxed);
    out->recv_packets = atomic_load_explicit(&d->st.recv_packets, memory_order_relaxed);
    out->send_batches = atomic_load_explicit(&d->st.send_batches, memory_order_relaxed);
    out->send_packets = atomic_load_explicit(&d->st.send_packets, memory_order_relaxed);
    out->send_errors = atomic_load_explicit(&d->st.send_errors, memory_order_relaxed);
    out->send_blocked = atomic_load_explicit(&d->st.send_blocked, memory_order_relaxed);
    out->gro_datagrams = atomic_load_explicit(&d->st.gro_datagrams, memory_order_relaxed);
    out->gso_datagrams = atomic_load_explicit(&d->st.gso_datagrams, memory_order_relaxed);
}
