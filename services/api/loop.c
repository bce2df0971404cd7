/*
 * loop: one event-loop thread of profiled-api: its HTTP server, the request
 * dispatch, and its part of the shutdown.
 *
 * Dispatch is in two steps, matching http_server.h's hooks. When the headers
 * are in (api_head_cb): shutting down (503), route (404), method (405 with
 * Allow) and, for /profiles, the API key (401), so that a refused request
 * never has its body read and `Expect: 100-continue` gets its 100 only when
 * the body is wanted. When the body is in (api_request_cb): the recipient
 * id, then the handler.
 */
#include "loop.h"

#include <errno.h>
#include <event2/util.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "get.h"
#include "http_error.h"
#include "log.h"
#include "ops.h"
#include "producer.h"
#include "put.h"
#include "reply.h"
#include "xalloc.h"

/* ---- dispatch ---------------------------------------------------------- */

/* The metric route of a method on /profiles/{id}; API_ROUTE_OTHER for a method not allowed there. */
static api_route_t api_profile_route(const http_req_t *req)
{
    switch (req->method) {
    case HTTP_METHOD_GET:
    case HTTP_METHOD_HEAD:
        return API_ROUTE_GET_PROFILE;
    case HTTP_METHOD_PUT:
        return API_ROUTE_PUT_PROFILE;
    case HTTP_METHOD_POST:
        return API_ROUTE_POST_PROFILE;
    case HTTP_METHOD_DELETE:
        return API_ROUTE_DELETE_PROFILE;
    default:
        return req->method_name && strcmp(req->method_name, "PATCH") == 0 ? API_ROUTE_PATCH_PROFILE
                                                                          : API_ROUTE_OTHER;
    }
}

static bool api_head_cb(void *arg, http_req_t *req)
{
    api_loop_t *loop = arg;
    api_t *api = loop->api;
    int64_t started = api_now_us();
    uint64_t seq = ++loop->request_seq;
    char message[512];
    req->app = (uintptr_t)seq;

    if (loop->state != API_LOOP_SERVING) {
        http_req_close_after(req);
        api_reply_error(loop, req, API_ROUTE_OTHER, 503, started, seq, "the server is shutting down; retry");
        return false;
    }

    const char *segment = NULL;
    size_t segment_len = 0;
    http_route_t route = http_route_match(req->target, &segment, &segment_len);
    switch (route) {
    case HTTP_ROUTE_NOT_FOUND:
        snprintf(message, sizeof(message), "no such resource: %s %.200s", req->method_name, req->target);
        api_reply_error(loop, req, API_ROUTE_OTHER, 404, started, seq, message);
        return false;
    case HTTP_ROUTE_HEALTHZ:
    case HTTP_ROUTE_READYZ:
    case HTTP_ROUTE_METRICS:
        if (req->method != HTTP_METHOD_GET && req->method != HTTP_METHOD_HEAD) {
            http_req_add_header(req, "Allow", "GET, HEAD");
            snprintf(message, sizeof(message), "method %s is not allowed on %s; allowed: GET",
                     req->method_name, http_route_name(route));
            api_reply_error(loop, req, API_ROUTE_OTHER, 405, started, seq, message);
            return false;
        }
        return true;
    case HTTP_ROUTE_PROFILE:
        break;
    case HTTP_ROUTE__COUNT:
    default:
        fatal_abort("impossible route %d", (int)route);
    }

    api_route_t metric_route = api_profile_route(req);
    if (metric_route == API_ROUTE_OTHER) {
        http_req_add_header(req, "Allow", "GET, HEAD, PUT, POST, PATCH, DELETE");
        snprintf(
            message, sizeof(message),
            "method %s is not allowed on /profiles/{recipient_id}; allowed: GET, HEAD, PUT, POST, PATCH, "
            "DELETE",
            req->method_name);
        api_reply_error(loop, req, API_ROUTE_OTHER, 405, started, seq, message);
        return false;
    }
    const char *authorization = http_req_header(req, "Authorization");
    if (!http_keys_check_authorization(api->keys, authorization)) {
        api_reply_error(loop, req, metric_route, 401, started, seq,
                        authorization ? "invalid API key in the Authorization header"
                                      : "missing Authorization header; expected: Bearer <api key>");
        return false;
    }
    return true;
}

