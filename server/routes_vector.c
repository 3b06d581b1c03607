/*
 * routes_vector.c — the vector store over HTTP (docs/VECTORS.md; the
 * routes are described in docs/HTTP.md, "Vectors", and docs/openapi.yaml).
 *
 * The vector of a key hangs off the key's own path, so that a key is
 * always exactly one path segment and no key ("search", "history", "a/b")
 * can ever be taken for a route, whatever the method:
 *   PUT|GET|DELETE /api/v1/namespaces/{ns}/keys/{key}/vector
 *   GET            /api/v1/namespaces/{ns}/keys/{key}/vector/history
 *   POST           /api/v1/namespaces/{ns}/vectors/search    (one namespace)
 *   GET            /api/v1/namespaces/{ns}/vectors/stats
 *   POST           /api/v1/vectors/search                    (every namespace)
 *   GET            /api/v1/vectors/stats
 *
 * A vector record is the version record of keys (kd_version_json) with the
 * value spelled out:
 *   {"namespace","key","model","dim","vector":[…],"meta","version_id",
 *    "write_id","previous_write_id","timestamp","deleted"}
 * (model, dim, vector and meta null for a tombstone). version_id is the
 * hash of the stored record (vector, model and metadata: docs/VECTORS.md),
 * not of this object. Components and scores are float32 written as the
 * shortest decimal that reads back to the same float32 (kd_vector_to_json);
 * a score that is not finite (a dot product beyond the float range) is the
 * string "inf", "-inf" or "nan".
 *
 * Request bodies are canonicalized by the library and walked with
 * kd_json_next; every name, vector, metric and filter is judged by the
 * library, so its messages (and error names) are the answer. Only the
 * public API is used. Handlers run with a NULL database under
 * tests/fuzz/fuzz_server.c: nothing here reads the database before its
 * input has been checked, and every library call copes with NULL.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "server_int.h"

/* ------------------------------------------------------------------------
 * Writing JSON
 * ---------------------------------------------------------------------- */

/* A name or model as a JSON string (the library's quoting; names it
 * stored are UTF-8, so the fallback is for misuse only). */
static void add_str(ks_buf *b, const char *s)
{
    char *q = NULL;
    size_t ql = 0;
    if (kd_json_quote(s, strlen(s), &q, &ql) == KD_OK)
        ks_buf_add(b, q, ql);
    else
        ks_json_string(b, s, strlen(s));
    kd_free(q);
}

static void add_id(ks_buf *b, const char *name, const char *id)
{
    ks_buf_printf(b, ",\"%s\":", name);
    if (id[0])
        ks_buf_printf(b, "\"%.64s\"", id);
    else
        ks_buf_add(b, "null", 4);
}

static void add_time(ks_buf *b, int64_t ts)
{
    char t[48];
    if (kd_time_format(ts, t, sizeof t) != KD_OK)
        snprintf(t, sizeof t, "@%" PRId64, ts);
    ks_buf_printf(b, ",\"timestamp\":\"%s\"", t);
}

/* A float32 as kd_vector_to_json writes it; "inf", "-inf", "nan" (as
 * strings) when it is not finite. */
static void add_float(ks_buf *b, float f)
{
    if (isnan(f)) {
        ks_buf_add(b, "\"nan\"", 5);
        return;
    }
    if (isinf(f)) {
        ks_buf_add(b, f < 0 ? "\"-inf\"" : "\"inf\"", f < 0 ? 6 : 5);
        return;
    }
    char *t = NULL;
    size_t tl = 0;
    if (kd_vector_to_json(&f, 1, &t, &tl) == KD_OK && tl >= 2)
        ks_buf_add(b, t + 1, tl - 2); /* without the brackets */
    else
        ks_buf_printf(b, "%.9g", (double)f);
    kd_free(t);
}

