/* Unit tests for common/runtime: the configuration table (retired variables included), JSON log
 * fields and lines, the log rate limit, metrics text, and the out-of-memory policy as the logger
 * reports it. Links profiled_runtime (and so wire) alone. */
#include <check.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "log.h"
#include "log_limit.h"
#include "metrics.h"
#include "xalloc.h"

typedef struct test_config {
    char *name;
    int64_t port;
    bool enabled;
    int64_t timeout_ms;
    int64_t body_bytes;
    char *secret;
} test_config_t;

static const cfg_entry_t test_table[] = {
    {"PROFILED_TEST_NAME", CFG_STRING, offsetof(test_config_t, name), "alpha", 0, 0, false, "a name"},
    {"PROFILED_TEST_PORT", CFG_INT, offsetof(test_config_t, port), "8080", 1, 65535, false, "a port"},
    {"PROFILED_TEST_ENABLED", CFG_BOOL, offsetof(test_config_t, enabled), "false", 0, 0, false, "a flag"},
    {"PROFILED_TEST_TIMEOUT", CFG_DURATION, offsetof(test_config_t, timeout_ms), "10s", 1, 3600000, false,
     "a wait"},
    {"PROFILED_TEST_BODY", CFG_SIZE, offsetof(test_config_t, body_bytes), "256KiB", 1, 1 << 30, false,
     "a size"},
    {"PROFILED_TEST_SECRET", CFG_STRING, offsetof(test_config_t, secret), NULL, 0, 0, true, "a secret"},
};

START_TEST(cfg_defaults_environment_and_errors)
{
    test_config_t config = {0};
    char errstr[256];
    unsetenv("PROFILED_TEST_PORT");
    setenv("PROFILED_TEST_ENABLED", "yes", 1);
    setenv("PROFILED_TEST_TIMEOUT", "250ms", 1);
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), 0);
    ck_assert_str_eq(config.name, "alpha");
    ck_assert_int_eq(config.port, 8080);
    ck_assert(config.enabled);
    ck_assert_int_eq(config.timeout_ms, 250);
    ck_assert_int_eq(config.body_bytes, 256 * 1024);
    ck_assert_str_eq(config.secret, "");

    setenv("PROFILED_TEST_PORT", "70000", 1);
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), -1);
    ck_assert_msg(strstr(errstr, "PROFILED_TEST_PORT=70000") && strstr(errstr, "between 1 and 65535"), "%s",
                  errstr);
    setenv("PROFILED_TEST_PORT", "80x", 1);
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), -1);
    ck_assert_msg(strstr(errstr, "expected an integer"), "%s", errstr);
    unsetenv("PROFILED_TEST_PORT");

    setenv("PROFILED_TEST_SECRET", "hunter2", 1);
    setenv("PROFILED_TEST_BODY", "lots", 1);
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), -1);
    ck_assert_msg(strstr(errstr, "PROFILED_TEST_BODY=lots"), "%s", errstr);
    unsetenv("PROFILED_TEST_BODY");
    ck_assert_int_eq(cfg_load(test_table, CFG_ENTRY_COUNT(test_table), &config, errstr, sizeof(errstr)), 0);
    ck_assert_str_eq(config.secret, "hunter2");

    /* A secret's value never appears in an error. */
    const cfg_entry_t secret_int = {
        "PROFILED_TEST_SECRET_INT", CFG_INT, offsetof(test_config_t, port), NULL, 1, 2, true, ""};
    ck_assert_int_eq(cfg_parse_value(&secret_int, "hunter2", &config, errstr, sizeof(errstr)), -1);
    ck_assert_msg(!strstr(errstr, "hunter2"), "%s", errstr);

    ck_assert_int_eq(cfg_parse_value(&test_table[3], "2m", &config, errstr, sizeof(errstr)), 0);
    ck_assert_int_eq(config.timeout_ms, 120000);
    ck_assert_int_eq(cfg_parse_value(&test_table[3], "2d", &config, errstr, sizeof(errstr)), -1);
    ck_assert_int_eq(cfg_parse_value(&test_table[2], "maybe", &config, errstr, sizeof(errstr)), -1);
    cfg_free(test_table, CFG_ENTRY_COUNT(test_table), &config);
    ck_assert_ptr_null(config.name);
    unsetenv("PROFILED_TEST_ENABLED");
    unsetenv("PROFILED_TEST_TIMEOUT");
    unsetenv("PROFILED_TEST_SECRET");
}
END_TEST

