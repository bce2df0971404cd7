/*
 * Encode/decode round trips, the validation order, and the limits, on
 * commands built here. The golden vectors have their own suite
 * (test_vectors.c), the JSON writer too (test_json_write.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "json_write.h"
#include "mp.h"
#include "test_codec.h"

static const uint8_t test_id[CODEC_COMMAND_ID_BYTES] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                                        0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};

static codec_command_t test_command(const buf_t *profile)
{
    codec_command_t command = {
        .recipient_id = "alice",
        .recipient_id_len = 5,
        .accepted_at_us = 1700000000123456,
        .profile_msgpack = profile->data,
        .profile_msgpack_len = profile->len,
    };
    memcpy(command.command_id, test_id, sizeof(test_id));
    return command;
}

/* Decodes with the default limits and key "alice"; returns the error code. */
static codec_error_t test_decode(const buf_t *bytes, codec_command_t *command, buf_t *json)
{
    limits_t limits = limits_default();
    codec_failure_t failure;
    codec_command_t scratch;
    buf_t scratch_json = {0};
    int rc = codec_decode(bytes->data, bytes->len, (const uint8_t *)"alice", 5, &limits,
                          command ? command : &scratch, json ? json : &scratch_json, &failure);
    buf_free(&scratch_json);
    if (rc == 0)
        return CODEC_OK;
    ck_assert_int_ne(failure.code, CODEC_OK);
    ck_assert_msg(failure.message[0] != '\0', "a failure without a message");
    return failure.code;
}

START_TEST(round_trip_all_fields)
{
    buf_t profile = {0}, bytes = {0}, json = {0};
    char errstr[128];
    mp_write_map_header(&profile, 2);
    mp_write_str(&profile, "email", 5);
    mp_write_str(&profile, "a@example.com", 13);
    mp_write_str(&profile, "n", 1);
    mp_write_int(&profile, -5);
    codec_command_t in = test_command(&profile);
    in.has_version = true;
    in.version = UINT64_MAX;
    in.source = "crm";
    in.source_len = 3;
    ck_assert_int_eq(codec_encode(&in, &bytes, errstr, sizeof(errstr)), 0);

    codec_command_t out;
    ck_assert_int_eq(test_decode(&bytes, &out, &json), CODEC_OK);
    ck_assert_uint_eq(out.schema_version, 1);
    ck_assert_mem_eq(out.command_id, test_id, sizeof(test_id));
    ck_assert_uint_eq(out.recipient_id_len, 5);
    ck_assert_mem_eq(out.recipient_id, "alice", 5);
    ck_assert(out.accepted_at_us == in.accepted_at_us);
    ck_assert(out.has_version);
    ck_assert(out.version == UINT64_MAX);
    ck_assert_uint_eq(out.source_len, 3);
    ck_assert_mem_eq(out.source, "crm", 3);
    ck_assert_uint_eq(out.profile_msgpack_len, profile.len);
    ck_assert_mem_eq(out.profile_msgpack, profile.data, profile.len);
    buf_terminate(&json);
    ck_assert_str_eq((char *)json.data, "{\"email\":\"a@example.com\",\"n\":-5}");

    /* Re-encoding the decoded command gives the same bytes. */
    buf_t again = {0};
    ck_assert_int_eq(codec_encode(&out, &again, errstr, sizeof(errstr)), 0);
    ck_assert_uint_eq(again.len, bytes.len);
    ck_assert_mem_eq(again.data, bytes.data, bytes.len);
    buf_free(&again);
    buf_free(&profile);
    buf_free(&bytes);
    buf_free(&json);
}
END_TEST

