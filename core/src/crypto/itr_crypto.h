/* itr_crypto.h: the primitives the protocol uses, in one place (libsodium; see
 * bench/aead_bench.c for why AES-256-GCM comes from libsodium rather than OpenSSL EVP).
 *
 * SHA-256, HMAC-SHA256 and Noise's HKDF; X25519; BLAKE2b MACs for mac1 and cookies; the two
 * transport AEADs with Noise nonce encoding; a direct-mapped cache of expanded AES-GCM keys so
 * a session stores only 32-byte raw keys (<= 1 KiB per idle session) while hot sessions skip
 * the key expansion.
 */
#ifndef ITR_CRYPTO_H
#define ITR_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>

#define ITR_HASH_LEN 32
#define ITR_MAC_LEN  16

/* sodium_init() once; returns ITR_OK or ITR_ERR_CRYPTO. Thread-safe. */
int itr_crypto_init(void);
/* 1 if the CPU has AES-NI + PCLMUL (libsodium's AES-256-GCM needs them). Without them (or
 * when forced below) AESGCM seal/open use OpenSSL's EVP AES-256-GCM, so a responder on such a
 * host still accepts AESGCM initiators; the cache then returns NULL. */
int itr_crypto_have_aesgcm(void);
/* Tests and the benchmark: route AESGCM through the OpenSSL fallback even on an AES-NI host
 * (force != 0) or back. Returns the previous setting. Not for use while other threads seal. */
int itr_crypto_force_evp_aesgcm(int force);

void itr_hash(uint8_t out[ITR_HASH_LEN], const uint8_t *a, size_t alen, const uint8_t *b,
              size_t blen);
void itr_hmac(uint8_t out[ITR_HASH_LEN], const uint8_t key[ITR_HASH_LEN], const uint8_t *m,
              size_t mlen);
/* Noise HKDF(ck, ikm) with 2 or 3 outputs (out3 may be NULL). */
void itr_hkdf(uint8_t out1[ITR_HASH_LEN], uint8_t out2[ITR_HASH_LEN], uint8_t *out3,
              const uint8_t ck[ITR_HASH_LEN], const uint8_t *ikm, size_t ikmlen);

/* X25519. Returns ITR_ERR_CRYPTO for an all-zero result (low-order point). */
int itr_dh(uint8_t out[ITR_KEY_LEN], const uint8_t priv[ITR_KEY_LEN],
           const uint8_t pub[ITR_KEY_LEN]);
void itr_dh_keypair(uint8_t priv[ITR_KEY_LEN], uint8_t pub[ITR_KEY_LEN]);

/* BLAKE2b-128 keyed MAC over up to two pieces; BLAKE2b-256 of label || data. */
void itr_mac16(uint8_t out[ITR_MAC_LEN], const uint8_t *key, size_t keylen, const uint8_t *a,
               size_t alen, const uint8_t *b, size_t blen);
void itr_blake2b256(uint8_t out[32], const char *label, const uint8_t *data, size_t dlen);

/* Transport AEAD with Noise's nonce encoding for the suite. key is the raw 32-byte key;
 * state, when non-NULL, is that key's expanded AES-GCM state (from itr_aead_cache_get).
 * seal writes ptlen + 16 bytes (in-place allowed: out == pt). open returns ITR_ERR_CRYPTO on
 * a bad tag and writes ctlen - 16 bytes. */
typedef struct itr_aead_state itr_aead_state; /* crypto_aead_aes256gcm_state, 512 B */
int itr_aead_seal(itr_suite suite, const uint8_t key[32], const itr_aead_state *state, uint64_t n,
                  const uint8_t *ad, size_t adlen, const uint8_t *pt, size_t ptlen, uint8_t *out);
int itr_aead_open(itr_suite suite, const uint8_t key[32], const itr_aead_state *state, uint64_t n,
                  const uint8_t *ad, size_t adlen, const uint8_t *ct, size_t ctlen, uint8_t *out);

/* XChaCha20-Poly1305 for cookie replies. */
void itr_xaead_seal(uint8_t *out, const uint8_t key[32], const uint8_t nonce[24], const uint8_t *pt,
                    size_t ptlen, const uint8_t *ad, size_t adlen);
int itr_xaead_open(uint8_t *out, const uint8_t key[32], const uint8_t nonce[24], const uint8_t *ct,
                   size_t ctlen, const uint8_t *ad, size_t adlen);

void itr_random(void *buf, size_t len);
uint32_t itr_random_u32(void);

/* Direct-mapped cache of expanded AES-GCM keys, owned by one endpoint (one thread).
 * A key is identified by (owner pointer, generation); a miss expands into the slot. */
typedef struct itr_aead_cache itr_aead_cache;
int itr_aead_cache_new(itr_aead_cache **out, uint32_t entries);
void itr_aead_cache_free(itr_aead_cache *c); /* wipes */
/* The expanded state for key; NULL for ChaChaPoly or when entries == 0 (callers then pass
 * NULL state and the AEAD expands per call). */
const itr_aead_state *itr_aead_cache_get(itr_aead_cache *c, itr_suite suite, const void *owner,
                                         uint64_t gen, const uint8_t key[32]);
/* Forget (and wipe) the entry of owner/gen if present: called when keys are destroyed. */
void itr_aead_cache_drop(itr_aead_cache *c, const void *owner, uint64_t gen);
/* Lookups answered from the cache and lookups that expanded a key (either may be NULL). */
void itr_aead_cache_stats(const itr_aead_cache *c, uint64_t *hits, uint64_t *misses);

#endif
