/*
 * get: GET /profiles/{recipient_id}, read from PostgreSQL without blocking
 * the loop.
 *
 * Each loop owns one libpq connection driven by the loop: PQconnectStart and
 * PQconnectPoll to connect, PQsendQueryParams to ask, PQconsumeInput and
 * PQgetResult when the socket is readable. GETs wait in a FIFO and go one at
 * a time (a primary-key lookup takes well under a millisecond). When the
 * connection fails the waiting GETs get 503 at once and the loop reconnects
 * with capped exponential backoff; while it is down, GETs get 503 at once.
 */
#include "get.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reply.h"

#define API_PG_BACKOFF_MIN_MS 100
#define API_PG_BACKOFF_MAX_MS 5000
#define API_PG_QUEUE_MAX      4096

static const char api_get_query[] = "SELECT profile::text FROM profiles WHERE recipient_id = $1";

static void api_pg_socket_cb(evutil_socket_t fd, short what, void *arg);
static void api_pg_next(api_loop_t *loop);

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
static void api_pg_want(api_loop_t *loop, bool read, bool write)
{
    api_pg_t *pg = &loop->pg;
    int fd = PQsocket(pg->conn);
    if (fd != pg->event_fd) {
        api_pg_events_reset(pg);
        if (fd < 0)
            return;
        pg->event_fd = fd;
        pg->read_event = event_new(loop->base, fd, EV_READ | EV_PERSIST, api_pg_socket_cb, loop);
        pg->write_event = event_new(loop->base, fd, EV_WRITE | EV_PERSIST, api_pg_socket_cb, loop);
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
                           const char *profile, size_t len)
{
    if (!get->req)
        return;
    api_held_remove(loop, &get->held);
    if (status == 200) {
        buf_reset(&loop->scratch);
        buf_append_str(&loop->scratch, "{\"profile\":");
        buf_append(&loop->scratch, profile, len);
        buf_append_str(&loop->scratch, ",\"preferences\":null}");
        api_reply(loop, get->req, API_ROUTE_GET_PROFILE, 200, get->started_us, NULL, loop->scratch.data,
                  loop->scratch.len);
    } else {
        api_reply_error(loop, get->req, API_ROUTE_GET_PROFILE, status, get->started_us, get->request_seq,
                        message);
    }
    get->req = NULL;
}

/* Drops the FIFO head. */
static void api_get_pop(api_loop_t *loop)
{
    api_pg_t *pg = &loop->pg;
    api_get_t *get = pg->head;
    pg->head = get->next;
    if (!pg->head)
        pg->tail = NULL;
    pg->queued--;
    free(get);
}

/* ---- connection life cycle --------------------------------------------- */

static void api_pg_fail(api_loop_t *loop, const char *what)
{
    api_pg_t *pg = &loop->pg;
    char reason[300];
    snprintf(reason, sizeof(reason), "%s", pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
    reason[strcspn(reason, "\n")] = '\0';
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_field_str(&fields, "error", reason);
    log_field_int(&fields, "retry_ms", pg->backoff_ms);
    log_warn(&fields, "PostgreSQL %s", what);
    metrics_counter_add(loop->api->m.pg_errors, 1);

    api_pg_events_reset(pg);
    if (pg->conn)
        PQfinish(pg->conn);
    pg->conn = NULL;
    pg->state = API_PG_DOWN;
    while (pg->head) {
        api_get_answer(loop, pg->head, 503, "PostgreSQL is unreachable; retry", NULL, 0);
        api_get_pop(loop);
    }

    struct timeval tv = {.tv_sec = pg->backoff_ms / 1000, .tv_usec = (pg->backoff_ms % 1000) * 1000};
    evtimer_add(pg->retry_timer, &tv);
    pg->backoff_ms *= 2;
    if (pg->backoff_ms > API_PG_BACKOFF_MAX_MS)
        pg->backoff_ms = API_PG_BACKOFF_MAX_MS;
    api_loop_check_drained(loop);
}

static void api_pg_connect_step(api_loop_t *loop)
{
    api_pg_t *pg = &loop->pg;
    switch (PQconnectPoll(pg->conn)) {
    case PGRES_POLLING_READING:
        api_pg_want(loop, true, false);
        return;
    case PGRES_POLLING_WRITING:
        api_pg_want(loop, false, true);
        return;
    case PGRES_POLLING_OK:
        break;
    case PGRES_POLLING_FAILED:
    default:
        api_pg_fail(loop, "connection failed");
        return;
    }
    evtimer_del(pg->retry_timer);
    if (PQsetnonblocking(pg->conn, 1) < 0) {
        api_pg_fail(loop, "cannot switch the connection to non-blocking");
        return;
    }
    pg->state = API_PG_IDLE;
    pg->backoff_ms = API_PG_BACKOFF_MIN_MS;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_info(&fields, "PostgreSQL connected");
    /* Reading while idle notices a server that went away before a GET needs it. */
    api_pg_want(loop, true, false);
    api_pg_next(loop);
}

/* libpq's notices (and warnings) through our logger, not its fprintf to stderr. */
static void api_pg_notice(void *arg, const char *message)
{
    api_loop_t *loop = arg;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    size_t len = strcspn(message, "\n");
    log_info(&fields, "PostgreSQL notice: %.*s", (int)len, message);
}

static void api_pg_connect(api_loop_t *loop)
{
    api_pg_t *pg = &loop->pg;
    pg->conn = PQconnectStart(loop->api->config.pg_dsn);
    if (pg->conn)
        PQsetNoticeProcessor(pg->conn, api_pg_notice, loop);
    if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD) {
        api_pg_fail(loop, "connection failed");
        return;
    }
    pg->state = API_PG_CONNECTING;
    /* libpq ignores connect_timeout under PQconnectPoll; this timer is the bound. */
    int64_t ms = loop->api->config.pg_connect_timeout_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(pg->retry_timer, &tv);
    api_pg_connect_step(loop);
}

static void api_pg_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    api_loop_t *loop = arg;
    switch (loop->pg.state) {
    case API_PG_DOWN:
        if (loop->state == API_LOOP_SERVING)
            api_pg_connect(loop);
        return;
    case API_PG_CONNECTING:
        api_pg_fail(loop, "connection attempt timed out (PROFILED_PG_CONNECT_TIMEOUT)");
        return;
    case API_PG_IDLE:
    case API_PG_BUSY:
        return;
    }
    log_error(NULL, "impossible PostgreSQL state %d", (int)loop->pg.state);
    abort();
}

