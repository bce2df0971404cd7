/*
 * http_server: the connection state machine behind http_server.h.
 *
 * A connection is in exactly one state; each state says what the timer
 * means and whether we read:
 *
 *   IDLE      no byte of the next request yet; reading; idle timer (close)
 *   HEAD      request line and headers arriving; reading; header timer (408)
 *   BODY      body arriving; reading; body-progress timer (408)
 *   HANDLING  the request is with the handler; input left unparsed; no timer
 *   WRITING   an answer is queued; input left unparsed; idle timer (close)
 *   DRAIN     the answer went out before the request's body was read: the
 *             body (Content-Length framed, small) is read and dropped, then
 *             the connection goes on; body-progress timer (close)
 *   LINGER    answer written, write side shut; reading and dropping input
 *             until EOF; linger timer (close)
 *
 * The head is checked by us before http-parser sees it, byte by byte as it
 * arrives (so a bare LF or a NUL is refused at once, not after a timeout):
 * http-parser 2.9 is lenient about bare LF, tabs in the target and more, and
 * its errors would not let us tell a 501 from a 400. Once the blank line
 * ends the head, the head is copied out of the input buffer (header values
 * point into the copy) and parsed in one call; the body is then fed as it
 * comes, and a pause at message-complete gives the byte where a pipelined
 * next request starts. The parser is initialised afresh for each request.
 *
 * Connections are freed only from their own event callbacks or by
 * http_server_free, never inside a hook, so a hook may answer at once.
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "http_error.h"
#include "log.h"
#include "xalloc.h"

#define HTTP_MAX_HEADERS      100
#define HTTP_LINGER_MS        2000
#define HTTP_LINGER_MAX_BYTES (256 * 1024)
#define HTTP_REFUSED_MAX      64 /* refused connections given a graceful 503 at once; beyond: plain close */
#define HTTP_BACKOFF_MIN_MS   10
#define HTTP_BACKOFF_MAX_MS   1000
#define HTTP_BODY_KEEP_BYTES  (64 * 1024) /* a body buffer larger than this is freed between requests */
#define HTTP_DRAIN_MAX_BYTES  (64 * 1024) /* an unread body up to this (and max_body_bytes) is drained */
#define HTTP_READ_BYTES       (16 * 1024) /* one recv: a whole head, or a 1 KiB PUT with its body */

typedef enum http_conn_state {
    HTTP_CONN_IDLE,
    HTTP_CONN_HEAD,
    HTTP_CONN_BODY,
    HTTP_CONN_HANDLING,
    HTTP_CONN_WRITING,
    HTTP_CONN_DRAIN,
    HTTP_CONN_LINGER,
} http_conn_state_t;

/* A header as offsets into the connection's copy of the head. */
typedef struct http_header {
    uint32_t name, name_len, value, value_len;
} http_header_t;

typedef struct http_conn {
    http_req_t req; /* first: a handler's http_req_t * is its connection */
    http_server_t *server;
    struct http_conn *prev, *next;
    struct bufferevent *bev;
    struct event *timer;
    /* A socket is read by us, not by the bufferevent (which only writes): one recv per readiness,
     * where bufferevent_read costs an ioctl(FIONREAD) and a readv of at most 4 KiB. NULL for a
     * bufferevent without a socket (a pair), read by the bufferevent. */
    struct event *read_event;
    bool read_paused; /* the input reached its bound (read_bound): the read event is off */
    bool read_eof;    /* the peer closed its side: nothing more to read */
    http_conn_state_t state;
    http_parser parser;

    bool refused;          /* over max_connections: counted apart, answered 503 */
    bool close_after;      /* close once the answer is written */
    bool message_complete; /* http-parser saw the end of the request */
    bool body_too_large;
    bool too_many_headers;
    bool in_head_hook;
    bool in_process;      /* http_conn_process is on the stack: an answer sent at once is finished there */
    bool answer_sent;     /* WRITING, and the answer is all in the socket */
    bool head_parsed;     /* the head of the current request passed every check: its framing is known */
    bool expect_continue; /* the client waits for 100 Continue before it sends the body */
    uint64_t drain_left;  /* body bytes to drop before the next request (DRAIN) */

    /* byte-by-byte check of the head as it arrives */
    size_t scan_pos;   /* bytes of the input checked so far */
    size_t line_len;   /* bytes of the current line so far */
    unsigned line_no;  /* 0: the request line */
    uint8_t prev_byte; /* the byte before scan_pos */

    buf_t head;    /* the request head, NUL-terminated pieces after parsing */
    buf_t headers; /* http_header_t[] */
    size_t header_count;
    bool in_value;     /* the last header callback was a value */
    bool headers_done; /* later header callbacks are a chunked body's trailers: ignored */
    buf_t body;
    buf_t out_headers; /* "Name: value\r\n" added by the handler */

    void (*detach)(void *held);
    void *held;
    size_t linger_bytes;
} http_conn_t;

struct http_server {
    struct event_base *base;
    http_server_config_t config;
    http_server_hooks_t hooks;
    void *arg;
    struct evconnlistener *listener;
    struct event *accept_timer;
    int64_t backoff_ms;
    int64_t last_log_us;
    uint64_t errors_since_log;
    http_conn_t conns; /* sentinel of the list of every connection */
    size_t count;      /* connections counted against max_connections */
    size_t refused_count;
    const struct timeval *tv_idle, *tv_header, *tv_body, *tv_linger;
    http_parser_settings settings;
    buf_t scratch;
    uint8_t read_buf[HTTP_READ_BYTES]; /* every recv lands here, then is appended to its input */
    char date[40];
    time_t date_at;
};

static void http_conn_free(http_conn_t *conn);
static void http_conn_process(http_conn_t *conn);
static void http_conn_read_resume(http_conn_t *conn);

/* ---- small helpers ----------------------------------------------------- */

