/*
 * ops_http: a tiny HTTP listener for operations, on its own thread with its
 * own event base, so that probes and scrapes never wait on (nor stall) the
 * work loop of a binary:
 *
 *   GET|HEAD /healthz  200 {"status":"ok"} while the process runs
 *   GET|HEAD /readyz   200 {"status":"ready"}, or 503 {"message":<reason>,...}
 *                      from the ready callback
 *   GET|HEAD /metrics  Prometheus text of the registry
 *
 * It is served by the project's HTTP layer (http_server.h), so it has the
 * api's framing strictness, header/body/idle timeouts, a connection limit,
 * and JSON {"message","type"} for every error (404, 405 with Allow, 400...).
 * Refusals are logged, rate-limited (log_limit.h).
 *
 * The ready callback runs on the ops thread: it may only read atomics.
 */
#ifndef PROFILED_OPS_HTTP_H
#define PROFILED_OPS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"

typedef struct ops_http ops_http_t;

/* true when ready; `reason` is the body of the answer either way. */
typedef bool (*ops_ready_fn)(void *arg, char *reason, size_t reason_size);

/* Binds addr:port (a numeric address or a name; port 0: any free port, see ops_http_port) and
 * starts the thread. NULL with errstr on failure. `metrics` must outlive the listener. */
ops_http_t *ops_http_start(const char *addr, int port, metrics_t *metrics, ops_ready_fn ready,
                           void *ready_arg, char *errstr, size_t errstr_size);

/* The bound port. */
int ops_http_port(const ops_http_t *ops);

/* Stops the thread, closes the listener and every connection, frees everything. */
void ops_http_stop(ops_http_t *ops);

#endif
