/*
 * patch.c — JSON Patch (RFC 6902) over JSON Pointer (RFC 6901): the public
 * kd_json_diff() and kd_json_patch() of include/korudelta.h.
 *
 * Both canonicalize their inputs with the database's own parser (json.c),
 * build trees of them (dom.c) and write canonical JSON back, so a patch
 * made here, and the result of applying one, are exactly the bytes the
 * database would store. docs/JSON.md §8 states the rules; in short:
 *
 *   - diff compares objects member by member (remove / add / recurse),
 *     arrays element by element (common prefix and suffix kept, the middle
 *     aligned on a longest common subsequence when it is small enough,
 *     element pairs left unmatched are diffed in place), and replaces
 *     scalars and values of different types. Equal values give "[]".
 *   - patch applies the six operations in order on a private copy, so a
 *     patch is atomic: on any error nothing is returned, and the message
 *     names the operation's index and what went wrong.
 *   - "test" compares JSON values: numbers by their canonical text, so 1
 *     and 1.0 differ (as they do in the database) while 1e2 and 100.0 are
 *     the same value.
 *
 * Trees never nest deeper than KD_JSON_MAX_DEPTH: the parser refuses more,
 * and every operation that inserts a value checks the depth it would reach.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/dom.h"
#include "json/json.h"
#include "korudelta.h"
#include "util/buf.h"

/* Largest LCS table (cells) diff builds for the changed middle of an array;
 * beyond it the middle is compared position by position. */
#define LCS_MAX_CELLS ((size_t)1 << 21)

/* A patch may not make the document larger (kd__jdom_weight) than twice its
 * inputs plus this: each "copy" of the whole document into itself doubles
 * it, so a short patch could otherwise ask for 2^512 bytes. */
#define PATCH_GROWTH_ALLOWANCE ((size_t)16 << 20)

/* ------------------------------------------------------------------------
 * Shared helpers
 * ---------------------------------------------------------------------- */

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Canonicalize and build the tree of one input; `what` names it in errors. */
static int load(const char *what, const char *in, size_t len, kd__jnode **out, char *errbuf, size_t errlen)
{
    kd__buf b = KD__BUF_INIT;
    char err[256];
    err[0] = '\0';
    *out = NULL;
    if (!in && len > 0) {
        set_err(errbuf, errlen, "%s: input is NULL", what);
        return KD_EINVALID;
    }
    int rc = kd__json_canonicalize(in ? in : "", len, &b, err, sizeof err);
    if (rc == KD_OK)
        rc = kd__jdom_parse(b.data ? b.data : "", b.len, out);
    else if (rc == KD_EINVALID)
        set_err(errbuf, errlen, "%s: %s", what, err);
    kd__buf_free(&b);
    if (rc == KD_ENOMEM)
        set_err(errbuf, errlen, "%s: %s", what, kd_strerror(rc));
    else if (rc != KD_OK && !(err[0]))
        set_err(errbuf, errlen, "%s: cannot read the canonical form", what);
    return rc;
}

/* Hand out b's bytes NUL-terminated, or clear the outputs. */
static int finish(int rc, kd__buf *b, char **out, size_t *outlen, char *errbuf, size_t errlen)
{
    if (rc == KD_OK) {
        size_t n = 0;
        char *p = b->data ? kd__buf_steal(b, &n) : NULL;
        if (p) {
            *out = p;
            if (outlen)
                *outlen = n;
            return KD_OK;
        }
        rc = KD_ENOMEM;
    }
    if (rc == KD_ENOMEM)
        set_err(errbuf, errlen, "%s", kd_strerror(rc));
    kd__buf_free(b);
    *out = NULL;
    if (outlen)
        *outlen = 0;
    return rc;
}

static const char *type_name(kd__jtype t)
{
    switch (t) {
    case KD__J_NULL:
        return "null";
    case KD__J_FALSE:
    case KD__J_TRUE:
        return "a boolean";
    case KD__J_NUMBER:
        return "a number";
    case KD__J_STRING:
        return "a string";
    case KD__J_ARRAY:
        return "an array";
    default:
        return "an object";
    }
}

/* Byte-wise order of names, a prefix first (the canonical member order). */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* ------------------------------------------------------------------------
 * JSON Pointer (RFC 6901)
 * ---------------------------------------------------------------------- */

