/* itr_endpoint.c: the IO-free protocol core (intentra/endpoint.h): settings, the packet
 * dispatcher and the transport receive path (PROTOCOL.md §2, §6), sessions and their timers
 * (§5, §8), the transmit ring and the public API. Handshakes are in itr_handshake.c, the
 * Reliable stream in itr_reliable.c.
 *
 * Re-entrancy: callbacks may call back into the endpoint (send, ack, close_peer, connect).
 * A session closed meanwhile is only marked (ITR_SF_CLOSED) and parked on a zombie list; the
 * memory is freed when the outermost API call returns, so code that made a callback checks
 * the flag and never touches freed memory.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <intentra/keys.h>

#include "itr_alloc.h"
#include "itr_envelope.h"
#include "itr_session.h"

#define NS_PER_MS 1000000ull
#define NS_PER_S  1000000000ull

/* Plaintext lengths of the fixed-size transport frames (PROTOCOL.md §6). */
#define KEEPALIVE_PT_LEN 1
#define CLOSE_PT_LEN     1
#define DATA_MIN_PT_LEN  6
#define KA_KNOWN_FLAGS   ITR_KA_ALL

void itr_settings_default(itr_settings *s)
{
    static const uint8_t prologue[] = ITR_PROLOGUE;
    memset(s, 0, sizeof(*s));
    s->accept_handshakes = 1;
    s->cookie_mode = ITR_COOKIE_UNDER_LOAD;
    s->cookie_load_threshold = 50;
    s->cookie_rotate_ns = 120 * NS_PER_S;
    s->max_handshakes_in_flight = 100;
    s->max_handshakes_per_ip = 5;
    s->handshake_timeout_ns = 5 * NS_PER_S;
    s->handshake_retry_ns = 250 * NS_PER_MS;
    s->idle_timeout_ns = 60 * NS_PER_S;
    s->keepalive_ns = 10 * NS_PER_S;
    s->rekey_after_ns = 120 * NS_PER_S;
    s->reject_after_ns = 180 * NS_PER_S;
    s->old_keys_grace_ns = 10 * NS_PER_S;
    s->rate_limit_pps = 10000;
    s->rate_limit_burst = 500;
    s->strike_limit = 10;
    s->strike_window_ns = 5 * NS_PER_S;
    s->max_peers = 65536;
    s->reorder_max_bytes = 64 * 1024;
    s->reorder_pool_slots = 4096;
    s->tx_pool_slots = 4096;
    s->tx_ring_slots = 1024;
    s->max_packet = ITR_MAX_PACKET;
    s->ack_delay_ns = 5 * NS_PER_MS;
    s->rto_min_ns = 20 * NS_PER_MS;
    s->rto_max_ns = 2 * NS_PER_S;
    s->rto_initial_ns = 200 * NS_PER_MS;
    s->aead_cache_entries = 1024;
    s->conn_id_modulus = 1;
    s->conn_id_residue = 0;
    s->prologue = prologue;
    s->prologue_len = sizeof(prologue) - 1;
}

/* ---- small helpers shared with the other modules ---- */

int itr_ep_drop(itr_endpoint *ep, itr_session *s, itr_drop_reason r)
{
    ITR_STAT_ADD(ep, dropped[r], 1);
    if (s)
        s->drops++;
    return -(1 + (int)r);
}

void itr_ep_security(itr_endpoint *ep, itr_security_event ev, const itr_addr *from,
                     const uint8_t *key)
{
    if (ep->cb.security)
        ep->cb.security(ep->user, ev, from, key);
}

void itr_ep_random(itr_endpoint *ep, void *buf, size_t len)
{
    if (ep->rng)
        ep->rng(ep->rng_arg, buf, len);
    else
        itr_random(buf, len);
}

void itr_ep_addr_ip16(const itr_addr *a, uint8_t ip[16])
{
    memset(ip, 0, 16);
    if (a->u.sa.sa_family == AF_INET) {
        ip[10] = 0xff;
        ip[11] = 0xff;
        memcpy(ip + 12, &a->u.in.sin_addr, 4);
    } else if (a->u.sa.sa_family == AF_INET6) {
        memcpy(ip, &a->u.in6.sin6_addr, 16);
    }
}

static uint16_t addr_port(const itr_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in.sin_port;
    if (a->u.sa.sa_family == AF_INET6)
        return a->u.in6.sin6_port;
    return 0;
}

int itr_ep_addr_equal(const itr_addr *a, const itr_addr *b)
{
    uint8_t ia[16], ib[16];
    if (a->u.sa.sa_family != b->u.sa.sa_family || addr_port(a) != addr_port(b))
        return 0;
    itr_ep_addr_ip16(a, ia);
    itr_ep_addr_ip16(b, ib);
    return memcmp(ia, ib, 16) == 0;
}

void itr_ep_header(uint8_t *p, uint8_t type, uint8_t intent, uint8_t priority, uint16_t payload_len,
                   uint32_t conn_id, uint32_t seq, uint32_t ack)
{
    itr_header h;
    memset(&h, 0, sizeof(h));
    h.version = ITR_VERSION;
    h.type = type;
    h.intent = intent;
    h.priority = priority;
    h.payload_len = payload_len;
    h.conn_id = conn_id;
    h.seq = seq;
    h.ack = ack;
    itr_header_write(p, &h);
}

uint64_t itr_ep_key_hash(const itr_endpoint *ep, const uint8_t key[ITR_KEY_LEN])
{
    uint8_t out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, key, ITR_KEY_LEN, ep->keyhash_key);
    memcpy(&h, out, sizeof(h));
    return h;
}

itr_peer_id itr_ep_peer_id(const itr_session *s)
{
    return ((uint64_t)s->gen << 32) | s->slot;
}

static itr_session *session_get(const itr_endpoint *ep, itr_peer_id id)
{
    uint32_t slot = (uint32_t)id, gen = (uint32_t)(id >> 32);
    if (gen == 0 || slot >= ep->set.max_peers)
        return NULL;
    itr_session *s = ep->peers[slot].s;
    if (!s || ep->peers[slot].gen != gen || (s->flags & ITR_SF_CLOSED))
        return NULL;
    return s;
}

uint32_t itr_ep_new_conn_id(itr_endpoint *ep)
{
    uint64_t m = ep->set.conn_id_modulus;
    /* Bounded: with a huge modulus few ids exist; the caller then fails like a full table. */
    for (int attempt = 0; attempt < 64; attempt++) {
        uint32_t r;
        itr_ep_random(ep, &r, sizeof(r));
        uint64_t id = (r / m) * m + ep->set.conn_id_residue;
        if (id == 0 || id > UINT32_MAX || itr_ctab_find(&ep->conns, id))
            continue;
        return (uint32_t)id;
    }
    return 0;
}

