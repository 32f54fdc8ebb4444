/* test_wire.c: the header codec of PROTOCOL.md §2 and the wire constants: every field round
 * trips, every invalid field gives its drop reason (numbered case table), and the checks run
 * in the normative order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "itr_wire.h"

/* ---- constants against the spec's arithmetic ---- */

static void test_constants(void **state)
{
    (void)state;
    assert_int_equal(ITR_HEADER_LEN, 16);
    assert_int_equal(ITR_MSG1_LEN, 128);
    assert_int_equal(ITR_MSG2_LEN, 116);
    assert_int_equal(ITR_MSG3_LEN, 96);
    assert_int_equal(ITR_COOKIE_REPLY_LEN, 72);
    /* Message 1: header, suite, 3 reserved, e, payload, mac1, cookie, back to back. */
    assert_int_equal(ITR_MSG1_SUITE_OFF, ITR_HEADER_LEN);
    assert_int_equal(ITR_MSG1_RESERVED_OFF + ITR_MSG1_RESERVED_LEN, ITR_MSG1_E_OFF);
    assert_int_equal(ITR_MSG1_E_OFF + 32, ITR_MSG1_PAYLOAD_OFF);
    assert_int_equal(ITR_MSG1_PAYLOAD_OFF + ITR_MSG1_PAYLOAD_LEN, ITR_MSG1_MAC1_OFF);
    assert_int_equal(ITR_MSG1_MAC1_OFF + ITR_MSG1_MAC_LEN, ITR_MSG1_COOKIE_OFF);
    assert_int_equal(ITR_MSG1_COOKIE_OFF + ITR_COOKIE_LEN, ITR_MSG1_LEN);
    /* Message 2: e || enc(s) || enc(R); message 3: enc(s) || enc(16-byte payload). */
    assert_int_equal(ITR_MSG2_LEN, ITR_HEADER_LEN + 32 + 48 + 4 + 16);
    assert_int_equal(ITR_MSG3_LEN, ITR_HEADER_LEN + 48 + ITR_MSG3_PAYLOAD_LEN + 16);
    assert_int_equal(ITR_MSG3_RESERVED_OFF + ITR_MSG3_RESERVED_LEN, ITR_MSG3_PAYLOAD_LEN);
    /* COOKIE_REPLY: header || nonce || sealed cookie. */
    assert_int_equal(ITR_COOKIE_REPLY_BOX_OFF, ITR_COOKIE_REPLY_NONCE_OFF + 24);
    assert_int_equal(ITR_COOKIE_REPLY_LEN, ITR_COOKIE_REPLY_BOX_OFF + ITR_COOKIE_LEN + 16);
    /* Transport sizes of §3. */
    assert_int_equal(ITR_HEADER_LEN + ITR_ACK_PLAINTEXT_LEN + ITR_TAG_LEN, 68);
    assert_int_equal(ITR_HEADER_LEN + ITR_KEEPALIVE_PLAINTEXT_LEN + ITR_TAG_LEN, 33);
    assert_int_equal(ITR_SACK_BYTES * 8, 256);
    assert_int_equal(sizeof(ITR_PROLOGUE) - 1, ITR_PROLOGUE_LEN);
    assert_memory_equal(ITR_PROLOGUE, "intentra/1", ITR_PROLOGUE_LEN);
}

