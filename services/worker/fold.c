#include "fold.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/*
 * Two open-addressing hash sets over the batch: recipients (with the state the
 * fold carries for each) and command ids. Sized at twice the entries rounded
 * up to a power of two, so probes stay short and never fill up.
 */
typedef struct fold_recipient {
    const char *id; /* NULL: empty slot */
    size_t id_len;
    bool exists;      /* a row exists (stored, or written earlier in the batch) */
    bool has_version; /* the version so far */
    uint64_t version;
    size_t last_writer; /* index of the last applying command, or SIZE_MAX */
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

void fold_run(const fold_command_t *commands, size_t command_count, const fold_row_t *rows, size_t row_count,
              const uint8_t *applied_ids, size_t applied_count, fold_result_t *results)
{
    fold_table_t table;
    size_t recipient_cap = fold_capacity(command_count);
    size_t id_cap = fold_capacity(command_count + applied_count);
    table.recipients = fold_calloc(recipient_cap, sizeof(*table.recipients));
    table.recipient_mask = recipient_cap - 1;
    table.ids = fold_calloc(id_cap, sizeof(*table.ids));
    table.id_mask = id_cap - 1;

    for (size_t i = 0; i < command_count; i++)
        fold_recipient(&table, commands[i].recipient_id, commands[i].recipient_id_len, true);
    for (size_t i = 0; i < row_count; i++) {
        fold_recipient_t *r = fold_recipient(&table, rows[i].recipient_id, rows[i].recipient_id_len, false);
        if (!r)
            continue;
        r->exists = true;
        r->has_version = rows[i].has_version;
        r->version = rows[i].version;
    }
    for (size_t i = 0; i < applied_count; i++)
        (void)fold_id(&table, applied_ids + i * FOLD_ID_BYTES, true);

    for (size_t i = 0; i < command_count; i++) {
        const fold_command_t *c = &commands[i];
        fold_recipient_t *r = fold_recipient(&table, c->recipient_id, c->recipient_id_len, false);
        results[i].store_has_version = false;
        results[i].store_version = 0;
        if (fold_id(&table, c->command_id, false)) {
            results[i].outcome = FOLD_DUPLICATE;
            continue;
        }
        /* A stale command did not apply, so its id is not recorded: a later copy
         * of it is judged again (and is stale again, the version only rises). */
        if (c->has_version && r->exists && r->has_version && c->version <= r->version) {
            results[i].outcome = FOLD_STALE;
            continue;
        }
        (void)fold_id(&table, c->command_id, true);
        if (r->last_writer != SIZE_MAX)
            results[r->last_writer].outcome = FOLD_SUPERSEDED;
        r->last_writer = i;
        r->exists = true;
        if (c->has_version) {
            r->has_version = true;
            r->version = c->version;
        }
        results[i].outcome = FOLD_WRITTEN;
    }
    /* Versions to store, read off the final recipient state. */
    for (size_t slot = 0; slot <= table.recipient_mask; slot++) {
        fold_recipient_t *r = &table.recipients[slot];
        if (!r->id || r->last_writer == SIZE_MAX)
            continue;
        results[r->last_writer].store_has_version = r->has_version;
        results[r->last_writer].store_version = r->version;
    }
    free(table.ids);
    free(table.recipients);
}
