/* test_cookie.c: mac1, stateless cookies and COOKIE_REPLY (PROTOCOL.md §4.1, §4.4): the key
 * and MAC formulas recomputed independently with libsodium, mac1 accepted/rejected byte by
 * byte, cookies under the current/previous/expired secret with scripted rotation times, the
 * address and ephemeral binding, and the reply's round trip and rejections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <sodium.h>

#include <intentra/endpoint.h>

#include "itr_cookie.h"
#include "itr_crypto.h"
#include "itr_wire.h"

#define S 1000000000ull

static int setup(void **state)
{
    (void)state;
    return itr_crypto_init() == ITR_OK ? 0 : -1;
}

static itr_addr v4(const char *ip, uint16_t port)
{
    itr_addr a;
    memset(&a, 0, sizeof(a));
    a.u.in.sin_family = AF_INET;
    a.u.in.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &a.u.in.sin_addr), 1);
    return a;
}

static itr_addr v6(const char *ip, uint16_t port)
{
    itr_addr a;
    memset(&a, 0, sizeof(a));
    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &a.u.in6.sin6_addr), 1);
    return a;
}

/* A plausible message 1: header, suite, e, payload; mac1 and cookie zero. */
static void make_msg1(uint8_t msg1[ITR_MSG1_LEN], uint32_t initiator_id)
{
    memset(msg1, 0, ITR_MSG1_LEN);
    itr_header h = {.version = ITR_VERSION,
                    .type = ITR_PT_HANDSHAKE,
                    .payload_len = ITR_MSG1_LEN - ITR_HEADER_LEN,
                    .seq = 1,
                    .ack = initiator_id};
    itr_header_write(msg1, &h);
    msg1[ITR_MSG1_SUITE_OFF] = ITR_SUITE_AESGCM;
    randombytes_buf(msg1 + ITR_MSG1_E_OFF, 32);
    itr_put_u32(msg1 + ITR_MSG1_PAYLOAD_OFF, initiator_id);
}

/* ---- keys and mac1 ---- */

static void test_keys_formula(void **state)
{
    (void)state;
    uint8_t spub[32];
    randombytes_buf(spub, sizeof(spub));
    itr_cookie_keys k;
    itr_cookie_keys_derive(&k, spub);

    /* BLAKE2b-256(label || S_r), recomputed from the spec's words. */
    uint8_t in[18 + 32], want[32];
    memcpy(in, "intentra mac1 v1", 16);
    memcpy(in + 16, spub, 32);
    crypto_generichash(want, 32, in, 16 + 32, NULL, 0);
    assert_memory_equal(k.mac1_key, want, 32);
    memcpy(in, "intentra cookie v1", 18);
    memcpy(in + 18, spub, 32);
    crypto_generichash(want, 32, in, 18 + 32, NULL, 0);
    assert_memory_equal(k.reply_key, want, 32);

    /* Both sides derive the same keys; another static key gives others. */
    itr_cookie_keys k2;
    itr_cookie_keys_derive(&k2, spub);
    assert_memory_equal(&k, &k2, sizeof(k));
    spub[31] ^= 1;
    itr_cookie_keys_derive(&k2, spub);
    assert_memory_not_equal(k.mac1_key, k2.mac1_key, 32);
    assert_memory_not_equal(k.reply_key, k2.reply_key, 32);
}

