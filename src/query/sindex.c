/*
 * sindex.c — secondary indexes: definitions in the log, AVL trees in memory.
 *
 * A definition is a write to the reserved namespace _kd.indexes whose key
 * is the canonical JSON array ["<namespace>","<path>"] and whose value is
 * {"field":"<path>","namespace":"<namespace>"}; dropping deletes that key.
 * Those writes advance the views subsystem's root (format.h).
 *
 * Trees are ordered by (field value in the total order of jv.h, key
 * pointer): each live key with the field has exactly one entry. The commit
 * hook removes a key's old entry and inserts its new one, under qs->lock
 * held for writing; queries walk the trees under it held for reading.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../db_int.h"
#include "../json/json.h"
#include "sindex.h"

typedef struct inode {
    struct inode *l, *r;
    int h;
    const kd__key *key;
    uint32_t len;
    char val[]; /* canonical text of the field value */
} inode;

struct kd__sindex {
    char *ns;
    char *field; /* path text as given at creation (canonical path text) */
    kd__path path;
    int64_t created;
    int64_t last_ts; /* timestamp of the last write to ns applied here */
    inode *root;
    uint64_t entries;
};

/* ------------------------------------------------------------------------
 * AVL tree
 * ---------------------------------------------------------------------- */

static int height(const inode *n)
{
    return n ? n->h : 0;
}

static void fix(inode *n)
{
    int a = height(n->l), b = height(n->r);
    n->h = (a > b ? a : b) + 1;
}

static inode *rot_right(inode *n)
{
    inode *l = n->l;
    n->l = l->r;
    l->r = n;
    fix(n);
    fix(l);
    return l;
}

static inode *rot_left(inode *n)
{
    inode *r = n->r;
    n->r = r->l;
    r->l = n;
    fix(n);
    fix(r);
    return r;
}

static inode *balance(inode *n)
{
    fix(n);
    int d = height(n->l) - height(n->r);
    if (d > 1) {
        if (height(n->l->l) < height(n->l->r))
            n->l = rot_left(n->l);
        return rot_right(n);
    }
    if (d < -1) {
        if (height(n->r->r) < height(n->r->l))
            n->r = rot_right(n->r);
        return rot_left(n);
    }
    return n;
}

static int entry_cmp(kd__jv v, const kd__key *k, const inode *n)
{
    int c = kd__jv_cmp(v, (kd__jv){n->val, n->len});
    if (c)
        return c;
    return k < n->key ? -1 : k > n->key;
}

static inode *tree_insert(inode *n, inode *x)
{
    if (!n)
        return x;
    if (entry_cmp((kd__jv){x->val, x->len}, x->key, n) < 0)
        n->l = tree_insert(n->l, x);
    else
        n->r = tree_insert(n->r, x);
    return balance(n);
}

static inode *take_min(inode *n, inode **min)
{
    if (!n->l) {
        *min = n;
        return n->r;
    }
    n->l = take_min(n->l, min);
    return balance(n);
}

/* Remove the entry (v, k); *gone receives it (NULL if absent). */
static inode *tree_remove(inode *n, kd__jv v, const kd__key *k, inode **gone)
{
    if (!n)
        return NULL;
    int c = entry_cmp(v, k, n);
    if (c < 0) {
        n->l = tree_remove(n->l, v, k, gone);
    } else if (c > 0) {
        n->r = tree_remove(n->r, v, k, gone);
    } else {
        *gone = n;
        if (!n->l)
            return n->r;
        if (!n->r)
            return n->l;
        inode *m;
        inode *r = take_min(n->r, &m);
        m->l = n->l;
        m->r = r;
        return balance(m);
    }
    return balance(n);
}

static void tree_free(inode *n)
{
    while (n) {
        tree_free(n->l);
        inode *r = n->r;
        free(n);
        n = r;
    }
}

static int ix_add(kd__sindex *ix, kd__jv v, const kd__key *k)
{
    inode *x = malloc(sizeof *x + v.len);
    if (!x)
        return KD_ENOMEM;
    x->l = x->r = NULL;
    x->h = 1;
    x->key = k;
    x->len = (uint32_t)v.len;
    memcpy(x->val, v.p, v.len);
    ix->root = tree_insert(ix->root, x);
    ix->entries++;
    return KD_OK;
}