/* The vector record of ns/key: the vector v, or NULL for a tombstone. */
static int add_record(ks_buf *b, const char *ns, const char *key, const kd_vector *v, const kd_version *ver)
{
    char *arr = NULL;
    size_t alen = 0;
    if (v) {
        int rc = kd_vector_to_json(v->values, v->dim, &arr, &alen);
        if (rc != KD_OK)
            return rc;
    }
    ks_buf_add(b, "{\"namespace\":", 13);
    add_str(b, ns);
    ks_buf_add(b, ",\"key\":", 7);
    add_str(b, key);
    if (v) {
        ks_buf_add(b, ",\"model\":", 9);
        add_str(b, v->model);
        ks_buf_printf(b, ",\"dim\":%zu,\"vector\":", v->dim);
        ks_buf_add(b, arr, alen);
        ks_buf_add(b, ",\"meta\":", 8);
        ks_buf_add(b, v->meta, v->meta_len);
    } else {
        ks_buf_add(b, ",\"model\":null,\"dim\":null,\"vector\":null,\"meta\":null", 50);
    }
    add_id(b, "version_id", ver->version_id);
    add_id(b, "write_id", ver->write_id);
    add_id(b, "previous_write_id", ver->previous_write_id);
    add_time(b, ver->timestamp);
    ks_buf_add(b, ver->deleted ? ",\"deleted\":true" : ",\"deleted\":false", ver->deleted ? 15 : 16);
    /* a version whose vector a compaction removed, as in a key's history */
    if (ver->pruned)
        ks_buf_printf(b, ",\"pruned_by\":\"%s\",\"pruned\":true",
                      ver->pruned == KD_PRUNED_WORKSPACE ? "workspace_drop" : "retention");
    ks_buf_add(b, "}", 1);
    kd_free(arr);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Reading requests
 * ---------------------------------------------------------------------- */

static int lit_is(const char *lit, size_t len, const char *s)
{
    return strlen(s) == len && memcmp(lit, s, len) == 0;
}

/* A JSON string literal as a NUL-terminated string; NULL when it is not a
 * string or holds U+0000. */
static char *unquote(const char *lit, size_t len)
{
    char *out = NULL;
    size_t n = 0;
    if (len == 0 || lit[0] != '"' || kd_json_unquote(lit, len, &out, &n) != KD_OK)
        return NULL;
    if (strlen(out) != n) {
        kd_free(out);
        return NULL;
    }
    return out;
}

/* A member name for messages: at most 100 bytes of its literal. */
#define NAME_ARG(n, l) (int)((l) < 100 ? (l) : 100), (n)

/* A whole number (canonical JSON or query text) in [0, max]; 0 if not. */
static int whole(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 19)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return 0;
    *out = v;
    return 1;
}

/* The request body canonicalized, as an object; NULL after an error
 * response. */
static char *body_object(const ks_request *req, ks_response *res, size_t *len, const char *expected)
{
    char err[512], *canon = NULL;
    if (kd_json_canonical(req->body, req->body_len, &canon, len, err, sizeof err) != KD_OK) {
        ks_error(res, 400, "invalid", "body: %s", err);
        return NULL;
    }
    if (*len == 0 || canon[0] != '{') {
        ks_error(res, 400, "invalid", "body: expected an object %s", expected);
        kd_free(canon);
        return NULL;
    }
    return canon;
}

/* A member holding a vector: floats into *v (kd_free), 0; -1 after an error
 * response naming the member. */
static int vector_member(ks_response *res, const char *name, const char *val, size_t len, float **v, size_t *dim)
{
    char err[256];
    kd_free(*v);
    *v = NULL;
    int rc = kd_vector_parse(val, len, v, dim, err, sizeof err);
    if (rc == KD_OK)
        return 0;
    if (rc == KD_EINVALID)
        ks_error(res, 400, "invalid", "%s: %s", name, err);
    else
        ks_kd_error(res, NULL, rc);
    return -1;
}

/* ------------------------------------------------------------------------
 * Not found, with what exactly
 * ---------------------------------------------------------------------- */