static bool http_is_tchar(uint8_t c)
{
    /* RFC 9110 §5.6.2 token characters */
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

const char *http_status_reason(int status)
{
    if (status == 413)
        return "Content Too Large"; /* RFC 9110's name; http-parser 2.9 has the older one */
    const char *reason = http_status_str((enum http_status)status);
    return reason && strcmp(reason, "<unknown>") != 0 ? reason : "Unknown";
}

static const struct timeval *http_common_timeout(struct event_base *base, int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    /* One queue per duration instead of the heap: O(1) re-arming, which the body timer does per read. */
    return event_base_init_common_timeout(base, &tv);
}

static void http_conn_arm(http_conn_t *conn, const struct timeval *tv)
{
    event_add(conn->timer, tv);
}

static const char *http_date(http_server_t *server)
{
    time_t now = time(NULL);
    if (now != server->date_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(server->date, sizeof(server->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        server->date_at = now;
    }
    return server->date;
}

static const http_header_t *http_conn_headers(const http_conn_t *conn)
{
    return (const http_header_t *)conn->headers.data;
}

/* ---- answers ------------------------------------------------------------ */

static void http_conn_written(http_conn_t *conn);
static void http_conn_next(http_conn_t *conn);
static void http_conn_linger(http_conn_t *conn);

#define HTTP_BODY_PARTS_MAX 4

/* The body is given in parts (an iovec), written where they lie when the socket takes them. */
static void http_conn_write_answer_parts(http_conn_t *conn, int status, const char *content_type,
                                         const struct iovec *parts, int part_count)
{
    size_t body_len = 0;
    for (int i = 0; i < part_count; i++)
        body_len += parts[i].iov_len;
    http_server_t *server = conn->server;
    struct evbuffer *out = bufferevent_get_output(conn->bev);
    buf_t *head = &server->scratch;
    /* Answered before its body was read: a small Content-Length body, sent already (no 100-continue
     * wait), is drained after the answer and the connection kept; any other body (chunked, larger,
     * or maybe never sent) leaves the connection unusable. */
    if (conn->state == HTTP_CONN_HEAD && !conn->message_complete && !conn->close_after) {
        size_t bound = conn->server->config.max_body_bytes < HTTP_DRAIN_MAX_BYTES
                           ? conn->server->config.max_body_bytes
                           : HTTP_DRAIN_MAX_BYTES;
        if (conn->head_parsed && !(conn->parser.flags & F_CHUNKED) && !conn->expect_continue &&
            conn->parser.content_length <= bound)
            conn->drain_left = conn->parser.content_length;
        else
            conn->close_after = true;
    }
    /* Built with appends, not printf: the head is written for every answer. */
    buf_reset(head);
    char status_text[3] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                           (char)('0' + status % 10)};
    buf_append_str(head, "HTTP/1.1 ");
    buf_append(head, status_text, sizeof(status_text));
    buf_append_str(head, " ");
    buf_append_str(head, http_status_reason(status));
    buf_append_str(head, "\r\nDate: ");
    buf_append_str(head, http_date(server));
    buf_append_str(head, "\r\n");
    /* A 204 has neither (RFC 9110 8.6: no Content-Length in a 204). */
    if (content_type && status != 204) {
        buf_append_str(head, "Content-Type: ");
        buf_append_str(head, content_type);
        buf_append_str(head, "\r\n");
    }
    if (status != 204) {
        char digits[24];
        size_t at = sizeof(digits);
        size_t value = body_len;
        do {
            digits[--at] = (char)('0' + value % 10);
            value /= 10;
        } while (value > 0);
        buf_append_str(head, "Content-Length: ");
        buf_append(head, digits + at, sizeof(digits) - at);
        buf_append_str(head, "\r\n");
    }
    if (conn->close_after)
        buf_append_str(head, "Connection: close\r\n");
    else if (conn->req.version_minor == 0)
        buf_append_str(head, "Connection: keep-alive\r\n");
    buf_append(head, conn->out_headers.data, conn->out_headers.len);
    buf_append_str(head, "\r\n");
    /* HEAD and 304 carry the Content-Length a GET's 200 would have, and no body (RFC 9110 9.3.2,
     * 15.4.5). */
    if (conn->req.method == HTTP_METHOD_HEAD || status == 304)
        part_count = 0;
    conn->state = HTTP_CONN_WRITING;
    conn->detach = NULL;
    conn->held = NULL;

    /* Nothing queued before it (the usual case): write at once. An answer that fits the socket
     * buffer then never arms the write event, which saves two epoll_ctl calls per request. */
    struct iovec iov[1 + HTTP_BODY_PARTS_MAX];
    iov[0] = (struct iovec){head->data, head->len};
    int iov_count = 1;
    for (int i = 0; i < part_count; i++)
        if (parts[i].iov_len > 0)
            iov[iov_count++] = parts[i];
    size_t sent = 0;
    evutil_socket_t fd = bufferevent_getfd(conn->bev);
    if (fd >= 0 && evbuffer_get_length(out) == 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iov_count};
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        /* On an error the bufferevent meets it again on its own write and reports it. */
        sent = n > 0 ? (size_t)n : 0;
    }
    /* What the socket did not take is copied: the caller's parts are not kept. */
    for (int i = 0; i < iov_count; i++) {
        if (sent >= iov[i].iov_len) {
            sent -= iov[i].iov_len;
            continue;
        }
        evbuffer_add(out, (const uint8_t *)iov[i].iov_base + sent, iov[i].iov_len - sent);
        sent = 0;
    }
    if (evbuffer_get_length(out) == 0) {
        event_del(conn->timer);
        if (conn->in_process)
            conn->answer_sent = true; /* http_conn_process moves on */
        else
            http_conn_written(conn);
        return;
    }
    bufferevent_enable(conn->bev, EV_WRITE);
    http_conn_arm(conn, server->tv_idle);
}

static void http_conn_write_answer(http_conn_t *conn, int status, const char *content_type, const void *body,
                                   size_t body_len)
{
    struct iovec part = {(void *)body, body_len};
    http_conn_write_answer_parts(conn, status, content_type, &part, 1);
}

/* The layer's own refusal: a JSON error, then close. */
static void http_conn_fail(http_conn_t *conn, int status, const char *message)
{
    http_server_t *server = conn->server;
    buf_t body = {0};
    http_error_body(&body, status, message);
    conn->close_after = true;
    buf_reset(&conn->out_headers);
    if (status == 503)
        buf_append_str(&conn->out_headers, "Retry-After: 1\r\n");
    http_conn_write_answer(conn, status, "application/json", body.data, body.len);
    buf_free(&body);
    if (server->hooks.refused)
        server->hooks.refused(server->arg, status, message);
}

/* A refusal that does not break the framing (417): the connection may go on (after draining a small
 * body, see http_conn_write_answer_parts). */
static void http_conn_refuse(http_conn_t *conn, int status, const char *message)
{
    http_server_t *server = conn->server;
    buf_t body = {0};
    http_error_body(&body, status, message);
    buf_reset(&conn->out_headers);
    http_conn_write_answer(conn, status, "application/json", body.data, body.len);
    buf_free(&body);
    if (server->hooks.refused)
        server->hooks.refused(server->arg, status, message);
}

/* ---- http-parser callbacks ----------------------------------------------- */

static int http_on_header_field(http_parser *parser, const char *at, size_t len)
{
    http_conn_t *conn = parser->data;
    if (conn->headers_done) /* trailer fields point into the body's buffer, not the head: dropped */
        return 0;
    if (conn->header_count > 0 && !conn->in_value) { /* a continuation of the same name */
        ((http_header_t *)conn->headers.data)[conn->header_count - 1].name_len += (uint32_t)len;
        return 0;
    }
    if (conn->header_count >= HTTP_MAX_HEADERS) {
        conn->too_many_headers = true;
        return 1;
    }
    http_header_t header = {.name = (uint32_t)((const uint8_t *)at - conn->head.data),
                            .name_len = (uint32_t)len};
    buf_append(&conn->headers, &header, sizeof(header));
    conn->header_count++;
    conn->in_value = false;
    return 0;
}

static int http_on_header_value(http_parser *parser, const char *at, size_t len)
{
    http_conn_t *conn = parser->data;
    if (conn->headers_done)
        return 0;
    http_header_t *header = &((http_header_t *)conn->headers.data)[conn->header_count - 1];
    if (conn->in_value) {
        header->value_len += (uint32_t)len;
    } else {
        header->value = (uint32_t)((const uint8_t *)at - conn->head.data);
        header->value_len = (uint32_t)len;
        conn->in_value = true;
    }
    return 0;
}

static int http_on_headers_complete(http_parser *parser)
{
    ((http_conn_t *)parser->data)->headers_done = true;
    return 0;
}

static int http_on_body(http_parser *parser, const char *at, size_t len)
{
    http_conn_t *conn = parser->data;
    if (conn->body.len + len > conn->server->config.max_body_bytes) {
        conn->body_too_large = true;
        return 1;
    }
    buf_append(&conn->body, at, len);
    return 0;
}

/* A chunk announced larger than what is left of the limit is refused before its data is read. */
static int http_on_chunk_header(http_parser *parser)
{
    http_conn_t *conn = parser->data;
    if (parser->content_length > conn->server->config.max_body_bytes - conn->body.len) {
        conn->body_too_large = true;
        return 1;
    }
    return 0;
}

static int http_on_message_complete(http_parser *parser)
{
    http_conn_t *conn = parser->data;
    conn->message_complete = true;
    /* Stop here: what follows is the next (pipelined) request, parsed once this one is answered. */
    http_parser_pause(parser, 1);
    return 0;
}

/* ---- the head ------------------------------------------------------------ */

typedef enum http_step {
    HTTP_STEP_MORE, /* waits for more input */
    HTTP_STEP_DONE, /* moved to another state */
} http_step_t;

/*
 * Checks the new bytes of the head. Returns 1 when the head is complete
 * (*head_len set), 0 when more is needed, -1 after answering an error.
 */
static int http_head_scan(http_conn_t *conn, const uint8_t *data, size_t len, size_t *head_len)
{
    char message[160];
    for (size_t i = conn->scan_pos; i < len; i++) {
        uint8_t c = data[i];
        uint8_t prev = conn->prev_byte;
        conn->prev_byte = c;
        if (prev == '\r' && c != '\n') {
            http_conn_fail(conn, 400, "bare CR in the request head (lines end with CRLF)");
            return -1;
        }
        if (c == '\n') {
            if (prev != '\r') {
                http_conn_fail(conn, 400, "bare LF in the request head (lines end with CRLF)");
                return -1;
            }
            if (conn->line_len == 0) {
                if (conn->line_no == 0) {
                    /* RFC 9112 §2.2: an empty line before the request line is ignored. */
                    conn->scan_pos = i + 1;
                    continue;
                }
                *head_len = i + 1;
                conn->scan_pos = i + 1;
                return 1;
            }
            conn->line_no++;
            conn->line_len = 0;
            continue;
        }
        if (c == '\r')
            continue;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            /* Name the header: its name runs from the line's start to the colon. */
            const uint8_t *line = data + i - conn->line_len;
            size_t name_len = 0;
            while (name_len < conn->line_len && name_len < 64 && http_is_tchar(line[name_len]))
                name_len++;
            if (conn->line_no == 0)
                snprintf(message, sizeof(message), "control byte 0x%02x in the request line", c);
            else
                snprintf(message, sizeof(message), "control byte 0x%02x in header %.*s", c, (int)name_len,
                         (const char *)line);
            http_conn_fail(conn, 400, message);
            return -1;
        }
        if (conn->line_len == 0 && (c == ' ' || c == '\t')) {
            http_conn_fail(conn, 400,
                           conn->line_no == 0
                               ? "whitespace before the request line"
                               : "obs-fold (a header line starting with whitespace) is not allowed");
            return -1;
        }
        conn->line_len++;
    }
    conn->scan_pos = len;
    return 0;
}

