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
 *   - a merge or patch whose result cannot be made (a patch's test that does
 *     not match, a path that does not exist, a result over the limits):
 *     REFUSED, with a reason; it changes nothing, its id is processed;
 *   - otherwise it applies. The last applying command of a recipient is
 *     WRITTEN (its row is upserted); earlier ones are SUPERSEDED: their ids are
 *     recorded as applied, their rows never reach PostgreSQL.
 *
 * Kinds (proto/README.md §6): a replace or delete resets the profile (a
 * delete leaves a row without profile, which keeps the version); a merge or
 * patch builds on the profile before it: the stored one, or the one an
 * earlier command of the batch made. doc.h does the merging and patching on
 * msgpack-c trees. A recipient's stored profile is needed only when one of its
 * merges or patches is not preceded, in the batch, by an unversioned replace or
 * delete (which always applies): fold_plan says which, so that apply.c reads
 * those profiles only, and a replace-only batch reads none.
 *
 * A command without a version applies and leaves the version unchanged; a
 * command with one stores it (the version is a high-water mark). So the
 * upserted row and the recorded ids (WRITTEN + SUPERSEDED + STALE + REFUSED)
 * are exactly the end state of one-at-a-time application;
 * tests/worker/fold_test.c checks that property on random sequences.
 */
#ifndef PROFILED_WORKER_FOLD_H
#define PROFILED_WORKER_FOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "command_id.h"
#include "profile_limits.h"

#define FOLD_ID_BYTES COMMAND_ID_BYTES /* the older name */

typedef struct fold_command {
    const char *recipient_id; /* not NUL-terminated */
    size_t recipient_id_len;
    const uint8_t *command_id; /* FOLD_ID_BYTES */
    bool has_version;
    uint64_t version;
    codec_op_t op;
    const uint8_t *body; /* replace, merge: the profile map; patch: the operations; delete: NULL */
    size_t body_len;
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
    /* The stored profile as msgpack, for recipients fold_plan marked (NULL:
     * the row has no profile, i.e. it was deleted). A marked recipient
     * without a row starts from no profile. */
    bool profile_read; /* the profile was asked for (a recipient fold_plan marked) */
    const uint8_t *profile;
    size_t profile_len;
} fold_row_t;

typedef enum fold_outcome {
    FOLD_WRITTEN,    /* applies, and is the recipient's last applying command: upsert it */
    FOLD_SUPERSEDED, /* applies, overwritten later in the batch: record the id only */
    FOLD_DUPLICATE,  /* id applied before: skipped */
    FOLD_STALE,      /* external version not newer than the recipient's: skipped, id processed */
    FOLD_REFUSED,    /* merge/patch that cannot apply here: changes nothing, id processed, reason kept */
} fold_outcome_t;

/* What a WRITTEN command's row holds. */
typedef enum fold_write {
    FOLD_WRITE_COMMAND, /* the replace's own profile */
    FOLD_WRITE_DOC,     /* a profile the fold built (merge, patch): fold_out_t.docs */
    FOLD_WRITE_DELETED, /* no profile (a delete) */
} fold_write_t;

/* Memory the results point into (reused across runs; fold_out_free frees it). */
typedef struct fold_out {
    buf_t docs;    /* msgpack profiles of FOLD_WRITE_DOC results */
    buf_t reasons; /* refusal reasons, UTF-8 */
} fold_out_t;

void fold_out_free(fold_out_t *out);

typedef struct fold_result {
    fold_outcome_t outcome;
    fold_write_t write;            /* WRITTEN only */
    size_t doc_off, doc_len;       /* FOLD_WRITE_DOC: the profile in out->docs */
    size_t reason_off, reason_len; /* REFUSED: the reason in out->reasons */
    /* WRITTEN only: the version the row stores after the batch (the high-water
     * mark folded in order from the stored version). */
    bool store_has_version;
    uint64_t store_version;
} fold_result_t;

/* Sets read[i] for each command whose recipient's stored profile the fold
 * will need (a merge or patch, not a duplicate, with no unversioned replace
 * or delete of the recipient before it in the batch); false elsewhere. */
void fold_plan(const fold_command_t *commands, size_t command_count, const uint8_t *applied_ids,
               size_t applied_count, bool *read);

/* Fills results[i] for each commands[i]. `applied_ids` are FOLD_ID_BYTES each
 * (ids of this batch found in applied_commands; others are harmless). `rows`
 * must hold the profile of every recipient fold_plan marked (when it has a
 * row). `limits` bound a merged or patched profile (over them: REFUSED).
 * Resets `out` first. Aborts on allocation failure, and when a needed
 * profile was not given (a caller bug). */
void fold_run(const fold_command_t *commands, size_t command_count, const fold_row_t *rows, size_t row_count,
              const uint8_t *applied_ids, size_t applied_count, const limits_t *limits, fold_out_t *out,
              fold_result_t *results);

#endif
