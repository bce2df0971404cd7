/* The configuration table of profiled-worker: one line per PROFILED_* variable. */
#include <stddef.h>

#include "cfg_shared.h"
#include "worker.h"

#ifndef PROFILED_MIGRATIONS_DIR_DEFAULT
#define PROFILED_MIGRATIONS_DIR_DEFAULT "/usr/share/profiled/migrations"
#endif

/* The rows both binaries share (Kafka, PostgreSQL DSN, log level, shutdown
 * deadline, profile limits) come from cfg_shared.h. */
#define F(field) offsetof(worker_config_t, field)

const cfg_entry_t worker_config_table[] = {
    CFG_SHARED_KAFKA(F),
    {"PROFILED_KAFKA_DLQ_TOPIC", CFG_STRING, F(kafka_dlq_topic), "profiles.commands.dlq", 0, 0, false,
     "Dead-letter topic for commands that cannot be applied"},
    CFG_SHARED_PG_DSN(F),
    CFG_SHARED_LOG_LEVEL(F),
    {"PROFILED_WORKER_GROUP", CFG_STRING, F(group), "profiled-worker", 0, 0, false,
     "Kafka consumer group; also the key of this group's positions in PostgreSQL"},
    {"PROFILED_WORKER_INSTANCE_ID", CFG_STRING, F(instance_id), "", 0, 0, false,
     "Static group membership (group.instance.id): a worker restarted under the same id takes its "
     "partitions back at once; empty = dynamic membership. Unique per live process (the pod name): a "
     "second process under the same id fences the first, which exits"},
    {"PROFILED_WORKER_SESSION_TIMEOUT", CFG_DURATION, F(session_timeout_ms), "6s", 1000, 300000, false,
     "Kafka session timeout: a dead worker's partitions move to another (or a replacement under another "
     "instance id) after this; shorter resumes sooner, but a pause longer than it (GC, network) costs a "
     "rebalance. Within the broker's group.min/max.session.timeout.ms (6s..30m by default)"},
    {"PROFILED_APPLY_CONNECTIONS", CFG_INT, F(apply_connections), "0", 0, 64, false,
     "PostgreSQL connections applying batches in parallel, each owning a share of the assigned "
     "partitions; 0 = the online cores, at least 2, at most 8 (see README, choosing connections)"},
    {"PROFILED_BATCH_MAX_COMMANDS", CFG_INT, F(batch_max_commands), "5000", 1, 100000, false,
     "Most commands applied in one transaction (bigger batches apply faster under backlog; see "
     "tests/bench/worker)"},
    {"PROFILED_BATCH_MAX_WAIT", CFG_DURATION, F(batch_max_wait_ms), "50ms", 1, 60000, false,
     "Longest a batch stays open after its first command"},
    {"PROFILED_OPS_ADDR", CFG_STRING, F(ops_addr), "127.0.0.1", 0, 0, false,
     "Address of the ops listener (/healthz, /readyz, /metrics)"},
    {"PROFILED_OPS_PORT", CFG_INT, F(ops_port), "9091", -1, 65535, false,
     "Port of the ops listener; 0 picks a free port (logged), -1 disables it"},
    {"PROFILED_APPLIED_RETENTION", CFG_DURATION, F(applied_retention_ms), "168h", 60000,
     INT64_C(315360000000), false,
     "How long applied command ids are kept to skip duplicates (168h = 7 days)"},
    {"PROFILED_PURGE_INTERVAL", CFG_DURATION, F(purge_interval_ms), "1m", 1000, 86400000, false,
     "How often ids past the retention are purged (1000 rows a statement, 10 statements a round)"},
    {"PROFILED_CREATE_TOPICS", CFG_BOOL, F(create_topics), "false", 0, 0, false,
     "Create the command and dead-letter topics at start when missing"},
    {"PROFILED_TOPIC_PARTITIONS", CFG_INT, F(topic_partitions), "6", 1, 10000, false,
     "Partitions of topics created by PROFILED_CREATE_TOPICS"},
    {"PROFILED_MIGRATIONS_DIR", CFG_STRING, F(migrations_dir), PROFILED_MIGRATIONS_DIR_DEFAULT, 0, 0, false,
     "Folder of the NNN_name.sql schema migrations"},
    {"PROFILED_RETRY_MAX_BACKOFF", CFG_DURATION, F(retry_max_backoff_ms), "10s", 100, 600000, false,
     "Cap of the exponential backoff while PostgreSQL (or the dead-letter topic) fails"},
    CFG_SHARED_SHUTDOWN_DEADLINE(F),
    CFG_SHARED_LIMITS(F),
};

const size_t worker_config_count = CFG_ENTRY_COUNT(worker_config_table);
