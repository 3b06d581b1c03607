/*
 * workloads_query.c — the query benchmarks (issue 4): kd_query_run over a
 * namespace of small documents against SQLite's json_extract() over the same
 * documents, in the same run and the same directory. Results go to their own
 * table and their own JSON file (bench/out/query.json; main.c).
 *
 * Data: N documents (KD_BENCH_QUERY_DOCS, default 1,000,000; --quick 20,000)
 * generated once from a fixed seed, ~150 bytes each:
 *
 *   {"id":i,"name":"user-0000042","email":"user-0000042@example.com",
 *    "age":0..99,"status":one of 5,"country":one of 20,"score":0..9999.99,
 *    "tags":[2 of 10]}
 *
 * under keys "u00000042", loaded untimed-for-the-targets (the load is its own
 * row, query_load) into
 *   - KoruDelta: one database, sync=none, kd_put_batch of 1000;
 *   - SQLite: CREATE TABLE docs(key TEXT PRIMARY KEY, body TEXT), the current
 *     documents only (the easiest schema for SQLite: no history to skip),
 *     WAL, synchronous=OFF, 1000 rows per transaction, checkpointed at the end.
 * Both then answer the same three queries; each is run QUERY_RUNS times per
 * side and the median run is kept. The rate is documents scanned per second
 * (N / seconds of one query).
 *
 * While generating, the benchmark computes the true answers itself (matches,
 * per-country count and score sum, the 10 best scores); any answer of either
 * engine that differs stops the run with "MISMATCH" and exit status 1. That
 * catches wrong results, never slowness: timings are reported, not asserted.
 *
 * Two more workloads use the same machinery:
 *
 *   query_index_eq, query_index_eq_country — equality lookups through a
 *     secondary index on the loaded documents: `name = "user-…"` (1 match)
 *     and `country = "…"` (~5 % match). The same filter is first timed as a
 *     full scan (no index yet), then the index is created (timed), then
 *     lookups with different literals (1000 names / the 20 countries,
 *     cycled) run for >= 0.5 s and at least one round of literals.
 *     SQLite does the same with an expression index on json_extract().
 *     Every lookup's answer is checked; the indexes are dropped afterwards.
 *   query_view_write_cost — put throughput into fresh databases, without
 *     and with one auto-refresh view (status = "active") over the
 *     namespace, the two written in alternating turns of 2,000 puts; the
 *     median of 5 rounds; the view's row count
 *     is checked. KoruDelta only.
 */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define QUERY_NS "docs"
#define QUERY_BATCH 1000
#define QUERY_RUNS 3
#define N_STATUS 5
#define N_COUNTRY 20
#define N_TAGS 10
#define TOP_N 10

static const char *const statuses[N_STATUS] = {"active", "inactive", "pending", "suspended", "deleted"};
static const char *const countries[N_COUNTRY] = {"AR", "AU", "BR", "CA", "CN", "DE", "ES", "FR", "GB", "IN",
                                                 "IT", "JP", "KR", "MX", "NL", "NO", "PL", "SE", "US", "ZA"};
static const char *const tags[N_TAGS] = {"red",   "green", "blue",   "cyan",   "magenta",
                                         "yellow", "black", "white", "orange", "purple"};

/* The filter of the scan and top-10 queries, in both languages. */
#define FILTER_TEXT "age > 30 and status = \\\"active\\\""
#define FILTER_SQL "json_extract(body, '$.age') > 30 AND json_extract(body, '$.status') = 'active'"

/* ------------------------------------------------------------------------
 * Answers: the truth (computed while generating) and each engine's
 * ---------------------------------------------------------------------- */

typedef struct q_answer {
    uint64_t matches;                 /* documents matching the filter */
    uint64_t group_count[N_COUNTRY];  /* documents per country */
    double group_avg[N_COUNTRY];      /* mean score per country */
    int groups_seen[N_COUNTRY];       /* the engine reported the group */
    double top[TOP_N];                /* best scores among the matches, descending */
    int ntop;
} q_answer;

static struct {
    int loaded;
    uint64_t ndocs;
    kd_db *kd;            /* open while the query workloads run */
    sqlite3 *sq;
    char kd_dir[4096], sq_file[4096];
    q_answer truth;
    int64_t top_cents[TOP_N]; /* the truth's top scores, in hundredths */
} Q;

static uint64_t query_docs(void)
{
    const char *env = getenv("KD_BENCH_QUERY_DOCS");
    if (env && atoll(env) > 0)
        return (uint64_t)atoll(env);
    return g_cfg.quick ? 20000 : 1000000;
}

/* ------------------------------------------------------------------------
 * The documents
 * ---------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct doc_fields {
    unsigned age, status, country, tag1, tag2;
    int64_t cents; /* score * 100 */
} doc_fields;

static doc_fields doc_make(uint64_t i)
{
    uint64_t r = splitmix64(i ^ 0x5eed0f0ddull), r2 = splitmix64(r);
    doc_fields d;
    d.age = (unsigned)(r % 100);
    d.status = (unsigned)((r >> 8) % N_STATUS);
    d.country = (unsigned)((r >> 16) % N_COUNTRY);
    d.cents = (int64_t)((r >> 24) % 1000000);
    d.tag1 = (unsigned)(r2 % N_TAGS);
    d.tag2 = (unsigned)((d.tag1 + 1 + (r2 >> 8) % (N_TAGS - 1)) % N_TAGS); /* never tag1 */
    return d;
}

static int doc_text(char *buf, size_t len, uint64_t i, const doc_fields *d)
{
    return snprintf(buf, len,
                    "{\"id\":%llu,\"name\":\"user-%07llu\",\"email\":\"user-%07llu@example.com\",\"age\":%u,"
                    "\"status\":\"%s\",\"country\":\"%s\",\"score\":%lld.%02lld,\"tags\":[\"%s\",\"%s\"]}",
                    (unsigned long long)i, (unsigned long long)i, (unsigned long long)i, d->age,
                    statuses[d->status], countries[d->country], (long long)(d->cents / 100),
                    (long long)(d->cents % 100), tags[d->tag1], tags[d->tag2]);
}

static int doc_key(char *buf, size_t len, uint64_t i)
{
    return snprintf(buf, len, "u%08llu", (unsigned long long)i);
}

/* The true answers of the three queries, folded in one document at a time. */
typedef struct truth_acc {
    uint64_t matches;
    uint64_t count[N_COUNTRY];
    int64_t cents[N_COUNTRY];
} truth_acc;

