/*
 * Differential checks of the msgpack reader and the JSON writer against two
 * independent libraries: random documents are packed by msgpack-c (in random
 * int, float and header forms, canonical or not) while the same document is
 * built as a jansson tree; the writer's JSON, parsed back by jansson, must
 * equal that tree; mp_skip must span exactly the packed bytes, and fail on
 * every proper prefix, where msgpack-c asks for more input too.
 */
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "json_write.h"
#include "mp.h"
#include "test_codec.h"

static uint64_t diff_state = 0x243f6a8885a308d3ULL;

static uint64_t diff_next(void)
{
    diff_state ^= diff_state >> 12;
    diff_state ^= diff_state << 25;
    diff_state ^= diff_state >> 27;
    return diff_state * 0x2545F4914F6CDD1DULL;
}

static uint32_t diff_below(uint32_t n)
{
    return (uint32_t)(diff_next() % n);
}

/* Random UTF-8 text without U+0000: ASCII (controls, quotes and backslashes
 * included), 2-, 3- and 4-byte characters. */
static size_t diff_text(char *dst, size_t max)
{
    size_t len = 0, want = diff_below(4) == 0 ? diff_below((uint32_t)max / 4) : diff_below(12);
    while (len < want && len + 4 <= max) {
        uint32_t kind = diff_below(10);
        if (kind < 5) {
            dst[len++] = (char)(1 + diff_below(127));
        } else if (kind < 7) {
            uint32_t c = 0x80 + diff_below(0x780);
            dst[len++] = (char)(0xc0 | c >> 6);
            dst[len++] = (char)(0x80 | (c & 0x3f));
        } else if (kind < 9) {
            uint32_t c = 0x800 + diff_below(0xf800);
            if (c >= 0xd800 && c <= 0xdfff)
                c -= 0x800; /* no surrogates */
            dst[len++] = (char)(0xe0 | c >> 12);
            dst[len++] = (char)(0x80 | ((c >> 6) & 0x3f));
            dst[len++] = (char)(0x80 | (c & 0x3f));
        } else {
            uint32_t c = 0x10000 + diff_below(0x100000);
            dst[len++] = (char)(0xf0 | c >> 18);
            dst[len++] = (char)(0x80 | ((c >> 12) & 0x3f));
            dst[len++] = (char)(0x80 | ((c >> 6) & 0x3f));
            dst[len++] = (char)(0x80 | (c & 0x3f));
        }
    }
    return len;
}

static double diff_double(void)
{
    switch (diff_below(4)) {
    case 0: {
        uint64_t bits = diff_next();
        double d;
        memcpy(&d, &bits, 8);
        return isfinite(d) ? d : 0.5;
    }
    case 1:
        return (double)(int64_t)diff_next() / 1e6;
    case 2:
        return (double)diff_below(100000) / 100.0;
    default:
        return ldexp(1.0, (int)diff_below(2000) - 1000);
    }
}

/* Packs one random value with msgpack-c and returns its jansson twin. */
static json_t *diff_value(msgpack_packer *pk, int depth)
{
    uint32_t kind = diff_below(depth >= 6 ? 6 : 9);
    char text[600];
    switch (kind) {
    case 0:
        msgpack_pack_nil(pk);
        return json_null();
    case 1:
        if (diff_below(2)) {
            msgpack_pack_true(pk);
            return json_true();
        }
        msgpack_pack_false(pk);
        return json_false();
    case 2: {
        int64_t v = (int64_t)diff_next() >> diff_below(64);
        switch (diff_below(4)) {
        case 0:
            msgpack_pack_int64(pk, v); /* smallest form */
            break;
        case 1:
            msgpack_pack_fix_int64(pk, v);
            break;
        case 2:
            if (v >= INT32_MIN && v <= INT32_MAX)
                msgpack_pack_fix_int32(pk, (int32_t)v);
            else
                msgpack_pack_fix_int64(pk, v);
            break;
        default:
            if (v >= 0)
                msgpack_pack_fix_uint64(pk, (uint64_t)v);
            else
                msgpack_pack_int64(pk, v);
        }
        return json_integer(v);
    }
    case 3: {
        if (diff_below(4) == 0) {
            float f = (float)diff_double();
            if (!isfinite(f))
                f = 1.5f;
            msgpack_pack_float(pk, f);
            return json_real((double)f);
        }
        double d = diff_double();
        msgpack_pack_double(pk, d);
        return json_real(d);
    }
    case 4:
    case 5: {
        size_t len = diff_text(text, sizeof(text));
        msgpack_pack_str_with_body(pk, text, len);
        return json_stringn(text, len);
    }
    case 6:
    case 7: {
        uint32_t n = diff_below(6);
        json_t *object = json_object();
        msgpack_pack_map(pk, n);
        for (uint32_t i = 0; i < n; i++) {
            /* Unique keys: jansson keeps one value per key. */
            size_t len = diff_text(text, 64);
            len += (size_t)snprintf(text + len, 16, "#%u", i);
            msgpack_pack_str_with_body(pk, text, len);
            json_object_setn_new_nocheck(object, text, len, diff_value(pk, depth + 1));
        }
        return object;
    }
    default: {
        uint32_t n = diff_below(6);
        json_t *array = json_array();
        msgpack_pack_array(pk, n);
        for (uint32_t i = 0; i < n; i++)
            json_array_append_new(array, diff_value(pk, depth + 1));
        return array;
    }
    }
}

