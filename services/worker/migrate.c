#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgconn.h"
#include "xalloc.h"

static int migrate_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool migrate_is_sql(const char *name)
{
    size_t len = strlen(name);
    return name[0] != '.' && len > 4 && strcmp(name + len - 4, ".sql") == 0;
}

/* Reads a whole file into a NUL-terminated string; NULL with errstr. */
static char *migrate_read(const char *path, char *errstr, size_t errstr_size)
{
    char *text = NULL;
    FILE *file = fopen(path, "rb");
    if (!file) {
        snprintf(errstr, errstr_size, "migration %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(file, 0, SEEK_END) != 0)
        goto io_error;
    long size = ftell(file);
    if (size < 0 || fseek(file, 0, SEEK_SET) != 0)
        goto io_error;
    text = malloc((size_t)size + 1);
    if (!text || fread(text, 1, (size_t)size, file) != (size_t)size)
        goto io_error;
    text[size] = '\0';
    fclose(file);
    return text;
io_error:
    snprintf(errstr, errstr_size, "migration %s: cannot read: %s", path, strerror(errno));
    free(text);
    fclose(file);
    return NULL;
}

/* 1 when `name` is recorded in schema_migrations, 0 when not, -1 on error. */
static int migrate_is_applied(PGconn *conn, const char *name, char *errstr, size_t errstr_size)
{
    const char *params[1] = {name};
    PGresult *res =
        PQexecParams(conn, "SELECT 1 FROM schema_migrations WHERE name = $1", 1, NULL, params, NULL, NULL, 0);
    int rc;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pgconn_error(conn, res, errstr, errstr_size);
        rc = -1;
    } else
        rc = PQntuples(res) > 0;
    PQclear(res);
    return rc;
}

static int migrate_apply(PGconn *conn, const char *dir, const char *name, char *errstr, size_t errstr_size)
{
    char path[4096];
    char reason[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *sql = migrate_read(path, errstr, errstr_size);
    if (!sql)
        return -1;
    int rc = -1;
    if (pgconn_exec(conn, "BEGIN", reason, sizeof(reason)) < 0)
        goto fail;
    /* PQexec runs the file's statements as one multi-statement string. */
    if (pgconn_exec(conn, sql, reason, sizeof(reason)) < 0) {
        pgconn_exec_quiet(conn, "ROLLBACK");
        goto fail;
    }
    const char *params[1] = {name};
    PGresult *res = PQexecParams(conn, "INSERT INTO schema_migrations (name, applied_at) VALUES ($1, now())",
                                 1, NULL, params, NULL, NULL, 0);
    bool inserted = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!inserted)
        pgconn_error(conn, res, reason, sizeof(reason));
    PQclear(res);
    if (!inserted) {
        pgconn_exec_quiet(conn, "ROLLBACK");
        goto fail;
    }
    if (pgconn_exec(conn, "COMMIT", reason, sizeof(reason)) < 0)
        goto fail;
    rc = 0;
    goto cleanup;
fail:
    snprintf(errstr, errstr_size, "migration %s: %s", name, reason);
cleanup:
    free(sql);
    return rc;
}

int migrate_run(PGconn *conn, const char *dir, int *applied, char *errstr, size_t errstr_size)
{
    int rc = -1;
    char **names = NULL;
    size_t count = 0, cap = 0;
    bool locked = false;
    char lock_sql[128];
    *applied = 0;

    DIR *d = opendir(dir);
    if (!d) {
        snprintf(errstr, errstr_size, "migrations folder %s: %s (set PROFILED_MIGRATIONS_DIR)", dir,
                 strerror(errno));
        return -1;
    }
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (!migrate_is_sql(entry->d_name))
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = xrealloc(names, cap * sizeof(*names), "the migration list");
            names = grown;
        }
        names[count] = xstrdup(entry->d_name, "a migration file name");
        count++;
    }
    closedir(d);
    if (count == 0) {
        snprintf(errstr, errstr_size, "migrations folder %s holds no .sql file", dir);
        goto cleanup;
    }
    qsort(names, count, sizeof(*names), migrate_name_cmp);

    snprintf(lock_sql, sizeof(lock_sql), "SELECT pg_advisory_lock(%lld)", (long long)MIGRATE_LOCK_KEY);
    if (pgconn_exec(conn, lock_sql, errstr, errstr_size) < 0)
        goto cleanup;
    locked = true;
    if (pgconn_exec(
            conn,
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz "
            "NOT NULL)",
            errstr, errstr_size) < 0)
        goto cleanup;
    for (size_t i = 0; i < count; i++) {
        int done = migrate_is_applied(conn, names[i], errstr, errstr_size);
        if (done < 0)
            goto cleanup;
        if (done)
            continue;
        if (migrate_apply(conn, dir, names[i], errstr, errstr_size) < 0)
            goto cleanup;
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "migration", names[i]);
        log_info(&fields, "migration applied");
        (*applied)++;
    }
    rc = 0;
cleanup:
    if (locked) {
        char unlock_sql[128];
        snprintf(unlock_sql, sizeof(unlock_sql), "SELECT pg_advisory_unlock(%lld)",
                 (long long)MIGRATE_LOCK_KEY);
        pgconn_exec_quiet(conn, unlock_sql);
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}
