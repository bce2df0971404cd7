/*
 * libFuzzer target: the JSON Patch parser (common/wire/json_patch) and the
 * worker's patch application (services/worker/doc.c).
 *
 * The input is read two ways: as a PATCH body (JSON text, jpatch_request) and
 * as a msgpack patch array (jpatch_check). Invariants: no crash, leak, UB or
 * read past the input; a refusal has a message; an accepted body gives a
 * canonical patch that passes jpatch_check and re-canonicalises to the same
 * bytes; an accepted patch applied to a small fixed profile either gives a map
 * or is refused with a reason naming an operation, and never changes the input.
 */
#include <assert.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "json_patch.h"
#include "json_transcode.h"

static void fuzz_apply(const uint8_t *patch, size_t len)
{
    static const char profile[] = "{\"a\":{\"b\":[1,2,{\"c\":null}]},\"~\":\"t\",\"/\":[],\"n\":1.5}";
    limits_t limits = limits_default();
    buf_t doc = {0}, before = {0}, after = {0};
    transcode_error_t e;
    int rc = transcode_value((const uint8_t *)profile, sizeof(profile) - 1, &limits, &doc, &e);
    assert(rc == 0);
    msgpack_zone *zone = msgpack_zone_new(4096);
    msgpack_object base, out;
    doc_unpack(zone, doc.data, doc.len, &base);
    doc_pack(&base, &before);
    char reason[256];
    reason[0] = '\0';
    if (doc_patch(zone, &base, patch, len, &out, reason, sizeof(reason)) == 0) {
        assert(out.type == MSGPACK_OBJECT_MAP);
        buf_t packed = {0};
        doc_pack(&out, &packed);
        buf_free(&packed);
    } else {
        assert(reason[0] != '\0');
    }
    doc_pack(&base, &after);
    assert(before.len == after.len && memcmp(before.data, after.data, before.len) == 0);
    msgpack_zone_free(zone);
    buf_free(&doc);
    buf_free(&before);
    buf_free(&after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    limits_t limits = limits_default();
    buf_t out = {0}, again = {0}, scratch = {0};
    transcode_error_t e;
    if (jpatch_request(data, size, &limits, &out, &e) == 0) {
        size_t used = 0;
        codec_failure_t f;
        int rc = jpatch_check(out.data, out.len, &limits, &used, &scratch, &f);
        assert(rc == 0 && used == out.len);
        jpatch_write_canonical(out.data, out.len, &again);
        assert(again.len == out.len && memcmp(again.data, out.data, out.len) == 0);
        fuzz_apply(out.data, out.len);
    } else {
        assert(e.message[0] != '\0');
    }
    size_t used = 0;
    codec_failure_t f;
    if (jpatch_check(data, size, &limits, &used, &scratch, &f) == 0)
        fuzz_apply(data, used);
    else
        assert(f.message[0] != '\0');
    buf_free(&out);
    buf_free(&again);
    buf_free(&scratch);
    return 0;
}
