/*
 * routes_query.c — the HTTP routes for queries, materialized views and
 * secondary indexes (docs/HTTP.md, docs/openapi.yaml).
 *
 *   POST /api/v1/namespaces/{ns}/query                 query JSON form in the body
 *   GET  /api/v1/namespaces/{ns}/query?filter=&sort=…  the same query from parameters
 *   POST /api/v1/namespaces/{ns}/keys/{key}/history/query
 *   GET|POST /api/v1/views, GET|DELETE /api/v1/views/{name},
 *   GET /api/v1/views/{name}/rows, POST /api/v1/views/{name}/refresh
 *   GET|POST /api/v1/indexes, DELETE /api/v1/indexes/{ns}/{field}
 *
 * Like the CLI, this file uses only the public API. A query's JSON form is
 * compiled by kd_query_parse, whose message (naming the member, or the
 * column of a filter error) becomes the 400 error unchanged; the GET form
 * builds the same JSON text from its parameters first, so both forms answer
 * alike. Results are kd_result_json's object. Small request bodies (a view
 * or an index definition) are read after kd_json_canonical, which makes
 * them easy to walk: members sorted, no blanks, strings with only the
 * escapes JSON requires.
 *
 * Views and indexes are reported in the shapes of `kdelta view list --json`
 * and `kdelta index list --json`; lists are wrapped as {"views":[…]} and
 * {"indexes":[…]} like the server's other listings.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "server_int.h"

/* ------------------------------------------------------------------------
 * Text: the server's ks_buf (server_int.h; like all the server's
 * allocations it aborts on out-of-memory)
 * ---------------------------------------------------------------------- */

static void buf_puts(ks_buf *b, const char *s)
{
    ks_buf_add(b, s, strlen(s));
}

/* s (n bytes) as a JSON string literal. KD_EINVALID for invalid UTF-8. */
static int buf_quote(ks_buf *b, const char *s, size_t n)
{
    char *q = NULL;
    size_t qn = 0;
    int rc = kd_json_quote(s, n, &q, &qn);
    if (rc == KD_ENOMEM) { /* the server's policy on out-of-memory, as in ks_xmalloc */
        fputs("kdelta serve: out of memory\n", stderr);
        abort();
    }
    if (rc == KD_OK)
        ks_buf_add(b, q, qn);
    kd_free(q);
    return rc;
}

static void buf_time(ks_buf *b, int64_t ts)
{
    char t[48];
    if (kd_time_format(ts, t, sizeof t) == KD_OK)
        ks_buf_printf(b, "\"%s\"", t);
    else
        buf_puts(b, "null");
}

/* Send the buffer as the JSON body. */
static int send_buf(ks_response *res, int status, ks_buf *b)
{
    size_t len = b->len;
    ks_json_take(res, status, ks_buf_take(b), len);
    return 0;
}

/* Percent-encode s as one path segment (RFC 3986 unreserved bytes stay). */
static void buf_segment(ks_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '.' || *p == '_' || *p == '~') {
            ks_buf_add(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            ks_buf_add(b, e, 3);
        }
    }
}

/* The start of a Location: /api/v1/, or /api/v1/ws/{ws}/ for a request
 * made in a workspace (what it created lives there). */
static void location_start(const ks_request *req, ks_buf *loc)
{
    const char *ws = ks_var(req, "ws");
    buf_puts(loc, "/api/v1/");
    if (ws) {
        buf_puts(loc, "ws/");
        buf_segment(loc, ws);
        buf_puts(loc, "/");
    }
}

static void set_location(ks_response *res, ks_buf *loc)
{
    if (loc->p)
        ks_location(res, loc->p, loc->len);
    free(loc->p);
}

/* ------------------------------------------------------------------------
 * Reading canonical JSON
 * ---------------------------------------------------------------------- */

struct slice {
    const char *p;
    size_t len;
};

/* Next member of the canonical object v (kd_json_next): start with
 * *pos = 0. *name is the member's name, quoted. */
