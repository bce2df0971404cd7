/*
 * run: the import loop. Files are read in order; each record is parsed
 * (line.c, through csv.c for --csv), then rejected with its message or
 * produced; the reading position moves past a record only once it is
 * produced or rejected, so the checkpoint never passes a record that was
 * neither.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "import.h"
#include "json_write.h"
#include "log.h"
#include "reader.h"
#include "utf8.h"
#include "xalloc.h"

/* Rejected inputs are kept in the rejects file only up to this size (longer ones: file and line only). */
#define IMPORT_REJECT_INPUT_MAX (64 * 1024)

static void import_reject(import_t *im, uint64_t line_no, const uint8_t *text, size_t len,
                          const char *message)
{
    const char *file = im->options.files[im->file];
    im->counts.rejected++;
    import_progress_end(im);
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "file", file);
    log_field_int(&fields, "line", (int64_t)line_no);
    log_field_str(&fields, "error", message);
    log_warn(&fields, "line rejected");
    if (im->rejects) {
        buf_t *out = &im->reject_line;
        buf_reset(out);
        buf_append_str(out, "{\"file\":");
        json_write_string(out, file, strlen(file));
        buf_appendf(out, ",\"line\":%" PRIu64 ",\"message\":", line_no);
        json_write_string(out, message, strlen(message));
        if (text && len <= IMPORT_REJECT_INPUT_MAX && utf8_valid(text, len, NULL)) {
            buf_append_str(out, ",\"input\":");
            json_write_string(out, (const char *)text, len);
        }
        buf_append_str(out, "}\n");
        if (fwrite(out->data, 1, out->len, im->rejects) != out->len) {
            snprintf(im->failure, sizeof(im->failure), "cannot write to the rejects file %s: %s",
                     im->options.rejects_path, strerror(errno));
            im->stop = IMPORT_INPUT_FAILED;
        }
    }
    if (im->options.max_rejects >= 0 && im->counts.rejected > (uint64_t)im->options.max_rejects &&
        im->stop == IMPORT_RUNNING) {
        snprintf(im->failure, sizeof(im->failure), "more than %" PRId64 " lines rejected (--max-rejects)",
                 im->options.max_rejects);
        im->stop = IMPORT_MAX_REJECTS;
    }
}

/* One record (an NDJSON line, or the JSON form of a CSV row): rejected, or produced. Returns true when
 * the reading position may move past it. */
static bool import_record(import_t *im, uint64_t line_no, uint64_t start_offset, const uint8_t *json,
                          size_t len, const uint8_t *raw, size_t raw_len, buf_t *encoded)
{
    char message[512];
    line_command_t command;
    buf_reset(encoded);
    int64_t now = import_now_us();
    if (line_to_command(&im->parser, json, len, im->options.files[im->file], line_no, now, encoded, &command,
                        message, sizeof(message)) < 0) {
        import_reject(im, line_no, raw, raw_len, message);
        return true;
    }
    if (im->options.dry_run) {
        im->counts.valid++;
        return true;
    }
    int produced = import_produce(im, command.recipient_id, command.recipient_id_len, encoded, line_no,
                                  start_offset, message, sizeof(message));
    if (produced < 0) {
        import_reject(im, line_no, raw, raw_len, message);
        return true;
    }
    if (produced == 0)
        return false;
    im->counts.valid++;
    return true;
}

typedef struct import_file_state {
    reader_t reader;
    csv_record_t *record;
    buf_t pending; /* CSV: physical lines of a record still open */
    uint64_t pending_lines;
    uint64_t pending_line;
    uint64_t pending_offset;
    size_t header_count;
    buf_t json;    /* CSV: the record's JSON form */
    buf_t scratch; /* CSV: :json cell checks */
    buf_t encoded;
} import_file_state_t;

/* Reads the CSV header (line 1) of the current file. 0, or -1 with errstr. */
static int import_csv_header(import_t *im, import_file_state_t *st, char *errstr, size_t errstr_size)
{
    reader_line_t line;
    char message[300];
    int got = reader_next(&st->reader, &line, errstr, errstr_size);
    if (got < 0)
        return -1;
    if (got == 0 || line.too_long) {
        snprintf(errstr, errstr_size, "%s: no CSV header line", im->options.files[im->file]);
        return -1;
    }
    if (csv_split(line.text, line.len, st->record, message, sizeof(message)) != CSV_OK) {
        snprintf(errstr, errstr_size, "%s, line 1 (the header): %s", im->options.files[im->file], message);
        return -1;
    }
    /* From the second file on the mapping is already resolved; each file must have the same header. */
    if (im->file == 0 || im->map.count == 0 || im->map.from_header) {
        csv_map_free(&im->map);
        if (csv_map_parse(&im->map, im->options.map_spec, message, sizeof(message)) < 0 ||
            csv_map_header(&im->map, st->record, message, sizeof(message)) < 0) {
            snprintf(errstr, errstr_size, "%s: %s", im->options.files[im->file], message);
            return -1;
        }
    } else if (csv_map_header(&im->map, st->record, message, sizeof(message)) < 0) {
        snprintf(errstr, errstr_size, "%s: %s", im->options.files[im->file], message);
        return -1;
    }
    st->header_count = st->record->count;
    if (im->line == 0) {
        im->line = 1;
        im->offset = line.end_offset;
        im->counts.bytes += line.end_offset;
    }
    return 0;
}

