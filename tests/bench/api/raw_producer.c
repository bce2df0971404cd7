/*
 * raw_producer: what librdkafka alone costs per message under the api's load,
 * the ceiling issue 9's target is measured against.
 *
 * A PUT in kafka mode is the HTTP layer (layer_server.c measures it) plus one
 * produce and its delivery report. This program keeps the second part only:
 * BENCH_RAW_THREADS loops, each with its own producer as each api loop has,
 * keep BENCH_RAW_IN_FLIGHT messages in flight between them in a closed loop,
 * as wrk's connections keep PUTs in flight: each delivery report produces the
 * next message at once. After BENCH_RAW_WARMUP it measures BENCH_RAW_DURATION
 * and prints one line:
 *
 *   RAW msgs=<n> seconds=<s> rate=<msgs/s> cpu_us_per_msg=<x> failed=<n> threads=<t> in_flight=<n>
 *
 * where cpu_us_per_msg is this process's utime+stime (getrusage, all threads,
 * librdkafka's included) over the measured span divided by the messages
 * acknowledged in it. Like the api, only a report that proves the write
 * counts (kafka_delivery_written: no error, PERSISTED, an offset); any other
 * report is counted in failed= and makes the run invalid (exit 1), as a 503
 * makes a wrk run invalid.
 *
 * To cost what the api pays, it is the api's producer as far as Kafka can
 * tell: the settings come from profiled-api's own table (services/api/config.c,
 * linked in) read from the same environment: PROFILED_KAFKA_BROKERS, _TOPIC,
 * _PROPERTIES, _LINGER (2ms), _QUEUE_MAX and PROFILED_REQUEST_DEADLINE (the
 * message timeout); the producer contract of common/runtime/kafka_conf.h
 * (idempotent, acks=all, murmur2_random); statistics every 500 ms; the value
 * is a real replace command (codec_encode) of put.lua's profile, keyed by a
 * random recipient id, with a fresh random command id per message, so the
 * worker consuming the topic applies these as it applies the api's PUTs.
 * The command is encoded once; each message only rewrites its command id and
 * recipient id in place (both fixed-width), so the loop's CPU is librdkafka's
 * and not the encoder's.
 *
 * usage: raw_producer  (all settings from the environment; --help lists them)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "cfg.h"
#include "cfg_shared.h"
#include "clock.h"
#include "codec.h"
#include "http_ids.h"
#include "json_transcode.h"
#include "kafka_conf.h"
#include "kafka_delivery.h"
#include "kafka_log.h"
#include "log.h"

/* The same body as put.lua sends (keep the two alike): ~1 KiB of JSON, ~0.9 KiB as a command. */
static const char raw_body[] =
    "{\"profile\":{\"email\":\"bench@example.com\",\"email_verified\":true,\"phone_number\":\"+15555550100\","
    "\"address\":{\"formatted\":\"1 Main St\",\"locality\":\"Springfield\",\"region\":\"IL\","
    "\"postal_code\":\"62701\",\"country\":\"US\"},"
    "\"custom\":{\"plan\":\"pro\",\"seats\":12,\"ratio\":0.75,\"tags\":[\"a\",\"b\",\"c\"],\"note\":\""
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "\"}}}";

/* Recipient ids are "bench-" and 8 digits: fixed width, so they can be rewritten in place. put.lua
 * draws from the same range (there without leading zeros). */
#define RAW_RECIPIENT_PREFIX "bench-"
#define RAW_RECIPIENT_DIGITS 8
#define RAW_RECIPIENT_LEN    (sizeof(RAW_RECIPIENT_PREFIX) - 1 + RAW_RECIPIENT_DIGITS)
#define RAW_RECIPIENT_RANGE  100000000u

/* The bench's own knobs; the Kafka settings are the api's (api_config_t). */
typedef struct raw_config {
    int64_t in_flight;
    int64_t threads;
    int64_t warmup_ms;
    int64_t duration_ms;
} raw_config_t;

#define RAW_CFG(field) offsetof(raw_config_t, field)

