#include "apply.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "fold.h"
#include "hex.h"
#include "json_transcode.h"
#include "json_write.h"
#include "log.h"
#include "pgconn.h"
#include "xalloc.h"

struct apply_scratch {
    limits_t limits;
    buf_t recipients, profiles, ids, partitions, notify; /* profiles: COPY rows */
    buf_t expected, next, stored_flags, payloads;        /* the positions statement's arrays */
    buf_t json;                                          /* one profile's JSON */
    buf_t needs;                                         /* bool array: read the profile */
    buf_t stored;                                        /* read profiles, as msgpack */
    fold_out_t out;
    fold_command_t *commands;
    fold_result_t *results;
    size_t *item_of; /* fold index -> batch index */
    bool *read;      /* fold_plan */
    fold_row_t *rows;
    size_t *stored_off; /* per row: offset of its profile in `stored`, or SIZE_MAX */
    uint8_t *applied;
    size_t cap, row_cap, applied_cap;
};

apply_scratch_t *apply_scratch_new(const limits_t *limits)
{
    apply_scratch_t *scratch = xcalloc(1, sizeof(*scratch), "apply scratch");
    scratch->limits = *limits;
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
    buf_free(&scratch->expected);
    buf_free(&scratch->next);
    buf_free(&scratch->stored_flags);
    buf_free(&scratch->payloads);
    buf_free(&scratch->json);
    buf_free(&scratch->needs);
    buf_free(&scratch->stored);
    fold_out_free(&scratch->out);
    free(scratch->read);
    free(scratch->stored_off);
    free(scratch->commands);
    free(scratch->results);
    free(scratch->item_of);
    free(scratch->rows);
    free(scratch->applied);
    free(scratch);
}

