/*
 * ops: /healthz, /readyz, /metrics, and the metric series of the api.
 * None of them needs an API key: probes and scrapers carry none, and none
 * of them reveals a profile.
 */
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_error.h"
#include "log.h"
#include "ready.h"
#include "reply.h"
#include "xalloc.h"

static const char *const api_route_labels[API_ROUTE__COUNT] = {
    [API_ROUTE_PUT_PROFILE] = "put_profile",
    [API_ROUTE_GET_PROFILE] = "get_profile",
    [API_ROUTE_POST_PROFILE] = "post_profile",
    [API_ROUTE_PATCH_PROFILE] = "patch_profile",
    [API_ROUTE_DELETE_PROFILE] = "delete_profile",
    [API_ROUTE_HEALTHZ] = "healthz",
    [API_ROUTE_READYZ] = "readyz",
    [API_ROUTE_METRICS] = "metrics",
    [API_ROUTE_OTHER] = "other",
};

/* Matches api_status_slot in reply.c: the last slot is "other". */
static const char *const api_status_labels[API_STATUS_SLOTS] = {
    "200", "400", "401", "404", "405", "413", "500", "503", "408", "431", "501", "304", "417", "other"};

static double api_in_flight(void *arg)
{
    api_t *api = arg;
    int64_t total = 0;
    for (unsigned i = 0; i < api->loop_count; i++)
        total += atomic_load_explicit(&api->loops[i].in_flight, memory_order_relaxed);
    return (double)total;
}

/* rd_kafka_outq_len is safe from any thread. */
static double api_queue_depth(void *arg)
{
    api_t *api = arg;
    int64_t total = 0;
    for (unsigned i = 0; i < api->loop_count; i++)
        if (api->loops[i].rk)
            total += rd_kafka_outq_len(api->loops[i].rk);
    return (double)total;
}

static double api_applied_waiting(void *arg)
{
    api_t *api = arg;
    int64_t total = 0;
    for (unsigned i = 0; i < api->loop_count; i++)
        total += api_applied_held(&api->loops[i].applied);
    return (double)total;
}

static double api_ready_gauge(void *arg)
{
    char reason[128];
    return api_ready(arg, reason, sizeof(reason)) ? 1.0 : 0.0;
}

void api_metrics_register(api_t *api)
{
    api_metrics_t *m = &api->m;
    char labels[96];
    for (int route = 0; route < API_ROUTE__COUNT; route++) {
        for (int slot = 0; slot < API_STATUS_SLOTS; slot++) {
            snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%s\"", api_route_labels[route],
                     api_status_labels[slot]);
            m->requests[route][slot] = metrics_counter(api->metrics, "profiled_api_requests_total",
                                                       "HTTP requests answered", labels);
        }
    }
    for (int route = 0; route < API_ROUTE__COUNT; route++) {
        snprintf(labels, sizeof(labels), "route=\"%s\"", api_route_labels[route]);
        m->latency[route] = metrics_histogram(api->metrics, "profiled_api_request_duration_seconds",
                                              "Time from a complete request to its answer", labels,
                                              metrics_latency_bounds, metrics_latency_bound_count);
    }
    const char *produce_help = "Commands refused by the local producer (no delivery attempted)";
    m->produce_errors_queue_full = metrics_counter(api->metrics, "profiled_api_produce_errors_total",
                                                   produce_help, "reason=\"queue_full\"");
    m->produce_errors_other =
        metrics_counter(api->metrics, "profiled_api_produce_errors_total", produce_help, "reason=\"other\"");
    m->delivery_failed =
        metrics_counter(api->metrics, "profiled_api_delivery_failures_total",
                        "Delivery reports with an error (timeout, broker error, purge)", NULL);
    m->delivery_late =
        metrics_counter(api->metrics, "profiled_api_late_delivery_reports_total",
                        "Delivery reports that arrived after their request was answered", NULL);
    m->deadline_expired =
        metrics_counter(api->metrics, "profiled_api_deadline_expired_total",
                        "Requests answered 503 because PROFILED_REQUEST_DEADLINE passed", NULL);
    m->pg_errors = metrics_counter(api->metrics, "profiled_api_postgres_errors_total",
                                   "PostgreSQL connection failures and failed queries", NULL);
    m->connections_refused =
        metrics_counter(api->metrics, "profiled_api_connections_refused_total",
                        "Connections refused (503) because PROFILED_HTTP_MAX_CONNECTIONS was reached", NULL);
    m->accept_paused = metrics_counter(
        api->metrics, "profiled_api_accept_paused_total",
        "Times accepting paused because accept() ran out of descriptors (EMFILE/ENFILE)", NULL);
    metrics_gauge(api->metrics, "profiled_api_in_flight_requests", "Requests held for Kafka or PostgreSQL",
                  NULL, api_in_flight, api);
    metrics_gauge(api->metrics, "profiled_api_producer_queue_messages",
                  "Messages in the producers' queues, not yet acknowledged (rd_kafka_outq_len)", NULL,
                  api_queue_depth, api);
    /* Read your writes (applied.h): waits of 0 to PROFILED_APPLY_WAIT. */
    static const double apply_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1,     2,    5,     10,   30};
    m->apply_wait = metrics_histogram(api->metrics, "profiled_api_apply_wait_seconds",
                                      "Time a write acknowledged by Kafka waited for the worker to apply it",
                                      NULL, apply_bounds, sizeof(apply_bounds) / sizeof(apply_bounds[0]));
    for (unsigned i = 0; i < api->loop_count; i++) /* the loop threads do not run yet */
        api->loops[i].applied.wait_seconds = m->apply_wait;
    m->pending_answers = metrics_counter(
        api->metrics, "profiled_api_pending_answers_total",
        "Writes answered 200 with X-Profiled-Visibility: pending (PROFILED_APPLY_WAIT passed first)", NULL);
    m->notify_malformed =
        metrics_counter(api->metrics, "profiled_api_applied_notify_malformed_total",
                        "Entries of profiled_applied notifications that could not be read", NULL);
    m->outcome_unknown = metrics_counter(
        api->metrics, "profiled_api_outcome_unknown_total",
        "Merges and patches answered 200 visible without reading whether the worker refused them "
        "(PostgreSQL unreachable or too slow)",
        NULL);
    metrics_gauge(api->metrics, "profiled_api_applied_waiting",
                  "Writes acknowledged by Kafka, held until the worker applies them", NULL,
                  api_applied_waiting, api);
    metrics_gauge(api->metrics, "profiled_api_ready", "1 when /readyz answers 200", NULL, api_ready_gauge,
                  api);
}

