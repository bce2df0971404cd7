/*
 * import_unit: profiled-import's parsers, without services.
 *   - csv_split: quoting rules, records over several lines, malformed records;
 *   - csv_map: a mapped record becomes the NDJSON form, :json cells are one value only;
 *   - line_to_command: ids derive from (job, file, line) only, as UUID v8; versions; messages;
 *   - reader: lines without a final newline, CRLF, too-long lines skipped to their newline,
 *     resuming at an offset;
 *   - checkpoint: a round trip, and refusals (other job, changed file).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "codec.h"
#include "csv.h"
#include "http_ids.h"
#include "line.h"
#include "reader.h"

static csv_record_t record;

static csv_status_t split(const char *text, char *message)
{
    return csv_split((const uint8_t *)text, strlen(text), &record, message, 256);
}

static const char *cell(size_t i)
{
    static char out[256];
    snprintf(out, sizeof(out), "%.*s", (int)record.cells[i].len,
             (const char *)record.text.data + record.cells[i].offset);
    return out;
}

START_TEST(csv_split_rules)
{
    char message[256];
    ck_assert_int_eq(split("a,b,,c\r", message), CSV_OK);
    ck_assert_uint_eq(record.count, 4);
    ck_assert_str_eq(cell(0), "a");
    ck_assert_str_eq(cell(2), "");
    ck_assert_str_eq(cell(3), "c");
    ck_assert_int_eq(split("\"x, y\",\"say \"\"hi\"\"\",\"\"", message), CSV_OK);
    ck_assert_uint_eq(record.count, 3);
    ck_assert_str_eq(cell(0), "x, y");
    ck_assert_str_eq(cell(1), "say \"hi\"");
    ck_assert_str_eq(cell(2), "");
    ck_assert_int_eq(split("a,\"open", message), CSV_NEED_MORE);
    ck_assert_int_eq(split("a,\"open\nclosed\",z", message), CSV_OK);
    ck_assert_str_eq(cell(1), "open\nclosed");
    ck_assert_int_eq(split("a,\"q\"x", message), CSV_ERROR);
    ck_assert_ptr_nonnull(strstr(message, "cell 2"));
    ck_assert_int_eq(split("a,b\"c", message), CSV_OK);
    ck_assert_str_eq(cell(1), "b\"c");
    ck_assert_int_eq(split("", message), CSV_OK);
    ck_assert_uint_eq(record.count, 1);
}
END_TEST

START_TEST(csv_map_records)
{
    char message[256];
    csv_map_t map;
    limits_t limits = limits_default();
    buf_t json = {0}, scratch = {0};
    ck_assert_int_eq(csv_map_parse(&map, "recipient_id=Id,version=V,email=Mail,plan:json=Plan", message, 256),
                     0);
    ck_assert_int_eq(split("Plan,Id,Mail,V", message), CSV_OK);
    ck_assert_int_eq(csv_map_header(&map, &record, message, 256), 0);
    ck_assert_int_eq(split("\"{\"\"a\"\":1}\",u1,x@y,42", message), CSV_OK);
    ck_assert_int_eq(csv_map_record(&map, &record, 4, &limits, &scratch, &json, message, 256), 0);
    buf_terminate(&json);
    ck_assert_str_eq(
        (char *)json.data,
        "{\"recipient_id\":\"u1\",\"version\":42,\"profile\":{\"email\":\"x@y\",\"plan\":{\"a\":1}}}");
    /* a :json cell is one value: it cannot add members (or another recipient_id) to the record */
    buf_reset(&json);
    ck_assert_int_eq(split("\"1,\"\"recipient_id\"\":\"\"evil\"\"\",u1,x@y,1", message), CSV_OK);
    ck_assert_int_eq(csv_map_record(&map, &record, 4, &limits, &scratch, &json, message, 256), -1);
    ck_assert_ptr_nonnull(strstr(message, "column Plan"));
    ck_assert_int_eq(split("1,u1,,007", message), CSV_OK); /* found by fuzz_csv: JSON has no leading zeros */
    buf_reset(&json);
    ck_assert_int_eq(csv_map_record(&map, &record, 4, &limits, &scratch, &json, message, 256), 0);
    buf_terminate(&json);
    ck_assert_str_eq((char *)json.data, "{\"recipient_id\":\"u1\",\"version\":7,\"profile\":{\"plan\":1}}");
    ck_assert_int_eq(split("1,u1,x@y,v2", message), CSV_OK);
    ck_assert_int_eq(csv_map_record(&map, &record, 4, &limits, &scratch, &json, message, 256), -1);
    ck_assert_ptr_nonnull(strstr(message, "version (column V)"));
    ck_assert_int_eq(split("1,u1", message), CSV_OK);
    ck_assert_int_eq(csv_map_record(&map, &record, 4, &limits, &scratch, &json, message, 256), -1);
    csv_map_free(&map);
    ck_assert_int_eq(csv_map_parse(&map, "email=Mail", message, 256), 0);
    ck_assert_int_eq(split("Mail", message), CSV_OK);
    ck_assert_int_eq(csv_map_header(&map, &record, message, 256), -1);
    ck_assert_ptr_nonnull(strstr(message, "recipient_id"));
    csv_map_free(&map);
    buf_free(&json);
    buf_free(&scratch);
}
END_TEST

