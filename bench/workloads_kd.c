/*
 * workloads_kd.c — the KoruDelta side of every workload, written against
 * include/korudelta.h only, as an application would use it.
 *
 * Every call's status is checked; a failure prints kd_errmsg() and exits 1.
 * Setup (filling a key with versions, building the 1 GB log) runs with
 * sync=none and is never timed. Puts pass NULL for the version out-parameter
 * unless the benchmark needs the timestamp; gets ask for the value (an owned
 * copy the caller frees) but not the metadata.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* ------------------------------------------------------------------------
 * Opening, errors
 * ---------------------------------------------------------------------- */

void kdb_check(kd_db *db, int rc, const char *what)
{
    if (rc != KD_OK)
        bench_die("korudelta: %s failed: %s (%s): %s", what, kd_errname(rc), kd_strerror(rc),
                  db ? kd_errmsg(db) : "");
}

kd_db *kdb_open(const char *dir, kd_sync sync)
{
    kd_options *o = kd_options_new();
    char err[512] = "";
    kd_db *db = NULL;
    if (!o)
        bench_die("korudelta: kd_options_new: out of memory");
    kdb_check(NULL, kd_options_set_sync(o, sync, 100), "kd_options_set_sync");
    int rc = kd_open(dir, o, &db, err, sizeof err);
    kd_options_free(o);
    if (rc != KD_OK)
        bench_die("korudelta: kd_open(%s) failed: %s: %s", dir, kd_errname(rc), err);
    return db;
}

void kdb_close(kd_db *db)
{
    int rc = kd_close(db);
    if (rc != KD_OK)
        bench_die("korudelta: kd_close failed: %s (%s)", kd_errname(rc), kd_strerror(rc));
}

/* ------------------------------------------------------------------------
 * Puts
 * ---------------------------------------------------------------------- */

typedef struct put_ctx {
    kd_db *db;
    const put_params *p;
    int thread;
    char *val;           /* value buffer (batch: batch values) */
    char (*keys)[BENCH_KEY_MAX]; /* key buffers (batch: batch keys) */
    char prefix[16];     /* "w<thread>-": each writer has its own keys */
    kd_write *writes;
    /* threaded runs */
    uint64_t ops;
    bench_samples samples;
    uint64_t deadline;
} put_ctx;

static uint64_t value_seq(const put_ctx *c, uint64_t i)
{
    /* distinct across threads: thread t writes n = i * threads + t */
    return i * (uint64_t)c->p->threads + (uint64_t)c->thread;
}

static int put_one(void *vctx, uint64_t i)
{
    put_ctx *c = vctx;
    uint64_t n = value_seq(c, i);
    size_t len = bench_make_value(c->val, c->p->value_size, n);
    bench_make_key(c->keys[0], c->prefix, i, c->p->nkeys);
    kdb_check(c->db, kd_put(c->db, BENCH_NS, c->keys[0], c->val, len, NULL), "kd_put");
    return 0;
}

static int put_batch(void *vctx, uint64_t i)
{
    put_ctx *c = vctx;
    size_t b = c->p->batch;
    for (size_t k = 0; k < b; k++) {
        uint64_t n = i * b + k;
        char *v = c->val + k * c->p->value_size;
        size_t len = bench_make_value(v, c->p->value_size, n);
        bench_make_key(c->keys[k], "", n, c->p->nkeys);
        c->writes[k] = (kd_write){BENCH_NS, c->keys[k], v, len, NULL};
    }
    kdb_check(c->db, kd_put_batch(c->db, c->writes, b, NULL), "kd_put_batch");
    return 0;
}

static void *put_thread(void *arg)
{
    put_ctx *c = arg;
    uint64_t i = 0;
    while (i < c->p->max_ops) {
        uint64_t t0 = bench_now_ns();
        put_one(c, i++);
        uint64_t t1 = bench_now_ns();
        bench_samples_add(&c->samples, t1 - t0);
        if (t1 >= c->deadline)
            break;
    }
    c->ops = i;
    return NULL;
}

