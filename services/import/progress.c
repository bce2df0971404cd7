/*
 * progress: what a person or a pipeline sees while an import runs, the
 * checkpoint it may resume from, and the summary at the end.
 *
 * On a terminal (stderr is a tty) one line redrawn in place about four times
 * a second; otherwise a JSON log line every --progress-interval. Both say
 * lines read, acknowledged and rejected, MB/s, lines/s and, when the inputs
 * are regular files, the share done and an ETA from their sizes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import.h"
#include "json_write.h"
#include "log.h"
#include "xalloc.h"

#define IMPORT_TTY_REDRAW_US 250000

typedef struct import_rates {
    double seconds;
    double lines_per_s;
    double mb_per_s;
    double percent; /* < 0 when unknown */
    double eta_s;   /* < 0 when unknown */
} import_rates_t;

static import_rates_t import_rates(const import_t *im)
{
    import_rates_t r = {.percent = -1, .eta_s = -1};
    r.seconds = (double)(import_now_us() - im->started_us) / 1e6;
    if (r.seconds > 0) {
        r.lines_per_s = (double)im->counts.read / r.seconds;
        r.mb_per_s = (double)im->counts.bytes / 1e6 / r.seconds;
    }
    if (im->total_bytes > 0) {
        uint64_t done = 0;
        for (uint32_t f = 0; f < im->file && f < im->checkpoint.count; f++)
            done += (uint64_t)(im->checkpoint.files[f].size > 0 ? im->checkpoint.files[f].size : 0);
        done += im->offset;
        r.percent = 100.0 * (double)done / (double)im->total_bytes;
        if (r.percent > 100)
            r.percent = 100;
        double left = (double)(im->total_bytes - (done < im->total_bytes ? done : im->total_bytes));
        double rate = r.seconds > 0 ? (double)im->counts.bytes / r.seconds : 0;
        if (rate > 0)
            r.eta_s = left / rate;
    }
    return r;
}

void import_progress(import_t *im, bool force)
{
    int64_t now = import_now_us();
    if (!im->options.dry_run && now - im->last_checkpoint_us >= 1000000) {
        import_checkpoint_save(im);
        im->last_checkpoint_us = now;
    }
    int64_t every = im->tty ? IMPORT_TTY_REDRAW_US : im->options.progress_interval_ms * 1000;
    if (!force && (every <= 0 || now - im->last_progress_us < every))
        return;
    im->last_progress_us = now;
    import_rates_t r = import_rates(im);
    if (im->tty) {
        char eta[32] = "";
        if (r.eta_s >= 0)
            snprintf(eta, sizeof(eta), "  ETA %d:%02d", (int)r.eta_s / 60, (int)r.eta_s % 60);
        char percent[16] = "";
        if (r.percent >= 0)
            snprintf(percent, sizeof(percent), "  %5.1f%%", r.percent);
        fprintf(
            stderr,
            "\r\033[Kread %" PRIu64 "  acked %" PRIu64 "  rejected %" PRIu64 "  %.1f MB/s  %.0f lines/s%s%s",
            im->counts.read, im->counts.acked, im->counts.rejected, r.mb_per_s, r.lines_per_s, percent, eta);
        fflush(stderr);
        return;
    }
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "read", (int64_t)im->counts.read);
    log_field_int(&fields, "acked", (int64_t)im->counts.acked);
    log_field_int(&fields, "rejected", (int64_t)im->counts.rejected);
    log_field_int(&fields, "in_flight", (int64_t)(im->head - im->tail));
    log_field_int(&fields, "bytes", (int64_t)im->counts.bytes);
    log_field_int(&fields, "lines_per_s", (int64_t)r.lines_per_s);
    log_field_int(&fields, "kb_per_s", (int64_t)(r.mb_per_s * 1000));
    if (r.percent >= 0)
        log_field_int(&fields, "percent", (int64_t)r.percent);
    if (r.eta_s >= 0)
        log_field_int(&fields, "eta_s", (int64_t)r.eta_s);
    log_info(&fields, "progress");
}

