/*
 * worker: the consumer loop of profiled-worker.
 *
 * One thread does everything that touches Kafka positions, so their order is
 * simple to reason about:
 *
 *   poll -> filter -> decode into the open batch  (until max commands or max wait)
 *   flush: dead letters acknowledged -> one transaction (apply.c) -> Kafka commit
 *
 * PostgreSQL holds the positions; Kafka's committed offsets are a copy for lag
 * tools and are never read back. Whenever something fails (PostgreSQL down, a
 * fenced position, dead letters not acknowledged) the open batch is dropped,
 * every assigned partition is paused, and after a capped, jittered backoff the
 * worker "resyncs": it re-reads the positions from PostgreSQL, seeks each
 * partition there and resumes. Re-reading rather than trusting memory also
 * settles a COMMIT whose answer was lost: if it committed, the positions moved.
 */
#include "worker.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apply.h"
#include "dlq.h"
#include "kafka_conf.h"
#include "kafka_log.h"
#include "log.h"
#include "migrate.h"
#include "ops_http.h"
#include "pgconn.h"
#include "purge.h"
#include "takeover.h"
#include "topics.h"

volatile sig_atomic_t worker_stop = 0;

#define WORKER_POLL_MS                  100   /* longest a poll blocks: bounds the reaction to a signal */
#define WORKER_FIRST_BACKOFF_MS         100   /* first retry delay after a failure */
#define WORKER_DLQ_TIMEOUT_MS           10000 /* wait for dead-letter acknowledgements */
#define WORKER_SEEK_TIMEOUT_MS          5000  /* wait for the fetcher to take a seek */
#define WORKER_LAG_INTERVAL_MS          1000
#define WORKER_KAFKA_COMMIT_INTERVAL_MS 5000 /* copy of the positions to Kafka, for lag tools */
#define WORKER_PING_INTERVAL_MS         2000 /* PostgreSQL health check while idle */

int64_t worker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static apply_scratch_t *worker_scratch; /* owned by worker_run; only the worker thread uses it */

/* ------------------------------------------------------------------ partitions */

static worker_partition_t *worker_partition_find(worker_t *w, int32_t partition)
{
    for (size_t i = 0; i < w->partition_count; i++)
        if (w->partitions[i].partition == partition)
            return &w->partitions[i];
    return NULL;
}

static worker_partition_t *worker_partition_add(worker_t *w, int32_t partition)
{
    worker_partition_t *p = worker_partition_find(w, partition);
    if (p)
        return p;
    if (w->partition_count == w->partition_cap) {
        size_t cap = w->partition_cap ? w->partition_cap * 2 : 16;
        worker_partition_t *grown = realloc(w->partitions, cap * sizeof(*grown));
        if (!grown)
            abort();
        w->partitions = grown;
        w->partition_cap = cap;
    }
    p = &w->partitions[w->partition_count++];
    memset(p, 0, sizeof(*p));
    p->partition = partition;
    return p;
}

static void worker_partition_remove(worker_t *w, int32_t partition)
{
    worker_partition_t *p = worker_partition_find(w, partition);
    if (!p)
        return;
    *p = w->partitions[--w->partition_count];
    lag_forget(w->lag, partition);
}

/* A list of every assigned partition of the command topic (offsets unset). */
static rd_kafka_topic_partition_list_t *worker_partition_list(worker_t *w)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)w->partition_count + 1);
    for (size_t i = 0; i < w->partition_count; i++)
        rd_kafka_topic_partition_list_add(list, w->config->kafka_topic, w->partitions[i].partition);
    return list;
}

/* ------------------------------------------------------------------ PostgreSQL */

static void worker_pg_close(worker_t *w)
{
    if (w->pg)
        PQfinish(w->pg);
    w->pg = NULL;
    atomic_store(&w->pg_ok, false);
}

static int worker_pg_ensure(worker_t *w, char *errstr, size_t errstr_size)
{
    if (w->pg && PQstatus(w->pg) == CONNECTION_OK)
        return 0;
    worker_pg_close(w);
    w->pg = pgconn_open(w->config->pg_dsn, errstr, errstr_size);
    if (!w->pg)
        return -1;
    log_info(NULL, "connected to PostgreSQL");
    return 0;
}

