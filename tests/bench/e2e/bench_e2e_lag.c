/*
 * bench_e2e_lag: the end-to-end lag of profiled, "PUT answered to row visible", under
 * an open-loop load at a fixed rate (issue 5: 1,000 PUT/s, p99 at most 200 ms; issue 12: at most 100 ms).
 *
 * One process, one event loop, one monotonic clock:
 *   - the load: PUT /profiles/{id} at a fixed rate, one new recipient id per request,
 *     over a pool of keep-alive connections (libevent's evhttp client). Request i is
 *     *scheduled* at start + i/rate whether or not earlier answers came back (open
 *     loop); when every connection is busy it waits in a queue, and its latency still
 *     counts from its scheduled time, so a stall is not hidden (no coordinated omission).
 *   - the clock on the far side: LISTEN profiled_applied on PostgreSQL, watched by the
 *     same loop. The worker sends that NOTIFY inside the transaction that wrote the
 *     rows, and PostgreSQL delivers it only after the COMMIT, so a notification naming
 *     topic/partition/next means every command of that partition below `next` is
 *     visible to readers. The 200 carries X-Kafka-Partition and X-Kafka-Offset, so a
 *     request's row is visible at the first notification of its partition with
 *     next > offset. The time measured is the notification's arrival here: at or after
 *     the commit, an upper bound on the true lag, never flattering it.
 *   - at the end, a SELECT checks that PostgreSQL holds every answered row, written by
 *     its command at its position (so the notifications did not lie).
 *
 * Figures: PUT latency (scheduled to 200), lag (200 to visible), and sent to visible,
 * as p50/p99/max over the measured requests (a warm-up at the same rate is sent first
 * and left out), and the achieved rate of 200 answers.
 *
 * Exit 0 when every PUT was answered 200 and every row became visible and is stored;
 * 1 otherwise (the p99 target is printed as met or missed, not turned into an exit
 * code: a timing on a shared machine is a figure, not a verdict); 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>

#define LAG_MAX_PARTITIONS 1024

typedef enum lag_req_state {
    LAG_REQ_UNSENT = 0, /* not yet due, or due and waiting for a free connection */
    LAG_REQ_IN_FLIGHT,  /* written to a connection, no answer yet */
    LAG_REQ_ANSWERED,   /* 200 with a position */
    LAG_REQ_FAILED,     /* any other answer, or a transport error */
} lag_req_state_t;

typedef struct lag_conn lag_conn_t;
typedef struct lag lag_t;

typedef struct lag_req {
    lag_t *lag; /* the callback's way back to the state */
    lag_req_state_t state;
    uint32_t index;
    int64_t scheduled_us; /* start + index / rate */
    int64_t sent_us;      /* handed to a connection */
    int64_t answered_us;  /* the 200 arrived */
    int64_t visible_us;   /* first NOTIFY covering its position; 0 until then */
    int32_t partition;
    int64_t offset;
    lag_conn_t *conn;
} lag_req_t;

struct lag_conn {
    struct evhttp_connection *evcon;
    lag_req_t *busy; /* the request on this connection, NULL when idle */
    lag_conn_t *next_idle;
};

typedef struct lag_notify {
    int64_t next; /* every offset below it is committed */
    int64_t at_us;
} lag_notify_t;

typedef struct lag_partition {
    lag_notify_t *notifies; /* in arrival order; `next` only grows */
    size_t len, cap;
} lag_partition_t;

typedef struct lag_opts {
    const char *host;
    int port;
    const char *key;
    const char *dsn;
    const char *topic;
    const char *run;
    double rate;
    double duration_s;
    double warmup_s;
    int connections;
    double drain_s;
    const char *ack; /* NULL, or "kafka" / "applied": sent as Prefer: profiled-ack=<ack> */
} lag_opts_t;