static void test_get_put(void **state)
{
    (void)state;
    uint8_t b[14];
    uint8_t *p = itr_put_u16(b, 0x0102);
    p = itr_put_u32(p, 0x03040506u);
    p = itr_put_u64(p, 0x0708090a0b0c0d0eull);
    assert_ptr_equal(p, b + 14);
    static const uint8_t want[14] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    assert_memory_equal(b, want, sizeof(want));

    uint16_t v16;
    uint32_t v32;
    uint64_t v64;
    const uint8_t *q = itr_get_u16(b, &v16);
    q = itr_get_u32(q, &v32);
    q = itr_get_u64(q, &v64);
    assert_ptr_equal(q, b + 14);
    assert_int_equal(v16, 0x0102);
    assert_int_equal(v32, 0x03040506u);
    assert_true(v64 == 0x0708090a0b0c0d0eull);

    /* Extremes: all bits set survive, nothing sign-extends. */
    itr_put_u64(b, UINT64_MAX);
    itr_get_u64(b, &v64);
    assert_true(v64 == UINT64_MAX);
    itr_put_u32(b, 0x80000001u);
    itr_get_u32(b, &v32);
    assert_int_equal(v32, 0x80000001u);
    itr_put_u16(b, 0xff00);
    itr_get_u16(b, &v16);
    assert_int_equal(v16, 0xff00);
}

/* ---- round trip ---- */

