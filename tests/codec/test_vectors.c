/*
 * Runs every golden vector in proto/vectors:
 *   valid/         decode equals the meaning; encode(meaning) equals the bytes
 *   noncanonical/  decode equals the meaning; re-encoding decodes the same
 *   invalid/       decode fails with the named code, and nothing crashes
 * plus, for the small valid vectors, every truncation is `malformed`.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "json_patch.h"
#include "json_transcode.h"
#include "json_write.h"
#include "test_codec.h"

#define VECTORS_MAX 512

typedef struct vector {
    char stem[800]; /* folder/name, without extension */
    char name[128];
} vector_t;

static vector_t vectors[VECTORS_MAX];
static int vector_count[3];
static const char *const vector_dirs[3] = {"valid", "noncanonical", "invalid"};

static int vector_compare(const void *a, const void *b)
{
    return strcmp(((const vector_t *)a)->stem, ((const vector_t *)b)->stem);
}

/* Lists folder `dir` into vectors[base..]; returns how many. */
static int vectors_list(const char *dir, int base)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", PROFILED_VECTORS_DIR, dir);
    DIR *d = opendir(path);
    ck_assert_msg(d != NULL, "cannot open %s", path);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 9 || strcmp(e->d_name + len - 8, ".msgpack") != 0)
            continue;
        ck_assert_int_lt(base + n, VECTORS_MAX);
        vector_t *v = &vectors[base + n];
        snprintf(v->name, sizeof(v->name), "%.*s", (int)(len - 8), e->d_name);
        snprintf(v->stem, sizeof(v->stem), "%s/%.*s", path, (int)(len - 8), e->d_name);
        n++;
    }
    closedir(d);
    qsort(vectors + base, (size_t)n, sizeof(vector_t), vector_compare);
    return n;
}

static void vectors_load(void)
{
    static int loaded;
    if (loaded)
        return;
    int base = 0;
    for (int i = 0; i < 3; i++) {
        vector_count[i] = vectors_list(vector_dirs[i], base);
        base += vector_count[i];
    }
    loaded = 1;
}

static void vector_read(const vector_t *v, buf_t *bytes, json_t **meaning)
{
    char path[900];
    snprintf(path, sizeof(path), "%s.msgpack", v->stem);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(bytes, chunk, n);
    fclose(f);
    snprintf(path, sizeof(path), "%s.json", v->stem);
    json_error_t error;
    *meaning = json_load_file(path, 0, &error);
    ck_assert_msg(*meaning != NULL, "%s: %s", path, error.text);
}

static const char *vector_str(json_t *object, const char *field, size_t *len)
{
    json_t *s = json_object_get(object, field);
    ck_assert_msg(json_is_string(s), "meaning field %s is not a string", field);
    if (len)
        *len = json_string_length(s);
    return json_string_value(s);
}

/* The command of a meaning file, with the body bytes (profile or patch) of `body`. */
static codec_command_t vector_command(json_t *meaning, const codec_command_t *body)
{
    json_t *cmd = json_object_get(meaning, "command");
    ck_assert(json_is_object(cmd));
    codec_command_t c = {0};
    c.schema_version = (uint32_t)json_integer_value(json_object_get(cmd, "schema"));
    const char *hex = vector_str(cmd, "command_id", NULL);
    ck_assert_uint_eq(strlen(hex), 32);
    for (int i = 0; i < 16; i++) {
        unsigned byte;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &byte), 1);
        c.command_id[i] = (uint8_t)byte;
    }
    c.recipient_id = vector_str(cmd, "recipient_id", &c.recipient_id_len);
    json_t *at = json_object_get(cmd, "accepted_at_us");
    ck_assert(json_is_integer(at));
    c.accepted_at_us = json_integer_value(at);
    if (json_object_get(cmd, "version")) {
        c.has_version = true;
        c.version = strtoull(vector_str(cmd, "version", NULL), NULL, 10);
    }
    if (json_object_get(cmd, "source"))
        c.source = vector_str(cmd, "source", &c.source_len);
    const char *op = vector_str(cmd, "op", NULL);
    c.op = CODEC_OP__COUNT;
    for (int o = 0; o < CODEC_OP__COUNT; o++)
        if (strcmp(op, codec_op_name((codec_op_t)o)) == 0)
            c.op = (codec_op_t)o;
    ck_assert_msg(c.op != CODEC_OP__COUNT, "unknown op %s", op);
    c.profile_msgpack = body->profile_msgpack;
    c.profile_msgpack_len = body->profile_msgpack_len;
    c.patch_msgpack = body->patch_msgpack;
    c.patch_msgpack_len = body->patch_msgpack_len;
    return c;
}

