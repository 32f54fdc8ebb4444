/* mpool.h: a worker's message pool: bounded bytes, size classes, no allocation after start.
 *
 * One region of `capacity` bytes is reserved at creation (mmap, so untouched pages cost no
 * RSS) and carved on demand into slots of a few size classes; freed slots go to their class's
 * free list and are reused. Owned by one worker thread.
 */
#ifndef GW_MPOOL_H
#define GW_MPOOL_H

#include <stddef.h>
#include <stdint.h>

#define GW_MPOOL_CLASSES 4

typedef struct gw_mpool {
    uint8_t *base;
    size_t capacity, carved; /* bytes reserved / handed to classes so far */
    void *free_list[GW_MPOOL_CLASSES];
    size_t in_use; /* bytes of slots handed out (by class size) */
    uint64_t alloc_failures;
} gw_mpool;

/* Slot sizes of the classes; the largest holds the largest message. */
extern const size_t gw_mpool_class_size[GW_MPOOL_CLASSES];

/* Errors: ITR_ERR_NOMEM, ITR_ERR_INVALID (capacity below one large slot). */
int gw_mpool_init(gw_mpool *p, size_t capacity);
void gw_mpool_destroy(gw_mpool *p);
/* A slot of at least size bytes (16-byte aligned), or NULL when the pool is exhausted. */
void *gw_mpool_alloc(gw_mpool *p, size_t size);
void gw_mpool_free(gw_mpool *p, void *slot, size_t size);

#endif