/* ---- call nesting and deferred frees ---- */

static void ep_enter(itr_endpoint *ep)
{
    ep->depth++;
}

static void ep_leave(itr_endpoint *ep)
{
    if (ep->depth == 1) {
        if (ep->notify_pool) {
            ep->notify_pool = 0;
            itr_rel_notify_pool(ep);
        }
        while (ep->zombies) {
            itr_session *s = ep->zombies;
            ep->zombies = s->wait_next;
            sodium_memzero(s, sizeof(*s));
            itr_free(s);
            ep->session_bytes -= sizeof(*s);
        }
    }
    ep->depth--;
}

/* ---- transmit ring ---- */

/* The slot `off` places after the head (off <= ring_cap): a compare, not a division per
 * packet. */
static inline uint32_t ring_index(const itr_endpoint *ep, uint32_t off)
{
    uint32_t i = ep->ring_head + off;
    return i >= ep->ring_cap ? i - ep->ring_cap : i;
}

uint8_t *itr_ep_tx_reserve(itr_endpoint *ep)
{
    if (ep->ring_count == ep->ring_cap)
        return NULL;
    uint32_t idx = ring_index(ep, ep->ring_count);
    return ep->ring_mem + (size_t)idx * ep->set.max_packet;
}

void itr_ep_tx_commit(itr_endpoint *ep, const itr_addr *to, size_t len)
{
    uint32_t idx = ring_index(ep, ep->ring_count);
    ep->ring_addr[idx] = *to;
    ep->ring_len[idx] = (uint32_t)len;
    ep->ring_count++;
    ITR_STAT_ADD(ep, packets_sent, 1);
    ITR_STAT_ADD(ep, bytes_sent, len);
}

int itr_ep_tx_copy(itr_endpoint *ep, const itr_addr *to, const uint8_t *pkt, size_t len)
{
    uint8_t *out = itr_ep_tx_reserve(ep);
    if (!out) {
        itr_ep_drop(ep, NULL, ITR_DROP_TX_RING_FULL);
        return ITR_ERR_WOULDBLOCK;
    }
    memcpy(out, pkt, len);
    itr_ep_tx_commit(ep, to, len);
    return ITR_OK;
}

size_t itr_endpoint_tx_peek(itr_endpoint *ep, itr_datagram *out, size_t cap)
{
    size_t n = cap < ep->ring_count ? cap : ep->ring_count;
    for (size_t i = 0; i < n; i++) {
        uint32_t idx = ring_index(ep, (uint32_t)i);
        out[i].addr = ep->ring_addr[idx];
        out[i].data = ep->ring_mem + (size_t)idx * ep->set.max_packet;
        out[i].len = ep->ring_len[idx];
    }
    return n;
}

void itr_endpoint_tx_consume(itr_endpoint *ep, size_t n)
{
    if (n > ep->ring_count)
        n = ep->ring_count;
    ep->ring_head = ring_index(ep, (uint32_t)n);
    ep->ring_count -= (uint32_t)n;
}

size_t itr_endpoint_tx_pending(const itr_endpoint *ep)
{
    return ep->ring_count;
}

/* ---- sealing ---- */

int itr_ep_counter_exhausted(itr_endpoint *ep, itr_session *s, const itr_keypair *kp, uint64_t now)
{
    if (kp->send_n < ITR_REJECT_AFTER_MESSAGES)
        return 0;
    /* Never reuse a nonce: refuse, and make sure new keys are on their way. */
    if (kp == s->cur && now < s->rekey_at_ns) {
        s->rekey_at_ns = now;
        itr_ep_session_timer_lower(ep, s, now);
    }
    return 1;
}

int itr_ep_seal_send(itr_endpoint *ep, itr_session *s, itr_keypair *kp, uint8_t type,
                     uint8_t intent, uint8_t priority, const uint8_t *pt, size_t ptlen,
                     int internal, uint64_t now)
{
    if (itr_ep_counter_exhausted(ep, s, kp, now))
        return ITR_ERR_CLOSED;
    uint8_t *out = itr_ep_tx_reserve(ep);
    if (!out) {
        if (internal)
            itr_ep_drop(ep, s, ITR_DROP_TX_RING_FULL);
        return ITR_ERR_WOULDBLOCK;
    }
    uint64_t n = kp->send_n++;
    itr_ep_header(out, type, intent, priority, (uint16_t)(ptlen + ITR_TAG_LEN), kp->remote_id,
                  (uint32_t)n, s->rcv_ack);
    /* pt may already sit at out + 16 (sealed in place). */
    itr_aead_seal((itr_suite)kp->suite, kp->send_key, itr_kp_state(ep, kp, 1), n, out,
                  ITR_HEADER_LEN, pt, ptlen, out + ITR_HEADER_LEN);
    itr_ep_tx_commit(ep, &s->addr, ptlen + ITR_HEADER_LEN + ITR_TAG_LEN);
    s->last_sent_ns = now;
    if (kp->send_n >= ITR_REKEY_AFTER_MESSAGES && kp == s->cur && now < s->rekey_at_ns) {
        /* Counter nearly used up: rekey (initiator) or ask for one (responder) now. */
        s->rekey_at_ns = now;
        itr_ep_session_timer_lower(ep, s, now);
    }
    return ITR_OK;
}

int itr_ep_send_keepalive(itr_endpoint *ep, itr_session *s, uint8_t flags, uint64_t now)
{
    if (!s->cur)
        return ITR_ERR_NOT_READY;
    return itr_ep_seal_send(ep, s, s->cur, ITR_PT_KEEPALIVE, 0, 0, &flags, KEEPALIVE_PT_LEN, 1,
                            now);
}

/* ---- sessions ---- */

void itr_ep_want_ack(itr_endpoint *ep, itr_session *s)
{
    s->flags |= ITR_SF_ACK_NOW;
    if (!(s->flags & ITR_SF_IN_FLUSH)) {
        s->flags |= ITR_SF_IN_FLUSH;
        s->flush_next = ep->flush_head;
        ep->flush_head = s;
    }
}

