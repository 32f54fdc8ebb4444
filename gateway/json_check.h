/* json_check.h: strict JSON validation helpers shared by the config, shard table and router
 * builders (and usable by connectors): a JSON path being walked, errors in one style
 * ("ORIGIN: PATH: problem (expected ...), got VALUE"), typed getters with ranges and
 * defaults, and unknown/duplicate key checks with a "did you mean" hint.
 *
 * A gw_jctx is caller-owned and lives on the stack for one validation pass; nothing here
 * allocates.
 */
#ifndef GW_JSON_CHECK_H
#define GW_JSON_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define GW_JPATH_MAX 256

typedef struct gw_jctx {
    const char *origin; /* "conf/gateway.json", "request body" */
    char path[GW_JPATH_MAX];
    size_t len;
    char *err; /* may be NULL */
    size_t errlen;
    char *field; /* may be NULL: receives the path of the failure */
    size_t fieldlen;
} gw_jctx;

/* Start at JSON path `path` ("" for the document itself) inside origin. */
void gw_jctx_init(gw_jctx *c, const char *origin, const char *path, char *err, size_t errlen,
                  char *field, size_t fieldlen);
/* Descend into a member / an element; both return the length to give back to gw_jctx_pop.
 * Keys of [A-Za-z0-9_-] are written ".key", others ["key"]. */
size_t gw_jctx_push_key(gw_jctx *c, const char *key);
size_t gw_jctx_push_index(gw_jctx *c, size_t i);
void gw_jctx_pop(gw_jctx *c, size_t saved);
/* Write "ORIGIN: PATH: <message>" to err and PATH to field; returns ITR_ERR_INVALID. */
int gw_jctx_fail(gw_jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for a member key of the current object (path extended by key only in the message). */
int gw_jctx_fail_key(gw_jctx *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A short description of a value for messages: "fast" (quoted, cut at 40 characters), 12.5,
 * true, null, an object, an array. Returns out. */
const char *gw_json_describe(const cJSON *v, char *out, size_t cap);
/* JSON type name: "a string", "a number", ... */
const char *gw_json_type_name(const cJSON *v);

/* Check obj is an object whose keys are all in allowed (NULL-terminated), with no key twice.
 * Errors name the key and list the allowed ones, with the closest as a hint. */
int gw_jcheck_object(gw_jctx *c, const cJSON *obj, const char *const *allowed);
/* Only the duplicate-key check (for objects with free-form keys). */
int gw_jcheck_no_duplicates(gw_jctx *c, const cJSON *obj);

/* Typed members of obj. A missing member (or, where allowed, null) takes def; required
 * members fail with "missing required key". Errors: ITR_ERR_INVALID (message written). */
int gw_jget_int(gw_jctx *c, const cJSON *obj, const char *key, int required, int64_t min,
                int64_t max, int64_t def, int64_t *out);
int gw_jget_u32(gw_jctx *c, const cJSON *obj, const char *key, uint32_t min, uint32_t max,
                uint32_t def, uint32_t *out);
int gw_jget_u64(gw_jctx *c, const cJSON *obj, const char *key, uint64_t min, uint64_t max,
                uint64_t def, uint64_t *out);
/* A number of seconds (decimals allowed) -> nanoseconds. */
int gw_jget_seconds(gw_jctx *c, const cJSON *obj, const char *key, double min, double max,
                    double def, uint64_t *out_ns);
int gw_jget_bool(gw_jctx *c, const cJSON *obj, const char *key, int def, int *out);
/* A string: missing -> def; null (when nullable) -> NULL, an explicit "unset". maxlen in bytes;
 * minlen 0 allows "". *out points into obj. */
int gw_jget_string(gw_jctx *c, const cJSON *obj, const char *key, int required, int nullable,
                   size_t minlen, size_t maxlen, const char *def, const char **out);
/* One of names (NULL-terminated); *out = index. */
int gw_jget_enum(gw_jctx *c, const cJSON *obj, const char *key, const char *const *names, int def,
                 int *out);

/* Edit distance between a and b, capped at cap+1 (for "did you mean"). */
size_t gw_json_edit_distance(const char *a, const char *b, size_t cap);

#endif
