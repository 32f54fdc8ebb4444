/* sinks.h: the sink runtime: one thread and one itr_loop per configured sink, the bounded
 * queues between the workers and the sinks, completions back to the workers, per-sink
 * metrics, drain and reload.
 *
 * Threads (docs/ARCHITECTURE.md "The packet path", docs/SINKS.md):
 *   worker w    gw_sinkset_reserve/unreserve/stage/commit/poll with its own index w.
 *               Staging is worker-private; commit takes one lock per sink per batch.
 *   sink thread runs the connector (connectors/connector.h); it never calls worker code:
 *               completions go to the owning worker's lock-free completion list and the
 *               worker is woken with itr_loop_wake; the worker calls gw_sinkset_poll from
 *               its on_wake handler, which runs the worker's callback for each completion.
 *   main        open, drain, reload, close.
 *   any         count/name/status/metrics/ready/json (relaxed atomic loads, one small lock
 *               for the last error text).
 *
 * Delivery classes: Reliable deliveries (d->reliable = 1) need a reservation (bytes and one
 * message slot, bounded by the sink's max_inflight_bytes and queue_messages) taken before
 * they are staged; they are never dropped. Realtime deliveries go to a bounded ring
 * (queue_messages entries) with drop-oldest: the dropped one is completed GW_DISCARDED with
 * reason "queue_full" and counted.
 *
 * How a worker reads a completion: GW_DURABLE: stored. GW_DEAD_LETTER: handled (written to
 * the dead-letter file): counts as stored. GW_DISCARDED: NOT stored: for a Realtime delivery
 * that is the drop policy; a Reliable delivery is completed GW_DISCARDED only when its sink
 * is closed before it became durable (reason "shutdown"): its message must not be
 * acknowledged (the sender retransmits to the next gateway run).
 */
#ifndef GW_SINKS_H
#define GW_SINKS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <intentra/driver.h>
#include <intentra/error.h>

#include "connector.h"

struct gw_config;      /* gateway/config.h */
struct gw_gateway;     /* gateway/gateway.h */
struct gw_publish_req; /* gateway/publish.h */

#define GW_MAX_SINKS   255 /* gw_delivery.sink_index is 8 bits */
#define GW_MAX_WORKERS 64

/* Defaults for the common sink keys the runtime owns. */
#define GW_SINK_DEFAULT_MAX_INFLIGHT_BYTES (64ull << 20)
#define GW_SINK_DEFAULT_QUEUE_MESSAGES     65536u

/* Backoff of a non-required sink whose open failed: 1 s doubling to 60 s, +-20% jitter. */
#define GW_SINK_RETRY_MIN_NS (1000ull * 1000 * 1000)
#define GW_SINK_RETRY_MAX_NS (60ull * 1000 * 1000 * 1000)

/* Discard / dead-letter reasons counted per sink (a fixed table; labels for /metrics).
 * A reason a connector reports that is not in the table is counted as "other". */
enum {
    GW_REASON_QUEUE_FULL = 0, /* Realtime ring overflow (drop-oldest) */
    GW_REASON_DRAINING,       /* Realtime delivery committed while the sink drains */
    GW_REASON_SHUTDOWN,       /* still held when the sink was closed */
    GW_REASON_MESSAGE_TOO_LARGE,
    GW_REASON_INVALID_DESTINATION,
    GW_REASON_SINK_DOWN,   /* Realtime delivery refused by a failing sink */
    GW_REASON_BROKER_DOWN, /* Realtime delivery discarded while the Kafka brokers are down */
    GW_REASON_REJECTED,    /* the destination refused it for good (webhook 4xx) */
    GW_REASON_OTHER,
    GW_REASON_COUNT
};
extern const char *const gw_sink_reason_names[GW_REASON_COUNT];

/* Error stages counted per sink (labels for /metrics); unknown stages count as "other". */
enum {
    GW_STAGE_OPEN = 0,
    GW_STAGE_CONNECT,
    GW_STAGE_WRITE,
    GW_STAGE_FSYNC,
    GW_STAGE_ROTATE,
    GW_STAGE_DELIVERY,
    GW_STAGE_SPOOL,
    GW_STAGE_DEAD_LETTER,
    GW_STAGE_TIMEOUT,  /* no answer in time (webhook) */
    GW_STAGE_TLS,      /* TLS handshake or certificate verification */
    GW_STAGE_HTTP_4XX, /* webhook: permanent refusal */
    GW_STAGE_HTTP_429, /* webhook: rate limited, retried after Retry-After */
    GW_STAGE_HTTP_5XX, /* webhook: server error, retried */
    GW_STAGE_OTHER,
    GW_STAGE_COUNT
};
extern const char *const gw_sink_stage_names[GW_STAGE_COUNT];

