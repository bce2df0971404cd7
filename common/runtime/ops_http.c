#include "ops_http.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "buf.h"

struct ops_http {
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    metrics_t *metrics;
    ops_ready_fn ready;
    void *ready_arg;
    int port;
};

static void ops_http_reply(struct evhttp_request *req, int code, const char *reason, const char *content_type,
                           const void *body, size_t len)
{
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void ops_http_handle(struct evhttp_request *req, void *arg)
{
    ops_http_t *ops = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        ops_http_reply(req, 405, "Method Not Allowed", "text/plain", "GET only\n", 9);
        return;
    }
    if (path && strcmp(path, "/healthz") == 0) {
        ops_http_reply(req, 200, "OK", "text/plain", "ok\n", 3);
    } else if (path && strcmp(path, "/readyz") == 0) {
        char reason[256] = "ok";
        bool ready = ops->ready ? ops->ready(ops->ready_arg, reason, sizeof(reason) - 1) : true;
        size_t len = strlen(reason);
        reason[len++] = '\n';
        ops_http_reply(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", "text/plain", reason,
                       len);
    } else if (path && strcmp(path, "/metrics") == 0) {
        buf_t text = {0};
        metrics_render(ops->metrics, &text);
        ops_http_reply(req, 200, "OK", "text/plain; version=0.0.4", text.data, text.len);
        buf_free(&text);
    } else {
        ops_http_reply(req, 404, "Not Found", "text/plain", "not found\n", 10);
    }
}

static void *ops_http_thread(void *arg)
{
    ops_http_t *ops = arg;
    event_base_dispatch(ops->base);
    return NULL;
}

ops_http_t *ops_http_start(const char *addr, int port, metrics_t *metrics, ops_ready_fn ready,
                           void *ready_arg, char *errstr, size_t errstr_size)
{
    /* Lets ops_http_stop break the loop from another thread. Idempotent. */
    evthread_use_pthreads();
    ops_http_t *ops = calloc(1, sizeof(*ops));
    if (!ops) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    ops->metrics = metrics;
    ops->ready = ready;
    ops->ready_arg = ready_arg;
    ops->base = event_base_new();
    ops->http = ops->base ? evhttp_new(ops->base) : NULL;
    if (!ops->http) {
        snprintf(errstr, errstr_size, "cannot create the event base");
        goto fail;
    }
    evhttp_set_gencb(ops->http, ops_http_handle, ops);
    evhttp_set_timeout(ops->http, 10);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(ops->http, addr, (ev_uint16_t)port);
    if (!bound) {
        snprintf(errstr, errstr_size, "cannot listen on %s:%d (in use, or not a local address?)", addr, port);
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &ss_len) == 0)
        ops->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (pthread_create(&ops->thread, NULL, ops_http_thread, ops) != 0) {
        snprintf(errstr, errstr_size, "cannot start the ops thread");
        goto fail;
    }
    return ops;
fail:
    if (ops->http)
        evhttp_free(ops->http);
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
        abort();
    pthread_join(ops->thread, NULL);
    evhttp_free(ops->http);
    event_base_free(ops->base);
    free(ops);
}
