/* intentra/endpoint.h: the IO-free protocol core.
 *
 * An itr_endpoint is one local identity (a static X25519 key) with any number of sessions, as
 * responder (accepting handshakes) and/or initiator (itr_endpoint_connect). It never touches a
 * socket or a clock: datagrams and the current time go in (itr_endpoint_recv,
 * itr_endpoint_on_expiry), datagrams come out through a bounded transmit ring
 * (itr_endpoint_tx_peek / _tx_consume) and events through callbacks. itr_endpoint_expiry says
 * when to call back in. docs/PROTOCOL.md is the normative description of what goes on the wire.
 *
 * Threading: an endpoint belongs to one thread. The only exception is itr_endpoint_stats(),
 * which may be called from any thread (counters are single-writer atomics).
 *
 * Time: every `now` is a monotonic clock in nanoseconds (CLOCK_MONOTONIC in the driver; any
 * scripted clock in tests). It must never go backwards.
 *
 * Memory: everything is allocated by itr_endpoint_new (pools sized by itr_settings) or when a
 * handshake completes (one session). Receiving, sending, acknowledging and timers allocate
 * nothing.
 */
#ifndef INTENTRA_ENDPOINT_H
#define INTENTRA_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <intentra/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ITR_KEY_LEN         32   /* X25519 public and private keys */
#define ITR_HEADER_LEN      16   /* fixed packet header */
#define ITR_TAG_LEN         16   /* AEAD tag */
#define ITR_MAX_PACKET      2048 /* largest datagram we send or accept, header included */
#define ITR_MAX_TOPIC       128  /* longest topic name */
#define ITR_RELIABLE_WINDOW 256  /* at most this many unacknowledged Reliable messages */

/* Cipher suites an initiator may choose; a responder accepts both. */
typedef enum itr_suite {
    ITR_SUITE_AESGCM = 1,     /* Noise_XX_25519_AESGCM_SHA256 */
    ITR_SUITE_CHACHAPOLY = 2, /* Noise_XX_25519_ChaChaPoly_SHA256 (no AES hardware) */
} itr_suite;

typedef enum itr_intent {
    ITR_INTENT_REALTIME = 0, /* at once, never duplicated, may be lost */
    ITR_INTENT_RELIABLE = 1, /* in order, exactly once, acknowledged end to end */
} itr_intent;

typedef enum itr_cookie_mode {
    ITR_COOKIE_OFF = 0,
    ITR_COOKIE_UNDER_LOAD = 1, /* default: demand a cookie when handshakes in flight >= threshold */
    ITR_COOKIE_ALWAYS = 2,
} itr_cookie_mode;

/* A UDP address. `local` is opaque to the core: the driver stores the index of the socket the
 * datagram arrived on, and the core copies it into replies so they leave by the same socket. */
typedef struct itr_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    uint32_t local;
} itr_addr;

/* Handle of a session. 0 is never a valid id; ids of closed sessions are never reused (they
 * carry a generation), so a late itr_endpoint_ack on a closed session returns ITR_ERR_NOT_FOUND
 * instead of acknowledging someone else's message. */
typedef uint64_t itr_peer_id;

/* Why a session ended. */
typedef enum itr_close_reason {
    ITR_CLOSE_LOCAL = 0,         /* itr_endpoint_close_peer */
    ITR_CLOSE_REMOTE,            /* the peer sent CLOSE */
    ITR_CLOSE_IDLE,              /* nothing authenticated for idle_timeout */
    ITR_CLOSE_STRIKES,           /* strike_limit violations within strike_window */
    ITR_CLOSE_REPLACED,          /* the same static key opened a new session */
    ITR_CLOSE_HANDSHAKE_TIMEOUT, /* initiator: no session within handshake_timeout */
    ITR_CLOSE_KEY_EXPIRED,       /* keys too old and no rekey happened */
    ITR_CLOSE_REFUSED,           /* initiator: responder key did not match the pinned key */
    ITR_CLOSE_SHUTDOWN,          /* itr_endpoint_free */
    ITR_CLOSE_REASON_COUNT
} itr_close_reason;

