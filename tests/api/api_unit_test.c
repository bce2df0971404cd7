/*
 * Unit tests of the api's pure parts: routing, recipient-id decoding, API
 * keys, error bodies, command ids (SHA-256), and the connection table.
 */
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "http_auth.h"
#include "http_error.h"
#include "http_ids.h"
#include "http_route.h"
#include "sha256.h"

/* ---- routing ------------------------------------------------------------ */

typedef struct route_case {
    const char *target;
    http_route_t route;
    const char *segment; /* expected raw segment for PROFILE */
} route_case_t;

static const route_case_t route_cases[] = {
    {"/profiles/abc", HTTP_ROUTE_PROFILE, "abc"},
    {"/profiles/abc?x=1", HTTP_ROUTE_PROFILE, "abc"},
    {"/profiles/a%2Fb", HTTP_ROUTE_PROFILE, "a%2Fb"},
    {"/profiles/", HTTP_ROUTE_PROFILE, ""},
    {"/profiles/?q", HTTP_ROUTE_PROFILE, ""},
    {"http://example.com/profiles/u1", HTTP_ROUTE_PROFILE, "u1"},
    {"/profiles", HTTP_ROUTE_NOT_FOUND, NULL},
    {"/profiles/a/b", HTTP_ROUTE_NOT_FOUND, NULL},
    {"/profile/a", HTTP_ROUTE_NOT_FOUND, NULL},
    {"/PROFILES/a", HTTP_ROUTE_NOT_FOUND, NULL},
    {"/", HTTP_ROUTE_NOT_FOUND, NULL},
    {"/healthz", HTTP_ROUTE_HEALTHZ, NULL},
    {"/healthz?verbose", HTTP_ROUTE_HEALTHZ, NULL},
    {"/healthz/", HTTP_ROUTE_NOT_FOUND, NULL},
    {"/readyz", HTTP_ROUTE_READYZ, NULL},
    {"/metrics", HTTP_ROUTE_METRICS, NULL},
    {"/metricsx", HTTP_ROUTE_NOT_FOUND, NULL},
    {"*", HTTP_ROUTE_NOT_FOUND, NULL},
    {"http://example.com", HTTP_ROUTE_NOT_FOUND, NULL},
};

START_TEST(test_route_table)
{
    const route_case_t *c = &route_cases[_i];
    const char *segment = NULL;
    size_t segment_len = 0;
    http_route_t route = http_route_match(c->target, &segment, &segment_len);
    ck_assert_msg(route == c->route, "%s: route %s, expected %s", c->target, http_route_name(route),
                  http_route_name(c->route));
    if (c->segment) {
        ck_assert_uint_eq(segment_len, strlen(c->segment));
        ck_assert_msg(memcmp(segment, c->segment, segment_len) == 0, "%s: segment", c->target);
    }
}
END_TEST

/* ---- recipient id ------------------------------------------------------- */

typedef struct id_case {
    const char *segment;
    int rc;
    const char *decoded;    /* when rc == 0 */
    const char *error_part; /* when rc == -1: a substring of the message */
} id_case_t;

static const id_case_t id_cases[] = {
    {"user-1", 0, "user-1", NULL},
    {"a%2Fb", 0, "a/b", NULL},
    {"a%2fb", 0, "a/b", NULL},
    {"%E2%82%AC", 0, "\xE2\x82\xAC", NULL},
    {"\xE2\x82\xAC", 0, "\xE2\x82\xAC", NULL},
    {"a+b", 0, "a+b", NULL},
    {"%25", 0, "%", NULL},
    {"", -1, NULL, "must not be empty"},
    {"%", -1, NULL, "invalid percent-escape at byte 0"},
    {"ab%2", -1, NULL, "invalid percent-escape at byte 2"},
    {"ab%zz", -1, NULL, "invalid percent-escape"},
    {"%G0", -1, NULL, "invalid percent-escape"},
    {"%FF", -1, NULL, "valid UTF-8"},
    {"%C0%AF", -1, NULL, "valid UTF-8"},    /* overlong slash */
    {"%ED%A0%80", -1, NULL, "valid UTF-8"}, /* surrogate */
    {"\xC3", -1, NULL, "valid UTF-8"},      /* truncated */
    {"a%00b", -1, NULL, "U+0000"},
};

