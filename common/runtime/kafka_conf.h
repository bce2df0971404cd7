/*
 * kafka_conf: building librdkafka configurations from profiled settings, so
 * that both binaries accept the same knobs: PROFILED_KAFKA_BROKERS and a
 * free-form list of extra librdkafka properties ("k=v,k=v", e.g. for TLS or
 * SASL) that an operator can pass without a new release.
 */
#ifndef PROFILED_KAFKA_CONF_H
#define PROFILED_KAFKA_CONF_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* Sets one property; on failure errstr names the property and librdkafka's reason. */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                   size_t errstr_size) __attribute__((warn_unused_result));

/* The one rule for PROFILED_KAFKA_PROPERTIES, in every binary: the list may not
 * set a property that carries a durability guarantee (DESIGN §2.1, §2.4):
 * enable.idempotence, acks (and its alias request.required.acks), partitioner,
 * enable.auto.commit, enable.auto.offset.store, isolation.level and
 * auto.offset.reset. Returns 0, or -1 with errstr naming the key, for a
 * malformed item or a guarded key: the binaries check it at start and stop. */
int kafka_conf_check_list(const char *list, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* Applies "k=v,k=v" (empty or NULL: nothing) after kafka_conf_check_list. A
 * value may not contain a comma. */
int kafka_conf_set_list(rd_kafka_conf_t *conf, const char *list, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* The one idempotent-producer setup: enable.idempotence=true and acks=all
 * (DESIGN §2.1), for the command producers and the worker's dead letters. */
int kafka_conf_set_idempotent(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* The settings every producer of commands must have, written once: the durability
 * guarantee (DESIGN §2.1: enable.idempotence=true, acks=all) and the partitioning contract
 * (proto/README.md §8: partitioner=murmur2_random, Kafka's Java default, so one recipient's commands
 * stay on one partition whoever produced them). The list cannot set these (kafka_conf_check_list). */
int kafka_conf_set_producer_contract(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* A new conf with bootstrap.servers, the shared reconnect backoff (50 ms doubling to 1 s,
 * so a client is back within ~1.2 s of a broker's return) and the extra list applied
 * last; NULL with errstr on failure.
 * The caller owns the result until rd_kafka_new takes it. */
rd_kafka_conf_t *kafka_conf_new(const char *brokers, const char *extra, char *errstr, size_t errstr_size);

/* A producer from `conf` (always taken: destroyed on failure) and its topic
 * handle: 0, or -1 with errstr naming the producer or PROFILED_KAFKA_TOPIC.
 * On failure *rk may be set (the caller's teardown destroys it). */
int kafka_producer_open(rd_kafka_conf_t *conf, const char *topic, rd_kafka_t **rk, rd_kafka_topic_t **rkt,
                        char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

#endif