/*
 * The request line, as RFC 9112 §3 has it: method SP request-target SP
 * HTTP-version, single spaces. Returns 0, or an HTTP status with message.
 */
static int http_request_line_check(const uint8_t *line, size_t len, http_req_t *req, size_t *method_len,
                                   size_t *target_at, char *message, size_t message_size)
{
    size_t i = 0;
    while (i < len && http_is_tchar(line[i]))
        i++;
    if (i == 0 || i >= len || line[i] != ' ') {
        snprintf(message, message_size,
                 "malformed request line: the method must be a token followed by one space");
        return 400;
    }
    *method_len = i;
    size_t start = ++i;
    while (i < len && line[i] > 0x20 && line[i] < 0x7f)
        i++;
    if (i == start || i >= len || line[i] != ' ') {
        snprintf(message, message_size,
                 "malformed request target: it must be visible ASCII without spaces, followed by one space "
                 "and the HTTP version");
        return 400;
    }
    *target_at = start;
    req->target_len = i - start;
    i++;
    if (len - i != 8 || memcmp(line + i, "HTTP/", 5) != 0 || line[i + 5] < '0' || line[i + 5] > '9' ||
        line[i + 6] != '.' || line[i + 7] < '0' || line[i + 7] > '9') {
        snprintf(message, message_size, "malformed HTTP version in the request line (expected HTTP/1.1)");
        return 400;
    }
    if (line[i + 5] != '1') {
        snprintf(message, message_size, "unsupported HTTP version %.8s; this server speaks HTTP/1.1",
                 (const char *)line + i);
        return 400;
    }
    /* RFC 9110 §2.5: a higher minor version is answered as the highest we speak. */
    req->version_minor = line[i + 7] == '0' ? 0 : 1;
    return 0;
}

