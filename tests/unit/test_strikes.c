/* test_strikes.c: "limit strikes within window" (PROTOCOL.md §9) with scripted time:
 * threshold, sliding expiry, the window edge, ring overflow, limits above the ring, and the
 * millisecond counter wrapping at 2^32.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "itr_strikes.h"

#define MS 1000000ull
#define S  1000000000ull

struct step {
    uint64_t now;
    int want;
};

static void run_steps(const char *name, uint32_t limit, uint64_t window, uint64_t t0,
                      const struct step *s, size_t count)
{
    itr_strikes st = {0};
    for (size_t i = 0; i < count; i++) {
        int got = itr_strikes_add(&st, limit, window, t0 + s[i].now);
        if (got != s[i].want)
            fail_msg("%s step %zu (t=%llu ns): got %d want %d", name, i,
                     (unsigned long long)s[i].now, got, s[i].want);
        assert_true(st.n <= ITR_STRIKES_MAX);
    }
}

#define RUN(limit, window, t0, steps) \
    run_steps(#steps, limit, window, t0, steps, sizeof(steps) / sizeof(steps[0]))

/* limit 3 within 5 s. */
static const struct step three_in_five[] = {
    /* 0 */ {0, 0},
    /* 1 */ {1 * S, 0},
    /* 2 */ {2 * S, 1},  /* third within 5 s */
    /* 3 */ {3 * S, 1},  /* still: 0, 1, 2, 3 all within */
    /* 4 */ {5 * S, 1},  /* 0 left the window (age 5 s), 1, 2, 3, 5 remain */
    /* 5 */ {20 * S, 0}, /* all old ones gone */
    /* 6 */ {23 * S, 0},
    /* 7 */ {26 * S, 0}, /* 20 left: 23 and 26 only */
    /* 8 */ {27 * S, 1},
};

/* The window edge: a strike exactly window_ns old no longer counts; 1 ms younger does. */
static const struct step edge[] = {
    /* 0 */ {0, 0},
    /* 1 */ {1 * S, 0},
    /* 2 */ {5 * S, 0},           /* 0 is exactly 5 s old: gone; 1 s and 5 s remain */
    /* 3 */ {6 * S - 1 * MS, 1},  /* 1 s is 4.999 s old: still counts */
    /* 4 */ {11 * S - 1 * MS, 0}, /* 5.999 s is exactly 5 s old: only this one */
};

/* Defaults: 10 in 5 s. Nine spaced out never close; ten quickly do. */
static const struct step defaults[] = {
    /*  0 */ {0 * S, 0},  {1 * S, 0},  {2 * S, 0},  {3 * S, 0},  {4 * S, 0},
    /*  5 */ {5 * S, 0},  {6 * S, 0},  {7 * S, 0},  {8 * S, 0},  {9 * S, 0},
    /* 10 */ {10 * S, 0}, {10 * S, 0}, {10 * S, 0}, {10 * S, 0}, {10 * S, 0},
    /* 15 */ {10 * S, 1}, /* 6, 7, 8, 9 and six at 10 s */
};

static void test_tables(void **state)
{
    (void)state;
    RUN(3, 5 * S, 0, three_in_five);
    RUN(3, 5 * S, 1000 * S, three_in_five);
    RUN(3, 5 * S, 0, edge);
    RUN(10, 5 * S, 77 * S, defaults);
}

/* The ring keeps the newest 16; a limit of 16 fires at the 16th, higher limits clamp. */
static void test_ring_full(void **state)
{
    (void)state;
    for (uint32_t limit = 15; limit <= 40; limit++) {
        itr_strikes st = {0};
        uint32_t eff = limit > ITR_STRIKES_MAX ? ITR_STRIKES_MAX : limit;
        for (uint32_t i = 1; i <= 40; i++) {
            int got = itr_strikes_add(&st, limit, 5 * S, 1 * S + i * MS);
            assert_int_equal(got, i >= eff);
            assert_true(st.n <= ITR_STRIKES_MAX);
        }
    }
    /* After overflow, expiry still works from the oldest kept one. */
    itr_strikes st = {0};
    for (uint32_t i = 0; i < 40; i++)
        itr_strikes_add(&st, 16, 5 * S, i * 100 * MS); /* 0 .. 3.9 s */
    assert_int_equal(st.n, 16);
    /* At 6 s the 16 kept (2.4 s .. 3.9 s) are all within 5 s: limit 16 fires. */
    assert_int_equal(itr_strikes_add(&st, 16, 5 * S, 6 * S), 1);
    /* At 9 s: those up to 4 s are gone, only the 6 s one and this one remain. */
    assert_int_equal(itr_strikes_add(&st, 3, 5 * S, 9 * S), 0);
    assert_int_equal(st.n, 2);
}

static void test_degenerate(void **state)
{
    (void)state;
    itr_strikes st = {0};
    /* limit 0 disables closing, but strikes are still recorded. */
    for (unsigned i = 0; i < 50; i++)
        assert_int_equal(itr_strikes_add(&st, 0, 5 * S, 1 * S), 0);
    assert_int_equal(st.n, ITR_STRIKES_MAX);
    /* limit 1: every strike closes. */
    itr_strikes one = {0};
    assert_int_equal(itr_strikes_add(&one, 1, 5 * S, 0), 1);
    /* window 0: only the strike being recorded counts. */
    itr_strikes w0 = {0};
    assert_int_equal(itr_strikes_add(&w0, 2, 0, 1 * S), 0);
    assert_int_equal(itr_strikes_add(&w0, 2, 0, 1 * S), 0);
    assert_int_equal(itr_strikes_add(&w0, 1, 0, 1 * S), 1);
    /* A sub-millisecond window rounds up to 1 ms: same-millisecond strikes count. */
    itr_strikes sub = {0};
    assert_int_equal(itr_strikes_add(&sub, 2, 1, 1 * S), 0);
    assert_int_equal(itr_strikes_add(&sub, 2, 1, 1 * S + 10), 1);
    assert_int_equal(itr_strikes_add(&sub, 2, 1, 1 * S + 1 * MS), 0);
}

/* Millisecond times are stored modulo 2^32: around the wrap (49.7 days of uptime), ages stay
 * correct. */
static void test_wrap(void **state)
{
    (void)state;
    const uint64_t wrap = ((uint64_t)1 << 32) * MS; /* ns at which ms wraps to 0 */
    const struct step around_wrap[] = {
        /* 0 */ {0, 0},
        /* 1 */ {1 * S, 0},
        /* 2 */ {3 * S, 1}, /* crosses the wrap at 2 s */
        /* 3 */ {9 * S, 0}, /* the pre-wrap ones expired correctly */
        /* 4 */ {10 * S, 0},
        /* 5 */ {11 * S, 1},
    };
    RUN(3, 5 * S, wrap - 2 * S, around_wrap);
    /* Several wraps later the clock still only matters modulo 2^32 ms. */
    RUN(3, 5 * S, 7 * wrap - 500 * MS, around_wrap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_ring_full),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
