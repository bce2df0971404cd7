#include "it_common.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "codec.h"
#include "mp.h"
#include "test_env.h"
#include "test_kafka_admin.h"

static int64_t it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void it_run_migrate(it_t *it)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(it->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        setenv("PROFILED_PG_DSN", it->dsn, 1);
        execl(PROFILED_WORKER_BIN, "profiled-worker", "migrate", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        it_show_log(it);
        ck_abort_msg("profiled-worker migrate failed (status %d)", status);
    }
}

/* A fault test that failed half-way (its assertion ends the test before it
 * restarts what it stopped) must not fail the tests after it: each test starts
 * by checking that PostgreSQL and Kafka answer, and starts whichever does not. */
static void it_stack_recover(it_t *it, const char *base_dsn)
{
    PGconn *conn = PQconnectdb(base_dsn);
    bool pg_up = PQstatus(conn) == CONNECTION_OK;
    PQfinish(conn);
    if (!pg_up) {
        fprintf(stderr, "PostgreSQL is down (a previous test?): starting it\n");
        it_stack(it, "start", "postgres");
    }
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", it->brokers, errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_log_cb(conf, NULL);
    rd_kafka_t *probe = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_msg(probe != NULL, "%s", errstr);
    const struct rd_kafka_metadata *metadata = NULL;
    bool kafka_up = rd_kafka_metadata(probe, 0, NULL, &metadata, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (metadata)
        rd_kafka_metadata_destroy(metadata);
    rd_kafka_destroy(probe);
    if (!kafka_up) {
        fprintf(stderr, "Kafka is down (a previous test?): starting it\n");
        it_stack(it, "start", "kafka");
    }
}

void it_setup(it_t *it, const char *name, int partitions)
{
    char errstr[512];
    char unique[80];
    memset(it, 0, sizeof(*it));
    it->brokers = test_env_require("PROFILED_KAFKA_BROKERS");
    const char *base_dsn = test_env_require("PROFILED_PG_DSN");
    it->stack = test_env_require("PROFILED_STACK");
    it->partitions = partitions;
    test_env_unique_name(name, unique, sizeof(unique));
    snprintf(it->topic, sizeof(it->topic), "it.worker.%s", unique);
    snprintf(it->dlq_topic, sizeof(it->dlq_topic), "it.worker.%s.dlq", unique);
    snprintf(it->group, sizeof(it->group), "it-worker-%s", unique);
    snprintf(it->schema, sizeof(it->schema), "it_%s", unique);
    for (char *p = it->schema; *p; p++)
        if (*p == '-' || *p == '.')
            *p = '_';
    snprintf(it->dsn, sizeof(it->dsn), "%s options='-csearch_path=%s'", base_dsn, it->schema);
    snprintf(it->log_path, sizeof(it->log_path), "%s/%s.log",
             getenv("IT_LOG_DIR") ? getenv("IT_LOG_DIR") : ".", unique);
    struct timeval now;
    gettimeofday(&now, NULL);
    it->nonce = ((uint64_t)now.tv_sec << 24) ^ (uint64_t)now.tv_usec ^ ((uint64_t)getpid() << 40);
    it_stack_recover(it, base_dsn);

    /* the schema, through the stack's own DSN */
    PGconn *admin = PQconnectdb(base_dsn);
    if (PQstatus(admin) != CONNECTION_OK)
        ck_abort_msg("PostgreSQL at PROFILED_PG_DSN: %s", PQerrorMessage(admin));
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", it->schema);
    PGresult *res = PQexec(admin, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(admin);

    it->pg = PQconnectdb(it->dsn);
    if (PQstatus(it->pg) != CONNECTION_OK)
        ck_abort_msg("PostgreSQL (test schema): %s", PQerrorMessage(it->pg));

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", it->brokers, errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK);
    /* proto/README.md §8: every producer partitions by murmur2 of the key */
    ck_assert(rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    it->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_msg(it->producer != NULL, "producer: %s", errstr);
    if (test_kafka_create_topic(it->producer, it->topic, partitions, 30000, errstr, sizeof(errstr)) < 0 ||
        test_kafka_create_topic(it->producer, it->dlq_topic, partitions, 30000, errstr, sizeof(errstr)) < 0)
        ck_abort_msg("creating topics: %s", errstr);
    it_run_migrate(it);
}

void it_teardown(it_t *it)
{
    char errstr[512];
    if (it->producer) {
        rd_kafka_flush(it->producer, 5000);
        /* best effort: a leftover topic only costs disk, and its name is never reused */
        if (test_kafka_delete_topic(it->producer, it->topic, 10000, errstr, sizeof(errstr)) < 0 ||
            test_kafka_delete_topic(it->producer, it->dlq_topic, 10000, errstr, sizeof(errstr)) < 0)
            fprintf(stderr, "deleting test topics: %s\n", errstr);
        rd_kafka_destroy(it->producer);
        it->producer = NULL;
    }
    if (it->pg) {
        char sql[256];
        snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", it->schema);
        PQclear(PQexec(it->pg, sql));
        PQfinish(it->pg);
        it->pg = NULL;
    }
}

void it_add_write_counter(it_t *it)
{
    char sql[2048];
    snprintf(sql, sizeof(sql),
             "CREATE TABLE %1$s.write_counts (recipient_id text, command_id bytea, writes int NOT NULL, "
             "PRIMARY KEY (recipient_id, command_id));"
             "CREATE FUNCTION %1$s.count_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "INSERT INTO %1$s.write_counts VALUES (NEW.recipient_id, NEW.command_id, 1) "
             "ON CONFLICT (recipient_id, command_id) DO UPDATE SET writes = %1$s.write_counts.writes + 1; "
             "RETURN NEW; END $$;"
             "CREATE TRIGGER count_writes AFTER INSERT OR UPDATE ON %1$s.profiles "
             "FOR EACH ROW EXECUTE FUNCTION %1$s.count_write();",
             it->schema);
    it_exec(it, sql);
}

pid_t it_worker_start(it_t *it, const char *const *extra)
{
    return it_worker_start_tagged(it, extra, NULL);
}

pid_t it_worker_start_tagged(it_t *it, const char *const *extra, const char *tag)
{
    char log_path[600];
    snprintf(log_path, sizeof(log_path), "%s%s%s", it->log_path, tag ? "." : "", tag ? tag : "");
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        setenv("PROFILED_KAFKA_TOPIC", it->topic, 1);
        setenv("PROFILED_KAFKA_DLQ_TOPIC", it->dlq_topic, 1);
        setenv("PROFILED_PG_DSN", it->dsn, 1);
        setenv("PROFILED_WORKER_GROUP", it->group, 1);
        setenv("PROFILED_OPS_PORT", "0", 1);
        setenv("PROFILED_RETRY_MAX_BACKOFF", "1s", 1);
        setenv("PROFILED_LOG_LEVEL", "info", 1);
        /* a fast group: joins and leaves in a test's time scale */
        setenv("PROFILED_KAFKA_PROPERTIES", "session.timeout.ms=6000,heartbeat.interval.ms=500", 1);
        for (const char *const *e = extra; e && *e; e++) {
            char name[128];
            const char *eq = strchr(*e, '=');
            if (!eq || (size_t)(eq - *e) >= sizeof(name))
                _exit(126);
            memcpy(name, *e, (size_t)(eq - *e));
            name[eq - *e] = '\0';
            setenv(name, eq + 1, 1);
        }
        execl(PROFILED_WORKER_BIN, "profiled-worker", (char *)NULL);
        _exit(127);
    }
    return pid;
}

int64_t it_positions_sum(it_t *it)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(sum(next_offset), 0) FROM kafka_positions WHERE consumer_group = '%s' AND "
             "topic = '%s'",
             it->group, it->topic);
    PGresult *res = PQexec(it->pg, sql);
    int64_t sum = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        sum = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    else
        PQreset(it->pg);
    PQclear(res);
    return sum;
}

