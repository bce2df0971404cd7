/*
 * http_auth: API keys for `Authorization: Bearer <key>`.
 *
 * Keys are kept only as SHA-256 digests. A presented token is hashed once
 * and compared with every configured digest, always all of them and always
 * all 32 bytes, so the time taken says nothing about which key, which prefix
 * or what length matched (DESIGN §3: constant-time compare, keys never
 * logged). The set is built at start-up and read-only afterwards, so loop
 * threads share it without locks.
 */
#ifndef PROFILED_HTTP_AUTH_H
#define PROFILED_HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct http_keys http_keys_t;

http_keys_t *http_keys_new(void);
void http_keys_destroy(http_keys_t *keys);

/* Adds the keys of a comma-separated list (spaces around keys trimmed, empty items skipped). */
int http_keys_add_list(http_keys_t *keys, const char *list, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* Adds the keys of a file: one key a line; blank lines and lines starting with '#' skipped. */
int http_keys_add_file(http_keys_t *keys, const char *path, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

size_t http_keys_count(const http_keys_t *keys);

/* True when `token[0..len)` is one of the keys; constant time in the keys and the token's content. */
bool http_keys_match(const http_keys_t *keys, const char *token, size_t len);

/* The value of an Authorization header (NULL when absent): true for "Bearer <key>" with a known key.
 * The scheme is case-insensitive (RFC 9110 §11.1). */
bool http_keys_check_authorization(const http_keys_t *keys, const char *authorization);

/* Equality of two equal-length byte strings without an early exit. */
bool http_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);

#endif
