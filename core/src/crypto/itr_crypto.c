/* itr_crypto.c: the primitives of itr_crypto.h on libsodium, with OpenSSL's EVP AES-256-GCM as
 * the fallback for hosts without AES-NI (libsodium 1.0.18 only has the AES-NI implementation),
 * and the direct-mapped cache of expanded AES-GCM keys.
 */
#define _POSIX_C_SOURCE 200809L /* posix_memalign */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include <intentra/error.h>

#include "itr_crypto.h"

/* The opaque type of the header is libsodium's expanded key; the cast below is the only place
 * the two meet. */
struct itr_aead_state {
    crypto_aead_aes256gcm_state st;
};

_Static_assert(sizeof(crypto_aead_aes256gcm_state) == 512, "header says 512 B");
_Static_assert(crypto_aead_aes256gcm_NPUBBYTES == 12, "Noise nonces are 12 bytes");
_Static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12, "Noise nonces are 12 bytes");
_Static_assert(crypto_aead_aes256gcm_ABYTES == 16 && crypto_aead_chacha20poly1305_ietf_ABYTES == 16,
               "tags are 16 bytes");

/* 0: not yet probed, 1: AES-NI + PCLMUL present, 2: absent. Written once by itr_crypto_init
 * (any thread; every writer stores the same value), read on every AESGCM seal/open. */
static atomic_int g_aes_hw;
/* Set only by tests and benchmarks (itr_crypto_force_evp_aesgcm). */
static atomic_int g_force_evp;

int itr_crypto_init(void)
{
    if (sodium_init() < 0)
        return ITR_ERR_CRYPTO;
    atomic_store_explicit(&g_aes_hw, crypto_aead_aes256gcm_is_available() ? 1 : 2,
                          memory_order_relaxed);
    return ITR_OK;
}

/* The AEAD may be reached before anyone called itr_crypto_init (a test, a tool): probe then. */
static int aes_hw_usable(void)
{
    int hw = atomic_load_explicit(&g_aes_hw, memory_order_relaxed);
    if (hw == 0) {
        if (itr_crypto_init() != ITR_OK)
            return 0;
        hw = atomic_load_explicit(&g_aes_hw, memory_order_relaxed);
    }
    return hw == 1 && !atomic_load_explicit(&g_force_evp, memory_order_relaxed);
}

int itr_crypto_have_aesgcm(void)
{
    return aes_hw_usable();
}

int itr_crypto_force_evp_aesgcm(int force)
{
    return atomic_exchange_explicit(&g_force_evp, force != 0, memory_order_relaxed);
}

/* ---- hashing ---- */

void itr_hash(uint8_t out[ITR_HASH_LEN], const uint8_t *a, size_t alen, const uint8_t *b,
              size_t blen)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    if (alen)
        crypto_hash_sha256_update(&st, a, alen);
    if (blen)
        crypto_hash_sha256_update(&st, b, blen);
    crypto_hash_sha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

/* HMAC-SHA256 over up to three pieces (the HKDF feeds out_{i-1} || byte). */
static void hmac3(uint8_t out[ITR_HASH_LEN], const uint8_t key[ITR_HASH_LEN], const uint8_t *a,
                  size_t alen, const uint8_t *b, size_t blen)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, ITR_HASH_LEN);
    if (alen)
        crypto_auth_hmacsha256_update(&st, a, alen);
    if (blen)
        crypto_auth_hmacsha256_update(&st, b, blen);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

void itr_hmac(uint8_t out[ITR_HASH_LEN], const uint8_t key[ITR_HASH_LEN], const uint8_t *m,
              size_t mlen)
{
    hmac3(out, key, m, mlen, NULL, 0);
}

/* Noise §4.3 HKDF: temp = HMAC(ck, ikm); out1 = HMAC(temp, 0x01); out2 = HMAC(temp, out1 ||
 * 0x02); out3 = HMAC(temp, out2 || 0x03). */
void itr_hkdf(uint8_t out1[ITR_HASH_LEN], uint8_t out2[ITR_HASH_LEN], uint8_t *out3,
              const uint8_t ck[ITR_HASH_LEN], const uint8_t *ikm, size_t ikmlen)
{
    uint8_t temp[ITR_HASH_LEN], o1[ITR_HASH_LEN], o2[ITR_HASH_LEN];
    const uint8_t one = 1, two = 2, three = 3;

    hmac3(temp, ck, ikm, ikmlen, NULL, 0);
    hmac3(o1, temp, &one, 1, NULL, 0);
    hmac3(o2, temp, o1, sizeof(o1), &two, 1);
    if (out3)
        hmac3(out3, temp, o2, sizeof(o2), &three, 1);
    /* Outputs may alias ck (MixKey writes ck from ck): copy only after all reads of ck. */
    memcpy(out1, o1, sizeof(o1));
    memcpy(out2, o2, sizeof(o2));
    sodium_memzero(temp, sizeof(temp));
    sodium_memzero(o1, sizeof(o1));
    sodium_memzero(o2, sizeof(o2));
}

