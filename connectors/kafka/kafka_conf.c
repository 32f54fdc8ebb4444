/* kafka_conf.c: parse and check the "kafka" sink's keys; build librdkafka configurations. */
#define _GNU_SOURCE /* strdup */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <intentra/error.h>

#include "json_check.h"
#include "kafka_conf.h"
#include "sinks.h"

/* Producer defaults set before the user's properties (which may override them). */
static const char *const producer_defaults[][2] = {
    {"acks", "all"},
    {"enable.idempotence", "true"},
    {"compression.type", "lz4"},
    {"linger.ms", "5"},
    /* A broker back after an outage is found within a second, not librdkafka's 10 s. */
    {"reconnect.backoff.max.ms", "1000"},
    /* Broker states for the sink's status (parsed from the statistics events). */
    {"statistics.interval.ms", "1000"},
};

/* Properties the connector depends on: setting them would break its guarantees. */
static const char *const producer_reserved[] = {
    "delivery.report.only.error", /* every delivery report completes a delivery */
    "dr_cb",
    "dr_msg_cb",
    "background_event_cb",
    "log_cb",
    "log.queue",
    "opaque",
    "enabled_events",
    NULL,
};
static const char *const consumer_reserved[] = {
    "group.id", /* "consumer.group_id" */
    "enable.auto.commit",
    "enable.auto.offset.store", /* offsets are committed after acks */
    "log_cb",
    "log.queue",
    "opaque",
    "rebalance_cb",
    "offset_commit_cb",
    "enabled_events",
    NULL,
};

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int reserved(const char *const *list, const char *name)
{
    for (size_t i = 0; list[i]; i++) {
        if (!strcmp(list[i], name))
            return 1;
    }
    return 0;
}

/* "ORIGIN: PATH" -> origin and path for a gw_jctx. */
static void split_where(const char *where, char *origin, size_t ocap, char *path, size_t pcap)
{
    const char *sep = strstr(where, ": ");
    if (!sep) {
        snprintf(origin, ocap, "sinks");
        snprintf(path, pcap, "%s", where);
        return;
    }
    snprintf(origin, ocap, "%.*s", (int)(sep - where), where);
    snprintf(path, pcap, "%s", sep + 2);
}

/* An object of string values, each tried on a scratch librdkafka configuration so that a bad
 * name or value is reported with librdkafka's own text. */
static int parse_props(gw_jctx *c, const cJSON *obj, const char *key,
                       const char *const *reserved_list, const char *reserved_why,
                       struct kafka_prop **out, size_t *nout)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char got[64], errstr[512];
    int rc = ITR_OK;
    if (!v)
        return ITR_OK;
    size_t at = gw_jctx_push_key(c, key);
    if (!cJSON_IsObject(v)) {
        rc = gw_jctx_fail(c, "expected an object of librdkafka properties (string values), got %s",
                          gw_json_describe(v, got, sizeof(got)));
        goto out;
    }
    if ((rc = gw_jcheck_no_duplicates(c, v)) < 0)
        goto out;
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > KAFKA_MAX_PROPERTIES) {
        rc = gw_jctx_fail(c, "expected at most %d properties, got %zu", KAFKA_MAX_PROPERTIES, n);
        goto out;
    }
    *out = calloc(n ? n : 1, sizeof(**out));
    if (!*out) {
        rc = ITR_ERR_NOMEM;
        goto out;
    }
    rd_kafka_conf_t *scratch = rd_kafka_conf_new();
    for (const cJSON *p = v->child; p; p = p->next) {
        if (!cJSON_IsString(p) || !p->valuestring) {
            rc = gw_jctx_fail_key(c, p->string, "expected a string value, got %s",
                                  gw_json_describe(p, got, sizeof(got)));
            break;
        }
        const char *val = p->valuestring;
        if (reserved(reserved_list, p->string)) {
            rc = gw_jctx_fail_key(c, p->string, "%s", reserved_why);
            break;
        }
        if (rd_kafka_conf_set(scratch, p->string, val, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            size_t el = strlen(errstr);
            while (el && (errstr[el - 1] == '\n' || errstr[el - 1] == ' '))
                errstr[--el] = 0; /* some librdkafka messages end with a newline */
            rc = gw_jctx_fail_key(c, p->string, "%s", errstr);
            break;
        }
        struct kafka_prop *kp = &(*out)[(*nout)++];
        kp->name = dupstr(p->string);
        kp->value = dupstr(val);
        if (!kp->name || !kp->value) {
            rc = ITR_ERR_NOMEM;
            break;
        }
    }
    rd_kafka_conf_destroy(scratch);
out:
    gw_jctx_pop(c, at);
    return rc;
}

