/*
 * profiled-api entry point: configuration, start-up, signals, shutdown.
 *
 * The main thread sets everything up (so that a bad setting or a port in use
 * stops the process before it serves anything), starts one thread per event
 * loop, then runs a small event loop of its own for the signals. SIGTERM or
 * SIGINT asks every loop to drain (stop accepting, answer what is held as its
 * reports arrive, up to PROFILED_SHUTDOWN_DEADLINE); when all loops are done
 * their producers are flushed and the process exits 0. A second signal exits
 * at once with status 1.
 *
 * At start the soft RLIMIT_NOFILE is raised to the hard limit: every
 * connection is a descriptor, and a soft limit of 1024 (systemd's and many
 * container runtimes' default) would cap the api far below
 * PROFILED_HTTP_MAX_CONNECTIONS. libevent's own log lines go through our
 * JSON logger.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api.h"
#include "cfg_shared.h"
#include "kafka_conf.h"
#include "lib_versions.h"
#include "log.h"
#include "loop.h"
#include "ops.h"
#include "reply.h"

/* libevent's warnings and errors (severity: EVENT_LOG_DEBUG 0 .. EVENT_LOG_ERR 3). */
static void api_libevent_log_cb(int severity, const char *message)
{
    log_level_t level = severity >= EVENT_LOG_ERR    ? LOG_ERROR
                        : severity >= EVENT_LOG_WARN ? LOG_WARN
                        : severity >= EVENT_LOG_MSG  ? LOG_INFO
                                                     : LOG_DEBUG;
    log_at(level, NULL, "libevent: %s", message);
}

/* Raises the soft descriptor limit to the hard one and logs both. */
static void api_raise_nofile(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) {
        log_warn(NULL, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return;
    }
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "soft_was", limit.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)limit.rlim_cur);
    log_field_int(&fields, "hard", limit.rlim_max == RLIM_INFINITY ? -1 : (int64_t)limit.rlim_max);
    if (limit.rlim_cur != limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) < 0) {
            log_warn(&fields, "cannot raise the descriptor limit: %s", strerror(errno));
            return;
        }
    }
    log_field_int(&fields, "soft", limit.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)limit.rlim_cur);
    log_info(&fields, "descriptor limit (RLIMIT_NOFILE)");
}

static void api_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    api_t *api = arg;
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "signal", sig);
    if (api->stopping) {
        log_warn(&fields, "second signal: exiting at once, without waiting for in-flight requests");
        _exit(1);
    }
    api->stopping = true;
    api->stop_started_us = api_now_us();
    log_field_int(&fields, "deadline_ms", api->config.shutdown_deadline_ms);
    log_info(&fields, "shutting down: no new connections, answering in-flight requests");
    for (unsigned i = 0; i < api->loop_count; i++)
        event_active(api->loops[i].stop_event, EV_READ, 0);
}

static void api_loop_done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    api_t *api = arg;
    if (atomic_load(&api->loops_done) == api->loop_count)
        event_base_loopbreak(api->main_base);
}

static int api_keys_load(api_t *api, char *errstr, size_t errstr_size)
{
    api->keys = http_keys_new();
    if (!api->keys) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    char reason[512];
    if (http_keys_add_list(api->keys, api->config.api_keys, reason, sizeof(reason)) < 0) {
        snprintf(errstr, errstr_size, "PROFILED_API_KEYS: %s", reason);
        return -1;
    }
    if (api->config.api_keys_file[0] &&
        http_keys_add_file(api->keys, api->config.api_keys_file, reason, sizeof(reason)) < 0) {
        snprintf(errstr, errstr_size, "PROFILED_API_KEYS_FILE: %s", reason);
        return -1;
    }
    if (http_keys_count(api->keys) == 0) {
        snprintf(errstr, errstr_size,
                 "no API key configured: set PROFILED_API_KEYS or PROFILED_API_KEYS_FILE (deploy/local/run "
                 "makes a development key)");
        return -1;
    }
    return 0;
}

