/*
 * json_patch: JSON Patch (RFC 6902) operations and JSON Pointer (RFC 6901)
 * paths, as msgpack, checked without a document: what the api and the
 * codec can decide alone (well-formed operations, pointers, values within
 * the profile limits). What depends on the stored profile (a test that does
 * not match, a missing path) is decided by the worker (services/worker/doc.h).
 *
 * A patch is a msgpack array of maps {"op", "path", "from"?, "value"?}
 * (proto/README.md §3.3). Other members of an operation are ignored
 * (RFC 6902 §4); a member given twice is an error. Pointers: "" (the whole
 * document) or "/" followed by reference tokens separated by "/", in which
 * "~0" stands for "~" and "~1" for "/"; any other "~" is an error.
 */
#ifndef PROFILED_JSON_PATCH_H
#define PROFILED_JSON_PATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "json_transcode.h"
#include "profile_limits.h"

typedef enum jpatch_op {
    JPATCH_ADD,
    JPATCH_REMOVE,
    JPATCH_REPLACE,
    JPATCH_MOVE,
    JPATCH_COPY,
    JPATCH_TEST,
    JPATCH__COUNT
} jpatch_op_t;

/* "add", "remove", ... */
const char *jpatch_op_name(jpatch_op_t op);

typedef struct jpatch_item {
    jpatch_op_t op;
    const char *path; /* a valid pointer, not NUL-terminated */
    size_t path_len;
    const char *from; /* move and copy; NULL otherwise */
    size_t from_len;
    const uint8_t *value; /* add, replace and test: one msgpack value; NULL otherwise */
    size_t value_len;
} jpatch_item_t;

/* True when s[0..len) is a JSON Pointer: "" or "/..." with only "~0" and "~1" escapes. */
bool jpointer_valid(const char *s, size_t len);

/* The next reference token of a valid pointer, from *pos (start at 0),
 * unescaped into `token` (reset first, not NUL-terminated). Returns false
 * when no token is left. */
bool jpointer_next(const char *s, size_t len, size_t *pos, buf_t *token);

/* Number of reference tokens of a valid pointer ("" has 0, "/" has 1). */
size_t jpointer_depth(const char *s, size_t len);

/*
 * Checks the patch array at bytes[0..len); *consumed receives its size.
 * Operations: at most limits->max_keys; each a map whose "op" is one of the
 * six, "path" (and "from" for move/copy) a pointer of at most
 * limits->max_string_bytes, "value" present for add/replace/test and valid
 * under the profile rules (json_write_value, depth counted from the value;
 * `scratch` is written to and left with its length as it was). A move's "from" must not be a proper prefix
 * of its "path" (RFC 6902 §4.4). Returns 0, or -1 with failure->code
 * CODEC_ERR_BAD_PATCH (shape) or a profile code (a value), and a message
 * naming "patch[i].member".
 */
int jpatch_check(const uint8_t *bytes, size_t len, const limits_t *limits, size_t *consumed, buf_t *scratch,
                 codec_failure_t *failure) __attribute__((warn_unused_result));

/* Reads operation `*pos` of a patch jpatch_check accepted and advances *pos
 * (a byte offset into bytes; 0 is the array header). Returns false at the end. */
bool jpatch_next(const uint8_t *bytes, size_t len, size_t *pos, jpatch_item_t *item);

/* Appends the canonical encoding of a checked patch: each operation as a map
 * of "op", "path", "from" (move, copy), "value" (add, replace, test), in that
 * order, other members dropped; values copied as they are. */
void jpatch_write_canonical(const uint8_t *bytes, size_t len, buf_t *out);

/*
 * A PATCH /profiles body, {"patch": [...]}, strict JSON as for PUT (the
 * transcoder's grammar and limits; the wrapper, the array and the operation
 * maps do not count towards the depth of a value). Appends the canonical patch
 * (jpatch_write_canonical) to `out`. Other top-level members are ignored.
 * Returns 0, or -1 with `error` filled (status TOO_LARGE for 413, else 400).
 */
int jpatch_request(const uint8_t *body, size_t len, const limits_t *limits, buf_t *out,
                   transcode_error_t *error) __attribute__((warn_unused_result));

#endif
