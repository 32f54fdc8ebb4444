/* test_config_nomem.c: every allocation of a config load (ours and cJSON's), of a shard table
 * build, a router compile and a rate limiter fails in turn: each must report ITR_ERR_NOMEM
 * and leak nothing (LeakSanitizer checks under INTENTRA_SANITIZE). Our allocations are
 * intercepted with the linker's --wrap (tests/unit/gateway_config.cmake), cJSON's with its
 * hooks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <intentra/error.h>

#include "config.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static long countdown = -1; /* allocations left before one fails; -1: never fail */
static long allocations;

static int should_fail(void)
{
    allocations++;
    if (countdown < 0)
        return 0;
    return countdown-- == 0;
}

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    return should_fail() ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : __real_realloc(p, n);
}

static void *hook_malloc(size_t n)
{
    return __wrap_malloc(n);
}

static const char config_text[] =
    "{\"_comment\": \"${TNOMEM_UNSET:-x}$$\", \"listen\": [\"127.0.0.1:0\", \"[::1]:0\"],"
    " \"log\": {\"format\": \"json\"}, \"transport\": {\"max_peers\": 10},"
    " \"unknown_peers\": \"admit\", \"default_shard\": \"d\","
    " \"shards\": {\"d\": {}, \"a\": {\"peers\": "
    "[\"3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\"],"
    "   \"labels\": {\"region\": \"eu\"}, \"attributes\": {\"kafka_topic\": \"t\", "
    "\"redis_prefix\": \"r\", \"webhook_endpoint\": \"https://h\"}}},"
    " \"sinks\": {\"n\": {\"type\": \"null\"}, \"m\": {\"type\": \"null\"}},"
    " \"routes\": [{\"name\": \"x\", \"match\": {\"shard\": \"a\", \"topic\": \"t1\"},"
    "   \"sinks\": [{\"sink\": \"n\", \"destination\": \"{shard}.{label:region}.{{x}}\"}],"
    "   \"continue\": true},"
    "  {\"match\": {\"topic\": \"t*\"}, \"sinks\": [{\"sink\": \"m\"}, {\"sink\": \"n\"}]}],"
    " \"admin\": {\"open_endpoints\": [\"/healthz\"]}}";

/* Run op with allocation k failing, for k = 0, 1, ... until op succeeds. */
static void fail_each(int (*op)(void), const char *what)
{
    long k = 0;
    for (;; k++) {
        countdown = k;
        allocations = 0;
        int r = op();
        countdown = -1;
        if (r == ITR_OK)
            break;
        if (r != ITR_ERR_NOMEM)
            fail_msg("%s: allocation %ld failed: expected ITR_ERR_NOMEM, got %d", what, k, r);
        assert_true(k < 100000);
    }
    assert_true(k > 5); /* the op did allocate, and every failure point was visited */
}

static int load_config(void)
{
    char err[512];
    gw_config *cfg = NULL;
    int r = gw_config_parse_text(config_text, sizeof(config_text) - 1, "t.json", &cfg, err,
                                 sizeof(err));
    if (r == ITR_ERR_NOMEM && strstr(err, "t.json") != err)
        fail_msg("NOMEM without a message naming the origin: \"%s\"", err);
    if (r == ITR_OK)
        assert_non_null(cfg);
    else
        assert_null(cfg);
    gw_config_free(cfg);
    return r;
}

static int build_shards_and_router(void)
{
    static const char *const names[] = {"n", "m"};
    cJSON_Hooks none = {NULL, NULL};
    cJSON_InitHooks(&none); /* only the builders' own allocations fail here */
    cJSON *shards =
        cJSON_Parse("{\"a\": {\"peers\": "
                    "[\"3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
                    "\"], \"labels\": {\"x\": \"y\"}}, \"b\": {}}");
    cJSON *routes = cJSON_Parse("[{\"match\": {\"shard\": \"[ab]\", \"topic\": \"e\"}, \"sinks\": "
                                "[{\"sink\": \"n\"}], \"continue\": true}, {\"match\": "
                                "{\"topic\": \"g*\"}, \"sinks\": [{\"sink\": \"m\", \"key\": "
                                "\"{peer_short}\"}]}]");
    gw_shards *t = NULL;
    gw_router *r = NULL;
    char err[256];
    int rc;
    assert_non_null(shards);
    assert_non_null(routes);
    rc = gw_shards_build(&t, shards, "t", "", err, sizeof(err), NULL, 0);
    if (rc == ITR_OK) {
        rc = gw_router_compile(&r, routes, "t", "", t, names, 2, err, sizeof(err), NULL, 0);
        if (rc == ITR_OK) {
            cJSON *j = gw_router_to_json(r), *k = gw_shards_to_json(t);
            countdown = -1;
            assert_non_null(j);
            assert_non_null(k);
            cJSON_Delete(j);
            cJSON_Delete(k);
        }
    }
    countdown = -1;
    gw_router_free(r);
    gw_shards_free(t);
    cJSON_Delete(shards);
    cJSON_Delete(routes);
    cJSON_Hooks hooks = {hook_malloc, free};
    cJSON_InitHooks(&hooks);
    return rc;
}

static int new_lograte(void)
{
    gw_lograte *r = NULL;
    int rc = gw_lograte_new(&r, 64, 1000, 10);
    gw_lograte_free(r);
    return rc;
}

static void test_config_nomem(void **state)
{
    (void)state;
    fail_each(load_config, "gw_config_parse_text");
}

static void test_shards_router_nomem(void **state)
{
    (void)state;
    fail_each(build_shards_and_router, "gw_shards_build/gw_router_compile");
}

static void test_lograte_nomem(void **state)
{
    (void)state;
    long k = 0;
    for (;; k++) {
        countdown = k;
        int r = new_lograte();
        countdown = -1;
        if (r == ITR_OK)
            break;
        assert_int_equal(r, ITR_ERR_NOMEM);
    }
    assert_int_equal(k, 2); /* the limiter and its table */
}

int main(void)
{
    /* cJSON allocates through the same failing allocator. */
    cJSON_Hooks hooks = {hook_malloc, free};
    cJSON_InitHooks(&hooks);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_nomem),
        cmocka_unit_test(test_shards_router_nomem),
        cmocka_unit_test(test_lograte_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
