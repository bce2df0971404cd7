/* Unit tests for common/http: the ops listener over a real loopback socket (its start and stop, and the
 * probes served strictly), the If-None-Match matcher, a header sent on several lines read through
 * http_server over a socketpair, and the error bodies' escaping. Links profiled_http alone. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "http_error.h"
#include "http_etag.h"
#include "http_server.h"
#include "metrics.h"
#include "ops_http.h"

/* Error bodies take the escaper's lossy policy (the same text as wire's json_escape_policies and
 * runtime's log fields). */
START_TEST(http_error_body_escapes_lossy)
{
    static const char text[] = "a\x7f\xff\xc3\xa9\n\"";
    buf_t body = {0};
    http_json_string(&body, text, sizeof(text) - 1);
    buf_terminate(&body);
    ck_assert_str_eq((char *)body.data, "\"a\\u007f\\ufffd\xc3\xa9\\n\\\"\"");
    buf_free(&body);
}
END_TEST

/* A stop right after the start, before the ops thread has entered its loop, must still
 * stop it: a lost wake-up would hang the process at exit (the case times out). */
START_TEST(ops_http_stops_right_after_start)
{
    metrics_t *metrics = metrics_new();
    char errstr[256];
    for (int i = 0; i < 200; i++) {
        ops_http_t *ops = ops_http_start("127.0.0.1", 0, metrics, NULL, NULL, errstr, sizeof(errstr));
        ck_assert_msg(ops != NULL, "ops_http_start: %s", errstr);
        ck_assert_int_gt(ops_http_port(ops), 0);
        ops_http_stop(ops);
    }
    metrics_destroy(metrics);
}
END_TEST

static atomic_bool ops_test_ready;

static bool ops_test_ready_fn(void *arg, char *reason, size_t reason_size)
{
    (void)arg;
    snprintf(reason, reason_size, atomic_load(&ops_test_ready) ? "ok" : "PostgreSQL \"db\" not reachable");
    return atomic_load(&ops_test_ready);
}

/* Sends raw, reads until EOF (5 s at most) into out; true when EOF was seen. */
static bool ops_test_exchange(int port, const char *raw, size_t raw_len, char *out, size_t out_size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(send(fd, raw, raw_len, MSG_NOSIGNAL), (ssize_t)raw_len);
    size_t len = 0;
    bool eof = false;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) <= 0)
            break;
        ssize_t n = recv(fd, out + len, out_size - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            eof = true;
            break;
        }
        len += (size_t)n;
        if (len == out_size - 1)
            break;
    }
    out[len] = '\0';
    close(fd);
    return eof;
}

#define OPS_GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

/* The worker's ops listener is the project's HTTP layer: JSON answers and errors, 405 with Allow,
 * strict framing (what evhttp accepted: bare LF, two Content-Length), HEAD without a body,
 * keep-alive with pipelining. */