static void missing(ks_response *res, kd_db *db, int rc, const char *ns, const char *key, int64_t at)
{
    char t1[48], t2[48];
    kd_version *vs = NULL;
    size_t n = 0;
    if (rc == KD_ENOTFOUND) {
        /* with versions: they went with its dropped workspace */
        int had = kd_vector_history(db, ns, key, KD_TIME_MIN, KD_TIME_MAX, 1, 0, &vs, &n) == KD_OK && n > 0;
        ks_error(res, 404, "not_found", had ? "not found: its vectors were removed when its workspace was dropped "
                                              "(and compacted)"
                                            : "not found: no vector (never written)");
    } else if (rc == KD_EDELETED) {
        /* the tombstone the read found: the newest version at or before at */
        if (kd_vector_history(db, ns, key, KD_TIME_MIN, at, 1, KD_HISTORY_NEWEST_FIRST, &vs, &n) == KD_OK && n == 1 &&
            vs[0].deleted && kd_time_format(vs[0].timestamp, t1, sizeof t1) == KD_OK)
            ks_error(res, 404, "deleted", "not found: vector deleted at %s (write %s)", t1, vs[0].write_id);
        else
            ks_error(res, 404, "deleted", "not found: vector deleted");
    } else if (rc == KD_ENOVERSION) {
        if (kd_time_format(at, t1, sizeof t1) != KD_OK)
            snprintf(t1, sizeof t1, "@%" PRId64, at);
        if (kd_vector_history(db, ns, key, KD_TIME_MIN, KD_TIME_MAX, 1, 0, &vs, &n) == KD_OK && n == 1 &&
            kd_time_format(vs[0].timestamp, t2, sizeof t2) == KD_OK)
            ks_error(res, 404, "no_version", "not found: no vector at or before %s (the first is at %s)", t1, t2);
        else
            ks_error(res, 404, "no_version", "not found: no vector at or before %s", t1);
    } else {
        ks_kd_error(res, db, rc);
    }
    kd_free(vs);
}

/* Vectors have no conditional writes: a precondition is refused rather
 * than ignored. 1 after that error response. */
static int refuse_conditions(const ks_request *req, ks_response *res)
{
    const char *h = ks_header(req, "If-Match") ? "If-Match" : ks_header(req, "If-None-Match") ? "If-None-Match" : NULL;
    if (!h)
        return 0;
    ks_error(res, 400, "invalid", "%s: vector writes have no preconditions", h);
    return 1;
}

static void set_etag(ks_response *res, const kd_version *v)
{
    snprintf(res->etag, sizeof res->etag, "\"%s\"", v->write_id);
}

/* ------------------------------------------------------------------------
 * One key's vector: put, get, delete, history
 * ---------------------------------------------------------------------- */

/* PUT …/keys/{key}/vector {"model":M,"vector":[…],"meta":ANY}: 201 with the
 * record when the key had no live vector, else 200. */
