/* test_replay.c: the 1,024-packet replay window (PROTOCOL.md §6.1): numbered case tables in
 * the style of WireGuard's counter selftest (duplicates, the 1023/1024 edge, far jumps that
 * must clear old blocks, block wrap-around, first packet 0), then a comparison against a
 * naive model over long pseudo-random sequences.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "itr_replay.h"

#define W ITR_REPLAY_WINDOW

struct step {
    uint64_t n;
    int want; /* itr_replay_update result */
};

static void run_steps(const char *name, const struct step *s, size_t count)
{
    itr_replay r;
    itr_replay_init(&r);
    for (size_t i = 0; i < count; i++) {
        /* The pre-check predicts the update and changes nothing. */
        itr_replay before = r;
        int pre = itr_replay_check(&r, s[i].n);
        assert_memory_equal(&before, &r, sizeof(r));
        int got = itr_replay_update(&r, s[i].n);
        if (got != s[i].want || pre != s[i].want)
            fail_msg("%s step %zu (n=%llu): check %d update %d, want %d", name, i,
                     (unsigned long long)s[i].n, pre, got, s[i].want);
        if (!got)
            assert_memory_equal(&before, &r, sizeof(r)); /* a reject changes nothing */
    }
}

#define RUN(steps) run_steps(#steps, steps, sizeof(steps) / sizeof(steps[0]))

static void test_basic(void **state)
{
    (void)state;
    static const struct step first_zero[] = {
        /* 0 */ {0, 1},
        /* 1 */ {0, 0},
        /* 2 */ {1, 1},
        /* 3 */ {1, 0},
        /* 4 */ {0, 0},
        /* 5 */ {3, 1},
        /* 6 */ {2, 1},
        /* 7 */ {2, 0},
        /* 8 */ {3, 0},
    };
    RUN(first_zero);

    /* A first packet above zero leaves everything below it acceptable once. */
    static const struct step first_high[] = {
        /* 0 */ {5, 1},
        /* 1 */ {0, 1},
        /* 2 */ {4, 1},
        /* 3 */ {4, 0},
        /* 4 */ {5, 0},
        /* 5 */ {6, 1},
    };
    RUN(first_high);
}

static void test_window_edge(void **state)
{
    (void)state;
    static const struct step edge[] = {
        /* 0 */ {2000, 1},
        /* 1 */ {2000 - (W - 1), 1}, /* 1023 behind: the oldest acceptable */
        /* 2 */ {2000 - W, 0},       /* 1024 behind: too old */
        /* 3 */ {2000 - (W - 1), 0}, /* and the edge one only once */
        /* 4 */ {2000 - W - 1, 0},
        /* 5 */ {0, 0},
        /* 6 */ {2001, 1},     /* the window moves by one ... */
        /* 7 */ {2001 - W, 0}, /* ... so 977 is now 1024 behind */
        /* 8 */ {2001 - W + 1, 1},
        /* 9 */ {1999, 1},
    };
    RUN(edge);

    /* The same edge near the start: highest 1023 keeps 0, highest 1024 drops it. */
    static const struct step start[] = {
        /* 0 */ {W - 1, 1},
        /* 1 */ {0, 1},
        /* 2 */ {W, 1},
        /* 3 */ {1, 1},
        /* 4 */ {0, 0},
    };
    RUN(start);
    static const struct step start2[] = {
        /* 0 */ {W, 1},
        /* 1 */ {0, 0},
        /* 2 */ {1, 1},
    };
    RUN(start2);
}

static void test_far_jump(void **state)
{
    (void)state;
    static const struct step jump[] = {
        /*  0 */ {0, 1},
        /*  1 */ {1, 1},
        /*  2 */ {2, 1},
        /*  3 */ {100000, 1}, /* far ahead: slides and clears everything */
        /*  4 */ {2, 0},      /* too old now */
        /*  5 */ {100000 - (W - 1), 1},
        /*  6 */ {100000 - W, 0},
        /*  7 */ {99999, 1},
        /*  8 */ {100000, 0},
        /*  9 */ {(uint64_t)1 << 32, 1}, /* beyond 32 bits works too */
        /* 10 */ {((uint64_t)1 << 32) - 1, 1},
        /* 11 */ {((uint64_t)1 << 32) - W, 0},
        /* 12 */ {((uint64_t)1 << 32) - (W - 1), 1},
    };
    RUN(jump);
}

/* A jump that lands in a block aliasing a used one (17 blocks in a ring) must clear it:
 * counter 2 sits in block 0; 2 + 17*64 maps to the same ring slot. */
