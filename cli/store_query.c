/*
 * store_query.c — queries, materialized views and secondary indexes,
 * locally or on a server (see store.h).
 *
 * Locally each function is the kd_* call of the same name. Remotely it
 * makes the request docs/HTTP.md documents (server/routes_query.c):
 *
 *   st_query_run      POST   /api/v1/namespaces/{ns}/query   (kd_query_to_json of q)
 *   st_view_create    POST   /api/v1/views
 *   st_view_list      GET    /api/v1/views
 *   st_view_query     GET    /api/v1/views/{name}/rows?offset=&limit=
 *   st_view_refresh   POST   /api/v1/views/{name}/refresh
 *   st_view_delete    DELETE /api/v1/views/{name}
 *   st_index_create   POST   /api/v1/indexes
 *   st_index_list     GET    /api/v1/indexes?ns=
 *   st_index_drop     DELETE /api/v1/indexes/{ns}/{field}
 *
 * and rebuilds the library's structures from the answer: a result (rows
 * from the version records of kd_result_json's object, or its aggregates),
 * kd_view_info and kd_index_info lists allocated member by member with
 * malloc, as kd_view_list_free and kd_index_list_free free them. A result
 * built here is freed by st_result_free, never by kd_result_free (which
 * expects the library's own allocation).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote.h"
#include "server_int.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

/* Append s (the `what` of the request) as a JSON string literal;
 * KD_EINVALID for invalid UTF-8, which a JSON body cannot carry (the
 * library refuses such names too, with the same status). */
static int add_string(struct cli *c, ks_buf *b, const char *s, const char *what)
{
    char *q = NULL;
    size_t qn = 0;
    int rc = kd_json_quote(s, strlen(s), &q, &qn);
    if (rc == KD_ENOMEM) {
        fputs("kdelta: out of memory\n", stderr);
        abort();
    }
    if (rc == KD_OK)
        ks_buf_add(b, q, qn);
    kd_free(q);
    if (rc == KD_EINVALID)
        return remote_fail(c->remote, rc, "%s is not valid UTF-8", what);
    return rc;
}

static void add_text(ks_buf *b, const char *s)
{
    ks_buf_add(b, s, strlen(s));
}

