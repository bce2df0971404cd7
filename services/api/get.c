/*
 * get: GET /profiles/{recipient_id}, read from PostgreSQL without blocking
 * the loop; the same connection tells the loop the worker's positions
 * (applied.h): it LISTENs to profiled_applied and reads kafka_positions once
 * per connection, after the LISTEN, so that no position is missed between
 * the two (notifications sent while it was away are lost).
 *
 * Each loop owns PROFILED_PG_CONNECTIONS_PER_LOOP (1) libpq connections
 * driven by the loop, each on its own (its own FIFO, LISTEN, backoff); a read
 * goes to the least busy prepared one (fewest reads queued, ties in turn), so
 * one connection lost costs only the reads in flight on it. Each connects
 * with PQconnectStart and PQconnectPoll, then runs in pipeline mode (libpq
 * 14+) with prepared statements: the GET, and the outcome read of an applied
 * merge or patch (api_pg_outcome), which shares the FIFO. The GETs that arrive in one loop iteration are sent
 * together as Bind/Execute messages and one Sync, while at most one earlier batch is still in flight (more
 * wait for its Sync and then go together: API_PG_BATCHES_MAX); an error in one
 * (a statement timeout) fails that GET, and the rest of its batch, which PostgreSQL skips, is sent again.
 * PostgreSQL answers in order, so the sent GETs form a FIFO and each result belongs to the FIFO head; a GET
 * whose client went away stays in the FIFO, detached, until its result arrives. When the connection fails
 * every GET in flight or waiting gets 503 at once (never another one's result) and the loop reconnects with
 * capped exponential backoff, preparing the statement again; while it is down, GETs get 503 at once.
 */
#include "get.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_etag.h"
#include "log.h"
#include "pg_notice.h"
#include "reply.h"
#include "xalloc.h"

#define API_PG_BACKOFF_MIN_MS 100
/* A refused connect costs microseconds on both sides, so the cap stays low: GETs
 * answer again at most ~0.5 s after PostgreSQL returns (issue 13: 3.7 s with a 5 s cap). */
#define API_PG_BACKOFF_MAX_MS 500
#define API_PG_QUEUE_MAX      4096
/* Batches in flight on one connection. Two keep PostgreSQL busy (one runs while the next waits in its
 * socket), and the GETs that arrive meanwhile gather into the next batch instead of going as one more
 * small batch each loop iteration: under load that is one sendto, one recv and one wake-up of the
 * backend per ~15 GETs instead of per ~4 (tests/bench/get: 0.09 sendto and 0.27 epoll_wait per GET
 * against 0.28 and 0.48 without the bound, and ~17% less api CPU per GET). */
#define API_PG_BATCHES_MAX 2

/* The ETag names the command that wrote the row: its Kafka position and its id (DESIGN: one
 * command, one position), so it changes with every applied write and never repeats. */
static const char api_get_query[] = "SELECT profile::text, kafka_partition::text || '.' || "
                                    "kafka_offset::text || '.' || encode(command_id, 'hex') "
                                    "FROM profiles WHERE recipient_id = $1 AND profile IS NOT NULL";
static const char api_get_statement[] = "profiled_get";
/* Every group's positions for the topic: the NOTIFY payload names no group either (one worker
 * group per topic; README "Read your writes"). */
static const char api_positions_query[] = "SELECT partition, max(next_offset) FROM kafka_positions "
                                          "WHERE topic = $1 GROUP BY partition";
/* What the worker recorded for a command (migration 002): NULL applied, 'stale', or 'refused' with a
 * reason. One primary-key read, run once the command's position was applied (so the row, written in the
 * same transaction as that position, is there). */
static const char api_outcome_query[] = "SELECT outcome, reason FROM applied_commands WHERE command_id = $1";
static const char api_outcome_statement[] = "profiled_outcome";

static void api_pg_socket_cb(evutil_socket_t fd, short what, void *arg);

/* ---- socket interest --------------------------------------------------- */

static void api_pg_events_reset(api_pg_t *pg)
{
    if (pg->read_event)
        event_free(pg->read_event);
    if (pg->write_event)
        event_free(pg->write_event);
    pg->read_event = pg->write_event = NULL;
    pg->event_fd = -1;
}

