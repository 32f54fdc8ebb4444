/* itr_handshake.c: handshake slots, Noise XX messages 1-3, stateless cookies and rekeys
 * (PROTOCOL.md §4 and §8).
 *
 * A slot is an explicit state machine (enum itr_hs_state); every message handler re-checks the
 * state, and Noise reads run on a copy of the Noise state that is committed only on success,
 * so a forged message 2 or 3 cannot destroy a real handshake. Responder checks run cheapest
 * first (§4.1): header, mac1, duplicate, cookie, limits; only then a slot and the DH work.
 * Slots are preallocated (responder ones and initiator ones separately, so a busy responder
 * can never starve its own rekeys and vice versa); nothing here allocates except the keypair
 * and session when a handshake completes.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <intentra/keys.h>

#include "itr_alloc.h"
#include "itr_session.h"

/* Noise payload of message 1: I (4) || 40 zero bytes (padding against amplification). */
#define MSG1_NOISE_LEN   ITR_MSG1_PAYLOAD_LEN
#define MSG3_PAYLOAD_LEN ITR_MSG3_PAYLOAD_LEN

/* ---- slots ---- */

static itr_hs *hs_alloc(itr_endpoint *ep, int initiator)
{
    uint32_t idx;
    if (initiator) {
        if (ep->hs_init_used >= ep->hs_init_cap)
            return NULL;
        idx = ep->hs_free[ep->hs_resp_cap + (ep->hs_init_cap - ep->hs_init_used - 1)];
        ep->hs_init_used++;
    } else {
        if (ep->hs_resp_used >= ep->hs_resp_cap)
            return NULL;
        idx = ep->hs_free[ep->hs_resp_cap - ep->hs_resp_used - 1];
        ep->hs_resp_used++;
    }
    itr_hs *hs = &ep->hs[idx];
    hs->initiator = (uint8_t)(initiator != 0);
    hs->rekey = 0;
    hs->local_id = hs->remote_id = 0;
    hs->session = NULL;
    hs->msg_len = 0;
    itr_timed_init(&hs->timer, ITR_REF_HANDSHAKE);
    ITR_STAT_ADD(ep, handshakes_in_flight, 1);
    return hs;
}

void itr_hs_free(itr_endpoint *ep, itr_hs *hs)
{
    if (hs->state == ITR_HS_FREE)
        return;
    /* The conn_id belongs to the slot until a keypair took it over (I_WAIT_CONFIRM, or a
     * completed responder slot whose local_id was cleared). */
    if (hs->local_id && hs->state != ITR_HS_I_WAIT_CONFIRM)
        itr_ctab_remove(&ep->conns, hs->local_id, hs);
    itr_timerq_remove(&ep->timers, &hs->timer);
    itr_noise_wipe(&hs->noise);
    sodium_memzero(hs->msg, sizeof(hs->msg));
    sodium_memzero(hs->peer_e, sizeof(hs->peer_e));
    if (hs->session && hs->session->hs == hs)
        hs->session->hs = NULL;
    hs->session = NULL;
    hs->state = ITR_HS_FREE;
    if (hs->initiator) {
        ep->hs_init_used--;
        ep->hs_free[ep->hs_resp_cap + (ep->hs_init_cap - ep->hs_init_used - 1)] = hs->index;
    } else {
        ep->hs_keys[hs->index].initiator_id = 0;
        ep->hs_resp_used--;
        ep->hs_free[ep->hs_resp_cap - ep->hs_resp_used - 1] = hs->index;
    }
    ITR_STAT_SUB(ep, handshakes_in_flight, 1);
}

/* ---- keypairs ---- */

const itr_aead_state *itr_kp_state(itr_endpoint *ep, itr_keypair *kp, int send)
{
    if (!ep->aead)
        return NULL;
    const uint8_t *key = send ? kp->send_key : kp->recv_key;
    return itr_aead_cache_get(ep->aead, (itr_suite)kp->suite, key, kp->gen, key);
}