static void test_round_trip(void **state)
{
    (void)state;
    static const struct {
        uint8_t type, intent, priority;
        uint16_t payload_len;
        uint32_t conn_id, seq, ack;
    } cases[] = {
        /* 0 */ {ITR_PT_DATA, 0, 0, 16, 1, 0, 0},
        /* 1 */ {ITR_PT_DATA, 1, 7, 2032, 0xffffffffu, 0xfffffffeu, 0x80000000u},
        /* 2 */ {ITR_PT_DATA, 0, 5, 100, 0x12345678u, 42, 7},
        /* 3 */ {ITR_PT_DATA, 1, 0, 6 + 16, 9, 1, 0},
        /* 4 */ {ITR_PT_ACK, 0, 0, 52, 0xdeadbeefu, 3, 4},
        /* 5 */ {ITR_PT_HANDSHAKE, 0, 0, 112, 0, 1, 0xabcdef01u},
        /* 6 */ {ITR_PT_COOKIE_REPLY, 0, 0, 56, 77, 0, 0},
        /* 7 */ {ITR_PT_KEEPALIVE, 0, 0, 17, 5, 6, 7},
        /* 8 */ {ITR_PT_CLOSE, 0, 0, 17, 0x01020304u, 0x05060708u, 0x090a0b0cu},
        /* 9 */ {ITR_PT_HANDSHAKE, 0, 0, 0, 1, 2, 3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t pkt[ITR_MAX_PACKET] = {0};
        itr_header in = {
            .version = ITR_VERSION,
            .type = cases[i].type,
            .intent = cases[i].intent,
            .priority = cases[i].priority,
            .payload_len = cases[i].payload_len,
            .conn_id = cases[i].conn_id,
            .seq = cases[i].seq,
            .ack = cases[i].ack,
        };
        assert_ptr_equal(itr_header_write(pkt, &in), pkt + ITR_HEADER_LEN);
        itr_header out;
        memset(&out, 0xaa, sizeof(out));
        size_t len = ITR_HEADER_LEN + (size_t)cases[i].payload_len;
        int rc = itr_header_read(pkt, len, ITR_MAX_PACKET, &out);
        if (rc != 0)
            fail_msg("case %zu: rc %d", i, rc);
        assert_int_equal(out.version, ITR_VERSION);
        assert_int_equal(out.type, cases[i].type);
        assert_int_equal(out.intent, cases[i].intent);
        assert_int_equal(out.priority, cases[i].priority);
        assert_int_equal(out.payload_len, cases[i].payload_len);
        assert_int_equal(out.conn_id, cases[i].conn_id);
        assert_int_equal(out.seq, cases[i].seq);
        assert_int_equal(out.ack, cases[i].ack);
        assert_int_equal(out.byte1, (cases[i].intent << 6) | (cases[i].priority << 3));
        /* Re-encoding the parsed header gives the same bytes. */
        uint8_t again[ITR_HEADER_LEN];
        itr_header_write(again, &out);
        assert_memory_equal(again, pkt, ITR_HEADER_LEN);
    }
}

static void test_exact_bytes(void **state)
{
    (void)state;
    itr_header h = {.version = 1,
                    .type = ITR_PT_DATA,
                    .intent = 1,
                    .priority = 6,
                    .payload_len = 0x0123,
                    .conn_id = 0xa1a2a3a4u,
                    .seq = 0xb1b2b3b4u,
                    .ack = 0xc1c2c3c4u};
    uint8_t pkt[ITR_HEADER_LEN];
    itr_header_write(pkt, &h);
    static const uint8_t want[ITR_HEADER_LEN] = {
        0x10, 0x70, 0x01, 0x23, 0xa1, 0xa2, 0xa3, 0xa4,
        0xb1, 0xb2, 0xb3, 0xb4, 0xc1, 0xc2, 0xc3, 0xc4,
    };
    assert_memory_equal(pkt, want, sizeof(want));
}

/* ---- invalid fields ---- */

enum mut { M_NONE, M_BYTE0, M_BYTE1, M_PLEN };

static void test_invalid(void **state)
{
    (void)state;
    static const struct {
        size_t len;        /* datagram length */
        size_t max_packet; /* receiver's bound */
        enum mut what;     /* which field to overwrite in a valid DATA header */
        unsigned value;
        int want; /* 0 or the drop reason + 1, negated */
    } cases[] = {
        /*  0 */ {0, 2048, M_NONE, 0, -(1 + ITR_DROP_TOO_SHORT)},
        /*  1 */ {15, 2048, M_NONE, 0, -(1 + ITR_DROP_TOO_SHORT)},
        /*  2 */ {16, 2048, M_NONE, 0, 0},
        /*  3 */ {2048, 2048, M_NONE, 0, 0},
        /*  4 */ {2049, 2048, M_NONE, 0, -(1 + ITR_DROP_TOO_LONG)},
        /*  5 */ {1281, 1280, M_NONE, 0, -(1 + ITR_DROP_TOO_LONG)},
        /*  6 */ {1280, 1280, M_NONE, 0, 0},
        /* version nibble */
        /*  7 */ {64, 2048, M_BYTE0, 0x00, -(1 + ITR_DROP_BAD_VERSION)},
        /*  8 */ {64, 2048, M_BYTE0, 0x20, -(1 + ITR_DROP_BAD_VERSION)},
        /*  9 */ {64, 2048, M_BYTE0, 0xf0, -(1 + ITR_DROP_BAD_VERSION)},
        /* type nibble: 0-5 known, 6-15 reserved */
        /* 10 */ {64, 2048, M_BYTE0, 0x16, -(1 + ITR_DROP_BAD_TYPE)},
        /* 11 */ {64, 2048, M_BYTE0, 0x1f, -(1 + ITR_DROP_BAD_TYPE)},
        /* 12 */ {64, 2048, M_BYTE0, 0x15, 0}, /* CLOSE, byte1 0: fine */
                                               /* byte 1 of DATA: intent 2/3, reserved bits */
        /* 13 */ {64, 2048, M_BYTE1, 0x80, -(1 + ITR_DROP_BAD_HEADER)},
        /* 14 */ {64, 2048, M_BYTE1, 0xc0, -(1 + ITR_DROP_BAD_HEADER)},
        /* 15 */ {64, 2048, M_BYTE1, 0x01, -(1 + ITR_DROP_BAD_HEADER)},
        /* 16 */ {64, 2048, M_BYTE1, 0x02, -(1 + ITR_DROP_BAD_HEADER)},
        /* 17 */ {64, 2048, M_BYTE1, 0x04, -(1 + ITR_DROP_BAD_HEADER)},
        /* 18 */ {64, 2048, M_BYTE1, 0x7f, -(1 + ITR_DROP_BAD_HEADER)},
        /* 19 */ {64, 2048, M_BYTE1, 0x78, 0}, /* Reliable, priority 7 */
                                               /* payload_len mismatch */
        /* 20 */ {64, 2048, M_PLEN, 47, -(1 + ITR_DROP_BAD_HEADER)},
        /* 21 */ {64, 2048, M_PLEN, 49, -(1 + ITR_DROP_BAD_HEADER)},
        /* 22 */ {64, 2048, M_PLEN, 0, -(1 + ITR_DROP_BAD_HEADER)},
        /* 23 */ {64, 2048, M_PLEN, 0xffff, -(1 + ITR_DROP_BAD_HEADER)},
        /* 24 */ {16, 2048, M_PLEN, 1, -(1 + ITR_DROP_BAD_HEADER)},
        /* order: length before version, version before type, type before header */
        /* 25 */ {15, 2048, M_BYTE0, 0xff, -(1 + ITR_DROP_TOO_SHORT)},
        /* 26 */ {4096, 2048, M_BYTE0, 0xff, -(1 + ITR_DROP_TOO_LONG)},
        /* 27 */ {64, 2048, M_BYTE0, 0x2f, -(1 + ITR_DROP_BAD_VERSION)},
        /* 28 */ {64, 2048, M_BYTE0, 0x0f, -(1 + ITR_DROP_BAD_VERSION)},
    };
    static uint8_t pkt[4096];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len;
        itr_header h = {.version = ITR_VERSION,
                        .type = ITR_PT_DATA,
                        .payload_len = (uint16_t)(len >= 16 ? len - 16 : 0),
                        .conn_id = 1};
        memset(pkt, 0x5a, sizeof(pkt));
        itr_header_write(pkt, &h);
        switch (cases[i].what) {
        case M_NONE:
            break;
        case M_BYTE0:
            pkt[0] = (uint8_t)cases[i].value;
            break;
        case M_BYTE1:
            pkt[1] = (uint8_t)cases[i].value;
            break;
        case M_PLEN:
            itr_put_u16(pkt + 2, (uint16_t)cases[i].value);
            break;
        }
        itr_header out;
        int rc = itr_header_read(pkt, len, cases[i].max_packet, &out);
        if (rc != cases[i].want)
            fail_msg("case %zu: rc %d, want %d", i, rc, cases[i].want);
    }
}

