/*
 * codec: the replace command, schema 1 (proto/README.md).
 *
 * Decoding runs the checks in the order the spec's "Validation order"
 * lists, so that every implementation, and every golden vector, names the
 * same error for an input that breaks several rules: first the bytes must be
 * one complete msgpack value (walked without recursion by mp_skip), then the
 * top-level map's keys, then the fields one by one in spec order, and last
 * the profile, whose walk also writes the JSON text the worker stores.
 */
#include "codec.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json_patch.h"
#include "json_write.h"
#include "mp.h"
#include "utf8.h"

#define CODEC_MAX_SOURCE_BYTES 128

/* The fields of schema 1, in canonical order (the encoder writes them so). */
typedef enum codec_field {
    CODEC_F_SCHEMA,
    CODEC_F_OP,
    CODEC_F_COMMAND_ID,
    CODEC_F_RECIPIENT_ID,
    CODEC_F_ACCEPTED_AT_US,
    CODEC_F_VERSION,
    CODEC_F_SOURCE,
    CODEC_F_PROFILE,
    CODEC_F_PATCH,
    CODEC_F__COUNT
} codec_field_t;

static const struct {
    const char *name;
    size_t len;
} codec_fields[CODEC_F__COUNT] = {
    [CODEC_F_SCHEMA] = {"schema", 6},
    [CODEC_F_OP] = {"op", 2},
    [CODEC_F_COMMAND_ID] = {"command_id", 10},
    [CODEC_F_RECIPIENT_ID] = {"recipient_id", 12},
    [CODEC_F_ACCEPTED_AT_US] = {"accepted_at_us", 14},
    [CODEC_F_VERSION] = {"version", 7},
    [CODEC_F_SOURCE] = {"source", 6},
    [CODEC_F_PROFILE] = {"profile", 7},
    [CODEC_F_PATCH] = {"patch", 5},
};

static const struct {
    const char *name;
    size_t len;
} codec_ops[CODEC_OP__COUNT] = {
    [CODEC_OP_REPLACE] = {"replace", 7},
    [CODEC_OP_MERGE] = {"merge", 5},
    [CODEC_OP_PATCH] = {"patch", 5},
    [CODEC_OP_DELETE] = {"delete", 6},
};

const char *codec_op_name(codec_op_t op)
{
    return (unsigned)op < CODEC_OP__COUNT ? codec_ops[op].name : "unknown";
}

static const char *const codec_error_names[CODEC_ERR__COUNT] = {
    [CODEC_OK] = "ok",
    [CODEC_ERR_MALFORMED] = "malformed",
    [CODEC_ERR_TRAILING_BYTES] = "trailing_bytes",
    [CODEC_ERR_NOT_A_MAP] = "not_a_map",
    [CODEC_ERR_MISSING_FIELD] = "missing_field",
    [CODEC_ERR_WRONG_TYPE] = "wrong_type",
    [CODEC_ERR_UNKNOWN_SCHEMA_VERSION] = "unknown_schema_version",
    [CODEC_ERR_UNKNOWN_OPERATION] = "unknown_operation",
    [CODEC_ERR_BAD_COMMAND_ID] = "bad_command_id",
    [CODEC_ERR_BAD_RECIPIENT_ID] = "bad_recipient_id",
    [CODEC_ERR_KEY_MISMATCH] = "key_mismatch",
    [CODEC_ERR_INVALID_UTF8] = "invalid_utf8",
    [CODEC_ERR_NUL_IN_STRING] = "nul_in_string",
    [CODEC_ERR_LIMIT] = "limit",
    [CODEC_ERR_NON_FINITE_NUMBER] = "non_finite_number",
    [CODEC_ERR_NON_STRING_KEY] = "non_string_key",
    [CODEC_ERR_UNSUPPORTED_TYPE] = "unsupported_type",
    [CODEC_ERR_DUPLICATE_FIELD] = "duplicate_field",
    [CODEC_ERR_BAD_SOURCE] = "bad_source",
    [CODEC_ERR_BAD_PATCH] = "bad_patch",
};

const char *codec_error_name(codec_error_t code)
{
    if ((unsigned)code >= CODEC_ERR__COUNT)
        return "unknown";
    return codec_error_names[code];
}