static itr_keypair *kp_new(itr_endpoint *ep, itr_session *s, uint8_t suite,
                           const uint8_t send_key[32], const uint8_t recv_key[32],
                           uint32_t local_id, uint32_t remote_id, uint64_t now)
{
    itr_keypair *kp = itr_calloc(1, sizeof(*kp));
    if (!kp)
        return NULL;
    ep->session_bytes += sizeof(*kp);
    kp->kind = ITR_REF_KEYPAIR;
    kp->suite = suite;
    kp->local_id = local_id;
    kp->remote_id = remote_id;
    kp->created_ns = now;
    kp->gen = ep->kp_gen++;
    kp->session = s;
    itr_replay_init(&kp->replay);
    memcpy(kp->send_key, send_key, 32);
    memcpy(kp->recv_key, recv_key, 32);
    return kp;
}

void itr_kp_free(itr_endpoint *ep, itr_keypair *kp)
{
    if (!kp)
        return;
    itr_ctab_remove(&ep->conns, kp->local_id, kp);
    if (ep->aead) {
        itr_aead_cache_drop(ep->aead, kp->send_key, kp->gen);
        itr_aead_cache_drop(ep->aead, kp->recv_key, kp->gen);
    }
    sodium_memzero(kp, sizeof(*kp));
    itr_free(kp);
    ep->session_bytes -= sizeof(*kp);
}

/* ---- helpers ---- */

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static int cookies_demanded(const itr_endpoint *ep)
{
    switch (ep->set.cookie_mode) {
    case ITR_COOKIE_ALWAYS:
        return 1;
    case ITR_COOKIE_UNDER_LOAD:
        return ep->hs_resp_used >= ep->set.cookie_load_threshold;
    case ITR_COOKIE_OFF:
    default:
        return 0;
    }
}

int itr_hs_templates_init(itr_endpoint *ep)
{
    for (int suite = ITR_SUITE_AESGCM; suite <= ITR_SUITE_CHACHAPOLY; suite++)
        for (int initiator = 0; initiator < 2; initiator++)
            if (itr_noise_init(&ep->noise_tmpl[suite - 1][initiator], (itr_suite)suite, initiator,
                               ep->set.prologue, ep->set.prologue_len, ep->set.static_private,
                               NULL) != ITR_OK)
                return ITR_ERR_CRYPTO;
    return ITR_OK;
}

static int noise_init(itr_endpoint *ep, itr_hs *hs, itr_suite suite, int initiator)
{
    if (suite != ITR_SUITE_AESGCM && suite != ITR_SUITE_CHACHAPOLY)
        return ITR_ERR_INVALID;
    /* Initialize() output plus our ephemeral, exactly what itr_noise_init(..., e_priv) gives;
     * drawn here so tests can make it deterministic (itr_ep_random). */
    hs->noise = ep->noise_tmpl[suite - 1][initiator != 0];
    itr_ep_random(ep, hs->noise.e_priv, sizeof(hs->noise.e_priv));
    if (itr_key_public(hs->noise.e_priv, hs->noise.e_pub) != ITR_OK) {
        itr_noise_wipe(&hs->noise);
        return ITR_ERR_CRYPTO;
    }
    return ITR_OK;
}

/* ---- responder: message 1 ---- */

