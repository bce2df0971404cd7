/*
 * http_error: the one shape of every error answer (DESIGN §3):
 *
 *   {"message": "<what is wrong, naming the field>", "type": "<type>"}
 *
 * The type follows from the status, as Courier's API does it, so callers
 * cannot pair a status with the wrong type.
 */
#ifndef PROFILED_HTTP_ERROR_H
#define PROFILED_HTTP_ERROR_H

#include <stddef.h>

#include "buf.h"

/* "invalid_request_error" for 400/404/405/408/409/413/417/431, "authentication_error" for 401,
 * "authorization_error" for 403, "rate_limit_error" for 429, "api_error" for 5xx and anything else. */
const char *http_error_type(int status);

/* Appends the error body for `status`. The message may hold any bytes: invalid UTF-8 is
 * written as U+FFFD and control characters are escaped, so the body is always valid JSON. */
void http_error_body(buf_t *out, int status, const char *message);

/* Appends `s[0..len)` as a JSON string (quotes included), with the same repairs. */
void http_json_string(buf_t *out, const char *s, size_t len);

#endif