bool it_worker_alive(pid_t pid)
{
    int status;
    return waitpid(pid, &status, WNOHANG) == 0;
}

int it_worker_stop(pid_t pid, int timeout_ms)
{
    kill(pid, SIGTERM);
    int64_t until = it_now_ms() + timeout_ms;
    while (it_now_ms() < until) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(20 * 1000);
    }
    it_worker_kill(pid);
    return -1;
}

void it_worker_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
}

void it_command_id(const it_t *it, uint64_t seq, uint8_t id[16])
{
    for (int i = 0; i < 8; i++) {
        id[i] = (uint8_t)(it->nonce >> (56 - 8 * i));
        id[8 + i] = (uint8_t)(seq >> (56 - 8 * i));
    }
}

void it_produce(it_t *it, const char *recipient, uint64_t seq, bool has_version, uint64_t version, size_t pad)
{
    buf_t profile = {0}, value = {0};
    char errstr[256];
    /* canonical: keys in order "pad" < "recipient" < "seq" */
    mp_write_map_header(&profile, pad > 0 ? 3 : 2);
    if (pad > 0) {
        mp_write_str(&profile, "pad", 3);
        char *text = malloc(pad);
        ck_assert(text != NULL);
        for (size_t i = 0; i < pad; i++)
            text[i] = (char)('a' + (seq + i) % 26);
        mp_write_str(&profile, text, (uint32_t)pad);
        free(text);
    }
    mp_write_str(&profile, "recipient", 9);
    mp_write_str(&profile, recipient, (uint32_t)strlen(recipient));
    mp_write_str(&profile, "seq", 3);
    mp_write_uint(&profile, seq);

    codec_command_t command;
    memset(&command, 0, sizeof(command));
    command.schema_version = CODEC_SCHEMA_VERSION;
    it_command_id(it, seq, command.command_id);
    command.recipient_id = recipient;
    command.recipient_id_len = strlen(recipient);
    command.accepted_at_us = 1764355200000000LL + (int64_t)seq;
    command.has_version = has_version;
    command.version = version;
    command.profile_msgpack = profile.data;
    command.profile_msgpack_len = profile.len;
    ck_assert_msg(codec_encode(&command, &value, errstr, sizeof(errstr)) == 0, "codec_encode: %s", errstr);
    it_produce_raw(it, recipient, strlen(recipient), value.data, value.len);
    buf_free(&profile);
    buf_free(&value);
}

