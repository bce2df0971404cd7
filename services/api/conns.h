/*
 * conns: the connections one loop serves, keyed by evhttp connection.
 *
 * libevent 2.1's evhttp has no hook when it accepts a connection, only the
 * close callback, which we can set once a connection carries a request. So a
 * connection is counted from its first request to its close: that is what
 * PROFILED_HTTP_MAX_CONNECTIONS bounds (connections that never send a
 * request are bounded by the read timeout instead). The entry also remembers
 * the request held on that connection, so that a close while it is held
 * detaches it instead of leaving a dangling pointer.
 *
 * Open addressing with linear probing and backward-shift deletion; one loop
 * thread owns the table, no locks.
 */
#ifndef PROFILED_API_CONNS_H
#define PROFILED_API_CONNS_H

#include <stddef.h>

typedef struct api_conn {
    const void *key; /* struct evhttp_connection *; NULL = empty slot */
    void *held;      /* the request held on it (api_put_t/api_get_t via its detach hook), or NULL */
    void (*detach)(void *held);
} api_conn_t;

typedef struct api_conns {
    api_conn_t *slots;
    size_t cap; /* power of two */
    size_t count;
} api_conns_t;

/* The entry of `key`, or NULL. */
api_conn_t *api_conns_find(api_conns_t *conns, const void *key);
/* Inserts `key` (absent) and returns its entry. */
api_conn_t *api_conns_insert(api_conns_t *conns, const void *key);
/* Removes `key` if present. */
void api_conns_remove(api_conns_t *conns, const void *key);
void api_conns_free(api_conns_t *conns);

#endif
