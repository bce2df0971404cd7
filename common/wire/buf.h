/*
 * buf: a growable byte buffer, the one output type of the encoders and
 * writers in common/ (msgpack bytes, JSON text, metrics text).
 *
 * Contract: a zeroed buf_t is empty and valid. Appends grow the buffer
 * geometrically and abort the process on allocation failure (an allocator
 * that fails on a few KiB is a broken invariant, not an input error).
 * buf_reset() keeps the memory for reuse on the hot path; buf_free() returns it.
 */
#ifndef PROFILED_BUF_H
#define PROFILED_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} buf_t;

/* Ensures room for `extra` more bytes after len. */
void buf_reserve(buf_t *buf, size_t extra);
void buf_free(buf_t *buf);

static inline void buf_reset(buf_t *buf)
{
    buf->len = 0;
}

static inline void buf_append(buf_t *buf, const void *bytes, size_t n)
{
    if (buf->cap - buf->len < n)
        buf_reserve(buf, n);
    if (n)
        memcpy(buf->data + buf->len, bytes, n);
    buf->len += n;
}

static inline void buf_append_byte(buf_t *buf, uint8_t byte)
{
    if (buf->cap == buf->len)
        buf_reserve(buf, 1);
    buf->data[buf->len++] = byte;
}

static inline void buf_append_str(buf_t *buf, const char *str)
{
    buf_append(buf, str, strlen(str));
}

/* printf-style append; the result is not NUL-terminated unless asked for. */
void buf_appendf(buf_t *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a NUL without counting it in len, so data can be used as a C string. */
void buf_terminate(buf_t *buf);

#endif