/* ---- queries ----------------------------------------------------------- */

static void api_pg_next(api_loop_t *loop)
{
    api_pg_t *pg = &loop->pg;
    while (pg->state == API_PG_IDLE && pg->head) {
        api_get_t *get = pg->head;
        if (!get->req) { /* answered by its deadline before its turn */
            api_get_pop(loop);
            continue;
        }
        const char *values[1] = {get->recipient_id};
        int lengths[1] = {(int)get->recipient_id_len};
        int formats[1] = {0};
        if (!PQsendQueryParams(pg->conn, api_get_query, 1, NULL, values, lengths, formats, 0)) {
            api_pg_fail(loop, "query could not be sent");
            return;
        }
        pg->state = API_PG_BUSY;
        int flushed = PQflush(pg->conn);
        if (flushed < 0) {
            api_pg_fail(loop, "query could not be sent");
            return;
        }
        api_pg_want(loop, true, flushed == 1);
    }
    api_loop_check_drained(loop);
}

static void api_pg_read(api_loop_t *loop)
{
    api_pg_t *pg = &loop->pg;
    if (!PQconsumeInput(pg->conn)) {
        api_pg_fail(loop, "connection lost");
        return;
    }
    if (pg->state != API_PG_BUSY) {
        /* Idle: nothing expected but notices; drop any stray result. */
        while (!PQisBusy(pg->conn)) {
            PGresult *stray = PQgetResult(pg->conn);
            if (!stray)
                break;
            PQclear(stray);
        }
        if (PQstatus(pg->conn) == CONNECTION_BAD)
            api_pg_fail(loop, "connection lost");
        return;
    }
    while (!PQisBusy(pg->conn)) {
        PGresult *result = PQgetResult(pg->conn);
        if (!result) { /* the query is complete */
            api_get_pop(loop);
            pg->state = API_PG_IDLE;
            api_pg_next(loop);
            return;
        }
        /* The first result answers; api_get_answer ignores any later one. */
        api_get_t *get = pg->head;
        ExecStatusType status = PQresultStatus(result);
        char message[400];
        if (status == PGRES_TUPLES_OK && PQntuples(result) == 1) {
            api_get_answer(loop, get, 200, NULL, PQgetvalue(result, 0, 0), (size_t)PQgetlength(result, 0, 0));
        } else if (status == PGRES_TUPLES_OK) {
            snprintf(message, sizeof(message), "no profile for recipient_id %s", get->recipient_id);
            api_get_answer(loop, get, 404, message, NULL, 0);
        } else {
            snprintf(message, sizeof(message), "PostgreSQL query failed: %s", PQresultErrorMessage(result));
            message[strcspn(message, "\n")] = '\0';
            metrics_counter_add(loop->api->m.pg_errors, 1);
            api_get_answer(loop, get, 500, message, NULL, 0);
        }
        PQclear(result);
    }
}