static int recv_msg1(itr_endpoint *ep, const itr_addr *from, const uint8_t *pkt, size_t len,
                     const itr_header *h, uint64_t now)
{
    uint8_t ip[16], payload[MSG1_NOISE_LEN + 16];
    size_t plen = 0;
    uint32_t initiator_id = h->ack;
    const uint8_t *e = pkt + ITR_MSG1_E_OFF;
    int rc;

    if (!ep->set.accept_handshakes)
        return itr_ep_drop(ep, NULL, ITR_DROP_HANDSHAKE_STATE);
    /* 1. Shape: exact length, conn_id 0, an initiator id, a known suite, reserved zero. */
    if (len != ITR_MSG1_LEN || h->conn_id != 0 || initiator_id == 0 ||
        (pkt[ITR_MSG1_SUITE_OFF] != ITR_SUITE_AESGCM &&
         pkt[ITR_MSG1_SUITE_OFF] != ITR_SUITE_CHACHAPOLY) ||
        !all_zero(pkt + ITR_MSG1_SUITE_OFF + 1, 3))
        return itr_ep_drop(ep, NULL, ITR_DROP_BAD_HEADER);
    /* 2. mac1: addressed to our static key? One BLAKE2b, no public-key work. */
    if (!itr_mac1_verify(&ep->cookie_keys, pkt)) {
        itr_ep_security(ep, ITR_SEC_BAD_MAC1, from, NULL);
        return itr_ep_drop(ep, NULL, ITR_DROP_BAD_MAC1);
    }
    /* 3. A retransmitted message 1 of a handshake in flight gets the stored message 2. */
    itr_ep_addr_ip16(from, ip);
    for (uint32_t i = 0; i < ep->hs_resp_cap; i++) {
        if (ep->hs_keys[i].initiator_id != initiator_id)
            continue;
        const itr_hs *d = &ep->hs[i];
        if (itr_ep_addr_equal(&d->addr, from) && itr_ct_equal(d->peer_e, e, 32)) {
            itr_ep_tx_copy(ep, from, d->msg, d->msg_len);
            return ITR_OK;
        }
    }
    /* 4. Cookie: proves the source address receives datagrams, before any state. */
    if (cookies_demanded(ep)) {
        const uint8_t *cookie = pkt + ITR_MSG1_COOKIE_OFF;
        if (all_zero(cookie, 16)) {
            uint8_t c[16];
            uint8_t *out = itr_ep_tx_reserve(ep);
            if (out) {
                itr_cookie_make(&ep->jar, from, e, c);
                itr_cookie_reply_write(out, &ep->cookie_keys, pkt, c);
                itr_ep_tx_commit(ep, from, ITR_COOKIE_REPLY_LEN);
                ITR_STAT_ADD(ep, cookies_sent, 1);
                sodium_memzero(c, sizeof(c));
            } else {
                itr_ep_drop(ep, NULL, ITR_DROP_TX_RING_FULL);
            }
            return itr_ep_drop(ep, NULL, ITR_DROP_COOKIE_REQUIRED);
        }
        if (!itr_cookie_verify(&ep->jar, from, e, cookie)) {
            itr_ep_security(ep, ITR_SEC_BAD_COOKIE, from, NULL);
            return itr_ep_drop(ep, NULL, ITR_DROP_BAD_COOKIE);
        }
    }
    /* 5. Limits: all sources, then this source IP. */
    if (ep->hs_resp_used >= ep->set.max_handshakes_in_flight) {
        itr_ep_security(ep, ITR_SEC_HANDSHAKE_FLOOD, from, NULL);
        return itr_ep_drop(ep, NULL, ITR_DROP_HANDSHAKE_LIMIT);
    }
    uint32_t same_ip = 0;
    for (uint32_t i = 0; i < ep->hs_resp_cap; i++)
        if (ep->hs_keys[i].initiator_id && memcmp(ep->hs_keys[i].ip, ip, 16) == 0)
            same_ip++;
    if (same_ip >= ep->set.max_handshakes_per_ip) {
        itr_ep_security(ep, ITR_SEC_HANDSHAKE_FLOOD, from, NULL);
        return itr_ep_drop(ep, NULL, ITR_DROP_HANDSHAKE_PER_IP);
    }
    /* 6. Only now: a slot, our ephemeral, the DH work. */
    itr_hs *hs = hs_alloc(ep, 0);
    if (!hs)
        return itr_ep_drop(ep, NULL, ITR_DROP_HANDSHAKE_LIMIT);
    hs->state = ITR_HS_R_WAIT_MSG3;
    hs->local_id = itr_ep_new_conn_id(ep);
    if (!hs->local_id || itr_ctab_insert(&ep->conns, hs->local_id, hs) != ITR_OK) {
        hs->local_id = 0;
        rc = itr_ep_drop(ep, NULL, ITR_DROP_HANDSHAKE_LIMIT);
        goto fail;
    }
    if (noise_init(ep, hs, (itr_suite)pkt[ITR_MSG1_SUITE_OFF], 0) != ITR_OK) {
        rc = itr_ep_drop(ep, NULL, ITR_DROP_CRYPTO);
        goto fail;
    }
    /* -> e (plus the plaintext payload, which the handshake hash binds). */
    if (itr_noise_read(&hs->noise, pkt + ITR_MSG1_E_OFF, ITR_NOISE_MSG1_LEN(MSG1_NOISE_LEN),
                       payload, sizeof(payload), &plen) != ITR_OK) {
        rc = itr_ep_drop(ep, NULL, ITR_DROP_BAD_HEADER);
        goto fail;
    }
    uint32_t repeated;
    itr_get_u32(payload, &repeated);
    if (plen != MSG1_NOISE_LEN || repeated != initiator_id || !all_zero(payload + 4, plen - 4)) {
        rc = itr_ep_drop(ep, NULL, ITR_DROP_BAD_HEADER);
        goto fail;
    }
    /* <- e, ee, s, es with payload R. */
    uint8_t r_payload[4];
    size_t n = 0;
    itr_put_u32(r_payload, hs->local_id);
    itr_ep_header(hs->msg, ITR_PT_HANDSHAKE, 0, 0, ITR_MSG2_LEN - ITR_HEADER_LEN, initiator_id, 2,
                  hs->local_id);
    if (itr_noise_write(&hs->noise, r_payload, sizeof(r_payload), hs->msg + ITR_HEADER_LEN,
                        sizeof(hs->msg) - ITR_HEADER_LEN, &n) != ITR_OK ||
        n != ITR_MSG2_LEN - ITR_HEADER_LEN) {
        /* ee or es gave an all-zero DH: a low-order ephemeral, abort (Noise §5). */
        rc = itr_ep_drop(ep, NULL, ITR_DROP_CRYPTO);
        goto fail;
    }
    hs->msg_len = ITR_MSG2_LEN;
    hs->remote_id = initiator_id;
    hs->addr = *from;
    memcpy(hs->peer_e, e, 32);
    ep->hs_keys[hs->index].initiator_id = initiator_id;
    memcpy(ep->hs_keys[hs->index].ip, ip, 16);
    hs->started_ns = now;
    hs->timeout_ns = now + ep->set.handshake_timeout_ns;
    itr_timerq_set(&ep->timers, &hs->timer, hs->timeout_ns);
    itr_ep_tx_copy(ep, from, hs->msg, hs->msg_len);
    return ITR_OK;
fail:
    ITR_STAT_ADD(ep, handshakes_failed, 1);
    itr_hs_free(ep, hs);
    return rc;
}

