/* itr_session.h: internal structures of the IO-free endpoint, shared by itr_endpoint.c (packet
 * dispatch, sessions, timers, API), itr_handshake.c (handshake slots, Noise, cookies, rekeys)
 * and itr_reliable.c (Reliable streams). Not installed; tests and fuzzers include it through
 * intentra_internal for white-box checks (sizes, pool accounting, deterministic randomness).
 *
 * Ownership: everything here belongs to the endpoint's thread. The only field read from other
 * threads is ep->stats, written with relaxed atomic stores (ITR_STAT_*).
 */
#ifndef ITR_SESSION_H
#define ITR_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>

#include "itr_conntab.h"
#include "itr_cookie.h"
#include "itr_crypto.h"
#include "itr_noise.h"
#include "itr_pool.h"
#include "itr_ratelimit.h"
#include "itr_reliable.h"
#include "itr_replay.h"
#include "itr_strikes.h"
#include "itr_timerq.h"
#include "itr_wire.h"

/* What a conn table value or a timer belongs to (first byte of keypairs and slots). */
enum { ITR_REF_KEYPAIR = 1, ITR_REF_HANDSHAKE = 2, ITR_REF_SESSION = 3 };

/* PROTOCOL.md §6: a keypair never sends with n >= 2^32 - 2^16; rekeying starts at 2^32 - 2^20. */
#define ITR_REJECT_AFTER_MESSAGES (((uint64_t)1 << 32) - ((uint64_t)1 << 16))
#define ITR_REKEY_AFTER_MESSAGES  (((uint64_t)1 << 32) - ((uint64_t)1 << 20))
/* The responder asks for a rekey this long after rekey_after (PROTOCOL.md §8). */
#define ITR_REKEY_REQUEST_DELAY_NS (10ull * 1000000000ull)
/* Longest Noise prologue an endpoint accepts in its settings. */
#define ITR_PROLOGUE_MAX 256
/* Timer work that could not be done (transmit ring full) is retried after this long. */
#define ITR_RETRY_NS (1000000ull)

typedef struct itr_session itr_session;

/* One key period of a session (PROTOCOL.md §8). 256 bytes: raw keys only; the expanded AES
 * state lives in the endpoint's itr_aead_cache under (&send_key or &recv_key, gen). */
typedef struct itr_keypair {
    uint8_t kind;  /* ITR_REF_KEYPAIR */
    uint8_t suite; /* itr_suite */
    uint32_t local_id, remote_id;
    uint64_t send_n;     /* next packet counter */
    uint64_t created_ns; /* when Split() produced it */
    uint64_t gen;        /* AEAD cache identity, unique per endpoint */
    itr_session *session;
    itr_replay replay;
    uint8_t send_key[32], recv_key[32];
} itr_keypair;

/* Slot states of the handshake table. */
enum itr_hs_state {
    ITR_HS_FREE = 0,
    ITR_HS_I_WAIT_MSG2,    /* initiator: message 1 sent (maybe with cookie) */
    ITR_HS_I_WAIT_CONFIRM, /* initiator: message 3 sent, keys in session->next */
    ITR_HS_R_WAIT_MSG3,    /* responder: message 2 sent */
};

/* A handshake in flight, either role (~700 bytes, preallocated). */
typedef struct itr_hs {
    uint8_t kind;      /* ITR_REF_HANDSHAKE */
    uint8_t state;     /* enum itr_hs_state */
    uint8_t initiator; /* role */
    uint8_t rekey;     /* initiator: REKEY flag in message 3 */
    uint32_t index;    /* position in ep->hs */
    uint32_t local_id, remote_id;
    itr_timed timer; /* retransmit (initiator) or slot timeout (responder) */
    uint64_t started_ns, timeout_ns, retry_interval_ns;
    itr_addr addr;             /* peer address (responder: message 1's source) */
    itr_session *session;      /* initiator: the session this handshake opens or rekeys */
    uint8_t peer_e[32];        /* responder: initiator's ephemeral (duplicate detection) */
    uint16_t msg_len;          /* bytes of msg */
    uint8_t msg[ITR_MSG1_LEN]; /* last handshake message we sent, resent as is */
    itr_noise noise;
} itr_hs;

/* What the duplicate and per-IP checks of message 1 (PROTOCOL.md §4.1 steps 3 and 5) compare,
 * kept apart from the ~600-byte slots so a flood scans 20 bytes per slot, not a cache line. */
