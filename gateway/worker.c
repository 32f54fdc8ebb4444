/* worker.c: one packet worker: its sockets, transport endpoint and driver, the routing of
 * every received message into sink deliveries, and end-to-end acknowledgements.
 *
 * Everything here runs on the worker's thread except gw_worker_post (any thread). The hot
 * path (on_message -> stage, batch hook -> commit, completion -> ack) allocates nothing: the
 * message is copied once into the worker's message pool and shared by its deliveries.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "gateway_int.h"

/* While messages are in flight, their completions may wake this worker up to this late: under
 * load the worker is running or about to run for the next receive batch anyway and collects
 * them then, instead of the sink thread paying a system call and the worker a context switch
 * per batch. It bounds how much later than "durable" a Reliable message is acknowledged. */
#define COMPLETION_SLACK_MS 1

/* Under load, staged deliveries are handed to the sinks at most once per this interval (and
 * at once when the last hand-off is older): each hand-off wakes a sink thread, which on two
 * cores preempts the worker, so handing off every receive batch (a few messages each at
 * 200 k msgs/s) cost more than the messages themselves. A message waits at most this long
 * more before its sink sees it. */
#define COMMIT_INTERVAL_NS 200000ull

static void set_wake_slack(gw_worker *w)
{
    itr_loop_set_wake_slack(w->loop, w->inflight ? COMPLETION_SLACK_MS : 0);
}

static void commit_now(gw_worker *w, uint64_t now)
{
    if (w->staged) {
        gw_sinkset_commit(w->sinks, w->index);
        w->staged = 0;
        w->last_commit_ns = now;
    }
    itr_loop_timer_cancel(w->loop, &w->commit_timer);
}

/* Hand staged deliveries over now, or when the interval since the last hand-off is over. */
static void commit_paced(gw_worker *w, uint64_t now)
{
    if (!w->staged)
        return;
    uint64_t due = w->last_commit_ns + COMMIT_INTERVAL_NS;
    if (now >= due || now < w->last_commit_ns)
        commit_now(w, now);
    else if (!itr_timer_armed(&w->commit_timer))
        itr_loop_timer_set(w->loop, &w->commit_timer, due);
}

static void on_commit_timer(void *arg, uint64_t now)
{
    gw_worker *w = arg;
    commit_now(w, now);
    set_wake_slack(w);
}

/* ---- peer table (open addressing with backward-shift deletion) ---- */

static size_t peer_hash(itr_peer_id id, size_t cap)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static gw_peer *peer_get(gw_worker *w, itr_peer_id id)
{
    if (!w->peers_cap)
        return NULL;
    for (size_t i = peer_hash(id, w->peers_cap);; i = (i + 1) & (w->peers_cap - 1)) {
        gw_peer *p = w->peers[i];
        if (!p)
            return NULL;
        if (p->id == id)
            return p;
    }
}

static int peer_table_insert(gw_worker *w, gw_peer *p)
{
    if ((w->npeers + 1) * 2 > w->peers_cap) {
        size_t cap = w->peers_cap ? w->peers_cap * 2 : 64;
        gw_peer **t = calloc(cap, sizeof(*t));
        if (!t)
            return ITR_ERR_NOMEM;
        for (size_t i = 0; i < w->peers_cap; i++) {
            gw_peer *q = w->peers[i];
            if (!q)
                continue;
            size_t j = peer_hash(q->id, cap);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = q;
        }
        free(w->peers);
        w->peers = t;
        w->peers_cap = cap;
    }
    size_t i = peer_hash(p->id, w->peers_cap);
    while (w->peers[i])
        i = (i + 1) & (w->peers_cap - 1);
    w->peers[i] = p;
    w->npeers++;
    return ITR_OK;
}

