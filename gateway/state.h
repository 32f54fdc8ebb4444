/* state.h: the admin API's persistent state: the shards object and routes array as edited
 * through /v1, each with a version, stored in admin.state_file (JSON, written atomically).
 * When present they override the config file's shards/routes, so a restart keeps the edits.
 */
#ifndef GW_STATE_H
#define GW_STATE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct gw_state gw_state;

/* Open the state file: a missing file means "no overrides" (versions start at 1); an
 * unreadable or corrupt file is an error naming the file and the fix (start-up fails rather
 * than silently dropping operator changes). path NULL: in-memory only. */
int gw_state_open(gw_state **out, const char *path, char *err, size_t errlen);
void gw_state_free(gw_state *s);
/* Persisted overrides (NULL if never written). Borrowed; valid until the next write. */
const cJSON *gw_state_shards(const gw_state *s);
const cJSON *gw_state_routes(const gw_state *s);
uint64_t gw_state_shards_version(const gw_state *s);
uint64_t gw_state_routes_version(const gw_state *s);

/* RFC 7386 JSON merge patch: a new document (caller frees; NULL on allocation failure). A
 * non-object patch replaces the target; null members of an object patch delete. */
cJSON *gw_state_merge_patch(const cJSON *target, const cJSON *patch);

struct gw_gateway;
/* The gateway's state (gateway.c). */
gw_state *gw_gateway_state(struct gw_gateway *g);

#endif
