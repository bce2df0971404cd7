/*
 * put: the writes to /profiles/{recipient_id}, each one command on the same
 * topic and key: PUT (replace), POST (merge), PATCH (patch) and DELETE
 * (delete). Authentication and routing are done (loop.c); here the
 * Idempotency-Key, the body through the transcoder (json_patch.h for PATCH),
 * the command, the produce, and the answer when the delivery report arrives
 * (producer.h serves the reports on the loop thread): 200 {"status":"SUCCESS"},
 * or 204 for a DELETE. A full producer queue is a 503 at once.
 *
 * In applied mode (PROFILED_PUT_ACK, or the request's `Prefer:
 * profiled-ack=`), an acknowledged command of any kind is held once more,
 * until the worker applied its position (applied.h) or PROFILED_APPLY_WAIT
 * passed; both answer as above, saying which in X-Profiled-Visibility. A
 * merge or patch can be refused by the worker (a failing `test`, a missing
 * path, a result over the limits: decided against the stored profile), so
 * once applied its outcome is read back (get.h's api_pg_outcome, pipelined
 * with the GETs) and a refusal is answered 400 with the worker's reason
 * (README "Every write"). Replace and delete cannot be refused: no read.
 */
#include "put.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "codec.h"
#include "get.h"
#include "json_patch.h"
#include "json_transcode.h"
#include "kafka_delivery.h"
#include "log.h"
#include "prefer.h"
#include "ready.h"
#include "reply.h"
#include "xalloc.h"

static const char api_put_success[] = "{\"status\":\"SUCCESS\"}";