static void peer_table_remove(gw_worker *w, itr_peer_id id)
{
    size_t mask = w->peers_cap - 1, i;
    if (!w->peers_cap)
        return;
    for (i = peer_hash(id, w->peers_cap); w->peers[i]; i = (i + 1) & mask)
        if (w->peers[i]->id == id)
            break;
    if (!w->peers[i])
        return;
    w->peers[i] = NULL;
    w->npeers--;
    /* Backward shift: move later members of the probe run into the hole. */
    for (size_t j = (i + 1) & mask; w->peers[j]; j = (j + 1) & mask) {
        size_t home = peer_hash(w->peers[j]->id, w->peers_cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            w->peers[i] = w->peers[j];
            w->peers[j] = NULL;
            i = j;
        }
    }
}

/* ---- per-shard counters ---- */

static gw_shard_ctr *shard_ctr(gw_worker *w, const char *name)
{
    uint32_t n = atomic_load_explicit(&w->nctrs, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(w->ctrs[i].name, name))
            return &w->ctrs[i];
    if (n == GW_MAX_SHARD_COUNTERS)
        return &w->ctrs[n - 1]; /* bounded: the last entry absorbs the overflow */
    gw_shard_ctr *c = &w->ctrs[n];
    snprintf(c->name, sizeof(c->name), "%s", name);
    /* Publish the name before the count: readers only look below nctrs. */
    atomic_store_explicit(&w->nctrs, n + 1, memory_order_release);
    return c;
}

/* ---- snapshots ---- */

int gw_snapshot_admits(const gw_snapshot *s, const uint8_t key[ITR_KEY_LEN], const gw_shard **shard)
{
    const gw_shard *sh = gw_shards_lookup_peer(s->shards, key);
    if (!sh && s->admit_unknown)
        sh = s->default_shard;
    if (shard)
        *shard = sh;
    return sh != NULL;
}

static void peer_resolve(gw_worker *w, gw_peer *p)
{
    const gw_shard *sh = NULL;
    if (p->snap_gen == w->snap->gen)
        return;
    gw_snapshot_admits(w->snap, p->key, &sh);
    gw_shard_ctr *c = sh ? shard_ctr(w, gw_shard_id(sh)) : NULL;
    if (c != p->ctr) {
        if (p->ctr)
            ctr_sub(&p->ctr->peers, 1);
        if (c)
            ctr_add(&c->peers, 1);
        p->ctr = c;
    }
    p->shard = sh;
    p->snap_gen = w->snap->gen;
}

/* Pick up a newer snapshot, if any. Peers re-resolve their shard lazily; peers no longer
 * admitted (reject policy, key removed from the table) are disconnected. */
static void snapshot_refresh(gw_worker *w, uint64_t now)
{
    gw_snapshot *s = atomic_load_explicit(&w->g->snap, memory_order_acquire);
    if (s == w->snap)
        return;
    gw_snapshot_ref(s);
    gw_snapshot *old = w->snap;
    w->snap = s;
    if (s->sinks != w->sinks) {
        /* Nothing may stay staged in the old set: the main thread retires it once every
         * worker has moved on (completions keep flowing: sets reloaded from one another
         * share their completion lists). */
        if (w->staged)
            gw_sinkset_commit(w->sinks, w->index);
        w->staged = 0;
        w->sinks = s->sinks;
    }
    atomic_store_explicit(&w->snap_gen, s->gen, memory_order_release);
    /* Slots of the old snapshot borrowed the worker's reference: give them real ones now. */
    gw_snapshot_ref_n(old, w->snap_slots);
    w->snap_slots = 0;
    gw_snapshot_unref(old);
    for (size_t i = 0; i < w->peers_cap; i++) {
        gw_peer *p = w->peers[i];
        if (!p)
            continue;
        peer_resolve(w, p);
        if (!p->shard)
            itr_endpoint_close_peer(w->ep, p->id, now);
    }
}

/* ---- completions ---- */

