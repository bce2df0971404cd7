#include "lane.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bisect.h"
#include "clock.h"
#include "log.h"
#include "pgconn.h"
#include "xalloc.h"

/* A lane's state: each state says who may touch the batch. */
typedef enum lane_state {
    LANE_IDLE, /* the consumer thread may submit */
    LANE_BUSY, /* the lane thread owns the batch and positions */
    LANE_DONE, /* the result waits for lane_take (batch already emptied) */
} lane_state_t;

struct lane {
    lanes_t *lanes;
    int index;
    pthread_t thread;
    lane_state_t state; /* under lanes->lock */
    batch_t batch;
    apply_position_t *positions;
    size_t position_count, position_cap;
    lane_result_t result;
    /* the lane thread's own */
    PGconn *conn;
    apply_scratch_t *scratch;
};

struct lanes {
    lane_config_t config;
    pthread_mutex_t lock;
    pthread_cond_t work; /* consumer -> lanes: a job, or stopping */
    pthread_cond_t done; /* lanes -> consumer: a result */
    pthread_mutex_t dlq_lock;
    bool stopping;
    int count;
    lane_t *lane;
};

static double lane_now_s(void)
{
    return clock_mono_s();
}

static void lane_log_invalid(const lane_t *lane)
{
    for (size_t i = 0; i < lane->batch.count; i++) {
        const batch_item_t *item = &lane->batch.items[i];
        if (item->kind != BATCH_INVALID)
            continue;
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "topic", lane->lanes->config.topic);
        log_field_int(&fields, "partition", item->partition);
        log_field_int(&fields, "offset", item->offset);
        log_field_str(&fields, "code", codec_error_name(item->failure->code));
        log_field_str(&fields, "reason", item->failure->message);
        log_warn(&fields, "invalid command dead-lettered");
    }
}

static void lane_record(const lane_t *lane, const bisect_t *b, double seconds)
{
    const lane_metrics_t *m = lane->lanes->config.m;
    metrics_counter_add(m->dead_lettered, b->dead_lettered);
    if (b->commits == 0)
        return;
    metrics_histogram_observe(m->apply_seconds, seconds);
    metrics_histogram_observe(m->batch_size, (double)lane->batch.count);
    metrics_counter_add(m->batches, b->commits);
    metrics_counter_add(m->applied, b->counts.applied);
    metrics_counter_add(m->duplicates, b->counts.duplicates);
    metrics_counter_add(m->stale, b->counts.stale);
    metrics_counter_add(m->refused, b->counts.refused);
    if (log_level_min > LOG_DEBUG)
        return;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "lane", lane->index);
    log_field_int(&fields, "commands", (int64_t)lane->batch.count);
    log_field_int(&fields, "applied", (int64_t)b->counts.applied);
    log_field_int(&fields, "rows", (int64_t)b->counts.written);
    log_field_int(&fields, "duplicates", (int64_t)b->counts.duplicates);
    log_field_int(&fields, "stale", (int64_t)b->counts.stale);
    log_field_int(&fields, "refused", (int64_t)b->counts.refused);
    for (int s = 0; s < APPLY_STEP_COUNT; s++)
        log_field_int(&fields, apply_step_names[s], (int64_t)b->counts.ms[s]);
    log_debug(&fields, "batch applied");
}

/*
 * A merge or patch builds on the stored profile, and while a transaction folds
 * it holds each such profile several times (PostgreSQL's text, msgpack, the
 * fold's tree, the built document). A batch is therefore applied in pieces
 * with at most this many of them, one transaction each, in order: each piece
 * moves the positions past its own commands only, as bisection's halves do,
 * and a failure resumes from PostgreSQL's positions as for any batch. A
 * replace-only batch stays one transaction. README "Memory" has the figures.
 */
#define LANE_BUILDS_PER_TX 1000

/* The end of the piece of `batch` that starts at `lo`. */
static size_t lane_piece_end(const batch_t *batch, size_t lo)
{
    size_t builds = 0, hi = lo;
    for (; hi < batch->count; hi++) {
        const batch_item_t *item = &batch->items[hi];
        if (item->kind != BATCH_COMMAND ||
            (item->command.op != CODEC_OP_MERGE && item->command.op != CODEC_OP_PATCH))
            continue;
        if (builds == LANE_BUILDS_PER_TX)
            break;
        builds++;
    }
    return hi;
}

/* The job: dead letters, then the transaction(s). Fills lane->result. */
static void lane_run_job(lane_t *lane)
{
    const lane_config_t *c = &lane->lanes->config;
    lane_result_t *result = &lane->result;
    double t0 = lane_now_s();
    result->errstr[0] = '\0';
    if (lane->conn && PQstatus(lane->conn) != CONNECTION_OK) {
        PQfinish(lane->conn);
        lane->conn = NULL;
    }
    if (!lane->conn) {
        lane->conn = pgconn_open(c->pg_dsn, result->errstr, sizeof(result->errstr));
        if (!lane->conn) {
            result->status = APPLY_RETRY;
            return;
        }
    }
    bisect_t b = {.conn = lane->conn,
                  .scratch = lane->scratch,
                  .dlq = c->dlq,
                  .dlq_lock = &lane->lanes->dlq_lock,
                  .group = c->group,
                  .topic = c->topic,
                  .dlq_topic = c->dlq_topic,
                  .positions = lane->positions,
                  .position_count = lane->position_count};
    if (bisect_dead_letter(&b, &lane->batch, 0, lane->batch.count, result->errstr, sizeof(result->errstr)) <
        0) {
        result->status = APPLY_RETRY;
        return;
    }
    if (b.dead_lettered > 0)
        lane_log_invalid(lane);
    result->status = APPLY_OK;
    for (size_t lo = 0; lo < lane->batch.count && result->status == APPLY_OK;) {
        size_t hi = lane_piece_end(&lane->batch, lo);
        result->status = bisect_apply(&b, &lane->batch, lo, hi, result->errstr, sizeof(result->errstr));
        lo = hi;
    }
    lane_record(lane, &b, lane_now_s() - t0);
    if (result->status != APPLY_OK && PQstatus(lane->conn) != CONNECTION_OK) {
        PQfinish(lane->conn);
        lane->conn = NULL;
    }
}

