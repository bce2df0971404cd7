/*
 * clock: the one monotonic clock of the project (CLOCK_MONOTONIC), for
 * deadlines, intervals and durations. Never for timestamps that leave the
 * process (those are wall time: log.c, accepted_at_us). Thread-safe, no state.
 */
#ifndef PROFILED_CLOCK_H
#define PROFILED_CLOCK_H

#include <stdint.h>

int64_t clock_mono_us(void);

static inline int64_t clock_mono_ms(void)
{
    return clock_mono_us() / 1000;
}

/* Seconds as a double, for durations in metrics and logs. */
static inline double clock_mono_s(void)
{
    return (double)clock_mono_us() / 1e6;
}

#endif
