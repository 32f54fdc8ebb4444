/* router_bench.c: nanoseconds per routed message (gw_router_match) at 10 and 1,000 routes, in
 * two layouts: "per_shard" (routes name their shard; ten per shard, half exact topics, half
 * globs: what precomputed per-shard candidates and the exact-topic hash are for) and
 * "all_glob" (every route is shard "*" with its own topic glob: the worst case, one glob call
 * per route tried). Median of 5 runs. Usage: router_bench [--json] [--quick]. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <intentra/error.h>

#include "router.h"
#include "shards.h"

#define RUNS     5
#define MSG_RING 4096

static const char *const sink_names[] = {"kafka", "archive"};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct layout {
    gw_shards *shards;
    gw_router *router;
    const gw_shard *msg_shard[MSG_RING];
    char msg_topic[MSG_RING][32];
    size_t msg_topic_len[MSG_RING];
} layout;

/* Build the shards object, the routes array and a ring of messages for one layout. */
static int build(layout *l, int per_shard, unsigned nroutes)
{
    char err[512], id[32], topic[64];
    cJSON *shards = cJSON_CreateObject(), *routes = cJSON_CreateArray();
    unsigned nshards = per_shard ? (nroutes + 9) / 10 : 1;
    int rc = -1;

    for (unsigned s = 0; s < nshards; s++) {
        snprintf(id, sizeof(id), "shard%u", s);
        cJSON_AddItemToObject(shards, id, cJSON_CreateObject());
    }
    for (unsigned i = 0; i < nroutes; i++) {
        cJSON *r = cJSON_CreateObject(), *m = cJSON_AddObjectToObject(r, "match");
        cJSON *sinks = cJSON_AddArrayToObject(r, "sinks"), *sk = cJSON_CreateObject();
        if (per_shard) {
            unsigned s = i / 10, j = i % 10;
            snprintf(id, sizeof(id), "shard%u", s);
            cJSON_AddStringToObject(m, "shard", id);
            if (j < 5)
                snprintf(topic, sizeof(topic), "exact.%u", j);
            else
                snprintf(topic, sizeof(topic), "glob%u.*", j);
        } else {
            cJSON_AddStringToObject(m, "shard", "*");
            snprintf(topic, sizeof(topic), "topic%u.*", i);
        }
        cJSON_AddStringToObject(m, "topic", topic);
        cJSON_AddStringToObject(sk, "sink", i % 2 ? "archive" : "kafka");
        cJSON_AddStringToObject(sk, "destination", "fleet.{shard}.{topic}");
        cJSON_AddItemToArray(sinks, sk);
        cJSON_AddItemToArray(routes, r);
    }
    if (gw_shards_build(&l->shards, shards, "bench", "", err, sizeof(err), NULL, 0) != ITR_OK ||
        gw_router_compile(&l->router, routes, "bench", "", l->shards, sink_names, 2, err,
                          sizeof(err), NULL, 0) != ITR_OK) {
        fprintf(stderr, "router_bench: %s\n", err);
        goto out;
    }
    /* Messages: every one matches some route (uniformly over the routes). */
    for (unsigned k = 0; k < MSG_RING; k++) {
        unsigned i = rnd(nroutes);
        if (per_shard) {
            unsigned s = i / 10, j = i % 10;
            l->msg_shard[k] = gw_shards_at(l->shards, s);
            if (j < 5)
                snprintf(l->msg_topic[k], sizeof(l->msg_topic[k]), "exact.%u", j);
            else
                snprintf(l->msg_topic[k], sizeof(l->msg_topic[k]), "glob%u.x%u", j, rnd(100));
        } else {
            l->msg_shard[k] = gw_shards_at(l->shards, 0);
            snprintf(l->msg_topic[k], sizeof(l->msg_topic[k]), "topic%u.x", i);
        }
        l->msg_topic_len[k] = strlen(l->msg_topic[k]);
    }
    rc = 0;
out:
    cJSON_Delete(shards);
    cJSON_Delete(routes);
    return rc;
}

static double run_once(const layout *l, unsigned msgs, double *deliveries)
{
    static const uint8_t peer[32] = {1, 2, 3};
    const gw_route_sink *out[GW_MAX_DELIVERIES];
    uint64_t total = 0, t0 = now_ns();
    for (unsigned k = 0; k < msgs; k++) {
        unsigned i = k & (MSG_RING - 1);
        total += gw_router_match(l->router, l->msg_shard[i], peer, l->msg_topic[i],
                                 l->msg_topic_len[i], out, NULL);
    }
    uint64_t dt = now_ns() - t0;
    *deliveries = (double)total / msgs;
    return (double)dt / msgs;
}

int main(int argc, char **argv)
{
    int json = 0, quick = 0;
    static const struct {
        const char *name;
        int per_shard;
        unsigned routes;
    } cases[] = {
        {"per_shard", 1, 10},
        {"per_shard", 1, 1000},
        {"all_glob", 0, 10},
        {"all_glob", 0, 1000},
    };
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else {
            fprintf(stderr, "usage: router_bench [--json] [--quick]\n");
            return 2;
        }
    }
    if (!json)
        printf("%-10s %7s %7s %10s %14s\n", "layout", "routes", "shards", "ns/msg",
               "deliveries/msg");
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        layout *l = calloc(1, sizeof(*l));
        double ns[RUNS], deliveries = 0;
        /* Enough messages for ~50-100 ms per run, fewer with --quick (CI smoke). */
        unsigned msgs = cases[c].per_shard || cases[c].routes <= 10 ? 2000000u : 100000u;
        if (quick)
            msgs /= 100;
        if (!l || build(l, cases[c].per_shard, cases[c].routes) < 0)
            return 1;
        run_once(l, msgs / 10, &deliveries); /* warm caches */
        for (int r = 0; r < RUNS; r++)
            ns[r] = run_once(l, msgs, &deliveries);
        qsort(ns, RUNS, sizeof(ns[0]), cmp_double);
        if (json)
            printf("{\"bench\":\"router\",\"layout\":\"%s\",\"routes\":%u,\"shards\":%zu,"
                   "\"ns_per_msg\":%.1f,\"deliveries_per_msg\":%.2f,\"runs\":%d}\n",
                   cases[c].name, cases[c].routes, gw_shards_count(l->shards), ns[RUNS / 2],
                   deliveries, RUNS);
        else
            printf("%-10s %7u %7zu %10.1f %14.2f\n", cases[c].name, cases[c].routes,
                   gw_shards_count(l->shards), ns[RUNS / 2], deliveries);
        gw_router_free(l->router);
        gw_shards_free(l->shards);
        free(l);
    }
    return 0;
}
