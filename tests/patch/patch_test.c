/*
 * json_patch (pointers and operation checks, common/wire) and doc (merge and
 * patch on msgpack-c trees, services/worker): RFC 6901 pointers, the RFC 6902
 * appendix A situations restated with our own data, RFC 7396 merge rules.
 * Documents are written as JSON and compared as the worker writes them back.
 */
#include <check.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "json_patch.h"
#include "json_transcode.h"
#include "json_write.h"

static limits_t t_limits(void)
{
    return limits_default();
}

static buf_t t_msgpack(const char *json)
{
    buf_t out = {0};
    transcode_error_t e;
    limits_t limits = t_limits();
    ck_assert_msg(transcode_value((const uint8_t *)json, strlen(json), &limits, &out, &e) == 0, "%s: %s",
                  json, e.message);
    return out;
}

static char t_json[4096];

static const char *t_write(const msgpack_object *doc)
{
    buf_t packed = {0}, json = {0};
    size_t used;
    codec_failure_t f;
    limits_t limits = t_limits();
    doc_pack(doc, &packed);
    ck_assert_int_eq(json_write_value(packed.data, packed.len, &limits, "doc", &used, &json, &f), 0);
    ck_assert_uint_lt(json.len, sizeof(t_json));
    memcpy(t_json, json.data, json.len);
    t_json[json.len] = '\0';
    buf_free(&packed);
    buf_free(&json);
    return t_json;
}

/* Applies `patch` (the array, as JSON) to `doc`: the result as JSON, or
 * "refused: <reason>". The patch must pass jpatch_check. */
static const char *t_patch(const char *doc, const char *patch)
{
    static char result[4096];
    buf_t d = t_msgpack(doc), p = t_msgpack(patch), scratch = {0};
    size_t used;
    codec_failure_t f;
    limits_t limits = t_limits();
    ck_assert_msg(jpatch_check(p.data, p.len, &limits, &used, &scratch, &f) == 0, "%s: %s", patch, f.message);
    msgpack_zone *zone = msgpack_zone_new(4096);
    msgpack_object base, out;
    doc_unpack(zone, d.data, d.len, &base);
    char reason[256];
    if (doc_patch(zone, &base, p.data, p.len, &out, reason, sizeof(reason)) == 0)
        snprintf(result, sizeof(result), "%s", t_write(&out));
    else
        snprintf(result, sizeof(result), "refused: %s", reason);
    /* the input tree is never changed, applied or refused */
    ck_assert_str_eq(t_write(&base), doc[0] == '{' && strchr(doc, ' ') == NULL ? doc : t_write(&base));
    msgpack_zone_free(zone);
    buf_free(&d);
    buf_free(&p);
    buf_free(&scratch);
    return result;
}

static const char *t_merge(const char *doc, const char *patch)
{
    static char result[4096];
    buf_t d = t_msgpack(doc), p = t_msgpack(patch);
    msgpack_zone *zone = msgpack_zone_new(4096);
    msgpack_object base, mp, out;
    doc_unpack(zone, d.data, d.len, &base);
    doc_unpack(zone, p.data, p.len, &mp);
    doc_merge(zone, &base, &mp, &out);
    snprintf(result, sizeof(result), "%s", t_write(&out));
    msgpack_zone_free(zone);
    buf_free(&d);
    buf_free(&p);
    return result;
}

/* The code and message of a patch the checks refuse. */
static codec_failure_t t_check_fails(const char *patch)
{
    buf_t p = t_msgpack(patch), scratch = {0};
    size_t used;
    codec_failure_t f;
    limits_t limits = t_limits();
    ck_assert_msg(jpatch_check(p.data, p.len, &limits, &used, &scratch, &f) != 0, "%s passes", patch);
    buf_free(&p);
    buf_free(&scratch);
    return f;
}

