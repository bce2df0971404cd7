/*
 * bench_worker: the helper of tests/bench/worker/run (not a test).
 *
 *   bench_worker produce TOPIC PARTITIONS COUNT PHASE TSV [FORMAT [EDGES]]
 *       creates TOPIC when PHASE is 1, produces COUNT replace commands of about
 *       1 KiB for recipients bench-0 .. bench-(COUNT-1) (murmur2 partitioner,
 *       idempotent, acks=all) and writes the same rows as TSV for the COPY ceiling.
 *       FORMAT msgpack (default) is the api's command; FORMAT connect is the same
 *       profile as Kafka Connect's JSON with schema, for tests/bench/peers: a struct
 *       {recipient_id, profile (string, schema parameter
 *       __debezium.source.column.type=JSONB), command_id (hex)}. EDGES, when given,
 *       receives one line per partition: partition, first key, last key, count.
 *   bench_worker wait-rows TABLE PHASE EDGES START_EPOCH TIMEOUT_S
 *       polls TABLE (recipient_id, profile jsonb) every 5 ms for the first and last
 *       key of each partition carrying PHASE, and prints the seconds since
 *       START_EPOCH (a CLOCK_REALTIME time) of the first key seen and of the moment
 *       all last keys are seen: a consumer that applies each partition in order has
 *       then applied everything. Works for any consumer (the worker, the sink).
 *       With BENCH_CPU_PIDS set ("PID +PID ..."), also prints each process's CPU
 *       seconds at both moments (a + counts the process's children too, living and
 *       reaped: PostgreSQL's postmaster stands for the whole server).
 *   bench_worker cpu PID|+PID...
 *       prints those CPU seconds now, one a line
 *   bench_worker wait GROUP TOPIC TOTAL TIMEOUT_S
 *       polls the group's positions in PostgreSQL every 5 ms and prints the
 *       apply rate from the first committed batch to the last
 *
 * Environment: PROFILED_KAFKA_BROKERS, PROFILED_PG_DSN (search_path set by run).
 */
#include <dirent.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "codec.h"
#include "mp.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_worker: %s: %s\n", what, why);
    exit(1);
}

static const char *require_env(const char *name)
{
    const char *value = getenv(name);
    if (!value || !*value)
        die(name, "not set (eval \"$(deploy/local/stack env)\")");
    return value;
}

static void create_topic(rd_kafka_t *rk, const char *topic, int partitions)
{
    char errstr[512];
    rd_kafka_NewTopic_t *t = rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof(errstr));
    if (!t)
        die("topic", errstr);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &t, 1, NULL, queue);
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, 30000);
    if (!event)
        die("create topic", "no answer in 30 s");
    size_t n = 0;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &n);
    if (rd_kafka_event_error(event))
        die("create topic", rd_kafka_event_error_string(event));
    if (n == 1 && rd_kafka_topic_result_error(results[0]))
        die("create topic", rd_kafka_err2str(rd_kafka_topic_result_error(results[0])));
    rd_kafka_event_destroy(event);
    rd_kafka_queue_destroy(queue);
    rd_kafka_NewTopic_destroy(t);
}

/* First and last command index acknowledged per partition (for EDGES). */
enum { EDGES_MAX = 256 };
typedef struct edges {
    long first[EDGES_MAX], last[EDGES_MAX], count[EDGES_MAX];
} edges_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    edges_t *edges = opaque;
    if (msg->err)
        die("delivery", rd_kafka_err2str(msg->err));
    long i = (long)(intptr_t)msg->_private;
    int p = (int)msg->partition;
    if (p < 0 || p >= EDGES_MAX)
        return;
    if (edges->count[p] == 0 || i < edges->first[p])
        edges->first[p] = i;
    if (edges->count[p] == 0 || i > edges->last[p])
        edges->last[p] = i;
    edges->count[p]++;
}

/* Appends `text` as the body of a JSON string (quotes and backslashes escaped;
 * the generator writes no control characters). */
