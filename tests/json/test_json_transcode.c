/*
 * json_transcode unit tests: tables of inputs with the exact msgpack bytes
 * (as hex) or the exact error they must give.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_transcode.h"
#include "transcode_schema.h"

static char hex_out[1 << 16];

static const char *hex(const buf_t *buf, size_t from)
{
    size_t n = 0;
    for (size_t i = from; i < buf->len && n + 3 < sizeof(hex_out); i++)
        n += (size_t)snprintf(hex_out + n, sizeof(hex_out) - n, "%02x", buf->data[i]);
    hex_out[n] = '\0';
    return hex_out;
}

typedef struct ok_case {
    const char *json;
    const char *msgpack_hex;
} ok_case_t;

typedef struct bad_case {
    const char *json;
    size_t len; /* 0: strlen */
    transcode_status_t status;
    const char *message; /* exact, or NULL to skip */
} bad_case_t;

static int run_value(const char *json, size_t len, const limits_t *limits, buf_t *out,
                     transcode_error_t *error)
{
    return transcode_value((const uint8_t *)json, len ? len : strlen(json), limits, out, error);
}

static int run_request(const char *json, const limits_t *limits, buf_t *out, transcode_error_t *error)
{
    return transcode_profile_request((const uint8_t *)json, strlen(json), limits, out, error);
}

/* ---- grammar ----------------------------------------------------------- */

