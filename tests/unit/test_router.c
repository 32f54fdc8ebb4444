/* test_router.c: gateway/router.c: route order, continue, shard/peer/topic matching and globs,
 * exact-topic hashing merged with globs in order, de-duplication, delivery classes,
 * templates, serialization, and a randomized comparison with a naive fnmatch(3) router. */
#define _POSIX_C_SOURCE 200809L /* fnmatch */
#include <fnmatch.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <intentra/endpoint.h>
#include <intentra/error.h>

#include "router.h"
#include "shards.h"

#define KEY_A "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
#define KEY_B "a7c1b2e3f4051627384950a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5"

static const char *const sink_names[] = {"s0", "s1", "s2", "s3"};
static char err[512], field[128];
static uint8_t key_a[32], key_b[32];

typedef struct fixture {
    gw_shards *shards;
    gw_router *router;
} fixture;

static void unhex(uint8_t out[32], const char *hex)
{
    for (size_t i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    cJSON *doc = cJSON_Parse("{\"a\": {\"peers\": [\"" KEY_A "\"], \"labels\": {\"region\": "
                             "\"eu\"}, \"attributes\": {\"kafka_topic\": \"t.a\", "
                             "\"kafka_partition\": 2, \"redis_prefix\": \"r:\", "
                             "\"webhook_endpoint\": \"https://h/a\"}},"
                             " \"b\": {\"peers\": [\"" KEY_B "\"]}, \"fleet_x\": {}}");
    if (!f || !doc || gw_shards_build(&f->shards, doc, "t", "shards", err, sizeof(err), NULL, 0))
        return -1;
    cJSON_Delete(doc);
    unhex(key_a, KEY_A);
    unhex(key_b, KEY_B);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gw_router_free(f->router);
    gw_shards_free(f->shards);
    free(f);
    return 0;
}

static gw_router *compile(fixture *f, const char *json)
{
    cJSON *doc = cJSON_Parse(json);
    assert_non_null(doc);
    gw_router_free(f->router);
    f->router = NULL;
    if (gw_router_compile(&f->router, doc, "t.json", "routes", f->shards, sink_names, 4, err,
                          sizeof(err), field, sizeof(field)) != ITR_OK)
        fail_msg("unexpected error: %s", err);
    cJSON_Delete(doc);
    return f->router;
}

static void expect_error(fixture *f, const char *json, const char *expected,
                         const char *expected_field)
{
    cJSON *doc = cJSON_Parse(json);
    gw_router *r = (gw_router *)1;
    assert_non_null(doc);
    assert_int_equal(gw_router_compile(&r, doc, "t.json", "routes", f->shards, sink_names, 4, err,
                                       sizeof(err), field, sizeof(field)),
                     ITR_ERR_INVALID);
    assert_null(r);
    assert_string_equal(err, expected);
    assert_string_equal(field, expected_field);
    cJSON_Delete(doc);
}

/* Match and describe the result as "s0 s1(reliable) ...". */
static const char *match_str(fixture *f, const char *shard, const uint8_t *peer, const char *topic)
{
    static char out[256];
    const gw_route_sink *rs[GW_MAX_DELIVERIES];
    const gw_shard *s = shard ? gw_shards_find(f->shards, shard) : NULL;
    unsigned over = 99;
    size_t n = gw_router_match(f->router, s, peer ? peer : key_b, topic, strlen(topic), rs, &over);
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int c = gw_route_sink_class(rs[i]);
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s%s%s", i ? " " : "",
                              sink_names[gw_route_sink_index(rs[i])],
                              c == GW_CLASS_AS_SENT ? "" : "/",
                              c == GW_CLASS_AS_SENT ? "" : gw_delivery_class_name(c));
    }
    if (over)
        snprintf(out + o, sizeof(out) - o, " +%u", over);
    return out;
}

