/*
 * profiled-import: the state of one run. One struct, passed to librdkafka as
 * its opaque; the only other mutable global is the signal counter.
 *
 * Lines are read in order, file after file. Each produced line takes a slot
 * in a ring of `window` slots (the bound on memory and on what a crash can
 * re-send); its delivery report marks the slot done, and the ring's tail
 * moves past done slots. The checkpoint is the position of the first slot
 * not done (or, with none in flight, the reading position), so it only ever
 * covers acknowledged or rejected lines; and no slot is filled `window` or
 * more past the last checkpoint written, which bounds what a resume re-sends.
 */
#ifndef PROFILED_IMPORT_H
#define PROFILED_IMPORT_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "checkpoint.h"
#include "csv.h"
#include "line.h"
#include "profile_limits.h"

/* Environment settings shared with the api and the worker (cfg table in config.c). */
typedef struct import_config {
    char *kafka_brokers;
    char *kafka_topic;
    char *kafka_properties;
    char *log_level;
    int64_t max_body_bytes;
    int64_t max_depth;
    int64_t max_key_bytes;
    int64_t max_string_bytes;
    int64_t max_keys;
} import_config_t;

/* Command-line options (--help in main.c describes each one). */
typedef struct import_options {
    const char *job;
    const char *checkpoint_path;
    const char *rejects_path;
    const char *summary_path;
    const char *map_spec;
    const char *source;
    const char *compression;
    bool csv;
    bool resume;
    bool dry_run;
    int64_t max_rejects; /* -1: no limit */
    int64_t window;
    int64_t linger_ms;
    int64_t batch_bytes;
    int64_t progress_interval_ms;
    int64_t stall_timeout_ms;
    int64_t drain_timeout_ms;
    char **files;
    size_t file_count;
} import_options_t;

/* Why the run stopped; the exit status follows from it. */
typedef enum import_stop {
    IMPORT_RUNNING = 0,
    IMPORT_DONE,         /* every line read and acknowledged or rejected */
    IMPORT_MAX_REJECTS,  /* --max-rejects passed: stop reading, wait for what is in flight */
    IMPORT_INTERRUPTED,  /* SIGINT/SIGTERM: stop reading, wait a bounded time, checkpoint */
    IMPORT_KAFKA_FAILED, /* a delivery failed or Kafka stalled: purge, checkpoint */
    IMPORT_INPUT_FAILED, /* a read error */
} import_stop_t;

enum {
    IMPORT_EXIT_OK = 0,
    IMPORT_EXIT_REJECTS = 1,
    IMPORT_EXIT_USAGE = 2,
    IMPORT_EXIT_KAFKA = 3,
    IMPORT_EXIT_MAX_REJECTS = 4,
    IMPORT_EXIT_INPUT = 5,
    IMPORT_EXIT_INTERRUPTED = 130,
};

typedef struct import_slot {
    uint32_t file;
    bool done;
    uint64_t line;         /* its (first) line number */
    uint64_t start_offset; /* byte offset where it starts */
} import_slot_t;

typedef struct import_counts {
    uint64_t read;     /* records read this run (lines; CSV records), blank ones included */
    uint64_t valid;    /* records that became commands */
    uint64_t acked;    /* commands Kafka acknowledged (acks=all) */
    uint64_t rejected; /* records refused, with a message */
    uint64_t blank;    /* blank lines, skipped */
    uint64_t resumed;  /* lines skipped because the checkpoint covered them */
    uint64_t bytes;    /* input bytes consumed this run */
    uint64_t delivery_failed;
} import_counts_t;

typedef struct import {
    import_options_t options;
    import_config_t config;
    line_parser_t parser;
    csv_map_t map;

    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;

    import_slot_t *ring;
    uint64_t head;       /* sequence of the next slot to fill */
    uint64_t tail;       /* oldest slot not done */
    uint64_t saved_tail; /* the tail when the last checkpoint was written */
    uint64_t reports_pending;

    /* the reading position: file index, lines consumed, byte offset after them */
    uint32_t file;
    uint64_t line;
    uint64_t offset;

    checkpoint_t checkpoint;
    import_counts_t counts;
    import_stop_t stop;
    char failure[512]; /* the first reason to stop, for the summary */
    FILE *rejects;
    buf_t reject_line;

    int64_t started_us;
    int64_t last_ack_us;
    int64_t last_checkpoint_us;
    int64_t last_progress_us;
    uint64_t total_bytes; /* of the regular input files, for the ETA; 0 when unknown */
    bool tty;
    bool kafka_down_logged;
    bool checkpoint_failed; /* a write failed: the run stops, and no later write is tried */
} import_t;

extern volatile sig_atomic_t import_signals;

int64_t import_now_us(void);

/* config.c */
int import_config_load(import_config_t *config, char *errstr, size_t errstr_size);
void import_config_help(FILE *out, const char *usage);
void import_config_free(import_config_t *config);

/* producer.c */
int import_producer_new(import_t *im, char *errstr, size_t errstr_size) __attribute__((warn_unused_result));
/* Produces one command for the record at (file, line, start_offset); waits while the window is full.
 * 1: produced; 0: not produced because the run is stopping; -1: the command is refused (too large for
 * Kafka), errstr says why, and the record is to be rejected. */
int import_produce(import_t *im, const char *key, size_t key_len, const buf_t *value, uint64_t line,
                   uint64_t start_offset, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
void import_poll(import_t *im, int timeout_ms);
/* Waits for every slot in flight (or for a stop); purges what is left when stopping. */
void import_drain(import_t *im);
void import_producer_destroy(import_t *im);

/* progress.c */
void import_progress(import_t *im, bool force);
void import_progress_end(import_t *im);
/* Fills im->checkpoint from the ring and writes it (no-op without a checkpoint path or in a dry run). */
void import_checkpoint_save(import_t *im);
int import_summary(import_t *im, int exit_code);

/* run.c */
int import_run(import_t *im);

#endif
