/*
 * profiled-worker: applies replace commands from Kafka to PostgreSQL, each
 * exactly once, in partition order (DESIGN §2, §5).
 *
 *   profiled-worker            migrate, then consume until SIGTERM
 *   profiled-worker migrate    apply the schema migrations and exit
 *   profiled-worker --help     usage and every PROFILED_* variable
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka_conf.h"
#include "lib_versions.h"
#include "log.h"
#include "migrate.h"
#include "pgconn.h"
#include "worker.h"

static const char usage[] =
    "usage: profiled-worker [migrate | --help]\n"
    "\n"
    "  (no argument)  apply pending migrations, then consume PROFILED_KAFKA_TOPIC and apply\n"
    "                 each command to PostgreSQL exactly once, until SIGTERM\n"
    "  migrate        apply pending migrations (NNN_name.sql, in order, under an advisory\n"
    "                 lock) and exit";

static unsigned worker_alarm_seconds = 30;

/* Async-signal-safe: sets the flag the poll loop checks, and arms the
 * shutdown deadline (SIGALRM's default action ends the process). */
static void worker_on_signal(int signo)
{
    (void)signo;
    if (!worker_stop)
        alarm(worker_alarm_seconds);
    worker_stop = 1;
}

static int worker_migrate(const worker_config_t *config)
{
    char errstr[1024];
    int applied = 0;
    PGconn *conn = pgconn_open(config->pg_dsn, errstr, sizeof(errstr));
    if (!conn)
        log_die(NULL, "%s", errstr);
    if (migrate_run(conn, config->migrations_dir, &applied, errstr, sizeof(errstr)) < 0) {
        PQfinish(conn);
        log_die(NULL, "%s", errstr);
    }
    PQfinish(conn);
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_int(&fields, "applied", applied);
    log_info(&fields, "migrations up to date");
    return 0;
}

/*
 * glibc gives each thread that meets a locked arena one of its own, up to 8 per
 * core, and memory freed into an arena stays resident there. The worker's
 * threads (lanes, consumer, librdkafka's) allocate batch-sized buffers in
 * turn, so each arena came to hold its own high-water mark: peak RSS under
 * tests/bench/worker/run's mixed phase swung 49-89 MiB with the default and
 * stayed 45-46 MiB with two arenas, at the same apply rate (README "Memory").
 * MALLOC_ARENA_MAX in the environment still decides if set.
 */
static void worker_bound_arenas(void)
{
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, 2);
}

int main(int argc, char **argv)
{
    worker_bound_arenas();
    worker_config_t config;
    char errstr[1024];
    memset(&config, 0, sizeof(config));
    log_set_service("profiled-worker");

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        cfg_print_help(stdout, usage, worker_config_table, worker_config_count);
        return 0;
    }
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "migrate") != 0)) {
        fprintf(stderr, "profiled-worker: unknown argument \"%s\"\n%s\n", argv[argc - 1], usage);
        return 2;
    }
    if (cfg_load(worker_config_table, worker_config_count, &config, errstr, sizeof(errstr)) < 0)
        log_die(NULL, "configuration: %s", errstr);
    if (log_level_parse(config.log_level, &log_level_min) < 0)
        log_die(NULL, "configuration: PROFILED_LOG_LEVEL=%s: expected debug, info, warn or error",
                config.log_level);
    if (kafka_conf_check_list(config.kafka_properties, errstr, sizeof(errstr)) < 0)
        log_die(NULL, "configuration: %s", errstr);
    lib_versions_log();

    int rc;
    if (argc == 2)
        rc = worker_migrate(&config);
    else {
        worker_alarm_seconds = (unsigned)((config.shutdown_deadline_ms + 999) / 1000);
        struct sigaction action;
        memset(&action, 0, sizeof(action));
        action.sa_handler = worker_on_signal;
        sigemptyset(&action.sa_mask);
        sigaction(SIGTERM, &action, NULL);
        sigaction(SIGINT, &action, NULL);
        /* A peer that closes mid-answer (ops listener, broker, PostgreSQL) must not kill the process. */
        action.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &action, NULL);
        rc = worker_run(&config);
    }
    cfg_free(worker_config_table, worker_config_count, &config);
    return rc;
}
