/*
 * lag: profiled_worker_lag{partition} as the backlog really is.
 *
 *   lag = the partition's end offset (asked of the broker) - the position
 *         PostgreSQL holds (every offset below it is applied)
 *
 * The end offsets come from real broker queries (rd_kafka_query_watermark_offsets)
 * on a thread of this module, once per interval, off the apply path: the cached
 * watermarks of rd_kafka_get_watermark_offsets stop moving while partitions are
 * paused, so the metric read near zero exactly during the outages it is for
 * (issue 13). While the broker cannot answer, the last end offset stays and
 * profiled_worker_end_offset_age_seconds{partition} says how old it is. The
 * positions come from the worker thread, which publishes what PostgreSQL holds
 * (not what was fetched), so a PostgreSQL outage shows as a growing lag.
 *
 * While PostgreSQL's position is unknown (a partition assigned while PostgreSQL
 * is down), the lag counts from Kafka's committed offset instead, the copy
 * kcopy.h writes (at most its interval behind, so the lag errs high), and
 * profiled_worker_lag_from_kafka_offsets{partition} says so (1).
 *
 * profiled_worker_oldest_unapplied_age_seconds{partition}: now minus the Kafka
 * timestamp of the command at PostgreSQL's position, remembered from the fetch
 * (lag_fetched, a ring of the last LAG_RING offsets a partition); 0 with no
 * lag, NaN while that command was not fetched (e.g. assigned during an outage).
 *
 * Threads: lag_track/lag_position/lag_fetched/lag_forget on the worker thread; the query
 * thread reads the slots; /metrics renders them on the ops thread. All shared
 * values are atomics.
 */
#ifndef PROFILED_WORKER_LAG_H
#define PROFILED_WORKER_LAG_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "metrics.h"

#define LAG_MAX_PARTITIONS 1024 /* partitions whose lag /metrics reports */

typedef struct lag lag_t;

/* Registers nothing yet; `topic` and `metrics` must outlive the lag_t. */
lag_t *lag_new(metrics_t *metrics, const char *topic, int64_t interval_ms);

/* Starts the query thread on `consumer` (thread-safe librdkafka calls only).
 * Returns 0, or -1 with errstr. lag_stop must run before rd_kafka_destroy. */
int lag_start(lag_t *lag, rd_kafka_t *consumer, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
void lag_stop(lag_t *lag);

/* After lag_stop and after the ops listener stopped (its gauges point here). */
void lag_destroy(lag_t *lag);

/* The partition is assigned: its gauges exist from now on; position unknown. */
void lag_track(lag_t *lag, int32_t partition);
/* The position PostgreSQL holds for the partition, or -1 when not read yet. */
void lag_position(lag_t *lag, int32_t partition, int64_t next_offset);
/* A command of the partition was fetched, with its Kafka timestamp (ms since the
 * epoch): the age of the oldest unapplied command is read from these. Per message:
 * two stores. */
void lag_fetched(lag_t *lag, int32_t partition, int64_t offset, int64_t timestamp_ms);
/* Revoked: the gauges read NaN and the partition is no longer queried. */
void lag_forget(lag_t *lag, int32_t partition);

#endif
