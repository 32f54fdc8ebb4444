/* itr_reliable.h: the pure parts of the Reliable stream (PROTOCOL.md §7): serial-number
 * comparison of 32-bit message sequences, the RFC 6298 retransmission timeout estimator, and
 * the 256-bit per-session bitmaps indexed by sequence modulo 256.
 *
 * Why modulo 256 works: every sequence a bitmap describes lies in a window of at most 256
 * consecutive values (the receiver never holds a message at or beyond acknowledged + 256, the
 * sender never has more than 256 unacknowledged), so seq & 255 is unique inside it and the
 * bitmaps never need shifting. The stream operations that need a session (send queue, reorder
 * buffer, acknowledgements) are in itr_reliable.c, declared in itr_session.h.
 */
#ifndef ITR_RELIABLE_H
#define ITR_RELIABLE_H

#include <stddef.h>
#include <stdint.h>

#define ITR_BITMAP_BYTES         (ITR_RELIABLE_WINDOW_BITS / 8)
#define ITR_RELIABLE_WINDOW_BITS 256

/* Serial-number arithmetic (RFC 1982 style) on 32-bit sequences. */
static inline int itr_seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}
static inline int itr_seq_le(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

static inline int itr_bit_test(const uint8_t *map, uint32_t seq)
{
    return (map[(seq & 255u) >> 3] >> (seq & 7u)) & 1;
}
static inline void itr_bit_set(uint8_t *map, uint32_t seq)
{
    map[(seq & 255u) >> 3] = (uint8_t)(map[(seq & 255u) >> 3] | (1u << (seq & 7u)));
}
static inline void itr_bit_clear(uint8_t *map, uint32_t seq)
{
    map[(seq & 255u) >> 3] = (uint8_t)(map[(seq & 255u) >> 3] & ~(1u << (seq & 7u)));
}

/* RFC 6298 estimator. All values in nanoseconds; srtt == 0 means no sample yet. */
typedef struct itr_rtt {
    uint64_t srtt, rttvar, rto;
} itr_rtt;

void itr_rtt_init(itr_rtt *r, uint64_t rto_initial);
/* Feed one sample (a message acknowledged as received that was sent only once). The new RTO
 * is SRTT + max(1 ms, 4 RTTVAR) clamped to [rto_min, rto_max]. */
void itr_rtt_sample(itr_rtt *r, uint64_t sample, uint64_t rto_min, uint64_t rto_max);
/* RTO for a message retransmitted `backoff` times: doubled per retransmission, capped. */
uint64_t itr_rtt_backoff(const itr_rtt *r, unsigned backoff, uint64_t rto_max);

#endif
