/* intentra/driver.h: the IO side of libintentra.
 *
 * itr_loop    a small epoll event loop with fd watches and caller-owned timers; also used by
 *             the gateway's sink threads and connectors (hooks are idempotent).
 * itr_udp_*   UDP sockets: addresses, options (buffers, SO_REUSEPORT, SO_RXQ_OVFL) and the
 *             SO_REUSEPORT steering program that sends a session to the worker owning it.
 * itr_driver  binds an itr_endpoint to a loop and sockets: recvmmsg batches in, sendmmsg
 *             batches out, the endpoint's expiry as a loop timer. No per-packet allocation.
 *
 * Threading: a loop and everything registered on it belong to the thread running it;
 * itr_loop_wake and itr_loop_stop may be called from any thread.
 */
#ifndef INTENTRA_DRIVER_H
#define INTENTRA_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>
#include <intentra/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- time ---- */

/* CLOCK_MONOTONIC in nanoseconds. */
ITR_API uint64_t itr_now_ns(void);
/* CLOCK_REALTIME in nanoseconds (for timestamps shown to users). */
ITR_API uint64_t itr_wall_ns(void);

/* ---- event loop ---- */

typedef struct itr_loop itr_loop;

#define ITR_EV_READ  0x1u
#define ITR_EV_WRITE 0x2u
#define ITR_EV_ERROR 0x4u /* reported, never requested */

typedef void (*itr_fd_cb)(void *arg, int fd, uint32_t events);

/* A timer lives in caller-owned memory; the loop keeps it in a heap while armed. */
typedef struct itr_timer {
    uint64_t deadline;
    void (*cb)(void *arg, uint64_t now);
    void *arg;
    size_t heap_index; /* private: (size_t)-1 when not armed */
} itr_timer;

/* Errors: ITR_ERR_NOMEM, ITR_ERR_IO. */
ITR_API int itr_loop_new(itr_loop **out);
ITR_API void itr_loop_free(itr_loop *loop);
/* Watch fd for events (ITR_EV_READ|ITR_EV_WRITE); watching again changes the event set
 * (idempotent). events == 0 keeps the registration but disables it. Errors: ITR_ERR_IO,
 * ITR_ERR_NOMEM. */
ITR_API int itr_loop_watch(itr_loop *loop, int fd, uint32_t events, itr_fd_cb cb, void *arg);
/* Stop watching fd; a no-op if it is not watched. Call before closing fd. */
ITR_API void itr_loop_unwatch(itr_loop *loop, int fd);
ITR_API void itr_timer_init(itr_timer *t, void (*cb)(void *arg, uint64_t now), void *arg);
/* Arm or re-arm (idempotent). deadline in itr_now_ns() time. */
ITR_API void itr_loop_timer_set(itr_loop *loop, itr_timer *t, uint64_t deadline);
ITR_API void itr_loop_timer_cancel(itr_loop *loop, itr_timer *t);
ITR_API int itr_timer_armed(const itr_timer *t);
/* Wait up to max_wait_ms (-1: until the next timer or event) and dispatch. Returns the number
 * of callbacks run, or ITR_ERR_IO. */
ITR_API int itr_loop_run_once(itr_loop *loop, int max_wait_ms);
/* Run until itr_loop_stop. Returns ITR_OK or ITR_ERR_IO. */
ITR_API int itr_loop_run(itr_loop *loop);
/* Thread-safe. */
ITR_API void itr_loop_stop(itr_loop *loop);
/* Thread-safe: make a blocked itr_loop_run_once return and run `wake` callbacks. */
ITR_API void itr_loop_wake(itr_loop *loop);
/* Called on the loop thread after every wake-up (e.g. to drain a mailbox). */
ITR_API void itr_loop_on_wake(itr_loop *loop, void (*cb)(void *arg), void *arg);
/* Loop thread: wakes may reach this loop up to max_ms late (0, the default: at once). While
 * it is nonzero the loop never blocks for longer than max_ms, and a wake finds it running or
 * napping and costs the waker no system call and the loop no extra context switch: for wakes
 * that are frequent and need not be prompt (completions of work the loop handed out). */
ITR_API void itr_loop_set_wake_slack(itr_loop *loop, int max_ms);

/* ---- addresses and sockets ---- */

/* Parse "127.0.0.1:7400", "[::1]:7400", "0.0.0.0:7400", "localhost:7400" (numeric hosts
 * only, plus "localhost"). On error writes a message to err. Errors: ITR_ERR_INVALID. */
