/*
 * test_hnsw.c — the HNSW index of src/vector/hnsw.c.
 *
 * Quality: recall@10 of the default settings against the index's own
 * brute-force search (itself checked against a double-precision reference
 * here) on 20,000 random and 20,000 clustered vectors, and on smaller sets
 * under the dot and l2 metrics. Correctness: removed nodes never come back;
 * an update returns the new vector; filtered searches return k results
 * whenever at least k nodes are accepted, equal to brute force at 1 %
 * selectivity and with recall >= 0.95 at 10 %, also when the filter keeps
 * only nodes far from the query; scores follow the documented convention.
 * Persistence: save/load gives identical results; truncated, bit-flipped,
 * extended and crafted files are refused with KD_ECORRUPT (or KD_EFORMAT
 * for a newer version), never a crash. Errors: bad dim, NaN/Inf, zero
 * cosine vectors, dimension mismatch, unknown metric, bad M.
 * Concurrency: searches from several threads at once give the results of
 * one thread.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "korudelta.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "vector/vector_int.h"

#define K 10

/* ------------------------------------------------------------------------
 * Data
 * ---------------------------------------------------------------------- */

typedef struct rnd {
    uint64_t s;
} rnd;

static double unif(rnd *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (double)((r->s >> 11) + 1) * 0x1.0p-53;
}

static float gauss(rnd *r)
{
    return (float)(sqrt(-2.0 * log(unif(r))) * cos(6.283185307179586 * unif(r)));
}

/* n vectors: independent N(0,1) components if clusters == 0, else one of
 * `clusters` N(0,1) centres plus N(0, spread^2) noise. */
static float *make_data(size_t n, uint32_t dim, uint32_t clusters, double spread, uint64_t seed)
{
    rnd r = {seed | 1};
    float *c = NULL, *x = malloc(n * dim * sizeof(float));
    if (!x)
        return NULL;
    if (clusters) {
        c = malloc((size_t)clusters * dim * sizeof(float));
        if (!c) {
            free(x);
            return NULL;
        }
        for (size_t i = 0; i < (size_t)clusters * dim; i++)
            c[i] = gauss(&r);
    }
    for (size_t i = 0; i < n; i++) {
        const float *ci = clusters ? c + (size_t)(unif(&r) * clusters) % clusters * dim : NULL;
        for (uint32_t j = 0; j < dim; j++)
            x[i * dim + j] = clusters ? ci[j] + (float)spread * gauss(&r) : gauss(&r);
    }
    free(c);
    return x;
}