itr_session *itr_ep_session_new(itr_endpoint *ep, const uint8_t static_key[ITR_KEY_LEN],
                                const itr_addr *addr, int initiator, uint64_t now, int *err)
{
    if (ep->sessions >= ep->set.max_peers || ep->peer_free_n == 0) {
        *err = ITR_ERR_LIMIT;
        return NULL;
    }
    itr_session *s = itr_calloc(1, sizeof(*s));
    if (!s) {
        *err = ITR_ERR_NOMEM;
        return NULL;
    }
    memcpy(s->static_key, static_key, ITR_KEY_LEN);
    s->key_hash = itr_ep_key_hash(ep, static_key);
    if (itr_ctab_insert(&ep->keys, s->key_hash, s) != ITR_OK) {
        itr_free(s);
        *err = ITR_ERR_NOMEM;
        return NULL;
    }
    ep->session_bytes += sizeof(*s);
    uint32_t slot = ep->peer_free[--ep->peer_free_n];
    ep->peers[slot].s = s;
    ep->peers[slot].gen++;
    s->slot = slot;
    s->gen = ep->peers[slot].gen;
    s->flags = initiator ? ITR_SF_INITIATOR : 0;
    s->addr = *addr;
    s->opened_ns = s->last_recv_ns = s->last_sent_ns = now;
    itr_timed_init(&s->timer, ITR_REF_SESSION);
    itr_rel_init(ep, s);
    ep->sessions++;
    ITR_STAT_ADD(ep, sessions_active, 1);
    return s;
}

static void list_unlink(itr_session **head, itr_session *s, int flush)
{
    for (itr_session **p = head; *p; p = flush ? &(*p)->flush_next : &(*p)->wait_next) {
        if (*p == s) {
            *p = flush ? s->flush_next : s->wait_next;
            return;
        }
    }
}

void itr_ep_session_close(itr_endpoint *ep, itr_session *s, itr_close_reason why, int send_close,
                          uint64_t now)
{
    if (s->flags & ITR_SF_CLOSED)
        return;
    if (send_close && s->cur && (s->flags & ITR_SF_ESTABLISHED)) {
        uint8_t reason = (uint8_t)why;
        itr_ep_seal_send(ep, s, s->cur, ITR_PT_CLOSE, 0, 0, &reason, CLOSE_PT_LEN, 1, now);
    }
    s->flags |= ITR_SF_CLOSED;
    itr_ctab_remove(&ep->keys, s->key_hash, s);
    itr_timerq_remove(&ep->timers, &s->timer);
    if (s->flags & ITR_SF_IN_FLUSH)
        list_unlink(&ep->flush_head, s, 1);
    if (s->flags & ITR_SF_WANT_POOL)
        list_unlink(&ep->wait_head, s, 0);
    s->flags &= ~(uint32_t)(ITR_SF_IN_FLUSH | ITR_SF_WANT_POOL | ITR_SF_WANT_WINDOW);
    if (s->hs)
        itr_hs_free(ep, s->hs);
    itr_kp_free(ep, s->cur);
    itr_kp_free(ep, s->prev);
    itr_kp_free(ep, s->next);
    s->cur = s->prev = s->next = NULL;
    itr_rel_release(ep, s);
    ep->peers[s->slot].s = NULL;
    /* A slot whose generation would wrap is retired, so an id is never reused. */
    if (ep->peers[s->slot].gen != UINT32_MAX)
        ep->peer_free[ep->peer_free_n++] = s->slot;
    ep->sessions--;
    ITR_STAT_SUB(ep, sessions_active, 1);
    ITR_STAT_ADD(ep, closes[why], 1);
    s->wait_next = ep->zombies;
    ep->zombies = s;
    /* Responder sessions exist for the application only once opened; initiator sessions
     * from connect() on, so a failed connect is reported too. */
    if (!(s->flags & ITR_SF_SILENT) &&
        ((s->flags & ITR_SF_ESTABLISHED) || (s->flags & ITR_SF_INITIATOR)) && ep->cb.peer_close)
        ep->cb.peer_close(ep->user, itr_ep_peer_id(s), why);
}

static void fill_info(const itr_endpoint *ep, const itr_session *s, itr_peer_info *out)
{
    memset(out, 0, sizeof(*out));
    out->id = itr_ep_peer_id(s);
    memcpy(out->static_key, s->static_key, ITR_KEY_LEN);
    out->addr = s->addr;
    out->initiator = (s->flags & ITR_SF_INITIATOR) != 0;
    out->suite = (itr_suite)s->suite;
    out->session_id = s->session_id;
    out->opened_ns = s->opened_ns;
    out->last_recv_ns = s->last_recv_ns;
    out->last_sent_ns = s->last_sent_ns;
    out->rtt_ns = s->rtt.srtt;
    out->msgs_in = s->msgs_in;
    out->msgs_out = s->msgs_out;
    out->bytes_in = s->bytes_in;
    out->bytes_out = s->bytes_out;
    out->drops = s->drops;
    out->retransmits = s->retransmits;
    out->rekeys = s->rekeys;
    out->unacked_out = s->tx_count;
    out->unacked_in = itr_rel_unacked_in(s);
    out->reorder_bytes = s->reorder_bytes;
    (void)ep;
}