typedef struct pointer {
    const char *raw; /* the pointer as written (unescaped JSON string) */
    size_t raw_len;
    char *buf;       /* decoded tokens, back to back */
    size_t *off;     /* token i is buf[off[i] .. off[i] + len[i]) */
    size_t *len;
    size_t *raw_end; /* raw[0 .. raw_end[i]) is the pointer up to token i */
    size_t n;
} pointer;

static void pointer_free(pointer *p)
{
    free(p->buf);
    free(p->off);
    free(p->len);
    free(p->raw_end);
    memset(p, 0, sizeof *p);
}

/* Decode raw[0..len). KD_EINVALID with *why set, or KD_ENOMEM. */
static int pointer_parse(const char *raw, size_t len, pointer *p, const char **why)
{
    memset(p, 0, sizeof *p);
    p->raw = raw;
    p->raw_len = len;
    if (len == 0)
        return KD_OK;
    if (raw[0] != '/') {
        *why = "a JSON Pointer must be empty or start with '/'";
        return KD_EINVALID;
    }
    size_t ntok = 0;
    for (size_t i = 0; i < len; i++)
        ntok += raw[i] == '/';
    p->buf = malloc(len + 1);
    p->off = malloc(ntok * sizeof *p->off);
    p->len = malloc(ntok * sizeof *p->len);
    p->raw_end = malloc(ntok * sizeof *p->raw_end);
    if (!p->buf || !p->off || !p->len || !p->raw_end) {
        pointer_free(p);
        return KD_ENOMEM;
    }
    size_t o = 0, i = 1; /* raw[0] is the first '/' */
    for (;;) {
        p->off[p->n] = o;
        p->len[p->n] = 0;
        while (i < len && raw[i] != '/') {
            char c = raw[i];
            if (c == '~') {
                if (i + 1 >= len || (raw[i + 1] != '0' && raw[i + 1] != '1')) {
                    *why = "'~' must be followed by '0' or '1' in a JSON Pointer";
                    pointer_free(p);
                    return KD_EINVALID;
                }
                c = raw[i + 1] == '0' ? '~' : '/';
                i += 2;
            } else {
                i++;
            }
            p->buf[o++] = c;
            p->len[p->n]++;
        }
        p->raw_end[p->n++] = i;
        if (i >= len)
            break;
        i++; /* the '/' before the next token */
    }
    return KD_OK;
}

static int tokens_equal(const pointer *a, size_t i, const pointer *b, size_t j)
{
    return a->len[i] == b->len[j] && (a->len[i] == 0 || memcmp(a->buf + a->off[i], b->buf + b->off[j], a->len[i]) == 0);
}

/* ------------------------------------------------------------------------
 * Applying a patch
 * ---------------------------------------------------------------------- */

typedef struct pctx {
    size_t index;   /* operation being applied */
    const char *op; /* its name, for messages */
    char *err;
    size_t errlen;
    size_t weight;  /* kd__jdom_weight of the document as patched so far */
    size_t limit;   /* the most it may reach */
} pctx;

