/*
 * bench_codec: what the hot paths cost per KiB of request body, beside
 * jansson's json_loadb + json_decref of the same body in the same run (so
 * the ratio holds on any machine). Each figure is the best of several
 * rounds. Targets (issue 3): transcode at most 0.2 of jansson; write-back at
 * least 300 MB/s of JSON.
 *
 *   bench_codec [seconds-per-op-and-body]   (default 0.5)
 */
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "json_transcode.h"
#include "json_write.h"
#include "mp.h"

/* Rounds per op: each op's figure is its best round. */
#define BENCH_ROUNDS 9

typedef struct bench_body {
    const char *name;
    buf_t json;
} bench_body_t;

/* The thread's CPU time, not wall time: on a shared, oversubscribed machine
 * wall time mostly measures the neighbours. */
static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
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

/* Calls per timed batch so that one batch of fn lasts about `seconds`. */
static long bench_batch(bench_fn_t fn, const bench_body_t *body, void *state, double seconds)
{
    for (int i = 0; i < 50; i++) /* warm caches and the allocator */
        fn(body, state);
    long batch = 1;
    double took;
    do {
        batch *= 2;
        double t0 = bench_now();
        for (long i = 0; i < batch; i++)
            fn(body, state);
        took = bench_now() - t0;
    } while (took < seconds / 4 && batch < (1L << 30));
    return (long)((double)batch * seconds / took) + 1;
}

