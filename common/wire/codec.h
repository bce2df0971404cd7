/*
 * codec: the replace command (proto/README.md is the spec; this is its C
 * binding). The api encodes, the worker decodes, bulk producers in any
 * language write the same bytes.
 *
 * Ownership: a decoded command borrows from the input bytes (recipient_id,
 * source and profile_msgpack point into them); keep the bytes alive while the
 * command is used. codec_encode copies nothing it does not own: it appends to
 * `out`.
 */
#ifndef PROFILED_CODEC_H
#define PROFILED_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "command_id.h"
#include "profile_limits.h"

#define CODEC_SCHEMA_VERSION   1
#define CODEC_COMMAND_ID_BYTES COMMAND_ID_BYTES /* the older name */

/* The command kinds (proto/README.md §1, "op"). */
typedef enum codec_op {
    CODEC_OP_REPLACE = 0, /* profile: the whole new profile */
    CODEC_OP_MERGE,       /* profile: merged into the stored one (RFC 7396) */
    CODEC_OP_PATCH,       /* patch: JSON Patch operations (RFC 6902) */
    CODEC_OP_DELETE,      /* no body: the profile is removed */
    CODEC_OP__COUNT
} codec_op_t;

/* "replace", "merge", "patch", "delete". */
const char *codec_op_name(codec_op_t op);

typedef struct codec_command {
    uint32_t schema_version;
    codec_op_t op;
    command_id_t command_id;
    const char *recipient_id; /* UTF-8, not NUL-terminated */
    size_t recipient_id_len;
    int64_t accepted_at_us; /* microseconds since the Unix epoch */
    bool has_version;       /* external version present */
    uint64_t version;
    const char *source; /* optional tag; NULL when absent */
    size_t source_len;
    const uint8_t *profile_msgpack; /* replace, merge: one msgpack map, canonical on encode */
    size_t profile_msgpack_len;
    const uint8_t *patch_msgpack; /* patch: the operations, one msgpack array (json_patch.h) */
    size_t patch_msgpack_len;
} codec_command_t;

/* Stable error codes: their names (codec_error_name) appear in the dead-letter
 * headers and in proto/vectors, so never renumber or rename one. */
typedef enum codec_error {
    CODEC_OK = 0,
    CODEC_ERR_MALFORMED,              /* not msgpack, or truncated */
    CODEC_ERR_TRAILING_BYTES,         /* bytes after the command map */
    CODEC_ERR_NOT_A_MAP,              /* top level is not a map */
    CODEC_ERR_MISSING_FIELD,          /* a required field is absent */
    CODEC_ERR_WRONG_TYPE,             /* a known field has the wrong msgpack type */
    CODEC_ERR_UNKNOWN_SCHEMA_VERSION, /* schema version this build does not read */
    CODEC_ERR_UNKNOWN_OPERATION,      /* op other than "replace" */
    CODEC_ERR_BAD_COMMAND_ID,         /* id not 16 bytes, or all zero bytes */
    CODEC_ERR_BAD_RECIPIENT_ID,       /* empty, over 256 bytes, not UTF-8, or holding U+0000 */
    CODEC_ERR_KEY_MISMATCH,           /* recipient id differs from the Kafka key */
    CODEC_ERR_INVALID_UTF8,           /* a string in the profile is not UTF-8 */
    CODEC_ERR_NUL_IN_STRING,          /* U+0000 in a profile string or key */
    CODEC_ERR_LIMIT,                  /* depth, key, string or entry count over its limit */
    CODEC_ERR_NON_FINITE_NUMBER,      /* NaN or infinity */
    CODEC_ERR_NON_STRING_KEY,         /* a profile map key that is not a str */
    CODEC_ERR_UNSUPPORTED_TYPE,       /* bin or ext inside the profile */
    CODEC_ERR_DUPLICATE_FIELD,        /* a known command field appears twice in the command map */
    CODEC_ERR_BAD_SOURCE,             /* source over 128 bytes, not UTF-8, or holding U+0000 */
    CODEC_ERR_BAD_PATCH,              /* a patch operation malformed: op, path, from, value */
    CODEC_ERR__COUNT
} codec_error_t;

typedef struct codec_failure {
    codec_error_t code;
    char message[256]; /* names the field and the rule, e.g. "profile.a.b: string over 65536 bytes" */
} codec_failure_t;

/* "malformed", "key_mismatch", ...: the snake_case name of a code. */
const char *codec_error_name(codec_error_t code);

/*
 * Appends the canonical encoding of `command` to `out` (proto/README.md,
 * "Canonical encoding"). command->profile_msgpack (replace, merge) or
 * patch_msgpack (patch) is copied as given: the transcoder already wrote it
 * canonically; a delete carries neither. command->schema_version is not
 * read: the encoder writes the version it implements (CODEC_SCHEMA_VERSION).
 * Fails only on a command the decoder would reject for its envelope (bad
 * recipient id, all-zero command id, bad source, profile not starting with a
 * map header), with errstr filled and `out` untouched; the profile's contents
 * are not re-validated here.
 */
int codec_encode(const codec_command_t *command, buf_t *out, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/*
 * Decodes and validates one command, running the checks in the order of
 * proto/README.md "Validation order", so the code for an input that breaks
 * several rules is the one the golden vectors name. `key` is the Kafka message key (NULL
 * when the record had none, which fails with KEY_MISMATCH). On success fills
 * `command` (borrowing from `bytes`), appends the profile (replace, merge)
 * as JSON text to `profile_json` (the form PostgreSQL jsonb stores; nothing
 * for a patch or a delete), and returns 0. On any
 * invalid input returns -1 with `failure` filled and `profile_json` as it
 * was; never reads past len. Optional fields sent as nil read as absent.
 */
int codec_decode(const uint8_t *bytes, size_t len, const uint8_t *key, size_t key_len, const limits_t *limits,
                 codec_command_t *command, buf_t *profile_json, codec_failure_t *failure)
    __attribute__((warn_unused_result));

#endif
