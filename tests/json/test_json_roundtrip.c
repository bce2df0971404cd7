/*
 * Round trip against jansson: for generated documents that jansson accepts
 * (and that are not excluded as integers beyond int64, see
 * test_json_differential.c), transcode to msgpack, write it back to JSON with
 * json_write_value, parse that with jansson, and require json_equal with
 * jansson's parse of the original text. Integers must stay integers and
 * reals stay reals (json_equal tells them apart); doubles must read back to
 * the same value.
 *
 * PROFILED_DIFF_SEED and PROFILED_DIFF_DOCS override the seed and count.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_gen.h"
#include "json_transcode.h"
#include "json_write.h"

START_TEST(test_roundtrip)
{
    const char *seed_env = getenv("PROFILED_DIFF_SEED");
    const char *docs_env = getenv("PROFILED_DIFF_DOCS");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : 20261128;
    unsigned docs = docs_env ? (unsigned)strtoul(docs_env, NULL, 0) : 4000;
    gen_rng_t rng = {seed ^ 0xB0B};
    limits_t limits = {.max_body_bytes = 64 << 20,
                       .max_depth = 1000,
                       .max_key_bytes = 1 << 20,
                       .max_string_bytes = 1 << 20,
                       .max_keys = 1 << 20};
    unsigned compared = 0;
    buf_t text = {0}, msgpack = {0}, written = {0};
    for (unsigned doc = 0; doc < docs; doc++) {
        buf_reset(&text);
        gen_value(&rng, &text, 1 + (int)(gen_next(&rng) % 6));
        if (doc % 4 == 3)
            gen_mutate(&rng, &text);
        json_error_t jerror;
        json_t *original = json_loadb((const char *)text.data, text.len, JSON_DECODE_ANY, &jerror);
        /* Acceptance is test_json_differential's business, raw NUL bytes
         * (which jansson sometimes lets through) included. */
        if (!original || memchr(text.data, 0, text.len)) {
            json_decref(original);
            continue;
        }
        buf_reset(&msgpack);
        transcode_error_t terror;
        ck_assert_msg(transcode_value(text.data, text.len, &limits, &msgpack, &terror) == 0, "doc %u: %s",
                      doc, terror.message);
        buf_reset(&written);
        size_t consumed = 0;
        codec_failure_t failure;
        int rc = json_write_value(msgpack.data, msgpack.len, &limits, "value", &consumed, &written, &failure);
        ck_assert_msg(rc == 0, "doc %u: json_write_value: %s", doc, failure.message);
        ck_assert_uint_eq(consumed, msgpack.len);
        json_t *back = json_loadb((const char *)written.data, written.len, JSON_DECODE_ANY, &jerror);
        if (!back || !json_equal(original, back)) {
            fprintf(stderr,
                    "round trip differs in document %u (seed %llu):\n  in:  %.*s\n  out: %.*s\n  %s\n", doc,
                    (unsigned long long)seed, (int)text.len, (const char *)text.data, (int)written.len,
                    (const char *)written.data, back ? "values differ" : jerror.text);
        }
        ck_assert_msg(back != NULL, "doc %u: jansson rejects the written JSON: %s", doc, jerror.text);
        ck_assert_msg(json_equal(original, back), "doc %u: values differ after the round trip", doc);
        json_decref(back);
        json_decref(original);
        compared++;
    }
    fprintf(stderr, "json_roundtrip: %u documents, %u compared after the round trip\n", docs, compared);
    ck_assert_uint_ge(compared, docs / 2);
    buf_free(&text);
    buf_free(&msgpack);
    buf_free(&written);
}
END_TEST

/*
 * The api (transcoder) and the worker (json_write_value, through the codec)
 * must draw each limit at the same place, or the api would accept commands
 * the worker dead-letters. For each default limit: a profile exactly at it
 * passes both; one past it is refused by the transcoder and, transcoded
 * under raised limits, refused by json_write_value with CODEC_ERR_LIMIT.
 */
typedef enum { EDGE_DEPTH, EDGE_KEY, EDGE_STRING, EDGE_KEYS, EDGE_ELEMENTS } edge_t;

static void edge_body(buf_t *body, edge_t edge, uint32_t n)
{
    buf_append_str(body, "{\"profile\":");
    switch (edge) {
    case EDGE_DEPTH: /* n nested objects, the profile being the first */
        for (uint32_t i = 0; i < n; i++)
            buf_append_str(body, i + 1 < n ? "{\"a\":" : "{");
        for (uint32_t i = 0; i < n; i++)
            buf_append_byte(body, '}');
        break;
    case EDGE_KEY:
    case EDGE_STRING:
        buf_append_str(body, edge == EDGE_KEY ? "{\"" : "{\"s\":\"");
        for (uint32_t i = 0; i < n; i++)
            buf_append_byte(body, 'k');
        buf_append_str(body, edge == EDGE_KEY ? "\":1}" : "\"}");
        break;
    case EDGE_KEYS:
        buf_append_byte(body, '{');
        for (uint32_t i = 0; i < n; i++)
            buf_appendf(body, "%s\"k%u\":%u", i ? "," : "", i, i);
        buf_append_byte(body, '}');
        break;
    case EDGE_ELEMENTS:
        buf_append_str(body, "{\"tags\":[");
        for (uint32_t i = 0; i < n; i++)
            buf_appendf(body, "%s%u", i ? "," : "", i);
        buf_append_str(body, "]}");
        break;
    }
    buf_append_byte(body, '}');
}

START_TEST(test_limits_agree)
{
    limits_t limits = limits_default();
    limits_t raised = {.max_body_bytes = 16 << 20,
                       .max_depth = 1000,
                       .max_key_bytes = 1 << 20,
                       .max_string_bytes = 1 << 20,
                       .max_keys = 1 << 20};
    const struct {
        edge_t edge;
        uint32_t at;
    } edges[] = {
        {EDGE_DEPTH, LIMITS_DEFAULT_MAX_DEPTH},         {EDGE_KEY, LIMITS_DEFAULT_MAX_KEY_BYTES},
        {EDGE_STRING, LIMITS_DEFAULT_MAX_STRING_BYTES}, {EDGE_KEYS, LIMITS_DEFAULT_MAX_KEYS},
        {EDGE_ELEMENTS, LIMITS_DEFAULT_MAX_KEYS},
    };
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        for (uint32_t past = 0; past <= 1; past++) {
            buf_t body = {0}, msgpack = {0}, json = {0};
            edge_body(&body, edges[i].edge, edges[i].at + past);
            transcode_error_t terror;
            int rc = transcode_profile_request(body.data, body.len, &limits, &msgpack, &terror);
            ck_assert_msg(rc == (past ? -1 : 0), "edge %zu past %u: transcoder %s", i, past,
                          rc ? terror.message : "accepts");
            if (past) {
                ck_assert_int_eq(terror.status, TRANSCODE_ERR_LIMIT);
                ck_assert_int_eq(transcode_profile_request(body.data, body.len, &raised, &msgpack, &terror),
                                 0);
            }
            size_t consumed;
            codec_failure_t failure;
            rc = json_write_value(msgpack.data, msgpack.len, &limits, "profile", &consumed, &json, &failure);
            ck_assert_msg(rc == (past ? -1 : 0), "edge %zu past %u: json_write_value %s", i, past,
                          rc ? failure.message : "accepts");
            if (past)
                ck_assert_int_eq(failure.code, CODEC_ERR_LIMIT);
            buf_free(&body);
            buf_free(&msgpack);
            buf_free(&json);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json_roundtrip");
    TCase *tc = tcase_create("jansson");
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_limits_agree);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