static void test_order_and_first_match(void **state)
{
    fixture *f = *state;
    compile(f, "[{\"match\": {\"topic\": \"x.*\"}, \"sinks\": [{\"sink\": \"s0\"}]},"
               " {\"match\": {\"topic\": \"*\"}, \"sinks\": [{\"sink\": \"s1\"}]},"
               " {\"match\": {\"topic\": \"*\"}, \"sinks\": [{\"sink\": \"s2\"}]}]");
    assert_string_equal(match_str(f, "a", NULL, "x.1"), "s0");
    assert_string_equal(match_str(f, "a", NULL, "y"), "s1");
    assert_string_equal(match_str(f, NULL, NULL, "x"), "s1");
    assert_int_equal(gw_router_route_count(f->router), 3);
    assert_ptr_equal(gw_router_shards(f->router), f->shards);
}

static void test_continue(void **state)
{
    fixture *f = *state;
    compile(f, "[{\"match\": {\"topic\": \"*\"}, \"sinks\": [{\"sink\": \"s0\"}], "
               "\"continue\": true},"
               " {\"match\": {\"topic\": \"x.*\"}, \"sinks\": [{\"sink\": \"s1\"}]},"
               " {\"match\": {\"topic\": \"*\"}, \"sinks\": [{\"sink\": \"s2\"}]}]");
    assert_string_equal(match_str(f, "a", NULL, "x.1"), "s0 s1");
    assert_string_equal(match_str(f, "a", NULL, "y"), "s0 s2");
    /* Nothing matches: an empty set. */
    compile(f, "[{\"match\": {\"topic\": \"x\"}, \"sinks\": [{\"sink\": \"s0\"}]}]");
    assert_string_equal(match_str(f, "a", NULL, "y"), "");
    compile(f, "[]");
    assert_string_equal(match_str(f, "a", NULL, "y"), "");
}

static void test_shard_peer_topic_matching(void **state)
{
    fixture *f = *state;
    compile(f, "[{\"match\": {\"shard\": \"fleet_*\"}, \"sinks\": [{\"sink\": \"s0\"}], "
               "\"continue\": true},"
               " {\"match\": {\"shard\": \"a\", \"topic\": \"t?\"}, \"sinks\": [{\"sink\": "
               "\"s1\"}], \"continue\": true},"
               " {\"match\": {\"peer\": \"" KEY_A "\"}, \"sinks\": [{\"sink\": \"s2\"}], "
               "\"continue\": true},"
               " {\"match\": {\"shard\": \"[ab]\", \"topic\": \"[!x]*\"}, \"sinks\": "
               "[{\"sink\": \"s3\"}]}]");
    assert_string_equal(match_str(f, "fleet_x", NULL, "t1"), "s0");
    assert_string_equal(match_str(f, "a", key_b, "t1"), "s1 s3");
    assert_string_equal(match_str(f, "a", key_a, "t12"), "s2 s3");
    assert_string_equal(match_str(f, "a", key_a, "x"), "s2");
    assert_string_equal(match_str(f, "b", key_b, "y"), "s3");
    assert_string_equal(match_str(f, "b", key_b, "xy"), "");
    /* No shard: only shard "*" routes (here the peer route). */
    assert_string_equal(match_str(f, NULL, key_a, "t1"), "s2");
    assert_string_equal(match_str(f, NULL, key_b, "t1"), "");

    /* A shard of another table matches nothing. */
    gw_shards *other;
    cJSON *doc = cJSON_Parse("{\"a\": {}}");
    assert_int_equal(gw_shards_build(&other, doc, "o", "", err, sizeof(err), NULL, 0), ITR_OK);
    const gw_route_sink *rs[GW_MAX_DELIVERIES];
    unsigned over = 5;
    assert_int_equal(gw_router_match(f->router, gw_shards_at(other, 0), key_a, "t1", 2, rs, &over),
                     0);
    assert_int_equal(over, 0);
    gw_shards_free(other);
    cJSON_Delete(doc);
}

