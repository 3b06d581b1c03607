/*
 * workloads_upkeep.c — index checkpoints: how long opening takes with a
 * checkpoint against replaying the whole log, at 1 M and 10 M versions,
 * and what a checkpoint written during writes does to their latency.
 *
 * There is no SQLite side: SQLite's B-tree is its index, so it has nothing
 * to replay; the comparison that matters is with our own full replay.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

enum { KEYS_PER = 10, BATCH = 1000 };

/* n versions: n / 10 keys, 10 versions each, ~100-byte JSON values. */
static void build(const char *dir, uint64_t n)
{
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    uint64_t keys = n / KEYS_PER ? n / KEYS_PER : 1;
    static kd_write w[BATCH];
    static char kb[BATCH][BENCH_KEY_MAX], vb[BATCH][128];
    for (uint64_t i = 0; i < n; i += BATCH) {
        size_t m = n - i < BATCH ? (size_t)(n - i) : BATCH;
        for (size_t j = 0; j < m; j++) {
            uint64_t x = i + j;
            bench_make_key(kb[j], "", x % keys, keys);
            int len = snprintf(vb[j], sizeof vb[j], "{\"n\":%" PRIu64 ",\"name\":\"user %" PRIu64
                               "\",\"tags\":[\"a\",\"b\"],\"score\":%" PRIu64 "}", x, x % keys, x * 7 % 1000);
            w[j] = (kd_write){.ns = BENCH_NS, .key = kb[j], .json = vb[j], .len = (size_t)len};
        }
        kdb_check(db, kd_put_batch(db, w, m, NULL), "kd_put_batch (building the log)");
    }
    kdb_close(db);
}

/* Time kd_open; `want` versions must be there (0: not checked); *st gets
 * the stats right after the open. */
static double open_ms(const char *dir, uint64_t want, kd_stats *st_out)
{
    bench_settle(dir);
    uint64_t t0 = bench_now_ns();
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    uint64_t t1 = bench_now_ns();
    kd_stats st;
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    if (want && st.versions != want)
        bench_die("korudelta: after reopening, %" PRIu64 " versions instead of %" PRIu64, st.versions, want);
    if (st_out)
        *st_out = st;
    kdb_close(db);
    return (double)(t1 - t0) / 1e6;
}

/* ------------------------------------------------------------------------
 * Write latency while checkpoints are written
 * ---------------------------------------------------------------------- */

typedef struct ckpt_loop {
    kd_db *db;
    volatile int stop;
    int written;
} ckpt_loop;

static void *checkpointer(void *arg)
{
    ckpt_loop *c = arg;
    while (!c->stop) {
        kdb_check(c->db, kd_checkpoint(c->db), "kd_checkpoint");
        c->written++;
    }
    return NULL;
}

/* Puts of 100-byte values for `seconds`, every latency sampled. */
static void timed_puts(kd_db *db, double seconds, uint64_t *next, bench_side *side, double *max_ns)
{
    bench_samples s;
    bench_samples_init(&s, 4000000);
    char key[BENCH_KEY_MAX], val[128];
    uint64_t start = bench_now_ns(), end = start + (uint64_t)(seconds * 1e9), n = 0;
    while (bench_now_ns() < end) {
        bench_make_key(key, "lat", *next, 100000);
        size_t len = bench_make_value(val, 100, *next);
        uint64_t t0 = bench_now_ns();
        kdb_check(db, kd_put(db, BENCH_NS, key, val, len, NULL), "kd_put");
        bench_samples_add(&s, bench_now_ns() - t0);
        (*next)++;
        n++;
    }
    side->ran = 1;
    side->ops = n;
    side->seconds = (double)(bench_now_ns() - start) / 1e9;
    bench_samples_finish(&s, side);
    *max_ns = s.n ? (double)s.ns[s.n - 1] : 0; /* sorted by bench_samples_finish */
    side->rate = side->p99_ns;
    bench_samples_free(&s);
}

