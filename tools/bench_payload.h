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

/* CRC-32 as zlib computes it (polynomial 0xEDB88320, what Python's zlib.crc32 checks),
 * eight bytes per step (slicing-by-8): Debian's zlib takes ~1.5 ns per byte here, and the
 * generators share the cores with what they measure. */
static inline uint32_t bench_crc32(const void *data, size_t len)
{
    static uint32_t t[8][256];
    static int ready;
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;

    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++)
                v = (v & 1) ? 0xEDB88320u ^ (v >> 1) : v >> 1;
            t[0][i] = v;
        }
        for (uint32_t i = 0; i < 256; i++)
            for (int k = 1; k < 8; k++)
                t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
        ready = 1;
    }
    for (; len >= 8; len -= 8, p += 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        uint32_t hi =
            (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
            t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    }
    while (len--)
        c = t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* v in decimal at p, no NUL; returns the length. */
static inline size_t bench_put_u64(char *p, uint64_t v)
{
    char t[20];
    size_t n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = t[n - 1 - i];
    return n;
}

/* Write a payload of exactly `size` bytes (>= BENCH_PAYLOAD_MIN) into out; returns size.
 * ~0.1 us: the generators (intentra-bench, udp-blast, raw-kafka-producer) share the cores
 * with what they measure, and the raw producer's CPU per message includes this. */
static inline size_t bench_payload_make(char *out, size_t size, uint32_t peer, uint64_t seq,
                                        uint64_t send_ns)
{
    static const char digits[] = "0123456789abcdef";
    size_t head = 4;
    memcpy(out, "ib1 ", 4);
    head += bench_put_u64(out + head, peer);
    out[head++] = ' ';
    head += bench_put_u64(out + head, seq);
    out[head++] = ' ';
    head += bench_put_u64(out + head, send_ns);
    out[head++] = ' ';
    size_t fill = size - 9 - head; /* '#' + 8 hex digits */
    memset(out + head, 'x', fill);
    out[head + fill] = '#';
    uint32_t crc = bench_crc32(out, head + fill);
    for (int i = 0; i < 8; i++)
        out[head + fill + 1 + i] = digits[(crc >> (28 - 4 * i)) & 0xf];
    return size;
}

#endif
