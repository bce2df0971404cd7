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

#include "doc.h"
#include "fold.h"
#include "json_transcode.h"
#include "json_write.h"
#include "mp.h"

/* fold_run with the default limits and a shared output. */
static fold_out_t t_out;
#define FOLD_RUN(c, n, rows, nrows, ap, nap, r)                                                              \
    do {                                                                                                     \
        limits_t t_limits = limits_default();                                                                \
        fold_run(c, n, rows, nrows, ap, nap, &t_limits, &t_out, r);                                          \
    } while (0)

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
    FOLD_RUN(c, 4, NULL, 0, NULL, 0, r);
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
    FOLD_RUN(c, 3, NULL, 0, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_SUPERSEDED);
    ck_assert_int_eq(r[1].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[2].outcome, FOLD_DUPLICATE);
}
END_TEST

START_TEST(already_applied_id_is_duplicate)
{
    fold_command_t c[2] = {cmd("a", 1, 0), cmd("a", 2, 0)};
    fold_result_t r[2];
    FOLD_RUN(c, 2, NULL, 0, id_of(2), 1, r);
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
    FOLD_RUN(c, 6, &row, 1, NULL, 0, r);
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
    FOLD_RUN(c, 1, &row, 1, NULL, 0, r);
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
    FOLD_RUN(c, 2, &row, 1, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[1].outcome, FOLD_WRITTEN);
    ck_assert_uint_eq(r[1].store_version, 1);
}
END_TEST

/* proto §6: any processed id is skipped, a stale one included (it is recorded). */
START_TEST(stale_copy_is_a_duplicate)
{
    fold_command_t c[3] = {cmd("a", 1, 4), cmd("a", 2, 3), cmd("a", 2, 3)};
    fold_result_t r[3];
    FOLD_RUN(c, 3, NULL, 0, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[1].outcome, FOLD_STALE);
    ck_assert_int_eq(r[2].outcome, FOLD_DUPLICATE);
}
END_TEST

/* A merge after a replace in the batch builds on the replace, reads nothing;
 * a merge first needs the stored profile; a refused patch changes nothing. */
START_TEST(kinds_build_on_the_state_before)
{
    buf_t rep = {0}, merge = {0}, patch = {0}, stored = {0};
    mp_write_map_header(&rep, 1);
    mp_write_str(&rep, "a", 1);
    mp_write_uint(&rep, 1);
    mp_write_map_header(&merge, 2);
    mp_write_str(&merge, "b", 1);
    mp_write_uint(&merge, 2);
    mp_write_str(&merge, "a", 1);
    mp_write_nil(&merge);
    mp_write_array_header(&patch, 1); /* test /b == 3: fails after the merge */
    mp_write_map_header(&patch, 3);
    mp_write_str(&patch, "op", 2);
    mp_write_str(&patch, "test", 4);
    mp_write_str(&patch, "path", 4);
    mp_write_str(&patch, "/b", 2);
    mp_write_str(&patch, "value", 5);
    mp_write_uint(&patch, 3);
    mp_write_map_header(&stored, 1);
    mp_write_str(&stored, "z", 1);
    mp_write_uint(&stored, 9);

    fold_command_t c[4] = {cmd("a", 1, 0), cmd("a", 2, 0), cmd("a", 3, 0), cmd("b", 4, 0)};
    c[0].op = CODEC_OP_REPLACE, c[0].body = rep.data, c[0].body_len = rep.len;
    c[1].op = CODEC_OP_MERGE, c[1].body = merge.data, c[1].body_len = merge.len;
    c[2].op = CODEC_OP_PATCH, c[2].body = patch.data, c[2].body_len = patch.len;
    c[3].op = CODEC_OP_MERGE, c[3].body = merge.data, c[3].body_len = merge.len;
    bool read[4];
    fold_plan(c, 4, NULL, 0, read);
    ck_assert(!read[0] && !read[1] && !read[2] && read[3]);
    fold_row_t row = {.recipient_id = "b",
                      .recipient_id_len = 1,
                      .profile_read = true,
                      .profile = stored.data,
                      .profile_len = stored.len};
    fold_result_t r[4];
    FOLD_RUN(c, 4, &row, 1, NULL, 0, r);
    ck_assert_int_eq(r[0].outcome, FOLD_SUPERSEDED);
    ck_assert_int_eq(r[1].outcome, FOLD_WRITTEN);
    ck_assert_int_eq(r[1].write, FOLD_WRITE_DOC);
    ck_assert_int_eq(r[2].outcome, FOLD_REFUSED);
    ck_assert_msg(strstr((const char *)t_out.reasons.data + r[2].reason_off, "patch[0] (test /b)") != NULL,
                  "reason names the operation");
    ck_assert_int_eq(r[3].outcome, FOLD_WRITTEN);
    buf_t json = {0};
    size_t used;
    codec_failure_t failure;
    limits_t limits = limits_default();
    ck_assert_int_eq(
        json_write_value(t_out.docs.data + r[1].doc_off, r[1].doc_len, &limits, "p", &used, &json, &failure),
        0);
    buf_terminate(&json);
    ck_assert_str_eq((const char *)json.data, "{\"b\":2}");
    buf_reset(&json);
    ck_assert_int_eq(
        json_write_value(t_out.docs.data + r[3].doc_off, r[3].doc_len, &limits, "p", &used, &json, &failure),
        0);
    buf_terminate(&json);
    ck_assert_str_eq((const char *)json.data, "{\"z\":9,\"b\":2}");
    buf_free(&json);
    buf_free(&rep);
    buf_free(&merge);
    buf_free(&patch);
    buf_free(&stored);
}
END_TEST