static void test_mac1(void **state)
{
    (void)state;
    uint8_t spub[32];
    randombytes_buf(spub, sizeof(spub));
    itr_cookie_keys k;
    itr_cookie_keys_derive(&k, spub);
    uint8_t msg1[ITR_MSG1_LEN];
    make_msg1(msg1, 0x11223344u);
    itr_mac1_write(&k, msg1);

    /* mac1 = BLAKE2b-128(key = mac1_key, bytes 0..95). */
    uint8_t want[16];
    crypto_generichash(want, 16, msg1, 96, k.mac1_key, 32);
    assert_memory_equal(msg1 + ITR_MSG1_MAC1_OFF, want, 16);
    assert_int_equal(itr_mac1_verify(&k, msg1), 1);

    /* Any bit of bytes 0..111 matters; the cookie field (112..127) does not. */
    for (size_t i = 0; i < ITR_MSG1_LEN; i++) {
        for (unsigned bit = 0; bit < 8; bit += 7) {
            uint8_t m[ITR_MSG1_LEN];
            memcpy(m, msg1, sizeof(m));
            m[i] ^= (uint8_t)(1u << bit);
            int want_ok = i >= ITR_MSG1_COOKIE_OFF;
            if (itr_mac1_verify(&k, m) != want_ok)
                fail_msg("byte %zu bit %u: verify %d", i, bit, !want_ok);
        }
    }
    /* A message 1 meant for another responder. */
    itr_cookie_keys other;
    spub[0] ^= 0x80;
    itr_cookie_keys_derive(&other, spub);
    assert_int_equal(itr_mac1_verify(&other, msg1), 0);
    /* An all-zero mac1 field. */
    memset(msg1 + ITR_MSG1_MAC1_OFF, 0, 16);
    assert_int_equal(itr_mac1_verify(&k, msg1), 0);
}

/* ---- cookies ---- */

static void test_cookie_formula(void **state)
{
    (void)state;
    itr_cookie_jar j;
    itr_cookie_jar_init(&j, 120 * S, 0);
    uint8_t e[32];
    randombytes_buf(e, sizeof(e));
    itr_addr a = v4("192.0.2.7", 40000);

    /* BLAKE2b-128(key = secret, ip16 (::ffff:a.b.c.d) || port (BE) || e). */
    uint8_t in[18 + 32] = {0};
    in[10] = 0xff;
    in[11] = 0xff;
    in[12] = 192;
    in[13] = 0;
    in[14] = 2;
    in[15] = 7;
    in[16] = 40000 >> 8;
    in[17] = 40000 & 0xff;
    memcpy(in + 18, e, 32);
    uint8_t want[16], got[16];
    crypto_generichash(want, 16, in, sizeof(in), j.cur, 32);
    itr_cookie_make(&j, &a, e, got);
    assert_memory_equal(got, want, 16);

    uint8_t bytes[ITR_COOKIE_ADDR_LEN];
    itr_cookie_addr_bytes(&a, bytes);
    assert_memory_equal(bytes, in, ITR_COOKIE_ADDR_LEN);

    /* IPv6: the 16 address bytes as they are. */
    itr_addr b = v6("2001:db8::1", 443);
    itr_cookie_addr_bytes(&b, bytes);
    assert_memory_equal(bytes, b.u.in6.sin6_addr.s6_addr, 16);
    assert_int_equal(bytes[16], 443 >> 8);
    assert_int_equal(bytes[17], 443 & 0xff);
    /* An IPv4 peer seen on a dual-stack socket as ::ffff:a.b.c.d gets the same cookie. */
    itr_addr mapped = v6("::ffff:192.0.2.7", 40000);
    assert_int_equal(itr_cookie_verify(&j, &mapped, e, got), 1);
    /* Another family maps to zeros (never crashes). */
    itr_addr unspec;
    memset(&unspec, 0, sizeof(unspec));
    itr_cookie_addr_bytes(&unspec, bytes);
    static const uint8_t zeros[ITR_COOKIE_ADDR_LEN];
    assert_memory_equal(bytes, zeros, sizeof(zeros));
    itr_cookie_jar_wipe(&j);
}

