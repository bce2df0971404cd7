/*
 * json_transcode: JSON text to canonical msgpack in one pass over the input.
 *
 * Design, and why:
 * - Output goes straight into the caller's buffer. Every JSON token turns
 *   into at most three times its own length in msgpack (the worst case is a
 *   three-character float such as 1e1 becoming nine bytes), so one reserve of
 *   3 * len + slack up front means no capacity check per byte and no pointer
 *   ever moves while parsing. The final length is asserted against it.
 * - msgpack wants lengths before contents, JSON tells them after. Each string
 *   and container reserves one header byte (fixstr/fixmap/fixarray, the
 *   common case) and, only when the final size needs a wider header, slides
 *   its contents up by 1, 2 or 4 bytes. Short strings and small containers,
 *   nearly all of a profile, never move.
 * - Nesting lives on a flat frame stack; keys of the open objects live on one
 *   flat key stack (offset and hash). A 64-bit Bloom word per object makes
 *   the duplicate check free for ordinary objects; past 48 keys an object is
 *   sorted once at its close instead. Only when a duplicate is real does the
 *   object get compacted: each key keeps its first position and its last value.
 * - Numbers: integers are accumulated exactly; a decimal whose digits and
 *   exponent are small enough is computed exactly by one IEEE operation
 *   (Clinger's fast path); anything else goes to strtod_l in the C locale on
 *   a bounded, NUL-terminated copy, so the process locale never matters and
 *   nothing is read past the body.
 */
#include "json_transcode.h"

#include <assert.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack/pack.h>

#include "mp.h"
#include "transcode_schema.h"
#include "utf8.h"
#include "xalloc.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the string scanner finds the first special byte with a little-endian load"
#endif
#if FLT_EVAL_METHOD != 0
#error "the exact decimal fast path needs double arithmetic without extended precision"
#endif

/* Inline capacity of the stacks; deeper configurations or objects with many
 * keys spill to the heap once per call, never per value. */
#define TRANSCODE_INLINE_FRAMES 40
#define TRANSCODE_INLINE_KEYS   256
/* An object stops using its Bloom word past this many keys and is sorted at
 * its close instead: a full word would send every insert to a linear scan. */
#define TRANSCODE_BLOOM_KEYS 48
/* Room for the path in a message; the rest of the 256 bytes is the rule. */
#define TRANSCODE_PATH_BYTES 160
/* Marks a dead entry in its key offset: offsets stay below 2^31 (the body is
 * at most UINT32_MAX / 8 bytes and the output at most 3 times that). */
#define TRANSCODE_DEAD 0x80000000u
/* A request frame between entries: no current key to name. */
#define TRANSCODE_NO_KEY UINT32_MAX

typedef enum transcode_frame_kind {
    FRAME_ARRAY,   /* a JSON array becoming a msgpack array */
    FRAME_OBJECT,  /* a JSON object becoming a msgpack map */
    FRAME_REQUEST, /* the {"profile": ...} wrapper: validated, only its profile value is kept */
} transcode_frame_kind_t;

typedef struct transcode_frame {
    uint32_t hdr;   /* offset (from ctx->base) of the reserved header byte; request: current entry start */
    uint32_t count; /* entries seen so far, duplicates included */
    uint32_t keys;  /* objects: index in ctx->keys of the first key */
    uint8_t kind;
    bool dup;    /* a duplicate key was seen: compact at close */
    bool sorted; /* over TRANSCODE_BLOOM_KEYS: find duplicates by sorting at close */
    uint64_t bloom;
} transcode_frame_t;

typedef struct transcode_key {
    uint32_t off; /* offset (from ctx->base) of the key's msgpack str */
    uint32_t hash;
} transcode_key_t;

typedef struct transcode_ctx {
    const uint8_t *start; /* the input */
    const uint8_t *p;
    const uint8_t *end;
    uint8_t *base; /* where this call's output starts */
    uint8_t *o;    /* output cursor */
    uint8_t *limit_o;
    const limits_t *limits;
    transcode_error_t *error;
    const char *root_name; /* the path of the whole input in messages */

    transcode_frame_t *frames;
    int top; /* index of the innermost open frame, -1 when none */
    uint32_t max_frames;
    uint32_t depth_bias; /* 1 in request mode: the wrapper does not count as nesting */

    transcode_key_t *keys;
    uint32_t nkeys;
    uint32_t keys_cap;

    bool request;
    bool in_key; /* parsing an object key (messages name the object) */
    bool have_profile;
    uint32_t profile_len;           /* request mode: bytes of the kept profile value at base */
    transcode_envelope_t *envelope; /* request mode, line form: where recipient_id and version go */

    transcode_frame_t inline_frames[TRANSCODE_INLINE_FRAMES];
    transcode_key_t inline_keys[TRANSCODE_INLINE_KEYS];
} transcode_ctx_t;

/* Byte classes inside a string: what the copy loop must stop for. */
enum { SC_PLAIN = 0, SC_QUOTE, SC_ESCAPE, SC_CONTROL, SC_HIGH };

static const uint8_t transcode_string_class[256] = {
    [0x00 ... 0x1F] = SC_CONTROL,
    ['"'] = SC_QUOTE,
    ['\\'] = SC_ESCAPE,
    [0x80 ... 0xFF] = SC_HIGH,
};

static const bool transcode_space[256] = {[' '] = true, ['\t'] = true, ['\n'] = true, ['\r'] = true};

