/*
 * loop: one event-loop thread of profiled-api: its listener and evhttp, the
 * request dispatch, the answers, the deadline list, and its part of the
 * shutdown.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "http_error.h"
#include "log.h"

int64_t api_now_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static int api_status_slot(int status)
{
    static const int statuses[API_STATUS_SLOTS - 1] = {200, 400, 401, 404, 405, 413, 500, 503, 408};
    for (int i = 0; i < API_STATUS_SLOTS - 1; i++)
        if (statuses[i] == status)
            return i;
    return API_STATUS_SLOTS - 1;
}

void api_reply(api_loop_t *loop, struct evhttp_request *req, api_route_t route, int status,
               int64_t started_us, const void *body, size_t body_len)
{
    api_metrics_t *m = &loop->api->m;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* HEAD gets the headers a GET would, and no body: libevent 2.1 would
         * otherwise write it, and a keep-alive client would read it as the
         * start of the next response. */
        char length[24];
        snprintf(length, sizeof(length), "%zu", body_len);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", length);
    } else {
        evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len);
    }
    evhttp_send_reply(req, status, NULL, NULL);
    metrics_counter_add(m->requests[route][api_status_slot(status)], 1);
    metrics_histogram_observe(m->latency[route], (double)(api_now_us() - started_us) / 1e6);
}

void api_reply_error(api_loop_t *loop, struct evhttp_request *req, api_route_t route, int status,
                     int64_t started_us, uint64_t request_seq, const char *message)
{
    char request_id[32];
    snprintf(request_id, sizeof(request_id), "%u-%" PRIu64, loop->index, request_seq);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "X-Request-Id", request_id);
    if (status == 503 || status == 429)
        evhttp_add_header(headers, "Retry-After", "1");
    if (status == 401)
        evhttp_add_header(headers, "WWW-Authenticate", "Bearer");

    buf_reset(&loop->scratch);
    http_error_body(&loop->scratch, status, message);
    api_reply(loop, req, route, status, started_us, loop->scratch.data, loop->scratch.len);

    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "request_id", request_id);
    log_field_int(&fields, "status", status);
    log_field_str(&fields, "type", http_error_type(status));
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

static void api_deadline_cb(evutil_socket_t fd, short what, void *arg)
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

/* ---- connections ------------------------------------------------------- */

static void api_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    api_loop_t *loop = arg;
    api_conn_t *conn = api_conns_find(&loop->conns, evcon);
    if (!conn)
        return;
    if (conn->held)
        conn->detach(conn->held);
    api_conns_remove(&loop->conns, evcon);
}

/* Counts a connection at its first request; false when it is one too many. */
static bool api_conn_admit(api_loop_t *loop, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (api_conns_find(&loop->conns, evcon))
        return true;
    if ((int64_t)loop->conns.count >= loop->api->max_connections_per_loop)
        return false;
    api_conns_insert(&loop->conns, evcon);
    evhttp_connection_set_closecb(evcon, api_conn_closed, loop);
    return true;
}

/* ---- dispatch ---------------------------------------------------------- */

static const char *api_method_name(enum evhttp_cmd_type method)
{
    switch (method) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "?";
}

