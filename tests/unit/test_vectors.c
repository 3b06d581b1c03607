/*
 * test_vectors.c — versioned vectors and vector search (kd_vector_*):
 * round trips and version_ids, every named error, recall against exact
 * search, deleted and superseded vectors, exact filtering, search of the
 * past against brute force on generated histories, persistence of the
 * indexes across reopen, the vectors root, subscriptions, stats, and
 * searches beside a writer (threads; also run under TSan).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_int.h"
#include "harness.h"
#include "vector/vstore.h"
#include "korudelta.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static kd_db *open_opts(const char *dir, kd_sync sync)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, sync, 10);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "open %s: %s\n", dir, err);
    kd_options_free(o);
    return db;
}

static kd_db *open_db(const char *dir)
{
    return open_opts(dir, KD_SYNC_NONE);
}

static kd_db *open_fresh(const char *tag, char *dir)
{
    snprintf(dir, 256, "/tmp/kd_test_vectors_%s_XXXXXX", tag);
    if (!mkdtemp(dir))
        abort();
    return open_db(dir);
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
}

static uint64_t rng_state = 88172645463325252ull;

static void rng_seed(uint64_t s)
{
    rng_state = s ? s : 1;
}

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double unif(void)
{
    return (double)(rng() >> 11) / 9007199254740992.0;
}

static float gauss(void)
{
    double u = unif(), v = unif();
    if (u < 1e-300)
        u = 1e-300;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static void rand_vec(float *v, size_t dim)
{
    for (size_t i = 0; i < dim; i++)
        v[i] = gauss();
}

/* Score in double, the convention of kd_vector_metric. */
static double score(kd_vector_metric m, const float *a, const float *b, size_t dim)
{
    double d = 0, na = 0, nb = 0, l2 = 0;
    for (size_t i = 0; i < dim; i++) {
        d += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
        l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    }
    if (m == KD_VECTOR_DOT)
        return d;
    if (m == KD_VECTOR_L2)
        return sqrt(l2);
    return d / (sqrt(na) * sqrt(nb));
}

static int better(kd_vector_metric m, double a, double b)
{
    return m == KD_VECTOR_L2 ? a < b : a > b;
}

/* A model of the live vectors: dense arrays by key number. */
typedef struct model {
    size_t n, dim;
    float *v;     /* n * dim */
    int *live;    /* 1 if key i has a vector */
    int *cat;     /* meta {"cat": cat[i]} */
} model;

static void model_init(model *m, size_t n, size_t dim)
{
    m->n = n;
    m->dim = dim;
    m->v = calloc(n * dim, sizeof *m->v);
    m->live = calloc(n, sizeof *m->live);
    m->cat = calloc(n, sizeof *m->cat);
}

static void model_copy(model *to, const model *from)
{
    model_init(to, from->n, from->dim);
    memcpy(to->v, from->v, from->n * from->dim * sizeof *to->v);
    memcpy(to->live, from->live, from->n * sizeof *to->live);
    memcpy(to->cat, from->cat, from->n * sizeof *to->cat);
}

static void model_free(model *m)
{
    free(m->v);
    free(m->live);
    free(m->cat);
}

static void key_name(char *buf, size_t i)
{
    sprintf(buf, "k%06u", (unsigned)i);
}

static size_t key_index(const char *key)
{
    return (size_t)strtoul(key + 1, NULL, 10);
}

/* The exact top k of the model (cat < 0: any category), as key numbers
 * into out; returns how many. */
static size_t brute(const model *m, const float *q, size_t k, kd_vector_metric met, int cat, size_t *out,
                    double *sc)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->live[i] || (cat >= 0 && m->cat[i] != cat))
            continue;
        double s = score(met, q, m->v + i * m->dim, m->dim);
        if (n == k && !better(met, s, sc[n - 1]))
            continue;
        size_t j = n < k ? n++ : n - 1;
        while (j > 0 && better(met, s, sc[j - 1])) {
            sc[j] = sc[j - 1];
            out[j] = out[j - 1];
            j--;
        }
        sc[j] = s;
        out[j] = i;
    }
    return n;
}

/* Hits must be exactly the model's top k: the same count, each hit a live
 * key whose model vector gives its score, and no hit worse than the
 * brute-force k-th score (a near tie may swap keys at the boundary).
 * Returns 1 when they agree. */
static int same_as_brute(const model *m, const float *q, size_t k, kd_vector_metric met, int cat,
                         const kd_vector_hit *h, size_t nh)
{
    size_t *idx = malloc(k * sizeof *idx);
    double *sc = malloc(k * sizeof *sc);
    size_t nb = brute(m, q, k, met, cat, idx, sc);
    int ok = nb == nh;
    if (!ok)
        fprintf(stderr, "  %zu hits, brute force %zu\n", nh, nb);
    for (size_t i = 0; ok && i < nh; i++) {
        size_t ki = key_index(h[i].key);
        if (ki >= m->n || !m->live[ki] || (cat >= 0 && m->cat[ki] != cat)) {
            fprintf(stderr, "  hit %zu: %s is not a live match\n", i, h[i].key);
            ok = 0;
            break;
        }
        double s = score(met, q, m->v + ki * m->dim, m->dim);
        double tol = 1e-4 * (1 + fabs(s));
        if (fabs(s - h[i].score) > tol) {
            fprintf(stderr, "  hit %zu: %s score %g, model says %g\n", i, h[i].key, h[i].score, s);
            ok = 0;
        } else if (better(met, sc[nb - 1], s) && fabs(s - sc[nb - 1]) > tol) {
            fprintf(stderr, "  hit %zu: %s score %g is worse than the k-th best %g\n", i, h[i].key, s, sc[nb - 1]);
            ok = 0;
        }
        if (i > 0 && better(met, h[i].score, h[i - 1].score)) {
            fprintf(stderr, "  hits not best first at %zu\n", i);
            ok = 0;
        }
    }
    free(idx);
    free(sc);
    return ok;
}

/* Put the model's live vectors (keys k000000…, meta {"cat":c}) in
 * batches. */
static int load_model(kd_db *db, const char *ns, const char *mname, const model *m)
{
    size_t batch = 500;
    kd_vector_write *w = calloc(batch, sizeof *w);
    char (*keys)[16] = malloc(batch * sizeof *keys);
    char (*metas)[32] = malloc(batch * sizeof *metas);
    int rc = KD_OK;
    size_t n = 0;
    for (size_t i = 0; i <= m->n && !rc; i++) {
        if (i < m->n && m->live[i]) {
            key_name(keys[n], i);
            snprintf(metas[n], sizeof metas[n], "{\"cat\":%d}", m->cat[i]);
            w[n] = (kd_vector_write){ns, keys[n], mname, m->v + i * m->dim, m->dim, metas[n], strlen(metas[n])};
            n++;
        }
        if (n == batch || (i == m->n && n)) {
            rc = kd_vector_put_batch(db, w, n, NULL);
            n = 0;
        }
    }
    free(w);
    free(keys);
    free(metas);
    return rc;
}

static int search(kd_db *db, const char *ns, const float *q, size_t dim, size_t k, const kd_vector_search_options *o,
                  kd_vector_hit **h, size_t *n)
{
    int rc = kd_vector_search(db, ns, q, dim, k, o, h, n);
    if (rc)
        fprintf(stderr, "  search: %s: %s\n", kd_errname(rc), kd_errmsg(db));
    return rc;
}

/* ------------------------------------------------------------------------
 * Round trips
 * ---------------------------------------------------------------------- */

