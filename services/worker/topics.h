/*
 * topics: creating the command and dead-letter topics when missing
 * (PROFILED_CREATE_TOPICS), through the admin API of an existing handle.
 * Blocks up to timeout_ms; start-up only.
 */
#ifndef PROFILED_WORKER_TOPICS_H
#define PROFILED_WORKER_TOPICS_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* Creates each missing topic with `partitions` partitions and the broker's
 * default replication; an existing topic is left as it is. */
int topics_create(rd_kafka_t *rk, const char *const *names, size_t count, int partitions, int timeout_ms,
                  char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

#endif
