/*
 * ready: readiness (README "Probes"). Ready while every loop can answer something:
 * GETs from PostgreSQL, or PUTs (with a prompt 503 + Retry-After while Kafka is
 * down); unready when a loop reaches neither, or a producer hit a fatal error.
 * Draining is the caller's check.
 */
#ifndef PROFILED_API_READY_H
#define PROFILED_API_READY_H

#include <stdbool.h>
#include <stddef.h>

#include "api.h"

/* Readiness across the loops; the reason when not ready. Reads atomics only: any thread. */
bool api_ready(api_t *api, char *reason, size_t reason_size);
/* The broker state a loop's producer reported (statistics, or librdkafka's "all brokers
 * down" error). Loop thread. */
void api_ready_kafka_state(api_loop_t *loop, bool up);

#endif
