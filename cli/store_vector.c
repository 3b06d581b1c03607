/*
 * store_vector.c — the vector store, locally or on a server (store.h):
 * st_vector_* call kd_vector_* on the open database, or make the requests
 * of server/routes_vector.c (docs/HTTP.md, "Vectors") and rebuild the
 * library's structures from the answers.
 *
 * Floats travel as the shortest decimal that reads back to the same
 * float32 (kd_vector_to_json) and are read back with kd_vector_parse, so
 * components, minimum scores and scores arrive bit for bit. What cannot
 * travel as JSON (a non-finite float, a model that is not UTF-8) is
 * refused here with the library's words.
 */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote.h"
#include "server_int.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

/* api/v1/namespaces/{ns}/<what>, or api/v1/namespaces/{ns}/keys/{key}/<what>
 * when key is not NULL. */
static char *ns_path(const char *ns, const char *key, const char *what)
{
    char *n = remote_path("%s", ns), *k = key ? remote_path("%s", key) : NULL;
    size_t l = strlen(n) + (k ? strlen(k) : 0) + strlen(what) + 40;
    char *p = xmalloc(l);
    if (k)
        snprintf(p, l, "api/v1/namespaces/%s/keys/%s/%s", n, k, what);
    else
        snprintf(p, l, "api/v1/namespaces/%s/%s", n, what);
    free(n);
    free(k);
    return p;
}

static void add_quoted(ks_buf *b, const char *s)
{
    char *q = NULL;
    size_t ql = 0;
    if (kd_json_quote(s, strlen(s), &q, &ql) == KD_OK)
        ks_buf_add(b, q, ql);
    kd_free(q);
}

static int is_utf8(const char *s)
{
    char *q = NULL;
    size_t ql;
    int ok = kd_json_quote(s, strlen(s), &q, &ql) == KD_OK;
    kd_free(q);
    return ok;
}

/* A float32 as the server writes it: a number, or "inf", "-inf", "nan". */
static int read_float(const char *v, size_t len, float *out)
{
    if (len && v[0] == '"') {
        if (len == 5 && memcmp(v, "\"inf\"", 5) == 0)
            *out = INFINITY;
        else if (len == 6 && memcmp(v, "\"-inf\"", 6) == 0)
            *out = -INFINITY;
        else if (len == 5 && memcmp(v, "\"nan\"", 5) == 0)
            *out = NAN;
        else
            return KD_EINVALID;
        return KD_OK;
    }
    char *arr = xmalloc(len + 3);
    snprintf(arr, len + 3, "[%.*s]", (int)len, v);
    float *f = NULL;
    size_t n = 0;
    int rc = kd_vector_parse(arr, len + 2, &f, &n, NULL, 0);
    free(arr);
    if (rc == KD_OK && n == 1)
        *out = f[0];
    else
        rc = KD_EINVALID;
    kd_free(f);
    return rc;
}

/* The version members of an answer object (a record or a hit). */
static void read_version(const char *obj, size_t len, kd_version *v)
{
    static const struct {
        const char *name;
        size_t off;
    } ids[] = {{"version_id", offsetof(kd_version, version_id)},
               {"write_id", offsetof(kd_version, write_id)},
               {"previous_write_id", offsetof(kd_version, previous_write_id)}};
    memset(v, 0, sizeof *v);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char *s = rj_string(obj, len, ids[i].name);
        if (s && strlen(s) == KD_ID_HEX - 1)
            memcpy((char *)v + ids[i].off, s, KD_ID_HEX);
        free(s);
    }
    v->timestamp = rj_time(obj, len, "timestamp");
    const char *d;
    size_t dl;
    v->deleted = rj_member(obj, len, "deleted", &d, &dl) && dl == 4 && memcmp(d, "true", 4) == 0;
    v->pruned = rj_member(obj, len, "pruned", &d, &dl) && dl == 4 && memcmp(d, "true", 4) == 0;
    if (v->pruned && rj_member(obj, len, "pruned_by", &d, &dl) && dl == 16 && memcmp(d, "\"workspace_drop\"", 16) == 0)
        v->pruned = KD_PRUNED_WORKSPACE;
}

