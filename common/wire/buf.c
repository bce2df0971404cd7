#include "buf.h"

#include "xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void buf_reserve(buf_t *buf, size_t extra)
{
    if (buf->cap - buf->len >= extra)
        return;
    size_t need = buf->len + extra;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap *= 2;
    buf->data = xrealloc(buf->data, cap, "growing a buffer");
    buf->cap = cap;
}

void buf_free(buf_t *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

void buf_appendf(buf_t *buf, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, args);
    va_end(args);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        buf_append(buf, small, (size_t)n);
        return;
    }
    buf_reserve(buf, (size_t)n + 1);
    va_start(args, fmt);
    vsnprintf((char *)buf->data + buf->len, (size_t)n + 1, fmt, args);
    va_end(args);
    buf->len += (size_t)n;
}

void buf_terminate(buf_t *buf)
{
    buf_reserve(buf, 1);
    buf->data[buf->len] = '\0';
}