static void import_csv_line(import_t *im, import_file_state_t *st, const reader_line_t *line)
{
    char message[512];
    /* The position stays at a record's start until the record is whole: count its lines apart. */
    uint64_t physical = im->line + st->pending_lines + 1;
    st->pending_lines++;
    if (st->pending_lines == 1) {
        st->pending_line = physical;
        st->pending_offset = im->offset;
    } else {
        buf_append_byte(&st->pending, '\n');
    }
    if (line->too_long || st->pending.len + line->len > (size_t)im->config.max_body_bytes) {
        snprintf(message, sizeof(message),
                 "body: larger than %" PRId64 " bytes (limit PROFILED_MAX_BODY_BYTES)",
                 im->config.max_body_bytes);
        buf_reset(&st->pending);
        st->pending_lines = 0;
        import_reject(im, st->pending_line, NULL, 0, message);
        im->line = physical;
        im->offset = line->end_offset;
        return;
    }
    buf_append(&st->pending, line->text, line->len);
    csv_status_t status = csv_split(st->pending.data, st->pending.len, st->record, message, sizeof(message));
    if (status == CSV_NEED_MORE)
        return;
    uint64_t record_line = st->pending_line;
    bool advance = true;
    if (status == CSV_ERROR) {
        import_reject(im, record_line, st->pending.data, st->pending.len, message);
    } else if (st->record->count == 1 && st->record->cells[0].len == 0) {
        im->counts.blank++;
    } else {
        buf_reset(&st->json);
        if (csv_map_record(&im->map, st->record, st->header_count, &im->parser.limits, &st->scratch,
                           &st->json, message, sizeof(message)) < 0)
            import_reject(im, record_line, st->pending.data, st->pending.len, message);
        else
            advance = import_record(im, record_line, st->pending_offset, st->json.data, st->json.len,
                                    st->pending.data, st->pending.len, &st->encoded);
    }
    if (!advance) {
        st->pending_lines--; /* not produced (stopping): this line is read again by a resume */
        return;
    }
    buf_reset(&st->pending);
    st->pending_lines = 0;
    im->line = physical;
    im->offset = line->end_offset;
}

/* The reader's wait on a slow pipe: keep serving Kafka and progress; give up once stopping. */
static bool import_idle(void *arg)
{
    import_t *im = arg;
    import_poll(im, 0);
    return im->stop != IMPORT_RUNNING;
}

