/* test_envelope.c: the DATA envelope of PROTOCOL.md §6.2 and topic validation: bounds,
 * charset, empty body, 128/129-byte topics, capacity checks on write, and that parsing never
 * reads past the plaintext (each case runs on an exact-size heap copy under ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <intentra/endpoint.h>

#include "itr_envelope.h"

#define BAD (-(1 + ITR_DROP_BAD_ENVELOPE))

static void test_topic_valid(void **state)
{
    (void)state;
    static const struct {
        const char *topic;
        int want;
    } cases[] = {
        /*  0 */ {"a", 1},
        /*  1 */ {"robots/7/pose", 1},
        /*  2 */ {"A-Z_a.z:0/9", 1},
        /*  3 */ {"", 0},
        /*  4 */ {"with space", 0},
        /*  5 */ {"tab\t", 0},
        /*  6 */ {"star*", 0},
        /*  7 */ {"plus+", 0},
        /*  8 */ {"percent%", 0},
        /*  9 */ {"back\\slash", 0},
        /* 10 */ {"\xc3\xa9t\xc3\xa9", 0}, /* UTF-8 is not in the charset */
        /* 11 */ {"quote\"", 0},
        /* 12 */ {"at@", 0},
        /* 13 */ {"...", 1},
        /* 14 */ {"///", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = itr_topic_valid(cases[i].topic, strlen(cases[i].topic));
        if (got != cases[i].want)
            fail_msg("case %zu (\"%s\"): got %d", i, cases[i].topic, got);
    }
    /* Every byte value alone. */
    for (unsigned c = 0; c < 256; c++) {
        char t = (char)c;
        int want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '.' || c == '_' || c == ':' || c == '/' || c == '-';
        assert_int_equal(itr_topic_valid(&t, 1), want);
    }
    /* An embedded NUL is just another invalid byte, not an end. */
    assert_int_equal(itr_topic_valid("ab\0cd", 5), 0);
    assert_int_equal(itr_topic_valid(NULL, 0), 0);
    assert_int_equal(itr_topic_valid(NULL, 3), 0);
    /* Length 128 is the maximum. */
    char t[ITR_MAX_TOPIC + 1];
    memset(t, 'x', sizeof(t));
    assert_int_equal(itr_topic_valid(t, ITR_MAX_TOPIC), 1);
    assert_int_equal(itr_topic_valid(t, ITR_MAX_TOPIC + 1), 0);
}

/* Parse an exact-size heap copy, so ASan catches any read past len. */
static int parse_copy(const uint8_t *src, size_t len, const char **topic, size_t *tlen,
                      const uint8_t **body, size_t *blen, uint8_t **copy_out)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, src, len);
    *copy_out = copy;
    return itr_envelope_parse(copy, len, topic, tlen, body, blen);
}

static void test_parse_table(void **state)
{
    (void)state;
    static const struct {
        const char *bytes; /* the plaintext after mseq */
        size_t len;
        int want;
        size_t topic_len, body_len;
    } cases[] = {
        /* octal escapes: a hex escape would swallow the hex-digit letters after it */
        /*  0 */ {"", 0, BAD, 0, 0},       /* empty */
        /*  1 */ {"\0", 1, BAD, 0, 0},     /* topic_len 0 */
        /*  2 */ {"\0xyz", 4, BAD, 0, 0},  /* topic_len 0 with bytes after */
        /*  3 */ {"\1", 1, BAD, 0, 0},     /* topic longer than plaintext */
        /*  4 */ {"\5abcd", 5, BAD, 0, 0}, /* one short */
        /*  5 */ {"\1a", 2, 0, 1, 0},      /* shortest valid: empty body */
        /*  6 */ {"\4t/p1body", 9, 0, 4, 4},
        /*  7 */ {"\3a bx", 5, BAD, 0, 0},    /* space in topic */
        /*  8 */ {"\2a\0", 3, BAD, 0, 0},     /* NUL in topic */
        /*  9 */ {"\1a\0\377\1", 5, 0, 1, 3}, /* body is opaque */
        /* 10 */ {"\377a", 2, BAD, 0, 0},     /* topic_len 255 > 128 */
        /* 11 */ {"\201a", 2, BAD, 0, 0},     /* topic_len 129 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *topic = NULL;
        const uint8_t *body = NULL;
        size_t tlen = 999, blen = 999;
        uint8_t *copy;
        int rc = parse_copy((const uint8_t *)cases[i].bytes, cases[i].len, &topic, &tlen, &body,
                            &blen, &copy);
        if (rc != cases[i].want)
            fail_msg("case %zu: rc %d want %d", i, rc, cases[i].want);
        if (rc == 0) {
            assert_int_equal(tlen, cases[i].topic_len);
            assert_int_equal(blen, cases[i].body_len);
            assert_ptr_equal(topic, (const char *)copy + 1);
            assert_ptr_equal(body, copy + 1 + tlen);
        } else {
            /* Outputs untouched on error. */
            assert_null(topic);
            assert_null(body);
            assert_int_equal(tlen, 999);
            assert_int_equal(blen, 999);
        }
        free(copy);
    }
}

