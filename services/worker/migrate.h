/*
 * migrate: applies services/worker/migrations/NNN_name.sql files in name
 * order, each in its own transaction, recording each applied file in
 * schema_migrations. A session advisory lock serializes workers starting
 * together, so each file runs once. Files are plain SQL, applied to the
 * connection's search_path (tests use that to get a schema of their own).
 */
#ifndef PROFILED_WORKER_MIGRATE_H
#define PROFILED_WORKER_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

/* Advisory lock key: "profiled" in ASCII, so other tools can see whose lock it is. */
#define MIGRATE_LOCK_KEY 0x70726f66696c6564LL

/* Applies what is missing; *applied receives the number of files applied now.
 * 0, or -1 with errstr naming the file and PostgreSQL's reason. */
int migrate_run(PGconn *conn, const char *dir, int *applied, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
