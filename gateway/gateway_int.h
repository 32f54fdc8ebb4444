/* gateway_int.h: the daemon's internal structures, shared by gateway.c (lifecycle, snapshots,
 * control), worker.c (the packet path) and publish.c (reverse path). Not a public API.
 *
 * Ownership (docs/ARCHITECTURE.md "Threads and ownership"):
 *   gw_gateway   main thread writes; snap/sinks pointers are atomics read by workers.
 *   gw_worker    its thread owns everything in it except `mbox` (mutex) and the counters
 *                (single-writer atomics read by the admin thread).
 *   gw_snapshot  immutable once published; reference-counted (workers + in-flight messages).
 */
#ifndef GW_GATEWAY_INT_H
#define GW_GATEWAY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include <intentra/intentra.h>

#include "config.h"
#include "control.h"
#include "gateway.h"
#include "log.h"
#include "mpool.h"
#include "publish.h"
#include "router.h"
#include "shards.h"
#include "sinks.h"
#include "state.h"

#define GW_MAX_LISTEN         8
#define GW_MAX_SHARD_COUNTERS 4096 /* distinct shard names counted per worker */

/* Single-writer counter helpers: a plain load+store (no lock prefix) is enough when one
 * thread writes and others only read. */
static inline void ctr_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}
static inline void ctr_sub(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - v,
                          memory_order_relaxed);
}
static inline uint64_t ctr_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Routing state: shards + routes + the sink set they refer to. */
typedef struct gw_snapshot {
    _Atomic uint64_t refs;
    uint64_t gen;
    gw_shards *shards;
    gw_router *router;
    cJSON *shards_doc, *routes_doc; /* what it was built from */
    gw_sinkset *sinks;              /* not owned: retired by the gateway after a reload */
    int admit_unknown;
    const gw_shard *default_shard;   /* NULL when unknown peers are rejected */
    struct gw_gateway *g;            /* set when published; every published snapshot is on */
    struct gw_snapshot *prev, *next; /* g->snaps until freed (snaps_mu) */
} gw_snapshot;

void gw_snapshot_ref(gw_snapshot *s);
void gw_snapshot_ref_n(gw_snapshot *s, uint64_t n);
void gw_snapshot_unref(gw_snapshot *s);

/* Per-worker, per-shard-name counters (control.h gw_shard_counters, as atomics). */
typedef struct gw_shard_ctr {
    char name[GW_SHARD_ID_MAX + 1];
    _Atomic uint64_t messages[2], bytes[2], unrouted, deferred, dropped, peers;
} gw_shard_ctr;

/* Gateway state of one live session, on its worker. */
typedef struct gw_peer {
    itr_peer_id id;
    uint8_t key[ITR_KEY_LEN];
    uint64_t snap_gen;     /* snapshot the shard below was resolved with */
    const gw_shard *shard; /* NULL: not admitted any more (closing) */
    gw_shard_ctr *ctr;
    uint32_t key_hash; /* gw_msg.peer_hash */
} gw_peer;             /* 80 bytes: the gateway's share of an idle session */

/* A received message and its deliveries, in one message-pool slot. */
typedef struct gw_dwrap {
    gw_delivery d;
    struct gw_mslot *slot;
} gw_dwrap;

typedef struct gw_mslot {
    gw_msg msg;
    gw_snapshot *snap; /* keeps shard and templates alive */
    gw_shard_ctr *ctr;
    itr_peer_id peer;
    uint32_t size;    /* slot size, for gw_mpool_free */
    uint16_t pending; /* deliveries not yet completed */
    uint8_t ndeliv;
    uint8_t ack;    /* acknowledge the Reliable message when the last delivery completes */
    uint8_t failed; /* a Reliable delivery came back not durable: never acknowledge */
    gw_dwrap d[];   /* then topic and body bytes */
} gw_mslot;

/* Mailbox commands from other threads (admin, main, reverse path). */
typedef enum gw_cmd_kind {
    GW_CMD_PEERS = 0,
    GW_CMD_DISCONNECT,
    GW_CMD_PUBLISH,
    GW_CMD_PAUSE,
    GW_CMD_CLOSE_ALL,
    GW_CMD_STOP,
} gw_cmd_kind;

/* A synchronous request fanned out to every worker. */
typedef struct gw_reply {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned remaining;
    int status;
    /* GW_CMD_PEERS results, one array per worker */
    gw_peer_row *rows[64];
    size_t nrows[64];
} gw_reply;

