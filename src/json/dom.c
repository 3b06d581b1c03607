/*
 * dom.c — the JSON tree of dom.h: parsing canonical JSON into nodes,
 * copying, comparing and writing them back as canonical JSON.
 *
 * The parser is a loop over an explicit stack of open containers (at most
 * KD_JSON_MAX_DEPTH), so no input can exhaust the C stack. The recursive
 * helpers (free, copy, equal, depth, write) follow the tree, whose depth
 * the parser bounds and patch.c checks before every insertion.
 */
#include "dom.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "korudelta.h"

/* ------------------------------------------------------------------------
 * Nodes
 * ---------------------------------------------------------------------- */

static kd__jnode *node_new(kd__jtype type)
{
    kd__jnode *n = calloc(1, sizeof *n);
    if (n)
        n->type = type;
    return n;
}

void kd__jdom_free(kd__jnode *n)
{
    if (!n)
        return;
    switch (n->type) {
    case KD__J_NUMBER:
    case KD__J_STRING:
        free(n->u.text);
        break;
    case KD__J_ARRAY:
        for (size_t i = 0; i < n->len; i++)
            kd__jdom_free(n->u.items[i]);
        free(n->u.items);
        break;
    case KD__J_OBJECT:
        for (size_t i = 0; i < n->len; i++) {
            free(n->u.members[i].name);
            kd__jdom_free(n->u.members[i].value);
        }
        free(n->u.members);
        break;
    default:
        break;
    }
    free(n);
}

