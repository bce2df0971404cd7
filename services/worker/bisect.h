/*
 * bisect: applies a range of a batch, finding the rows PostgreSQL refuses.
 *
 * A range whose transaction is refused for its data (APPLY_REJECTED) is split
 * in two halves applied one after the other; a single refused command is
 * dead-lettered (acknowledged by Kafka first) and its range applied again
 * without it, its offset only moving the position. So one bad row costs
 * about log2(range) extra transactions, and the rows around it still apply in
 * order. Committed halves move `positions` (the expected positions of the
 * next transactions), so a later half is fenced on what the earlier one wrote.
 *
 * Threads: runs on the calling lane's thread; the dead-letter producer is
 * shared by every lane, so its sends are serialised by `dlq_lock` (dlq_send
 * waits for all of the producer's acknowledgements).
 */
#ifndef PROFILED_WORKER_BISECT_H
#define PROFILED_WORKER_BISECT_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "apply.h"
#include "batch.h"

#define BISECT_DLQ_TIMEOUT_MS 10000 /* wait for dead-letter acknowledgements */

typedef struct bisect {
    PGconn *conn;
    apply_scratch_t *scratch;
    rd_kafka_t *dlq;
    pthread_mutex_t *dlq_lock;
    const char *group, *topic, *dlq_topic;
    /* One per partition of the batch: stored/expected before the next
     * transaction (moved by each commit; `next` unused). */
    apply_position_t *positions;
    size_t position_count;
    /* what the committed transactions did */
    apply_counts_t counts;
    uint64_t commits;
    uint64_t dead_lettered;
} bisect_t;

/* Sends the dead letters of the INVALID items of batch->items[lo, hi) not sent
 * yet, and waits for their acknowledgement: 0, or -1 with errstr. */
int bisect_dead_letter(bisect_t *b, batch_t *batch, size_t lo, size_t hi, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* Applies batch->items[lo, hi) (dead letters of invalid items already
 * acknowledged) in one transaction, or in more when rows are refused.
 * APPLY_OK when everything committed; otherwise errstr says why, and some
 * halves may have committed (b->positions says which). */
apply_status_t bisect_apply(bisect_t *b, batch_t *batch, size_t lo, size_t hi, char *errstr,
                            size_t errstr_size) __attribute__((warn_unused_result));

#endif
