/*
 * query.c — running queries: kd_query_run over a namespace (now or as of a
 * time), kd_query_history over the versions of one key, and the results
 * (kd_result_json, kd_result_free).
 *
 * A run is one pass over the namespace (kd__scan_raw hands over pages of
 * raw canonical values without a lock held). The filter is evaluated on
 * the raw text; a match costs no allocation: aggregations fold it into
 * their accumulators (query_agg.c), row queries remember only (key,
 * version position) and, when sorting, copies of the sort fields' values
 * in one growing buffer. After the pass the matches are ordered (a
 * bounded heap when only the first offset+limit are wanted) and only the
 * rows of the page have their values fetched, projected and copied out,
 * a few hundred at a time under the index's read lock.
 *
 * A query without "at" runs as of the moment it starts (the newest visible
 * write then), so one result is one consistent state even while writers
 * write. Ties in any order are broken by key bytes, then by version (time),
 * so a query always returns the same order. docs/QUERY.md "Queries".
 */
#include <stdlib.h>
#include <string.h>

#include "../db_int.h"
#include "../json/json.h"
#include "qrun.h"
#include "query.h"
#include "sindex.h"

/* ------------------------------------------------------------------------
 * Matches
 * ---------------------------------------------------------------------- */

typedef struct match {
    const kd__key *k;
    uint32_t pos; /* version in k->vers */
    size_t sv;    /* first of its n_sort slices (when sorting) */
} match;

/* A copied sort value: off into the slice buffer, or missing. */
typedef struct slice {
    size_t off, len;
} slice;
#define SLICE_MISSING SIZE_MAX

typedef struct run {
    kd_db *db;
    const kd_query *q;
    kd__agg *agg; /* aggregating: matches are folded in, not kept */
    int keep;     /* keep matches (rows wanted) */
    uint64_t total;
    match *m;
    size_t n, cap;
    slice *sl; /* n_sort per match */
    size_t nsl, capsl;
    kd__buf svals; /* bytes of the sort values */
    int rc;
} run;

static int add_match(run *r, const kd__key *k, uint32_t pos, kd__jv v)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        match *m = realloc(r->m, cap * sizeof *m);
        if (!m)
            return KD_ENOMEM;
        r->m = m;
        r->cap = cap;
    }
    match *m = &r->m[r->n++];
    m->k = k;
    m->pos = pos;
    m->sv = r->nsl;
    size_t ns = r->q->n_sort;
    if (!ns)
        return KD_OK;
    if (r->nsl + ns > r->capsl) {
        size_t cap = r->capsl ? r->capsl * 2 : 1024 * ns;
        slice *s = realloc(r->sl, cap * sizeof *s);
        if (!s)
            return KD_ENOMEM;
        r->sl = s;
        r->capsl = cap;
    }
    for (size_t i = 0; i < ns; i++) {
        kd__jv x = v.p ? kd__jv_at(v, &r->q->sort[i].path) : KD__JV_MISSING;
        slice *s = &r->sl[r->nsl++];
        if (!x.p) {
            s->off = SLICE_MISSING;
            s->len = 0;
            continue;
        }
        s->off = r->svals.len;
        s->len = x.len;
        if (kd__buf_append(&r->svals, x.p, x.len))
            return KD_ENOMEM;
    }
    return KD_OK;
}

/* One match: folded into the aggregation, or kept, or only counted. */
static int on_match(run *r, const kd__key *k, uint32_t pos, kd__jv v)
{
    r->total++;
    if (r->agg)
        return kd__agg_feed(r->agg, v);
    if (r->keep)
        return add_match(r, k, pos, v);
    return KD_OK;
}

