#include "xalloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void xalloc_report_stderr(const char *message)
{
    char line[1100];
    int n = snprintf(line, sizeof(line), "%s\n", message);
    if (n > (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 1;
    ssize_t written = write(STDERR_FILENO, line, (size_t)n);
    (void)written;
}

static xalloc_reporter_t xalloc_reporter = xalloc_report_stderr;

void xalloc_set_reporter(xalloc_reporter_t reporter)
{
    xalloc_reporter = reporter ? reporter : xalloc_report_stderr;
}

void fatal_abort(const char *fmt, ...)
{
    char message[1024]; /* on the stack: the heap may be what failed */
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    xalloc_reporter(message);
    abort();
}

void *xmalloc(size_t size, const char *what)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        fatal_abort("out of memory: %s (%zu bytes)", what, size);
    return p;
}

void *xcalloc(size_t count, size_t size, const char *what)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        fatal_abort("out of memory: %s (%zu x %zu bytes)", what, count, size);
    return p;
}

char *xstrdup(const char *s, const char *what)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n, what), s, n);
}

void *xrealloc(void *ptr, size_t size, const char *what)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        fatal_abort("out of memory: %s (%zu bytes)", what, size);
    return p;
}
