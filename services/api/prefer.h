/*
 * prefer: reads one preference of a `Prefer` request header (RFC 7240), for
 * the client-chosen write acknowledgement (`Prefer: profiled-ack=kafka`).
 */
#ifndef PROFILED_API_PREFER_H
#define PROFILED_API_PREFER_H

#include <stdbool.h>
#include <stddef.h>

/* Finds the preference `name` (compared case-insensitively) in a Prefer header value
 * (`1#( token [ "=" word ] *( ";" parameter ) )`, word = token / quoted-string) and copies its
 * value, unquoted, into value (empty when it has none). Returns false when the header does not
 * name it, or its value does not fit value_size; parameters are ignored, the first occurrence
 * wins, and text that is not a preference is skipped up to the next ','. */
bool api_prefer_find(const char *header, const char *name, char *value, size_t value_size);

#endif