typedef struct itr_hs_key {
    uint32_t initiator_id; /* 0: slot free */
    uint8_t ip[16];
} itr_hs_key;

/* Per tx pool slot: one unacknowledged Reliable message (slot holds mseq || envelope). */
typedef struct itr_txmeta {
    uint64_t first_sent_ns; /* RTT sample for messages sent once */
    uint64_t last_sent_ns;  /* latest transmission (loss detection) */
    uint64_t deadline_ns;   /* next retransmission unless received */
    uint32_t seq;
    uint16_t len;
    uint8_t priority;
    uint8_t backoff;       /* retransmissions so far (RTO doubles) */
    uint8_t received;      /* peer holds it (received/SACK), not yet acknowledged */
    uint8_t retransmitted; /* no RTT sample (Karn) */
} itr_txmeta;

/* Per reorder pool slot: one Reliable message ahead of the next expected one. */
typedef struct itr_rxmeta {
    uint32_t seq;
    uint16_t len;
    uint8_t priority;
} itr_rxmeta;

/* Session flags. */
enum {
    ITR_SF_INITIATOR = 1u << 0,
    ITR_SF_ESTABLISHED = 1u << 1, /* peer_open fired; sending allowed */
    ITR_SF_CLOSED = 1u << 2,      /* closed: waiting to be freed (zombie) */
    ITR_SF_ACK_NOW = 1u << 3,     /* send an ACK at the next flush */
    ITR_SF_IN_FLUSH = 1u << 4,    /* on ep->flush_head */
    ITR_SF_WANT_WINDOW = 1u << 5, /* got WOULDBLOCK on a full window: call writable */
    ITR_SF_WANT_POOL = 1u << 6,   /* got WOULDBLOCK on an empty tx pool: on ep->wait_head */
    ITR_SF_DELIVERING = 1u << 7,  /* inside the message callback (ack of rcv_nxt allowed) */
    ITR_SF_SILENT = 1u << 8,      /* closed without peer_close (connect that never started) */
};

/* A session (PROTOCOL.md §5). Together with its current keypair <= 1 KiB when idle. */
struct itr_session {
    itr_timed timer;
    itr_keypair *cur, *prev, *next;
    struct itr_hs *hs;       /* initiator: handshake in progress (connect or rekey) */
    itr_session *flush_next; /* ep->flush_head list */
    itr_session *wait_next;  /* ep->wait_head list, or the zombie list once closed */
    uint64_t session_id;
    uint64_t opened_ns, last_recv_ns, last_sent_ns;
    uint64_t prev_expire_ns; /* previous keypair wiped at this time */
    uint64_t rekey_at_ns;    /* initiator: next rekey attempt; responder: REKEY_REQUEST */
    uint64_t ack_due_ns;     /* delayed ACK (received advanced), 0: none */
    /* Reliable send stream */
    itr_rtt rtt;
    uint64_t rtx_due_ns;   /* lower bound of the earliest retransmission, 0: none */
    uint64_t probe_due_ns; /* KEEPALIVE(ACK_REQUEST) when all sent are received, 0: none */
    uint64_t probe_interval_ns;
    uint32_t snd_una, snd_nxt;    /* oldest unacknowledged, next to send */
    uint32_t peer_received;       /* highest `received` the peer reported */
    uint32_t tx_head, tx_tail;    /* tx pool slots in sequence order, linked through the pool */
    uint16_t tx_count, tx_unrecv; /* unacknowledged; of those, not known received */
    uint32_t rt_mseq;             /* Realtime message counter */
    /* Reliable receive stream */
    uint32_t rcv_nxt;      /* next to deliver: `received` */
    uint32_t rcv_ack;      /* all below acknowledged by the application: `ack` */
    uint32_t reorder_head; /* reorder pool slots in sequence order */
    uint32_t reorder_bytes;
    uint8_t reorder_have[ITR_BITMAP_BYTES]; /* seq & 255: message in the reorder buffer */
    uint8_t app_acked[ITR_BITMAP_BYTES];    /* seq & 255: delivered and acknowledged, > ack */
    itr_addr addr;
    uint8_t static_key[ITR_KEY_LEN];
    uint64_t key_hash; /* ep->keys table key */
    itr_bucket bucket;
    itr_strikes strikes;
    uint32_t slot, gen; /* itr_peer_id parts */
    uint32_t flags;     /* ITR_SF_* */
    uint8_t suite;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out, drops, retransmits, rekeys;
};