START_TEST(round_trip_no_optionals)
{
    buf_t profile = {0}, bytes = {0};
    char errstr[128];
    mp_write_map_header(&profile, 0);
    codec_command_t in = test_command(&profile);
    ck_assert_int_eq(codec_encode(&in, &bytes, errstr, sizeof(errstr)), 0);
    /* fixmap of 6, "schema", 1 */
    ck_assert_uint_eq(bytes.data[0], 0x86);
    ck_assert_mem_eq(bytes.data + 1, "\xa6schema\x01", 8);
    codec_command_t out;
    ck_assert_int_eq(test_decode(&bytes, &out, NULL), CODEC_OK);
    ck_assert(!out.has_version);
    ck_assert_ptr_null(out.source);
    buf_free(&profile);
    buf_free(&bytes);
}
END_TEST

START_TEST(encode_rejects_bad_envelopes)
{
    buf_t profile = {0}, bytes = {0}, not_map = {0};
    char errstr[128];
    mp_write_map_header(&profile, 0);
    mp_write_array_header(&not_map, 0);

    codec_command_t c = test_command(&profile);
    c.recipient_id_len = 0;
    ck_assert_int_ne(codec_encode(&c, &bytes, errstr, sizeof(errstr)), 0);
    ck_assert_ptr_nonnull(strstr(errstr, "recipient_id"));

    c = test_command(&profile);
    c.recipient_id = "a\0b";
    c.recipient_id_len = 3;
    ck_assert_int_ne(codec_encode(&c, &bytes, errstr, sizeof(errstr)), 0);

    c = test_command(&profile);
    memset(c.command_id, 0, sizeof(c.command_id));
    ck_assert_int_ne(codec_encode(&c, &bytes, errstr, sizeof(errstr)), 0);
    ck_assert_ptr_nonnull(strstr(errstr, "command_id"));

    c = test_command(&not_map);
    ck_assert_int_ne(codec_encode(&c, &bytes, errstr, sizeof(errstr)), 0);
    ck_assert_ptr_nonnull(strstr(errstr, "profile"));

    ck_assert_uint_eq(bytes.len, 0);
    buf_free(&profile);
    buf_free(&not_map);
    buf_free(&bytes);
}
END_TEST

/* Writes a command field by field so tests can break one rule at a time. */
typedef struct test_fields {
    int omit;       /* codec field index to leave out, or -1 */
    int64_t schema; /* schema value */
    const char *op;
    const char *recipient;
    const buf_t *profile;
} test_fields_t;

static void test_write_fields(buf_t *out, const test_fields_t *f)
{
    static const char *const names[] = {"schema",         "op",     "command_id", "recipient_id",
                                        "accepted_at_us", "profile"};
    mp_write_map_header(out, f->omit >= 0 ? 5 : 6);
    for (int i = 0; i < 6; i++) {
        if (i == f->omit)
            continue;
        mp_write_str(out, names[i], (uint32_t)strlen(names[i]));
        switch (i) {
        case 0:
            mp_write_int(out, f->schema);
            break;
        case 1:
            mp_write_str(out, f->op, (uint32_t)strlen(f->op));
            break;
        case 2:
            mp_write_bin(out, test_id, sizeof(test_id));
            break;
        case 3:
            mp_write_str(out, f->recipient, (uint32_t)strlen(f->recipient));
            break;
        case 4:
            mp_write_int(out, 1);
            break;
        case 5:
            buf_append(out, f->profile->data, f->profile->len);
            break;
        }
    }
}

START_TEST(each_required_field_missing)
{
    buf_t profile = {0};
    mp_write_map_header(&profile, 0);
    for (int omit = 0; omit < 6; omit++) {
        buf_t bytes = {0};
        test_fields_t f = {
            .omit = omit, .schema = 1, .op = "replace", .recipient = "alice", .profile = &profile};
        test_write_fields(&bytes, &f);
        ck_assert_int_eq(test_decode(&bytes, NULL, NULL), CODEC_ERR_MISSING_FIELD);
        buf_free(&bytes);
    }
    buf_free(&profile);
}
END_TEST

