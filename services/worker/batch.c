#include "batch.h"

#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void batch_add(batch_t *batch, rd_kafka_message_t *message, const limits_t *limits, size_t max_items)
{
    if (batch->count == batch->cap) {
        size_t cap = batch->cap ? batch->cap * 2 : 256;
        if (cap > max_items && max_items > batch->count)
            cap = max_items;
        batch_item_t *items = xrealloc(batch->items, cap * sizeof(*items), "batch items");
        batch->items = items;
        batch->cap = cap;
    }
    batch_item_t *item = &batch->items[batch->count++];
    memset(item, 0, sizeof(*item));
    item->partition = message->partition;
    item->offset = message->offset;
    item->key_len = message->key ? message->key_len : 0;
    item->value_len = message->payload ? message->len : 0;
    item->record = xmalloc(item->key_len + item->value_len + 1, "a batch record");
    if (message->key) {
        memcpy(item->record, message->key, item->key_len);
        item->key = item->record;
    }
    if (item->value_len)
        memcpy(item->record + item->key_len, message->payload, item->value_len);
    item->value = item->record + item->key_len;
    rd_kafka_message_destroy(message);
    buf_reset(&batch->json);
    codec_failure_t failure;
    if (codec_decode(item->value, item->value_len, item->key, item->key_len, limits, &item->command,
                     &batch->json, &failure) == 0) {
        item->kind = BATCH_COMMAND;
        return;
    }
    item->kind = BATCH_INVALID;
    item->failure = xmalloc(sizeof(*item->failure), "a command's failure");
    *item->failure = failure;
}

void batch_reject(batch_t *batch, size_t at, const char *reason)
{
    batch_item_t *item = &batch->items[at];
    item->kind = BATCH_REJECTED;
    if (!item->failure)
        item->failure = xmalloc(sizeof(*item->failure), "a command's failure");
    item->failure->code = CODEC_OK;
    snprintf(item->failure->message, sizeof(item->failure->message), "%s", reason);
}

void batch_clear(batch_t *batch)
{
    for (size_t i = 0; i < batch->count; i++) {
        free(batch->items[i].record);
        free(batch->items[i].failure);
    }
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