static int api_check_config(api_t *api, char *errstr, size_t errstr_size)
{
    const api_config_t *config = &api->config;
    log_level_t level;
    if (log_level_parse(config->log_level, &level) < 0) {
        snprintf(errstr, errstr_size, "PROFILED_LOG_LEVEL=%s: expected debug, info, warn or error",
                 config->log_level);
        return -1;
    }
    log_level_min = level;
    if (!config->kafka_brokers[0]) {
        snprintf(errstr, errstr_size, "PROFILED_KAFKA_BROKERS must not be empty");
        return -1;
    }
    if (kafka_conf_check_list(config->kafka_properties, errstr, errstr_size) < 0)
        return -1;
    if (!config->kafka_topic[0]) {
        snprintf(errstr, errstr_size, "PROFILED_KAFKA_TOPIC must not be empty");
        return -1;
    }
    if (config->kafka_linger_ms >= config->request_deadline_ms) {
        snprintf(errstr, errstr_size,
                 "PROFILED_KAFKA_LINGER=%" PRId64 "ms must be shorter than PROFILED_REQUEST_DEADLINE=%" PRId64
                 "ms",
                 config->kafka_linger_ms, config->request_deadline_ms);
        return -1;
    }
    if (strcmp(config->put_ack, "applied") == 0) {
        api->put_ack = API_ACK_APPLIED;
    } else if (strcmp(config->put_ack, "kafka") == 0) {
        api->put_ack = API_ACK_KAFKA;
    } else {
        snprintf(errstr, errstr_size, "PROFILED_PUT_ACK=%s: expected applied or kafka", config->put_ack);
        return -1;
    }
    api->limits = CFG_SHARED_LIMITS_OF(config);
    api->loop_count = (unsigned)config->http_threads;
    api->max_connections_per_loop =
        (config->http_max_connections + config->http_threads - 1) / config->http_threads;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        api_config_help(stdout);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "profiled-api: unknown argument %s (configuration is by environment; see --help)\n",
                argv[1]);
        return 2;
    }
    log_set_service("profiled-api");
    event_set_log_callback(api_libevent_log_cb);

    static api_t api; /* the one state struct; static only to keep it off the stack */
    char errstr[600];
    if (api_config_load(&api.config, errstr, sizeof(errstr)) < 0 ||
        api_check_config(&api, errstr, sizeof(errstr)) < 0 || api_keys_load(&api, errstr, sizeof(errstr)) < 0)
        log_die(NULL, "%s", errstr);
    lib_versions_log();

    api_raise_nofile();

    /* A peer that closes mid-answer must not kill the process. */
    struct sigaction ignore = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &ignore, NULL);
    if (evthread_use_pthreads() < 0)
        log_die(NULL, "evthread_use_pthreads failed");

    api.metrics = metrics_new();
    api.loops = calloc(api.loop_count, sizeof(api_loop_t));
    if (!api.loops)
        log_die(NULL, "out of memory");
    for (unsigned i = 0; i < api.loop_count; i++)
        if (api_loop_init(&api.loops[i], &api, i, errstr, sizeof(errstr)) < 0)
            log_die(NULL, "%s", errstr);
    api_metrics_register(&api);

    api.main_base = event_base_new();
    if (!api.main_base)
        log_die(NULL, "event_base_new failed");
    api.loop_done_event = event_new(api.main_base, -1, 0, api_loop_done_cb, &api);
    struct event *sigterm = evsignal_new(api.main_base, SIGTERM, api_signal_cb, &api);
    struct event *sigint = evsignal_new(api.main_base, SIGINT, api_signal_cb, &api);
    if (!api.loop_done_event || !sigterm || !sigint || event_add(sigterm, NULL) < 0 ||
        event_add(sigint, NULL) < 0)
        log_die(NULL, "cannot install the signal handlers");

    /* Loop threads do not take SIGTERM/SIGINT themselves: they inherit this mask. */
    sigset_t block, previous;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &previous);
    for (unsigned i = 0; i < api.loop_count; i++) {
        int rc = pthread_create(&api.loops[i].thread, NULL, api_loop_run, &api.loops[i]);
        if (rc != 0)
            log_die(NULL, "pthread_create: %s", strerror(rc));
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);

    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "addr", api.config.http_addr);
    log_field_int(&fields, "port", api.config.http_port);
    log_field_int(&fields, "threads", api.config.http_threads);
    log_field_str(&fields, "topic", api.config.kafka_topic);
    log_info(&fields, "listening");

    event_base_dispatch(api.main_base);

    for (unsigned i = 0; i < api.loop_count; i++)
        pthread_join(api.loops[i].thread, NULL);
    for (unsigned i = 0; i < api.loop_count; i++)
        api_loop_destroy(&api.loops[i]);
    log_info(NULL, "stopped");

    event_free(sigterm);
    event_free(sigint);
    event_free(api.loop_done_event);
    event_base_free(api.main_base);
    free(api.loops);
    metrics_destroy(api.metrics);
    http_keys_destroy(api.keys);
    api_config_free(&api.config);
    libevent_global_shutdown();
    return 0;
}
