/*
 * reply: answers, the deadline list and the drain check (reply.h).
 */
#include "reply.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "clock.h"
#include "http_error.h"
#include "log.h"
#include "log_limit.h"

int64_t api_now_us(void)
{
    return clock_mono_us();
}

/* Matches api_status_labels in ops.c: the last slot is "other". */
static int api_status_slot(int status)
{
    static const int statuses[API_STATUS_SLOTS - 1] = {200, 400, 401, 404, 405, 413, 500,
                                                       503, 408, 431, 501, 304, 417};
    for (int i = 0; i < API_STATUS_SLOTS - 1; i++)
        if (statuses[i] == status)
            return i;
    return API_STATUS_SLOTS - 1;
}

void api_count_answer(api_loop_t *loop, api_route_t route, int status, int64_t started_us)
{
    api_metrics_t *m = &loop->api->m;
    metrics_counter_add(m->requests[route][api_status_slot(status)], 1);
    metrics_histogram_observe(m->latency[route], (double)(api_now_us() - started_us) / 1e6);
}

void api_reply(api_loop_t *loop, http_req_t *req, api_route_t route, int status, int64_t started_us,
               const char *content_type, const void *body, size_t body_len)
{
    http_req_respond(req, status, content_type ? content_type : "application/json", body, body_len);
    api_count_answer(loop, route, status, started_us);
}

void api_reply_parts(api_loop_t *loop, http_req_t *req, api_route_t route, int status, int64_t started_us,
                     const struct iovec *parts, int part_count)
{
    http_req_respond_parts(req, status, "application/json", parts, part_count);
    api_count_answer(loop, route, status, started_us);
}

void api_reply_error(api_loop_t *loop, http_req_t *req, api_route_t route, int status, int64_t started_us,
                     uint64_t request_seq, const char *message)
{
    char request_id[32];
    snprintf(request_id, sizeof(request_id), "%u-%" PRIu64, loop->index, request_seq);
    http_req_add_header(req, "X-Request-Id", request_id);
    if (status == 503 || status == 429)
        http_req_add_header(req, "Retry-After", "1");
    if (status == 401)
        http_req_add_header(req, "WWW-Authenticate", "Bearer");

    buf_reset(&loop->scratch);
    http_error_body(&loop->scratch, status, message);
    api_reply(loop, req, route, status, started_us, NULL, loop->scratch.data, loop->scratch.len);

    api_log_refusal(status, request_id, message);
}

/* One limiter per loop thread (the loops share nothing): a thread-local, so that neither the loop
 * struct nor its users change for a log concern. */
static _Thread_local log_limit_t api_refusal_limit = LOG_LIMIT_REFUSALS;

void api_log_refusal(int status, const char *request_id, const char *message)
{
    uint64_t suppressed = 0;
    if (!log_limit_take(&api_refusal_limit, status, api_now_us(), &suppressed))
        return;
    log_fields_t fields = LOG_FIELDS_INIT;
    if (request_id)
        log_field_str(&fields, "request_id", request_id);
    log_field_int(&fields, "status", status);
    log_field_str(&fields, "type", http_error_type(status));
    if (suppressed)
        log_field_int(&fields, "suppressed", (int64_t)suppressed);
    if (status >= 500)
        log_warn(&fields, "%s", message);
    else
        log_info(&fields, "%s", message);
}

/* ---- the deadline list ------------------------------------------------- */

static void api_deadline_arm(api_loop_t *loop)
{
    api_held_t *head = loop->held.next;
    if (head == &loop->held)
        return;
    int64_t wait = head->deadline_us - api_now_us();
    if (wait < 0)
        wait = 0;
    struct timeval tv = {.tv_sec = wait / 1000000, .tv_usec = wait % 1000000};
    evtimer_add(loop->deadline_timer, &tv);
}

void api_held_add(api_loop_t *loop, api_held_t *held)
{
    bool was_empty = loop->held.next == &loop->held;
    held->next = &loop->held;
    held->prev = loop->held.prev;
    loop->held.prev->next = held;
    loop->held.prev = held;
    atomic_fetch_add_explicit(&loop->in_flight, 1, memory_order_relaxed);
    if (was_empty)
        api_deadline_arm(loop);
}

void api_held_remove(api_loop_t *loop, api_held_t *held)
{
    held->prev->next = held->next;
    held->next->prev = held->prev;
    held->prev = held->next = NULL;
    atomic_fetch_sub_explicit(&loop->in_flight, 1, memory_order_relaxed);
    /* The timer stays armed for the old head; when it fires it re-arms for the new one. */
}

void api_deadline_cb(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    api_loop_t *loop = arg;
    int64_t now = api_now_us();
    while (loop->held.next != &loop->held && loop->held.next->deadline_us <= now) {
        api_held_t *held = loop->held.next;
        api_held_remove(loop, held);
        metrics_counter_add(loop->api->m.deadline_expired, 1);
        held->expire(held);
    }
    api_deadline_arm(loop);
    api_loop_check_drained(loop);
}

/* ---- draining ----------------------------------------------------------- */

void api_loop_exit_soon(api_loop_t *loop)
{
    if (loop->exit_scheduled)
        return;
    loop->exit_scheduled = true;
    struct timeval flush = {.tv_sec = 0, .tv_usec = 200000};
    event_base_loopexit(loop->base, &flush);
}

void api_loop_check_drained(api_loop_t *loop)
{
    if (loop->state != API_LOOP_DRAINING || loop->exit_scheduled)
        return;
    if (loop->held.next != &loop->held || rd_kafka_outq_len(loop->rk) != 0 || loop->pg_queued != 0 ||
        api_applied_held(&loop->applied) != 0)
        return;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_info(&fields, "loop drained");
    api_loop_exit_soon(loop);
}
