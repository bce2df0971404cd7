#include "pg_notice.h"

#include <stdbool.h>
#include <string.h>

#include "log.h"

static bool pg_notice_starts(const char *message, const char *prefix)
{
    return strncmp(message, prefix, strlen(prefix)) == 0;
}

void pg_notice_log(void *arg, const char *message)
{
    (void)arg;
    /* The severity leads the text ("FATAL:  terminating connection..."): an
     * unexpected close is worth a warning, a "relation exists, skipping" is not. */
    log_level_t level = pg_notice_starts(message, "FATAL") || pg_notice_starts(message, "PANIC") ||
                                pg_notice_starts(message, "ERROR") || pg_notice_starts(message, "WARNING")
                            ? LOG_WARN
                            : LOG_DEBUG;
    if (level < log_level_min)
        return;
    size_t len = strlen(message);
    while (len && (message[len - 1] == '\n' || message[len - 1] == ' '))
        len--;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_strn(&fields, "notice", message, len);
    log_write(level, &fields, "postgres notice");
}

void pg_notice_install(PGconn *conn)
{
    if (conn)
        PQsetNoticeProcessor(conn, pg_notice_log, NULL);
}
