/*
 * json_write: msgpack to JSON text.
 *
 * The walk is iterative with an explicit frame per open container, so a
 * hostile depth limit cannot exhaust the C stack, and a failure can name the
 * path of the offending value from the frames. Output space is reserved per
 * item for its worst case (6 bytes per string byte, 32 per scalar) and then
 * written through a raw pointer: no capacity test per byte on the hot path.
 *
 * Doubles: the shortest digit string that reads back to the same double,
 * laid out as ECMAScript's Number::toString does (fixed notation for
 * exponents -7 < e < 21, else d.ddde+X), with ".0" added to integral fixed
 * results so that they read back as doubles, not as integers.
 */
#include "json_write.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "mp.h"
#include "utf8.h"
#include "xalloc.h"

/* Frames live on the C stack up to this depth; deeper limits allocate. */
#define JSON_WRITE_STACK_FRAMES 64
/* The longest scalar text: a double is at most 24 chars, an int 20, plus a separator. */
#define JSON_WRITE_SCALAR_MAX 32

typedef struct json_write_frame {
    bool is_map;
    bool want_key;      /* map: the next item is a key */
    uint32_t len;       /* entries (map) or elements (array) in all */
    uint32_t remaining; /* entries or elements not yet complete */
    const uint8_t *key; /* map: the key of the value being written */
    uint32_t key_len;
} json_write_frame_t;

