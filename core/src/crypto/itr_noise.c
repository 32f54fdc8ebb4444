/* itr_noise.c: Noise XX (revision 34) for the two intentra suites: CipherState, SymmetricState
 * and HandshakeState of the Noise specification §5, specialised to the fixed XX pattern.
 *
 *   XX:  -> e
 *        <- e, ee, s, es
 *        -> s, se
 *
 * Every write/read first checks that the step enum says it is this role's turn for that
 * direction; any error wipes the whole state and leaves it ITR_NOISE_FAILED, so a caller that
 * ignores an error cannot continue on half-updated keys. Callers that must survive a forged
 * message (the responder's message 3, the initiator's message 2) run the read on a copy.
 */
#include <string.h>

#include <sodium.h>

#include <intentra/error.h>

#include "itr_noise.h"

/* Noise §3: no handshake or transport message may exceed 65535 bytes. */
#define NOISE_MAX_MSG 65535u
#define NOISE_TAG     16u

const char *itr_noise_protocol_name(itr_suite suite)
{
    switch (suite) {
    case ITR_SUITE_AESGCM:
        return "Noise_XX_25519_AESGCM_SHA256";
    case ITR_SUITE_CHACHAPOLY:
        return "Noise_XX_25519_ChaChaPoly_SHA256";
    }
    return NULL;
}

itr_suite itr_noise_suite_from_name(const char *name)
{
    if (!name)
        return (itr_suite)0;
    if (strcmp(name, "Noise_XX_25519_AESGCM_SHA256") == 0)
        return ITR_SUITE_AESGCM;
    if (strcmp(name, "Noise_XX_25519_ChaChaPoly_SHA256") == 0)
        return ITR_SUITE_CHACHAPOLY;
    return (itr_suite)0;
}

void itr_noise_wipe(itr_noise *hs)
{
    if (!hs)
        return;
    sodium_memzero(hs, sizeof(*hs));
    /* A wiped state must not look like a fresh one (ITR_NOISE_MSG1 is 0). */
    hs->step = ITR_NOISE_FAILED;
}

/* ---- CipherState ---- */

int itr_noise_cipher_encrypt(itr_suite suite, itr_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                             const uint8_t *pt, size_t ptlen, uint8_t *out, size_t cap,
                             size_t *outlen)
{
    /* n = 2^64 - 1 is reserved (Noise §5.1): refuse rather than wrap. */
    if (!cs->has_key || cs->n == UINT64_MAX || ptlen > SIZE_MAX - NOISE_TAG ||
        cap < ptlen + NOISE_TAG)
        return ITR_ERR_INVALID;
    int rc = itr_aead_seal(suite, cs->k, NULL, cs->n, ad, adlen, pt, ptlen, out);
    if (rc != ITR_OK)
        return rc;
    cs->n++;
    *outlen = ptlen + NOISE_TAG;
    return ITR_OK;
}

int itr_noise_cipher_decrypt(itr_suite suite, itr_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                             const uint8_t *ct, size_t ctlen, uint8_t *out, size_t cap,
                             size_t *outlen)
{
    if (!cs->has_key || cs->n == UINT64_MAX || ctlen < NOISE_TAG || cap < ctlen - NOISE_TAG)
        return ITR_ERR_INVALID;
    int rc = itr_aead_open(suite, cs->k, NULL, cs->n, ad, adlen, ct, ctlen, out);
    if (rc != ITR_OK)
        return rc;
    cs->n++;
    *outlen = ctlen - NOISE_TAG;
    return ITR_OK;
}

/* ---- SymmetricState ---- */

static void mix_hash(itr_noise *hs, const uint8_t *data, size_t len)
{
    itr_hash(hs->h, hs->h, sizeof(hs->h), data, len);
}

/* MixKey: ck, temp_k = HKDF(ck, ikm); InitializeKey(temp_k). */
static void mix_key(itr_noise *hs, const uint8_t ikm[32])
{
    itr_hkdf(hs->ck, hs->cs.k, NULL, hs->ck, ikm, 32);
    hs->cs.n = 0;
    hs->cs.has_key = 1;
}