/* Watches PQsocket for the wanted directions (the socket may change while connecting). */
static void api_pg_want(api_pg_t *pg, bool read, bool write)
{
    api_loop_t *loop = pg->loop;
    int fd = PQsocket(pg->conn);
    if (fd != pg->event_fd) {
        api_pg_events_reset(pg);
        if (fd < 0)
            return;
        pg->event_fd = fd;
        pg->read_event = event_new(loop->base, fd, EV_READ | EV_PERSIST, api_pg_socket_cb, pg);
        pg->write_event = event_new(loop->base, fd, EV_WRITE | EV_PERSIST, api_pg_socket_cb, pg);
    }
    if (read)
        event_add(pg->read_event, NULL);
    else
        event_del(pg->read_event);
    if (write)
        event_add(pg->write_event, NULL);
    else
        event_del(pg->write_event);
}

/* ---- waiting GETs ------------------------------------------------------ */

static void api_get_expire(api_held_t *held)
{
    api_get_t *get = (api_get_t *)held;
    api_loop_t *loop = get->loop;
    char message[200];
    snprintf(message, sizeof(message), "PostgreSQL did not answer within %" PRId64 " ms; retry",
             loop->api->config.request_deadline_ms);
    api_reply_error(loop, get->req, API_ROUTE_GET_PROFILE, 503, get->started_us, get->request_seq, message);
    get->req = NULL; /* stays in the FIFO until its query (if sent) completes */
}

static void api_get_detach(void *arg)
{
    api_get_t *get = arg;
    if (!get->req)
        return;
    api_held_remove(get->loop, &get->held);
    get->req = NULL;
}

/* Answers a GET that is still waiting; a no-op for one answered by its deadline. */
static void api_get_answer(api_loop_t *loop, api_get_t *get, int status, const char *message,
                           const char *profile, size_t len, const char *version)
{
    if (!get->req)
        return;
    api_held_remove(loop, &get->held);
    if (status == 200) {
        char etag[160];
        size_t version_len = strlen(version);
        size_t etag_len = version_len + 2;
        if (etag_len < sizeof(etag)) { /* quoted by hand: no printf per GET */
            etag[0] = '"';
            memcpy(etag + 1, version, version_len);
            etag[etag_len - 1] = '"';
            etag[etag_len] = '\0';
            http_req_add_header(get->req, "ETag", etag);
            if (get->if_none_match &&
                http_etag_matches(get->if_none_match, strlen(get->if_none_match), etag, etag_len))
                status = 304; /* the same parts: Content-Length as for 200, no body */
        }
        /* The stored text as PostgreSQL sent it, between two constants: no parse, and no copy
         * when the socket takes the answer at once (the PGresult is cleared after this call). */
        static const char prefix[] = "{\"profile\":";
        static const char suffix[] = ",\"preferences\":null}";
        struct iovec parts[3] = {{(void *)prefix, sizeof(prefix) - 1},
                                 {(void *)profile, len},
                                 {(void *)suffix, sizeof(suffix) - 1}};
        api_reply_parts(loop, get->req, API_ROUTE_GET_PROFILE, status, get->started_us, parts, 3);
    } else {
        api_reply_error(loop, get->req, API_ROUTE_GET_PROFILE, status, get->started_us, get->request_seq,
                        message);
    }
    get->req = NULL;
}

/* True while someone waits for the entry's result: a GET's client, or an outcome read's hook. */
static bool api_get_waiting(const api_get_t *get)
{
    return get->req || get->done;
}

/* Calls an outcome read's hook once; a no-op when it was called, expired or cancelled. */
static void api_outcome_answer(api_loop_t *loop, api_get_t *get, api_outcome_t outcome, const char *reason,
                               size_t reason_len)
{
    if (!get->done)
        return;
    api_held_remove(loop, &get->held);
    api_outcome_fn done = get->done;
    get->done = NULL;
    done(get->done_arg, outcome, reason, reason_len);
}

/* Fails an entry that could not be read: a GET gets `status`, an outcome read UNKNOWN. */
static void api_get_fail(api_loop_t *loop, api_get_t *get, int status, const char *message)
{
    if (get->outcome)
        api_outcome_answer(loop, get, API_OUTCOME_UNKNOWN, NULL, 0);
    else
        api_get_answer(loop, get, status, message, NULL, 0, NULL);
}

