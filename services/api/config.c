/*
 * config: profiled-api's settings, one declarative table (cfg.h). The rows
 * both binaries share come from cfg_shared.h; --help prints this table.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>

#include "api.h"
#include "cfg.h"
#include "cfg_shared.h"
#include "kafka_conf.h"

#define API_CFG(field) offsetof(api_config_t, field)

static const cfg_entry_t api_config_table[] = {
    {"PROFILED_HTTP_ADDR", CFG_STRING, API_CFG(http_addr), "127.0.0.1", 0, 0, false,
     "Address to listen on (IPv4 or IPv6 literal)."},
    {"PROFILED_HTTP_PORT", CFG_INT, API_CFG(http_port), "8080", 1, 65535, false, "TCP port to listen on."},
    {"PROFILED_HTTP_THREADS", CFG_INT, API_CFG(http_threads), "2", 1, 64, false,
     "Event-loop threads; each has its own listener (SO_REUSEPORT), Kafka producer and PostgreSQL "
     "connection."},
    {"PROFILED_HTTP_HEADER_TIMEOUT", CFG_DURATION, API_CFG(http_header_timeout_ms), "10s", 100, 600000, false,
     "Time from the first byte of a request to the end of its headers; slower is answered 408 and closed "
     "(slowloris)."},
    {"PROFILED_HTTP_BODY_TIMEOUT", CFG_DURATION, API_CFG(http_body_timeout_ms), "10s", 100, 600000, false,
     "Longest wait for the next byte of a request body; longer is answered 408 and closed."},
    {"PROFILED_HTTP_IDLE_TIMEOUT", CFG_DURATION, API_CFG(http_idle_timeout_ms), "60s", 100, 3600000, false,
     "A keep-alive connection with no request under way for this long is closed; so is one whose peer "
     "does not read its answer for this long."},
    CFG_RETIRED_ROW("PROFILED_HTTP_READ_TIMEOUT",
                    "evhttp's single inactivity timeout, replaced by PROFILED_HTTP_HEADER_TIMEOUT, "
                    "PROFILED_HTTP_BODY_TIMEOUT and PROFILED_HTTP_IDLE_TIMEOUT"),
    {"PROFILED_HTTP_MAX_CONNECTIONS", CFG_INT, API_CFG(http_max_connections), "10000", 1, 1000000, false,
     "Connections open at once, idle or half-sent (split evenly over the threads); a connection beyond "
     "it is answered 503 at once and closed."},
    {"PROFILED_HTTP_MAX_HEADER_BYTES", CFG_SIZE, API_CFG(http_max_header_bytes), "16KiB", 1024, 1048576,
     false, "Largest request line plus headers (431 above it)."},
    {"PROFILED_REQUEST_DEADLINE", CFG_DURATION, API_CFG(request_deadline_ms), "10s", 100, 300000, false,
     "A PUT not acknowledged by Kafka, or a GET not answered by PostgreSQL, within this time gets 503. Also "
     "the producer's message.timeout.ms."},
    {"PROFILED_API_KEYS", CFG_STRING, API_CFG(api_keys), NULL, 0, 0, true,
     "Comma-separated API keys accepted as `Authorization: Bearer <key>`."},
    {"PROFILED_API_KEYS_FILE", CFG_STRING, API_CFG(api_keys_file), NULL, 0, 0, false,
     "File with one API key a line ('#' comments); joins PROFILED_API_KEYS. At least one key is required."},
    CFG_SHARED_SHUTDOWN_DEADLINE(API_CFG),
    CFG_SHARED_KAFKA(API_CFG),
    {"PROFILED_KAFKA_LINGER", CFG_DURATION, API_CFG(kafka_linger_ms), "2ms", 0, 1000, false,
     "Producer linger.ms: how long a message may wait for a batch."},
    {"PROFILED_KAFKA_QUEUE_MAX", CFG_INT, API_CFG(kafka_queue_max), "100000", 1, 10000000, false,
     "Producer queue.buffering.max.messages per thread; a full queue answers 503 at once."},
    CFG_SHARED_PG_DSN(API_CFG),
    {"PROFILED_PG_CONNECT_TIMEOUT", CFG_DURATION, API_CFG(pg_connect_timeout_ms), "5s", 100, 600000, false,
     "A PostgreSQL connection attempt taking longer fails (and is retried with backoff)."},
    {"PROFILED_PG_CONNECTIONS_PER_LOOP", CFG_INT, API_CFG(pg_connections_per_loop), "1", 1, 16, false,
     "PostgreSQL connections of each event-loop thread, each pipelining many GETs; a GET goes to the least "
     "busy one. Each LISTENs for the worker's positions and reconnects on its own."},
    {"PROFILED_PUT_ACK", CFG_STRING, API_CFG(put_ack), "applied", 0, 0, false,
     "When a PUT is answered 200: applied (once Kafka acknowledged it and the worker applied it, so a "
     "GET on any replica sees it; see PROFILED_APPLY_WAIT) or kafka (once Kafka acknowledged it). A "
     "request overrides it with `Prefer: profiled-ack=kafka` or `=applied`."},
    {"PROFILED_APPLY_WAIT", CFG_DURATION, API_CFG(apply_wait_ms), "2s", 1, 60000, false,
     "In applied mode, the longest a PUT acknowledged by Kafka waits for the worker; then it is answered "
     "200 with `X-Profiled-Visibility: pending` (never 503: the command is durable and will apply)."},
    CFG_SHARED_LOG_LEVEL(API_CFG),
    CFG_SHARED_LIMITS(API_CFG),
};

int api_config_load(api_config_t *config, char *errstr, size_t errstr_size)
{
    return cfg_load(api_config_table, CFG_ENTRY_COUNT(api_config_table), config, errstr, errstr_size);
}

void api_config_help(FILE *out)
{
    cfg_print_help(out,
                   "usage: profiled-api [--help]\n\n"
                   "The profiled HTTP front end: PUT /profiles/{id} publishes a replace command to Kafka and "
                   "answers 200 once the broker acknowledged it; GET /profiles/{id} reads PostgreSQL.",
                   api_config_table, CFG_ENTRY_COUNT(api_config_table));
}

void api_config_free(api_config_t *config)
{
    cfg_free(api_config_table, CFG_ENTRY_COUNT(api_config_table), config);
}

rd_kafka_conf_t *api_kafka_conf(const api_config_t *config, const char *client_id, char *errstr,
                                size_t errstr_size)
{
    char value[32], reason[512];
    rd_kafka_conf_t *conf =
        kafka_conf_new(config->kafka_brokers, config->kafka_properties, reason, sizeof(reason));
    if (!conf) {
        snprintf(errstr, errstr_size, "PROFILED_KAFKA_BROKERS / PROFILED_KAFKA_PROPERTIES: %s", reason);
        return NULL;
    }
    if (kafka_conf_set(conf, "client.id", client_id, errstr, errstr_size) < 0)
        goto error;
    /* The durability guarantee and the partitioning contract: not overridable by
     * PROFILED_KAFKA_PROPERTIES. */
    if (kafka_conf_set_producer_contract(conf, errstr, errstr_size) < 0)
        goto error;
    snprintf(value, sizeof(value), "%" PRId64, config->kafka_linger_ms);
    if (kafka_conf_set(conf, "linger.ms", value, errstr, errstr_size) < 0)
        goto error;
    snprintf(value, sizeof(value), "%" PRId64, config->kafka_queue_max);
    if (kafka_conf_set(conf, "queue.buffering.max.messages", value, errstr, errstr_size) < 0)
        goto error;
    /* A command nobody waits for any more should not be written minutes later, after newer ones. */
    snprintf(value, sizeof(value), "%" PRId64, config->request_deadline_ms);
    if (kafka_conf_set(conf, "message.timeout.ms", value, errstr, errstr_size) < 0)
        goto error;
    /* Statistics tell when the broker is up again, and PUTs answer 503 at once until then: at
     * 500 ms the first 200 after a broker returns waits at most half a second for them. */
    if (kafka_conf_set(conf, "statistics.interval.ms", "500", errstr, errstr_size) < 0)
        goto error;
    return conf;
error:
    rd_kafka_conf_destroy(conf);
    return NULL;
}
