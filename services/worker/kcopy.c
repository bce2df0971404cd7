#include "kcopy.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kafka_conf.h"
#include "kafka_log.h"
#include "lag.h"
#include "log.h"
#include "xalloc.h"

#define KCOPY_CALL_TIMEOUT_MS 3000 /* one transaction step; the broker away costs this per round */

struct kcopy {
    const kcopy_config_t *config;
    char transactional_id[512];
    metrics_counter_t *rounds;
    metrics_counter_t *failures;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    bool stopping;
    int64_t final_ms;
    int64_t owned[LAG_MAX_PARTITIONS]; /* next offset PostgreSQL holds, -1: not ours or unknown */
    /* copier thread only */
    rd_kafka_t *producer;
    bool initialised;
    bool failing; /* the last round failed: its first success is logged */
};

kcopy_t *kcopy_new(const kcopy_config_t *config, metrics_t *metrics, char *errstr, size_t errstr_size)
{
    kcopy_t *kc = xcalloc(1, sizeof(*kc), "the offset copier");
    kc->config = config;
    int n;
    if (config->instance_id && *config->instance_id)
        n = snprintf(kc->transactional_id, sizeof(kc->transactional_id), "profiled-worker-offsets/%s/%s",
                     config->group, config->instance_id);
    else {
        char host[256] = "unknown";
        (void)gethostname(host, sizeof(host) - 1);
        n = snprintf(kc->transactional_id, sizeof(kc->transactional_id), "profiled-worker-offsets/%s/%s-%ld",
                     config->group, host, (long)getpid());
    }
    if (n < 0 || (size_t)n >= sizeof(kc->transactional_id)) {
        snprintf(errstr, errstr_size, "offset copy: group and instance id too long for a transactional.id");
        free(kc);
        return NULL;
    }
    kc->rounds =
        metrics_counter(metrics, "profiled_worker_offset_copies_total",
                        "Rounds that copied PostgreSQL's positions to Kafka's committed offsets", NULL);
    kc->failures = metrics_counter(metrics, "profiled_worker_offset_copy_failures_total",
                                   "Rounds of the offset copy that failed (retried next round)", NULL);
    pthread_mutex_init(&kc->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&kc->wake, &attr);
    pthread_condattr_destroy(&attr);
    for (int i = 0; i < LAG_MAX_PARTITIONS; i++)
        kc->owned[i] = -1;
    return kc;
}