/* 0: copy as is; otherwise the character after the backslash ('u' for \u00XX). */
static const char json_write_escape[256] = {
    ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r', ['"'] = '"',  ['\\'] = '\\',
    [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u', [0x05] = 'u', [0x06] = 'u',
    [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u', [0x0f] = 'u', [0x10] = 'u', [0x11] = 'u', [0x12] = 'u',
    [0x13] = 'u', [0x14] = 'u', [0x15] = 'u', [0x16] = 'u', [0x17] = 'u', [0x18] = 'u', [0x19] = 'u',
    [0x1a] = 'u', [0x1b] = 'u', [0x1c] = 'u', [0x1d] = 'u', [0x1e] = 'u', [0x1f] = 'u',
};

static const char json_write_digits2[201] = "00010203040506070809"
                                            "10111213141516171819"
                                            "20212223242526272829"
                                            "30313233343536373839"
                                            "40414243444546474849"
                                            "50515253545556575859"
                                            "60616263646566676869"
                                            "70717273747576777879"
                                            "80818283848586878889"
                                            "90919293949596979899";

/* Exact powers of ten: every 10^k with k <= 22 is a double without rounding. */
static const double json_write_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                            1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Room for n more bytes; the common case (room already there) stays inline. */
static inline uint8_t *json_write_room(buf_t *out, size_t n)
{
    if (out->cap - out->len < n)
        buf_reserve(out, n);
    return out->data + out->len;
}

/*
 * The one JSON string escaper: writes the escaped content of s[0..len) (no
 * quotes) at dst, which has room for 6 * len bytes, and returns the end.
 * Escapes as proto/README.md §3.2: '"' '\\' \b \t \n \f \r by name, the
 * other bytes below 0x20 as \u00XX. Then by policy:
 * - JSON_ESCAPE_STRICT (data): validates UTF-8 in the same pass and returns
 *   NULL at the first invalid sequence; 0x7f and non-ASCII are copied. U+0000
 *   is escaped and reported in *has_nul rather than stopping the pass, so
 *   that a string with both faults is reported as invalid UTF-8 wherever they
 *   are (proto/README.md §5).
 * - JSON_ESCAPE_LOSSY (logs, error bodies: text that must come out whatever
 *   it holds): each byte that does not start a valid UTF-8 sequence becomes
 *   \ufffd, and 0x7f (DEL) is escaped as \u007f so that no control byte
 *   reaches a terminal. Never fails.
 * Inline, with the policy a constant at each call, so the strict hot path
 * keeps its word-at-a-time scan and carries no lossy branches.
 */
static inline __attribute__((always_inline)) uint8_t *
json_escape_content(uint8_t *dst, const uint8_t *s, size_t len, json_escape_policy_t policy, bool *has_nul)
{
    size_t i = 0;
    while (i < len) {
        /* Eight bytes at a time while all are plain ASCII that needs no
         * escape: none below 0x20 (the has-less-than trick), no '"', no
         * '\\', no high bit (the last term). Lossy text is short: it skips
         * this (0x7f would pass it). */
        while (policy == JSON_ESCAPE_STRICT && i + 8 <= len) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            uint64_t q = x ^ 0x2222222222222222ULL, b = x ^ 0x5c5c5c5c5c5c5c5cULL;
            uint64_t hits = (x - 0x2020202020202020ULL) | ((q - 0x0101010101010101ULL) & ~q) |
                            ((b - 0x0101010101010101ULL) & ~b) | x;
            if (hits & 0x8080808080808080ULL)
                break;
            memcpy(dst, &x, 8);
            dst += 8;
            i += 8;
        }
        size_t stop = i + 8 < len ? i + 8 : len;
        while (i < stop) {
            uint8_t c = s[i];
            if (c >= 0x80) {
                size_t seq = utf8_sequence_len(s + i, len - i);
                if (seq == 0) {
                    if (policy == JSON_ESCAPE_STRICT)
                        return NULL;
                    memcpy(dst, "\\ufffd", 6);
                    dst += 6;
                    i++;
                    continue;
                }
                memcpy(dst, s + i, seq);
                dst += seq;
                i += seq;
                continue;
            }
            char e = json_write_escape[c];
            if (policy == JSON_ESCAPE_LOSSY && c == 0x7f)
                e = 'u';
            if (!e) {
                *dst++ = c;
            } else if (e != 'u') {
                *dst++ = '\\';
                *dst++ = (uint8_t)e;
            } else {
                *has_nul |= c == 0;
                memcpy(dst, "\\u00", 4);
                hex_byte((char *)dst + 4, c);
                dst += 6;
            }
            i++;
        }
    }
    return dst;
}

/* Strict, quoted: NULL at invalid UTF-8 (see json_escape_content). */
static uint8_t *json_write_quoted(uint8_t *dst, const uint8_t *s, size_t len, bool *has_nul)
{
    *dst++ = '"';
    dst = json_escape_content(dst, s, len, JSON_ESCAPE_STRICT, has_nul);
    if (!dst)
        return NULL;
    *dst++ = '"';
    return dst;
}

size_t json_escape(char *dst, const char *s, size_t len, json_escape_policy_t policy)
{
    bool has_nul = false;
    uint8_t *end =
        policy == JSON_ESCAPE_STRICT
            ? json_escape_content((uint8_t *)dst, (const uint8_t *)s, len, JSON_ESCAPE_STRICT, &has_nul)
            : json_escape_content((uint8_t *)dst, (const uint8_t *)s, len, JSON_ESCAPE_LOSSY, &has_nul);
    assert(end != NULL); /* strict: the caller vouched for valid UTF-8 */
    return (size_t)(end - (uint8_t *)dst);
}

void json_write_string(buf_t *out, const char *s, size_t len)
{
    bool has_nul = false;
    uint8_t *end = json_write_quoted(json_write_room(out, 6 * len + 2), (const uint8_t *)s, len, &has_nul);
    assert(end != NULL); /* the caller vouched for valid UTF-8 */
    out->len = (size_t)(end - out->data);
}

/* Decimal digits of v at dst; returns the count. */
static size_t json_write_u64_digits(char *dst, uint64_t v)
{
    char tmp[20];
    char *p = tmp + sizeof(tmp);
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, json_write_digits2 + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, json_write_digits2 + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    size_t n = (size_t)(tmp + sizeof(tmp) - p);
    memcpy(dst, p, n);
    return n;
}

/* Drops trailing zeros from a digit string, keeping at least one digit. */
static size_t json_write_strip(const char *digits, size_t len)
{
    while (len > 1 && digits[len - 1] == '0')
        len--;
    return len;
}

/*
 * The first `prec` digits of the 17-digit decimal d17 (point position
 * point17), truncated, or plus one unit in the last place with `up`: if they
 * read back as ax, stores them in digits/point and returns true.
 */
static bool json_write_round_try(double ax, const char *d17, int point17, int prec, bool up, char *digits,
                                 int *point)
{
    char d[17];
    int n = point17;
    memcpy(d, d17, (size_t)prec);
    if (up) {
        int i = prec - 1;
        while (i >= 0 && d[i] == '9')
            d[i--] = '0';
        if (i >= 0) {
            d[i]++;
        } else { /* 99..9 rounds up to 100..0: one more integer digit */
            d[0] = '1';
            n++;
        }
    }
    /* "0.<digits>e<n>" for strtod. */
    char text[48];
    size_t t = 0;
    text[t++] = '0';
    text[t++] = '.';
    memcpy(text + t, d, (size_t)prec);
    t += (size_t)prec;
    text[t++] = 'e';
    if (n < 0)
        text[t++] = '-';
    t += json_write_u64_digits(text + t, (uint64_t)(n < 0 ? -n : n));
    text[t] = '\0';
    if (strtod(text, NULL) != ax)
        return false;
    memcpy(digits, d, (size_t)prec);
    *point = n;
    return true;
}

/*
 * The shortest decimal digits d1..dk (no leading or trailing zeros) and the
 * point position n such that 0.d1..dk * 10^n reads back as ax (finite, > 0).
 *
 * Fast path (most real-world doubles): if m / 10^k == ax for an integer m
 * below 2^53 and k <= 22, then the decimal m * 10^-k reads back as ax,
 * because m and 10^k are exact doubles and IEEE division rounds correctly,
 * just as strtod does. Trying k = 0, 1, 2, ... finds the fewest digits.
 * Otherwise one printf of 17 correctly rounded digits (which always read
 * back), and its roundings to 15 and then 16 digits, keeping the first that
 * strtod reads back. For a normal double whose shortest form has at most 15
 * digits, the nearest 15-digit decimal is that form (a double's ulp is under
 * a quarter of the 15-digit spacing), so nothing shorter is missed.
 * Subnormals have fewer bits of precision, so for them every precision from
 * 1 up is tried (5e-324 must stay 5e-324).
 */
static size_t json_write_shortest(double ax, char *digits, int *point)
{
    if (ax < 9007199254740992.0) { /* 2^53 */
        for (int k = 0; k <= 22; k++) {
            double scaled = ax * json_write_pow10[k];
            if (scaled >= 4503599627370496.0) /* 2^52: keep m's rounding exact */
                break;
            uint64_t m = (uint64_t)(scaled + 0.5);
            if (m == 0 || (double)m / json_write_pow10[k] != ax)
                continue;
            size_t len = json_write_u64_digits(digits, m);
            *point = (int)len - k;
            return json_write_strip(digits, len);
        }
    }

    char tmp[40];
    size_t len = 0;
    if (ax < DBL_MIN) {
        /* Subnormals: rare, so the plain search over every precision. */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, ax);
            if (prec == 17 || strtod(tmp, NULL) == ax)
                break;
        }
        const char *p = tmp;
        for (; *p != 'e'; p++)
            if (*p != '.')
                digits[len++] = *p;
        *point = atoi(p + 1) + 1;
    } else {
        /* One correctly rounded 17-digit printf, then its 15- and 16-digit
         * roundings checked by strtod. */
        char d17[17];
        snprintf(tmp, sizeof(tmp), "%.16e", ax); /* "d.dddddddddddddddde[+-]X" */
        d17[0] = tmp[0];
        memcpy(d17 + 1, tmp + 2, 16);
        int point17 = atoi(tmp + 19) + 1;
        /* At a power of two the interval of decimals that read back is
         * twice as wide above as below, so the nearest decimal may miss
         * while the one above reads back. */
        uint64_t bits;
        memcpy(&bits, &ax, sizeof(bits));
        bool power_of_two = (bits & 0xfffffffffffffULL) == 0;
        for (int prec = 15; prec <= 16; prec++) {
            bool rounded_up = d17[prec] >= '5';
            if (json_write_round_try(ax, d17, point17, prec, rounded_up, digits, point))
                return json_write_strip(digits, (size_t)prec);
            /* A dropped tail of exactly 5 or 50 hides whether the exact
             * value lay above or below the midpoint: try the other way. */
            bool tie = d17[prec] == '5' && (prec == 16 || d17[16] == '0');
            if ((tie || (power_of_two && !rounded_up)) &&
                json_write_round_try(ax, d17, point17, prec, !rounded_up, digits, point))
                return json_write_strip(digits, (size_t)prec);
        }
        memcpy(digits, d17, 17);
        len = 17;
        *point = point17;
    }
    return json_write_strip(digits, len);
}

