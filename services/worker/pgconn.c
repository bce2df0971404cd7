#include "pgconn.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "pg_notice.h"

PGconn *pgconn_open(const char *dsn, char *errstr, size_t errstr_size)
{
    /* Defaults first: with expand_dbname the DSN is expanded where "dbname"
     * stands, and a later value overrides an earlier one, so the operator's DSN wins. */
    const char *keywords[] = {
        "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
        "keepalives_count", "application_name", "dbname",          NULL};
    const char *values[] = {"5", "1", "10", "5", "3", "profiled-worker", dsn, NULL};
    PGconn *conn = PQconnectdbParams(keywords, values, 1);
    if (!conn) {
        snprintf(errstr, errstr_size, "postgres: out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        pgconn_error(conn, NULL, errstr, errstr_size);
        PQfinish(conn);
        return NULL;
    }
    /* NOTICEs ("relation already exists, skipping") would break the JSON log lines:
     * route them to the log, and ask for warnings and above only (the apply path
     * creates its staging table "IF NOT EXISTS" in every batch). */
    pg_notice_install(conn);
    if (pgconn_exec(conn, "SET client_min_messages TO warning", errstr, errstr_size) < 0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

bool pgconn_is_data_error(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state)
        return false;
    return strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 || strncmp(state, "54", 2) == 0;
}

void pgconn_error(PGconn *conn, const PGresult *res, char *errstr, size_t errstr_size)
{
    const char *message = res ? PQresultErrorMessage(res) : NULL;
    if (!message || !*message)
        message = conn ? PQerrorMessage(conn) : "no connection";
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(errstr, errstr_size, "postgres%s%s%s: %s", state ? " (" : "", state ? state : "",
             state ? ")" : "", message);
    /* one line: libpq messages end with (and may contain) newlines */
    for (char *p = errstr; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t len = strlen(errstr);
    while (len && errstr[len - 1] == ' ')
        errstr[--len] = '\0';
}

int pgconn_exec(PGconn *conn, const char *sql, char *errstr, size_t errstr_size)
{
    PGresult *res = PQexec(conn, sql);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        pgconn_error(conn, res, errstr, errstr_size);
        rc = -1;
    }
    PQclear(res);
    return rc;
}

void pgconn_exec_quiet(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    PQclear(res);
}
