/*
 * xalloc: the one out-of-memory policy, and the one way to stop on a broken
 * invariant.
 *
 * An allocation that fails here is a broken invariant of the process (every
 * allocation is bounded by a configured limit), not an input error: the
 * process says what it was allocating and aborts, so the supervisor restarts
 * it and the core shows where. The line goes through the reporter that the
 * logger installs at start (runtime/log.c: a JSON line with ts, level fatal
 * and service); before that, or in a program without the logger (fuzzers,
 * generators), it is the bare message on stderr. wire/ does no I/O of its
 * own beyond that last resort.
 */
#ifndef PROFILED_XALLOC_H
#define PROFILED_XALLOC_H

#include <stddef.h>

/* Writes one fatal message; must not allocate. Set once at start-up. */
typedef void (*xalloc_reporter_t)(const char *message);
void xalloc_set_reporter(xalloc_reporter_t reporter);

/* Reports "<printf text>" through the reporter and aborts. For invariants
 * only: input errors are returned, never aborted on. */
void fatal_abort(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* malloc/calloc/realloc that never return NULL: on failure they report
 * "out of memory: <what> (<bytes> bytes)" and abort. size 0 is fine. */
void *xmalloc(size_t size, const char *what) __attribute__((malloc, returns_nonnull));
void *xcalloc(size_t count, size_t size, const char *what) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *ptr, size_t size, const char *what) __attribute__((returns_nonnull));
char *xstrdup(const char *s, const char *what) __attribute__((malloc, returns_nonnull));

#endif