static api_put_t *api_put_alloc(api_loop_t *loop)
{
    api_put_t *put = loop->put_free;
    if (put) {
        loop->put_free = put->free_next;
    } else {
        put = xmalloc(sizeof(*put), "a PUT request");
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
    api_reply_error(loop, put->req, put->route, 503, put->started_us, put->request_seq, message);
    put->req = NULL;
    put->state = API_PUT_ANSWERED;
}

/* The connection went away while the request was held (a reset by the peer, or the server's teardown).
 * Nobody to answer; the report is still awaited, unless it came already (then the put is ours). */
static void api_put_detach(void *arg)
{
    api_put_t *put = arg;
    if (put->state == API_PUT_APPLYING || put->state == API_PUT_OUTCOME) {
        if (put->state == API_PUT_APPLYING)
            api_applied_cancel(&put->loop->applied, &put->applied);
        else
            api_pg_outcome_cancel(put->loop, put->outcome_read);
        api_put_free(put->loop, put);
        api_loop_check_drained(put->loop);
        return;
    }
    if (put->state != API_PUT_HELD)
        return;
    api_held_remove(put->loop, &put->held);
    put->req = NULL;
    put->state = API_PUT_ANSWERED;
}

/* The answer of an acknowledged command; `visibility`: whether the worker applied it (applied mode).
 * 200 {"status":"SUCCESS"}, or 204 without a body for a DELETE (Courier's SDKs expect none). */
static void api_put_answer(api_loop_t *loop, api_put_t *put, const char *visibility)
{
    if (put->prefer_given)
        http_req_add_header(put->req, "Preference-Applied",
                            put->ack == API_ACK_APPLIED ? "profiled-ack=applied" : "profiled-ack=kafka");
    if (visibility)
        http_req_add_header(put->req, "X-Profiled-Visibility", visibility);
    if (put->route == API_ROUTE_DELETE_PROFILE)
        api_reply(loop, put->req, put->route, 204, put->started_us, NULL, NULL, 0);
    else
        api_reply(loop, put->req, put->route, 200, put->started_us, NULL, api_put_success,
                  sizeof(api_put_success) - 1);
    put->req = NULL;
}

/* get.h's hook: what the worker recorded for an applied merge or patch. A refusal changed nothing, and
 * is answered as Courier answers a patch it cannot apply: 400 invalid_request_error, the message naming
 * the operation and the reason (not 409: the official SDKs retry a 409). Otherwise 200 visible; when the
 * outcome could not be read, 200 visible with X-Profiled-Outcome: unknown (the command is decided
 * either way, and a 5xx would make an SDK send the patch again as a new command). */
static void api_put_outcome(void *arg, api_outcome_t outcome, const char *reason, size_t reason_len)
{
    api_put_t *put = arg;
    api_loop_t *loop = put->loop;
    if (outcome == API_OUTCOME_REFUSED) {
        char message[700];
        snprintf(message, sizeof(message),
                 "the %s cannot apply to the stored profile and changed nothing: %.*s",
                 put->route == API_ROUTE_PATCH_PROFILE ? "patch" : "merge",
                 (int)(reason_len > 512 ? 512 : reason_len), reason);
        if (put->prefer_given)
            http_req_add_header(put->req, "Preference-Applied", "profiled-ack=applied");
        http_req_add_header(put->req, "X-Profiled-Outcome", "refused");
        api_reply_error(loop, put->req, put->route, 400, put->started_us, put->request_seq, message);
        put->req = NULL;
    } else {
        if (outcome == API_OUTCOME_UNKNOWN) {
            metrics_counter_add(loop->api->m.outcome_unknown, 1);
            http_req_add_header(put->req, "X-Profiled-Outcome", "unknown");
        }
        api_put_answer(loop, put, "visible");
    }
    api_put_free(loop, put);
    api_loop_check_drained(loop);
}

/* applied.h's hook: the worker applied the command, or PROFILED_APPLY_WAIT (or the shutdown
 * deadline) passed first; either way the command is durable, so 200, unless an applied merge or patch
 * was refused (its outcome is read first: api_put_outcome). */
static void api_put_applied(api_applied_wait_t *wait, bool applied)
{
    api_put_t *put = (api_put_t *)((char *)wait - offsetof(api_put_t, applied));
    api_loop_t *loop = put->loop;
    if (applied && (put->route == API_ROUTE_PATCH_PROFILE || put->route == API_ROUTE_POST_PROFILE)) {
        put->outcome_read = api_pg_outcome(loop, put->command_id, api_put_outcome, put);
        if (put->outcome_read) {
            put->state = API_PUT_OUTCOME;
            return; /* api_put_outcome answers and frees */
        }
        api_put_outcome(put, API_OUTCOME_UNKNOWN, NULL, 0);
        return;
    }
    if (!applied)
        metrics_counter_add(loop->api->m.pending_answers, 1);
    api_put_answer(loop, put, applied ? "visible" : "pending");
    api_put_free(loop, put);
    api_loop_check_drained(loop);
}

/* The command kind of a write route. */
static codec_op_t api_put_op(api_route_t route)
{
    switch (route) {
    case API_ROUTE_POST_PROFILE:
        return CODEC_OP_MERGE;
    case API_ROUTE_PATCH_PROFILE:
        return CODEC_OP_PATCH;
    case API_ROUTE_DELETE_PROFILE:
        return CODEC_OP_DELETE;
    default:
        return CODEC_OP_REPLACE;
    }
}

void api_put_handle(api_loop_t *loop, http_req_t *req, api_route_t route, const char *recipient_id,
                    size_t recipient_id_len, int64_t started_us, uint64_t request_seq)
{
    codec_op_t op = api_put_op(route);
    api_t *api = loop->api;
    char message[512];
    uint8_t command_id[HTTP_COMMAND_ID_BYTES];

    const char *idempotency_key = http_req_header(req, "Idempotency-Key");
    if (idempotency_key) {
        if (http_idempotency_key_check(idempotency_key, message, sizeof(message)) < 0) {
            api_reply_error(loop, req, route, 400, started_us, request_seq, message);
            return;
        }
        http_command_id_from_key(idempotency_key, strlen(idempotency_key), recipient_id, recipient_id_len,
                                 command_id);
    } else if (http_command_id_random(command_id) < 0) {
        snprintf(message, sizeof(message), "cannot draw a random command id: %s", strerror(errno));
        api_reply_error(loop, req, route, 500, started_us, request_seq, message);
        return;
    }

    /* 4. the body, through the transcoder: a 400 names the field and the rule. A DELETE's body is not
     * read; a PATCH's is {"patch": [...]}, checked by json_patch.h (operations and pointers). */
    size_t body_len = req->body_len;
    const uint8_t *body = req->body;
    transcode_error_t terror;
    buf_reset(&loop->profile);
    int body_rc = 0;
    if (op == CODEC_OP_PATCH)
        body_rc = jpatch_request(body, body_len, &api->limits, &loop->profile, &terror);
    else if (op != CODEC_OP_DELETE)
        body_rc = transcode_profile_request(body, body_len, &api->limits, &loop->profile, &terror);
    if (body_rc < 0) {
        int status = terror.status == TRANSCODE_ERR_TOO_LARGE ? 413 : 400;
        api_reply_error(loop, req, route, status, started_us, request_seq, terror.message);
        return;
    }

    /* 5. the command */
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    codec_command_t command = {
        .schema_version = CODEC_SCHEMA_VERSION,
        .op = op,
        .recipient_id = recipient_id,
        .recipient_id_len = recipient_id_len,
        .accepted_at_us = (int64_t)wall.tv_sec * 1000000 + wall.tv_nsec / 1000,
        /* proto §1: the tag that tells the api's writes from bulk producers'. */
        .source = "api",
        .source_len = 3,
    };
    if (op == CODEC_OP_PATCH) {
        command.patch_msgpack = loop->profile.data;
        command.patch_msgpack_len = loop->profile.len;
    } else if (op != CODEC_OP_DELETE) {
        command.profile_msgpack = loop->profile.data;
        command.profile_msgpack_len = loop->profile.len;
    }
    memcpy(command.command_id, command_id, sizeof(command_id));
    buf_reset(&loop->command);
    if (codec_encode(&command, &loop->command, message, sizeof(message)) < 0) {
        api_reply_error(loop, req, route, 500, started_us, request_seq, message);
        return;
    }

    /* 6. produce, keyed by the recipient id, and hold the request until the report. */
    if (atomic_load_explicit(&loop->kafka_fatal, memory_order_relaxed)) {
        metrics_counter_add(api->m.produce_errors_other, 1);
        api_reply_error(loop, req, route, 503, started_us, request_seq,
                        "the Kafka producer failed and cannot accept commands; retry");
        return;
    }
    /* Kafka known down: a prompt 503 rather than a request held to its deadline (README "Probes"). */
    if (atomic_load_explicit(&loop->kafka_down, memory_order_relaxed)) {
        metrics_counter_add(api->m.produce_errors_other, 1);
        api_reply_error(loop, req, route, 503, started_us, request_seq, "Kafka is unreachable; retry");
        return;
    }
    api_put_t *put = api_put_alloc(loop);
    put->ack = api->put_ack;
    const char *prefer = http_req_header(req, "Prefer");
    char ack[16];
    if (prefer && api_prefer_find(prefer, "profiled-ack", ack, sizeof(ack))) {
        /* RFC 7240: a preference the server does not understand is ignored (no Preference-Applied). */
        if (strcasecmp(ack, "applied") == 0 || strcasecmp(ack, "kafka") == 0) {
            put->ack = strcasecmp(ack, "applied") == 0 ? API_ACK_APPLIED : API_ACK_KAFKA;
            put->prefer_given = true;
        }
    }
    put->req = req;
    put->state = API_PUT_HELD;
    put->started_us = started_us;
    put->request_seq = request_seq;
    put->route = route;
    memcpy(put->command_id, command_id, sizeof(command_id));
    put->held.expire = api_put_expire;
    put->held.deadline_us = started_us + api->config.request_deadline_ms * 1000;

    if (rd_kafka_produce(loop->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, loop->command.data,
                         loop->command.len, recipient_id, recipient_id_len, put) == -1) {
        rd_kafka_resp_err_t err = rd_kafka_last_error();
        api_put_free(loop, put);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            metrics_counter_add(api->m.produce_errors_queue_full, 1);
            api_reply_error(loop, req, route, 503, started_us, request_seq,
                            "the Kafka producer queue is full (PROFILED_KAFKA_QUEUE_MAX); retry");
        } else if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            metrics_counter_add(api->m.produce_errors_other, 1);
            snprintf(message, sizeof(message), "the command is %zu bytes, over Kafka's message.max.bytes",
                     loop->command.len);
            api_reply_error(loop, req, route, 413, started_us, request_seq, message);
        } else {
            metrics_counter_add(api->m.produce_errors_other, 1);
            snprintf(message, sizeof(message), "cannot produce to Kafka: %s; retry", rd_kafka_err2str(err));
            api_reply_error(loop, req, route, 503, started_us, request_seq, message);
        }
        return;
    }
    api_held_add(loop, &put->held);
    http_req_hold(req, api_put_detach, put);
}

