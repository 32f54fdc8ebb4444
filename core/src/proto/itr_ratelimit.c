/* itr_ratelimit.c: GCRA token bucket (PROTOCOL.md §9). */
#include "itr_ratelimit.h"

#define NS_PER_S 1000000000ull

void itr_ratelimit_init(itr_ratelimit *rl, uint32_t pps, uint32_t burst)
{
    rl->unlimited = pps == 0;
    if (rl->unlimited) {
        rl->interval_ns = 0;
        rl->tolerance_ns = 0;
        return;
    }
    if (burst == 0)
        burst = 1;
    /* Round up: a limiter that lets through slightly fewer than pps is safe, more is not. */
    rl->interval_ns = (NS_PER_S + pps - 1) / pps;
    /* At most (2^32 - 2) * 10^9 < 2^63: no overflow. */
    rl->tolerance_ns = (uint64_t)(burst - 1) * rl->interval_ns;
}

int itr_ratelimit_take(const itr_ratelimit *rl, itr_bucket *b, uint64_t now)
{
    if (rl->unlimited)
        return 1;
    /* GCRA: the packet conforms unless the bucket already runs more than tolerance ahead of
     * now. An idle bucket's tat lies in the past: it restarts from now, so idling never
     * accumulates more than the burst. */
    uint64_t tat = b->tat > now ? b->tat : now;
    if (tat - now > rl->tolerance_ns)
        return 0;
    b->tat = tat + rl->interval_ns;
    return 1;
}