START_TEST(pointers)
{
    ck_assert(jpointer_valid("", 0));
    ck_assert(jpointer_valid("/", 1));
    ck_assert(jpointer_valid("/a~0b/~1/0", 10));
    ck_assert(!jpointer_valid("a", 1));
    ck_assert(!jpointer_valid("/a~", 3));
    ck_assert(!jpointer_valid("/a~2", 4));
    ck_assert_uint_eq(jpointer_depth("/a/b/", 5), 3);
    /* "~01" is "~1" (the ~0 is decoded once, never again) */
    const char *ptr = "/~01/x~1y//";
    size_t pos = 0;
    buf_t token = {0};
    const char *want[] = {"~1", "x/y", "", ""};
    for (int i = 0; i < 4; i++) {
        ck_assert(jpointer_next(ptr, strlen(ptr), &pos, &token));
        ck_assert_uint_eq(token.len, strlen(want[i]));
        ck_assert(token.len == 0 || memcmp(token.data, want[i], token.len) == 0);
    }
    ck_assert(!jpointer_next(ptr, strlen(ptr), &pos, &token));
    buf_free(&token);
}
END_TEST

/* RFC 6902 appendix A, one situation per line, our own data. */
START_TEST(rfc6902_appendix_a)
{
    /* A.1 a member added to an object */
    ck_assert_str_eq(t_patch("{\"x\":\"1\"}", "[{\"op\":\"add\",\"path\":\"/y\",\"value\":\"2\"}]"),
                     "{\"x\":\"1\",\"y\":\"2\"}");
    /* A.2 an element inserted into an array, the later ones shifting */
    ck_assert_str_eq(t_patch("{\"l\":[\"p\",\"r\"]}", "[{\"op\":\"add\",\"path\":\"/l/1\",\"value\":\"q\"}]"),
                     "{\"l\":[\"p\",\"q\",\"r\"]}");
    /* A.3 a member removed */
    ck_assert_str_eq(t_patch("{\"x\":1,\"y\":2}", "[{\"op\":\"remove\",\"path\":\"/y\"}]"), "{\"x\":1}");
    /* A.4 an element removed, the later ones shifting back */
    ck_assert_str_eq(t_patch("{\"l\":[1,2,3,4]}", "[{\"op\":\"remove\",\"path\":\"/l/1\"}]"),
                     "{\"l\":[1,3,4]}");
    /* A.5 a value replaced */
    ck_assert_str_eq(t_patch("{\"x\":1,\"y\":2}", "[{\"op\":\"replace\",\"path\":\"/x\",\"value\":0}]"),
                     "{\"x\":0,\"y\":2}");
    /* A.6 a value moved from one object to another */
    ck_assert_str_eq(t_patch("{\"a\":{\"k\":\"v\",\"z\":1},\"b\":{\"w\":2}}",
                             "[{\"op\":\"move\",\"from\":\"/a/k\",\"path\":\"/b/k\"}]"),
                     "{\"a\":{\"z\":1},\"b\":{\"w\":2,\"k\":\"v\"}}");
    /* A.7 an element moved within its array (removed first, then inserted) */
    ck_assert_str_eq(t_patch("{\"l\":[\"a\",\"b\",\"c\",\"d\"]}",
                             "[{\"op\":\"move\",\"from\":\"/l/1\",\"path\":\"/l/3\"}]"),
                     "{\"l\":[\"a\",\"c\",\"d\",\"b\"]}");
    /* A.8 tests that hold change nothing */
    ck_assert_str_eq(t_patch("{\"n\":\"x\",\"arr\":[1,2]}",
                             "[{\"op\":\"test\",\"path\":\"/n\",\"value\":\"x\"},"
                             "{\"op\":\"test\",\"path\":\"/arr\",\"value\":[1,2]}]"),
                     "{\"n\":\"x\",\"arr\":[1,2]}");
    /* A.9 a test that fails refuses the whole patch, earlier operations included */
    ck_assert_str_eq(t_patch("{\"n\":\"x\"}", "[{\"op\":\"add\",\"path\":\"/m\",\"value\":1},"
                                              "{\"op\":\"test\",\"path\":\"/n\",\"value\":\"y\"}]"),
                     "refused: patch[1] (test /n): the value differs");
    /* A.10 an object added as a nested value */
    ck_assert_str_eq(t_patch("{\"x\":1}", "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grand\":{}}}]"),
                     "{\"x\":1,\"child\":{\"grand\":{}}}");
    /* A.11 members an operation does not define are ignored */
    ck_assert_str_eq(t_patch("{\"x\":1}", "[{\"op\":\"add\",\"path\":\"/y\",\"value\":2,\"extra\":[0]}]"),
                     "{\"x\":1,\"y\":2}");
    /* A.12 adding under a parent that does not exist is an error */
    ck_assert_str_eq(t_patch("{\"x\":1}", "[{\"op\":\"add\",\"path\":\"/nope/y\",\"value\":2}]"),
                     "refused: patch[0] (add /nope/y): no member \"nope\"");
    /* A.14 ~01 names the key "~1", not "/" */
    ck_assert_str_eq(t_patch("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]"),
                     "{\"/\":9,\"~1\":10}");
    /* A.15 a string never equals a number */
    ck_assert_str_eq(t_patch("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":\"10\"}]"),
                     "refused: patch[0] (test /~01): the value differs");
    /* A.16 an array added as one element at the end ("-") */
    ck_assert_str_eq(
        t_patch("{\"l\":[\"x\"]}", "[{\"op\":\"add\",\"path\":\"/l/-\",\"value\":[\"y\",\"z\"]}]"),
        "{\"l\":[\"x\",[\"y\",\"z\"]]}");
}
END_TEST

