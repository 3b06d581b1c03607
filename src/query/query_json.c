/*
 * query_json.c — the JSON form of a query: kd_query_parse compiles it into
 * a kd_query (query.h), kd_query_to_json writes the canonical form back,
 * kd_query_free releases it.
 *
 * The text is first made canonical (json.c), then walked with the value
 * reader of jv.h, so parsing a query uses the same code as reading stored
 * values. Every error is KD_EINVALID with a message that starts with the
 * member at fault ("sort[1]: …"). docs/QUERY.md "Queries" is the reference.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../json/json.h"
#include "query.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

typedef struct pctx {
    kd_query *q;
    char *err;
    size_t errlen;
    kd__buf s; /* scratch: the last string read */
} pctx;

static int perr(pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(pctx *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return KD_EINVALID;
}

static int nomem(pctx *c)
{
    if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "out of memory");
    return KD_ENOMEM;
}

int kd__name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Is slice v the JSON string literal lit (a quoted ASCII name)? Canonical
 * JSON writes plain ASCII names without escapes, so bytes compare. */
static int is_name(kd__jv v, const char *lit)
{
    size_t n = strlen(lit);
    return v.len == n + 2 && v.p[0] == '"' && memcmp(v.p + 1, lit, n) == 0;
}

/* The unescaped string v in c->s (NUL-terminated); *len its length. */
static int read_string(pctx *c, kd__jv v, const char **s, size_t *len)
{
    kd__buf_reset(&c->s);
    if (kd__jv_string(v, &c->s) || kd__buf_reserve(&c->s, 0))
        return nomem(c);
    c->s.data[c->s.len] = '\0'; /* an empty string appended nothing */
    *s = c->s.data;
    *len = c->s.len;
    return KD_OK;
}

/* Name of a member for messages (unescaped, truncated by the caller). */
static const char *member_name(pctx *c, kd__jv name)
{
    const char *s;
    size_t n;
    if (read_string(c, name, &s, &n))
        return "?";
    return s;
}

static const char *type_name(kd__jv v)
{
    switch (kd__jv_type(v)) {
    case KD__J_NULL: return "null";
    case KD__J_FALSE:
    case KD__J_TRUE: return "a boolean";
    case KD__J_NUMBER: return "a number";
    case KD__J_STRING: return "a string";
    case KD__J_ARRAY: return "an array";
    default: return "an object";
    }
}

static void field_free(kd__qfield *f)
{
    kd__path_free(&f->path);
    free(f->text);
    free(f->quoted);
    memset(f, 0, sizeof *f);
}

/* Compile path text[0..len) into f. `what` names the member for errors. */
static int field_parse(pctx *c, const char *text, size_t len, kd__qfield *f, const char *what)
{
    char e[200];
    e[0] = '\0';
    memset(f, 0, sizeof *f);
    if (memchr(text, '\0', len))
        return perr(c, "%s: a path cannot contain a NUL character", what);
    int rc = kd__path_parse(text, len, &f->path, e, sizeof e);
    if (rc == KD_ENOMEM)
        return nomem(c);
    if (rc)
        return perr(c, "%s: bad path \"%.*s\": %s", what, (int)(len > 100 ? 100 : len), text, e);
    kd__buf b = KD__BUF_INIT;
    if (kd__path_write(&b, &f->path) || !(f->text = kd__buf_steal(&b, &f->text_len)))
        goto oom;
    if (kd__json_write_string(&b, f->text, f->text_len) || !(f->quoted = kd__buf_steal(&b, &f->quoted_len)))
        goto oom;
    return KD_OK;
oom:
    kd__buf_free(&b);
    field_free(f);
    return nomem(c);
}

/* Is v a number written as a whole number (no fraction, no exponent)? */
static int integer_text(kd__jv v)
{
    size_t i = v.len && v.p[0] == '-';
    while (i < v.len && v.p[i] >= '0' && v.p[i] <= '9')
        i++;
    return kd__jv_type(v) == KD__J_NUMBER && i == v.len;
}

