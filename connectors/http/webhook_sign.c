/* webhook_sign.c: Standard Webhooks secret decoding and signature (webhook_sign.h). */
#include <string.h>

#include <sodium.h>

#include "webhook_sign.h"

size_t gw_webhook_secret_decode(const char *s, uint8_t key[GW_WEBHOOK_KEY_MAX])
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    if (strncmp(s, "whsec_", 6))
        return 0;
    s += 6;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    size_t len = 0;
    const char *end = NULL;
    if (!n ||
        sodium_base642bin(key, GW_WEBHOOK_KEY_MAX, s, n, NULL, &len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != s + n) {
        /* padding is optional in the wild */
        if (!n ||
            sodium_base642bin(key, GW_WEBHOOK_KEY_MAX, s, n, NULL, &len, &end,
                              sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
            end != s + n)
            return 0;
    }
    return len;
}

void gw_webhook_sign(char out[GW_WEBHOOK_SIG_LEN + 1], const uint8_t *key, size_t keylen,
                     const char *id, const char *timestamp, const void *body, size_t body_len)
{
    crypto_auth_hmacsha256_state st;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)id, strlen(id));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)timestamp, strlen(timestamp));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
    crypto_auth_hmacsha256_update(&st, body, body_len);
    crypto_auth_hmacsha256_final(&st, mac);
    memcpy(out, "v1,", 3);
    sodium_bin2base64(out + 3, GW_WEBHOOK_SIG_LEN - 3 + 1, mac, sizeof(mac),
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(&st, sizeof(st));
}
