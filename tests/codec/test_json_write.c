/*
 * The msgpack-to-JSON writer's edges: shortest doubles (checked by strtod
 * round trip and against a brute-force shortest search), escapes, exact
 * integers, and the rejections.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_write.h"
#include "mp.h"
#include "test_codec.h"

static char *test_double_text(double d)
{
    static char text[64];
    buf_t out = {0};
    json_write_double(&out, d);
    ck_assert_uint_lt(out.len, sizeof(text));
    memcpy(text, out.data, out.len);
    text[out.len] = '\0';
    buf_free(&out);
    return text;
}

/* The fewest significant digits that read back as d, by trying every
 * precision with %.*e and, at each, the decimal one unit above and below
 * too (at a power of two the interval is lopsided, so the nearest decimal
 * may miss while a neighbour reads back): slow, obviously right. */
static int test_shortest_digits(double d)
{
    char tmp[64], candidate[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            return prec;
        /* tmp is "d.ddde+X": the digits as one integer, then the exponent. */
        char digits[24];
        int n = 0;
        const char *p = tmp;
        for (; *p != 'e'; p++)
            if (*p != '.')
                digits[n++] = *p;
        digits[n] = '\0';
        long long m = atoll(digits);
        int e = atoi(p + 1) - (prec - 1);
        for (int delta = -1; delta <= 1; delta += 2) {
            snprintf(candidate, sizeof(candidate), "%llde%d", m + delta, e);
            if (m + delta > 0 && strtod(candidate, NULL) == d)
                return prec;
        }
    }
    return 17;
}

/* Significant digits in a JSON number text (no sign, point, exponent, or
 * leading/trailing zeros). */
static int test_count_digits(const char *text)
{
    const char *first = NULL, *last = NULL;
    for (const char *p = text; *p && *p != 'e'; p++) {
        if (*p >= '1' && *p <= '9') {
            if (!first)
                first = p;
            last = p;
        }
    }
    if (!first)
        return 1;
    int n = 0;
    for (const char *p = first; p <= last; p++)
        n += *p >= '0' && *p <= '9';
    return n;
}

static void test_check_double(double d)
{
    const char *text = test_double_text(d);
    char *end;
    double back = strtod(text, &end);
    ck_assert_msg(*end == '\0', "%s: junk after the number", text);
    ck_assert_msg(memcmp(&back, &d, sizeof(d)) == 0, "%.17g written as %s reads back as %.17g", d, text,
                  back);
    ck_assert_msg(strchr(text, '.') || strchr(text, 'e'), "%s would read back as an integer", text);
    int want = test_shortest_digits(d);
    int got = test_count_digits(text);
    ck_assert_msg(got == want, "%.17g written as %s: %d digits, shortest has %d", d, text, got, want);
}

