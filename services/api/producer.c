/*
 * producer: the Kafka producer of one loop.
 *
 * Each loop owns one idempotent producer (acks=all). Its main queue, where
 * delivery reports, errors and statistics arrive, signals a pipe when it
 * becomes non-empty (rd_kafka_queue_io_event_enable); the loop watches the
 * pipe and serves the queue with rd_kafka_poll(rk, 0). So a delivery report
 * runs on the thread that holds its request: no handoff, no polling timer,
 * and the loop never blocks on Kafka. What a report means is the caller's:
 * the delivery callback is given at init (put.c's), so this file knows
 * nothing of requests.
 */
#include "producer.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kafka_conf.h"
#include "kafka_log.h"
#include "log.h"
#include "ready.h"
#include "reply.h"

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

int api_producer_init(api_loop_t *loop, api_delivery_fn delivered, char *errstr, size_t errstr_size)
{
    const api_config_t *config = &loop->api->config;
    char client_id[64];
    snprintf(client_id, sizeof(client_id), "profiled-api-%u", loop->index);
    rd_kafka_conf_t *conf = api_kafka_conf(config, client_id, errstr, errstr_size);
    if (!conf)
        return -1;
    rd_kafka_conf_set_dr_msg_cb(conf, delivered);
    rd_kafka_conf_set_stats_cb(conf, api_stats_cb);
    rd_kafka_conf_set_error_cb(conf, api_error_cb);
    kafka_log_install(conf);
    rd_kafka_conf_set_opaque(conf, loop);

    if (kafka_producer_open(conf, config->kafka_topic, &loop->rk, &loop->rkt, errstr, errstr_size) < 0)
        return -1; /* conf was taken */
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