ITR_API int itr_addr_parse(itr_addr *out, const char *hostport, char *err, size_t errlen);
/* "1.2.3.4:5" or "[::1]:5". Returns the length written (truncates safely). */
ITR_API size_t itr_addr_format(const itr_addr *a, char *buf, size_t len);
ITR_API int itr_addr_equal(const itr_addr *a, const itr_addr *b); /* ignores .local */
ITR_API socklen_t itr_addr_len(const itr_addr *a);

typedef struct itr_udp_options {
    int rcvbuf_bytes; /* SO_RCVBUF (0: system default); tries SO_RCVBUFFORCE as root */
    int sndbuf_bytes; /* SO_SNDBUF */
    int reuseport;    /* SO_REUSEPORT, for N workers on one address */
    int v6only;       /* IPV6_V6ONLY for "[::]" binds */
} itr_udp_options;

/* A non-blocking UDP socket bound to addr with SO_RXQ_OVFL on. Errors: ITR_ERR_IO. */
ITR_API int itr_udp_open(const itr_addr *bind, const itr_udp_options *o, int *fd_out);
/* The address actually bound (port 0 resolved). */
ITR_API int itr_udp_local_addr(int fd, itr_addr *out);
/* The effective SO_RCVBUF/SO_SNDBUF as the kernel reports them (Linux reports twice the size
 * granted: half is its bookkeeping allowance), to show operators what they actually got.
 * Either pointer may be NULL. Errors: ITR_ERR_IO. */
ITR_API int itr_udp_buffer_sizes(int fd, int *rcvbuf_bytes, int *sndbuf_bytes);
/* UDP GSO batching for sendmmsg (used by the driver; exported for load generators). Fills
 * msgs[0..m) from dg[0..n): with gso, consecutive datagrams for the same address (and
 * .local) with the same length, the last possibly shorter, share one message with a
 * UDP_SEGMENT control message: at most ITR_GSO_MAX_SEGMENTS datagrams and ITR_GSO_MAX_BYTES
 * bytes per message, and only datagrams of 1..ITR_GSO_MAX_SEGMENT bytes (a segment must fit
 * the path MTU: 1,200 bytes fits any IPv6 path). Without gso, one message per datagram.
 * Caller-owned arrays: msgs and counts with room for n entries, iov for n, ctrl for
 * n x ITR_GSO_CTRL_LEN bytes; counts[i] is the number of datagrams in msgs[i]. The messages
 * point into dg and its data, which must stay put until sent. Returns m. */
#define ITR_GSO_MAX_SEGMENTS 64u    /* the kernel's UDP_MAX_SEGMENTS */
#define ITR_GSO_MAX_BYTES    65000u /* below the largest UDP payload (65,507 over IPv4) */
#define ITR_GSO_MAX_SEGMENT  1200u
#define ITR_GSO_CTRL_LEN     32u
struct mmsghdr;
struct iovec;
ITR_API size_t itr_udp_pack(const itr_datagram *dg, size_t n, int gso, struct mmsghdr *msgs,
                            struct iovec *iov, uint8_t *ctrl, uint32_t *counts);
/* Whether a send error on a GSO message means the kernel or the route's device cannot
 * segment (EIO: no checksum offload; EINVAL: path MTU below the segment size; EMSGSIZE,
 * EOPNOTSUPP, ENOPROTOOPT), so the datagrams should go again one by one. Other errors (an
 * ICMP error on a connected socket, a full buffer) are not about GSO. */
ITR_API int itr_udp_gso_refused(int err);
/* The segment size of a received UDP_GRO buffer (its datagrams are back to back, the last
 * may be shorter), from the message's control data; 0 for a plain datagram. */
struct msghdr;
ITR_API size_t itr_udp_gro_segment(const struct msghdr *h);
/* Attach the steering program to a SO_REUSEPORT group of `workers` sockets (call on any one
 * socket of the group once all are bound, in worker order): packets whose conn_id is nonzero
 * go to socket conn_id % workers, handshake initiations spread by the kernel's hash.
 * Errors: ITR_ERR_INVALID (workers == 0), ITR_ERR_IO. */
ITR_API int itr_udp_attach_steering(int fd, uint32_t workers);

/* ---- driver ---- */

typedef struct itr_driver itr_driver;

