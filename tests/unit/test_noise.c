/* test_noise.c: Noise XX (itr_noise.h) with random keys for both suites: complete handshakes
 * and transport, every tampered byte of each handshake message rejected, calls out of turn
 * rejected, low-order ephemerals (all-zero DH) rejected, mismatched prologue or suite, and the
 * CipherState counter rules. The published vectors run in the noise_vectors test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "itr_noise.h"

#define PROLOGUE     "intentra/1"
#define PROLOGUE_LEN 10
#define PLEN         16 /* payload length used in every message */

static const itr_suite SUITES[] = {ITR_SUITE_AESGCM, ITR_SUITE_CHACHAPOLY};
#define NSUITES (sizeof(SUITES) / sizeof(SUITES[0]))

typedef struct pair {
    itr_noise i, r;
    uint8_t is[32], ipub[32], rs[32], rpub[32];
    uint8_t msg[3][256];
    size_t len[3];
    uint8_t payload[3][PLEN];
} pair;

static int setup(void **state)
{
    (void)state;
    return itr_crypto_init() == ITR_OK ? 0 : -1;
}

static void pair_init(pair *p, itr_suite suite)
{
    memset(p, 0, sizeof(*p));
    itr_dh_keypair(p->is, p->ipub);
    itr_dh_keypair(p->rs, p->rpub);
    for (int m = 0; m < 3; m++)
        itr_random(p->payload[m], PLEN);
    assert_int_equal(
        itr_noise_init(&p->i, suite, 1, (const uint8_t *)PROLOGUE, PROLOGUE_LEN, p->is, NULL),
        ITR_OK);
    assert_int_equal(
        itr_noise_init(&p->r, suite, 0, (const uint8_t *)PROLOGUE, PROLOGUE_LEN, p->rs, NULL),
        ITR_OK);
}

/* Writes message m (0-based) from its sender; checks the expected length. */
static void write_msg(pair *p, int m)
{
    itr_noise *tx = m == 1 ? &p->r : &p->i;
    assert_int_equal(
        itr_noise_write(tx, p->payload[m], PLEN, p->msg[m], sizeof(p->msg[m]), &p->len[m]), ITR_OK);
    size_t want = m == 0   ? ITR_NOISE_MSG1_LEN(PLEN)
                  : m == 1 ? ITR_NOISE_MSG2_LEN(PLEN)
                           : ITR_NOISE_MSG3_LEN(PLEN);
    assert_int_equal(p->len[m], want);
}

static void read_msg(pair *p, int m)
{
    itr_noise *rx = m == 1 ? &p->i : &p->r;
    uint8_t out[PLEN];
    size_t n = 0;
    assert_int_equal(itr_noise_read(rx, p->msg[m], p->len[m], out, sizeof(out), &n), ITR_OK);
    assert_int_equal(n, PLEN);
    assert_memory_equal(out, p->payload[m], PLEN);
}

/* Runs messages [0, upto) through both sides. */
static void run_until(pair *p, int upto)
{
    for (int m = 0; m < upto; m++) {
        write_msg(p, m);
        read_msg(p, m);
    }
}