/* Receive->durable latency histogram upper bounds in seconds (Prometheus "le"), ascending;
 * the +Inf bucket is the count. */
#define GW_LATENCY_BUCKETS 14
extern const double gw_sink_latency_bounds[GW_LATENCY_BUCKETS];

/* A snapshot of one sink's counters and gauges (each field a relaxed atomic load). */
typedef struct gw_sink_metrics {
    uint64_t delivered_total;                    /* completed GW_DURABLE */
    uint64_t discarded_total[GW_REASON_COUNT];   /* completed GW_DISCARDED, by reason */
    uint64_t dead_letter_total[GW_REASON_COUNT]; /* completed GW_DEAD_LETTER, by reason */
    uint64_t errors_total[GW_STAGE_COUNT];       /* env->error() calls, by stage */
    uint64_t queue_reliable;                     /* gauge: queued, not yet submitted */
    uint64_t queue_realtime;                     /* gauge */
    uint64_t in_flight;                          /* gauge: submitted, not completed */
    uint64_t in_flight_bytes;                    /* gauge */
    uint64_t reserved_messages;                  /* gauge: Reliable admitted, not completed */
    uint64_t reserved_bytes;                     /* gauge */
    uint64_t latency_bucket[GW_LATENCY_BUCKETS]; /* cumulative: count with latency <= le */
    uint64_t latency_count;
    double latency_sum_seconds;
    uint64_t open_attempts; /* connector open calls (retries included) */
} gw_sink_metrics;

/* One sink to run: what the config holds for it. */
typedef struct gw_sink_spec {
    const char *name;            /* copied */
    const char *type;            /* a registered connector type */
    const cJSON *conf;           /* the sink's JSON object ("type" included); copied */
    int required;                /* open failure fails the set; readiness needs it UP */
    uint64_t max_inflight_bytes; /* Reliable bytes admitted and not yet completed, >= 1 */
    uint32_t queue_messages;     /* Reliable messages admitted / Realtime ring size, >= 1 */
} gw_sink_spec;

typedef struct gw_sinkset_options {
    unsigned workers; /* 1..GW_MAX_WORKERS: worker indexes the set accepts */
    /* Handed to connectors as env->gateway / env->publish (may be NULL: no reverse path). */
    struct gw_gateway *gateway;
    int (*publish)(struct gw_gateway *g, const struct gw_publish_req *req);
} gw_sinkset_options;

typedef struct gw_sinkset gw_sinkset;

/* Called on the worker's thread from gw_sinkset_poll, once per completed delivery. */
typedef void (*gw_sink_complete_fn)(void *arg, gw_delivery *d, gw_result r);

/* ---- lifecycle (main thread) ---- */

/* Start one thread per sink of cfg (sink index = position in the config's sink list) and
 * open each connector on its thread; waits for every first open attempt. A required sink
 * that fails makes the whole call fail with "sinks.NAME: <connector message>" in err (all
 * threads stopped); a non-required one stays DOWN and is retried with backoff.
 * Errors: ITR_ERR_INVALID (unknown type, bad limits, too many sinks/workers), ITR_ERR_IO
 * (a required sink failed to open, or a thread could not start), ITR_ERR_NOMEM. */
int gw_sinkset_open(gw_sinkset **out, const struct gw_config *cfg, const gw_sinkset_options *opt,
                    char *err, size_t errlen);
/* The same from an explicit list (tests, tools). */
int gw_sinkset_open_specs(gw_sinkset **out, const gw_sink_spec *specs, size_t n,
                          const gw_sinkset_options *opt, char *err, size_t errlen);

/* Build the set for new_cfg from old: sinks whose name and whole JSON object are unchanged
 * (cJSON_Compare) are carried over with their thread, queues and in-flight deliveries (they
 * may change index); the others are opened. Worker attachments carry over. On any failure
 * nothing changes (new sinks opened so far are closed) and err says why. After publishing
 * new_set to the workers, and once no worker can stage into old any more, call
 * gw_sinkset_retire(old, deadline). Errors: as gw_sinkset_open. */
int gw_sinkset_reload(gw_sinkset *old, const struct gw_config *new_cfg, gw_sinkset **new_set,
                      char *err, size_t errlen);
int gw_sinkset_reload_specs(gw_sinkset *old, const gw_sink_spec *specs, size_t n,
                            gw_sinkset **new_set, char *err, size_t errlen);

/* Stop taking new deliveries (reserve refuses with ITR_ERR_CLOSED, Realtime commits are
 * discarded "draining"), submit everything queued and flush the connectors until deadline
 * (itr_now_ns time), all sinks in parallel. Returns ITR_OK when nothing is left in flight,
 * ITR_ERR_WOULDBLOCK when the deadline passed first. */