/* Formats a finite double at dst (room for JSON_WRITE_SCALAR_MAX); returns the length. */
static size_t json_write_double_text(char *dst, double value)
{
    char *p = dst;
    if (signbit(value))
        *p++ = '-';
    double ax = fabs(value);
    if (ax == 0) {
        memcpy(p, "0.0", 3);
        return (size_t)(p + 3 - dst);
    }
    char digits[24];
    int n;
    int k = (int)json_write_shortest(ax, digits, &n);

    if (k <= n && n <= 21) {
        /* Integral: digits, zeros, ".0". */
        memcpy(p, digits, (size_t)k);
        p += k;
        memset(p, '0', (size_t)(n - k));
        p += n - k;
        memcpy(p, ".0", 2);
        p += 2;
    } else if (0 < n && n <= 21) {
        memcpy(p, digits, (size_t)n);
        p += n;
        *p++ = '.';
        memcpy(p, digits + n, (size_t)(k - n));
        p += k - n;
    } else if (-6 < n && n <= 0) {
        *p++ = '0';
        *p++ = '.';
        memset(p, '0', (size_t)-n);
        p += -n;
        memcpy(p, digits, (size_t)k);
        p += k;
    } else {
        *p++ = digits[0];
        if (k > 1) {
            *p++ = '.';
            memcpy(p, digits + 1, (size_t)(k - 1));
            p += k - 1;
        }
        *p++ = 'e';
        int e = n - 1;
        *p++ = e < 0 ? '-' : '+';
        p += json_write_u64_digits(p, (uint64_t)(e < 0 ? -e : e));
    }
    return (size_t)(p - dst);
}