static void write_latency(const char *dir, uint64_t versions)
{
    bench_result *r = bench_result_new("put_p99_checkpoint", "ns p99");
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    uint64_t next = 0;
    double secs = g_cfg.quick ? 0.5 : 3;
    bench_side quiet = {0};
    double max_quiet, max_busy;
    timed_puts(db, secs, &next, &quiet, &max_quiet);
    ckpt_loop c = {db, 0, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, checkpointer, &c) != 0)
        bench_die("cannot start a thread");
    timed_puts(db, secs, &next, &r->kd, &max_busy);
    c.stop = 1;
    pthread_join(t, NULL);
    kdb_close(db);
    snprintf(r->kd.text, sizeof r->kd.text, "%.1f us p99", r->kd.p99_ns / 1e3);
    r->no_ratio = 1;
    r->target = "p99 <= 5 ms while checkpoints run";
    r->met = r->kd.p99_ns <= 5e6;
    bench_result_extra(r, "p99_ns", r->kd.p99_ns);
    bench_result_extra(r, "p99_ns_without", quiet.p99_ns);
    bench_result_extra(r, "median_ns_without", quiet.median_ns);
    bench_result_extra(r, "checkpoints_written", c.written);
    bench_result_extra(r, "max_ns", max_busy);
    bench_result_extra(r, "max_ns_without", max_quiet);
    snprintf(r->note, sizeof r->note,
             "kd_put sync=none on a %" PRIu64 "-version database while another thread writes checkpoints "
             "back to back (%d in %.1f s); p99 without: %.0f ns; slowest put %.2f ms (without: %.2f ms)",
             versions, c.written, secs, quiet.p99_ns, max_busy / 1e6, max_quiet / 1e6);
}

/* ------------------------------------------------------------------------
 * Open with and without a checkpoint
 * ---------------------------------------------------------------------- */

static void open_checkpoint(const char *name, uint64_t versions, int judged, int latency_too)
{
    char dir[4096], ckpt[4200];
    bench_result *r = bench_result_new(name, "ms");
    if (!(g_cfg.sides & BENCH_SIDE_KD))
        return;
    char leaf[96];
    snprintf(leaf, sizeof leaf, "%s.kd", name);
    bench_path(dir, sizeof dir, leaf);
    bench_rm_rf(dir);
    uint64_t t0 = bench_now_ns();
    build(dir, versions);
    double build_s = (double)(bench_now_ns() - t0) / 1e9;
    uint64_t log_bytes = bench_du(dir);
    snprintf(ckpt, sizeof ckpt, "%s/index.ckpt", dir);

    /* A fresh checkpoint of the whole log, timed (the close above may
     * have written one already: one more write makes it out of date). */
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    kdb_check(db, kd_put(db, BENCH_NS, "one-more", "1", 1, NULL), "kd_put");
    versions++;
    t0 = bench_now_ns();
    kdb_check(db, kd_checkpoint(db), "kd_checkpoint");
    double write_ms = (double)(bench_now_ns() - t0) / 1e6;
    kdb_close(db);
    uint64_t ckpt_bytes = bench_du(ckpt);

    kd_stats cold, hot;
    double with = open_ms(dir, versions, &cold);
    double with2 = open_ms(dir, versions, NULL);
    if (with2 < with)
        with = with2;
    if (latency_too)
        write_latency(dir, versions); /* adds versions: measured after the opens */
    unlink(ckpt);
    double replay = open_ms(dir, latency_too ? 0 : versions, &hot);

    r->kd.ran = 1;
    r->kd.ops = versions;
    r->kd.seconds = with / 1e3;
    r->kd.rate = with;
    r->kd.median_ns = r->kd.p99_ns = -1;
    snprintf(r->kd.text, sizeof r->kd.text, "%.0f ms", with);
    r->no_ratio = 1;
    if (judged) {
        r->target = "<= 2000 ms";
        r->met = with <= 2000;
    } else {
        r->met = -1;
    }
    bench_result_extra(r, "open_ms", with);
    bench_result_extra(r, "versions", (double)versions);
    bench_result_extra(r, "replay_ms", replay);
    bench_result_extra(r, "speedup_vs_replay", replay / with);
    bench_result_extra(r, "log_mb", (double)log_bytes / 1048576.0);
    bench_result_extra(r, "checkpoint_mb", (double)ckpt_bytes / 1048576.0);
    bench_result_extra(r, "checkpoint_write_ms", write_ms);
    bench_result_extra(r, "build_s", build_s);
    /* RAM per version: after opening from the checkpoint, versions of keys
     * not written since are used in place (page cache); after a replay
     * every version is in the index's own memory. */
    bench_result_extra(r, "ram_per_version_cold", (double)cold.index_bytes / (double)cold.versions);
    bench_result_extra(r, "mapped_per_version_cold", (double)cold.index_mapped_bytes / (double)cold.versions);
    bench_result_extra(r, "ram_per_version_replayed", (double)hot.index_bytes / (double)hot.versions);
    snprintf(r->note, sizeof r->note,
             "open (best of 2) with a checkpoint of %" PRIu64 " versions vs %.0f ms replaying the %.0f MB log "
             "(%.1fx); checkpoint %.0f MB written in %.0f ms; page cache warm; index RAM %.1f B/version after "
             "it (+%.1f B mapped), %.1f after a replay",
             versions, replay, (double)log_bytes / 1048576.0, replay / with, (double)ckpt_bytes / 1048576.0,
             write_ms, (double)cold.index_bytes / (double)cold.versions,
             (double)cold.index_mapped_bytes / (double)cold.versions, (double)hot.index_bytes / (double)hot.versions);
    bench_rm_rf(dir);
}