typedef struct itr_peer_slot {
    itr_session *s; /* NULL when free */
    uint32_t gen;   /* generation of the current or last occupant; never repeats */
} itr_peer_slot;

struct itr_endpoint {
    itr_settings set; /* validated copy; set.prologue points at prologue[] */
    uint8_t prologue[ITR_PROLOGUE_MAX];
    itr_callbacks cb;
    void *user;
    uint8_t static_pub[ITR_KEY_LEN];
    itr_cookie_keys cookie_keys; /* derived from our static public key (responder) */
    itr_cookie_jar jar;
    itr_ratelimit rl;
    itr_aead_cache *aead; /* NULL when aead_cache_entries == 0 */
    itr_stats stats;      /* ITR_STAT_* only */

    /* Transmit ring: ring_cap slots of max_packet bytes. */
    uint8_t *ring_mem;
    itr_addr *ring_addr;
    uint32_t *ring_len;
    uint32_t ring_head, ring_count, ring_cap;

    itr_pool txpool; /* unacknowledged Reliable sends */
    itr_txmeta *txmeta;
    itr_pool rxpool; /* reorder buffers */
    itr_rxmeta *rxmeta;

    itr_hs *hs;          /* hs_resp_cap responder slots then hs_init_cap initiator slots */
    itr_hs_key *hs_keys; /* per responder slot, for the scans of every message 1 */
    uint32_t *hs_free;   /* stack of free responder slot indexes, then initiator ones */
    uint32_t hs_resp_cap, hs_init_cap;
    uint32_t hs_resp_used, hs_init_used;

    itr_ctab conns; /* local conn_id -> itr_keypair / itr_hs */
    itr_ctab keys;  /* keyed hash of peer static key -> itr_session */
    uint8_t keyhash_key[16];
    itr_timerq timers;

    itr_peer_slot *peers; /* max_peers */
    uint32_t *peer_free;  /* stack of free slot indexes */
    uint32_t peer_free_n;
    uint32_t sessions;

    itr_session *flush_head; /* sessions with an ACK due at flush */
    itr_session *wait_head;  /* sessions waiting for tx pool room */
    itr_session *zombies;    /* closed sessions, freed when the outermost call returns */
    unsigned depth;          /* API call nesting (callbacks may call back in) */
    int notify_pool;         /* tx pool slots were freed: wake waiting sessions */

    uint64_t kp_gen;      /* next keypair generation */
    size_t session_bytes; /* malloc'd sessions + keypairs, for memory accounting */
    /* Noise states right after Initialize() for [suite - 1][initiator], without an ephemeral:
     * a handshake copies one and adds its ephemeral, so the static public key is not
     * recomputed (one X25519 base multiplication of five per handshake side). */
    itr_noise noise_tmpl[2][2];
    void (*rng)(void *arg, void *buf, size_t len); /* tests: deterministic randomness */
    void *rng_arg;
    uint8_t rx_buf[ITR_MAX_PACKET]; /* decrypted plaintext of the datagram being processed */
};

/* Relaxed single-writer counters: the endpoint thread reads its own writes plainly and
 * publishes with a relaxed store, so readers on other threads never see torn values. */
#define ITR_STAT_ADD(ep, field, v) \
    __atomic_store_n(&(ep)->stats.field, (ep)->stats.field + (uint64_t)(v), __ATOMIC_RELAXED)
#define ITR_STAT_SUB(ep, field, v) \
    __atomic_store_n(&(ep)->stats.field, (ep)->stats.field - (uint64_t)(v), __ATOMIC_RELAXED)

/* ---- itr_endpoint.c ---- */

/* Count a drop (endpoint and, when known, session) and return -(1 + r). */
int itr_ep_drop(itr_endpoint *ep, itr_session *s, itr_drop_reason r);
void itr_ep_security(itr_endpoint *ep, itr_security_event ev, const itr_addr *from,
                     const uint8_t *key);
