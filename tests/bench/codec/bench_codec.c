/*
 * bench_codec: what the hot paths cost per KiB of request body, beside
 * jansson's json_loadb + json_decref of the same body in the same run (so
 * the ratio holds on any machine). Targets (issue 3): transcode at most 0.2
 * of jansson; write-back at least 300 MB/s of JSON.
 *
 *   bench_codec [seconds-per-measurement]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_transcode.h"

typedef struct bench_body {
    const char *name;
    buf_t json;
} bench_body_t;

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A profile like the ones the api sees: standard claims, an address, a
 * provider object, push tokens and some custom data. About 1 KiB. */
static const char bench_typical_profile[] =
    "\"email\":\"jane.doe@example.com\",\"email_verified\":true,\"phone_number\":\"+15551234567\","
    "\"phone_number_verified\":false,\"name\":\"Jane Doe\",\"given_name\":\"Jane\",\"family_name\":\"Doe\","
    "\"locale\":\"en-US\",\"zoneinfo\":\"America/New_York\",\"birthdate\":\"1990-04-01\","
    "\"address\":{\"formatted\":\"123 Main St, Springfield, IL 62701, US\",\"street_address\":\"123 Main "
    "St\","
    "\"locality\":\"Springfield\",\"region\":\"IL\",\"postal_code\":\"62701\",\"country\":\"US\"},"
    "\"slack\":{\"access_token\":\"xoxb-1234567890-abcdefghijklmnopqrstuv\",\"user_id\":\"U024BE7LH\"},"
    "\"firebaseToken\":[\"dGhpcyBpcyBhIGZha2UgdG9rZW4gZm9yIGEgYmVuY2htYXJr\",\"c2Vjb25kIGRldmljZSB0b2tlbg\"],"
    "\"custom\":{\"plan\":\"premium\",\"seats\":25,\"mrr\":1249.5,\"signup_ts\":1700000000123,"
    "\"features\":[\"sso\",\"audit\",\"export\"],\"company\":{\"name\":\"Acme "
    "Corp\",\"domain\":\"acme.example\","
    "\"employees\":1200},\"tags\":[\"vip\",\"beta\",\"emea\"],\"score\":0.875,\"opt_in\":{\"sms\":false,"
    "\"email\":true},\"note\":\"Prefers email; do not call before 9am \\u2013 local time \\u00e9t\\u00e9\","
    "\"last_login_ip\":\"203.0.113.42\",\"team\":\"Customer Success\"}";

static void bench_make_bodies(bench_body_t *typical, bench_body_t *large)
{
    typical->name = "1 KiB";
    buf_appendf(&typical->json, "{\"profile\":{%s}}", bench_typical_profile);
    /* 64 KiB: the same profile with an order history in custom data. */
    large->name = "64 KiB";
    buf_appendf(&large->json, "{\"profile\":{%s,\"orders\":[", bench_typical_profile);
    for (int i = 0; large->json.len < 64 * 1024 - 200; i++)
        buf_appendf(&large->json,
                    "%s{\"id\":\"ord_%08d\",\"total\":%d.%02d,\"items\":%d,\"currency\":\"EUR\","
                    "\"status\":\"delivered\",\"gift\":%s,\"sku\":[\"A-%d\",\"B-%d\"]}",
                    i ? "," : "", i * 7919, (i * 37) % 500, i % 100, 1 + i % 5, i % 3 ? "false" : "true", i,
                    i * 3);
    buf_append_str(&large->json, "]}}");
}

typedef void (*bench_fn_t)(const bench_body_t *body, void *state);

/* Runs fn until `seconds` passed; returns nanoseconds per call. */
static double bench_measure(bench_fn_t fn, const bench_body_t *body, void *state, double seconds)
{
    for (int i = 0; i < 50; i++) /* warm caches and the allocator */
        fn(body, state);
    long iterations = 0, batch = 16;
    double t0 = bench_now(), elapsed;
    do {
        for (long i = 0; i < batch; i++)
            fn(body, state);
        iterations += batch;
        elapsed = bench_now() - t0;
        if (batch < 1 << 16)
            batch *= 2;
    } while (elapsed < seconds);
    return elapsed * 1e9 / (double)iterations;
}

static void bench_jansson(const bench_body_t *body, void *state)
{
    (void)state;
    json_error_t error;
    json_t *root = json_loadb((const char *)body->json.data, body->json.len, 0, &error);
    if (!root) {
        fprintf(stderr, "bench: jansson rejects the body: %s\n", error.text);
        exit(1);
    }
    json_decref(root);
}

static void bench_transcode(const bench_body_t *body, void *state)
{
    buf_t *out = state;
    limits_t limits = limits_default();
    transcode_error_t error;
    buf_reset(out);
    if (transcode_profile_request(body->json.data, body->json.len, &limits, out, &error) != 0) {
        fprintf(stderr, "bench: transcode rejects the body: %s\n", error.message);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    if (seconds <= 0)
        seconds = 0.5;
    bench_body_t bodies[2] = {{0}, {0}};
    bench_make_bodies(&bodies[0], &bodies[1]);

    printf("%-7s %7s  %-10s %10s %10s %14s %7s\n", "body", "bytes", "op", "ns/op", "ns/KiB", "jansson ns/KiB",
           "ratio");
    for (int b = 0; b < 2; b++) {
        const bench_body_t *body = &bodies[b];
        double kib = (double)body->json.len / 1024.0;
        double jansson = bench_measure(bench_jansson, body, NULL, seconds) / kib;
        buf_t out = {0};
        double ns = bench_measure(bench_transcode, body, &out, seconds);
        printf("%-7s %7zu  %-10s %10.0f %10.0f %14.0f %7.3f\n", body->name, body->json.len, "transcode", ns,
               ns / kib, jansson, ns / kib / jansson);
        buf_free(&out);
    }
    for (int b = 0; b < 2; b++)
        buf_free(&bodies[b].json);
    return 0;
}
