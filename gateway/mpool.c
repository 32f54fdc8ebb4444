/* mpool.c: size-class message pool over one lazily-touched region (see mpool.h). */
#define _GNU_SOURCE
#include "mpool.h"

#include <sys/mman.h>

#include <intentra/error.h>

const size_t gw_mpool_class_size[GW_MPOOL_CLASSES] = {512, 1024, 2048, 4096};

static int class_of(size_t size)
{
    for (int c = 0; c < GW_MPOOL_CLASSES; c++)
        if (size <= gw_mpool_class_size[c])
            return c;
    return -1;
}

int gw_mpool_init(gw_mpool *p, size_t capacity)
{
    *p = (gw_mpool){0};
    if (capacity < gw_mpool_class_size[GW_MPOOL_CLASSES - 1])
        return ITR_ERR_INVALID;
    void *m = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return ITR_ERR_NOMEM;
    p->base = m;
    p->capacity = capacity;
    return ITR_OK;
}

void gw_mpool_destroy(gw_mpool *p)
{
    if (p->base)
        munmap(p->base, p->capacity);
    *p = (gw_mpool){0};
}

void *gw_mpool_alloc(gw_mpool *p, size_t size)
{
    int c = class_of(size);
    void *slot;

    if (c < 0)
        return NULL;
    slot = p->free_list[c];
    if (slot) {
        p->free_list[c] = *(void **)slot;
        /* Slots come back in batches larger than the cache: load the next one now, so the
         * next allocation does not wait for it -- its first 512 bytes (the smallest class),
         * which the caller fills line by line right away. */
        const char *next = p->free_list[c];
        if (next)
            for (int l = 0; l < 8; l++)
                __builtin_prefetch(next + l * 64, 1);
    } else {
        /* Carve a new slot; classes are powers of two >= 16, so alignment holds. */
        size_t sz = gw_mpool_class_size[c];
        size_t off = (p->carved + sz - 1) & ~(sz - 1);
        if (off + sz > p->capacity) {
            p->alloc_failures++;
            return NULL;
        }
        slot = p->base + off;
        p->carved = off + sz;
    }
    p->in_use += gw_mpool_class_size[c];
    return slot;
}

void gw_mpool_free(gw_mpool *p, void *slot, size_t size)
{
    int c = class_of(size);
    if (!slot || c < 0)
        return;
    *(void **)slot = p->free_list[c];
    p->free_list[c] = slot;
    p->in_use -= gw_mpool_class_size[c];
}
