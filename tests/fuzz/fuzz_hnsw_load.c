/*
 * fuzz_hnsw_load.c — libFuzzer target for loading a saved HNSW index
 * (src/vector/hnsw.c kd__hnsw_load_mem: the vectors.idx file the vector
 * store reads at open).
 *
 * Every block of the file is checked with CRC-32C, so mutated files would
 * almost never get past the checksums. The first byte therefore chooses:
 *   0  the rest is a whole file, as it is (preamble, blocks, checks);
 *   1  the rest is the content (what the blocks carry, docs at the top of
 *      hnsw.c): it is framed here with a valid preamble, blocks of at most
 *      1 MiB with valid checks and the empty end block, so that the
 *      parsing of dimensions, counts, levels and links is what gets fuzzed.
 * A load that fails must say why; one that succeeds must give an index
 * that answers a search with at most k results and saves to bytes that
 * load again into an index saving the very same bytes. Nothing may crash,
 * leak or read out of bounds (ASan).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "korudelta.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "vector/vector_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
    fprintf(stderr, "fuzz_hnsw_load: %s\n", what);
    abort();
}

static void put_u32(kd__buf *b, uint32_t v)
{
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    if (kd__buf_append(b, le, 4))
        die("out of memory");
}

/* The file that carries `content` (hnsw.c "On disk", format version 1). */
static void frame(const uint8_t *content, size_t n, kd__buf *out)
{
    uint8_t pre[12] = {'K', 'D', 'H', 'N', 'S', 'W', '\r', '\n', 1, 0, 0, 0};
    if (kd__buf_append(out, pre, sizeof pre))
        die("out of memory");
    put_u32(out, kd__crc32c(pre, sizeof pre));
    uint32_t seq = 0;
    for (size_t off = 0;; seq++) {
        size_t len = n - off < ((size_t)1 << 20) ? n - off : (size_t)1 << 20;
        put_u32(out, (uint32_t)len);
        put_u32(out, kd__crc32c(content + off, len) ^ (seq * 0x9E3779B1u + 0x7F4A7C15u));
        if (len && kd__buf_append(out, content + off, len))
            die("out of memory");
        off += len;
        if (len == 0)
            break;
    }
}

static void check_loaded(kd__hnsw *h)
{
    uint32_t dim = kd__hnsw_dim(h);
    float *q = malloc(sizeof(float) * dim);
    if (!q)
        die("out of memory");
    for (uint32_t i = 0; i < dim; i++)
        q[i] = (float)(i % 7) - 2.5f;
    uint32_t labels[5];
    float scores[5];
    size_t got = 99;
    int rc = kd__hnsw_search(h, q, dim, 5, 16, NULL, NULL, labels, scores, &got);
    if (rc == KD_OK && got > 5)
        die("a search returned more than k results");
    free(q);

    kd__buf a = KD__BUF_INIT, b = KD__BUF_INIT;
    if (kd__hnsw_save_buf(h, &a) != KD_OK)
        die("a loaded index cannot be saved");
    kd__hnsw *again = NULL;
    char err[256] = "";
    if (kd__hnsw_load_mem(a.data, a.len, &again, err, sizeof err) != KD_OK)
        die("a saved index does not load again");
    if (kd__hnsw_save_buf(again, &b) != KD_OK || a.len != b.len || memcmp(a.data, b.data, a.len))
        die("saving, loading and saving again changed the bytes");
    kd__hnsw_free(again);
    kd__buf_free(&a);
    kd__buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    kd__buf file = KD__BUF_INIT;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        frame(p, n, &file);
        p = (const uint8_t *)file.data;
        n = file.len;
    }
    kd__hnsw *h = NULL;
    char err[256] = "";
    int rc = kd__hnsw_load_mem(p, n, &h, err, sizeof err);
    if (rc == KD_OK) {
        check_loaded(h);
        kd__hnsw_free(h);
    } else if (!err[0]) {
        die("a refused file without a message");
    }
    kd__buf_free(&file);
    return 0;
}
