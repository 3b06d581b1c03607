/*
 * query.c — `kdelta query NS`: the live keys of a namespace whose values
 * match a filter, sorted, projected and paged, or aggregated (count, sum,
 * avg, min, max, distinct), per group with --group-by; --at TIME runs it on
 * the namespace as it was then.
 *
 * The options become the JSON form of a query (docs/QUERY.md), which the
 * library compiles and validates (kd_query_parse) before the database is
 * opened: its messages, which name the column of a filter error or the
 * member at fault, reach the user unchanged, and a bad query never creates
 * or touches a database. People get an aligned table and a count of the
 * matches; --json prints the result object of kd_result_json.
 *
 * view.c and index.c share the pieces (cli.h): the options compiled into a
 * query (cli_query_compile), rows printed as here (cli_print_rows), tables
 * (cli_table_*), a query shortened for people (cli_query_text).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Text buffer
 * ---------------------------------------------------------------------- */

struct text {
    char *s;
    size_t len, cap;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = xrealloc(t->s, t->cap);
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void text_puts(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

/* s (n bytes) as a JSON string literal. KD_EINVALID for invalid UTF-8. */
static int text_quote(struct text *t, const char *s, size_t n)
{
    char *q = NULL;
    size_t qn = 0;
    int rc = kd_json_quote(s, n, &q, &qn);
    if (rc != KD_OK)
        return rc;
    text_add(t, q, qn);
    kd_free(q);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * The query in JSON form, from the options
 * ---------------------------------------------------------------------- */

/* Split --select at commas outside double-quoted path steps ("a,b".c is
 * one field); blanks around a field are dropped. Fields are malloc'd. */
static int split_select(const char *s, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    for (const char *p = s;;) {
        const char *q = p;
        int quoted = 0;
        for (; *q && (quoted || *q != ','); q++) {
            if (quoted && *q == '\\' && q[1])
                q++;
            else if (*q == '"')
                quoted = !quoted;
        }
        const char *a = p, *b = q;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (a == b)
            return cli_error(CLI_USAGE, "--select", "empty field name in '%s' (expected e.g. name,address.city)", s);
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *out = xrealloc(*out, sizeof(char *) * cap);
        }
        char *f = xmalloc((size_t)(b - a) + 1);
        memcpy(f, a, (size_t)(b - a));
        f[b - a] = '\0';
        (*out)[(*n)++] = f;
        if (!*q)
            return CLI_OK;
        p = q + 1;
    }
}

void cli_free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The text of a repeatable option as the query names it: "age:desc",
 * "sum:price", "count", "country". Into *item (reset first). */
static void item_text(const struct cli_qopt *o, struct text *item)
{
    item->len = 0;
    text_puts(item, "");
    if (o->op) {
        text_puts(item, o->op);
        if (o->value)
            text_puts(item, ":");
    }
    if (o->value)
        text_puts(item, o->value);
}

/* Start member `name` of the object being written in t. */
static void add_member(struct text *t, const char *name)
{
    text_puts(t, t->s[t->len - 1] == '{' ? "\"" : ",\"");
    text_puts(t, name);
    text_puts(t, "\":");
}

/* Append "name":[...] with the items of one kind (none: nothing). */
static int add_items(struct text *t, const struct cli *c, enum cli_qkind kind, const char *name)
{
    struct text item = {0};
    int any = 0, rc = KD_OK;
    for (int i = 0; i < c->nqopts && rc == KD_OK; i++) {
        if (c->qopts[i].kind != kind)
            continue;
        if (!any)
            add_member(t, name), text_puts(t, "[");
        else
            text_puts(t, ",");
        any = 1;
        item_text(&c->qopts[i], &item);
        rc = text_quote(t, item.s, item.len);
    }
    if (any)
        text_puts(t, "]");
    free(item.s);
    return rc;
}

/* The query's JSON form, from the options (each already checked on its
 * own where that gives a better message). Returns an exit status. */
static int build_query(const struct cli *c, char **select, size_t n_select, int64_t at, struct text *t)
{
    char num[64];
    int rc = KD_OK;
    text_puts(t, "{");
    if (c->filter) {
        add_member(t, "filter");
        rc = text_quote(t, c->filter, strlen(c->filter));
    }
    if (rc == KD_OK)
        rc = add_items(t, c, CLI_Q_SORT, "sort");
    if (rc == KD_OK && n_select) {
        add_member(t, "select");
        for (size_t i = 0; i < n_select && rc == KD_OK; i++) {
            text_puts(t, i ? "," : "[");
            rc = text_quote(t, select[i], strlen(select[i]));
        }
        text_puts(t, "]");
    }
    if (c->offset_set) {
        add_member(t, "offset");
        snprintf(num, sizeof num, "%" PRId64, c->offset);
        text_puts(t, num);
    }
    if (c->limit_set) {
        add_member(t, "limit");
        snprintf(num, sizeof num, "%" PRId64, c->limit);
        text_puts(t, num);
    }
    if (c->at) { /* as RFC 3339 UTC: a relative TIME counts from now, not from when the library reads it */
        char ts[48];
        if (kd_time_format(at, ts, sizeof ts) != KD_OK)
            return cli_error(CLI_INVALID, "--at", "'%s' cannot be written as RFC 3339", c->at);
        add_member(t, "at");
        text_puts(t, "\"");
        text_puts(t, ts);
        text_puts(t, "\"");
    }
    if (rc == KD_OK)
        rc = add_items(t, c, CLI_Q_AGGREGATE, "aggregate");
    if (rc == KD_OK)
        rc = add_items(t, c, CLI_Q_GROUP_BY, "group_by");
    text_puts(t, "}");
    if (rc != KD_OK) /* kd_json_quote refuses only invalid UTF-8 */
        return cli_error(cli_exit_status(rc), "query", "%s",
                         rc == KD_EINVALID ? "a field name is not valid UTF-8" : kd_strerror(rc));
    return CLI_OK;
}

/* ------------------------------------------------------------------------
 * Reading canonical JSON (results are canonical: no blanks, no surprises)
 * ---------------------------------------------------------------------- */

/* A slice of JSON text. */
struct slice {
    const char *p;
    size_t len;
};

/* Next element of an array, or member of an object, in v (kd_json_next):
 * start with *pos = 0. For objects *name is the member's name, quoted. */
static int next_item(struct slice v, size_t *pos, struct slice *name, struct slice *val)
{
    if (v.len < 2 || (v.p[0] != '[' && v.p[0] != '{'))
        return 0;
    return kd_json_next(v.p, v.len, pos, &name->p, &name->len, &val->p, &val->len) == 1;
}

/* A quoted JSON name unescaped and made printable, for a column header. */
static char *unquote_name(struct slice s)
{
    char *raw;
    size_t n;
    if (kd_json_unquote(s.p, s.len, &raw, &n) != KD_OK) { /* not a string: show it as it is */
        raw = xmalloc(s.len + 1);
        memcpy(raw, s.p, s.len);
        raw[s.len] = '\0';
    }
    char *shown = cli_display(raw, NULL, 0);
    kd_free(raw);
    return shown;
}

/* ------------------------------------------------------------------------
 * Tables
 * ---------------------------------------------------------------------- */

/* Columns a UTF-8 string takes on a terminal: one per character, two for
 * East Asian wide characters and most emoji, none for combining marks. */
static size_t display_width(const char *s)
{
    size_t w = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        int n;
        if (*p < 0x80)
            cp = *p, n = 1;
        else if ((*p & 0xE0) == 0xC0)
            cp = *p & 0x1Fu, n = 2;
        else if ((*p & 0xF0) == 0xE0)
            cp = *p & 0x0Fu, n = 3;
        else if ((*p & 0xF8) == 0xF0)
            cp = *p & 0x07u, n = 4;
        else
            cp = 0xFFFD, n = 1;
        for (int i = 1; i < n; i++) {
            if ((p[i] & 0xC0) != 0x80) {
                n = i;
                cp = 0xFFFD;
                break;
            }
            cp = (cp << 6) | (p[i] & 0x3Fu);
        }
        p += n;
        if ((cp >= 0x300 && cp <= 0x36F) || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0xFE00 && cp <= 0xFE0F))
            continue;
        if ((cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF && cp != 0x303F) ||
            (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFE30 && cp <= 0xFE4F) ||
            (cp >= 0xFF00 && cp <= 0xFF60) || (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
            (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD))
            w += 2;
        else
            w += 1;
    }
    return w;
}

void cli_table_add(struct cli_table *t, char *s) /* takes s */
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->cells = xrealloc(t->cells, sizeof(char *) * t->cap);
    }
    t->cells[t->n++] = s;
}

