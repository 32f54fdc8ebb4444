/* aead_bench.c (aead-bench): the numbers behind itr_crypto.h's choices, on one core. Seal+open
 * of a 128-byte payload with a 16-byte AD through libsodium AES-256-GCM with a precomputed
 * (cached) key state, libsodium with the key expanded per call, OpenSSL EVP with one context
 * per key, ChaCha20-Poly1305, and libintentra's own seal/open (cached state, and the OpenSSL
 * fallback used without AES-NI); then X25519 DH and complete Noise XX handshakes (both roles).
 * Each figure is the median of 5 runs.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "itr_crypto.h"
#include "itr_noise.h"

#define PAYLOAD 128
#define AD      16
#define RUNS    5

typedef struct ctx {
    uint8_t key[32], nonce[12], ad[AD], pt[PAYLOAD], ct[PAYLOAD + 16], out[PAYLOAD];
    crypto_aead_aes256gcm_state st;
    EVP_CIPHER_CTX *enc, *dec;
    const itr_aead_state *cached;
    uint64_t n;
    unsigned sink; /* folded results, printed, so no work can be optimized away */
} ctx;

typedef int (*op_fn)(ctx *c);

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ns per op: median over RUNS runs of iters ops each. Returns < 0 if an op failed. */
static double measure(op_fn op, ctx *c, long iters)
{
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++)
            if (op(c) != 0)
                return -1;
        t[r] = (now_ns() - t0) / (double)iters;
    }
    qsort(t, RUNS, sizeof(t[0]), cmp_double);
    return t[RUNS / 2];
}

static void next_nonce(ctx *c)
{
    c->n++;
    memcpy(c->nonce + 4, &c->n, 8);
}

static int op_sodium_afternm(ctx *c)
{
    unsigned long long len;
    next_nonce(c);
    if (crypto_aead_aes256gcm_encrypt_afternm(c->ct, &len, c->pt, PAYLOAD, c->ad, AD, NULL,
                                              c->nonce, &c->st) != 0 ||
        crypto_aead_aes256gcm_decrypt_afternm(c->out, &len, NULL, c->ct, PAYLOAD + 16, c->ad, AD,
                                              c->nonce, &c->st) != 0)
        return -1;
    c->sink += c->out[0];
    return 0;
}

static int op_sodium_per_call(ctx *c)
{
    unsigned long long len;
    next_nonce(c);
    if (crypto_aead_aes256gcm_encrypt(c->ct, &len, c->pt, PAYLOAD, c->ad, AD, NULL, c->nonce,
                                      c->key) != 0 ||
        crypto_aead_aes256gcm_decrypt(c->out, &len, NULL, c->ct, PAYLOAD + 16, c->ad, AD, c->nonce,
                                      c->key) != 0)
        return -1;
    c->sink += c->out[0];
    return 0;
}

/* OpenSSL with the key set once per context: only the IV changes per packet. */
static int op_evp(ctx *c)
{
    int len;
    next_nonce(c);
    if (EVP_EncryptInit_ex(c->enc, NULL, NULL, NULL, c->nonce) != 1 ||
        EVP_EncryptUpdate(c->enc, NULL, &len, c->ad, AD) != 1 ||
        EVP_EncryptUpdate(c->enc, c->ct, &len, c->pt, PAYLOAD) != 1 ||
        EVP_EncryptFinal_ex(c->enc, c->ct + PAYLOAD, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c->enc, EVP_CTRL_GCM_GET_TAG, 16, c->ct + PAYLOAD) != 1)
        return -1;
    if (EVP_DecryptInit_ex(c->dec, NULL, NULL, NULL, c->nonce) != 1 ||
        EVP_DecryptUpdate(c->dec, NULL, &len, c->ad, AD) != 1 ||
        EVP_DecryptUpdate(c->dec, c->out, &len, c->ct, PAYLOAD) != 1 ||
        EVP_CIPHER_CTX_ctrl(c->dec, EVP_CTRL_GCM_SET_TAG, 16, c->ct + PAYLOAD) != 1 ||
        EVP_DecryptFinal_ex(c->dec, c->out + PAYLOAD, &len) != 1)
        return -1;
    c->sink += c->out[0];
    return 0;
}

static int op_chacha(ctx *c)
{
    unsigned long long len;
    next_nonce(c);
    if (crypto_aead_chacha20poly1305_ietf_encrypt(c->ct, &len, c->pt, PAYLOAD, c->ad, AD, NULL,
                                                  c->nonce, c->key) != 0 ||
        crypto_aead_chacha20poly1305_ietf_decrypt(c->out, &len, NULL, c->ct, PAYLOAD + 16, c->ad,
                                                  AD, c->nonce, c->key) != 0)
        return -1;
    c->sink += c->out[0];
    return 0;
}

/* libintentra's transport path: Noise nonce, cached state (NULL: per-call or fallback). */
static int op_itr_aesgcm(ctx *c)
{
    c->n++;
    if (itr_aead_seal(ITR_SUITE_AESGCM, c->key, c->cached, c->n, c->ad, AD, c->pt, PAYLOAD,
                      c->ct) != ITR_OK ||
        itr_aead_open(ITR_SUITE_AESGCM, c->key, c->cached, c->n, c->ad, AD, c->ct, PAYLOAD + 16,
                      c->out) != ITR_OK)
        return -1;
    c->sink += c->out[0];
    return 0;
}

