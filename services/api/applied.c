/*
 * applied: the per-partition applied positions and the requests waiting on
 * them (applied.h).
 */
#include "applied.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reply.h"
#include "xalloc.h"

/* Far above any real topic (Kafka's practical limit is thousands): a bound on what a notification
 * may make us allocate. */
#define API_APPLIED_MAX_PARTITIONS 100000

static void api_applied_timer_cb(evutil_socket_t fd, short what, void *arg);

int api_applied_init(api_applied_t *applied, struct event_base *base, const char *topic,
                     metrics_histogram_t *wait_seconds, char *errstr, size_t errstr_size)
{
    memset(applied, 0, sizeof(*applied));
    applied->deadlines.dnext = applied->deadlines.dprev = &applied->deadlines;
    applied->wait_seconds = wait_seconds;
    applied->topic = strdup(topic);
    applied->timer = evtimer_new(base, api_applied_timer_cb, applied);
    if (!applied->topic || !applied->timer) {
        snprintf(errstr, errstr_size, "out of memory creating the applied-position waiters");
        return -1;
    }
    applied->topic_len = strlen(topic);
    return 0;
}

void api_applied_destroy(api_applied_t *applied)
{
    if (applied->timer)
        event_free(applied->timer);
    for (size_t i = 0; i < applied->partition_cap; i++)
        free(applied->partitions[i]);
    free(applied->partitions);
    free(applied->topic);
    memset(applied, 0, sizeof(*applied));
}

/* The partition's queue, created on first use; NULL for an impossible partition number. */
static api_applied_queue_t *api_applied_queue(api_applied_t *applied, int32_t partition)
{
    if (partition < 0 || partition >= API_APPLIED_MAX_PARTITIONS)
        return NULL;
    if ((size_t)partition >= applied->partition_cap) {
        size_t cap = applied->partition_cap ? applied->partition_cap : 16;
        while (cap <= (size_t)partition)
            cap *= 2;
        api_applied_queue_t **partitions =
            xrealloc(applied->partitions, cap * sizeof(*partitions), "the applied positions");
        memset(partitions + applied->partition_cap, 0, (cap - applied->partition_cap) * sizeof(*partitions));
        applied->partitions = partitions;
        applied->partition_cap = cap;
    }
    api_applied_queue_t *q = applied->partitions[partition];
    if (!q) {
        q = xmalloc(sizeof(*q), "the applied positions");
        q->next_offset = -1;
        q->queue.next = q->queue.prev = &q->queue;
        applied->partitions[partition] = q;
    }
    return q;
}

static void api_applied_arm(api_applied_t *applied)
{
    api_applied_wait_t *head = applied->deadlines.dnext;
    if (head == &applied->deadlines) {
        evtimer_del(applied->timer);
        return;
    }
    int64_t left = head->deadline_us - api_now_us();
    if (left < 0)
        left = 0;
    struct timeval tv = {.tv_sec = left / 1000000, .tv_usec = left % 1000000};
    evtimer_add(applied->timer, &tv);
}

static void api_applied_unlink(api_applied_t *applied, api_applied_wait_t *wait)
{
    bool was_head = applied->deadlines.dnext == wait;
    wait->prev->next = wait->next;
    wait->next->prev = wait->prev;
    wait->dprev->dnext = wait->dnext;
    wait->dnext->dprev = wait->dprev;
    wait->prev = wait->next = wait->dprev = wait->dnext = NULL;
    wait->held = false;
    atomic_fetch_sub_explicit(&applied->held, 1, memory_order_relaxed);
    if (was_head)
        api_applied_arm(applied);
}

static void api_applied_wake(api_applied_t *applied, api_applied_wait_t *wait, bool ok)
{
    api_applied_unlink(applied, wait);
    if (applied->wait_seconds)
        metrics_histogram_observe(applied->wait_seconds, (double)(api_now_us() - wait->since_us) / 1e6);
    wait->done(wait, ok);
}

