/* Unit tests for the small shared modules: utf8, buf, cfg, log fields and rate limit, metrics, and the
 * ops listener over a real loopback socket. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "http_error.h"
#include "http_etag.h"
#include "json_write.h"
#include "log.h"
#include "log_limit.h"
#include "metrics.h"
#include "ops_http.h"
#include "utf8.h"
#include "xalloc.h"

static bool valid(const char *bytes, size_t len, bool *has_nul)
{
    return utf8_valid((const uint8_t *)bytes, len, has_nul);
}

START_TEST(utf8_accepts_and_rejects)
{
    bool nul = true;
    ck_assert(valid("plain ascii text, long enough for the fast path", 47, &nul));
    ck_assert(!nul);
    ck_assert(valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, NULL)); /* é € 😀 */
    ck_assert(valid("ab\0cdefghijkl", 13, &nul));
    ck_assert(nul);
    ck_assert(valid("a\0", 2, &nul));
    ck_assert(nul);
    ck_assert(!valid("\xc0\xaf", 2, NULL));                    /* overlong '/' */
    ck_assert(!valid("\xe0\x80\xaf", 3, NULL));                /* overlong 3-byte */
    ck_assert(!valid("\xed\xa0\x80", 3, NULL));                /* surrogate U+D800 */
    ck_assert(!valid("\xf4\x90\x80\x80", 4, NULL));            /* above U+10FFFF */
    ck_assert(!valid("\xe2\x82", 2, NULL));                    /* truncated */
    ck_assert(!valid("\x80", 1, NULL));                        /* lone continuation */
    ck_assert(!valid("12345678\xff", 9, NULL));                /* after the fast path */
    ck_assert(valid("\xef\xbf\xbf\xf4\x8f\xbf\xbf", 7, NULL)); /* U+FFFF, U+10FFFF */
}
END_TEST

START_TEST(buf_grows_and_formats)
{
    buf_t buf = {0};
    for (int i = 0; i < 1000; i++)
        buf_append_byte(&buf, (uint8_t)('a' + i % 26));
    ck_assert_uint_eq(buf.len, 1000);
    ck_assert_int_eq(buf.data[999], 'a' + 999 % 26);
    buf_reset(&buf);
    char big[600];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_appendf(&buf, "%d-%s", 42, big);
    ck_assert_uint_eq(buf.len, 3 + sizeof(big) - 1);
    buf_terminate(&buf);
    ck_assert(strncmp((char *)buf.data, "42-xxx", 6) == 0);
    buf_free(&buf);
    ck_assert_ptr_null(buf.data);
}
END_TEST

typedef struct test_config {
    char *name;
    int64_t port;
    bool enabled;
    int64_t timeout_ms;
    int64_t body_bytes;
    char *secret;
} test_config_t;

static const cfg_entry_t test_table[] = {
    {"PROFILED_TEST_NAME", CFG_STRING, offsetof(test_config_t, name), "alpha", 0, 0, false, "a name"},
    {"PROFILED_TEST_PORT", CFG_INT, offsetof(test_config_t, port), "8080", 1, 65535, false, "a port"},
    {"PROFILED_TEST_ENABLED", CFG_BOOL, offsetof(test_config_t, enabled), "false", 0, 0, false, "a flag"},
    {"PROFILED_TEST_TIMEOUT", CFG_DURATION, offsetof(test_config_t, timeout_ms), "10s", 1, 3600000, false,
     "a wait"},
    {"PROFILED_TEST_BODY", CFG_SIZE, offsetof(test_config_t, body_bytes), "256KiB", 1, 1 << 30, false,
     "a size"},
    {"PROFILED_TEST_SECRET", CFG_STRING, offsetof(test_config_t, secret), NULL, 0, 0, true, "a secret"},
};