static void ix_remove(kd__sindex *ix, kd__jv v, const kd__key *k)
{
    inode *gone = NULL;
    ix->root = tree_remove(ix->root, v, k, &gone);
    if (gone) {
        free(gone);
        ix->entries--;
    }
}

/* ------------------------------------------------------------------------
 * Ranges: which entries can satisfy one filter test
 * ---------------------------------------------------------------------- */

/* Type classes in the order of jv.h: false and true are one class. */
static int type_class(kd__jv v)
{
    switch (kd__jv_type(v)) {
    case KD__J_NULL:
        return 1;
    case KD__J_FALSE:
    case KD__J_TRUE:
        return 2;
    case KD__J_NUMBER:
        return 3;
    case KD__J_STRING:
        return 4;
    case KD__J_ARRAY:
        return 5;
    default:
        return 6;
    }
}

typedef struct range {
    kd__fop op; /* EQ, GT, GTE, LT, LTE */
    kd__jv lit;
    int cls;
} range;

/* -1: the entry sorts below the range; 0: inside; 1: above. Monotone in
 * the tree's order, so whole subtrees can be skipped. */
static int range_pos(const range *r, kd__jv e)
{
    int cls = type_class(e);
    if (cls != r->cls)
        return cls < r->cls ? -1 : 1;
    int c = kd__jv_cmp_value(e, r->lit);
    switch (r->op) {
    case KD__F_EQ:
        return c < 0 ? -1 : c > 0;
    case KD__F_GT:
        return c <= 0 ? -1 : 0;
    case KD__F_GTE:
        return c < 0 ? -1 : 0;
    case KD__F_LT:
        return c >= 0 ? 1 : 0;
    default: /* LTE */
        return c > 0 ? 1 : 0;
    }
}

typedef struct keylist {
    const kd__key **v;
    size_t n, cap;
} keylist;

static int collect(const inode *n, const range *r, keylist *out)
{
    while (n) {
        int pos = range_pos(r, (kd__jv){n->val, n->len});
        if (pos < 0) {
            n = n->r;
            continue;
        }
        if (pos > 0) {
            n = n->l;
            continue;
        }
        int rc = collect(n->l, r, out);
        if (rc)
            return rc;
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 64;
            const kd__key **v = realloc(out->v, cap * sizeof *v);
            if (!v)
                return KD_ENOMEM;
            out->v = v;
            out->cap = cap;
        }
        out->v[out->n++] = n->key;
        n = n->r;
    }
    return KD_OK;
}

static int paths_equal(const kd__path *a, const kd__path *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->steps[i].name_len != b->steps[i].name_len ||
            memcmp(a->steps[i].name, b->steps[i].name, a->steps[i].name_len))
            return 0;
    return 1;
}

static int scalar(kd__jv v)
{
    kd__jtype t = kd__jv_type(v);
    return t != KD__J_ARRAY && t != KD__J_OBJECT;
}

/* How well a test can use an index: 2 eq/in, 1 range, 0 not at all. */
static int usable(const kd__fnode *t)
{
    kd__jv lit = {t->value, t->value_len};
    switch (t->op) {
    case KD__F_EQ:
        return scalar(lit) ? 2 : 0;
    case KD__F_IN: {
        size_t pos = 0;
        kd__jv item;
        while (kd__jv_next_item(lit, &pos, &item))
            if (!scalar(item))
                return 0;
        return 2;
    }
    case KD__F_GT:
    case KD__F_GTE:
    case KD__F_LT:
    case KD__F_LTE: {
        kd__jtype ty = kd__jv_type(lit);
        return ty == KD__J_NUMBER || ty == KD__J_STRING || ty == KD__J_FALSE || ty == KD__J_TRUE;
    }
    default:
        return 0;
    }
}

static int cmp_ptr(const void *a, const void *b)
{
    const kd__key *x = *(const kd__key *const *)a, *y = *(const kd__key *const *)b;
    return x < y ? -1 : x > y;
}

static int lookup(const kd__sindex *ix, const kd__fnode *t, keylist *out)
{
    kd__jv lit = {t->value, t->value_len};
    if (t->op != KD__F_IN) {
        range r = {t->op, lit, type_class(lit)};
        return collect(ix->root, &r, out);
    }
    size_t pos = 0, items = 0;
    kd__jv item;
    while (kd__jv_next_item(lit, &pos, &item)) {
        range r = {KD__F_EQ, item, type_class(item)};
        int rc = collect(ix->root, &r, out);
        if (rc)
            return rc;
        items++;
    }
    if (items > 1 && out->n > 1) {
        /* [1, 1.0] names the same entries twice. */
        qsort(out->v, out->n, sizeof *out->v, cmp_ptr);
        size_t w = 1;
        for (size_t i = 1; i < out->n; i++)
            if (out->v[i] != out->v[w - 1])
                out->v[w++] = out->v[i];
        out->n = w;
    }
    return KD_OK;
}

