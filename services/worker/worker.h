/*
 * worker: the one state struct of profiled-worker and its configuration.
 *
 * Threads: everything here belongs to the main (consumer) thread, which polls
 * Kafka, decodes commands into one open batch per lane, hands batches to the
 * lanes (lane.h: one thread and one PostgreSQL connection each) and moves the
 * positions table from their results. librdkafka calls the rebalance callback
 * on that thread too (from rd_kafka_consumer_poll). The ops HTTP thread reads
 * only the atomics marked "shared" and the metrics registry (thread-safe).
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
#include "lane.h"
#include "metrics.h"
#include "partitions.h"
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
    int64_t apply_connections; /* 0: sized to the machine (worker_apply_connections) */
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

typedef struct worker_metrics {
    lane_metrics_t lane; /* applied, skipped, dead-lettered, batches, batch size, apply seconds */
    metrics_counter_t *apply_failures;
    metrics_counter_t *fenced;
    metrics_counter_t *purged;
    metrics_counter_t *fetch_restarts;
} worker_metrics_t;

typedef struct worker {
    const worker_config_t *config;
    limits_t limits;
    metrics_t *metrics;
    worker_metrics_t m;

    rd_kafka_t *consumer;
    rd_kafka_queue_t *consumer_queue; /* yielded by lanes to end a poll early */
    rd_kafka_t *dlq;                  /* idempotent acks=all producer for dead letters */
    PGconn *pg; /* control connection (positions, ping, purge); NULL while disconnected */

    parts_t parts;     /* assigned partitions of config->kafka_topic */
    lanes_t *lanes;    /* the apply connections */
    batch_t *open;     /* the open batch of each lane */
    bool drained;      /* the last poll found nothing fetched: flush open batches now */
    bool needs_resync; /* positions must be re-read from PostgreSQL and partitions re-seeked */
    /* polled since the consumer queue was last seen empty, against librdkafka's
     * queue limits as it holds them: when either reached its limit, the fetcher
     * may be asleep (worker_restart_fetch) */
    int64_t polled_messages, polled_bytes;
    int64_t queue_limit_messages, queue_limit_bytes;
    int64_t retry_at_ms; /* monotonic time of the next PostgreSQL attempt while failing */
    int64_t backoff_ms;  /* current retry backoff */
    uint64_t rng;        /* jitter */
    int64_t next_purge_ms;
    int64_t next_lag_ms;
    int64_t next_ping_ms;
    bool fatal;          /* the consumer hit a fatal error (fenced): apply nothing, exit non-zero */
    lag_t *lag;          /* end offsets from the broker; positions published by this thread */
    struct kcopy *kcopy; /* the positions' copy in Kafka's committed offsets (kcopy.h) */

    /* shared with the ops thread */
    atomic_bool joined; /* a first assignment (possibly empty) arrived */
    atomic_bool pg_ok;  /* the last PostgreSQL round trip succeeded */
} worker_t;

/* Set by SIGTERM/SIGINT; the poll loop checks it. */
extern volatile sig_atomic_t worker_stop;

int64_t worker_now_ms(void);

/* PROFILED_APPLY_CONNECTIONS resolved: the setting, or when 0 the online
 * cores clamped to [2, WORKER_AUTO_CONNECTIONS_MAX]. */
#define WORKER_AUTO_CONNECTIONS_MAX 8
int worker_apply_connections(const worker_config_t *config);

/* Runs the consumer until worker_stop; returns the process exit code. */
int worker_run(const worker_config_t *config);

#endif
