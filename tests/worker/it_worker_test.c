/*
 * Integration tests of profiled-worker against the real stack (label
 * "integration"). One Check test case per ctest entry, chosen by CK_RUN_CASE,
 * so each has its own time limit. See it_common.h for the isolation rules.
 */
#include <check.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apply.h"
#include "buf.h"
#include "codec.h"
#include "it_common.h"
#include "mp.h"
#include "profile_limits.h"

#define CATCH_UP_MS 90000

static void nap_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static void expect_caught_up(it_t *it)
{
    if (!it_wait_caught_up(it, CATCH_UP_MS)) {
        it_show_log(it);
        ck_abort_msg("the worker did not catch up within %d ms", CATCH_UP_MS);
    }
}

static void expect_stops_cleanly(it_t *it, pid_t pid)
{
    int status = it_worker_stop(pid, 30000);
    if (status != 0)
        it_show_log(it);
    ck_assert_msg(status == 0, "profiled-worker exit status after SIGTERM: %d (want 0)", status);
}

/* The number of recipients whose row is not the command `last[r]` (seq) of
 * recipient "<prefix><r>": missing, another profile, or another command id. */
static int64_t rows_not_last(it_t *it, const char *prefix, const uint64_t *last, int recipients)
{
    buf_t sql = {0};
    buf_appendf(&sql, "SELECT count(*) FROM (VALUES ");
    for (int r = 0; r < recipients; r++)
        buf_appendf(&sql, "%s('%s%d', %" PRIu64 ")", r ? "," : "", prefix, r, last[r]);
    buf_appendf(&sql,
                ") AS e(r, s) LEFT JOIN profiles p ON p.recipient_id = e.r "
                "WHERE p.recipient_id IS NULL OR (p.profile->>'seq')::bigint <> e.s "
                "OR p.profile->>'recipient' <> e.r "
                "OR p.command_id <> decode(lpad(to_hex(%" PRId64
                "::bigint), 16, '0') || lpad(to_hex(e.s), 16, '0'), "
                "'hex')",
                (int64_t)it->nonce);
    buf_terminate(&sql);
    int64_t n = it_int(it, (const char *)sql.data);
    buf_free(&sql);
    return n;
}

/* ------------------------------------------------------------------ apply and read back */

/* The worker's "consuming" line names the prefetch limits librdkafka holds. */
static void expect_logged_limits(const it_t *it, int64_t kbytes, int64_t messages, int64_t fetch,
                                 int64_t partition)
{
    FILE *f = fopen(it->log_path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", it->log_path);
    char line[4096], want[256];
    snprintf(want, sizeof(want),
             "\"queued_max_messages_kbytes\":%" PRId64 ",\"queued_min_messages\":%" PRId64
             ",\"fetch_max_bytes\":%" PRId64 ",\"max_partition_fetch_bytes\":%" PRId64,
             kbytes, messages, fetch, partition);
    bool found = false, consuming = false;
    while (!found && fgets(line, sizeof(line), f)) {
        if (!strstr(line, "\"message\":\"consuming\""))
            continue;
        consuming = true;
        found = strstr(line, want) != NULL;
        if (!found)
            fprintf(stderr, "consuming line: %s", line);
    }
    fclose(f);
    ck_assert_msg(consuming, "no \"consuming\" line in %s", it->log_path);
    ck_assert_msg(found, "the consuming line lacks %s", want);
}

START_TEST(apply_and_read_back)
{
    it_t it;
    it_setup(&it, "basic", 3);
    it_exec(&it, "LISTEN profiled_applied");
    it_produce(&it, "basic0", 1, false, 0, 0);
    it_produce(&it, "basic1", 2, false, 0, 0);
    it_produce(&it, "basic2", 3, true, 7, 0);
    /* every byte that COPY's text format or a JSON string escapes, in the id and the profile */
    static const char odd[] = "odd\\one\t\"q\"\n\r,{}' \xc3\xbc\xf0\x9f\x8e\x89 \\N";
    it_produce(&it, odd, 4, false, 0, 0);
    it_flush(&it);
    /* the prefetch limits follow the batch size (worker.c, worker_fetch_limits), and
     * PROFILED_KAFKA_PROPERTIES still overrides one */
    const char *env[] = {"PROFILED_BATCH_MAX_COMMANDS=2000",
                         "PROFILED_KAFKA_PROPERTIES=session.timeout.ms=6000,heartbeat.interval.ms=500,"
                         "max.partition.fetch.bytes=40000",
                         NULL};
    pid_t pid = it_worker_start(&it, env);
    expect_caught_up(&it);
    expect_logged_limits(&it, 1200, 2000, 76800, 40000);

    uint64_t last[3] = {1, 2, 3};
    ck_assert_int_eq(rows_not_last(&it, "basic", last, 3), 0);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM profiles"), 4);
    {
        const char *params[1] = {odd};
        PGresult *res = PQexecParams(it.pg,
                                     "SELECT count(*) FROM profiles WHERE recipient_id = $1 AND "
                                     "profile->>'recipient' = $1 AND (profile->>'seq')::int = 4",
                                     1, NULL, params, NULL, NULL, 0);
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
        ck_assert_msg(strcmp(PQgetvalue(res, 0, 0), "1") == 0, "the odd recipient id did not round-trip");
        PQclear(res);
    }
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM profiles WHERE recipient_id = 'basic0' AND profile = "
                                 "'{\"recipient\": \"basic0\", \"seq\": 1}'::jsonb AND version IS NULL"),
                     1);
    ck_assert_int_eq(it_int(&it, "SELECT version FROM profiles WHERE recipient_id = 'basic2'"), 7);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), 4);
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM profiles WHERE kafka_topic = '%s' AND kafka_offset >= 0",
             it.topic);
    ck_assert_int_eq(it_int(&it, sql), 4);

    /* NOTIFY named the positions applied */
    int notified = 0;
    for (int i = 0; i < 300 && !notified; i++) {
        PQconsumeInput(it.pg);
        PGnotify *n;
        while ((n = PQnotifies(it.pg)) != NULL) {
            if (strstr(n->extra, it.topic))
                notified = 1;
            PQfreemem(n);
        }
        if (!notified)
            nap_ms(100);
    }
    ck_assert_msg(notified, "no NOTIFY profiled_applied naming %s", it.topic);

    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ fetch restarts */

/* The value of a counter without labels in a /metrics page, -1 when absent. */
static int64_t metric_value(const char *page, const char *name)
{
    char want[160];
    snprintf(want, sizeof(want), "\n%s ", name);
    const char *at = strstr(page, want);
    return at ? strtoll(at + strlen(want), NULL, 10) : -1;
}

/* librdkafka 2.0 stops fetching when its queue reaches queued.min.messages and
 * sleeps up to a second after the worker drains it; the worker seeks to wake
 * it (worker.c, worker_queue_empty). With a queue limit of 100 commands, a
 * backlog of 4,000 makes it do so many times: every command must still be
 * applied exactly once, none skipped by a seek and none taken twice. */
START_TEST(a_backlog_over_a_small_queue_restarts_fetching_and_loses_nothing)
{
    enum { RECIPIENTS = 200, COMMANDS = 4000 };
    it_t it;
    it_setup(&it, "fetch", 3);
    char recipient[32];
    for (int i = 0; i < COMMANDS; i++) {
        snprintf(recipient, sizeof(recipient), "fetch%d", i % RECIPIENTS);
        it_produce(&it, recipient, (uint64_t)i + 1, false, 0, 200);
    }
    it_flush(&it);
    const char *env[] = {"PROFILED_OPS_PORT=0", "PROFILED_BATCH_MAX_COMMANDS=500",
                         "PROFILED_KAFKA_PROPERTIES=queued.min.messages=100", NULL};
    pid_t pid = it_worker_start(&it, env);
    int port = it_wait_ops_port(it.log_path, 30000);
    expect_caught_up(&it);

    uint64_t last[RECIPIENTS];
    for (int r = 0; r < RECIPIENTS; r++)
        last[r] = (uint64_t)(COMMANDS - RECIPIENTS + r) + 1;
    ck_assert_int_eq(rows_not_last(&it, "fetch", last, RECIPIENTS), 0);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), COMMANDS);
    static char body[65536];
    ck_assert_int_eq(it_http_get(port, "/metrics", body, sizeof(body)), 200);
    ck_assert_int_eq(metric_value(body, "profiled_worker_commands_applied_total"), COMMANDS);
    ck_assert_msg(strstr(body, "profiled_worker_commands_skipped_total{reason=\"duplicate\"} 0\n"), "%s",
                  body);
    int64_t restarts = metric_value(body, "profiled_worker_fetch_restarts_total");
    ck_assert_msg(restarts > 0,
                  "profiled_worker_fetch_restarts_total is %lld: the fetcher was never restarted",
                  (long long)restarts);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ duplicates */

START_TEST(same_commands_twice_apply_once)
{
    it_t it;
    it_setup(&it, "dup", 2);
    it_add_write_counter(&it);
    it_produce(&it, "dup0", 1, false, 0, 0);
    it_produce(&it, "dup0", 2, false, 0, 0);
    it_produce(&it, "dup0", 1, false, 0, 0); /* a copy of a superseded command, same batch */
    it_produce(&it, "dup1", 3, false, 0, 0);
    it_flush(&it);
    pid_t pid = it_worker_start(&it, NULL);
    expect_caught_up(&it);
    /* the whole stream again, in later batches */
    it_produce(&it, "dup0", 1, false, 0, 0);
    it_produce(&it, "dup0", 2, false, 0, 0);
    it_produce(&it, "dup1", 3, false, 0, 0);
    it_flush(&it);
    expect_caught_up(&it);

    uint64_t last[2] = {2, 3};
    ck_assert_int_eq(rows_not_last(&it, "dup", last, 2), 0);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), 3);
    ck_assert_int_eq(it_int(&it, "SELECT max(writes) FROM write_counts"), 1);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ external versions */

START_TEST(stale_version_is_skipped)
{
    it_t it;
    it_setup(&it, "stale", 1);
    pid_t pid = it_worker_start(&it, NULL);
    uint64_t last[2];

    it_produce(&it, "stale0", 1, true, 5, 0);
    it_flush(&it);
    expect_caught_up(&it);
    it_produce(&it, "stale0", 2, true, 3, 0); /* older: skipped */
    it_flush(&it);
    expect_caught_up(&it);
    last[0] = 1;
    ck_assert_int_eq(rows_not_last(&it, "stale", last, 1), 0);
    ck_assert_int_eq(it_int(&it, "SELECT version FROM profiles WHERE recipient_id = 'stale0'"), 5);

    it_produce(&it, "stale0", 3, false, 0, 0); /* no version: applies, keeps 5 */
    it_flush(&it);
    expect_caught_up(&it);
    it_produce(&it, "stale0", 4, true, 5, 0); /* equal: skipped */
    it_flush(&it);
    expect_caught_up(&it);
    last[0] = 3;
    ck_assert_int_eq(rows_not_last(&it, "stale", last, 1), 0);
    ck_assert_int_eq(it_int(&it, "SELECT version FROM profiles WHERE recipient_id = 'stale0'"), 5);

    /* in one batch: 2 applies, 1 is stale against it, the unversioned last applies and keeps 2 */
    it_produce(&it, "stale1", 10, true, 2, 0);
    it_produce(&it, "stale1", 11, true, 1, 0);
    it_produce(&it, "stale1", 12, false, 0, 0);
    it_produce(&it, "stale0", 5, true, 6, 0);
    it_flush(&it);
    expect_caught_up(&it);
    last[0] = 5;
    last[1] = 12;
    ck_assert_int_eq(rows_not_last(&it, "stale", last, 2), 0);
    ck_assert_int_eq(it_int(&it, "SELECT version FROM profiles WHERE recipient_id = 'stale0'"), 6);
    ck_assert_int_eq(it_int(&it, "SELECT version FROM profiles WHERE recipient_id = 'stale1'"), 2);
    /* applied: 1, 3, 5, 10, 12; stale, and recorded as processed (proto §6): 2, 4 and 11 */
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands WHERE outcome IS NULL"), 5);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands WHERE outcome = 'stale'"), 3);
    /* a copy of a stale command is a duplicate now, not judged again */
    it_produce(&it, "stale1", 11, true, 1, 0);
    it_flush(&it);
    expect_caught_up(&it);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), 8);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ last wins in a batch */

