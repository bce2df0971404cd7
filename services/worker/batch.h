/*
 * batch: the commands one transaction applies, in the order they were
 * consumed (per partition, offset order).
 *
 * Ownership: batch_add copies each record's key and value (one allocation)
 * and releases the Kafka message at once. A fetched message pins the whole
 * fetch response it came in, so holding messages made librdkafka's buffers
 * most of the worker's memory (measured: 63 MB of 74 at the peak with one
 * lane); a copy costs the record's size only. A decoded command borrows from
 * its copy (its profile stays msgpack). Decoding writes the profile's JSON
 * text to validate it, into batch->json, which holds only the last one: the
 * lane writes the JSON again while it streams the rows to PostgreSQL, so a
 * batch holds each profile once.
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
    uint8_t *record;    /* owned: the key's bytes, then the value's */
    const uint8_t *key; /* NULL when the record had none */
    size_t key_len;
    const uint8_t *value; /* the command, msgpack */
    size_t value_len;
    int32_t partition;
    int64_t offset;
    batch_kind_t kind;
    bool dead_lettered;      /* its dead letter was acknowledged by Kafka */
    codec_command_t command; /* BATCH_COMMAND */
    /* BATCH_INVALID, BATCH_REJECTED: owned, NULL otherwise. A pointer, not the
     * struct: its 256-byte message would be half of every item, and a lane
     * holds up to two batches of PROFILED_BATCH_MAX_COMMANDS items. */
    codec_failure_t *failure;
} batch_item_t;

typedef struct batch {
    batch_item_t *items;
    size_t count, cap;
    buf_t json;        /* scratch of the decoder */
    int64_t opened_ms; /* when the first item arrived */
} batch_t;

/* Copies `message` into the batch, destroys it (ownership is taken) and decodes
 * the copy (into a COMMAND or INVALID item). `max_items` is the most the batch
 * will hold (PROFILED_BATCH_MAX_COMMANDS): the item array grows by doubling up
 * to it, not past it, so a full batch costs max_items items, not the next power
 * of two (8,192 for 5,000). */
void batch_add(batch_t *batch, rd_kafka_message_t *message, const limits_t *limits, size_t max_items);

/* Marks item `at` BATCH_REJECTED with `reason` (PostgreSQL refused its row). */
void batch_reject(batch_t *batch, size_t at, const char *reason);

/* Frees the records; keeps the rest of the memory. */
void batch_clear(batch_t *batch);
void batch_free(batch_t *batch);

#endif