/* ------------------------------------------------------------ property */

#define P_RECIPIENTS   6
#define P_MAX_COMMANDS 64

/* Small limits, so that merges and patches sometimes go over them (refused). */
static const limits_t p_limits = {
    .max_body_bytes = 1 << 20, .max_depth = 3, .max_key_bytes = 8, .max_string_bytes = 64, .max_keys = 3};

typedef struct p_command {
    char recipient[4];
    uint8_t id[FOLD_ID_BYTES];
    int version; /* 0: none */
    codec_op_t op;
    uint8_t body[256]; /* replace, merge: a map; patch: operations */
    size_t body_len;
} p_command_t;

typedef struct p_state {
    int exists[P_RECIPIENTS];
    uint8_t writer[P_RECIPIENTS][FOLD_ID_BYTES];
    int has_version[P_RECIPIENTS];
    uint64_t version[P_RECIPIENTS];
    int has_profile[P_RECIPIENTS];
    char profile[P_RECIPIENTS][1024]; /* as JSON text, to compare */
    uint8_t applied[P_MAX_COMMANDS][FOLD_ID_BYTES];
    int applied_count;
    int duplicates, stale, refused;
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

static const char *const p_keys[] = {"a", "b", "c", "d", "e"};

static void p_value(buf_t *b)
{
    switch (p_below(4)) {
    case 0:
        mp_write_uint(b, (uint64_t)p_below(3));
        break;
    case 1:
        mp_write_nil(b);
        break;
    case 2:
        mp_write_map_header(b, 1);
        mp_write_str(b, p_keys[p_below(2)], 1);
        mp_write_uint(b, (uint64_t)p_below(3));
        break;
    default:
        mp_write_array_header(b, 1);
        mp_write_uint(b, (uint64_t)p_below(3));
        break;
    }
}

static void p_body(p_command_t *c)
{
    buf_t b = {0};
    if (c->op == CODEC_OP_REPLACE || c->op == CODEC_OP_MERGE) {
        int n = p_below(3);
        mp_write_map_header(&b, (uint32_t)n);
        for (int i = 0; i < n; i++) {
            mp_write_str(&b, p_keys[2 * i + p_below(2)], 1); /* distinct keys */
            p_value(&b);
        }
    } else if (c->op == CODEC_OP_PATCH) {
        static const char *const ops[] = {"add", "remove", "replace", "move", "copy", "test"};
        static const char *const paths[] = {"/a", "/b", "/c", "/a/a", "/d/0", "/d/-"};
        int n = 1 + p_below(3);
        mp_write_array_header(&b, (uint32_t)n);
        for (int i = 0; i < n; i++) {
            int op = p_below(6);
            const char *path = paths[p_below(op == 0 ? 6 : 5)];
            bool from = op == 3 || op == 4, value = op == 0 || op == 2 || op == 5;
            mp_write_map_header(&b, 2 + from + value);
            mp_write_str(&b, "op", 2);
            mp_write_str(&b, ops[op], (uint32_t)strlen(ops[op]));
            mp_write_str(&b, "path", 4);
            mp_write_str(&b, path, (uint32_t)strlen(path));
            if (from) {
                const char *f = p_below(2) ? "/b" : "/c";
                mp_write_str(&b, "from", 4);
                mp_write_str(&b, f, (uint32_t)strlen(f));
            }
            if (value) {
                mp_write_str(&b, "value", 5);
                p_value(&b);
            }
        }
    }
    ck_assert_uint_le(b.len, sizeof(c->body));
    if (b.len)
        memcpy(c->body, b.data, b.len);
    c->body_len = b.len;
    buf_free(&b);
}

static void p_json(const uint8_t *msgpack, size_t len, char *out, size_t size)
{
    static const limits_t wide = {.max_body_bytes = 1 << 20,
                                  .max_depth = 64,
                                  .max_key_bytes = 64,
                                  .max_string_bytes = 64,
                                  .max_keys = 64};
    buf_t json = {0};
    size_t used;
    codec_failure_t failure;
    ck_assert_int_eq(json_write_value(msgpack, len, &wide, "p", &used, &json, &failure), 0);
    ck_assert_uint_lt(json.len, size);
    memcpy(out, json.data, json.len);
    out[json.len] = '\0';
    buf_free(&json);
}

/* The reference: one command at a time, exactly the spec's rule, with doc.h
 * for the merge and patch themselves (tested on their own in doc_test.c). */
static void p_apply_one(p_state_t *s, const p_command_t *c)
{
    int r = c->recipient[1] - '0';
    if (p_applied(s, c->id)) {
        s->duplicates++;
        return;
    }
    p_record(s, c->id); /* every processed id */
    if (c->version && s->exists[r] && s->has_version[r] && (uint64_t)c->version <= s->version[r]) {
        s->stale++;
        return;
    }
    if (c->op == CODEC_OP_MERGE || c->op == CODEC_OP_PATCH) {
        msgpack_zone *zone = msgpack_zone_new(4096);
        msgpack_object base = doc_empty_map(), next;
        if (s->has_profile[r]) {
            buf_t bytes = {0};
            transcode_error_t e;
            static const limits_t wide = {.max_body_bytes = 1 << 20,
                                          .max_depth = 64,
                                          .max_key_bytes = 64,
                                          .max_string_bytes = 64,
                                          .max_keys = 64};
            ck_assert_int_eq(
                transcode_value((const uint8_t *)s->profile[r], strlen(s->profile[r]), &wide, &bytes, &e), 0);
            doc_unpack(zone, bytes.data, bytes.len, &base);
            buf_free(&bytes);
        }
        char reason[256];
        int rc = 0;
        if (c->op == CODEC_OP_MERGE) {
            msgpack_object patch;
            doc_unpack(zone, c->body, c->body_len, &patch);
            doc_merge(zone, &base, &patch, &next);
        } else
            rc = doc_patch(zone, &base, c->body, c->body_len, &next, reason, sizeof(reason));
        buf_t packed = {0};
        if (rc == 0) {
            doc_pack(&next, &packed);
            rc = doc_check(packed.data, packed.len, &p_limits, reason, sizeof(reason));
        }
        if (rc == 0) {
            p_json(packed.data, packed.len, s->profile[r], sizeof(s->profile[r]));
            s->has_profile[r] = 1;
        }
        buf_free(&packed);
        msgpack_zone_free(zone);
        if (rc != 0) {
            s->refused++;
            return;
        }
    } else if (c->op == CODEC_OP_REPLACE) {
        p_json(c->body, c->body_len, s->profile[r], sizeof(s->profile[r]));
        s->has_profile[r] = 1;
    } else {
        s->has_profile[r] = 0;
    }
    s->exists[r] = 1;
    memcpy(s->writer[r], c->id, FOLD_ID_BYTES);
    if (c->version) {
        s->has_version[r] = 1;
        s->version[r] = (uint64_t)c->version;
    }
}

/* The batched path: what the worker does with one batch and the stored state. */
static void p_apply_batch(p_state_t *s, const p_command_t *batch, int n)
{
    fold_command_t commands[P_MAX_COMMANDS];
    fold_row_t rows[P_RECIPIENTS];
    fold_result_t results[P_MAX_COMMANDS];
    buf_t stored[P_RECIPIENTS] = {{0}};
    static const char *names[P_RECIPIENTS] = {"r0", "r1", "r2", "r3", "r4", "r5"};
    for (int i = 0; i < n; i++) {
        commands[i].recipient_id = batch[i].recipient;
        commands[i].recipient_id_len = 2;
        commands[i].command_id = batch[i].id;
        commands[i].has_version = batch[i].version > 0;
        commands[i].version = (uint64_t)batch[i].version;
        commands[i].op = batch[i].op;
        commands[i].body = batch[i].op == CODEC_OP_DELETE ? NULL : batch[i].body;
        commands[i].body_len = batch[i].op == CODEC_OP_DELETE ? 0 : batch[i].body_len;
    }
    /* Like the worker's query, pass only the stored ids that occur in the batch. */
    uint8_t applied[P_MAX_COMMANDS * FOLD_ID_BYTES];
    int applied_count = 0;
    for (int i = 0; i < n; i++)
        if (p_applied(s, batch[i].id))
            memcpy(applied + FOLD_ID_BYTES * applied_count++, batch[i].id, FOLD_ID_BYTES);
    /* Like the worker, read the rows of recipients with a versioned command, and
     * the profiles of those fold_plan marks: no others. */
    bool read[P_MAX_COMMANDS];
    fold_plan(commands, (size_t)n, applied, (size_t)applied_count, read);
    int versioned[P_RECIPIENTS] = {0}, need[P_RECIPIENTS] = {0};
    for (int i = 0; i < n; i++) {
        int r = batch[i].recipient[1] - '0';
        versioned[r] |= batch[i].version > 0;
        need[r] |= read[i];
    }
    int row_count = 0;
    for (int r = 0; r < P_RECIPIENTS; r++) {
        if (!s->exists[r] || (!versioned[r] && !need[r]))
            continue;
        fold_row_t *row = &rows[row_count++];
        memset(row, 0, sizeof(*row));
        row->recipient_id = names[r];
        row->recipient_id_len = 2;
        row->has_version = s->has_version[r];
        row->version = s->version[r];
        row->profile_read = need[r];
        if (need[r] && s->has_profile[r]) {
            transcode_error_t e;
            static const limits_t wide = {.max_body_bytes = 1 << 20,
                                          .max_depth = 64,
                                          .max_key_bytes = 64,
                                          .max_string_bytes = 64,
                                          .max_keys = 64};
            ck_assert_int_eq(
                transcode_value((const uint8_t *)s->profile[r], strlen(s->profile[r]), &wide, &stored[r], &e),
                0);
            row->profile = stored[r].data;
            row->profile_len = stored[r].len;
        }
    }
    fold_run(commands, (size_t)n, rows, (size_t)row_count, applied, (size_t)applied_count, &p_limits, &t_out,
             results);

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
            if (results[i].write == FOLD_WRITE_DELETED) {
                s->has_profile[r] = 0;
            } else {
                const uint8_t *doc =
                    results[i].write == FOLD_WRITE_DOC ? t_out.docs.data + results[i].doc_off : batch[i].body;
                size_t len = results[i].write == FOLD_WRITE_DOC ? results[i].doc_len : batch[i].body_len;
                p_json(doc, len, s->profile[r], sizeof(s->profile[r]));
                s->has_profile[r] = 1;
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
            p_record(s, batch[i].id);
            break;
        case FOLD_REFUSED:
            s->refused++;
            ck_assert_uint_gt(results[i].reason_len, 0);
            p_record(s, batch[i].id);
            break;
        }
    }
    for (int r = 0; r < P_RECIPIENTS; r++) {
        ck_assert_int_le(written_per_recipient[r], 1);
        buf_free(&stored[r]);
    }
}

