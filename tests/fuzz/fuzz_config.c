/* fuzz_config.c: libFuzzer target for the config loader (gw_config_parse_text): the ${VAR}
 * interpolation, the JSON syntax scanner and every validator, plus the shard table and router
 * built from an accepted document. Besides memory safety it checks the loader's promises:
 * a failure always leaves a message naming the origin and no config; an accepted config's
 * shards and routes serialize and rebuild to the same documents, and routing a message
 * renders templates within their buffers.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <intentra/error.h>

#include "config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Variables the seeds refer to, so interpolation paths beyond "unset" are reached. */
    setenv("FUZZ_SET", "127.0.0.1:7400", 1);
    setenv("FUZZ_QUOTE", "a\"b\\c\n", 1);
    setenv("FUZZ_EMPTY", "", 1);
    unsetenv("FUZZ_UNSET");
    return 0;
}

static void check_round_trip(const gw_config *cfg)
{
    char err[GW_ERR_LEN];
    const gw_shards *shards = gw_config_shards(cfg);
    const gw_router *router = gw_config_router(cfg);
    cJSON *sj = gw_shards_to_json(shards), *rj = gw_router_to_json(router);
    gw_shards *s2 = NULL;
    gw_router *r2 = NULL;
    if (!sj || !rj)
        abort();
    /* What the admin API serves must be accepted back unchanged. */
    if (gw_config_build_routing(cfg, sj, "fuzz shards", rj, "fuzz routes", &s2, &r2, err,
                                sizeof(err), NULL, 0) != ITR_OK)
        abort();
    cJSON *sj2 = gw_shards_to_json(s2), *rj2 = gw_router_to_json(r2);
    if (!sj2 || !rj2 || !cJSON_Compare(sj, sj2, 1) || !cJSON_Compare(rj, rj2, 1))
        abort();
    cJSON_Delete(sj);
    cJSON_Delete(rj);
    cJSON_Delete(sj2);
    cJSON_Delete(rj2);
    gw_router_free(r2);
    gw_shards_free(s2);
}

static void route_one(const gw_config *cfg)
{
    static const uint8_t peer[32] = {0xab};
    const gw_route_sink *rs[GW_MAX_DELIVERIES];
    const gw_shards *shards = gw_config_shards(cfg);
    const gw_shard *shard = gw_shards_count(shards) ? gw_shards_at(shards, 0) : NULL;
    char out[64];
    gw_msg m;
    memset(&m, 0, sizeof(m));
    m.shard = shard;
    m.shard_name = shard ? gw_shard_id(shard) : "none";
    m.shard_name_len = (uint32_t)strlen(m.shard_name);
    memcpy(m.peer_hex, "ab00000000000000000000000000000000000000000000000000000000000000", 65);
    m.topic = "fleet.telemetry";
    m.topic_len = 15;
    size_t n = gw_router_match(gw_config_router(cfg), shard, peer, m.topic, m.topic_len, rs, NULL);
    if (n > GW_MAX_DELIVERIES)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (gw_route_sink_index(rs[i]) >= gw_config_sink_count(cfg))
            abort();
        size_t d = gw_route_sink_destination(rs[i], &m, out, sizeof(out));
        size_t k = gw_route_sink_key(rs[i], &m, out, sizeof(out));
        if ((d != (size_t)-1 && d >= sizeof(out)) || (k != (size_t)-1 && k >= sizeof(out)))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[GW_ERR_LEN];
    gw_config *cfg = NULL;
    if (size > 65536)
        return 0;
    int r = gw_config_parse_text((const char *)data, size, "fuzz.json", &cfg, err, sizeof(err));
    if (r != ITR_OK) {
        if (cfg || strncmp(err, "fuzz.json", 9) != 0)
            abort();
        return 0;
    }
    check_round_trip(cfg);
    route_one(cfg);
    gw_config_free(cfg);
    return 0;
}
