/*
 * get: GET /profiles/{recipient_id} and the loop's PostgreSQL connection (get.c).
 */
#ifndef PROFILED_API_GET_H
#define PROFILED_API_GET_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "http_server.h"

int api_pg_init(api_loop_t *loop, char *errstr, size_t errstr_size) __attribute__((warn_unused_result));
void api_pg_destroy(api_loop_t *loop);
/* Handles an authenticated GET whose recipient id is decoded: answers now (503) or queues it for
 * PostgreSQL, held until the answer or its deadline. */
void api_get_handle(api_loop_t *loop, http_req_t *req, const char *recipient_id, size_t recipient_id_len,
                    int64_t started_us, uint64_t request_seq);

#endif