/* EncryptAndHash: out receives len (+16 once keyed) bytes; h absorbs the ciphertext. */
static int encrypt_and_hash(itr_noise *hs, const uint8_t *pt, size_t len, uint8_t *out,
                            size_t *outlen)
{
    if (!hs->cs.has_key) {
        if (len)
            memmove(out, pt, len);
        *outlen = len;
    } else {
        int rc = itr_noise_cipher_encrypt(hs->suite, &hs->cs, hs->h, sizeof(hs->h), pt, len, out,
                                          len + NOISE_TAG, outlen);
        if (rc != ITR_OK)
            return rc;
    }
    mix_hash(hs, out, *outlen);
    return ITR_OK;
}

/* DecryptAndHash: the decryption uses the old h as associated data, and h then absorbs the
 * ciphertext; the new h is computed first so out may overlap ct. */
static int decrypt_and_hash(itr_noise *hs, const uint8_t *ct, size_t len, uint8_t *out,
                            size_t *outlen)
{
    uint8_t next_h[32];
    int rc = ITR_OK;

    itr_hash(next_h, hs->h, sizeof(hs->h), ct, len);
    if (!hs->cs.has_key) {
        if (len)
            memmove(out, ct, len);
        *outlen = len;
    } else {
        rc = itr_noise_cipher_decrypt(hs->suite, &hs->cs, hs->h, sizeof(hs->h), ct, len, out,
                                      len - NOISE_TAG, outlen);
        if (rc != ITR_OK)
            goto out;
    }
    memcpy(hs->h, next_h, sizeof(hs->h));
out:
    sodium_memzero(next_h, sizeof(next_h));
    return rc;
}

/* DH then MixKey with the result; an all-zero result (low-order point) aborts. */
static int mix_dh(itr_noise *hs, const uint8_t priv[32], const uint8_t pub[32])
{
    uint8_t dh[32];
    int rc = itr_dh(dh, priv, pub);
    if (rc == ITR_OK)
        mix_key(hs, dh);
    sodium_memzero(dh, sizeof(dh));
    return rc;
}

/* ---- HandshakeState ---- */

int itr_noise_init(itr_noise *hs, itr_suite suite, int initiator, const uint8_t *prologue,
                   size_t prologue_len, const uint8_t s_priv[32], const uint8_t *e_priv)
{
    int rc = ITR_ERR_INVALID;
    const char *name = itr_noise_protocol_name(suite);
    size_t name_len;

    sodium_memzero(hs, sizeof(*hs));
    if (!name || !s_priv || (prologue_len && !prologue))
        goto out;
    rc = ITR_ERR_CRYPTO;
    if (itr_crypto_init() != ITR_OK)
        goto out;
    hs->suite = suite;
    hs->initiator = initiator != 0;

    /* InitializeSymmetric: h = name padded with zeros (both names fit in 32 bytes), else
     * HASH(name); ck = h. */
    name_len = strlen(name);
    if (name_len <= sizeof(hs->h))
        memcpy(hs->h, name, name_len);
    else
        itr_hash(hs->h, (const uint8_t *)name, name_len, NULL, 0);
    memcpy(hs->ck, hs->h, sizeof(hs->ck));
    mix_hash(hs, prologue, prologue_len);

    memcpy(hs->s_priv, s_priv, sizeof(hs->s_priv));
    if (crypto_scalarmult_base(hs->s_pub, hs->s_priv) != 0 ||
        sodium_is_zero(hs->s_pub, sizeof(hs->s_pub)))
        goto out;
    if (e_priv) {
        memcpy(hs->e_priv, e_priv, sizeof(hs->e_priv));
        if (crypto_scalarmult_base(hs->e_pub, hs->e_priv) != 0 ||
            sodium_is_zero(hs->e_pub, sizeof(hs->e_pub)))
            goto out;
    }
    /* XX has no pre-messages: nothing more is hashed. */
    hs->step = ITR_NOISE_MSG1;
    rc = ITR_OK;
out:
    if (rc != ITR_OK)
        itr_noise_wipe(hs);
    return rc;
}

/* 1 if it is our turn to write, 0 if to read, -1 if no message is expected. */
static int our_turn_to_write(const itr_noise *hs)
{
    switch (hs->step) {
    case ITR_NOISE_MSG1:
    case ITR_NOISE_MSG3:
        return hs->initiator;
    case ITR_NOISE_MSG2:
        return !hs->initiator;
    case ITR_NOISE_DONE:
    case ITR_NOISE_FAILED:
        break;
    }
    return -1;
}

