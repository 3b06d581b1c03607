/*
 * fuzz_filter.c — libFuzzer target for the filter language
 * (src/query/filter.c, filter_parse.c, and the paths and values of jv.c).
 *
 * Each input is read twice: as filter text (up to its first NUL) and as
 * the JSON form. A rejected text must come with "column N: ..." where N
 * lies within the text (or just past its end). An accepted filter must
 * survive both round trips — to_text then parse, to_json then from_json —
 * as the same tree (equal JSON forms), and the original, the two re-read
 * filters and a copy must give the same answer on a few fixed documents.
 * Nothing may crash, leak, or read outside its input (ASan). The replay
 * driver (replay_main.c) runs the corpus in tests/fuzz/corpus/fuzz_filter/
 * as an ordinary ctest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "korudelta.h"
#include "query/filter.h"
#include "query/jv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const docs[] = {
    "{\"a\":1,\"b\":{\"c\":[1,2.5,\"x\"]},\"name\":\"Alice\",\"tags\":[\"red\",\"blue\"],\"n\":null}",
    "{\"a\":\"1\",\"b\":[{\"c\":true}],\"name\":\"\xc3\x84pfel \\\"q\\\"\\n\",\"big\":123456789012345678901234567890}",
    "{\"a\":1.0,\"and\":{\"x\":false},\"first name\":\"\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb\",\"n\":-0.0}",
    "[1,[2,[3]],{\"a\":\"\\u0000\"}]",
    "\"just a string\"",
    "null",
    "{}",
};
#define N_DOCS (sizeof docs / sizeof docs[0])

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_filter: %s: %s\n", what, detail ? detail : "");
    abort();
}

static char *json_of(const kd_filter *f)
{
    char *j = NULL;
    size_t n = 0;
    int rc = kd_filter_to_json(f, &j, &n);
    if (rc == KD_ENOMEM)
        return NULL;
    if (rc != KD_OK || !j || strlen(j) != n)
        fail("to_json failed", NULL);
    return j;
}

/* Round trips and answers for an accepted filter. */
static void check(kd_filter *f)
{
    char err[512];
    char *text = NULL, *j1 = json_of(f), *j2 = NULL, *j3 = NULL;
    kd_filter *g = NULL, *h = NULL, *c = NULL;
    size_t tlen = 0;
    if (!j1)
        return;
    int rc = kd_filter_to_text(f, &text, &tlen);
    if (rc == KD_ENOMEM)
        goto done;
    if (rc != KD_OK || strlen(text) != tlen)
        fail("to_text failed", NULL);
    rc = kd_filter_parse(text, &g, err, sizeof err);
    if (rc == KD_ENOMEM)
        goto done;
    if (rc != KD_OK) {
        fprintf(stderr, "text: %s\n", text);
        fail("to_text output does not parse", err);
    }
    if (!(j2 = json_of(g)))
        goto done;
    if (strcmp(j1, j2) != 0) {
        fprintf(stderr, "text: %s\nfirst: %s\nagain: %s\n", text, j1, j2);
        fail("text round trip changed the filter", NULL);
    }
    rc = kd_filter_from_json(j1, strlen(j1), &h, err, sizeof err);
    if (rc == KD_ENOMEM)
        goto done;
    if (rc != KD_OK) {
        fprintf(stderr, "json: %s\n", j1);
        fail("to_json output does not parse", err);
    }
    if (!(j3 = json_of(h)))
        goto done;
    if (strcmp(j1, j3) != 0)
        fail("JSON round trip changed the filter", j3);
    c = kd__filter_copy(f);
    for (size_t i = 0; i < N_DOCS; i++) {
        size_t len = strlen(docs[i]);
        int a = kd_filter_match(f, docs[i], len);
        if (a == KD_ENOMEM)
            continue;
        if (a != 0 && a != 1)
            fail("kd_filter_match gave neither 0 nor 1", docs[i]);
        if (kd_filter_match(g, docs[i], len) != a || kd_filter_match(h, docs[i], len) != a ||
            (c && kd_filter_match(c, docs[i], len) != a))
            fail("round-tripped filters disagree", docs[i]);
    }
    /* A missing document (tombstone) must not crash either. */
    (void)kd__filter_eval(f, KD__JV_MISSING);
done:
    kd_free(text);
    kd_free(j1);
    kd_free(j2);
    kd_free(j3);
    kd_filter_free(g);
    kd_filter_free(h);
    kd_filter_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    char err[512];
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t tlen = strlen(text);

    kd_filter *f = NULL;
    err[0] = '\0';
    int rc = kd_filter_parse(text, &f, err, sizeof err);
    if (rc == KD_OK) {
        check(f);
    } else if (rc == KD_EINVALID) {
        size_t col = 0;
        if (f != NULL)
            fail("output set on error", NULL);
        if (sscanf(err, "column %zu: ", &col) != 1 || col < 1 || col > tlen + 1)
            fail("error without a column in the text", err);
    } else if (rc != KD_ENOMEM) {
        fail("unexpected status from kd_filter_parse", err);
    }
    kd_filter_free(f);

    f = NULL;
    rc = kd_filter_from_json((const char *)data, size, &f, err, sizeof err);
    if (rc == KD_OK)
        check(f);
    else if (rc == KD_EINVALID && (f != NULL || strncmp(err, "filter", 6) != 0))
        fail("bad JSON form error", err);
    else if (rc != KD_EINVALID && rc != KD_OK && rc != KD_ENOMEM)
        fail("unexpected status from kd_filter_from_json", err);
    kd_filter_free(f);

    /* The raw input as a document and as a path, for kd_json_path. */
    const char *out;
    size_t out_len;
    (void)kd_json_path(text, tlen, "a.b.0", &out, &out_len);
    if (tlen > 0 && tlen < 200)
        (void)kd_json_path(docs[0], strlen(docs[0]), text, &out, &out_len);
    free(text);
    return 0;
}