START_TEST(test_recipient_id_table)
{
    const id_case_t *c = &id_cases[_i];
    char out[HTTP_RECIPIENT_ID_CAP];
    char errstr[256] = "";
    size_t out_len = 0;
    int rc = http_recipient_id_decode(c->segment, strlen(c->segment), out, &out_len, errstr, sizeof(errstr));
    ck_assert_msg(rc == c->rc, "\"%s\": rc %d (%s)", c->segment, rc, errstr);
    if (rc == 0) {
        ck_assert_uint_eq(out_len, strlen(c->decoded));
        ck_assert_str_eq(out, c->decoded);
    } else {
        ck_assert_msg(strstr(errstr, c->error_part) != NULL, "\"%s\": message \"%s\" lacks \"%s\"",
                      c->segment, errstr, c->error_part);
        ck_assert_msg(strncmp(errstr, "recipient_id", 12) == 0, "message names recipient_id: %s", errstr);
    }
}
END_TEST

START_TEST(test_recipient_id_length_bounds)
{
    char segment[1024], out[HTTP_RECIPIENT_ID_CAP], errstr[256];
    size_t out_len;
    memset(segment, 'x', 256);
    ck_assert_int_eq(http_recipient_id_decode(segment, 256, out, &out_len, errstr, sizeof(errstr)), 0);
    ck_assert_uint_eq(out_len, 256);
    ck_assert_int_eq(http_recipient_id_decode(segment, 257, out, &out_len, errstr, sizeof(errstr)), -1);
    ck_assert_ptr_nonnull(strstr(errstr, "at most 256 bytes"));
    /* 256 decoded bytes from 768 encoded ones are fine; 257 are not. */
    for (int i = 0; i < 257; i++)
        memcpy(segment + 3 * i, "%41", 3);
    ck_assert_int_eq(http_recipient_id_decode(segment, 768, out, &out_len, errstr, sizeof(errstr)), 0);
    ck_assert_uint_eq(out_len, 256);
    ck_assert_int_eq(http_recipient_id_decode(segment, 771, out, &out_len, errstr, sizeof(errstr)), -1);
}
END_TEST

/* ---- API keys ------------------------------------------------------------ */

START_TEST(test_ct_equal)
{
    const uint8_t a[] = {1, 2, 3, 4}, b[] = {1, 2, 3, 4}, c[] = {1, 2, 3, 5}, d[] = {0, 2, 3, 4};
    ck_assert(http_ct_equal(a, b, 4));
    ck_assert(!http_ct_equal(a, c, 4));
    ck_assert(!http_ct_equal(a, d, 4));
    ck_assert(http_ct_equal(a, c, 3));
    ck_assert(http_ct_equal(a, d, 0));
}
END_TEST

START_TEST(test_keys_list_and_authorization)
{
    char errstr[256];
    http_keys_t *keys = http_keys_new();
    ck_assert_int_eq(http_keys_add_list(keys, " alpha , beta,,gamma ", errstr, sizeof(errstr)), 0);
    ck_assert_uint_eq(http_keys_count(keys), 3);
    ck_assert(http_keys_match(keys, "alpha", 5));
    ck_assert(http_keys_match(keys, "beta", 4));
    ck_assert(http_keys_match(keys, "gamma", 5));
    ck_assert(!http_keys_match(keys, "alph", 4));
    ck_assert(!http_keys_match(keys, "alphaa", 6));
    ck_assert(!http_keys_match(keys, "", 0));

    ck_assert(http_keys_check_authorization(keys, "Bearer alpha"));
    ck_assert(http_keys_check_authorization(keys, "bearer   gamma  "));
    ck_assert(http_keys_check_authorization(keys, "BEARER\tbeta"));
    ck_assert(!http_keys_check_authorization(keys, NULL));
    ck_assert(!http_keys_check_authorization(keys, ""));
    ck_assert(!http_keys_check_authorization(keys, "Bearer"));
    ck_assert(!http_keys_check_authorization(keys, "Bearer "));
    ck_assert(!http_keys_check_authorization(keys, "Beareralpha"));
    ck_assert(!http_keys_check_authorization(keys, "Basic alpha"));
    ck_assert(!http_keys_check_authorization(keys, "Bearer delta"));
    ck_assert(!http_keys_check_authorization(keys, "alpha"));

    ck_assert_int_eq(http_keys_add_list(keys, "bad key", errstr, sizeof(errstr)), -1);
    ck_assert_ptr_nonnull(strstr(errstr, "API key number 4"));
    ck_assert_ptr_null(strstr(errstr, "bad")); /* never echo a key */
    http_keys_destroy(keys);
}
END_TEST