START_TEST(batch_with_many_commands_per_recipient_leaves_the_last)
{
    it_t it;
    it_setup(&it, "last", 1);
    it_add_write_counter(&it);
    for (uint64_t seq = 1; seq <= 400; seq++)
        it_produce(&it, seq % 2 ? "last0" : "last1", seq, false, 0, 0);
    it_flush(&it);
    const char *env[] = {"PROFILED_BATCH_MAX_WAIT=3s", NULL};
    pid_t pid = it_worker_start(&it, env);
    expect_caught_up(&it);
    uint64_t last[2] = {399, 400};
    ck_assert_int_eq(rows_not_last(&it, "last", last, 2), 0);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), 400);
    /* one batch: each recipient's row was written once, by its last command */
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM write_counts"), 2);
    ck_assert_int_eq(it_int(&it, "SELECT sum(writes) FROM write_counts"), 2);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ a batch of large rows */

/* One transaction whose COPY text (~2.4 MB) is sent in several PQputCopyData pieces:
 * every row arrives whole, with its padding intact. */
START_TEST(a_batch_of_large_profiles_is_copied_whole)
{
    enum { RECIPIENTS = 40, PAD = 60 * 1024 }; /* PAD under the 64 KiB string limit */
    it_t it;
    it_setup(&it, "bigrows", 1);
    it_add_write_counter(&it);
    uint64_t last[RECIPIENTS];
    char recipient[32];
    for (int r = 0; r < RECIPIENTS; r++) {
        snprintf(recipient, sizeof(recipient), "bigrows%d", r);
        last[r] = (uint64_t)r + 1;
        it_produce(&it, recipient, last[r], false, 0, PAD);
    }
    it_flush(&it);
    const char *env[] = {"PROFILED_BATCH_MAX_WAIT=3s", NULL};
    pid_t pid = it_worker_start(&it, env);
    expect_caught_up(&it);
    ck_assert_int_eq(rows_not_last(&it, "bigrows", last, RECIPIENTS), 0);
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM profiles WHERE length(profile->>'pad') = %d", (int)PAD);
    ck_assert_int_eq(it_int(&it, sql), RECIPIENTS);
    /* one transaction wrote them all, each once */
    ck_assert_int_eq(it_int(&it, "SELECT sum(writes) FROM write_counts"), RECIPIENTS);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ many partitions in one batch */

/* A transaction over 240 partitions moves 240 positions; their NOTIFY list is over
 * PostgreSQL's 8000-byte payload limit, and must not make the worker split the batch
 * (it read as a data error): one transaction still writes rows of more than 200
 * partitions (a one-payload NOTIFY fits ~180 here).
 *
 * The worker hands a batch to its lane as soon as a poll comes back empty, so a
 * batch started while the fetch is still arriving may hold only some partitions.
 * To make the wide batch certain, the lane is first held on a lock behind a lone
 * command; everything else is fetched meanwhile and forms the next batch. */
START_TEST(a_batch_over_many_partitions_notifies_in_pieces)
{
    enum { PARTITIONS = 240, COMMANDS = 2400 };
    it_t it;
    it_setup(&it, "notify", PARTITIONS);
    it_exec(&it, "LISTEN profiled_applied");
    PGconn *holder = PQconnectdb(it.dsn);
    ck_assert_msg(PQstatus(holder) == CONNECTION_OK, "%s", PQerrorMessage(holder));
    PGresult *res = PQexec(holder, "BEGIN; LOCK TABLE profiles IN SHARE MODE");
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQerrorMessage(holder));
    PQclear(res);

    it_produce(&it, "notify-first", COMMANDS + 1, false, 0, 0);
    it_flush(&it);
    /* one connection: a batch then spans every partition */
    const char *env[] = {"PROFILED_BATCH_MAX_WAIT=5s", "PROFILED_APPLY_CONNECTIONS=1", NULL};
    pid_t pid = it_worker_start(&it, env);
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %d "
             "AND datname = current_database()",
             PQbackendPID(holder));
    int waited = 0;
    while (it_int(&it, sql) == 0) {
        ck_assert_msg(waited < 30000, "the first batch never waited on the held lock");
        nap_ms(50);
        waited += 50;
    }
    char recipient[32];
    for (int r = 0; r < COMMANDS; r++) {
        snprintf(recipient, sizeof(recipient), "notify%d", r);
        it_produce(&it, recipient, (uint64_t)r + 1, false, 0, 0);
    }
    it_flush(&it);
    nap_ms(3000); /* the worker fetches them into its open batch; its lane is busy */
    res = PQexec(holder, "COMMIT");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(holder);

    expect_caught_up(&it);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM profiles"), COMMANDS + 1);
    int64_t widest =
        it_int(&it, "SELECT max(n) FROM (SELECT count(DISTINCT kafka_partition) AS n FROM profiles "
                    "GROUP BY xmin::text) AS t");
    fprintf(stderr, "the widest transaction wrote rows of %" PRId64 " partitions\n", widest);
    ck_assert_msg(widest > 200, "the widest transaction wrote rows of %" PRId64 " partitions (want > 200)",
                  widest);
    /* every partition's position was notified, in payloads under the limit */
    int notified = 0;
    for (int i = 0; i < 300 && notified < PARTITIONS + 1; i++) {
        PQconsumeInput(it.pg);
        PGnotify *n;
        while ((n = PQnotifies(it.pg)) != NULL) {
            ck_assert_int_lt(strlen(n->extra), 8000);
            for (const char *at = n->extra; (at = strstr(at, it.topic)) != NULL; at++)
                notified++;
            PQfreemem(n);
        }
        if (notified < PARTITIONS + 1)
            nap_ms(100);
    }
    ck_assert_int_ge(notified, PARTITIONS + 1);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ dead letters */

typedef struct bad_record {
    const char *key; /* NULL: no key */
    buf_t value;
    char code[64]; /* what codec_decode says about it */
} bad_record_t;

static void bad_record_expect(bad_record_t *bad)
{
    codec_command_t command;
    codec_failure_t failure;
    buf_t json = {0};
    limits_t limits = limits_default();
    int rc = codec_decode(bad->value.data, bad->value.len, (const uint8_t *)bad->key,
                          bad->key ? strlen(bad->key) : 0, &limits, &command, &json, &failure);
    ck_assert_msg(rc < 0, "a bad record decoded");
    snprintf(bad->code, sizeof(bad->code), "%s", codec_error_name(failure.code));
    buf_free(&json);
}

static const char *header(rd_kafka_message_t *m, const char *name, char *out, size_t out_size)
{
    rd_kafka_headers_t *headers = NULL;
    const void *value = NULL;
    size_t size = 0;
    out[0] = '\0';
    if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(headers, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(out, out_size, "%.*s", (int)size, (const char *)value);
        return out;
    }
    return NULL;
}

/* Reads `want` dead letters of partition 0 of the DLQ topic (bounded: 30 s).
 * The messages keep *consumer alive: destroy them first, then the consumer
 * (rd_kafka_destroy waits for every message it handed out). */
