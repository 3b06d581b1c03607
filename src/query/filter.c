/*
 * filter.c — compiled filters (filter.h): the tree, its evaluation over
 * canonical JSON text, the JSON form (in and out), the text form (out;
 * filter_parse.c reads it), and the public kd_filter_* functions.
 *
 * Evaluation walks the stored text directly (jv.h): a field is found by
 * comparing its canonical quoted name with member names while skipping
 * values, and literals are kept as canonical text, so a comparison is a
 * few byte compares. Nothing allocates on the common paths; `matches`
 * over a string with escapes unescapes it into a per-thread buffer.
 *
 * Regular expressions are PCRE2 (UTF + UCP, JIT when available), compiled
 * once. The per-call state of a match (match data, a match context that
 * bounds the work so that no pattern can hang, the unescape buffer) lives
 * in one block per thread, freed by a pthread key destructor at thread
 * exit, so one filter can be matched from many threads at once.
 *
 * Semantics (docs/QUERY.md "Filter language"): a missing field makes eq
 * false and ne true; ranges compare only like with like (numbers, strings,
 * booleans); numbers compare by exact value (1 = 1.0), also inside arrays
 * and objects; contains is substring / element / member name.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "json/dom.h"
#include "json/json.h"
#include "korudelta.h"
#include "query/filter.h"
#include "query/jv.h"
#include "util/buf.h"

/* Work bounds for one regular expression match (a match that hits them is
 * no match). */
#define RE_MATCH_LIMIT 1000000u
#define RE_DEPTH_LIMIT 10000u
#define RE_HEAP_LIMIT_KIB 16384u

/* ------------------------------------------------------------------------
 * Nodes
 * ---------------------------------------------------------------------- */

kd__fnode *kd__fnode_new(kd__fop op)
{
    kd__fnode *n = calloc(1, sizeof *n);
    if (n)
        n->op = op;
    return n;
}

/* The tree is at most KD__FILTER_MAX_NEST logical nodes deep (both parsers
 * check), so the recursion here is bounded. */
void kd__fnode_free(kd__fnode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        kd__fnode_free(n->kids[i]);
    free(n->kids);
    kd__path_free(&n->path);
    free(n->value);
    if (n->re)
        pcre2_code_free((pcre2_code *)n->re);
    free(n);
}

int kd__fnode_add(kd__fnode *n, kd__fnode *kid)
{
    /* Capacity doubles at powers of two. */
    size_t k = n->n_kids;
    if (k == 0 || (k & (k - 1)) == 0) {
        size_t cap = k ? k * 2 : 2;
        kd__fnode **p = realloc(n->kids, cap * sizeof *p);
        if (!p)
            return KD_ENOMEM;
        n->kids = p;
    }
    n->kids[n->n_kids++] = kid;
    return KD_OK;
}

int kd__fnode_compile(kd__fnode *n, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(n->value ? n->value : ""), n->value_len, PCRE2_UTF | PCRE2_UCP,
                                   &code, &off, NULL);
    if (!re) {
        if (code == PCRE2_ERROR_NOMEMORY)
            return KD_ENOMEM;
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", code);
        if (err && errlen)
            snprintf(err, errlen, "invalid regular expression: %s (at byte %zu of the pattern)", (char *)msg,
                     (size_t)off);
        return KD_EINVALID;
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreted when JIT is unavailable */
    n->re = re;
    return KD_OK;
}

