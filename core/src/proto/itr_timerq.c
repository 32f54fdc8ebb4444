/* itr_timerq.c: binary min-heap of deadlines (see itr_timerq.h). */
#include "itr_timerq.h"

#include <stdlib.h>
#include <string.h>

#include <intentra/error.h>

#include "itr_alloc.h"

int itr_timerq_init(itr_timerq *q, uint32_t cap)
{
    memset(q, 0, sizeof(*q));
    if (cap == 0)
        cap = 1;
    q->h = itr_malloc((size_t)cap * sizeof(itr_timerq_node));
    if (!q->h)
        return ITR_ERR_NOMEM;
    q->cap = cap;
    return ITR_OK;
}

void itr_timerq_destroy(itr_timerq *q)
{
    for (uint32_t i = 0; i < q->n; i++)
        q->h[i].obj->heap_idx = ITR_TIMED_NONE;
    itr_free(q->h);
    memset(q, 0, sizeof(*q));
}

static void heap_place(itr_timerq *q, uint32_t i, itr_timerq_node node)
{
    q->h[i] = node;
    node.obj->heap_idx = i;
}

static void sift_up(itr_timerq *q, uint32_t i)
{
    itr_timerq_node node = q->h[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (q->h[parent].deadline <= node.deadline)
            break;
        heap_place(q, i, q->h[parent]);
        i = parent;
    }
    heap_place(q, i, node);
}

static void sift_down(itr_timerq *q, uint32_t i)
{
    itr_timerq_node node = q->h[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && q->h[c + 1].deadline < q->h[c].deadline)
            c++;
        if (node.deadline <= q->h[c].deadline)
            break;
        heap_place(q, i, q->h[c]);
        i = c;
    }
    heap_place(q, i, node);
}

int itr_timerq_set(itr_timerq *q, itr_timed *t, uint64_t deadline)
{
    t->deadline = deadline;
    if (t->heap_idx == ITR_TIMED_NONE) {
        if (q->n == q->cap)
            return ITR_ERR_LIMIT;
        q->h[q->n].deadline = deadline;
        q->h[q->n].obj = t;
        t->heap_idx = q->n++;
        sift_up(q, t->heap_idx);
        return ITR_OK;
    }
    uint32_t i = t->heap_idx;
    uint64_t old = q->h[i].deadline;
    q->h[i].deadline = deadline;
    if (deadline < old)
        sift_up(q, i);
    else if (deadline > old)
        sift_down(q, i);
    return ITR_OK;
}

int itr_timerq_lower(itr_timerq *q, itr_timed *t, uint64_t deadline)
{
    if (t->heap_idx != ITR_TIMED_NONE && t->deadline <= deadline)
        return ITR_OK;
    return itr_timerq_set(q, t, deadline);
}

void itr_timerq_remove(itr_timerq *q, itr_timed *t)
{
    uint32_t i = t->heap_idx;
    if (i == ITR_TIMED_NONE)
        return;
    t->heap_idx = ITR_TIMED_NONE;
    t->deadline = UINT64_MAX;
    q->n--;
    if (i == q->n)
        return;
    heap_place(q, i, q->h[q->n]);
    /* The moved node may belong above or below its new position. */
    if (i > 0 && q->h[i].deadline < q->h[(i - 1) / 2].deadline)
        sift_up(q, i);
    else
        sift_down(q, i);
}

itr_timed *itr_timerq_pop_due(itr_timerq *q, uint64_t now)
{
    if (q->n == 0 || q->h[0].deadline > now)
        return NULL;
    itr_timed *t = q->h[0].obj;
    itr_timerq_remove(q, t);
    return t;
}
