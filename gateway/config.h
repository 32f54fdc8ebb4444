/* config.h: the gateway's JSON configuration: load, interpolate, validate strictly.
 *
 * Loading is: read the file -> replace ${VAR}, ${VAR:-default}, ${VAR:?message} and $$ inside
 * JSON strings only (defaults may nest: ${A:-${B:-x}/y}) -> parse (cJSON) -> validate every
 * key into a gw_config. Unknown keys are errors. Every error names the file, the JSON path and
 * what was expected, e.g.
 *   conf/gateway.json:7:12: syntax error: unexpected '}' (expected a value)
 *   conf/gateway.json:3: ${INTENTRA_KEY_FILE} is not set (use ${INTENTRA_KEY_FILE:-default})
 *   conf/gateway.json: transport.rate_limit_pps: expected an integer 1..10000000, got "fast"
 *   conf/gateway.json: routes[2].sinks[0].sink: unknown sink "kafak" (defined: kafka, archive)
 * docs/CONFIG.md documents every key (type, default, meaning).
 *
 * A gw_config is immutable once built and owns everything it returns (strings, the parsed
 * JSON, the shard table and the router); the accessors return borrowed pointers valid until
 * gw_config_free. Sink-specific keys are checked by the sink's connector (validate()).
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <intentra/endpoint.h>

#include "log.h"
#include "router.h"
#include "shards.h"
#include "sinks.h"

#define GW_CONFIG_MAX_BYTES  (16u << 20) /* largest config file accepted */
#define GW_CONFIG_MAX_LISTEN 16

typedef struct gw_config gw_config;

typedef enum gw_unknown_peers {
    GW_UNKNOWN_REJECT = 0, /* only keys listed in a shard may connect (allowlist) */
    GW_UNKNOWN_ADMIT = 1,  /* anyone may connect; unlisted keys go to default_shard */
} gw_unknown_peers;

/* "log" */
typedef struct gw_log_config {
    gw_log_format format;
    gw_log_level level;
    uint64_t security_interval_ns; /* security events: one line per peer per interval */
} gw_log_config;

/* transport.udp_gro. auto: on when one worker serves the port (with several, a GRO buffer
 * is steered by its first datagram, see itr_driver_set_offload) and the kernel has UDP_GRO. */
typedef enum gw_gro_mode { GW_GRO_AUTO = 0, GW_GRO_ON = 1, GW_GRO_OFF = 2 } gw_gro_mode;

/* "transport": the endpoint settings and the socket/driver options. */
typedef struct gw_transport_config {
    itr_settings settings;           /* itr_settings_default() + the configured keys; static_private
                                        is zero (the daemon loads key_file) and accept_handshakes 1 */
    int socket_receive_buffer_bytes; /* 0: system default */
    int socket_send_buffer_bytes;
    uint32_t batch_size;          /* datagrams per recvmmsg/sendmmsg */
    uint32_t receive_coalesce_us; /* itr_driver_set_rx_coalesce; 0: off */
    int udp_gso;                  /* ITR_DRIVER_GSO for the workers' sends */
    gw_gro_mode udp_gro;          /* ITR_DRIVER_GRO */
} gw_transport_config;

/* Under steady load a worker waits this long after a short receive batch so the next one is
 * fuller (itr_driver_set_rx_coalesce): bench/README.md measured about half the CPU per
 * message at 200 k msgs/s for at most this + the timer slack of added queueing delay. */
#define GW_RECEIVE_COALESCE_US_DEFAULT 50u

/* "admin". Strings are NULL when unset. */
typedef struct gw_admin_config {
    int enabled;
    const char *listen;                /* "HOST:PORT" */
    itr_addr listen_addr;              /* parsed (a sockaddr for libmicrohttpd) */
    int listen_loopback;               /* 1 if 127.0.0.0/8, ::1 or localhost */
    const char *token_file;            /* read by the daemon; must be mode 0600 */
    int token_create;                  /* the daemon creates token_file (0600, random) if missing */
    const char *token_env;             /* env variable with the token: used when set and
                                          non-empty, else token_file */
    const char *const *open_endpoints; /* paths served without a token */
    size_t open_endpoint_count;
    const char *tls_cert_file; /* both set or both NULL */
    const char *tls_key_file;
    const char *state_file; /* NULL: edits kept in memory only */
    uint64_t max_body_bytes;
    unsigned connection_limit;
    uint64_t timeout_ns;
    unsigned threads;
} gw_admin_config;