/* Why a datagram was dropped. Every drop is counted under exactly one reason. */
typedef enum itr_drop_reason {
    ITR_DROP_TOO_SHORT = 0,    /* shorter than a header (+ tag) */
    ITR_DROP_TOO_LONG,         /* longer than max_packet */
    ITR_DROP_BAD_VERSION,      /* version nibble != 1 */
    ITR_DROP_BAD_TYPE,         /* unknown packet type */
    ITR_DROP_BAD_HEADER,       /* reserved bits, payload_len mismatch, bad intent, bad field */
    ITR_DROP_UNKNOWN_CONN,     /* conn_id names no session or handshake */
    ITR_DROP_RATE_LIMIT,       /* per-peer token bucket empty (checked before decryption) */
    ITR_DROP_CRYPTO,           /* AEAD tag or handshake decryption failed */
    ITR_DROP_REPLAY,           /* counter already seen or left of the 1,024-packet window */
    ITR_DROP_BAD_MAC1,         /* handshake initiation not addressed to our static key */
    ITR_DROP_BAD_COOKIE,       /* echoed cookie wrong or stale */
    ITR_DROP_COOKIE_REQUIRED,  /* initiation without cookie while cookies are demanded */
    ITR_DROP_HANDSHAKE_LIMIT,  /* max_handshakes_in_flight reached */
    ITR_DROP_HANDSHAKE_PER_IP, /* max_handshakes_per_ip reached for this source address */
    ITR_DROP_HANDSHAKE_STATE,  /* handshake message not expected in this state */
    ITR_DROP_REFUSED_KEY,      /* static key refused by the application (allowlist) */
    ITR_DROP_PINNED_KEY,       /* responder static key differs from the pinned key */
    ITR_DROP_PEERS_FULL,       /* max_peers sessions already */
    ITR_DROP_BAD_ENVELOPE,     /* DATA plaintext too short or topic invalid (strike) */
    ITR_DROP_BAD_ACK,          /* acknowledgement outside what was sent (strike) */
    ITR_DROP_WINDOW,           /* Reliable sequence beyond the 256-message window (strike) */
    ITR_DROP_BAD_FRAME,        /* other malformed authenticated plaintext (strike) */
    ITR_DROP_DUPLICATE,        /* Reliable message already delivered (re-acknowledged) */
    ITR_DROP_REORDER_FULL,     /* reorder buffer over its byte bound (sender retransmits) */
    ITR_DROP_DEFERRED,         /* application could not take a Reliable message now */
    ITR_DROP_KEY_EXPIRED,      /* packet under keys past their lifetime */
    ITR_DROP_TX_RING_FULL,     /* outgoing datagram not queued: transmit ring full */
    ITR_DROP_REASON_COUNT
} itr_drop_reason;

/* Security events are reported to the application (which rate-limits its logging). */
typedef enum itr_security_event {
    ITR_SEC_REFUSED_KEY = 0, /* allowlist refused a static key */
    ITR_SEC_PINNED_KEY,      /* responder key mismatch (initiator side) */
    ITR_SEC_BAD_COOKIE,
    ITR_SEC_BAD_MAC1,
    ITR_SEC_STRIKE, /* one protocol violation by an authenticated peer */
    ITR_SEC_STRIKES_CLOSED,
    ITR_SEC_HANDSHAKE_FLOOD, /* a handshake limit refused an initiation */
    ITR_SEC_EVENT_COUNT
} itr_security_event;

