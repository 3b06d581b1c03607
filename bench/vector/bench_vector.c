/*
 * bench_vector.c — the KoruDelta side of the vector benchmark (issue 6):
 * builds the HNSW index of src/vector over a seeded clustered Gaussian data
 * set, measures build time, memory, recall@10 and queries/s at several ef,
 * filtered search at 10 % (and 1 %) selectivity, and saving and loading the
 * index; writes the data set, the queries and the exact top 10 to a binary
 * file that the hnswlib peer (bench/vector/run.py) reads, so both sides
 * index exactly the same vectors. run.py drives this program, runs hnswlib
 * and writes bench/out/vector.json; see docs/BENCH.md, "Vector search".
 *
 *   kd_bench_vector --data FILE --out FILE [--index FILE] [--n N] [--dim D]
 *                   [--queries Q] [--clusters C] [--spread S] [--seed S]
 *                   [--M M] [--efc EF] [--ef LIST] [--rounds R]
 *                   [--metric cosine|dot|l2]
 *   kd_bench_vector --reuse --data FILE --index FILE --out FILE [--ef LIST]
 *                   [--rounds R]
 *   kd_bench_vector --crash-reopen DIR --out FILE [--n N] [--dim D] [--tail T]
 *
 * The first form makes everything and measures everything, keeping the
 * saved index in --index if given; the second (--reuse) loads the data file
 * and that index and measures only the searches again, so that run.py can
 * alternate passes of both libraries on a shared machine. The third goes
 * through the database (kd_vector_*): a child process stores N vectors,
 * writes a checkpoint (which saves the vector index file), stores T more
 * and dies without closing; the parent then times the open that loads the
 * file and applies the T writes (their vectors wait outside the graphs),
 * the time until the upkeep thread has inserted them, and an open that
 * rebuilds everything (index files deleted), in database DIR.
 *
 * Data: C cluster centres with N(0, 1) components; every vector is a
 * centre chosen uniformly plus N(0, S^2) noise per component; the queries
 * are drawn the same way (they are not in the data set). One random stream
 * (xoshiro256**, Box-Muller), so the same seed gives the same file.
 * Ground truth: brute force over normalized copies with the library's dot
 * kernel (cosine), or its l2sq/dot kernels — not the index's code.
 * Filters: label % 10 == 0 (10 %) and label % 100 == 0 (1 %).
 * Timing: one thread. Rates and build time are measured in the thread's
 * CPU time (CLOCK_THREAD_CPUTIME_ID), which other processes on a shared
 * machine inflate far less than the wall clock; the wall-clock figures are
 * reported beside them. Each pass over the queries is repeated --rounds
 * times and the fastest kept (sharing only ever slows a pass down).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "korudelta.h"
#include "vector/vector_int.h"

#define K 10

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "kd_bench_vector: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory%s", "");
    return p;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Resident set size of this process, bytes. */
static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------------------
 * Data
 * ---------------------------------------------------------------------- */

static uint64_t rs[4];

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next64(void)
{
    uint64_t r = rotl(rs[1] * 5, 7) * 9, t = rs[1] << 17;
    rs[2] ^= rs[0];
    rs[3] ^= rs[1];
    rs[1] ^= rs[2];
    rs[0] ^= rs[3];
    rs[2] ^= t;
    rs[3] = rotl(rs[3], 45);
    return r;
}

static void seed_rng(uint64_t s)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (s += UINT64_C(0x9E3779B97F4A7C15));
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        rs[i] = z ^ (z >> 31);
    }
}

static double unif(void) /* (0, 1] */
{
    return (double)((next64() >> 11) + 1) * 0x1.0p-53;
}

static double gauss(void)
{
    return sqrt(-2.0 * log(unif())) * cos(2.0 * M_PI * unif());
}

static void gen(float *out, size_t n, uint32_t dim, const float *centres, uint32_t nc, double spread)
{
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (size_t)(next64() % nc) * dim;
        for (uint32_t j = 0; j < dim; j++)
            out[i * dim + j] = (float)(c[j] + spread * gauss());
    }
}

/* ------------------------------------------------------------------------
 * Ground truth: brute force, independent of hnsw.c
 * ---------------------------------------------------------------------- */

typedef struct {
    float s; /* higher = better */
    uint32_t id;
} hit;