static bool http_name_is(const http_conn_t *conn, const http_header_t *header, const char *name)
{
    size_t len = strlen(name);
    return header->name_len == len &&
           strncasecmp((const char *)conn->head.data + header->name, name, len) == 0;
}

/* Framing and header rules http-parser does not enforce (or not with a useful message). `complete`:
 * every header was seen (http-parser did not stop early), so an absent one is really absent. */
static int http_headers_check(http_conn_t *conn, bool complete, char *message, size_t message_size)
{
    const http_header_t *headers = http_conn_headers(conn);
    unsigned content_length = 0, transfer_encoding = 0, host = 0;
    const http_header_t *te = NULL;
    for (size_t i = 0; i < conn->header_count; i++) {
        const http_header_t *h = &headers[i];
        for (uint32_t k = 0; k < h->name_len; k++) {
            if (!http_is_tchar(conn->head.data[h->name + k])) {
                snprintf(message, message_size, "malformed header name (a token, then a colon, no spaces)");
                return 400;
            }
        }
        if (http_name_is(conn, h, "Content-Length"))
            content_length++;
        else if (http_name_is(conn, h, "Transfer-Encoding"))
            transfer_encoding++, te = h;
        else if (http_name_is(conn, h, "Host"))
            host++;
    }
    if (content_length > 1) {
        snprintf(message, message_size, "more than one Content-Length header");
        return 400;
    }
    if (content_length && transfer_encoding) {
        snprintf(message, message_size, "both Content-Length and Transfer-Encoding");
        return 400;
    }
    if (transfer_encoding) {
        const char *value = (const char *)conn->head.data + te->value;
        size_t len = te->value_len;
        while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
            len--;
        while (len && (*value == ' ' || *value == '\t'))
            value++, len--;
        if (transfer_encoding > 1 || len != 7 || strncasecmp(value, "chunked", 7) != 0) {
            snprintf(message, message_size, "Transfer-Encoding other than chunked");
            return 400;
        }
        if (conn->req.version_minor == 0) {
            snprintf(message, message_size, "Transfer-Encoding in an HTTP/1.0 request");
            return 400;
        }
    }
    if (host > 1 || (host == 0 && complete && conn->req.version_minor == 1)) {
        snprintf(message, message_size,
                 host ? "more than one Host header" : "missing Host header (HTTP/1.1)");
        return 400;
    }
    return 0;
}

/* RFC 9110 §10.1.1: Expect is a list; 100-continue is the only expectation defined. Returns false,
 * with the member named in message, when another one is asked for (417); sets expect_continue. */
static bool http_expect_check(http_conn_t *conn, char *message, size_t message_size)
{
    const http_header_t *headers = http_conn_headers(conn);
    for (size_t i = 0; i < conn->header_count; i++) {
        if (!http_name_is(conn, &headers[i], "Expect"))
            continue;
        const char *p = (const char *)conn->head.data + headers[i].value;
        const char *end = p + headers[i].value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *member = p;
            while (p < end && *p != ',')
                p++;
            const char *member_end = p;
            while (member_end > member && (member_end[-1] == ' ' || member_end[-1] == '\t'))
                member_end--;
            size_t len = (size_t)(member_end - member);
            if (len == 0)
                continue;
            if (len == 12 && strncasecmp(member, "100-continue", 12) == 0) {
                conn->expect_continue = true;
                continue;
            }
            snprintf(message, message_size,
                     "Expect: %.*s cannot be met; the only expectation is 100-continue",
                     (int)(len < 64 ? len : 64), member);
            return false;
        }
    }
    return true;
}

static http_req_method_t http_method_of(enum http_method method)
{
    switch (method) {
    case HTTP_GET:
        return HTTP_METHOD_GET;
    case HTTP_HEAD:
        return HTTP_METHOD_HEAD;
    case HTTP_PUT:
        return HTTP_METHOD_PUT;
    case HTTP_POST:
        return HTTP_METHOD_POST;
    case HTTP_DELETE:
        return HTTP_METHOD_DELETE;
    default:
        return HTTP_METHOD_OTHER;
    }
}

static void http_conn_dispatch(http_conn_t *conn)
{
    http_server_t *server = conn->server;
    conn->state = HTTP_CONN_HANDLING;
    event_del(conn->timer);
    buf_terminate(&conn->body);
    conn->req.body = conn->body.data ? conn->body.data : (const uint8_t *)"";
    conn->req.body_len = conn->body.len;
    server->hooks.request(server->arg, &conn->req);
}