/* ---- responder: message 3 ---- */

/* The responder-role session of static key `key`, if any. */
static itr_session *find_responder_session(itr_endpoint *ep, const uint8_t *key, uint64_t hash)
{
    uint32_t pos = 0;
    itr_session *s;
    while ((s = itr_ctab_next(&ep->keys, hash, &pos)) != NULL)
        if (!(s->flags & ITR_SF_INITIATOR) && memcmp(s->static_key, key, ITR_KEY_LEN) == 0)
            return s;
    return NULL;
}

static int recv_msg3(itr_endpoint *ep, itr_hs *hs, const itr_addr *from, const uint8_t *pkt,
                     const itr_header *h, uint64_t now)
{
    itr_noise trial;
    uint8_t payload[MSG3_PAYLOAD_LEN], send_key[32], recv_key[32];
    size_t plen = 0;
    int rc;

    if (hs->initiator || hs->state != ITR_HS_R_WAIT_MSG3)
        return itr_ep_drop(ep, NULL, ITR_DROP_HANDSHAKE_STATE);
    if (h->ack != hs->remote_id)
        return itr_ep_drop(ep, NULL, ITR_DROP_BAD_HEADER);
    /* Same source as message 1, and Noise on a copy: failures leave the slot untouched until
     * its timeout, so a forged message 3 cannot cancel the real handshake. */
    if (!itr_ep_addr_equal(from, &hs->addr))
        return itr_ep_drop(ep, NULL, ITR_DROP_CRYPTO);
    trial = hs->noise;
    /* -> s, se */
    if (itr_noise_read(&trial, pkt + ITR_HEADER_LEN, ITR_MSG3_LEN - ITR_HEADER_LEN, payload,
                       sizeof(payload), &plen) != ITR_OK) {
        rc = itr_ep_drop(ep, NULL, ITR_DROP_CRYPTO);
        goto out;
    }
    if (plen != MSG3_PAYLOAD_LEN || (payload[8] & ~ITR_MSG3_REKEY) != 0 ||
        !all_zero(payload + 9, 7)) {
        rc = itr_ep_drop(ep, NULL, ITR_DROP_BAD_HEADER);
        goto out;
    }
    /* The application decides whether this static key is admitted (allowlist). */
    if (ep->cb.check_peer && ep->cb.check_peer(ep->user, trial.rs, from) != 0) {
        itr_ep_security(ep, ITR_SEC_REFUSED_KEY, from, trial.rs);
        ITR_STAT_ADD(ep, handshakes_failed, 1);
        itr_hs_free(ep, hs);
        rc = itr_ep_drop(ep, NULL, ITR_DROP_REFUSED_KEY);
        goto out;
    }
    if (itr_noise_split(&trial, send_key, recv_key) != ITR_OK) {
        rc = itr_ep_drop(ep, NULL, ITR_DROP_CRYPTO);
        goto out;
    }
    uint64_t session_id;
    itr_get_u64(payload, &session_id);
    int rekey = (payload[8] & ITR_MSG3_REKEY) != 0;
    uint64_t hash = itr_ep_key_hash(ep, trial.rs);
    itr_session *s = find_responder_session(ep, trial.rs, hash);
    int fresh = 0;
    if (s && !(rekey && s->session_id == session_id)) {
        /* The initiator restarted: the old session and its stream are gone. */
        itr_ep_session_close(ep, s, ITR_CLOSE_REPLACED, 0, now);
        s = NULL;
    }
    if (!s) {
        int err = 0;
        s = itr_ep_session_new(ep, trial.rs, from, 0, now, &err);
        if (!s) {
            ITR_STAT_ADD(ep, handshakes_failed, 1);
            itr_hs_free(ep, hs);
            rc = itr_ep_drop(ep, NULL, ITR_DROP_PEERS_FULL);
            goto out;
        }
        s->session_id = session_id;
        s->suite = trial.suite;
        fresh = 1;
    }
    itr_keypair *kp =
        kp_new(ep, s, (uint8_t)trial.suite, send_key, recv_key, hs->local_id, hs->remote_id, now);
    if (!kp) {
        ITR_STAT_ADD(ep, handshakes_failed, 1);
        itr_hs_free(ep, hs);
        if (fresh)
            itr_ep_session_close(ep, s, ITR_CLOSE_LOCAL, 0, now);
        rc = itr_ep_drop(ep, s, ITR_DROP_PEERS_FULL);
        goto out;
    }
    /* The slot's conn_id now names the keypair. */
    itr_ctab_replace(&ep->conns, hs->local_id, hs, kp);
    hs->local_id = 0;
    itr_hs_free(ep, hs);
    if (!fresh) {
        /* Rekey: the initiator already holds these keys, so they send at once (§8). */
        if (s->prev)
            itr_kp_free(ep, s->prev);
        s->prev = s->cur;
        s->prev_expire_ns = now + ep->set.old_keys_grace_ns;
        s->rekeys++;
        ITR_STAT_ADD(ep, rekeys, 1);
    }
    s->cur = kp;
    s->suite = kp->suite;
    s->addr = *from; /* message 3 authenticated the initiator from this address */
    s->rekey_at_ns = now + ep->set.rekey_after_ns + ITR_REKEY_REQUEST_DELAY_NS;
    ITR_STAT_ADD(ep, handshakes_completed, 1);
    if (fresh)
        itr_ep_session_open(ep, s, now);
    if (!(s->flags & ITR_SF_CLOSED)) {
        itr_ep_send_keepalive(ep, s, ITR_KA_CONFIRM, now);
        itr_ep_session_schedule(ep, s, now);
    }
    rc = ITR_OK;
out:
    itr_noise_wipe(&trial);
    sodium_memzero(send_key, sizeof(send_key));
    sodium_memzero(recv_key, sizeof(recv_key));
    sodium_memzero(payload, sizeof(payload));
    return rc;
}