static const char *prop_find(const struct kafka_prop *p, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(p[i].name, name))
            return p[i].value;
    }
    return NULL;
}

/* {topic} and {key} only; "{{" and "}}" are literal braces. */
static int check_consumer_template(const char *t, char *bad, size_t cap)
{
    for (const char *p = t; *p; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            p++;
            continue;
        }
        if (*p == '}') {
            snprintf(bad, cap, "unmatched '}'");
            return -1;
        }
        if (*p != '{')
            continue;
        const char *end = strchr(p, '}');
        if (!end) {
            snprintf(bad, cap, "unterminated '{'");
            return -1;
        }
        size_t n = (size_t)(end - p - 1);
        if (!((n == 5 && !strncmp(p + 1, "topic", 5)) || (n == 3 && !strncmp(p + 1, "key", 3)))) {
            snprintf(bad, cap, "unknown variable {%.*s} (valid: {topic}, {key})", (int)n, p + 1);
            return -1;
        }
        p = end;
    }
    return 0;
}

static int parse_consumer(gw_jctx *c, const cJSON *obj, struct kafka_consumer_conf *cc)
{
    static const char *const keys[] = {
        "group_id",      "topics",     "address",      "intent",     "topic",
        "max_in_flight", "timeout_ms", "max_attempts", "properties", NULL};
    static const char *const addresses[] = {"header", "key", NULL};
    static const char *const intents[] = {"realtime", "reliable", NULL};
    const char *s;
    char got[64], bad[128];
    int rc, v;
    if ((rc = gw_jcheck_object(c, obj, keys)) < 0)
        return rc;
    if ((rc = gw_jget_string(c, obj, "group_id", 1, 0, 1, 255, NULL, &s)) < 0)
        return rc;
    if (!(cc->group_id = dupstr(s)))
        return ITR_ERR_NOMEM;
    const cJSON *topics = cJSON_GetObjectItemCaseSensitive(obj, "topics");
    if (!topics)
        return gw_jctx_fail_key(c, "topics",
                                "missing required key (expected an array of "
                                "Kafka topic names)");
    if (!cJSON_IsArray(topics) || cJSON_GetArraySize(topics) < 1 ||
        cJSON_GetArraySize(topics) > KAFKA_MAX_TOPICS)
        return gw_jctx_fail_key(c, "topics", "expected an array of 1..%d topic names, got %s",
                                KAFKA_MAX_TOPICS, gw_json_describe(topics, got, sizeof(got)));
    size_t at = gw_jctx_push_key(c, "topics");
    size_t i = 0;
    for (const cJSON *t = topics->child; t; t = t->next, i++) {
        if (!cJSON_IsString(t) || !t->valuestring[0] || strlen(t->valuestring) > 249) {
            size_t e = gw_jctx_push_index(c, i);
            rc = gw_jctx_fail(c,
                              "expected a topic name (1..249 characters, \"^regex\" allowed), "
                              "got %s",
                              gw_json_describe(t, got, sizeof(got)));
            gw_jctx_pop(c, e);
            gw_jctx_pop(c, at);
            return rc;
        }
        if (!(cc->topics[cc->ntopics++] = dupstr(t->valuestring)))
            return ITR_ERR_NOMEM;
    }
    gw_jctx_pop(c, at);
    if ((rc = gw_jget_enum(c, obj, "address", addresses, KAFKA_ADDRESS_HEADER, &v)) < 0)
        return rc;
    cc->address = (enum kafka_address)v;
    if ((rc = gw_jget_enum(c, obj, "intent", intents, 1, &v)) < 0)
        return rc;
    cc->reliable = v;
    if ((rc = gw_jget_string(c, obj, "topic", 0, 0, 1, 1024, "{topic}", &s)) < 0)
        return rc;
    if (strcmp(s, "header") != 0) {
        if (check_consumer_template(s, bad, sizeof(bad)))
            return gw_jctx_fail_key(c, "topic", "%s (expected \"header\" or a template)", bad);
        if (!(cc->topic = dupstr(s)))
            return ITR_ERR_NOMEM;
    }
    if ((rc = gw_jget_u32(c, obj, "max_in_flight", 1, 1u << 20, KAFKA_DEFAULT_CONSUMER_IN_FLIGHT,
                          &cc->max_in_flight)) < 0 ||
        (rc = gw_jget_u32(c, obj, "timeout_ms", 1, 3600000, KAFKA_DEFAULT_PUBLISH_TIMEOUT_MS,
                          &cc->timeout_ms)) < 0 ||
        (rc = gw_jget_u32(c, obj, "max_attempts", 0, 1000000, 0, &cc->max_attempts)) < 0)
        return rc;
    return parse_props(c, obj, "properties", consumer_reserved,
                       "set by the connector (offsets are committed after the peers "
                       "acknowledged; use consumer.group_id for the group)",
                       &cc->props, &cc->nprops);
}

