/*
 * kcopy: the copy of PostgreSQL's positions in Kafka's committed offsets of the
 * consumer group, for lag tools (kafka-consumer-groups, Burrow, exporters) and
 * as lag's fallback while PostgreSQL cannot be read. Nothing reads it back to
 * decide where to consume: PostgreSQL holds the positions.
 *
 * Why not rd_kafka_commit on the consumer: a consumer commit carries the
 * static member's group.instance.id and its member id, and librdkafka 2.0
 * treats FENCED_INSTANCE_ID on an OffsetCommit as fatal. After a broker
 * restart longer than the session timeout, librdkafka resets the member id
 * (session timed out client-side) and rejoins; a commit built or retried in
 * that window carries an empty or old member id, the broker answers
 * FENCED_INSTANCE_ID although no other process holds the id, and the worker
 * had to exit (issue 13's "spurious fence"). So the consumer never commits:
 * this module writes the copy as a transactional producer's offset commit
 * (TxnOffsetCommit) with group metadata that names no member, which the group
 * coordinator accepts from a non-member (Kafka's GroupCoordinator: the
 * member checks apply only when a member id, generation or instance id is
 * given). The consumer then meets FENCED_INSTANCE_ID only on its group
 * requests (JoinGroup, SyncGroup, Heartbeat), that is when another process
 * joined under its instance id: the zombie guarantee (takeover.h) is intact.
 *
 * Each round (once per interval, on a thread of its own, as the transaction
 * calls block while the broker is away) is one empty transaction holding the
 * offsets that moved. transactional.id = "profiled-worker-offsets/<group>/<id>",
 * <id> being the instance id (a restarted pod fences its own predecessor's
 * copier) or host and pid without static membership.
 *
 * Threads: kcopy_set/kcopy_forget on the worker thread, under a mutex; the
 * copier thread owns the producer.
 */
#ifndef PROFILED_WORKER_KCOPY_H
#define PROFILED_WORKER_KCOPY_H

#include <stdint.h>

#include "metrics.h"

typedef struct kcopy kcopy_t;

typedef struct kcopy_config {
    const char *brokers;
    const char *kafka_properties; /* the operator's PROFILED_KAFKA_PROPERTIES (TLS, SASL) */
    const char *group;
    const char *topic;
    const char *instance_id; /* empty or NULL: host and pid name the copier */
    int64_t interval_ms;
} kcopy_config_t;

/* The strings must outlive the kcopy_t. NULL with errstr on a configuration error. */
kcopy_t *kcopy_new(const kcopy_config_t *config, metrics_t *metrics, char *errstr, size_t errstr_size);

/* Starts the copier thread; 0, or -1 with errstr. */
int kcopy_start(kcopy_t *kc, char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

/* PostgreSQL holds `next_offset` for `partition` (worker thread). */
void kcopy_set(kcopy_t *kc, int32_t partition, int64_t next_offset);
/* The partition was revoked: its owner copies it from now on. */
void kcopy_forget(kcopy_t *kc, int32_t partition);

/* One last round (each step bounded by `final_ms`; none when 0 or when the last
 * round failed), then the thread ends. */
void kcopy_stop(kcopy_t *kc, int64_t final_ms);
void kcopy_destroy(kcopy_t *kc);

#endif
