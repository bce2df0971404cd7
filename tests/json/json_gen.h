/*
 * json_gen: seeded random JSON texts for the differential tests (valid ones
 * that hit the corners: escapes, surrogate pairs, raw UTF-8, integer bounds,
 * exponents, duplicate keys, odd whitespace; and mutations of them that are
 * mostly invalid), plus a comparison of a msgpack object with a jansson
 * value. Deterministic for a seed, so a failure names a reproducible case.
 */
#ifndef PROFILED_TESTS_JSON_GEN_H
#define PROFILED_TESTS_JSON_GEN_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

typedef struct gen_rng {
    uint64_t state;
} gen_rng_t;

uint64_t gen_next(gen_rng_t *rng);

/* Appends one random JSON value, nested at most max_depth deep. */
void gen_value(gen_rng_t *rng, buf_t *out, int max_depth);

/* Appends one random JSON object (the shape of a profile). */
void gen_object(gen_rng_t *rng, buf_t *out, int max_depth);

/* Applies 1-3 random byte-level mutations (flip, insert, delete, truncate,
 * duplicate a slice) to text; the result is usually invalid JSON. */
void gen_mutate(gen_rng_t *rng, buf_t *text);

/*
 * True when the msgpack object and the jansson value are the same JSON
 * value: same types (integer vs real kept apart), same numbers, same string
 * bytes, arrays in order, maps with exactly the same keys (so no duplicate
 * may remain in the msgpack map). On false, `why` says where.
 */
bool gen_equal(const msgpack_object *mp, const json_t *js, char *why, size_t why_size);

#endif
