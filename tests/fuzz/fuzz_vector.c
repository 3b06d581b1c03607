/*
 * fuzz_vector.c — libFuzzer target for the vector parsing paths
 * (src/vector/vstore_codec.c): the public JSON-array parser and writer
 * (kd_vector_parse, kd_vector_to_json), the stored record
 * {"dim","meta","model","vector"} (kd__vrec_parse, kd__vrec_vector,
 * kd__vrec_encode) and strict base64.
 *
 * The first byte chooses the path, the rest is the input:
 *   0  a JSON array of numbers: if accepted, 1..4096 finite floats that
 *      kd_vector_to_json writes and kd_vector_parse reads back bit for bit,
 *      and whose record round-trips through the record parser;
 *   1  a stored record (canonicalized first, as the database stores only
 *      canonical JSON): if accepted, its vector decodes to finite floats
 *      and, when the record has exactly the four members, re-encoding it
 *      gives the same bytes;
 *   2  base64: if accepted, encoding the bytes gives the input back (one
 *      encoding per byte string).
 * Every rejection must come with a message; nothing may crash, leak or
 * read outside the input (ASan). The replay driver runs the same function
 * over tests/fuzz/corpus/fuzz_vector/ as an ordinary ctest.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "korudelta.h"
#include "query/jv.h"
#include "util/buf.h"
#include "vector/vstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
    fprintf(stderr, "fuzz_vector: %s\n", what);
    abort();
}

static void check_floats_equal(const float *a, const float *b, size_t n, const char *what)
{
    if (memcmp(a, b, n * sizeof *a))
        die(what);
}

static void array_path(const char *in, size_t len)
{
    float *v = NULL;
    size_t dim = 0;
    char err[256] = "";
    int rc = kd_vector_parse(in, len, &v, &dim, err, sizeof err);
    if (rc == KD_EINVALID) {
        if (!err[0])
            die("rejected array without a message");
        if (v || dim)
            die("outputs set on error");
        return;
    }
    if (rc == KD_ENOMEM)
        return;
    if (rc != KD_OK)
        die("unexpected status from kd_vector_parse");
    if (dim < 1 || dim > KD_VECTOR_MAX_DIM)
        die("accepted a vector of a bad dimension");
    for (size_t i = 0; i < dim; i++)
        if (!isfinite(v[i]))
            die("accepted a non-finite component");
    char *text = NULL;
    size_t tl = 0;
    if (kd_vector_to_json(v, dim, &text, &tl) != KD_OK)
        die("kd_vector_to_json failed on finite floats");
    float *back = NULL;
    size_t bd = 0;
    if (kd_vector_parse(text, tl, &back, &bd, err, sizeof err) != KD_OK || bd != dim)
        die("kd_vector_to_json output not read back");
    check_floats_equal(v, back, dim, "JSON text does not round-trip the floats");

    /* As a stored record (zero vectors are refused by puts, not here). */
    kd__buf rec = KD__BUF_INIT, canon = KD__BUF_INIT;
    if (kd__vrec_encode(&rec, "m", 1, v, (uint32_t)dim, "null", 4) == KD_OK) {
        if (kd__json_canonicalize(rec.data, rec.len, &canon, err, sizeof err) != KD_OK || canon.len != rec.len ||
            memcmp(canon.data, rec.data, rec.len))
            die("an encoded record is not canonical JSON");
        kd__vrec r;
        if (kd__vrec_parse(rec.data, rec.len, &r, err, sizeof err) != KD_OK || r.dim != dim)
            die("an encoded record is not read back");
        float *dec = malloc(dim * sizeof *dec);
        if (dec) {
            if (kd__vrec_vector(&r, dec, err, sizeof err) != KD_OK)
                die("an encoded vector is not decoded");
            check_floats_equal(v, dec, dim, "record does not round-trip the floats");
            free(dec);
        }
    }
    kd__buf_free(&rec);
    kd__buf_free(&canon);
    kd_free(text);
    kd_free(back);
    kd_free(v);
}

static void record_path(const char *in, size_t len)
{
    kd__buf canon = KD__BUF_INIT, again = KD__BUF_INIT;
    char err[256];
    if (kd__json_canonicalize(in, len, &canon, err, sizeof err) != KD_OK)
        goto out;
    kd__vrec r;
    err[0] = '\0';
    int rc = kd__vrec_parse(canon.data, canon.len, &r, err, sizeof err);
    if (rc) {
        if (rc != KD_EINVALID && rc != KD_ENOMEM)
            die("unexpected status from kd__vrec_parse");
        if (rc == KD_EINVALID && !err[0])
            die("rejected record without a message");
        goto out;
    }
    if (r.dim < 1 || r.dim > KD_VECTOR_MAX_DIM || r.model_len < 1 || r.model_len > 255 ||
        strlen(r.model) != r.model_len || !r.meta || r.meta < canon.data ||
        r.meta + r.meta_len > canon.data + canon.len || r.b64 < canon.data ||
        r.b64 + r.b64_len > canon.data + canon.len)
        die("accepted record with fields out of range or outside the input");
    float *v = malloc((size_t)r.dim * sizeof *v);
    if (!v)
        goto out;
    err[0] = '\0';
    rc = kd__vrec_vector(&r, v, err, sizeof err);
    if (rc == KD_OK) {
        for (uint32_t i = 0; i < r.dim; i++)
            if (!isfinite(v[i]))
                die("decoded a non-finite component");
        if (kd__jv_count((kd__jv){canon.data, canon.len}) == 4 &&
            kd__vrec_encode(&again, r.model, r.model_len, v, r.dim, r.meta, r.meta_len) == KD_OK &&
            (again.len != canon.len || memcmp(again.data, canon.data, canon.len)))
            die("re-encoding a record gives other bytes");
    } else if (rc == KD_EINVALID && !err[0]) {
        die("rejected vector without a message");
    }
    free(v);
out:
    kd__buf_free(&canon);
    kd__buf_free(&again);
}

static void base64_path(const char *in, size_t len)
{
    uint8_t *out = malloc(len / 4 * 3 + 3);
    if (!out)
        return;
    size_t n;
    if (kd__base64_decode(in, len, out, &n) == 0) {
        if (n > len / 4 * 3)
            die("base64 decoded more bytes than possible");
        kd__buf b = KD__BUF_INIT;
        if (kd__base64_encode(&b, out, n) == KD_OK && (b.len != len || memcmp(b.data, in, len)))
            die("base64 has two encodings of one byte string");
        kd__buf_free(&b);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0:
        array_path(in, len);
        break;
    case 1:
        record_path(in, len);
        break;
    default:
        base64_path(in, len);
        break;
    }
    return 0;
}