/* Frees the sent FIFO's head (its Sync arrived). */
static void api_get_pop(api_pg_t *pg)
{
    api_get_t *get = pg->head;
    pg->head = get->next;
    if (!pg->head)
        pg->tail = NULL;
    pg->queued--;
    pg->loop->pg_queued--;
    free(get->if_none_match);
    free(get);
}

/* Unlinks the head of the waiting list. */
static api_get_t *api_get_unwait(api_pg_t *pg)
{
    api_get_t *get = pg->wait_head;
    pg->wait_head = get->next;
    if (!pg->wait_head)
        pg->wait_tail = NULL;
    get->next = NULL;
    return get;
}

/* Empties both lists; with a message, every GET still waiting for its client gets 503. */
static void api_get_drop_all(api_pg_t *pg, const char *message)
{
    api_loop_t *loop = pg->loop;
    while (pg->head) {
        if (message)
            api_get_fail(loop, pg->head, 503, message);
        api_get_pop(pg);
    }
    while (pg->wait_head) {
        api_get_t *get = api_get_unwait(pg);
        if (message)
            api_get_fail(loop, get, 503, message);
        pg->queued--;
        pg->loop->pg_queued--;
        free(get->if_none_match);
        free(get);
    }
}

/* ---- connection life cycle --------------------------------------------- */

/* Counts the loop's prepared connections: /readyz reads pg_up (any of them can answer GETs). */
static void api_pg_up_count(api_loop_t *loop, int delta)
{
    loop->pg_up_count += delta;
    atomic_store(&loop->pg_up, loop->pg_up_count > 0);
}

static void api_pg_fail(api_pg_t *pg, const char *what)
{
    api_loop_t *loop = pg->loop;
    if (pg->state == API_PG_IDLE)
        api_pg_up_count(loop, -1);
    char reason[300];
    snprintf(reason, sizeof(reason), "%s", pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
    reason[strcspn(reason, "\n")] = '\0';
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_field_int(&fields, "connection", pg->index);
    log_field_str(&fields, "error", reason);
    log_field_int(&fields, "retry_ms", pg->backoff_ms);
    log_warn(&fields, "PostgreSQL %s", what);
    metrics_counter_add(loop->api->m.pg_errors, 1);

    api_pg_events_reset(pg);
    if (pg->conn)
        PQfinish(pg->conn);
    pg->conn = NULL;
    pg->state = API_PG_DOWN;
    /* Results of this connection will never come: nobody may get another one's answer. */
    api_get_drop_all(pg, "PostgreSQL is unreachable; retry");

    struct timeval tv = {.tv_sec = pg->backoff_ms / 1000, .tv_usec = (pg->backoff_ms % 1000) * 1000};
    evtimer_add(pg->retry_timer, &tv);
    pg->backoff_ms *= 2;
    if (pg->backoff_ms > API_PG_BACKOFF_MAX_MS)
        pg->backoff_ms = API_PG_BACKOFF_MAX_MS;
    api_loop_check_drained(loop);
}

/* Pushes what libpq buffered; watches for write readiness while some is left. -1 when failed. */
static int api_pg_flush(api_pg_t *pg)
{
    int flushed = PQflush(pg->conn);
    if (flushed < 0) {
        api_pg_fail(pg, "connection lost");
        return -1;
    }
    api_pg_want(pg, true, flushed == 1);
    return 0;
}

static void api_pg_connect_step(api_pg_t *pg)
{
    api_loop_t *loop = pg->loop;
    switch (PQconnectPoll(pg->conn)) {
    case PGRES_POLLING_READING:
        api_pg_want(pg, true, false);
        return;
    case PGRES_POLLING_WRITING:
        api_pg_want(pg, false, true);
        return;
    case PGRES_POLLING_OK:
        break;
    case PGRES_POLLING_FAILED:
    default:
        api_pg_fail(pg, "connection failed");
        return;
    }
    if (PQsetnonblocking(pg->conn, 1) < 0) {
        api_pg_fail(pg, "cannot switch the connection to non-blocking");
        return;
    }
    if (!PQenterPipelineMode(pg->conn)) {
        api_pg_fail(pg, "cannot enter pipeline mode");
        return;
    }
    /* Every connection prepares its statement: a reconnect starts a new session. The connect
     * timer stays armed until the last answer, so a server that accepts but never answers is
     * treated like one that does not connect. LISTEN has its own Sync (its own implicit
     * transaction: it takes effect at commit, and a failed positions read must not undo it),
     * and comes first, so that a position committed after the read is notified. */
    const char *topic = loop->api->config.kafka_topic;
    if (!PQsendQueryParams(pg->conn, "LISTEN profiled_applied", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQpipelineSync(pg->conn) || !PQsendPrepare(pg->conn, api_get_statement, api_get_query, 1, NULL) ||
        !PQsendQueryParams(pg->conn, api_positions_query, 1, NULL, &topic, NULL, NULL, 0) ||
        !PQpipelineSync(pg->conn) ||
        !PQsendPrepare(pg->conn, api_outcome_statement, api_outcome_query, 1, NULL) ||
        !PQpipelineSync(pg->conn)) {
        api_pg_fail(pg, "statement could not be prepared");
        return;
    }
    pg->prepare_syncs = pg->prepare_results = 0;
    pg->batches = 0;
    pg->outcome_ready = false;
    pg->state = API_PG_PREPARING;
    api_pg_flush(pg);
}

static void api_pg_connect(api_pg_t *pg)
{
    api_loop_t *loop = pg->loop;
    pg->conn = PQconnectStart(loop->api->config.pg_dsn);
    pg_notice_install(pg->conn); /* "FATAL: terminating connection" as a JSON line, not plain text */
    if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD) {
        api_pg_fail(pg, "connection failed");
        return;
    }
    pg->state = API_PG_CONNECTING;
    /* libpq ignores connect_timeout under PQconnectPoll; this timer is the bound. */
    int64_t ms = loop->api->config.pg_connect_timeout_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(pg->retry_timer, &tv);
    api_pg_connect_step(pg);
}

static void api_pg_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    api_pg_t *pg = arg;
    api_loop_t *loop = pg->loop;
    switch (pg->state) {
    case API_PG_DOWN:
        if (loop->state == API_LOOP_SERVING)
            api_pg_connect(pg);
        return;
    case API_PG_CONNECTING:
    case API_PG_PREPARING:
        api_pg_fail(pg, "connection attempt timed out (PROFILED_PG_CONNECT_TIMEOUT)");
        return;
    case API_PG_IDLE:
        return;
    }
    fatal_abort("impossible PostgreSQL state %d", (int)pg->state);
}

