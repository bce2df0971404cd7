/*
 * trivial_server: the baseline of tests/bench/api. The same server shape as
 * profiled-api (N threads, each its own event_base, evhttp and SO_REUSEPORT
 * listener) with a handler that only reads the body and answers the same 200
 * {"status":"SUCCESS"}. What profiled-api spends above this is the cost of
 * validating, encoding and producing a command.
 *
 * usage: trivial_server <port> <threads>
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char trivial_success[] = "{\"status\":\"SUCCESS\"}";

static void trivial_request_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *input = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(input);
    if (len)
        evbuffer_pullup(input, -1); /* "reads the body": one contiguous view, as the api takes */
    evbuffer_add(evhttp_request_get_output_buffer(req), trivial_success, sizeof(trivial_success) - 1);
    evhttp_send_reply(req, 200, NULL, NULL);
}

static void *trivial_loop(void *arg)
{
    int port = *(int *)arg;
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT);
    evhttp_set_default_content_type(http, "application/json");
    evhttp_set_gencb(http, trivial_request_cb, NULL);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct evconnlistener *listener = evconnlistener_new_bind(
        base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT, 1024,
        (struct sockaddr *)&sa, sizeof(sa));
    if (!listener || !evhttp_bind_listener(http, listener)) {
        fprintf(stderr, "trivial_server: cannot listen on port %d\n", port);
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
        pthread_create(&ids[i], NULL, trivial_loop, &port);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    return 0;
}
