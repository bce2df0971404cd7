/*
 * http_etag: the If-None-Match comparison of RFC 9110 §13.1.2, on its own so
 * that it can be fuzzed (tests/fuzz/fuzz_etag.c) apart from the GET handler.
 *
 *   If-None-Match = "*" / #entity-tag
 *   entity-tag    = [ "W/" ] DQUOTE *etagc DQUOTE
 *   etagc         = %x21 / %x23-7E / obs-text
 *
 * The comparison is weak (§8.8.3.2): a "W/" on either side is ignored. The
 * list follows §5.6.1: elements separated by OWS "," OWS, empty elements
 * allowed. A field that is neither "*" nor such a list is ignored (no
 * match): a full answer is never wrong, a 304 on a garbled field could be.
 */
#ifndef PROFILED_HTTP_ETAG_H
#define PROFILED_HTTP_ETAG_H

#include <stdbool.h>
#include <stddef.h>

/* true when `field` (If-None-Match, field_len bytes, need not be NUL-terminated) is "*" or lists an
 * entity tag weakly equal to `etag` (an entity-tag as sent in ETag, quotes included, e.g. "\"1.2.ab\"";
 * a leading W/ is ignored). An `etag` that is not exactly one entity-tag matches nothing. */
bool http_etag_matches(const char *field, size_t field_len, const char *etag, size_t etag_len);

#endif
