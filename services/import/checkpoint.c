#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int checkpoint_write(const checkpoint_t *checkpoint, const char *path, char *errstr, size_t errstr_size)
{
    int rc = -1, fd = -1;
    char *text = NULL;
    char tmp[4096];
    json_t *root = json_pack("{s:s, s:[]}", "job", checkpoint->job, "files");
    json_t *files = json_object_get(root, "files");
    for (size_t i = 0; i < checkpoint->count; i++) {
        const checkpoint_file_t *f = &checkpoint->files[i];
        json_array_append_new(files, json_pack("{s:s, s:I, s:I, s:I, s:I, s:b}", "name", f->name, "size",
                                               (json_int_t)f->size, "mtime_ns", (json_int_t)f->mtime_ns,
                                               "lines_done", (json_int_t)f->lines_done, "offset",
                                               (json_int_t)f->offset, "complete", f->complete));
    }
    text = json_dumps(root, JSON_COMPACT);
    if (!text) {
        snprintf(errstr, errstr_size, "checkpoint: out of memory");
        goto cleanup;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
        snprintf(errstr, errstr_size, "checkpoint %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) < 0) {
        snprintf(errstr, errstr_size, "checkpoint: rename %s to %s: %s", tmp, path, strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (fd >= 0)
        close(fd);
    free(text);
    json_decref(root);
    return rc;
}

int checkpoint_read(checkpoint_t *checkpoint, const char *path, char *errstr, size_t errstr_size)
{
    int rc = -1;
    json_error_t jerror;
    if (access(path, F_OK) < 0 && errno == ENOENT)
        return 0;
    json_t *root = json_load_file(path, 0, &jerror);
    if (!root) {
        snprintf(errstr, errstr_size, "checkpoint %s: %s", path, jerror.text);
        return -1;
    }
    const char *job = json_string_value(json_object_get(root, "job"));
    json_t *files = json_object_get(root, "files");
    if (!job || !json_is_array(files)) {
        snprintf(errstr, errstr_size, "checkpoint %s: not a profiled-import checkpoint", path);
        goto cleanup;
    }
    if (strcmp(job, checkpoint->job) != 0) {
        snprintf(errstr, errstr_size, "checkpoint %s belongs to job \"%s\", not \"%s\"", path, job,
                 checkpoint->job);
        goto cleanup;
    }
    if (json_array_size(files) != checkpoint->count) {
        snprintf(
            errstr, errstr_size,
            "checkpoint %s lists %zu input files, the command line %zu: resume with the same files in the "
            "same order",
            path, json_array_size(files), checkpoint->count);
        goto cleanup;
    }
    for (size_t i = 0; i < checkpoint->count; i++) {
        checkpoint_file_t *f = &checkpoint->files[i];
        json_t *item = json_array_get(files, i);
        const char *name = json_string_value(json_object_get(item, "name"));
        json_int_t size = json_integer_value(json_object_get(item, "size"));
        json_int_t mtime = json_integer_value(json_object_get(item, "mtime_ns"));
        json_int_t lines = json_integer_value(json_object_get(item, "lines_done"));
        json_int_t offset = json_integer_value(json_object_get(item, "offset"));
        if (!name || strcmp(name, f->name) != 0) {
            snprintf(errstr, errstr_size, "checkpoint %s: input %zu is \"%s\", the command line names \"%s\"",
                     path, i + 1, name ? name : "?", f->name);
            goto cleanup;
        }
        /* A changed file would shift line numbers, and with them the command ids. */
        if (size != f->size || mtime != f->mtime_ns) {
            snprintf(
                errstr, errstr_size,
                "checkpoint %s: %s changed since the checkpoint (size or modification time); its lines would "
                "get other command ids. Start a new job (another --job) or restore the file",
                path, f->name);
            goto cleanup;
        }
        if (lines < 0 || offset < 0 || (f->size >= 0 && offset > f->size)) {
            snprintf(errstr, errstr_size, "checkpoint %s: bad position for %s", path, f->name);
            goto cleanup;
        }
        f->lines_done = (uint64_t)lines;
        f->offset = (uint64_t)offset;
        f->complete = json_is_true(json_object_get(item, "complete"));
    }
    rc = 1;
cleanup:
    json_decref(root);
    return rc;
}