static char *copy_slice(const char *p, size_t len)
{
    char *s = xmalloc(len + 1);
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* The string member `name`, malloc'd ("" if absent or not a string). */
static char *string_or_empty(const char *json, size_t len, const char *name)
{
    char *s = rj_string(json, len, name);
    return s ? s : xstrdup("");
}

/* An id member (64 hex digits, or null) into dst ("" for null). */
static void read_id(char dst[KD_ID_HEX], const char *json, size_t len, const char *name)
{
    char *s = rj_string(json, len, name);
    dst[0] = '\0';
    if (s && strlen(s) == KD_ID_HEX - 1)
        memcpy(dst, s, KD_ID_HEX);
    free(s);
}

/* POST a JSON body (ks_buf, consumed) and keep the answer. */
static int post_json(struct cli *c, const char *path, ks_buf *body, char **ans, size_t *alen)
{
    size_t len = body->len;
    char *text = ks_buf_take(body);
    int rc = remote_call(c->remote, "POST", path, text, len, ans, alen);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------- */

/* One version record of a result (kd_version_json's object) into row.
 * Read here rather than with rj_record: a projected row's value is not the
 * value its version_id names, so it must not be kept for remote_value. */
static int read_row(const char *rec, size_t len, kd_row *row)
{
    const char *del, *val;
    size_t dl, vl;
    memset(row, 0, sizeof *row);
    if (len == 0 || rec[0] != '{' || !rj_member(rec, len, "deleted", &del, &dl) ||
        !(row->key = rj_string(rec, len, "key")))
        return KD_EIO;
    kd_version *v = &row->version;
    read_id(v->version_id, rec, len, "version_id");
    read_id(v->write_id, rec, len, "write_id");
    read_id(v->previous_write_id, rec, len, "previous_write_id");
    v->timestamp = rj_time(rec, len, "timestamp");
    v->deleted = dl == 4 && memcmp(del, "true", 4) == 0;
    if (!v->deleted && rj_member(rec, len, "value", &val, &vl)) {
        row->value = copy_slice(val, vl);
        row->value_len = vl;
    }
    return KD_OK;
}

static void free_remote_result(kd_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_rows; i++) {
        free(r->rows[i].key);
        free(r->rows[i].value);
    }
    free(r->rows);
    free(r->aggregates);
    free(r);
}

/* kd_result_json's object ({"total":N,"rows":[…]} or
 * {"total":N,"aggregates":…}) into a result of our own allocation. */
static int read_result(const char *ans, size_t alen, kd_result **out)
{
    const char *list, *agg, *total;
    size_t llen, aglen, tlen;
    *out = NULL;
    if (!rj_member(ans, alen, "total", &total, &tlen))
        return KD_EIO;
    kd_result *r = xmalloc(sizeof *r);
    memset(r, 0, sizeof *r);
    r->total = rj_u64(ans, alen, "total");
    if (rj_member(ans, alen, "aggregates", &agg, &aglen)) {
        r->aggregates = copy_slice(agg, aglen);
        r->aggregates_len = aglen;
        *out = r;
        return KD_OK;
    }
    if (!rj_member(ans, alen, "rows", &list, &llen) || llen == 0 || list[0] != '[') {
        free_remote_result(r);
        return KD_EIO;
    }
    size_t pos = 0, cap = 0;
    const char *rec;
    size_t rlen;
    int more;
    while ((more = kd_json_next(list, llen, &pos, NULL, NULL, &rec, &rlen)) == 1) {
        if (r->n_rows == cap) {
            cap = cap ? 2 * cap : 16;
            r->rows = xrealloc(r->rows, cap * sizeof *r->rows);
        }
        kd_row *row = &r->rows[r->n_rows];
        if (read_row(rec, rlen, row) != KD_OK) {
            free(row->key);
            free_remote_result(r);
            return KD_EIO;
        }
        r->n_rows++;
    }
    if (more < 0) {
        free_remote_result(r);
        return KD_EIO;
    }
    *out = r;
    return KD_OK;
}

int st_query_run(struct cli *c, const char *ns, const kd_query *q, kd_result **out)
{
    if (!c->remote)
        return kd_query_run(c->db, ns, q, out);
    *out = NULL;
    char *body = NULL, *ans = NULL, *path = remote_path("api/v1/namespaces/%s/query", ns);
    size_t blen = 0, alen = 0;
    int rc = kd_query_to_json(q, &body, &blen);
    if (rc == KD_OK)
        rc = remote_call(c->remote, "POST", path, body, blen, &ans, &alen);
    if (rc == KD_OK && (rc = read_result(ans, alen, out)) != KD_OK)
        rc = remote_bad_answer(c->remote, "a query result");
    kd_free(body);
    free(ans);
    free(path);
    return rc;
}

void st_result_free(struct cli *c, kd_result *r)
{
    if (c->remote)
        free_remote_result(r);
    else
        kd_result_free(r);
}

/* ------------------------------------------------------------------------
 * Views
 * ---------------------------------------------------------------------- */

int st_view_create(struct cli *c, const char *name, const char *source_ns, const kd_query *q, const char *description,
                   int auto_refresh)
{
    if (!c->remote)
        return kd_view_create(c->db, name, source_ns, q, description, auto_refresh);
    ks_buf b = {0};
    char *query = NULL;
    size_t qlen = 0;
    int rc = kd_query_to_json(q, &query, &qlen);
    if (rc == KD_OK) {
        add_text(&b, "{\"name\":");
        rc = add_string(c, &b, name, "view name");
    }
    if (rc == KD_OK) {
        add_text(&b, ",\"source\":");
        rc = add_string(c, &b, source_ns, "namespace");
    }
    if (rc == KD_OK) {
        add_text(&b, ",\"description\":");
        rc = add_string(c, &b, description ? description : "", "description");
    }
    if (rc == KD_OK) {
        add_text(&b, ",\"query\":");
        ks_buf_add(&b, query, qlen);
        ks_buf_printf(&b, ",\"auto_refresh\":%s}", auto_refresh ? "true" : "false");
        rc = post_json(c, "api/v1/views", &b, NULL, NULL);
    }
    free(b.p);
    kd_free(query);
    return rc;
}

int st_view_delete(struct cli *c, const char *name)
{
    if (!c->remote)
        return kd_view_delete(c->db, name);
    char *path = remote_path("api/v1/views/%s", name);
    int rc = remote_call(c->remote, "DELETE", path, NULL, 0, NULL, NULL);
    free(path);
    return rc;
}

int st_view_refresh(struct cli *c, const char *name)
{
    if (!c->remote)
        return kd_view_refresh(c->db, name);
    char *path = remote_path("api/v1/views/%s/refresh", name);
    int rc = remote_call(c->remote, "POST", path, NULL, 0, NULL, NULL);
    free(path);
    return rc;
}

int st_view_query(struct cli *c, const char *name, size_t offset, size_t limit, kd_result **out)
{
    if (!c->remote)
        return kd_view_query(c->db, name, offset, limit, out);
    *out = NULL;
    char num[32], *ans = NULL, *path = remote_path("api/v1/views/%s/rows", name);
    size_t alen = 0;
    if (offset) {
        snprintf(num, sizeof num, "%zu", offset);
        remote_param(&path, "offset", num);
    }
    if (limit) { /* 0 is every row here; the server reads limit=0 as none */
        snprintf(num, sizeof num, "%zu", limit);
        remote_param(&path, "limit", num);
    }
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen);
    if (rc == KD_OK && (rc = read_result(ans, alen, out)) != KD_OK)
        rc = remote_bad_answer(c->remote, "a view's rows");
    free(ans);
    free(path);
    return rc;
}

