/*
 * workloads.c — the list of workloads kd_bench runs, their sizes, and the
 * targets of issue 2 they are judged against. Each workload runs the
 * KoruDelta side, then the SQLite side, each in its own files under the
 * temporary directory, removed as soon as the side is done.
 *
 * Order: fsync_floor runs right before the durable puts it is compared with,
 * so that both see the disk in the same state, and the durable workloads
 * take turns for DISK_ROUNDS rounds.
 *
 * Sizes: the default run takes a few minutes on two cores (every timed phase
 * is capped at g_cfg.seconds per side); --quick shrinks everything to check
 * that the benchmark works.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* ------------------------------------------------------------------------
 * Paths
 * ---------------------------------------------------------------------- */

static void kd_dir(char *buf, size_t len, const char *name)
{
    char leaf[96];
    snprintf(leaf, sizeof leaf, "%s.kd", name);
    bench_path(buf, len, leaf);
    bench_rm_rf(buf);
}

static void sq_file(char *buf, size_t len, const char *name)
{
    char leaf[96];
    snprintf(leaf, sizeof leaf, "%s.sqlite", name);
    bench_path(buf, len, leaf);
}

static void sq_remove(const char *file)
{
    char p[4200];
    bench_rm_rf(file);
    snprintf(p, sizeof p, "%s-wal", file);
    bench_rm_rf(p);
    snprintf(p, sizeof p, "%s-shm", file);
    bench_rm_rf(p);
    snprintf(p, sizeof p, "%s-journal", file);
    bench_rm_rf(p);
}

static uint64_t q(uint64_t full, uint64_t quick)
{
    return g_cfg.quick ? quick : full;
}

/* ------------------------------------------------------------------------
 * Puts
 * ---------------------------------------------------------------------- */

static bench_result *run_put(const char *name, const put_params *p)
{
    char dir[4096], file[4096];
    bench_result *r = bench_result_new(name, "ops/s");
    if (p->batch)
        r->unit = "values/s";
    if (g_cfg.sides & BENCH_SIDE_KD) {
        kd_dir(dir, sizeof dir, name);
        kdside_put(dir, p, &r->kd);
        bench_rm_rf(dir);
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        sq_file(file, sizeof file, name);
        sq_remove(file);
        sqside_put(file, p, &r->sq);
        sq_remove(file);
    }
    return r;
}

static void w_put_none_100B(void)
{
    put_params p = {100, 10000, q(300000, 2000), 1, 0, 0};
    bench_result *r = run_put("put_none_100B", &p);
    r->target = ">= 500k/s, >= 5x";
    double ratio = bench_ratio(r);
    r->met = ratio < 0 ? -1 : r->kd.rate >= 500000 && ratio >= 5;
}

static void w_put_none_4KB(void)
{
    put_params p = {4096, 10000, q(100000, 500), 1, 0, 0};
    run_put("put_none_4KB", &p);
}

static void w_put_always_1w(void)
{
    put_params p = {100, 1000, q(1000000, 50), 1, 1, 0};
    bench_result *r = run_put("put_always_1w", &p);
    r->target = ">= 90% fsync floor"; /* judged in bench_finalize */
}

static void w_put_always_8w(void)
{
    put_params p = {100, 1000, q(1000000, 50), 8, 1, 0};
    bench_result *r = run_put("put_always_8w", &p);
    r->target = ">= 5x put_always_1w"; /* judged in bench_finalize */
}

static void w_batch_1000(void)
{
    put_params p = {100, 10000, q(20000000, 5000), 1, 1, 1000};
    bench_result *r = run_put("batch_1000", &p);
    r->target = ">= 300k values/s";
    r->met = r->kd.rate >= 300000;
    snprintf(r->note, sizeof r->note, "latency figures are per batch of 1000");
}

/* ------------------------------------------------------------------------
 * Reads
 * ---------------------------------------------------------------------- */

static void w_get_hot(void)
{
    char dir[4096], file[4096];
    bench_result *r = bench_result_new("get_hot", "ops/s");
    uint64_t others = q(10000, 100);
    if (g_cfg.sides & BENCH_SIDE_KD) {
        kd_dir(dir, sizeof dir, r->name);
        kdside_get_hot(dir, others, &r->kd);
        bench_rm_rf(dir);
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        sq_file(file, sizeof file, r->name);
        sq_remove(file);
        sqside_get_hot(file, others, &r->sq);
        sq_remove(file);
    }
    r->target = "median <= 200 ns, >= 10x";
    r->met = bench_ratio(r) < 0 ? -1 : r->kd.median_ns >= 0 && r->kd.median_ns <= 200 && bench_ratio(r) >= 10;
}

