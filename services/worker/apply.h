/*
 * apply: one PostgreSQL transaction for a range of a batch, on one connection.
 *
 * The steps, in this order (each timed in its own bucket, apply_step_t). The
 * statements in brackets go to PostgreSQL in one pipeline, one round trip
 * (libpq pipeline mode; a small batch's latency is mostly round trips, each
 * waiting for the backend to be scheduled):
 *
 *   collect    the range's commands, for the fold (no I/O)
 *   [BEGIN; CREATE TEMP TABLE IF NOT EXISTS (the staging table, once a session);
 *   fence      SELECT ... FOR UPDATE the range's positions;
 *   read       the range's ids recorded before (one primary-key probe each)]
 *              the fence checked: PostgreSQL must hold the expected positions,
 *              otherwise APPLY_FENCED before anything is written; then one
 *              statement for the rows the fold needs: versions of recipients
 *              with a versioned command, profiles of those whose merge or
 *              patch builds on the stored profile (fold_plan)
 *   fold       fold.h: the end state of one-at-a-time application
 *   write      COPY into the temp table (the written commands' profiles as
 *              JSON, rendered from msgpack and sent 128 KiB at a time; NULL
 *              for a delete), one INSERT ... ON CONFLICT into profiles; then
 *              one COPY into applied_commands of every processed id (all but
 *              the duplicates) with its outcome: NULL applied, 'stale', or
 *              'refused' and its reason. An id a concurrent transaction
 *              recorded (a copy on another partition) fails the primary key:
 *              APPLY_RETRY, and the retry reads it as a duplicate
 *   [positions every partition's next_offset moved in one statement, fenced a
 *              second time (an update only from `expected`, an insert only
 *              where no other worker inserted meanwhile), which fails
 *              (APPLY_FENCED) unless every position moved, and NOTIFY
 *              profiled_applied '<topic>/<partition>/<next_offset>,...';
 *   COMMIT]    skipped by PostgreSQL when the statement before failed
 *
 * Rows, ids and positions share the one transaction (tests/worker checks the
 * txid), so a crash leaves all of them or none. No row lock is taken: every
 * writer of a recipient first locks its partition's position (a recipient
 * lives on one partition, the key being the recipient id), so the fence
 * serialises writers. The NOTIFY is delivered only if the transaction commits.
 * Items of kind INVALID/REJECTED only advance positions (their dead letters
 * were acknowledged before apply_run runs).
 *
 * Threads: a scratch and a connection belong to one thread at a time.
 */
#ifndef PROFILED_WORKER_APPLY_H
#define PROFILED_WORKER_APPLY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "buf.h"
#include "profile_limits.h"

typedef struct apply_position {
    int32_t partition;
    bool stored;      /* a kafka_positions row exists: the update is fenced on `expected` */
    int64_t expected; /* next_offset PostgreSQL must hold now */
    int64_t next;     /* next_offset after the transaction */
} apply_position_t;

/* Where a transaction's time goes (milliseconds per step, for the debug log). */
typedef enum apply_step {
    APPLY_STEP_READ,   /* BEGIN, fence, reading ids (one round trip), versions and profiles */
    APPLY_STEP_FOLD,   /* the fold and the COPY rows (CPU only) */
    APPLY_STEP_WRITE,  /* COPY + upsert of the rows, COPY of the ids */
    APPLY_STEP_COMMIT, /* positions, NOTIFY and COMMIT (one round trip) */
    APPLY_STEP_COUNT
} apply_step_t;

extern const char *const apply_step_names[APPLY_STEP_COUNT];

typedef struct apply_counts {
    uint64_t applied;    /* written + superseded */
    uint64_t written;    /* rows upserted */
    uint64_t duplicates; /* skipped: id applied before */
    uint64_t stale;      /* skipped: external version not newer (id recorded, outcome 'stale') */
    uint64_t refused;    /* merge/patch that cannot apply: id recorded, outcome 'refused' + reason */
    double ms[APPLY_STEP_COUNT];
} apply_counts_t;

typedef enum apply_status {
    APPLY_OK,
    APPLY_RETRY,    /* connection lost, shutdown, deadlock...: retry the same commands later */
    APPLY_FENCED,   /* a position moved under us (another worker): nothing written; re-read positions */
    APPLY_REJECTED, /* PostgreSQL refused the data of some row: split the range to find it (bisect.h) */
} apply_status_t;

/* Scratch memory reused across transactions (parameters, fold arrays, COPY rows). */
typedef struct apply_scratch apply_scratch_t;

/* `limits`: those the commands were decoded with (the profiles' JSON is
 * written again from msgpack while the rows are sent). */
apply_scratch_t *apply_scratch_new(const limits_t *limits);
void apply_scratch_destroy(apply_scratch_t *scratch);

/* Fills positions[] (capacity `cap`, one per partition present in items[lo, hi))
 * with next = last offset + 1 and expected/stored from `base` (`base_count`
 * entries, one per partition of the batch). Returns the count. */
size_t apply_positions_for(const batch_t *batch, size_t lo, size_t hi, const apply_position_t *base,
                           size_t base_count, apply_position_t *positions, size_t cap);

/* Applies batch->items[lo, hi) with the given position moves, in one
 * transaction. On APPLY_OK fills `counts`; otherwise the transaction was
 * rolled back (nothing written) and errstr says why. */
apply_status_t apply_run(PGconn *conn, apply_scratch_t *scratch, const char *group, const char *topic,
                         const batch_t *batch, size_t lo, size_t hi, const apply_position_t *positions,
                         size_t position_count, apply_counts_t *counts, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
