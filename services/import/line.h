/*
 * line: one input record (an NDJSON line, or a CSV row already turned into
 * that JSON form) to one encoded replace command, through the api's own
 * transcoder, field checks and limits. A line this accepts is a PUT body the
 * api would accept, and its command is one the worker applies; a line it
 * rejects gets the message the api would give.
 */
#ifndef PROFILED_IMPORT_LINE_H
#define PROFILED_IMPORT_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "json_transcode.h"
#include "profile_limits.h"

/* Reused from line to line: no allocation per line once warm. */
typedef struct line_parser {
    limits_t limits;
    const char *job; /* the job id, part of every command id */
    const char *source;
    buf_t profile; /* scratch: the profile's msgpack */
    transcode_envelope_t envelope;
} line_parser_t;

typedef struct line_command {
    const char *recipient_id; /* points into the parser; valid until the next line */
    size_t recipient_id_len;
    buf_t *encoded; /* the command bytes (appended to the caller's buffer) */
} line_command_t;

/*
 * Parses `text` (without its newline) as line `line_no` of `file` and
 * appends the command to `encoded`. The id is http_command_id_from_import(job,
 * file, line_no). Returns 0, or -1 with `message` holding the reason
 * ("profile.email must be a string", "recipient_id is required", ...).
 */
int line_to_command(line_parser_t *parser, const uint8_t *text, size_t len, const char *file,
                    uint64_t line_no, int64_t accepted_at_us, buf_t *encoded, line_command_t *command,
                    char *message, size_t message_size) __attribute__((warn_unused_result));

/* True for a line of only spaces, tabs and a CR: skipped, not rejected. */
bool line_is_blank(const uint8_t *text, size_t len);

void line_parser_free(line_parser_t *parser);

#endif
