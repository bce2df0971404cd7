/*
 * producer: the Kafka producer of one loop (producer.c): created at start,
 * its reports served on the loop thread, flushed and destroyed after the
 * loop stopped. Readiness (kafka_up, kafka_fatal) is kept in api_loop_t.
 */
#ifndef PROFILED_API_PRODUCER_H
#define PROFILED_API_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"

/* The delivery-report callback runs on the loop thread, inside rd_kafka_poll; its opaque is the loop
 * and the message's _private is what was given to rd_kafka_produce. */
typedef void (*api_delivery_fn)(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, void *opaque);

int api_producer_init(api_loop_t *loop, api_delivery_fn delivered, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
/* Flushes up to deadline_us (monotonic), purges what is left, destroys. After the loop stopped. */
void api_producer_destroy(api_loop_t *loop, int64_t deadline_us);

#endif
