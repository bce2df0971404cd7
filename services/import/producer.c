/*
 * producer: the Kafka side of an import. One idempotent producer (acks=all,
 * murmur2: common/runtime/kafka_conf.h's contract), served from the main thread by
 * rd_kafka_poll, so delivery reports run on the thread that reads the input
 * and no lock guards the ring.
 *
 * message.timeout.ms is 0 (never): librdkafka retries a command until the
 * broker takes it. A timed-out command would leave a hole in its partition
 * that later commands of the same recipient could pass (re-sent on resume,
 * it would then be applied after them). Instead the importer itself decides
 * when Kafka has been silent too long (--stall-timeout) and stops with a
 * checkpoint; purged commands are unacknowledged, so a resume re-sends them
 * with their ids, and the worker skips any that did land.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "kafka_conf.h"
#include "kafka_delivery.h"
#include "kafka_log.h"
#include "log.h"

/* Runs on the main thread, inside rd_kafka_poll. */
static void import_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, void *opaque)
{
    (void)rk;
    import_t *im = opaque;
    uint64_t seq = (uint64_t)(uintptr_t)rkmessage->_private;
    import_slot_t *slot = &im->ring[seq % (uint64_t)im->options.window];
    im->reports_pending--;
    /* The checkpoint passes a line only on a report that proves the write (kafka_delivery.h):
     * librdkafka 2.0 also reports lines it never saw acknowledged as delivered, without an offset. */
    if (kafka_delivery_written(rkmessage)) {
        slot->done = true;
        im->counts.acked++;
        im->last_ack_us = import_now_us();
        while (im->tail < im->head && im->ring[im->tail % (uint64_t)im->options.window].done)
            im->tail++;
        return;
    }
    im->counts.delivery_failed++;
    if (rkmessage->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
        rkmessage->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        return; /* we purged it while stopping; the checkpoint stays before it */
    if (im->stop != IMPORT_KAFKA_FAILED) {
        snprintf(im->failure, sizeof(im->failure), "Kafka did not acknowledge line %" PRIu64 " of %s: %s",
                 slot->line, im->options.files[slot->file],
                 rkmessage->err ? rd_kafka_err2str(rkmessage->err) : "reported without proof it was written");
        im->stop = IMPORT_KAFKA_FAILED;
    }
}

/* Runs on the main thread (served from the main queue by rd_kafka_poll). */
static void import_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    import_t *im = opaque;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "error", rd_kafka_err2name((rd_kafka_resp_err_t)err));
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[400];
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        snprintf(im->failure, sizeof(im->failure), "Kafka producer fatal error: %s", fatal);
        im->stop = IMPORT_KAFKA_FAILED;
        log_error(&fields, "%s", im->failure);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        if (im->kafka_down_logged)
            return;
        im->kafka_down_logged = true;
        log_field_int(&fields, "stall_timeout_ms", im->options.stall_timeout_ms);
        log_warn(
            &fields,
            "Kafka is unreachable (%s); waiting for it (Ctrl-C or --stall-timeout stops with a checkpoint)",
            reason);
        return;
    }
    log_warn(&fields, "Kafka: %s", reason);
}

int import_producer_new(import_t *im, char *errstr, size_t errstr_size)
{
    const import_options_t *o = &im->options;
    char value[32], reason[512];
    rd_kafka_conf_t *conf =
        kafka_conf_new(im->config.kafka_brokers, im->config.kafka_properties, reason, sizeof(reason));
    if (!conf) {
        snprintf(errstr, errstr_size, "PROFILED_KAFKA_BROKERS / PROFILED_KAFKA_PROPERTIES: %s", reason);
        return -1;
    }
    if (kafka_conf_set(conf, "client.id", "profiled-import", errstr, errstr_size) < 0 ||
        kafka_conf_set_producer_contract(conf, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "message.timeout.ms", "0", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "compression.codec", o->compression, errstr, errstr_size) < 0)
        goto error;
    snprintf(value, sizeof(value), "%" PRId64, o->linger_ms);
    if (kafka_conf_set(conf, "linger.ms", value, errstr, errstr_size) < 0)
        goto error;
    snprintf(value, sizeof(value), "%" PRId64, o->batch_bytes);
    if (kafka_conf_set(conf, "batch.size", value, errstr, errstr_size) < 0)
        goto error;
    /* The window bounds what is queued; librdkafka's own bound sits above it, never reached first. */
    snprintf(value, sizeof(value), "%" PRId64, o->window + 1024);
    if (kafka_conf_set(conf, "queue.buffering.max.messages", value, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "queue.buffering.max.kbytes", "262144", errstr, errstr_size) < 0)
        goto error;
    rd_kafka_conf_set_dr_msg_cb(conf, import_delivery_cb);
    rd_kafka_conf_set_error_cb(conf, import_error_cb);
    kafka_log_install(conf);
    rd_kafka_conf_set_opaque(conf, im);
    if (kafka_producer_open(conf, im->config.kafka_topic, &im->rk, &im->rkt, errstr, errstr_size) < 0)
        return -1; /* conf was taken */
    return 0;
error:
    if (conf)
        rd_kafka_conf_destroy(conf);
    return -1;
}