static int read_dead_letters(it_t *it, rd_kafka_message_t **out, int want, rd_kafka_t **consumer_out)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", it->brokers, errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    /* a group of its own that commits nothing: the worker's group is not touched */
    char group[200];
    snprintf(group, sizeof(group), "%s-reader", it->group);
    ck_assert(rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    ck_assert_msg(consumer != NULL, "%s", errstr);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, it->dlq_topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert(rd_kafka_assign(consumer, list) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(list);
    int seen = 0;
    for (int polls = 0; polls < 300 && seen < want; polls++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        out[seen++] = m;
    }
    /* one more short look: more dead letters than expected is a failure too */
    for (int polls = 0; polls < 5; polls++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (m && !m->err)
            ck_abort_msg("more dead letters than the %d expected", want);
        if (m)
            rd_kafka_message_destroy(m);
    }
    *consumer_out = consumer;
    return seen;
}

START_TEST(invalid_commands_go_to_the_dead_letter_topic)
{
    it_t it;
    it_setup(&it, "dlq", 1);
    /* A row PostgreSQL refuses while the codec accepts it: the worker must find
     * it by splitting the batch, dead-letter it, and apply the rest. */
    it_exec(&it, "ALTER TABLE profiles ADD CONSTRAINT it_poison CHECK ((profile->>'seq')::bigint <> 666)");
    enum { BAD = 6 };
    bad_record_t bad[BAD];
    int64_t bad_offset[BAD];
    memset(bad, 0, sizeof(bad));
    /* not msgpack at all */
    bad[0].key = "dlq9";
    buf_append_str(&bad[0].value, "not msgpack {\"profile\":{}}");
    /* the other bad records are built from a valid encoding of {} for "dlq8" */
    buf_t valid = {0};
    {
        char errstr[256];
        buf_t profile = {0};
        buf_append_byte(&profile, 0x80); /* {} */
        codec_command_t command;
        memset(&command, 0, sizeof(command));
        command.schema_version = CODEC_SCHEMA_VERSION;
        it_command_id(&it, 999, command.command_id);
        command.recipient_id = "dlq8";
        command.recipient_id_len = 4;
        command.accepted_at_us = 1764355200000000LL;
        command.profile_msgpack = profile.data;
        command.profile_msgpack_len = profile.len;
        ck_assert(codec_encode(&command, &valid, errstr, sizeof(errstr)) == 0);
        buf_free(&profile);
    }
    bad[1].key = "someone-else"; /* key mismatch */
    buf_append(&bad[1].value, valid.data, valid.len);
    bad[2].key = NULL; /* no key */
    buf_append(&bad[2].value, valid.data, valid.len);
    bad[3].key = "dlq8"; /* truncated */
    buf_append(&bad[3].value, valid.data, valid.len - 3);
    bad[4].key = "dlq8"; /* trailing bytes */
    buf_append(&bad[4].value, valid.data, valid.len);
    buf_append_byte(&bad[4].value, 0xc0);
    for (int i = 0; i < BAD - 1; i++)
        bad_record_expect(&bad[i]);

    /* offsets: 0 valid, then (bad, valid) pairs at 1..10, the poison at 11, a valid at 12 */
    it_produce(&it, "dlq0", 1, false, 0, 0);
    for (int i = 0; i < BAD - 1; i++) {
        it_produce_raw(&it, bad[i].key, bad[i].key ? strlen(bad[i].key) : 0, bad[i].value.data,
                       bad[i].value.len);
        bad_offset[i] = 1 + 2 * i;
        it_produce(&it, i % 2 ? "dlq1" : "dlq2", (uint64_t)(2 + i), false, 0, 0);
    }
    it_produce(&it, "dlq3", 666, false, 0, 0);
    bad_offset[BAD - 1] = 11;
    snprintf(bad[BAD - 1].code, sizeof(bad[BAD - 1].code), "postgres_rejected");
    bad[BAD - 1].key = "dlq3";
    it_produce(&it, "dlq0", 7, false, 0, 0);
    it_flush(&it);
    pid_t pid = it_worker_start(&it, NULL);
    expect_caught_up(&it);
    uint64_t last[3] = {7, 5, 6};
    ck_assert_int_eq(rows_not_last(&it, "dlq", last, 3), 0);
    ck_assert_int_eq(
        it_int(&it, "SELECT count(*) FROM profiles WHERE recipient_id IN ('dlq3', 'dlq8', 'dlq9')"), 0);

    rd_kafka_message_t *letters[BAD];
    rd_kafka_t *reader = NULL;
    int seen = read_dead_letters(&it, letters, BAD, &reader);
    ck_assert_int_eq(seen, BAD);
    int matched[BAD] = {0};
    for (int k = 0; k < seen; k++) {
        rd_kafka_message_t *m = letters[k];
        char code[64], message[300], topic[200], partition[16], offset[32];
        ck_assert_msg(header(m, "profiled-error-code", code, sizeof(code)) != NULL,
                      "dead letter without code");
        ck_assert(header(m, "profiled-error-message", message, sizeof(message)) != NULL && message[0]);
        ck_assert(header(m, "profiled-source-topic", topic, sizeof(topic)) != NULL);
        ck_assert_str_eq(topic, it.topic);
        ck_assert(header(m, "profiled-source-partition", partition, sizeof(partition)) != NULL);
        ck_assert_str_eq(partition, "0");
        ck_assert(header(m, "profiled-source-offset", offset, sizeof(offset)) != NULL);
        int i;
        for (i = 0; i < BAD; i++)
            if (bad_offset[i] == atoll(offset))
                break;
        ck_assert_msg(i < BAD, "dead letter for offset %s, which was valid", offset);
        ck_assert_msg(!matched[i], "two dead letters for offset %s", offset);
        matched[i] = 1;
        ck_assert_str_eq(code, bad[i].code);
        if (i < BAD - 1) {
            ck_assert_uint_eq(m->len, bad[i].value.len);
            ck_assert(memcmp(m->payload, bad[i].value.data, m->len) == 0);
        }
        if (bad[i].key) {
            ck_assert_uint_eq(m->key_len, strlen(bad[i].key));
            ck_assert(memcmp(m->key, bad[i].key, m->key_len) == 0);
        } else
            ck_assert(m->key == NULL);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_destroy_flags(reader, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    for (int i = 0; i < BAD; i++)
        buf_free(&bad[i].value);
    buf_free(&valid);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ golden invalid vectors */

#ifdef PROFILED_INVALID_VECTORS_DIR
#include <dirent.h>
#include <jansson.h>

typedef struct vector {
    char name[128];
    char *key; /* NULL: the record has no key */
    char error[64];
    buf_t bytes;
    int64_t offset;
    bool seen;
} vector_t;

static int vector_cmp(const void *a, const void *b)
{
    return strcmp(((const vector_t *)a)->name, ((const vector_t *)b)->name);
}

/* proto/vectors/invalid: NAME.msgpack (the record value) and NAME.json
 * ({"key": str or null, "error": code, ...}). */
static size_t load_invalid_vectors(vector_t **out)
{
    DIR *d = opendir(PROFILED_INVALID_VECTORS_DIR);
    ck_assert_msg(d != NULL, "cannot open %s", PROFILED_INVALID_VECTORS_DIR);
    size_t count = 0, cap = 0;
    vector_t *v = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 9 || strcmp(e->d_name + len - 8, ".msgpack") != 0)
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            v = realloc(v, cap * sizeof(*v));
            ck_assert(v != NULL);
        }
        vector_t *vec = &v[count++];
        memset(vec, 0, sizeof(*vec));
        snprintf(vec->name, sizeof(vec->name), "%.*s", (int)(len - 8), e->d_name);
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", PROFILED_INVALID_VECTORS_DIR, e->d_name);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "%s", path);
        char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
            buf_append(&vec->bytes, chunk, got);
        fclose(f);
        snprintf(path, sizeof(path), "%s/%s.json", PROFILED_INVALID_VECTORS_DIR, vec->name);
        json_error_t jerr;
        json_t *meta = json_load_file(path, 0, &jerr);
        ck_assert_msg(meta != NULL, "%s: %s", path, jerr.text);
        json_t *key = json_object_get(meta, "key");
        const char *error = json_string_value(json_object_get(meta, "error"));
        ck_assert_msg(error != NULL, "%s: no \"error\"", path);
        snprintf(vec->error, sizeof(vec->error), "%s", error);
        if (json_is_string(key)) {
            vec->key = strdup(json_string_value(key));
            ck_assert(vec->key != NULL);
        }
        json_decref(meta);
    }
    closedir(d);
    qsort(v, count, sizeof(*v), vector_cmp);
    *out = v;
    return count;
}

START_TEST(every_invalid_golden_vector_is_dead_lettered)
{
    it_t it;
    it_setup(&it, "vectors", 1);
    vector_t *v = NULL;
    size_t count = load_invalid_vectors(&v);
    ck_assert_msg(count > 0, "no vector in %s", PROFILED_INVALID_VECTORS_DIR);
    /* a valid command before and after each vector: the partition keeps flowing */
    int64_t offset = 0;
    uint64_t seq = 1, last[2] = {0, 0};
    last[0] = seq;
    it_produce(&it, "vec0", seq++, false, 0, 0);
    offset++;
    for (size_t i = 0; i < count; i++) {
        it_produce_raw(&it, v[i].key, v[i].key ? strlen(v[i].key) : 0, v[i].bytes.data, v[i].bytes.len);
        v[i].offset = offset++;
        last[i % 2] = seq;
        it_produce(&it, i % 2 ? "vec1" : "vec0", seq++, false, 0, 0);
        offset++;
    }
    it_flush(&it);
    pid_t pid = it_worker_start(&it, NULL);
    expect_caught_up(&it);
    ck_assert_int_eq(rows_not_last(&it, "vec", last, 2), 0);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM profiles"), 2);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), (int64_t)count + 1);

    rd_kafka_message_t **letters = calloc(count, sizeof(*letters));
    ck_assert(letters != NULL);
    rd_kafka_t *reader = NULL;
    int seen = read_dead_letters(&it, letters, (int)count, &reader);
    ck_assert_int_eq(seen, (int)count);
    for (int k = 0; k < seen; k++) {
        char code[64], message[300], source_offset[32];
        ck_assert(header(letters[k], "profiled-error-code", code, sizeof(code)) != NULL);
        ck_assert(header(letters[k], "profiled-error-message", message, sizeof(message)) != NULL &&
                  message[0]);
        ck_assert(header(letters[k], "profiled-source-offset", source_offset, sizeof(source_offset)) != NULL);
        size_t i;
        for (i = 0; i < count; i++)
            if (v[i].offset == atoll(source_offset))
                break;
        ck_assert_msg(i < count, "dead letter for offset %s, which was valid", source_offset);
        ck_assert_msg(!v[i].seen, "vector %s dead-lettered twice", v[i].name);
        v[i].seen = true;
        ck_assert_msg(strcmp(code, v[i].error) == 0, "vector %s: dead-lettered as %s, the vector says %s",
                      v[i].name, code, v[i].error);
        ck_assert_uint_eq(letters[k]->len, v[i].bytes.len);
        ck_assert(letters[k]->len == 0 || memcmp(letters[k]->payload, v[i].bytes.data, letters[k]->len) == 0);
        rd_kafka_message_destroy(letters[k]);
    }
    rd_kafka_destroy_flags(reader, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    fprintf(stderr, "%zu invalid golden vectors dead-lettered with their codes\n", count);
    for (size_t i = 0; i < count; i++) {
        free(v[i].key);
        buf_free(&v[i].bytes);
    }
    free(v);
    free(letters);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST
#endif

/* ------------------------------------------------------------------ ops listener, purge, readiness */

static bool wait_http(int port, const char *path, int status, char *body, size_t body_size, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if (it_http_get(port, path, body, body_size) == status)
            return true;
        nap_ms(100);
    }
    return false;
}

START_TEST(ops_listener_metrics_purge_and_readiness)
{
    it_t it;
    it_setup(&it, "ops", 1);
    it_exec(&it, "INSERT INTO applied_commands VALUES ('\\x0001'::bytea, 'old', now() - interval '2 hours'), "
                 "('\\x0002'::bytea, 'fresh', now())");
    /* port 0: the kernel's pick, read back from the log (a port picked free here could be
     * taken by another process before the worker binds it) */
    const char *env[] = {"PROFILED_OPS_PORT=0", "PROFILED_APPLIED_RETENTION=1h", "PROFILED_PURGE_INTERVAL=1s",
                         NULL};
    pid_t pid = it_worker_start(&it, env);
    int port = it_wait_ops_port(it.log_path, 30000);
    static char body[65536];
    ck_assert_msg(wait_http(port, "/healthz", 200, body, sizeof(body), 15000), "/healthz never answered 200");
    ck_assert_msg(wait_http(port, "/readyz", 200, body, sizeof(body), 20000), "/readyz never 200: %s", body);
    ck_assert_int_eq(it_http_get(port, "/nope", NULL, 0), 404);

    it_produce(&it, "ops0", 1, false, 0, 0);
    it_produce(&it, "ops0", 1, false, 0, 0); /* duplicate */
    it_produce(&it, "ops1", 2, true, 5, 0);
    it_produce(&it, "ops1", 3, true, 4, 0);    /* stale */
    it_produce_raw(&it, "ops2", 4, "\xc1", 1); /* dead letter */
    it_flush(&it);
    expect_caught_up(&it);
    ck_assert_int_eq(it_http_get(port, "/metrics", body, sizeof(body)), 200);
    ck_assert_msg(strstr(body, "profiled_worker_commands_applied_total 2\n"), "%s", body);
    ck_assert_msg(strstr(body, "profiled_worker_commands_skipped_total{reason=\"duplicate\"} 1\n"), "%s",
                  body);
    ck_assert_msg(strstr(body, "profiled_worker_commands_skipped_total{reason=\"stale_version\"} 1\n"), "%s",
                  body);
    ck_assert_msg(strstr(body, "profiled_worker_commands_dead_lettered_total 1\n"), "%s", body);
    ck_assert_msg(strstr(body, "profiled_worker_batch_size_count"), "%s", body);
    ck_assert_msg(strstr(body, "profiled_worker_apply_seconds_bucket"), "%s", body);
    char lag[256];
    snprintf(lag, sizeof(lag), "profiled_worker_lag{topic=\"%s\",partition=\"0\"} 0", it.topic);
    bool lag_zero = false;
    for (int i = 0; i < 300 && !lag_zero; i++) {
        lag_zero = it_http_get(port, "/metrics", body, sizeof(body)) == 200 && strstr(body, lag);
        if (!lag_zero)
            nap_ms(100);
    }
    ck_assert_msg(lag_zero, "no %s in /metrics", lag);

    /* the purge removed the id older than the retention, kept the others */
    bool purged = false;
    for (int i = 0; i < 300 && !purged; i++) {
        purged = it_int(&it, "SELECT count(*) FROM applied_commands WHERE recipient_id = 'old'") == 0;
        if (!purged)
            nap_ms(100);
    }
    ck_assert_msg(purged, "the old applied id was not purged");
    /* fresh + 2 applied + 1 stale (recorded as processed) */
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), 4);

    /* readiness follows PostgreSQL */
    it_stack(&it, "stop", "postgres");
    bool unready = wait_http(port, "/readyz", 503, body, sizeof(body), 15000);
    it_stack(&it, "start", "postgres");
    PQreset(it.pg);
    ck_assert_msg(unready, "/readyz stayed 200 with PostgreSQL down");
    ck_assert_msg(wait_http(port, "/readyz", 200, body, sizeof(body), 30000),
                  "/readyz not 200 after PostgreSQL came back");
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ streams with faults */

/* A stream of `total` commands over `recipients` recipients ("<prefix><r>"),
 * produced by a thread in `chunks` chunks `pause_ms` apart, while the test's
 * thread injects faults. last[r] is the seq of recipient r's last command.
 * The stream produces only the first `allowed` chunks until the test allows
 * more (stream_allow): a test whose faults need commands still coming ties the
 * stream to its own steps, not to a guess of how long they take on a loaded
 * machine. */
typedef struct stream {
    it_t *it;
    const char *prefix;
    int total, recipients, chunks, pause_ms;
    size_t pad;
    uint64_t *last;
    atomic_int chunks_done;
    atomic_int allowed;
    atomic_bool done;
    pthread_t thread;
} stream_t;

/* Waits until chunk k (from 0) may be produced. */
static void stream_gate(atomic_int *allowed, int k)
{
    while (k >= atomic_load(allowed))
        nap_ms(20);
}

/* Lets the stream produce its first n chunks (never fewer than already allowed). */
static void stream_allow(stream_t *s, int n)
{
    if (n > s->chunks)
        n = s->chunks;
    if (n > atomic_load(&s->allowed))
        atomic_store(&s->allowed, n);
}

static void *stream_run(void *arg)
{
    stream_t *s = arg;
    int per_chunk = s->total / s->chunks;
    uint64_t seq = 1;
    for (int k = 0; k < s->chunks; k++) {
        stream_gate(&s->allowed, k);
        for (int i = 0; i < per_chunk; i++, seq++) {
            int r = (int)((seq * 7919) % (uint64_t)s->recipients);
            char recipient[64];
            snprintf(recipient, sizeof(recipient), "%s%d", s->prefix, r);
            it_produce(s->it, recipient, seq, false, 0, s->pad);
            s->last[r] = seq;
        }
        it_flush(s->it);
        atomic_store(&s->chunks_done, k + 1);
        nap_ms(s->pause_ms);
    }
    atomic_store(&s->done, true);
    return NULL;
}

/* Starts a stream allowed its first `allowed` chunks only (see stream_allow). */
static void stream_start_held(stream_t *s, it_t *it, const char *prefix, int total, int recipients,
                              int chunks, int pause_ms, size_t pad, uint64_t *last, int allowed)
{
    s->it = it;
    s->prefix = prefix;
    s->total = total;
    s->recipients = recipients;
    s->chunks = chunks;
    s->pause_ms = pause_ms;
    s->pad = pad;
    s->last = last;
    atomic_init(&s->chunks_done, 0);
    atomic_init(&s->allowed, allowed < chunks ? allowed : chunks);
    atomic_init(&s->done, false);
    ck_assert_int_eq(pthread_create(&s->thread, NULL, stream_run, s), 0);
}

static void stream_start(stream_t *s, it_t *it, const char *prefix, int total, int recipients, int chunks,
                         int pause_ms, size_t pad, uint64_t *last)
{
    stream_start_held(s, it, prefix, total, recipients, chunks, pause_ms, pad, last, chunks);
}

static void stream_join(stream_t *s)
{
    ck_assert_int_eq(pthread_join(s->thread, NULL), 0);
}

/* Waits (up to timeout_ms) until the group's positions pass `from`: some
 * worker committed a batch. */
/* Polls until `file` holds a line matching the grep regex `pattern`, up to
 * timeout_ms; true when it does. */
static bool wait_log(const char *file, const char *pattern, int timeout_ms)
{
    char command[1400];
    snprintf(command, sizeof(command), "grep -q '%s' '%s'", pattern, file);
    for (int waited = 0;; waited += 100) {
        if (system(command) == 0)
            return true;
        if (waited >= timeout_ms)
            return false;
        nap_ms(100);
    }
}

/* The number of lines of `file` matching the grep regex `pattern` (0 when none or no file). */
static int count_log(const char *file, const char *pattern)
{
    char command[1400];
    snprintf(command, sizeof(command), "grep -c '%s' '%s' 2>/dev/null", pattern, file);
    FILE *out = popen(command, "r");
    ck_assert_ptr_nonnull(out);
    int count = 0;
    if (fscanf(out, "%d", &count) != 1)
        count = 0;
    pclose(out);
    return count;
}

static bool wait_progress(it_t *it, int64_t from, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        int64_t sum = it_positions_sum(it);
        if (sum > from)
            return true;
        nap_ms(50);
    }
    return false;
}