static void test_put_get(void)
{
    char dir[256];
    kd_db *db = open_fresh("putget", dir);
    CHECK(db);
    float v[5] = {0.5f, -1.25f, 3e-7f, 1e20f, -0.0f};
    kd_version ver;
    CHECK_RC(kd_vector_put(db, "docs", "a", "text-emb-3", v, 5, "{ \"title\": \"A\", \"n\": 1 }", 24, &ver), KD_OK);
    CHECK_EQ_INT(strlen(ver.version_id), 64);
    CHECK_EQ_INT(ver.deleted, 0);
    kd_vector *g = NULL;
    CHECK_RC(kd_vector_get(db, "docs", "a", &g), KD_OK);
    CHECK_EQ_STR(g->ns, "docs");
    CHECK_EQ_STR(g->key, "a");
    CHECK_EQ_STR(g->model, "text-emb-3");
    CHECK_EQ_INT(g->dim, 5);
    CHECK(memcmp(g->values, v, sizeof v) == 0); /* bit for bit, -0.0 included */
    CHECK_EQ_STR(g->meta, "{\"n\":1,\"title\":\"A\"}");
    CHECK_EQ_INT(g->meta_len, strlen(g->meta));
    CHECK_EQ_STR(g->version.version_id, ver.version_id);
    CHECK_EQ_STR(g->version.write_id, ver.write_id);
    kd_vector_free(g);

    /* The stored record is an ordinary value of the reserved namespace, and
     * version_id is the SHA-256 of its canonical bytes, model included. */
    char *json = NULL;
    size_t len;
    kd_version raw;
    CHECK_RC(kd_get(db, KD_VECTOR_NS_PREFIX "docs", "a", &json, &len, &raw), KD_OK);
    CHECK_EQ_STR(raw.version_id, ver.version_id);
    CHECK(strncmp(json, "{\"dim\":5,\"meta\":{\"n\":1,\"title\":\"A\"},\"model\":\"text-emb-3\",\"vector\":\"", 67) == 0);
    kd_free(json);

    /* Same vector, meta and model elsewhere: same version_id (content
     * addressed); another model: another version_id. */
    kd_version v2, v3, v4;
    CHECK_RC(kd_vector_put(db, "other", "b", "text-emb-3", v, 5, "{\"title\":\"A\",\"n\":1}", 19, &v2), KD_OK);
    CHECK_EQ_STR(v2.version_id, ver.version_id);
    CHECK_RC(kd_vector_put(db, "other", "c", "text-emb-4", v, 5, "{\"title\":\"A\",\"n\":1}", 19, &v3), KD_OK);
    CHECK(strcmp(v3.version_id, ver.version_id) != 0);
    /* No meta: stored and returned as null. */
    CHECK_RC(kd_vector_put(db, "other", "d", "m", v, 2, NULL, 0, &v4), KD_OK);
    CHECK_RC(kd_vector_get(db, "other", "d", &g), KD_OK);
    CHECK_EQ_STR(g->meta, "null");
    CHECK_EQ_INT(g->dim, 2);
    kd_vector_free(g);

    /* JSON helpers round trip every float exactly. */
    float w[6] = {0.1f, -3.4028235e38f, 1.17549435e-38f, 1e-45f, 123456789.0f, -0.0f};
    char *text;
    size_t tl;
    CHECK_RC(kd_vector_to_json(w, 6, &text, &tl), KD_OK);
    CHECK_EQ_INT(tl, strlen(text));
    float *back;
    size_t bd;
    char err[256];
    CHECK_RC(kd_vector_parse(text, tl, &back, &bd, err, sizeof err), KD_OK);
    CHECK_EQ_INT(bd, 6);
    CHECK(memcmp(back, w, sizeof w) == 0);
    CHECK(strncmp(text, "[0.1,", 5) == 0);
    kd_free(text);
    kd_free(back);
    CHECK_RC(kd_vector_parse("[1, 2, \"x\"]", 11, &back, &bd, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "element 2") != NULL);
    CHECK_RC(kd_vector_parse("[1, 1e39]", 9, &back, &bd, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "element 1") != NULL);
    CHECK_RC(kd_vector_parse("[]", 2, &back, &bd, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_vector_parse("[1,", 3, &back, &bd, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "byte") != NULL);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

static void test_history_delete(void)
{
    char dir[256];
    kd_db *db = open_fresh("hist", dir);
    CHECK(db);
    float a[3] = {1, 2, 3}, b[3] = {4, 5, 6};
    kd_version v1, v2, v3;
    CHECK_RC(kd_vector_put(db, "ns", "k", "m", a, 3, NULL, 0, &v1), KD_OK);
    CHECK_RC(kd_vector_put(db, "ns", "k", "m", b, 3, "{\"x\":1}", 7, &v2), KD_OK);
    CHECK_EQ_STR(v2.previous_write_id, v1.write_id);
    CHECK_RC(kd_vector_delete(db, "ns", "k", &v3), KD_OK);
    CHECK_EQ_INT(v3.deleted, 1);
    CHECK_EQ_STR(v3.previous_write_id, v2.write_id);

    kd_version *h;
    size_t n;
    CHECK_RC(kd_vector_history(db, "ns", "k", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(h[0].write_id, v1.write_id);
    CHECK_EQ_STR(h[1].version_id, v2.version_id);
    CHECK_EQ_INT(h[2].deleted, 1);
    kd_free(h);

    kd_vector *g = NULL;
    CHECK_RC(kd_vector_get(db, "ns", "k", &g), KD_EDELETED);
    CHECK(g == NULL);
    CHECK(strstr(kd_errmsg(db), "ns/k") != NULL);
    CHECK_RC(kd_vector_get_at(db, "ns", "k", v1.timestamp, &g), KD_OK);
    CHECK(memcmp(g->values, a, sizeof a) == 0);
    CHECK_EQ_STR(g->version.write_id, v1.write_id);
    kd_vector_free(g);
    CHECK_RC(kd_vector_get_at(db, "ns", "k", v3.timestamp - 1, &g), KD_OK);
    CHECK(memcmp(g->values, b, sizeof b) == 0);
    CHECK_EQ_STR(g->meta, "{\"x\":1}");
    kd_vector_free(g);
    CHECK_RC(kd_vector_get_at(db, "ns", "k", v1.timestamp - 1, &g), KD_ENOVERSION);
    CHECK_RC(kd_vector_get_at(db, "ns", "k", v3.timestamp, &g), KD_EDELETED);
    CHECK_RC(kd_vector_get(db, "ns", "never", &g), KD_ENOTFOUND);
    CHECK(strstr(kd_errmsg(db), "no vector at ns/never") != NULL);
    CHECK_RC(kd_vector_delete(db, "ns", "k", NULL), KD_EDELETED);
    CHECK_RC(kd_vector_delete(db, "ns", "never", NULL), KD_ENOTFOUND);
    CHECK_RC(kd_vector_history(db, "ns", "never", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n), KD_ENOTFOUND);

    /* A deleted vector is not found; its key may hold a vector again. */
    kd_vector_hit *hits;
    CHECK_RC(search(db, "ns", a, 3, 5, NULL, &hits, &n), KD_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_RC(kd_vector_put(db, "ns", "k", "m", a, 3, NULL, 0, NULL), KD_OK);
    CHECK_RC(search(db, "ns", a, 3, 5, NULL, &hits, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(hits[0].key, "k");
    CHECK(fabsf(hits[0].score - 1.0f) < 1e-6f);
    kd_vector_hits_free(hits, n);
    /* Vectors and values are separate: the user namespace has no key k. */
    CHECK_EQ_INT(kd_contains(db, "ns", "k"), 0);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */

static void test_errors(void)
{
    char dir[256];
    kd_db *db = open_fresh("err", dir);
    CHECK(db);
    float v[4] = {1, 2, 3, 4};
    CHECK_RC(kd_vector_put(db, "ns", "a", "m", v, 4, NULL, 0, NULL), KD_OK);

    /* dimension mismatch, naming both */
    CHECK_RC(kd_vector_put(db, "ns", "b", "m", v, 3, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "3 dimensions") && strstr(kd_errmsg(db), "have 4"));
    /* ... also the key itself: it is one of the live vectors */
    CHECK_RC(kd_vector_put(db, "ns", "a", "m", v, 3, NULL, 0, NULL), KD_EINVALID);
    /* another model or namespace may have another dimension */
    CHECK_RC(kd_vector_put(db, "ns", "b", "m2", v, 3, NULL, 0, NULL), KD_OK);
    CHECK_RC(kd_vector_put(db, "ns2", "b", "m", v, 3, NULL, 0, NULL), KD_OK);

    float bad[4] = {1, NAN, 3, 4};
    CHECK_RC(kd_vector_put(db, "ns", "c", "m", bad, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "component 1 is NaN"));
    bad[1] = 2;
    bad[3] = INFINITY;
    CHECK_RC(kd_vector_put(db, "ns", "c", "m", bad, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "component 3 is +Inf"));
    bad[3] = -INFINITY;
    CHECK_RC(kd_vector_put(db, "ns", "c", "m", bad, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "component 3 is -Inf"));
    float zero[4] = {0, 0, -0.0f, 0};
    CHECK_RC(kd_vector_put(db, "ns", "c", "m", zero, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "zero"));

    /* models */
    CHECK_RC(kd_vector_put(db, "ns", "c", "", v, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "model"));
    CHECK_RC(kd_vector_put(db, "ns", "c", NULL, v, 4, NULL, 0, NULL), KD_EINVALID);
    char longm[300];
    memset(longm, 'm', 256);
    longm[256] = '\0';
    CHECK_RC(kd_vector_put(db, "ns", "c", longm, v, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "256 bytes"));
    longm[255] = '\0';
    CHECK_RC(kd_vector_put(db, "ns", "c", longm, v, 4, NULL, 0, NULL), KD_OK);
    CHECK_RC(kd_vector_put(db, "ns", "c", "\xff\xfe", v, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "UTF-8"));

    /* dimensions 0 and 4097; 4096 is fine */
    float *big = calloc(4097, sizeof *big);
    for (int i = 0; i < 4097; i++)
        big[i] = (float)(i % 7) - 3;
    CHECK_RC(kd_vector_put(db, "ns", "c", "big", big, 0, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "0 dimensions"));
    CHECK_RC(kd_vector_put(db, "ns", "c", "big", big, 4097, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "4097 dimensions"));
    CHECK_RC(kd_vector_put(db, "ns", "c", "big", big, 4096, NULL, 0, NULL), KD_OK);
    free(big);

    /* namespaces */
    char ns[300];
    memset(ns, 'n', 248);
    ns[248] = '\0';
    CHECK_RC(kd_vector_put(db, ns, "c", "m", v, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "248 bytes") && strstr(kd_errmsg(db), "at most 247"));
    ns[247] = '\0';
    CHECK_RC(kd_vector_put(db, ns, "c", "m", v, 4, NULL, 0, NULL), KD_OK);
    CHECK_RC(kd_vector_put(db, "_kd.x", "c", "m", v, 4, NULL, 0, NULL), KD_ERESERVED);
    CHECK_RC(kd_vector_put(db, "", "c", "m", v, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK_RC(kd_vector_put(db, "ns", "", "m", v, 4, NULL, 0, NULL), KD_EINVALID);
    CHECK_RC(kd_vector_put(db, "ns", "c", "m", NULL, 4, NULL, 0, NULL), KD_EINVALID);
    /* the reserved namespace itself is not writable by users */
    CHECK_RC(kd_put(db, KD_VECTOR_NS_PREFIX "ns", "x", "1", 1, NULL), KD_ERESERVED);

    /* metadata */
    CHECK_RC(kd_vector_put(db, "ns", "c", "m", v, 4, "{\"a\":", 5, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "meta") && strstr(kd_errmsg(db), "byte"));

    /* batches: all or nothing, the failing write named */
    float v5[5] = {1, 2, 3, 4, 5};
    kd_vector_write w[2] = {{"ns", "e", "m", v, 4, NULL, 0}, {"ns", "f", "m", v5, 5, NULL, 0}};
    CHECK_RC(kd_vector_put_batch(db, w, 2, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "batch write 1"));
    kd_vector *g;
    CHECK_RC(kd_vector_get(db, "ns", "e", &g), KD_ENOTFOUND);
    /* two dimensions for one new (namespace, model) within a batch */
    kd_vector_write w2[2] = {{"new", "e", "m", v, 4, NULL, 0}, {"new", "f", "m", v, 3, NULL, 0}};
    CHECK_RC(kd_vector_put_batch(db, w2, 2, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "batch write 1") && strstr(kd_errmsg(db), "have 4"));
    /* the failed batch left no claim behind: dimension 3 is free again */
    CHECK_RC(kd_vector_put(db, "new", "f", "m", v, 3, NULL, 0, NULL), KD_OK);

    /* metric names */
    kd_vector_metric met;
    char err[256];
    CHECK_RC(kd_vector_metric_parse("cosine", &met, err, sizeof err), KD_OK);
    CHECK_EQ_INT(met, KD_VECTOR_COSINE);
    CHECK_RC(kd_vector_metric_parse("l2", &met, err, sizeof err), KD_OK);
    CHECK_EQ_INT(met, KD_VECTOR_L2);
    CHECK_RC(kd_vector_metric_parse("manhattan", &met, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "unknown metric 'manhattan'"));
    CHECK_EQ_STR(kd_vector_metric_name(KD_VECTOR_DOT), "dot");
    CHECK(kd_vector_metric_name((kd_vector_metric)9) == NULL);

    /* searches */
    kd_vector_hit *h;
    size_t n;
    kd_vector_search_options o;
    memset(&o, 0, sizeof o);
    o.metric = (kd_vector_metric)7;
    CHECK_RC(kd_vector_search(db, "ns", v, 4, 10, &o, &h, &n), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "unknown metric 7"));
    o.metric = KD_VECTOR_COSINE;
    o.model = "m";
    CHECK_RC(kd_vector_search(db, "ns", v, 3, 10, &o, &h, &n), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "3 dimensions") && strstr(kd_errmsg(db), "have 4"));
    CHECK_RC(kd_vector_search(db, "ns", v, 4, 0, NULL, &h, &n), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "k is 0"));
    CHECK_RC(kd_vector_search(db, "ns", v, 4, KD_VECTOR_MAX_K + 1, NULL, &h, &n), KD_EINVALID);
    CHECK_RC(kd_vector_search(db, "ns", zero, 4, 3, NULL, &h, &n), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "zero"));
    CHECK_RC(kd_vector_search(db, "ns", bad, 4, 3, NULL, &h, &n), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "component 3"));
    CHECK_RC(kd_vector_search(db, "ns", v, 0, 3, NULL, &h, &n), KD_EINVALID);
    /* a dimension nobody has, no model given */
    float v7[7] = {1, 1, 1, 1, 1, 1, 1};
    CHECK_RC(kd_vector_search(db, "ns", v7, 7, 3, NULL, &h, &n), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "7 dimensions"));
    /* ... but an empty namespace just has no results */
    CHECK_RC(kd_vector_search(db, "empty", v7, 7, 3, NULL, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 0);
    CHECK(h == NULL);
    /* zero queries are fine for dot and L2 */
    o.metric = KD_VECTOR_L2;
    o.model = NULL;
    CHECK_RC(kd_vector_search(db, "ns", zero, 4, 3, &o, &h, &n), KD_OK);
    CHECK(n >= 1);
    kd_vector_hits_free(h, n);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* A (namespace, model) whose vectors are all deleted takes a new
 * dimension; a key can move to another model. */
static void test_dims_and_models(void)
{
    char dir[256];
    kd_db *db = open_fresh("dims", dir);
    CHECK(db);
    float v[5] = {1, 2, 3, 4, 5};
    CHECK_RC(kd_vector_put(db, "ns", "a", "m", v, 3, NULL, 0, NULL), KD_OK);
    CHECK_RC(kd_vector_put(db, "ns", "b", "m", v, 3, NULL, 0, NULL), KD_OK);
    CHECK_RC(kd_vector_delete(db, "ns", "a", NULL), KD_OK);
    CHECK_RC(kd_vector_put(db, "ns", "c", "m", v, 5, NULL, 0, NULL), KD_EINVALID);
    CHECK_RC(kd_vector_delete(db, "ns", "b", NULL), KD_OK);
    CHECK_RC(kd_vector_put(db, "ns", "c", "m", v, 5, NULL, 0, NULL), KD_OK);
    kd_vector_hit *h;
    size_t n;
    CHECK_RC(search(db, "ns", v, 5, 10, NULL, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(h[0].key, "c");
    kd_vector_hits_free(h, n);

    /* c moves to model m2: a search of model m no longer finds it */
    CHECK_RC(kd_vector_put(db, "ns", "c", "m2", v, 5, NULL, 0, NULL), KD_OK);
    kd_vector_search_options o;
    memset(&o, 0, sizeof o);
    o.model = "m";
    CHECK_RC(search(db, "ns", v, 5, 10, &o, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 0);
    o.model = "m2";
    CHECK_RC(search(db, "ns", v, 5, 10, &o, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(h[0].model, "m2");
    kd_vector_hits_free(h, n);

    /* every namespace: ns NULL */
    CHECK_RC(kd_vector_put(db, "zz", "x", "m2", v, 5, NULL, 0, NULL), KD_OK);
    CHECK_RC(search(db, NULL, v, 5, 10, NULL, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(h[0].ns, "ns"); /* equal scores: by namespace */
    CHECK_EQ_STR(h[1].ns, "zz");
    kd_vector_hits_free(h, n);

    kd_vector_info *info;
    CHECK_RC(kd_vector_stats(db, NULL, &info, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(info[0].ns, "ns");
    CHECK_EQ_STR(info[0].model, "m2");
    CHECK_EQ_INT(info[0].dim, 5);
    CHECK_EQ_INT(info[0].vectors, 1);
    CHECK(info[0].index_bytes > 0);
    kd_vector_stats_free(info, n);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.vectors, 2);
    CHECK(st.vector_index_bytes > 0);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Recall, metrics, filters
 * ---------------------------------------------------------------------- */

static double recall_at_10(kd_db *db, const char *ns, const model *m, const float *queries, size_t nq)
{
    size_t found = 0, total = 0;
    size_t idx[10];
    double sc[10];
    for (size_t qi = 0; qi < nq; qi++) {
        const float *q = queries + qi * m->dim;
        size_t nb = brute(m, q, 10, KD_VECTOR_COSINE, -1, idx, sc);
        kd_vector_hit *h;
        size_t n;
        if (search(db, ns, q, m->dim, 10, NULL, &h, &n))
            return -1;
        if (n != nb)
            fprintf(stderr, "  query %zu: %zu hits, %zu expected\n", qi, n, nb);
        for (size_t i = 0; i < nb; i++)
            for (size_t j = 0; j < n; j++)
                if (key_index(h[j].key) == idx[i]) {
                    found++;
                    break;
                }
        total += nb;
        kd_vector_hits_free(h, n);
    }
    return total ? (double)found / (double)total : 0;
}

static void test_recall_random(void)
{
    char dir[256];
    kd_db *db = open_fresh("recall", dir);
    CHECK(db);
    rng_seed(42);
    model m;
    model_init(&m, 20000, 32);
    for (size_t i = 0; i < m.n; i++) {
        rand_vec(m.v + i * m.dim, m.dim);
        m.live[i] = 1;
        m.cat[i] = (int)(i % 100);
    }
    CHECK_RC(load_model(db, "r", "m", &m), KD_OK);
    size_t nq = 200;
    float *q = malloc(nq * m.dim * sizeof *q);
    for (size_t i = 0; i < nq * m.dim; i++)
        q[i] = gauss();
    double r = recall_at_10(db, "r", &m, q, nq);
    fprintf(stderr, "  random 20000 x 32: recall@10 = %.4f\n", r);
    CHECK(r >= 0.95);
    free(q);
    model_free(&m);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

static void make_clustered(model *m, size_t clusters, float spread, float *queries, size_t nq)
{
    float *centers = malloc(clusters * m->dim * sizeof *centers);
    for (size_t i = 0; i < clusters * m->dim; i++)
        centers[i] = gauss();
    for (size_t i = 0; i < m->n; i++) {
        const float *c = centers + (rng() % clusters) * m->dim;
        for (size_t d = 0; d < m->dim; d++)
            m->v[i * m->dim + d] = c[d] + spread * gauss();
        m->live[i] = 1;
        m->cat[i] = (int)(i % 100);
    }
    for (size_t i = 0; i < nq; i++) {
        const float *c = centers + (rng() % clusters) * m->dim;
        for (size_t d = 0; d < m->dim; d++)
            queries[i * m->dim + d] = c[d] + spread * gauss();
    }
    free(centers);
}

static void test_recall_clustered(void)
{
    char dir[256];
    kd_db *db = open_fresh("clust", dir);
    CHECK(db);
    rng_seed(7);
    model m;
    model_init(&m, 20000, 48);
    size_t nq = 200;
    float *q = malloc(nq * m.dim * sizeof *q);
    make_clustered(&m, 20, 0.8f, q, nq);
    CHECK_RC(load_model(db, "c", "m", &m), KD_OK);
    double r = recall_at_10(db, "c", &m, q, nq);
    fprintf(stderr, "  clustered 20000 x 48: recall@10 = %.4f\n", r);
    CHECK(r >= 0.95);
    free(q);
    model_free(&m);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* Dot and L2 are answered exactly; so are filters at 1% selectivity. The
 * count is exact for every filter. */
static void test_metrics_and_filters(void)
{
    char dir[256];
    kd_db *db = open_fresh("filt", dir);
    CHECK(db);
    rng_seed(99);
    model m;
    model_init(&m, 5000, 16);
    for (size_t i = 0; i < m.n; i++) {
        rand_vec(m.v + i * m.dim, m.dim);
        for (size_t d = 0; d < m.dim; d++) /* varied lengths, so dot differs from cosine */
            m.v[i * m.dim + d] *= (float)(0.2 + 2 * unif());
        m.live[i] = 1;
        m.cat[i] = (int)(rng() % 100);
    }
    CHECK_RC(load_model(db, "f", "m", &m), KD_OK);
    kd_filter *f1, *f10, *f_none, *f3;
    char err[256];
    CHECK_RC(kd_filter_parse("cat = 7", &f1, err, sizeof err), KD_OK);
    CHECK_RC(kd_filter_parse("cat < 10", &f10, err, sizeof err), KD_OK);
    CHECK_RC(kd_filter_parse("cat = 1000", &f_none, err, sizeof err), KD_OK);
    int cnt7 = 0;
    for (size_t i = 0; i < m.n; i++)
        cnt7 += m.cat[i] == 7;
    float q[16];
    for (int t = 0; t < 20; t++) {
        rand_vec(q, m.dim);
        kd_vector_hit *h;
        size_t n;
        kd_vector_search_options o;
        memset(&o, 0, sizeof o);
        for (int met = 1; met <= 2; met++) {
            o.metric = (kd_vector_metric)met;
            CHECK_RC(search(db, "f", q, m.dim, 10, &o, &h, &n), KD_OK);
            int ok = same_as_brute(&m, q, 10, o.metric, -1, h, n);
            kd_vector_hits_free(h, n);
            CHECK(ok);
        }
        o.metric = KD_VECTOR_COSINE;
        o.filter = f1; /* 1%: exact */
        CHECK_RC(search(db, "f", q, m.dim, 10, &o, &h, &n), KD_OK);
        int ok = same_as_brute(&m, q, 10, KD_VECTOR_COSINE, 7, h, n);
        for (size_t i = 0; i < n; i++)
            ok = ok && strcmp(h[i].meta, "{\"cat\":7}") == 0;
        kd_vector_hits_free(h, n);
        CHECK(ok);
        /* more than every match asked for: all of them */
        CHECK_RC(search(db, "f", q, m.dim, 1000, &o, &h, &n), KD_OK);
        CHECK_EQ_INT(n, cnt7);
        kd_vector_hits_free(h, n);
        o.filter = f10; /* 10%: k results, all matching */
        CHECK_RC(search(db, "f", q, m.dim, 10, &o, &h, &n), KD_OK);
        CHECK_EQ_INT(n, 10);
        for (size_t i = 0; i < n; i++)
            CHECK(m.cat[key_index(h[i].key)] < 10);
        kd_vector_hits_free(h, n);
        o.filter = f_none;
        CHECK_RC(search(db, "f", q, m.dim, 10, &o, &h, &n), KD_OK);
        CHECK_EQ_INT(n, 0);
        /* min_score: exactly the top hits at or above it */
        o.filter = NULL;
        o.metric = KD_VECTOR_L2;
        CHECK_RC(search(db, "f", q, m.dim, 50, &o, &h, &n), KD_OK);
        CHECK_EQ_INT(n, 50);
        float limit = h[20].score;
        kd_vector_hits_free(h, n);
        o.has_min_score = 1;
        o.min_score = limit;
        CHECK_RC(search(db, "f", q, m.dim, 50, &o, &h, &n), KD_OK);
        CHECK_EQ_INT(n, 21);
        CHECK(h[n - 1].score <= limit);
        kd_vector_hits_free(h, n);
        o.has_min_score = 0;
    }
    /* a filter on vectors without metadata sees null */
    CHECK_RC(kd_filter_parse("cat exists", &f3, err, sizeof err), KD_OK);
    CHECK_RC(kd_vector_put(db, "f", "nometa", "m", q, m.dim, NULL, 0, NULL), KD_OK);
    kd_vector_search_options o;
    memset(&o, 0, sizeof o);
    o.filter = f3;
    kd_vector_hit *h;
    size_t n;
    CHECK_RC(search(db, "f", q, m.dim, 1, &o, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    CHECK(strcmp(h[0].key, "nometa") != 0);
    kd_vector_hits_free(h, n);
    kd_filter_free(f1);
    kd_filter_free(f10);
    kd_filter_free(f_none);
    kd_filter_free(f3);
    model_free(&m);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* Updated and deleted vectors never come back with their old values. */
static void test_deleted_superseded(void)
{
    char dir[256];
    kd_db *db = open_fresh("super", dir);
    CHECK(db);
    rng_seed(5);
    model m, old;
    model_init(&m, 4000, 24);
    for (size_t i = 0; i < m.n; i++) {
        rand_vec(m.v + i * m.dim, m.dim);
        m.live[i] = 1;
    }
    CHECK_RC(load_model(db, "s", "m", &m), KD_OK);
    model_copy(&old, &m);
    /* a third updated, a third deleted */
    for (size_t i = 0; i < m.n; i++) {
        char k[16];
        key_name(k, i);
        if (i % 3 == 0) {
            rand_vec(m.v + i * m.dim, m.dim);
            CHECK_RC(kd_vector_put(db, "s", k, "m", m.v + i * m.dim, m.dim, "{\"cat\":0}", 9, NULL), KD_OK);
        } else if (i % 3 == 1) {
            CHECK_RC(kd_vector_delete(db, "s", k, NULL), KD_OK);
            m.live[i] = 0;
        }
    }
    for (size_t i = 0; i < 300; i++) {
        /* the old vector as query: it would score 1 if it were still there */
        const float *q = old.v + i * m.dim;
        kd_vector_hit *h;
        size_t n;
        CHECK_RC(search(db, "s", q, m.dim, 5, NULL, &h, &n), KD_OK);
        CHECK_EQ_INT(n, 5);
        for (size_t j = 0; j < n; j++) {
            size_t ki = key_index(h[j].key);
            CHECK(m.live[ki]);
            double s = score(KD_VECTOR_COSINE, q, m.v + ki * m.dim, m.dim);
            CHECK(fabs(s - h[j].score) < 1e-4);
        }
        if (i % 3 == 2) /* unchanged: still found first */
            CHECK_EQ_INT(key_index(h[0].key), i);
        kd_vector_hits_free(h, n);
    }
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    size_t live = 0;
    for (size_t i = 0; i < m.n; i++)
        live += m.live[i];
    CHECK_EQ_INT(st.vectors, live);
    model_free(&m);
    model_free(&old);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Search of the past
 * ---------------------------------------------------------------------- */

static void test_past(void)
{
    char dir[256];
    kd_db *db = open_fresh("past", dir);
    CHECK(db);
    rng_seed(2024);
    size_t nkeys = 300, dim = 8, rounds = 12;
    model cur;
    model_init(&cur, nkeys, dim);
    model snaps[12];
    int64_t times[12];
    for (size_t r = 0; r < rounds; r++) {
        for (size_t op = 0; op < 150; op++) {
            size_t i = rng() % nkeys;
            char k[16];
            key_name(k, i);
            if (cur.live[i] && rng() % 4 == 0) {
                CHECK_RC(kd_vector_delete(db, "p", k, NULL), KD_OK);
                cur.live[i] = 0;
            } else {
                rand_vec(cur.v + i * dim, dim);
                cur.cat[i] = (int)(rng() % 5);
                char meta[32];
                snprintf(meta, sizeof meta, "{\"cat\":%d}", cur.cat[i]);
                CHECK_RC(kd_vector_put(db, "p", k, "m", cur.v + i * dim, dim, meta, strlen(meta), NULL), KD_OK);
                cur.live[i] = 1;
            }
        }
        kd_stats st;
        CHECK_RC(kd_stats_get(db, &st), KD_OK);
        times[r] = st.last_timestamp;
        model_copy(&snaps[r], &cur);
    }
    kd_filter *f;
    char err[128];
    CHECK_RC(kd_filter_parse("cat = 2", &f, err, sizeof err), KD_OK);
    float q[8];
    for (size_t r = 0; r < rounds; r++) {
        for (int t = 0; t < 5; t++) {
            rand_vec(q, dim);
            kd_vector_search_options o;
            memset(&o, 0, sizeof o);
            o.at = times[r];
            o.metric = (kd_vector_metric)(t % 3);
            kd_vector_hit *h;
            size_t n;
            CHECK_RC(search(db, "p", q, dim, 10, &o, &h, &n), KD_OK);
            int ok = same_as_brute(&snaps[r], q, 10, o.metric, -1, h, n);
            /* each hit's version is the one at that time */
            for (size_t i = 0; ok && i < n; i++)
                ok = h[i].version.timestamp <= times[r] && !h[i].version.deleted;
            kd_vector_hits_free(h, n);
            CHECK(ok);
            o.filter = f;
            CHECK_RC(search(db, NULL, q, dim, 10, &o, &h, &n), KD_OK);
            ok = same_as_brute(&snaps[r], q, 10, o.metric, 2, h, n);
            kd_vector_hits_free(h, n);
            CHECK(ok);
        }
    }
    /* before the first write: nothing */
    kd_vector_search_options o;
    memset(&o, 0, sizeof o);
    o.at = 1;
    kd_vector_hit *h;
    size_t n;
    CHECK_RC(search(db, "p", q, dim, 10, &o, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 0);
    /* now, both ways: the live index and the log agree with the model */
    o.at = 0;
    CHECK_RC(search(db, "p", q, dim, 10, &o, &h, &n), KD_OK);
    int ok = same_as_brute(&cur, q, 10, KD_VECTOR_COSINE, -1, h, n);
    kd_vector_hits_free(h, n);
    CHECK(ok);
    for (size_t r = 0; r < rounds; r++)
        model_free(&snaps[r]);
    model_free(&cur);
    kd_filter_free(f);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Persistence, roots, subscriptions
 * ---------------------------------------------------------------------- */

typedef struct result {
    char keys[10][16];
    float scores[10];
    size_t n;
} result;

static int run_queries(kd_db *db, const float *qs, size_t nq, size_t dim, result *out)
{
    for (size_t i = 0; i < nq; i++) {
        kd_vector_hit *h;
        size_t n;
        if (search(db, "pr", qs + i * dim, dim, 10, NULL, &h, &n))
            return -1;
        out[i].n = n;
        for (size_t j = 0; j < n; j++) {
            snprintf(out[i].keys[j], 16, "%s", h[j].key);
            out[i].scores[j] = h[j].score;
        }
        kd_vector_hits_free(h, n);
    }
    return 0;
}

static int same_results(const result *a, const result *b, size_t nq)
{
    for (size_t i = 0; i < nq; i++) {
        if (a[i].n != b[i].n)
            return 0;
        for (size_t j = 0; j < a[i].n; j++)
            if (strcmp(a[i].keys[j], b[i].keys[j]) || a[i].scores[j] != b[i].scores[j])
                return 0;
    }
    return 1;
}

static int file_exists(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

static void copy_file(const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    if (system(cmd))
        fprintf(stderr, "copy failed\n");
}

static void test_reopen(void)
{
    char dir[256], idx[300], saved[300];
    kd_db *db = open_fresh("reopen", dir);
    CHECK(db);
    snprintf(idx, sizeof idx, "%s/vectors.idx", dir);
    snprintf(saved, sizeof saved, "%s.saved", dir);
    rng_seed(11);
    model m;
    model_init(&m, 6000, 20);
    for (size_t i = 0; i < m.n; i++) {
        rand_vec(m.v + i * m.dim, m.dim);
        m.live[i] = 1;
        m.cat[i] = (int)(i % 10);
    }
    CHECK_RC(load_model(db, "pr", "m", &m), KD_OK);
    for (size_t i = 0; i < m.n; i += 7) { /* some deletes, so slots are reused */
        char k[16];
        key_name(k, i);
        CHECK_RC(kd_vector_delete(db, "pr", k, NULL), KD_OK);
    }
    size_t nq = 50;
    float *qs = malloc(nq * m.dim * sizeof *qs);
    for (size_t i = 0; i < nq * m.dim; i++)
        qs[i] = gauss();
    result *r1 = calloc(nq, sizeof *r1), *r2 = calloc(nq, sizeof *r2);
    CHECK_EQ_INT(run_queries(db, qs, nq, m.dim, r1), 0);
    CHECK_RC(kd_close(db), KD_OK);
    CHECK(file_exists(dir, "vectors.idx"));

    /* loaded from the file: the same answers */
    CHECK((db = open_db(dir)));
    CHECK_EQ_INT(run_queries(db, qs, nq, m.dim, r2), 0);
    CHECK(same_results(r1, r2, nq));
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.vectors, m.n - (m.n + 6) / 7);
    /* writes after the load; the file from before is kept aside */
    copy_file(idx, saved);
    float v[20];
    rand_vec(v, 20);
    CHECK_RC(kd_vector_put(db, "pr", "new", "m", v, 20, NULL, 0, NULL), KD_OK);
    CHECK_EQ_INT(run_queries(db, qs, nq, m.dim, r1), 0);
    CHECK_RC(kd_close(db), KD_OK);

    /* a file of an older state is loaded and the write after it applied:
     * the same answers */
    copy_file(saved, idx);
    CHECK((db = open_db(dir)));
    CHECK(db->vs->have_saved);
    CHECK_EQ_INT(db->vs->applied, 1);
    CHECK_EQ_INT(run_queries(db, qs, nq, m.dim, r2), 0);
    CHECK(same_results(r1, r2, nq));
    kd_vector_hit *h;
    size_t n;
    CHECK_RC(search(db, "pr", v, 20, 1, NULL, &h, &n), KD_OK);
    CHECK_EQ_STR(h[0].key, "new");
    kd_vector_hits_free(h, n);
    CHECK_RC(kd_close(db), KD_OK);

    /* a damaged file is not used either */
    FILE *f = fopen(idx, "r+b");
    CHECK(f);
    fseek(f, 200, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    CHECK((db = open_db(dir)));
    CHECK_EQ_INT(run_queries(db, qs, nq, m.dim, r2), 0);
    CHECK(same_results(r1, r2, nq));
    CHECK_RC(kd_close(db), KD_OK);
    /* nor a missing one */
    unlink(idx);
    CHECK((db = open_db(dir)));
    CHECK_EQ_INT(run_queries(db, qs, nq, m.dim, r2), 0);
    CHECK(same_results(r1, r2, nq));
    CHECK_RC(kd_close(db), KD_OK);

    free(qs);
    free(r1);
    free(r2);
    model_free(&m);
    unlink(saved);
    rm_rf(dir);
}

static kd_db *open_upkeep(const char *dir, uint32_t upkeep_ms)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 10);
    kd_options_set_upkeep_interval(o, upkeep_ms);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "open %s: %s\n", dir, err);
    kd_options_free(o);
    return db;
}

/* Unindexed vectors over every group, as kd_vector_stats reports them. */
static uint64_t unindexed(kd_db *db)
{
    kd_vector_info *l;
    size_t n;
    uint64_t u = 0;
    if (kd_vector_stats(db, NULL, &l, &n))
        return UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        u += l[i].unindexed;
    kd_vector_stats_free(l, n);
    return u;
}

/* Every metric, without and with a filter (cat = 2), k 10 and 300 (more
 * than the filter keeps), against the model's exact top k, now (at 0) or
 * at time `at`. Returns the number of searches that disagree. */
static int check_searches(kd_db *db, const model *m, int64_t at)
{
    static const kd_vector_metric mets[] = {KD_VECTOR_COSINE, KD_VECTOR_DOT, KD_VECTOR_L2};
    kd_filter *f;
    char err[200];
    if (kd_filter_parse("cat = 2", &f, err, sizeof err))
        return 1;
    int bad = 0;
    float q[64];
    for (size_t mi = 0; mi < 3; mi++)
        for (int cat = -1; cat <= 2; cat += 3)
            for (size_t k = 10; k <= 300; k += 290)
                for (int r = 0; r < 3; r++) {
                    rand_vec(q, m->dim);
                    kd_vector_search_options o = {.metric = mets[mi], .ef = 2000, .at = at};
                    if (cat >= 0)
                        o.filter = f;
                    kd_vector_hit *h;
                    size_t n;
                    if (search(db, "cr", q, m->dim, k, &o, &h, &n)) {
                        bad++;
                        continue;
                    }
                    if (!same_as_brute(m, q, k, mets[mi], cat, h, n)) {
                        fprintf(stderr, "  metric %d, cat %d, k %zu, at %lld\n", (int)mets[mi], cat, k,
                                (long long)at);
                        bad++;
                    }
                    kd_vector_hits_free(h, n);
                }
    kd_filter_free(f);
    return bad;
}

/* Timestamp of version `pos` of cr/key. */
static int64_t version_ts(kd_db *db, const char *key, size_t pos)
{
    kd_version *v;
    size_t n;
    if (kd_vector_history(db, "cr", key, 0, KD_TIME_MAX, 0, 0, &v, &n) || pos >= n)
        return -1;
    int64_t ts = v[pos].timestamp;
    kd_free(v);
    return ts;
}

/* A process that dies after a checkpoint leaves an index file older than
 * the log: the next open loads it and applies the vector writes after it
 * (updates, deletes, new keys) to the slots at once and leaves their
 * vectors out of the graphs (unindexed, searched by brute force) until
 * they are inserted — by kd_checkpoint or the upkeep thread. Searches are
 * checked against the model before and after, now and in the past; the
 * file is not rewritten while vectors are unindexed (a close then keeps
 * the one from before), and once they are inserted a close saves them. A
 * file of another database is never used. */
static void test_crash_catch_up(void)
{
    char dir[256], dir2[300], other[256], cmd[900];
    snprintf(dir, sizeof dir, "/tmp/kd_test_vectors_crash_XXXXXX");
    snprintf(other, sizeof other, "/tmp/kd_test_vectors_other_XXXXXX");
    CHECK(mkdtemp(dir) && mkdtemp(other));
    snprintf(dir2, sizeof dir2, "%s.copy", dir);
    rng_seed(23);
    model m, before, mid;
    model_init(&m, 1500, 8);
    for (size_t i = 0; i < m.n; i++) {
        rand_vec(m.v + i * m.dim, m.dim);
        m.live[i] = i < 1000;
        m.cat[i] = (int)(i % 5);
    }
    model_copy(&before, &m);
    for (size_t i = 0; i < 100; i++) /* updated after the checkpoint */
        rand_vec(m.v + i * m.dim, m.dim);
    for (size_t i = 100; i < 200; i++) /* deleted after it */
        m.live[i] = 0;
    model_copy(&mid, &m); /* before the new keys */
    for (size_t i = 1000; i < 1500; i++) /* new after it */
        m.live[i] = 1;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        kd_db *c = open_db(dir);
        int bad = !c || load_model(c, "cr", "m", &before) || kd_checkpoint(c);
        for (size_t i = 0; i < 100 && !bad; i++) {
            char k[16], meta[32];
            key_name(k, i);
            snprintf(meta, sizeof meta, "{\"cat\":%d}", m.cat[i]);
            bad = kd_vector_put(c, "cr", k, "m", m.v + i * m.dim, m.dim, meta, strlen(meta), NULL) != KD_OK;
        }
        for (size_t i = 100; i < 200 && !bad; i++) {
            char k[16];
            key_name(k, i);
            bad = kd_vector_delete(c, "cr", k, NULL) != KD_OK;
        }
        model added;
        model_copy(&added, &m);
        for (size_t i = 0; i < 1000; i++)
            added.live[i] = 0;
        bad = bad || load_model(c, "cr", "m", &added);
        _exit(bad ? 1 : 0); /* no kd_close: as if killed */
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* No upkeep thread: the vectors stay unindexed. */
    kd_db *db = open_upkeep(dir, 0);
    CHECK(db);
    CHECK(db->vs->have_saved);
    CHECK_EQ_INT(db->vs->applied, 700);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.vectors, 1400);
    CHECK_EQ_INT(unindexed(db), 600); /* 100 updated, 500 new (the 100 deleted are gone) */
    CHECK_EQ_INT(kd__vstore_unindexed(db), 600);
    /* just before the first write after the checkpoint (the update of
     * k000000), and just before the first new key */
    int64_t t1 = version_ts(db, "k000000", 1) - 1, t2 = version_ts(db, "k001000", 0) - 1;
    CHECK(t1 > 0 && t2 > t1);
    CHECK_EQ_INT(check_searches(db, &m, 0), 0);
    CHECK_EQ_INT(check_searches(db, &before, t1), 0);
    CHECK_EQ_INT(check_searches(db, &mid, t2), 0);
    /* writes now to unindexed vectors: an update (it goes to the graph)
     * and a delete */
    {
        char meta[32];
        rand_vec(m.v + 1 * m.dim, m.dim);
        snprintf(meta, sizeof meta, "{\"cat\":%d}", m.cat[1]);
        CHECK_RC(kd_vector_put(db, "cr", "k000001", "m", m.v + 1 * m.dim, m.dim, meta, strlen(meta), NULL), KD_OK);
        CHECK_RC(kd_vector_delete(db, "cr", "k001000", NULL), KD_OK);
        m.live[1000] = 0;
    }
    CHECK_EQ_INT(unindexed(db), 598);
    CHECK_EQ_INT(check_searches(db, &m, 0), 0);
    CHECK_EQ_INT(check_searches(db, &mid, t2), 0);
    /* a close does not wait for them, nor save the file without them */
    CHECK_RC(kd_close(db), KD_OK);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", dir, dir2);
    CHECK(system(cmd) == 0);

    /* The file from before again, the writes after it applied again. */
    CHECK((db = open_upkeep(dir, 0)));
    CHECK(db->vs->have_saved);
    CHECK_EQ_INT(db->vs->applied, 702);
    CHECK_EQ_INT(unindexed(db), 599); /* k000001 too, this time */
    CHECK_EQ_INT(check_searches(db, &m, 0), 0);
    /* inserted a slice at a time, as the upkeep thread does */
    uint64_t done = 0;
    CHECK_RC(kd__vstore_index_tail(db, 1, NULL, &done), KD_OK);
    CHECK(done >= 1); /* one hold of the lock, ~2 ms */
    CHECK_EQ_INT(unindexed(db), 599 - done);
    CHECK_EQ_INT(check_searches(db, &m, 0), 0);
    /* kd_checkpoint inserts the rest, then saves */
    CHECK_RC(kd_checkpoint(db), KD_OK);
    CHECK_EQ_INT(unindexed(db), 0);
    kd_task_status *tasks;
    size_t nt;
    CHECK_RC(kd_upkeep_status(db, &tasks, &nt), KD_OK);
    for (size_t i = 0; i < nt; i++)
        if (!strcmp(tasks[i].name, "vector_index") && done < 599) {
            char want[64];
            snprintf(want, sizeof want, "%llu vectors inserted into the graphs", (unsigned long long)(599 - done));
            CHECK(strstr(tasks[i].message, want) != NULL);
            CHECK(strstr(tasks[i].message, "vectors, ") != NULL); /* and saved */
        }
    kd_free(tasks);
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.vectors, 1399);
    CHECK_EQ_INT(check_searches(db, &m, 0), 0);
    CHECK_EQ_INT(check_searches(db, &before, t1), 0);
    CHECK_EQ_INT(check_searches(db, &mid, t2), 0);
    CHECK_RC(kd_close(db), KD_OK);
    /* the saved file holds everything: nothing left to apply */
    CHECK((db = open_db(dir)));
    CHECK(db->vs->have_saved);
    CHECK_EQ_INT(db->vs->applied, 0);
    CHECK_EQ_INT(unindexed(db), 0);
    CHECK_EQ_INT(check_searches(db, &m, 0), 0);
    CHECK_RC(kd_close(db), KD_OK);

    /* The upkeep thread inserts them on its own, at once after the open
     * (its interval here is an hour). */
    CHECK((db = open_upkeep(dir2, 3600000)));
    CHECK_EQ_INT(db->vs->applied, 702);
    for (int i = 0; i < 6000 && unindexed(db); i++)
        usleep(10000);
    CHECK_EQ_INT(unindexed(db), 0);
    CHECK_EQ_INT(check_searches(db, &m, 0), 0);
    CHECK_EQ_INT(check_searches(db, &before, t1), 0);
    CHECK_RC(kd_close(db), KD_OK);
    CHECK((db = open_db(dir2)));
    CHECK_EQ_INT(db->vs->applied, 0);
    CHECK_EQ_INT(check_searches(db, &m, 0), 0);
    CHECK_RC(kd_close(db), KD_OK);

    /* another database's file: rebuilt from the log instead */
    kd_db *o2 = open_db(other);
    CHECK(o2);
    CHECK_RC(load_model(o2, "cr", "m", &before), KD_OK);
    CHECK_RC(kd_close(o2), KD_OK);
    snprintf(cmd, sizeof cmd, "cp %s/vectors.idx %s/vectors.idx", other, dir);
    CHECK(system(cmd) == 0);
    CHECK((db = open_db(dir)));
    CHECK(!db->vs->have_saved);
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.vectors, 1399);
    CHECK_EQ_INT(unindexed(db), 0);
    CHECK_RC(kd_close(db), KD_OK);
    model_free(&m);
    model_free(&before);
    model_free(&mid);
    rm_rf(dir);
    rm_rf(dir2);
    rm_rf(other);
}

/* kd_repair replays the log into a new database (vector writes through
 * the import path): the vectors come back, and the index file it leaves
 * holds all of them. */
static void test_repair(void)
{
    char dir[256];
    kd_db *db = open_fresh("repair", dir);
    CHECK(db);
    rng_seed(3);
    model m;
    model_init(&m, 3000, 12);
    for (size_t i = 0; i < m.n; i++) {
        rand_vec(m.v + i * m.dim, m.dim);
        m.live[i] = 1;
    }
    CHECK_RC(load_model(db, "pr", "m", &m), KD_OK);
    CHECK_RC(kd_put(db, "plain", "x", "1", 1, NULL), KD_OK);
    for (size_t i = 0; i < m.n; i += 5) {
        char k[16];
        key_name(k, i);
        CHECK_RC(kd_vector_delete(db, "pr", k, NULL), KD_OK);
    }
    size_t nq = 20;
    float *qs = malloc(nq * m.dim * sizeof *qs);
    for (size_t i = 0; i < nq * m.dim; i++)
        qs[i] = gauss();
    result *r1 = calloc(nq, sizeof *r1), *r2 = calloc(nq, sizeof *r2);
    CHECK_EQ_INT(run_queries(db, qs, nq, m.dim, r1), 0);
    CHECK_RC(kd_close(db), KD_OK);
    kd_repair_report rep;
    char kept[512] = "", err[512];
    CHECK_RC(kd_repair(dir, NULL, NULL, NULL, &rep, kept, sizeof kept, err, sizeof err), KD_OK);
    CHECK(file_exists(dir, "vectors.idx"));
    CHECK((db = open_db(dir)));
    CHECK_EQ_INT(run_queries(db, qs, nq, m.dim, r2), 0);
    CHECK(same_results(r1, r2, nq));
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.vectors, m.n - (m.n + 4) / 5);
    CHECK_RC(kd_close(db), KD_OK);
    /* and a rebuild agrees */
    char idx[300];
    snprintf(idx, sizeof idx, "%s/vectors.idx", dir);
    unlink(idx);
    CHECK((db = open_db(dir)));
    CHECK_EQ_INT(run_queries(db, qs, nq, m.dim, r2), 0);
    CHECK(same_results(r1, r2, nq));
    CHECK_RC(kd_close(db), KD_OK);
    free(qs);
    free(r1);
    free(r2);
    model_free(&m);
    if (kept[0])
        rm_rf(kept);
    rm_rf(dir);
}

static int root_of(kd_db *db, const char *name, char *hex)
{
    kd_root *r;
    size_t n;
    if (kd_roots(db, &r, &n))
        return 0;
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(r[i].name, name)) {
            strcpy(hex, r[i].hex);
            found = 1;
        }
    kd_free(r);
    return found;
}

static void test_roots(void)
{
    char dir[256], field0[KD_ID_HEX], field1[KD_ID_HEX], vec1[KD_ID_HEX], vec2[KD_ID_HEX], x[KD_ID_HEX];
    kd_db *db = open_fresh("roots", dir);
    CHECK(db);
    CHECK_RC(kd_put(db, "plain", "a", "1", 1, NULL), KD_OK);
    CHECK(root_of(db, "field", field0));
    CHECK(!root_of(db, "vectors", x)); /* absent until the first vector write */
    float v[3] = {1, 0, 0};
    CHECK_RC(kd_vector_put(db, "ns", "a", "m", v, 3, NULL, 0, NULL), KD_OK);
    CHECK(root_of(db, "vectors", vec1));
    CHECK(root_of(db, "field", field1));
    CHECK(strcmp(field0, field1) != 0);
    /* plain writes do not move it; vector writes do */
    CHECK_RC(kd_put(db, "plain", "b", "2", 1, NULL), KD_OK);
    CHECK(root_of(db, "vectors", x));
    CHECK_EQ_STR(x, vec1);
    CHECK_RC(kd_vector_delete(db, "ns", "a", NULL), KD_OK);
    CHECK(root_of(db, "vectors", vec2));
    CHECK(strcmp(vec1, vec2) != 0);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    /* verify recomputes it from the log: a root that differs is caught */
    db->vectors_root[0] ^= 1;
    CHECK_RC(kd_verify(db, &rep), KD_ECORRUPT);
    CHECK(strstr(rep.problem, "vectors root") != NULL);
    db->vectors_root[0] ^= 1;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    /* replay recomputes it */
    CHECK((db = open_db(dir)));
    CHECK(root_of(db, "vectors", x));
    CHECK_EQ_STR(x, vec2);
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

static void test_subscriptions(void)
{
    char dir[256];
    kd_db *db = open_fresh("subs", dir);
    CHECK(db);
    uint64_t all, one;
    CHECK_RC(kd_subscribe(db, NULL, &all), KD_OK);
    kd_sub_options so;
    memset(&so, 0, sizeof so);
    so.ns = KD_VECTOR_NS_PREFIX "docs";
    CHECK_RC(kd_subscribe(db, &so, &one), KD_OK);
    float v[2] = {1, 2};
    kd_version ver;
    CHECK_RC(kd_vector_put(db, "docs", "a", "m", v, 2, NULL, 0, &ver), KD_OK);
    CHECK_RC(kd_vector_delete(db, "docs", "a", NULL), KD_OK);
    CHECK_RC(kd_vector_put(db, "elsewhere", "b", "m", v, 2, NULL, 0, NULL), KD_OK);
    kd_event ev;
    CHECK_RC(kd_sub_next(db, one, 1000, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_INSERT);
    CHECK_EQ_STR(ev.ns, KD_VECTOR_NS_PREFIX "docs");
    CHECK_EQ_STR(ev.key, "a");
    CHECK_EQ_STR(ev.version.version_id, ver.version_id);
    CHECK(strstr(ev.value, "\"model\":\"m\"") != NULL);
    kd_event_clear(&ev);
    CHECK_RC(kd_sub_next(db, one, 1000, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_DELETE);
    kd_event_clear(&ev);
    CHECK_RC(kd_sub_next(db, one, 0, &ev), KD_ETIMEOUT);
    /* a subscription to every namespace sees all three */
    for (int i = 0; i < 3; i++) {
        CHECK_RC(kd_sub_next(db, all, 1000, &ev), KD_OK);
        kd_event_clear(&ev);
    }
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Threads: searches beside a writer, sync=always (group commit)
 * ---------------------------------------------------------------------- */

typedef struct tctx {
    kd_db *db;
    int stop;
    int errors;
    uint64_t searches;
} tctx;

static void *searcher(void *arg)
{
    tctx *t = arg;
    uint64_t s = 1234567 + (uint64_t)(uintptr_t)&s;
    float q[8];
    while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < 8; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            q[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
        }
        kd_vector_hit *h;
        size_t n;
        kd_vector_search_options o;
        memset(&o, 0, sizeof o);
        o.metric = (kd_vector_metric)(s % 3);
        int rc = kd_vector_search(t->db, "t", q, 8, 5, &o, &h, &n);
        if (rc) {
            __atomic_add_fetch(&t->errors, 1, __ATOMIC_RELAXED);
            continue;
        }
        /* every hit's version is a live version of its key */
        for (size_t i = 0; i < n; i++)
            if (h[i].version.deleted || strlen(h[i].version.version_id) != 64)
                __atomic_add_fetch(&t->errors, 1, __ATOMIC_RELAXED);
        kd_vector_hits_free(h, n);
        __atomic_add_fetch(&t->searches, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *writer(void *arg)
{
    tctx *t = arg;
    float v[8];
    uint64_t s = 99;
    for (int i = 0; i < 400; i++) {
        for (int d = 0; d < 8; d++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            v[d] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
        }
        char k[16];
        snprintf(k, sizeof k, "k%d", (int)(s % 60));
        int rc = (s % 5 == 0) ? kd_vector_delete(t->db, "t", k, NULL)
                              : kd_vector_put(t->db, "t", k, "m", v, 8, NULL, 0, NULL);
        if (rc && rc != KD_ENOTFOUND && rc != KD_EDELETED)
            __atomic_add_fetch(&t->errors, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_threads(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/kd_test_vectors_threads_XXXXXX");
    CHECK(mkdtemp(dir));
    kd_db *db = open_opts(dir, KD_SYNC_ALWAYS);
    CHECK(db);
    float v[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    CHECK_RC(kd_vector_put(db, "t", "seed", "m", v, 8, NULL, 0, NULL), KD_OK);
    tctx t = {db, 0, 0, 0};
    pthread_t s[3], w[2];
    for (int i = 0; i < 3; i++)
        pthread_create(&s[i], NULL, searcher, &t);
    for (int i = 0; i < 2; i++)
        pthread_create(&w[i], NULL, writer, &t);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    __atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 3; i++)
        pthread_join(s[i], NULL);
    fprintf(stderr, "  %llu searches beside 800 writes\n", (unsigned long long)t.searches);
    CHECK_EQ_INT(t.errors, 0);
    /* afterwards the live index and the log agree */
    kd_vector_hit *h1, *h2;
    size_t n1, n2;
    kd_vector_search_options o;
    memset(&o, 0, sizeof o);
    CHECK_RC(search(db, "t", v, 8, 100, NULL, &h1, &n1), KD_OK);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    o.at = st.last_timestamp;
    CHECK_RC(search(db, "t", v, 8, 100, &o, &h2, &n2), KD_OK);
    CHECK_EQ_INT(n1, n2);
    CHECK_EQ_INT(n1, st.vectors);
    for (size_t i = 0; i < n1; i++)
        CHECK_EQ_STR(h1[i].key, h2[i].key);
    kd_vector_hits_free(h1, n1);
    kd_vector_hits_free(h2, n2);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Scores: the same through the indexes and through the log, exact for
 * duplicates
 * ---------------------------------------------------------------------- */

/* Search ns for q under metric m (k 100): through the indexes (past 0,
 * at 0) or through the log (past 1: a time after every write, which the
 * search of the past answers as of now). */
static int search_path(kd_db *db, const char *ns, const float *q, size_t dim, kd_vector_metric m, int past,
                       kd_vector_hit **h, size_t *n)
{
    kd_vector_search_options o = {.metric = m, .at = past ? KD_TIME_MAX - 1 : 0};
    return search(db, ns, q, dim, 100, &o, h, n);
}

/* Both paths give the same hits, in the same order, with the same scores
 * bit for bit, none NaN, cosines in [-1, 1]; the hit `self` (NULL: none)
 * scores exactly 1 (cosine) or 0 (l2). Returns 1 when so. */
static int paths_agree(kd_db *db, const char *ns, const float *q, size_t dim, kd_vector_metric m, const char *self)
{
    kd_vector_hit *a, *b;
    size_t na, nb;
    if (search_path(db, ns, q, dim, m, 0, &a, &na))
        return 0;
    if (search_path(db, ns, q, dim, m, 1, &b, &nb)) {
        kd_vector_hits_free(a, na);
        return 0;
    }
    int ok = na == nb && na > 0, seen = self == NULL;
    if (!ok)
        fprintf(stderr, "  metric %d: %zu hits now, %zu through the log\n", (int)m, na, nb);
    for (size_t i = 0; ok && i < na; i++) {
        uint32_t sa, sb;
        memcpy(&sa, &a[i].score, 4);
        memcpy(&sb, &b[i].score, 4);
        if (strcmp(a[i].key, b[i].key) || sa != sb || isnan(a[i].score) ||
            (m == KD_VECTOR_COSINE && !(fabsf(a[i].score) <= 1.0f))) {
            fprintf(stderr, "  metric %d, hit %zu: %s %.9g now, %s %.9g through the log\n", (int)m, i, a[i].key,
                    a[i].score, b[i].key, b[i].score);
            ok = 0;
        }
        if (ok && self && !strcmp(a[i].key, self)) {
            seen = 1;
            if (m != KD_VECTOR_DOT && a[i].score != (m == KD_VECTOR_L2 ? 0.0f : 1.0f)) {
                fprintf(stderr, "  metric %d: %s scores %.9g against itself\n", (int)m, self, a[i].score);
                ok = 0;
            }
        }
    }
    kd_vector_hits_free(a, na);
    kd_vector_hits_free(b, nb);
    return ok && seen;
}

/* Vectors of varied lengths, the audit's [0.3, 0.7, 1.1], one whose
 * squared length overflows float32 and one so short that 1/length does:
 * each, as the query, scores the same through the indexes as through the
 * log, and finds itself at distance 0 and cosine 1 (so that min_score 0
 * under l2 keeps it); a query whose own length overflows float32 still
 * has cosines in [-1, 1]. The same after a reopen from the index file. */
static void test_scores_exact(void)
{
    enum { N = 40, DIM = 5 };
    static const kd_vector_metric mets[] = {KD_VECTOR_COSINE, KD_VECTOR_DOT, KD_VECTOR_L2};
    char dir[256];
    kd_db *db = open_fresh("exact", dir);
    CHECK(db);
    rng_seed(41);
    float v[N][DIM];
    for (size_t i = 0; i < N; i++) {
        rand_vec(v[i], DIM);
        for (size_t d = 0; d < DIM; d++)
            v[i][d] *= (float)(0.2 + 2 * unif());
    }
    memcpy(v[0], (float[DIM]){0.3f, 0.7f, 1.1f, 0, 0}, sizeof v[0]);
    memcpy(v[1], (float[DIM]){1, 1, 0, 0, 0}, sizeof v[1]);
    memcpy(v[2], (float[DIM]){1e20f, 2e19f, 0, 0, 3}, sizeof v[2]);
    memcpy(v[3], (float[DIM]){1e-40f, 0, 0, 0, 0}, sizeof v[3]);
    char keys[N][8];
    for (size_t i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "v%02zu", i);
        CHECK_RC(kd_vector_put(db, "x", keys[i], "m", v[i], DIM, NULL, 0, NULL), KD_OK);
    }
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < N; i++)
            for (size_t mi = 0; mi < 3; mi++)
                CHECK(paths_agree(db, "x", v[i], DIM, mets[mi], keys[i]));
        float huge[DIM] = {3e38f, 3e38f, 0, 0, 0};
        CHECK(paths_agree(db, "x", huge, DIM, KD_VECTOR_COSINE, "v01"));
        /* min_score 0 under l2: exactly the duplicate */
        for (int past = 0; past < 2; past++) {
            kd_vector_search_options o = {.metric = KD_VECTOR_L2, .has_min_score = 1, .min_score = 0,
                                          .at = past ? KD_TIME_MAX - 1 : 0};
            kd_vector_hit *h;
            size_t n;
            CHECK_RC(search(db, "x", v[0], DIM, 10, &o, &h, &n), KD_OK);
            CHECK_EQ_INT(n, 1);
            CHECK_EQ_STR(h[0].key, "v00");
            CHECK(h[0].score == 0.0f);
            kd_vector_hits_free(h, n);
        }
        /* again with the indexes loaded from vectors.idx */
        CHECK_RC(kd_close(db), KD_OK);
        CHECK((db = open_db(dir)));
        CHECK(db->vs->have_saved);
    }
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* Vectors left out of the graph by the open after a crash (the tail,
 * searched by brute force) score exactly as the same vectors in the
 * graph do, and as the log does. */
static void test_scores_tail(void)
{
    enum { N = 30, DIM = 6 };
    static const kd_vector_metric mets[] = {KD_VECTOR_COSINE, KD_VECTOR_DOT, KD_VECTOR_L2};
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/kd_test_vectors_tail_XXXXXX");
    CHECK(mkdtemp(dir));
    rng_seed(43);
    float v[N][DIM];
    for (size_t i = 0; i < N; i++) {
        rand_vec(v[i], DIM);
        for (size_t d = 0; d < DIM; d++)
            v[i][d] *= (float)(0.2 + 2 * unif());
    }
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) { /* g<i> before the checkpoint, t<i> (the same vectors) after it */
        kd_db *c = open_db(dir);
        int bad = !c;
        for (size_t i = 0; i < N && !bad; i++) {
            char k[8];
            snprintf(k, sizeof k, "g%02zu", i);
            bad = kd_vector_put(c, "t", k, "m", v[i], DIM, NULL, 0, NULL) != KD_OK;
        }
        bad = bad || kd_checkpoint(c);
        for (size_t i = 0; i < N && !bad; i++) {
            char k[8];
            snprintf(k, sizeof k, "t%02zu", i);
            bad = kd_vector_put(c, "t", k, "m", v[i], DIM, NULL, 0, NULL) != KD_OK;
        }
        _exit(bad ? 1 : 0); /* no kd_close: as if killed */
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kd_db *db = open_upkeep(dir, 0);
    CHECK(db);
    CHECK_EQ_INT(unindexed(db), N);
    for (size_t i = 0; i < N; i++)
        for (size_t mi = 0; mi < 3; mi++) {
            char g[8], t[8];
            snprintf(g, sizeof g, "g%02zu", i);
            snprintf(t, sizeof t, "t%02zu", i);
            CHECK(paths_agree(db, "t", v[i], DIM, mets[mi], g));
            CHECK(paths_agree(db, "t", v[i], DIM, mets[mi], t));
            /* each g<j> and its twin t<j> score the same */
            kd_vector_hit *h;
            size_t n;
            CHECK_RC(search_path(db, "t", v[i], DIM, mets[mi], 0, &h, &n), KD_OK);
            CHECK_EQ_INT(n, 2 * N);
            int ok = 1;
            for (size_t j = 0; j < n && ok; j++)
                for (size_t l = 0; l < n && ok; l++)
                    if (!strcmp(h[j].key + 1, h[l].key + 1) && h[j].score != h[l].score) {
                        fprintf(stderr, "  metric %d: %s %.9g, %s %.9g\n", (int)mets[mi], h[j].key, h[j].score,
                                h[l].key, h[l].score);
                        ok = 0;
                    }
            kd_vector_hits_free(h, n);
            CHECK(ok);
        }
    CHECK_EQ_INT(unindexed(db), N);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_put_get);
    RUN(test_history_delete);
    RUN(test_errors);
    RUN(test_dims_and_models);
    RUN(test_recall_random);
    RUN(test_recall_clustered);
    RUN(test_metrics_and_filters);
    RUN(test_deleted_superseded);
    RUN(test_past);
    RUN(test_scores_exact);
    RUN(test_reopen);
    RUN(test_crash_catch_up);
    RUN(test_scores_tail);
    RUN(test_repair);
    RUN(test_roots);
    RUN(test_subscriptions);
    RUN(test_threads);
    return HARNESS_DONE();
}
