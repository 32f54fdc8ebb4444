/* test_ratelimit.c: the GCRA token bucket (PROTOCOL.md §9) with scripted time: burst then
 * rate, refill, long idle, unlimited, rounding, and counts over long simulated runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "itr_ratelimit.h"

#define MS 1000000ull
#define S  1000000000ull

struct step {
    uint64_t now;
    int want;
};

static void run_steps(const char *name, uint32_t pps, uint32_t burst, uint64_t t0,
                      const struct step *s, size_t count)
{
    itr_ratelimit rl;
    itr_ratelimit_init(&rl, pps, burst);
    itr_bucket b = {0};
    for (size_t i = 0; i < count; i++) {
        itr_bucket before = b;
        int got = itr_ratelimit_take(&rl, &b, t0 + s[i].now);
        if (got != s[i].want)
            fail_msg("%s step %zu (t=%llu): got %d want %d", name, i, (unsigned long long)s[i].now,
                     got, s[i].want);
        if (!got)
            assert_true(before.tat == b.tat); /* a refusal does not charge */
    }
}

#define RUN(pps, burst, t0, steps) \
    run_steps(#steps, pps, burst, t0, steps, sizeof(steps) / sizeof(steps[0]))

/* 10 pps, burst 3: a token every 100 ms, three at once. */
static const struct step burst_then_rate[] = {
    /*  0 */ {0, 1},
    /*  1 */ {0, 1},
    /*  2 */ {0, 1},
    /*  3 */ {0, 0}, /* burst used up */
    /*  4 */ {50 * MS, 0},
    /*  5 */ {99 * MS, 0},
    /*  6 */ {100 * MS, 1}, /* one token back */
    /*  7 */ {100 * MS, 0},
    /*  8 */ {150 * MS, 0},
    /*  9 */ {200 * MS, 1},
    /* 10 */ {300 * MS, 1},
    /* 11 */ {300 * MS, 0},
    /* 12 */ {550 * MS, 1}, /* 250 ms later: two and a half tokens back */
    /* 13 */ {550 * MS, 1},
    /* 14 */ {550 * MS, 0},
    /* 15 */ {600 * MS, 1},
    /* 16 */ {600 * MS, 0},
    /* 17 */ {10 * S, 1}, /* long idle refills to the burst, not beyond */
    /* 18 */ {10 * S, 1},
    /* 19 */ {10 * S, 1},
    /* 20 */ {10 * S, 0},
};

/* burst 1: strictly one per interval. */
static const struct step single[] = {
    /* 0 */ {0, 1},
    /* 1 */ {1, 0},
    /* 2 */ {(S / 10) - 1, 0},
    /* 3 */ {S / 10, 1},
    /* 4 */ {S / 10, 0},
    /* 5 */ {2 * S / 10, 1},
};

static void test_tables(void **state)
{
    (void)state;
    RUN(10, 3, 0, burst_then_rate);
    /* The same at a large monotonic clock value: a fresh bucket (tat 0) is full. */
    RUN(10, 3, 123456789 * S, burst_then_rate);
    RUN(10, 1, 0, single);
    /* burst 0 behaves as burst 1. */
    RUN(10, 0, 5 * S, single);
}

static void test_unlimited(void **state)
{
    (void)state;
    itr_ratelimit rl;
    itr_ratelimit_init(&rl, 0, 500);
    assert_true(rl.unlimited);
    itr_bucket b = {0};
    for (unsigned i = 0; i < 100000; i++)
        assert_int_equal(itr_ratelimit_take(&rl, &b, 42), 1);
    assert_true(b.tat == 0);
}

/* Count what passes in a simulated flood: burst + pps * seconds, to within one packet. */
static void test_sustained_counts(void **state)
{
    (void)state;
    static const struct {
        uint32_t pps, burst;
        uint64_t gap_ns, duration_ns;
    } cases[] = {
        /* 0 */ {10000, 500, 10000, 10 * S}, /* defaults, flood at 100k pps for 10 s */
        /* 1 */ {1000, 1, 500000, 4 * S},    /* 2,000 pps offered to a 1,000 pps limit */
        /* 2 */ {3, 2, 1 * MS, 30 * S},      /* interval not a whole number of ns */
        /* 3 */ {100, 50, 100, 2 * S},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        itr_ratelimit rl;
        itr_ratelimit_init(&rl, cases[i].pps, cases[i].burst);
        itr_bucket b = {0};
        const uint64_t t0 = 7 * S;
        uint64_t allowed = 0;
        for (uint64_t t = 0; t < cases[i].duration_ns; t += cases[i].gap_ns)
            allowed += (uint64_t)itr_ratelimit_take(&rl, &b, t0 + t);
        /* Rounding the interval up may cost a token over the run, never add one. */
        uint64_t ideal = cases[i].burst + cases[i].pps * (cases[i].duration_ns / S);
        if (allowed > ideal || allowed + 1 < ideal)
            fail_msg("case %zu: %llu allowed, ideal %llu", i, (unsigned long long)allowed,
                     (unsigned long long)ideal);
    }
}

/* Traffic within the rate is never refused, however long it goes on. */
static void test_within_rate(void **state)
{
    (void)state;
    itr_ratelimit rl;
    itr_ratelimit_init(&rl, 1000, 1);
    itr_bucket b = {0};
    for (uint64_t i = 0; i < 100000; i++)
        assert_int_equal(itr_ratelimit_take(&rl, &b, 3 * S + i * MS), 1);
}

static void test_extremes(void **state)
{
    (void)state;
    itr_ratelimit rl;
    /* The largest rate: an interval of one nanosecond. */
    itr_ratelimit_init(&rl, UINT32_MAX, UINT32_MAX);
    assert_true(rl.interval_ns == 1);
    assert_true(rl.tolerance_ns == (uint64_t)UINT32_MAX - 1);
    itr_bucket b = {0};
    for (unsigned i = 0; i < 1000; i++)
        assert_int_equal(itr_ratelimit_take(&rl, &b, 0), 1);
    /* The slowest: one per second, a huge burst, no overflow in the tolerance. */
    itr_ratelimit_init(&rl, 1, UINT32_MAX);
    assert_true(rl.interval_ns == S);
    assert_true(rl.tolerance_ns == ((uint64_t)UINT32_MAX - 1) * S);
    b.tat = 0;
    for (unsigned i = 0; i < 1000; i++)
        assert_int_equal(itr_ratelimit_take(&rl, &b, UINT64_MAX / 2), 1);
    /* Rounding direction: 3 pps gives 333,333,334 ns, never faster than asked. */
    itr_ratelimit_init(&rl, 3, 1);
    assert_true(rl.interval_ns == 333333334ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),           cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_sustained_counts), cmocka_unit_test(test_within_rate),
        cmocka_unit_test(test_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
