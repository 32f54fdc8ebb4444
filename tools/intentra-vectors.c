/* intentra-vectors: runs Noise test vectors (cacophony JSON format) against libintentra's Noise
 * XX implementation: every handshake message, the handshake hash, and the transport messages
 * after Split(), for Noise_XX_25519_{AESGCM,ChaChaPoly}_SHA256. Other protocols are skipped.
 *
 * Cacophony convention: messages alternate initiator, responder, initiator, ... over the whole
 * list; the first three are the XX handshake, the rest are transport messages sealed with the
 * Split() cipher states (n from 0, empty associated data).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <intentra/keys.h>

#include "itr_noise.h"

#define XX_HANDSHAKE_MESSAGES 3

typedef struct tally {
    unsigned passed, failed, skipped;
} tally;

/* Where we are, for failure lines. */
typedef struct where {
    const char *file;
    int index;
    const char *protocol;
} where;

__attribute__((format(printf, 2, 3))) static void fail_line(const where *w, const char *fmt, ...)
{
    va_list ap;
    fprintf(stdout, "FAIL %s: vector %d (%s): ", w->file, w->index, w->protocol);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

/* A hex string field decoded into a fresh buffer (*out NULL and *len 0 for ""). Returns 0, or
 * -1 (missing or not hex). */
static int hex_field(const cJSON *obj, const char *name, uint8_t **out, size_t *len)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    *len = 0;
    if (!cJSON_IsString(f) || !f->valuestring)
        return -1;
    size_t hexlen = strlen(f->valuestring);
    if (hexlen % 2)
        return -1;
    if (hexlen == 0)
        return 0;
    *out = malloc(hexlen / 2);
    if (!*out)
        return -1;
    if (itr_hex_decode(*out, hexlen / 2, f->valuestring, hexlen) != ITR_OK) {
        free(*out);
        *out = NULL;
        return -1;
    }
    *len = hexlen / 2;
    return 0;
}

/* A 32-byte key field. */
static int key_field(const cJSON *obj, const char *name, uint8_t key[32])
{
    uint8_t *buf;
    size_t len;
    if (hex_field(obj, name, &buf, &len) != 0 || len != 32) {
        free(buf);
        return -1;
    }
    memcpy(key, buf, 32);
    itr_wipe(buf, len);
    free(buf);
    return 0;
}

static void print_hex(const char *label, const uint8_t *b, size_t len)
{
    fprintf(stdout, "    %s ", label);
    for (size_t i = 0; i < len; i++)
        fprintf(stdout, "%02x", b[i]);
    fputc('\n', stdout);
}

static int same(const uint8_t *got, size_t glen, const uint8_t *want, size_t wlen)
{
    return glen == wlen && (wlen == 0 || memcmp(got, want, wlen) == 0);
}

/* Runs one supported vector. Returns 0 if every check matched, -1 after printing the first
 * mismatch (later messages would only repeat it). */