static kd__hnsw *build(const float *x, size_t n, uint32_t dim, kd__vec_metric m, uint32_t M, uint32_t efc)
{
    kd__hnsw *h = NULL;
    if (kd__hnsw_new(dim, m, M, efc, 7, &h))
        return NULL;
    if (n > 10000 && kd__hnsw_reserve(h, (uint32_t)n)) {
        kd__hnsw_free(h);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (kd__hnsw_add(h, (uint32_t)i, x + i * dim, dim)) {
            kd__hnsw_free(h);
            return NULL;
        }
    return h;
}

static size_t overlap(const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
    size_t hits = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (a[i] == b[j]) {
                hits++;
                break;
            }
    return hits;
}

/* recall@K of the graph search against the brute force, over nq queries. */
static double recall(kd__hnsw *h, const float *q, size_t nq, uint32_t dim, size_t ef, kd__hnsw_accept_fn acc,
                     void *ctx, size_t *short_results)
{
    size_t hits = 0, total = 0;
    if (short_results)
        *short_results = 0;
    for (size_t i = 0; i < nq; i++) {
        uint32_t la[K], lb[K];
        float sa[K], sb[K];
        size_t na = 0, nb = 0;
        if (kd__hnsw_search(h, q + i * dim, dim, K, ef, acc, ctx, la, sa, &na) ||
            kd__hnsw_search_exact(h, q + i * dim, dim, K, 0, acc, ctx, lb, sb, &nb))
            return -1;
        if (na != nb && short_results)
            (*short_results)++;
        hits += overlap(la, na, lb, nb);
        total += nb;
    }
    return total ? (double)hits / (double)total : 1.0;
}

/* ------------------------------------------------------------------------
 * Errors and small cases
 * ---------------------------------------------------------------------- */

static void test_errors(void)
{
    kd__hnsw *h = NULL;
    CHECK_RC(kd__hnsw_new(0, KD__VEC_COSINE, 0, 0, 1, &h), KD_EINVALID);
    CHECK(h == NULL);
    CHECK_RC(kd__hnsw_new(4097, KD__VEC_COSINE, 0, 0, 1, &h), KD_EINVALID);
    CHECK_RC(kd__hnsw_new(4, (kd__vec_metric)3, 0, 0, 1, &h), KD_EINVALID);
    CHECK_RC(kd__hnsw_new(4, (kd__vec_metric)-1, 0, 0, 1, &h), KD_EINVALID);
    CHECK_RC(kd__hnsw_new(4, KD__VEC_L2, 1, 0, 1, &h), KD_EINVALID);
    CHECK_RC(kd__hnsw_new(4, KD__VEC_L2, KD__HNSW_MAX_M + 1, 0, 1, &h), KD_EINVALID);
    CHECK_RC(kd__hnsw_new(4, KD__VEC_L2, 0, 0, 1, NULL), KD_EINVALID);
    CHECK_RC(kd__hnsw_new(4096, KD__VEC_COSINE, 0, 0, 1, &h), KD_OK);
    CHECK_EQ_INT(kd__hnsw_M(h), KD__HNSW_DEFAULT_M);
    CHECK_EQ_INT(kd__hnsw_ef_construction(h), KD__HNSW_DEFAULT_EF_CONSTRUCTION);
    CHECK_RC(kd__hnsw_reserve(h, KD__HNSW_MAX_LABEL + 2u), KD_EINVALID);
    CHECK_RC(kd__hnsw_reserve(h, 100), KD_OK);
    kd__hnsw_free(h);
    kd__hnsw_free(NULL);

    CHECK_RC(kd__hnsw_new(4, KD__VEC_COSINE, 0, 0, 1, &h), KD_OK);
    float v[5] = {1, 2, 3, 4, 5}, zero[4] = {0, 0, 0, 0};
    uint32_t lab[K];
    float sc[K];
    size_t n = 99;
    CHECK_RC(kd__hnsw_add(h, 0, v, 3), KD_EINVALID); /* dimension mismatch */
    CHECK_RC(kd__hnsw_add(h, 0, v, 5), KD_EINVALID);
    CHECK_RC(kd__hnsw_add(h, 0, zero, 4), KD_EINVALID); /* cosine of a zero vector */
    CHECK_RC(kd__hnsw_add(h, KD__HNSW_MAX_LABEL + 1, v, 4), KD_EINVALID);
    CHECK_RC(kd__hnsw_add(h, 0, NULL, 4), KD_EINVALID);
    float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        float w[4] = {1, 2, 3, 4};
        w[i + 1] = bad[i];
        CHECK_RC(kd__hnsw_add(h, 0, w, 4), KD_EINVALID);
        CHECK_RC(kd__hnsw_search(h, w, 4, K, 0, NULL, NULL, lab, sc, &n), KD_EINVALID);
    }
    CHECK_EQ_INT(kd__hnsw_count(h), 0);
    /* Empty index: no results, no error. */
    CHECK_RC(kd__hnsw_search(h, v, 4, K, 0, NULL, NULL, lab, sc, &n), KD_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_RC(kd__hnsw_add(h, 0, v, 4), KD_OK);
    n = 99;
    CHECK_RC(kd__hnsw_search(h, v, 3, K, 0, NULL, NULL, lab, sc, &n), KD_EINVALID);
    CHECK_EQ_INT(n, 0);
    CHECK_RC(kd__hnsw_search(h, zero, 4, K, 0, NULL, NULL, lab, sc, &n), KD_EINVALID);
    CHECK_RC(kd__hnsw_search(h, v, 4, K, 0, NULL, NULL, NULL, sc, &n), KD_EINVALID);
    CHECK_RC(kd__hnsw_search(h, v, 4, K, 0, NULL, NULL, lab, sc, NULL), KD_EINVALID);
    CHECK_RC(kd__hnsw_search(h, v, 4, 0, 0, NULL, NULL, NULL, NULL, &n), KD_OK); /* k = 0 */
    CHECK_EQ_INT(n, 0);
    CHECK_RC(kd__hnsw_remove(h, 1), KD_ENOTFOUND);
    CHECK_RC(kd__hnsw_remove(h, 0), KD_OK);
    CHECK_RC(kd__hnsw_remove(h, 0), KD_ENOTFOUND);
    CHECK_RC(kd__hnsw_search(h, v, 4, K, 0, NULL, NULL, lab, sc, &n), KD_OK);
    CHECK_EQ_INT(n, 0);
    kd__hnsw_free(h);
}

/* A few nodes, labels with gaps, every metric's scores and order. */
/* A search with a very wide ef (any reader may ask up to
 * KD__HNSW_MAX_EF) uses its heaps once: the index's memory comes back to
 * what it was (it kept ~6 MB per index until the process ended). */
static void test_wide_search_memory(void)
{
    kd__hnsw *h = NULL;
    CHECK_RC(kd__hnsw_new(4, KD__VEC_COSINE, 8, 64, 1, &h), KD_OK);
    rnd r = {7};
    float x[4];
    for (uint32_t i = 0; i < 50; i++) {
        for (int j = 0; j < 4; j++)
            x[j] = gauss(&r);
        CHECK_RC(kd__hnsw_add(h, i, x, 4), KD_OK);
    }
    uint32_t lab[10];
    float sc[10];
    size_t n = 0;
    CHECK_RC(kd__hnsw_search(h, x, 4, 10, 0, NULL, NULL, lab, sc, &n), KD_OK);
    size_t normal = kd__hnsw_memory(h);
    CHECK_RC(kd__hnsw_search(h, x, 4, 10, KD__HNSW_MAX_EF, NULL, NULL, lab, sc, &n), KD_OK);
    CHECK_EQ_INT(n, 10);
    CHECK_EQ_INT(lab[0], 49);
    CHECK(kd__hnsw_memory(h) <= normal);
    kd__hnsw_free(h);

    /* An index built with a wide ef_construction keeps its insert scratch
     * (it was freed after every insert once ef_construction >= 1024). */
    CHECK_RC(kd__hnsw_new(4, KD__VEC_COSINE, 8, 2000, 1, &h), KD_OK);
    for (uint32_t i = 0; i < 20; i++) {
        for (int j = 0; j < 4; j++)
            x[j] = gauss(&r);
        CHECK_RC(kd__hnsw_add(h, i, x, 4), KD_OK);
    }
    size_t kept = kd__hnsw_scratch_bytes(h);
    CHECK(kept >= 2000 * 8);
    CHECK_RC(kd__hnsw_search(h, x, 4, 10, KD__HNSW_MAX_EF, NULL, NULL, lab, sc, &n), KD_OK);
    CHECK(kd__hnsw_scratch_bytes(h) <= kept); /* the wide heaps given back */
    CHECK_RC(kd__hnsw_add(h, 100, x, 4), KD_OK);
    CHECK(kd__hnsw_scratch_bytes(h) >= 2000 * 8); /* an insert's, kept again */
    kd__hnsw_free(h);
}

static void test_small_and_scores(void)
{
    static const kd__vec_metric metrics[] = {KD__VEC_COSINE, KD__VEC_DOT, KD__VEC_L2};
    rnd r = {99};
    for (int mi = 0; mi < 3; mi++) {
        kd__hnsw *h = NULL;
        CHECK_RC(kd__hnsw_new(6, metrics[mi], 4, 16, 3, &h), KD_OK);
        float x[300 * 6];
        for (int i = 0; i < 300 * 6; i++)
            x[i] = gauss(&r);
        for (uint32_t i = 0; i < 300; i++)
            CHECK_RC(kd__hnsw_add(h, i * 7 + 3, x + i * 6, 6), KD_OK); /* labels 3, 10, 17, ... */
        CHECK_EQ_INT(kd__hnsw_count(h), 300);
        CHECK_EQ_INT(kd__hnsw_live(h), 300);
        CHECK(kd__hnsw_contains(h, 10) && !kd__hnsw_contains(h, 11) && !kd__hnsw_contains(h, 5000));
        uint32_t lab[400];
        float sc[400];
        size_t n = 0;
        float q[6];
        for (int j = 0; j < 6; j++)
            q[j] = gauss(&r);
        /* k larger than the index: every node, best first, scores as
         * kd__vec_score computes them from the raw vectors. */
        CHECK_RC(kd__hnsw_search(h, q, 6, 400, 0, NULL, NULL, lab, sc, &n), KD_OK);
        CHECK_EQ_INT(n, 300);
        for (size_t i = 0; i < n; i++) {
            CHECK(lab[i] % 7 == 3);
            float want = kd__vec_score(metrics[mi], q, x + (lab[i] - 3) / 7 * 6, 6);
            CHECK(fabsf(sc[i] - want) <= 1e-5f * (1 + fabsf(want)));
            if (i) {
                if (metrics[mi] == KD__VEC_L2)
                    CHECK(sc[i] >= sc[i - 1]);
                else
                    CHECK(sc[i] <= sc[i - 1]);
            }
        }
        /* ef below k is raised to k */
        CHECK_RC(kd__hnsw_search(h, q, 6, 20, 1, NULL, NULL, lab, sc, &n), KD_OK);
        CHECK_EQ_INT(n, 20);
        kd__hnsw_free(h);
    }
}

/* The brute force agrees with a double-precision reference. */
/* Cosine scores: a stored vector scores exactly 1 against itself, through
 * the brute force (small index) and the graph (large), whatever its length
 * (here one so short that 1/length overflows float32, and one whose
 * squared length does); every score is in [-1, 1], best first. */
static void test_cosine_self(void)
{
    static const uint32_t sizes[] = {300, 3000};
    const uint32_t dim = 12;
    for (int si = 0; si < 2; si++) {
        uint32_t n = sizes[si];
        float *x = make_data(n, dim, 0, 0, 17 + si);
        rnd r = {5};
        for (uint32_t i = 0; i < n; i++) /* varied lengths */
            for (uint32_t d = 0; d < dim; d++)
                x[(size_t)i * dim + d] *= (float)(0.01 + 10 * unif(&r));
        for (uint32_t d = 0; d < dim; d++) {
            x[d] = d == 3 ? 1e-40f : 0.0f;
            x[dim + d] = d < 2 ? 1e20f : 1.0f;
        }
        kd__hnsw *h = NULL;
        CHECK_RC(kd__hnsw_new(dim, KD__VEC_COSINE, 8, 64, 1, &h), KD_OK);
        for (uint32_t i = 0; i < n; i++)
            CHECK_RC(kd__hnsw_add(h, i, x + (size_t)i * dim, dim), KD_OK);
        uint32_t lab[K];
        float sc[K];
        size_t got;
        for (uint32_t i = 0; i < 200; i++) {
            kd__hnsw_search_info info;
            CHECK_RC(kd__hnsw_search_ex(h, x + (size_t)i * dim, dim, K, 200, NULL, NULL, lab, sc, &got, &info),
                     KD_OK);
            CHECK_EQ_INT(info.method, si ? KD__HNSW_GRAPH : KD__HNSW_EXACT);
            CHECK_EQ_INT(got, K);
            CHECK_EQ_INT(lab[0], i);
            if (sc[0] != 1.0f)
                fprintf(stderr, "  label %u scores %.9g against itself\n", i, sc[0]);
            CHECK(sc[0] == 1.0f);
            for (size_t j = 0; j < got; j++) {
                CHECK(sc[j] >= -1.0f && sc[j] <= 1.0f);
                CHECK(j == 0 || sc[j] <= sc[j - 1]);
            }
        }
        kd__hnsw_free(h);
        free(x);
    }
}

static void test_exact_reference(void)
{
    const uint32_t dim = 24;
    const size_t n = 3000;
    float *x = make_data(n, dim, 0, 0, 5);
    CHECK(x);
    kd__hnsw *h = build(x, n, dim, KD__VEC_L2, 8, 32);
    CHECK(h);
    rnd r = {17};
    int bad = 0;
    for (int t = 0; t < 20 && !bad; t++) {
        float q[24];
        for (uint32_t j = 0; j < dim; j++)
            q[j] = gauss(&r);
        /* reference: the exact nearest label by double L2 */
        size_t best = 0;
        double bd = INFINITY;
        for (size_t i = 0; i < n; i++) {
            double d = 0;
            for (uint32_t j = 0; j < dim; j++)
                d += ((double)q[j] - x[i * dim + j]) * ((double)q[j] - x[i * dim + j]);
            if (d < bd) {
                bd = d;
                best = i;
            }
        }
        uint32_t lab[K];
        float sc[K];
        size_t got = 0;
        CHECK_RC(kd__hnsw_search_exact(h, q, dim, K, 0, NULL, NULL, lab, sc, &got), KD_OK);
        CHECK_EQ_INT(got, K);
        if (lab[0] != best || fabs(sc[0] - sqrt(bd)) > 1e-4 * sqrt(bd))
            bad = 1;
    }
    kd__hnsw_free(h);
    free(x);
    CHECK(!bad);
}

/* ------------------------------------------------------------------------
 * Recall with the default settings (issue 6: >= 0.95 on 20,000 vectors)
 * ---------------------------------------------------------------------- */

/* Shared by the tests below: 20,000 clustered vectors of dim 32, cosine,
 * default M and ef_construction; built once. */
#define BIG_N 20000
#define BIG_DIM 32
#define NQ 200
static float *big_x, *big_q;
static kd__hnsw *big;

static void test_recall_random(void)
{
    const uint32_t dim = 32;
    float *x = make_data(BIG_N, dim, 0, 0, 11), *q = make_data(NQ, dim, 0, 0, 12);
    CHECK(x && q);
    kd__hnsw *h = build(x, BIG_N, dim, KD__VEC_COSINE, 0, 0);
    CHECK(h);
    CHECK_EQ_INT(kd__hnsw_count(h), BIG_N);
    double rc = recall(h, q, NQ, dim, 0, NULL, NULL, NULL);
    fprintf(stderr, "    random 20000 x %u cosine: recall@10 %.4f at the default ef\n", dim, rc);
    /* Memory: the documented per-node cost, nothing hidden. */
    size_t per = dim * 4 + 4 * (2 * KD__HNSW_DEFAULT_M + 1) + 2 + 8;
    double mem = (double)kd__hnsw_memory(h) / BIG_N;
    fprintf(stderr, "    memory %.1f bytes per vector (formula without upper levels: %zu)\n", mem, per);
    kd__hnsw_free(h);
    free(x);
    free(q);
    CHECK(rc >= 0.95);
    CHECK(mem >= per && mem <= 1.1 * per); /* + upper links (~1/M of the nodes) and search scratch */
}

static void test_recall_clustered(void)
{
    /* One stream: the first BIG_N points are the data, the rest queries. */
    big_x = make_data(BIG_N + NQ, BIG_DIM, 50, 0.5, 21);
    CHECK(big_x);
    big_q = big_x + (size_t)BIG_N * BIG_DIM;
    big = build(big_x, BIG_N, BIG_DIM, KD__VEC_COSINE, 0, 0);
    CHECK(big);
    double rc = recall(big, big_q, NQ, BIG_DIM, 0, NULL, NULL, NULL);
    fprintf(stderr, "    clustered 20000 x %u cosine: recall@10 %.4f at the default ef\n", BIG_DIM, rc);
    CHECK(rc >= 0.95);
    /* the graph search really ran (not the brute force) */
    uint32_t lab[K];
    float sc[K];
    size_t n;
    kd__hnsw_search_info info;
    CHECK_RC(kd__hnsw_search_ex(big, big_q, BIG_DIM, K, 0, NULL, NULL, lab, sc, &n, &info), KD_OK);
    CHECK_EQ_INT(info.method, KD__HNSW_GRAPH);
    CHECK(info.distances < BIG_N / 4);
    /* its scores are the cosines of the raw vectors, best first */
    CHECK_EQ_INT(n, K);
    for (size_t i = 0; i < n; i++) {
        float want = kd__vec_score(KD__VEC_COSINE, big_q, big_x + (size_t)lab[i] * BIG_DIM, BIG_DIM);
        CHECK(fabsf(sc[i] - want) < 1e-5f);
        CHECK(i == 0 || sc[i] <= sc[i - 1]);
    }
}

static void test_recall_dot_l2(void)
{
    const uint32_t dim = 16;
    const size_t n = 4000;
    float *x = make_data(n, dim, 30, 0.4, 31), *q = make_data(n + 100, dim, 30, 0.4, 31);
    CHECK(x && q);
    for (int m = KD__VEC_DOT; m <= KD__VEC_L2; m++) {
        kd__hnsw *h = build(x, n, dim, (kd__vec_metric)m, 0, 0);
        CHECK(h);
        double rc = recall(h, q + n * dim, 100, dim, 0, NULL, NULL, NULL);
        fprintf(stderr, "    clustered %zu x %u %s: recall@10 %.4f\n", n, dim, kd__vec_metric_name(m), rc);
        kd__hnsw_free(h);
        CHECK(rc >= 0.95);
    }
    free(x);
    free(q);
}

/* ------------------------------------------------------------------------
 * Removes, updates, filters (on the shared clustered index)
 * ---------------------------------------------------------------------- */

typedef struct mod_filter {
    uint32_t mod, rem;
    size_t calls;
} mod_filter;

static int accept_mod(uint32_t label, void *ctx)
{
    mod_filter *m = ctx;
    m->calls++;
    return label % m->mod == m->rem;
}

static void test_filters(void)
{
    CHECK(big);
    /* 1 %: brute force is chosen, results equal it exactly. */
    mod_filter f1 = {100, 7, 0};
    size_t shorts = 0;
    double r1 = recall(big, big_q, NQ, BIG_DIM, 0, accept_mod, &f1, &shorts);
    CHECK_EQ_INT(shorts, 0);
    CHECK(r1 == 1.0);
    /* 10 %: the graph search, k results always, recall >= 0.95. */
    mod_filter f10 = {10, 3, 0};
    double r10 = recall(big, big_q, NQ, BIG_DIM, 0, accept_mod, &f10, &shorts);
    fprintf(stderr, "    filter 1%%: recall %.4f; 10%%: recall %.4f\n", r1, r10);
    CHECK_EQ_INT(shorts, 0);
    CHECK(r10 >= 0.95);

    uint32_t lab[K];
    float sc[K];
    size_t n;
    kd__hnsw_search_info info;
    CHECK_RC(kd__hnsw_search_ex(big, big_q, BIG_DIM, K, 0, accept_mod, &f10, lab, sc, &n, &info), KD_OK);
    CHECK_EQ_INT(n, K);
    CHECK(info.accept_estimate > 0.03 && info.accept_estimate < 0.25); /* a sample of 256 */
    for (size_t i = 0; i < n; i++)
        CHECK(lab[i] % 10 == 3);
    /* 10 % at a small ef, and 50 %, where the graph walk is the cheaper */
    r10 = recall(big, big_q, NQ, BIG_DIM, 10, accept_mod, &f10, &shorts);
    CHECK_EQ_INT(shorts, 0);
    CHECK(r10 >= 0.95);
    mod_filter f50 = {2, 1, 0};
    CHECK_RC(kd__hnsw_search_ex(big, big_q, BIG_DIM, K, 10, accept_mod, &f50, lab, sc, &n, &info), KD_OK);
    CHECK_EQ_INT(n, K);
    CHECK_EQ_INT(info.method, KD__HNSW_GRAPH);
    double r50 = recall(big, big_q, NQ, BIG_DIM, 10, accept_mod, &f50, &shorts);
    fprintf(stderr, "    ef 10: filter 10%%: recall %.4f; 50%%: recall %.4f\n", r10, r50);
    CHECK_EQ_INT(shorts, 0);
    CHECK(r50 >= 0.95);
    CHECK_RC(kd__hnsw_search_ex(big, big_q, BIG_DIM, K, 0, accept_mod, &f1, lab, sc, &n, &info), KD_OK);
    CHECK_EQ_INT(info.method, KD__HNSW_EXACT);
    CHECK(info.accept_estimate < 0.04);
    for (size_t i = 0; i < n; i++)
        CHECK(lab[i] % 100 == 7);

    /* Fewer accepted than k: all of them. None: nothing. */
    mod_filter few = {BIG_N / 4, 1, 0}; /* labels 1, 5001, 10001, 15001 */
    CHECK_RC(kd__hnsw_search(big, big_q, BIG_DIM, K, 0, accept_mod, &few, lab, sc, &n), KD_OK);
    CHECK_EQ_INT(n, 4);
    mod_filter none = {BIG_N + 1, BIG_N, 0};
    CHECK_RC(kd__hnsw_search(big, big_q, BIG_DIM, K, 0, accept_mod, &none, lab, sc, &n), KD_OK);
    CHECK_EQ_INT(n, 0);
}

/* A filter that keeps 30 % of the nodes, the ones farthest from the
 * query: the graph walk looks cheaper than brute force (by the accepted
 * share) but must cross the graph to find them; its budget sends it to
 * brute force, and the results are still exact. */
typedef struct far_ctx {
    const float *q; /* the query */
    const float *x;
    uint32_t dim;
    float cut; /* accept when dot(x, q) < cut */
} far_ctx;

static int accept_far(uint32_t label, void *ctx)
{
    far_ctx *f = ctx;
    return kd__vec_dot(f->x + (size_t)label * f->dim, f->q, f->dim) < f->cut;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_filter_far(void)
{
    CHECK(big);
    int bad = 0, fallbacks = 0;
    float *d = malloc(BIG_N * sizeof(float));
    CHECK(d);
    for (int t = 0; t < 10 && !bad; t++) {
        const float *q = big_q + (size_t)t * BIG_DIM;
        far_ctx f = {q, big_x, BIG_DIM, 0};
        for (size_t i = 0; i < BIG_N; i++)
            d[i] = kd__vec_dot(big_x + i * BIG_DIM, q, BIG_DIM);
        qsort(d, BIG_N, sizeof(float), cmp_float);
        f.cut = d[BIG_N * 30 / 100]; /* the 30 % least similar */
        uint32_t la[K], lb[K];
        float sa[K], sb[K];
        size_t na, nb;
        kd__hnsw_search_info info;
        if (kd__hnsw_search_ex(big, q, BIG_DIM, K, 10, accept_far, &f, la, sa, &na, &info) ||
            kd__hnsw_search_exact(big, q, BIG_DIM, K, 0, accept_far, &f, lb, sb, &nb))
            bad = 1;
        else if (na != K || nb != K || overlap(la, na, lb, nb) < K - 1)
            bad = 1;
        fallbacks += info.method == KD__HNSW_FALLBACK;
    }
    free(d);
    CHECK(!bad);
    fprintf(stderr, "    far filter: %d of 10 searches fell back to brute force\n", fallbacks);
    CHECK(fallbacks > 0);
}

static void test_remove_update(void)
{
    CHECK(big);
    /* Remove every third node. */
    for (uint32_t i = 0; i < BIG_N; i += 3)
        CHECK_RC(kd__hnsw_remove(big, i), KD_OK);
    size_t removed = (BIG_N + 2) / 3;
    CHECK_EQ_INT(kd__hnsw_live(big), BIG_N - removed);
    CHECK_EQ_INT(kd__hnsw_count(big), BIG_N);
    CHECK(kd__hnsw_vector(big, 0) == NULL && kd__hnsw_vector(big, 1) != NULL);
    int bad = 0;
    for (size_t t = 0; t < NQ && !bad; t++) {
        uint32_t lab[K];
        float sc[K];
        size_t n;
        CHECK_RC(kd__hnsw_search(big, big_q + t * BIG_DIM, BIG_DIM, K, 0, NULL, NULL, lab, sc, &n), KD_OK);
        if (n != K)
            bad = 1;
        for (size_t i = 0; i < n; i++)
            if (lab[i] % 3 == 0)
                bad = 1;
        /* a removed node itself as the query: never returned */
        CHECK_RC(kd__hnsw_search(big, big_x + t * 3 * BIG_DIM, BIG_DIM, K, 0, NULL, NULL, lab, sc, &n), KD_OK);
        for (size_t i = 0; i < n; i++)
            if (lab[i] == t * 3)
                bad = 1;
    }
    CHECK(!bad);
    double rc = recall(big, big_q, NQ, BIG_DIM, 0, NULL, NULL, NULL);
    fprintf(stderr, "    after removing a third: recall %.4f\n", rc);
    CHECK(rc >= 0.95);

    /* Update: a removed label comes back with a new vector (remove + add),
     * a live label is overwritten in place; both are found by their new
     * vectors at score ~1, not by their old ones. */
    float nv[BIG_DIM];
    for (int t = 0; t < 20; t++) {
        uint32_t gone = (uint32_t)t * 300, live = (uint32_t)t * 300 + 1;
        const float *q = big_q + (size_t)t * BIG_DIM;
        for (int j = 0; j < BIG_DIM; j++)
            nv[j] = q[j] * 2.0f + 0.01f * (float)j;
        CHECK_RC(kd__hnsw_add(big, gone, nv, BIG_DIM), KD_OK);
        for (int j = 0; j < BIG_DIM; j++)
            nv[j] = -q[j];
        CHECK_RC(kd__hnsw_add(big, live, nv, BIG_DIM), KD_OK);
        CHECK(kd__hnsw_contains(big, gone) && kd__hnsw_contains(big, live));
    }
    CHECK_EQ_INT(kd__hnsw_live(big), BIG_N - removed + 20);
    CHECK_EQ_INT(kd__hnsw_count(big), BIG_N);
    for (int t = 0; t < 20; t++) {
        uint32_t lab[K];
        float sc[K];
        size_t n;
        const float *q = big_q + (size_t)t * BIG_DIM;
        CHECK_RC(kd__hnsw_search(big, q, BIG_DIM, K, 0, NULL, NULL, lab, sc, &n), KD_OK);
        CHECK_EQ_INT(n, K);
        CHECK_EQ_INT(lab[0], t * 300);
        CHECK(sc[0] > 0.99f);
        for (size_t i = 0; i < n; i++)
            CHECK(lab[i] != (uint32_t)t * 300 + 1);
        /* the overwritten one is the best match of -q */
        for (int j = 0; j < BIG_DIM; j++)
            nv[j] = -q[j];
        CHECK_RC(kd__hnsw_search(big, nv, BIG_DIM, 1, 0, NULL, NULL, lab, sc, &n), KD_OK);
        CHECK_EQ_INT(n, 1);
        CHECK_EQ_INT(lab[0], t * 300 + 1);
        CHECK(fabsf(sc[0] - 1.0f) < 1e-5f);
    }
    rc = recall(big, big_q + 20 * BIG_DIM, NQ - 20, BIG_DIM, 0, NULL, NULL, NULL);
    CHECK(rc >= 0.95);

    /* Remove nearly everything: k results while k exist, then fewer. */
    size_t left = 0;
    for (uint32_t i = 0; i < BIG_N; i++)
        if (kd__hnsw_contains(big, i)) {
            if (i % 1000 != 1)
                CHECK_RC(kd__hnsw_remove(big, i), KD_OK);
            else
                left++;
        }
    CHECK(left >= K);
    CHECK_EQ_INT(kd__hnsw_live(big), left);
    uint32_t lab[K];
    float sc[K];
    size_t n;
    CHECK_RC(kd__hnsw_search(big, big_q, BIG_DIM, K, 0, NULL, NULL, lab, sc, &n), KD_OK);
    CHECK_EQ_INT(n, K);
    for (size_t i = 0; i < n; i++)
        CHECK(lab[i] % 1000 == 1);
    kd__hnsw_free(big);
    big = NULL;
    free(big_x);
    big_x = big_q = NULL;
}

/* ------------------------------------------------------------------------
 * Persistence
 * ---------------------------------------------------------------------- */

/* Same results for the same queries: labels and scores, bit for bit. */
static int same_results(kd__hnsw *a, kd__hnsw *b, const float *q, size_t nq, uint32_t dim)
{
    for (size_t i = 0; i < nq; i++) {
        uint32_t la[K], lb[K];
        float sa[K], sb[K];
        size_t na, nb;
        if (kd__hnsw_search(a, q + i * dim, dim, K, 32, NULL, NULL, la, sa, &na) ||
            kd__hnsw_search(b, q + i * dim, dim, K, 32, NULL, NULL, lb, sb, &nb))
            return 0;
        if (na != nb || memcmp(la, lb, na * sizeof *la) || memcmp(sa, sb, na * sizeof *sa))
            return 0;
    }
    return 1;
}

static void test_save_load(void)
{
    const uint32_t dim = 20;
    const size_t n = 5000;
    float *x = make_data(n + 50, dim, 20, 0.5, 41);
    CHECK(x);
    kd__hnsw *h = build(x, n, dim, KD__VEC_L2, 12, 64);
    CHECK(h);
    for (uint32_t i = 0; i < n; i += 10)
        CHECK_RC(kd__hnsw_remove(h, i), KD_OK);
    kd__buf b = KD__BUF_INIT;
    CHECK_RC(kd__hnsw_save_buf(h, &b), KD_OK);
    kd__hnsw *g = NULL;
    char err[200];
    CHECK_RC(kd__hnsw_load_mem(b.data, b.len, &g, err, sizeof err), KD_OK);
    CHECK_EQ_INT(kd__hnsw_count(g), n);
    CHECK_EQ_INT(kd__hnsw_live(g), n - n / 10);
    CHECK_EQ_INT(kd__hnsw_dim(g), dim);
    CHECK_EQ_INT(kd__hnsw_metric(g), KD__VEC_L2);
    CHECK_EQ_INT(kd__hnsw_M(g), 12);
    CHECK_EQ_INT(kd__hnsw_ef_construction(g), 64);
    CHECK(same_results(h, g, x + n * dim, 50, dim));
    CHECK(same_results(h, g, x, 50, dim));

    /* Saving the loaded index gives the same bytes; both go on alike. */
    kd__buf b2 = KD__BUF_INIT;
    CHECK_RC(kd__hnsw_save_buf(g, &b2), KD_OK);
    CHECK(b2.len == b.len && memcmp(b.data, b2.data, b.len) == 0);
    for (uint32_t i = 0; i < 50; i++) {
        CHECK_RC(kd__hnsw_add(h, (uint32_t)n + i, x + (n + i) * dim, dim), KD_OK);
        CHECK_RC(kd__hnsw_add(g, (uint32_t)n + i, x + (n + i) * dim, dim), KD_OK);
    }
    kd__buf_reset(&b);
    kd__buf_reset(&b2);
    CHECK_RC(kd__hnsw_save_buf(h, &b), KD_OK);
    CHECK_RC(kd__hnsw_save_buf(g, &b2), KD_OK);
    CHECK(b2.len == b.len && memcmp(b.data, b2.data, b.len) == 0);

    /* Through a FILE. */
    FILE *f = tmpfile();
    CHECK(f);
    CHECK_RC(kd__hnsw_save(h, f), KD_OK);
    rewind(f);
    kd__hnsw *fh = NULL;
    CHECK_RC(kd__hnsw_load(f, &fh, err, sizeof err), KD_OK);
    fclose(f);
    CHECK(same_results(h, fh, x, 50, dim));
    kd__hnsw_free(fh);

    /* An empty index round-trips too. */
    kd__hnsw *e = NULL, *e2 = NULL;
    CHECK_RC(kd__hnsw_new(3, KD__VEC_DOT, 0, 0, 1, &e), KD_OK);
    kd__buf_reset(&b);
    CHECK_RC(kd__hnsw_save_buf(e, &b), KD_OK);
    CHECK_RC(kd__hnsw_load_mem(b.data, b.len, &e2, err, sizeof err), KD_OK);
    CHECK_EQ_INT(kd__hnsw_count(e2), 0);
    CHECK_EQ_INT(kd__hnsw_metric(e2), KD__VEC_DOT);
    kd__hnsw_free(e);
    kd__hnsw_free(e2);

    kd__hnsw_free(h);
    kd__hnsw_free(g);
    kd__buf_free(&b);
    kd__buf_free(&b2);
    free(x);
}

/* Copy h label by label (track_next from a cursor), `piece` labels at a
 * time, running `between` (may be NULL) after each piece; returns the
 * labels copied. */
static size_t copy_pass(kd__hnsw *h, kd__hnsw *c, size_t piece, void (*between)(kd__hnsw *, void *), void *arg)
{
    size_t copied = 0;
    uint32_t next = 0;
    for (;;) {
        size_t i = 0;
        for (; i < piece; i++) {
            uint32_t l = kd__hnsw_track_next(h, next);
            if (l == UINT32_MAX)
                break;
            if (kd__hnsw_copy_label(h, c, l) != KD_OK)
                return SIZE_MAX;
            next = l + 1;
            copied++;
        }
        if (i < piece)
            return copied;
        if (between)
            between(h, arg);
    }
}

typedef struct churn {
    const float *x;
    uint32_t dim, n, next_new;
    rnd r;
} churn;

/* Between two pieces: a new label, an update of an old one (relinks it
 * and its new neighbours), a remove, and a mark of a label past the
 * index's end (the owner's own slot data). */
static void churn_step(kd__hnsw *h, void *arg)
{
    churn *c = arg;
    uint32_t upd = (uint32_t)(unif(&c->r) * c->n), rem = (uint32_t)(unif(&c->r) * c->n);
    if (c->next_new < c->n + 400) {
        kd__hnsw_add(h, c->next_new, c->x + (size_t)c->next_new * c->dim, c->dim);
        c->next_new++;
    }
    kd__hnsw_add(h, upd, c->x + (size_t)(c->n + 400 + upd % 100) * c->dim, c->dim);
    kd__hnsw_remove(h, rem); /* KD_ENOTFOUND if removed already: fine */
    kd__hnsw_mark(h, c->n + 1000);
}

/* A copy made in pieces while the index changes between them equals the
 * index once the changed labels are copied again: the same saved bytes,
 * the same answers. Fails if any change to a label is not marked. */
static void test_copy_in_pieces(void)
{
    const uint32_t dim = 12, n = 3000;
    float *x = make_data(n + 500, dim, 10, 0.5, 77);
    CHECK(x);
    kd__hnsw *h = build(x, n, dim, KD__VEC_COSINE, 8, 40);
    CHECK(h);
    for (uint32_t i = 0; i < n; i += 7)
        CHECK_RC(kd__hnsw_remove(h, i), KD_OK);
    kd__hnsw *c = NULL;
    CHECK_RC(kd__hnsw_empty_like(h, &c), KD_OK);
    CHECK_RC(kd__hnsw_track_begin(h, n + 10), KD_OK);
    churn ch = {x, dim, n, n, {99}};
    size_t first = copy_pass(h, c, 50, churn_step, &ch);
    CHECK_EQ_INT(first >= n + 10, 1);
    /* copy_finish refuses while labels are marked */
    CHECK(kd__hnsw_track_next(h, 0) != UINT32_MAX);
    CHECK_RC(kd__hnsw_copy_finish(h, c), KD_EINVALID);
    size_t again = copy_pass(h, c, 50, churn_step, &ch); /* the labels changed during the first pass */
    CHECK(again > 0 && again < first);
    CHECK(copy_pass(h, c, SIZE_MAX, NULL, NULL) > 0); /* and during the second, with nothing changing */
    CHECK_EQ_INT(kd__hnsw_track_next(h, 0), UINT32_MAX);
    CHECK_RC(kd__hnsw_copy_finish(h, c), KD_OK);
    kd__hnsw_track_end(h);

    kd__buf bh = KD__BUF_INIT, bc = KD__BUF_INIT;
    CHECK_RC(kd__hnsw_save_buf(h, &bh), KD_OK);
    CHECK_RC(kd__hnsw_save_buf(c, &bc), KD_OK);
    CHECK(bh.len == bc.len && memcmp(bh.data, bc.data, bh.len) == 0);
    CHECK(same_results(h, c, x, 50, dim));
    CHECK_EQ_INT(kd__hnsw_memory(c) > 0, 1);

    /* Not tracking: nothing is marked, marks are ignored. */
    CHECK_EQ_INT(kd__hnsw_track_next(h, 0), UINT32_MAX);
    kd__hnsw_mark(h, 5);
    CHECK_EQ_INT(kd__hnsw_track_next(h, 0), UINT32_MAX);
    kd__buf_free(&bh);
    kd__buf_free(&bc);
    kd__hnsw_free(c);
    kd__hnsw_free(h);
    free(x);
}

/* Load must refuse; *err must name the problem. */
static int refused(const void *p, size_t n, int want)
{
    kd__hnsw *h = (kd__hnsw *)1;
    char err[200] = "";
    int rc = kd__hnsw_load_mem(p, n, &h, err, sizeof err);
    if (rc != want || h != NULL || strncmp(err, "vector index: ", 14) != 0) {
        fprintf(stderr, "    load of %zu bytes: %s (wanted %s), message \"%s\"\n", n, kd_errname(rc),
                kd_errname(want), err);
        return 0;
    }
    return 1;
}

static void test_corrupt(void)
{
    /* Big enough for several 1 MiB blocks. */
    const uint32_t dim = 64;
    const size_t n = 8000;
    float *x = make_data(n, dim, 0, 0, 51);
    CHECK(x);
    kd__hnsw *h = build(x, n, dim, KD__VEC_COSINE, 8, 16);
    CHECK(h);
    kd__buf b = KD__BUF_INIT;
    CHECK_RC(kd__hnsw_save_buf(h, &b), KD_OK);
    kd__hnsw_free(h);
    free(x);
    CHECK(b.len > 2 * (1u << 20) + 100);
    uint8_t *p = (uint8_t *)b.data;
    size_t len = b.len;

    /* Truncations: everywhere near the start, at and around every block
     * boundary, the last 40 bytes, and a spread of other lengths. */
    size_t block1 = 16 + 8 + (1u << 20), block2 = block1 + 8 + (1u << 20);
    size_t cuts[] = {0, 1, 8, 15, 16, 17, 20, 23, 24, 25, 100, block1 - 1, block1, block1 + 1, block1 + 7,
                     block1 + 8, block2 - 1, block2, block2 + 9};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        CHECK(refused(p, cuts[i], KD_ECORRUPT));
    for (size_t i = 1; i <= 40; i++)
        CHECK(refused(p, len - i, KD_ECORRUPT));
    for (size_t c = 31; c < len; c += len / 61)
        CHECK(refused(p, c, KD_ECORRUPT));

    /* One flipped bit anywhere: every block has a CRC-32C, which catches
     * all single-bit errors. */
    rnd r = {61};
    for (int i = 0; i < 100; i++) {
        size_t at = i < 64 ? (size_t)i : (size_t)(unif(&r) * len) % len;
        uint8_t bit = (uint8_t)(1u << (i % 8));
        p[at] ^= bit;
        int ok = refused(p, len, KD_ECORRUPT);
        p[at] ^= bit;
        if (!ok)
            fprintf(stderr, "    flipped bit %d of byte %zu\n", i % 8, at);
        CHECK(ok);
    }
    /* A byte more, a block more. */
    uint8_t *q = malloc(len + 8);
    CHECK(q);
    memcpy(q, p, len);
    q[len] = 0;
    CHECK(refused(q, len + 1, KD_ECORRUPT));
    memcpy(q + len, p + len - 8, 8); /* a second end block */
    CHECK(refused(q, len + 8, KD_ECORRUPT));
    free(q);
    /* Intact, it still loads. */
    kd__hnsw *g = NULL;
    CHECK_RC(kd__hnsw_load_mem(p, len, &g, NULL, 0), KD_OK);
    kd__hnsw_free(g);
    kd__buf_free(&b);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Files with valid checksums but impossible content (as a buggy or hostile
 * writer could make): the content checks refuse them. The file is one
 * block: preamble (16), block header (8), content. */
static int crafted(const uint8_t *orig, size_t len, size_t at, uint32_t value, int width, int want)
{
    uint8_t *p = malloc(len);
    if (!p)
        return 0;
    memcpy(p, orig, len);
    size_t c = 24 + at;
    if (width == 4)
        put32(p + c, value);
    else
        p[c] = (uint8_t)value;
    uint32_t blen = get32(p + 16);
    put32(p + 20, kd__crc32c(p + 24, blen) ^ (0u * 0x9E3779B1u + 0x7F4A7C15u));
    int ok = refused(p, len, want);
    free(p);
    return ok;
}

static void test_crafted(void)
{
    const uint32_t dim = 4;
    float x[40 * 4];
    rnd r = {71};
    for (int i = 0; i < 160; i++)
        x[i] = gauss(&r);
    kd__hnsw *h = build(x, 40, dim, KD__VEC_L2, 4, 8);
    CHECK(h);
    kd__buf b = KD__BUF_INIT;
    CHECK_RC(kd__hnsw_save_buf(h, &b), KD_OK);
    kd__hnsw_free(h);
    const uint8_t *p = (const uint8_t *)b.data;
    CHECK(get32(p + 16) + 24 + 8 == b.len); /* one block, then the end block */
    /* Content offsets: header fields, then slot 0 at 44. */
    CHECK(crafted(p, b.len, 0, 0, 4, KD_ECORRUPT));            /* dim 0 */
    CHECK(crafted(p, b.len, 0, 5000, 4, KD_ECORRUPT));         /* dim > 4096 */
    CHECK(crafted(p, b.len, 4, 9, 4, KD_ECORRUPT));            /* metric */
    CHECK(crafted(p, b.len, 8, 1, 4, KD_ECORRUPT));            /* M */
    CHECK(crafted(p, b.len, 24, 41, 4, KD_ECORRUPT));          /* slots: more than present */
    CHECK(crafted(p, b.len, 28, 39, 4, KD_ECORRUPT));          /* nodes present */
    CHECK(crafted(p, b.len, 32, 41, 4, KD_ECORRUPT));          /* live > present */
    CHECK(crafted(p, b.len, 36, 40, 4, KD_ECORRUPT));          /* entry point */
    CHECK(crafted(p, b.len, 40, 17, 4, KD_ECORRUPT));          /* top level */
    CHECK(crafted(p, b.len, 44, 5, 1, KD_ECORRUPT));           /* flags of slot 0 */
    CHECK(crafted(p, b.len, 45, 200, 1, KD_ECORRUPT));         /* level of slot 0 */
    CHECK(crafted(p, b.len, 46, 0x7fc00000u, 4, KD_ECORRUPT)); /* NaN in slot 0 */
    size_t links = 46 + 4 * dim;                               /* slot 0, layer 0: count, ids */
    uint32_t cnt = get32(p + 24 + links);
    CHECK(cnt >= 1 && cnt <= 8);
    CHECK(crafted(p, b.len, links, 9, 4, KD_ECORRUPT));     /* more links than 2M */
    CHECK(crafted(p, b.len, links + 4, 40, 4, KD_ECORRUPT)); /* link past the last slot */
    CHECK(crafted(p, b.len, links + 4, 0, 4, KD_ECORRUPT));  /* link to itself */
    /* Preamble: bad magic; a newer version (with its checksum right). */
    uint8_t *q = malloc(b.len);
    CHECK(q);
    memcpy(q, p, b.len);
    q[0] = 'X';
    CHECK(refused(q, b.len, KD_ECORRUPT));
    memcpy(q, p, b.len);
    put32(q + 8, 2);
    put32(q + 12, kd__crc32c(q, 12));
    CHECK(refused(q, b.len, KD_EFORMAT));
    free(q);
    kd__buf_free(&b);
}

/* ------------------------------------------------------------------------
 * Determinism and concurrency
 * ---------------------------------------------------------------------- */

static void test_deterministic(void)
{
    const uint32_t dim = 8;
    float *x = make_data(3000, dim, 0, 0, 81);
    CHECK(x);
    kd__hnsw *a = build(x, 3000, dim, KD__VEC_COSINE, 6, 20), *c = build(x, 3000, dim, KD__VEC_COSINE, 6, 20);
    CHECK(a && c);
    kd__buf ba = KD__BUF_INIT, bc = KD__BUF_INIT;
    CHECK_RC(kd__hnsw_save_buf(a, &ba), KD_OK);
    CHECK_RC(kd__hnsw_save_buf(c, &bc), KD_OK);
    CHECK(ba.len == bc.len && memcmp(ba.data, bc.data, ba.len) == 0);
    kd__hnsw_free(a);
    kd__hnsw_free(c);
    kd__buf_free(&ba);
    kd__buf_free(&bc);
    free(x);
}

typedef struct worker {
    kd__hnsw *h;
    const float *q;
    size_t nq;
    uint32_t dim;
    uint32_t *labels; /* nq * K */
    int rc;
} worker;

static void *search_all(void *arg)
{
    worker *w = arg;
    mod_filter f = {3, 1, 0};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < w->nq; i++) {
            float sc[K];
            size_t n;
            int rc = kd__hnsw_search(w->h, w->q + i * w->dim, w->dim, K, 0, i % 2 ? accept_mod : NULL, &f,
                                     w->labels + i * K, sc, &n);
            if (rc || n != K)
                w->rc = rc ? rc : -100;
        }
    return NULL;
}

static void test_concurrent_search(void)
{
    const uint32_t dim = 16;
    float *x = make_data(6000, dim, 10, 0.5, 91), *q = make_data(100, dim, 10, 0.5, 92);
    CHECK(x && q);
    kd__hnsw *h = build(x, 6000, dim, KD__VEC_COSINE, 8, 40);
    CHECK(h);
    enum { T = 4 };
    worker w[T + 1];
    pthread_t th[T];
    for (int i = 0; i <= T; i++) {
        w[i] = (worker){h, q, 100, dim, calloc(100 * K, sizeof(uint32_t)), 0};
        CHECK(w[i].labels);
    }
    search_all(&w[T]); /* the reference, alone */
    for (int i = 0; i < T; i++)
        CHECK(pthread_create(&th[i], NULL, search_all, &w[i]) == 0);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    int same = 1;
    for (int i = 0; i <= T; i++) {
        CHECK_RC(w[i].rc, 0);
        same &= memcmp(w[i].labels, w[T].labels, 100 * K * sizeof(uint32_t)) == 0;
    }
    for (int i = 0; i <= T; i++)
        free(w[i].labels);
    kd__hnsw_free(h);
    free(x);
    free(q);
    CHECK(same);
}

int main(void)
{
    RUN(test_errors);
    RUN(test_small_and_scores);
    RUN(test_wide_search_memory);
    RUN(test_cosine_self);
    RUN(test_exact_reference);
    RUN(test_recall_random);
    RUN(test_recall_clustered);
    RUN(test_recall_dot_l2);
    RUN(test_filters);
    RUN(test_filter_far);
    RUN(test_remove_update);
    RUN(test_save_load);
    RUN(test_copy_in_pieces);
    RUN(test_corrupt);
    RUN(test_crafted);
    RUN(test_deterministic);
    RUN(test_concurrent_search);
    kd__hnsw_free(big);
    free(big_x);
    return HARNESS_DONE();
}
