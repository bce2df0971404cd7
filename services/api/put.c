/*
 * put: PUT /profiles/{recipient_id} and the loop's Kafka producer.
 *
 * Each loop owns one idempotent producer (acks=all). Its main queue, where
 * delivery reports, errors and statistics arrive, signals a pipe when it
 * becomes non-empty (rd_kafka_queue_io_event_enable); the loop watches the
 * pipe and serves the queue with rd_kafka_poll(rk, 0). So a delivery report
 * runs on the thread that holds its request: no handoff, no polling timer,
 * and the loop never blocks on Kafka. A full producer queue is a 503 at once.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "codec.h"
#include "json_transcode.h"
#include "kafka_conf.h"
#include "log.h"

static const char api_put_success[] = "{\"status\":\"SUCCESS\"}";

static api_put_t *api_put_alloc(api_loop_t *loop)
{
    api_put_t *put = loop->put_free;
    if (put) {
        loop->put_free = put->free_next;
    } else {
        put = malloc(sizeof(*put));
        if (!put) {
            log_error(NULL, "out of memory allocating a request");
            abort();
        }
    }
    memset(put, 0, sizeof(*put));
    put->loop = loop;
    return put;
}

static void api_put_free(api_loop_t *loop, api_put_t *put)
{
    put->free_next = loop->put_free;
    loop->put_free = put;
}

static void api_put_request_id(const api_put_t *put, char *text, size_t size)
{
    snprintf(text, size, "%u-%" PRIu64, put->loop->index, put->request_seq);
}

/* Deadline (or shutdown deadline) passed before the delivery report: 503, keep waiting for the report. */
static void api_put_expire(api_held_t *held)
{
    api_put_t *put = (api_put_t *)held;
    api_loop_t *loop = put->loop;
    char message[300];
    snprintf(message, sizeof(message),
             "Kafka did not acknowledge the command within %" PRId64
             " ms; it may still be applied. Retry, with the same Idempotency-Key to have it applied once",
             loop->api->config.request_deadline_ms);
    api_conn_release(loop, put->req);
    api_reply_error(loop, put->req, API_ROUTE_PUT_PROFILE, 503, put->started_us, put->request_seq, message);
    put->req = NULL;
    put->state = API_PUT_ANSWERED;
}

/* The connection closed while the request was held (only libevent's teardown does that: reads are
 * off while a request is held). Nobody to answer; the report is still awaited. */
static void api_put_detach(void *arg)
{
    api_put_t *put = arg;
    if (put->state != API_PUT_HELD)
        return;
    api_held_remove(put->loop, &put->held);
    put->req = NULL;
    put->state = API_PUT_ANSWERED;
}

