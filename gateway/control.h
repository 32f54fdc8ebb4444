/* control.h: what the admin API may read from and do to a running gateway.
 *
 * Implemented by gateway.c (peers, sinks, health, counters) and state.c (versioned shard and
 * route documents, persisted). Every function is thread-safe and may block briefly (it may
 * ask the workers through their mailboxes and wait, bounded by a timeout); none is called on
 * the packet path.
 */
#ifndef GW_CONTROL_H
#define GW_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <intentra/driver.h>
#include <intentra/endpoint.h>

#include "gateway.h"

/* An error for an HTTP client: status, stable code, message, offending JSON path. */
typedef struct gw_ctl_error {
    int http_status; /* 400, 404, 409, 412, 413, 422, 503 ... */
    char code[32];   /* "invalid_json", "validation_failed", "not_found", "version_mismatch" ... */
    char message[512]; /* human text naming the problem and the fix */
    char field[128];   /* JSON path, "" if none */
} gw_ctl_error;

/* ---- health ---- */

/* 1 when the process serves (workers running). */
int gw_ctl_healthy(gw_gateway *g);
/* 1 when listening and every required sink is UP; else 0 and why (e.g. "sink kafka: down:
 * broker unreachable"). */
int gw_ctl_ready(gw_gateway *g, char *why, size_t whylen);

/* ---- peers (live sessions, asked from the workers) ---- */

typedef struct gw_peer_row {
    itr_peer_info info; /* key, address, RTT, counters from the transport */
    char shard[128];    /* shard the peer is routed with */
} gw_peer_row;

/* Rows [offset, offset+cap) of all live sessions in a stable order (by key); *total gets the
 * total. Errors: ITR_ERR_WOULDBLOCK (a worker did not answer within 2 s). */
int gw_ctl_peers(gw_gateway *g, size_t offset, gw_peer_row *rows, size_t cap, size_t *n,
                 size_t *total);
/* Close the session of this static key (64 hex). Errors: ITR_ERR_NOT_FOUND, ITR_ERR_INVALID. */
int gw_ctl_peer_disconnect(gw_gateway *g, const char *key_hex);

/* ---- sinks ---- */

/* JSON array: [{"name","type","state","required","queue_reliable","queue_realtime",
 * "in_flight","in_flight_bytes","delivered","discarded":{reason:n},"errors":{stage:n},
 * "last_error","last_error_time"}]. Caller frees. */
cJSON *gw_ctl_sinks_json(gw_gateway *g);

/* ---- counters for /metrics (all reads are relaxed atomic loads) ---- */

unsigned gw_ctl_worker_count(gw_gateway *g);
void gw_ctl_worker_stats(gw_gateway *g, unsigned worker, itr_stats *ep, itr_driver_stats *drv);

/* Per-shard gateway counters, summed over workers. */
typedef struct gw_shard_counters {
    uint64_t messages[2]; /* by itr_intent */
    uint64_t bytes[2];
    uint64_t unrouted; /* no route matched (Reliable ones are acknowledged: policy) */
    uint64_t deferred; /* Reliable messages refused because a sink was full (throttle) */
    uint64_t dropped;  /* Realtime messages dropped before a sink (message pool full) */
    uint64_t peers;    /* gauge: live sessions in the shard */
} gw_shard_counters;
/* Calls cb once per shard name ever seen (bounded by the shards configured). */
void gw_ctl_foreach_shard(gw_gateway *g,
                          void (*cb)(void *arg, const char *shard, const gw_shard_counters *c),
                          void *arg);

/* Gateway-wide counters. */
typedef struct gw_gateway_counters {
    uint64_t start_wall_ns;
    uint64_t reloads_ok, reloads_failed;
    uint64_t snapshots_published;
    uint64_t message_pool_bytes_in_use, message_pool_bytes; /* gauge, capacity */
    uint64_t publishes, publish_failures;
    uint64_t security_events[ITR_SEC_EVENT_COUNT];
} gw_gateway_counters;
void gw_ctl_counters(gw_gateway *g, gw_gateway_counters *out);

/* The sink runtime, for per-sink metrics (gateway/sinks.h). Valid until the next reload;
 * call with gw_ctl_sinks_lock held. */
struct gw_sinkset;
struct gw_sinkset *gw_ctl_sinks_lock(gw_gateway *g);
void gw_ctl_sinks_unlock(gw_gateway *g);

/* ---- versioned documents (state.c) ----
 * The shards object and the routes array each carry a version (uint64, starting at 1, +1 per
 * successful write, persisted). ETag = "\"<version>\"". if_match 0 means no If-Match. Writes
 * validate like the config file, apply live (gw_gateway_apply_docs), and persist atomically
 * (temp file, fsync, rename, fsync dir) to admin.state_file before returning; a failure at any
 * step changes nothing. */
int gw_ctl_shards_get(gw_gateway *g, cJSON **out, uint64_t *version);
int gw_ctl_shard_get(gw_gateway *g, const char *id, cJSON **out, uint64_t *version,
                     gw_ctl_error *e);
int gw_ctl_shards_put(gw_gateway *g, const cJSON *doc, uint64_t if_match, uint64_t *version,
                      gw_ctl_error *e);
int gw_ctl_shards_patch(gw_gateway *g, const cJSON *merge_patch, uint64_t if_match,
                        uint64_t *version, gw_ctl_error *e); /* RFC 7386 */
int gw_ctl_shards_delete(gw_gateway *g, uint64_t if_match, uint64_t *version, gw_ctl_error *e);
int gw_ctl_shard_put(gw_gateway *g, const char *id, const cJSON *shard, uint64_t if_match,
                     uint64_t *version, int *created, gw_ctl_error *e);
int gw_ctl_shard_patch(gw_gateway *g, const char *id, const cJSON *merge_patch, uint64_t if_match,
                       uint64_t *version, gw_ctl_error *e);
int gw_ctl_shard_delete(gw_gateway *g, const char *id, uint64_t if_match, uint64_t *version,
                        gw_ctl_error *e);
int gw_ctl_routes_get(gw_gateway *g, cJSON **out, uint64_t *version);
int gw_ctl_routes_put(gw_gateway *g, const cJSON *routes, uint64_t if_match, uint64_t *version,
                      gw_ctl_error *e);

#endif