/* Reads the positions of the partitions in `list` (of the command topic) into
 * the table and into the list's offsets: the stored next offset, or the
 * beginning of the partition when no row exists yet. */
static int worker_read_positions(worker_t *w, rd_kafka_topic_partition_list_t *list, char *errstr,
                                 size_t errstr_size)
{
    if (worker_pg_ensure(w, errstr, errstr_size) < 0)
        return -1;
    buf_t array = {0};
    buf_append_byte(&array, '{');
    for (int i = 0; i < list->cnt; i++)
        buf_appendf(&array, "%s%" PRId32, i ? "," : "", list->elems[i].partition);
    buf_append_byte(&array, '}');
    buf_terminate(&array);
    const char *params[3] = {w->config->group, w->config->kafka_topic, (const char *)array.data};
    PGresult *res = PQexecParams(w->pg,
                                 "SELECT partition, next_offset FROM kafka_positions "
                                 "WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[])",
                                 3, NULL, params, NULL, NULL, 0);
    buf_free(&array);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pgconn_error(w->pg, res, errstr, errstr_size);
        PQclear(res);
        return -1;
    }
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        worker_partition_t *p = worker_partition_add(w, tp->partition);
        p->known = true;
        p->stored = false;
        p->next_offset = 0;
        tp->offset = RD_KAFKA_OFFSET_BEGINNING;
        for (int r = 0; r < PQntuples(res); r++) {
            if (atoi(PQgetvalue(res, r, 0)) != tp->partition)
                continue;
            p->stored = true;
            p->next_offset = strtoll(PQgetvalue(res, r, 1), NULL, 10);
            tp->offset = p->next_offset;
        }
        p->fetch_offset = p->next_offset;
    }
    PQclear(res);
    atomic_store(&w->pg_ok, true);
    return 0;
}

/* ------------------------------------------------------------------ failure and resync */

static void worker_pause_all(worker_t *w)
{
    if (w->partition_count == 0)
        return;
    rd_kafka_topic_partition_list_t *list = worker_partition_list(w);
    rd_kafka_pause_partitions(w->consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
}

/* Drops the open batch and schedules a resync: immediately after a fence,
 * after a jittered, capped exponential backoff after anything else. */
static void worker_fail(worker_t *w, apply_status_t status, const char *reason)
{
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "error", reason);
    size_t dropped = w->batch.count;
    if (dropped > 0)
        log_field_int(&fields, "dropped_commands", (int64_t)dropped);
    batch_clear(&w->batch);
    worker_pause_all(w);
    w->needs_resync = true;
    if (status == APPLY_FENCED) {
        metrics_counter_add(w->m.fenced, 1);
        log_warn(&fields, "positions moved under this worker; re-reading them from PostgreSQL");
        w->retry_at_ms = worker_now_ms();
        return;
    }
    metrics_counter_add(w->m.apply_failures, 1);
    if (w->pg && PQstatus(w->pg) != CONNECTION_OK)
        worker_pg_close(w);
    if (!w->pg)
        atomic_store(&w->pg_ok, false);
    int64_t max = w->config->retry_max_backoff_ms;
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : WORKER_FIRST_BACKOFF_MS;
    if (w->backoff_ms > max)
        w->backoff_ms = max;
    /* Full jitter over the upper half: workers failing together do not retry together. */
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    int64_t wait = w->backoff_ms / 2 + (int64_t)(w->rng % (uint64_t)(w->backoff_ms / 2 + 1));
    w->retry_at_ms = worker_now_ms() + wait;
    log_field_int(&fields, "retry_in_ms", wait);
    if (dropped > 0)
        log_warn(&fields, "batch not applied; partitions paused, will resume from PostgreSQL's positions");
    else
        log_warn(&fields, "PostgreSQL still unavailable; partitions stay paused");
}