/* ---- X25519 ---- */

int itr_dh(uint8_t out[ITR_KEY_LEN], const uint8_t priv[ITR_KEY_LEN],
           const uint8_t pub[ITR_KEY_LEN])
{
    /* libsodium already refuses an all-zero result; the explicit check keeps the guarantee
     * independent of the library version. */
    if (crypto_scalarmult(out, priv, pub) != 0 || sodium_is_zero(out, ITR_KEY_LEN)) {
        sodium_memzero(out, ITR_KEY_LEN);
        return ITR_ERR_CRYPTO;
    }
    return ITR_OK;
}

void itr_dh_keypair(uint8_t priv[ITR_KEY_LEN], uint8_t pub[ITR_KEY_LEN])
{
    randombytes_buf(priv, ITR_KEY_LEN);
    crypto_scalarmult_base(pub, priv);
}

/* ---- BLAKE2b ---- */

void itr_mac16(uint8_t out[ITR_MAC_LEN], const uint8_t *key, size_t keylen, const uint8_t *a,
               size_t alen, const uint8_t *b, size_t blen)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, keylen, ITR_MAC_LEN);
    if (alen)
        crypto_generichash_update(&st, a, alen);
    if (blen)
        crypto_generichash_update(&st, b, blen);
    crypto_generichash_final(&st, out, ITR_MAC_LEN);
    sodium_memzero(&st, sizeof(st));
}

void itr_blake2b256(uint8_t out[32], const char *label, const uint8_t *data, size_t dlen)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const unsigned char *)label, strlen(label));
    if (dlen)
        crypto_generichash_update(&st, data, dlen);
    crypto_generichash_final(&st, out, 32);
    sodium_memzero(&st, sizeof(st));
}

/* ---- transport AEAD ---- */

/* Noise §12.3 / §12.4: 32 zero bits then the 64-bit counter, big-endian for AESGCM and
 * little-endian for ChaChaPoly. */
static void noise_nonce(uint8_t nonce[12], itr_suite suite, uint64_t n)
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++) {
        uint8_t byte = (uint8_t)(n >> (8 * i));
        if (suite == ITR_SUITE_AESGCM)
            nonce[11 - i] = byte;
        else
            nonce[4 + i] = byte;
    }
}

/* The fallback keeps one encryption and one decryption context per thread, created with the
 * cipher once, so a packet costs a re-key and no allocation (resetting the context instead
 * would free and refetch the provider state every call: about 3x slower). Each context holds
 * the schedule of the last key it used until the next call overwrites it; OpenSSL clears it
 * when the thread exits and the key destructor frees the pair. */
typedef struct evp_pair {
    EVP_CIPHER_CTX *enc, *dec;
} evp_pair;

static pthread_key_t g_evp_key;
static pthread_once_t g_evp_once = PTHREAD_ONCE_INIT;
static int g_evp_key_ok;

static void evp_pair_destroy(void *p)
{
    evp_pair *pair = p;
    EVP_CIPHER_CTX_free(pair->enc);
    EVP_CIPHER_CTX_free(pair->dec);
    free(pair);
}

static void evp_key_create(void)
{
    g_evp_key_ok = pthread_key_create(&g_evp_key, evp_pair_destroy) == 0;
}

static evp_pair *evp_thread_pair(void)
{
    if (pthread_once(&g_evp_once, evp_key_create) != 0 || !g_evp_key_ok)
        return NULL;
    evp_pair *pair = pthread_getspecific(g_evp_key);
    if (pair)
        return pair;
    pair = calloc(1, sizeof(*pair));
    if (!pair)
        return NULL;
    pair->enc = EVP_CIPHER_CTX_new();
    pair->dec = EVP_CIPHER_CTX_new();
    if (!pair->enc || !pair->dec ||
        EVP_EncryptInit_ex(pair->enc, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_DecryptInit_ex(pair->dec, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        pthread_setspecific(g_evp_key, pair) != 0) {
        evp_pair_destroy(pair);
        return NULL;
    }
    return pair;
}

static int evp_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *ad,
                        size_t adlen, const uint8_t *pt, size_t ptlen, uint8_t *out)
{
    int len = 0;
    evp_pair *pair = evp_thread_pair();
    if (!pair)
        return ITR_ERR_NOMEM;
    EVP_CIPHER_CTX *ctx = pair->enc;
    if (ptlen > INT_MAX - 16 || adlen > INT_MAX)
        return ITR_ERR_INVALID;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
        (adlen && EVP_EncryptUpdate(ctx, NULL, &len, ad, (int)adlen) != 1) ||
        (ptlen && EVP_EncryptUpdate(ctx, out, &len, pt, (int)ptlen) != 1) ||
        EVP_EncryptFinal_ex(ctx, out + ptlen, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + ptlen) != 1)
        return ITR_ERR_CRYPTO;
    return ITR_OK;
}

