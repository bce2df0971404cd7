#include "conns.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static size_t api_conns_hash(const void *key, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static void api_conns_grow(api_conns_t *conns)
{
    size_t cap = conns->cap ? conns->cap * 2 : 256;
    api_conn_t *slots = calloc(cap, sizeof(*slots));
    if (!slots) {
        fprintf(stderr, "{\"level\":\"fatal\",\"message\":\"out of memory growing the connection table\"}\n");
        abort();
    }
    for (size_t i = 0; i < conns->cap; i++) {
        if (!conns->slots[i].key)
            continue;
        size_t at = api_conns_hash(conns->slots[i].key, cap);
        while (slots[at].key)
            at = (at + 1) & (cap - 1);
        slots[at] = conns->slots[i];
    }
    free(conns->slots);
    conns->slots = slots;
    conns->cap = cap;
}

api_conn_t *api_conns_find(api_conns_t *conns, const void *key)
{
    if (!conns->cap)
        return NULL;
    for (size_t at = api_conns_hash(key, conns->cap);; at = (at + 1) & (conns->cap - 1)) {
        if (conns->slots[at].key == key)
            return &conns->slots[at];
        if (!conns->slots[at].key)
            return NULL;
    }
}

api_conn_t *api_conns_insert(api_conns_t *conns, const void *key)
{
    if ((conns->count + 1) * 2 > conns->cap)
        api_conns_grow(conns);
    size_t at = api_conns_hash(key, conns->cap);
    while (conns->slots[at].key)
        at = (at + 1) & (conns->cap - 1);
    conns->slots[at] = (api_conn_t){.key = key};
    conns->count++;
    return &conns->slots[at];
}

void api_conns_remove(api_conns_t *conns, const void *key)
{
    api_conn_t *entry = api_conns_find(conns, key);
    if (!entry)
        return;
    size_t hole = (size_t)(entry - conns->slots);
    size_t mask = conns->cap - 1;
    conns->slots[hole].key = NULL;
    conns->count--;
    /* Backward shift: move later members of the probe run into the hole when
     * their home slot does not lie (cyclically) between the hole and them. */
    for (size_t at = (hole + 1) & mask; conns->slots[at].key; at = (at + 1) & mask) {
        size_t home = api_conns_hash(conns->slots[at].key, conns->cap);
        size_t dist_at = (at - home) & mask;
        size_t dist_hole = (hole - home) & mask;
        if (dist_hole < dist_at) {
            conns->slots[hole] = conns->slots[at];
            conns->slots[at].key = NULL;
            hole = at;
        }
    }
}

void api_conns_free(api_conns_t *conns)
{
    free(conns->slots);
    conns->slots = NULL;
    conns->cap = conns->count = 0;
}