static int h_put(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    if (refuse_conditions(req, res))
        return 0;
    size_t clen = 0;
    char *canon = body_object(req, res, &clen, "{\"model\": M, \"vector\": [numbers], \"meta\": any JSON}");
    if (!canon)
        return 0;
    char *model = NULL;
    float *v = NULL;
    size_t dim = 0, pos = 0, nlen, vlen, meta_len = 0;
    const char *name, *val, *meta = NULL;
    int has_vector = 0;
    while (kd_json_next(canon, clen, &pos, &name, &nlen, &val, &vlen) == 1) {
        if (lit_is(name, nlen, "\"model\"")) {
            free(model);
            if (!(model = unquote(val, vlen))) {
                ks_error(res, 400, "invalid", "body: \"model\" must be a string (without U+0000)");
                goto done;
            }
        } else if (lit_is(name, nlen, "\"vector\"")) {
            if (vector_member(res, "vector", val, vlen, &v, &dim) < 0)
                goto done;
            has_vector = 1;
        } else if (lit_is(name, nlen, "\"meta\"")) {
            meta = lit_is(val, vlen, "null") ? NULL : val;
            meta_len = meta ? vlen : 0;
        } else {
            ks_error(res, 400, "invalid", "body: unknown member %.*s (expected model, vector, meta)",
                     NAME_ARG(name, nlen));
            goto done;
        }
    }
    if (!has_vector) {
        ks_error(res, 400, "invalid", "body: \"vector\" is missing (a JSON array of numbers)");
        goto done;
    }
    kd_version ver;
    memset(&ver, 0, sizeof ver);
    int rc = kd_vector_put(req->db, ns, key, model, v, dim, meta, meta_len, &ver);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        if (rc == KD_ETOOBIG && strlen(ns) <= kd_max_namespace_len() && strlen(key) <= kd_max_key_len())
            res->status = 413; /* the record, not a name, is too big */
        goto done;
    }
    /* 201 when the version before this one is absent, a tombstone, or gone
     * with its dropped workspace (as for a key's value) */
    int status = 201;
    if (ver.previous_write_id[0]) {
        kd_version *prev = NULL;
        size_t n = 0;
        if (kd_vector_history(req->db, ns, key, KD_TIME_MIN, ver.timestamp - 1, 1, KD_HISTORY_NEWEST_FIRST, &prev,
                              &n) == KD_OK &&
            n == 1 && !prev[0].deleted && prev[0].pruned != KD_PRUNED_WORKSPACE)
            status = 200;
        kd_free(prev);
    }
    kd_vector put = {(char *)ns, (char *)key, model, v, dim, (char *)(meta ? meta : "null"), meta ? meta_len : 4, ver};
    ks_buf b = {0};
    if ((rc = add_record(&b, ns, key, &put, &ver)) != KD_OK) {
        free(b.p);
        ks_kd_error(res, NULL, rc);
        goto done;
    }
    set_etag(res, &ver);
    if (status == 201)
        ks_location(res, req->path, strlen(req->path));
    ks_reply(res, status, &b);
done:
    free(model);
    kd_free(v);
    kd_free(canon);
    return 0;
}

/* GET …/keys/{key}/vector[?at=TIME] */
static int h_get(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    int64_t at = KD_TIME_MAX;
    int has_at = ks_time_param(req, res, "at", &at);
    if (has_at < 0)
        return 0;
    kd_vector *v = NULL;
    int rc = has_at ? kd_vector_get_at(req->db, ns, key, at, &v) : kd_vector_get(req->db, ns, key, &v);
    if (rc != KD_OK) {
        missing(res, req->db, rc, ns, key, at);
        return 0;
    }
    ks_buf b = {0};
    if ((rc = add_record(&b, ns, key, v, &v->version)) != KD_OK) {
        free(b.p);
        ks_kd_error(res, NULL, rc);
    } else {
        set_etag(res, &v->version);
        ks_reply(res, 200, &b);
    }
    kd_vector_free(v);
    return 0;
}

/* DELETE …/keys/{key}/vector: the tombstone's record. */
static int h_delete(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    if (refuse_conditions(req, res))
        return 0;
    kd_version ver;
    memset(&ver, 0, sizeof ver);
    int rc = kd_vector_delete(req->db, ns, key, &ver);
    if (rc == KD_ENOTFOUND) {
        ks_error(res, 404, "not_found", "not found: no vector (never written)");
        return 0;
    }
    if (rc == KD_EDELETED) {
        ks_error(res, 404, "deleted", "not found: vector already deleted");
        return 0;
    }
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    add_record(&b, ns, key, NULL, &ver);
    set_etag(res, &ver);
    ks_reply(res, 200, &b);
    return 0;
}

/* GET …/keys/{key}/vector/history?from=&to=&limit=&order=asc|desc: as the
 * history of a key (routes_keys.c), each record with its vector. */