/* Message 3 retransmitted after the keypair exists: re-confirm, no Noise work. */
static int reconfirm(itr_endpoint *ep, itr_keypair *kp, const itr_header *h, uint64_t now)
{
    itr_session *s = kp->session;
    if ((s->flags & ITR_SF_INITIATOR) || kp != s->cur || h->ack != kp->remote_id ||
        now - kp->created_ns > ep->set.handshake_timeout_ns)
        return itr_ep_drop(ep, s, ITR_DROP_HANDSHAKE_STATE);
    /* Unauthenticated trigger of a reply to the session's address: charge the bucket. */
    if (!itr_ratelimit_take(&ep->rl, &s->bucket, now))
        return itr_ep_drop(ep, s, ITR_DROP_RATE_LIMIT);
    itr_ep_send_keepalive(ep, s, ITR_KA_CONFIRM, now);
    return ITR_OK;
}

/* ---- initiator ---- */

int itr_hs_initiate(itr_endpoint *ep, itr_session *s, uint64_t now)
{
    itr_cookie_keys ck;
    uint8_t payload[MSG1_NOISE_LEN];
    size_t n = 0;
    int rc;

    itr_hs *hs = hs_alloc(ep, 1);
    if (!hs)
        return ITR_ERR_LIMIT;
    hs->state = ITR_HS_I_WAIT_MSG2;
    hs->local_id = itr_ep_new_conn_id(ep);
    if (!hs->local_id) {
        rc = ITR_ERR_LIMIT;
        goto fail;
    }
    if (itr_ctab_insert(&ep->conns, hs->local_id, hs) != ITR_OK) {
        hs->local_id = 0;
        rc = ITR_ERR_NOMEM;
        goto fail;
    }
    rc = noise_init(ep, hs, (itr_suite)s->suite, 1);
    if (rc != ITR_OK)
        goto fail;
    memset(hs->msg, 0, sizeof(hs->msg));
    itr_ep_header(hs->msg, ITR_PT_HANDSHAKE, 0, 0, ITR_MSG1_LEN - ITR_HEADER_LEN, 0, 1,
                  hs->local_id);
    hs->msg[ITR_MSG1_SUITE_OFF] = s->suite;
    memset(payload, 0, sizeof(payload));
    itr_put_u32(payload, hs->local_id);
    /* -> e */
    rc = itr_noise_write(&hs->noise, payload, sizeof(payload), hs->msg + ITR_MSG1_E_OFF,
                         ITR_MSG1_MAC1_OFF - ITR_MSG1_E_OFF, &n);
    if (rc != ITR_OK)
        goto fail;
    itr_cookie_keys_derive(&ck, s->static_key);
    itr_mac1_write(&ck, hs->msg);
    sodium_memzero(&ck, sizeof(ck));
    hs->msg_len = ITR_MSG1_LEN;
    hs->session = s;
    hs->rekey = s->cur != NULL;
    hs->addr = s->addr;
    hs->started_ns = now;
    hs->timeout_ns = now + ep->set.handshake_timeout_ns;
    hs->retry_interval_ns = ep->set.handshake_retry_ns;
    s->hs = hs;
    itr_timerq_set(&ep->timers, &hs->timer, now + hs->retry_interval_ns);
    ITR_STAT_ADD(ep, handshakes_initiated, 1);
    itr_ep_tx_copy(ep, &hs->addr, hs->msg, hs->msg_len);
    return ITR_OK;
fail:
    itr_hs_free(ep, hs);
    return rc;
}

