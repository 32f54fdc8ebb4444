/* gateway.h: one running intentra-gateway: key, workers, sinks, routing snapshot, admin.
 *
 * Lifecycle (main thread): gw_gateway_new -> gw_gateway_start -> (gw_gateway_reload on SIGHUP)*
 * -> gw_gateway_drain on SIGTERM -> gw_gateway_free. Everything else a running gateway offers
 * to other threads is in control.h (admin API) and publish.h (reverse path).
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"

typedef struct gw_gateway gw_gateway;

/* Build a gateway from a validated config (ownership of cfg passes to the gateway, also on
 * failure). config_path is the file SIGHUP re-reads (NULL: none, e.g. the embedded default): key
 * file (created 0600 if missing, public key logged), admin state file (shards and routes edited
 * through the API override the config file's), sinks (required ones must open), sockets bound.
 * Nothing runs yet. Errors: ITR_ERR_INVALID / ITR_ERR_IO with err set. */
int gw_gateway_new(gw_gateway **out, gw_config *cfg, const char *config_path, char *err,
                   size_t errlen);
/* Start workers and the admin API. */
int gw_gateway_start(gw_gateway *g, char *err, size_t errlen);
/* SIGHUP: re-read the config file; shards, routes and sinks change without dropping sessions.
 * A bad config is refused with its error and the old one keeps running. */
int gw_gateway_reload(gw_gateway *g, char *err, size_t errlen);
/* SIGTERM: stop reading packets, flush sinks until the deadline, acknowledge what became
 * durable. Returns ITR_OK when everything in flight was delivered, ITR_ERR_WOULDBLOCK if the
 * deadline passed first (those messages were never acknowledged: senders retransmit). */
int gw_gateway_drain(gw_gateway *g, uint64_t deadline_ns);
void gw_gateway_free(gw_gateway *g);

/* The gateway's static public key. */
void gw_gateway_public_key(const gw_gateway *g, uint8_t out[32]);
/* The bound UDP address of listener i (port 0 resolved), for tests and logs. */
int gw_gateway_listen_addr(const gw_gateway *g, unsigned i, char *buf, size_t len);

/* Rebuild the routing snapshot from the current config with these documents replacing the
 * shards object and/or routes array (NULL keeps the current one), validate everything and
 * publish it atomically. On failure nothing changes; err holds "WHERE: problem" and field the
 * JSON path of the offending element ("" if none). Thread-safe (serialized internally). */
int gw_gateway_apply_docs(gw_gateway *g, const cJSON *shards, const cJSON *routes, char *err,
                          size_t errlen, char *field, size_t fieldlen);
/* Copies of the documents the current snapshot was built from. Caller frees (cJSON_Delete). */
cJSON *gw_gateway_shards_doc(gw_gateway *g);
cJSON *gw_gateway_routes_doc(gw_gateway *g);

#endif
