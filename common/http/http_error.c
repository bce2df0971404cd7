#include "http_error.h"

#include <stdint.h>
#include <string.h>

#include "utf8.h"

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
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    buf_append_byte(out, '"');
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c >= 0x80) {
            size_t seq = utf8_sequence_len(p + i, len - i);
            if (seq == 0) {
                buf_append_str(out, "\\ufffd");
                i++;
            } else {
                buf_append(out, p + i, seq);
                i += seq;
            }
            continue;
        }
        if (c == '"' || c == '\\') {
            buf_append_byte(out, '\\');
            buf_append_byte(out, c);
        } else if (c == '\n') {
            buf_append_str(out, "\\n");
        } else if (c == '\t') {
            buf_append_str(out, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(out, esc, sizeof(esc));
        } else {
            buf_append_byte(out, c);
        }
        i++;
    }
    buf_append_byte(out, '"');
}

void http_error_body(buf_t *out, int status, const char *message)
{
    buf_append_str(out, "{\"message\":");
    http_json_string(out, message, strlen(message));
    buf_append_str(out, ",\"type\":\"");
    buf_append_str(out, http_error_type(status));
    buf_append_str(out, "\"}");
}