/* byte 1 must be 0 for every non-DATA type, whichever bit is set. */
static void test_non_data_byte1(void **state)
{
    (void)state;
    for (uint8_t type = ITR_PT_ACK; type <= ITR_PT_MAX; type++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            uint8_t pkt[64];
            itr_header h = {.version = ITR_VERSION, .type = type, .payload_len = 48};
            itr_header_write(pkt, &h);
            itr_header out;
            assert_int_equal(itr_header_read(pkt, sizeof(pkt), ITR_MAX_PACKET, &out), 0);
            pkt[1] = (uint8_t)(1u << bit);
            assert_int_equal(itr_header_read(pkt, sizeof(pkt), ITR_MAX_PACKET, &out),
                             -(1 + ITR_DROP_BAD_HEADER));
        }
    }
}

/* Every type nibble and every version nibble. */
static void test_all_nibbles(void **state)
{
    (void)state;
    for (unsigned b0 = 0; b0 < 256; b0++) {
        uint8_t pkt[16] = {0};
        pkt[0] = (uint8_t)b0;
        itr_header out;
        int rc = itr_header_read(pkt, sizeof(pkt), ITR_MAX_PACKET, &out);
        int want;
        if ((b0 >> 4) != ITR_VERSION)
            want = -(1 + ITR_DROP_BAD_VERSION);
        else if ((b0 & 15) > ITR_PT_MAX)
            want = -(1 + ITR_DROP_BAD_TYPE);
        else
            want = 0;
        if (rc != want)
            fail_msg("byte0 0x%02x: rc %d, want %d", b0, rc, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constants),   cmocka_unit_test(test_get_put),
        cmocka_unit_test(test_round_trip),  cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_invalid),     cmocka_unit_test(test_non_data_byte1),
        cmocka_unit_test(test_all_nibbles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
