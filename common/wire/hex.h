/*
 * hex: the one table of lower-case hex digits, for every hex text the
 * project writes (JSON \u00XX escapes, UUID text, bytea literals).
 */
#ifndef PROFILED_HEX_H
#define PROFILED_HEX_H

#include <stdint.h>

extern const char hex_lower[16];

/* Two lower-case hex digits of `byte` at out[0..2) (no NUL). */
static inline void hex_byte(char *out, uint8_t byte)
{
    out[0] = hex_lower[byte >> 4];
    out[1] = hex_lower[byte & 15];
}

#endif
