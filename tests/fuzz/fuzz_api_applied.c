/*
 * fuzz_api_applied: the two texts profiled-api reads for read-your-writes.
 * The first input byte picks one, the rest is the text (NUL-terminated, as
 * libpq and the HTTP layer hand them over):
 *
 * - even: a `Prefer` header value, read by api_prefer_find (prefer.h);
 * - odd: a `profiled_applied` NOTIFY payload, fed to api_applied_notify
 *   (applied.h) with waiters held on a few partitions.
 *
 * Invariants, on every input:
 * - no crash, leak, or read past the text;
 * - a found preference's value fits its buffer, NUL-terminated, and holds no
 *   byte the header did not;
 * - positions only grow: a waiter is woken only when its partition's
 *   position passed its offset, and every waiter is woken at most once.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "applied.h"
#include "prefer.h"

/* applied.c's clock (reply.c in the binary): fixed, no deadline passes during a run. */
int64_t api_now_us(void);
int64_t api_now_us(void)
{
    return 0;
}

#define WAITERS 8

static int woken[WAITERS];
static api_applied_t *current;
static api_applied_wait_t waits[WAITERS];

static void fuzz_done(api_applied_wait_t *wait, bool applied)
{
    int i = (int)(wait - waits);
    if (!applied || woken[i]++)
        abort();
    api_applied_queue_t *q = current->partitions[wait->partition];
    if (!q || q->next_offset <= wait->offset)
        abort();
}

static void fuzz_notify(const char *text)
{
    static struct event_base *base;
    if (!base)
        base = event_base_new();
    api_applied_t applied;
    char errstr[128];
    if (api_applied_init(&applied, base, "t.commands", NULL, errstr, sizeof(errstr)) < 0)
        abort();
    current = &applied;
    memset(woken, 0, sizeof(woken));
    for (int i = 0; i < WAITERS; i++)
        if (api_applied_hold(&applied, &waits[i], i % 3, (int64_t)i * 1000, 1000000, fuzz_done))
            abort();
    (void)api_applied_notify(&applied, text);
    int still = 0;
    for (int i = 0; i < WAITERS; i++)
        still += waits[i].held;
    if (api_applied_held(&applied) != still)
        abort();
    for (int i = 0; i < WAITERS; i++)
        api_applied_cancel(&applied, &waits[i]);
    api_applied_destroy(&applied);
}

static void fuzz_prefer(const char *text)
{
    char value[16];
    memset(value, 'x', sizeof(value));
    if (api_prefer_find(text, "profiled-ack", value, sizeof(value))) {
        size_t len = strnlen(value, sizeof(value));
        if (len == sizeof(value))
            abort();
        for (size_t i = 0; i < len; i++)
            if (!strchr(text, value[i]))
                abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0)
        return 0;
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (data[0] & 1)
        fuzz_notify(text);
    else
        fuzz_prefer(text);
    free(text);
    return 0;
}
