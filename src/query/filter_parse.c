/*
 * filter_parse.c — the text form of filters (docs/QUERY.md "Filter
 * language") into the tree of filter.h.
 *
 * A recursive descent parser, one function per rule of the grammar:
 *
 *   filter     = or ;
 *   or         = and { "or" and } ;
 *   and        = not { "and" not } ;
 *   not        = "not" not | primary ;
 *   primary    = "(" or ")" | "true" | condition ;
 *   condition  = path ( cmp value | "contains" value | "exists"
 *                     | "matches" string | "in" array ) ;
 *
 * Fields are read by kd__path_parse_prefix (jv.c); values are JSON
 * literals, whose extent is found here and whose text is then checked and
 * made canonical by the library's JSON parser. The recursion is bounded:
 * at most KD__FILTER_MAX_NEST parentheses and nots may be open, and the
 * tree may hold at most that many and/or/not nodes on a path from the
 * root (what the JSON form accepts too). Every error says "column N:"
 * (1-based, in bytes) and what was expected there.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "korudelta.h"
#include "query/filter.h"
#include "query/jv.h"
#include "util/buf.h"

typedef struct parser {
    const char *t;
    size_t len, i;
    char *err;
    size_t errlen;
    int nest; /* parentheses and nots open */
} parser;

static int perr(parser *ps, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(parser *ps, size_t at, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->err && ps->errlen)
        snprintf(ps->err, ps->errlen, "column %zu: %s", at + 1, msg);
    return KD_EINVALID;
}

static int oom(parser *ps)
{
    if (ps->err && ps->errlen)
        snprintf(ps->err, ps->errlen, "out of memory");
    return KD_ENOMEM;
}

/* What is at offset i, for messages. */
static const char *found(parser *ps, size_t i, char *buf, size_t n)
{
    if (i >= ps->len)
        return "the end of the filter";
    unsigned char c = (unsigned char)ps->t[i];
    if (kd__path_bare_char(c) && c < 0x80) {
        size_t e = i;
        while (e < ps->len && e - i < 40 && kd__path_bare_char((unsigned char)ps->t[e]))
            e++;
        snprintf(buf, n, "\"%.*s\"", (int)(e - i), ps->t + i);
    } else if (c > 0x20 && c < 0x7f) {
        snprintf(buf, n, "'%c'", c);
    } else {
        snprintf(buf, n, "byte 0x%02x", c);
    }
    return buf;
}

