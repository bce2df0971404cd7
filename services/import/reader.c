#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READER_BLOCK (1u << 20)

int reader_open(reader_t *reader, const char *path, size_t max_line, char *errstr, size_t errstr_size)
{
    memset(reader, 0, sizeof(*reader));
    reader->max_line = max_line;
    reader->is_stdin = strcmp(path, "-") == 0;
    reader->fd = reader->is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (reader->fd < 0) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* Room for the longest line we keep plus a whole block, so that every read is a full block. */
    reader->cap = max_line + 1 + READER_BLOCK;
    reader->buf = malloc(reader->cap);
    if (!reader->buf) {
        snprintf(errstr, errstr_size, "out of memory for the read buffer");
        return -1;
    }
    struct stat st;
    reader->pollable = fstat(reader->fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode);
    if (!reader->is_stdin)
        posix_fadvise(reader->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return 0;
}

/* Reads one more block after `end`, first moving the pending bytes to the front. */
static int reader_fill(reader_t *reader, char *errstr, size_t errstr_size)
{
    if (reader->start > 0) {
        size_t pending = reader->end - reader->start;
        memmove(reader->buf, reader->buf + reader->start, pending);
        reader->scan -= reader->start;
        reader->end = pending;
        reader->start = 0;
    }
    size_t room = reader->cap - reader->end;
    while (reader->pollable && reader->idle) {
        struct pollfd pfd = {.fd = reader->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, 100);
        if (ready > 0 || (ready < 0 && errno != EINTR))
            break; /* data, end of input or an error: read() says which */
        if (reader->idle(reader->idle_arg)) {
            snprintf(errstr, errstr_size, "interrupted while waiting for input");
            return -1;
        }
    }
    for (;;) {
        ssize_t n = read(reader->fd, reader->buf + reader->end, room < READER_BLOCK ? room : READER_BLOCK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(errstr, errstr_size, "read: %s", strerror(errno));
            return -1;
        }
        if (n == 0)
            reader->eof = true;
        reader->end += (size_t)n;
        return 0;
    }
}

int reader_skip_to(reader_t *reader, uint64_t offset, char *errstr, size_t errstr_size)
{
    if (!reader->is_stdin) {
        if (lseek(reader->fd, (off_t)offset, SEEK_SET) < 0) {
            snprintf(errstr, errstr_size, "lseek: %s", strerror(errno));
            return -1;
        }
        reader->offset = offset;
        reader->start = reader->end = reader->scan = 0;
        reader->eof = false;
        return 0;
    }
    while (reader->offset + (reader->end - reader->start) < offset) {
        reader->offset += reader->end - reader->start;
        reader->start = reader->end = reader->scan = 0;
        if (reader_fill(reader, errstr, errstr_size) < 0)
            return -1;
        if (reader->eof && reader->end == 0) {
            snprintf(errstr, errstr_size, "the input ended at byte %llu, before the checkpoint's byte %llu",
                     (unsigned long long)reader->offset, (unsigned long long)offset);
            return -1;
        }
    }
    size_t drop = (size_t)(offset - reader->offset);
    reader->start += drop;
    reader->scan = reader->start;
    reader->offset = offset;
    return 0;
}

int reader_next(reader_t *reader, reader_line_t *line, char *errstr, size_t errstr_size)
{
    for (;;) {
        uint8_t *nl = reader->scan < reader->end
                          ? memchr(reader->buf + reader->scan, '\n', reader->end - reader->scan)
                          : NULL;
        size_t pending = (nl ? (size_t)(nl - reader->buf) : reader->end) - reader->start;
        if (nl || (reader->eof && pending > 0)) {
            line->too_long = pending > reader->max_line;
            line->text = line->too_long ? NULL : reader->buf + reader->start;
            line->len = pending;
            size_t taken = pending + (nl ? 1 : 0);
            reader->start += taken;
            reader->scan = reader->start;
            reader->offset += taken;
            line->end_offset = reader->offset;
            return 1;
        }
        if (reader->eof)
            return 0;
        reader->scan = reader->end;
        if (pending > reader->max_line) {
            /* Too long to keep: count it up to its newline without buffering it. */
            size_t total = pending;
            reader->offset += pending;
            reader->start = reader->end = reader->scan = 0;
            for (;;) {
                if (reader_fill(reader, errstr, errstr_size) < 0)
                    return -1;
                nl = memchr(reader->buf, '\n', reader->end);
                if (nl || reader->eof) {
                    size_t part = nl ? (size_t)(nl - reader->buf) : reader->end;
                    size_t taken = part + (nl ? 1 : 0);
                    total += part;
                    reader->start = reader->scan = taken;
                    reader->offset += taken;
                    break;
                }
                total += reader->end;
                reader->offset += reader->end;
                reader->end = 0;
            }
            line->text = NULL;
            line->len = total;
            line->too_long = true;
            line->end_offset = reader->offset;
            return 1;
        }
        if (reader_fill(reader, errstr, errstr_size) < 0)
            return -1;
    }
}

void reader_close(reader_t *reader)
{
    if (reader->fd >= 0 && !reader->is_stdin)
        close(reader->fd);
    reader->fd = -1;
    free(reader->buf);
    reader->buf = NULL;
}