static void truth(kd__vec_metric m, const float *base, size_t n, const float *queries, size_t nq, uint32_t dim,
                  uint32_t mod, uint32_t *out)
{
    const kd__vec_kernels *k = kd__vec_kernels_active();
    float *nb = NULL;
    if (m == KD__VEC_COSINE) { /* normalized copies */
        nb = xmalloc(n * dim * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (uint32_t j = 0; j < dim; j++)
                s += (double)base[i * dim + j] * base[i * dim + j];
            for (uint32_t j = 0; j < dim; j++)
                nb[i * dim + j] = (float)(base[i * dim + j] / sqrt(s));
        }
        base = nb;
    }
    for (size_t q = 0; q < nq; q++) {
        hit top[K];
        size_t nt = 0;
        const float *qv = queries + q * dim;
        for (size_t i = 0; i < n; i++) {
            if (mod > 1 && i % mod != 0)
                continue;
            float s = m == KD__VEC_L2 ? -k->l2sq(qv, base + i * dim, dim) : k->dot(qv, base + i * dim, dim);
            if (nt == K && s <= top[K - 1].s)
                continue;
            size_t j = nt < K ? nt++ : K - 1;
            while (j > 0 && top[j - 1].s < s) {
                top[j] = top[j - 1];
                j--;
            }
            top[j].s = s;
            top[j].id = (uint32_t)i;
        }
        for (size_t j = 0; j < K; j++)
            out[q * K + j] = j < nt ? top[j].id : UINT32_MAX;
    }
    free(nb);
}

/* ------------------------------------------------------------------------
 * Measuring
 * ---------------------------------------------------------------------- */

static int accept_mod(uint32_t label, void *ctx)
{
    return label % *(uint32_t *)ctx == 0;
}

typedef struct {
    double qps, wall_qps, recall, dist_per_query, graph_share;
} result;

static result run_queries(kd__hnsw *h, const float *queries, size_t nq, uint32_t dim, size_t ef,
                          const uint32_t *gt, uint32_t mod, int rounds)
{
    result r = {0, 0, 0, 0, 0};
    uint32_t labels[K];
    float scores[K];
    double best = 1e300, best_wall = 1e300;
    size_t hits = 0, graph = 0;
    uint64_t dists = 0;
    for (int round = 0; round < rounds; round++) {
        hits = graph = 0;
        dists = 0;
        double t0 = cpu_now(), w0 = now();
        for (size_t q = 0; q < nq; q++) {
            size_t n = 0;
            kd__hnsw_search_info info;
            if (kd__hnsw_search_ex(h, queries + q * dim, dim, K, ef, mod > 1 ? accept_mod : NULL, &mod, labels, scores,
                                   &n, &info))
                die("search failed%s", "");
            dists += info.distances;
            graph += info.method == KD__HNSW_GRAPH;
            for (size_t a = 0; a < n; a++)
                for (size_t b = 0; b < K; b++)
                    hits += labels[a] == gt[q * K + b];
        }
        double dt = cpu_now() - t0, dw = now() - w0;
        if (dt < best)
            best = dt;
        if (dw < best_wall)
            best_wall = dw;
    }
    r.qps = (double)nq / best;
    r.wall_qps = (double)nq / best_wall;
    r.recall = (double)hits / (double)(nq * K);
    r.dist_per_query = (double)dists / (double)nq;
    r.graph_share = (double)graph / (double)nq;
    return r;
}

static void json_results(FILE *f, const char *name, const size_t *efs, const result *rs_, size_t n)
{
    fprintf(f, "  \"%s\": [\n", name);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "    {\"ef\": %zu, \"qps\": %.1f, \"wall_qps\": %.1f, \"recall\": %.4f, "
                   "\"distances_per_query\": %.1f, \"graph_share\": %.3f}%s\n",
                efs[i], rs_[i].qps, rs_[i].wall_qps, rs_[i].recall, rs_[i].dist_per_query, rs_[i].graph_share,
                i + 1 < n ? "," : "");
    fprintf(f, "  ],\n");
}

