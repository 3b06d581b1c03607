/*
 * workloads_consolidate.c — consolidation (issue 7, the cold tier): the
 * compression ratio on ../shared/data/json-corpus, what consolidating
 * costs, and what a compressed value costs to read.
 *
 * The corpus is cut into the records an application would store, one
 * value each: every line of amazon_cellphones.ndjson, every status of
 * twitter.json, every event and performance of citm_catalog.json. They are
 * written to KoruDelta (1 MiB segments) in two halves, each consolidated
 * after it is written: the first trains the dictionary, the second is
 * compressed with it (the headline ratio: values the dictionary never saw,
 * as in a database that keeps growing). The same records go into a SQLite
 * history table for its file size.
 *
 * Figures: the values' bytes before and after (the ratio), the log's bytes
 * before and after, the SQLite file holding the same values, and two zstd
 * references computed here with libzstd at the same level: every value
 * compressed on its own without a dictionary (what consolidation would do
 * without one) and all values as one stream (the best case: no random
 * access). Then uncached kd_get latency of a random record, plain and
 * compressed (value cache off; pages in the page cache).
 */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "bench.h"

typedef struct records {
    char **v;
    size_t *len;
    size_t n, cap;
    uint64_t bytes;
} records;

static void add_record(records *r, const char *p, size_t n)
{
    char *canon = NULL;
    size_t clen = 0;
    char err[128];
    if (kd_json_canonical(p, n, &canon, &clen, err, sizeof err) != KD_OK)
        bench_die("json-corpus: a record is not JSON: %s", err);
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        r->len = realloc(r->len, r->cap * sizeof *r->len);
        if (!r->v || !r->len)
            bench_die("out of memory");
    }
    r->v[r->n] = canon;
    r->len[r->n++] = clen;
    r->bytes += clen;
}

/* Each direct member value of the JSON array or object `p` (n bytes). */
static void split(records *r, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] != '[' && p[i] != '{')
        i++;
    int object = i < n && p[i] == '{';
    int depth = 0, in_str = 0;
    size_t start = 0;
    int want_value = !object;
    for (i++; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (depth == 0 && !start && want_value && c != ' ' && c != '\n' && c != '\t' && c != '\r' && c != ',' &&
            c != ':' && c != ']' && c != '}')
            start = i + 1; /* +1: 0 means none */
        if (c == '"')
            in_str = 1;
        else if (c == '[' || c == '{')
            depth++;
        else if ((c == ']' || c == '}') && depth > 0)
            depth--;
        else if (depth == 0 && (c == ',' || c == ']' || c == '}')) {
            if (start)
                add_record(r, p + start - 1, i - (start - 1));
            start = 0;
            want_value = !object;
            if (c != ',')
                break;
        } else if (depth == 0 && c == ':' && object) {
            want_value = 1;
        }
    }
}

static int load_corpus(records *r)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/json-corpus/amazon_cellphones.ndjson", g_cfg.data_dir);
    char *text = bench_read_file(path, &len);
    if (!text)
        return -1;
    for (char *line = text, *end; line < text + len; line = end + 1) {
        end = memchr(line, '\n', (size_t)(text + len - line));
        if (!end)
            end = text + len;
        if (end > line)
            add_record(r, line, (size_t)(end - line));
    }
    free(text);
    static const struct {
        const char *file, *member;
    } parts[] = {{"twitter.json", "statuses"}, {"citm_catalog.json", "events"}, {"citm_catalog.json", "performances"}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        snprintf(path, sizeof path, "%s/json-corpus/%s", g_cfg.data_dir, parts[i].file);
        if (!(text = bench_read_file(path, &len)))
            return -1;
        char *canon = NULL, err[128];
        size_t clen = 0;
        const char *m;
        size_t mlen;
        if (kd_json_canonical(text, len, &canon, &clen, err, sizeof err) != KD_OK ||
            kd_json_path(canon, clen, parts[i].member, &m, &mlen) != KD_OK)
            bench_die("json-corpus: %s has no member %s", parts[i].file, parts[i].member);
        split(r, m, mlen);
        kd_free(canon);
        free(text);
    }
    return 0;
}

static kd_db *open_small_segments(const char *dir, size_t cache)
{
    kd_options *o = kd_options_new();
    char err[512] = "";
    kd_db *db = NULL;
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_segment_size(o, 1u << 20);
    kd_options_set_upkeep_interval(o, 0);
    kd_options_set_cache_size(o, cache);
    int rc = kd_open(dir, o, &db, err, sizeof err);
    kd_options_free(o);
    if (rc != KD_OK)
        bench_die("korudelta: kd_open(%s): %s", dir, err);
    return db;
}

