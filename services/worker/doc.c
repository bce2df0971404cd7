/*
 * doc: merge and patch on msgpack-c object trees (doc.h). Patches work on a
 * copy of the containers along each path they touch (copy on write), so a
 * refusal half way leaves the input tree as it was.
 */
#include "doc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "json_patch.h"
#include "json_write.h"
#include "xalloc.h"

static void *doc_alloc(msgpack_zone *zone, size_t size)
{
    void *p = msgpack_zone_malloc(zone, size ? size : 1);
    if (!p)
        fatal_abort("out of memory: a document zone (%zu bytes)", size);
    return p;
}

void doc_unpack(msgpack_zone *zone, const uint8_t *bytes, size_t len, msgpack_object *out)
{
    /* msgpack-c's objects point into the input for strings: keep a copy in the zone. */
    char *copy = doc_alloc(zone, len);
    memcpy(copy, bytes, len);
    size_t off = 0;
    if (msgpack_unpack(copy, len, &off, zone, out) != MSGPACK_UNPACK_SUCCESS)
        fatal_abort("a validated profile no longer unpacks"); /* the codec or the transcoder checked it */
}

msgpack_object doc_empty_map(void)
{
    msgpack_object o;
    memset(&o, 0, sizeof(o));
    o.type = MSGPACK_OBJECT_MAP;
    return o;
}

static bool doc_key_is(const msgpack_object *key, const char *s, size_t len)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len &&
           memcmp(key->via.str.ptr, s, len) == 0;
}

/* The last entry with this key (jsonb keeps the last of a repeated key), or -1. */
static long doc_find(const msgpack_object *map, const char *key, size_t len)
{
    for (long i = (long)map->via.map.size - 1; i >= 0; i--)
        if (doc_key_is(&map->via.map.ptr[i].key, key, len))
            return i;
    return -1;
}

/* A copy of the map's entry array with room for `extra` more. */
static msgpack_object doc_map_copy(msgpack_zone *zone, const msgpack_object *map, size_t extra)
{
    msgpack_object out = *map;
    out.via.map.ptr = doc_alloc(zone, (map->via.map.size + extra) * sizeof(msgpack_object_kv));
    if (map->via.map.size)
        memcpy(out.via.map.ptr, map->via.map.ptr, map->via.map.size * sizeof(msgpack_object_kv));
    return out;
}

static msgpack_object doc_array_copy(msgpack_zone *zone, const msgpack_object *array, size_t extra)
{
    msgpack_object out = *array;
    out.via.array.ptr = doc_alloc(zone, (array->via.array.size + extra) * sizeof(msgpack_object));
    if (array->via.array.size)
        memcpy(out.via.array.ptr, array->via.array.ptr, array->via.array.size * sizeof(msgpack_object));
    return out;
}

void doc_merge(msgpack_zone *zone, const msgpack_object *target, const msgpack_object *patch,
               msgpack_object *out)
{
    if (patch->type != MSGPACK_OBJECT_MAP) {
        *out = *patch;
        return;
    }
    msgpack_object base = target && target->type == MSGPACK_OBJECT_MAP ? *target : doc_empty_map();
    msgpack_object result = doc_map_copy(zone, &base, patch->via.map.size);
    for (uint32_t i = 0; i < patch->via.map.size; i++) {
        const msgpack_object_kv *kv = &patch->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue; /* the codec refuses non-str keys */
        long at = doc_find(&result, kv->key.via.str.ptr, kv->key.via.str.size);
        if (kv->val.type == MSGPACK_OBJECT_NIL) {
            if (at >= 0) {
                memmove(&result.via.map.ptr[at], &result.via.map.ptr[at + 1],
                        (result.via.map.size - (size_t)at - 1) * sizeof(msgpack_object_kv));
                result.via.map.size--;
            }
            continue;
        }
        msgpack_object merged;
        doc_merge(zone, at >= 0 ? &result.via.map.ptr[at].val : NULL, &kv->val, &merged);
        if (at >= 0) {
            result.via.map.ptr[at].val = merged;
        } else {
            result.via.map.ptr[result.via.map.size].key = kv->key;
            result.via.map.ptr[result.via.map.size].val = merged;
            result.via.map.size++;
        }
    }
    *out = result;
}

static double doc_number(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return (double)o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return (double)o->via.i64;
    default:
        return o->via.f64;
    }
}

static bool doc_is_number(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
           o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64;
}

