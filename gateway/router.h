/* router.h: routes compiled against a shard table and the config's sink names.
 *
 * JSON form of the routes (an ordered array; docs/CONFIG.md):
 *   [{"name": "all",                       optional, unique; default "route_<index>"
 *     "match": {"shard": "*",              glob over shard ids (default "*")
 *               "peer": "<64 hex>",        optional: only this static key
 *               "topic": "fleet.*"},       glob over topics (default "*")
 *     "sinks": [{"sink": "archive",        a sink defined in the config (1..8 per route)
 *                "destination": "{topic}", template (default "{topic}")
 *                "key": "{peer}"}],        template (default "{peer}")
 *     "delivery": "as_sent",               "as_sent" | "realtime" | "reliable"
 *     "continue": false}]                  keep matching later routes after this one
 *
 * Matching (shard, peer, topic): routes are tried in order; every matching route adds its
 * sinks; the first matching route without "continue" ends the search. The result is an
 * ordered set of at most GW_MAX_DELIVERIES route sinks, de-duplicated by (sink, destination
 * template, key template): a duplicate keeps the first one's position and the stronger
 * delivery class (reliable > as_sent > realtime).
 *
 * Globs: '*' any run of characters, '?' one character, '[abc]' '[a-z]' '[!a-z]' classes
 * (fnmatch without FNM_PATHNAME). A shard pattern without glob characters must name a
 * defined shard.
 *
 * Cost: at compile time each shard gets its list of candidate routes (those whose shard
 * pattern matches it), and each shard's routes with an exact topic go into a hash table, so a
 * match is one hash lookup plus one glob call per candidate route with a topic glob.
 * gw_router_match allocates nothing and takes no lock; a router is immutable and may be used
 * by any number of threads.
 *
 * Templates: literal text with variables {shard} {peer} {peer_short} (first 8 hex digits)
 * {topic} {intent} ("reliable"/"realtime") {label:NAME} (the shard's label, empty if unset)
 * {attr:NAME} (kafka_topic, kafka_partition, redis_prefix, webhook_endpoint; empty if unset);
 * "{{" and "}}" are literal braces.
 */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "connector.h"
#include "shards.h"

#define GW_MAX_DELIVERIES     8    /* route sinks per message */
#define GW_MAX_ROUTES         4096 /* routes per router */
#define GW_ROUTE_TEMPLATE_MAX 512  /* template length in bytes */

/* A route's "delivery". */
typedef enum gw_delivery_class {
    GW_CLASS_AS_SENT = 0,  /* the message's own intent decides */
    GW_CLASS_REALTIME = 1, /* Reliable messages are acknowledged on receipt, may be dropped here */
    GW_CLASS_RELIABLE = 2, /* never dropped by this sink, even Realtime messages */
} gw_delivery_class;

typedef struct gw_route_sink gw_route_sink; /* one (route, sink) with compiled templates */
typedef struct gw_router gw_router;

/* Compile a routes array. shards: the table the routes are matched against (borrowed: it
 * must outlive the router). sink_names: the config's sinks in order (a route sink's index is
 * its sink's position in this list); copied. origin and path as in gw_shards_build ("routes"
 * for the config file, "" for a request body). On error err gets "ORIGIN: PATH: problem",
 * e.g. `conf/gateway.json: routes[2].sinks[0].sink: unknown sink "kafak" (defined: kafka,
 * archive)`, and field (if not NULL) gets PATH.
 * Errors: ITR_ERR_INVALID, ITR_ERR_NOMEM. */
int gw_router_compile(gw_router **out, const cJSON *routes, const char *origin, const char *path,
                      const gw_shards *shards, const char *const *sink_names, size_t nsinks,
                      char *err, size_t errlen, char *field, size_t fieldlen);
void gw_router_free(gw_router *r); /* NULL is a no-op */

/* Route one message. shard may be NULL (then only routes whose shard pattern is "*" match);
 * a shard of another table matches nothing. peer: the sender's static key. out receives up to
 * GW_MAX_DELIVERIES route sinks; *overflow (if not NULL) gets how many further distinct
 * route sinks matched and were left out. Returns the number written to out. */
size_t gw_router_match(const gw_router *r, const gw_shard *shard,
                       const uint8_t peer[GW_SHARD_KEY_LEN], const char *topic, size_t topic_len,
                       const gw_route_sink *out[GW_MAX_DELIVERIES], unsigned *overflow);

size_t gw_router_route_count(const gw_router *r);
const gw_shards *gw_router_shards(const gw_router *r);
/* The routes array, normalised (every default written out). Caller frees; NULL on ENOMEM. */
cJSON *gw_router_to_json(const gw_router *r);

/* ---- route sinks (valid as long as their router) ---- */

/* Render the destination / key template for m into out (NUL-terminated). Returns the length,
 * or (size_t)-1 if it does not fit in cap. m->shard may be NULL (shard variables render
 * empty, {shard} renders m->shard_name). */
size_t gw_route_sink_destination(const struct gw_route_sink *rs, const gw_msg *m, char *out,
                                 size_t cap);
size_t gw_route_sink_key(const struct gw_route_sink *rs, const gw_msg *m, char *out, size_t cap);
unsigned gw_route_sink_index(const struct gw_route_sink *rs); /* sink index */
int gw_route_sink_class(const struct gw_route_sink *rs);      /* gw_delivery_class */
/* 1 if a message of this intent (itr_intent) is delivered Reliable to this sink. */
int gw_route_sink_reliable(const struct gw_route_sink *rs, int intent);
const char *gw_route_sink_route_name(const struct gw_route_sink *rs);
const char *gw_route_sink_destination_template(const struct gw_route_sink *rs);
const char *gw_route_sink_key_template(const struct gw_route_sink *rs);
/* 1 if the destination / key template has no variables (connectors may cache the value). */
int gw_route_sink_destination_is_constant(const struct gw_route_sink *rs);
int gw_route_sink_key_is_constant(const struct gw_route_sink *rs);

/* "as_sent", "realtime", "reliable". */
const char *gw_delivery_class_name(int c);

#endif