static int h_history(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    int64_t from = KD_TIME_MIN, to = KD_TIME_MAX;
    uint64_t limit = 0;
    const char *ls = ks_param(req, "limit"), *order = ks_param(req, "order");
    if (ks_time_param(req, res, "from", &from) < 0 || ks_time_param(req, res, "to", &to) < 0 ||
        ks_from_to(res, from, to) < 0)
        return 0;
    if (ls && !whole(ls, strlen(ls), (uint64_t)1 << 40, &limit)) {
        ks_error(res, 400, "invalid", "limit: expected a whole number from 0 to %" PRIu64, (uint64_t)1 << 40);
        return 0;
    }
    unsigned flags = 0;
    if (order && strcmp(order, "asc") != 0) {
        if (strcmp(order, "desc") != 0) {
            ks_error(res, 400, "invalid", "order: expected asc or desc");
            return 0;
        }
        flags = KD_HISTORY_NEWEST_FIRST;
    }
    kd_version *vs = NULL;
    size_t n = 0;
    int rc = kd_vector_history(req->db, ns, key, from, to, (size_t)limit, flags, &vs, &n);
    if (rc != KD_OK) {
        missing(res, req->db, rc, ns, key, 0);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"versions\":[", 13);
    for (size_t i = 0; i < n && rc == KD_OK; i++) {
        kd_vector *v = NULL;
        if (i)
            ks_buf_add(&b, ",", 1);
        /* a version's vector is the one read at its timestamp (none when
         * a compaction removed it: listed with "pruned") */
        if (!vs[i].deleted && !vs[i].pruned) {
            rc = kd_vector_get_at(req->db, ns, key, vs[i].timestamp, &v);
            if (rc == KD_OK && strcmp(v->version.write_id, vs[i].write_id) != 0)
                rc = KD_ECORRUPT;
        }
        if (rc == KD_OK)
            rc = add_record(&b, ns, key, v, &vs[i]);
        kd_vector_free(v);
    }
    kd_free(vs);
    if (rc != KD_OK) {
        free(b.p);
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf_add(&b, "]}", 2);
    ks_reply(res, 200, &b);
    return 0;
}

/* ------------------------------------------------------------------------
 * Search
 * ---------------------------------------------------------------------- */

#define SEARCH_DEFAULT_K 10

/* Which of two hits comes first: the better score per the metric, then
 * namespace, then key (as kd_vector_search orders them). */
static int hit_cmp_names(const kd_vector_hit *a, const kd_vector_hit *b)
{
    int c = strcmp(a->ns, b->ns);
    return c ? c : strcmp(a->key, b->key);
}
static int hit_cmp_high(const void *pa, const void *pb) /* cosine, dot: higher first */
{
    const kd_vector_hit *a = pa, *b = pb;
    return a->score != b->score ? (a->score > b->score ? -1 : 1) : hit_cmp_names(a, b);
}
static int hit_cmp_low(const void *pa, const void *pb) /* l2: lower first */
{
    const kd_vector_hit *a = pa, *b = pb;
    return a->score != b->score ? (a->score < b->score ? -1 : 1) : hit_cmp_names(a, b);
}

static void hit_clear(kd_vector_hit *h)
{
    free(h->ns);
    free(h->key);
    free(h->model);
    free(h->meta);
}

/* A search over every namespace for a caller of an --auth server who may
 * not read them all: each namespace the caller may read whole is searched
 * on its own, and the best k of all are kept. A namespace the caller may
 * read only some keys of is left out, as from a query: the vectors it may
 * not read would still take places among the best k, and with a filter
 * that tells what their metadata holds (a yes/no oracle, one search at a
 * time). */
static int search_readable(ks_request *req, const float *q, size_t dim, size_t k, const kd_vector_search_options *o,
                           kd_vector_hit **hits, size_t *nhits)
{
    kd_vector_info *list = NULL;
    size_t n = 0;
    *hits = NULL;
    *nhits = 0;
    int rc = kd_vector_stats(req->db, NULL, &list, &n);
    if (rc != KD_OK)
        return rc;
    kd_vector_hit *all = NULL;
    size_t nall = 0;
    for (size_t i = 0; i < n && rc == KD_OK; i++) {
        if ((i && strcmp(list[i].ns, list[i - 1].ns) == 0) || !ks_may(req, list[i].ns, NULL, KD_PERM_READ))
            continue;
        kd_vector_hit *h = NULL;
        size_t nh = 0;
        rc = kd_vector_search(req->db, list[i].ns, q, dim, k, o, &h, &nh);
        if (rc == KD_EINVALID && !o->model) { /* no vectors of this dimension there */
            rc = KD_OK;
            continue;
        }
        if (rc != KD_OK)
            break;
        all = ks_xrealloc(all, (nall + nh) * sizeof *all);
        for (size_t j = 0; j < nh; j++)
            all[nall++] = h[j];
        free(h); /* the hits' own strings now belong to `all` */
    }
    kd_vector_stats_free(list, n);
    if (rc != KD_OK) {
        for (size_t j = 0; j < nall; j++)
            hit_clear(&all[j]);
        free(all);
        return rc;
    }
    if (nall)
        qsort(all, nall, sizeof *all, o->metric == KD_VECTOR_L2 ? hit_cmp_low : hit_cmp_high);
    while (nall > k)
        hit_clear(&all[--nall]);
    *hits = all;
    *nhits = nall;
    return KD_OK;
}

/* POST …/vectors/search {"vector":[…], "k":10, "metric":"cosine",
 * "model":M, "min_score":S, "filter":"text" or {JSON form}, "ef":N,
 * "at":TIME} (all but vector optional; null = absent) → {"hits":[…]},
 * best first. ns NULL: every namespace. */
static int search(ks_request *req, ks_response *res, const char *ns)
{
    size_t clen = 0;
    char *canon = body_object(req, res, &clen, "{\"vector\": [numbers], \"k\": N, ...}");
    if (!canon)
        return 0;
    float *q = NULL;
    size_t dim = 0, pos = 0, nlen, vlen;
    uint64_t k = SEARCH_DEFAULT_K, ef = 0;
    char *model = NULL, err[512];
    kd_filter *filter = NULL;
    kd_vector_hit *hits = NULL;
    size_t nhits = 0;
    kd_vector_search_options o;
    memset(&o, 0, sizeof o);
    const char *name, *val;
    int has_vector = 0;
    while (kd_json_next(canon, clen, &pos, &name, &nlen, &val, &vlen) == 1) {
        int null = lit_is(val, vlen, "null");
        if (lit_is(name, nlen, "\"vector\"")) {
            if (vector_member(res, "vector", val, vlen, &q, &dim) < 0)
                goto done;
            has_vector = 1;
        } else if (lit_is(name, nlen, "\"k\"")) {
            if (!null && !whole(val, vlen, 1000000000, &k)) {
                ks_error(res, 400, "invalid", "k: expected a whole number from 1 to %d", KD_VECTOR_MAX_K);
                goto done;
            }
        } else if (lit_is(name, nlen, "\"metric\"")) {
            char *m = null ? NULL : unquote(val, vlen);
            if (!null && !m) {
                ks_error(res, 400, "invalid", "metric: expected a string: cosine, dot or l2");
                goto done;
            }
            int rc = m ? kd_vector_metric_parse(m, &o.metric, err, sizeof err) : KD_OK;
            free(m);
            if (rc != KD_OK) {
                ks_error(res, 400, "invalid", "%s", err);
                goto done;
            }
        } else if (lit_is(name, nlen, "\"model\"")) {
            free(model);
            model = null ? NULL : unquote(val, vlen);
            if (!null && !model) {
                ks_error(res, 400, "invalid", "model: expected a string (without U+0000)");
                goto done;
            }
        } else if (lit_is(name, nlen, "\"min_score\"")) {
            o.has_min_score = 0;
            if (null)
                continue;
            /* read as the components are, so it rounds to the same float32 */
            if (val[0] != '-' && (val[0] < '0' || val[0] > '9')) {
                ks_error(res, 400, "invalid", "min_score: expected a number");
                goto done;
            }
            float *s = NULL;
            size_t sn = 0;
            char *arr = ks_xmalloc(vlen + 3);
            snprintf(arr, vlen + 3, "[%.*s]", (int)vlen, val);
            int rc = kd_vector_parse(arr, vlen + 2, &s, &sn, err, sizeof err);
            free(arr);
            if (rc != KD_OK) {
                if (rc == KD_EINVALID)
                    ks_error(res, 400, "invalid", "min_score: %.*s is beyond the range of float32", NAME_ARG(val, vlen));
                else
                    ks_kd_error(res, NULL, rc);
                goto done;
            }
            o.has_min_score = 1;
            o.min_score = s[0];
            kd_free(s);
        } else if (lit_is(name, nlen, "\"filter\"")) {
            kd_filter_free(filter);
            filter = NULL;
            if (null)
                continue;
            char *text = val[0] == '"' ? unquote(val, vlen) : NULL;
            int rc;
            if (val[0] == '"' && !text)
                rc = KD_EINVALID, snprintf(err, sizeof err, "a filter's text holds no U+0000");
            else if (text)
                rc = kd_filter_parse(text, &filter, err, sizeof err);
            else
                rc = kd_filter_from_json(val, vlen, &filter, err, sizeof err);
            free(text);
            if (rc != KD_OK) {
                if (rc == KD_EINVALID) /* the JSON form's messages start with "filter" already */
                    ks_error(res, 400, "invalid", "%s%s", val[0] == '"' ? "filter: " : "", err);
                else
                    ks_kd_error(res, NULL, rc);
                goto done;
            }
        } else if (lit_is(name, nlen, "\"ef\"")) {
            ef = 0;
            if (!null && !whole(val, vlen, 1000000000, &ef)) {
                ks_error(res, 400, "invalid", "ef: expected a whole number (0 = the default)");
                goto done;
            }
        } else if (lit_is(name, nlen, "\"at\"")) {
            o.at = 0;
            if (null)
                continue;
            char *text = unquote(val, vlen);
            int rc = text ? kd_time_parse(text, &o.at, err, sizeof err) : KD_EINVALID;
            if (!text)
                snprintf(err, sizeof err, "expected a TIME string (RFC 3339, @NANOSECONDS, now, -5m...)");
            free(text);
            if (rc != KD_OK) {
                ks_error(res, 400, "invalid", "at: %s", err);
                goto done;
            }
            if (o.at == 0)
                o.at = -1; /* the library reads at 0 as "now"; no write is older than 1970 */
        } else {
            ks_error(res, 400, "invalid",
                     "body: unknown member %.*s (expected vector, k, metric, model, min_score, filter, ef, at)",
                     NAME_ARG(name, nlen));
            goto done;
        }
    }
    if (!has_vector) {
        ks_error(res, 400, "invalid", "body: \"vector\" is missing (the query, a JSON array of numbers)");
        goto done;
    }
    o.model = model;
    o.filter = filter;
    o.ef = (size_t)ef;
    int rc = !ns && !ks_may_all(req, KD_PERM_READ)
                 ? search_readable(req, q, dim, (size_t)k, &o, &hits, &nhits)
                 : kd_vector_search(req->db, ns, q, dim, (size_t)k, &o, &hits, &nhits);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        goto done;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"hits\":[", 9);
    for (size_t i = 0; i < nhits; i++) {
        const kd_vector_hit *h = &hits[i];
        ks_buf_add(&b, i ? ",{\"namespace\":" : "{\"namespace\":", i ? 14 : 13);
        add_str(&b, h->ns);
        ks_buf_add(&b, ",\"key\":", 7);
        add_str(&b, h->key);
        ks_buf_add(&b, ",\"model\":", 9);
        add_str(&b, h->model);
        ks_buf_add(&b, ",\"score\":", 9);
        add_float(&b, h->score);
        ks_buf_add(&b, ",\"meta\":", 8);
        ks_buf_add(&b, h->meta, h->meta_len);
        add_id(&b, "version_id", h->version.version_id);
        add_id(&b, "write_id", h->version.write_id);
        add_id(&b, "previous_write_id", h->version.previous_write_id);
        add_time(&b, h->version.timestamp);
        ks_buf_add(&b, "}", 1);
    }
    ks_buf_add(&b, "]}", 2);
    ks_reply(res, 200, &b);
done:
    kd_vector_hits_free(hits, nhits);
    kd_filter_free(filter);
    free(model);
    kd_free(q);
    kd_free(canon);
    return 0;
}