/* --reuse: read back what the first run wrote. */
static void read_data(const char *path, size_t *n, uint32_t *dim, size_t *nq, kd__vec_metric *metric,
                      float **queries, uint32_t **gt, uint32_t **gt10, uint32_t **gt100)
{
    FILE *f = fopen(path, "rb");
    char magic[8];
    uint32_t hd[6];
    if (!f || fread(magic, 1, 8, f) != 8 || memcmp(magic, "KDVBENCH", 8) || fread(hd, 4, 6, f) != 6 || hd[0] != 1 ||
        hd[4] != K || hd[2] == 0 || hd[2] > KD__VEC_MAX_DIM || hd[5] > KD__VEC_L2)
        die("%s: not a data file of this program", path);
    *n = hd[1];
    *dim = hd[2];
    *nq = hd[3];
    *metric = (kd__vec_metric)hd[5];
    *queries = xmalloc(*nq * *dim * sizeof(float));
    *gt = xmalloc(*nq * K * 4);
    *gt10 = xmalloc(*nq * K * 4);
    *gt100 = xmalloc(*nq * K * 4);
    if (fseek(f, (long)(*n * *dim * sizeof(float)), SEEK_CUR) ||
        fread(*queries, sizeof(float), *nq * *dim, f) != *nq * *dim || fread(*gt, 4, *nq * K, f) != *nq * K ||
        fread(*gt10, 4, *nq * K, f) != *nq * K || fread(*gt100, 4, *nq * K, f) != *nq * K)
        die("%s: truncated", path);
    fclose(f);
}

static void put32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    fwrite(b, 1, 4, f);
}

static void write_searches(FILE *o, const size_t *efs, size_t nef, const result *plain, const result *f10,
                           const result *f100)
{
    json_results(o, "search", efs, plain, nef);
    json_results(o, "filtered_10", efs, f10, nef);
    json_results(o, "filtered_1", efs, f100, nef);
}

static void measure(kd__hnsw *h, const float *queries, size_t nq, uint32_t dim, const size_t *efs, size_t nef,
                    const uint32_t *gt, const uint32_t *gt10, const uint32_t *gt100, int rounds, result *plain,
                    result *f10, result *f100)
{
    for (size_t e = 0; e < nef; e++) {
        plain[e] = run_queries(h, queries, nq, dim, efs[e], gt, 1, rounds);
        f10[e] = run_queries(h, queries, nq, dim, efs[e], gt10, 10, rounds);
        f100[e] = run_queries(h, queries, nq, dim, efs[e], gt100, 100, rounds);
        fprintf(stderr, "korudelta: ef %3zu  recall %.4f %7.0f q/s | 10%%: %.4f %7.0f q/s | 1%%: %.4f %7.0f q/s\n",
                efs[e], plain[e].recall, plain[e].qps, f10[e].recall, f10[e].qps, f100[e].recall, f100[e].qps);
    }
}

/* --reuse: the searches again, on the saved index. */
static int measure_again(const char *data_path, const char *index_path, const char *out_path, const size_t *efs,
                         size_t nef, int rounds)
{
    size_t n, nq;
    uint32_t dim;
    kd__vec_metric metric;
    float *queries;
    uint32_t *gt, *gt10, *gt100;
    read_data(data_path, &n, &dim, &nq, &metric, &queries, &gt, &gt10, &gt100);
    FILE *f = fopen(index_path, "rb");
    kd__hnsw *h = NULL;
    char err[256] = "";
    if (!f || kd__hnsw_load(f, &h, err, sizeof err))
        die("cannot load the index: %s", err);
    fclose(f);
    if (kd__hnsw_dim(h) != dim || kd__hnsw_count(h) != n)
        die("%s does not index this data file", index_path);
    result *plain = xmalloc(nef * sizeof(result)), *f10 = xmalloc(nef * sizeof(result)),
           *f100 = xmalloc(nef * sizeof(result));
    measure(h, queries, nq, dim, efs, nef, gt, gt10, gt100, rounds, plain, f10, f100);
    FILE *o = fopen(out_path, "w");
    if (!o)
        die("cannot write %s", out_path);
    fprintf(o, "{\n  \"reused\": true, \"rounds\": %d,\n", rounds);
    write_searches(o, efs, nef, plain, f10, f100);
    fprintf(o, "  \"done\": true\n}\n");
    if (fclose(o))
        die("cannot write %s", out_path);
    kd__hnsw_free(h);
    free(plain);
    free(f10);
    free(f100);
    free(queries);
    free(gt);
    free(gt10);
    free(gt100);
    return 0;
}

/* ------------------------------------------------------------------------
 * Reopening after a crash (through the database)
 * ---------------------------------------------------------------------- */

/* upkeep_ms 0: no upkeep thread (only the checkpoint asked for). */
static kd_db *db_open_upkeep(const char *dir, uint32_t upkeep_ms)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_upkeep_interval(o, upkeep_ms);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err))
        die("kd_open: %s", err);
    kd_options_free(o);
    return db;
}

