/* itr_envelope.c: DATA envelope codec and topic validation (PROTOCOL.md §6.2). */
#include "itr_envelope.h"

#include <string.h>

#include <intentra/endpoint.h>

#include "itr_wire.h"

/* [A-Za-z0-9._:/-], spelled out rather than <ctype.h> so the locale cannot widen it. */
static int topic_byte_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '/' || c == '-';
}

ITR_API int itr_topic_valid(const char *topic, size_t len)
{
    if (topic == NULL || len == 0 || len > ITR_MAX_TOPIC)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!topic_byte_ok((unsigned char)topic[i]))
            return 0;
    }
    return 1;
}

int itr_envelope_parse(const uint8_t *pt, size_t len, const char **topic, size_t *topic_len,
                       const uint8_t **body, size_t *body_len)
{
    if (len < 1)
        return itr_drop_rc(ITR_DROP_BAD_ENVELOPE);
    size_t tlen = pt[0];
    if (tlen > len - 1 || !itr_topic_valid((const char *)(pt + 1), tlen))
        return itr_drop_rc(ITR_DROP_BAD_ENVELOPE);
    *topic = (const char *)(pt + 1);
    *topic_len = tlen;
    *body = pt + 1 + tlen;
    *body_len = len - 1 - tlen;
    return 0;
}

size_t itr_envelope_write(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                          const void *body, size_t body_len)
{
    if (!itr_topic_valid(topic, topic_len))
        return 0;
    /* topic_len <= 128, so only body_len can make the sum overflow. */
    if (body_len > cap || cap - body_len < 1 + topic_len)
        return 0;
    out[0] = (uint8_t)topic_len;
    memcpy(out + 1, topic, topic_len);
    if (body_len > 0)
        memcpy(out + 1 + topic_len, body, body_len);
    return 1 + topic_len + body_len;
}