struct lag {
    lag_opts_t opts;
    struct event_base *base;
    struct event *tick;
    struct event *pg_event;
    struct event *sigint;
    PGconn *pg;
    lag_conn_t *conns;
    lag_conn_t *idle;
    lag_req_t *reqs;
    uint32_t total;     /* warm-up + measured requests */
    uint32_t warmup;    /* the first `warmup` requests are not measured */
    uint32_t next_due;  /* next request whose schedule has not come */
    uint32_t queue_pos; /* next due request waiting for a connection */
    uint32_t answered, failed, visible;
    uint32_t pending; /* answered with X-Profiled-Visibility: pending (applied mode, worker too slow) */
    int64_t start_us;
    int64_t drain_deadline_us;
    lag_partition_t partitions[LAG_MAX_PARTITIONS];
    size_t notify_count;
    size_t notify_foreign; /* notifications of other topics (other workers) */
    char body[1024];
    int body_len_fixed;
    unsigned errors_printed;
    bool interrupted;
};

static int64_t lag_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void lag_error(lag_t *lag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lag_error(lag_t *lag, const char *fmt, ...)
{
    if (lag->errors_printed++ >= 10)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_e2e_lag: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void lag_send_queued(lag_t *lag);

static void lag_conn_release(lag_t *lag, lag_conn_t *conn)
{
    conn->busy = NULL;
    conn->next_idle = lag->idle;
    lag->idle = conn;
}

/* Runs on the loop, when the answer (or a transport error) for `req` arrived. */
static void lag_on_answer(struct evhttp_request *evreq, void *arg)
{
    lag_req_t *req = arg;
    lag_conn_t *conn = req->conn;
    lag_t *lag = req->lag;
    int64_t now = lag_now_us();
    int code = evreq ? evhttp_request_get_response_code(evreq) : 0;
    if (code == 200) {
        struct evkeyvalq *headers = evhttp_request_get_input_headers(evreq);
        const char *partition = evhttp_find_header(headers, "X-Kafka-Partition");
        const char *offset = evhttp_find_header(headers, "X-Kafka-Offset");
        char *end1 = NULL, *end2 = NULL;
        long p = partition ? strtol(partition, &end1, 10) : -1;
        long long o = offset ? strtoll(offset, &end2, 10) : -1;
        if (!partition || !offset || *end1 || *end2 || p < 0 || p >= LAG_MAX_PARTITIONS || o < 0) {
            lag_error(lag, "request %" PRIu32 ": 200 without a usable X-Kafka-Partition/X-Kafka-Offset",
                      req->index);
            req->state = LAG_REQ_FAILED;
            lag->failed++;
        } else {
            const char *visibility = evhttp_find_header(headers, "X-Profiled-Visibility");
            if (visibility && !strcmp(visibility, "pending"))
                lag->pending++;
            req->state = LAG_REQ_ANSWERED;
            req->answered_us = now;
            req->partition = (int32_t)p;
            req->offset = o;
            lag->answered++;
        }
    } else {
        char snippet[200] = "";
        if (evreq) {
            struct evbuffer *in = evhttp_request_get_input_buffer(evreq);
            size_t n = evbuffer_get_length(in);
            if (n >= sizeof(snippet))
                n = sizeof(snippet) - 1;
            evbuffer_copyout(in, snippet, n);
            snippet[n] = '\0';
        }
        lag_error(lag, "request %" PRIu32 ": status %d %s", req->index, code,
                  code ? snippet : "(connection error or timeout)");
        req->state = LAG_REQ_FAILED;
        lag->failed++;
    }
    lag_conn_release(lag, conn);
    lag_send_queued(lag);
}

static int lag_send(lag_t *lag, lag_req_t *req, lag_conn_t *conn)
{
    char path[256];
    snprintf(path, sizeof(path), "/profiles/bench-%s-%" PRIu32, lag->opts.run, req->index);
    struct evhttp_request *evreq = evhttp_request_new(lag_on_answer, req);
    if (!evreq)
        return -1;
    struct evkeyvalq *out = evhttp_request_get_output_headers(evreq);
    char auth[512], host[64];
    snprintf(auth, sizeof(auth), "Bearer %s", lag->opts.key);
    snprintf(host, sizeof(host), "%s:%d", lag->opts.host, lag->opts.port);
    evhttp_add_header(out, "Host", host);
    evhttp_add_header(out, "Authorization", auth);
    evhttp_add_header(out, "Content-Type", "application/json");
    if (lag->opts.ack) {
        char prefer[64];
        snprintf(prefer, sizeof(prefer), "profiled-ack=%s", lag->opts.ack);
        evhttp_add_header(out, "Prefer", prefer);
    }
    char body[sizeof(lag->body) + 64];
    int n = snprintf(body, sizeof(body), lag->body, req->index, req->index);
    evbuffer_add(evhttp_request_get_output_buffer(evreq), body, (size_t)n);
    req->conn = conn;
    req->sent_us = lag_now_us();
    req->state = LAG_REQ_IN_FLIGHT;
    conn->busy = req;
    if (evhttp_make_request(conn->evcon, evreq, EVHTTP_REQ_PUT, path) != 0) {
        /* evhttp_make_request frees evreq on failure. */
        conn->busy = NULL;
        return -1;
    }
    return 0;
}

/* Hands due requests, in schedule order, to idle connections. */
static void lag_send_queued(lag_t *lag)
{
    while (lag->queue_pos < lag->next_due && lag->idle) {
        lag_conn_t *conn = lag->idle;
        lag->idle = conn->next_idle;
        lag_req_t *req = &lag->reqs[lag->queue_pos++];
        if (lag_send(lag, req, conn) < 0) {
            lag_error(lag, "request %" PRIu32 ": could not be sent", req->index);
            req->state = LAG_REQ_FAILED;
            lag->failed++;
            lag_conn_release(lag, conn);
        }
    }
}

static bool lag_done(const lag_t *lag)
{
    return lag->answered + lag->failed == lag->total && lag->visible == lag->answered;
}

/* Marks answered requests visible from the notifications received so far. */
static void lag_resolve(lag_t *lag)
{
    for (uint32_t i = 0; i < lag->total; i++) {
        lag_req_t *req = &lag->reqs[i];
        if (req->state != LAG_REQ_ANSWERED || req->visible_us)
            continue;
        const lag_partition_t *p = &lag->partitions[req->partition];
        /* First notification with next > offset: `next` grows, so binary search. */
        size_t lo = 0, hi = p->len;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (p->notifies[mid].next > req->offset)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo < p->len) {
            req->visible_us = p->notifies[lo].at_us;
            lag->visible++;
        }
    }
}

static void lag_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lag_t *lag = arg;
    int64_t now = lag_now_us();
    while (lag->next_due < lag->total && lag->reqs[lag->next_due].scheduled_us <= now)
        lag->next_due++;
    lag_send_queued(lag);
    if (lag->next_due == lag->total) {
        if (!lag->drain_deadline_us)
            lag->drain_deadline_us = now + (int64_t)(lag->opts.drain_s * 1e6);
        lag_resolve(lag);
        if (lag_done(lag) || now > lag->drain_deadline_us || lag->interrupted)
            event_base_loopbreak(lag->base);
    } else if (lag->interrupted) {
        event_base_loopbreak(lag->base);
    }
}

