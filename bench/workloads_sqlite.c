/*
 * workloads_sqlite.c — the SQLite peer of every workload: the same history
 * model expressed as a table, one row per version,
 *
 *   CREATE TABLE history(ns TEXT, key TEXT, ts INTEGER, version_id TEXT, value TEXT);
 *   CREATE INDEX h ON history(ns, key, ts);
 *
 * in WAL mode with synchronous=FULL when KoruDelta runs sync=always and
 * synchronous=OFF for sync=none; every statement is prepared once and reused;
 * each connection is used by one thread (SQLITE_OPEN_NOMUTEX) and has a
 * 64 MiB page cache (KoruDelta's default value cache size); a connection
 * that is alone on its file runs in locking_mode=EXCLUSIVE. A put stores
 * the JSON text as given, a cheap 64-hex-digit id and a hybrid-clock
 * timestamp: no parsing, canonicalization or hashing, which KoruDelta does
 * on every put (docs/BENCH.md says so next to the figures).
 */
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* ------------------------------------------------------------------------
 * Connections and statements
 * ---------------------------------------------------------------------- */

typedef struct sq_conn {
    sqlite3 *db;
    sqlite3_stmt *ins;  /* INSERT INTO history … */
    sqlite3_stmt *get;  /* latest value of ns/key */
    sqlite3_stmt *at;   /* latest value of ns/key with ts <= ? */
    sqlite3_stmt *hist; /* ts, version_id of ns/key, oldest first */
    sqlite3_stmt *begin, *commit;
    int64_t last_ts;    /* hybrid clock: max(wall, last + 1) */
} sq_conn;

static void sq_check(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        bench_die("sqlite: %s failed: %s (%d): %s", what, sqlite3_errstr(rc), rc, db ? sqlite3_errmsg(db) : "");
}

static void sq_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "kd_bench: sqlite: %s: %s\n", sql, err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        exit(1);
    }
}

static sqlite3_stmt *sq_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    sq_check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL), sql);
    return st;
}

/* Step a statement that returns no row (retrying on SQLITE_BUSY, which the
 * busy timeout makes rare), then reset it. */
static void sq_run(sq_conn *c, sqlite3_stmt *st, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_BUSY)
        sqlite3_reset(st);
    sq_check(c->db, rc, what);
    sqlite3_reset(st);
}

/* exclusive: the only connection to the file (every workload except the
 * 8-writer one): take the lock once, as KoruDelta holds its directory's lock
 * for as long as it is open, instead of fcntl() calls around every
 * transaction. In WAL mode this also keeps the WAL index in heap memory. */