static int evp_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *ad,
                        size_t adlen, const uint8_t *ct, size_t ctlen, uint8_t *out)
{
    int len = 0;
    size_t mlen = ctlen - 16;
    uint8_t tag[16];
    evp_pair *pair = evp_thread_pair();
    if (!pair)
        return ITR_ERR_NOMEM;
    EVP_CIPHER_CTX *ctx = pair->dec;
    if (ctlen > INT_MAX || adlen > INT_MAX)
        return ITR_ERR_INVALID;
    /* The tag is copied first: out may be ct (in-place open). */
    memcpy(tag, ct + mlen, 16);
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
        (adlen && EVP_DecryptUpdate(ctx, NULL, &len, ad, (int)adlen) != 1) ||
        (mlen && EVP_DecryptUpdate(ctx, out, &len, ct, (int)mlen) != 1) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1 ||
        EVP_DecryptFinal_ex(ctx, out + mlen, &len) != 1) {
        sodium_memzero(out, mlen); /* never hand out unauthenticated plaintext */
        return ITR_ERR_CRYPTO;
    }
    return ITR_OK;
}

int itr_aead_seal(itr_suite suite, const uint8_t key[32], const itr_aead_state *state, uint64_t n,
                  const uint8_t *ad, size_t adlen, const uint8_t *pt, size_t ptlen, uint8_t *out)
{
    uint8_t nonce[12];
    int rc = ITR_ERR_CRYPTO;
    noise_nonce(nonce, suite, n);
    if (suite == ITR_SUITE_CHACHAPOLY) {
        if (crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + ptlen, NULL, pt, ptlen,
                                                               ad, adlen, NULL, nonce, key) == 0)
            rc = ITR_OK;
    } else if (suite == ITR_SUITE_AESGCM) {
        if (!aes_hw_usable()) {
            rc = evp_gcm_seal(key, nonce, ad, adlen, pt, ptlen, out);
        } else if (state) {
            if (crypto_aead_aes256gcm_encrypt_detached_afternm(
                    out, out + ptlen, NULL, pt, ptlen, ad, adlen, NULL, nonce, &state->st) == 0)
                rc = ITR_OK;
        } else {
            crypto_aead_aes256gcm_state st;
            if (crypto_aead_aes256gcm_beforenm(&st, key) == 0 &&
                crypto_aead_aes256gcm_encrypt_detached_afternm(out, out + ptlen, NULL, pt, ptlen,
                                                               ad, adlen, NULL, nonce, &st) == 0)
                rc = ITR_OK;
            sodium_memzero(&st, sizeof(st));
        }
    } else {
        rc = ITR_ERR_INVALID;
    }
    return rc;
}

int itr_aead_open(itr_suite suite, const uint8_t key[32], const itr_aead_state *state, uint64_t n,
                  const uint8_t *ad, size_t adlen, const uint8_t *ct, size_t ctlen, uint8_t *out)
{
    uint8_t nonce[12];
    int rc = ITR_ERR_CRYPTO;
    if (ctlen < 16)
        return ITR_ERR_CRYPTO;
    size_t mlen = ctlen - 16;
    noise_nonce(nonce, suite, n);
    if (suite == ITR_SUITE_CHACHAPOLY) {
        if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, ct, mlen, ct + mlen, ad,
                                                               adlen, nonce, key) == 0)
            rc = ITR_OK;
    } else if (suite == ITR_SUITE_AESGCM) {
        if (!aes_hw_usable()) {
            rc = evp_gcm_open(key, nonce, ad, adlen, ct, ctlen, out);
        } else if (state) {
            if (crypto_aead_aes256gcm_decrypt_detached_afternm(out, NULL, ct, mlen, ct + mlen, ad,
                                                               adlen, nonce, &state->st) == 0)
                rc = ITR_OK;
        } else {
            crypto_aead_aes256gcm_state st;
            if (crypto_aead_aes256gcm_beforenm(&st, key) == 0 &&
                crypto_aead_aes256gcm_decrypt_detached_afternm(out, NULL, ct, mlen, ct + mlen, ad,
                                                               adlen, nonce, &st) == 0)
                rc = ITR_OK;
            sodium_memzero(&st, sizeof(st));
        }
    } else {
        rc = ITR_ERR_INVALID;
    }
    return rc;
}

/* ---- XChaCha20-Poly1305 (cookie replies) ---- */