int kafka_conf_parse(struct kafka_conf *kc, const cJSON *conf, const char *where, char *err,
                     size_t errlen)
{
    static const char *const keys[] = {
        "type",        "required",         "max_inflight_bytes",   "queue_messages",
        "brokers",     "properties",       "partitioner",          "headers",
        "disk_buffer", "dead_letter_file", "max_retry_backoff_ms", "consumer",
        NULL};
    static const char *const disk_keys[] = {"dir", "max_bytes", "segment_bytes", "spool_after_ms",
                                            NULL};
    static const char *const partitioners[] = {"key", "shard", NULL};
    char origin[256], path[GW_JPATH_MAX];
    gw_jctx c;
    const char *s;
    int rc, v;
    memset(kc, 0, sizeof(*kc));
    split_where(where, origin, sizeof(origin), path, sizeof(path));
    gw_jctx_init(&c, origin, path, err, errlen, NULL, 0);

    if ((rc = gw_jcheck_object(&c, conf, keys)) < 0)
        goto out;
    if ((rc = gw_jget_u32(&c, conf, "queue_messages", 1, 1u << 24, GW_SINK_DEFAULT_QUEUE_MESSAGES,
                          &kc->queue_messages)) < 0)
        goto out;
    if ((rc = gw_jget_string(&c, conf, "brokers", 0, 0, 1, 4096, NULL, &s)) < 0)
        goto out;
    if (s && !(kc->brokers = dupstr(s))) {
        rc = ITR_ERR_NOMEM;
        goto out;
    }
    if ((rc = parse_props(&c, conf, "properties", producer_reserved,
                          "set by the connector (delivery reports drive acknowledgements)",
                          &kc->props, &kc->nprops)) < 0)
        goto out;
    const char *bs = prop_find(kc->props, kc->nprops, "bootstrap.servers");
    if (!bs)
        bs = prop_find(kc->props, kc->nprops, "metadata.broker.list");
    if (kc->brokers && bs) {
        rc = gw_jctx_fail_key(&c, "brokers",
                              "set either brokers or properties "
                              "\"bootstrap.servers\", not both");
        goto out;
    }
    if (!kc->brokers && !bs) {
        rc = gw_jctx_fail_key(&c, "brokers", "missing required key (expected \"host:port,...\")");
        goto out;
    }
    if ((rc = gw_jget_enum(&c, conf, "partitioner", partitioners, KAFKA_PARTITION_BY_KEY, &v)) < 0)
        goto out;
    kc->partitioner = (enum kafka_partitioner)v;
    if ((rc = gw_jget_bool(&c, conf, "headers", 1, &kc->headers)) < 0 ||
        (rc = gw_jget_u64(&c, conf, "max_retry_backoff_ms", 100, 3600000,
                          KAFKA_DEFAULT_MAX_RETRY_BACKOFF, &kc->max_retry_backoff_ms)) < 0)
        goto out;
    if ((rc = gw_jget_string(&c, conf, "dead_letter_file", 0, 1, 1, 4000, NULL, &s)) < 0)
        goto out;
    if (s && !(kc->dead_letter_file = dupstr(s))) {
        rc = ITR_ERR_NOMEM;
        goto out;
    }
    const cJSON *db = cJSON_GetObjectItemCaseSensitive(conf, "disk_buffer");
    if (db && !cJSON_IsNull(db)) {
        size_t at = gw_jctx_push_key(&c, "disk_buffer");
        if ((rc = gw_jcheck_object(&c, db, disk_keys)) < 0 ||
            (rc = gw_jget_string(&c, db, "dir", 1, 0, 1, 4000, NULL, &s)) < 0) {
            gw_jctx_pop(&c, at);
            goto out;
        }
        if (!(kc->spool_dir = dupstr(s))) {
            rc = ITR_ERR_NOMEM;
            goto out;
        }
        if ((rc = gw_jget_u64(&c, db, "max_bytes", 1u << 20, 1ull << 50,
                              KAFKA_DEFAULT_SPOOL_MAX_BYTES, &kc->spool_max_bytes)) < 0 ||
            (rc = gw_jget_u64(&c, db, "segment_bytes", 64u << 10, 1ull << 32,
                              KAFKA_DEFAULT_SPOOL_SEGMENT_BYTES, &kc->spool_segment_bytes)) < 0 ||
            (rc = gw_jget_u64(&c, db, "spool_after_ms", 100, 600000, KAFKA_DEFAULT_SPOOL_AFTER_MS,
                              &kc->spool_after_ms)) < 0) {
            gw_jctx_pop(&c, at);
            goto out;
        }
        if (kc->spool_segment_bytes > kc->spool_max_bytes) {
            rc = gw_jctx_fail_key(&c, "segment_bytes",
                                  "expected at most max_bytes (%llu), got "
                                  "%llu",
                                  (unsigned long long)kc->spool_max_bytes,
                                  (unsigned long long)kc->spool_segment_bytes);
            gw_jctx_pop(&c, at);
            goto out;
        }
        gw_jctx_pop(&c, at);
        kc->disk_buffer = 1;
    } else {
        kc->spool_after_ms = KAFKA_DEFAULT_SPOOL_AFTER_MS;
    }
    const cJSON *cons = cJSON_GetObjectItemCaseSensitive(conf, "consumer");
    if (cons && !cJSON_IsNull(cons)) {
        size_t at = gw_jctx_push_key(&c, "consumer");
        rc = parse_consumer(&c, cons, &kc->consumer);
        gw_jctx_pop(&c, at);
        if (rc < 0)
            goto out;
        kc->has_consumer = 1;
    }
    /* The whole configurations must be accepted too (properties that conflict). */
    char e2[512];
    rd_kafka_conf_t *pc = kafka_conf_producer(kc, e2, sizeof(e2));
    if (!pc) {
        rc = gw_jctx_fail_key(&c, "properties", "%s", e2);
        goto out;
    }
    rd_kafka_conf_destroy(pc);
    if (kc->has_consumer) {
        rd_kafka_conf_t *cc = kafka_conf_consumer(kc, e2, sizeof(e2));
        if (!cc) {
            rc = gw_jctx_fail_key(&c, "consumer", "%s", e2);
            goto out;
        }
        rd_kafka_conf_destroy(cc);
    }
    rc = ITR_OK;
out:
    if (rc == ITR_ERR_NOMEM)
        snprintf(err, errlen, "%s: out of memory", where);
    return rc;
}