static void worker_resync(worker_t *w)
{
    char errstr[512];
    rd_kafka_topic_partition_list_t *list = worker_partition_list(w);
    if (worker_read_positions(w, list, errstr, sizeof(errstr)) < 0) {
        rd_kafka_topic_partition_list_destroy(list);
        worker_fail(w, APPLY_RETRY, errstr);
        return;
    }
    if (list->cnt > 0) {
        rd_kafka_error_t *error = rd_kafka_seek_partitions(w->consumer, list, WORKER_SEEK_TIMEOUT_MS);
        if (error) {
            snprintf(errstr, sizeof(errstr), "seek: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
            rd_kafka_topic_partition_list_destroy(list);
            worker_fail(w, APPLY_RETRY, errstr);
            return;
        }
        for (int i = 0; i < list->cnt; i++)
            if (list->elems[i].err) {
                snprintf(errstr, sizeof(errstr), "seek partition %" PRId32 ": %s", list->elems[i].partition,
                         rd_kafka_err2str(list->elems[i].err));
                rd_kafka_topic_partition_list_destroy(list);
                worker_fail(w, APPLY_RETRY, errstr);
                return;
            }
        rd_kafka_resume_partitions(w->consumer, list);
    }
    rd_kafka_topic_partition_list_destroy(list);
    w->needs_resync = false;
    w->backoff_ms = 0;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "partitions", (int64_t)w->partition_count);
    log_info(&fields, "resumed from PostgreSQL's positions");
}

/* ------------------------------------------------------------------ flushing a batch */

/* Copies the positions to Kafka's committed offsets, for lag tools (the truth
 * is in PostgreSQL; nothing reads them back). At most once per interval, not
 * after every batch: a commit that meets a rebalance fails with "illegal
 * generation", which librdkafka answers by declaring the assignment lost. */
static void worker_commit_kafka(worker_t *w)
{
    if (!w->kafka_commit_due || w->partition_count == 0)
        return;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)w->partition_count);
    for (size_t i = 0; i < w->partition_count; i++)
        if (w->partitions[i].known && w->partitions[i].stored)
            rd_kafka_topic_partition_list_add(list, w->config->kafka_topic, w->partitions[i].partition)
                ->offset = w->partitions[i].next_offset;
    if (list->cnt > 0)
        (void)rd_kafka_commit(w->consumer, list, 1); /* asynchronous, best effort */
    rd_kafka_topic_partition_list_destroy(list);
    w->kafka_commit_due = false;
}

/* Applies items [lo, hi). On a data rejection, splits the range in two (and on
 * one command, dead-letters it and applies the range without it). */
