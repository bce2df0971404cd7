/*
 * libFuzzer target: json_write_value (msgpack to JSON) on arbitrary bytes,
 * and json_write_double on arbitrary 8-byte patterns.
 *
 * Invariants: no crash, leak, UB or read past the input; a failure leaves
 * the output as it was and carries a message; a success consumed at most
 * the input and wrote text that jansson parses; a lone float64 is written
 * as text that strtod reads back to the same bits.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_write.h"

static void fuzz_double(double d)
{
    if (!isfinite(d))
        return;
    buf_t out = {0};
    json_write_double(&out, d);
    buf_terminate(&out);
    char *end;
    double back = strtod((const char *)out.data, &end);
    if (*end != '\0' || memcmp(&back, &d, sizeof(d)) != 0)
        abort();
    buf_free(&out);
}

/* libFuzzer's entry point (declared here: no header of libFuzzer's declares it). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    limits_t limits = limits_default();
    codec_failure_t failure;
    buf_t out = {0};
    size_t consumed = 0;

    if (json_write_value(data, size, &limits, "value", &consumed, &out, &failure) == 0) {
        if (consumed == 0 || consumed > size)
            abort();
        json_error_t error;
        json_t *parsed =
            json_loadb((const char *)out.data, out.len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &error);
        if (!parsed)
            abort();
        json_decref(parsed);
    } else if (out.len != 0 || failure.message[0] == '\0' || failure.code <= CODEC_OK ||
               failure.code >= CODEC_ERR__COUNT) {
        abort();
    }
    buf_free(&out);

    if (size >= 8) {
        double d;
        memcpy(&d, data, sizeof(d));
        fuzz_double(d);
    }
    return 0;
}