static void lag_record_notify(lag_t *lag, const char *payload, int64_t at_us)
{
    /* "topic/partition/next,topic/partition/next,..." (services/worker/apply.c) */
    char *copy = strdup(payload);
    if (!copy)
        abort();
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *slash2 = strrchr(item, '/');
        if (!slash2)
            continue;
        *slash2 = '\0';
        char *slash1 = strrchr(item, '/');
        if (!slash1)
            continue;
        *slash1 = '\0';
        if (strcmp(item, lag->opts.topic) != 0) {
            lag->notify_foreign++;
            continue;
        }
        long partition = strtol(slash1 + 1, NULL, 10);
        long long next = strtoll(slash2 + 1, NULL, 10);
        if (partition < 0 || partition >= LAG_MAX_PARTITIONS)
            continue;
        lag_partition_t *p = &lag->partitions[partition];
        if (p->len && p->notifies[p->len - 1].next >= next)
            continue; /* an older position: nothing new is visible */
        if (p->len == p->cap) {
            p->cap = p->cap ? p->cap * 2 : 256;
            p->notifies = realloc(p->notifies, p->cap * sizeof(*p->notifies));
            if (!p->notifies)
                abort();
        }
        p->notifies[p->len++] = (lag_notify_t){.next = next, .at_us = at_us};
        lag->notify_count++;
    }
    free(copy);
}

