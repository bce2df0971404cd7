/*
 * csv: RFC 4180 records and the column -> field mapping of `--csv --map`.
 *
 * A record is split into cells (quoted cells may hold commas, doubled quotes
 * and newlines; a quote inside an unquoted cell is kept as it is); the caller joins physical lines while
 * csv_split answers CSV_NEED_MORE, so a record is numbered by the line it starts on. A mapped record becomes
 * the NDJSON form {"recipient_id": ..., "version": ..., "profile": {...}} and goes through the same line
 * parser as NDJSON, so it gets the same checks and messages.
 *
 * Mapping (`--map field=Column,field:json=Column,...`): `recipient_id` and
 * `version` are the command's; any other field is a top-level profile member.
 * A cell is a JSON string unless the field is marked `:json`, then the cell is
 * JSON text (true, 42, {"a":1}). An empty cell leaves its field out. Without
 * --map every column maps to the field of its own name.
 */
#ifndef PROFILED_IMPORT_CSV_H
#define PROFILED_IMPORT_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "profile_limits.h"

#define CSV_MAX_COLUMNS 1024

typedef enum csv_status {
    CSV_OK = 0,
    CSV_NEED_MORE, /* a quoted cell is still open at the end of the text: append the next line */
    CSV_ERROR,     /* malformed record; message says where */
} csv_status_t;

typedef struct csv_cell {
    size_t offset; /* into the cells buffer */
    size_t len;
} csv_cell_t;

typedef struct csv_record {
    buf_t text; /* unquoted cell contents, back to back */
    csv_cell_t cells[CSV_MAX_COLUMNS];
    size_t count;
} csv_record_t;

/* Splits `text` (one or more physical lines joined by '\n', without the last newline; a trailing CR
 * is dropped) into `record`. */
csv_status_t csv_split(const uint8_t *text, size_t len, csv_record_t *record, char *message,
                       size_t message_size);

typedef enum csv_kind { CSV_FIELD_STRING = 0, CSV_FIELD_JSON } csv_kind_t;

typedef struct csv_map_entry {
    char *field;
    char *column;
    csv_kind_t kind;
    size_t index; /* column index, from the header */
} csv_map_entry_t;

typedef struct csv_map {
    csv_map_entry_t *entries;
    size_t count;
    bool from_header; /* no --map: one entry per header column */
    int recipient;    /* index in entries of recipient_id, -1 when none */
    int version;      /* index in entries of version, -1 when none */
} csv_map_t;

/* Parses a --map spec (NULL: map every column by its name at csv_map_header). 0 or -1 with message. */
int csv_map_parse(csv_map_t *map, const char *spec, char *message, size_t message_size)
    __attribute__((warn_unused_result));

/* Resolves the columns from the header record. 0 or -1 with message (a missing column, no recipient_id). */
int csv_map_header(csv_map_t *map, const csv_record_t *header, char *message, size_t message_size)
    __attribute__((warn_unused_result));

/* Appends the NDJSON form of `record` to `json`. 0, or -1 with message (bad UTF-8, a non-integer version,
 * a `:json` cell that is not one JSON value, a record with a different number of cells than the header).
 * `scratch` is working space. */
int csv_map_record(const csv_map_t *map, const csv_record_t *record, size_t header_count,
                   const limits_t *limits, buf_t *scratch, buf_t *json, char *message, size_t message_size)
    __attribute__((warn_unused_result));

void csv_map_free(csv_map_t *map);
void csv_record_free(csv_record_t *record);

#endif