START_TEST(test_keys_file)
{
    char path[] = "/tmp/profiled-api-keys-XXXXXX", errstr[256];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char text[] = "# comment\n\n  one  \r\ntwo\n#three\nfour";
    ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    http_keys_t *keys = http_keys_new();
    ck_assert_int_eq(http_keys_add_file(keys, path, errstr, sizeof(errstr)), 0);
    ck_assert_uint_eq(http_keys_count(keys), 3);
    ck_assert(http_keys_check_authorization(keys, "Bearer one"));
    ck_assert(http_keys_check_authorization(keys, "Bearer two"));
    ck_assert(http_keys_check_authorization(keys, "Bearer four"));
    ck_assert(!http_keys_check_authorization(keys, "Bearer #three"));
    unlink(path);
    ck_assert_int_eq(http_keys_add_file(keys, path, errstr, sizeof(errstr)), -1);
    ck_assert_ptr_nonnull(strstr(errstr, "No such file"));
    http_keys_destroy(keys);
}
END_TEST

/* ---- error bodies -------------------------------------------------------- */

START_TEST(test_error_types)
{
    ck_assert_str_eq(http_error_type(400), "invalid_request_error");
    ck_assert_str_eq(http_error_type(404), "invalid_request_error");
    ck_assert_str_eq(http_error_type(405), "invalid_request_error");
    ck_assert_str_eq(http_error_type(409), "invalid_request_error");
    ck_assert_str_eq(http_error_type(413), "invalid_request_error");
    ck_assert_str_eq(http_error_type(408), "invalid_request_error");
    ck_assert_str_eq(http_error_type(431), "invalid_request_error");
    ck_assert_str_eq(http_error_type(501), "api_error");
    ck_assert_str_eq(http_error_type(401), "authentication_error");
    ck_assert_str_eq(http_error_type(403), "authorization_error");
    ck_assert_str_eq(http_error_type(429), "rate_limit_error");
    ck_assert_str_eq(http_error_type(500), "api_error");
    ck_assert_str_eq(http_error_type(503), "api_error");
}
END_TEST

/* Every error body parses as JSON with exactly message and type, whatever the message holds. */
START_TEST(test_error_body_is_json)
{
    static const char *const messages[] = {
        "plain",
        "quote \" backslash \\ newline \n tab \t",
        "control \x01\x1f del \x7f",
        "utf-8 \xE2\x82\xAC ok",
        "broken utf-8 \xFF\xC3 end",
        "",
    };
    for (size_t i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
        buf_t body = {0};
        http_error_body(&body, 400, messages[i]);
        json_error_t jerr;
        json_t *root = json_loadb((const char *)body.data, body.len, 0, &jerr);
        ck_assert_msg(root != NULL, "message %zu: %s in %.*s", i, jerr.text, (int)body.len, body.data);
        ck_assert_uint_eq(json_object_size(root), 2);
        ck_assert_str_eq(json_string_value(json_object_get(root, "type")), "invalid_request_error");
        const char *message = json_string_value(json_object_get(root, "message"));
        ck_assert_ptr_nonnull(message);
        if (i == 0 || i == 1 || i == 3 || i == 5)
            ck_assert_str_eq(message, messages[i]);
        if (i == 4)
            ck_assert_str_eq(message, "broken utf-8 \xEF\xBF\xBD\xEF\xBF\xBD end");
        json_decref(root);
        buf_free(&body);
    }
}
END_TEST

START_TEST(test_error_body_exact)
{
    buf_t body = {0};
    http_error_body(&body, 401, "missing key");
    buf_terminate(&body);
    ck_assert_str_eq((const char *)body.data,
                     "{\"message\":\"missing key\",\"type\":\"authentication_error\"}");
    buf_free(&body);
}
END_TEST

/* ---- SHA-256 and command ids --------------------------------------------- */

static void hex(const uint8_t *bytes, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", bytes[i]);
}