bool doc_equal(const msgpack_object *a, const msgpack_object *b)
{
    if (doc_is_number(a) && doc_is_number(b)) {
        bool ai = a->type == MSGPACK_OBJECT_POSITIVE_INTEGER || a->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
        bool bi = b->type == MSGPACK_OBJECT_POSITIVE_INTEGER || b->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
        if (ai && bi) /* exact, beyond 2^53 too */
            return a->type == b->type && a->via.u64 == b->via.u64;
        return doc_number(a) == doc_number(b);
    }
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case MSGPACK_OBJECT_NIL:
        return true;
    case MSGPACK_OBJECT_BOOLEAN:
        return a->via.boolean == b->via.boolean;
    case MSGPACK_OBJECT_STR:
        return a->via.str.size == b->via.str.size &&
               memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size) == 0;
    case MSGPACK_OBJECT_ARRAY:
        if (a->via.array.size != b->via.array.size)
            return false;
        for (uint32_t i = 0; i < a->via.array.size; i++)
            if (!doc_equal(&a->via.array.ptr[i], &b->via.array.ptr[i]))
                return false;
        return true;
    case MSGPACK_OBJECT_MAP:
        if (a->via.map.size != b->via.map.size)
            return false;
        for (uint32_t i = 0; i < a->via.map.size; i++) {
            const msgpack_object *k = &a->via.map.ptr[i].key;
            long at = doc_find(b, k->via.str.ptr, k->via.str.size);
            if (at < 0 || !doc_equal(&a->via.map.ptr[i].val, &b->via.map.ptr[at].val))
                return false;
        }
        return true;
    default:
        return msgpack_object_equal(*a, *b);
    }
}

/* ------------------------------------------------ JSON Patch */

typedef struct doc_ctx {
    msgpack_zone *zone;
    buf_t token;
    char *reason;
    size_t reason_size;
    size_t index;
    const jpatch_item_t *item;
} doc_ctx_t;

