/*
 * pg_notice: libpq's notices and asynchronous errors as JSON log lines.
 *
 * libpq's default notice processor prints to stderr in plain text. Besides the
 * NOTICEs a statement raises, it is how libpq reports an error the server sends
 * while no query runs: "FATAL: terminating connection due to administrator
 * command" when PostgreSQL stops. Every connection either binary opens installs
 * this processor right after PQconnectStart/PQconnectdb, so every line stays
 * one JSON object.
 */
#ifndef PROFILED_PG_NOTICE_H
#define PROFILED_PG_NOTICE_H

#include <libpq-fe.h>

/* Installs the processor on `conn` (NULL is ignored: a failed allocation). */
void pg_notice_install(PGconn *conn);

/* The processor itself, exposed for tests: FATAL, PANIC, ERROR and WARNING are
 * logged at warn level, anything else at debug level, under "postgres notice". */
void pg_notice_log(void *arg, const char *message);

#endif
