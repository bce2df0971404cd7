/*
 * dlq: the dead-letter producer. A command the codec rejects, or whose row
 * PostgreSQL refuses, is written to PROFILED_KAFKA_DLQ_TOPIC with its original
 * key and value and these headers (proto/README.md, "Dead letters"):
 *
 *   profiled-error-code       codec_error_name() of the reason, or "postgres_rejected"
 *   profiled-error-message    the reason, naming the field
 *   profiled-source-topic     where the command was read
 *   profiled-source-partition decimal
 *   profiled-source-offset    decimal
 *
 * The producer is idempotent with acks=all, and dlq_send waits for every
 * acknowledgement: the worker only commits a position past a dead-lettered
 * command after Kafka acknowledged its dead letter, so a crash cannot lose it
 * (at worst a dead letter is written twice).
 */
#ifndef PROFILED_WORKER_DLQ_H
#define PROFILED_WORKER_DLQ_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "batch.h"

#define DLQ_HEADER_CODE            "profiled-error-code"
#define DLQ_HEADER_MESSAGE         "profiled-error-message"
#define DLQ_HEADER_TOPIC           "profiled-source-topic"
#define DLQ_HEADER_PARTITION       "profiled-source-partition"
#define DLQ_HEADER_OFFSET          "profiled-source-offset"
#define DLQ_CODE_POSTGRES_REJECTED "postgres_rejected"

/* A new producer; `conf` is owned by the result (or destroyed on failure). */
rd_kafka_t *dlq_new(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);

/* Produces a dead letter for each item of batch->items[lo, hi) whose kind is
 * INVALID or REJECTED and that was not dead-lettered yet, then waits up to
 * timeout_ms for all acknowledgements. 0 when every such item is acknowledged
 * (item->dead_lettered set), -1 with errstr otherwise (retry later). *sent
 * receives the number acknowledged now. */
int dlq_send(rd_kafka_t *dlq, const char *dlq_topic, const char *source_topic, batch_t *batch, size_t lo,
             size_t hi, int timeout_ms, size_t *sent, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