static void api_request_cb(struct evhttp_request *req, void *arg)
{
    api_loop_t *loop = arg;
    api_t *api = loop->api;
    int64_t started = api_now_us();
    uint64_t seq = ++loop->request_seq;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const char *target = evhttp_request_get_uri(req);
    char message[512];

    if (loop->state != API_LOOP_SERVING) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        api_reply_error(loop, req, API_ROUTE_OTHER, 503, started, seq, "the server is shutting down; retry");
        return;
    }
    if (!api_conn_admit(loop, req)) {
        metrics_counter_add(api->m.connections_refused, 1);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        api_reply_error(loop, req, API_ROUTE_OTHER, 503, started, seq,
                        "too many connections (PROFILED_HTTP_MAX_CONNECTIONS); retry");
        return;
    }

    const char *segment = NULL;
    size_t segment_len = 0;
    http_route_t route = http_route_match(target, &segment, &segment_len);
    switch (route) {
    case HTTP_ROUTE_NOT_FOUND:
        snprintf(message, sizeof(message), "no such resource: %s %.200s", api_method_name(method), target);
        api_reply_error(loop, req, API_ROUTE_OTHER, 404, started, seq, message);
        return;
    case HTTP_ROUTE_HEALTHZ:
    case HTTP_ROUTE_READYZ:
    case HTTP_ROUTE_METRICS:
        if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
            snprintf(message, sizeof(message), "method %s is not allowed on %s; allowed: GET",
                     api_method_name(method), http_route_name(route));
            api_reply_error(loop, req, API_ROUTE_OTHER, 405, started, seq, message);
            return;
        }
        api_ops_handle(loop, req, route, started);
        return;
    case HTTP_ROUTE_PROFILE:
        break;
    case HTTP_ROUTE__COUNT:
    default:
        log_error(NULL, "impossible route %d", (int)route);
        abort();
    }

    if (method != EVHTTP_REQ_PUT && method != EVHTTP_REQ_GET) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, PUT");
        snprintf(message, sizeof(message),
                 "method %s is not allowed on /profiles/{recipient_id}; allowed: GET, PUT",
                 api_method_name(method));
        api_reply_error(loop, req, API_ROUTE_OTHER, 405, started, seq, message);
        return;
    }
    api_route_t metric_route = method == EVHTTP_REQ_PUT ? API_ROUTE_PUT_PROFILE : API_ROUTE_GET_PROFILE;

    /* 1. auth */
    const char *authorization = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!http_keys_check_authorization(api->keys, authorization)) {
        api_reply_error(loop, req, metric_route, 401, started, seq,
                        authorization ? "invalid API key in the Authorization header"
                                      : "missing Authorization header; expected: Bearer <api key>");
        return;
    }

    /* 2. body size: libevent already refused bodies over its hard cap; this is the configured limit. */
    if (method == EVHTTP_REQ_PUT) {
        size_t body_len = evbuffer_get_length(evhttp_request_get_input_buffer(req));
        if (body_len > (size_t)api->config.max_body_bytes) {
            snprintf(message, sizeof(message), "request body is %zu bytes; the limit is %" PRId64 " bytes",
                     body_len, api->config.max_body_bytes);
            api_reply_error(loop, req, metric_route, 413, started, seq, message);
            return;
        }
    }

    /* 3. recipient id */
    char recipient_id[HTTP_RECIPIENT_ID_CAP];
    size_t recipient_id_len = 0;
    if (http_recipient_id_decode(segment, segment_len, recipient_id, &recipient_id_len, message,
                                 sizeof(message)) < 0) {
        api_reply_error(loop, req, metric_route, 400, started, seq, message);
        return;
    }

    if (method == EVHTTP_REQ_PUT)
        api_put_handle(loop, req, recipient_id, recipient_id_len, started, seq);
    else
        api_get_handle(loop, req, recipient_id, recipient_id_len, started, seq);
}

/* ---- life cycle -------------------------------------------------------- */

bool api_conn_hold(api_loop_t *loop, struct evhttp_request *req, void *held, void (*detach)(void *held))
{
    api_conn_t *conn = api_conns_find(&loop->conns, evhttp_request_get_connection(req));
    if (!conn)
        return false;
    conn->held = held;
    conn->detach = detach;
    return true;
}

void api_conn_release(api_loop_t *loop, struct evhttp_request *req)
{
    api_conn_t *conn = api_conns_find(&loop->conns, evhttp_request_get_connection(req));
    if (conn)
        conn->held = NULL;
}

/* Lets the answers just sent reach their sockets before the loop stops. */
static void api_loop_exit_soon(api_loop_t *loop)
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
    if (loop->held.next != &loop->held || !api_producer_idle(loop) || !api_pg_idle(loop))
        return;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_info(&fields, "loop drained");
    api_loop_exit_soon(loop);
}

/* Shutdown deadline: answer everything still held with 503 and stop. */
static void api_drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    api_loop_t *loop = arg;
    int64_t count = 0;
    while (loop->held.next != &loop->held) {
        api_held_t *held = loop->held.next;
        api_held_remove(loop, held);
        held->expire(held);
        count++;
    }
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_field_int(&fields, "answered_503", count);
    log_warn(&fields, "shutdown deadline reached with requests still held");
    api_loop_exit_soon(loop);
}

/* Runs on the loop thread when the main thread activates stop_event (SIGTERM). */
static void api_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    api_loop_t *loop = arg;
    if (loop->state != API_LOOP_SERVING)
        return;
    loop->state = API_LOOP_DRAINING;
    if (loop->bound) {
        evhttp_del_accept_socket(loop->http, loop->bound);
        loop->bound = NULL;
    }
    int64_t left =
        loop->api->config.shutdown_deadline_ms * 1000 - (api_now_us() - loop->api->stop_started_us);
    if (left < 0)
        left = 0;
    struct timeval tv = {.tv_sec = left / 1000000, .tv_usec = left % 1000000};
    evtimer_add(loop->drain_timer, &tv);
    api_loop_check_drained(loop);
}