/* Once the last message is through, the private keys are no longer needed: wiping the
 * ephemeral here is what gives the session forward secrecy even if the caller keeps the
 * handshake state around until Split. */
static void finish(itr_noise *hs)
{
    sodium_memzero(hs->e_priv, sizeof(hs->e_priv));
    sodium_memzero(hs->s_priv, sizeof(hs->s_priv));
    hs->step = ITR_NOISE_DONE;
}

int itr_noise_write(itr_noise *hs, const uint8_t *payload, size_t plen, uint8_t *out, size_t cap,
                    size_t *outlen)
{
    int rc = ITR_ERR_INVALID;
    size_t need, off = 0, n = 0;

    *outlen = 0;
    if (our_turn_to_write(hs) != 1 || (plen && !payload) || plen > NOISE_MAX_MSG)
        goto out;
    if (hs->step == ITR_NOISE_MSG1)
        need = ITR_NOISE_MSG1_LEN(plen);
    else if (hs->step == ITR_NOISE_MSG2)
        need = ITR_NOISE_MSG2_LEN(plen);
    else
        need = ITR_NOISE_MSG3_LEN(plen);
    if (need > NOISE_MAX_MSG || need > cap)
        goto out;

    if (hs->step == ITR_NOISE_MSG1 || hs->step == ITR_NOISE_MSG2) {
        /* e: a fresh ephemeral unless a fixed one was given (test vectors); e_pub all zero
         * means none yet. Sent in clear and hashed. */
        if (sodium_is_zero(hs->e_pub, sizeof(hs->e_pub)))
            itr_dh_keypair(hs->e_priv, hs->e_pub);
        memcpy(out, hs->e_pub, sizeof(hs->e_pub));
        mix_hash(hs, hs->e_pub, sizeof(hs->e_pub));
        off = sizeof(hs->e_pub);
    }
    if (hs->step == ITR_NOISE_MSG2) {
        /* ee: our ephemeral with the initiator's ephemeral. */
        rc = mix_dh(hs, hs->e_priv, hs->re);
        if (rc != ITR_OK)
            goto out;
        /* s: our static, encrypted under the ee key. */
        rc = encrypt_and_hash(hs, hs->s_pub, sizeof(hs->s_pub), out + off, &n);
        if (rc != ITR_OK)
            goto out;
        off += n;
        /* es: the responder's static with the initiator's ephemeral. */
        rc = mix_dh(hs, hs->s_priv, hs->re);
        if (rc != ITR_OK)
            goto out;
    } else if (hs->step == ITR_NOISE_MSG3) {
        /* s: our static, encrypted. */
        rc = encrypt_and_hash(hs, hs->s_pub, sizeof(hs->s_pub), out, &n);
        if (rc != ITR_OK)
            goto out;
        off = n;
        /* se: the initiator's static with the responder's ephemeral. */
        rc = mix_dh(hs, hs->s_priv, hs->re);
        if (rc != ITR_OK)
            goto out;
    }
    /* payload: in clear in message 1 (no key yet, but hashed), encrypted afterwards. */
    rc = encrypt_and_hash(hs, payload, plen, out + off, &n);
    if (rc != ITR_OK)
        goto out;
    off += n;

    if (hs->step == ITR_NOISE_MSG3)
        finish(hs);
    else
        hs->step = hs->step == ITR_NOISE_MSG1 ? ITR_NOISE_MSG2 : ITR_NOISE_MSG3;
    *outlen = off;
    rc = ITR_OK;
out:
    if (rc != ITR_OK) {
        if (off)
            sodium_memzero(out, off);
        itr_noise_wipe(hs);
    }
    return rc;
}