typedef struct itr_settings {
    uint8_t static_private[ITR_KEY_LEN]; /* this endpoint's identity */
    int accept_handshakes;               /* 1: act as responder */
    itr_cookie_mode cookie_mode;
    uint32_t cookie_load_threshold;    /* UNDER_LOAD: cookies when in flight >= this (50) */
    uint64_t cookie_rotate_ns;         /* cookie secret lifetime (120 s; previous one accepted) */
    uint32_t max_handshakes_in_flight; /* responder, all sources (100) */
    uint32_t max_handshakes_per_ip;    /* responder, per source IP (5) */
    uint64_t handshake_timeout_ns;     /* 5 s */
    uint64_t handshake_retry_ns;       /* initiator first retransmit (250 ms, doubling) */
    uint64_t idle_timeout_ns;          /* 60 s */
    uint64_t keepalive_ns;             /* send a keepalive after this long without sending (10 s) */
    uint64_t rekey_after_ns;           /* 120 s */
    uint64_t reject_after_ns;          /* keys unusable after this age (rekey_after + 60 s) */
    uint64_t old_keys_grace_ns;        /* previous keys accepted this long after rotation (10 s) */
    uint32_t rate_limit_pps;           /* per peer, before decryption (10,000) */
    uint32_t rate_limit_burst;         /* 500 */
    uint32_t strike_limit;             /* 10 */
    uint64_t strike_window_ns;         /* 5 s */
    uint32_t max_peers;                /* sessions (65,536) */
    uint32_t reorder_max_bytes;        /* per peer reorder buffer bound (64 KiB) */
    uint32_t reorder_pool_slots;       /* shared reorder slots of max_packet bytes (4,096) */
    uint32_t tx_pool_slots;            /* shared slots for unacknowledged Reliable sends (4,096) */
    uint32_t tx_ring_slots;            /* outgoing datagram ring (1,024) */
    uint32_t max_packet;               /* <= ITR_MAX_PACKET (2,048) */
    uint64_t ack_delay_ns;             /* a receive-only ACK waits at most this long (5 ms) */
    uint64_t rto_min_ns, rto_max_ns, rto_initial_ns; /* 20 ms, 2 s, 200 ms */
    uint32_t aead_cache_entries; /* expanded AES-GCM keys kept hot (1,024; 512 B each) */
    /* Local conn ids satisfy id % conn_id_modulus == conn_id_residue, so an SO_REUSEPORT
     * steering program can send a session's packets to the worker that owns it. 1 and 0
     * when there is one worker. */
    uint32_t conn_id_modulus, conn_id_residue;
    /* Prologue mixed into every handshake; tests set it to run vectors. Default "intentra/1". */
    const uint8_t *prologue;
    size_t prologue_len;
} itr_settings;

/* Fill *s with the defaults above (static_private zeroed: the caller must set it). */
ITR_API void itr_settings_default(itr_settings *s);

/* A delivered message. Pointers are valid only during the callback. */
typedef struct itr_message {
    itr_peer_id peer;
    itr_intent intent;
    uint8_t priority; /* 0..7 from the header, passed through */
    uint32_t
        seq; /* Reliable: stream sequence, pass to itr_endpoint_ack. Realtime: sender's counter */
    const char *topic;
    size_t topic_len;
    const uint8_t *body;
    size_t body_len;
    /* The `now` of the itr_endpoint_recv call that delivered it (itr_now_ns() time; for the
     * driver, when its recvmmsg batch returned): callers need not read the clock again. */
    uint64_t recv_ns;
} itr_message;

typedef struct itr_peer_info {
    itr_peer_id id;
    uint8_t static_key[ITR_KEY_LEN];
    itr_addr addr;
    int initiator; /* 1 if we initiated this session */
    itr_suite suite;
    uint64_t session_id; /* chosen by the initiator; survives rekeys */
    uint64_t opened_ns, last_recv_ns, last_sent_ns;
    uint64_t rtt_ns; /* smoothed RTT of Reliable traffic, 0 until measured */
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out, drops, retransmits, rekeys;
    uint32_t unacked_out; /* Reliable messages sent and not yet acknowledged */
    uint32_t unacked_in;  /* Reliable messages delivered and not yet acknowledged by us */
    uint32_t reorder_bytes;
} itr_peer_info;

/* Counters. Written by the endpoint's thread only; itr_endpoint_stats() reads them from any
 * thread with relaxed atomic loads. */
