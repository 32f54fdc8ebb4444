/* itr_replay.h: the per-keypair anti-replay window of PROTOCOL.md §6.1: a 1,024-packet sliding
 * bitmap in 64-bit blocks (the WireGuard counter.c algorithm, RFC 6479 style). Pure functions
 * of (state, counter); no allocation, no time.
 */
#ifndef ITR_REPLAY_H
#define ITR_REPLAY_H

#include <stdint.h>

#define ITR_REPLAY_WINDOW 1024

/* One block more than the window so that the 1,024 counters behind the highest never share a
 * block with the counters a slide is about to clear (the block being cleared is never one the
 * window still needs). 17 x 8 + 8 = 144 bytes. */
typedef struct itr_replay {
    uint64_t top; /* highest accepted + 1; 0 = nothing yet */
    uint64_t bits[ITR_REPLAY_WINDOW / 64 + 1];
} itr_replay;

void itr_replay_init(itr_replay *r);
/* 1 if counter n would be accepted now (never seen, and n + 1024 > highest accepted); 0 if
 * it is a replay or too old. Changes nothing: the pre-check before decryption (§6 step 4). */
int itr_replay_check(const itr_replay *r, uint64_t n);
/* Accept and record n: 1 = accepted (the window slid forward if n is ahead, clearing the
 * blocks it passed), 0 = replay or too old (nothing changes). Call only after the packet
 * authenticated. UINT64_MAX is never accepted (top would wrap); real counters are < 2^32. */
int itr_replay_update(itr_replay *r, uint64_t n);

#endif
