#include "transcode_schema.h"

#include "mp.h"
#include "xalloc.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The documented profile fields (Courier's profile schema: the OpenID
 * Connect standard claims plus the provider objects). Shapes are checked
 * only as far as the docs pin them down; members not listed pass through.
 */
typedef enum schema_kind {
    SCHEMA_STRING,
    SCHEMA_BOOLEAN,
    SCHEMA_OBJECT,            /* an object; its listed members are checked */
    SCHEMA_STRING_OR_STRINGS, /* a string, or an array of strings */
    SCHEMA_STRINGS,           /* an array of strings */
} schema_kind_t;

typedef struct schema_field {
    const char *name;
    uint32_t name_len;
    schema_kind_t kind;
    const struct schema_field *members; /* SCHEMA_OBJECT: sorted by name; NULL for any object */
    size_t nmembers;
} schema_field_t;

#define SCHEMA_TABLE(t) t, sizeof(t) / sizeof(t[0])

static const schema_field_t schema_address[] = {
    {"country", 7, SCHEMA_STRING, NULL, 0},  {"formatted", 9, SCHEMA_STRING, NULL, 0},
    {"locality", 8, SCHEMA_STRING, NULL, 0}, {"postal_code", 11, SCHEMA_STRING, NULL, 0},
    {"region", 6, SCHEMA_STRING, NULL, 0},   {"street_address", 14, SCHEMA_STRING, NULL, 0},
};

/* Slack: an OAuth access token plus one of channel, user_id or email. */
static const schema_field_t schema_slack[] = {
    {"access_token", 12, SCHEMA_STRING, NULL, 0},
    {"channel", 7, SCHEMA_STRING, NULL, 0},
    {"email", 5, SCHEMA_STRING, NULL, 0},
    {"user_id", 7, SCHEMA_STRING, NULL, 0},
};

/* Microsoft Teams: a tenant and service URL plus a user or a conversation/channel. */
static const schema_field_t schema_ms_teams[] = {
    {"channel_id", 10, SCHEMA_STRING, NULL, 0},      {"channel_name", 12, SCHEMA_STRING, NULL, 0},
    {"conversation_id", 15, SCHEMA_STRING, NULL, 0}, {"email", 5, SCHEMA_STRING, NULL, 0},
    {"service_url", 11, SCHEMA_STRING, NULL, 0},     {"team_id", 7, SCHEMA_STRING, NULL, 0},
    {"tenant_id", 9, SCHEMA_STRING, NULL, 0},        {"user_id", 7, SCHEMA_STRING, NULL, 0},
};

static const schema_field_t schema_discord[] = {
    {"channel_id", 10, SCHEMA_STRING, NULL, 0},
    {"user_id", 7, SCHEMA_STRING, NULL, 0},
};

/* Expo: one push token, or several. */
static const schema_field_t schema_expo[] = {
    {"token", 5, SCHEMA_STRING, NULL, 0},
    {"tokens", 6, SCHEMA_STRINGS, NULL, 0},
};

/* APNs: apn.token, or several in apn.tokens. */
static const schema_field_t schema_apn[] = {
    {"token", 5, SCHEMA_STRING, NULL, 0},
    {"tokens", 6, SCHEMA_STRINGS, NULL, 0},
};

static const schema_field_t schema_intercom_to[] = {
    {"id", 2, SCHEMA_STRING, NULL, 0},
};

/* Intercom: the sending admin's id and the recipient user, {"id": ...}. */
static const schema_field_t schema_intercom[] = {
    {"from", 4, SCHEMA_STRING, NULL, 0},
    {"to", 2, SCHEMA_OBJECT, SCHEMA_TABLE(schema_intercom_to)},
};

