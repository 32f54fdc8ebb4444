/* itr_ratelimit.h: the per-session token bucket of PROTOCOL.md §9 in GCRA form (the "virtual
 * scheduling" formulation of a token bucket): 8 bytes of state per peer, one comparison and
 * one addition per packet, a pure function of (limiter, bucket, now).
 */
#ifndef ITR_RATELIMIT_H
#define ITR_RATELIMIT_H

#include <stdint.h>

/* Shared by every bucket of an endpoint (built from the settings once). */
typedef struct itr_ratelimit {
    uint64_t interval_ns;  /* time one token takes to refill: 1 s / pps, rounded up */
    uint64_t tolerance_ns; /* (burst - 1) * interval: how far ahead of now a bucket may run */
    int unlimited;
} itr_ratelimit;

/* One peer's bucket. tat is the "theoretical arrival time" of the next packet at the
 * sustained rate; a zeroed bucket (tat 0) is full. */
typedef struct itr_bucket {
    uint64_t tat;
} itr_bucket;

/* pps 0 = unlimited. burst 0 is treated as 1 (at least one packet must pass). The interval
 * is rounded up so the sustained rate never exceeds pps. */
void itr_ratelimit_init(itr_ratelimit *rl, uint32_t pps, uint32_t burst);
/* Charge one token at `now` (monotonic ns): 1 = allowed (bucket charged), 0 = over the limit
 * (bucket unchanged). A fresh bucket allows `burst` packets at once, then pps per second. */
int itr_ratelimit_take(const itr_ratelimit *rl, itr_bucket *b, uint64_t now);

#endif