/* Decodes a valid or noncanonical vector and compares with its meaning. */
static void vector_decode_matches(const vector_t *v, const buf_t *bytes, json_t *meaning,
                                  codec_command_t *out)
{
    limits_t limits = limits_default();
    codec_failure_t failure;
    buf_t json = {0};
    size_t key_len;
    const char *key = vector_str(meaning, "key", &key_len);
    int rc =
        codec_decode(bytes->data, bytes->len, (const uint8_t *)key, key_len, &limits, out, &json, &failure);
    ck_assert_msg(rc == 0, "%s: %s (%s)", v->name, codec_error_name(failure.code), failure.message);

    codec_command_t want = vector_command(meaning, out);
    ck_assert_uint_eq(out->schema_version, want.schema_version);
    ck_assert_msg(out->op == want.op, "%s: op", v->name);
    ck_assert_mem_eq(out->command_id, want.command_id, CODEC_COMMAND_ID_BYTES);
    ck_assert_uint_eq(out->recipient_id_len, want.recipient_id_len);
    ck_assert_mem_eq(out->recipient_id, want.recipient_id, want.recipient_id_len);
    ck_assert_msg(out->accepted_at_us == want.accepted_at_us, "%s: accepted_at_us", v->name);
    ck_assert_msg(out->has_version == want.has_version && out->version == want.version, "%s: version",
                  v->name);
    ck_assert_msg((out->source == NULL) == (want.source == NULL), "%s: source presence", v->name);
    if (want.source) {
        ck_assert_uint_eq(out->source_len, want.source_len);
        ck_assert_mem_eq(out->source, want.source, want.source_len);
    }
    if (out->op == CODEC_OP_DELETE) {
        ck_assert_msg(json.len == 0 && !json_object_get(meaning, "profile_json"), "%s: a delete has no body",
                      v->name);
        buf_free(&json);
        return;
    }
    if (out->op == CODEC_OP_PATCH) {
        /* the operations written back canonically, then as JSON */
        buf_t canonical = {0};
        size_t used;
        jpatch_write_canonical(out->patch_msgpack, out->patch_msgpack_len, &canonical);
        ck_assert_int_eq(
            json_write_value(canonical.data, canonical.len, &limits, "patch", &used, &json, &failure), 0);
        buf_free(&canonical);
    }
    size_t profile_len;
    const char *profile =
        vector_str(meaning, out->op == CODEC_OP_PATCH ? "patch_json" : "profile_json", &profile_len);
    ck_assert_msg(json.len == profile_len && memcmp(json.data, profile, profile_len) == 0,
                  "%s: profile JSON differs:\n got  %.*s\n want %s", v->name, (int)json.len,
                  (const char *)json.data, profile);
    buf_free(&json);
}

START_TEST(valid_vectors)
{
    vectors_load();
    ck_assert_int_ge(vector_count[0], 20);
    for (int i = 0; i < vector_count[0]; i++) {
        const vector_t *v = &vectors[i];
        buf_t bytes = {0}, encoded = {0};
        json_t *meaning;
        vector_read(v, &bytes, &meaning);
        codec_command_t decoded;
        vector_decode_matches(v, &bytes, meaning, &decoded);

        /* encode(meaning): the envelope from the meaning file, the profile
         * bytes as decoded (the profile's own canonical form is checked by
         * vectors_check.py, which builds it from profile_json). */
        codec_command_t c = vector_command(meaning, &decoded);
        char errstr[256];
        ck_assert_msg(codec_encode(&c, &encoded, errstr, sizeof(errstr)) == 0, "%s: %s", v->name, errstr);
        ck_assert_msg(encoded.len == bytes.len && memcmp(encoded.data, bytes.data, bytes.len) == 0,
                      "%s: encode(meaning) differs from the vector bytes", v->name);

        /* Every truncation of a small vector is malformed. */
        if (bytes.len <= 4096) {
            limits_t limits = limits_default();
            size_t key_len;
            const char *key = vector_str(meaning, "key", &key_len);
            for (size_t cut = 0; cut < bytes.len; cut++) {
                codec_command_t scratch;
                codec_failure_t failure;
                buf_t json = {0};
                ck_assert_int_ne(codec_decode(bytes.data, cut, (const uint8_t *)key, key_len, &limits,
                                              &scratch, &json, &failure),
                                 0);
                ck_assert_msg(failure.code == CODEC_ERR_MALFORMED, "%s cut at %zu: %s", v->name, cut,
                              codec_error_name(failure.code));
                buf_free(&json);
            }
        }
        json_decref(meaning);
        buf_free(&bytes);
        buf_free(&encoded);
    }
}
END_TEST

START_TEST(noncanonical_vectors)
{
    vectors_load();
    ck_assert_int_ge(vector_count[1], 5);
    for (int i = 0; i < vector_count[1]; i++) {
        const vector_t *v = &vectors[vector_count[0] + i];
        buf_t bytes = {0}, encoded = {0};
        json_t *meaning;
        vector_read(v, &bytes, &meaning);
        codec_command_t decoded, again;
        vector_decode_matches(v, &bytes, meaning, &decoded);
        /* The canonical re-encoding means the same. */
        char errstr[256];
        ck_assert_msg(codec_encode(&decoded, &encoded, errstr, sizeof(errstr)) == 0, "%s: %s", v->name,
                      errstr);
        vector_decode_matches(v, &encoded, meaning, &again);
        json_decref(meaning);
        buf_free(&bytes);
        buf_free(&encoded);
    }
}
END_TEST