START_TEST(schema_checked_before_other_fields)
{
    /* schema 2 with op missing: the version wins, because a v2 command may
     * legitimately lack v1's fields. */
    buf_t profile = {0}, bytes = {0};
    mp_write_map_header(&profile, 0);
    test_fields_t f = {.omit = 1, .schema = 2, .op = "", .recipient = "alice", .profile = &profile};
    test_write_fields(&bytes, &f);
    ck_assert_int_eq(test_decode(&bytes, NULL, NULL), CODEC_ERR_UNKNOWN_SCHEMA_VERSION);
    buf_reset(&bytes);
    f.schema = -1;
    test_write_fields(&bytes, &f);
    ck_assert_int_eq(test_decode(&bytes, NULL, NULL), CODEC_ERR_UNKNOWN_SCHEMA_VERSION);
    buf_free(&profile);
    buf_free(&bytes);
}
END_TEST

START_TEST(unknown_operation_and_key_mismatch)
{
    buf_t profile = {0}, bytes = {0};
    mp_write_map_header(&profile, 0);
    test_fields_t f = {.omit = -1, .schema = 1, .op = "upsert", .recipient = "alice", .profile = &profile};
    test_write_fields(&bytes, &f);
    ck_assert_int_eq(test_decode(&bytes, NULL, NULL), CODEC_ERR_UNKNOWN_OPERATION);
    buf_reset(&bytes);
    f.op = "replace";
    f.recipient = "bob";
    test_write_fields(&bytes, &f);
    ck_assert_int_eq(test_decode(&bytes, NULL, NULL), CODEC_ERR_KEY_MISMATCH);

    /* No key at all is a mismatch too. */
    limits_t limits = limits_default();
    codec_command_t command;
    codec_failure_t failure;
    buf_t json = {0};
    buf_reset(&bytes);
    f.recipient = "alice";
    test_write_fields(&bytes, &f);
    ck_assert_int_ne(codec_decode(bytes.data, bytes.len, NULL, 0, &limits, &command, &json, &failure), 0);
    ck_assert_int_eq(failure.code, CODEC_ERR_KEY_MISMATCH);
    ck_assert_uint_eq(json.len, 0);
    buf_free(&profile);
    buf_free(&bytes);
    buf_free(&json);
}
END_TEST

/* Every prefix of a valid command is malformed; every one-byte change
 * decodes or fails cleanly (ASan/UBSan watch). */
START_TEST(truncations_and_mutations)
{
    buf_t profile = {0}, bytes = {0};
    char errstr[128];
    mp_write_map_header(&profile, 3);
    mp_write_str(&profile, "list", 4);
    mp_write_array_header(&profile, 3);
    mp_write_int(&profile, -70000);
    mp_write_double(&profile, 0.5);
    mp_write_str(&profile, "x", 1);
    mp_write_str(&profile, "m", 1);
    mp_write_map_header(&profile, 1);
    mp_write_str(&profile, "k", 1);
    mp_write_nil(&profile);
    mp_write_str(&profile, "s", 1);
    mp_write_str(&profile, "\xc3\xa9t\xc3\xa9", 5);
    codec_command_t c = test_command(&profile);
    c.has_version = true;
    c.version = 7;
    ck_assert_int_eq(codec_encode(&c, &bytes, errstr, sizeof(errstr)), 0);
    ck_assert_int_eq(test_decode(&bytes, NULL, NULL), CODEC_OK);

    for (size_t cut = 0; cut < bytes.len; cut++) {
        buf_t prefix = {0};
        buf_append(&prefix, bytes.data, cut);
        ck_assert_int_eq(test_decode(&prefix, NULL, NULL), CODEC_ERR_MALFORMED);
        buf_free(&prefix);
    }
    for (size_t i = 0; i < bytes.len; i++) {
        for (unsigned v = 0; v < 256; v += 1) {
            buf_t mutated = {0};
            buf_append(&mutated, bytes.data, bytes.len);
            mutated.data[i] = (uint8_t)v;
            (void)test_decode(&mutated, NULL, NULL);
            buf_free(&mutated);
        }
    }
    buf_append_byte(&bytes, 0xc0);
    ck_assert_int_eq(test_decode(&bytes, NULL, NULL), CODEC_ERR_TRAILING_BYTES);
    buf_free(&profile);
    buf_free(&bytes);
}
END_TEST