static const ok_case_t accept_cases[] = {
    {"null", "c0"},
    {"true", "c3"},
    {"false", "c2"},
    {" \t\r\n1 \t\r\n", "01"},
    {"\"\"", "a0"},
    {"\"abc\"", "a3616263"},
    {"[]", "90"},
    {"{}", "80"},
    {"[1,[2,[3]],{}]", "93019202910380"},
    {"{\"a\":[true,false,null]}", "81a16193c3c2c0"},
    {"{ \"a\" : 1 , \"b\" : { } }", "82a16101a16280"},
    {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "a8225c2f080c0a0d09"},
    {"\"\\u0041\\u00e9\\u20AC\"", "a641c3a9e282ac"},
    {"\"\\ud83d\\ude00\"", "a4f09f9880"},
    {"\"\\uDBFF\\uDFFF\"", "a4f48fbfbf"},
    {"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "a9c3a9e282acf09f9880"},
    {"\"\xef\xbb\xbf\"", "a3efbbbf"}, /* a BOM inside a string is just a character */
};

static const bad_case_t reject_cases[] = {
    {"", 0, TRANSCODE_ERR_SYNTAX, "value: invalid JSON: unexpected end of input, expected a value"},
    {"   ", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"[1 2]", 0, TRANSCODE_ERR_SYNTAX, "value[0]: invalid JSON at byte 3: expected ',' or ']'"},
    {"[1,]", 0, TRANSCODE_ERR_SYNTAX, "value[1]: invalid JSON at byte 3: expected a value"},
    {"{\"a\":1,}", 0, TRANSCODE_ERR_SYNTAX, "value: invalid JSON at byte 7: expected a string key"},
    {"{\"a\" 1}", 0, TRANSCODE_ERR_SYNTAX, "value.a: invalid JSON at byte 5: expected ':' after a key"},
    {"{1:1}", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"{'a':1}", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"[", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"]", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"[1]]", 0, TRANSCODE_ERR_SYNTAX, "value: invalid JSON at byte 3: unexpected data after the JSON value"},
    {"1 2", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"01", 0, TRANSCODE_ERR_SYNTAX, "value: invalid JSON at byte 1: leading zero in a number"},
    {"-01", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"+1", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {".5", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"1.", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"1.e5", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"1e", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"1e+", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"-", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"- 1", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"0x10", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"NaN", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"Infinity", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"-Infinity", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"tru", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"True", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"nul", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"falsey", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"abc", 0, TRANSCODE_ERR_SYNTAX, "value: invalid JSON: unexpected end of input, unterminated string"},
    {"\"a\tb\"", 0, TRANSCODE_ERR_SYNTAX,
     "value: invalid JSON at byte 2: unescaped control character in string"},
    {"\"a\nb\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\x1f\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\x41\"", 0, TRANSCODE_ERR_SYNTAX, "value: invalid JSON at byte 2: invalid escape in string"},
    {"\"\\u12\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\u12G4\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\U0041\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\'\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\u0000\"", 0, TRANSCODE_ERR_SYNTAX,
     "value: invalid JSON at byte 1: \\u0000 is not allowed (PostgreSQL jsonb cannot store U+0000)"},
    {"\"a\0b\"", 5, TRANSCODE_ERR_SYNTAX, "value: invalid JSON at byte 2: NUL byte in string"},
    {"[1]\0", 4, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\ud800\"", 0, TRANSCODE_ERR_SYNTAX,
     "value: invalid JSON at byte 1: high surrogate escape not followed by a low one"},
    {"\"\\ud800x\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\ud800\\u0041\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\ud800\\ud800\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\\udc00\\ud800\"", 0, TRANSCODE_ERR_SYNTAX,
     "value: invalid JSON at byte 1: lone low surrogate escape"},
    {"\"\\udfff\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    /* UTF-8: stray continuation, overlong, encoded surrogate, beyond U+10FFFF, truncated */
    {"\"\x80\"", 0, TRANSCODE_ERR_SYNTAX, "value: invalid JSON at byte 1: invalid UTF-8 in string"},
    {"\"\xc0\xaf\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\xe0\x80\xaf\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\xed\xa0\x80\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\xf4\x90\x80\x80\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\xf5\x80\x80\x80\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\xff\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\xe2\x82\"", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\"\xe2\x82", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\xef\xbb\xbf{}", 0, TRANSCODE_ERR_SYNTAX, NULL}, /* a BOM before the text */
    {"{\"a\x80\":1}", 0, TRANSCODE_ERR_SYNTAX, "value: invalid JSON at byte 3: invalid UTF-8 in string"},
    {"{\"\\u0000\":1}", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"[1e400]", 0, TRANSCODE_ERR_SYNTAX, "value[0]: number at byte 1 is beyond the range of a double"},
    {"-1e400", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"1e99999999999999999999", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"/*c*/1", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\f1", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\v1", 0, TRANSCODE_ERR_SYNTAX, NULL},
    {"\xc2\xa0"
     "1",
     0, TRANSCODE_ERR_SYNTAX, NULL}, /* no-break space is not JSON whitespace */
};

START_TEST(test_accept)
{
    limits_t limits = limits_default();
    const ok_case_t *c = &accept_cases[_i];
    buf_t out = {0};
    transcode_error_t error;
    int rc = run_value(c->json, 0, &limits, &out, &error);
    ck_assert_msg(rc == 0, "%s: %s", c->json, error.message);
    ck_assert_str_eq(hex(&out, 0), c->msgpack_hex);
    buf_free(&out);
}
END_TEST

START_TEST(test_reject)
{
    limits_t limits = limits_default();
    const bad_case_t *c = &reject_cases[_i];
    buf_t out = {0};
    transcode_error_t error;
    int rc = run_value(c->json, c->len, &limits, &out, &error);
    ck_assert_msg(rc == -1, "accepted #%d: %s", _i, c->json);
    ck_assert_int_eq(error.status, c->status);
    if (c->message)
        ck_assert_str_eq(error.message, c->message);
    buf_free(&out);
}
END_TEST

/* ---- numbers: canonical forms ----------------------------------------- */

static const ok_case_t number_cases[] = {
    {"0", "00"},
    {"-0", "00"}, /* JSON -0 is the integer 0 */
    {"127", "7f"},
    {"128", "cc80"},
    {"255", "ccff"},
    {"256", "cd0100"},
    {"65535", "cdffff"},
    {"65536", "ce00010000"},
    {"4294967295", "ceffffffff"},
    {"4294967296", "cf0000000100000000"},
    {"9223372036854775807", "cf7fffffffffffffff"},
    {"18446744073709551615", "cfffffffffffffffff"},
    {"18446744073709551616", "cb43f0000000000000"}, /* 2^64: past uint64, a double */
    {"-1", "ff"},
    {"-32", "e0"},
    {"-33", "d0df"},
    {"-128", "d080"},
    {"-129", "d1ff7f"},
    {"-32768", "d18000"},
    {"-32769", "d2ffff7fff"},
    {"-2147483648", "d280000000"},
    {"-2147483649", "d3ffffffff7fffffff"},
    {"-9223372036854775808", "d38000000000000000"},
    {"-9223372036854775809", "cbc3e0000000000000"},
    {"1.0", "cb3ff0000000000000"},
    {"-0.0", "cb8000000000000000"},
    {"1e0", "cb3ff0000000000000"},
    {"1E2", "cb4059000000000000"},
    {"1e+2", "cb4059000000000000"},
    {"100e-2", "cb3ff0000000000000"},
    {"0.1", "cb3fb999999999999a"},
    {"-2.5", "cbc004000000000000"},
    {"0.30000000000000004", "cb3fd3333333333334"},
    {"1.7976931348623157e308", "cb7fefffffffffffff"},
    {"4.9406564584124654e-324", "cb0000000000000001"},
    {"2.2250738585072014e-308", "cb0010000000000000"},
    {"1e-400", "cb0000000000000000"}, /* underflow rounds to zero, as strtod and jansson do */
    {"123456789012345678901234567890", "cb45f8ee90ff6c373e"},
    {"0.000000000000000000000000000001", "cb39b4484bfeebc2a0"},
    {"9007199254740993", "cf0020000000000001"},   /* exact as an integer */
    {"9007199254740993.0", "cb4340000000000000"}, /* rounds to even as a double */
};

START_TEST(test_numbers)
{
    limits_t limits = limits_default();
    const ok_case_t *c = &number_cases[_i];
    buf_t out = {0};
    transcode_error_t error;
    ck_assert_msg(run_value(c->json, 0, &limits, &out, &error) == 0, "%s: %s", c->json, error.message);
    ck_assert_msg(strcmp(hex(&out, 0), c->msgpack_hex) == 0, "%s: got %s want %s", c->json, hex(&out, 0),
                  c->msgpack_hex);
    buf_free(&out);
}
END_TEST

/* ---- header widths: strings, arrays, maps ------------------------------ */

static char *repeat_string(size_t n)
{
    char *json = malloc(n + 3);
    json[0] = '"';
    memset(json + 1, 'x', n);
    json[n + 1] = '"';
    json[n + 2] = '\0';
    return json;
}

START_TEST(test_string_headers)
{
    static const struct {
        size_t n;
        const char *prefix;
    } cases[] = {
        {31, "bf"}, {32, "d920"}, {255, "d9ff"}, {256, "da0100"}, {65535, "daffff"}, {65536, "db00010000"},
    };
    limits_t limits = limits_default();
    limits.max_string_bytes = 100000;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *json = repeat_string(cases[i].n);
        buf_t out = {0};
        transcode_error_t error;
        ck_assert_int_eq(run_value(json, 0, &limits, &out, &error), 0);
        size_t hl = strlen(cases[i].prefix) / 2;
        ck_assert_uint_eq(out.len, hl + cases[i].n);
        buf_t head = {.data = out.data, .len = hl};
        ck_assert_str_eq(hex(&head, 0), cases[i].prefix);
        ck_assert_int_eq(out.data[out.len - 1], 'x');
        free(json);
        buf_free(&out);
    }
}
END_TEST

/* An escape in a long string: decoding shrinks it, the header still fits. */
START_TEST(test_string_escapes_long)
{
    limits_t limits = limits_default();
    buf_t json = {0};
    buf_append_str(&json, "\"");
    for (int i = 0; i < 40; i++)
        buf_append_str(&json, "\\u00e9");
    buf_append_str(&json, "\"");
    buf_t out = {0};
    transcode_error_t error;
    ck_assert_int_eq(transcode_value(json.data, json.len, &limits, &out, &error), 0);
    ck_assert_uint_eq(out.len, 2 + 80);
    ck_assert_int_eq(out.data[0], 0xd9);
    ck_assert_int_eq(out.data[1], 80);
    ck_assert_int_eq(out.data[2], 0xc3);
    ck_assert_int_eq(out.data[3], 0xa9);
    buf_free(&json);
    buf_free(&out);
}
END_TEST

static void container_json(buf_t *json, size_t n, int map)
{
    buf_append_byte(json, map ? '{' : '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_append_byte(json, ',');
        if (map)
            buf_appendf(json, "\"k%zu\":", i);
        buf_append_byte(json, '1');
    }
    buf_append_byte(json, map ? '}' : ']');
}

START_TEST(test_container_headers)
{
    static const struct {
        size_t n;
        int map;
        const char *prefix;
    } cases[] = {
        {15, 0, "9f"}, {16, 0, "dc0010"}, {65535, 0, "dcffff"},     {65536, 0, "dd00010000"},
        {15, 1, "8f"}, {16, 1, "de0010"}, {70000, 1, "df00011170"},
    };
    limits_t limits = limits_default();
    limits.max_keys = 100000;
    limits.max_body_bytes = 4 << 20;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t json = {0}, out = {0};
        container_json(&json, cases[i].n, cases[i].map);
        transcode_error_t error;
        ck_assert_msg(transcode_value(json.data, json.len, &limits, &out, &error) == 0, "%s", error.message);
        size_t hl = strlen(cases[i].prefix) / 2;
        buf_t head = {.data = out.data, .len = hl};
        ck_assert_str_eq(hex(&head, 0), cases[i].prefix);
        if (!cases[i].map)
            ck_assert_uint_eq(out.len, hl + cases[i].n);
        buf_free(&json);
        buf_free(&out);
    }
}
END_TEST

/* Output is appended: what the buffer held stays. */
START_TEST(test_appends)
{
    limits_t limits = limits_default();
    buf_t out = {0};
    buf_append_str(&out, "AB");
    transcode_error_t error;
    ck_assert_int_eq(run_value("[1,\"x\"]", 0, &limits, &out, &error), 0);
    ck_assert_str_eq(hex(&out, 0), "414292"
                                   "01a178");
    ck_assert_int_eq(run_request("{\"profile\":{\"a\":1}}", &limits, &out, &error), 0);
    ck_assert_str_eq(hex(&out, 0), "41429201a17881a16101");
    buf_free(&out);
}
END_TEST

/* ---- duplicate keys ---------------------------------------------------- */

static const ok_case_t duplicate_cases[] = {
    {"{\"a\":1,\"a\":2}", "81a16102"},
    {"{\"a\":1,\"b\":2,\"a\":3}", "82a16103a16202"}, /* first position, last value */
    /* a kept value longer than the one it replaces, and one shorter */
    {"{\"a\":1,\"b\":2,\"a\":\"long string value\"}", "82a161b16c6f6e6720737472696e672076616c7565a16202"},
    {"{\"a\":\"long string value\",\"b\":2,\"a\":1}", "82a16101a16202"},
    {"{\"a\":[1,2,3],\"b\":{},\"a\":\"x\",\"b\":null}", "82a161a178a162c0"},
    {"{\"a\":{\"x\":1,\"x\":2},\"a\":{\"y\":3,\"y\":4}}", "81a16181a17904"},
    {"{\"a\":{\"x\":1,\"x\":2}}", "81a16181a17802"},
    {"{\"\\u0061\":1,\"a\":2}", "81a16102"}, /* equal after unescaping */
    {"[{\"a\":1,\"a\":2},{\"a\":3}]", "9281a1610281a16103"},
    {"{\"a\":1,\"a\":1,\"a\":1,\"a\":1}", "81a16101"},
};

START_TEST(test_duplicates)
{
    limits_t limits = limits_default();
    const ok_case_t *c = &duplicate_cases[_i];
    buf_t out = {0};
    transcode_error_t error;
    ck_assert_msg(run_value(c->json, 0, &limits, &out, &error) == 0, "%s", error.message);
    ck_assert_str_eq(hex(&out, 0), c->msgpack_hex);
    buf_free(&out);
}
END_TEST

/* A big object (past the Bloom word, into the sort-at-close path) with
 * duplicates spread through it: the last value of each key survives, in
 * the position of its first occurrence. */
START_TEST(test_duplicates_large)
{
    limits_t limits = limits_default();
    buf_t json = {0}, out = {0}, want_json = {0}, want = {0};
    buf_append_byte(&json, '{');
    for (int i = 0; i < 300; i++)
        buf_appendf(&json, "%s\"k%d\":%d", i ? "," : "", i % 200, i);
    buf_append_byte(&json, '}');
    /* keys k0..k199 in order; k0..k99 with their second values 200..299 */
    buf_append_byte(&want_json, '{');
    for (int i = 0; i < 200; i++)
        buf_appendf(&want_json, "%s\"k%d\":%d", i ? "," : "", i, i < 100 ? i + 200 : i);
    buf_append_byte(&want_json, '}');
    transcode_error_t error;
    ck_assert_int_eq(transcode_value(json.data, json.len, &limits, &out, &error), 0);
    ck_assert_int_eq(transcode_value(want_json.data, want_json.len, &limits, &want, &error), 0);
    ck_assert_uint_eq(out.len, want.len);
    ck_assert_int_eq(memcmp(out.data, want.data, out.len), 0);
    ck_assert_int_eq(out.data[0], 0xde);
    ck_assert_int_eq(out.data[2], 200);
    buf_free(&json);
    buf_free(&out);
    buf_free(&want_json);
    buf_free(&want);
}
END_TEST

/* ---- limits ------------------------------------------------------------ */

static char *nested(int depth, const char *open, const char *close, const char *inner)
{
    buf_t json = {0};
    for (int i = 0; i < depth; i++)
        buf_append_str(&json, open);
    buf_append_str(&json, inner);
    for (int i = 0; i < depth; i++)
        buf_append_str(&json, close);
    buf_terminate(&json);
    return (char *)json.data;
}

START_TEST(test_limit_depth)
{
    limits_t limits = limits_default();
    ck_assert_uint_eq(limits.max_depth, 32);
    buf_t out = {0};
    transcode_error_t error;
    char *ok = nested(32, "[", "]", "1");
    ck_assert_int_eq(run_value(ok, 0, &limits, &out, &error), 0);
    char *bad = nested(33, "[", "]", "1");
    ck_assert_int_eq(run_value(bad, 0, &limits, &out, &error), -1);
    ck_assert_int_eq(error.status, TRANSCODE_ERR_LIMIT);
    ck_assert_str_eq(error.message,
                     "value[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                     "[0][0][0][0][0][0][0]: nesting deeper than 32 levels (limit PROFILED_MAX_DEPTH)");
    free(ok);
    free(bad);
    /* In a request the wrapper does not count: the profile is level 1. */
    char *req_ok = nested(32, "{\"a\":", "}", "1");
    char *req_bad = nested(33, "{\"a\":", "}", "1");
    buf_t body = {0};
    buf_appendf(&body, "{\"profile\":%s}", req_ok);
    buf_terminate(&body);
    ck_assert_int_eq(run_request((char *)body.data, &limits, &out, &error), 0);
    buf_reset(&body);
    buf_appendf(&body, "{\"profile\":%s}", req_bad);
    buf_terminate(&body);
    ck_assert_int_eq(run_request((char *)body.data, &limits, &out, &error), -1);
    ck_assert_int_eq(error.status, TRANSCODE_ERR_LIMIT);
    ck_assert_str_eq(error.message,
                     "profile.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a: nesting "
                     "deeper than 32 levels (limit PROFILED_MAX_DEPTH)");
    free(req_ok);
    free(req_bad);
    buf_free(&body);
    buf_free(&out);
}
END_TEST

/* A configured depth past the inline frame stack: the heap stack works the
 * same, limit included. */
START_TEST(test_limit_depth_deep_config)
{
    limits_t limits = limits_default();
    limits.max_depth = 500;
    limits.max_body_bytes = 1 << 20;
    buf_t out = {0};
    transcode_error_t error;
    char *ok = nested(500, "[", "]", "\"x\"");
    ck_assert_int_eq(run_value(ok, 0, &limits, &out, &error), 0);
    ck_assert_uint_eq(out.len, 500 + 2);
    char *bad = nested(501, "{\"a\":[", "]}", "1");
    ck_assert_int_eq(run_value(bad, 0, &limits, &out, &error), -1);
    ck_assert_int_eq(error.status, TRANSCODE_ERR_LIMIT);
    ck_assert(strstr(error.message, ": nesting deeper than 500 levels (limit PROFILED_MAX_DEPTH)") != NULL);
    ck_assert(strncmp(error.message, "value.a[0].a[0].a[0]", 20) == 0);
    free(ok);
    free(bad);
    buf_free(&out);
}
END_TEST

START_TEST(test_limit_strings_and_keys)
{
    limits_t limits = limits_default();
    limits.max_string_bytes = 8;
    limits.max_key_bytes = 4;
    buf_t out = {0};
    transcode_error_t error;
    ck_assert_int_eq(run_value("{\"abcd\":\"12345678\"}", 0, &limits, &out, &error), 0);
    ck_assert_int_eq(run_value("{\"abcd\":\"123456789\"}", 0, &limits, &out, &error), -1);
    ck_assert_int_eq(error.status, TRANSCODE_ERR_LIMIT);
    ck_assert_str_eq(error.message,
                     "value.abcd: string longer than 8 bytes (limit PROFILED_MAX_STRING_BYTES)");
    ck_assert_int_eq(run_value("{\"abcde\":1}", 0, &limits, &out, &error), -1);
    ck_assert_int_eq(error.status, TRANSCODE_ERR_LIMIT);
    ck_assert_str_eq(error.message, "value: key longer than 4 bytes (limit PROFILED_MAX_KEY_BYTES)");
    /* Bytes of UTF-8 after unescaping: \u00e9 is two bytes. */
    ck_assert_int_eq(run_value("[\"\\u00e9\\u00e9\\u00e9\\u00e9\"]", 0, &limits, &out, &error), 0);
    ck_assert_int_eq(run_value("[\"\\u00e9\\u00e9\\u00e9\\u00e9x\"]", 0, &limits, &out, &error), -1);
    ck_assert_str_eq(error.message, "value[0]: string longer than 8 bytes (limit PROFILED_MAX_STRING_BYTES)");
    limits.max_key_bytes = 7; /* "profile" itself is a key */
    ck_assert_int_eq(run_request("{\"profile\":{\"a\":{\"toolong\":1}}}", &limits, &out, &error), 0);
    ck_assert_int_eq(run_request("{\"profile\":{\"a\":{\"toolong!\":1}}}", &limits, &out, &error), -1);
    ck_assert_str_eq(error.message, "profile.a: key longer than 7 bytes (limit PROFILED_MAX_KEY_BYTES)");
    buf_free(&out);
}
END_TEST

START_TEST(test_limit_entries)
{
    limits_t limits = limits_default();
    ck_assert_uint_eq(limits.max_keys, 1000);
    buf_t json = {0}, out = {0}, body = {0};
    transcode_error_t error;
    container_json(&json, 1000, 0);
    ck_assert_int_eq(transcode_value(json.data, json.len, &limits, &out, &error), 0);
    buf_reset(&json);
    container_json(&json, 1001, 0);
    buf_appendf(&body, "{\"profile\":{\"tags\":%.*s}}", (int)json.len, (char *)json.data);
    ck_assert_int_eq(transcode_profile_request(body.data, body.len, &limits, &out, &error), -1);
    ck_assert_int_eq(error.status, TRANSCODE_ERR_LIMIT);
    ck_assert_str_eq(error.message,
                     "profile.tags: array has more than 1000 entries (limit PROFILED_MAX_KEYS)");
    buf_reset(&json);
    container_json(&json, 1000, 1);
    ck_assert_int_eq(transcode_value(json.data, json.len, &limits, &out, &error), 0);
    buf_reset(&json);
    container_json(&json, 1001, 1);
    ck_assert_int_eq(transcode_value(json.data, json.len, &limits, &out, &error), -1);
    ck_assert_str_eq(error.message, "value: object has more than 1000 keys (limit PROFILED_MAX_KEYS)");
    buf_free(&json);
    buf_free(&out);
    buf_free(&body);
}
END_TEST

START_TEST(test_limit_body)
{
    limits_t limits = limits_default();
    limits.max_body_bytes = 20;
    buf_t out = {0};
    transcode_error_t error;
    ck_assert_int_eq(run_request("{\"profile\":{\"a\":12}}", &limits, &out, &error), 0); /* 20 bytes */
    ck_assert_int_eq(run_request("{\"profile\":{\"a\":123}}", &limits, &out, &error), -1);
    ck_assert_int_eq(error.status, TRANSCODE_ERR_TOO_LARGE);
    ck_assert_str_eq(error.message, "body: larger than 20 bytes (limit PROFILED_MAX_BODY_BYTES)");
    buf_free(&out);
}
END_TEST

/* ---- requests and schema ---------------------------------------------- */

static const ok_case_t request_ok_cases[] = {
    {"{\"profile\":{}}", "80"},
    {" {\"profile\" : {\"email\":\"a@b.c\"} } ", "81a5656d61696ca5614062"
                                                 "2e63"},
    {"{\"x\":[1,{\"y\":2}],\"profile\":{\"a\":1},\"z\":\"w\"}", "81a16101"},
    {"{\"profile\":{\"a\":1},\"profile\":{\"b\":2}}", "81a16202"},
    {"{\"profile\":1,\"profile\":{}}", "80"}, /* the last value wins, before the shape is checked */
    {"{\"profile\":{\"email\":null,\"email_verified\":true,\"address\":{\"locality\":\"X\",\"other\":1}}}",
     "83a5656d61696cc0ae656d61696c5f7665726966696564c3a761646472657373"
     "82a86c6f63616c697479a158a56f7468657201"},
    {"{\"profile\":{\"email\":1,\"email\":\"a\"}}", "81a5656d61696ca161"},
    {"{\"profile\":{\"firebaseToken\":[\"a\",\"b\"],\"expo\":{\"tokens\":[\"t\"]}}}",
     "82ad6669726562617365546f6b656e92a161a162a46578706f81a6746f6b656e7391a174"},
    {"{\"profile\":{\"apn\":{\"tokens\":[\"a\"]},\"intercom\":{\"from\":\"1\",\"to\":{\"id\":\"u\",\"x\":1}}}"
     "}",
     "82a361706e81a6746f6b656e7391a161a8696e746572636f6d82a466726f6da131a2746f82a26964a175a17801"},
    {"{\"profile\":{\"custom\":{\"email\":1},\"x\":{\"address\":5}}}",
     "82a6637573746f6d81a5656d61696c01a17881a76164647265737305"}, /* only top-level fields are documented */
};

START_TEST(test_request_ok)
{
    limits_t limits = limits_default();
    const ok_case_t *c = &request_ok_cases[_i];
    buf_t out = {0};
    transcode_error_t error;
    ck_assert_msg(run_request(c->json, &limits, &out, &error) == 0, "%s: %s", c->json, error.message);
    ck_assert_str_eq(hex(&out, 0), c->msgpack_hex);
    buf_free(&out);
}
END_TEST

static const bad_case_t request_bad_cases[] = {
    {"{}", 0, TRANSCODE_ERR_SCHEMA, "profile is required"},
    {"{\"Profile\":{}}", 0, TRANSCODE_ERR_SCHEMA, "profile is required"},
    {"{\"profile\":null}", 0, TRANSCODE_ERR_SCHEMA, "profile must be an object"},
    {"{\"profile\":[]}", 0, TRANSCODE_ERR_SCHEMA, "profile must be an object"},
    {"{\"profile\":\"x\"}", 0, TRANSCODE_ERR_SCHEMA, "profile must be an object"},
    {"{\"profile\":{},\"profile\":1}", 0, TRANSCODE_ERR_SCHEMA, "profile must be an object"},
    {"[]", 0, TRANSCODE_ERR_SCHEMA, "body: must be a JSON object with a \"profile\" object"},
    {"\"profile\"", 0, TRANSCODE_ERR_SCHEMA, NULL},
    {"", 0, TRANSCODE_ERR_SYNTAX, "body: invalid JSON: unexpected end of input, expected a value"},
    {"[1,]", 0, TRANSCODE_ERR_SYNTAX, "body[1]: invalid JSON at byte 3: expected a value"},
    {"{\"profile\":{}", 0, TRANSCODE_ERR_SYNTAX,
     "body: invalid JSON: unexpected end of input, expected ',' or '}'"},
    {"{\"profile\":{}}x", 0, TRANSCODE_ERR_SYNTAX,
     "body: invalid JSON at byte 14: unexpected data after the JSON value"},
    {"{\"x\":[1,,2],\"profile\":{}}", 0, TRANSCODE_ERR_SYNTAX,
     "x[1]: invalid JSON at byte 8: expected a value"},
    {"{\"profile\":{\"a\":[1,{\"b\":tru}]}}", 0, TRANSCODE_ERR_SYNTAX,
     "profile.a[1].b: invalid JSON at byte 24: invalid literal"},
    {"{\"profile\":{\"a\":{\"b\":\"\\u0000\"}}}", 0, TRANSCODE_ERR_SYNTAX,
     "profile.a.b: invalid JSON at byte 22: \\u0000 is not allowed (PostgreSQL jsonb cannot store U+0000)"},
    {"{\"profile\":{\"a\\x\":1}}", 0, TRANSCODE_ERR_SYNTAX,
     "profile: invalid JSON at byte 15: invalid escape in string"},
    {"{\"profile\":{\"email\":1}}", 0, TRANSCODE_ERR_SCHEMA, "profile.email must be a string"},
    {"{\"profile\":{\"email_verified\":\"yes\"}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.email_verified must be a boolean"},
    {"{\"profile\":{\"phone_number\":15551234567}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.phone_number must be a string"},
    {"{\"profile\":{\"phone_number_verified\":1}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.phone_number_verified must be a boolean"},
    {"{\"profile\":{\"address\":\"1 Main St\"}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.address must be an object"},
    {"{\"profile\":{\"address\":{\"locality\":3}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.address.locality must be a string"},
    {"{\"profile\":{\"address\":{\"postal_code\":12345}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.address.postal_code must be a string"},
    {"{\"profile\":{\"slack\":\"xoxb\"}}", 0, TRANSCODE_ERR_SCHEMA, "profile.slack must be an object"},
    {"{\"profile\":{\"slack\":{\"access_token\":1}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.slack.access_token must be a string"},
    {"{\"profile\":{\"ms_teams\":{\"tenant_id\":[]}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.ms_teams.tenant_id must be a string"},
    {"{\"profile\":{\"discord\":{\"channel_id\":123}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.discord.channel_id must be a string"},
    {"{\"profile\":{\"expo\":{\"tokens\":\"t\"}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.expo.tokens must be an array of strings"},
    {"{\"profile\":{\"expo\":{\"tokens\":[\"a\",2]}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.expo.tokens[1] must be a string"},
    {"{\"profile\":{\"firebaseToken\":{}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.firebaseToken must be a string or an array of strings"},
    {"{\"profile\":{\"apn\":{\"token\":true}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.apn.token must be a string"},
    {"{\"profile\":{\"apn\":{\"tokens\":[\"a\",{}]}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.apn.tokens[1] must be a string"},
    {"{\"profile\":{\"intercom\":{\"to\":{\"id\":42}}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.intercom.to.id must be a string"},
    {"{\"profile\":{\"airship\":[]}}", 0, TRANSCODE_ERR_SCHEMA, "profile.airship must be an object"},
    {"{\"profile\":{\"intercom\":{\"to\":\"x\"}}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.intercom.to must be an object"},
    {"{\"profile\":{\"locale\":1.5}}", 0, TRANSCODE_ERR_SCHEMA, "profile.locale must be a string"},
    {"{\"profile\":{\"updated_at\":1700000000}}", 0, TRANSCODE_ERR_SCHEMA,
     "profile.updated_at must be a string"},
};

START_TEST(test_request_bad)
{
    limits_t limits = limits_default();
    const bad_case_t *c = &request_bad_cases[_i];
    buf_t out = {0};
    transcode_error_t error;
    ck_assert_msg(run_request(c->json, &limits, &out, &error) == -1, "accepted: %s", c->json);
    ck_assert_msg(error.status == c->status, "%s: status %d (%s)", c->json, error.status, error.message);
    if (c->message)
        ck_assert_str_eq(error.message, c->message);
    buf_free(&out);
}
END_TEST

/* Every documented string field, and the standard claims as booleans. */
START_TEST(test_schema_string_fields)
{
    static const char *strings[] = {
        "email",    "phone_number", "name",        "given_name", "family_name", "locale",
        "zoneinfo", "birthdate",    "gender",      "picture",    "nickname",    "preferred_username",
        "profile",  "website",      "middle_name", "sub",        "updated_at"};
    limits_t limits = limits_default();
    buf_t out = {0}, body = {0};
    transcode_error_t error;
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        buf_reset(&body);
        buf_appendf(&body, "{\"profile\":{\"%s\":\"v\"}}", strings[i]);
        ck_assert_int_eq(transcode_profile_request(body.data, body.len, &limits, &out, &error), 0);
        buf_reset(&body);
        buf_appendf(&body, "{\"profile\":{\"%s\":false}}", strings[i]);
        ck_assert_int_eq(transcode_profile_request(body.data, body.len, &limits, &out, &error), -1);
        char want[128];
        snprintf(want, sizeof(want), "profile.%s must be a string", strings[i]);
        ck_assert_str_eq(error.message, want);
    }
    ck_assert(transcode_schema_table_sorted());
    buf_free(&out);
    buf_free(&body);
}
END_TEST

/* A path longer than a message holds is cut on a UTF-8 boundary. */
START_TEST(test_long_path_message)
{
    limits_t limits = limits_default();
    buf_t body = {0}, out = {0};
    buf_append_str(&body, "{\"profile\":{\"");
    for (int i = 0; i < 100; i++)
        buf_append_str(&body, "\xc3\xa9");
    buf_append_str(&body, "\":[tru]}}");
    transcode_error_t error;
    ck_assert_int_eq(transcode_profile_request(body.data, body.len, &limits, &out, &error), -1);
    ck_assert_int_eq(error.status, TRANSCODE_ERR_SYNTAX);
    size_t n = strlen(error.message);
    ck_assert_uint_lt(n, sizeof(error.message));
    ck_assert(strstr(error.message, "invalid literal") != NULL);
    ck_assert(strncmp(error.message, "profile.\xc3\xa9", 10) == 0);
    buf_free(&body);
    buf_free(&out);
}
END_TEST

static Suite *transcode_suite(void)
{
    Suite *s = suite_create("json_transcode");
    TCase *tc = tcase_create("grammar");
    tcase_add_loop_test(tc, test_accept, 0, sizeof(accept_cases) / sizeof(accept_cases[0]));
    tcase_add_loop_test(tc, test_reject, 0, sizeof(reject_cases) / sizeof(reject_cases[0]));
    suite_add_tcase(s, tc);
    tc = tcase_create("encoding");
    tcase_add_loop_test(tc, test_numbers, 0, sizeof(number_cases) / sizeof(number_cases[0]));
    tcase_add_test(tc, test_string_headers);
    tcase_add_test(tc, test_string_escapes_long);
    tcase_add_test(tc, test_container_headers);
    tcase_add_test(tc, test_appends);
    tcase_add_loop_test(tc, test_duplicates, 0, sizeof(duplicate_cases) / sizeof(duplicate_cases[0]));
    tcase_add_test(tc, test_duplicates_large);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, test_limit_depth);
    tcase_add_test(tc, test_limit_depth_deep_config);
    tcase_add_test(tc, test_limit_strings_and_keys);
    tcase_add_test(tc, test_limit_entries);
    tcase_add_test(tc, test_limit_body);
    suite_add_tcase(s, tc);
    tc = tcase_create("request");
    tcase_add_loop_test(tc, test_request_ok, 0, sizeof(request_ok_cases) / sizeof(request_ok_cases[0]));
    tcase_add_loop_test(tc, test_request_bad, 0, sizeof(request_bad_cases) / sizeof(request_bad_cases[0]));
    tcase_add_test(tc, test_schema_string_fields);
    tcase_add_test(tc, test_long_path_message);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(transcode_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