static void slot_release(gw_worker *w, gw_mslot *slot, uint64_t now)
{
    if (slot->ack && !slot->failed) {
        itr_endpoint_ack(w->ep, slot->peer, slot->msg.seq, now);
    } else if (slot->ack) {
        /* A sink closed before this Reliable message became durable (it was removed by a
         * reload and did not drain in time). Never acknowledge it; and since the transport
         * already delivered it, the stream would wait for this acknowledgement forever:
         * close the session instead, so the sender knows the message was not taken and
         * resends it in its next session. */
        if (itr_endpoint_close_peer(w->ep, slot->peer, now) == ITR_OK)
            GW_LOG(GW_LOG_WARN, "session_closed_undelivered", GW_F_U64("seq", slot->msg.seq),
                   GW_F_STRN("peer", slot->msg.peer_hex, 2 * ITR_KEY_LEN),
                   GW_F_STR("reason", "a sink closed before the message was durable"));
    }
    if (slot->snap == w->snap)
        w->snap_slots--; /* borrowed the worker's reference */
    else
        gw_snapshot_unref(slot->snap);
    gw_mpool_free(&w->pool, slot, slot->size);
    atomic_store_explicit(&w->pool_in_use, w->pool.in_use, memory_order_relaxed);
    w->inflight--;
}

static void on_complete(void *arg, gw_delivery *d, gw_result r)
{
    gw_worker *w = arg;
    gw_mslot *slot = ((gw_dwrap *)d)->slot;

    if (d->reliable && r == GW_DISCARDED)
        slot->failed = 1;
    if (--slot->pending == 0)
        slot_release(w, slot, w->poll_now);
}

/* ---- the packet path ---- */