static void api_request_cb(void *arg, http_req_t *req)
{
    api_loop_t *loop = arg;
    int64_t started = api_now_us();
    uint64_t seq = (uint64_t)req->app;
    char message[512];

    const char *segment = NULL;
    size_t segment_len = 0;
    http_route_t route = http_route_match(req->target, &segment, &segment_len);
    if (route != HTTP_ROUTE_PROFILE) { /* api_head_cb let only ops routes and /profiles through */
        api_ops_handle(loop, req, route, started);
        return;
    }
    api_route_t metric_route = api_profile_route(req);
    char recipient_id[HTTP_RECIPIENT_ID_CAP];
    size_t recipient_id_len = 0;
    if (http_recipient_id_decode(segment, segment_len, recipient_id, &recipient_id_len, message,
                                 sizeof(message)) < 0) {
        api_reply_error(loop, req, metric_route, 400, started, seq, message);
        return;
    }
    if (metric_route == API_ROUTE_GET_PROFILE)
        api_get_handle(loop, req, recipient_id, recipient_id_len, started, seq);
    else /* the writes: one command each, on the same topic and key */
        api_put_handle(loop, req, metric_route, recipient_id, recipient_id_len, started, seq);
}

/* The HTTP layer answered by itself (400, 408, 413, 417, 431, 501, or 503 over
 * PROFILED_HTTP_MAX_CONNECTIONS). */
static void api_refused_cb(void *arg, int status, const char *message)
{
    api_loop_t *loop = arg;
    api_count_answer(loop, API_ROUTE_OTHER, status, api_now_us());
    if (status == 503)
        metrics_counter_add(loop->api->m.connections_refused, 1);
    api_log_refusal(status, NULL, message);
}

static void api_accept_paused_cb(void *arg, int error, int64_t backoff_ms)
{
    (void)error;
    (void)backoff_ms;
    api_loop_t *loop = arg;
    metrics_counter_add(loop->api->m.accept_paused, 1); /* the layer logs, at most once a second */
}

/* ---- life cycle -------------------------------------------------------- */

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
    /* Writes waiting for the worker are durable: answered 200, pending (put.c). */
    int64_t pending = api_applied_held(&loop->applied);
    api_applied_expire_all(&loop->applied);
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_field_int(&fields, "answered_503", count);
    log_field_int(&fields, "answered_pending", pending);
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
    http_server_stop_listening(loop->http);
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
    char address[300], reason[256];
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
    if (http_server_listen(loop->http, (struct sockaddr *)&sa, sa_len, true, reason, sizeof(reason)) < 0) {
        snprintf(errstr, errstr_size, "cannot listen on %s: %s", address, reason);
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
    http_server_config_t http_config = {
        .max_connections = (size_t)api->max_connections_per_loop,
        .max_header_bytes = (size_t)config->http_max_header_bytes,
        .max_body_bytes = (size_t)config->max_body_bytes,
        .header_timeout_ms = config->http_header_timeout_ms,
        .body_timeout_ms = config->http_body_timeout_ms,
        .idle_timeout_ms = config->http_idle_timeout_ms,
    };
    http_server_hooks_t hooks = {
        .head = api_head_cb,
        .request = api_request_cb,
        .refused = api_refused_cb,
        .accept_paused = api_accept_paused_cb,
    };
    loop->http = http_server_new(loop->base, &http_config, &hooks, loop);
    if (!loop->http) {
        snprintf(errstr, errstr_size, "cannot create the HTTP server");
        return -1;
    }

    loop->deadline_timer = evtimer_new(loop->base, api_deadline_cb, loop);
    loop->drain_timer = evtimer_new(loop->base, api_drain_timeout_cb, loop);
    loop->stop_event = event_new(loop->base, -1, 0, api_stop_cb, loop);
    if (!loop->deadline_timer || !loop->drain_timer || !loop->stop_event) {
        snprintf(errstr, errstr_size, "event_new failed");
        return -1;
    }
    if (api_loop_listen(loop, errstr, errstr_size) < 0)
        return -1;
    if (api_applied_init(&loop->applied, loop->base, config->kafka_topic, NULL, errstr, errstr_size) < 0)
        return -1;
    if (api_producer_init(loop, api_put_delivered, errstr, errstr_size) < 0)
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
    /* Connections first: a request still held is detached (it was answered by the drain timeout, or
     * its connection is simply gone). What remains is librdkafka's, flushed (or purged) here, after
     * the loop stopped, so blocking is allowed. */
    http_server_free(loop->http);
    loop->http = NULL;
    if (loop->rk)
        api_producer_destroy(loop, deadline);
    api_pg_destroy(loop);
    api_applied_destroy(&loop->applied);
    if (loop->deadline_timer)
        event_free(loop->deadline_timer);
    if (loop->drain_timer)
        event_free(loop->drain_timer);
    if (loop->stop_event)
        event_free(loop->stop_event);
    api_put_pool_free(loop);
    buf_free(&loop->profile);
    buf_free(&loop->command);
    buf_free(&loop->scratch);
    if (loop->base)
        event_base_free(loop->base);
}
