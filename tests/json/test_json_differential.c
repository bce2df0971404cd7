/*
 * Differential tests: the transcoder against jansson 2.14 on generated
 * documents (json_gen.c), half of them mutated into mostly invalid text.
 *
 * (a) The transcoder accepts exactly what jansson accepts with
 *     JSON_DECODE_ANY (duplicates allowed, NUL escapes refused, as ours),
 *     apart from the documented differences, excluded by name:
 *       - integer literals outside int64: jansson rejects them ("too big
 *         integer"); we keep uint64 values exactly and turn the rest into
 *         doubles. A document jansson rejects for this is skipped here (its
 *         later bytes are never compared) and counted.
 *       - raw NUL bytes: jansson 2.14 accepts some texts with a NUL byte
 *         after a number or a literal ("[1\0]", "-12\0"); RFC 8259 has no
 *         place for a NUL outside strings, nor inside them unescaped, so the
 *         transcoder must reject every text holding one: that is checked, and
 *         jansson is not asked.
 *     Limits are set far above anything generated, so they play no part.
 * (b) When both accept, the msgpack is one complete, canonical msgpack value
 *     (msgpack-c unpacks it consuming every byte, and repacking its object
 *     gives the same bytes), and it is the same JSON value as jansson's tree:
 *     same types, numbers, strings, order of arrays, and map keys exactly
 *     jansson's (so no duplicate key survives). The write-back leg (msgpack
 *     to JSON via json_write_value and back through jansson) lives in
 *     test_json_roundtrip.c.
 *
 * PROFILED_DIFF_SEED and PROFILED_DIFF_DOCS override the seed and count.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_gen.h"
#include "json_transcode.h"

static uint64_t diff_seed(void)
{
    const char *env = getenv("PROFILED_DIFF_SEED");
    return env ? strtoull(env, NULL, 0) : 20261128;
}

static unsigned diff_docs(void)
{
    const char *env = getenv("PROFILED_DIFF_DOCS");
    return env ? (unsigned)strtoul(env, NULL, 0) : 4000;
}

static limits_t diff_limits(void)
{
    limits_t limits = {.max_body_bytes = 64 << 20,
                       .max_depth = 1000,
                       .max_key_bytes = 1 << 20,
                       .max_string_bytes = 1 << 20,
                       .max_keys = 1 << 20};
    return limits;
}

static void diff_dump(const char *what, unsigned doc, const buf_t *text)
{
    fprintf(stderr, "%s in document %u (seed %llu):\n", what, doc, (unsigned long long)diff_seed());
    fwrite(text->data, 1, text->len, stderr);
    fputc('\n', stderr);
}

/* (b): out holds one canonical msgpack value equal to jansson's `root`. */
static void diff_check_msgpack(const buf_t *out, const json_t *root, unsigned doc, const buf_t *text)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&unpacked, (const char *)out->data, out->len, &off);
    if (ret != MSGPACK_UNPACK_SUCCESS || off != out->len)
        diff_dump("msgpack not one complete value", doc, text);
    ck_assert_int_eq(ret, MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, out->len);
    char why[256] = "";
    bool equal = gen_equal(&unpacked.data, root, why, sizeof(why));
    if (!equal)
        diff_dump(why, doc, text);
    ck_assert_msg(equal, "doc %u: %s", doc, why);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    ck_assert_int_eq(msgpack_pack_object(&pk, unpacked.data), 0);
    bool canonical = sbuf.size == out->len && memcmp(sbuf.data, out->data, out->len) == 0;
    if (!canonical)
        diff_dump("msgpack not in its smallest forms", doc, text);
    ck_assert(canonical);
    msgpack_sbuffer_destroy(&sbuf);
    msgpack_unpacked_destroy(&unpacked);
}

static bool diff_jansson_too_big(const json_error_t *error)
{
    return strstr(error->text, "too big") != NULL;
}

