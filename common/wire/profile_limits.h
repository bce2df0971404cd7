/*
 * profile_limits: the bounds every profile obeys, on the HTTP path (transcoder) and on
 * the Kafka path (command decoder), so that a command the api accepts is one
 * the worker accepts. Defaults here; the binaries may lower or raise them by
 * configuration (PROFILED_MAX_*, runtime/cfg_shared.h, the same in every
 * binary), and the proto spec documents the defaults.
 */
#ifndef PROFILED_PROFILE_LIMITS_H
#define PROFILED_PROFILE_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#define LIMITS_DEFAULT_MAX_BODY_BYTES   (256 * 1024)
#define LIMITS_DEFAULT_MAX_DEPTH        32  /* nesting of objects/arrays inside the profile */
#define LIMITS_DEFAULT_MAX_KEY_BYTES    256 /* one object key, in bytes of UTF-8 */
#define LIMITS_DEFAULT_MAX_STRING_BYTES (64 * 1024)
#define LIMITS_DEFAULT_MAX_KEYS         1000 /* entries of one object, and elements of one array */
#define LIMITS_MAX_RECIPIENT_ID_BYTES   256

typedef struct profile_limits {
    size_t max_body_bytes;
    uint32_t max_depth;
    uint32_t max_key_bytes;
    uint32_t max_string_bytes;
    uint32_t max_keys;
} profile_limits_t;

/* The older name, used throughout; both name the one type. */
typedef profile_limits_t limits_t;

static inline limits_t limits_default(void)
{
    limits_t limits = {
        .max_body_bytes = LIMITS_DEFAULT_MAX_BODY_BYTES,
        .max_depth = LIMITS_DEFAULT_MAX_DEPTH,
        .max_key_bytes = LIMITS_DEFAULT_MAX_KEY_BYTES,
        .max_string_bytes = LIMITS_DEFAULT_MAX_STRING_BYTES,
        .max_keys = LIMITS_DEFAULT_MAX_KEYS,
    };
    return limits;
}

#endif