void api_put_handle(api_loop_t *loop, struct evhttp_request *req, const char *recipient_id,
                    size_t recipient_id_len, int64_t started_us, uint64_t request_seq)
{
    api_t *api = loop->api;
    char message[512];
    uint8_t command_id[HTTP_COMMAND_ID_BYTES];

    const char *idempotency_key =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
    if (idempotency_key) {
        if (http_idempotency_key_check(idempotency_key, message, sizeof(message)) < 0) {
            api_reply_error(loop, req, API_ROUTE_PUT_PROFILE, 400, started_us, request_seq, message);
            return;
        }
        http_command_id_from_key(idempotency_key, strlen(idempotency_key), recipient_id, recipient_id_len,
                                 command_id);
    } else if (http_command_id_random(command_id) < 0) {
        snprintf(message, sizeof(message), "cannot draw a random command id: %s", strerror(errno));
        api_reply_error(loop, req, API_ROUTE_PUT_PROFILE, 500, started_us, request_seq, message);
        return;
    }

    /* 4. the body, through the transcoder: a 400 names the field and the rule. */
    struct evbuffer *input = evhttp_request_get_input_buffer(req);
    size_t body_len = evbuffer_get_length(input);
    const uint8_t *body = body_len ? evbuffer_pullup(input, -1) : (const uint8_t *)"";
    transcode_error_t terror;
    buf_reset(&loop->profile);
    if (transcode_profile_request(body, body_len, &api->limits, &loop->profile, &terror) < 0) {
        int status = terror.status == TRANSCODE_ERR_TOO_LARGE ? 413 : 400;
        api_reply_error(loop, req, API_ROUTE_PUT_PROFILE, status, started_us, request_seq, terror.message);
        return;
    }

    /* 5. the command */
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    codec_command_t command = {
        .schema_version = CODEC_SCHEMA_VERSION,
        .recipient_id = recipient_id,
        .recipient_id_len = recipient_id_len,
        .accepted_at_us = (int64_t)wall.tv_sec * 1000000 + wall.tv_nsec / 1000,
        /* proto §1: the tag that tells the api's writes from bulk producers'. */
        .source = "api",
        .source_len = 3,
        .profile_msgpack = loop->profile.data,
        .profile_msgpack_len = loop->profile.len,
    };
    memcpy(command.command_id, command_id, sizeof(command_id));
    buf_reset(&loop->command);
    if (codec_encode(&command, &loop->command, message, sizeof(message)) < 0) {
        api_reply_error(loop, req, API_ROUTE_PUT_PROFILE, 500, started_us, request_seq, message);
        return;
    }

    /* 6. produce, keyed by the recipient id, and hold the request until the report. */
    if (atomic_load_explicit(&loop->kafka_fatal, memory_order_relaxed)) {
        metrics_counter_add(api->m.produce_errors_other, 1);
        api_reply_error(loop, req, API_ROUTE_PUT_PROFILE, 503, started_us, request_seq,
                        "the Kafka producer failed and cannot accept commands; retry");
        return;
    }
    /* Kafka known down: a prompt 503 rather than a request held to its deadline (README "Probes"). */
    if (atomic_load_explicit(&loop->kafka_down, memory_order_relaxed)) {
        metrics_counter_add(api->m.produce_errors_other, 1);
        api_reply_error(loop, req, API_ROUTE_PUT_PROFILE, 503, started_us, request_seq,
                        "Kafka is unreachable; retry");
        return;
    }
    api_put_t *put = api_put_alloc(loop);
    put->req = req;
    put->state = API_PUT_HELD;
    put->started_us = started_us;
    put->request_seq = request_seq;
    memcpy(put->command_id, command_id, sizeof(command_id));
    put->held.expire = api_put_expire;
    put->held.deadline_us = started_us + api->config.request_deadline_ms * 1000;

    if (rd_kafka_produce(loop->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, loop->command.data,
                         loop->command.len, recipient_id, recipient_id_len, put) == -1) {
        rd_kafka_resp_err_t err = rd_kafka_last_error();
        api_put_free(loop, put);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            metrics_counter_add(api->m.produce_errors_queue_full, 1);
            api_reply_error(loop, req, API_ROUTE_PUT_PROFILE, 503, started_us, request_seq,
                            "the Kafka producer queue is full (PROFILED_KAFKA_QUEUE_MAX); retry");
        } else if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            metrics_counter_add(api->m.produce_errors_other, 1);
            snprintf(message, sizeof(message), "the command is %zu bytes, over Kafka's message.max.bytes",
                     loop->command.len);
            api_reply_error(loop, req, API_ROUTE_PUT_PROFILE, 413, started_us, request_seq, message);
        } else {
            metrics_counter_add(api->m.produce_errors_other, 1);
            snprintf(message, sizeof(message), "cannot produce to Kafka: %s; retry", rd_kafka_err2str(err));
            api_reply_error(loop, req, API_ROUTE_PUT_PROFILE, 503, started_us, request_seq, message);
        }
        return;
    }
    api_held_add(loop, &put->held);
    api_conn_hold(loop, req, put, api_put_detach);
}

