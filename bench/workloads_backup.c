/*
 * workloads_backup.c — backup and restore: kd_backup of a database of
 * BENCH_BACKUP_DOCS small documents (~90 bytes, written in batches of 1000)
 * into one file, and kd_restore of that file into a new directory, both
 * in-process and durable (each ends with its fsyncs and renames).
 *
 * The figure is documents per second, so that it compares with SQLite's
 * own way of copying the same documents (a WAL database of the same rows):
 *   backup   VACUUM INTO 'file' (a compact, consistent copy, synced)
 *   restore  the online backup API (sqlite3_backup_step(-1)) from that file
 *            into a new database, synced
 * Extra figures: MB/s of log bytes (the uncompressed records) for backup
 * and restore, the compression ratio (log bytes / file bytes) at the
 * default level 1 and, for comparison, the speed and ratio at level 3.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static uint64_t backup_docs(void)
{
    const char *env = getenv("KD_BENCH_BACKUP_DOCS");
    if (env && atoll(env) > 0)
        return (uint64_t)atoll(env);
    return g_cfg.quick ? 20000 : 1000000;
}

static char kd_src[4096], kd_file[4096], sq_src[4096], sq_file[4096];
static uint64_t loaded_docs;

static void make_doc(char *buf, size_t len, uint64_t i, uint64_t *s)
{
    uint64_t r = bench_rand(s);
    snprintf(buf, len, "{\"id\":%llu,\"name\":\"user-%llx\",\"score\":%.2f,\"active\":%s,\"tags\":[\"t%u\",\"t%u\"]}",
             (unsigned long long)i, (unsigned long long)(r >> 20), (double)(r % 100000) / 100.0,
             (r & 1) ? "true" : "false", (unsigned)(r % 97), (unsigned)(r % 13));
}

static void sq_ok(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        bench_die("sqlite: %s: %s", what, sqlite3_errmsg(db));
}

/* Both sources, untimed, once per run. */
static void load(uint64_t docs)
{
    if (loaded_docs == docs)
        return;
    bench_path(kd_src, sizeof kd_src, "backup_src.kd");
    bench_path(sq_src, sizeof sq_src, "backup_src.sqlite");
    bench_rm_rf(kd_src);
    bench_rm_rf(sq_src);
    static char docbuf[1000][160];
    static char keybuf[1000][24];
    kd_write w[1000];
    uint64_t s = 42;
    if (g_cfg.sides & BENCH_SIDE_KD) {
        kd_db *db = kdb_open(kd_src, KD_SYNC_NONE);
        for (uint64_t i = 0; i < docs;) {
            size_t n = 0;
            for (; n < 1000 && i < docs; n++, i++) {
                make_doc(docbuf[n], sizeof docbuf[n], i, &s);
                snprintf(keybuf[n], sizeof keybuf[n], "%012llu", (unsigned long long)i + 1);
                w[n] = (kd_write){BENCH_NS, keybuf[n], docbuf[n], strlen(docbuf[n]), NULL};
            }
            kdb_check(db, kd_put_batch(db, w, n, NULL), "put_batch");
        }
        kdb_check(db, kd_close(db), "close");
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        s = 42;
        sqlite3 *db = NULL;
        if (sqlite3_open(sq_src, &db) != SQLITE_OK)
            bench_die("sqlite: cannot open %s", sq_src);
        sq_ok(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
                                   "CREATE TABLE docs(k TEXT PRIMARY KEY, doc TEXT) WITHOUT ROWID; BEGIN",
                               NULL, NULL, NULL),
              "setup");
        sqlite3_stmt *ins;
        sq_ok(db, sqlite3_prepare_v2(db, "INSERT INTO docs(k, doc) VALUES (?, json(?))", -1, &ins, NULL), "prepare");
        char doc[160], key[24];
        for (uint64_t i = 0; i < docs; i++) {
            make_doc(doc, sizeof doc, i, &s);
            snprintf(key, sizeof key, "%012llu", (unsigned long long)i + 1);
            sqlite3_bind_text(ins, 1, key, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 2, doc, -1, SQLITE_STATIC);
            sq_ok(db, sqlite3_step(ins), "insert");
            sqlite3_reset(ins);
        }
        sqlite3_finalize(ins);
        sq_ok(db, sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), "commit");
        sqlite3_close(db);
    }
    loaded_docs = docs;
}

static void set_side(bench_side *side, uint64_t ops, uint64_t t0, uint64_t t1)
{
    side->ran = 1;
    side->ops = ops;
    side->seconds = (double)(t1 - t0) / 1e9;
    side->rate = side->seconds > 0 ? (double)ops / side->seconds : 0;
    side->median_ns = side->p99_ns = -1;
}

/* One kd_backup at `level` into `file`; returns seconds, fills *info. */
static double kd_backup_once(const char *file, int level, kd_backup_info *info)
{
    bench_rm_rf(file);
    kd_db *db = kdb_open(kd_src, KD_SYNC_ALWAYS);
    bench_settle(g_cfg.root);
    kd_backup_options o;
    memset(&o, 0, sizeof o);
    o.level = level;
    uint64_t t0 = bench_now_ns();
    kdb_check(db, kd_backup(db, file, &o, info), "backup");
    uint64_t t1 = bench_now_ns();
    kdb_check(db, kd_close(db), "close");
    return (double)(t1 - t0) / 1e9;
}