START_TEST(invalid_vectors)
{
    vectors_load();
    ck_assert_int_ge(vector_count[2], 40);
    bool seen[CODEC_ERR__COUNT] = {0};
    for (int i = 0; i < vector_count[2]; i++) {
        const vector_t *v = &vectors[vector_count[0] + vector_count[1] + i];
        buf_t bytes = {0}, json = {0};
        json_t *meaning;
        vector_read(v, &bytes, &meaning);
        json_t *key = json_object_get(meaning, "key");
        ck_assert_msg(json_is_string(key) || json_is_null(key), "%s: key must be a string or null", v->name);
        const char *want = vector_str(meaning, "error", NULL);
        limits_t limits = limits_default();
        codec_command_t c;
        codec_failure_t failure;
        int rc =
            codec_decode(bytes.data, bytes.len, key ? (const uint8_t *)json_string_value(key) : NULL,
                         json_is_string(key) ? json_string_length(key) : 0, &limits, &c, &json, &failure);
        ck_assert_msg(rc != 0, "%s: decodes, want %s", v->name, want);
        ck_assert_msg(strcmp(codec_error_name(failure.code), want) == 0, "%s: got %s (%s), want %s", v->name,
                      codec_error_name(failure.code), failure.message, want);
        ck_assert_msg(failure.message[0] != '\0', "%s: no message", v->name);
        ck_assert_uint_eq(json.len, 0);
        seen[failure.code] = true;
        json_decref(meaning);
        buf_free(&bytes);
        buf_free(&json);
    }
    /* Every error code has at least one vector. */
    for (int code = 1; code < CODEC_ERR__COUNT; code++)
        ck_assert_msg(seen[code], "no invalid vector for %s", codec_error_name((codec_error_t)code));
}
END_TEST

/* The api's side of the contract: a vector's request body, or failing that its
 * profile JSON, goes through the request transcoder to exactly the vector's
 * profile bytes (duplicate keys, number forms and escapes included). */
START_TEST(valid_vectors_from_json)
{
    vectors_load();
    int checked = 0;
    const limits_t limits = limits_default();
    for (int i = 0; i < vector_count[0]; i++) {
        const vector_t *v = &vectors[i];
        buf_t bytes = {0}, json = {0}, transcoded = {0};
        json_t *meaning;
        vector_read(v, &bytes, &meaning);
        codec_command_t decoded;
        codec_failure_t failure;
        const char *key = vector_str(meaning, "key", NULL);
        ck_assert_int_eq(codec_decode(bytes.data, bytes.len, (const uint8_t *)key, strlen(key), &limits,
                                      &decoded, &json, &failure),
                         0);
        json_t *request = json_object_get(meaning, "profile_request_json");
        /* A delete has no body; a patch's operations come from patch_json. */
        bool is_patch = decoded.op == CODEC_OP_PATCH;
        const char *profile = decoded.op == CODEC_OP_DELETE ? "null"
                              : is_patch                    ? vector_str(meaning, "patch_json", NULL)
                              : json_is_string(request)     ? json_string_value(request)
                                                            : vector_str(meaning, "profile_json", NULL);
        const uint8_t *want = is_patch ? decoded.patch_msgpack : decoded.profile_msgpack;
        size_t want_len = is_patch ? decoded.patch_msgpack_len : decoded.profile_msgpack_len;
        transcode_error_t error;
        int rc = transcode_value((const uint8_t *)profile, strlen(profile), &limits, &transcoded, &error);
        if (decoded.op == CODEC_OP_DELETE) {
            checked++;
        } else if (rc == 0 || error.status != TRANSCODE_ERR_LIMIT) {
            ck_assert_msg(rc == 0, "%s: %s", v->name, error.message);
            ck_assert_msg(transcoded.len == want_len && memcmp(transcoded.data, want, transcoded.len) == 0,
                          "%s: the transcoder's bytes differ from the vector's profile", v->name);
            checked++;
        }
        json_decref(meaning);
        buf_free(&bytes);
        buf_free(&json);
        buf_free(&transcoded);
    }
    /* Only vectors whose limits differ from the defaults may be left out. */
    ck_assert_int_ge(checked, vector_count[0] - 3);
}
END_TEST

Suite *vectors_suite(void)
{
    Suite *s = suite_create("vectors");
    TCase *tc = tcase_create("vectors");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, valid_vectors);
    tcase_add_test(tc, valid_vectors_from_json);
    tcase_add_test(tc, noncanonical_vectors);
    tcase_add_test(tc, invalid_vectors);
    suite_add_tcase(s, tc);
    return s;
}
