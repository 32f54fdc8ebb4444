/* publish.c: the reverse path (publish.h): a request is copied once, posted to every worker,
 * each worker sends to the targets it owns and tracks Reliable sends until the peer
 * acknowledges them, the session closes, or the deadline passes. The request's `done`
 * callback runs once, on the worker that finishes last.
 *
 * Completion accounting: `pending` starts at the number of workers (one token each for
 * resolving targets); a worker adds one per Reliable send it will wait for before giving its
 * token back. Whoever takes pending to zero reports.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "gateway_int.h"

struct gw_pubop {
    gw_publish_req req; /* topic, body, target point into the copies below */
    char *target;
    char *topic;
    uint8_t *body;
    uint64_t deadline;
    _Atomic uint32_t targeted, sent, acked, failed;
    _Atomic uint32_t pending;
    gw_gateway *g;
};

typedef struct gw_pubwait {
    struct gw_pubwait *next;
    struct gw_pubop *op;
    itr_peer_id peer;
    uint32_t seq;
    int sent; /* 0: window was full, retry on writable */
} gw_pubwait;

static void op_release(gw_worker *w, struct gw_pubop *op, uint32_t n)
{
    if (atomic_fetch_sub(&op->pending, n) != n)
        return;
    gw_publish_result res = {
        .targeted = atomic_load(&op->targeted),
        .sent = atomic_load(&op->sent),
        .acked = atomic_load(&op->acked),
        .failed = atomic_load(&op->failed),
    };
    res.status = res.targeted == 0 ? ITR_ERR_NOT_FOUND : ITR_OK;
    if (res.failed)
        atomic_fetch_add(&w->g->publish_failures, 1);
    if (op->req.done)
        op->req.done(op->req.arg, &res);
    free(op->target);
    free(op->topic);
    free(op->body);
    free(op);
}

void gw_publish_worker_done(gw_worker *w, struct gw_pubop *op)
{
    op_release(w, op, 1);
}

static int try_send(gw_worker *w, gw_pubwait *pw, uint64_t now)
{
    struct gw_pubop *op = pw->op;
    uint32_t seq = 0;
    int rc = itr_endpoint_send(w->ep, pw->peer, op->req.intent, op->req.priority, op->topic,
                               op->req.topic_len, op->body, op->req.body_len, now, &seq);
    if (rc == ITR_OK) {
        pw->seq = seq;
        pw->sent = 1;
        atomic_fetch_add(&op->sent, 1);
    }
    return rc;
}

static void wait_finish(gw_worker *w, gw_pubwait **link, int acked)
{
    gw_pubwait *pw = *link;
    *link = pw->next;
    if (acked)
        atomic_fetch_add(&pw->op->acked, 1);
    else
        atomic_fetch_add(&pw->op->failed, 1);
    op_release(w, pw->op, 1);
    free(pw);
}

static void send_to(gw_worker *w, struct gw_pubop *op, itr_peer_id peer, uint64_t now,
                    uint32_t *waits)
{
    atomic_fetch_add(&op->targeted, 1);
    if (op->req.intent == ITR_INTENT_REALTIME) {
        uint32_t seq;
        if (itr_endpoint_send(w->ep, peer, op->req.intent, op->req.priority, op->topic,
                              op->req.topic_len, op->body, op->req.body_len, now, &seq) == ITR_OK)
            atomic_fetch_add(&op->sent, 1);
        else
            atomic_fetch_add(&op->failed, 1);
        return;
    }
    gw_pubwait *pw = calloc(1, sizeof(*pw));
    if (!pw) {
        atomic_fetch_add(&op->failed, 1);
        return;
    }
    pw->op = op;
    pw->peer = peer;
    int rc = try_send(w, pw, now);
    if (rc != ITR_OK && rc != ITR_ERR_WOULDBLOCK) {
        atomic_fetch_add(&op->failed, 1);
        free(pw);
        return;
    }
    pw->next = w->pub_waits;
    w->pub_waits = pw;
    (*waits)++;
}

void gw_publish_run(gw_worker *w, struct gw_pubop *op)
{
    uint64_t now = itr_now_ns();
    uint32_t waits = 0;

    if (op->req.kind == GW_TARGET_PEER) {
        uint8_t key[ITR_KEY_LEN];
        itr_peer_id id;
        if (itr_hex_decode(key, sizeof(key), op->target, strlen(op->target)) == ITR_OK &&
            itr_endpoint_find_peer(w->ep, key, &id) == ITR_OK)
            send_to(w, op, id, now, &waits);
    } else {
        for (size_t i = 0; i < w->peers_cap; i++) {
            gw_peer *p = w->peers[i];
            if (!p)
                continue;
            if (op->req.kind == GW_TARGET_SHARD) {
                if (!p->shard || strcmp(gw_shard_id(p->shard), op->target))
                    continue;
            }
            send_to(w, op, p->id, now, &waits);
        }
    }
    /* Hand the waits to the op before giving back this worker's token. */
    atomic_fetch_add(&op->pending, waits);
    if (waits && !itr_timer_armed(&w->pub_timer))
        itr_loop_timer_set(w->loop, &w->pub_timer, now + 100000000ull);
    op_release(w, op, 1);
    itr_driver_kick(w->drv);
}

