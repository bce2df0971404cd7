#include "http_error.h"

#include <stdint.h>
#include <string.h>

#include "json_write.h"

const char *http_error_type(int status)
{
    switch (status) {
    case 400:
    case 404:
    case 405:
    case 408:
    case 409:
    case 413:
    case 417:
    case 431:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "authorization_error";
    case 429:
        return "rate_limit_error";
    default:
        return "api_error";
    }
}

void http_json_string(buf_t *out, const char *s, size_t len)
{
    buf_reserve(out, JSON_ESCAPE_MAX(len) + 2);
    out->data[out->len++] = '"';
    out->len += json_escape((char *)out->data + out->len, s, len, JSON_ESCAPE_LOSSY);
    out->data[out->len++] = '"';
}

void http_error_body(buf_t *out, int status, const char *message)
{
    buf_append_str(out, "{\"message\":");
    http_json_string(out, message, strlen(message));
    buf_append_str(out, ",\"type\":\"");
    buf_append_str(out, http_error_type(status));
    buf_append_str(out, "\"}");
}