static int to_command(line_parser_t *parser, const char *text, const char *file, uint64_t line, buf_t *out,
                      char *message)
{
    line_command_t command;
    buf_reset(out);
    return line_to_command(parser, (const uint8_t *)text, strlen(text), file, line, 1, out, &command, message,
                           256);
}

static void command_id_of(const buf_t *bytes, const char *key, uint8_t id[16], codec_command_t *command)
{
    codec_failure_t failure;
    buf_t json = {0};
    limits_t limits = limits_default();
    ck_assert_msg(codec_decode(bytes->data, bytes->len, (const uint8_t *)key, strlen(key), &limits, command,
                               &json, &failure) == 0,
                  "%s", failure.message);
    memcpy(id, command->command_id, 16);
    buf_free(&json);
}

START_TEST(line_commands)
{
    char message[256];
    line_parser_t parser = {.limits = limits_default(), .job = "job1", .source = "profiled-import"};
    buf_t out = {0};
    uint8_t a[16], b[16];
    codec_command_t command;
    const char *text = "{\"recipient_id\":\"r1\",\"profile\":{\"email\":\"a@b\"},\"version\":9}";
    ck_assert_int_eq(to_command(&parser, text, "f.ndjson", 7, &out, message), 0);
    command_id_of(&out, "r1", a, &command);
    ck_assert(command.has_version && command.version == 9);
    ck_assert_int_eq(a[6] >> 4, 8); /* UUID version 8 */
    ck_assert_int_eq(a[8] & 0xC0, 0x80);
    /* the same (job, file, line) gives the same id whatever the content and the time */
    ck_assert_int_eq(
        to_command(&parser, "{\"recipient_id\":\"r2\",\"profile\":{}}", "f.ndjson", 7, &out, message), 0);
    command_id_of(&out, "r2", b, &command);
    ck_assert_mem_eq(a, b, 16);
    ck_assert(!command.has_version);
    ck_assert_int_eq(to_command(&parser, text, "f.ndjson", 8, &out, message), 0);
    command_id_of(&out, "r1", b, &command);
    ck_assert_mem_ne(a, b, 16);
    ck_assert_int_eq(to_command(&parser, text, "g.ndjson", 7, &out, message), 0);
    command_id_of(&out, "r1", b, &command);
    ck_assert_mem_ne(a, b, 16);
    parser.job = "job2";
    ck_assert_int_eq(to_command(&parser, text, "f.ndjson", 7, &out, message), 0);
    command_id_of(&out, "r1", b, &command);
    ck_assert_mem_ne(a, b, 16);

    /* the example of proto/README.md §6.1 */
    http_command_id_from_import("example", 7, "profiles.ndjson", 15, 1, b);
    char uuid[HTTP_COMMAND_ID_TEXT];
    http_command_id_format(b, uuid);
    ck_assert_str_eq(uuid, "592e458e-e305-8725-8e8a-4c4cf322366c");
    http_command_id_from_key("retry-42", 8, "alice", 5, b);
    http_command_id_format(b, uuid);
    ck_assert_str_eq(uuid, "4e6713a6-b958-8c25-87ca-3221e25c2f2f");

    static const struct {
        const char *text, *message;
    } bad[] = {
        {"{\"recipient_id\":1,\"profile\":{}}", "recipient_id must be a string"},
        {"{\"recipient_id\":null,\"profile\":{}}", "recipient_id is required"},
        {"{\"recipient_id\":\"x\",\"profile\":{},\"version\":1.5}",
         "version must be an integer from 0 to 18446744073709551615"},
        {"{\"recipient_id\":\"x\",\"profile\":{},\"version\":\"3\"}",
         "version must be an integer from 0 to 18446744073709551615"},
        {"{\"recipient_id\":\"x\",\"profile\":{},\"version\":18446744073709551616}",
         "version must be an integer from 0 to 18446744073709551615"},
        {"{\"recipient_id\":\"x\"}", "profile is required"},
        {"{\"recipient_id\":\"x\",\"profile\":{\"address\":{\"locality\":3}}}",
         "profile.address.locality must be a string"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(to_command(&parser, bad[i].text, "f", 1, &out, message), -1);
        ck_assert_str_eq(message, bad[i].message);
    }
    char long_id[400];
    snprintf(long_id, sizeof(long_id), "{\"recipient_id\":\"%0257d\",\"profile\":{}}", 0);
    ck_assert_int_eq(to_command(&parser, long_id, "f", 1, &out, message), -1);
    ck_assert_str_eq(message, "recipient_id must be at most 256 bytes");
    ck_assert_int_eq(to_command(&parser,
                                "{\"recipient_id\":\"x\",\"profile\":{},\"version\":18446744073709551615}",
                                "f", 1, &out, message),
                     0);
    command_id_of(&out, "x", b, &command);
    ck_assert(command.version == UINT64_MAX);
    buf_free(&out);
    line_parser_free(&parser);
}
END_TEST

START_TEST(reader_lines)
{
    char path[] = "/tmp/import_unit_XXXXXX", errstr[256];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("one\r\n", f);
    for (int i = 0; i < 3000; i++)
        fputc('x', f);
    fputs("\nthree", f);
    fclose(f);
    reader_t reader;
    reader_line_t line;
    ck_assert_int_eq(reader_open(&reader, path, 1000, errstr, sizeof(errstr)), 0);
    ck_assert_int_eq(reader_next(&reader, &line, errstr, sizeof(errstr)), 1);
    ck_assert_uint_eq(line.len, 4); /* the CR stays; the parsers treat it as whitespace */
    ck_assert_uint_eq(line.end_offset, 5);
    ck_assert_int_eq(reader_next(&reader, &line, errstr, sizeof(errstr)), 1);
    ck_assert(line.too_long);
    ck_assert_uint_eq(line.len, 3000);
    ck_assert_uint_eq(line.end_offset, 3006);
    ck_assert_int_eq(reader_next(&reader, &line, errstr, sizeof(errstr)), 1);
    ck_assert(!line.too_long && line.len == 5 && memcmp(line.text, "three", 5) == 0);
    ck_assert_uint_eq(line.end_offset, 3011);
    ck_assert_int_eq(reader_next(&reader, &line, errstr, sizeof(errstr)), 0);
    reader_close(&reader);
    ck_assert_int_eq(reader_open(&reader, path, 1000, errstr, sizeof(errstr)), 0);
    ck_assert_int_eq(reader_skip_to(&reader, 3006, errstr, sizeof(errstr)), 0);
    ck_assert_int_eq(reader_next(&reader, &line, errstr, sizeof(errstr)), 1);
    ck_assert(line.len == 5 && memcmp(line.text, "three", 5) == 0);
    reader_close(&reader);
    unlink(path);
}
END_TEST

START_TEST(checkpoint_round_trip)
{
    char path[] = "/tmp/import_ckpt_XXXXXX", errstr[512];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    checkpoint_file_t files[2] = {
        {.name = "a", .size = 10, .mtime_ns = 5, .lines_done = 3, .offset = 7, .complete = true},
        {.name = "b", .size = 20, .mtime_ns = 6, .lines_done = 1, .offset = 4}};
    checkpoint_t written = {.job = "j", .files = files, .count = 2};
    ck_assert_int_eq(checkpoint_write(&written, path, errstr, sizeof(errstr)), 0);
    checkpoint_file_t again[2] = {{.name = "a", .size = 10, .mtime_ns = 5},
                                  {.name = "b", .size = 20, .mtime_ns = 6}};
    checkpoint_t read = {.job = "j", .files = again, .count = 2};
    ck_assert_int_eq(checkpoint_read(&read, path, errstr, sizeof(errstr)), 1);
    ck_assert(again[0].complete && again[0].lines_done == 3 && again[1].offset == 4 && !again[1].complete);
    read.job = "other";
    ck_assert_int_eq(checkpoint_read(&read, path, errstr, sizeof(errstr)), -1);
    ck_assert_ptr_nonnull(strstr(errstr, "belongs to job"));
    read.job = "j";
    again[1].size = 21;
    ck_assert_int_eq(checkpoint_read(&read, path, errstr, sizeof(errstr)), -1);
    ck_assert_ptr_nonnull(strstr(errstr, "changed"));
    unlink(path);
    ck_assert_int_eq(checkpoint_read(&read, path, errstr, sizeof(errstr)), 0);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("import");
    TCase *tc = tcase_create("parsers");
    tcase_add_test(tc, csv_split_rules);
    tcase_add_test(tc, csv_map_records);
    tcase_add_test(tc, line_commands);
    tcase_add_test(tc, reader_lines);
    tcase_add_test(tc, checkpoint_round_trip);
    suite_add_tcase(suite, tc);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    csv_record_free(&record);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
