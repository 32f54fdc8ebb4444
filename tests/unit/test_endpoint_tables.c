/* test_endpoint_tables.c: the endpoint's internal containers checked against simple reference
 * models under long seeded random operation sequences: the open-addressing conn table
 * (multimap, growth, backward-shift deletion, clustered keys), the timer heap (arm, move,
 * remove, pop order), the slot pool (exhaustion, reuse), and the RTO estimator's bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <intentra/error.h>

#include "itr_conntab.h"
#include "itr_pool.h"
#include "itr_reliable.h"
#include "itr_timerq.h"

static uint64_t rng_state = 0x12345678;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- conn table ---- */

#define NVALS 4096

typedef struct model_entry {
    uint64_t key;
    int present;
} model_entry;

static void check_table(const itr_ctab *t, const model_entry *m, char *vals)
{
    uint32_t count = 0;
    for (int v = 0; v < NVALS; v++) {
        if (!m[v].present)
            continue;
        count++;
        /* The value is found among those under its key, exactly once. */
        uint32_t pos = 0, seen = 0;
        void *x;
        while ((x = itr_ctab_next(t, m[v].key, &pos)) != NULL)
            if (x == &vals[v])
                seen++;
        assert_int_equal(seen, 1);
    }
    assert_int_equal(t->count, count);
}

static void test_conntab_model(void **state)
{
    itr_ctab t;
    static model_entry m[NVALS];
    static char vals[NVALS];
    (void)state;
    memset(m, 0, sizeof(m));
    /* Start tiny so it grows many times. */
    assert_int_equal(itr_ctab_init(&t, 1), ITR_OK);
    size_t initial = itr_ctab_bytes(&t);
    for (int step = 0; step < 200000; step++) {
        int v = (int)(rnd() % NVALS);
        uint64_t r = rnd();
        if (!m[v].present) {
            /* Few distinct keys in some phases: long probe runs, many equal keys. */
            uint64_t key = (step / 20000) % 2 ? (r % 64) : r;
            assert_int_equal(itr_ctab_insert(&t, key, &vals[v]), ITR_OK);
            m[v].key = key;
            m[v].present = 1;
        } else if (r % 3 == 0) {
            void *nv = &vals[v];
            assert_int_equal(itr_ctab_replace(&t, m[v].key, &vals[v], nv), 1);
        } else {
            assert_int_equal(itr_ctab_remove(&t, m[v].key, &vals[v]), 1);
            assert_int_equal(itr_ctab_remove(&t, m[v].key, &vals[v]), 0);
            m[v].present = 0;
        }
        if (step % 5000 == 0)
            check_table(&t, m, vals);
        /* Load stays at most one half. */
        assert_true((uint64_t)t.count * 2 <= (uint64_t)t.mask + 1);
    }
    check_table(&t, m, vals);
    assert_true(itr_ctab_bytes(&t) > initial);
    /* Lookups of absent keys end (the table always has empty buckets). */
    assert_null(itr_ctab_find(&t, 0xdeadbeefcafef00dull));
    itr_ctab_destroy(&t);
    itr_ctab_destroy(&t); /* idempotent */
    assert_null(itr_ctab_find(&t, 1));
    assert_int_equal(itr_ctab_insert(&t, 1, &vals[0]), ITR_ERR_NOMEM);
}

/* Deleting from the middle of a probe run keeps every later entry reachable, including runs
 * that wrap around the end of the table. */
static void test_conntab_wraparound(void **state)
{
    itr_ctab t;
    char vals[8];
    (void)state;
    assert_int_equal(itr_ctab_init(&t, 8), ITR_OK); /* 16 buckets */
    /* Find keys whose home bucket is the last one. */
    uint64_t keys[8];
    int n = 0;
    for (uint64_t k = 1; n < 6; k++) {
        if ((uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32) % 16 == 15)
            keys[n++] = k;
    }
    for (int i = 0; i < 6; i++)
        assert_int_equal(itr_ctab_insert(&t, keys[i], &vals[i]), ITR_OK);
    for (int del = 0; del < 6; del++) {
        assert_int_equal(itr_ctab_remove(&t, keys[del], &vals[del]), 1);
        for (int i = del + 1; i < 6; i++)
            assert_ptr_equal(itr_ctab_find(&t, keys[i]), &vals[i]);
        assert_null(itr_ctab_find(&t, keys[del]));
    }
    assert_int_equal(t.count, 0);
    itr_ctab_destroy(&t);
}

/* ---- timer heap ---- */

#define NTIMERS 2000