void api_put_delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, void *opaque)
{
    (void)rk;
    api_loop_t *loop = opaque;
    api_t *api = loop->api;
    api_put_t *put = rkmessage->_private;
    char request_id[32], id_text[HTTP_COMMAND_ID_TEXT];
    http_command_id_format(put->command_id, id_text);

    /* A success is only a success if the report proves the broker wrote the command (kafka_delivery.h):
     * librdkafka 2.0 also reports, without an offset, messages it never saw acknowledged. Those get
     * a 503 (ambiguous: retry with the same Idempotency-Key), and a line that says so. */
    bool persisted = kafka_delivery_written(rkmessage);
    if (rkmessage->err == RD_KAFKA_RESP_ERR_NO_ERROR && !persisted) {
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "command_id", id_text);
        log_field_int(&fields, "partition", rkmessage->partition);
        log_field_int(&fields, "offset", rkmessage->offset);
        log_field_int(&fields, "status", (int64_t)rd_kafka_message_status(rkmessage));
        log_warn(&fields, "Kafka reported the command delivered without proof it was written (no offset, "
                          "or not persisted); answered 503");
    }
    if (!persisted)
        metrics_counter_add(api->m.delivery_failed, 1);
    /* An ack proves a broker was up, even before the first statistics said so. */
    if (rkmessage->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        api_ready_kafka_state(loop, true);

    if (put->state == API_PUT_HELD) {
        api_held_remove(loop, &put->held);
        if (persisted) {
            char partition[16], offset[24];
            snprintf(partition, sizeof(partition), "%" PRId32, rkmessage->partition);
            snprintf(offset, sizeof(offset), "%" PRId64, rkmessage->offset);
            http_req_add_header(put->req, "X-Command-Id", id_text);
            http_req_add_header(put->req, "X-Kafka-Partition", partition);
            http_req_add_header(put->req, "X-Kafka-Offset", offset);
            if (log_level_min <= LOG_DEBUG) {
                api_put_request_id(put, request_id, sizeof(request_id));
                log_fields_t fields = LOG_FIELDS_INIT;
                log_field_str(&fields, "request_id", request_id);
                log_field_str(&fields, "command_id", id_text);
                log_field_int(&fields, "partition", rkmessage->partition);
                log_field_int(&fields, "offset", rkmessage->offset);
                log_debug(&fields, "command acknowledged");
            }
            if (put->ack == API_ACK_APPLIED) {
                /* Hold until the worker's position passes the offset; the deadline counts from the
                 * ack, so a slow broker does not eat the worker's time. */
                int64_t deadline = api_now_us() + api->config.apply_wait_ms * 1000;
                if (!api_applied_hold(&loop->applied, &put->applied, rkmessage->partition, rkmessage->offset,
                                      deadline, api_put_applied)) {
                    put->state = API_PUT_APPLYING;
                    return; /* api_put_applied answers and frees */
                }
                /* Applied before its report came: as if woken now (a merge or patch reads its outcome). */
                put->state = API_PUT_APPLYING;
                api_put_applied(&put->applied, true);
                return;
            } else {
                api_put_answer(loop, put, NULL);
            }
        } else {
            char message[300];
            snprintf(message, sizeof(message), "Kafka did not acknowledge the command: %s; retry",
                     rkmessage->err ? rd_kafka_err2str(rkmessage->err) : "no proof it was written");
            api_reply_error(loop, put->req, put->route, 503, put->started_us, put->request_seq, message);
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

void api_put_pool_free(api_loop_t *loop)
{
    while (loop->put_free) {
        api_put_t *put = loop->put_free;
        loop->put_free = put->free_next;
        free(put);
    }
}
