#include "dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kafka_conf.h"
#include "kafka_delivery.h"
#include "log.h"

/* Delivery reports arrive on the thread that calls rd_kafka_flush/poll on the
 * producer, i.e. the worker's thread inside dlq_send; the opaque is the item.
 * Only a report that proves the write counts (kafka_delivery.h): librdkafka 2.0
 * also reports "delivered", without an offset, a message it implicitly acked and
 * the log may never have got. Counting that one would let the position pass a
 * command whose dead letter is lost; left unacknowledged, the batch is retried
 * and the dead letter sent again (at worst written twice). */
static void dlq_delivered(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
    (void)rk;
    (void)opaque;
    batch_item_t *item = message->_private;
    if (kafka_delivery_written(message)) {
        item->dead_lettered = true;
        return;
    }
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "partition", item->partition);
    log_field_int(&fields, "offset", item->offset);
    log_field_str(&fields, "error",
                  message->err ? rd_kafka_err2str(message->err) : "reported delivered without an offset");
    log_warn(&fields, "dead letter not proven delivered");
}

rd_kafka_t *dlq_new(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
    char reason[512];
    if (kafka_conf_set_idempotent(conf, reason, sizeof(reason)) < 0 ||
        kafka_conf_set(conf, "linger.ms", "5", reason, sizeof(reason)) < 0) {
        snprintf(errstr, errstr_size, "dead-letter producer: %s", reason);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dlq_delivered);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, reason, sizeof(reason));
    if (!rk) {
        snprintf(errstr, errstr_size, "dead-letter producer: %s", reason);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk; /* conf is now owned by rk */
}

/* A fatal error of the idempotent producer (e.g. a fenced or out-of-sequence
 * producer id) cannot be undone on this handle, and without dead letters no
 * partition holding an invalid command can move: exit, so that a restart
 * makes a new producer. Nothing is lost, since positions live in PostgreSQL
 * and nothing past the last commit counts as applied. */
static void dlq_exit_if_fatal(rd_kafka_t *dlq)
{
    char reason[512];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(dlq, reason, sizeof(reason));
    if (fatal == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "error", reason);
    log_die(&fields,
            "the dead-letter producer hit a fatal error (%s); exiting so that a restart recreates it",
            rd_kafka_err2name(fatal));
}

int dlq_send(rd_kafka_t *dlq, const char *dlq_topic, const char *source_topic, batch_t *batch, size_t lo,
             size_t hi, int timeout_ms, size_t *sent, char *errstr, size_t errstr_size)
{
    size_t pending = 0, already = 0;
    *sent = 0;
    for (size_t i = lo; i < hi; i++) {
        batch_item_t *item = &batch->items[i];
        if (item->kind == BATCH_COMMAND)
            continue;
        if (item->dead_lettered) {
            already++;
            continue;
        }
        const char *code =
            item->kind == BATCH_REJECTED ? DLQ_CODE_POSTGRES_REJECTED : codec_error_name(item->failure.code);
        char partition[16], offset[32];
        snprintf(partition, sizeof(partition), "%" PRId32, item->partition);
        snprintf(offset, sizeof(offset), "%" PRId64, item->offset);
        rd_kafka_headers_t *headers = rd_kafka_headers_new(5);
        rd_kafka_header_add(headers, DLQ_HEADER_CODE, -1, code, -1);
        rd_kafka_header_add(headers, DLQ_HEADER_MESSAGE, -1, item->failure.message, -1);
        rd_kafka_header_add(headers, DLQ_HEADER_TOPIC, -1, source_topic, -1);
        rd_kafka_header_add(headers, DLQ_HEADER_PARTITION, -1, partition, -1);
        rd_kafka_header_add(headers, DLQ_HEADER_OFFSET, -1, offset, -1);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            dlq, RD_KAFKA_V_TOPIC(dlq_topic), RD_KAFKA_V_KEY(item->key, item->key_len),
            RD_KAFKA_V_VALUE((void *)item->value, item->value_len) /* F_COPY: never written */,
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(item),
            RD_KAFKA_V_END);
        if (err) {
            rd_kafka_headers_destroy(headers); /* not taken on failure */
            snprintf(errstr, errstr_size, "dead letter for %s/%s/%s: %s", source_topic, partition, offset,
                     rd_kafka_err2str(err));
            rd_kafka_purge(dlq, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            (void)rd_kafka_flush(dlq, 1000);
            dlq_exit_if_fatal(dlq);
            return -1;
        }
        pending++;
    }
    if (pending == 0)
        return 0;
    rd_kafka_resp_err_t err = rd_kafka_flush(dlq, timeout_ms);
    size_t acknowledged = 0, missing = 0;
    for (size_t i = lo; i < hi; i++) {
        const batch_item_t *item = &batch->items[i];
        if (item->kind == BATCH_COMMAND)
            continue;
        if (item->dead_lettered)
            acknowledged++;
        else
            missing++;
    }
    *sent = acknowledged - already; /* only the ones produced by this call */
    if (missing > 0) {
        /* The batch (and the items the reports point to) is dropped after a
         * failure: void what is still queued or in flight, and serve those
         * reports now, while the items exist. */
        rd_kafka_purge(dlq, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        (void)rd_kafka_flush(dlq, 1000);
        snprintf(errstr, errstr_size, "%zu dead letter(s) to %s not acknowledged: %s", missing, dlq_topic,
                 err ? rd_kafka_err2str(err) : "delivery failed");
        dlq_exit_if_fatal(dlq);
        return -1;
    }
    return 0;
}