void json_write_double(buf_t *out, double value)
{
    assert(isfinite(value));
    buf_reserve(out, JSON_WRITE_SCALAR_MAX);
    out->len += json_write_double_text((char *)out->data + out->len, value);
}

/* Appends `s` for a message, keeping valid UTF-8 and printable ASCII and
 * replacing anything else with '?', so a hostile key cannot smuggle control
 * bytes or broken UTF-8 into logs and DLQ headers. Truncates long keys. */
static size_t json_write_path_part(char *dst, size_t room, const uint8_t *s, size_t len)
{
    size_t used = 0, i = 0, shown = len > 48 ? 48 : len;
    while (i < shown) {
        size_t seq = s[i] < 0x80 ? 1 : utf8_sequence_len(s + i, len - i);
        if (seq <= 1) {
            if (used + 1 >= room)
                break;
            dst[used++] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
            i++;
            continue;
        }
        if (used + seq >= room)
            break;
        memcpy(dst + used, s + i, seq);
        used += seq;
        i += seq;
    }
    if (shown < len && used + 3 < room) {
        memcpy(dst + used, "...", 3);
        used += 3;
    }
    return used;
}

static int json_write_fail(codec_failure_t *failure, codec_error_t code, const char *path,
                           const json_write_frame_t *frames, uint32_t depth, const char *what)
{
    char where[160];
    size_t used = 0;
    size_t plen = strlen(path);
    if (plen > 40)
        plen = 40;
    memcpy(where, path, plen);
    used = plen;
    for (uint32_t i = 0; i < depth && used + 16 < sizeof(where); i++) {
        const json_write_frame_t *f = &frames[i];
        if (f->is_map) {
            if (f->want_key)
                break; /* the failure is in a key of this map: the path ends at the map */
            where[used++] = '.';
            used += json_write_path_part(where + used, sizeof(where) - used, f->key, f->key_len);
        } else {
            used += (size_t)snprintf(where + used, sizeof(where) - used, "[%u]", f->len - f->remaining);
        }
    }
    where[used < sizeof(where) ? used : sizeof(where) - 1] = '\0';
    failure->code = code;
    snprintf(failure->message, sizeof(failure->message), "%s: %s", where, what);
    return -1;
}

