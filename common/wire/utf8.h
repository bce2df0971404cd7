/*
 * utf8: strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF. Shared by the JSON transcoder, the
 * command decoder and the recipient-id check so that all three agree on what
 * "valid UTF-8" means.
 */
#ifndef PROFILED_UTF8_H
#define PROFILED_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when bytes[0..len) is valid UTF-8. With has_nul (may be NULL) it also
 * reports whether a U+0000 appears, which PostgreSQL jsonb cannot store. */
bool utf8_valid(const uint8_t *bytes, size_t len, bool *has_nul);

/* Length of the valid UTF-8 sequence starting at bytes[0], or 0 when the
 * sequence starting there is invalid or truncated by `avail`. */
size_t utf8_sequence_len(const uint8_t *bytes, size_t avail);

#endif