static void cell_text(struct cli_table *t, const char *p, size_t len)
{
    char *s = xmalloc(len + 1);
    memcpy(s, p, len);
    s[len] = '\0';
    cli_table_add(t, s);
}

/* Columns two spaces apart, each as wide as its widest cell, no blanks at
 * the end of a line; the header in bold on a terminal. */
void cli_table_print(const struct cli *c, const struct cli_table *t)
{
    size_t *width = xmalloc(sizeof(size_t) * t->ncols);
    memset(width, 0, sizeof(size_t) * t->ncols);
    for (size_t i = 0; i < t->n; i++) {
        size_t w = display_width(t->cells[i]);
        if (w > width[i % t->ncols])
            width[i % t->ncols] = w;
    }
    size_t pending = 0; /* blanks owed before the next non-empty cell */
    for (size_t i = 0; i < t->n; i++) {
        size_t col = i % t->ncols;
        const char *s = t->cells[i];
        if (i == 0)
            fputs(cli_sgr(c, CLI_BOLD), stdout);
        if (*s) {
            for (; pending; pending--)
                fputc(' ', stdout);
            fputs(s, stdout);
        }
        if (col + 1 < t->ncols) {
            pending += width[col] + 2 - display_width(s);
            continue;
        }
        if (i + 1 == t->ncols)
            fputs(cli_sgr(c, CLI_RESET), stdout);
        fputc('\n', stdout);
        pending = 0;
    }
    free(width);
}