static apply_status_t worker_apply_range(worker_t *w, size_t lo, size_t hi, char *errstr, size_t errstr_size)
{
    apply_position_t positions[64];
    apply_position_t *pos = positions;
    size_t count = 0;
    if (w->partition_count > sizeof(positions) / sizeof(positions[0])) {
        pos = malloc(w->partition_count * sizeof(*pos));
        if (!pos)
            abort();
    }
    for (size_t i = lo; i < hi; i++) {
        const batch_item_t *item = &w->batch.items[i];
        size_t k;
        for (k = 0; k < count; k++)
            if (pos[k].partition == item->partition)
                break;
        if (k == count) {
            const worker_partition_t *p = worker_partition_find(w, item->partition);
            if (!p) /* items belong to assigned partitions: revocation flushes first */
                abort();
            pos[k].partition = item->partition;
            pos[k].stored = p->stored;
            pos[k].expected = p->next_offset;
            count++;
        }
        pos[k].next = item->offset + 1;
    }

    int64_t t0 = worker_now_ms();
    apply_counts_t counts;
    apply_status_t status = apply_run(w->pg, worker_scratch, w->config->group, w->config->kafka_topic,
                                      &w->batch, lo, hi, pos, count, &counts, errstr, errstr_size);
    if (status == APPLY_OK) {
        metrics_histogram_observe(w->m.apply_seconds, (double)(worker_now_ms() - t0) / 1000.0);
        metrics_histogram_observe(w->m.batch_size, (double)(hi - lo));
        metrics_counter_add(w->m.batches, 1);
        metrics_counter_add(w->m.applied, counts.applied);
        metrics_counter_add(w->m.duplicates, counts.duplicates);
        metrics_counter_add(w->m.stale, counts.stale);
        for (size_t k = 0; k < count; k++) {
            worker_partition_t *p = worker_partition_find(w, pos[k].partition);
            p->stored = true;
            p->next_offset = pos[k].next;
        }
        atomic_store(&w->pg_ok, true);
        w->next_ping_ms = worker_now_ms() + WORKER_PING_INTERVAL_MS;
        w->kafka_commit_due = true;
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_int(&fields, "commands", (int64_t)(hi - lo));
        log_field_int(&fields, "applied", (int64_t)counts.applied);
        log_field_int(&fields, "rows", (int64_t)counts.written);
        log_field_int(&fields, "duplicates", (int64_t)counts.duplicates);
        log_field_int(&fields, "stale", (int64_t)counts.stale);
        log_field_int(&fields, "ms_read", (int64_t)counts.ms_read);
        log_field_int(&fields, "ms_upsert", (int64_t)counts.ms_upsert);
        log_field_int(&fields, "ms_ids", (int64_t)counts.ms_ids);
        log_field_int(&fields, "ms_positions", (int64_t)counts.ms_positions);
        log_field_int(&fields, "ms_commit", (int64_t)counts.ms_commit);
        log_debug(&fields, "batch applied");
    } else if (status == APPLY_REJECTED) {
        if (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            status = worker_apply_range(w, lo, mid, errstr, errstr_size);
            if (status == APPLY_OK)
                status = worker_apply_range(w, mid, hi, errstr, errstr_size);
        } else if (w->batch.items[lo].kind == BATCH_COMMAND) {
            batch_item_t *item = &w->batch.items[lo];
            log_fields_t fields = LOG_FIELDS_INIT;
            log_field_str(&fields, "topic", w->config->kafka_topic);
            log_field_int(&fields, "partition", item->partition);
            log_field_int(&fields, "offset", item->offset);
            log_field_str(&fields, "error", errstr);
            log_warn(&fields, "PostgreSQL rejected a command; dead-lettering it");
            item->kind = BATCH_REJECTED;
            item->failure.code = CODEC_OK;
            snprintf(item->failure.message, sizeof(item->failure.message), "%s", errstr);
            size_t sent = 0;
            if (dlq_send(w->dlq, w->config->kafka_dlq_topic, w->config->kafka_topic, &w->batch, lo, hi,
                         WORKER_DLQ_TIMEOUT_MS, &sent, errstr, errstr_size) < 0)
                status = APPLY_RETRY;
            else {
                metrics_counter_add(w->m.dead_lettered, sent);
                status = worker_apply_range(w, lo, hi, errstr, errstr_size);
            }
        } else
            status = APPLY_RETRY; /* only a position move was refused: not a data problem */
    }
    if (pos != positions)
        free(pos);
    return status;
}

void worker_flush(worker_t *w);
void worker_flush(worker_t *w)
{
    char errstr[1024];
    if (w->batch.count == 0)
        return;
    if (w->needs_resync || w->fatal) {
        batch_clear(&w->batch);
        return;
    }
    if (takeover_fatal(w->consumer)) { /* fenced: another process owns these partitions now */
        w->fatal = true;
        worker_stop = 1;
        batch_clear(&w->batch);
        return;
    }
    if (worker_pg_ensure(w, errstr, sizeof(errstr)) < 0) {
        worker_fail(w, APPLY_RETRY, errstr);
        return;
    }
    size_t sent = 0;
    if (dlq_send(w->dlq, w->config->kafka_dlq_topic, w->config->kafka_topic, &w->batch, 0, w->batch.count,
                 WORKER_DLQ_TIMEOUT_MS, &sent, errstr, sizeof(errstr)) < 0) {
        worker_fail(w, APPLY_RETRY, errstr);
        return;
    }
    if (sent > 0) {
        metrics_counter_add(w->m.dead_lettered, sent);
        for (size_t i = 0; i < w->batch.count; i++) {
            const batch_item_t *item = &w->batch.items[i];
            if (item->kind != BATCH_INVALID)
                continue;
            log_fields_t fields = LOG_FIELDS_INIT;
            log_field_str(&fields, "topic", w->config->kafka_topic);
            log_field_int(&fields, "partition", item->partition);
            log_field_int(&fields, "offset", item->offset);
            log_field_str(&fields, "code", codec_error_name(item->failure.code));
            log_field_str(&fields, "reason", item->failure.message);
            log_warn(&fields, "invalid command dead-lettered");
        }
    }
    apply_status_t status = worker_apply_range(w, 0, w->batch.count, errstr, sizeof(errstr));
    if (status != APPLY_OK) {
        worker_fail(w, status, errstr);
        return;
    }
    batch_clear(&w->batch);
}