/* Hex digit value plus one; 0 marks a non-digit. */
static const uint8_t transcode_hex[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

static const double transcode_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                           1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                           1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* ---- messages ---------------------------------------------------------- */

/* Appends at most `room` bytes of s to dst[*len], never splitting a UTF-8
 * sequence, so that a message is always valid UTF-8. Returns false when cut. */
static bool transcode_path_append(char *dst, size_t *len, size_t cap, const char *s, size_t n)
{
    bool whole = true;
    if (n > cap - 1 - *len) {
        n = cap - 1 - *len;
        whole = false;
        while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst + *len, s, n);
    *len += n;
    dst[*len] = '\0';
    return whole;
}

/* The payload and length of the msgpack str at s, which this call wrote
 * itself (so it is whole: no bound to check against). */
static const uint8_t *transcode_str_payload(const uint8_t *s, uint32_t *len)
{
    mp_item_t item;
    int rc = mp_read(s, SIZE_MAX, &item);
    assert(rc == 0 && item.type == MP_STR);
    (void)rc;
    *len = item.len;
    return item.data;
}

/*
 * The path of the value being parsed: the root name, then for each of the
 * first `levels` open frames its current key (".key") or index ("[i]"). The
 * request wrapper contributes its key without a root: "profile.address".
 */
static void transcode_path(const transcode_ctx_t *ctx, int levels, char *path, size_t cap)
{
    size_t len = 0;
    path[0] = '\0';
    for (int i = 0; i < levels && i <= ctx->top; i++) {
        const transcode_frame_t *frame = &ctx->frames[i];
        const uint8_t *key;
        uint32_t key_len;
        bool ok = true;
        if (frame->kind == FRAME_ARRAY) {
            if (frame->count == 0)
                break;
            char piece[16];
            int n = snprintf(piece, sizeof(piece), "[%u]", frame->count - 1);
            if (len == 0)
                transcode_path_append(path, &len, cap, ctx->root_name, strlen(ctx->root_name));
            ok = transcode_path_append(path, &len, cap, piece, (size_t)n);
        } else if (frame->kind == FRAME_REQUEST) {
            if (frame->hdr == TRANSCODE_NO_KEY)
                break;
            key = transcode_str_payload(ctx->base + frame->hdr, &key_len);
            ok = transcode_path_append(path, &len, cap, (const char *)key, key_len);
        } else {
            /* This object's keys run up to the first key of the next object
             * frame above it (arrays push none), or to the stack's top. */
            uint32_t bound = ctx->nkeys;
            for (int j = i + 1; j <= ctx->top; j++) {
                if (ctx->frames[j].kind == FRAME_OBJECT) {
                    bound = ctx->frames[j].keys;
                    break;
                }
            }
            if (bound <= frame->keys)
                break;
            key = transcode_str_payload(ctx->base + ctx->keys[bound - 1].off, &key_len);
            if (len == 0)
                transcode_path_append(path, &len, cap, ctx->root_name, strlen(ctx->root_name));
            transcode_path_append(path, &len, cap, ".", 1);
            ok = transcode_path_append(path, &len, cap, (const char *)key, key_len);
        }
        if (!ok)
            return;
    }
    if (len == 0)
        transcode_path_append(path, &len, cap, ctx->root_name, strlen(ctx->root_name));
}

/* Fills ctx->error: "<path>: <rule>". `levels` says how many open frames
 * name the culprit (see transcode_path). Always returns -1. */
__attribute__((format(printf, 4, 5))) static int
transcode_fail(transcode_ctx_t *ctx, transcode_status_t status, int levels, const char *fmt, ...)
{
    char path[TRANSCODE_PATH_BYTES];
    char rule[200];
    transcode_path(ctx, levels, path, sizeof(path));
    va_list args;
    va_start(args, fmt);
    vsnprintf(rule, sizeof(rule), fmt, args);
    va_end(args);
    ctx->error->status = status;
    ctx->error->offset = (size_t)(ctx->p - ctx->start);
    size_t len = 0;
    ctx->error->message[0] = '\0';
    transcode_path_append(ctx->error->message, &len, sizeof(ctx->error->message), path, strlen(path));
    transcode_path_append(ctx->error->message, &len, sizeof(ctx->error->message), ": ", 2);
    transcode_path_append(ctx->error->message, &len, sizeof(ctx->error->message), rule, strlen(rule));
    return -1;
}

/* A grammar error at the current byte, naming the value being parsed. */
static int transcode_syntax(transcode_ctx_t *ctx, const char *what)
{
    /* Inside a key the culprit is the object, not its previous key. */
    int levels = ctx->in_key ? ctx->top : ctx->top + 1;
    if (ctx->p >= ctx->end)
        return transcode_fail(ctx, TRANSCODE_ERR_SYNTAX, levels, "invalid JSON: unexpected end of input, %s",
                              what);
    return transcode_fail(ctx, TRANSCODE_ERR_SYNTAX, levels, "invalid JSON at byte %zu: %s",
                          (size_t)(ctx->p - ctx->start), what);
}

/* ---- output helpers ---------------------------------------------------- */

/*
 * Every msgpack byte the transcoder writes comes from msgpack-c's packer (the
 * one canonical writer, see mp.h); only where it goes differs: the packer's
 * callback copies into the reserved output at ctx->o, which needs no capacity
 * check (see the design note above). The callback is a constant, so the
 * compiler inlines it into msgpack-c's inline pack functions.
 */
static inline int transcode_pk_write(void *data, const char *bytes, size_t len)
{
    transcode_ctx_t *ctx = data;
    memcpy(ctx->o, bytes, len);
    ctx->o += len;
    return 0;
}

static inline msgpack_packer transcode_packer(transcode_ctx_t *ctx)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, ctx, transcode_pk_write);
    return pk;
}

static inline void transcode_emit_uint(transcode_ctx_t *ctx, uint64_t v)
{
    msgpack_packer pk = transcode_packer(ctx);
    (void)msgpack_pack_uint64(&pk, v);
}

/* v < 0 */
static inline void transcode_emit_negative(transcode_ctx_t *ctx, int64_t v)
{
    msgpack_packer pk = transcode_packer(ctx);
    (void)msgpack_pack_int64(&pk, v);
}

static inline void transcode_emit_double(transcode_ctx_t *ctx, double d)
{
    assert(ctx->o + 9 <= ctx->limit_o);
    msgpack_packer pk = transcode_packer(ctx);
    (void)msgpack_pack_double(&pk, d);
}

static inline void transcode_emit_bool(transcode_ctx_t *ctx, bool v)
{
    msgpack_packer pk = transcode_packer(ctx);
    (void)(v ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk));
}

