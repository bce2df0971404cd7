/*
 * mp: msgpack primitives shared by the command codec, the JSON writer and
 * the JSON transcoder: a bounded one-item reader and the canonical writers.
 *
 * Reader contract: mp_read() looks at one item header at p[0..avail) and
 * never reads past avail. For str, bin and ext it also checks that the whole
 * payload is inside the buffer, so a caller may touch item->data freely. For
 * arrays and maps only the header is consumed; the elements follow.
 * Integers come out normalised: every non-negative value is MP_UINT, every
 * negative one MP_INT, whatever form carried it (the decoder accepts any
 * valid encoding; only the encoder is canonical).
 *
 * Writer contract: the canonical forms of proto/README.md, "Canonical
 * encoding": the smallest int form (uint forms for non-negative values, int
 * forms for negative ones), float64 for every double, str/bin/array/map
 * headers in their smallest form. Every writer here and in the transcoder is
 * msgpack-c's packer; nothing in the project encodes a msgpack header itself.
 */
#ifndef PROFILED_MP_H
#define PROFILED_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <msgpack/pack.h>

#include "buf.h"

typedef enum mp_type {
    MP_NIL,
    MP_BOOL,
    MP_UINT,    /* non-negative integer, any int form */
    MP_INT,     /* negative integer, any int form */
    MP_FLOAT32, /* value widened into .f64 */
    MP_FLOAT64,
    MP_STR,
    MP_BIN,
    MP_ARRAY,
    MP_MAP,
    MP_EXT,
} mp_type_t;

typedef struct mp_item {
    mp_type_t type;
    union {
        bool b;
        uint64_t u64;
        int64_t i64;
        double f64;
    } v;
    uint32_t len;        /* str/bin/ext: payload bytes; array: elements; map: entries */
    int8_t ext_type;     /* ext only */
    const uint8_t *data; /* str/bin/ext payload, inside the input */
    size_t size;         /* bytes this item took: header plus payload (containers: header only) */
} mp_item_t;

/* Human name of a type for messages: "nil", "bool", "int", "float", "str", ... */
const char *mp_type_name(mp_type_t type);

static inline uint16_t mp_load16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t mp_load32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t mp_load64(const uint8_t *p)
{
    return (uint64_t)mp_load32(p) << 32 | mp_load32(p + 4);
}

/* Reads one item header (and the payload bounds of str/bin/ext). Returns 0,
 * or -1 when the bytes are truncated or start with the reserved byte 0xc1. */
static inline int mp_read(const uint8_t *p, size_t avail, mp_item_t *item)
{
    if (avail == 0)
        return -1;
    uint8_t b = p[0];
    size_t hdr;      /* header bytes, including the type byte */
    size_t lenw = 0; /* width of a big-endian length field after the type byte (str/bin/ext/array/map) */

    if (b <= 0x7f) {
        item->type = MP_UINT;
        item->v.u64 = b;
        item->size = 1;
        return 0;
    }
    if (b >= 0xe0) {
        item->type = MP_INT;
        item->v.i64 = (int8_t)b;
        item->size = 1;
        return 0;
    }
    if (b <= 0x8f) {
        item->type = MP_MAP;
        item->len = b & 0x0f;
        item->size = 1;
        return 0;
    }
    if (b <= 0x9f) {
        item->type = MP_ARRAY;
        item->len = b & 0x0f;
        item->size = 1;
        return 0;
    }
    if (b <= 0xbf) {
        item->type = MP_STR;
        item->len = b & 0x1f;
        hdr = 1;
        goto payload;
    }
    switch (b) {
    case 0xc0:
        item->type = MP_NIL;
        item->size = 1;
        return 0;
    case 0xc2:
    case 0xc3:
        item->type = MP_BOOL;
        item->v.b = b == 0xc3;
        item->size = 1;
        return 0;
    case 0xc4: /* bin 8/16/32 */
    case 0xc5:
    case 0xc6:
        item->type = MP_BIN;
        lenw = (size_t)1 << (b - 0xc4);
        break;
    case 0xc7: /* ext 8/16/32: length, then the type byte */
    case 0xc8:
    case 0xc9:
        item->type = MP_EXT;
        lenw = (size_t)1 << (b - 0xc7);
        break;
    case 0xca:
        if (avail < 5)
            return -1;
        {
            uint32_t bits = mp_load32(p + 1);
            float f;
            memcpy(&f, &bits, 4);
            item->type = MP_FLOAT32;
            item->v.f64 = (double)f;
        }
        item->size = 5;
        return 0;
    case 0xcb:
        if (avail < 9)
            return -1;
        {
            uint64_t bits = mp_load64(p + 1);
            memcpy(&item->v.f64, &bits, 8);
            item->type = MP_FLOAT64;
        }
        item->size = 9;
        return 0;
    case 0xcc: /* uint 8/16/32/64 */
    case 0xcd:
    case 0xce:
    case 0xcf: {
        size_t w = (size_t)1 << (b - 0xcc);
        if (avail < 1 + w)
            return -1;
        item->type = MP_UINT;
        item->v.u64 = w == 1   ? p[1]
                      : w == 2 ? mp_load16(p + 1)
                      : w == 4 ? mp_load32(p + 1)
                               : mp_load64(p + 1);
        item->size = 1 + w;
        return 0;
    }
    case 0xd0: /* int 8/16/32/64 */
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        size_t w = (size_t)1 << (b - 0xd0);
        if (avail < 1 + w)
            return -1;
        int64_t v = w == 1   ? (int8_t)p[1]
                    : w == 2 ? (int16_t)mp_load16(p + 1)
                    : w == 4 ? (int32_t)mp_load32(p + 1)
                             : (int64_t)mp_load64(p + 1);
        if (v >= 0) {
            item->type = MP_UINT;
            item->v.u64 = (uint64_t)v;
        } else {
            item->type = MP_INT;
            item->v.i64 = v;
        }
        item->size = 1 + w;
        return 0;
    }
    case 0xd4: /* fixext 1/2/4/8/16: type byte, then 2^n data bytes */
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        item->type = MP_EXT;
        item->len = 1u << (b - 0xd4);
        if (avail < 2)
            return -1;
        item->ext_type = (int8_t)p[1];
        hdr = 2;
        goto payload;
    case 0xd9: /* str 8/16/32 */
    case 0xda:
    case 0xdb:
        item->type = MP_STR;
        lenw = (size_t)1 << (b - 0xd9);
        break;
    case 0xdc: /* array 16/32 */
    case 0xdd:
        if (avail < 1 + ((size_t)2 << (b - 0xdc)))
            return -1;
        item->type = MP_ARRAY;
        item->len = b == 0xdc ? mp_load16(p + 1) : mp_load32(p + 1);
        item->size = 1 + ((size_t)2 << (b - 0xdc));
        return 0;
    case 0xde: /* map 16/32 */
    case 0xdf:
        if (avail < 1 + ((size_t)2 << (b - 0xde)))
            return -1;
        item->type = MP_MAP;
        item->len = b == 0xde ? mp_load16(p + 1) : mp_load32(p + 1);
        item->size = 1 + ((size_t)2 << (b - 0xde));
        return 0;
    default: /* 0xc1: never used */
        return -1;
    }

    /* str/bin/ext with an explicit length field. */
    if (avail < 1 + lenw)
        return -1;
    item->len = lenw == 1 ? p[1] : lenw == 2 ? mp_load16(p + 1) : mp_load32(p + 1);
    hdr = 1 + lenw;
    if (item->type == MP_EXT) {
        if (avail < hdr + 1)
            return -1;
        item->ext_type = (int8_t)p[hdr];
        hdr++;
    }

