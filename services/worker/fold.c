#include "fold.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "xalloc.h"

/*
 * Two open-addressing hash sets over the batch: recipients (with the state the
 * fold carries for each) and command ids. Sized at twice the entries rounded
 * up to a power of two, so probes stay short and never fill up.
 */
/* The profile so far, as the fold carries it. */
typedef enum fold_doc {
    FOLD_DOC_UNKNOWN, /* stored, not read: no merge or patch may build on it (fold_plan) */
    FOLD_DOC_NONE,    /* no profile: no row, or deleted */
    FOLD_DOC_COMMAND, /* the profile of replace `doc_command`, still as msgpack bytes */
    FOLD_DOC_TREE,    /* `tree` */
} fold_doc_t;

typedef struct fold_recipient {
    const char *id; /* NULL: empty slot */
    size_t id_len;
    bool exists;      /* a row exists (stored, or written earlier in the batch) */
    bool has_version; /* the version so far */
    uint64_t version;
    size_t last_writer; /* index of the last applying command, or SIZE_MAX */
    bool reset;         /* fold_plan: an unversioned replace or delete came before */
    fold_doc_t doc;
    size_t doc_command;
    msgpack_object tree;
} fold_recipient_t;

typedef struct fold_table {
    fold_recipient_t *recipients;
    size_t recipient_mask;
    const uint8_t **ids; /* NULL: empty slot */
    size_t id_mask;
} fold_table_t;

