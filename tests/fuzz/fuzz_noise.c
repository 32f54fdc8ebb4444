/* fuzz_noise.c: libFuzzer target for the Noise XX responder: read a fuzzed message 1, write
 * message 2, read a fuzzed message 3. Keys are fixed, so a real initiator transcript (the seeds)
 * completes the handshake and mutations start from the deepest path.
 *
 * Input: byte 0 bit 0 picks the suite (0 AESGCM, 1 ChaChaPoly), byte 1 is the length L of
 * message 1, then message 1 (L bytes), then message 3 (the rest).
 *
 * Built with FUZZ_NOISE_STANDALONE (non-fuzz builds), the file also has a main that replays
 * files given as arguments (the seed corpus as a regression test) or, with --make-seeds DIR,
 * writes the seed corpus from real handshakes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itr_noise.h"

#define PROLOGUE     "intentra/1"
#define PROLOGUE_LEN 10

static const uint8_t RESP_STATIC[32] = {
    0x4a, 0x3a, 0xcb, 0xfd, 0xb1, 0x63, 0xde, 0xc6, 0x51, 0xdf, 0xa3, 0x19, 0x4d, 0xec, 0xe6, 0x76,
    0xd4, 0x37, 0x02, 0x9c, 0x62, 0xa4, 0x08, 0xb4, 0xc5, 0xea, 0x91, 0x14, 0x24, 0x6e, 0x48, 0x93};
static const uint8_t RESP_EPHEMERAL[32] = {
    0xbb, 0xdb, 0x4c, 0xdb, 0xd3, 0x09, 0xf1, 0xa1, 0xf2, 0xe1, 0x45, 0x69, 0x67, 0xfe, 0x28, 0x8c,
    0xad, 0xd6, 0xf7, 0x12, 0xd6, 0x5d, 0xc7, 0xb7, 0x79, 0x3d, 0x5e, 0x63, 0xda, 0x6b, 0x37, 0x5b};
static const uint8_t R_PAYLOAD[4] = {0x52, 0x52, 0x52, 0x52};

/* Returns how far the input got: 0 malformed framing, 1 message 1 refused, 2 message 2
 * written, 3 message 3 accepted and the handshake complete. Aborts on any broken invariant. */
static int run_input(const uint8_t *data, size_t size)
{
    itr_noise hs;
    uint8_t payload[512], m2[256], k1[32], k2[32];
    size_t n;

    if (size < 2 || size - 2 < data[1])
        return 0;
    itr_suite suite = (data[0] & 1) ? ITR_SUITE_CHACHAPOLY : ITR_SUITE_AESGCM;
    size_t len1 = data[1];
    const uint8_t *m1 = data + 2, *m3 = data + 2 + len1;
    size_t len3 = size - 2 - len1;

    if (itr_noise_init(&hs, suite, 0, (const uint8_t *)PROLOGUE, PROLOGUE_LEN, RESP_STATIC,
                       RESP_EPHEMERAL) != ITR_OK)
        abort();
    if (itr_noise_read(&hs, m1, len1, payload, sizeof(payload), &n) != ITR_OK) {
        if (hs.step != ITR_NOISE_FAILED)
            abort();
        return 1;
    }
    if (hs.step != ITR_NOISE_MSG2 || n != len1 - 32)
        abort();
    /* Fails only for a low-order e in message 1 (ee is zero). */
    if (itr_noise_write(&hs, R_PAYLOAD, sizeof(R_PAYLOAD), m2, sizeof(m2), &n) != ITR_OK) {
        if (hs.step != ITR_NOISE_FAILED)
            abort();
        return 1;
    }
    if (n != ITR_NOISE_MSG2_LEN(sizeof(R_PAYLOAD)))
        abort();
    int depth = 2;
    if (itr_noise_read(&hs, m3, len3, payload, sizeof(payload), &n) == ITR_OK) {
        if (hs.step != ITR_NOISE_DONE || !hs.has_rs || n + 64 != len3 ||
            itr_noise_split(&hs, k1, k2) != ITR_OK)
            abort();
        depth = 3;
    } else if (hs.step != ITR_NOISE_FAILED) {
        abort();
    }
    itr_noise_wipe(&hs);
    return depth;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_input(data, size);
    return 0;
}

#ifdef FUZZ_NOISE_STANDALONE

