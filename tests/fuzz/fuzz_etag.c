/*
 * libFuzzer target: the If-None-Match matcher (common/http/http_etag.c), which reads a header the
 * client controls. The input is split at its first NUL into the field and an ETag (when there is no
 * NUL, the ETag is the api's shape, "\"3.1042.<hex>\""), copied into buffers of their exact size so
 * that ASan sees any read past them.
 *
 * Invariants, besides no crash/UB:
 *   - a match means the field is "*" (with OWS) or holds the ETag's opaque-tag (quotes included);
 *   - for a valid ETag: the field with ", <etag>" appended still matches when the field matched (and
 *     was not "*"), and matches when the field was empty (OWS and commas only); W/<etag> alone
 *     always matches.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_etag.h"

static const char fuzz_api_etag[] = "\"3.1042.0f1e2d3c4b5a69788796a5b4c3d2e1f0\"";

static bool fuzz_is_star(const char *p, size_t len)
{
    while (len && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    return len == 1 && *p == '*';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t field_len = nul ? (size_t)(nul - data) : size;
    const char *etag_src = nul ? (const char *)nul + 1 : fuzz_api_etag;
    size_t etag_len = nul ? size - field_len - 1 : sizeof(fuzz_api_etag) - 1;

    char *field = malloc(field_len ? field_len : 1);
    char *etag = malloc(etag_len ? etag_len : 1);
    if (!field || !etag)
        abort();
    memcpy(field, data, field_len);
    memcpy(etag, etag_src, etag_len);

    bool matched = http_etag_matches(field, field_len, etag, etag_len);
    if (matched && !fuzz_is_star(field, field_len)) {
        /* the opaque-tag: the ETag without a leading W/ */
        const char *tag = etag;
        size_t tag_len = etag_len;
        if (tag_len >= 2 && tag[0] == 'W' && tag[1] == '/')
            tag += 2, tag_len -= 2;
        if (!memmem(field, field_len, tag, tag_len))
            abort();
    }

    /* Our own tag appended to the field, and alone with W/. Only for a valid ETag (one that matches
     * itself): for anything else the matcher must say no, which is checked too. */
    bool etag_valid = http_etag_matches(etag, etag_len, etag, etag_len);
    size_t weak_len = etag_len + 2;
    char *weak = malloc(weak_len);
    char *joined = malloc(field_len + 2 + etag_len);
    if (!weak || !joined)
        abort();
    memcpy(weak, "W/", 2);
    memcpy(weak + 2, etag, etag_len);
    bool weak_starts = etag_len >= 2 && etag[0] == 'W' && etag[1] == '/';
    if (etag_valid && !weak_starts && !http_etag_matches(weak, weak_len, etag, etag_len))
        abort();
    memcpy(joined, field, field_len);
    memcpy(joined + field_len, ", ", 2);
    memcpy(joined + field_len + 2, etag, etag_len);
    bool joined_matched = http_etag_matches(joined, field_len + 2 + etag_len, etag, etag_len);
    bool blank = true;
    for (size_t i = 0; i < field_len; i++)
        blank = blank && (field[i] == ' ' || field[i] == '\t' || field[i] == ',');
    /* a matching list stays matching with one more element; an empty one then matches */
    if (etag_valid && ((matched && !fuzz_is_star(field, field_len)) || blank) && !joined_matched)
        abort();
    free(joined);
    free(weak);
    free(field);
    free(etag);
    return 0;
}
