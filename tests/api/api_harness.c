#include "api_harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_env.h"

static const char *harness_binary;

void harness_set_binary(const char *path)
{
    harness_binary = path;
}

static int64_t harness_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

void harness_api_dump_log(const harness_api_t *api)
{
    FILE *log = fopen(api->log_path, "r");
    if (!log)
        return;
    char line[4096];
    fprintf(stderr, "---- profiled-api log (%s) ----\n", api->log_path);
    while (fgets(line, sizeof(line), log))
        fputs(line, stderr);
    fclose(log);
}

/* true when the api's log says its port was taken (by another process between
 * harness_free_port and the api's bind). */
static bool harness_port_taken(const harness_api_t *api)
{
    FILE *log = fopen(api->log_path, "r");
    if (!log)
        return false;
    char line[4096];
    bool taken = false;
    while (!taken && fgets(line, sizeof(line), log))
        taken = strstr(line, "Address already in use") != NULL;
    fclose(log);
    return taken;
}

/* Starts the api once; false when it exited because its port was taken. */
static bool harness_api_spawn_once(harness_api_t *api, const char *const *overrides, const char *probe)
{
    ck_assert_msg(harness_binary != NULL, "harness_set_binary was not called");
    /* The stack's environment is required, not optional. */
    test_env_require("PROFILED_KAFKA_BROKERS");
    test_env_require("PROFILED_PG_DSN");
    test_env_require("PROFILED_KAFKA_TOPIC");
    api->port = harness_free_port();
    snprintf(api->log_path, sizeof(api->log_path), "/tmp/profiled-api-test-%ld-%d.log", (long)getpid(),
             api->port);
    api->pid = fork();
    ck_assert_int_ge(api->pid, 0);
    if (api->pid == 0) {
        /* Dies with the test process, so a failed assertion leaves no api behind. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char port[16];
        snprintf(port, sizeof(port), "%d", api->port);
        setenv("PROFILED_HTTP_PORT", port, 1);
        setenv("PROFILED_HTTP_ADDR", "127.0.0.1", 1);
        setenv("PROFILED_API_KEYS", HARNESS_API_KEY, 1);
        unsetenv("PROFILED_API_KEYS_FILE");
        /* No worker consumes these tests' shared topic: they test the publish path, so a PUT is
         * answered at Kafka's ack unless a test asks for applied mode (api_applied_test). */
        setenv("PROFILED_PUT_ACK", "kafka", 1);
        for (const char *const *o = overrides; o && *o; o++) {
            char *copy = strdup(*o);
            char *eq = strchr(copy, '=');
            *eq = '\0';
            setenv(copy, eq + 1, 1);
        }
        FILE *log = freopen(api->log_path, "w", stderr);
        (void)log;
        execl(harness_binary, harness_binary, (char *)NULL);
        _exit(127);
    }
    int64_t until = harness_now_ms() + 30000;
    harness_client_t client;
    harness_client_init(&client, api->port);
    for (;;) {
        harness_response_t response = {0};
        int rc = harness_request(&client, "GET", probe, NULL, NULL, 0, &response);
        int status = response.status;
        harness_response_free(&response);
        if (rc == 0 && status == 200)
            break;
        harness_client_close(&client);
        int wstatus;
        if (waitpid(api->pid, &wstatus, WNOHANG) == api->pid) {
            api->pid = 0;
            if (harness_port_taken(api))
                return false;
            harness_api_dump_log(api);
            ck_abort_msg("profiled-api exited during start-up (status %d)", WEXITSTATUS(wstatus));
        }
        if (harness_now_ms() > until) {
            harness_api_dump_log(api);
            harness_api_stop(api, SIGKILL, 5000);
            ck_abort_msg("profiled-api not ready within 30 s (last %s: %d)", probe, status);
        }
        usleep(100 * 1000);
    }
    harness_client_close(&client);
    return true;
}

static void harness_api_spawn(harness_api_t *api, const char *const *overrides, const char *probe)
{
    /* The port is free when picked, not necessarily when the api binds it: another
     * process (another checkout's tests) may take it meanwhile. Then a new one is picked. */
    for (int attempt = 0;; attempt++) {
        if (harness_api_spawn_once(api, overrides, probe))
            return;
        ck_assert_msg(attempt < 4, "profiled-api found its port taken 5 times");
        fprintf(stderr, "profiled-api: port %d was taken meanwhile; trying another\n", api->port);
    }
}

