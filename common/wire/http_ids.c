#include "http_ids.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "hex.h"
#include "sha256.h"

/* Sets the UUID version nibble and the RFC 9562 variant bits. */
static void http_uuid_shape(uint8_t id[HTTP_COMMAND_ID_BYTES], unsigned version)
{
    id[6] = (uint8_t)((id[6] & 0x0f) | (version << 4));
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
}

/* Random bytes are drawn from the kernel a page of ids at a time: one getrandom(2) per 256 ids
 * instead of one per PUT. The pool is per thread, so loop threads never share or lock it. */
#define HTTP_RANDOM_POOL (256 * HTTP_COMMAND_ID_BYTES)
static __thread uint8_t http_random_pool[HTTP_RANDOM_POOL];
static __thread size_t http_random_left;

int http_command_id_random(uint8_t id[HTTP_COMMAND_ID_BYTES])
{
    if (http_random_left < HTTP_COMMAND_ID_BYTES) {
        size_t got = 0;
        while (got < HTTP_RANDOM_POOL) {
            ssize_t n = getrandom(http_random_pool + got, HTTP_RANDOM_POOL - got, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            got += (size_t)n;
        }
        http_random_left = HTTP_RANDOM_POOL;
    }
    uint8_t *take = http_random_pool + HTTP_RANDOM_POOL - http_random_left;
    memcpy(id, take, HTTP_COMMAND_ID_BYTES);
    memset(take, 0, HTTP_COMMAND_ID_BYTES); /* an id is used once; do not keep it around */
    http_random_left -= HTTP_COMMAND_ID_BYTES;
    http_uuid_shape(id, 4);
    return 0;
}

void http_command_id_from_key(const char *key, size_t key_len, const char *recipient_id,
                              size_t recipient_id_len, uint8_t id[HTTP_COMMAND_ID_BYTES])
{
    static const uint8_t separator = 0;
    uint8_t digest[SHA256_DIGEST_BYTES];
    sha256_t sha;
    sha256_init(&sha);
    sha256_update(&sha, key, key_len);
    sha256_update(&sha, &separator, 1);
    sha256_update(&sha, recipient_id, recipient_id_len);
    sha256_final(&sha, digest);
    memcpy(id, digest, HTTP_COMMAND_ID_BYTES);
    http_uuid_shape(id, 8);
}

void http_command_id_from_import(const char *job, size_t job_len, const char *file, size_t file_len,
                                 uint64_t line, uint8_t id[HTTP_COMMAND_ID_BYTES])
{
    static const char domain[] = "profiled-import";
    static const uint8_t separator = 0;
    char number[24];
    int number_len = snprintf(number, sizeof(number), "%" PRIu64, line);
    uint8_t digest[SHA256_DIGEST_BYTES];
    sha256_t sha;
    sha256_init(&sha);
    sha256_update(&sha, domain, sizeof(domain) - 1);
    sha256_update(&sha, &separator, 1);
    sha256_update(&sha, job, job_len);
    sha256_update(&sha, &separator, 1);
    sha256_update(&sha, file, file_len);
    sha256_update(&sha, &separator, 1);
    sha256_update(&sha, number, (size_t)number_len);
    sha256_final(&sha, digest);
    memcpy(id, digest, HTTP_COMMAND_ID_BYTES);
    http_uuid_shape(id, 8);
}

void http_command_id_format(const uint8_t id[HTTP_COMMAND_ID_BYTES], char text[HTTP_COMMAND_ID_TEXT])
{
    size_t out = 0;
    for (int i = 0; i < HTTP_COMMAND_ID_BYTES; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            text[out++] = '-';
        hex_byte(text + out, id[i]);
        out += 2;
    }
    text[out] = '\0';
}

int http_idempotency_key_check(const char *key, char *errstr, size_t errstr_size)
{
    size_t len = strlen(key);
    if (len == 0 || len > HTTP_IDEMPOTENCY_KEY_MAX) {
        snprintf(errstr, errstr_size, "Idempotency-Key header must be 1 to %d characters",
                 HTTP_IDEMPOTENCY_KEY_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x20 || c >= 0x7f) {
            snprintf(errstr, errstr_size, "Idempotency-Key header must be printable ASCII");
            return -1;
        }
    }
    return 0;
}
