/* itr_strikes.c: strike counting in a sliding time window (PROTOCOL.md §9). */
#include "itr_strikes.h"

#define NS_PER_MS 1000000ull

int itr_strikes_add(itr_strikes *s, uint32_t limit, uint64_t window_ns, uint64_t now)
{
    uint32_t now_ms = (uint32_t)(now / NS_PER_MS); /* modulo 2^32 by design, see the header */
    uint64_t w = (window_ns + NS_PER_MS - 1) / NS_PER_MS;
    uint32_t window_ms = w > UINT32_MAX ? UINT32_MAX : (uint32_t)w;

    /* A corrupt count would index past the ring: keep it bounded whatever the caller did. */
    if (s->n > ITR_STRIKES_MAX)
        s->n = ITR_STRIKES_MAX;
    s->head %= ITR_STRIKES_MAX;

    /* Forget strikes that left the window, oldest first (times only move forward). With
     * window_ns 0 this forgets all of them: only the strike being recorded counts. */
    while (s->n > 0) {
        unsigned oldest = ((unsigned)s->head + ITR_STRIKES_MAX - s->n) % ITR_STRIKES_MAX;
        if ((uint32_t)(now_ms - s->t_ms[oldest]) < window_ms)
            break;
        s->n--;
    }

    /* Record this one; when full, it overwrites the oldest, which can no longer matter: only
     * the newest ITR_STRIKES_MAX >= limit strikes decide. */
    s->t_ms[s->head] = now_ms;
    s->head = (uint8_t)((s->head + 1) % ITR_STRIKES_MAX);
    if (s->n < ITR_STRIKES_MAX)
        s->n++;

    if (limit == 0)
        return 0;
    if (limit > ITR_STRIKES_MAX)
        limit = ITR_STRIKES_MAX;
    return s->n >= limit;
}