START_TEST(ops_http_serves_probes_strictly)
{
    metrics_t *metrics = metrics_new();
    metrics_counter_t *counter = metrics_counter(metrics, "ops_test_total", "a counter", NULL);
    metrics_counter_add(counter, 7);
    char errstr[256], out[16384];
    atomic_store(&ops_test_ready, false);
    ops_http_t *ops =
        ops_http_start("127.0.0.1", 0, metrics, ops_test_ready_fn, NULL, errstr, sizeof(errstr));
    ck_assert_msg(ops != NULL, "ops_http_start: %s", errstr);
    int port = ops_http_port(ops);

    ck_assert(ops_test_exchange(port, OPS_GET("/healthz"), strlen(OPS_GET("/healthz")), out, sizeof(out)));
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(out, "\r\n\r\n{\"status\":\"ok\"}"),
                  "%s", out);
    ck_assert_msg(strstr(out, "Content-Type: application/json\r\n"), "%s", out);

    ck_assert(ops_test_exchange(port, OPS_GET("/readyz"), strlen(OPS_GET("/readyz")), out, sizeof(out)));
    ck_assert_msg(
        strncmp(out, "HTTP/1.1 503 ", 13) == 0 && strstr(out, "Retry-After: 1\r\n") &&
            strstr(out, "{\"message\":\"PostgreSQL \\\"db\\\" not reachable\",\"type\":\"api_error\"}"),
        "%s", out);
    atomic_store(&ops_test_ready, true);
    ck_assert(
        ops_test_exchange(port, OPS_GET("/readyz?x=1"), strlen(OPS_GET("/readyz?x=1")), out, sizeof(out)));
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0 && strstr(out, "{\"status\":\"ready\"}"), "%s", out);

    ck_assert(ops_test_exchange(port, OPS_GET("/metrics"), strlen(OPS_GET("/metrics")), out, sizeof(out)));
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0 && strstr(out, "counter\nops_test_total 7\n") &&
                      strstr(out, "Content-Type: text/plain; version=0.0.4"),
                  "%s", out);

    static const char head[] = "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    ck_assert(ops_test_exchange(port, head, strlen(head), out, sizeof(out)));
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0 && strstr(out, "Content-Length: 15\r\n") &&
                      strstr(out, "\r\n\r\n")[4] == '\0',
                  "%s", out);

    static const char post[] = "POST /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    ck_assert(ops_test_exchange(port, post, strlen(post), out, sizeof(out)));
    ck_assert_msg(strncmp(out, "HTTP/1.1 405 ", 13) == 0 && strstr(out, "Allow: GET, HEAD\r\n") &&
                      strstr(out, "\"type\":\"invalid_request_error\"}"),
                  "%s", out);

    ck_assert(ops_test_exchange(port, OPS_GET("/nope"), strlen(OPS_GET("/nope")), out, sizeof(out)));
    ck_assert_msg(strncmp(out, "HTTP/1.1 404 ", 13) == 0 &&
                      strstr(out, "{\"message\":\"no such resource: GET /nope"),
                  "%s", out);

    /* pipelined on one kept-alive connection, answered in order */
    static const char pipelined[] =
        "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    ck_assert(ops_test_exchange(port, pipelined, strlen(pipelined), out, sizeof(out)));
    const char *second = strstr(out + 1, "HTTP/1.1 200 ");
    ck_assert_msg(second && strstr(second, "{\"status\":\"ready\"}") && strstr(second + 1, "HTTP/1.1 200 "),
                  "%s", out);

    /* framing evhttp accepted */
    static const char bare_lf[] = "GET /healthz HTTP/1.1\nHost: t\n\n";
    ck_assert(ops_test_exchange(port, bare_lf, strlen(bare_lf), out, sizeof(out)));
    ck_assert_msg(strncmp(out, "HTTP/1.1 400 ", 13) == 0 && strstr(out, "bare LF") &&
                      strstr(out, "Connection: close\r\n"),
                  "%s", out);
    static const char two_cl[] =
        "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
    ck_assert(ops_test_exchange(port, two_cl, strlen(two_cl), out, sizeof(out)));
    ck_assert_msg(strncmp(out, "HTTP/1.1 400 ", 13) == 0 && strstr(out, "more than one Content-Length"), "%s",
                  out);
    static const char http2[] = "GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n";
    ck_assert(ops_test_exchange(port, http2, strlen(http2), out, sizeof(out)));
    ck_assert_msg(strncmp(out, "HTTP/1.1 400 ", 13) == 0 &&
                      strstr(out, "\"type\":\"invalid_request_error\"}"),
                  "%s", out);

    ops_http_stop(ops);
    metrics_destroy(metrics);
}
END_TEST

/* If-None-Match, RFC 9110 13.1.2: "*", lists with OWS and empty elements, weak comparison; a garbled
 * field is ignored (no match) rather than risking a wrong 304. */