static int fail(pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(pctx *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        int n = snprintf(c->err, c->errlen, "operation %zu (%s): ", c->index, c->op);
        if (n >= 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return KD_EINVALID;
}

/* Pointer text for messages: at most 200 bytes. */
#define PTR_FMT "\"%.*s%s\""
#define PTR_ARG(raw, len) (int)((len) > 200 ? 200 : (len)), (raw), ((len) > 200 ? "..." : "")

enum { IDX_OK, IDX_DASH, IDX_BAD };

/* An array index token: digits without leading zeros, or "-". */
static int array_index(const char *tok, size_t len, size_t *out, const char **why)
{
    if (len == 1 && tok[0] == '-')
        return IDX_DASH;
    if (len == 0) {
        *why = "is not an array index (empty)";
        return IDX_BAD;
    }
    size_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (tok[i] < '0' || tok[i] > '9') {
            *why = "is not an array index (digits, or '-' to append)";
            return IDX_BAD;
        }
        if (v > (SIZE_MAX / 2 - 9) / 10) {
            *why = "is out of range";
            return IDX_BAD;
        }
        v = v * 10 + (size_t)(tok[i] - '0');
    }
    if (len > 1 && tok[0] == '0') {
        *why = "is not an array index (leading zeros are not allowed)";
        return IDX_BAD;
    }
    *out = v;
    return IDX_OK;
}

/* Walk the first `upto` tokens of p from root. NULL (message set) when a
 * step does not exist; `what` is "path" or "from". */
static kd__jnode *walk(pctx *c, kd__jnode *root, const pointer *p, size_t upto, const char *what)
{
    kd__jnode *n = root;
    for (size_t t = 0; t < upto; t++) {
        const char *tok = p->buf + p->off[t];
        size_t len = p->len[t];
        size_t prev_end = t ? p->raw_end[t - 1] : 0;
        if (n->type == KD__J_OBJECT) {
            size_t i = kd__jdom_find(n, tok, len, NULL);
            if (i == (size_t)-1) {
                fail(c, "%s " PTR_FMT ": " PTR_FMT " does not exist", what, PTR_ARG(p->raw, p->raw_len),
                     PTR_ARG(p->raw, p->raw_end[t]));
                return NULL;
            }
            n = n->u.members[i].value;
        } else if (n->type == KD__J_ARRAY) {
            size_t i = 0;
            const char *why = "";
            int k = array_index(tok, len, &i, &why);
            if (k == IDX_OK && i >= n->len) {
                fail(c, "%s " PTR_FMT ": index %zu is out of range (the array " PTR_FMT " has %zu elements)", what,
                     PTR_ARG(p->raw, p->raw_len), i, PTR_ARG(p->raw, prev_end), n->len);
                return NULL;
            }
            if (k != IDX_OK) {
                if (k == IDX_DASH)
                    why = "names no element (\"-\" is the end of the array)";
                fail(c, "%s " PTR_FMT ": \"%.*s\" %s", what, PTR_ARG(p->raw, p->raw_len), (int)(len > 100 ? 100 : len),
                     tok, why);
                return NULL;
            }
            n = n->u.items[i];
        } else {
            fail(c, "%s " PTR_FMT ": " PTR_FMT " is %s, not an object or array", what, PTR_ARG(p->raw, p->raw_len),
                 PTR_ARG(p->raw, prev_end), type_name(n->type));
            return NULL;
        }
    }
    return n;
}

/* The container of p's last token, and where the token points in it:
 * *slot is the member or element index, or (size_t)-1 when the member is
 * absent (objects; *pos = insertion point) or the token is "-" or one past
 * the end (arrays; *pos = n). `for_add` allows the latter for arrays. */
static kd__jnode *locate(pctx *c, kd__jnode *root, const pointer *p, const char *what, int for_add, size_t *slot,
                         size_t *pos)
{
    kd__jnode *parent = walk(c, root, p, p->n - 1, what);
    if (!parent)
        return NULL;
    const char *tok = p->buf + p->off[p->n - 1];
    size_t len = p->len[p->n - 1];
    size_t prev_end = p->n > 1 ? p->raw_end[p->n - 2] : 0;
    *slot = (size_t)-1;
    if (parent->type == KD__J_OBJECT) {
        *slot = kd__jdom_find(parent, tok, len, pos);
        if (*slot == (size_t)-1 && !for_add) {
            fail(c, "%s " PTR_FMT " does not exist", what, PTR_ARG(p->raw, p->raw_len));
            return NULL;
        }
        return parent;
    }
    if (parent->type == KD__J_ARRAY) {
        size_t i = 0;
        const char *why = "";
        int k = array_index(tok, len, &i, &why);
        if (k == IDX_BAD) {
            fail(c, "%s " PTR_FMT ": \"%.*s\" %s", what, PTR_ARG(p->raw, p->raw_len), (int)(len > 100 ? 100 : len), tok,
                 why);
            return NULL;
        }
        if (k == IDX_DASH)
            i = parent->len;
        if (i < parent->len) {
            *slot = i;
        } else if (for_add && i == parent->len) {
            *pos = i;
        } else if (k == IDX_DASH) {
            fail(c, "%s " PTR_FMT ": \"-\" names no element (it is the end of the array, only for \"add\")", what,
                 PTR_ARG(p->raw, p->raw_len));
            return NULL;
        } else {
            fail(c, "%s " PTR_FMT ": index %zu is out of range (the array " PTR_FMT " has %zu elements)", what,
                 PTR_ARG(p->raw, p->raw_len), i, PTR_ARG(p->raw, prev_end), parent->len);
            return NULL;
        }
        return parent;
    }
    fail(c, "%s " PTR_FMT ": " PTR_FMT " is %s, not an object or array", what, PTR_ARG(p->raw, p->raw_len),
         PTR_ARG(p->raw, prev_end), type_name(parent->type));
    return NULL;
}

/* The value p points to, or NULL (message set). */
static kd__jnode *get(pctx *c, kd__jnode *root, const pointer *p, const char *what)
{
    if (p->n == 0)
        return root;
    size_t slot, pos;
    kd__jnode *parent = locate(c, root, p, what, 0, &slot, &pos);
    if (!parent)
        return NULL;
    return parent->type == KD__J_OBJECT ? parent->u.members[slot].value : parent->u.items[slot];
}

/* Would `value` placed at p nest deeper than the limit? */
static int too_deep(pctx *c, const pointer *p, const kd__jnode *value)
{
    if (p->n + kd__jdom_depth(value) > KD_JSON_MAX_DEPTH) {
        fail(c, "the result would nest deeper than %d levels", KD_JSON_MAX_DEPTH);
        return 1;
    }
    return 0;
}

/* Add `value` (owned; freed on failure) at p. `replace` requires the
 * target to exist (the "replace" operation). */
static int put(pctx *c, kd__jnode **root, const pointer *p, kd__jnode *value, int replace)
{
    int rc = KD_EINVALID;
    size_t slot = (size_t)-1, pos = 0, old = 0;
    kd__jnode *parent = NULL;
    if (p->n > 0) {
        parent = locate(c, *root, p, "path", !replace, &slot, &pos);
        if (!parent || too_deep(c, p, value))
            goto fail;
        if (slot != (size_t)-1 && (parent->type == KD__J_OBJECT || replace))
            old = kd__jdom_weight(parent->type == KD__J_OBJECT ? parent->u.members[slot].value : parent->u.items[slot]);
    } else {
        old = c->weight;
    }
    size_t w = kd__jdom_weight(value);
    if (c->weight - old > c->limit || w > c->limit - (c->weight - old)) {
        fail(c, "the result would be larger than %zu bytes (twice the inputs plus %zu MiB)", c->limit,
             PATCH_GROWTH_ALLOWANCE >> 20);
        goto fail;
    }
    c->weight = c->weight - old + w;
    if (p->n == 0) {
        kd__jdom_free(*root);
        *root = value;
        return KD_OK;
    }
    if (parent->type == KD__J_OBJECT) {
        const char *tok = p->buf + p->off[p->n - 1];
        rc = kd__jdom_set(parent, tok, p->len[p->n - 1], value);
    } else if (slot != (size_t)-1 && replace) {
        kd__jdom_free(parent->u.items[slot]);
        parent->u.items[slot] = value;
        rc = KD_OK;
    } else {
        rc = kd__jdom_insert(parent, slot != (size_t)-1 ? slot : pos, value);
    }
    if (rc == KD_OK)
        return KD_OK;
fail:
    kd__jdom_free(value);
    return rc;
}

/* Detach the value at p (which must exist and not be the root). */
static kd__jnode *take(pctx *c, kd__jnode *root, const pointer *p, const char *what)
{
    size_t slot, pos;
    kd__jnode *parent = locate(c, root, p, what, 0, &slot, &pos);
    if (!parent)
        return NULL;
    kd__jnode *n = parent->type == KD__J_OBJECT ? kd__jdom_take_member(parent, slot) : kd__jdom_take_item(parent, slot);
    size_t w = kd__jdom_weight(n);
    c->weight = w < c->weight ? c->weight - w : 0;
    return n;
}

/* A string member of an operation; KD_ENOTFOUND when absent. */
static int str_member(pctx *c, const kd__jnode *op, const char *name, const kd__jnode **out)
{
    size_t i = kd__jdom_find(op, name, strlen(name), NULL);
    if (i == (size_t)-1)
        return KD_ENOTFOUND;
    const kd__jnode *v = op->u.members[i].value;
    if (v->type != KD__J_STRING)
        return fail(c, "\"%s\" must be a string (a JSON Pointer), not %s", name, type_name(v->type));
    *out = v;
    return KD_OK;
}

static int apply_one(pctx *c, kd__jnode **root, kd__jnode *op)
{
    const kd__jnode *opname = NULL, *path = NULL, *from = NULL;
    pointer pp, fp;
    const char *why = "";
    int rc;

    memset(&pp, 0, sizeof pp);
    memset(&fp, 0, sizeof fp);
    c->op = "?";
    if (op->type != KD__J_OBJECT)
        return fail(c, "an operation must be an object, not %s", type_name(op->type));
    rc = str_member(c, op, "op", &opname);
    if (rc == KD_ENOTFOUND)
        return fail(c, "missing \"op\"");
    if (rc != KD_OK) {
        c->op = "?";
        return rc;
    }
    static const char *const names[] = {"add", "remove", "replace", "move", "copy", "test"};
    int kind = -1;
    for (int k = 0; k < 6; k++)
        if (opname->len == strlen(names[k]) && memcmp(opname->u.text, names[k], opname->len) == 0)
            kind = k, c->op = names[k];
    if (kind < 0) {
        c->op = "?";
        return fail(c, "unknown operation \"%.*s\" (use add, remove, replace, move, copy or test)",
                    (int)(opname->len > 50 ? 50 : opname->len), opname->u.text);
    }

    rc = str_member(c, op, "path", &path);
    if (rc == KD_ENOTFOUND)
        return fail(c, "missing \"path\"");
    if (rc != KD_OK)
        return rc;
    if ((rc = pointer_parse(path->u.text, path->len, &pp, &why)) != KD_OK)
        return rc == KD_ENOMEM ? rc : fail(c, "path " PTR_FMT ": %s", PTR_ARG(path->u.text, path->len), why);

    kd__jnode *value = NULL;
    size_t vi = (size_t)-1;
    if (kind == 0 || kind == 2 || kind == 5) {
        vi = kd__jdom_find(op, "value", 5, NULL);
        if (vi == (size_t)-1) {
            rc = fail(c, "missing \"value\"");
            goto done;
        }
        value = op->u.members[vi].value;
    }
    if (kind == 3 || kind == 4) {
        rc = str_member(c, op, "from", &from);
        if (rc == KD_ENOTFOUND)
            rc = fail(c, "missing \"from\"");
        if (rc != KD_OK)
            goto done;
        if ((rc = pointer_parse(from->u.text, from->len, &fp, &why)) != KD_OK) {
            if (rc != KD_ENOMEM)
                rc = fail(c, "from " PTR_FMT ": %s", PTR_ARG(from->u.text, from->len), why);
            goto done;
        }
    }

    switch (kind) {
    case 0: /* add */
    case 2: /* replace */
        if (kind == 2 && !get(c, *root, &pp, "path")) {
            rc = KD_EINVALID;
            break;
        }
        op->u.members[vi].value = NULL; /* the value moves into the document */
        rc = put(c, root, &pp, value, kind == 2);
        break;
    case 1: /* remove */
        if (pp.n == 0) {
            rc = fail(c, "cannot remove the whole document (path \"\")");
            break;
        }
        {
            kd__jnode *gone = take(c, *root, &pp, "path");
            rc = gone ? KD_OK : KD_EINVALID;
            kd__jdom_free(gone);
        }
        break;
    case 3: { /* move */
        kd__jnode *src = get(c, *root, &fp, "from");
        if (!src) {
            rc = KD_EINVALID;
            break;
        }
        int prefix = fp.n <= pp.n;
        for (size_t t = 0; prefix && t < fp.n; t++)
            prefix = tokens_equal(&fp, t, &pp, t);
        if (prefix && fp.n == pp.n) {
            rc = KD_OK; /* moving a value onto itself changes nothing */
            break;
        }
        if (prefix) {
            rc = fail(c, "cannot move " PTR_FMT " into itself (path " PTR_FMT ")", PTR_ARG(fp.raw, fp.raw_len),
                      PTR_ARG(pp.raw, pp.raw_len));
            break;
        }
        src = fp.n ? take(c, *root, &fp, "from") : NULL;
        if (!src) {
            rc = KD_EINVALID;
            break;
        }
        rc = put(c, root, &pp, src, 0);
        break;
    }
    case 4: { /* copy */
        kd__jnode *src = get(c, *root, &fp, "from");
        if (!src) {
            rc = KD_EINVALID;
            break;
        }
        kd__jnode *dup = kd__jdom_copy(src);
        rc = dup ? put(c, root, &pp, dup, 0) : KD_ENOMEM;
        break;
    }
    case 5: { /* test */
        kd__jnode *cur = get(c, *root, &pp, "path");
        if (!cur) {
            rc = KD_EINVALID;
        } else if (!kd__jdom_equal(cur, value)) {
            rc = fail(c, "test failed: the value at " PTR_FMT " is not equal to \"value\"",
                      PTR_ARG(pp.raw, pp.raw_len));
        } else {
            rc = KD_OK;
        }
        break;
    }
    }
done:
    pointer_free(&pp);
    pointer_free(&fp);
    return rc;
}

KD_EXPORT int kd_json_patch(const char *doc, size_t doclen, const char *patch, size_t patchlen, char **out,
                            size_t *outlen, char *errbuf, size_t errlen)
{
    kd__buf b = KD__BUF_INIT;
    kd__jnode *root = NULL, *ops = NULL;
    pctx c = {.index = 0, .op = "?", .err = errbuf, .errlen = errlen};
    int rc;

    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out) {
        set_err(errbuf, errlen, "kd_json_patch: out is NULL");
        return KD_EINVALID;
    }
    if ((rc = load("document", doc, doclen, &root, errbuf, errlen)) != KD_OK ||
        (rc = load("patch", patch, patchlen, &ops, errbuf, errlen)) != KD_OK)
        goto done;
    if (ops->type != KD__J_ARRAY) {
        set_err(errbuf, errlen, "patch: expected an array of operations, found %s", type_name(ops->type));
        rc = KD_EINVALID;
        goto done;
    }
    c.weight = kd__jdom_weight(root);
    c.limit = PATCH_GROWTH_ALLOWANCE + (doclen > SIZE_MAX / 8 ? SIZE_MAX / 4 : 2 * doclen) +
              (patchlen > SIZE_MAX / 8 ? SIZE_MAX / 4 : 2 * patchlen);
    for (size_t i = 0; i < ops->len; i++) {
        c.index = i;
        if ((rc = apply_one(&c, &root, ops->u.items[i])) != KD_OK) {
            if (rc == KD_ENOMEM)
                set_err(errbuf, errlen, "operation %zu: %s", i, kd_strerror(rc));
            goto done;
        }
    }
    rc = kd__jdom_write(&b, root);
done:
    kd__jdom_free(root);
    kd__jdom_free(ops);
    return finish(rc, &b, out, outlen, errbuf, errlen);
}

