/*
 * pgconn: opening PostgreSQL connections for the worker and classifying
 * failures. All calls block (the worker's loop is a sequential poll loop, not
 * an event loop): connects are bounded by connect_timeout and dead peers by
 * TCP keepalives, so no call can hang for long.
 */
#ifndef PROFILED_WORKER_PGCONN_H
#define PROFILED_WORKER_PGCONN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

/* Connects with `dsn` (which may override the defaults: connect_timeout=5,
 * keepalives, application_name=profiled-worker). NULL with errstr on failure. */
PGconn *pgconn_open(const char *dsn, char *errstr, size_t errstr_size);

/* True when a failed statement was refused because of its data (SQLSTATE
 * classes 22 data exception, 23 integrity violation, 54 program limit): retrying
 * the same rows cannot succeed, so the batch is split to find the row. Every
 * other failure (connection, shutdown, deadlock, missing table...) is transient
 * or operational: the batch is retried as it is. */
bool pgconn_is_data_error(const PGresult *res);

/* Copies the message of a failed result (or connection) into errstr, one line. */
void pgconn_error(PGconn *conn, const PGresult *res, char *errstr, size_t errstr_size);

/* Executes a statement without parameters that returns no rows; 0 or -1 with errstr. */
int pgconn_exec(PGconn *conn, const char *sql, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* Best effort (ROLLBACK, unlock): the failure is not interesting, the connection state is checked later. */
void pgconn_exec_quiet(PGconn *conn, const char *sql);

#endif