/* Sorted by name (byte order), for the reader; lookups scan it. */
static const schema_field_t schema_profile[] = {
    {"address", 7, SCHEMA_OBJECT, SCHEMA_TABLE(schema_address)},
    {"airship", 7, SCHEMA_OBJECT, NULL, 0},
    {"apn", 3, SCHEMA_OBJECT, SCHEMA_TABLE(schema_apn)},
    {"birthdate", 9, SCHEMA_STRING, NULL, 0},
    {"discord", 7, SCHEMA_OBJECT, SCHEMA_TABLE(schema_discord)},
    {"email", 5, SCHEMA_STRING, NULL, 0},
    {"email_verified", 14, SCHEMA_BOOLEAN, NULL, 0},
    {"expo", 4, SCHEMA_OBJECT, SCHEMA_TABLE(schema_expo)},
    {"family_name", 11, SCHEMA_STRING, NULL, 0},
    {"firebaseToken", 13, SCHEMA_STRING_OR_STRINGS, NULL, 0},
    {"gender", 6, SCHEMA_STRING, NULL, 0},
    {"given_name", 10, SCHEMA_STRING, NULL, 0},
    {"intercom", 8, SCHEMA_OBJECT, SCHEMA_TABLE(schema_intercom)},
    {"locale", 6, SCHEMA_STRING, NULL, 0},
    {"middle_name", 11, SCHEMA_STRING, NULL, 0},
    {"ms_teams", 8, SCHEMA_OBJECT, SCHEMA_TABLE(schema_ms_teams)},
    {"name", 4, SCHEMA_STRING, NULL, 0},
    {"nickname", 8, SCHEMA_STRING, NULL, 0},
    {"phone_number", 12, SCHEMA_STRING, NULL, 0},
    {"phone_number_verified", 21, SCHEMA_BOOLEAN, NULL, 0},
    {"picture", 7, SCHEMA_STRING, NULL, 0},
    {"preferred_username", 18, SCHEMA_STRING, NULL, 0},
    {"profile", 7, SCHEMA_STRING, NULL, 0},
    {"slack", 5, SCHEMA_OBJECT, SCHEMA_TABLE(schema_slack)},
    {"sub", 3, SCHEMA_STRING, NULL, 0},
    {"updated_at", 10, SCHEMA_STRING, NULL, 0},
    {"website", 7, SCHEMA_STRING, NULL, 0},
    {"zoneinfo", 8, SCHEMA_STRING, NULL, 0},
};

/* ---- reading the transcoder's msgpack (mp.h's reader) ----------------- */

/* If p holds a str, returns its payload and length; else NULL. */
static const uint8_t *schema_str(const uint8_t *p, const uint8_t *end, uint32_t *len)
{
    mp_item_t item;
    if (mp_read(p, (size_t)(end - p), &item) != 0 || item.type != MP_STR)
        return NULL;
    *len = item.len;
    return item.data;
}

/* If p holds a map (is_map) or an array, returns the first entry and its count. */
static const uint8_t *schema_container(const uint8_t *p, const uint8_t *end, bool is_map, uint32_t *count)
{
    mp_item_t item;
    if (mp_read(p, (size_t)(end - p), &item) != 0 || item.type != (is_map ? MP_MAP : MP_ARRAY))
        return NULL;
    *count = item.len;
    return p + item.size;
}

/* The type of the value at p (the transcoder wrote it: it reads). */
static mp_type_t schema_type(const uint8_t *p, const uint8_t *end)
{
    mp_item_t item;
    if (mp_read(p, (size_t)(end - p), &item) != 0)
        fatal_abort("the transcoder wrote msgpack that does not read back (byte 0x%02x)", *p);
    return item.type;
}

/* Returns the byte after the one value at p. Iterative (mp_skip): nesting
 * is the transcoder's business, not the stack's. */
static const uint8_t *schema_skip(const uint8_t *p, const uint8_t *end)
{
    size_t consumed;
    if (mp_skip(p, (size_t)(end - p), &consumed) != 0)
        fatal_abort("the transcoder wrote msgpack that does not read back (byte 0x%02x)", *p);
    return p + consumed;
}

/* Linear, lengths first: a table of a few dozen short names is faster to
 * scan than to bisect with memcmp, and most probes stop at the length. */
static const schema_field_t *schema_lookup(const schema_field_t *table, size_t n, const uint8_t *key,
                                           uint32_t key_len)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].name_len == key_len && table[i].name[0] == key[0] &&
            memcmp(table[i].name, key, key_len) == 0)
            return &table[i];
    return NULL;
}

static const char *schema_kind_rule(schema_kind_t kind)
{
    switch (kind) {
    case SCHEMA_STRING:
        return "must be a string";
    case SCHEMA_BOOLEAN:
        return "must be a boolean";
    case SCHEMA_OBJECT:
        return "must be an object";
    case SCHEMA_STRING_OR_STRINGS:
        return "must be a string or an array of strings";
    case SCHEMA_STRINGS:
        return "must be an array of strings";
    }
    fatal_abort("schema kind %d unknown", (int)kind);
}

/* The path of the value being checked, as a chain on the C stack: it is
 * only formatted when a check fails, so a valid profile costs no printf. */
