/* file_format.c: JSON line formatting for the file sink (see file_format.h). */
#define _POSIX_C_SOURCE 200809L /* gmtime_r */
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "file_format.h"

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if p starts an invalid one. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (p[2] & 0xC0) != 0x80)
            return 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
        return p[1] >= lo && p[1] <= hi ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
        return p[1] >= lo && p[1] <= hi ? 4 : 0;
    }
    return 0;
}

int gw_file_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_seq(p + i, n - i);
        if (!l)
            return 0;
        i += l;
    }
    return 1;
}

int gw_file_json_plain(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            if (c < 0x20 || c == '"' || c == '\\')
                return 0;
            i++;
            continue;
        }
        size_t l = utf8_seq(p + i, n - i);
        if (!l)
            return 0;
        i += l;
    }
    return 1;
}

size_t gw_file_json_escape(char *out, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            i++;
            continue;
        }
        if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"':
                *o++ = '"';
                break;
            case '\\':
                *o++ = '\\';
                break;
            case '\n':
                *o++ = 'n';
                break;
            case '\r':
                *o++ = 'r';
                break;
            case '\t':
                *o++ = 't';
                break;
            case '\b':
                *o++ = 'b';
                break;
            case '\f':
                *o++ = 'f';
                break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
                break;
            }
            i++;
            continue;
        }
        size_t l = utf8_seq(p + i, n - i);
        if (l) {
            memcpy(o, p + i, l);
            o += l;
            i += l;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3); /* U+FFFD REPLACEMENT CHARACTER */
            o += 3;
            i++;
        }
    }
    return (size_t)(o - out);
}

int gw_file_rotated_suffix(const char *s)
{
    for (size_t i = 0; i < 8; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    if (s[8] != 'T')
        return 0;
    for (size_t i = 9; i < 15; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    if (s[15] != 'Z' || s[16] != '.' || s[17] < '1' || s[17] > '9')
        return 0;
    for (const char *q = s + 18; *q; q++)
        if (*q < '0' || *q > '9')
            return 0;
    return strlen(s + 17) <= 10;
}

size_t gw_file_line_max(const gw_msg *m, enum file_payload mode)
{
    (void)mode;
    /* fixed keys and values (< 256) + escaped names (6x) + payload (6x covers base64) */
    return 256 + 6 * ((size_t)m->shard_name_len + m->topic_len) + 6 * (size_t)m->body_len;
}

static char *put_str(char *o, const char *s)
{
    size_t n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

static char *put_ts(char *o, uint64_t wall_ns, struct file_ts_cache *tc)
{
    uint64_t sec = wall_ns / 1000000000u;
    uint32_t ns = (uint32_t)(wall_ns % 1000000000u);
    if (!tc->valid || tc->sec != sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(tc->text, sizeof(tc->text), "%Y-%m-%dT%H:%M:%S", &tm);
        tc->sec = sec;
        tc->valid = 1;
    }
    o = put_str(o, tc->text);
    *o++ = '.';
    for (int i = 8; i >= 0; i--) {
        o[i] = (char)('0' + ns % 10);
        ns /= 10;
    }
    o += 9;
    *o++ = 'Z';
    return o;
}

static char *put_u32(char *o, uint32_t v)
{
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *o++ = tmp[--n];
    return o;
}

size_t gw_file_format_head(char *out, const gw_msg *m, struct file_ts_cache *tc)
{
    char *o = out;
    o = put_str(o, "{\"ts\":\"");
    o = put_ts(o, m->recv_wall_ns, tc);
    o = put_str(o, "\",\"shard\":\"");
    if (m->shard_name)
        o += gw_file_json_escape(o, (const uint8_t *)m->shard_name, m->shard_name_len);
    o = put_str(o, "\",\"peer\":\"");
    o = put_str(o, m->peer_hex);
    o = put_str(o, "\",\"topic\":\"");
    o += gw_file_json_escape(o, (const uint8_t *)m->topic, m->topic_len);
    o = put_str(o, "\",\"seq\":");
    o = put_u32(o, m->seq);
    o = put_str(o, m->intent == ITR_INTENT_RELIABLE ? ",\"intent\":\"reliable\""
                                                    : ",\"intent\":\"realtime\"");
    o = put_str(o, ",\"payload\":\"");
    return (size_t)(o - out);
}

size_t gw_file_format_line(char *out, const gw_msg *m, enum file_payload mode,
                           struct file_ts_cache *tc)
{
    char *o = out + gw_file_format_head(out, m, tc);
    int as_text = mode == FILE_PAYLOAD_UTF8 ||
                  (mode == FILE_PAYLOAD_AUTO && gw_file_utf8_valid(m->body, m->body_len));
    if (as_text) {
        o += gw_file_json_escape(o, m->body, m->body_len);
        o = put_str(o, "\"}\n");
    } else {
        size_t cap = sodium_base64_ENCODED_LEN(m->body_len, sodium_base64_VARIANT_ORIGINAL);
        sodium_bin2base64(o, cap, m->body, m->body_len, sodium_base64_VARIANT_ORIGINAL);
        o += cap - 1; /* without the NUL */
        o = put_str(o, "\",\"payload_encoding\":\"base64\"}\n");
    }
    return (size_t)(o - out);
}