static void w_get_at_10k(void)
{
    char dir[4096], file[4096];
    bench_result *r = bench_result_new("get_at_10k", "ops/s");
    uint64_t versions = q(10000, 1000);
    if (g_cfg.sides & BENCH_SIDE_KD) {
        kd_dir(dir, sizeof dir, r->name);
        kdside_get_at(dir, versions, &r->kd);
        bench_rm_rf(dir);
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        sq_file(file, sizeof file, r->name);
        sq_remove(file);
        sqside_get_at(file, versions, &r->sq);
        sq_remove(file);
    }
    r->target = "median <= 500 ns";
    r->met = r->kd.median_ns >= 0 && r->kd.median_ns <= 500;
}

static void w_history_scan(void)
{
    char dir[4096], file[4096];
    bench_result *r = bench_result_new("history_scan", "versions/s");
    uint64_t versions = q(10000, 1000);
    if (g_cfg.sides & BENCH_SIDE_KD) {
        kd_dir(dir, sizeof dir, r->name);
        kdside_history(dir, versions, &r->kd);
        bench_rm_rf(dir);
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        sq_file(file, sizeof file, r->name);
        sq_remove(file);
        sqside_history(file, versions, &r->sq);
        sq_remove(file);
    }
    r->target = ">= 10M versions/s";
    r->met = r->kd.rate >= 10e6;
    snprintf(r->note, sizeof r->note, "one key with %llu versions; latency figures are per full scan",
             (unsigned long long)versions);
}

/* ------------------------------------------------------------------------
 * Open / recovery
 * ---------------------------------------------------------------------- */

static void w_open_recovery(void)
{
    char dir[4096], file[4096];
    bench_result *r = bench_result_new("open_recovery", "MB/s");
    uint64_t bytes = (uint64_t)g_cfg.open_mb << 20;
    if (g_cfg.sides & BENCH_SIDE_KD) {
        kd_dir(dir, sizeof dir, r->name);
        kdside_open(dir, bytes, &r->kd, r);
        bench_rm_rf(dir);
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        sq_file(file, sizeof file, r->name);
        sq_remove(file);
        sqside_open(file, bytes, &r->sq, r);
        sq_remove(file);
    }
    r->no_ratio = 1;
    r->target = ">= 300 MB/s replayed";
    r->met = r->kd.rate >= 300;
    if (r->sq.ran)
        snprintf(r->sq.text, sizeof r->sq.text, "%.1f ms open+q", r->sq.seconds * 1e3);
    snprintf(r->note, sizeof r->note,
             "%zu MB log, page cache %s; SQLite replays nothing on open (its B-tree is the index): "
             "open + first query shown, no ratio",
             g_cfg.open_mb, g_cfg.cold ? "dropped" : "warm");
}

/* ------------------------------------------------------------------------
 * fsync floor
 * ---------------------------------------------------------------------- */

static const char *const floor_names[3] = {"append", "prealloc", "overwrite"};

static void w_fsync_floor(void)
{
    char file[4096], key[64];
    bench_side floor_modes[3];
    int floor_best = -1; /* the faster of append and prealloc */
    bench_path(file, sizeof file, "fsync_floor.dat");
    /* Each mode gets a third of the usual time: three loops, one figure. */
    double saved = g_cfg.seconds;
    g_cfg.seconds = saved / 3 > 0.1 ? saved / 3 : 0.1;
    for (int m = 0; m < 3; m++) {
        sysside_fsync_floor(file, (bench_fsync_mode)m, &floor_modes[m]);
        bench_rm_rf(file);
        /* Overwriting one block is no way to write a log: informative only. */
        if (m != BENCH_FSYNC_OVERWRITE && (floor_best < 0 || floor_modes[m].rate > floor_modes[floor_best].rate))
            floor_best = m;
    }
    g_cfg.seconds = saved;
    /* The floor itself is the row's first extra figure (bench_finalize and
     * --repeat rely on it); the row's two columns are filled in by
     * bench_finalize, once the durable put figures are known. */
    bench_result *r = bench_result_new("fsync_floor", "% of floor");
    r->no_ratio = 1;
    r->target = ">= 90% (put_always_1w)";
    bench_result_extra(r, "floor_ops_per_s", floor_modes[floor_best].rate);
    bench_result_extra(r, "floor_median_ns", floor_modes[floor_best].median_ns);
    bench_result_extra(r, "floor_p99_ns", floor_modes[floor_best].p99_ns);
    for (int m = 0; m < 3; m++) {
        snprintf(key, sizeof key, "floor_%s_ops_per_s", floor_names[m]);
        bench_result_extra(r, key, floor_modes[m].rate);
        snprintf(key, sizeof key, "floor_%s_median_ns", floor_names[m]);
        bench_result_extra(r, key, floor_modes[m].median_ns);
    }
}

