/*
 * kafka_roundtrip_test: proves that the stack's Kafka is a real broker that does
 * what profiled relies on (DESIGN.md §2.1, §2.2): an idempotent producer with
 * acks=all gets every message acknowledged, and a consumer-group member reads
 * them all back, each key's messages in the order they were produced.
 *
 * The topic and the group are fresh for each run, so earlier runs and parallel
 * tests cannot leak messages or committed positions into this one.
 */
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_conf.h"
#include "test_env.h"
#include "test_kafka_admin.h"

#define MESSAGE_COUNT    1000
#define KEY_COUNT        50
#define TOPIC_PARTITIONS 3
#define ADMIN_TIMEOUT_MS 15000
#define FLUSH_TIMEOUT_MS 30000
#define CONSUME_DEADLINE 60 /* seconds for the whole read-back */

/* Delivery outcome, written by on_delivery, which librdkafka calls on the thread
 * that runs rd_kafka_poll()/rd_kafka_flush() — here the test's own thread. */
typedef struct delivery {
    int delivered;
    int failed;
    char first_error[256];
} delivery_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
    delivery_t *delivery = opaque;

    (void)rk;
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        delivery->delivered++;
        return;
    }
    if (delivery->failed++ == 0)
        snprintf(delivery->first_error, sizeof(delivery->first_error), "%s", rd_kafka_err2str(message->err));
}

static void key_of(int index, char *out, size_t out_size)
{
    snprintf(out, out_size, "key-%02d", index % KEY_COUNT);
}

/* The value names its key and its rank among that key's messages, so the reader
 * can check order per key without any shared state with the writer. */
static void value_of(int index, char *out, size_t out_size)
{
    snprintf(out, out_size, "key-%02d:seq-%04d:payload-%d", index % KEY_COUNT, index / KEY_COUNT,
             index * 7919);
}

static double now_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static rd_kafka_t *producer_new(const char *brokers, delivery_t *delivery)
{
    char errstr[512];
    rd_kafka_conf_t *conf = kafka_conf_new(brokers, NULL, errstr, sizeof(errstr));
    rd_kafka_t *rk;

    ck_assert_msg(conf != NULL, "producer conf: %s", errstr);
    ck_assert_msg(kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) == 0 &&
                      kafka_conf_set(conf, "acks", "all", errstr, sizeof(errstr)) == 0 &&
                      kafka_conf_set(conf, "message.timeout.ms", "30000", errstr, sizeof(errstr)) == 0 &&
                      kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) == 0,
                  "producer conf: %s", errstr);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        ck_abort_msg("rd_kafka_new(producer): %s", errstr);
    }
    /* conf is now owned by rk */
    return rk;
}

static void produce_all(rd_kafka_t *rk, const char *topic, delivery_t *delivery)
{
    char key[32], value[96], fatal[512];
    double deadline = now_seconds() + FLUSH_TIMEOUT_MS / 1000.0;

    for (int i = 0; i < MESSAGE_COUNT; i++) {
        rd_kafka_resp_err_t err;

        key_of(i, key, sizeof(key));
        value_of(i, value, sizeof(value));
        for (;;) {
            err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                    RD_KAFKA_V_VALUE(value, strlen(value)),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            /* A full local queue drains as deliveries come back; wait for them, bounded. */
            ck_assert_msg(now_seconds() < deadline, "local producer queue stayed full for %d ms",
                          FLUSH_TIMEOUT_MS);
            rd_kafka_poll(rk, 100);
        }
        ck_assert_msg(err == RD_KAFKA_RESP_ERR_NO_ERROR, "produce message %d: %s", i, rd_kafka_err2str(err));
        rd_kafka_poll(rk, 0);
    }

    ck_assert_msg(rd_kafka_flush(rk, FLUSH_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR,
                  "flush: %d messages still queued after %d ms", rd_kafka_outq_len(rk), FLUSH_TIMEOUT_MS);
    ck_assert_msg(rd_kafka_fatal_error(rk, fatal, sizeof(fatal)) == RD_KAFKA_RESP_ERR_NO_ERROR,
                  "idempotent producer raised a fatal error: %s", fatal);
    ck_assert_msg(delivery->failed == 0, "%d deliveries failed, first: %s", delivery->failed,
                  delivery->first_error);
    ck_assert_int_eq(delivery->delivered, MESSAGE_COUNT);
}

static rd_kafka_t *consumer_new(const char *brokers, const char *group)
{
    char errstr[512];
    rd_kafka_conf_t *conf = kafka_conf_new(brokers, NULL, errstr, sizeof(errstr));
    rd_kafka_t *rk;

    ck_assert_msg(conf != NULL, "consumer conf: %s", errstr);
    ck_assert_msg(kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) == 0 &&
                      kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr)) == 0 &&
                      kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) == 0 &&
                      kafka_conf_set(conf, "session.timeout.ms", "10000", errstr, sizeof(errstr)) == 0,
                  "consumer conf: %s", errstr);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        ck_abort_msg("rd_kafka_new(consumer): %s", errstr);
    }
    /* conf is now owned by rk; route the main queue to the consumer queue so one
     * rd_kafka_consumer_poll() serves messages, errors and rebalances alike. */
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Reads until MESSAGE_COUNT messages arrived or the deadline passed; checks each
 * against the next expected rank of its key, so a loss, a duplicate or a reorder
 * within a key fails at the first message that shows it. */
