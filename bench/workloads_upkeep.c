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

/* Time kd_open; `want` versions must be there (0: not checked). */
static double open_ms(const char *dir, uint64_t want)
{
    bench_settle(dir);
    uint64_t t0 = bench_now_ns();
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    uint64_t t1 = bench_now_ns();
    kd_stats st;
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    if (want && st.versions != want)
        bench_die("korudelta: after reopening, %" PRIu64 " versions instead of %" PRIu64, st.versions, want);
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
static void timed_puts(kd_db *db, double seconds, uint64_t *next, bench_side *side)
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
    timed_puts(db, secs, &next, &quiet);
    ckpt_loop c = {db, 0, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, checkpointer, &c) != 0)
        bench_die("cannot start a thread");
    timed_puts(db, secs, &next, &r->kd);
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
    snprintf(r->note, sizeof r->note,
             "kd_put sync=none on a %" PRIu64 "-version database while another thread writes checkpoints "
             "back to back (%d in %.1f s); p99 without: %.0f ns",
             versions, c.written, secs, quiet.p99_ns);
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

    /* A fresh checkpoint of the whole log, timed. */
    kd_db *db = kdb_open(dir, KD_SYNC_NONE);
    t0 = bench_now_ns();
    kdb_check(db, kd_checkpoint(db), "kd_checkpoint");
    double write_ms = (double)(bench_now_ns() - t0) / 1e6;
    kdb_close(db);
    uint64_t ckpt_bytes = bench_du(ckpt);

    double with = open_ms(dir, versions);
    double with2 = open_ms(dir, versions);
    if (with2 < with)
        with = with2;
    if (latency_too)
        write_latency(dir, versions); /* adds versions: measured after the opens */
    unlink(ckpt);
    double replay = open_ms(dir, latency_too ? 0 : versions);

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
    snprintf(r->note, sizeof r->note,
             "open (best of 2) with a checkpoint of %" PRIu64 " versions vs %.0f ms replaying the %.0f MB log "
             "(%.1fx); checkpoint %.0f MB written in %.0f ms; page cache warm",
             versions, replay, (double)log_bytes / 1048576.0, replay / with, (double)ckpt_bytes / 1048576.0,
             write_ms);
    bench_rm_rf(dir);
}

void bench_w_open_checkpoint(void)
{
    const char *env = getenv("KD_BENCH_CKPT_VERSIONS");
    uint64_t big = env ? strtoull(env, NULL, 10) : (g_cfg.quick ? 200000 : 10000000);
    open_checkpoint("open_checkpoint_1M", g_cfg.quick ? 100000 : 1000000, 0, 0);
    open_checkpoint("open_checkpoint_10M", big, 1, 1);
}
