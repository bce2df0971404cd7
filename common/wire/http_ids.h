/*
 * http_ids: command ids for PUTs.
 *
 * Without an Idempotency-Key a command id is 16 random bytes (getrandom, drawn
 * in batches into a per-thread pool), shaped as a UUID version 4. With one, it is the first 16 bytes of
 * SHA-256(key ‖ 0x00 ‖ recipient_id) shaped as a UUID version 8 (RFC 9562
 * §5.8), so a retried PUT carries the same id and the worker applies it once
 * (DESIGN §2.3). The NUL separator keeps ("ab","c") and ("a","bc") apart.
 * profiled-import derives its ids the same way from a job, a file and a line.
 */
#ifndef PROFILED_HTTP_IDS_H
#define PROFILED_HTTP_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "command_id.h"

#define HTTP_COMMAND_ID_BYTES    COMMAND_ID_BYTES /* the older name */
#define HTTP_COMMAND_ID_TEXT     37               /* 36 characters of UUID text and a NUL */
#define HTTP_IDEMPOTENCY_KEY_MAX 255

/* Random id; -1 only when the kernel's random source fails. */
int http_command_id_random(uint8_t id[HTTP_COMMAND_ID_BYTES]) __attribute__((warn_unused_result));

/* Deterministic id from an Idempotency-Key and the decoded recipient id. */
void http_command_id_from_key(const char *key, size_t key_len, const char *recipient_id,
                              size_t recipient_id_len, uint8_t id[HTTP_COMMAND_ID_BYTES]);

/* Deterministic id of a bulk-import line (proto/README.md §6): the first 16 bytes of
 * SHA-256("profiled-import" ‖ 0x00 ‖ job ‖ 0x00 ‖ file ‖ 0x00 ‖ line as decimal ASCII), shaped as a
 * UUID version 8, so a re-run of the same job sends the same ids and the worker skips what it applied. */
void http_command_id_from_import(const char *job, size_t job_len, const char *file, size_t file_len,
                                 uint64_t line, uint8_t id[HTTP_COMMAND_ID_BYTES]);

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lower-case hex. */
void http_command_id_format(const uint8_t id[HTTP_COMMAND_ID_BYTES], char text[HTTP_COMMAND_ID_TEXT]);

/* Checks an Idempotency-Key header value: 1..255 bytes of visible ASCII. Returns 0, or -1 with errstr. */
int http_idempotency_key_check(const char *key, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