void it_produce_kind(it_t *it, const char *recipient, uint64_t seq, codec_op_t op, const uint8_t *body,
                     size_t body_len)
{
    buf_t value = {0};
    char errstr[256];
    codec_command_t command;
    memset(&command, 0, sizeof(command));
    command.schema_version = CODEC_SCHEMA_VERSION;
    command.op = op;
    it_command_id(it, seq, command.command_id);
    command.recipient_id = recipient;
    command.recipient_id_len = strlen(recipient);
    command.accepted_at_us = 1764355200000000LL + (int64_t)seq;
    if (op == CODEC_OP_PATCH) {
        command.patch_msgpack = body;
        command.patch_msgpack_len = body_len;
    } else if (op != CODEC_OP_DELETE) {
        command.profile_msgpack = body;
        command.profile_msgpack_len = body_len;
    }
    ck_assert_msg(codec_encode(&command, &value, errstr, sizeof(errstr)) == 0, "codec_encode: %s", errstr);
    it_produce_raw(it, recipient, strlen(recipient), value.data, value.len);
    buf_free(&value);
}

void it_produce_raw(it_t *it, const void *key, size_t key_len, const void *value, size_t len)
{
    for (int attempt = 0; attempt < 3000; attempt++) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            it->producer, RD_KAFKA_V_TOPIC(it->topic), RD_KAFKA_V_KEY(key, key ? key_len : 0),
            RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_poll(it->producer, 0);
            return;
        }
        ck_assert_msg(err == RD_KAFKA_RESP_ERR__QUEUE_FULL, "produce: %s", rd_kafka_err2str(err));
        rd_kafka_poll(it->producer, 10);
    }
    ck_abort_msg("produce: queue full for 30 s");
}

