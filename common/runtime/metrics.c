#include "metrics.h"

#include "xalloc.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
const size_t metrics_latency_bound_count = sizeof(metrics_latency_bounds) / sizeof(metrics_latency_bounds[0]);

typedef enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM } metrics_type_t;

struct metrics_counter {
    _Atomic uint64_t value;
};

struct metrics_histogram {
    size_t bound_count;
    double *bounds;
    _Atomic uint64_t *buckets; /* bound_count + 1, the last is +Inf; not cumulative */
    _Atomic uint64_t count;
    _Atomic double sum;
};

typedef struct metrics_series {
    struct metrics_series *next;
    char *labels; /* NULL or "k=\"v\",..." */
    union {
        metrics_counter_t counter;
        metrics_histogram_t histogram;
        struct {
            metrics_gauge_fn fn;
            void *arg;
        } gauge;
    } u;
} metrics_series_t;

typedef struct metrics_family {
    struct metrics_family *next;
    char *name;
    char *help;
    metrics_type_t type;
    metrics_series_t *series, **series_tail;
} metrics_family_t;

struct metrics {
    pthread_mutex_t lock; /* guards registration and the lists; never taken on update */
    metrics_family_t *families, **families_tail;
};

static void *metrics_alloc(size_t size)
{
    return xcalloc(1, size, "registering a metric");
}

static char *metrics_strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t len = strlen(s) + 1;
    char *copy = metrics_alloc(len);
    memcpy(copy, s, len);
    return copy;
}

metrics_t *metrics_new(void)
{
    metrics_t *metrics = metrics_alloc(sizeof(*metrics));
    pthread_mutex_init(&metrics->lock, NULL);
    metrics->families_tail = &metrics->families;
    return metrics;
}

void metrics_destroy(metrics_t *metrics)
{
    if (!metrics)
        return;
    metrics_family_t *family = metrics->families;
    while (family) {
        metrics_family_t *next_family = family->next;
        metrics_series_t *series = family->series;
        while (series) {
            metrics_series_t *next_series = series->next;
            if (family->type == METRICS_HISTOGRAM) {
                free(series->u.histogram.bounds);
                free(series->u.histogram.buckets);
            }
            free(series->labels);
            free(series);
            series = next_series;
        }
        free(family->name);
        free(family->help);
        free(family);
        family = next_family;
    }
    pthread_mutex_destroy(&metrics->lock);
    free(metrics);
}

/* Finds or creates the series; *created tells the caller to initialise it.
 * Called with the lock held. */
static metrics_series_t *metrics_series_get(metrics_t *metrics, const char *name, const char *help,
                                            metrics_type_t type, const char *labels, bool *created)
{
    metrics_family_t *family;
    for (family = metrics->families; family; family = family->next)
        if (strcmp(family->name, name) == 0)
            break;
    if (!family) {
        family = metrics_alloc(sizeof(*family));
        family->name = metrics_strdup(name);
        family->help = metrics_strdup(help);
        family->type = type;
        family->series_tail = &family->series;
        *metrics->families_tail = family;
        metrics->families_tail = &family->next;
    } else if (family->type != type) {
        fatal_abort("metric %s registered with two types", name);
    }
    for (metrics_series_t *series = family->series; series; series = series->next) {
        if ((!series->labels && !labels) ||
            (series->labels && labels && strcmp(series->labels, labels) == 0)) {
            *created = false;
            return series;
        }
    }
    metrics_series_t *series = metrics_alloc(sizeof(*series));
    series->labels = metrics_strdup(labels);
    *family->series_tail = series;
    family->series_tail = &series->next;
    *created = true;
    return series;
}

metrics_counter_t *metrics_counter(metrics_t *metrics, const char *name, const char *help, const char *labels)
{
    bool created;
    pthread_mutex_lock(&metrics->lock);
    metrics_series_t *series = metrics_series_get(metrics, name, help, METRICS_COUNTER, labels, &created);
    pthread_mutex_unlock(&metrics->lock);
    return &series->u.counter;
}

void metrics_counter_add(metrics_counter_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(&counter->value, n, memory_order_relaxed);
}

uint64_t metrics_counter_value(const metrics_counter_t *counter)
{
    return atomic_load_explicit(&counter->value, memory_order_relaxed);
}

metrics_histogram_t *metrics_histogram(metrics_t *metrics, const char *name, const char *help,
                                       const char *labels, const double *bounds, size_t bound_count)
{
    bool created;
    pthread_mutex_lock(&metrics->lock);
    metrics_series_t *series = metrics_series_get(metrics, name, help, METRICS_HISTOGRAM, labels, &created);
    if (created) {
        metrics_histogram_t *histogram = &series->u.histogram;
        histogram->bound_count = bound_count;
        histogram->bounds = metrics_alloc(bound_count * sizeof(double));
        memcpy(histogram->bounds, bounds, bound_count * sizeof(double));
        histogram->buckets = metrics_alloc((bound_count + 1) * sizeof(_Atomic uint64_t));
    }
    pthread_mutex_unlock(&metrics->lock);
    return &series->u.histogram;
}

