/*
 * workloads_memory.c — the memory tiers (issue 7): RAM per version for hot
 * data (version arrays written since open, on the heap) and cold data
 * (used in place from the index checkpoint's mapping after a reopen), and
 * read latency of hot values (in the value cache) against cold ones (not
 * cached, and dropped from the page cache with posix_fadvise(DONTNEED)
 * before each read; the share of reads that really went to the disk is
 * counted with getrusage's blocks read).
 *
 * No SQLite side: these are figures of KoruDelta's own tiers.
 */
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

enum { PER_KEY = 10, BATCH = 1000 };

static kd_db *open_with(const char *dir, int cache_off, uint64_t budget)
{
    kd_options *o = kd_options_new();
    char err[512] = "";
    kd_db *db = NULL;
    if (!o)
        bench_die("korudelta: kd_options_new: out of memory");
    kdb_check(NULL, kd_options_set_sync(o, KD_SYNC_NONE, 100), "kd_options_set_sync");
    if (cache_off)
        kdb_check(NULL, kd_options_set_cache_size(o, 0), "kd_options_set_cache_size");
    if (budget)
        kdb_check(NULL, kd_options_set_max_memory(o, budget), "kd_options_set_max_memory");
    int rc = kd_open(dir, o, &db, err, sizeof err);
    kd_options_free(o);
    if (rc != KD_OK)
        bench_die("korudelta: kd_open(%s) failed: %s: %s", dir, kd_errname(rc), err);
    return db;
}

/* Drop the log's and the checkpoint's pages from the page cache (pages a
 * process has mapped stay). */
static void drop_cache(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4400];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
    }
    closedir(d);
}

/* Blocks read from storage by this process (pread and page faults alike). */
static long blocks_in(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_inblock;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void finish(bench_side *s, uint64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, cmp_u64);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ns[i];
    s->ran = 1;
    s->ops = n;
    s->samples = n;
    s->seconds = (double)total / 1e9;
    s->rate = total ? (double)n / ((double)total / 1e9) : 0;
    s->median_ns = (double)ns[n / 2];
    s->p99_ns = (double)ns[(n * 99) / 100];
}