/* A map header that claims 2^32-1 entries in a few bytes fails fast. */
START_TEST(huge_claimed_counts)
{
    static const uint8_t bytes[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0};
    buf_t b = {0};
    buf_append(&b, bytes, sizeof(bytes));
    ck_assert_int_eq(test_decode(&b, NULL, NULL), CODEC_ERR_MALFORMED);
    size_t consumed;
    ck_assert_int_ne(mp_skip(bytes, sizeof(bytes), &consumed), 0);
    buf_free(&b);
}
END_TEST

/* Builds a profile of `depth` nested maps {"d":{"d":...{}}}. */
static void test_nested(buf_t *out, uint32_t depth)
{
    for (uint32_t i = 1; i < depth; i++) {
        mp_write_map_header(out, 1);
        mp_write_str(out, "d", 1);
    }
    mp_write_map_header(out, 0);
}

static codec_error_t test_profile(const buf_t *profile, const limits_t *limits, buf_t *json, char *message,
                                  size_t message_size)
{
    size_t consumed;
    codec_failure_t failure;
    if (json_write_value(profile->data, profile->len, limits, "profile", &consumed, json, &failure) == 0) {
        ck_assert_uint_eq(consumed, profile->len);
        return CODEC_OK;
    }
    if (message)
        snprintf(message, message_size, "%s", failure.message);
    return failure.code;
}

START_TEST(limits_depth)
{
    limits_t limits = limits_default();
    buf_t p = {0}, json = {0};
    test_nested(&p, limits.max_depth);
    ck_assert_int_eq(test_profile(&p, &limits, &json, NULL, 0), CODEC_OK);
    buf_reset(&p);
    test_nested(&p, limits.max_depth + 1);
    char message[256];
    ck_assert_int_eq(test_profile(&p, &limits, &json, message, sizeof(message)), CODEC_ERR_LIMIT);
    ck_assert_msg(strstr(message, "profile.d.d.d") != NULL, "message: %s", message);
    /* A depth limit beyond the writer's on-stack frames. */
    limits.max_depth = 1000;
    buf_reset(&p);
    test_nested(&p, 1000);
    ck_assert_int_eq(test_profile(&p, &limits, &json, NULL, 0), CODEC_OK);
    buf_reset(&p);
    test_nested(&p, 1001);
    ck_assert_int_eq(test_profile(&p, &limits, &json, NULL, 0), CODEC_ERR_LIMIT);
    /* An absurd configured limit costs frames for the input only. */
    limits.max_depth = UINT32_MAX;
    ck_assert_int_eq(test_profile(&p, &limits, &json, NULL, 0), CODEC_OK);
    buf_free(&p);
    buf_free(&json);
}
END_TEST