static int on_message(void *user, const itr_message *m)
{
    gw_worker *w = user;
    gw_peer *p = peer_get(w, m->peer);
    const gw_route_sink *rs[GW_MAX_DELIVERIES];
    uint8_t rel[GW_MAX_DELIVERIES];
    size_t n, nrel = 0, i;
    int reliable = m->intent == ITR_INTENT_RELIABLE;
    uint64_t now = m->recv_ns; /* read once per receive batch by the driver */

    if (!p)
        return ITR_OK; /* cannot happen: peer_open precedes messages */
    peer_resolve(w, p);
    if (!p->shard)
        return reliable ? ITR_ERR_WOULDBLOCK : ITR_OK; /* being disconnected */
    gw_shard_ctr *c = p->ctr;

    n = gw_router_match(w->snap->router, p->shard, p->key, m->topic, m->topic_len, rs, NULL);
    if (n == 0) {
        /* No route: dropping it is the configured policy; acknowledge so the sender moves on. */
        ctr_add(&c->unrouted, 1);
        if (reliable)
            itr_endpoint_ack(w->ep, m->peer, m->seq, now);
        return ITR_OK;
    }

    /* What the reservation is charged: gw_msg_cost looks only at the lengths (the rest stays
     * unset: Realtime-only messages, the common case, never reserve). */
    gw_msg probe;
    probe.topic_len = (uint16_t)m->topic_len;
    probe.body_len = (uint32_t)m->body_len;

    for (i = 0; i < n; i++) {
        rel[i] = (uint8_t)gw_route_sink_reliable(rs[i], (int)m->intent);
        if (!rel[i])
            continue;
        if (gw_sinkset_reserve(w->sinks, gw_route_sink_index(rs[i]), &probe) != ITR_OK) {
            /* A Reliable sink is full: refuse the message; its sender retransmits later. */
            while (i-- > 0)
                if (rel[i])
                    gw_sinkset_unreserve(w->sinks, gw_route_sink_index(rs[i]), &probe);
            if (reliable) {
                ctr_add(&c->deferred, 1);
                return ITR_ERR_WOULDBLOCK;
            }
            ctr_add(&c->dropped, 1);
            return ITR_OK;
        }
        nrel++;
    }

    size_t size = sizeof(gw_mslot) + n * sizeof(gw_dwrap) + m->topic_len + m->body_len;
    gw_mslot *slot = gw_mpool_alloc(&w->pool, size);
    if (!slot) {
        for (i = 0; i < n; i++)
            if (rel[i])
                gw_sinkset_unreserve(w->sinks, gw_route_sink_index(rs[i]), &probe);
        if (reliable) {
            ctr_add(&c->deferred, 1);
            return ITR_ERR_WOULDBLOCK;
        }
        ctr_add(&c->dropped, 1);
        return ITR_OK;
    }
    uint8_t *data = (uint8_t *)&slot->d[n];
    memcpy(data, m->topic, m->topic_len);
    memcpy(data + m->topic_len, m->body, m->body_len);

    gw_msg *msg = &slot->msg;
    msg->recv_wall_ns = now + w->wall_offset;
    msg->recv_mono_ns = now;
    msg->shard = p->shard;
    msg->shard_name = gw_shard_id(p->shard);
    msg->shard_name_len = (uint32_t)gw_shard_id_len(p->shard);
    itr_hex_encode(msg->peer_hex, p->key, ITR_KEY_LEN); /* ~20 ns; 65 B per session saved */
    msg->seq = m->seq;
    msg->intent = (uint8_t)m->intent;
    msg->priority = m->priority;
    msg->topic_len = (uint16_t)m->topic_len;
    msg->body_len = (uint32_t)m->body_len;
    msg->peer_hash = p->key_hash;
    msg->topic = (const char *)data;
    msg->body = data + m->topic_len;

    slot->snap = w->snap;
    w->snap_slots++; /* borrows the worker's reference: no atomic per message */
    slot->ctr = c;
    slot->peer = m->peer;
    slot->size = (uint32_t)size;
    slot->pending = (uint16_t)n;
    slot->ndeliv = (uint8_t)n;
    slot->failed = 0;
    /* A Reliable message none of whose sinks hold it reliably is acknowledged on receipt. */
    slot->ack = (uint8_t)(reliable && nrel > 0);
    if (reliable && nrel == 0)
        itr_endpoint_ack(w->ep, m->peer, m->seq, now);
    w->inflight++;
    atomic_store_explicit(&w->pool_in_use, w->pool.in_use, memory_order_relaxed);

    ctr_add(&c->messages[m->intent], 1);
    ctr_add(&c->bytes[m->intent], m->body_len);

    for (i = 0; i < n; i++) {
        gw_dwrap *dw = &slot->d[i];
        memset(&dw->d, 0, sizeof(dw->d));
        dw->d.msg = msg;
        dw->d.rs = rs[i];
        dw->d.reliable = rel[i];
        dw->slot = slot;
        gw_sinkset_stage(w->sinks, w->index, gw_route_sink_index(rs[i]), &dw->d);
    }
    w->staged = 1;
    return ITR_OK;
}

/* Wall clock = monotonic + this offset, re-read every WALL_REFRESH_NS of monotonic time:
 * no clock read per message or per batch. A wall clock step (NTP) shows up within that. */
#define WALL_REFRESH_NS 10000000ull

static void wall_offset_refresh(gw_worker *w)
{
    uint64_t mono = itr_now_ns();
    w->wall_offset = itr_wall_ns() - mono;
    w->wall_read_ns = mono;
}

static void on_batch(void *arg, uint64_t now)
{
    gw_worker *w = arg;
    if (now - w->wall_read_ns >= WALL_REFRESH_NS)
        wall_offset_refresh(w);
    commit_paced(w, now);
    set_wake_slack(w);
}

/* ---- sessions ---- */

static int on_check_peer(void *user, const uint8_t key[ITR_KEY_LEN], const itr_addr *from)
{
    gw_worker *w = user;
    (void)from;
    snapshot_refresh(w, itr_now_ns());
    return gw_snapshot_admits(w->snap, key, NULL) ? 0 : -1;
}