static void truth_add(truth_acc *t, const doc_fields *d)
{
    t->count[d->country]++;
    t->cents[d->country] += d->cents;
    if (!(d->age > 30 && d->status == 0))
        return;
    t->matches++;
    /* insertion into the descending top list */
    int n = Q.truth.ntop, k = n < TOP_N ? n : TOP_N - 1;
    if (n == TOP_N && d->cents <= Q.top_cents[TOP_N - 1])
        return;
    while (k > 0 && Q.top_cents[k - 1] < d->cents) {
        Q.top_cents[k] = Q.top_cents[k - 1];
        k--;
    }
    Q.top_cents[k] = d->cents;
    if (n < TOP_N)
        Q.truth.ntop++;
}

/* ------------------------------------------------------------------------
 * Loading both engines
 * ---------------------------------------------------------------------- */

static void sq_ok(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        bench_die("sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

static void sq_exec(sqlite3 *db, const char *sql)
{
    sq_ok(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

/* All documents in one buffer (generated once, untimed), so that each
 * engine's load times the engine alone. */
typedef struct doc_set {
    char *text;
    size_t *off; /* document i is text[off[i] .. off[i+1]) */
    uint64_t n;
} doc_set;

/* Documents 0..n-1 into s; each folded into *t when t is not NULL. */
static void docs_fill(doc_set *s, uint64_t n, truth_acc *t)
{
    size_t cap = (size_t)n * 192 + 256, used = 0;
    s->text = bench_xmalloc(cap);
    s->off = bench_xmalloc(((size_t)n + 1) * sizeof *s->off);
    s->n = n;
    for (uint64_t i = 0; i < n; i++) {
        doc_fields d = doc_make(i);
        s->off[i] = used;
        int len = doc_text(s->text + used, cap - used, i, &d);
        if (len < 0 || (size_t)len >= cap - used)
            bench_die("query documents: buffer too small");
        used += (size_t)len;
        if (t)
            truth_add(t, &d);
    }
    s->off[n] = used;
}

static void docs_free(doc_set *s)
{
    free(s->text);
    free(s->off);
    memset(s, 0, sizeof *s);
}

/* The query suite's documents, with the true answers into Q.truth. */
static void docs_generate(doc_set *s, uint64_t n)
{
    truth_acc t;
    memset(&t, 0, sizeof t);
    docs_fill(s, n, &t);
    Q.truth.matches = t.matches;
    for (int c = 0; c < N_COUNTRY; c++) {
        Q.truth.group_count[c] = t.count[c];
        Q.truth.group_avg[c] = t.count[c] ? (double)t.cents[c] / 100.0 / (double)t.count[c] : 0;
        Q.truth.groups_seen[c] = t.count[c] > 0;
    }
    for (int k = 0; k < Q.truth.ntop; k++)
        Q.truth.top[k] = (double)Q.top_cents[k] / 100.0;
}

static void kd_load(const doc_set *s, bench_side *side)
{
    kd_write *w = bench_xmalloc(QUERY_BATCH * sizeof *w);
    char(*keys)[24] = bench_xmalloc(QUERY_BATCH * sizeof *keys);
    uint64_t t0 = bench_now_ns();
    Q.kd = kdb_open(Q.kd_dir, KD_SYNC_NONE);
    for (uint64_t i = 0; i < s->n;) {
        size_t b = 0;
        for (; b < QUERY_BATCH && i < s->n; b++, i++) {
            doc_key(keys[b], sizeof keys[b], i);
            w[b] = (kd_write){QUERY_NS, keys[b], s->text + s->off[i], s->off[i + 1] - s->off[i], NULL};
        }
        kdb_check(Q.kd, kd_put_batch(Q.kd, w, b, NULL), "kd_put_batch");
    }
    uint64_t t1 = bench_now_ns();
    free(keys);
    free(w);
    side->ran = 1;
    side->ops = s->n;
    side->seconds = (double)(t1 - t0) / 1e9;
    side->rate = (double)s->n / side->seconds;
}

static void sq_load(const doc_set *s, bench_side *side)
{
    char key[24];
    uint64_t t0 = bench_now_ns();
    int rc = sqlite3_open_v2(Q.sq_file, &Q.sq, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        bench_die("sqlite: cannot open %s: %s", Q.sq_file, sqlite3_errstr(rc));
    /* Tuned as the other workloads' peer: alone on its file, 64 MiB of page
     * cache (KoruDelta's default hot-value cache); and the file mapped
     * (reads without a copy, as KoruDelta reads its log). */
    sq_exec(Q.sq, "PRAGMA locking_mode=EXCLUSIVE");
    sq_exec(Q.sq, "PRAGMA journal_mode=WAL");
    sq_exec(Q.sq, "PRAGMA synchronous=OFF");
    sq_exec(Q.sq, "PRAGMA cache_size=-65536");
    sq_exec(Q.sq, "PRAGMA mmap_size=4294967296");
    sq_exec(Q.sq, "CREATE TABLE docs(key TEXT PRIMARY KEY, body TEXT)");
    sqlite3_stmt *ins = NULL;
    sq_ok(Q.sq, sqlite3_prepare_v2(Q.sq, "INSERT INTO docs(key, body) VALUES (?1, ?2)", -1, &ins, NULL), "prepare");
    for (uint64_t i = 0; i < s->n; i++) {
        if (i % QUERY_BATCH == 0)
            sq_exec(Q.sq, "BEGIN");
        int kl = doc_key(key, sizeof key, i);
        sqlite3_bind_text(ins, 1, key, kl, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, s->text + s->off[i], (int)(s->off[i + 1] - s->off[i]), SQLITE_STATIC);
        sq_ok(Q.sq, sqlite3_step(ins), "INSERT");
        sqlite3_reset(ins);
        if (i % QUERY_BATCH == QUERY_BATCH - 1 || i == s->n - 1)
            sq_exec(Q.sq, "COMMIT");
    }
    sqlite3_finalize(ins);
    /* Everything into the database file, as a loaded database would be. */
    sq_exec(Q.sq, "PRAGMA wal_checkpoint(TRUNCATE)");
    uint64_t t1 = bench_now_ns();
    side->ran = 1;
    side->ops = s->n;
    side->seconds = (double)(t1 - t0) / 1e9;
    side->rate = (double)s->n / side->seconds;
}

/* Load both engines once per process (every query workload shares them). */
static void ensure_loaded(void)
{
    if (Q.loaded)
        return;
    Q.loaded = 1;
    Q.ndocs = query_docs();
    doc_set s;
    docs_generate(&s, Q.ndocs);
    bench_result *r = bench_result_new("query_load", "docs/s");
    if (g_cfg.sides & BENCH_SIDE_KD) {
        bench_path(Q.kd_dir, sizeof Q.kd_dir, "query.kd");
        bench_rm_rf(Q.kd_dir);
        kd_load(&s, &r->kd);
        kd_stats st;
        if (kd_stats_get(Q.kd, &st) == KD_OK)
            bench_result_extra(r, "korudelta_disk_bytes", (double)st.disk_bytes);
    }
    if (g_cfg.sides & BENCH_SIDE_SQLITE) {
        bench_path(Q.sq_file, sizeof Q.sq_file, "query.sqlite");
        bench_rm_rf(Q.sq_file);
        sq_load(&s, &r->sq);
        bench_result_extra(r, "sqlite_db_bytes", (double)bench_du(Q.sq_file));
    }
    bench_result_extra(r, "docs", (double)s.n);
    bench_result_extra(r, "doc_bytes_avg", (double)s.off[s.n] / (double)s.n);
    snprintf(r->note, sizeof r->note,
             "%llu docs of ~%.0f B, batches of %d, sync=none / synchronous=OFF (WAL, checkpointed); not a target",
             (unsigned long long)s.n, (double)s.off[s.n] / (double)s.n, QUERY_BATCH);
    docs_free(&s);
}

void bench_query_cleanup(void)
{
    if (!Q.loaded)
        return;
    if (Q.kd) {
        int rc = kd_close(Q.kd);
        if (rc != KD_OK)
            bench_die("korudelta: kd_close failed: %s", kd_errname(rc));
        Q.kd = NULL;
        bench_rm_rf(Q.kd_dir);
    }
    if (Q.sq) {
        sq_ok(NULL, sqlite3_close(Q.sq), "close");
        Q.sq = NULL;
        char p[4200];
        bench_rm_rf(Q.sq_file);
        snprintf(p, sizeof p, "%s-wal", Q.sq_file);
        bench_rm_rf(p);
        snprintf(p, sizeof p, "%s-shm", Q.sq_file);
        bench_rm_rf(p);
    }
    memset(&Q, 0, sizeof Q);
}

/* ------------------------------------------------------------------------
 * Checking an answer against the truth
 * ---------------------------------------------------------------------- */

static int close_enough(double a, double b)
{
    return fabs(a - b) <= 1e-9 * fmax(1.0, fmax(fabs(a), fabs(b)));
}

/* what: bit 1 matches, 2 groups, 4 top list. */
enum { CHECK_MATCHES = 1, CHECK_GROUPS = 2, CHECK_TOP = 4 };

static void check_answer(const char *workload, const char *engine, const q_answer *a, unsigned what)
{
    const q_answer *t = &Q.truth;
    if ((what & CHECK_MATCHES) && a->matches != t->matches)
        bench_die("MISMATCH in %s: %s counted %llu matches, the data has %llu", workload, engine,
                  (unsigned long long)a->matches, (unsigned long long)t->matches);
    if (what & CHECK_GROUPS)
        for (int c = 0; c < N_COUNTRY; c++) {
            if (a->groups_seen[c] != t->groups_seen[c])
                bench_die("MISMATCH in %s: %s %s group country=%s", workload, engine,
                          a->groups_seen[c] ? "has an unexpected" : "lacks the", countries[c]);
            if (!t->groups_seen[c])
                continue;
            if (a->group_count[c] != t->group_count[c])
                bench_die("MISMATCH in %s: %s counted %llu documents for country=%s, the data has %llu", workload,
                          engine, (unsigned long long)a->group_count[c], countries[c],
                          (unsigned long long)t->group_count[c]);
            if (!close_enough(a->group_avg[c], t->group_avg[c]))
                bench_die("MISMATCH in %s: %s gave avg:score %.17g for country=%s, the data has %.17g", workload,
                          engine, a->group_avg[c], countries[c], t->group_avg[c]);
        }
    if (what & CHECK_TOP) {
        if (a->ntop != t->ntop)
            bench_die("MISMATCH in %s: %s returned %d rows, expected %d", workload, engine, a->ntop, t->ntop);
        /* Scores only: documents with equal scores may come in any order. */
        for (int k = 0; k < t->ntop; k++)
            if (!close_enough(a->top[k], t->top[k]))
                bench_die("MISMATCH in %s: %s row %d has score %.17g, expected %.17g", workload, engine, k + 1,
                          a->top[k], t->top[k]);
    }
}

/* ------------------------------------------------------------------------
 * Running a query QUERY_RUNS times
 * ---------------------------------------------------------------------- */

typedef void (*q_run_fn)(void *ctx, q_answer *a, uint64_t *ns);

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Each run is checked; the side gets the median run's time. The run
 * function times only the query itself (not the checking). */
static void time_query(const char *workload, const char *engine, q_run_fn fn, void *ctx, unsigned what,
                       bench_side *side, bench_result *r, const char *extra_prefix)
{
    uint64_t ns[QUERY_RUNS];
    for (int k = 0; k < QUERY_RUNS; k++) {
        q_answer a;
        memset(&a, 0, sizeof a);
        fn(ctx, &a, &ns[k]);
        check_answer(workload, engine, &a, what);
    }
    qsort(ns, QUERY_RUNS, sizeof ns[0], cmp_u64);
    double med = (double)ns[QUERY_RUNS / 2] / 1e9;
    side->ran = 1;
    side->ops = Q.ndocs;
    side->seconds = med;
    side->rate = med > 0 ? (double)Q.ndocs / med : 0;
    char name[48];
    snprintf(name, sizeof name, "%squery_ms", extra_prefix);
    bench_result_extra(r, name, med * 1e3);
    snprintf(name, sizeof name, "%squery_ms_min", extra_prefix);
    bench_result_extra(r, name, (double)ns[0] / 1e6);
}

/* ---- KoruDelta ---------------------------------------------------------- */

typedef struct kd_qctx {
    kd_query *q;
    const char *workload;
} kd_qctx;

static kd_query *kd_compile(const char *json)
{
    char err[512] = "";
    kd_query *q = NULL;
    int rc = kd_query_parse(json, strlen(json), &q, err, sizeof err);
    if (rc != KD_OK)
        bench_die("korudelta: kd_query_parse(%s) failed: %s: %s", json, kd_errname(rc), err);
    return q;
}

/* The number at `path` in json[0..len), or NAN when absent or not a number. */
static double json_number_at(const char *json, size_t len, const char *path)
{
    const char *p;
    size_t n;
    char buf[64];
    if (kd_json_path(json, len, path, &p, &n) != KD_OK || n == 0 || n >= sizeof buf)
        return NAN;
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *end;
    double v = strtod(buf, &end);
    return *end == '\0' ? v : NAN;
}

static void kd_run(const kd_qctx *c, kd_result **res, uint64_t *ns)
{
    uint64_t t0 = bench_now_ns();
    int rc = kd_query_run(Q.kd, QUERY_NS, c->q, res);
    *ns = bench_now_ns() - t0;
    kdb_check(Q.kd, rc, "kd_query_run");
}

static void kd_scan_run(void *vctx, q_answer *a, uint64_t *ns)
{
    const kd_qctx *c = vctx;
    kd_result *res = NULL;
    kd_run(c, &res, ns);
    a->matches = res->total;
    /* The count aggregate must agree with the total. */
    if (res->aggregates) {
        double count = json_number_at(res->aggregates, res->aggregates_len, "count");
        if (isnan(count) || (uint64_t)count != res->total)
            bench_die("MISMATCH in %s: korudelta's total is %llu but its aggregates say %.*s", c->workload,
                      (unsigned long long)res->total, (int)res->aggregates_len, res->aggregates);
    } else {
        bench_die("MISMATCH in %s: korudelta returned no aggregates for \"count\"", c->workload);
    }
    kd_result_free(res);
}

static void kd_group_run(void *vctx, q_answer *a, uint64_t *ns)
{
    const kd_qctx *c = vctx;
    kd_result *res = NULL;
    kd_run(c, &res, ns);
    if (!res->aggregates)
        bench_die("MISMATCH in %s: korudelta returned no aggregates", c->workload);
    const char *agg = res->aggregates;
    size_t alen = res->aggregates_len;
    for (int g = 0;; g++) {
        char path[64];
        const char *p;
        size_t n;
        snprintf(path, sizeof path, "groups.%d.group.country", g);
        int rc = kd_json_path(agg, alen, path, &p, &n);
        if (rc == KD_ENOTFOUND)
            break;
        int ci = -1;
        if (rc == KD_OK && n == 4 && p[0] == '"')
            for (int k = 0; k < N_COUNTRY; k++)
                if (memcmp(p + 1, countries[k], 2) == 0)
                    ci = k;
        if (ci < 0 || a->groups_seen[ci])
            bench_die("MISMATCH in %s: korudelta group %d is not a new country: %.*s", c->workload, g,
                      (int)alen, agg);
        a->groups_seen[ci] = 1;
        snprintf(path, sizeof path, "groups.%d.count", g);
        double count = json_number_at(agg, alen, path);
        snprintf(path, sizeof path, "groups.%d.\"avg:score\"", g);
        double avg = json_number_at(agg, alen, path);
        if (isnan(count) || isnan(avg))
            bench_die("MISMATCH in %s: korudelta group %d lacks count or avg:score: %.*s", c->workload, g,
                      (int)alen, agg);
        a->group_count[ci] = (uint64_t)count;
        a->group_avg[ci] = avg;
    }
    kd_result_free(res);
}

static void kd_top_run(void *vctx, q_answer *a, uint64_t *ns)
{
    const kd_qctx *c = vctx;
    kd_result *res = NULL;
    kd_run(c, &res, ns);
    if (res->total != Q.truth.matches)
        bench_die("MISMATCH in %s: korudelta's total is %llu, the data has %llu matches", c->workload,
                  (unsigned long long)res->total, (unsigned long long)Q.truth.matches);
    a->ntop = (int)(res->n_rows < TOP_N ? res->n_rows : TOP_N);
    if (res->n_rows > TOP_N)
        bench_die("MISMATCH in %s: korudelta returned %zu rows with limit %d", c->workload, res->n_rows, TOP_N);
    for (int k = 0; k < a->ntop; k++) {
        const kd_row *row = &res->rows[k];
        a->top[k] = row->value ? json_number_at(row->value, row->value_len, "score") : NAN;
    }
    kd_result_free(res);
}

/* ---- SQLite ------------------------------------------------------------- */

typedef struct sq_qctx {
    sqlite3_stmt *st;
} sq_qctx;

static sqlite3_stmt *sq_compile(const char *sql)
{
    sqlite3_stmt *st = NULL;
    sq_ok(Q.sq, sqlite3_prepare_v2(Q.sq, sql, -1, &st, NULL), sql);
    return st;
}

static void sq_scan_run(void *vctx, q_answer *a, uint64_t *ns)
{
    sq_qctx *c = vctx;
    uint64_t t0 = bench_now_ns();
    int rc = sqlite3_step(c->st);
    if (rc == SQLITE_ROW)
        a->matches = (uint64_t)sqlite3_column_int64(c->st, 0);
    sqlite3_reset(c->st);
    *ns = bench_now_ns() - t0;
    if (rc != SQLITE_ROW)
        bench_die("sqlite: count query: %s", sqlite3_errmsg(Q.sq));
}

static void sq_group_run(void *vctx, q_answer *a, uint64_t *ns)
{
    sq_qctx *c = vctx;
    /* Rows are copied out during the timed loop (20 of them) and checked after. */
    char names[N_COUNTRY + 1][8];
    uint64_t counts[N_COUNTRY + 1];
    double avgs[N_COUNTRY + 1];
    int n = 0, rc;
    uint64_t t0 = bench_now_ns();
    while ((rc = sqlite3_step(c->st)) == SQLITE_ROW) {
        if (n <= N_COUNTRY) {
            snprintf(names[n], sizeof names[n], "%s", (const char *)sqlite3_column_text(c->st, 0));
            counts[n] = (uint64_t)sqlite3_column_int64(c->st, 1);
            avgs[n] = sqlite3_column_double(c->st, 2);
        }
        n++;
    }
    sqlite3_reset(c->st);
    *ns = bench_now_ns() - t0;
    if (rc != SQLITE_DONE)
        bench_die("sqlite: group query: %s", sqlite3_errmsg(Q.sq));
    if (n > N_COUNTRY)
        bench_die("MISMATCH in query_group_by: sqlite returned %d groups", n);
    for (int g = 0; g < n; g++) {
        int ci = -1;
        for (int k = 0; k < N_COUNTRY; k++)
            if (strcmp(names[g], countries[k]) == 0)
                ci = k;
        if (ci < 0 || a->groups_seen[ci])
            bench_die("MISMATCH in query_group_by: sqlite group %d is not a new country: '%s'", g, names[g]);
        a->groups_seen[ci] = 1;
        a->group_count[ci] = counts[g];
        a->group_avg[ci] = avgs[g];
    }
}

static void sq_top_run(void *vctx, q_answer *a, uint64_t *ns)
{
    sq_qctx *c = vctx;
    int rc;
    uint64_t t0 = bench_now_ns();
    while ((rc = sqlite3_step(c->st)) == SQLITE_ROW) {
        if (a->ntop < TOP_N)
            a->top[a->ntop] = sqlite3_column_double(c->st, 0);
        a->ntop++;
    }
    sqlite3_reset(c->st);
    *ns = bench_now_ns() - t0;
    if (rc != SQLITE_DONE)
        bench_die("sqlite: top-10 query: %s", sqlite3_errmsg(Q.sq));
}

/* ------------------------------------------------------------------------
 * The workloads
 * ---------------------------------------------------------------------- */

/* One query on both sides. */
static bench_result *run_query(const char *name, const char *kd_json, q_run_fn kd_fn, const char *sql,
                               q_run_fn sq_fn, unsigned what)
{
    ensure_loaded();
    bench_result *r = bench_result_new(name, "docs/s");
    if (Q.kd) {
        kd_qctx c = {kd_compile(kd_json), name};
        time_query(name, "korudelta", kd_fn, &c, what, &r->kd, r, "korudelta_");
        kd_query_free(c.q);
    }
    if (Q.sq) {
        sq_qctx c = {sq_compile(sql)};
        time_query(name, "sqlite", sq_fn, &c, what, &r->sq, r, "sqlite_");
        sqlite3_finalize(c.st);
    }
    bench_result_extra(r, "docs", (double)Q.ndocs);
    return r;
}

static void w_query_scan_filter(void)
{
    bench_result *r = run_query("query_scan_filter",
                                "{\"filter\": \"" FILTER_TEXT "\", \"aggregate\": [\"count\"]}", kd_scan_run,
                                "SELECT count(*) FROM docs WHERE " FILTER_SQL, sq_scan_run, CHECK_MATCHES);
    bench_result_extra(r, "matches", (double)Q.truth.matches);
    r->target = ">= 5M docs/s, >= 5x";
    double ratio = bench_ratio(r);
    r->met = ratio < 0 ? -1 : r->kd.rate >= 5e6 && ratio >= 5;
    if (!r->note[0])
        snprintf(r->note, sizeof r->note,
                 "filter `age > 30 and status = \"active\"` + count over %llu docs (%llu match); median of %d runs",
                 (unsigned long long)Q.ndocs, (unsigned long long)Q.truth.matches, QUERY_RUNS);
}

static void w_query_group_by(void)
{
    bench_result *r = run_query(
        "query_group_by", "{\"group_by\": [\"country\"], \"aggregate\": [\"count\", \"avg:score\"]}", kd_group_run,
        "SELECT json_extract(body, '$.country'), count(*), avg(json_extract(body, '$.score')) FROM docs GROUP BY 1",
        sq_group_run, CHECK_GROUPS);
    bench_result_extra(r, "groups", N_COUNTRY);
    r->target = ">= 3x";
    double ratio = bench_ratio(r);
    r->met = ratio < 0 ? -1 : ratio >= 3;
    if (!r->note[0])
        snprintf(r->note, sizeof r->note,
                 "group by country (%d groups), count + avg:score over %llu docs; median of %d runs", N_COUNTRY,
                 (unsigned long long)Q.ndocs, QUERY_RUNS);
}

static void w_query_top10(void)
{
    bench_result *r = run_query("query_top10",
                                "{\"filter\": \"" FILTER_TEXT "\", \"sort\": [\"score:desc\"], \"limit\": 10}",
                                kd_top_run,
                                "SELECT json_extract(body, '$.score') FROM docs WHERE " FILTER_SQL
                                " ORDER BY json_extract(body, '$.score') DESC LIMIT 10",
                                sq_top_run, CHECK_TOP);
    if (!r->note[0])
        snprintf(r->note, sizeof r->note,
                 "the same filter, sort score:desc, limit 10 (scores checked, ties in any order); informational");
}

/* ------------------------------------------------------------------------
 * Indexed equality lookups (query_index_eq, query_index_eq_country)
 * ---------------------------------------------------------------------- */

#define LOOKUP_POOL 1000          /* distinct literals (names; countries: 20), cycled */
#define LOOKUP_MIN_SECONDS 0.5    /* per side, at least this long, and every literal once */
#define LOOKUP_MAX_QUERIES 5000000
#define LOOKUP_SAMPLES 1000000    /* latencies kept for p50 / p99 */

typedef struct lookup_spec {
    const char *workload;
    const char *field;   /* "name" (1 match) or "country" (~5 %) */
    const char *sq_index; /* the SQLite expression index's name */
    int by_country;      /* 1: country = …, count aggregate; 0: name = …, rows */
    size_t npool;
    uint64_t lit[LOOKUP_POOL]; /* a document number (name) or a country index */
} lookup_spec;

static uint64_t lookup_expected(const lookup_spec *sp, size_t k)
{
    return sp->by_country ? Q.truth.group_count[sp->lit[k]] : 1;
}

/* The literal of pool entry k (without quotes). */
static void lookup_literal(const lookup_spec *sp, size_t k, char *buf, size_t len)
{
    if (sp->by_country)
        snprintf(buf, len, "%s", countries[sp->lit[k]]);
    else
        snprintf(buf, len, "user-%07llu", (unsigned long long)sp->lit[k]);
}

static kd_query *lookup_kd_compile(const lookup_spec *sp, size_t k)
{
    char lit[32], json[160];
    lookup_literal(sp, k, lit, sizeof lit);
    if (sp->by_country)
        snprintf(json, sizeof json, "{\"filter\": \"country = \\\"%s\\\"\", \"aggregate\": [\"count\"]}", lit);
    else
        snprintf(json, sizeof json, "{\"filter\": \"name = \\\"%s\\\"\"}", lit);
    return kd_compile(json);
}

/* One kd_query_run of pool entry k, checked; returns its time (the run only). */
static uint64_t lookup_kd_once(const lookup_spec *sp, kd_query *q, size_t k)
{
    kd_result *res = NULL;
    uint64_t t0 = bench_now_ns();
    int rc = kd_query_run(Q.kd, QUERY_NS, q, &res);
    uint64_t ns = bench_now_ns() - t0;
    kdb_check(Q.kd, rc, "kd_query_run");
    uint64_t want = lookup_expected(sp, k);
    if (res->total != want)
        bench_die("MISMATCH in %s: korudelta found %llu documents for literal #%zu, the data has %llu", sp->workload,
                  (unsigned long long)res->total, k, (unsigned long long)want);
    if (sp->by_country) {
        double count = res->aggregates ? json_number_at(res->aggregates, res->aggregates_len, "count") : NAN;
        if (isnan(count) || (uint64_t)count != want)
            bench_die("MISMATCH in %s: korudelta's count aggregate is not %llu", sp->workload,
                      (unsigned long long)want);
    } else {
        char key[24];
        doc_key(key, sizeof key, sp->lit[k]);
        if (res->n_rows != 1 || strcmp(res->rows[0].key, key) != 0 || !res->rows[0].value)
            bench_die("MISMATCH in %s: korudelta returned %zu rows (first key %s), expected key %s", sp->workload,
                      res->n_rows, res->n_rows ? res->rows[0].key : "-", key);
    }
    kd_result_free(res);
    return ns;
}

static sqlite3_stmt *lookup_sq_compile(const lookup_spec *sp)
{
    char sql[200];
    if (sp->by_country)
        snprintf(sql, sizeof sql, "SELECT count(*) FROM docs WHERE json_extract(body, '$.%s') = ?1", sp->field);
    else
        snprintf(sql, sizeof sql, "SELECT key, body FROM docs WHERE json_extract(body, '$.%s') = ?1", sp->field);
    return sq_compile(sql);
}

/* One run of the SQLite statement for pool entry k, checked; returns its
 * time (bind, steps, reset). */
static uint64_t lookup_sq_once(const lookup_spec *sp, sqlite3_stmt *st, size_t k)
{
    char lit[32], key[24], got_key[24] = "";
    lookup_literal(sp, k, lit, sizeof lit);
    uint64_t n = 0;
    int rc;
    uint64_t t0 = bench_now_ns();
    sqlite3_bind_text(st, 1, lit, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sp->by_country) {
            n = (uint64_t)sqlite3_column_int64(st, 0);
        } else {
            if (n == 0)
                snprintf(got_key, sizeof got_key, "%s", (const char *)sqlite3_column_text(st, 0));
            n++;
        }
    }
    sqlite3_reset(st);
    uint64_t ns = bench_now_ns() - t0;
    if (rc != SQLITE_DONE)
        bench_die("sqlite: %s lookup: %s", sp->field, sqlite3_errmsg(Q.sq));
    uint64_t want = lookup_expected(sp, k);
    if (n != want)
        bench_die("MISMATCH in %s: sqlite found %llu documents for literal #%zu, the data has %llu", sp->workload,
                  (unsigned long long)n, k, (unsigned long long)want);
    if (!sp->by_country) {
        doc_key(key, sizeof key, sp->lit[k]);
        if (strcmp(got_key, key) != 0)
            bench_die("MISMATCH in %s: sqlite returned key %s, expected %s", sp->workload, got_key, key);
    }
    return ns;
}

/* The same filter without an index: QUERY_RUNS runs, the median time in s. */
static double lookup_scan_seconds(const lookup_spec *sp, kd_query **kq, sqlite3_stmt *st)
{
    uint64_t ns[QUERY_RUNS];
    for (size_t k = 0; k < QUERY_RUNS; k++)
        ns[k] = kq ? lookup_kd_once(sp, kq[k % sp->npool], k % sp->npool) : lookup_sq_once(sp, st, k % sp->npool);
    qsort(ns, QUERY_RUNS, sizeof ns[0], cmp_u64);
    return (double)ns[QUERY_RUNS / 2] / 1e9;
}

/* Lookups over the pool, cycled, until every literal was asked once and
 * LOOKUP_MIN_SECONDS of query time have passed; the rate is queries per
 * second of query time (checking excluded). */
static void lookup_loop(const lookup_spec *sp, kd_query **kq, sqlite3_stmt *st, bench_side *side)
{
    bench_samples smp;
    bench_samples_init(&smp, LOOKUP_SAMPLES);
    uint64_t total = 0, n = 0;
    uint64_t min_n = g_cfg.quick && sp->npool > 200 ? 200 : sp->npool;
    uint64_t min_ns = (uint64_t)((g_cfg.quick ? 0.05 : LOOKUP_MIN_SECONDS) * 1e9);
    while (n < LOOKUP_MAX_QUERIES && (n < min_n || total < min_ns)) {
        size_t k = (size_t)(n % sp->npool);
        uint64_t ns = kq ? lookup_kd_once(sp, kq[k], k) : lookup_sq_once(sp, st, k);
        bench_samples_add(&smp, ns);
        total += ns;
        n++;
    }
    side->ran = 1;
    side->ops = n;
    side->seconds = (double)total / 1e9;
    side->rate = side->seconds > 0 ? (double)n / side->seconds : 0;
    bench_samples_finish(&smp, side);
    bench_samples_free(&smp);
}

static void run_lookup(lookup_spec *sp, bench_result *r)
{
    ensure_loaded();
    char sql[200];
    if (sp->by_country) {
        sp->npool = N_COUNTRY;
        for (size_t k = 0; k < sp->npool; k++)
            sp->lit[k] = (k * 7 + 15) % N_COUNTRY; /* NO first, then every country */
    } else {
        sp->npool = Q.ndocs < LOOKUP_POOL ? (size_t)Q.ndocs : LOOKUP_POOL;
        for (size_t k = 0; k < sp->npool; k++)
            sp->lit[k] = splitmix64(k ^ 0x100cu) % Q.ndocs;
    }
    if (Q.kd) {
        kd_query **kq = bench_xmalloc(sp->npool * sizeof *kq);
        uint64_t t0 = bench_now_ns();
        for (size_t k = 0; k < sp->npool; k++)
            kq[k] = lookup_kd_compile(sp, k);
        double parse_us = (double)(bench_now_ns() - t0) / 1e3 / (double)sp->npool;
        /* 1. the same filter, full scan (no index on the namespace yet) */
        kd_index_info *list = NULL;
        size_t nlist = 0;
        kdb_check(Q.kd, kd_index_list(Q.kd, QUERY_NS, &list, &nlist), "kd_index_list");
        kd_index_list_free(list, nlist);
        if (nlist != 0)
            bench_die("%s: namespace %s already has %zu index(es)", sp->workload, QUERY_NS, nlist);
        double scan = lookup_scan_seconds(sp, kq, NULL);
        /* 2. the index */
        t0 = bench_now_ns();
        kdb_check(Q.kd, kd_index_create(Q.kd, QUERY_NS, sp->field), "kd_index_create");
        double create = (double)(bench_now_ns() - t0) / 1e9;
        kdb_check(Q.kd, kd_index_list(Q.kd, QUERY_NS, &list, &nlist), "kd_index_list");
        uint64_t entries = nlist == 1 ? list[0].entries : 0;
        kd_index_list_free(list, nlist);
        if (nlist != 1 || entries != Q.ndocs)
            bench_die("MISMATCH in %s: the index on %s has %llu entries (%zu indexes), expected %llu", sp->workload,
                      sp->field, (unsigned long long)entries, nlist, (unsigned long long)Q.ndocs);
        /* 3. lookups through it */
        lookup_loop(sp, kq, NULL, &r->kd);
        kdb_check(Q.kd, kd_index_drop(Q.kd, QUERY_NS, sp->field), "kd_index_drop");
        for (size_t k = 0; k < sp->npool; k++)
            kd_query_free(kq[k]);
        free(kq);
        bench_result_extra(r, "korudelta_scan_ms", scan * 1e3);
        bench_result_extra(r, "speedup_vs_scan", scan * r->kd.rate);
        bench_result_extra(r, "korudelta_index_create_ms", create * 1e3);
        bench_result_extra(r, "korudelta_parse_us", parse_us);
    }
    if (Q.sq) {
        sqlite3_stmt *st = lookup_sq_compile(sp);
        double scan = lookup_scan_seconds(sp, NULL, st);
        if (sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1) == 0)
            bench_die("%s: sqlite's baseline did not scan the table", sp->workload);
        snprintf(sql, sizeof sql, "CREATE INDEX %s ON docs(json_extract(body, '$.%s'))", sp->sq_index, sp->field);
        uint64_t t0 = bench_now_ns();
        sq_exec(Q.sq, sql);
        double create = (double)(bench_now_ns() - t0) / 1e9;
        /* The statement was prepared before the index: prepare it again. */
        sqlite3_finalize(st);
        st = lookup_sq_compile(sp);
        lookup_loop(sp, NULL, st, &r->sq);
        if (sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 0) != 0)
            bench_die("%s: sqlite scanned the table instead of using %s", sp->workload, sp->sq_index);
        sqlite3_finalize(st);
        snprintf(sql, sizeof sql, "DROP INDEX %s", sp->sq_index);
        sq_exec(Q.sq, sql);
        bench_result_extra(r, "sqlite_scan_ms", scan * 1e3);
        bench_result_extra(r, "sqlite_speedup_vs_scan", scan * r->sq.rate);
        bench_result_extra(r, "sqlite_index_create_ms", create * 1e3);
    }
    bench_result_extra(r, "docs", (double)Q.ndocs);
    bench_result_extra(r, "literals", (double)sp->npool);
}

static lookup_spec lookup_name = {"query_index_eq", "name", "docs_name", 0, 0, {0}};
static lookup_spec lookup_country = {"query_index_eq_country", "country", "docs_country", 1, 0, {0}};

/* The note of a lookup row: `what`, then each side's speedup over its
 * full scan and its index build time. */
/* Decimals worth showing of a speedup. */
static int speedup_digits(double x)
{
    return x >= 100 ? 0 : 1;
}

static void lookup_note(bench_result *r, const char *what)
{
    size_t used = (size_t)snprintf(r->note, sizeof r->note, "%s", what);
    if (r->kd.ran && used < sizeof r->note)
        used += (size_t)snprintf(r->note + used, sizeof r->note - used,
                                 "; %.*fx the full scan (%.1f ms), index built in %.2f s",
                                 speedup_digits(bench_extra_get(r, "speedup_vs_scan")),
                                 bench_extra_get(r, "speedup_vs_scan"), bench_extra_get(r, "korudelta_scan_ms"),
                                 bench_extra_get(r, "korudelta_index_create_ms") / 1e3);
    if (r->sq.ran && used < sizeof r->note)
        snprintf(r->note + used, sizeof r->note - used, "; SQLite %.*fx its scan (%.1f ms), index built in %.2f s",
                 speedup_digits(bench_extra_get(r, "sqlite_speedup_vs_scan")),
                 bench_extra_get(r, "sqlite_speedup_vs_scan"), bench_extra_get(r, "sqlite_scan_ms"),
                 bench_extra_get(r, "sqlite_index_create_ms") / 1e3);
}

static void w_query_index_eq(void)
{
    ensure_loaded(); /* query_load's row first */
    bench_result *r = bench_result_new(lookup_name.workload, "queries/s");
    run_lookup(&lookup_name, r);
    r->target = ">= 50x the full scan";
    r->met = r->kd.ran ? bench_extra_get(r, "speedup_vs_scan") >= 50 : -1;
    lookup_note(r, "`name = \"user-…\"` (1 match), rows returned");
}

static void w_query_index_eq_country(void)
{
    ensure_loaded();
    bench_result *r = bench_result_new(lookup_country.workload, "queries/s");
    run_lookup(&lookup_country, r);
    lookup_note(r, "`country = \"…\"` + count (5% match; SQLite counts from its index alone)");
}

/* ------------------------------------------------------------------------
 * Incremental view maintenance (query_view_write_cost)
 * ---------------------------------------------------------------------- */

#define VIEW_PUTS 200000
#define VIEW_ROUNDS 5   /* rounds, each writing all puts into two fresh databases */
#define VIEW_BLOCK 2000 /* puts per turn: the two databases take turns */
#define VIEW_NAME "active_docs"

static uint64_t view_puts(void)
{
    uint64_t n = g_cfg.quick ? 10000 : VIEW_PUTS, docs = query_docs();
    return n < docs ? n : docs;
}

/* Check the view of db against `matching` (and against a scan). */
static void view_check(kd_db *db, uint64_t matching)
{
    kd_result *res = NULL;
    kdb_check(db, kd_view_query(db, VIEW_NAME, 0, 1, &res), "kd_view_query");
    uint64_t rows = res->total;
    kd_result_free(res);
    kd_query *cq = kd_compile("{\"filter\": \"status = \\\"active\\\"\", \"aggregate\": [\"count\"]}");
    kdb_check(db, kd_query_run(db, QUERY_NS, cq, &res), "kd_query_run");
    uint64_t scanned = res->total;
    kd_result_free(res);
    kd_query_free(cq);
    if (rows != matching || scanned != matching)
        bench_die("MISMATCH in query_view_write_cost: the view has %llu rows, a scan finds %llu, the data has "
                  "%llu matching keys",
                  (unsigned long long)rows, (unsigned long long)scanned, (unsigned long long)matching);
}

/* Put docs [from, to) into db; returns the time taken. */
static uint64_t view_block(kd_db *db, const doc_set *s, const char (*keys)[16], uint64_t from, uint64_t to)
{
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = from; i < to; i++) {
        int rc = kd_put(db, QUERY_NS, keys[i], s->text + s->off[i], s->off[i + 1] - s->off[i], NULL);
        if (rc != KD_OK)
            kdb_check(db, rc, "kd_put");
    }
    return bench_now_ns() - t0;
}

/* One round: two fresh databases, one with an auto-refresh view on the
 * namespace, written in turns of VIEW_BLOCK puts (the order of each turn
 * alternating), so that the machine's drift and noise — large on this
 * shared machine, whole runs differ by 50% — fall on both alike. */
static void view_round(const doc_set *s, const char (*keys)[16], const kd_query *vq, uint64_t matching,
                       uint64_t *t_plain, uint64_t *t_view)
{
    char dp[4096], dv[4096];
    bench_path(dp, sizeof dp, "view-plain.kd");
    bench_path(dv, sizeof dv, "view-view.kd");
    bench_rm_rf(dp);
    bench_rm_rf(dv);
    kd_db *plain = kdb_open(dp, KD_SYNC_NONE), *view = kdb_open(dv, KD_SYNC_NONE);
    kdb_check(view, kd_view_create(view, VIEW_NAME, QUERY_NS, vq, "kd_bench", 1), "kd_view_create");
    *t_plain = *t_view = 0;
    for (uint64_t from = 0, turn = 0; from < s->n; from += VIEW_BLOCK, turn++) {
        uint64_t to = from + VIEW_BLOCK < s->n ? from + VIEW_BLOCK : s->n;
        if (turn % 2 == 0) {
            *t_plain += view_block(plain, s, keys, from, to);
            *t_view += view_block(view, s, keys, from, to);
        } else {
            *t_view += view_block(view, s, keys, from, to);
            *t_plain += view_block(plain, s, keys, from, to);
        }
    }
    view_check(view, matching);
    if (kd_close(plain) != KD_OK || kd_close(view) != KD_OK)
        bench_die("korudelta: kd_close failed");
    bench_rm_rf(dp);
    bench_rm_rf(dv);
}

static void w_query_view_write_cost(void)
{
    bench_result *r = bench_result_new("query_view_write_cost", "puts/s");
    r->no_ratio = 1;
    r->target = "<= 20% added to put cost";
    r->met = -1;
    if (!(g_cfg.sides & BENCH_SIDE_KD)) {
        snprintf(r->note, sizeof r->note, "KoruDelta only: not run");
        return;
    }
    uint64_t n = view_puts(), matching = 0;
    doc_set s;
    docs_fill(&s, n, NULL);
    char(*keys)[16] = bench_xmalloc((size_t)n * sizeof *keys);
    for (uint64_t i = 0; i < n; i++) {
        doc_key(keys[i], sizeof keys[i], i);
        matching += doc_make(i).status == 0;
    }
    kd_query *vq = kd_compile("{\"filter\": \"status = \\\"active\\\"\"}");
    uint64_t plain[VIEW_ROUNDS], view[VIEW_ROUNDS];
    double pct[VIEW_ROUNDS];
    view_round(&s, (const char(*)[16])keys, vq, matching, &plain[0], &view[0]); /* warm-up, not counted */
    for (int i = 0; i < VIEW_ROUNDS; i++) {
        view_round(&s, (const char(*)[16])keys, vq, matching, &plain[i], &view[i]);
        pct[i] = ((double)view[i] / (double)plain[i] - 1) * 100;
    }
    kd_query_free(vq);
    free(keys);
    docs_free(&s);
    qsort(plain, VIEW_ROUNDS, sizeof plain[0], cmp_u64);
    qsort(view, VIEW_ROUNDS, sizeof view[0], cmp_u64);
    for (int i = 1; i < VIEW_ROUNDS; i++) /* sort the per-round overheads */
        for (int k = i; k > 0 && pct[k - 1] > pct[k]; k--) {
            double t = pct[k];
            pct[k] = pct[k - 1];
            pct[k - 1] = t;
        }
    double t_plain = (double)plain[VIEW_ROUNDS / 2] / 1e9, t_view = (double)view[VIEW_ROUNDS / 2] / 1e9;
    double overhead = pct[VIEW_ROUNDS / 2];
    r->kd.ran = 1;
    r->kd.ops = n;
    r->kd.seconds = t_view;
    r->kd.rate = (double)n / t_view;
    bench_result_extra(r, "baseline", (double)n / t_plain);
    bench_result_extra(r, "overhead_pct", overhead);
    bench_result_extra(r, "overhead_pct_min", pct[0]);
    bench_result_extra(r, "overhead_pct_max", pct[VIEW_ROUNDS - 1]);
    bench_result_extra(r, "puts", (double)n);
    bench_result_extra(r, "rounds", VIEW_ROUNDS);
    bench_result_extra(r, "view_rows", (double)matching);
    r->met = overhead <= 20;
    snprintf(r->note, sizeof r->note,
             "kd_put of %llu docs, sync=none, into two fresh dbs taking turns of %d puts, one with view "
             "`status = \"active\"` (%llu rows): %+.1f%% (median of %d rounds; range %+.1f%% .. %+.1f%%); "
             "baseline %.0f/s",
             (unsigned long long)n, VIEW_BLOCK, (unsigned long long)matching, overhead, VIEW_ROUNDS, pct[0],
             pct[VIEW_ROUNDS - 1], (double)n / t_plain);
}

const bench_workload bench_query_workloads[] = {
    {"query_scan_filter", "kd_query_run: filter + count over 1,000,000 docs (full scan)", w_query_scan_filter, 1},
    {"query_group_by", "kd_query_run: group by country, count + avg:score", w_query_group_by, 1},
    {"query_top10", "kd_query_run: filter, sort score:desc, limit 10", w_query_top10, 1},
    {"query_index_eq", "kd_query_run: name = literal (1 match) through an index vs a full scan", w_query_index_eq, 1},
    {"query_index_eq_country", "kd_query_run: country = literal (~5%) through an index vs a full scan",
     w_query_index_eq_country, 1},
    {"query_view_write_cost", "kd_put with and without an auto-refresh view on the namespace",
     w_query_view_write_cost, 1},
};
const size_t bench_nquery_workloads = sizeof bench_query_workloads / sizeof bench_query_workloads[0];
