/*
 * layer_server: trivial_server.c's handler on profiled's own HTTP layer
 * (common/http/http_server.h) instead of evhttp: N threads, each its own
 * event_base and SO_REUSEPORT listener, answering 200 {"status":"SUCCESS"}
 * once the body is in. Against trivial_server it shows what the layer itself
 * costs compared with evhttp; against profiled-api, what a PUT adds.
 *
 * usage: layer_server <port> <threads>
 */
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "http_server.h"

static const char layer_success[] = "{\"status\":\"SUCCESS\"}";

static bool layer_head_cb(void *arg, http_req_t *req)
{
    (void)arg;
    (void)req;
    return true;
}

static void layer_request_cb(void *arg, http_req_t *req)
{
    (void)arg;
    http_req_respond(req, 200, "application/json", layer_success, sizeof(layer_success) - 1);
}

static void *layer_loop(void *arg)
{
    int port = *(int *)arg;
    struct event_base *base = event_base_new();
    http_server_config_t config = {
        .max_connections = 100000,
        .max_header_bytes = 16384,
        .max_body_bytes = 262144,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
    };
    http_server_hooks_t hooks = {.head = layer_head_cb, .request = layer_request_cb};
    http_server_t *server = http_server_new(base, &config, &hooks, NULL);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char errstr[256];
    if (!server ||
        http_server_listen(server, (struct sockaddr *)&sa, sizeof(sa), true, errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "layer_server: cannot listen on port %d\n", port);
        exit(1);
    }
    event_base_dispatch(base);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s <port> <threads>\n", argv[0]);
        return 2;
    }
    static int port;
    port = atoi(argv[1]);
    int threads = atoi(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, layer_loop, &port);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    return 0;
}
