/*
 * http_route: the api's request targets, as pure functions over the raw
 * request-target so that routing and recipient-id decoding are tested
 * without a server.
 *
 * The recipient id is taken from the *raw* path segment and percent-decoded
 * here, once: `%2F` is a slash inside the id, never a path separator, so the
 * target is split on raw slashes before anything is decoded (DESIGN §3).
 */
#ifndef PROFILED_HTTP_ROUTE_H
#define PROFILED_HTTP_ROUTE_H

#include <stddef.h>

#include "profile_limits.h"

typedef enum http_route {
    HTTP_ROUTE_NOT_FOUND = 0, /* anything else: 404 */
    HTTP_ROUTE_PROFILE,       /* /profiles/{recipient_id} (segment may be empty: a 400, not a 404) */
    HTTP_ROUTE_HEALTHZ,       /* /healthz */
    HTTP_ROUTE_READYZ,        /* /readyz */
    HTTP_ROUTE_METRICS,       /* /metrics */
    HTTP_ROUTE__COUNT
} http_route_t;

/* "put_profile"-style names are the api's business; this is the route's own name. */
const char *http_route_name(http_route_t route);

/*
 * Matches a raw request-target (origin form "/path?query", or absolute form
 * "http://host/path?query"). The query is ignored. For HTTP_ROUTE_PROFILE,
 * *segment and *segment_len give the still-encoded id segment inside `target`.
 */
http_route_t http_route_match(const char *target, const char **segment, size_t *segment_len);

/* Room for a decoded recipient id and its terminating NUL. */
#define HTTP_RECIPIENT_ID_CAP (LIMITS_MAX_RECIPIENT_ID_BYTES + 1)

/*
 * Percent-decodes a raw path segment into a recipient id: out receives the
 * bytes and a NUL (it holds HTTP_RECIPIENT_ID_CAP bytes). The id must be
 * 1..256 bytes of valid UTF-8 without U+0000; every '%' must start a
 * two-hex-digit escape. Returns 0, or -1 with errstr naming `recipient_id`
 * and the rule it breaks (text safe to return to the caller).
 */
int http_recipient_id_decode(const char *segment, size_t segment_len, char *out, size_t *out_len,
                             char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

#endif
