#include "batch.h"

#include <stdlib.h>
#include <string.h>

void batch_add(batch_t *batch, rd_kafka_message_t *message, const limits_t *limits)
{
    if (batch->count == batch->cap) {
        size_t cap = batch->cap ? batch->cap * 2 : 256;
        batch_item_t *items = realloc(batch->items, cap * sizeof(*items));
        if (!items)
            abort(); /* as buf.h: allocation failure on a bounded batch is a broken invariant */
        batch->items = items;
        batch->cap = cap;
    }
    batch_item_t *item = &batch->items[batch->count++];
    memset(item, 0, sizeof(*item));
    item->message = message;
    item->partition = message->partition;
    item->offset = message->offset;
    item->json_off = batch->json.len;
    if (codec_decode(message->payload, message->len, message->key, message->key_len, limits, &item->command,
                     &batch->json, &item->failure) == 0) {
        item->kind = BATCH_COMMAND;
        item->json_len = batch->json.len - item->json_off;
    } else {
        item->kind = BATCH_INVALID;
        batch->json.len = item->json_off; /* drop a partial profile */
    }
}

void batch_clear(batch_t *batch)
{
    for (size_t i = 0; i < batch->count; i++)
        if (batch->items[i].message) /* tests build items without a message */
            rd_kafka_message_destroy(batch->items[i].message);
    batch->count = 0;
    buf_reset(&batch->json);
    batch->opened_ms = 0;
}

void batch_free(batch_t *batch)
{
    batch_clear(batch);
    free(batch->items);
    buf_free(&batch->json);
    memset(batch, 0, sizeof(*batch));
}
