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

/* Reads what the worker recorded for command_id (applied_commands: applied, stale or refused with a
 * reason) on the loop's PostgreSQL connection, pipelined with the GETs. Call it once the command's
 * position was applied (applied.h). Returns the read, whose `done` is called once on the loop thread
 * (API_OUTCOME_UNKNOWN when PostgreSQL fails or takes longer than PROFILED_REQUEST_DEADLINE), unless
 * cancelled first; or NULL, calling nothing, when it cannot be read now (PostgreSQL down, too many
 * reads queued, or a schema without outcomes). */
api_get_t *api_pg_outcome(api_loop_t *loop, const uint8_t command_id[HTTP_COMMAND_ID_BYTES],
                          api_outcome_fn done, void *arg) __attribute__((warn_unused_result));
/* Forgets a read's hook (its client went away); the read itself ends with its result. */
void api_pg_outcome_cancel(api_loop_t *loop, api_get_t *read);

#endif