static int recv_msg2(itr_endpoint *ep, itr_hs *hs, const uint8_t *pkt, const itr_header *h,
                     uint64_t now)
{
    itr_noise trial;
    uint8_t payload[4], out3[MSG3_PAYLOAD_LEN], send_key[32], recv_key[32];
    size_t plen = 0, n = 0;
    uint32_t r_id = 0;
    int rc;

    if (!hs->initiator || hs->state != ITR_HS_I_WAIT_MSG2)
        return itr_ep_drop(ep, NULL, ITR_DROP_HANDSHAKE_STATE);
    itr_session *s = hs->session;
    trial = hs->noise;
    /* <- e, ee, s, es: on a copy, so a forged message 2 leaves the handshake waiting. */
    if (itr_noise_read(&trial, pkt + ITR_HEADER_LEN, ITR_MSG2_LEN - ITR_HEADER_LEN, payload,
                       sizeof(payload), &plen) != ITR_OK) {
        rc = itr_ep_drop(ep, s, ITR_DROP_CRYPTO);
        goto out;
    }
    if (plen == 4)
        itr_get_u32(payload, &r_id);
    if (plen != 4 || r_id != h->ack || r_id == 0) {
        rc = itr_ep_drop(ep, s, ITR_DROP_BAD_HEADER);
        goto out;
    }
    /* The responder proved possession of a static key: is it the one we pinned? */
    if (!itr_ct_equal(trial.rs, s->static_key, ITR_KEY_LEN)) {
        rc = itr_ep_drop(ep, s, ITR_DROP_PINNED_KEY);
        itr_ep_security(ep, ITR_SEC_PINNED_KEY, &hs->addr, trial.rs);
        ITR_STAT_ADD(ep, handshakes_failed, 1);
        itr_hs_free(ep, hs);
        itr_ep_session_close(ep, s, ITR_CLOSE_REFUSED, 0, now);
        goto out;
    }
    /* -> s, se with session_id || flags || reserved. */
    memset(out3, 0, sizeof(out3));
    itr_put_u64(out3, s->session_id);
    out3[8] = hs->rekey ? ITR_MSG3_REKEY : 0;
    uint8_t msg3[ITR_MSG3_LEN];
    itr_ep_header(msg3, ITR_PT_HANDSHAKE, 0, 0, ITR_MSG3_LEN - ITR_HEADER_LEN, r_id, 3,
                  hs->local_id);
    if (itr_noise_write(&trial, out3, sizeof(out3), msg3 + ITR_HEADER_LEN,
                        ITR_MSG3_LEN - ITR_HEADER_LEN, &n) != ITR_OK ||
        n != ITR_MSG3_LEN - ITR_HEADER_LEN ||
        itr_noise_split(&trial, send_key, recv_key) != ITR_OK) {
        rc = itr_ep_drop(ep, s, ITR_DROP_CRYPTO);
        goto out;
    }
    itr_keypair *kp = kp_new(ep, s, s->suite, send_key, recv_key, hs->local_id, r_id, now);
    if (!kp) {
        rc = itr_ep_drop(ep, s, ITR_DROP_PEERS_FULL);
        goto out;
    }
    /* Commit: the Noise state is no longer needed (forward secrecy: wipe it now). */
    itr_noise_wipe(&hs->noise);
    if (s->next)
        itr_kp_free(ep, s->next);
    s->next = kp;
    itr_ctab_replace(&ep->conns, hs->local_id, hs, kp);
    hs->remote_id = r_id;
    hs->state = ITR_HS_I_WAIT_CONFIRM;
    memcpy(hs->msg, msg3, ITR_MSG3_LEN);
    hs->msg_len = ITR_MSG3_LEN;
    hs->retry_interval_ns = ep->set.handshake_retry_ns;
    itr_timerq_set(&ep->timers, &hs->timer, now + hs->retry_interval_ns);
    itr_ep_tx_copy(ep, &hs->addr, hs->msg, hs->msg_len);
    rc = ITR_OK;
out:
    itr_noise_wipe(&trial);
    sodium_memzero(send_key, sizeof(send_key));
    sodium_memzero(recv_key, sizeof(recv_key));
    return rc;
}

