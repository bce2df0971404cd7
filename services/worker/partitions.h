/*
 * partitions: what the consumer thread knows of each assigned partition of
 * the command topic, which lane applies it, and reading positions from
 * PostgreSQL (the truth: every offset below next_offset is applied).
 *
 * Threads: owned by the consumer thread. A lane never reads this table: it
 * gets a copy of its batch's positions when the batch is handed to it, and
 * the consumer moves next_offset when it collects the lane's result. A lane
 * has at most one batch in flight, so the positions handed with a batch are
 * always the committed ones.
 */
#ifndef PROFILED_WORKER_PARTITIONS_H
#define PROFILED_WORKER_PARTITIONS_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct parts_entry {
    int32_t partition;
    int lane;             /* index of the lane (PostgreSQL connection) that applies it */
    bool known;           /* next_offset was read from PostgreSQL (else: waiting for a resync) */
    bool stored;          /* a kafka_positions row exists (else the first commit inserts it) */
    int64_t next_offset;  /* the position PostgreSQL holds: every offset below it is applied */
    int64_t fetch_offset; /* the next offset expected from Kafka; > next_offset while a batch is open */
} parts_entry_t;

typedef struct parts {
    parts_entry_t *entries;
    size_t count, cap;
    int lane_count; /* lanes to spread partitions over */
} parts_t;

parts_entry_t *parts_find(parts_t *parts, int32_t partition);

/* The partition's entry, created (unknown, on the lane with the fewest
 * partitions) when missing. */
parts_entry_t *parts_add(parts_t *parts, int32_t partition);

void parts_remove(parts_t *parts, int32_t partition);

/* Partitions of `topic` in the table (lane -1: all; else only that lane's), offsets unset. */
rd_kafka_topic_partition_list_t *parts_list(const parts_t *parts, const char *topic, int lane);

/* Reads the positions of the partitions in `list` (adding them to the table)
 * into the entries and into the list's offsets: the stored next offset, or 0
 * when no row exists yet. Offset 0 rather than RD_KAFKA_OFFSET_BEGINNING: the
 * logical offset makes librdkafka look the offset up first, which delayed the
 * first fetch by ~500 ms (first row 0.6 s after start, 0.07-0.13 s with 0);
 * when retention deleted offset 0, auto.offset.reset=earliest starts at the
 * first record kept, as BEGINNING would. 0, or -1 with errstr. */
int parts_read_positions(parts_t *parts, PGconn *conn, const char *group, const char *topic,
                         rd_kafka_topic_partition_list_t *list, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

void parts_free(parts_t *parts);

#endif