int kd__sindex_candidates(kd_db *db, const char *ns, const kd_filter *f, const kd__key ***keys, size_t *n,
                          int64_t *snapshot)
{
    kd__qstate *qs = db->qs;
    if (!qs || !f || !f->root)
        return 0;
    pthread_rwlock_rdlock(&qs->lock);
    const kd__fnode *best = NULL;
    const kd__sindex *best_ix = NULL;
    int best_score = 0;
    const kd__fnode *root = f->root;
    size_t nt = root->op == KD__F_AND ? root->n_kids : 1;
    for (size_t i = 0; i < nt; i++) {
        const kd__fnode *t = root->op == KD__F_AND ? root->kids[i] : root;
        int score = usable(t);
        if (score <= best_score)
            continue;
        for (size_t j = 0; j < qs->n_idx; j++) {
            const kd__sindex *ix = qs->idx[j];
            if (!strcmp(ix->ns, ns) && paths_equal(&ix->path, &t->path)) {
                best = t;
                best_ix = ix;
                best_score = score;
                break;
            }
        }
    }
    int rc = 0;
    /* The index holds every write applied to ns; readers may only see up
     * to visible_ts. When a newer write is applied but not yet visible
     * (sync=always, before its fsync), the index is ahead: scan instead. */
    int64_t vis = kd__visible(db);
    if (best && best_ix->last_ts <= vis) {
        keylist l = {NULL, 0, 0};
        rc = lookup(best_ix, best, &l);
        if (rc) {
            free(l.v);
        } else {
            *keys = l.v;
            *n = l.n;
            *snapshot = vis;
            rc = 1;
        }
    }
    pthread_rwlock_unlock(&qs->lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * Maintenance
 * ---------------------------------------------------------------------- */

void kd__sindex_on_write(kd_db *db, const kd__applied *w)
{
    kd__qstate *qs = db->qs;
    if (!qs || !qs->n_idx)
        return;
    pthread_rwlock_wrlock(&qs->lock);
    for (size_t i = 0; i < qs->n_idx; i++) {
        kd__sindex *ix = qs->idx[i];
        if (strcmp(ix->ns, w->ns))
            continue;
        ix->last_ts = w->rec->ts;
        if (w->prev) {
            kd__jv old = kd__jv_at((kd__jv){w->prev, w->prev_len}, &ix->path);
            if (old.p)
                ix_remove(ix, old, w->k);
        }
        if (w->value) {
            kd__jv now = kd__jv_at((kd__jv){w->value, w->value_len}, &ix->path);
            /* Out of memory here leaves the index short of one key; the
             * index is then wrong, so stop trusting it: drop its use by
             * marking it far ahead (queries scan instead). */
            if (now.p && ix_add(ix, now, w->k))
                ix->last_ts = INT64_MAX;
        }
    }
    pthread_rwlock_unlock(&qs->lock);
}

typedef struct build_ctx {
    kd__sindex *ix;
    int rc;
} build_ctx;

static int build_page(void *arg, const kd__scan_item *items, size_t n)
{
    build_ctx *b = arg;
    for (size_t i = 0; i < n; i++) {
        kd__jv v = kd__jv_at((kd__jv){items[i].value, items[i].value_len}, &b->ix->path);
        if (v.p && (b->rc = ix_add(b->ix, v, items[i].key)))
            return b->rc;
    }
    return KD_OK;
}

static void sindex_free(kd__sindex *ix)
{
    if (!ix)
        return;
    tree_free(ix->root);
    kd__path_free(&ix->path);
    free(ix->ns);
    free(ix->field);
    free(ix);
}

/* A new index over ns/field, filled from the current state. Called with
 * write_mu held, so no write slips between the fill and the hook. */
static int sindex_build(kd_db *db, const char *ns, const char *field, int64_t created, kd__sindex **out)
{
    kd__sindex *ix = calloc(1, sizeof *ix);
    if (!ix || !(ix->ns = strdup(ns)) || !(ix->field = strdup(field))) {
        sindex_free(ix);
        return KD_ENOMEM;
    }
    char err[256];
    int rc = kd__path_parse(field, strlen(field), &ix->path, err, sizeof err);
    if (rc) {
        sindex_free(ix);
        return rc;
    }
    ix->created = created;
    ix->last_ts = db->last_ts;
    build_ctx b = {ix, KD_OK};
    rc = kd__scan_raw_applied(db, ns, build_page, &b);
    if (rc) {
        sindex_free(ix);
        return rc;
    }
    *out = ix;
    return KD_OK;
}

static kd__qstate *qstate(kd_db *db)
{
    return db->qs;
}

static int register_index(kd__qstate *qs, kd__sindex *ix)
{
    if (qs->n_idx == qs->cap_idx) {
        size_t cap = qs->cap_idx ? qs->cap_idx * 2 : 8;
        kd__sindex **v = realloc(qs->idx, cap * sizeof *v);
        if (!v)
            return KD_ENOMEM;
        qs->idx = v;
        qs->cap_idx = cap;
    }
    qs->idx[qs->n_idx++] = ix;
    return KD_OK;
}

static ssize_t find_index(const kd__qstate *qs, const char *ns, const char *field)
{
    for (size_t i = 0; i < qs->n_idx; i++)
        if (!strcmp(qs->idx[i]->ns, ns) && !strcmp(qs->idx[i]->field, field))
            return (ssize_t)i;
    return -1;
}

/* ------------------------------------------------------------------------
 * Indexes defined but not built
 *
 * A definition whose index cannot be built (a value it covers cannot be
 * read) stays in the log, and the next open tries again. Until then it is
 * kept here with the reason, so that kd_index_list shows it and
 * kd_index_drop forgets it; queries never see it (they scan). Changed with
 * qs->lock held for writing, or at open, when nothing else runs.
 * ---------------------------------------------------------------------- */

struct kd__unbuilt {
    char *ns;
    char *field;
    int64_t created;
    char *why;
};

static void unbuilt_clear(struct kd__unbuilt *u)
{
    free(u->ns);
    free(u->field);
    free(u->why);
}

static int note_unbuilt(kd__qstate *qs, const char *ns, const char *field, int64_t created, const char *why)
{
    if (qs->n_unbuilt == qs->cap_unbuilt) {
        size_t cap = qs->cap_unbuilt ? qs->cap_unbuilt * 2 : 4;
        struct kd__unbuilt *v = realloc(qs->unbuilt, cap * sizeof *v);
        if (!v)
            return KD_ENOMEM;
        qs->unbuilt = v;
        qs->cap_unbuilt = cap;
    }
    struct kd__unbuilt u = {strdup(ns), strdup(field), created, strdup(why)};
    if (!u.ns || !u.field || !u.why) {
        unbuilt_clear(&u);
        return KD_ENOMEM;
    }
    qs->unbuilt[qs->n_unbuilt++] = u;
    return KD_OK;
}

static void forget_unbuilt(kd__qstate *qs, const char *ns, const char *field)
{
    for (size_t i = 0; i < qs->n_unbuilt; i++) {
        struct kd__unbuilt *u = &qs->unbuilt[i];
        if (!strcmp(u->ns, ns) && !strcmp(u->field, field)) {
            unbuilt_clear(u);
            memmove(u, u + 1, (qs->n_unbuilt - i - 1) * sizeof *u);
            qs->n_unbuilt--;
            return;
        }
    }
}

/* ------------------------------------------------------------------------
 * Definitions
 * ---------------------------------------------------------------------- */

/* The definition's key: ["ns","field"] as canonical JSON. */
static int def_key(const char *ns, const char *field, kd__buf *out)
{
    int rc = kd__buf_putc(out, '[');
    ns = kd__qns_local(ns); /* within its workspace's _kd.indexes */
    if (!rc)
        rc = kd__json_write_string(out, ns, strlen(ns));
    if (!rc)
        rc = kd__buf_putc(out, ',');
    if (!rc)
        rc = kd__json_write_string(out, field, strlen(field));
    if (!rc)
        rc = kd__buf_putc(out, ']');
    return rc;
}

/* Validate ns and field; *canon receives the path's canonical text. */
static int check_def(kd_db *db, const char *ns, const char *field, kd__buf *canon)
{
    if (!ns || !field)
        return kd__err(db, KD_EINVALID, "an index needs a namespace and a field");
    int rc = kd__check_names(db, ns, "-");
    if (rc)
        return rc;
    kd__path path;
    char err[256];
    if (kd__path_parse(field, strlen(field), &path, err, sizeof err))
        return kd__err(db, KD_EINVALID, "bad field path '%s': %s", field, err);
    if (path.n == 0) {
        kd__path_free(&path);
        return kd__err(db, KD_EINVALID, "bad field path '%s': empty", field);
    }
    rc = kd__path_write(canon, &path);
    kd__path_free(&path);
    return rc ? kd__err(db, rc, "out of memory") : KD_OK;
}

int kd_index_create(kd_db *db, const char *ns, const char *field)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    char defs_ns[KD__QNS_MAX];
    kd__buf canon = KD__BUF_INIT, key = KD__BUF_INIT, val = KD__BUF_INIT;
    int rc = check_def(db, ns, field, &canon);
    if (rc)
        return rc;
    kd__qstate *qs = qstate(db);
    pthread_mutex_lock(&qs->def_mu);
    pthread_rwlock_rdlock(&qs->lock);
    ssize_t at = find_index(qs, ns, canon.data);
    pthread_rwlock_unlock(&qs->lock);
    if (at >= 0) {
        rc = kd__err(db, KD_EEXISTS, "an index on %s.%s already exists", ns, canon.data);
        goto out;
    }
    if (def_key(ns, canon.data, &key) || kd__buf_puts(&val, "{\"field\":") ||
        kd__json_write_string(&val, canon.data, canon.len) || kd__buf_puts(&val, ",\"namespace\":") ||
        kd__json_write_string(&val, kd__qns_local(ns), strlen(kd__qns_local(ns))) || kd__buf_putc(&val, '}')) {
        rc = kd__err(db, KD_ENOMEM, "out of memory");
        goto out;
    }
    kd_version v;
    kd_write w = {kd__qns_sibling(ns, KD__NS_INDEXES, defs_ns), key.data, val.data, val.len, KD_EXPECT_ABSENT};
    kd__allow_reserved(1);
    rc = kd__commit(db, &w, 1, &v);
    kd__allow_reserved(0);
    if (rc == KD_ECONFLICT) {
        /* Defined, but not built at open: a value it covers could not be
         * read (kd__sindex_open logged which). */
        rc = kd__err(db, KD_EEXISTS, "an index on %s.%s is defined but is not built: a value it covers could not "
                     "be read (index list says why; verify reports it)", ns, canon.data);
        goto out;
    }
    if (rc)
        goto out;
    pthread_mutex_lock(&db->write_mu);
    kd__sindex *ix = NULL;
    kd__err(db, KD_OK, "%s", ""); /* so that a message read below is the build's */
    rc = sindex_build(db, ns, canon.data, v.timestamp, &ix);
    if (!rc) {
        pthread_rwlock_wrlock(&qs->lock);
        rc = register_index(qs, ix);
        pthread_rwlock_unlock(&qs->lock);
        if (rc)
            sindex_free(ix);
        else
            __atomic_add_fetch(&db->hooks, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&db->write_mu);
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", rc == KD_ECORRUPT && kd_errmsg(db)[0] ? kd_errmsg(db) : kd_strerror(rc));
        /* The definition is written: list the index as not built until
         * the next open tries again (without memory for that note it is
         * only missing from the list). */
        pthread_rwlock_wrlock(&qs->lock);
        note_unbuilt(qs, ns, canon.data, v.timestamp, why);
        pthread_rwlock_unlock(&qs->lock);
        rc = kd__err(db, rc, "index %s.%s is defined but could not be built (%s); it is built at the next open", ns,
                     canon.data, why);
    }
out:
    pthread_mutex_unlock(&qs->def_mu);
    kd__buf_free(&canon);
    kd__buf_free(&key);
    kd__buf_free(&val);
    return rc;
}

int kd_index_drop(kd_db *db, const char *ns, const char *field)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    char defs_ns[KD__QNS_MAX];
    kd__buf canon = KD__BUF_INIT, key = KD__BUF_INIT;
    int rc = check_def(db, ns, field, &canon);
    if (rc)
        return rc;
    kd__qstate *qs = qstate(db);
    pthread_mutex_lock(&qs->def_mu);
    if (def_key(ns, canon.data, &key)) {
        rc = kd__err(db, KD_ENOMEM, "out of memory");
        goto out;
    }
    kd__allow_reserved(1);
    kd__ws_internal(1);
    rc = kd_delete(db, ns ? kd__qns_sibling(ns, KD__NS_INDEXES, defs_ns) : KD__NS_INDEXES, key.data, NULL);
    kd__ws_internal(0);
    kd__allow_reserved(0);
    if (rc == KD_ENOTFOUND || rc == KD_EDELETED) {
        rc = kd__err(db, KD_ENOTFOUND, "no index on %s.%s", ns, canon.data);
        goto out;
    }
    if (rc)
        goto out;
    pthread_mutex_lock(&db->write_mu);
    pthread_rwlock_wrlock(&qs->lock);
    ssize_t at = find_index(qs, ns, canon.data);
    kd__sindex *gone = NULL;
    if (at >= 0) {
        gone = qs->idx[at];
        memmove(&qs->idx[at], &qs->idx[at + 1], (qs->n_idx - (size_t)at - 1) * sizeof *qs->idx);
        qs->n_idx--;
        __atomic_sub_fetch(&db->hooks, 1, __ATOMIC_RELEASE);
    } else {
        forget_unbuilt(qs, ns, canon.data);
    }
    pthread_rwlock_unlock(&qs->lock);
    pthread_mutex_unlock(&db->write_mu);
    sindex_free(gone);
out:
    pthread_mutex_unlock(&qs->def_mu);
    kd__buf_free(&canon);
    kd__buf_free(&key);
    return rc;
}

