/* fuzz_file_format.c: the file sink's JSON line formatter on arbitrary topics and bodies.
 * Invariants: exactly one newline, at the end; the line is JSON; within gw_file_line_max;
 * the payload round-trips (text as the same bytes when the body is valid UTF-8, base64
 * decoding to the body otherwise, U+FFFD-replaced text in utf8 mode).
 * Input: byte 0 = payload mode (mod 3), byte 1 = topic length, then topic, then body.
 * Built as a libFuzzer target with INTENTRA_FUZZ=ON; otherwise FUZZ_FILE_FORMAT_REPLAY
 * gives it a main() that runs every file named on the command line (the seed corpus). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "file_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    enum file_payload mode = (enum file_payload)(data[0] % 3);
    size_t tlen = data[1];
    if (tlen > size - 2)
        tlen = size - 2;
    gw_msg m;
    memset(&m, 0, sizeof(m));
    m.recv_wall_ns = (uint64_t)data[0] * 1000000007ull * 1000003ull;
    m.shard_name = (const char *)data + 2; /* arbitrary bytes in the shard name too */
    m.shard_name_len = (uint32_t)(tlen / 2);
    memset(m.peer_hex, 'f', 64);
    m.seq = (uint32_t)size;
    m.intent = data[0] & 1;
    m.topic = (const char *)data + 2;
    m.topic_len = (uint16_t)tlen;
    m.body = data + 2 + tlen;
    m.body_len = (uint32_t)(size - 2 - tlen);

    size_t max = gw_file_line_max(&m, mode);
    char *line = malloc(max + 1);
    if (!line)
        return 0;
    struct file_ts_cache tc = {0};
    size_t n = gw_file_format_line(line, &m, mode, &tc);
    if (n > max || n == 0 || line[n - 1] != '\n' || memchr(line, '\n', n - 1))
        abort();
    line[n] = 0;
    cJSON *j = cJSON_Parse(line);
    if (!j)
        abort();
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "payload");
    const cJSON *enc = cJSON_GetObjectItemCaseSensitive(j, "payload_encoding");
    if (!cJSON_IsString(p))
        abort();
    int valid = gw_file_utf8_valid(m.body, m.body_len);
    int text = mode == FILE_PAYLOAD_UTF8 || (mode == FILE_PAYLOAD_AUTO && valid);
    if (text) {
        if (enc)
            abort();
        /* cJSON stops at an escaped NUL; compare up to the first NUL of the body */
        const uint8_t *nul = memchr(m.body, 0, m.body_len);
        size_t cmp = nul ? (size_t)(nul - m.body) : m.body_len;
        if (valid && (strlen(p->valuestring) != cmp || memcmp(p->valuestring, m.body, cmp)))
            abort();
        if (!gw_file_utf8_valid((const uint8_t *)p->valuestring, strlen(p->valuestring)))
            abort();
    } else {
        if (!cJSON_IsString(enc) || strcmp(enc->valuestring, "base64"))
            abort();
        size_t cap = m.body_len + 3;
        uint8_t *bin = malloc(cap);
        size_t blen = 0;
        if (!bin ||
            sodium_base642bin(bin, cap, p->valuestring, strlen(p->valuestring), NULL, &blen, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            blen != m.body_len || (blen && memcmp(bin, m.body, blen)))
            abort();
        free(bin);
    }
    const cJSON *topic = cJSON_GetObjectItemCaseSensitive(j, "topic");
    if (!cJSON_IsString(topic))
        abort();
    cJSON_Delete(j);
    free(line);
    return 0;
}

#ifdef FUZZ_FILE_FORMAT_REPLAY
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("replayed %d inputs\n", argc - 1);
    return 0;
}
#endif
