/* itr_pool.h: fixed-size slot pools, allocated once by itr_endpoint_new and never resized.
 *
 * A pool is `count` slots of `slot_size` bytes plus one uint32 link per slot. The link array
 * doubles as the free list while a slot is free and as its owner's list link while it is in
 * use (a session's unacknowledged sends, its reorder buffer), so per-session lists cost two
 * uint32s instead of a ring of indexes. Under AddressSanitizer free slots are poisoned, so a
 * use after itr_pool_put is reported like a use after free().
 */
#ifndef ITR_POOL_H
#define ITR_POOL_H

#include <stddef.h>
#include <stdint.h>

#define ITR_POOL_NONE UINT32_MAX /* "no slot": empty pool, end of a list */

typedef struct itr_pool {
    uint8_t *mem;       /* count * slot_size bytes */
    uint32_t *link;     /* free list while free, owner's list while in use */
    uint32_t slot_size; /* bytes per slot */
    uint32_t count;     /* slots in all */
    uint32_t in_use;    /* slots handed out */
    uint32_t free_head; /* first free slot or ITR_POOL_NONE */
} itr_pool;

/* Allocate count slots of slot_size bytes (count may be 0: every get fails).
 * Returns ITR_OK or ITR_ERR_NOMEM. */
int itr_pool_init(itr_pool *p, uint32_t count, uint32_t slot_size);
/* Wipe and free the memory. Safe on a zeroed or already destroyed pool. */
void itr_pool_destroy(itr_pool *p);
/* Take a slot: its index, or ITR_POOL_NONE when the pool is empty. */
uint32_t itr_pool_get(itr_pool *p);
/* Return slot i (which must be in use). */
void itr_pool_put(itr_pool *p, uint32_t i);

static inline uint8_t *itr_pool_slot(const itr_pool *p, uint32_t i)
{
    return p->mem + (size_t)i * p->slot_size;
}

static inline uint32_t itr_pool_free_count(const itr_pool *p)
{
    return p->count - p->in_use;
}

/* Bytes allocated by the pool (for memory accounting). */
static inline size_t itr_pool_bytes(const itr_pool *p)
{
    return (size_t)p->count * ((size_t)p->slot_size + sizeof(uint32_t));
}

#endif
