#include "http_route.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "utf8.h"

const char *http_route_name(http_route_t route)
{
    switch (route) {
    case HTTP_ROUTE_NOT_FOUND:
        return "not_found";
    case HTTP_ROUTE_PROFILE:
        return "profile";
    case HTTP_ROUTE_HEALTHZ:
        return "healthz";
    case HTTP_ROUTE_READYZ:
        return "readyz";
    case HTTP_ROUTE_METRICS:
        return "metrics";
    case HTTP_ROUTE__COUNT:
        break;
    }
    return "?";
}

/* True when path[0..len) equals the NUL-terminated `literal`. */
static bool http_route_is(const char *path, size_t len, const char *literal)
{
    return strlen(literal) == len && memcmp(path, literal, len) == 0;
}

http_route_t http_route_match(const char *target, const char **segment, size_t *segment_len)
{
    static const char prefix[] = "/profiles/";
    const size_t prefix_len = sizeof(prefix) - 1;

    /* Absolute form (RFC 9112 §3.2.2): skip "scheme://authority". */
    if (target[0] != '/') {
        const char *scheme_end = strstr(target, "://");
        if (!scheme_end)
            return HTTP_ROUTE_NOT_FOUND;
        target = strchr(scheme_end + 3, '/');
        if (!target)
            return HTTP_ROUTE_NOT_FOUND;
    }
    size_t len = strcspn(target, "?#");

    if (len >= prefix_len && memcmp(target, prefix, prefix_len) == 0) {
        const char *id = target + prefix_len;
        size_t id_len = len - prefix_len;
        if (memchr(id, '/', id_len))
            return HTTP_ROUTE_NOT_FOUND; /* /profiles/a/b: a sub-resource we do not serve */
        *segment = id;
        *segment_len = id_len;
        return HTTP_ROUTE_PROFILE;
    }
    if (http_route_is(target, len, "/healthz"))
        return HTTP_ROUTE_HEALTHZ;
    if (http_route_is(target, len, "/readyz"))
        return HTTP_ROUTE_READYZ;
    if (http_route_is(target, len, "/metrics"))
        return HTTP_ROUTE_METRICS;
    return HTTP_ROUTE_NOT_FOUND;
}

static int http_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int http_recipient_id_decode(const char *segment, size_t segment_len, char *out, size_t *out_len,
                             char *errstr, size_t errstr_size)
{
    size_t len = 0;
    for (size_t i = 0; i < segment_len; i++) {
        uint8_t byte = (uint8_t)segment[i];
        if (byte == '%') {
            int high = i + 1 < segment_len ? http_hex_value(segment[i + 1]) : -1;
            int low = i + 2 < segment_len ? http_hex_value(segment[i + 2]) : -1;
            if (high < 0 || low < 0) {
                snprintf(
                    errstr, errstr_size,
                    "recipient_id: invalid percent-escape at byte %zu of the path segment (expected %%XX "
                    "with two hex digits)",
                    i);
                return -1;
            }
            byte = (uint8_t)(high << 4 | low);
            i += 2;
        }
        if (len == LIMITS_MAX_RECIPIENT_ID_BYTES) {
            snprintf(errstr, errstr_size, "recipient_id must be at most %d bytes after percent-decoding",
                     LIMITS_MAX_RECIPIENT_ID_BYTES);
            return -1;
        }
        out[len++] = (char)byte;
    }
    out[len] = '\0';
    if (len == 0) {
        snprintf(errstr, errstr_size, "recipient_id must not be empty");
        return -1;
    }
    bool has_nul = false;
    if (!utf8_valid((const uint8_t *)out, len, &has_nul)) {
        snprintf(errstr, errstr_size, "recipient_id must be valid UTF-8 after percent-decoding");
        return -1;
    }
    if (has_nul) {
        snprintf(errstr, errstr_size, "recipient_id must not contain U+0000 (%%00)");
        return -1;
    }
    *out_len = len;
    return 0;
}