typedef struct itr_driver_stats {
    uint64_t kernel_drops; /* SO_RXQ_OVFL: datagrams the kernel dropped, socket buffer full */
    uint64_t recv_batches, recv_packets, send_batches, send_packets;
    uint64_t send_errors;       /* sendmmsg failures other than EAGAIN */
    uint64_t send_blocked;      /* times the socket buffer was full (EAGAIN) */
    uint64_t rx_coalesce_waits; /* receive coalescing waits (itr_driver_set_rx_coalesce) */
    uint64_t gro_datagrams;     /* datagrams that arrived several to a GRO buffer */
    uint64_t gso_datagrams;     /* datagrams sent several to a GSO message */
} itr_driver_stats;

/* batch: datagrams per recvmmsg/sendmmsg call (64). Errors: ITR_ERR_NOMEM, ITR_ERR_INVALID. */
ITR_API int itr_driver_new(itr_driver **out, itr_loop *loop, itr_endpoint *ep, size_t batch);
/* Unwatch its sockets and cancel its timer; does not close the sockets or free ep. */
ITR_API void itr_driver_free(itr_driver *d);
/* Add a socket; *local_out receives its index (itr_addr.local). Errors: ITR_ERR_LIMIT (16). */
ITR_API int itr_driver_add_socket(itr_driver *d, int fd, uint32_t *local_out);
/* Called after each receive batch, before the endpoint is flushed and output sent. */
ITR_API void itr_driver_set_batch_hook(itr_driver *d, void (*hook)(void *arg, uint64_t now),
                                       void *arg);
/* After calling the endpoint from outside the driver's callbacks (send, ack, connect): flush
 * it, transmit its ring and re-arm its timer. Cheap; call it once per burst of calls. */
ITR_API void itr_driver_kick(itr_driver *d);
/* Receive coalescing, off (0) by default: after a recvmmsg that returned more than one but
 * fewer than `batch` datagrams, sleep `usec` and read again instead of returning to the loop,
 * so steady traffic is read in fuller batches with fewer system calls and wake-ups (the
 * sender's wake-ups of this thread too). Costs up to `usec` (plus the kernel's timer slack,
 * 50 us by default) of queueing delay per message under steady load; a batch of one datagram
 * ends the coalescing, so sparse traffic is not delayed. Waits are counted in
 * itr_driver_stats.rx_coalesce_waits. Errors: ITR_ERR_INVALID (usec > 1000). */
#define ITR_RX_COALESCE_MAX_US 1000u
ITR_API int itr_driver_set_rx_coalesce(itr_driver *d, uint32_t usec);
/* UDP segmentation offloads (Linux), both off by default.
 * ITR_DRIVER_GSO: datagrams queued back to back for one address with the same length (the
 *   last may be shorter) leave in one message with UDP_SEGMENT (see itr_udp_pack), and the
 *   kernel cuts them apart: one pass through the socket layer instead of one per datagram.
 *   If the kernel or the route's device refuses (EIO, EINVAL), the driver turns GSO off and
 *   sends the same datagrams one by one.
 * ITR_DRIVER_GRO: UDP_GRO on the sockets (also those added later). The kernel may then hand
 *   over a burst of one sender's datagrams (a GSO send on loopback, or what the NIC
 *   coalesced) as one buffer; the driver cuts it apart before the endpoint sees them. Every
 *   receive slot grows to ITR_GRO_BUF_LEN bytes (batch x 64 KiB of address space; pages are
 *   touched only as data arrives). The kernel picks the socket of a reuseport group by the
 *   buffer's first datagram: with several drivers behind itr_udp_attach_steering, a peer
 *   that multiplexes sessions over one socket could have datagrams of another driver's
 *   session delivered here (they are dropped as unknown), so use GRO with one driver per
 *   address, or with peers that keep one session per socket.
 * Errors: ITR_ERR_INVALID (unknown flags), ITR_ERR_NOMEM, ITR_ERR_IO (the kernel refused
 * UDP_GRO: before Linux 5.0; errno has the detail). Nothing changes on error. */
#define ITR_DRIVER_GSO  1u
#define ITR_DRIVER_GRO  2u
#define ITR_GRO_BUF_LEN 65536u
ITR_API int itr_driver_set_offload(itr_driver *d, uint32_t flags);
/* Stop (1) or resume (0) reading the sockets, e.g. while draining on SIGTERM. */
ITR_API void itr_driver_pause(itr_driver *d, int paused);
/* Safe from any thread (relaxed atomics). */
ITR_API void itr_driver_stats_get(const itr_driver *d, itr_driver_stats *out);

#ifdef __cplusplus
}
#endif
#endif