typedef struct reader {
    kd_db *db;
    const records *r;
    uint64_t seed;
} reader;

/* Bytes of the log's segments (kd_stats), not of the checkpoint and
 * dictionary files beside them. */
static uint64_t log_bytes(kd_db *db)
{
    kd_stats st;
    kdb_check(db, kd_stats_get(db, &st), "kd_stats_get");
    return st.disk_bytes;
}

static int get_one(void *ctx, uint64_t i)
{
    (void)i;
    reader *g = ctx;
    char key[32];
    uint64_t k = bench_rand(&g->seed) % (g->r->n / 2) * 2; /* the first half: records of even index */
    snprintf(key, sizeof key, "r%06" PRIu64, k);
    char *v = NULL;
    size_t n = 0;
    kdb_check(g->db, kd_get(g->db, "corpus", key, &v, &n, NULL), "kd_get");
    if (n != g->r->len[k])
        bench_die("korudelta: %s read back %zu bytes instead of %zu", key, n, g->r->len[k]);
    kd_free(v);
    return 0;
}

static uint64_t sqlite_bytes(const char *file, const records *r)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    if (sqlite3_open(file, &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE h(key TEXT, ts INTEGER, value TEXT, "
                         "PRIMARY KEY(key, ts)) WITHOUT ROWID; BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO h VALUES (?, ?, ?)", -1, &st, NULL) != SQLITE_OK)
        bench_die("sqlite: %s", sqlite3_errmsg(db));
    for (size_t i = 0; i < r->n; i++) {
        char key[32];
        snprintf(key, sizeof key, "r%06zu", i);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i + 1);
        sqlite3_bind_text(st, 3, r->v[i], (int)r->len[i], SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            bench_die("sqlite: %s", sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE); VACUUM", NULL, NULL, NULL) != SQLITE_OK)
        bench_die("sqlite: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
    return bench_du(file);
}

/* The zstd references: each value alone (no dictionary), and one stream. */
static void zstd_refs(const records *r, uint64_t *each, uint64_t *stream)
{
    size_t cap = ZSTD_compressBound(r->bytes);
    char *all = bench_xmalloc(r->bytes + 1), *out = bench_xmalloc(cap);
    size_t at = 0;
    *each = 0;
    for (size_t i = 0; i < r->n; i++) {
        size_t z = ZSTD_compress(out, cap, r->v[i], r->len[i], 3);
        if (ZSTD_isError(z))
            bench_die("zstd: %s", ZSTD_getErrorName(z));
        *each += z < r->len[i] ? z : r->len[i];
        memcpy(all + at, r->v[i], r->len[i]);
        at += r->len[i];
    }
    size_t z = ZSTD_compress(out, cap, all, at, 3);
    if (ZSTD_isError(z))
        bench_die("zstd: %s", ZSTD_getErrorName(z));
    *stream = z;
    free(all);
    free(out);
}

static void read_latency(const char *dir, const records *r, bench_side *side)
{
    kd_db *db = open_small_segments(dir, 0);
    reader g = {db, r, 42};
    bench_run_loop(side, get_one, &g, g_cfg.quick ? 2000 : 200000, g_cfg.quick ? 1000 : 20000, 0);
    kdb_close(db);
}

void bench_w_consolidate(void)
{
    bench_result *res = bench_result_new("consolidate", "x");
    if (!(g_cfg.sides & BENCH_SIDE_KD))
        return;
    if (!g_cfg.data_dir) {
        snprintf(res->note, sizeof res->note, "skipped: ../shared/data/json-corpus not found");
        return;
    }
    records r = {0};
    if (load_corpus(&r))
        bench_die("json-corpus: cannot read it under %s", g_cfg.data_dir);
    char dir[4096], sq[4096];
    bench_path(dir, sizeof dir, "consolidate.kd");
    bench_path(sq, sizeof sq, "consolidate.sqlite");
    bench_rm_rf(dir);
    bench_rm_rf(sq);
    /* Two rounds: the records of even index, consolidated (the dictionary
     * is trained on them), then the odd ones, consolidated with that
     * dictionary: the second round's ratio is on values it never saw. */
    kd_consolidate_report first, rep;
    uint64_t took[2], round_plain[2], log_after = 0;
    bench_side plain = {0}, packed = {0};
    for (int round = 0; round < 2; round++) {
        kd_db *db = open_small_segments(dir, 0);
        for (size_t i = (size_t)round; i < r.n; i += 2) {
            char key[32];
            snprintf(key, sizeof key, "r%06zu", i);
            kdb_check(db, kd_put(db, "corpus", key, r.v[i], r.len[i], NULL), "kd_put");
        }
        uint64_t written = log_bytes(db);
        kdb_close(db);
        if (round == 0)
            read_latency(dir, &r, &plain); /* the first half, plain */
        db = open_small_segments(dir, 0);
        uint64_t t0 = bench_now_ns();
        kdb_check(db, kd_consolidate(db, 0, round ? &rep : &first), "kd_consolidate");
        took[round] = bench_now_ns() - t0;
        kd_verify_report vr;
        kdb_check(db, kd_verify(db, &vr), "kd_verify after consolidation");
        /* what this round wrote, plain, and the whole log afterwards */
        round_plain[round] = written - (round ? log_after : 0);
        log_after = log_bytes(db);
        kdb_close(db);
    }
    read_latency(dir, &r, &packed); /* the first half again, compressed */
    uint64_t log_before = round_plain[0] + round_plain[1]; /* the log had nothing been consolidated */
    uint64_t sq_bytes = sqlite_bytes(sq, &r), each, stream;
    zstd_refs(&r, &each, &stream);
    bench_rm_rf(dir);
    bench_rm_rf(sq);

    double ratio = rep.value_bytes_after ? (double)rep.value_bytes_before / (double)rep.value_bytes_after : 0;
    double ratio_seen = first.value_bytes_after ? (double)first.value_bytes_before / (double)first.value_bytes_after
                                                : 0;
    double secs = (double)took[1] / 1e9;
    res->kd.ran = 1;
    res->kd.ops = rep.values_compressed;
    res->kd.seconds = secs;
    res->kd.rate = ratio;
    res->kd.median_ns = packed.median_ns;
    res->kd.p99_ns = packed.p99_ns;
    snprintf(res->kd.text, sizeof res->kd.text, "%.2fx", ratio);
    res->sq.ran = 1;
    res->sq.rate = (double)r.bytes / (double)sq_bytes;
    res->sq.median_ns = res->sq.p99_ns = -1;
    snprintf(res->sq.text, sizeof res->sq.text, "%.2fx", res->sq.rate);
    res->no_ratio = 1;
    bench_result_extra(res, "value_mb", (double)r.bytes / 1048576.0);
    bench_result_extra(res, "ratio_trained_on_them", ratio_seen);
    bench_result_extra(res, "log_mb_before", (double)log_before / 1048576.0);
    bench_result_extra(res, "log_mb_after", (double)log_after / 1048576.0);
    bench_result_extra(res, "sqlite_mb", (double)sq_bytes / 1048576.0);
    bench_result_extra(res, "zstd_each_ratio", (double)r.bytes / (double)each);
    bench_result_extra(res, "zstd_stream_ratio", (double)r.bytes / (double)stream);
    bench_result_extra(res, "consolidate_mb_per_s", (double)round_plain[1] / 1048576.0 / secs);
    bench_result_extra(res, "train_and_consolidate_ms", (double)took[0] / 1e6);
    bench_result_extra(res, "get_plain_p50_ns", plain.median_ns);
    bench_result_extra(res, "get_zstd_p50_ns", packed.median_ns);
    bench_result_extra(res, "get_zstd_p99_ns", packed.p99_ns);
    snprintf(res->note, sizeof res->note,
             "%zu records, %.2f MB: %.2fx (dictionary from other records; %.2fx on its own), log %.2f->%.2f MB, "
             "SQLite %.2f MB; zstd-3 alone %.2fx, stream %.2fx; get p50 %.1f us plain, %.1f us zstd",
             r.n, (double)r.bytes / 1048576.0, ratio, ratio_seen, (double)log_before / 1048576.0,
             (double)log_after / 1048576.0, (double)sq_bytes / 1048576.0, (double)r.bytes / (double)each,
             (double)r.bytes / (double)stream, plain.median_ns / 1e3, packed.median_ns / 1e3);
    for (size_t i = 0; i < r.n; i++)
        kd_free(r.v[i]);
    free(r.v);
    free(r.len);
}