/* ------------------------------------------------------------------------
 * Computing a diff
 * ---------------------------------------------------------------------- */

typedef struct differ {
    kd__buf *out;  /* the patch: "[" op "," op ... */
    kd__buf path;  /* JSON Pointer of the value being compared */
    size_t nops;
} differ;

static int emit(differ *d, const char *op, const kd__jnode *value)
{
    int rc;
    if ((d->nops++ && (rc = kd__buf_putc(d->out, ',')) != KD_OK) ||
        (rc = kd__buf_puts(d->out, "{\"op\":\"")) != KD_OK || (rc = kd__buf_puts(d->out, op)) != KD_OK ||
        (rc = kd__buf_puts(d->out, "\",\"path\":")) != KD_OK ||
        (rc = kd__json_write_string(d->out, d->path.data ? d->path.data : "", d->path.len)) != KD_OK)
        return rc;
    if (value && ((rc = kd__buf_puts(d->out, ",\"value\":")) != KD_OK || (rc = kd__jdom_write(d->out, value)) != KD_OK))
        return rc;
    return kd__buf_putc(d->out, '}');
}

/* Append "/" and the token, escaped (~ -> ~0, / -> ~1). */
static int push_name(differ *d, const char *tok, size_t len)
{
    int rc = kd__buf_putc(&d->path, '/');
    for (size_t i = 0; rc == KD_OK && i < len; i++) {
        if (tok[i] == '~')
            rc = kd__buf_append(&d->path, "~0", 2);
        else if (tok[i] == '/')
            rc = kd__buf_append(&d->path, "~1", 2);
        else
            rc = kd__buf_putc(&d->path, tok[i]);
    }
    return rc;
}

