/*
 * profiled-import entry point: options, configuration, start-up checks,
 * signals, then import_run. Exit statuses are listed in --help.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfg_shared.h"
#include "clock.h"
#include "import.h"
#include "kafka_conf.h"
#include "log.h"
#include "xalloc.h"

volatile sig_atomic_t import_signals;

int64_t import_now_us(void)
{
    return clock_mono_us();
}

static const char import_usage[] =
    "usage: profiled-import --job ID [options] FILE... (\"-\" reads stdin)\n"
    "\n"
    "Reads profiles and produces replace commands to Kafka exactly as profiled-api would for\n"
    "PUT /profiles/{recipient_id}: the same strict JSON, Courier field checks, limits and messages,\n"
    "the same idempotent acks=all producer with murmur2 partitioning. A line is counted as imported\n"
    "only once Kafka acknowledged it.\n"
    "\n"
    "Input: NDJSON, one {\"recipient_id\": \"...\", \"profile\": {...}, \"version\": N} a line (version\n"
    "optional: an external version, proto/README.md section 7); blank lines are skipped. Or CSV with\n"
    "--csv. Lines are numbered from 1 in each file.\n"
    "\n"
    "Exactly once: each line's command id is derived from the job id, the file name as given and the\n"
    "line number (proto/README.md section 6), so running the same job again over the same files sends\n"
    "the same ids and the worker skips every line it already applied. Re-running after a crash, a\n"
    "Ctrl-C or a Kafka outage never applies a line twice; --resume only saves re-sending.\n"
    "\n"
    "Options:\n"
    "  --job ID              required; names the import: 1..128 of A-Z a-z 0-9 . _ -. Use a new job id\n"
    "                        for new data, the same one to re-run or resume an import.\n"
    "  --csv                 the input is CSV (RFC 4180) with a header row.\n"
    "  --map SPEC            CSV columns to fields: field=Column,... e.g.\n"
    "                        --map recipient_id=UserId,email=Email,email_verified:json=Verified\n"
    "                        recipient_id (required) and version are the command's; any other field is a\n"
    "                        top-level profile member, a JSON string unless marked :json (then the cell\n"
    "                        is one JSON value: true, 42, {\"a\":1}). An empty cell leaves the field out.\n"
    "                        Without --map every column maps to the field of its own name.\n"
    "  --rejects FILE        write each rejected line as {\"file\",\"line\",\"message\",\"input\"} to FILE\n"
    "                        (appended to with --resume). Every rejected line is also logged (warn).\n"
    "  --max-rejects N       stop once more than N lines were rejected (default: no limit).\n"
    "  --checkpoint FILE     where progress is saved, about once a second and at the end, from\n"
    "                        acknowledgements only (default: profiled-import.<job>.checkpoint).\n"
    "  --resume              continue from the checkpoint: skip the lines it says Kafka acknowledged\n"
    "                        (at most the in-flight window is sent again; the worker skips those).\n"
    "                        Without --resume an existing checkpoint is replaced.\n"
    "  --dry-run             validate only: no Kafka connection, nothing produced, no checkpoint.\n"
    "  --summary-json FILE   write the summary as one JSON object to FILE (\"-\": stdout).\n"
    "  --source TAG          the commands' source tag (default profiled-import).\n"
    "  --window N            commands in flight at most (default 100000; and at most 256 MiB of them\n"
    "                        queued): bounds memory and what a resume re-sends.\n"
    "  --linger-ms N         producer linger.ms (default 20).\n"
    "  --batch-bytes N       producer batch.size (default 1000000).\n"
    "  --compression CODEC   none, gzip, snappy, lz4 or zstd (default lz4).\n"
    "  --stall-timeout SEC   stop with a checkpoint when Kafka acknowledged nothing for SEC seconds\n"
    "                        while commands are in flight (default 300; 0: wait for ever).\n"
    "  --drain-timeout SEC   after SIGINT/SIGTERM, wait up to SEC seconds for the commands in flight\n"
    "                        (default 10); a second signal stops at once. Either way the checkpoint is\n"
    "                        written.\n"
    "  --progress-interval SEC  off a terminal, a JSON progress line every SEC seconds (default 10;\n"
    "                        0: none). On a terminal, a live line: read, acked, rejected, MB/s,\n"
    "                        lines/s, share done and ETA (from the input files' sizes).\n"
    "  -h, --help            this text.\n"
    "\n"
    "Exit status: 0 every line acknowledged; 1 finished, some lines rejected; 2 bad usage or\n"
    "configuration; 3 Kafka failed or stalled (checkpoint written); 4 --max-rejects exceeded;\n"
    "5 an input or output file failed; 130 interrupted (checkpoint written).";

static int import_parse_int(const char *option, const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || !end || *end || end == text || v < min || v > max) {
        fprintf(stderr, "profiled-import: %s %s: expected an integer from %" PRId64 " to %" PRId64 "\n",
                option, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static bool import_job_valid(const char *job)
{
    size_t len = strlen(job);
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = job[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

enum {
    OPT_JOB = 256,
    OPT_CSV,
    OPT_MAP,
    OPT_REJECTS,
    OPT_MAX_REJECTS,
    OPT_CHECKPOINT,
    OPT_RESUME,
    OPT_DRY_RUN,
    OPT_SUMMARY,
    OPT_SOURCE,
    OPT_WINDOW,
    OPT_LINGER,
    OPT_BATCH,
    OPT_COMPRESSION,
    OPT_STALL,
    OPT_DRAIN,
    OPT_PROGRESS,
};

/* Fills im->options from argv. Returns 0, 1 for --help (done), or -1 (a message was printed). */
static int import_parse_options(import_t *im, int argc, char **argv)
{
    static const struct option long_options[] = {
        {"job", required_argument, NULL, OPT_JOB},
        {"csv", no_argument, NULL, OPT_CSV},
        {"map", required_argument, NULL, OPT_MAP},
        {"rejects", required_argument, NULL, OPT_REJECTS},
        {"max-rejects", required_argument, NULL, OPT_MAX_REJECTS},
        {"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
        {"resume", no_argument, NULL, OPT_RESUME},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"summary-json", required_argument, NULL, OPT_SUMMARY},
        {"source", required_argument, NULL, OPT_SOURCE},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"linger-ms", required_argument, NULL, OPT_LINGER},
        {"batch-bytes", required_argument, NULL, OPT_BATCH},
        {"compression", required_argument, NULL, OPT_COMPRESSION},
        {"stall-timeout", required_argument, NULL, OPT_STALL},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN},
        {"progress-interval", required_argument, NULL, OPT_PROGRESS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    import_options_t *o = &im->options;
    *o = (import_options_t){
        .source = "profiled-import",
        .compression = "lz4",
        .max_rejects = -1,
        .window = 100000,
        .linger_ms = 20,
        .batch_bytes = 1000000,
        .progress_interval_ms = 10000,
        .stall_timeout_ms = 300000,
        .drain_timeout_ms = 10000,
    };
    int64_t seconds;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        switch (c) {
        case OPT_JOB:
            o->job = optarg;
            break;
        case OPT_CSV:
            o->csv = true;
            break;
        case OPT_MAP:
            o->map_spec = optarg;
            break;
        case OPT_REJECTS:
            o->rejects_path = optarg;
            break;
        case OPT_MAX_REJECTS:
            if (import_parse_int("--max-rejects", optarg, 0, INT64_MAX, &o->max_rejects) < 0)
                return -1;
            break;
        case OPT_CHECKPOINT:
            o->checkpoint_path = optarg;
            break;
        case OPT_RESUME:
            o->resume = true;
            break;
        case OPT_DRY_RUN:
            o->dry_run = true;
            break;
        case OPT_SUMMARY:
            o->summary_path = optarg;
            break;
        case OPT_SOURCE:
            o->source = optarg;
            break;
        case OPT_WINDOW:
            if (import_parse_int("--window", optarg, 1, 1000000, &o->window) < 0)
                return -1;
            break;
        case OPT_LINGER:
            if (import_parse_int("--linger-ms", optarg, 0, 900000, &o->linger_ms) < 0)
                return -1;
            break;
        case OPT_BATCH:
            if (import_parse_int("--batch-bytes", optarg, 1, 2147483647, &o->batch_bytes) < 0)
                return -1;
            break;
        case OPT_COMPRESSION:
            o->compression = optarg;
            break;
        case OPT_STALL:
            if (import_parse_int("--stall-timeout", optarg, 0, 86400 * 365, &seconds) < 0)
                return -1;
            o->stall_timeout_ms = seconds ? seconds * 1000 : INT64_MAX / 1000;
            break;
        case OPT_DRAIN:
            if (import_parse_int("--drain-timeout", optarg, 0, 86400, &seconds) < 0)
                return -1;
            o->drain_timeout_ms = seconds * 1000;
            break;
        case OPT_PROGRESS:
            if (import_parse_int("--progress-interval", optarg, 0, 86400, &seconds) < 0)
                return -1;
            o->progress_interval_ms = seconds * 1000;
            break;
        case 'h':
            return 1;
        default:
            fprintf(stderr, "profiled-import: see --help\n");
            return -1;
        }
    }
    o->files = argv + optind;
    o->file_count = (size_t)(argc - optind);
    if (!o->job) {
        fprintf(stderr, "profiled-import: --job is required (it names the import, and the command ids derive "
                        "from it; see --help)\n");
        return -1;
    }
    if (!import_job_valid(o->job)) {
        fprintf(stderr, "profiled-import: --job %s: expected 1 to 128 characters of A-Z a-z 0-9 . _ -\n",
                o->job);
        return -1;
    }
    if (o->file_count == 0) {
        fprintf(stderr, "profiled-import: no input file (use - for stdin); see --help\n");
        return -1;
    }
    if (o->map_spec && !o->csv) {
        fprintf(stderr, "profiled-import: --map needs --csv\n");
        return -1;
    }
    if (strlen(o->source) > 128) {
        fprintf(stderr, "profiled-import: --source: at most 128 bytes\n");
        return -1;
    }
    size_t stdin_count = 0;
    for (size_t i = 0; i < o->file_count; i++) {
        stdin_count += strcmp(o->files[i], "-") == 0;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(o->files[i], o->files[j]) == 0) {
                fprintf(stderr, "profiled-import: %s is named twice (its lines would get the same ids)\n",
                        o->files[i]);
                return -1;
            }
        }
    }
    (void)stdin_count;
    return 0;
}