static void test_globs(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *pattern, *topic;
        int match;
    } cases[] = {
        {"*", "anything", 1},
        {"a*", "a", 1},
        {"a*", "ba", 0},
        {"*.b", "x.y.b", 1},
        {"*.b", "x.y.c", 0},
        {"a?c", "abc", 1},
        {"a?c", "ac", 0},
        {"[ab]x", "bx", 1},
        {"[ab]x", "cx", 0},
        {"[!ab]x", "cx", 1},
        {"[!ab]x", "ax", 0},
        {"[a-c]1", "b1", 1},
        {"[a-c]1", "d1", 0},
        {"[]a]", "]", 1},
        {"[]a]", "a", 1},
        {"[!]a]", "b", 1},
        {"[^a]", "a", 0},
        {"a*b*c", "a_b_b_c", 1},
        {"a*b*c", "a_b_b_d", 0},
        {"**x", "x", 1},
        {"x/*/z", "x/y/z", 1},
        {"x/*/z", "x/y/w/z", 1},
        {"fleet.:-_", "fleet.:-_", 1},
        {"a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0},
    };
    char json[512];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(json, sizeof(json),
                 "[{\"match\": {\"topic\": \"%s\"}, \"sinks\": [{\"sink\": \"s0\"}]}]",
                 cases[i].pattern);
        compile(f, json);
        const char *got = match_str(f, "a", NULL, cases[i].topic);
        if (strcmp(got, cases[i].match ? "s0" : "") != 0)
            fail_msg("case %zu: pattern %s topic %s: got \"%s\"", i + 1, cases[i].pattern,
                     cases[i].topic, got);
    }
}

static void test_exact_topics_keep_order(void **state)
{
    fixture *f = *state;
    /* Exact-topic routes live in a hash, globs in a list; the merge keeps route order. */
    compile(f, "[{\"match\": {\"topic\": \"t1\"}, \"sinks\": [{\"sink\": \"s0\"}], \"continue\": "
               "true},"
               " {\"match\": {\"topic\": \"t*\"}, \"sinks\": [{\"sink\": \"s1\"}], \"continue\": "
               "true},"
               " {\"match\": {\"topic\": \"t1\"}, \"sinks\": [{\"sink\": \"s2\"}], \"continue\": "
               "true},"
               " {\"match\": {\"shard\": \"a\", \"topic\": \"t1\"}, \"sinks\": [{\"sink\": "
               "\"s3\"}]},"
               " {\"match\": {\"topic\": \"*\"}, \"sinks\": [{\"sink\": \"s0\", \"key\": "
               "\"late\"}]}]");
    assert_string_equal(match_str(f, "a", NULL, "t1"), "s0 s1 s2 s3");
    assert_string_equal(match_str(f, "b", NULL, "t1"), "s0 s1 s2 s0");
    assert_string_equal(match_str(f, "a", NULL, "t2"), "s1 s0");
    assert_string_equal(match_str(f, "a", NULL, "t"), "s1 s0");
    assert_string_equal(match_str(f, "a", NULL, "u"), "s0");
}

static void test_dedupe_and_classes(void **state)
{
    fixture *f = *state;
    const gw_route_sink *rs[GW_MAX_DELIVERIES];
    compile(f, "[{\"name\": \"rt\", \"sinks\": [{\"sink\": \"s0\"}, {\"sink\": \"s1\", "
               "\"key\": \"k\"}], \"delivery\": \"realtime\", \"continue\": true},"
               " {\"name\": \"dup\", \"sinks\": [{\"sink\": \"s0\"}, {\"sink\": \"s1\"}], "
               "\"delivery\": \"reliable\", \"continue\": true},"
               " {\"name\": \"as\", \"sinks\": [{\"sink\": \"s0\", \"destination\": "
               "\"{topic}\", \"key\": \"{peer}\"}, {\"sink\": \"s1\", \"key\": \"k\"}]}]");
    /* s0 with default templates appears in all three routes: one delivery, upgraded to the
     * strongest class (reliable) at its first position; s1 with key "k" twice: realtime
     * upgraded to as_sent; s1 with the default key is distinct. */
    assert_string_equal(match_str(f, "a", NULL, "x"), "s0/reliable s1 s1/reliable");
    size_t n = gw_router_match(f->router, gw_shards_find(f->shards, "a"), key_a, "x", 1, rs, NULL);
    assert_int_equal(n, 3);
    assert_string_equal(gw_route_sink_route_name(rs[0]), "dup");
    assert_string_equal(gw_route_sink_route_name(rs[1]), "as");
    assert_int_equal(gw_route_sink_reliable(rs[0], ITR_INTENT_REALTIME), 1);
    assert_int_equal(gw_route_sink_reliable(rs[1], ITR_INTENT_REALTIME), 0);
    assert_int_equal(gw_route_sink_reliable(rs[1], ITR_INTENT_RELIABLE), 1);

    compile(f, "[{\"sinks\": [{\"sink\": \"s2\"}], \"delivery\": \"realtime\"}]");
    n = gw_router_match(f->router, NULL, key_a, "x", 1, rs, NULL);
    assert_int_equal(n, 1);
    assert_int_equal(gw_route_sink_class(rs[0]), GW_CLASS_REALTIME);
    assert_int_equal(gw_route_sink_reliable(rs[0], ITR_INTENT_RELIABLE), 0);
    assert_string_equal(gw_route_sink_route_name(rs[0]), "route_0");
    assert_string_equal(gw_delivery_class_name(GW_CLASS_AS_SENT), "as_sent");
    assert_string_equal(gw_delivery_class_name(7), "unknown");
}

