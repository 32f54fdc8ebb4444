/* file_format.h: the file sink's line format, as pure functions (unit-tested and fuzzed
 * without any file): one JSON object per line,
 *   {"ts":"2026-11-23T07:16:19.123456789Z","shard":"...","peer":"<hex>","topic":"...",
 *    "seq":N,"intent":"reliable"|"realtime","payload":...}
 * keys in this order; "payload" is a JSON string, or base64 followed by
 * "payload_encoding":"base64".
 */
#ifndef GW_FILE_FORMAT_H
#define GW_FILE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "connector.h"

enum file_payload {
    FILE_PAYLOAD_AUTO = 0, /* valid UTF-8: JSON string; otherwise base64 */
    FILE_PAYLOAD_UTF8,     /* always a JSON string; invalid UTF-8 bytes become U+FFFD */
    FILE_PAYLOAD_BASE64,   /* always base64 */
};

/* The formatted seconds part of the last timestamp (lines of one batch share it). */
struct file_ts_cache {
    uint64_t sec;
    int valid;
    char text[20]; /* "2026-11-23T07:16:19" */
};

/* Upper bound of the line length for m (newline included). */
size_t gw_file_line_max(const gw_msg *m, enum file_payload mode);
/* Write the whole line (newline included) to out (gw_file_line_max bytes); returns its
 * length. */
size_t gw_file_format_line(char *out, const gw_msg *m, enum file_payload mode,
                           struct file_ts_cache *tc);
/* Write the line up to and including `"payload":"` (the caller appends a body for which
 * gw_file_json_plain holds, then `"}\n`); returns its length. */
size_t gw_file_format_head(char *out, const gw_msg *m, struct file_ts_cache *tc);
/* 1 if p is valid UTF-8 and needs no JSON escaping (no '"', '\\', control characters). */
int gw_file_json_plain(const uint8_t *p, size_t n);
/* 1 if p is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int gw_file_utf8_valid(const uint8_t *p, size_t n);
/* JSON-escape p (no quotes added) into out (6 * n bytes); invalid UTF-8 bytes become
 * U+FFFD. Returns the length written. */
size_t gw_file_json_escape(char *out, const uint8_t *p, size_t n);
/* 1 if s is a rotated file suffix "YYYYmmddTHHMMSSZ.<n>" (n decimal, no leading zero). */
int gw_file_rotated_suffix(const char *s);

#endif
