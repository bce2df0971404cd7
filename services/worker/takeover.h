/*
 * takeover: how fast a replacement worker resumes a dead one's partitions.
 *
 * Static group membership: with PROFILED_WORKER_INSTANCE_ID set (the pod name
 * in the Kubernetes manifests), a worker restarted under the same id takes its
 * partitions back at once, without waiting for the dead member's session to
 * expire or a rebalance of the whole group. A replacement under another id (a
 * pod rescheduled elsewhere) waits for the session timeout, which defaults to
 * 6 s (the broker's group.min.session.timeout.ms) rather than librdkafka's 45 s.
 *
 * If a second live process joins under the same instance id, the broker fences
 * the older one (FENCED_INSTANCE_ID), which librdkafka raises as a fatal error.
 * A fenced worker applies nothing more: it drops its open batch and exits
 * non-zero, so that Kubernetes restarts it (PostgreSQL's positions fence any
 * transaction it had in flight, so nothing is applied twice either way).
 *
 * The consumer never commits offsets (kcopy.h writes Kafka's copy of the
 * positions as a non-member), so FENCED_INSTANCE_ID reaches it only through its
 * group requests, that is when another process joined under its id: an offset
 * commit carrying a member id that librdkafka had reset after a client-side
 * session timeout used to fence a lone worker after a broker restart.
 */
#ifndef PROFILED_WORKER_TAKEOVER_H
#define PROFILED_WORKER_TAKEOVER_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sets group.instance.id (when `instance_id` is non-empty), session.timeout.ms
 * and heartbeat.interval.ms (a third of it) on the consumer's conf. */
int takeover_conf(rd_kafka_conf_t *conf, const char *instance_id, int64_t session_timeout_ms, char *errstr,
                  size_t errstr_size) __attribute__((warn_unused_result));

/* True, with an error line, once the consumer hit a fatal error (a fenced static
 * member): the caller stops at the first true. Cheap while false (an atomic read). */
bool takeover_fatal(rd_kafka_t *consumer);

#endif