static int h_search(ks_request *req, ks_response *res)
{
    return search(req, res, ks_var(req, "ns"));
}

static int h_search_all(ks_request *req, ks_response *res)
{
    return search(req, res, NULL);
}

/* ------------------------------------------------------------------------
 * Stats
 * ---------------------------------------------------------------------- */

/* GET …/vectors/stats → {"stats":[{"namespace","model","dim","vectors",
 * "unindexed","index_bytes"}…]}, by namespace then model. */
static int stats(ks_request *req, ks_response *res, const char *ns)
{
    kd_vector_info *list = NULL;
    size_t n = 0;
    int rc = kd_vector_stats(req->db, ns, &list, &n);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"stats\":[", 10);
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        /* With --auth: counts of a namespace the caller may not read whole stay hidden. */
        if (!ks_may(req, list[i].ns, NULL, KD_PERM_READ))
            continue;
        ks_buf_add(&b, !first ? ",{\"namespace\":" : "{\"namespace\":", !first ? 14 : 13);
        first = 0;
        add_str(&b, list[i].ns);
        ks_buf_add(&b, ",\"model\":", 9);
        add_str(&b, list[i].model);
        ks_buf_printf(&b, ",\"dim\":%zu,\"vectors\":%" PRIu64 ",\"unindexed\":%" PRIu64 ",\"index_bytes\":%" PRIu64 "}",
                      list[i].dim, list[i].vectors, list[i].unindexed, list[i].index_bytes);
    }
    ks_buf_add(&b, "]}", 2);
    kd_vector_stats_free(list, n);
    ks_reply(res, 200, &b);
    return 0;
}