static kd_db *db_open(const char *dir)
{
    return db_open_upkeep(dir, 0);
}

/* Vectors not in the HNSW graphs yet, over every group. */
static uint64_t db_unindexed(kd_db *db)
{
    kd_vector_info *l;
    size_t n;
    uint64_t u = 0;
    if (kd_vector_stats(db, NULL, &l, &n))
        die("kd_vector_stats: %s", kd_errmsg(db));
    for (size_t i = 0; i < n; i++)
        u += l[i].unindexed;
    kd_vector_stats_free(l, n);
    return u;
}

/* One cosine search (k 10) for query q: its wall time in ms. */
static double db_search_ms(kd_db *db, const float *q, uint32_t dim)
{
    kd_vector_hit *h;
    size_t nh;
    double t = now();
    if (kd_vector_search(db, "bench", q, dim, 10, NULL, &h, &nh) || nh != 10)
        die("kd_vector_search: %s", kd_errmsg(db));
    t = now() - t;
    kd_vector_hits_free(h, nh);
    return t * 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Mean and 99th percentile of lat[0..n) (sorted in place). */
static void lat_summary(double *lat, size_t n, double *mean, double *p99)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += lat[i];
    qsort(lat, n, sizeof *lat, cmp_double);
    *mean = n ? sum / (double)n : -1;
    *p99 = n ? lat[(size_t)((double)(n - 1) * 0.99)] : -1;
}

static void db_put(kd_db *db, const float *v, size_t from, size_t to, uint32_t dim)
{
    enum { BATCH = 500 };
    kd_vector_write w[BATCH];
    char keys[BATCH][24];
    for (size_t i = from; i < to;) {
        size_t m = 0;
        for (; m < BATCH && i < to; m++, i++) {
            snprintf(keys[m], sizeof keys[m], "v%zu", i);
            w[m] = (kd_vector_write){"bench", keys[m], "m", v + i * dim, dim, NULL, 0};
        }
        if (kd_vector_put_batch(db, w, m, NULL))
            die("kd_vector_put_batch: %s", kd_errmsg(db));
    }
}

/* Vector puts, one at a time, beside a save of the index file: each
 * put's start and wall time, so that the puts during kd_checkpoint can be
 * told from those before it. */
typedef struct put_probe {
    kd_db *db;
    const float *v;
    size_t n;
    uint32_t dim;
    int stop;
    double *start, *ms;
    size_t count, cap;
} put_probe;

static void *put_probe_run(void *arg)
{
    put_probe *p = arg;
    char key[24];
    for (size_t i = 0; !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE) && p->count < p->cap; i++) {
        size_t k = (i * 7919) % p->n;
        snprintf(key, sizeof key, "v%zu", k);
        double t = now();
        if (kd_vector_put(p->db, "bench", key, "m", p->v + ((k + 1) % p->n) * p->dim, p->dim, NULL, 0, NULL))
            die("kd_vector_put: %s", kd_errmsg(p->db));
        p->start[p->count] = t;
        p->ms[p->count] = (now() - t) * 1e3;
        p->count++;
    }
    return NULL;
}

/* The longest put among those that started in [from, to), in ms. */
static double put_probe_max(const put_probe *p, double from, double to, size_t *n)
{
    double m = 0;
    *n = 0;
    for (size_t i = 0; i < p->count; i++)
        if (p->start[i] >= from && p->start[i] < to) {
            (*n)++;
            if (p->ms[i] > m)
                m = p->ms[i];
        }
    return m;
}

