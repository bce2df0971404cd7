#include "test_kafka_admin.h"

#include <stdio.h>

/* Waits on QUEUE for the one admin result event, bounded by timeout_ms; checks the
 * request-level error and then the per-topic result. */
static int await_topic_result(rd_kafka_queue_t *queue, rd_kafka_event_type_t type, int timeout_ms,
                              char *errstr, size_t errstr_size)
{
    rd_kafka_event_t *event = NULL;
    const rd_kafka_topic_result_t **results = NULL;
    size_t count = 0;
    int rc = -1;

    event = rd_kafka_queue_poll(queue, timeout_ms);
    if (event == NULL) {
        snprintf(errstr, errstr_size, "no admin result within %d ms", timeout_ms);
        goto cleanup;
    }
    if (rd_kafka_event_error(event)) {
        snprintf(errstr, errstr_size, "%s", rd_kafka_event_error_string(event));
        goto cleanup;
    }
    if (rd_kafka_event_type(event) != type) {
        snprintf(errstr, errstr_size, "unexpected admin event %s", rd_kafka_event_name(event));
        goto cleanup;
    }
    if (type == RD_KAFKA_EVENT_CREATETOPICS_RESULT)
        results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count);
    else
        results = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event), &count);
    if (count != 1) {
        snprintf(errstr, errstr_size, "expected one topic result, got %zu", count);
        goto cleanup;
    }
    if (rd_kafka_topic_result_error(results[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *reason = rd_kafka_topic_result_error_string(results[0]);

        if (reason == NULL)
            reason = rd_kafka_err2str(rd_kafka_topic_result_error(results[0]));
        snprintf(errstr, errstr_size, "topic %s: %s", rd_kafka_topic_result_name(results[0]), reason);
        goto cleanup;
    }
    rc = 0;

cleanup:
    if (event != NULL)
        rd_kafka_event_destroy(event);
    return rc;
}

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op, int timeout_ms,
                                              char *errstr, size_t errstr_size)
{
    rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(rk, op);

    /* The operation timeout makes the broker answer only once the change is done
     * (the topic's leaders exist), so a producer started next finds it. */
    if (rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, errstr_size) ||
        rd_kafka_AdminOptions_set_operation_timeout(options, timeout_ms, errstr, errstr_size)) {
        rd_kafka_AdminOptions_destroy(options);
        return NULL;
    }
    return options;
}

int test_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms, char *errstr,
                            size_t errstr_size)
{
    rd_kafka_NewTopic_t *new_topic = NULL;
    rd_kafka_AdminOptions_t *options = NULL;
    rd_kafka_queue_t *queue = NULL;
    int rc = -1;

    new_topic = rd_kafka_NewTopic_new(topic, partitions, 1, errstr, errstr_size);
    if (new_topic == NULL)
        goto cleanup;
    options = admin_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout_ms, errstr, errstr_size);
    if (options == NULL)
        goto cleanup;
    queue = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &new_topic, 1, options, queue);
    /* Give the broker its own timeout plus a margin to answer before we stop waiting. */
    rc =
        await_topic_result(queue, RD_KAFKA_EVENT_CREATETOPICS_RESULT, timeout_ms + 5000, errstr, errstr_size);

cleanup:
    if (queue != NULL)
        rd_kafka_queue_destroy(queue);
    if (options != NULL)
        rd_kafka_AdminOptions_destroy(options);
    if (new_topic != NULL)
        rd_kafka_NewTopic_destroy(new_topic);
    return rc;
}

int test_kafka_delete_topic(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                            size_t errstr_size)
{
    rd_kafka_DeleteTopic_t *delete_topic = NULL;
    rd_kafka_AdminOptions_t *options = NULL;
    rd_kafka_queue_t *queue = NULL;
    int rc = -1;

    delete_topic = rd_kafka_DeleteTopic_new(topic);
    options = admin_options(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout_ms, errstr, errstr_size);
    if (options == NULL)
        goto cleanup;
    queue = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, &delete_topic, 1, options, queue);
    rc =
        await_topic_result(queue, RD_KAFKA_EVENT_DELETETOPICS_RESULT, timeout_ms + 5000, errstr, errstr_size);

cleanup:
    if (queue != NULL)
        rd_kafka_queue_destroy(queue);
    if (options != NULL)
        rd_kafka_AdminOptions_destroy(options);
    rd_kafka_DeleteTopic_destroy(delete_topic);
    return rc;
}