static void test_block_wrap(void **state)
{
    (void)state;
    const uint64_t ring = (W / 64 + 1) * 64; /* 1088 */
    const struct step wrap[] = {
        /* 0 */ {2, 1},
        /* 1 */ {7, 1},
        /* 2 */ {ring + 5, 1}, /* same ring slot as 5: stale bits 2 and 7 must be gone */
        /* 3 */ {ring + 2, 1},
        /* 4 */ {ring + 7, 1},
        /* 5 */ {ring + 7, 0},
        /* 6 */ {ring + 7 - (W - 1), 1}, /* oldest acceptable behind ring + 7 */
        /* 7 */ {7, 0},
        /* 8 */ {2 * ring + 2, 1}, /* twice round the ring */
        /* 9 */ {2 * ring + 7, 1},
        /* 10 */ {2 * ring + 5, 1},
        /* 11 */ {ring + 7, 0},
    };
    RUN(wrap);

    /* Single steps across every block boundary of several ring turns. */
    itr_replay r;
    itr_replay_init(&r);
    for (uint64_t n = 0; n < 5 * ring; n++) {
        assert_int_equal(itr_replay_update(&r, n), 1);
        assert_int_equal(itr_replay_update(&r, n), 0);
        if (n >= W) {
            assert_int_equal(itr_replay_check(&r, n - W), 0);
            assert_int_equal(itr_replay_check(&r, n - (W - 1)), 0); /* seen */
        }
    }
    assert_int_equal(itr_replay_check(&r, 5 * ring), 1);
}

/* A reverse-order burst: the whole window filled from the top down, then nothing repeats. */
static void test_reverse_fill(void **state)
{
    (void)state;
    itr_replay r;
    itr_replay_init(&r);
    const uint64_t top = 10 * W + 17;
    assert_int_equal(itr_replay_update(&r, top), 1);
    for (uint64_t k = 1; k < W; k++)
        assert_int_equal(itr_replay_update(&r, top - k), 1);
    assert_int_equal(itr_replay_update(&r, top - W), 0);
    for (uint64_t k = 0; k < W; k++)
        assert_int_equal(itr_replay_check(&r, top - k), 0);
    assert_int_equal(itr_replay_check(&r, top + 1), 1);
}

static void test_limits(void **state)
{
    (void)state;
    itr_replay r;
    itr_replay_init(&r);
    assert_int_equal(itr_replay_check(&r, UINT64_MAX), 0);
    assert_int_equal(itr_replay_update(&r, UINT64_MAX), 0);
    assert_int_equal(itr_replay_update(&r, UINT64_MAX - 1), 1);
    assert_int_equal(itr_replay_update(&r, UINT64_MAX - 1), 0);
    assert_int_equal(itr_replay_update(&r, UINT64_MAX - 2), 1);
    assert_int_equal(itr_replay_update(&r, 0), 0);
    assert_int_equal(itr_replay_update(&r, UINT64_MAX), 0);
}

/* ---- model comparison ---- */

#define MODEL_RANGE (1u << 23)

static uint64_t rng_state;
static uint32_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static void test_model(void **state)
{
    (void)state;
    static uint8_t seen[MODEL_RANGE / 8];
    for (uint64_t seed = 1; seed <= 8; seed++) {
        rng_state = seed * 0x9e3779b97f4a7c15ull;
        memset(seen, 0, sizeof(seen));
        int have = 0;
        uint64_t highest = 0;
        itr_replay r;
        itr_replay_init(&r);
        uint64_t cursor = 0;
        unsigned i;
        for (i = 0; i < 200000; i++) {
            /* Mostly near the front (reordering, duplicates), sometimes old, sometimes a jump. */
            uint32_t pick = rng() % 100;
            uint64_t n;
            if (pick < 70)
                n = cursor + rng() % 8;
            else if (pick < 99)
                n = cursor > 1500 ? cursor - rng() % 1500 : rng() % (cursor + 1);
            else
                n = cursor + rng() % 3000;
            if (n >= MODEL_RANGE)
                break;
            if (n > cursor)
                cursor = n;
            int want = !(seen[n / 8] >> (n % 8) & 1) && (!have || n + W > highest);
            int pre = itr_replay_check(&r, n);
            int got = itr_replay_update(&r, n);
            if (pre != want || got != want)
                fail_msg("seed %llu step %u n=%llu highest=%llu: check %d update %d want %d",
                         (unsigned long long)seed, i, (unsigned long long)n,
                         (unsigned long long)highest, pre, got, want);
            if (want) {
                seen[n / 8] |= (uint8_t)(1u << (n % 8));
                if (!have || n > highest)
                    highest = n;
                have = 1;
            }
        }
        assert_int_equal(i, 200000); /* the range was large enough for every step */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),        cmocka_unit_test(test_window_edge),
        cmocka_unit_test(test_far_jump),     cmocka_unit_test(test_block_wrap),
        cmocka_unit_test(test_reverse_fill), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
