/*
 * api: the state of profiled-api, shared by its files.
 *
 * One api_t per process (configuration, keys, metrics, the loops). One
 * api_loop_t per event-loop thread: its own event_base, HTTP server
 * (http_server.h) and listening socket (SO_REUSEPORT, the kernel spreads
 * connections), its own idempotent
 * Kafka producer and its own PostgreSQL connection. A request is born, held
 * and answered on the thread that accepted its connection; nothing of a
 * request crosses threads, so nothing of a request needs a lock.
 *
 * Held requests (a PUT waiting for its delivery report, a GET waiting for
 * PostgreSQL) sit on the loop's deadline list in arrival order. Because every
 * request gets the same deadline, arrival order is deadline order, and one
 * timer per loop armed for the head is enough.
 *
 * This header holds the types only. The functions live with their files,
 * layered so that no file calls up: reply.h (answers, the deadline list) at
 * the bottom; producer.h (the Kafka producer) beside it; the handlers put.h,
 * get.h and ops.h above them; loop.h (listening and dispatch) and main.c on
 * top.
 */
#ifndef PROFILED_API_H
#define PROFILED_API_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "applied.h"
#include "buf.h"
#include "http_auth.h"
#include "http_ids.h"
#include "http_route.h"
#include "http_server.h"
#include "metrics.h"
#include "profile_limits.h"

typedef struct api_config {
    char *http_addr;
    int64_t http_port;
    int64_t http_threads;
    int64_t http_header_timeout_ms;
    int64_t http_body_timeout_ms;
    int64_t http_idle_timeout_ms;
    int64_t http_max_connections;
    int64_t http_max_header_bytes;
    int64_t request_deadline_ms;
    char *api_keys;
    char *api_keys_file;
    int64_t shutdown_deadline_ms;
    char *kafka_brokers;
    char *kafka_topic;
    char *kafka_properties;
    int64_t kafka_linger_ms;
    int64_t kafka_queue_max;
    char *pg_dsn;
    int64_t pg_connect_timeout_ms;
    int64_t pg_connections_per_loop; /* PROFILED_PG_CONNECTIONS_PER_LOOP */
    char *log_level;
    int64_t max_body_bytes;
    int64_t max_depth;
    int64_t max_key_bytes;
    int64_t max_string_bytes;
    int64_t max_keys;
    char *put_ack;         /* PROFILED_PUT_ACK: "applied" or "kafka" (api_check_config) */
    int64_t apply_wait_ms; /* PROFILED_APPLY_WAIT */
} api_config_t;

/* When a PUT is answered (README "Read your writes"). */
typedef enum api_ack {
    API_ACK_APPLIED, /* Kafka acknowledged it and the worker applied past it (or APPLY_WAIT passed) */
    API_ACK_KAFKA,   /* Kafka acknowledged it */
} api_ack_t;

/* Routes as metrics see them: a method on a path. */
typedef enum api_route {
    API_ROUTE_PUT_PROFILE,
    API_ROUTE_GET_PROFILE,
    API_ROUTE_POST_PROFILE,
    API_ROUTE_PATCH_PROFILE,
    API_ROUTE_DELETE_PROFILE,
    API_ROUTE_HEALTHZ,
    API_ROUTE_READYZ,
    API_ROUTE_METRICS,
    API_ROUTE_OTHER, /* 404, 405 and what the HTTP layer refuses by itself */
    API_ROUTE__COUNT
} api_route_t;

/* Statuses the api answers; the last slot counts any other. */
#define API_STATUS_SLOTS 14

typedef struct api_metrics {
    metrics_counter_t *requests[API_ROUTE__COUNT][API_STATUS_SLOTS];
    metrics_histogram_t *latency[API_ROUTE__COUNT];
    metrics_counter_t *produce_errors_queue_full;
    metrics_counter_t *produce_errors_other;
    metrics_counter_t *delivery_failed;
    metrics_counter_t *delivery_late; /* reports that arrived after the request was answered */
    metrics_counter_t *deadline_expired;
    metrics_counter_t *pg_errors;
    metrics_counter_t *connections_refused;
    metrics_counter_t *accept_paused;
    metrics_histogram_t *apply_wait;     /* Kafka ack to applied (or to the APPLY_WAIT deadline) */
    metrics_counter_t *pending_answers;  /* PUTs answered before the worker applied them */
    metrics_counter_t *notify_malformed; /* profiled_applied entries that could not be read */
    metrics_counter_t *outcome_unknown;  /* merges and patches answered 200 without their outcome */
} api_metrics_t;