int itr_noise_read(itr_noise *hs, const uint8_t *msg, size_t len, uint8_t *payload_out, size_t cap,
                   size_t *plen)
{
    int rc = ITR_ERR_INVALID;
    size_t off = 0, fixed, tag, n = 0;
    const size_t s_ct = sizeof(hs->rs) + NOISE_TAG;
    uint8_t empty[1]; /* payload target when the caller expects no payload */

    *plen = 0;
    if (our_turn_to_write(hs) != 0 || !msg || len > NOISE_MAX_MSG)
        goto out;
    /* Length checks before any DH: the tokens, then the payload (with a tag once keyed, which
     * every message from 2 on is). */
    if (hs->step == ITR_NOISE_MSG1)
        fixed = sizeof(hs->re);
    else if (hs->step == ITR_NOISE_MSG2)
        fixed = sizeof(hs->re) + s_ct;
    else
        fixed = s_ct;
    tag = hs->step == ITR_NOISE_MSG1 ? 0 : NOISE_TAG;
    if (len < fixed + tag || len - fixed - tag > cap || (len - fixed - tag && !payload_out))
        goto out;
    if (!payload_out)
        payload_out = empty;

    if (hs->step == ITR_NOISE_MSG1 || hs->step == ITR_NOISE_MSG2) {
        /* e: the peer's ephemeral, in clear, hashed. */
        memcpy(hs->re, msg, sizeof(hs->re));
        hs->has_re = 1;
        mix_hash(hs, hs->re, sizeof(hs->re));
        off = sizeof(hs->re);
    }
    if (hs->step == ITR_NOISE_MSG2) {
        /* ee: our ephemeral with the responder's ephemeral. */
        rc = mix_dh(hs, hs->e_priv, hs->re);
        if (rc != ITR_OK)
            goto out;
        /* s: the responder's static, decrypted under the ee key. */
        rc = decrypt_and_hash(hs, msg + off, s_ct, hs->rs, &n);
        if (rc != ITR_OK)
            goto out;
        hs->has_rs = 1;
        off += s_ct;
        /* es: the initiator's ephemeral with the responder's static. */
        rc = mix_dh(hs, hs->e_priv, hs->rs);
        if (rc != ITR_OK)
            goto out;
    } else if (hs->step == ITR_NOISE_MSG3) {
        /* s: the initiator's static, decrypted. */
        rc = decrypt_and_hash(hs, msg, s_ct, hs->rs, &n);
        if (rc != ITR_OK)
            goto out;
        hs->has_rs = 1;
        off = s_ct;
        /* se: the responder's ephemeral with the initiator's static. */
        rc = mix_dh(hs, hs->e_priv, hs->rs);
        if (rc != ITR_OK)
            goto out;
    }
    /* payload */
    rc = decrypt_and_hash(hs, msg + off, len - off, payload_out, &n);
    if (rc != ITR_OK)
        goto out;

    if (hs->step == ITR_NOISE_MSG3)
        finish(hs);
    else
        hs->step = hs->step == ITR_NOISE_MSG1 ? ITR_NOISE_MSG2 : ITR_NOISE_MSG3;
    *plen = n;
    rc = ITR_OK;
out:
    if (rc != ITR_OK)
        itr_noise_wipe(hs);
    return rc;
}

int itr_noise_split_cs(itr_noise *hs, itr_noise_cipher *send, itr_noise_cipher *recv)
{
    uint8_t k1[32], k2[32];

    /* cs.has_key doubles as "not split yet": XX is keyed from message 2 on, and Split clears
     * it together with ck. */
    if (hs->step != ITR_NOISE_DONE || !hs->cs.has_key)
        return ITR_ERR_INVALID;
    itr_hkdf(k1, k2, NULL, hs->ck, NULL, 0);
    memcpy(send->k, hs->initiator ? k1 : k2, 32);
    memcpy(recv->k, hs->initiator ? k2 : k1, 32);
    send->n = recv->n = 0;
    send->has_key = recv->has_key = 1;
    sodium_memzero(k1, sizeof(k1));
    sodium_memzero(k2, sizeof(k2));
    sodium_memzero(hs->ck, sizeof(hs->ck));
    sodium_memzero(&hs->cs, sizeof(hs->cs));
    return ITR_OK;
}

int itr_noise_split(itr_noise *hs, uint8_t send_key[32], uint8_t recv_key[32])
{
    itr_noise_cipher send, recv;
    int rc = itr_noise_split_cs(hs, &send, &recv);
    if (rc == ITR_OK) {
        memcpy(send_key, send.k, 32);
        memcpy(recv_key, recv.k, 32);
    }
    sodium_memzero(&send, sizeof(send));
    sodium_memzero(&recv, sizeof(recv));
    return rc;
}

void itr_noise_handshake_hash(const itr_noise *hs, uint8_t h[32])
{
    memcpy(h, hs->h, 32);
}