static void test_overflow(void **state)
{
    fixture *f = *state;
    /* 12 distinct (sink, template) pairs from three routes: 8 delivered, 4 counted. */
    compile(f, "[{\"sinks\": [{\"sink\": \"s0\"}, {\"sink\": \"s1\"}, {\"sink\": \"s2\"}, "
               "{\"sink\": \"s3\"}], \"continue\": true},"
               " {\"sinks\": [{\"sink\": \"s0\", \"key\": \"1\"}, {\"sink\": \"s1\", \"key\": "
               "\"1\"}, {\"sink\": \"s2\", \"key\": \"1\"}, {\"sink\": \"s3\", \"key\": \"1\"}], "
               "\"continue\": true},"
               " {\"sinks\": [{\"sink\": \"s0\", \"key\": \"2\"}, {\"sink\": \"s1\", \"key\": "
               "\"2\"}, {\"sink\": \"s2\", \"key\": \"2\"}, {\"sink\": \"s3\", \"key\": \"2\"}, "
               "{\"sink\": \"s0\"}], \"continue\": true}]");
    assert_string_equal(match_str(f, "a", NULL, "x"), "s0 s1 s2 s3 s0 s1 s2 s3 +4");
}

static void make_msg(gw_msg *m, const gw_shard *s, const char *peer_hex, const char *topic,
                     int intent)
{
    memset(m, 0, sizeof(*m));
    m->shard = s;
    if (s) {
        m->shard_name = gw_shard_id(s);
        m->shard_name_len = (uint32_t)gw_shard_id_len(s);
    }
    snprintf(m->peer_hex, sizeof(m->peer_hex), "%s", peer_hex);
    m->topic = topic;
    m->topic_len = (uint16_t)strlen(topic);
    m->intent = (uint8_t)intent;
}

