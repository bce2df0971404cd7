/*
 * libFuzzer target: codec_decode on arbitrary bytes.
 *
 * The Kafka key is taken from the input's own recipient_id when it has one
 * (found by a shallow look at the top-level map), so that inputs get past
 * the key check into the profile walk; the bytes are decoded twice, with the
 * default limits and with tight ones, so the limit paths are reached too.
 *
 * Invariants: no crash, leak, UB or read past the input (ASan); a failure
 * has a code and a message and leaves the JSON output as it was; a success
 * gives envelope fields within the spec, a body per kind (replace and merge:
 * JSON that jansson parses as an object; patch: operations inside the input,
 * no JSON; delete: nothing), and a canonical re-encoding that decodes to the
 * same command and the same JSON.
 */
#include <assert.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "mp.h"

/* The recipient_id str of a top-level map, or NULL. */
static const uint8_t *fuzz_find_recipient(const uint8_t *data, size_t size, size_t *len)
{
    mp_item_t top, k, v;
    if (mp_read(data, size, &top) != 0 || top.type != MP_MAP)
        return NULL;
    size_t pos = top.size;
    for (uint32_t i = 0; i < top.len; i++) {
        size_t skipped;
        if (mp_read(data + pos, size - pos, &k) != 0)
            return NULL;
        pos += k.size;
        if (k.type == MP_STR && k.len == 12 && memcmp(k.data, "recipient_id", 12) == 0 &&
            mp_read(data + pos, size - pos, &v) == 0 && v.type == MP_STR) {
            *len = v.len;
            return v.data;
        }
        if (mp_skip(data + pos, size - pos, &skipped) != 0)
            return NULL;
        pos += skipped;
    }
    return NULL;
}

static void fuzz_check(const uint8_t *data, size_t size, const uint8_t *key, size_t key_len,
                       const limits_t *limits)
{
    codec_command_t command;
    codec_failure_t failure;
    buf_t json = {0};
    buf_append(&json, "x", 1); /* decode appends: prior content must survive */

    if (codec_decode(data, size, key, key_len, limits, &command, &json, &failure) != 0) {
        if (failure.code <= CODEC_OK || failure.code >= CODEC_ERR__COUNT || failure.message[0] == '\0' ||
            json.len != 1)
            abort();
        buf_free(&json);
        return;
    }

    if (command.schema_version != CODEC_SCHEMA_VERSION || command.recipient_id_len == 0 ||
        command.recipient_id_len > LIMITS_MAX_RECIPIENT_ID_BYTES || (unsigned)command.op >= CODEC_OP__COUNT)
        abort();
    /* the body of each kind: a profile (replace, merge) written as a JSON object, the patch
     * operations inside the input (nothing written), or nothing (delete) */
    bool has_profile = command.op == CODEC_OP_REPLACE || command.op == CODEC_OP_MERGE;
    if (has_profile && (command.profile_msgpack_len == 0 || command.profile_msgpack < data ||
                        command.profile_msgpack + command.profile_msgpack_len > data + size))
        abort();
    if (command.op == CODEC_OP_PATCH &&
        (command.patch_msgpack_len == 0 || command.patch_msgpack < data ||
         command.patch_msgpack + command.patch_msgpack_len > data + size || json.len != 1))
        abort();
    if (command.op == CODEC_OP_DELETE && json.len != 1)
        abort();
    if (has_profile) {
        json_error_t error;
        json_t *parsed =
            json_loadb((const char *)json.data + 1, json.len - 1, JSON_DECODE_INT_AS_REAL, &error);
        if (!parsed || !json_is_object(parsed))
            abort();
        json_decref(parsed);
    }

    buf_t again = {0}, json2 = {0};
    char errstr[256];
    codec_command_t command2;
    if (codec_encode(&command, &again, errstr, sizeof(errstr)) != 0)
        abort();
    if (codec_decode(again.data, again.len, key, key_len, limits, &command2, &json2, &failure) != 0)
        abort();
    if (json2.len != json.len - 1 || (json2.len > 0 && memcmp(json2.data, json.data + 1, json2.len) != 0) ||
        memcmp(command2.command_id, command.command_id, CODEC_COMMAND_ID_BYTES) != 0 ||
        command2.accepted_at_us != command.accepted_at_us || command2.has_version != command.has_version ||
        command2.version != command.version || (command2.source == NULL) != (command.source == NULL) ||
        command2.profile_msgpack_len != command.profile_msgpack_len || command2.op != command.op ||
        command2.patch_msgpack_len != command.patch_msgpack_len)
        abort();
    buf_free(&again);
    buf_free(&json2);
    buf_free(&json);
}

/* libFuzzer's entry point (declared here: no header of libFuzzer's declares it). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t key_len = 0;
    const uint8_t *key = fuzz_find_recipient(data, size, &key_len);
    limits_t limits = limits_default();
    fuzz_check(data, size, key, key_len, &limits);

    limits_t tight = {
        .max_body_bytes = 1024, .max_depth = 3, .max_key_bytes = 4, .max_string_bytes = 8, .max_keys = 4};
    fuzz_check(data, size, key, key_len, &tight);
    return 0;
}