/* ------------------------------------------------------------------ rebalancing */

/* Runs on the worker thread, inside rd_kafka_consumer_poll. */
static void worker_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *partitions, void *opaque)
{
    worker_t *w = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    char errstr[512];
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "partitions", partitions->cnt);

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        bool read = false;
        if (!w->needs_resync) {
            read = worker_read_positions(w, partitions, errstr, sizeof(errstr)) == 0;
            if (!read)
                log_field_str(&fields, "error", errstr);
        }
        if (!read)
            for (int i = 0; i < partitions->cnt; i++)
                worker_partition_add(w, partitions->elems[i].partition)->known = false;
        for (int i = 0; i < partitions->cnt; i++)
            lag_track(w->lag, partitions->elems[i].partition);
        rd_kafka_error_t *error = NULL;
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, partitions);
        else
            (void)rd_kafka_assign(rk, partitions);
        if (error) {
            log_field_str(&fields, "assign_error", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
        log_info(&fields, "partitions assigned%s", read ? "" : " (positions not read yet: paused)");
        atomic_store(&w->joined, true);
        if (!read && !w->needs_resync)
            worker_fail(w, APPLY_RETRY, errstr);
        else if (!read)
            worker_pause_all(w);
        else
            /* librdkafka keeps a partition's pause flag across unassign/assign: one
             * paused by a failure before it was lost and given back would stay
             * paused for good. */
            rd_kafka_resume_partitions(rk, partitions);
        return;
    }

    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        bool lost = rd_kafka_assignment_lost(rk);
        /* Finish the open batch while its partitions are still ours; when they are
         * already lost another worker may own them, so abandon it instead (the
         * fenced position update would refuse it anyway). */
        if (w->batch.count > 0) {
            if (lost)
                worker_fail(w, APPLY_FENCED, "assignment lost with a batch open");
            else
                worker_flush(w);
        }
        for (int i = 0; i < partitions->cnt; i++)
            worker_partition_remove(w, partitions->elems[i].partition);
        rd_kafka_error_t *error = NULL;
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, partitions);
        else {
            (void)rd_kafka_assign(rk, NULL);
            w->partition_count = 0;
        }
        if (error) {
            log_field_str(&fields, "unassign_error", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
        log_info(&fields, "partitions revoked%s", lost ? " (lost)" : "");
        return;
    }

    log_field_str(&fields, "error", rd_kafka_err2str(err));
    log_error(&fields, "unexpected rebalance event");
    if (cooperative) {
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(rk, partitions);
        if (error)
            rd_kafka_error_destroy(error);
    } else
        (void)rd_kafka_assign(rk, NULL);
}

/* ------------------------------------------------------------------ messages */

static void worker_message(worker_t *w, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__FATAL && takeover_fatal(w->consumer)) {
            w->fatal = true;
            worker_stop = 1;
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            log_fields_t fields = LOG_FIELDS_INIT;
            log_field_str(&fields, "error", rd_kafka_message_errstr(m));
            log_warn(&fields, "consumer error");
        }
        rd_kafka_message_destroy(m);
        return;
    }
    worker_partition_t *p = worker_partition_find(w, m->partition);
    if (w->needs_resync || !p || !p->known || m->offset < p->fetch_offset ||
        strcmp(rd_kafka_topic_name(m->rkt), w->config->kafka_topic) != 0) {
        /* before a resync everything is fetched again from PostgreSQL's positions;
         * an offset below the expected one is a redelivery of a batched message */
        rd_kafka_message_destroy(m);
        return;
    }
    p->fetch_offset = m->offset + 1;
    if (w->batch.count == 0)
        w->batch.opened_ms = worker_now_ms();
    batch_add(&w->batch, m, &w->limits);
}