/* Runs on the loop thread, inside rd_kafka_poll. */
static void api_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, void *opaque)
{
    (void)rk;
    api_loop_t *loop = opaque;
    api_t *api = loop->api;
    api_put_t *put = rkmessage->_private;
    char request_id[32], id_text[HTTP_COMMAND_ID_TEXT];
    http_command_id_format(put->command_id, id_text);

    if (rkmessage->err)
        metrics_counter_add(api->m.delivery_failed, 1);

    if (put->state == API_PUT_HELD) {
        api_held_remove(loop, &put->held);
        api_conn_release(loop, put->req);
        if (rkmessage->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            char partition[16], offset[24];
            snprintf(partition, sizeof(partition), "%" PRId32, rkmessage->partition);
            snprintf(offset, sizeof(offset), "%" PRId64, rkmessage->offset);
            struct evkeyvalq *headers = evhttp_request_get_output_headers(put->req);
            evhttp_add_header(headers, "X-Command-Id", id_text);
            evhttp_add_header(headers, "X-Kafka-Partition", partition);
            evhttp_add_header(headers, "X-Kafka-Offset", offset);
            api_reply(loop, put->req, API_ROUTE_PUT_PROFILE, 200, put->started_us, api_put_success,
                      sizeof(api_put_success) - 1);
            if (log_level_min <= LOG_DEBUG) {
                api_put_request_id(put, request_id, sizeof(request_id));
                log_fields_t fields = LOG_FIELDS_INIT;
                log_field_str(&fields, "request_id", request_id);
                log_field_str(&fields, "command_id", id_text);
                log_field_int(&fields, "partition", rkmessage->partition);
                log_field_int(&fields, "offset", rkmessage->offset);
                log_debug(&fields, "command acknowledged");
            }
        } else {
            char message[300];
            snprintf(message, sizeof(message), "Kafka did not acknowledge the command: %s; retry",
                     rd_kafka_err2str(rkmessage->err));
            api_reply_error(loop, put->req, API_ROUTE_PUT_PROFILE, 503, put->started_us, put->request_seq,
                            message);
        }
    } else {
        metrics_counter_add(api->m.delivery_late, 1);
        api_put_request_id(put, request_id, sizeof(request_id));
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "request_id", request_id);
        log_field_str(&fields, "command_id", id_text);
        if (rkmessage->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_field_int(&fields, "partition", rkmessage->partition);
            log_field_int(&fields, "offset", rkmessage->offset);
            log_warn(&fields, "command written after its request was answered 503");
        } else {
            log_field_str(&fields, "error", rd_kafka_err2str(rkmessage->err));
            log_info(&fields, "command not written; its request was already answered 503");
        }
    }
    api_put_free(loop, put);
}

/* Runs on the loop thread (served from the main queue): readiness from the broker states. */
static int api_stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    api_loop_t *loop = opaque;
    bool up = false;
    json_t *root = json_loadb(json, json_len, 0, NULL);
    json_t *brokers = root ? json_object_get(root, "brokers") : NULL;
    const char *name;
    json_t *broker;
    json_object_foreach(brokers, name, broker)
    {
        const char *state = json_string_value(json_object_get(broker, "state"));
        if (state && strcmp(state, "UP") == 0)
            up = true;
    }
    json_decref(root);
    api_ready_kafka_state(loop, up);
    return 0; /* librdkafka frees json */
}

/* Runs on the loop thread. */
static void api_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    api_loop_t *loop = opaque;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_field_str(&fields, "error", rd_kafka_err2name((rd_kafka_resp_err_t)err));
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t code = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        log_field_str(&fields, "fatal_error", rd_kafka_err2name(code));
        atomic_store(&loop->kafka_fatal, true);
        log_error(&fields, "Kafka producer fatal error: %s", fatal);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        api_ready_kafka_state(loop, false);
    log_warn(&fields, "Kafka: %s", reason);
}

/* Runs on librdkafka's threads; log_write is one write(2) per line. */
static void api_kafka_log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *text)
{
    (void)rk;
    /* syslog levels: 3 error, 4 warning, 5 notice, 6 info, 7 debug (<syslog.h> clashes with log.h). */
    log_level_t ours = level <= 3 ? LOG_ERROR : level <= 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "facility", facility);
    log_at(ours, &fields, "librdkafka: %s", text);
}

static void api_kafka_readable_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    api_loop_t *loop = arg;
    char drain[256];
    /* Take the wake-up bytes first: a report enqueued after this read writes a new byte. One read
     * is enough; if more bytes are left the (level-triggered) event fires again. */
    ssize_t got = read(fd, drain, sizeof(drain));
    (void)got;
    rd_kafka_poll(loop->rk, 0);
    api_loop_check_drained(loop);
}

bool api_producer_idle(api_loop_t *loop)
{
    return rd_kafka_outq_len(loop->rk) == 0;
}