START_TEST(limits_sizes)
{
    limits_t limits = limits_default();
    buf_t p = {0}, json = {0};
    char *big = malloc(limits.max_string_bytes + 1);
    memset(big, 'x', limits.max_string_bytes + 1);
    char message[256];

    /* Key bytes: at the limit and one over. */
    for (uint32_t extra = 0; extra < 2; extra++) {
        buf_reset(&p);
        mp_write_map_header(&p, 1);
        mp_write_str(&p, big, limits.max_key_bytes + extra);
        mp_write_nil(&p);
        ck_assert_int_eq(test_profile(&p, &limits, &json, NULL, 0), extra ? CODEC_ERR_LIMIT : CODEC_OK);
    }
    /* String bytes. */
    for (uint32_t extra = 0; extra < 2; extra++) {
        buf_reset(&p);
        mp_write_map_header(&p, 1);
        mp_write_str(&p, "s", 1);
        mp_write_str(&p, big, limits.max_string_bytes + extra);
        ck_assert_int_eq(test_profile(&p, &limits, &json, message, sizeof(message)),
                         extra ? CODEC_ERR_LIMIT : CODEC_OK);
    }
    ck_assert_msg(strstr(message, "profile.s:") != NULL, "message: %s", message);
    /* Entries per map and elements per array. */
    for (uint32_t extra = 0; extra < 2; extra++) {
        buf_reset(&p);
        mp_write_map_header(&p, limits.max_keys + extra);
        for (uint32_t i = 0; i < limits.max_keys + extra; i++) {
            char key[16];
            int n = snprintf(key, sizeof(key), "k%u", i);
            mp_write_str(&p, key, (uint32_t)n);
            mp_write_uint(&p, i);
        }
        ck_assert_int_eq(test_profile(&p, &limits, &json, NULL, 0), extra ? CODEC_ERR_LIMIT : CODEC_OK);
        buf_reset(&p);
        mp_write_map_header(&p, 1);
        mp_write_str(&p, "a", 1);
        mp_write_array_header(&p, limits.max_keys + extra);
        for (uint32_t i = 0; i < limits.max_keys + extra; i++)
            mp_write_nil(&p);
        ck_assert_int_eq(test_profile(&p, &limits, &json, message, sizeof(message)),
                         extra ? CODEC_ERR_LIMIT : CODEC_OK);
    }
    ck_assert_msg(strstr(message, "profile.a:") != NULL, "message: %s", message);
    free(big);
    buf_free(&p);
    buf_free(&json);
}
END_TEST

START_TEST(failure_paths_name_the_value)
{
    limits_t limits = limits_default();
    buf_t p = {0}, json = {0};
    char message[256];
    mp_write_map_header(&p, 1);
    mp_write_str(&p, "tags", 4);
    mp_write_array_header(&p, 3);
    mp_write_str(&p, "a", 1);
    mp_write_map_header(&p, 0);
    mp_write_str(&p, "b\0c", 3);
    ck_assert_int_eq(test_profile(&p, &limits, &json, message, sizeof(message)), CODEC_ERR_NUL_IN_STRING);
    ck_assert_msg(strncmp(message, "profile.tags[2]:", 16) == 0, "message: %s", message);
    ck_assert_uint_eq(json.len, 0); /* a failure leaves the output as it was */

    /* A hostile key shows up sanitised in the message. */
    buf_reset(&p);
    mp_write_map_header(&p, 1);
    mp_write_str(&p, "a\nb\xff", 4);
    mp_write_map_header(&p, 1);
    mp_write_uint(&p, 1);
    mp_write_nil(&p);
    ck_assert_int_eq(test_profile(&p, &limits, &json, message, sizeof(message)), CODEC_ERR_INVALID_UTF8);
    buf_reset(&p);
    mp_write_map_header(&p, 1);
    mp_write_str(&p, "a\nb", 3);
    mp_write_map_header(&p, 1);
    mp_write_uint(&p, 1);
    mp_write_nil(&p);
    ck_assert_int_eq(test_profile(&p, &limits, &json, message, sizeof(message)), CODEC_ERR_NON_STRING_KEY);
    ck_assert_msg(strncmp(message, "profile.a?b:", 12) == 0, "message: %s", message);
    buf_free(&p);
    buf_free(&json);
}
END_TEST

Suite *codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, round_trip_all_fields);
    tcase_add_test(tc, round_trip_no_optionals);
    tcase_add_test(tc, encode_rejects_bad_envelopes);
    tcase_add_test(tc, each_required_field_missing);
    tcase_add_test(tc, schema_checked_before_other_fields);
    tcase_add_test(tc, unknown_operation_and_key_mismatch);
    tcase_add_test(tc, truncations_and_mutations);
    tcase_add_test(tc, huge_claimed_counts);
    tcase_add_test(tc, limits_depth);
    tcase_add_test(tc, limits_sizes);
    tcase_add_test(tc, failure_paths_name_the_value);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(codec_suite());
    srunner_add_suite(sr, json_write_suite());
    srunner_add_suite(sr, vectors_suite());
    srunner_add_suite(sr, differential_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
