/*
 * json_write: msgpack to JSON text, for the worker (profile into jsonb) and
 * for the api's GET path if it needs it. Exact integers, the shortest double
 * text that reads back to the same double, RFC 8259 escaping.
 *
 * Rejections are errors, never crashes: NUL in a string or key, invalid
 * UTF-8, NaN/infinity, non-str map keys, bin/ext values, and breaches of
 * `limits` (depth, key bytes, string bytes, entries per map/array). The
 * codec uses this walk to validate a decoded profile, so one set of rules
 * serves both.
 */
#ifndef PROFILED_JSON_WRITE_H
#define PROFILED_JSON_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "profile_limits.h"

/*
 * Writes the one msgpack value at bytes[0..len) as JSON appended to `out`;
 * *consumed receives the bytes it took (the caller decides whether trailing
 * bytes are an error). `path` names the value in messages ("profile").
 * Returns 0, or -1 with failure->code one of the profile codes of codec.h
 * (MALFORMED, INVALID_UTF8, NUL_IN_STRING, LIMIT, NON_FINITE_NUMBER,
 * NON_STRING_KEY, UNSUPPORTED_TYPE) and a message naming the path
 * ("profile.tags[2]: string contains U+0000, ..."); on failure `out` is left
 * as it was.
 *
 * Depth counts containers: the value itself, if a map or array, is depth 1
 * (for the codec, the profile map), its children depth 2, and so on, up to
 * limits->max_depth. The first offence in wire order decides; for one key
 * the checks run non-str, limit, UTF-8, U+0000; for one str limit, UTF-8,
 * U+0000 (proto/README.md §5). Output: compact JSON, map entries in msgpack
 * order (a repeated key is written twice; jsonb keeps the last).
 */
int json_write_value(const uint8_t *bytes, size_t len, const limits_t *limits, const char *path,
                     size_t *consumed, buf_t *out, codec_failure_t *failure)
    __attribute__((warn_unused_result));

/* How json_escape treats what strict JSON text cannot hold (see json_write.c). */
typedef enum json_escape_policy {
    JSON_ESCAPE_STRICT, /* data: valid UTF-8 vouched for by the caller; 0x7f as is */
    JSON_ESCAPE_LOSSY,  /* logs and error bodies: a bad UTF-8 byte becomes \ufffd, 0x7f is \u007f */
} json_escape_policy_t;

/* The one JSON string escaper: writes the escaped content of s[0..len), no
 * quotes, at dst (room for JSON_ESCAPE_MAX(len) bytes) and returns its length. */
#define JSON_ESCAPE_MAX(len) (6 * (len))
size_t json_escape(char *dst, const char *s, size_t len, json_escape_policy_t policy);

/* Appends `s` as a quoted JSON string, escaped as proto/README.md §3.2 says.
 * The caller vouches it is valid UTF-8 (asserted in debug builds). */
void json_write_string(buf_t *out, const char *s, size_t len);

/* Appends the shortest decimal text that reads back as exactly `value`
 * (finite values only; the caller checks), laid out as ECMAScript's
 * Number::toString (1e+21, 1e-7, 0.000001). Integral values keep a ".0" or
 * an exponent so that they read back as doubles: 100.0, -0.0. */
void json_write_double(buf_t *out, double value);

#endif
