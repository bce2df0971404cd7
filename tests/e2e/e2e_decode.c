/*
 * e2e_decode: prints one replace command, read from a file, as a JSON line, so
 * that the shell tests can compare what is in Kafka with what they sent.
 *
 *   e2e_decode <value-file> <key>
 *
 * Output (stdout, one line):
 *   {"command_id":"<32 hex>","recipient_id":"...","accepted_at_us":N,
 *    "version":"N"|null,"source":"..."|null,"profile":{...}}
 * The profile is the worker's own JSON text (codec_decode), so a test sees the
 * command exactly as the worker will apply it. Exit 0 on success, 1 with the
 * codec's error code and message on stderr when the bytes are not a valid
 * command, 2 on a usage or I/O error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "json_write.h"
#include "profile_limits.h"

static int e2e_read_file(const char *path, buf_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "e2e_decode: cannot open %s\n", path);
        return -1;
    }
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(out, chunk, n);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "e2e_decode: cannot read %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: e2e_decode <value-file> <key>\n");
        return 2;
    }
    int rc = 2;
    buf_t value = {0}, profile = {0}, line = {0};
    if (e2e_read_file(argv[1], &value) < 0)
        goto cleanup;

    limits_t limits = limits_default();
    codec_command_t command;
    codec_failure_t failure;
    const char *key = argv[2];
    /* A zero-length file still needs a valid pointer for the decoder. */
    static const uint8_t empty[1];
    const uint8_t *bytes = value.len ? value.data : empty;
    if (codec_decode(bytes, value.len, (const uint8_t *)key, strlen(key), &limits, &command, &profile,
                     &failure) < 0) {
        fprintf(stderr, "e2e_decode: %s: %s\n", codec_error_name(failure.code), failure.message);
        rc = 1;
        goto cleanup;
    }

    buf_append_str(&line, "{\"command_id\":\"");
    for (size_t i = 0; i < CODEC_COMMAND_ID_BYTES; i++)
        buf_appendf(&line, "%02x", command.command_id[i]);
    buf_append_str(&line, "\",\"recipient_id\":");
    json_write_string(&line, command.recipient_id, command.recipient_id_len);
    buf_appendf(&line, ",\"accepted_at_us\":%" PRId64 ",\"version\":", command.accepted_at_us);
    if (command.has_version)
        buf_appendf(&line, "\"%" PRIu64 "\"", command.version);
    else
        buf_append_str(&line, "null");
    buf_append_str(&line, ",\"source\":");
    if (command.source)
        json_write_string(&line, command.source, command.source_len);
    else
        buf_append_str(&line, "null");
    buf_append_str(&line, ",\"profile\":");
    buf_append(&line, profile.data, profile.len);
    buf_append_str(&line, "}\n");
    if (fwrite(line.data, 1, line.len, stdout) != line.len || fflush(stdout) != 0) {
        fprintf(stderr, "e2e_decode: cannot write stdout\n");
        goto cleanup;
    }
    rc = 0;

cleanup:
    buf_free(&line);
    buf_free(&profile);
    buf_free(&value);
    return rc;
}
