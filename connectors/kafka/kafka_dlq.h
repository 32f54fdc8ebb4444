/* kafka_dlq.h: the Kafka sink's dead-letter file: one JSON object per line for each message
 * that failed permanently (docs/SINKS.md, "kafka", "Dead letters"). Lines are buffered and
 * made durable together (write + fdatasync) before the deliveries they stand for complete.
 * Internal to connectors/kafka/; one thread.
 */
#ifndef GW_KAFKA_DLQ_H
#define GW_KAFKA_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "spool.h"

struct kafka_dlq;

/* Open (create, append) path; parent directories are created. Errors: ITR_ERR_IO (err set),
 * ITR_ERR_NOMEM. */
int kafka_dlq_open(struct kafka_dlq **out, const char *path, char *err, size_t errlen);
void kafka_dlq_close(struct kafka_dlq *q); /* NULL is a no-op */

/* Buffer the line for one message: {"ts","sink","reason","error","topic","partition","key",
 * "headers","payload"} (+ "key_encoding"/"payload_encoding":"base64" when not UTF-8).
 * Errors: ITR_ERR_NOMEM. */
int kafka_dlq_add(struct kafka_dlq *q, const char *sink, const char *reason, const char *error,
                  const gw_spool_record *rec);
/* Lines buffered and not yet committed. */
size_t kafka_dlq_pending(const struct kafka_dlq *q);
/* Write and fdatasync the buffered lines. Errors: ITR_ERR_IO (errno set): the file is cut
 * back and the lines are forgotten (the caller keeps the messages and retries). */
int kafka_dlq_commit(struct kafka_dlq *q);
const char *kafka_dlq_path(const struct kafka_dlq *q);

#endif
