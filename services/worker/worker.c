/*
 * worker: the consumer loop of profiled-worker.
 *
 * One thread (this one) does everything that touches Kafka and the positions
 * table, so their order is simple to reason about; the PostgreSQL
 * transactions run on the lanes (lane.h), one connection each:
 *
 *   poll -> filter -> decode into the open batch of the partition's lane
 *   hand the open batch to its lane when the lane is idle and the batch is
 *   full, old (PROFILED_BATCH_MAX_WAIT), or nothing more is fetched
 *   collect each lane's result: positions move, or a failure
 *
 * So a lane applies batch k while this thread decodes batch k+1, and a lone
 * command is applied as soon as it is fetched (no batch timer to wait out).
 *
 * PostgreSQL holds the positions; Kafka's committed offsets are a copy for lag
 * tools and are never read back. Whenever something fails (PostgreSQL down, a
 * fenced position, dead letters not acknowledged) the open batches are
 * dropped, every assigned partition is paused, and once every lane is idle
 * and a capped, jittered backoff passed the worker "resyncs": it re-reads the
 * positions from PostgreSQL, seeks each partition there and resumes.
 * Re-reading rather than trusting memory also settles a COMMIT whose answer
 * was lost: if it committed, the positions moved.
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
#include "cfg_shared.h"
#include "clock.h"
#include "dlq.h"
#include "kafka_conf.h"
#include "kafka_log.h"
#include "kcopy.h"
#include "log.h"
#include "migrate.h"
#include "ops_http.h"
#include "pgconn.h"
#include "purge.h"
#include "takeover.h"
#include "topics.h"
#include "xalloc.h"

volatile sig_atomic_t worker_stop = 0;

#define WORKER_POLL_MS                100  /* longest a poll blocks: bounds the reaction to a signal */
#define WORKER_FIRST_BACKOFF_MS       100  /* first retry delay after a failure */
#define WORKER_SEEK_TIMEOUT_MS        5000 /* wait for the fetcher to take a seek */
#define WORKER_LAG_INTERVAL_MS        1000
#define WORKER_KAFKA_COPY_INTERVAL_MS 5000 /* copy of the positions to Kafka, for lag tools (kcopy.h) */
#define WORKER_KAFKA_COPY_FINAL_MS    2000 /* bound of the last copy at shutdown */
#define WORKER_PING_INTERVAL_MS       2000 /* PostgreSQL health check while idle */

int64_t worker_now_ms(void)
{
    return clock_mono_ms();
}

int worker_apply_connections(const worker_config_t *config)
{
    if (config->apply_connections > 0)
        return (int)config->apply_connections;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 2)
        return 2; /* one lane commits while the other is read and folded */
    return cores > WORKER_AUTO_CONNECTIONS_MAX ? WORKER_AUTO_CONNECTIONS_MAX : (int)cores;
}

/* ------------------------------------------------------------------ lag */

/* Publishes PostgreSQL's positions to lag.c, whose thread asks the broker for the end offsets. */
static void worker_update_lag(worker_t *w)
{
    for (size_t i = 0; i < w->parts.count; i++) {
        const parts_entry_t *p = &w->parts.entries[i];
        lag_position(w->lag, p->partition, p->known ? p->next_offset : -1);
        if (p->known && p->stored)
            kcopy_set(w->kcopy, p->partition, p->next_offset);
    }
}

static void worker_forget_partition(worker_t *w, int32_t partition)
{
    parts_remove(&w->parts, partition);
    lag_forget(w->lag, partition);
    kcopy_forget(w->kcopy, partition);
}

/* ------------------------------------------------------------------ PostgreSQL (control connection) */

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

static int worker_read_positions(worker_t *w, rd_kafka_topic_partition_list_t *list, char *errstr,
                                 size_t errstr_size)
{
    if (worker_pg_ensure(w, errstr, errstr_size) < 0)
        return -1;
    if (parts_read_positions(&w->parts, w->pg, w->config->group, w->config->kafka_topic, list, errstr,
                             errstr_size) < 0)
        return -1;
    atomic_store(&w->pg_ok, true);
    return 0;
}

/* ------------------------------------------------------------------ failure and resync */