START_TEST(http_etag_matches_if_none_match)
{
    static const char etag[] = "\"3.7.ab\"";
    static const struct {
        const char *field;
        bool match;
    } cases[] = {
        {"\"3.7.ab\"", true},
        {"W/\"3.7.ab\"", true},
        {"*", true},
        {"  *\t", true},
        {"\"x\", \"3.7.ab\"", true},
        {"\"x\",W/\"3.7.ab\" , \"y\"", true},
        {", ,\"3.7.ab\",", true},
        {"\"3.7.a\"", false},
        {"\"3.7.abc\"", false},
        {"3.7.ab", false},           /* not quoted */
        {"w/\"3.7.ab\"", false},     /* W/ is case-sensitive */
        {"\"3.7.ab\" \"x\"", false}, /* two tags without a comma: invalid, ignored */
        {"\"3.7.ab\", *", false},    /* "*" is only valid alone */
        {"\"3.7.ab\", junk", false}, /* garbage after a match */
        {"\"3.7.ab", false},         /* unterminated */
        {"\"3.7 .ab\"", false},      /* space is not etagc */
        {"", false},
        {",", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(http_etag_matches(cases[i].field, strlen(cases[i].field), etag, sizeof(etag) - 1) ==
                          cases[i].match,
                      "If-None-Match: %s", cases[i].field);
    /* our side weak too; the field is not read past its length */
    ck_assert(http_etag_matches("\"3.7.ab\"", 8, "W/\"3.7.ab\"", 10));
    ck_assert(!http_etag_matches("\"3.7.ab\"XYZ", 7, etag, sizeof(etag) - 1));
}
END_TEST

/* The handler answers with every If-None-Match line it reads through http_req_header_next, joined by
 * '|', then what http_req_header gives ('first=...'). */
static void header_lines_request_cb(void *arg, http_req_t *req)
{
    (void)arg;
    char body[256] = "";
    size_t cursor = 0, used = 0;
    const char *value;
    while ((value = http_req_header_next(req, "If-None-Match", &cursor)) != NULL)
        used += (size_t)snprintf(body + used, sizeof(body) - used, "%s|", value);
    const char *first = http_req_header(req, "if-none-match");
    used += (size_t)snprintf(body + used, sizeof(body) - used, "first=%s", first ? first : "(none)");
    http_req_respond(req, 200, "text/plain", body, used);
}

static bool header_lines_head_cb(void *arg, http_req_t *req)
{
    (void)arg;
    (void)req;
    return true;
}

/* One request through the layer over a socketpair; the answer's body into body. */
static void header_lines_exchange(const char *request, char *body, size_t body_size)
{
    struct event_base *base = event_base_new();
    http_server_config_t config = {.max_connections = 2,
                                   .max_header_bytes = 4096,
                                   .max_body_bytes = 1024,
                                   .header_timeout_ms = 5000,
                                   .body_timeout_ms = 5000,
                                   .idle_timeout_ms = 5000};
    http_server_hooks_t hooks = {.head = header_lines_head_cb, .request = header_lines_request_cb};
    http_server_t *server = http_server_new(base, &config, &hooks, NULL);
    ck_assert_ptr_nonnull(server);
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    http_server_adopt(server, bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE));
    ck_assert_int_eq(write(fds[1], request, strlen(request)), (ssize_t)strlen(request));

    char answer[4096];
    size_t answer_len = 0;
    answer[0] = '\0';
    for (int round = 0; round < 2000 && !strstr(answer, "first="); round++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        ssize_t n = read(fds[1], answer + answer_len, sizeof(answer) - 1 - answer_len);
        if (n > 0) {
            answer_len += (size_t)n;
            answer[answer_len] = '\0';
        } else {
            usleep(1000);
        }
    }
    ck_assert_msg(strncmp(answer, "HTTP/1.1 200", 12) == 0, "answer: %s", answer);
    const char *start = strstr(answer, "\r\n\r\n");
    ck_assert_ptr_nonnull(start);
    snprintf(body, body_size, "%s", start + 4);
    close(fds[1]);
    http_server_free(server);
    event_base_free(base);
}

START_TEST(http_header_on_several_lines)
{
    char body[256];
    /* Three lines, in order, whatever the name's case, with another header between them. */
    header_lines_exchange(
        "GET /x HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"a\"\r\nAccept: */*\r\n"
        "if-none-match: \"b\", \"c\"\r\nIF-NONE-MATCH: W/\"d\"\r\nConnection: close\r\n\r\n",
        body, sizeof(body));
    ck_assert_str_eq(body, "\"a\"|\"b\", \"c\"|W/\"d\"|first=\"a\"");
    /* One line. */
    header_lines_exchange("GET /x HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\nConnection: close\r\n\r\n", body,
                          sizeof(body));
    ck_assert_str_eq(body, "*|first=*");
    /* None: the cursor gives nothing at once. */
    header_lines_exchange("GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", body, sizeof(body));
    ck_assert_str_eq(body, "first=(none)");
}
END_TEST

/* A request held by its handler until the test answers it (held_req), as the api holds a GET. */
static http_req_t *held_req;
static int held_count;

static void held_request_cb(void *arg, http_req_t *req)
{
    (void)arg;
    ck_assert_ptr_null(held_req);
    held_req = req;
    held_count++;
}

/* A peer that pipelines far more than the layer buffers (the head bound plus 4 KiB) while each request
 * is held: the layer stops reading at the bound and reads on as answers go out, so every request is
 * answered, in order, and the last one's Connection: close ends it. The test answers a request only
 * after two more loop passes, in which the layer's read callback finds the input at its bound. */
START_TEST(http_pipelined_beyond_the_read_bound)
{
    enum { COUNT = 400, HEAD_BYTES = 1024 };
    struct event_base *base = event_base_new();
    http_server_config_t config = {.max_connections = 2,
                                   .max_header_bytes = HEAD_BYTES,
                                   .max_body_bytes = 1024,
                                   .header_timeout_ms = 5000,
                                   .body_timeout_ms = 5000,
                                   .idle_timeout_ms = 5000};
    http_server_hooks_t hooks = {.head = header_lines_head_cb, .request = held_request_cb};
    http_server_t *server = http_server_new(base, &config, &hooks, NULL);
    ck_assert_ptr_nonnull(server);
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    http_server_adopt(server, bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE));

    static const char one[] = "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char last[] = "GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    static char raw[COUNT * sizeof(one) + sizeof(last)];
    size_t raw_len = 0;
    for (int i = 0; i < COUNT - 1; i++, raw_len += sizeof(one) - 1)
        memcpy(raw + raw_len, one, sizeof(one) - 1);
    memcpy(raw + raw_len, last, sizeof(last) - 1);
    raw_len += sizeof(last) - 1;
    ck_assert_uint_gt(raw_len, 2 * (HEAD_BYTES + 4096));
    ck_assert_int_eq(write(fds[1], raw, raw_len), (ssize_t)raw_len);

    static char answer[COUNT * 256];
    size_t answer_len = 0;
    held_req = NULL;
    held_count = 0;
    bool eof = false;
    int passes_held = 0;
    /* Bounded: at most ~4 passes a request; a layer that never reads again stops answering. */
    for (int round = 0; round < COUNT * 50 && !eof; round++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (held_req && ++passes_held > 2) {
            http_req_t *req = held_req;
            held_req = NULL;
            passes_held = 0;
            char body[32];
            int len = snprintf(body, sizeof(body), "%d", held_count);
            http_req_respond(req, 200, "text/plain", body, (size_t)len);
        }
        ssize_t n = read(fds[1], answer + answer_len, sizeof(answer) - 1 - answer_len);
        if (n > 0)
            answer_len += (size_t)n;
        else if (n == 0)
            eof = true;
    }
    answer[answer_len] = '\0';
    ck_assert_msg(eof, "no EOF after %d requests held, %zu bytes answered", held_count, answer_len);
    int answers = 0;
    for (const char *at = answer; (at = strstr(at, "HTTP/1.1 200 OK\r\n")) != NULL; at++)
        answers++;
    ck_assert_int_eq(answers, COUNT);
    char expect[32];
    snprintf(expect, sizeof(expect), "\r\n\r\n%d", COUNT);
    ck_assert_msg(answer_len > strlen(expect) && strcmp(answer + answer_len - strlen(expect), expect) == 0,
                  "the last answer is not the last request's");
    close(fds[1]);
    http_server_free(server);
    event_base_free(base);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("http");
    TCase *tcase = tcase_create("http");
    tcase_set_timeout(tcase, 20);
    tcase_add_test(tcase, http_error_body_escapes_lossy);
    tcase_add_test(tcase, ops_http_stops_right_after_start);
    tcase_add_test(tcase, http_etag_matches_if_none_match);
    tcase_add_test(tcase, ops_http_serves_probes_strictly);
    tcase_add_test(tcase, http_header_on_several_lines);
    tcase_add_test(tcase, http_pipelined_beyond_the_read_bound);
    suite_add_tcase(suite, tcase);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