static void test_handshake_both_suites(void **state)
{
    (void)state;
    for (size_t s = 0; s < NSUITES; s++) {
        pair p;
        pair_init(&p, SUITES[s]);
        assert_int_equal(p.i.step, ITR_NOISE_MSG1);
        run_until(&p, 3);
        assert_int_equal(p.i.step, ITR_NOISE_DONE);
        assert_int_equal(p.r.step, ITR_NOISE_DONE);
        /* Each side learned the other's static key. */
        assert_true(p.i.has_rs && p.r.has_rs);
        assert_memory_equal(p.i.rs, p.rpub, 32);
        assert_memory_equal(p.r.rs, p.ipub, 32);
        /* Private keys are gone once the handshake is done (forward secrecy). */
        assert_true(sodium_is_zero(p.i.e_priv, 32) && sodium_is_zero(p.r.e_priv, 32));
        assert_true(sodium_is_zero(p.i.s_priv, 32) && sodium_is_zero(p.r.s_priv, 32));

        uint8_t hi[32], hr[32];
        itr_noise_handshake_hash(&p.i, hi);
        itr_noise_handshake_hash(&p.r, hr);
        assert_memory_equal(hi, hr, 32);

        uint8_t is[32], ir[32], rsend[32], rrecv[32];
        assert_int_equal(itr_noise_split(&p.i, is, ir), ITR_OK);
        assert_int_equal(itr_noise_split(&p.r, rsend, rrecv), ITR_OK);
        assert_memory_equal(is, rrecv, 32);
        assert_memory_equal(ir, rsend, 32);
        assert_memory_not_equal(is, ir, 32);
        /* Split consumed the chaining key; the hash stays. */
        assert_int_equal(itr_noise_split(&p.i, is, ir), ITR_ERR_INVALID);
        itr_noise_handshake_hash(&p.i, hi);
        assert_memory_equal(hi, hr, 32);

        /* Transport with the split keys, both directions. */
        uint8_t pt[100], ct[116], out[100];
        itr_random(pt, sizeof(pt));
        assert_int_equal(itr_aead_seal(SUITES[s], is, NULL, 0, NULL, 0, pt, 100, ct), ITR_OK);
        assert_int_equal(itr_aead_open(SUITES[s], rrecv, NULL, 0, NULL, 0, ct, 116, out), ITR_OK);
        assert_memory_equal(out, pt, 100);
        assert_int_equal(itr_aead_seal(SUITES[s], rsend, NULL, 3, NULL, 0, pt, 100, ct), ITR_OK);
        assert_int_equal(itr_aead_open(SUITES[s], ir, NULL, 3, NULL, 0, ct, 116, out), ITR_OK);
        itr_noise_wipe(&p.i);
        itr_noise_wipe(&p.r);
    }
}

/* Fresh handshakes never repeat keys or hashes (fresh ephemerals each time). */
static void test_fresh_ephemerals(void **state)
{
    (void)state;
    pair a, b;
    uint8_t ha[32], hb[32];
    pair_init(&a, ITR_SUITE_CHACHAPOLY);
    b = a; /* same statics, same payloads */
    itr_noise_init(&b.i, ITR_SUITE_CHACHAPOLY, 1, (const uint8_t *)PROLOGUE, PROLOGUE_LEN, b.is,
                   NULL);
    itr_noise_init(&b.r, ITR_SUITE_CHACHAPOLY, 0, (const uint8_t *)PROLOGUE, PROLOGUE_LEN, b.rs,
                   NULL);
    run_until(&a, 3);
    run_until(&b, 3);
    assert_memory_not_equal(a.msg[0], b.msg[0], 32);
    itr_noise_handshake_hash(&a.i, ha);
    itr_noise_handshake_hash(&b.i, hb);
    assert_memory_not_equal(ha, hb, 32);
}

/* A fixed ephemeral (test vectors) is the one sent. */
static void test_fixed_ephemeral(void **state)
{
    (void)state;
    uint8_t s[32], spub[32], e[32], epub[32], msg[64];
    size_t n;
    itr_noise hs;
    itr_dh_keypair(s, spub);
    itr_dh_keypair(e, epub);
    assert_int_equal(itr_noise_init(&hs, ITR_SUITE_AESGCM, 1, NULL, 0, s, e), ITR_OK);
    assert_int_equal(itr_noise_write(&hs, NULL, 0, msg, sizeof(msg), &n), ITR_OK);
    assert_int_equal(n, 32);
    assert_memory_equal(msg, epub, 32);
}

/* Message 1 is not authenticated by itself: a changed byte is caught when the initiator reads
 * message 2 (whose AEAD covers the transcript). Messages 2 and 3 fail at once. Every byte of
 * each message is tried, for both suites. */