static void expect_exactly_once(it_t *it, const char *prefix, const uint64_t *last, int recipients, int total)
{
    expect_caught_up(it);
    int64_t wrong = rows_not_last(it, prefix, last, recipients);
    int64_t applied = it_int(it, "SELECT count(*) FROM applied_commands");
    int64_t max_writes = it_int(it, "SELECT coalesce(max(writes), 0) FROM write_counts");
    int64_t twice = it_int(it, "SELECT count(*) FROM write_counts WHERE writes <> 1");
    int64_t writes = it_int(it, "SELECT coalesce(sum(writes), 0) FROM write_counts");
    fprintf(stderr,
            "%s: %d commands, %d recipients: rows not last %" PRId64 ", ids applied %" PRId64
            ", row writes %" PRId64 ", (recipient, id) pairs written more than once %" PRId64 " (max %" PRId64
            ")\n",
            prefix, total, recipients, wrong, applied, writes, twice, max_writes);
    ck_assert_int_eq(wrong, 0);
    ck_assert_int_eq(applied, total);
    ck_assert_int_eq(twice, 0);
    ck_assert_int_eq(max_writes, 1);
}

/* ------------------------------------------------------------------ PostgreSQL outage */

START_TEST(postgres_outage_loses_nothing)
{
    it_t it;
    it_setup(&it, "pgout", 3);
    it_add_write_counter(&it);
    enum { TOTAL = 4000, RECIPIENTS = 200 };
    static uint64_t last[RECIPIENTS];
    pid_t worker = it_worker_start(&it, NULL);
    stream_t s;
    stream_start(&s, &it, "pgout", TOTAL, RECIPIENTS, 20, 400, 0, last);
    ck_assert_msg(wait_progress(&it, 0, 30000), "no progress before the outage");
    int64_t before = it_positions_sum(&it);
    it_stack(&it, "stop", "postgres");
    fprintf(stderr, "postgres stopped at position sum %" PRId64 "\n", before);
    nap_ms(4000); /* the stream goes on; the worker retries with backoff */
    ck_assert_msg(it_worker_alive(worker), "the worker died while PostgreSQL was down");
    it_stack(&it, "start", "postgres");
    PQreset(it.pg);
    fprintf(stderr, "postgres started\n");
    stream_join(&s);
    expect_exactly_once(&it, "pgout", last, RECIPIENTS, TOTAL);
    ck_assert_msg(it_worker_alive(worker), "the worker exited");
    expect_stops_cleanly(&it, worker);
    it_teardown(&it);
}
END_TEST

/* Partitions assigned while PostgreSQL is down: their positions cannot be
 * read, so they must stay paused and start at PostgreSQL's positions once it
 * is back (the resync's seek). Here the second worker leaves during an
 * outage, so the first is handed its partitions then. */