static http_step_t http_conn_read_head(http_conn_t *conn)
{
    http_server_t *server = conn->server;
    struct evbuffer *input = bufferevent_get_input(conn->bev);
    size_t available = evbuffer_get_length(input);
    size_t limit = server->config.max_header_bytes;
    size_t want = available < limit + 2 ? available : limit + 2;
    const uint8_t *data = evbuffer_pullup(input, (ev_ssize_t)want);
    size_t head_len = 0;
    int scanned = http_head_scan(conn, data, want, &head_len);
    if (scanned < 0)
        return HTTP_STEP_DONE;
    if (scanned == 0) {
        if (want > limit) {
            char message[160];
            snprintf(message, sizeof(message),
                     "the request line and headers exceed %zu bytes (PROFILED_HTTP_MAX_HEADER_BYTES)", limit);
            http_conn_fail(conn, 431, message);
            return HTTP_STEP_DONE;
        }
        return HTTP_STEP_MORE;
    }

    /* Empty lines before the request line are dropped; the rest of the head is copied. */
    size_t skip = 0;
    while (skip + 1 < head_len && data[skip] == '\r' && data[skip + 1] == '\n')
        skip += 2;
    buf_reset(&conn->head);
    buf_append(&conn->head, data + skip, head_len - skip);
    buf_terminate(&conn->head);
    evbuffer_drain(input, head_len);
    conn->scan_pos = 0;
    const uint8_t *head = conn->head.data;
    size_t len = head_len - skip;

    char message[200];
    size_t line_len = (size_t)((const uint8_t *)strstr((const char *)head, "\r\n") - head);
    size_t method_len = 0, target_at = 0;
    int status = http_request_line_check(head, line_len, &conn->req, &method_len, &target_at, message,
                                         sizeof(message));
    if (status) {
        http_conn_fail(conn, status, message);
        return HTTP_STEP_DONE;
    }

    http_parser_init(&conn->parser, HTTP_REQUEST);
    conn->parser.data = conn;
    size_t parsed = http_parser_execute(&conn->parser, &server->settings, (const char *)head, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&conn->parser);
    if (err == HPE_PAUSED) {
        http_parser_pause(&conn->parser, 0);
        err = HPE_OK;
    }
    if (conn->too_many_headers) {
        snprintf(message, sizeof(message), "more than %d header fields", HTTP_MAX_HEADERS);
        http_conn_fail(conn, 431, message);
        return HTTP_STEP_DONE;
    }
    if (err == HPE_INVALID_METHOD) {
        snprintf(message, sizeof(message), "method %.*s is not implemented", (int)method_len,
                 (const char *)head);
        http_conn_fail(conn, 501, message);
        return HTTP_STEP_DONE;
    }
    /* Our checks before http-parser's other errors: they name the framing rule, where its errors are
     * generic. */
    status = http_headers_check(conn, err == HPE_OK, message, sizeof(message));
    if (status) {
        http_conn_fail(conn, status, message);
        return HTTP_STEP_DONE;
    }
    if (err != HPE_OK || parsed != len) {
        snprintf(message, sizeof(message), "malformed request: %s", http_errno_description(err));
        http_conn_fail(conn, 400, message);
        return HTTP_STEP_DONE;
    }

    /* NUL-terminate the method, the target and every header in the copy (the CR/SP after each). */
    http_header_t *headers = (http_header_t *)conn->headers.data;
    for (size_t i = 0; i < conn->header_count; i++) {
        if (headers[i].value_len == 0) /* empty: point at the colon, which becomes its NUL */
            headers[i].value = headers[i].name + headers[i].name_len;
        uint32_t end = headers[i].value + headers[i].value_len;
        while (end > headers[i].value && (head[end - 1] == ' ' || head[end - 1] == '\t'))
            end--;
        headers[i].value_len = end - headers[i].value;
        conn->head.data[end] = '\0';
    }
    conn->head.data[method_len] = '\0';
    conn->head.data[target_at + conn->req.target_len] = '\0';
    conn->req.method_name = (const char *)conn->head.data;
    conn->req.target = (const char *)conn->head.data + target_at;
    conn->req.method = http_method_of((enum http_method)conn->parser.method);
    if (!http_should_keep_alive(&conn->parser))
        conn->close_after = true;
    conn->head_parsed = true;

    bool has_body = !conn->message_complete;
    /* RFC 9110 §10.1.1: a 1.0 client's Expect is ignored. */
    if (conn->req.version_minor == 1 && !http_expect_check(conn, message, sizeof(message))) {
        http_conn_refuse(conn, 417, message);
        return HTTP_STEP_DONE;
    }
    conn->in_head_hook = true;
    bool go_on = server->hooks.head(server->arg, &conn->req);
    conn->in_head_hook = false;
    if (!go_on) {
        if (conn->state != HTTP_CONN_WRITING) {
            fatal_abort("http_server: the head hook refused a request without answering it");
        }
        return HTTP_STEP_DONE;
    }
    if (has_body && !(conn->parser.flags & F_CHUNKED) &&
        conn->parser.content_length > server->config.max_body_bytes) {
        snprintf(message, sizeof(message),
                 "request body is %llu bytes (Content-Length); the limit is %zu bytes",
                 (unsigned long long)conn->parser.content_length, server->config.max_body_bytes);
        http_conn_fail(conn, 413, message);
        return HTTP_STEP_DONE;
    }

    if (!has_body) {
        http_conn_dispatch(conn);
        return HTTP_STEP_DONE;
    }
    if (conn->expect_continue) {
        static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";
        bufferevent_write(conn->bev, continue_line, sizeof(continue_line) - 1);
    }
    conn->state = HTTP_CONN_BODY;
    http_conn_arm(conn, server->tv_body);
    return HTTP_STEP_DONE;
}

static http_step_t http_conn_read_body(http_conn_t *conn)
{
    http_server_t *server = conn->server;
    struct evbuffer *input = bufferevent_get_input(conn->bev);
    while (evbuffer_get_length(input) > 0 && !conn->message_complete) {
        struct evbuffer_iovec vec;
        if (evbuffer_peek(input, -1, NULL, &vec, 1) < 1)
            break;
        size_t parsed = http_parser_execute(&conn->parser, &server->settings, vec.iov_base, vec.iov_len);
        enum http_errno err = HTTP_PARSER_ERRNO(&conn->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&conn->parser, 0);
            err = HPE_OK;
        }
        if (conn->body_too_large) {
            char message[160];
            snprintf(message, sizeof(message), "request body exceeds the limit of %zu bytes",
                     server->config.max_body_bytes);
            http_conn_fail(conn, 413, message);
            return HTTP_STEP_DONE;
        }
        if (err != HPE_OK) {
            char message[160];
            snprintf(message, sizeof(message), "malformed request body: %s", http_errno_description(err));
            http_conn_fail(conn, 400, message);
            return HTTP_STEP_DONE;
        }
        evbuffer_drain(input, parsed);
        if (parsed < vec.iov_len && !conn->message_complete) {
            http_conn_fail(conn, 400, "malformed request body");
            return HTTP_STEP_DONE;
        }
    }
    if (!conn->message_complete)
        return HTTP_STEP_MORE;
    http_conn_dispatch(conn);
    return HTTP_STEP_DONE;
}