static uint64_t fold_hash(const void *bytes, size_t len)
{
    /* FNV-1a, then a final mix so that the low bits used for the slot depend on all input bytes. */
    const uint8_t *p = bytes;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static size_t fold_capacity(size_t entries)
{
    size_t cap = 16;
    while (cap < entries * 2)
        cap <<= 1;
    return cap;
}

static void *fold_calloc(size_t count, size_t size)
{
    return xcalloc(count, size, "the fold's hash sets"); /* batches are bounded */
}

static fold_recipient_t *fold_recipient(fold_table_t *table, const char *id, size_t id_len, bool insert)
{
    size_t slot = fold_hash(id, id_len) & table->recipient_mask;
    for (;;) {
        fold_recipient_t *r = &table->recipients[slot];
        if (!r->id) {
            if (!insert)
                return NULL;
            r->id = id;
            r->id_len = id_len;
            r->last_writer = SIZE_MAX;
            return r;
        }
        if (r->id_len == id_len && memcmp(r->id, id, id_len) == 0)
            return r;
        slot = (slot + 1) & table->recipient_mask;
    }
}

/* Returns true when `id` is in the set; with `insert`, adds it when absent. */
static bool fold_id(fold_table_t *table, const uint8_t *id, bool insert)
{
    size_t slot = fold_hash(id, FOLD_ID_BYTES) & table->id_mask;
    for (;;) {
        const uint8_t *entry = table->ids[slot];
        if (!entry) {
            if (insert)
                table->ids[slot] = id;
            return false;
        }
        if (memcmp(entry, id, FOLD_ID_BYTES) == 0)
            return true;
        slot = (slot + 1) & table->id_mask;
    }
}

void fold_out_free(fold_out_t *out)
{
    buf_free(&out->docs);
    buf_free(&out->reasons);
}

static void fold_table_init(fold_table_t *table, const fold_command_t *commands, size_t command_count,
                            const uint8_t *applied_ids, size_t applied_count)
{
    size_t recipient_cap = fold_capacity(command_count);
    size_t id_cap = fold_capacity(command_count + applied_count);
    table->recipients = fold_calloc(recipient_cap, sizeof(*table->recipients));
    table->recipient_mask = recipient_cap - 1;
    table->ids = fold_calloc(id_cap, sizeof(*table->ids));
    table->id_mask = id_cap - 1;
    for (size_t i = 0; i < command_count; i++)
        fold_recipient(table, commands[i].recipient_id, commands[i].recipient_id_len, true);
    for (size_t i = 0; i < applied_count; i++)
        (void)fold_id(table, applied_ids + i * FOLD_ID_BYTES, true);
}

static void fold_table_free(fold_table_t *table)
{
    free(table->ids);
    free(table->recipients);
}

void fold_plan(const fold_command_t *commands, size_t command_count, const uint8_t *applied_ids,
               size_t applied_count, bool *read)
{
    /* A batch of replaces and deletes (the bulk workload) needs no stored profile: no table. */
    bool builds = false;
    for (size_t i = 0; i < command_count; i++) {
        read[i] = false;
        builds |= commands[i].op == CODEC_OP_MERGE || commands[i].op == CODEC_OP_PATCH;
    }
    if (!builds)
        return;
    fold_table_t table;
    fold_table_init(&table, commands, command_count, applied_ids, applied_count);
    for (size_t i = 0; i < command_count; i++) {
        const fold_command_t *c = &commands[i];
        fold_recipient_t *r = fold_recipient(&table, c->recipient_id, c->recipient_id_len, false);
        read[i] = false;
        /* a duplicate is skipped whatever it is; the first copy of an id is processed */
        if (fold_id(&table, c->command_id, true))
            continue;
        if ((c->op == CODEC_OP_MERGE || c->op == CODEC_OP_PATCH) && !r->reset)
            read[i] = true;
        if ((c->op == CODEC_OP_REPLACE || c->op == CODEC_OP_DELETE) && !c->has_version)
            r->reset = true;
    }
    fold_table_free(&table);
}

/* The profile a merge or patch builds on. */
static msgpack_object fold_base(msgpack_zone *zone, fold_recipient_t *r, const fold_command_t *commands)
{
    switch (r->doc) {
    case FOLD_DOC_NONE:
        return doc_empty_map(); /* Courier: a merge or patch creates the profile if missing */
    case FOLD_DOC_COMMAND: {
        msgpack_object o;
        const fold_command_t *c = &commands[r->doc_command];
        doc_unpack(zone, c->body, c->body_len, &o);
        return o;
    }
    case FOLD_DOC_TREE:
        return r->tree;
    case FOLD_DOC_UNKNOWN:
    default:
        fatal_abort("fold: a profile fold_plan did not ask for was needed");
    }
}

/* Makes the merge or patch; true with the packed profile appended to out->docs
 * (result offsets filled), false with the reason appended to out->reasons. */
static bool fold_build(msgpack_zone *zone, fold_recipient_t *r, const fold_command_t *commands, size_t i,
                       const limits_t *limits, fold_out_t *out, fold_result_t *result)
{
    const fold_command_t *c = &commands[i];
    char reason[512];
    msgpack_object base = fold_base(zone, r, commands), next;
    bool ok = true;
    if (c->op == CODEC_OP_MERGE) {
        msgpack_object patch;
        doc_unpack(zone, c->body, c->body_len, &patch);
        doc_merge(zone, &base, &patch, &next);
    } else if (doc_patch(zone, &base, c->body, c->body_len, &next, reason, sizeof(reason)) < 0) {
        ok = false;
    }
    if (ok) {
        size_t mark = out->docs.len;
        doc_pack(&next, &out->docs);
        if (doc_check(out->docs.data + mark, out->docs.len - mark, limits, reason, sizeof(reason)) < 0) {
            out->docs.len = mark;
            ok = false;
        } else {
            result->doc_off = mark;
            result->doc_len = out->docs.len - mark;
            r->doc = FOLD_DOC_TREE;
            r->tree = next;
        }
    }
    if (!ok) {
        result->reason_off = out->reasons.len;
        buf_append_str(&out->reasons, reason);
        result->reason_len = out->reasons.len - result->reason_off;
    }
    return ok;
}

void fold_run(const fold_command_t *commands, size_t command_count, const fold_row_t *rows, size_t row_count,
              const uint8_t *applied_ids, size_t applied_count, const limits_t *limits, fold_out_t *out,
              fold_result_t *results)
{
    fold_table_t table;
    msgpack_zone *zone = NULL;
    buf_reset(&out->docs);
    buf_reset(&out->reasons);

    fold_table_init(&table, commands, command_count, applied_ids, applied_count);
    bool builds = false;
    for (size_t i = 0; i < command_count; i++)
        builds |= commands[i].op == CODEC_OP_MERGE || commands[i].op == CODEC_OP_PATCH;
    if (builds) {
        /* Which recipients' profiles were read (fold_plan, with the same inputs). */
        bool *read = fold_calloc(command_count, sizeof(*read));
        fold_plan(commands, command_count, applied_ids, applied_count, read);
        for (size_t i = 0; i < command_count; i++) {
            fold_recipient_t *r =
                fold_recipient(&table, commands[i].recipient_id, commands[i].recipient_id_len, false);
            if (read[i])
                r->doc = FOLD_DOC_NONE; /* read: a recipient without a row has no profile */
        }
        free(read);
    }
    for (size_t i = 0; i < row_count; i++) {
        fold_recipient_t *r = fold_recipient(&table, rows[i].recipient_id, rows[i].recipient_id_len, false);
        if (!r)
            continue;
        r->exists = true;
        r->has_version = rows[i].has_version;
        r->version = rows[i].version;
        if (rows[i].profile_read && rows[i].profile) {
            if (!zone && !(zone = msgpack_zone_new(8192)))
                fatal_abort("out of memory: a msgpack zone");
            doc_unpack(zone, rows[i].profile, rows[i].profile_len, &r->tree);
            r->doc = FOLD_DOC_TREE;
        }
    }

    for (size_t i = 0; i < command_count; i++) {
        const fold_command_t *c = &commands[i];
        fold_recipient_t *r = fold_recipient(&table, c->recipient_id, c->recipient_id_len, false);
        fold_result_t *res = &results[i];
        memset(res, 0, sizeof(*res));
        if (fold_id(&table, c->command_id, false)) {
            res->outcome = FOLD_DUPLICATE;
            continue;
        }
        /* Processed from here on, whatever the outcome: a later copy is a duplicate. */
        (void)fold_id(&table, c->command_id, true);
        if (c->has_version && r->exists && r->has_version && c->version <= r->version) {
            res->outcome = FOLD_STALE;
            continue;
        }
        switch (c->op) {
        case CODEC_OP_REPLACE:
            r->doc = FOLD_DOC_COMMAND;
            r->doc_command = i;
            res->write = FOLD_WRITE_COMMAND;
            break;
        case CODEC_OP_DELETE:
            r->doc = FOLD_DOC_NONE;
            res->write = FOLD_WRITE_DELETED;
            break;
        case CODEC_OP_MERGE:
        case CODEC_OP_PATCH:
            if (!zone && !(zone = msgpack_zone_new(8192)))
                fatal_abort("out of memory: a msgpack zone");
            if (!fold_build(zone, r, commands, i, limits, out, res)) {
                res->outcome = FOLD_REFUSED;
                continue;
            }
            res->write = FOLD_WRITE_DOC;
            break;
        case CODEC_OP__COUNT:
        default:
            fatal_abort("fold: command kind %d out of range", (int)c->op); /* the codec checks it */
        }
        if (r->last_writer != SIZE_MAX)
            results[r->last_writer].outcome = FOLD_SUPERSEDED;
        r->last_writer = i;
        r->exists = true;
        if (c->has_version) {
            r->has_version = true;
            r->version = c->version;
        }
        res->outcome = FOLD_WRITTEN;
    }
    /* Versions to store, read off the final recipient state. */
    for (size_t slot = 0; slot <= table.recipient_mask; slot++) {
        fold_recipient_t *r = &table.recipients[slot];
        if (!r->id || r->last_writer == SIZE_MAX)
            continue;
        results[r->last_writer].store_has_version = r->has_version;
        results[r->last_writer].store_version = r->version;
    }
    if (zone)
        msgpack_zone_free(zone);
    fold_table_free(&table);
}