static int next_member(struct slice v, size_t *pos, struct slice *name, struct slice *val)
{
    if (v.len < 2 || v.p[0] != '{')
        return 0;
    return kd_json_next(v.p, v.len, pos, &name->p, &name->len, &val->p, &val->len) == 1;
}

/* A JSON string literal as a malloc'd C string, or NULL (not a string,
 * out of memory, or it holds U+0000, which a C string cannot). */
static char *unquote(struct slice s)
{
    char *out;
    size_t n;
    if (kd_json_unquote(s.p, s.len, &out, &n) != KD_OK)
        return NULL;
    if (strlen(out) != n) {
        kd_free(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Parameters
 * ---------------------------------------------------------------------- */

/* A non-negative integer parameter: 1 and *out set when present and valid,
 * 0 when absent, -1 (after a 400 response) when malformed. */
static int param_uint(const ks_request *req, ks_response *res, const char *name, uint64_t *out)
{
    const char *v = ks_param(req, name);
    if (!v)
        return 0;
    if (!v[0] || strspn(v, "0123456789") != strlen(v)) {
        ks_error(res, 400, "invalid", "%s: expected a non-negative integer, got '%.80s'", name, v);
        return -1;
    }
    uint64_t n = 0;
    for (size_t i = 0; v[i]; i++) {
        if (n > ((uint64_t)INT64_MAX - (uint64_t)(v[i] - '0')) / 10) {
            ks_error(res, 400, "invalid", "%s: %.80s is too large (at most %" PRId64 ")", name, v, INT64_MAX);
            return -1;
        }
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    *out = n;
    return 1;
}

/* Append ,"member":[items…] for a comma-separated list parameter (commas
 * inside a double-quoted path step do not split: sort="a,b":desc is one
 * item). Returns 0, or -1 after a 400 response. */
static int add_list_param(const ks_request *req, ks_response *res, ks_buf *q, const char *param,
                          const char *member)
{
    const char *v = ks_param(req, param);
    if (!v)
        return 0;
    ks_buf_printf(q, "%s\"%s\":[", q->len > 1 ? "," : "", member);
    for (const char *p = v;; ) {
        const char *e = p;
        int quoted = 0;
        for (; *e && (quoted || *e != ','); e++) {
            if (quoted && *e == '\\' && e[1])
                e++;
            else if (*e == '"')
                quoted = !quoted;
        }
        const char *a = p, *z = e;
        while (a < z && (*a == ' ' || *a == '\t'))
            a++;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
            z--;
        if (a == z) {
            ks_error(res, 400, "invalid", "%s: empty item in '%.200s' (items are separated by commas, e.g. %s)",
                     param, v,
                     strcmp(param, "sort") == 0        ? "sort=age:desc,name"
                     : strcmp(param, "aggregate") == 0 ? "aggregate=count,sum:price"
                                                       : "select=name,address.city");
            return -1;
        }
        if (p != v)
            buf_puts(q, ",");
        if (buf_quote(q, a, (size_t)(z - a)) == KD_EINVALID) {
            ks_error(res, 400, "invalid", "%s: not valid UTF-8", param);
            return -1;
        }
        if (!*e)
            break;
        p = e + 1;
    }
    buf_puts(q, "]");
    return 0;
}

/* The query's JSON form from the parameters of GET …/query:
 * filter, sort, select, offset, limit, at, aggregate, group_by.
 * Returns 0, or -1 after an error response. */
static int query_from_params(const ks_request *req, ks_response *res, ks_buf *q)
{
    static const struct {
        const char *param, *member;
    } lists[] = {{"sort", "sort"}, {"select", "select"}, {"aggregate", "aggregate"}, {"group_by", "group_by"}};
    buf_puts(q, "{");
    const char *filter = ks_param(req, "filter");
    if (filter) {
        buf_puts(q, "\"filter\":");
        if (buf_quote(q, filter, strlen(filter)) == KD_EINVALID) {
            ks_error(res, 400, "invalid", "filter: not valid UTF-8");
            return -1;
        }
    }
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (add_list_param(req, res, q, lists[i].param, lists[i].member) < 0)
            return -1;
    static const char *const nums[] = {"offset", "limit"};
    for (size_t i = 0; i < 2; i++) {
        uint64_t n;
        int got = param_uint(req, res, nums[i], &n);
        if (got < 0)
            return -1;
        if (got)
            ks_buf_printf(q, "%s\"%s\":%" PRIu64, q->len > 1 ? "," : "", nums[i], n);
    }
    const char *at = ks_param(req, "at");
    if (at) {
        /* an integer is nanoseconds since the epoch; anything else a TIME text */
        size_t i = at[0] == '-' ? 1 : 0, digits = strspn(at + i, "0123456789");
        ks_buf_printf(q, "%s\"at\":", q->len > 1 ? "," : "");
        if (digits && !at[i + digits] && digits <= 19) {
            /* a JSON number has no leading zeros: at=007 is 7 */
            size_t z = i;
            while (z + 1 < i + digits && at[z] == '0')
                z++;
            buf_puts(q, i ? "-" : "");
            buf_puts(q, at + z);
        } else if (buf_quote(q, at, strlen(at)) == KD_EINVALID) {
            ks_error(res, 400, "invalid", "at: not valid UTF-8");
            return -1;
        }
    }
    buf_puts(q, "}");
    return 0;
}

/* A top-level "filter", "at", "from" or "to" that is the empty string:
 * its message (in err), else NULL. kd_query_parse reads such an empty
 * string past the end of its buffer (src/query/query_json.c read_string
 * leaves it unterminated), so they are answered here, with the library's
 * own messages, until that is fixed. */
static const char *empty_member(const char *json, size_t len, char *err, size_t errlen)
{
    static const char *const names[] = {"filter", "at", "from", "to"};
    char *canon = NULL, jerr[128];
    size_t clen = 0;
    const char *found = NULL;
    if (kd_json_canonical(json, len, &canon, &clen, jerr, sizeof jerr) != KD_OK || canon[0] != '{') {
        kd_free(canon);
        return NULL;
    }
    for (size_t i = 0; i < 4 && !found; i++) {
        const char *v = NULL;
        size_t vlen = 0;
        if (kd_json_path(canon, clen, names[i], &v, &vlen) == KD_OK && vlen == 2 && v[0] == '"')
            found = names[i];
    }
    kd_free(canon);
    if (!found)
        return NULL;
    if (strcmp(found, "filter") == 0)
        snprintf(err, errlen, "filter: column 1: empty filter: expected a condition such as age > 30");
    else
        snprintf(err, errlen, "%s: invalid time '': empty (expected RFC 3339 like 2026-01-02T03:04:05Z, "
                 "@<nanoseconds>, or -5m)", found);
    return err;
}

/* Compile a query from JSON text; an empty body is {}. Returns the query,
 * or NULL after a 400 (or 500) response whose message starts with
 * `prefix`. */
static kd_query *compile(ks_response *res, const char *json, size_t len, const char *prefix)
{
    size_t i = 0;
    while (i < len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\n' || json[i] == '\r'))
        i++;
    if (i == len) {
        json = "{}";
        len = 2;
    }
    kd_query *q = NULL;
    char err[512] = "";
    if (empty_member(json, len, err, sizeof err)) {
        ks_error(res, 400, "invalid", "%s%s", prefix, err);
        return NULL;
    }
    int rc = kd_query_parse(json, len, &q, err, sizeof err);
    if (rc == KD_ENOMEM) {
        ks_error(res, 500, "no_memory", "out of memory");
        return NULL;
    }
    if (rc != KD_OK) {
        ks_error(res, 400, "invalid", "%s%s", prefix, err[0] ? err : kd_strerror(rc));
        return NULL;
    }
    return q;
}

/* ------------------------------------------------------------------------
 * Queries
 * ---------------------------------------------------------------------- */

/* Run q over ns (or over the versions of ns/key) and answer the result. */
static int answer_query(ks_request *req, ks_response *res, const kd_query *q, const char *key)
{
    const char *ns = ks_var(req, "ns");
    kd_result *r = NULL;
    int rc = key ? kd_query_history(req->db, ns, key, q, &r) : kd_query_run(req->db, ns, q, &r);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    char *json = NULL;
    size_t len = 0;
    rc = kd_result_json(req->db, ns, r, &json, &len);
    kd_result_free(r);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_json(res, 200, json, len);
    kd_free(json);
    return 0;
}

static int query_post(ks_request *req, ks_response *res)
{
    kd_query *q = compile(res, req->body, req->body_len, "");
    if (!q)
        return 0;
    answer_query(req, res, q, NULL);
    kd_query_free(q);
    return 0;
}

/* query_from_params() and compile() for tests/fuzz/fuzz_server.c
 * (server_int.h); query_get below is the two in turn. */
int ks_query_from_params(const ks_request *req, ks_response *res, char **json, size_t *len)
{
    ks_buf text = {0};
    int rc = query_from_params(req, res, &text);
    if (rc != 0) {
        free(text.p);
        text.p = NULL;
        text.len = 0;
    }
    *json = text.p;
    *len = text.len;
    return rc;
}

kd_query *ks_query_compile(ks_response *res, const char *json, size_t len, const char *prefix)
{
    return compile(res, json, len, prefix);
}

static int query_get(ks_request *req, ks_response *res)
{
    ks_buf text = {0};
    if (query_from_params(req, res, &text) == 0) {
        kd_query *q = compile(res, text.p, text.len, "");
        if (q)
            answer_query(req, res, q, NULL);
        kd_query_free(q);
    }
    free(text.p);
    return 0;
}

static int history_query(ks_request *req, ks_response *res)
{
    kd_query *q = compile(res, req->body, req->body_len, "");
    if (!q)
        return 0;
    answer_query(req, res, q, ks_var(req, "key"));
    kd_query_free(q);
    return 0;
}

/* ------------------------------------------------------------------------
 * Request bodies with named members (views, indexes)
 * ---------------------------------------------------------------------- */

/* The body as a canonical JSON object in *canon (kd_free it), or -1 after
 * a 400 response. `example` shows the expected shape. */
static int body_object(ks_request *req, ks_response *res, char **canon, size_t *len, const char *example)
{
    char err[256] = "";
    *canon = NULL;
    if (req->body_len == 0) {
        ks_error(res, 400, "invalid", "request body: expected a JSON object such as %s", example);
        return -1;
    }
    int rc = kd_json_canonical(req->body, req->body_len, canon, len, err, sizeof err);
    if (rc == KD_ENOMEM) {
        ks_error(res, 500, "no_memory", "out of memory");
        return -1;
    }
    if (rc != KD_OK) {
        ks_error(res, 400, "invalid", "request body: %s", err[0] ? err : kd_strerror(rc));
        return -1;
    }
    if ((*canon)[0] != '{') {
        kd_free(*canon);
        *canon = NULL;
        ks_error(res, 400, "invalid", "request body: expected a JSON object such as %s", example);
        return -1;
    }
    return 0;
}

/* 1 if the quoted name s is "want". */
static int named(struct slice s, const char *want)
{
    size_t n = strlen(want);
    return s.len == n + 2 && memcmp(s.p + 1, want, n) == 0;
}

/* A string member as a C string, or -1 after a 400 response. */
static int member_string(ks_response *res, struct slice name, struct slice val, char **out)
{
    free(*out);
    *out = NULL;
    if (val.p[0] != '"') {
        ks_error(res, 400, "invalid", "%.*s: expected a string", (int)name.len, name.p);
        return -1;
    }
    if (!(*out = unquote(val))) {
        ks_error(res, 400, "invalid", "%.*s: must not contain U+0000", (int)name.len, name.p);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Views
 * ---------------------------------------------------------------------- */

/* One view as `kdelta view list --json` writes it. */
static void view_json(ks_buf *b, const kd_view_info *v)
{
    buf_puts(b, "{\"name\":");
    buf_quote(b, v->name, strlen(v->name));
    buf_puts(b, ",\"source\":");
    buf_quote(b, v->source, strlen(v->source));
    buf_puts(b, ",\"query\":");
    buf_puts(b, v->query);
    buf_puts(b, ",\"description\":");
    buf_quote(b, v->description, strlen(v->description));
    ks_buf_printf(b, ",\"auto_refresh\":%s,\"created\":", v->auto_refresh ? "true" : "false");
    buf_time(b, v->created);
    buf_puts(b, ",\"refreshed\":");
    if (v->refreshed)
        buf_time(b, v->refreshed);
    else
        buf_puts(b, "null");
    buf_puts(b, "}");
}

/* Answer the definition of view `name` with `status` (404 if unknown). */
static int answer_view(ks_request *req, ks_response *res, const char *name, int status)
{
    kd_view_info *list = NULL;
    size_t n = 0;
    int rc = kd_view_list(req->db, &list, &n);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    size_t i = 0;
    while (i < n && strcmp(list[i].name, name) != 0)
        i++;
    if (i == n) {
        ks_error(res, 404, "not_found", "no view named '%.300s' (GET /api/v1/views lists them)", name);
    } else {
        ks_buf b = {0};
        view_json(&b, &list[i]);
        send_buf(res, status, &b);
    }
    kd_view_list_free(list, n);
    return 0;
}

static int views_list(ks_request *req, ks_response *res)
{
    kd_view_info *list = NULL;
    size_t n = 0;
    int rc = kd_view_list(req->db, &list, &n);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    buf_puts(&b, "{\"views\":[");
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        /* With --auth: a view shows its source's rows, so only views over
         * a namespace the caller may read whole are listed. */
        if (!ks_may(req, list[i].source, NULL, KD_PERM_READ))
            continue;
        if (!first)
            buf_puts(&b, ",");
        first = 0;
        view_json(&b, &list[i]);
    }
    buf_puts(&b, "]}");
    kd_view_list_free(list, n);
    return send_buf(res, 200, &b);
}

#define VIEW_EXAMPLE "{\"name\":\"adults\",\"source\":\"users\",\"query\":{\"filter\":\"age >= 18\"}}"

static int view_create(ks_request *req, ks_response *res)
{
    char *canon = NULL, *name = NULL, *source = NULL, *description = NULL;
    size_t len = 0, pos = 0;
    struct slice name_s, val, query = {"{}", 2};
    int auto_refresh = 1;
    kd_query *q = NULL;
    if (body_object(req, res, &canon, &len, VIEW_EXAMPLE) < 0)
        goto done;
    struct slice obj = {canon, len};
    while (next_member(obj, &pos, &name_s, &val)) {
        if (named(name_s, "name")) {
            if (member_string(res, name_s, val, &name) < 0)
                goto done;
        } else if (named(name_s, "source")) {
            if (member_string(res, name_s, val, &source) < 0)
                goto done;
        } else if (named(name_s, "description")) {
            if (member_string(res, name_s, val, &description) < 0)
                goto done;
        } else if (named(name_s, "query")) {
            if (val.p[0] != '{') {
                ks_error(res, 400, "invalid", "\"query\": expected the JSON form of a query, an object such as "
                                              "{\"filter\":\"age >= 18\",\"sort\":[\"age:desc\"]}");
                goto done;
            }
            query = val;
        } else if (named(name_s, "auto_refresh")) {
            if (val.len == 4 && memcmp(val.p, "true", 4) == 0) {
                auto_refresh = 1;
            } else if (val.len == 5 && memcmp(val.p, "false", 5) == 0) {
                auto_refresh = 0;
            } else {
                ks_error(res, 400, "invalid", "\"auto_refresh\": expected true or false");
                goto done;
            }
        } else {
            ks_error(res, 400, "invalid",
                     "%.*s: unknown member (known: name, source, query, description, auto_refresh)",
                     (int)(name_s.len > 200 ? 200 : name_s.len), name_s.p);
            goto done;
        }
    }
    if (!name || !*name) {
        ks_error(res, 400, "invalid", "\"name\": expected the view's name (a non-empty string), as in %s",
                 VIEW_EXAMPLE);
        goto done;
    }
    if (!source || !*source) {
        ks_error(res, 400, "invalid", "\"source\": expected the namespace the view reads (a non-empty string)");
        goto done;
    }
    if (!(q = compile(res, query.p, query.len, "query: ")))
        goto done;
    int rc = kd_view_create(req->db, name, source, q, description ? description : "", auto_refresh);
    if (rc != KD_OK) {
        if (rc == KD_EEXISTS)
            ks_error(res, 409, "exists", "a view named '%.300s' already exists (delete it first, or choose another "
                                         "name)", name);
        else
            ks_kd_error(res, req->db, rc);
        goto done;
    }
    ks_buf loc = {0};
    location_start(req, &loc);
    buf_puts(&loc, "views/");
    buf_segment(&loc, name);
    set_location(res, &loc);
    answer_view(req, res, name, 201);
done:
    kd_query_free(q);
    free(description);
    free(source);
    free(name);
    kd_free(canon);
    return 0;
}

static int view_get(ks_request *req, ks_response *res)
{
    return answer_view(req, res, ks_var(req, "name"), 200);
}

static int view_rows(ks_request *req, ks_response *res)
{
    const char *name = ks_var(req, "name");
    uint64_t offset = 0, limit = 0;
    int has_offset = param_uint(req, res, "offset", &offset), has_limit;
    if (has_offset < 0 || (has_limit = param_uint(req, res, "limit", &limit)) < 0)
        return 0;
    kd_view_info *list = NULL;
    size_t n = 0, i = 0;
    kd_result *r = NULL;
    int rc = kd_view_list(req->db, &list, &n);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    while (i < n && strcmp(list[i].name, name) != 0)
        i++;
    if (i == n) {
        ks_error(res, 404, "not_found", "no view named '%.300s' (GET /api/v1/views lists them)", name);
        goto done;
    }
    /* limit=0 gives no rows but still counts them, as in a query (for
     * kd_view_query a limit of 0 means no limit) */
    int none = has_limit && limit == 0;
    if ((rc = kd_view_query(req->db, name, (size_t)offset, none ? 1 : (size_t)limit, &r)) != KD_OK) {
        if (rc == KD_ENOTFOUND) /* deleted in between */
            ks_error(res, 404, "not_found", "no view named '%.300s' (GET /api/v1/views lists them)", name);
        else
            ks_kd_error(res, req->db, rc);
        goto done;
    }
    kd_result page = *r;
    if (none)
        page.n_rows = 0;
    char *json = NULL;
    size_t len = 0;
    if ((rc = kd_result_json(req->db, list[i].source, &page, &json, &len)) != KD_OK) {
        ks_kd_error(res, req->db, rc);
        goto done;
    }
    ks_json(res, 200, json, len);
    kd_free(json);
done:
    kd_result_free(r);
    kd_view_list_free(list, n);
    return 0;
}

static int view_refresh(ks_request *req, ks_response *res)
{
    const char *name = ks_var(req, "name");
    int rc = kd_view_refresh(req->db, name);
    if (rc == KD_ENOTFOUND) {
        ks_error(res, 404, "not_found", "no view named '%.300s' (GET /api/v1/views lists them)", name);
        return 0;
    }
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    return answer_view(req, res, name, 200);
}

static int view_delete(ks_request *req, ks_response *res)
{
    const char *name = ks_var(req, "name");
    int rc = kd_view_delete(req->db, name);
    if (rc == KD_ENOTFOUND) {
        ks_error(res, 404, "not_found", "no view named '%.300s' (GET /api/v1/views lists them)", name);
        return 0;
    }
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    buf_puts(&b, "{\"name\":");
    buf_quote(&b, name, strlen(name));
    buf_puts(&b, ",\"deleted\":true}");
    return send_buf(res, 200, &b);
}

/* ------------------------------------------------------------------------
 * Indexes
 * ---------------------------------------------------------------------- */

/* The path text `field` as the library writes it back (quotes only where
 * needed: "\"name\"" is name), malloc'd; NULL if it is not a valid path.
 * Read through the JSON form of the filter `field exists`, which accepts
 * any path (a field named like a keyword too). */
static char *field_text(const char *field)
{
    ks_buf f = {0};
    kd_filter *flt = NULL;
    char *json = NULL, *out = NULL, err[256];
    size_t len = 0;
    buf_puts(&f, "{\"op\":\"exists\",\"field\":");
    if (buf_quote(&f, field, strlen(field)) != KD_OK)
        goto done;
    buf_puts(&f, "}");
    if (kd_filter_from_json(f.p, f.len, &flt, err, sizeof err) != KD_OK ||
        kd_filter_to_json(flt, &json, &len) != KD_OK)
        goto done;
    const char *v = NULL;
    size_t vlen = 0;
    if (kd_json_path(json, len, "field", &v, &vlen) == KD_OK) {
        struct slice s = {v, vlen};
        out = unquote(s);
    }
done:
    kd_free(json);
    kd_filter_free(flt);
    free(f.p);
    return out;
}

/* One index as `kdelta index list --json` writes it. */
static void index_json(ks_buf *b, const kd_index_info *ix)
{
    buf_puts(b, "{\"namespace\":");
    buf_quote(b, ix->ns, strlen(ix->ns));
    buf_puts(b, ",\"field\":");
    buf_quote(b, ix->field, strlen(ix->field));
    ks_buf_printf(b, ",\"entries\":%" PRIu64 ",\"created\":", ix->entries);
    buf_time(b, ix->created);
    if (ix->built) {
        buf_puts(b, ",\"built\":true,\"error\":null}");
        return;
    }
    buf_puts(b, ",\"built\":false,\"error\":");
    buf_quote(b, ix->error, strlen(ix->error));
    buf_puts(b, "}");
}

static int indexes_list(ks_request *req, ks_response *res)
{
    const char *ns = ks_param(req, "ns");
    kd_index_info *list = NULL;
    size_t n = 0;
    int rc = kd_index_list(req->db, ns && *ns ? ns : NULL, &list, &n);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    buf_puts(&b, "{\"indexes\":[");
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        /* With --auth: an index's entry count describes its namespace. */
        if (!ks_may(req, list[i].ns, NULL, KD_PERM_READ))
            continue;
        if (!first)
            buf_puts(&b, ",");
        first = 0;
        index_json(&b, &list[i]);
    }
    buf_puts(&b, "]}");
    kd_index_list_free(list, n);
    return send_buf(res, 200, &b);
}

#define INDEX_EXAMPLE "{\"namespace\":\"users\",\"field\":\"address.city\"}"

static int index_create(ks_request *req, ks_response *res)
{
    char *canon = NULL, *ns = NULL, *field = NULL, *text = NULL;
    size_t len = 0, pos = 0, n = 0;
    struct slice name_s, val;
    kd_index_info *list = NULL;
    if (body_object(req, res, &canon, &len, INDEX_EXAMPLE) < 0)
        goto done;
    struct slice obj = {canon, len};
    while (next_member(obj, &pos, &name_s, &val)) {
        if (named(name_s, "namespace")) {
            if (member_string(res, name_s, val, &ns) < 0)
                goto done;
        } else if (named(name_s, "field")) {
            if (member_string(res, name_s, val, &field) < 0)
                goto done;
        } else {
            ks_error(res, 400, "invalid", "%.*s: unknown member (known: namespace, field)",
                     (int)(name_s.len > 200 ? 200 : name_s.len), name_s.p);
            goto done;
        }
    }
    if (!ns || !*ns) {
        ks_error(res, 400, "invalid", "\"namespace\": expected a non-empty string, as in %s", INDEX_EXAMPLE);
        goto done;
    }
    if (!field || !*field) {
        ks_error(res, 400, "invalid", "\"field\": expected a field path such as age or address.city");
        goto done;
    }
    int rc = kd_index_create(req->db, ns, field);
    if (rc == KD_EEXISTS) {
        ks_error(res, 409, "exists", "an index on %.255s %.300s already exists", ns, field);
        goto done;
    }
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        goto done;
    }
    if ((rc = kd_index_list(req->db, ns, &list, &n)) != KD_OK) {
        ks_kd_error(res, req->db, rc);
        goto done;
    }
    text = field_text(field);
    size_t i = 0;
    while (i < n && !(text && strcmp(list[i].field, text) == 0))
        i++;
    if (i == n) { /* dropped by another request in between */
        ks_error(res, 404, "not_found", "the index on %.255s %.300s was dropped while it was being created", ns,
                 field);
        goto done;
    }
    ks_buf loc = {0};
    location_start(req, &loc);
    buf_puts(&loc, "indexes/");
    buf_segment(&loc, ns);
    buf_puts(&loc, "/");
    buf_segment(&loc, list[i].field);
    set_location(res, &loc);
    ks_buf b = {0};
    index_json(&b, &list[i]);
    send_buf(res, 201, &b);
done:
    kd_index_list_free(list, n);
    free(text);
    free(field);
    free(ns);
    kd_free(canon);
    return 0;
}

static int index_drop(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *field = ks_var(req, "field");
    int rc = kd_index_drop(req->db, ns, field);
    if (rc == KD_ENOTFOUND) {
        ks_error(res, 404, "not_found", "no index on %.255s %.300s (GET /api/v1/indexes lists them)", ns, field);
        return 0;
    }
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    char *text = field_text(field);
    ks_buf b = {0};
    buf_puts(&b, "{\"namespace\":");
    buf_quote(&b, ns, strlen(ns));
    buf_puts(&b, ",\"field\":");
    buf_quote(&b, text ? text : field, strlen(text ? text : field));
    buf_puts(&b, ",\"dropped\":true}");
    free(text);
    return send_buf(res, 200, &b);
}

/* ------------------------------------------------------------------------
 * The table
 * ---------------------------------------------------------------------- */

const ks_route ks_routes_query[] = {
    {"POST", "api/v1/namespaces/{ns}/query", query_post, "query"},
    {"GET", "api/v1/namespaces/{ns}/query", query_get, "query_get"},
    {"POST", "api/v1/namespaces/{ns}/keys/{key}/history/query", history_query, "history_query"},
    {"GET", "api/v1/views", views_list, "views_list"},
    {"POST", "api/v1/views", view_create, "view_create"},
    {"GET", "api/v1/views/{name}", view_get, "view_get"},
    {"DELETE", "api/v1/views/{name}", view_delete, "view_delete"},
    {"GET", "api/v1/views/{name}/rows", view_rows, "view_rows"},
    {"POST", "api/v1/views/{name}/refresh", view_refresh, "view_refresh"},
    {"GET", "api/v1/indexes", indexes_list, "indexes_list"},
    {"POST", "api/v1/indexes", index_create, "index_create"},
    {"DELETE", "api/v1/indexes/{ns}/{field}", index_drop, "index_drop"},
    /* the same in workspace {ws} (DESIGN.md §2): http.c runs them on its handle */
    {"POST", "api/v1/ws/{ws}/namespaces/{ns}/query", query_post, "query"},
    {"GET", "api/v1/ws/{ws}/namespaces/{ns}/query", query_get, "query_get"},
    {"POST", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}/history/query", history_query, "history_query"},
    {"GET", "api/v1/ws/{ws}/views", views_list, "views_list"},
    {"POST", "api/v1/ws/{ws}/views", view_create, "view_create"},
    {"GET", "api/v1/ws/{ws}/views/{name}", view_get, "view_get"},
    {"DELETE", "api/v1/ws/{ws}/views/{name}", view_delete, "view_delete"},
    {"GET", "api/v1/ws/{ws}/views/{name}/rows", view_rows, "view_rows"},
    {"POST", "api/v1/ws/{ws}/views/{name}/refresh", view_refresh, "view_refresh"},
    {"GET", "api/v1/ws/{ws}/indexes", indexes_list, "indexes_list"},
    {"POST", "api/v1/ws/{ws}/indexes", index_create, "index_create"},
    {"DELETE", "api/v1/ws/{ws}/indexes/{ns}/{field}", index_drop, "index_drop"},
    {NULL, NULL, NULL, NULL},
};