void itr_ep_random(itr_endpoint *ep, void *buf, size_t len);
/* Reserve the next transmit ring slot (max_packet bytes), or NULL when the ring is full. */
uint8_t *itr_ep_tx_reserve(itr_endpoint *ep);
/* Queue the reserved slot as a datagram of len bytes to `to`. */
void itr_ep_tx_commit(itr_endpoint *ep, const itr_addr *to, size_t len);
/* Queue a handshake-layer datagram (copying it); a full ring is drop(tx_ring_full). */
int itr_ep_tx_copy(itr_endpoint *ep, const itr_addr *to, const uint8_t *pkt, size_t len);
/* Seal a transport packet under kp to the session's address. pt (ptlen bytes) may already be
 * in place at the reserved slot + 16. Returns ITR_OK, ITR_ERR_WOULDBLOCK (ring full: counted
 * as drop(tx_ring_full) when `internal`), ITR_ERR_CLOSED (counter exhausted). */
int itr_ep_seal_send(itr_endpoint *ep, itr_session *s, itr_keypair *kp, uint8_t type,
                     uint8_t intent, uint8_t priority, const uint8_t *pt, size_t ptlen,
                     int internal, uint64_t now);
/* 1 if kp may not send any more (counter at reject_after_messages); then a rekey is due now. */
int itr_ep_counter_exhausted(itr_endpoint *ep, itr_session *s, const itr_keypair *kp, uint64_t now);
/* Sealed KEEPALIVE with flags under the session's current keypair. */
int itr_ep_send_keepalive(itr_endpoint *ep, itr_session *s, uint8_t flags, uint64_t now);
/* A fresh local conn_id (random, nonzero, unique, right residue). */
uint32_t itr_ep_new_conn_id(itr_endpoint *ep);
/* Allocate and register a session (peer id, tables). NULL: ITR_ERR_LIMIT or _NOMEM in *err. */
itr_session *itr_ep_session_new(itr_endpoint *ep, const uint8_t static_key[ITR_KEY_LEN],
                                const itr_addr *addr, int initiator, uint64_t now, int *err);
/* Close: optionally send CLOSE(why), release everything, report peer_close, then park the
 * struct on the zombie list (freed when the outermost API call returns). Idempotent. */
void itr_ep_session_close(itr_endpoint *ep, itr_session *s, itr_close_reason why, int send_close,
                          uint64_t now);
/* Re-arm the session's timer at its next deadline (lower bound semantics, itr_timerq.h). */
void itr_ep_session_schedule(itr_endpoint *ep, itr_session *s, uint64_t now);
void itr_ep_session_timer_lower(itr_endpoint *ep, itr_session *s, uint64_t deadline);
/* A strike against an authenticated peer; closes the session at strike_limit. Returns the
 * drop code of r. */
int itr_ep_strike(itr_endpoint *ep, itr_session *s, itr_drop_reason r, uint64_t now);
/* The session's peer_open (established for the first time). */
void itr_ep_session_open(itr_endpoint *ep, itr_session *s, uint64_t now);
/* Put the session on the flush list with an ACK due. */
void itr_ep_want_ack(itr_endpoint *ep, itr_session *s);
itr_peer_id itr_ep_peer_id(const itr_session *s);
/* Keyed hash of a static key for ep->keys. */
uint64_t itr_ep_key_hash(const itr_endpoint *ep, const uint8_t key[ITR_KEY_LEN]);

/* Same IP and port (ignores .local). */
int itr_ep_addr_equal(const itr_addr *a, const itr_addr *b);
/* The IP as 16 bytes, IPv4 mapped to ::ffff:a.b.c.d (zeros for other families). */
void itr_ep_addr_ip16(const itr_addr *a, uint8_t ip[16]);
/* Write a 16-byte header. */
void itr_ep_header(uint8_t *p, uint8_t type, uint8_t intent, uint8_t priority, uint16_t payload_len,
                   uint32_t conn_id, uint32_t seq, uint32_t ack);

/* ---- itr_handshake.c ---- */

/* Fill ep->noise_tmpl (at creation). Returns ITR_OK or ITR_ERR_CRYPTO. */
int itr_hs_templates_init(itr_endpoint *ep);

int itr_hs_recv_handshake(itr_endpoint *ep, const itr_addr *from, const uint8_t *pkt, size_t len,
                          const itr_header *h, uint64_t now);
int itr_hs_recv_cookie_reply(itr_endpoint *ep, const itr_addr *from, const uint8_t *pkt, size_t len,
                             const itr_header *h, uint64_t now);