/* Publishes PostgreSQL's positions to lag.c, whose thread asks the broker for the end offsets. */
static void worker_update_lag(worker_t *w)
{
    for (size_t i = 0; i < w->partition_count; i++) {
        const worker_partition_t *p = &w->partitions[i];
        lag_position(w->lag, p->partition, p->known ? p->next_offset : -1);
    }
}

/* ------------------------------------------------------------------ readiness */

static bool worker_ready(void *arg, char *reason, size_t reason_size)
{
    worker_t *w = arg;
    if (!atomic_load(&w->pg_ok)) {
        snprintf(reason, reason_size, "PostgreSQL not reachable");
        return false;
    }
    if (!atomic_load(&w->joined)) {
        snprintf(reason, reason_size, "not in the consumer group yet");
        return false;
    }
    snprintf(reason, reason_size, "ok");
    return true;
}

/* ------------------------------------------------------------------ start-up and the loop */

static void worker_metrics_init(worker_t *w)
{
    static const double size_bounds[] = {1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000};
    metrics_t *m = w->metrics;
    w->m.applied = metrics_counter(m, "profiled_worker_commands_applied_total",
                                   "Commands applied (superseded within a batch included)", NULL);
    w->m.duplicates = metrics_counter(m, "profiled_worker_commands_skipped_total",
                                      "Commands skipped, by reason", "reason=\"duplicate\"");
    w->m.stale = metrics_counter(m, "profiled_worker_commands_skipped_total", "Commands skipped, by reason",
                                 "reason=\"stale_version\"");
    w->m.dead_lettered = metrics_counter(m, "profiled_worker_commands_dead_lettered_total",
                                         "Commands sent to the dead-letter topic", NULL);
    w->m.batches = metrics_counter(m, "profiled_worker_batches_total", "Transactions committed", NULL);
    w->m.apply_failures =
        metrics_counter(m, "profiled_worker_apply_failures_total",
                        "Batches dropped for a retry (PostgreSQL or dead-letter failures)", NULL);
    w->m.fenced = metrics_counter(m, "profiled_worker_fenced_total",
                                  "Transactions refused because another worker moved a position", NULL);
    w->m.purged = metrics_counter(m, "profiled_worker_applied_ids_purged_total",
                                  "Applied command ids deleted after the retention", NULL);
    w->m.batch_size = metrics_histogram(m, "profiled_worker_batch_size", "Commands per committed transaction",
                                        NULL, size_bounds, sizeof(size_bounds) / sizeof(size_bounds[0]));
    w->m.apply_seconds =
        metrics_histogram(m, "profiled_worker_apply_seconds", "Duration of one batch transaction", NULL,
                          metrics_latency_bounds, metrics_latency_bound_count);
}

/* Waits for PostgreSQL (retrying with backoff until worker_stop) and migrates. */
static int worker_start_pg(worker_t *w)
{
    char errstr[1024];
    int64_t backoff = WORKER_FIRST_BACKOFF_MS;
    while (!worker_stop) {
        if (worker_pg_ensure(w, errstr, sizeof(errstr)) == 0) {
            int applied = 0;
            if (migrate_run(w->pg, w->config->migrations_dir, &applied, errstr, sizeof(errstr)) == 0) {
                atomic_store(&w->pg_ok, true);
                return 0;
            }
            if (PQstatus(w->pg) == CONNECTION_OK)
                log_die(NULL, "%s", errstr); /* a broken migration will not fix itself */
        }
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "error", errstr);
        log_field_int(&fields, "retry_in_ms", backoff);
        log_warn(&fields, "PostgreSQL not available at start");
        worker_pg_close(w);
        for (int64_t until = worker_now_ms() + backoff; !worker_stop && worker_now_ms() < until;)
            usleep(50 * 1000);
        backoff =
            backoff * 2 > w->config->retry_max_backoff_ms ? w->config->retry_max_backoff_ms : backoff * 2;
    }
    return -1;
}

