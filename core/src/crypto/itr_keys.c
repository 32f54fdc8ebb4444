/* itr_keys.c: static identities (intentra/keys.h): X25519 key pairs, hex, and 0600 key files
 * that are created atomically (O_EXCL, fsync of file and directory) and refused when group or
 * others can read or write them.
 */
#define _POSIX_C_SOURCE 200809L /* O_CLOEXEC, O_NOFOLLOW, fchmod */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <intentra/keys.h>

#include "itr_crypto.h"

#define HEX_KEY_LEN (2 * ITR_KEY_LEN)

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int itr_key_generate(uint8_t priv[ITR_KEY_LEN], uint8_t pub[ITR_KEY_LEN])
{
    if (itr_crypto_init() != ITR_OK)
        return ITR_ERR_CRYPTO;
    randombytes_buf(priv, ITR_KEY_LEN);
    /* Store the key clamped (RFC 7748 §5), as WireGuard does: X25519 clamps anyway, and a
     * clamped file is the canonical form of the key. */
    priv[0] &= 248;
    priv[31] &= 127;
    priv[31] |= 64;
    return itr_key_public(priv, pub);
}

int itr_key_public(const uint8_t priv[ITR_KEY_LEN], uint8_t pub[ITR_KEY_LEN])
{
    if (crypto_scalarmult_base(pub, priv) != 0 || sodium_is_zero(pub, ITR_KEY_LEN)) {
        sodium_memzero(pub, ITR_KEY_LEN);
        return ITR_ERR_CRYPTO;
    }
    return ITR_OK;
}

/* Eight nibbles, one per byte lane (each < 16), to their lowercase hex digits: '0' + n, plus
 * 39 more ('a' - '0' - 10) in the lanes where n >= 10 (n + 0x76 sets the lane's top bit).
 * No lane carries into the next. */
static uint64_t hex_lanes(uint64_t v)
{
    uint64_t ge10 = ((v + 0x7676767676767676ull) & 0x8080808080808080ull) >> 7;
    return v + 0x3030303030303030ull + ge10 * 39;
}

/* Four bytes (in[0] lowest) to eight hex digits in memory order. */
static void hex4(char *out, uint32_t x)
{
    /* Byte i to bits 16i..16i+7; its high nibble to lane 2i, its low nibble to lane 2i+1. */
    uint64_t y =
        (x & 0xffull) | (x & 0xff00ull) << 8 | (x & 0xff0000ull) << 16 | (x & 0xff000000ull) << 24;
    uint64_t v = hex_lanes(((y >> 4) & 0x000f000f000f000full) | (y & 0x000f000f000f000full) << 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(out, &v, 8);
}

void itr_hex_encode(char *out, const uint8_t *in, size_t len)
{
    /* Private keys go through here: no table lookups and no branches on the data (constant
     * time, like libsodium's sodium_bin2hex, but four bytes per step: peer keys are rendered
     * on the ingest hot path). */
    size_t i = 0;
#ifdef __SSE2__
    /* Sixteen bytes per step: nibbles split, interleaved high-low, then the same lane rule. */
    const __m128i nib = _mm_set1_epi8(0x0f), nine = _mm_set1_epi8(9);
    const __m128i zero = _mm_set1_epi8('0'), gap = _mm_set1_epi8('a' - '0' - 10);
    for (; i + 16 <= len; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), nib), lo = _mm_and_si128(x, nib);
        __m128i a = _mm_unpacklo_epi8(hi, lo), b = _mm_unpackhi_epi8(hi, lo);
        a = _mm_add_epi8(_mm_add_epi8(a, zero), _mm_and_si128(_mm_cmpgt_epi8(a, nine), gap));
        b = _mm_add_epi8(_mm_add_epi8(b, zero), _mm_and_si128(_mm_cmpgt_epi8(b, nine), gap));
        _mm_storeu_si128((__m128i *)(void *)(out + 2 * i), a);
        _mm_storeu_si128((__m128i *)(void *)(out + 2 * i + 16), b);
    }