int api_producer_init(api_loop_t *loop, char *errstr, size_t errstr_size)
{
    const api_config_t *config = &loop->api->config;
    char value[32], client_id[64];
    char reason[512];
    rd_kafka_conf_t *conf =
        kafka_conf_new(config->kafka_brokers, config->kafka_properties, reason, sizeof(reason));
    if (!conf) {
        snprintf(errstr, errstr_size, "PROFILED_KAFKA_BROKERS / PROFILED_KAFKA_PROPERTIES: %s", reason);
        return -1;
    }
    snprintf(client_id, sizeof(client_id), "profiled-api-%u", loop->index);
    if (kafka_conf_set(conf, "client.id", client_id, errstr, errstr_size) < 0)
        goto error;
    /* The durability guarantee and the partitioning contract: not overridable by
     * PROFILED_KAFKA_PROPERTIES. */
    if (kafka_conf_set_producer_contract(conf, errstr, errstr_size) < 0)
        goto error;
    snprintf(value, sizeof(value), "%" PRId64, config->kafka_linger_ms);
    if (kafka_conf_set(conf, "linger.ms", value, errstr, errstr_size) < 0)
        goto error;
    snprintf(value, sizeof(value), "%" PRId64, config->kafka_queue_max);
    if (kafka_conf_set(conf, "queue.buffering.max.messages", value, errstr, errstr_size) < 0)
        goto error;
    /* A command nobody waits for any more should not be written minutes later, after newer ones. */
    snprintf(value, sizeof(value), "%" PRId64, config->request_deadline_ms);
    if (kafka_conf_set(conf, "message.timeout.ms", value, errstr, errstr_size) < 0)
        goto error;
    /* Statistics tell when the broker is up again, and PUTs answer 503 at once until then: at
     * 500 ms the first 200 after a broker returns waits at most half a second for them. */
    if (kafka_conf_set(conf, "statistics.interval.ms", "500", errstr, errstr_size) < 0)
        goto error;
    rd_kafka_conf_set_dr_msg_cb(conf, api_delivery_cb);
    rd_kafka_conf_set_stats_cb(conf, api_stats_cb);
    rd_kafka_conf_set_error_cb(conf, api_error_cb);
    rd_kafka_conf_set_log_cb(conf, api_kafka_log_cb);
    rd_kafka_conf_set_opaque(conf, loop);

    loop->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, reason, sizeof(reason));
    if (!loop->rk) {
        snprintf(errstr, errstr_size, "cannot create the Kafka producer: %s", reason);
        goto error;
    }
    conf = NULL; /* now owned by rk */
    loop->rkt = rd_kafka_topic_new(loop->rk, config->kafka_topic, NULL);
    if (!loop->rkt) {
        snprintf(errstr, errstr_size, "PROFILED_KAFKA_TOPIC=%s: %s", config->kafka_topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    if (pipe2(loop->kafka_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(errstr, errstr_size, "pipe2: %s", strerror(errno));
        return -1;
    }
    loop->rkqu = rd_kafka_queue_get_main(loop->rk);
    rd_kafka_queue_io_event_enable(loop->rkqu, loop->kafka_pipe[1], "1", 1);
    loop->kafka_event =
        event_new(loop->base, loop->kafka_pipe[0], EV_READ | EV_PERSIST, api_kafka_readable_cb, loop);
    if (!loop->kafka_event || event_add(loop->kafka_event, NULL) < 0) {
        snprintf(errstr, errstr_size, "cannot watch the Kafka queue");
        return -1;
    }
    return 0;
error:
    if (conf)
        rd_kafka_conf_destroy(conf);
    return -1;
}

void api_producer_destroy(api_loop_t *loop, int64_t deadline_us)
{
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    int64_t left_ms = (deadline_us - api_now_us()) / 1000;
    if (left_ms < 0)
        left_ms = 0;
    /* rd_kafka_flush serves the reports through rd_kafka_poll, freeing their api_put_t. */
    rd_kafka_flush(loop->rk, (int)left_ms);
    int remaining = rd_kafka_outq_len(loop->rk);
    if (remaining > 0) {
        log_field_int(&fields, "unflushed", remaining);
        log_warn(&fields, "shutdown deadline: purging commands never acknowledged (their requests got 503)");
        rd_kafka_purge(loop->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(loop->rk, 1000);
    }
    if (loop->kafka_event) {
        event_free(loop->kafka_event);
        loop->kafka_event = NULL;
    }
    if (loop->rkqu) {
        rd_kafka_queue_io_event_enable(loop->rkqu, -1, NULL, 0);
        rd_kafka_queue_destroy(loop->rkqu);
    }
    if (loop->rkt)
        rd_kafka_topic_destroy(loop->rkt);
    rd_kafka_destroy(loop->rk);
    loop->rk = NULL;
    for (int i = 0; i < 2; i++)
        if (loop->kafka_pipe[i] >= 0)
            close(loop->kafka_pipe[i]);
}