static void json_escape(buf_t *out, const char *text, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (text[k] == '"' || text[k] == '\\')
            buf_append_byte(out, '\\');
        buf_append_byte(out, (uint8_t)text[k]);
    }
}

static int produce(int argc, char **argv)
{
    if (argc < 7 || argc > 9)
        die("usage", "produce TOPIC PARTITIONS COUNT PHASE TSV [msgpack|connect [EDGES]]");
    const char *topic = argv[2];
    int partitions = atoi(argv[3]);
    long count = atol(argv[4]);
    int phase = atoi(argv[5]);
    FILE *tsv = fopen(argv[6], "w");
    if (!tsv)
        die(argv[6], "cannot write");
    int connect = argc >= 8 && strcmp(argv[7], "connect") == 0;
    if (argc >= 8 && !connect && strcmp(argv[7], "msgpack") != 0)
        die("format", "msgpack or connect");
    const char *edges_path = argc >= 9 ? argv[8] : NULL;
    static edges_t edges;
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, &edges);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", require_env("PROFILED_KAFKA_BROKERS"), errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "linger.ms", "20", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "compression.codec", "lz4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        die("producer", errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk)
        die("producer", errstr);
    if (phase == 1)
        create_topic(rk, topic, partitions);

    char pad[901];
    buf_t profile = {0}, value = {0}, json = {0}, body = {0};
    static const char connect_schema[] =
        "{\"schema\":{\"type\":\"struct\",\"name\":\"profile\",\"optional\":false,\"fields\":["
        "{\"field\":\"recipient_id\",\"type\":\"string\",\"optional\":false},"
        "{\"field\":\"profile\",\"type\":\"string\",\"optional\":false,"
        "\"parameters\":{\"__debezium.source.column.type\":\"JSONB\"}},"
        "{\"field\":\"command_id\",\"type\":\"string\",\"optional\":false}]},\"payload\":";
    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        char recipient[64];
        int rlen = snprintf(recipient, sizeof(recipient), "bench-%ld", i);
        for (int k = 0; k < 900; k++)
            pad[k] = (char)('a' + (i + k * 7 + phase) % 26);
        pad[900] = '\0';
        buf_reset(&profile);
        mp_write_map_header(&profile, 5);
        mp_write_str(&profile, "email", 5);
        char email[96];
        int elen = snprintf(email, sizeof(email), "%s@example.com", recipient);
        mp_write_str(&profile, email, (uint32_t)elen);
        mp_write_str(&profile, "pad", 3);
        mp_write_str(&profile, pad, 900);
        mp_write_str(&profile, "phase", 5);
        mp_write_uint(&profile, (uint64_t)phase);
        mp_write_str(&profile, "recipient", 9);
        mp_write_str(&profile, recipient, (uint32_t)rlen);
        mp_write_str(&profile, "seq", 3);
        mp_write_uint(&profile, (uint64_t)i);

        codec_command_t command;
        memset(&command, 0, sizeof(command));
        command.schema_version = CODEC_SCHEMA_VERSION;
        uint64_t hi = ((uint64_t)time(NULL) << 8) | (uint64_t)phase, lo = (uint64_t)i + 1;
        for (int k = 0; k < 8; k++) {
            command.command_id[k] = (uint8_t)(hi >> (56 - 8 * k));
            command.command_id[8 + k] = (uint8_t)(lo >> (56 - 8 * k));
        }
        char command_hex[33];
        for (int k = 0; k < 16; k++)
            snprintf(command_hex + 2 * k, 3, "%02x", command.command_id[k]);
        /* the same row for the ceiling (and the peer's payload): the profile as JSON */
        buf_reset(&json);
        buf_appendf(
            &json, "{\"email\": \"%s\", \"pad\": \"%s\", \"phase\": %d, \"recipient\": \"%s\", \"seq\": %ld}",
            email, pad, phase, recipient, i);
        buf_reset(&value);
        if (connect) {
            buf_append_str(&value, connect_schema);
            buf_appendf(&value, "{\"recipient_id\":\"%s\",\"profile\":\"", recipient);
            json_escape(&value, (const char *)json.data, json.len);
            buf_appendf(&value, "\",\"command_id\":\"%s\"}}", command_hex);
        } else {
            command.recipient_id = recipient;
            command.recipient_id_len = (size_t)rlen;
            command.accepted_at_us = (int64_t)(time(NULL)) * 1000000;
            command.profile_msgpack = profile.data;
            command.profile_msgpack_len = profile.len;
            /* phase 3 (mixed): 50% replace, 30% merge, 20% patch; each ends with the row above
             * (email and recipient are unchanged since phase 2) */
            if (phase == 3 && i % 10 >= 5) {
                buf_reset(&body);
                if (i % 10 < 8) {
                    command.op = CODEC_OP_MERGE;
                    mp_write_map_header(&body, 3);
                } else {
                    command.op = CODEC_OP_PATCH;
                    mp_write_array_header(&body, 3);
                }
                static const char *const keys[3] = {"pad", "phase", "seq"};
                for (int k = 0; k < 3; k++) {
                    if (command.op == CODEC_OP_PATCH) {
                        mp_write_map_header(&body, 3);
                        mp_write_str(&body, "op", 2);
                        mp_write_str(&body, "replace", 7);
                        mp_write_str(&body, "path", 4);
                        char path[8];
                        int plen = snprintf(path, sizeof(path), "/%s", keys[k]);
                        mp_write_str(&body, path, (uint32_t)plen);
                        mp_write_str(&body, "value", 5);
                    } else {
                        mp_write_str(&body, keys[k], (uint32_t)strlen(keys[k]));
                    }
                    if (k == 0)
                        mp_write_str(&body, pad, 900);
                    else
                        mp_write_uint(&body, k == 1 ? (uint64_t)phase : (uint64_t)i);
                }
                if (command.op == CODEC_OP_PATCH) {
                    command.patch_msgpack = body.data;
                    command.patch_msgpack_len = body.len;
                } else {
                    command.profile_msgpack = body.data;
                    command.profile_msgpack_len = body.len;
                }
            }
            if (codec_encode(&command, &value, errstr, sizeof(errstr)) < 0)
                die("encode", errstr);
        }
        for (;;) {
            rd_kafka_resp_err_t err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(recipient, (size_t)rlen),
                RD_KAFKA_V_VALUE(value.data, value.len), RD_KAFKA_V_OPAQUE((void *)(intptr_t)i),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (!err)
                break;
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                die("produce", rd_kafka_err2str(err));
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
        fprintf(tsv, "%s\t%.*s\t%s", recipient, (int)json.len, (const char *)json.data, command_hex);
        fputc('\n', tsv);
    }
    if (rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("flush", "not every command was acknowledged in 120 s");
    fprintf(stderr, "produced %ld %s commands (%zu bytes each) in %.1f s\n", count,
            connect ? "connect" : "msgpack", value.len, now_s() - t0);
    if (edges_path) {
        FILE *out = fopen(edges_path, "w");
        if (!out)
            die(edges_path, "cannot write");
        for (int p = 0; p < EDGES_MAX; p++)
            if (edges.count[p] > 0)
                fprintf(out, "%d bench-%ld bench-%ld %ld\n", p, edges.first[p], edges.last[p],
                        edges.count[p]);
        fclose(out);
    }
    fclose(tsv);
    buf_free(&profile);
    buf_free(&value);
    buf_free(&json);
    buf_free(&body);
    rd_kafka_destroy(rk);
    return 0;
}