static int push_index(differ *d, size_t i)
{
    return kd__buf_printf(&d->path, "/%zu", i);
}

static void pop(differ *d, size_t len)
{
    d->path.len = len;
    if (d->path.data)
        d->path.data[len] = '\0';
}

static int diff_node(differ *d, const kd__jnode *a, const kd__jnode *b);

static int diff_object(differ *d, const kd__jnode *a, const kd__jnode *b)
{
    size_t i = 0, j = 0, mark = d->path.len;
    int rc = KD_OK;
    while (rc == KD_OK && (i < a->len || j < b->len)) {
        const kd__jmember *x = i < a->len ? &a->u.members[i] : NULL;
        const kd__jmember *y = j < b->len ? &b->u.members[j] : NULL;
        int c = !x ? 1 : !y ? -1 : name_cmp(x->name, x->name_len, y->name, y->name_len);
        if (c < 0) {
            if ((rc = push_name(d, x->name, x->name_len)) == KD_OK)
                rc = emit(d, "remove", NULL);
            i++;
        } else if (c > 0) {
            if ((rc = push_name(d, y->name, y->name_len)) == KD_OK)
                rc = emit(d, "add", y->value);
            j++;
        } else {
            if ((rc = push_name(d, x->name, x->name_len)) == KD_OK)
                rc = diff_node(d, x->value, y->value);
            i++, j++;
        }
        pop(d, mark);
    }
    return rc;
}

