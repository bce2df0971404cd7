/*
 * log_limit: a token bucket per reason for the log lines an outsider can
 * cause (refused requests, timeouts, limits), so that a flood of bad requests
 * cannot flood the log nor spend the process's time writing it.
 *
 * Each reason (a small integer key, e.g. the HTTP status) may log `burst`
 * lines at once and `per_second` lines a second after that. The lines dropped
 * are counted, and the next line logged for that reason carries the count
 * (the caller adds it as a "suppressed" field), so nothing vanishes without a
 * trace. Metrics still count every event; only the lines are limited.
 *
 * Not thread-safe: one limiter per thread (e.g. per event loop).
 */
#ifndef PROFILED_LOG_LIMIT_H
#define PROFILED_LOG_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define LOG_LIMIT_KEYS 16 /* distinct reasons; more share the last bucket */

typedef struct log_limit_bucket {
    int key;
    bool used;
    double tokens;
    int64_t at_us; /* when tokens was last refilled */
    uint64_t suppressed;
} log_limit_bucket_t;

typedef struct log_limit {
    double per_second;
    double burst;
    log_limit_bucket_t buckets[LOG_LIMIT_KEYS];
} log_limit_t;

/* A constant initialiser (usable for a static or thread-local limiter). */
#define LOG_LIMIT_INIT(rate, burst_lines)                                                                    \
    {                                                                                                        \
        .per_second = (rate), .burst = (burst_lines)                                                         \
    }

/* The defaults for refusal lines: 10 at once, then 5 a second, per reason. */
#define LOG_LIMIT_REFUSALS LOG_LIMIT_INIT(5.0, 10.0)

/* true: log this line now, and when *suppressed is non-zero add it to the line (lines dropped for
 * `key` since its last logged line). false: drop the line; it is counted. now_us: a monotonic clock. */
bool log_limit_take(log_limit_t *limit, int key, int64_t now_us, uint64_t *suppressed);

#endif