void bench_w_backup(void)
{
    bench_result *r = bench_result_new("backup", "docs/s");
    r->met = -1;
    uint64_t docs = backup_docs();
    load(docs);
    if (g_cfg.sides & BENCH_SIDE_KD) {
        kd_backup_info info, info3;
        char file3[4096];
        bench_path(kd_file, sizeof kd_file, "backup.kdb");
        bench_path(file3, sizeof file3, "backup_l3.kdb");
        double secs = kd_backup_once(kd_file, 1, &info);
        r->kd.ran = 1;
        r->kd.ops = docs;
        r->kd.seconds = secs;
        r->kd.rate = (double)docs / secs;
        r->kd.median_ns = r->kd.p99_ns = -1;
        bench_result_extra(r, "korudelta_log_mb_per_s", (double)info.log_bytes / 1e6 / secs);
        bench_result_extra(r, "korudelta_log_bytes", (double)info.log_bytes);
        bench_result_extra(r, "korudelta_file_bytes", (double)info.file_bytes);
        bench_result_extra(r, "compression_ratio", (double)info.log_bytes / (double)info.file_bytes);
        double secs3 = kd_backup_once(file3, 3, &info3);
        bench_result_extra(r, "level3_log_mb_per_s", (double)info3.log_bytes / 1e6 / secs3);
        bench_result_extra(r, "level3_compression_ratio", (double)info3.log_bytes / (double)info3.file_bytes);
        bench_rm_rf(file3);
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        bench_path(sq_file, sizeof sq_file, "backup.sqlite");
        bench_rm_rf(sq_file);
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(sq_src, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
            bench_die("sqlite: cannot open %s", sq_src);
        bench_settle(g_cfg.root);
        char sql[4200];
        snprintf(sql, sizeof sql, "VACUUM INTO '%s'", sq_file);
        uint64_t t0 = bench_now_ns();
        sq_ok(db, sqlite3_exec(db, sql, NULL, NULL, NULL), "vacuum into");
        uint64_t t1 = bench_now_ns();
        sqlite3_close(db);
        set_side(&r->sq, docs, t0, t1);
        bench_result_extra(r, "sqlite_file_bytes", (double)bench_du(sq_file));
    }
    snprintf(r->note, sizeof r->note,
             "%llu docs (~90 B) in batches of 1000; kd_backup (zstd level 1, synced) vs SQLite VACUUM INTO",
             (unsigned long long)docs);
}

void bench_w_restore(void)
{
    bench_result *r = bench_result_new("restore", "docs/s");
    r->met = -1;
    uint64_t docs = backup_docs();
    load(docs);
    if (g_cfg.sides & BENCH_SIDE_KD) {
        kd_backup_info info;
        if (!kd_file[0] || bench_du(kd_file) == 0) {
            bench_path(kd_file, sizeof kd_file, "backup.kdb");
            kd_backup_once(kd_file, 1, &info);
            }
        char dst[4096], err[4400];
        bench_path(dst, sizeof dst, "restore.kd");
        bench_rm_rf(dst);
        bench_settle(g_cfg.root);
        const char *files[] = {kd_file};
        uint64_t t0 = bench_now_ns();
        int rc = kd_restore(files, 1, dst, &info, err, sizeof err);
        uint64_t t1 = bench_now_ns();
        if (rc)
            bench_die("restore: %s", err);
        set_side(&r->kd, docs, t0, t1);
        bench_result_extra(r, "korudelta_log_mb_per_s", (double)info.log_bytes / 1e6 / r->kd.seconds);
        bench_rm_rf(dst);
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        if (!sq_file[0] || bench_du(sq_file) == 0) {
            bench_path(sq_file, sizeof sq_file, "backup.sqlite");
            bench_rm_rf(sq_file);
            sqlite3 *db = NULL;
            char sql[4200];
            snprintf(sql, sizeof sql, "VACUUM INTO '%s'", sq_file);
            if (sqlite3_open(sq_src, &db) != SQLITE_OK)
                bench_die("sqlite: cannot open %s", sq_src);
            sq_ok(db, sqlite3_exec(db, sql, NULL, NULL, NULL), "vacuum into");
            sqlite3_close(db);
        }
        char dst[4096];
        bench_path(dst, sizeof dst, "restore.sqlite");
        bench_rm_rf(dst);
        bench_settle(g_cfg.root);
        uint64_t t0 = bench_now_ns();
        sqlite3 *from = NULL, *to = NULL;
        if (sqlite3_open_v2(sq_file, &from, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
            sqlite3_open(dst, &to) != SQLITE_OK)
            bench_die("sqlite: cannot open the restore files");
        sq_ok(to, sqlite3_exec(to, "PRAGMA synchronous=FULL", NULL, NULL, NULL), "pragma");
        sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
        if (!b)
            bench_die("sqlite: backup_init: %s", sqlite3_errmsg(to));
        sq_ok(to, sqlite3_backup_step(b, -1), "backup_step");
        sq_ok(to, sqlite3_backup_finish(b), "backup_finish");
        sqlite3_close(from);
        sq_ok(to, sqlite3_close(to), "close");
        uint64_t t1 = bench_now_ns();
        set_side(&r->sq, docs, t0, t1);
        bench_rm_rf(dst);
    }
    snprintf(r->note, sizeof r->note,
             "%llu docs: kd_restore (every check, open, roots compared, synced) vs SQLite backup API from the "
             "VACUUM INTO copy", (unsigned long long)docs);
}
