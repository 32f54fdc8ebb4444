/* fuzz_admin_json.c: libFuzzer target for the admin API's request-body validators:
 * gw_admin_parse_json (UTF-8, NUL bytes, trailing text, duplicate members), the POST
 * /v1/publish schema (gw_admin_publish_parse) and the RFC 7386 merge patch used by PATCH
 * (gw_state_merge_patch). The first byte picks the mode; for the merge patch the rest is
 * "TARGET\nPATCH".
 *
 * Invariants checked: a parse either fails with a 4xx error naming a code, or yields a value;
 * a validated publish has a valid topic, a known target kind and a body within the input;
 * merge patches are idempotent (applying a patch twice equals applying it once) and leave
 * no null member where an object patch was applied.
 *
 * Built with INTENTRA_FUZZ=ON (CC=clang); otherwise FUZZ_ADMIN_STANDALONE replays files given
 * on the command line (the seed corpus test).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <intentra/endpoint.h>
#include <intentra/error.h>

#include "admin.h"
#include "state.h"

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static void check_error(const gw_ctl_error *e)
{
    CHECK(e->http_status >= 400 && e->http_status < 600);
    CHECK(e->code[0] != '\0');
    CHECK(e->message[0] != '\0');
}

/* No member of an object patch that was null survives in the result; recursively. */
static void check_patched(const cJSON *result, const cJSON *patch)
{
    if (!cJSON_IsObject(patch)) {
        CHECK(cJSON_Compare(result, patch, 1));
        return;
    }
    CHECK(cJSON_IsObject(result));
    for (const cJSON *p = patch->child; p; p = p->next) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(result, p->string);
        if (cJSON_IsNull(p)) {
            CHECK(r == NULL);
            continue;
        }
        CHECK(r != NULL);
        check_patched(r, p);
    }
}

static void fuzz_parse(const uint8_t *data, size_t size, int publish)
{
    cJSON *doc = NULL;
    gw_ctl_error e;
    memset(&e, 0, sizeof(e));
    int rc = gw_admin_parse_json((const char *)data, size, &doc, &e);
    if (rc != ITR_OK) {
        CHECK(doc == NULL);
        check_error(&e);
        return;
    }
    CHECK(doc != NULL);
    if (publish) {
        gw_admin_publish p;
        memset(&e, 0, sizeof(e));
        rc = gw_admin_publish_parse(doc, &p, &e);
        if (rc == ITR_OK) {
            CHECK(p.kind == GW_TARGET_PEER || p.kind == GW_TARGET_SHARD || p.kind == GW_TARGET_ALL);
            CHECK(p.target != NULL);
            CHECK(itr_topic_valid(p.topic, strlen(p.topic)));
            CHECK(p.priority <= 7);
            CHECK(p.timeout_ms >= 1 && p.timeout_ms <= GW_ADMIN_PUBLISH_MAX_TIMEOUT_MS);
            CHECK(p.body_len <= size);
            CHECK(p.body != NULL);
            if (p.kind == GW_TARGET_PEER)
                CHECK(strlen(p.target) == 64);
        } else {
            check_error(&e);
            CHECK(p.body == NULL);
        }
        gw_admin_publish_clear(&p);
    }
    cJSON_Delete(doc);
}

static void fuzz_merge(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl)
        return;
    /* Both through the request parser, as PATCH bodies are (no duplicate members: the live
     * documents come from the strict config parser and from earlier requests). */
    cJSON *target = NULL, *patch = NULL;
    gw_ctl_error e;
    if (gw_admin_parse_json((const char *)data, (size_t)(nl - data), &target, &e) == ITR_OK &&
        gw_admin_parse_json((const char *)nl + 1, size - (size_t)(nl - data) - 1, &patch, &e) ==
            ITR_OK) {
        cJSON *once = gw_state_merge_patch(target, patch);
        if (once) {
            check_patched(once, patch);
            cJSON *twice = gw_state_merge_patch(once, patch);
            if (twice)
                CHECK(cJSON_Compare(once, twice, 1));
            cJSON_Delete(twice);
        }
        cJSON_Delete(once);
    }
    cJSON_Delete(target);
    cJSON_Delete(patch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 16))
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_parse(data + 1, size - 1, 0);
        break;
    case 1:
        fuzz_parse(data + 1, size - 1, 1);
        break;
    default:
        fuzz_merge(data + 1, size - 1);
        break;
    }
    return 0;
}

#ifdef FUZZ_ADMIN_STANDALONE
int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        static uint8_t buf[1 << 16];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        n++;
    }
    printf("replayed %d inputs\n", n);
    return 0;
}
#endif
