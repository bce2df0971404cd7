/*
 * test_kafka_admin: creating and deleting throwaway topics through librdkafka's
 * admin API, for integration tests that need a topic nobody else writes to.
 *
 * Both calls block for at most timeout_ms and are meant for test set-up and
 * tear-down only (never inside an event loop). Any rd_kafka_t will do: admin
 * requests ride on an existing producer or consumer handle.
 */
#ifndef PROFILED_TEST_KAFKA_ADMIN_H
#define PROFILED_TEST_KAFKA_ADMIN_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* Creates TOPIC with PARTITIONS partitions and one replica; 0, or -1 with errstr.
 * An already existing topic is an error: tests ask for fresh names. */
int test_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms, char *errstr,
                            size_t errstr_size) __attribute__((warn_unused_result));

/* Deletes TOPIC; 0, or -1 with errstr. */
int test_kafka_delete_topic(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                            size_t errstr_size) __attribute__((warn_unused_result));

#endif
