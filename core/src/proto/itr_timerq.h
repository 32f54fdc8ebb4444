/* itr_timerq.h: binary min-heap of deadlines, one entry per timed object (a session or a
 * handshake slot). Each object embeds an itr_timed that remembers its heap position, so moving
 * or removing a deadline is O(log n) with no search. Capacity is fixed at creation (sessions +
 * handshake slots), so arming a timer never allocates.
 *
 * The endpoint keeps each object's entry as a lower bound of its real next deadline: a
 * deadline that moves later (traffic postponed a keepalive) is left in place and the object
 * re-arms itself when it fires early. Only earlier deadlines touch the heap on the packet path.
 */
#ifndef ITR_TIMERQ_H
#define ITR_TIMERQ_H

#include <stddef.h>
#include <stdint.h>

#define ITR_TIMED_NONE UINT32_MAX /* heap_idx of an object not in the heap */

typedef struct itr_timed {
    uint64_t deadline; /* valid while armed */
    uint32_t heap_idx; /* position in the heap or ITR_TIMED_NONE */
    uint8_t kind;      /* the owner's type, for dispatch */
} itr_timed;

typedef struct itr_timerq_node {
    uint64_t deadline; /* copy, so sifting does not chase pointers */
    itr_timed *obj;
} itr_timerq_node;

typedef struct itr_timerq {
    itr_timerq_node *h;
    uint32_t n, cap;
} itr_timerq;

/* Returns ITR_OK or ITR_ERR_NOMEM. */
int itr_timerq_init(itr_timerq *q, uint32_t cap);
void itr_timerq_destroy(itr_timerq *q);

static inline void itr_timed_init(itr_timed *t, uint8_t kind)
{
    t->deadline = UINT64_MAX;
    t->heap_idx = ITR_TIMED_NONE;
    t->kind = kind;
}

static inline int itr_timed_armed(const itr_timed *t)
{
    return t->heap_idx != ITR_TIMED_NONE;
}

/* Arm t at deadline (insert or move). Returns ITR_OK or ITR_ERR_LIMIT (heap full). */
int itr_timerq_set(itr_timerq *q, itr_timed *t, uint64_t deadline);
/* Arm t at deadline unless it is already armed at or before it. */
int itr_timerq_lower(itr_timerq *q, itr_timed *t, uint64_t deadline);
/* Disarm t (no-op if not armed). */
void itr_timerq_remove(itr_timerq *q, itr_timed *t);
/* Earliest deadline, UINT64_MAX when empty. */
static inline uint64_t itr_timerq_next(const itr_timerq *q)
{
    return q->n ? q->h[0].deadline : UINT64_MAX;
}
/* Disarm and return the earliest object if its deadline is <= now, else NULL. */
itr_timed *itr_timerq_pop_due(itr_timerq *q, uint64_t now);

static inline size_t itr_timerq_bytes(const itr_timerq *q)
{
    return (size_t)q->cap * sizeof(itr_timerq_node);
}

#endif