static int op_dh(ctx *c)
{
    uint8_t out[32];
    /* Chain the keys so each DH depends on the previous one. */
    if (itr_dh(out, c->key, c->pt) != ITR_OK)
        return -1;
    memcpy(c->pt, out, 32);
    c->pt[31] &= 0x7f;
    c->sink += out[0];
    return 0;
}

static uint8_t g_is[32], g_rs[32];

static int op_handshake(ctx *c)
{
    itr_noise i, r;
    uint8_t m1[64], m2[128], m3[96], p[64], k1[32], k2[32], k3[32], k4[32];
    size_t n1, n2, n3, n;
    int rc = -1;
    if (itr_noise_init(&i, ITR_SUITE_AESGCM, 1, (const uint8_t *)"intentra/1", 10, g_is, NULL) ||
        itr_noise_init(&r, ITR_SUITE_AESGCM, 0, (const uint8_t *)"intentra/1", 10, g_rs, NULL) ||
        itr_noise_write(&i, NULL, 0, m1, sizeof(m1), &n1) ||
        itr_noise_read(&r, m1, n1, p, sizeof(p), &n) ||
        itr_noise_write(&r, NULL, 0, m2, sizeof(m2), &n2) ||
        itr_noise_read(&i, m2, n2, p, sizeof(p), &n) ||
        itr_noise_write(&i, NULL, 0, m3, sizeof(m3), &n3) ||
        itr_noise_read(&r, m3, n3, p, sizeof(p), &n) || itr_noise_split(&i, k1, k2) ||
        itr_noise_split(&r, k3, k4) || memcmp(k1, k4, 32) != 0)
        goto out;
    c->sink += k1[0];
    rc = 0;
out:
    itr_noise_wipe(&i);
    itr_noise_wipe(&r);
    return rc;
}

static void report(const char *what, double ns)
{
    if (ns < 0) {
        printf("  %-52s FAILED\n", what);
        exit(1);
    }
    printf("  %-52s %10.1f ns\n", what, ns);
}

int main(int argc, char **argv)
{
    /* --quick: a tenth of the iterations (a smoke run; figures are noisier). */
    long scale = (argc > 1 && strcmp(argv[1], "--quick") == 0) ? 10 : 1;
    if (argc > 1 && scale == 1) {
        fprintf(stderr, "usage: aead-bench [--quick]\n");
        return 2;
    }
    if (itr_crypto_init() != ITR_OK)
        return 1;
    static ctx c;
    itr_random(c.key, sizeof(c.key));
    itr_random(c.ad, sizeof(c.ad));
    itr_random(c.pt, sizeof(c.pt));
    long aead_iters = 200000 / scale, dh_iters = 4000 / scale, hs_iters = 600 / scale;

    printf("aead-bench: seal+open of %d B payload with %d B AD, one core, median of %d runs\n",
           PAYLOAD, AD, RUNS);
    int hw = itr_crypto_have_aesgcm();
    if (hw) {
        crypto_aead_aes256gcm_beforenm(&c.st, c.key);
        report("libsodium AES-256-GCM, precomputed state",
               measure(op_sodium_afternm, &c, aead_iters));
        report("libsodium AES-256-GCM, key expanded per call",
               measure(op_sodium_per_call, &c, aead_iters));
    } else {
        printf("  (no AES-NI/PCLMUL: libsodium AES-256-GCM unavailable on this host)\n");
    }
    c.enc = EVP_CIPHER_CTX_new();
    c.dec = EVP_CIPHER_CTX_new();
    if (!c.enc || !c.dec || EVP_EncryptInit_ex(c.enc, EVP_aes_256_gcm(), NULL, c.key, NULL) != 1 ||
        EVP_DecryptInit_ex(c.dec, EVP_aes_256_gcm(), NULL, c.key, NULL) != 1)
        return 1;
    report("OpenSSL EVP AES-256-GCM, one context per key", measure(op_evp, &c, aead_iters));
    report("libsodium ChaCha20-Poly1305 (IETF)", measure(op_chacha, &c, aead_iters));

    itr_aead_cache *cache = NULL;
    if (itr_aead_cache_new(&cache, 16) != ITR_OK)
        return 1;
    c.cached = itr_aead_cache_get(cache, ITR_SUITE_AESGCM, &c, 1, c.key);
    if (c.cached)
        report("itr_aead AESGCM, cached state", measure(op_itr_aesgcm, &c, aead_iters));
    c.cached = NULL;
    int prev = itr_crypto_force_evp_aesgcm(1);
    report("itr_aead AESGCM, OpenSSL fallback (no AES-NI path)",
           measure(op_itr_aesgcm, &c, aead_iters));
    itr_crypto_force_evp_aesgcm(prev);
    itr_aead_cache_free(cache);
    EVP_CIPHER_CTX_free(c.enc);
    EVP_CIPHER_CTX_free(c.dec);

    uint8_t pub[32];
    itr_dh_keypair(c.key, c.pt);
    double dh = measure(op_dh, &c, dh_iters);
    report("X25519 DH", dh);
    itr_dh_keypair(g_is, pub);
    itr_dh_keypair(g_rs, pub);
    double hs = measure(op_handshake, &c, hs_iters);
    report("Noise XX handshake, both roles (AESGCM)", hs);
    printf("  %-52s %10.0f /s\n", "  = complete handshakes per second per core", 1e9 / hs);
    printf("(checksum %u)\n", c.sink);
    sodium_memzero(&c, sizeof(c));
    return 0;
}