static void *apply_grow(void *p, size_t count, size_t size)
{
    void *grown = xrealloc(p, (count ? count : 1) * size, "apply arrays");
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
    arr_sep(b);
    buf_append_str(b, "\"\\\\x");
    for (size_t i = 0; i < n; i++) {
        char digits[2];
        hex_byte(digits, bytes[i]);
        buf_append(b, digits, 2);
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

const char *const apply_step_names[APPLY_STEP_COUNT] = {
    [APPLY_STEP_READ] = "ms_read",
    [APPLY_STEP_FOLD] = "ms_fold",
    [APPLY_STEP_WRITE] = "ms_write",
    [APPLY_STEP_COMMIT] = "ms_commit",
};

/* One transaction in progress: its inputs, where its timings go, and the
 * status of the failing step. */
typedef struct apply_tx {
    PGconn *conn;
    apply_scratch_t *s;
    const char *group, *topic;
    const batch_t *batch;
    size_t lo, hi;
    const apply_position_t *positions;
    size_t position_count;
    size_t n, versioned;          /* commands of the range; of them, with an external version */
    size_t to_read;               /* recipients whose row is read (versions, profiles) */
    size_t row_count;             /* stored rows read for the fold */
    size_t applied_count;         /* ids recorded before */
    PGresult *rows_res, *ids_res; /* the fold borrows the recipient ids of rows_res */
    apply_counts_t *counts;
    char *errstr;
    size_t errstr_size;
    apply_status_t status; /* of the failing step */
    char sqlstate[6];      /* of a failed COPY, or "" */
} apply_tx_t;

/* Monotonic milliseconds with a fraction, for the step timings. */
static double apply_ms(void)
{
    return (double)clock_mono_us() / 1e3;
}

/* Appends fold command k's COPY row to `row`, or nothing when k has none. */
typedef void (*apply_copy_row_fn)(apply_tx_t *tx, size_t k, buf_t *row);

/* Runs `sql` (a COPY ... FROM STDIN) with one row per fold command from
 * `row_fn`, timed in the write step; false with tx->errstr ("<what>: ...") on
 * failure. */
static bool apply_copy(apply_tx_t *tx, const char *what, const char *sql, apply_copy_row_fn row_fn);

/* Runs one statement, timed in `step`; on failure classifies it into tx->status
 * and fills errstr with `what` and PostgreSQL's reason. */
static PGresult *apply_exec(apply_tx_t *tx, apply_step_t step, const char *what, const char *sql, int nparams,
                            const char *const *params, ExecStatusType expect)
{
    double t0 = apply_ms();
    PGresult *res = PQexecParams(tx->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    tx->counts->ms[step] += apply_ms() - t0;
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

static bool apply_exec_ok(apply_tx_t *tx, apply_step_t step, const char *what, const char *sql, int nparams,
                          const char *const *params)
{
    PGresult *res = apply_exec(tx, step, what, sql, nparams, params, PGRES_COMMAND_OK);
    bool ok = res != NULL;
    PQclear(res);
    return ok;
}

/* One statement of a pipeline: its result is kept in `res` on success. */
typedef struct apply_stmt {
    const char *what, *sql;
    int nparams;
    const char *const *params;
    ExecStatusType expect;
    PGresult *res;
} apply_stmt_t;

/* Leaves pipeline mode, reading whatever is still queued (after a failure). */
static void apply_pipeline_exit(PGconn *conn)
{
    for (int tries = 0; PQpipelineStatus(conn) != PQ_PIPELINE_OFF && tries < 64; tries++) {
        if (PQexitPipelineMode(conn) == 1)
            return;
        PGresult *res = PQgetResult(conn);
        if (!res && PQstatus(conn) != CONNECTION_OK)
            return; /* the lane closes a broken connection */
        PQclear(res);
    }
}

/*
 * Sends `count` statements in one pipeline (libpq pipeline mode: one round
 * trip to PostgreSQL instead of one each; on a loaded machine every round trip
 * waits for the backend to be scheduled, so their number is most of a small
 * batch's latency) and reads their results in order, timed in `step`. A
 * statement that fails makes PostgreSQL skip the rest up to the sync (inside a
 * transaction block, which the caller rolls back). On failure, every result is
 * cleared and tx->status/errstr name the first failing statement; `*failed` (if
 * not NULL) its index and its SQLSTATE in tx->sqlstate.
 */
static bool apply_pipeline(apply_tx_t *tx, apply_step_t step, apply_stmt_t *stmts, size_t count,
                           size_t *failed)
{
    double t0 = apply_ms();
    char reason[512] = "";
    bool ok = PQenterPipelineMode(tx->conn) == 1;
    size_t bad = count, sent = 0;
    bool data_error = false;
    tx->sqlstate[0] = '\0';
    if (!ok)
        pgconn_error(tx->conn, NULL, reason, sizeof(reason));
    for (; ok && sent < count; sent++)
        if (PQsendQueryParams(tx->conn, stmts[sent].sql, stmts[sent].nparams, NULL, stmts[sent].params, NULL,
                              NULL, 0) != 1) {
            pgconn_error(tx->conn, NULL, reason, sizeof(reason));
            bad = sent;
            ok = false;
            break;
        }
    if (sent > 0 && PQpipelineSync(tx->conn) != 1 && ok) {
        pgconn_error(tx->conn, NULL, reason, sizeof(reason));
        ok = false;
    }
    for (size_t i = 0; i < count; i++)
        stmts[i].res = NULL;
    /* Each statement sent: its result, then NULL. */
    for (size_t i = 0; i < sent && PQstatus(tx->conn) == CONNECTION_OK; i++) {
        PGresult *res = PQgetResult(tx->conn);
        if (!res) {
            if (ok)
                pgconn_error(tx->conn, NULL, reason, sizeof(reason));
            ok = false;
            bad = bad < i ? bad : i;
            break;
        }
        if (ok && PQresultStatus(res) != stmts[i].expect) {
            pgconn_error(tx->conn, res, reason, sizeof(reason));
            data_error = pgconn_is_data_error(res);
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(tx->sqlstate, sizeof(tx->sqlstate), "%s", state ? state : "");
            ok = false;
            bad = i;
        }
        if (ok)
            stmts[i].res = res;
        else
            PQclear(res);
        PQclear(PQgetResult(tx->conn)); /* the NULL that ends it */
    }
    if (sent > 0 && PQstatus(tx->conn) == CONNECTION_OK) {
        PGresult *sync = PQgetResult(tx->conn); /* PGRES_PIPELINE_SYNC */
        if (ok && PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
            pgconn_error(tx->conn, sync, reason, sizeof(reason));
            ok = false;
        }
        PQclear(sync);
    }
    apply_pipeline_exit(tx->conn);
    tx->counts->ms[step] += apply_ms() - t0;
    if (ok)
        return true;
    for (size_t i = 0; i < count; i++) {
        PQclear(stmts[i].res);
        stmts[i].res = NULL;
    }
    snprintf(tx->errstr, tx->errstr_size, "%s: %s", bad < count ? stmts[bad].what : "pipeline", reason);
    tx->status = PQstatus(tx->conn) == CONNECTION_OK && data_error ? APPLY_REJECTED : APPLY_RETRY;
    if (failed)
        *failed = bad;
    return false;
}

/* The rows the fold needs: versions of recipients with a versioned command,
 * and the profile of those fold_plan marked ($2 true), in one statement. */
static const char apply_sql_rows[] =
    "SELECT u.r, p.version::text, CASE WHEN u.need THEN p.profile::text END, u.need "
    "FROM unnest($1::text[], $2::bool[]) AS u(r, need) JOIN profiles p ON p.recipient_id = u.r";

static const char apply_sql_fence[] =
    "SELECT partition, next_offset FROM kafka_positions "
    "WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[]) "
    "ORDER BY partition FOR UPDATE";

/* The ids of the range recorded before (by an earlier batch, or a re-produced
 * copy). A scalar subquery per id, not a join: PostgreSQL keeps it as one
 * primary-key probe per id whatever the table's statistics say (a join was
 * planned as a hash join over the whole table on a young, unanalysed one).
 * The positions are locked first, so no other worker records these ids
 * meanwhile; a copy of an id on another partition is caught by the primary key
 * when the ids are written (apply_write). In-range copies are the fold's. */
static const char apply_sql_applied[] =
    "SELECT encode(u.c, 'hex') FROM unnest($1::bytea[]) AS u(c) "
    "WHERE (SELECT true FROM applied_commands a WHERE a.command_id = u.c LIMIT 1)";

/*
 * Every processed id (proto §6) is written after the fold, with its outcome
 * (NULL applied, 'stale', or 'refused' and its reason; the api reads it by
 * command id), by one COPY: applied_at takes its default, now(), the
 * transaction's time (migration 003). Measured against the former
 * INSERT ... ON CONFLICT DO NOTHING RETURNING over unnest (5,000 ids into
 * 200k): 54-108 ms for the COPY against 106-228 ms, and no second statement
 * for the outcomes. The fold never lists an id twice (later copies are
 * FOLD_DUPLICATE), so only a copy recorded by a concurrent transaction can
 * conflict.
 */
static const char apply_sql_ids_copy[] =
    "COPY applied_commands (command_id, recipient_id, outcome, reason) FROM STDIN";

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

/* Bytes per PQputCopyData call. The row buffer grows to about twice this, and
 * libpq's output buffer as much again, per lane: at 1 MiB they held 4 MiB of
 * a two-lane worker's peak (heaptrack); 128 KiB costs 44 calls of a 5,000-row
 * batch instead of 6, no measurable time. */
#define APPLY_COPY_PIECE ((size_t)128 << 10)

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

/*
 * Every position of the range moved and notified in one statement, so that
 * it and COMMIT go in one round trip (apply_pipeline). Fenced a second time:
 * an existing position moves only from `expected` (it is locked since the
 * fence, so this holds unless the fence itself is broken), a new one is
 * inserted only if no other worker inserted it meanwhile. Were a position not
 * to move, the statement fails (a cast of the text "fenced ..." to int,
 * SQLSTATE 22P02, evaluated only in that case: its operand depends on the
 * CTEs, so the planner cannot fold it), the pipeline skips the COMMIT and the
 * transaction rolls back; apply_finish reads that error as APPLY_FENCED.
 * $3..$6: partition, expected, next, stored, one element per position;
 * $7: the NOTIFY payloads (sent only if the transaction commits).
 */
#define APPLY_FENCED_TEXT "fenced by another worker: "
static const char apply_sql_positions[] =
    "WITH v AS (SELECT * FROM unnest($3::int[], $4::bigint[], $5::bigint[], $6::bool[]) "
    "AS v(partition, expected, next, stored)), "
    "moved AS (UPDATE kafka_positions k SET next_offset = v.next, updated_at = now() FROM v "
    "WHERE v.stored AND k.consumer_group = $1 AND k.topic = $2 AND k.partition = v.partition "
    "AND k.next_offset = v.expected RETURNING 1), "
    "added AS (INSERT INTO kafka_positions (consumer_group, topic, partition, next_offset, updated_at) "
    "SELECT $1, $2, partition, next, now() FROM v WHERE NOT v.stored ON CONFLICT DO NOTHING RETURNING 1), "
    "done AS (SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM added) AS n) "
    "SELECT CASE WHEN n = cardinality($3::int[]) THEN n "
    "ELSE ('" APPLY_FENCED_TEXT
    "' || n || ' of ' || cardinality($3::int[]) || ' positions moved')::bigint END, "
    "(SELECT count(pg_notify('profiled_applied', p)) FROM unnest($7::text[]) AS u(p)) FROM done";

/* SQLSTATE of apply_sql_positions's deliberate failure (invalid_text_representation). */
#define APPLY_FENCED_SQLSTATE "22P02"

/* PostgreSQL refuses a NOTIFY payload of 8000 bytes or more (22023, which would read as a
 * data error and split the range for nothing): a range over many partitions notifies in
 * several payloads, each a whole list of "topic/partition/next_offset". */
#define APPLY_NOTIFY_MAX_BYTES 7900

size_t apply_positions_for(const batch_t *batch, size_t lo, size_t hi, const apply_position_t *base,
                           size_t base_count, apply_position_t *positions, size_t cap)
{
    size_t count = 0;
    for (size_t i = lo; i < hi; i++) {
        const batch_item_t *item = &batch->items[i];
        size_t k;
        for (k = 0; k < count; k++)
            if (positions[k].partition == item->partition)
                break;
        if (k == count) {
            size_t b;
            for (b = 0; b < base_count; b++)
                if (base[b].partition == item->partition)
                    break;
            if (b == base_count || count == cap) /* the caller sized both from the batch */
                fatal_abort("apply positions outgrew the batch (partition %d)", (int)item->partition);
            positions[count++] = base[b];
        }
        positions[k].next = item->offset + 1;
    }
    return count;
}

/* Step "collect": the range's commands, in order, for the fold; the id and
 * recipient arrays for recording ids, the recipients of versioned commands. */
static void apply_collect(apply_tx_t *tx)
{
    apply_scratch_t *s = tx->s;
    size_t need = tx->hi - tx->lo;
    if (s->cap < need) {
        s->cap = need;
        s->commands = apply_grow(s->commands, s->cap, sizeof(*s->commands));
        s->results = apply_grow(s->results, s->cap, sizeof(*s->results));
        s->item_of = apply_grow(s->item_of, s->cap, sizeof(*s->item_of));
        s->read = apply_grow(s->read, s->cap, sizeof(*s->read));
    }
    arr_open(&s->ids); /* every command's id, to look up */
    for (size_t i = tx->lo; i < tx->hi; i++) {
        const batch_item_t *item = &tx->batch->items[i];
        if (item->kind != BATCH_COMMAND)
            continue;
        fold_command_t *c = &s->commands[tx->n];
        c->recipient_id = item->command.recipient_id;
        c->recipient_id_len = item->command.recipient_id_len;
        c->command_id = item->command.command_id;
        c->has_version = item->command.has_version;
        c->version = item->command.version;
        c->op = item->command.op;
        c->body = c->op == CODEC_OP_PATCH ? item->command.patch_msgpack : item->command.profile_msgpack;
        c->body_len =
            c->op == CODEC_OP_PATCH ? item->command.patch_msgpack_len : item->command.profile_msgpack_len;
        s->item_of[tx->n++] = i;
        tx->versioned += c->has_version;
        arr_bytea(&s->ids, c->command_id, FOLD_ID_BYTES);
    }
    arr_close(&s->ids);
}

/* The range's partitions as an int[] literal, in tx->positions order. */
static const char *apply_partitions_array(apply_tx_t *tx)
{
    buf_t *array = &tx->s->partitions;
    arr_open(array);
    for (size_t p = 0; p < tx->position_count; p++) {
        char number[16];
        snprintf(number, sizeof(number), "%" PRId32, tx->positions[p].partition);
        arr_raw(array, number);
    }
    arr_close(array);
    return (const char *)array->data;
}

/* Step "fence": the positions of the range's partitions, locked (apply_sql_fence),
 * must be what we expect (a missing row where we expect none). A mismatch
 * means another worker moved a partition since we read it: APPLY_FENCED,
 * before anything is written. */
static bool apply_fence_check(apply_tx_t *tx, const PGresult *res)
{
    for (size_t p = 0; p < tx->position_count; p++) {
        const apply_position_t *pos = &tx->positions[p];
        bool found = false;
        int64_t held = 0;
        for (int r = 0; r < PQntuples(res); r++)
            if (atoi(PQgetvalue(res, r, 0)) == pos->partition) {
                found = true;
                held = strtoll(PQgetvalue(res, r, 1), NULL, 10);
            }
        if (found != pos->stored || (found && held != pos->expected)) {
            snprintf(tx->errstr, tx->errstr_size,
                     "partition %" PRId32 ": PostgreSQL holds position %s%" PRId64
                     ", this worker expected %s%" PRId64 " (another worker moved it)",
                     pos->partition, found ? "" : "none/", held, pos->stored ? "" : "none/", pos->expected);
            tx->status = APPLY_FENCED;
            return false;
        }
    }
    return true;
}

/* Permissive limits for reading back stored profiles: they were within the
 * limits of the worker that wrote them, which may have been higher. */
static const limits_t apply_read_limits = {.max_body_bytes = SIZE_MAX,
                                           .max_depth = 1024,
                                           .max_key_bytes = UINT32_MAX,
                                           .max_string_bytes = UINT32_MAX,
                                           .max_keys = UINT32_MAX};

/* Step "read": the ids recorded before (tx->ids_res, read with the fence by
 * apply_begin); then, in one statement, the rows the fold needs: the version
 * of every recipient with a versioned command, and the profile of those
 * fold_plan marks (a merge or patch that builds on the stored profile). A
 * replace-only range without versions reads no row. */
static bool apply_read_state(apply_tx_t *tx)
{
    apply_scratch_t *s = tx->s;
    tx->applied_count = (size_t)PQntuples(tx->ids_res);
    if (s->applied_cap < tx->applied_count) {
        s->applied_cap = tx->applied_count;
        s->applied = apply_grow(s->applied, s->applied_cap, FOLD_ID_BYTES);
    }
    for (size_t r = 0; r < tx->applied_count; r++)
        if (apply_hex_decode(PQgetvalue(tx->ids_res, (int)r, 0), (size_t)PQgetlength(tx->ids_res, (int)r, 0),
                             s->applied + r * FOLD_ID_BYTES, FOLD_ID_BYTES) < 0) {
            snprintf(tx->errstr, tx->errstr_size, "read applied ids: unexpected id text from PostgreSQL");
            tx->status = APPLY_RETRY;
            return false;
        }

    /* Which rows to read: a recipient once, its profile if any command needs it. */
    fold_plan(s->commands, tx->n, s->applied, tx->applied_count, s->read);
    arr_open(&s->recipients);
    arr_open(&s->needs);
    for (size_t k = 0; k < tx->n; k++) {
        const fold_command_t *c = &s->commands[k];
        if (!s->read[k] && !c->has_version)
            continue;
        /* a recipient listed twice is read twice; the fold keeps the last row, and both are equal */
        arr_quoted(&s->recipients, c->recipient_id, c->recipient_id_len);
        arr_raw(&s->needs, s->read[k] ? "t" : "f");
        tx->to_read++;
    }
    arr_close(&s->recipients);
    arr_close(&s->needs);
    if (tx->to_read > 0) {
        const char *params[2] = {(const char *)s->recipients.data, (const char *)s->needs.data};
        tx->rows_res =
            apply_exec(tx, APPLY_STEP_READ, "read rows", apply_sql_rows, 2, params, PGRES_TUPLES_OK);
        if (!tx->rows_res)
            return false;
        tx->row_count = (size_t)PQntuples(tx->rows_res);
    }
    if (s->row_cap < tx->row_count) {
        s->row_cap = tx->row_count;
        s->rows = apply_grow(s->rows, s->row_cap, sizeof(*s->rows));
        s->stored_off = apply_grow(s->stored_off, s->row_cap, sizeof(*s->stored_off));
    }
    buf_reset(&s->stored);
    for (size_t r = 0; r < tx->row_count; r++) {
        fold_row_t *row = &s->rows[r];
        memset(row, 0, sizeof(*row));
        row->recipient_id = PQgetvalue(tx->rows_res, (int)r, 0);
        row->recipient_id_len = (size_t)PQgetlength(tx->rows_res, (int)r, 0);
        row->has_version = !PQgetisnull(tx->rows_res, (int)r, 1);
        row->version = row->has_version ? strtoull(PQgetvalue(tx->rows_res, (int)r, 1), NULL, 10) : 0;
        row->profile_read = PQgetvalue(tx->rows_res, (int)r, 3)[0] == 't';
        s->stored_off[r] = SIZE_MAX;
        if (row->profile_read && !PQgetisnull(tx->rows_res, (int)r, 2)) {
            const char *text = PQgetvalue(tx->rows_res, (int)r, 2);
            transcode_error_t error;
            s->stored_off[r] = s->stored.len;
            if (transcode_value((const uint8_t *)text, (size_t)PQgetlength(tx->rows_res, (int)r, 2),
                                &apply_read_limits, &s->stored, &error) < 0) {
                snprintf(tx->errstr, tx->errstr_size, "read profile of a stored row: %s", error.message);
                tx->status = APPLY_RETRY;
                return false;
            }
        }
    }
    /* pointers into `stored` once it no longer grows */
    for (size_t r = 0; r < tx->row_count; r++) {
        if (s->stored_off[r] == SIZE_MAX)
            continue;
        size_t end = s->stored.len;
        for (size_t q = r + 1; q < tx->row_count; q++)
            if (s->stored_off[q] != SIZE_MAX) {
                end = s->stored_off[q];
                break;
            }
        s->rows[r].profile = s->stored.data + s->stored_off[r];
        s->rows[r].profile_len = end - s->stored_off[r];
    }
    return true;
}

/* One COPY row: recipient_id, profile, command_id, kafka_partition, kafka_offset, version.
 * The profile is the replace's own, the one the fold built, or none (a delete:
 * the row stays, without profile, so that its version still orders later
 * versioned commands; GET answers 404 for it). */
static void apply_copy_row(apply_scratch_t *s, const batch_item_t *item, const fold_result_t *result,
                           buf_t *row)
{
    const codec_command_t *command = &item->command;
    copy_field(row, command->recipient_id, command->recipient_id_len);
    buf_append_byte(row, '\t');
    if (result->write == FOLD_WRITE_DELETED) {
        buf_append_str(row, "\\N");
    } else {
        const uint8_t *profile = command->profile_msgpack;
        size_t profile_len = command->profile_msgpack_len;
        if (result->write == FOLD_WRITE_DOC) {
            profile = s->out.docs.data + result->doc_off;
            profile_len = result->doc_len;
        }
        buf_reset(&s->json);
        size_t consumed = 0;
        codec_failure_t failure;
        if (json_write_value(profile, profile_len, &s->limits, "profile", &consumed, &s->json, &failure) <
            0) {
            /* The decoder (or the fold's doc_check) accepted it with the same walk and limits. */
            fatal_abort("a decoded profile no longer writes as JSON: %s", failure.message);
        }
        copy_field(row, (const char *)s->json.data, s->json.len);
    }
    buf_append_str(row, "\t\\\\x");
    for (size_t b = 0; b < FOLD_ID_BYTES; b++) {
        char digits[2];
        hex_byte(digits, command->command_id[b]);
        buf_append(row, digits, 2);
    }
    buf_appendf(row, "\t%" PRId32 "\t%" PRId64 "\t", item->partition, item->offset);
    if (result->store_has_version)
        buf_appendf(row, "%" PRIu64 "\n", result->store_version);
    else
        buf_append_str(row, "\\N\n");
}

/* Step "fold": the outcome of each command, counted (and refusals logged). */
static void apply_fold(apply_tx_t *tx)
{
    apply_scratch_t *s = tx->s;
    double t0 = apply_ms();
    fold_run(s->commands, tx->n, s->rows, tx->row_count, s->applied, tx->applied_count, &s->limits, &s->out,
             s->results);
    for (size_t k = 0; k < tx->n; k++) {
        const batch_item_t *item = &tx->batch->items[s->item_of[k]];
        const fold_result_t *result = &s->results[k];
        switch (result->outcome) {
        case FOLD_WRITTEN:
            tx->counts->written++;
            __attribute__((fallthrough)); /* a written command is applied too */
        case FOLD_SUPERSEDED:
            tx->counts->applied++;
            break;
        case FOLD_DUPLICATE:
            tx->counts->duplicates++;
            break;
        case FOLD_STALE:
            tx->counts->stale++;
            break;
        case FOLD_REFUSED: {
            tx->counts->refused++;
            const char *reason = (const char *)s->out.reasons.data + result->reason_off;
            if (log_level_min <= LOG_INFO) {
                char id[2 * FOLD_ID_BYTES + 1];
                for (size_t b = 0; b < FOLD_ID_BYTES; b++)
                    hex_byte(id + 2 * b, item->command.command_id[b]);
                id[2 * FOLD_ID_BYTES] = '\0';
                log_fields_t fields = LOG_FIELDS_INIT;
                log_field_str(&fields, "command_id", id);
                log_field_int(&fields, "partition", item->partition);
                log_field_int(&fields, "offset", item->offset);
                log_info(&fields, "command refused: %.*s", (int)result->reason_len, reason);
            }
            break;
        }
        default:
            /* A broken fold: committing would move the position past a command
             * whose row was never written. */
            fatal_abort("impossible fold outcome %d", (int)result->outcome);
        }
    }
    tx->counts->ms[APPLY_STEP_FOLD] += apply_ms() - t0;
}

/* A COPY row of applied_commands for every processed command (not the
 * duplicates: recorded before, or earlier in the range): command_id,
 * recipient_id, outcome, reason. */
static void apply_id_row(apply_tx_t *tx, size_t k, buf_t *row)
{
    apply_scratch_t *s = tx->s;
    const fold_result_t *result = &s->results[k];
    if (result->outcome == FOLD_DUPLICATE)
        return;
    const codec_command_t *command = &tx->batch->items[s->item_of[k]].command;
    buf_append_str(row, "\\\\x");
    for (size_t b = 0; b < FOLD_ID_BYTES; b++) {
        char digits[2];
        hex_byte(digits, command->command_id[b]);
        buf_append(row, digits, 2);
    }
    buf_append_byte(row, '\t');
    copy_field(row, command->recipient_id, command->recipient_id_len);
    if (result->outcome == FOLD_STALE) {
        buf_append_str(row, "\tstale\t\\N\n");
    } else if (result->outcome == FOLD_REFUSED) {
        buf_append_str(row, "\trefused\t");
        copy_field(row, (const char *)s->out.reasons.data + result->reason_off, result->reason_len);
        buf_append_byte(row, '\n');
    } else {
        buf_append_str(row, "\t\\N\t\\N\n");
    }
}

/* A COPY row of apply_rows for every written command. */
static void apply_profile_row(apply_tx_t *tx, size_t k, buf_t *row)
{
    apply_scratch_t *s = tx->s;
    if (s->results[k].outcome == FOLD_WRITTEN)
        apply_copy_row(s, &tx->batch->items[s->item_of[k]], &s->results[k], row);
}

/* Step "write": the rows, then every processed id with its outcome. */
static bool apply_write(apply_tx_t *tx)
{
    if (tx->counts->written > 0) {
        const char *params[1] = {tx->topic};
        if (!apply_copy(tx, "copy rows", apply_sql_copy, apply_profile_row) ||
            !apply_exec_ok(tx, APPLY_STEP_WRITE, "upsert profiles", apply_sql_upsert, 1, params))
            return false;
    }
    if (tx->n > tx->counts->duplicates && !apply_copy(tx, "record ids", apply_sql_ids_copy, apply_id_row)) {
        /* An id recorded meanwhile by another transaction (a copy of the command
         * on another partition) is a duplicate, not bad data: the retry reads it.
         * No other constraint of applied_commands can fail on a command's account
         * (the ids, recipients and outcomes are the worker's own): a NOT NULL or
         * check failure there is the schema's (e.g. applied_at without its default,
         * migration 003 not run), and dead-lettering would throw every command of
         * the batch away. Retried with backoff instead, and logged, until fixed. */
        if (strncmp(tx->sqlstate, "23", 2) == 0)
            tx->status = APPLY_RETRY;
        return false;
    }
    return true;
}

/* Steps BEGIN, "fence" and the ids' lookup, in one round trip: BEGIN, the
 * staging table (created once per session; IF NOT EXISTS is a catalog
 * lookup), the positions locked, the range's ids recorded before. The lookup
 * runs before the fence is checked, which is harmless: it writes nothing, and
 * a fenced transaction is rolled back. */
static bool apply_begin(apply_tx_t *tx)
{
    const char *fence_params[3] = {tx->group, tx->topic, apply_partitions_array(tx)};
    const char *id_params[1] = {(const char *)tx->s->ids.data};
    apply_stmt_t stmts[4] = {
        {.what = "begin", .sql = "BEGIN", .expect = PGRES_COMMAND_OK},
        {.what = "create staging table", .sql = apply_sql_staging, .expect = PGRES_COMMAND_OK},
        {.what = "lock positions",
         .sql = apply_sql_fence,
         .nparams = 3,
         .params = fence_params,
         .expect = PGRES_TUPLES_OK},
        {.what = "read applied ids",
         .sql = apply_sql_applied,
         .nparams = 1,
         .params = id_params,
         .expect = PGRES_TUPLES_OK},
    };
    if (!apply_pipeline(tx, APPLY_STEP_READ, stmts, tx->n > 0 ? 4 : 3, NULL))
        return false;
    PQclear(stmts[0].res);
    PQclear(stmts[1].res);
    bool fenced_ok = apply_fence_check(tx, stmts[2].res);
    PQclear(stmts[2].res);
    tx->ids_res = stmts[3].res; /* NULL when n == 0 */
    return fenced_ok;
}

/* Appends `entry` to the NOTIFY payloads (a text[] literal being built in
 * `array`), starting a new payload in `payload` when it would pass the limit. */
static void apply_payload_flush(buf_t *array, buf_t *payload)
{
    if (payload->len == 0)
        return;
    arr_quoted(array, (const char *)payload->data, payload->len);
    buf_reset(payload);
}

/* Steps "positions" and COMMIT, in one round trip: apply_sql_positions moves
 * (fenced) and notifies every position of the range, then COMMIT. A fence
 * failure there is its deliberate 22P02: APPLY_FENCED, the COMMIT skipped. */
static bool apply_finish(apply_tx_t *tx)
{
    apply_scratch_t *s = tx->s;
    arr_open(&s->expected);
    arr_open(&s->next);
    arr_open(&s->stored_flags);
    arr_open(&s->payloads);
    buf_reset(&s->notify);
    for (size_t p = 0; p < tx->position_count; p++) {
        const apply_position_t *pos = &tx->positions[p];
        char number[32];
        snprintf(number, sizeof(number), "%" PRId64, pos->expected);
        arr_raw(&s->expected, number);
        snprintf(number, sizeof(number), "%" PRId64, pos->next);
        arr_raw(&s->next, number);
        arr_raw(&s->stored_flags, pos->stored ? "t" : "f");
        char entry[256];
        int len =
            snprintf(entry, sizeof(entry), "%s/%" PRId32 "/%" PRId64, tx->topic, pos->partition, pos->next);
        if (len < 0 || (size_t)len >= sizeof(entry)) /* a topic name is at most 249 bytes */
            fatal_abort("a NOTIFY entry of %d bytes", len);
        if (s->notify.len > 0 && s->notify.len + 1 + (size_t)len > APPLY_NOTIFY_MAX_BYTES)
            apply_payload_flush(&s->payloads, &s->notify);
        buf_appendf(&s->notify, "%s%s", s->notify.len ? "," : "", entry);
    }
    apply_payload_flush(&s->payloads, &s->notify);
    arr_close(&s->expected);
    arr_close(&s->next);
    arr_close(&s->stored_flags);
    arr_close(&s->payloads);
    const char *params[7] = {tx->group,
                             tx->topic,
                             apply_partitions_array(tx),
                             (const char *)s->expected.data,
                             (const char *)s->next.data,
                             (const char *)s->stored_flags.data,
                             (const char *)s->payloads.data};
    apply_stmt_t stmts[2] = {
        {.what = "move positions",
         .sql = apply_sql_positions,
         .nparams = 7,
         .params = params,
         .expect = PGRES_TUPLES_OK},
        {.what = "commit", .sql = "COMMIT", .expect = PGRES_COMMAND_OK},
    };
    size_t failed = 0;
    if (!apply_pipeline(tx, APPLY_STEP_COMMIT, stmts, 2, &failed)) {
        /* 22P02 alone could also be a malformed literal of ours: the text names the fence */
        if (failed == 0 && strcmp(tx->sqlstate, APPLY_FENCED_SQLSTATE) == 0 &&
            strstr(tx->errstr, "\"" APPLY_FENCED_TEXT))
            tx->status = APPLY_FENCED; /* a position moved under us: never bad data */
        return false;
    }
    PQclear(stmts[0].res);
    PQclear(stmts[1].res);
    return true;
}

apply_status_t apply_run(PGconn *conn, apply_scratch_t *s, const char *group, const char *topic,
                         const batch_t *batch, size_t lo, size_t hi, const apply_position_t *positions,
                         size_t position_count, apply_counts_t *counts, char *errstr, size_t errstr_size)
{
    memset(counts, 0, sizeof(*counts));
    apply_tx_t tx = {.conn = conn,
                     .s = s,
                     .group = group,
                     .topic = topic,
                     .batch = batch,
                     .lo = lo,
                     .hi = hi,
                     .positions = positions,
                     .position_count = position_count,
                     .counts = counts,
                     .errstr = errstr,
                     .errstr_size = errstr_size,
                     .status = APPLY_RETRY};
    apply_collect(&tx);
    if (!apply_begin(&tx))
        goto fail;
    if (tx.n > 0) {
        if (!apply_read_state(&tx))
            goto fail;
        apply_fold(&tx);
        if (!apply_write(&tx))
            goto fail;
    }
    if (!apply_finish(&tx))
        goto fail;
    PQclear(tx.rows_res);
    PQclear(tx.ids_res);
    return APPLY_OK;

fail:
    PQclear(tx.rows_res);
    PQclear(tx.ids_res);
    /* Whatever failed (a statement, the COMMIT skipped after one, the fence),
     * a transaction still open is rolled back; a failed COMMIT ended it. */
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE)
        pgconn_exec_quiet(conn, "ROLLBACK");
    memset(counts, 0, sizeof(*counts));
    return tx.status;
}

/* Sends `rows` in pieces and empties it. PQputCopyData takes an int length, and
 * one row of a large profile can be big: a truncated (negative) length sends
 * nothing and still answers 1, and the COPY would end with no rows while the
 * positions move. So at most APPLY_COPY_PIECE bytes a call. */
static bool apply_copy_send(apply_tx_t *tx, buf_t *rows, char *reason, size_t reason_size)
{
    for (size_t sent = 0; sent < rows->len;) {
        size_t piece = rows->len - sent < APPLY_COPY_PIECE ? rows->len - sent : APPLY_COPY_PIECE;
        if (PQputCopyData(tx->conn, (const char *)rows->data + sent, (int)piece) != 1) {
            pgconn_error(tx->conn, NULL, reason, reason_size);
            return false;
        }
        sent += piece;
    }
    buf_reset(rows);
    return true;
}

/* The rows are built and sent a piece at a time rather than as one buffer of
 * the whole batch: a lane then holds ~2 x APPLY_COPY_PIECE of COPY text, not a
 * second copy of every profile of its batch (README, "Memory"). */
static bool apply_copy(apply_tx_t *tx, const char *what, const char *sql, apply_copy_row_fn row_fn)
{
    apply_scratch_t *s = tx->s;
    double t0 = apply_ms();
    char reason[512];
    PGresult *res = PQexec(tx->conn, sql);
    bool ok = PQresultStatus(res) == PGRES_COPY_IN;
    if (!ok)
        pgconn_error(tx->conn, res, reason, sizeof(reason));
    PQclear(res);
    buf_reset(&s->profiles);
    for (size_t k = 0; ok && k < tx->n; k++) {
        row_fn(tx, k, &s->profiles);
        if (s->profiles.len >= APPLY_COPY_PIECE)
            ok = apply_copy_send(tx, &s->profiles, reason, sizeof(reason));
    }
    if (ok)
        ok = apply_copy_send(tx, &s->profiles, reason, sizeof(reason));
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
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(tx->sqlstate, sizeof(tx->sqlstate), "%s", state ? state : "");
            ok = false;
        }
        PQclear(res);
    }
    tx->counts->ms[APPLY_STEP_WRITE] += apply_ms() - t0;
    if (!ok) {
        snprintf(tx->errstr, tx->errstr_size, "%s: %s", what, reason);
        tx->status = PQstatus(tx->conn) == CONNECTION_OK && data_error ? APPLY_REJECTED : APPLY_RETRY;
    }
    return ok;
}
