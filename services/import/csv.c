#include "csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_transcode.h"
#include "json_write.h"
#include "utf8.h"
#include "xalloc.h"

csv_status_t csv_split(const uint8_t *text, size_t len, csv_record_t *record, char *message,
                       size_t message_size)
{
    static const uint8_t nothing[1];
    buf_reset(&record->text);
    record->count = 0;
    if (!text) /* an empty buffer has no data yet: no pointer arithmetic on NULL */
        text = nothing;
    if (len > 0 && text[len - 1] == '\r')
        len--;
    size_t i = 0;
    for (;;) {
        if (record->count == CSV_MAX_COLUMNS) {
            snprintf(message, message_size, "more than %d cells", CSV_MAX_COLUMNS);
            return CSV_ERROR;
        }
        csv_cell_t *cell = &record->cells[record->count++];
        cell->offset = record->text.len;
        if (i < len && text[i] == '"') {
            /* Quoted: runs to a quote not followed by another quote. */
            size_t cell_start = i++;
            for (;;) {
                if (i >= len)
                    return CSV_NEED_MORE;
                const uint8_t *q = memchr(text + i, '"', len - i);
                if (!q)
                    return CSV_NEED_MORE;
                size_t upto = (size_t)(q - text);
                buf_append(&record->text, text + i, upto - i);
                i = upto + 1;
                if (i < len && text[i] == '"') {
                    buf_append_byte(&record->text, '"');
                    i++;
                    continue;
                }
                break;
            }
            if (i < len && text[i] != ',') {
                snprintf(
                    message, message_size,
                    "cell %zu: unexpected character after the closing quote at byte %zu (a quote inside a "
                    "quoted cell is written \"\")",
                    record->count, i + 1);
                return CSV_ERROR;
            }
            (void)cell_start;
        } else {
            size_t from = i;
            /* A quote inside an unquoted cell is kept as it is (as Python's csv reads it). */
            const uint8_t *comma = i < len ? memchr(text + i, ',', len - i) : NULL;
            i = comma ? (size_t)(comma - text) : len;
            buf_append(&record->text, text + from, i - from);
        }
        cell->len = record->text.len - cell->offset;
        if (i >= len)
            return CSV_OK;
        i++; /* the comma */
    }
}

static char *csv_strndup(const char *s, size_t n)
{
    char *copy = xmalloc(n + 1, "a CSV field");
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

static int csv_map_add(csv_map_t *map, const char *field, size_t field_len, const char *column,
                       size_t column_len, char *message, size_t message_size)
{
    csv_kind_t kind = CSV_FIELD_STRING;
    const char *colon = memchr(field, ':', field_len);
    if (colon) {
        size_t suffix = field_len - (size_t)(colon + 1 - field);
        if (suffix == 4 && memcmp(colon + 1, "json", 4) == 0) {
            kind = CSV_FIELD_JSON;
        } else if (!(suffix == 6 && memcmp(colon + 1, "string", 6) == 0)) {
            snprintf(message, message_size, "--map: \"%.*s\": the type after ':' must be json or string",
                     (int)field_len, field);
            return -1;
        }
        field_len = (size_t)(colon - field);
    }
    if (field_len == 0 || column_len == 0) {
        snprintf(message, message_size, "--map: an entry must read field=Column");
        return -1;
    }
    for (size_t i = 0; i < map->count; i++) {
        if (strlen(map->entries[i].field) == field_len &&
            memcmp(map->entries[i].field, field, field_len) == 0) {
            snprintf(message, message_size, "--map: field %.*s is mapped twice", (int)field_len, field);
            return -1;
        }
    }
    csv_map_entry_t *grown = xrealloc(map->entries, (map->count + 1) * sizeof(*grown), "the CSV column map");
    map->entries = grown;
    csv_map_entry_t *entry = &map->entries[map->count];
    entry->field = csv_strndup(field, field_len);
    entry->column = csv_strndup(column, column_len);
    entry->kind = kind;
    entry->index = 0;
    bool is_recipient = strcmp(entry->field, "recipient_id") == 0;
    bool is_version = strcmp(entry->field, "version") == 0;
    if ((is_recipient || is_version) && kind == CSV_FIELD_JSON) {
        snprintf(message, message_size, "--map: %s takes no type", entry->field);
        map->count++;
        return -1;
    }
    if (is_recipient)
        map->recipient = (int)map->count;
    if (is_version)
        map->version = (int)map->count;
    map->count++;
    return 0;
}

int csv_map_parse(csv_map_t *map, const char *spec, char *message, size_t message_size)
{
    memset(map, 0, sizeof(*map));
    map->recipient = map->version = -1;
    if (!spec) {
        map->from_header = true;
        return 0;
    }
    const char *p = spec;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *equals = memchr(p, '=', n);
        if (!equals) {
            snprintf(message, message_size, "--map: \"%.*s\" is not field=Column", (int)n, p);
            return -1;
        }
        if (csv_map_add(map, p, (size_t)(equals - p), equals + 1, n - (size_t)(equals + 1 - p), message,
                        message_size) < 0)
            return -1;
        p += n;
        if (*p == ',')
            p++;
    }
    if (map->count == 0) {
        snprintf(message, message_size, "--map is empty");
        return -1;
    }
    return 0;
}

