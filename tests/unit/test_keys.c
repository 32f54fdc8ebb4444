/* test_keys.c: intentra/keys.h: key generation, hex encoding (round trip and every kind of bad
 * input), key files (0600 on creation whatever the umask, O_EXCL never overwrites, refusal of
 * group/other permissions with the chmod hint, content checks), load_or_create, public keys from
 * hex or from a key file, and itr_strerror for every code.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include <intentra/error.h>
#include <intentra/keys.h>

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/itr-test-keys-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", g_dir, name);
}

static void write_file(const char *path, const char *content, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_generate(void **state)
{
    (void)state;
    uint8_t priv[32], pub[32], pub2[32], priv2[32];
    assert_int_equal(itr_key_generate(priv, pub), ITR_OK);
    assert_int_equal(itr_key_public(priv, pub2), ITR_OK);
    assert_memory_equal(pub, pub2, 32);
    /* Stored clamped. */
    assert_int_equal(priv[0] & 7, 0);
    assert_int_equal(priv[31] & 0xc0, 0x40);
    assert_int_equal(itr_key_generate(priv2, pub2), ITR_OK);
    assert_memory_not_equal(priv, priv2, 32);
}

/* The hot-path encoder agrees with libsodium's for every byte value, at every length (the
 * four-byte steps and the tail). */
static void test_hex_matches_libsodium(void **state)
{
    (void)state;
    uint8_t in[256];
    char ours[2 * 256 + 1], ref[2 * 256 + 1];
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)i;
    for (size_t len = 0; len <= 256; len++) {
        memset(ours, 'x', sizeof(ours));
        itr_hex_encode(ours, in + (256 - len) / 2, len);
        sodium_bin2hex(ref, sizeof(ref), in + (256 - len) / 2, len);
        assert_string_equal(ours, ref);
    }
}

