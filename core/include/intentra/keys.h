/* intentra/keys.h: static identities: X25519 key pairs, 0600 key files, hex encoding. */
#ifndef INTENTRA_KEYS_H
#define INTENTRA_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>
#include <intentra/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A fresh key pair from the system RNG. Errors: ITR_ERR_CRYPTO. */
ITR_API int itr_key_generate(uint8_t priv[ITR_KEY_LEN], uint8_t pub[ITR_KEY_LEN]);
/* The public key of priv. Errors: ITR_ERR_CRYPTO (low-order result). */
ITR_API int itr_key_public(const uint8_t priv[ITR_KEY_LEN], uint8_t pub[ITR_KEY_LEN]);

/* Lower-case hex; out must hold 2*len+1 bytes. */
ITR_API void itr_hex_encode(char *out, const uint8_t *in, size_t len);
/* Exactly 2*len hex digits (either case). Errors: ITR_ERR_INVALID. */
ITR_API int itr_hex_decode(uint8_t *out, size_t len, const char *hex, size_t hexlen);

/* Key file: one line of 64 hex digits (the private key). Loading refuses a file that group or
 * others can read or write (fix: chmod 600). Errors: ITR_ERR_IO (cannot open/read: errno),
 * ITR_ERR_INVALID (bad content or permissions); err receives a message naming the file. */
ITR_API int itr_keyfile_load(const char *path, uint8_t priv[ITR_KEY_LEN], char *err, size_t errlen);
/* Create a new key file with mode 0600 (O_EXCL: never overwrites) and fsync it. */
ITR_API int itr_keyfile_create(const char *path, uint8_t priv[ITR_KEY_LEN], char *err,
                               size_t errlen);
/* Load, or create if it does not exist; *created tells which. */
ITR_API int itr_keyfile_load_or_create(const char *path, uint8_t priv[ITR_KEY_LEN], int *created,
                                       char *err, size_t errlen);
/* A public key given as 64 hex digits, or as the path of a key file (its public half). */
ITR_API int itr_key_parse_public(const char *hex_or_path, uint8_t pub[ITR_KEY_LEN], char *err,
                                 size_t errlen);

/* Constant-time equality of n bytes (MACs, cookies, keys, tokens). Returns 1 if equal. */
ITR_API int itr_ct_equal(const void *a, const void *b, size_t n);
/* Wipe secrets in a way the compiler cannot elide. */
ITR_API void itr_wipe(void *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
