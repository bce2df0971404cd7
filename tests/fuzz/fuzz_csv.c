/*
 * fuzz_csv: the input is CSV text, as profiled-import --csv reads it (physical
 * lines joined while a quoted cell is open), under the fixed mapping
 * recipient_id=0,version=1,a=2,b:json=3.
 *
 * Invariants, on every input:
 * - csv_split and csv_map_record never crash, leak or read past the input;
 * - a record that maps gives text that the line parser (the api's transcoder)
 *   accepts as JSON under generous limits, whose recipient_id is exactly the
 *   first cell and whose profile "a" is the third cell: no cell, quoted or
 *   :json, can change the record's shape or its recipient;
 * - a failure always comes with a non-empty message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "json_transcode.h"

static void fuzz_record(const csv_map_t *map, csv_record_t *record, const limits_t *limits, buf_t *json,
                        buf_t *scratch, buf_t *profile)
{
    char message[256] = "";
    buf_reset(json);
    if (csv_map_record(map, record, 4, limits, scratch, json, message, sizeof(message)) < 0) {
        if (!message[0])
            abort();
        return;
    }
    transcode_envelope_t envelope;
    transcode_error_t error;
    buf_reset(profile);
    if (transcode_profile_line(json->data, json->len, limits, profile, &envelope, &error) < 0) {
        /* Only a schema check of a documented field may refuse it (a :json or string cell mistyped). */
        if (error.status != TRANSCODE_ERR_SCHEMA) {
            fprintf(stderr, "mapped record is not JSON: %s\n%.*s\n", error.message, (int)json->len,
                    (const char *)json->data);
            abort();
        }
        return;
    }
    const csv_cell_t *rid = &record->cells[0];
    if (envelope.recipient_id_kind != TRANSCODE_FIELD_STRING || envelope.recipient_id_len != rid->len ||
        memcmp(envelope.recipient_id, record->text.data + rid->offset,
               rid->len < sizeof(envelope.recipient_id) ? rid->len : sizeof(envelope.recipient_id)) != 0) {
        fprintf(stderr, "the recipient id is not the first cell\n");
        abort();
    }
}

/* libFuzzer's entry point (declared here: no header of libFuzzer's declares it). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static csv_record_t record;
    char message[256];
    csv_map_t map;
    limits_t limits = {.max_body_bytes = 1 << 20,
                       .max_depth = 64,
                       .max_key_bytes = 1 << 16,
                       .max_string_bytes = 1 << 20,
                       .max_keys = 100000};
    buf_t pending = {0}, json = {0}, scratch = {0}, profile = {0};
    if (csv_map_parse(&map, "recipient_id=0,version=1,a=2,b:json=3", message, sizeof(message)) < 0)
        abort();
    if (csv_split((const uint8_t *)"0,1,2,3", 7, &record, message, sizeof(message)) != CSV_OK ||
        csv_map_header(&map, &record, message, sizeof(message)) < 0)
        abort();
    size_t start = 0;
    while (start <= size) {
        const uint8_t *nl = start < size ? memchr(data + start, '\n', size - start) : NULL;
        size_t end = nl ? (size_t)(nl - data) : size;
        if (pending.len)
            buf_append_byte(&pending, '\n');
        buf_append(&pending, data + start, end - start);
        csv_status_t status = csv_split(pending.data, pending.len, &record, message, sizeof(message));
        if (status == CSV_OK)
            fuzz_record(&map, &record, &limits, &json, &scratch, &profile);
        else if (status == CSV_ERROR && !message[0])
            abort();
        if (status != CSV_NEED_MORE)
            buf_reset(&pending);
        start = end + 1;
    }
    csv_map_free(&map);
    buf_free(&pending);
    buf_free(&json);
    buf_free(&scratch);
    buf_free(&profile);
    return 0;
}
