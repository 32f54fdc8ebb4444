/* itr_strikes.h: "strike_limit violations within strike_window" (PROTOCOL.md §9): the times
 * of the last ITR_STRIKES_MAX strikes of a session in a small ring, 66 bytes per session.
 */
#ifndef ITR_STRIKES_H
#define ITR_STRIKES_H

#include <stdint.h>

#define ITR_STRIKES_MAX 16

/* Zero-initialise. t_ms holds strike times in milliseconds modulo 2^32, oldest at
 * (head - n) mod ITR_STRIKES_MAX; head is the next slot to write.
 *
 * Wrap handling: ages are computed as (now_ms - t_ms) mod 2^32, which is exact for any strike
 * younger than 2^32 ms (49.7 days). Every add first forgets the strikes that have left the
 * window, so the ring only holds strikes that were recent at the previous add; a stale time
 * could alias into the window only if a session went without a single strike for a multiple
 * of 49.7 days to within window_ns, and even then it counts as one strike of `limit`. */
typedef struct itr_strikes {
    uint32_t t_ms[ITR_STRIKES_MAX];
    uint8_t n, head;
} itr_strikes;

/* Record one strike at now (monotonic ns); returns 1 when `limit` (<= ITR_STRIKES_MAX; more
 * is treated as ITR_STRIKES_MAX) strikes, this one included, fall within the window_ns ending
 * at now, else 0. A strike is within the window when its age in whole milliseconds is below
 * window_ns rounded up to milliseconds. limit 0 disables the check (always 0). */
int itr_strikes_add(itr_strikes *s, uint32_t limit, uint64_t window_ns, uint64_t now);

#endif
