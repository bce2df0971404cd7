/*
 * kafka_log: librdkafka's own log lines as profiled JSON lines, so that one
 * parser reads everything the worker prints. Runs on librdkafka's threads;
 * log_write is thread-safe (one write(2) per line).
 */
#ifndef PROFILED_KAFKA_LOG_H
#define PROFILED_KAFKA_LOG_H

#include <librdkafka/rdkafka.h>

/* Installs the callback on `conf` (before rd_kafka_new). */
void kafka_log_install(rd_kafka_conf_t *conf);

#endif
