/*
 * reply: the answer path of profiled-api, below every handler.
 *
 * Handlers (put.c, get.c, ops.c) and the dispatch (loop.c) call down into
 * this file to answer a request (with its metrics and error log line), to
 * hold a request on the loop's deadline list while Kafka or PostgreSQL
 * answers, and to let a draining loop end once nothing is held. Nothing here
 * calls a handler by name: an expired request is answered through its own
 * `expire` hook.
 */
#ifndef PROFILED_API_REPLY_H
#define PROFILED_API_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "http_server.h"

/* Monotonic microseconds. */
int64_t api_now_us(void);

/* Answers req with `body` (JSON unless the handler added its own Content-Type through content_type),
 * counting it under route and status. */
void api_reply(api_loop_t *loop, http_req_t *req, api_route_t route, int status, int64_t started_us,
               const char *content_type, const void *body, size_t body_len);
/* Answers req with a JSON body given in parts (http_req_respond_parts: not copied when the socket takes
 * it at once). */
void api_reply_parts(api_loop_t *loop, http_req_t *req, api_route_t route, int status, int64_t started_us,
                     const struct iovec *parts, int part_count);
/* Answers req with the error body for status (http_error.h), X-Request-Id, Retry-After on 503,
 * WWW-Authenticate on 401, and logs one line (api_log_refusal). */
void api_reply_error(api_loop_t *loop, http_req_t *req, api_route_t route, int status, int64_t started_us,
                     uint64_t request_seq, const char *message);
/* Logs one refusal line (request_id may be NULL), rate-limited per status and loop thread
 * (log_limit.h): a flood of bad requests writes a few lines, the next one carrying "suppressed". */
void api_log_refusal(int status, const char *request_id, const char *message);
/* Counts an answer the HTTP layer gave by itself (route "other"). */
void api_count_answer(api_loop_t *loop, api_route_t route, int status, int64_t started_us);

/* The deadline list: add (arms the timer when it was empty) and remove. */
void api_held_add(api_loop_t *loop, api_held_t *held);
void api_held_remove(api_loop_t *loop, api_held_t *held);
/* The deadline timer's callback: answers every expired request through its hook. */
void api_deadline_cb(int fd, short what, void *arg);

/* Called whenever held work finishes: while draining, ends the loop once nothing is held, queued for
 * PostgreSQL or unacknowledged in the producer. */
void api_loop_check_drained(api_loop_t *loop);
/* Stops the loop after a short flush of the answers just written. */
void api_loop_exit_soon(api_loop_t *loop);

#endif
