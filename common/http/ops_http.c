/*
 * ops_http: the ops listener (ops_http.h) on the project's HTTP layer.
 *
 * The thread owns an event_base and one http_server_t; everything below runs
 * on that thread. Requests are answered from the head hook, so a body is
 * never read (the layer drains a small framed one, or closes).
 */
#include "ops_http.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "buf.h"
#include "clock.h"
#include "http_error.h"
#include "http_server.h"
#include "log.h"
#include "log_limit.h"
#include "xalloc.h"

/* Probes and a scraper or two: a small pool, short timeouts. */
#define OPS_HTTP_MAX_CONNECTIONS 64
#define OPS_HTTP_MAX_HEADER      8192
#define OPS_HTTP_MAX_BODY        4096
#define OPS_HTTP_HEADER_MS       10000
#define OPS_HTTP_BODY_MS         10000
#define OPS_HTTP_IDLE_MS         60000

struct ops_http {
    struct event_base *base;
    http_server_t *server;
    pthread_t thread;
    metrics_t *metrics;
    ops_ready_fn ready;
    void *ready_arg;
    int port;
    buf_t scratch;
    log_limit_t refusals;
};

static void ops_http_log_refusal(ops_http_t *ops, int status, const char *message)
{
    uint64_t suppressed = 0;
    if (!log_limit_take(&ops->refusals, status, clock_mono_us(), &suppressed))
        return;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "listener", "ops");
    log_field_int(&fields, "status", status);
    log_field_str(&fields, "type", http_error_type(status));
    if (suppressed)
        log_field_int(&fields, "suppressed", (int64_t)suppressed);
    log_info(&fields, "%s", message);
}

static void ops_http_error(ops_http_t *ops, http_req_t *req, int status, const char *message)
{
    buf_reset(&ops->scratch);
    http_error_body(&ops->scratch, status, message);
    http_req_respond(req, status, "application/json", ops->scratch.data, ops->scratch.len);
    ops_http_log_refusal(ops, status, message);
}

/* The path of the target: origin-form up to '?', or the path of an absolute-form. */
static size_t ops_http_path(const http_req_t *req, const char **path)
{
    const char *p = req->target;
    if (strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0) {
        p = strchr(strchr(p, ':') + 3, '/');
        if (!p)
            p = "/";
    }
    *path = p;
    return strcspn(p, "?");
}

static bool ops_http_head_cb(void *arg, http_req_t *req)
{
    static const char healthy[] = "{\"status\":\"ok\"}";
    static const char ready_body[] = "{\"status\":\"ready\"}";
    ops_http_t *ops = arg;
    char message[320];
    const char *path = NULL;
    size_t len = ops_http_path(req, &path);
    bool healthz = len == 8 && memcmp(path, "/healthz", 8) == 0;
    bool readyz = len == 7 && memcmp(path, "/readyz", 7) == 0;
    bool metrics = len == 8 && memcmp(path, "/metrics", 8) == 0;
    if (!healthz && !readyz && !metrics) {
        snprintf(message, sizeof(message),
                 "no such resource: %s %.200s (this listener serves /healthz, "
                 "/readyz and /metrics)",
                 req->method_name, req->target);
        ops_http_error(ops, req, 404, message);
        return false;
    }
    if (req->method != HTTP_METHOD_GET && req->method != HTTP_METHOD_HEAD) {
        http_req_add_header(req, "Allow", "GET, HEAD");
        snprintf(message, sizeof(message), "method %s is not allowed on %.*s; allowed: GET, HEAD",
                 req->method_name, (int)len, path);
        ops_http_error(ops, req, 405, message);
        return false;
    }
    if (healthz) {
        http_req_respond(req, 200, "application/json", healthy, sizeof(healthy) - 1);
    } else if (readyz) {
        char reason[256] = "ok";
        if (!ops->ready || ops->ready(ops->ready_arg, reason, sizeof(reason))) {
            http_req_respond(req, 200, "application/json", ready_body, sizeof(ready_body) - 1);
        } else {
            /* Not logged: a probe every few seconds would write a line each time. */
            http_req_add_header(req, "Retry-After", "1");
            buf_reset(&ops->scratch);
            http_error_body(&ops->scratch, 503, reason);
            http_req_respond(req, 503, "application/json", ops->scratch.data, ops->scratch.len);
        }
    } else {
        buf_reset(&ops->scratch);
        metrics_render(ops->metrics, &ops->scratch);
        http_req_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", ops->scratch.data,
                         ops->scratch.len);
    }
    return false;
}

