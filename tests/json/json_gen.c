#include "json_gen.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

uint64_t gen_next(gen_rng_t *rng)
{
    /* splitmix64: tiny, and good enough to drive a generator. */
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint32_t gen_below(gen_rng_t *rng, uint32_t n)
{
    return (uint32_t)(gen_next(rng) % n);
}

static void gen_space(gen_rng_t *rng, buf_t *out)
{
    static const char spaces[] = " \t\n\r";
    if (gen_below(rng, 6) == 0) {
        uint32_t n = 1 + gen_below(rng, 3);
        for (uint32_t i = 0; i < n; i++)
            buf_append_byte(out, (uint8_t)spaces[gen_below(rng, 4)]);
    }
}

static void gen_utf8(buf_t *out, uint32_t cp)
{
    if (cp < 0x80) {
        buf_append_byte(out, (uint8_t)cp);
    } else if (cp < 0x800) {
        buf_append_byte(out, (uint8_t)(0xC0 | cp >> 6));
        buf_append_byte(out, (uint8_t)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        buf_append_byte(out, (uint8_t)(0xE0 | cp >> 12));
        buf_append_byte(out, (uint8_t)(0x80 | (cp >> 6 & 0x3F)));
        buf_append_byte(out, (uint8_t)(0x80 | (cp & 0x3F)));
    } else {
        buf_append_byte(out, (uint8_t)(0xF0 | cp >> 18));
        buf_append_byte(out, (uint8_t)(0x80 | (cp >> 12 & 0x3F)));
        buf_append_byte(out, (uint8_t)(0x80 | (cp >> 6 & 0x3F)));
        buf_append_byte(out, (uint8_t)(0x80 | (cp & 0x3F)));
    }
}

/* A code point that is not a surrogate and not U+0000. */
static uint32_t gen_code_point(gen_rng_t *rng)
{
    switch (gen_below(rng, 4)) {
    case 0:
        return 1 + gen_below(rng, 0x7F);
    case 1:
        return 0x80 + gen_below(rng, 0x800 - 0x80);
    case 2: {
        uint32_t cp = 0x800 + gen_below(rng, 0x10000 - 0x800);
        return cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp;
    }
    default:
        return 0x10000 + gen_below(rng, 0x110000 - 0x10000);
    }
}

static void gen_string_body(gen_rng_t *rng, buf_t *out, uint32_t max_len)
{
    static const char *escapes[] = {"\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"};
    uint32_t n = gen_below(rng, max_len + 1);
    buf_append_byte(out, '"');
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pick = gen_below(rng, 20);
        if (pick < 12) {
            buf_append_byte(out,
                            (uint8_t)("abcdefghijklmnopqrstuvwxyz ABC-_.:@0123456789"[gen_below(rng, 45)]));
        } else if (pick < 14) {
            buf_append_str(out, escapes[gen_below(rng, 8)]);
        } else if (pick < 16) {
            uint32_t cp = gen_code_point(rng);
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                buf_appendf(out, "\\u%04X\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else {
                buf_appendf(out, gen_below(rng, 2) ? "\\u%04x" : "\\u%04X", cp);
            }
        } else if (pick < 19) {
            gen_utf8(out, gen_code_point(rng));
        } else {
            /* Rarely, something invalid that a mutation would seldom make. */
            static const char *bad[] = {"\\ud800",      "\\udc00",  "\\ud800\\u0041",   "\\u0000", "\x01",
                                        "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\\x",     "\x7f"};
            if (gen_below(rng, 8) == 0)
                buf_append_str(out, bad[gen_below(rng, 10)]);
            else
                buf_append_str(out, "\\u00e9");
        }
    }
    buf_append_byte(out, '"');
}

static void gen_number(gen_rng_t *rng, buf_t *out)
{
    static const char *edges[] = {
        "0",
        "-0",
        "-0.0",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",  /* past int64: a documented difference */
        "18446744073709551615", /* uint64 max: likewise */
        "18446744073709551616",
        "-9223372036854775809",
        "1e308",
        "1.7976931348623157e308",
        "1e309", /* overflows a double: both reject */
        "4.9e-324",
        "1e-400",
        "0.1",
        "123456789012345678901234567890",
        "9007199254740993",
        "2.5E+3",
        "1E-7",
    };
    uint32_t pick = gen_below(rng, 10);
    if (pick < 4) {
        buf_appendf(out, "%d", (int)gen_below(rng, 2001) - 1000);
    } else if (pick < 5) {
        buf_append_str(out, edges[gen_below(rng, sizeof(edges) / sizeof(edges[0]))]);
    } else {
        if (gen_below(rng, 3) == 0)
            buf_append_byte(out, '-');
        uint32_t digits = 1 + gen_below(rng, 22);
        buf_append_byte(out, (uint8_t)('1' + gen_below(rng, 9)));
        for (uint32_t i = 1; i < digits; i++)
            buf_append_byte(out, (uint8_t)('0' + gen_below(rng, 10)));
        if (gen_below(rng, 2)) {
            buf_append_byte(out, '.');
            uint32_t frac = 1 + gen_below(rng, 20);
            for (uint32_t i = 0; i < frac; i++)
                buf_append_byte(out, (uint8_t)('0' + gen_below(rng, 10)));
        }
        if (gen_below(rng, 3) == 0) {
            buf_append_byte(out, gen_below(rng, 2) ? 'e' : 'E');
            uint32_t sign = gen_below(rng, 3);
            if (sign)
                buf_append_byte(out, sign == 1 ? '+' : '-');
            buf_appendf(out, "%u", gen_below(rng, 2) ? gen_below(rng, 30) : gen_below(rng, 400));
        }
    }
}

/* Few keys, so that objects often repeat one; "é" is spelled three ways. */
static void gen_key(gen_rng_t *rng, buf_t *out)
{
    static const char *keys[] = {"\"a\"",   "\"b\"",        "\"c\"",       "\"k1\"",
                                 "\"\"",    "\"\xc3\xa9\"", "\"\\u00e9\"", "\"\\u00E9\"",
                                 "\"a b\"", "\"profilex\"", "\"tags\""};
    if (gen_below(rng, 5) == 0)
        gen_string_body(rng, out, 12);
    else
        buf_append_str(out, keys[gen_below(rng, sizeof(keys) / sizeof(keys[0]))]);
}

void gen_object(gen_rng_t *rng, buf_t *out, int max_depth)
{
    uint32_t n = gen_below(rng, 2) ? gen_below(rng, 6) : gen_below(rng, 24);
    buf_append_byte(out, '{');
    gen_space(rng, out);
    for (uint32_t i = 0; i < n; i++) {
        if (i) {
            buf_append_byte(out, ',');
            gen_space(rng, out);
        }
        gen_key(rng, out);
        gen_space(rng, out);
        buf_append_byte(out, ':');
        gen_space(rng, out);
        gen_value(rng, out, max_depth - 1);
        gen_space(rng, out);
    }
    buf_append_byte(out, '}');
}

void gen_value(gen_rng_t *rng, buf_t *out, int max_depth)
{
    uint32_t pick = gen_below(rng, max_depth > 0 ? 10 : 7);
    switch (pick) {
    case 0:
        buf_append_str(out, gen_below(rng, 2) ? "true" : "false");
        break;
    case 1:
        buf_append_str(out, "null");
        break;
    case 2:
    case 3:
        gen_number(rng, out);
        break;
    case 4:
    case 5:
    case 6:
        gen_string_body(rng, out, gen_below(rng, 8) ? 12 : 300);
        break;
    case 7:
    case 8:
        gen_object(rng, out, max_depth);
        break;
    default: {
        uint32_t n = gen_below(rng, 4) ? gen_below(rng, 6) : gen_below(rng, 40);
        buf_append_byte(out, '[');
        gen_space(rng, out);
        for (uint32_t i = 0; i < n; i++) {
            if (i) {
                buf_append_byte(out, ',');
                gen_space(rng, out);
            }
            gen_value(rng, out, max_depth - 1);
            gen_space(rng, out);
        }
        buf_append_byte(out, ']');
        break;
    }
    }
}

void gen_mutate(gen_rng_t *rng, buf_t *text)
{
    static const uint8_t interesting[] = {',', ':',  '[',  ']',  '{',  '}',  '"', '\\', '0',
                                          '1', '-',  '+',  '.',  'e',  'E',  'u', ' ',  0,
                                          1,   0x1F, 0x7F, 0x80, 0xC3, 0xED, 0xFF};
    uint32_t rounds = 1 + gen_below(rng, 3);
    for (uint32_t r = 0; r < rounds; r++) {
        if (text->len == 0) {
            buf_append_byte(text, interesting[gen_below(rng, sizeof(interesting))]);
            continue;
        }
        uint32_t at = gen_below(rng, (uint32_t)text->len);
        uint8_t byte =
            gen_below(rng, 4) ? interesting[gen_below(rng, sizeof(interesting))] : (uint8_t)gen_next(rng);
        switch (gen_below(rng, 5)) {
        case 0: /* overwrite */
            text->data[at] = byte;
            break;
        case 1: /* insert */
            buf_append_byte(text, 0);
            memmove(text->data + at + 1, text->data + at, text->len - at - 1);
            text->data[at] = byte;
            break;
        case 2: /* delete */
            memmove(text->data + at, text->data + at + 1, text->len - at - 1);
            text->len--;
            break;
        case 3: /* truncate */
            text->len = at;
            break;
        default: { /* duplicate a slice in place */
            uint32_t n = 1 + gen_below(rng, 8);
            if (at + n > text->len)
                n = (uint32_t)text->len - at;
            buf_reserve(text, n);
            memmove(text->data + at + n, text->data + at, text->len - at);
            text->len += n;
            break;
        }
        }
    }
}

bool gen_equal(const msgpack_object *mp, const json_t *js, char *why, size_t why_size)
{
    switch (mp->type) {
    case MSGPACK_OBJECT_NIL:
        if (json_is_null(js))
            return true;
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        if (json_is_boolean(js) && mp->via.boolean == json_is_true(js))
            return true;
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (json_is_integer(js) && mp->via.u64 <= INT64_MAX &&
            (json_int_t)mp->via.u64 == json_integer_value(js))
            return true;
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        if (json_is_integer(js) && mp->via.i64 == json_integer_value(js))
            return true;
        break;
    case MSGPACK_OBJECT_FLOAT64:
        if (json_is_real(js) && mp->via.f64 == json_real_value(js) &&
            signbit(mp->via.f64) == signbit(json_real_value(js)))
            return true;
        break;
    case MSGPACK_OBJECT_STR:
        if (json_is_string(js) && json_string_length(js) == mp->via.str.size &&
            (mp->via.str.size == 0 || memcmp(json_string_value(js), mp->via.str.ptr, mp->via.str.size) == 0))
            return true;
        break;
    case MSGPACK_OBJECT_ARRAY:
        if (!json_is_array(js) || json_array_size(js) != mp->via.array.size)
            break;
        for (uint32_t i = 0; i < mp->via.array.size; i++)
            if (!gen_equal(&mp->via.array.ptr[i], json_array_get(js, i), why, why_size))
                return false;
        return true;
    case MSGPACK_OBJECT_MAP:
        if (!json_is_object(js) || json_object_size(js) != mp->via.map.size)
            break;
        for (uint32_t i = 0; i < mp->via.map.size; i++) {
            const msgpack_object_kv *kv = &mp->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                snprintf(why, why_size, "map key of msgpack type %d", kv->key.type);
                return false;
            }
            /* msgpack-c leaves ptr NULL for an empty str */
            const char *key = kv->key.via.str.size ? kv->key.via.str.ptr : "";
            json_t *member = json_object_getn(js, key, kv->key.via.str.size);
            if (!member) {
                snprintf(why, why_size, "key \"%.*s\" not in jansson's object", (int)kv->key.via.str.size,
                         kv->key.via.str.ptr);
                return false;
            }
            if (!gen_equal(&kv->val, member, why, why_size))
                return false;
        }
        return true;
    default:
        break;
    }
    snprintf(why, why_size, "msgpack type %d differs from jansson type %d", mp->type, json_typeof(js));
    return false;
}