static const cfg_entry_t raw_config_table[] = {
    {"BENCH_RAW_IN_FLIGHT", CFG_INT, RAW_CFG(in_flight), "64", 1, 100000, false,
     "Messages in flight in all (wrk's connections), split evenly over the threads."},
    {"BENCH_RAW_THREADS", CFG_INT, RAW_CFG(threads), "1", 1, 64, false,
     "Loops, each with its own producer (as each api loop owns one)."},
    {"BENCH_RAW_WARMUP", CFG_DURATION, RAW_CFG(warmup_ms), "2s", 0, 600000, false,
     "Unmeasured time first (producer id, metadata, connections)."},
    {"BENCH_RAW_DURATION", CFG_DURATION, RAW_CFG(duration_ms), "10s", 100, 3600000, false,
     "The measured span."},
};

typedef struct raw_bench raw_bench_t;

/* One loop: a thread, its producer and the messages it keeps in flight. Everything but the atomics is
 * the loop thread's once it runs; the main thread reads the atomics and, after joining, tears down. */
typedef struct raw_loop {
    raw_bench_t *bench;
    unsigned index;
    unsigned in_flight;   /* messages this loop keeps in flight */
    unsigned outstanding; /* produced and not yet reported */
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    rd_kafka_queue_t *rkqu;
    int kafka_pipe[2];
    buf_t command;          /* the encoded command, rewritten in place per message */
    size_t command_id_at;   /* offset of the 16 bytes of the command id in `command` */
    size_t recipient_id_at; /* offset of the recipient id's characters in `command` */
    uint64_t rng;           /* xorshift64* state for recipient ids */
    pthread_t thread;
    bool started;
    atomic_uint_fast64_t acked;  /* reports that prove the write */
    atomic_uint_fast64_t failed; /* any other report */
    atomic_bool broken;          /* cannot go on: errstr says why */
    char errstr[600];            /* "loop N: " and a reason of up to 512 bytes */
} raw_loop_t;

/* The one state of the binary. */
struct raw_bench {
    api_config_t api_config; /* the Kafka settings, read as profiled-api reads them */
    raw_config_t config;
    raw_loop_t *loops;
    atomic_bool stopping; /* set by the main thread: produce no more, drain, return */
};

static uint64_t raw_random(raw_loop_t *loop)
{
    loop->rng ^= loop->rng >> 12;
    loop->rng ^= loop->rng << 25;
    loop->rng ^= loop->rng >> 27;
    return loop->rng * 0x2545F4914F6CDD1DULL;
}

static void raw_loop_fail(raw_loop_t *loop, const char *what)
{
    if (!atomic_load(&loop->broken))
        snprintf(loop->errstr, sizeof(loop->errstr), "loop %u: %s", loop->index, what);
    atomic_store(&loop->broken, true);
}

/* Runs on the loop thread. The next message: a fresh command id and recipient id, and the produce the
 * api does (RD_KAFKA_MSG_F_COPY, keyed by the recipient id, default partitioner). */
static void raw_produce(raw_loop_t *loop)
{
    uint8_t *command = loop->command.data;
    char digits[RAW_RECIPIENT_DIGITS + 1];
    if (http_command_id_random(command + loop->command_id_at) < 0) {
        raw_loop_fail(loop, "getrandom failed");
        return;
    }
    snprintf(digits, sizeof(digits), "%0*u", RAW_RECIPIENT_DIGITS,
             (unsigned)(raw_random(loop) % RAW_RECIPIENT_RANGE));
    memcpy(command + loop->recipient_id_at + sizeof(RAW_RECIPIENT_PREFIX) - 1, digits, RAW_RECIPIENT_DIGITS);
    if (rd_kafka_produce(loop->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, command, loop->command.len,
                         command + loop->recipient_id_at, RAW_RECIPIENT_LEN, NULL) == -1) {
        /* The queue holds at most in_flight messages, far under PROFILED_KAFKA_QUEUE_MAX: any failure
         * here is a broken producer, and a closed loop that lost a message measures less than asked. */
        char what[300];
        snprintf(what, sizeof(what), "produce failed: %s", rd_kafka_err2str(rd_kafka_last_error()));
        raw_loop_fail(loop, what);
        return;
    }
    loop->outstanding++;
}