/* A non-negative integer member (offset, limit, latest). */
static int read_count(pctx *c, kd__jv v, const char *what, uint64_t *out)
{
    int64_t i;
    if (integer_text(v) && v.p[0] != '-' && !kd__jv_int64(v, &i))
        return perr(c, "%s: %.*s is too large (at most %" PRId64 ")", what, (int)(v.len > 40 ? 40 : v.len), v.p,
                    INT64_MAX);
    if (kd__jv_type(v) != KD__J_NUMBER || !kd__jv_int64(v, &i) || i < 0)
        return perr(c, "%s: must be a non-negative integer, not %.*s", what, (int)(v.len > 40 ? 40 : v.len), v.p);
    *out = (uint64_t)i;
    return KD_OK;
}

/* A time member (at, from, to): kd_time_parse text or integer ns. */
static int read_time(pctx *c, kd__jv v, const char *what, int64_t *out)
{
    if (kd__jv_type(v) == KD__J_NUMBER) {
        if (integer_text(v) && !kd__jv_int64(v, out))
            return perr(c, "%s: %.*s nanoseconds is out of the 64-bit range", what, (int)(v.len > 40 ? 40 : v.len),
                        v.p);
        if (!kd__jv_int64(v, out))
            return perr(c, "%s: must be an integer number of nanoseconds since the epoch", what);
        return KD_OK;
    }
    if (kd__jv_type(v) != KD__J_STRING)
        return perr(c, "%s: must be a time (RFC 3339, \"@<ns>\", \"-5m\", \"now\") or integer nanoseconds, not %s",
                    what, type_name(v));
    const char *s;
    size_t n;
    int rc = read_string(c, v, &s, &n);
    if (rc)
        return rc;
    char e[200];
    if (strlen(s) != n || kd_time_parse(s, out, e, sizeof e))
        return perr(c, "%s: %s", what, strlen(s) != n ? "a time cannot contain a NUL character" : e);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Members
 * ---------------------------------------------------------------------- */

static int parse_filter(pctx *c, kd__jv v)
{
    char e[256];
    e[0] = '\0';
    int rc, json_form = 0;
    if (kd__jv_type(v) == KD__J_STRING) {
        const char *s;
        size_t n;
        if ((rc = read_string(c, v, &s, &n)))
            return rc;
        if (strlen(s) != n)
            return perr(c, "filter: the text cannot contain a NUL character");
        rc = kd_filter_parse(s, &c->q->filter, e, sizeof e);
    } else if (kd__jv_type(v) == KD__J_OBJECT) {
        /* its messages start with "filter" already; sized to fit c->err,
         * so that the reason at their end is never cut */
        json_form = 1;
        rc = kd_filter_from_json(v.p, v.len, &c->q->filter, e, c->errlen < sizeof e ? c->errlen : sizeof e);
    } else {
        return perr(c, "filter: must be a string (text form) or an object (JSON form), not %s", type_name(v));
    }
    if (rc == KD_ENOMEM)
        return nomem(c);
    if (rc && json_form && e[0])
        return perr(c, "%s", e);
    if (rc)
        return perr(c, "filter: %s", e[0] ? e : kd_strerror(rc));
    return KD_OK;
}

/* Position of the last ':' outside a quoted path step, or -1. */
static long last_colon(const char *s, size_t n)
{
    long at = -1;
    int quoted = 0;
    for (size_t i = 0; i < n; i++) {
        if (quoted) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '"')
                quoted = 0;
        } else if (s[i] == '"') {
            quoted = 1;
        } else if (s[i] == ':') {
            at = (long)i;
        }
    }
    return at;
}