/* Topics of 128 and 129 bytes, with and without a body. */
static void test_topic_128_129(void **state)
{
    (void)state;
    uint8_t buf[1 + 129 + 10];
    for (size_t tlen = 127; tlen <= 129; tlen++) {
        for (size_t blen = 0; blen <= 10; blen += 10) {
            buf[0] = (uint8_t)tlen;
            memset(buf + 1, 'q', tlen);
            memset(buf + 1 + tlen, 0xee, blen);
            const char *topic;
            const uint8_t *body;
            size_t tl, bl;
            uint8_t *copy;
            int rc = parse_copy(buf, 1 + tlen + blen, &topic, &tl, &body, &bl, &copy);
            free(copy);
            if (tlen <= ITR_MAX_TOPIC) {
                assert_int_equal(rc, 0);
                assert_int_equal(tl, tlen);
                assert_int_equal(bl, blen);
            } else {
                assert_int_equal(rc, BAD);
            }
        }
    }
    /* Writing a 129-byte topic is refused, 128 accepted. */
    char topic[129];
    memset(topic, 'z', sizeof(topic));
    uint8_t out[300];
    assert_int_equal(itr_envelope_write(out, sizeof(out), topic, 128, "b", 1), 1 + 128 + 1);
    assert_int_equal(out[0], 128);
    assert_int_equal(itr_envelope_write(out, sizeof(out), topic, 129, "b", 1), 0);
}

static void test_write(void **state)
{
    (void)state;
    uint8_t out[64];
    /* Round trip. */
    size_t n = itr_envelope_write(out, sizeof(out), "telemetry/imu", 13, "\x01\x02\x03", 3);
    assert_int_equal(n, itr_envelope_size(13, 3));
    const char *topic;
    const uint8_t *body;
    size_t tl, bl;
    assert_int_equal(itr_envelope_parse(out, n, &topic, &tl, &body, &bl), 0);
    assert_int_equal(tl, 13);
    assert_memory_equal(topic, "telemetry/imu", 13);
    assert_int_equal(bl, 3);
    assert_memory_equal(body, "\x01\x02\x03", 3);

    /* Empty body, NULL allowed. */
    n = itr_envelope_write(out, sizeof(out), "t", 1, NULL, 0);
    assert_int_equal(n, 2);
    assert_int_equal(itr_envelope_parse(out, n, &topic, &tl, &body, &bl), 0);
    assert_int_equal(bl, 0);

    /* Capacity: exact fit, one short, and nothing written when refused. */
    static const struct {
        size_t cap, tlen, blen, want;
    } cases[] = {
        /* 0 */ {6, 3, 2, 6},
        /* 1 */ {5, 3, 2, 0},
        /* 2 */ {0, 1, 0, 0},
        /* 3 */ {2, 1, 0, 2},
        /* 4 */ {1, 1, 0, 0},
        /* 5 */ {64, 3, SIZE_MAX, 0}, /* no overflow in 1 + topic + body */
        /* 6 */ {64, 3, SIZE_MAX - 3, 0},
        /* 7 */ {64, 0, 2, 0}, /* empty topic */
    };
    static const uint8_t zeros[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 0, sizeof(out));
        size_t got =
            itr_envelope_write(out, cases[i].cap, "abc", cases[i].tlen, zeros, cases[i].blen);
        if (got != cases[i].want)
            fail_msg("case %zu: wrote %zu, want %zu", i, got, cases[i].want);
        if (got == 0)
            assert_memory_equal(out, zeros, sizeof(out));
    }
    /* An invalid topic byte is refused. */
    assert_int_equal(itr_envelope_write(out, sizeof(out), "a b", 3, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_valid),
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_topic_128_129),
        cmocka_unit_test(test_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
