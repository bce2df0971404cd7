/*
 * sha256: FIPS 180-4 SHA-256, for deriving command ids from Idempotency-Key
 * headers and for comparing API keys by digest. Not a general crypto
 * library: one-shot and streaming over bytes in memory, nothing else.
 */
#ifndef PROFILED_SHA256_H
#define PROFILED_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_BYTES 32

typedef struct sha256 {
    uint32_t state[8];
    uint64_t total; /* bytes hashed so far */
    uint8_t block[64];
    size_t used; /* bytes pending in block */
} sha256_t;

void sha256_init(sha256_t *sha);
void sha256_update(sha256_t *sha, const void *bytes, size_t len);
void sha256_final(sha256_t *sha, uint8_t digest[SHA256_DIGEST_BYTES]);

/* One shot: digest of bytes[0..len). */
void sha256(const void *bytes, size_t len, uint8_t digest[SHA256_DIGEST_BYTES]);

#endif