static void test_tampered_bytes_rejected(void **state)
{
    (void)state;
    for (size_t s = 0; s < NSUITES; s++) {
        pair base;
        pair_init(&base, SUITES[s]);
        write_msg(&base, 0);

        for (size_t b = 0; b < base.len[0]; b++) {
            pair p = base;
            uint8_t out[PLEN], m2[256];
            size_t n, n2;
            p.msg[0][b] ^= 0x01;
            if (itr_noise_read(&p.r, p.msg[0], p.len[0], out, sizeof(out), &n) != ITR_OK)
                continue; /* a low-order e is refused later anyway; here any refusal counts */
            int rc = itr_noise_write(&p.r, p.payload[1], PLEN, m2, sizeof(m2), &n2);
            if (rc == ITR_OK)
                rc = itr_noise_read(&p.i, m2, n2, out, sizeof(out), &n);
            assert_int_not_equal(rc, ITR_OK);
            assert_int_equal(p.i.step == ITR_NOISE_FAILED || p.r.step == ITR_NOISE_FAILED, 1);
        }

        read_msg(&base, 0);
        write_msg(&base, 1);
        for (size_t b = 0; b < base.len[1]; b++) {
            itr_noise trial = base.i;
            uint8_t msg[256], out[PLEN];
            size_t n = 99;
            memcpy(msg, base.msg[1], base.len[1]);
            msg[b] ^= 0x01;
            assert_int_not_equal(itr_noise_read(&trial, msg, base.len[1], out, sizeof(out), &n),
                                 ITR_OK);
            assert_int_equal(trial.step, ITR_NOISE_FAILED);
            assert_int_equal(n, 0);
        }

        read_msg(&base, 1);
        write_msg(&base, 2);
        for (size_t b = 0; b < base.len[2]; b++) {
            itr_noise trial = base.r;
            uint8_t msg[256], out[PLEN];
            size_t n;
            memcpy(msg, base.msg[2], base.len[2]);
            msg[b] ^= 0x80;
            assert_int_equal(itr_noise_read(&trial, msg, base.len[2], out, sizeof(out), &n),
                             ITR_ERR_CRYPTO);
            assert_int_equal(trial.step, ITR_NOISE_FAILED);
            /* Failure wiped the keys. */
            assert_true(sodium_is_zero(trial.ck, 32) && sodium_is_zero(trial.cs.k, 32));
        }
        /* The untouched message still completes the handshake. */
        read_msg(&base, 2);
        assert_int_equal(base.r.step, ITR_NOISE_DONE);
    }
}