static void api_pg_socket_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    api_loop_t *loop = arg;
    api_pg_t *pg = &loop->pg;
    switch (pg->state) {
    case API_PG_CONNECTING:
        api_pg_connect_step(loop);
        return;
    case API_PG_IDLE:
    case API_PG_BUSY:
        if (what & EV_WRITE) {
            int flushed = PQflush(pg->conn);
            if (flushed < 0) {
                api_pg_fail(loop, "connection lost");
                return;
            }
            api_pg_want(loop, true, flushed == 1);
        }
        if (what & EV_READ)
            api_pg_read(loop);
        return;
    case API_PG_DOWN:
        return; /* a stale event of a finished connection */
    }
    log_error(NULL, "impossible PostgreSQL state %d", (int)pg->state);
    abort();
}

/* ---- the GET handler ---------------------------------------------------- */

void api_get_handle(api_loop_t *loop, http_req_t *req, const char *recipient_id, size_t recipient_id_len,
                    int64_t started_us, uint64_t request_seq)
{
    api_pg_t *pg = &loop->pg;
    if (pg->state == API_PG_DOWN) {
        api_reply_error(loop, req, API_ROUTE_GET_PROFILE, 503, started_us, request_seq,
                        "PostgreSQL is unreachable; retry");
        return;
    }
    if (pg->queued >= API_PG_QUEUE_MAX) {
        api_reply_error(loop, req, API_ROUTE_GET_PROFILE, 503, started_us, request_seq,
                        "too many reads waiting for PostgreSQL; retry");
        return;
    }
    api_get_t *get = calloc(1, sizeof(*get));
    if (!get) {
        log_error(NULL, "out of memory allocating a request");
        abort();
    }
    get->loop = loop;
    get->req = req;
    get->started_us = started_us;
    get->request_seq = request_seq;
    memcpy(get->recipient_id, recipient_id, recipient_id_len + 1);
    get->recipient_id_len = recipient_id_len;
    get->held.expire = api_get_expire;
    get->held.deadline_us = started_us + loop->api->config.request_deadline_ms * 1000;
    if (pg->tail)
        pg->tail->next = get;
    else
        pg->head = get;
    pg->tail = get;
    pg->queued++;
    api_held_add(loop, &get->held);
    http_req_hold(req, api_get_detach, get);
    if (pg->state == API_PG_IDLE)
        api_pg_next(loop);
}

int api_pg_init(api_loop_t *loop, char *errstr, size_t errstr_size)
{
    api_pg_t *pg = &loop->pg;
    pg->state = API_PG_DOWN;
    pg->event_fd = -1;
    pg->backoff_ms = API_PG_BACKOFF_MIN_MS;
    pg->retry_timer = evtimer_new(loop->base, api_pg_retry_cb, loop);
    if (!pg->retry_timer) {
        snprintf(errstr, errstr_size, "event_new failed");
        return -1;
    }
    /* Connect from the loop thread once it runs. */
    struct timeval now = {0, 0};
    evtimer_add(pg->retry_timer, &now);
    return 0;
}

void api_pg_destroy(api_loop_t *loop)
{
    api_pg_t *pg = &loop->pg;
    api_pg_events_reset(pg);
    if (pg->retry_timer)
        event_free(pg->retry_timer);
    pg->retry_timer = NULL;
    if (pg->conn)
        PQfinish(pg->conn);
    pg->conn = NULL;
    while (pg->head)
        api_get_pop(loop);
}
