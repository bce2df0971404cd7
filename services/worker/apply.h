/*
 * apply: one PostgreSQL transaction for a range of a batch.
 *
 *   BEGIN
 *   lock the rows of the range's recipients (FOR UPDATE) and read their versions
 *   read which of the range's command ids were applied before
 *   fold (fold.h): the end state of one-at-a-time application
 *   upsert one row per recipient (arrays + unnest, one statement)
 *   record the applied ids (superseded ones included)
 *   move each partition's position, fenced on the position we expect
 *   NOTIFY profiled_applied, '<topic>/<partition>/<next_offset>,...'
 *   COMMIT
 *
 * The NOTIFY is queued inside the transaction, so PostgreSQL delivers it only
 * if and when the transaction commits. Items of kind INVALID/REJECTED only
 * advance positions (their dead letters were acknowledged before this runs).
 */
#ifndef PROFILED_WORKER_APPLY_H
#define PROFILED_WORKER_APPLY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "buf.h"

typedef struct apply_position {
    int32_t partition;
    bool stored;      /* a kafka_positions row exists: the update is fenced on `expected` */
    int64_t expected; /* next_offset PostgreSQL must hold now */
    int64_t next;     /* next_offset after the transaction */
} apply_position_t;

typedef struct apply_counts {
    uint64_t applied;    /* written + superseded */
    uint64_t written;    /* rows upserted */
    uint64_t duplicates; /* skipped: id applied before */
    uint64_t stale;      /* skipped: external version not newer */
    /* milliseconds spent per step, for the debug log and tuning */
    double ms_read;      /* BEGIN, versions, applied ids */
    double ms_upsert;    /* the profiles upsert */
    double ms_ids;       /* recording applied ids */
    double ms_positions; /* positions and NOTIFY */
    double ms_commit;
} apply_counts_t;

typedef enum apply_status {
    APPLY_OK,
    APPLY_RETRY,    /* connection lost, shutdown, deadlock...: retry the same commands later */
    APPLY_FENCED,   /* a position or an id moved under us (another worker): re-read positions */
    APPLY_REJECTED, /* PostgreSQL refused the data of some row: split the range to find it */
} apply_status_t;

/* Scratch memory reused across transactions (parameters, fold arrays). */
typedef struct apply_scratch apply_scratch_t;

apply_scratch_t *apply_scratch_new(void);
void apply_scratch_destroy(apply_scratch_t *scratch);

/* Applies batch->items[lo, hi) with the given position moves. On APPLY_OK
 * fills `counts`; otherwise the transaction was rolled back and errstr says why. */
apply_status_t apply_run(PGconn *conn, apply_scratch_t *scratch, const char *group, const char *topic,
                         const batch_t *batch, size_t lo, size_t hi, const apply_position_t *positions,
                         size_t position_count, apply_counts_t *counts, char *errstr, size_t errstr_size);

#endif
