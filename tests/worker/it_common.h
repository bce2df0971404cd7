/*
 * it_common: the harness of the worker's integration tests. Each test gets
 * fresh topics, a fresh consumer group and a PostgreSQL schema of its own
 * (the worker reaches it through `options=-csearch_path=...` in its DSN), runs
 * real profiled-worker binaries as child processes, and produces commands
 * with codec_encode through an idempotent producer.
 *
 * Every wait is bounded; a missing stack environment fails the test.
 */
#ifndef PROFILED_TEST_WORKER_IT_COMMON_H
#define PROFILED_TEST_WORKER_IT_COMMON_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"

typedef struct it {
    char topic[160];
    char dlq_topic[160];
    char group[160];
    char schema[128];
    char dsn[1024]; /* the stack's DSN, search_path set to `schema` */
    char log_path[512];
    const char *brokers;
    const char *stack; /* PROFILED_STACK: the stack script, for outages */
    int partitions;
    PGconn *pg;
    rd_kafka_t *producer;
    uint64_t nonce; /* first half of every command id of this test */
} it_t;

/* Topics (`partitions` each), group, schema; runs `profiled-worker migrate`. */
void it_setup(it_t *it, const char *name, int partitions);
/* Kills nothing (tests stop their workers), deletes the topics, drops the schema. */
void it_teardown(it_t *it);

/* Adds the test-only trigger counting committed writes per (recipient, command id). */
void it_add_write_counter(it_t *it);

/* Starts profiled-worker with this test's topics, group and DSN; `extra` is a
 * NULL-terminated list of "NAME=value" overrides (or NULL). */
pid_t it_worker_start(it_t *it, const char *const *extra);
/* The same, logging to "<log_path>.<tag>" instead of the test's log. */
pid_t it_worker_start_tagged(it_t *it, const char *const *extra, const char *tag);
/* SIGTERM, then waits up to timeout_ms: the exit status, or -1 (and SIGKILL) on timeout. */
int it_worker_stop(pid_t pid, int timeout_ms);
void it_worker_kill(pid_t pid);
/* true while the child runs. */
bool it_worker_alive(pid_t pid);

/* The id of command `seq` of this test (16 bytes). */
void it_command_id(const it_t *it, uint64_t seq, uint8_t id[16]);
/* Produces a replace command for `recipient` whose profile is
 * {"recipient": recipient, "seq": seq} (plus `pad` bytes of padding text when > 0). */
void it_produce(it_t *it, const char *recipient, uint64_t seq, bool has_version, uint64_t version,
                size_t pad);
/* Produces raw bytes (key may be NULL). */
/* A command of any kind (codec.h) with the id of `seq`; `body` is the profile (replace, merge)
 * or the operations (patch), NULL for a delete. */
void it_produce_kind(it_t *it, const char *recipient, uint64_t seq, codec_op_t op, const uint8_t *body,
                     size_t body_len);
void it_produce_raw(it_t *it, const void *key, size_t key_len, const void *value, size_t len);
/* Waits (bounded) until every produced message is acknowledged; fails the test otherwise. */
void it_flush(it_t *it);

/* The sum of the group's next offsets in PostgreSQL (progress), or -1 when unreadable. */
int64_t it_positions_sum(it_t *it);

/* Waits until the group's positions in PostgreSQL equal the high watermark of
 * every partition; false on timeout. */
bool it_wait_caught_up(it_t *it, int timeout_ms);

/* One integer from a query (fails the test on error). */
int64_t it_int(it_t *it, const char *sql);
/* Runs a statement (fails the test on error). */
void it_exec(it_t *it, const char *sql);

/* Runs `"$PROFILED_STACK" verb service`, failing the test if it fails. */
void it_stack(it_t *it, const char *verb, const char *service);

/* A free TCP port on 127.0.0.1 (bound and released). */
int it_free_port(void);
/* The port of the ops listener of the worker logging to `log_path` (started with
 * PROFILED_OPS_PORT=0, so the kernel picks a port no other process holds), read from its
 * "ops listener up" line; waits up to timeout_ms, fails the test otherwise. */
int it_wait_ops_port(const char *log_path, int timeout_ms);
/* GET http://127.0.0.1:port/path with a 2 s limit: the status (body appended
 * to `body` when not NULL, NUL-terminated), or -1 when nothing answered. */
int it_http_get(int port, const char *path, char *body, size_t body_size);

/* Prints the last lines of the worker log (for a failing test). */
void it_show_log(const it_t *it);

#endif
