/* itr_noise.h: Noise XX (revision 34) handshake state for Noise_XX_25519_AESGCM_SHA256 and
 * Noise_XX_25519_ChaChaPoly_SHA256. Caller-owned struct, no allocation, wiped by
 * itr_noise_wipe. The message pattern is fixed (XX); the state enum says which message comes
 * next and every write/read re-checks it.
 */
#ifndef ITR_NOISE_H
#define ITR_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>

#include "itr_crypto.h"

typedef enum itr_noise_step {
    ITR_NOISE_MSG1 = 0, /* next: message 1 (-> e) */
    ITR_NOISE_MSG2,     /* next: message 2 (<- e, ee, s, es) */
    ITR_NOISE_MSG3,     /* next: message 3 (-> s, se) */
    ITR_NOISE_DONE,     /* Split() allowed */
    ITR_NOISE_FAILED,   /* any error: the state is wiped and unusable */
} itr_noise_step;

typedef struct itr_noise_cipher {
    uint8_t k[32];
    uint64_t n;
    int has_key;
} itr_noise_cipher;

typedef struct itr_noise {
    itr_suite suite;
    int initiator;
    itr_noise_step step;
    uint8_t ck[32], h[32];
    itr_noise_cipher cs;
    uint8_t s_priv[32], s_pub[32]; /* local static */
    uint8_t e_priv[32], e_pub[32]; /* local ephemeral */
    uint8_t rs[32], re[32];        /* remote static and ephemeral */
    int has_rs, has_re;
} itr_noise;

/* Overheads of the XX messages for a payload of p bytes: msg1 32+p, msg2 32+48+p+16,
 * msg3 48+p+16. */
#define ITR_NOISE_MSG1_LEN(p) (32 + (p))
#define ITR_NOISE_MSG2_LEN(p) (32 + 48 + (p) + 16)
#define ITR_NOISE_MSG3_LEN(p) (48 + (p) + 16)

/* Initialize: protocol name from suite, MixHash(prologue), static key pair from s_priv.
 * e_priv: a fixed ephemeral private key (test vectors) or NULL to generate one when needed.
 * Errors: ITR_ERR_INVALID (suite), ITR_ERR_CRYPTO. */
int itr_noise_init(itr_noise *hs, itr_suite suite, int initiator, const uint8_t *prologue,
                   size_t prologue_len, const uint8_t s_priv[32], const uint8_t *e_priv);
/* Write the next message (our turn). *outlen = bytes written. Errors: ITR_ERR_INVALID (wrong
 * turn or out too small), ITR_ERR_CRYPTO (DH produced zero). */
int itr_noise_write(itr_noise *hs, const uint8_t *payload, size_t plen, uint8_t *out, size_t cap,
                    size_t *outlen);
/* Read the next message (their turn); decrypted payload to payload_out. Errors:
 * ITR_ERR_INVALID (wrong turn, length), ITR_ERR_CRYPTO (decrypt or DH failure). On error the
 * state becomes ITR_NOISE_FAILED. */
int itr_noise_read(itr_noise *hs, const uint8_t *msg, size_t len, uint8_t *payload_out, size_t cap,
                   size_t *plen);
/* After the last message: the transport keys for this role (initiator sends with k1).
 * Split consumes the chaining key: a second call returns ITR_ERR_INVALID. The handshake hash
 * stays available. Errors: ITR_ERR_INVALID (handshake not complete, or already split). */
int itr_noise_split(itr_noise *hs, uint8_t send_key[32], uint8_t recv_key[32]);
/* Split() as the Noise specification states it: the two CipherStates (n = 0) for this role.
 * Same errors as itr_noise_split. */
int itr_noise_split_cs(itr_noise *hs, itr_noise_cipher *send, itr_noise_cipher *recv);
/* The handshake hash h (channel binding; compared by the test vectors). Meaningful once the
 * step is ITR_NOISE_DONE. */
void itr_noise_handshake_hash(const itr_noise *hs, uint8_t h[32]);

/* CipherState EncryptWithAd / DecryptWithAd (Noise §5.1) for a keyed cipher state: writes
 * ptlen + 16 (resp. ctlen - 16) bytes and increments n. Errors: ITR_ERR_INVALID (no key,
 * n exhausted, cap too small, unknown suite), ITR_ERR_CRYPTO (bad tag; n is not advanced). */
int itr_noise_cipher_encrypt(itr_suite suite, itr_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                             const uint8_t *pt, size_t ptlen, uint8_t *out, size_t cap,
                             size_t *outlen);
int itr_noise_cipher_decrypt(itr_suite suite, itr_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                             const uint8_t *ct, size_t ctlen, uint8_t *out, size_t cap,
                             size_t *outlen);
void itr_noise_wipe(itr_noise *hs);

/* Noise protocol name of a suite, e.g. "Noise_XX_25519_AESGCM_SHA256"; NULL if unknown. */
const char *itr_noise_protocol_name(itr_suite suite);
/* Suite for a protocol name; 0 if unsupported. */
itr_suite itr_noise_suite_from_name(const char *name);

#endif