/* Initiator: start the handshake of a new session (connect) or a rekey of s. */
int itr_hs_initiate(itr_endpoint *ep, itr_session *s, uint64_t now);
/* Initiator: the first packet authenticated under s->next: rotate keys, finish the handshake. */
void itr_hs_confirm(itr_endpoint *ep, itr_session *s, uint64_t now);
void itr_hs_on_timer(itr_endpoint *ep, itr_hs *hs, uint64_t now);
/* Release a slot (wipes the Noise state, unregisters its conn_id if it still owns it). */
void itr_hs_free(itr_endpoint *ep, itr_hs *hs);
/* Wipe and free a keypair (unregisters its conn_id, drops its AEAD cache entries). */
void itr_kp_free(itr_endpoint *ep, itr_keypair *kp);
/* The expanded AEAD state of a keypair direction (NULL: none, expand per call). */
const itr_aead_state *itr_kp_state(itr_endpoint *ep, itr_keypair *kp, int send);

/* ---- itr_reliable.c ---- */

void itr_rel_init(itr_endpoint *ep, itr_session *s);
/* Give back every pool slot of the session (close). */
void itr_rel_release(itr_endpoint *ep, itr_session *s);
/* Queue and transmit one Reliable message. Errors: ITR_ERR_WOULDBLOCK, ITR_ERR_TOO_BIG. */
int itr_rel_send(itr_endpoint *ep, itr_session *s, uint8_t priority, const char *topic,
                 size_t topic_len, const void *body, size_t body_len, uint32_t *seq_out,
                 uint64_t now);
/* Is a peer's acknowledgement `ack` (and, for ACK packets, `received`) within what we sent?
 * 1 = ok. */
int itr_rel_ack_valid(const itr_session *s, uint32_t ack);
/* Apply the header's cumulative ack (already validated). */
void itr_rel_on_ack(itr_endpoint *ep, itr_session *s, uint32_t ack, uint64_t now);
/* Apply an ACK packet's received and sack (already validated). */
void itr_rel_on_received(itr_endpoint *ep, itr_session *s, uint32_t received, const uint8_t *sack,
                         uint64_t now);
/* A Reliable DATA plaintext (mseq || envelope, envelope already validated). Returns ITR_OK or
 * a drop code. */
int itr_rel_on_data(itr_endpoint *ep, itr_session *s, uint8_t priority, const uint8_t *pt,
                    size_t ptlen, uint64_t now);
/* The application acknowledges a delivered message. Errors: ITR_ERR_INVALID. */
int itr_rel_app_ack(itr_endpoint *ep, itr_session *s, uint32_t seq);
/* Send the ACK packet now. */
int itr_rel_send_ack(itr_endpoint *ep, itr_session *s, uint64_t now);
/* Retransmissions, probes and delayed ACKs due at now. */
void itr_rel_on_timer(itr_endpoint *ep, itr_session *s, uint64_t now);
/* Earliest Reliable deadline, UINT64_MAX if none. */
uint64_t itr_rel_next_deadline(const itr_session *s);
/* Wake sessions waiting for tx pool room (after slots were freed). */
void itr_rel_notify_pool(itr_endpoint *ep);
/* Delivered and not yet acknowledged by the application. */
uint32_t itr_rel_unacked_in(const itr_session *s);

/* ---- test hooks (internal, not in the public API) ---- */

/* Replace the randomness used for conn ids, ephemeral keys, session ids and cookie secrets
 * by fn (deterministic tests and fuzzers). NULL restores the system RNG. */
void itr_endpoint_test_rng(itr_endpoint *ep, void (*fn)(void *arg, void *buf, size_t len),
                           void *arg);
/* Bytes allocated for sessions and keypairs right now, and for the fixed pools and tables. */
size_t itr_endpoint_test_session_bytes(const itr_endpoint *ep);
size_t itr_endpoint_test_fixed_bytes(const itr_endpoint *ep);
/* Seal an arbitrary transport packet as session `peer` would (current keypair, next counter,
 * current ack), for tests that need authenticated but malformed plaintexts. type/byte1 go
 * into the header as given. Returns the packet length, or a negative itr_error. */
int itr_endpoint_test_seal(itr_endpoint *ep, itr_peer_id peer, uint8_t type, uint8_t byte1,
                           const uint8_t *pt, size_t ptlen, uint8_t *out, size_t cap);
/* The local conn_id of the session's current keypair (0 if none). */
uint32_t itr_endpoint_test_conn_id(const itr_endpoint *ep, itr_peer_id peer);
/* Handshake slots in use (responder, initiator). */
void itr_endpoint_test_hs_used(const itr_endpoint *ep, uint32_t *resp, uint32_t *init);

#endif
