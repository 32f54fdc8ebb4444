/* memnet.h: an in-memory network for IO-free endpoint tests: endpoints attached at addresses,
 * datagrams moved from their transmit rings to each other with a scripted clock and seeded,
 * reproducible impairments (loss, reordering, duplication, latency). No sockets, no real time:
 * a test of minutes of protocol time runs in milliseconds and always the same way.
 *
 * Time only moves inside memnet_run* and memnet_advance; it jumps to the next event (a
 * datagram arriving or an endpoint's expiry), so idle periods cost nothing.
 */
#ifndef MEMNET_H
#define MEMNET_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>

typedef struct memnet memnet;

typedef struct memnet_config {
    uint64_t seed;             /* PRNG seed: same seed, same run */
    double loss;               /* probability a datagram is lost */
    double reorder;            /* probability a datagram is held back by reorder_delay_ns */
    double dup;                /* probability a datagram is delivered twice */
    uint64_t latency_ns;       /* one-way delay of every datagram */
    uint64_t jitter_ns;        /* extra uniform random delay in [0, jitter_ns] */
    uint64_t reorder_delay_ns; /* extra delay of a reordered datagram */
    uint32_t max_inflight;     /* datagrams in the network at once; beyond: lost (overflow) */
} memnet_config;

typedef struct memnet_stats {
    uint64_t sent;      /* datagrams taken from transmit rings */
    uint64_t delivered; /* handed to itr_endpoint_recv */
    uint64_t accepted;  /* ... that returned ITR_OK */
    uint64_t lost, duplicated, reordered, filtered, unroutable, overflow;
} memnet_stats;

/* Called for every datagram a node sends, before impairments. Return 0 to drop it; the
 * filter may rewrite the bytes (*len up to ITR_MAX_PACKET) or record them. */
typedef int (*memnet_filter)(void *arg, int from_node, int to_node, uint8_t *pkt, size_t *len);

/* Fills *c with: no impairments, 1 ms latency, 1,000,000 datagrams in flight. */
void memnet_config_default(memnet_config *c);
/* Returns 0, or -1 (out of memory). */
int memnet_new(memnet **out, const memnet_config *c, uint64_t start_ns);
/* Frees datagrams still in flight; does not free the endpoints. */
void memnet_free(memnet *n);

/* Attach ep at addr; returns the node index (>= 0) or -1. */
int memnet_attach(memnet *n, itr_endpoint *ep, const itr_addr *addr);
/* Replace a node's endpoint (restart) or set it NULL (the node drops what it receives). */
void memnet_set_endpoint(memnet *n, int node, itr_endpoint *ep);
/* Move a node to another address (roaming): later datagrams leave from it. */
void memnet_set_addr(memnet *n, int node, const itr_addr *addr);
const itr_addr *memnet_addr(const memnet *n, int node);
void memnet_set_filter(memnet *n, memnet_filter f, void *arg);
/* Change impairments mid-run. */
void memnet_set_impairments(memnet *n, double loss, double reorder, double dup);

uint64_t memnet_now(const memnet *n);
/* Take every endpoint's queued datagrams into the network now. */
void memnet_collect(memnet *n);
/* Run events (deliveries, expiries) up to time `until`; the clock ends at `until`. */
void memnet_advance(memnet *n, uint64_t until);
/* Run until done(arg) is nonzero (checked after every event) or max_ns of protocol time
 * passed or max_events events ran. Returns 1 if done, 0 on timeout. */
int memnet_run(memnet *n, uint64_t max_ns, uint64_t max_events, int (*done)(void *arg), void *arg);
/* Deliver a datagram to node `to` at the current time, as if sent from `from`. Returns
 * itr_endpoint_recv's result (and collects what the endpoint queued in reply). */
int memnet_inject(memnet *n, int to, const itr_addr *from, const uint8_t *pkt, size_t len);
/* Datagrams in flight. */
size_t memnet_inflight(const memnet *n);
void memnet_stats_get(const memnet *n, memnet_stats *out);

/* 127.0.0.1:port and [::1]:port. */
itr_addr memnet_addr_v4(uint16_t port);
itr_addr memnet_addr_v6(uint16_t port);

/* The network's PRNG (xoshiro-style, seeded), for tests that want reproducible randomness. */
uint64_t memnet_rand(memnet *n);

#endif
