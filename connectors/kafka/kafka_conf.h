/* kafka_conf.h: the "kafka" sink's configuration (docs/SINKS.md, "kafka"): parsed and checked
 * from the sink's JSON object, and turned into librdkafka configurations for the producer and
 * the reverse-path consumer. Internal to connectors/kafka/.
 */
#ifndef GW_KAFKA_CONF_H
#define GW_KAFKA_CONF_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#define KAFKA_MAX_PROPERTIES 256
#define KAFKA_MAX_TOPICS     64

/* Defaults (documented in docs/SINKS.md). */
#define KAFKA_DEFAULT_SPOOL_MAX_BYTES     (1ull << 30)
#define KAFKA_DEFAULT_SPOOL_SEGMENT_BYTES (64ull << 20)
#define KAFKA_DEFAULT_SPOOL_AFTER_MS      2000
#define KAFKA_DEFAULT_MAX_RETRY_BACKOFF   10000
#define KAFKA_DEFAULT_CONSUMER_IN_FLIGHT  1024
#define KAFKA_DEFAULT_PUBLISH_TIMEOUT_MS  30000

enum kafka_partitioner { KAFKA_PARTITION_BY_KEY = 0, KAFKA_PARTITION_BY_SHARD };
enum kafka_address { KAFKA_ADDRESS_HEADER = 0, KAFKA_ADDRESS_KEY };

struct kafka_prop {
    char *name;
    char *value;
};

/* "consumer": the reverse path. */
struct kafka_consumer_conf {
    char *group_id;
    char *topics[KAFKA_MAX_TOPICS];
    size_t ntopics;
    enum kafka_address address;
    int reliable; /* "intent": reliable (1) | realtime (0) */
    char *topic;  /* intentra topic: a template over {topic} {key}, or NULL: header */
    uint32_t max_in_flight;
    uint32_t timeout_ms;   /* publish timeout */
    uint32_t max_attempts; /* 0: retry until acknowledged */
    struct kafka_prop *props;
    size_t nprops;
};

struct kafka_conf {
    char *brokers; /* NULL when properties carry bootstrap.servers */
    struct kafka_prop *props;
    size_t nprops;
    enum kafka_partitioner partitioner;
    int headers;
    int disk_buffer;
    char *spool_dir;
    uint64_t spool_max_bytes, spool_segment_bytes, spool_after_ms;
    char *dead_letter_file; /* NULL: none */
    uint64_t max_retry_backoff_ms;
    uint32_t queue_messages; /* the runtime's key, read to size internal tables */
    int has_consumer;
    struct kafka_consumer_conf consumer;
};

/* Parse and check conf (the sink's JSON object). where is "ORIGIN: sinks.NAME" (or just the
 * sink name). Writes "WHERE.key: problem" to err. Property names and values are checked with
 * librdkafka (rd_kafka_conf_set) so its own message is reported, e.g.
 *   conf/gateway.json: sinks.kafka.properties["linger.ms"]: Configuration property
 *   "linger.ms" value -5 is outside allowed range 0..900000
 * Errors: ITR_ERR_INVALID, ITR_ERR_NOMEM. kafka_conf_free releases what was parsed (also on
 * failure). */
int kafka_conf_parse(struct kafka_conf *kc, const cJSON *conf, const char *where, char *err,
                     size_t errlen);
void kafka_conf_free(struct kafka_conf *kc);

/* A librdkafka configuration for the producer: our defaults (acks=all,
 * enable.idempotence=true, compression.type=lz4, linger.ms=5, reconnect.backoff.max.ms=1000,
 * statistics.interval.ms=1000), then "brokers", then every property. NULL with err set on
 * failure. */
rd_kafka_conf_t *kafka_conf_producer(const struct kafka_conf *kc, char *err, size_t errlen);
/* The same for the consumer: the shared properties, then consumer.properties, then the
 * settings manual commits need (group.id, enable.auto.commit=false,
 * enable.auto.offset.store=false). */
rd_kafka_conf_t *kafka_conf_consumer(const struct kafka_conf *kc, char *err, size_t errlen);

#endif
