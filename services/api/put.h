/*
 * put: the PUT /profiles/{recipient_id} handler and its delivery reports.
 */
#ifndef PROFILED_API_PUT_H
#define PROFILED_API_PUT_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "http_server.h"

/* Handles an authenticated write (route: PUT, POST, PATCH or DELETE) whose recipient id is decoded; answers
 * now (400, 413, 503) or holds the request until its delivery report or deadline. */
void api_put_handle(api_loop_t *loop, http_req_t *req, api_route_t route, const char *recipient_id,
                    size_t recipient_id_len, int64_t started_us, uint64_t request_seq);

/* The producer's delivery-report callback (producer.h's api_delivery_fn): answers the PUT, or counts
 * a late report. Frees the api_put_t. */
void api_put_delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, void *opaque);

/* Frees the loop's pool of api_put_t. */
void api_put_pool_free(api_loop_t *loop);

#endif