START_TEST(partitions_assigned_during_an_outage_start_at_the_right_positions)
{
    it_t it;
    it_setup(&it, "outjoin", 6);
    it_add_write_counter(&it);
    enum { TOTAL = 6000, RECIPIENTS = 300 };
    static uint64_t last[RECIPIENTS];
    pid_t first = it_worker_start(&it, NULL);
    stream_t s;
    stream_start(&s, &it, "outjoin", TOTAL, RECIPIENTS, 30, 400, 0, last);
    ck_assert_msg(wait_progress(&it, 0, 30000), "no progress");
    pid_t second = it_worker_start_tagged(&it, NULL, "second");
    char second_log[1100];
    snprintf(second_log, sizeof(second_log), "%s.second", it.log_path);
    ck_assert_msg(wait_log(second_log, "\"partitions assigned\",\"partitions\":[1-9]", 30000),
                  "the second worker got no partition within 30 s");
    nap_ms(1000);
    it_stack(&it, "stop", "postgres");
    int status = it_worker_stop(second, 30000);
    ck_assert_msg(status == 0, "second worker exit status %d (leaving during an outage)", status);
    /* the first is handed the second's partitions now, with PostgreSQL down */
    bool unread = wait_log(it.log_path, "positions not read yet", 20000);
    nap_ms(2000);
    it_stack(&it, "start", "postgres");
    PQreset(it.pg);
    ck_assert_msg(unread, "the first worker was not assigned partitions during the outage");
    stream_join(&s);
    expect_exactly_once(&it, "outjoin", last, RECIPIENTS, TOTAL);
    ck_assert_msg(it_worker_alive(first), "the first worker exited during the outage");
    expect_stops_cleanly(&it, first);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ crash */

START_TEST(sigkill_at_random_moments_changes_nothing)
{
    it_t it;
    it_setup(&it, "crash", 6);
    it_add_write_counter(&it);
    enum { TOTAL = 20000, RECIPIENTS = 1000, CHUNKS = 40, KILLS = 5, MAX_KILLS = 12, PER_KILL = 6 };
    static uint64_t last[RECIPIENTS];
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "crash test seed %u\n", seed);
    pid_t worker = it_worker_start(&it, NULL);
    stream_t s;
    stream_start_held(&s, &it, "crash", TOTAL, RECIPIENTS, CHUNKS, 1100, 64, last, 0);
    /* Kill only a worker that is applying: after a restart the group first waits
     * for the killed member's session to expire, so wait for the new worker's
     * first commit, then kill it a random moment later (most often mid-batch).
     * Each round first lets the stream produce PER_KILL more chunks (never its
     * last), so every restarted worker has commands to apply: how many rounds
     * fit in the stream no longer depends on how long a restart takes (on a
     * loaded box a round took longer than the stream lasted). */
    int kills = 0, kills_while_applying = 0;
    while (kills < MAX_KILLS && kills_while_applying < KILLS + 1) {
        int allowed = atomic_load(&s.allowed) + PER_KILL;
        stream_allow(&s, allowed < CHUNKS - 1 ? allowed : CHUNKS - 1);
        int64_t from = it_positions_sum(&it);
        bool applying = wait_progress(&it, from, 60000);
        nap_ms((int)(rand_r(&seed) % 800));
        it_worker_kill(worker);
        kills++;
        kills_while_applying += applying;
        fprintf(stderr, "kill %d (%s) at position sum %" PRId64 ", %d/%d chunks produced\n", kills,
                applying ? "while applying" : "idle", it_positions_sum(&it), atomic_load(&s.chunks_done),
                CHUNKS);
        worker = it_worker_start(&it, NULL);
    }
    /* the rest after the last restart: the last worker applies them, so it is past its
     * start-up (SIGTERM handler installed) once caught up */
    stream_allow(&s, CHUNKS);
    stream_join(&s);
    fprintf(stderr, "worker killed %d times, %d of them while applying\n", kills, kills_while_applying);
    ck_assert_int_ge(kills_while_applying, KILLS);
    expect_exactly_once(&it, "crash", last, RECIPIENTS, TOTAL);
    expect_stops_cleanly(&it, worker);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ crash, all kinds */

/* The model of one recipient, applied one command at a time in produce order. */
typedef struct kinds_model {
    int state;       /* 0: no profile, 1: {"recipient", "seq"}, 2: {"seq"} only */
    uint64_t seq;    /* the profile's seq */
    uint64_t writer; /* seq of the command that last wrote the row; 0: none */
} kinds_model_t;

typedef struct kinds_stream {
    it_t *it;
    int total, recipients, chunks;
    kinds_model_t *model;
    int refused;
    atomic_int chunks_done;
    atomic_int allowed; /* chunks it may produce so far (stream_gate) */
    pthread_t thread;
} kinds_stream_t;

/* kind 0-4 replace {"recipient","seq"}, 5-7 merge {"seq"}, 8 patch (test /recipient,
 * then replace /seq: refused without a recipient), 9 delete. A recipient never written
 * (only refused patches) has no row. */
static void *kinds_stream_run(void *arg)
{
    kinds_stream_t *s = arg;
    int per_chunk = s->total / s->chunks;
    uint64_t seq = 1;
    buf_t body = {0};
    for (int k = 0; k < s->chunks; k++) {
        stream_gate(&s->allowed, k);
        for (int i = 0; i < per_chunk; i++, seq++) {
            int r = (int)((seq * 7919) % (uint64_t)s->recipients);
            kinds_model_t *m = &s->model[r];
            char recipient[64];
            snprintf(recipient, sizeof(recipient), "kinds%d", r);
            int kind = (int)((seq / 7) % 10); /* not seq % 10: that would tie a kind to a recipient */
            buf_reset(&body);
            if (kind < 5) {
                mp_write_map_header(&body, 2);
                mp_write_str(&body, "recipient", 9);
                mp_write_str(&body, recipient, (uint32_t)strlen(recipient));
                mp_write_str(&body, "seq", 3);
                mp_write_uint(&body, seq);
                it_produce_kind(s->it, recipient, seq, CODEC_OP_REPLACE, body.data, body.len);
                *m = (kinds_model_t){.state = 1, .seq = seq, .writer = seq};
            } else if (kind < 8) {
                mp_write_map_header(&body, 1);
                mp_write_str(&body, "seq", 3);
                mp_write_uint(&body, seq);
                it_produce_kind(s->it, recipient, seq, CODEC_OP_MERGE, body.data, body.len);
                *m = (kinds_model_t){.state = m->state == 1 ? 1 : 2, .seq = seq, .writer = seq};
            } else if (kind == 8) {
                mp_write_array_header(&body, 2);
                mp_write_map_header(&body, 3);
                mp_write_str(&body, "op", 2);
                mp_write_str(&body, "test", 4);
                mp_write_str(&body, "path", 4);
                mp_write_str(&body, "/recipient", 10);
                mp_write_str(&body, "value", 5);
                mp_write_str(&body, recipient, (uint32_t)strlen(recipient));
                mp_write_map_header(&body, 3);
                mp_write_str(&body, "op", 2);
                mp_write_str(&body, "replace", 7);
                mp_write_str(&body, "path", 4);
                mp_write_str(&body, "/seq", 4);
                mp_write_str(&body, "value", 5);
                mp_write_uint(&body, seq);
                it_produce_kind(s->it, recipient, seq, CODEC_OP_PATCH, body.data, body.len);
                if (m->state == 1)
                    *m = (kinds_model_t){.state = 1, .seq = seq, .writer = seq};
                else
                    s->refused++;
            } else {
                it_produce_kind(s->it, recipient, seq, CODEC_OP_DELETE, NULL, 0);
                *m = (kinds_model_t){.state = 0, .seq = 0, .writer = seq};
            }
        }
        it_flush(s->it);
        atomic_store(&s->chunks_done, k + 1);
        nap_ms(600);
    }
    buf_free(&body);
    return NULL;
}

/* Rows that differ from the model: profile (NULL when deleted) and writer. */
static int64_t kinds_rows_wrong(it_t *it, const kinds_model_t *model, int recipients)
{
    buf_t sql = {0};
    buf_appendf(&sql, "SELECT count(*) FROM (VALUES ");
    for (int r = 0; r < recipients; r++) {
        const kinds_model_t *m = &model[r];
        buf_appendf(&sql, "%s('kinds%d', ", r ? "," : "", r);
        if (m->state == 1)
            buf_appendf(&sql, "'{\"recipient\":\"kinds%d\",\"seq\":%" PRIu64 "}'", r, m->seq);
        else if (m->state == 2)
            buf_appendf(&sql, "'{\"seq\":%" PRIu64 "}'", m->seq);
        else
            buf_appendf(&sql, "NULL");
        buf_appendf(&sql, ", %" PRIu64 ")", m->writer);
    }
    buf_appendf(&sql,
                ") AS e(r, p, w) LEFT JOIN profiles x ON x.recipient_id = e.r "
                "WHERE (x.recipient_id IS NULL) <> (e.w = 0) OR x.profile IS DISTINCT FROM e.p::jsonb "
                "OR x.command_id <> decode(lpad(to_hex(%" PRId64
                "::bigint), 16, '0') || lpad(to_hex(e.w), 16, '0'), 'hex')",
                (int64_t)it->nonce);
    buf_terminate(&sql);
    /* the first few differences, for the log */
    buf_t show = {0};
    buf_appendf(
        &show,
        "SELECT string_agg(line, ' | ') FROM (SELECT e.r || ': want ' || coalesce(e.p, 'none') || ' by ' || "
        "e.w || ', got ' || coalesce(x.profile::text, 'none') || ' by ' || "
        "coalesce(('x' || right(encode(x.command_id, 'hex'), 16))::bit(64)::bigint::text, '?') AS line %s "
        "LIMIT 5) q",
        strstr((const char *)sql.data, "FROM (VALUES"));
    buf_terminate(&show);
    PGresult *res = PQexec(it->pg, (const char *)show.data);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        fprintf(stderr, "kinds rows wrong: %s\n", PQgetvalue(res, 0, 0));
    PQclear(res);
    buf_free(&show);
    int64_t n = it_int(it, (const char *)sql.data);
    buf_free(&sql);
    return n;
}

START_TEST(sigkill_during_all_kinds_changes_nothing)
{
    it_t it;
    it_setup(&it, "kinds", 6);
    enum { TOTAL = 8000, RECIPIENTS = 400, CHUNKS = 20, KILLS = 3, MAX_KILLS = 8, PER_KILL = 5 };
    static kinds_model_t model[RECIPIENTS];
    memset(model, 0, sizeof(model));
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "kinds crash test seed %u\n", seed);
    pid_t worker = it_worker_start(&it, NULL);
    kinds_stream_t s = {
        .it = &it, .total = TOTAL, .recipients = RECIPIENTS, .chunks = CHUNKS, .model = model};
    atomic_init(&s.chunks_done, 0);
    atomic_init(&s.allowed, 0);
    ck_assert_int_eq(pthread_create(&s.thread, NULL, kinds_stream_run, &s), 0);
    /* as in sigkill_at_random_moments_changes_nothing: each round lets PER_KILL more chunks
     * (never the last) be produced, so a restarted worker always has commands to apply */
    int kills = 0, kills_while_applying = 0;
    while (kills < MAX_KILLS && kills_while_applying < KILLS) {
        int allowed = atomic_load(&s.allowed) + PER_KILL;
        atomic_store(&s.allowed, allowed < CHUNKS - 1 ? allowed : CHUNKS - 1);
        int64_t from = it_positions_sum(&it);
        bool applying = wait_progress(&it, from, 60000);
        nap_ms((int)(rand_r(&seed) % 800));
        it_worker_kill(worker);
        kills++;
        kills_while_applying += applying;
        worker = it_worker_start(&it, NULL);
    }
    /* The rest after the last restart: the last worker must apply it, so once caught up it is
     * past its start-up and has its SIGTERM handler (a SIGTERM during start-up exits 143; a
     * fixed 3 s nap stood for this before). */
    atomic_store(&s.allowed, CHUNKS);
    ck_assert_int_eq(pthread_join(s.thread, NULL), 0);
    expect_caught_up(&it);
    int64_t wrong = kinds_rows_wrong(&it, model, RECIPIENTS);
    int64_t processed = it_int(&it, "SELECT count(*) FROM applied_commands");
    int64_t refused = it_int(&it, "SELECT count(*) FROM applied_commands WHERE outcome = 'refused'");
    fprintf(stderr,
            "kinds: %d commands, killed %d times (%d applying): rows wrong %" PRId64 ", processed %" PRId64
            ", refused %" PRId64 " (model %d)\n",
            TOTAL, kills, kills_while_applying, wrong, processed, refused, s.refused);
    ck_assert_int_ge(kills_while_applying, KILLS);
    ck_assert_int_eq(wrong, 0);
    ck_assert_int_eq(processed, TOTAL);
    ck_assert_int_eq(refused, s.refused);
    ck_assert_int_gt(refused, 0);
    expect_stops_cleanly(&it, worker);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ rebalance */

START_TEST(a_second_worker_joins_and_leaves)
{
    it_t it;
    it_setup(&it, "rebal", 6);
    it_add_write_counter(&it);
    enum { TOTAL = 12000, RECIPIENTS = 600, CHUNKS = 30 };
    static uint64_t last[RECIPIENTS];
    pid_t first = it_worker_start(&it, NULL);
    /* The stream is let on in thirds, after each step of the test, so the second worker
     * joins and leaves while commands still come, however long each step takes on a
     * loaded box (with a free-running stream it could end before the second left). */
    stream_t s;
    stream_start_held(&s, &it, "rebal", TOTAL, RECIPIENTS, CHUNKS, 800, 64, last, CHUNKS / 3);
    ck_assert_msg(wait_progress(&it, 0, 30000), "the first worker made no progress");
    nap_ms(2000);
    pid_t second = it_worker_start_tagged(&it, NULL, "second");
    fprintf(stderr, "second worker joined at %d/%d chunks\n", atomic_load(&s.chunks_done), CHUNKS);
    /* it must get partitions (cooperative: taken from the first without stopping it) */
    char second_log[1100];
    snprintf(second_log, sizeof(second_log), "%s.second", it.log_path);
    ck_assert_msg(wait_log(second_log, "\"partitions assigned\",\"partitions\":[1-9]", 60000),
                  "the second worker got no partition within 60 s");
    stream_allow(&s, 2 * CHUNKS / 3);
    int64_t from = it_positions_sum(&it);
    ck_assert_msg(wait_progress(&it, from, 30000), "no progress with two workers");
    nap_ms(3000);
    int status = it_worker_stop(second, 30000);
    ck_assert_msg(status == 0, "second worker exit status %d", status);
    fprintf(stderr, "second worker left at %d/%d chunks\n", atomic_load(&s.chunks_done), CHUNKS);
    ck_assert_msg(!atomic_load(&s.done), "the stream ended before the second worker left: not mid-stream");
    stream_allow(&s, CHUNKS);
    stream_join(&s);
    expect_exactly_once(&it, "rebal", last, RECIPIENTS, TOTAL);
    ck_assert_msg(wait_log(it.log_path, "\"partitions revoked\"", 0),
                  "the first worker never gave partitions up");
    expect_stops_cleanly(&it, first);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ zombie */

/* A worker frozen (SIGSTOP) past its session timeout is expelled; the other
 * takes its partitions and moves their positions. Thawed (SIGCONT), the
 * zombie may still hold an open batch for partitions it no longer owns: the
 * fenced position update must refuse it, so nothing is applied twice. */
START_TEST(a_frozen_worker_cannot_apply_after_losing_its_partitions)
{
    it_t it;
    it_setup(&it, "zombie", 6);
    it_add_write_counter(&it);
    enum { TOTAL = 12000, RECIPIENTS = 600, CHUNKS = 40 };
    static uint64_t last[RECIPIENTS];
    /* a long batch window, so that the zombie is likely frozen with a batch open */
    const char *env[] = {"PROFILED_BATCH_MAX_WAIT=400ms", NULL};
    pid_t first = it_worker_start(&it, env);
    /* The stream is let on step by step (stream_allow), so commands still come while the
     * first worker is frozen and after it was expelled, however long the steps take. */
    stream_t s;
    stream_start_held(&s, &it, "zombie", TOTAL, RECIPIENTS, CHUNKS, 500, 64, last, CHUNKS / 2);
    ck_assert_msg(wait_progress(&it, 0, 30000), "no progress");
    pid_t second = it_worker_start_tagged(&it, env, "second");
    char second_log[1100];
    snprintf(second_log, sizeof(second_log), "%s.second", it.log_path);
    static const char assigned[] = "\"partitions assigned\",\"partitions\":[1-9]";
    ck_assert_msg(wait_log(second_log, assigned, 60000), "the second worker got no partition within 60 s");
    nap_ms(1000);
    int assignments = count_log(second_log, assigned);
    kill(first, SIGSTOP);
    fprintf(stderr, "first worker frozen at %d/%d chunks\n", atomic_load(&s.chunks_done), CHUNKS);
    stream_allow(&s, 3 * CHUNKS / 4);
    /* Expelled once its session (6 s) expires: the second is then assigned its partitions.
     * That assignment is what is waited for, not a fixed time. */
    int waited = 0;
    while (count_log(second_log, assigned) <= assignments) {
        ck_assert_msg(waited < 60000, "the frozen worker's partitions never went to the second");
        nap_ms(100);
        waited += 100;
    }
    fprintf(stderr, "first worker expelled after %d ms frozen\n", waited);
    int64_t from = it_positions_sum(&it);
    stream_allow(&s, CHUNKS - 1);
    ck_assert_msg(wait_progress(&it, from, 30000), "no progress while the first worker is frozen");
    kill(first, SIGCONT);
    fprintf(stderr, "first worker thawed at %d/%d chunks\n", atomic_load(&s.chunks_done), CHUNKS);
    stream_allow(&s, CHUNKS);
    stream_join(&s);
    expect_exactly_once(&it, "zombie", last, RECIPIENTS, TOTAL);
    int status = it_worker_stop(second, 30000);
    ck_assert_msg(status == 0, "second worker exit status %d", status);
    expect_stops_cleanly(&it, first);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ the guarantees, one by one */

/* Waits until Kafka's committed offsets of the group (the copy for lag tools)
 * equal PostgreSQL's next_offset on every partition; false (and the first
 * difference in `differs`) after timeout_ms. */
static bool wait_committed(it_t *it, int timeout_ms, char *differs, size_t differs_size)
{
    differs[0] = '\0';
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", it->brokers, errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "group.id", it->group, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK);
    rd_kafka_t *reader = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    ck_assert_msg(reader != NULL, "%s", errstr);
    bool equal = false;
    for (int waited = 0; !equal && waited < timeout_ms; waited += 500) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(it->partitions);
        for (int p = 0; p < it->partitions; p++)
            rd_kafka_topic_partition_list_add(list, it->topic, p);
        rd_kafka_resp_err_t err = rd_kafka_committed(reader, list, 10000);
        equal = err == RD_KAFKA_RESP_ERR_NO_ERROR;
        for (int p = 0; p < it->partitions && equal; p++) {
            char sql[512];
            snprintf(
                sql, sizeof(sql),
                "SELECT next_offset FROM kafka_positions WHERE consumer_group = '%s' AND topic = '%s' AND "
                "partition = %d",
                it->group, it->topic, p);
            int64_t next = it_int(it, sql);
            equal = list->elems[p].offset == next;
            if (!equal)
                snprintf(differs, differs_size, "partition %d: Kafka %" PRId64 ", PostgreSQL %" PRId64, p,
                         list->elems[p].offset, next);
        }
        rd_kafka_topic_partition_list_destroy(list);
        if (!equal)
            nap_ms(500);
    }
    rd_kafka_destroy(reader);
    return equal;
}

/* A command of the fence test: recipient "fence<seq>", profile {} (msgpack 0x80). */
static void fence_item(it_t *it, batch_item_t *item, char *recipient, size_t recipient_size, uint64_t seq,
                       int64_t offset)
{
    static const uint8_t empty_map[] = {0x80};
    memset(item, 0, sizeof(*item));
    snprintf(recipient, recipient_size, "fence%" PRIu64, seq);
    item->partition = 0;
    item->offset = offset;
    item->kind = BATCH_COMMAND;
    item->command.recipient_id = recipient;
    item->command.recipient_id_len = strlen(recipient);
    it_command_id(it, seq, item->command.command_id);
    item->command.profile_msgpack = empty_map;
    item->command.profile_msgpack_len = sizeof(empty_map);
}

static int64_t fence_position(it_t *it)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce((SELECT next_offset FROM kafka_positions WHERE consumer_group = '%s' AND "
             "topic = '%s' AND partition = 0), -1)",
             it->group, it->topic);
    return it_int(it, sql);
}

/* The fence, driven directly: another member moved partition 0 to 10 while this
 * one still believes 5 (or believes no position is stored). apply_run must
 * refuse the batch before writing anything: no row, no id, the position kept.
 * Then the same batch at the true position applies (the test can pass). */
START_TEST(a_batch_whose_positions_moved_is_refused_and_writes_nothing)
{
    it_t it;
    it_setup(&it, "fence", 1);
    PGconn *conn = PQconnectdb(it.dsn);
    ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
    char sql[512];
    snprintf(sql, sizeof(sql), "INSERT INTO kafka_positions VALUES ('%s', '%s', 0, 10, now())", it.group,
             it.topic);
    it_exec(&it, sql);

    char recipients[2][32];
    batch_item_t items[2];
    batch_t batch = {.items = items, .count = 2, .cap = 2};
    fence_item(&it, &items[0], recipients[0], sizeof(recipients[0]), 1, 5);
    fence_item(&it, &items[1], recipients[1], sizeof(recipients[1]), 2, 6);
    limits_t limits = limits_default();
    apply_scratch_t *scratch = apply_scratch_new(&limits);
    apply_counts_t counts;
    char errstr[1024] = "";

    struct {
        bool stored;
        int64_t expected;
    } stale[] = {{true, 5}, {false, 0}};
    for (size_t i = 0; i < sizeof(stale) / sizeof(stale[0]); i++) {
        apply_position_t position = {
            .partition = 0, .stored = stale[i].stored, .expected = stale[i].expected, .next = 7};
        apply_status_t status = apply_run(conn, scratch, it.group, it.topic, &batch, 0, 2, &position, 1,
                                          &counts, errstr, sizeof(errstr));
        fprintf(stderr, "expecting %s%" PRId64 ": status %d (%s)\n", stale[i].stored ? "" : "none/",
                stale[i].expected, (int)status, errstr);
        ck_assert_int_eq(status, APPLY_FENCED);
        ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM profiles"), 0);
        ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), 0);
        ck_assert_int_eq(fence_position(&it), 10);
    }

    items[0].offset = 10;
    items[1].offset = 11;
    apply_position_t position = {.partition = 0, .stored = true, .expected = 10, .next = 12};
    apply_status_t status = apply_run(conn, scratch, it.group, it.topic, &batch, 0, 2, &position, 1, &counts,
                                      errstr, sizeof(errstr));
    ck_assert_msg(status == APPLY_OK, "at the true position: status %d (%s)", (int)status, errstr);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM profiles WHERE profile = '{}'::jsonb"), 2);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), 2);
    ck_assert_int_eq(fence_position(&it), 12);

    apply_scratch_destroy(scratch);
    PQfinish(conn);
    it_teardown(&it);
}
END_TEST

