/*
 * fold: table cases for the batch reduction, and the DESIGN §5 property:
 * on random command sequences (duplicates, versions, several recipients, rows
 * and ids stored before), folding in random batches gives the same rows, the
 * same recorded ids and the same skip counts as applying one command at a time.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fold.h"

/* ------------------------------------------------------------ table cases */

static uint8_t ids[64][FOLD_ID_BYTES];

static const uint8_t *id_of(int n)
{
    memset(ids[n], 0, FOLD_ID_BYTES);
    ids[n][0] = (uint8_t)n;
    ids[n][15] = 0xAB;
    return ids[n];
}

static fold_command_t cmd(const char *recipient, int id, int version /* 0: none */)
{
    fold_command_t c = {.recipient_id = recipient,
                        .recipient_id_len = strlen(recipient),
                        .command_id = id_of(id),
                        .has_version = version > 0,
                        .version = (uint64_t)(version > 0 ? version : 0)};
    return c;
}

START_TEST(last_command_per_recipient_is_written)
{
    fold_command_t c[4] = {cmd("a", 1, 0), cmd("b", 2, 0), cmd("a", 3, 0), cmd("a", 4, 0)};
    fold_result_t r[4];
    fold_run(c, 4, NULL, 0, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_SUPERSEDED);
    ck_assert_int_eq(r[1].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[2].outcome, FOLD_SUPERSEDED);
    ck_assert_int_eq(r[3].outcome, FOLD_WRITTEN);
    ck_assert(!r[3].store_has_version);
}
END_TEST

START_TEST(duplicate_of_superseded_does_not_resurrect_it)
{
    fold_command_t c[3] = {cmd("a", 1, 0), cmd("a", 2, 0), cmd("a", 1, 0)};
    fold_result_t r[3];
    fold_run(c, 3, NULL, 0, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_SUPERSEDED);
    ck_assert_int_eq(r[1].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[2].outcome, FOLD_DUPLICATE);
}
END_TEST

START_TEST(already_applied_id_is_duplicate)
{
    fold_command_t c[2] = {cmd("a", 1, 0), cmd("a", 2, 0)};
    fold_result_t r[2];
    fold_run(c, 2, NULL, 0, id_of(2), 1, r);
    ck_assert_int_eq(r[0].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[1].outcome, FOLD_DUPLICATE);
}
END_TEST

START_TEST(versions_fold_in_order_with_the_stored_one)
{
    fold_row_t row = {.recipient_id = "a", .recipient_id_len = 1, .has_version = true, .version = 5};
    /* 5 stale (equal), 7 applies, unversioned applies and keeps 7, 6 stale, 9 applies, 8 stale */
    fold_command_t c[6] = {cmd("a", 1, 5), cmd("a", 2, 7), cmd("a", 3, 0),
                           cmd("a", 4, 6), cmd("a", 5, 9), cmd("a", 6, 8)};
    fold_result_t r[6];
    fold_run(c, 6, &row, 1, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_STALE);
    ck_assert_int_eq(r[1].outcome, FOLD_SUPERSEDED);
    ck_assert_int_eq(r[2].outcome, FOLD_SUPERSEDED);
    ck_assert_int_eq(r[3].outcome, FOLD_STALE);
    ck_assert_int_eq(r[4].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[5].outcome, FOLD_STALE);
    ck_assert(r[4].store_has_version);
    ck_assert_uint_eq(r[4].store_version, 9);
}
END_TEST

START_TEST(unversioned_last_keeps_stored_version)
{
    fold_row_t row = {.recipient_id = "a", .recipient_id_len = 1, .has_version = true, .version = 5};
    fold_command_t c[1] = {cmd("a", 1, 0)};
    fold_result_t r[1];
    fold_run(c, 1, &row, 1, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_WRITTEN);
    ck_assert(r[0].store_has_version);
    ck_assert_uint_eq(r[0].store_version, 5);
}
END_TEST

START_TEST(missing_row_or_null_version_accepts_any_version)
{
    fold_row_t row = {.recipient_id = "b", .recipient_id_len = 1, .has_version = false};
    fold_command_t c[2] = {cmd("a", 1, 1), cmd("b", 2, 1)};
    fold_result_t r[2];
    fold_run(c, 2, &row, 1, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[1].outcome, FOLD_WRITTEN);
    ck_assert_uint_eq(r[1].store_version, 1);
}
END_TEST