static void sq_open(sq_conn *c, const char *file, int durable, int exclusive)
{
    memset(c, 0, sizeof *c);
    int rc = sqlite3_open_v2(file, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        bench_die("sqlite: cannot open %s: %s", file, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    sqlite3_busy_timeout(c->db, 10000);
    if (exclusive)
        sq_exec(c->db, "PRAGMA locking_mode=EXCLUSIVE");
    sq_exec(c->db, "PRAGMA journal_mode=WAL");
    sq_exec(c->db, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF");
    /* 64 MiB of page cache, as KoruDelta's default hot-value cache, instead
     * of SQLite's 2 MB default that would make it read index pages back
     * from the file once the table outgrows it. */
    sq_exec(c->db, "PRAGMA cache_size=-65536");
    sq_exec(c->db, "CREATE TABLE IF NOT EXISTS history(ns TEXT, key TEXT, ts INTEGER, version_id TEXT, value TEXT)");
    sq_exec(c->db, "CREATE INDEX IF NOT EXISTS h ON history(ns, key, ts)");
    c->ins = sq_prepare(c->db, "INSERT INTO history(ns, key, ts, version_id, value) VALUES (?1, ?2, ?3, ?4, ?5)");
    c->get = sq_prepare(c->db, "SELECT value FROM history WHERE ns = ?1 AND key = ?2 ORDER BY ts DESC LIMIT 1");
    c->at = sq_prepare(c->db,
                       "SELECT value FROM history WHERE ns = ?1 AND key = ?2 AND ts <= ?3 ORDER BY ts DESC LIMIT 1");
    c->hist = sq_prepare(c->db, "SELECT ts, version_id FROM history WHERE ns = ?1 AND key = ?2 ORDER BY ts");
    c->begin = sq_prepare(c->db, "BEGIN");
    c->commit = sq_prepare(c->db, "COMMIT");
}

static void sq_close(sq_conn *c)
{
    sqlite3_stmt *all[] = {c->ins, c->get, c->at, c->hist, c->begin, c->commit};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    int rc = sqlite3_close(c->db);
    if (rc != SQLITE_OK)
        bench_die("sqlite: close failed: %s", sqlite3_errstr(rc));
    c->db = NULL;
}

static int64_t sq_next_ts(sq_conn *c)
{
    int64_t now = bench_wall_ns();
    c->last_ts = now > c->last_ts ? now : c->last_ts + 1;
    return c->last_ts;
}

/* One version row; returns its timestamp. */
static int64_t sq_insert(sq_conn *c, const char *key, const char *val, size_t len, uint64_t seq)
{
    char id[KD_ID_HEX];
    int64_t ts = sq_next_ts(c);
    bench_fake_id(id, seq);
    sqlite3_bind_text(c->ins, 1, BENCH_NS, -1, SQLITE_STATIC);
    sqlite3_bind_text(c->ins, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(c->ins, 3, ts);
    sqlite3_bind_text(c->ins, 4, id, 64, SQLITE_STATIC);
    sqlite3_bind_text(c->ins, 5, val, (int)len, SQLITE_STATIC);
    sq_run(c, c->ins, "INSERT");
    return ts;
}

/* ------------------------------------------------------------------------
 * Puts
 * ---------------------------------------------------------------------- */

typedef struct put_ctx {
    sq_conn conn;
    const put_params *p;
    int thread;
    char *val;
    char prefix[16]; /* "w<thread>-" */
    uint64_t ops;
    bench_samples samples;
    uint64_t deadline;
} put_ctx;

static int put_one(void *vctx, uint64_t i)
{
    put_ctx *c = vctx;
    char key[BENCH_KEY_MAX];
    uint64_t n = i * (uint64_t)c->p->threads + (uint64_t)c->thread;
    size_t len = bench_make_value(c->val, c->p->value_size, n);
    bench_make_key(key, c->prefix, i, c->p->nkeys);
    sq_insert(&c->conn, key, c->val, len, n);
    return 0;
}

static int put_batch(void *vctx, uint64_t i)
{
    put_ctx *c = vctx;
    char key[BENCH_KEY_MAX];
    sq_run(&c->conn, c->conn.begin, "BEGIN");
    for (size_t k = 0; k < c->p->batch; k++) {
        uint64_t n = i * c->p->batch + k;
        size_t len = bench_make_value(c->val, c->p->value_size, n);
        bench_make_key(key, "", n, c->p->nkeys);
        sq_insert(&c->conn, key, c->val, len, n);
    }
    sq_run(&c->conn, c->conn.commit, "COMMIT");
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

void sqside_put(const char *file, const put_params *p, bench_side *out)
{
    int nt = p->threads > 0 ? p->threads : 1;
    put_ctx *ctx = calloc((size_t)nt, sizeof *ctx);
    if (!ctx)
        bench_die("out of memory");
    /* Every thread has its own connection, opened (and the schema created)
     * one after the other before the clock starts. */
    for (int t = 0; t < nt; t++) {
        ctx[t].p = p;
        ctx[t].thread = t;
        snprintf(ctx[t].prefix, sizeof ctx[t].prefix, "w%d-", t);
        ctx[t].val = bench_xmalloc(p->value_size);
        sq_open(&ctx[t].conn, file, p->durable, nt == 1);
    }

    if (p->batch) {
        uint64_t batches = p->max_ops / p->batch;
        bench_run_loop(out, put_batch, &ctx[0], batches ? batches : 1, 0, 1);
        out->ops *= p->batch;
        out->rate *= (double)p->batch;
    } else if (nt == 1) {
        bench_run_loop(out, put_one, &ctx[0], p->max_ops, p->durable ? 0 : (g_cfg.quick ? 500 : 20000), p->durable);
    } else {
        pthread_t *tid = bench_xmalloc((size_t)nt * sizeof *tid);
        bench_samples all;
        bench_samples_init(&all, 1000000);
        uint64_t start = bench_now_ns();
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
        sq_close(&ctx[t].conn);
        free(ctx[t].val);
    }
    free(ctx);
}

/* ------------------------------------------------------------------------
 * Reads
 * ---------------------------------------------------------------------- */

typedef struct read_ctx {
    sq_conn conn;
    const int64_t *times;
    uint64_t mask;
    uint64_t versions;
    uint64_t sink;
} read_ctx;

/* Setup rows in one transaction (untimed). */
static void fill_key(sq_conn *c, const char *key, uint64_t n, uint64_t seq0, int64_t *ts)
{
    char val[128];
    sq_run(c, c->begin, "BEGIN");
    for (uint64_t i = 0; i < n; i++) {
        size_t len = bench_make_value(val, 100, seq0 + i);
        int64_t t = sq_insert(c, key, val, len, seq0 + i);
        if (ts)
            ts[i] = t;
    }
    sq_run(c, c->commit, "COMMIT");
}

static void fill_others(sq_conn *c, uint64_t nkeys)
{
    char val[128], key[BENCH_KEY_MAX];
    sq_run(c, c->begin, "BEGIN");
    for (uint64_t i = 0; i < nkeys; i++) {
        size_t len = bench_make_value(val, 100, 1000000000ull + i);
        bench_make_key(key, "o", i, 0);
        sq_insert(c, key, val, len, 1000000000ull + i);
    }
    sq_run(c, c->commit, "COMMIT");
}

static int get_hot_op(void *vctx, uint64_t i)
{
    read_ctx *c = vctx;
    sqlite3_stmt *st = c->conn.get;
    (void)i;
    sqlite3_bind_text(st, 1, BENCH_NS, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, "hot", 3, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        bench_die("sqlite: point lookup found no row (%s)", sqlite3_errmsg(c->conn.db));
    (void)sqlite3_column_text(st, 0);
    c->sink += (uint64_t)sqlite3_column_bytes(st, 0);
    sqlite3_reset(st);
    return 0;
}

void sqside_get_hot(const char *file, uint64_t other_keys, bench_side *out)
{
    read_ctx c = {0};
    sq_open(&c.conn, file, 0, 1);
    fill_others(&c.conn, other_keys);
    fill_key(&c.conn, "hot", 1, 0, NULL);
    bench_run_loop(out, get_hot_op, &c, g_cfg.quick ? 20000 : 20000000, g_cfg.quick ? 2000 : 200000, 0);
    sq_close(&c.conn);
}

static int get_at_op(void *vctx, uint64_t i)
{
    read_ctx *c = vctx;
    sqlite3_stmt *st = c->conn.at;
    sqlite3_bind_text(st, 1, BENCH_NS, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, "deep", 4, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, c->times[i & c->mask]);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        bench_die("sqlite: get_at found no row (%s)", sqlite3_errmsg(c->conn.db));
    (void)sqlite3_column_text(st, 0);
    c->sink += (uint64_t)sqlite3_column_bytes(st, 0);
    sqlite3_reset(st);
    return 0;
}

void sqside_get_at(const char *file, uint64_t versions, bench_side *out)
{
    read_ctx c = {0};
    int64_t *ts = bench_xmalloc(versions * sizeof *ts);
    sq_open(&c.conn, file, 0, 1);
    fill_others(&c.conn, 1000);
    fill_key(&c.conn, "deep", versions, 0, ts);
    c.times = bench_query_times(ts, versions, 1u << 16);
    c.mask = (1u << 16) - 1;
    bench_run_loop(out, get_at_op, &c, g_cfg.quick ? 20000 : 20000000, g_cfg.quick ? 2000 : 200000, 0);
    sq_close(&c.conn);
    free((void *)c.times);
    free(ts);
}

static int history_op(void *vctx, uint64_t i)
{
    read_ctx *c = vctx;
    sqlite3_stmt *st = c->conn.hist;
    uint64_t n = 0;
    int rc;
    (void)i;
    sqlite3_bind_text(st, 1, BENCH_NS, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, "deep", 4, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        c->sink += (uint64_t)sqlite3_column_int64(st, 0);
        (void)sqlite3_column_text(st, 1);
        c->sink += (uint64_t)sqlite3_column_bytes(st, 1);
        n++;
    }
    sq_check(c->conn.db, rc, "history scan");
    sqlite3_reset(st);
    if (n != c->versions)
        bench_die("sqlite: history scan returned %" PRIu64 " rows, expected %" PRIu64, n, c->versions);
    return 0;
}

void sqside_history(const char *file, uint64_t versions, bench_side *out)
{
    read_ctx c = {0};
    sq_open(&c.conn, file, 0, 1);
    c.versions = versions;
    fill_others(&c.conn, 1000);
    fill_key(&c.conn, "deep", versions, 0, NULL);
    bench_run_loop(out, history_op, &c, g_cfg.quick ? 50 : 100000, g_cfg.quick ? 10 : 200, 0);
    out->ops *= versions;
    out->rate *= (double)versions;
    sq_close(&c.conn);
}

/* ------------------------------------------------------------------------
 * Open
 * ---------------------------------------------------------------------- */

void sqside_open(const char *file, uint64_t bytes, bench_side *out, bench_result *r)
{
    enum { VALUE = 4096, KEYS = 10000, TXN = 1000 };
    uint64_t n = bytes / VALUE;
    char *val = bench_xmalloc(VALUE);
    char key[BENCH_KEY_MAX];
    sq_conn c;

    sq_open(&c, file, 0, 1);
    for (uint64_t i = 0; i < n; i++) {
        if (i % TXN == 0)
            sq_run(&c, c.begin, "BEGIN");
        size_t len = bench_make_value(val, VALUE, i);
        bench_make_key(key, "", i, KEYS);
        sq_insert(&c, key, val, len, i);
        if (i % TXN == TXN - 1 || i == n - 1)
            sq_run(&c, c.commit, "COMMIT");
    }
    sq_close(&c); /* checkpoints the WAL into the database file */
    free(val);
    bench_settle(g_cfg.root);
    uint64_t db_bytes = bench_du(file);

    /* Open and answer one point query: what an application does first. */
    uint64_t t0 = bench_now_ns();
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(file, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        bench_die("sqlite: cannot reopen %s", file);
    sqlite3_stmt *st = NULL;
    sq_check(db,
             sqlite3_prepare_v2(db, "SELECT value FROM history WHERE ns = ?1 AND key = ?2 ORDER BY ts DESC LIMIT 1",
                                -1, &st, NULL),
             "prepare");
    bench_make_key(key, "", n - 1, KEYS);
    sqlite3_bind_text(st, 1, BENCH_NS, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        bench_die("sqlite: first query after open found nothing: %s", sqlite3_errmsg(db));
    uint64_t t1 = bench_now_ns();
    sqlite3_finalize(st);
    sqlite3_close(db);

    out->ran = 1;
    out->ops = n;
    out->seconds = (double)(t1 - t0) / 1e9;
    out->rate = (double)db_bytes / 1048576.0 / out->seconds;
    bench_result_extra(r, "sqlite_db_bytes", (double)db_bytes);
    bench_result_extra(r, "sqlite_open_first_query_ms", out->seconds * 1e3);
}

/* ------------------------------------------------------------------------
 * json()
 * ---------------------------------------------------------------------- */

void sqside_json(const char *text, size_t len, bench_side *out)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        bench_die("sqlite: cannot open :memory:");
    sq_check(db, sqlite3_prepare_v2(db, "SELECT json(?1)", -1, &st, NULL), "prepare json()");
    uint64_t n = 0, cap = (uint64_t)(g_cfg.seconds * 1e9);
    bench_samples s;
    bench_samples_init(&s, 100000);
    uint64_t start = bench_now_ns(), now = start;
    do {
        uint64_t t0 = now;
        sqlite3_bind_text(st, 1, text, (int)len, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            bench_die("sqlite: json() failed: %s", sqlite3_errmsg(db));
        (void)sqlite3_column_text(st, 0);
        sqlite3_reset(st);
        now = bench_now_ns();
        bench_samples_add(&s, now - t0);
        n++;
    } while (now - start < cap);
    sqlite3_finalize(st);
    sqlite3_close(db);
    out->ran = 1;
    out->ops = n;
    out->seconds = (double)(now - start) / 1e9;
    out->rate = (double)len * (double)n / 1048576.0 / out->seconds;
    bench_samples_finish(&s, out);
    bench_samples_free(&s);
}
