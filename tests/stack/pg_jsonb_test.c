/*
 * pg_jsonb_test: proves that the stack's PostgreSQL is real and that the
 * profiled role can do what the worker needs (DESIGN.md §5): create a table
 * with a jsonb column, write a document, and read back one equal to it.
 *
 * Equality is judged on the parsed documents (jansson), not on text: jsonb
 * reorders keys and normalises whitespace, and that is allowed.
 */
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_env.h"

/* Nested objects and arrays, UTF-8 beyond ASCII, escapes, and every JSON type,
 * with integers that need 64 bits and doubles that need their exact digits. */
static const char DOCUMENT[] =
    "{\"email\": \"ada@example.com\", \"email_verified\": true, \"phone_number\": null,"
    " \"address\": {\"city\": \"Zürich\", \"lines\": [\"Bahnhofstrasse 1\", \"\\\"quoted\\\" \\\\ back\"]},"
    " \"counts\": [0, -7, 9007199254740993, 1234567890123456789], \"ratio\": 0.1, \"tiny\": 2.5e-8,"
    " \"emoji\": \"\xf0\x9f\x93\xac\", \"nested\": {\"a\": {\"b\": {\"c\": [true, false, {}]}}}}";

static PGconn *connect_or_fail(const char *dsn)
{
    /* expand_dbname lets the DSN from the environment fill every field, while the
     * connect timeout stays bounded whatever the DSN says. */
    const char *const keywords[] = {"dbname", "connect_timeout", "options", NULL};
    const char *const values[] = {dsn, "10", "-c statement_timeout=10000", NULL};
    PGconn *conn = PQconnectdbParams(keywords, values, 1);

    if (PQstatus(conn) != CONNECTION_OK) {
        char reason[512];

        snprintf(reason, sizeof(reason), "%s", PQerrorMessage(conn));
        PQfinish(conn);
        ck_abort_msg("connect to \"%s\": %s", dsn, reason);
    }
    return conn;
}

/* Runs SQL that returns no rows; fails the test with PostgreSQL's message. */
static void exec_ok(PGconn *conn, const char *sql)
{
    PGresult *result = PQexec(conn, sql);

    if (PQresultStatus(result) != PGRES_COMMAND_OK) {
        char reason[512];

        snprintf(reason, sizeof(reason), "%s", PQresultErrorMessage(result));
        PQclear(result);
        ck_abort_msg("%s: %s", sql, reason);
    }
    PQclear(result);
}

START_TEST(jsonb_document_roundtrip)
{
    const char *dsn = test_env_require("PROFILED_PG_DSN");
    char table[96], sql[512];
    PGconn *conn;
    PGresult *result;
    json_t *sent = NULL, *stored = NULL;
    json_error_t jerror;

    test_env_unique_name("stack_jsonb", table, sizeof(table));
    for (char *c = table; *c; c++)
        if (*c == '-')
            *c = '_';

    conn = connect_or_fail(dsn);
    snprintf(sql, sizeof(sql), "CREATE TABLE %s (id text PRIMARY KEY, doc jsonb NOT NULL)", table);
    exec_ok(conn, sql);

    {
        const char *params[] = {"recipient-1", DOCUMENT};

        snprintf(sql, sizeof(sql), "INSERT INTO %s (id, doc) VALUES ($1, $2::jsonb)", table);
        result = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
        ck_assert_msg(PQresultStatus(result) == PGRES_COMMAND_OK, "insert: %s", PQresultErrorMessage(result));
        PQclear(result);
    }

    {
        const char *params[] = {"recipient-1"};

        /* doc->'address'->>'city' shows the column is real jsonb, not text. */
        snprintf(sql, sizeof(sql), "SELECT doc::text, doc->'address'->>'city' FROM %s WHERE id = $1", table);
        result = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
        ck_assert_msg(PQresultStatus(result) == PGRES_TUPLES_OK, "select: %s", PQresultErrorMessage(result));
        ck_assert_int_eq(PQntuples(result), 1);
        ck_assert_str_eq(PQgetvalue(result, 0, 1), "Zürich");
        stored = json_loads(PQgetvalue(result, 0, 0), JSON_REJECT_DUPLICATES, &jerror);
        ck_assert_msg(stored != NULL, "stored document does not parse: %s", jerror.text);
        PQclear(result);
    }

    sent = json_loads(DOCUMENT, JSON_REJECT_DUPLICATES, &jerror);
    ck_assert_msg(sent != NULL, "test document does not parse: %s", jerror.text);
    if (!json_equal(sent, stored)) {
        char *dump = json_dumps(stored, JSON_SORT_KEYS | JSON_COMPACT);

        ck_abort_msg("document read back differs: %s", dump ? dump : "(unprintable)");
    }

    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    exec_ok(conn, sql);
    json_decref(sent);
    json_decref(stored);
    PQfinish(conn);
}
END_TEST

START_TEST(profiled_role_owns_database)
{
    const char *dsn = test_env_require("PROFILED_PG_DSN");
    PGconn *conn = connect_or_fail(dsn);
    PGresult *result =
        PQexec(conn, "SELECT current_user, current_database(), pg_catalog.pg_get_userbyid(datdba) "
                     "FROM pg_database WHERE datname = current_database()");

    ck_assert_msg(PQresultStatus(result) == PGRES_TUPLES_OK, "query: %s", PQresultErrorMessage(result));
    ck_assert_str_eq(PQgetvalue(result, 0, 0), "profiled");
    ck_assert_str_eq(PQgetvalue(result, 0, 1), "profiled");
    ck_assert_str_eq(PQgetvalue(result, 0, 2), "profiled");
    PQclear(result);
    PQfinish(conn);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("pg_jsonb");
    TCase *tcase = tcase_create("jsonb");
    SRunner *runner;
    int failed;

    tcase_set_timeout(tcase, 60);
    tcase_add_test(tcase, jsonb_document_roundtrip);
    tcase_add_test(tcase, profiled_role_owns_database);
    suite_add_tcase(suite, tcase);
    runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
