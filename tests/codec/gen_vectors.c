/*
 * gen_vectors: writes proto/vectors from the table below.
 *
 *   build/debug/tests/codec/gen_vectors proto/vectors
 *
 * Valid vectors are encoded by codec_encode; their meaning files are filled
 * from what codec_decode reads back. That is circular on purpose only here:
 * the independent checks are tests/codec/vectors_check.py (a producer
 * written from proto/README.md alone) and the review of the diff. Invalid
 * vectors are written field by field, and the generator refuses to write one
 * that does not fail with the code it claims.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "json_patch.h"
#include "json_write.h"
#include "mp.h"

static const char *gen_dir;
static int gen_count;

static void gen_die(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "gen_vectors: ");
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(1);
}

static void gen_write_file(const char *sub, const char *name, const char *ext, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/%s.%s", gen_dir, sub, name, ext);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
        gen_die("cannot write %s", path);
}

static void gen_write_json(const char *sub, const char *name, json_t *meaning)
{
    char *text = json_dumps(meaning, JSON_INDENT(2));
    if (!text)
        gen_die("cannot serialise the meaning of %s", name);
    size_t len = strlen(text);
    text = realloc(text, len + 2);
    text[len] = '\n';
    gen_write_file(sub, name, "json", text, len + 1);
    free(text);
    json_decref(meaning);
}

/* A distinct id per vector (FNV-1a of the name), so that producing every
 * valid vector applies every one of them. */
