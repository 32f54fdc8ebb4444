/* itr_envelope.h: the DATA plaintext envelope of PROTOCOL.md §6.2, after mseq:
 * topic_len (1) || topic (1..128 bytes of [A-Za-z0-9._:/-]) || body (0 or more bytes).
 * Zero-copy: parsing returns pointers into the caller's plaintext.
 */
#ifndef ITR_ENVELOPE_H
#define ITR_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

/* pt points after mseq, len bytes. On success *topic and *body point into pt (body may be empty,
 * then *body points just past the topic). Returns 0 or -(1 + ITR_DROP_BAD_ENVELOPE) (len 0,
 * topic_len 0 or > 128, topic longer than the plaintext, a byte outside the charset); the
 * outputs are untouched on error. */
int itr_envelope_parse(const uint8_t *pt, size_t len, const char **topic, size_t *topic_len,
                       const uint8_t **body, size_t *body_len);

/* Write topic_len || topic || body to out. Returns the bytes written (1 + topic_len +
 * body_len), or 0 if that exceeds cap or the topic is invalid (nothing written then). body
 * may be NULL when body_len is 0. */
size_t itr_envelope_write(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                          const void *body, size_t body_len);

/* Bytes an envelope takes: 1 + topic_len + body_len (no validation). */
static inline size_t itr_envelope_size(size_t topic_len, size_t body_len)
{
    return 1 + topic_len + body_len;
}

/* itr_topic_valid() is public: declared in <intentra/endpoint.h>, defined in itr_envelope.c. */

#endif