void harness_api_start(harness_api_t *api, const char *const *overrides)
{
    harness_api_spawn(api, overrides, "/readyz");
}

void harness_api_start_live(harness_api_t *api, const char *const *overrides)
{
    harness_api_spawn(api, overrides, "/healthz");
}

int harness_api_stop(harness_api_t *api, int sig, int timeout_ms)
{
    if (api->pid <= 0)
        return -1;
    kill(api->pid, sig);
    int64_t until = harness_now_ms() + timeout_ms;
    for (;;) {
        int wstatus;
        pid_t got = waitpid(api->pid, &wstatus, WNOHANG);
        if (got == api->pid) {
            api->pid = 0;
            if (WIFEXITED(wstatus))
                return WEXITSTATUS(wstatus);
            return 128 + WTERMSIG(wstatus);
        }
        if (harness_now_ms() > until) {
            kill(api->pid, SIGKILL);
            waitpid(api->pid, &wstatus, 0);
            api->pid = 0;
            return -1;
        }
        usleep(20 * 1000);
    }
}

void harness_client_init(harness_client_t *client, int port)
{
    client->fd = -1;
    client->port = port;
}

void harness_client_close(harness_client_t *client)
{
    if (client->fd >= 0)
        close(client->fd);
    client->fd = -1;
}

static int harness_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval timeout = {.tv_sec = 15};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int harness_write_all(int fd, const void *bytes, size_t len)
{
    const char *p = bytes;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads one response (Content-Length framed, or to EOF without one; none after HEAD, 204 or 304). */
static int harness_read_response(int fd, harness_response_t *response, bool *closed, bool head)
{
    char buffer[16384];
    size_t have = 0;
    char *end = NULL;
    *closed = false;
    while (!end) {
        if (have == sizeof(buffer) - 1)
            return -1;
        ssize_t n = recv(fd, buffer + have, sizeof(buffer) - 1 - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        have += (size_t)n;
        buffer[have] = '\0';
        end = strstr(buffer, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - buffer) + 4;
    if (sscanf(buffer, "HTTP/1.%*d %d", &response->status) != 1)
        return -1;
    char *first_eol = strstr(buffer, "\r\n");
    size_t headers_len = head_len - (size_t)(first_eol + 2 - buffer) - 2;
    if (headers_len >= sizeof(response->headers))
        headers_len = sizeof(response->headers) - 1;
    memcpy(response->headers, first_eol + 2, headers_len);
    response->headers[headers_len] = '\0';

    char value[64];
    long content_length = -1;
    if (harness_header(response, "Content-Length", value, sizeof(value)))
        content_length = atol(value);
    if (head || response->status == 204 || response->status == 304)
        content_length = 0;
    if (harness_header(response, "Connection", value, sizeof(value)) && strcasecmp(value, "close") == 0)
        *closed = true;
    buf_reset(&response->body);
    buf_append(&response->body, buffer + head_len, have - head_len);
    while (content_length < 0 || response->body.len < (size_t)content_length) {
        ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 && content_length < 0) {
            *closed = true;
            break;
        }
        if (n <= 0)
            return -1;
        buf_append(&response->body, buffer, (size_t)n);
    }
    buf_terminate(&response->body);
    return 0;
}

int harness_request(harness_client_t *client, const char *method, const char *path, const char *headers,
                    const void *body, size_t body_len, harness_response_t *response)
{
    if (client->fd < 0)
        client->fd = harness_connect(client->port);
    if (client->fd < 0)
        return -1;
    buf_t request = {0};
    buf_appendf(&request, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", method, path, client->port);
    if (headers)
        buf_append_str(&request, headers);
    if (body)
        buf_appendf(&request, "Content-Length: %zu\r\n", body_len);
    buf_append_str(&request, "\r\n");
    if (body)
        buf_append(&request, body, body_len);
    int rc = harness_write_all(client->fd, request.data, request.len);
    buf_free(&request);
    bool closed = false;
    if (rc == 0)
        rc = harness_read_response(client->fd, response, &closed, strcmp(method, "HEAD") == 0);
    if (rc < 0 || closed)
        harness_client_close(client);
    return rc;
}

int harness_raw(int port, const void *raw, size_t raw_len, harness_response_t *response)
{
    int fd = harness_connect(port);
    if (fd < 0)
        return -1;
    bool closed;
    int rc = harness_write_all(fd, raw, raw_len);
    if (rc == 0)
        rc = harness_read_response(fd, response, &closed, raw_len >= 5 && memcmp(raw, "HEAD ", 5) == 0);
    close(fd);
    return rc;
}

void harness_response_free(harness_response_t *response)
{
    buf_free(&response->body);
}

bool harness_header(const harness_response_t *response, const char *name, char *out, size_t out_size)
{
    size_t name_len = strlen(name);
    const char *line = response->headers;
    while (*line) {
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            eol = line + strlen(line);
        if ((size_t)(eol - line) > name_len && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            const char *value = line + name_len + 1;
            while (*value == ' ')
                value++;
            size_t len = (size_t)(eol - value);
            if (len >= out_size)
                len = out_size - 1;
            memcpy(out, value, len);
            out[len] = '\0';
            return true;
        }
        line = *eol ? eol + 2 : eol;
    }
    return false;
}

void harness_kafka_fetch(const char *topic, int32_t partition, int64_t offset, buf_t *payload, buf_t *key)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", test_env_require("PROFILED_KAFKA_BROKERS"), errstr,
                                sizeof(errstr)) == RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "group.id", "profiled-api-test-fetch", errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    ck_assert_msg(rk != NULL, "consumer: %s", errstr);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = offset;
    ck_assert_int_eq(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    int64_t until = harness_now_ms() + 20000;
    bool found = false;
    while (!found && harness_now_ms() < until) {
        rd_kafka_message_t *message = rd_kafka_consumer_poll(rk, 500);
        if (!message)
            continue;
        if (!message->err && message->partition == partition && message->offset == offset) {
            buf_reset(payload);
            buf_append(payload, message->payload, message->len);
            buf_reset(key);
            buf_append(key, message->key, message->key_len);
            found = true;
        }
        rd_kafka_message_destroy(message);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    ck_assert_msg(found, "no message at %s/%d/%lld within 20 s", topic, partition, (long long)offset);
}

int32_t harness_kafka_partition_count(const char *topic)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", test_env_require("PROFILED_KAFKA_BROKERS"), errstr,
                                sizeof(errstr)) == RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_msg(rk != NULL, "%s", errstr);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *metadata = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &metadata, 10000);
    ck_assert_msg(err == RD_KAFKA_RESP_ERR_NO_ERROR, "metadata of %s: %s", topic, rd_kafka_err2str(err));
    ck_assert_int_eq(metadata->topic_cnt, 1);
    int32_t count = metadata->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(metadata);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    ck_assert_int_gt(count, 0);
    return count;
}