static void free_props(struct kafka_prop *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].name);
        free(p[i].value);
    }
    free(p);
}

void kafka_conf_free(struct kafka_conf *kc)
{
    free(kc->brokers);
    free_props(kc->props, kc->nprops);
    free(kc->spool_dir);
    free(kc->dead_letter_file);
    struct kafka_consumer_conf *cc = &kc->consumer;
    free(cc->group_id);
    for (size_t i = 0; i < cc->ntopics; i++)
        free(cc->topics[i]);
    free(cc->topic);
    free_props(cc->props, cc->nprops);
    memset(kc, 0, sizeof(*kc));
}

static int set1(rd_kafka_conf_t *rc, const char *name, const char *value, char *err, size_t errlen)
{
    char errstr[512];
    if (rd_kafka_conf_set(rc, name, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(err, errlen, "%s", errstr);
    return -1;
}

static int set_props(rd_kafka_conf_t *rc, const struct kafka_prop *p, size_t n, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (set1(rc, p[i].name, p[i].value, err, errlen))
            return -1;
    }
    return 0;
}

rd_kafka_conf_t *kafka_conf_producer(const struct kafka_conf *kc, char *err, size_t errlen)
{
    rd_kafka_conf_t *rc = rd_kafka_conf_new();
    for (size_t i = 0; i < sizeof(producer_defaults) / sizeof(producer_defaults[0]); i++) {
        if (set1(rc, producer_defaults[i][0], producer_defaults[i][1], err, errlen))
            goto fail;
    }
    if (kc->brokers && set1(rc, "bootstrap.servers", kc->brokers, err, errlen))
        goto fail;
    if (set_props(rc, kc->props, kc->nprops, err, errlen))
        goto fail;
    return rc;
fail:
    rd_kafka_conf_destroy(rc);
    return NULL;
}

rd_kafka_conf_t *kafka_conf_consumer(const struct kafka_conf *kc, char *err, size_t errlen)
{
    static const char *const producer_only[] = {"acks",
                                                "request.required.acks",
                                                "enable.idempotence",
                                                "compression.type",
                                                "compression.codec",
                                                "linger.ms",
                                                "queue.buffering.max.ms",
                                                "batch.num.messages",
                                                "batch.size",
                                                "message.timeout.ms",
                                                "delivery.timeout.ms",
                                                "retries",
                                                "message.send.max.retries",
                                                "queue.buffering.max.messages",
                                                "queue.buffering.max.kbytes",
                                                "enable.gapless.guarantee",
                                                "partitioner",
                                                "transactional.id",
                                                "transaction.timeout.ms",
                                                "sticky.partitioning.linger.ms",
                                                NULL};
    const struct kafka_consumer_conf *cc = &kc->consumer;
    rd_kafka_conf_t *rc = rd_kafka_conf_new();
    if (set1(rc, "reconnect.backoff.max.ms", "1000", err, errlen))
        goto fail;
    if (kc->brokers && set1(rc, "bootstrap.servers", kc->brokers, err, errlen))
        goto fail;
    /* Shared properties (security, addresses) apply to the consumer too; producer-only ones
     * would only make librdkafka warn. */
    for (size_t i = 0; i < kc->nprops; i++) {
        if (reserved(producer_only, kc->props[i].name))
            continue;
        if (set1(rc, kc->props[i].name, kc->props[i].value, err, errlen))
            goto fail;
    }
    if (set_props(rc, cc->props, cc->nprops, err, errlen))
        goto fail;
    if (set1(rc, "group.id", cc->group_id, err, errlen) ||
        set1(rc, "enable.auto.commit", "false", err, errlen) ||
        set1(rc, "enable.auto.offset.store", "false", err, errlen))
        goto fail;
    return rc;
fail:
    rd_kafka_conf_destroy(rc);
    return NULL;
}