static int run_vector(const cJSON *v, itr_suite suite, const where *w)
{
    int rc = -1;
    itr_noise init, resp;
    itr_noise_cipher cs[2][2]; /* [role][0 = send, 1 = recv]; role 0 initiator */
    uint8_t is[32], ie[32], rs[32], re[32], hash[32], got_hash[32];
    uint8_t *iprol = NULL, *rprol = NULL, *payload = NULL, *ct = NULL, *buf = NULL;
    size_t iprol_len, rprol_len, plen, ctlen, n;

    memset(cs, 0, sizeof(cs));
    itr_noise_wipe(&init);
    itr_noise_wipe(&resp);
    if (key_field(v, "init_static", is) || key_field(v, "init_ephemeral", ie) ||
        key_field(v, "resp_static", rs) || key_field(v, "resp_ephemeral", re) ||
        key_field(v, "handshake_hash", hash) || hex_field(v, "init_prologue", &iprol, &iprol_len) ||
        hex_field(v, "resp_prologue", &rprol, &rprol_len)) {
        fail_line(w, "a key, hash or prologue field is missing or not hex of the right length");
        goto out;
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(v, "messages");
    int count = cJSON_GetArraySize(msgs);
    if (!cJSON_IsArray(msgs) || count < XX_HANDSHAKE_MESSAGES) {
        fail_line(w, "needs a messages array with at least %d handshake messages",
                  XX_HANDSHAKE_MESSAGES);
        goto out;
    }
    if (itr_noise_init(&init, suite, 1, iprol, iprol_len, is, ie) != ITR_OK ||
        itr_noise_init(&resp, suite, 0, rprol, rprol_len, rs, re) != ITR_OK) {
        fail_line(w, "handshake state initialization failed");
        goto out;
    }

    for (int i = 0; i < count; i++) {
        const cJSON *m = cJSON_GetArrayItem(msgs, i);
        int sender_is_init = i % 2 == 0;
        itr_noise *tx = sender_is_init ? &init : &resp, *rx = sender_is_init ? &resp : &init;
        itr_noise_cipher *tx_cs = cs[sender_is_init ? 0 : 1], *rx_cs = cs[sender_is_init ? 1 : 0];
        int r;

        free(payload);
        free(ct);
        free(buf);
        payload = ct = buf = NULL;
        if (hex_field(m, "payload", &payload, &plen) || hex_field(m, "ciphertext", &ct, &ctlen)) {
            fail_line(w, "message %d: payload or ciphertext missing or not hex", i);
            goto out;
        }
        size_t cap = (plen > ctlen ? plen : ctlen) + 128;
        buf = malloc(cap);
        if (!buf) {
            fail_line(w, "message %d: out of memory", i);
            goto out;
        }

        /* The sender must produce the vector's ciphertext... */
        if (i < XX_HANDSHAKE_MESSAGES)
            r = itr_noise_write(tx, payload, plen, buf, cap, &n);
        else
            r = itr_noise_cipher_encrypt(suite, &tx_cs[0], NULL, 0, payload, plen, buf, cap, &n);
        if (r != ITR_OK || !same(buf, n, ct, ctlen)) {
            fail_line(w, "message %d (%s, %s): ciphertext differs%s%s", i,
                      sender_is_init ? "initiator" : "responder",
                      i < XX_HANDSHAKE_MESSAGES ? "handshake" : "transport",
                      r != ITR_OK ? ": write failed: " : "", r != ITR_OK ? itr_strerror(r) : "");
            if (r == ITR_OK) {
                print_hex("expected", ct, ctlen);
                print_hex("got     ", buf, n);
            }
            goto out;
        }
        /* ...and the receiver must recover the vector's payload from it. */
        if (i < XX_HANDSHAKE_MESSAGES)
            r = itr_noise_read(rx, ct, ctlen, buf, cap, &n);
        else
            r = itr_noise_cipher_decrypt(suite, &rx_cs[1], NULL, 0, ct, ctlen, buf, cap, &n);
        if (r != ITR_OK || !same(buf, n, payload, plen)) {
            fail_line(w, "message %d (%s, %s): decrypted payload differs%s%s", i,
                      sender_is_init ? "responder reads" : "initiator reads",
                      i < XX_HANDSHAKE_MESSAGES ? "handshake" : "transport",
                      r != ITR_OK ? ": read failed: " : "", r != ITR_OK ? itr_strerror(r) : "");
            goto out;
        }

        if (i == XX_HANDSHAKE_MESSAGES - 1) {
            if (init.step != ITR_NOISE_DONE || resp.step != ITR_NOISE_DONE) {
                fail_line(w, "handshake not complete after message %d", i);
                goto out;
            }
            for (int role = 0; role < 2; role++) {
                itr_noise_handshake_hash(role == 0 ? &init : &resp, got_hash);
                if (memcmp(got_hash, hash, sizeof(hash)) != 0) {
                    fail_line(w, "handshake hash differs (%s)",
                              role == 0 ? "initiator" : "responder");
                    print_hex("expected", hash, sizeof(hash));
                    print_hex("got     ", got_hash, sizeof(got_hash));
                    goto out;
                }
            }
            if (itr_noise_split_cs(&init, &cs[0][0], &cs[0][1]) != ITR_OK ||
                itr_noise_split_cs(&resp, &cs[1][0], &cs[1][1]) != ITR_OK) {
                fail_line(w, "Split() failed");
                goto out;
            }
        }
    }
    rc = 0;
out:
    itr_noise_wipe(&init);
    itr_noise_wipe(&resp);
    itr_wipe(cs, sizeof(cs));
    itr_wipe(is, sizeof(is));
    itr_wipe(ie, sizeof(ie));
    itr_wipe(rs, sizeof(rs));
    itr_wipe(re, sizeof(re));
    free(iprol);
    free(rprol);
    free(payload);
    free(ct);
    free(buf);
    return rc;
}

/* Supported: Noise_XX_25519_<cipher>_SHA256 with a cipher we implement (AESGCM, ChaChaPoly),
 * no PSKs and not an expected-failure vector. */
static itr_suite vector_suite(const cJSON *v, const char *name)
{
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "fail")))
        return (itr_suite)0;
    const cJSON *psks = cJSON_GetObjectItemCaseSensitive(v, "init_psks");
    if (cJSON_IsArray(psks) && cJSON_GetArraySize(psks) > 0)
        return (itr_suite)0;
    return itr_noise_suite_from_name(name);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t cap = 0, used = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (used + 4096 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            char *nd = realloc(data, ncap);
            if (!nd) {
                free(data);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            data = nd;
            cap = ncap;
        }
        size_t r = fread(data + used, 1, cap - used - 1, f);
        used += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(data);
        errno = EIO;
        return NULL;
    }
    data[used] = '\0';
    *len = used;
    return data;
}

