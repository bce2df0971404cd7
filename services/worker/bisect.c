#include "bisect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "log.h"
#include "xalloc.h"

int bisect_dead_letter(bisect_t *b, batch_t *batch, size_t lo, size_t hi, char *errstr, size_t errstr_size)
{
    size_t sent = 0;
    pthread_mutex_lock(b->dlq_lock);
    int rc = dlq_send(b->dlq, b->dlq_topic, b->topic, batch, lo, hi, BISECT_DLQ_TIMEOUT_MS, &sent, errstr,
                      errstr_size);
    pthread_mutex_unlock(b->dlq_lock);
    b->dead_lettered += sent;
    return rc;
}

/* Dead-letters the one command PostgreSQL refused (reason in errstr). */
static int bisect_reject(bisect_t *b, batch_t *batch, size_t at, char *errstr, size_t errstr_size)
{
    batch_item_t *item = &batch->items[at];
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "topic", b->topic);
    log_field_int(&fields, "partition", item->partition);
    log_field_int(&fields, "offset", item->offset);
    log_field_str(&fields, "error", errstr);
    log_warn(&fields, "PostgreSQL rejected a command; dead-lettering it");
    batch_reject(batch, at, errstr);
    return bisect_dead_letter(b, batch, at, at + 1, errstr, errstr_size);
}

apply_status_t bisect_apply(bisect_t *b, batch_t *batch, size_t lo, size_t hi, char *errstr,
                            size_t errstr_size)
{
    apply_position_t small[64];
    apply_position_t *positions = small;
    if (b->position_count > sizeof(small) / sizeof(small[0])) {
        positions = xmalloc(b->position_count * sizeof(*positions), "bisect positions");
    }
    size_t count =
        apply_positions_for(batch, lo, hi, b->positions, b->position_count, positions, b->position_count);
    apply_counts_t counts;
    apply_status_t status = apply_run(b->conn, b->scratch, b->group, b->topic, batch, lo, hi, positions,
                                      count, &counts, errstr, errstr_size);
    if (status == APPLY_OK) {
        b->commits++;
        b->counts.applied += counts.applied;
        b->counts.written += counts.written;
        b->counts.duplicates += counts.duplicates;
        b->counts.stale += counts.stale;
        b->counts.refused += counts.refused;
        for (int s = 0; s < APPLY_STEP_COUNT; s++)
            b->counts.ms[s] += counts.ms[s];
        for (size_t k = 0; k < count; k++)
            for (size_t p = 0; p < b->position_count; p++)
                if (b->positions[p].partition == positions[k].partition) {
                    b->positions[p].stored = true;
                    b->positions[p].expected = positions[k].next;
                }
    } else if (status == APPLY_REJECTED) {
        if (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            status = bisect_apply(b, batch, lo, mid, errstr, errstr_size);
            if (status == APPLY_OK)
                status = bisect_apply(b, batch, mid, hi, errstr, errstr_size);
        } else if (batch->items[lo].kind == BATCH_COMMAND) {
            if (bisect_reject(b, batch, lo, errstr, errstr_size) < 0)
                status = APPLY_RETRY;
            else
                status = bisect_apply(b, batch, lo, hi, errstr, errstr_size);
        } else
            status = APPLY_RETRY; /* only a position move was refused: not a data problem */
    }
    if (positions != small)
        free(positions);
    return status;
}
