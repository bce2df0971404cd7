/*
 * Unit tests of profiled-api's read-your-writes pieces, no services:
 * api_prefer_find (prefer.h) on a table of Prefer headers, and the applied
 * positions (applied.h): offset order per partition, positions that only
 * grow, notifications of other topics ignored, cancel, and the deadline
 * sweep (with the clock stubbed).
 */
#include <check.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "applied.h"
#include "prefer.h"

static int64_t fake_now_us;

/* applied.c's clock (reply.c in the binary). */
int64_t api_now_us(void);
int64_t api_now_us(void)
{
    return fake_now_us;
}

/* ---- Prefer ---------------------------------------------------------------------------------- */

typedef struct prefer_case {
    const char *header;
    bool found;
    const char *value;
} prefer_case_t;

static const prefer_case_t prefer_cases[] = {
    {"profiled-ack=kafka", true, "kafka"},
    {"Profiled-ACK=applied", true, "applied"},
    {"respond-async, profiled-ack=kafka", true, "kafka"},
    {"respond-async,profiled-ack = \"applied\" ; x=1", true, "applied"},
    {"wait=10, handling=lenient;profiled-ack=kafka", false, ""}, /* a parameter, not a preference */
    {"return=\"a,profiled-ack=kafka\", profiled-ack=applied", true, "applied"}, /* a quoted comma */
    {"profiled-ack", true, ""},
    {"profiled-acks=kafka", false, ""},
    {"x-profiled-ack=kafka", false, ""},
    {"profiled-ack=\"unterminated", false, ""},
    {"profiled-ack=averyveryverylongvalue", false, ""}, /* over the 16-byte buffer */
    {"", false, ""},
    {",,, ,", false, ""},
    {"profiled-ack=kafka, profiled-ack=applied", true, "kafka"}, /* the first wins */
};

START_TEST(test_prefer_table)
{
    const prefer_case_t *c = &prefer_cases[_i];
    char value[16];
    bool found = api_prefer_find(c->header, "profiled-ack", value, sizeof(value));
    ck_assert_msg(found == c->found, "Prefer: %s: found %d", c->header, found);
    if (found)
        ck_assert_str_eq(value, c->value);
}
END_TEST

/* ---- applied positions ----------------------------------------------------------------------- */

#define WAITS 6

static api_applied_wait_t waits[WAITS];
static int order[WAITS * 2], order_len;
static bool outcome[WAITS];

static void record(api_applied_wait_t *wait, bool applied)
{
    int i = (int)(wait - waits);
    outcome[i] = applied;
    order[order_len++] = i;
}

static void setup_applied(api_applied_t *applied, struct event_base **base)
{
    *base = event_base_new();
    ck_assert_ptr_nonnull(*base);
    char errstr[128];
    ck_assert_int_eq(api_applied_init(applied, *base, "t.commands", NULL, errstr, sizeof(errstr)), 0);
    memset(waits, 0, sizeof(waits));
    memset(outcome, 0, sizeof(outcome));
    order_len = 0;
    fake_now_us = 0;
}

START_TEST(test_applied_offset_order)
{
    api_applied_t applied;
    struct event_base *base;
    setup_applied(&applied, &base);
    /* Partition 1: offsets 30, 10, 20 held out of order; partition 2: offset 5. */
    ck_assert(!api_applied_hold(&applied, &waits[0], 1, 30, 1000000, record));
    ck_assert(!api_applied_hold(&applied, &waits[1], 1, 10, 1000000, record));
    ck_assert(!api_applied_hold(&applied, &waits[2], 1, 20, 1000000, record));
    ck_assert(!api_applied_hold(&applied, &waits[3], 2, 5, 1000000, record));
    ck_assert_int_eq(api_applied_held(&applied), 4);

    /* next_offset 20 covers offsets < 20 only: 10, not 20. */
    api_applied_advance(&applied, 1, 20);
    ck_assert_int_eq(order_len, 1);
    ck_assert_int_eq(order[0], 1);
    ck_assert(outcome[1]);
    /* An older position changes nothing. */
    api_applied_advance(&applied, 1, 15);
    ck_assert_int_eq(order_len, 1);
    /* Other topics and malformed entries are skipped; partition 2 is not touched by partition 1. */
    ck_assert_int_eq(api_applied_notify(&applied, "other/1/100,t.commands/x/1,t.commands/1/31,junk"), 2);
    ck_assert_int_eq(order_len, 3);
    ck_assert_int_eq(order[1], 2);
    ck_assert_int_eq(order[2], 0);
    ck_assert_int_eq(api_applied_held(&applied), 1);
    /* Known and passed: answered at once, nothing held. */
    ck_assert(api_applied_hold(&applied, &waits[4], 1, 30, 1000000, record));
    ck_assert(!api_applied_hold(&applied, &waits[5], 1, 31, 1000000, record));
    api_applied_cancel(&applied, &waits[5]);
    api_applied_cancel(&applied, &waits[5]); /* a no-op the second time */
    api_applied_advance(&applied, 1, 100);
    ck_assert_int_eq(order_len, 3);
    ck_assert_int_eq(api_applied_held(&applied), 1);
    api_applied_expire_all(&applied);
    ck_assert_int_eq(order_len, 4);
    ck_assert_int_eq(order[3], 3);
    ck_assert(!outcome[3]);
    ck_assert_int_eq(api_applied_held(&applied), 0);
    api_applied_destroy(&applied);
    event_base_free(base);
}
END_TEST

START_TEST(test_applied_deadlines)
{
    api_applied_t applied;
    struct event_base *base;
    setup_applied(&applied, &base);
    ck_assert(!api_applied_hold(&applied, &waits[0], 0, 1, 3000, record));
    ck_assert(
        !api_applied_hold(&applied, &waits[1], 0, 2, 1000, record)); /* earlier deadline, later offset */
    ck_assert(!api_applied_hold(&applied, &waits[2], 3, 1, 2000, record));
    /* At 2 ms: the 1 ms and 2 ms deadlines passed, in deadline order; the 3 ms one waits. */
    fake_now_us = 2000;
    for (int i = 0; i < 100 && order_len < 2; i++)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_int_eq(order_len, 2);
    ck_assert_int_eq(order[0], 1);
    ck_assert_int_eq(order[1], 2);
    ck_assert(!outcome[1] && !outcome[2]);
    ck_assert_int_eq(api_applied_held(&applied), 1);
    /* The position wakes the last one before its deadline. */
    api_applied_advance(&applied, 0, 2);
    ck_assert_int_eq(order_len, 3);
    ck_assert(outcome[0]);
    api_applied_destroy(&applied);
    event_base_free(base);
}
END_TEST

static Suite *api_applied_unit_suite(void)
{
    Suite *suite = suite_create("api_applied_unit");
    TCase *tc = tcase_create("prefer");
    tcase_add_loop_test(tc, test_prefer_table, 0, (int)(sizeof(prefer_cases) / sizeof(prefer_cases[0])));
    suite_add_tcase(suite, tc);
    tc = tcase_create("applied");
    tcase_add_test(tc, test_applied_offset_order);
    tcase_add_test(tc, test_applied_deadlines);
    suite_add_tcase(suite, tc);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(api_applied_unit_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