void bench_w_open_checkpoint(void)
{
    const char *env = getenv("KD_BENCH_CKPT_VERSIONS");
    uint64_t big = env ? strtoull(env, NULL, 10) : (g_cfg.quick ? 200000 : 10000000);
    open_checkpoint("open_checkpoint_1M", g_cfg.quick ? 100000 : 1000000, 0, 0);
    open_checkpoint("open_checkpoint_10M", big, 1, 1);
}

/* ------------------------------------------------------------------------
 * Retention: one compaction of a history where a policy drops 9 versions
 * in 10, and what it does to the latency of writes meanwhile
 * ---------------------------------------------------------------------- */

typedef struct compact_run {
    kd_db *db;
    kd_compact_report rep;
    double ms;
    volatile int done;
} compact_run;

static void *compactor(void *arg)
{
    compact_run *c = arg;
    uint64_t t0 = bench_now_ns();
    kdb_check(c->db, kd_compact(c->db, 0, &c->rep), "kd_compact");
    c->ms = (double)(bench_now_ns() - t0) / 1e6;
    c->done = 1;
    return NULL;
}

/* A compaction on its own: how long, and the log size before and after
 * (kd_stats: segment bytes, the checkpoint not counted). */
static void compact_alone(const char *dir, compact_run *c, uint64_t *before, uint64_t *after)
{
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    kdb_check(db, kd_retention_set(db, BENCH_NS, "{\"keep_last\":1}", 15), "kd_retention_set");
    kd_stats st;
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    *before = st.disk_bytes;
    c->db = db;
    compactor(c);
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    *after = st.disk_bytes;
    kd_verify_report vr;
    kdb_check(db, kd_verify(db, &vr), "kd_verify after compaction");
    kdb_close(db);
}

/* Write latency alone, then while one compaction runs. */
static void compact_latency(const char *dir, bench_side *quiet, bench_side *busy, double *max_quiet,
                            double *max_busy, double secs)
{
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    kdb_check(db, kd_retention_set(db, BENCH_NS, "{\"keep_last\":1}", 15), "kd_retention_set");
    uint64_t next = 0;
    timed_puts(db, secs, &next, quiet, max_quiet);
    compact_run c = {db, {0}, 0, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, compactor, &c) != 0)
        bench_die("cannot start a thread");
    timed_puts(db, secs, &next, busy, max_busy);
    pthread_join(t, NULL);
    kdb_close(db);
}

void bench_w_compact(void)
{
    bench_result *r = bench_result_new("compact", "MB/s");
    if (!(g_cfg.sides & BENCH_SIDE_KD))
        return;
    uint64_t versions = g_cfg.quick ? 200000 : 2000000;
    char dir[4096];
    double secs = g_cfg.quick ? 0.5 : 3;
    bench_path(dir, sizeof dir, "compact.kd");
    bench_rm_rf(dir);
    build(dir, versions);
    bench_side quiet = {0}, busy = {0};
    double max_quiet, max_busy;
    compact_latency(dir, &quiet, &busy, &max_quiet, &max_busy, secs);
    bench_rm_rf(dir);
    build(dir, versions);
    compact_run c = {0};
    uint64_t before, after;
    compact_alone(dir, &c, &before, &after);
    bench_rm_rf(dir);
    double mb = (double)before / 1048576.0;
    r->kd.ran = 1;
    r->kd.ops = c.rep.versions_pruned;
    r->kd.seconds = c.ms / 1e3;
    r->kd.rate = mb / (c.ms / 1e3);
    r->kd.median_ns = r->kd.p99_ns = -1;
    snprintf(r->kd.text, sizeof r->kd.text, "%.0f MB/s", r->kd.rate);
    r->no_ratio = 1;
    r->target = "write p99 <= 5 ms while a compaction runs";
    r->met = busy.p99_ns <= 5e6;
    bench_result_extra(r, "compact_ms", c.ms);
    bench_result_extra(r, "versions_pruned", (double)c.rep.versions_pruned);
    bench_result_extra(r, "log_mb_before", mb);
    bench_result_extra(r, "log_mb_after", (double)after / 1048576.0);
    bench_result_extra(r, "put_p99_ns", busy.p99_ns);
    bench_result_extra(r, "put_p99_ns_without", quiet.p99_ns);
    bench_result_extra(r, "put_max_ns", max_busy);
    bench_result_extra(r, "put_max_ns_without", max_quiet);
    snprintf(r->note, sizeof r->note,
             "%" PRIu64 " versions (10 per key, ~100-byte values), keep_last 1: pruned %" PRIu64 " in %.0f ms, "
             "log %.0f MB -> %.0f MB; kd_put sync=none p99 %.1f us while one ran (%.1f s window), %.1f us without; "
             "slowest put %.2f ms (without %.2f ms)",
             versions, c.rep.versions_pruned, c.ms, mb, (double)after / 1048576.0, busy.p99_ns / 1e3, secs,
             quiet.p99_ns / 1e3, max_busy / 1e6, max_quiet / 1e6);
}

