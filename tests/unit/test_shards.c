/* test_shards.c: gateway/shards.c: building the shard table from JSON (config file and
 * standalone request bodies), exact errors with paths, peer and id lookups, serialization. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <intentra/error.h>

#include "shards.h"

#define KEY_A "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
#define KEY_B "a7c1b2e3f4051627384950a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5"
#define KEY_C "00000000000000000000000000000000000000000000000000000000000000ff"

static char err[512], field[128];

static gw_shards *build_ok(const char *json)
{
    cJSON *doc = cJSON_Parse(json);
    gw_shards *t = NULL;
    assert_non_null(doc);
    if (gw_shards_build(&t, doc, "t.json", "shards", err, sizeof(err), field, sizeof(field)) !=
        ITR_OK)
        fail_msg("unexpected error: %s", err);
    cJSON_Delete(doc);
    return t;
}

static void expect_error(const char *origin, const char *path, const char *json,
                         const char *expected, const char *expected_field)
{
    cJSON *doc = cJSON_Parse(json);
    gw_shards *t = (gw_shards *)1;
    assert_non_null(doc);
    assert_int_equal(gw_shards_build(&t, doc, origin, path, err, sizeof(err), field, sizeof(field)),
                     ITR_ERR_INVALID);
    assert_null(t);
    assert_string_equal(err, expected);
    assert_string_equal(field, expected_field);
    cJSON_Delete(doc);
}

static void unhex(uint8_t out[32], const char *hex)
{
    for (size_t i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void test_build_and_lookup(void **state)
{
    (void)state;
    uint8_t k[32];
    gw_shards *t = build_ok("{\"fleet_a\": {\"peers\": [\"" KEY_A "\", \"" KEY_C "\"],"
                            "  \"labels\": {\"region\": \"eu-west\", \"site\": \"sim 01\"},"
                            "  \"attributes\": {\"kafka_topic\": \"fleet.a\", "
                            "\"kafka_partition\": 3, \"redis_prefix\": \"fleet:a:\", "
                            "\"webhook_endpoint\": \"https://hooks.example/a\"}},"
                            " \"fleet-b.2\": {\"peers\": [\"A7C1B2E3F4051627384950A1B2C3D4E5F6071"
                            "8293A4B5C6D7E8F90A1B2C3D4E5\"]},"
                            " \"empty\": {}}");
    assert_int_equal(gw_shards_count(t), 3);
    assert_int_equal(gw_shards_peer_count(t), 3);

    const gw_shard *a = gw_shards_at(t, 0), *b = gw_shards_at(t, 1), *e = gw_shards_at(t, 2);
    assert_null(gw_shards_at(t, 3));
    assert_string_equal(gw_shard_id(a), "fleet_a");
    assert_int_equal(gw_shard_id_len(a), 7);
    assert_int_equal(gw_shard_index(b), 1);
    assert_ptr_equal(gw_shard_table(a), t);
    assert_ptr_equal(gw_shards_find(t, "fleet-b.2"), b);
    assert_ptr_equal(gw_shards_findn(t, "emptyXYZ", 5), e);
    assert_null(gw_shards_find(t, "fleet"));
    assert_null(gw_shards_find(t, ""));

    unhex(k, KEY_A);
    assert_ptr_equal(gw_shards_lookup_peer(t, k), a);
    unhex(k, KEY_B); /* listed upper-case: the same key */
    assert_ptr_equal(gw_shards_lookup_peer(t, k), b);
    unhex(k, KEY_C);
    assert_ptr_equal(gw_shards_lookup_peer(t, k), a);
    k[0] ^= 1;
    assert_null(gw_shards_lookup_peer(t, k));

    assert_int_equal(gw_shard_peer_count(a), 2);
    unhex(k, KEY_C);
    assert_memory_equal(gw_shard_peer(a, 1), k, 32);
    assert_null(gw_shard_peer(a, 2));
    assert_int_equal(gw_shard_label_count(a), 2);
    assert_string_equal(gw_shard_label(a, "site"), "sim 01");
    assert_string_equal(gw_shard_labeln(a, "regionX", 6), "eu-west");
    assert_null(gw_shard_label(a, "zone"));
    const char *ln, *lv;
    gw_shard_label_at(a, 1, &ln, &lv);
    assert_string_equal(ln, "site");
    assert_string_equal(lv, "sim 01");
    gw_shard_label_at(a, 2, &ln, &lv);
    assert_null(ln);

    const gw_shard_attrs *at = gw_shard_attributes(a);
    assert_string_equal(at->kafka_topic, "fleet.a");
    assert_int_equal(at->kafka_partition, 3);
    assert_string_equal(at->redis_prefix, "fleet:a:");
    assert_string_equal(at->webhook_endpoint, "https://hooks.example/a");
    at = gw_shard_attributes(e);
    assert_null(at->kafka_topic);
    assert_int_equal(at->kafka_partition, -1);
    assert_null(at->redis_prefix);
    assert_null(at->webhook_endpoint);
    gw_shards_free(t);
    gw_shards_free(NULL);
}