START_TEST(patch_edges)
{
    /* copy shares nothing visible: changing the copy leaves the original */
    ck_assert_str_eq(t_patch("{\"a\":{\"k\":1}}", "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/b\"},"
                                                  "{\"op\":\"replace\",\"path\":\"/b/k\",\"value\":2}]"),
                     "{\"a\":{\"k\":1},\"b\":{\"k\":2}}");
    /* replace and remove need the member; indexes: no leading zero, not past the end */
    ck_assert_str_eq(t_patch("{}", "[{\"op\":\"replace\",\"path\":\"/a\",\"value\":1}]"),
                     "refused: patch[0] (replace /a): no member \"a\"");
    ck_assert_str_eq(t_patch("{\"l\":[1,2]}", "[{\"op\":\"remove\",\"path\":\"/l/01\"}]"),
                     "refused: patch[0] (remove /l/01): no element \"01\" in an array of 2");
    ck_assert_str_eq(t_patch("{\"l\":[1,2]}", "[{\"op\":\"add\",\"path\":\"/l/3\",\"value\":0}]"),
                     "refused: patch[0] (add /l/3): no element \"3\" in an array of 2");
    ck_assert_str_eq(t_patch("{\"l\":[1,2]}", "[{\"op\":\"add\",\"path\":\"/l/2\",\"value\":0}]"),
                     "{\"l\":[1,2,0]}");
    /* the whole profile: replaced by a map, never removed, never a non-map */
    ck_assert_str_eq(t_patch("{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"\",\"value\":{\"b\":2}}]"),
                     "{\"b\":2}");
    ck_assert_str_eq(t_patch("{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"\"}]"),
                     "refused: patch[0] (remove ): the whole profile cannot be removed (DELETE does that)");
    ck_assert_str_eq(t_patch("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"\",\"value\":[1]}]"),
                     "refused: patch: the result is not an object");
    /* numbers compare by value; maps whatever their order */
    ck_assert_str_eq(t_patch("{\"n\":1,\"m\":{\"a\":1,\"b\":2}}",
                             "[{\"op\":\"test\",\"path\":\"/n\",\"value\":1.0},"
                             "{\"op\":\"test\",\"path\":\"/m\",\"value\":{\"b\":2,\"a\":1}}]"),
                     "{\"n\":1,\"m\":{\"a\":1,\"b\":2}}");
    /* moving a value onto itself is a no-op */
    ck_assert_str_eq(t_patch("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a\"}]"),
                     "{\"a\":1}");
}
END_TEST