/* ---- queries ----------------------------------------------------------- */

/* Sends every waiting GET (pipeline mode: no waiting for the previous answers), then one Sync for
 * the batch: one write to PostgreSQL and one flush of its answers per batch, not per GET. With
 * API_PG_BATCHES_MAX batches in flight the GETs wait, and go when a batch's Sync returns. */
static void api_pg_send(api_pg_t *pg)
{
    api_loop_t *loop = pg->loop;
    if (pg->state != API_PG_IDLE || !pg->wait_head)
        return;
    if (pg->batches >= API_PG_BATCHES_MAX)
        return; /* sent when a Sync comes back (api_pg_read) */
    bool sent = false;
    while (pg->wait_head) {
        api_get_t *get = api_get_unwait(pg);
        if (get->outcome && !pg->outcome_ready)
            api_outcome_answer(loop, get, API_OUTCOME_UNKNOWN, NULL, 0); /* an older schema: no outcomes */
        if (!api_get_waiting(get)) { /* answered by its deadline, or its client left, before it was sent */
            pg->queued--;
            pg->loop->pg_queued--;
            free(get->if_none_match);
            free(get);
            continue;
        }
        if (pg->tail)
            pg->tail->next = get;
        else
            pg->head = get;
        pg->tail = get;
        /* A GET sends the recipient id as text; an outcome read the command id as binary bytea. */
        const char *values[1] = {get->outcome ? (const char *)get->command_id : get->recipient_id};
        int lengths[1] = {get->outcome ? (int)sizeof(get->command_id) : (int)get->recipient_id_len};
        int formats[1] = {get->outcome ? 1 : 0};
        if (!PQsendQueryPrepared(pg->conn, get->outcome ? api_outcome_statement : api_get_statement, 1,
                                 values, lengths, formats, 0)) {
            api_pg_fail(pg, "query could not be sent");
            return;
        }
        sent = true;
    }
    /* An error in one GET of the batch (a statement timeout) makes PostgreSQL skip the rest up to
     * this Sync: those come back PGRES_PIPELINE_ABORTED and are sent again (api_get_finish). */
    if (sent && !PQpipelineSync(pg->conn)) {
        api_pg_fail(pg, "query could not be sent");
        return;
    }
    if (sent)
        pg->batches++;
    api_pg_flush(pg);
}

