#include "lib_versions.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <msgpack.h>
#include <stdio.h>

#include "log.h"

void lib_versions_log(void)
{
    /* PQlibVersion(): major * 10000 + minor since PostgreSQL 10. */
    int pq = PQlibVersion();
    char pq_text[32];
    snprintf(pq_text, sizeof(pq_text), "%d.%d", pq / 10000, pq % 10000);
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "librdkafka", rd_kafka_version_str());
    log_field_str(&fields, "libpq", pq_text);
    log_field_str(&fields, "libevent", event_get_version());
    log_field_str(&fields, "msgpack_c", msgpack_version());
    log_field_str(&fields, "msgpack_c_headers", MSGPACK_VERSION);
    log_info(&fields, "libraries");
}