void bench_finalize(void)
{
    bench_result *f = bench_result_find("fsync_floor");
    bench_result *w1 = bench_result_find("put_always_1w");
    bench_result *w8 = bench_result_find("put_always_8w");

    double floor_rate = f ? bench_extra_get(f, "floor_ops_per_s") : 0;
    if (f) {
        snprintf(f->note, sizeof f->note,
                 "floor = %.0f durable 128 B writes/s (write + fdatasync, best of append %.0f and prealloc %.0f; "
                 "overwriting one block: %.0f). Columns: put_always_1w as a share of the floor",
                 floor_rate, bench_extra_get(f, "floor_append_ops_per_s"),
                 bench_extra_get(f, "floor_prealloc_ops_per_s"), bench_extra_get(f, "floor_overwrite_ops_per_s"));
        if (w1 && floor_rate > 0) {
            f->kd = w1->kd;
            f->kd.rate = 100.0 * w1->kd.rate / floor_rate;
            f->kd.median_ns = f->kd.p99_ns = -1;
            f->sq = w1->sq;
            f->sq.rate = 100.0 * w1->sq.rate / floor_rate;
            f->sq.median_ns = f->sq.p99_ns = -1;
            f->met = f->kd.rate >= 90;
        }
    }
    if (w1 && f && floor_rate > 0) {
        double share = w1->kd.rate / floor_rate;
        bench_result_extra(w1, "share_of_fsync_floor", share);
        bench_result_extra(w1, "sqlite_share_of_fsync_floor", w1->sq.rate / floor_rate);
        w1->met = share >= 0.90;
    }
    if (w8 && w1 && w1->kd.rate > 0) {
        double x = w8->kd.rate / w1->kd.rate;
        bench_result_extra(w8, "over_1w", x);
        if (w1->sq.rate > 0)
            bench_result_extra(w8, "sqlite_over_1w", w8->sq.rate / w1->sq.rate);
        w8->met = x >= 5;
        snprintf(w8->note, sizeof w8->note, "8 writers / 1 writer: korudelta %.1fx, sqlite %.1fx", x,
                 w1->sq.rate > 0 ? w8->sq.rate / w1->sq.rate : 0.0);
    }
    /* Targets are about KoruDelta: without its figure there is no verdict. */
    for (size_t i = 0; i < bench_result_count(); i++) {
        bench_result *r = bench_result_at(i);
        if (!r->kd.ran)
            r->met = -1;
    }
}

/* ------------------------------------------------------------------------
 * JSON and RAM
 * ---------------------------------------------------------------------- */

static void json_file(const char *result, const char *leaf, int judged)
{
    char path[4096];
    size_t len = 0;
    char *text = NULL;
    if (g_cfg.data_dir) {
        snprintf(path, sizeof path, "%s/json-corpus/%s", g_cfg.data_dir, leaf);
        text = bench_read_file(path, &len);
    }
    bench_result *r = bench_result_new(result, "MB/s");
    if (!text) {
        snprintf(r->note, sizeof r->note, "skipped: json-corpus/%s not found (set KORU_SHARED_DATA)", leaf);
        fprintf(stderr, "kd_bench: %s\n", r->note);
        return;
    }
    if (g_cfg.sides & BENCH_SIDE_KD)
        kdside_json(text, len, &r->kd);
    if (g_cfg.sides & BENCH_SIDE_SQLITE)
        sqside_json(text, len, &r->sq);
    /* Throughput at the median document time: less sensitive to other
     * processes taking the CPU than the mean over the whole phase. */
    if (r->kd.median_ns > 0)
        bench_result_extra(r, "korudelta_mb_per_s_at_median", (double)len / 1048576.0 / (r->kd.median_ns / 1e9));
    if (r->sq.median_ns > 0)
        bench_result_extra(r, "sqlite_mb_per_s_at_median", (double)len / 1048576.0 / (r->sq.median_ns / 1e9));
    if (judged) {
        r->target = ">= 300 MB/s";
        r->met = r->kd.rate >= 300;
    }
    snprintf(r->note, sizeof r->note,
             "%s, %zu bytes; korudelta parses + canonicalizes (sorted members), sqlite json() parses + minifies; "
             "latency per document",
             leaf, len);
    free(text);
}

