/* connector.h: the sink interface every connector implements (file, kafka, null, ...).
 *
 * A sink instance runs on its own thread with its own itr_loop (gateway/sinks.c, the sink
 * runtime). Workers hand it deliveries through bounded queues; the runtime calls `submit` on
 * the sink thread; the connector does its IO through the loop (fd watches and timers: this is
 * the "poll or fd for the event loop" part of the interface: a connector registers its fds,
 * e.g. librdkafka's queue event fd, on env->loop) and reports every delivery exactly once
 * through env->complete(), also on the sink thread.
 *
 * The one rule that makes "nothing acknowledged is lost" hold: a Reliable delivery
 * (d->reliable) is completed with GW_DURABLE only once the data is durable by the sink's own
 * definition (file: written and fsynced per policy; Kafka: delivery report succeeded or the
 * record is in the disk buffer; dead-letter file written counts as handled). Until then the
 * connector keeps it and retries; it never completes a Reliable delivery as dropped.
 */
#ifndef GW_CONNECTOR_H
#define GW_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <intentra/driver.h>

#define GW_ERR_LEN 512 /* error buffers passed to connectors */

struct gw_route_sink;  /* gateway/router.h: compiled destination and key templates */
struct gw_shard;       /* gateway/shards.h */
struct gw_gateway;     /* gateway/gateway.h */
struct gw_publish_req; /* gateway/publish.h */

/* One received message, shared read-only by all its deliveries. Owned by a worker; freed by
 * it when every delivery completed. */
typedef struct gw_msg {
    uint64_t recv_wall_ns;        /* gateway receive time, CLOCK_REALTIME (headers, JSON "ts") */
    uint64_t recv_mono_ns;        /* for the receive->durable latency histogram */
    const struct gw_shard *shard; /* the peer's shard at receive time (kept alive by msg) */
    const char *shard_name;
    uint32_t shard_name_len;
    char peer_hex[2 * 32 + 1]; /* peer static public key, lower-case hex */
    uint32_t seq;              /* message sequence (Reliable: stream sequence) */
    uint8_t intent;            /* itr_intent as sent */
    uint8_t priority;
    uint16_t topic_len;
    uint32_t body_len;
    uint32_t peer_hash;  /* zlib crc32 of peer_hex (librdkafka's key hash), once per session;
                            0: not known */
    const char *topic;   /* not NUL-terminated */
    const uint8_t *body; /* not NUL-terminated */
} gw_msg;

/* One (message, sink) pair. */
typedef struct gw_delivery {
    const gw_msg *msg;
    const struct gw_route_sink *rs; /* render with gw_route_sink_destination()/_key() */
    uint8_t reliable;               /* 1: complete only when durable; 0: may be discarded */
    /* runtime-private below (gateway/sinks.c) */
    uint8_t sink_index;
    uint8_t result; /* gw_result, set when completed */
    uint16_t worker;
    void *owner; /* in the connector: its slot; then: link in the worker's completion list */
    void *ahead; /* completion list: a delivery further along it, loaded early */
} gw_delivery;

/* For connectors completing deliveries in large batches (Kafka delivery reports): each one
 * was last touched long ago or on another core. A few deliveries ahead of the one being
 * completed, gw_prefetch_delivery(d) starts loading d; once d is in cache (two or so later),
 * gw_prefetch_completion(d) starts loading what env->complete(d) reads besides d. */
/* always_inline: GCC judges a function that only prefetches to have no effect and deletes
 * the calls to it when it is not inlined (seen with GCC 12 at -O2). */
#define GW_PREFETCH_FN static inline __attribute__((always_inline)) void

GW_PREFETCH_FN gw_prefetch_delivery(const gw_delivery *d)
{
    __builtin_prefetch(d);
    __builtin_prefetch((const char *)(d + 1) - 1); /* it may straddle two cache lines */
}

GW_PREFETCH_FN gw_prefetch_completion(const gw_delivery *d)
{
    __builtin_prefetch(d->owner, 1);
    __builtin_prefetch(d->msg);
    __builtin_prefetch((const char *)d->msg + 64);
}

