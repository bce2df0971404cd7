/*
 * batch: the commands one transaction applies, in the order they were
 * consumed (per partition, offset order).
 *
 * Ownership: the batch owns each rd_kafka_message_t until batch_clear; a
 * decoded command borrows from its message's payload, and its profile JSON
 * text lives in batch->json (item->json_off/json_len), so nothing is copied
 * twice.
 */
#ifndef PROFILED_WORKER_BATCH_H
#define PROFILED_WORKER_BATCH_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "profile_limits.h"

typedef enum batch_kind {
    BATCH_COMMAND,  /* decoded: goes through the fold */
    BATCH_INVALID,  /* the codec rejected it: dead-lettered, its offset only advances the position */
    BATCH_REJECTED, /* PostgreSQL rejected its row: dead-lettered after the split found it */
} batch_kind_t;

typedef struct batch_item {
    rd_kafka_message_t *message; /* owned */
    int32_t partition;
    int64_t offset;
    batch_kind_t kind;
    bool dead_lettered;      /* its dead letter was acknowledged by Kafka */
    codec_command_t command; /* BATCH_COMMAND */
    size_t json_off, json_len;
    codec_failure_t failure; /* BATCH_INVALID, BATCH_REJECTED */
} batch_item_t;

typedef struct batch {
    batch_item_t *items;
    size_t count, cap;
    buf_t json;
    int64_t opened_ms; /* when the first item arrived */
} batch_t;

/* Takes ownership of `message` and decodes it (into a COMMAND or INVALID item). */
void batch_add(batch_t *batch, rd_kafka_message_t *message, const limits_t *limits);

/* Destroys the messages; keeps the memory. */
void batch_clear(batch_t *batch);
void batch_free(batch_t *batch);

#endif