typedef struct itr_stats {
    uint64_t packets_received, packets_sent, bytes_received, bytes_sent;
    uint64_t dropped[ITR_DROP_REASON_COUNT];
    uint64_t closes[ITR_CLOSE_REASON_COUNT];
    uint64_t handshakes_completed, handshakes_failed, handshakes_initiated, cookies_sent;
    uint64_t rekeys, retransmits, strike_events, messages_delivered, messages_sent;
    uint64_t handshakes_in_flight; /* gauge */
    uint64_t sessions_active;      /* gauge */
    uint64_t reorder_bytes;        /* gauge, all peers */
    uint64_t tx_pool_in_use;       /* gauge */
} itr_stats;

typedef struct itr_callbacks {
    /* Responder: admit this initiator static key? Called while processing handshake message 3,
     * before any session exists. Return 0 to admit, nonzero to refuse. NULL admits everyone. */
    int (*check_peer)(void *user, const uint8_t static_key[ITR_KEY_LEN], const itr_addr *from);
    /* A session is established (both roles). Called again after ITR_CLOSE_REPLACED. */
    void (*peer_open)(void *user, const itr_peer_info *info);
    /* A session ended. Its id is stale from now on. */
    void (*peer_close)(void *user, itr_peer_id peer, itr_close_reason why);
    /* A message arrived. Realtime: the return value is ignored. Reliable: return ITR_OK to take
     * it (then call itr_endpoint_ack, possibly much later), or ITR_ERR_WOULDBLOCK to refuse it
     * for now: it is treated as not received and the sender retransmits it. */
    int (*message)(void *user, const itr_message *msg);
    /* Sender side: the peer acknowledged Reliable message `seq` end to end. */
    void (*acked)(void *user, itr_peer_id peer, uint32_t seq);
    /* The session's Reliable window has room again after ITR_ERR_WOULDBLOCK. */
    void (*writable)(void *user, itr_peer_id peer);
    /* A security event, for logging (the application rate-limits). key may be NULL. */
    void (*security)(void *user, itr_security_event ev, const itr_addr *from,
                     const uint8_t *static_key);
} itr_callbacks;

typedef struct itr_endpoint itr_endpoint;

/* A datagram to send. data points into the endpoint's transmit ring. */
typedef struct itr_datagram {
    itr_addr addr;
    const uint8_t *data;
    size_t len;
} itr_datagram;

/* Create an endpoint. Errors: ITR_ERR_INVALID (settings out of range), ITR_ERR_NOMEM,
 * ITR_ERR_CRYPTO (libsodium failed to initialise). */
ITR_API int itr_endpoint_new(itr_endpoint **out, const itr_settings *s, const itr_callbacks *cb,
                             void *user, uint64_t now);
/* Close every session (peer_close with ITR_CLOSE_SHUTDOWN), wipe keys, free. NULL is a no-op. */
ITR_API void itr_endpoint_free(itr_endpoint *ep);
ITR_API void itr_endpoint_public_key(const itr_endpoint *ep, uint8_t out[ITR_KEY_LEN]);

/* Process one received datagram. Returns ITR_OK, or -(1 + itr_drop_reason) when the datagram
 * was dropped (already counted; returned for tests and the driver's logging). Never fails in
 * any other way; hostile input is always just a drop. */
ITR_API int itr_endpoint_recv(itr_endpoint *ep, const itr_addr *from, const uint8_t *pkt,
                              size_t len, uint64_t now);

/* Emit what was deferred to the end of a batch (coalesced ACKs). Call after each batch of
 * itr_endpoint_recv / itr_endpoint_ack calls. */
ITR_API void itr_endpoint_flush(itr_endpoint *ep, uint64_t now);

/* Up to cap queued datagrams, oldest first, without removing them. */
ITR_API size_t itr_endpoint_tx_peek(itr_endpoint *ep, itr_datagram *out, size_t cap);
/* Remove the n oldest datagrams (after they were sent, or given up on). */
ITR_API void itr_endpoint_tx_consume(itr_endpoint *ep, size_t n);
ITR_API size_t itr_endpoint_tx_pending(const itr_endpoint *ep);

