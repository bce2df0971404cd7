/*
 * Integration tests of profiled-worker against the real stack (label
 * "integration"). One Check test case per ctest entry, chosen by CK_RUN_CASE,
 * so each has its own time limit. See it_common.h for the isolation rules.
 */
#include <check.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "codec.h"
#include "it_common.h"
#include "limits.h"

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

START_TEST(apply_and_read_back)
{
    it_t it;
    it_setup(&it, "basic", 3);
    it_exec(&it, "LISTEN profiled_applied");
    it_produce(&it, "basic0", 1, false, 0, 0);
    it_produce(&it, "basic1", 2, false, 0, 0);
    it_produce(&it, "basic2", 3, true, 7, 0);
    it_flush(&it);
    pid_t pid = it_worker_start(&it, NULL);
    expect_caught_up(&it);

    uint64_t last[3] = {1, 2, 3};
    ck_assert_int_eq(rows_not_last(&it, "basic", last, 3), 0);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM profiles"), 3);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM profiles WHERE recipient_id = 'basic0' AND profile = "
                                 "'{\"recipient\": \"basic0\", \"seq\": 1}'::jsonb AND version IS NULL"),
                     1);
    ck_assert_int_eq(it_int(&it, "SELECT version FROM profiles WHERE recipient_id = 'basic2'"), 7);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), 3);
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM profiles WHERE kafka_topic = '%s' AND kafka_offset >= 0",
             it.topic);
    ck_assert_int_eq(it_int(&it, sql), 3);

    /* NOTIFY named the positions applied */
    int notified = 0;
    for (int i = 0; i < 50 && !notified; i++) {
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
    /* applied: 1, 3, 5, 10, 12 (2, 4 and 11 were stale) */
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM applied_commands"), 5);
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

START_TEST(invalid_commands_go_to_the_dead_letter_topic)
{
    it_t it;
    it_setup(&it, "dlq", 1);
    enum { BAD = 5 };
    bad_record_t bad[BAD];
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
    for (int i = 0; i < BAD; i++)
        bad_record_expect(&bad[i]);

    it_produce(&it, "dlq0", 1, false, 0, 0);
    for (int i = 0; i < BAD; i++) {
        it_produce_raw(&it, bad[i].key, bad[i].key ? strlen(bad[i].key) : 0, bad[i].value.data,
                       bad[i].value.len);
        it_produce(&it, i % 2 ? "dlq1" : "dlq2", (uint64_t)(2 + i), false, 0, 0);
    }
    it_flush(&it);
    pid_t pid = it_worker_start(&it, NULL);
    expect_caught_up(&it);
    uint64_t last[3] = {1, 5, 6};
    ck_assert_int_eq(rows_not_last(&it, "dlq", last, 3), 0);
    ck_assert_int_eq(it_int(&it, "SELECT count(*) FROM profiles WHERE recipient_id = 'dlq8'"), 0);

    /* read the dead-letter topic from the start */
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", it.brokers, errstr, sizeof(errstr)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "group.id", it.group, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK);
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    ck_assert_msg(consumer != NULL, "%s", errstr);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, it.dlq_topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert(rd_kafka_assign(consumer, list) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(list);
    int seen = 0;
    for (int polls = 0; polls < 300 && seen < BAD; polls++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        char code[64], message[300], topic[200], partition[16], offset[32];
        ck_assert_msg(header(m, "profiled-error-code", code, sizeof(code)) != NULL,
                      "dead letter without code");
        ck_assert(header(m, "profiled-error-message", message, sizeof(message)) != NULL && message[0]);
        ck_assert(header(m, "profiled-source-topic", topic, sizeof(topic)) != NULL);
        ck_assert_str_eq(topic, it.topic);
        ck_assert(header(m, "profiled-source-partition", partition, sizeof(partition)) != NULL);
        ck_assert_str_eq(partition, "0");
        ck_assert(header(m, "profiled-source-offset", offset, sizeof(offset)) != NULL);
        /* dead letters keep the source order: offsets 1, 3, 5, 7, 9 */
        ck_assert_int_eq(atoi(offset), 1 + 2 * seen);
        ck_assert_str_eq(code, bad[seen].code);
        ck_assert_uint_eq(m->len, bad[seen].value.len);
        ck_assert(memcmp(m->payload, bad[seen].value.data, m->len) == 0);
        if (bad[seen].key) {
            ck_assert_uint_eq(m->key_len, strlen(bad[seen].key));
            ck_assert(memcmp(m->key, bad[seen].key, m->key_len) == 0);
        } else
            ck_assert(m->key == NULL);
        seen++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    ck_assert_int_eq(seen, BAD);
    for (int i = 0; i < BAD; i++)
        buf_free(&bad[i].value);
    buf_free(&valid);
    expect_stops_cleanly(&it, pid);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ streams with faults */

/* A stream of `total` commands over `recipients` recipients ("<prefix><r>"),
 * produced in `chunks` chunks `pause_ms` apart; before chunk k, fault(k) runs. */
typedef void (*fault_fn)(it_t *it, int chunk, void *arg);

static void produce_stream(it_t *it, const char *prefix, int total, int recipients, int chunks, int pause_ms,
                           size_t pad, uint64_t *last, fault_fn fault, void *arg)
{
    int per_chunk = total / chunks;
    uint64_t seq = 1;
    for (int k = 0; k < chunks; k++) {
        if (fault)
            fault(it, k, arg);
        for (int i = 0; i < per_chunk; i++, seq++) {
            int r = (int)((seq * 7919) % (uint64_t)recipients);
            char recipient[64];
            snprintf(recipient, sizeof(recipient), "%s%d", prefix, r);
            it_produce(it, recipient, seq, false, 0, pad);
            last[r] = seq;
        }
        it_flush(it);
        nap_ms(pause_ms);
    }
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

typedef struct outage {
    pid_t worker;
} outage_t;

static void outage_fault(it_t *it, int chunk, void *arg)
{
    outage_t *o = arg;
    if (chunk == 3) {
        it_stack(it, "stop", "postgres");
        fprintf(stderr, "postgres stopped\n");
    } else if (chunk == 7) {
        ck_assert_msg(it_worker_alive(o->worker), "the worker died while PostgreSQL was down");
        it_stack(it, "start", "postgres");
        fprintf(stderr, "postgres started\n");
    }
}

START_TEST(postgres_outage_loses_nothing)
{
    it_t it;
    it_setup(&it, "pgout", 3);
    it_add_write_counter(&it);
    enum { TOTAL = 3000, RECIPIENTS = 200 };
    static uint64_t last[RECIPIENTS];
    outage_t o = {.worker = it_worker_start(&it, NULL)};
    produce_stream(&it, "pgout", TOTAL, RECIPIENTS, 10, 700, 0, last, outage_fault, &o);
    /* it_wait_caught_up reconnects its own session after the restart */
    PQreset(it.pg);
    expect_exactly_once(&it, "pgout", last, RECIPIENTS, TOTAL);
    ck_assert_msg(it_worker_alive(o.worker), "the worker exited");
    expect_stops_cleanly(&it, o.worker);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ crash */

typedef struct crash {
    pid_t worker;
    int kills;
    unsigned seed;
} crash_t;

static void crash_fault(it_t *it, int chunk, void *arg)
{
    crash_t *c = arg;
    /* about one kill every other chunk, at a random moment inside the chunk's pause */
    if (chunk > 0 && rand_r(&c->seed) % 2 == 0) {
        nap_ms(rand_r(&c->seed) % 400);
        it_worker_kill(c->worker);
        c->kills++;
        c->worker = it_worker_start(it, NULL);
    }
}

START_TEST(sigkill_at_random_moments_changes_nothing)
{
    it_t it;
    it_setup(&it, "crash", 6);
    it_add_write_counter(&it);
    enum { TOTAL = 20000, RECIPIENTS = 1000, CHUNKS = 20 };
    static uint64_t last[RECIPIENTS];
    crash_t c = {.worker = it_worker_start(&it, NULL), .kills = 0, .seed = (unsigned)time(NULL)};
    fprintf(stderr, "crash test seed %u\n", c.seed);
    produce_stream(&it, "crash", TOTAL, RECIPIENTS, CHUNKS, 300, 64, last, crash_fault, &c);
    /* make sure of at least 5 kills, the last ones while catching up */
    while (c.kills < 5) {
        nap_ms(300 + rand_r(&c.seed) % 700);
        it_worker_kill(c.worker);
        c.kills++;
        c.worker = it_worker_start(&it, NULL);
    }
    fprintf(stderr, "worker killed %d times\n", c.kills);
    expect_exactly_once(&it, "crash", last, RECIPIENTS, TOTAL);
    expect_stops_cleanly(&it, c.worker);
    it_teardown(&it);
}
END_TEST

/* ------------------------------------------------------------------ rebalance */

typedef struct rebalance {
    pid_t first, second;
} rebalance_t;

static void rebalance_fault(it_t *it, int chunk, void *arg)
{
    rebalance_t *r = arg;
    if (chunk == 4) {
        r->second = it_worker_start(it, NULL);
        fprintf(stderr, "second worker joined\n");
    } else if (chunk == 14) {
        int status = it_worker_stop(r->second, 30000);
        ck_assert_msg(status == 0, "second worker exit status %d", status);
        fprintf(stderr, "second worker left\n");
    }
}

START_TEST(a_second_worker_joins_and_leaves)
{
    it_t it;
    it_setup(&it, "rebal", 6);
    it_add_write_counter(&it);
    enum { TOTAL = 12000, RECIPIENTS = 600, CHUNKS = 20 };
    static uint64_t last[RECIPIENTS];
    rebalance_t r = {.first = it_worker_start(&it, NULL), .second = 0};
    produce_stream(&it, "rebal", TOTAL, RECIPIENTS, CHUNKS, 600, 64, last, rebalance_fault, &r);
    expect_exactly_once(&it, "rebal", last, RECIPIENTS, TOTAL);
    /* both took part: partitions were revoked from one and assigned to the other */
    char command[1024];
    snprintf(command, sizeof(command), "grep -c '\"partitions revoked\"' '%s' >/dev/null", it.log_path);
    ck_assert_msg(system(command) == 0, "no rebalance happened (no revocation in %s)", it.log_path);
    expect_stops_cleanly(&it, r.first);
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
        {"dead_letters", invalid_commands_go_to_the_dead_letter_topic, 120},
        {"pg_outage", postgres_outage_loses_nothing, 170},
        {"crash", sigkill_at_random_moments_changes_nothing, 170},
        {"rebalance", a_second_worker_joins_and_leaves, 170},
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