void kdside_put(const char *dir, const put_params *p, bench_side *out)
{
    kd_db *db = kdb_open(dir, p->durable ? KD_SYNC_ALWAYS : KD_SYNC_NONE);
    size_t nb = p->batch ? p->batch : 1;
    int nt = p->threads > 0 ? p->threads : 1;
    put_ctx *ctx = calloc((size_t)nt, sizeof *ctx);
    if (!ctx)
        bench_die("out of memory");

    for (int t = 0; t < nt; t++) {
        ctx[t].db = db;
        ctx[t].p = p;
        ctx[t].thread = t;
        snprintf(ctx[t].prefix, sizeof ctx[t].prefix, "w%d-", t);
        ctx[t].val = bench_xmalloc(nb * p->value_size);
        ctx[t].keys = bench_xmalloc(nb * sizeof *ctx[t].keys);
        ctx[t].writes = bench_xmalloc(nb * sizeof *ctx[t].writes);
    }

    if (p->batch) {
        /* max_ops counts values; the loop counts batches. Every batch is slow
         * enough (>= one fsync) to be timed. */
        uint64_t batches = p->max_ops / p->batch;
        bench_run_loop(out, put_batch, &ctx[0], batches ? batches : 1, 0, 1);
        out->ops *= p->batch;
        out->rate *= (double)p->batch;
    } else if (nt == 1) {
        bench_run_loop(out, put_one, &ctx[0], p->max_ops, p->durable ? 0 : (g_cfg.quick ? 500 : 20000), p->durable);
    } else {
        pthread_t *tid = bench_xmalloc((size_t)nt * sizeof *tid);
        uint64_t start = bench_now_ns();
        bench_samples all;
        bench_samples_init(&all, 1000000);
        for (int t = 0; t < nt; t++) {
            bench_samples_init(&ctx[t].samples, 1000000 / (size_t)nt);
            ctx[t].deadline = start + (uint64_t)(g_cfg.seconds * 1e9);
            if (pthread_create(&tid[t], NULL, put_thread, &ctx[t]) != 0)
                bench_die("pthread_create failed");
        }
        uint64_t total = 0;
        for (int t = 0; t < nt; t++) {
            pthread_join(tid[t], NULL);
            total += ctx[t].ops;
            bench_samples_merge(&all, &ctx[t].samples);
            bench_samples_free(&ctx[t].samples);
        }
        uint64_t end = bench_now_ns();
        out->ran = 1;
        out->ops = total;
        out->seconds = (double)(end - start) / 1e9;
        out->rate = (double)total / out->seconds;
        bench_samples_finish(&all, out);
        bench_samples_free(&all);
        free(tid);
    }

    for (int t = 0; t < nt; t++) {
        free(ctx[t].val);
        free(ctx[t].keys);
        free(ctx[t].writes);
    }
    free(ctx);
    kdb_close(db);
}

/* ------------------------------------------------------------------------
 * Reads
 * ---------------------------------------------------------------------- */

typedef struct read_ctx {
    kd_db *db;
    const int64_t *times; /* query times, a power of two of them */
    uint64_t mask;
    uint64_t versions;
    uint64_t sink;
} read_ctx;

/* Fill ns/key with `n` versions of 100-byte values (sync=none, untimed);
 * *ts (if not NULL) receives each version's timestamp. */
static void fill_key(kd_db *db, const char *key, uint64_t n, uint64_t seq0, int64_t *ts)
{
    char val[128];
    kd_version v;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = bench_make_value(val, 100, seq0 + i);
        kdb_check(db, kd_put(db, BENCH_NS, key, val, len, ts ? &v : NULL), "kd_put (setup)");
        if (ts)
            ts[i] = v.timestamp;
    }
}

static void fill_others(kd_db *db, uint64_t nkeys)
{
    char val[128], key[BENCH_KEY_MAX];
    for (uint64_t i = 0; i < nkeys; i++) {
        size_t len = bench_make_value(val, 100, 1000000000ull + i);
        bench_make_key(key, "o", i, 0);
        kdb_check(db, kd_put(db, BENCH_NS, key, val, len, NULL), "kd_put (setup)");
    }
}

static int get_hot_op(void *vctx, uint64_t i)
{
    read_ctx *c = vctx;
    char *json = NULL;
    size_t len = 0;
    (void)i;
    kdb_check(c->db, kd_get(c->db, BENCH_NS, "hot", &json, &len, NULL), "kd_get");
    c->sink += len;
    kd_free(json);
    return 0;
}