static inline void transcode_emit_nil(transcode_ctx_t *ctx)
{
    msgpack_packer pk = transcode_packer(ctx);
    (void)msgpack_pack_nil(&pk);
}

typedef enum transcode_header_kind {
    TRANSCODE_HDR_STR,
    TRANSCODE_HDR_MAP,
    TRANSCODE_HDR_ARRAY,
} transcode_header_kind_t;

/* The packer's header for `n` into h (at most 5 bytes); returns its length. */
static inline int transcode_header_write(void *data, const char *bytes, size_t len)
{
    uint8_t *h = data;
    memcpy(h + 1, bytes, len);
    h[0] = (uint8_t)len;
    return 0;
}

/*
 * Turns the one reserved byte at hdr into msgpack-c's header for `n`
 * (the fix form when it fits, else the 8-, 16- or 32-bit one), sliding the
 * bytes after it up when the header is wider than the reserved byte.
 */
static inline void transcode_fix_header(transcode_ctx_t *ctx, uint8_t *hdr, uint32_t n,
                                        transcode_header_kind_t kind)
{
    uint8_t h[6]; /* h[0]: length; h[1..]: the header */
    msgpack_packer pk;
    msgpack_packer_init(&pk, h, transcode_header_write);
    (void)(kind == TRANSCODE_HDR_STR   ? msgpack_pack_str(&pk, n)
           : kind == TRANSCODE_HDR_MAP ? msgpack_pack_map(&pk, n)
                                       : msgpack_pack_array(&pk, n));
    size_t width = h[0];
    if (width > 1) {
        assert(ctx->o + 4 <= ctx->limit_o);
        memmove(hdr + width, hdr + 1, (size_t)(ctx->o - (hdr + 1)));
        ctx->o += width - 1;
    }
    memcpy(hdr, h + 1, width);
}

/* ---- strings ----------------------------------------------------------- */

/*
 * One bit (the top bit of its byte) per byte of w that the copy loop must
 * stop for: < 0x20, '"', '\\' or >= 0x80. Borrows can flag bytes above a
 * real hit, never below, so the lowest set bit is exact: with the bytes
 * loaded little-endian it is the first special byte in the input.
 */