static void test_hex(void **state)
{
    (void)state;
    uint8_t in[32], out[32];
    char hex[65];
    for (int i = 0; i < 32; i++)
        in[i] = (uint8_t)(i * 37 + 5);
    itr_hex_encode(hex, in, 32);
    assert_int_equal(strlen(hex), 64);
    for (int i = 0; i < 64; i++)
        assert_true((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
    assert_int_equal(itr_hex_decode(out, 32, hex, 64), ITR_OK);
    assert_memory_equal(in, out, 32);

    uint8_t b[4];
    assert_int_equal(itr_hex_decode(b, 4, "DeadBEEF", 8), ITR_OK);
    assert_int_equal(b[0], 0xde);
    assert_int_equal(b[3], 0xef);
    itr_hex_encode(hex, b, 0);
    assert_string_equal(hex, "");

    /* Bad input: wrong length either way, odd length, a non-hex digit anywhere, whitespace, an
     * embedded NUL, a prefix; out is left zeroed. */
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        {"deadbe", 6},   {"deadbeef00", 10}, {"deadbee", 7},   {"deadbeeg", 8},
        {"gdeadbee", 8}, {"dead beef", 8},   {"dead\0eef", 8}, {"0xdeadbe", 8},
        {" deadbee", 8}, {"deadbee\n", 8},   {"", 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(b, 0x77, sizeof(b));
        assert_int_equal(itr_hex_decode(b, 4, bad[i].s, bad[i].len), ITR_ERR_INVALID);
        assert_true(sodium_is_zero(b, sizeof(b)) || bad[i].len != 8);
    }
    assert_int_equal(itr_hex_decode(b, 4, NULL, 8), ITR_ERR_INVALID);
}

static void test_keyfile_create_load(void **state)
{
    (void)state;
    char path[128], err[512];
    uint8_t priv[32], again[32], other[32];
    struct stat st;
    path_of(path, sizeof(path), "id.key");

    /* A restrictive umask must not make the file unreadable to its owner; a lax one must not
     * widen it. */
    mode_t old = umask(0277);
    assert_int_equal(itr_keyfile_create(path, priv, err, sizeof(err)), ITR_OK);
    umask(old);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 65);
    assert_int_equal(itr_keyfile_load(path, again, err, sizeof(err)), ITR_OK);
    assert_memory_equal(priv, again, 32);

    /* O_EXCL: never overwrite. */
    errno = 0;
    assert_int_equal(itr_keyfile_create(path, other, err, sizeof(err)), ITR_ERR_IO);
    assert_int_equal(errno, EEXIST);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "already exists"));
    assert_true(sodium_is_zero(other, 32));
    assert_int_equal(itr_keyfile_load(path, again, err, sizeof(err)), ITR_OK);
    assert_memory_equal(priv, again, 32);

    char path2[128];
    path_of(path2, sizeof(path2), "lax.key");
    old = umask(0);
    assert_int_equal(itr_keyfile_create(path2, other, err, sizeof(err)), ITR_OK);
    umask(old);
    assert_int_equal(stat(path2, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_memory_not_equal(priv, other, 32);

    /* A directory that does not exist. */
    char path3[160];
    path_of(path3, sizeof(path3), "missing/dir/x.key");
    assert_int_equal(itr_keyfile_create(path3, other, err, sizeof(err)), ITR_ERR_IO);
    assert_non_null(strstr(err, path3));
}

static void test_keyfile_permissions_refused(void **state)
{
    (void)state;
    char path[128], err[512], fix[200];
    uint8_t priv[32];
    static const mode_t bad_modes[] = {0640, 0604, 0660, 0644, 0610, 0601, 0666, 0620};
    const char *hex = "a8abababababababababababababababababababababababababababababab6a\n";
    path_of(path, sizeof(path), "perm.key");
    snprintf(fix, sizeof(fix), "chmod 600 %s", path);

    for (size_t i = 0; i < sizeof(bad_modes) / sizeof(bad_modes[0]); i++) {
        write_file(path, hex, bad_modes[i]);
        memset(priv, 0x11, sizeof(priv));
        err[0] = '\0';
        assert_int_equal(itr_keyfile_load(path, priv, err, sizeof(err)), ITR_ERR_INVALID);
        assert_non_null(strstr(err, fix));
        assert_true(sodium_is_zero(priv, 32));
    }
    /* Owner-only modes are fine, including read-only. */
    static const mode_t ok_modes[] = {0600, 0400, 0700};
    for (size_t i = 0; i < sizeof(ok_modes) / sizeof(ok_modes[0]); i++) {
        write_file(path, hex, ok_modes[i]);
        assert_int_equal(itr_keyfile_load(path, priv, err, sizeof(err)), ITR_OK);
        assert_int_equal(priv[0], 0xa8);
        assert_int_equal(priv[31], 0x6a);
    }
}

static void test_keyfile_content(void **state)
{
    (void)state;
    char path[128], err[512];
    uint8_t priv[32];
    path_of(path, sizeof(path), "content.key");
    const char *k = "a8abababababababababababababababababababababababababababababab6a";
    char buf[200];

    /* Accepted: with "\n", with "\r\n", without a newline. */
    const char *endings[] = {"\n", "\r\n", ""};
    for (size_t i = 0; i < 3; i++) {
        snprintf(buf, sizeof(buf), "%s%s", k, endings[i]);
        write_file(path, buf, 0600);
        assert_int_equal(itr_keyfile_load(path, priv, err, sizeof(err)), ITR_OK);
    }
    /* Refused: short, long, non-hex, two lines, empty, leading space. */
    const char *bad[] = {
        "a8ababab\n",
        "a8abababababababababababababababababababababababababababababab6a00\n",
        "z8abababababababababababababababababababababababababababababab6a\n",
        "a8abababababababababababababababababababababababababababababab6a\n\n",
        "",
        " a8abababababababababababababababababababababababababababababab6a\n",
        "a8abababababababababababababababababababababababababababababab6a\nsecond line\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, bad[i], 0600);
        err[0] = '\0';
        assert_int_equal(itr_keyfile_load(path, priv, err, sizeof(err)), ITR_ERR_INVALID);
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "64 hex digits"));
    }
    /* Not a regular file, not there. */
    assert_int_equal(itr_keyfile_load(g_dir, priv, err, sizeof(err)), ITR_ERR_INVALID);
    assert_non_null(strstr(err, "not a regular file"));
    char missing[128];
    path_of(missing, sizeof(missing), "nope.key");
    errno = 0;
    assert_int_equal(itr_keyfile_load(missing, priv, err, sizeof(err)), ITR_ERR_IO);
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(err, missing));
    /* A NULL or empty error buffer is allowed. */
    assert_int_equal(itr_keyfile_load(missing, priv, NULL, 0), ITR_ERR_IO);
}