/* Runs every vector of one file into t. Returns 0, or -1 if the file is unusable. */
static int run_file(const char *path, tally *t)
{
    size_t len = 0;
    int rc = -1;
    cJSON *root = NULL;
    char *data = read_file(path, &len);
    if (!data) {
        fprintf(stderr, "intentra-vectors: cannot read %s: %s\n", path, strerror(errno));
        goto out;
    }
    root = cJSON_ParseWithLength(data, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        fprintf(stderr, "intentra-vectors: %s: not valid JSON (near byte %ld)\n", path,
                at ? (long)(at - data) : -1L);
        goto out;
    }
    const cJSON *vectors = cJSON_GetObjectItemCaseSensitive(root, "vectors");
    if (!cJSON_IsArray(vectors)) {
        fprintf(stderr, "intentra-vectors: %s: no \"vectors\" array at the top level\n", path);
        goto out;
    }
    int index = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, vectors)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(v, "protocol_name");
        where w = {path, index++, cJSON_IsString(name) ? name->valuestring : "?"};
        itr_suite suite = cJSON_IsString(name) ? vector_suite(v, name->valuestring) : (itr_suite)0;
        if (!suite) {
            t->skipped++;
            continue;
        }
        if (run_vector(v, suite, &w) == 0)
            t->passed++;
        else
            t->failed++;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    free(data);
    return rc;
}

static void usage(FILE *f)
{
    fputs("usage: intentra-vectors [--openssl-aesgcm] FILE...\n"
          "Runs the Noise_XX_25519_{AESGCM,ChaChaPoly}_SHA256 vectors of each JSON file (format:\n"
          "{\"vectors\": [{protocol_name, init_/resp_prologue, _static, _ephemeral,\n"
          "handshake_hash, messages: [{payload, ciphertext}]}]}) and prints\n"
          "\"N passed, M failed[, K skipped]\". Exit status: 0 all passed, 1 a vector failed, a\n"
          "file was unreadable or no vector could be run, 2 usage.\n"
          "--openssl-aesgcm runs AESGCM through the OpenSSL fallback used without AES-NI.\n",
          f);
}

int main(int argc, char **argv)
{
    tally t = {0, 0, 0};
    int unusable = 0;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("intentra-vectors %s\n", INTENTRA_VERSION);
        return 0;
    }
    int first = 1;
    if (strcmp(argv[1], "--openssl-aesgcm") == 0) {
        /* Exercise the fallback that hosts without AES-NI use. */
        itr_crypto_force_evp_aesgcm(1);
        first = 2;
    }
    if (first >= argc) {
        usage(stderr);
        return 2;
    }
    if (itr_crypto_init() != ITR_OK) {
        fprintf(stderr, "intentra-vectors: libsodium initialization failed\n");
        return 1;
    }
    for (int i = first; i < argc; i++)
        if (run_file(argv[i], &t) != 0)
            unusable = 1;

    printf("%u passed, %u failed", t.passed, t.failed);
    if (t.skipped)
        printf(", %u skipped", t.skipped);
    putchar('\n');
    if (!unusable && t.passed + t.failed == 0) {
        fprintf(stderr, "intentra-vectors: no supported vector found\n");
        return 1;
    }
    return (unusable || t.failed) ? 1 : 0;
}
