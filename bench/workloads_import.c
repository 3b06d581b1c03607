/*
 * workloads_import.c — import_ndjson and export_ndjson: `kdelta import` and
 * `kdelta export` timed end to end (the real binary, process start and
 * database open included), against SQLite loading and dumping the same file
 * in the same run and the same directory.
 *
 * The NDJSON file (BENCH_IO_DOCS small documents, ~90 bytes each) is written
 * once into the bench directory and shared by both workloads and both sides.
 *
 *   import  kdelta --db D --sync always import bench FILE --batch 1000
 *           (generated keys, one kd_put_batch and one fsync per 1000 rows)
 *           SQLite: WAL, synchronous=FULL, one transaction per 1000 rows of
 *           INSERT INTO docs(k, doc) VALUES (?, json(?)) — json() validates
 *           and minifies like KoruDelta's canonicalization; k is the same
 *           zero-padded key, the table's primary key. In-process: no process
 *           start, no open of a big log, so it is the stronger peer.
 *   export  kdelta --db D export bench > FILE (every live key, in key order,
 *           {"namespace","key","value"} per line)
 *           SQLite: SELECT k, doc FROM docs ORDER BY k, written as the same
 *           line with stdio.
 */
#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define IO_BATCH 1000

static char ndjson_file[4096];   /* generated once per run */
static uint64_t ndjson_docs;
static char kd_loaded[4096];     /* a KoruDelta database holding the docs (left by import) */
static char sq_loaded[4096];     /* the SQLite one */

static uint64_t io_docs(void)
{
    const char *env = getenv("KD_BENCH_IO_DOCS");
    if (env && atoll(env) > 0)
        return (uint64_t)atoll(env);
    return g_cfg.quick ? 20000 : 1000000;
}

/* The kdelta binary beside kd_bench (both are built into the same directory). */
static int kdelta_path(char *buf, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 0;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    snprintf(buf, len, "%s/kdelta", self);
    return access(buf, X_OK) == 0;
}

/* Small documents, distinct, with a few types: ~90 bytes a line. */
static void make_ndjson(uint64_t docs)
{
    if (ndjson_docs == docs && ndjson_file[0])
        return;
    bench_path(ndjson_file, sizeof ndjson_file, "io_docs.ndjson");
    FILE *f = fopen(ndjson_file, "w");
    if (!f)
        bench_die("cannot create %s: %s", ndjson_file, strerror(errno));
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    uint64_t s = 42;
    for (uint64_t i = 0; i < docs; i++) {
        uint64_t r = bench_rand(&s);
        fprintf(f, "{\"id\":%llu,\"name\":\"user-%llx\",\"score\":%.2f,\"active\":%s,\"tags\":[\"t%u\",\"t%u\"]}\n",
                (unsigned long long)i, (unsigned long long)(r >> 20), (double)(r % 100000) / 100.0,
                (r & 1) ? "true" : "false", (unsigned)(r >> 8) % 50, (unsigned)(r >> 16) % 50);
    }
    if (fclose(f) != 0)
        bench_die("cannot write %s", ndjson_file);
    ndjson_docs = docs;
}