static void worker_pause_all(worker_t *w)
{
    if (w->parts.count == 0)
        return;
    rd_kafka_topic_partition_list_t *list = parts_list(&w->parts, w->config->kafka_topic, -1);
    rd_kafka_pause_partitions(w->consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
}

/* Drops the open batches and schedules a resync: immediately after a fence,
 * after a jittered, capped exponential backoff after anything else. Batches in
 * flight on the lanes finish on their own; the resync waits for them. */
static void worker_fail(worker_t *w, apply_status_t status, const char *reason)
{
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "error", reason);
    size_t dropped = 0;
    for (int l = 0; l < lanes_count(w->lanes); l++) {
        dropped += w->open[l].count;
        batch_clear(&w->open[l]);
    }
    if (dropped > 0)
        log_field_int(&fields, "dropped_commands", (int64_t)dropped);
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
    log_warn(&fields, "batch not applied; partitions paused, will resume from PostgreSQL's positions");
}

static void worker_resync(worker_t *w)
{
    char errstr[512];
    rd_kafka_topic_partition_list_t *list = parts_list(&w->parts, w->config->kafka_topic, -1);
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
    log_field_int(&fields, "partitions", (int64_t)w->parts.count);
    log_info(&fields, "resumed from PostgreSQL's positions");
}

/* ------------------------------------------------------------------ lanes */

/* Takes the results of finished lanes: positions move, or the worker fails. */
static void worker_collect(worker_t *w)
{
    for (int l = 0; l < lanes_count(w->lanes); l++) {
        lane_result_t result;
        if (!lane_take(lanes_get(w->lanes, l), &result))
            continue;
        if (result.status != APPLY_OK) {
            if (!w->needs_resync) /* after a failure, every result is superseded by the resync */
                worker_fail(w, result.status, result.errstr);
            continue;
        }
        for (size_t k = 0; k < result.position_count; k++) {
            parts_entry_t *p = parts_find(&w->parts, result.positions[k].partition);
            if (!p) /* revoked while lost: its batch was in flight */
                continue;
            p->stored = true;
            p->next_offset = result.positions[k].expected;
        }
        atomic_store(&w->pg_ok, true);
        w->next_ping_ms = worker_now_ms() + WORKER_PING_INTERVAL_MS;
    }
}

static bool worker_lanes_idle(worker_t *w)
{
    for (int l = 0; l < lanes_count(w->lanes); l++)
        if (!lane_idle(lanes_get(w->lanes, l)))
            return false;
    return true;
}

/* Hands lane l its open batch, with the positions PostgreSQL holds for the
 * batch's partitions (the lane is idle, so its last batch is collected). */
static void worker_submit(worker_t *w, int l)
{
    batch_t *open = &w->open[l];
    if (w->fatal || takeover_fatal(w->consumer)) {
        /* Fenced: another process owns these partitions now. Apply nothing more (a batch
         * already in flight is fenced by PostgreSQL's positions); drop it and stop. */
        w->fatal = true;
        worker_stop = 1;
        batch_clear(open);
        return;
    }
    apply_position_t small[64];
    apply_position_t *base = small;
    size_t count = 0, cap = sizeof(small) / sizeof(small[0]);
    for (size_t i = 0; i < open->count; i++) {
        int32_t partition = open->items[i].partition;
        size_t k;
        for (k = 0; k < count; k++)
            if (base[k].partition == partition)
                break;
        if (k < count)
            continue;
        if (count == cap) {
            cap *= 2;
            apply_position_t *grown = xmalloc(cap * sizeof(*grown), "batch positions");
            memcpy(grown, base, count * sizeof(*grown));
            if (base != small)
                free(base);
            base = grown;
        }
        const parts_entry_t *p = parts_find(&w->parts, partition);
        if (!p) /* items belong to assigned partitions: revocation flushes or drops first */
            fatal_abort("an item of partition %d, which is not assigned", (int)partition);
        base[count++] = (apply_position_t){
            .partition = partition, .stored = p->stored, .expected = p->next_offset, .next = p->next_offset};
    }
    lane_submit(lanes_get(w->lanes, l), open, base, count);
    if (base != small)
        free(base);
}