static void skip_ws(parser *ps)
{
    while (ps->i < ps->len) {
        char c = ps->t[ps->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        ps->i++;
    }
}

/* Length of the run of bare-name bytes at i. */
static size_t word_at(parser *ps, size_t i)
{
    size_t e = i;
    while (e < ps->len && kd__path_bare_char((unsigned char)ps->t[e]))
        e++;
    return e - i;
}

/* Is the word at ps->i exactly kw (or, when upper, its upper-case form),
 * standing alone (not the first step of a path)? */
static int at_keyword(parser *ps, const char *kw, int upper)
{
    size_t n = strlen(kw), w = word_at(ps, ps->i);
    if (w != n)
        return 0;
    if (ps->i + n < ps->len && (ps->t[ps->i + n] == '.'))
        return 0;
    if (memcmp(ps->t + ps->i, kw, n) == 0)
        return 1;
    if (!upper)
        return 0;
    for (size_t k = 0; k < n; k++)
        if (ps->t[ps->i + k] != kw[k] - 'a' + 'A')
            return 0;
    return 1;
}

static kd__fnode *join(kd__fop op, kd__fnode *a, kd__fnode *b)
{
    kd__fnode *n = kd__fnode_new(op);
    if (!n)
        return NULL;
    if (kd__fnode_add(n, a) != KD_OK || kd__fnode_add(n, b) != KD_OK) {
        n->n_kids = 0;
        kd__fnode_free(n);
        return NULL;
    }
    return n;
}

static int parse_or(parser *ps, kd__fnode **out, int *depth);

/* ------------------------------------------------------------------------
 * Values
 * ---------------------------------------------------------------------- */

/* Read the JSON literal at ps->i (after `op`) into out as canonical text;
 * *at is its offset. */
static int parse_value(parser *ps, const char *op, kd__buf *out, size_t *at)
{
    char what[64];
    skip_ws(ps);
    size_t s = ps->i, e = s;
    *at = s;
    if (s >= ps->len)
        return perr(ps, s,
                    "expected a value after %s (a JSON literal such as 30, \"text\", true, false, null or "
                    "[1, 2]), found the end of the filter",
                    op);
    char c = ps->t[s];
    if (c == '"') {
        e = s + 1;
        while (e < ps->len && ps->t[e] != '"')
            e += ps->t[e] == '\\' ? 2 : 1;
        if (e >= ps->len)
            return perr(ps, s, "unterminated string: expected a closing '\"'");
        e++;
    } else if (c == '[' || c == '{') {
        size_t depth = 0;
        for (e = s; e < ps->len; e++) {
            char d = ps->t[e];
            if (d == '"') {
                for (e++; e < ps->len && ps->t[e] != '"'; e++)
                    if (ps->t[e] == '\\')
                        e++;
                if (e >= ps->len)
                    break;
            } else if (d == '[' || d == '{') {
                depth++;
            } else if (d == ']' || d == '}') {
                if (--depth == 0)
                    break;
            }
        }
        if (e >= ps->len)
            return perr(ps, s, "unclosed '%c': expected a matching '%c'", c, c == '[' ? ']' : '}');
        e++;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        while (e < ps->len && (strchr("0123456789+-.eE", ps->t[e]) != NULL) && ps->t[e])
            e++;
    } else if (kd__path_bare_char((unsigned char)c)) {
        size_t w = word_at(ps, s);
        if (!((w == 4 && memcmp(ps->t + s, "true", 4) == 0) || (w == 5 && memcmp(ps->t + s, "false", 5) == 0) ||
              (w == 4 && memcmp(ps->t + s, "null", 4) == 0))) {
            while (s + w < ps->len && (ps->t[s + w] == '.' || kd__path_bare_char((unsigned char)ps->t[s + w])))
                w++;
            int shown = w > 60 ? 60 : (int)w;
            return perr(ps, s, "bare word %.*s is not a value; quote it: \"%.*s\"", shown, ps->t + s, shown,
                        ps->t + s);
        }
        e = s + w;
    } else {
        return perr(ps, s,
                    "expected a value after %s (a JSON literal such as 30, \"text\", true, false, null or "
                    "[1, 2]), found %s",
                    op, found(ps, s, what, sizeof what));
    }

    char jerr[200];
    kd__buf_reset(out);
    int rc = kd__json_canonicalize(ps->t + s, e - s, out, jerr, sizeof jerr);
    if (rc == KD_EINVALID) {
        size_t off = 0;
        const char *m = strstr(jerr, ": ");
        if (sscanf(jerr, "invalid JSON at byte %zu", &off) != 1 || off > e - s)
            off = 0;
        return perr(ps, s + off, "bad value after %s: %s", op, m ? m + 2 : jerr);
    }
    if (rc)
        return oom(ps);
    if (kd__filter_value_depth(out->data, out->len) > KD__FILTER_MAX_VALUE_DEPTH)
        return perr(ps, s, "value nested deeper than %d levels", KD__FILTER_MAX_VALUE_DEPTH);
    /* `1and` or `truex` would otherwise read as two tokens. */
    if (e < ps->len && kd__path_bare_char((unsigned char)ps->t[e - 1]) &&
        (kd__path_bare_char((unsigned char)ps->t[e]) || ps->t[e] == '"'))
        return perr(ps, e, "expected a space after the value, found %s", found(ps, e, what, sizeof what));
    ps->i = e;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Conditions
 * ---------------------------------------------------------------------- */

static int parse_condition(parser *ps, kd__fnode **out)
{
    char what[64];
    size_t fstart = ps->i, end;
    kd__fnode *n = kd__fnode_new(KD__F_EQ);
    kd__buf val = KD__BUF_INIT;
    int rc;
    if (!n)
        return oom(ps);
    rc = kd__path_parse_prefix(ps->t, ps->len, fstart, &end, &n->path, ps->err, ps->errlen);
    if (rc) {
        if (rc == KD_ENOMEM)
            oom(ps);
        goto fail;
    }
    ps->i = end;
    int fshown = end - fstart > 60 ? 60 : (int)(end - fstart);
    skip_ws(ps);
    size_t at = ps->i;
    const char *t = ps->t;
    const char *opname;
    if (at < ps->len && t[at] == '=') {
        n->op = KD__F_EQ;
        ps->i += (at + 1 < ps->len && t[at + 1] == '=') ? 2 : 1;
        opname = "=";
    } else if (at < ps->len && t[at] == '!') {
        if (at + 1 >= ps->len || t[at + 1] != '=') {
            rc = perr(ps, at + 1, "expected '=' after '!' (the operator is !=), found %s",
                      found(ps, at + 1, what, sizeof what));
            goto fail;
        }
        n->op = KD__F_NE;
        ps->i += 2;
        opname = "!=";
    } else if (at < ps->len && (t[at] == '>' || t[at] == '<')) {
        int eq = at + 1 < ps->len && t[at + 1] == '=';
        n->op = t[at] == '>' ? (eq ? KD__F_GTE : KD__F_GT) : (eq ? KD__F_LTE : KD__F_LT);
        opname = t[at] == '>' ? (eq ? ">=" : ">") : (eq ? "<=" : "<");
        ps->i += eq ? 2 : 1;
    } else if (at_keyword(ps, "contains", 0)) {
        n->op = KD__F_CONTAINS;
        ps->i += 8;
        opname = "contains";
    } else if (at_keyword(ps, "exists", 0)) {
        n->op = KD__F_EXISTS;
        ps->i += 6;
        *out = n;
        return KD_OK;
    } else if (at_keyword(ps, "matches", 0)) {
        n->op = KD__F_MATCHES;
        ps->i += 7;
        opname = "matches";
    } else if (at_keyword(ps, "in", 0)) {
        n->op = KD__F_IN;
        ps->i += 2;
        opname = "in";
    } else {
        rc = perr(ps, at,
                  "expected an operator after the field %.*s (=, !=, >, >=, <, <=, contains, exists, matches or "
                  "in), found %s",
                  fshown, t + fstart, found(ps, at, what, sizeof what));
        goto fail;
    }

    size_t vat;
    skip_ws(ps);
    vat = ps->i;
    if (n->op == KD__F_MATCHES && (vat >= ps->len || t[vat] != '"')) {
        rc = perr(ps, vat, "expected the pattern as a JSON string after matches, e.g. \"^A\", found %s",
                  found(ps, vat, what, sizeof what));
        goto fail;
    }
    if (n->op == KD__F_IN && (vat >= ps->len || t[vat] != '[')) {
        if (vat < ps->len && kd__path_bare_char((unsigned char)t[vat]) && t[vat] != '-' &&
            !(t[vat] >= '0' && t[vat] <= '9') && !at_keyword(ps, "null", 0) && !at_keyword(ps, "true", 0) &&
            !at_keyword(ps, "false", 0)) {
            rc = parse_value(ps, opname, &val, &vat); /* a bare word: that message */
            if (rc != KD_EINVALID)
                rc = perr(ps, vat, "expected a JSON array after in");
            goto fail;
        }
        rc = perr(ps, vat, "expected a JSON array after in, e.g. [\"NO\", \"SE\"], found %s",
                  found(ps, vat, what, sizeof what));
        goto fail;
    }
    if ((rc = parse_value(ps, opname, &val, &vat)) != KD_OK)
        goto fail;
    if (n->op == KD__F_MATCHES) {
        kd__buf pat = KD__BUF_INIT;
        rc = kd__jv_string((kd__jv){val.data, val.len}, &pat);
        if (rc == KD_OK)
            rc = kd__buf_reserve(&pat, 0);
        if (rc) {
            kd__buf_free(&pat);
            oom(ps);
            goto fail;
        }
        n->value = kd__buf_steal(&pat, &n->value_len);
        char rerr[300];
        rc = kd__fnode_compile(n, rerr, sizeof rerr);
        if (rc == KD_EINVALID)
            perr(ps, vat, "%s", rerr);
        else if (rc)
            oom(ps);
        if (rc)
            goto fail;
    } else {
        n->value = kd__buf_steal(&val, &n->value_len);
        if (!n->value) {
            rc = oom(ps);
            goto fail;
        }
    }
    kd__buf_free(&val);
    *out = n;
    return KD_OK;

fail:
    kd__buf_free(&val);
    kd__fnode_free(n);
    return rc;
}

/* ------------------------------------------------------------------------
 * and / or / not / parentheses
 * ---------------------------------------------------------------------- */

static const char *const reserved[] = {"and", "or", "not", "contains", "exists", "matches", "in", "false", "null",
                                       "AND", "OR", "NOT"};

static int parse_not(parser *ps, kd__fnode **out, int *depth);

static int parse_primary(parser *ps, kd__fnode **out, int *depth)
{
    char what[64];
    skip_ws(ps);
    size_t at = ps->i;
    *depth = 0;
    if (at >= ps->len)
        return perr(ps, at, "expected a condition (a field name, '(' or not), found the end of the filter");
    if (ps->t[at] == '(') {
        if (++ps->nest > KD__FILTER_MAX_NEST)
            return perr(ps, at, "nested deeper than %d levels of parentheses and not", KD__FILTER_MAX_NEST);
        ps->i++;
        int rc = parse_or(ps, out, depth);
        if (rc)
            return rc;
        skip_ws(ps);
        if (ps->i >= ps->len || ps->t[ps->i] != ')') {
            rc = perr(ps, ps->i, "expected and, or or ')' to close the '(' at column %zu, found %s", at + 1,
                      found(ps, ps->i, what, sizeof what));
            kd__fnode_free(*out);
            *out = NULL;
            return rc;
        }
        ps->i++;
        ps->nest--;
        return KD_OK;
    }
    if (at_keyword(ps, "true", 0)) {
        ps->i += 4;
        /* `true = 1` means a field named true: say how to write that. */
        skip_ws(ps);
        if (ps->i < ps->len && (strchr("=!<>", ps->t[ps->i]) || at_keyword(ps, "contains", 0) ||
                                at_keyword(ps, "exists", 0) || at_keyword(ps, "matches", 0) ||
                                at_keyword(ps, "in", 0)))
            return perr(ps, at,
                        "expected a condition (a field name, '(' or not), found the keyword true; quote a "
                        "field with that name: \"true\"");
        *out = kd__fnode_new(KD__F_TRUE);
        return *out ? KD_OK : oom(ps);
    }
    for (size_t k = 0; k < sizeof reserved / sizeof reserved[0]; k++) {
        if (at_keyword(ps, reserved[k], 0))
            return perr(ps, at,
                        "expected a condition (a field name, '(' or not), found the keyword %s; quote a field "
                        "with that name: \"%s\"",
                        reserved[k], reserved[k]);
    }
    if (!kd__path_bare_char((unsigned char)ps->t[at]) && ps->t[at] != '"')
        return perr(ps, at, "expected a condition (a field name, '(' or not), found %s",
                    found(ps, at, what, sizeof what));
    return parse_condition(ps, out);
}

static int parse_not(parser *ps, kd__fnode **out, int *depth)
{
    skip_ws(ps);
    if (!at_keyword(ps, "not", 1))
        return parse_primary(ps, out, depth);
    size_t at = ps->i;
    if (++ps->nest > KD__FILTER_MAX_NEST)
        return perr(ps, at, "nested deeper than %d levels of parentheses and not", KD__FILTER_MAX_NEST);
    ps->i += 3;
    kd__fnode *kid;
    int rc = parse_not(ps, &kid, depth);
    if (rc)
        return rc;
    ps->nest--;
    if (++*depth > KD__FILTER_MAX_NEST) {
        kd__fnode_free(kid);
        return perr(ps, at, "nested deeper than %d levels of and, or, not", KD__FILTER_MAX_NEST);
    }
    kd__fnode *n = kd__fnode_new(KD__F_NOT);
    if (!n || kd__fnode_add(n, kid) != KD_OK) {
        kd__fnode_free(n);
        kd__fnode_free(kid);
        return oom(ps);
    }
    *out = n;
    return KD_OK;
}

/* One level of and (which = 0) or or (which = 1): a chain of operands
 * joined into one n-ary node. */
static int parse_chain(parser *ps, int which, kd__fnode **out, int *depth)
{
    kd__fnode *first = NULL, *node = NULL;
    int rc, d = 0, maxd;
    size_t at = ps->i;
    rc = which ? parse_chain(ps, 0, &first, &maxd) : parse_not(ps, &first, &maxd);
    if (rc)
        return rc;
    for (;;) {
        skip_ws(ps);
        if (!at_keyword(ps, which ? "or" : "and", 1))
            break;
        ps->i += which ? 2 : 3;
        kd__fnode *next;
        rc = which ? parse_chain(ps, 0, &next, &d) : parse_not(ps, &next, &d);
        if (rc)
            goto fail;
        if (d > maxd)
            maxd = d;
        if (!node) {
            node = join(which ? KD__F_OR : KD__F_AND, first, next);
            if (!node) {
                kd__fnode_free(next);
                rc = oom(ps);
                goto fail;
            }
            first = NULL;
        } else if (kd__fnode_add(node, next) != KD_OK) {
            kd__fnode_free(next);
            rc = oom(ps);
            goto fail;
        }
    }
    if (node) {
        if (maxd + 1 > KD__FILTER_MAX_NEST) {
            rc = perr(ps, at, "nested deeper than %d levels of and, or, not", KD__FILTER_MAX_NEST);
            goto fail;
        }
        *depth = maxd + 1;
        *out = node;
    } else {
        *depth = maxd;
        *out = first;
    }
    return KD_OK;
fail:
    kd__fnode_free(first);
    kd__fnode_free(node);
    return rc;
}

static int parse_or(parser *ps, kd__fnode **out, int *depth)
{
    return parse_chain(ps, 1, out, depth);
}

int kd__filter_parse_text(const char *text, size_t len, kd__fnode **root, char *err, size_t errlen)
{
    parser ps = {text, len, 0, err, errlen, 0};
    char what[64];
    int depth;
    *root = NULL;
    skip_ws(&ps);
    if (ps.i >= len)
        return perr(&ps, 0, "empty filter: expected a condition such as age > 30");
    kd__fnode *n;
    int rc = parse_or(&ps, &n, &depth);
    if (rc)
        return rc;
    skip_ws(&ps);
    if (ps.i < len) {
        if (text[ps.i] == ')')
            rc = perr(&ps, ps.i, "unmatched ')': expected and, or or the end of the filter");
        else
            rc = perr(&ps, ps.i, "expected and, or or the end of the filter, found %s",
                      found(&ps, ps.i, what, sizeof what));
        kd__fnode_free(n);
        return rc;
    }
    *root = n;
    return KD_OK;
}