/* Run argv with stdout to `out_file` (NULL: /dev/null); exit status. */
static int run(char *const argv[], const char *out_file)
{
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        FILE *o = freopen(out_file ? out_file : "/dev/null", "w", stdout);
        if (!o)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            bench_die("waitpid: %s", strerror(errno));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void set_side(bench_side *s, uint64_t ops, uint64_t t0, uint64_t t1)
{
    s->ran = 1;
    s->ops = ops;
    s->seconds = (double)(t1 - t0) / 1e9;
    s->rate = s->seconds > 0 ? (double)ops / s->seconds : 0;
    s->median_ns = s->p99_ns = -1;
}

/* ------------------------------------------------------------------------
 * KoruDelta: the kdelta binary
 * ---------------------------------------------------------------------- */

/* Time `kdelta import` into a fresh `dir`. The import's own summary gives the
 * time of its loop (without process start, open and close): recorded in `r`. */
static int kdelta_import(const char *kdelta, const char *dir, const char *sync, bench_side *side, bench_result *r)
{
    char *argv[] = {(char *)kdelta, "--db", (char *)dir, "--sync", (char *)sync, "import", BENCH_NS,
                    ndjson_file, "--batch", "1000", "--json", NULL};
    char out[4200];
    snprintf(out, sizeof out, "%s.summary", dir);
    bench_rm_rf(dir);
    bench_settle(g_cfg.root);
    uint64_t t0 = bench_now_ns();
    int rc = run(argv, out);
    uint64_t t1 = bench_now_ns();
    if (rc != 0)
        bench_die("kdelta import exited with %d (summary in %s)", rc, out);
    size_t len = 0;
    char *summary = bench_read_file(out, &len);
    unsigned long long rows = 0;
    double secs = 0;
    const char *p = summary ? strstr(summary, "\"rows\":") : NULL;
    if (p)
        rows = strtoull(p + 7, NULL, 10);
    p = summary ? strstr(summary, "\"seconds\":") : NULL;
    if (p)
        secs = strtod(p + 10, NULL);
    free(summary);
    if (r && secs > 0)
        bench_result_extra(r, "korudelta_import_loop_docs_per_s", (double)rows / secs);
    bench_rm_rf(out);
    if (rows != ndjson_docs)
        bench_die("kdelta import wrote %llu rows, expected %llu", rows, (unsigned long long)ndjson_docs);
    if (side)
        set_side(side, rows, t0, t1);
    return 0;
}

static void kdelta_export(const char *kdelta, const char *dir, bench_side *side, bench_result *r)
{
    char out[4200];
    bench_path(out, sizeof out, "io_export.kd.ndjson");
    /* What opening and closing the database costs (replaying the log into
     * the index, freeing it): `kdelta status` does nothing else. */
    char *st_argv[] = {(char *)kdelta, "--db", (char *)dir, "status", NULL};
    uint64_t s0 = bench_now_ns();
    if (run(st_argv, NULL) != 0)
        bench_die("kdelta status failed");
    double open_close = (double)(bench_now_ns() - s0) / 1e9;
    char *argv[] = {(char *)kdelta, "--db", (char *)dir, "export", BENCH_NS, NULL};
    uint64_t t0 = bench_now_ns();
    int rc = run(argv, out);
    uint64_t t1 = bench_now_ns();
    if (rc != 0)
        bench_die("kdelta export exited with %d", rc);
    struct stat st;
    if (stat(out, &st) != 0 || st.st_size == 0)
        bench_die("kdelta export wrote nothing");
    bench_result_extra(r, "korudelta_output_bytes", (double)st.st_size);
    bench_rm_rf(out);
    set_side(side, ndjson_docs, t0, t1);
    bench_result_extra(r, "korudelta_open_close_s", open_close);
    if (side->seconds > open_close)
        bench_result_extra(r, "korudelta_export_phase_docs_per_s", (double)ndjson_docs / (side->seconds - open_close));
}

/* ------------------------------------------------------------------------
 * SQLite
 * ---------------------------------------------------------------------- */

static void sq_ok(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        bench_die("sqlite: %s: %s", what, sqlite3_errmsg(db));
}

static void sq_exec(sqlite3 *db, const char *sql)
{
    sq_ok(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

static void sq_import(const char *file, bench_side *side)
{
    char p[4200];
    bench_rm_rf(file);
    snprintf(p, sizeof p, "%s-wal", file);
    bench_rm_rf(p);
    bench_settle(g_cfg.root);
    uint64_t t0 = bench_now_ns();
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(file, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
        bench_die("sqlite: cannot open %s", file);
    sq_exec(db, "PRAGMA locking_mode=EXCLUSIVE");
    sq_exec(db, "PRAGMA journal_mode=WAL");
    sq_exec(db, "PRAGMA synchronous=FULL");
    sq_exec(db, "PRAGMA cache_size=-65536");
    sq_exec(db, "CREATE TABLE docs(k TEXT PRIMARY KEY, doc TEXT) WITHOUT ROWID");
    sqlite3_stmt *ins;
    sq_ok(db, sqlite3_prepare_v3(db, "INSERT INTO docs(k, doc) VALUES (?, json(?))", -1, SQLITE_PREPARE_PERSISTENT,
                                 &ins, NULL),
          "prepare");
    FILE *f = fopen(ndjson_file, "r");
    if (!f)
        bench_die("cannot open %s", ndjson_file);
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t rows = 0;
    char key[32];
    sq_exec(db, "BEGIN");
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n')
            n--;
        int kl = snprintf(key, sizeof key, "%012llu", (unsigned long long)rows + 1);
        sqlite3_bind_text(ins, 1, key, kl, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, line, (int)n, SQLITE_STATIC);
        sq_ok(db, sqlite3_step(ins), "insert");
        sqlite3_reset(ins);
        if (++rows % IO_BATCH == 0) {
            sq_exec(db, "COMMIT");
            sq_exec(db, "BEGIN");
        }
    }
    sq_exec(db, "COMMIT");
    free(line);
    fclose(f);
    sqlite3_finalize(ins);
    sq_ok(db, sqlite3_close(db), "close");
    uint64_t t1 = bench_now_ns();
    if (rows != ndjson_docs)
        bench_die("sqlite loaded %llu rows, expected %llu", (unsigned long long)rows, (unsigned long long)ndjson_docs);
    if (side)
        set_side(side, rows, t0, t1);
}

static void sq_export(const char *file, bench_side *side, bench_result *r)
{
    char out[4200];
    bench_path(out, sizeof out, "io_export.sqlite.ndjson");
    uint64_t t0 = bench_now_ns();
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        bench_die("sqlite: cannot open %s", file);
    sq_exec(db, "PRAGMA cache_size=-65536");
    sqlite3_stmt *sel;
    sq_ok(db, sqlite3_prepare_v2(db, "SELECT k, doc FROM docs ORDER BY k", -1, &sel, NULL), "prepare");
    FILE *f = fopen(out, "w");
    if (!f)
        bench_die("cannot create %s", out);
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    uint64_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        fputs("{\"namespace\":\"" BENCH_NS "\",\"key\":\"", f);
        fwrite(sqlite3_column_text(sel, 0), 1, (size_t)sqlite3_column_bytes(sel, 0), f);
        fputs("\",\"value\":", f);
        fwrite(sqlite3_column_text(sel, 1), 1, (size_t)sqlite3_column_bytes(sel, 1), f);
        fputs("}\n", f);
        rows++;
    }
    sq_ok(db, rc, "select");
    if (fclose(f) != 0)
        bench_die("cannot write %s", out);
    sqlite3_finalize(sel);
    sqlite3_close(db);
    uint64_t t1 = bench_now_ns();
    struct stat st;
    if (stat(out, &st) == 0)
        bench_result_extra(r, "sqlite_output_bytes", (double)st.st_size);
    bench_rm_rf(out);
    if (rows != ndjson_docs)
        bench_die("sqlite exported %llu rows, expected %llu", (unsigned long long)rows, (unsigned long long)ndjson_docs);
    set_side(side, rows, t0, t1);
}

/* ------------------------------------------------------------------------
 * The workloads
 * ---------------------------------------------------------------------- */

void bench_w_import_ndjson(void)
{
    char kdelta[PATH_MAX + 16];
    bench_result *r = bench_result_new("import_ndjson", "docs/s");
    r->target = ">= 200k docs/s";
    r->met = -1;
    make_ndjson(io_docs());
    struct stat st;
    if (stat(ndjson_file, &st) == 0)
        bench_result_extra(r, "file_bytes", (double)st.st_size);
    if ((g_cfg.sides & BENCH_SIDE_KD)) {
        if (!kdelta_path(kdelta, sizeof kdelta)) {
            snprintf(r->note, sizeof r->note, "skipped: no kdelta binary beside kd_bench");
        } else {
            bench_path(kd_loaded, sizeof kd_loaded, "io_import.kd");
            kdelta_import(kdelta, kd_loaded, "always", &r->kd, r);
            r->met = r->kd.rate >= 200000;
        }
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        bench_path(sq_loaded, sizeof sq_loaded, "io_import.sqlite");
        sq_import(sq_loaded, &r->sq);
    }
    if (!r->note[0])
        snprintf(r->note, sizeof r->note,
                 "%llu docs (%.0f MB NDJSON), durable, batches of %d; kdelta end to end (process, open, close) vs "
                 "SQLite in-process json() inserts",
                 (unsigned long long)ndjson_docs, (double)st.st_size / 1048576.0, IO_BATCH);
}

void bench_w_export_ndjson(void)
{
    char kdelta[PATH_MAX + 16];
    bench_result *r = bench_result_new("export_ndjson", "docs/s");
    r->target = ">= 500k docs/s";
    r->met = -1;
    make_ndjson(io_docs());
    if (g_cfg.sides & BENCH_SIDE_KD) {
        if (!kdelta_path(kdelta, sizeof kdelta)) {
            snprintf(r->note, sizeof r->note, "skipped: no kdelta binary beside kd_bench");
        } else {
            if (!kd_loaded[0]) { /* import_ndjson did not run: load untimed */
                bench_path(kd_loaded, sizeof kd_loaded, "io_import.kd");
                kdelta_import(kdelta, kd_loaded, "none", NULL, NULL);
            }
            kdelta_export(kdelta, kd_loaded, &r->kd, r);
            r->met = r->kd.rate >= 500000;
            bench_rm_rf(kd_loaded);
            kd_loaded[0] = '\0';
        }
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        if (!sq_loaded[0]) {
            bench_path(sq_loaded, sizeof sq_loaded, "io_import.sqlite");
            sq_import(sq_loaded, NULL);
        }
        sq_export(sq_loaded, &r->sq, r);
        char p[4200];
        bench_rm_rf(sq_loaded);
        snprintf(p, sizeof p, "%s-wal", sq_loaded);
        bench_rm_rf(p);
        sq_loaded[0] = '\0';
    }
    if (!r->note[0])
        snprintf(r->note, sizeof r->note,
                 "%llu docs; kdelta export to a file end to end (process, open = log replay, close) vs SQLite "
                 "in-process SELECT ... ORDER BY k written with stdio",
                 (unsigned long long)ndjson_docs);
    bench_rm_rf(ndjson_file);
    ndjson_file[0] = '\0';
    ndjson_docs = 0;
}