#endif
    for (; i + 4 <= len; i += 4)
        hex4(out + 2 * i, (uint32_t)in[i] | (uint32_t)in[i + 1] << 8 | (uint32_t)in[i + 2] << 16 |
                              (uint32_t)in[i + 3] << 24);
    for (; i < len; i++) {
        uint64_t v = hex_lanes((uint64_t)(in[i] >> 4) | (uint64_t)(in[i] & 15) << 8);
        out[2 * i] = (char)(uint8_t)v;
        out[2 * i + 1] = (char)(uint8_t)(v >> 8);
    }
    out[2 * len] = '\0';
}

int itr_hex_decode(uint8_t *out, size_t len, const char *hex, size_t hexlen)
{
    size_t got = 0;
    if (!hex || len > SIZE_MAX / 2 || hexlen != 2 * len)
        return ITR_ERR_INVALID;
    /* With hex_end == NULL libsodium rejects any non-hex character; the digits are decoded
     * in constant time. */
    if (sodium_hex2bin(out, len, hex, hexlen, NULL, &got, NULL) != 0 || got != len) {
        sodium_memzero(out, len);
        return ITR_ERR_INVALID;
    }
    return ITR_OK;
}

int itr_keyfile_load(const char *path, uint8_t priv[ITR_KEY_LEN], char *err, size_t errlen)
{
    int rc = ITR_ERR_IO, saved_errno = 0;
    char buf[HEX_KEY_LEN + 3]; /* 64 digits, "\r\n", and one byte to detect trailing junk */
    size_t len = 0, digits;
    struct stat st;

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        saved_errno = errno;
        set_err(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
        goto out;
    }
    /* Check the opened file, not the name: no window for a swap between check and read. */
    if (fstat(fd, &st) != 0) {
        saved_errno = errno;
        set_err(err, errlen, "cannot stat key file %s: %s", path, strerror(errno));
        goto out;
    }
    rc = ITR_ERR_INVALID;
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "key file %s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        set_err(err, errlen,
                "key file %s has mode %04o: group or others may access it; fix: chmod 600 %s", path,
                (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    rc = ITR_ERR_IO;
    while (len < sizeof(buf)) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            saved_errno = errno;
            set_err(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    rc = ITR_ERR_INVALID;
    /* One line: 64 hex digits, optionally ended by "\n" or "\r\n". */
    digits = len;
    if (digits > 0 && buf[digits - 1] == '\n') {
        digits--;
        if (digits > 0 && buf[digits - 1] == '\r')
            digits--;
    }
    if (digits != HEX_KEY_LEN || itr_hex_decode(priv, ITR_KEY_LEN, buf, digits) != ITR_OK) {
        set_err(err, errlen, "key file %s: expected one line of %d hex digits (a private key)",
                path, HEX_KEY_LEN);
        goto out;
    }
    rc = ITR_OK;
out:
    sodium_memzero(buf, sizeof(buf));
    if (fd >= 0)
        close(fd);
    if (rc != ITR_OK)
        sodium_memzero(priv, ITR_KEY_LEN);
    if (saved_errno)
        errno = saved_errno;
    return rc;
}

/* fsync the directory holding path, so the new name survives a crash. File systems that cannot
 * sync a directory (EINVAL) have nothing to sync. */
static int sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n;

    if (!slash) {
        memcpy(dir, ".", 2);
    } else {
        n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof(dir)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    if (rc != 0 && errno == EINVAL)
        rc = 0;
    int saved_errno = errno;
    close(fd);
    errno = saved_errno;
    return rc;
}

static int write_all(int fd, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* close() whose failure counts (it may report a delayed write error); fd becomes -1. */
static int close_fd(int *fd)
{
    int rc = close(*fd);
    *fd = -1;
    return rc;
}

int itr_keyfile_create(const char *path, uint8_t priv[ITR_KEY_LEN], char *err, size_t errlen)
{
    int rc, fd = -1, saved_errno = 0, created = 0;
    uint8_t pub[ITR_KEY_LEN];
    char line[HEX_KEY_LEN + 1]; /* the digits and "\n" */
    char hex[HEX_KEY_LEN + 1];

    rc = itr_key_generate(priv, pub);
    if (rc != ITR_OK) {
        set_err(err, errlen, "cannot generate a key for %s", path);
        goto out;
    }
    rc = ITR_ERR_IO;
    /* O_EXCL: an existing identity is never overwritten, even by a concurrent creator. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        saved_errno = errno;
        if (errno == EEXIST)
            set_err(err, errlen, "key file %s already exists; refusing to overwrite it", path);
        else
            set_err(err, errlen, "cannot create key file %s: %s", path, strerror(errno));
        goto out;
    }
    created = 1;
    itr_hex_encode(hex, priv, ITR_KEY_LEN);
    memcpy(line, hex, HEX_KEY_LEN);
    line[HEX_KEY_LEN] = '\n';
    /* fchmod: the umask may only have narrowed 0600; make it exactly 0600 so the owner can
     * read it back. fsync of the file, then of the directory, so both the content and the
     * name survive a crash. */
    if (fchmod(fd, 0600) != 0 || write_all(fd, line, sizeof(line)) != 0 || fsync(fd) != 0 ||
        close_fd(&fd) != 0 || sync_parent_dir(path) != 0) {
        saved_errno = errno ? errno : EIO;
        set_err(err, errlen, "cannot write key file %s: %s", path, strerror(saved_errno));
        goto out;
    }
    rc = ITR_OK;
out:
    if (fd >= 0)
        close(fd);
    if (rc != ITR_OK) {
        /* Leave no half-written identity behind: a later load would refuse it. */
        if (created)
            unlink(path);
        sodium_memzero(priv, ITR_KEY_LEN);
    }
    sodium_memzero(line, sizeof(line));
    sodium_memzero(hex, sizeof(hex));
    if (saved_errno)
        errno = saved_errno;
    return rc;
}

int itr_keyfile_load_or_create(const char *path, uint8_t priv[ITR_KEY_LEN], int *created, char *err,
                               size_t errlen)
{
    *created = 0;
    int rc = itr_keyfile_load(path, priv, err, errlen);
    if (rc != ITR_ERR_IO || errno != ENOENT)
        return rc;
    rc = itr_keyfile_create(path, priv, err, errlen);
    if (rc == ITR_OK) {
        *created = 1;
        return rc;
    }
    /* Another process created it between our load and create: use theirs. */
    if (rc == ITR_ERR_IO && errno == EEXIST)
        rc = itr_keyfile_load(path, priv, err, errlen);
    return rc;
}

int itr_key_parse_public(const char *hex_or_path, uint8_t pub[ITR_KEY_LEN], char *err,
                         size_t errlen)
{
    uint8_t priv[ITR_KEY_LEN];
    char why[512];
    int rc = ITR_ERR_INVALID;

    if (!hex_or_path || !*hex_or_path) {
        set_err(err, errlen, "empty public key");
        goto out;
    }
    size_t len = strlen(hex_or_path);
    if (len == HEX_KEY_LEN && itr_hex_decode(pub, ITR_KEY_LEN, hex_or_path, len) == ITR_OK) {
        if (sodium_is_zero(pub, ITR_KEY_LEN)) {
            set_err(err, errlen, "public key %s is all zeros", hex_or_path);
            goto out;
        }
        rc = ITR_OK;
        goto out;
    }
    rc = itr_keyfile_load(hex_or_path, priv, why, sizeof(why));
    if (rc != ITR_OK) {
        set_err(err, errlen, "'%s' is neither %d hex digits nor a usable key file (%s)",
                hex_or_path, HEX_KEY_LEN, why);
        goto out;
    }
    rc = itr_key_public(priv, pub);
    if (rc != ITR_OK)
        set_err(err, errlen, "key file %s holds an invalid private key", hex_or_path);
out:
    sodium_memzero(priv, sizeof(priv));
    return rc;
}

int itr_ct_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}

void itr_wipe(void *p, size_t n)
{
    sodium_memzero(p, n);
}