static void test_cookie_binding(void **state)
{
    (void)state;
    itr_cookie_jar j;
    itr_cookie_jar_init(&j, 120 * S, 5 * S);
    uint8_t e[32], c[16];
    randombytes_buf(e, sizeof(e));
    itr_addr a = v4("127.0.0.1", 5000);
    itr_cookie_make(&j, &a, e, c);
    assert_int_equal(itr_cookie_verify(&j, &a, e, c), 1);

    /* The socket index is not part of the address. */
    itr_addr same = a;
    same.local = 3;
    assert_int_equal(itr_cookie_verify(&j, &same, e, c), 1);

    static const struct {
        const char *ip;
        int v6;
        uint16_t port;
        int e_flip; /* byte of e to change, -1 none */
        int c_flip; /* byte of the cookie to change, -1 none */
    } cases[] = {
        /* 0 */ {"127.0.0.1", 0, 5001, -1, -1}, /* different port */
        /* 1 */ {"127.0.0.2", 0, 5000, -1, -1}, /* different IP */
        /* 2 */ {"127.0.0.1", 0, 5000, 0, -1},  /* different ephemeral */
        /* 3 */ {"127.0.0.1", 0, 5000, 31, -1},
        /* 4 */ {"127.0.0.1", 0, 5000, -1, 0}, /* tampered cookie */
        /* 5 */ {"127.0.0.1", 0, 5000, -1, 15},
        /* 6 */ {"::1", 1, 5000, -1, -1}, /* other family */
        /* 7 */ {"::ffff:127.0.0.2", 1, 5000, -1, -1},
        /* 8 */ {"127.0.0.1", 0, 0, -1, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        itr_addr b = cases[i].v6 ? v6(cases[i].ip, cases[i].port) : v4(cases[i].ip, cases[i].port);
        uint8_t e2[32], c2[16];
        memcpy(e2, e, 32);
        memcpy(c2, c, 16);
        if (cases[i].e_flip >= 0)
            e2[cases[i].e_flip] ^= 1;
        if (cases[i].c_flip >= 0)
            c2[cases[i].c_flip] ^= 0x40;
        if (itr_cookie_verify(&j, &b, e2, c2) != 0)
            fail_msg("case %zu accepted", i);
    }
    /* A zero cookie (the "no cookie" value) is never valid. */
    static const uint8_t zero[16];
    assert_int_equal(itr_cookie_verify(&j, &a, e, zero), 0);
    /* Another jar (another gateway, or a restart) does not accept it. */
    itr_cookie_jar other;
    itr_cookie_jar_init(&other, 120 * S, 5 * S);
    assert_int_equal(itr_cookie_verify(&other, &a, e, c), 0);
    itr_cookie_jar_wipe(&other);
    itr_cookie_jar_wipe(&j);
}

/* Scripted rotation, 120 s period: a cookie is valid for 120-240 s. */
static void test_cookie_rotation(void **state)
{
    (void)state;
    const uint64_t t0 = 1000 * S;
    itr_cookie_jar j;
    itr_cookie_jar_init(&j, 120 * S, t0);
    uint8_t e[32];
    randombytes_buf(e, sizeof(e));
    itr_addr a = v4("10.1.2.3", 9);
    uint8_t c[4][16]; /* c[k]: made right after the k-th step that says so */

    static const struct {
        uint64_t tick; /* seconds after t0 */
        int make;      /* make cookie c[make] after the tick, -1 none */
        int valid[4];  /* expected validity of c[0..3] after the tick (-1: not made yet) */
        int have_prev;
    } steps[] = {
        /* 0 */ {0, 0, {1, -1, -1, -1}, 0},
        /* 1 */ {60, -1, {1, -1, -1, -1}, 0},
        /* 2 */ {119, 1, {1, 1, -1, -1}, 0},  /* not due yet */
        /* 3 */ {120, -1, {1, 1, -1, -1}, 1}, /* rotated: c0, c1 valid through prev */
        /* 4 */ {121, 2, {1, 1, 1, -1}, 1},
        /* 5 */ {239, -1, {1, 1, 1, -1}, 1}, /* c0 is 239 s old, still valid */
        /* 6 */ {240, -1, {0, 0, 1, -1}, 1}, /* second rotation: c0, c1 expired */
        /* 7 */ {300, 3, {0, 0, 1, 1}, 1},
        /* 8 */ {360, -1, {0, 0, 0, 1}, 1},
        /* 9 */ {600, -1, {0, 0, 0, 0}, 0}, /* no tick for 2 periods: prev dropped too */
        /* 10 */ {601, -1, {0, 0, 0, 0}, 0},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        itr_cookie_jar_tick(&j, t0 + steps[i].tick * S);
        if (steps[i].make >= 0)
            itr_cookie_make(&j, &a, e, c[steps[i].make]);
        assert_int_equal(j.have_prev, steps[i].have_prev);
        for (int k = 0; k < 4; k++) {
            if (steps[i].valid[k] < 0)
                continue;
            int got = itr_cookie_verify(&j, &a, e, c[k]);
            if (got != steps[i].valid[k])
                fail_msg("step %zu (t0+%llus): cookie %d verify %d, want %d", i,
                         (unsigned long long)steps[i].tick, k, got, steps[i].valid[k]);
        }
    }
    itr_cookie_jar_wipe(&j);

    /* rotate_ns 0: never rotates. */
    itr_cookie_jar_init(&j, 0, 0);
    uint8_t c0[16];
    itr_cookie_make(&j, &a, e, c0);
    itr_cookie_jar_tick(&j, 1000000 * S);
    assert_int_equal(itr_cookie_verify(&j, &a, e, c0), 1);
    itr_cookie_jar_wipe(&j);
    static const uint8_t zj[sizeof(itr_cookie_jar)];
    assert_memory_equal(&j, zj, sizeof(j));
}

/* ---- COOKIE_REPLY ---- */

static void test_reply_round_trip(void **state)
{
    (void)state;
    uint8_t spub[32];
    randombytes_buf(spub, sizeof(spub));
    itr_cookie_keys k;
    itr_cookie_keys_derive(&k, spub);
    uint8_t msg1[ITR_MSG1_LEN];
    make_msg1(msg1, 0xcafe0001u);
    itr_mac1_write(&k, msg1);
    uint8_t cookie[16];
    randombytes_buf(cookie, sizeof(cookie));

    uint8_t reply[ITR_COOKIE_REPLY_LEN];
    itr_cookie_reply_write(reply, &k, msg1, cookie);

    /* Header: type 3, byte1 0, payload_len 56, conn_id = I, seq 0, ack 0. */
    itr_header h;
    assert_int_equal(itr_header_read(reply, sizeof(reply), ITR_MAX_PACKET, &h), 0);
    assert_int_equal(h.type, ITR_PT_COOKIE_REPLY);
    assert_int_equal(h.byte1, 0);
    assert_int_equal(h.payload_len, 56);
    assert_int_equal(h.conn_id, 0xcafe0001u);
    assert_int_equal(h.seq, 0);
    assert_int_equal(h.ack, 0);

    /* The box is XChaCha20-Poly1305(reply_key, nonce, cookie, ad = mac1): open it directly. */
    uint8_t direct[16];
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(
                         direct, NULL, NULL, reply + ITR_COOKIE_REPLY_BOX_OFF, 32,
                         msg1 + ITR_MSG1_MAC1_OFF, 16, reply + ITR_COOKIE_REPLY_NONCE_OFF,
                         k.reply_key),
                     0);
    assert_memory_equal(direct, cookie, 16);

    /* The initiator's side. */
    uint8_t out[16];
    assert_int_equal(itr_cookie_reply_read(reply, sizeof(reply), &k, msg1 + ITR_MSG1_MAC1_OFF, out),
                     ITR_OK);
    assert_memory_equal(out, cookie, 16);

    /* Fresh nonce per reply. */
    uint8_t reply2[ITR_COOKIE_REPLY_LEN];
    itr_cookie_reply_write(reply2, &k, msg1, cookie);
    assert_memory_not_equal(reply + 16, reply2 + 16, ITR_COOKIE_REPLY_LEN - 16);
    assert_int_equal(
        itr_cookie_reply_read(reply2, sizeof(reply2), &k, msg1 + ITR_MSG1_MAC1_OFF, out), ITR_OK);

    /* The cookie made by a jar, sent in a reply, read back and verified: the full loop. */
    itr_cookie_jar j;
    itr_cookie_jar_init(&j, 120 * S, 0);
    itr_addr a = v6("::1", 7400);
    itr_cookie_make(&j, &a, msg1 + ITR_MSG1_E_OFF, cookie);
    itr_cookie_reply_write(reply, &k, msg1, cookie);
    assert_int_equal(itr_cookie_reply_read(reply, sizeof(reply), &k, msg1 + ITR_MSG1_MAC1_OFF, out),
                     ITR_OK);
    memcpy(msg1 + ITR_MSG1_COOKIE_OFF, out, 16);
    assert_int_equal(itr_mac1_verify(&k, msg1), 1); /* mac1 unchanged by the cookie field */
    assert_int_equal(itr_cookie_verify(&j, &a, msg1 + ITR_MSG1_E_OFF, msg1 + ITR_MSG1_COOKIE_OFF),
                     1);
    itr_cookie_jar_wipe(&j);
}

