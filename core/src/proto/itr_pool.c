/* itr_pool.c: fixed-size slot pools (see itr_pool.h). */
#include "itr_pool.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <intentra/error.h>

#include "itr_alloc.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ITR_POOL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ITR_POOL_ASAN 1
#endif

#ifdef ITR_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POOL_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POOL_POISON(p, n)   ((void)(p), (void)(n))
#define POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

int itr_pool_init(itr_pool *p, uint32_t count, uint32_t slot_size)
{
    memset(p, 0, sizeof(*p));
    p->slot_size = slot_size;
    p->free_head = ITR_POOL_NONE;
    if (count == 0)
        return ITR_OK;
    p->mem = itr_malloc((size_t)count * slot_size);
    p->link = itr_malloc((size_t)count * sizeof(uint32_t));
    if (!p->mem || !p->link) {
        itr_free(p->mem);
        itr_free(p->link);
        memset(p, 0, sizeof(*p));
        p->free_head = ITR_POOL_NONE;
        return ITR_ERR_NOMEM;
    }
    p->count = count;
    /* Free list in index order, so the first slots handed out are the first in memory. */
    for (uint32_t i = 0; i < count; i++)
        p->link[i] = i + 1 < count ? i + 1 : ITR_POOL_NONE;
    p->free_head = 0;
    POOL_POISON(p->mem, (size_t)count * slot_size);
    return ITR_OK;
}

void itr_pool_destroy(itr_pool *p)
{
    if (p->mem) {
        POOL_UNPOISON(p->mem, (size_t)p->count * p->slot_size);
        /* Slots held plaintext of messages: wipe before returning the memory. */
        sodium_memzero(p->mem, (size_t)p->count * p->slot_size);
    }
    itr_free(p->mem);
    itr_free(p->link);
    memset(p, 0, sizeof(*p));
    p->free_head = ITR_POOL_NONE;
}

uint32_t itr_pool_get(itr_pool *p)
{
    uint32_t i = p->free_head;
    if (i == ITR_POOL_NONE)
        return ITR_POOL_NONE;
    p->free_head = p->link[i];
    p->link[i] = ITR_POOL_NONE;
    p->in_use++;
    POOL_UNPOISON(itr_pool_slot(p, i), p->slot_size);
    return i;
}

void itr_pool_put(itr_pool *p, uint32_t i)
{
    POOL_POISON(itr_pool_slot(p, i), p->slot_size);
    p->link[i] = p->free_head;
    p->free_head = i;
    p->in_use--;
}