/* Runs on the loop when the LISTEN connection is readable. */
static void lag_on_pg(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lag_t *lag = arg;
    int64_t now = lag_now_us();
    if (!PQconsumeInput(lag->pg)) {
        fprintf(stderr, "bench_e2e_lag: the LISTEN connection failed: %s", PQerrorMessage(lag->pg));
        event_del(lag->pg_event);
        event_base_loopbreak(lag->base);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(lag->pg)) != NULL) {
        lag_record_notify(lag, n->extra, now);
        PQfreemem(n);
    }
}

static void lag_on_sigint(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lag_t *lag = arg;
    lag->interrupted = true;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static int64_t pct(const int64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static void print_row(const char *what, int64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    printf("  %-34s p50 %8.1f ms   p99 %8.1f ms   max %8.1f ms   (n=%zu)\n", what, pct(v, n, 50) / 1000.0,
           pct(v, n, 99) / 1000.0, n ? v[n - 1] / 1000.0 : 0.0, n);
}

/* Every answered row is in PostgreSQL, written at its position. Blocking: runs after the load. */
static long lag_count_stored(lag_t *lag)
{
    char like[200];
    snprintf(like, sizeof(like), "bench-%s-%%", lag->opts.run);
    const char *params[2] = {like, lag->opts.topic};
    PGresult *res =
        PQexecParams(lag->pg, "SELECT count(*) FROM profiles WHERE recipient_id LIKE $1 AND kafka_topic = $2",
                     2, NULL, params, NULL, NULL, 0);
    long count = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        count = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    else
        fprintf(stderr, "bench_e2e_lag: counting rows failed: %s", PQerrorMessage(lag->pg));
    PQclear(res);
    return count;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: bench_e2e_lag --url http://HOST:PORT --key KEY --dsn DSN --topic TOPIC --run ID\n"
        "                     [--rate 1000] [--duration 10] [--warmup 1] [--connections 32] [--drain 30]\n"
        "                     [--ack kafka|applied]   (Prefer: profiled-ack=...; default: the api's)\n");
}

static int parse_args(int argc, char **argv, lag_opts_t *o)
{
    *o = (lag_opts_t){.rate = 1000, .duration_s = 10, .warmup_s = 1, .connections = 32, .drain_s = 30};
    const char *url = NULL;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            return -1;
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--url"))
            url = v;
        else if (!strcmp(k, "--key"))
            o->key = v;
        else if (!strcmp(k, "--dsn"))
            o->dsn = v;
        else if (!strcmp(k, "--topic"))
            o->topic = v;
        else if (!strcmp(k, "--run"))
            o->run = v;
        else if (!strcmp(k, "--rate"))
            o->rate = atof(v);
        else if (!strcmp(k, "--duration"))
            o->duration_s = atof(v);
        else if (!strcmp(k, "--warmup"))
            o->warmup_s = atof(v);
        else if (!strcmp(k, "--connections"))
            o->connections = atoi(v);
        else if (!strcmp(k, "--drain"))
            o->drain_s = atof(v);
        else if (!strcmp(k, "--ack") && (!strcmp(v, "kafka") || !strcmp(v, "applied")))
            o->ack = v;
        else
            return -1;
    }
    if (!url || !o->key || !o->dsn || !o->topic || !o->run || o->rate <= 0 || o->rate > 100000 ||
        o->duration_s <= 0 || o->warmup_s < 0 || o->connections < 1 || o->connections > 1000 ||
        o->drain_s <= 0)
        return -1;
    static char host[128];
    if (sscanf(url, "http://%127[^:]:%d", host, &o->port) != 2 || o->port < 1 || o->port > 65535)
        return -1;
    o->host = host;
    return 0;
}

