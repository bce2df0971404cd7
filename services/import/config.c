/*
 * config: profiled-import's environment settings, one declarative table
 * (cfg.h). The Kafka and profile-limit rows are cfg_shared.h's, the api's
 * and the worker's, so a file the importer accepts is what the api would
 * accept under the same settings.
 */
#include <stddef.h>

#include "cfg.h"
#include "cfg_shared.h"
#include "import.h"

#define IMPORT_CFG(field) offsetof(import_config_t, field)

static const cfg_entry_t import_config_table[] = {
    CFG_SHARED_KAFKA(IMPORT_CFG),
    {"PROFILED_LOG_LEVEL", CFG_STRING, IMPORT_CFG(log_level), "info", 0, 0, false,
     "debug, info, warn or error (each rejected line is a warn line)."},
    CFG_SHARED_LIMITS(IMPORT_CFG),
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
