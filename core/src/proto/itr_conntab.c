/* itr_conntab.c: open-addressing multimap with backward-shift deletion (see itr_conntab.h). */
#include "itr_conntab.h"

#include <stdlib.h>
#include <string.h>

#include <intentra/error.h>

#include "itr_alloc.h"

#define CTAB_MIN_BUCKETS 16u
#define CTAB_MAX_BUCKETS (1u << 31)

/* Keys are random or keyed hashes already; one multiply spreads the low bits we index by
 * anyway, so sequential test ids do not cluster. */
static uint32_t ctab_home(const itr_ctab *t, uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & t->mask;
}

static int ctab_alloc(itr_ctab *t, uint32_t buckets)
{
    t->e = itr_calloc(buckets, sizeof(itr_ctab_entry));
    if (!t->e)
        return ITR_ERR_NOMEM;
    t->mask = buckets - 1;
    t->count = 0;
    return ITR_OK;
}

int itr_ctab_init(itr_ctab *t, uint32_t expected)
{
    uint32_t buckets = CTAB_MIN_BUCKETS;
    memset(t, 0, sizeof(*t));
    while (buckets < CTAB_MAX_BUCKETS && buckets / 2 < expected)
        buckets *= 2;
    return ctab_alloc(t, buckets);
}

void itr_ctab_destroy(itr_ctab *t)
{
    itr_free(t->e);
    memset(t, 0, sizeof(*t));
}

static void ctab_put(itr_ctab *t, uint64_t key, void *val)
{
    uint32_t i = ctab_home(t, key);
    while (t->e[i].val)
        i = (i + 1) & t->mask;
    t->e[i].key = key;
    t->e[i].val = val;
    t->count++;
}

static int ctab_grow(itr_ctab *t)
{
    itr_ctab old = *t;
    uint32_t buckets = (old.mask + 1) * 2;
    if (buckets > CTAB_MAX_BUCKETS || buckets == 0)
        return ITR_ERR_NOMEM;
    if (ctab_alloc(t, buckets) != ITR_OK) {
        *t = old;
        return ITR_ERR_NOMEM;
    }
    for (uint32_t i = 0; i <= old.mask; i++)
        if (old.e[i].val)
            ctab_put(t, old.e[i].key, old.e[i].val);
    itr_free(old.e);
    return ITR_OK;
}

int itr_ctab_insert(itr_ctab *t, uint64_t key, void *val)
{
    if (!t->e)
        return ITR_ERR_NOMEM;
    if ((t->count + 1) * 2 > t->mask + 1 && ctab_grow(t) != ITR_OK)
        return ITR_ERR_NOMEM;
    ctab_put(t, key, val);
    return ITR_OK;
}

void *itr_ctab_next(const itr_ctab *t, uint64_t key, uint32_t *pos)
{
    if (!t->e)
        return NULL;
    /* *pos counts probes from the home bucket, so a walk resumes where it stopped. */
    for (uint32_t n = *pos; n <= t->mask; n++) {
        const itr_ctab_entry *e = &t->e[(ctab_home(t, key) + n) & t->mask];
        if (!e->val)
            break;
        if (e->key == key) {
            *pos = n + 1;
            return e->val;
        }
    }
    *pos = t->mask + 1;
    return NULL;
}

void *itr_ctab_find(const itr_ctab *t, uint64_t key)
{
    uint32_t pos = 0;
    return itr_ctab_next(t, key, &pos);
}

static int ctab_locate(const itr_ctab *t, uint64_t key, const void *val, uint32_t *at)
{
    if (!t->e)
        return 0;
    for (uint32_t i = ctab_home(t, key);; i = (i + 1) & t->mask) {
        if (!t->e[i].val)
            return 0;
        if (t->e[i].key == key && t->e[i].val == val) {
            *at = i;
            return 1;
        }
    }
}

int itr_ctab_replace(itr_ctab *t, uint64_t key, const void *old, void *val)
{
    uint32_t i;
    if (!ctab_locate(t, key, old, &i))
        return 0;
    t->e[i].val = val;
    return 1;
}

int itr_ctab_remove(itr_ctab *t, uint64_t key, const void *val)
{
    uint32_t hole;
    if (!ctab_locate(t, key, val, &hole))
        return 0;
    /* Backward shift: move later entries of the probe run into the hole when their home
     * bucket is not cyclically between the hole and their position. */
    for (uint32_t j = (hole + 1) & t->mask; t->e[j].val; j = (j + 1) & t->mask) {
        uint32_t home = ctab_home(t, t->e[j].key);
        uint32_t dist_j = (j - home) & t->mask;
        uint32_t dist_hole = (hole - home) & t->mask;
        if (dist_hole <= dist_j) {
            t->e[hole] = t->e[j];
            hole = j;
        }
    }
    t->e[hole].key = 0;
    t->e[hole].val = NULL;
    t->count--;
    return 1;
}
