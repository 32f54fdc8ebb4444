/* kafka_consumer.h: the "kafka" sink's reverse path (docs/SINKS.md, "kafka", "Reverse path"):
 * a consumer in a consumer group whose records, each addressed to a peer, a shard or every
 * peer, are sent over intentra with env->publish(); a record's offset is committed only once
 * its publish completed (for Reliable: every targeted peer acknowledged), so delivery to the
 * fleet is at least once. Runs on the sink thread, wired into env->loop through librdkafka's
 * queue io events. Internal to connectors/kafka/.
 */
#ifndef GW_KAFKA_CONSUMER_H
#define GW_KAFKA_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "connector.h"
#include "kafka_conf.h"
#include "kafka_dlq.h"

struct kafka_consumer;

/* Counters (sink thread writes, any thread reads). */
typedef struct kafka_consumer_stats {
    uint64_t received;  /* records consumed */
    uint64_t published; /* publishes completed successfully */
    uint64_t retried;   /* publishes that failed and were tried again */
    uint64_t invalid;   /* records without a usable address (skipped, committed) */
    uint64_t committed; /* offsets committed */
} kafka_consumer_stats;

/* Start consuming kc->consumer.topics. dlq may be NULL (records given up after max_attempts
 * are then only logged). Errors: ITR_ERR_INVALID (no publish path in env), ITR_ERR_IO,
 * ITR_ERR_NOMEM; err says why. */
int kafka_consumer_open(struct kafka_consumer **out, const struct kafka_conf *kc, gw_sink_env *env,
                        struct kafka_dlq *dlq, char *err, size_t errlen);
/* Commit what completed, leave the group and free. Publishes still running complete into a
 * detached record that is freed when their done callback arrives. NULL is a no-op. */
void kafka_consumer_close(struct kafka_consumer *c);
void kafka_consumer_stats_get(const struct kafka_consumer *c, kafka_consumer_stats *out);

/* Parse an address ("peer:<64 hex>", "shard:<id>", "all"). Returns 0 and fills kind/target
 * (target points into s, target_len its length), or -1. */
int kafka_parse_target(const char *s, size_t len, int *kind, const char **target,
                       size_t *target_len);

#endif