START_TEST(cfg_defaults_environment_and_errors)
{
    test_config_t config = {0};
    char errstr[256];
    unsetenv("PROFILED_TEST_PORT");
    setenv("PROFILED_TEST_ENABLED", "yes", 1);
    setenv("PROFILED_TEST_TIMEOUT", "250ms", 1);
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), 0);
    ck_assert_str_eq(config.name, "alpha");
    ck_assert_int_eq(config.port, 8080);
    ck_assert(config.enabled);
    ck_assert_int_eq(config.timeout_ms, 250);
    ck_assert_int_eq(config.body_bytes, 256 * 1024);
    ck_assert_str_eq(config.secret, "");

    setenv("PROFILED_TEST_PORT", "70000", 1);
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), -1);
    ck_assert_msg(strstr(errstr, "PROFILED_TEST_PORT=70000") && strstr(errstr, "between 1 and 65535"), "%s",
                  errstr);
    setenv("PROFILED_TEST_PORT", "80x", 1);
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), -1);
    ck_assert_msg(strstr(errstr, "expected an integer"), "%s", errstr);
    unsetenv("PROFILED_TEST_PORT");

    setenv("PROFILED_TEST_SECRET", "hunter2", 1);
    setenv("PROFILED_TEST_BODY", "lots", 1);
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), -1);
    ck_assert_msg(strstr(errstr, "PROFILED_TEST_BODY=lots"), "%s", errstr);
    unsetenv("PROFILED_TEST_BODY");
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), 0);
    ck_assert_str_eq(config.secret, "hunter2");

    /* A secret's value never appears in an error. */
    const cfg_entry_t secret_int = {
        "PROFILED_TEST_SECRET_INT", CFG_INT, offsetof(test_config_t, port), NULL, 1, 2, true, ""};
    ck_assert_int_eq(cfg_parse_value(&secret_int, "hunter2", &config, errstr, sizeof(errstr)), -1);
    ck_assert_msg(!strstr(errstr, "hunter2"), "%s", errstr);

    ck_assert_int_eq(cfg_parse_value(&test_table[3], "2m", &config, errstr, sizeof(errstr)), 0);
    ck_assert_int_eq(config.timeout_ms, 120000);
    ck_assert_int_eq(cfg_parse_value(&test_table[3], "2d", &config, errstr, sizeof(errstr)), -1);
    ck_assert_int_eq(cfg_parse_value(&test_table[2], "maybe", &config, errstr, sizeof(errstr)), -1);
    cfg_free(test_table, CFG_ENTRY_COUNT(test_table), &config);
    ck_assert_ptr_null(config.name);
    unsetenv("PROFILED_TEST_ENABLED");
    unsetenv("PROFILED_TEST_TIMEOUT");
    unsetenv("PROFILED_TEST_SECRET");
}
END_TEST

START_TEST(log_fields_escape_and_bound)
{
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "id", "a\"b\\c\n");
    log_field_int(&fields, "offset", -42);
    ck_assert_str_eq(fields.text, ",\"id\":\"a\\\"b\\\\c\\n\",\"offset\":-42");
    log_fields_t full = LOG_FIELDS_INIT;
    char value[200];
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    for (int i = 0; i < 10; i++)
        log_field_str(&full, "k", value);
    /* Never overflows, and cuts at a member boundary. */
    ck_assert_uint_lt(full.len, sizeof(full.text));
    ck_assert_int_eq(full.text[full.len - 1], '"');
    log_level_t level;
    ck_assert_int_eq(log_level_parse("warn", &level), 0);
    ck_assert_int_eq(level, LOG_WARN);
    ck_assert_int_eq(log_level_parse("loud", &level), -1);
}
END_TEST

/* A message that does not fit once escaped (control bytes take six bytes each) is cut,
 * not dropped: the line keeps its start and says it was truncated. */
START_TEST(log_long_escaped_message_is_cut_not_dropped)
{
    char message[1000];
    memcpy(message, "start", 5);
    memset(message + 5, '\x01', sizeof(message) - 6);
    message[sizeof(message) - 1] = '\0';
    FILE *capture = tmpfile();
    ck_assert_ptr_nonnull(capture);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fileno(capture), STDERR_FILENO), 0);
    log_write(LOG_ERROR, NULL, "%s", message);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    char line[8192];
    rewind(capture);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), capture));
    fclose(capture);
    ck_assert_msg(strstr(line, "\"message\":\"start\\u0001") != NULL, "%s", line);
    ck_assert_msg(strstr(line, " [truncated]\"}") != NULL, "%s", line);
    ck_assert_int_eq(line[strlen(line) - 1], '\n');
}
END_TEST