/* Runs the state machine over the input buffered so far. */
static void http_conn_process(http_conn_t *conn)
{
    struct evbuffer *input = bufferevent_get_input(conn->bev);
    conn->in_process = true;
    for (;;) {
        switch (conn->state) {
        case HTTP_CONN_IDLE:
            if (evbuffer_get_length(input) == 0)
                goto done;
            conn->state = HTTP_CONN_HEAD;
            http_conn_arm(conn, conn->server->tv_header);
            break;
        case HTTP_CONN_HEAD:
            if (http_conn_read_head(conn) == HTTP_STEP_MORE)
                goto done;
            break;
        case HTTP_CONN_BODY:
            if (http_conn_read_body(conn) == HTTP_STEP_MORE)
                goto done;
            break;
        case HTTP_CONN_WRITING:
            if (!conn->answer_sent)
                goto done;
            /* Answered at once and all written: on to the close, or to the next request (a loop,
             * not a recursion, however many requests a peer pipelined). */
            conn->answer_sent = false;
            if (conn->close_after) {
                conn->in_process = false;
                http_conn_linger(conn);
                return;
            }
            http_conn_next(conn);
            break;
        case HTTP_CONN_DRAIN: {
            size_t available = evbuffer_get_length(input);
            size_t n = available < conn->drain_left ? available : (size_t)conn->drain_left;
            evbuffer_drain(input, n);
            conn->drain_left -= n;
            if (conn->drain_left > 0)
                goto done;
            conn->state = HTTP_CONN_IDLE;
            http_conn_arm(conn, conn->server->tv_idle);
            break;
        }
        case HTTP_CONN_HANDLING:
        case HTTP_CONN_LINGER:
            goto done;
        default:
            fatal_abort("http_server: impossible connection state %d", (int)conn->state);
        }
    }
done:
    conn->in_process = false;
    if (conn->read_event)
        http_conn_read_resume(conn);
}

/* ---- connection events --------------------------------------------------- */

static void http_conn_reset(http_conn_t *conn)
{
    buf_reset(&conn->head);
    buf_reset(&conn->headers);
    conn->header_count = 0;
    conn->in_value = conn->headers_done = false;
    if (conn->body.cap > HTTP_BODY_KEEP_BYTES)
        buf_free(&conn->body);
    buf_reset(&conn->body);
    buf_reset(&conn->out_headers);
    conn->req = (http_req_t){0};
    conn->message_complete = conn->body_too_large = conn->too_many_headers = false;
    conn->head_parsed = conn->expect_continue = false;
    conn->scan_pos = conn->line_len = 0;
    conn->line_no = 0;
    conn->prev_byte = 0;
}

static void http_conn_linger(http_conn_t *conn)
{
    evutil_socket_t fd = bufferevent_getfd(conn->bev);
    if (fd < 0) { /* not a socket (a bufferevent pair): nothing to linger on */
        http_conn_free(conn);
        return;
    }
    conn->state = HTTP_CONN_LINGER;
    shutdown(fd, SHUT_WR);
    evbuffer_drain(bufferevent_get_input(conn->bev), evbuffer_get_length(bufferevent_get_input(conn->bev)));
    bufferevent_disable(conn->bev, EV_WRITE);
    if (conn->read_event) {
        /* The input is empty now: read (and drop) again; at EOF the event fires at once and closes. */
        conn->read_paused = true;
        conn->read_eof = false;
        http_conn_read_resume(conn);
    } else {
        bufferevent_enable(conn->bev, EV_READ);
    }
    http_conn_arm(conn, conn->server->tv_linger);
}

/* How much unparsed input a connection holds before it stops reading: a pipelining peer that runs ahead
 * waits in its socket. */
static size_t http_conn_read_bound(const http_conn_t *conn)
{
    return conn->server->config.max_header_bytes + 4096;
}

/* Reading again once the input went below its bound (after http_conn_process consumed some). */
static void http_conn_read_resume(http_conn_t *conn)
{
    if (conn->read_paused && !conn->read_eof &&
        evbuffer_get_length(bufferevent_get_input(conn->bev)) < http_conn_read_bound(conn)) {
        conn->read_paused = false;
        event_add(conn->read_event, NULL);
    }
}

static void http_conn_read_cb(struct bufferevent *bev, void *arg)
{
    http_conn_t *conn = arg;
    if (conn->state == HTTP_CONN_LINGER) {
        struct evbuffer *input = bufferevent_get_input(bev);
        conn->linger_bytes += evbuffer_get_length(input);
        evbuffer_drain(input, evbuffer_get_length(input));
        if (conn->linger_bytes > HTTP_LINGER_MAX_BYTES)
            http_conn_free(conn);
        return;
    }
    if (conn->state == HTTP_CONN_BODY || conn->state == HTTP_CONN_DRAIN)
        http_conn_arm(conn, conn->server->tv_body); /* progress */
    http_conn_process(conn);
}

/* Ready for the next request on a kept-alive connection (after the unread body of this one, if any). */
static void http_conn_next(http_conn_t *conn)
{
    http_conn_reset(conn);
    if (conn->drain_left > 0) {
        conn->state = HTTP_CONN_DRAIN;
        http_conn_arm(conn, conn->server->tv_body);
        return;
    }
    conn->state = HTTP_CONN_IDLE;
    http_conn_arm(conn, conn->server->tv_idle);
}

/* The answer is all written (outside http_conn_process): close (gracefully) or go on with the next
 * request, which may already be buffered. */
static void http_conn_written(http_conn_t *conn)
{
    if (conn->close_after) {
        http_conn_linger(conn);
        return;
    }
    http_conn_next(conn);
    http_conn_process(conn);
}

static void http_conn_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    http_conn_t *conn = arg;
    if (conn->state != HTTP_CONN_WRITING || conn->answer_sent) /* e.g. a 100 Continue went out */
        return;
    http_conn_written(conn);
}

static void http_conn_event_cb(struct bufferevent *bev, short events, void *arg)
{
    (void)bev;
    http_conn_t *conn = arg;
    if ((events & BEV_EVENT_EOF) && !(events & BEV_EVENT_ERROR) &&
        (conn->state == HTTP_CONN_HANDLING || conn->state == HTTP_CONN_WRITING)) {
        /* The peer shut its side after its request: answer it, then close. */
        conn->close_after = true;
        return;
    }
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        http_conn_free(conn);
}

/* The socket is readable: one recv into the input, then what bufferevent's read and event callbacks
 * would do. Level-triggered: input left in the socket fires the event again. */