/* Runs fn with stderr on a temporary file; returns what it wrote (at most out_size - 1 bytes). */
static void capture_stderr(void (*fn)(void *), void *arg, char *out, size_t out_size)
{
    FILE *capture = tmpfile();
    ck_assert_ptr_nonnull(capture);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fileno(capture), STDERR_FILENO), 0);
    fn(arg);
    fflush(stderr);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    rewind(capture);
    size_t len = fread(out, 1, out_size - 1, capture);
    out[len] = '\0';
    fclose(capture);
}

static const cfg_entry_t retired_table[] = {
    {"PROFILED_TEST_PORT", CFG_INT, offsetof(test_config_t, port), "8080", 1, 65535, false, "a port"},
    CFG_RETIRED_ROW("PROFILED_TEST_OLD_TIMEOUT", "replaced by PROFILED_TEST_TIMEOUT"),
};

typedef struct retired_load {
    int rc;
    char errstr[256];
} retired_load_t;

static void retired_load_fn(void *arg)
{
    retired_load_t *load = arg;
    test_config_t config = {0};
    load->rc =
        cfg_load(retired_table, CFG_ENTRY_COUNT(retired_table), &config, load->errstr, sizeof(load->errstr));
}

static void retired_help_fn(void *arg)
{
    (void)arg;
    cfg_print_help(stderr, "usage: t", retired_table, CFG_ENTRY_COUNT(retired_table));
}

/* A retired variable that is set is still ignored, but says so once, as one JSON warning naming its
 * replacement; unset, nothing is logged; even a bad value later in the table does not hide it. */
START_TEST(cfg_retired_variable_warns_once)
{
    char out[4096];
    retired_load_t load = {0};
    unsetenv("PROFILED_TEST_PORT");
    unsetenv("PROFILED_TEST_OLD_TIMEOUT");
    capture_stderr(retired_load_fn, &load, out, sizeof(out));
    ck_assert_int_eq(load.rc, 0);
    ck_assert_msg(out[0] == '\0', "%s", out);

    setenv("PROFILED_TEST_OLD_TIMEOUT", "30s", 1);
    capture_stderr(retired_load_fn, &load, out, sizeof(out));
    ck_assert_int_eq(load.rc, 0);
    ck_assert_msg(strncmp(out, "{\"ts\":\"", 7) == 0 && strstr(out, "\"level\":\"warn\"") &&
                      strstr(out, "\"message\":\"PROFILED_TEST_OLD_TIMEOUT is retired and ignored: replaced "
                                  "by PROFILED_TEST_TIMEOUT\"") &&
                      strstr(out, "\"variable\":\"PROFILED_TEST_OLD_TIMEOUT\"") &&
                      strstr(out, "\"replaced_by\":\"replaced by PROFILED_TEST_TIMEOUT\""),
                  "%s", out);
    ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);

    setenv("PROFILED_TEST_PORT", "0", 1);
    capture_stderr(retired_load_fn, &load, out, sizeof(out));
    ck_assert_int_eq(load.rc, -1);
    ck_assert_msg(strstr(load.errstr, "PROFILED_TEST_PORT=0"), "%s", load.errstr);
    ck_assert_msg(strstr(out, "\"variable\":\"PROFILED_TEST_OLD_TIMEOUT\""), "%s", out);
    unsetenv("PROFILED_TEST_PORT");
    unsetenv("PROFILED_TEST_OLD_TIMEOUT");

    /* --help keeps it out of the settings and lists it apart, with its replacement. */
    capture_stderr(retired_help_fn, NULL, out, sizeof(out));
    ck_assert_msg(!strstr(out, "PROFILED_TEST_OLD_TIMEOUT (") &&
                      strstr(out, "\nRetired (ignored; a warning at start when set):\n"
                                  "  PROFILED_TEST_OLD_TIMEOUT: replaced by PROFILED_TEST_TIMEOUT\n"),
                  "%s", out);
}
END_TEST

