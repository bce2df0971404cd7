/*
 * kafka_delivery: what a delivery report proves about a message: the api answers a PUT 200, and
 * profiled-import moves its checkpoint past a line, only on a report that proves the write.
 */
#ifndef PROFILED_KAFKA_DELIVERY_H
#define PROFILED_KAFKA_DELIVERY_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

/* True only when the report proves the broker wrote the message: no error, librdkafka's status
 * PERSISTED, and an offset. librdkafka 2.0's idempotent producer also reports messages it never
 * saw acknowledged as delivered, without an offset: when a later request of the partition succeeds
 * it "implicitly acks" every earlier message still queued for retry (rdkafka_request.c,
 * rd_kafka_dr_implicit_ack), on the premise that the broker refuses a sequence gap. A broker
 * holding no state for the producer id accepts any sequence, so after a NOT_LEADER refusal (a
 * broker just restarted) a fresh producer's message is reported PERSISTED, offset -1001, and was
 * never written. Such a report is not proof: the caller takes it as ambiguous (the api: 503, retry
 * with the same Idempotency-Key, never 200; profiled-import: the job stops before that line). */
bool kafka_delivery_written(const rd_kafka_message_t *rkmessage);

#endif
