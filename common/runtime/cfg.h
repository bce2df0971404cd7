/*
 * cfg: declarative configuration from PROFILED_* environment variables.
 *
 * Each binary describes its settings in one table (env name, type, bounds,
 * default, help) whose rows point into one config struct by offset. cfg_load
 * fills the struct once at start and validates every value; a bad value stops
 * the binary with a message naming the variable. After that the struct is
 * read-only. `--help` prints the same table, so the list cannot drift.
 *
 * A variable the binary no longer reads stays in its table as a CFG_RETIRED
 * row: set, it is still ignored, but cfg_load logs one warning at start naming
 * what replaced it, so a deployment that still sets it hears of it once rather
 * than never.
 */
#ifndef PROFILED_CFG_H
#define PROFILED_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cfg_type {
    CFG_STRING,   /* char * (owned by the struct; cfg_free releases it) */
    CFG_INT,      /* int64_t within [min, max] */
    CFG_BOOL,     /* bool: true/false, 1/0, yes/no, on/off */
    CFG_DURATION, /* int64_t milliseconds; accepts "250ms", "10s", "2m" or a bare number of ms */
    CFG_SIZE,     /* int64_t bytes; accepts "512", "64KiB", "1MiB", "1GiB" */
    CFG_RETIRED,  /* no field: no longer read; `help` names what replaced it (see CFG_RETIRED_ROW) */
} cfg_type_t;

typedef struct cfg_entry {
    const char *env; /* "PROFILED_HTTP_PORT" */
    cfg_type_t type;
    size_t offset;             /* offsetof(config struct, field) */
    const char *default_value; /* parsed like the environment value; NULL = empty string / 0 */
    int64_t min, max;          /* bounds for INT, DURATION, SIZE (ignored when min == max == 0) */
    bool secret;               /* never printed (API keys, passwords) */
    const char *help;
} cfg_entry_t;

#define CFG_ENTRY_COUNT(table) (sizeof(table) / sizeof((table)[0]))

/* A retired variable's row; `replacement` says what to set instead, e.g.
 * "use PROFILED_HTTP_HEADER_TIMEOUT, ...". */
#define CFG_RETIRED_ROW(name, replacement)                                                                   \
    {                                                                                                        \
        name, CFG_RETIRED, 0, NULL, 0, 0, false, replacement                                                 \
    }

/* Fills `config` from the environment (or defaults). Returns 0, or -1 with
 * errstr naming the variable, its value (unless secret) and the rule. A
 * retired variable that is set gets one warning log line (variable, replaced_by)
 * and is otherwise ignored. */
int cfg_load(const cfg_entry_t *table, size_t count, void *config, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* Frees the strings cfg_load allocated in `config`. */
void cfg_free(const cfg_entry_t *table, size_t count, void *config);

/* Prints usage: the summary, then one block per variable (name, type, default, bounds, help), then
 * the retired variables with their replacements. */
void cfg_print_help(FILE *out, const char *usage, const cfg_entry_t *table, size_t count);

/* Parses one value of `type` as cfg_load would; exposed for tests. */
int cfg_parse_value(const cfg_entry_t *entry, const char *text, void *config, char *errstr,
                    size_t errstr_size) __attribute__((warn_unused_result));

#endif