/* The second documented difference: raw NUL bytes. No JSON text holds one
 * (not in strings, not as whitespace), so the transcoder must reject every
 * such text; jansson 2.14 accepts some of them (a NUL after a number or a
 * literal: "[1\0]", "-12\0", "{\"a\":true\0,\"b\":1}"). */
static bool diff_has_nul(const buf_t *text)
{
    return memchr(text->data, 0, text->len) != NULL;
}

/* Mutations can turn a generated key into a documented profile field (say
 * "profilex" into "profile"), which the schema check then types; such
 * bodies are skipped rather than modelled here. */
static bool diff_has_documented_field(const json_t *profile)
{
    static const char *documented[] = {"address",
                                       "airship",
                                       "apn",
                                       "birthdate",
                                       "discord",
                                       "email",
                                       "email_verified",
                                       "expo",
                                       "family_name",
                                       "firebaseToken",
                                       "gender",
                                       "given_name",
                                       "intercom",
                                       "locale",
                                       "middle_name",
                                       "ms_teams",
                                       "name",
                                       "nickname",
                                       "phone_number",
                                       "phone_number_verified",
                                       "picture",
                                       "preferred_username",
                                       "profile",
                                       "slack",
                                       "sub",
                                       "updated_at",
                                       "website",
                                       "zoneinfo"};
    for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
        if (json_object_get(profile, documented[i]))
            return true;
    return false;
}

START_TEST(test_values)
{
    gen_rng_t rng = {diff_seed()};
    limits_t limits = diff_limits();
    unsigned both_accept = 0, both_reject = 0, excluded = 0, excluded_we_accept = 0, with_nul = 0;
    unsigned docs = diff_docs();
    buf_t text = {0}, out = {0};
    for (unsigned doc = 0; doc < docs; doc++) {
        buf_reset(&text);
        gen_value(&rng, &text, 1 + (int)(gen_next(&rng) % 6));
        if (doc % 2)
            gen_mutate(&rng, &text);
        json_error_t jerror;
        json_t *root = json_loadb((const char *)text.data, text.len, JSON_DECODE_ANY, &jerror);
        buf_reset(&out);
        transcode_error_t terror;
        int rc = transcode_value(text.data, text.len, &limits, &out, &terror);
        if (diff_has_nul(&text)) {
            ck_assert_msg(rc != 0, "doc %u: a text with a NUL byte was accepted", doc);
            with_nul++;
            json_decref(root);
            continue;
        }
        if (!root && diff_jansson_too_big(&jerror)) {
            excluded++;
            excluded_we_accept += rc == 0;
            continue;
        }
        if ((root != NULL) != (rc == 0)) {
            diff_dump(root ? "jansson accepts, transcoder rejects" : "transcoder accepts, jansson rejects",
                      doc, &text);
            fprintf(stderr, "transcoder: %s\njansson: %s\n", rc ? terror.message : "ok",
                    root ? "ok" : jerror.text);
        }
        ck_assert_msg((root != NULL) == (rc == 0), "doc %u: jansson %s, transcoder %s", doc,
                      root ? "accepts" : jerror.text, rc ? terror.message : "accepts");
        if (rc != 0) {
            /* Generous limits: any rejection is a grammar/encoding one. */
            ck_assert_int_eq(terror.status, TRANSCODE_ERR_SYNTAX);
            ck_assert_uint_le(terror.offset, text.len);
            both_reject++;
            continue;
        }
        diff_check_msgpack(&out, root, doc, &text);
        json_decref(root);
        both_accept++;
    }
    fprintf(
        stderr,
        "json_differential values: %u documents, %u accepted by both, %u rejected by both, %u excluded as "
        "integers beyond int64 (transcoder accepted %u), %u holding a NUL byte (all rejected)\n",
        docs, both_accept, both_reject, excluded, excluded_we_accept, with_nul);
    /* The generator must exercise both sides, or this test proves nothing. */
    ck_assert_uint_ge(both_accept, docs / 4);
    ck_assert_uint_ge(both_reject, docs / 4);
    ck_assert_uint_gt(excluded, 0);
    buf_free(&text);
    buf_free(&out);
}
END_TEST

