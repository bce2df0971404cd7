/*
 * http_server: a strict HTTP/1.1 server layer on libevent, knowing nothing of
 * what it serves.
 *
 * One http_server_t per event_base: an evconnlistener, one bufferevent per
 * connection, and an explicit connection state machine (http_server.c). The
 * request line and headers are checked by us byte by byte and parsed by
 * Node's http-parser (Debian's libhttp-parser 2.9), which also decodes
 * chunked bodies. Responses are written here.
 *
 * What a caller gets:
 *   - RFC 9112 framing, strictly: any of these is answered 400 and the
 *     connection closed: two Content-Length headers (even equal ones),
 *     Content-Length with Transfer-Encoding, a Transfer-Encoding other than
 *     `chunked`, a bad chunk size, obs-fold, a bare CR or LF, NUL or another
 *     control byte in the request line or headers, a space, control or
 *     non-ASCII byte in the target, a version other than HTTP/1.x, a missing
 *     or repeated Host in HTTP/1.1. An unknown method (a valid token) is 501.
 *   - Bounds: the request line plus headers over max_header_bytes is 431; a
 *     Content-Length over max_body_bytes is 413 before the body is read (after
 *     the head hook, so that its refusals, e.g. a 401, come first); a
 *     chunked body is 413 as soon as it passes max_body_bytes.
 *   - Timeouts: header_timeout from the first byte of a request to the end
 *     of its headers (408); body_timeout between two body reads (408);
 *     idle_timeout for a keep-alive connection with no request under way,
 *     and for an answer the peer does not read (closed without an answer).
 *   - max_connections counts every accepted socket, whatever its state; a
 *     connection beyond it gets 503 and is closed.
 *   - Accept failing for want of descriptors (EMFILE, ENFILE, ENOBUFS,
 *     ENOMEM) pauses accepting with a backoff (10 ms doubling to 1 s),
 *     counted through hooks.accept_paused and logged at most once a second;
 *     open connections are served meanwhile.
 *   - Pipelined requests are handled one at a time, in order: the next one
 *     is parsed only once the answer to the current one is written (input
 *     beyond max_header_bytes + 4 KiB waits in the socket). HTTP/1.0 (keep-alive only when asked) and
 * Connection: close are honoured. `Expect: 100-continue` gets its 100 only after the head hook accepted the
 * request; otherwise the final answer goes at once and the connection closes without reading the body.
 * Any other expectation in an HTTP/1.1 request is answered 417 (RFC 9110 §10.1.1) before the head hook.
 *   - A request answered before its body was read (by the head hook, or 417) keeps its connection when
 *     the body is framed by Content-Length, at most min(max_body_bytes, 64 KiB), and not held back by
 *     100-continue: the body is read and dropped after the answer (body_timeout between reads; a stall
 *     closes), then the next request is served. Otherwise (chunked, larger) the connection closes.
 *   - Every answer of the layer itself is JSON {"message","type"}
 *     (http_error.h), the message naming what was wrong.
 *   - A connection closed after an answer closes gracefully: write side
 *     shut, input read and dropped for a short while, so the peer receives
 *     the answer instead of a reset.
 *
 * Threads: everything runs on the thread of the event_base, hooks included.
 * Several servers may share a port through reuse_port (SO_REUSEPORT).
 */
#ifndef PROFILED_HTTP_SERVER_H
#define PROFILED_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct event_base;
struct bufferevent;

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;

typedef enum http_req_method {
    HTTP_METHOD_GET,
    HTTP_METHOD_HEAD,
    HTTP_METHOD_PUT,
    HTTP_METHOD_POST,
    HTTP_METHOD_DELETE,
    HTTP_METHOD_OTHER, /* a method http-parser knows (PATCH, OPTIONS...): req->method_name has it */
} http_req_method_t;

/* One request. It lives in its connection, from the head hook until its answer is written (or the
 * connection is gone: see http_req_hold). Strings are NUL-terminated. */
struct http_req {
    http_req_method_t method;
    const char *method_name;
    const char *target; /* the raw request-target, checked: visible ASCII only */
    size_t target_len;
    int version_minor;   /* 0 or 1 (HTTP/1.x with x > 1 is treated as 1.1) */
    const uint8_t *body; /* the whole body, decoded from chunks; valid in hooks.request */
    size_t body_len;
    uintptr_t app; /* the caller's, between the head and request hooks; 0 at first */
};