void itr_ep_session_open(itr_endpoint *ep, itr_session *s, uint64_t now)
{
    itr_peer_info info;
    s->flags |= ITR_SF_ESTABLISHED;
    s->opened_ns = now;
    s->last_recv_ns = now;
    itr_ep_session_schedule(ep, s, now);
    if (ep->cb.peer_open) {
        fill_info(ep, s, &info);
        ep->cb.peer_open(ep->user, &info);
    }
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t session_next_deadline(const itr_endpoint *ep, const itr_session *s)
{
    if ((s->flags & ITR_SF_CLOSED) || !(s->flags & ITR_SF_ESTABLISHED) || !s->cur)
        return UINT64_MAX;
    const itr_settings *c = &ep->set;
    uint64_t d = s->cur->created_ns + c->reject_after_ns;
    d = min_u64(d, s->last_recv_ns + c->idle_timeout_ns);
    d = min_u64(d, s->last_sent_ns + c->keepalive_ns);
    if (s->prev)
        d = min_u64(d, s->prev_expire_ns);
    if (!s->hs)
        d = min_u64(d, s->rekey_at_ns);
    return min_u64(d, itr_rel_next_deadline(s));
}

void itr_ep_session_schedule(itr_endpoint *ep, itr_session *s, uint64_t now)
{
    uint64_t d = session_next_deadline(ep, s);
    if (d == UINT64_MAX) {
        itr_timerq_remove(&ep->timers, &s->timer);
        return;
    }
    /* Work that was due but could not be done (ring full) is retried a little later, so
     * on_expiry always makes progress. */
    if (d <= now)
        d = now + ITR_RETRY_NS;
    itr_timerq_set(&ep->timers, &s->timer, d);
}

void itr_ep_session_timer_lower(itr_endpoint *ep, itr_session *s, uint64_t deadline)
{
    if (!(s->flags & ITR_SF_CLOSED))
        itr_timerq_lower(&ep->timers, &s->timer, deadline);
}

static void session_on_timer(itr_endpoint *ep, itr_session *s, uint64_t now)
{
    const itr_settings *c = &ep->set;
    if ((s->flags & ITR_SF_CLOSED) || !(s->flags & ITR_SF_ESTABLISHED) || !s->cur)
        return;
    if (now - s->cur->created_ns >= c->reject_after_ns) {
        /* No rekey succeeded in time: these keys must not be used any more (§8). */
        itr_ep_session_close(ep, s, ITR_CLOSE_KEY_EXPIRED, 0, now);
        return;
    }
    if (now - s->last_recv_ns >= c->idle_timeout_ns) {
        itr_ep_session_close(ep, s, ITR_CLOSE_IDLE, 0, now);
        return;
    }
    if (s->prev && now >= s->prev_expire_ns) {
        itr_kp_free(ep, s->prev);
        s->prev = NULL;
    }
    if (!s->hs && now >= s->rekey_at_ns) {
        if (s->flags & ITR_SF_INITIATOR) {
            if (itr_hs_initiate(ep, s, now) != ITR_OK)
                s->rekey_at_ns = now + c->handshake_retry_ns;
        } else {
            itr_ep_send_keepalive(ep, s, ITR_KA_REKEY_REQUEST, now);
            s->rekey_at_ns = now + ITR_REKEY_REQUEST_DELAY_NS;
        }
    }
    itr_rel_on_timer(ep, s, now);
    if (s->flags & ITR_SF_CLOSED)
        return;
    if (now - s->last_sent_ns >= c->keepalive_ns)
        itr_ep_send_keepalive(ep, s, 0, now);
    itr_ep_session_schedule(ep, s, now);
}

int itr_ep_strike(itr_endpoint *ep, itr_session *s, itr_drop_reason r, uint64_t now)
{
    int rc = itr_ep_drop(ep, s, r);
    ITR_STAT_ADD(ep, strike_events, 1);
    itr_ep_security(ep, ITR_SEC_STRIKE, &s->addr, s->static_key);
    if (!(s->flags & ITR_SF_CLOSED) &&
        itr_strikes_add(&s->strikes, ep->set.strike_limit, ep->set.strike_window_ns, now)) {
        itr_ep_security(ep, ITR_SEC_STRIKES_CLOSED, &s->addr, s->static_key);
        itr_ep_session_close(ep, s, ITR_CLOSE_STRIKES, 1, now);
    }
    return rc;
}

/* ---- receiving transport packets (PROTOCOL.md §6) ---- */

static int recv_data(itr_endpoint *ep, itr_session *s, const itr_header *h, const uint8_t *pt,
                     size_t ptlen, uint64_t now)
{
    const char *topic;
    const uint8_t *body;
    size_t topic_len, body_len;
    uint32_t mseq;

    if (ptlen < DATA_MIN_PT_LEN)
        return itr_ep_strike(ep, s, ITR_DROP_BAD_FRAME, now);
    if (itr_envelope_parse(pt + 4, ptlen - 4, &topic, &topic_len, &body, &body_len) != 0)
        return itr_ep_strike(ep, s, ITR_DROP_BAD_ENVELOPE, now);
    if (h->intent == ITR_INTENT_RELIABLE)
        return itr_rel_on_data(ep, s, h->priority, pt, ptlen, now);
    /* Realtime: at once, never buffered; the replay window already made it unique. */
    itr_get_u32(pt, &mseq);
    itr_message m = {
        .peer = itr_ep_peer_id(s),
        .intent = ITR_INTENT_REALTIME,
        .priority = h->priority,
        .seq = mseq,
        .topic = topic,
        .topic_len = topic_len,
        .body = body,
        .body_len = body_len,
        .recv_ns = now,
    };
    s->msgs_in++;
    s->bytes_in += body_len;
    ITR_STAT_ADD(ep, messages_delivered, 1);
    if (ep->cb.message)
        ep->cb.message(ep->user, &m);
    return ITR_OK;
}

static int recv_transport(itr_endpoint *ep, const itr_addr *from, const uint8_t *pkt, size_t len,
                          const itr_header *h, uint64_t now)
{
    const itr_settings *c = &ep->set;
    /* 1. A transport packet carries at least a tag. */
    if (len < ITR_HEADER_LEN + ITR_TAG_LEN)
        return itr_ep_drop(ep, NULL, ITR_DROP_TOO_SHORT);
    /* 2. One hash lookup names the keypair, before any cryptography. */
    const uint8_t *ref = itr_ctab_find(&ep->conns, h->conn_id);
    if (!ref || *ref != ITR_REF_KEYPAIR)
        return itr_ep_drop(ep, NULL, ITR_DROP_UNKNOWN_CONN);
    itr_keypair *kp = (itr_keypair *)(uintptr_t)ref;
    itr_session *s = kp->session;
    /* 3. Token bucket: a flood of forged packets costs one lookup each. */
    if (!itr_ratelimit_take(&ep->rl, &s->bucket, now))
        return itr_ep_drop(ep, s, ITR_DROP_RATE_LIMIT);
    /* 4. Replay pre-check (read only). */
    if (!itr_replay_check(&kp->replay, h->seq))
        return itr_ep_drop(ep, s, ITR_DROP_REPLAY);
    /* 5. AEAD with the 16 header bytes as associated data. */
    size_t ptlen = len - ITR_HEADER_LEN - ITR_TAG_LEN;
    uint8_t *pt = ep->rx_buf;
    if (itr_aead_open((itr_suite)kp->suite, kp->recv_key, itr_kp_state(ep, kp, 0), h->seq, pkt,
                      ITR_HEADER_LEN, pkt + ITR_HEADER_LEN, len - ITR_HEADER_LEN, pt) != ITR_OK)
        return itr_ep_drop(ep, s, ITR_DROP_CRYPTO);
    /* 6. Only authenticated counters move the window. */
    if (!itr_replay_update(&kp->replay, h->seq))
        return itr_ep_drop(ep, s, ITR_DROP_REPLAY);
    /* 7. Key lifetime. */
    if (now - kp->created_ns > c->reject_after_ns)
        return itr_ep_drop(ep, s, ITR_DROP_KEY_EXPIRED);
    /* 8. Roaming, confirmation, liveness: only after authentication. */
    if (!itr_ep_addr_equal(&s->addr, from) || s->addr.local != from->local)
        s->addr = *from;
    if (kp == s->next) {
        itr_hs_confirm(ep, s, now);
        if (s->flags & ITR_SF_CLOSED)
            return ITR_OK;
    }
    s->last_recv_ns = now;
    /* 9. The cumulative ack, then the frame. Every failure below is an authenticated
     * violation, hence a strike. */
    if (!itr_rel_ack_valid(s, h->ack))
        return itr_ep_strike(ep, s, ITR_DROP_BAD_ACK, now);
    if (h->type == ITR_PT_ACK) {
        uint32_t received;
        if (ptlen != ITR_ACK_PLAINTEXT_LEN)
            return itr_ep_strike(ep, s, ITR_DROP_BAD_FRAME, now);
        itr_get_u32(pt, &received);
        /* received within what we sent, and ack <= received. */
        if (!itr_rel_ack_valid(s, received) || itr_seq_lt(received, h->ack))
            return itr_ep_strike(ep, s, ITR_DROP_BAD_ACK, now);
        itr_rel_on_ack(ep, s, h->ack, now);
        if (!(s->flags & ITR_SF_CLOSED))
            itr_rel_on_received(ep, s, received, pt + 4, now);
        return ITR_OK;
    }
    itr_rel_on_ack(ep, s, h->ack, now);
    if (s->flags & ITR_SF_CLOSED)
        return ITR_OK;
    switch (h->type) {
    case ITR_PT_DATA:
        return recv_data(ep, s, h, pt, ptlen, now);
    case ITR_PT_KEEPALIVE:
        if (ptlen != KEEPALIVE_PT_LEN || (pt[0] & ~KA_KNOWN_FLAGS) != 0)
            return itr_ep_strike(ep, s, ITR_DROP_BAD_FRAME, now);
        if ((pt[0] & ITR_KA_REKEY_REQUEST) && (s->flags & ITR_SF_INITIATOR) && !s->hs &&
            now < s->rekey_at_ns) {
            s->rekey_at_ns = now;
            itr_ep_session_timer_lower(ep, s, now);
        }
        if (pt[0] & ITR_KA_ACK_REQUEST)
            itr_ep_want_ack(ep, s);
        return ITR_OK;
    case ITR_PT_CLOSE:
        if (ptlen != CLOSE_PT_LEN)
            return itr_ep_strike(ep, s, ITR_DROP_BAD_FRAME, now);
        itr_ep_session_close(ep, s, ITR_CLOSE_REMOTE, 0, now);
        return ITR_OK;
    default:
        return itr_ep_drop(ep, s, ITR_DROP_BAD_TYPE);
    }
}

int itr_endpoint_recv(itr_endpoint *ep, const itr_addr *from, const uint8_t *pkt, size_t len,
                      uint64_t now)
{
    itr_header h;
    int rc;
    ep_enter(ep);
    ITR_STAT_ADD(ep, packets_received, 1);
    ITR_STAT_ADD(ep, bytes_received, len);
    rc = itr_header_read(pkt, len, ep->set.max_packet, &h);
    if (rc < 0) {
        rc = itr_ep_drop(ep, NULL, (itr_drop_reason)(-rc - 1));
        goto out;
    }
    switch (h.type) {
    case ITR_PT_HANDSHAKE:
        rc = itr_hs_recv_handshake(ep, from, pkt, len, &h, now);
        break;
    case ITR_PT_COOKIE_REPLY:
        rc = itr_hs_recv_cookie_reply(ep, from, pkt, len, &h, now);
        break;
    default:
        rc = recv_transport(ep, from, pkt, len, &h, now);
        break;
    }
out:
    ep_leave(ep);
    return rc;
}

/* ---- batches and timers ---- */

static void flush_acks(itr_endpoint *ep, uint64_t now)
{
    while (ep->flush_head) {
        itr_session *s = ep->flush_head;
        ep->flush_head = s->flush_next;
        s->flush_next = NULL;
        s->flags &= ~(uint32_t)ITR_SF_IN_FLUSH;
        if ((s->flags & ITR_SF_ACK_NOW) && !(s->flags & ITR_SF_CLOSED))
            itr_rel_send_ack(ep, s, now);
    }
}

void itr_endpoint_flush(itr_endpoint *ep, uint64_t now)
{
    ep_enter(ep);
    flush_acks(ep, now);
    ep_leave(ep);
}

uint64_t itr_endpoint_expiry(const itr_endpoint *ep)
{
    uint64_t t = itr_timerq_next(&ep->timers);
    if (ep->set.accept_handshakes && ep->set.cookie_mode != ITR_COOKIE_OFF)
        t = min_u64(t, ep->jar.rotated_at + ep->jar.rotate_ns);
    return t;
}

void itr_endpoint_on_expiry(itr_endpoint *ep, uint64_t now)
{
    itr_timed *t;
    ep_enter(ep);
    if (ep->set.accept_handshakes && ep->set.cookie_mode != ITR_COOKIE_OFF)
        itr_cookie_jar_tick(&ep->jar, now);
    /* Every handler re-arms strictly after now, so this loop ends. */
    while ((t = itr_timerq_pop_due(&ep->timers, now)) != NULL) {
        if (t->kind == ITR_REF_SESSION)
            session_on_timer(
                ep, (itr_session *)(void *)((uint8_t *)t - offsetof(itr_session, timer)), now);
        else
            itr_hs_on_timer(ep, (itr_hs *)(void *)((uint8_t *)t - offsetof(itr_hs, timer)), now);
    }
    flush_acks(ep, now);
    ep_leave(ep);
}

/* ---- construction ---- */

static int settings_valid(const itr_settings *s)
{
    static const uint8_t zero[ITR_KEY_LEN];
    if (sodium_memcmp(s->static_private, zero, ITR_KEY_LEN) == 0)
        return 0; /* the caller forgot to set its identity */
    if (s->cookie_mode != ITR_COOKIE_OFF && s->cookie_mode != ITR_COOKIE_UNDER_LOAD &&
        s->cookie_mode != ITR_COOKIE_ALWAYS)
        return 0;
    if (s->max_packet < 256 || s->max_packet > ITR_MAX_PACKET)
        return 0;
    if (s->tx_ring_slots == 0 || s->max_peers == 0 || s->max_peers > (1u << 28))
        return 0;
    if (s->conn_id_modulus == 0 || s->conn_id_residue >= s->conn_id_modulus)
        return 0;
    if (s->strike_limit == 0 || s->strike_limit > ITR_STRIKES_MAX)
        return 0;
    if (s->rate_limit_pps != 0 && s->rate_limit_burst == 0)
        return 0;
    if (s->handshake_timeout_ns == 0 || s->handshake_retry_ns == 0 || s->idle_timeout_ns == 0 ||
        s->keepalive_ns == 0 || s->rekey_after_ns == 0 || s->reject_after_ns <= s->rekey_after_ns ||
        s->cookie_rotate_ns == 0 || s->strike_window_ns == 0)
        return 0;
    if (s->rto_min_ns == 0 || s->rto_min_ns > s->rto_initial_ns ||
        s->rto_initial_ns > s->rto_max_ns)
        return 0;
    if (s->accept_handshakes && s->max_handshakes_in_flight == 0)
        return 0;
    if (s->prologue_len > ITR_PROLOGUE_MAX || (s->prologue_len && !s->prologue))
        return 0;
    if (s->tx_pool_slots > (1u << 24) || s->reorder_pool_slots > (1u << 24) ||
        s->tx_ring_slots > (1u << 24) || s->max_handshakes_in_flight > (1u << 20))
        return 0;
    return 1;
}

int itr_endpoint_new(itr_endpoint **out, const itr_settings *s, const itr_callbacks *cb, void *user,
                     uint64_t now)
{
    itr_endpoint *ep;
    int rc;

    *out = NULL;
    if (!s || !settings_valid(s))
        return ITR_ERR_INVALID;
    if (itr_crypto_init() != ITR_OK)
        return ITR_ERR_CRYPTO;
    ep = itr_calloc(1, sizeof(*ep));
    if (!ep)
        return ITR_ERR_NOMEM;
    ep->set = *s;
    if (s->prologue_len)
        memcpy(ep->prologue, s->prologue, s->prologue_len);
    ep->set.prologue = ep->prologue;
    if (cb)
        ep->cb = *cb;
    ep->user = user;
    if (itr_key_public(s->static_private, ep->static_pub) != ITR_OK) {
        rc = ITR_ERR_INVALID;
        goto err_ep;
    }
    if (itr_hs_templates_init(ep) != ITR_OK) {
        rc = ITR_ERR_CRYPTO;
        goto err_ep;
    }
    itr_cookie_keys_derive(&ep->cookie_keys, ep->static_pub);
    itr_cookie_jar_init(&ep->jar, s->cookie_rotate_ns, now);
    itr_ratelimit_init(&ep->rl, s->rate_limit_pps, s->rate_limit_burst);
    itr_random(ep->keyhash_key, sizeof(ep->keyhash_key));
    ep->kp_gen = 1;
    rc = ITR_ERR_NOMEM;
    if (s->aead_cache_entries && itr_aead_cache_new(&ep->aead, s->aead_cache_entries) != ITR_OK)
        goto err_ep;

    ep->ring_cap = s->tx_ring_slots;
    ep->ring_mem = itr_malloc((size_t)ep->ring_cap * s->max_packet);
    ep->ring_addr = itr_calloc(ep->ring_cap, sizeof(itr_addr));
    ep->ring_len = itr_calloc(ep->ring_cap, sizeof(uint32_t));
    if (!ep->ring_mem || !ep->ring_addr || !ep->ring_len)
        goto err_ring;

    if (itr_pool_init(&ep->txpool, s->tx_pool_slots, s->max_packet) != ITR_OK)
        goto err_ring;
    ep->txmeta = itr_calloc(s->tx_pool_slots ? s->tx_pool_slots : 1, sizeof(itr_txmeta));
    if (!ep->txmeta)
        goto err_txpool;
    if (itr_pool_init(&ep->rxpool, s->reorder_pool_slots, s->max_packet) != ITR_OK)
        goto err_txmeta;
    ep->rxmeta = itr_calloc(s->reorder_pool_slots ? s->reorder_pool_slots : 1, sizeof(itr_rxmeta));
    if (!ep->rxmeta)
        goto err_rxpool;

    /* Responder slots only when accepting; initiator slots: one per session at most. */
    ep->hs_resp_cap = s->accept_handshakes ? s->max_handshakes_in_flight : 0;
    ep->hs_init_cap = s->max_handshakes_in_flight ? s->max_handshakes_in_flight : 1;
    if (ep->hs_init_cap > s->max_peers)
        ep->hs_init_cap = s->max_peers;
    uint32_t hs_total = ep->hs_resp_cap + ep->hs_init_cap;
    ep->hs = itr_calloc(hs_total, sizeof(itr_hs));
    ep->hs_free = itr_calloc(hs_total, sizeof(uint32_t));
    ep->hs_keys = itr_calloc(ep->hs_resp_cap, sizeof(itr_hs_key));
    if (!ep->hs || !ep->hs_free || !ep->hs_keys)
        goto err_hs;
    for (uint32_t i = 0; i < hs_total; i++) {
        ep->hs[i].kind = ITR_REF_HANDSHAKE;
        ep->hs[i].index = i;
        itr_timed_init(&ep->hs[i].timer, ITR_REF_HANDSHAKE);
    }
    /* Free stacks: lowest index on top. */
    for (uint32_t i = 0; i < ep->hs_resp_cap; i++)
        ep->hs_free[i] = ep->hs_resp_cap - 1 - i;
    for (uint32_t i = 0; i < ep->hs_init_cap; i++)
        ep->hs_free[ep->hs_resp_cap + i] = ep->hs_resp_cap + ep->hs_init_cap - 1 - i;

    uint32_t expect = s->max_peers < 1024 ? s->max_peers : 1024;
    if (itr_ctab_init(&ep->conns, hs_total + 2 * expect) != ITR_OK)
        goto err_hs;
    if (itr_ctab_init(&ep->keys, expect) != ITR_OK)
        goto err_conns;
    if (itr_timerq_init(&ep->timers, s->max_peers + hs_total) != ITR_OK)
        goto err_keys;
    ep->peers = itr_calloc(s->max_peers, sizeof(itr_peer_slot));
    ep->peer_free = itr_calloc(s->max_peers, sizeof(uint32_t));
    if (!ep->peers || !ep->peer_free)
        goto err_peers;
    for (uint32_t i = 0; i < s->max_peers; i++)
        ep->peer_free[i] = s->max_peers - 1 - i;
    ep->peer_free_n = s->max_peers;
    *out = ep;
    return ITR_OK;

err_peers:
    itr_free(ep->peers);
    itr_free(ep->peer_free);
    itr_timerq_destroy(&ep->timers);
err_keys:
    itr_ctab_destroy(&ep->keys);
err_conns:
    itr_ctab_destroy(&ep->conns);
err_hs:
    itr_free(ep->hs);
    itr_free(ep->hs_free);
    itr_free(ep->hs_keys);
    itr_free(ep->rxmeta);
err_rxpool:
    itr_pool_destroy(&ep->rxpool);
err_txmeta:
    itr_free(ep->txmeta);
err_txpool:
    itr_pool_destroy(&ep->txpool);
err_ring:
    itr_free(ep->ring_mem);
    itr_free(ep->ring_addr);
    itr_free(ep->ring_len);
    itr_aead_cache_free(ep->aead);
err_ep:
    sodium_memzero(ep, sizeof(*ep));
    itr_free(ep);
    return rc;
}

void itr_endpoint_free(itr_endpoint *ep)
{
    if (!ep)
        return;
    ep_enter(ep);
    for (uint32_t i = 0; i < ep->set.max_peers; i++)
        if (ep->peers[i].s)
            itr_ep_session_close(ep, ep->peers[i].s, ITR_CLOSE_SHUTDOWN, 0, 0);
    for (uint32_t i = 0; i < ep->hs_resp_cap + ep->hs_init_cap; i++)
        itr_hs_free(ep, &ep->hs[i]);
    ep->notify_pool = 0;
    ep_leave(ep);
    itr_free(ep->peers);
    itr_free(ep->peer_free);
    itr_timerq_destroy(&ep->timers);
    itr_ctab_destroy(&ep->keys);
    itr_ctab_destroy(&ep->conns);
    sodium_memzero(ep->hs, (size_t)(ep->hs_resp_cap + ep->hs_init_cap) * sizeof(itr_hs));
    itr_free(ep->hs);
    itr_free(ep->hs_free);
    itr_free(ep->hs_keys);
    itr_free(ep->rxmeta);
    itr_pool_destroy(&ep->rxpool);
    itr_free(ep->txmeta);
    itr_pool_destroy(&ep->txpool);
    itr_free(ep->ring_mem);
    itr_free(ep->ring_addr);
    itr_free(ep->ring_len);
    itr_aead_cache_free(ep->aead);
    itr_cookie_jar_wipe(&ep->jar);
    sodium_memzero(ep, sizeof(*ep));
    itr_free(ep);
}

void itr_endpoint_public_key(const itr_endpoint *ep, uint8_t out[ITR_KEY_LEN])
{
    memcpy(out, ep->static_pub, ITR_KEY_LEN);
}

/* ---- application calls ---- */

static int addr_usable(const itr_addr *a)
{
    return a && (a->u.sa.sa_family == AF_INET || a->u.sa.sa_family == AF_INET6);
}

int itr_endpoint_connect(itr_endpoint *ep, const itr_addr *to,
                         const uint8_t remote_static[ITR_KEY_LEN], itr_suite suite, uint64_t now,
                         itr_peer_id *out)
{
    static const uint8_t zero[ITR_KEY_LEN];
    int err = ITR_OK;
    if (!addr_usable(to) || !remote_static || !out ||
        (suite != ITR_SUITE_AESGCM && suite != ITR_SUITE_CHACHAPOLY) ||
        sodium_memcmp(remote_static, zero, ITR_KEY_LEN) == 0)
        return ITR_ERR_INVALID;
    ep_enter(ep);
    itr_session *s = itr_ep_session_new(ep, remote_static, to, 1, now, &err);
    if (!s)
        goto out;
    s->suite = (uint8_t)suite;
    do
        itr_ep_random(ep, &s->session_id, sizeof(s->session_id));
    while (s->session_id == 0);
    err = itr_hs_initiate(ep, s, now);
    if (err != ITR_OK) {
        s->flags |= ITR_SF_SILENT;
        itr_ep_session_close(ep, s, ITR_CLOSE_LOCAL, 0, now);
        goto out;
    }
    *out = itr_ep_peer_id(s);
out:
    ep_leave(ep);
    return err;
}

size_t itr_endpoint_max_body(const itr_endpoint *ep, size_t topic_len)
{
    size_t overhead = ITR_HEADER_LEN + ITR_TAG_LEN + 4 + 1 + topic_len;
    if (topic_len == 0 || topic_len > ITR_MAX_TOPIC || overhead > ep->set.max_packet)
        return 0;
    return ep->set.max_packet - overhead;
}

static int send_realtime(itr_endpoint *ep, itr_session *s, uint8_t priority, const char *topic,
                         size_t topic_len, const void *body, size_t body_len, uint64_t now,
                         uint32_t *seq_out)
{
    uint8_t *slot = itr_ep_tx_reserve(ep);
    if (!slot)
        return ITR_ERR_WOULDBLOCK;
    uint8_t *pt = slot + ITR_HEADER_LEN;
    size_t cap = ep->set.max_packet - ITR_HEADER_LEN - ITR_TAG_LEN;
    itr_put_u32(pt, s->rt_mseq);
    size_t n = itr_envelope_write(pt + 4, cap - 4, topic, topic_len, body, body_len);
    if (n == 0)
        return ITR_ERR_TOO_BIG;
    int rc = itr_ep_seal_send(ep, s, s->cur, ITR_PT_DATA, ITR_INTENT_REALTIME, priority, pt, 4 + n,
                              0, now);
    if (rc == ITR_ERR_CLOSED)
        rc = ITR_ERR_WOULDBLOCK; /* counter exhausted: the rekey is under way */
    if (rc != ITR_OK)
        return rc;
    if (seq_out)
        *seq_out = s->rt_mseq;
    s->rt_mseq++;
    s->msgs_out++;
    s->bytes_out += body_len;
    ITR_STAT_ADD(ep, messages_sent, 1);
    return ITR_OK;
}

int itr_endpoint_send(itr_endpoint *ep, itr_peer_id peer, itr_intent intent, uint8_t priority,
                      const char *topic, size_t topic_len, const void *body, size_t body_len,
                      uint64_t now, uint32_t *seq_out)
{
    int rc;
    ep_enter(ep);
    itr_session *s = session_get(ep, peer);
    if (!s) {
        rc = ITR_ERR_NOT_FOUND;
        goto out;
    }
    if (!(s->flags & ITR_SF_ESTABLISHED) || !s->cur) {
        rc = ITR_ERR_NOT_READY;
        goto out;
    }
    if (priority > 7 || (intent != ITR_INTENT_REALTIME && intent != ITR_INTENT_RELIABLE) ||
        !topic || !itr_topic_valid(topic, topic_len) || (!body && body_len)) {
        rc = ITR_ERR_INVALID;
        goto out;
    }
    if (body_len > itr_endpoint_max_body(ep, topic_len)) {
        rc = ITR_ERR_TOO_BIG;
        goto out;
    }
    if (intent == ITR_INTENT_REALTIME)
        rc = send_realtime(ep, s, priority, topic, topic_len, body, body_len, now, seq_out);
    else
        rc = itr_rel_send(ep, s, priority, topic, topic_len, body, body_len, seq_out, now);
out:
    ep_leave(ep);
    return rc;
}

int itr_endpoint_ack(itr_endpoint *ep, itr_peer_id peer, uint32_t seq, uint64_t now)
{
    int rc;
    (void)now;
    ep_enter(ep);
    itr_session *s = session_get(ep, peer);
    rc = s ? itr_rel_app_ack(ep, s, seq) : ITR_ERR_NOT_FOUND;
    ep_leave(ep);
    return rc;
}

int itr_endpoint_close_peer(itr_endpoint *ep, itr_peer_id peer, uint64_t now)
{
    ep_enter(ep);
    itr_session *s = session_get(ep, peer);
    if (s)
        itr_ep_session_close(ep, s, ITR_CLOSE_LOCAL, 1, now);
    ep_leave(ep);
    return s ? ITR_OK : ITR_ERR_NOT_FOUND;
}

int itr_endpoint_peer_info(const itr_endpoint *ep, itr_peer_id peer, itr_peer_info *out)
{
    const itr_session *s = session_get(ep, peer);
    if (!s)
        return ITR_ERR_NOT_FOUND;
    fill_info(ep, s, out);
    return ITR_OK;
}

int itr_endpoint_find_peer(const itr_endpoint *ep, const uint8_t static_key[ITR_KEY_LEN],
                           itr_peer_id *out)
{
    uint32_t pos = 0;
    const itr_session *s, *found = NULL;
    uint64_t h = itr_ep_key_hash(ep, static_key);
    /* Prefer an established session; an initiator's pending connect is found otherwise. */
    while ((s = itr_ctab_next(&ep->keys, h, &pos)) != NULL) {
        if (memcmp(s->static_key, static_key, ITR_KEY_LEN) != 0)
            continue;
        if (!found || ((s->flags & ITR_SF_ESTABLISHED) && !(found->flags & ITR_SF_ESTABLISHED)))
            found = s;
    }
    if (!found)
        return ITR_ERR_NOT_FOUND;
    *out = itr_ep_peer_id(found);
    return ITR_OK;
}

size_t itr_endpoint_peers(const itr_endpoint *ep, uint64_t *cursor, itr_peer_info *out, size_t cap)
{
    size_t n = 0;
    uint64_t i = *cursor;
    for (; i < ep->set.max_peers && n < cap; i++) {
        const itr_session *s = ep->peers[i].s;
        if (s && !(s->flags & ITR_SF_CLOSED))
            fill_info(ep, s, &out[n++]);
    }
    *cursor = i;
    return n;
}

void itr_endpoint_stats(const itr_endpoint *ep, itr_stats *out)
{
    const uint64_t *src = (const uint64_t *)(const void *)&ep->stats;
    uint64_t *dst = (uint64_t *)(void *)out;
    for (size_t i = 0; i < sizeof(itr_stats) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

/* ---- test hooks ---- */

void itr_endpoint_test_rng(itr_endpoint *ep, void (*fn)(void *arg, void *buf, size_t len),
                           void *arg)
{
    ep->rng = fn;
    ep->rng_arg = arg;
}

size_t itr_endpoint_test_session_bytes(const itr_endpoint *ep)
{
    return ep->session_bytes;
}

size_t itr_endpoint_test_fixed_bytes(const itr_endpoint *ep)
{
    const itr_settings *s = &ep->set;
    size_t hs_total = (size_t)ep->hs_resp_cap + ep->hs_init_cap;
    return sizeof(*ep) + (size_t)ep->ring_cap * (s->max_packet + sizeof(itr_addr) + 4) +
           itr_pool_bytes(&ep->txpool) + (size_t)s->tx_pool_slots * sizeof(itr_txmeta) +
           itr_pool_bytes(&ep->rxpool) + (size_t)s->reorder_pool_slots * sizeof(itr_rxmeta) +
           hs_total * (sizeof(itr_hs) + sizeof(uint32_t)) +
           (size_t)ep->hs_resp_cap * sizeof(itr_hs_key) + itr_ctab_bytes(&ep->conns) +
           itr_ctab_bytes(&ep->keys) + itr_timerq_bytes(&ep->timers) +
           (size_t)s->max_peers * (sizeof(itr_peer_slot) + sizeof(uint32_t)) +
           (size_t)s->aead_cache_entries * 512;
}

int itr_endpoint_test_seal(itr_endpoint *ep, itr_peer_id peer, uint8_t type, uint8_t byte1,
                           const uint8_t *pt, size_t ptlen, uint8_t *out, size_t cap)
{
    itr_session *s = session_get(ep, peer);
    if (!s || !s->cur)
        return ITR_ERR_NOT_FOUND;
    size_t len = ITR_HEADER_LEN + ptlen + ITR_TAG_LEN;
    if (len > cap || ptlen > 0xffff - ITR_TAG_LEN)
        return ITR_ERR_TOO_BIG;
    itr_keypair *kp = s->cur;
    uint64_t n = kp->send_n++;
    itr_ep_header(out, type, (uint8_t)(byte1 >> 6), (uint8_t)((byte1 >> 3) & 7),
                  (uint16_t)(ptlen + ITR_TAG_LEN), kp->remote_id, (uint32_t)n, s->rcv_ack);
    out[1] = byte1; /* exactly as given, reserved bits included */
    memmove(out + ITR_HEADER_LEN, pt, ptlen);
    itr_aead_seal((itr_suite)kp->suite, kp->send_key, NULL, n, out, ITR_HEADER_LEN,
                  out + ITR_HEADER_LEN, ptlen, out + ITR_HEADER_LEN);
    return (int)len;
}

uint32_t itr_endpoint_test_conn_id(const itr_endpoint *ep, itr_peer_id peer)
{
    const itr_session *s = session_get(ep, peer);
    return s && s->cur ? s->cur->local_id : 0;
}

void itr_endpoint_test_hs_used(const itr_endpoint *ep, uint32_t *resp, uint32_t *init)
{
    *resp = ep->hs_resp_used;
    *init = ep->hs_init_used;
}