void kdside_get_hot(const char *dir, uint64_t other_keys, bench_side *out)
{
    read_ctx c = {0};
    c.db = kdb_open(dir, KD_SYNC_NONE);
    fill_others(c.db, other_keys);
    fill_key(c.db, "hot", 1, 0, NULL);
    bench_run_loop(out, get_hot_op, &c, g_cfg.quick ? 20000 : 20000000, g_cfg.quick ? 2000 : 200000, 0);
    kdb_close(c.db);
}

static int get_at_op(void *vctx, uint64_t i)
{
    read_ctx *c = vctx;
    char *json = NULL;
    size_t len = 0;
    kdb_check(c->db, kd_get_at(c->db, BENCH_NS, "deep", c->times[i & c->mask], &json, &len, NULL), "kd_get_at");
    c->sink += len;
    kd_free(json);
    return 0;
}

void kdside_get_at(const char *dir, uint64_t versions, bench_side *out)
{
    read_ctx c = {0};
    int64_t *ts = bench_xmalloc(versions * sizeof *ts);
    c.db = kdb_open(dir, KD_SYNC_NONE);
    fill_others(c.db, 1000);
    fill_key(c.db, "deep", versions, 0, ts);
    c.times = bench_query_times(ts, versions, 1u << 16);
    c.mask = (1u << 16) - 1;
    bench_run_loop(out, get_at_op, &c, g_cfg.quick ? 20000 : 20000000, g_cfg.quick ? 2000 : 200000, 0);
    kdb_close(c.db);
    free((void *)c.times);
    free(ts);
}

static int history_op(void *vctx, uint64_t i)
{
    read_ctx *c = vctx;
    kd_version *v = NULL;
    size_t n = 0;
    (void)i;
    kdb_check(c->db, kd_history(c->db, BENCH_NS, "deep", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &v, &n), "kd_history");
    if (n != c->versions)
        bench_die("korudelta: kd_history returned %zu versions, expected %" PRIu64, n, c->versions);
    c->sink += (uint64_t)v[n - 1].timestamp;
    kd_free(v);
    return 0;
}

void kdside_history(const char *dir, uint64_t versions, bench_side *out)
{
    read_ctx c = {0};
    c.db = kdb_open(dir, KD_SYNC_NONE);
    c.versions = versions;
    fill_others(c.db, 1000);
    fill_key(c.db, "deep", versions, 0, NULL);
    /* One operation = one scan of `versions` versions. */
    bench_run_loop(out, history_op, &c, g_cfg.quick ? 50 : 100000, g_cfg.quick ? 10 : 200, 0);
    out->ops *= versions;
    out->rate *= (double)versions;
    kdb_close(c.db);
}

/* ------------------------------------------------------------------------
 * Open / recovery
 * ---------------------------------------------------------------------- */

void kdside_open(const char *dir, uint64_t bytes, bench_side *out, bench_result *r)
{
    enum { VALUE = 4096, KEYS = 10000 };
    uint64_t n = bytes / VALUE;
    char *val = bench_xmalloc(VALUE);
    char key[BENCH_KEY_MAX];

    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        size_t len = bench_make_value(val, VALUE, i);
        bench_make_key(key, "", i, KEYS);
        kdb_check(db, kd_put(db, BENCH_NS, key, val, len, NULL), "kd_put (building the log)");
    }
    kdb_close(db);
    double build_s = (double)(bench_now_ns() - t0) / 1e9;
    bench_settle(dir);

    /* This measures replay: without the checkpoint the close wrote. */
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/index.ckpt", dir);
    unlink(ckpt);
    uint64_t log_bytes = bench_du(dir);
    t0 = bench_now_ns();
    db = kdb_open(dir, KD_SYNC_NONE);
    uint64_t t1 = bench_now_ns();
    char *json = NULL;
    size_t len = 0;
    bench_make_key(key, "", n - 1, KEYS);
    kdb_check(db, kd_get(db, BENCH_NS, key, &json, &len, NULL), "kd_get (after open)");
    uint64_t t2 = bench_now_ns();
    kd_free(json);

    kd_stats st;
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    if (st.versions != n)
        bench_die("korudelta: after reopening, %" PRIu64 " versions instead of %" PRIu64, st.versions, n);
    kdb_close(db);

    out->ran = 1;
    out->ops = n;
    out->seconds = (double)(t1 - t0) / 1e9;
    out->rate = (double)log_bytes / 1048576.0 / out->seconds;
    bench_result_extra(r, "korudelta_log_bytes", (double)log_bytes);
    bench_result_extra(r, "korudelta_versions", (double)n);
    bench_result_extra(r, "korudelta_open_ms", out->seconds * 1e3);
    bench_result_extra(r, "korudelta_first_get_us", (double)(t2 - t1) / 1e3);
    bench_result_extra(r, "korudelta_build_mb_per_s", (double)log_bytes / 1048576.0 / build_s);
    free(val);
}