static void test_timerq_model(void **state)
{
    itr_timerq q;
    static itr_timed t[NTIMERS];
    static uint64_t model[NTIMERS]; /* UINT64_MAX: not armed */
    (void)state;
    assert_int_equal(itr_timerq_init(&q, NTIMERS), ITR_OK);
    for (int i = 0; i < NTIMERS; i++) {
        itr_timed_init(&t[i], 1);
        model[i] = UINT64_MAX;
    }
    uint64_t now = 0;
    for (int step = 0; step < 300000; step++) {
        int i = (int)(rnd() % NTIMERS);
        uint64_t r = rnd() % 10;
        if (r < 4) {
            uint64_t d = now + rnd() % 100000;
            assert_int_equal(itr_timerq_set(&q, &t[i], d), ITR_OK);
            model[i] = d;
        } else if (r < 6) {
            uint64_t d = now + rnd() % 100000;
            assert_int_equal(itr_timerq_lower(&q, &t[i], d), ITR_OK);
            if (d < model[i])
                model[i] = d;
        } else if (r < 7) {
            itr_timerq_remove(&q, &t[i]);
            model[i] = UINT64_MAX;
            assert_false(itr_timed_armed(&t[i]));
        } else {
            /* Time advances: everything due pops, in deadline order. */
            now += rnd() % 2000;
            uint64_t last = 0;
            itr_timed *x;
            while ((x = itr_timerq_pop_due(&q, now)) != NULL) {
                int k = (int)(x - t);
                assert_true(model[k] <= now);
                assert_true(model[k] >= last);
                last = model[k];
                model[k] = UINT64_MAX;
            }
            for (int k = 0; k < NTIMERS; k++)
                if (model[k] != UINT64_MAX)
                    assert_true(model[k] > now);
        }
        /* The top is the model's minimum. */
        if (step % 1000 == 0) {
            uint64_t min = UINT64_MAX;
            uint32_t armed = 0;
            for (int k = 0; k < NTIMERS; k++) {
                if (model[k] < min)
                    min = model[k];
                armed += model[k] != UINT64_MAX;
            }
            assert_true(itr_timerq_next(&q) == min);
            assert_int_equal(q.n, armed);
        }
    }
    /* Full heap refuses a new entry. */
    itr_timerq small;
    itr_timed a, b;
    itr_timed_init(&a, 1);
    itr_timed_init(&b, 1);
    assert_int_equal(itr_timerq_init(&small, 1), ITR_OK);
    assert_int_equal(itr_timerq_set(&small, &a, 5), ITR_OK);
    assert_int_equal(itr_timerq_set(&small, &b, 6), ITR_ERR_LIMIT);
    assert_int_equal(itr_timerq_set(&small, &a, 7), ITR_OK); /* moving is fine */
    itr_timerq_destroy(&small);
    assert_false(itr_timed_armed(&a));
    itr_timerq_destroy(&q);
}

/* ---- pool ---- */

static void test_pool(void **state)
{
    itr_pool p;
    (void)state;
    assert_int_equal(itr_pool_init(&p, 100, 64), ITR_OK);
    uint32_t got[100];
    for (int i = 0; i < 100; i++) {
        got[i] = itr_pool_get(&p);
        assert_true(got[i] < 100);
        memset(itr_pool_slot(&p, got[i]), i, 64);
    }
    assert_int_equal(itr_pool_get(&p), ITR_POOL_NONE);
    assert_int_equal(itr_pool_free_count(&p), 0);
    for (int i = 0; i < 100; i++)
        for (int j = 0; j < 64; j++)
            assert_int_equal(itr_pool_slot(&p, got[i])[j], i);
    for (int i = 0; i < 100; i += 2)
        itr_pool_put(&p, got[i]);
    assert_int_equal(itr_pool_free_count(&p), 50);
    for (int i = 0; i < 50; i++)
        assert_true(itr_pool_get(&p) != ITR_POOL_NONE);
    assert_int_equal(itr_pool_get(&p), ITR_POOL_NONE);
    assert_int_equal(itr_pool_bytes(&p), 100 * (64 + 4));
    itr_pool_destroy(&p);
    itr_pool_destroy(&p);
    /* An empty pool is valid and always empty. */
    assert_int_equal(itr_pool_init(&p, 0, 64), ITR_OK);
    assert_int_equal(itr_pool_get(&p), ITR_POOL_NONE);
    itr_pool_destroy(&p);
}

/* ---- RTO estimator and serial numbers ---- */

static void test_rtt(void **state)
{
    itr_rtt r;
    const uint64_t ms = 1000000;
    (void)state;
    itr_rtt_init(&r, 200 * ms);
    assert_true(r.rto == 200 * ms && r.srtt == 0);
    itr_rtt_sample(&r, 10 * ms, 20 * ms, 2000 * ms);
    assert_true(r.srtt == 10 * ms && r.rttvar == 5 * ms);
    assert_true(r.rto == 30 * ms); /* 10 + 4 * 5 */
    for (int i = 0; i < 100; i++)
        itr_rtt_sample(&r, 1 * ms, 20 * ms, 2000 * ms);
    assert_true(r.rto == 20 * ms); /* clamped up to rto_min */
    itr_rtt_sample(&r, 10000 * ms, 20 * ms, 2000 * ms);
    assert_true(r.rto == 2000 * ms); /* clamped down to rto_max */
    itr_rtt_sample(&r, 0, 20 * ms, 2000 * ms);
    assert_true(r.srtt > 0);
    itr_rtt_init(&r, 100 * ms);
    assert_true(itr_rtt_backoff(&r, 0, 2000 * ms) == 100 * ms);
    assert_true(itr_rtt_backoff(&r, 3, 2000 * ms) == 800 * ms);
    assert_true(itr_rtt_backoff(&r, 30, 2000 * ms) == 2000 * ms);
    /* Serial-number comparison across the wrap. */
    assert_true(itr_seq_lt(0xfffffff0u, 5));
    assert_false(itr_seq_lt(5, 0xfffffff0u));
    assert_true(itr_seq_le(7, 7));
    uint8_t map[32] = {0};
    itr_bit_set(map, 0xffffffffu);
    assert_true(itr_bit_test(map, 255));
    itr_bit_clear(map, 255);
    assert_false(itr_bit_test(map, 0xffffffffu));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conntab_model), cmocka_unit_test(test_conntab_wraparound),
        cmocka_unit_test(test_timerq_model),  cmocka_unit_test(test_pool),
        cmocka_unit_test(test_rtt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
