/* bench_payload.h: the self-checking payload of intentra-bench, shared with its tests.
 *
 *     ib1 <peer_index> <seq> <send_ns> <filler x...>#<crc32 of everything before '#', 8 hex>
 *
 * ASCII so that a file sink stores it as a JSON string and kcat prints it as is; exactly the
 * requested size; crc32 is zlib's (polynomial 0xEDB88320), so Python's zlib.crc32 checks it.
 */
#ifndef BENCH_PAYLOAD_H
#define BENCH_PAYLOAD_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define BENCH_PAYLOAD_MIN 64 /* room for the fields at their largest */

static inline uint32_t bench_crc32(const void *data, size_t len)
{
    static uint32_t table[256];
    static int ready;
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;

    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++)
                v = (v & 1) ? 0xEDB88320u ^ (v >> 1) : v >> 1;
            table[i] = v;
        }
        ready = 1;
    }
    for (size_t i = 0; i < len; i++)
        c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* Write a payload of exactly `size` bytes (>= BENCH_PAYLOAD_MIN) into out; returns size. */
static inline size_t bench_payload_make(char *out, size_t size, uint32_t peer, uint64_t seq,
                                        uint64_t send_ns)
{
    int n = snprintf(out, size, "ib1 %" PRIu32 " %" PRIu64 " %" PRIu64 " ", peer, seq, send_ns);
    size_t head = (size_t)n;
    size_t fill = size - 9 - head; /* '#' + 8 hex digits */
    memset(out + head, 'x', fill);
    out[head + fill] = '#';
    uint32_t crc = bench_crc32(out, head + fill);
    char hex[9];
    snprintf(hex, sizeof(hex), "%08" PRIx32, crc);
    memcpy(out + head + fill + 1, hex, 8);
    return size;
}

#endif