/* Nanoseconds per call over one batch. */
static double bench_time(bench_fn_t fn, const bench_body_t *body, void *state, long batch)
{
    double t0 = bench_now();
    for (long i = 0; i < batch; i++)
        fn(body, state);
    return (bench_now() - t0) * 1e9 / (double)batch;
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

/* What the ops share: the profile msgpack, the encoded command, scratch. */
typedef struct bench_state {
    limits_t limits;
    buf_t profile; /* transcode output */
    buf_t command; /* codec_encode output */
    buf_t out;     /* scratch output of the op being measured */
    codec_command_t cmd;
    msgpack_zone zone; /* msgpack-c's object tree, cleared between calls */
} bench_state_t;

static void bench_transcode(const bench_body_t *body, void *arg)
{
    bench_state_t *state = arg;
    transcode_error_t error;
    buf_reset(&state->out);
    if (transcode_profile_request(body->json.data, body->json.len, &state->limits, &state->out, &error) !=
        0) {
        fprintf(stderr, "bench: transcode rejects the body: %s\n", error.message);
        exit(1);
    }
}

static void bench_encode(const bench_body_t *body, void *arg)
{
    (void)body;
    bench_state_t *state = arg;
    char errstr[256];
    buf_reset(&state->out);
    if (codec_encode(&state->cmd, &state->out, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "bench: codec_encode: %s\n", errstr);
        exit(1);
    }
}

static void bench_decode(const bench_body_t *body, void *arg)
{
    (void)body;
    bench_state_t *state = arg;
    codec_command_t decoded;
    codec_failure_t failure;
    buf_reset(&state->out);
    if (codec_decode(state->command.data, state->command.len, (const uint8_t *)state->cmd.recipient_id,
                     state->cmd.recipient_id_len, &state->limits, &decoded, &state->out, &failure) != 0) {
        fprintf(stderr, "bench: codec_decode: %s\n", failure.message);
        exit(1);
    }
}

static void bench_write(const bench_body_t *body, void *arg)
{
    (void)body;
    bench_state_t *state = arg;
    codec_failure_t failure;
    size_t consumed;
    buf_reset(&state->out);
    if (json_write_value(state->profile.data, state->profile.len, &state->limits, "profile", &consumed,
                         &state->out, &failure) != 0) {
        fprintf(stderr, "bench: json_write_value: %s\n", failure.message);
        exit(1);
    }
}

/* The reader question (issue 14): mp_read over every item of the profile
 * (what the decoder and the writer do under their own work) ... */
static void bench_mp_walk(const bench_body_t *body, void *arg)
{
    (void)body;
    bench_state_t *state = arg;
    size_t consumed;
    buf_reset(&state->out); /* no output: MB/s reads 0 */
    if (mp_skip(state->profile.data, state->profile.len, &consumed) != 0 || consumed != state->profile.len) {
        fprintf(stderr, "bench: mp_skip rejects the profile\n");
        exit(1);
    }
}

/* ... against msgpack-c's unpacker building its object tree in a reused zone
 * (its cheapest reading API: no allocation once the zone has grown). */
static void bench_msgpackc_unpack(const bench_body_t *body, void *arg)
{
    (void)body;
    bench_state_t *state = arg;
    size_t off = 0;
    msgpack_object obj;
    buf_reset(&state->out); /* no output: MB/s reads 0 */
    msgpack_zone_clear(&state->zone);
    if (msgpack_unpack((const char *)state->profile.data, state->profile.len, &off, &state->zone, &obj) !=
            MSGPACK_UNPACK_SUCCESS ||
        off != state->profile.len) {
        fprintf(stderr, "bench: msgpack_unpack rejects the profile\n");
        exit(1);
    }
}

/* Transcodes and encodes once, so that each op measures only itself. */
static void bench_prepare(const bench_body_t *body, bench_state_t *state)
{
    memset(state, 0, sizeof(*state));
    state->limits = limits_default();
    msgpack_zone_init(&state->zone, MSGPACK_ZONE_CHUNK_SIZE);
    bench_transcode(body, state);
    buf_append(&state->profile, state->out.data, state->out.len);
    static const char recipient[] = "user-0123456789";
    for (int i = 0; i < CODEC_COMMAND_ID_BYTES; i++)
        state->cmd.command_id[i] = (uint8_t)(i * 17 + 3);
    state->cmd.schema_version = CODEC_SCHEMA_VERSION;
    state->cmd.recipient_id = recipient;
    state->cmd.recipient_id_len = sizeof(recipient) - 1;
    state->cmd.accepted_at_us = 1764331200000000LL;
    state->cmd.profile_msgpack = state->profile.data;
    state->cmd.profile_msgpack_len = state->profile.len;
    bench_encode(body, state);
    buf_append(&state->command, state->out.data, state->out.len);
}

static void bench_release(bench_state_t *state)
{
    buf_free(&state->profile);
    buf_free(&state->command);
    buf_free(&state->out);
    msgpack_zone_destroy(&state->zone);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    if (seconds <= 0)
        seconds = 0.5;
    bench_body_t bodies[2] = {{0}, {0}};
    bench_make_bodies(&bodies[0], &bodies[1]);

    /* jansson first: every ratio is against it. */
    static const struct {
        const char *name;
        bench_fn_t fn;
    } ops[] = {
        {"jansson", bench_jansson},
        {"transcode", bench_transcode},
        {"encode", bench_encode},
        {"decode", bench_decode},
        {"write-back", bench_write},
        {"mp-walk", bench_mp_walk},
        {"mc-unpack", bench_msgpackc_unpack},
    };
    /* Their indexes, for the reader comparison after the table. */
    enum { OP_WRITE = 4, OP_MP_WALK = 5, OP_MC_UNPACK = 6 };
    enum { NOPS = sizeof(ops) / sizeof(ops[0]) };
    printf("ns per KiB of request body; jansson = json_loadb + json_decref of the same body; the ops take "
           "turns,\n"
           "thread CPU time, %d rounds, best round each (interference only ever adds time)\n",
           BENCH_ROUNDS);
    printf("%-7s %7s  %-10s %10s %10s %14s %7s %10s\n", "body", "bytes", "op", "ns/op", "ns/KiB",
           "jansson ns/KiB", "ratio", "MB/s out");
    for (int b = 0; b < 2; b++) {
        const bench_body_t *body = &bodies[b];
        double kib = (double)body->json.len / 1024.0;
        bench_state_t state;
        bench_prepare(body, &state);
        long batch[NOPS];
        double best[NOPS];
        for (int i = 0; i < NOPS; i++)
            batch[i] = bench_batch(ops[i].fn, body, &state, seconds / BENCH_ROUNDS);
        for (int round = 0; round < BENCH_ROUNDS; round++) {
            for (int i = 0; i < NOPS; i++) {
                double ns = bench_time(ops[i].fn, body, &state, batch[i]);
                if (round == 0 || ns < best[i])
                    best[i] = ns;
            }
        }
        double jansson = best[0] / kib;
        for (int i = 1; i < NOPS; i++) {
            ops[i].fn(body, &state); /* state.out: this op's output, for MB/s */
            double mbps = (double)state.out.len / best[i] * 1e9 / 1e6;
            printf("%-7s %7zu  %-10s %10.0f %10.0f %14.0f %7.3f %10.0f\n", body->name, body->json.len,
                   ops[i].name, best[i], best[i] / kib, jansson, best[i] / kib / jansson, mbps);
        }
        /* A write-back on msgpack-c's objects would cost at least its unpack
         * plus the JSON emitting that ours does on top of its mp_read walk. */
        printf("%-7s reader: msgpack-c unpack / mp_read walk %.2fx; write-back on msgpack-c >= %.2fx ours\n",
               body->name, best[OP_MC_UNPACK] / best[OP_MP_WALK],
               (best[OP_WRITE] - best[OP_MP_WALK] + best[OP_MC_UNPACK]) / best[OP_WRITE]);
        bench_release(&state);
    }
    for (int b = 0; b < 2; b++)
        buf_free(&bodies[b].json);
    return 0;
}