/* A version record's version (write or tombstone). */
static int read_written(struct cli *c, const char *ans, size_t alen, kd_version *out)
{
    const char *w;
    size_t wl;
    if (!rj_member(ans, alen, "write_id", &w, &wl))
        return remote_bad_answer(c->remote, "a vector record");
    if (out)
        read_version(ans, alen, out);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Writes
 * ---------------------------------------------------------------------- */

int st_vector_put(struct cli *c, const char *ns, const char *key, const char *model, const float *v, size_t dim,
                  const char *meta, size_t meta_len, kd_version *out)
{
    if (!c->remote)
        return kd_vector_put(c->db, ns, key, model, v, dim, meta, meta_len, out);
    if (model && !is_utf8(model))
        return remote_fail(c->remote, KD_EINVALID, "model name is not valid UTF-8");
    for (size_t i = 0; v && i < dim; i++)
        if (!isfinite(v[i]))
            return remote_fail(c->remote, KD_EINVALID, "%s/%s: component %zu is %s", ns, key, i,
                               isnan(v[i]) ? "NaN" : v[i] < 0 ? "-Inf" : "+Inf");
    char *canon = NULL, *arr = NULL, err[256];
    size_t clen = 0, alen = 0;
    if (meta && kd_json_canonical(meta, meta_len, &canon, &clen, err, sizeof err) != KD_OK)
        return remote_fail(c->remote, KD_EINVALID, "%s/%s: meta: %s", ns, key, err);
    ks_buf b = {0};
    ks_buf_add(&b, "{", 1);
    if (model) {
        ks_buf_add(&b, "\"model\":", 8);
        add_quoted(&b, model);
        ks_buf_add(&b, ",", 1);
    }
    ks_buf_add(&b, "\"vector\":", 9);
    if (dim && v && kd_vector_to_json(v, dim, &arr, &alen) == KD_OK)
        ks_buf_add(&b, arr, alen);
    else
        ks_buf_add(&b, "[]", 2);
    if (canon) {
        ks_buf_add(&b, ",\"meta\":", 8);
        ks_buf_add(&b, canon, clen);
    }
    ks_buf_add(&b, "}", 1);
    char *path = ns_path(ns, key, "vector"), *ans = NULL;
    size_t anslen = 0;
    int rc = remote_call(c->remote, "PUT", path, b.p, b.len, &ans, &anslen);
    if (rc == KD_OK)
        rc = read_written(c, ans, anslen, out);
    free(ans);
    free(path);
    free(b.p);
    kd_free(arr);
    kd_free(canon);
    return rc;
}

int st_vector_delete(struct cli *c, const char *ns, const char *key, kd_version *out)
{
    if (!c->remote)
        return kd_vector_delete(c->db, ns, key, out);
    char *path = ns_path(ns, key, "vector"), *ans = NULL;
    size_t alen = 0;
    int rc = remote_call(c->remote, "DELETE", path, NULL, 0, &ans, &alen);
    if (rc == KD_OK)
        rc = read_written(c, ans, alen, out);
    free(ans);
    free(path);
    return rc;
}

/* ------------------------------------------------------------------------
 * Reads
 * ---------------------------------------------------------------------- */

/* A vector record into one block, as the library allocates it (the
 * struct, the floats, then ns, key, model and meta). */
static int read_vector(struct cli *c, const char *ns, const char *key, const char *ans, size_t alen, kd_vector **out)
{
    const char *arr, *meta;
    size_t arrlen, meta_len;
    char *model = rj_string(ans, alen, "model");
    float *f = NULL;
    size_t dim = 0;
    int rc = KD_OK;
    if (!model || !rj_member(ans, alen, "vector", &arr, &arrlen) || !rj_member(ans, alen, "meta", &meta, &meta_len) ||
        kd_vector_parse(arr, arrlen, &f, &dim, NULL, 0) != KD_OK || rj_u64(ans, alen, "dim") != dim) {
        rc = remote_bad_answer(c->remote, "a vector record");
        goto done;
    }
    size_t nl = strlen(ns) + 1, kl = strlen(key) + 1, ml = strlen(model) + 1;
    kd_vector *v = xmalloc(sizeof *v + dim * sizeof(float) + nl + kl + ml + meta_len + 1);
    v->values = (float *)(v + 1);
    memcpy(v->values, f, dim * sizeof(float));
    v->dim = dim;
    char *p = (char *)(v->values + dim);
    v->ns = memcpy(p, ns, nl);
    v->key = memcpy(p += nl, key, kl);
    v->model = memcpy(p += kl, model, ml);
    v->meta = memcpy(p += ml, meta, meta_len);
    v->meta[meta_len] = '\0';
    v->meta_len = meta_len;
    read_version(ans, alen, &v->version);
    *out = v;
done:
    kd_free(f);
    free(model);
    return rc;
}

static int remote_get(struct cli *c, const char *ns, const char *key, const int64_t *at, kd_vector **out)
{
    char *path = ns_path(ns, key, "vector"), *ans = NULL;
    size_t alen = 0;
    if (at)
        remote_time_param(&path, "at", *at);
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen);
    if (rc == KD_OK)
        rc = read_vector(c, ns, key, ans, alen, out);
    free(ans);
    free(path);
    return rc;
}