int gw_sinkset_drain(gw_sinkset *set, uint64_t deadline_ns);
/* After a reload: drain (until deadline) and close the sinks of old that were not carried
 * into the new set, then free old (carried sinks keep running in the new set). */
int gw_sinkset_retire(gw_sinkset *old, uint64_t deadline_ns);
/* Free the set. Its sinks not carried into a newer set are stopped and closed; deliveries
 * they still hold are completed GW_DISCARDED "shutdown": after gw_sinkset_retire the
 * workers receive them through the new set; when the last set goes they are dropped with
 * it (the process is ending, and nothing of them was acknowledged). Workers whose loops are
 * already freed must be detached first. NULL is a no-op. */
void gw_sinkset_close(gw_sinkset *set);

/* ---- worker side (worker thread `worker` only unless noted) ---- */

/* Route completions of deliveries staged by `worker` to cb on that worker; loop is woken
 * (itr_loop_wake) when completions are waiting: call gw_sinkset_poll from the loop's
 * on_wake handler. Call before the worker stages; from any thread before the worker runs.
 * Errors: ITR_ERR_INVALID (worker out of range). */
int gw_sinkset_attach(gw_sinkset *set, unsigned worker, itr_loop *loop, gw_sink_complete_fn cb,
                      void *arg);
/* Stop waking loop (call before freeing it). Any thread. */
void gw_sinkset_detach(gw_sinkset *set, unsigned worker);
/* Run cb for every completion waiting for this worker, oldest first. Returns how many. */
size_t gw_sinkset_poll(gw_sinkset *set, unsigned worker);

/* Bytes a Reliable delivery of m holds against max_inflight_bytes (topic + body). */
uint64_t gw_msg_cost(const gw_msg *m);
/* Reliable admission: reserve one message slot and gw_msg_cost(m) bytes on sink `sink`.
 * Any thread, lock-free. A message routed to several Reliable sinks reserves on each and
 * unreserves those already taken if one refuses.
 * Errors: ITR_ERR_WOULDBLOCK (queue or byte bound reached: defer the message so its sender
 * is throttled), ITR_ERR_CLOSED (the sink is draining), ITR_ERR_INVALID (bad index). */
int gw_sinkset_reserve(gw_sinkset *set, unsigned sink, const gw_msg *m);
/* Give back a reservation that will not be staged. (Staged Reliable deliveries release
 * theirs when completed.) */
void gw_sinkset_unreserve(gw_sinkset *set, unsigned sink, const gw_msg *m);
/* Stage d for sink `sink` (d->msg, d->rs, d->reliable set by the caller; the runtime sets
 * sink_index, worker and owner). A Reliable d must hold a reservation on that sink. d stays
 * owned by the worker but must not be touched until it comes back through poll. No lock,
 * no allocation; a full staging area is committed on the spot. */
void gw_sinkset_stage(gw_sinkset *set, unsigned worker, unsigned sink, gw_delivery *d);
/* Push everything staged by worker to the sinks' queues (one lock per sink with staged
 * deliveries) and wake their threads. Call once per receive batch. */
void gw_sinkset_commit(gw_sinkset *set, unsigned worker);

/* ---- status (any thread) ---- */

unsigned gw_sinkset_count(const gw_sinkset *set);
const char *gw_sinkset_name(const gw_sinkset *set, unsigned i);
const char *gw_sinkset_type(const gw_sinkset *set, unsigned i);
int gw_sinkset_required(const gw_sinkset *set, unsigned i);
/* Index of the sink with this name, or -1. */
int gw_sinkset_index(const gw_sinkset *set, const char *name);
/* State, in-flight, buffered bytes (from the connector) and last error. */
void gw_sinkset_status(const gw_sinkset *set, unsigned i, gw_sink_status *st);
void gw_sinkset_metrics(const gw_sinkset *set, unsigned i, gw_sink_metrics *m);
/* 1 when every required sink is UP (or DEGRADED: still taking data), else 0 with the first
 * reason in why, e.g. "sink kafka: down: broker unreachable". why may be NULL. */
int gw_sinkset_ready(const gw_sinkset *set, char *why, size_t whylen);
/* The array gw_ctl_sinks_json documents (gateway/control.h), plus "dead_letter":{reason:n}.
 * Caller frees; NULL on ENOMEM. */
cJSON *gw_sinkset_json(const gw_sinkset *set);
/* "starting", "up", "degraded", "down", "closed". */
const char *gw_sink_state_name(gw_sink_state s);

#endif