static void import_on_signal(int sig)
{
    (void)sig;
    import_signals++;
}

/* Identity of the inputs for the checkpoint, and their total size for the ETA. */
static int import_stat_files(import_t *im, char *errstr, size_t errstr_size)
{
    checkpoint_t *ck = &im->checkpoint;
    ck->job = im->options.job;
    ck->count = im->options.file_count;
    ck->files = xcalloc(ck->count, sizeof(*ck->files), "the checkpoint file list");
    bool sizes_known = true;
    for (size_t i = 0; i < ck->count; i++) {
        checkpoint_file_t *f = &ck->files[i];
        f->name = im->options.files[i];
        f->size = -1;
        struct stat st;
        if (strcmp(f->name, "-") == 0) {
            sizes_known = false;
            continue;
        }
        if (stat(f->name, &st) < 0) {
            snprintf(errstr, errstr_size, "%s: %s", f->name, strerror(errno));
            return -1;
        }
        if (S_ISREG(st.st_mode)) {
            f->size = st.st_size;
            f->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            im->total_bytes += (uint64_t)st.st_size;
        } else {
            sizes_known = false;
        }
    }
    if (!sizes_known)
        im->total_bytes = 0;
    return 0;
}

int main(int argc, char **argv)
{
    static import_t im; /* the one state struct; static only to keep it off the stack */
    char errstr[700], default_checkpoint[200];
    int rc = import_parse_options(&im, argc, argv);
    if (rc == 1) {
        import_config_help(stdout, import_usage);
        return 0;
    }
    if (rc < 0)
        return IMPORT_EXIT_USAGE;
    log_set_service("profiled-import");

    if (import_config_load(&im.config, errstr, sizeof(errstr)) < 0 ||
        kafka_conf_check_list(im.config.kafka_properties, errstr, sizeof(errstr)) < 0) {
        log_error(NULL, "%s", errstr);
        return IMPORT_EXIT_USAGE;
    }
    log_level_t level;
    if (log_level_parse(im.config.log_level, &level) < 0) {
        log_error(NULL, "PROFILED_LOG_LEVEL=%s: expected debug, info, warn or error", im.config.log_level);
        return IMPORT_EXIT_USAGE;
    }
    log_level_min = level;
    im.parser.limits = CFG_SHARED_LIMITS_OF(&im.config);
    im.parser.job = im.options.job;
    im.parser.source = im.options.source;
    if (!im.options.checkpoint_path) {
        snprintf(default_checkpoint, sizeof(default_checkpoint), "profiled-import.%s.checkpoint",
                 im.options.job);
        im.options.checkpoint_path = default_checkpoint;
    }
    if (im.options.csv) {
        char message[300];
        if (csv_map_parse(&im.map, im.options.map_spec, message, sizeof(message)) < 0) {
            log_error(NULL, "%s", message);
            return IMPORT_EXIT_USAGE;
        }
    }
    if (import_stat_files(&im, errstr, sizeof(errstr)) < 0) {
        log_error(NULL, "%s", errstr);
        return IMPORT_EXIT_INPUT;
    }
    if (im.options.resume) {
        if (im.options.dry_run) {
            log_error(NULL, "--resume and --dry-run do not go together");
            return IMPORT_EXIT_USAGE;
        }
        int got = checkpoint_read(&im.checkpoint, im.options.checkpoint_path, errstr, sizeof(errstr));
        if (got < 0) {
            log_error(NULL, "%s", errstr);
            return IMPORT_EXIT_USAGE;
        }
        if (got == 0) {
            log_fields_t fields = LOG_FIELDS_INIT;
            log_field_str(&fields, "checkpoint", im.options.checkpoint_path);
            log_warn(&fields, "--resume: no checkpoint yet; starting from the first line");
        }
    }
    if (im.options.rejects_path) {
        im.rejects = fopen(im.options.rejects_path, im.options.resume ? "a" : "w");
        if (!im.rejects) {
            log_error(NULL, "--rejects %s: %s", im.options.rejects_path, strerror(errno));
            return IMPORT_EXIT_INPUT;
        }
    }
    im.ring = xcalloc((size_t)im.options.window, sizeof(*im.ring), "the send window");
    if (!im.options.dry_run && import_producer_new(&im, errstr, sizeof(errstr)) < 0) {
        log_error(NULL, "%s", errstr);
        return IMPORT_EXIT_USAGE;
    }
    im.tty = isatty(STDERR_FILENO);

    struct sigaction on_signal = {.sa_handler = import_on_signal};
    sigemptyset(&on_signal.sa_mask);
    sigaction(SIGINT, &on_signal, NULL);
    sigaction(SIGTERM, &on_signal, NULL);
    struct sigaction ignore = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &ignore, NULL);

    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "job", im.options.job);
    log_field_int(&fields, "files", (int64_t)im.options.file_count);
    if (!im.options.dry_run)
        log_field_str(&fields, "topic", im.config.kafka_topic);
    log_info(&fields, im.options.dry_run ? "validating (dry run)" : "importing");

    int exit_code = import_run(&im);

    import_producer_destroy(&im);
    if (im.rejects && fclose(im.rejects) != 0 && exit_code == IMPORT_EXIT_OK)
        exit_code = IMPORT_EXIT_INPUT;
    free(im.ring);
    free(im.checkpoint.files);
    buf_free(&im.reject_line);
    csv_map_free(&im.map);
    line_parser_free(&im.parser);
    import_config_free(&im.config);
    return exit_code;
}