START_TEST(writer_matches_jansson_on_msgpack_c_documents)
{
    limits_t limits = limits_default();
    for (int round = 0; round < 3000; round++) {
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sbuf);
        msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
        json_t *want = diff_value(&pk, 0);
        const uint8_t *bytes = (const uint8_t *)sbuf.data;

        size_t consumed = 0;
        ck_assert_int_eq(mp_skip(bytes, sbuf.size, &consumed), 0);
        ck_assert_uint_eq(consumed, sbuf.size);

        buf_t out = {0};
        codec_failure_t failure;
        ck_assert_msg(json_write_value(bytes, sbuf.size, &limits, "v", &consumed, &out, &failure) == 0,
                      "round %d: %s", round, failure.message);
        ck_assert_uint_eq(consumed, sbuf.size);
        json_error_t error;
        json_t *got = json_loadb((const char *)out.data, out.len, JSON_DECODE_ANY, &error);
        ck_assert_msg(got != NULL, "round %d: jansson rejects the output: %s\n%.*s", round, error.text,
                      (int)out.len, (const char *)out.data);
        ck_assert_msg(json_equal(got, want), "round %d: the output means something else:\n%.*s", round,
                      (int)out.len, (const char *)out.data);

        /* Every proper prefix: both readers want more input. */
        for (size_t cut = 0; cut < sbuf.size; cut += 1 + cut / 8) {
            ck_assert_int_ne(mp_skip(bytes, cut, &consumed), 0);
            msgpack_unpacked result;
            msgpack_unpacked_init(&result);
            size_t off = 0;
            msgpack_unpack_return ret = msgpack_unpack_next(&result, sbuf.data, cut, &off);
            ck_assert_msg(ret == MSGPACK_UNPACK_CONTINUE, "round %d cut %zu: msgpack-c says %d", round, cut,
                          (int)ret);
            msgpack_unpacked_destroy(&result);
        }
        json_decref(got);
        json_decref(want);
        buf_free(&out);
        msgpack_sbuffer_destroy(&sbuf);
    }
}
END_TEST

/* One-byte mutations of packed documents: whenever mp_skip accepts, msgpack-c
 * accepts the same span (mp_skip bounds every claimed size by the bytes
 * present, so msgpack-c is only asked about inputs whose sizes are real). */
START_TEST(reader_agrees_with_msgpack_c_on_mutations)
{
    int accepted = 0;
    for (int round = 0; round < 3000; round++) {
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sbuf);
        msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
        json_decref(diff_value(&pk, 0));
        for (int m = 0; m < 8; m++) {
            uint8_t copy[4096];
            if (sbuf.size > sizeof(copy))
                break;
            memcpy(copy, sbuf.data, sbuf.size);
            copy[diff_below((uint32_t)sbuf.size)] = (uint8_t)diff_next();
            size_t consumed;
            if (mp_skip(copy, sbuf.size, &consumed) != 0)
                continue;
            accepted++;
            msgpack_unpacked result;
            msgpack_unpacked_init(&result);
            size_t off = 0;
            msgpack_unpack_return ret = msgpack_unpack_next(&result, (const char *)copy, sbuf.size, &off);
            ck_assert_msg(ret == MSGPACK_UNPACK_SUCCESS || ret == MSGPACK_UNPACK_EXTRA_BYTES,
                          "round %d: mp_skip accepts, msgpack-c says %d", round, (int)ret);
            ck_assert_uint_eq(off, consumed);
            msgpack_unpacked_destroy(&result);
        }
        msgpack_sbuffer_destroy(&sbuf);
    }
    ck_assert_int_gt(accepted, 1000);
}
END_TEST

Suite *differential_suite(void)
{
    Suite *s = suite_create("differential");
    TCase *tc = tcase_create("differential");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, writer_matches_jansson_on_msgpack_c_documents);
    tcase_add_test(tc, reader_agrees_with_msgpack_c_on_mutations);
    suite_add_tcase(s, tc);
    return s;
}