static int cmp_info(const void *a, const void *b)
{
    const kd_index_info *x = a, *y = b;
    int c = strcmp(x->ns, y->ns);
    return c ? c : strcmp(x->field, y->field);
}

void kd_index_list_free(kd_index_info *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        free(list[i].ns);
        free(list[i].field);
        free(list[i].error);
    }
    free(list);
}

int kd_index_list(kd_db *db, const char *ns, kd_index_info **out, size_t *n)
{
    if (!db || !out || !n)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    *out = NULL;
    *n = 0;
    kd__qstate *qs = qstate(db);
    pthread_rwlock_rdlock(&qs->lock);
    size_t total = qs->n_idx + qs->n_unbuilt;
    kd_index_info *l = calloc(total ? total : 1, sizeof *l);
    size_t k = 0;
    int rc = l ? KD_OK : KD_ENOMEM;
    for (size_t i = 0; i < total && !rc; i++) {
        const kd__sindex *ix = i < qs->n_idx ? qs->idx[i] : NULL;
        const struct kd__unbuilt *u = ix ? NULL : &qs->unbuilt[i - qs->n_idx];
        const char *qns = ix ? ix->ns : u->ns, *local;
        if ((ns && strcmp(ns, qns)) || !kd__ws_owns(ws_, qns, strlen(qns), &local))
            continue;
        l[k].ns = strdup(local);
        l[k].field = strdup(ix ? ix->field : u->field);
        l[k].entries = ix ? ix->entries : 0;
        l[k].created = ix ? ix->created : u->created;
        l[k].built = ix != NULL;
        l[k].error = strdup(ix ? "" : u->why);
        if (!l[k].ns || !l[k].field || !l[k].error)
            rc = KD_ENOMEM;
        k++;
    }
    pthread_rwlock_unlock(&qs->lock);
    if (rc) {
        kd_index_list_free(l, k);
        return kd__err(db, rc, "out of memory");
    }
    qsort(l, k, sizeof *l, cmp_info);
    *out = l;
    *n = k;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Open and close
 * ---------------------------------------------------------------------- */

typedef struct load_ctx {
    kd_db *db;
    int rc;
    char *err;
    size_t errlen;
} load_ctx;

static int load_page(void *arg, const kd__scan_item *items, size_t n)
{
    load_ctx *c = arg;
    kd_db *db = c->db;
    for (size_t i = 0; i < n; i++) {
        kd__jv def = {items[i].value, items[i].value_len};
        kd__jv f = kd__jv_member(def, "\"field\"", 7), s = kd__jv_member(def, "\"namespace\"", 11);
        kd__buf field = KD__BUF_INIT, ns = KD__BUF_INIT;
        int rc = KD_OK;
        if (!f.p || !s.p || kd__jv_type(f) != KD__J_STRING || kd__jv_type(s) != KD__J_STRING) {
            kd__log(db, KD_LOG_WARN, "index definition %s is malformed; ignored", items[i].key->name);
        } else if (!(rc = kd__jv_string(f, &field)) && !(rc = kd__jv_string(s, &ns)) &&
                   !(rc = kd__buf_putc(&field, '\0')) && !(rc = kd__buf_putc(&ns, '\0'))) {
            kd__sindex *ix = NULL;
            char q[KD__QNS_MAX];
            const kd__ns *defs = items[i].key->ns;
            const char *qns = ns.data;
            if (strcmp(defs->ws, KD__DEFAULT_WS)) {
                /* a workspace's index: its namespace is qualified */
                kd__buf tmp = KD__BUF_INIT;
                if (!(rc = kd__buf_printf(&tmp, "%s%c%s", defs->ws, KD__WS_SEP, ns.data)) && tmp.len < KD__QNS_MAX)
                    memcpy(q, tmp.data, tmp.len + 1), qns = q;
                kd__buf_free(&tmp);
            }
            if (!rc)
                rc = sindex_build(db, qns, field.data, items[i].ts, &ix);
            if (rc == KD_EINVALID) {
                kd__log(db, KD_LOG_WARN, "index definition %s has a bad path; ignored", items[i].key->name);
                rc = KD_OK;
            } else if (rc == KD_ECORRUPT) {
                /* A value it covers cannot be read (a lost dictionary, a
                 * damaged segment): the database still opens, queries scan
                 * and meet the damage themselves, verify reports it. */
                kd__log(db, KD_LOG_ERROR, "index %s is not built: %s", items[i].key->name, kd_errmsg(db));
                if ((rc = note_unbuilt(db->qs, qns, field.data, items[i].ts, kd_errmsg(db))))
                    kd__err(db, rc, "out of memory");
            } else if (!rc && (rc = register_index(db->qs, ix))) {
                sindex_free(ix);
            } else if (!rc) {
                __atomic_add_fetch(&db->hooks, 1, __ATOMIC_RELEASE);
            }
        }
        kd__buf_free(&field);
        kd__buf_free(&ns);
        if (rc) {
            c->rc = rc;
            snprintf(c->err, c->errlen, "cannot build the indexes: %s", kd_errmsg(db)[0] ? kd_errmsg(db) : kd_strerror(rc));
            return rc;
        }
    }
    return KD_OK;
}

int kd__sindex_open(kd_db *db, char *err, size_t errlen)
{
    kd__qstate *qs = calloc(1, sizeof *qs);
    if (!qs) {
        snprintf(err, errlen, "out of memory");
        return KD_ENOMEM;
    }
    pthread_mutex_init(&qs->def_mu, NULL);
    pthread_rwlock_init(&qs->lock, NULL);
    db->qs = qs;
    load_ctx c = {db, KD_OK, err, errlen};
    kd__err(db, KD_OK, "%s", ""); /* so that a message read below is this open's */
    pthread_mutex_lock(&db->write_mu);
    /* every workspace's _kd.indexes (opening: no writer runs) */
    int rc = KD_OK;
    for (size_t i = 0; i < db->ix.ns_count && !rc; i++) {
        const kd__ns *s = db->ix.ns_list[i];
        char q[KD__QNS_MAX];
        if (strcmp(s->name, KD__NS_INDEXES))
            continue;
        rc = kd__scan_raw_applied(db, kd__qns_of(s, q), load_page, &c);
    }
    pthread_mutex_unlock(&db->write_mu);
    if (rc && !c.rc)
        snprintf(err, errlen, "cannot read the index definitions: %s", kd_errmsg(db)[0] ? kd_errmsg(db) : kd_strerror(rc));
    return rc;
}

void kd__sindex_close(kd_db *db)
{
    kd__qstate *qs = db->qs;
    if (!qs)
        return;
    for (size_t i = 0; i < qs->n_idx; i++)
        sindex_free(qs->idx[i]);
    free(qs->idx);
    for (size_t i = 0; i < qs->n_unbuilt; i++)
        unbuilt_clear(&qs->unbuilt[i]);
    free(qs->unbuilt);
    pthread_mutex_destroy(&qs->def_mu);
    pthread_rwlock_destroy(&qs->lock);
    free(qs);
    db->qs = NULL;
}