static rd_kafka_t *worker_consumer_new(worker_t *w, char *errstr, size_t errstr_size)
{
    const worker_config_t *c = w->config;
    rd_kafka_conf_t *conf = kafka_conf_new(c->kafka_brokers, NULL, errstr, errstr_size);
    if (!conf)
        return NULL;
    /* Our defaults first, the operator's PROFILED_KAFKA_PROPERTIES last so they win. */
    if (kafka_conf_set(conf, "group.id", c->group, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", errstr, errstr_size) <
            0 ||
        kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "isolation.level", "read_committed", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "client.id", "profiled-worker", errstr, errstr_size) < 0 ||
        takeover_conf(conf, c->instance_id, c->session_timeout_ms, errstr, errstr_size) < 0 ||
        kafka_conf_set_list(conf, c->kafka_properties, errstr, errstr_size) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    kafka_log_install(conf);
    rd_kafka_conf_set_rebalance_cb(conf, worker_rebalance);
    rd_kafka_conf_set_opaque(conf, w);
    char reason[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, reason, sizeof(reason));
    if (!rk) {
        snprintf(errstr, errstr_size, "kafka consumer: %s", reason);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk); /* conf is now owned by rk */
    return rk;
}

static void worker_periodic(worker_t *w, int64_t now)
{
    if (now >= w->next_lag_ms) {
        worker_update_lag(w);
        w->next_lag_ms = now + WORKER_LAG_INTERVAL_MS;
    }
    if (now >= w->next_commit_ms) {
        worker_commit_kafka(w);
        w->next_commit_ms = now + WORKER_KAFKA_COMMIT_INTERVAL_MS;
    }
    /* Idle, PostgreSQL is not touched by batches: ping it, so that /readyz tells
     * the truth and an outage pauses the partitions before commands arrive. */
    if (now >= w->next_ping_ms && !w->needs_resync) {
        char errstr[512];
        w->next_ping_ms = now + WORKER_PING_INTERVAL_MS;
        if (worker_pg_ensure(w, errstr, sizeof(errstr)) < 0 ||
            pgconn_exec(w->pg, "SELECT 1", errstr, sizeof(errstr)) < 0) {
            worker_fail(w, APPLY_RETRY, errstr);
            return;
        }
        atomic_store(&w->pg_ok, true);
    }
    if (now >= w->next_purge_ms && w->pg && PQstatus(w->pg) == CONNECTION_OK) {
        char errstr[512];
        uint64_t deleted = 0;
        if (purge_run(w->pg, w->config->applied_retention_ms, 10, &deleted, errstr, sizeof(errstr)) < 0) {
            log_fields_t fields = LOG_FIELDS_INIT;
            log_field_str(&fields, "error", errstr);
            log_warn(&fields, "purge of applied ids failed");
        } else if (deleted > 0) {
            metrics_counter_add(w->m.purged, deleted);
            log_fields_t fields = LOG_FIELDS_INIT;
            log_field_int(&fields, "deleted", (int64_t)deleted);
            log_info(&fields, "purged applied ids past the retention");
        }
        w->next_purge_ms = now + w->config->purge_interval_ms;
    }
}

static void worker_loop(worker_t *w)
{
    const int64_t max_commands = w->config->batch_max_commands;
    while (!worker_stop) {
        int64_t now = worker_now_ms();
        if (w->batch.count == 0)
            worker_periodic(w, now);
        if (w->needs_resync) {
            if (now >= w->retry_at_ms) {
                worker_resync(w);
                continue;
            }
            /* Stay in the group while paused; whatever arrives is fetched again later. */
            int64_t wait = w->retry_at_ms - now;
            rd_kafka_message_t *m =
                rd_kafka_consumer_poll(w->consumer, (int)(wait < WORKER_POLL_MS ? wait : WORKER_POLL_MS));
            if (m)
                worker_message(w, m);
            continue;
        }
        int64_t wait = WORKER_POLL_MS;
        if (w->batch.count > 0) {
            wait = w->batch.opened_ms + w->config->batch_max_wait_ms - now;
            if ((int64_t)w->batch.count >= max_commands || wait <= 0) {
                worker_flush(w);
                continue;
            }
            if (wait > WORKER_POLL_MS)
                wait = WORKER_POLL_MS;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, (int)wait);
        if (m)
            worker_message(w, m);
    }
    /* SIGTERM: finish the open batch (unless failing or fenced), then leave the group. */
    if (w->batch.count > 0 && !w->fatal)
        worker_flush(w);
}

int worker_run(const worker_config_t *config)
{
    int rc = 1;
    char errstr[1024];
    worker_t *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    ops_http_t *ops = NULL;
    w->config = config;
    w->limits.max_body_bytes = (size_t)config->max_body_bytes;
    w->limits.max_depth = (uint32_t)config->max_depth;
    w->limits.max_key_bytes = (uint32_t)config->max_key_bytes;
    w->limits.max_string_bytes = (uint32_t)config->max_string_bytes;
    w->limits.max_keys = (uint32_t)config->max_keys;
    w->rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL | 1;
    atomic_init(&w->joined, false);
    atomic_init(&w->pg_ok, false);
    w->metrics = metrics_new();
    worker_metrics_init(w);
    w->lag = lag_new(w->metrics, config->kafka_topic, WORKER_LAG_INTERVAL_MS);
    worker_scratch = apply_scratch_new();

    if (config->ops_port >= 0) {
        ops = ops_http_start(config->ops_addr, (int)config->ops_port, w->metrics, worker_ready, w, errstr,
                             sizeof(errstr));
        if (!ops)
            log_die(NULL, "ops listener: %s", errstr);
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "addr", config->ops_addr);
        log_field_int(&fields, "port", ops_http_port(ops));
        log_info(&fields, "ops listener up (/healthz /readyz /metrics)");
    }

    if (worker_start_pg(w) < 0) {
        rc = 0; /* stopped by a signal while waiting */
        goto cleanup;
    }

    rd_kafka_conf_t *dlq_conf =
        kafka_conf_new(config->kafka_brokers, config->kafka_properties, errstr, sizeof(errstr));
    if (dlq_conf)
        kafka_log_install(dlq_conf);
    if (!dlq_conf || !(w->dlq = dlq_new(dlq_conf, errstr, sizeof(errstr))))
        log_die(NULL, "%s", errstr);
    if (config->create_topics) {
        const char *topics[2] = {config->kafka_topic, config->kafka_dlq_topic};
        if (topics_create(w->dlq, topics, 2, (int)config->topic_partitions, 30000, errstr, sizeof(errstr)) <
            0)
            log_die(NULL, "creating topics: %s", errstr);
    }
    w->consumer = worker_consumer_new(w, errstr, sizeof(errstr));
    if (!w->consumer)
        log_die(NULL, "%s", errstr);
    if (lag_start(w->lag, w->consumer, errstr, sizeof(errstr)) < 0)
        log_die(NULL, "%s", errstr);
    rd_kafka_topic_partition_list_t *subscription = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subscription, config->kafka_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(w->consumer, subscription);
    rd_kafka_topic_partition_list_destroy(subscription);
    if (err)
        log_die(NULL, "subscribe to %s: %s", config->kafka_topic, rd_kafka_err2str(err));
    {
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "topic", config->kafka_topic);
        log_field_str(&fields, "group", config->group);
        log_info(&fields, "consuming");
    }

    worker_loop(w);

    lag_stop(w->lag);
    if (w->fatal) {
        /* Another member holds our instance id: no close (it would run the revocation
         * through our rebalance callback, and it waited for a group we are out of). */
        log_info(NULL, "stopping after a fatal consumer error");
        batch_clear(&w->batch); /* unapplied; its messages hold references rd_kafka_destroy waits for */
        rd_kafka_destroy_flags(w->consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        w->consumer = NULL;
        rc = 1;
    } else {
        log_info(NULL, "stopping: leaving the consumer group");
        rd_kafka_consumer_close(w->consumer); /* revocation runs here: nothing is open */
        rc = 0;
    }

cleanup:
    lag_stop(w->lag);
    if (w->consumer)
        rd_kafka_destroy(w->consumer);
    if (w->dlq) {
        (void)rd_kafka_flush(w->dlq, 5000);
        rd_kafka_destroy(w->dlq);
    }
    if (ops)
        ops_http_stop(ops);
    lag_destroy(w->lag); /* after the ops listener: its gauges read the lag slots */
    worker_pg_close(w);
    batch_free(&w->batch);
    free(w->partitions);
    apply_scratch_destroy(worker_scratch);
    worker_scratch = NULL;
    metrics_destroy(w->metrics);
    free(w);
    if (rc == 0)
        log_info(NULL, "stopped");
    return rc;
}
