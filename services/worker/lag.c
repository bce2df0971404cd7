#include "lag.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "xalloc.h"

#define LAG_QUERY_TIMEOUT_MS 1000 /* one partition's ListOffsets; a dead broker costs this per round */
#define LAG_RING             8192 /* fetched offsets remembered a partition (a power of two) */
#define LAG_UNTRACKED        (-2)
#define LAG_UNKNOWN          (-1)

typedef struct lag_slot {
    lag_t *lag;
    int32_t partition;
    _Atomic int64_t position;    /* LAG_UNTRACKED, LAG_UNKNOWN, or PostgreSQL's next offset */
    _Atomic int64_t end;         /* the broker's last answer (high watermark), -1 before one */
    _Atomic int64_t end_wall_ms; /* CLOCK_REALTIME of that answer */
    _Atomic int64_t committed;   /* Kafka's committed offset (kcopy.h's copy), -1 unknown: the
                                    fallback while PostgreSQL's position is unknown */
    _Atomic bool registered;     /* gauges registered (worker thread only writes it) */
    _Atomic int64_t oldest_ms;   /* timestamp of the command at the position, -1 unknown */
    /* worker thread only: the timestamps of the last LAG_RING fetched offsets */
    int64_t *ring_offset;
    int64_t *ring_ms;
} lag_slot_t;

struct lag {
    metrics_t *metrics;
    const char *topic;
    int64_t interval_ms;
    rd_kafka_t *consumer;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock; /* guards stopping, with wake */
    pthread_cond_t wake;
    bool stopping;
    lag_slot_t slots[LAG_MAX_PARTITIONS];
};

static int64_t lag_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

lag_t *lag_new(metrics_t *metrics, const char *topic, int64_t interval_ms)
{
    lag_t *lag = xcalloc(1, sizeof(*lag), "the lag sampler");
    lag->metrics = metrics;
    lag->topic = topic;
    lag->interval_ms = interval_ms;
    pthread_mutex_init(&lag->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&lag->wake, &attr);
    pthread_condattr_destroy(&attr);
    for (int i = 0; i < LAG_MAX_PARTITIONS; i++) {
        lag_slot_t *slot = &lag->slots[i];
        slot->lag = lag;
        slot->partition = i;
        atomic_init(&slot->position, LAG_UNTRACKED);
        atomic_init(&slot->end, -1);
        atomic_init(&slot->end_wall_ms, 0);
        atomic_init(&slot->committed, -1);
        atomic_init(&slot->oldest_ms, -1);
        atomic_init(&slot->registered, false);
    }
    return lag;
}

/* The partitions whose PostgreSQL position is unknown (assigned while PostgreSQL
 * was down): their committed offsets in Kafka, the copy of the positions that
 * kcopy.c writes (at most its interval behind PostgreSQL, so the lag counted
 * from it errs high, never low). An OffsetFetch, which no group state fences. */