/* Elements of an array as canonical text, with a hash each, for cheap
 * equality tests while aligning. */
typedef struct items_text {
    kd__buf text;
    size_t *off; /* n + 1 offsets into text */
    uint64_t *hash;
} items_text;

static int items_text_build(const kd__jnode *arr, items_text *t)
{
    memset(t, 0, sizeof *t);
    t->off = malloc((arr->len + 1) * sizeof *t->off);
    t->hash = malloc((arr->len + 1) * sizeof *t->hash);
    if (!t->off || !t->hash)
        return KD_ENOMEM;
    t->off[0] = 0;
    for (size_t i = 0; i < arr->len; i++) {
        int rc = kd__jdom_write(&t->text, arr->u.items[i]);
        if (rc != KD_OK)
            return rc;
        t->off[i + 1] = t->text.len;
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        for (size_t k = t->off[i]; k < t->off[i + 1]; k++)
            h = (h ^ (unsigned char)t->text.data[k]) * 1099511628211ull;
        t->hash[i] = h;
    }
    return KD_OK;
}

static void items_text_free(items_text *t)
{
    kd__buf_free(&t->text);
    free(t->off);
    free(t->hash);
}

static int items_eq(const items_text *a, size_t i, const items_text *b, size_t j)
{
    size_t la = a->off[i + 1] - a->off[i], lb = b->off[j + 1] - b->off[j];
    return a->hash[i] == b->hash[j] && la == lb && memcmp(a->text.data + a->off[i], b->text.data + b->off[j], la) == 0;
}