/* Load and validate a config file. On error err gets the message (see above) and *out is
 * NULL. Errors: ITR_ERR_INVALID (the config is wrong), ITR_ERR_IO (cannot read the file),
 * ITR_ERR_NOMEM. */
int gw_config_load(const char *path, gw_config **out, char *err, size_t errlen);
/* The same from text in memory; origin names it in messages ("request body", a path). text
 * need not be NUL-terminated. Errors: as gw_config_load. */
int gw_config_parse_text(const char *text, size_t len, const char *origin, gw_config **out,
                         char *err, size_t errlen);
void gw_config_free(gw_config *cfg); /* NULL is a no-op */

/* Only the interpolation step, exposed for tests and tools: replace ${...} and $$ inside JSON
 * strings of text (len bytes) into a new NUL-terminated string (*out, caller frees with free;
 * *outlen its length). Errors: ITR_ERR_INVALID (err: "ORIGIN:LINE: problem"), ITR_ERR_NOMEM. */
int gw_config_interpolate(const char *text, size_t len, const char *origin, char **out,
                          size_t *outlen, char *err, size_t errlen);

/* The origin given at load (the file path). */
const char *gw_config_origin(const gw_config *cfg);
/* The whole document after interpolation. */
const cJSON *gw_config_json(const gw_config *cfg);

size_t gw_config_listen_count(const gw_config *cfg); /* >= 1 */
const char *gw_config_listen(const gw_config *cfg, size_t i);
const itr_addr *gw_config_listen_addr(const gw_config *cfg, size_t i);
const char *gw_config_key_file(const gw_config *cfg);
unsigned gw_config_workers(const gw_config *cfg);
const gw_log_config *gw_config_log(const gw_config *cfg);
const gw_transport_config *gw_config_transport(const gw_config *cfg);
uint64_t gw_config_message_pool_bytes(const gw_config *cfg); /* limits.message_pool_bytes */
gw_unknown_peers gw_config_unknown_peers(const gw_config *cfg);
/* The shard unlisted peers are admitted to (NULL if unset; always set when admitting). */
const char *gw_config_default_shard(const gw_config *cfg);
const gw_admin_config *gw_config_admin(const gw_config *cfg);
uint64_t gw_config_drain_timeout_ns(const gw_config *cfg);

/* Sinks in config order: sink index = position. spec[i].conf is the sink's JSON object. */
size_t gw_config_sink_count(const gw_config *cfg);
const gw_sink_spec *gw_config_sinks(const gw_config *cfg, size_t *n);
/* Sink names in order (for gw_router_compile). */
const char *const *gw_config_sink_names(const gw_config *cfg);
/* Index of the sink with this name, or -1. */
int gw_config_sink_index(const gw_config *cfg, const char *name);

/* The "shards" object (an empty object if the file has none) and "routes" array of the file,
 * and what was built from them. */
const cJSON *gw_config_shards_doc(const gw_config *cfg);
const cJSON *gw_config_routes_doc(const gw_config *cfg);
const gw_shards *gw_config_shards(const gw_config *cfg);
const gw_router *gw_config_router(const gw_config *cfg);

/* Build a shard table and a router for cfg from replacement documents, checked exactly like
 * the config file's own (sink names, default_shard defined when unknown peers are admitted,
 * shard patterns, peers in one shard only). NULL documents mean the config's own. Each
 * document is named by its origin in messages (NULL: "request body") and paths are relative to
 * it ("request body: fleet_a.peers[0]: ..."); a document whose origin is the config's
 * (gw_config_origin) is named as in gw_config_load ("FILE: shards.fleet_a.peers[0]: ...").
 * field (if not NULL) gets the JSON path of the offending element. On success the caller
 * owns *shards and *router (free the router first). Errors: ITR_ERR_INVALID, ITR_ERR_NOMEM. */
int gw_config_build_routing(const gw_config *cfg, const cJSON *shards_doc,
                            const char *shards_origin, const cJSON *routes_doc,
                            const char *routes_origin, gw_shards **shards, gw_router **router,
                            char *err, size_t errlen, char *field, size_t fieldlen);

#endif