static void lag_query_committed(lag_t *lag)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < LAG_MAX_PARTITIONS; i++)
        if (atomic_load(&lag->slots[i].position) == LAG_UNKNOWN)
            rd_kafka_topic_partition_list_add(list, lag->topic, i);
    if (list->cnt > 0 &&
        rd_kafka_committed(lag->consumer, list, LAG_QUERY_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < list->cnt; i++) {
            const rd_kafka_topic_partition_t *tp = &list->elems[i];
            /* A partition never copied reads OFFSET_INVALID: still unknown (NaN). */
            if (tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0)
                atomic_store(&lag->slots[tp->partition].committed, tp->offset);
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* One round: every tracked partition's end offset, from the partition leader. */
static void lag_query_round(lag_t *lag)
{
    int failed = 0;
    const char *error = NULL;
    for (int i = 0; i < LAG_MAX_PARTITIONS; i++) {
        lag_slot_t *slot = &lag->slots[i];
        if (atomic_load(&slot->position) == LAG_UNTRACKED)
            continue;
        int64_t low = 0, high = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(lag->consumer, lag->topic, i, &low, &high, LAG_QUERY_TIMEOUT_MS);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0) {
            atomic_store(&slot->end, high);
            atomic_store(&slot->end_wall_ms, lag_wall_ms());
        } else {
            failed++;
            error = rd_kafka_err2str(err);
        }
        pthread_mutex_lock(&lag->lock);
        bool stopping = lag->stopping;
        pthread_mutex_unlock(&lag->lock);
        if (stopping)
            return;
    }
    if (failed > 0) {
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_int(&fields, "partitions", failed);
        log_field_str(&fields, "error", error);
        log_debug(&fields, "end offsets not refreshed; lag uses the last known ones");
    }
    lag_query_committed(lag);
}

static void *lag_thread(void *arg)
{
    lag_t *lag = arg;
    pthread_mutex_lock(&lag->lock);
    while (!lag->stopping) {
        pthread_mutex_unlock(&lag->lock);
        lag_query_round(lag);
        pthread_mutex_lock(&lag->lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += lag->interval_ms / 1000;
        until.tv_nsec += (lag->interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!lag->stopping && pthread_cond_timedwait(&lag->wake, &lag->lock, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&lag->lock);
    return NULL;
}

int lag_start(lag_t *lag, rd_kafka_t *consumer, char *errstr, size_t errstr_size)
{
    lag->consumer = consumer;
    int rc = pthread_create(&lag->thread, NULL, lag_thread, lag);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "lag thread: error %d", rc);
        return -1;
    }
    lag->running = true;
    return 0;
}

void lag_stop(lag_t *lag)
{
    if (!lag->running)
        return;
    pthread_mutex_lock(&lag->lock);
    lag->stopping = true;
    pthread_cond_signal(&lag->wake);
    pthread_mutex_unlock(&lag->lock);
    pthread_join(lag->thread, NULL);
    lag->running = false;
}

void lag_destroy(lag_t *lag)
{
    if (!lag)
        return;
    lag_stop(lag);
    pthread_cond_destroy(&lag->wake);
    pthread_mutex_destroy(&lag->lock);
    for (int i = 0; i < LAG_MAX_PARTITIONS; i++) {
        free(lag->slots[i].ring_offset);
        free(lag->slots[i].ring_ms);
    }
    free(lag);
}

/* PostgreSQL's position, or while it is unknown Kafka's committed offset; -1: neither. */
static int64_t lag_base(const lag_slot_t *slot, bool *from_kafka)
{
    int64_t position = atomic_load(&slot->position);
    *from_kafka = false;
    if (position >= 0)
        return position;
    if (position == LAG_UNTRACKED)
        return -1;
    *from_kafka = true;
    return atomic_load(&slot->committed);
}

static double lag_gauge(void *arg)
{
    lag_slot_t *slot = arg;
    bool from_kafka;
    int64_t base = lag_base(slot, &from_kafka);
    int64_t end = atomic_load(&slot->end);
    if (base < 0 || end < 0)
        return NAN;
    return end > base ? (double)(end - base) : 0.0;
}

static double lag_source_gauge(void *arg)
{
    bool from_kafka;
    if (lag_base(arg, &from_kafka) < 0)
        return NAN;
    return from_kafka ? 1.0 : 0.0;
}

/* Age of the oldest command not applied: 0 when none is, NaN when it was not fetched yet. */
static double lag_oldest_gauge(void *arg)
{
    lag_slot_t *slot = arg;
    int64_t position = atomic_load(&slot->position);
    int64_t end = atomic_load(&slot->end);
    if (position >= 0 && end >= 0 && end <= position)
        return 0.0;
    int64_t at = atomic_load(&slot->oldest_ms);
    if (position < 0 || at < 0)
        return NAN;
    int64_t age = lag_wall_ms() - at;
    return age > 0 ? (double)age / 1000.0 : 0.0;
}

static double lag_age_gauge(void *arg)
{
    lag_slot_t *slot = arg;
    int64_t at = atomic_load(&slot->end_wall_ms);
    if (atomic_load(&slot->position) == LAG_UNTRACKED || at == 0)
        return NAN;
    return (double)(lag_wall_ms() - at) / 1000.0;
}

void lag_track(lag_t *lag, int32_t partition)
{
    if (partition < 0 || partition >= LAG_MAX_PARTITIONS)
        return;
    lag_slot_t *slot = &lag->slots[partition];
    if (atomic_load(&slot->position) == LAG_UNTRACKED)
        atomic_store(&slot->position, LAG_UNKNOWN);
    if (!slot->ring_offset) {
        slot->ring_offset = xmalloc(LAG_RING * sizeof(*slot->ring_offset), "a partition's lag ring");
        slot->ring_ms = xmalloc(LAG_RING * sizeof(*slot->ring_ms), "a partition's lag ring");
    }
    for (int i = 0; i < LAG_RING; i++)
        slot->ring_offset[i] = -1;
    if (atomic_load(&slot->registered))
        return;
    char labels[256];
    snprintf(labels, sizeof(labels), "topic=\"%s\",partition=\"%" PRId32 "\"", lag->topic, partition);
    metrics_gauge(lag->metrics, "profiled_worker_lag",
                  "Commands of the partition not applied yet: the broker's end offset minus the position "
                  "PostgreSQL holds",
                  labels, lag_gauge, slot);
    metrics_gauge(lag->metrics, "profiled_worker_lag_from_kafka_offsets",
                  "1 while profiled_worker_lag counts from Kafka's committed offset (the copy, at most 5 s "
                  "behind; PostgreSQL's position not read yet), 0 while from PostgreSQL's position",
                  labels, lag_source_gauge, slot);
    metrics_gauge(lag->metrics, "profiled_worker_oldest_unapplied_age_seconds",
                  "Age (from its Kafka timestamp) of the partition's oldest command not applied yet; 0 when "
                  "all are, NaN until the worker has fetched it",
                  labels, lag_oldest_gauge, slot);
    metrics_gauge(lag->metrics, "profiled_worker_end_offset_age_seconds",
                  "Age of the end offset behind profiled_worker_lag (grows while the broker cannot answer)",
                  labels, lag_age_gauge, slot);
    atomic_store(&slot->registered, true);
}

void lag_position(lag_t *lag, int32_t partition, int64_t next_offset)
{
    if (partition < 0 || partition >= LAG_MAX_PARTITIONS)
        return;
    lag_slot_t *slot = &lag->slots[partition];
    if (atomic_load(&slot->position) == LAG_UNTRACKED)
        return;
    atomic_store(&slot->position, next_offset < 0 ? LAG_UNKNOWN : next_offset);
    /* The command at the position is the oldest not applied; its timestamp is known
     * if it was fetched among the last LAG_RING of the partition (it usually sits in
     * the open or the applying batch, and stays remembered while paused). */
    int64_t at = -1;
    if (next_offset >= 0 && slot->ring_offset &&
        slot->ring_offset[next_offset & (LAG_RING - 1)] == next_offset)
        at = slot->ring_ms[next_offset & (LAG_RING - 1)];
    atomic_store(&slot->oldest_ms, at);
}

void lag_fetched(lag_t *lag, int32_t partition, int64_t offset, int64_t timestamp_ms)
{
    if (partition < 0 || partition >= LAG_MAX_PARTITIONS || offset < 0 || timestamp_ms < 0)
        return;
    lag_slot_t *slot = &lag->slots[partition];
    if (!slot->ring_offset)
        return;
    slot->ring_offset[offset & (LAG_RING - 1)] = offset;
    slot->ring_ms[offset & (LAG_RING - 1)] = timestamp_ms;
}

void lag_forget(lag_t *lag, int32_t partition)
{
    if (partition < 0 || partition >= LAG_MAX_PARTITIONS)
        return;
    atomic_store(&lag->slots[partition].position, LAG_UNTRACKED);
    atomic_store(&lag->slots[partition].committed, -1);
}