typedef struct id_race {
    PGconn *conn;
    apply_scratch_t *scratch;
    it_t *it;
    batch_t *batch;
    apply_position_t position;
    apply_counts_t counts;
    char errstr[1024];
    apply_status_t status;
} id_race_t;

static void *id_race_apply(void *arg)
{
    id_race_t *r = arg;
    r->status = apply_run(r->conn, r->scratch, r->it->group, r->it->topic, r->batch, 0, r->batch->count,
                          &r->position, 1, &r->counts, r->errstr, sizeof(r->errstr));
    return NULL;
}

/* Runs the race's batch on a thread until it waits on a lock (its statement LIKE `query_like`)
 * held by `other`'s open transaction, then commits that transaction and joins: the batch's
 * status is in race->status. */
static void id_race_apply_past(id_race_t *race, PGconn *other, const char *query_like, const char *what)
{
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, id_race_apply, race), 0);
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%s'",
             query_like);
    for (int waited = 0; it_int(race->it, sql) == 0; waited += 20) {
        ck_assert_msg(waited < 10000, "the batch never waited on the uncommitted %s", what);
        nap_ms(20);
    }
    PGresult *res = PQexec(other, "COMMIT");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    pthread_join(thread, NULL);
    fprintf(stderr, "while the %s was being recorded elsewhere: status %d (%s)\n", what, (int)race->status,
            race->errstr);
}

/* The fixture of the tests that drive apply_run directly on a batch of two commands
 * (partition 0, offsets 0 and 1, no stored position yet): their connection, the batch,
 * the run's state, and with `with_other` a second connection for a competing
 * transaction. The fixture must stay where it is: the run points into it. */