int st_vector_get(struct cli *c, const char *ns, const char *key, kd_vector **out)
{
    *out = NULL;
    if (!c->remote)
        return kd_vector_get(c->db, ns, key, out);
    return remote_get(c, ns, key, NULL, out);
}

int st_vector_get_at(struct cli *c, const char *ns, const char *key, int64_t ts, kd_vector **out)
{
    *out = NULL;
    if (!c->remote)
        return kd_vector_get_at(c->db, ns, key, ts, out);
    return remote_get(c, ns, key, &ts, out);
}

void st_vector_free(struct cli *c, kd_vector *v)
{
    if (c->remote)
        free(v);
    else
        kd_vector_free(v);
}

int st_vector_history(struct cli *c, const char *ns, const char *key, int64_t from, int64_t to, size_t limit,
                      unsigned flags, kd_version **out, size_t *n)
{
    if (!c->remote)
        return kd_vector_history(c->db, ns, key, from, to, limit, flags, out, n);
    return st_remote_history(c, ns_path(ns, key, "vector/history"), from, to, limit, flags, read_written,
                             "a vector history", out, n);
}

int st_vector_log(struct cli *c, const char *ns, const char *key, size_t limit, unsigned flags, kd_version **out,
                  kd_vector ***vecs, size_t *n, size_t *failed)
{
    *out = NULL;
    *vecs = NULL;
    *n = 0;
    *failed = SIZE_MAX;
    if (!c->remote) {
        int rc = kd_vector_history(c->db, ns, key, KD_TIME_MIN, KD_TIME_MAX, limit, flags, out, n);
        if (rc != KD_OK)
            return rc;
        *vecs = xmalloc((*n ? *n : 1) * sizeof **vecs);
        for (size_t i = 0; i < *n; i++) {
            kd_vector *v = NULL;
            const kd_version *ver = &(*out)[i];
            /* a version's vector is the one read at its timestamp (none
             * when a compaction removed it) */
            if (!ver->deleted && !ver->pruned) {
                rc = kd_vector_get_at(c->db, ns, key, ver->timestamp, &v);
                if (rc == KD_OK && strcmp(v->version.write_id, ver->write_id) != 0)
                    rc = KD_ECORRUPT;
                if (rc != KD_OK) {
                    kd_vector_free(v);
                    for (size_t j = 0; j < i; j++)
                        kd_vector_free((*vecs)[j]);
                    free(*vecs);
                    *vecs = NULL;
                    *failed = i; /* *out and *n stay, to name the version */
                    return rc;
                }
            }
            (*vecs)[i] = v;
        }
        return KD_OK;
    }
    /* Remotely: the history answer carries each version's vector (the
     * server reads it as above), so one request is the whole log. */
    char *path = ns_path(ns, key, "vector/history"), *ans = NULL;
    size_t alen = 0;
    st_history_params(&path, KD_TIME_MIN, KD_TIME_MAX, limit, flags);
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen);
    const char *list, *rec;
    size_t llen, rlen, pos = 0, cap = 0;
    if (rc == KD_OK && !rj_member(ans, alen, "versions", &list, &llen))
        rc = remote_bad_answer(c->remote, "a vector history");
    while (rc == KD_OK && kd_json_next(list, llen, &pos, NULL, NULL, &rec, &rlen) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *out = xrealloc(*out, cap * sizeof **out);
            *vecs = xrealloc(*vecs, cap * sizeof **vecs);
        }
        kd_vector *v = NULL;
        if ((rc = read_written(c, rec, rlen, &(*out)[*n])) != KD_OK)
            break;
        if (!(*out)[*n].deleted && !(*out)[*n].pruned && (rc = read_vector(c, ns, key, rec, rlen, &v)) != KD_OK)
            break;
        (*vecs)[(*n)++] = v;
    }
    if (rc != KD_OK) {
        for (size_t i = 0; i < *n; i++)
            free((*vecs)[i]);
        free(*vecs);
        free(*out);
        *vecs = NULL;
        *out = NULL;
        *n = 0;
    }
    free(ans);
    free(path);
    return rc;
}

