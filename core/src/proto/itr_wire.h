/* itr_wire.h: every wire constant of docs/PROTOCOL.md in one place, big-endian get/put helpers
 * that take and return a pointer (no struct overlays on packet bytes), and the 16-byte header
 * codec with the receive checks of PROTOCOL.md §2 in their normative order.
 */
#ifndef ITR_WIRE_H
#define ITR_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>

#define ITR_VERSION 1

/* PROTOCOL.md §3. Types 6-15 are reserved and dropped as bad_type. */
enum itr_ptype {
    ITR_PT_DATA = 0,
    ITR_PT_ACK = 1,
    ITR_PT_HANDSHAKE = 2,
    ITR_PT_COOKIE_REPLY = 3,
    ITR_PT_KEEPALIVE = 4,
    ITR_PT_CLOSE = 5,
};
#define ITR_PT_MAX ITR_PT_CLOSE

/* Byte 1 of the header (DATA only): intent in bits 7-6, priority in bits 5-3, reserved 2-0. */
#define ITR_B1_INTENT_SHIFT   6
#define ITR_B1_PRIORITY_SHIFT 3
#define ITR_B1_PRIORITY_MASK  0x07u
#define ITR_B1_RESERVED_MASK  0x07u

/* Handshake message sizes (§4), header included. */
#define ITR_MSG1_LEN 128
#define ITR_MSG2_LEN 116
#define ITR_MSG3_LEN 96

/* Message 1 layout (§4.1). */
#define ITR_MSG1_SUITE_OFF    16
#define ITR_MSG1_RESERVED_OFF 17 /* 3 bytes, zero */
#define ITR_MSG1_RESERVED_LEN 3
#define ITR_MSG1_E_OFF        20
#define ITR_MSG1_PAYLOAD_OFF  52 /* Noise payload: I (4) || 40 zero bytes */
#define ITR_MSG1_PAYLOAD_LEN  44
#define ITR_MSG1_MAC1_OFF     96 /* mac1 covers bytes 0..95 */
#define ITR_MSG1_COOKIE_OFF   112
#define ITR_MSG1_MAC_LEN      16

/* Message 3 Noise payload (§4.3): session_id (8) || flags (1) || reserved (7, zero). */
#define ITR_MSG3_PAYLOAD_LEN  16
#define ITR_MSG3_SESSION_OFF  0
#define ITR_MSG3_FLAGS_OFF    8
#define ITR_MSG3_RESERVED_OFF 9
#define ITR_MSG3_RESERVED_LEN 7
#define ITR_MSG3_REKEY        0x01u

/* COOKIE_REPLY (§4.4): header || nonce (24) || XChaCha20-Poly1305(cookie (16)) (32). */
#define ITR_COOKIE_REPLY_LEN       72
#define ITR_COOKIE_REPLY_NONCE_OFF 16
#define ITR_COOKIE_REPLY_NONCE_LEN 24
#define ITR_COOKIE_REPLY_BOX_OFF   40
#define ITR_COOKIE_LEN             16

/* Transport plaintexts (§6). */
#define ITR_MIN_TRANSPORT_LEN       (ITR_HEADER_LEN + ITR_TAG_LEN) /* 32: empty plaintext */
#define ITR_DATA_MSEQ_LEN           4
#define ITR_DATA_MIN_PLAINTEXT      6 /* mseq (4) || topic_len (1) || one topic byte */
#define ITR_SACK_BYTES              32
#define ITR_ACK_PLAINTEXT_LEN       (4 + ITR_SACK_BYTES) /* received (4) || sack (32) */
#define ITR_KEEPALIVE_PLAINTEXT_LEN 1
#define ITR_CLOSE_PLAINTEXT_LEN     1

/* KEEPALIVE flag bits; any other bit set is bad_frame. */
#define ITR_KA_CONFIRM       0x01u
#define ITR_KA_REKEY_REQUEST 0x02u
#define ITR_KA_ACK_REQUEST   0x04u
#define ITR_KA_ALL           (ITR_KA_CONFIRM | ITR_KA_REKEY_REQUEST | ITR_KA_ACK_REQUEST)

/* Noise prologue (§4): names the protocol and its version. */
#define ITR_PROLOGUE     "intentra/1"
#define ITR_PROLOGUE_LEN 10

/* ---- big-endian get/put: each returns the pointer just past the field ---- */

static inline uint8_t *itr_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static inline uint8_t *itr_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static inline uint8_t *itr_put_u64(uint8_t *p, uint64_t v)
{
    p = itr_put_u32(p, (uint32_t)(v >> 32));
    return itr_put_u32(p, (uint32_t)v);
}

static inline const uint8_t *itr_get_u16(const uint8_t *p, uint16_t *v)
{
    *v = (uint16_t)(((unsigned)p[0] << 8) | (unsigned)p[1]);
    return p + 2;
}

static inline const uint8_t *itr_get_u32(const uint8_t *p, uint32_t *v)
{
    *v = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
    return p + 4;
}

static inline const uint8_t *itr_get_u64(const uint8_t *p, uint64_t *v)
{
    uint32_t hi, lo;
    p = itr_get_u32(p, &hi);
    p = itr_get_u32(p, &lo);
    *v = ((uint64_t)hi << 32) | lo;
    return p;
}

/* ---- header (§2) ---- */

/* A decoded header. On read, `byte1` is byte 1 exactly as received and intent/priority are
 * decoded from it. On write, byte 1 = byte1 | intent << 6 | priority << 3: a parsed header
 * round-trips unchanged, a builder leaves byte1 at 0, and a test can set reserved bits. */
typedef struct itr_header {
    uint8_t version, type, intent, priority, byte1;
    uint16_t payload_len;
    uint32_t conn_id, seq, ack;
} itr_header;

/* Encode h into the 16 bytes at p (version and type are taken as given, low 4 bits each).
 * Returns p + ITR_HEADER_LEN. */
uint8_t *itr_header_write(uint8_t *p, const itr_header *h);

/* Parse and validate the header of a datagram of len bytes, in the order of PROTOCOL.md §2:
 * too_short (len < 16), too_long (len > max_packet), bad_version, bad_type, then bad_header
 * (payload_len != len - 16, reserved bits set, byte 1 nonzero for a non-DATA type, intent 2
 * or 3). Returns 0 with *h filled, or -(1 + ITR_DROP_TOO_SHORT | _TOO_LONG | _BAD_VERSION |
 * _BAD_TYPE | _BAD_HEADER); *h is unspecified on error. Reads nothing past pkt[15]. */
int itr_header_read(const uint8_t *pkt, size_t len, size_t max_packet, itr_header *h);

/* The negative return value used throughout the core for a drop reason: -(1 + r). */
static inline int itr_drop_rc(itr_drop_reason r)
{
    return -(1 + (int)r);
}

#endif
