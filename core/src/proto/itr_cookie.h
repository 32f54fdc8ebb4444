/* itr_cookie.h: the cheap handshake defenses of PROTOCOL.md §4.1 and §4.4: mac1 (message 1
 * is addressed to our static key), stateless cookies bound to (source address, ephemeral key)
 * under a rotating secret, and the encrypted COOKIE_REPLY. One BLAKE2b or one XChaCha20-Poly1305
 * each: no public-key work and no per-initiator state.
 */
#ifndef ITR_COOKIE_H
#define ITR_COOKIE_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>

#include "itr_wire.h"

/* Keys derived from a responder static public key S_r; both sides derive them.
 * Not secret in themselves (S_r is public) but wiped with the rest of an endpoint. */
typedef struct itr_cookie_keys {
    uint8_t mac1_key[32];  /* BLAKE2b-256("intentra mac1 v1" || S_r) */
    uint8_t reply_key[32]; /* BLAKE2b-256("intentra cookie v1" || S_r) */
} itr_cookie_keys;

void itr_cookie_keys_derive(itr_cookie_keys *k, const uint8_t static_pub[32]);

/* mac1 = BLAKE2b-128(mac1_key, msg1[0..95]), written to msg1[96..111]. */
void itr_mac1_write(const itr_cookie_keys *k, uint8_t *msg1);
/* 1 if msg1[96..111] is the mac1 of msg1[0..95] (constant-time compare), else 0. */
int itr_mac1_verify(const itr_cookie_keys *k, const uint8_t *msg1);

/* The responder's cookie secrets (secret: wiped by itr_cookie_jar_wipe). A cookie made with
 * `cur` stays valid until the second rotation after it: 1-2 x rotate_ns. */
typedef struct itr_cookie_jar {
    uint8_t cur[32], prev[32];
    int have_prev;
    uint64_t rotated_at, rotate_ns;
} itr_cookie_jar;

/* Draw a random current secret at now; no previous one. rotate_ns 0 never rotates. */
void itr_cookie_jar_init(itr_cookie_jar *j, uint64_t rotate_ns, uint64_t now);
/* Rotate when due: prev = cur, fresh cur. If two periods or more have passed since the last
 * rotation, the old current secret has expired too and prev is dropped. Cheap when not due:
 * call it before each use. */
void itr_cookie_jar_tick(itr_cookie_jar *j, uint64_t now);
void itr_cookie_jar_wipe(itr_cookie_jar *j);

/* The 18 bytes of an address that a cookie binds: the IP as 16 bytes (IPv4 mapped to
 * ::ffff:a.b.c.d) || port in network order. itr_addr.local is ignored. An address of
 * another family maps to 18 zero bytes. */
#define ITR_COOKIE_ADDR_LEN 18
void itr_cookie_addr_bytes(const itr_addr *a, uint8_t out[ITR_COOKIE_ADDR_LEN]);

/* cookie = BLAKE2b-128(key = cur, addr bytes (18) || e (32)). */
void itr_cookie_make(const itr_cookie_jar *j, const itr_addr *src, const uint8_t e[32],
                     uint8_t out[ITR_COOKIE_LEN]);
/* 1 if cookie matches the current or (if any) previous secret, compared in constant time
 * (both are always computed), else 0. */
int itr_cookie_verify(const itr_cookie_jar *j, const itr_addr *src, const uint8_t e[32],
                      const uint8_t cookie[ITR_COOKIE_LEN]);

/* The whole COOKIE_REPLY packet (72 bytes, header included) answering message 1 `msg1`:
 * conn_id = msg1's ack (I), seq = ack = 0, a random nonce, and cookie sealed under
 * reply_key with msg1's mac1 as associated data. */
void itr_cookie_reply_write(uint8_t out[ITR_COOKIE_REPLY_LEN], const itr_cookie_keys *k,
                            const uint8_t *msg1, const uint8_t cookie[ITR_COOKIE_LEN]);
/* Initiator: decrypt a COOKIE_REPLY answering our message 1 (whose mac1 is given). The
 * header is the caller's business (itr_header_read, conn_id lookup). Returns 0 with the
 * cookie in cookie_out, or ITR_ERR_INVALID (len != 72), ITR_ERR_CRYPTO (forged, or made for
 * another message 1); cookie_out is untouched on error. */
int itr_cookie_reply_read(const uint8_t *pkt, size_t len, const itr_cookie_keys *k,
                          const uint8_t mac1[ITR_MSG1_MAC_LEN], uint8_t cookie_out[ITR_COOKIE_LEN]);

#endif
