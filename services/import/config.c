/*
 * config: profiled-import's environment settings, one declarative table
 * (cfg.h). The names, defaults and bounds are the api's, so a file the
 * importer accepts is what the api would accept under the same settings.
 */
#include <stddef.h>

#include "cfg.h"
#include "import.h"

#define IMPORT_CFG(field) offsetof(import_config_t, field)

static const cfg_entry_t import_config_table[] = {
    {"PROFILED_KAFKA_BROKERS", CFG_STRING, IMPORT_CFG(kafka_brokers), "127.0.0.1:9092", 0, 0, false,
     "Kafka bootstrap servers."},
    {"PROFILED_KAFKA_TOPIC", CFG_STRING, IMPORT_CFG(kafka_topic), "profiles.commands", 0, 0, false,
     "Topic of the replace commands."},
    {"PROFILED_KAFKA_PROPERTIES", CFG_STRING, IMPORT_CFG(kafka_properties), NULL, 0, 0, true,
     "Extra librdkafka producer properties, k=v,k=v (e.g. TLS, SASL). enable.idempotence, acks and "
     "partitioner (murmur2_random) cannot be overridden."},
    {"PROFILED_LOG_LEVEL", CFG_STRING, IMPORT_CFG(log_level), "info", 0, 0, false,
     "debug, info, warn or error (each rejected line is a warn line)."},
    {"PROFILED_MAX_BODY_BYTES", CFG_SIZE, IMPORT_CFG(max_body_bytes), "256KiB", 1024, 64 << 20, false,
     "Longest input line (the api's largest PUT body)."},
    {"PROFILED_MAX_DEPTH", CFG_INT, IMPORT_CFG(max_depth), "32", 1, 1000, false,
     "Deepest nesting of objects and arrays inside a profile."},
    {"PROFILED_MAX_KEY_BYTES", CFG_SIZE, IMPORT_CFG(max_key_bytes), "256", 1, 1 << 20, false,
     "Longest object key in a profile, in bytes."},
    {"PROFILED_MAX_STRING_BYTES", CFG_SIZE, IMPORT_CFG(max_string_bytes), "64KiB", 1, 64 << 20, false,
     "Longest string in a profile, in bytes."},
    {"PROFILED_MAX_KEYS", CFG_INT, IMPORT_CFG(max_keys), "1000", 1, 1000000, false,
     "Most entries of one object, and elements of one array, in a profile."},
};

int import_config_load(import_config_t *config, char *errstr, size_t errstr_size)
{
    return cfg_load(import_config_table, CFG_ENTRY_COUNT(import_config_table), config, errstr, errstr_size);
}

void import_config_help(FILE *out, const char *usage)
{
    cfg_print_help(out, usage, import_config_table, CFG_ENTRY_COUNT(import_config_table));
}

void import_config_free(import_config_t *config)
{
    cfg_free(import_config_table, CFG_ENTRY_COUNT(import_config_table), config);
}