START_TEST(log_fields_escape_and_bound)
{
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_str(&fields, "id", "a\"b\\c\n");
    log_field_int(&fields, "offset", -42);
    ck_assert_str_eq(fields.text, ",\"id\":\"a\\\"b\\\\c\\n\",\"offset\":-42");
    log_fields_t full = LOG_FIELDS_INIT;
    char value[200];
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    for (int i = 0; i < 10; i++)
        log_field_str(&full, "k", value);
    /* Never overflows, and cuts at a member boundary. */
    ck_assert_uint_lt(full.len, sizeof(full.text));
    ck_assert_int_eq(full.text[full.len - 1], '"');
    log_level_t level;
    ck_assert_int_eq(log_level_parse("warn", &level), 0);
    ck_assert_int_eq(level, LOG_WARN);
    ck_assert_int_eq(log_level_parse("loud", &level), -1);
}
END_TEST

/* A message that does not fit once escaped (control bytes take six bytes each) is cut,
 * not dropped: the line keeps its start and says it was truncated. */
START_TEST(log_long_escaped_message_is_cut_not_dropped)
{
    char message[1000];
    memcpy(message, "start", 5);
    memset(message + 5, '\x01', sizeof(message) - 6);
    message[sizeof(message) - 1] = '\0';
    FILE *capture = tmpfile();
    ck_assert_ptr_nonnull(capture);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fileno(capture), STDERR_FILENO), 0);
    log_write(LOG_ERROR, NULL, "%s", message);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    char line[8192];
    rewind(capture);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), capture));
    fclose(capture);
    ck_assert_msg(strstr(line, "\"message\":\"start\\u0001") != NULL, "%s", line);
    ck_assert_msg(strstr(line, " [truncated]\"}") != NULL, "%s", line);
    ck_assert_int_eq(line[strlen(line) - 1], '\n');
}
END_TEST

/* The log fields take the escaper's lossy policy (the same text as wire's json_escape_policies and
 * http's error bodies). */
START_TEST(log_fields_escape_lossy)
{
    static const char text[] = "a\x7f\xff\xc3\xa9\n\"";
    log_fields_t fields = LOG_FIELDS_INIT;
    log_field_strn(&fields, "v", text, sizeof(text) - 1);
    ck_assert_str_eq(fields.text, ",\"v\":\"a\\u007f\\ufffd\xc3\xa9\\n\\\"\"");
}
END_TEST

/* Runs fn in a child with stderr on a pipe; returns the child's wait status
 * and what it wrote. */
static int run_child(void (*fn)(void), char *out, size_t out_size)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < out_size && (n = read(fds[0], out + len, out_size - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void child_out_of_memory(void)
{
    log_set_service("profiled-test");
    /* More than any allocator gives (ctest runs this with ASan's allocator_may_return_null=1). */
    void *p = xmalloc(SIZE_MAX / 4, "a test allocation");
    free(p);
}

static void child_broken_invariant(void)
{
    log_set_service("profiled-test");
    fatal_abort("lane %d is busy", 3);
}

/* The one out-of-memory policy: a fatal log line with ts and service, then abort. */
START_TEST(xalloc_out_of_memory_logs_and_aborts)
{
    char out[4096];
    int status = run_child(child_out_of_memory, out, sizeof(out));
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status, out);
    ck_assert_msg(strstr(out, "{\"ts\":\"") != NULL, "%s", out); /* ASan may warn first */
    ck_assert_msg(strstr(out, "\"level\":\"fatal\",\"service\":\"profiled-test\"") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\"message\":\"out of memory: a test allocation (") != NULL, "%s", out);
    status = run_child(child_broken_invariant, out, sizeof(out));
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status, out);
    ck_assert_msg(strstr(out, "\"service\":\"profiled-test\",\"message\":\"lane 3 is busy\"}\n") != NULL,
                  "%s", out);
}
END_TEST

static double gauge_seven(void *arg)
{
    (void)arg;
    return 7;
}