static int parse_sort_item(pctx *c, kd__jv v, size_t i, kd__qfield *f)
{
    char what[48];
    snprintf(what, sizeof what, "sort[%zu]", i);
    int rc, desc = 0;
    if (kd__jv_type(v) == KD__J_STRING) {
        const char *s;
        size_t n;
        if ((rc = read_string(c, v, &s, &n)))
            return rc;
        long colon = last_colon(s, n);
        size_t plen = n;
        if (colon >= 0) {
            const char *ord = s + colon + 1;
            size_t olen = n - (size_t)colon - 1;
            if (olen == 3 && !memcmp(ord, "asc", 3))
                desc = 0;
            else if (olen == 4 && !memcmp(ord, "desc", 4))
                desc = 1;
            else
                return perr(c,
                            "%s: \"%.*s\" after the last ':' is not an order (asc or desc); a field name "
                            "containing ':' goes in {\"field\": …} or in a quoted step (\"\\\"a:b\\\"\")",
                            what, (int)(olen > 40 ? 40 : olen), ord);
            plen = (size_t)colon;
        }
        /* field_parse reuses nothing of c->s, but copy: s lives in c->s */
        char *p = malloc(plen + 1);
        if (!p)
            return nomem(c);
        memcpy(p, s, plen);
        p[plen] = '\0';
        rc = field_parse(c, p, plen, f, what);
        free(p);
        if (rc)
            return rc;
        f->desc = desc;
        return KD_OK;
    }
    if (kd__jv_type(v) != KD__J_OBJECT)
        return perr(c, "%s: must be a string (\"path\", \"path:asc\", \"path:desc\") or {\"field\": …, \"order\": …}, "
                       "not %s", what, type_name(v));
    size_t pos = 0;
    kd__jv name, val, field = KD__JV_MISSING;
    while (kd__jv_next_member(v, &pos, &name, &val)) {
        if (is_name(name, "field")) {
            if (kd__jv_type(val) != KD__J_STRING)
                return perr(c, "%s.field: must be a string (a path), not %s", what, type_name(val));
            field = val;
        } else if (is_name(name, "order")) {
            if (is_name(val, "asc"))
                desc = 0;
            else if (is_name(val, "desc"))
                desc = 1;
            else
                return perr(c, "%s.order: must be \"asc\" or \"desc\"", what);
        } else {
            return perr(c, "%s: unknown member \"%.60s\" (known: field, order)", what, member_name(c, name));
        }
    }
    if (!field.p)
        return perr(c, "%s: the object needs \"field\"", what);
    const char *s;
    size_t n;
    if ((rc = read_string(c, field, &s, &n)))
        return rc;
    char fw[64];
    snprintf(fw, sizeof fw, "%s.field", what);
    if ((rc = field_parse(c, s, n, f, fw)))
        return rc;
    f->desc = desc;
    return KD_OK;
}

static int check_array(pctx *c, kd__jv v, const char *what, size_t *n)
{
    if (kd__jv_type(v) != KD__J_ARRAY)
        return perr(c, "%s: must be an array, not %s", what, type_name(v));
    *n = kd__jv_count(v);
    return KD_OK;
}

static int parse_sort(pctx *c, kd__jv v)
{
    size_t n = 0;
    int rc = check_array(c, v, "sort", &n);
    if (rc || !n)
        return rc;
    if (!(c->q->sort = calloc(n, sizeof *c->q->sort)))
        return nomem(c);
    size_t pos = 0;
    kd__jv item;
    while (kd__jv_next_item(v, &pos, &item)) {
        if ((rc = parse_sort_item(c, item, c->q->n_sort, &c->q->sort[c->q->n_sort])))
            return rc;
        c->q->n_sort++;
    }
    return KD_OK;
}

/* A name and its place in the query, to find names given twice by sorting
 * instead of comparing every pair (a query may name tens of thousands). */
typedef struct named {
    const char *s;
    size_t len, at;
} named;

static int named_cmp(const void *a, const void *b)
{
    const named *x = a, *y = b;
    int c = kd__name_cmp(x->s, x->len, y->s, y->len);
    return c ? c : (x->at > y->at) - (x->at < y->at);
}

/* The first place whose name an earlier place already has, or n. Sorts v. */
static size_t first_repeat(named *v, size_t n)
{
    qsort(v, n, sizeof *v, named_cmp);
    size_t first = n;
    for (size_t k = 1; k < n; k++)
        if (v[k].at < first && !kd__name_cmp(v[k - 1].s, v[k - 1].len, v[k].s, v[k].len))
            first = v[k].at;
    return first;
}

/* An array of path strings (select, group_by), without duplicates. */
static int parse_paths(pctx *c, kd__jv v, const char *member, kd__qfield **out, size_t *count)
{
    size_t n = 0;
    int rc = check_array(c, v, member, &n);
    if (rc)
        return rc;
    if (!n)
        return perr(c, "%s: must not be empty", member);
    if (!(*out = calloc(n, sizeof **out)))
        return nomem(c);
    size_t pos = 0;
    kd__jv item;
    char what[48];
    while (kd__jv_next_item(v, &pos, &item)) {
        snprintf(what, sizeof what, "%s[%zu]", member, *count);
        if (kd__jv_type(item) != KD__J_STRING)
            return perr(c, "%s: must be a string (a path), not %s", what, type_name(item));
        const char *s;
        size_t len;
        if ((rc = read_string(c, item, &s, &len)) || (rc = field_parse(c, s, len, &(*out)[*count], what)))
            return rc;
        (*count)++;
    }
    named *names = malloc(*count * sizeof *names);
    if (!names)
        return nomem(c);
    for (size_t i = 0; i < *count; i++)
        names[i] = (named){(*out)[i].text, (*out)[i].text_len, i};
    size_t r = first_repeat(names, *count);
    free(names);
    if (r < *count)
        return perr(c, "%s[%zu]: \"%s\" is named twice", member, r, (*out)[r].text);
    return KD_OK;
}