int json_write_value(const uint8_t *bytes, size_t len, const limits_t *limits, const char *path,
                     size_t *consumed, buf_t *out, codec_failure_t *failure)
{
    json_write_frame_t stack_frames[JSON_WRITE_STACK_FRAMES];
    json_write_frame_t *frames = stack_frames;
    json_write_frame_t *heap_frames = NULL;
    uint32_t depth = 0;
    size_t pos = 0;
    size_t start_len = out->len;
    int rc = -1;
    char what[96];

    /* Every open container took at least one input byte, so the depth never
     * exceeds len: a huge configured limit costs nothing on small input. */
    size_t max_frames = limits->max_depth < len ? limits->max_depth : len;
    if (max_frames > JSON_WRITE_STACK_FRAMES) {
        heap_frames = xmalloc(max_frames * sizeof(*heap_frames), "JSON writer frames");
        frames = heap_frames;
    }

    for (;;) {
        mp_item_t item = {0};
        if (mp_read(bytes + pos, len - pos, &item) != 0) {
            json_write_fail(failure, CODEC_ERR_MALFORMED, path, frames, depth,
                            "truncated or malformed msgpack");
            goto cleanup;
        }
        json_write_frame_t *top = depth ? &frames[depth - 1] : NULL;
        bool separator = top && top->remaining < top->len && (!top->is_map || top->want_key);

        if (top && top->is_map && top->want_key) {
            if (item.type != MP_STR) {
                snprintf(what, sizeof(what), "map key is not a str (got %s)", mp_type_name(item.type));
                json_write_fail(failure, CODEC_ERR_NON_STRING_KEY, path, frames, depth, what);
                goto cleanup;
            }
            if (item.len > limits->max_key_bytes) {
                snprintf(what, sizeof(what), "key of %u bytes, over the limit of %u", item.len,
                         limits->max_key_bytes);
                json_write_fail(failure, CODEC_ERR_LIMIT, path, frames, depth, what);
                goto cleanup;
            }
            bool has_nul = false;
            uint8_t *dst = json_write_room(out, 6 * (size_t)item.len + 4);
            if (separator)
                *dst++ = ',';
            dst = json_write_quoted(dst, item.data, item.len, &has_nul);
            if (!dst) {
                json_write_fail(failure, CODEC_ERR_INVALID_UTF8, path, frames, depth,
                                "key is not valid UTF-8");
                goto cleanup;
            }
            if (has_nul) {
                json_write_fail(failure, CODEC_ERR_NUL_IN_STRING, path, frames, depth, "key contains U+0000");
                goto cleanup;
            }
            *dst++ = ':';
            out->len = (size_t)(dst - out->data);
            top->key = item.data;
            top->key_len = item.len;
            top->want_key = false;
            pos += item.size;
            continue;
        }

        bool value_done = true;
        switch (item.type) {
        case MP_NIL:
        case MP_BOOL:
        case MP_UINT:
        case MP_INT:
        case MP_FLOAT32:
        case MP_FLOAT64: {
            if ((item.type == MP_FLOAT32 || item.type == MP_FLOAT64) && !isfinite(item.v.f64)) {
                json_write_fail(failure, CODEC_ERR_NON_FINITE_NUMBER, path, frames, depth,
                                "NaN or infinity has no JSON form");
                goto cleanup;
            }
            char *dst = (char *)json_write_room(out, JSON_WRITE_SCALAR_MAX);
            if (separator)
                *dst++ = ',';
            if (item.type == MP_NIL) {
                memcpy(dst, "null", 4);
                dst += 4;
            } else if (item.type == MP_BOOL) {
                memcpy(dst, item.v.b ? "true" : "false", item.v.b ? 4 : 5);
                dst += item.v.b ? 4 : 5;
            } else if (item.type == MP_UINT) {
                dst += json_write_u64_digits(dst, item.v.u64);
            } else if (item.type == MP_INT) {
                *dst++ = '-';
                /* Negate in unsigned arithmetic: INT64_MIN has no positive twin. */
                dst += json_write_u64_digits(dst, 0 - (uint64_t)item.v.i64);
            } else {
                dst += json_write_double_text(dst, item.v.f64);
            }
            out->len = (size_t)((uint8_t *)dst - out->data);
            break;
        }
        case MP_STR: {
            if (item.len > limits->max_string_bytes) {
                snprintf(what, sizeof(what), "string of %u bytes, over the limit of %u", item.len,
                         limits->max_string_bytes);
                json_write_fail(failure, CODEC_ERR_LIMIT, path, frames, depth, what);
                goto cleanup;
            }
            bool has_nul = false;
            uint8_t *dst = json_write_room(out, 6 * (size_t)item.len + 3);
            if (separator)
                *dst++ = ',';
            dst = json_write_quoted(dst, item.data, item.len, &has_nul);
            if (!dst) {
                json_write_fail(failure, CODEC_ERR_INVALID_UTF8, path, frames, depth,
                                "string is not valid UTF-8");
                goto cleanup;
            }
            if (has_nul) {
                json_write_fail(failure, CODEC_ERR_NUL_IN_STRING, path, frames, depth,
                                "string contains U+0000, which jsonb cannot store");
                goto cleanup;
            }
            out->len = (size_t)(dst - out->data);
            break;
        }
        case MP_BIN:
        case MP_EXT:
            snprintf(what, sizeof(what), "%s values have no JSON form", mp_type_name(item.type));
            json_write_fail(failure, CODEC_ERR_UNSUPPORTED_TYPE, path, frames, depth, what);
            goto cleanup;
        case MP_ARRAY:
        case MP_MAP: {
            bool is_map = item.type == MP_MAP;
            if (depth + 1 > limits->max_depth) {
                snprintf(what, sizeof(what), "nesting deeper than the limit of %u", limits->max_depth);
                json_write_fail(failure, CODEC_ERR_LIMIT, path, frames, depth, what);
                goto cleanup;
            }
            if (item.len > limits->max_keys) {
                snprintf(what, sizeof(what), "%s of %u %s, over the limit of %u", is_map ? "map" : "array",
                         item.len, is_map ? "entries" : "elements", limits->max_keys);
                json_write_fail(failure, CODEC_ERR_LIMIT, path, frames, depth, what);
                goto cleanup;
            }
            json_write_room(out, 3);
            if (separator)
                out->data[out->len++] = ',';
            if (item.len == 0) {
                out->data[out->len++] = is_map ? '{' : '[';
                out->data[out->len++] = is_map ? '}' : ']';
                break;
            }
            out->data[out->len++] = is_map ? '{' : '[';
            frames[depth++] = (json_write_frame_t){
                .is_map = is_map,
                .want_key = is_map,
                .len = item.len,
                .remaining = item.len,
            };
            value_done = false;
            break;
        }
        }
        pos += item.size;

        /* A finished value completes an entry of its parent, which may
         * complete the parent in turn. */
        while (value_done && depth > 0) {
            json_write_frame_t *f = &frames[depth - 1];
            f->remaining--;
            f->want_key = f->is_map;
            if (f->remaining > 0)
                break;
            buf_append_byte(out, f->is_map ? '}' : ']');
            depth--;
        }
        if (value_done && depth == 0)
            break;
    }

    *consumed = pos;
    rc = 0;

cleanup:
    if (rc != 0)
        out->len = start_len;
    free(heap_frames);
    return rc;
}