/* Truncated and extended messages. */
static void test_lengths(void **state)
{
    (void)state;
    pair base;
    uint8_t out[PLEN + 8], small[4];
    size_t n;
    pair_init(&base, ITR_SUITE_AESGCM);
    write_msg(&base, 0);

    pair p = base;
    assert_int_equal(itr_noise_read(&p.r, p.msg[0], 31, out, sizeof(out), &n), ITR_ERR_INVALID);
    assert_int_equal(p.r.step, ITR_NOISE_FAILED);
    /* Payload does not fit the caller's buffer. */
    p = base;
    assert_int_equal(itr_noise_read(&p.r, p.msg[0], p.len[0], small, sizeof(small), &n),
                     ITR_ERR_INVALID);
    /* Output buffer too small for the writer. */
    p = base;
    uint8_t m2[ITR_NOISE_MSG2_LEN(PLEN)];
    read_msg(&p, 0);
    assert_int_equal(itr_noise_write(&p.r, p.payload[1], PLEN, m2, sizeof(m2) - 1, &n),
                     ITR_ERR_INVALID);
    assert_int_equal(p.r.step, ITR_NOISE_FAILED);

    p = base;
    read_msg(&p, 0);
    write_msg(&p, 1);
    itr_noise trial = p.i;
    assert_int_equal(itr_noise_read(&trial, p.msg[1], 32 + 48 + 15, out, sizeof(out), &n),
                     ITR_ERR_INVALID);
    trial = p.i;
    assert_int_not_equal(itr_noise_read(&trial, p.msg[1], p.len[1] - 1, out, sizeof(out), &n),
                         ITR_OK);
    trial = p.i;
    p.msg[1][p.len[1]] = 0;
    assert_int_not_equal(itr_noise_read(&trial, p.msg[1], p.len[1] + 1, out, sizeof(out), &n),
                         ITR_OK);
    /* Empty payloads work. */
    pair e;
    pair_init(&e, ITR_SUITE_CHACHAPOLY);
    uint8_t m[128];
    assert_int_equal(itr_noise_write(&e.i, NULL, 0, m, sizeof(m), &n), ITR_OK);
    assert_int_equal(n, ITR_NOISE_MSG1_LEN(0));
    assert_int_equal(itr_noise_read(&e.r, m, n, NULL, 0, &n), ITR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(itr_noise_write(&e.r, NULL, 0, m, sizeof(m), &n), ITR_OK);
    assert_int_equal(n, ITR_NOISE_MSG2_LEN(0));
    assert_int_equal(itr_noise_read(&e.i, m, n, NULL, 0, &n), ITR_OK);
    assert_int_equal(itr_noise_write(&e.i, NULL, 0, m, sizeof(m), &n), ITR_OK);
    assert_int_equal(n, ITR_NOISE_MSG3_LEN(0));
    assert_int_equal(itr_noise_read(&e.r, m, n, NULL, 0, &n), ITR_OK);
    assert_int_equal(e.r.step, ITR_NOISE_DONE);
}

/* Every call made out of turn is refused and kills the state. */
static void test_wrong_turn(void **state)
{
    (void)state;
    pair base;
    uint8_t buf[256], out[PLEN], k1[32], k2[32];
    size_t n;
    pair_init(&base, ITR_SUITE_CHACHAPOLY);

    pair p = base;
    assert_int_equal(itr_noise_read(&p.i, buf, 48, out, sizeof(out), &n), ITR_ERR_INVALID);
    assert_int_equal(p.i.step, ITR_NOISE_FAILED);
    p = base;
    assert_int_equal(itr_noise_write(&p.r, NULL, 0, buf, sizeof(buf), &n), ITR_ERR_INVALID);
    assert_int_equal(p.r.step, ITR_NOISE_FAILED);
    p = base;
    assert_int_equal(itr_noise_split(&p.i, k1, k2), ITR_ERR_INVALID);

    p = base;
    write_msg(&p, 0);
    pair q = p;
    assert_int_equal(itr_noise_write(&q.i, NULL, 0, buf, sizeof(buf), &n), ITR_ERR_INVALID);
    q = p;
    read_msg(&q, 0);
    pair r = q;
    assert_int_equal(itr_noise_read(&r.r, q.msg[0], q.len[0], out, sizeof(out), &n),
                     ITR_ERR_INVALID); /* a replayed message 1 on the same state */
    write_msg(&q, 1);
    r = q;
    assert_int_equal(itr_noise_write(&r.r, NULL, 0, buf, sizeof(buf), &n), ITR_ERR_INVALID);
    read_msg(&q, 1);
    r = q;
    assert_int_equal(itr_noise_read(&r.i, q.msg[1], q.len[1], out, sizeof(out), &n),
                     ITR_ERR_INVALID);
    write_msg(&q, 2);
    read_msg(&q, 2);
    r = q;
    assert_int_equal(itr_noise_write(&r.i, NULL, 0, buf, sizeof(buf), &n), ITR_ERR_INVALID);
    r = q;
    assert_int_equal(itr_noise_read(&r.r, q.msg[2], q.len[2], out, sizeof(out), &n),
                     ITR_ERR_INVALID);

    /* A failed state refuses everything. */
    itr_noise dead = base.i;
    itr_noise_wipe(&dead);
    assert_int_equal(dead.step, ITR_NOISE_FAILED);
    assert_int_equal(itr_noise_write(&dead, NULL, 0, buf, sizeof(buf), &n), ITR_ERR_INVALID);
    assert_int_equal(itr_noise_read(&dead, buf, 48, out, sizeof(out), &n), ITR_ERR_INVALID);
    assert_int_equal(itr_noise_split(&dead, k1, k2), ITR_ERR_INVALID);
}

/* A low-order ephemeral makes a DH output zero: refused at the first DH that uses it. */
static void test_zero_dh_rejected(void **state)
{
    (void)state;
    static const uint8_t low_order[2][32] = {
        {0},
        {1},
    };
    for (int k = 0; k < 2; k++) {
        pair p;
        uint8_t out[PLEN], m2[256];
        size_t n;
        pair_init(&p, ITR_SUITE_AESGCM);
        write_msg(&p, 0);
        /* Responder side: message 1 carries a low-order e; reading it does no DH, writing
         * message 2 (ee) must fail. */
        pair q = p;
        memcpy(q.msg[0], low_order[k], 32);
        assert_int_equal(itr_noise_read(&q.r, q.msg[0], q.len[0], out, sizeof(out), &n), ITR_OK);
        assert_int_equal(itr_noise_write(&q.r, NULL, 0, m2, sizeof(m2), &n), ITR_ERR_CRYPTO);
        assert_int_equal(q.r.step, ITR_NOISE_FAILED);

        /* Initiator side: message 2 carries a low-order e: ee fails before any decryption. */
        read_msg(&p, 0);
        write_msg(&p, 1);
        memcpy(p.msg[1], low_order[k], 32);
        assert_int_equal(itr_noise_read(&p.i, p.msg[1], p.len[1], out, sizeof(out), &n),
                         ITR_ERR_CRYPTO);
        assert_int_equal(p.i.step, ITR_NOISE_FAILED);
    }
}

static void test_mismatches(void **state)
{
    (void)state;
    uint8_t is[32], ip[32], rs[32], rp[32], m1[64], m2[256], out[64];
    size_t n;
    itr_noise i, r;
    itr_dh_keypair(is, ip);
    itr_dh_keypair(rs, rp);

    /* Different prologues: caught at message 2. */
    itr_noise_init(&i, ITR_SUITE_AESGCM, 1, (const uint8_t *)"intentra/1", 10, is, NULL);
    itr_noise_init(&r, ITR_SUITE_AESGCM, 0, (const uint8_t *)"intentra/2", 10, rs, NULL);
    assert_int_equal(itr_noise_write(&i, NULL, 0, m1, sizeof(m1), &n), ITR_OK);
    assert_int_equal(itr_noise_read(&r, m1, n, out, sizeof(out), &n), ITR_OK);
    assert_int_equal(itr_noise_write(&r, NULL, 0, m2, sizeof(m2), &n), ITR_OK);
    assert_int_equal(itr_noise_read(&i, m2, n, out, sizeof(out), &n), ITR_ERR_CRYPTO);

    /* Different suites (the protocol name is hashed first). */
    itr_noise_init(&i, ITR_SUITE_AESGCM, 1, NULL, 0, is, NULL);
    itr_noise_init(&r, ITR_SUITE_CHACHAPOLY, 0, NULL, 0, rs, NULL);
    assert_int_equal(itr_noise_write(&i, NULL, 0, m1, sizeof(m1), &n), ITR_OK);
    assert_int_equal(itr_noise_read(&r, m1, n, out, sizeof(out), &n), ITR_OK);
    assert_int_equal(itr_noise_write(&r, NULL, 0, m2, sizeof(m2), &n), ITR_OK);
    assert_int_equal(itr_noise_read(&i, m2, n, out, sizeof(out), &n), ITR_ERR_CRYPTO);

    /* Unknown suite. */
    assert_int_equal(itr_noise_init(&i, (itr_suite)3, 1, NULL, 0, is, NULL), ITR_ERR_INVALID);
    assert_int_equal(i.step, ITR_NOISE_FAILED);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(itr_noise_protocol_name(ITR_SUITE_AESGCM), "Noise_XX_25519_AESGCM_SHA256");
    assert_string_equal(itr_noise_protocol_name(ITR_SUITE_CHACHAPOLY),
                        "Noise_XX_25519_ChaChaPoly_SHA256");
    assert_null(itr_noise_protocol_name((itr_suite)0));
    assert_int_equal(itr_noise_suite_from_name("Noise_XX_25519_AESGCM_SHA256"), ITR_SUITE_AESGCM);
    assert_int_equal(itr_noise_suite_from_name("Noise_XX_25519_ChaChaPoly_SHA256"),
                     ITR_SUITE_CHACHAPOLY);
    assert_int_equal(itr_noise_suite_from_name("Noise_XX_25519_AESGCM_BLAKE2b"), 0);
    assert_int_equal(itr_noise_suite_from_name("Noise_IK_25519_AESGCM_SHA256"), 0);
    assert_int_equal(itr_noise_suite_from_name(NULL), 0);
}

/* CipherState: n advances only on success; a replayed or reordered ciphertext fails; the
 * reserved n = 2^64 - 1 is refused. */
static void test_cipher_state(void **state)
{
    (void)state;
    for (size_t s = 0; s < NSUITES; s++) {
        itr_noise_cipher tx = {.n = 0, .has_key = 1}, rx;
        uint8_t ct[3][48], out[32], pt[32];
        size_t n;
        itr_random(tx.k, 32);
        itr_random(pt, sizeof(pt));
        rx = tx;
        for (int m = 0; m < 3; m++)
            assert_int_equal(
                itr_noise_cipher_encrypt(SUITES[s], &tx, NULL, 0, pt, 32, ct[m], 48, &n), ITR_OK);
        assert_int_equal(tx.n, 3);
        assert_int_equal(itr_noise_cipher_decrypt(SUITES[s], &rx, NULL, 0, ct[1], 48, out, 32, &n),
                         ITR_ERR_CRYPTO);
        assert_int_equal(rx.n, 0);
        assert_int_equal(itr_noise_cipher_decrypt(SUITES[s], &rx, NULL, 0, ct[0], 48, out, 32, &n),
                         ITR_OK);
        assert_int_equal(n, 32);
        assert_memory_equal(out, pt, 32);
        assert_int_equal(itr_noise_cipher_decrypt(SUITES[s], &rx, NULL, 0, ct[0], 48, out, 32, &n),
                         ITR_ERR_CRYPTO);
        assert_int_equal(rx.n, 1);
        /* Buffers and keys. */
        assert_int_equal(itr_noise_cipher_encrypt(SUITES[s], &tx, NULL, 0, pt, 32, ct[0], 47, &n),
                         ITR_ERR_INVALID);
        itr_noise_cipher nokey = {.has_key = 0};
        assert_int_equal(
            itr_noise_cipher_encrypt(SUITES[s], &nokey, NULL, 0, pt, 32, ct[0], 48, &n),
            ITR_ERR_INVALID);
        tx.n = UINT64_MAX;
        assert_int_equal(itr_noise_cipher_encrypt(SUITES[s], &tx, NULL, 0, pt, 32, ct[0], 48, &n),
                         ITR_ERR_INVALID);
        tx.n = UINT64_MAX - 1;
        assert_int_equal(itr_noise_cipher_encrypt(SUITES[s], &tx, NULL, 0, pt, 32, ct[0], 48, &n),
                         ITR_OK);
        assert_int_equal(tx.n, UINT64_MAX);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_both_suites),
        cmocka_unit_test(test_fresh_ephemerals),
        cmocka_unit_test(test_fixed_ephemeral),
        cmocka_unit_test(test_tampered_bytes_rejected),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_wrong_turn),
        cmocka_unit_test(test_zero_dh_rejected),
        cmocka_unit_test(test_mismatches),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_cipher_state),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