static const struct {
    const char *name;
    kd__aop op;
} AGG_OPS[] = {
    {"count", KD__A_COUNT}, {"sum", KD__A_SUM},           {"avg", KD__A_AVG},
    {"min", KD__A_MIN},     {"max", KD__A_MAX},           {"distinct", KD__A_DISTINCT},
    {"count_distinct", KD__A_COUNT_DISTINCT},
};
#define N_AGG_OPS (sizeof AGG_OPS / sizeof AGG_OPS[0])
#define AGG_KNOWN "count, sum, avg, min, max, distinct, count_distinct"

/* Aggregation `op` (op[0..oplen)) over path[0..plen) (path NULL: none). */
static int agg_make(pctx *c, const char *what, const char *op, size_t oplen, const char *path, size_t plen,
                    kd__qagg *a)
{
    size_t k;
    for (k = 0; k < N_AGG_OPS; k++)
        if (strlen(AGG_OPS[k].name) == oplen && !memcmp(AGG_OPS[k].name, op, oplen))
            break;
    if (k == N_AGG_OPS)
        return perr(c, "%s: unknown operation \"%.*s\" (known: " AGG_KNOWN ")", what,
                    (int)(oplen > 40 ? 40 : oplen), op);
    a->op = AGG_OPS[k].op;
    if (a->op == KD__A_COUNT && path)
        return perr(c, "%s: count takes no field (count_distinct:path counts distinct values)", what);
    if (a->op != KD__A_COUNT && !path)
        return perr(c, "%s: %s needs a field, as in \"%s:price\"", what, AGG_OPS[k].name, AGG_OPS[k].name);
    kd__buf b = KD__BUF_INIT;
    int rc;
    if (path) {
        if ((rc = field_parse(c, path, plen, &a->field, what)))
            return rc;
        if (kd__buf_printf(&b, "%s:", AGG_OPS[k].name) || kd__buf_append(&b, a->field.text, a->field.text_len))
            goto oom;
    } else if (kd__buf_puts(&b, "count")) {
        goto oom;
    }
    if (!(a->name = kd__buf_steal(&b, &a->name_len)))
        goto oom;
    if (kd__json_write_string(&b, a->name, a->name_len) || !(a->quoted = kd__buf_steal(&b, &a->quoted_len)))
        goto oom;
    return KD_OK;
oom:
    kd__buf_free(&b);
    return nomem(c);
}

static int parse_agg_item(pctx *c, kd__jv v, size_t i, kd__qagg *a)
{
    char what[48];
    snprintf(what, sizeof what, "aggregate[%zu]", i);
    int rc;
    if (kd__jv_type(v) == KD__J_STRING) {
        const char *s;
        size_t n;
        if ((rc = read_string(c, v, &s, &n)))
            return rc;
        char *copy = malloc(n + 1);
        if (!copy)
            return nomem(c);
        memcpy(copy, s, n + 1);
        const char *colon = memchr(copy, ':', n);
        if (colon)
            rc = agg_make(c, what, copy, (size_t)(colon - copy), colon + 1, n - (size_t)(colon - copy) - 1, a);
        else
            rc = agg_make(c, what, copy, n, NULL, 0, a);
        free(copy);
        return rc;
    }
    if (kd__jv_type(v) != KD__J_OBJECT)
        return perr(c, "%s: must be a string (\"count\", \"sum:path\", …) or {\"op\": …, \"field\": …}, not %s", what,
                    type_name(v));
    size_t pos = 0;
    kd__jv name, val, op = KD__JV_MISSING, field = KD__JV_MISSING;
    while (kd__jv_next_member(v, &pos, &name, &val)) {
        if (is_name(name, "op") || is_name(name, "field")) {
            if (kd__jv_type(val) != KD__J_STRING)
                return perr(c, "%s.%s: must be a string, not %s", what, is_name(name, "op") ? "op" : "field",
                            type_name(val));
            if (is_name(name, "op"))
                op = val;
            else
                field = val;
        } else {
            return perr(c, "%s: unknown member \"%.60s\" (known: op, field)", what, member_name(c, name));
        }
    }
    if (!op.p)
        return perr(c, "%s: the object needs \"op\"", what);
    const char *s;
    size_t n;
    if ((rc = read_string(c, op, &s, &n)))
        return rc;
    char *ops = malloc(n + 1);
    if (!ops)
        return nomem(c);
    memcpy(ops, s, n + 1);
    if (field.p && (rc = read_string(c, field, &s, &n)) == KD_OK)
        rc = agg_make(c, what, ops, strlen(ops), s, n, a);
    else if (!field.p)
        rc = agg_make(c, what, ops, strlen(ops), NULL, 0, a);
    free(ops);
    return rc;
}