static void http_conn_socket_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    http_conn_t *conn = arg;
    struct evbuffer *input = bufferevent_get_input(conn->bev);
    size_t len = evbuffer_get_length(input);
    size_t bound = http_conn_read_bound(conn);
    size_t want = HTTP_READ_BYTES;
    if (conn->state != HTTP_CONN_LINGER) {
        if (len >= bound) { /* http_conn_process resumes once it consumed some */
            conn->read_paused = true;
            event_del(conn->read_event);
            return;
        }
        if (want > bound - len)
            want = bound - len;
    }
    /* Into the server's buffer, then appended: a request's few hundred bytes then take a small chain
     * (malloc's per-thread cache), where reserving 16 KiB in the input would allocate and free a
     * 16 KiB chain per request. */
    ssize_t n = recv(fd, conn->server->read_buf, want, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        /* Like bufferevent at EOF or on an error: stop reading, then the event callback decides. */
        conn->read_eof = true;
        event_del(conn->read_event);
        http_conn_event_cb(conn->bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), conn);
        return;
    }
    /* The bufferevent keeps its input's end frozen except while it reads itself. */
    evbuffer_unfreeze(input, 0);
    int added = evbuffer_add(input, conn->server->read_buf, (size_t)n);
    evbuffer_freeze(input, 0);
    if (added < 0)
        fatal_abort("http_server: no memory for a connection's input");
    http_conn_read_cb(conn->bev, conn);
}

static void http_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_conn_t *conn = arg;
    char message[200];
    switch (conn->state) {
    case HTTP_CONN_HEAD:
        snprintf(message, sizeof(message),
                 "the request headers did not arrive within %lld ms (PROFILED_HTTP_HEADER_TIMEOUT)",
                 (long long)conn->server->config.header_timeout_ms);
        http_conn_fail(conn, 408, message);
        return;
    case HTTP_CONN_BODY:
        snprintf(message, sizeof(message),
                 "no byte of the request body for %lld ms (PROFILED_HTTP_BODY_TIMEOUT)",
                 (long long)conn->server->config.body_timeout_ms);
        http_conn_fail(conn, 408, message);
        return;
    case HTTP_CONN_IDLE:    /* keep-alive wait over: close quietly */
    case HTTP_CONN_WRITING: /* the peer does not read its answer */
    case HTTP_CONN_DRAIN:   /* the unread body stalled: its answer is out already */
    case HTTP_CONN_LINGER:
        http_conn_free(conn);
        return;
    case HTTP_CONN_HANDLING:
        break;
    }
    fatal_abort("http_server: timer fired in impossible state %d", (int)conn->state);
}

static http_conn_t *http_conn_new(http_server_t *server, struct bufferevent *bev, bool refused)
{
    http_conn_t *conn = xcalloc(1, sizeof(*conn), "an HTTP connection");
    conn->server = server;
    conn->bev = bev;
    conn->refused = refused;
    conn->timer = evtimer_new(server->base, http_conn_timer_cb, conn);
    if (!conn->timer) {
        bufferevent_free(bev);
        free(conn);
        return NULL;
    }
    conn->next = server->conns.next;
    conn->prev = &server->conns;
    server->conns.next->prev = conn;
    server->conns.next = conn;
    if (refused)
        server->refused_count++;
    else
        server->count++;
    bufferevent_setcb(bev, http_conn_read_cb, http_conn_write_cb, http_conn_event_cb, conn);
    /* Reading stays on in every state (no epoll_ctl per request); while a request is with the handler
     * the input just accumulates, and a bound stops the reading of a pipelining peer that runs ahead. */
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0) {
        conn->read_event = event_new(server->base, fd, EV_READ | EV_PERSIST, http_conn_socket_read_cb, conn);
        if (!conn->read_event)
            fatal_abort("http_server: cannot create a connection's read event");
    } else {
        bufferevent_setwatermark(bev, EV_READ, 0, http_conn_read_bound(conn));
    }
    conn->state = HTTP_CONN_IDLE;
    return conn;
}

static void http_conn_free(http_conn_t *conn)
{
    http_server_t *server = conn->server;
    if (conn->detach) {
        void (*detach)(void *) = conn->detach;
        conn->detach = NULL;
        detach(conn->held);
    }
    conn->prev->next = conn->next;
    conn->next->prev = conn->prev;
    if (conn->refused)
        server->refused_count--;
    else
        server->count--;
    if (conn->read_event)
        event_free(conn->read_event);
    bufferevent_free(conn->bev);
    event_free(conn->timer);
    buf_free(&conn->head);
    buf_free(&conn->headers);
    buf_free(&conn->body);
    buf_free(&conn->out_headers);
    free(conn);
}

/* ---- accepting ------------------------------------------------------------ */

static void http_server_refuse(http_server_t *server, evutil_socket_t fd)
{
    char message[160];
    snprintf(message, sizeof(message), "too many connections (PROFILED_HTTP_MAX_CONNECTIONS=%zu); retry",
             server->config.max_connections);
    if (server->refused_count >= HTTP_REFUSED_MAX) {
        /* Already answering many refusals: a one-shot answer without lingering. */
        buf_t body = {0};
        http_error_body(&body, 503, message);
        char head[256];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\nRetry-After: 1\r\n\r\n",
                         body.len);
        ssize_t sent = send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent == n)
            sent = send(fd, body.data, body.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)sent;
        buf_free(&body);
        evutil_closesocket(fd);
        if (server->hooks.refused)
            server->hooks.refused(server->arg, 503, message);
        return;
    }
    struct bufferevent *bev = bufferevent_socket_new(server->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    http_conn_t *conn = http_conn_new(server, bev, true);
    if (conn)
        http_conn_fail(conn, 503, message);
}

static void http_server_accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                                  int sa_len, void *arg)
{
    (void)listener;
    (void)sa;
    (void)sa_len;
    http_server_t *server = arg;
    server->backoff_ms = HTTP_BACKOFF_MIN_MS;
    if (server->count >= server->config.max_connections) {
        http_server_refuse(server, fd);
        return;
    }
    struct bufferevent *bev = bufferevent_socket_new(server->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    http_server_adopt(server, bev);
}

static void http_server_accept_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_server_t *server = arg;
    if (server->listener)
        evconnlistener_enable(server->listener);
}

static void http_server_accept_error_cb(struct evconnlistener *listener, void *arg)
{
    http_server_t *server = arg;
    int err = EVUTIL_SOCKET_ERROR();
    bool exhausted = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    server->errors_since_log++;
    int64_t now = clock_mono_us();
    if (now - server->last_log_us >= 1000000) {
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "error", strerror(err));
        log_field_int(&fields, "errors_since_last_line", (int64_t)server->errors_since_log);
        log_field_int(&fields, "connections", (int64_t)server->count);
        if (exhausted)
            log_field_int(&fields, "backoff_ms", server->backoff_ms);
        log_warn(&fields,
                 exhausted ? "accept failed for want of descriptors: pausing accepts" : "accept failed");
        server->last_log_us = now;
        server->errors_since_log = 0;
    }
    if (!exhausted)
        return;
    evconnlistener_disable(listener);
    int64_t ms = server->backoff_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(server->accept_timer, &tv);
    if (server->hooks.accept_paused)
        server->hooks.accept_paused(server->arg, err, ms);
    server->backoff_ms = ms * 2 > HTTP_BACKOFF_MAX_MS ? HTTP_BACKOFF_MAX_MS : ms * 2;
}