static void on_peer_open(void *user, const itr_peer_info *info)
{
    gw_worker *w = user;
    gw_peer *p = calloc(1, sizeof(*p));
    char addr[64];

    if (p)
        p->id = info->id;
    if (!p || peer_table_insert(w, p) != ITR_OK) {
        free(p);
        GW_LOG(GW_LOG_ERROR, "session_refused", GW_F_STR("reason", "out of memory"));
        itr_endpoint_close_peer(w->ep, info->id, itr_now_ns());
        return;
    }
    memcpy(p->key, info->static_key, ITR_KEY_LEN);
    char hex[2 * ITR_KEY_LEN + 1];
    itr_hex_encode(hex, p->key, ITR_KEY_LEN);
    p->key_hash = (uint32_t)crc32(0, (const Bytef *)hex, 2 * ITR_KEY_LEN);
    peer_resolve(w, p);
    itr_addr_format(&info->addr, addr, sizeof(addr));
    GW_LOG(GW_LOG_DEBUG, "session_open", GW_F_STR("peer", hex), GW_F_STR("addr", addr),
           GW_F_STR("shard", p->shard ? gw_shard_id(p->shard) : ""), GW_F_U64("worker", w->index));
}

static void on_peer_close(void *user, itr_peer_id id, itr_close_reason why)
{
    gw_worker *w = user;
    gw_peer *p = peer_get(w, id);
    if (!p)
        return;
    char hex[2 * ITR_KEY_LEN + 1];
    itr_hex_encode(hex, p->key, ITR_KEY_LEN);
    GW_LOG(GW_LOG_DEBUG, "session_close", GW_F_STR("peer", hex),
           GW_F_STR("reason", itr_close_reason_name(why)));
    gw_publish_on_close(w, p);
    if (p->ctr)
        ctr_sub(&p->ctr->peers, 1);
    peer_table_remove(w, id);
    free(p);
}

static void on_acked(void *user, itr_peer_id id, uint32_t seq)
{
    gw_worker *w = user;
    gw_peer *p = peer_get(w, id);
    if (p)
        gw_publish_on_acked(w, p, seq);
}

static void on_writable(void *user, itr_peer_id id)
{
    gw_worker *w = user;
    gw_peer *p = peer_get(w, id);
    if (p)
        gw_publish_on_writable(w, p);
}

static void on_security(void *user, itr_security_event ev, const itr_addr *from, const uint8_t *key)
{
    gw_worker *w = user;
    char addr[64] = "", hex[2 * ITR_KEY_LEN + 1] = "", rkey[160];

    atomic_fetch_add_explicit(&w->g->sec_events[ev], 1, memory_order_relaxed);
    if (from)
        itr_addr_format(from, addr, sizeof(addr));
    if (key)
        itr_hex_encode(hex, key, ITR_KEY_LEN);
    /* Once per (event, peer or source address) per interval, never per packet. */
    int n = snprintf(rkey, sizeof(rkey), "%d/%s", (int)ev, key ? hex : addr);
    const gw_log_field f[] = {
        GW_F_STR("kind", itr_security_event_name(ev)),
        GW_F_STR("peer", hex),
        GW_F_STR("addr", addr),
        GW_F_U64("worker", w->index),
    };
    gw_lograte_emit(w->g->secrate, rkey, (size_t)n, itr_now_ns(), GW_LOG_WARN, "security", f,
                    sizeof(f) / sizeof(f[0]));
}

/* ---- mailbox ---- */

void gw_worker_post(gw_worker *w, gw_cmd *c)
{
    c->next = NULL;
    pthread_mutex_lock(&w->mbox_mu);
    if (w->mbox_tail)
        w->mbox_tail->next = c;
    else
        w->mbox_head = c;
    w->mbox_tail = c;
    pthread_mutex_unlock(&w->mbox_mu);
    itr_loop_wake(w->loop);
}