void itr_xaead_seal(uint8_t *out, const uint8_t key[32], const uint8_t nonce[24], const uint8_t *pt,
                    size_t ptlen, const uint8_t *ad, size_t adlen)
{
    crypto_aead_xchacha20poly1305_ietf_encrypt(out, NULL, pt, ptlen, ad, adlen, NULL, nonce, key);
}

int itr_xaead_open(uint8_t *out, const uint8_t key[32], const uint8_t nonce[24], const uint8_t *ct,
                   size_t ctlen, const uint8_t *ad, size_t adlen)
{
    if (ctlen < crypto_aead_xchacha20poly1305_ietf_ABYTES)
        return ITR_ERR_CRYPTO;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, ctlen, ad, adlen, nonce,
                                                   key) != 0)
        return ITR_ERR_CRYPTO;
    return ITR_OK;
}

/* ---- randomness ---- */

void itr_random(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

uint32_t itr_random_u32(void)
{
    return randombytes_random();
}

/* ---- expanded-key cache ---- */

/* Bounds the cache at 512 MiB of expanded keys: far above any sane configuration, low enough
 * that the size computation cannot overflow. */
#define CACHE_MAX_ENTRIES (1u << 20)

typedef struct cache_tag {
    const void *owner;
    uint64_t gen;
    int used;
} cache_tag;

struct itr_aead_cache {
    uint32_t entries;
    uint64_t hits, misses;
    cache_tag *tags;
    itr_aead_state *states; /* entries of them, 16-byte aligned for AES-NI loads */
};

int itr_aead_cache_new(itr_aead_cache **out, uint32_t entries)
{
    int rc = ITR_ERR_NOMEM;
    void *states = NULL;
    itr_aead_cache *c = NULL;

    *out = NULL;
    if (entries > CACHE_MAX_ENTRIES)
        return ITR_ERR_INVALID;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto err_cache;
    c->entries = entries;
    if (entries) {
        c->tags = calloc(entries, sizeof(*c->tags));
        if (!c->tags)
            goto err_tags;
        if (posix_memalign(&states, 64, (size_t)entries * sizeof(itr_aead_state)) != 0)
            goto err_states;
        c->states = states;
    }
    *out = c;
    return ITR_OK;

err_states:
    free(c->tags);
err_tags:
    free(c);
err_cache:
    return rc;
}

void itr_aead_cache_free(itr_aead_cache *c)
{
    if (!c)
        return;
    if (c->states)
        sodium_memzero(c->states, (size_t)c->entries * sizeof(itr_aead_state));
    free(c->states);
    free(c->tags);
    free(c);
}

/* Direct-mapped: a 64-bit mix of (owner, gen) picks the only slot a key may live in; a
 * colliding key evicts it (the next lookup of the evicted key expands again). */
static uint32_t cache_slot(const itr_aead_cache *c, const void *owner, uint64_t gen)
{
    uint64_t x = (uint64_t)(uintptr_t)owner ^ (gen * 0x9e3779b97f4a7c15ull);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    /* Multiply-shift instead of %: no division on every packet, and x is mixed throughout. */
    return (uint32_t)(((x >> 32) * c->entries) >> 32);
}

const itr_aead_state *itr_aead_cache_get(itr_aead_cache *c, itr_suite suite, const void *owner,
                                         uint64_t gen, const uint8_t key[32])
{
    if (!c || c->entries == 0 || suite != ITR_SUITE_AESGCM || !aes_hw_usable())
        return NULL;
    uint32_t i = cache_slot(c, owner, gen);
    cache_tag *t = &c->tags[i];
    if (t->used && t->owner == owner && t->gen == gen) {
        c->hits++;
        return &c->states[i];
    }
    c->misses++;
    if (crypto_aead_aes256gcm_beforenm(&c->states[i].st, key) != 0) {
        sodium_memzero(&c->states[i], sizeof(c->states[i]));
        t->used = 0;
        return NULL;
    }
    t->owner = owner;
    t->gen = gen;
    t->used = 1;
    return &c->states[i];
}

void itr_aead_cache_drop(itr_aead_cache *c, const void *owner, uint64_t gen)
{
    if (!c || c->entries == 0)
        return;
    uint32_t i = cache_slot(c, owner, gen);
    cache_tag *t = &c->tags[i];
    if (t->used && t->owner == owner && t->gen == gen) {
        sodium_memzero(&c->states[i], sizeof(c->states[i]));
        memset(t, 0, sizeof(*t));
    }
}

void itr_aead_cache_stats(const itr_aead_cache *c, uint64_t *hits, uint64_t *misses)
{
    if (hits)
        *hits = c ? c->hits : 0;
    if (misses)
        *misses = c ? c->misses : 0;
}