/* Runs on the loop thread, inside rd_kafka_poll. */
static void raw_delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, void *opaque)
{
    (void)rk;
    raw_loop_t *loop = opaque;
    loop->outstanding--;
    if (kafka_delivery_written(rkmessage))
        atomic_fetch_add_explicit(&loop->acked, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&loop->failed, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&loop->bench->stopping, memory_order_relaxed) &&
        !atomic_load_explicit(&loop->broken, memory_order_relaxed))
        raw_produce(loop);
}

/* Runs on the loop thread. The api parses this JSON (jansson) for the broker states, twice a second
 * per loop; that parse is left out here, librdkafka's cost of writing it is not. */
static int raw_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    (void)json;
    (void)json_len;
    (void)opaque;
    return 0; /* librdkafka frees json */
}

/* Runs on the loop thread. */
static void raw_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    raw_loop_t *loop = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[400], what[512];
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        snprintf(what, sizeof(what), "Kafka producer fatal error: %s", fatal);
        raw_loop_fail(loop, what);
        return;
    }
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "loop", loop->index);
    log_field_str(&fields, "error", rd_kafka_err2name((rd_kafka_resp_err_t)err));
    log_warn(&fields, "Kafka: %s", reason);
}

/*
 * Delivery reports are served as the api serves them (services/api/producer.c): the main queue
 * signals a pipe when it becomes non-empty (rd_kafka_queue_io_event_enable), the loop waits on the
 * pipe, drains it and calls rd_kafka_poll(rk, 0). So each wake-up costs what it costs the api: a
 * write(2) on librdkafka's thread, a wake-up and a read(2) on the loop's. A loop around
 * rd_kafka_poll(rk, timeout) would instead sleep on librdkafka's condition variable, another wake-up
 * path with another cost, and measure something the api does not do. poll(2) stands in for the api's
 * libevent (epoll) loop: one descriptor, the same wake-ups; the 100 ms timeout only notices the stop.
 */