static int api_loop_listen(api_loop_t *loop, char *errstr, size_t errstr_size)
{
    const api_config_t *config = &loop->api->config;
    char address[300];
    if (strchr(config->http_addr, ':'))
        snprintf(address, sizeof(address), "[%s]:%" PRId64, config->http_addr, config->http_port);
    else
        snprintf(address, sizeof(address), "%s:%" PRId64, config->http_addr, config->http_port);
    struct sockaddr_storage sa;
    int sa_len = sizeof(sa);
    if (evutil_parse_sockaddr_port(address, (struct sockaddr *)&sa, &sa_len) < 0) {
        snprintf(errstr, errstr_size, "PROFILED_HTTP_ADDR=%s: not an IPv4 or IPv6 address",
                 config->http_addr);
        return -1;
    }
    /* Every loop binds the same port with SO_REUSEPORT; the kernel spreads new connections. */
    struct evconnlistener *listener = evconnlistener_new_bind(loop->base, NULL, NULL,
                                                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                                                  LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT,
                                                              1024, (struct sockaddr *)&sa, sa_len);
    if (!listener) {
        snprintf(errstr, errstr_size, "cannot listen on %s: %s", address, strerror(errno));
        return -1;
    }
    loop->bound = evhttp_bind_listener(loop->http, listener);
    if (!loop->bound) {
        evconnlistener_free(listener);
        snprintf(errstr, errstr_size, "cannot bind evhttp to %s", address);
        return -1;
    }
    return 0;
}

int api_loop_init(api_loop_t *loop, api_t *api, unsigned index, char *errstr, size_t errstr_size)
{
    const api_config_t *config = &api->config;
    loop->api = api;
    loop->index = index;
    loop->state = API_LOOP_SERVING;
    loop->held.next = loop->held.prev = &loop->held;
    loop->kafka_pipe[0] = loop->kafka_pipe[1] = -1;

    loop->base = event_base_new();
    if (!loop->base) {
        snprintf(errstr, errstr_size, "event_base_new failed");
        return -1;
    }
    loop->http = evhttp_new(loop->base);
    if (!loop->http) {
        snprintf(errstr, errstr_size, "evhttp_new failed");
        return -1;
    }
    /* Accept every method libevent knows, so that we, not libevent, answer 405 in JSON. */
    evhttp_set_allowed_methods(loop->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                               EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(loop->http, "application/json");
    /* libevent refuses a declared body over this before reading it (its own 413 page); bodies between the
     * configured limit and this cap are read and refused by us with a JSON 413. */
    int64_t hard_cap = config->max_body_bytes * 2;
    if (hard_cap < config->max_body_bytes + 65536)
        hard_cap = config->max_body_bytes + 65536;
    evhttp_set_max_body_size(loop->http, (ev_ssize_t)hard_cap);
    evhttp_set_max_headers_size(loop->http, (ev_ssize_t)config->http_max_header_bytes);
    struct timeval timeout = {.tv_sec = config->http_read_timeout_ms / 1000,
                              .tv_usec = (config->http_read_timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(loop->http, &timeout);
    evhttp_set_gencb(loop->http, api_request_cb, loop);

    loop->deadline_timer = evtimer_new(loop->base, api_deadline_cb, loop);
    loop->drain_timer = evtimer_new(loop->base, api_drain_timeout_cb, loop);
    loop->stop_event = event_new(loop->base, -1, 0, api_stop_cb, loop);
    if (!loop->deadline_timer || !loop->drain_timer || !loop->stop_event) {
        snprintf(errstr, errstr_size, "event_new failed");
        return -1;
    }
    if (api_loop_listen(loop, errstr, errstr_size) < 0)
        return -1;
    if (api_producer_init(loop, errstr, errstr_size) < 0)
        return -1;
    if (api_pg_init(loop, errstr, errstr_size) < 0)
        return -1;
    return 0;
}

void *api_loop_run(void *arg)
{
    api_loop_t *loop = arg;
    event_base_dispatch(loop->base);
    loop->state = API_LOOP_DONE;
    /* The main thread counts finished loops; event_active is safe across threads (evthread_use_pthreads). */
    atomic_fetch_add(&loop->api->loops_done, 1);
    event_active(loop->api->loop_done_event, EV_READ, 0);
    return NULL;
}

void api_loop_destroy(api_loop_t *loop)
{
    int64_t deadline = loop->api->stop_started_us + loop->api->config.shutdown_deadline_ms * 1000;
    /* Requests still held at this point were answered by the drain timeout; what remains is
     * librdkafka's, flushed (or purged) here, after the loop stopped, so blocking is allowed. */
    if (loop->rk)
        api_producer_destroy(loop, deadline);
    api_pg_destroy(loop);
    if (loop->http)
        evhttp_free(loop->http);
    if (loop->deadline_timer)
        event_free(loop->deadline_timer);
    if (loop->drain_timer)
        event_free(loop->drain_timer);
    if (loop->stop_event)
        event_free(loop->stop_event);
    while (loop->put_free) {
        api_put_t *put = loop->put_free;
        loop->put_free = put->free_next;
        free(put);
    }
    api_conns_free(&loop->conns);
    buf_free(&loop->profile);
    buf_free(&loop->command);
    buf_free(&loop->scratch);
    if (loop->base)
        event_base_free(loop->base);
}
