/*
 * worker: the one state struct of profiled-worker and its configuration.
 *
 * Threads: everything here belongs to the main (consumer) thread, which polls
 * Kafka, builds batches and runs the PostgreSQL transactions. librdkafka calls
 * the rebalance callback on that thread too (from rd_kafka_consumer_poll). The
 * ops HTTP thread reads only the atomics marked "shared" and the metrics
 * registry (itself thread-safe).
 */
#ifndef PROFILED_WORKER_WORKER_H
#define PROFILED_WORKER_WORKER_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "batch.h"
#include "cfg.h"
#include "lag.h"
#include "metrics.h"
#include "profile_limits.h"

typedef struct worker_config {
    char *kafka_brokers;
    char *kafka_topic;
    char *kafka_dlq_topic;
    char *kafka_properties;
    char *pg_dsn;
    char *log_level;
    char *group;
    char *instance_id;
    int64_t session_timeout_ms;
    int64_t batch_max_commands;
    int64_t batch_max_wait_ms;
    char *ops_addr;
    int64_t ops_port;
    int64_t applied_retention_ms;
    int64_t purge_interval_ms;
    bool create_topics;
    int64_t topic_partitions;
    char *migrations_dir;
    int64_t retry_max_backoff_ms;
    int64_t shutdown_deadline_ms;
    int64_t max_body_bytes;
    int64_t max_depth;
    int64_t max_key_bytes;
    int64_t max_string_bytes;
    int64_t max_keys;
} worker_config_t;

extern const cfg_entry_t worker_config_table[];
extern const size_t worker_config_count;

/* What the worker knows of one assigned partition of the command topic. */
typedef struct worker_partition {
    int32_t partition;
    bool known;           /* next_offset was read from PostgreSQL (else: waiting for a resync) */
    bool stored;          /* a kafka_positions row exists (else the first commit inserts it) */
    int64_t next_offset;  /* the position PostgreSQL holds: every offset below it is applied */
    int64_t fetch_offset; /* the next offset expected from Kafka; > next_offset while a batch is open */
} worker_partition_t;

typedef struct worker_metrics {
    metrics_counter_t *applied;
    metrics_counter_t *duplicates;
    metrics_counter_t *stale;
    metrics_counter_t *dead_lettered;
    metrics_counter_t *batches;
    metrics_counter_t *apply_failures;
    metrics_counter_t *fenced;
    metrics_counter_t *purged;
    metrics_histogram_t *batch_size;
    metrics_histogram_t *apply_seconds;
} worker_metrics_t;

typedef struct worker {
    const worker_config_t *config;
    limits_t limits;
    metrics_t *metrics;
    worker_metrics_t m;

    rd_kafka_t *consumer;
    rd_kafka_t *dlq; /* idempotent acks=all producer for dead letters */
    PGconn *pg;      /* NULL while disconnected */

    worker_partition_t *partitions; /* assigned partitions of config->kafka_topic */
    size_t partition_count, partition_cap;

    batch_t batch;       /* the open batch */
    bool needs_resync;   /* positions must be re-read from PostgreSQL and partitions re-seeked */
    int64_t retry_at_ms; /* monotonic time of the next PostgreSQL attempt while failing */
    int64_t backoff_ms;  /* current retry backoff */
    uint64_t rng;        /* jitter */
    int64_t next_purge_ms;
    int64_t next_lag_ms;
    int64_t next_ping_ms;
    int64_t next_commit_ms;
    bool kafka_commit_due; /* positions moved since the last Kafka commit */
    bool fatal;            /* the consumer hit a fatal error (fenced): apply nothing, exit non-zero */
    lag_t *lag;            /* end offsets from the broker; positions published by this thread */

    /* shared with the ops thread */
    atomic_bool joined; /* a first assignment (possibly empty) arrived */
    atomic_bool pg_ok;  /* the last PostgreSQL round trip succeeded */
} worker_t;

/* Set by SIGTERM/SIGINT; the poll loop checks it. */
extern volatile sig_atomic_t worker_stop;

int64_t worker_now_ms(void);

/* Runs the consumer until worker_stop; returns the process exit code. */
int worker_run(const worker_config_t *config);

#endif