START_TEST(metrics_render_prometheus_text)
{
    metrics_t *metrics = metrics_new();
    metrics_counter_t *ok = metrics_counter(metrics, "req_total", "Requests.", "status=\"200\"");
    metrics_counter_t *bad = metrics_counter(metrics, "req_total", "Requests.", "status=\"400\"");
    ck_assert_ptr_eq(ok, metrics_counter(metrics, "req_total", "Requests.", "status=\"200\""));
    metrics_counter_add(ok, 3);
    metrics_counter_add(bad, 1);
    const double bounds[] = {0.1, 1};
    metrics_histogram_t *latency = metrics_histogram(metrics, "lat_seconds", "Latency.", NULL, bounds, 2);
    metrics_histogram_observe(latency, 0.05);
    metrics_histogram_observe(latency, 0.5);
    metrics_histogram_observe(latency, 5);
    metrics_gauge(metrics, "depth", "Depth.", NULL, gauge_seven, NULL);
    buf_t out = {0};
    metrics_render(metrics, &out);
    buf_terminate(&out);
    const char *text = (const char *)out.data;
    ck_assert_msg(
        strstr(text, "# TYPE req_total counter\nreq_total{status=\"200\"} 3\nreq_total{status=\"400\"} 1\n"),
        "%s", text);
    ck_assert_msg(strstr(text, "lat_seconds_bucket{le=\"0.1\"} 1\nlat_seconds_bucket{le=\"1\"} 2\n"
                               "lat_seconds_bucket{le=\"+Inf\"} 3\nlat_seconds_sum 5.55"),
                  "%s", text);
    ck_assert_msg(strstr(text, "lat_seconds_count 3\n"), "%s", text);
    ck_assert_msg(strstr(text, "# TYPE depth gauge\ndepth 7\n"), "%s", text);
    buf_free(&out);
    metrics_destroy(metrics);
}
END_TEST

/* The bucket: `burst` lines at once, then `per_second`; what is dropped is counted and handed to
 * the next line logged for the same reason; reasons do not share a bucket. */
START_TEST(log_limit_bucket_per_reason)
{
    log_limit_t limit = LOG_LIMIT_INIT(2.0, 3.0);
    uint64_t suppressed = 99;
    int64_t t = 1000000;
    for (int i = 0; i < 3; i++) {
        ck_assert(log_limit_take(&limit, 400, t, &suppressed));
        ck_assert_uint_eq(suppressed, 0);
    }
    for (int i = 0; i < 50; i++)
        ck_assert(!log_limit_take(&limit, 400, t, &suppressed));
    /* another reason has its own burst */
    ck_assert(log_limit_take(&limit, 408, t, &suppressed));
    ck_assert_uint_eq(suppressed, 0);
    /* 0.4 s later: 0.8 token, still dropped; 0.5 s: one line, carrying the 51 dropped */
    ck_assert(!log_limit_take(&limit, 400, t + 400000, &suppressed));
    ck_assert(log_limit_take(&limit, 400, t + 500000, &suppressed));
    ck_assert_uint_eq(suppressed, 51);
    ck_assert(!log_limit_take(&limit, 400, t + 500000, &suppressed));
    /* a long pause refills up to the burst only */
    int allowed = 0;
    for (int i = 0; i < 10; i++)
        allowed += log_limit_take(&limit, 400, t + 3600000000LL, &suppressed);
    ck_assert_int_eq(allowed, 3);
    /* more reasons than buckets share the last one, and stay bounded */
    allowed = 0;
    for (int key = 0; key < 100; key++)
        for (int i = 0; i < 5; i++)
            allowed += log_limit_take(&limit, 1000 + key, t, &suppressed);
    ck_assert_int_le(allowed, 3 * LOG_LIMIT_KEYS);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("runtime");
    TCase *tcase = tcase_create("runtime");
    tcase_set_timeout(tcase, 20);
    tcase_add_test(tcase, cfg_defaults_environment_and_errors);
    tcase_add_test(tcase, cfg_retired_variable_warns_once);
    tcase_add_test(tcase, log_fields_escape_and_bound);
    tcase_add_test(tcase, log_long_escaped_message_is_cut_not_dropped);
    tcase_add_test(tcase, log_fields_escape_lossy);
    tcase_add_test(tcase, metrics_render_prometheus_text);
    tcase_add_test(tcase, xalloc_out_of_memory_logs_and_aborts);
    tcase_add_test(tcase, log_limit_bucket_per_reason);
    suite_add_tcase(suite, tcase);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