static long long positions_sum(PGconn *pg, const char *group, const char *topic)
{
    const char *params[2] = {group, topic};
    PGresult *res = PQexecParams(pg,
                                 "SELECT coalesce(sum(next_offset), 0) FROM kafka_positions "
                                 "WHERE consumer_group = $1 AND topic = $2",
                                 2, NULL, params, NULL, NULL, 0);
    long long sum = PQresultStatus(res) == PGRES_TUPLES_OK ? atoll(PQgetvalue(res, 0, 0)) : -1;
    PQclear(res);
    return sum;
}

static int wait_applied(int argc, char **argv)
{
    if (argc != 6)
        die("usage", "wait GROUP TOPIC TOTAL TIMEOUT_S");
    const char *group = argv[2], *topic = argv[3];
    long long total = atoll(argv[4]);
    double timeout = atof(argv[5]);
    PGconn *pg = PQconnectdb(require_env("PROFILED_PG_DSN"));
    if (PQstatus(pg) != CONNECTION_OK)
        die("postgres", PQerrorMessage(pg));
    long long start_sum = positions_sum(pg, group, topic), first = -1;
    double t_start = now_s(), t_first = 0, t_last = 0;
    long long sum = start_sum;
    while (sum < total) {
        if (now_s() - t_start > timeout) {
            fprintf(stderr, "bench_worker: only %lld of %lld applied after %.0f s\n", sum, total, timeout);
            return 1;
        }
        usleep(5000);
        long long s = positions_sum(pg, group, topic);
        if (s < 0)
            die("postgres", PQerrorMessage(pg));
        if (s > sum) {
            if (first < 0) {
                first = s;
                t_first = now_s();
            }
            t_last = now_s();
        }
        sum = s;
    }
    PQfinish(pg);
    double rate = t_last > t_first ? (double)(total - first) / (t_last - t_first) : 0;
    /* stdout: rows/s, from the first commit to the last (excludes start-up and group join) */
    printf("%.0f\n", rate);
    fprintf(stderr, "applied %lld commands; first commit after %.2f s held %lld; rate %.0f rows/s\n",
            total - start_sum, t_first - t_start, first - start_sum, rate);
    return 0;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of one process, and with `children` those of its living children
 * plus the reaped ones (cutime + cstime), in clock ticks; -1 when it is gone. */
static long long proc_ticks(long pid, int children)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *in = fopen(path, "r");
    if (!in)
        return -1;
    char line[1024];
    size_t n = fread(line, 1, sizeof(line) - 1, in);
    fclose(in);
    line[n] = '\0';
    const char *rest = strrchr(line, ')'); /* the command name may hold spaces */
    long ppid = 0;
    unsigned long long utime = 0, stime = 0;
    long long cutime = 0, cstime = 0;
    if (!rest || sscanf(rest + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &ppid,
                        &utime, &stime, &cutime, &cstime) != 5)
        return -1;
    long long ticks = (long long)(utime + stime);
    if (!children)
        return ticks;
    ticks += cutime + cstime;
    DIR *proc = opendir("/proc");
    if (!proc)
        return ticks;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        long child = atol(entry->d_name);
        if (child <= 0 || child == pid)
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/stat", child);
        in = fopen(path, "r");
        if (!in)
            continue;
        n = fread(line, 1, sizeof(line) - 1, in);
        fclose(in);
        line[n] = '\0';
        rest = strrchr(line, ')');
        long parent = 0;
        if (rest &&
            sscanf(rest + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &parent, &utime,
                   &stime) == 3 &&
            parent == pid)
            ticks += (long long)(utime + stime);
    }
    closedir(proc);
    return ticks;
}