/* Hands each idle lane its open batch when it is full, old, or when nothing
 * more is fetched (`force`: whatever it holds). */
static void worker_dispatch(worker_t *w, bool force)
{
    if (w->needs_resync)
        return;
    int64_t now = worker_now_ms();
    for (int l = 0; l < lanes_count(w->lanes); l++) {
        const batch_t *open = &w->open[l];
        if (open->count == 0 || !lane_idle(lanes_get(w->lanes, l)))
            continue;
        if (force || w->drained || (int64_t)open->count >= w->config->batch_max_commands ||
            now >= open->opened_ms + w->config->batch_max_wait_ms)
            worker_submit(w, l);
    }
}

/* Waits until lane l is idle, collecting (and dispatching to) the others meanwhile. */
static void worker_wait_lane(worker_t *w, int l)
{
    lane_t *lane = lanes_get(w->lanes, l);
    for (;;) {
        worker_collect(w);
        if (lane_idle(lane))
            return;
        worker_dispatch(w, false);
        lanes_wait(w->lanes, WORKER_POLL_MS);
    }
}

/* Applies the open batches of the lanes marked in `lanes_to_flush` (NULL: all)
 * and waits for them: used before partitions are given up and at shutdown. */
static void worker_flush_lanes(worker_t *w, const bool *lanes_to_flush)
{
    for (int l = 0; l < lanes_count(w->lanes); l++) {
        if (lanes_to_flush && !lanes_to_flush[l])
            continue;
        worker_wait_lane(w, l);
        if (w->open[l].count > 0 && !w->needs_resync) {
            worker_submit(w, l);
            worker_wait_lane(w, l);
        }
    }
    worker_collect(w);
}

/*
 * librdkafka 2.0 stops fetching while the consumer queue holds more than
 * queued.max.messages.kbytes or queued.min.messages, and nothing wakes its
 * broker thread when the application drains the queue again: fetching resumes
 * at that thread's next timed wake-up, up to a second later (a fixed 1,000 ms
 * in 2.0; fetch.queue.backoff.ms, which bounds it, came in 2.4). A local
 * broker fills the queue in milliseconds, so under a backlog it ran full at
 * nearly every fetch, and the worker applied 13k rows/s against a 30-40k
 * ceiling (tests/bench/worker, quiet machine), idle most of each second.
 *
 * Everything in the queue arrived after it was last seen empty, so the queue
 * can have reached a limit only if this thread polled at least that much since
 * then. In that case, when the queue is next seen empty, each partition is
 * sought to the next offset this thread expects: a seek wakes the broker
 * thread. Nothing is skipped: the queue is empty, and a response in flight is
 * discarded (older fetch version) and fetched again. Partitions without known
 * positions are paused and left alone; a failure pending a resync seeks
 * everything itself.
 */
