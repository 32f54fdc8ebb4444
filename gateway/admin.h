/* admin.h: the admin HTTP API: /v1 (shards, peers, routes, sinks, publish), /metrics,
 * /healthz and /readyz, served by libmicrohttpd on its own thread pool (never on the packet
 * path). docs/ADMIN.md documents every endpoint; docs/openapi.yaml is the machine form.
 *
 * Security defaults: bound to 127.0.0.1:7401 unless configured; every /v1 request needs
 * "Authorization: Bearer <token>" (compared in constant time); /healthz, /readyz and /metrics
 * are open only when listed in admin.open_endpoints; request bodies are capped while they are
 * read (413); connections are limited and time out; optional HTTPS.
 */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <intentra/endpoint.h>

#include "config.h"
#include "control.h"
#include "publish.h"

#define GW_ADMIN_DEFAULT_LISTEN         "127.0.0.1:7401"
#define GW_ADMIN_TOKEN_BYTES            32 /* random bytes of a created token (64 hex digits) */
#define GW_ADMIN_TOKEN_MAX              1024 /* longest token accepted from a file or the environment */
#define GW_ADMIN_PEERS_DEFAULT          100 /* GET /v1/peers page size */
#define GW_ADMIN_PEERS_MAX              1000
#define GW_ADMIN_PUBLISH_MAX_TIMEOUT_MS 60000u

typedef struct gw_admin gw_admin;

/* Start the admin server for g with the settings c (copied; c need not outlive the call).
 * The token comes from the environment variable c->token_env when it is set and non-empty,
 * else from c->token_file (created 0600 with GW_ADMIN_TOKEN_BYTES random bytes in hex when
 * missing and c->token_create is set; refused when group or others can access it). Without
 * any token every /v1 request is refused (401). Port 0 binds a free port (gw_admin_port).
 * Errors (err says which file, address or option): ITR_ERR_INVALID (bad listen address,
 * token file permissions, TLS without support), ITR_ERR_IO (cannot read or create a file,
 * cannot bind), ITR_ERR_NOMEM. */
int gw_admin_start(gw_admin **out, struct gw_gateway *g, const gw_admin_config *c, char *err,
                   size_t errlen);
/* Stop serving: waiting publish requests are answered 503, the threads are joined, the token
 * is wiped. NULL is a no-op. */
void gw_admin_stop(gw_admin *a);
/* The bound TCP port. */
int gw_admin_port(const gw_admin *a);

/* ---- request-body validation (exposed for the unit tests and the fuzzer) ---- */

/* Parse a request body as one JSON value: UTF-8 text, no NUL bytes, nothing after the value,
 * no duplicate object member names at any depth. On error e is a 400 "invalid_json" naming
 * the line and column (or the duplicated member's path). Caller frees *out (cJSON_Delete).
 * Errors: ITR_ERR_INVALID, ITR_ERR_NOMEM. */
int gw_admin_parse_json(const char *body, size_t len, cJSON **out, gw_ctl_error *e);

/* A POST /v1/publish body, validated. Pointers borrow from the cJSON document it was parsed
 * from, except body (owned, free with gw_admin_publish_clear). */
typedef struct gw_admin_publish {
    gw_target_kind kind;
    const char *target; /* peer key (64 hex, lower-cased into target_buf) or shard id */
    char target_buf[2 * ITR_KEY_LEN + 1];
    const char *topic;
    itr_intent intent;
    uint8_t priority;
    uint8_t *body; /* decoded payload (payload or payload_base64) */
    size_t body_len;
    int wait;            /* 1: answer with the outcome once known */
    uint32_t timeout_ms; /* 1..GW_ADMIN_PUBLISH_MAX_TIMEOUT_MS (default 5000) */
} gw_admin_publish;

/* Validate doc against the publish schema (docs/ADMIN.md): unknown members, wrong types,
 * ranges, topic syntax, base64. On error e is a 400/422 with the member's path in field.
 * Errors: ITR_ERR_INVALID, ITR_ERR_NOMEM. */
int gw_admin_publish_parse(const cJSON *doc, gw_admin_publish *out, gw_ctl_error *e);
void gw_admin_publish_clear(gw_admin_publish *p);

#endif
