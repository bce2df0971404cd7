/*
 * json_patch: shape checks of JSON Patch operations and JSON Pointers over
 * msgpack (json_patch.h). The walk relies on mp_skip having proved the
 * array is one complete msgpack value, so every later read is in bounds.
 */
#include "json_patch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json_write.h"
#include "mp.h"
#include "utf8.h"

static const char *const jpatch_op_names[JPATCH__COUNT] = {
    [JPATCH_ADD] = "add",   [JPATCH_REMOVE] = "remove", [JPATCH_REPLACE] = "replace",
    [JPATCH_MOVE] = "move", [JPATCH_COPY] = "copy",     [JPATCH_TEST] = "test",
};

const char *jpatch_op_name(jpatch_op_t op)
{
    return (unsigned)op < JPATCH__COUNT ? jpatch_op_names[op] : "unknown";
}

bool jpointer_valid(const char *s, size_t len)
{
    if (len == 0)
        return true;
    if (s[0] != '/')
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '~' && (i + 1 == len || (s[i + 1] != '0' && s[i + 1] != '1')))
            return false;
    return true;
}

bool jpointer_next(const char *s, size_t len, size_t *pos, buf_t *token)
{
    if (*pos >= len)
        return false;
    buf_reset(token);
    size_t i = *pos + 1; /* past the '/' */
    for (; i < len && s[i] != '/'; i++) {
        if (s[i] == '~') {
            buf_append_byte(token, s[i + 1] == '0' ? '~' : '/');
            i++;
        } else
            buf_append_byte(token, (uint8_t)s[i]);
    }
    *pos = i;
    return true;
}

size_t jpointer_depth(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '/';
    return n;
}