static int crash_reopen(const char *dir, const char *out_path, size_t n, uint32_t dim, size_t tail)
{
    seed_rng(7);
    float *centres = xmalloc(100 * (size_t)dim * sizeof(float));
    for (size_t i = 0; i < 100 * (size_t)dim; i++)
        centres[i] = (float)gauss();
    float *v = xmalloc((n + tail) * dim * sizeof(float));
    gen(v, n + tail, dim, centres, 100, 0.6);
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0)
        die("fork failed%s", "");
    if (pid == 0) {
        kd_db *db = db_open(dir);
        db_put(db, v, 0, n, dim);
        if (kd_checkpoint(db))
            die("kd_checkpoint: %s", kd_errmsg(db));
        db_put(db, v, n, n + tail, dim);
        _exit(0); /* no kd_close: as if killed */
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
        die("the writing child failed%s", "");
    double t_build = now() - t0;
    /* How long the checkpoint held writers (its message says). */
    double held_ms = -1;
    /* With the upkeep thread (default interval), which inserts the vectors
     * the open left out of the graphs at once: the open, then the time
     * until none is left (polled every 10 ms, with one search timed per
     * poll: searches meanwhile score the rest by brute force and wait
     * while the thread holds the lock), then as many searches after (at
     * least 200). */
    t0 = now();
    kd_db *db = db_open_upkeep(dir, 5000);
    double t_reopen = now() - t0;
    uint64_t unindexed = db_unindexed(db);
    size_t cap = 4096, nl = 0;
    double *lat = xmalloc(cap * sizeof *lat), *lat_after = xmalloc(cap * sizeof *lat_after);
    while (db_unindexed(db)) {
        /* after the sleep, not right after the poll: the poll's read lock
         * waits for the thread's hold to end, a search right after it would
         * always find the lock free */
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        if (nl < cap) {
            lat[nl] = db_search_ms(db, v + ((nl * 7919) % (n + tail)) * dim, dim);
            nl++;
        }
    }
    double t_indexed = now() - t0;
    size_t na = nl > 200 ? nl : 200;
    if (na > cap)
        na = cap;
    for (size_t i = 0; i < na; i++) {
        lat_after[i] = db_search_ms(db, v + ((i * 7919) % (n + tail)) * dim, dim);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    double mean_during, p99_during, mean_after, p99_after;
    lat_summary(lat, nl, &mean_during, &p99_during);
    lat_summary(lat_after, na, &mean_after, &p99_after);
    free(lat);
    free(lat_after);
    kd_stats st;
    kd_stats_get(db, &st);
    if (st.vectors != n + tail)
        die("after reopening: wrong vector count%s", "");
    /* Puts beside the save: 0.5 s before it, then during it. */
    put_probe pp = {db, v, n + tail, dim, 0, NULL, NULL, 0, 1u << 22};
    pp.start = xmalloc(pp.cap * sizeof *pp.start);
    pp.ms = xmalloc(pp.cap * sizeof *pp.ms);
    pthread_t probe;
    if (pthread_create(&probe, NULL, put_probe_run, &pp))
        die("pthread_create failed%s", "");
    double t_base = now();
    struct timespec half = {0, 500000000};
    nanosleep(&half, NULL);
    double t_save = now();
    if (kd_checkpoint(db))
        die("kd_checkpoint: %s", kd_errmsg(db));
    double t_saved = now();
    __atomic_store_n(&pp.stop, 1, __ATOMIC_RELEASE);
    pthread_join(probe, NULL);
    size_t n_base, n_save;
    double put_max_base = put_probe_max(&pp, t_base, t_save, &n_base);
    double put_max_save = put_probe_max(&pp, t_save, t_saved, &n_save);
    free(pp.start);
    free(pp.ms);
    kd_task_status *tasks;
    size_t nt;
    if (kd_upkeep_status(db, &tasks, &nt) == KD_OK) {
        for (size_t i = 0; i < nt; i++) {
            const char *h = strstr(tasks[i].message, "writers held at most ");
            if (!strcmp(tasks[i].name, "vector_index") && h)
                held_ms = strtod(h + 21, NULL);
        }
        kd_free(tasks);
    }
    kd_close(db);
    char p[4200];
    snprintf(p, sizeof p, "%s/vectors.idx", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/index.ckpt", dir);
    unlink(p);
    t0 = now();
    db = db_open(dir);
    double t_rebuild = now() - t0;
    kd_close(db);
    FILE *o = fopen(out_path, "w");
    if (!o)
        die("cannot write %s", out_path);
    fprintf(o, "{\"vectors\": %zu, \"dim\": %u, \"tail\": %zu, \"build_seconds\": %.3f, "
               "\"reopen_seconds\": %.3f, \"rebuild_seconds\": %.3f, \"reopen_vectors_per_second\": %.0f, "
               "\"rebuild_vectors_per_second\": %.0f, \"save_writers_held_ms\": %.1f, "
               "\"unindexed_after_open\": %llu, \"indexed_seconds\": %.3f, \"searches_while_indexing\": %zu, "
               "\"search_ms_while_indexing\": %.3f, \"search_p99_ms_while_indexing\": %.3f, "
               "\"search_ms_after\": %.3f, \"search_p99_ms_after\": %.3f, \"save_seconds\": %.3f, "
               "\"puts_during_save\": %zu, \"put_max_ms_during_save\": %.3f, \"puts_before_save\": %zu, "
               "\"put_max_ms_before_save\": %.3f}\n",
            n, dim, tail, t_build, t_reopen, t_rebuild, (double)(n + tail) / t_reopen,
            (double)(n + tail) / t_rebuild, held_ms, (unsigned long long)unindexed, t_indexed, nl, mean_during,
            p99_during, mean_after, p99_after, t_saved - t_save, n_save, put_max_save, n_base, put_max_base);
    fclose(o);
    free(v);
    free(centres);
    return 0;
}

int main(int argc, char **argv)
{
    const char *data_path = NULL, *out_path = NULL, *index_path = NULL, *ef_list = "10,12,16,20,24,32,48,64,128,256";
    int reuse = 0;
    const char *crash_dir = NULL;
    size_t n = 100000, nq = 1000, tail = 10000;
    uint32_t dim = 128, nclusters = 100, M = KD__HNSW_DEFAULT_M, efc = KD__HNSW_DEFAULT_EF_CONSTRUCTION;
    double spread = 0.6;
    uint64_t seed = 20261126;
    int rounds = 3;
    kd__vec_metric metric = KD__VEC_COSINE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--reuse")) {
            reuse = 1;
            continue;
        }
        if (!v)
            die("%s needs a value", a);
        i++;
        if (!strcmp(a, "--data"))
            data_path = v;
        else if (!strcmp(a, "--out"))
            out_path = v;
        else if (!strcmp(a, "--index"))
            index_path = v;
        else if (!strcmp(a, "--crash-reopen"))
            crash_dir = v;
        else if (!strcmp(a, "--tail"))
            tail = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--n"))
            n = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--dim"))
            dim = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--queries"))
            nq = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--clusters"))
            nclusters = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--spread"))
            spread = strtod(v, NULL);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--M"))
            M = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--efc"))
            efc = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--ef"))
            ef_list = v;
        else if (!strcmp(a, "--rounds"))
            rounds = atoi(v);
        else if (!strcmp(a, "--metric")) {
            if (kd__vec_metric_parse(v, &metric))
                die("unknown metric %s", v);
        } else
            die("unknown option %s", a);
    }
    if (crash_dir && out_path && n && dim && dim <= KD__VEC_MAX_DIM)
        return crash_reopen(crash_dir, out_path, n, dim, tail);
    if (!data_path || !out_path || n == 0 || nq == 0 || dim == 0 || dim > KD__VEC_MAX_DIM || nclusters == 0 ||
        rounds < 1 || (reuse && !index_path))
        die("usage: kd_bench_vector [--reuse] --data FILE --out FILE [--index FILE] [--n N] [--dim D] ...%s", "");

    size_t efs[32], nef = 0;
    for (const char *p = ef_list; *p && nef < 32;) {
        efs[nef++] = strtoul(p, (char **)&p, 10);
        if (*p == ',')
            p++;
    }

    if (reuse)
        return measure_again(data_path, index_path, out_path, efs, nef, rounds);

    /* Data and ground truth. */
    double t0 = now();
    seed_rng(seed);
    float *centres = xmalloc((size_t)nclusters * dim * sizeof(float));
    for (size_t i = 0; i < (size_t)nclusters * dim; i++)
        centres[i] = (float)gauss();
    float *base = xmalloc(n * dim * sizeof(float)), *queries = xmalloc(nq * dim * sizeof(float));
    gen(base, n, dim, centres, nclusters, spread);
    gen(queries, nq, dim, centres, nclusters, spread);
    if (metric == KD__VEC_COSINE) /* the truth compares normalized queries */
        for (size_t q = 0; q < nq; q++) {
            double s = 0;
            for (uint32_t j = 0; j < dim; j++)
                s += (double)queries[q * dim + j] * queries[q * dim + j];
            for (uint32_t j = 0; j < dim; j++)
                queries[q * dim + j] = (float)(queries[q * dim + j] / sqrt(s));
        }
    uint32_t *gt = xmalloc(nq * K * 4), *gt10 = xmalloc(nq * K * 4), *gt100 = xmalloc(nq * K * 4);
    truth(metric, base, n, queries, nq, dim, 1, gt);
    truth(metric, base, n, queries, nq, dim, 10, gt10);
    truth(metric, base, n, queries, nq, dim, 100, gt100);
    double t_data = now() - t0;

    FILE *df = fopen(data_path, "wb");
    if (!df)
        die("cannot write %s", data_path);
    fwrite("KDVBENCH", 1, 8, df);
    put32(df, 1);
    put32(df, (uint32_t)n);
    put32(df, dim);
    put32(df, (uint32_t)nq);
    put32(df, K);
    put32(df, (uint32_t)metric);
    fwrite(base, sizeof(float), n * dim, df);
    fwrite(queries, sizeof(float), nq * dim, df);
    fwrite(gt, 4, nq * K, df);
    fwrite(gt10, 4, nq * K, df);
    fwrite(gt100, 4, nq * K, df);
    if (fclose(df))
        die("cannot write %s", data_path);

    /* Build. */
    kd__hnsw *h = NULL;
    double rss0 = rss_bytes();
    if (kd__hnsw_new(dim, metric, M, efc, 1, &h) || kd__hnsw_reserve(h, (uint32_t)n))
        die("cannot create the index%s", "");
    t0 = cpu_now();
    double w0 = now();
    for (size_t i = 0; i < n; i++)
        if (kd__hnsw_add(h, (uint32_t)i, base + i * dim, dim))
            die("add failed%s", "");
    double t_build = cpu_now() - t0, t_build_wall = now() - w0;
    double rss_build = rss_bytes() - rss0;
    fprintf(stderr, "korudelta: built %zu x %u in %.2f s CPU, %.2f s wall (%s kernels)\n", n, dim, t_build,
            t_build_wall, kd__vec_kernel_name());

    /* Queries. */
    result *plain = xmalloc(nef * sizeof(result)), *f10 = xmalloc(nef * sizeof(result)),
           *f100 = xmalloc(nef * sizeof(result));
    measure(h, queries, nq, dim, efs, nef, gt, gt10, gt100, rounds, plain, f10, f100);

    /* Save and load (a reopen without rebuilding). */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", index_path ? index_path : "");
    if (!index_path)
        snprintf(tmp, sizeof tmp, "%s.index", data_path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        die("cannot write %s", tmp);
    t0 = now();
    if (kd__hnsw_save(h, f) || fflush(f))
        die("save failed%s", "");
    double t_save = now() - t0;
    long file_size = ftell(f);
    fclose(f);
    f = fopen(tmp, "rb");
    kd__hnsw *h2 = NULL;
    char err[256];
    t0 = now();
    if (!f || kd__hnsw_load(f, &h2, err, sizeof err))
        die("load failed: %s", err);
    double t_load = now() - t0;
    fclose(f);
    if (!index_path)
        unlink(tmp);
    kd__hnsw_free(h2);

    FILE *o = fopen(out_path, "w");
    if (!o)
        die("cannot write %s", out_path);
    fprintf(o, "{\n  \"n\": %zu, \"dim\": %u, \"queries\": %zu, \"k\": %d, \"metric\": \"%s\", \"clusters\": %u, "
               "\"spread\": %g, \"seed\": %llu,\n",
            n, dim, nq, K, kd__vec_metric_name(metric), nclusters, spread, (unsigned long long)seed);
    fprintf(o, "  \"M\": %u, \"ef_construction\": %u, \"kernels\": \"%s\", \"rounds\": %d,\n", M, efc,
            kd__vec_kernel_name(), rounds);
    fprintf(o, "  \"data_seconds\": %.3f, \"build_seconds\": %.3f, \"build_wall_seconds\": %.3f, "
               "\"memory_bytes\": %zu, \"memory_per_vector\": %.1f, \"rss_build_bytes\": %.0f,\n",
            t_data, t_build, t_build_wall, kd__hnsw_memory(h), (double)kd__hnsw_memory(h) / (double)n, rss_build);
    fprintf(o, "  \"file_bytes\": %ld, \"save_seconds\": %.3f, \"load_seconds\": %.3f, "
               "\"load_vectors_per_second\": %.0f,\n",
            file_size, t_save, t_load, (double)n / t_load);
    write_searches(o, efs, nef, plain, f10, f100);
    fprintf(o, "  \"done\": true\n}\n");
    if (fclose(o))
        die("cannot write %s", out_path);
    kd__hnsw_free(h);
    free(plain);
    free(f10);
    free(f100);
    free(base);
    free(queries);
    free(centres);
    free(gt);
    free(gt10);
    free(gt100);
    return 0;
}
