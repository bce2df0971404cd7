#include "kafka_log.h"

#include "log.h"

static void kafka_log_line(const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
    /* syslog levels: 0-3 error, 4 warning, 5-6 notice/info, 7 debug */
    log_level_t ours = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
    if (ours < log_level_min)
        return;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "client", rd_kafka_name(rk));
    log_field_str(&fields, "facility", facility);
    log_write(ours, &fields, "librdkafka: %s", message);
}

void kafka_log_install(rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_log_cb(conf, kafka_log_line);
}