/* ------------------------------------------------------------------------
 * Search and stats
 * ---------------------------------------------------------------------- */

/* The JSON text of a float32 (finite), as kd_vector_to_json writes it. */
static void add_float(ks_buf *b, float f)
{
    char *t = NULL;
    size_t tl = 0;
    if (kd_vector_to_json(&f, 1, &t, &tl) == KD_OK && tl >= 2)
        ks_buf_add(b, t + 1, tl - 2);
    kd_free(t);
}

static int read_hits(struct cli *c, const char *list, size_t llen, kd_vector_hit **hits, size_t *n)
{
    size_t pos = 0, cap = 0;
    const char *obj;
    size_t olen;
    int rc = KD_OK;
    while (rc == KD_OK && kd_json_next(list, llen, &pos, NULL, NULL, &obj, &olen) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *hits = xrealloc(*hits, cap * sizeof **hits);
        }
        kd_vector_hit *h = &(*hits)[*n];
        memset(h, 0, sizeof *h);
        const char *score, *meta;
        size_t slen, mlen;
        h->ns = rj_string(obj, olen, "namespace");
        h->key = rj_string(obj, olen, "key");
        h->model = rj_string(obj, olen, "model");
        (*n)++;
        if (!h->ns || !h->key || !h->model || !rj_member(obj, olen, "score", &score, &slen) ||
            read_float(score, slen, &h->score) != KD_OK || !rj_member(obj, olen, "meta", &meta, &mlen)) {
            rc = remote_bad_answer(c->remote, "search hits");
            break;
        }
        h->meta = xmalloc(mlen + 1);
        memcpy(h->meta, meta, mlen);
        h->meta[mlen] = '\0';
        h->meta_len = mlen;
        read_version(obj, olen, &h->version);
    }
    return rc;
}

int st_vector_search(struct cli *c, const char *ns, const float *query, size_t dim, size_t k,
                     const kd_vector_search_options *opts, kd_vector_hit **hits, size_t *n)
{
    if (!c->remote)
        return kd_vector_search(c->db, ns, query, dim, k, opts, hits, n);
    *hits = NULL;
    *n = 0;
    kd_vector_search_options none;
    memset(&none, 0, sizeof none);
    if (!opts)
        opts = &none;
    const char *metric = kd_vector_metric_name(opts->metric);
    if (!metric)
        return remote_fail(c->remote, KD_EINVALID,
                           "unknown metric %d: use KD_VECTOR_COSINE, KD_VECTOR_DOT or KD_VECTOR_L2", (int)opts->metric);
    if (opts->model && !is_utf8(opts->model))
        return remote_fail(c->remote, KD_EINVALID, "model name is not valid UTF-8");
    for (size_t i = 0; query && i < dim; i++)
        if (!isfinite(query[i]))
            return remote_fail(c->remote, KD_EINVALID, "query component %zu is %s", i,
                               isnan(query[i]) ? "NaN" : "infinite");
    if (opts->has_min_score && !isfinite(opts->min_score))
        return remote_fail(c->remote, KD_EINVALID, "min_score is %s", isnan(opts->min_score) ? "NaN" : "infinite");
    char *arr = NULL, *fj = NULL;
    size_t alen = 0, fl = 0;
    int rc = KD_OK;
    if (opts->filter && (rc = kd_filter_to_json(opts->filter, &fj, &fl)) != KD_OK)
        return remote_fail(c->remote, rc, "the filter cannot be sent: %s", kd_strerror(rc));
    ks_buf b = {0};
    ks_buf_add(&b, "{\"vector\":", 10);
    if (dim && query && kd_vector_to_json(query, dim, &arr, &alen) == KD_OK)
        ks_buf_add(&b, arr, alen);
    else
        ks_buf_add(&b, "[]", 2);
    ks_buf_printf(&b, ",\"k\":%zu,\"metric\":\"%s\"", k, metric);
    if (opts->model) {
        ks_buf_add(&b, ",\"model\":", 9);
        add_quoted(&b, opts->model);
    }
    if (opts->has_min_score) {
        ks_buf_add(&b, ",\"min_score\":", 13);
        add_float(&b, opts->min_score);
    }
    if (fj) {
        ks_buf_add(&b, ",\"filter\":", 10);
        ks_buf_add(&b, fj, fl);
    }
    if (opts->ef)
        ks_buf_printf(&b, ",\"ef\":%zu", opts->ef);
    if (opts->at != 0 && opts->at != KD_TIME_MAX)
        ks_buf_printf(&b, ",\"at\":\"@%" PRId64 "\"", opts->at);
    ks_buf_add(&b, "}", 1);
    char *path = ns ? ns_path(ns, NULL, "vectors/search") : xstrdup("api/v1/vectors/search");
    char *ans = NULL;
    size_t anslen = 0;
    const char *list;
    size_t llen;
    rc = remote_call(c->remote, "POST", path, b.p, b.len, &ans, &anslen);
    if (rc == KD_OK && !rj_member(ans, anslen, "hits", &list, &llen))
        rc = remote_bad_answer(c->remote, "search hits");
    if (rc == KD_OK)
        rc = read_hits(c, list, llen, hits, n);
    if (rc != KD_OK) {
        st_vector_hits_free(c, *hits, *n);
        *hits = NULL;
        *n = 0;
    } else if (*n == 0) {
        free(*hits);
        *hits = NULL;
    }
    free(ans);
    free(path);
    free(b.p);
    kd_free(arr);
    kd_free(fj);
    return rc;
}