static inline uint64_t transcode_special_bytes(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = w ^ (ones * '"');
    uint64_t escape = w ^ (ones * '\\');
    return (((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((escape - ones) & ~escape) | w) & highs;
}

static int transcode_hex4(transcode_ctx_t *ctx, uint32_t *cp)
{
    if (ctx->end - ctx->p < 4)
        return transcode_syntax(ctx, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t h = transcode_hex[ctx->p[i]];
        if (h == 0)
            return transcode_syntax(ctx, "\\u escape needs four hex digits");
        v = v << 4 | (uint32_t)(h - 1);
    }
    ctx->p += 4;
    *cp = v;
    return 0;
}

/* ctx->p is just past a backslash. */
static int transcode_escape(transcode_ctx_t *ctx)
{
    if (ctx->p >= ctx->end)
        return transcode_syntax(ctx, "unterminated string");
    uint8_t c = *ctx->p;
    uint8_t plain;
    switch (c) {
    case '"':
    case '\\':
    case '/':
        plain = c;
        break;
    case 'b':
        plain = '\b';
        break;
    case 'f':
        plain = '\f';
        break;
    case 'n':
        plain = '\n';
        break;
    case 'r':
        plain = '\r';
        break;
    case 't':
        plain = '\t';
        break;
    case 'u': {
        ctx->p++;
        uint32_t cp;
        if (transcode_hex4(ctx, &cp) != 0)
            return -1;
        if (cp == 0) {
            ctx->p -= 6;
            return transcode_syntax(ctx, "\\u0000 is not allowed (PostgreSQL jsonb cannot store U+0000)");
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            ctx->p -= 6;
            return transcode_syntax(ctx, "lone low surrogate escape");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (ctx->end - ctx->p < 2 || ctx->p[0] != '\\' || ctx->p[1] != 'u') {
                ctx->p -= 6;
                return transcode_syntax(ctx, "high surrogate escape not followed by a low one");
            }
            ctx->p += 2;
            uint32_t low;
            if (transcode_hex4(ctx, &low) != 0)
                return -1;
            if (low < 0xDC00 || low > 0xDFFF) {
                ctx->p -= 12;
                return transcode_syntax(ctx, "high surrogate escape not followed by a low one");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        uint8_t *o = ctx->o;
        if (cp < 0x80) {
            *o++ = (uint8_t)cp;
        } else if (cp < 0x800) {
            *o++ = (uint8_t)(0xC0 | cp >> 6);
            *o++ = (uint8_t)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *o++ = (uint8_t)(0xE0 | cp >> 12);
            *o++ = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
            *o++ = (uint8_t)(0x80 | (cp & 0x3F));
        } else {
            *o++ = (uint8_t)(0xF0 | cp >> 18);
            *o++ = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
            *o++ = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
            *o++ = (uint8_t)(0x80 | (cp & 0x3F));
        }
        ctx->o = o;
        return 0;
    }
    default:
        return transcode_syntax(ctx, "invalid escape in string");
    }
    ctx->p++;
    *ctx->o++ = plain;
    return 0;
}

/*
 * ctx->p is on the opening quote. Writes the string as msgpack str and
 * checks it against max_bytes. `is_key` only changes the message.
 */
static int transcode_string(transcode_ctx_t *ctx, uint32_t max_bytes, bool is_key)
{
    const uint8_t *p = ctx->p + 1;
    const uint8_t *end = ctx->end;
    uint8_t *hdr = ctx->o;
    uint8_t *o = hdr + 1;
    for (;;) {
        if (end - p >= 8) {
            /* Eight bytes at a time; all eight are stored even when only the
             * first k are plain (the rest is overwritten next; the output
             * reserve has slack for it). */
            uint64_t w;
            memcpy(&w, p, 8);
            assert(o + 8 <= ctx->limit_o);
            memcpy(o, &w, 8);
            uint64_t special = transcode_special_bytes(w);
            if (special == 0) {
                p += 8;
                o += 8;
                continue;
            }
            unsigned k = (unsigned)__builtin_ctzll(special) >> 3;
            p += k;
            o += k;
        } else if (p >= end) {
            ctx->p = p;
            return transcode_syntax(ctx, "unterminated string");
        }
        uint8_t c = *p;
        switch (transcode_string_class[c]) {
        case SC_PLAIN: /* only within 8 bytes of the end of the input */
            *o++ = c;
            p++;
            continue;
        case SC_QUOTE:
            p++;
            goto done;
        case SC_ESCAPE:
            ctx->p = p + 1;
            ctx->o = o;
            if (transcode_escape(ctx) != 0)
                return -1;
            p = ctx->p;
            o = ctx->o;
            continue;
        case SC_CONTROL:
            ctx->p = p;
            return transcode_syntax(ctx,
                                    c == 0 ? "NUL byte in string" : "unescaped control character in string");
        default: {
            size_t n = utf8_sequence_len(p, (size_t)(end - p));
            if (n == 0) {
                ctx->p = p;
                return transcode_syntax(ctx, "invalid UTF-8 in string");
            }
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        }
    }
done:;
    size_t len = (size_t)(o - (hdr + 1));
    if (len > max_bytes) {
        if (is_key)
            return transcode_fail(ctx, TRANSCODE_ERR_LIMIT, ctx->top, "key longer than %u bytes (limit %s)",
                                  max_bytes, "PROFILED_MAX_KEY_BYTES");
        return transcode_fail(ctx, TRANSCODE_ERR_LIMIT, ctx->top + 1,
                              "string longer than %u bytes (limit %s)", max_bytes,
                              "PROFILED_MAX_STRING_BYTES");
    }
    ctx->p = p;
    ctx->o = o;
    transcode_fix_header(ctx, hdr, (uint32_t)len, TRANSCODE_HDR_STR);
    return 0;
}

/* ---- numbers ----------------------------------------------------------- */

static locale_t transcode_c_locale;
static pthread_once_t transcode_c_locale_once = PTHREAD_ONCE_INIT;

static void transcode_c_locale_init(void)
{
    transcode_c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (transcode_c_locale == (locale_t)0) {
        fatal_abort("cannot create the C locale for number parsing");
    }
}

/* Correctly rounded conversion of the JSON number text [s, s+n). */
static double transcode_strtod(const uint8_t *s, size_t n)
{
    char small[64];
    char *copy = small;
    if (n >= sizeof(small)) {
        copy = xmalloc(n + 1, "copying a number"); /* only for absurdly long literals */
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    pthread_once(&transcode_c_locale_once, transcode_c_locale_init);
    double d = strtod_l(copy, NULL, transcode_c_locale);
    if (copy != small)
        free(copy);
    return d;
}

static int transcode_number(transcode_ctx_t *ctx)
{
    const uint8_t *s = ctx->p;
    const uint8_t *p = s;
    const uint8_t *end = ctx->end;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (p >= end || (unsigned)(*p - '0') > 9) {
        ctx->p = p;
        return transcode_syntax(ctx, "a number needs a digit");
    }
    uint64_t mant = 0;  /* significant digits, while they fit 19 */
    int sig = 0;        /* significant digits seen (leading zeros excluded) */
    int dropped = 0;    /* integer digits that did not fit in mant */
    bool exact = true;  /* mant holds every digit of the integer part */
    uint64_t whole = 0; /* the integer part, exact while `exact` */
    if (*p == '0') {
        p++;
        if (p < end && (unsigned)(*p - '0') <= 9) {
            ctx->p = p;
            return transcode_syntax(ctx, "leading zero in a number");
        }
    } else {
        while (p < end && (unsigned)(*p - '0') <= 9) {
            unsigned d = (unsigned)(*p - '0');
            if (exact && (whole < 1844674407370955161ULL || (whole == 1844674407370955161ULL && d <= 5)))
                whole = whole * 10 + d;
            else
                exact = false;
            if (sig < 19)
                mant = mant * 10 + d;
            else
                dropped++;
            sig++;
            p++;
        }
    }
    bool is_int = true;
    int frac_digits = 0;
    if (p < end && *p == '.') {
        is_int = false;
        p++;
        if (p >= end || (unsigned)(*p - '0') > 9) {
            ctx->p = p;
            return transcode_syntax(ctx, "a fraction needs a digit after '.'");
        }
        while (p < end && (unsigned)(*p - '0') <= 9) {
            unsigned d = (unsigned)(*p - '0');
            if (sig == 0 && d == 0) {
                frac_digits++; /* leading zeros of 0.000x scale only */
            } else if (sig < 19) {
                mant = mant * 10 + d;
                sig++;
                frac_digits++;
            } else {
                sig++;
            }
            p++;
        }
    }
    long exp10 = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_int = false;
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end || (unsigned)(*p - '0') > 9) {
            ctx->p = p;
            return transcode_syntax(ctx, "an exponent needs a digit");
        }
        while (p < end && (unsigned)(*p - '0') <= 9) {
            if (exp10 < 100000)
                exp10 = exp10 * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp10 = -exp10;
    }
    if (is_int && exact) {
        ctx->p = p;
        if (!neg)
            transcode_emit_uint(ctx, whole);
        else if (whole == 0)
            transcode_emit_uint(ctx, 0); /* -0 is the integer 0 */
        else if (whole <= (uint64_t)INT64_MAX + 1)
            transcode_emit_negative(ctx, (int64_t)(0 - whole));
        else
            transcode_emit_double(ctx, -(double)transcode_strtod(s + 1, (size_t)(p - s - 1)));
        return 0;
    }
    double d;
    long e = exp10 + dropped - frac_digits;
    if (sig <= 15 && e >= -22 && e <= 22) {
        /* Both operands are exact doubles, so the one rounding is correct. */
        d = e >= 0 ? (double)mant * transcode_pow10[e] : (double)mant / transcode_pow10[-e];
        if (neg)
            d = -d;
    } else {
        d = transcode_strtod(s, (size_t)(p - s));
        if (isinf(d)) {
            ctx->p = s;
            return transcode_fail(ctx, TRANSCODE_ERR_SYNTAX, ctx->top + 1,
                                  "number at byte %zu is beyond the range of a double",
                                  (size_t)(s - ctx->start));
        }
    }
    ctx->p = p;
    transcode_emit_double(ctx, d);
    return 0;
}

/* ---- containers -------------------------------------------------------- */

/* Doubles the key stack (first time: off the C stack onto the heap). */
static void transcode_grow_keys(transcode_ctx_t *ctx)
{
    uint32_t cap = ctx->keys_cap * 2;
    transcode_key_t *keys;
    if (ctx->keys == ctx->inline_keys) {
        keys = xmalloc(cap * sizeof(*keys), "the transcoder's key stack");
        memcpy(keys, ctx->inline_keys, ctx->nkeys * sizeof(*keys));
    } else {
        keys = xrealloc(ctx->keys, cap * sizeof(*keys), "the transcoder's key stack");
    }
    ctx->keys = keys;
    ctx->keys_cap = cap;
}

/*
 * A word-at-a-time multiplicative hash of a key's UTF-8 bytes; only the
 * speed of the duplicate check depends on it being good (a collision costs a
 * memcmp). The last word is loaded whole and masked when `limit` allows it:
 * a variable-length copy would cost more than the hash.
 */
static uint32_t transcode_hash(const uint8_t *s, size_t n, const uint8_t *limit)
{
    const uint64_t k = 0x9E3779B97F4A7C15ULL;
    uint64_t h = n * k;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        if (limit - s >= 8) {
            memcpy(&w, s, 8);
            w &= ~0ULL >> (64 - 8 * n);
        } else {
            for (size_t i = 0; i < n; i++)
                w |= (uint64_t)s[i] << (8 * i);
        }
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    return (uint32_t)(h >> 32);
}

static size_t transcode_key_size(const uint8_t *key)
{
    uint32_t len;
    const uint8_t *payload = transcode_str_payload(key, &len);
    return (size_t)(payload - key) + len;
}

/* Keys are canonical msgpack str, so equal strings are equal bytes. */
static bool transcode_keys_equal(const transcode_ctx_t *ctx, const transcode_key_t *a,
                                 const transcode_key_t *b)
{
    if (a->hash != b->hash)
        return false;
    const uint8_t *ka = ctx->base + (a->off & ~TRANSCODE_DEAD), *kb = ctx->base + (b->off & ~TRANSCODE_DEAD);
    size_t na = transcode_key_size(ka);
    return na == transcode_key_size(kb) && memcmp(ka, kb, na) == 0;
}

/* Orders keys by hash, then bytes, then input position, so that equal keys
 * sit side by side whatever the hash collisions (a crafted body full of
 * colliding keys costs a sort, not a quadratic scan). */
static int transcode_key_order(const void *a, const void *b, void *arg)
{
    const transcode_key_t *x = a, *y = b;
    const uint8_t *base = arg;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    const uint8_t *kx = base + x->off, *ky = base + y->off;
    size_t nx = transcode_key_size(kx), ny = transcode_key_size(ky);
    int c = memcmp(kx, ky, nx < ny ? nx : ny);
    if (c != 0)
        return c;
    if (nx != ny)
        return nx < ny ? -1 : 1;
    return x->off < y->off ? -1 : (x->off > y->off);
}

static int transcode_key_by_offset(const void *a, const void *b)
{
    uint32_t x = ((const transcode_key_t *)a)->off & ~TRANSCODE_DEAD;
    uint32_t y = ((const transcode_key_t *)b)->off & ~TRANSCODE_DEAD;
    return x < y ? -1 : (x > y);
}

/* The end offset of the entry at `off`: where the next entry starts, or the
 * output cursor for the last one. `keys` is sorted by offset. */
static uint32_t transcode_entry_end(const transcode_ctx_t *ctx, const transcode_key_t *keys, uint32_t n,
                                    uint32_t off)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((keys[mid].off & ~TRANSCODE_DEAD) <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n ? keys[lo].off & ~TRANSCODE_DEAD : (uint32_t)(ctx->o - ctx->base);
}

/*
 * Resolves duplicate keys the way ordered maps in Python and JavaScript do
 * (proto/README.md §3): each key keeps the position of its first occurrence
 * and the value of its last. Returns the number of entries left. The rare
 * path: only objects with a real duplicate, or too many keys for the Bloom
 * word, come here. The key segment is popped right after, so it is free to
 * sort in place and to reuse its hash field: from here on it holds the offset
 * of the entry whose value the key keeps.
 */
static uint32_t transcode_dedupe(transcode_ctx_t *ctx, transcode_frame_t *frame)
{
    transcode_key_t *keys = ctx->keys + frame->keys;
    uint32_t n = ctx->nkeys - frame->keys;
    assert(n == frame->count && n > 0);
    qsort_r(keys, n, sizeof(*keys), transcode_key_order, ctx->base);
    bool any = false;
    for (uint32_t first = 0; first < n;) {
        /* Equal keys are adjacent and in input order. */
        uint32_t last = first;
        while (last + 1 < n && transcode_keys_equal(ctx, &keys[first], &keys[last + 1]))
            last++;
        uint32_t value_from = keys[last].off;
        for (uint32_t i = first + 1; i <= last; i++)
            keys[i].off |= TRANSCODE_DEAD;
        keys[first].hash = value_from;
        any |= last != first;
        first = last + 1;
    }
    if (!any)
        return n;
    qsort(keys, n, sizeof(*keys), transcode_key_by_offset);

    /* A kept value may be longer than the one it replaces, so the entries are
     * rebuilt from a copy rather than moved in place. */
    uint32_t region_start = keys[0].off & ~TRANSCODE_DEAD;
    size_t region_len = (size_t)(ctx->o - (ctx->base + region_start));
    uint8_t *copy = xmalloc(region_len, "resolving duplicate keys");
    memcpy(copy, ctx->base + region_start, region_len);
    uint8_t *w = ctx->base + region_start;
    uint32_t live = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (keys[i].off & TRANSCODE_DEAD)
            continue;
        uint32_t key_off = keys[i].off, value_entry = keys[i].hash;
        size_t key_len = transcode_key_size(copy + (key_off - region_start));
        uint32_t value_off = value_entry + (uint32_t)transcode_key_size(copy + (value_entry - region_start));
        uint32_t value_end = transcode_entry_end(ctx, keys, n, value_entry);
        memcpy(w, copy + (key_off - region_start), key_len);
        w += key_len;
        memcpy(w, copy + (value_off - region_start), value_end - value_off);
        w += value_end - value_off;
        live++;
    }
    free(copy);
    ctx->o = w;
    return live;
}

/*
 * Records the key just written at `key` for the innermost object. `raw` is
 * its text between the quotes in the input: when it holds no escape it is
 * the key's bytes, and hashing it there avoids reading back bytes that were
 * just stored (a store-forwarding stall per key).
 */
static void transcode_push_key(transcode_ctx_t *ctx, transcode_frame_t *frame, uint8_t *key,
                               const uint8_t *raw, size_t raw_len)
{
    uint32_t key_len;
    const uint8_t *payload = transcode_str_payload(key, &key_len);
    uint32_t hash = key_len == raw_len ? transcode_hash(raw, raw_len, ctx->end)
                                       : transcode_hash(payload, key_len, ctx->limit_o);
    if (ctx->nkeys == ctx->keys_cap)
        transcode_grow_keys(ctx);
    transcode_key_t *entry = &ctx->keys[ctx->nkeys++];
    entry->off = (uint32_t)(key - ctx->base);
    entry->hash = hash;
    if (frame->sorted || frame->dup)
        return;
    if (frame->count > TRANSCODE_BLOOM_KEYS) {
        frame->sorted = true;
        return;
    }
    uint64_t bit = 1ULL << (hash >> 26);
    if (frame->bloom & bit) {
        for (uint32_t i = frame->keys; i < ctx->nkeys - 1; i++) {
            if (transcode_keys_equal(ctx, &ctx->keys[i], entry)) {
                frame->dup = true;
                break;
            }
        }
    }
    frame->bloom |= bit;
}

static int transcode_open(transcode_ctx_t *ctx, transcode_frame_kind_t kind)
{
    /* Containers open above the request wrapper, this one included. */
    uint32_t nesting = (uint32_t)(ctx->top + 2) - ctx->depth_bias;
    if (kind != FRAME_REQUEST && nesting > ctx->limits->max_depth)
        return transcode_fail(ctx, TRANSCODE_ERR_LIMIT, ctx->top + 1,
                              "nesting deeper than %u levels (limit %s)", ctx->limits->max_depth,
                              "PROFILED_MAX_DEPTH");
    assert((uint32_t)(ctx->top + 1) < ctx->max_frames);
    transcode_frame_t *frame = &ctx->frames[++ctx->top];
    frame->kind = (uint8_t)kind;
    frame->count = 0;
    frame->keys = ctx->nkeys;
    frame->dup = false;
    frame->sorted = false;
    frame->bloom = 0;
    if (kind == FRAME_REQUEST) {
        frame->hdr = TRANSCODE_NO_KEY;
    } else {
        frame->hdr = (uint32_t)(ctx->o - ctx->base);
        ctx->o++; /* the reserved header byte */
    }
    return 0;
}

/* Closes the innermost frame (not the request wrapper). */
static void transcode_close(transcode_ctx_t *ctx)
{
    transcode_frame_t *frame = &ctx->frames[ctx->top];
    uint8_t *hdr = ctx->base + frame->hdr;
    if (frame->kind == FRAME_OBJECT) {
        uint32_t n = frame->count;
        if (frame->dup || frame->sorted)
            n = transcode_dedupe(ctx, frame);
        ctx->nkeys = frame->keys;
        transcode_fix_header(ctx, hdr, n, TRANSCODE_HDR_MAP);
    } else {
        transcode_fix_header(ctx, hdr, frame->count, TRANSCODE_HDR_ARRAY);
    }
    ctx->top--;
}

/* A new entry in the innermost frame: counts it against max_keys. */
static int transcode_count_entry(transcode_ctx_t *ctx, transcode_frame_t *frame)
{
    if (frame->count >= ctx->limits->max_keys) {
        const char *what = frame->kind == FRAME_ARRAY ? "array has more than %u entries (limit %s)"
                                                      : "object has more than %u keys (limit %s)";
        return transcode_fail(ctx, TRANSCODE_ERR_LIMIT, ctx->top, what, ctx->limits->max_keys,
                              "PROFILED_MAX_KEYS");
    }
    frame->count++;
    return 0;
}

/* Line form: a wrapper entry "recipient_id" or "version" is noted in the
 * envelope (its msgpack value is still at hand here, before it is dropped);
 * a later occurrence replaces an earlier one, as for "profile". */
static void transcode_envelope_entry(transcode_envelope_t *envelope, const uint8_t *entry)
{
    static const uint8_t recipient_key[] = {0xAC, 'r', 'e', 'c', 'i', 'p', 'i', 'e', 'n', 't', '_', 'i', 'd'};
    static const uint8_t version_key[] = {0xA7, 'v', 'e', 'r', 's', 'i', 'o', 'n'};
    if (memcmp(entry, recipient_key, sizeof(recipient_key)) == 0) {
        mp_item_t value;
        (void)mp_read(entry + sizeof(recipient_key), SIZE_MAX, &value);
        if (value.type == MP_STR) {
            envelope->recipient_id_kind = TRANSCODE_FIELD_STRING;
            envelope->recipient_id_len = value.len;
            memcpy(envelope->recipient_id, value.data,
                   value.len < sizeof(envelope->recipient_id) ? value.len : sizeof(envelope->recipient_id));
        } else {
            envelope->recipient_id_kind = value.type == MP_NIL ? TRANSCODE_FIELD_NULL : TRANSCODE_FIELD_OTHER;
        }
    } else if (memcmp(entry, version_key, sizeof(version_key)) == 0) {
        mp_item_t value;
        (void)mp_read(entry + sizeof(version_key), SIZE_MAX, &value);
        /* negative integers, floats (1.0, or integers past uint64), strings, ...: not a version */
        if (value.type == MP_UINT) {
            envelope->version_kind = TRANSCODE_FIELD_UINT;
            envelope->version = value.v.u64;
        } else {
            envelope->version_kind = value.type == MP_NIL ? TRANSCODE_FIELD_NULL : TRANSCODE_FIELD_OTHER;
            envelope->version = 0;
        }
    }
}

/* Request mode: the wrapper's entry just ended. Keeps a "profile" value at
 * base (a later "profile" replaces an earlier one), drops anything else. */
static void transcode_request_entry_done(transcode_ctx_t *ctx, transcode_frame_t *frame)
{
    static const uint8_t profile_key[] = {0xA7, 'p', 'r', 'o', 'f', 'i', 'l', 'e'};
    uint8_t *entry = ctx->base + frame->hdr;
    if (ctx->envelope)
        transcode_envelope_entry(ctx->envelope, entry);
    if (memcmp(entry, profile_key, sizeof(profile_key)) == 0) {
        uint8_t *value = entry + sizeof(profile_key);
        size_t n = (size_t)(ctx->o - value);
        memmove(ctx->base, value, n);
        ctx->have_profile = true;
        ctx->profile_len = (uint32_t)n;
    }
    ctx->o = ctx->base + ctx->profile_len;
    frame->hdr = TRANSCODE_NO_KEY;
}

/* ---- the parser -------------------------------------------------------- */

static inline void transcode_skip_space(transcode_ctx_t *ctx)
{
    const uint8_t *p = ctx->p;
    while (p < ctx->end && transcode_space[*p])
        p++;
    ctx->p = p;
}

/* An object's key, its ':' and the whitespace before the value. */
static int transcode_member_key(transcode_ctx_t *ctx, transcode_frame_t *frame)
{
    transcode_skip_space(ctx);
    ctx->in_key = true;
    if (ctx->p >= ctx->end || *ctx->p != '"')
        return transcode_syntax(ctx, "expected a string key");
    if (transcode_count_entry(ctx, frame) != 0)
        return -1;
    uint8_t *key = ctx->o;
    const uint8_t *raw = ctx->p + 1;
    if (transcode_string(ctx, ctx->limits->max_key_bytes, true) != 0)
        return -1;
    ctx->in_key = false;
    if (frame->kind == FRAME_REQUEST)
        frame->hdr = (uint32_t)(key - ctx->base);
    else
        transcode_push_key(ctx, frame, key, raw, (size_t)(ctx->p - 1 - raw));
    transcode_skip_space(ctx);
    if (ctx->p >= ctx->end || *ctx->p != ':')
        return transcode_syntax(ctx, "expected ':' after a key");
    ctx->p++;
    return 0;
}

static int transcode_parse(transcode_ctx_t *ctx)
{
    transcode_frame_t *frame;
    if (ctx->request) {
        transcode_skip_space(ctx);
        assert(ctx->p < ctx->end && *ctx->p == '{');
        ctx->p++;
        if (transcode_open(ctx, FRAME_REQUEST) != 0)
            return -1;
        transcode_skip_space(ctx);
        if (ctx->p < ctx->end && *ctx->p == '}') {
            ctx->p++;
            ctx->top--;
            goto after_value;
        }
        if (transcode_member_key(ctx, &ctx->frames[0]) != 0)
            return -1;
    }

value:
    transcode_skip_space(ctx);
    if (ctx->p >= ctx->end)
        return transcode_syntax(ctx, "expected a value");
    switch (*ctx->p) {
    case '{':
        ctx->p++;
        if (transcode_open(ctx, FRAME_OBJECT) != 0)
            return -1;
        transcode_skip_space(ctx);
        if (ctx->p < ctx->end && *ctx->p == '}') {
            ctx->p++;
            transcode_close(ctx);
            goto after_value;
        }
        if (transcode_member_key(ctx, &ctx->frames[ctx->top]) != 0)
            return -1;
        goto value;
    case '[':
        ctx->p++;
        if (transcode_open(ctx, FRAME_ARRAY) != 0)
            return -1;
        transcode_skip_space(ctx);
        if (ctx->p < ctx->end && *ctx->p == ']') {
            ctx->p++;
            transcode_close(ctx);
            goto after_value;
        }
        if (transcode_count_entry(ctx, &ctx->frames[ctx->top]) != 0)
            return -1;
        goto value;
    case '"':
        if (transcode_string(ctx, ctx->limits->max_string_bytes, false) != 0)
            return -1;
        break;
    case 't':
        if (ctx->end - ctx->p < 4 || memcmp(ctx->p, "true", 4) != 0)
            return transcode_syntax(ctx, "invalid literal");
        ctx->p += 4;
        transcode_emit_bool(ctx, true);
        break;
    case 'f':
        if (ctx->end - ctx->p < 5 || memcmp(ctx->p, "false", 5) != 0)
            return transcode_syntax(ctx, "invalid literal");
        ctx->p += 5;
        transcode_emit_bool(ctx, false);
        break;
    case 'n':
        if (ctx->end - ctx->p < 4 || memcmp(ctx->p, "null", 4) != 0)
            return transcode_syntax(ctx, "invalid literal");
        ctx->p += 4;
        transcode_emit_nil(ctx);
        break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        if (transcode_number(ctx) != 0)
            return -1;
        break;
    default:
        return transcode_syntax(ctx, "expected a value");
    }

after_value:
    if (ctx->top < 0) {
        transcode_skip_space(ctx);
        if (ctx->p != ctx->end)
            return transcode_syntax(ctx, "unexpected data after the JSON value");
        return 0;
    }
    frame = &ctx->frames[ctx->top];
    if (frame->kind == FRAME_REQUEST)
        transcode_request_entry_done(ctx, frame);
    transcode_skip_space(ctx);
    if (ctx->p >= ctx->end)
        return transcode_syntax(ctx,
                                frame->kind == FRAME_ARRAY ? "expected ',' or ']'" : "expected ',' or '}'");
    if (*ctx->p == ',') {
        ctx->p++;
        if (frame->kind == FRAME_ARRAY) {
            if (transcode_count_entry(ctx, frame) != 0)
                return -1;
        } else if (transcode_member_key(ctx, frame) != 0) {
            return -1;
        }
        goto value;
    }
    if (frame->kind == FRAME_ARRAY ? *ctx->p == ']' : *ctx->p == '}') {
        ctx->p++;
        if (frame->kind == FRAME_REQUEST)
            ctx->top--;
        else
            transcode_close(ctx);
        goto after_value;
    }
    return transcode_syntax(ctx, frame->kind == FRAME_ARRAY ? "expected ',' or ']'" : "expected ',' or '}'");
}

/* ---- entry points ------------------------------------------------------ */

/* Sets up ctx and reserves the output; fails only on the body size. */
static int transcode_begin(transcode_ctx_t *ctx, const uint8_t *json, size_t len, const limits_t *limits,
                           buf_t *out, transcode_error_t *error, bool request)
{
    ctx->start = ctx->p = json;
    ctx->end = json + len;
    ctx->limits = limits;
    ctx->error = error;
    ctx->request = request;
    ctx->root_name = request ? "body" : "value";
    ctx->top = -1;
    ctx->depth_bias = request ? 1 : 0;
    ctx->frames = ctx->inline_frames;
    ctx->max_frames = TRANSCODE_INLINE_FRAMES;
    ctx->keys = ctx->inline_keys;
    ctx->nkeys = 0;
    ctx->keys_cap = TRANSCODE_INLINE_KEYS;
    ctx->have_profile = false;
    ctx->in_key = false;
    ctx->profile_len = 0;
    ctx->envelope = NULL;
    ctx->base = ctx->o = NULL;
    error->status = TRANSCODE_OK;
    error->offset = 0;
    error->message[0] = '\0';
    /* Offsets in the stacks are 32-bit: 3 * len must fit comfortably. */
    if (len > limits->max_body_bytes || len > UINT32_MAX / 8)
        return transcode_fail(ctx, TRANSCODE_ERR_TOO_LARGE, 0, "larger than %zu bytes (limit %s)",
                              limits->max_body_bytes, "PROFILED_MAX_BODY_BYTES");
    if (limits->max_depth + 2 > TRANSCODE_INLINE_FRAMES) {
        ctx->max_frames = limits->max_depth + 2;
        ctx->frames = xmalloc(ctx->max_frames * sizeof(*ctx->frames), "the transcoder's frame stack");
    }
    size_t room = 3 * len + 64;
    buf_reserve(out, room);
    ctx->base = ctx->o = out->data + out->len;
    ctx->limit_o = ctx->base + room;
    return 0;
}

static void transcode_end(transcode_ctx_t *ctx)
{
    if (ctx->frames != ctx->inline_frames)
        free(ctx->frames);
    if (ctx->keys != ctx->inline_keys)
        free(ctx->keys);
}

int transcode_value(const uint8_t *json, size_t len, const limits_t *limits, buf_t *out,
                    transcode_error_t *error)
{
    transcode_ctx_t ctx;
    int rc = -1;
    if (transcode_begin(&ctx, json, len, limits, out, error, false) != 0)
        goto cleanup;
    if (transcode_parse(&ctx) != 0)
        goto cleanup;
    assert(ctx.o <= ctx.limit_o);
    out->len = (size_t)(ctx.o - out->data);
    rc = 0;
cleanup:
    transcode_end(&ctx);
    return rc;
}

static int transcode_request(const uint8_t *body, size_t len, const limits_t *limits, buf_t *profile_out,
                             transcode_envelope_t *envelope, transcode_error_t *error)
{
    transcode_ctx_t ctx;
    int rc = -1;
    if (envelope)
        memset(envelope, 0, sizeof(*envelope));
    if (transcode_begin(&ctx, body, len, limits, profile_out, error, true) != 0)
        goto cleanup;
    ctx.envelope = envelope;
    transcode_skip_space(&ctx);
    if (ctx.p >= ctx.end || *ctx.p != '{') {
        /* Not an object: still say "invalid JSON" when it is not JSON. */
        ctx.request = false;
        ctx.depth_bias = 0;
        ctx.p = ctx.start;
        if (transcode_parse(&ctx) != 0)
            goto cleanup;
        ctx.p = ctx.start;
        transcode_fail(&ctx, TRANSCODE_ERR_SCHEMA, 0, "must be a JSON object with a \"profile\" object");
        goto cleanup;
    }
    if (transcode_parse(&ctx) != 0)
        goto cleanup;
    ctx.p = ctx.start;
    if (!ctx.have_profile) {
        error->status = TRANSCODE_ERR_SCHEMA;
        error->offset = 0;
        snprintf(error->message, sizeof(error->message), "profile is required");
        goto cleanup;
    }
    mp_item_t profile;
    if (mp_read(ctx.base, ctx.profile_len, &profile) != 0 || profile.type != MP_MAP) {
        error->status = TRANSCODE_ERR_SCHEMA;
        error->offset = 0;
        snprintf(error->message, sizeof(error->message), "profile must be an object");
        goto cleanup;
    }
    assert(ctx.base + ctx.profile_len <= ctx.limit_o);
    if (transcode_schema_check(ctx.base, ctx.profile_len, error->message, sizeof(error->message)) != 0) {
        error->status = TRANSCODE_ERR_SCHEMA;
        error->offset = 0;
        goto cleanup;
    }
    profile_out->len = (size_t)(ctx.base + ctx.profile_len - profile_out->data);
    rc = 0;
cleanup:
    transcode_end(&ctx);
    return rc;
}

int transcode_profile_request(const uint8_t *body, size_t len, const limits_t *limits, buf_t *profile_out,
                              transcode_error_t *error)
{
    return transcode_request(body, len, limits, profile_out, NULL, error);
}

int transcode_profile_line(const uint8_t *line, size_t len, const limits_t *limits, buf_t *profile_out,
                           transcode_envelope_t *envelope, transcode_error_t *error)
{
    return transcode_request(line, len, limits, profile_out, envelope, error);
}