/* ------------------------------------------------------------------------
 * Consolidation: write latency while sealed segments are compressed
 * ---------------------------------------------------------------------- */

typedef struct consolidate_run {
    kd_db *db;
    kd_consolidate_report rep;
    double ms;
} consolidate_run;

static void *consolidator(void *arg)
{
    consolidate_run *c = arg;
    uint64_t t0 = bench_now_ns();
    kdb_check(c->db, kd_consolidate(c->db, 0, &c->rep), "kd_consolidate");
    c->ms = (double)(bench_now_ns() - t0) / 1e6;
    return NULL;
}

void bench_w_put_p99_consolidate(void)
{
    bench_result *r = bench_result_new("put_p99_consolidate", "ns p99");
    if (!(g_cfg.sides & BENCH_SIDE_KD))
        return;
    uint64_t versions = g_cfg.quick ? 200000 : 2000000;
    double secs = g_cfg.quick ? 0.5 : 3;
    char dir[4096];
    bench_path(dir, sizeof dir, "consolidate_p99.kd");
    bench_rm_rf(dir);
    build(dir, versions);
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    kd_stats st;
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    uint64_t before = st.disk_bytes, next = 0;
    bench_side quiet = {0};
    double max_quiet, max_busy;
    timed_puts(db, secs, &next, &quiet, &max_quiet);
    consolidate_run c = {db, {0}, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, consolidator, &c) != 0)
        bench_die("cannot start a thread");
    timed_puts(db, secs, &next, &r->kd, &max_busy);
    pthread_join(t, NULL);
    kdb_close(db);
    bench_rm_rf(dir);
    snprintf(r->kd.text, sizeof r->kd.text, "%.1f us p99", r->kd.p99_ns / 1e3);
    r->no_ratio = 1;
    r->target = "p99 <= 5 ms while a consolidation runs";
    r->met = r->kd.p99_ns <= 5e6;
    double mb = (double)before / 1048576.0;
    bench_result_extra(r, "p99_ns", r->kd.p99_ns);
    bench_result_extra(r, "p99_ns_without", quiet.p99_ns);
    bench_result_extra(r, "max_ns", max_busy);
    bench_result_extra(r, "max_ns_without", max_quiet);
    bench_result_extra(r, "consolidate_ms", c.ms);
    bench_result_extra(r, "consolidate_mb_per_s", mb / (c.ms / 1e3));
    bench_result_extra(r, "log_mb_before", mb);
    bench_result_extra(r, "values_compressed", (double)c.rep.values_compressed);
    bench_result_extra(r, "value_ratio", c.rep.value_bytes_after ? (double)c.rep.value_bytes_before /
                                                                    (double)c.rep.value_bytes_after : 0);
    snprintf(r->note, sizeof r->note,
             "kd_put sync=none while kd_consolidate compresses %" PRIu64 " segments (%.0f MB of %" PRIu64
             " versions, ~100-byte values) in %.0f ms; p99 without %.1f us; slowest put %.2f ms (without %.2f ms)",
             c.rep.segments, mb, versions, c.ms, quiet.p99_ns / 1e3, max_busy / 1e6, max_quiet / 1e6);
}