void api_ops_handle(api_loop_t *loop, http_req_t *req, http_route_t route, int64_t started_us)
{
    static const char healthy[] = "{\"status\":\"ok\"}";
    static const char ready[] = "{\"status\":\"ready\"}";
    api_t *api = loop->api;
    switch (route) {
    case HTTP_ROUTE_HEALTHZ:
        /* A fatal error of an idempotent producer cannot be undone in this
         * process: fail liveness too, so that the orchestrator restarts the
         * pod instead of leaving it unready for good. */
        for (unsigned i = 0; i < api->loop_count; i++) {
            if (atomic_load(&api->loops[i].kafka_fatal)) {
                buf_reset(&loop->scratch);
                http_error_body(&loop->scratch, 503,
                                "a Kafka producer hit a fatal error; this process must be restarted");
                api_reply(loop, req, API_ROUTE_HEALTHZ, 503, started_us, NULL, loop->scratch.data,
                          loop->scratch.len);
                return;
            }
        }
        api_reply(loop, req, API_ROUTE_HEALTHZ, 200, started_us, NULL, healthy, sizeof(healthy) - 1);
        return;
    case HTTP_ROUTE_READYZ: {
        char reason[160];
        if (loop->state != API_LOOP_SERVING)
            snprintf(reason, sizeof(reason), "shutting down");
        else if (api_ready(api, reason, sizeof(reason))) {
            api_reply(loop, req, API_ROUTE_READYZ, 200, started_us, NULL, ready, sizeof(ready) - 1);
            return;
        }
        /* Not through api_reply_error: a probe every few seconds should not log a line each time. */
        http_req_add_header(req, "Retry-After", "1");
        buf_reset(&loop->scratch);
        http_error_body(&loop->scratch, 503, reason);
        api_reply(loop, req, API_ROUTE_READYZ, 503, started_us, NULL, loop->scratch.data, loop->scratch.len);
        return;
    }
    case HTTP_ROUTE_METRICS:
        buf_reset(&loop->scratch);
        metrics_render(api->metrics, &loop->scratch);
        api_reply(loop, req, API_ROUTE_METRICS, 200, started_us, "text/plain; version=0.0.4; charset=utf-8",
                  loop->scratch.data, loop->scratch.len);
        return;
    case HTTP_ROUTE_NOT_FOUND:
    case HTTP_ROUTE_PROFILE:
    case HTTP_ROUTE__COUNT:
        break;
    }
    fatal_abort("impossible ops route %d", (int)route);
}
