/* test_webhook_sign.c: the webhook sink's Standard Webhooks signing (connectors/http/
 * webhook_sign.h): the specification's test vector, an independent HMAC computed with OpenSSL
 * for a fixed secret/id/timestamp/body, and the whsec_ secret forms accepted and refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "webhook_sign.h"

/* webhook_sign.c built with GW_WEBHOOK_SIGN_TEST: the libsodium fallback alone. */
void gw_webhook_sign_sodium(char out[GW_WEBHOOK_SIG_LEN + 1], const uint8_t *key, size_t keylen,
                            const char *id, const char *timestamp, const void *body,
                            size_t body_len);

/* The test vector of the Standard Webhooks specification (and its reference libraries). */
static void test_spec_vector(void **state)
{
    (void)state;
    uint8_t key[GW_WEBHOOK_KEY_MAX];
    size_t kl = gw_webhook_secret_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key);
    assert_int_equal(kl, 24);
    char sig[GW_WEBHOOK_SIG_LEN + 1];
    const char *body = "{\"test\": 2432232314}";
    gw_webhook_sign(sig, key, kl, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body, strlen(body));
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_int_equal(strlen(sig), GW_WEBHOOK_SIG_LEN);
}

/* The same construction computed here with OpenSSL, over a body with NUL and non-ASCII
 * bytes and a 32-byte key. */
static void test_against_openssl(void **state)
{
    (void)state;
    static const uint8_t raw[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10,  11,
                                    12, 13, 14, 15, 16, 17, 18, 19, 20, 21,  22,
                                    23, 24, 25, 26, 27, 28, 29, 30, 31, 0xff};
    char secret[80] = "whsec_";
    EVP_EncodeBlock((unsigned char *)secret + 6, raw, sizeof(raw));
    uint8_t key[GW_WEBHOOK_KEY_MAX];
    assert_int_equal(gw_webhook_secret_decode(secret, key), 32);
    assert_memory_equal(key, raw, 32);

    const char *id = "msg_0123456789abcdef0123456789abcdef", *ts = "1795418179";
    const uint8_t body[] = "[{\"a\":\"\xc3\xa9\"},\0{\"b\":1}]";
    uint8_t msg[256];
    size_t n = 0;
    memcpy(msg + n, id, strlen(id));
    n += strlen(id);
    msg[n++] = '.';
    memcpy(msg + n, ts, strlen(ts));
    n += strlen(ts);
    msg[n++] = '.';
    memcpy(msg + n, body, sizeof(body));
    n += sizeof(body);
    uint8_t mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), raw, sizeof(raw), msg, n, mac, &ml);
    assert_int_equal(ml, 32);
    char want[64] = "v1,";
    EVP_EncodeBlock((unsigned char *)want + 3, mac, 32);

    char sig[GW_WEBHOOK_SIG_LEN + 1];
    gw_webhook_sign(sig, key, 32, id, ts, body, sizeof(body));
    assert_string_equal(sig, want);
    /* any change of id, timestamp or body changes it */
    gw_webhook_sign(sig, key, 32, id, "1795418180", body, sizeof(body));
    assert_string_not_equal(sig, want);
    gw_webhook_sign(sig, key, 32, id, ts, body, sizeof(body) - 1);
    assert_string_not_equal(sig, want);
}

/* Both implementations agree with OpenSSL's HMAC() for keys shorter than, equal to and longer
 * than the SHA-256 block (64 bytes: longer keys are hashed first) and bodies around it. */
static void test_key_and_body_lengths(void **state)
{
    (void)state;
    uint8_t key[GW_WEBHOOK_KEY_MAX], body[300], msg[400], mac[32];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 13);
    static const size_t klens[] = {1, 24, 32, 63, 64, 65, 200, GW_WEBHOOK_KEY_MAX};
    static const size_t blens[] = {0, 1, 55, 64, 119, 128, 300};
    for (size_t a = 0; a < sizeof(klens) / sizeof(klens[0]); a++) {
        for (size_t b = 0; b < sizeof(blens) / sizeof(blens[0]); b++) {
            size_t n = 0;
            memcpy(msg, "msg_1.1614265330.", 17);
            n = 17;
            memcpy(msg + n, body, blens[b]);
            n += blens[b];
            unsigned int ml = 0;
            HMAC(EVP_sha256(), key, (int)klens[a], msg, n, mac, &ml);
            char want[64] = "v1,", got[GW_WEBHOOK_SIG_LEN + 1], fallback[GW_WEBHOOK_SIG_LEN + 1];
            EVP_EncodeBlock((unsigned char *)want + 3, mac, 32);
            gw_webhook_sign(got, key, klens[a], "msg_1", "1614265330", body, blens[b]);
            gw_webhook_sign_sodium(fallback, key, klens[a], "msg_1", "1614265330", body, blens[b]);
            assert_string_equal(got, want);
            assert_string_equal(fallback, want);
        }
    }
}

static void test_secret_forms(void **state)
{
    (void)state;
    uint8_t key[GW_WEBHOOK_KEY_MAX];
    /* whitespace around (a secret file's newline), padding optional */
    assert_int_equal(gw_webhook_secret_decode("  whsec_AAEC\n", key), 3);
    assert_int_equal(gw_webhook_secret_decode("whsec_AAECAw==", key), 4);
    assert_int_equal(gw_webhook_secret_decode("whsec_AAECAw", key), 4);
    /* refused */
    assert_int_equal(gw_webhook_secret_decode("", key), 0);
    assert_int_equal(gw_webhook_secret_decode("whsec_", key), 0);
    assert_int_equal(gw_webhook_secret_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key), 0);
    assert_int_equal(gw_webhook_secret_decode("whsec_not base64!", key), 0);
    assert_int_equal(gw_webhook_secret_decode("whsec_AAEC AAEC", key), 0);
    char big[600] = "whsec_";
    memset(big + 6, 'A', 400); /* 300 bytes: longer than GW_WEBHOOK_KEY_MAX */
    assert_int_equal(gw_webhook_secret_decode(big, key), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_vector),
        cmocka_unit_test(test_against_openssl),
        cmocka_unit_test(test_key_and_body_lengths),
        cmocka_unit_test(test_secret_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
