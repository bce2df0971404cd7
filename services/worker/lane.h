/*
 * lane: one PostgreSQL connection with its own thread, applying the batches
 * of the partitions it owns (partitions.h assigns each partition one lane).
 *
 * Transactions of different lanes touch disjoint partitions, hence disjoint
 * positions and recipients, so they run in parallel without waiting on each
 * other's locks; within a lane, batches run one at a time, in order, which
 * keeps partition order. The consumer thread pipelines: while a lane applies
 * batch k, the consumer fetches and decodes batch k+1 of the same lane into
 * its open batch, and hands it over (a swap, no copy) once the lane is done.
 *
 * The lane's job, in order: dead letters of invalid commands acknowledged,
 * then the transaction(s) (bisect.h), metrics and a debug line; then the
 * messages are destroyed and the result waits for the consumer thread, which
 * moves its positions table from it (or resyncs after a failure).
 *
 * Threads: lane_submit, lane_take and lane_idle are called by the consumer
 * thread only; lanes_wait blocks it until some lane finishes. A finishing
 * lane also wakes the consumer's Kafka poll (rd_kafka_queue_yield).
 */
#ifndef PROFILED_WORKER_LANE_H
#define PROFILED_WORKER_LANE_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

#include "apply.h"
#include "batch.h"
#include "metrics.h"
#include "profile_limits.h"

/* The metrics a lane updates (thread-safe counters of the worker's registry). */
typedef struct lane_metrics {
    metrics_counter_t *applied, *duplicates, *stale, *refused, *dead_lettered, *batches;
    metrics_histogram_t *batch_size, *apply_seconds;
} lane_metrics_t;

typedef struct lane_config {
    const char *pg_dsn, *group, *topic, *dlq_topic;
    limits_t limits;         /* the commands were decoded with */
    rd_kafka_t *dlq;         /* shared dead-letter producer */
    rd_kafka_queue_t *wake;  /* the consumer's queue: yielded when a job ends */
    const lane_metrics_t *m; /* may outlive nothing: owned by the worker */
} lane_config_t;

typedef struct lane_result {
    apply_status_t status;
    char errstr[1024];
    /* one per partition of the batch; on APPLY_OK `expected` is the new next offset */
    apply_position_t *positions;
    size_t position_count;
} lane_result_t;

typedef struct lanes lanes_t;
typedef struct lane lane_t;

/* Starts `count` lane threads (connections open lazily, on the first job). */
lanes_t *lanes_new(int count, const lane_config_t *config);
/* Waits for the jobs in flight, stops the threads, closes the connections. */
void lanes_destroy(lanes_t *lanes);

int lanes_count(const lanes_t *lanes);
lane_t *lanes_get(lanes_t *lanes, int index);

/* Blocks until some lane has a result to take, or timeout_ms passed. */
void lanes_wait(lanes_t *lanes, int timeout_ms);

/* No job in flight and no result waiting. */
bool lane_idle(lane_t *lane);

/* Hands `open` to an idle lane: the lane takes its items (swapping batches, so
 * `open` comes back empty with the lane's spare memory), with the positions
 * PostgreSQL holds for the batch's partitions (`next` unused). */
void lane_submit(lane_t *lane, batch_t *open, const apply_position_t *positions, size_t position_count);

/* When the lane finished a job: fills `result` (positions valid until the
 * next lane_submit) and makes the lane idle; false while it runs or is idle. */
bool lane_take(lane_t *lane, lane_result_t *result);

#endif