/* ---- the server ------------------------------------------------------------ */

http_server_t *http_server_new(struct event_base *base, const http_server_config_t *config,
                               const http_server_hooks_t *hooks, void *arg)
{
    http_server_t *server = xcalloc(1, sizeof(*server), "an HTTP server");
    server->base = base;
    server->config = *config;
    server->hooks = *hooks;
    server->arg = arg;
    server->backoff_ms = HTTP_BACKOFF_MIN_MS;
    server->conns.next = server->conns.prev = &server->conns;
    server->tv_idle = http_common_timeout(base, config->idle_timeout_ms);
    server->tv_header = http_common_timeout(base, config->header_timeout_ms);
    server->tv_body = http_common_timeout(base, config->body_timeout_ms);
    server->tv_linger = http_common_timeout(base, HTTP_LINGER_MS);
    server->accept_timer = evtimer_new(base, http_server_accept_timer_cb, server);
    if (!server->tv_idle || !server->tv_header || !server->tv_body || !server->tv_linger ||
        !server->accept_timer) {
        http_server_free(server);
        return NULL;
    }
    server->settings.on_header_field = http_on_header_field;
    server->settings.on_header_value = http_on_header_value;
    server->settings.on_headers_complete = http_on_headers_complete;
    server->settings.on_body = http_on_body;
    server->settings.on_chunk_header = http_on_chunk_header;
    server->settings.on_message_complete = http_on_message_complete;
    /* http-parser's own bound (80 KiB by default) must not cut below ours; ours is checked first. */
    http_parser_set_max_header_size((uint32_t)config->max_header_bytes + 64);
    return server;
}

void http_server_free(http_server_t *server)
{
    if (!server)
        return;
    http_server_stop_listening(server);
    while (server->conns.next != &server->conns)
        http_conn_free(server->conns.next);
    if (server->accept_timer)
        event_free(server->accept_timer);
    buf_free(&server->scratch);
    free(server);
}

int http_server_listen(http_server_t *server, const struct sockaddr *sa, int sa_len, bool reuse_port,
                       char *errstr, size_t errstr_size)
{
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE;
    if (reuse_port)
        flags |= LEV_OPT_REUSEABLE_PORT;
    server->listener =
        evconnlistener_new_bind(server->base, http_server_accept_cb, server, flags, 1024, sa, sa_len);
    if (!server->listener) {
        snprintf(errstr, errstr_size, "%s", strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(server->listener, http_server_accept_error_cb);
    return 0;
}

int http_server_port(const http_server_t *server)
{
    if (!server->listener)
        return -1;
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);
    if (getsockname(evconnlistener_get_fd(server->listener), (struct sockaddr *)&ss, &ss_len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void http_server_stop_listening(http_server_t *server)
{
    if (server->listener) {
        evconnlistener_free(server->listener);
        server->listener = NULL;
    }
    if (server->accept_timer)
        evtimer_del(server->accept_timer);
}

void http_server_adopt(http_server_t *server, struct bufferevent *bev)
{
    http_conn_t *conn = http_conn_new(server, bev, false);
    if (!conn)
        return;
    http_conn_arm(conn, server->tv_idle);
    if (conn->read_event)
        event_add(conn->read_event, NULL);
    else
        bufferevent_enable(bev, EV_READ);
}

size_t http_server_connections(const http_server_t *server)
{
    return server->count;
}

/* ---- requests -------------------------------------------------------------- */

const char *http_req_header(const http_req_t *req, const char *name)
{
    const http_conn_t *conn = (const http_conn_t *)req;
    const http_header_t *headers = http_conn_headers(conn);
    for (size_t i = 0; i < conn->header_count; i++)
        if (http_name_is(conn, &headers[i], name))
            return (const char *)conn->head.data + headers[i].value;
    return NULL;
}

const char *http_req_header_next(const http_req_t *req, const char *name, size_t *cursor)
{
    const http_conn_t *conn = (const http_conn_t *)req;
    const http_header_t *headers = http_conn_headers(conn);
    for (size_t i = *cursor; i < conn->header_count; i++) {
        if (http_name_is(conn, &headers[i], name)) {
            *cursor = i + 1;
            return (const char *)conn->head.data + headers[i].value;
        }
    }
    *cursor = conn->header_count;
    return NULL;
}

void http_req_add_header(http_req_t *req, const char *name, const char *value)
{
    http_conn_t *conn = (http_conn_t *)req;
    buf_append_str(&conn->out_headers, name);
    buf_append_str(&conn->out_headers, ": ");
    buf_append_str(&conn->out_headers, value);
    buf_append_str(&conn->out_headers, "\r\n");
}

void http_req_close_after(http_req_t *req)
{
    ((http_conn_t *)req)->close_after = true;
}

void http_req_respond(http_req_t *req, int status, const char *content_type, const void *body,
                      size_t body_len)
{
    http_conn_t *conn = (http_conn_t *)req;
    if (conn->state != HTTP_CONN_HANDLING && !(conn->state == HTTP_CONN_HEAD && conn->in_head_hook)) {
        fatal_abort("http_server: answer to a request in state %d", (int)conn->state);
    }
    http_conn_write_answer(conn, status, content_type, body, body_len);
}

void http_req_respond_parts(http_req_t *req, int status, const char *content_type, const struct iovec *parts,
                            int part_count)
{
    http_conn_t *conn = (http_conn_t *)req;
    if (conn->state != HTTP_CONN_HANDLING || part_count < 0 || part_count > HTTP_BODY_PARTS_MAX) {
        fatal_abort("http_server: answer to a request in state %d with %d parts", (int)conn->state,
                    part_count);
    }
    http_conn_write_answer_parts(conn, status, content_type, parts, part_count);
}

void http_req_hold(http_req_t *req, void (*detach)(void *held), void *held)
{
    http_conn_t *conn = (http_conn_t *)req;
    conn->detach = detach;
    conn->held = held;
}
