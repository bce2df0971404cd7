#include "apply.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fold.h"
#include "log.h"
#include "pgconn.h"

struct apply_scratch {
    buf_t recipients, profiles, ids, partitions, notify, hex; /* profiles: COPY rows */
    fold_command_t *commands;
    fold_result_t *results;
    size_t *item_of; /* fold index -> batch index */
    fold_row_t *rows;
    uint8_t *applied;
    size_t cap, row_cap, applied_cap;
};

apply_scratch_t *apply_scratch_new(void)
{
    apply_scratch_t *scratch = calloc(1, sizeof(*scratch));
    if (!scratch)
        abort();
    return scratch;
}

void apply_scratch_destroy(apply_scratch_t *scratch)
{
    if (!scratch)
        return;
    buf_free(&scratch->recipients);
    buf_free(&scratch->profiles);
    buf_free(&scratch->ids);
    buf_free(&scratch->partitions);
    buf_free(&scratch->notify);
    buf_free(&scratch->hex);
    free(scratch->commands);
    free(scratch->results);
    free(scratch->item_of);
    free(scratch->rows);
    free(scratch->applied);
    free(scratch);
}

static void *apply_grow(void *p, size_t count, size_t size)
{
    void *grown = realloc(p, (count ? count : 1) * size);
    if (!grown)
        abort();
    return grown;
}

/* ------------------------------------------------ array literals (text format) */

static void arr_open(buf_t *b)
{
    buf_reset(b);
    buf_append_byte(b, '{');
}

static void arr_sep(buf_t *b)
{
    if (b->len > 1)
        buf_append_byte(b, ',');
}

/* A quoted element: inside double quotes only '"' and '\' need a backslash. */
static void arr_quoted(buf_t *b, const char *s, size_t n)
{
    arr_sep(b);
    buf_reserve(b, n + n / 8 + 2);
    buf_append_byte(b, '"');
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            buf_append(b, s + start, i - start);
            buf_append_byte(b, '\\');
            start = i;
        }
    }
    buf_append(b, s + start, n - start);
    buf_append_byte(b, '"');
}

/* A bytea element in hex form: "\\x0011..." (the backslash escaped for the array). */
static void arr_bytea(buf_t *b, const uint8_t *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    arr_sep(b);
    buf_append_str(b, "\"\\\\x");
    for (size_t i = 0; i < n; i++) {
        buf_append_byte(b, (uint8_t)digits[bytes[i] >> 4]);
        buf_append_byte(b, (uint8_t)digits[bytes[i] & 15]);
    }
    buf_append_byte(b, '"');
}

static void arr_raw(buf_t *b, const char *text)
{
    arr_sep(b);
    buf_append_str(b, text);
}

static void arr_close(buf_t *b)
{
    buf_append_byte(b, '}');
    buf_terminate(b);
}

/* ------------------------------------------------ COPY text format */

/* A field of COPY's text format: backslash, tab, newline and CR escaped. */
static void copy_field(buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n + n / 16 + 2);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != '\\' && c != '\t' && c != '\n' && c != '\r')
            continue;
        buf_append(b, s + start, i - start);
        buf_append_byte(b, '\\');
        buf_append_byte(b, (uint8_t)(c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\'));
        start = i + 1;
    }
    buf_append(b, s + start, n - start);
}