static int doc_refuse(doc_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int doc_refuse(doc_ctx_t *ctx, const char *fmt, ...)
{
    char what[200];
    va_list args;
    va_start(args, fmt);
    vsnprintf(what, sizeof(what), fmt, args);
    va_end(args);
    snprintf(ctx->reason, ctx->reason_size, "patch[%zu] (%s %.*s): %s", ctx->index,
             jpatch_op_name(ctx->item->op), (int)(ctx->item->path_len > 80 ? 80 : ctx->item->path_len),
             ctx->item->path, what);
    return -1;
}

/* An array index token: "0" or digits without a leading zero. -1 if not. */
static long doc_index(const buf_t *token)
{
    if (token->len == 0 || token->len > 9 || (token->len > 1 && token->data[0] == '0'))
        return -1;
    long v = 0;
    for (size_t i = 0; i < token->len; i++) {
        if (token->data[i] < '0' || token->data[i] > '9')
            return -1;
        v = v * 10 + (token->data[i] - '0');
    }
    return v;
}

/* Reads the value at a pointer; -1 with a reason when it does not exist. */
static int doc_get(doc_ctx_t *ctx, const msgpack_object *doc, const char *ptr, size_t len,
                   msgpack_object *out)
{
    const msgpack_object *node = doc;
    size_t pos = 0;
    while (jpointer_next(ptr, len, &pos, &ctx->token)) {
        if (node->type == MSGPACK_OBJECT_MAP) {
            long at = doc_find(node, (const char *)ctx->token.data, ctx->token.len);
            if (at < 0)
                return doc_refuse(ctx, "no member \"%.*s\"", (int)(ctx->token.len > 64 ? 64 : ctx->token.len),
                                  (const char *)ctx->token.data);
            node = &node->via.map.ptr[at].val;
        } else if (node->type == MSGPACK_OBJECT_ARRAY) {
            long i = doc_index(&ctx->token);
            if (i < 0 || (size_t)i >= node->via.array.size)
                return doc_refuse(ctx, "no element \"%.*s\" in an array of %" PRIu32,
                                  (int)(ctx->token.len > 24 ? 24 : ctx->token.len),
                                  (const char *)ctx->token.data, node->via.array.size);
            node = &node->via.array.ptr[i];
        } else {
            return doc_refuse(ctx, "\"%.*s\" is below a value that is not an object or array",
                              (int)(ctx->token.len > 64 ? 64 : ctx->token.len),
                              (const char *)ctx->token.data);
        }
    }
    *out = *node;
    return 0;
}

typedef enum doc_edit { DOC_ADD, DOC_REMOVE, DOC_REPLACE } doc_edit_t;

/* Returns in *out a copy of `node` with the edit made at the pointer's tokens
 * from `pos` on: only the containers along the path are copied. */
static int doc_edit_at(doc_ctx_t *ctx, const msgpack_object *node, const char *ptr, size_t len, size_t pos,
                       doc_edit_t edit, const msgpack_object *value, msgpack_object *out)
{
    if (!jpointer_next(ptr, len, &pos, &ctx->token)) {
        /* the pointer names this node itself: only add and replace reach here ("" path) */
        *out = *value;
        return 0;
    }
    bool last = pos >= len;
    if (node->type == MSGPACK_OBJECT_MAP) {
        long at = doc_find(node, (const char *)ctx->token.data, ctx->token.len);
        if (last) {
            if (edit != DOC_ADD && at < 0)
                return doc_refuse(ctx, "no member \"%.*s\"", (int)(ctx->token.len > 64 ? 64 : ctx->token.len),
                                  (const char *)ctx->token.data);
            msgpack_object copy = doc_map_copy(ctx->zone, node, 1);
            if (edit == DOC_REMOVE) {
                memmove(&copy.via.map.ptr[at], &copy.via.map.ptr[at + 1],
                        (copy.via.map.size - (size_t)at - 1) * sizeof(msgpack_object_kv));
                copy.via.map.size--;
            } else if (at >= 0) {
                copy.via.map.ptr[at].val = *value;
            } else {
                msgpack_object key;
                memset(&key, 0, sizeof(key));
                key.type = MSGPACK_OBJECT_STR;
                char *name = doc_alloc(ctx->zone, ctx->token.len);
                if (ctx->token.len) /* the empty key "" (path "/") has no bytes */
                    memcpy(name, ctx->token.data, ctx->token.len);
                key.via.str.ptr = name;
                key.via.str.size = (uint32_t)ctx->token.len;
                copy.via.map.ptr[copy.via.map.size].key = key;
                copy.via.map.ptr[copy.via.map.size].val = *value;
                copy.via.map.size++;
            }
            *out = copy;
            return 0;
        }
        if (at < 0)
            return doc_refuse(ctx, "no member \"%.*s\"", (int)(ctx->token.len > 64 ? 64 : ctx->token.len),
                              (const char *)ctx->token.data);
        msgpack_object child;
        if (doc_edit_at(ctx, &node->via.map.ptr[at].val, ptr, len, pos, edit, value, &child) < 0)
            return -1;
        msgpack_object copy = doc_map_copy(ctx->zone, node, 0);
        copy.via.map.ptr[at].val = child;
        *out = copy;
        return 0;
    }
    if (node->type == MSGPACK_OBJECT_ARRAY) {
        size_t size = node->via.array.size;
        bool dash = ctx->token.len == 1 && ctx->token.data[0] == '-';
        long i = dash ? (long)size : doc_index(&ctx->token);
        bool in_range = i >= 0 && ((size_t)i < size || (last && edit == DOC_ADD && (size_t)i == size));
        if (!in_range)
            return doc_refuse(ctx, "no element \"%.*s\" in an array of %zu",
                              (int)(ctx->token.len > 24 ? 24 : ctx->token.len), (const char *)ctx->token.data,
                              size);
        if (last) {
            msgpack_object copy = doc_array_copy(ctx->zone, node, 1);
            msgpack_object *a = copy.via.array.ptr;
            if (edit == DOC_ADD) {
                memmove(&a[i + 1], &a[i], (size - (size_t)i) * sizeof(*a));
                a[i] = *value;
                copy.via.array.size++;
            } else if (edit == DOC_REMOVE) {
                memmove(&a[i], &a[i + 1], (size - (size_t)i - 1) * sizeof(*a));
                copy.via.array.size--;
            } else {
                a[i] = *value;
            }
            *out = copy;
            return 0;
        }
        msgpack_object child;
        if (doc_edit_at(ctx, &node->via.array.ptr[i], ptr, len, pos, edit, value, &child) < 0)
            return -1;
        msgpack_object copy = doc_array_copy(ctx->zone, node, 0);
        copy.via.array.ptr[i] = child;
        *out = copy;
        return 0;
    }
    return doc_refuse(ctx, "\"%.*s\" is below a value that is not an object or array",
                      (int)(ctx->token.len > 64 ? 64 : ctx->token.len), (const char *)ctx->token.data);
}

static int doc_edit(doc_ctx_t *ctx, msgpack_object *doc, const char *ptr, size_t len, doc_edit_t edit,
                    const msgpack_object *value)
{
    if (len == 0 && edit == DOC_REMOVE)
        return doc_refuse(ctx, "the whole profile cannot be removed (DELETE does that)");
    msgpack_object result;
    if (doc_edit_at(ctx, doc, ptr, len, 0, edit, value, &result) < 0)
        return -1;
    *doc = result;
    return 0;
}

int doc_patch(msgpack_zone *zone, const msgpack_object *doc, const uint8_t *patch, size_t len,
              msgpack_object *out, char *reason, size_t reason_size)
{
    doc_ctx_t ctx = {.zone = zone, .reason = reason, .reason_size = reason_size};
    msgpack_object cur = *doc;
    size_t pos = 0;
    jpatch_item_t item;
    int rc = -1;
    for (ctx.index = 0; jpatch_next(patch, len, &pos, &item); ctx.index++) {
        ctx.item = &item;
        msgpack_object value, found;
        switch (item.op) {
        case JPATCH_ADD:
        case JPATCH_REPLACE:
            doc_unpack(zone, item.value, item.value_len, &value);
            if (item.op == JPATCH_REPLACE && doc_get(&ctx, &cur, item.path, item.path_len, &found) < 0)
                goto cleanup;
            if (doc_edit(&ctx, &cur, item.path, item.path_len, item.op == JPATCH_ADD ? DOC_ADD : DOC_REPLACE,
                         &value) < 0)
                goto cleanup;
            break;
        case JPATCH_REMOVE:
            if (doc_edit(&ctx, &cur, item.path, item.path_len, DOC_REMOVE, NULL) < 0)
                goto cleanup;
            break;
        case JPATCH_MOVE:
        case JPATCH_COPY:
            if (doc_get(&ctx, &cur, item.from, item.from_len, &found) < 0)
                goto cleanup;
            if (item.op == JPATCH_MOVE &&
                !(item.from_len == item.path_len && memcmp(item.from, item.path, item.path_len) == 0)) {
                if (item.from_len == 0) {
                    doc_refuse(&ctx, "the whole profile cannot be moved");
                    goto cleanup;
                }
                if (doc_edit(&ctx, &cur, item.from, item.from_len, DOC_REMOVE, NULL) < 0)
                    goto cleanup;
            }
            if (doc_edit(&ctx, &cur, item.path, item.path_len, DOC_ADD, &found) < 0)
                goto cleanup;
            break;
        case JPATCH_TEST:
            doc_unpack(zone, item.value, item.value_len, &value);
            if (doc_get(&ctx, &cur, item.path, item.path_len, &found) < 0)
                goto cleanup;
            if (!doc_equal(&found, &value)) {
                doc_refuse(&ctx, "the value differs");
                goto cleanup;
            }
            break;
        case JPATCH__COUNT:
        default:
            fatal_abort("patch operation %d out of range",
                        (int)item.op); /* jpatch_check accepts only the six */
        }
    }
    if (cur.type != MSGPACK_OBJECT_MAP) {
        snprintf(reason, reason_size, "patch: the result is not an object");
        goto cleanup;
    }
    *out = cur;
    rc = 0;
cleanup:
    buf_free(&ctx.token);
    return rc;
}

/* msgpack-c's packer writes into a buf_t. */
static int doc_buf_write(void *data, const char *bytes, size_t len)
{
    buf_append(data, bytes, len);
    return 0;
}

void doc_pack(const msgpack_object *doc, buf_t *out)
{
    msgpack_packer packer;
    msgpack_packer_init(&packer, out, doc_buf_write);
    if (msgpack_pack_object(&packer, *doc) != 0)
        fatal_abort("msgpack-c could not pack a document"); /* doc_buf_write never fails */
}

int doc_check(const uint8_t *packed, size_t len, const limits_t *limits, char *reason, size_t reason_size)
{
    buf_t json = {0};
    size_t used = 0;
    codec_failure_t failure;
    int rc = json_write_value(packed, len, limits, "profile", &used, &json, &failure);
    buf_free(&json);
    if (rc < 0)
        snprintf(reason, reason_size, "the result is over the limits: %s", failure.message);
    return rc;
}