START_TEST(stale_copy_stays_stale)
{
    fold_command_t c[3] = {cmd("a", 1, 4), cmd("a", 2, 3), cmd("a", 2, 3)};
    fold_result_t r[3];
    fold_run(c, 3, NULL, 0, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[1].outcome, FOLD_STALE);
    ck_assert_int_eq(r[2].outcome, FOLD_STALE);
}
END_TEST

/* ------------------------------------------------------------ property */

#define P_RECIPIENTS   6
#define P_MAX_COMMANDS 64

typedef struct p_command {
    char recipient[4];
    uint8_t id[FOLD_ID_BYTES];
    int version; /* 0: none */
} p_command_t;

typedef struct p_state {
    int exists[P_RECIPIENTS];
    uint8_t writer[P_RECIPIENTS][FOLD_ID_BYTES];
    int has_version[P_RECIPIENTS];
    uint64_t version[P_RECIPIENTS];
    uint8_t applied[P_MAX_COMMANDS][FOLD_ID_BYTES];
    int applied_count;
    int duplicates, stale;
} p_state_t;

static uint64_t p_rng;
static uint64_t p_next(void)
{
    /* xorshift64*: deterministic from the seed, so a failure names its case */
    p_rng ^= p_rng >> 12;
    p_rng ^= p_rng << 25;
    p_rng ^= p_rng >> 27;
    return p_rng * 2685821657736338717ULL;
}
static int p_below(int n)
{
    return (int)(p_next() % (uint64_t)n);
}

static int p_applied(const p_state_t *s, const uint8_t *id)
{
    for (int i = 0; i < s->applied_count; i++)
        if (memcmp(s->applied[i], id, FOLD_ID_BYTES) == 0)
            return 1;
    return 0;
}

static void p_record(p_state_t *s, const uint8_t *id)
{
    ck_assert(!p_applied(s, id));
    memcpy(s->applied[s->applied_count++], id, FOLD_ID_BYTES);
}

/* The reference: one command at a time, exactly the spec's rule. */
static void p_apply_one(p_state_t *s, const p_command_t *c)
{
    int r = c->recipient[1] - '0';
    if (p_applied(s, c->id)) {
        s->duplicates++;
        return;
    }
    if (c->version && s->exists[r] && s->has_version[r] && (uint64_t)c->version <= s->version[r]) {
        s->stale++;
        return;
    }
    s->exists[r] = 1;
    memcpy(s->writer[r], c->id, FOLD_ID_BYTES);
    if (c->version) {
        s->has_version[r] = 1;
        s->version[r] = (uint64_t)c->version;
    }
    p_record(s, c->id);
}

/* The batched path: what the worker does with one batch and the stored state. */
static void p_apply_batch(p_state_t *s, const p_command_t *batch, int n)
{
    fold_command_t commands[P_MAX_COMMANDS];
    fold_row_t rows[P_RECIPIENTS];
    fold_result_t results[P_MAX_COMMANDS];
    static const char *names[P_RECIPIENTS] = {"r0", "r1", "r2", "r3", "r4", "r5"};
    /* Like the worker, half the time pass only the rows of recipients with a
     * versioned command in the batch (fold.h allows leaving the others out). */
    int versioned[P_RECIPIENTS] = {0};
    int partial = p_below(2);
    for (int i = 0; i < n; i++)
        if (batch[i].version)
            versioned[batch[i].recipient[1] - '0'] = 1;
    int row_count = 0;
    for (int r = 0; r < P_RECIPIENTS; r++) {
        if (!s->exists[r] || (partial && !versioned[r]))
            continue;
        rows[row_count].recipient_id = names[r];
        rows[row_count].recipient_id_len = 2;
        rows[row_count].has_version = s->has_version[r];
        rows[row_count].version = s->version[r];
        row_count++;
    }
    for (int i = 0; i < n; i++) {
        commands[i].recipient_id = batch[i].recipient;
        commands[i].recipient_id_len = 2;
        commands[i].command_id = batch[i].id;
        commands[i].has_version = batch[i].version > 0;
        commands[i].version = (uint64_t)batch[i].version;
    }
    /* Like the worker's query, pass only the stored ids that occur in the batch. */
    uint8_t applied[P_MAX_COMMANDS * FOLD_ID_BYTES];
    int applied_count = 0;
    for (int i = 0; i < n; i++)
        if (p_applied(s, batch[i].id))
            memcpy(applied + FOLD_ID_BYTES * applied_count++, batch[i].id, FOLD_ID_BYTES);
    fold_run(commands, (size_t)n, rows, (size_t)row_count, applied, (size_t)applied_count, results);

    int written_per_recipient[P_RECIPIENTS] = {0};
    for (int i = 0; i < n; i++) {
        int r = batch[i].recipient[1] - '0';
        switch (results[i].outcome) {
        case FOLD_WRITTEN:
            written_per_recipient[r]++;
            s->exists[r] = 1;
            memcpy(s->writer[r], batch[i].id, FOLD_ID_BYTES);
            /* the upsert stores coalesce(new version, stored version) */
            if (results[i].store_has_version) {
                s->has_version[r] = 1;
                s->version[r] = results[i].store_version;
            }
            p_record(s, batch[i].id);
            break;
        case FOLD_SUPERSEDED:
            p_record(s, batch[i].id);
            break;
        case FOLD_DUPLICATE:
            s->duplicates++;
            break;
        case FOLD_STALE:
            s->stale++;
            break;
        }
    }
    for (int r = 0; r < P_RECIPIENTS; r++)
        ck_assert_int_le(written_per_recipient[r], 1);
}