static void *raw_loop_run(void *arg)
{
    raw_loop_t *loop = arg;
    for (unsigned i = 0; i < loop->in_flight && !atomic_load(&loop->broken); i++)
        raw_produce(loop);
    struct pollfd pfd = {.fd = loop->kafka_pipe[0], .events = POLLIN};
    while (!atomic_load(&loop->bench->stopping) && !atomic_load(&loop->broken)) {
        int ready = poll(&pfd, 1, 100);
        if (ready < 0 && errno != EINTR) {
            raw_loop_fail(loop, strerror(errno));
            break;
        }
        if (ready > 0) {
            char drain[256];
            ssize_t got = read(pfd.fd, drain, sizeof(drain));
            (void)got; /* a wake-up byte written after this read fires poll again */
            rd_kafka_poll(loop->rk, 0);
        }
    }
    /* Produce no more; wait for what is in flight (flush serves the reports), then give up on it. */
    rd_kafka_flush(loop->rk, 10000);
    if (rd_kafka_outq_len(loop->rk) > 0) {
        rd_kafka_purge(loop->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(loop->rk, 1000);
    }
    return NULL;
}

/* The command every message of `loop` starts from, and where its two ids sit in it. */
static int raw_command_init(raw_loop_t *loop, const limits_t *limits, char *errstr, size_t errstr_size)
{
    int rc = -1;
    buf_t profile = {0};
    transcode_error_t terror;
    if (transcode_profile_request((const uint8_t *)raw_body, sizeof(raw_body) - 1, limits, &profile,
                                  &terror) < 0) {
        snprintf(errstr, errstr_size, "the bench profile does not transcode: %s", terror.message);
        goto cleanup;
    }
    /* Placeholders that occur nowhere else in the encoding, found again after it. */
    char recipient[RAW_RECIPIENT_LEN + 1];
    snprintf(recipient, sizeof(recipient), "%s%0*u", RAW_RECIPIENT_PREFIX, RAW_RECIPIENT_DIGITS, 0u);
    codec_command_t command = {
        .schema_version = CODEC_SCHEMA_VERSION,
        .op = CODEC_OP_REPLACE,
        .recipient_id = recipient,
        .recipient_id_len = RAW_RECIPIENT_LEN,
        .accepted_at_us = (int64_t)time(NULL) * 1000000,
        .source = "api",
        .source_len = 3,
        .profile_msgpack = profile.data,
        .profile_msgpack_len = profile.len,
    };
    memset(command.command_id, 0xa5, sizeof(command.command_id));
    if (codec_encode(&command, &loop->command, errstr, errstr_size) < 0)
        goto cleanup;
    const uint8_t *data = loop->command.data;
    const uint8_t *id = memmem(data, loop->command.len, command.command_id, sizeof(command.command_id));
    const uint8_t *rid = memmem(data, loop->command.len, recipient, RAW_RECIPIENT_LEN);
    if (!id || !rid) {
        snprintf(errstr, errstr_size, "the placeholders are not in the encoded command");
        goto cleanup;
    }
    loop->command_id_at = (size_t)(id - data);
    loop->recipient_id_at = (size_t)(rid - data);
    rc = 0;
cleanup:
    buf_free(&profile);
    return rc;
}

/* The producer of `loop`, configured as api_producer_init configures the api's. */
static int raw_producer_init(raw_loop_t *loop, char *errstr, size_t errstr_size)
{
    const api_config_t *config = &loop->bench->api_config;
    char client_id[64];
    snprintf(client_id, sizeof(client_id), "profiled-raw-producer-%u", loop->index);
    rd_kafka_conf_t *conf = api_kafka_conf(config, client_id, errstr, errstr_size);
    if (!conf)
        return -1;
    rd_kafka_conf_set_dr_msg_cb(conf, raw_delivered);
    rd_kafka_conf_set_stats_cb(conf, raw_stats);
    rd_kafka_conf_set_error_cb(conf, raw_error);
    kafka_log_install(conf);
    rd_kafka_conf_set_opaque(conf, loop);

    if (kafka_producer_open(conf, config->kafka_topic, &loop->rk, &loop->rkt, errstr, errstr_size) < 0)
        return -1; /* conf was taken; the caller's teardown destroys what was made */
    if (pipe2(loop->kafka_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(errstr, errstr_size, "pipe2: %s", strerror(errno));
        return -1;
    }
    loop->rkqu = rd_kafka_queue_get_main(loop->rk);
    rd_kafka_queue_io_event_enable(loop->rkqu, loop->kafka_pipe[1], "1", 1);
    return 0;
}

/* After the loop's thread was joined (or never started). */
static void raw_loop_destroy(raw_loop_t *loop)
{
    if (loop->rkqu) {
        rd_kafka_queue_io_event_enable(loop->rkqu, -1, NULL, 0);
        rd_kafka_queue_destroy(loop->rkqu);
    }
    if (loop->rkt)
        rd_kafka_topic_destroy(loop->rkt);
    if (loop->rk)
        rd_kafka_destroy(loop->rk);
    for (int i = 0; i < 2; i++)
        if (loop->kafka_pipe[i] >= 0)
            close(loop->kafka_pipe[i]);
    buf_free(&loop->command);
}

typedef struct raw_sample {
    int64_t at_us;
    int64_t cpu_us; /* utime + stime of the whole process */
    uint64_t acked, failed;
} raw_sample_t;

static raw_sample_t raw_sample(const raw_bench_t *bench)
{
    struct rusage usage;
    raw_sample_t sample = {.at_us = clock_mono_us()};
    getrusage(RUSAGE_SELF, &usage);
    sample.cpu_us = (int64_t)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000 +
                    usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
    for (int64_t i = 0; i < bench->config.threads; i++) {
        sample.acked += atomic_load(&bench->loops[i].acked);
        sample.failed += atomic_load(&bench->loops[i].failed);
    }
    return sample;
}

static void raw_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int main(int argc, char **argv)
{
    static raw_bench_t bench;
    const raw_config_t *config = &bench.config;
    char errstr[512];
    int rc = 1;
    if (argc > 1) {
        cfg_print_help(stdout, "usage: raw_producer\n\nThe api's Kafka producer alone, in a closed loop.",
                       raw_config_table, CFG_ENTRY_COUNT(raw_config_table));
        api_config_help(stdout);
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    if (api_config_load(&bench.api_config, errstr, sizeof(errstr)) < 0 ||
        cfg_load(raw_config_table, CFG_ENTRY_COUNT(raw_config_table), &bench.config, errstr, sizeof(errstr)) <
            0) {
        fprintf(stderr, "raw_producer: %s\n", errstr);
        return 1;
    }
    log_set_service("raw_producer");
    log_level_t level;
    if (log_level_parse(bench.api_config.log_level, &level) < 0) {
        fprintf(stderr, "raw_producer: PROFILED_LOG_LEVEL=%s is not debug, info, warn or error\n",
                bench.api_config.log_level);
        goto cleanup;
    }
    log_level_min = level;
    if (kafka_conf_check_list(bench.api_config.kafka_properties, errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "raw_producer: %s\n", errstr);
        goto cleanup;
    }
    if (config->in_flight < config->threads) {
        fprintf(stderr,
                "raw_producer: BENCH_RAW_IN_FLIGHT=%" PRId64 " is fewer than BENCH_RAW_THREADS=%" PRId64 "\n",
                config->in_flight, config->threads);
        goto cleanup;
    }
    limits_t limits = CFG_SHARED_LIMITS_OF(&bench.api_config);
    bench.loops = calloc((size_t)config->threads, sizeof(*bench.loops));
    if (!bench.loops) {
        fprintf(stderr, "raw_producer: out of memory\n");
        goto cleanup;
    }
    for (int64_t i = 0; i < config->threads; i++) {
        raw_loop_t *loop = &bench.loops[i];
        loop->bench = &bench;
        loop->index = (unsigned)i;
        loop->kafka_pipe[0] = loop->kafka_pipe[1] = -1;
    }
    for (int64_t i = 0; i < config->threads; i++) {
        raw_loop_t *loop = &bench.loops[i];
        /* Split like the api's connections over its loops: evenly, the first ones one more. */
        loop->in_flight =
            (unsigned)(config->in_flight / config->threads + (i < config->in_flight % config->threads));
        if (getrandom(&loop->rng, sizeof(loop->rng), 0) != sizeof(loop->rng) || loop->rng == 0)
            loop->rng = 0x9e3779b97f4a7c15ULL + (uint64_t)i;
        if (raw_command_init(loop, &limits, errstr, sizeof(errstr)) < 0 ||
            raw_producer_init(loop, errstr, sizeof(errstr)) < 0) {
            fprintf(stderr, "raw_producer: loop %u: %s\n", loop->index, errstr);
            goto cleanup;
        }
    }
    for (int64_t i = 0; i < config->threads; i++) {
        raw_loop_t *loop = &bench.loops[i];
        if (pthread_create(&loop->thread, NULL, raw_loop_run, loop) != 0) {
            fprintf(stderr, "raw_producer: cannot start loop %u\n", loop->index);
            atomic_store(&bench.stopping, true);
            goto cleanup;
        }
        loop->started = true;
    }

    raw_sleep_ms(config->warmup_ms);
    raw_sample_t before = raw_sample(&bench);
    raw_sleep_ms(config->duration_ms);
    raw_sample_t after = raw_sample(&bench);
    atomic_store(&bench.stopping, true);

    uint64_t acked = after.acked - before.acked, failed = after.failed - before.failed;
    double seconds = (double)(after.at_us - before.at_us) / 1e6;
    printf("RAW msgs=%" PRIu64 " seconds=%.3f rate=%.0f cpu_us_per_msg=%.2f failed=%" PRIu64
           " threads=%" PRId64 " in_flight=%" PRId64 "\n",
           acked, seconds, (double)acked / seconds,
           acked ? (double)(after.cpu_us - before.cpu_us) / (double)acked : 0.0, failed, config->threads,
           config->in_flight);
    fflush(stdout);
    rc = 0;
    if (acked == 0 || failed > 0) {
        fprintf(stderr,
                "raw_producer: %" PRIu64 " messages acknowledged, %" PRIu64 " not: the run is not valid\n",
                acked, failed);
        rc = 1;
    }

cleanup:
    atomic_store(&bench.stopping, true);
    for (int64_t i = 0; bench.loops && i < config->threads; i++) {
        raw_loop_t *loop = &bench.loops[i];
        if (loop->started)
            pthread_join(loop->thread, NULL);
        if (atomic_load(&loop->broken)) {
            fprintf(stderr, "raw_producer: %s\n", loop->errstr);
            rc = 1;
        }
    }
    for (int64_t i = config->threads - 1; bench.loops && i >= 0; i--)
        raw_loop_destroy(&bench.loops[i]);
    free(bench.loops);
    api_config_free(&bench.api_config);
    return rc;
}