void itr_hs_confirm(itr_endpoint *ep, itr_session *s, uint64_t now)
{
    itr_keypair *kp = s->next;
    if (!kp)
        return;
    s->next = NULL;
    if (s->cur) {
        if (s->prev)
            itr_kp_free(ep, s->prev);
        s->prev = s->cur;
        s->prev_expire_ns = now + ep->set.old_keys_grace_ns;
        s->rekeys++;
        ITR_STAT_ADD(ep, rekeys, 1);
        itr_ep_session_timer_lower(ep, s, s->prev_expire_ns);
    }
    s->cur = kp;
    s->rekey_at_ns = kp->created_ns + ep->set.rekey_after_ns;
    if (s->hs) {
        ITR_STAT_ADD(ep, handshakes_completed, 1);
        itr_hs_free(ep, s->hs);
    }
    if (!(s->flags & ITR_SF_ESTABLISHED))
        itr_ep_session_open(ep, s, now);
}

int itr_hs_recv_cookie_reply(itr_endpoint *ep, const itr_addr *from, const uint8_t *pkt, size_t len,
                             const itr_header *h, uint64_t now)
{
    itr_cookie_keys ck;
    uint8_t cookie[16];
    (void)from;
    (void)now;
    if (len != ITR_COOKIE_REPLY_LEN || h->seq != 0 || h->ack != 0)
        return itr_ep_drop(ep, NULL, ITR_DROP_BAD_HEADER);
    const uint8_t *ref = itr_ctab_find(&ep->conns, h->conn_id);
    if (!ref || *ref != ITR_REF_HANDSHAKE)
        return itr_ep_drop(ep, NULL, ITR_DROP_HANDSHAKE_STATE);
    itr_hs *hs = (itr_hs *)(uintptr_t)ref;
    if (!hs->initiator || hs->state != ITR_HS_I_WAIT_MSG2)
        return itr_ep_drop(ep, NULL, ITR_DROP_HANDSHAKE_STATE);
    itr_cookie_keys_derive(&ck, hs->session->static_key);
    int rc = itr_cookie_reply_read(pkt, len, &ck, hs->msg + ITR_MSG1_MAC1_OFF, cookie);
    sodium_memzero(&ck, sizeof(ck));
    if (rc != ITR_OK)
        return itr_ep_drop(ep, hs->session, ITR_DROP_CRYPTO);
    /* A replayed reply carries the cookie we already use: nothing to resend (an on-path
     * replayer must not make us send message 1 again and again). */
    if (itr_ct_equal(hs->msg + ITR_MSG1_COOKIE_OFF, cookie, 16))
        return itr_ep_drop(ep, hs->session, ITR_DROP_HANDSHAKE_STATE);
    /* Same I, same e, same mac1 (the cookie field is outside it): resend at once. */
    memcpy(hs->msg + ITR_MSG1_COOKIE_OFF, cookie, 16);
    itr_ep_tx_copy(ep, &hs->addr, hs->msg, hs->msg_len);
    return ITR_OK;
}