static void test_json_round_trip(void **state)
{
    (void)state;
    gw_shards *t = build_ok("{\"b\": {\"peers\": [\"" KEY_B "\"], \"labels\": {\"x\": \"1\"}},"
                            " \"a\": {\"attributes\": {\"kafka_partition\": 0}},"
                            " \"c\": {\"peers\": [], \"labels\": {}}}");
    cJSON *j = gw_shards_to_json(t);
    char *s = cJSON_PrintUnformatted(j);
    /* Document order kept, lower-case keys, empty members left out. */
    assert_string_equal(s, "{\"b\":{\"peers\":[\"" KEY_B "\"],\"labels\":{\"x\":\"1\"}},"
                           "\"a\":{\"attributes\":{\"kafka_partition\":0}},\"c\":{}}");
    gw_shards *t2;
    assert_int_equal(gw_shards_build(&t2, j, "again", "", err, sizeof(err), NULL, 0), ITR_OK);
    cJSON *j2 = gw_shards_to_json(t2);
    assert_true(cJSON_Compare(j, j2, 1));
    cJSON *one = gw_shard_to_json(gw_shards_find(t, "b"));
    char *s1 = cJSON_PrintUnformatted(one);
    assert_string_equal(s1, "{\"peers\":[\"" KEY_B "\"],\"labels\":{\"x\":\"1\"}}");
    free(s1);
    free(s);
    cJSON_Delete(one);
    cJSON_Delete(j);
    cJSON_Delete(j2);
    gw_shards_free(t);
    gw_shards_free(t2);

    assert_int_equal(gw_shards_new_empty(&t), ITR_OK);
    assert_int_equal(gw_shards_count(t), 0);
    uint8_t k[32] = {0};
    assert_null(gw_shards_lookup_peer(t, k));
    assert_null(gw_shards_find(t, "default"));
    j = gw_shards_to_json(t);
    s = cJSON_PrintUnformatted(j);
    assert_string_equal(s, "{}");
    free(s);
    cJSON_Delete(j);
    gw_shards_free(t);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("t.json", "shards", "[]",
                 "t.json: shards: expected an object {shard id: shard}, got an array", "shards");
    expect_error("t.json", "shards", "{\"a b\": {}}",
                 "t.json: shards[\"a b\"]: invalid shard id (expected 1..127 characters of "
                 "[A-Za-z0-9_.-])",
                 "shards[\"a b\"]");
    expect_error("t.json", "shards", "{\"a\": {}, \"a\": {}}",
                 "t.json: shards.a: shard id appears twice", "shards.a");
    expect_error("t.json", "shards", "{\"a\": []}",
                 "t.json: shards.a: expected an object, got an array", "shards.a");
    expect_error("t.json", "shards", "{\"a\": {\"peer\": []}}",
                 "t.json: shards.a.peer: unknown key (did you mean \"peers\"? allowed: peers, "
                 "labels, attributes)",
                 "shards.a.peer");
    expect_error("t.json", "shards", "{\"a\": {\"peers\": \"" KEY_A "\"}}",
                 "t.json: shards.a.peers: expected an array of 64-hex-digit peer keys, got "
                 "\"3b6a27bcceb6a42d62a3a8d02a6f0d7365321577...\"",
                 "shards.a.peers");
    expect_error("t.json", "shards", "{\"a\": {\"peers\": [\"" KEY_A "\", 7]}}",
                 "t.json: shards.a.peers[1]: expected a peer key (64 hex digits), got 7",
                 "shards.a.peers[1]");
    expect_error("t.json", "shards", "{\"a\": {\"peers\": [\"" KEY_A "\", \"" KEY_A "\"]}}",
                 "t.json: shards.a.peers[1]: peer " KEY_A
                 " is listed twice in shard \"a\" (also at peers[0])",
                 "shards.a.peers[1]");
    expect_error("t.json", "shards",
                 "{\"a\": {\"peers\": [\"" KEY_C "\"]}, \"b\": {\"peers\": [\"" KEY_C "\"]}}",
                 "t.json: shards.b.peers[0]: peer " KEY_C
                 " is already in shard \"a\" (peers[0]); a peer belongs to one shard",
                 "shards.b.peers[0]");
    expect_error("t.json", "shards", "{\"a\": {\"labels\": {\"bad label\": \"x\"}}}",
                 "t.json: shards.a.labels[\"bad label\"]: invalid label name (expected 1..64 "
                 "characters of [A-Za-z0-9_.-])",
                 "shards.a.labels[\"bad label\"]");
    expect_error("t.json", "shards", "{\"a\": {\"labels\": {\"n\": 1}}}",
                 "t.json: shards.a.labels.n: expected a string, got 1", "shards.a.labels.n");
    expect_error("t.json", "shards", "{\"a\": {\"attributes\": {\"kafka_partitions\": 1}}}",
                 "t.json: shards.a.attributes.kafka_partitions: unknown key (did you mean "
                 "\"kafka_partition\"? allowed: kafka_topic, kafka_partition, redis_prefix, "
                 "webhook_endpoint)",
                 "shards.a.attributes.kafka_partitions");
    expect_error("t.json", "shards", "{\"a\": {\"attributes\": {\"kafka_partition\": -2}}}",
                 "t.json: shards.a.attributes.kafka_partition: expected an integer "
                 "0..2147483647, got -2",
                 "shards.a.attributes.kafka_partition");
    expect_error("t.json", "shards", "{\"a\": {\"attributes\": {\"kafka_topic\": \"a/b\"}}}",
                 "t.json: shards.a.attributes.kafka_topic: invalid Kafka topic \"a/b\" (expected "
                 "1..249 characters of [A-Za-z0-9._-])",
                 "shards.a.attributes.kafka_topic");
    expect_error("t.json", "shards",
                 "{\"a\": {\"attributes\": {\"webhook_endpoint\": \"ftp://x\"}}}",
                 "t.json: shards.a.attributes.webhook_endpoint: expected an http:// or https:// "
                 "URL without spaces, got \"ftp://x\"",
                 "shards.a.attributes.webhook_endpoint");
    /* A standalone document (admin API): paths start at the shard id. */
    expect_error("request body", "", "{\"x\": {\"peers\": [\"zz\"]}}",
                 "request body: x.peers[0]: expected a peer key of 64 hex digits, got \"zz\"",
                 "x.peers[0]");
    expect_error("request body", "", "5",
                 "request body: expected an object {shard id: shard}, got 5", "");
}