void bench_w_memory_tiers(void)
{
    char dir[4096];
    bench_path(dir, sizeof dir, "memory_tiers");
    bench_rm_rf(dir);
    uint64_t n = g_cfg.quick ? 100000 : 1000000, keys = n / PER_KEY;
    bench_result *ram = bench_result_new("ram_hot_cold", "B/version");
    bench_result *hot = bench_result_new("get_hot_cached", "ops/s");
    bench_result *cold = bench_result_new("get_cold_uncached", "ops/s");
    ram->no_ratio = hot->no_ratio = cold->no_ratio = 1;
    if (!(g_cfg.sides & BENCH_SIDE_KD))
        return;

    /* Build: keys x 10 versions, ~100-byte values, written since open: hot. */
    kd_db *db = open_with(dir, 0, 0);
    static kd_write w[BATCH];
    static char kb[BATCH][BENCH_KEY_MAX], vb[BATCH][128];
    for (uint64_t i = 0; i < n; i += BATCH) {
        size_t m = n - i < BATCH ? (size_t)(n - i) : BATCH;
        for (size_t j = 0; j < m; j++) {
            uint64_t x = i + j;
            bench_make_key(kb[j], "", x % keys, keys);
            bench_make_value(vb[j], 100, x);
            w[j] = (kd_write){.ns = BENCH_NS, .key = kb[j], .json = vb[j], .len = 100};
        }
        kdb_check(db, kd_put_batch(db, w, m, NULL), "kd_put_batch");
    }
    kd_stats st;
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    double hot_b = (double)st.index_bytes / (double)st.versions;
    kdb_check(db, kd_checkpoint(db), "kd_checkpoint");
    kdb_close(db);

    /* Reopen: the versions of every key are used in place from the
     * checkpoint (cold); what stays in RAM is keys and the value table. */
    db = open_with(dir, 1, 0);
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    double cold_b = (double)st.index_bytes / (double)st.versions;
    double mapped_b = (double)st.index_mapped_bytes / (double)st.versions;
    ram->kd.ran = 1;
    ram->kd.rate = hot_b;
    ram->kd.ops = st.versions;
    bench_result_extra(ram, "hot_bytes_per_version", hot_b);
    bench_result_extra(ram, "cold_bytes_per_version", cold_b);
    bench_result_extra(ram, "hot_mib_per_million_versions", hot_b * 1e6 / 1048576.0);
    bench_result_extra(ram, "cold_mib_per_million_versions", cold_b * 1e6 / 1048576.0);
    bench_result_extra(ram, "cold_mapped_bytes_per_version", mapped_b);
    bench_result_extra(ram, "versions", (double)st.versions);
    bench_result_extra(ram, "keys", (double)keys);
    snprintf(ram->note, sizeof ram->note,
             "index_bytes/versions: hot %.1f (written since open), cold %.1f (after reopening from the checkpoint; "
             "+%.1f mapped)",
             hot_b, cold_b, mapped_b);

    /* Cold reads: a cache of 0, and before each read the log's pages leave
     * the page cache. Random (key, version) pairs over the whole log. */
    size_t samples = g_cfg.quick ? 200 : 2000;
    uint64_t *ns = bench_xmalloc(samples * sizeof *ns), seed = 42;
    long majflt = 0;
    for (size_t s = 0; s < samples; s++) {
        uint64_t k = bench_rand(&seed) % keys;
        char key[BENCH_KEY_MAX];
        bench_make_key(key, "", k, keys);
        kd_version *h = NULL;
        size_t nh = 0;
        kdb_check(db, kd_history(db, BENCH_NS, key, INT64_MIN, INT64_MAX, 0, 0, &h, &nh), "kd_history");
        int64_t at = h[bench_rand(&seed) % nh].timestamp;
        kd_free(h);
        drop_cache(dir);
        char *v = NULL;
        long f0 = blocks_in();
        uint64_t t0 = bench_now_ns();
        kdb_check(db, kd_get_at(db, BENCH_NS, key, at, &v, NULL, NULL), "kd_get_at");
        ns[s] = bench_now_ns() - t0;
        majflt += blocks_in() - f0 > 0;
        kd_free(v);
    }
    finish(&cold->kd, ns, samples);
    bench_result_extra(cold, "reads_from_disk_share", (double)majflt / (double)samples);
    snprintf(cold->note, sizeof cold->note,
             "kd_get_at of random versions, cache 0, page cache dropped (fadvise DONTNEED) before each: %.0f%% "
             "read from storage",
             100.0 * (double)majflt / (double)samples);
    kdb_close(db);

    /* Hot reads: 1000 keys read once into the cache, then read again. */
    db = open_with(dir, 0, 0);
    size_t hot_keys = 1000;
    for (size_t pass = 0; pass < 2; pass++)
        for (size_t s = 0; s < (pass ? samples : hot_keys); s++) {
            char key[BENCH_KEY_MAX], *v = NULL;
            bench_make_key(key, "", (s % hot_keys) * (keys / hot_keys), keys);
            uint64_t t0 = bench_now_ns();
            kdb_check(db, kd_get(db, BENCH_NS, key, &v, NULL, NULL), "kd_get");
            if (pass)
                ns[s] = bench_now_ns() - t0;
            kd_free(v);
        }
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    finish(&hot->kd, ns, samples);
    bench_result_extra(hot, "cache_hits", (double)st.cache_hits);
    bench_result_extra(hot, "cache_misses", (double)st.cache_misses);
    snprintf(hot->note, sizeof hot->note, "kd_get of 1000 keys already read once (in the value cache)");
    kdb_close(db);

    /* What dropping mapped log pages costs reads: not cached, the log in
     * the page cache, with budgets of 8 MiB and 64 MiB (pages dropped
     * every 256 KiB or 2 MiB counted; a read counts 128 KiB) against 1 TiB
     * (never dropped). */
    const uint64_t budgets[3] = {8ull << 20, 64ull << 20, 1ull << 40};
    bench_result *warm[3] = {bench_result_new("get_warm_budget_8M", "ops/s"),
                             bench_result_new("get_warm_budget_64M", "ops/s"),
                             bench_result_new("get_warm_budget_1T", "ops/s")};
    for (int b = 0; b < 3; b++) {
        warm[b]->no_ratio = 1;
        db = open_with(dir, 1, budgets[b]);
        seed = 7;
        for (size_t pass = 0; pass < 2; pass++) /* the first pass brings the pages in */
            for (size_t s = 0; s < samples * 10; s++) {
                char key[BENCH_KEY_MAX], *v = NULL;
                bench_make_key(key, "", bench_rand(&seed) % keys, keys);
                uint64_t t0 = bench_now_ns();
                kdb_check(db, kd_get(db, BENCH_NS, key, &v, NULL, NULL), "kd_get");
                if (pass && s < samples)
                    ns[s] = bench_now_ns() - t0;
                kd_free(v);
            }
        kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
        finish(&warm[b]->kd, ns, samples);
        bench_result_extra(warm[b], "log_trims", (double)st.log_trims);
        snprintf(warm[b]->note, sizeof warm[b]->note,
                 "kd_get of random keys, cache 0, log in the page cache; %llu drops of mapped log pages",
                 (unsigned long long)st.log_trims);
        kdb_close(db);
    }
    free(ns);
    bench_rm_rf(dir);
}