static int h_stats(ks_request *req, ks_response *res)
{
    return stats(req, res, ks_var(req, "ns"));
}

static int h_stats_all(ks_request *req, ks_response *res)
{
    return stats(req, res, NULL);
}

const ks_route ks_routes_vector[] = {
    {"PUT", "api/v1/namespaces/{ns}/keys/{key}/vector", h_put, "vector_put"},
    {"GET", "api/v1/namespaces/{ns}/keys/{key}/vector", h_get, "vector_get"},
    {"DELETE", "api/v1/namespaces/{ns}/keys/{key}/vector", h_delete, "vector_delete"},
    {"GET", "api/v1/namespaces/{ns}/keys/{key}/vector/history", h_history, "vector_history"},
    {"POST", "api/v1/namespaces/{ns}/vectors/search", h_search, "vector_search"},
    {"POST", "api/v1/vectors/search", h_search_all, "vector_search_all"},
    {"GET", "api/v1/namespaces/{ns}/vectors/stats", h_stats, "vector_stats"},
    {"GET", "api/v1/vectors/stats", h_stats_all, "vector_stats_all"},
    /* the same in workspace {ws} (DESIGN.md §2): http.c runs them on its handle */
    {"PUT", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}/vector", h_put, "vector_put"},
    {"GET", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}/vector", h_get, "vector_get"},
    {"DELETE", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}/vector", h_delete, "vector_delete"},
    {"GET", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}/vector/history", h_history, "vector_history"},
    {"POST", "api/v1/ws/{ws}/namespaces/{ns}/vectors/search", h_search, "vector_search"},
    {"POST", "api/v1/ws/{ws}/vectors/search", h_search_all, "vector_search_all"},
    {"GET", "api/v1/ws/{ws}/namespaces/{ns}/vectors/stats", h_stats, "vector_stats"},
    {"GET", "api/v1/ws/{ws}/vectors/stats", h_stats_all, "vector_stats_all"},
    {NULL, NULL, NULL, NULL},
};