static int codec_fail(codec_failure_t *failure, codec_error_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int codec_fail(codec_failure_t *failure, codec_error_t code, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    failure->code = code;
    vsnprintf(failure->message, sizeof(failure->message), fmt, args);
    va_end(args);
    return -1;
}

static bool codec_id_all_zero(const uint8_t *id)
{
    uint8_t any = 0;
    for (size_t i = 0; i < CODEC_COMMAND_ID_BYTES; i++)
        any |= id[i];
    return any == 0;
}

/* Recipient ids and source tags are stored as PostgreSQL text: valid UTF-8
 * without U+0000. */
static bool codec_text_ok(const uint8_t *s, size_t len)
{
    bool has_nul;
    return utf8_valid(s, len, &has_nul) && !has_nul;
}

int codec_encode(const codec_command_t *command, buf_t *out, char *errstr, size_t errstr_size)
{
    if (command->recipient_id_len == 0 || command->recipient_id_len > LIMITS_MAX_RECIPIENT_ID_BYTES ||
        !codec_text_ok((const uint8_t *)command->recipient_id, command->recipient_id_len)) {
        snprintf(errstr, errstr_size, "recipient_id must be 1..%d bytes of UTF-8 without U+0000",
                 LIMITS_MAX_RECIPIENT_ID_BYTES);
        return -1;
    }
    if (codec_id_all_zero(command->command_id)) {
        snprintf(errstr, errstr_size, "command_id is all zero bytes");
        return -1;
    }
    if (command->source && (command->source_len > CODEC_MAX_SOURCE_BYTES ||
                            !codec_text_ok((const uint8_t *)command->source, command->source_len))) {
        snprintf(errstr, errstr_size, "source must be 0..%d bytes of UTF-8 without U+0000",
                 CODEC_MAX_SOURCE_BYTES);
        return -1;
    }
    if ((unsigned)command->op >= CODEC_OP__COUNT) {
        snprintf(errstr, errstr_size, "unknown command kind %d", (int)command->op);
        return -1;
    }
    mp_item_t body;
    bool has_profile = command->op == CODEC_OP_REPLACE || command->op == CODEC_OP_MERGE;
    if (has_profile && (command->profile_msgpack_len == 0 ||
                        mp_read(command->profile_msgpack, command->profile_msgpack_len, &body) != 0 ||
                        body.type != MP_MAP)) {
        snprintf(errstr, errstr_size, "profile must be a msgpack map");
        return -1;
    }
    if (command->op == CODEC_OP_PATCH &&
        (command->patch_msgpack_len == 0 ||
         mp_read(command->patch_msgpack, command->patch_msgpack_len, &body) != 0 || body.type != MP_ARRAY)) {
        snprintf(errstr, errstr_size, "patch must be a msgpack array");
        return -1;
    }

    /* A delete has no body field: 5 fields plus the optional ones. */
    uint32_t fields =
        (command->op == CODEC_OP_DELETE ? 5 : 6) + (command->has_version ? 1 : 0) + (command->source ? 1 : 0);
    mp_write_map_header(out, fields);
    mp_write_str(out, "schema", 6);
    mp_write_uint(out, CODEC_SCHEMA_VERSION);
    mp_write_str(out, "op", 2);
    mp_write_str(out, codec_ops[command->op].name, (uint32_t)codec_ops[command->op].len);
    mp_write_str(out, "command_id", 10);
    mp_write_bin(out, command->command_id, CODEC_COMMAND_ID_BYTES);
    mp_write_str(out, "recipient_id", 12);
    mp_write_str(out, command->recipient_id, (uint32_t)command->recipient_id_len);
    mp_write_str(out, "accepted_at_us", 14);
    mp_write_int(out, command->accepted_at_us);
    if (command->has_version) {
        mp_write_str(out, "version", 7);
        mp_write_uint(out, command->version);
    }
    if (command->source) {
        mp_write_str(out, "source", 6);
        mp_write_str(out, command->source, (uint32_t)command->source_len);
    }
    if (has_profile) {
        mp_write_str(out, "profile", 7);
        buf_append(out, command->profile_msgpack, command->profile_msgpack_len);
    } else if (command->op == CODEC_OP_PATCH) {
        mp_write_str(out, "patch", 5);
        buf_append(out, command->patch_msgpack, command->patch_msgpack_len);
    }
    return 0;
}

/* "int" for both int kinds, to keep messages about the wire type short. */
static int codec_wrong_type(codec_failure_t *failure, codec_field_t field, const char *want,
                            const mp_item_t *item)
{
    return codec_fail(failure, CODEC_ERR_WRONG_TYPE, "%s: must be %s, got %s", codec_fields[field].name, want,
                      mp_type_name(item->type));
}

/* Reads an item of bytes that mp_skip has already walked: it cannot fail. */
static void codec_read_walked(const uint8_t *p, size_t avail, mp_item_t *item)
{
    int rc = mp_read(p, avail, item);
    assert(rc == 0 && "mp_skip walked these bytes");
    (void)rc;
}

static size_t codec_skip_walked(const uint8_t *p, size_t avail)
{
    size_t consumed = 0;
    int rc = mp_skip(p, avail, &consumed);
    assert(rc == 0 && "mp_skip walked these bytes");
    (void)rc;
    return consumed;
}

int codec_decode(const uint8_t *bytes, size_t len, const uint8_t *key, size_t key_len, const limits_t *limits,
                 codec_command_t *command, buf_t *profile_json, codec_failure_t *failure)
{
    /* Where each known field's value starts, or NULL when absent. */
    const uint8_t *at[CODEC_F__COUNT] = {0};
    mp_item_t value[CODEC_F__COUNT];
    mp_item_t top;
    size_t total;

    memset(command, 0, sizeof(*command));
    failure->code = CODEC_OK;
    failure->message[0] = '\0';

    /* 1-3: one complete msgpack value, nothing after it, and a map. */
    if (mp_skip(bytes, len, &total) != 0)
        return codec_fail(failure, CODEC_ERR_MALFORMED, "command: not one complete msgpack value%s",
                          len == 0 ? " (empty)" : "");
    if (total != len) {
        return codec_fail(failure, CODEC_ERR_TRAILING_BYTES, "command: %zu bytes after the command map",
                          len - total);
    }
    codec_read_walked(bytes, len, &top);
    if (top.type != MP_MAP)
        return codec_fail(failure, CODEC_ERR_NOT_A_MAP, "command: must be a msgpack map, got %s",
                          mp_type_name(top.type));

    /* 4: keys are str; a known field at most once; unknown fields skipped. */
    size_t pos = top.size;
    for (uint32_t i = 0; i < top.len; i++) {
        mp_item_t k;
        codec_read_walked(bytes + pos, len - pos, &k);
        if (k.type != MP_STR)
            return codec_fail(failure, CODEC_ERR_NON_STRING_KEY,
                              "command: a field name is not a str (got %s)", mp_type_name(k.type));
        pos += k.size;
        int field = -1;
        for (int f = 0; f < CODEC_F__COUNT; f++) {
            if (k.len == codec_fields[f].len && memcmp(k.data, codec_fields[f].name, k.len) == 0) {
                field = f;
                break;
            }
        }
        if (field >= 0) {
            if (at[field])
                return codec_fail(failure, CODEC_ERR_DUPLICATE_FIELD, "%s: appears more than once",
                                  codec_fields[field].name);
            at[field] = bytes + pos;
            codec_read_walked(bytes + pos, len - pos, &value[field]);
        }
        pos += codec_skip_walked(bytes + pos, len - pos);
    }

    /* 5-12: fields present and typed, in spec order. Optional ones may be
     * nil, which means absent. */
    const mp_item_t *v;

    if (!at[CODEC_F_SCHEMA])
        return codec_fail(failure, CODEC_ERR_MISSING_FIELD, "%s: required field missing", "schema");
    v = &value[CODEC_F_SCHEMA];
    if (v->type != MP_UINT && v->type != MP_INT)
        return codec_wrong_type(failure, CODEC_F_SCHEMA, "an int", v);
    if (v->type != MP_UINT || v->v.u64 != CODEC_SCHEMA_VERSION) {
        if (v->type == MP_UINT)
            return codec_fail(failure, CODEC_ERR_UNKNOWN_SCHEMA_VERSION,
                              "schema: version %llu is not read by this build", (unsigned long long)v->v.u64);
        return codec_fail(failure, CODEC_ERR_UNKNOWN_SCHEMA_VERSION,
                          "schema: version %lld is not read by this build", (long long)v->v.i64);
    }
    command->schema_version = CODEC_SCHEMA_VERSION;

    if (!at[CODEC_F_OP])
        return codec_fail(failure, CODEC_ERR_MISSING_FIELD, "%s: required field missing", "op");
    v = &value[CODEC_F_OP];
    if (v->type != MP_STR)
        return codec_wrong_type(failure, CODEC_F_OP, "a str", v);
    command->op = CODEC_OP__COUNT;
    for (int o = 0; o < CODEC_OP__COUNT; o++)
        if (v->len == codec_ops[o].len && memcmp(v->data, codec_ops[o].name, v->len) == 0)
            command->op = (codec_op_t)o;
    if (command->op == CODEC_OP__COUNT)
        return codec_fail(failure, CODEC_ERR_UNKNOWN_OPERATION,
                          "op: unknown operation; one of \"replace\", \"merge\", \"patch\", \"delete\"");

    if (!at[CODEC_F_COMMAND_ID])
        return codec_fail(failure, CODEC_ERR_MISSING_FIELD, "%s: required field missing", "command_id");
    v = &value[CODEC_F_COMMAND_ID];
    if (v->type != MP_BIN)
        return codec_wrong_type(failure, CODEC_F_COMMAND_ID, "a bin", v);
    if (v->len != CODEC_COMMAND_ID_BYTES)
        return codec_fail(failure, CODEC_ERR_BAD_COMMAND_ID, "command_id: must be 16 bytes, got %u", v->len);
    if (codec_id_all_zero(v->data))
        return codec_fail(failure, CODEC_ERR_BAD_COMMAND_ID, "command_id: must not be all zero bytes");
    memcpy(command->command_id, v->data, CODEC_COMMAND_ID_BYTES);

    if (!at[CODEC_F_RECIPIENT_ID])
        return codec_fail(failure, CODEC_ERR_MISSING_FIELD, "%s: required field missing", "recipient_id");
    v = &value[CODEC_F_RECIPIENT_ID];
    if (v->type != MP_STR)
        return codec_wrong_type(failure, CODEC_F_RECIPIENT_ID, "a str", v);
    if (v->len == 0 || v->len > LIMITS_MAX_RECIPIENT_ID_BYTES || !codec_text_ok(v->data, v->len))
        return codec_fail(failure, CODEC_ERR_BAD_RECIPIENT_ID,
                          "recipient_id: must be 1..%d bytes of UTF-8 without U+0000",
                          LIMITS_MAX_RECIPIENT_ID_BYTES);
    if (!key || key_len != v->len || memcmp(key, v->data, key_len) != 0)
        return codec_fail(failure, CODEC_ERR_KEY_MISMATCH, "recipient_id: differs from the Kafka key%s",
                          key ? "" : " (the record has no key)");
    command->recipient_id = (const char *)v->data;
    command->recipient_id_len = v->len;

    if (!at[CODEC_F_ACCEPTED_AT_US])
        return codec_fail(failure, CODEC_ERR_MISSING_FIELD, "%s: required field missing", "accepted_at_us");
    v = &value[CODEC_F_ACCEPTED_AT_US];
    if (v->type == MP_INT)
        command->accepted_at_us = v->v.i64;
    else if (v->type == MP_UINT && v->v.u64 <= INT64_MAX)
        command->accepted_at_us = (int64_t)v->v.u64;
    else if (v->type == MP_UINT)
        return codec_fail(failure, CODEC_ERR_WRONG_TYPE, "accepted_at_us: %llu is beyond int64",
                          (unsigned long long)v->v.u64);
    else
        return codec_wrong_type(failure, CODEC_F_ACCEPTED_AT_US, "an int", v);

    v = &value[CODEC_F_VERSION];
    if (at[CODEC_F_VERSION] && v->type != MP_NIL) {
        if (v->type == MP_INT)
            return codec_fail(failure, CODEC_ERR_WRONG_TYPE, "version: %lld is negative",
                              (long long)v->v.i64);
        if (v->type != MP_UINT)
            return codec_wrong_type(failure, CODEC_F_VERSION, "an int", v);
        command->has_version = true;
        command->version = v->v.u64;
    }

    v = &value[CODEC_F_SOURCE];
    if (at[CODEC_F_SOURCE] && v->type != MP_NIL) {
        if (v->type != MP_STR)
            return codec_wrong_type(failure, CODEC_F_SOURCE, "a str", v);
        if (v->len > CODEC_MAX_SOURCE_BYTES || !codec_text_ok(v->data, v->len))
            return codec_fail(failure, CODEC_ERR_BAD_SOURCE,
                              "source: must be 0..%d bytes of UTF-8 without U+0000", CODEC_MAX_SOURCE_BYTES);
        command->source = (const char *)v->data;
        command->source_len = v->len;
    }

    /* 12: the body of the kind: none for a delete (a profile or patch field
     * there is ignored, like an unknown field); the operations of a patch;
     * else the profile, validated by the same walk that writes its JSON. */
    if (command->op == CODEC_OP_DELETE)
        return 0;
    if (command->op == CODEC_OP_PATCH) {
        if (!at[CODEC_F_PATCH])
            return codec_fail(failure, CODEC_ERR_MISSING_FIELD, "%s: required field missing", "patch");
        v = &value[CODEC_F_PATCH];
        if (v->type != MP_ARRAY)
            return codec_wrong_type(failure, CODEC_F_PATCH, "an array", v);
        size_t patch_len = 0;
        const uint8_t *patch = at[CODEC_F_PATCH];
        if (jpatch_check(patch, (size_t)(bytes + len - patch), limits, &patch_len, profile_json, failure) !=
            0)
            return -1;
        command->patch_msgpack = patch;
        command->patch_msgpack_len = patch_len;
        return 0;
    }
    if (!at[CODEC_F_PROFILE])
        return codec_fail(failure, CODEC_ERR_MISSING_FIELD, "%s: required field missing", "profile");
    v = &value[CODEC_F_PROFILE];
    if (v->type != MP_MAP)
        return codec_wrong_type(failure, CODEC_F_PROFILE, "a map", v);
    size_t profile_len;
    const uint8_t *profile = at[CODEC_F_PROFILE];
    if (json_write_value(profile, (size_t)(bytes + len - profile), limits, "profile", &profile_len,
                         profile_json, failure) != 0)
        return -1;
    command->profile_msgpack = profile;
    command->profile_msgpack_len = profile_len;
    return 0;
}