static char *dup_bytes(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p) {
        if (len)
            memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

kd__jnode *kd__jdom_copy(const kd__jnode *n)
{
    kd__jnode *c = node_new(n->type);
    if (!c)
        return NULL;
    switch (n->type) {
    case KD__J_NUMBER:
    case KD__J_STRING:
        if (!(c->u.text = dup_bytes(n->u.text, n->len)))
            goto fail;
        c->len = n->len;
        break;
    case KD__J_ARRAY:
        if (n->len) {
            if (!(c->u.items = calloc(n->len, sizeof *c->u.items)))
                goto fail;
            c->cap = n->len;
            for (size_t i = 0; i < n->len; i++, c->len++)
                if (!(c->u.items[i] = kd__jdom_copy(n->u.items[i])))
                    goto fail;
        }
        break;
    case KD__J_OBJECT:
        if (n->len) {
            if (!(c->u.members = calloc(n->len, sizeof *c->u.members)))
                goto fail;
            c->cap = n->len;
            for (size_t i = 0; i < n->len; i++) {
                kd__jmember *d = &c->u.members[i];
                const kd__jmember *s = &n->u.members[i];
                c->len++;
                if (!(d->name = dup_bytes(s->name, s->name_len)))
                    goto fail;
                d->name_len = s->name_len;
                if (!(d->value = kd__jdom_copy(s->value)))
                    goto fail;
            }
        }
        break;
    default:
        break;
    }
    return c;
fail:
    kd__jdom_free(c);
    return NULL;
}

static int bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

int kd__jdom_equal(const kd__jnode *a, const kd__jnode *b)
{
    if (a->type != b->type || (a->type >= KD__J_NUMBER && a->len != b->len))
        return 0;
    switch (a->type) {
    case KD__J_NUMBER:
    case KD__J_STRING:
        return bytes_eq(a->u.text, a->len, b->u.text, b->len);
    case KD__J_ARRAY:
        for (size_t i = 0; i < a->len; i++)
            if (!kd__jdom_equal(a->u.items[i], b->u.items[i]))
                return 0;
        return 1;
    case KD__J_OBJECT:
        for (size_t i = 0; i < a->len; i++) {
            const kd__jmember *x = &a->u.members[i], *y = &b->u.members[i];
            if (!bytes_eq(x->name, x->name_len, y->name, y->name_len) || !kd__jdom_equal(x->value, y->value))
                return 0;
        }
        return 1;
    default:
        return 1;
    }
}

size_t kd__jdom_depth(const kd__jnode *n)
{
    size_t max = 0, d;
    if (n->type == KD__J_ARRAY) {
        for (size_t i = 0; i < n->len; i++)
            if ((d = kd__jdom_depth(n->u.items[i])) > max)
                max = d;
        return max + 1;
    }
    if (n->type == KD__J_OBJECT) {
        for (size_t i = 0; i < n->len; i++)
            if ((d = kd__jdom_depth(n->u.members[i].value)) > max)
                max = d;
        return max + 1;
    }
    return 0;
}

size_t kd__jdom_weight(const kd__jnode *n)
{
    size_t w = 2;
    switch (n->type) {
    case KD__J_NUMBER:
        return n->len;
    case KD__J_STRING:
        return n->len + 2;
    case KD__J_ARRAY:
        for (size_t i = 0; i < n->len; i++)
            w += kd__jdom_weight(n->u.items[i]) + 1;
        return w;
    case KD__J_OBJECT:
        for (size_t i = 0; i < n->len; i++)
            w += n->u.members[i].name_len + 4 + kd__jdom_weight(n->u.members[i].value);
        return w;
    default:
        return 4;
    }
}

int kd__jdom_write(kd__buf *out, const kd__jnode *n)
{
    int rc;
    switch (n->type) {
    case KD__J_NULL:
        return kd__buf_append(out, "null", 4);
    case KD__J_FALSE:
        return kd__buf_append(out, "false", 5);
    case KD__J_TRUE:
        return kd__buf_append(out, "true", 4);
    case KD__J_NUMBER:
        return kd__buf_append(out, n->u.text, n->len);
    case KD__J_STRING:
        return kd__json_write_string(out, n->u.text, n->len);
    case KD__J_ARRAY:
        if ((rc = kd__buf_putc(out, '[')) != KD_OK)
            return rc;
        for (size_t i = 0; i < n->len; i++) {
            if (i && (rc = kd__buf_putc(out, ',')) != KD_OK)
                return rc;
            if ((rc = kd__jdom_write(out, n->u.items[i])) != KD_OK)
                return rc;
        }
        return kd__buf_putc(out, ']');
    case KD__J_OBJECT:
        if ((rc = kd__buf_putc(out, '{')) != KD_OK)
            return rc;
        for (size_t i = 0; i < n->len; i++) {
            const kd__jmember *m = &n->u.members[i];
            if (i && (rc = kd__buf_putc(out, ',')) != KD_OK)
                return rc;
            if ((rc = kd__json_write_string(out, m->name, m->name_len)) != KD_OK ||
                (rc = kd__buf_putc(out, ':')) != KD_OK || (rc = kd__jdom_write(out, m->value)) != KD_OK)
                return rc;
        }
        return kd__buf_putc(out, '}');
    }
    return KD_EINVALID;
}

/* ------------------------------------------------------------------------
 * Containers
 * ---------------------------------------------------------------------- */

/* Byte-wise order of names; a name that is a prefix of another comes first. */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

size_t kd__jdom_find(const kd__jnode *obj, const char *name, size_t len, size_t *pos)
{
    size_t lo = 0, hi = obj->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const kd__jmember *m = &obj->u.members[mid];
        int c = name_cmp(m->name, m->name_len, name, len);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return (size_t)-1;
}

/* Room for one more item in a container whose items are `size` bytes. */
static int grow(kd__jnode *n, void **items, size_t size)
{
    if (n->len < n->cap)
        return KD_OK;
    size_t cap = n->cap ? n->cap * 2 : 4;
    if (cap > SIZE_MAX / size)
        return KD_ENOMEM;
    void *p = realloc(*items, cap * size);
    if (!p)
        return KD_ENOMEM;
    *items = p;
    n->cap = cap;
    return KD_OK;
}

int kd__jdom_set(kd__jnode *obj, const char *name, size_t len, kd__jnode *value)
{
    size_t pos = 0;
    size_t i = kd__jdom_find(obj, name, len, &pos);
    if (i != (size_t)-1) {
        kd__jdom_free(obj->u.members[i].value);
        obj->u.members[i].value = value;
        return KD_OK;
    }
    char *copy = dup_bytes(name, len);
    if (!copy || grow(obj, (void **)&obj->u.members, sizeof *obj->u.members) != KD_OK) {
        free(copy);
        return KD_ENOMEM;
    }
    memmove(&obj->u.members[pos + 1], &obj->u.members[pos], (obj->len - pos) * sizeof *obj->u.members);
    obj->u.members[pos].name = copy;
    obj->u.members[pos].name_len = len;
    obj->u.members[pos].value = value;
    obj->len++;
    return KD_OK;
}

kd__jnode *kd__jdom_take_member(kd__jnode *obj, size_t i)
{
    kd__jnode *v = obj->u.members[i].value;
    free(obj->u.members[i].name);
    memmove(&obj->u.members[i], &obj->u.members[i + 1], (obj->len - i - 1) * sizeof *obj->u.members);
    obj->len--;
    return v;
}

int kd__jdom_insert(kd__jnode *arr, size_t i, kd__jnode *value)
{
    if (grow(arr, (void **)&arr->u.items, sizeof *arr->u.items) != KD_OK)
        return KD_ENOMEM;
    memmove(&arr->u.items[i + 1], &arr->u.items[i], (arr->len - i) * sizeof *arr->u.items);
    arr->u.items[i] = value;
    arr->len++;
    return KD_OK;
}

kd__jnode *kd__jdom_take_item(kd__jnode *arr, size_t i)
{
    kd__jnode *v = arr->u.items[i];
    memmove(&arr->u.items[i], &arr->u.items[i + 1], (arr->len - i - 1) * sizeof *arr->u.items);
    arr->len--;
    return v;
}

/* ------------------------------------------------------------------------
 * Parsing canonical JSON
 * ---------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Parse the string literal at *p (on its '"'); *out receives the unescaped
 * bytes (malloc'd, NUL-terminated). KD_EINVALID or KD_ENOMEM on failure. */
static int parse_string(const char **p, const char *end, char **out, size_t *outlen)
{
    const char *s = *p + 1;
    size_t n = 0;
    /* The unescaped text is never longer than the literal. */
    const char *q = s;
    while (q < end && *q != '"')
        q += (*q == '\\' && end - q > 1) ? 2 : 1;
    if (q >= end)
        return KD_EINVALID;
    char *buf = malloc((size_t)(q - s) + 1);
    if (!buf)
        return KD_ENOMEM;
    while (s < q) {
        char c = *s++;
        if (c != '\\') {
            buf[n++] = c;
            continue;
        }
        if (s >= q)
            goto bad;
        c = *s++;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            buf[n++] = c;
            break;
        case 'b':
            buf[n++] = '\b';
            break;
        case 'f':
            buf[n++] = '\f';
            break;
        case 'n':
            buf[n++] = '\n';
            break;
        case 'r':
            buf[n++] = '\r';
            break;
        case 't':
            buf[n++] = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(s, q, &cp) != 0)
                goto bad;
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (q - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, q, &lo) != 0 || lo < 0xDC00 ||
                    lo >= 0xE000)
                    goto bad;
                s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                goto bad;
            }
            /* An escape is at least 6 bytes and encodes at most 4. */
            if (cp < 0x80) {
                buf[n++] = (char)cp;
            } else if (cp < 0x800) {
                buf[n++] = (char)(0xC0 | cp >> 6);
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                buf[n++] = (char)(0xE0 | cp >> 12);
                buf[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                buf[n++] = (char)(0xF0 | cp >> 18);
                buf[n++] = (char)(0x80 | (cp >> 12 & 0x3F));
                buf[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            goto bad;
        }
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    *p = q + 1;
    return KD_OK;
bad:
    free(buf);
    return KD_EINVALID;
}

/* Put v where the parser is: as the root, the next element of the open
 * array, or the value of the open object's last member. */
static int attach(kd__jnode **root, kd__jnode **stack, size_t depth, kd__jnode *v)
{
    if (depth == 0) {
        *root = v;
        return KD_OK;
    }
    kd__jnode *top = stack[depth - 1];
    if (top->type == KD__J_ARRAY) {
        if (grow(top, (void **)&top->u.items, sizeof *top->u.items) != KD_OK)
            return KD_ENOMEM;
        top->u.items[top->len++] = v;
    } else {
        top->u.members[top->len - 1].value = v;
    }
    return KD_OK;
}

/* Read `"name":` at *p and open a member for it (value NULL for now). */
static int open_member(kd__jnode *obj, const char **p, const char *end)
{
    char *name;
    size_t len;
    if (*p >= end || **p != '"')
        return KD_EINVALID;
    int rc = parse_string(p, end, &name, &len);
    if (rc != KD_OK)
        return rc;
    if (*p >= end || **p != ':' || grow(obj, (void **)&obj->u.members, sizeof *obj->u.members) != KD_OK) {
        free(name);
        return *p >= end || **p != ':' ? KD_EINVALID : KD_ENOMEM;
    }
    (*p)++;
    kd__jmember *m = &obj->u.members[obj->len++];
    m->name = name;
    m->name_len = len;
    m->value = NULL;
    return KD_OK;
}

static int is_number_byte(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

int kd__jdom_parse(const char *in, size_t len, kd__jnode **out)
{
    kd__jnode *stack[KD_JSON_MAX_DEPTH];
    kd__jnode *root = NULL;
    size_t depth = 0;
    const char *p = in, *end = in + len;
    int rc = KD_EINVALID;

    *out = NULL;
    for (;;) {
        /* A value starts at p. */
        if (p >= end)
            goto fail;
        kd__jnode *v;
        char c = *p;
        if (c == '{' || c == '[') {
            if (depth == KD_JSON_MAX_DEPTH)
                goto fail;
            if (!(v = node_new(c == '{' ? KD__J_OBJECT : KD__J_ARRAY)))
                goto nomem;
            if (attach(&root, stack, depth, v) != KD_OK) {
                kd__jdom_free(v);
                goto nomem;
            }
            stack[depth++] = v;
            p++;
            char close = c == '{' ? '}' : ']';
            if (p < end && *p == close) {
                p++;
                depth--;
            } else {
                if (c == '{' && (rc = open_member(v, &p, end)) != KD_OK)
                    goto fail;
                continue;
            }
        } else {
            if (c == '"') {
                v = node_new(KD__J_STRING);
                if (!v)
                    goto nomem;
                if ((rc = parse_string(&p, end, &v->u.text, &v->len)) != KD_OK) {
                    free(v);
                    goto fail;
                }
            } else if (c == '-' || (c >= '0' && c <= '9')) {
                const char *s = p;
                while (p < end && is_number_byte(*p))
                    p++;
                v = node_new(KD__J_NUMBER);
                if (!v || !(v->u.text = dup_bytes(s, (size_t)(p - s)))) {
                    free(v);
                    goto nomem;
                }
                v->len = (size_t)(p - s);
            } else if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
                v = node_new(KD__J_NULL), p += 4;
            } else if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
                v = node_new(KD__J_TRUE), p += 4;
            } else if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
                v = node_new(KD__J_FALSE), p += 5;
            } else {
                goto fail;
            }
            if (!v)
                goto nomem;
            if (attach(&root, stack, depth, v) != KD_OK) {
                kd__jdom_free(v);
                goto nomem;
            }
        }
        /* After a value: close containers, or find the next value. */
        for (;;) {
            if (depth == 0) {
                if (p != end)
                    goto fail;
                *out = root;
                return KD_OK;
            }
            kd__jnode *top = stack[depth - 1];
            if (p >= end)
                goto fail;
            if (*p == ',') {
                p++;
                if (top->type == KD__J_OBJECT && (rc = open_member(top, &p, end)) != KD_OK)
                    goto fail;
                break;
            }
            if (*p != (top->type == KD__J_OBJECT ? '}' : ']'))
                goto fail;
            p++;
            depth--;
        }
    }
nomem:
    rc = KD_ENOMEM;
fail:
    kd__jdom_free(root);
    return rc == KD_OK ? KD_EINVALID : rc;
}