/* One run of unmatched elements: a[ai .. ai+k) became b[bj .. bj+m), at
 * index *idx of the array as patched so far. Pairs are diffed in place,
 * then the surplus is removed or added. */
static int flush_run(differ *d, const kd__jnode *a, size_t ai, size_t k, const kd__jnode *b, size_t bj, size_t m,
                     size_t *idx)
{
    size_t mark = d->path.len, pairs = k < m ? k : m;
    int rc = KD_OK;
    for (size_t t = 0; rc == KD_OK && t < pairs; t++) {
        if ((rc = push_index(d, (*idx)++)) == KD_OK)
            rc = diff_node(d, a->u.items[ai + t], b->u.items[bj + t]);
        pop(d, mark);
    }
    for (size_t t = pairs; rc == KD_OK && t < k; t++) {
        if ((rc = push_index(d, *idx)) == KD_OK)
            rc = emit(d, "remove", NULL);
        pop(d, mark);
    }
    for (size_t t = pairs; rc == KD_OK && t < m; t++) {
        if ((rc = push_index(d, (*idx)++)) == KD_OK)
            rc = emit(d, "add", b->u.items[bj + t]);
        pop(d, mark);
    }
    return rc;
}

static int diff_array(differ *d, const kd__jnode *a, const kd__jnode *b)
{
    items_text ta, tb;
    uint32_t *lcs = NULL;
    int rc;
    if ((rc = items_text_build(a, &ta)) != KD_OK || (rc = items_text_build(b, &tb)) != KD_OK)
        goto done;

    size_t na = a->len, nb = b->len, pre = 0, suf = 0;
    while (pre < na && pre < nb && items_eq(&ta, pre, &tb, pre))
        pre++;
    while (suf < na - pre && suf < nb - pre && items_eq(&ta, na - 1 - suf, &tb, nb - 1 - suf))
        suf++;
    size_t ma = na - pre - suf, mb = nb - pre - suf, idx = pre;

    if (ma == 0 || mb == 0 || (ma + 1) > LCS_MAX_CELLS / (mb + 1)) {
        rc = flush_run(d, a, pre, ma, b, pre, mb, &idx);
        goto done;
    }
    /* lcs[i][j]: length of the longest common subsequence of the middles'
     * suffixes a[pre+i..], b[pre+j..]. */
    size_t w = mb + 1;
    lcs = calloc((ma + 1) * w, sizeof *lcs);
    if (!lcs) {
        rc = KD_ENOMEM;
        goto done;
    }
    for (size_t i = ma; i-- > 0;)
        for (size_t j = mb; j-- > 0;) {
            if (items_eq(&ta, pre + i, &tb, pre + j))
                lcs[i * w + j] = lcs[(i + 1) * w + j + 1] + 1;
            else {
                uint32_t x = lcs[(i + 1) * w + j], y = lcs[i * w + j + 1];
                lcs[i * w + j] = x > y ? x : y;
            }
        }
    size_t i = 0, j = 0, i0 = 0, j0 = 0;
    rc = KD_OK;
    while (rc == KD_OK && (i < ma || j < mb)) {
        if (i < ma && j < mb && items_eq(&ta, pre + i, &tb, pre + j)) {
            rc = flush_run(d, a, pre + i0, i - i0, b, pre + j0, j - j0, &idx);
            idx++, i++, j++;
            i0 = i, j0 = j;
        } else if (j >= mb || (i < ma && lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
            i++;
        } else {
            j++;
        }
    }
    if (rc == KD_OK)
        rc = flush_run(d, a, pre + i0, i - i0, b, pre + j0, j - j0, &idx);
done:
    free(lcs);
    items_text_free(&ta);
    items_text_free(&tb);
    return rc;
}

static int diff_node(differ *d, const kd__jnode *a, const kd__jnode *b)
{
    if (a->type == KD__J_OBJECT && b->type == KD__J_OBJECT)
        return diff_object(d, a, b);
    if (a->type == KD__J_ARRAY && b->type == KD__J_ARRAY)
        return diff_array(d, a, b);
    if (a->type == b->type && a->type < KD__J_ARRAY && kd__jdom_equal(a, b))
        return KD_OK;
    return emit(d, "replace", b);
}

KD_EXPORT int kd_json_diff(const char *a, size_t alen, const char *b, size_t blen, char **patch, size_t *patchlen,
                           char *errbuf, size_t errlen)
{
    kd__buf out = KD__BUF_INIT;
    kd__jnode *ta = NULL, *tb = NULL;
    differ d;
    int rc;

    memset(&d, 0, sizeof d);
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!patch) {
        set_err(errbuf, errlen, "kd_json_diff: patch is NULL");
        return KD_EINVALID;
    }
    if ((rc = load("first document", a, alen, &ta, errbuf, errlen)) != KD_OK ||
        (rc = load("second document", b, blen, &tb, errbuf, errlen)) != KD_OK)
        goto done;
    d.out = &out;
    if ((rc = kd__buf_putc(&out, '[')) != KD_OK || (rc = diff_node(&d, ta, tb)) != KD_OK)
        goto done;
    rc = kd__buf_putc(&out, ']');
done:
    kd__buf_free(&d.path);
    kd__jdom_free(ta);
    kd__jdom_free(tb);
    return finish(rc, &out, patch, patchlen, errbuf, errlen);
}