static void w_json_canonicalize(void)
{
    json_file("json_canonicalize_twitter", "twitter.json", 1);
    json_file("json_canonicalize_citm", "citm_catalog.json", 0);
}

static void w_ram_per_version(void)
{
    char dir[4096];
    bench_result *r = bench_result_new("ram_per_version", "B/version");
    uint64_t keys = q(100000, 2000), per = q(10, 5);
    if (g_cfg.sides & BENCH_SIDE_KD) {
        kd_dir(dir, sizeof dir, r->name);
        kdside_ram(dir, keys, per, &r->kd, r);
        bench_rm_rf(dir);
    }
    r->no_ratio = 1;
    r->target = "<= 120 B/version";
    r->met = r->kd.rate <= 120;
    snprintf(r->note, sizeof r->note, "index_bytes / versions from kd_stats after %llu keys x %llu versions",
             (unsigned long long)keys, (unsigned long long)per);
}

/* ------------------------------------------------------------------------
 * The list
 * ---------------------------------------------------------------------- */

/* The fsync floor and the durable puts run in three rounds (floor, 1w,
 * 8w, batch, floor, 1w, ...; medians kept): this disk's fsync rate drifts
 * by a fifth between runs seconds apart, which alone moved put_always_1w's
 * share of the floor from 84 % to 98 %, and batch_1000 from 278k to 401k
 * values/s. */
#define DISK_ROUNDS 3

const bench_workload bench_workloads[] = {
    {"put_none_100B", "put, sync=none, 100-byte values, 1 thread", w_put_none_100B, 1},
    {"put_none_4KB", "put, sync=none, 4 KB values, 1 thread", w_put_none_4KB, 1},
    {"fsync_floor", "write(128 B) + fdatasync loop; durable puts as a share of it", w_fsync_floor, DISK_ROUNDS},
    {"put_always_1w", "put, sync=always, 1 writer", w_put_always_1w, DISK_ROUNDS},
    {"put_always_8w", "put, sync=always, 8 writers on distinct keys", w_put_always_8w, DISK_ROUNDS},
    {"batch_1000", "put_batch of 1000 values, sync=always", w_batch_1000, DISK_ROUNDS},
    {"get_hot", "get of one hot key", w_get_hot, 1},
    {"get_at_10k", "get_at at random times on a key with 10,000 versions", w_get_at_10k, 1},
    {"history_scan", "full history of a key with 10,000 versions", w_history_scan, 1},
    {"open_recovery", "open of a ~1 GB log (KD_BENCH_OPEN_MB), replayed whole", w_open_recovery, 1},
    {"open_checkpoint", "open of 1 M and 10 M versions with a checkpoint (KD_BENCH_CKPT_VERSIONS)",
     bench_w_open_checkpoint, 1},
    {"auth_verify", "cost of an identity check, a capability verify, a login signature, a token hash",
     bench_w_auth_verify, 1},
    {"compact", "one compaction (keep_last 1 over 2 M versions) and write p99 meanwhile", bench_w_compact, 1},
    {"consolidate", "compression ratio of consolidation on json-corpus records, and uncached get plain vs compressed",
     bench_w_consolidate, 1},
    {"put_p99_consolidate", "put p99 while kd_consolidate compresses a 2 M-version log", bench_w_put_p99_consolidate, 1},
    {"json_canonicalize", "kd_json_canonical on twitter.json and citm_catalog.json", w_json_canonicalize, 1},
    {"ram_per_version", "index bytes per version (kd_stats)", w_ram_per_version, 1},
    {"memory_tiers", "RAM per version and get latency, hot (cached) against cold (mapped, not cached)",
     bench_w_memory_tiers, 1},
    {"import_ndjson", "kdelta import of 1,000,000 small docs (NDJSON), sync=always", bench_w_import_ndjson, 1},
    {"export_ndjson", "kdelta export of 1,000,000 docs to NDJSON", bench_w_export_ndjson, 1},
    {"backup", "kd_backup of 1,000,000 small docs into one file (KD_BENCH_BACKUP_DOCS)", bench_w_backup, 1},
    {"restore", "kd_restore of that backup into a new database", bench_w_restore, 1},
};
const size_t bench_nworkloads = sizeof bench_workloads / sizeof bench_workloads[0];
