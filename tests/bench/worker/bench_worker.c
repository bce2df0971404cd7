/*
 * bench_worker: the helper of tests/bench/worker/run (not a test).
 *
 *   bench_worker produce TOPIC PARTITIONS COUNT PHASE TSV
 *       creates TOPIC when PHASE is 1, produces COUNT replace commands of about
 *       1 KiB for recipients bench-0 .. bench-(COUNT-1) (murmur2 partitioner,
 *       idempotent, acks=all) and writes the same rows as TSV for the COPY ceiling
 *   bench_worker wait GROUP TOPIC TOTAL TIMEOUT_S
 *       polls the group's positions in PostgreSQL every 5 ms and prints the
 *       apply rate from the first committed batch to the last
 *
 * Environment: PROFILED_KAFKA_BROKERS, PROFILED_PG_DSN (search_path set by run).
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
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

static int produce(int argc, char **argv)
{
    if (argc != 7)
        die("usage", "produce TOPIC PARTITIONS COUNT PHASE TSV");
    const char *topic = argv[2];
    int partitions = atoi(argv[3]);
    long count = atol(argv[4]);
    int phase = atoi(argv[5]);
    FILE *tsv = fopen(argv[6], "w");
    if (!tsv)
        die(argv[6], "cannot write");
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
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
        buf_reset(&value);
        if (codec_encode(&command, &value, errstr, sizeof(errstr)) < 0)
            die("encode", errstr);
        for (;;) {
            rd_kafka_resp_err_t err =
                rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(recipient, (size_t)rlen),
                                  RD_KAFKA_V_VALUE(value.data, value.len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (!err)
                break;
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                die("produce", rd_kafka_err2str(err));
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
        /* the same row for the ceiling: recipient, profile JSON, command id */
        buf_reset(&json);
        buf_appendf(
            &json, "{\"email\": \"%s\", \"pad\": \"%s\", \"phase\": %d, \"recipient\": \"%s\", \"seq\": %ld}",
            email, pad, phase, recipient, i);
        fprintf(tsv, "%s\t%.*s\t", recipient, (int)json.len, (const char *)json.data);
        for (int k = 0; k < 16; k++)
            fprintf(tsv, "%02x", command.command_id[k]);
        fputc('\n', tsv);
    }
    if (rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("flush", "not every command was acknowledged in 120 s");
    fprintf(stderr, "produced %ld commands (%zu bytes each) in %.1f s\n", count, value.len, now_s() - t0);
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

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "produce") == 0)
        return produce(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "wait") == 0)
        return wait_applied(argc, argv);
    fprintf(stderr, "usage: bench_worker produce|wait ... (see the source)\n");
    return 2;
}