START_TEST(test_sha256_vectors)
{
    /* FIPS 180-4 examples and the one-million-'a' vector. */
    uint8_t digest[SHA256_DIGEST_BYTES];
    char text[65];
    sha256("abc", 3, digest);
    hex(digest, 32, text);
    ck_assert_str_eq(text, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256("", 0, digest);
    hex(digest, 32, text);
    ck_assert_str_eq(text, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256(two_blocks, strlen(two_blocks), digest);
    hex(digest, 32, text);
    ck_assert_str_eq(text, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    sha256_t sha;
    sha256_init(&sha);
    char chunk[1001];
    memset(chunk, 'a', sizeof(chunk));
    for (int i = 0; i < 1000; i++)
        sha256_update(&sha, chunk, i % 2 ? 999 : 1001); /* uneven pieces cross block boundaries */
    sha256_final(&sha, digest);
    hex(digest, 32, text);
    ck_assert_str_eq(text, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

START_TEST(test_command_ids)
{
    uint8_t a[HTTP_COMMAND_ID_BYTES], b[HTTP_COMMAND_ID_BYTES], c[HTTP_COMMAND_ID_BYTES];
    char text[HTTP_COMMAND_ID_TEXT];
    http_command_id_from_key("key-1", 5, "user", 4, a);
    http_command_id_from_key("key-1", 5, "user", 4, b);
    ck_assert_mem_eq(a, b, sizeof(a));
    http_command_id_from_key("key-1", 5, "user2", 5, c);
    ck_assert(memcmp(a, c, sizeof(a)) != 0);
    /* The separator keeps ("ab","c") and ("a","bc") apart. */
    http_command_id_from_key("ab", 2, "c", 1, b);
    http_command_id_from_key("a", 1, "bc", 2, c);
    ck_assert(memcmp(b, c, sizeof(b)) != 0);

    http_command_id_format(a, text);
    ck_assert_uint_eq(strlen(text), 36);
    ck_assert_int_eq(text[8], '-');
    ck_assert_int_eq(text[14], '8'); /* version 8 */
    ck_assert(strchr("89ab", text[19]) != NULL);

    /* The derivation is SHA-256(key || 0 || id) truncated, with the UUID bits set. */
    uint8_t digest[SHA256_DIGEST_BYTES];
    sha256("key-1\0user", 10, digest);
    digest[6] = (uint8_t)((digest[6] & 0x0f) | 0x80);
    digest[8] = (uint8_t)((digest[8] & 0x3f) | 0x80);
    ck_assert_mem_eq(a, digest, HTTP_COMMAND_ID_BYTES);

    ck_assert_int_eq(http_command_id_random(a), 0);
    ck_assert_int_eq(http_command_id_random(b), 0);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
    http_command_id_format(a, text);
    ck_assert_int_eq(text[14], '4');

    char errstr[128];
    ck_assert_int_eq(http_idempotency_key_check("abc-123", errstr, sizeof(errstr)), 0);
    ck_assert_int_eq(http_idempotency_key_check("", errstr, sizeof(errstr)), -1);
    ck_assert_ptr_nonnull(strstr(errstr, "Idempotency-Key"));
    ck_assert_int_eq(http_idempotency_key_check("a\x01", errstr, sizeof(errstr)), -1);
    char long_key[300];
    memset(long_key, 'k', 256);
    long_key[256] = '\0';
    ck_assert_int_eq(http_idempotency_key_check(long_key, errstr, sizeof(errstr)), -1);
    long_key[255] = '\0';
    ck_assert_int_eq(http_idempotency_key_check(long_key, errstr, sizeof(errstr)), 0);
}
END_TEST

static Suite *api_unit_suite(void)
{
    Suite *suite = suite_create("api_unit");
    TCase *tc = tcase_create("route");
    tcase_add_loop_test(tc, test_route_table, 0, (int)(sizeof(route_cases) / sizeof(route_cases[0])));
    suite_add_tcase(suite, tc);
    tc = tcase_create("recipient_id");
    tcase_add_loop_test(tc, test_recipient_id_table, 0, (int)(sizeof(id_cases) / sizeof(id_cases[0])));
    tcase_add_test(tc, test_recipient_id_length_bounds);
    suite_add_tcase(suite, tc);
    tc = tcase_create("auth");
    tcase_add_test(tc, test_ct_equal);
    tcase_add_test(tc, test_keys_list_and_authorization);
    tcase_add_test(tc, test_keys_file);
    suite_add_tcase(suite, tc);
    tc = tcase_create("error_body");
    tcase_add_test(tc, test_error_types);
    tcase_add_test(tc, test_error_body_is_json);
    tcase_add_test(tc, test_error_body_exact);
    suite_add_tcase(suite, tc);
    tc = tcase_create("ids");
    tcase_add_test(tc, test_sha256_vectors);
    tcase_add_test(tc, test_command_ids);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(api_unit_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