/* One definition (`kdelta view list --json`'s object) into v. */
static int read_view(const char *obj, size_t len, kd_view_info *v)
{
    const char *query, *ar;
    size_t qlen, arlen;
    memset(v, 0, sizeof *v);
    if (!rj_member(obj, len, "query", &query, &qlen) || !rj_member(obj, len, "auto_refresh", &ar, &arlen) ||
        !(v->name = rj_string(obj, len, "name")) || !(v->source = rj_string(obj, len, "source")))
        return KD_EIO;
    v->query = copy_slice(query, qlen);
    v->description = string_or_empty(obj, len, "description");
    v->auto_refresh = arlen == 4 && memcmp(ar, "true", 4) == 0;
    v->created = rj_time(obj, len, "created");
    v->refreshed = rj_time(obj, len, "refreshed"); /* null: 0, never */
    return KD_OK;
}

int st_view_list(struct cli *c, kd_view_info **out, size_t *n)
{
    if (!c->remote)
        return kd_view_list(c->db, out, n);
    *out = NULL;
    *n = 0;
    char *ans = NULL;
    size_t alen = 0, llen, pos = 0, cap = 0;
    const char *list, *obj;
    size_t olen;
    int rc = remote_call(c->remote, "GET", "api/v1/views", NULL, 0, &ans, &alen);
    if (rc == KD_OK && (!rj_member(ans, alen, "views", &list, &llen) || llen == 0 || list[0] != '['))
        rc = remote_bad_answer(c->remote, "a list of views");
    while (rc == KD_OK && kd_json_next(list, llen, &pos, NULL, NULL, &obj, &olen) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        if ((rc = read_view(obj, olen, &(*out)[*n])) != KD_OK)
            rc = remote_bad_answer(c->remote, "a list of views");
        (*n)++; /* freed below on failure, partly filled members included */
    }
    if (rc != KD_OK) {
        kd_view_list_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    free(ans);
    return rc;
}

/* ------------------------------------------------------------------------
 * Indexes
 * ---------------------------------------------------------------------- */

int st_index_create(struct cli *c, const char *ns, const char *field)
{
    if (!c->remote)
        return kd_index_create(c->db, ns, field);
    ks_buf b = {0};
    add_text(&b, "{\"namespace\":");
    int rc = add_string(c, &b, ns, "namespace");
    if (rc == KD_OK) {
        add_text(&b, ",\"field\":");
        rc = add_string(c, &b, field, "field");
    }
    if (rc == KD_OK) {
        add_text(&b, "}");
        rc = post_json(c, "api/v1/indexes", &b, NULL, NULL);
    }
    free(b.p);
    return rc;
}

int st_index_drop(struct cli *c, const char *ns, const char *field)
{
    if (!c->remote)
        return kd_index_drop(c->db, ns, field);
    char *path = remote_path("api/v1/indexes/%s/%s", ns, field);
    int rc = remote_call(c->remote, "DELETE", path, NULL, 0, NULL, NULL);
    free(path);
    return rc;
}

int st_index_list(struct cli *c, const char *ns, kd_index_info **out, size_t *n)
{
    if (!c->remote)
        return kd_index_list(c->db, ns, out, n);
    *out = NULL;
    *n = 0;
    char *ans = NULL, *path = xstrdup("api/v1/indexes");
    size_t alen = 0, llen, pos = 0, cap = 0;
    const char *list, *obj;
    size_t olen;
    if (ns)
        remote_param(&path, "ns", ns);
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen);
    if (rc == KD_OK && (!rj_member(ans, alen, "indexes", &list, &llen) || llen == 0 || list[0] != '['))
        rc = remote_bad_answer(c->remote, "a list of indexes");
    while (rc == KD_OK && kd_json_next(list, llen, &pos, NULL, NULL, &obj, &olen) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        kd_index_info *ix = &(*out)[(*n)++];
        memset(ix, 0, sizeof *ix);
        ix->ns = rj_string(obj, olen, "namespace");
        ix->field = rj_string(obj, olen, "field");
        ix->entries = rj_u64(obj, olen, "entries");
        ix->created = rj_time(obj, olen, "created");
        const char *built;
        size_t blen;
        /* a server from before "built" lists only built indexes */
        ix->built = !rj_member(obj, olen, "built", &built, &blen) || (blen == 4 && memcmp(built, "true", 4) == 0);
        ix->error = ix->built ? xstrdup("") : rj_string(obj, olen, "error");
        if (!ix->ns || !ix->field || !ix->error)
            rc = remote_bad_answer(c->remote, "a list of indexes");
    }
    if (rc != KD_OK) {
        kd_index_list_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    free(ans);
    free(path);
    return rc;
}