static void worker_queue_empty(worker_t *w)
{
    bool may_stall = w->polled_messages >= w->queue_limit_messages || w->polled_bytes >= w->queue_limit_bytes;
    w->polled_messages = 0;
    w->polled_bytes = 0;
    if (!may_stall)
        return;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)w->parts.count);
    for (size_t i = 0; i < w->parts.count; i++) {
        const parts_entry_t *p = &w->parts.entries[i];
        if (p->known)
            rd_kafka_topic_partition_list_add(list, w->config->kafka_topic, p->partition)->offset =
                p->fetch_offset;
    }
    if (list->cnt > 0) {
        rd_kafka_error_t *error = rd_kafka_seek_partitions(w->consumer, list, 0); /* 0: asynchronous */
        if (error) {
            /* Not fatal: the fetcher then wakes on its own, up to a second later. */
            log_fields_t fields = LOG_FIELDS_INIT;
            log_field_str(&fields, "error", rd_kafka_error_string(error));
            log_debug(&fields, "fetch restart: seek refused");
            rd_kafka_error_destroy(error);
        } else
            metrics_counter_add(w->m.fetch_restarts, 1);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* ------------------------------------------------------------------ rebalancing */

static void worker_assign(worker_t *w, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions,
                          bool cooperative, log_fields_t *fields)
{
    char errstr[512];
    bool read = false;
    if (!w->needs_resync) {
        read = worker_read_positions(w, partitions, errstr, sizeof(errstr)) == 0;
        if (!read)
            log_field_str(fields, "error", errstr);
    }
    if (!read)
        for (int i = 0; i < partitions->cnt; i++)
            parts_add(&w->parts, partitions->elems[i].partition)->known = false;
    for (int i = 0; i < partitions->cnt; i++)
        lag_track(w->lag, partitions->elems[i].partition);
    rd_kafka_error_t *error = NULL;
    if (cooperative)
        error = rd_kafka_incremental_assign(rk, partitions);
    else
        (void)rd_kafka_assign(rk, partitions);
    if (error) {
        log_field_str(fields, "assign_error", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    log_info(fields, "partitions assigned%s", read ? "" : " (positions not read yet: paused)");
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
}

static void worker_revoke(worker_t *w, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions,
                          bool cooperative, log_fields_t *fields)
{
    bool lost = rd_kafka_assignment_lost(rk);
    /* Finish the batches of the revoked partitions while they are still ours,
     * waiting only for the lanes that apply them; when they are already lost
     * another worker may own them, so drop the open batches instead (the fence
     * would refuse them anyway) and resync. */
    bool *affected = xcalloc((size_t)lanes_count(w->lanes), sizeof(*affected), "the affected lanes");
    bool open = false;
    for (int i = 0; i < partitions->cnt; i++) {
        const parts_entry_t *p = parts_find(&w->parts, partitions->elems[i].partition);
        if (p) {
            affected[p->lane] = true;
            open |= w->open[p->lane].count > 0;
        }
    }
    if (lost && open)
        worker_fail(w, APPLY_FENCED, "assignment lost with a batch open");
    else if (!lost)
        worker_flush_lanes(w, affected);
    free(affected);
    for (int i = 0; i < partitions->cnt; i++)
        worker_forget_partition(w, partitions->elems[i].partition);
    rd_kafka_error_t *error = NULL;
    if (cooperative)
        error = rd_kafka_incremental_unassign(rk, partitions);
    else {
        (void)rd_kafka_assign(rk, NULL);
        while (w->parts.count > 0)
            worker_forget_partition(w, w->parts.entries[0].partition);
    }
    if (error) {
        log_field_str(fields, "unassign_error", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    log_info(fields, "partitions revoked%s", lost ? " (lost)" : "");
}

/* Runs on the worker thread, inside rd_kafka_consumer_poll. */
static void worker_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *partitions, void *opaque)
{
    worker_t *w = opaque;
    /* NULL "on error" (rdkafka.h), as when the close's own rebalance comes after the group
     * was left: the protocol is then the configured one (cooperative-sticky, below). */
    const char *protocol = rd_kafka_rebalance_protocol(rk);
    bool cooperative = !protocol || strcmp(protocol, "COOPERATIVE") == 0;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "partitions", partitions->cnt);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        worker_assign(w, rk, partitions, cooperative, &fields);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        worker_revoke(w, rk, partitions, cooperative, &fields);
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
    parts_entry_t *p = parts_find(&w->parts, m->partition);
    if (w->needs_resync || !p || !p->known || m->offset < p->fetch_offset ||
        strcmp(rd_kafka_topic_name(m->rkt), w->config->kafka_topic) != 0) {
        /* before a resync everything is fetched again from PostgreSQL's positions;
         * an offset below the expected one is a redelivery of a batched message */
        rd_kafka_message_destroy(m);
        return;
    }
    int l = p->lane;
    if ((int64_t)w->open[l].count >= w->config->batch_max_commands) {
        /* Full: wait for the lane (the others keep applying), then hand it over. */
        worker_wait_lane(w, l);
        if (w->needs_resync) {
            rd_kafka_message_destroy(m);
            return;
        }
        worker_submit(w, l);
    }
    p->fetch_offset = m->offset + 1;
    lag_fetched(w->lag, m->partition, m->offset, rd_kafka_message_timestamp(m, NULL));
    if (w->open[l].count == 0)
        w->open[l].opened_ms = worker_now_ms();
    batch_add(&w->open[l], m, &w->limits, (size_t)w->config->batch_max_commands);
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
    w->m.lane.applied = metrics_counter(m, "profiled_worker_commands_applied_total",
                                        "Commands applied (superseded within a batch included)", NULL);
    w->m.lane.duplicates = metrics_counter(m, "profiled_worker_commands_skipped_total",
                                           "Commands skipped, by reason", "reason=\"duplicate\"");
    w->m.lane.stale = metrics_counter(m, "profiled_worker_commands_skipped_total",
                                      "Commands skipped, by reason", "reason=\"stale_version\"");
    w->m.lane.refused = metrics_counter(m, "profiled_worker_commands_refused_total",
                                        "Merges and patches that could not apply to the stored profile "
                                        "(recorded with a reason, not dead-lettered)",
                                        NULL);
    w->m.lane.dead_lettered = metrics_counter(m, "profiled_worker_commands_dead_lettered_total",
                                              "Commands sent to the dead-letter topic", NULL);
    w->m.lane.batches = metrics_counter(m, "profiled_worker_batches_total", "Transactions committed", NULL);
    w->m.apply_failures =
        metrics_counter(m, "profiled_worker_apply_failures_total",
                        "Batches dropped for a retry (PostgreSQL or dead-letter failures)", NULL);
    w->m.fenced = metrics_counter(m, "profiled_worker_fenced_total",
                                  "Transactions refused because another worker moved a position", NULL);
    w->m.purged = metrics_counter(m, "profiled_worker_applied_ids_purged_total",
                                  "Applied command ids deleted after the retention", NULL);
    w->m.fetch_restarts = metrics_counter(
        m, "profiled_worker_fetch_restarts_total",
        "Seeks that woke librdkafka's fetcher after its queue may have reached its limits", NULL);
    w->m.lane.batch_size =
        metrics_histogram(m, "profiled_worker_batch_size", "Commands per committed transaction", NULL,
                          size_bounds, sizeof(size_bounds) / sizeof(size_bounds[0]));
    w->m.lane.apply_seconds =
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

/*
 * Bounded prefetch. librdkafka's defaults fetch up to 1 MiB a partition and 50
 * MiB a request, and queue up to 64 MiB or 100,000 messages, far more than
 * the worker can use: it holds at most two batches a lane (the open one and
 * the one applying), and the broker is close. From the batch size B:
 *   queued.max.messages.kbytes = max(1024, B * 3 / 5)  (~60% of a batch of 1 KiB commands)
 *   queued.min.messages        = B
 *   fetch.max.bytes            = max(64 KiB, that / 16), in bytes (message.max.bytes the same:
 *                                librdkafka requires fetch.max.bytes >= it; a consumer sends none)
 *   max.partition.fetch.bytes  = max(32 KiB, fetch.max.bytes / 2)
 * Why these, measured (tests/bench/worker, 100k x 1 KiB, 2 lanes):
 * - The queue limit is checked before a fetch is sent, in decompressed bytes,
 *   and the fetch limits count bytes on the wire; one response is decompressed
 *   whole into the queue. The bench's lz4 commands compress ~20x: with
 *   fetch.max.bytes at 1.25 MiB a response became ~25 MiB of messages, and
 *   librdkafka held 13-15 MiB at the worker's peak (heaptrack).
 * - librdkafka 2.0 does not fetch while the queue is over its limits, and
 *   nothing wakes its broker thread when the application drains the queue, so
 *   each time the queue runs full (always, under a backlog: the consumer thread
 *   waits while a lane applies) fetching pauses. The queue must hold enough to
 *   cover that pause: with small responses and a 1.25 MiB queue the worker
 *   applied ~30% less (8k against 11.5k rows/s, same binary, alternated);
 *   with a 3 MiB queue and ~190 KiB responses it applied as much as with the
 *   old limits, at 8-10 MiB less peak RSS.
 * The broker still returns a record batch larger than the limits whole.
 * PROFILED_KAFKA_PROPERTIES may override each. Memory as a function of the
 * settings: README, "Memory".
 */
typedef struct worker_fetch_limits {
    int64_t queued_kbytes, queued_messages, fetch_bytes, partition_bytes;
} worker_fetch_limits_t;

static worker_fetch_limits_t worker_fetch_limits(int64_t batch_max_commands)
{
    worker_fetch_limits_t l;
    l.queued_kbytes = batch_max_commands * 3 / 5 < 1024 ? 1024 : batch_max_commands * 3 / 5;
    l.queued_messages = batch_max_commands;
    l.fetch_bytes = l.queued_kbytes * 1024 / 16 < 65536 ? 65536 : l.queued_kbytes * 1024 / 16;
    l.partition_bytes = l.fetch_bytes / 2 < 32768 ? 32768 : l.fetch_bytes / 2;
    return l;
}

static int worker_consumer_limits(rd_kafka_conf_t *conf, int64_t batch_max_commands, char *errstr,
                                  size_t errstr_size)
{
    worker_fetch_limits_t l = worker_fetch_limits(batch_max_commands);
    char queued_kbytes[32], queued_messages[32], fetch_bytes[32], partition_fetch[32];
    snprintf(queued_kbytes, sizeof(queued_kbytes), "%" PRId64, l.queued_kbytes);
    snprintf(queued_messages, sizeof(queued_messages), "%" PRId64, l.queued_messages);
    snprintf(fetch_bytes, sizeof(fetch_bytes), "%" PRId64, l.fetch_bytes);
    snprintf(partition_fetch, sizeof(partition_fetch), "%" PRId64, l.partition_bytes);
    if (kafka_conf_set(conf, "queued.max.messages.kbytes", queued_kbytes, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "queued.min.messages", queued_messages, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "message.max.bytes", fetch_bytes, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "fetch.max.bytes", fetch_bytes, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "max.partition.fetch.bytes", partition_fetch, errstr, errstr_size) < 0)
        return -1;
    return 0;
}

static rd_kafka_t *worker_consumer_new(worker_t *w, char *errstr, size_t errstr_size)
{
    const worker_config_t *c = w->config;
    rd_kafka_conf_t *conf = kafka_conf_new(c->kafka_brokers, NULL, errstr, errstr_size);
    if (!conf)
        return NULL;
    /* Our defaults first, the operator's PROFILED_KAFKA_PROPERTIES last so they win,
     * except on the durability settings, which the list may not name (kafka_conf_check_list). */
    if (kafka_conf_set(conf, "group.id", c->group, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", errstr, errstr_size) <
            0 ||
        kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "isolation.level", "read_committed", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "client.id", "profiled-worker", errstr, errstr_size) < 0 ||
        worker_consumer_limits(conf, c->batch_max_commands, errstr, errstr_size) < 0 ||
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
    while (!worker_stop) {
        worker_collect(w);
        int64_t now = worker_now_ms();
        worker_periodic(w, now);
        if (w->needs_resync) {
            if (now >= w->retry_at_ms && worker_lanes_idle(w)) {
                worker_resync(w);
                continue;
            }
            /* Stay in the group while paused; whatever arrives is fetched again later. */
            int64_t wait = w->retry_at_ms > now ? w->retry_at_ms - now : WORKER_POLL_MS;
            rd_kafka_message_t *m =
                rd_kafka_consumer_poll(w->consumer, (int)(wait < WORKER_POLL_MS ? wait : WORKER_POLL_MS));
            if (m)
                worker_message(w, m);
            continue;
        }
        worker_dispatch(w, false);
        /* An open batch whose lane is idle was kept because more was fetched:
         * look again without blocking. Otherwise block; a finishing lane
         * yields the queue, so the poll returns as soon as one is free. */
        int64_t wait = WORKER_POLL_MS;
        for (int l = 0; l < lanes_count(w->lanes); l++)
            if (w->open[l].count > 0 && lane_idle(lanes_get(w->lanes, l)))
                wait = 0;
        if (rd_kafka_queue_length(w->consumer_queue) == 0)
            worker_queue_empty(w);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, (int)wait);
        w->drained = m == NULL;
        if (m) {
            w->polled_messages++;
            w->polled_bytes += (int64_t)m->len;
            worker_message(w, m);
        }
    }
    /* SIGTERM: finish the open batches (unless failing; a fenced worker's submit drops
     * them), then leave the group. */
    worker_flush_lanes(w, NULL);
}

int worker_run(const worker_config_t *config)
{
    int rc = 1;
    char errstr[1024];
    worker_t *w = xcalloc(1, sizeof(*w), "the worker");
    ops_http_t *ops = NULL;
    w->config = config;
    w->limits = CFG_SHARED_LIMITS_OF(config);
    w->rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL | 1;
    atomic_init(&w->joined, false);
    atomic_init(&w->pg_ok, false);
    w->metrics = metrics_new();
    worker_metrics_init(w);
    w->lag = lag_new(w->metrics, config->kafka_topic, WORKER_LAG_INTERVAL_MS);
    int connections = worker_apply_connections(config);
    w->parts.lane_count = connections;
    w->open = xcalloc((size_t)connections, sizeof(*w->open), "the open batches");

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
    kcopy_config_t kcopy_config = {.brokers = config->kafka_brokers,
                                   .kafka_properties = config->kafka_properties,
                                   .group = config->group,
                                   .topic = config->kafka_topic,
                                   .instance_id = config->instance_id,
                                   .interval_ms = WORKER_KAFKA_COPY_INTERVAL_MS};
    w->kcopy = kcopy_new(&kcopy_config, w->metrics, errstr, sizeof(errstr));
    if (!w->kcopy || kcopy_start(w->kcopy, errstr, sizeof(errstr)) < 0)
        log_die(NULL, "%s", errstr);
    w->consumer_queue = rd_kafka_queue_get_consumer(w->consumer);
    lane_config_t lane_config = {.pg_dsn = config->pg_dsn,
                                 .group = config->group,
                                 .topic = config->kafka_topic,
                                 .dlq_topic = config->kafka_dlq_topic,
                                 .limits = w->limits,
                                 .dlq = w->dlq,
                                 .wake = w->consumer_queue,
                                 .m = &w->m.lane};
    w->lanes = lanes_new(connections, &lane_config);
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
        log_field_int(&fields, "apply_connections", connections);
        /* the prefetch limits as librdkafka holds them (ours, or PROFILED_KAFKA_PROPERTIES') */
        w->queue_limit_bytes = w->queue_limit_messages = INT64_MAX; /* unread: never restart the fetcher */
        static const char *const limits[][2] = {
            {"queued.max.messages.kbytes", "queued_max_messages_kbytes"},
            {"queued.min.messages", "queued_min_messages"},
            {"fetch.max.bytes", "fetch_max_bytes"},
            {"max.partition.fetch.bytes", "max_partition_fetch_bytes"},
        };
        for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
            char value[32];
            size_t size = sizeof(value);
            if (rd_kafka_conf_get(rd_kafka_conf(w->consumer), limits[i][0], value, &size) != RD_KAFKA_CONF_OK)
                continue;
            int64_t limit = strtoll(value, NULL, 10);
            log_field_int(&fields, limits[i][1], limit);
            if (i == 0)
                w->queue_limit_bytes = limit * 1024;
            else if (i == 1)
                w->queue_limit_messages = limit;
        }
        log_info(&fields, "consuming");
    }

    worker_loop(w);

    lag_stop(w->lag);
    /* A last copy of the final positions after a clean stop; none from a fenced worker. */
    worker_update_lag(w);
    kcopy_stop(w->kcopy, w->fatal ? 0 : WORKER_KAFKA_COPY_FINAL_MS);
    if (w->fatal) {
        /* Another member holds our instance id: no close (it would run the revocation
         * through our rebalance callback, and it waited for a group we are out of). */
        log_info(NULL, "stopping after a fatal consumer error");
        for (int l = 0; l < connections; l++)
            batch_clear(&w->open[l]); /* unapplied; their messages' references would hold rd_kafka_destroy */
        rd_kafka_queue_destroy(w->consumer_queue);
        w->consumer_queue = NULL;
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
    kcopy_destroy(w->kcopy);
    w->kcopy = NULL;
    lanes_destroy(w->lanes); /* idle: the loop flushed them */
    if (w->consumer_queue)
        rd_kafka_queue_destroy(w->consumer_queue);
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
    for (int l = 0; l < connections; l++)
        batch_free(&w->open[l]);
    free(w->open);
    parts_free(&w->parts);
    metrics_destroy(w->metrics);
    free(w);
    if (rc == 0)
        log_info(NULL, "stopped");
    return rc;
}