typedef struct apply_fixture {
    it_t it;
    PGconn *other;
    char recipients[2][32];
    batch_item_t items[2];
    batch_t batch;
    limits_t limits;
    id_race_t run;
} apply_fixture_t;

static PGconn *apply_fixture_connect(const it_t *it)
{
    PGconn *conn = PQconnectdb(it->dsn);
    ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
    return conn;
}

static void apply_fixture_setup(apply_fixture_t *f, const char *name, bool with_other)
{
    it_setup(&f->it, name, 1);
    f->other = with_other ? apply_fixture_connect(&f->it) : NULL;
    f->batch = (batch_t){.items = f->items, .count = 2, .cap = 2};
    for (int k = 0; k < 2; k++)
        fence_item(&f->it, &f->items[k], f->recipients[k], sizeof(f->recipients[k]), (uint64_t)k + 1, k);
    f->limits = limits_default();
    f->run = (id_race_t){.conn = apply_fixture_connect(&f->it),
                         .scratch = apply_scratch_new(&f->limits),
                         .it = &f->it,
                         .batch = &f->batch,
                         .position = {.partition = 0, .stored = false, .expected = 0, .next = 2}};
}

static void apply_fixture_teardown(apply_fixture_t *f)
{
    apply_scratch_destroy(f->run.scratch);
    if (f->other)
        PQfinish(f->other);
    PQfinish(f->run.conn);
    it_teardown(&f->it);
}

/* A command id that another transaction records while this batch applies (the
 * same command produced on two partitions, applied by two lanes): the batch's
 * lookup does not see the uncommitted id, its COPY of the ids waits on the
 * primary key, and once the other commits, the batch must be retried (nothing
 * written) rather than refused as bad data (which would dead-letter a command
 * that is a plain duplicate). The retry then skips it as a duplicate. */
START_TEST(an_id_recorded_meanwhile_elsewhere_is_retried_as_a_duplicate)
{
    apply_fixture_t f;
    apply_fixture_setup(&f, "idrace", true);
    char hex[2 * 16 + 1], sql[512];
    for (int b = 0; b < 16; b++)
        snprintf(hex + 2 * b, 3, "%02x", f.items[0].command.command_id[b]);
    snprintf(sql, sizeof(sql),
             "BEGIN; INSERT INTO applied_commands (command_id, recipient_id) VALUES ('\\x%s', '%s')", hex,
             f.recipients[0]);
    PGresult *res = PQexec(f.other, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQerrorMessage(f.other));
    PQclear(res);

    id_race_apply_past(&f.run, f.other, "COPY applied_commands%", "id");
    ck_assert_msg(f.run.status == APPLY_RETRY, "status %d (%s)", (int)f.run.status, f.run.errstr);
    ck_assert_int_eq(it_int(&f.it, "SELECT count(*) FROM profiles"), 0);
    ck_assert_int_eq(fence_position(&f.it), -1);

    id_race_apply(&f.run);
    ck_assert_msg(f.run.status == APPLY_OK, "the retry: status %d (%s)", (int)f.run.status, f.run.errstr);
    ck_assert_int_eq(f.run.counts.duplicates, 1);
    ck_assert_int_eq(f.run.counts.written, 1);
    ck_assert_int_eq(it_int(&f.it, "SELECT count(*) FROM profiles"), 1);
    ck_assert_int_eq(it_int(&f.it, "SELECT count(*) FROM applied_commands"), 2);
    ck_assert_int_eq(fence_position(&f.it), 2);
    apply_fixture_teardown(&f);
}
END_TEST

/* The second fence, in the statement that moves the positions (apply_sql_positions):
 * a partition without a stored position, whose position another member inserts
 * while this batch applies (uncommitted when the first fence reads, so that one
 * passes). The batch's insert waits on it; once the other commits, the batch
 * must be refused as fenced with nothing written (its rows, ids and COMMIT go
 * in the same pipeline: a fence seen only after them must roll them back), and
 * the other member's position stays. */
START_TEST(a_position_inserted_meanwhile_fences_the_batch_at_its_commit)
{
    apply_fixture_t f;
    apply_fixture_setup(&f, "fenceins", true);
    char sql[512];
    snprintf(sql, sizeof(sql), "BEGIN; INSERT INTO kafka_positions VALUES ('%s', '%s', 0, 10, now())",
             f.it.group, f.it.topic);
    PGresult *res = PQexec(f.other, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQerrorMessage(f.other));
    PQclear(res);

    /* the batch's position insert waits on the other transaction's */
    id_race_apply_past(&f.run, f.other, "WITH v AS%kafka_positions%", "position");
    ck_assert_msg(f.run.status == APPLY_FENCED, "status %d (%s)", (int)f.run.status, f.run.errstr);
    ck_assert_int_eq(it_int(&f.it, "SELECT count(*) FROM profiles"), 0);
    ck_assert_int_eq(it_int(&f.it, "SELECT count(*) FROM applied_commands"), 0);
    ck_assert_int_eq(fence_position(&f.it), 10);
    ck_assert_int_eq(PQtransactionStatus(f.run.conn), PQTRANS_IDLE);
    apply_fixture_teardown(&f);
}
END_TEST

/* The ids cannot be recorded because of the schema, not the commands (applied_at
 * without its default, as before migration 003): the batch is retried, nothing
 * written, rather than refused as bad data (which would dead-letter every command
 * of the batch). Once the schema is right, the same batch applies. */
START_TEST(ids_the_schema_refuses_are_retried_not_dead_lettered)
{
    apply_fixture_t f;
    apply_fixture_setup(&f, "idschema", false);
    it_exec(&f.it, "ALTER TABLE applied_commands ALTER COLUMN applied_at DROP DEFAULT");

    id_race_apply(&f.run);
    fprintf(stderr, "ids refused by the schema: status %d (%s)\n", (int)f.run.status, f.run.errstr);
    ck_assert_msg(f.run.status == APPLY_RETRY, "status %d (%s)", (int)f.run.status, f.run.errstr);
    ck_assert_msg(strstr(f.run.errstr, "23502") != NULL, "%s", f.run.errstr);
    ck_assert_int_eq(it_int(&f.it, "SELECT count(*) FROM profiles"), 0);
    ck_assert_int_eq(fence_position(&f.it), -1);

    it_exec(&f.it, "ALTER TABLE applied_commands ALTER COLUMN applied_at SET DEFAULT now()");
    id_race_apply(&f.run);
    ck_assert_msg(f.run.status == APPLY_OK, "once fixed: status %d (%s)", (int)f.run.status, f.run.errstr);
    ck_assert_int_eq(it_int(&f.it, "SELECT count(*) FROM profiles"), 2);
    ck_assert_int_eq(it_int(&f.it, "SELECT count(*) FROM applied_commands"), 2);
    ck_assert_int_eq(fence_position(&f.it), 2);
    apply_fixture_teardown(&f);
}
END_TEST

/* Test-only statement triggers record txid_current() of every write to
 * profiles, applied_commands and kafka_positions. With several apply
 * connections at work, every transaction that wrote rows or ids also moved
 * positions: rows, ids and positions commit together or not at all. */
START_TEST(rows_ids_and_positions_share_one_transaction)
{
    it_t it;
    it_setup(&it, "sametx", 6);
    char sql[2048];
    snprintf(sql, sizeof(sql),
             "CREATE TABLE %1$s.tx_log (kind text NOT NULL, txid bigint NOT NULL);"
             "CREATE FUNCTION %1$s.log_tx() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "INSERT INTO %1$s.tx_log VALUES (TG_ARGV[0], txid_current()); RETURN NULL; END $$;"
             "CREATE TRIGGER log_rows AFTER INSERT OR UPDATE ON %1$s.profiles "
             "FOR EACH STATEMENT EXECUTE FUNCTION %1$s.log_tx('rows');"
             "CREATE TRIGGER log_ids AFTER INSERT ON %1$s.applied_commands "
             "FOR EACH STATEMENT EXECUTE FUNCTION %1$s.log_tx('ids');"
             "CREATE TRIGGER log_positions AFTER INSERT OR UPDATE ON %1$s.kafka_positions "
             "FOR EACH STATEMENT EXECUTE FUNCTION %1$s.log_tx('positions');",
             it.schema);
    it_exec(&it, sql);
    enum { TOTAL = 6000, RECIPIENTS = 500 };
    static uint64_t last[RECIPIENTS];
    const char *env[] = {"PROFILED_APPLY_CONNECTIONS=3", "PROFILED_BATCH_MAX_COMMANDS=300", NULL};
    pid_t pid = it_worker_start(&it, env);
    stream_t s;
    stream_start(&s, &it, "sametx", TOTAL, RECIPIENTS, 10, 100, 0, last);
    stream_join(&s);
    expect_caught_up(&it);
    ck_assert_int_eq(rows_not_last(&it, "sametx", last, RECIPIENTS), 0);
    int64_t transactions = it_int(&it, "SELECT count(DISTINCT txid) FROM tx_log WHERE kind = 'positions'");
    int64_t rows_alone =
        it_int(&it, "SELECT count(*) FROM (SELECT txid FROM tx_log WHERE kind = 'rows' EXCEPT "
                    "SELECT txid FROM tx_log WHERE kind = 'positions') AS t");
    int64_t ids_alone = it_int(&it, "SELECT count(*) FROM (SELECT txid FROM tx_log WHERE kind = 'ids' EXCEPT "
                                    "SELECT txid FROM tx_log WHERE kind = 'positions') AS t");
    int64_t positions_alone =
        it_int(&it, "SELECT count(*) FROM (SELECT txid FROM tx_log WHERE kind = 'positions' EXCEPT "
                    "SELECT txid FROM tx_log WHERE kind = 'rows') AS t");
    fprintf(stderr,
            "%" PRId64 " transactions moved positions; with rows but no position: %" PRId64
            ", with ids but no position: %" PRId64 ", positions without rows: %" PRId64 "\n",
            transactions, rows_alone, ids_alone, positions_alone);
    ck_assert_int_gt(transactions, 3);
    ck_assert_int_eq(rows_alone, 0);
    ck_assert_int_eq(ids_alone, 0);
    ck_assert_int_eq(positions_alone, 0); /* every batch here writes rows */
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* What the positions alone guarantee: with every applied id purged, a replay
 * from older positions applies the commands again, in order, and the rows end
 * exactly as before. */
START_TEST(a_replay_without_ids_leaves_the_rows_exact)
{
    it_t it;
    it_setup(&it, "replay", 3);
    enum { TOTAL = 3000, RECIPIENTS = 300 };
    static uint64_t last[RECIPIENTS];
    pid_t pid = it_worker_start(&it, NULL);
    stream_t s;
    stream_start(&s, &it, "replay", TOTAL, RECIPIENTS, 3, 0, 0, last);
    stream_join(&s);
    expect_caught_up(&it);
    ck_assert_int_eq(rows_not_last(&it, "replay", last, RECIPIENTS), 0);
    /* Kafka's copy is at the end: a worker starting from it instead of from
     * PostgreSQL's positions would replay nothing */
    char differs[256];
    ck_assert_msg(wait_committed(&it, 20000, differs, sizeof(differs)), "committed offsets differ: %s",
                  differs);
    expect_stops_cleanly(&it, pid);

    int64_t before = it_positions_sum(&it);
    it_exec(&it, "DELETE FROM applied_commands");
    it_exec(&it, "UPDATE kafka_positions SET next_offset = next_offset / 3");
    int64_t replayed = before - it_positions_sum(&it);
    fprintf(stderr, "replaying %" PRId64 " of %d commands with no applied ids\n", replayed, TOTAL);
    ck_assert_int_gt(replayed, TOTAL / 2);
    pid = it_worker_start_tagged(&it, NULL, "replay");
    expect_caught_up(&it);
    ck_assert_int_eq(rows_not_last(&it, "replay", last, RECIPIENTS), 0);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), replayed);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* Kafka's committed offsets (the copy lag tools read) reach PostgreSQL's
 * next_offset of every partition once the worker is idle. */