int itr_hs_recv_handshake(itr_endpoint *ep, const itr_addr *from, const uint8_t *pkt, size_t len,
                          const itr_header *h, uint64_t now)
{
    static const size_t lens[4] = {0, ITR_MSG1_LEN, ITR_MSG2_LEN, ITR_MSG3_LEN};
    if (h->seq < 1 || h->seq > 3 || len != lens[h->seq])
        return itr_ep_drop(ep, NULL, ITR_DROP_BAD_HEADER);
    if (h->seq == 1)
        return recv_msg1(ep, from, pkt, len, h, now);
    if (h->conn_id == 0)
        return itr_ep_drop(ep, NULL, ITR_DROP_BAD_HEADER);
    const uint8_t *ref = itr_ctab_find(&ep->conns, h->conn_id);
    if (!ref)
        return itr_ep_drop(ep, NULL, ITR_DROP_UNKNOWN_CONN);
    if (*ref == ITR_REF_KEYPAIR) {
        itr_keypair *kp = (itr_keypair *)(uintptr_t)ref;
        if (h->seq == 3)
            return reconfirm(ep, kp, h, now);
        return itr_ep_drop(ep, kp->session, ITR_DROP_HANDSHAKE_STATE);
    }
    itr_hs *hs = (itr_hs *)(uintptr_t)ref;
    if (h->seq == 2)
        return recv_msg2(ep, hs, pkt, h, now);
    return recv_msg3(ep, hs, from, pkt, h, now);
}

void itr_hs_on_timer(itr_endpoint *ep, itr_hs *hs, uint64_t now)
{
    if (hs->state == ITR_HS_FREE)
        return;
    if (!hs->initiator) {
        /* A responder slot lives handshake_timeout after message 1, then is freed. */
        if (now >= hs->timeout_ns) {
            ITR_STAT_ADD(ep, handshakes_failed, 1);
            itr_hs_free(ep, hs);
        } else {
            itr_timerq_set(&ep->timers, &hs->timer, hs->timeout_ns);
        }
        return;
    }
    itr_session *s = hs->session;
    if (now >= hs->timeout_ns) {
        ITR_STAT_ADD(ep, handshakes_failed, 1);
        if (hs->state == ITR_HS_I_WAIT_CONFIRM && s->next) {
            itr_kp_free(ep, s->next);
            s->next = NULL;
        }
        itr_hs_free(ep, hs);
        if (!(s->flags & ITR_SF_ESTABLISHED)) {
            itr_ep_session_close(ep, s, ITR_CLOSE_HANDSHAKE_TIMEOUT, 0, now);
        } else {
            /* A failed rekey: the old keys serve until reject_after; try again soon. */
            s->rekey_at_ns = now + ep->set.handshake_retry_ns;
            itr_ep_session_schedule(ep, s, now);
        }
        return;
    }
    /* Retransmit the same bytes (same I, e and cookie; or the same message 3), backing off. */
    itr_ep_tx_copy(ep, &hs->addr, hs->msg, hs->msg_len);
    hs->retry_interval_ns *= 2;
    uint64_t next = now + hs->retry_interval_ns;
    itr_timerq_set(&ep->timers, &hs->timer, next < hs->timeout_ns ? next : hs->timeout_ns);
}