bool api_applied_hold(api_applied_t *applied, api_applied_wait_t *wait, int32_t partition, int64_t offset,
                      int64_t deadline_us, api_applied_fn done)
{
    api_applied_queue_t *q = api_applied_queue(applied, partition);
    if (q && q->next_offset > offset) {
        if (applied->wait_seconds)
            metrics_histogram_observe(applied->wait_seconds, 0);
        return true;
    }
    wait->partition = partition;
    wait->offset = offset;
    wait->since_us = api_now_us();
    wait->deadline_us = deadline_us;
    wait->done = done;
    wait->held = true;
    atomic_fetch_add_explicit(&applied->held, 1, memory_order_relaxed);

    /* Offset order: one producer's reports arrive in offset order per partition, so this walk
     * stops at the tail; an unknown partition (q NULL) waits for its deadline only. */
    if (q) {
        api_applied_wait_t *after = q->queue.prev;
        while (after != &q->queue && after->offset > offset)
            after = after->prev;
        wait->prev = after;
        wait->next = after->next;
    } else {
        wait->prev = wait->next = wait;
    }
    wait->prev->next = wait;
    wait->next->prev = wait;

    /* Deadline order: equal waits make this the tail too. */
    api_applied_wait_t *dafter = applied->deadlines.dprev;
    while (dafter != &applied->deadlines && dafter->deadline_us > deadline_us)
        dafter = dafter->dprev;
    wait->dprev = dafter;
    wait->dnext = dafter->dnext;
    wait->dprev->dnext = wait;
    wait->dnext->dprev = wait;
    if (applied->deadlines.dnext == wait)
        api_applied_arm(applied);
    return false;
}

void api_applied_cancel(api_applied_t *applied, api_applied_wait_t *wait)
{
    if (wait->held)
        api_applied_unlink(applied, wait);
}

void api_applied_advance(api_applied_t *applied, int32_t partition, int64_t next_offset)
{
    api_applied_queue_t *q = api_applied_queue(applied, partition);
    if (!q || next_offset <= q->next_offset)
        return;
    q->next_offset = next_offset;
    /* Take the head each time: a `done` hook may cancel other waiters. */
    while (q->queue.next != &q->queue && q->queue.next->offset < next_offset)
        api_applied_wake(applied, q->queue.next, true);
}

int api_applied_notify(api_applied_t *applied, const char *payload)
{
    int malformed = 0;
    const char *p = payload;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *slash = memchr(p, '/', (size_t)(end - p));
        if (!slash) {
            malformed++;
        } else if ((size_t)(slash - p) == applied->topic_len &&
                   memcmp(p, applied->topic, applied->topic_len) == 0) {
            char entry[64];
            size_t len = (size_t)(end - slash - 1);
            long partition = -1;
            long long next = -1;
            int used = 0;
            if (len < sizeof(entry)) {
                memcpy(entry, slash + 1, len);
                entry[len] = '\0';
                if (sscanf(entry, "%ld/%lld%n", &partition, &next, &used) != 2 || (size_t)used != len)
                    partition = -1;
            }
            if (partition < 0 || partition >= API_APPLIED_MAX_PARTITIONS || next < 0)
                malformed++;
            else
                api_applied_advance(applied, (int32_t)partition, (int64_t)next);
        }
        p = *end ? end + 1 : end;
    }
    return malformed;
}

static void api_applied_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    api_applied_t *applied = arg;
    int64_t now = api_now_us();
    while (applied->deadlines.dnext != &applied->deadlines && applied->deadlines.dnext->deadline_us <= now)
        api_applied_wake(applied, applied->deadlines.dnext, false);
    api_applied_arm(applied);
}

void api_applied_expire_all(api_applied_t *applied)
{
    while (applied->deadlines.dnext != &applied->deadlines)
        api_applied_wake(applied, applied->deadlines.dnext, false);
}

int64_t api_applied_held(const api_applied_t *applied)
{
    return atomic_load_explicit(&applied->held, memory_order_relaxed);
}
