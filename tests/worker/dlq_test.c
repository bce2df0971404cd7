/*
 * Unit test of the dead-letter producer (dlq.c) against librdkafka's own mock broker: a
 * dead letter whose delivery report proves nothing must not count as acknowledged.
 *
 * The scenario is kafka_delivery_test's: the first ProduceRequest of a dead letter (A) is
 * refused NOT_LEADER_FOR_PARTITION while a second one (B, from another dlq_send) is in flight
 * and accepted; librdkafka 2.0 then reports A delivered, without an offset, though the log
 * never got it. Had dlq_send taken that report, the worker would commit its position past the
 * command whose dead letter is lost.
 */
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dlq.h"

#define PRODUCE_API_KEY 0
#define DLQ_TOPIC       "dead"

typedef struct send_job {
    rd_kafka_t *dlq;
    batch_t batch;
    batch_item_t item;
    codec_failure_t failure; /* the item's (batch_item_t holds it by pointer) */
    int rc;
    char errstr[512];
} send_job_t;

static void job_init(send_job_t *job, rd_kafka_t *dlq, const char *value, int64_t offset)
{
    memset(job, 0, sizeof(*job));
    job->dlq = dlq;
    job->item.key = (const uint8_t *)"r";
    job->item.key_len = 1;
    job->item.value = (const uint8_t *)value;
    job->item.value_len = strlen(value);
    job->item.partition = 0;
    job->item.offset = offset;
    job->item.kind = BATCH_INVALID;
    job->failure.code = CODEC_ERR_MALFORMED;
    snprintf(job->failure.message, sizeof(job->failure.message), "test %s", value);
    job->item.failure = &job->failure;
    job->batch.items = &job->item;
    job->batch.count = job->batch.cap = 1;
}

static void *job_send(void *arg)
{
    send_job_t *job = arg;
    size_t sent = 0;
    job->rc = dlq_send(job->dlq, DLQ_TOPIC, "commands", &job->batch, 0, 1, 20000, &sent, job->errstr,
                       sizeof(job->errstr));
    return NULL;
}

/* Set by the statistics callback (on whichever thread polls the handle) once some broker
 * holds a message awaiting its response. */
static atomic_bool awaiting_response;

static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    (void)json_len;
    (void)opaque;
    static const char field[] = "\"waitresp_msg_cnt\":";
    for (const char *at = json; (at = strstr(at, field)) != NULL; at += sizeof(field) - 1)
        if (atoi(at + sizeof(field) - 1) > 0)
            atomic_store(&awaiting_response, true);
    return 0; /* librdkafka frees json */
}

static int64_t log_length(rd_kafka_t *rk)
{
    int64_t low = -1, high = -1;
    ck_assert_int_eq(rd_kafka_query_watermark_offsets(rk, DLQ_TOPIC, 0, &low, &high, 10000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    return high - low;
}

START_TEST(test_unproven_dead_letter_is_not_acknowledged)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *settings[][2] = {{"test.mock.num.brokers", "1"},
                                 {"message.timeout.ms", "15000"},
                                 {"statistics.interval.ms", "10"},
                                 {"log_level", "3"}};
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        ck_assert_msg(rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof(errstr)) ==
                          RD_KAFKA_CONF_OK,
                      "%s", errstr);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_t *dlq = dlq_new(conf, errstr, sizeof(errstr));
    ck_assert_msg(dlq != NULL, "%s", errstr);
    rd_kafka_mock_cluster_t *mcluster = rd_kafka_handle_mock_cluster(dlq);
    ck_assert_ptr_nonnull(mcluster);
    ck_assert_int_eq(rd_kafka_mock_topic_create(mcluster, DLQ_TOPIC, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);

    /* A plain acknowledgement first: producer id, metadata, connection. */
    send_job_t warm;
    job_init(&warm, dlq, "warm", 1);
    job_send(&warm);
    ck_assert_msg(warm.rc == 0, "%s", warm.errstr);
    ck_assert(warm.item.dead_lettered);

    /* Statistics of the warm-up served and forgotten: only A's may count below. */
    for (int i = 0; i < 20; i++)
        rd_kafka_poll(dlq, 10);
    atomic_store(&awaiting_response, false);

    /* Answers take 2 s, so B is in flight well before A's refusal comes back. B is sent
     * once A's request is seen awaiting its answer (A's thread polls the handle, so the
     * statistics come there), not ~50 ms after A's thread started: on a loaded machine A
     * could then still be unsent, go out after B or with it, and the scenario not happen. */
    rd_kafka_mock_broker_set_rtt(mcluster, 1, 2000);
    rd_kafka_mock_push_request_errors(mcluster, PRODUCE_API_KEY, 1,
                                      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    send_job_t a, b;
    job_init(&a, dlq, "A", 2);
    job_init(&b, dlq, "B", 3);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, job_send, &a), 0);
    for (int waited = 0; !atomic_load(&awaiting_response); waited += 10) {
        ck_assert_msg(waited < 30000, "A's request was never seen awaiting its answer");
        usleep(10 * 1000);
    }
    job_send(&b);
    pthread_join(thread, NULL);
    rd_kafka_mock_broker_set_rtt(mcluster, 1, 0);

    /* The log holds warm and B only: A was refused and never sent again. If a librdkafka
     * retries A instead, the scenario no longer tests anything: fail loudly. */
    ck_assert_int_eq(log_length(dlq), 2);
    ck_assert_msg(b.rc == 0, "%s", b.errstr);
    ck_assert(b.item.dead_lettered);
    ck_assert_msg(a.rc == -1 && !a.item.dead_lettered,
                  "a dead letter the log never got was taken as acknowledged (rc %d)", a.rc);
    ck_assert_msg(strstr(a.errstr, "not acknowledged") != NULL, "%s", a.errstr);

    /* The worker retries the batch: now A is written and acknowledged. */
    job_send(&a);
    ck_assert_msg(a.rc == 0, "%s", a.errstr);
    ck_assert(a.item.dead_lettered);
    ck_assert_int_eq(log_length(dlq), 3);

    rd_kafka_destroy(dlq);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("worker_dlq");
    TCase *tc = tcase_create("implicit_ack");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_unproven_dead_letter_is_not_acknowledged);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