static void consume_all(rd_kafka_t *rk, const char *topic)
{
    int next_seq[KEY_COUNT] = {0};
    int received = 0;
    double deadline = now_seconds() + CONSUME_DEADLINE;
    rd_kafka_topic_partition_list_t *subscription = rd_kafka_topic_partition_list_new(1);
    rd_kafka_resp_err_t err;

    rd_kafka_topic_partition_list_add(subscription, topic, RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(rk, subscription);
    rd_kafka_topic_partition_list_destroy(subscription);
    ck_assert_msg(err == RD_KAFKA_RESP_ERR_NO_ERROR, "subscribe: %s", rd_kafka_err2str(err));

    while (received < MESSAGE_COUNT) {
        rd_kafka_message_t *message;
        char key[32], expected[96];
        int key_index;

        ck_assert_msg(now_seconds() < deadline, "only %d of %d messages read back within %d s", received,
                      MESSAGE_COUNT, CONSUME_DEADLINE);
        message = rd_kafka_consumer_poll(rk, 500);
        if (message == NULL)
            continue;
        if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(message);
            continue;
        }
        if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            char reason[256];

            snprintf(reason, sizeof(reason), "%s", rd_kafka_message_errstr(message));
            rd_kafka_message_destroy(message);
            ck_abort_msg("consume: %s", reason);
        }
        ck_assert_msg(message->key_len > 4 && message->key_len < sizeof(key), "unexpected key length %zu",
                      message->key_len);
        memcpy(key, message->key, message->key_len);
        key[message->key_len] = '\0';
        key_index = atoi(key + 4);
        ck_assert_msg(key_index >= 0 && key_index < KEY_COUNT, "unexpected key %s", key);
        value_of(next_seq[key_index] * KEY_COUNT + key_index, expected, sizeof(expected));
        ck_assert_msg(
            message->len == strlen(expected) && memcmp(message->payload, expected, message->len) == 0,
            "key %s at partition %d offset %lld: got \"%.*s\", expected \"%s\"", key, (int)message->partition,
            (long long)message->offset, (int)message->len, (const char *)message->payload, expected);
        next_seq[key_index]++;
        received++;
        rd_kafka_message_destroy(message);
    }
    for (int k = 0; k < KEY_COUNT; k++)
        ck_assert_int_eq(next_seq[k], MESSAGE_COUNT / KEY_COUNT);
}

START_TEST(roundtrip_1000_keyed_messages)
{
    const char *brokers = test_env_require("PROFILED_KAFKA_BROKERS");
    char topic[128], group[128], errstr[512];
    delivery_t delivery = {0};
    rd_kafka_t *producer;
    rd_kafka_t *consumer;

    test_env_unique_name("profiled-test-roundtrip", topic, sizeof(topic));
    test_env_unique_name("profiled-test-group", group, sizeof(group));

    producer = producer_new(brokers, &delivery);
    ck_assert_msg(test_kafka_create_topic(producer, topic, TOPIC_PARTITIONS, ADMIN_TIMEOUT_MS, errstr,
                                          sizeof(errstr)) == 0,
                  "create topic %s on %s: %s", topic, brokers, errstr);
    produce_all(producer, topic, &delivery);

    consumer = consumer_new(brokers, group);
    consume_all(consumer, topic);
    /* Leave the group in an orderly way: a member that vanishes would hold its
     * partitions until the session times out, slowing the next test's group. */
    ck_assert_msg(rd_kafka_consumer_close(consumer) == RD_KAFKA_RESP_ERR_NO_ERROR, "consumer close failed");
    rd_kafka_destroy(consumer);

    ck_assert_msg(test_kafka_delete_topic(producer, topic, ADMIN_TIMEOUT_MS, errstr, sizeof(errstr)) == 0,
                  "delete topic %s: %s", topic, errstr);
    rd_kafka_destroy(producer);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("kafka_roundtrip");
    TCase *tcase = tcase_create("roundtrip");
    SRunner *runner;
    int failed;

    /* Above the sum of the bounded waits inside, so a failure says which wait failed. */
    tcase_set_timeout(tcase, 150);
    tcase_add_test(tcase, roundtrip_1000_keyed_messages);
    suite_add_tcase(suite, tcase);
    runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