static int p_same_state(const p_state_t *a, const p_state_t *b)
{
    for (int r = 0; r < P_RECIPIENTS; r++) {
        if (a->exists[r] != b->exists[r] || a->has_version[r] != b->has_version[r] ||
            a->has_profile[r] != b->has_profile[r])
            return 0;
        if (a->exists[r] && memcmp(a->writer[r], b->writer[r], FOLD_ID_BYTES) != 0)
            return 0;
        if (a->has_version[r] && a->version[r] != b->version[r])
            return 0;
        if (a->has_profile[r] && strcmp(a->profile[r], b->profile[r]) != 0)
            return 0;
    }
    if (a->applied_count != b->applied_count || a->duplicates != b->duplicates || a->stale != b->stale ||
        a->refused != b->refused)
        return 0;
    for (int i = 0; i < a->applied_count; i++)
        if (!p_applied(b, a->applied[i]))
            return 0;
    return 1;
}

START_TEST(batched_fold_equals_one_at_a_time)
{
    const int cases = 3000;
    int refused = 0, kinds[CODEC_OP__COUNT] = {0};
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
            int draw = p_below(10); /* 4 replace, 3 merge, 2 patch, 1 delete */
            seq[i].op = draw < 4   ? CODEC_OP_REPLACE
                        : draw < 7 ? CODEC_OP_MERGE
                        : draw < 9 ? CODEC_OP_PATCH
                                   : CODEC_OP_DELETE;
            kinds[seq[i].op]++;
            p_body(&seq[i]);
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
        refused += one.refused;
        if (!p_same_state(&one, &batched))
            ck_abort_msg("case %d (seed %llu): batched fold differs from one-at-a-time application", k,
                         (unsigned long long)seed);
    }
    /* the draw covers every kind and refusals */
    ck_assert_int_gt(refused, 100);
    for (int o = 0; o < CODEC_OP__COUNT; o++)
        ck_assert_int_gt(kinds[o], 100);
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
    tcase_add_test(t, stale_copy_is_a_duplicate);
    tcase_add_test(t, kinds_build_on_the_state_before);
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
    fold_out_free(&t_out);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