static rd_kafka_t *kcopy_producer_new(kcopy_t *kc, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf =
        kafka_conf_new(kc->config->brokers, kc->config->kafka_properties, errstr, errstr_size);
    if (!conf)
        return NULL;
    /* A copier that died mid-transaction holds the group's offsets "unstable" for
     * lag tools until the broker aborts it: keep that short. */
    if (kafka_conf_set(conf, "transactional.id", kc->transactional_id, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "transaction.timeout.ms", "10000", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "client.id", "profiled-worker-offsets", errstr, errstr_size) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    kafka_log_install(conf);
    char reason[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, reason, sizeof(reason));
    if (!rk) {
        snprintf(errstr, errstr_size, "offset copy producer: %s", reason);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk;
}

static void kcopy_drop_producer(kcopy_t *kc)
{
    if (kc->producer)
        rd_kafka_destroy(kc->producer); /* a new one's InitProducerId aborts what it left open */
    kc->producer = NULL;
    kc->initialised = false;
}

/* After a failed step: abort the transaction, or drop the producer when that is
 * not possible (fatal error, abort failing); the next round starts again. */
static void kcopy_failed(kcopy_t *kc, const char *step, rd_kafka_error_t *error, int64_t timeout_ms)
{
    metrics_counter_add(kc->failures, 1);
    if (!kc->failing) {
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "step", step);
        log_field_str(&fields, "error", rd_kafka_error_string(error));
        log_warn(&fields, "offset copy to Kafka failed; retrying every round (positions stay in PostgreSQL)");
    }
    kc->failing = true;
    bool drop = rd_kafka_error_is_fatal(error) || !kc->initialised;
    if (!drop && rd_kafka_error_txn_requires_abort(error)) {
        rd_kafka_error_t *abort_error = rd_kafka_abort_transaction(kc->producer, (int)timeout_ms);
        if (abort_error) {
            drop = true;
            rd_kafka_error_destroy(abort_error);
        }
    } else if (!drop)
        drop = true; /* retriable mid-transaction: simplest to start over on a new producer */
    rd_kafka_error_destroy(error);
    if (drop)
        kcopy_drop_producer(kc);
}

/* One transaction with the offsets of every partition this worker owns. */
static void kcopy_round(kcopy_t *kc, int64_t timeout_ms)
{
    rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(16);
    pthread_mutex_lock(&kc->lock);
    for (int i = 0; i < LAG_MAX_PARTITIONS; i++)
        if (kc->owned[i] >= 0)
            rd_kafka_topic_partition_list_add(offsets, kc->config->topic, i)->offset = kc->owned[i];
    pthread_mutex_unlock(&kc->lock);
    if (offsets->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(offsets);
        return;
    }
    char errstr[1024];
    if (!kc->producer && !(kc->producer = kcopy_producer_new(kc, errstr, sizeof(errstr)))) {
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "error", errstr);
        log_warn(&fields, "offset copy producer not created");
        rd_kafka_topic_partition_list_destroy(offsets);
        return;
    }
    rd_kafka_error_t *error = NULL;
    const char *step = "init";
    if (!kc->initialised) {
        error = rd_kafka_init_transactions(kc->producer, (int)timeout_ms);
        if (error) {
            kcopy_failed(kc, step, error, timeout_ms);
            rd_kafka_topic_partition_list_destroy(offsets);
            return;
        }
        kc->initialised = true;
    }
    /* No member id, generation or instance id: the coordinator takes it from a
     * non-member, and it can never fence the consumer (kcopy.h). */
    rd_kafka_consumer_group_metadata_t *group = rd_kafka_consumer_group_metadata_new(kc->config->group);
    step = "begin";
    error = rd_kafka_begin_transaction(kc->producer);
    if (!error) {
        step = "send offsets";
        error = rd_kafka_send_offsets_to_transaction(kc->producer, offsets, group, (int)timeout_ms);
    }
    if (!error) {
        step = "commit";
        error = rd_kafka_commit_transaction(kc->producer, (int)timeout_ms);
    }
    rd_kafka_consumer_group_metadata_destroy(group);
    if (error)
        kcopy_failed(kc, step, error, timeout_ms);
    else {
        metrics_counter_add(kc->rounds, 1);
        if (kc->failing) {
            log_fields_t fields = LOG_FIELDS_INIT;
            log_field_int(&fields, "partitions", offsets->cnt);
            log_info(&fields, "offset copy to Kafka works again");
        }
        kc->failing = false;
    }
    rd_kafka_topic_partition_list_destroy(offsets);
}

static void *kcopy_thread(void *arg)
{
    kcopy_t *kc = arg;
    pthread_mutex_lock(&kc->lock);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += kc->config->interval_ms / 1000;
        until.tv_nsec += (kc->config->interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!kc->stopping && pthread_cond_timedwait(&kc->wake, &kc->lock, &until) == 0) {
        }
        bool stopping = kc->stopping;
        int64_t final_ms = kc->final_ms;
        pthread_mutex_unlock(&kc->lock);
        if (stopping) {
            /* Not when the last round failed: the broker is away, shutdown would only wait. */
            if (final_ms > 0 && !kc->failing)
                kcopy_round(kc, final_ms);
            break;
        }
        kcopy_round(kc, KCOPY_CALL_TIMEOUT_MS);
        pthread_mutex_lock(&kc->lock);
    }
    kcopy_drop_producer(kc);
    return NULL;
}

int kcopy_start(kcopy_t *kc, char *errstr, size_t errstr_size)
{
    int rc = pthread_create(&kc->thread, NULL, kcopy_thread, kc);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "offset copy thread: error %d", rc);
        return -1;
    }
    kc->running = true;
    return 0;
}

void kcopy_set(kcopy_t *kc, int32_t partition, int64_t next_offset)
{
    if (partition < 0 || partition >= LAG_MAX_PARTITIONS)
        return;
    pthread_mutex_lock(&kc->lock);
    kc->owned[partition] = next_offset;
    pthread_mutex_unlock(&kc->lock);
}

void kcopy_forget(kcopy_t *kc, int32_t partition)
{
    kcopy_set(kc, partition, -1);
}

void kcopy_stop(kcopy_t *kc, int64_t final_ms)
{
    if (!kc || !kc->running)
        return;
    pthread_mutex_lock(&kc->lock);
    kc->stopping = true;
    kc->final_ms = final_ms;
    pthread_cond_signal(&kc->wake);
    pthread_mutex_unlock(&kc->lock);
    pthread_join(kc->thread, NULL);
    kc->running = false;
}

void kcopy_destroy(kcopy_t *kc)
{
    if (!kc)
        return;
    kcopy_stop(kc, 0);
    kcopy_drop_producer(kc);
    pthread_cond_destroy(&kc->wake);
    pthread_mutex_destroy(&kc->lock);
    free(kc);
}