struct gw_pubop;

typedef struct gw_cmd {
    struct gw_cmd *next;
    gw_cmd_kind kind;
    gw_reply *reply;
    uint8_t key[ITR_KEY_LEN]; /* GW_CMD_DISCONNECT */
    struct gw_pubop *op;      /* GW_CMD_PUBLISH */
} gw_cmd;

typedef struct gw_worker {
    struct gw_gateway *g;
    unsigned index;
    pthread_t thread;
    int started;
    itr_loop *loop;
    itr_endpoint *ep;
    itr_driver *drv;
    int fds[GW_MAX_LISTEN];
    unsigned nfds;

    gw_snapshot *snap;         /* current, referenced */
    uint64_t snap_slots;       /* in-flight slots of snap: they borrow the reference above */
    _Atomic uint64_t snap_gen; /* generation of snap, read by the main thread on reload */
    gw_sinkset *sinks;         /* the set this worker stages into (snap->sinks) */
    gw_mpool pool;
    _Atomic uint64_t pool_in_use; /* mirror of pool.in_use for /metrics */
    uint64_t inflight;            /* slots in use */
    int paused;

    /* peer table: open addressing on itr_peer_id */
    gw_peer **peers;
    size_t peers_cap, npeers;

    gw_shard_ctr *ctrs; /* GW_MAX_SHARD_COUNTERS, appended only */
    _Atomic uint32_t nctrs;

    pthread_mutex_t mbox_mu;
    gw_cmd *mbox_head, *mbox_tail;

    struct gw_pubwait *pub_waits; /* all pending reverse Reliable sends (for timeouts) */
    itr_timer pub_timer;
    int staged;              /* deliveries staged since the last commit */
    uint64_t last_commit_ns; /* itr_now_ns() of the last commit (pacing) */
    itr_timer commit_timer;  /* armed while staged deliveries wait for the pacing interval */
    uint64_t wall_offset;    /* itr_wall_ns() - itr_now_ns() (mod 2^64), read at wall_read_ns */
    uint64_t wall_read_ns;
    uint64_t poll_now; /* itr_now_ns() of the completion poll running (acks) */
    _Atomic int running;
} gw_worker;

struct gw_gateway {
    gw_config *cfg;
    char *config_path;
    uint8_t priv[ITR_KEY_LEN], pub[ITR_KEY_LEN];
    unsigned nworkers;
    gw_worker *workers;
    _Atomic(gw_snapshot *) snap;
    _Atomic(gw_sinkset *) sinks;
    pthread_mutex_t apply_mu; /* serializes snapshot builds (admin, reload) */
    pthread_mutex_t sinks_mu; /* held while the sink set is swapped or read by /metrics */
    pthread_mutex_t snaps_mu; /* guards the list of published snapshots */
    gw_snapshot *snaps;
    uint64_t next_gen;
    gw_state *state;
    struct gw_admin *admin;
    gw_lograte *secrate;
    _Atomic int draining;

    _Atomic uint64_t reloads_ok, reloads_failed, snapshots, publishes, publish_failures;
    _Atomic uint64_t sec_events[ITR_SEC_EVENT_COUNT];
    uint64_t start_wall_ns;
};

/* worker.c */
int gw_worker_init(gw_worker *w, struct gw_gateway *g, unsigned index, char *err, size_t errlen);
int gw_worker_start(gw_worker *w);
void gw_worker_post(gw_worker *w, gw_cmd *c);
void gw_worker_join(gw_worker *w);
void gw_worker_destroy(gw_worker *w);
int gw_snapshot_admits(const gw_snapshot *s, const uint8_t key[ITR_KEY_LEN],
                       const gw_shard **shard);

/* publish.c */
void gw_publish_run(gw_worker *w, struct gw_pubop *op);
void gw_publish_on_acked(gw_worker *w, gw_peer *p, uint32_t seq);
void gw_publish_on_writable(gw_worker *w, gw_peer *p);
void gw_publish_on_close(gw_worker *w, gw_peer *p);
void gw_publish_expire(gw_worker *w, uint64_t now);
void gw_publish_worker_done(gw_worker *w, struct gw_pubop *op);

/* gateway.c */
gw_snapshot *gw_gateway_current_snapshot(struct gw_gateway *g); /* referenced */

#endif
