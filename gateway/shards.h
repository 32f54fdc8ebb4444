/* shards.h: the shard table: shard id -> peers, labels and per-sink attributes, and static
 * peer key -> shard.
 *
 * A table is built once from the JSON "shards" object (the config file's, or a document sent
 * to the admin API) and is immutable afterwards: workers read it without locks from a routing
 * snapshot. Peer keys are attacker-chosen, so the key -> shard index is a hash table keyed
 * with a random SipHash key (crypto_shorthash) chosen at build time.
 *
 * JSON form of one shard (every key optional):
 *   {"peers": ["<64 hex>", ...], "labels": {"name": "value", ...},
 *    "attributes": {"kafka_topic": "...", "kafka_partition": 3, "redis_prefix": "...",
 *                   "webhook_endpoint": "https://..."}}
 * Shard ids: 1..GW_SHARD_ID_MAX-1 characters of [A-Za-z0-9_.-]. A peer key appears in at
 * most one shard. Label names: 1..64 characters of [A-Za-z0-9_.-]; values: strings up to
 * 1,024 bytes. docs/CONFIG.md has the full rules.
 */
#ifndef GW_SHARDS_H
#define GW_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define GW_SHARD_ID_MAX  128 /* including the NUL: ids are at most 127 characters */
#define GW_SHARD_KEY_LEN 32  /* peer static public key */

typedef struct gw_shard gw_shard;   /* one shard (gw_msg.shard points to one) */
typedef struct gw_shards gw_shards; /* the table */

/* Per-sink attributes of a shard. Unset strings are NULL; unset partition is -1. */
typedef struct gw_shard_attrs {
    const char *kafka_topic;
    int32_t kafka_partition;
    const char *redis_prefix;
    const char *webhook_endpoint;
} gw_shard_attrs;

/* Build a table from a JSON object {id: shard, ...}.
 * origin names the document in messages ("conf/gateway.json", "request body"); path is the
 * JSON path of obj inside it ("shards" for the config file, "" for a standalone document).
 * On error err gets "ORIGIN: PATH: problem (expected ...)", e.g.
 *   conf/gateway.json: shards.fleet_b.peers[0]: peer 3b6a...e1 is already in shard "fleet_a"
 * and field (if not NULL) gets PATH alone (for an HTTP 422 "field").
 * Errors: ITR_ERR_INVALID, ITR_ERR_NOMEM. */
int gw_shards_build(gw_shards **out, const cJSON *obj, const char *origin, const char *path,
                    char *err, size_t errlen, char *field, size_t fieldlen);
/* An empty table (no shards). Errors: ITR_ERR_NOMEM. */
int gw_shards_new_empty(gw_shards **out);
void gw_shards_free(gw_shards *t); /* NULL is a no-op */

size_t gw_shards_count(const gw_shards *t);
/* Shards in document order; i < count. */
const gw_shard *gw_shards_at(const gw_shards *t, size_t i);
/* By id; NULL if none. */
const gw_shard *gw_shards_find(const gw_shards *t, const char *id);
const gw_shard *gw_shards_findn(const gw_shards *t, const char *id, size_t len);
/* The shard listing this static key; NULL if none. Allocation-free, O(1). */
const gw_shard *gw_shards_lookup_peer(const gw_shards *t, const uint8_t key[GW_SHARD_KEY_LEN]);
/* Total peers over all shards. */
size_t gw_shards_peer_count(const gw_shards *t);

/* The JSON object the table was built from, normalised (peers lower-case hex, empty members
 * left out). Caller frees with cJSON_Delete; NULL on allocation failure. */
cJSON *gw_shards_to_json(const gw_shards *t);

/* ---- one shard (valid as long as its table) ---- */

const char *gw_shard_id(const gw_shard *s);
size_t gw_shard_id_len(const gw_shard *s);
/* Position in its table (0..count-1). */
unsigned gw_shard_index(const gw_shard *s);
/* The table the shard belongs to. */
const gw_shards *gw_shard_table(const gw_shard *s);
const gw_shard_attrs *gw_shard_attributes(const gw_shard *s);
/* A label's value; NULL if the shard has no such label. */
const char *gw_shard_label(const gw_shard *s, const char *name);
const char *gw_shard_labeln(const gw_shard *s, const char *name, size_t len);
size_t gw_shard_label_count(const gw_shard *s);
/* Label i (< count) in document order. */
void gw_shard_label_at(const gw_shard *s, size_t i, const char **name, const char **value);
size_t gw_shard_peer_count(const gw_shard *s);
/* Peer i (< count): 32 bytes. */
const uint8_t *gw_shard_peer(const gw_shard *s, size_t i);
/* This shard as JSON ({"peers","labels","attributes"}). Caller frees; NULL on ENOMEM. */
cJSON *gw_shard_to_json(const gw_shard *s);

#endif
