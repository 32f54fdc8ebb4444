/* itr_reliable.c: the Reliable stream of a session (PROTOCOL.md §7).
 *
 * Sender: each unacknowledged message sits in a slot of the endpoint's shared tx pool (its
 * plaintext, mseq || envelope, resealed under a fresh packet counter on every retransmission)
 * linked in sequence order through the pool's link array, with per-slot metadata: deadline,
 * backoff, received flag. The session keeps only head/tail indexes and a lower bound of the
 * earliest deadline; a timer scan finds the due ones (at most 256 per session).
 *
 * Receiver: messages ahead of the next expected one wait in slots of the shared reorder pool,
 * linked in sequence order, bounded per session in bytes. Delivery is in order and exactly
 * once; the application acknowledges in any order (a 256-bit bitmap), the contiguous prefix
 * becomes the `ack` carried by every transport header.
 */
#include <string.h>

#include "itr_envelope.h"
#include "itr_session.h"

#define RTO_GRANULARITY_NS 1000000ull
#define MAX_BACKOFF        30

/* ---- estimator (pure) ---- */

void itr_rtt_init(itr_rtt *r, uint64_t rto_initial)
{
    r->srtt = 0;
    r->rttvar = 0;
    r->rto = rto_initial;
}

void itr_rtt_sample(itr_rtt *r, uint64_t sample, uint64_t rto_min, uint64_t rto_max)
{
    if (sample == 0)
        sample = 1; /* keeps srtt == 0 meaning "no sample yet" */
    if (r->srtt == 0) {
        r->srtt = sample;
        r->rttvar = sample / 2;
    } else {
        uint64_t diff = r->srtt > sample ? r->srtt - sample : sample - r->srtt;
        r->rttvar = (3 * r->rttvar + diff) / 4;
        r->srtt = (7 * r->srtt + sample) / 8;
    }
    uint64_t var4 = 4 * r->rttvar;
    if (var4 < RTO_GRANULARITY_NS)
        var4 = RTO_GRANULARITY_NS; /* G = 1 ms clock granularity */
    uint64_t rto = r->srtt + var4;
    if (rto < rto_min)
        rto = rto_min;
    if (rto > rto_max)
        rto = rto_max;
    r->rto = rto;
}

uint64_t itr_rtt_backoff(const itr_rtt *r, unsigned backoff, uint64_t rto_max)
{
    uint64_t rto = r->rto;
    for (unsigned i = 0; i < backoff && rto < rto_max; i++)
        rto *= 2;
    return rto < rto_max ? rto : rto_max;
}

/* ---- session state ---- */

void itr_rel_init(itr_endpoint *ep, itr_session *s)
{
    itr_rtt_init(&s->rtt, ep->set.rto_initial_ns);
    s->tx_head = s->tx_tail = ITR_POOL_NONE;
    s->reorder_head = ITR_POOL_NONE;
}

void itr_rel_release(itr_endpoint *ep, itr_session *s)
{
    uint32_t i, next;
    for (i = s->tx_head; i != ITR_POOL_NONE; i = next) {
        next = ep->txpool.link[i];
        itr_pool_put(&ep->txpool, i);
    }
    if (s->tx_count) {
        ITR_STAT_SUB(ep, tx_pool_in_use, s->tx_count);
        if (ep->wait_head)
            ep->notify_pool = 1;
    }
    for (i = s->reorder_head; i != ITR_POOL_NONE; i = next) {
        next = ep->rxpool.link[i];
        itr_pool_put(&ep->rxpool, i);
    }
    ITR_STAT_SUB(ep, reorder_bytes, s->reorder_bytes);
    s->tx_head = s->tx_tail = s->reorder_head = ITR_POOL_NONE;
    s->tx_count = s->tx_unrecv = 0;
    s->reorder_bytes = 0;
}