void it_flush(it_t *it)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(it->producer, 60000);
    ck_assert_msg(err == RD_KAFKA_RESP_ERR_NO_ERROR, "flush: %s (%d still queued)", rd_kafka_err2str(err),
                  rd_kafka_outq_len(it->producer));
}

bool it_wait_caught_up(it_t *it, int timeout_ms)
{
    int64_t until = it_now_ms() + timeout_ms;
    int64_t *high = calloc((size_t)it->partitions, sizeof(*high));
    ck_assert(high != NULL);
    for (int p = 0; p < it->partitions; p++) {
        int64_t low = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(it->producer, it->topic, p, &low, &high[p], 10000);
        ck_assert_msg(err == RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks: %s", rd_kafka_err2str(err));
    }
    bool done = false;
    while (!done && it_now_ms() < until) {
        done = true;
        for (int p = 0; p < it->partitions && done; p++) {
            if (high[p] == 0)
                continue;
            char sql[512];
            snprintf(
                sql, sizeof(sql),
                "SELECT coalesce((SELECT next_offset FROM kafka_positions WHERE consumer_group = '%s' AND "
                "topic = '%s' AND partition = %d), -1)",
                it->group, it->topic, p);
            PGresult *res = PQexec(it->pg, sql);
            if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                /* PostgreSQL restarting under an outage test: reconnect and keep waiting */
                PQclear(res);
                PQreset(it->pg);
                done = false;
                break;
            }
            done = strtoll(PQgetvalue(res, 0, 0), NULL, 10) == high[p];
            PQclear(res);
        }
        if (!done)
            usleep(100 * 1000);
    }
    free(high);
    return done;
}

int64_t it_int(it_t *it, const char *sql)
{
    PGresult *res = PQexec(it->pg, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
                  PQresultErrorMessage(res));
    int64_t v = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

void it_exec(it_t *it, const char *sql)
{
    PGresult *res = PQexec(it->pg, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK,
                  "%.200s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
}

void it_stack(it_t *it, const char *verb, const char *service)
{
    char command[1024];
    snprintf(command, sizeof(command), "'%s' %s %s >> '%s' 2>&1", it->stack, verb, service, it->log_path);
    int rc = system(command);
    ck_assert_msg(rc == 0, "%s %s %s failed (%d)", it->stack, verb, service, rc);
}

void it_show_log(const it_t *it)
{
    char command[1024];
    fprintf(stderr, "---- last lines of %s\n", it->log_path);
    snprintf(command, sizeof(command), "tail -n 40 '%s' >&2", it->log_path);
    if (system(command) != 0)
        fprintf(stderr, "(no log)\n");
}

int it_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

int it_wait_ops_port(const char *log_path, int timeout_ms)
{
    int64_t until = it_now_ms() + timeout_ms;
    for (;;) {
        int port = 0;
        FILE *log = fopen(log_path, "r");
        char line[4096];
        while (log && port == 0 && fgets(line, sizeof(line), log)) {
            const char *at = strstr(line, "\"ops listener up");
            const char *field = at ? strstr(line, "\"port\":") : NULL;
            if (field)
                port = atoi(field + strlen("\"port\":"));
        }
        if (log)
            fclose(log);
        if (port > 0)
            return port;
        ck_assert_msg(it_now_ms() < until, "no \"ops listener up\" line with a port in %s within %d ms",
                      log_path, timeout_ms);
        usleep(100 * 1000);
    }
}

int it_http_get(int port, const char *path, char *body, size_t body_size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval timeout = {.tv_sec = 2, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return -1;
    }
    char request[512];
    int n = snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, request, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    buf_t response = {0};
    char chunk[4096];
    ssize_t got;
    while ((got = read(fd, chunk, sizeof(chunk))) > 0)
        buf_append(&response, chunk, (size_t)got);
    close(fd);
    buf_terminate(&response);
    int status = -1;
    if (response.len > 12 && sscanf((const char *)response.data, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    if (body && body_size) {
        const char *start = response.len ? strstr((const char *)response.data, "\r\n\r\n") : NULL;
        snprintf(body, body_size, "%s", start ? start + 4 : "");
    }
    buf_free(&response);
    return status;
}
