/*
 * libFuzzer target: arbitrary bytes through http_server's connection state
 * machine, over a Unix socketpair (so the layer's real paths run: direct
 * sends, partial writes, shutdown and lingering), split into chunks at
 * points drawn from the input itself so that every state sees data end at
 * every place.
 *
 * The first two bytes seed the split; the rest is the stream. A toy handler
 * answers /x* with 401 from the head hook, holds /h* until the next chunk
 * (so a connection may close while a request is held: the detach hook must
 * run), and answers everything else 200 with the body's length.
 *
 * Invariants: no crash, leak, UB or abort (the layer aborts on an
 * impossible state); whatever the server writes starts with "HTTP/1.1 ".
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "http_server.h"
#include "log.h"

static http_req_t *fuzz_held;

static void fuzz_detach(void *held)
{
    if (fuzz_held == held)
        fuzz_held = NULL;
}

static bool fuzz_head_cb(void *arg, http_req_t *req)
{
    (void)arg;
    if (req->target_len > 1 && req->target[1] == 'x') {
        http_req_add_header(req, "WWW-Authenticate", "Bearer");
        http_req_respond(req, 401, "application/json", "{}", 2);
        return false;
    }
    return true;
}

static void fuzz_request_cb(void *arg, http_req_t *req)
{
    (void)arg;
    (void)http_req_header(req, "Host");
    (void)http_req_header(req, "Content-Type");
    if (req->target_len > 1 && req->target[1] == 'h' && !fuzz_held) {
        fuzz_held = req;
        http_req_hold(req, fuzz_detach, req);
        return;
    }
    char body[32];
    int n = snprintf(body, sizeof(body), "{\"len\":%zu}", req->body_len);
    http_req_respond(req, 200, "application/json", body, (size_t)n);
}

static void fuzz_answer_held(void)
{
    if (!fuzz_held)
        return;
    http_req_t *req = fuzz_held;
    fuzz_held = NULL;
    http_req_hold(req, NULL, NULL);
    http_req_respond(req, 503, "application/json", "{}", 2);
}

static void fuzz_collect(int client, buf_t *out)
{
    uint8_t chunk[4096];
    ssize_t n;
    while ((n = read(client, chunk, sizeof(chunk))) > 0)
        buf_append(out, chunk, (size_t)n);
}

/* libFuzzer's entry point (declared here: no header of libFuzzer's declares it). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        log_level_min = LOG_FATAL; /* the layer's log lines are not what is tested */
        quiet = true;
    }
    if (size < 2)
        return 0;
    uint32_t seed = (uint32_t)data[0] << 8 | data[1];
    data += 2;
    size -= 2;

    struct event_base *base = event_base_new();
    http_server_config_t config = {
        .max_connections = 4,
        .max_header_bytes = 1024,
        .max_body_bytes = 4096,
        .header_timeout_ms = 60000,
        .body_timeout_ms = 60000,
        .idle_timeout_ms = 60000,
    };
    http_server_hooks_t hooks = {.head = fuzz_head_cb, .request = fuzz_request_cb};
    http_server_t *server = http_server_new(base, &config, &hooks, NULL);
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
        abort();
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    http_server_adopt(server, bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE));

    buf_t out = {0};
    size_t at = 0;
    while (at < size) {
        seed = seed * 1103515245u + 12345u;
        size_t chunk = 1 + (seed >> 16) % 97;
        if (chunk > size - at)
            chunk = size - at;
        ssize_t written = write(fds[1], data + at, chunk);
        (void)written; /* a closed server side is part of the game */
        at += chunk;
        for (int i = 0; i < 4; i++)
            event_base_loop(base, EVLOOP_NONBLOCK);
        fuzz_answer_held();
        for (int i = 0; i < 4; i++)
            event_base_loop(base, EVLOOP_NONBLOCK);
        fuzz_collect(fds[1], &out);
    }
    fuzz_collect(fds[1], &out);
    if (out.len && (out.len < 9 || memcmp(out.data, "HTTP/1.1 ", 9) != 0)) {
        fprintf(stderr, "the server wrote something that is not an HTTP/1.1 answer\n");
        abort();
    }

    /* The client goes away (perhaps with a request held), then the server. */
    close(fds[1]);
    for (int i = 0; i < 4; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    http_server_free(server);
    fuzz_held = NULL;
    event_base_free(base);
    buf_free(&out);
    return 0;
}
