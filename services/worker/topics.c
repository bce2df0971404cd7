#include "topics.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "xalloc.h"

int topics_create(rd_kafka_t *rk, const char *const *names, size_t count, int partitions, int timeout_ms,
                  char *errstr, size_t errstr_size)
{
    int rc = -1;
    char reason[512];
    rd_kafka_NewTopic_t **topics = xcalloc(count, sizeof(*topics), "new topics");
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *event = NULL;
    for (size_t i = 0; i < count; i++) {
        /* -1: the broker's default.replication.factor */
        topics[i] = rd_kafka_NewTopic_new(names[i], partitions, -1, reason, sizeof(reason));
        if (!topics[i]) {
            snprintf(errstr, errstr_size, "topic %s: %s", names[i], reason);
            goto cleanup;
        }
    }
    if (rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, reason, sizeof(reason)) != 0) {
        snprintf(errstr, errstr_size, "admin options: %s", reason);
        goto cleanup;
    }
    rd_kafka_CreateTopics(rk, topics, count, options, queue);
    event = rd_kafka_queue_poll(queue, timeout_ms + 2000);
    if (!event) {
        snprintf(errstr, errstr_size, "no answer from Kafka within %d ms", timeout_ms);
        goto cleanup;
    }
    if (rd_kafka_event_error(event)) {
        snprintf(errstr, errstr_size, "%s", rd_kafka_event_error_string(event));
        goto cleanup;
    }
    const rd_kafka_CreateTopics_result_t *result = rd_kafka_event_CreateTopics_result(event);
    size_t n = 0;
    const rd_kafka_topic_result_t **results = rd_kafka_CreateTopics_result_topics(result, &n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "topic", rd_kafka_topic_result_name(results[i]));
        if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            continue;
        if (err) {
            const char *message = rd_kafka_topic_result_error_string(results[i]);
            snprintf(errstr, errstr_size, "topic %s: %s", rd_kafka_topic_result_name(results[i]),
                     message ? message : rd_kafka_err2str(err));
            goto cleanup;
        }
        log_field_int(&fields, "partitions", partitions);
        log_info(&fields, "topic created");
    }
    rc = 0;
cleanup:
    if (event)
        rd_kafka_event_destroy(event);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_queue_destroy(queue);
    for (size_t i = 0; i < count; i++)
        if (topics[i])
            rd_kafka_NewTopic_destroy(topics[i]);
    free(topics);
    return rc;
}