static int p_same_state(const p_state_t *a, const p_state_t *b)
{
    for (int r = 0; r < P_RECIPIENTS; r++) {
        if (a->exists[r] != b->exists[r] || a->has_version[r] != b->has_version[r])
            return 0;
        if (a->exists[r] && memcmp(a->writer[r], b->writer[r], FOLD_ID_BYTES) != 0)
            return 0;
        if (a->has_version[r] && a->version[r] != b->version[r])
            return 0;
    }
    if (a->applied_count != b->applied_count || a->duplicates != b->duplicates || a->stale != b->stale)
        return 0;
    for (int i = 0; i < a->applied_count; i++)
        if (!p_applied(b, a->applied[i]))
            return 0;
    return 1;
}

START_TEST(batched_fold_equals_one_at_a_time)
{
    const int cases = 5000;
    for (int k = 0; k < cases; k++) {
        uint64_t seed = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)k * 0x100000001B3ULL);
        p_rng = seed ? seed : 1;
        int n = 1 + p_below(P_MAX_COMMANDS);
        int recipients = 1 + p_below(P_RECIPIENTS);
        int max_version = 1 + p_below(8);
        p_command_t seq[P_MAX_COMMANDS];
        for (int i = 0; i < n; i++) {
            if (i > 0 && p_below(4) == 0) {
                seq[i] = seq[p_below(i)]; /* a redelivery or re-produce: the same command again */
                continue;
            }
            snprintf(seq[i].recipient, sizeof(seq[i].recipient), "r%d", p_below(recipients));
            memset(seq[i].id, 0, FOLD_ID_BYTES);
            memcpy(seq[i].id, &i, sizeof(i));
            memcpy(seq[i].id + 8, &seed, sizeof(seed));
            seq[i].version = p_below(2) ? 1 + p_below(max_version) : 0;
        }
        /* A prefix is the stored history (applied before the batches), then the
         * rest goes in random batches, one to all of it. */
        p_state_t one, batched;
        memset(&one, 0, sizeof(one));
        int prefix = p_below(n);
        for (int i = 0; i < prefix; i++)
            p_apply_one(&one, &seq[i]);
        batched = one;
        for (int i = prefix; i < n; i++)
            p_apply_one(&one, &seq[i]);
        for (int i = prefix; i < n;) {
            int size = 1 + p_below(n - i);
            p_apply_batch(&batched, &seq[i], size);
            i += size;
        }
        if (!p_same_state(&one, &batched))
            ck_abort_msg("case %d (seed %llu): batched fold differs from one-at-a-time application", k,
                         (unsigned long long)seed);
    }
}
END_TEST

static Suite *fold_suite(void)
{
    Suite *s = suite_create("fold");
    TCase *t = tcase_create("cases");
    tcase_add_test(t, last_command_per_recipient_is_written);
    tcase_add_test(t, duplicate_of_superseded_does_not_resurrect_it);
    tcase_add_test(t, already_applied_id_is_duplicate);
    tcase_add_test(t, versions_fold_in_order_with_the_stored_one);
    tcase_add_test(t, unversioned_last_keeps_stored_version);
    tcase_add_test(t, missing_row_or_null_version_accepts_any_version);
    tcase_add_test(t, stale_copy_stays_stale);
    suite_add_tcase(s, t);
    TCase *p = tcase_create("property");
    tcase_set_timeout(p, 120);
    tcase_add_test(p, batched_fold_equals_one_at_a_time);
    suite_add_tcase(s, p);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(fold_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
