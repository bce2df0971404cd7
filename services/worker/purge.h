/*
 * purge: deletes applied command ids older than the retention, in small
 * batches (1000 rows a statement, at most `max_rounds` statements a call) so
 * that no statement holds locks or the worker's loop for long.
 *
 * After the purge, a command re-produced more than the retention later would
 * apply again: the retention must exceed the longest replay window.
 */
#ifndef PROFILED_WORKER_PURGE_H
#define PROFILED_WORKER_PURGE_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#define PURGE_BATCH_ROWS 1000

int purge_run(PGconn *conn, int64_t retention_ms, int max_rounds, uint64_t *deleted, char *errstr,
              size_t errstr_size) __attribute__((warn_unused_result));

#endif