/* Next time (ns) itr_endpoint_on_expiry must run; UINT64_MAX if nothing is scheduled. */
ITR_API uint64_t itr_endpoint_expiry(const itr_endpoint *ep);
/* Run every timer due at `now`: retransmits, keepalives, rekeys, timeouts, delayed ACKs. */
ITR_API void itr_endpoint_on_expiry(itr_endpoint *ep, uint64_t now);

/* Initiator: start a session to `to`, pinning the responder's static key. The session is
 * usable (itr_endpoint_send) once peer_open fires. Errors: ITR_ERR_INVALID, ITR_ERR_LIMIT
 * (max_peers), ITR_ERR_NOMEM. */
ITR_API int itr_endpoint_connect(itr_endpoint *ep, const itr_addr *to,
                                 const uint8_t remote_static[ITR_KEY_LEN], itr_suite suite,
                                 uint64_t now, itr_peer_id *out);

/* Send one message on `topic`. Reliable messages get *seq_out (may be NULL) and stay queued
 * until acknowledged. Errors: ITR_ERR_NOT_FOUND (stale id), ITR_ERR_NOT_READY (handshake not
 * done), ITR_ERR_INVALID (topic or priority), ITR_ERR_TOO_BIG (does not fit max_packet),
 * ITR_ERR_WOULDBLOCK (Reliable window or pool full, or transmit ring full: retry after the
 * `writable` callback or after draining the ring). */
ITR_API int itr_endpoint_send(itr_endpoint *ep, itr_peer_id peer, itr_intent intent,
                              uint8_t priority, const char *topic, size_t topic_len,
                              const void *body, size_t body_len, uint64_t now, uint32_t *seq_out);

/* Largest body that fits in one packet with a topic of topic_len bytes. */
ITR_API size_t itr_endpoint_max_body(const itr_endpoint *ep, size_t topic_len);

/* Receiver: the application has Reliable message `seq` durably. Acknowledgements may come in
 * any order; the peer is told about the contiguous prefix. Errors: ITR_ERR_NOT_FOUND (stale
 * id: harmless, the session is gone), ITR_ERR_INVALID (seq not delivered and unacknowledged). */
ITR_API int itr_endpoint_ack(itr_endpoint *ep, itr_peer_id peer, uint32_t seq, uint64_t now);

/* Close a session (sends CLOSE). peer_close fires with ITR_CLOSE_LOCAL. */
ITR_API int itr_endpoint_close_peer(itr_endpoint *ep, itr_peer_id peer, uint64_t now);

ITR_API int itr_endpoint_peer_info(const itr_endpoint *ep, itr_peer_id peer, itr_peer_info *out);
ITR_API int itr_endpoint_find_peer(const itr_endpoint *ep, const uint8_t static_key[ITR_KEY_LEN],
                                   itr_peer_id *out);
/* Iterate sessions: fills up to cap infos starting at *cursor (start with 0) and advances it;
 * returns how many were written, 0 at the end. Stable under no concurrent modification only
 * (call it on the endpoint's thread). */
ITR_API size_t itr_endpoint_peers(const itr_endpoint *ep, uint64_t *cursor, itr_peer_info *out,
                                  size_t cap);

/* Read the counters; safe from any thread. */
ITR_API void itr_endpoint_stats(const itr_endpoint *ep, itr_stats *out);

ITR_API const char *itr_drop_reason_name(itr_drop_reason r);   /* "rate_limit", ... */
ITR_API const char *itr_close_reason_name(itr_close_reason r); /* "idle", ... */
ITR_API const char *itr_security_event_name(itr_security_event e);

/* Topic names: 1..ITR_MAX_TOPIC bytes of [A-Za-z0-9._:/-]. */
ITR_API int itr_topic_valid(const char *topic, size_t len);

#ifdef __cplusplus
}
#endif
#endif
