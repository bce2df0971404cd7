/*
 * api_harness: what the api's integration tests need around the built
 * binary: start it as a child process on a free port with the stack's
 * environment (plus overrides), a small blocking HTTP/1.1 client with
 * keep-alive, and reading a command back from Kafka by its position.
 *
 * Every wait is bounded; helpers fail the running Check test (ck_abort_msg)
 * on set-up errors rather than skipping anything. Blocking calls are fine
 * here: this is the test side, not an event loop.
 */
#ifndef PROFILED_API_HARNESS_H
#define PROFILED_API_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

#define HARNESS_API_KEY "integration-test-key"

typedef struct harness_api {
    pid_t pid;
    int port;
    char log_path[256]; /* the child's stderr */
} harness_api_t;

/* Starts the api (path from argv[1], kept by harness_set_binary) with the stack's environment,
 * PROFILED_API_KEYS=HARNESS_API_KEY, PROFILED_PUT_ACK=kafka, a free port, and `overrides`
 * ("NAME=value", NULL-terminated).
 * Waits up to 30 s for /readyz to answer 200. */
void harness_api_start(harness_api_t *api, const char *const *overrides);
/* Same, waiting for /healthz only (for tests that start the api with the broker down). */
void harness_api_start_live(harness_api_t *api, const char *const *overrides);
/* Sends `sig` and waits up to timeout_ms for the exit; returns the exit status, or -1 on timeout
 * (the child is then killed). */
int harness_api_stop(harness_api_t *api, int sig, int timeout_ms);
void harness_set_binary(const char *path);
/* A TCP port on 127.0.0.1 free at the time of the call. */
int harness_free_port(void);
/* Prints the child's log to stderr (for failures). */
void harness_api_dump_log(const harness_api_t *api);

typedef struct harness_response {
    int status;
    char headers[8192]; /* raw header block, "Name: value\r\n" lines */
    buf_t body;         /* NUL-terminated */
} harness_response_t;

typedef struct harness_client {
    int fd; /* -1 when not connected */
    int port;
} harness_client_t;

void harness_client_init(harness_client_t *client, int port);
void harness_client_close(harness_client_t *client);

/* One request on the client's keep-alive connection (reconnecting when needed). `headers` is
 * extra raw header lines ("Name: value\r\n"...) or NULL. Content-Length is added when body is not
 * NULL. Returns 0 with `response` filled, or -1 on a connection error or a 15 s timeout. */
int harness_request(harness_client_t *client, const char *method, const char *path, const char *headers,
                    const void *body, size_t body_len, harness_response_t *response);
/* Like harness_request on a fresh connection, writing `raw` as the whole request. */
int harness_raw(int port, const void *raw, size_t raw_len, harness_response_t *response);
void harness_response_free(harness_response_t *response);

/* The value of header `name` (case-insensitive) into out; false when absent. */
bool harness_header(const harness_response_t *response, const char *name, char *out, size_t out_size);

/* The message at topic/partition/offset (waits up to 20 s); fills payload and key. */
void harness_kafka_fetch(const char *topic, int32_t partition, int64_t offset, buf_t *payload, buf_t *key);

/* The number of partitions of `topic` (metadata, up to 10 s). */
int32_t harness_kafka_partition_count(const char *topic);

/* The value of the metric sample `name` (exact, without labels) in the api's /metrics, or -1
 * when it cannot be read. */
double harness_metric(int port, const char *name);
/* Waits (up to timeout_ms) until metric `name` is at least `min`; fails the test otherwise. */
void harness_wait_metric(int port, const char *name, double min, int timeout_ms);
/* Waits (up to timeout_ms) until the api's log holds a line containing `needle`; fails the test
 * otherwise. */
void harness_wait_log(const harness_api_t *api, const char *needle, int timeout_ms);

/* Runs a shell command (e.g. "$PROFILED_STACK stop kafka"), failing the test unless it exits 0. */
void harness_sh(const char *command);

#endif