/* ------------------------------------------------------------------------
 * RAM per version
 * ---------------------------------------------------------------------- */

static long rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

void kdside_ram(const char *dir, uint64_t keys, uint64_t versions_per_key, bench_side *out, bench_result *r)
{
    enum { BATCH = 1000, VALUE = 64 };
    char *vals = bench_xmalloc((size_t)BATCH * VALUE);
    char(*keybuf)[BENCH_KEY_MAX] = bench_xmalloc(BATCH * sizeof *keybuf);
    kd_write *w = bench_xmalloc(BATCH * sizeof *w);
    uint64_t total = keys * versions_per_key;

    long rss0 = rss_bytes();
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    uint64_t t0 = bench_now_ns();
    /* Round-robin over the keys, so each key's versions are spread in time. */
    for (uint64_t done = 0; done < total;) {
        size_t b = 0;
        for (; b < BATCH && done < total; b++, done++) {
            char *v = vals + b * VALUE;
            size_t len = bench_make_value(v, VALUE, done);
            bench_make_key(keybuf[b], "", done % keys, 0);
            w[b] = (kd_write){BENCH_NS, keybuf[b], v, len, NULL};
        }
        kdb_check(db, kd_put_batch(db, w, b, NULL), "kd_put_batch (setup)");
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;

    kd_stats st;
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    long rss1 = rss_bytes();
    kdb_close(db);
    if (st.versions != total)
        bench_die("korudelta: stats report %" PRIu64 " versions, expected %" PRIu64, st.versions, total);

    out->ran = 1;
    out->ops = st.versions;
    out->seconds = secs;
    out->rate = (double)st.index_bytes / (double)st.versions;
    bench_result_extra(r, "index_bytes", (double)st.index_bytes);
    bench_result_extra(r, "versions", (double)st.versions);
    bench_result_extra(r, "keys", (double)st.keys);
    bench_result_extra(r, "cache_bytes", (double)st.cache_bytes);
    bench_result_extra(r, "disk_bytes_per_version", (double)st.disk_bytes / (double)st.versions);
    bench_result_extra(r, "rss_growth_bytes_per_version", (double)(rss1 - rss0) / (double)st.versions);
    free(vals);
    free(keybuf);
    free(w);
}

/* ------------------------------------------------------------------------
 * JSON canonicalization
 * ---------------------------------------------------------------------- */

void kdside_json(const char *text, size_t len, bench_side *out)
{
    char err[256];
    uint64_t n = 0, cap = (uint64_t)(g_cfg.seconds * 1e9);
    bench_samples s;
    bench_samples_init(&s, 100000);
    uint64_t start = bench_now_ns(), now = start;
    do {
        char *canon = NULL;
        size_t clen = 0;
        uint64_t t0 = now;
        int rc = kd_json_canonical(text, len, &canon, &clen, err, sizeof err);
        if (rc != KD_OK)
            bench_die("korudelta: kd_json_canonical failed: %s: %s", kd_errname(rc), err);
        kd_free(canon);
        now = bench_now_ns();
        bench_samples_add(&s, now - t0);
        n++;
    } while (now - start < cap);
    out->ran = 1;
    out->ops = n;
    out->seconds = (double)(now - start) / 1e9;
    out->rate = (double)len * (double)n / 1048576.0 / out->seconds;
    bench_samples_finish(&s, out);
    bench_samples_free(&s);
}
