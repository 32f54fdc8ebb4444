/* publish.h: the reverse path: send a message from the backend to peers over intentra.
 * Implemented by the daemon (gateway/gateway.c); used by the admin API (POST /v1/publish) and
 * by connectors that consume (the Kafka consumer). Thread-safe: the request is copied and
 * handed to the worker(s) owning the target sessions through their mailboxes.
 */
#ifndef GW_PUBLISH_H
#define GW_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>

typedef enum gw_target_kind {
    GW_TARGET_PEER = 0, /* target = peer static key, 64 hex digits */
    GW_TARGET_SHARD,    /* target = shard id: every connected peer of the shard */
    GW_TARGET_ALL,      /* every connected peer */
} gw_target_kind;

/* Outcome of one publish, reported once. */
typedef struct gw_publish_result {
    int status; /* ITR_OK, or an itr_error (ITR_ERR_NOT_FOUND: no such peer/shard connected) */
    uint32_t targeted; /* sessions the message was addressed to */
    uint32_t sent;     /* accepted by the transport */
    uint32_t acked;    /* Reliable: acknowledged end to end by the peer */
    uint32_t failed;   /* closed before acknowledging, window full past the timeout, ... */
} gw_publish_result;

typedef struct gw_publish_req {
    gw_target_kind kind;
    const char *target; /* NUL-terminated; ignored for GW_TARGET_ALL */
    itr_intent intent;
    uint8_t priority;
    const char *topic;
    size_t topic_len;
    const void *body;
    size_t body_len;
    uint32_t timeout_ms; /* Reliable: give up waiting for acknowledgements after this (0: 30 s) */
    /* Called exactly once, from a gateway thread (never the caller's, never under its locks),
     * when every targeted peer acknowledged (Reliable), was sent (Realtime), failed, or the
     * timeout passed. May be NULL (fire and forget). */
    void (*done)(void *arg, const gw_publish_result *res);
    void *arg;
} gw_publish_req;

struct gw_gateway;
/* Errors (returned synchronously, done not called): ITR_ERR_INVALID (bad target, topic,
 * size), ITR_ERR_WOULDBLOCK (mailboxes full: retry), ITR_ERR_CLOSED (draining). */
int gw_publish(struct gw_gateway *g, const gw_publish_req *req);

#endif
