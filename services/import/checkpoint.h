/*
 * checkpoint: where a job may resume. One small JSON file, replaced
 * atomically (written to a temporary file, fsync'd, renamed), holding the job
 * id and, for each input file in order, its identity (name, size, mtime) and
 * how much of it is done: every line before `lines_done` (ending at byte
 * `offset`) was acknowledged by Kafka with acks=all, or rejected. It is only
 * ever written from acknowledgements, so resuming from it never skips an
 * unacknowledged line; it re-sends at most the lines that were in flight.
 */
#ifndef PROFILED_IMPORT_CHECKPOINT_H
#define PROFILED_IMPORT_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct checkpoint_file {
    const char *name; /* as given on the command line ("-" is stdin) */
    int64_t size;     /* -1 when not a regular file */
    int64_t mtime_ns;
    uint64_t lines_done;
    uint64_t offset;
    bool complete;
} checkpoint_file_t;

typedef struct checkpoint {
    const char *job;
    checkpoint_file_t *files;
    size_t count;
} checkpoint_t;

/* Writes `checkpoint` to `path` atomically. 0 or -1 with errstr. */
int checkpoint_write(const checkpoint_t *checkpoint, const char *path, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/*
 * Reads `path` and copies its progress into `checkpoint`, whose job and files (names, sizes, mtimes)
 * the caller filled from the command line: they must match, or resuming would give lines other ids.
 * Returns 1 when applied, 0 when the file does not exist, -1 with errstr on a mismatch or a bad file.
 */
int checkpoint_read(checkpoint_t *checkpoint, const char *path, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
