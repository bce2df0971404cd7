#include "kafka_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

int kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                   size_t errstr_size)
{
    char reason[256];
    if (rd_kafka_conf_set(conf, name, value, reason, sizeof(reason)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka property %s: %s", name, reason);
        return -1;
    }
    return 0;
}

/* Properties that carry a durability guarantee: set by profiled, never by the list. */
static const char *const kafka_conf_guarded[] = {
    "enable.idempotence",    "acks",
    "request.required.acks", "partitioner",
    "enable.auto.commit",    "enable.auto.offset.store",
    "isolation.level",       "auto.offset.reset",
};

/* Walks "k=v,k=v": checks each item and, with a conf, sets it. */
static int kafka_conf_walk_list(rd_kafka_conf_t *conf, const char *list, char *errstr, size_t errstr_size)
{
    if (!list || !*list)
        return 0;
    int rc = -1;
    char *copy = xstrdup(list, "the kafka property list");
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *equals = strchr(item, '=');
        if (!equals || equals == item) {
            snprintf(errstr, errstr_size, "PROFILED_KAFKA_PROPERTIES: \"%s\" is not name=value", item);
            goto cleanup;
        }
        *equals = '\0';
        for (size_t i = 0; i < sizeof(kafka_conf_guarded) / sizeof(kafka_conf_guarded[0]); i++) {
            if (strcmp(item, kafka_conf_guarded[i]) == 0) {
                snprintf(errstr, errstr_size,
                         "PROFILED_KAFKA_PROPERTIES: %s is set by profiled for its durability guarantees "
                         "(idempotent acks=all producers, positions committed with the data) and may not be "
                         "overridden",
                         item);
                goto cleanup;
            }
        }
        if (conf && kafka_conf_set(conf, item, equals + 1, errstr, errstr_size) < 0)
            goto cleanup;
    }
    rc = 0;
cleanup:
    free(copy);
    return rc;
}

int kafka_conf_check_list(const char *list, char *errstr, size_t errstr_size)
{
    return kafka_conf_walk_list(NULL, list, errstr, errstr_size);
}

int kafka_conf_set_list(rd_kafka_conf_t *conf, const char *list, char *errstr, size_t errstr_size)
{
    return kafka_conf_walk_list(conf, list, errstr, errstr_size);
}

int kafka_conf_set_idempotent(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
    if (kafka_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "acks", "all", errstr, errstr_size) < 0)
        return -1;
    return 0;
}

int kafka_conf_set_producer_contract(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
    if (kafka_conf_set_idempotent(conf, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, errstr_size) < 0)
        return -1;
    return 0;
}

rd_kafka_conf_t *kafka_conf_new(const char *brokers, const char *extra, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Reconnect backoff: librdkafka doubles 100 ms up to 10 s, so after a broker
     * outage of a few seconds the first produce waited ~5 s for the next attempt
     * (issue 13). A 1 s cap (jittered +-20% by librdkafka) bounds that wait; a
     * refused connect costs the broker nothing. Set before the operator's list,
     * which still wins. */
    if (kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "reconnect.backoff.ms", "50", errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", errstr, errstr_size) < 0 ||
        kafka_conf_set_list(conf, extra, errstr, errstr_size) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int kafka_producer_open(rd_kafka_conf_t *conf, const char *topic, rd_kafka_t **rk, rd_kafka_topic_t **rkt,
                        char *errstr, size_t errstr_size)
{
    char reason[512];
    *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, reason, sizeof(reason));
    if (!*rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "cannot create the Kafka producer: %s", reason);
        return -1;
    }
    /* conf is now owned by *rk */
    *rkt = rd_kafka_topic_new(*rk, topic, NULL);
    if (!*rkt) {
        snprintf(errstr, errstr_size, "PROFILED_KAFKA_TOPIC=%s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    return 0;
}