static void api_pg_send_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    api_pg_t *pg = arg;
    pg->send_pending = false;
    api_pg_send(pg);
}

/* Sends soon: after the other callbacks of this loop iteration, so GETs that arrive together
 * travel together. */
static void api_pg_send_soon(api_pg_t *pg)
{
    if (pg->state != API_PG_IDLE || pg->send_pending)
        return;
    pg->send_pending = true;
    event_active(pg->send_event, EV_TIMEOUT, 0);
}

/* The FIFO head's results are complete: frees it, or queues it again when it was aborted. */
static void api_get_finish(api_pg_t *pg)
{
    api_loop_t *loop = pg->loop;
    api_get_t *get = pg->head;
    if (get->aborted && api_get_waiting(get) && get->attempts < 3) {
        pg->head = get->next;
        if (!pg->head)
            pg->tail = NULL;
        get->next = NULL;
        get->aborted = get->got_result = false;
        get->attempts++;
        if (pg->wait_tail)
            pg->wait_tail->next = get;
        else
            pg->wait_head = get;
        pg->wait_tail = get;
        return;
    }
    if (get->aborted)
        api_get_fail(loop, get, 503, "PostgreSQL aborted the read (another query failed); retry");
    api_get_pop(pg);
}

/* The worker's positions, read once per connection: wakes the writes they cover. */
static void api_pg_positions(api_loop_t *loop, PGresult *result)
{
    for (int row = 0; row < PQntuples(result); row++)
        api_applied_advance(&loop->applied, (int32_t)atol(PQgetvalue(result, row, 0)),
                            (int64_t)atoll(PQgetvalue(result, row, 1)));
}

/* A warning that a start-up statement failed, with PostgreSQL's first line of why; the loop goes on. */
static void api_pg_warn_result(const api_loop_t *loop, const PGresult *result, const char *what)
{
    char reason[300];
    snprintf(reason, sizeof(reason), "%s", PQresultErrorMessage(result));
    reason[strcspn(reason, "\n")] = '\0';
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_field_str(&fields, "error", reason);
    log_warn(&fields, "%s", what);
}

/* The answers of the connection's set-up, in order: LISTEN, Sync, Prepare, the positions, Sync, the
 * outcome Prepare, Sync. A failed LISTEN or GET Prepare closes the connection (retried with backoff); a
 * failed positions read (no kafka_positions table: the worker never migrated this database) is
 * logged, and writes then wait for notifications or their PROFILED_APPLY_WAIT; a failed outcome
 * Prepare (a schema before migration 002) is logged, and merges and patches are then answered
 * without their outcome. */
static int api_pg_prepared(api_pg_t *pg, PGresult *result)
{
    api_loop_t *loop = pg->loop;
    ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_PIPELINE_SYNC) {
        if (++pg->prepare_syncs < 3)
            return 0;
    } else {
        int step = pg->prepare_results++; /* 0 LISTEN, 1 Prepare, 2 positions, 3 outcome Prepare */
        if (step == 3) {
            pg->outcome_ready = status == PGRES_COMMAND_OK;
            if (!pg->outcome_ready)
                api_pg_warn_result(loop, result,
                                   "cannot prepare the outcome read (applied_commands.outcome); merges and "
                                   "patches are answered without it");
            return 0;
        }
        if (step == 2 && status == PGRES_TUPLES_OK) {
            api_pg_positions(loop, result);
            return 0;
        }
        if (step == 2) {
            api_pg_warn_result(loop, result,
                               "cannot read the worker's positions (kafka_positions); writes held for the "
                               "worker wait for its notifications");
            return 0;
        }
        if (status == PGRES_COMMAND_OK)
            return 0;
        api_pg_fail(pg, step == 0 ? "LISTEN profiled_applied failed" : "statement could not be prepared");
        return -1;
    }
    evtimer_del(pg->retry_timer);
    pg->state = API_PG_IDLE;
    api_pg_up_count(loop, 1);
    pg->backoff_ms = API_PG_BACKOFF_MIN_MS;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_field_int(&fields, "connection", pg->index);
    log_info(&fields, "PostgreSQL connected");
    return 0;
}