typedef struct schema_path {
    const struct schema_path *parent; /* NULL: the root, "profile" */
    const uint8_t *key;
    uint32_t key_len;
} schema_path_t;

static size_t schema_path_format(const schema_path_t *path, char *out, size_t cap)
{
    size_t len = path->parent ? schema_path_format(path->parent, out, cap) : 0;
    int n = path->parent
                ? snprintf(out + len, cap - len, ".%.*s", (int)path->key_len, (const char *)path->key)
                : snprintf(out, cap, "profile");
    len += n < 0 ? 0 : (size_t)n;
    return len < cap ? len : cap - 1;
}

static int schema_fail(const schema_path_t *path, int index, const char *rule, char *errstr,
                       size_t errstr_size)
{
    char where[192];
    schema_path_format(path, where, sizeof(where));
    if (index >= 0)
        snprintf(errstr, errstr_size, "%s[%d] %s", where, index, rule);
    else
        snprintf(errstr, errstr_size, "%s %s", where, rule);
    return -1;
}

static int schema_check_map(const uint8_t *p, const uint8_t *end, const schema_field_t *table, size_t ntable,
                            const schema_path_t *path, char *errstr, size_t errstr_size);

/* Checks the value at p against field; `path` names it. */
static int schema_check_value(const uint8_t *p, const uint8_t *end, const schema_field_t *field,
                              const schema_path_t *path, char *errstr, size_t errstr_size)
{
    uint32_t n;
    mp_type_t type = schema_type(p, end);
    if (type == MP_NIL)
        return 0; /* null: the field is unset */
    switch (field->kind) {
    case SCHEMA_STRING:
        if (type == MP_STR)
            return 0;
        break;
    case SCHEMA_BOOLEAN:
        if (type == MP_BOOL)
            return 0;
        break;
    case SCHEMA_OBJECT:
        if (type != MP_MAP)
            break;
        if (!field->members)
            return 0;
        return schema_check_map(p, end, field->members, field->nmembers, path, errstr, errstr_size);
    case SCHEMA_STRING_OR_STRINGS:
    case SCHEMA_STRINGS: {
        if (field->kind == SCHEMA_STRING_OR_STRINGS && type == MP_STR)
            return 0;
        const uint8_t *item = schema_container(p, end, false, &n);
        if (!item)
            break;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t len;
            if (!schema_str(item, end, &len))
                return schema_fail(path, (int)i, "must be a string", errstr, errstr_size);
            item = schema_skip(item, end);
        }
        return 0;
    }
    }
    return schema_fail(path, -1, schema_kind_rule(field->kind), errstr, errstr_size);
}

static int schema_check_map(const uint8_t *p, const uint8_t *end, const schema_field_t *table, size_t ntable,
                            const schema_path_t *path, char *errstr, size_t errstr_size)
{
    uint32_t count;
    p = schema_container(p, end, true, &count);
    if (!p)
        fatal_abort("the transcoder's profile is not a map");
    for (uint32_t i = 0; i < count; i++) {
        uint32_t key_len;
        const uint8_t *key = schema_str(p, end, &key_len);
        if (!key) /* the transcoder writes str keys only */
            fatal_abort("the transcoder wrote a map key that is not a str");
        const uint8_t *value = key + key_len;
        const schema_field_t *field = schema_lookup(table, ntable, key, key_len);
        if (field) {
            schema_path_t sub = {path, key, key_len};
            if (schema_check_value(value, end, field, &sub, errstr, errstr_size) != 0)
                return -1;
        }
        p = schema_skip(value, end);
    }
    return 0;
}

int transcode_schema_check(const uint8_t *profile, size_t len, char *errstr, size_t errstr_size)
{
    schema_path_t root = {NULL, NULL, 0};
    return schema_check_map(profile, profile + len, schema_profile,
                            sizeof(schema_profile) / sizeof(schema_profile[0]), &root, errstr, errstr_size);
}

static int schema_sorted(const schema_field_t *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (table[i].name_len != strlen(table[i].name))
            return 0;
        if (i + 1 < n && strcmp(table[i].name, table[i + 1].name) >= 0)
            return 0;
        if (table[i].members && !schema_sorted(table[i].members, table[i].nmembers))
            return 0;
    }
    return 1;
}

int transcode_schema_table_sorted(void)
{
    return schema_sorted(schema_profile, sizeof(schema_profile) / sizeof(schema_profile[0]));
}
