/*
 * fuzz_json.c — libFuzzer target for the JSON parser and canonical writer
 * (src/json/json.c).
 *
 * Each input is canonicalized. When it is accepted, the canonical output
 * must itself be accepted and canonicalize to exactly the same bytes (the
 * canonical form is a fixed point); anything else is a bug and aborts. A
 * rejected input must come with a message that names a byte offset. The
 * parser must never crash, leak, or read outside the input (ASan).
 * The replay driver (replay_main.c) runs the same function over the corpus
 * in tests/fuzz/corpus/fuzz_json/ as an ordinary ctest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "korudelta.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kd__buf a = KD__BUF_INIT, b = KD__BUF_INIT;
    char err[256], err2[256];
    int rc = kd__json_canonicalize((const char *)data, size, &a, err, sizeof err);
    if (rc == KD_EINVALID) {
        if (strncmp(err, "invalid JSON at byte ", 21) != 0) {
            fprintf(stderr, "fuzz_json: malformed error message \"%s\"\n", err);
            abort();
        }
        if (a.len != 0) {
            fprintf(stderr, "fuzz_json: output not rolled back on error\n");
            abort();
        }
    } else if (rc == KD_OK) {
        int rc2 = kd__json_canonicalize(a.data, a.len, &b, err2, sizeof err2);
        if (rc2 != KD_OK) {
            fprintf(stderr, "fuzz_json: canonical output rejected: %s\n", err2);
            abort();
        }
        if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) {
            fprintf(stderr, "fuzz_json: canonical form is not a fixed point\n");
            abort();
        }
    } else if (rc != KD_ENOMEM) {
        fprintf(stderr, "fuzz_json: unexpected status %d\n", rc);
        abort();
    }
    kd__buf_free(&a);
    kd__buf_free(&b);
    return 0;
}