static void *lane_main(void *arg)
{
    lane_t *lane = arg;
    lanes_t *lanes = lane->lanes;
    pthread_mutex_lock(&lanes->lock);
    for (;;) {
        while (lane->state != LANE_BUSY && !lanes->stopping)
            pthread_cond_wait(&lanes->work, &lanes->lock);
        if (lane->state != LANE_BUSY) /* stopping with nothing to do */
            break;
        pthread_mutex_unlock(&lanes->lock);
        lane_run_job(lane);
        batch_clear(&lane->batch); /* the messages are done with, whatever happened */
        lane->result.positions = lane->positions;
        lane->result.position_count = lane->position_count;
        pthread_mutex_lock(&lanes->lock);
        lane->state = LANE_DONE;
        pthread_cond_broadcast(&lanes->done);
        if (lanes->config.wake)
            rd_kafka_queue_yield(lanes->config.wake);
    }
    pthread_mutex_unlock(&lanes->lock);
    return NULL;
}

lanes_t *lanes_new(int count, const lane_config_t *config)
{
    lanes_t *lanes = xcalloc(1, sizeof(*lanes), "the apply lanes");
    lanes->config = *config;
    lanes->count = count;
    lanes->lane = xcalloc((size_t)count, sizeof(*lanes->lane), "the apply lanes");
    pthread_mutex_init(&lanes->lock, NULL);
    pthread_mutex_init(&lanes->dlq_lock, NULL);
    pthread_cond_init(&lanes->work, NULL);
    pthread_cond_init(&lanes->done, NULL);
    for (int i = 0; i < count; i++) {
        lane_t *lane = &lanes->lane[i];
        lane->lanes = lanes;
        lane->index = i;
        lane->state = LANE_IDLE;
        lane->scratch = apply_scratch_new(&config->limits);
        if (pthread_create(&lane->thread, NULL, lane_main, lane) != 0)
            log_die(NULL, "cannot start apply lane %d", i);
    }
    return lanes;
}

void lanes_destroy(lanes_t *lanes)
{
    if (!lanes)
        return;
    pthread_mutex_lock(&lanes->lock);
    lanes->stopping = true;
    pthread_cond_broadcast(&lanes->work);
    pthread_mutex_unlock(&lanes->lock);
    for (int i = 0; i < lanes->count; i++) {
        lane_t *lane = &lanes->lane[i];
        pthread_join(lane->thread, NULL);
        if (lane->conn)
            PQfinish(lane->conn);
        apply_scratch_destroy(lane->scratch);
        batch_free(&lane->batch);
        free(lane->positions);
    }
    pthread_cond_destroy(&lanes->done);
    pthread_cond_destroy(&lanes->work);
    pthread_mutex_destroy(&lanes->dlq_lock);
    pthread_mutex_destroy(&lanes->lock);
    free(lanes->lane);
    free(lanes);
}

int lanes_count(const lanes_t *lanes)
{
    return lanes->count;
}

lane_t *lanes_get(lanes_t *lanes, int index)
{
    return &lanes->lane[index];
}

void lanes_wait(lanes_t *lanes, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lanes->lock);
    for (;;) {
        bool any = false;
        for (int i = 0; i < lanes->count && !any; i++)
            any = lanes->lane[i].state == LANE_DONE;
        if (any || pthread_cond_timedwait(&lanes->done, &lanes->lock, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&lanes->lock);
}

bool lane_idle(lane_t *lane)
{
    pthread_mutex_lock(&lane->lanes->lock);
    bool idle = lane->state == LANE_IDLE;
    pthread_mutex_unlock(&lane->lanes->lock);
    return idle;
}

void lane_submit(lane_t *lane, batch_t *open, const apply_position_t *positions, size_t position_count)
{
    lanes_t *lanes = lane->lanes;
    pthread_mutex_lock(&lanes->lock);
    if (lane->state != LANE_IDLE) /* the consumer checks lane_idle first */
        fatal_abort("a job submitted to lane %d, which is not idle", (int)(lane - lanes->lane));
    batch_t spare = lane->batch; /* empty since the last job */
    lane->batch = *open;
    *open = spare;
    if (lane->position_cap < position_count) {
        lane->position_cap = position_count;
        lane->positions =
            xrealloc(lane->positions, position_count * sizeof(*lane->positions), "a lane's positions");
    }
    memcpy(lane->positions, positions, position_count * sizeof(*positions));
    lane->position_count = position_count;
    lane->state = LANE_BUSY;
    pthread_cond_broadcast(&lanes->work);
    pthread_mutex_unlock(&lanes->lock);
}

bool lane_take(lane_t *lane, lane_result_t *result)
{
    lanes_t *lanes = lane->lanes;
    pthread_mutex_lock(&lanes->lock);
    bool done = lane->state == LANE_DONE;
    if (done) {
        *result = lane->result;
        lane->state = LANE_IDLE;
    }
    pthread_mutex_unlock(&lanes->lock);
    return done;
}
