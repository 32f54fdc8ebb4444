/* test_crypto.c: the primitives of itr_crypto.h against published answers (RFC 4231 HMAC, RFC
 * 5869 HKDF, RFC 7748 X25519, FIPS 180 SHA-256) and against an independent implementation
 * (Python's hashlib / pyca cryptography for BLAKE2b and the two AEADs with Noise nonces); AEAD
 * round trips and tamper detection for both suites and both AES-GCM back ends; the expanded-key
 * cache (hit, miss, eviction, drop wipes).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include <intentra/keys.h>

#include "itr_crypto.h"

static void unhex(uint8_t *out, size_t len, const char *hex)
{
    assert_int_equal(strlen(hex), 2 * len);
    assert_int_equal(itr_hex_decode(out, len, hex, strlen(hex)), ITR_OK);
}

static void assert_hex(const uint8_t *got, size_t len, const char *hex)
{
    uint8_t want[256];
    assert_true(len <= sizeof(want));
    unhex(want, len, hex);
    assert_memory_equal(got, want, len);
}

static int setup(void **state)
{
    (void)state;
    return itr_crypto_init() == ITR_OK ? 0 : -1;
}

/* ---- hashing ---- */

static void test_sha256(void **state)
{
    (void)state;
    uint8_t out[32];
    itr_hash(out, (const uint8_t *)"ab", 2, (const uint8_t *)"c", 1);
    assert_hex(out, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    itr_hash(out, NULL, 0, NULL, 0);
    assert_hex(out, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* RFC 4231 test cases 1-4. itr_hmac takes a 32-byte key; HMAC pads shorter keys with zeros to
 * the block size, so the RFC's shorter keys zero-padded to 32 bytes give the same MACs. */
static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t key[32], data[50], out[32];

    memset(key, 0, sizeof(key));
    memset(key, 0x0b, 20);
    itr_hmac(out, key, (const uint8_t *)"Hi There", 8);
    assert_hex(out, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    memset(key, 0, sizeof(key));
    memcpy(key, "Jefe", 4);
    itr_hmac(out, key, (const uint8_t *)"what do ya want for nothing?", 28);
    assert_hex(out, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    memset(key, 0, sizeof(key));
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    itr_hmac(out, key, data, 50);
    assert_hex(out, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    memset(key, 0, sizeof(key));
    for (int i = 0; i < 25; i++)
        key[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, 50);
    itr_hmac(out, key, data, 50);
    assert_hex(out, 32, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
}

/* Noise's HKDF is RFC 5869 with the chaining key as salt and empty info. RFC 5869 test case 3
 * (empty salt = 32 zero bytes as HMAC key, IKM = 22 x 0x0b, empty info) gives the first 42
 * bytes; the rest of the 96 (for the third output) computed with Python's hmac module. */
static void test_hkdf_rfc5869(void **state)
{
    (void)state;
    uint8_t ck[32] = {0}, ikm[22], o[96];
    memset(ikm, 0x0b, sizeof(ikm));
    itr_hkdf(o, o + 32, o + 64, ck, ikm, sizeof(ikm));
    assert_hex(
        o, 42,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
    assert_hex(
        o, 96,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        "b2fb61057244b36c6ddd287f634795e7d80d5fe26bfc36def6dc129c29271a0eb7ab14bd2ca88259f8a3"
        "a92ac2ec0e3e4fa046a4b90b");

    /* Two outputs give the same first 64 bytes; out1 may alias ck (MixKey does that). */
    uint8_t two[64];
    itr_hkdf(two, two + 32, NULL, ck, ikm, sizeof(ikm));
    assert_memory_equal(two, o, 64);
    uint8_t alias[32] = {0}, k2[32];
    itr_hkdf(alias, k2, NULL, alias, ikm, sizeof(ikm));
    assert_memory_equal(alias, o, 32);
    assert_memory_equal(k2, o + 32, 32);
}

/* ---- X25519 ---- */

static void test_dh_rfc7748(void **state)
{
    (void)state;
    uint8_t a[32], b_pub[32], a_pub[32], shared[32];
    unhex(a, 32, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    unhex(b_pub, 32, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    assert_int_equal(itr_key_public(a, a_pub), ITR_OK);
    assert_hex(a_pub, 32, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    assert_int_equal(itr_dh(shared, a, b_pub), ITR_OK);
    assert_hex(shared, 32, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
}

/* Low-order points give an all-zero shared secret, which must be refused (and the output
 * zeroed, so a caller ignoring the error still holds no key material). */
static void test_dh_rejects_zero(void **state)
{
    (void)state;
    uint8_t priv[32], pub[32], out[32];
    itr_dh_keypair(priv, pub);
    static const char *low_order[] = {
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    };
    for (size_t i = 0; i < sizeof(low_order) / sizeof(low_order[0]); i++) {
        unhex(pub, 32, low_order[i]);
        memset(out, 0x55, sizeof(out));
        assert_int_equal(itr_dh(out, priv, pub), ITR_ERR_CRYPTO);
        assert_true(sodium_is_zero(out, sizeof(out)));
    }
}

static void test_dh_agrees(void **state)
{
    (void)state;
    uint8_t a[32], ap[32], b[32], bp[32], s1[32], s2[32];
    for (int i = 0; i < 8; i++) {
        itr_dh_keypair(a, ap);
        itr_dh_keypair(b, bp);
        assert_int_equal(itr_dh(s1, a, bp), ITR_OK);
        assert_int_equal(itr_dh(s2, b, ap), ITR_OK);
        assert_memory_equal(s1, s2, 32);
    }
}

/* ---- BLAKE2b (values from Python's hashlib) ---- */

static void test_blake2b(void **state)
{
    (void)state;
    uint8_t key[32], mac[16], h[32], data[32];
    memset(key, 'k', sizeof(key));
    itr_mac16(mac, key, sizeof(key), (const uint8_t *)"abc", 3, (const uint8_t *)"defg", 4);
    assert_hex(mac, 16, "adb4753c78710ccc59efaa027250e2d2");
    /* The split between the two pieces does not matter. */
    itr_mac16(mac, key, sizeof(key), (const uint8_t *)"abcdefg", 7, NULL, 0);
    assert_hex(mac, 16, "adb4753c78710ccc59efaa027250e2d2");
    for (int i = 0; i < 32; i++)
        data[i] = (uint8_t)i;
    itr_blake2b256(h, "intentra mac1 v1", data, sizeof(data));
    assert_hex(h, 32, "cde483f060322fbb5e3751767f86d5efa551ef2f14d3ad091ed93dc875e4778e");
}

/* ---- transport AEAD ---- */

static const char *KAT_PT = "intentra transport";
static const char *KAT_AD = "header0123456789";
#define KAT_N 0x0102030405060708ull
/* pyca cryptography with nonce = 4 zero bytes || n (big-endian for AES-GCM, little-endian for
 * ChaCha20-Poly1305), key = 00 01 .. 1f. */
static const char *KAT_AES = "6d3f116bb3957bff23eb8f8e7014499f088d6ff1f3ea7c143c9206d84bb88691a0fd";
static const char *KAT_CHA = "9927d981c54d987944df58ad1d0b11d792722b85197f0d71fb06f2d8b2a0cb5259f0";

static void kat_key(uint8_t key[32])
{
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
}

static void check_kat(itr_suite suite, const itr_aead_state *st, const char *want)
{
    uint8_t key[32], ct[64], pt[64];
    size_t ptlen = strlen(KAT_PT);
    kat_key(key);
    assert_int_equal(itr_aead_seal(suite, key, st, KAT_N, (const uint8_t *)KAT_AD, strlen(KAT_AD),
                                   (const uint8_t *)KAT_PT, ptlen, ct),
                     ITR_OK);
    assert_hex(ct, ptlen + 16, want);
    assert_int_equal(itr_aead_open(suite, key, st, KAT_N, (const uint8_t *)KAT_AD, strlen(KAT_AD),
                                   ct, ptlen + 16, pt),
                     ITR_OK);
    assert_memory_equal(pt, KAT_PT, ptlen);
}

static void test_aead_nonce_encoding(void **state)
{
    (void)state;
    check_kat(ITR_SUITE_CHACHAPOLY, NULL, KAT_CHA);
    if (itr_crypto_have_aesgcm()) {
        uint8_t key[32];
        itr_aead_cache *c;
        kat_key(key);
        assert_int_equal(itr_aead_cache_new(&c, 8), ITR_OK);
        const itr_aead_state *st = itr_aead_cache_get(c, ITR_SUITE_AESGCM, key, 1, key);
        assert_non_null(st);
        check_kat(ITR_SUITE_AESGCM, NULL, KAT_AES);
        check_kat(ITR_SUITE_AESGCM, st, KAT_AES);
        itr_aead_cache_free(c);
    }
    int prev = itr_crypto_force_evp_aesgcm(1);
    assert_false(itr_crypto_have_aesgcm());
    check_kat(ITR_SUITE_AESGCM, NULL, KAT_AES);
    itr_crypto_force_evp_aesgcm(prev);
}

/* Round trip at several lengths, in place and not, then every single-bit-position tamper of
 * the ciphertext and tag, a changed AD byte, and the wrong counter all fail. */
static void round_trip(itr_suite suite, const itr_aead_state *st, const uint8_t key[32])
{
    static const size_t lens[] = {0, 1, 15, 16, 17, 128, 1400};
    uint8_t pt[1500], ct[1500 + 16], out[1500 + 16], ad[16];
    itr_random(ad, sizeof(ad));
    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
        size_t len = lens[li];
        uint64_t n = 1000 + li;
        itr_random(pt, len);
        assert_int_equal(itr_aead_seal(suite, key, st, n, ad, sizeof(ad), pt, len, ct), ITR_OK);
        assert_int_equal(itr_aead_open(suite, key, st, n, ad, sizeof(ad), ct, len + 16, out),
                         ITR_OK);
        if (len)
            assert_memory_equal(out, pt, len);

        /* In place, both ways. */
        memcpy(out, pt, len);
        assert_int_equal(itr_aead_seal(suite, key, st, n, ad, sizeof(ad), out, len, out), ITR_OK);
        assert_memory_equal(out, ct, len + 16);
        assert_int_equal(itr_aead_open(suite, key, st, n, ad, sizeof(ad), out, len + 16, out),
                         ITR_OK);
        if (len)
            assert_memory_equal(out, pt, len);

        for (size_t i = 0; i < len + 16; i++) {
            memcpy(out, ct, len + 16);
            out[i] ^= 0x80;
            assert_int_equal(itr_aead_open(suite, key, st, n, ad, sizeof(ad), out, len + 16, out),
                             ITR_ERR_CRYPTO);
        }
        ad[3] ^= 1;
        assert_int_equal(itr_aead_open(suite, key, st, n, ad, sizeof(ad), ct, len + 16, out),
                         ITR_ERR_CRYPTO);
        ad[3] ^= 1;
        assert_int_equal(itr_aead_open(suite, key, st, n + 1, ad, sizeof(ad), ct, len + 16, out),
                         ITR_ERR_CRYPTO);
        assert_int_equal(itr_aead_open(suite, key, st, n, NULL, 0, ct, len + 16, out),
                         ITR_ERR_CRYPTO);
    }
    /* Shorter than a tag. */
    assert_int_equal(itr_aead_open(suite, key, st, 0, NULL, 0, ct, 15, out), ITR_ERR_CRYPTO);
}

static void test_aead_chachapoly(void **state)
{
    (void)state;
    uint8_t key[32];
    itr_random(key, sizeof(key));
    round_trip(ITR_SUITE_CHACHAPOLY, NULL, key);
}

static void test_aead_aesgcm(void **state)
{
    (void)state;
    uint8_t key[32];
    itr_random(key, sizeof(key));
    round_trip(ITR_SUITE_AESGCM, NULL, key);
    if (itr_crypto_have_aesgcm()) {
        itr_aead_cache *c;
        assert_int_equal(itr_aead_cache_new(&c, 4), ITR_OK);
        const itr_aead_state *st = itr_aead_cache_get(c, ITR_SUITE_AESGCM, key, 7, key);
        assert_non_null(st);
        round_trip(ITR_SUITE_AESGCM, st, key);
        itr_aead_cache_free(c);
    }
}

/* The OpenSSL fallback interoperates with libsodium in both directions. */
static void test_aead_aesgcm_openssl(void **state)
{
    (void)state;
    uint8_t key[32], pt[200], ct[216], ct2[216], out[216], ad[16];
    itr_random(key, sizeof(key));
    itr_random(pt, sizeof(pt));
    itr_random(ad, sizeof(ad));

    int prev = itr_crypto_force_evp_aesgcm(1);
    round_trip(ITR_SUITE_AESGCM, NULL, key);
    assert_int_equal(itr_aead_seal(ITR_SUITE_AESGCM, key, NULL, 77, ad, 16, pt, 200, ct), ITR_OK);
    itr_crypto_force_evp_aesgcm(prev);

    if (!itr_crypto_have_aesgcm())
        return; /* nothing to compare against on this host */
    assert_int_equal(itr_aead_seal(ITR_SUITE_AESGCM, key, NULL, 77, ad, 16, pt, 200, ct2), ITR_OK);
    assert_memory_equal(ct, ct2, sizeof(ct));
    assert_int_equal(itr_aead_open(ITR_SUITE_AESGCM, key, NULL, 77, ad, 16, ct, 216, out), ITR_OK);
    assert_memory_equal(out, pt, sizeof(pt));
}

/* The fallback keeps per-thread OpenSSL contexts: threads seal and open concurrently, and each
 * thread's contexts are freed when it exits (ASan's leak check sees it). */
static void *evp_thread(void *arg)
{
    uint8_t key[32], pt[64], ct[80], out[64];
    uintptr_t bad = 0;
    (void)arg;
    for (int i = 0; i < 200; i++) {
        itr_random(key, sizeof(key));
        itr_random(pt, sizeof(pt));
        if (itr_aead_seal(ITR_SUITE_AESGCM, key, NULL, (uint64_t)i, NULL, 0, pt, 64, ct) !=
                ITR_OK ||
            itr_aead_open(ITR_SUITE_AESGCM, key, NULL, (uint64_t)i, NULL, 0, ct, 80, out) !=
                ITR_OK ||
            memcmp(out, pt, 64) != 0)
            bad++;
        ct[i % 80] ^= 1;
        if (itr_aead_open(ITR_SUITE_AESGCM, key, NULL, (uint64_t)i, NULL, 0, ct, 80, out) !=
            ITR_ERR_CRYPTO)
            bad++;
    }
    return (void *)bad;
}

static void test_aead_openssl_threads(void **state)
{
    (void)state;
    pthread_t t[3];
    int prev = itr_crypto_force_evp_aesgcm(1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, evp_thread, NULL), 0);
    for (int i = 0; i < 3; i++) {
        void *bad;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_null(bad);
    }
    itr_crypto_force_evp_aesgcm(prev);
}

static void test_aead_bad_suite(void **state)
{
    (void)state;
    uint8_t key[32] = {0}, buf[32] = {0};
    assert_int_equal(itr_aead_seal((itr_suite)9, key, NULL, 0, NULL, 0, buf, 4, buf),
                     ITR_ERR_INVALID);
    assert_int_equal(itr_aead_open((itr_suite)9, key, NULL, 0, NULL, 0, buf, 20, buf),
                     ITR_ERR_INVALID);
}

static void test_xaead(void **state)
{
    (void)state;
    uint8_t key[32], nonce[24], pt[16], ct[32], out[16], ad[16];
    itr_random(key, sizeof(key));
    itr_random(nonce, sizeof(nonce));
    itr_random(pt, sizeof(pt));
    itr_random(ad, sizeof(ad));
    itr_xaead_seal(ct, key, nonce, pt, sizeof(pt), ad, sizeof(ad));
    assert_int_equal(itr_xaead_open(out, key, nonce, ct, sizeof(ct), ad, sizeof(ad)), ITR_OK);
    assert_memory_equal(out, pt, sizeof(pt));
    for (size_t i = 0; i < sizeof(ct); i++) {
        ct[i] ^= 1;
        assert_int_equal(itr_xaead_open(out, key, nonce, ct, sizeof(ct), ad, sizeof(ad)),
                         ITR_ERR_CRYPTO);
        ct[i] ^= 1;
    }
    ad[0] ^= 1;
    assert_int_equal(itr_xaead_open(out, key, nonce, ct, sizeof(ct), ad, sizeof(ad)),
                     ITR_ERR_CRYPTO);
    assert_int_equal(itr_xaead_open(out, key, nonce, ct, 15, NULL, 0), ITR_ERR_CRYPTO);
}

static void test_random(void **state)
{
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0};
    itr_random(a, sizeof(a));
    itr_random(b, sizeof(b));
    assert_false(sodium_is_zero(a, sizeof(a)));
    assert_memory_not_equal(a, b, sizeof(a));
    uint32_t x = itr_random_u32(), y = itr_random_u32(), z = itr_random_u32();
    assert_false(x == y && y == z);
}

/* ---- expanded-key cache ---- */

static void test_cache_hit_miss_drop(void **state)
{
    (void)state;
    if (!itr_crypto_have_aesgcm()) {
        skip(); /* the cache holds libsodium AES-NI states only */
    }
    uint8_t k1[32], k2[32];
    int owners[64];
    const int *owner1 = &owners[0], *owner2 = NULL;
    uint64_t hits, misses, gen3 = 0;
    itr_aead_cache *c;
    itr_random(k1, sizeof(k1));
    itr_random(k2, sizeof(k2));

    /* The cache is direct-mapped and the slot depends on the owner's address, so pick, in a
     * scratch cache of the same size, an owner and a generation whose slots differ from
     * (owner1, 1): otherwise one key would evict another and the test would depend on ASLR. */
    assert_int_equal(itr_aead_cache_new(&c, 64), ITR_OK);
    const itr_aead_state *sa = itr_aead_cache_get(c, ITR_SUITE_AESGCM, owner1, 1, k1);
    for (size_t i = 1; i < 64 && !owner2; i++)
        if (itr_aead_cache_get(c, ITR_SUITE_AESGCM, &owners[i], 1, k2) != sa)
            owner2 = &owners[i];
    assert_non_null(owner2);
    const itr_aead_state *sb = itr_aead_cache_get(c, ITR_SUITE_AESGCM, owner2, 1, k2);
    for (uint64_t g = 2; g < 1000 && !gen3; g++) {
        const itr_aead_state *x = itr_aead_cache_get(c, ITR_SUITE_AESGCM, owner1, g, k2);
        if (x != sa && x != sb)
            gen3 = g;
    }
    assert_true(gen3 != 0);
    itr_aead_cache_free(c);

    assert_int_equal(itr_aead_cache_new(&c, 64), ITR_OK);
    const itr_aead_state *s1 = itr_aead_cache_get(c, ITR_SUITE_AESGCM, owner1, 1, k1);
    assert_non_null(s1);
    assert_ptr_equal(itr_aead_cache_get(c, ITR_SUITE_AESGCM, owner1, 1, k1), s1);
    itr_aead_cache_stats(c, &hits, &misses);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 1);

    /* Another owner, and the same owner with a new generation, are different keys. */
    const itr_aead_state *s2 = itr_aead_cache_get(c, ITR_SUITE_AESGCM, owner2, 1, k2);
    assert_non_null(s2);
    const itr_aead_state *s3 = itr_aead_cache_get(c, ITR_SUITE_AESGCM, owner1, gen3, k2);
    assert_non_null(s3);
    itr_aead_cache_stats(c, &hits, &misses);
    assert_int_equal(misses, 3);

    /* A cached state seals exactly like the raw key. */
    uint8_t pt[64], a[80], b[80];
    itr_random(pt, sizeof(pt));
    assert_int_equal(itr_aead_seal(ITR_SUITE_AESGCM, k2, s2, 5, NULL, 0, pt, 64, a), ITR_OK);
    assert_int_equal(itr_aead_seal(ITR_SUITE_AESGCM, k2, NULL, 5, NULL, 0, pt, 64, b), ITR_OK);
    assert_memory_equal(a, b, sizeof(a));

    /* Drop wipes the slot and the next lookup expands again. */
    itr_aead_cache_drop(c, owner2, 1);
    assert_true(sodium_is_zero((const unsigned char *)s2, 512));
    itr_aead_cache_drop(c, owner2, 1);  /* idempotent */
    itr_aead_cache_drop(c, owner2, 99); /* unknown: no effect on others */
    assert_ptr_equal(itr_aead_cache_get(c, ITR_SUITE_AESGCM, owner1, 1, k1), s1);
    assert_non_null(itr_aead_cache_get(c, ITR_SUITE_AESGCM, owner2, 1, k2));
    itr_aead_cache_stats(c, &hits, &misses);
    assert_int_equal(hits, 2);
    assert_int_equal(misses, 4);
    itr_aead_cache_free(c);
}

/* One slot: two keys evict each other, each lookup a miss, and the state is always the one of
 * the key asked for. */
static void test_cache_eviction(void **state)
{
    (void)state;
    if (!itr_crypto_have_aesgcm()) {
        skip();
    }
    uint8_t k[2][32], pt[32], a[48], b[48];
    int owner[2];
    uint64_t hits, misses;
    itr_aead_cache *c;
    itr_random(k, sizeof(k));
    itr_random(pt, sizeof(pt));
    assert_int_equal(itr_aead_cache_new(&c, 1), ITR_OK);
    for (int round = 0; round < 6; round++) {
        int i = round % 2;
        const itr_aead_state *st = itr_aead_cache_get(c, ITR_SUITE_AESGCM, &owner[i], 0, k[i]);
        assert_non_null(st);
        assert_int_equal(itr_aead_seal(ITR_SUITE_AESGCM, k[i], st, 1, NULL, 0, pt, 32, a), ITR_OK);
        assert_int_equal(itr_aead_seal(ITR_SUITE_AESGCM, k[i], NULL, 1, NULL, 0, pt, 32, b),
                         ITR_OK);
        assert_memory_equal(a, b, sizeof(a));
    }
    itr_aead_cache_stats(c, &hits, &misses);
    assert_int_equal(hits, 0);
    assert_int_equal(misses, 6);
    itr_aead_cache_free(c);
}

static void test_cache_null_cases(void **state)
{
    (void)state;
    uint8_t key[32] = {1};
    int owner;
    itr_aead_cache *c;
    uint64_t hits = 9, misses = 9;

    assert_int_equal(itr_aead_cache_new(&c, 0), ITR_OK);
    assert_null(itr_aead_cache_get(c, ITR_SUITE_AESGCM, &owner, 0, key));
    itr_aead_cache_drop(c, &owner, 0);
    itr_aead_cache_free(c);

    assert_null(itr_aead_cache_get(NULL, ITR_SUITE_AESGCM, &owner, 0, key));
    itr_aead_cache_drop(NULL, &owner, 0);
    itr_aead_cache_free(NULL);
    itr_aead_cache_stats(NULL, &hits, &misses);
    assert_int_equal(hits + misses, 0);

    assert_int_equal(itr_aead_cache_new(&c, 8), ITR_OK);
    assert_null(itr_aead_cache_get(c, ITR_SUITE_CHACHAPOLY, &owner, 0, key));
    /* Forced fallback: no expanded states (OpenSSL uses the raw key). */
    int prev = itr_crypto_force_evp_aesgcm(1);
    assert_null(itr_aead_cache_get(c, ITR_SUITE_AESGCM, &owner, 0, key));
    itr_crypto_force_evp_aesgcm(prev);
    itr_aead_cache_free(c);

    c = (itr_aead_cache *)&owner;
    assert_int_equal(itr_aead_cache_new(&c, 0xffffffffu), ITR_ERR_INVALID);
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_hkdf_rfc5869),
        cmocka_unit_test(test_dh_rfc7748),
        cmocka_unit_test(test_dh_rejects_zero),
        cmocka_unit_test(test_dh_agrees),
        cmocka_unit_test(test_blake2b),
        cmocka_unit_test(test_aead_nonce_encoding),
        cmocka_unit_test(test_aead_chachapoly),
        cmocka_unit_test(test_aead_aesgcm),
        cmocka_unit_test(test_aead_aesgcm_openssl),
        cmocka_unit_test(test_aead_openssl_threads),
        cmocka_unit_test(test_aead_bad_suite),
        cmocka_unit_test(test_xaead),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_cache_hit_miss_drop),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_cache_null_cases),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