typedef enum gw_result {
    GW_DURABLE = 0,     /* durably stored (or, for Realtime, handed to the destination) */
    GW_DISCARDED = 1,   /* Realtime only: intentionally dropped (reason counted) */
    GW_DEAD_LETTER = 2, /* permanently failed and written to the dead-letter file */
} gw_result;

typedef enum gw_sink_state {
    GW_SINK_STARTING = 0,
    GW_SINK_UP,       /* connected, delivering */
    GW_SINK_DEGRADED, /* delivering to a fallback (disk buffer), or retrying */
    GW_SINK_DOWN,     /* not delivering */
    GW_SINK_CLOSED,
} gw_sink_state;

typedef struct gw_sink_status {
    gw_sink_state state;
    uint64_t in_flight;      /* submitted, not completed */
    uint64_t buffered_bytes; /* e.g. disk buffer size */
    char last_error[256];    /* empty if none */
    uint64_t last_error_wall_ns;
} gw_sink_status;

typedef struct gw_sink gw_sink; /* connector-private */

/* What the runtime gives a connector instance. Valid from open to close; used on the sink
 * thread only unless noted. */
typedef struct gw_sink_env {
    const char *name; /* sink name from the config */
    itr_loop *loop;   /* the sink thread's loop */
    /* Report one delivery. reason: short snake_case label for GW_DISCARDED/GW_DEAD_LETTER
     * ("queue_full", "message_too_large", ...), NULL otherwise. */
    void (*complete)(struct gw_sink_env *env, gw_delivery *d, gw_result r, const char *reason);
    /* Count an error by stage ("connect", "write", "fsync", "delivery", "spool", ...) and
     * remember it as the last error. The runtime rate-limits the log line. Retried failures
     * are errors, never discards. */
    void (*error)(struct gw_sink_env *env, const char *stage, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* Informational log line (rate-limited by the runtime). */
    void (*log)(struct gw_sink_env *env, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* The runtime calls submit again when the connector signals it can take more. */
    void (*ready)(struct gw_sink_env *env);
    /* The reverse path (gateway/publish.h), for connectors that consume: any thread. */
    struct gw_gateway *gateway;
    int (*publish)(struct gw_gateway *g, const struct gw_publish_req *req);
    void *runtime; /* runtime-private */
} gw_sink_env;

typedef struct gw_connector {
    const char *type; /* the sink's "type" in the config */
    /* Check the type-specific keys of one sink object (everything except the common keys the
     * runtime owns: "type", "max_inflight_bytes", "queue_messages", "required"). `where` is
     * "FILE: sinks.NAME". Write "WHERE.key: problem (expected ...)" to err. Runs without
     * side effects (no connections, no files created): --check-config uses it. */
    int (*validate)(const cJSON *conf, const char *where, char *err, size_t errlen);
    /* Create the instance on the sink thread. Errors are final for this config. */
    int (*open)(gw_sink **out, const cJSON *conf, gw_sink_env *env, char *err, size_t errlen);
    /* Take up to n deliveries; return how many were taken. Those not taken are offered again
     * after env->ready() (backpressure). Must not block. */
    size_t (*submit)(gw_sink *s, gw_delivery **d, size_t n);
    /* Make everything submitted durable, running env->loop as needed, until now >= deadline.
     * Returns 0 when nothing is left in flight, ITR_ERR_WOULDBLOCK otherwise. */
    int (*flush)(gw_sink *s, uint64_t deadline_ns);
    void (*status)(gw_sink *s, gw_sink_status *st); /* any thread: must be cheap and safe */
    /* Release everything. Deliveries still held are completed by the runtime as not durable
     * (never acknowledged: their senders retransmit after a restart). */
    void (*close)(gw_sink *s);
} gw_connector;

/* For a connector's flush(): run the sink loop once, for at most 100 ms and never past
 * deadline_ns. Returns 0 after it ran, ITR_ERR_WOULDBLOCK once the deadline has passed,
 * ITR_ERR_IO when the loop failed. (connectors/registry.c) */
int gw_sink_run_until(itr_loop *loop, uint64_t deadline_ns);

/* Registry (connectors/registry.c). */
const gw_connector *gw_connector_find(const char *type);
/* Comma-separated list of known types, for error messages. */
const char *gw_connector_types(void);

#endif