static int apply_hex_decode(const char *hex, size_t len, uint8_t *out, size_t out_len)
{
    if (len != out_len * 2)
        return -1;
    for (size_t i = 0; i < out_len; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* ------------------------------------------------ the transaction */

typedef struct apply_tx {
    PGconn *conn;
    apply_counts_t *counts; /* timings accumulate here */
    char *errstr;
    size_t errstr_size;
    apply_status_t status; /* of the failing step */
} apply_tx_t;

/* Sends `rows` (COPY text) into apply_rows; false with tx->errstr on failure. */
static bool apply_copy(apply_tx_t *tx, const buf_t *rows);

/* Runs one statement; on failure classifies it into tx->status and fills errstr. */
static double apply_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static PGresult *apply_exec(apply_tx_t *tx, const char *what, const char *sql, int nparams,
                            const char *const *params, ExecStatusType expect)
{
    double t0 = apply_ms();
    PGresult *res = PQexecParams(tx->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    double ms = apply_ms() - t0;
    if (strcmp(what, "upsert profiles") == 0)
        tx->counts->ms_upsert += ms;
    else if (strcmp(what, "record applied ids") == 0 || strcmp(what, "unrecord stale ids") == 0)
        tx->counts->ms_ids += ms;
    else if (strcmp(what, "commit") == 0)
        tx->counts->ms_commit += ms;
    else if (strcmp(what, "move position") == 0 || strcmp(what, "insert position") == 0 ||
             strcmp(what, "notify") == 0)
        tx->counts->ms_positions += ms;
    else
        tx->counts->ms_read += ms;
    if (PQresultStatus(res) == expect)
        return res;
    char reason[512];
    pgconn_error(tx->conn, res, reason, sizeof(reason));
    snprintf(tx->errstr, tx->errstr_size, "%s: %s", what, reason);
    tx->status =
        PQstatus(tx->conn) == CONNECTION_OK && pgconn_is_data_error(res) ? APPLY_REJECTED : APPLY_RETRY;
    PQclear(res);
    return NULL;
}

static bool apply_exec_ok(apply_tx_t *tx, const char *what, const char *sql, int nparams,
                          const char *const *params)
{
    PGresult *res = apply_exec(tx, what, sql, nparams, params, PGRES_COMMAND_OK);
    bool ok = res != NULL;
    PQclear(res);
    return ok;
}

/* No FOR UPDATE here: the positions of the range's partitions are locked first
 * (apply_fence), and every writer of a recipient holds its partition's position
 * lock (a recipient lives on one partition: the key is the recipient id), so
 * nobody changes these rows until we commit. Locking 2000 rows would cost a
 * heap write each. */
static const char apply_sql_lock[] = "SELECT recipient_id, version::text FROM profiles "
                                     "WHERE recipient_id = ANY($1::text[])";

static const char apply_sql_fence[] =
    "SELECT partition, next_offset FROM kafka_positions "
    "WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[]) "
    "ORDER BY partition FOR UPDATE";

/* Records every id of the range and answers the ones that were recorded
 * before (or twice in the range: those are folded as in-range duplicates).
 * One statement instead of "read ids, fold, insert ids": the ids of commands
 * the fold finds stale are deleted again afterwards (rare). The positions are
 * locked first, so no other worker inserts these ids meanwhile. */
static const char apply_sql_applied[] =
    "WITH input AS (SELECT c, r FROM unnest($1::bytea[], $2::text[]) AS u(c, r)), "
    "ins AS (INSERT INTO applied_commands (command_id, recipient_id, applied_at) "
    "SELECT c, r, now() FROM input ON CONFLICT (command_id) DO NOTHING RETURNING command_id) "
    "SELECT DISTINCT encode(i.c, 'hex') FROM input i WHERE NOT EXISTS (SELECT 1 FROM ins WHERE "
    "ins.command_id = i.c)";

static const char apply_sql_unrecord[] = "DELETE FROM applied_commands WHERE command_id = ANY($1::bytea[])";

/*
 * The rows go in through COPY into a temporary table, then one INSERT ... ON
 * CONFLICT. Measured against one INSERT ... SELECT FROM unnest($text_arrays)
 * on 2000 rows of ~1 KiB: COPY + INSERT took ~43 ms, unnest ~55-80 ms (parsing
 * one 2 MB array literal is the cost). The temporary table lives as long as the
 * session and empties itself at each commit.
 */
static const char apply_sql_staging[] =
    "CREATE TEMP TABLE IF NOT EXISTS apply_rows (recipient_id text, profile jsonb, command_id bytea, "
    "kafka_partition int, kafka_offset bigint, version numeric(20, 0)) ON COMMIT DELETE ROWS";

#define APPLY_COPY_PIECE ((size_t)1 << 20) /* bytes per PQputCopyData call */

static const char apply_sql_copy[] =
    "COPY apply_rows (recipient_id, profile, command_id, kafka_partition, kafka_offset, version) FROM STDIN";

static const char apply_sql_upsert[] =
    "INSERT INTO profiles AS p (recipient_id, profile, command_id, kafka_topic, kafka_partition, "
    "kafka_offset, "
    "version, created_at, updated_at) "
    "SELECT recipient_id, profile, command_id, $1, kafka_partition, kafka_offset, version, now(), now() "
    "FROM apply_rows "
    "ON CONFLICT (recipient_id) DO UPDATE SET profile = EXCLUDED.profile, command_id = EXCLUDED.command_id, "
    "kafka_topic = EXCLUDED.kafka_topic, kafka_partition = EXCLUDED.kafka_partition, "
    "kafka_offset = EXCLUDED.kafka_offset, version = coalesce(EXCLUDED.version, p.version), "
    "updated_at = EXCLUDED.updated_at";

static const char apply_sql_position_update[] =
    "UPDATE kafka_positions SET next_offset = $4, updated_at = now() "
    "WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $5";

static const char apply_sql_position_insert[] =
    "INSERT INTO kafka_positions (consumer_group, topic, partition, next_offset, updated_at) "
    "VALUES ($1, $2, $3, $4, now()) ON CONFLICT DO NOTHING";

/* PostgreSQL refuses a NOTIFY payload of 8000 bytes or more (22023, which would read as a
 * data error and split the range for nothing): a range over many partitions notifies in
 * several payloads, each a whole list of "topic/partition/next_offset". */
#define APPLY_NOTIFY_MAX_BYTES 7900

/* Sends `payload` as one NOTIFY (delivered only if the transaction commits) and empties it. */
static bool apply_notify(apply_tx_t *tx, buf_t *payload)
{
    buf_terminate(payload);
    const char *params[1] = {(const char *)payload->data};
    PGresult *res =
        apply_exec(tx, "notify", "SELECT pg_notify('profiled_applied', $1)", 1, params, PGRES_TUPLES_OK);
    buf_reset(payload);
    if (!res)
        return false;
    PQclear(res);
    return true;
}

/* Locks the positions of the range's partitions and checks that PostgreSQL
 * holds what we expect (a missing row where we expect none). A mismatch means
 * another worker moved a partition since we read it: APPLY_FENCED, before any
 * work is done. */
static bool apply_fence(apply_tx_t *tx, apply_scratch_t *s, const char *group, const char *topic,
                        const apply_position_t *positions, size_t position_count)
{
    buf_t *array = &s->partitions;
    arr_open(array);
    for (size_t p = 0; p < position_count; p++) {
        char number[16];
        snprintf(number, sizeof(number), "%" PRId32, positions[p].partition);
        arr_raw(array, number);
    }
    arr_close(array);
    const char *params[3] = {group, topic, (const char *)array->data};
    PGresult *res = apply_exec(tx, "lock positions", apply_sql_fence, 3, params, PGRES_TUPLES_OK);
    if (!res)
        return false;
    bool ok = true;
    for (size_t p = 0; p < position_count && ok; p++) {
        bool found = false;
        int64_t held = 0;
        for (int r = 0; r < PQntuples(res); r++)
            if (atoi(PQgetvalue(res, r, 0)) == positions[p].partition) {
                found = true;
                held = strtoll(PQgetvalue(res, r, 1), NULL, 10);
            }
        if (found != positions[p].stored || (found && held != positions[p].expected)) {
            snprintf(tx->errstr, tx->errstr_size,
                     "partition %" PRId32 ": PostgreSQL holds position %s%" PRId64
                     ", this worker expected %s%" PRId64 " (another worker moved it)",
                     positions[p].partition, found ? "" : "none/", held, positions[p].stored ? "" : "none/",
                     positions[p].expected);
            tx->status = APPLY_FENCED;
            ok = false;
        }
    }
    PQclear(res);
    return ok;
}

static bool apply_one_row(PGresult *res)
{
    return strcmp(PQcmdTuples(res), "1") == 0;
}

apply_status_t apply_run(PGconn *conn, apply_scratch_t *s, const char *group, const char *topic,
                         const batch_t *batch, size_t lo, size_t hi, const apply_position_t *positions,
                         size_t position_count, apply_counts_t *counts, char *errstr, size_t errstr_size)
{
    apply_tx_t tx = {
        .conn = conn, .counts = counts, .errstr = errstr, .errstr_size = errstr_size, .status = APPLY_RETRY};
    PGresult *rows_res = NULL, *ids_res = NULL;
    bool in_tx = false;
    memset(counts, 0, sizeof(*counts));

    /* The range's commands, in order, for the fold. */
    size_t n = 0, versioned = 0;
    if (s->cap < hi - lo) {
        s->cap = hi - lo;
        s->commands = apply_grow(s->commands, s->cap, sizeof(*s->commands));
        s->results = apply_grow(s->results, s->cap, sizeof(*s->results));
        s->item_of = apply_grow(s->item_of, s->cap, sizeof(*s->item_of));
    }
    arr_open(&s->recipients); /* of versioned commands */
    arr_open(&s->ids);        /* every command's id ... */
    arr_open(&s->hex);        /* ... and its recipient */
    for (size_t i = lo; i < hi; i++) {
        const batch_item_t *item = &batch->items[i];
        if (item->kind != BATCH_COMMAND)
            continue;
        fold_command_t *c = &s->commands[n];
        c->recipient_id = item->command.recipient_id;
        c->recipient_id_len = item->command.recipient_id_len;
        c->command_id = item->command.command_id;
        c->has_version = item->command.has_version;
        c->version = item->command.version;
        s->item_of[n++] = i;
        /* Stored versions matter only to versioned commands: a recipient with none
         * in the range is folded as if it had no row, and the upsert keeps its
         * stored version (COALESCE), which is what an unversioned command does. */
        if (c->has_version) {
            arr_quoted(&s->recipients, c->recipient_id, c->recipient_id_len);
            versioned++;
        }
        arr_bytea(&s->ids, c->command_id, FOLD_ID_BYTES);
        arr_quoted(&s->hex, c->recipient_id, c->recipient_id_len);
    }
    arr_close(&s->recipients);
    arr_close(&s->ids);
    arr_close(&s->hex);

    if (!apply_exec_ok(&tx, "begin", "BEGIN", 0, NULL))
        goto fail;
    in_tx = true;
    if (!apply_fence(&tx, s, group, topic, positions, position_count))
        goto fail;

    if (n > 0) {
        size_t row_count = 0;
        if (versioned > 0) {
            const char *lock_params[1] = {(const char *)s->recipients.data};
            rows_res = apply_exec(&tx, "read versions", apply_sql_lock, 1, lock_params, PGRES_TUPLES_OK);
            if (!rows_res)
                goto fail;
            row_count = (size_t)PQntuples(rows_res);
        }
        if (s->row_cap < row_count) {
            s->row_cap = row_count;
            s->rows = apply_grow(s->rows, s->row_cap, sizeof(*s->rows));
        }
        for (size_t r = 0; r < row_count; r++) {
            s->rows[r].recipient_id = PQgetvalue(rows_res, (int)r, 0);
            s->rows[r].recipient_id_len = (size_t)PQgetlength(rows_res, (int)r, 0);
            s->rows[r].has_version = !PQgetisnull(rows_res, (int)r, 1);
            s->rows[r].version =
                s->rows[r].has_version ? strtoull(PQgetvalue(rows_res, (int)r, 1), NULL, 10) : 0;
        }

        const char *id_params[2] = {(const char *)s->ids.data, (const char *)s->hex.data};
        ids_res = apply_exec(&tx, "record applied ids", apply_sql_applied, 2, id_params, PGRES_TUPLES_OK);
        if (!ids_res)
            goto fail;
        size_t applied_count = (size_t)PQntuples(ids_res);
        if (s->applied_cap < applied_count) {
            s->applied_cap = applied_count;
            s->applied = apply_grow(s->applied, s->applied_cap, FOLD_ID_BYTES);
        }
        for (size_t r = 0; r < applied_count; r++)
            if (apply_hex_decode(PQgetvalue(ids_res, (int)r, 0), (size_t)PQgetlength(ids_res, (int)r, 0),
                                 s->applied + r * FOLD_ID_BYTES, FOLD_ID_BYTES) < 0) {
                snprintf(errstr, errstr_size, "read applied ids: unexpected id text from PostgreSQL");
                goto fail;
            }

        fold_run(s->commands, n, s->rows, row_count, s->applied, applied_count, s->results);

        /* Rows to upsert, and ids to record. */
        buf_reset(&s->profiles); /* COPY rows */
        arr_open(&s->hex);       /* ids of stale commands, recorded above: to delete */
        size_t stale_to_delete = 0;
        for (size_t k = 0; k < n; k++) {
            const batch_item_t *item = &batch->items[s->item_of[k]];
            const fold_result_t *result = &s->results[k];
            switch (result->outcome) {
            case FOLD_WRITTEN: {
                /* recipient_id, profile, command_id, kafka_partition, kafka_offset, version */
                static const char hex[] = "0123456789abcdef";
                counts->written++;
                buf_t *row = &s->profiles;
                copy_field(row, item->command.recipient_id, item->command.recipient_id_len);
                buf_append_byte(row, '\t');
                copy_field(row, (const char *)batch->json.data + item->json_off, item->json_len);
                buf_append_str(row, "\t\\\\x");
                for (size_t b = 0; b < FOLD_ID_BYTES; b++) {
                    buf_append_byte(row, (uint8_t)hex[item->command.command_id[b] >> 4]);
                    buf_append_byte(row, (uint8_t)hex[item->command.command_id[b] & 15]);
                }
                buf_appendf(row, "\t%" PRId32 "\t%" PRId64 "\t", item->partition, item->offset);
                if (result->store_has_version)
                    buf_appendf(row, "%" PRIu64 "\n", result->store_version);
                else
                    buf_append_str(row, "\\N\n");
            }
                __attribute__((fallthrough)); /* a written command is applied too */
            case FOLD_SUPERSEDED:
                counts->applied++;
                break;
            case FOLD_DUPLICATE:
                counts->duplicates++;
                break;
            case FOLD_STALE:
                counts->stale++;
                /* unless another command of the range with this id applied
                 * (a producer reusing an id: rare, so a plain scan) */
                bool applied_here = false;
                for (size_t j = 0; j < n && !applied_here; j++)
                    applied_here =
                        (s->results[j].outcome == FOLD_WRITTEN || s->results[j].outcome == FOLD_SUPERSEDED) &&
                        memcmp(s->commands[j].command_id, item->command.command_id, FOLD_ID_BYTES) == 0;
                if (!applied_here) {
                    arr_bytea(&s->hex, item->command.command_id, FOLD_ID_BYTES);
                    stale_to_delete++;
                }
                break;
            default:
                /* A broken fold: committing would move the position past a command
                 * whose row was never written. */
                log_error(NULL, "impossible fold outcome %d", (int)result->outcome);
                abort();
            }
        }
        arr_close(&s->hex);

        bool ok = true;
        if (counts->written > 0) {
            const char *params[1] = {topic};
            ok = apply_exec_ok(&tx, "upsert profiles", apply_sql_staging, 0, NULL) &&
                 apply_copy(&tx, &s->profiles) &&
                 apply_exec_ok(&tx, "upsert profiles", apply_sql_upsert, 1, params);
        }
        if (ok && stale_to_delete > 0) {
            const char *params[1] = {(const char *)s->hex.data};
            ok = apply_exec_ok(&tx, "unrecord stale ids", apply_sql_unrecord, 1, params);
        }
        if (!ok)
            goto fail;
    }

    /* Positions, fenced: the update only matches the offset we believe PostgreSQL
     * holds. Zero rows means another worker moved the partition since we read it. */
    buf_reset(&s->notify);
    for (size_t p = 0; p < position_count; p++) {
        char partition[16], next[32], expected[32];
        snprintf(partition, sizeof(partition), "%" PRId32, positions[p].partition);
        snprintf(next, sizeof(next), "%" PRId64, positions[p].next);
        snprintf(expected, sizeof(expected), "%" PRId64, positions[p].expected);
        const char *params[5] = {group, topic, partition, next, expected};
        PGresult *res =
            positions[p].stored
                ? apply_exec(&tx, "move position", apply_sql_position_update, 5, params, PGRES_COMMAND_OK)
                : apply_exec(&tx, "insert position", apply_sql_position_insert, 4, params, PGRES_COMMAND_OK);
        if (!res)
            goto fail;
        bool moved = apply_one_row(res);
        PQclear(res);
        if (!moved) {
            snprintf(errstr, errstr_size, "partition %s: position is no longer %s (another worker moved it)",
                     partition, positions[p].stored ? expected : "unset");
            tx.status = APPLY_FENCED;
            goto fail;
        }
        size_t entry = strlen(topic) + strlen(partition) + strlen(next) + 3;
        if (s->notify.len > 0 && s->notify.len + entry > APPLY_NOTIFY_MAX_BYTES &&
            !apply_notify(&tx, &s->notify))
            goto fail;
        buf_appendf(&s->notify, "%s%s/%s/%s", s->notify.len ? "," : "", topic, partition, next);
    }
    if (s->notify.len > 0 && !apply_notify(&tx, &s->notify))
        goto fail;
    if (!apply_exec_ok(&tx, "commit", "COMMIT", 0, NULL)) {
        in_tx = false; /* a failed COMMIT ends the transaction either way */
        goto fail;
    }
    PQclear(rows_res);
    PQclear(ids_res);
    return APPLY_OK;

fail:
    PQclear(rows_res);
    PQclear(ids_res);
    if (in_tx && PQstatus(conn) == CONNECTION_OK) {
        PGresult *res = PQexec(conn, "ROLLBACK");
        PQclear(res);
    }
    memset(counts, 0, sizeof(*counts));
    return tx.status;
}

static bool apply_copy(apply_tx_t *tx, const buf_t *rows)
{
    double t0 = apply_ms();
    char reason[512];
    PGresult *res = PQexec(tx->conn, apply_sql_copy);
    bool ok = PQresultStatus(res) == PGRES_COPY_IN;
    if (!ok)
        pgconn_error(tx->conn, res, reason, sizeof(reason));
    PQclear(res);
    /* PQputCopyData takes an int length, and a batch of large profiles can pass 2 GiB: a
     * truncated (negative) length sends nothing and still answers 1, and the COPY would
     * end with no rows while the positions move. So the rows go in pieces. */
    for (size_t sent = 0; ok && sent < rows->len;) {
        size_t piece = rows->len - sent < APPLY_COPY_PIECE ? rows->len - sent : APPLY_COPY_PIECE;
        if (PQputCopyData(tx->conn, (const char *)rows->data + sent, (int)piece) != 1) {
            pgconn_error(tx->conn, NULL, reason, sizeof(reason));
            ok = false;
        }
        sent += piece;
    }
    if (ok && PQputCopyEnd(tx->conn, NULL) != 1) {
        pgconn_error(tx->conn, NULL, reason, sizeof(reason));
        ok = false;
    }
    /* the COPY's own result, then NULL; on failure drain whatever comes */
    bool data_error = false;
    while ((res = PQgetResult(tx->conn)) != NULL) {
        if (ok && PQresultStatus(res) != PGRES_COMMAND_OK) {
            pgconn_error(tx->conn, res, reason, sizeof(reason));
            data_error = pgconn_is_data_error(res);
            ok = false;
        }
        PQclear(res);
    }
    tx->counts->ms_upsert += apply_ms() - t0;
    if (!ok) {
        snprintf(tx->errstr, tx->errstr_size, "copy rows: %s", reason);
        tx->status = PQstatus(tx->conn) == CONNECTION_OK && data_error ? APPLY_REJECTED : APPLY_RETRY;
    }
    return ok;
}