/* Clears the live line, so that a log line or the summary starts on a clean line. */
void import_progress_end(import_t *im)
{
    if (im->tty) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

void import_checkpoint_save(import_t *im)
{
    if (!im->options.checkpoint_path || im->options.dry_run || im->checkpoint_failed)
        return;
    /* Everything before this position is acknowledged or rejected. */
    uint32_t file = im->file;
    uint64_t line = im->line, offset = im->offset;
    if (im->tail < im->head) {
        const import_slot_t *slot = &im->ring[im->tail % (uint64_t)im->options.window];
        file = slot->file;
        line = slot->line - 1;
        offset = slot->start_offset;
    }
    for (uint32_t f = 0; f < im->checkpoint.count; f++) {
        checkpoint_file_t *cf = &im->checkpoint.files[f];
        if (f < file) {
            cf->complete = true;
        } else if (f == file) {
            cf->lines_done = line;
            cf->offset = offset;
            cf->complete = im->stop == IMPORT_DONE && im->tail == im->head;
        } else {
            cf->lines_done = cf->offset = 0;
            cf->complete = false;
        }
    }
    char errstr[600];
    uint64_t tail = im->tail;
    if (checkpoint_write(&im->checkpoint, im->options.checkpoint_path, errstr, sizeof(errstr)) < 0) {
        import_progress_end(im);
        im->checkpoint_failed = true;
        if (im->stop == IMPORT_RUNNING) {
            snprintf(im->failure, sizeof(im->failure), "%.500s", errstr);
            im->stop = IMPORT_INPUT_FAILED;
        }
        log_error(NULL, "%s", errstr);
        return;
    }
    im->saved_tail = tail;
}

static const char *import_stop_name(import_stop_t stop)
{
    switch (stop) {
    case IMPORT_RUNNING:
        return "running";
    case IMPORT_DONE:
        return "complete";
    case IMPORT_MAX_REJECTS:
        return "max_rejects";
    case IMPORT_INTERRUPTED:
        return "interrupted";
    case IMPORT_KAFKA_FAILED:
        return "kafka_failed";
    case IMPORT_INPUT_FAILED:
        return "input_failed";
    }
    fatal_abort("import stop %d unknown", (int)stop);
}

int import_summary(import_t *im, int exit_code)
{
    import_progress_end(im);
    import_rates_t r = import_rates(im);
    const import_counts_t *c = &im->counts;
    buf_t json = {0};
    buf_appendf(&json, "{\"job\":");
    json_write_string(&json, im->options.job, strlen(im->options.job));
    buf_appendf(&json, ",\"status\":\"%s\",\"exit_code\":%d,\"dry_run\":%s", import_stop_name(im->stop),
                exit_code, im->options.dry_run ? "true" : "false");
    buf_appendf(&json,
                ",\"lines_read\":%" PRIu64 ",\"lines_valid\":%" PRIu64 ",\"lines_acknowledged\":%" PRIu64
                ",\"lines_rejected\":%" PRIu64 ",\"lines_blank\":%" PRIu64
                ",\"lines_skipped_by_resume\":%" PRIu64 ",\"lines_unacknowledged\":%" PRIu64
                ",\"bytes_read\":%" PRIu64,
                c->read, c->valid, c->acked, c->rejected, c->blank, c->resumed,
                im->options.dry_run ? 0 : c->valid - c->acked, c->bytes);
    buf_appendf(&json, ",\"seconds\":%.3f,\"lines_per_s\":%.0f,\"mb_per_s\":%.2f", r.seconds, r.lines_per_s,
                r.mb_per_s);
    if (im->failure[0]) {
        buf_appendf(&json, ",\"reason\":");
        json_write_string(&json, im->failure, strlen(im->failure));
    }
    bool checkpointed = im->options.checkpoint_path && !im->options.dry_run && !im->checkpoint_failed;
    if (checkpointed) {
        buf_appendf(&json, ",\"checkpoint\":");
        json_write_string(&json, im->options.checkpoint_path, strlen(im->options.checkpoint_path));
    }
    buf_append_str(&json, "}\n");
    int rc = 0;
    if (im->options.summary_path) {
        FILE *out =
            strcmp(im->options.summary_path, "-") == 0 ? stdout : fopen(im->options.summary_path, "w");
        if (!out || fwrite(json.data, 1, json.len, out) != json.len || (out != stdout && fclose(out) != 0)) {
            log_error(NULL, "cannot write the summary to %s", im->options.summary_path);
            rc = -1;
        }
        if (out == stdout)
            fflush(stdout);
    }
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "status", import_stop_name(im->stop));
    log_field_int(&fields, "read", (int64_t)c->read);
    log_field_int(&fields, "acked", (int64_t)c->acked);
    log_field_int(&fields, "rejected", (int64_t)c->rejected);
    log_field_int(&fields, "lines_per_s", (int64_t)r.lines_per_s);
    log_field_int(&fields, "exit_code", exit_code);
    if (im->failure[0])
        log_field_str(&fields, "reason", im->failure);
    if (im->stop == IMPORT_DONE)
        log_info(&fields, "import finished");
    else
        log_error(&fields, "import stopped: %s%s", im->failure[0] ? im->failure : import_stop_name(im->stop),
                  checkpointed ? "; checkpoint written, re-run with --resume to continue" : "");
    buf_free(&json);
    return rc;
}
