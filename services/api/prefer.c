/*
 * prefer: the Prefer header reader (prefer.h).
 */
#include "prefer.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 5.6.2 tchar */
static bool api_prefer_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *api_prefer_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Past a quoted-string starting at p ('"'), or at its unterminated end. */
static const char *api_prefer_skip_quoted(const char *p)
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p + 1 : p;
}

/* Past the rest of an element: up to the next ',' outside quoted strings. */
static const char *api_prefer_skip_element(const char *p)
{
    while (*p && *p != ',')
        p = *p == '"' ? api_prefer_skip_quoted(p) : p + 1;
    return p;
}

bool api_prefer_find(const char *header, const char *name, char *value, size_t value_size)
{
    size_t name_len = strlen(name);
    const char *p = header;
    if (value_size == 0)
        return false;
    while (*p) {
        p = api_prefer_ows(p);
        const char *token = p;
        while (api_prefer_tchar(*p))
            p++;
        size_t token_len = (size_t)(p - token);
        bool match = token_len == name_len && token_len > 0 && strncasecmp(token, name, name_len) == 0;
        size_t len = 0;
        bool ok = true;
        p = api_prefer_ows(p);
        if (*p == '=') {
            p = api_prefer_ows(p + 1);
            if (*p == '"') {
                for (p++; *p && *p != '"'; p++) {
                    if (*p == '\\' && p[1])
                        p++;
                    if (len + 1 < value_size)
                        value[len++] = *p;
                    else
                        ok = false;
                }
                if (*p == '"')
                    p++;
                else
                    ok = false; /* unterminated */
            } else {
                for (; api_prefer_tchar(*p); p++) {
                    if (len + 1 < value_size)
                        value[len++] = *p;
                    else
                        ok = false;
                }
            }
        }
        value[len] = '\0';
        if (match && ok)
            return true;
        p = api_prefer_skip_element(p);
        if (*p == ',')
            p++;
    }
    value[0] = '\0';
    return false;
}