int csv_map_header(csv_map_t *map, const csv_record_t *header, char *message, size_t message_size)
{
    const char *text = (const char *)header->text.data;
    if (map->from_header) {
        for (size_t c = 0; c < header->count; c++) {
            const char *name = text + header->cells[c].offset;
            size_t len = header->cells[c].len;
            if (csv_map_add(map, name, len, name, len, message, message_size) < 0)
                return -1;
        }
    }
    for (size_t i = 0; i < map->count; i++) {
        csv_map_entry_t *entry = &map->entries[i];
        size_t want = strlen(entry->column);
        bool found = false;
        for (size_t c = 0; c < header->count && !found; c++) {
            if (header->cells[c].len == want &&
                memcmp(text + header->cells[c].offset, entry->column, want) == 0) {
                entry->index = c;
                found = true;
            }
        }
        if (!found) {
            snprintf(message, message_size, "the header has no column \"%s\" (mapped to %s)", entry->column,
                     entry->field);
            return -1;
        }
        if (!utf8_valid((const uint8_t *)entry->field, strlen(entry->field), NULL)) {
            snprintf(message, message_size, "a field name is not valid UTF-8");
            return -1;
        }
    }
    if (map->recipient < 0) {
        snprintf(message, message_size, "no column maps to recipient_id (--map recipient_id=Column)");
        return -1;
    }
    return 0;
}

int csv_map_record(const csv_map_t *map, const csv_record_t *record, size_t header_count,
                   const limits_t *limits, buf_t *scratch, buf_t *json, char *message, size_t message_size)
{
    if (record->count != header_count) {
        snprintf(message, message_size, "the record has %zu cells, the header %zu", record->count,
                 header_count);
        return -1;
    }
    const uint8_t *text = record->text.data;
    for (size_t i = 0; i < map->count; i++) {
        const csv_cell_t *cell = &record->cells[map->entries[i].index];
        bool has_nul = false;
        if (!utf8_valid(text + cell->offset, cell->len, &has_nul) || has_nul) {
            snprintf(message, message_size, "column %s: not valid UTF-8 text", map->entries[i].column);
            return -1;
        }
    }
    const csv_cell_t *rid = &record->cells[map->entries[map->recipient].index];
    buf_append_str(json, "{\"recipient_id\":");
    json_write_string(json, (const char *)text + rid->offset, rid->len);
    if (map->version >= 0) {
        const csv_cell_t *v = &record->cells[map->entries[map->version].index];
        if (v->len > 0) {
            for (size_t k = 0; k < v->len; k++) {
                if (text[v->offset + k] < '0' || text[v->offset + k] > '9') {
                    snprintf(message, message_size,
                             "version (column %s) must be an integer from 0 to "
                             "18446744073709551615",
                             map->entries[map->version].column);
                    return -1;
                }
            }
            /* JSON has no leading zeros: "007" is 7. */
            size_t skip = 0;
            while (skip + 1 < v->len && text[v->offset + skip] == '0')
                skip++;
            buf_append_str(json, ",\"version\":");
            buf_append(json, text + v->offset + skip, v->len - skip);
        }
    }
    buf_append_str(json, ",\"profile\":{");
    bool first = true;
    for (size_t i = 0; i < map->count; i++) {
        const csv_map_entry_t *entry = &map->entries[i];
        if ((int)i == map->recipient || (int)i == map->version)
            continue;
        const csv_cell_t *cell = &record->cells[entry->index];
        if (cell->len == 0)
            continue;
        if (!first)
            buf_append_byte(json, ',');
        first = false;
        json_write_string(json, entry->field, strlen(entry->field));
        buf_append_byte(json, ':');
        if (entry->kind == CSV_FIELD_JSON) {
            /* One whole JSON value, checked alone: a cell such as `1,"recipient_id":"x"` must not
             * smuggle members into the record. */
            transcode_error_t terror;
            buf_reset(scratch);
            if (transcode_value(text + cell->offset, cell->len, limits, scratch, &terror) < 0) {
                snprintf(message, message_size, "column %s (field %s:json): %s", entry->column, entry->field,
                         terror.message);
                return -1;
            }
            buf_append(json, text + cell->offset, cell->len);
        } else
            json_write_string(json, (const char *)text + cell->offset, cell->len);
    }
    buf_append_str(json, "}}");
    return 0;
}

void csv_map_free(csv_map_t *map)
{
    for (size_t i = 0; i < map->count; i++) {
        free(map->entries[i].field);
        free(map->entries[i].column);
    }
    free(map->entries);
    memset(map, 0, sizeof(*map));
}

void csv_record_free(csv_record_t *record)
{
    buf_free(&record->text);
}