void st_vector_hits_free(struct cli *c, kd_vector_hit *hits, size_t n)
{
    if (!c->remote) {
        kd_vector_hits_free(hits, n);
        return;
    }
    for (size_t i = 0; hits && i < n; i++) {
        free(hits[i].ns);
        free(hits[i].key);
        free(hits[i].model);
        free(hits[i].meta);
    }
    free(hits);
}

int st_vector_stats(struct cli *c, const char *ns, kd_vector_info **out, size_t *n)
{
    if (!c->remote)
        return kd_vector_stats(c->db, ns, out, n);
    *out = NULL;
    *n = 0;
    char *path = ns ? ns_path(ns, NULL, "vectors/stats") : xstrdup("api/v1/vectors/stats");
    char *ans = NULL;
    size_t alen = 0;
    const char *list;
    size_t llen;
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen);
    if (rc == KD_OK && !rj_member(ans, alen, "stats", &list, &llen))
        rc = remote_bad_answer(c->remote, "vector stats");
    if (rc == KD_OK) {
        size_t pos = 0, cap = 0;
        const char *obj;
        size_t olen;
        while (kd_json_next(list, llen, &pos, NULL, NULL, &obj, &olen) == 1) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 16;
                *out = xrealloc(*out, cap * sizeof **out);
            }
            kd_vector_info *x = &(*out)[(*n)++];
            x->ns = rj_string(obj, olen, "namespace");
            x->model = rj_string(obj, olen, "model");
            x->dim = (size_t)rj_u64(obj, olen, "dim");
            x->vectors = rj_u64(obj, olen, "vectors");
            x->unindexed = rj_u64(obj, olen, "unindexed");
            x->index_bytes = rj_u64(obj, olen, "index_bytes");
            if (!x->ns || !x->model) {
                rc = remote_bad_answer(c->remote, "vector stats");
                break;
            }
        }
    }
    if (rc != KD_OK) {
        st_vector_stats_free(c, *out, *n);
        *out = NULL;
        *n = 0;
    } else if (*n == 0) {
        free(*out);
        *out = NULL;
    }
    free(ans);
    free(path);
    return rc;
}

void st_vector_stats_free(struct cli *c, kd_vector_info *list, size_t n)
{
    if (!c->remote) {
        kd_vector_stats_free(list, n);
        return;
    }
    for (size_t i = 0; list && i < n; i++) {
        free(list[i].ns);
        free(list[i].model);
    }
    free(list);
}