typedef struct http_server_hooks {
    /* The headers are complete and valid, the body not read yet. Return true to read it (a 100
     * Continue goes first when the client expects one) and have hooks.request called; or answer
     * now with http_req_respond and return false (the body, if any, is not read; the connection
     * closes after the answer when a body would follow). */
    bool (*head)(void *arg, http_req_t *req);
    /* The whole request is in. The handler must answer with http_req_respond, now or later. */
    void (*request)(void *arg, http_req_t *req);
    /* The layer answered by itself (400, 408, 413, 417, 431, 501, 503): for logs and metrics. Called once
     * per refusal: a flood of bad requests calls it as often, so its log lines should be rate-limited
     * (log_limit.h). */
    void (*refused)(void *arg, int status, const char *message);
    /* accept() failed for want of descriptors or memory; accepting pauses for backoff_ms. */
    void (*accept_paused)(void *arg, int error, int64_t backoff_ms);
} http_server_hooks_t;

typedef struct http_server_config {
    size_t max_connections;
    size_t max_header_bytes;
    size_t max_body_bytes;
    int64_t header_timeout_ms;
    int64_t body_timeout_ms;
    int64_t idle_timeout_ms;
} http_server_config_t;

/* A server on `base`, not listening yet. The config is copied; hooks and arg are kept. */
http_server_t *http_server_new(struct event_base *base, const http_server_config_t *config,
                               const http_server_hooks_t *hooks, void *arg);
/* Closes the listener and every connection (held requests are detached first), frees all. */
void http_server_free(http_server_t *server);

/* Listens on `sa` (SO_REUSEADDR, and SO_REUSEPORT when reuse_port). */
int http_server_listen(http_server_t *server, const struct sockaddr *sa, int sa_len, bool reuse_port,
                       char *errstr, size_t errstr_size) __attribute__((warn_unused_result));
/* The port the listener is bound to (after http_server_listen with port 0: the one chosen), or -1. */
int http_server_port(const http_server_t *server);
/* Closes the listener; open connections are still served. */
void http_server_stop_listening(http_server_t *server);

/* Serves an already-connected bufferevent (a socket or one end of a pair; the fuzz target uses
 * this). Takes ownership; it counts as a connection like an accepted socket. */
void http_server_adopt(http_server_t *server, struct bufferevent *bev);

/* Open connections. */
size_t http_server_connections(const http_server_t *server);

/* The value of the first header `name` (case-insensitive), or NULL. */
const char *http_req_header(const http_req_t *req, const char *name);
/* Each header line `name` in turn, for list-valued fields sent on several lines (RFC 9110 §5.3:
 * they combine, in order, joined by commas): *cursor starts at 0; NULL after the last. */
const char *http_req_header_next(const http_req_t *req, const char *name, size_t *cursor);

/* Adds a header to the answer; name and value are copied. No CR, LF or NUL in either. */
void http_req_add_header(http_req_t *req, const char *name, const char *value);

/* The connection closes once the answer is written. */
void http_req_close_after(http_req_t *req);

/* Answers the request (once): status line, Date, Content-Type (when not NULL), Content-Length,
 * Connection when needed, the added headers, then the body (none for HEAD). The request must not
 * be used afterwards. */
void http_req_respond(http_req_t *req, int status, const char *content_type, const void *body,
                      size_t body_len);

/* The same with the body in up to 4 parts, written from where they lie (one sendmsg) when the socket
 * takes them, copied otherwise: the parts need not outlive the call. */
void http_req_respond_parts(http_req_t *req, int status, const char *content_type, const struct iovec *parts,
                            int part_count);

/* While a request waits for an answer from elsewhere: if its connection goes away first (a reset
 * by the peer, or the server's shutdown), detach(held) is called and the request is gone. Pass
 * NULL to forget. */
void http_req_hold(http_req_t *req, void (*detach)(void *held), void *held);

/* The reason phrase of a status ("OK", "Not Found"...). */
const char *http_status_reason(int status);

#endif