START_TEST(patch_checks)
{
    codec_failure_t f = t_check_fails("[{\"op\":\"increment\",\"path\":\"/a\"}]");
    ck_assert_int_eq(f.code, CODEC_ERR_BAD_PATCH);
    ck_assert_str_eq(f.message, "patch[0].op: must be one of add, remove, replace, move, copy, test");
    f = t_check_fails("[{\"op\":\"remove\",\"path\":\"/a\"},{\"op\":\"remove\",\"path\":\"a\"}]");
    ck_assert_msg(strstr(f.message, "patch[1].path: not a JSON Pointer") != NULL, "%s", f.message);
    f = t_check_fails("[{\"op\":\"add\",\"path\":\"/a\"}]");
    ck_assert_str_eq(f.message, "patch[0].value: required for add");
    f = t_check_fails("[{\"op\":\"copy\",\"path\":\"/a\"}]");
    ck_assert_str_eq(f.message, "patch[0].from: required for copy");
    f = t_check_fails("[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b\"}]");
    ck_assert_msg(strstr(f.message, "moved into one of its children") != NULL, "%s", f.message);
    f = t_check_fails("[{\"op\":\"remove\",\"path\":7}]");
    ck_assert_msg(strstr(f.message, "patch[0].path: must be a string") != NULL, "%s", f.message);
    f = t_check_fails("[3]");
    ck_assert_str_eq(f.message, "patch[0]: must be an object, got int");
    f = t_check_fails("{\"op\":\"remove\"}");
    ck_assert_msg(strstr(f.message, "patch: must be an array") != NULL, "%s", f.message);
    /* "/a/bc" is not inside "/a/b": a move there is fine */
    buf_t p = t_msgpack("[{\"op\":\"move\",\"from\":\"/a/b\",\"path\":\"/a/bc\"}]"), scratch = {0};
    size_t used;
    limits_t limits = t_limits();
    ck_assert_int_eq(jpatch_check(p.data, p.len, &limits, &used, &scratch, &f), 0);
    buf_free(&p);
    buf_free(&scratch);
}
END_TEST

START_TEST(request_bodies)
{
    buf_t out = {0};
    transcode_error_t e;
    limits_t limits = t_limits();
    const char *ok = "{\"patch\":[{\"value\":1,\"path\":\"/a\",\"op\":\"add\"}],\"other\":true}";
    ck_assert_int_eq(jpatch_request((const uint8_t *)ok, strlen(ok), &limits, &out, &e), 0);
    /* canonical: members op, path, value */
    buf_t want = t_msgpack("[{\"op\":\"add\",\"path\":\"/a\",\"value\":1}]");
    ck_assert(out.len == want.len && memcmp(out.data, want.data, out.len) == 0);
    const char *bad[] = {"[]", "{\"ops\":[]}", "{\"patch\":[{\"op\":\"add\",\"path\":\"/a\"}]}",
                         "{\"patch\":", "{\"patch\":{}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        buf_reset(&out);
        ck_assert_msg(jpatch_request((const uint8_t *)bad[i], strlen(bad[i]), &limits, &out, &e) != 0, "%s",
                      bad[i]);
        ck_assert(e.status != TRANSCODE_OK && e.message[0]);
    }
    buf_free(&out);
    buf_free(&want);
}
END_TEST

/* RFC 7396 as Courier's POST documents it. */
START_TEST(merge_rules)
{
    ck_assert_str_eq(t_merge("{\"a\":1,\"b\":2}", "{\"b\":3,\"c\":4}"), "{\"a\":1,\"b\":3,\"c\":4}");
    ck_assert_str_eq(t_merge("{\"a\":1,\"b\":2}", "{\"a\":null}"), "{\"b\":2}");
    ck_assert_str_eq(t_merge("{\"a\":1}", "{\"zz\":null}"), "{\"a\":1}");
    ck_assert_str_eq(t_merge("{\"o\":{\"x\":1,\"y\":2}}", "{\"o\":{\"y\":null,\"z\":3}}"),
                     "{\"o\":{\"x\":1,\"z\":3}}");
    ck_assert_str_eq(t_merge("{\"o\":[1,2]}", "{\"o\":{\"k\":null,\"j\":1}}"), "{\"o\":{\"j\":1}}");
    ck_assert_str_eq(t_merge("{\"l\":[1,{\"a\":1}]}", "{\"l\":[null,2]}"), "{\"l\":[null,2]}");
    ck_assert_str_eq(t_merge("{\"a\":1}", "{}"), "{\"a\":1}");
    ck_assert_str_eq(t_merge("{}", "{\"a\":{\"b\":null}}"), "{\"a\":{}}");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("patch");
    TCase *t = tcase_create("cases");
    tcase_add_test(t, pointers);
    tcase_add_test(t, rfc6902_appendix_a);
    tcase_add_test(t, patch_edges);
    tcase_add_test(t, patch_checks);
    tcase_add_test(t, request_bodies);
    tcase_add_test(t, merge_rules);
    suite_add_tcase(s, t);
    SRunner *runner = srunner_create(s);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
