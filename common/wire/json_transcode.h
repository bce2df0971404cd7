/*
 * json_transcode: the request path's strict single-pass JSON to msgpack
 * transcoder. RFC 8259 grammar, valid UTF-8, no U+0000, paired surrogates,
 * integers exact within int64/uint64 (others become float64), limits on
 * depth, key and string bytes, and entries per object/array. Objects with a
 * duplicate key keep the last value (PostgreSQL jsonb's rule), so the msgpack
 * output never holds a duplicate key. Output is the canonical msgpack of
 * proto/README.md (smallest integer forms, float64, str).
 *
 * Rules that the signatures do not show (tests/json pins each one):
 * - Numbers: an integer literal (no fraction, no exponent) in
 *   [INT64_MIN, UINT64_MAX] is exact; -0 is the integer 0. Integer literals
 *   beyond that range become the nearest float64 (jansson rejects them: a
 *   documented difference). Other numbers are float64, correctly rounded; a
 *   number beyond the double range (1e400) is TRANSCODE_ERR_SYNTAX, since JSON
 *   has no infinity; underflow rounds to 0 or a subnormal, as strtod does.
 * - Limits: max_body_bytes counts the whole body (TOO_LARGE); max_depth
 *   counts open objects/arrays, the profile object itself being level 1 (the
 *   {"profile": ...} wrapper is not counted; for transcode_value the root
 *   container is level 1); max_key_bytes and max_string_bytes count UTF-8
 *   bytes after unescaping; max_keys bounds the members of each object as
 *   written (duplicates included) and the elements of each array.
 * - Duplicate keys (compared after unescaping): the last value wins, at the
 *   position of the first occurrence, as ordered maps in Python and
 *   JavaScript do (proto/README.md §3). A later "profile" in the wrapper
 *   replaces an earlier one.
 * - Documented profile fields may be null (meaning unset); any other type
 *   than the documented one is TRANSCODE_ERR_SCHEMA. Only the profile's own
 *   members and the listed members of its documented objects are typed.
 * - Messages: "<path>: <rule>", the path from "profile" ("profile.tags[3]")
 *   or from "body"/"value" outside it; limits name their PROFILED_MAX_*
 *   variable; schema messages read "profile.address.locality must be a
 *   string". Always NUL-terminated valid UTF-8 (long paths are cut on a
 *   character boundary). `offset` is the input byte where parsing stopped
 *   (0 for TOO_LARGE and SCHEMA errors).
 * - Reentrant; no allocation per value: the output is reserved once, and
 *   the nesting and key stacks live on the C stack unless max_depth is over
 *   38 or more than 256 keys of open objects are pending at once.
 */
#ifndef PROFILED_JSON_TRANSCODE_H
#define PROFILED_JSON_TRANSCODE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "profile_limits.h"

typedef enum transcode_status {
    TRANSCODE_OK = 0,
    TRANSCODE_ERR_SYNTAX,    /* not JSON: grammar, bad escape, bad UTF-8, NUL, lone surrogate */
    TRANSCODE_ERR_LIMIT,     /* depth, key, string or entry count over its limit (400) */
    TRANSCODE_ERR_TOO_LARGE, /* body over limits->max_body_bytes (413) */
    TRANSCODE_ERR_SCHEMA,    /* valid JSON, wrong shape: no "profile" object, a documented field mistyped */
} transcode_status_t;

typedef struct transcode_error {
    transcode_status_t status;
    size_t offset;     /* byte offset in the input where it went wrong */
    char message[256]; /* names the field path and the rule: "profile.address.locality must be a string" */
} transcode_error_t;

/*
 * A PUT /profiles body: {"profile": {...}}. Appends the msgpack map of the
 * profile (only) to `profile_out`. Other top-level keys are checked as JSON
 * and ignored. Documented Courier profile fields are type-checked.
 * Returns 0, or -1 with `error` filled and profile_out left unspecified.
 */
int transcode_profile_request(const uint8_t *body, size_t len, const limits_t *limits, buf_t *profile_out,
                              transcode_error_t *error) __attribute__((warn_unused_result));

/* What the line form found beside "profile" (absent, null, or its kind). */
typedef enum transcode_field {
    TRANSCODE_FIELD_ABSENT = 0,
    TRANSCODE_FIELD_NULL,
    TRANSCODE_FIELD_STRING, /* recipient_id: a JSON string */
    TRANSCODE_FIELD_UINT,   /* version: an integer literal in [0, UINT64_MAX] */
    TRANSCODE_FIELD_OTHER,  /* any other JSON value */
} transcode_field_t;

typedef struct transcode_envelope {
    transcode_field_t recipient_id_kind;
    size_t recipient_id_len; /* its full length; only the first LIMITS_MAX_RECIPIENT_ID_BYTES are kept */
    char recipient_id[LIMITS_MAX_RECIPIENT_ID_BYTES];
    transcode_field_t version_kind;
    uint64_t version;
} transcode_envelope_t;

/*
 * A bulk-import line, {"recipient_id": "...", "profile": {...}, "version": N}:
 * exactly transcode_profile_request (same grammar, limits, schema checks and
 * messages, so a line is accepted when the api would accept its body), and
 * the top-level "recipient_id" and "version" members are reported in
 * `envelope` for the caller to check (it is filled on success only). As for
 * "profile", a repeated member keeps its last value.
 */
int transcode_profile_line(const uint8_t *line, size_t len, const limits_t *limits, buf_t *profile_out,
                           transcode_envelope_t *envelope, transcode_error_t *error)
    __attribute__((warn_unused_result));

/* Any one JSON value, no schema: for tests, fuzzing and tools. */
int transcode_value(const uint8_t *json, size_t len, const limits_t *limits, buf_t *out,
                    transcode_error_t *error) __attribute__((warn_unused_result));

#endif
