/*
 * fold: the batch reduction of DESIGN §5, as a pure function (no I/O).
 *
 * Given a batch of decoded commands in position order, the stored state of
 * their recipients and the ids already applied, decides for each command what
 * applying the commands one at a time would have done:
 *
 *   - its id was applied before (stored, or earlier in this batch): DUPLICATE;
 *   - it carries an external version V and the recipient's version so far
 *     (stored, or raised by an earlier command of this batch) is >= V: STALE;
 *   - otherwise it applies. The last applying command of a recipient is
 *     WRITTEN (its row is upserted); earlier ones are SUPERSEDED: their ids are
 *     recorded as applied, their rows never reach PostgreSQL.
 *
 * A command without a version applies and leaves the version unchanged; a
 * command with one stores it (the version is a high-water mark). So the
 * upserted row and the recorded ids (WRITTEN + SUPERSEDED) are exactly the
 * end state of one-at-a-time application; tests/worker/fold_test.c checks
 * that property on random sequences.
 */
#ifndef PROFILED_WORKER_FOLD_H
#define PROFILED_WORKER_FOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "command_id.h"

#define FOLD_ID_BYTES COMMAND_ID_BYTES /* the older name */

typedef struct fold_command {
    const char *recipient_id; /* not NUL-terminated */
    size_t recipient_id_len;
    const uint8_t *command_id; /* FOLD_ID_BYTES */
    bool has_version;
    uint64_t version;
} fold_command_t;

/* A recipient's row as stored before the batch (rows of recipients that do not
 * appear in the batch are ignored; a recipient with no row is simply absent).
 * The caller may leave out the rows of recipients without a versioned command
 * in the batch: their commands all apply whatever is stored, and the version
 * to store is then "keep the stored one" (store_has_version false). */
typedef struct fold_row {
    const char *recipient_id;
    size_t recipient_id_len;
    bool has_version; /* version IS NOT NULL */
    uint64_t version;
} fold_row_t;

typedef enum fold_outcome {
    FOLD_WRITTEN,    /* applies, and is the recipient's last applying command: upsert it */
    FOLD_SUPERSEDED, /* applies, overwritten later in the batch: record the id only */
    FOLD_DUPLICATE,  /* id applied before: skipped */
    FOLD_STALE,      /* external version not newer than the recipient's: skipped */
} fold_outcome_t;

typedef struct fold_result {
    fold_outcome_t outcome;
    /* WRITTEN only: the version the row stores after the batch (the high-water
     * mark folded in order from the stored version). */
    bool store_has_version;
    uint64_t store_version;
} fold_result_t;

/* Fills results[i] for each commands[i]. `applied_ids` are FOLD_ID_BYTES each
 * (ids of this batch found in applied_commands; others are harmless). Aborts
 * on allocation failure only. */
void fold_run(const fold_command_t *commands, size_t command_count, const fold_row_t *rows, size_t row_count,
              const uint8_t *applied_ids, size_t applied_count, fold_result_t *results);

#endif