START_TEST(kafka_committed_offsets_equal_the_positions_when_idle)
{
    it_t it;
    it_setup(&it, "committed", 3);
    enum { TOTAL = 900, RECIPIENTS = 90 };
    static uint64_t last[RECIPIENTS];
    pid_t pid = it_worker_start(&it, NULL);
    stream_t s;
    stream_start(&s, &it, "committed", TOTAL, RECIPIENTS, 3, 0, 0, last);
    stream_join(&s);
    expect_caught_up(&it);

    char differs[256];
    ck_assert_msg(wait_committed(&it, 20000, differs, sizeof(differs)),
                  "committed offsets still differ after 20 s: %s", differs);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* The sum of a per-partition gauge of the worker's topic in /metrics, and how
 * many of its partitions read NaN, 0 and 1. False when /metrics did not answer. */
typedef struct gauge_sum {
    double sum;
    int nan, zero, one, count;
} gauge_sum_t;

static bool read_gauge(const it_t *it, int port, const char *name, gauge_sum_t *out)
{
    static char body[65536];
    memset(out, 0, sizeof(*out));
    if (it_http_get(port, "/metrics", body, sizeof(body)) != 200)
        return false;
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "%s{topic=\"%s\",partition=\"", name, it->topic);
    for (const char *line = body; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, prefix, strlen(prefix)) != 0)
            continue;
        const char *value = strchr(line, '}');
        if (!value)
            continue;
        out->count++;
        if (strncmp(value + 2, "NaN", 3) == 0) {
            out->nan++;
            continue;
        }
        double v = strtod(value + 2, NULL);
        out->sum += v;
        out->zero += v == 0.0;
        out->one += v == 1.0;
    }
    return true;
}

/* Partitions assigned while PostgreSQL is down have no position to count the lag
 * from: it counts from Kafka's committed offsets (the copy the worker writes) and
 * says so, instead of reading NaN (issue 13). And the oldest unapplied command's
 * age: NaN while not fetched, 0 once caught up, growing while a batch is held. */
START_TEST(lag_counts_from_kafka_offsets_while_positions_are_unknown)
{
    it_t it;
    it_setup(&it, "lagfb", 3);
    enum { FIRST = 300, SECOND = 200, THIRD = 60 };
    const char *env[] = {"PROFILED_OPS_PORT=0", "PROFILED_WORKER_INSTANCE_ID=lagfb", NULL};
    pid_t pid = it_worker_start(&it, env);
    int port = it_wait_ops_port(it.log_path, 30000);
    static char body[4096];
    ck_assert_msg(wait_http(port, "/readyz", 200, body, sizeof(body), 30000), "/readyz never 200: %s", body);
    uint64_t seq = 0;
    for (int i = 0; i < FIRST; i++, seq++) { /* 30 recipients: every partition has a position */
        char recipient[32];
        snprintf(recipient, sizeof(recipient), "lagfb%d", i % 30);
        it_produce(&it, recipient, seq, false, 0, 0);
    }
    it_flush(&it);
    expect_caught_up(&it);
    char differs[256];
    ck_assert_msg(wait_committed(&it, 20000, differs, sizeof(differs)), "no copy in Kafka: %s", differs);
    /* A replacement under another instance id is assigned the partitions once the
     * killed one's session expired (6 s): PostgreSQL is stopped by then. */
    it_worker_kill(pid);
    const char *env2[] = {"PROFILED_OPS_PORT=0", "PROFILED_WORKER_INSTANCE_ID=lagfb-2", NULL};
    pid = it_worker_start_tagged(&it, env2, "second");
    char second_log[1100];
    snprintf(second_log, sizeof(second_log), "%s.second", it.log_path);
    ck_assert_msg(wait_log(second_log, "\"consuming\"", 30000), "the replacement did not start consuming");
    port = it_wait_ops_port(second_log, 30000);
    /* Frozen while PostgreSQL stops: the assignment (due once the killed one's session
     * expires) is then taken only with PostgreSQL down, however long the stop takes on a
     * loaded box (it raced the session expiry before). */
    kill(pid, SIGSTOP);
    ck_assert_msg(count_log(second_log, "\"partitions assigned\",\"partitions\":[1-9]") == 0,
                  "the replacement was assigned partitions before PostgreSQL could be stopped");
    it_stack(&it, "stop", "postgres");
    kill(pid, SIGCONT);
    for (int i = 0; i < SECOND; i++, seq++) {
        char recipient[32];
        snprintf(recipient, sizeof(recipient), "lagfb%d", i % 30);
        it_produce(&it, recipient, seq, false, 0, 0);
    }
    it_flush(&it);
    bool unread = wait_log(second_log, "positions not read yet", 30000);
    gauge_sum_t lag = {0}, source = {0}, oldest = {0};
    bool counted = false;
    for (int waited = 0; unread && !counted && waited < 20000; waited += 200) {
        counted = read_gauge(&it, port, "profiled_worker_lag", &lag) &&
                  read_gauge(&it, port, "profiled_worker_lag_from_kafka_offsets", &source) &&
                  lag.count == it.partitions && lag.nan == 0 && lag.sum == SECOND &&
                  source.one == it.partitions;
        if (!counted)
            nap_ms(200);
    }
    ck_assert_msg(read_gauge(&it, port, "profiled_worker_oldest_unapplied_age_seconds", &oldest),
                  "no /metrics");
    fprintf(stderr, "PostgreSQL down at assignment: lag %.0f (NaN on %d of %d), from Kafka's offsets on %d\n",
            lag.sum, lag.nan, lag.count, source.one);
    it_stack(&it, "start", "postgres");
    PQreset(it.pg);
    ck_assert_msg(unread, "the worker was not assigned partitions while PostgreSQL was down");
    ck_assert_msg(counted, "lag %.0f (NaN on %d partitions, from Kafka's offsets on %d of %d), expected %d",
                  lag.sum, lag.nan, source.one, it.partitions, SECOND);
    ck_assert_int_eq(oldest.nan, it.partitions); /* no position: no command known to be the oldest */

    expect_caught_up(&it);
    bool settled = false;
    for (int waited = 0; !settled && waited < 20000; waited += 200) {
        settled = read_gauge(&it, port, "profiled_worker_lag", &lag) &&
                  read_gauge(&it, port, "profiled_worker_lag_from_kafka_offsets", &source) &&
                  read_gauge(&it, port, "profiled_worker_oldest_unapplied_age_seconds", &oldest) &&
                  lag.sum == 0 && lag.nan == 0 && source.zero == it.partitions &&
                  oldest.zero == it.partitions;
        if (!settled)
            nap_ms(200);
    }
    ck_assert_msg(settled, "after catching up: lag %.0f, from PostgreSQL on %d, oldest age 0 on %d of %d",
                  lag.sum, source.zero, oldest.zero, it.partitions);

    /* A batch that cannot commit (its positions locked here, as a stalled PostgreSQL
     * would): the command at the position was fetched, its age grows. */
    it_exec(&it, "BEGIN; LOCK TABLE kafka_positions IN ACCESS EXCLUSIVE MODE");
    for (int i = 0; i < THIRD; i++, seq++)
        it_produce(&it, "lagfb-old", seq, false, 0, 0);
    it_flush(&it);
    bool aged = false;
    for (int waited = 0; !aged && waited < 20000; waited += 200) {
        aged = read_gauge(&it, port, "profiled_worker_oldest_unapplied_age_seconds", &oldest) &&
               oldest.count == it.partitions && oldest.nan == 0 && oldest.sum >= 3.0;
        if (!aged)
            nap_ms(200);
    }
    it_exec(&it, "ROLLBACK");
    ck_assert_msg(aged, "oldest unapplied age %.1f s (NaN on %d) while the batch was held", oldest.sum,
                  oldest.nan);
    expect_caught_up(&it);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ main */

static Suite *worker_suite(void)
{
    Suite *s = suite_create("worker_integration");
    struct {
        const char *name;
        const TTest *test;
        int timeout;
    } cases[] = {
        {"basic", apply_and_read_back, 120},
        {"duplicates", same_commands_twice_apply_once, 120},
        {"stale", stale_version_is_skipped, 120},
        {"last_wins", batch_with_many_commands_per_recipient_leaves_the_last, 120},
        {"big_rows", a_batch_of_large_profiles_is_copied_whole, 120},
        {"fetch_restart", a_backlog_over_a_small_queue_restarts_fetching_and_loses_nothing, 150},
        {"notify", a_batch_over_many_partitions_notifies_in_pieces, 150},
        {"dead_letters", invalid_commands_go_to_the_dead_letter_topic, 120},
        {"ops", ops_listener_metrics_purge_and_readiness, 120},
#ifdef PROFILED_INVALID_VECTORS_DIR
        {"vectors", every_invalid_golden_vector_is_dead_lettered, 150},
#endif
        {"pg_outage", postgres_outage_loses_nothing, 170},
        {"outage_join", partitions_assigned_during_an_outage_start_at_the_right_positions, 170},
        {"crash", sigkill_at_random_moments_changes_nothing, 170},
        {"crash_kinds", sigkill_during_all_kinds_changes_nothing, 170},
        {"rebalance", a_second_worker_joins_and_leaves, 170},
        {"zombie", a_frozen_worker_cannot_apply_after_losing_its_partitions, 170},
        {"fence", a_batch_whose_positions_moved_is_refused_and_writes_nothing, 60},
        {"id_race", an_id_recorded_meanwhile_elsewhere_is_retried_as_a_duplicate, 60},
        {"fence_insert", a_position_inserted_meanwhile_fences_the_batch_at_its_commit, 60},
        {"id_schema", ids_the_schema_refuses_are_retried_not_dead_lettered, 60},
        {"same_tx", rows_ids_and_positions_share_one_transaction, 120},
        {"replay", a_replay_without_ids_leaves_the_rows_exact, 120},
        {"committed", kafka_committed_offsets_equal_the_positions_when_idle, 120},
        {"lag_fallback", lag_counts_from_kafka_offsets_while_positions_are_unknown, 170},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *t = tcase_create(cases[i].name);
        tcase_set_timeout(t, cases[i].timeout);
        tcase_add_test(t, cases[i].test);
        suite_add_tcase(s, t);
    }
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(worker_suite());
    srunner_run_all(runner, CK_NORMAL);
    /* a CK_RUN_CASE that names no case would run nothing and "pass" */
    int failed = srunner_ntests_failed(runner) + (srunner_ntests_run(runner) == 0);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