typedef struct api api_t;
typedef struct api_loop api_loop_t;

/* A request held on a loop until an outside answer (Kafka, PostgreSQL) or its deadline. */
typedef struct api_held {
    struct api_held *prev, *next;
    int64_t deadline_us;               /* monotonic */
    void (*expire)(struct api_held *); /* answers 503 and detaches; called on the loop thread */
} api_held_t;

typedef enum api_put_state {
    API_PUT_HELD,     /* produced; the request waits for the delivery report */
    API_PUT_APPLYING, /* acknowledged; the request waits for the worker (applied.h) */
    API_PUT_OUTCOME,  /* applied (a merge or patch): the request waits for its outcome read (get.h) */
    API_PUT_ANSWERED, /* answered without a report (deadline, shutdown, connection gone); awaits the report */
} api_put_state_t;

/* One produced command. Owned by librdkafka from produce to delivery report
 * (it is the message opaque), so it outlives its request when the deadline
 * answers first; the report callback frees it. */
typedef struct api_put {
    api_held_t held;
    api_loop_t *loop;
    http_req_t *req; /* NULL once answered */
    api_put_state_t state;
    int64_t started_us;
    uint64_t request_seq;
    api_route_t route; /* PUT, POST, PATCH or DELETE: the metric, and the answer (DELETE: 204) */
    api_ack_t ack;
    bool prefer_given; /* the request carried a profiled-ack preference: answer Preference-Applied */
    api_applied_wait_t applied;
    struct api_get *outcome_read; /* API_PUT_OUTCOME: the read of its outcome (api_pg_outcome_cancel) */
    uint8_t command_id[HTTP_COMMAND_ID_BYTES];
    struct api_put *free_next; /* on the loop's free list */
} api_put_t;

/* What the worker recorded for a command (applied_commands.outcome), as api_pg_outcome reads it. */
typedef enum api_outcome {
    API_OUTCOME_APPLIED, /* applied, skipped as stale, or no record (dead-lettered): not refused */
    API_OUTCOME_REFUSED, /* a merge or patch that could not apply to the stored profile; nothing changed */
    API_OUTCOME_UNKNOWN, /* not read: PostgreSQL down, slow past the deadline, or an older schema */
} api_outcome_t;

/* Called once on the loop thread with the outcome and, when refused, the worker's reason. */
typedef void (*api_outcome_fn)(void *arg, api_outcome_t outcome, const char *reason, size_t reason_len);

/* One read waiting for PostgreSQL, in the connection's FIFO: a GET, or the outcome read of an
 * applied write (api_pg_outcome: `done` set, `req` NULL). */
typedef struct api_get {
    api_held_t held;
    struct api_get *next;
    api_loop_t *loop;
    http_req_t *req; /* NULL once answered (result, deadline) or detached (client gone) */
    int64_t started_us;
    uint64_t request_seq;
    size_t recipient_id_len;
    char recipient_id[HTTP_RECIPIENT_ID_CAP];
    char *if_none_match; /* the request's If-None-Match (copied), or NULL */
    api_outcome_fn done; /* an outcome read: its hook, NULL once called or cancelled */
    void *done_arg;
    bool outcome; /* an outcome read (command_id below), not a GET */
    uint8_t command_id[HTTP_COMMAND_ID_BYTES];
    bool got_result;  /* its result arrived; the NULL that ends it is next */
    bool aborted;     /* PGRES_PIPELINE_ABORTED: not run (another GET of its batch failed); sent again */
    uint8_t attempts; /* sends after an abort */
} api_get_t;

typedef enum api_pg_state {
    API_PG_DOWN,       /* no connection; reconnect timer armed; GETs answer 503 at once */
    API_PG_CONNECTING, /* PQconnectPoll in progress; GETs queue */
    API_PG_PREPARING,  /* connected, in pipeline mode: LISTEN, the Prepare and the positions in flight; GETs
                          queue */
    API_PG_IDLE,       /* prepared: GETs are sent at once, many in flight (pipeline mode) */
} api_pg_state_t;