static int jpatch_fail(codec_failure_t *failure, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int jpatch_fail(codec_failure_t *failure, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    failure->code = CODEC_ERR_BAD_PATCH;
    vsnprintf(failure->message, sizeof(failure->message), fmt, args);
    va_end(args);
    return -1;
}

enum { JPATCH_M_OP, JPATCH_M_PATH, JPATCH_M_FROM, JPATCH_M_VALUE, JPATCH_M__COUNT };
static const char *const jpatch_member_names[JPATCH_M__COUNT] = {"op", "path", "from", "value"};

/* Reads the operation map at p (walked already): where each known member's
 * value starts, or -1 with a failure for a non-str or repeated member. */
static int jpatch_members(const uint8_t *p, size_t avail, size_t index, const uint8_t **at, size_t *consumed,
                          codec_failure_t *failure)
{
    mp_item_t map;
    size_t pos;
    (void)mp_read(p, avail, &map);
    if (map.type != MP_MAP)
        return jpatch_fail(failure, "patch[%zu]: must be an object, got %s", index, mp_type_name(map.type));
    pos = map.size;
    for (uint32_t i = 0; i < map.len; i++) {
        mp_item_t key;
        size_t skipped = 0;
        (void)mp_read(p + pos, avail - pos, &key);
        if (key.type != MP_STR)
            return jpatch_fail(failure, "patch[%zu]: a member name is not a string", index);
        pos += key.size;
        for (int m = 0; m < JPATCH_M__COUNT; m++) {
            if (key.len == strlen(jpatch_member_names[m]) &&
                memcmp(key.data, jpatch_member_names[m], key.len) == 0) {
                if (at[m])
                    return jpatch_fail(failure, "patch[%zu].%s: given twice", index, jpatch_member_names[m]);
                at[m] = p + pos;
            }
        }
        if (mp_skip(p + pos, avail - pos, &skipped) != 0) /* walked already: cannot fail */
            return jpatch_fail(failure, "patch[%zu]: not one complete msgpack value", index);
        pos += skipped;
    }
    *consumed = pos;
    return 0;
}

static int jpatch_pointer(const uint8_t *at, size_t avail, size_t index, const char *member,
                          const limits_t *limits, const char **s, size_t *len, codec_failure_t *failure)
{
    mp_item_t item;
    bool has_nul;
    (void)mp_read(at, avail, &item);
    if (item.type != MP_STR)
        return jpatch_fail(failure, "patch[%zu].%s: must be a string (a JSON Pointer), got %s", index, member,
                           mp_type_name(item.type));
    if (item.len > limits->max_string_bytes)
        return jpatch_fail(failure, "patch[%zu].%s: over %u bytes (PROFILED_MAX_STRING_BYTES)", index, member,
                           limits->max_string_bytes);
    if (!utf8_valid(item.data, item.len, &has_nul) || has_nul)
        return jpatch_fail(failure, "patch[%zu].%s: not UTF-8 without U+0000", index, member);
    if (!jpointer_valid((const char *)item.data, item.len))
        return jpatch_fail(
            failure,
            "patch[%zu].%s: not a JSON Pointer (RFC 6901: empty, or \"/\" tokens with ~0 and ~1 "
            "as the only escapes)",
            index, member);
    *s = (const char *)item.data;
    *len = item.len;
    return 0;
}

/* Reads and checks one operation; `scratch` receives the value's JSON. */
static int jpatch_read_op(const uint8_t *p, size_t avail, size_t index, const limits_t *limits,
                          jpatch_item_t *item, size_t *consumed, buf_t *scratch, codec_failure_t *failure)
{
    const uint8_t *at[JPATCH_M__COUNT] = {0};
    memset(item, 0, sizeof(*item));
    if (jpatch_members(p, avail, index, at, consumed, failure) < 0)
        return -1;
    const uint8_t *end = p + avail;
    if (!at[JPATCH_M_OP])
        return jpatch_fail(failure, "patch[%zu].op: required", index);
    mp_item_t op;
    (void)mp_read(at[JPATCH_M_OP], (size_t)(end - at[JPATCH_M_OP]), &op);
    int which = -1;
    if (op.type == MP_STR)
        for (int k = 0; k < JPATCH__COUNT; k++)
            if (op.len == strlen(jpatch_op_names[k]) && memcmp(op.data, jpatch_op_names[k], op.len) == 0)
                which = k;
    if (which < 0)
        return jpatch_fail(failure, "patch[%zu].op: must be one of add, remove, replace, move, copy, test",
                           index);
    item->op = (jpatch_op_t)which;

    if (!at[JPATCH_M_PATH])
        return jpatch_fail(failure, "patch[%zu].path: required", index);
    if (jpatch_pointer(at[JPATCH_M_PATH], (size_t)(end - at[JPATCH_M_PATH]), index, "path", limits,
                       &item->path, &item->path_len, failure) < 0)
        return -1;
    if (item->op == JPATCH_MOVE || item->op == JPATCH_COPY) {
        if (!at[JPATCH_M_FROM])
            return jpatch_fail(failure, "patch[%zu].from: required for %s", index, jpatch_op_names[which]);
        if (jpatch_pointer(at[JPATCH_M_FROM], (size_t)(end - at[JPATCH_M_FROM]), index, "from", limits,
                           &item->from, &item->from_len, failure) < 0)
            return -1;
        /* RFC 6902 §4.4: a location cannot be moved into one of its children. */
        if (item->op == JPATCH_MOVE && item->from_len < item->path_len &&
            memcmp(item->from, item->path, item->from_len) == 0 && item->path[item->from_len] == '/')
            return jpatch_fail(failure,
                               "patch[%zu].from: a location cannot be moved into one of its children", index);
    }
    if (item->op == JPATCH_ADD || item->op == JPATCH_REPLACE || item->op == JPATCH_TEST) {
        if (!at[JPATCH_M_VALUE])
            return jpatch_fail(failure, "patch[%zu].value: required for %s", index, jpatch_op_names[which]);
        char where[48];
        snprintf(where, sizeof(where), "patch[%zu].value", index);
        size_t value_len = 0, mark = scratch->len;
        int rc = json_write_value(at[JPATCH_M_VALUE], (size_t)(end - at[JPATCH_M_VALUE]), limits, where,
                                  &value_len, scratch, failure);
        scratch->len = mark;
        if (rc < 0)
            return -1;
        item->value = at[JPATCH_M_VALUE];
        item->value_len = value_len;
    }
    return 0;
}

int jpatch_check(const uint8_t *bytes, size_t len, const limits_t *limits, size_t *consumed, buf_t *scratch,
                 codec_failure_t *failure)
{
    size_t total = 0;
    mp_item_t array;
    if (mp_skip(bytes, len, &total) != 0)
        return jpatch_fail(failure, "patch: not one complete msgpack value");
    (void)mp_read(bytes, len, &array);
    if (array.type != MP_ARRAY)
        return jpatch_fail(failure, "patch: must be an array of operations, got %s",
                           mp_type_name(array.type));
    if (array.len > limits->max_keys)
        return jpatch_fail(failure, "patch: %u operations, over the limit of %u (PROFILED_MAX_KEYS)",
                           array.len, limits->max_keys);
    size_t pos = array.size;
    for (uint32_t i = 0; i < array.len; i++) {
        jpatch_item_t item;
        size_t used = 0;
        if (jpatch_read_op(bytes + pos, total - pos, i, limits, &item, &used, scratch, failure) < 0)
            return -1;
        pos += used;
    }
    *consumed = total;
    return 0;
}

bool jpatch_next(const uint8_t *bytes, size_t len, size_t *pos, jpatch_item_t *item)
{
    static const limits_t unlimited = {.max_body_bytes = SIZE_MAX,
                                       .max_depth = UINT32_MAX,
                                       .max_key_bytes = UINT32_MAX,
                                       .max_string_bytes = UINT32_MAX,
                                       .max_keys = UINT32_MAX};
    mp_item_t array;
    (void)mp_read(bytes, len, &array);
    if (*pos == 0)
        *pos = array.size;
    if (*pos >= len)
        return false;
    /* Checked already: only the members are located again; values are not re-walked as JSON. */
    const uint8_t *at[JPATCH_M__COUNT] = {0};
    codec_failure_t failure;
    size_t used = 0;
    if (jpatch_members(bytes + *pos, len - *pos, 0, at, &used, &failure) < 0)
        return false;
    memset(item, 0, sizeof(*item));
    const uint8_t *end = bytes + len;
    mp_item_t m;
    (void)mp_read(at[JPATCH_M_OP], (size_t)(end - at[JPATCH_M_OP]), &m);
    for (int k = 0; k < JPATCH__COUNT; k++)
        if (m.len == strlen(jpatch_op_names[k]) && memcmp(m.data, jpatch_op_names[k], m.len) == 0)
            item->op = (jpatch_op_t)k;
    (void)jpatch_pointer(at[JPATCH_M_PATH], (size_t)(end - at[JPATCH_M_PATH]), 0, "path", &unlimited,
                         &item->path, &item->path_len, &failure);
    if ((item->op == JPATCH_MOVE || item->op == JPATCH_COPY) && at[JPATCH_M_FROM])
        (void)jpatch_pointer(at[JPATCH_M_FROM], (size_t)(end - at[JPATCH_M_FROM]), 0, "from", &unlimited,
                             &item->from, &item->from_len, &failure);
    if ((item->op == JPATCH_ADD || item->op == JPATCH_REPLACE || item->op == JPATCH_TEST) &&
        at[JPATCH_M_VALUE]) {
        item->value = at[JPATCH_M_VALUE];
        if (mp_skip(item->value, (size_t)(end - item->value), &item->value_len) != 0)
            return false;
    }
    *pos += used;
    return true;
}

void jpatch_write_canonical(const uint8_t *bytes, size_t len, buf_t *out)
{
    mp_item_t array;
    (void)mp_read(bytes, len, &array);
    mp_write_array_header(out, array.len);
    size_t pos = 0;
    jpatch_item_t item;
    while (jpatch_next(bytes, len, &pos, &item)) {
        uint32_t n = 2 + (item.from ? 1 : 0) + (item.value ? 1 : 0);
        const char *name = jpatch_op_names[item.op];
        mp_write_map_header(out, n);
        mp_write_str(out, "op", 2);
        mp_write_str(out, name, (uint32_t)strlen(name));
        mp_write_str(out, "path", 4);
        mp_write_str(out, item.path, (uint32_t)item.path_len);
        if (item.from) {
            mp_write_str(out, "from", 4);
            mp_write_str(out, item.from, (uint32_t)item.from_len);
        }
        if (item.value) {
            mp_write_str(out, "value", 5);
            buf_append(out, item.value, item.value_len);
        }
    }
}

int jpatch_request(const uint8_t *body, size_t len, const limits_t *limits, buf_t *out,
                   transcode_error_t *error)
{
    int rc = -1;
    buf_t value = {0}, scratch = {0};
    limits_t wrapped = *limits;
    wrapped.max_depth += 3; /* {"patch": [ {op} ]} around each value */
    memset(error, 0, sizeof(*error));
    if (transcode_value(body, len, &wrapped, &value, error) < 0)
        goto cleanup;
    error->status = TRANSCODE_ERR_SCHEMA;
    mp_item_t top;
    (void)mp_read(value.data, value.len, &top);
    if (top.type != MP_MAP) {
        snprintf(error->message, sizeof(error->message), "body: must be an object {\"patch\": [...]}");
        goto cleanup;
    }
    const uint8_t *patch = NULL;
    size_t pos = top.size, patch_len = 0;
    for (uint32_t i = 0; i < top.len; i++) {
        mp_item_t key;
        size_t used = 0;
        (void)mp_read(value.data + pos, value.len - pos, &key);
        pos += key.size;
        if (mp_skip(value.data + pos, value.len - pos, &used) != 0)
            goto cleanup; /* the transcoder wrote it: cannot happen */
        if (key.type == MP_STR && key.len == 5 && memcmp(key.data, "patch", 5) == 0) {
            patch = value.data + pos;
            patch_len = used;
        }
        pos += used;
    }
    if (!patch) {
        snprintf(error->message, sizeof(error->message),
                 "patch: required (an array of JSON Patch operations)");
        goto cleanup;
    }
    size_t consumed = 0;
    codec_failure_t failure;
    if (jpatch_check(patch, patch_len, limits, &consumed, &scratch, &failure) < 0) {
        error->status = failure.code == CODEC_ERR_LIMIT ? TRANSCODE_ERR_LIMIT : TRANSCODE_ERR_SCHEMA;
        snprintf(error->message, sizeof(error->message), "%s", failure.message);
        goto cleanup;
    }
    jpatch_write_canonical(patch, patch_len, out);
    error->status = TRANSCODE_OK;
    rc = 0;
cleanup:
    buf_free(&value);
    buf_free(&scratch);
    return rc;
}
