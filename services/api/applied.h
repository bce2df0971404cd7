/*
 * applied: requests held until the worker has applied a Kafka position
 * (read-your-writes, README "Read your writes").
 *
 * One api_applied_t per loop, used on the loop thread only. It knows, per
 * partition of the commands topic, the highest `next_offset` the worker
 * committed (kafka_positions), learnt from the loop's PostgreSQL connection:
 * once from the table on each (re)connect, then from `NOTIFY profiled_applied`
 * (get.c feeds both in). A waiter asks "wake me once partition P's applied
 * position passes offset O, or at my deadline"; the module calls its `done`
 * hook exactly once, with `applied` true or false, unless it was cancelled.
 *
 * Cost per held request: the waiter (embedded in the caller's request) and
 * two list links. No thread, no timer: waiters sit in one queue per
 * partition, in offset order, so a new position wakes a prefix of that queue;
 * and in one deadline list with one timer armed for its head.
 *
 * Not PUT-specific: any command published to the topic (replace, merge,
 * patch, delete) can be held this way, and `done` may start one more action
 * (a read of the command's outcome) before it answers.
 */
#ifndef PROFILED_API_APPLIED_H
#define PROFILED_API_APPLIED_H

#include <event2/event.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

typedef struct api_applied_wait api_applied_wait_t;

/* Called on the loop thread, once: `applied` true when the position passed the offset, false at the
 * deadline (or api_applied_expire_all). The waiter is already unlinked; the hook may free it. */
typedef void (*api_applied_fn)(api_applied_wait_t *wait, bool applied);

struct api_applied_wait {
    api_applied_wait_t *prev, *next;   /* the partition's queue, offset order */
    api_applied_wait_t *dprev, *dnext; /* the deadline list, deadline order */
    int32_t partition;
    int64_t offset;
    int64_t since_us, deadline_us; /* monotonic (api_now_us) */
    api_applied_fn done;
    bool held; /* linked */
};

typedef struct api_applied_queue {
    int64_t next_offset;      /* the worker's position for this partition; -1 unknown */
    api_applied_wait_t queue; /* sentinel */
} api_applied_queue_t;

typedef struct api_applied {
    char *topic; /* owned: notifications of other topics are ignored */
    size_t topic_len;
    api_applied_queue_t **partitions; /* index = partition; grown on demand */
    size_t partition_cap;
    api_applied_wait_t deadlines;      /* sentinel */
    struct event *timer;               /* armed for the deadline list's head */
    _Atomic int64_t held;              /* read by /metrics on another thread */
    metrics_histogram_t *wait_seconds; /* time from hold to wake, both outcomes */
} api_applied_t;

int api_applied_init(api_applied_t *applied, struct event_base *base, const char *topic,
                     metrics_histogram_t *wait_seconds, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
/* Forgets every waiter without calling it (their requests are gone: loop teardown). */
void api_applied_destroy(api_applied_t *applied);

/* Holds `wait` until partition's position passes `offset` or deadline_us. Returns true, holding
 * nothing, when the known position already passed it (the caller goes on at once). */
bool api_applied_hold(api_applied_t *applied, api_applied_wait_t *wait, int32_t partition, int64_t offset,
                      int64_t deadline_us, api_applied_fn done);
/* Unlinks a held waiter without calling it (its client went away); a no-op when not held. */
void api_applied_cancel(api_applied_t *applied, api_applied_wait_t *wait);

/* The worker's position for a partition moved to next_offset (the next offset it will apply):
 * wakes every waiter with a smaller offset. Older positions are ignored (positions only grow). */
void api_applied_advance(api_applied_t *applied, int32_t partition, int64_t next_offset);
/* A `profiled_applied` payload: "<topic>/<partition>/<next_offset>" entries joined by ','. Entries of
 * other topics are skipped; a malformed entry is skipped and counted in the return value. */
int api_applied_notify(api_applied_t *applied, const char *payload);

/* Wakes every waiter with applied=false (shutdown deadline). */
void api_applied_expire_all(api_applied_t *applied);
int64_t api_applied_held(const api_applied_t *applied);

#endif