/* One of the loop's PostgreSQL connections (PROFILED_PG_CONNECTIONS_PER_LOOP). */
typedef struct api_pg {
    api_loop_t *loop;
    unsigned index; /* in loop->pgs */
    api_pg_state_t state;
    PGconn *conn;
    struct event *read_event, *write_event; /* on PQsocket; re-created when the socket changes */
    int event_fd;
    struct event *retry_timer; /* DOWN -> CONNECTING, and the connect timeout while CONNECTING */
    int64_t backoff_ms;
    /* Sent, in order: results arrive in this order (pipeline mode), each ended by its Sync. An
     * entry whose client went away stays here, detached (req NULL), until its result arrives. */
    api_get_t *head, *tail;
    api_get_t *wait_head, *wait_tail; /* not sent yet (connecting, preparing, or batches in flight) */
    size_t queued;                    /* both lists */
    struct event *send_event;         /* sends the waiting GETs once the loop's ready callbacks ran */
    bool send_pending;
    int batches;         /* IDLE: batches sent whose Sync has not come back yet */
    bool outcome_ready;  /* the outcome statement is prepared (the worker's schema has outcomes) */
    int prepare_syncs;   /* PREPARING: Syncs answered (three: LISTEN; Prepare and positions; outcomes) */
    int prepare_results; /* PREPARING: results other than Syncs answered */
} api_pg_t;

typedef enum api_loop_state {
    API_LOOP_SERVING,  /* accepting and answering */
    API_LOOP_DRAINING, /* listener closed; new requests on open connections get 503; waits for held ones */
    API_LOOP_DONE,     /* dispatch has returned */
} api_loop_state_t;

struct api_loop {
    api_t *api;
    unsigned index;
    pthread_t thread;
    api_loop_state_t state;
    bool exit_scheduled; /* drained (or out of time); the loop stops after a short flush */

    struct event_base *base;
    http_server_t *http;

    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    rd_kafka_queue_t *rkqu; /* the main queue; delivery reports arrive here */
    int kafka_pipe[2];      /* librdkafka writes [1] when rkqu becomes non-empty; the loop reads [0] */
    struct event *kafka_event;
    _Atomic bool kafka_up;    /* a broker connection is up (statistics) */
    _Atomic bool kafka_down;  /* no broker any more after one was up: PUTs answer 503 at once */
    _Atomic bool kafka_seen;  /* a broker was up once (statistics); start-up is not an outage */
    _Atomic bool kafka_fatal; /* the idempotent producer hit a fatal error */
    _Atomic bool pg_up; /* one of the loop's PostgreSQL connections is prepared (GETs can be answered) */

    api_pg_t *pgs; /* PROFILED_PG_CONNECTIONS_PER_LOOP of them; a read goes to the least busy (get.c) */
    unsigned pg_count, pg_next; /* pg_next: where the next choice starts, so ties go round */
    int pg_up_count;            /* connections prepared (API_PG_IDLE) */
    size_t pg_queued;           /* reads queued on all of them (the drain waits for none) */
    api_applied_t applied;      /* the worker's positions and the requests waiting on them */

    api_held_t held; /* sentinel of the deadline list */
    struct event *deadline_timer;
    struct event *stop_event;  /* activated by the main thread on SIGTERM */
    struct event *drain_timer; /* shutdown deadline */

    api_put_t *put_free;
    buf_t profile; /* scratch: transcoded profile */
    buf_t command; /* scratch: encoded command */
    buf_t scratch; /* scratch: error bodies, GET bodies */

    uint64_t request_seq;
    _Atomic int64_t in_flight;
};

struct api {
    api_config_t config;
    limits_t limits;
    http_keys_t *keys;
    metrics_t *metrics;
    api_metrics_t m;
    api_ack_t put_ack; /* PROFILED_PUT_ACK */
    api_loop_t *loops;
    unsigned loop_count;
    int64_t max_connections_per_loop;

    struct event_base *main_base;
    struct event *loop_done_event;
    _Atomic unsigned loops_done;
    bool stopping;
    int64_t stop_started_us;
};

/* config.c */
int api_config_load(api_config_t *config, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
void api_config_help(FILE *out);
void api_config_free(api_config_t *config);

/* The Kafka producer configuration of one api loop, from `config`: brokers,
 * PROFILED_KAFKA_PROPERTIES, client.id, the producer contract (not overridable),
 * linger, queue bound, message timeout and statistics; the callbacks are the
 * caller's. tests/bench/api/raw_producer.c builds its producer with it too, so
 * the bench's ceiling pays what a PUT pays. NULL with errstr. */
rd_kafka_conf_t *api_kafka_conf(const api_config_t *config, const char *client_id, char *errstr,
                                size_t errstr_size);

#endif