START_TEST(doubles_known)
{
    static const struct {
        double d;
        const char *text;
    } cases[] = {
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {0.1, "0.1"},
        {-0.1, "-0.1"},
        {1.0, "1.0"},
        {100.0, "100.0"},
        {1.5, "1.5"},
        {123.456, "123.456"},
        {1e21, "1e+21"},
        {1e20, "100000000000000000000.0"},
        {1e16, "10000000000000000.0"},
        {9007199254740992.0, "9007199254740992.0"},
        {1e-7, "1e-7"},
        {1e-6, "0.000001"},
        {1.5e-6, "0.0000015"},
        {5e-324, "5e-324"},
        {-5e-324, "-5e-324"},
        {2.2250738585072014e-308, "2.2250738585072014e-308"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {0.30000000000000004, "0.30000000000000004"},
        {1.0 / 3.0, "0.3333333333333333"},
        {2.0 / 3.0, "0.6666666666666666"},
        {123e-20, "1.23e-18"},
        {1e100, "1e+100"},
        {4.35, "4.35"},
        {0.000123, "0.000123"},
        {1234567890123456789.0, "1234567890123456800.0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *text = test_double_text(cases[i].d);
        ck_assert_msg(strcmp(text, cases[i].text) == 0, "%.17g: got %s, want %s", cases[i].d, text,
                      cases[i].text);
        test_check_double(cases[i].d);
    }
}
END_TEST

static uint64_t test_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t test_next(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    test_rng ^= test_rng >> 12;
    test_rng ^= test_rng << 25;
    test_rng ^= test_rng >> 27;
    return test_rng * 0x2545F4914F6CDD1DULL;
}

START_TEST(doubles_random_bits)
{
    /* Uniform bit patterns: every exponent, subnormals included. */
    for (int i = 0; i < 50000; i++) {
        uint64_t bits = test_next();
        double d;
        memcpy(&d, &bits, sizeof(d));
        if (!isfinite(d))
            continue;
        test_check_double(d);
    }
}
END_TEST

START_TEST(doubles_random_decimals)
{
    /* Short decimals, the common case in real profiles (prices, scores,
     * coordinates): they must come back in their short form. */
    for (int i = 0; i < 50000; i++) {
        uint64_t r = test_next();
        char text[64];
        snprintf(text, sizeof(text), "%llu.%llue%d", (unsigned long long)(r % 100000),
                 (unsigned long long)((r >> 20) % 1000), (int)((r >> 40) % 40) - 20);
        double d = strtod(text, NULL);
        test_check_double(d);
        test_check_double(-d);
    }
    /* Integral doubles around 2^53 and powers of two. */
    for (int e = -1074; e <= 1023; e++)
        test_check_double(ldexp(1.0, e));
    for (int64_t k = -1000; k <= 1000; k++)
        test_check_double(9007199254740992.0 + (double)k * 2);
}
END_TEST

static const char *test_write(const buf_t *msgpack, codec_error_t *code)
{
    static char text[4096];
    limits_t limits = limits_default();
    buf_t out = {0};
    size_t consumed;
    codec_failure_t failure;
    *code = CODEC_OK;
    if (json_write_value(msgpack->data, msgpack->len, &limits, "v", &consumed, &out, &failure) != 0)
        *code = failure.code;
    ck_assert_uint_lt(out.len, sizeof(text));
    if (out.len)
        memcpy(text, out.data, out.len);
    text[out.len] = '\0';
    buf_free(&out);
    return text;
}

START_TEST(strings_escaped)
{
    buf_t m = {0};
    codec_error_t code;
    static const char in[] =
        "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f \xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80 long enough for words";
    mp_write_str(&m, in, sizeof(in) - 1);
    const char *text = test_write(&m, &code);
    ck_assert_int_eq(code, CODEC_OK);
    ck_assert_str_eq(
        text, "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f \xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80 long "
              "enough for words\"");

    /* Every control character, in every position of an 8-byte word. */
    for (int c = 0; c < 0x20; c++) {
        for (int at = 0; at < 9; at++) {
            char s[16];
            memset(s, 'a', sizeof(s));
            s[at] = (char)c;
            if (c == 0)
                continue; /* NUL is a rejection, tested below */
            buf_reset(&m);
            mp_write_str(&m, s, sizeof(s));
            text = test_write(&m, &code);
            ck_assert_int_eq(code, CODEC_OK);
            ck_assert_uint_eq(strlen(text), 2 + sizeof(s) - 1 + (strchr("\b\f\n\r\t", c) ? 2 : 6));
        }
    }
    buf_free(&m);
}
END_TEST

START_TEST(integers_exact)
{
    static const struct {
        int64_t v;
        const char *text;
    } signed_cases[] = {
        {INT64_MIN, "-9223372036854775808"},
        {INT64_MAX, "9223372036854775807"},
        {-1, "-1"},
        {-32, "-32"},
        {-33, "-33"},
        {-129, "-129"},
        {0, "0"},
        {9, "9"},
        {10, "10"},
        {99, "99"},
        {100, "100"},
        {65536, "65536"},
    };
    buf_t m = {0};
    codec_error_t code;
    for (size_t i = 0; i < sizeof(signed_cases) / sizeof(signed_cases[0]); i++) {
        buf_reset(&m);
        mp_write_int(&m, signed_cases[i].v);
        ck_assert_str_eq(test_write(&m, &code), signed_cases[i].text);
        ck_assert_int_eq(code, CODEC_OK);
    }
    buf_reset(&m);
    mp_write_uint(&m, UINT64_MAX);
    ck_assert_str_eq(test_write(&m, &code), "18446744073709551615");
    for (int i = 0; i < 100000; i++) {
        uint64_t v = test_next() >> (test_next() % 64);
        char want[32];
        snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
        buf_reset(&m);
        mp_write_uint(&m, v);
        ck_assert_str_eq(test_write(&m, &code), want);
        int64_t s = -(int64_t)(v >> 1) - 1;
        snprintf(want, sizeof(want), "%lld", (long long)s);
        buf_reset(&m);
        mp_write_int(&m, s);
        ck_assert_str_eq(test_write(&m, &code), want);
    }
    buf_free(&m);
}
END_TEST

START_TEST(containers_and_scalars)
{
    buf_t m = {0};
    codec_error_t code;
    mp_write_map_header(&m, 5);
    mp_write_str(&m, "n", 1);
    mp_write_nil(&m);
    mp_write_str(&m, "b", 1);
    mp_write_array_header(&m, 3);
    mp_write_bool(&m, true);
    mp_write_bool(&m, false);
    mp_write_array_header(&m, 0);
    mp_write_str(&m, "o", 1);
    mp_write_map_header(&m, 0);
    mp_write_str(&m, "f", 1);
    buf_append(&m, "\xca\x3f\xc0\x00\x00", 5); /* float32 1.5 */
    mp_write_str(&m, "a", 1);
    mp_write_array_header(&m, 2);
    mp_write_map_header(&m, 1);
    mp_write_str(&m, "x", 1);
    mp_write_array_header(&m, 1);
    mp_write_array_header(&m, 0);
    mp_write_uint(&m, 1);
    ck_assert_str_eq(test_write(&m, &code),
                     "{\"n\":null,\"b\":[true,false,[]],\"o\":{},\"f\":1.5,\"a\":[{\"x\":[[]]},1]}");
    ck_assert_int_eq(code, CODEC_OK);
    buf_free(&m);
}
END_TEST

START_TEST(rejections)
{
    static const struct {
        const char *bytes;
        size_t len;
        codec_error_t code;
    } cases[] = {
        {"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9, CODEC_ERR_NON_FINITE_NUMBER}, /* NaN */
        {"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00", 9, CODEC_ERR_NON_FINITE_NUMBER}, /* +inf */
        {"\xca\xff\x80\x00\x00", 5, CODEC_ERR_NON_FINITE_NUMBER},                 /* float32 -inf */
        {"\xa2\x61\x00", 3, CODEC_ERR_NUL_IN_STRING},
        {"\xa2\xc3\x28", 3, CODEC_ERR_INVALID_UTF8},
        {"\xa3\xed\xa0\x80", 4, CODEC_ERR_INVALID_UTF8}, /* an encoded surrogate */
        {"\xa2\xc0\x80", 3, CODEC_ERR_INVALID_UTF8},     /* overlong NUL */
        {"\x81\x01\xc0", 3, CODEC_ERR_NON_STRING_KEY},
        {"\x81\xc4\x01\x61\xc0", 5, CODEC_ERR_NON_STRING_KEY},
        {"\xc4\x01\x61", 3, CODEC_ERR_UNSUPPORTED_TYPE},
        {"\xd6\xff\x00\x00\x00\x00", 6, CODEC_ERR_UNSUPPORTED_TYPE}, /* timestamp ext */
        {"\x81\xa2\x61\x00\xc0", 5, CODEC_ERR_NUL_IN_STRING},        /* NUL in a key */
        {"\xc1", 1, CODEC_ERR_MALFORMED},
        {"\x92\x01", 2, CODEC_ERR_MALFORMED},
        {"\xdb\xff\xff\xff\xff\x61", 6, CODEC_ERR_MALFORMED},
        {"", 0, CODEC_ERR_MALFORMED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t m = {0};
        codec_error_t code;
        buf_append(&m, cases[i].bytes, cases[i].len);
        const char *text = test_write(&m, &code);
        ck_assert_msg(code == cases[i].code, "case %zu: got %s, want %s", i, codec_error_name(code),
                      codec_error_name(cases[i].code));
        ck_assert_str_eq(text, "");
        buf_free(&m);
    }
}
END_TEST

START_TEST(consumed_stops_at_the_value)
{
    static const uint8_t bytes[] = {0x91, 0x01, 0xc0, 0xc0};
    limits_t limits = limits_default();
    buf_t out = {0};
    size_t consumed = 0;
    codec_failure_t failure;
    ck_assert_int_eq(json_write_value(bytes, sizeof(bytes), &limits, "v", &consumed, &out, &failure), 0);
    ck_assert_uint_eq(consumed, 2);
    buf_free(&out);
}
END_TEST

Suite *json_write_suite(void)
{
    Suite *s = suite_create("json_write");
    TCase *tc = tcase_create("json_write");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, doubles_known);
    tcase_add_test(tc, doubles_random_bits);
    tcase_add_test(tc, doubles_random_decimals);
    tcase_add_test(tc, strings_escaped);
    tcase_add_test(tc, integers_exact);
    tcase_add_test(tc, containers_and_scalars);
    tcase_add_test(tc, rejections);
    tcase_add_test(tc, consumed_stops_at_the_value);
    suite_add_tcase(s, tc);
    return s;
}
