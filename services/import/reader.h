/*
 * reader: lines of a file or of stdin, read in large blocks (no per-line
 * system call, no per-line allocation). Memory stays bounded whatever the
 * input: a line longer than max_line is not buffered whole; it is reported
 * as too long (with its length) and skipped to its newline.
 */
#ifndef PROFILED_IMPORT_READER_H
#define PROFILED_IMPORT_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct reader {
    int fd;
    bool is_stdin;
    uint8_t *buf;
    size_t cap;
    size_t start; /* first byte of the next line in buf */
    size_t end;   /* end of the bytes read into buf */
    size_t scan;  /* where the newline search resumes */
    size_t max_line;
    bool eof;
    bool pollable;   /* a pipe, terminal or socket: reads may block for long */
    uint64_t offset; /* file offset of buf[start] */
    /* Optional: called about every 100 ms while a pollable input has no data, so the caller can serve
     * Kafka, draw progress and notice signals; returning true gives up the wait (reader_next then
     * fails with "interrupted"). */
    bool (*idle)(void *arg);
    void *idle_arg;
} reader_t;

typedef struct reader_line {
    const uint8_t *text; /* without its '\n'; NULL when too_long */
    size_t len;          /* bytes without the '\n' (the whole length, even when too long) */
    uint64_t end_offset; /* file offset just past the line and its newline */
    bool too_long;
} reader_line_t;

/* "-" is stdin. Returns 0, or -1 with errstr naming the file. */
int reader_open(reader_t *reader, const char *path, size_t max_line, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* Continues at byte `offset` (a line start): lseek for a file, reading and dropping for stdin. */
int reader_skip_to(reader_t *reader, uint64_t offset, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* 1 with `line` filled, 0 at the end of the input, -1 on a read error (errstr). */
int reader_next(reader_t *reader, reader_line_t *line, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

void reader_close(reader_t *reader);

#endif