static void test_load_or_create(void **state)
{
    (void)state;
    char path[128], err[512];
    uint8_t a[32], b[32];
    int created = -1;
    path_of(path, sizeof(path), "auto.key");
    assert_int_equal(itr_keyfile_load_or_create(path, a, &created, err, sizeof(err)), ITR_OK);
    assert_int_equal(created, 1);
    assert_int_equal(itr_keyfile_load_or_create(path, b, &created, err, sizeof(err)), ITR_OK);
    assert_int_equal(created, 0);
    assert_memory_equal(a, b, 32);
    /* A bad existing file is an error, never silently replaced. */
    chmod(path, 0644);
    assert_int_equal(itr_keyfile_load_or_create(path, b, &created, err, sizeof(err)),
                     ITR_ERR_INVALID);
    assert_int_equal(created, 0);
    assert_non_null(strstr(err, "chmod 600"));
}

static void test_parse_public(void **state)
{
    (void)state;
    char path[128], err[512], hex[65];
    uint8_t priv[32], pub[32], got[32];
    path_of(path, sizeof(path), "peer.key");
    assert_int_equal(itr_keyfile_create(path, priv, err, sizeof(err)), ITR_OK);
    assert_int_equal(itr_key_public(priv, pub), ITR_OK);

    assert_int_equal(itr_key_parse_public(path, got, err, sizeof(err)), ITR_OK);
    assert_memory_equal(got, pub, 32);
    itr_hex_encode(hex, pub, 32);
    assert_int_equal(itr_key_parse_public(hex, got, err, sizeof(err)), ITR_OK);
    assert_memory_equal(got, pub, 32);
    for (int i = 0; i < 64; i++)
        if (hex[i] >= 'a')
            hex[i] = (char)(hex[i] - 'a' + 'A');
    assert_int_equal(itr_key_parse_public(hex, got, err, sizeof(err)), ITR_OK);
    assert_memory_equal(got, pub, 32);

    assert_int_equal(itr_key_parse_public("not-a-key", got, err, sizeof(err)), ITR_ERR_IO);
    assert_non_null(strstr(err, "not-a-key"));
    assert_int_equal(itr_key_parse_public("", got, err, sizeof(err)), ITR_ERR_INVALID);
    assert_int_equal(
        itr_key_parse_public("0000000000000000000000000000000000000000000000000000000000000000",
                             got, err, sizeof(err)),
        ITR_ERR_INVALID);
    /* A key file with lax permissions is refused here too. */
    chmod(path, 0640);
    assert_int_equal(itr_key_parse_public(path, got, err, sizeof(err)), ITR_ERR_INVALID);
    assert_non_null(strstr(err, "chmod 600"));
}

static void test_ct_equal_wipe(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    memset(a, 7, sizeof(a));
    memcpy(b, a, sizeof(b));
    assert_int_equal(itr_ct_equal(a, b, 32), 1);
    b[31] ^= 1;
    assert_int_equal(itr_ct_equal(a, b, 32), 0);
    assert_int_equal(itr_ct_equal(a, b, 31), 1);
    assert_int_equal(itr_ct_equal(a, b, 0), 1);
    itr_wipe(a, sizeof(a));
    assert_true(sodium_is_zero(a, sizeof(a)));
}

static void test_strerror(void **state)
{
    (void)state;
    const char *seen[13];
    for (int e = 0; e >= -12; e--) {
        const char *s = itr_strerror(e);
        assert_non_null(s);
        assert_true(strlen(s) > 3);
        assert_string_not_equal(s, "unknown error");
        for (int j = 0; j < -e; j++)
            assert_string_not_equal(s, seen[j]);
        seen[-e] = s;
    }
    assert_string_equal(itr_strerror(-13), "unknown error");
    assert_string_equal(itr_strerror(5), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_hex_matches_libsodium),
        cmocka_unit_test(test_keyfile_create_load),
        cmocka_unit_test(test_keyfile_permissions_refused),
        cmocka_unit_test(test_keyfile_content),
        cmocka_unit_test(test_load_or_create),
        cmocka_unit_test(test_parse_public),
        cmocka_unit_test(test_ct_equal_wipe),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