static void test_reply_rejected(void **state)
{
    (void)state;
    uint8_t spub[32];
    randombytes_buf(spub, sizeof(spub));
    itr_cookie_keys k;
    itr_cookie_keys_derive(&k, spub);
    uint8_t msg1[ITR_MSG1_LEN];
    make_msg1(msg1, 77);
    itr_mac1_write(&k, msg1);
    uint8_t cookie[16];
    randombytes_buf(cookie, sizeof(cookie));
    uint8_t reply[ITR_COOKIE_REPLY_LEN + 1];
    itr_cookie_reply_write(reply, &k, msg1, cookie);
    reply[ITR_COOKIE_REPLY_LEN] = 0;

    uint8_t out[16], untouched[16];
    memset(out, 0xa5, sizeof(out));
    memcpy(untouched, out, sizeof(out));

    /* A reply for another message 1 (wrong mac1 as ad). */
    uint8_t mac1[16];
    memcpy(mac1, msg1 + ITR_MSG1_MAC1_OFF, 16);
    for (size_t i = 0; i < 16; i++) {
        mac1[i] ^= 1;
        assert_int_equal(itr_cookie_reply_read(reply, ITR_COOKIE_REPLY_LEN, &k, mac1, out),
                         ITR_ERR_CRYPTO);
        mac1[i] ^= 1;
    }
    assert_memory_equal(out, untouched, 16);

    /* Keys of another responder. */
    itr_cookie_keys other;
    spub[5] ^= 2;
    itr_cookie_keys_derive(&other, spub);
    assert_int_equal(itr_cookie_reply_read(reply, ITR_COOKIE_REPLY_LEN, &other, mac1, out),
                     ITR_ERR_CRYPTO);

    /* Any changed byte of nonce or box. */
    for (size_t i = ITR_COOKIE_REPLY_NONCE_OFF; i < ITR_COOKIE_REPLY_LEN; i++) {
        reply[i] ^= 0x10;
        if (itr_cookie_reply_read(reply, ITR_COOKIE_REPLY_LEN, &k, mac1, out) != ITR_ERR_CRYPTO)
            fail_msg("byte %zu changed and still accepted", i);
        reply[i] ^= 0x10;
    }
    assert_memory_equal(out, untouched, 16);

    /* Wrong lengths. */
    assert_int_equal(itr_cookie_reply_read(reply, ITR_COOKIE_REPLY_LEN - 1, &k, mac1, out),
                     ITR_ERR_INVALID);
    assert_int_equal(itr_cookie_reply_read(reply, ITR_COOKIE_REPLY_LEN + 1, &k, mac1, out),
                     ITR_ERR_INVALID);
    assert_int_equal(itr_cookie_reply_read(reply, 0, &k, mac1, out), ITR_ERR_INVALID);
    assert_memory_equal(out, untouched, 16);

    /* And the untouched reply still opens. */
    assert_int_equal(itr_cookie_reply_read(reply, ITR_COOKIE_REPLY_LEN, &k, mac1, out), ITR_OK);
    assert_memory_equal(out, cookie, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_formula),    cmocka_unit_test(test_mac1),
        cmocka_unit_test(test_cookie_formula),  cmocka_unit_test(test_cookie_binding),
        cmocka_unit_test(test_cookie_rotation), cmocka_unit_test(test_reply_round_trip),
        cmocka_unit_test(test_reply_rejected),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