size_t kd__filter_value_depth(const char *p, size_t len)
{
    size_t depth = 0, max = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '"') {
            for (i++; i < len && p[i] != '"'; i++)
                if (p[i] == '\\')
                    i++;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                max = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

static kd__fnode *node_copy(const kd__fnode *n)
{
    kd__fnode *c = kd__fnode_new(n->op);
    if (!c)
        return NULL;
    if (n->path.n && kd__path_copy(&n->path, &c->path) != KD_OK)
        goto fail;
    if (n->value) {
        c->value = malloc(n->value_len + 1);
        if (!c->value)
            goto fail;
        memcpy(c->value, n->value, n->value_len + 1);
        c->value_len = n->value_len;
    }
    if (n->re) {
        c->re = pcre2_code_copy((const pcre2_code *)n->re);
        if (!c->re)
            goto fail;
        (void)pcre2_jit_compile((pcre2_code *)c->re, PCRE2_JIT_COMPLETE);
    }
    for (size_t i = 0; i < n->n_kids; i++) {
        kd__fnode *k = node_copy(n->kids[i]);
        if (!k)
            goto fail;
        if (kd__fnode_add(c, k) != KD_OK) {
            kd__fnode_free(k);
            goto fail;
        }
    }
    return c;
fail:
    kd__fnode_free(c);
    return NULL;
}

kd_filter *kd__filter_copy(const kd_filter *f)
{
    if (!f)
        return NULL;
    kd_filter *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (f->root && !(c->root = node_copy(f->root))) {
        free(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------------
 * Per-thread match state
 * ---------------------------------------------------------------------- */

typedef struct tstate {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    kd__buf subject; /* a string with escapes, unescaped */
    kd__buf doc;     /* kd_filter_match: the canonical document */
} tstate;

static pthread_key_t tkey;
static pthread_once_t tonce = PTHREAD_ONCE_INIT;
static int tkey_ok;

static void tstate_free(void *arg)
{
    tstate *t = arg;
    if (!t)
        return;
    pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mc);
    kd__buf_free(&t->subject);
    kd__buf_free(&t->doc);
    free(t);
}

static void tkey_init(void)
{
    tkey_ok = pthread_key_create(&tkey, tstate_free) == 0;
}

/* This thread's state, made on first use; NULL on out of memory. */
static tstate *tstate_get(void)
{
    pthread_once(&tonce, tkey_init);
    if (!tkey_ok)
        return NULL;
    tstate *t = pthread_getspecific(tkey);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->md = pcre2_match_data_create(1, NULL);
    t->mc = pcre2_match_context_create(NULL);
    if (!t->md || !t->mc || pthread_setspecific(tkey, t) != 0) {
        tstate_free(t);
        return NULL;
    }
    pcre2_set_match_limit(t->mc, RE_MATCH_LIMIT);
    pcre2_set_depth_limit(t->mc, RE_DEPTH_LIMIT);
    pcre2_set_heap_limit(t->mc, RE_HEAP_LIMIT_KIB);
    return t;
}

/* Large buffers are not kept between calls. */
static void trim(kd__buf *b)
{
    if (b->cap > (1u << 20))
        kd__buf_free(b);
    else
        kd__buf_reset(b);
}

/* ------------------------------------------------------------------------
 * Evaluation
 * ---------------------------------------------------------------------- */

/* Equal as filters see it: same canonical text, or numbers (also inside
 * arrays and objects) equal by value. */
static int value_eq(kd__jv v, kd__jv lit)
{
    if (v.len == lit.len && memcmp(v.p, lit.p, v.len) == 0)
        return 1;
    char a = v.p[0], b = lit.p[0];
    int na = a == '-' || (a >= '0' && a <= '9'), nb = b == '-' || (b >= '0' && b <= '9');
    if (na && nb) {
        if (kd__jv_is_int(v) && kd__jv_is_int(lit))
            return 0;
        return kd__jv_cmp_value(v, lit) == 0;
    }
    if ((a == '[' && b == '[') || (a == '{' && b == '{'))
        return kd__jv_cmp_value(v, lit) == 0;
    return 0;
}

/* The class ranges compare within: 1 number, 2 string, 3 boolean, 0 none. */
static int range_class(char c)
{
    if (c == '-' || (c >= '0' && c <= '9'))
        return 1;
    if (c == '"')
        return 2;
    if (c == 't' || c == 'f')
        return 3;
    return 0;
}

/* Is the canonical string content nd[0..nn) a substring of h[0..hn) once
 * both are unescaped? A raw match counts when it starts on a unit boundary
 * of h (not inside an escape); the escapes are a fixed code per byte, so
 * that is exactly an unescaped match. */
static int str_contains(const char *h, size_t hn, const char *nd, size_t nn)
{
    if (nn == 0)
        return 1;
    int escaped = memchr(h, '\\', hn) != NULL;
    size_t from = 0, cursor = 0;
    while (from + nn <= hn) {
        const char *m = memmem(h + from, hn - from, nd, nn);
        if (!m)
            return 0;
        size_t j = (size_t)(m - h);
        if (!escaped)
            return 1;
        while (cursor < j) {
            if (h[cursor] == '\\' && cursor + 1 < hn)
                cursor += h[cursor + 1] == 'u' ? 6 : 2;
            else
                cursor++;
        }
        if (cursor == j)
            return 1;
        from = j + 1;
    }
    return 0;
}

static int eval_contains(kd__jv v, kd__jv lit)
{
    if (v.p[0] == '"') {
        if (lit.p[0] != '"')
            return 0;
        return str_contains(v.p + 1, v.len - 2, lit.p + 1, lit.len - 2);
    }
    if (v.p[0] == '[') {
        size_t pos = 0;
        kd__jv x;
        while (kd__jv_next_item(v, &pos, &x))
            if (value_eq(x, lit))
                return 1;
        return 0;
    }
    if (v.p[0] == '{' && lit.p[0] == '"')
        return kd__jv_member(v, lit.p, lit.len).p != NULL;
    return 0;
}

static int eval_matches(const kd__fnode *n, kd__jv v)
{
    if (v.p[0] != '"' || !n->re)
        return 0;
    tstate *t = tstate_get();
    if (!t)
        return 0;
    const char *s = v.p + 1;
    size_t len = v.len - 2;
    if (memchr(s, '\\', len)) {
        kd__buf_reset(&t->subject);
        if (kd__jv_string(v, &t->subject) != KD_OK)
            return 0;
        s = t->subject.data ? t->subject.data : "";
        len = t->subject.len;
    }
    /* Canonical strings are valid UTF-8 once unescaped. */
    int rc = pcre2_match((const pcre2_code *)n->re, (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK, t->md, t->mc);
    if (t->subject.cap > (1u << 20))
        kd__buf_free(&t->subject);
    return rc >= 0; /* 0: matched, ovector too small; negative: no match or a limit hit */
}

static int eval_node(const kd__fnode *n, kd__jv doc)
{
    switch (n->op) {
    case KD__F_AND:
        for (size_t i = 0; i < n->n_kids; i++)
            if (!eval_node(n->kids[i], doc))
                return 0;
        return 1;
    case KD__F_OR:
        for (size_t i = 0; i < n->n_kids; i++)
            if (eval_node(n->kids[i], doc))
                return 1;
        return 0;
    case KD__F_NOT:
        return n->n_kids ? !eval_node(n->kids[0], doc) : 1;
    case KD__F_TRUE:
        return 1;
    default:
        break;
    }

    kd__jv v = doc.p ? kd__jv_at(doc, &n->path) : KD__JV_MISSING;
    kd__jv lit = {n->value, n->value_len};
    if (!v.p || v.len == 0)
        return n->op == KD__F_NE;
    switch (n->op) {
    case KD__F_EQ:
        return value_eq(v, lit);
    case KD__F_NE:
        return !value_eq(v, lit);
    case KD__F_GT:
    case KD__F_GTE:
    case KD__F_LT:
    case KD__F_LTE: {
        int cls = range_class(lit.p[0]);
        if (cls == 0 || range_class(v.p[0]) != cls)
            return 0;
        int r = cls == 1 ? kd__jv_num_cmp(v, lit) : kd__jv_cmp_value(v, lit);
        switch (n->op) {
        case KD__F_GT:
            return r > 0;
        case KD__F_GTE:
            return r >= 0;
        case KD__F_LT:
            return r < 0;
        default:
            return r <= 0;
        }
    }
    case KD__F_CONTAINS:
        return eval_contains(v, lit);
    case KD__F_EXISTS:
        return v.p[0] != 'n';
    case KD__F_MATCHES:
        return eval_matches(n, v);
    case KD__F_IN: {
        size_t pos = 0;
        kd__jv x;
        while (kd__jv_next_item(lit, &pos, &x))
            if (value_eq(v, x))
                return 1;
        return 0;
    }
    default:
        return 0;
    }
}

int kd__filter_eval(const kd_filter *f, kd__jv v)
{
    if (!f || !f->root)
        return 1;
    return eval_node(f->root, v);
}

/* ------------------------------------------------------------------------
 * Writing: text form and JSON form
 * ---------------------------------------------------------------------- */

static const char *const op_text[] = {
    [KD__F_EQ] = "=",         [KD__F_NE] = "!=",          [KD__F_GT] = ">",        [KD__F_GTE] = ">=",
    [KD__F_LT] = "<",         [KD__F_LTE] = "<=",         [KD__F_CONTAINS] = "contains",
    [KD__F_EXISTS] = "exists", [KD__F_MATCHES] = "matches", [KD__F_IN] = "in",       [KD__F_AND] = "and",
    [KD__F_OR] = "or",        [KD__F_NOT] = "not",        [KD__F_TRUE] = "true",
};

static const char *const op_json[] = {
    [KD__F_EQ] = "eq",         [KD__F_NE] = "ne",           [KD__F_GT] = "gt",   [KD__F_GTE] = "gte",
    [KD__F_LT] = "lt",         [KD__F_LTE] = "lte",         [KD__F_CONTAINS] = "contains",
    [KD__F_EXISTS] = "exists", [KD__F_MATCHES] = "matches", [KD__F_IN] = "in",   [KD__F_AND] = "and",
    [KD__F_OR] = "or",         [KD__F_NOT] = "not",         [KD__F_TRUE] = "true",
};

/* Parentheses only where the text would otherwise parse differently: an
 * and/or inside not, an and inside and, an or inside and or or. */
static int needs_parens(kd__fop parent, kd__fop kid)
{
    if (kid != KD__F_AND && kid != KD__F_OR)
        return 0;
    if (parent == KD__F_OR)
        return kid == KD__F_OR;
    return 1;
}

static int write_text(kd__buf *b, const kd__fnode *n)
{
    int rc = KD_OK;
    switch (n->op) {
    case KD__F_AND:
    case KD__F_OR:
    case KD__F_NOT:
        if (n->op == KD__F_NOT)
            rc = kd__buf_puts(b, "not ");
        for (size_t i = 0; i < n->n_kids && rc == KD_OK; i++) {
            int par = needs_parens(n->op, n->kids[i]->op);
            if (i > 0)
                rc = kd__buf_puts(b, n->op == KD__F_AND ? " and " : " or ");
            if (rc == KD_OK && par)
                rc = kd__buf_putc(b, '(');
            if (rc == KD_OK)
                rc = write_text(b, n->kids[i]);
            if (rc == KD_OK && par)
                rc = kd__buf_putc(b, ')');
        }
        return rc;
    case KD__F_TRUE:
        return kd__buf_puts(b, "true");
    default:
        break;
    }
    if ((rc = kd__path_write(b, &n->path)) != KD_OK || (rc = kd__buf_putc(b, ' ')) != KD_OK ||
        (rc = kd__buf_puts(b, op_text[n->op])) != KD_OK)
        return rc;
    if (n->op == KD__F_EXISTS)
        return KD_OK;
    if ((rc = kd__buf_putc(b, ' ')) != KD_OK)
        return rc;
    if (n->op == KD__F_MATCHES)
        return kd__json_write_string(b, n->value ? n->value : "", n->value_len);
    return kd__buf_append(b, n->value, n->value_len);
}

static int write_json(kd__buf *b, const kd__fnode *n)
{
    int rc = KD_OK;
    kd__buf field = KD__BUF_INIT;
    switch (n->op) {
    case KD__F_AND:
    case KD__F_OR:
        rc = kd__buf_puts(b, "{\"args\":[");
        for (size_t i = 0; i < n->n_kids && rc == KD_OK; i++) {
            if (i > 0)
                rc = kd__buf_putc(b, ',');
            if (rc == KD_OK)
                rc = write_json(b, n->kids[i]);
        }
        if (rc == KD_OK)
            rc = kd__buf_printf(b, "],\"op\":\"%s\"}", op_json[n->op]);
        return rc;
    case KD__F_NOT:
        rc = kd__buf_puts(b, "{\"arg\":");
        if (rc == KD_OK && n->n_kids)
            rc = write_json(b, n->kids[0]);
        if (rc == KD_OK)
            rc = kd__buf_puts(b, ",\"op\":\"not\"}");
        return rc;
    case KD__F_TRUE:
        return kd__buf_puts(b, "{\"op\":\"true\"}");
    default:
        break;
    }
    if ((rc = kd__path_write(&field, &n->path)) != KD_OK)
        goto done;
    if ((rc = kd__buf_puts(b, "{\"field\":")) != KD_OK ||
        (rc = kd__json_write_string(b, field.data ? field.data : "", field.len)) != KD_OK ||
        (rc = kd__buf_printf(b, ",\"op\":\"%s\"", op_json[n->op])) != KD_OK)
        goto done;
    if (n->op == KD__F_MATCHES) {
        if ((rc = kd__buf_puts(b, ",\"pattern\":")) != KD_OK ||
            (rc = kd__json_write_string(b, n->value ? n->value : "", n->value_len)) != KD_OK)
            goto done;
    } else if (n->op != KD__F_EXISTS) {
        if ((rc = kd__buf_puts(b, n->op == KD__F_IN ? ",\"values\":" : ",\"value\":")) != KD_OK ||
            (rc = kd__buf_append(b, n->value, n->value_len)) != KD_OK)
            goto done;
    }
    rc = kd__buf_putc(b, '}');
done:
    kd__buf_free(&field);
    return rc;
}

/* ------------------------------------------------------------------------
 * Reading the JSON form
 * ---------------------------------------------------------------------- */

typedef struct jctx {
    char *err;
    size_t errlen;
    /* The place of the node being read, one step per level from the root:
     * "arg" (args 0) or "args.i" (args 1), as in args.1.arg. */
    struct {
        int args;
        size_t i;
    } step[KD__FILTER_MAX_NEST];
    int depth;
} jctx;

/* The place as text into out, cut in the middle when it is longer than
 * keep steps at each end: "arg.arg.…(120 levels)….arg.arg". */
static void place_text(const jctx *c, int keep, char *out, size_t size)
{
    size_t n = 0;
    out[0] = '\0';
    for (int s = 0; s < c->depth && n < size; s++) {
        const char *dot = s ? "." : "";
        int r;
        if (s == keep && c->depth - 2 * keep >= 2) {
            r = snprintf(out + n, size - n, "%s…(%d levels)…", dot, c->depth - 2 * keep);
            s = c->depth - keep - 1;
        } else if (c->step[s].args) {
            r = snprintf(out + n, size - n, "%sargs.%zu", dot, c->step[s].i);
        } else {
            r = snprintf(out + n, size - n, "%sarg", dot);
        }
        n += r > 0 ? (size_t)r : 0;
    }
}

/* The message "filter at PLACE: reason" ("filter: reason" at the root).
 * The reason is what matters, so a deep place is shortened until the
 * whole message fits the caller's buffer. */
static int jerr(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jerr(jctx *c, const char *fmt, ...)
{
    char msg[300], place[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!c->err || !c->errlen)
        return KD_EINVALID;
    if (!c->depth) {
        snprintf(c->err, c->errlen, "filter: %s", msg);
        return KD_EINVALID;
    }
    for (int keep = 4; keep >= 0; keep--) {
        place_text(c, keep, place, sizeof place);
        if (strlen("filter at : ") + strlen(place) + strlen(msg) < c->errlen)
            break;
    }
    snprintf(c->err, c->errlen, "filter at %s: %s", place, msg);
    return KD_EINVALID;
}

static const kd__jnode *member(const kd__jnode *obj, const char *name)
{
    size_t pos;
    size_t i = kd__jdom_find(obj, name, strlen(name), &pos);
    return i == (size_t)-1 ? NULL : obj->u.members[i].value;
}

static int from_json(jctx *c, const kd__jnode *j, int nest, kd__fnode **out, size_t *depth);

/* Which members each op takes (besides "op"). */
static int allowed(kd__fop op, const char *name)
{
    switch (op) {
    case KD__F_AND:
    case KD__F_OR:
        return strcmp(name, "args") == 0;
    case KD__F_NOT:
        return strcmp(name, "arg") == 0;
    case KD__F_TRUE:
        return 0;
    case KD__F_EXISTS:
        return strcmp(name, "field") == 0;
    case KD__F_MATCHES:
        return strcmp(name, "field") == 0 || strcmp(name, "pattern") == 0;
    case KD__F_IN:
        return strcmp(name, "field") == 0 || strcmp(name, "values") == 0;
    default:
        return strcmp(name, "field") == 0 || strcmp(name, "value") == 0;
    }
}

static int from_json(jctx *c, const kd__jnode *j, int nest, kd__fnode **out, size_t *depth)
{
    kd__fnode *n = NULL;
    kd__buf val = KD__BUF_INIT;
    int rc;
    *out = NULL;
    *depth = 0;
    if (j->type != KD__J_OBJECT)
        return jerr(c, "expected an object such as {\"op\":\"eq\",\"field\":\"a\",\"value\":1}");
    const kd__jnode *opn = member(j, "op");
    if (!opn)
        return jerr(c, "missing member \"op\"");
    if (opn->type != KD__J_STRING)
        return jerr(c, "\"op\" must be a string");
    kd__fop op = KD__F_TRUE;
    int found = 0;
    for (int k = KD__F_EQ; k <= KD__F_TRUE; k++) {
        if (strlen(op_json[k]) == opn->len && memcmp(op_json[k], opn->u.text, opn->len) == 0) {
            op = (kd__fop)k;
            found = 1;
        }
    }
    if (!found) {
        kd__buf q = KD__BUF_INIT;
        rc = kd__json_write_string(&q, opn->u.text, opn->len);
        rc = rc == KD_OK ? jerr(c,
                                "unknown op %.*s (expected eq, ne, gt, gte, lt, lte, contains, exists, matches, in, "
                                "and, or, not or true)",
                                (int)(q.len > 80 ? 80 : q.len), q.data)
                         : rc;
        kd__buf_free(&q);
        return rc;
    }
    for (size_t k = 0; k < j->len; k++) {
        const kd__jmember *m = &j->u.members[k];
        if (strcmp(m->name, "op") == 0 && m->name_len == 2)
            continue;
        if (m->name_len != strlen(m->name) || !allowed(op, m->name)) {
            kd__buf q = KD__BUF_INIT;
            rc = kd__json_write_string(&q, m->name, m->name_len);
            rc = rc == KD_OK ? jerr(c, "unknown member %.*s in the \"%s\" node", (int)(q.len > 80 ? 80 : q.len),
                                    q.data, op_json[op])
                             : rc;
            kd__buf_free(&q);
            return rc;
        }
    }
    if (!(n = kd__fnode_new(op)))
        return KD_ENOMEM;

    if (op == KD__F_AND || op == KD__F_OR || op == KD__F_NOT) {
        if (nest >= KD__FILTER_MAX_NEST) {
            rc = jerr(c, "nested deeper than %d levels of and, or, not", KD__FILTER_MAX_NEST);
            goto fail;
        }
        size_t kd;
        if (op == KD__F_NOT) {
            const kd__jnode *arg = member(j, "arg");
            if (!arg) {
                rc = jerr(c, "missing member \"arg\" (the filter to negate)");
                goto fail;
            }
            kd__fnode *kid;
            c->step[c->depth].args = 0;
            c->depth++;
            rc = from_json(c, arg, nest + 1, &kid, &kd);
            c->depth--;
            if (rc)
                goto fail;
            if ((rc = kd__fnode_add(n, kid)) != KD_OK) {
                kd__fnode_free(kid);
                goto fail;
            }
            *depth = kd + 1;
        } else {
            const kd__jnode *args = member(j, "args");
            if (!args || args->type != KD__J_ARRAY || args->len < 2) {
                rc = jerr(c, "\"%s\" needs \"args\": an array of at least 2 filters", op_json[op]);
                goto fail;
            }
            for (size_t k = 0; k < args->len; k++) {
                kd__fnode *kid;
                c->step[c->depth].args = 1;
                c->step[c->depth].i = k;
                c->depth++;
                rc = from_json(c, args->u.items[k], nest + 1, &kid, &kd);
                c->depth--;
                if (rc)
                    goto fail;
                if ((rc = kd__fnode_add(n, kid)) != KD_OK) {
                    kd__fnode_free(kid);
                    goto fail;
                }
                if (kd + 1 > *depth)
                    *depth = kd + 1;
            }
        }
        *out = n;
        return KD_OK;
    }
    if (op == KD__F_TRUE) {
        *out = n;
        return KD_OK;
    }

    const kd__jnode *field = member(j, "field");
    if (!field || field->type != KD__J_STRING) {
        rc = jerr(c, "\"%s\" needs \"field\": a field path as a string, e.g. \"address.city\"", op_json[op]);
        goto fail;
    }
    char perr[200];
    rc = kd__path_parse(field->u.text, field->len, &n->path, perr, sizeof perr);
    if (rc == KD_EINVALID) {
        rc = jerr(c, "bad \"field\": %s", perr);
        goto fail;
    }
    if (rc)
        goto fail;
    if (op == KD__F_EXISTS) {
        *out = n;
        return KD_OK;
    }
    if (op == KD__F_MATCHES) {
        const kd__jnode *pat = member(j, "pattern");
        if (!pat || pat->type != KD__J_STRING) {
            rc = jerr(c, "\"matches\" needs \"pattern\": a regular expression as a string");
            goto fail;
        }
        n->value = malloc(pat->len + 1);
        if (!n->value) {
            rc = KD_ENOMEM;
            goto fail;
        }
        memcpy(n->value, pat->u.text, pat->len);
        n->value[pat->len] = '\0';
        n->value_len = pat->len;
        char rerr[300];
        rc = kd__fnode_compile(n, rerr, sizeof rerr);
        if (rc == KD_EINVALID)
            rc = jerr(c, "%s", rerr);
        if (rc)
            goto fail;
        *out = n;
        return KD_OK;
    }
    const char *vname = op == KD__F_IN ? "values" : "value";
    const kd__jnode *v = member(j, vname);
    if (!v) {
        rc = op == KD__F_IN ? jerr(c, "\"in\" needs \"values\": an array of values")
                            : jerr(c, "\"%s\" needs \"value\"", op_json[op]);
        goto fail;
    }
    if (op == KD__F_IN && v->type != KD__J_ARRAY) {
        rc = jerr(c, "\"values\" of \"in\" must be an array");
        goto fail;
    }
    if (kd__jdom_depth(v) > KD__FILTER_MAX_VALUE_DEPTH) {
        rc = jerr(c, "\"%s\" nested deeper than %d levels", vname, KD__FILTER_MAX_VALUE_DEPTH);
        goto fail;
    }
    if ((rc = kd__jdom_write(&val, v)) != KD_OK || (rc = kd__buf_reserve(&val, 0)) != KD_OK)
        goto fail;
    n->value = kd__buf_steal(&val, &n->value_len);
    if (!n->value) {
        rc = KD_ENOMEM;
        goto fail;
    }
    *out = n;
    return KD_OK;

fail:
    kd__buf_free(&val);
    kd__fnode_free(n);
    return rc;
}

/* ------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------- */

static void set_err(char *errbuf, size_t errlen, const char *msg)
{
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", msg);
}

static int wrap(int rc, kd__fnode *root, kd_filter **out, char *errbuf, size_t errlen)
{
    if (rc == KD_OK) {
        kd_filter *f = calloc(1, sizeof *f);
        if (f) {
            f->root = root;
            *out = f;
            return KD_OK;
        }
        rc = KD_ENOMEM;
    }
    kd__fnode_free(root);
    if (rc == KD_ENOMEM)
        set_err(errbuf, errlen, "out of memory");
    return rc;
}

KD_EXPORT int kd_filter_parse(const char *text, kd_filter **out, char *errbuf, size_t errlen)
{
    kd__fnode *root = NULL;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out) {
        set_err(errbuf, errlen, "kd_filter_parse: out is NULL");
        return KD_EINVALID;
    }
    *out = NULL;
    if (!text) {
        set_err(errbuf, errlen, "kd_filter_parse: text is NULL");
        return KD_EINVALID;
    }
    int rc = kd__filter_parse_text(text, strlen(text), &root, errbuf, errlen);
    return wrap(rc, root, out, errbuf, errlen);
}

KD_EXPORT int kd_filter_from_json(const char *json, size_t len, kd_filter **out, char *errbuf, size_t errlen)
{
    kd__buf canon = KD__BUF_INIT;
    kd__jnode *dom = NULL;
    kd__fnode *root = NULL;
    jctx c = {.err = errbuf, .errlen = errlen};
    size_t depth;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out) {
        set_err(errbuf, errlen, "kd_filter_from_json: out is NULL");
        return KD_EINVALID;
    }
    *out = NULL;
    if (!json && len) {
        set_err(errbuf, errlen, "kd_filter_from_json: json is NULL");
        return KD_EINVALID;
    }
    char jmsg[200];
    int rc = kd__json_canonicalize(json ? json : "", len, &canon, jmsg, sizeof jmsg);
    if (rc == KD_EINVALID) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "filter: %s", jmsg);
        goto done;
    }
    if (rc || (rc = kd__jdom_parse(canon.data, canon.len, &dom)) != KD_OK)
        goto done;
    rc = from_json(&c, dom, 0, &root, &depth);
done:
    kd__jdom_free(dom);
    kd__buf_free(&canon);
    return wrap(rc, root, out, errbuf, errlen);
}

static int finish(int rc, kd__buf *b, char **out, size_t *len)
{
    if (rc == KD_OK) {
        size_t n = 0;
        if ((rc = kd__buf_reserve(b, 0)) == KD_OK) {
            char *p = kd__buf_steal(b, &n);
            if (p) {
                *out = p;
                if (len)
                    *len = n;
                return KD_OK;
            }
            rc = KD_ENOMEM;
        }
    }
    kd__buf_free(b);
    *out = NULL;
    if (len)
        *len = 0;
    return rc;
}

KD_EXPORT int kd_filter_to_json(const kd_filter *f, char **json, size_t *len)
{
    kd__buf b = KD__BUF_INIT;
    if (!json)
        return KD_EINVALID;
    if (!f)
        return finish(KD_EINVALID, &b, json, len);
    int rc = f->root ? write_json(&b, f->root) : kd__buf_puts(&b, "{\"op\":\"true\"}");
    return finish(rc, &b, json, len);
}

KD_EXPORT int kd_filter_to_text(const kd_filter *f, char **text, size_t *len)
{
    kd__buf b = KD__BUF_INIT;
    if (!text)
        return KD_EINVALID;
    if (!f)
        return finish(KD_EINVALID, &b, text, len);
    int rc = f->root ? write_text(&b, f->root) : kd__buf_puts(&b, "true");
    return finish(rc, &b, text, len);
}

KD_EXPORT int kd_filter_match(const kd_filter *f, const char *json, size_t len)
{
    if (!f || (!json && len))
        return KD_EINVALID;
    tstate *t = tstate_get();
    kd__buf local = KD__BUF_INIT;
    kd__buf *b = t ? &t->doc : &local;
    kd__buf_reset(b);
    int rc = kd__json_canonicalize(json ? json : "", len, b, NULL, 0);
    if (rc == KD_OK)
        rc = kd__filter_eval(f, (kd__jv){b->data, b->len});
    if (t)
        trim(b);
    else
        kd__buf_free(b);
    return rc;
}

KD_EXPORT void kd_filter_free(kd_filter *f)
{
    if (!f)
        return;
    kd__fnode_free(f->root);
    free(f);
}
