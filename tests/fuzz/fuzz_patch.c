/*
 * fuzz_patch.c — libFuzzer target for JSON Patch (src/json/patch.c and
 * the tree of src/json/dom.c).
 *
 * The input is split at its first NUL byte into a document and a patch
 * (no NUL: the first half and the second half). kd_json_patch must never
 * crash, leak or read outside its inputs (ASan); on success its result
 * must be canonical JSON, and diff(document, result) applied to the
 * document must give the result again; on failure there is no output and
 * a message. The replay driver (replay_main.c) runs the same function over
 * tests/fuzz/corpus/fuzz_patch/ as an ordinary ctest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "korudelta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_patch: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nul = size ? memchr(in, '\0', size) : NULL;
    size_t doclen = nul ? (size_t)(nul - in) : size / 2;
    const char *patch = in + doclen + (nul ? 1 : 0);
    size_t patchlen = size - doclen - (nul ? 1 : 0);
    char err[512], err2[512];
    char *out = NULL, *canon = NULL, *d = NULL, *again = NULL;
    size_t outlen = 0, canonlen = 0, dlen = 0, againlen = 0;

    err[0] = '\0';
    int rc = kd_json_patch(in, doclen, patch, patchlen, &out, &outlen, err, sizeof err);
    if (rc != KD_OK) {
        if (out || outlen)
            die("output on error", err);
        if (rc != KD_ENOMEM && (rc != KD_EINVALID || err[0] == '\0'))
            die("error without a message", NULL);
        return 0;
    }
    if (!out || strlen(out) != outlen)
        die("result length", NULL);
    if (kd_json_canonical(out, outlen, &canon, &canonlen, err2, sizeof err2) != KD_OK)
        die("result is not JSON", err2);
    if (canonlen != outlen || memcmp(canon, out, outlen) != 0)
        die("result is not canonical", out);
    if (kd_json_diff(in, doclen, out, outlen, &d, &dlen, err2, sizeof err2) != KD_OK)
        die("diff(document, result) failed", err2);
    if (kd_json_patch(in, doclen, d, dlen, &again, &againlen, err2, sizeof err2) != KD_OK)
        die("patch(document, diff(document, result)) failed", err2);
    if (againlen != outlen || memcmp(again, out, outlen) != 0)
        die("patch(document, diff(document, result)) != result", d);
    kd_free(out);
    kd_free(canon);
    kd_free(d);
    kd_free(again);
    return 0;
}