int main(int argc, char **argv)
{
    static lag_t lag_storage; /* large (per-partition arrays): not on the stack */
    lag_t *lag = &lag_storage;
    if (parse_args(argc, argv, &lag->opts) < 0) {
        usage();
        return 2;
    }
    int rc = 1;
    signal(SIGPIPE, SIG_IGN);

    lag->warmup = (uint32_t)(lag->opts.warmup_s * lag->opts.rate);
    lag->total = lag->warmup + (uint32_t)(lag->opts.duration_s * lag->opts.rate);
    lag->reqs = calloc(lag->total, sizeof(lag_req_t));
    if (!lag->reqs)
        abort();

    snprintf(lag->body, sizeof(lag->body), "%s",
             "{\"profile\":{\"email\":\"bench-%u@example.com\",\"email_verified\":true,"
             "\"phone_number\":\"+15555550123\",\"name\":\"Bench User\",\"locale\":\"en-GB\","
             "\"address\":{\"formatted\":\"12 St James's Square, London\",\"locality\":\"London\","
             "\"postal_code\":\"SW1Y 4JH\",\"country\":\"GB\"},"
             "\"custom\":{\"seq\":%u,\"plan\":\"pro\",\"score\":0.875,\"tags\":[\"beta\",\"emea\"]}}}");

    lag->pg = PQconnectdb(lag->opts.dsn);
    if (PQstatus(lag->pg) != CONNECTION_OK) {
        fprintf(stderr, "bench_e2e_lag: cannot connect to PostgreSQL: %s", PQerrorMessage(lag->pg));
        goto cleanup;
    }
    PGresult *res = PQexec(lag->pg, "LISTEN profiled_applied");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "bench_e2e_lag: LISTEN failed: %s", PQerrorMessage(lag->pg));
        PQclear(res);
        goto cleanup;
    }
    PQclear(res);
    if (PQsetnonblocking(lag->pg, 1) != 0) {
        fprintf(stderr, "bench_e2e_lag: PQsetnonblocking failed\n");
        goto cleanup;
    }

    lag->base = event_base_new();
    if (!lag->base)
        goto cleanup;
    lag->pg_event = event_new(lag->base, PQsocket(lag->pg), EV_READ | EV_PERSIST, lag_on_pg, lag);
    lag->sigint = evsignal_new(lag->base, SIGINT, lag_on_sigint, lag);
    lag->tick = event_new(lag->base, -1, EV_PERSIST, lag_on_tick, lag);
    if (!lag->pg_event || !lag->sigint || !lag->tick)
        goto cleanup;
    event_add(lag->pg_event, NULL);
    event_add(lag->sigint, NULL);

    lag->conns = calloc((size_t)lag->opts.connections, sizeof(*lag->conns));
    if (!lag->conns)
        abort();
    for (int i = 0; i < lag->opts.connections; i++) {
        lag_conn_t *conn = &lag->conns[i];
        conn->evcon =
            evhttp_connection_base_new(lag->base, NULL, lag->opts.host, (ev_uint16_t)lag->opts.port);
        if (!conn->evcon) {
            fprintf(stderr, "bench_e2e_lag: evhttp_connection_base_new failed\n");
            goto cleanup;
        }
        evhttp_connection_set_timeout(conn->evcon, 30);
        lag_conn_release(lag, conn);
    }

    lag->start_us = lag_now_us() + 20000;
    for (uint32_t i = 0; i < lag->total; i++) {
        lag->reqs[i].lag = lag;
        lag->reqs[i].index = i;
        lag->reqs[i].scheduled_us = lag->start_us + (int64_t)((double)i * 1e6 / lag->opts.rate);
    }
    struct timeval one_ms = {0, 1000};
    event_add(lag->tick, &one_ms);
    printf(
        "bench_e2e_lag: %.0f PUT/s for %.1f s (+%.1f s warm-up, not measured), %d keep-alive connections\n",
        lag->opts.rate, lag->opts.duration_s, lag->opts.warmup_s, lag->opts.connections);
    fflush(stdout);
    event_base_dispatch(lag->base);
    lag_resolve(lag);

    /* Figures over the measured requests. */
    uint32_t measured = lag->total - lag->warmup;
    int64_t *put = calloc(measured + 1, sizeof(int64_t));
    int64_t *vis = calloc(measured + 1, sizeof(int64_t));
    int64_t *sent_vis = calloc(measured + 1, sizeof(int64_t));
    int64_t *sent_put = calloc(measured + 1, sizeof(int64_t)); /* without the client's own queueing */
    if (!put || !vis || !sent_vis || !sent_put)
        abort();
    size_t n_put = 0, n_vis = 0, before_answer = 0;
    int64_t first_sched = 0, last_answer = 0;
    uint32_t ok_measured = 0;
    for (uint32_t i = lag->warmup; i < lag->total; i++) {
        const lag_req_t *req = &lag->reqs[i];
        if (i == lag->warmup)
            first_sched = req->scheduled_us;
        if (req->state != LAG_REQ_ANSWERED)
            continue;
        ok_measured++;
        sent_put[n_put] = req->answered_us - req->sent_us;
        put[n_put++] = req->answered_us - req->scheduled_us;
        if (req->answered_us > last_answer)
            last_answer = req->answered_us;
        if (req->visible_us) {
            int64_t l = req->visible_us - req->answered_us;
            if (l < 0) {
                before_answer++; /* the row was visible before the 200 reached us */
                l = 0;
            }
            vis[n_vis] = l;
            sent_vis[n_vis] = req->visible_us - req->sent_us;
            n_vis++;
        }
    }
    double span_s = last_answer > first_sched ? (double)(last_answer - first_sched) / 1e6 : 0;
    long stored = lag_count_stored(lag);

    printf("  PUTs: %" PRIu32 " sent (%" PRIu32 " measured), %" PRIu32 " answered 200, %" PRIu32
           " failed; achieved %.1f PUT/s over the measured %.2f s\n",
           lag->total, measured, lag->answered, lag->failed, span_s > 0 ? ok_measured / span_s : 0.0, span_s);
    print_row("PUT latency (scheduled -> 200)", put, n_put);
    print_row("PUT latency (sent -> 200)", sent_put, n_put);
    print_row("lag (200 -> row visible)", vis, n_vis);
    print_row("sent -> row visible", sent_vis, n_vis);
    printf("  visible before the 200 arrived: %zu (counted as 0 ms lag); answered pending: %" PRIu32 "\n",
           before_answer, lag->pending);
    printf("  notifications: %zu for this topic, %zu for others\n", lag->notify_count, lag->notify_foreign);
    printf("  rows in PostgreSQL for this run: %ld of %" PRIu32 " answered\n", stored, lag->answered);
    int64_t p99 = pct(vis, n_vis, 99);
    bool complete = lag->failed == 0 && lag->answered == lag->total && lag->visible == lag->answered &&
                    stored == (long)lag->answered && !lag->interrupted;
    if (!complete)
        printf("  INCOMPLETE: %" PRIu32 " failed, %" PRIu32 " of %" PRIu32
               " answered rows seen visible, %ld stored\n",
               lag->failed, lag->visible, lag->answered, stored);
    printf("  target p99 lag <= 100 ms: %s (p99 %.1f ms)\n", complete && p99 <= 100000 ? "met" : "MISSED",
           p99 / 1000.0);
    free(put);
    free(vis);
    free(sent_vis);
    free(sent_put);
    rc = complete ? 0 : 1;

cleanup:
    if (lag->conns) {
        for (int i = 0; i < lag->opts.connections; i++)
            if (lag->conns[i].evcon)
                evhttp_connection_free(lag->conns[i].evcon);
        free(lag->conns);
    }
    if (lag->tick)
        event_free(lag->tick);
    if (lag->sigint)
        event_free(lag->sigint);
    if (lag->pg_event)
        event_free(lag->pg_event);
    if (lag->base)
        event_base_free(lag->base);
    for (size_t p = 0; p < LAG_MAX_PARTITIONS; p++)
        free(lag->partitions[p].notifies);
    PQfinish(lag->pg);
    free(lag->reqs);
    return rc;
}