static void reply_done(gw_reply *r)
{
    pthread_mutex_lock(&r->mu);
    r->remaining--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void cmd_peers(gw_worker *w, gw_cmd *c)
{
    gw_peer_row *rows;
    uint64_t cursor = 0;
    size_t got = 0;

    rows = calloc(w->npeers ? w->npeers : 1, sizeof(*rows));
    if (rows) {
        itr_peer_info info;
        while (got < w->npeers && itr_endpoint_peers(w->ep, &cursor, &info, 1) == 1) {
            gw_peer *p = peer_get(w, info.id);
            rows[got].info = info;
            if (p) {
                peer_resolve(w, p);
                snprintf(rows[got].shard, sizeof(rows[got].shard), "%s",
                         p->shard ? gw_shard_id(p->shard) : "");
            }
            got++;
        }
    } else {
        c->reply->status = ITR_ERR_NOMEM;
    }
    pthread_mutex_lock(&c->reply->mu);
    c->reply->rows[w->index] = rows;
    c->reply->nrows[w->index] = got;
    pthread_mutex_unlock(&c->reply->mu);
}

static void cmd_disconnect(gw_worker *w, gw_cmd *c, uint64_t now)
{
    itr_peer_id id;
    if (itr_endpoint_find_peer(w->ep, c->key, &id) == ITR_OK &&
        itr_endpoint_close_peer(w->ep, id, now) == ITR_OK) {
        pthread_mutex_lock(&c->reply->mu);
        c->reply->status = ITR_OK;
        pthread_mutex_unlock(&c->reply->mu);
    }
}

static void close_all(gw_worker *w, uint64_t now)
{
    itr_peer_id ids[256];
    size_t n;
    do {
        n = 0;
        for (size_t i = 0; i < w->peers_cap && n < 256; i++)
            if (w->peers[i])
                ids[n++] = w->peers[i]->id;
        for (size_t i = 0; i < n; i++)
            itr_endpoint_close_peer(w->ep, ids[i], now);
    } while (n == 256);
}

static void drain_mailbox(gw_worker *w, uint64_t now)
{
    gw_cmd *c;
    pthread_mutex_lock(&w->mbox_mu);
    c = w->mbox_head;
    w->mbox_head = w->mbox_tail = NULL;
    pthread_mutex_unlock(&w->mbox_mu);

    while (c) {
        gw_cmd *next = c->next;
        switch (c->kind) {
        case GW_CMD_PEERS:
            cmd_peers(w, c);
            break;
        case GW_CMD_DISCONNECT:
            cmd_disconnect(w, c, now);
            break;
        case GW_CMD_PUBLISH:
            gw_publish_run(w, c->op);
            break;
        case GW_CMD_PAUSE:
            commit_now(w, now); /* draining: nothing may wait for the pacing timer */
            w->paused = 1;
            itr_driver_pause(w->drv, 1);
            break;
        case GW_CMD_CLOSE_ALL:
            close_all(w, now);
            break;
        case GW_CMD_STOP:
            commit_now(w, now);
            itr_loop_stop(w->loop);
            break;
        }
        if (c->reply)
            reply_done(c->reply);
        else
            free(c);
        c = next;
    }
}

static void on_wake(void *arg)
{
    gw_worker *w = arg;
    uint64_t now = itr_now_ns();

    snapshot_refresh(w, now);
    drain_mailbox(w, now);
    w->poll_now = now;
    gw_sinkset_poll(w->sinks, w->index);
    commit_paced(w, now);
    /* Completions produced ACKs (and publishes produced DATA): send them now. */
    itr_driver_kick(w->drv);
    set_wake_slack(w);
}

static void on_pub_timer(void *arg, uint64_t now)
{
    gw_worker *w = arg;
    gw_publish_expire(w, now);
    if (w->pub_waits)
        itr_loop_timer_set(w->loop, &w->pub_timer, now + 100000000ull);
    itr_driver_kick(w->drv);
}

/* ---- lifecycle ---- */

int gw_worker_init(gw_worker *w, gw_gateway *g, unsigned index, char *err, size_t errlen)
{
    const gw_config *cfg = g->cfg;
    itr_settings s;
    itr_callbacks cb;
    int rc;

    memset(w, 0, sizeof(*w));
    w->g = g;
    w->index = index;
    /* Before anything can fail: gw_worker_destroy cancels it. */
    itr_timer_init(&w->commit_timer, on_commit_timer, w);
    for (size_t i = 0; i < GW_MAX_LISTEN; i++)
        w->fds[i] = -1;
    pthread_mutex_init(&w->mbox_mu, NULL);
    w->ctrs = calloc(GW_MAX_SHARD_COUNTERS, sizeof(*w->ctrs));
    if (!w->ctrs) {
        snprintf(err, errlen, "worker %u: out of memory", index);
        return ITR_ERR_NOMEM;
    }
    rc = gw_mpool_init(&w->pool, gw_config_message_pool_bytes(cfg));
    if (rc != ITR_OK) {
        snprintf(err, errlen, "limits.message_pool_bytes: cannot reserve %llu bytes",
                 (unsigned long long)gw_config_message_pool_bytes(cfg));
        return rc;
    }
    rc = itr_loop_new(&w->loop);
    if (rc != ITR_OK) {
        snprintf(err, errlen, "worker %u: event loop: %s", index, strerror(errno));
        return rc;
    }

    const gw_transport_config *tc = gw_config_transport(cfg);
    s = tc->settings;
    memcpy(s.static_private, g->priv, ITR_KEY_LEN);
    s.accept_handshakes = 1;
    s.conn_id_modulus = g->nworkers;
    s.conn_id_residue = index;
    memset(&cb, 0, sizeof(cb));
    cb.check_peer = on_check_peer;
    cb.peer_open = on_peer_open;
    cb.peer_close = on_peer_close;
    cb.message = on_message;
    cb.acked = on_acked;
    cb.writable = on_writable;
    cb.security = on_security;
    rc = itr_endpoint_new(&w->ep, &s, &cb, w, itr_now_ns());
    itr_wipe(s.static_private, sizeof(s.static_private));
    if (rc != ITR_OK) {
        snprintf(err, errlen, "transport: %s", itr_strerror(rc));
        return rc;
    }
    rc = itr_driver_new(&w->drv, w->loop, w->ep, tc->batch_size);
    if (rc != ITR_OK) {
        snprintf(err, errlen, "transport driver: %s", itr_strerror(rc));
        return rc;
    }
    itr_driver_set_batch_hook(w->drv, on_batch, w);
    rc = itr_driver_set_rx_coalesce(w->drv, tc->receive_coalesce_us);
    if (rc != ITR_OK) {
        snprintf(err, errlen, "transport.receive_coalesce_us: %s", itr_strerror(rc));
        return rc;
    }
    /* Set before the sockets are added, so they get UDP_GRO as they come. */
    int gro = tc->udp_gro == GW_GRO_ON || (tc->udp_gro == GW_GRO_AUTO && g->nworkers == 1);
    uint32_t offload = (tc->udp_gso ? ITR_DRIVER_GSO : 0) | (gro ? ITR_DRIVER_GRO : 0);
    rc = itr_driver_set_offload(w->drv, offload);
    if (rc != ITR_OK) {
        snprintf(err, errlen, "transport: UDP offloads: %s", itr_strerror(rc));
        return rc;
    }

    for (size_t i = 0; i < gw_config_listen_count(cfg) && i < GW_MAX_LISTEN; i++) {
        itr_addr a = *gw_config_listen_addr(cfg, i);
        itr_udp_options uo = {
            .rcvbuf_bytes = tc->socket_receive_buffer_bytes,
            .sndbuf_bytes = tc->socket_send_buffer_bytes,
            .reuseport = g->nworkers > 1,
            .v6only = 1,
        };
        uint32_t local;
        /* Workers after the first bind the port the first one got (port 0 in tests). */
        if (index > 0 && g->workers[0].nfds > i) {
            itr_addr bound;
            if (itr_udp_local_addr(g->workers[0].fds[i], &bound) == ITR_OK)
                a = bound;
        }
        if (itr_udp_open(&a, &uo, &w->fds[i]) != ITR_OK) {
            snprintf(err, errlen, "listen[%zu]: cannot bind %s: %s", i, gw_config_listen(cfg, i),
                     strerror(errno));
            return ITR_ERR_IO;
        }
        w->nfds++;
        rc = itr_driver_add_socket(w->drv, w->fds[i], &local);
        if (rc == ITR_ERR_IO && (offload & ITR_DRIVER_GRO) && tc->udp_gro == GW_GRO_AUTO) {
            /* A kernel without UDP_GRO (before 5.0): auto means without it. */
            offload &= ~ITR_DRIVER_GRO;
            rc = itr_driver_set_offload(w->drv, offload);
            if (rc == ITR_OK)
                rc = itr_driver_add_socket(w->drv, w->fds[i], &local);
        }
        if (rc != ITR_OK) {
            snprintf(err, errlen, "listen[%zu]: %s%s", i, itr_strerror(rc),
                     rc == ITR_ERR_IO && (offload & ITR_DRIVER_GRO)
                         ? " (UDP_GRO refused: set transport.udp_gro to \"auto\" or \"off\")"
                         : "");
            return rc;
        }
    }
    itr_timer_init(&w->pub_timer, on_pub_timer, w);
    itr_loop_on_wake(w->loop, on_wake, w);
    return ITR_OK;
}

static void *worker_main(void *arg)
{
    gw_worker *w = arg;
    atomic_store(&w->running, 1);
    if (itr_loop_run(w->loop) != ITR_OK)
        GW_LOG(GW_LOG_ERROR, "worker_failed", GW_F_U64("worker", w->index),
               GW_F_STR("error", strerror(errno)));
    atomic_store(&w->running, 0);
    return NULL;
}

int gw_worker_start(gw_worker *w)
{
    gw_gateway *g = w->g;
    w->snap = gw_gateway_current_snapshot(g);
    w->sinks = w->snap->sinks;
    wall_offset_refresh(w);
    w->poll_now = itr_now_ns();
    int rc = gw_sinkset_attach(w->sinks, w->index, w->loop, on_complete, w);
    if (rc != ITR_OK)
        return rc;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return ITR_ERR_IO;
    w->started = 1;
    return ITR_OK;
}

void gw_worker_join(gw_worker *w)
{
    if (!w->started)
        return;
    gw_cmd *c = calloc(1, sizeof(*c));
    if (c) {
        c->kind = GW_CMD_STOP;
        gw_worker_post(w, c);
    } else {
        itr_loop_stop(w->loop);
    }
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void gw_worker_destroy(gw_worker *w)
{
    if (w->sinks)
        gw_sinkset_detach(w->sinks, w->index);
    if (w->loop)
        itr_loop_timer_cancel(w->loop, &w->commit_timer);
    if (w->drv)
        itr_driver_free(w->drv);
    if (w->ep)
        itr_endpoint_free(w->ep); /* peer_close callbacks free the gw_peers */
    for (size_t i = 0; i < GW_MAX_LISTEN; i++)
        if (w->fds[i] >= 0)
            close(w->fds[i]);
    if (w->loop)
        itr_loop_free(w->loop);
    /* Messages still in the pool were never acknowledged; their senders retransmit. */
    gw_mpool_destroy(&w->pool);
    if (w->snap)
        gw_snapshot_unref(w->snap);
    free(w->peers);
    free(w->ctrs);
    pthread_mutex_destroy(&w->mbox_mu);
    memset(w, 0, sizeof(*w));
}