/* Notifications are read with any input; each one may wake held writes. */
static void api_pg_notifies(api_pg_t *pg)
{
    api_loop_t *loop = pg->loop;
    PGnotify *notify;
    while ((notify = PQnotifies(pg->conn)) != NULL) {
        if (strcmp(notify->relname, "profiled_applied") == 0) {
            int malformed = api_applied_notify(&loop->applied, notify->extra);
            if (malformed > 0)
                metrics_counter_add(loop->api->m.notify_malformed, (uint64_t)malformed);
        }
        PQfreemem(notify);
    }
}

/* Hands an outcome read its result: refused (with the reason), or not; UNKNOWN on an error. */
static void api_outcome_result(api_loop_t *loop, api_get_t *get, PGresult *result)
{
    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
        metrics_counter_add(loop->api->m.pg_errors, 1);
        api_outcome_answer(loop, get, API_OUTCOME_UNKNOWN, NULL, 0);
        return;
    }
    if (PQntuples(result) == 1 && !PQgetisnull(result, 0, 0) &&
        strcmp(PQgetvalue(result, 0, 0), "refused") == 0)
        api_outcome_answer(loop, get, API_OUTCOME_REFUSED, PQgetvalue(result, 0, 1),
                           (size_t)PQgetlength(result, 0, 1));
    else
        api_outcome_answer(loop, get, API_OUTCOME_APPLIED, NULL, 0);
}

/* Answers the GET a result belongs to (the first result answers; a later one is ignored). */
static void api_pg_answer_result(api_pg_t *pg, api_get_t *get, PGresult *result)
{
    api_loop_t *loop = pg->loop;
    if (get->outcome) {
        api_outcome_result(loop, get, result);
        return;
    }
    ExecStatusType status = PQresultStatus(result);
    char message[400];
    if (status == PGRES_TUPLES_OK && PQntuples(result) == 1) {
        api_get_answer(loop, get, 200, NULL, PQgetvalue(result, 0, 0), (size_t)PQgetlength(result, 0, 0),
                       PQgetvalue(result, 0, 1));
        return;
    }
    if (status == PGRES_TUPLES_OK) {
        snprintf(message, sizeof(message), "no profile for recipient_id %s", get->recipient_id);
        api_get_answer(loop, get, 404, message, NULL, 0, NULL);
        return;
    }
    metrics_counter_add(loop->api->m.pg_errors, 1);
    const char *sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    if (!sqlstate)
        sqlstate = "";
    /* 57014: statement_timeout or a cancel; 57P*: the server is shutting down; 08*: the
     * connection broke. All are worth a retry. */
    int code = (strncmp(sqlstate, "57", 2) == 0 || strncmp(sqlstate, "08", 2) == 0 ||
                status == PGRES_PIPELINE_ABORTED || PQstatus(pg->conn) == CONNECTION_BAD)
                   ? 503
                   : 500;
    snprintf(message, sizeof(message), "PostgreSQL query failed (SQLSTATE %s): %s", sqlstate,
             PQresultErrorMessage(result));
    message[strcspn(message, "\n")] = '\0';
    api_get_answer(loop, get, code, message, NULL, 0, NULL);
}

static void api_pg_read(api_pg_t *pg)
{
    api_loop_t *loop = pg->loop;
    if (!PQconsumeInput(pg->conn)) {
        api_pg_fail(pg, "connection lost");
        return;
    }
    api_pg_notifies(pg);
    int nulls = 0;
    while (!PQisBusy(pg->conn)) {
        PGresult *result = PQgetResult(pg->conn);
        api_get_t *get = pg->head;
        if (!result) {
            /* Pipeline mode: NULL ends one statement's results; otherwise, twice in a row or with
             * nothing expected, nothing more is ready. */
            if (get && get->got_result) {
                api_get_finish(pg);
                nulls = 0;
                continue;
            }
            if (++nulls > 1 || (!get && pg->state != API_PG_PREPARING))
                break;
            continue;
        }
        nulls = 0;
        if (pg->state == API_PG_PREPARING) {
            int rc = api_pg_prepared(pg, result);
            PQclear(result);
            if (rc < 0)
                return;
            continue;
        }
        /* A result of the next statement (or the batch's Sync) also ends the head's. */
        if (get && get->got_result) {
            api_get_finish(pg);
            get = pg->head;
        }
        ExecStatusType status = PQresultStatus(result);
        if (status == PGRES_PIPELINE_SYNC)
            pg->batches--;
        if (status == PGRES_PIPELINE_SYNC || !get) { /* a batch's end, or a stray result */
            PQclear(result);
            continue;
        }
        get->got_result = true;
        if (status == PGRES_PIPELINE_ABORTED)
            get->aborted = true;
        else
            api_pg_answer_result(pg, get, result);
        PQclear(result);
    }
    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        api_pg_fail(pg, "connection lost");
        return;
    }
    api_pg_notifies(pg); /* parsed while reading the results */
    api_pg_send(pg);     /* waiting ones, once the Prepare is answered */
    api_loop_check_drained(loop);
}