/* Imports one file from the checkpoint's position. */
static void import_file(import_t *im, import_file_state_t *st)
{
    char errstr[600];
    const char *name = im->options.files[im->file];
    checkpoint_file_t *cf = &im->checkpoint.files[im->file];
    size_t max_line = (size_t)im->config.max_body_bytes;
    if (reader_open(&st->reader, name, max_line, errstr, sizeof(errstr)) < 0)
        goto input_failed;
    st->reader.idle = import_idle;
    st->reader.idle_arg = im;
    im->line = 0;
    im->offset = 0;
    if (im->options.csv && import_csv_header(im, st, errstr, sizeof(errstr)) < 0)
        goto input_failed;
    if (cf->lines_done > im->line) {
        /* --resume: continue after the last acknowledged line. */
        if (reader_skip_to(&st->reader, cf->offset, errstr, sizeof(errstr)) < 0)
            goto input_failed;
        im->counts.resumed += cf->lines_done - im->line;
        im->line = cf->lines_done;
        im->offset = cf->offset;
        log_fields_t fields = LOG_FIELDS_INIT;
        log_field_str(&fields, "file", name);
        log_field_int(&fields, "line", (int64_t)im->line);
        log_field_int(&fields, "offset", (int64_t)im->offset);
        log_info(&fields, "resuming after the checkpoint");
    }
    reader_line_t line;
    unsigned tick = 0;
    while (im->stop == IMPORT_RUNNING) {
        if ((++tick & 63) == 0)
            import_poll(im, 0);
        if (im->stop != IMPORT_RUNNING)
            break;
        uint64_t before = im->offset;
        int got = reader_next(&st->reader, &line, errstr, sizeof(errstr));
        if (got < 0)
            goto input_failed;
        if (got == 0)
            break;
        im->counts.read++;
        if (im->options.csv) {
            import_csv_line(im, st, &line);
        } else {
            uint64_t line_no = im->line + 1;
            bool advance = true;
            if (line.too_long) {
                snprintf(errstr, sizeof(errstr),
                         "body: larger than %" PRId64 " bytes (limit PROFILED_MAX_BODY_BYTES)",
                         im->config.max_body_bytes);
                import_reject(im, line_no, NULL, 0, errstr);
            } else if (line_is_blank(line.text, line.len)) {
                im->counts.blank++;
            } else {
                advance = import_record(im, line_no, im->offset, line.text, line.len, line.text, line.len,
                                        &st->encoded);
            }
            if (advance) {
                im->line = line_no;
                im->offset = line.end_offset;
            }
        }
        if (im->offset > before)
            im->counts.bytes += im->offset - before;
    }
    if (im->stop == IMPORT_RUNNING && im->options.csv && st->pending.len > 0)
        import_reject(im, st->pending_line, NULL, 0, "the input ends inside a quoted cell");
    reader_close(&st->reader);
    return;
input_failed:
    reader_close(&st->reader);
    if (im->stop != IMPORT_RUNNING)
        return; /* the wait for input was given up: the stop has its own reason */
    snprintf(im->failure, sizeof(im->failure), "%.500s", errstr);
    im->stop = IMPORT_INPUT_FAILED;
}

int import_run(import_t *im)
{
    import_file_state_t st = {0};
    st.record = xcalloc(1, sizeof(*st.record), "a read record");
    im->started_us = im->last_ack_us = im->last_progress_us = im->last_checkpoint_us = import_now_us();
    /* A fresh job writes its (empty) checkpoint before sending anything: an unwritable path stops
     * it here, not after a window of commands. A resumed job keeps the one it read. */
    if (!im->options.resume)
        import_checkpoint_save(im);
    for (im->file = 0; im->file < im->options.file_count && im->stop == IMPORT_RUNNING; im->file++) {
        if (im->checkpoint.files[im->file].complete) {
            im->counts.resumed += im->checkpoint.files[im->file].lines_done;
            continue;
        }
        buf_reset(&st.pending);
        st.pending_lines = 0;
        import_file(im, &st);
        if (im->stop != IMPORT_RUNNING)
            break;
        im->checkpoint.files[im->file].lines_done = im->line;
        im->checkpoint.files[im->file].offset = im->offset;
    }
    if (im->stop == IMPORT_RUNNING) {
        /* Everything is read; the position is past the last file. */
        im->file = (uint32_t)im->options.file_count - 1;
    }
    if (!im->options.dry_run) {
        import_drain(im);
        if (im->stop == IMPORT_RUNNING && im->tail == im->head)
            im->stop = IMPORT_DONE;
        else if (im->stop == IMPORT_RUNNING)
            im->stop = IMPORT_KAFKA_FAILED;
    } else if (im->stop == IMPORT_RUNNING) {
        im->stop = IMPORT_DONE;
    }
    import_checkpoint_save(im);

    int exit_code;
    switch (im->stop) {
    case IMPORT_DONE:
        exit_code = im->counts.rejected ? IMPORT_EXIT_REJECTS : IMPORT_EXIT_OK;
        break;
    case IMPORT_MAX_REJECTS:
        exit_code = IMPORT_EXIT_MAX_REJECTS;
        break;
    case IMPORT_INTERRUPTED:
        exit_code = IMPORT_EXIT_INTERRUPTED;
        break;
    case IMPORT_KAFKA_FAILED:
        exit_code = IMPORT_EXIT_KAFKA;
        break;
    case IMPORT_INPUT_FAILED:
        exit_code = IMPORT_EXIT_INPUT;
        break;
    default:
        fatal_abort("import stop %d unknown", (int)im->stop);
    }
    if (import_summary(im, exit_code) < 0 && exit_code == IMPORT_EXIT_OK)
        exit_code = IMPORT_EXIT_INPUT;
    csv_record_free(st.record);
    free(st.record);
    buf_free(&st.pending);
    buf_free(&st.json);
    buf_free(&st.scratch);
    buf_free(&st.encoded);
    return exit_code;
}