/* Never called: the head hook answers every request. */
static void ops_http_request_cb(void *arg, http_req_t *req)
{
    ops_http_t *ops = arg;
    ops_http_error(ops, req, 500, "ops listener: unexpected request body");
}

static void ops_http_refused_cb(void *arg, int status, const char *message)
{
    ops_http_log_refusal(arg, status, message);
}

static void *ops_http_thread(void *arg)
{
    ops_http_t *ops = arg;
    event_base_dispatch(ops->base);
    return NULL;
}

/* Resolves addr:port into *ss (a numeric address, or a name resolved once at start). */
static int ops_http_resolve(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *ss_len,
                            char *errstr, size_t errstr_size)
{
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *found = NULL;
    int rc = getaddrinfo(addr, service, &hints, &found);
    if (rc != 0 || !found) {
        snprintf(errstr, errstr_size, "cannot resolve %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, found->ai_addr, found->ai_addrlen);
    *ss_len = found->ai_addrlen;
    freeaddrinfo(found);
    return 0;
}

ops_http_t *ops_http_start(const char *addr, int port, metrics_t *metrics, ops_ready_fn ready,
                           void *ready_arg, char *errstr, size_t errstr_size)
{
    /* Lets ops_http_stop end the loop from another thread. Idempotent. */
    evthread_use_pthreads();
    ops_http_t *ops = xcalloc(1, sizeof(*ops), "the ops listener");
    ops->metrics = metrics;
    ops->ready = ready;
    ops->ready_arg = ready_arg;
    ops->refusals = (log_limit_t)LOG_LIMIT_REFUSALS;
    ops->base = event_base_new();
    if (!ops->base) {
        snprintf(errstr, errstr_size, "cannot create the event base");
        goto fail;
    }
    http_server_config_t config = {
        .max_connections = OPS_HTTP_MAX_CONNECTIONS,
        .max_header_bytes = OPS_HTTP_MAX_HEADER,
        .max_body_bytes = OPS_HTTP_MAX_BODY,
        .header_timeout_ms = OPS_HTTP_HEADER_MS,
        .body_timeout_ms = OPS_HTTP_BODY_MS,
        .idle_timeout_ms = OPS_HTTP_IDLE_MS,
    };
    http_server_hooks_t hooks = {
        .head = ops_http_head_cb,
        .request = ops_http_request_cb,
        .refused = ops_http_refused_cb,
    };
    ops->server = http_server_new(ops->base, &config, &hooks, ops);
    if (!ops->server) {
        snprintf(errstr, errstr_size, "cannot create the HTTP server");
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);
    if (ops_http_resolve(addr, port, &ss, &ss_len, errstr, errstr_size) < 0)
        goto fail;
    char reason[128];
    if (http_server_listen(ops->server, (struct sockaddr *)&ss, (int)ss_len, false, reason, sizeof(reason)) <
        0) {
        snprintf(errstr, errstr_size, "cannot listen on %s:%d: %s", addr, port, reason);
        goto fail;
    }
    ops->port = http_server_port(ops->server);
    if (pthread_create(&ops->thread, NULL, ops_http_thread, ops) != 0) {
        snprintf(errstr, errstr_size, "cannot start the ops thread");
        goto fail;
    }
    return ops;
fail:
    http_server_free(ops->server);
    if (ops->base)
        event_base_free(ops->base);
    free(ops);
    return NULL;
}

int ops_http_port(const ops_http_t *ops)
{
    return ops->port;
}

void ops_http_stop(ops_http_t *ops)
{
    if (!ops)
        return;
    /* Not event_base_loopbreak: its flag is cleared when the loop starts, so a stop issued
     * before the thread entered event_base_dispatch was lost and the join hung. loopexit
     * queues a timer that ends the loop whenever it runs. */
    if (event_base_loopexit(ops->base, NULL) != 0)
        fatal_abort("ops_http: cannot queue the loop exit of the ops thread");
    pthread_join(ops->thread, NULL);
    http_server_free(ops->server);
    event_base_free(ops->base);
    buf_free(&ops->scratch);
    free(ops);
}
