/*
 * bench_import: the helper of tests/bench/import/run (not a test).
 *
 *   bench_import encode JOB NDJSON OUT
 *       encodes every line of NDJSON exactly as `profiled-import --job JOB NDJSON` would
 *       (the same line parser, so the same command bytes but accepted_at_us) and writes
 *       them for `kcat -P -K KEYDELIM -D DELIM`: key, KEYDELIM, command, DELIM. The
 *       delimiters are runs of 0xC1, a byte that no UTF-8 text and no msgpack type byte
 *       holds (only a random id or a float could); a command that holds a delimiter or
 *       ends in 0xC1 is reported and the run stops, rather than giving kcat a split record.
 *   bench_import topic TOPIC PARTITIONS
 *       creates TOPIC.
 *
 * Environment: PROFILED_KAFKA_BROKERS (topic).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "line.h"
#include "reader.h"
#include "test_kafka_admin.h"

#define BENCH_DELIM     "\xc1\xc1\xc1\xc1\xc1\xc1\xc1\xc1"
#define BENCH_KEY_DELIM "\xc1\xc1\xc1\xc1\xc1\xc1\xc1\xc0"

static int bench_encode(const char *job, const char *path, const char *out_path)
{
    char errstr[512], message[512];
    reader_t reader;
    reader_line_t line;
    line_parser_t parser = {.limits = limits_default(), .job = job, .source = "profiled-import"};
    buf_t encoded = {0};
    FILE *out = fopen(out_path, "w");
    if (!out || reader_open(&reader, path, parser.limits.max_body_bytes, errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "bench_import: %s\n", out ? errstr : out_path);
        return 1;
    }
    uint64_t line_no = 0;
    int got;
    while ((got = reader_next(&reader, &line, errstr, sizeof(errstr))) == 1) {
        line_no++;
        line_command_t command;
        buf_reset(&encoded);
        if (line.too_long || line_to_command(&parser, line.text, line.len, path, line_no, 0, &encoded,
                                             &command, message, sizeof(message)) < 0) {
            fprintf(stderr, "bench_import: line %llu is not valid\n", (unsigned long long)line_no);
            return 1;
        }
        /* kcat splits at the first full delimiter: one inside a command, or a command ending in 0xC1,
         * would cut it. */
        if (memmem(encoded.data, encoded.len, BENCH_DELIM, 8) ||
            memmem(encoded.data, encoded.len, BENCH_KEY_DELIM, 8) || encoded.data[encoded.len - 1] == 0xC1) {
            fprintf(stderr, "bench_import: the command of line %llu holds the delimiter byte\n",
                    (unsigned long long)line_no);
            return 1;
        }
        fwrite(command.recipient_id, 1, command.recipient_id_len, out);
        fwrite(BENCH_KEY_DELIM, 1, 8, out);
        fwrite(encoded.data, 1, encoded.len, out);
        fwrite(BENCH_DELIM, 1, 8, out);
    }
    reader_close(&reader);
    buf_free(&encoded);
    line_parser_free(&parser);
    if (got < 0 || fclose(out) != 0) {
        fprintf(stderr, "bench_import: %s\n", got < 0 ? errstr : "write failed");
        return 1;
    }
    return 0;
}

static int bench_topic(const char *topic, int partitions)
{
    char errstr[512];
    const char *brokers = getenv("PROFILED_KAFKA_BROKERS");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!brokers ||
        rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return 1;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk || test_kafka_create_topic(rk, topic, partitions, 30000, errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "bench_import: creating %s: %s\n", topic, errstr);
        return 1;
    }
    rd_kafka_destroy(rk);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "encode") == 0)
        return bench_encode(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "topic") == 0)
        return bench_topic(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: bench_import encode JOB NDJSON OUT | topic TOPIC PARTITIONS\n");
    return 2;
}
