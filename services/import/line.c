#include "line.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "http_ids.h"
#include "xalloc.h"

bool line_is_blank(const uint8_t *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r')
            return false;
    return true;
}

int line_to_command(line_parser_t *parser, const uint8_t *text, size_t len, const char *file,
                    uint64_t line_no, int64_t accepted_at_us, buf_t *encoded, line_command_t *command,
                    char *message, size_t message_size)
{
    transcode_error_t terror;
    transcode_envelope_t *envelope = &parser->envelope;
    buf_reset(&parser->profile);
    if (transcode_profile_line(text, len, &parser->limits, &parser->profile, envelope, &terror) < 0) {
        snprintf(message, message_size, "%s", terror.message);
        return -1;
    }
    /* The api takes the recipient id from the path (http_route.c); here it is a member, with the
     * same rules and the same words. */
    switch (envelope->recipient_id_kind) {
    case TRANSCODE_FIELD_ABSENT:
    case TRANSCODE_FIELD_NULL:
        snprintf(message, message_size, "recipient_id is required");
        return -1;
    case TRANSCODE_FIELD_STRING:
        break;
    case TRANSCODE_FIELD_UINT:
    case TRANSCODE_FIELD_OTHER:
        snprintf(message, message_size, "recipient_id must be a string");
        return -1;
    default:
        fatal_abort("recipient_id kind %d unknown", (int)envelope->recipient_id_kind);
    }
    if (envelope->recipient_id_len == 0) {
        snprintf(message, message_size, "recipient_id must not be empty");
        return -1;
    }
    if (envelope->recipient_id_len > LIMITS_MAX_RECIPIENT_ID_BYTES) {
        snprintf(message, message_size, "recipient_id must be at most %d bytes",
                 LIMITS_MAX_RECIPIENT_ID_BYTES);
        return -1;
    }
    /* UTF-8 and no U+0000: the transcoder already refused both in any string. */
    bool has_version = false;
    switch (envelope->version_kind) {
    case TRANSCODE_FIELD_ABSENT:
    case TRANSCODE_FIELD_NULL:
        break;
    case TRANSCODE_FIELD_UINT:
        has_version = true;
        break;
    case TRANSCODE_FIELD_STRING:
    case TRANSCODE_FIELD_OTHER:
        snprintf(message, message_size, "version must be an integer from 0 to %" PRIu64, UINT64_MAX);
        return -1;
    default:
        fatal_abort("version kind %d unknown", (int)envelope->version_kind);
    }

    size_t file_len = strlen(file);
    codec_command_t cmd = {
        .schema_version = CODEC_SCHEMA_VERSION,
        .recipient_id = envelope->recipient_id,
        .recipient_id_len = envelope->recipient_id_len,
        .accepted_at_us = accepted_at_us,
        .has_version = has_version,
        .version = envelope->version,
        .source = parser->source,
        .source_len = strlen(parser->source),
        .profile_msgpack = parser->profile.data,
        .profile_msgpack_len = parser->profile.len,
    };
    http_command_id_from_import(parser->job, strlen(parser->job), file, file_len, line_no, cmd.command_id);
    if (codec_encode(&cmd, encoded, message, message_size) < 0)
        return -1;
    command->recipient_id = envelope->recipient_id;
    command->recipient_id_len = envelope->recipient_id_len;
    command->encoded = encoded;
    return 0;
}

void line_parser_free(line_parser_t *parser)
{
    buf_free(&parser->profile);
}
