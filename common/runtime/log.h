/*
 * log: one JSON object per line on stderr.
 *
 *   {"ts":"2026-11-28T18:30:00.123Z","level":"info","service":"profiled-api",
 *    "message":"listening","port":8080}
 *
 * Context travels as typed fields collected in a log_fields_t on the stack,
 * so values are escaped once and never parsed back. The level check happens
 * in the macro, so nothing is formatted below the configured level. Each line
 * goes out in a single write(2), so lines from several threads do not
 * interleave. Never log secrets, and profile contents only at debug level.
 */
#ifndef PROFILED_LOG_H
#define PROFILED_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL } log_level_t;

/* Set once at start-up, before any thread runs; read-only afterwards. */
extern log_level_t log_level_min;

/* "debug", "info", "warn", "error" -> level; -1 for anything else. */
int log_level_parse(const char *name, log_level_t *level);
/* The `service` field of every line, e.g. "profiled-worker". Not copied.
 * Also routes xalloc's fatal messages (out of memory, broken invariants)
 * through this logger. */
void log_set_service(const char *service);

typedef struct log_fields {
    char text[768]; /* rendered ,"key":value members; cut at a member boundary when full */
    unsigned len;
} log_fields_t;

#define LOG_FIELDS_INIT                                                                                      \
    {                                                                                                        \
        .text = {0}, .len = 0                                                                                \
    }

void log_field_str(log_fields_t *fields, const char *key, const char *value);
void log_field_strn(log_fields_t *fields, const char *key, const char *value, size_t len);
void log_field_int(log_fields_t *fields, const char *key, int64_t value);

void log_write(log_level_t level, const log_fields_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_at(level, fields, ...)                                                                           \
    do {                                                                                                     \
        if ((level) >= log_level_min)                                                                        \
            log_write((level), (fields), __VA_ARGS__);                                                       \
    } while (0)
#define log_debug(fields, ...) log_at(LOG_DEBUG, fields, __VA_ARGS__)
#define log_info(fields, ...)  log_at(LOG_INFO, fields, __VA_ARGS__)
#define log_warn(fields, ...)  log_at(LOG_WARN, fields, __VA_ARGS__)
#define log_error(fields, ...) log_at(LOG_ERROR, fields, __VA_ARGS__)

/* Logs at fatal level and exits 1: for start-up failures (bad config, a port
 * in use), which an operator fixes. A broken invariant at run time is
 * fatal_abort (xalloc.h) instead: it aborts, for a core. */
void log_die(const log_fields_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

#endif
