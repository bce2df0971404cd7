/* Unit tests for common/wire's small modules: UTF-8 validation, the growing buffer, and the one JSON
 * escaper with its two policies. Links profiled_wire alone: no I/O, no logger. */
#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json_write.h"
#include "utf8.h"

static bool valid(const char *bytes, size_t len, bool *has_nul)
{
    return utf8_valid((const uint8_t *)bytes, len, has_nul);
}

START_TEST(utf8_accepts_and_rejects)
{
    bool nul = true;
    ck_assert(valid("plain ascii text, long enough for the fast path", 47, &nul));
    ck_assert(!nul);
    ck_assert(valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, NULL)); /* é € 😀 */
    ck_assert(valid("ab\0cdefghijkl", 13, &nul));
    ck_assert(nul);
    ck_assert(valid("a\0", 2, &nul));
    ck_assert(nul);
    ck_assert(!valid("\xc0\xaf", 2, NULL));                    /* overlong '/' */
    ck_assert(!valid("\xe0\x80\xaf", 3, NULL));                /* overlong 3-byte */
    ck_assert(!valid("\xed\xa0\x80", 3, NULL));                /* surrogate U+D800 */
    ck_assert(!valid("\xf4\x90\x80\x80", 4, NULL));            /* above U+10FFFF */
    ck_assert(!valid("\xe2\x82", 2, NULL));                    /* truncated */
    ck_assert(!valid("\x80", 1, NULL));                        /* lone continuation */
    ck_assert(!valid("12345678\xff", 9, NULL));                /* after the fast path */
    ck_assert(valid("\xef\xbf\xbf\xf4\x8f\xbf\xbf", 7, NULL)); /* U+FFFF, U+10FFFF */
}
END_TEST

START_TEST(buf_grows_and_formats)
{
    buf_t buf = {0};
    for (int i = 0; i < 1000; i++)
        buf_append_byte(&buf, (uint8_t)('a' + i % 26));
    ck_assert_uint_eq(buf.len, 1000);
    ck_assert_int_eq(buf.data[999], 'a' + 999 % 26);
    buf_reset(&buf);
    char big[600];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_appendf(&buf, "%d-%s", 42, big);
    ck_assert_uint_eq(buf.len, 3 + sizeof(big) - 1);
    buf_terminate(&buf);
    ck_assert(strncmp((char *)buf.data, "42-xxx", 6) == 0);
    buf_free(&buf);
    ck_assert_ptr_null(buf.data);
}
END_TEST

/* One escaper, two policies: data is strict (0x7f kept, bad UTF-8 refused before it gets here);
 * logs and error bodies are lossy: each bad byte is U+FFFD, 0x7f is escaped. runtime's log fields and
 * http's error bodies go through the lossy one (their tests check the same text). */
START_TEST(json_escape_policies)
{
    static const char text[] = "a\x7f\xff\xc3\xa9\n\"";
    char out[64];
    size_t n = json_escape(out, text, sizeof(text) - 1, JSON_ESCAPE_LOSSY);
    ck_assert_str_eq((out[n] = '\0', out), "a\\u007f\\ufffd\xc3\xa9\\n\\\"");
    buf_t body = {0};
    json_write_string(&body, "a\x7f\xc3\xa9", 4);
    buf_terminate(&body);
    ck_assert_str_eq((char *)body.data, "\"a\x7f\xc3\xa9\"");
    buf_free(&body);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("wire");
    TCase *tcase = tcase_create("wire");
    tcase_set_timeout(tcase, 20);
    tcase_add_test(tcase, utf8_accepts_and_rejects);
    tcase_add_test(tcase, buf_grows_and_formats);
    tcase_add_test(tcase, json_escape_policies);
    suite_add_tcase(suite, tcase);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