/*
 * Requests: {"profile": DOC} with other members around it. Accepted exactly
 * when jansson accepts the body and its (last) "profile" is an object, and
 * then the output is byte for byte transcode_value(DOC): the wrapper and its
 * other members leave no trace. The generator's keys avoid the documented
 * profile fields, so the schema check stays out of it.
 */
START_TEST(test_requests)
{
    gen_rng_t rng = {diff_seed() ^ 0x5EED};
    limits_t limits = diff_limits();
    unsigned accepted = 0, rejected = 0, excluded = 0;
    unsigned docs = diff_docs() / 2;
    buf_t text = {0}, doc_text = {0}, out = {0}, want = {0};
    for (unsigned doc = 0; doc < docs; doc++) {
        buf_reset(&text);
        buf_reset(&doc_text);
        gen_object(&rng, &doc_text, 1 + (int)(gen_next(&rng) % 5));
        buf_append_byte(&text, '{');
        if (gen_next(&rng) % 2) {
            buf_append_str(&text, "\"before\":");
            gen_value(&rng, &text, 3);
            buf_append_byte(&text, ',');
        }
        buf_append_str(&text, "\"profile\" : ");
        buf_append(&text, doc_text.data, doc_text.len);
        if (gen_next(&rng) % 2) {
            buf_append_str(&text, ",\"after\":");
            gen_value(&rng, &text, 3);
        }
        buf_append_byte(&text, '}');
        if (doc % 2)
            gen_mutate(&rng, &text);
        json_error_t jerror;
        json_t *root = json_loadb((const char *)text.data, text.len, JSON_DECODE_ANY, &jerror);
        buf_reset(&out);
        transcode_error_t terror;
        int rc = transcode_profile_request(text.data, text.len, &limits, &out, &terror);
        if (diff_has_nul(&text)) {
            ck_assert_msg(rc != 0, "doc %u: a text with a NUL byte was accepted", doc);
            excluded++;
            json_decref(root);
            continue;
        }
        if (!root && diff_jansson_too_big(&jerror)) {
            excluded++;
            continue;
        }
        json_t *profile = root && json_is_object(root) ? json_object_get(root, "profile") : NULL;
        bool want_ok = profile && json_is_object(profile);
        if (want_ok && diff_has_documented_field(profile)) {
            excluded++;
            json_decref(root);
            continue;
        }
        if (want_ok != (rc == 0))
            diff_dump(want_ok ? "jansson has a profile object, transcoder rejects" : "transcoder accepts",
                      doc, &text);
        ck_assert_msg(want_ok == (rc == 0), "doc %u: transcoder %s", doc, rc ? terror.message : "accepts");
        if (rc == 0) {
            diff_check_msgpack(&out, profile, doc, &text);
            if (doc % 2 == 0) { /* unmutated: the profile is exactly DOC */
                buf_reset(&want);
                ck_assert_int_eq(transcode_value(doc_text.data, doc_text.len, &limits, &want, &terror), 0);
                ck_assert_uint_eq(out.len, want.len);
                ck_assert_int_eq(memcmp(out.data, want.data, out.len), 0);
            }
            accepted++;
        } else {
            ck_assert_int_eq(terror.status, root ? TRANSCODE_ERR_SCHEMA : TRANSCODE_ERR_SYNTAX);
            rejected++;
        }
        json_decref(root);
    }
    fprintf(stderr, "json_differential requests: %u bodies, %u accepted, %u rejected, %u excluded\n", docs,
            accepted, rejected, excluded);
    ck_assert_uint_ge(accepted, docs / 8);
    ck_assert_uint_ge(rejected, docs / 8);
    buf_free(&text);
    buf_free(&doc_text);
    buf_free(&out);
    buf_free(&want);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json_differential");
    TCase *tc = tcase_create("jansson");
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_requests);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