static const uint8_t INIT_STATIC[32] = {
    0xe6, 0x1e, 0xf9, 0x91, 0x9c, 0xde, 0x45, 0xdd, 0x5f, 0x82, 0x16, 0x64, 0x04, 0xbd, 0x08, 0xe3,
    0x8b, 0xce, 0xb5, 0xdf, 0xdf, 0xde, 0xd0, 0xa3, 0x4c, 0x8d, 0xf7, 0xed, 0x54, 0x22, 0x14, 0xd1};
static const uint8_t INIT_EPHEMERAL[32] = {
    0x89, 0x3e, 0x28, 0xb9, 0xdc, 0x6c, 0xa8, 0xd6, 0x11, 0xab, 0x66, 0x47, 0x54, 0xb8, 0xce, 0xb7,
    0xba, 0xc5, 0x11, 0x73, 0x49, 0xa4, 0x43, 0x9a, 0x9b, 0x05, 0x69, 0xda, 0x97, 0x7c, 0x46, 0x4a};

/* One seed: a real handshake against the fixed responder, message 1 payload p1len bytes
 * (44 as in PROTOCOL.md §4.1), message 3 payload 16 bytes, message 3 cut to m3_keep bytes. */
static int make_seed(const char *dir, const char *name, itr_suite suite, size_t p1len,
                     size_t m3_keep)
{
    itr_noise i, r;
    uint8_t seed[1024], p1[64] = {0x11, 0x22, 0x33, 0x44}, p3[16] = {0x5e, 0x55}, m2[256], out[64];
    size_t n1, n2, n3, n;
    char path[512];

    seed[0] = suite == ITR_SUITE_CHACHAPOLY ? 1 : 0;
    if (itr_noise_init(&i, suite, 1, (const uint8_t *)PROLOGUE, PROLOGUE_LEN, INIT_STATIC,
                       INIT_EPHEMERAL) != ITR_OK ||
        itr_noise_init(&r, suite, 0, (const uint8_t *)PROLOGUE, PROLOGUE_LEN, RESP_STATIC,
                       RESP_EPHEMERAL) != ITR_OK ||
        itr_noise_write(&i, p1, p1len, seed + 2, 255, &n1) != ITR_OK ||
        itr_noise_read(&r, seed + 2, n1, out, sizeof(out), &n) != ITR_OK ||
        itr_noise_write(&r, R_PAYLOAD, sizeof(R_PAYLOAD), m2, sizeof(m2), &n2) != ITR_OK ||
        itr_noise_read(&i, m2, n2, out, sizeof(out), &n) != ITR_OK ||
        itr_noise_write(&i, p3, sizeof(p3), seed + 2 + n1, sizeof(seed) - 2 - n1, &n3) != ITR_OK)
        return -1;
    seed[1] = (uint8_t)n1;
    if (m3_keep < n3)
        n3 = m3_keep;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(seed, 1, 2 + n1 + n3, f);
    return fclose(f) == 0 && w == 2 + n1 + n3 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (itr_crypto_init() != ITR_OK)
        return 1;
    if (argc == 3 && strcmp(argv[1], "--make-seeds") == 0) {
        if (make_seed(argv[2], "aesgcm-full", ITR_SUITE_AESGCM, 44, SIZE_MAX) ||
            make_seed(argv[2], "chachapoly-full", ITR_SUITE_CHACHAPOLY, 44, SIZE_MAX) ||
            make_seed(argv[2], "aesgcm-empty-payload", ITR_SUITE_AESGCM, 0, SIZE_MAX) ||
            make_seed(argv[2], "chachapoly-msg3-truncated", ITR_SUITE_CHACHAPOLY, 44, 40) ||
            make_seed(argv[2], "aesgcm-msg1-only", ITR_SUITE_AESGCM, 44, 0)) {
            fprintf(stderr, "fuzz_noise: cannot write seeds to %s\n", argv[2]);
            return 1;
        }
        return 0;
    }
    /* Replay: every file must run through without aborting; report how many completed. */
    int completed = 0;
    for (int a = 1; a < argc; a++) {
        static uint8_t buf[1 << 16];
        FILE *f = fopen(argv[a], "rb");
        if (!f) {
            perror(argv[a]);
            return 1;
        }
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        completed += run_input(buf, len) == 3;
    }
    printf("fuzz_noise: replayed %d inputs, %d completed handshakes\n", argc - 1, completed);
    return 0;
}
#endif