static int parse_aggs(pctx *c, kd__jv v)
{
    size_t n = 0;
    int rc = check_array(c, v, "aggregate", &n);
    if (rc)
        return rc;
    if (!n)
        return perr(c, "aggregate: must not be empty");
    kd_query *q = c->q;
    if (!(q->aggs = calloc(n, sizeof *q->aggs)))
        return nomem(c);
    size_t pos = 0;
    kd__jv item;
    while (kd__jv_next_item(v, &pos, &item)) {
        kd__qagg *a = &q->aggs[q->n_aggs];
        if ((rc = parse_agg_item(c, item, q->n_aggs, a))) {
            field_free(&a->field);
            free(a->name);
            free(a->quoted);
            memset(a, 0, sizeof *a);
            return rc;
        }
        q->n_aggs++;
    }
    named *names = malloc(q->n_aggs * sizeof *names);
    if (!names)
        return nomem(c);
    for (size_t i = 0; i < q->n_aggs; i++)
        names[i] = (named){q->aggs[i].name, q->aggs[i].name_len, i};
    size_t r = first_repeat(names, q->n_aggs);
    free(names);
    if (r < q->n_aggs)
        return perr(c, "aggregate[%zu]: \"%s\" is named twice", r, q->aggs[r].name);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * kd_query_parse
 * ---------------------------------------------------------------------- */

static int cmp_field_text(const void *a, const void *b)
{
    const kd__qfield *x = a, *y = b;
    return kd__name_cmp(x->text, x->text_len, y->text, y->text_len);
}

static int cmp_agg_name(const void *a, const void *b)
{
    const kd__qagg *x = a, *y = b;
    return kd__name_cmp(x->name, x->name_len, y->name, y->name_len);
}

static int cmp_group_idx(const void *a, const void *b, void *ctx)
{
    const kd__qfield *g = ctx;
    const kd__qfield *x = &g[*(const size_t *)a], *y = &g[*(const size_t *)b];
    return kd__name_cmp(x->text, x->text_len, y->text, y->text_len);
}

#define KNOWN_MEMBERS "filter, sort, select, offset, limit, at, aggregate, group_by, from, to, latest"

static int parse_members(pctx *c, kd__jv obj)
{
    kd_query *q = c->q;
    size_t pos = 0;
    kd__jv name, v;
    int rc = KD_OK;
    int has_offset = 0;
    while (!rc && kd__jv_next_member(obj, &pos, &name, &v)) {
        if (is_name(name, "filter"))
            rc = parse_filter(c, v);
        else if (is_name(name, "sort"))
            rc = parse_sort(c, v);
        else if (is_name(name, "select"))
            rc = parse_paths(c, v, "select", &q->select, &q->n_select);
        else if (is_name(name, "group_by"))
            rc = parse_paths(c, v, "group_by", &q->group, &q->n_group);
        else if (is_name(name, "aggregate"))
            rc = parse_aggs(c, v);
        else if (is_name(name, "offset"))
            rc = read_count(c, v, "offset", &q->offset), has_offset = 1;
        else if (is_name(name, "limit"))
            rc = read_count(c, v, "limit", &q->limit), q->has_limit = 1;
        else if (is_name(name, "latest"))
            rc = read_count(c, v, "latest", &q->latest), q->has_latest = 1;
        else if (is_name(name, "at"))
            rc = read_time(c, v, "at", &q->at), q->has_at = 1;
        else if (is_name(name, "from"))
            rc = read_time(c, v, "from", &q->from), q->has_from = 1;
        else if (is_name(name, "to"))
            rc = read_time(c, v, "to", &q->to), q->has_to = 1;
        else
            rc = perr(c, "\"%.60s\": unknown query member (known: " KNOWN_MEMBERS ")", member_name(c, name));
    }
    if (rc)
        return rc;

    /* Combinations */
    if (q->n_group && !q->n_aggs) {
        /* group_by alone counts the groups' members */
        if (!(q->aggs = calloc(1, sizeof *q->aggs)))
            return nomem(c);
        if ((rc = agg_make(c, "aggregate", "count", 5, NULL, 0, &q->aggs[0])))
            return rc;
        q->n_aggs = 1;
    }
    if (q->n_aggs) {
        const char *bad = q->n_sort ? "sort" : q->n_select ? "select" : has_offset ? "offset" : q->has_limit ? "limit" : NULL;
        if (bad)
            return perr(c, "%s: not allowed with aggregate or group_by (aggregations return no rows)", bad);
    }
    if (q->has_at && (q->has_from || q->has_to || q->has_latest))
        return perr(c, "at: not allowed with %s (\"at\" is for queries over a namespace, "
                       "\"from\"/\"to\"/\"latest\" for history queries)",
                    q->has_from ? "from" : q->has_to ? "to" : "latest");
    if (q->has_from && q->has_to && q->from > q->to)
        return perr(c, "from: is later than to");

    /* Canonical orders */
    if (q->n_select > 1)
        qsort(q->select, q->n_select, sizeof *q->select, cmp_field_text);
    if (q->n_aggs > 1)
        qsort(q->aggs, q->n_aggs, sizeof *q->aggs, cmp_agg_name);
    if (q->n_group) {
        if (!(q->group_by_name = malloc(q->n_group * sizeof *q->group_by_name)))
            return nomem(c);
        for (size_t i = 0; i < q->n_group; i++)
            q->group_by_name[i] = i;
        qsort_r(q->group_by_name, q->n_group, sizeof *q->group_by_name, cmp_group_idx, q->group);
    }
    return KD_OK;
}

KD_EXPORT int kd_query_parse(const char *json, size_t len, kd_query **out, char *errbuf, size_t errlen)
{
    pctx c = {NULL, errbuf, errlen, KD__BUF_INIT};
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out)
        return perr(&c, "kd_query_parse: out is NULL");
    *out = NULL;
    if (!json && len)
        return perr(&c, "kd_query_parse: json is NULL");
    kd__buf canon = KD__BUF_INIT;
    char e[200];
    e[0] = '\0';
    int rc = kd__json_canonicalize(json ? json : "", len, &canon, e, sizeof e);
    if (rc) {
        kd__buf_free(&canon);
        return rc == KD_ENOMEM ? nomem(&c) : perr(&c, "query: %s", e[0] ? e : "invalid JSON");
    }
    kd__jv top = {canon.data, canon.len};
    if (kd__jv_type(top) != KD__J_OBJECT) {
        rc = perr(&c, "query: must be a JSON object, not %s", type_name(top));
        kd__buf_free(&canon);
        return rc;
    }
    if (!(c.q = calloc(1, sizeof *c.q))) {
        kd__buf_free(&canon);
        return nomem(&c);
    }
    rc = parse_members(&c, top);
    kd__buf_free(&canon);
    kd__buf_free(&c.s);
    if (rc) {
        kd_query_free(c.q);
        return rc;
    }
    *out = c.q;
    return KD_OK;
}

