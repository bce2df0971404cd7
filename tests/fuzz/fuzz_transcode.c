/*
 * fuzz_transcode: the input is a request body / JSON text, as is.
 *
 * Invariants, on every input:
 * - transcode_value and transcode_profile_request never crash, leak or read
 *   past the input (ASan sees to that: the input is copied to a buffer of
 *   exactly its size), under generous limits and under tight ones;
 * - on success, the output is one complete msgpack value that msgpack-c
 *   reads consuming every byte, already in its smallest forms (repacking the
 *   unpacked object gives the same bytes); a profile is a map;
 * - on failure, the status is one of the enum and the message is non-empty,
 *   NUL-terminated and valid UTF-8;
 * - a profile the transcoder accepts under some limits, json_write_value (the
 *   worker's check of a decoded command) accepts under the same limits, so a
 *   command the api produces is one the worker applies;
 * - deeply nested output (past msgpack-c's own nesting limit) reads back
 *   completely through json_write_value;
 * - with generous limits, the transcoder accepts exactly what jansson accepts
 *   (JSON_DECODE_ANY), apart from the documented differences (integers
 *   beyond int64, raw NUL bytes), and then holds the same value.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_gen.h"
#include "json_transcode.h"
#include "json_write.h"
#include "utf8.h"

/* msgpack-c's unpacker nests at most MSGPACK_EMBED_STACK_SIZE (32, in a
 * header msgpack.h does not include) deep; stay under it. */
#define FUZZ_MSGPACK_C_DEPTH 30

static void fuzz_check_msgpack(const buf_t *out, size_t from, bool must_be_map, const json_t *same_as)
{
    const char *data = (const char *)out->data + from;
    size_t len = out->len - from;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    size_t off = 0;
    if (msgpack_unpack_next(&unpacked, data, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        abort();
    if (must_be_map && unpacked.data.type != MSGPACK_OBJECT_MAP)
        abort();
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    if (msgpack_pack_object(&pk, unpacked.data) != 0 || sbuf.size != len || memcmp(sbuf.data, data, len) != 0)
        abort(); /* not canonical */
    if (same_as) {
        char why[256];
        if (!gen_equal(&unpacked.data, same_as, why, sizeof(why))) {
            fprintf(stderr, "fuzz_transcode: differs from jansson: %s\n", why);
            abort();
        }
    }
    msgpack_sbuffer_destroy(&sbuf);
    msgpack_unpacked_destroy(&unpacked);
}

static void fuzz_check_error(const transcode_error_t *error, size_t len)
{
    if (error->status < TRANSCODE_ERR_SYNTAX || error->status > TRANSCODE_ERR_SCHEMA)
        abort();
    size_t n = strnlen(error->message, sizeof(error->message));
    if (n == 0 || n == sizeof(error->message) || !utf8_valid((const uint8_t *)error->message, n, NULL))
        abort();
    if (error->offset > len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy, so a read one past the end is an ASan report. */
    uint8_t *text = malloc(size ? size : 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    /* Depth: msgpack-c's unpacker, the reference here, nests at most
     * MSGPACK_EMBED_STACK_SIZE (32) deep; deeper input is the deep pass's. */
    limits_t generous = {.max_body_bytes = 1 << 20,
                         .max_depth = FUZZ_MSGPACK_C_DEPTH,
                         .max_key_bytes = 1 << 20,
                         .max_string_bytes = 1 << 20,
                         .max_keys = 1 << 20};
    limits_t tight = {
        .max_body_bytes = 4096, .max_depth = 3, .max_key_bytes = 8, .max_string_bytes = 12, .max_keys = 5};
    buf_t out = {0};
    transcode_error_t error;

    /* transcode_value, generous limits, against jansson. */
    int rc = transcode_value(text, size, &generous, &out, &error);
    json_error_t jerror;
    json_t *root = json_loadb((const char *)text, size, JSON_DECODE_ANY, &jerror);
    bool has_nul = memchr(text, 0, size) != NULL;
    bool too_big = !root && strstr(jerror.text, "too big") != NULL;
    bool too_deep = !root && strstr(jerror.text, "depth") != NULL;
    if (rc == 0) {
        if (has_nul)
            abort(); /* no JSON text holds a raw NUL */
        if (!root && !too_big && !too_deep) {
            fprintf(stderr, "fuzz_transcode: accepted what jansson rejects: %s\n", jerror.text);
            abort();
        }
        fuzz_check_msgpack(&out, 0, false, root);
    } else {
        fuzz_check_error(&error, size);
        if (root && !has_nul && error.status != TRANSCODE_ERR_LIMIT) {
            fprintf(stderr, "fuzz_transcode: rejected what jansson accepts: %s\n", error.message);
            abort();
        }
    }
    json_decref(root);

    /* transcode_value, deep nesting allowed: json_write_value (with its own
     * stack) must read the whole output back. */
    limits_t deep = generous;
    deep.max_depth = 1000;
    buf_reset(&out);
    if (transcode_value(text, size, &deep, &out, &error) == 0) {
        buf_t json = {0};
        size_t consumed = 0;
        codec_failure_t failure;
        if (json_write_value(out.data, out.len, &deep, "value", &consumed, &json, &failure) != 0 ||
            consumed != out.len)
            abort();
        buf_free(&json);
    } else {
        fuzz_check_error(&error, size);
    }

    /* transcode_value, tight limits: errors are fine, crashes are not. */
    buf_reset(&out);
    if (transcode_value(text, size, &tight, &out, &error) == 0)
        fuzz_check_msgpack(&out, 0, false, NULL);
    else
        fuzz_check_error(&error, size);

    /* transcode_profile_request, appending after bytes already there. */
    for (int pass = 0; pass < 2; pass++) {
        buf_reset(&out);
        buf_append_str(&out, "prefix");
        const limits_t *limits = pass ? &tight : &generous;
        if (transcode_profile_request(text, size, limits, &out, &error) == 0) {
            if (memcmp(out.data, "prefix", 6) != 0)
                abort();
            fuzz_check_msgpack(&out, 6, true, NULL);
            buf_t json = {0};
            size_t consumed = 0;
            codec_failure_t failure;
            if (json_write_value(out.data + 6, out.len - 6, limits, "profile", &consumed, &json, &failure) !=
                    0 ||
                consumed != out.len - 6) {
                fprintf(stderr, "fuzz_transcode: the worker's check refuses an accepted profile: %s\n",
                        failure.message);
                abort();
            }
            buf_free(&json);
        } else {
            fuzz_check_error(&error, size);
        }
    }
    buf_free(&out);
    free(text);
    return 0;
}