void gw_publish_on_acked(gw_worker *w, gw_peer *p, uint32_t seq)
{
    for (gw_pubwait **l = &w->pub_waits; *l; l = &(*l)->next) {
        if ((*l)->peer == p->id && (*l)->sent && (*l)->seq == seq) {
            wait_finish(w, l, 1);
            return;
        }
    }
}

void gw_publish_on_writable(gw_worker *w, gw_peer *p)
{
    uint64_t now = itr_now_ns();
    for (gw_pubwait **l = &w->pub_waits; *l;) {
        gw_pubwait *pw = *l;
        if (pw->peer == p->id && !pw->sent) {
            int rc = try_send(w, pw, now);
            if (rc == ITR_ERR_WOULDBLOCK)
                break; /* window full again: wait for the next writable */
            if (rc != ITR_OK) {
                wait_finish(w, l, 0);
                continue;
            }
        }
        l = &pw->next;
    }
}

void gw_publish_on_close(gw_worker *w, gw_peer *p)
{
    for (gw_pubwait **l = &w->pub_waits; *l;) {
        if ((*l)->peer == p->id)
            wait_finish(w, l, 0);
        else
            l = &(*l)->next;
    }
}

void gw_publish_expire(gw_worker *w, uint64_t now)
{
    for (gw_pubwait **l = &w->pub_waits; *l;) {
        if (now >= (*l)->op->deadline)
            wait_finish(w, l, 0);
        else
            l = &(*l)->next;
    }
}

static char *dup_bytes(const void *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = 0;
    }
    return d;
}

int gw_publish(gw_gateway *g, const gw_publish_req *req)
{
    struct gw_pubop *op;
    uint8_t key[ITR_KEY_LEN];

    if (!req || (req->intent != ITR_INTENT_REALTIME && req->intent != ITR_INTENT_RELIABLE) ||
        req->priority > 7 || !itr_topic_valid(req->topic, req->topic_len) ||
        req->body_len > itr_endpoint_max_body(g->workers[0].ep, req->topic_len))
        return ITR_ERR_INVALID;
    if (req->kind == GW_TARGET_PEER &&
        (!req->target || itr_hex_decode(key, sizeof(key), req->target, strlen(req->target))))
        return ITR_ERR_INVALID;
    if (req->kind == GW_TARGET_SHARD && (!req->target || !*req->target))
        return ITR_ERR_INVALID;
    if (atomic_load(&g->draining))
        return ITR_ERR_CLOSED;

    op = calloc(1, sizeof(*op));
    if (!op)
        return ITR_ERR_NOMEM;
    op->g = g;
    op->req = *req;
    op->target = dup_bytes(req->target ? req->target : "", req->target ? strlen(req->target) : 0);
    op->topic = dup_bytes(req->topic, req->topic_len);
    op->body = (uint8_t *)dup_bytes(req->body, req->body_len);
    gw_cmd **cmds = calloc(g->nworkers, sizeof(*cmds));
    int ok = op->target && op->topic && op->body && cmds;
    for (unsigned i = 0; ok && i < g->nworkers; i++)
        ok = (cmds[i] = calloc(1, sizeof(gw_cmd))) != NULL;
    if (!ok) {
        for (unsigned i = 0; cmds && i < g->nworkers; i++)
            free(cmds[i]);
        free(cmds);
        free(op->target);
        free(op->topic);
        free(op->body);
        free(op);
        return ITR_ERR_NOMEM;
    }
    op->req.target = op->target;
    op->req.topic = op->topic;
    op->req.body = op->body;
    op->deadline =
        itr_now_ns() + (uint64_t)(req->timeout_ms ? req->timeout_ms : 30000) * 1000000ull;
    atomic_store(&op->pending, g->nworkers);
    atomic_fetch_add(&g->publishes, 1);
    for (unsigned i = 0; i < g->nworkers; i++) {
        cmds[i]->kind = GW_CMD_PUBLISH;
        cmds[i]->op = op;
        gw_worker_post(&g->workers[i], cmds[i]);
    }
    free(cmds);
    return ITR_OK;
}
