/*
 * metrics: Prometheus text exposition (format 0.0.4) for both binaries.
 *
 * Series are registered at start-up or lazily (registration takes a mutex
 * and returns a stable pointer); updates on the hot path are lock-free atomic
 * adds, safe from any thread. A family (one metric name) is rendered with one
 * HELP and TYPE line and all its label sets. Gauges are read at scrape time
 * from a callback, so nothing has to keep them current.
 */
#ifndef PROFILED_METRICS_H
#define PROFILED_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct metrics metrics_t;
typedef struct metrics_counter metrics_counter_t;
typedef struct metrics_histogram metrics_histogram_t;

typedef double (*metrics_gauge_fn)(void *arg);

metrics_t *metrics_new(void);
void metrics_destroy(metrics_t *metrics);

/*
 * `labels` is the rendered label set without braces, e.g.
 * `route="put_profile",status="200"`, or NULL. Registering the same name and
 * labels twice returns the same series. Name/type clashes are a programming
 * error and abort.
 */
metrics_counter_t *metrics_counter(metrics_t *metrics, const char *name, const char *help,
                                   const char *labels);
void metrics_counter_add(metrics_counter_t *counter, uint64_t n);
uint64_t metrics_counter_value(const metrics_counter_t *counter);

/* `bounds` ascending upper bounds (the +Inf bucket is implicit); copied. */
metrics_histogram_t *metrics_histogram(metrics_t *metrics, const char *name, const char *help,
                                       const char *labels, const double *bounds, size_t bound_count);
void metrics_histogram_observe(metrics_histogram_t *histogram, double value);
uint64_t metrics_histogram_count(const metrics_histogram_t *histogram);

/* A gauge whose value `fn(arg)` computes at render time (on the rendering thread). */
void metrics_gauge(metrics_t *metrics, const char *name, const char *help, const char *labels,
                   metrics_gauge_fn fn, void *arg);

/* Appends every family in registration order. */
void metrics_render(metrics_t *metrics, buf_t *out);

/* Latency buckets in seconds, 0.5 ms .. 10 s, for request and apply latencies. */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_bound_count;

#endif