void harness_sh(const char *command)
{
    int status = system(command);
    ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "`%s` failed (status %d)",
                  command, status);
}

double harness_metric(int port, const char *name)
{
    harness_response_t response = {0};
    double value = -1;
    static const char get[] = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    if (harness_raw(port, get, strlen(get), &response) == 0 && response.status == 200) {
        size_t len = strlen(name);
        for (const char *line = (const char *)response.body.data; line && *line;
             line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            if (strncmp(line, name, len) == 0 && line[len] == ' ') {
                value = atof(line + len + 1);
                break;
            }
        }
    }
    harness_response_free(&response);
    return value;
}

void harness_wait_metric(int port, const char *name, double min, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    double value;
    while ((value = harness_metric(port, name)) < min) {
        ck_assert_msg(harness_now_ms() < until, "%s stayed %g (want >= %g) for %d ms", name, value, min,
                      timeout_ms);
        usleep(50 * 1000);
    }
}

void harness_wait_log(const harness_api_t *api, const char *needle, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    for (;;) {
        FILE *log = fopen(api->log_path, "r");
        char line[4096];
        bool found = false;
        while (log && !found && fgets(line, sizeof(line), log))
            found = strstr(line, needle) != NULL;
        if (log)
            fclose(log);
        if (found)
            return;
        ck_assert_msg(harness_now_ms() < until, "no log line with \"%s\" within %d ms", needle, timeout_ms);
        usleep(50 * 1000);
    }
}
