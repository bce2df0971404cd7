/*
 * parsers: the measurement behind the choice of request parser (README,
 * "The HTTP layer"): Node's http-parser 2.9 (libhttp-parser-dev) against
 * picohttpparser as Debian ships it inside H2O (libh2o-evloop-dev), on the
 * same request head: nanoseconds per parse, and which malformed heads each
 * accepts on its own (before any check of ours).
 *
 *   cc -O2 -o /tmp/parsers tests/bench/api/parsers.c -lhttp_parser -lh2o-evloop && /tmp/parsers
 *
 * Not built by CMake: libh2o-evloop-dev is not one of the project's dependencies.
 * H2O installs no picohttpparser.h, so the two declarations below are written
 * from picohttpparser's documented API.
 */
#include <http_parser.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version, struct phr_header *headers, size_t *num_headers,
                      size_t last_len);

static const char typical[] =
    "PUT /profiles/bench-12345678 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    "Authorization: Bearer bench-key-12345\r\nContent-Type: application/json\r\n"
    "Idempotency-Key: 0b9c7f4e-1f2a-4c55-9d0e-6f1d2b3a4c5d\r\nContent-Length: 1024\r\n\r\n";

static int count_headers(http_parser *p, const char *at, size_t len)
{
    (void)p;
    (void)at;
    (void)len;
    return 0;
}

static int pause_at_headers(http_parser *p)
{
    http_parser_pause(p, 1);
    return 0;
}

static bool hp_accepts(const char *head, size_t len)
{
    http_parser_settings settings = {.on_header_field = count_headers,
                                     .on_headers_complete = pause_at_headers};
    http_parser parser;
    http_parser_init(&parser, HTTP_REQUEST);
    http_parser_execute(&parser, &settings, head, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&parser);
    return err == HPE_OK || err == HPE_PAUSED;
}

static bool pico_accepts(const char *head, size_t len)
{
    const char *method, *path;
    size_t method_len, path_len, num_headers = 32;
    int minor;
    struct phr_header headers[32];
    return phr_parse_request(head, len, &method, &method_len, &path, &path_len, &minor, headers, &num_headers,
                             0) > 0;
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(void)
{
    enum { N = 2000000 };
    size_t len = sizeof(typical) - 1;
    volatile int sink = 0;
    double t0 = now_ns();
    for (int i = 0; i < N; i++)
        sink += hp_accepts(typical, len);
    double hp = (now_ns() - t0) / N;
    t0 = now_ns();
    for (int i = 0; i < N; i++)
        sink += pico_accepts(typical, len);
    double pico = (now_ns() - t0) / N;
    printf("typical PUT head (%zu bytes): http-parser %.0f ns, picohttpparser %.0f ns (%.2fx)\n", len, hp,
           pico, hp / pico);

    static const struct {
        const char *name;
        const char *head;
        size_t len;
    } bad[] = {
#define BAD(name, text) {name, text, sizeof(text) - 1}
        BAD("bare LF", "GET / HTTP/1.1\nHost: a\n\n"),
        BAD("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
        BAD("NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
        BAD("control byte in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n"),
        BAD("two Content-Length",
            "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
        BAD("Content-Length and chunked",
            "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        BAD("Transfer-Encoding: gzip", "PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
        BAD("space in the target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
        BAD("tab in the target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"),
        BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
        BAD("space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        BAD("missing Host", "GET / HTTP/1.1\r\n\r\n"),
    };
    printf("%-28s %12s %15s\n", "malformed head", "http-parser", "picohttpparser");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        printf("%-28s %12s %15s\n", bad[i].name, hp_accepts(bad[i].head, bad[i].len) ? "accepts" : "refuses",
               pico_accepts(bad[i].head, bad[i].len) ? "accepts" : "refuses");
    return sink == 42;
}