static void test_many_peers(void **state)
{
    (void)state;
    /* 100 shards of 100 peers: every key found in its own shard, none confused. */
    cJSON *doc = cJSON_CreateObject();
    char hex[65], id[16];
    for (unsigned s = 0; s < 100; s++) {
        cJSON *sh = cJSON_CreateObject(), *peers = cJSON_AddArrayToObject(sh, "peers");
        for (unsigned p = 0; p < 100; p++) {
            snprintf(hex, sizeof(hex), "%056x%04x%04x", 0u, s, p);
            cJSON_AddItemToArray(peers, cJSON_CreateString(hex));
        }
        snprintf(id, sizeof(id), "s%u", s);
        cJSON_AddItemToObject(doc, id, sh);
    }
    gw_shards *t;
    assert_int_equal(gw_shards_build(&t, doc, "gen", "", err, sizeof(err), NULL, 0), ITR_OK);
    assert_int_equal(gw_shards_peer_count(t), 10000);
    for (unsigned s = 0; s < 100; s++) {
        for (unsigned p = 0; p < 100; p++) {
            uint8_t k[32];
            snprintf(hex, sizeof(hex), "%056x%04x%04x", 0u, s, p);
            unhex(k, hex);
            const gw_shard *sh = gw_shards_lookup_peer(t, k);
            assert_non_null(sh);
            assert_int_equal(gw_shard_index(sh), s);
        }
    }
    uint8_t k[32];
    snprintf(hex, sizeof(hex), "%056x%04x%04x", 0u, 100u, 0u);
    unhex(k, hex);
    assert_null(gw_shards_lookup_peer(t, k));
    gw_shards_free(t);
    cJSON_Delete(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_lookup),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_many_peers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
