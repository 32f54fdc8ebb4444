/* fuzz_spool.c: libFuzzer target for the disk buffer's record parser (connectors/kafka/spool.h).
 *
 * The input is read like a segment body: records are decoded one after another; a record
 * with a bad CRC but a plausible length is skipped, anything else ends the walk. Invariants:
 * decode never reads past the input, a decoded record's fields lie inside it, and encoding a
 * decoded record gives back exactly the bytes it was decoded from.
 *
 * An input whose first byte is odd is a payload: it is framed with a valid length and CRC
 * first, so that the payload parser behind the CRC check gets fuzzed too.
 *
 * Built without libFuzzer (FUZZ_SPOOL_STANDALONE) it replays files given on the command line
 * (the seed corpus, as a regression test) or writes seeds with --make-seeds DIR.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <intentra/error.h>

#include "kafka/spool.h"

static int inside(const uint8_t *base, size_t len, const void *p, size_t n)
{
    const uint8_t *q = p;
    return n == 0 || (q >= base && q + n <= base + len);
}

static void walk(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t framed[GW_SPOOL_FRAME_BYTES + (1 << 16)];
    if (size && (data[0] & 1) && size - 1 <= (1 << 16)) {
        /* Payload mode: frame the rest with a valid length and CRC so the fuzzer reaches the
         * payload parser (a random CRC almost never matches). */
        size_t n = size - 1;
        framed[0] = (uint8_t)n;
        framed[1] = (uint8_t)(n >> 8);
        framed[2] = (uint8_t)(n >> 16);
        framed[3] = (uint8_t)(n >> 24);
        uint32_t crc = gw_spool_crc32c(0, data + 1, n);
        framed[4] = (uint8_t)crc;
        framed[5] = (uint8_t)(crc >> 8);
        framed[6] = (uint8_t)(crc >> 16);
        framed[7] = (uint8_t)(crc >> 24);
        memcpy(framed + GW_SPOOL_FRAME_BYTES, data + 1, n);
        walk(framed, GW_SPOOL_FRAME_BYTES + n);
    } else {
        walk(data, size);
    }
    return 0;
}

/* Read data like a segment body. */
static void walk(const uint8_t *data, size_t size)
{
    static uint8_t out[1 << 17];
    size_t off = 0;
    while (off < size) {
        gw_spool_record r;
        gw_spool_header h[GW_SPOOL_MAX_HEADERS];
        size_t need = 0;
        long used = gw_spool_decode(data + off, size - off, &r, h, &need);
        if (used > 0) {
            const uint8_t *rec = data + off;
            size_t n = (size_t)used;
            if (n > size - off || !inside(rec, n, r.topic, r.topic_len) ||
                (r.key && !inside(rec, n, r.key, r.key_len)) ||
                !inside(rec, n, r.value, r.value_len) || r.header_count > GW_SPOOL_MAX_HEADERS)
                abort();
            for (size_t i = 0; i < r.header_count; i++) {
                if (!inside(rec, n, r.headers[i].name, r.headers[i].name_len) ||
                    !inside(rec, n, r.headers[i].value, r.headers[i].value_len))
                    abort();
            }
            if (n <= sizeof(out)) {
                size_t again = gw_spool_encode(&r, out, sizeof(out));
                if (again != n || memcmp(out, rec, n))
                    abort();
            }
            off += n;
        } else if (used == ITR_ERR_PROTO && need && need <= size - off) {
            off += need; /* a corrupt record that can be framed: skipped, like the reader */
        } else if (used == ITR_ERR_PROTO || used == ITR_ERR_PARTIAL) {
            break;
        } else {
            abort();
        }
    }
}

#ifdef FUZZ_SPOOL_STANDALONE
#include "fuzz_replay.h"
static int write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f);
}

static int make_seeds(const char *dir)
{
    uint8_t buf[4096];
    size_t len = 0;
    gw_spool_header h[2] = {{"intentra-peer", 13, "ab12", 4}, {"intentra-seq", 12, "7", 1}};
    gw_spool_record a = {.partition = -1,
                         .topic = "fleet.pose",
                         .topic_len = 10,
                         .key = "ab12",
                         .key_len = 4,
                         .headers = h,
                         .header_count = 2,
                         .value = "{\"x\":1}",
                         .value_len = 7,
                         .timestamp_ms = 1700000000000};
    gw_spool_record b = {
        .flags = 1, .partition = 3, .topic = "t", .topic_len = 1, .value = "", .value_len = 0};
    len += gw_spool_encode(&a, buf + len, sizeof(buf) - len);
    if (write_seed(dir, "one_record", buf, len))
        return 1;
    len += gw_spool_encode(&b, buf + len, sizeof(buf) - len);
    if (write_seed(dir, "two_records", buf, len))
        return 1;
    if (write_seed(dir, "torn_tail", buf, len - 3))
        return 1;
    buf[20] ^= 1;
    if (write_seed(dir, "bad_crc_first", buf, len))
        return 1;
    /* payload mode: 0x01 + the first record's payload */
    buf[20] ^= 1;
    uint8_t pm[4096];
    size_t first = gw_spool_encoded_size(&a) - GW_SPOOL_FRAME_BYTES;
    pm[0] = 1;
    memcpy(pm + 1, buf + GW_SPOOL_FRAME_BYTES, first);
    if (write_seed(dir, "payload_mode", pm, first + 1))
        return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--make-seeds"))
        return make_seeds(argv[2]);
    int n = fuzz_replay_files(argc, argv);
    if (n < 0)
        return 1;
    printf("replayed %d inputs\n", n);
    return 0;
}
#endif
