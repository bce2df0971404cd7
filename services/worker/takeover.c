#include "takeover.h"

#include <inttypes.h>
#include <stdio.h>

#include "kafka_conf.h"
#include "log.h"

int takeover_conf(rd_kafka_conf_t *conf, const char *instance_id, int64_t session_timeout_ms, char *errstr,
                  size_t errstr_size)
{
    char session[32], heartbeat[32];
    snprintf(session, sizeof(session), "%" PRId64, session_timeout_ms);
    /* Kafka's rule of thumb: three heartbeats per session, so one lost heartbeat is not a death. */
    snprintf(heartbeat, sizeof(heartbeat), "%" PRId64, session_timeout_ms / 3);
    if (kafka_conf_set(conf, "session.timeout.ms", session, errstr, errstr_size) < 0 ||
        kafka_conf_set(conf, "heartbeat.interval.ms", heartbeat, errstr, errstr_size) < 0)
        return -1;
    if (instance_id && *instance_id &&
        kafka_conf_set(conf, "group.instance.id", instance_id, errstr, errstr_size) < 0)
        return -1;
    return 0;
}

bool takeover_fatal(rd_kafka_t *consumer)
{
    char reason[512];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(consumer, reason, sizeof(reason));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "error", rd_kafka_err2name(err));
    log_field_str(&fields, "reason", reason);
    log_error(&fields, "Kafka consumer fatal error%s: applying nothing more, exiting for a restart",
              err == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID
                  ? " (fenced: another live process uses this PROFILED_WORKER_INSTANCE_ID)"
                  : "");
    return true;
}