static void api_pg_socket_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    api_pg_t *pg = arg;
    switch (pg->state) {
    case API_PG_CONNECTING:
        api_pg_connect_step(pg);
        return;
    case API_PG_PREPARING:
    case API_PG_IDLE:
        if ((what & EV_WRITE) && api_pg_flush(pg) < 0)
            return;
        if (what & EV_READ)
            api_pg_read(pg);
        return;
    case API_PG_DOWN:
        return; /* a stale event of a finished connection */
    }
    fatal_abort("impossible PostgreSQL state %d", (int)pg->state);
}

/* ---- choosing a connection ------------------------------------------------ */

/* The loop's least busy connection that can take a read: a prepared one before one still connecting,
 * then the fewest reads queued; ties go round the connections. NULL when all are down or full. */
static api_pg_t *api_pg_pick(api_loop_t *loop)
{
    api_pg_t *best = NULL;
    unsigned start = loop->pg_next++;
    for (unsigned i = 0; i < loop->pg_count; i++) {
        api_pg_t *pg = &loop->pgs[(start + i) % loop->pg_count];
        if (pg->state == API_PG_DOWN || pg->queued >= API_PG_QUEUE_MAX)
            continue;
        if (!best || (pg->state == API_PG_IDLE && best->state != API_PG_IDLE) ||
            ((pg->state == API_PG_IDLE) == (best->state == API_PG_IDLE) && pg->queued < best->queued))
            best = pg;
    }
    return best;
}

/* Appends a read to the connection's waiting list, on the loop's deadline list, sent soon. */
static void api_pg_enqueue(api_pg_t *pg, api_get_t *get)
{
    if (pg->wait_tail)
        pg->wait_tail->next = get;
    else
        pg->wait_head = get;
    pg->wait_tail = get;
    pg->queued++;
    pg->loop->pg_queued++;
    api_held_add(pg->loop, &get->held);
    api_pg_send_soon(pg);
}

/* ---- the GET handler ---------------------------------------------------- */

/* If-None-Match as one list (a copy), or NULL: a list-valued field sent on several lines is their
 * values in order, joined by commas (RFC 9110 §5.3); empty lines add nothing (§5.6.1). */
static char *api_get_if_none_match(const http_req_t *req)
{
    size_t cursor = 0, total = 0, count = 0;
    const char *value;
    while ((value = http_req_header_next(req, "If-None-Match", &cursor)) != NULL) {
        size_t len = strlen(value);
        total += len + 2;
        count += len > 0;
    }
    if (count == 0)
        return NULL;
    char *joined = xmalloc(total + 1, "a GET's If-None-Match");
    size_t at = 0;
    cursor = 0;
    while ((value = http_req_header_next(req, "If-None-Match", &cursor)) != NULL) {
        size_t len = strlen(value);
        if (len == 0)
            continue;
        if (at > 0) {
            memcpy(joined + at, ", ", 2);
            at += 2;
        }
        memcpy(joined + at, value, len);
        at += len;
    }
    joined[at] = '\0';
    return joined;
}

