/*
 * cfg_shared: the configuration both binaries share, defined once: the Kafka
 * connection, the PostgreSQL DSN, the log level, the shutdown deadline and
 * the profile limits. Each binary's cfg table (cfg.h) places these rows with
 * its own offset macro, e.g. CFG_SHARED_KAFKA(API_CFG), so the variables have
 * the same default, bounds and help text in every --help (tests/common checks
 * it on the built binaries), and the config structs only need fields of
 * these names: kafka_brokers, kafka_topic, kafka_properties (char *), pg_dsn,
 * log_level (char *), shutdown_deadline_ms and max_* (int64_t).
 *
 * Choices where the binaries used to differ (issue 14):
 * - PROFILED_PG_DSN defaults to empty, i.e. libpq's own defaults and its PG*
 *   environment (PGHOST, PGDATABASE, PGSERVICE, PGPASSFILE...): a built-in
 *   "host=... dbname=..." would silently override those in production.
 * - PROFILED_SHUTDOWN_DEADLINE is 20s, 1s..10m: under Kubernetes' default
 *   terminationGracePeriodSeconds (30s) with room for endpoint removal, so a
 *   drain is not cut by SIGKILL; 0 would drop in-flight work, hence 1s.
 * - PROFILED_MAX_BODY_BYTES is at least 1 KiB in both: a smaller limit cannot
 *   hold a typical profile, and the worker must accept what the api accepts.
 * - PROFILED_KAFKA_PROPERTIES follows one rule (kafka_conf_check_list): it
 *   may not set a durability property; a binary given one stops at start.
 */
#ifndef PROFILED_CFG_SHARED_H
#define PROFILED_CFG_SHARED_H

#include <stdint.h>

#include "cfg.h"
#include "profile_limits.h"

/* clang-format off: one table row a paragraph reads better than the formatter's layout. */
#define CFG_SHARED_KAFKA(OFF)                                                                                \
    {"PROFILED_KAFKA_BROKERS",                                                                               \
     CFG_STRING,                                                                                             \
     OFF(kafka_brokers),                                                                                     \
     "127.0.0.1:9092",                                                                                       \
     0,                                                                                                      \
     0,                                                                                                      \
     false,                                                                                                  \
     "Kafka bootstrap servers (host:port,...)."},                                                            \
        {"PROFILED_KAFKA_TOPIC",          CFG_STRING, OFF(kafka_topic), "profiles.commands", 0, 0, false,    \
         "Topic of the replace commands."},                                                                  \
    {                                                                                                        \
        "PROFILED_KAFKA_PROPERTIES", CFG_STRING, OFF(kafka_properties), NULL, 0, 0, true,                    \
            "Extra librdkafka properties, k=v,k=v (TLS, SASL...). They may not set enable.idempotence, "     \
            "acks, request.required.acks, partitioner, enable.auto.commit, enable.auto.offset.store, "       \
            "isolation.level or auto.offset.reset (the durability guarantees): a binary given one "          \
            "stops at start."                                                                                \
    }

#define CFG_SHARED_PG_DSN(OFF)                                                                               \
    {                                                                                                        \
        "PROFILED_PG_DSN", CFG_STRING, OFF(pg_dsn), NULL, 0, 0, true,                                        \
            "libpq connection string of the profile store (empty: libpq's defaults and PG* "                 \
            "environment)."                                                                                  \
    }

#define CFG_SHARED_LOG_LEVEL(OFF)                                                                            \
    {                                                                                                        \
        "PROFILED_LOG_LEVEL", CFG_STRING, OFF(log_level), "info", 0, 0, false, "debug, info, warn or error." \
    }

#define CFG_SHARED_SHUTDOWN_DEADLINE(OFF)                                                                    \
    {                                                                                                        \
        "PROFILED_SHUTDOWN_DEADLINE", CFG_DURATION, OFF(shutdown_deadline_ms), "20s", 1000, 600000, false,   \
            "After SIGTERM, the time to finish in-flight work before exiting: the api answers held "         \
            "requests (503 past it) and flushes its producer; the worker finishes its batch, commits "       \
            "and leaves the group (exit non-zero past it)."                                                  \
    }

/* The defaults are profile_limits.h's, as text (cfg parses defaults like the environment). */
#define CFG_SHARED_LIMITS(OFF)                                                                               \
    {"PROFILED_MAX_BODY_BYTES",                                                                              \
     CFG_SIZE,                                                                                               \
     OFF(max_body_bytes),                                                                                    \
     "256KiB",                                                                                               \
     1024,                                                                                                   \
     INT64_C(67108864),                                                                                      \
     false,                                                                                                  \
     "Largest profile request or command, in bytes (the api answers 413 above it)."},                        \
        {"PROFILED_MAX_DEPTH",                                                                               \
         CFG_INT,                                                                                            \
         OFF(max_depth),                                                                                     \
         "32",                                                                                               \
         1,                                                                                                  \
         1000,                                                                                               \
         false,                                                                                              \
         "Deepest nesting of objects and arrays inside a profile."},                                         \
        {"PROFILED_MAX_KEY_BYTES",                                                                           \
         CFG_SIZE,                                                                                           \
         OFF(max_key_bytes),                                                                                 \
         "256",                                                                                              \
         1,                                                                                                  \
         1048576,                                                                                            \
         false,                                                                                              \
         "Longest object key in a profile, in bytes."},                                                      \
        {"PROFILED_MAX_STRING_BYTES",                                                                        \
         CFG_SIZE,                                                                                           \
         OFF(max_string_bytes),                                                                              \
         "64KiB",                                                                                            \
         1,                                                                                                  \
         INT64_C(67108864),                                                                                  \
         false,                                                                                              \
         "Longest string in a profile, in bytes."},                                                          \
    {                                                                                                        \
        "PROFILED_MAX_KEYS", CFG_INT, OFF(max_keys), "1000", 1, 1000000, false,                              \
            "Most entries of one object, and elements of one array, in a profile."                           \
    }
/* clang-format on */

/* The one limits builder: a config struct's PROFILED_MAX_* fields (loaded
 * within the bounds above, so the casts cannot truncate) as a limits_t. */
#define CFG_SHARED_LIMITS_OF(config)                                                                         \
    ((limits_t){                                                                                             \
        .max_body_bytes = (size_t)(config)->max_body_bytes,                                                  \
        .max_depth = (uint32_t)(config)->max_depth,                                                          \
        .max_key_bytes = (uint32_t)(config)->max_key_bytes,                                                  \
        .max_string_bytes = (uint32_t)(config)->max_string_bytes,                                            \
        .max_keys = (uint32_t)(config)->max_keys,                                                            \
    })

#endif