uint32_t itr_rel_unacked_in(const itr_session *s)
{
    uint32_t acked_ahead = 0;
    for (size_t i = 0; i < ITR_BITMAP_BYTES; i++)
        acked_ahead += (uint32_t)__builtin_popcount(s->app_acked[i]);
    return (s->rcv_nxt - s->rcv_ack) - acked_ahead;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t itr_rel_next_deadline(const itr_session *s)
{
    uint64_t d = UINT64_MAX;
    if (s->ack_due_ns)
        d = s->ack_due_ns;
    if (s->tx_unrecv && s->rtx_due_ns)
        d = min_u64(d, s->rtx_due_ns);
    if (s->tx_count && !s->tx_unrecv && s->probe_due_ns)
        d = min_u64(d, s->probe_due_ns);
    return d;
}

/* Probe with ACK_REQUEST only while every unacknowledged message is known received. */
static void update_probe(itr_endpoint *ep, itr_session *s, int progress, uint64_t now)
{
    if (s->tx_count == 0 || s->tx_unrecv > 0) {
        s->probe_due_ns = 0;
        return;
    }
    if (s->probe_due_ns == 0 || progress) {
        s->probe_interval_ns = s->rtt.rto;
        s->probe_due_ns = now + s->probe_interval_ns;
        itr_ep_session_timer_lower(ep, s, s->probe_due_ns);
    }
}

static void wait_for_pool(itr_endpoint *ep, itr_session *s)
{
    if (s->flags & ITR_SF_WANT_POOL)
        return;
    s->flags |= ITR_SF_WANT_POOL;
    s->wait_next = ep->wait_head;
    ep->wait_head = s;
}

static int window_full(const itr_session *s)
{
    return (uint32_t)(s->snd_nxt - s->snd_una) >= ITR_RELIABLE_WINDOW;
}

void itr_rel_notify_pool(itr_endpoint *ep)
{
    while (ep->wait_head && itr_pool_free_count(&ep->txpool) > 0) {
        itr_session *s = ep->wait_head;
        ep->wait_head = s->wait_next;
        s->wait_next = NULL;
        s->flags &= ~(uint32_t)ITR_SF_WANT_POOL;
        if (s->flags & ITR_SF_CLOSED)
            continue;
        if (window_full(s)) {
            s->flags |= ITR_SF_WANT_WINDOW;
            continue;
        }
        if (ep->cb.writable)
            ep->cb.writable(ep->user, itr_ep_peer_id(s));
    }
}

/* ---- sending ---- */

static int transmit(itr_endpoint *ep, itr_session *s, uint32_t i, uint64_t now)
{
    const itr_txmeta *m = &ep->txmeta[i];
    return itr_ep_seal_send(ep, s, s->cur, ITR_PT_DATA, ITR_INTENT_RELIABLE, m->priority,
                            itr_pool_slot(&ep->txpool, i), m->len, 1, now);
}

int itr_rel_send(itr_endpoint *ep, itr_session *s, uint8_t priority, const char *topic,
                 size_t topic_len, const void *body, size_t body_len, uint32_t *seq_out,
                 uint64_t now)
{
    if (window_full(s)) {
        /* The peer's application has not acknowledged: this is the throttle. */
        s->flags |= ITR_SF_WANT_WINDOW;
        return ITR_ERR_WOULDBLOCK;
    }
    if (!itr_ep_tx_reserve(ep))
        return ITR_ERR_WOULDBLOCK;
    if (itr_ep_counter_exhausted(ep, s, s->cur, now))
        return ITR_ERR_WOULDBLOCK; /* until the rekey it started completes */
    uint32_t i = itr_pool_get(&ep->txpool);
    if (i == ITR_POOL_NONE) {
        wait_for_pool(ep, s);
        return ITR_ERR_WOULDBLOCK;
    }
    uint8_t *pt = itr_pool_slot(&ep->txpool, i);
    size_t cap = ep->set.max_packet - ITR_HEADER_LEN - ITR_TAG_LEN;
    itr_put_u32(pt, s->snd_nxt);
    size_t n = itr_envelope_write(pt + 4, cap - 4, topic, topic_len, body, body_len);
    if (n == 0) {
        itr_pool_put(&ep->txpool, i);
        return ITR_ERR_TOO_BIG;
    }
    itr_txmeta *m = &ep->txmeta[i];
    memset(m, 0, sizeof(*m));
    m->seq = s->snd_nxt;
    m->len = (uint16_t)(4 + n);
    m->priority = priority;
    m->first_sent_ns = m->last_sent_ns = now;
    m->deadline_ns = now + s->rtt.rto;
    ep->txpool.link[i] = ITR_POOL_NONE;
    if (s->tx_tail != ITR_POOL_NONE)
        ep->txpool.link[s->tx_tail] = i;
    else
        s->tx_head = i;
    s->tx_tail = i;
    s->tx_count++;
    s->tx_unrecv++;
    ITR_STAT_ADD(ep, tx_pool_in_use, 1);
    /* The ring slot was checked above, so the first transmission cannot fail. */
    transmit(ep, s, i, now);
    if (seq_out)
        *seq_out = s->snd_nxt;
    s->snd_nxt++;
    s->msgs_out++;
    s->bytes_out += body_len;
    ITR_STAT_ADD(ep, messages_sent, 1);
    if (s->rtx_due_ns == 0 || m->deadline_ns < s->rtx_due_ns)
        s->rtx_due_ns = m->deadline_ns;
    s->probe_due_ns = 0;
    itr_ep_session_timer_lower(ep, s, s->rtx_due_ns);
    return ITR_OK;
}

int itr_rel_ack_valid(const itr_session *s, uint32_t ack)
{
    /* Older than snd_una is stale (ignored) but legal; beyond snd_nxt was never sent. */
    if (itr_seq_lt(ack, s->snd_una))
        return 1;
    return (uint32_t)(ack - s->snd_una) <= (uint32_t)(s->snd_nxt - s->snd_una);
}

void itr_rel_on_ack(itr_endpoint *ep, itr_session *s, uint32_t ack, uint64_t now)
{
    uint32_t acked[ITR_RELIABLE_WINDOW];
    uint32_t n = 0;
    uint64_t sample = 0;

    if (!itr_seq_lt(s->snd_una, ack))
        return; /* nothing new */
    while (s->tx_head != ITR_POOL_NONE && itr_seq_lt(ep->txmeta[s->tx_head].seq, ack)) {
        uint32_t i = s->tx_head;
        const itr_txmeta *m = &ep->txmeta[i];
        if (!m->received) {
            s->tx_unrecv--;
            if (!m->retransmitted)
                sample = now - m->first_sent_ns; /* the newest wins */
        }
        acked[n++] = m->seq;
        s->tx_head = ep->txpool.link[i];
        itr_pool_put(&ep->txpool, i);
    }
    if (s->tx_head == ITR_POOL_NONE)
        s->tx_tail = ITR_POOL_NONE;
    s->tx_count = (uint16_t)(s->tx_count - n);
    ITR_STAT_SUB(ep, tx_pool_in_use, n);
    if (n && ep->wait_head)
        ep->notify_pool = 1;
    s->snd_una = ack;
    if (itr_seq_lt(s->peer_received, ack))
        s->peer_received = ack;
    if (sample)
        itr_rtt_sample(&s->rtt, sample, ep->set.rto_min_ns, ep->set.rto_max_ns);
    update_probe(ep, s, 1, now);
    itr_peer_id id = itr_ep_peer_id(s);
    for (uint32_t k = 0; k < n && ep->cb.acked; k++) {
        ep->cb.acked(ep->user, id, acked[k]);
        if (s->flags & ITR_SF_CLOSED)
            return;
    }
    if ((s->flags & ITR_SF_WANT_WINDOW) && !window_full(s)) {
        s->flags &= ~(uint32_t)ITR_SF_WANT_WINDOW;
        if (itr_pool_free_count(&ep->txpool) > 0) {
            if (ep->cb.writable)
                ep->cb.writable(ep->user, id);
        } else {
            wait_for_pool(ep, s);
        }
    }
}

/* Loss detection without waiting for the RTO (RACK-style, RFC 8985 in spirit): a message is
 * lost when one sent later is known received and the gap between their transmissions exceeds
 * a reordering allowance of a quarter RTT (at least 1 ms). Such a message is due at once; it
 * is sent again once per transmission, never more often than the receiver could have told. */
static void detect_losses(itr_endpoint *ep, itr_session *s, uint64_t newest_held_sent, uint64_t now)
{
    uint64_t reo = s->rtt.srtt ? s->rtt.srtt / 4 : ep->set.rto_min_ns / 4;
    if (reo < 1000000)
        reo = 1000000;
    int due = 0;
    for (uint32_t i = s->tx_head; i != ITR_POOL_NONE; i = ep->txpool.link[i]) {
        itr_txmeta *m = &ep->txmeta[i];
        if (m->received || m->last_sent_ns + reo > newest_held_sent || m->deadline_ns <= now)
            continue;
        m->deadline_ns = now;
        due = 1;
    }
    if (due) {
        s->rtx_due_ns = now;
        itr_ep_session_timer_lower(ep, s, now);
    }
}

void itr_rel_on_received(itr_endpoint *ep, itr_session *s, uint32_t received, const uint8_t *sack,
                         uint64_t now)
{
    uint64_t sample = 0, newest_held_sent = 0;
    uint16_t before = s->tx_unrecv;

    if (itr_seq_lt(received, s->peer_received))
        return; /* an older ACK overtaken by a newer one */
    s->peer_received = received;
    for (uint32_t i = s->tx_head; i != ITR_POOL_NONE; i = ep->txpool.link[i]) {
        itr_txmeta *m = &ep->txmeta[i];
        int held;
        if (itr_seq_lt(m->seq, received)) {
            held = 1;
        } else if (m->seq == received) {
            held = 0; /* the next one the receiver waits for */
        } else {
            uint32_t d = m->seq - received - 1;
            held = d < ITR_RELIABLE_WINDOW_BITS && ((sack[d >> 3] >> (d & 7)) & 1);
        }
        if (held && !m->received) {
            m->received = 1;
            s->tx_unrecv--;
            if (!m->retransmitted)
                sample = now - m->first_sent_ns;
            if (m->last_sent_ns > newest_held_sent)
                newest_held_sent = m->last_sent_ns;
        } else if (!held && m->received) {
            /* The receiver gave it up (its application deferred it): send it again. */
            m->received = 0;
            s->tx_unrecv++;
            m->deadline_ns = now + itr_rtt_backoff(&s->rtt, m->backoff, ep->set.rto_max_ns);
            if (s->rtx_due_ns == 0 || m->deadline_ns < s->rtx_due_ns)
                s->rtx_due_ns = m->deadline_ns;
            itr_ep_session_timer_lower(ep, s, s->rtx_due_ns);
        }
    }
    if (sample)
        itr_rtt_sample(&s->rtt, sample, ep->set.rto_min_ns, ep->set.rto_max_ns);
    if (newest_held_sent && s->tx_unrecv)
        detect_losses(ep, s, newest_held_sent, now);
    update_probe(ep, s, before != s->tx_unrecv, now);
}

/* ---- receiving ---- */

/* Hand one in-order message to the application. 1 = taken, 0 = deferred, -1 = the session
 * was closed by the callback. */
static int deliver(itr_endpoint *ep, itr_session *s, uint32_t seq, uint8_t priority,
                   const uint8_t *pt, size_t ptlen, uint64_t now)
{
    const char *topic = NULL;
    const uint8_t *body = NULL;
    size_t topic_len = 0, body_len = 0;
    int rc = ITR_OK;

    /* Validated when the packet arrived. */
    itr_envelope_parse(pt + 4, ptlen - 4, &topic, &topic_len, &body, &body_len);
    itr_message m = {
        .peer = itr_ep_peer_id(s),
        .intent = ITR_INTENT_RELIABLE,
        .priority = priority,
        .seq = seq,
        .topic = topic,
        .topic_len = topic_len,
        .body = body,
        .body_len = body_len,
        .recv_ns = now,
    };
    if (ep->cb.message) {
        /* The application may acknowledge from inside the callback. */
        s->flags |= ITR_SF_DELIVERING;
        rc = ep->cb.message(ep->user, &m);
        s->flags &= ~(uint32_t)ITR_SF_DELIVERING;
    }
    if (s->flags & ITR_SF_CLOSED)
        return -1;
    if (rc == ITR_ERR_WOULDBLOCK) {
        itr_bit_clear(s->app_acked, seq);
        itr_ep_drop(ep, s, ITR_DROP_DEFERRED);
        return 0;
    }
    s->msgs_in++;
    s->bytes_in += body_len;
    ITR_STAT_ADD(ep, messages_delivered, 1);
    return 1;
}

/* Move `ack` over the contiguous acknowledged prefix; 1 if it moved. */
static int advance_ack(itr_session *s)
{
    int moved = 0;
    while (s->rcv_ack != s->rcv_nxt && itr_bit_test(s->app_acked, s->rcv_ack)) {
        itr_bit_clear(s->app_acked, s->rcv_ack);
        s->rcv_ack++;
        moved = 1;
    }
    return moved;
}

static void reorder_pop_head(itr_endpoint *ep, itr_session *s)
{
    uint32_t i = s->reorder_head;
    const itr_rxmeta *m = &ep->rxmeta[i];
    itr_bit_clear(s->reorder_have, m->seq);
    s->reorder_bytes -= m->len;
    ITR_STAT_SUB(ep, reorder_bytes, m->len);
    s->reorder_head = ep->rxpool.link[i];
    itr_pool_put(&ep->rxpool, i);
}

static int reorder_store(itr_endpoint *ep, itr_session *s, uint32_t seq, uint8_t priority,
                         const uint8_t *pt, size_t ptlen)
{
    if (s->reorder_bytes + ptlen > ep->set.reorder_max_bytes)
        return itr_ep_drop(ep, s, ITR_DROP_REORDER_FULL);
    uint32_t i = itr_pool_get(&ep->rxpool);
    if (i == ITR_POOL_NONE)
        return itr_ep_drop(ep, s, ITR_DROP_REORDER_FULL);
    memcpy(itr_pool_slot(&ep->rxpool, i), pt, ptlen);
    ep->rxmeta[i].seq = seq;
    ep->rxmeta[i].len = (uint16_t)ptlen;
    ep->rxmeta[i].priority = priority;
    uint32_t prev = ITR_POOL_NONE, cur = s->reorder_head;
    while (cur != ITR_POOL_NONE && itr_seq_lt(ep->rxmeta[cur].seq, seq)) {
        prev = cur;
        cur = ep->rxpool.link[cur];
    }
    ep->rxpool.link[i] = cur;
    if (prev == ITR_POOL_NONE)
        s->reorder_head = i;
    else
        ep->rxpool.link[prev] = i;
    itr_bit_set(s->reorder_have, seq);
    s->reorder_bytes += (uint32_t)ptlen;
    ITR_STAT_ADD(ep, reorder_bytes, ptlen);
    return ITR_OK;
}

int itr_rel_on_data(itr_endpoint *ep, itr_session *s, uint8_t priority, const uint8_t *pt,
                    size_t ptlen, uint64_t now)
{
    uint32_t seq;
    itr_get_u32(pt, &seq);
    if (itr_seq_lt(seq, s->rcv_nxt)) {
        /* Delivered already: our acknowledgement was lost, repeat it. */
        itr_ep_want_ack(ep, s);
        return itr_ep_drop(ep, s, ITR_DROP_DUPLICATE);
    }
    if ((uint32_t)(seq - s->rcv_ack) >= ITR_RELIABLE_WINDOW)
        return itr_ep_strike(ep, s, ITR_DROP_WINDOW, now);
    if (seq != s->rcv_nxt) {
        if (itr_bit_test(s->reorder_have, seq)) {
            itr_ep_want_ack(ep, s);
            return itr_ep_drop(ep, s, ITR_DROP_DUPLICATE);
        }
        int rc = reorder_store(ep, s, seq, priority, pt, ptlen);
        if (rc == ITR_OK)
            itr_ep_want_ack(ep, s); /* out of order: tell the sender what we hold */
        return rc;
    }
    int got = deliver(ep, s, seq, priority, pt, ptlen, now);
    if (got < 0)
        return ITR_OK;
    if (got == 0)
        return -(1 + (int)ITR_DROP_DEFERRED);
    /* A copy stored earlier and deferred on its way out is obsolete now. */
    if (s->reorder_head != ITR_POOL_NONE && ep->rxmeta[s->reorder_head].seq == seq)
        reorder_pop_head(ep, s);
    s->rcv_nxt++;
    while (s->reorder_head != ITR_POOL_NONE && ep->rxmeta[s->reorder_head].seq == s->rcv_nxt) {
        uint32_t i = s->reorder_head;
        const itr_rxmeta *m = &ep->rxmeta[i];
        /* Deliver from a copy: the callback may close the session, which frees the slot. */
        size_t len = m->len;
        uint8_t prio = m->priority;
        memcpy(ep->rx_buf, itr_pool_slot(&ep->rxpool, i), len);
        got = deliver(ep, s, s->rcv_nxt, prio, ep->rx_buf, len, now);
        if (got < 0)
            return ITR_OK;
        if (got == 0) {
            /* It stays stored but is no longer covered by the SACK: the sender resends it. */
            itr_ep_want_ack(ep, s);
            break;
        }
        reorder_pop_head(ep, s);
        s->rcv_nxt++;
    }
    if (advance_ack(s))
        itr_ep_want_ack(ep, s);
    if (s->ack_due_ns == 0) {
        s->ack_due_ns = now + ep->set.ack_delay_ns;
        itr_ep_session_timer_lower(ep, s, s->ack_due_ns);
    }
    return ITR_OK;
}

int itr_rel_app_ack(itr_endpoint *ep, itr_session *s, uint32_t seq)
{
    int in_delivery = (s->flags & ITR_SF_DELIVERING) && seq == s->rcv_nxt;
    int delivered = itr_seq_le(s->rcv_ack, seq) && itr_seq_lt(seq, s->rcv_nxt);
    if ((!delivered && !in_delivery) || itr_bit_test(s->app_acked, seq))
        return ITR_ERR_INVALID;
    itr_bit_set(s->app_acked, seq);
    /* Inside the message callback the message is not counted delivered yet: the prefix moves
     * when the callback returns. */
    if (!in_delivery && advance_ack(s))
        itr_ep_want_ack(ep, s);
    return ITR_OK;
}

int itr_rel_send_ack(itr_endpoint *ep, itr_session *s, uint64_t now)
{
    uint8_t pt[ITR_ACK_PLAINTEXT_LEN];
    memset(pt, 0, sizeof(pt));
    if (!s->cur)
        return ITR_ERR_NOT_READY;
    itr_put_u32(pt, s->rcv_nxt);
    if (s->reorder_head != ITR_POOL_NONE) {
        /* sack bit i: message received + 1 + i is held; only below ack + 256 is meaningful. */
        uint32_t limit = s->rcv_ack + ITR_RELIABLE_WINDOW - s->rcv_nxt - 1;
        for (uint32_t i = 0; i < limit && i < ITR_RELIABLE_WINDOW_BITS; i++)
            if (itr_bit_test(s->reorder_have, s->rcv_nxt + 1 + i))
                pt[4 + (i >> 3)] = (uint8_t)(pt[4 + (i >> 3)] | (1u << (i & 7)));
    }
    int rc = itr_ep_seal_send(ep, s, s->cur, ITR_PT_ACK, 0, 0, pt, sizeof(pt), 1, now);
    if (rc == ITR_OK) {
        s->flags &= ~(uint32_t)ITR_SF_ACK_NOW;
        s->ack_due_ns = 0;
    } else {
        /* Ring full: the session timer tries again shortly. */
        s->ack_due_ns = now + ITR_RETRY_NS;
        itr_ep_session_timer_lower(ep, s, s->ack_due_ns);
    }
    return rc;
}

void itr_rel_on_timer(itr_endpoint *ep, itr_session *s, uint64_t now)
{
    if (s->ack_due_ns && s->ack_due_ns <= now)
        itr_rel_send_ack(ep, s, now);
    if (s->tx_unrecv && s->rtx_due_ns && s->rtx_due_ns <= now) {
        uint64_t next = UINT64_MAX;
        for (uint32_t i = s->tx_head; i != ITR_POOL_NONE; i = ep->txpool.link[i]) {
            itr_txmeta *m = &ep->txmeta[i];
            if (m->received)
                continue;
            if (m->deadline_ns <= now) {
                if (transmit(ep, s, i, now) == ITR_OK) {
                    m->retransmitted = 1;
                    m->last_sent_ns = now;
                    if (m->backoff < MAX_BACKOFF)
                        m->backoff++;
                    m->deadline_ns = now + itr_rtt_backoff(&s->rtt, m->backoff, ep->set.rto_max_ns);
                    s->retransmits++;
                    ITR_STAT_ADD(ep, retransmits, 1);
                } else {
                    m->deadline_ns = now + ITR_RETRY_NS;
                }
            }
            next = min_u64(next, m->deadline_ns);
        }
        s->rtx_due_ns = next == UINT64_MAX ? 0 : next;
    }
    if (s->tx_count && !s->tx_unrecv && s->probe_due_ns && s->probe_due_ns <= now) {
        /* Everything is held by the peer's application: ask for the ack, don't resend. */
        itr_ep_send_keepalive(ep, s, ITR_KA_ACK_REQUEST, now);
        s->probe_interval_ns = min_u64(s->probe_interval_ns * 2, ep->set.rto_max_ns);
        s->probe_due_ns = now + s->probe_interval_ns;
    }
}