KD_EXPORT void kd_query_free(kd_query *q)
{
    if (!q)
        return;
    kd_filter_free(q->filter);
    for (size_t i = 0; i < q->n_sort; i++)
        field_free(&q->sort[i]);
    for (size_t i = 0; i < q->n_select; i++)
        field_free(&q->select[i]);
    for (size_t i = 0; i < q->n_group; i++)
        field_free(&q->group[i]);
    for (size_t i = 0; i < q->n_aggs; i++) {
        field_free(&q->aggs[i].field);
        free(q->aggs[i].name);
        free(q->aggs[i].quoted);
    }
    free(q->sort);
    free(q->select);
    free(q->group);
    free(q->group_by_name);
    free(q->aggs);
    free(q);
}

/* ------------------------------------------------------------------------
 * kd_query_to_json: members in canonical (byte) order, defaults left out.
 * ---------------------------------------------------------------------- */

static int put_time(kd__buf *b, const char *member, int64_t ts)
{
    char t[40];
    if (kd_time_format(ts, t, sizeof t))
        return kd__buf_printf(b, ",\"%s\":%lld", member, (long long)ts);
    return kd__buf_printf(b, ",\"%s\":\"%s\"", member, t);
}

static int put_paths(kd__buf *b, const char *member, const kd__qfield *f, size_t n)
{
    int rc = kd__buf_printf(b, ",\"%s\":[", member);
    for (size_t i = 0; i < n && !rc; i++)
        if (!(rc = kd__buf_append(b, i ? "," : "", i ? 1 : 0)))
            rc = kd__buf_append(b, f[i].quoted, f[i].quoted_len);
    return rc ? rc : kd__buf_putc(b, ']');
}

