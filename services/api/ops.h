/*
 * ops: /healthz, /readyz, /metrics and the api's metric series (ops.c).
 */
#ifndef PROFILED_API_OPS_H
#define PROFILED_API_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "http_route.h"
#include "http_server.h"

void api_metrics_register(api_t *api);
/* Answers a GET or HEAD on an ops route. */
void api_ops_handle(api_loop_t *loop, http_req_t *req, http_route_t route, int64_t started_us);

#endif