payload:
    if (avail - hdr < item->len)
        return -1;
    item->data = p + hdr;
    item->size = hdr + item->len;
    return 0;
}

/*
 * Skips one complete value (containers with everything inside them) without
 * recursion, so nesting depth cannot exhaust the stack. Returns 0 and the
 * bytes it spans in *consumed, or -1 when the value is truncated or holds
 * the reserved byte.
 */
int mp_skip(const uint8_t *p, size_t avail, size_t *consumed) __attribute__((warn_unused_result));

/*
 * Canonical writers: msgpack-c's packer (msgpack_packer) writing into a buf_t.
 * The packer already picks the canonical forms (uint forms for non-negative
 * values, the smallest int, str8 for 32..255-byte strings, float64 for a
 * double), so the encoders do not restate those rules; the golden vectors in
 * proto/ check that they still hold. All of this is inline, and the callback
 * is a constant, so the compiler folds the indirection away.
 */
static inline int mp_buf_write(void *data, const char *bytes, size_t len)
{
    buf_append((buf_t *)data, bytes, len);
    return 0;
}

/* A packer appending to `out`: for callers that want msgpack-c's API directly. */
static inline msgpack_packer mp_packer(buf_t *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, mp_buf_write);
    return pk;
}

/* Big-endian store of the low `width` bytes of `value` (ids and other fixed fields). */
static inline void mp_write_be(uint8_t *dst, uint64_t value, size_t width)
{
    for (size_t i = 0; i < width; i++)
        dst[i] = (uint8_t)(value >> (8 * (width - 1 - i)));
}

static inline void mp_write_nil(buf_t *out)
{
    msgpack_packer pk = mp_packer(out);
    (void)msgpack_pack_nil(&pk);
}

static inline void mp_write_bool(buf_t *out, bool value)
{
    msgpack_packer pk = mp_packer(out);
    (void)(value ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk));
}

static inline void mp_write_uint(buf_t *out, uint64_t value)
{
    msgpack_packer pk = mp_packer(out);
    (void)msgpack_pack_uint64(&pk, value);
}

static inline void mp_write_int(buf_t *out, int64_t value)
{
    msgpack_packer pk = mp_packer(out);
    (void)msgpack_pack_int64(&pk, value);
}

static inline void mp_write_double(buf_t *out, double value)
{
    msgpack_packer pk = mp_packer(out);
    (void)msgpack_pack_double(&pk, value);
}

static inline void mp_write_str_header(buf_t *out, uint32_t len)
{
    msgpack_packer pk = mp_packer(out);
    (void)msgpack_pack_str(&pk, len);
}

static inline void mp_write_str(buf_t *out, const void *s, uint32_t len)
{
    msgpack_packer pk = mp_packer(out);
    (void)msgpack_pack_str_with_body(&pk, s, len);
}

static inline void mp_write_bin(buf_t *out, const void *bytes, uint32_t len)
{
    msgpack_packer pk = mp_packer(out);
    (void)msgpack_pack_bin_with_body(&pk, bytes, len);
}

static inline void mp_write_array_header(buf_t *out, uint32_t count)
{
    msgpack_packer pk = mp_packer(out);
    (void)msgpack_pack_array(&pk, count);
}

static inline void mp_write_map_header(buf_t *out, uint32_t count)
{
    msgpack_packer pk = mp_packer(out);
    (void)msgpack_pack_map(&pk, count);
}

#endif