KD_EXPORT int kd_query_to_json(const kd_query *q, char **json, size_t *len)
{
    if (!json)
        return KD_EINVALID;
    *json = NULL;
    if (len)
        *len = 0;
    if (!q)
        return KD_EINVALID;
    kd__buf b = KD__BUF_INIT;
    int rc = kd__buf_putc(&b, '{');
    /* Every member is written with a leading comma; the first is dropped. */
    if (!rc && q->n_aggs) {
        rc = kd__buf_puts(&b, ",\"aggregate\":[");
        for (size_t i = 0; i < q->n_aggs && !rc; i++)
            if (!(rc = kd__buf_append(&b, i ? "," : "", i ? 1 : 0)))
                rc = kd__buf_append(&b, q->aggs[i].quoted, q->aggs[i].quoted_len);
        if (!rc)
            rc = kd__buf_putc(&b, ']');
    }
    if (!rc && q->has_at)
        rc = put_time(&b, "at", q->at);
    if (!rc && q->filter) {
        char *f = NULL;
        size_t flen = 0;
        if (!(rc = kd_filter_to_json(q->filter, &f, &flen)))
            if (!(rc = kd__buf_puts(&b, ",\"filter\":")))
                rc = kd__buf_append(&b, f, flen);
        free(f);
    }
    if (!rc && q->has_from)
        rc = put_time(&b, "from", q->from);
    if (!rc && q->n_group)
        rc = put_paths(&b, "group_by", q->group, q->n_group);
    if (!rc && q->has_latest)
        rc = kd__buf_printf(&b, ",\"latest\":%llu", (unsigned long long)q->latest);
    if (!rc && q->has_limit)
        rc = kd__buf_printf(&b, ",\"limit\":%llu", (unsigned long long)q->limit);
    if (!rc && q->offset)
        rc = kd__buf_printf(&b, ",\"offset\":%llu", (unsigned long long)q->offset);
    if (!rc && q->n_select)
        rc = put_paths(&b, "select", q->select, q->n_select);
    if (!rc && q->n_sort) {
        rc = kd__buf_puts(&b, ",\"sort\":[");
        for (size_t i = 0; i < q->n_sort && !rc; i++) {
            if (!(rc = kd__buf_puts(&b, i ? ",{\"field\":" : "{\"field\":")))
                if (!(rc = kd__buf_append(&b, q->sort[i].quoted, q->sort[i].quoted_len)))
                    rc = kd__buf_puts(&b, q->sort[i].desc ? ",\"order\":\"desc\"}" : ",\"order\":\"asc\"}");
        }
        if (!rc)
            rc = kd__buf_putc(&b, ']');
    }
    if (!rc && q->has_to)
        rc = put_time(&b, "to", q->to);
    if (!rc)
        rc = kd__buf_putc(&b, '}');
    if (rc) {
        kd__buf_free(&b);
        return rc == KD_ENOMEM ? KD_ENOMEM : rc;
    }
    if (b.len > 2 && b.data[1] == ',')
        memmove(b.data + 1, b.data + 2, b.len - 1), b.len--; /* the NUL moves along */
    size_t n;
    char *p = kd__buf_steal(&b, &n);
    if (!p)
        return KD_ENOMEM;
    *json = p;
    if (len)
        *len = n;
    return KD_OK;
}