/* Appends " seconds" per entry of a "PID +PID ..." list. */
static void append_cpu(buf_t *out, const char *pids)
{
    double tick = (double)sysconf(_SC_CLK_TCK);
    char *copy = strdup(pids), *save = NULL;
    for (char *word = strtok_r(copy, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        int children = word[0] == '+';
        long long ticks = proc_ticks(atol(word + children), children);
        buf_appendf(out, " %.2f", ticks < 0 ? -1.0 : (double)ticks / tick);
    }
    free(copy);
}

static int cpu_now(int argc, char **argv)
{
    buf_t line = {0};
    for (int i = 2; i < argc; i++)
        append_cpu(&line, argv[i]);
    printf("%.*s\n", (int)(line.len > 0 ? line.len - 1 : 0), line.len > 0 ? (const char *)line.data + 1 : "");
    buf_free(&line);
    return 0;
}

/* Keys of an EDGES file, as two PostgreSQL array literals: first keys, last keys. */
static int read_edges(const char *path, buf_t *firsts, buf_t *lasts)
{
    FILE *in = fopen(path, "r");
    if (!in)
        die(path, "cannot read");
    int partitions = 0;
    char first[64], last[64];
    long count;
    int p;
    buf_append_str(firsts, "{");
    buf_append_str(lasts, "{");
    while (fscanf(in, "%d %63s %63s %ld", &p, first, last, &count) == 4) {
        buf_appendf(firsts, "%s%s", partitions ? "," : "", first);
        buf_appendf(lasts, "%s%s", partitions ? "," : "", last);
        partitions++;
    }
    fclose(in);
    buf_append(firsts, "}", 2);
    buf_append(lasts, "}", 2);
    if (partitions == 0)
        die(path, "no partition");
    return partitions;
}

static int wait_rows(int argc, char **argv)
{
    if (argc != 7)
        die("usage", "wait-rows TABLE PHASE EDGES START_EPOCH TIMEOUT_S");
    const char *table = argv[2], *phase = argv[3];
    double start = atof(argv[5]), timeout = atof(argv[6]);
    buf_t firsts = {0}, lasts = {0}, sql = {0};
    int partitions = read_edges(argv[4], &firsts, &lasts);
    buf_appendf(&sql,
                "SELECT count(*) FILTER (WHERE recipient_id = ANY($1::text[])), "
                "count(*) FILTER (WHERE recipient_id = ANY($2::text[])) FROM %s "
                "WHERE recipient_id = ANY($1::text[] || $2::text[]) AND (profile->>'phase')::int = $3::int",
                table);
    buf_append_byte(&sql, '\0');
    PGconn *pg = PQconnectdb(require_env("PROFILED_PG_DSN"));
    if (PQstatus(pg) != CONNECTION_OK)
        die("postgres", PQerrorMessage(pg));
    const char *params[3] = {(const char *)firsts.data, (const char *)lasts.data, phase};
    const char *pids = getenv("BENCH_CPU_PIDS");
    buf_t cpu_first = {0}, cpu_last = {0};
    double t_first = -1;
    for (;;) {
        PGresult *res = PQexecParams(pg, (const char *)sql.data, 3, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            die("postgres", PQerrorMessage(pg));
        long seen_first = atol(PQgetvalue(res, 0, 0)), seen_last = atol(PQgetvalue(res, 0, 1));
        PQclear(res);
        double t = wall_s();
        if (t_first < 0 && (seen_first > 0 || seen_last > 0)) {
            t_first = t;
            if (pids)
                append_cpu(&cpu_first, pids);
        }
        if (seen_last == partitions)
            break;
        if (t - start > timeout) {
            fprintf(stderr, "bench_worker: %ld of %d partitions applied after %.0f s\n", seen_last,
                    partitions, timeout);
            return 1;
        }
        usleep(5000);
    }
    double t_last = wall_s();
    if (pids)
        append_cpu(&cpu_last, pids);
    /* stdout: seconds from START_EPOCH to the first row, then to the last; then the
     * CPU seconds of BENCH_CPU_PIDS at the first row, then at the last */
    printf("%.3f %.3f%.*s%.*s\n", t_first - start, t_last - start, (int)cpu_first.len,
           (const char *)cpu_first.data, (int)cpu_last.len, (const char *)cpu_last.data);
    buf_free(&cpu_first);
    buf_free(&cpu_last);
    PQfinish(pg);
    buf_free(&firsts);
    buf_free(&lasts);
    buf_free(&sql);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "produce") == 0)
        return produce(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "wait") == 0)
        return wait_applied(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "wait-rows") == 0)
        return wait_rows(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "cpu") == 0)
        return cpu_now(argc, argv);
    fprintf(stderr, "usage: bench_worker produce|wait|wait-rows|cpu ... (see the source)\n");
    return 2;
}