void metrics_histogram_observe(metrics_histogram_t *histogram, double value)
{
    size_t bucket = 0;
    while (bucket < histogram->bound_count && value > histogram->bounds[bucket])
        bucket++;
    atomic_fetch_add_explicit(&histogram->buckets[bucket], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&histogram->count, 1, memory_order_relaxed);
    double sum = atomic_load_explicit(&histogram->sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&histogram->sum, &sum, sum + value, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

uint64_t metrics_histogram_count(const metrics_histogram_t *histogram)
{
    return atomic_load_explicit(&histogram->count, memory_order_relaxed);
}

void metrics_gauge(metrics_t *metrics, const char *name, const char *help, const char *labels,
                   metrics_gauge_fn fn, void *arg)
{
    bool created;
    pthread_mutex_lock(&metrics->lock);
    metrics_series_t *series = metrics_series_get(metrics, name, help, METRICS_GAUGE, labels, &created);
    series->u.gauge.fn = fn;
    series->u.gauge.arg = arg;
    pthread_mutex_unlock(&metrics->lock);
}

static void metrics_render_number(buf_t *out, double value)
{
    if (isnan(value))
        buf_append_str(out, "NaN");
    else if (isinf(value))
        buf_append_str(out, value > 0 ? "+Inf" : "-Inf");
    else if (value == (double)(int64_t)value && fabs(value) < 1e15)
        buf_appendf(out, "%lld", (long long)value);
    else {
        /* The shortest of %.15g..%.17g that reads back to the same double. */
        char text[32];
        for (int precision = 15; precision <= 17; precision++) {
            snprintf(text, sizeof(text), "%.*g", precision, value);
            if (strtod(text, NULL) == value)
                break;
        }
        buf_append_str(out, text);
    }
}

/* name{labels,extra} — either part may be empty. */
static void metrics_render_name(buf_t *out, const char *name, const char *suffix, const char *labels,
                                const char *extra)
{
    buf_append_str(out, name);
    buf_append_str(out, suffix);
    bool has_labels = labels && labels[0];
    if (has_labels || extra) {
        buf_append_byte(out, '{');
        if (has_labels)
            buf_append_str(out, labels);
        if (has_labels && extra)
            buf_append_byte(out, ',');
        if (extra)
            buf_append_str(out, extra);
        buf_append_byte(out, '}');
    }
    buf_append_byte(out, ' ');
}

void metrics_render(metrics_t *metrics, buf_t *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&metrics->lock);
    for (metrics_family_t *family = metrics->families; family; family = family->next) {
        buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", family->name, family->help, family->name,
                    type_names[family->type]);
        for (metrics_series_t *series = family->series; series; series = series->next) {
            switch (family->type) {
            case METRICS_COUNTER:
                metrics_render_name(out, family->name, "", series->labels, NULL);
                buf_appendf(out, "%llu\n", (unsigned long long)metrics_counter_value(&series->u.counter));
                break;
            case METRICS_GAUGE:
                metrics_render_name(out, family->name, "", series->labels, NULL);
                metrics_render_number(out, series->u.gauge.fn(series->u.gauge.arg));
                buf_append_byte(out, '\n');
                break;
            case METRICS_HISTOGRAM: {
                const metrics_histogram_t *histogram = &series->u.histogram;
                uint64_t cumulative = 0;
                char le[48];
                for (size_t i = 0; i <= histogram->bound_count; i++) {
                    cumulative += atomic_load_explicit(&histogram->buckets[i], memory_order_relaxed);
                    if (i < histogram->bound_count)
                        snprintf(le, sizeof(le), "le=\"%g\"", histogram->bounds[i]);
                    else
                        snprintf(le, sizeof(le), "le=\"+Inf\"");
                    metrics_render_name(out, family->name, "_bucket", series->labels, le);
                    buf_appendf(out, "%llu\n", (unsigned long long)cumulative);
                }
                metrics_render_name(out, family->name, "_sum", series->labels, NULL);
                metrics_render_number(out, atomic_load_explicit(&histogram->sum, memory_order_relaxed));
                buf_append_byte(out, '\n');
                metrics_render_name(out, family->name, "_count", series->labels, NULL);
                buf_appendf(out, "%llu\n", (unsigned long long)metrics_histogram_count(histogram));
                break;
            }
            default:
                fatal_abort("metric %s has an unknown type %d", family->name, (int)family->type);
            }
        }
    }
    pthread_mutex_unlock(&metrics->lock);
}
