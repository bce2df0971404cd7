#include "http_auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sha256.h"

struct http_keys {
    uint8_t (*digests)[SHA256_DIGEST_BYTES];
    size_t count, cap;
};

http_keys_t *http_keys_new(void)
{
    return calloc(1, sizeof(http_keys_t));
}

void http_keys_destroy(http_keys_t *keys)
{
    if (!keys)
        return;
    free(keys->digests);
    free(keys);
}

size_t http_keys_count(const http_keys_t *keys)
{
    return keys->count;
}

static int http_keys_add(http_keys_t *keys, const char *key, size_t len, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        /* A key travels in a header: visible ASCII only (RFC 9110 token68 is narrower; we only forbid
         * what cannot arrive intact). */
        if (c <= 0x20 || c >= 0x7f) {
            snprintf(errstr, errstr_size, "API key number %zu contains a space, control or non-ASCII byte",
                     keys->count + 1);
            return -1;
        }
    }
    if (keys->count == keys->cap) {
        size_t cap = keys->cap ? keys->cap * 2 : 4;
        void *grown = realloc(keys->digests, cap * sizeof(*keys->digests));
        if (!grown) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        keys->digests = grown;
        keys->cap = cap;
    }
    sha256(key, len, keys->digests[keys->count++]);
    return 0;
}

/* Trims spaces and tabs from both ends of [*start, *start + *len). */
static void http_trim(const char **start, size_t *len)
{
    while (*len && (**start == ' ' || **start == '\t')) {
        (*start)++;
        (*len)--;
    }
    while (*len && ((*start)[*len - 1] == ' ' || (*start)[*len - 1] == '\t' || (*start)[*len - 1] == '\r'))
        (*len)--;
}

int http_keys_add_list(http_keys_t *keys, const char *list, char *errstr, size_t errstr_size)
{
    if (!list)
        return 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *item = p;
        size_t item_len = len;
        http_trim(&item, &item_len);
        if (item_len && http_keys_add(keys, item, item_len, errstr, errstr_size) < 0)
            return -1;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

int http_keys_add_file(http_keys_t *keys, const char *path, char *errstr, size_t errstr_size)
{
    int rc = -1;
    char *line = NULL;
    size_t line_cap = 0;
    FILE *file = fopen(path, "r");
    if (!file) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t got;
    while ((got = getline(&line, &line_cap, file)) >= 0) {
        const char *item = line;
        size_t item_len = (size_t)got;
        if (item_len && item[item_len - 1] == '\n')
            item_len--;
        http_trim(&item, &item_len);
        if (item_len == 0 || item[0] == '#')
            continue;
        if (http_keys_add(keys, item, item_len, errstr, errstr_size) < 0)
            goto cleanup;
    }
    if (ferror(file)) {
        snprintf(errstr, errstr_size, "%s: read error", path);
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(line);
    fclose(file);
    return rc;
}

bool http_ct_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

bool http_keys_match(const http_keys_t *keys, const char *token, size_t len)
{
    uint8_t digest[SHA256_DIGEST_BYTES];
    sha256(token, len, digest);
    /* Every digest is compared, so the time does not depend on which one matched. */
    unsigned matched = 0;
    for (size_t i = 0; i < keys->count; i++)
        matched |= (unsigned)http_ct_equal(digest, keys->digests[i], SHA256_DIGEST_BYTES);
    return matched != 0;
}

bool http_keys_check_authorization(const http_keys_t *keys, const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer", 6) != 0)
        return false;
    const char *token = authorization + 6;
    if (*token != ' ' && *token != '\t')
        return false;
    while (*token == ' ' || *token == '\t')
        token++;
    size_t len = strlen(token);
    while (len && (token[len - 1] == ' ' || token[len - 1] == '\t'))
        len--;
    if (len == 0)
        return false;
    return http_keys_match(keys, token, len);
}