static void test_templates(void **state)
{
    fixture *f = *state;
    const gw_route_sink *rs[GW_MAX_DELIVERIES];
    char out[256];
    gw_msg m;
    compile(f, "[{\"sinks\": [{\"sink\": \"s0\", \"destination\": \"fleet.{shard}.{topic}\", "
               "\"key\": \"{peer}\"},"
               " {\"sink\": \"s1\", \"destination\": \"{label:region}/{label:zone}/"
               "{attr:kafka_topic}/{attr:kafka_partition}/{attr:redis_prefix}/"
               "{attr:webhook_endpoint}\", \"key\": \"{peer_short}-{intent}\"},"
               " {\"sink\": \"s2\", \"destination\": \"{{literal}} }}x{{\", \"key\": \"\"}]}]");
    const gw_shard *a = gw_shards_find(f->shards, "a");
    assert_int_equal(gw_router_match(f->router, a, key_a, "t", 1, rs, NULL), 3);
    make_msg(&m, a, KEY_A, "sensors/imu:1", ITR_INTENT_RELIABLE);

    assert_int_equal(gw_route_sink_destination(rs[0], &m, out, sizeof(out)), 21);
    assert_string_equal(out, "fleet.a.sensors/imu:1");
    assert_int_equal(gw_route_sink_key(rs[0], &m, out, sizeof(out)), 64);
    assert_string_equal(out, KEY_A);
    assert_int_equal(gw_route_sink_index(rs[0]), 0);
    assert_false(gw_route_sink_destination_is_constant(rs[0]));
    assert_string_equal(gw_route_sink_destination_template(rs[0]), "fleet.{shard}.{topic}");
    assert_string_equal(gw_route_sink_key_template(rs[0]), "{peer}");

    gw_route_sink_destination(rs[1], &m, out, sizeof(out));
    assert_string_equal(out, "eu//t.a/2/r:/https://h/a");
    gw_route_sink_key(rs[1], &m, out, sizeof(out));
    assert_string_equal(out, "3b6a27bc-reliable");
    m.intent = ITR_INTENT_REALTIME;
    gw_route_sink_key(rs[1], &m, out, sizeof(out));
    assert_string_equal(out, "3b6a27bc-realtime");

    assert_int_equal(gw_route_sink_destination(rs[2], &m, out, sizeof(out)), 13);
    assert_string_equal(out, "{literal} }x{");
    assert_true(gw_route_sink_destination_is_constant(rs[2]));
    assert_int_equal(gw_route_sink_key(rs[2], &m, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_true(gw_route_sink_key_is_constant(rs[2]));

    /* Exact fit and one byte short. */
    make_msg(&m, a, KEY_A, "sensors/imu:1", ITR_INTENT_RELIABLE);
    assert_int_equal(gw_route_sink_destination(rs[0], &m, out, 22), 21);
    assert_int_equal(gw_route_sink_destination(rs[0], &m, out, 21), (size_t)-1);
    assert_int_equal(gw_route_sink_destination(rs[0], &m, out, 5), (size_t)-1);
    assert_int_equal(gw_route_sink_destination(rs[0], &m, out, 0), (size_t)-1);
    assert_int_equal(gw_route_sink_key(rs[2], &m, out, 1), 0);

    /* A shard without attributes or labels renders them empty; no shard pointer: the name. */
    make_msg(&m, gw_shards_find(f->shards, "b"), KEY_B, "t", ITR_INTENT_REALTIME);
    gw_route_sink_destination(rs[1], &m, out, sizeof(out));
    assert_string_equal(out, "/////");
    make_msg(&m, NULL, KEY_B, "t", ITR_INTENT_REALTIME);
    m.shard_name = "unlisted";
    m.shard_name_len = 8;
    gw_route_sink_destination(rs[0], &m, out, sizeof(out));
    assert_string_equal(out, "fleet.unlisted.t");
}

static void test_json_round_trip(void **state)
{
    fixture *f = *state;
    compile(f, "[{\"name\": \"one\", \"match\": {\"shard\": \"a\", \"peer\": \"" KEY_A "\", "
               "\"topic\": \"x.*\"}, \"sinks\": [{\"sink\": \"s1\", \"destination\": \"d\"}], "
               "\"delivery\": \"reliable\", \"continue\": true},"
               " {\"sinks\": [{\"sink\": \"s0\"}]}]");
    cJSON *j = gw_router_to_json(f->router);
    char *s = cJSON_PrintUnformatted(j);
    assert_string_equal(s, "[{\"name\":\"one\",\"match\":{\"shard\":\"a\",\"peer\":\"" KEY_A
                           "\",\"topic\":\"x.*\"},\"sinks\":[{\"sink\":\"s1\",\"destination\":"
                           "\"d\",\"key\":\"{peer}\"}],\"delivery\":\"reliable\",\"continue\":"
                           "true},{\"name\":\"route_1\",\"match\":{\"shard\":\"*\",\"topic\":"
                           "\"*\"},\"sinks\":[{\"sink\":\"s0\",\"destination\":\"{topic}\","
                           "\"key\":\"{peer}\"}],\"delivery\":\"as_sent\",\"continue\":false}]");
    gw_router *r2;
    assert_int_equal(
        gw_router_compile(&r2, j, "again", "", f->shards, sink_names, 4, err, sizeof(err), NULL, 0),
        ITR_OK);
    cJSON *j2 = gw_router_to_json(r2);
    assert_true(cJSON_Compare(j, j2, 1));
    free(s);
    cJSON_Delete(j);
    cJSON_Delete(j2);
    gw_router_free(r2);
}

static void test_compile_errors(void **state)
{
    fixture *f = *state;
    expect_error(f, "{}", "t.json: routes: expected an array of routes, got an object", "routes");
    expect_error(f,
                 "[{\"sinks\": [{\"sink\": \"s0\"}, {\"sink\": \"s0\"}, {\"sink\": \"s0\"}, "
                 "{\"sink\": \"s0\"}, {\"sink\": \"s0\"}, {\"sink\": \"s0\"}, {\"sink\": \"s0\"}, "
                 "{\"sink\": \"s0\"}, {\"sink\": \"s0\"}]}]",
                 "t.json: routes[0].sinks: expected an array of 1..8 {\"sink\": name} objects, "
                 "got an array",
                 "routes[0].sinks");
    expect_error(f, "[{\"sinks\": []}]",
                 "t.json: routes[0].sinks: expected an array of 1..8 {\"sink\": name} objects, "
                 "got an array",
                 "routes[0].sinks");
    expect_error(f,
                 "[{\"name\": \"x\", \"sinks\": [{\"sink\": \"s0\"}]}, {\"name\": \"x\", "
                 "\"sinks\": [{\"sink\": \"s0\"}]}]",
                 "t.json: routes[1].name: route name \"x\" is already used by routes[0]",
                 "routes[1].name");
    expect_error(f, "[{\"name\": \"a b\", \"sinks\": [{\"sink\": \"s0\"}]}]",
                 "t.json: routes[0].name: invalid route name \"a b\" (expected 1..64 characters "
                 "of [A-Za-z0-9_.-])",
                 "routes[0].name");
    expect_error(f, "[{\"delivery\": \"best_effort\", \"sinks\": [{\"sink\": \"s0\"}]}]",
                 "t.json: routes[0].delivery: expected \"as_sent\" | \"realtime\" | "
                 "\"reliable\", got \"best_effort\"",
                 "routes[0].delivery");
    expect_error(f, "[{\"continue\": 1, \"sinks\": [{\"sink\": \"s0\"}]}]",
                 "t.json: routes[0].continue: expected true or false, got 1", "routes[0].continue");
    expect_error(f, "[{\"match\": {\"shard\": \"a]\"}, \"sinks\": [{\"sink\": \"s0\"}]}]",
                 "t.json: routes[0].match.shard: bad shard pattern \"a]\": unmatched ']' at "
                 "offset 1",
                 "routes[0].match.shard");
    expect_error(f, "[{\"match\": {\"topic\": \"\"}, \"sinks\": [{\"sink\": \"s0\"}]}]",
                 "t.json: routes[0].match.topic: expected a non-empty string, got \"\"",
                 "routes[0].match.topic");
    expect_error(f, "[{\"sinks\": [{\"sink\": \"s0\", \"key\": \"{label:}\"}]}]",
                 "t.json: routes[0].sinks[0].key: unknown variable {label:} (valid: {shard} "
                 "{peer} {peer_short} {topic} {intent} {label:NAME} {attr:NAME})",
                 "routes[0].sinks[0].key");
    expect_error(f, "[{\"sinks\": [{\"sink\": \"s0\", \"key\": \"a}b\"}]}]",
                 "t.json: routes[0].sinks[0].key: unmatched '}' at offset 1 (write }} for a "
                 "literal brace)",
                 "routes[0].sinks[0].key");
    expect_error(f, "[{\"sinks\": [{\"sink\": \"s0\", \"key\": \"{label:a b}\"}]}]",
                 "t.json: routes[0].sinks[0].key: invalid label name in {label:a b} (expected "
                 "1..64 characters of [A-Za-z0-9_.-])",
                 "routes[0].sinks[0].key");
    expect_error(f, "[5]", "t.json: routes[0]: expected an object, got 5", "routes[0]");
}

/* ---- randomized comparison with a naive router ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

typedef struct nroute {
    char shard[16], topic[16], key[8];
    int peer; /* -1: any, 0: key_a, 1: key_b */
    unsigned sink;
    int cont;
} nroute;

static const char *const shard_pats[] = {"*", "a", "b", "fleet_x", "[ab]", "fleet_*", "?"};
static const char *const topic_pats[] = {"*", "t1", "t2", "t*", "x.?", "[tx]1", "x.1", "t[!1]"};
static const char *const topics[] = {"t1", "t2", "t3", "x.1", "x.2", "y", "t"};

static void test_random_vs_naive(void **state)
{
    fixture *f = *state;
    enum { ROUTES = 60, ROUNDS = 30, MSGS = 300 };
    nroute nr[ROUTES];
    char *json = malloc(64 * 1024);
    size_t total = 0, overflows = 0, stopped_early = 0;
    assert_non_null(json);
    for (unsigned round = 0; round < ROUNDS; round++) {
        size_t o = 0;
        o += (size_t)sprintf(json + o, "[");
        for (unsigned i = 0; i < ROUTES; i++) {
            nroute *r = &nr[i];
            snprintf(r->shard, sizeof(r->shard), "%s", shard_pats[rnd(7)]);
            snprintf(r->topic, sizeof(r->topic), "%s", topic_pats[rnd(8)]);
            snprintf(r->key, sizeof(r->key), "k%u", rnd(2));
            r->peer = rnd(4) == 0 ? (int)rnd(2) : -1;
            r->sink = rnd(4);
            r->cont = rnd(3) != 0;
            o += (size_t)sprintf(
                json + o,
                "%s{\"match\": {\"shard\": \"%s\", \"topic\": \"%s\"%s%s%s}, "
                "\"sinks\": [{\"sink\": \"s%u\", \"key\": \"%s\"}], "
                "\"continue\": %s}",
                i ? "," : "", r->shard, r->topic, r->peer >= 0 ? ", \"peer\": \"" : "",
                r->peer < 0 ? "" : (r->peer ? KEY_B : KEY_A), r->peer >= 0 ? "\"" : "", r->sink,
                r->key, r->cont ? "true" : "false");
        }
        sprintf(json + o, "]");
        compile(f, json);
        for (unsigned m = 0; m < MSGS; m++) {
            const char *shards[] = {"a", "b", "fleet_x", NULL};
            const char *sh = shards[rnd(4)];
            const char *topic = topics[rnd(7)];
            int peer = (int)rnd(2);
            /* Naive: every route in order, fnmatch for both patterns, dedupe by (sink, key). */
            unsigned exp_sink[GW_MAX_DELIVERIES], nexp = 0;
            char exp_key[GW_MAX_DELIVERIES][8];
            unsigned over = 0;
            for (unsigned i = 0; i < ROUTES; i++) {
                const nroute *r = &nr[i];
                int shard_ok = strcmp(r->shard, "*") == 0 || (sh && fnmatch(r->shard, sh, 0) == 0);
                if (!shard_ok || (r->peer >= 0 && r->peer != peer) ||
                    fnmatch(r->topic, topic, 0) != 0)
                    continue;
                unsigned k = 0;
                while (k < nexp && !(exp_sink[k] == r->sink && !strcmp(exp_key[k], r->key)))
                    k++;
                if (k == nexp) {
                    if (nexp < GW_MAX_DELIVERIES) {
                        exp_sink[nexp] = r->sink;
                        strcpy(exp_key[nexp++], r->key);
                    } else {
                        over = 1; /* only presence is compared below */
                    }
                }
                if (!r->cont)
                    break;
            }
            const gw_route_sink *rs[GW_MAX_DELIVERIES];
            unsigned got_over;
            size_t n = gw_router_match(f->router, sh ? gw_shards_find(f->shards, sh) : NULL,
                                       peer ? key_b : key_a, topic, strlen(topic), rs, &got_over);
            assert_int_equal(n, nexp);
            assert_int_equal(got_over > 0, over);
            total += n;
            overflows += over;
            stopped_early += n > 0 && n < 4;
            for (size_t k = 0; k < n; k++) {
                assert_int_equal(gw_route_sink_index(rs[k]), exp_sink[k]);
                assert_string_equal(gw_route_sink_key_template(rs[k]), exp_key[k]);
            }
        }
    }
    /* The generator exercises the interesting cases. */
    assert_true(total > ROUNDS * MSGS);
    assert_true(overflows > 0 || stopped_early > 0);
    assert_true(stopped_early > 0);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_first_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shard_peer_topic_matching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_globs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_topics_keep_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_and_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_templates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compile_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_vs_naive, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