static int scan_cb(void *ctx, const kd__scan_item *it, size_t n)
{
    run *r = ctx;
    const kd_filter *f = r->q->filter;
    for (size_t i = 0; i < n; i++) {
        kd__jv v = {it[i].value, it[i].value_len};
        if (f && !kd__filter_eval(f, v))
            continue;
        if ((r->rc = on_match(r, it[i].key, it[i].pos, v)))
            return r->rc;
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Ordering
 * ---------------------------------------------------------------------- */

static inline kd__jv slice_jv(const run *r, size_t i)
{
    const slice *s = &r->sl[i];
    if (s->off == SLICE_MISSING)
        return KD__JV_MISSING;
    return (kd__jv){r->svals.data + s->off, s->len};
}

static int cmp_match(const void *x, const void *y, void *ctx)
{
    const run *r = ctx;
    const match *a = x, *b = y;
    for (size_t i = 0; i < r->q->n_sort; i++) {
        int c = kd__jv_cmp(slice_jv(r, a->sv + i), slice_jv(r, b->sv + i));
        if (c)
            return r->q->sort[i].desc ? (c < 0 ? 1 : -1) : (c < 0 ? -1 : 1);
    }
    if (a->k != b->k) {
        int c = kd__name_cmp(a->k->name, a->k->len, b->k->name, b->k->len);
        if (c)
            return c;
    }
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static void swap_match(match *a, match *b)
{
    match t = *a;
    *a = *b;
    *b = t;
}

/* Max-heap on cmp_match: the root is the greatest kept match. */
static void sift_down(const run *r, match *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, big = i;
        if (l < n && cmp_match(&h[l], &h[big], (void *)r) > 0)
            big = l;
        if (l + 1 < n && cmp_match(&h[l + 1], &h[big], (void *)r) > 0)
            big = l + 1;
        if (big == i)
            return;
        swap_match(&h[i], &h[big]);
        i = big;
    }
}

/* Put the smallest `want` matches, in order, at the front of r->m; leave
 * r->n at most want. */
static void order_matches(run *r, size_t want)
{
    if (want < r->n && want <= r->n / 4) {
        /* Keep the `want` smallest in a max-heap over the first want slots. */
        match *h = r->m;
        for (size_t i = want / 2; i-- > 0;)
            sift_down(r, h, want, i);
        for (size_t i = want; i < r->n && want; i++) {
            if (cmp_match(&r->m[i], &h[0], r) < 0) {
                h[0] = r->m[i];
                sift_down(r, h, want, 0);
            }
        }
        r->n = want;
        if (want > 1)
            qsort_r(r->m, want, sizeof *r->m, cmp_match, r);
        return;
    }
    if (r->n > 1)
        qsort_r(r->m, r->n, sizeof *r->m, cmp_match, r);
    if (want < r->n)
        r->n = want;
}

/* ------------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------- */

/* Rows' keys and values are carved from blocks owned by the result. */
typedef struct rblock {
    struct rblock *next;
    size_t used, size;
    char data[];
} rblock;

typedef struct result {
    kd_result pub; /* first: kd_result_free casts back */
    rblock *blocks;
} result;

static char *rmem(result *res, size_t n)
{
    rblock *b = res->blocks;
    if (!b || b->size - b->used < n) {
        size_t size = n > 65536 - sizeof *b ? n : 65536 - sizeof *b;
        if (!(b = malloc(sizeof *b + size)))
            return NULL;
        b->next = res->blocks;
        b->used = 0;
        b->size = size;
        res->blocks = b;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

static char *rcopy(result *res, const char *s, size_t n)
{
    char *p = rmem(res, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

KD_EXPORT void kd_result_free(kd_result *r)
{
    if (!r)
        return;
    result *res = (result *)r;
    for (rblock *b = res->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(r->rows);
    free(r->aggregates);
    free(res);
}

/* The projection of v: {"path":value,…} for the select paths present. */
static int project(const kd_query *q, kd__jv v, kd__buf *out)
{
    kd__buf_reset(out);
    if (kd__buf_putc(out, '{'))
        return KD_ENOMEM;
    int first = 1;
    for (size_t i = 0; i < q->n_select; i++) {
        kd__jv x = kd__jv_at(v, &q->select[i].path);
        if (!x.p)
            continue;
        if ((!first && kd__buf_putc(out, ',')) ||
            kd__buf_append(out, q->select[i].quoted, q->select[i].quoted_len) || kd__buf_putc(out, ':') ||
            kd__buf_append(out, x.p, x.len))
            return KD_ENOMEM;
        first = 0;
    }
    return kd__buf_putc(out, '}');
}

#define ROWS_PER_LOCK 256

/* Rows for r->m[from..r->n): versions, keys and (projected) values, read
 * under the index's read lock ROWS_PER_LOCK at a time. */
static int make_rows(run *r, size_t from, result *res)
{
    kd_db *db = r->db;
    size_t n = from < r->n ? r->n - from : 0;
    if (!n)
        return KD_OK;
    if (!(res->pub.rows = calloc(n, sizeof *res->pub.rows)))
        return KD_ENOMEM;
    kd__buf scratch = KD__BUF_INIT, proj = KD__BUF_INIT;
    int rc = KD_OK;
    for (size_t done = 0; done < n && !rc;) {
        size_t end = done + ROWS_PER_LOCK < n ? done + ROWS_PER_LOCK : n;
        pthread_rwlock_rdlock(&db->ix_lock);
        for (; done < end && !rc; done++) {
            const match *m = &r->m[from + done];
            kd_row *row = &res->pub.rows[done];
            kd__fill_version(db, m->k, m->pos, &row->version);
            if (!(row->key = rcopy(res, m->k->name, m->k->len))) {
                rc = KD_ENOMEM;
                break;
            }
            uint32_t vidx = kd__ver_value(db, m->k, m->pos);
            if (vidx == KD__NO_VALUE)
                continue; /* a tombstone or a pruned version (history): value NULL */
            const char *p;
            size_t len;
            if ((rc = kd__value_bytes(db, vidx, &scratch, &p, &len)))
                break;
            if (r->q->n_select) {
                if ((rc = project(r->q, (kd__jv){p, len}, &proj)))
                    break;
                p = proj.data;
                len = proj.len;
            }
            if (!(row->value = rcopy(res, p, len))) {
                rc = KD_ENOMEM;
                break;
            }
            row->value_len = len;
        }
        pthread_rwlock_unlock(&db->ix_lock);
        kd__mem_trim_reads(db, 0); /* the log pages these values were read from */
    }
    kd__buf_free(&scratch);
    kd__buf_free(&proj);
    res->pub.n_rows = n;
    return rc;
}

static void run_free(run *r)
{
    kd__agg_free(r->agg);
    free(r->m);
    free(r->sl);
    kd__buf_free(&r->svals);
}

/* After the matches are in: the aggregates, or the ordered page. The page
 * is q's offset/limit, then within it extra_off/extra_lim (0: no limit; for
 * views). With window_total, total becomes the size of q's window. */
static int finish(run *r, result *res, size_t extra_off, size_t extra_lim, int window_total)
{
    const kd_query *q = r->q;
    int rc;
    if (r->agg) {
        kd__buf b = KD__BUF_INIT;
        if ((rc = kd__agg_finish(r->agg, &b))) {
            kd__buf_free(&b);
            return rc;
        }
        if (!(res->pub.aggregates = kd__buf_steal(&b, &res->pub.aggregates_len)))
            return KD_ENOMEM;
        return KD_OK;
    }
    size_t n = r->n;
    size_t s1 = q->offset < n ? (size_t)q->offset : n;
    size_t e1 = q->has_limit && q->limit < n - s1 ? s1 + (size_t)q->limit : n;
    size_t s = extra_off < e1 - s1 ? s1 + extra_off : e1;
    size_t e = extra_lim && extra_lim < e1 - s ? s + extra_lim : e1;
    if (window_total)
        res->pub.total = e1 - s1;
    order_matches(r, e);
    return make_rows(r, s, res);
}

static const char *rc_text(int rc)
{
    return rc == KD_ENOMEM ? "out of memory" : kd_strerror(rc);
}

/* The database's own namespaces are not for queries (views and indexes
 * reach them through kd__query_run_keys). */
static int reserved(kd_db *db, const char *ns)
{
    return kd__err(db, KD_ERESERVED, "namespace '%.255s' is reserved: names starting with _kd belong to the database",
                   ns);
}

#define KEYS_PER_LOCK 256

/* Like kd__scan_raw over the given keys only, each at its version at
 * time `at`: the candidates a secondary index named. */
static int scan_keys(run *r, const kd__key *const *keys, size_t n, int64_t at)
{
    kd_db *db = r->db;
    kd__buf scratch = KD__BUF_INIT;
    int rc = KD_OK;
    for (size_t i = 0; i < n && !rc;) {
        size_t end = i + KEYS_PER_LOCK < n ? i + KEYS_PER_LOCK : n;
        pthread_rwlock_rdlock(&db->ix_lock);
        for (; i < end && !rc; i++) {
            const kd__key *k = keys[i];
            uint32_t pos = kd__key_upper(k, at);
            uint32_t vidx = pos ? kd__ver_value(db, k, pos - 1) : KD__NO_VALUE;
            if (vidx == KD__NO_VALUE)
                continue;
            const char *p;
            size_t len;
            if ((rc = kd__value_bytes(db, vidx, &scratch, &p, &len)))
                break;
            kd__jv v = {p, len};
            if (!kd__filter_eval(r->q->filter, v))
                continue;
            rc = on_match(r, k, pos - 1, v);
        }
        pthread_rwlock_unlock(&db->ix_lock);
        kd__mem_trim_reads(db, 0);
    }
    kd__buf_free(&scratch);
    if (rc)
        return kd__err(db, rc, "query: %s", rc_text(rc));
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * kd_query_run
 * ---------------------------------------------------------------------- */

KD_EXPORT int kd_query_run(kd_db *db, const char *ns, const kd_query *q, kd_result **out)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    if (!out)
        return kd__err(db, KD_EMISUSE, "kd_query_run: out is NULL");
    *out = NULL;
    if (!q)
        return kd__err(db, KD_EMISUSE, "kd_query_run: query is NULL");
    if (!ns || !*ns)
        return kd__err(db, KD_EINVALID, "namespace must be non-empty");
    if (!strncmp(ns, "_kd", 3))
        return reserved(db, ns);
    KD__WS_NS(db, ns);
    if (q->has_from || q->has_to || q->has_latest)
        return kd__err(db, KD_EINVALID, "%s: only for history queries (kd_query_history)",
                       q->has_from ? "from" : q->has_to ? "to" : "latest");
    result *res = calloc(1, sizeof *res);
    if (!res)
        return kd__err(db, KD_ENOMEM, "out of memory");
    run r = {0};
    r.db = db;
    r.q = q;
    r.keep = !q->has_limit || q->limit > 0;
    int rc = KD_OK;
    if (q->n_aggs && (rc = kd__agg_new(q, &r.agg))) {
        kd_result_free(&res->pub);
        return kd__err(db, rc, "out of memory");
    }
    /* A secondary index may name the candidates (current state only). */
    const kd__key **cand = NULL;
    size_t ncand = 0;
    int64_t snap = 0;
    int use = q->filter && !q->has_at ? kd__sindex_candidates(db, ns, q->filter, &cand, &ncand, &snap) : 0;
    if (use < 0)
        rc = kd__err(db, use, "query: %s", rc_text(use));
    else if (use)
        rc = scan_keys(&r, cand, ncand, snap);
    else
        rc = kd__scan_raw(db, ns, q->has_at ? q->at : kd__visible(db), scan_cb, &r);
    free(cand);
    if (rc && r.rc)
        rc = kd__err(db, rc, "query: %s", rc_text(rc)); /* the callback's code, passed through */
    if (!rc) {
        res->pub.total = r.total;
        if ((rc = finish(&r, res, 0, 0, 0)))
            rc = kd__err(db, rc, "query: %s", rc_text(rc));
    }
    run_free(&r);
    if (rc) {
        kd_result_free(&res->pub);
        return rc;
    }
    *out = &res->pub;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * kd_query_history
 * ---------------------------------------------------------------------- */

KD_EXPORT int kd_query_history(kd_db *db, const char *ns, const char *key, const kd_query *q, kd_result **out)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    if (!out)
        return kd__err(db, KD_EMISUSE, "kd_query_history: out is NULL");
    *out = NULL;
    if (!q)
        return kd__err(db, KD_EMISUSE, "kd_query_history: query is NULL");
    if (!ns || !key || !*ns || !*key)
        return kd__err(db, KD_EINVALID, "namespace and key must be non-empty");
    if (!strncmp(ns, "_kd", 3))
        return reserved(db, ns);
    KD__WS_NS(db, ns);
    if (q->has_at)
        return kd__err(db, KD_EINVALID, "at: not for history queries (use from and to)");
    int64_t from = q->has_from ? q->from : KD_TIME_MIN, to = q->has_to ? q->to : KD_TIME_MAX;
    result *res = calloc(1, sizeof *res);
    if (!res)
        return kd__err(db, KD_ENOMEM, "out of memory");
    run r = {0};
    r.db = db;
    r.q = q;
    r.keep = 1;
    kd__buf scratch = KD__BUF_INIT;
    int rc = KD_OK;

    pthread_rwlock_rdlock(&db->ix_lock);
    const kd__ns *s = kd__qns_find(&db->ix, ns, strlen(ns));
    const kd__key *k = s ? kd__index_key_find(&db->ix, s, key, strlen(key)) : NULL;
    int64_t vis = kd__visible(db);
    if (!k || !k->n || k->vers[0].ts > vis) {
        pthread_rwlock_unlock(&db->ix_lock);
        free(res);
        return kd__err(db, KD_ENOTFOUND, "%s/%s: not found", ns, key);
    }
    if (to > vis)
        to = vis;
    uint32_t lo = from == KD_TIME_MIN ? 0 : kd__key_upper(k, from - 1);
    uint32_t hi = kd__key_upper(k, to);
    /* Pass 1: which versions match (oldest first). A tombstone and a
     * version whose value retention removed have no value: no filter
     * matches them, and they are missing for aggregations. */
    for (uint32_t i = lo; i < hi && !rc; i++) {
        uint32_t vidx = kd__ver_value(db, k, i);
        if (vidx == KD__NO_VALUE) {
            if (q->filter)
                continue;
        } else if (q->filter) {
            const char *p;
            size_t len;
            if ((rc = kd__value_bytes(db, vidx, &scratch, &p, &len)))
                break;
            if (!kd__filter_eval(q->filter, (kd__jv){p, len}))
                continue;
        }
        if (r.n == r.cap) {
            size_t cap = r.cap ? r.cap * 2 : 64;
            match *m = realloc(r.m, cap * sizeof *m);
            if (!m) {
                rc = KD_ENOMEM;
                break;
            }
            r.m = m;
            r.cap = cap;
        }
        r.m[r.n++] = (match){k, i, 0};
    }
    r.total = r.n;
    /* "latest": the newest N matches only. */
    if (!rc && q->has_latest && r.n > q->latest) {
        size_t drop = r.n - (size_t)q->latest;
        memmove(r.m, r.m + drop, (size_t)q->latest * sizeof *r.m);
        r.n = (size_t)q->latest;
    }
    /* Pass 2: aggregate, or copy the sort values of the kept matches. */
    if (!rc && (q->n_aggs || q->n_sort)) {
        size_t n = r.n;
        match *kept = r.m;
        if (q->n_aggs) {
            rc = kd__agg_new(q, &r.agg);
        } else {
            r.m = NULL;
            r.n = r.cap = 0;
        }
        for (size_t j = 0; j < n && !rc; j++) {
            kd__jv v = KD__JV_MISSING;
            uint32_t vidx = kd__ver_value(db, k, kept[j].pos);
            if (vidx != KD__NO_VALUE) {
                const char *p;
                size_t len;
                if ((rc = kd__value_bytes(db, vidx, &scratch, &p, &len)))
                    break;
                v = (kd__jv){p, len};
            }
            rc = r.agg ? kd__agg_feed(r.agg, v) : add_match(&r, k, kept[j].pos, v);
        }
        if (!r.agg)
            free(kept);
    }
    pthread_rwlock_unlock(&db->ix_lock);
    kd__mem_trim_reads(db, 0);
    kd__buf_free(&scratch);

    if (!rc) {
        res->pub.total = r.total;
        rc = finish(&r, res, 0, 0, 0);
    }
    run_free(&r);
    if (rc) {
        kd_result_free(&res->pub);
        return kd__err(db, rc, "history query: %s", rc_text(rc));
    }
    *out = &res->pub;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * kd_result_json
 * ---------------------------------------------------------------------- */

KD_EXPORT int kd_result_json(const kd_db *db, const char *ns, const kd_result *r, char **json, size_t *len)
{
    (void)db;
    if (!json)
        return KD_EINVALID;
    *json = NULL;
    if (len)
        *len = 0;
    if (!r || (!ns && r->n_rows))
        return KD_EINVALID;
    kd__buf b = KD__BUF_INIT;
    int rc = kd__buf_printf(&b, "{\"total\":%llu,", (unsigned long long)r->total);
    if (!rc && r->aggregates) {
        if (!(rc = kd__buf_puts(&b, "\"aggregates\":")))
            rc = kd__buf_append(&b, r->aggregates, r->aggregates_len);
    } else if (!rc) {
        rc = kd__buf_puts(&b, "\"rows\":[");
        for (size_t i = 0; i < r->n_rows && !rc; i++) {
            const kd_row *row = &r->rows[i];
            char *rec = NULL;
            size_t rlen = 0;
            if ((rc = kd_version_json(ns, row->key, row->value, row->value_len, &row->version, &rec, &rlen)))
                break;
            if (i)
                rc = kd__buf_putc(&b, ',');
            if (!rc)
                rc = kd__buf_append(&b, rec, rlen);
            free(rec);
        }
        if (!rc)
            rc = kd__buf_putc(&b, ']');
    }
    if (!rc)
        rc = kd__buf_putc(&b, '}');
    if (rc) {
        kd__buf_free(&b);
        return rc;
    }
    char *p = kd__buf_steal(&b, len);
    if (!p)
        return KD_ENOMEM;
    *json = p;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * For views and indexes (qrun.h)
 * ---------------------------------------------------------------------- */

const kd_filter *kd__query_filter(const kd_query *q)
{
    return q ? q->filter : NULL;
}

int kd__query_has_extras(const kd_query *q)
{
    return q->n_aggs || q->n_group || q->has_at || q->has_from || q->has_to || q->has_latest;
}

int kd__query_run_keys(kd_db *db, const char *ns, const kd_query *q, const kd__key *const *keys, const int64_t *ts,
                       size_t n, size_t offset, size_t limit, kd_result **out)
{
    (void)ns;
    *out = NULL;
    result *res = calloc(1, sizeof *res);
    if (!res)
        return kd__err(db, KD_ENOMEM, "out of memory");
    run r = {0};
    r.db = db;
    r.q = q;
    r.keep = 1;
    kd__buf scratch = KD__BUF_INIT;
    int rc = KD_OK;
    for (size_t i = 0; i < n && !rc;) {
        size_t end = i + KEYS_PER_LOCK < n ? i + KEYS_PER_LOCK : n;
        pthread_rwlock_rdlock(&db->ix_lock);
        for (; i < end && !rc; i++) {
            const kd__key *k = keys[i];
            uint32_t pos = kd__key_upper(k, ts[i]);
            if (!pos || k->vers[pos - 1].ts != ts[i])
                continue; /* not a version of this key: nothing to show */
            if (kd__ver_dropped(k->ns, &k->vers[pos - 1]))
                continue; /* gone with its dropped workspace */
            kd__jv v = KD__JV_MISSING;
            uint32_t vidx = kd__ver_value(db, k, pos - 1);
            if (q->n_sort && vidx != KD__NO_VALUE) {
                const char *p;
                size_t len;
                if ((rc = kd__value_bytes(db, vidx, &scratch, &p, &len)))
                    break;
                v = (kd__jv){p, len};
            }
            rc = add_match(&r, k, pos - 1, v);
        }
        pthread_rwlock_unlock(&db->ix_lock);
        kd__mem_trim_reads(db, 0);
    }
    kd__buf_free(&scratch);
    if (!rc)
        rc = finish(&r, res, offset, limit, 1);
    run_free(&r);
    if (rc) {
        kd_result_free(&res->pub);
        return kd__err(db, rc, "view: %s", rc_text(rc));
    }
    *out = &res->pub;
    return KD_OK;
}
