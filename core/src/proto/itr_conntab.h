/* itr_conntab.h: open-addressing hash tables of the endpoint.
 *
 * Two uses: local conn_id -> keypair or handshake slot (one lookup per datagram, before any
 * cryptography, PROTOCOL.md §5.1), and initiator static key -> session. Keys are 64-bit and
 * already well mixed: conn_ids are random, static keys go through a keyed hash
 * (crypto_shorthash with a random per-endpoint key) so a peer cannot choose keys that collide.
 * Linear probing with backward-shift deletion (no tombstones, so lookups stay short after
 * churn). The table is a multimap: equal keys may repeat and the caller walks them with
 * itr_ctab_next. It grows (doubling) only on insert, which happens when a handshake starts or
 * completes, never per packet.
 */
#ifndef ITR_CONNTAB_H
#define ITR_CONNTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct itr_ctab_entry {
    uint64_t key;
    void *val; /* NULL: empty bucket */
} itr_ctab_entry;

typedef struct itr_ctab {
    itr_ctab_entry *e;
    uint32_t mask;  /* buckets - 1 (a power of two minus one) */
    uint32_t count; /* occupied buckets */
} itr_ctab;

/* At least `expected` entries without growing (load <= 1/2). Returns ITR_OK or ITR_ERR_NOMEM. */
int itr_ctab_init(itr_ctab *t, uint32_t expected);
void itr_ctab_destroy(itr_ctab *t);
/* Add (key, val); val must not be NULL. Grows when over half full.
 * Returns ITR_OK or ITR_ERR_NOMEM (table unchanged). */
int itr_ctab_insert(itr_ctab *t, uint64_t key, void *val);
/* Walk the values stored under key: start with *pos = 0; returns NULL at the end. */
void *itr_ctab_next(const itr_ctab *t, uint64_t key, uint32_t *pos);
/* First value under key, or NULL. */
void *itr_ctab_find(const itr_ctab *t, uint64_t key);
/* Remove the pair (key, val). Returns 1 if it was present. */
int itr_ctab_remove(itr_ctab *t, uint64_t key, const void *val);
/* Replace the value of pair (key, old) by val. Returns 1 if it was present. */
int itr_ctab_replace(itr_ctab *t, uint64_t key, const void *old, void *val);

static inline size_t itr_ctab_bytes(const itr_ctab *t)
{
    return t->e ? ((size_t)t->mask + 1) * sizeof(itr_ctab_entry) : 0;
}

#endif