/* One escaper, two policies: data is strict (0x7f kept, bad UTF-8 refused
 * before it gets here); logs and error bodies are lossy, and the same rule in
 * both: each bad byte is U+FFFD, 0x7f is escaped. */
START_TEST(json_escape_policies)
{
    static const char text[] = "a\x7f\xff\xc3\xa9\n\"";
    char out[64];
    size_t n = json_escape(out, text, sizeof(text) - 1, JSON_ESCAPE_LOSSY);
    ck_assert_str_eq((out[n] = '\0', out), "a\\u007f\\ufffd\xc3\xa9\\n\\\"");
    buf_t body = {0};
    http_json_string(&body, text, sizeof(text) - 1);
    buf_terminate(&body);
    ck_assert_str_eq((char *)body.data, "\"a\\u007f\\ufffd\xc3\xa9\\n\\\"\"");
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_strn(&fields, "v", text, sizeof(text) - 1);
    ck_assert_str_eq(fields.text, ",\"v\":\"a\\u007f\\ufffd\xc3\xa9\\n\\\"\"");
    buf_reset(&body);
    json_write_string(&body, "a\x7f\xc3\xa9", 4);
    buf_terminate(&body);
    ck_assert_str_eq((char *)body.data, "\"a\x7f\xc3\xa9\"");
    buf_free(&body);
}
END_TEST

/* Runs fn in a child with stderr on a pipe; returns the child's wait status
 * and what it wrote. */
static int run_child(void (*fn)(void), char *out, size_t out_size)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < out_size && (n = read(fds[0], out + len, out_size - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void child_out_of_memory(void)
{
    log_set_service("profiled-test");
    /* More than any allocator gives (ctest runs this with ASan's allocator_may_return_null=1). */
    void *p = xmalloc(SIZE_MAX / 4, "a test allocation");
    free(p);
}

static void child_broken_invariant(void)
{
    log_set_service("profiled-test");
    fatal_abort("lane %d is busy", 3);
}

/* The one out-of-memory policy: a fatal log line with ts and service, then abort. */
START_TEST(xalloc_out_of_memory_logs_and_aborts)
{
    char out[4096];
    int status = run_child(child_out_of_memory, out, sizeof(out));
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status, out);
    ck_assert_msg(strstr(out, "{\"ts\":\"") != NULL, "%s", out); /* ASan may warn first */
    ck_assert_msg(strstr(out, "\"level\":\"fatal\",\"service\":\"profiled-test\"") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\"message\":\"out of memory: a test allocation (") != NULL, "%s", out);
    status = run_child(child_broken_invariant, out, sizeof(out));
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status, out);
    ck_assert_msg(strstr(out, "\"service\":\"profiled-test\",\"message\":\"lane 3 is busy\"}\n") != NULL,
                  "%s", out);
}
END_TEST

static double gauge_seven(void *arg)
{
    (void)arg;
    return 7;
}

