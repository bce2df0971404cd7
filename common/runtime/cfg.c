#include "cfg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

static const char *cfg_type_name(cfg_type_t type)
{
    switch (type) {
    case CFG_STRING:
        return "string";
    case CFG_INT:
        return "integer";
    case CFG_BOOL:
        return "boolean";
    case CFG_DURATION:
        return "duration";
    case CFG_SIZE:
        return "size";
    case CFG_RETIRED:
        return "retired";
    }
    return "?";
}

/* Parses an integer with an optional unit suffix from `units`; the unit
 * scales the number. No unit means a scale of 1. */
typedef struct cfg_unit {
    const char *suffix;
    int64_t scale;
} cfg_unit_t;

static int cfg_parse_scaled(const char *text, const cfg_unit_t *units, size_t unit_count, int64_t *out)
{
    errno = 0;
    char *end = NULL;
    long long number = strtoll(text, &end, 10);
    if (end == text || errno == ERANGE)
        return -1;
    int64_t scale = 1;
    if (*end != '\0') {
        size_t i;
        for (i = 0; i < unit_count; i++)
            if (strcmp(end, units[i].suffix) == 0)
                break;
        if (i == unit_count)
            return -1;
        scale = units[i].scale;
    }
    if (number != 0 && (number > INT64_MAX / scale || number < INT64_MIN / scale))
        return -1;
    *out = (int64_t)number * scale;
    return 0;
}

int cfg_parse_value(const cfg_entry_t *entry, const char *text, void *config, char *errstr,
                    size_t errstr_size)
{
    static const cfg_unit_t duration_units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    static const cfg_unit_t size_units[] = {{"B", 1},           {"KiB", 1024}, {"MiB", 1024 * 1024},
                                            {"GiB", 1 << 30},   {"k", 1024},   {"K", 1024},
                                            {"M", 1024 * 1024}, {"G", 1 << 30}};
    char *field = (char *)config + entry->offset;
    const char *shown = entry->secret ? "(secret)" : text;
    int64_t number = 0;

    switch (entry->type) {
    case CFG_RETIRED:
        snprintf(errstr, errstr_size, "%s: retired, no longer read (%s)", entry->env, entry->help);
        return -1;
    case CFG_STRING: {
        char *copy = strdup(text);
        if (!copy) {
            snprintf(errstr, errstr_size, "%s: out of memory", entry->env);
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case CFG_BOOL: {
        bool value;
        if (!strcasecmp(text, "true") || !strcmp(text, "1") || !strcasecmp(text, "yes") ||
            !strcasecmp(text, "on"))
            value = true;
        else if (!strcasecmp(text, "false") || !strcmp(text, "0") || !strcasecmp(text, "no") ||
                 !strcasecmp(text, "off"))
            value = false;
        else {
            snprintf(errstr, errstr_size, "%s=%s: expected true or false", entry->env, shown);
            return -1;
        }
        *(bool *)field = value;
        return 0;
    }
    case CFG_INT:
        if (cfg_parse_scaled(text, NULL, 0, &number) < 0) {
            snprintf(errstr, errstr_size, "%s=%s: expected an integer", entry->env, shown);
            return -1;
        }
        break;
    case CFG_DURATION:
        if (cfg_parse_scaled(text, duration_units, sizeof(duration_units) / sizeof(duration_units[0]),
                             &number) < 0) {
            snprintf(errstr, errstr_size, "%s=%s: expected a duration such as 250ms, 10s or 2m", entry->env,
                     shown);
            return -1;
        }
        break;
    case CFG_SIZE:
        if (cfg_parse_scaled(text, size_units, sizeof(size_units) / sizeof(size_units[0]), &number) < 0) {
            snprintf(errstr, errstr_size, "%s=%s: expected a size such as 65536, 64KiB or 1MiB", entry->env,
                     shown);
            return -1;
        }
        break;
    }
    if ((entry->min != 0 || entry->max != 0) && (number < entry->min || number > entry->max)) {
        snprintf(errstr, errstr_size, "%s=%s: must be between %" PRId64 " and %" PRId64, entry->env, shown,
                 entry->min, entry->max);
        return -1;
    }
    *(int64_t *)field = number;
    return 0;
}

int cfg_load(const cfg_entry_t *table, size_t count, void *config, char *errstr, size_t errstr_size)
{
    /* Retired variables first, so that their warning is out even when a later value stops the
     * binary. Ignored as before, but no longer silently: the operator meant something by it. */
    for (size_t i = 0; i < count; i++) {
        const cfg_entry_t *entry = &table[i];
        if (entry->type != CFG_RETIRED || !getenv(entry->env))
            continue;
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "variable", entry->env);
        log_field_str(&fields, "replaced_by", entry->help);
        log_warn(&fields, "%s is retired and ignored: %s", entry->env, entry->help);
    }
    for (size_t i = 0; i < count; i++) {
        const cfg_entry_t *entry = &table[i];
        if (entry->type == CFG_RETIRED)
            continue;
        const char *text = getenv(entry->env);
        if (!text)
            text = entry->default_value ? entry->default_value : (entry->type == CFG_STRING ? "" : "0");
        if (cfg_parse_value(entry, text, config, errstr, errstr_size) < 0)
            return -1;
    }
    return 0;
}

void cfg_free(const cfg_entry_t *table, size_t count, void *config)
{
    for (size_t i = 0; i < count; i++) {
        if (table[i].type != CFG_STRING)
            continue;
        char **field = (char **)((char *)config + table[i].offset);
        free(*field);
        *field = NULL;
    }
}

void cfg_print_help(FILE *out, const char *usage, const cfg_entry_t *table, size_t count)
{
    fprintf(out, "%s\n\nConfiguration (environment variables):\n", usage);
    size_t retired = 0;
    for (size_t i = 0; i < count; i++) {
        const cfg_entry_t *entry = &table[i];
        if (entry->type == CFG_RETIRED) {
            retired++;
            continue;
        }
        fprintf(out, "  %s (%s", entry->env, cfg_type_name(entry->type));
        if (entry->secret)
            fprintf(out, ", secret");
        else if (entry->default_value && entry->default_value[0])
            fprintf(out, ", default %s", entry->default_value);
        if (entry->min != 0 || entry->max != 0)
            fprintf(out, ", %" PRId64 "..%" PRId64, entry->min, entry->max);
        fprintf(out, ")\n      %s\n", entry->help);
    }
    if (retired == 0)
        return;
    fprintf(out, "\nRetired (ignored; a warning at start when set):\n");
    for (size_t i = 0; i < count; i++)
        if (table[i].type == CFG_RETIRED)
            fprintf(out, "  %s: %s\n", table[i].env, table[i].help);
}
