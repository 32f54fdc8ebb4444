/* webhook_sign.h: Standard Webhooks signing for the webhook sink (docs/SINKS.md, "webhook"):
 * the secret's "whsec_<base64>" form and the v1 signature
 *   webhook-signature: v1,<base64(HMAC-SHA256(key, id "." timestamp "." body))>
 * Pure functions (unit-tested without a server). */
#ifndef GW_WEBHOOK_SIGN_H
#define GW_WEBHOOK_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define GW_WEBHOOK_KEY_MAX 256 /* decoded secret bytes */
#define GW_WEBHOOK_SIG_LEN 47  /* "v1," + 44 base64 characters */

/* Decode "whsec_<base64>" (standard alphabet, padding optional; surrounding whitespace
 * ignored) into key. Returns the key length (1..GW_WEBHOOK_KEY_MAX), or 0 if s is not of
 * that form. */
size_t gw_webhook_secret_decode(const char *s, uint8_t key[GW_WEBHOOK_KEY_MAX]);

/* Write "v1,<base64 signature>" and a NUL to out (GW_WEBHOOK_SIG_LEN + 1 bytes). */
void gw_webhook_sign(char out[GW_WEBHOOK_SIG_LEN + 1], const uint8_t *key, size_t keylen,
                     const char *id, const char *timestamp, const void *body, size_t body_len);

#endif