/* Stop reasons that come from outside the producer: signals and a silent Kafka. */
static void import_check_stall(import_t *im)
{
    if (import_signals > 0 && im->stop == IMPORT_RUNNING) {
        im->stop = IMPORT_INTERRUPTED;
        snprintf(im->failure, sizeof(im->failure), "interrupted by a signal");
        log_warn(NULL,
                 "interrupted: no more lines are read; waiting up to %" PRId64
                 " ms for the ones in flight (a second signal stops at once)",
                 im->options.drain_timeout_ms);
    }
    if (im->tail < im->head && im->stop != IMPORT_KAFKA_FAILED &&
        import_now_us() - im->last_ack_us > im->options.stall_timeout_ms * 1000) {
        snprintf(im->failure, sizeof(im->failure),
                 "Kafka acknowledged nothing for %" PRId64 " ms (--stall-timeout) with %" PRIu64
                 " commands in flight; stopping",
                 im->options.stall_timeout_ms, im->head - im->tail);
        im->stop = IMPORT_KAFKA_FAILED;
    }
}

void import_poll(import_t *im, int timeout_ms)
{
    if (im->rk) /* none in a dry run */
        rd_kafka_poll(im->rk, timeout_ms);
    import_check_stall(im);
    import_progress(im, false);
}

int import_produce(import_t *im, const char *key, size_t key_len, const buf_t *value, uint64_t line,
                   uint64_t start_offset, char *errstr, size_t errstr_size)
{
    uint64_t window = (uint64_t)im->options.window;
    /* The window counts from the last checkpoint written, not from the last ack: so whatever the
     * moment of a crash, a resume re-sends at most `window` commands that were already sent. */
    while (im->head - im->saved_tail >= window && im->stop == IMPORT_RUNNING) {
        if (im->tail > im->saved_tail)
            import_checkpoint_save(im);
        else
            import_poll(im, 50);
    }
    if (im->stop != IMPORT_RUNNING)
        return 0; /* not produced: the reading position stays before it */
    if (im->head == im->tail)
        im->last_ack_us = import_now_us(); /* the stall clock runs only while something is in flight */
    uint64_t seq = im->head;
    import_slot_t *slot = &im->ring[seq % window];
    slot->file = im->file;
    slot->line = line;
    slot->start_offset = start_offset;
    slot->done = false;
    for (;;) {
        if (rd_kafka_produce(im->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, value->data, value->len,
                             key, key_len, (void *)(uintptr_t)seq) == 0)
            break;
        rd_kafka_resp_err_t err = rd_kafka_last_error();
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            import_poll(im, 50);
            if (im->stop != IMPORT_RUNNING)
                return 0;
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            /* The api's 413 for the same command: a rejected line, not a failed import. */
            snprintf(errstr, errstr_size, "the command is %zu bytes, over Kafka's message.max.bytes",
                     value->len);
            return -1;
        }
        snprintf(im->failure, sizeof(im->failure), "cannot produce line %" PRIu64 " of %s to Kafka: %s", line,
                 im->options.files[im->file], rd_kafka_err2str(err));
        im->stop = IMPORT_KAFKA_FAILED;
        return 0;
    }
    im->head++;
    im->reports_pending++;
    return 1;
}

void import_drain(import_t *im)
{
    int64_t drain_deadline = 0;
    int seen_signals = import_signals;
    while (im->reports_pending > 0) {
        if (im->stop == IMPORT_INTERRUPTED) {
            if (!drain_deadline)
                drain_deadline = import_now_us() + im->options.drain_timeout_ms * 1000;
            if (import_now_us() > drain_deadline || import_signals > seen_signals)
                break;
        }
        if (im->stop == IMPORT_KAFKA_FAILED)
            break;
        import_poll(im, 100);
    }
    if (im->reports_pending == 0)
        return;
    /* What is left is never acknowledged: purge it, so its reports come back now and the
     * checkpoint stays before it. */
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "in_flight", (int64_t)im->reports_pending);
    log_warn(&fields, "purging commands Kafka has not acknowledged; a resume re-sends them");
    rd_kafka_purge(im->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    int64_t deadline = import_now_us() + 10 * 1000000;
    while (im->reports_pending > 0 && import_now_us() < deadline)
        rd_kafka_poll(im->rk, 100);
}

void import_producer_destroy(import_t *im)
{
    if (!im->rk)
        return;
    if (im->rkt)
        rd_kafka_topic_destroy(im->rkt);
    rd_kafka_destroy(im->rk);
    im->rk = NULL;
    im->rkt = NULL;
}