static void gen_id(const char *name, uint8_t id[16])
{
    static const uint8_t prefix[8] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    static const uint8_t example[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                        0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
    if (strcmp(name, "empty_profile") == 0) {
        memcpy(id, example, 16); /* the annotated example of proto/README.md */
        return;
    }
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
    memcpy(id, prefix, 8);
    mp_write_be(id + 8, h, 8);
}

static json_t *gen_meaning(const char *description, const char *key, size_t key_len)
{
    json_t *m = json_object();
    json_object_set_new(m, "description", json_string(description));
    json_object_set_new(m, "key", key ? json_stringn(key, key_len) : json_null());
    return m;
}

/* Decodes bytes with key and writes the meaning file of a valid or
 * noncanonical vector. */
static void gen_meaningful(const char *sub, const char *name, const char *description, const char *key,
                           const buf_t *bytes, const char *request_json)
{
    limits_t limits = limits_default();
    codec_command_t c;
    codec_failure_t failure;
    buf_t json = {0};
    if (codec_decode(bytes->data, bytes->len, (const uint8_t *)key, strlen(key), &limits, &c, &json,
                     &failure) != 0)
        gen_die("%s/%s does not decode: %s", sub, name, failure.message);

    json_t *m = gen_meaning(description, key, strlen(key));
    json_t *cmd = json_object();
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", c.command_id[i]);
    json_object_set_new(cmd, "schema", json_integer(c.schema_version));
    json_object_set_new(cmd, "op", json_string(codec_op_name(c.op)));
    json_object_set_new(cmd, "command_id", json_string(hex));
    json_object_set_new(cmd, "recipient_id", json_stringn(c.recipient_id, c.recipient_id_len));
    json_object_set_new(cmd, "accepted_at_us", json_integer(c.accepted_at_us));
    if (c.has_version) {
        char v[24];
        snprintf(v, sizeof(v), "%llu", (unsigned long long)c.version);
        json_object_set_new(cmd, "version", json_string(v));
    }
    if (c.source)
        json_object_set_new(cmd, "source", json_stringn(c.source, c.source_len));
    json_object_set_new(m, "command", cmd);
    if (c.op == CODEC_OP_REPLACE || c.op == CODEC_OP_MERGE)
        json_object_set_new(m, "profile_json", json_stringn((const char *)json.data, json.len));
    if (c.op == CODEC_OP_PATCH) {
        /* The operations as JSON, members in canonical order (§4): parsed
         * with first-occurrence key order, they pack to the patch bytes. */
        buf_t patch = {0}, canonical = {0};
        size_t used = 0;
        jpatch_write_canonical(c.patch_msgpack, c.patch_msgpack_len, &canonical);
        if (json_write_value(canonical.data, canonical.len, &limits, "patch", &used, &patch, &failure) != 0)
            gen_die("%s/%s: patch does not write as JSON: %s", sub, name, failure.message);
        json_object_set_new(m, "patch_json", json_stringn((const char *)patch.data, patch.len));
        buf_free(&patch);
        buf_free(&canonical);
    }
    if (request_json)
        json_object_set_new(m, "profile_request_json", json_string(request_json));
    gen_write_file(sub, name, "msgpack", bytes->data, bytes->len);
    gen_write_json(sub, name, m);
    buf_free(&json);
    gen_count++;
}

/* ---- envelopes ---- */

typedef struct gen_env {
    const char *recipient;
    size_t recipient_len; /* 0: strlen(recipient) */
    int64_t accepted_at_us;
    bool has_version;
    uint64_t version;
    const char *source;
} gen_env_t;

static const gen_env_t gen_default_env = {.recipient = "alice", .accepted_at_us = 1700000000000000};

static void gen_valid_kind(const char *name, const char *description, const gen_env_t *env, codec_op_t op,
                           buf_t *body, const char *request_json)
{
    codec_command_t c = {.op = op};
    gen_id(name, c.command_id);
    c.recipient_id = env->recipient;
    c.recipient_id_len = env->recipient_len ? env->recipient_len : strlen(env->recipient);
    c.accepted_at_us = env->accepted_at_us;
    c.has_version = env->has_version;
    c.version = env->version;
    if (env->source) {
        c.source = env->source;
        c.source_len = strlen(env->source);
    }
    if (op == CODEC_OP_PATCH) {
        c.patch_msgpack = body->data;
        c.patch_msgpack_len = body->len;
    } else if (op != CODEC_OP_DELETE) {
        c.profile_msgpack = body->data;
        c.profile_msgpack_len = body->len;
    }
    buf_t bytes = {0};
    char errstr[256];
    if (codec_encode(&c, &bytes, errstr, sizeof(errstr)) != 0)
        gen_die("valid/%s: %s", name, errstr);
    char key[512];
    memcpy(key, c.recipient_id, c.recipient_id_len);
    key[c.recipient_id_len] = '\0';
    gen_meaningful("valid", name, description, key, &bytes, request_json);
    buf_free(&bytes);
    buf_free(body);
}

static void gen_valid(const char *name, const char *description, const gen_env_t *env, buf_t *profile,
                      const char *request_json)
{
    gen_valid_kind(name, description, env, CODEC_OP_REPLACE, profile, request_json);
}

/* ---- raw field lists, for noncanonical and invalid commands ---- */

#define GEN_MAX_FIELDS 12

typedef struct gen_fields {
    size_t count;
    buf_t name[GEN_MAX_FIELDS];  /* the key, as raw msgpack */
    buf_t value[GEN_MAX_FIELDS]; /* the value, as raw msgpack */
} gen_fields_t;

static buf_t gen_str(const char *s)
{
    buf_t b = {0};
    mp_write_str(&b, s, (uint32_t)strlen(s));
    return b;
}

static buf_t gen_strn(const char *s, size_t len)
{
    buf_t b = {0};
    mp_write_str(&b, s, (uint32_t)len);
    return b;
}

static buf_t gen_raw(const char *bytes, size_t len)
{
    buf_t b = {0};
    buf_append(&b, bytes, len);
    return b;
}

static buf_t gen_int(int64_t v)
{
    buf_t b = {0};
    mp_write_int(&b, v);
    return b;
}

static buf_t gen_uint(uint64_t v)
{
    buf_t b = {0};
    mp_write_uint(&b, v);
    return b;
}

static buf_t gen_bin(const uint8_t *bytes, size_t len)
{
    buf_t b = {0};
    mp_write_bin(&b, bytes, (uint32_t)len);
    return b;
}

static buf_t gen_empty_map(void)
{
    return gen_raw("\x80", 1);
}

/* The six required fields, canonical, for vector `name`, with `profile`. */
static gen_fields_t gen_fields(const char *name, buf_t profile)
{
    gen_fields_t f = {0};
    uint8_t id[16];
    gen_id(name, id);
    const char *names[] = {"schema", "op", "command_id", "recipient_id", "accepted_at_us", "profile"};
    buf_t values[] = {gen_uint(1),      gen_str("replace"),        gen_bin(id, 16),
                      gen_str("alice"), gen_int(1700000000000000), profile};
    for (size_t i = 0; i < 6; i++) {
        f.name[i] = gen_str(names[i]);
        f.value[i] = values[i];
    }
    f.count = 6;
    return f;
}

static int gen_find(gen_fields_t *f, const char *name)
{
    buf_t key = gen_str(name);
    int found = -1;
    for (size_t i = 0; i < f->count; i++)
        if (f->name[i].len == key.len && memcmp(f->name[i].data, key.data, key.len) == 0)
            found = (int)i;
    buf_free(&key);
    if (found < 0)
        gen_die("no field %s", name);
    return found;
}

static void gen_set(gen_fields_t *f, const char *name, buf_t value)
{
    int i = gen_find(f, name);
    buf_free(&f->value[i]);
    f->value[i] = value;
}

static void gen_drop(gen_fields_t *f, const char *name)
{
    int i = gen_find(f, name);
    buf_free(&f->name[i]);
    buf_free(&f->value[i]);
    memmove(&f->name[i], &f->name[i + 1], (f->count - (size_t)i - 1) * sizeof(buf_t));
    memmove(&f->value[i], &f->value[i + 1], (f->count - (size_t)i - 1) * sizeof(buf_t));
    f->count--;
}

/* Adds a field after the others. */
static void gen_add(gen_fields_t *f, buf_t name, buf_t value)
{
    if (f->count == GEN_MAX_FIELDS)
        gen_die("too many fields");
    f->name[f->count] = name;
    f->value[f->count] = value;
    f->count++;
}

static buf_t gen_pack(gen_fields_t *f)
{
    buf_t b = {0};
    mp_write_map_header(&b, (uint32_t)f->count);
    for (size_t i = 0; i < f->count; i++) {
        buf_append(&b, f->name[i].data, f->name[i].len);
        buf_append(&b, f->value[i].data, f->value[i].len);
        buf_free(&f->name[i]);
        buf_free(&f->value[i]);
    }
    return b;
}

static void gen_invalid_bytes(const char *name, const char *description, const char *key, buf_t bytes,
                              codec_error_t want)
{
    limits_t limits = limits_default();
    codec_command_t c;
    codec_failure_t failure;
    buf_t json = {0};
    if (codec_decode(bytes.data, bytes.len, (const uint8_t *)key, key ? strlen(key) : 0, &limits, &c, &json,
                     &failure) == 0)
        gen_die("invalid/%s decodes", name);
    if (failure.code != want)
        gen_die("invalid/%s fails with %s (%s), not %s", name, codec_error_name(failure.code),
                failure.message, codec_error_name(want));
    json_t *m = gen_meaning(description, key, key ? strlen(key) : 0);
    json_object_set_new(m, "error", json_string(codec_error_name(want)));
    json_object_set_new(m, "message", json_string(failure.message));
    gen_write_file("invalid", name, "msgpack", bytes.data, bytes.len);
    gen_write_json("invalid", name, m);
    buf_free(&bytes);
    buf_free(&json);
    gen_count++;
}

static void gen_invalid(const char *name, const char *description, gen_fields_t *f, codec_error_t want)
{
    gen_invalid_bytes(name, description, "alice", gen_pack(f), want);
}

/* A profile holding one entry {key: value}. */
static buf_t gen_profile1(const char *key, buf_t value)
{
    buf_t b = {0};
    mp_write_map_header(&b, 1);
    mp_write_str(&b, key, (uint32_t)strlen(key));
    buf_append(&b, value.data, value.len);
    buf_free(&value);
    return b;
}

/* `depth` containers, the profile map included, alternating maps {"m": ...}
 * and arrays [...], the innermost empty. */
static buf_t gen_deep(uint32_t depth)
{
    buf_t b = {0};
    for (uint32_t level = 1; level <= depth; level++) {
        bool is_map = level % 2 == 1;
        if (level == depth) {
            buf_append_byte(&b, is_map ? 0x80 : 0x90);
        } else if (is_map) {
            mp_write_map_header(&b, 1);
            mp_write_str(&b, "m", 1);
        } else {
            mp_write_array_header(&b, 1);
        }
    }
    return b;
}

static buf_t gen_many_keys(uint32_t n)
{
    buf_t b = {0};
    mp_write_map_header(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        char key[16];
        int len = snprintf(key, sizeof(key), "k%04u", i);
        mp_write_str(&b, key, (uint32_t)len);
        mp_write_uint(&b, i);
    }
    return b;
}

static buf_t gen_long_array(uint32_t n)
{
    buf_t arr = {0};
    mp_write_array_header(&arr, n);
    for (uint32_t i = 0; i < n; i++)
        mp_write_int(&arr, (int64_t)i - 500);
    return gen_profile1("list", arr);
}

static char *gen_repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void gen_all_valid(void)
{
    gen_env_t env = gen_default_env;
    buf_t p = {0};

    mp_write_map_header(&p, 0);
    gen_valid("empty_profile",
              "The smallest command: an empty profile, which clears the recipient's profile.", &env, &p,
              "{}");

    /* A Courier-shaped profile. */
    mp_write_map_header(&p, 7);
    mp_write_str(&p, "email", 5);
    mp_write_str(&p, "ada@example.com", 15);
    mp_write_str(&p, "email_verified", 14);
    mp_write_bool(&p, true);
    mp_write_str(&p, "phone_number", 12);
    mp_write_str(&p, "+15555550123", 12);
    mp_write_str(&p, "name", 4);
    mp_write_str(&p, "Ada Lovelace", 12);
    mp_write_str(&p, "address", 7);
    mp_write_map_header(&p, 4);
    mp_write_str(&p, "formatted", 9);
    mp_write_str(&p, "12 St James's Square, London", 28);
    mp_write_str(&p, "locality", 8);
    mp_write_str(&p, "London", 6);
    mp_write_str(&p, "postal_code", 11);
    mp_write_str(&p, "SW1Y 4JH", 8);
    mp_write_str(&p, "country", 7);
    mp_write_str(&p, "GB", 2);
    mp_write_str(&p, "locale", 6);
    mp_write_str(&p, "en-GB", 5);
    mp_write_str(&p, "custom", 6);
    mp_write_map_header(&p, 4);
    mp_write_str(&p, "plan", 4);
    mp_write_str(&p, "pro", 3);
    mp_write_str(&p, "seats", 5);
    mp_write_uint(&p, 25);
    mp_write_str(&p, "score", 5);
    mp_write_double(&p, 0.875);
    mp_write_str(&p, "tags", 4);
    mp_write_array_header(&p, 3);
    mp_write_str(&p, "beta", 4);
    mp_write_str(&p, "emea", 4);
    mp_write_nil(&p);
    env.source = "api";
    gen_valid(
        "typical", "A Courier-shaped profile as the api writes it (source \"api\", no version).", &env, &p,
        "{\"email\": \"ada@example.com\", \"email_verified\": true, \"phone_number\": \"+15555550123\", "
        "\"name\": \"Ada Lovelace\", \"address\": {\"formatted\": \"12 St James's Square, London\", "
        "\"locality\": \"London\", \"postal_code\": \"SW1Y 4JH\", \"country\": \"GB\"}, \"locale\": "
        "\"en-GB\", \"custom\": {\"plan\": \"pro\", \"seats\": 25, \"score\": 0.875, \"tags\": [\"beta\", "
        "\"emea\", null]}}");

    env = gen_default_env;
    env.has_version = true;
    env.version = 42;
    env.source = "crm-import";
    mp_write_map_header(&p, 1);
    mp_write_str(&p, "email", 5);
    mp_write_str(&p, "ada@example.com", 15);
    gen_valid("external_version", "A bulk producer's command with an external version (42) and a source tag.",
              &env, &p, NULL);

    env = gen_default_env;
    env.has_version = true;
    env.version = 0;
    mp_write_map_header(&p, 0);
    gen_valid("version_zero", "Version 0: present, and smaller than every other version (fixint 0).", &env,
              &p, NULL);

    env.version = UINT64_MAX;
    mp_write_map_header(&p, 0);
    gen_valid("version_uint64_max", "The largest version, 2^64-1, as uint 64.", &env, &p, NULL);

    env = gen_default_env;
    env.accepted_at_us = 0;
    mp_write_map_header(&p, 0);
    gen_valid("accepted_at_zero", "accepted_at_us 0 (the epoch), as a positive fixint.", &env, &p, NULL);

    env = gen_default_env;
    env.accepted_at_us = -1;
    mp_write_map_header(&p, 0);
    gen_valid("accepted_at_negative",
              "accepted_at_us -1: any int64 is accepted; negatives use the int forms.", &env, &p, NULL);

    env = gen_default_env;
    p = gen_deep(LIMITS_DEFAULT_MAX_DEPTH);
    gen_valid(
        "depth_at_limit",
        "Nesting exactly at the default limit: 32 containers, the profile map being the first, alternating "
        "maps and arrays.",
        &env, &p, NULL);

    /* Unicode: every UTF-8 length, astral characters, the edges. */
    mp_write_map_header(&p, 6);
    mp_write_str(&p, "caf\xc3\xa9", 5);
    mp_write_str(&p,
                 "cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
                 "e",
                 15);
    mp_write_str(&p, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9);
    mp_write_str(&p, "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85", 21);
    mp_write_str(&p, "emoji", 5);
    mp_write_str(&p, "\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", 12);
    mp_write_str(&p, "edges", 5);
    mp_write_str(&p, "\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 18);
    mp_write_str(&p, "separators", 10);
    mp_write_str(&p, "\xe2\x80\xa8\xe2\x80\xa9", 6);
    mp_write_str(&p, "\xf0\x9f\x94\x91", 4);
    mp_write_str(&p, "astral key", 10);
    gen_valid(
        "unicode",
        "Keys and strings in several scripts; emoji (surrogate pairs in JSON escapes); the edges U+0080, "
        "U+07FF, "
        "U+0800, U+FFFF, U+10000, U+10FFFF; U+2028/U+2029, which JSON leaves unescaped.",
        &env, &p,
        "{\"caf\\u00e9\": \"cr\\u00e8me br\\u00fbl\\u00e9e\", \"\\u65e5\\u672c\\u8a9e\": "
        "\"\\u041f\\u0440\\u0438\\u0432\\u0435\\u0442 \\u0633\\u0644\\u0627\\u0645\", \"emoji\": "
        "\"\\ud83d\\ude00\\ud83d\\udc4d\\ud83c\\udffd\", \"edges\": "
        "\"\\u0080\\u07ff\\u0800\\uffff\\ud800\\udc00\\udbff\\udfff\", \"separators\": \"\\u2028\\u2029\", "
        "\"\\ud83d\\udd11\": \"astral key\"}");

    /* Escapes: every control character, quote, backslash, slash, DEL. */
    {
        char controls[31];
        for (int i = 1; i < 0x20; i++)
            controls[i - 1] = (char)i;
        mp_write_map_header(&p, 4);
        mp_write_str(&p, "controls", 8);
        mp_write_str(&p, controls, 31);
        mp_write_str(&p, "quote\"back\\slash/", 17);
        mp_write_str(&p, "del\x7f", 4);
        mp_write_str(&p, "line\nbreak", 10);
        mp_write_str(&p, "tab\there", 8);
        mp_write_str(&p, "\"", 1);
        mp_write_str(&p, "\\", 1);
        gen_valid(
            "escapes",
            "Every control character U+0001..U+001F (short escapes where JSON has them, else \\u00XX), "
            "quote, "
            "backslash, slash (not escaped on output), DEL (not escaped).",
            &env, &p,
            "{\"controls\": \"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e"
            "\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b"
            "\\u001c\\u001d\\u001e\\u001f\", \"quote\\\"back\\\\slash\\/\": \"del\\u007f\", "
            "\"line\\nbreak\": \"tab\\there\", \"\\\"\": \"\\\\\"}");
    }

    /* Integers at every format boundary. */
    {
        static const struct {
            const char *key;
            int64_t v;
        } ints[] = {
            {"zero", 0},
            {"fixint_max", 127},
            {"uint8_min", 128},
            {"uint8_max", 255},
            {"uint16_min", 256},
            {"uint16_max", 65535},
            {"uint32_min", 65536},
            {"uint32_max", 4294967295LL},
            {"uint64_min", 4294967296LL},
            {"int64_max", INT64_MAX},
            {"neg_fixint_max", -1},
            {"neg_fixint_min", -32},
            {"int8_max", -33},
            {"int8_min", -128},
            {"int16_max", -129},
            {"int16_min", -32768},
            {"int32_max", -32769},
            {"int32_min", INT32_MIN},
            {"int64_max_neg", (int64_t)INT32_MIN - 1},
            {"int64_min", INT64_MIN},
        };
        size_t n = sizeof(ints) / sizeof(ints[0]);
        mp_write_map_header(&p, (uint32_t)n + 1);
        for (size_t i = 0; i < n; i++) {
            mp_write_str(&p, ints[i].key, (uint32_t)strlen(ints[i].key));
            mp_write_int(&p, ints[i].v);
        }
        mp_write_str(&p, "uint64_max", 10);
        mp_write_uint(&p, UINT64_MAX);
        gen_valid(
            "integers",
            "Integers at every msgpack format boundary, int64 min and max, uint64 max: exact in both "
            "directions.",
            &env, &p,
            "{\"zero\": 0, \"fixint_max\": 127, \"uint8_min\": 128, \"uint8_max\": 255, \"uint16_min\": 256, "
            "\"uint16_max\": 65535, \"uint32_min\": 65536, \"uint32_max\": 4294967295, \"uint64_min\": "
            "4294967296, \"int64_max\": 9223372036854775807, \"neg_fixint_max\": -1, \"neg_fixint_min\": "
            "-32, "
            "\"int8_max\": -33, \"int8_min\": -128, \"int16_max\": -129, \"int16_min\": -32768, "
            "\"int32_max\": "
            "-32769, \"int32_min\": -2147483648, \"int64_max_neg\": -2147483649, \"int64_min\": "
            "-9223372036854775808, \"uint64_max\": 18446744073709551615}");
    }

    mp_write_map_header(&p, 4);
    mp_write_str(&p, "int", 3);
    mp_write_uint(&p, 0);
    mp_write_str(&p, "float", 5);
    mp_write_double(&p, -0.0);
    mp_write_str(&p, "exponent", 8);
    mp_write_double(&p, -0.0);
    mp_write_str(&p, "fraction_zero", 13);
    mp_write_double(&p, 0.0);
    gen_valid("negative_zero",
              "JSON -0 is the integer 0; -0.0 and -0e0 are the float -0.0, written back as -0.0; 0.0 stays a "
              "float.",
              &env, &p, "{\"int\": -0, \"float\": -0.0, \"exponent\": -0e0, \"fraction_zero\": 0.0}");

    {
        static const struct {
            const char *key;
            double v;
        } doubles[] = {
            {"min_subnormal", 5e-324},
            {"max_subnormal", 2.225073858507201e-308},
            {"min_normal", 2.2250738585072014e-308},
            {"max", 1.7976931348623157e308},
            {"negative_max", -1.7976931348623157e308},
            {"tiny_negative", -1e-300},
            {"tenth", 0.1},
            {"sum", 0.30000000000000004},
            {"third", 1.0 / 3.0},
            {"half", 1.5},
            {"integral", 100.0},
            {"one", 1.0},
            {"two_pow_53", 9007199254740992.0},
            {"e16", 1e16},
            {"e20", 1e20},
            {"e21", 1e21},
            {"e_minus_6", 1e-6},
            {"e_minus_7", 1e-7},
            {"beyond_uint64", 18446744073709551616.0},
            {"price", 19.99},
            {"latitude", 51.507351},
            {"e_plus_100", 1e100},
        };
        size_t n = sizeof(doubles) / sizeof(doubles[0]);
        mp_write_map_header(&p, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
            mp_write_str(&p, doubles[i].key, (uint32_t)strlen(doubles[i].key));
            mp_write_double(&p, doubles[i].v);
        }
        gen_valid(
            "doubles",
            "Small, huge and ordinary doubles, written back in the shortest form that reads back the same "
            "(ECMAScript layout, .0 on integral values); 18446744073709551616 does not fit uint64 and is a "
            "float.",
            &env, &p,
            "{\"min_subnormal\": 4.9406564584124654e-324, \"max_subnormal\": 2.225073858507201e-308, "
            "\"min_normal\": 2.2250738585072014E-308, \"max\": 1.7976931348623157e308, \"negative_max\": "
            "-1.7976931348623157e+308, \"tiny_negative\": -1e-300, \"tenth\": 0.1, \"sum\": "
            "0.30000000000000004, \"third\": 0.3333333333333333, \"half\": 1.5, \"integral\": 1e2, \"one\": "
            "1.0, \"two_pow_53\": 9007199254740992.0, \"e16\": 1e16, \"e20\": 100000000000000000000.0, "
            "\"e21\": "
            "1e21, \"e_minus_6\": 0.000001, \"e_minus_7\": 1e-7, \"beyond_uint64\": 18446744073709551616, "
            "\"price\": 19.99, \"latitude\": 51.507351, \"e_plus_100\": 1E+100}");
    }

    p = gen_many_keys(LIMITS_DEFAULT_MAX_KEYS);
    gen_valid("many_keys", "1000 keys, the default limit (map 16).", &env, &p, NULL);

    p = gen_long_array(LIMITS_DEFAULT_MAX_KEYS);
    gen_valid("long_array", "An array of 1000 elements, the default limit (array 16).", &env, &p, NULL);

    {
        char *key = gen_repeat('k', LIMITS_DEFAULT_MAX_KEY_BYTES);
        char *big = gen_repeat('s', LIMITS_DEFAULT_MAX_STRING_BYTES);
        mp_write_map_header(&p, 5);
        mp_write_str(&p, key, LIMITS_DEFAULT_MAX_KEY_BYTES);
        mp_write_str(&p, "key of 256 bytes", 16);
        mp_write_str(&p, "str8", 4);
        mp_write_str(&p, big, 32);
        mp_write_str(&p, "str16", 5);
        mp_write_str(&p, big, 256);
        mp_write_str(&p, "str32", 5);
        mp_write_str(&p, big, LIMITS_DEFAULT_MAX_STRING_BYTES);
        mp_write_str(&p, "fixstr", 6);
        mp_write_str(&p, big, 31);
        gen_valid(
            "long_strings",
            "A key of 256 bytes and a string of 65536 bytes (the default limits, str 32), and strings at the "
            "fixstr/str 8/str 16 boundaries.",
            &env, &p, NULL);
        free(key);
        free(big);
    }

    mp_write_map_header(&p, 6);
    mp_write_str(&p, "null", 4);
    mp_write_nil(&p);
    mp_write_str(&p, "true", 4);
    mp_write_bool(&p, true);
    mp_write_str(&p, "false", 5);
    mp_write_bool(&p, false);
    mp_write_str(&p, "empty_array", 11);
    mp_write_array_header(&p, 0);
    mp_write_str(&p, "empty_object", 12);
    mp_write_map_header(&p, 0);
    mp_write_str(&p, "", 0);
    mp_write_array_header(&p, 2);
    mp_write_map_header(&p, 0);
    mp_write_array_header(&p, 0);
    gen_valid(
        "scalars_and_empties", "null, true, false, empty containers, and the empty key.", &env, &p,
        "{\"null\": null, \"true\": true, \"false\": false, \"empty_array\": [], \"empty_object\": {}, \"\": "
        "[{}, []]}");

    mp_write_map_header(&p, 2);
    mp_write_str(&p, "a", 1);
    mp_write_uint(&p, 3);
    mp_write_str(&p, "b", 1);
    mp_write_uint(&p, 2);
    gen_valid("duplicate_keys_request",
              "A request with a key given twice: the key keeps its first position and its last value.", &env,
              &p, "{\"a\": 1, \"b\": 2, \"a\": 3}");

    env.recipient = "Zo\xc3\xab/\xc3\xbcn\xc3\xaf"
                    "c\xc3\xb6"
                    "d\xc3\xa9 id \xf0\x9f\x99\x82?#%";
    mp_write_map_header(&p, 0);
    gen_valid(
        "recipient_unicode",
        "A recipient id with non-ASCII text, a slash, spaces and URL-special characters; the key is its "
        "UTF-8 bytes.",
        &env, &p, NULL);

    {
        /* 256 bytes: 63 four-byte characters and 4 ASCII ones. */
        char id[257];
        size_t n = 0;
        for (int i = 0; i < 63; i++) {
            memcpy(id + n, "\xf0\x9f\x98\x80", 4);
            n += 4;
        }
        memcpy(id + n, "abcd", 4);
        n += 4;
        id[n] = '\0';
        env.recipient = id;
        mp_write_map_header(&p, 0);
        gen_valid("recipient_max_length",
                  "A recipient id of exactly 256 bytes, multi-byte characters included.", &env, &p, NULL);
    }

    env = gen_default_env;
    env.has_version = true;
    env.version = 1700000000;
    env.source = "\xc3\xa9tl-2024 \xe2\x86\x92 profiled";
    mp_write_map_header(&p, 1);
    mp_write_str(&p, "locale", 6);
    mp_write_str(&p, "fr-FR", 5);
    gen_valid("all_fields", "Every field, the optional ones included, in canonical order (map of 8).", &env,
              &p, NULL);
}

static void gen_noncanonical(const char *name, const char *description, buf_t bytes)
{
    gen_meaningful("noncanonical", name, description, "alice", &bytes, NULL);
    buf_free(&bytes);
}

/* ---- the kinds merge, patch and delete (proto/README.md §1, §3.3) ---- */

/* One patch operation map, members in canonical order; NULL leaves one out. */
static void gen_op(buf_t *b, const char *op, const char *path, const char *from, const buf_t *value)
{
    mp_write_map_header(b, 2 + (from ? 1 : 0) + (value ? 1 : 0));
    mp_write_str(b, "op", 2);
    mp_write_str(b, op, (uint32_t)strlen(op));
    mp_write_str(b, "path", 4);
    mp_write_str(b, path, (uint32_t)strlen(path));
    if (from) {
        mp_write_str(b, "from", 4);
        mp_write_str(b, from, (uint32_t)strlen(from));
    }
    if (value) {
        mp_write_str(b, "value", 5);
        buf_append(b, value->data, value->len);
    }
}

static void gen_all_valid_kinds(void)
{
    gen_env_t env = gen_default_env;
    buf_t p = {0}, v = {0};

    /* merge: a null removes a key, an object merges into the stored one. */
    mp_write_map_header(&p, 3);
    mp_write_str(&p, "email", 5);
    mp_write_str(&p, "ada@example.com", 15);
    mp_write_str(&p, "phone_number", 12);
    mp_write_nil(&p);
    mp_write_str(&p, "custom", 6);
    mp_write_map_header(&p, 1);
    mp_write_str(&p, "plan", 4);
    mp_write_str(&p, "pro", 3);
    env.source = "api";
    gen_valid_kind(
        "merge_typical",
        "A merge as the api writes it for POST: email set, phone_number removed (null), custom.plan "
        "merged into the stored custom object.",
        &env, CODEC_OP_MERGE, &p, NULL);
    env = gen_default_env;
    env.has_version = true;
    env.version = 7;
    env.source = "crm-import";
    mp_write_map_header(&p, 0);
    gen_valid_kind("merge_empty_versioned",
                   "An empty merge with a version: it changes only the stored version.", &env, CODEC_OP_MERGE,
                   &p, NULL);

    /* patch: all six operations, and the ~0 / ~1 escapes of RFC 6901. */
    env = gen_default_env;
    env.source = "api";
    mp_write_array_header(&p, 6);
    buf_reset(&v);
    mp_write_str(&v, "ada@example.com", 15);
    gen_op(&p, "test", "/email", NULL, &v);
    buf_reset(&v);
    mp_write_str(&v, "+15555550123", 12);
    gen_op(&p, "replace", "/phone_number", NULL, &v);
    buf_reset(&v);
    mp_write_uint(&v, 1);
    gen_op(&p, "add", "/custom/a~1b~0c", NULL, &v);
    gen_op(&p, "copy", "/custom/tags/-", "/locale", NULL);
    gen_op(&p, "move", "/custom/old_plan", "/custom/plan", NULL);
    gen_op(&p, "remove", "/custom/tags/0", NULL, NULL);
    gen_valid_kind("patch_all_ops",
                   "A patch with each of the six operations; \"/custom/a~1b~0c\" names the key \"a/b~c\", "
                   "\"-\" the end of an array.",
                   &env, CODEC_OP_PATCH, &p, NULL);
    env = gen_default_env;
    mp_write_array_header(&p, 0);
    gen_valid_kind("patch_empty", "A patch of no operations: it applies and changes nothing.", &env,
                   CODEC_OP_PATCH, &p, NULL);

    /* delete: no body field, so a map of 5 (6 with a version). */
    env = gen_default_env;
    env.source = "api";
    gen_valid_kind("delete_plain", "A delete as the api writes it for DELETE: no body field.", &env,
                   CODEC_OP_DELETE, &p, NULL);
    env = gen_default_env;
    env.has_version = true;
    env.version = 9;
    gen_valid_kind("delete_versioned", "A versioned delete: it applies only over older versions.", &env,
                   CODEC_OP_DELETE, &p, NULL);
    buf_free(&v);
}

static void gen_all_noncanonical_kinds(void)
{
    gen_fields_t f;
    buf_t p = {0}, v = {0};

    /* patch members in another order, and an unknown member (ignored, RFC 6902 §4). */
    mp_write_array_header(&p, 1);
    mp_write_map_header(&p, 4);
    mp_write_str(&p, "value", 5);
    mp_write_uint(&p, 3);
    mp_write_str(&p, "comment", 7);
    mp_write_str(&p, "ignored", 7);
    mp_write_str(&p, "path", 4);
    mp_write_str(&p, "/seats", 6);
    mp_write_str(&p, "op", 2);
    mp_write_str(&p, "add", 3);
    f = gen_fields("patch_member_order", gen_empty_map());
    gen_set(&f, "op", gen_str("patch"));
    gen_drop(&f, "profile");
    gen_add(&f, gen_str("patch"), p);
    gen_noncanonical(
        "patch_member_order",
        "A patch operation with value, an unknown member and path before op: same meaning as the "
        "canonical {op, path, value}.",
        gen_pack(&f));

    /* a delete carrying a profile: the field is not read (as an unknown field). */
    f = gen_fields("delete_with_profile", gen_profile1("email", gen_str("x@example.com")));
    gen_set(&f, "op", gen_str("delete"));
    gen_noncanonical("delete_with_profile",
                     "A delete that also carries a profile field: the profile is ignored.", gen_pack(&f));
    buf_free(&v);
}

/* A patch command whose patch field is `patch`. */
static void gen_invalid_patch(const char *name, const char *description, buf_t patch, codec_error_t want)
{
    gen_fields_t f = gen_fields(name, gen_empty_map());
    gen_set(&f, "op", gen_str("patch"));
    gen_drop(&f, "profile");
    gen_add(&f, gen_str("patch"), patch);
    gen_invalid(name, description, &f, want);
}

static void gen_all_invalid_kinds(void)
{
    gen_fields_t f;
    buf_t p = {0}, v = {0};

    f = gen_fields("merge_missing_profile", gen_empty_map());
    gen_set(&f, "op", gen_str("merge"));
    gen_drop(&f, "profile");
    gen_invalid("merge_missing_profile", "A merge without its profile.", &f, CODEC_ERR_MISSING_FIELD);
    f = gen_fields("patch_missing", gen_empty_map());
    gen_set(&f, "op", gen_str("patch"));
    gen_invalid("patch_missing", "A patch with a profile but no patch field.", &f, CODEC_ERR_MISSING_FIELD);
    gen_invalid_patch("patch_not_array", "patch is a map, not an array of operations.", gen_empty_map(),
                      CODEC_ERR_WRONG_TYPE);

    mp_write_array_header(&p, 1);
    gen_op(&p, "increment", "/seats", NULL, NULL);
    gen_invalid_patch("patch_unknown_op", "An operation that is none of the six.", p, CODEC_ERR_BAD_PATCH);
    p = (buf_t){0};
    mp_write_array_header(&p, 1);
    gen_op(&p, "remove", "/a~2b", NULL, NULL);
    gen_invalid_patch("patch_bad_escape", "A pointer with \"~2\", which RFC 6901 does not define.", p,
                      CODEC_ERR_BAD_PATCH);
    p = (buf_t){0};
    mp_write_array_header(&p, 1);
    gen_op(&p, "remove", "email", NULL, NULL);
    gen_invalid_patch("patch_pointer_no_slash", "A non-empty pointer must start with \"/\".", p,
                      CODEC_ERR_BAD_PATCH);
    p = (buf_t){0};
    mp_write_array_header(&p, 1);
    gen_op(&p, "add", "/seats", NULL, NULL);
    gen_invalid_patch("patch_add_without_value", "add needs a value.", p, CODEC_ERR_BAD_PATCH);
    p = (buf_t){0};
    mp_write_array_header(&p, 1);
    gen_op(&p, "copy", "/b", NULL, NULL);
    gen_invalid_patch("patch_copy_without_from", "copy needs a from.", p, CODEC_ERR_BAD_PATCH);
    p = (buf_t){0};
    mp_write_array_header(&p, 1);
    gen_op(&p, "move", "/a/b", "/a", NULL);
    gen_invalid_patch("patch_move_into_child", "A location cannot be moved into one of its own children.", p,
                      CODEC_ERR_BAD_PATCH);
    p = (buf_t){0};
    mp_write_array_header(&p, 2);
    gen_op(&p, "remove", "/a", NULL, NULL);
    buf_append_byte(&p, 0x93); /* an operation that is an array */
    buf_append(&p, "\x01\x02\x03", 3);
    gen_invalid_patch("patch_op_not_map", "The second operation is an array.", p, CODEC_ERR_BAD_PATCH);
    p = (buf_t){0};
    mp_write_array_header(&p, 1);
    buf_reset(&v);
    buf_append(&v, "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9); /* NaN */
    gen_op(&p, "add", "/score", NULL, &v);
    gen_invalid_patch("patch_value_nan", "A patch value follows the profile rules: no NaN.", p,
                      CODEC_ERR_NON_FINITE_NUMBER);
    buf_free(&v);
}

static void gen_all_noncanonical(void)
{
    gen_fields_t f;
    buf_t p = {0};

    /* Ints in wider forms than needed, positive values in signed forms. */
    mp_write_map_header(&p, 5);
    mp_write_str(&p, "one_as_uint32", 13);
    buf_append(&p, "\xce\x00\x00\x00\x01", 5);
    mp_write_str(&p, "minus_one_as_int64", 18);
    buf_append(&p, "\xd3\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    mp_write_str(&p, "five_as_int8", 12);
    buf_append(&p, "\xd0\x05", 2);
    mp_write_str(&p, "two_hundred_as_uint64", 21);
    buf_append(&p, "\xcf\x00\x00\x00\x00\x00\x00\x00\xc8", 9);
    mp_write_str(&p, "max_as_int64", 12);
    buf_append(&p, "\xd3\x7f\xff\xff\xff\xff\xff\xff\xff", 9);
    f = gen_fields("int_forms", p);
    p = (buf_t){0};
    gen_set(&f, "schema", gen_raw("\xcc\x01", 2));
    gen_set(&f, "accepted_at_us", gen_raw("\xd3\x00\x06\x0a\x24\x18\x1e\x40\x00", 9));
    gen_noncanonical(
        "int_forms",
        "Integers in wider forms than the smallest (schema as uint 8, accepted_at_us as int 64), "
        "positive values in signed forms.",
        gen_pack(&f));

    mp_write_map_header(&p, 3);
    mp_write_str(&p, "one_and_a_half", 14);
    buf_append(&p, "\xca\x3f\xc0\x00\x00", 5);
    mp_write_str(&p, "tenth_f32", 9);
    buf_append(&p, "\xca\x3d\xcc\xcc\xcd", 5);
    mp_write_str(&p, "negative_zero_f32", 17);
    buf_append(&p, "\xca\x80\x00\x00\x00", 5);
    f = gen_fields("float32", p);
    p = (buf_t){0};
    gen_noncanonical(
        "float32",
        "float 32 values, widened to doubles (0.1f is 0.10000000149011612); the encoder never writes "
        "float 32.",
        gen_pack(&f));

    /* Headers in wider forms: map 16 and map 32, array 32, str 8 for short
     * text, bin 16 for the id. */
    buf_append(&p, "\xdf\x00\x00\x00\x02", 5);
    buf_append(&p,
               "\xd9\x01"
               "a",
               3);
    buf_append(&p, "\xdd\x00\x00\x00\x01\x01", 6);
    buf_append(&p,
               "\xda\x00\x01"
               "b",
               4);
    buf_append(&p, "\xde\x00\x00", 3);
    f = gen_fields("wide_headers", p);
    p = (buf_t){0};
    {
        uint8_t id[16];
        gen_id("wide_headers", id);
        buf_t bin = {0};
        buf_append(&bin, "\xc5\x00\x10", 3);
        buf_append(&bin, id, 16);
        gen_set(&f, "command_id", bin);
        gen_set(&f, "op", gen_raw("\xd9\x07replace", 9));
    }
    {
        buf_t b = gen_pack(&f);
        /* The command map itself as map 16. */
        buf_t wide = {0};
        buf_append(&wide, "\xde\x00\x06", 3);
        buf_append(&wide, b.data + 1, b.len - 1);
        buf_free(&b);
        gen_noncanonical(
            "wide_headers",
            "Map 16 for the command, map 32/array 32/map 16 and str 8/str 16 in the profile, bin 16 for "
            "the id: all wider than needed.",
            wide);
    }

    /* Fields in another order: profile first, schema last. */
    {
        gen_fields_t g = gen_fields("field_order", gen_profile1("email", gen_str("ada@example.com")));
        gen_fields_t r = {0};
        for (size_t i = g.count; i-- > 0;) {
            r.name[r.count] = g.name[i];
            r.value[r.count] = g.value[i];
            r.count++;
        }
        gen_noncanonical("field_order", "The fields in reverse order: profile first, schema last.",
                         gen_pack(&r));
    }

    f = gen_fields("unknown_fields", gen_empty_map());
    gen_add(&f, gen_str("trace_id"), gen_str("4bf92f3577b34da6a3ce929d0e0e4736"));
    {
        buf_t nested = {0};
        mp_write_map_header(&nested, 2);
        mp_write_str(&nested, "nested", 6);
        mp_write_array_header(&nested, 2);
        mp_write_uint(&nested, 1);
        buf_append(&nested, "\xc4\x01\x00", 3); /* bin: fine outside the profile */
        mp_write_str(&nested, "ts", 2);
        buf_append(&nested, "\xd6\xff\x65\x53\xf1\x00", 6); /* timestamp ext */
        gen_add(&f, gen_str("x-future-field"), nested);
    }
    gen_noncanonical(
        "unknown_fields",
        "Unknown fields (a str, and a map holding bin and ext values) are ignored whatever they hold.",
        gen_pack(&f));

    f = gen_fields("nil_optionals", gen_empty_map());
    gen_add(&f, gen_str("version"), gen_raw("\xc0", 1));
    gen_add(&f, gen_str("source"), gen_raw("\xc0", 1));
    gen_noncanonical("nil_optionals", "version and source given as nil: the same as absent.", gen_pack(&f));

    mp_write_map_header(&p, 2);
    mp_write_str(&p, "a", 1);
    mp_write_uint(&p, 1);
    mp_write_str(&p, "a", 1);
    mp_write_uint(&p, 2);
    f = gen_fields("duplicate_profile_keys", p);
    p = (buf_t){0};
    gen_noncanonical(
        "duplicate_profile_keys",
        "A profile map with a key twice: both entries are written, and jsonb keeps the last (2).",
        gen_pack(&f));
}

static void gen_profile_invalid(const char *name, const char *description, buf_t profile, codec_error_t want)
{
    gen_fields_t f = gen_fields(name, profile);
    gen_invalid(name, description, &f, want);
}

static void gen_all_invalid(void)
{
    gen_fields_t f;
    buf_t good;

    /* Structure. */
    gen_invalid_bytes("empty", "Zero bytes.", "alice", (buf_t){0}, CODEC_ERR_MALFORMED);
    f = gen_fields("truncated", gen_profile1("email", gen_str("ada@example.com")));
    good = gen_pack(&f);
    {
        buf_t half = {0}, short1 = {0}, in_header = {0};
        buf_append(&half, good.data, good.len / 2);
        buf_append(&short1, good.data, good.len - 1);
        gen_invalid_bytes("truncated_half", "A valid command cut in half.", "alice", half,
                          CODEC_ERR_MALFORMED);
        gen_invalid_bytes("truncated_last_byte", "A valid command without its last byte.", "alice", short1,
                          CODEC_ERR_MALFORMED);
        buf_append(&in_header, "\x86\xa6schema\x01\xa2op\xda\x00", 15);
        gen_invalid_bytes("truncated_in_length", "Cut inside a str 16 length field.", "alice", in_header,
                          CODEC_ERR_MALFORMED);
        buf_t trailing = {0}, twice = {0};
        buf_append(&trailing, good.data, good.len);
        buf_append_byte(&trailing, 0xc0);
        gen_invalid_bytes("trailing_bytes", "A valid command followed by one nil byte.", "alice", trailing,
                          CODEC_ERR_TRAILING_BYTES);
        buf_append(&twice, good.data, good.len);
        buf_append(&twice, good.data, good.len);
        gen_invalid_bytes("trailing_second_command", "Two commands in one record.", "alice", twice,
                          CODEC_ERR_TRAILING_BYTES);
    }
    buf_free(&good);
    gen_profile_invalid("reserved_byte", "The never-used byte 0xc1 as a profile value.",
                        gen_profile1("x", gen_raw("\xc1", 1)), CODEC_ERR_MALFORMED);
    gen_profile_invalid("huge_claimed_length", "A str 32 claiming 4 GiB, with 1 byte behind it.",
                        gen_profile1("x", gen_raw("\xdb\xff\xff\xff\xff"
                                                  "a",
                                                  6)),
                        CODEC_ERR_MALFORMED);
    gen_profile_invalid("huge_claimed_count", "A map 32 claiming 2^32-1 entries.",
                        gen_profile1("x", gen_raw("\xdf\xff\xff\xff\xff\xc0\xc0", 7)), CODEC_ERR_MALFORMED);
    gen_invalid_bytes("not_a_map_array", "An array of the six values instead of a map.", "alice",
                      gen_raw("\x96\x01\xa7replace\xc4\x01\x01\xa5\x61lice\x01\x80", 21),
                      CODEC_ERR_NOT_A_MAP);
    gen_invalid_bytes("not_a_map_str", "A JSON text sent as a msgpack str.", "alice",
                      gen_str("{\"profile\":{}}"), CODEC_ERR_NOT_A_MAP);
    gen_invalid_bytes("not_a_map_json",
                      "JSON text instead of msgpack: '{' (0x7b) reads as the int 123, then "
                      "trailing bytes follow.",
                      "alice", gen_raw("{\"profile\":{}}", 14), CODEC_ERR_TRAILING_BYTES);
    gen_invalid_bytes("not_a_map_nil", "A lone nil.", "alice", gen_raw("\xc0", 1), CODEC_ERR_NOT_A_MAP);
    gen_invalid_bytes("precedence_trailing_over_not_a_map",
                      "An empty array followed by a byte: trailing bytes are "
                      "checked before the type.",
                      "alice", gen_raw("\x90\x90", 2), CODEC_ERR_TRAILING_BYTES);

    /* Field names. */
    f = gen_fields("non_string_field_name", gen_empty_map());
    gen_add(&f, gen_uint(1), gen_str("x"));
    gen_invalid("non_string_field_name", "A command field named by an int.", &f, CODEC_ERR_NON_STRING_KEY);
    f = gen_fields("duplicate_field", gen_empty_map());
    gen_add(&f, gen_str("op"), gen_str("replace"));
    gen_invalid("duplicate_field", "op given twice (even with the same value).", &f,
                CODEC_ERR_DUPLICATE_FIELD);

    /* Each required field missing. */
    static const char *const required[] = {"schema",         "op",     "command_id", "recipient_id",
                                           "accepted_at_us", "profile"};
    for (size_t i = 0; i < 6; i++) {
        char name[64], description[96];
        snprintf(name, sizeof(name), "missing_%s", required[i]);
        snprintf(description, sizeof(description), "No %s field.", required[i]);
        f = gen_fields(name, gen_empty_map());
        gen_drop(&f, required[i]);
        gen_invalid(name, description, &f, CODEC_ERR_MISSING_FIELD);
    }

    /* Wrong types. */
    static const struct {
        const char *name, *field, *description;
        const char *value;
        size_t len;
    } wrong[] = {
        {"wrong_type_schema_str", "schema", "schema as the str \"1\".",
         "\xa1"
         "1",
         2},
        {"wrong_type_schema_float", "schema", "schema as the float 1.0.",
         "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9},
        {"wrong_type_schema_nil", "schema", "schema nil.", "\xc0", 1},
        {"wrong_type_op", "op", "op as an int.", "\x01", 1},
        {"wrong_type_command_id_str", "command_id", "command_id as a str of 32 hex digits.",
         "\xd9\x20"
         "0123456789abcdef0123456789abcdef",
         34},
        {"wrong_type_recipient_id_bin", "recipient_id", "recipient_id as bin.",
         "\xc4\x05"
         "alice",
         7},
        {"wrong_type_accepted_at_us_float", "accepted_at_us", "accepted_at_us as a float.",
         "\xcb\x43\x18\x27\x04\x5b\x85\x00\x00", 9},
        {"wrong_type_accepted_at_us_over_int64", "accepted_at_us", "accepted_at_us 2^64-1: beyond int64.",
         "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9},
        {"wrong_type_profile_array", "profile", "profile as an array.", "\x90", 1},
        {"wrong_type_profile_nil", "profile", "profile nil: a required field cannot be nil.", "\xc0", 1},
        {"wrong_type_profile_json_text", "profile", "profile as a str of JSON text.", "\xa2{}", 3},
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        f = gen_fields(wrong[i].name, gen_empty_map());
        gen_set(&f, wrong[i].field, gen_raw(wrong[i].value, wrong[i].len));
        gen_invalid(wrong[i].name, wrong[i].description, &f, CODEC_ERR_WRONG_TYPE);
    }
    f = gen_fields("wrong_type_version_negative", gen_empty_map());
    gen_add(&f, gen_str("version"), gen_int(-1));
    gen_invalid("wrong_type_version_negative", "version -1.", &f, CODEC_ERR_WRONG_TYPE);
    f = gen_fields("wrong_type_version_str", gen_empty_map());
    gen_add(&f, gen_str("version"), gen_str("42"));
    gen_invalid("wrong_type_version_str", "version as the str \"42\".", &f, CODEC_ERR_WRONG_TYPE);
    f = gen_fields("wrong_type_source", gen_empty_map());
    gen_add(&f, gen_str("source"), gen_uint(7));
    gen_invalid("wrong_type_source", "source as an int.", &f, CODEC_ERR_WRONG_TYPE);

    /* Schema and operation. */
    f = gen_fields("unknown_schema_version", gen_empty_map());
    gen_set(&f, "schema", gen_uint(2));
    gen_invalid("unknown_schema_version", "schema 2, otherwise a valid schema 1 command.", &f,
                CODEC_ERR_UNKNOWN_SCHEMA_VERSION);
    f = gen_fields("unknown_schema_version_zero", gen_empty_map());
    gen_set(&f, "schema", gen_uint(0));
    gen_invalid("unknown_schema_version_zero", "schema 0.", &f, CODEC_ERR_UNKNOWN_SCHEMA_VERSION);
    {
        gen_fields_t v2 = {0};
        gen_add(&v2, gen_str("schema"), gen_uint(2));
        gen_add(&v2, gen_str("ops"), gen_raw("\x90", 1));
        gen_invalid("unknown_schema_version_other_shape",
                    "schema 2 with none of schema 1's other fields: the version is recognised first.", &v2,
                    CODEC_ERR_UNKNOWN_SCHEMA_VERSION);
    }
    f = gen_fields("unknown_operation", gen_empty_map());
    gen_set(&f, "op", gen_str("upsert"));
    gen_invalid("unknown_operation", "op \"upsert\": not one of the four kinds.", &f,
                CODEC_ERR_UNKNOWN_OPERATION);
    gen_all_invalid_kinds();
    f = gen_fields("unknown_operation_case", gen_empty_map());
    gen_set(&f, "op", gen_str("Replace"));
    gen_invalid("unknown_operation_case", "op \"Replace\": names are case-sensitive.", &f,
                CODEC_ERR_UNKNOWN_OPERATION);
    f = gen_fields("precedence_schema_over_op", gen_empty_map());
    gen_set(&f, "schema", gen_uint(3));
    gen_set(&f, "op", gen_str("merge"));
    gen_invalid("precedence_schema_over_op", "schema 3 and op \"merge\": the schema is checked first.", &f,
                CODEC_ERR_UNKNOWN_SCHEMA_VERSION);

    /* command_id. */
    {
        static const uint8_t zero[17] = {0};
        uint8_t id[17];
        gen_id("command_id", id);
        id[16] = 0x42;
        f = gen_fields("command_id_15_bytes", gen_empty_map());
        gen_set(&f, "command_id", gen_bin(id, 15));
        gen_invalid("command_id_15_bytes", "A 15-byte command id.", &f, CODEC_ERR_BAD_COMMAND_ID);
        f = gen_fields("command_id_17_bytes", gen_empty_map());
        gen_set(&f, "command_id", gen_bin(id, 17));
        gen_invalid("command_id_17_bytes", "A 17-byte command id.", &f, CODEC_ERR_BAD_COMMAND_ID);
        f = gen_fields("command_id_all_zero", gen_empty_map());
        gen_set(&f, "command_id", gen_bin(zero, 16));
        gen_invalid("command_id_all_zero",
                    "An all-zero command id (an unfilled id would make every later command "
                    "a replay).",
                    &f, CODEC_ERR_BAD_COMMAND_ID);
    }

    /* recipient_id and the key. */
    {
        char *long_id = gen_repeat('r', 257);
        f = gen_fields("recipient_id_empty", gen_empty_map());
        gen_set(&f, "recipient_id", gen_str(""));
        gen_invalid_bytes("recipient_id_empty", "An empty recipient id (and an empty key).", "", gen_pack(&f),
                          CODEC_ERR_BAD_RECIPIENT_ID);
        f = gen_fields("recipient_id_257_bytes", gen_empty_map());
        gen_set(&f, "recipient_id", gen_str(long_id));
        gen_invalid_bytes("recipient_id_257_bytes", "A recipient id of 257 bytes (the key too).", long_id,
                          gen_pack(&f), CODEC_ERR_BAD_RECIPIENT_ID);
        free(long_id);
        f = gen_fields("recipient_id_invalid_utf8", gen_empty_map());
        gen_set(&f, "recipient_id", gen_strn("al\xffice", 6));
        gen_invalid("recipient_id_invalid_utf8", "A recipient id with the byte 0xff.", &f,
                    CODEC_ERR_BAD_RECIPIENT_ID);
        f = gen_fields("recipient_id_nul", gen_empty_map());
        gen_set(&f, "recipient_id", gen_strn("ali\0ce", 6));
        gen_invalid("recipient_id_nul", "A recipient id holding U+0000 (PostgreSQL text cannot store it).",
                    &f, CODEC_ERR_BAD_RECIPIENT_ID);
        f = gen_fields("recipient_id_wrong_type_before_key", gen_empty_map());
        gen_set(&f, "recipient_id", gen_uint(5));
        gen_invalid_bytes("recipient_id_wrong_type_before_key",
                          "recipient_id an int and the key different: the type "
                          "is checked first.",
                          "bob", gen_pack(&f), CODEC_ERR_WRONG_TYPE);
    }
    static const struct {
        const char *name, *key, *description;
    } keys[] = {
        {"key_mismatch", "bob", "The key is another recipient."},
        {"key_mismatch_case", "Alice", "The key differs in case only: ids are compared byte for byte."},
        {"key_mismatch_prefix", "alic", "The key is a prefix of the recipient id."},
        {"key_mismatch_longer", "alice ", "The key has a trailing space."},
        {"key_missing", NULL, "The record has no key."},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        f = gen_fields(keys[i].name, gen_empty_map());
        gen_invalid_bytes(keys[i].name, keys[i].description, keys[i].key, gen_pack(&f),
                          CODEC_ERR_KEY_MISMATCH);
    }

    /* source. */
    {
        char *long_source = gen_repeat('s', 129);
        f = gen_fields("source_too_long", gen_empty_map());
        gen_add(&f, gen_str("source"), gen_str(long_source));
        gen_invalid("source_too_long", "A source tag of 129 bytes.", &f, CODEC_ERR_BAD_SOURCE);
        free(long_source);
        f = gen_fields("source_invalid_utf8", gen_empty_map());
        gen_add(&f, gen_str("source"), gen_strn("crm\xc3", 4));
        gen_invalid("source_invalid_utf8", "A source tag ending in half a character.", &f,
                    CODEC_ERR_BAD_SOURCE);
    }

    /* Profile limits. */
    gen_profile_invalid("depth_over_limit", "33 nested containers, one more than the default limit.",
                        gen_deep(LIMITS_DEFAULT_MAX_DEPTH + 1), CODEC_ERR_LIMIT);
    gen_profile_invalid("too_many_keys", "1001 keys, one more than the default limit.",
                        gen_many_keys(LIMITS_DEFAULT_MAX_KEYS + 1), CODEC_ERR_LIMIT);
    gen_profile_invalid("array_too_long", "An array of 1001 elements.",
                        gen_long_array(LIMITS_DEFAULT_MAX_KEYS + 1), CODEC_ERR_LIMIT);
    {
        char *key = gen_repeat('k', LIMITS_DEFAULT_MAX_KEY_BYTES + 1);
        char *big = gen_repeat('s', LIMITS_DEFAULT_MAX_STRING_BYTES + 1);
        gen_profile_invalid("key_too_long", "A key of 257 bytes.", gen_profile1(key, gen_raw("\xc0", 1)),
                            CODEC_ERR_LIMIT);
        gen_profile_invalid("string_too_long", "A string of 65537 bytes.", gen_profile1("s", gen_str(big)),
                            CODEC_ERR_LIMIT);
        free(key);
        free(big);
    }

    /* Profile text. */
    static const struct {
        const char *name, *description;
        const char *bytes;
        size_t len;
        bool in_key;
        codec_error_t code;
    } text[] = {
        {"invalid_utf8_string", "A string with a lone continuation byte 0x80.", "ab\x80", 3, false,
         CODEC_ERR_INVALID_UTF8},
        {"invalid_utf8_key", "A key with the byte 0xfe.", "k\xfe", 2, true, CODEC_ERR_INVALID_UTF8},
        {"utf8_encoded_surrogates", "U+1F600 as CESU-8 (two encoded UTF-16 surrogates): not UTF-8.",
         "\xed\xa0\xbd\xed\xb8\x80", 6, false, CODEC_ERR_INVALID_UTF8},
        {"utf8_overlong", "'/' as the overlong 2-byte form c0 af.", "\xc0\xaf", 2, false,
         CODEC_ERR_INVALID_UTF8},
        {"utf8_above_max", "f4 90 80 80, above U+10FFFF.", "\xf4\x90\x80\x80", 4, false,
         CODEC_ERR_INVALID_UTF8},
        {"utf8_truncated_sequence", "A 3-byte sequence cut after 2 bytes at the end of the string.",
         "x\xe2\x82", 3, false, CODEC_ERR_INVALID_UTF8},
        {"nul_in_string", "U+0000 inside a string: PostgreSQL jsonb cannot store it.", "a\0b", 3, false,
         CODEC_ERR_NUL_IN_STRING},
        {"nul_in_key", "U+0000 inside a key.", "k\0", 2, true, CODEC_ERR_NUL_IN_STRING},
        {"nul_only", "A string that is one U+0000.", "\0", 1, false, CODEC_ERR_NUL_IN_STRING},
    };
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
        buf_t p = {0};
        mp_write_map_header(&p, 1);
        if (text[i].in_key) {
            mp_write_str(&p, text[i].bytes, (uint32_t)text[i].len);
            mp_write_uint(&p, 1);
        } else {
            mp_write_str(&p, "s", 1);
            mp_write_str(&p, text[i].bytes, (uint32_t)text[i].len);
        }
        gen_profile_invalid(text[i].name, text[i].description, p, text[i].code);
    }

    /* Profile values. */
    gen_profile_invalid("nan", "A float 64 NaN.",
                        gen_profile1("x", gen_raw("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9)),
                        CODEC_ERR_NON_FINITE_NUMBER);
    gen_profile_invalid("infinity", "A float 64 -infinity.",
                        gen_profile1("x", gen_raw("\xcb\xff\xf0\x00\x00\x00\x00\x00\x00", 9)),
                        CODEC_ERR_NON_FINITE_NUMBER);
    gen_profile_invalid("float32_infinity", "A float 32 +infinity.",
                        gen_profile1("x", gen_raw("\xca\x7f\x80\x00\x00", 5)), CODEC_ERR_NON_FINITE_NUMBER);
    gen_profile_invalid("int_key", "A profile key that is an int.", gen_raw("\x81\x01\xa1x", 4),
                        CODEC_ERR_NON_STRING_KEY);
    gen_profile_invalid("nested_nil_key", "A nil key in a nested map.",
                        gen_profile1("m", gen_raw("\x81\xc0\x01", 3)), CODEC_ERR_NON_STRING_KEY);
    gen_profile_invalid("bin_value", "A bin value in the profile.",
                        gen_profile1("b", gen_raw("\xc4\x02\x00\x01", 4)), CODEC_ERR_UNSUPPORTED_TYPE);
    gen_profile_invalid("ext_timestamp", "A timestamp ext value in the profile.",
                        gen_profile1("t", gen_raw("\xd6\xff\x65\x53\xf1\x00", 6)),
                        CODEC_ERR_UNSUPPORTED_TYPE);
    gen_profile_invalid(
        "first_offence_wins", "A NaN, then a bin, then U+0000: the first in wire order decides.",
        gen_raw("\x83\xa1\x61\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00\xa1\x62\xc4\x00\xa1\x63\xa1\x00", 20),
        CODEC_ERR_NON_FINITE_NUMBER);
    {
        f = gen_fields("precedence_missing_op_over_profile", gen_raw("\x81\xa1x\xc4\x00", 5));
        gen_drop(&f, "op");
        gen_invalid("precedence_missing_op_over_profile",
                    "op missing and a bin in the profile: fields are checked "
                    "before the profile.",
                    &f, CODEC_ERR_MISSING_FIELD);
        f = gen_fields("precedence_malformed_over_missing", gen_empty_map());
        gen_drop(&f, "schema");
        buf_t b = gen_pack(&f);
        b.len--; /* cut the empty profile map off */
        gen_invalid_bytes("precedence_malformed_over_missing",
                          "schema missing and the bytes truncated: malformed "
                          "wins.",
                          "alice", b, CODEC_ERR_MALFORMED);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2)
        gen_die("usage: gen_vectors <proto/vectors folder>");
    gen_dir = argv[1];
    gen_all_valid();
    gen_all_valid_kinds();
    gen_all_noncanonical();
    gen_all_noncanonical_kinds();
    gen_all_invalid();
    printf("gen_vectors: %d vectors written to %s\n", gen_count, gen_dir);
    return 0;
}
