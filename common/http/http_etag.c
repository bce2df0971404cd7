#include "http_etag.h"

#include <string.h>

static bool http_etag_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool http_etagc(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80;
}

/* The opaque-tag of an entity-tag at p (quotes included, "W/" skipped) into *tag, *tag_len; returns
 * the byte after it, or NULL when p does not start a valid entity-tag. */
static const char *http_etag_parse(const char *p, const char *end, const char **tag, size_t *tag_len)
{
    if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
        p += 2;
    if (p == end || *p != '"')
        return NULL;
    const char *q = p + 1;
    while (q < end && http_etagc((unsigned char)*q))
        q++;
    if (q == end || *q != '"')
        return NULL;
    *tag = p;
    *tag_len = (size_t)(q + 1 - p);
    return q + 1;
}

bool http_etag_matches(const char *field, size_t field_len, const char *etag, size_t etag_len)
{
    const char *own = NULL;
    size_t own_len = 0;
    if (http_etag_parse(etag, etag + etag_len, &own, &own_len) != etag + etag_len)
        return false; /* not exactly one entity-tag: nothing can match it */
    const char *p = field, *end = field + field_len;
    while (p < end && http_etag_ows(*p))
        p++;
    while (end > p && http_etag_ows(end[-1]))
        end--;
    if (end - p == 1 && *p == '*')
        return true;
    /* The whole list is checked before answering: a match followed by garbage is no match. */
    bool matched = false, any = false;
    while (p < end) {
        if (*p == ',' || http_etag_ows(*p)) { /* empty elements and OWS around commas */
            p++;
            continue;
        }
        const char *tag = NULL;
        size_t tag_len = 0;
        p = http_etag_parse(p, end, &tag, &tag_len);
        if (!p)
            return false;
        any = true;
        if (tag_len == own_len && memcmp(tag, own, own_len) == 0)
            matched = true;
        while (p < end && http_etag_ows(*p))
            p++;
        if (p < end && *p != ',')
            return false; /* two tags without a comma */
    }
    return any && matched;
}
