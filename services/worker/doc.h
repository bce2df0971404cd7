/*
 * doc: a profile as a msgpack-c object tree (msgpack_object, allocated in a
 * msgpack_zone), and the two kinds that build on the stored profile:
 *
 *   merge  RFC 7396 JSON Merge Patch, which is what Courier documents for
 *          POST /profiles/{id}: keys of the request replace stored ones, a
 *          null removes the key, an object merges into a stored object
 *          (recursively), anything else (arrays included) replaces.
 *   patch  RFC 6902 JSON Patch over RFC 6901 pointers, atomic: on the first
 *          failing operation the patch is refused with a reason naming it,
 *          and the document is unchanged.
 *
 * Trees share strings and scalars with their inputs; every container an
 * operation changes is copied into the zone first, so an input tree is never
 * modified and stays valid after a refusal. Everything lives until the zone
 * is destroyed. Allocation failure aborts (batches are bounded, as in buf.h).
 */
#ifndef PROFILED_WORKER_DOC_H
#define PROFILED_WORKER_DOC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "profile_limits.h"

/* Unpacks one msgpack value (copied into the zone first, so `bytes` may go). */
void doc_unpack(msgpack_zone *zone, const uint8_t *bytes, size_t len, msgpack_object *out);

/* The empty map. */
msgpack_object doc_empty_map(void);

/* out = merge(target, patch) (RFC 7396); `patch` is a map for a profile. */
void doc_merge(msgpack_zone *zone, const msgpack_object *target, const msgpack_object *patch,
               msgpack_object *out);

/* Applies the checked patch (json_patch.h) at patch[0..len) to `doc`. Returns
 * 0 with *out the new document, or -1 with `reason` naming the operation
 * ("patch[2] (remove /a/b): no such member \"b\"") and *out untouched. */
int doc_patch(msgpack_zone *zone, const msgpack_object *doc, const uint8_t *patch, size_t len,
              msgpack_object *out, char *reason, size_t reason_size);

/* Appends the msgpack of `doc` to `out`. */
void doc_pack(const msgpack_object *doc, buf_t *out);

/* JSON equality (RFC 6902 §4.6): numbers by value, maps whatever their order. */
bool doc_equal(const msgpack_object *a, const msgpack_object *b);

/* Checks a new profile: a map within `limits`. 0, or -1 with reason. */
int doc_check(const uint8_t *packed, size_t len, const limits_t *limits, char *reason, size_t reason_size);

#endif
