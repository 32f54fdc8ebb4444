/* itr_replay.c: 1,024-packet sliding replay window (PROTOCOL.md §6.1). */
#include "itr_replay.h"

#include <string.h>

#define BLOCK_BITS 64u
#define NBLOCKS    (ITR_REPLAY_WINDOW / 64 + 1)

void itr_replay_init(itr_replay *r)
{
    memset(r, 0, sizeof(*r));
}

int itr_replay_check(const itr_replay *r, uint64_t n)
{
    if (n == UINT64_MAX)
        return 0;
    if (n >= r->top) /* ahead of everything seen (or nothing seen yet) */
        return 1;
    /* n <= highest = top - 1: inside the window only if highest - n < 1024. */
    if (r->top - 1 - n >= ITR_REPLAY_WINDOW)
        return 0;
    uint64_t block = (n / BLOCK_BITS) % NBLOCKS;
    uint64_t bit = (uint64_t)1 << (n % BLOCK_BITS);
    return (r->bits[block] & bit) == 0;
}

int itr_replay_update(itr_replay *r, uint64_t n)
{
    if (!itr_replay_check(r, n))
        return 0;
    if (n >= r->top) {
        uint64_t new_block = n / BLOCK_BITS;
        if (r->top == 0) {
            memset(r->bits, 0, sizeof(r->bits));
        } else {
            /* Clear every block strictly after the highest one in use up to n's block; a jump
             * of NBLOCKS or more clears them all, so the loop is bounded by NBLOCKS. */
            uint64_t cur_block = (r->top - 1) / BLOCK_BITS;
            uint64_t diff = new_block - cur_block;
            if (diff > NBLOCKS)
                diff = NBLOCKS;
            for (uint64_t i = 1; i <= diff; i++)
                r->bits[(cur_block + i) % NBLOCKS] = 0;
        }
        r->top = n + 1;
    }
    r->bits[(n / BLOCK_BITS) % NBLOCKS] |= (uint64_t)1 << (n % BLOCK_BITS);
    return 1;
}