START_TEST(metrics_render_prometheus_text)
{
    metrics_t *metrics = metrics_new();
    metrics_counter_t *ok = metrics_counter(metrics, "req_total", "Requests.", "status=\"200\"");
    metrics_counter_t *bad = metrics_counter(metrics, "req_total", "Requests.", "status=\"400\"");
    ck_assert_ptr_eq(ok, metrics_counter(metrics, "req_total", "Requests.", "status=\"200\""));
    metrics_counter_add(ok, 3);
    metrics_counter_add(bad, 1);
    const double bounds[] = {0.1, 1};
    metrics_histogram_t *latency = metrics_histogram(metrics, "lat_seconds", "Latency.", NULL, bounds, 2);
    metrics_histogram_observe(latency, 0.05);
    metrics_histogram_observe(latency, 0.5);
    metrics_histogram_observe(latency, 5);
    metrics_gauge(metrics, "depth", "Depth.", NULL, gauge_seven, NULL);
    buf_t out = {0};
    metrics_render(metrics, &out);
    buf_terminate(&out);
    const char *text = (const char *)out.data;
    ck_assert_msg(
        strstr(text, "# TYPE req_total counter\nreq_total{status=\"200\"} 3\nreq_total{status=\"400\"} 1\n"),
        "%s", text);
    ck_assert_msg(strstr(text, "lat_seconds_bucket{le=\"0.1\"} 1\nlat_seconds_bucket{le=\"1\"} 2\n"
                               "lat_seconds_bucket{le=\"+Inf\"} 3\nlat_seconds_sum 5.55"),
                  "%s", text);
    ck_assert_msg(strstr(text, "lat_seconds_count 3\n"), "%s", text);
    ck_assert_msg(strstr(text, "# TYPE depth gauge\ndepth 7\n"), "%s", text);
    buf_free(&out);
    metrics_destroy(metrics);
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

/* The bucket: `burst` lines at once, then `per_second`; what is dropped is counted and handed to
 * the next line logged for the same reason; reasons do not share a bucket. */
START_TEST(log_limit_bucket_per_reason)
{
    log_limit_t limit = LOG_LIMIT_INIT(2.0, 3.0);
    uint64_t suppressed = 99;
    int64_t t = 1000000;
    for (int i = 0; i < 3; i++) {
        ck_assert(log_limit_take(&limit, 400, t, &suppressed));
        ck_assert_uint_eq(suppressed, 0);
    }
    for (int i = 0; i < 50; i++)
        ck_assert(!log_limit_take(&limit, 400, t, &suppressed));
    /* another reason has its own burst */
    ck_assert(log_limit_take(&limit, 408, t, &suppressed));
    ck_assert_uint_eq(suppressed, 0);
    /* 0.4 s later: 0.8 token, still dropped; 0.5 s: one line, carrying the 51 dropped */
    ck_assert(!log_limit_take(&limit, 400, t + 400000, &suppressed));
    ck_assert(log_limit_take(&limit, 400, t + 500000, &suppressed));
    ck_assert_uint_eq(suppressed, 51);
    ck_assert(!log_limit_take(&limit, 400, t + 500000, &suppressed));
    /* a long pause refills up to the burst only */
    int allowed = 0;
    for (int i = 0; i < 10; i++)
        allowed += log_limit_take(&limit, 400, t + 3600000000LL, &suppressed);
    ck_assert_int_eq(allowed, 3);
    /* more reasons than buckets share the last one, and stay bounded */
    allowed = 0;
    for (int key = 0; key < 100; key++)
        for (int i = 0; i < 5; i++)
            allowed += log_limit_take(&limit, 1000 + key, t, &suppressed);
    ck_assert_int_le(allowed, 3 * LOG_LIMIT_KEYS);
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

int main(void)
{
    Suite *suite = suite_create("common");
    TCase *tcase = tcase_create("modules");
    tcase_set_timeout(tcase, 20);
    tcase_add_test(tcase, utf8_accepts_and_rejects);
    tcase_add_test(tcase, buf_grows_and_formats);
    tcase_add_test(tcase, cfg_defaults_environment_and_errors);
    tcase_add_test(tcase, log_fields_escape_and_bound);
    tcase_add_test(tcase, log_long_escaped_message_is_cut_not_dropped);
    tcase_add_test(tcase, metrics_render_prometheus_text);
    tcase_add_test(tcase, xalloc_out_of_memory_logs_and_aborts);
    tcase_add_test(tcase, json_escape_policies);
    tcase_add_test(tcase, ops_http_stops_right_after_start);
    tcase_add_test(tcase, log_limit_bucket_per_reason);
    tcase_add_test(tcase, http_etag_matches_if_none_match);
    tcase_add_test(tcase, ops_http_serves_probes_strictly);
    suite_add_tcase(suite, tcase);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
