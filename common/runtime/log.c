#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "json_write.h"
#include "xalloc.h"

log_level_t log_level_min = LOG_INFO;
static const char *log_service = "profiled";

static const char *const log_level_names[] = {"debug", "info", "warn", "error", "fatal"};

int log_level_parse(const char *name, log_level_t *level)
{
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *level = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

/* xalloc's fatal messages (out of memory, broken invariants) as log lines.
 * log_write formats on the stack: it is safe when the heap is what failed. */
static void log_fatal_report(const char *message)
{
    log_write(LOG_FATAL, NULL, "%s", message);
}

void log_set_service(const char *service)
{
    log_service = service;
    xalloc_set_reporter(log_fatal_report);
}

/* The longest text log_escape takes: the message buffer of log_vwrite. */
#define LOG_ESCAPE_MAX_INPUT 1024

/* Appends `src[0..len)` as JSON string content into dst (bounded by room),
 * with the lossy policy of the one escaper (json_write.h: bad UTF-8 becomes
 * U+FFFD, 0x7f is escaped), so any bytes make a valid line. Returns bytes
 * written, or -1 when it does not fit. On the stack only: fatal lines are
 * written with this when the heap is gone. */
static int log_escape(char *dst, size_t room, const char *src, size_t len)
{
    if (len > room || len > LOG_ESCAPE_MAX_INPUT)
        return -1; /* escaping never shrinks text */
    if (JSON_ESCAPE_MAX(len) <= room)
        return (int)json_escape(dst, src, len, JSON_ESCAPE_LOSSY);
    char tmp[JSON_ESCAPE_MAX(LOG_ESCAPE_MAX_INPUT)];
    size_t n = json_escape(tmp, src, len, JSON_ESCAPE_LOSSY);
    if (n > room)
        return -1;
    memcpy(dst, tmp, n);
    return (int)n;
}

static void log_field_raw(log_fields_t *fields, const char *key, const char *value, size_t value_len,
                          bool quote)
{
    size_t room = sizeof(fields->text) - fields->len;
    char *dst = fields->text + fields->len;
    int n = snprintf(dst, room, ",\"%s\":%s", key, quote ? "\"" : "");
    if (n < 0 || (size_t)n >= room)
        return;
    size_t used = (size_t)n;
    int escaped = log_escape(dst + used, room - used, value, value_len);
    if (escaped < 0)
        return;
    used += (size_t)escaped;
    if (quote) {
        if (room - used < 1)
            return;
        dst[used++] = '"';
    }
    if (used >= room)
        return;
    fields->len += (unsigned)used;
    fields->text[fields->len] = '\0';
}

void log_field_strn(log_fields_t *fields, const char *key, const char *value, size_t len)
{
    log_field_raw(fields, key, value, len, true);
}

void log_field_str(log_fields_t *fields, const char *key, const char *value)
{
    log_field_raw(fields, key, value ? value : "", value ? strlen(value) : 0, true);
}

void log_field_int(log_fields_t *fields, const char *key, int64_t value)
{
    char number[24];
    int n = snprintf(number, sizeof(number), "%lld", (long long)value);
    log_field_raw(fields, key, number, (size_t)n, false);
}

static void log_vwrite(log_level_t level, const log_fields_t *fields, const char *fmt, va_list args)
{
    char message[1024];
    vsnprintf(message, sizeof(message), fmt, args);

    struct timeval now;
    gettimeofday(&now, NULL);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);

    char line[4096];
    int len = snprintf(line, sizeof(line),
                       "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"service\":\"%s\","
                       "\"message\":\"",
                       utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                       (long)(now.tv_usec / 1000), log_level_names[level], log_service);
    /* The line is sized so the fixed prefix, the message and the fields fit, unless the
     * message is mostly control bytes (six bytes each once escaped): then it is cut, at a
     * UTF-8 character boundary, where even six bytes a byte fit, and says so. */
    static const char cut_marker[] = " [truncated]";
    size_t room = sizeof(line) - (size_t)len - sizeof(fields->text) - 4;
    size_t message_len = strlen(message);
    int escaped = log_escape(line + len, room, message, message_len);
    if (escaped < 0) {
        size_t keep = (room - sizeof(cut_marker)) / 6;
        while (keep > 0 && ((unsigned char)message[keep] & 0xC0) == 0x80)
            keep--;
        escaped = log_escape(line + len, room, message, keep);
        memcpy(line + len + escaped, cut_marker, sizeof(cut_marker) - 1);
        escaped += (int)sizeof(cut_marker) - 1;
    }
    len += escaped;
    line[len++] = '"';
    if (fields && fields->len) {
        memcpy(line + len, fields->text, fields->len);
        len += (int)fields->len;
    }
    line[len++] = '}';
    line[len++] = '\n';
    /* One write per line; a short write to stderr is not worth retrying. */
    ssize_t written = write(STDERR_FILENO, line, (size_t)len);
    (void)written;
}

void log_write(log_level_t level, const log_fields_t *fields, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    log_vwrite(level, fields, fmt, args);
    va_end(args);
}

void log_die(const log_fields_t *fields, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    log_vwrite(LOG_FATAL, fields, fmt, args);
    va_end(args);
    exit(1);
}