void api_get_handle(api_loop_t *loop, http_req_t *req, const char *recipient_id, size_t recipient_id_len,
                    int64_t started_us, uint64_t request_seq)
{
    api_pg_t *pg = api_pg_pick(loop);
    if (!pg) {
        bool down = true;
        for (unsigned i = 0; i < loop->pg_count; i++)
            down = down && loop->pgs[i].state == API_PG_DOWN;
        api_reply_error(loop, req, API_ROUTE_GET_PROFILE, 503, started_us, request_seq,
                        down ? "PostgreSQL is unreachable; retry"
                             : "too many reads waiting for PostgreSQL; retry");
        return;
    }
    api_get_t *get = xcalloc(1, sizeof(*get), "a GET request");
    get->loop = loop;
    get->req = req;
    get->started_us = started_us;
    get->request_seq = request_seq;
    memcpy(get->recipient_id, recipient_id, recipient_id_len + 1);
    get->recipient_id_len = recipient_id_len;
    get->if_none_match = api_get_if_none_match(req);
    get->held.expire = api_get_expire;
    get->held.deadline_us = started_us + loop->api->config.request_deadline_ms * 1000;
    http_req_hold(req, api_get_detach, get);
    api_pg_enqueue(pg, get);
}

/* ---- outcome reads ------------------------------------------------------ */

/* The outcome read's deadline passed (PostgreSQL too slow), or the shutdown deadline: UNKNOWN. */
static void api_outcome_expire(api_held_t *held)
{
    api_get_t *get = (api_get_t *)held;
    api_outcome_fn done = get->done;
    get->done = NULL; /* stays in the FIFO until its query (if sent) completes */
    if (done)
        done(get->done_arg, API_OUTCOME_UNKNOWN, NULL, 0);
}

api_get_t *api_pg_outcome(api_loop_t *loop, const uint8_t command_id[HTTP_COMMAND_ID_BYTES],
                          api_outcome_fn done, void *arg)
{
    api_pg_t *pg = api_pg_pick(loop);
    if (!pg || (pg->state == API_PG_IDLE && !pg->outcome_ready))
        return NULL;
    api_get_t *get = xcalloc(1, sizeof(*get), "an outcome read");
    get->loop = loop;
    get->outcome = true;
    get->done = done;
    get->done_arg = arg;
    memcpy(get->command_id, command_id, sizeof(get->command_id));
    get->started_us = api_now_us();
    get->held.expire = api_outcome_expire;
    /* The full request deadline, from now: the loop's deadline list stays in deadline order. */
    get->held.deadline_us = get->started_us + loop->api->config.request_deadline_ms * 1000;
    api_pg_enqueue(pg, get);
    return get;
}

void api_pg_outcome_cancel(api_loop_t *loop, api_get_t *read)
{
    if (!read->done)
        return;
    api_held_remove(loop, &read->held);
    read->done = NULL;
}

int api_pg_init(api_loop_t *loop, char *errstr, size_t errstr_size)
{
    loop->pg_count = (unsigned)loop->api->config.pg_connections_per_loop;
    loop->pgs = xcalloc(loop->pg_count, sizeof(*loop->pgs), "the loop's PostgreSQL connections");
    for (unsigned i = 0; i < loop->pg_count; i++) {
        api_pg_t *pg = &loop->pgs[i];
        pg->loop = loop;
        pg->index = i;
        pg->state = API_PG_DOWN;
        pg->event_fd = -1;
        pg->backoff_ms = API_PG_BACKOFF_MIN_MS;
        pg->retry_timer = evtimer_new(loop->base, api_pg_retry_cb, pg);
        pg->send_event = event_new(loop->base, -1, 0, api_pg_send_cb, pg);
        if (!pg->retry_timer || !pg->send_event) {
            snprintf(errstr, errstr_size, "event_new failed");
            return -1;
        }
        /* Connect from the loop thread once it runs. */
        struct timeval now = {0, 0};
        evtimer_add(pg->retry_timer, &now);
    }
    return 0;
}

void api_pg_destroy(api_loop_t *loop)
{
    for (unsigned i = 0; i < loop->pg_count; i++) {
        api_pg_t *pg = &loop->pgs[i];
        api_pg_events_reset(pg);
        if (pg->retry_timer)
            event_free(pg->retry_timer);
        pg->retry_timer = NULL;
        if (pg->send_event)
            event_free(pg->send_event);
        pg->send_event = NULL;
        if (pg->conn)
            PQfinish(pg->conn);
        pg->conn = NULL;
        api_get_drop_all(pg, NULL);
    }
    free(loop->pgs);
    loop->pgs = NULL;
    loop->pg_count = 0;
}