void cli_table_free(struct cli_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->cells[i]);
    free(t->cells);
}

/* ------------------------------------------------------------------------
 * Showing a result
 * ---------------------------------------------------------------------- */

static void print_count(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void print_count(const struct cli *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(cli_sgr(c, CLI_DIM), stdout);
    vprintf(fmt, ap);
    fputs(cli_sgr(c, CLI_RESET), stdout);
    fputc('\n', stdout);
    va_end(ap);
}

/* Value of the member whose name, as a JSON string literal, is `quoted`
 * in the object obj; 0 if there is none. */
static int member_slice(struct slice obj, struct slice quoted, struct slice *out)
{
    size_t pos = 0;
    struct slice n, v;
    while (next_item(obj, &pos, &n, &v))
        if (n.len == quoted.len && memcmp(n.p, quoted.p, n.len) == 0) {
            *out = v;
            return 1;
        }
    return 0;
}

static int member_quoted(struct slice obj, const char *quoted, struct slice *out)
{
    return member_slice(obj, (struct slice){quoted, strlen(quoted)}, out);
}

/* Value of the member named `name` (ASCII, nothing to escape) in obj. */
static int member_named(struct slice obj, const char *name, struct slice *out)
{
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", name);
    return member_quoted(obj, quoted, out);
}

/* The name the library gives `text` as an item of the query member
 * `member` ("select", "aggregate" or "group_by"): projections and
 * aggregates are named by it, the path as the library writes it back
 * (docs/QUERY.md). As a JSON string literal, malloc'd; `text` quoted if
 * the library does not take the item alone. */
static char *library_name(const char *member, const char *text)
{
    struct text t = {0};
    char *out = NULL, *json = NULL, err[256];
    size_t len = 0;
    kd_query *q = NULL;
    text_puts(&t, "{\"");
    text_puts(&t, member);
    text_puts(&t, "\":[");
    int ok = text_quote(&t, text, strlen(text)) == KD_OK;
    text_puts(&t, "]}");
    if (ok && kd_query_parse(t.s, t.len, &q, err, sizeof err) == KD_OK && kd_query_to_json(q, &json, &len) == KD_OK) {
        struct slice all = {json, len}, arr, name, val;
        size_t pos = 0;
        if (member_named(all, member, &arr) && next_item(arr, &pos, &name, &val) && val.p[0] == '"') {
            out = xmalloc(val.len + 1);
            memcpy(out, val.p, val.len);
            out[val.len] = '\0';
        }
    }
    t.len = 0;
    if (!out && text_quote(&t, text, strlen(text)) == KD_OK) {
        out = t.s;
        t.s = NULL;
    }
    kd_free(json);
    kd_query_free(q);
    free(t.s);
    return out ? out : xstrdup("\"\"");
}

/* Rows: the key, then each selected field (or the whole value). A
 * projected value is {"path": value, ...} (docs/QUERY.md), without the
 * paths a value does not have; `names` are those paths as JSON string
 * literals, as the library writes them (n_names 0: the whole value). */
void cli_print_rows(const struct cli *c, const kd_result *r, char *const *names, size_t n_names)
{
    if (r->n_rows) {
        struct cli_table t = {0};
        t.ncols = 1 + (n_names ? n_names : 1);
        cli_table_add(&t, xstrdup("key"));
        for (size_t j = 0; j < n_names; j++)
            cli_table_add(&t, unquote_name((struct slice){names[j], strlen(names[j])}));
        if (!n_names)
            cli_table_add(&t, xstrdup("value"));
        for (size_t i = 0; i < r->n_rows; i++) {
            const kd_row *row = &r->rows[i];
            cli_table_add(&t, cli_display(row->key, NULL, 0));
            if (!n_names) {
                if (row->value)
                    cell_text(&t, row->value, row->value_len);
                else
                    cli_table_add(&t, xstrdup("(deleted)"));
                continue;
            }
            struct slice v = {row->value, row->value ? row->value_len : 0}, x;
            for (size_t j = 0; j < n_names; j++) {
                if (row->value && member_quoted(v, names[j], &x))
                    cell_text(&t, x.p, x.len);
                else
                    cli_table_add(&t, xstrdup("")); /* the value has no such field */
            }
        }
        cli_table_print(c, &t);
        cli_table_free(&t);
    }
    uint64_t skipped = c->offset_set ? (uint64_t)c->offset : 0;
    if (r->n_rows == r->total && !skipped)
        print_count(c, "%" PRIu64 " match%s", r->total, r->total == 1 ? "" : "es");
    else if (skipped)
        print_count(c, "%zu of %" PRIu64 " matches (offset %" PRIu64 ")", r->n_rows, r->total, skipped);
    else
        print_count(c, "%zu of %" PRIu64 " match%s", r->n_rows, r->total, r->total == 1 ? "" : "es");
}

void cli_query_select_names(const char *query_json, size_t len, char ***names, size_t *n)
{
    struct slice all = {query_json, len}, arr, name, val;
    size_t pos = 0;
    *names = NULL;
    *n = 0;
    if (!member_named(all, "select", &arr) || arr.len < 2 || arr.p[0] != '[')
        return;
    *names = xmalloc(sizeof(char *) * (arr.len / 2 + 1));
    while (next_item(arr, &pos, &name, &val))
        if (val.p[0] == '"') {
            char *s = xmalloc(val.len + 1);
            memcpy(s, val.p, val.len);
            s[val.len] = '\0';
            (*names)[(*n)++] = s;
        }
}

/* Column names (quoted JSON names) in the order they should appear: those
 * the command line named first, in its order, then the others as found. */
struct columns {
    struct slice *v;
    size_t n, cap;
};

static void column_add(struct columns *cols, struct slice name)
{
    for (size_t k = 0; k < cols->n; k++)
        if (cols->v[k].len == name.len && memcmp(cols->v[k].p, name.p, name.len) == 0)
            return;
    if (cols->n == cols->cap) {
        cols->cap = cols->cap ? cols->cap * 2 : 16;
        cols->v = xrealloc(cols->v, sizeof(struct slice) * cols->cap);
    }
    cols->v[cols->n++] = name;
}

/* Order cols: first the columns the command line asked for (its items of
 * `kind`, named by the library), in its order, then the rest as found. */
static void order_columns(const struct cli *c, enum cli_qkind kind, struct columns *cols)
{
    size_t placed = 0;
    for (int i = 0; i < c->nqopts; i++) {
        const struct cli_qopt *o = &c->qopts[i];
        if (o->kind != kind)
            continue;
        struct text want = {0};
        item_text(o, &want);
        char *name = library_name(kind == CLI_Q_GROUP_BY ? "group_by" : "aggregate", want.s);
        size_t nl = strlen(name);
        for (size_t k = placed; k < cols->n; k++)
            if (cols->v[k].len == nl && memcmp(cols->v[k].p, name, nl) == 0) {
                struct slice sl = cols->v[k];
                memmove(&cols->v[placed + 1], &cols->v[placed], sizeof(struct slice) * (k - placed));
                cols->v[placed++] = sl;
                break;
            }
        free(name);
        free(want.s);
    }
}

/* Aggregates (docs/QUERY.md): {"count":5,"sum:x":7} is one row;
 * {"groups":[{"count":2,"group":{"city":"Paris"},...},...]} one row per
 * group, the group's fields first. Columns follow the command line. */
static int print_aggregates(const struct cli *c, const kd_result *r)
{
    struct slice all = {r->aggregates, r->aggregates_len}, groups, name, val;
    struct slice *rows = NULL;
    size_t n_rows = 0, pos = 0;
    int grouped = member_named(all, "groups", &groups) && groups.len && groups.p[0] == '[';
    struct columns gcols = {0}, acols = {0};
    if (grouped) {
        rows = xmalloc(sizeof(struct slice) * (groups.len / 2 + 1));
        while (next_item(groups, &pos, &name, &val))
            rows[n_rows++] = val;
    } else {
        rows = xmalloc(sizeof(struct slice));
        rows[n_rows++] = all;
    }
    for (size_t i = 0; i < n_rows; i++) {
        struct slice g;
        pos = 0;
        while (next_item(rows[i], &pos, &name, &val))
            if (!(grouped && name.len == 7 && memcmp(name.p, "\"group\"", 7) == 0))
                column_add(&acols, name);
        if (grouped && member_named(rows[i], "group", &g)) {
            pos = 0;
            while (next_item(g, &pos, &name, &val))
                column_add(&gcols, name);
        }
    }
    order_columns(c, CLI_Q_GROUP_BY, &gcols);
    order_columns(c, CLI_Q_AGGREGATE, &acols);

    struct cli_table t = {0};
    t.ncols = gcols.n + acols.n;
    if (t.ncols) {
        for (size_t j = 0; j < gcols.n; j++)
            cli_table_add(&t, unquote_name(gcols.v[j]));
        for (size_t j = 0; j < acols.n; j++)
            cli_table_add(&t, unquote_name(acols.v[j]));
        for (size_t i = 0; i < n_rows; i++) {
            struct slice g = {"{}", 2};
            if (grouped)
                member_named(rows[i], "group", &g);
            for (size_t j = 0; j < gcols.n + acols.n; j++) {
                struct slice obj = j < gcols.n ? g : rows[i], want = j < gcols.n ? gcols.v[j] : acols.v[j - gcols.n];
                if (member_slice(obj, want, &val))
                    cell_text(&t, val.p, val.len);
                else
                    cli_table_add(&t, xstrdup("")); /* a group without that field */
            }
        }
        cli_table_print(c, &t);
        cli_table_free(&t);
    }
    if (grouped)
        print_count(c, "%zu group%s, %" PRIu64 " match%s", n_rows, n_rows == 1 ? "" : "s", r->total,
                    r->total == 1 ? "" : "es");
    else
        print_count(c, "%" PRIu64 " match%s", r->total, r->total == 1 ? "" : "es");
    free(rows);
    free(gcols.v);
    free(acols.v);
    return CLI_OK;
}

/* ------------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------- */

int cli_query_compile(const struct cli *c, kd_query **out, char ***select_out, size_t *n_select_out)
{
    char **select = NULL, err[1024];
    size_t n_select = 0;
    struct text json = {0};
    int64_t at = 0;
    int status = CLI_OK, rc;
    *out = NULL;
    if (c->select && (status = split_select(c->select, &select, &n_select)) != CLI_OK)
        goto done;
    if (c->at && kd_time_parse(c->at, &at, err, sizeof err) != KD_OK) {
        status = cli_error(CLI_INVALID, "--at", "%s", err);
        goto done;
    }
    if (c->filter) { /* compiled on its own first, so its errors name --filter */
        kd_filter *f = NULL;
        if ((rc = kd_filter_parse(c->filter, &f, err, sizeof err)) != KD_OK) {
            status = cli_error(cli_exit_status(rc), "--filter", "%s", err);
            goto done;
        }
        kd_filter_free(f);
    }
    if ((status = build_query(c, select, n_select, at, &json)) != CLI_OK)
        goto done;
    if ((rc = kd_query_parse(json.s, json.len, out, err, sizeof err)) != KD_OK)
        status = cli_error(cli_exit_status(rc), "query", "%s", err);
done:
    free(json.s);
    if (status == CLI_OK && select_out) {
        *select_out = select;
        *n_select_out = n_select;
    } else {
        cli_free_list(select, n_select);
    }
    return status;
}

int cmd_query(struct cli *c)
{
    char *ns = cli_ns_arg(c->args[0]), *shown = NULL, **select = NULL, **names = NULL;
    size_t n_select = 0;
    kd_query *q = NULL;
    kd_result *r = NULL;
    int status = CLI_OK, rc;

    shown = cli_display(ns, NULL, 200);
    if (!*ns) {
        status = cli_error(CLI_INVALID, "query", "expected a namespace, got ''");
        goto done;
    }
    if ((status = cli_check_name(ns, NULL)) != CLI_OK ||
        (status = cli_query_compile(c, &q, &select, &n_select)) != CLI_OK)
        goto done;
    if ((status = cli_open(c)) != CLI_OK)
        goto done;

    rc = st_query_run(c, ns, q, &r);
    if (rc != KD_OK) {
        status = cli_kd_error(c, rc, shown);
        goto done;
    }
    if (c->json) {
        char *out = NULL;
        size_t outlen = 0;
        /* the rows carry all it writes: c->db is NULL with --url, and unused */
        if ((rc = kd_result_json(c->db, ns, r, &out, &outlen)) != KD_OK) {
            status = cli_kd_error(c, rc, shown);
            goto done;
        }
        fwrite(out, 1, outlen, stdout);
        fputc('\n', stdout);
        kd_free(out);
    } else if (r->aggregates) {
        status = print_aggregates(c, r);
    } else {
        /* columns in the order of --select, named as the library names them */
        names = xmalloc(sizeof(char *) * (n_select + 1));
        for (size_t j = 0; j < n_select; j++)
            names[j] = library_name("select", select[j]);
        cli_print_rows(c, r, names, n_select);
    }
done:
    st_result_free(c, r);
    kd_query_free(q);
    if (names)
        cli_free_list(names, n_select);
    cli_free_list(select, n_select);
    free(shown);
    free(ns);
    return cli_finish_output(status);
}

char *cli_query_text(const char *json, size_t len)
{
    struct slice all = {json, len}, name, val, item_name, item, field, order;
    struct text t = {0};
    size_t pos = 0;
    text_puts(&t, "{");
    while (next_item(all, &pos, &name, &val)) {
        if (t.len > 1)
            text_puts(&t, ",");
        text_add(&t, name.p, name.len);
        text_puts(&t, ":");
        if (name.len == 8 && memcmp(name.p, "\"filter\"", 8) == 0 && val.p[0] == '{') {
            /* the JSON form of the filter -> its text form */
            kd_filter *f = NULL;
            char *ft = NULL, err[256];
            size_t ftlen = 0;
            if (kd_filter_from_json(val.p, val.len, &f, err, sizeof err) == KD_OK &&
                kd_filter_to_text(f, &ft, &ftlen) == KD_OK && text_quote(&t, ft, ftlen) == KD_OK) {
                kd_free(ft);
                kd_filter_free(f);
                continue;
            }
            kd_free(ft);
            kd_filter_free(f);
        } else if (name.len == 6 && memcmp(name.p, "\"sort\"", 6) == 0 && val.p[0] == '[') {
            /* {"field":"age","order":"desc"} -> "age:desc"; "asc" -> "age" */
            size_t ipos = 0, mark = t.len, k = 0;
            int ok = 1;
            text_puts(&t, "[");
            while (ok && next_item(val, &ipos, &item_name, &item)) {
                ok = member_named(item, "field", &field) && field.len >= 2 && field.p[0] == '"';
                if (!ok)
                    break;
                if (k++)
                    text_puts(&t, ",");
                if (member_named(item, "order", &order) && order.len == 6 && memcmp(order.p, "\"desc\"", 6) == 0) {
                    text_add(&t, field.p, field.len - 1);
                    text_puts(&t, ":desc\"");
                } else {
                    text_add(&t, field.p, field.len);
                }
            }
            text_puts(&t, "]");
            if (ok)
                continue;
            t.len = mark; /* not the expected shape: as it is */
            t.s[t.len] = '\0';
        }
        text_add(&t, val.p, val.len);
    }
    text_puts(&t, "}");
    return t.s;
}

char *cli_field_name(const char *field)
{
    return library_name("select", field);
}
