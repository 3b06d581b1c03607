/*
 * views.c — materialized views: definitions in the log, member sets in
 * memory (views.h).
 *
 * A definition is the value of key <name> in the reserved namespace
 * _kd.views: {"auto_refresh":bool,"created":ns,"description":"…",
 * "name":"…","query":{…canonical query…},"refreshed":ns,"source":"…"}.
 * Creating, refreshing and deleting a view are writes there, so they
 * advance the views subsystem's root (format.h) and survive reopening.
 *
 * Members: key -> timestamp of the version that matched. An auto-refresh
 * view is built once (at create or open, under write_mu) and then kept by
 * the commit hook: one filter evaluation per write to its namespace. A
 * manual view's members are those of the namespace at its last refresh;
 * after a reopen they are rebuilt from the log the first time the view is
 * read (a scan as of that time).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../db_int.h"
#include "../json/json.h"
#include "filter.h"
#include "qrun.h"
#include "sindex.h"
#include "views.h"

/* ------------------------------------------------------------------------
 * Member sets: open addressing on the key pointer
 * ---------------------------------------------------------------------- */

typedef struct member {
    const kd__key *key; /* NULL: empty slot */
    int64_t ts;
} member;

typedef struct mset {
    member *slot;
    size_t cap, n; /* cap is a power of two or 0 */
} mset;

static size_t mhash(const kd__key *k, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)k;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static int mset_grow(mset *s)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    member *slot = calloc(cap, sizeof *slot);
    if (!slot)
        return KD_ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slot[i].key)
            continue;
        size_t j = mhash(s->slot[i].key, cap);
        while (slot[j].key)
            j = (j + 1) & (cap - 1);
        slot[j] = s->slot[i];
    }
    free(s->slot);
    s->slot = slot;
    s->cap = cap;
    return KD_OK;
}

static int mset_put(mset *s, const kd__key *k, int64_t ts)
{
    if ((s->n + 1) * 10 > s->cap * 7 && mset_grow(s))
        return KD_ENOMEM;
    size_t j = mhash(k, s->cap);
    while (s->slot[j].key && s->slot[j].key != k)
        j = (j + 1) & (s->cap - 1);
    if (!s->slot[j].key)
        s->n++;
    s->slot[j].key = k;
    s->slot[j].ts = ts;
    return KD_OK;
}

static void mset_del(mset *s, const kd__key *k)
{
    if (!s->cap)
        return;
    size_t j = mhash(k, s->cap);
    while (s->slot[j].key && s->slot[j].key != k)
        j = (j + 1) & (s->cap - 1);
    if (!s->slot[j].key)
        return;
    /* Backward-shift deletion keeps every probe chain unbroken. */
    size_t hole = j;
    for (;;) {
        j = (j + 1) & (s->cap - 1);
        if (!s->slot[j].key)
            break;
        size_t home = mhash(s->slot[j].key, s->cap);
        /* Move j into the hole when its home is not in (hole, j]. */
        int between = hole < j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            s->slot[hole] = s->slot[j];
            hole = j;
        }
    }
    s->slot[hole].key = NULL;
    s->n--;
}

static void mset_free(mset *s)
{
    free(s->slot);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------
 * Views
 * ---------------------------------------------------------------------- */

typedef struct kd__view {
    char *name, *source, *description;
    char *query_json; /* canonical */
    kd_query *q;
    int auto_refresh;
    int64_t created, refreshed; /* wall-clock times of the definition and of the last refresh */
    int64_t as_of;   /* the content's point in time: the newest write visible at the last refresh */
    int built;       /* members are current (auto) or those of `as_of` (manual) */
    int64_t last_ts; /* auto: last write to source applied to members */
    mset members;
} kd__view;

static void view_free(kd__view *v)
{
    if (!v)
        return;
    free(v->name);
    free(v->source);
    free(v->description);
    free(v->query_json);
    kd_query_free(v->q);
    mset_free(&v->members);
    free(v);
}

static ssize_t find_view(const kd__qstate *qs, const char *name)
{
    for (size_t i = 0; i < qs->n_views; i++)
        if (!strcmp(qs->views[i]->name, name))
            return (ssize_t)i;
    return -1;
}

static int register_view(kd__qstate *qs, kd__view *v)
{
    if (qs->n_views == qs->cap_views) {
        size_t cap = qs->cap_views ? qs->cap_views * 2 : 8;
        kd__view **a = realloc(qs->views, cap * sizeof *a);
        if (!a)
            return KD_ENOMEM;
        qs->views = a;
        qs->cap_views = cap;
    }
    qs->views[qs->n_views++] = v;
    return KD_OK;
}

typedef struct fill_ctx {
    const kd_filter *f;
    mset *m;
} fill_ctx;

static int fill_page(void *arg, const kd__scan_item *it, size_t n)
{
    fill_ctx *c = arg;
    for (size_t i = 0; i < n; i++)
        if (!c->f || kd__filter_eval(c->f, (kd__jv){it[i].value, it[i].value_len}))
            if (mset_put(c->m, it[i].key, it[i].ts))
                return KD_ENOMEM;
    return KD_OK;
}

/* Members of v's query over its source: at time `at`, or (applied = 1,
 * with write_mu held) over every applied write. */
static int compute_members(kd_db *db, const kd__view *v, int applied, int64_t at, mset *out)
{
    fill_ctx c = {kd__query_filter(v->q), out};
    int rc = applied ? kd__scan_raw_applied(db, v->source, fill_page, &c)
                     : kd__scan_raw(db, v->source, at, fill_page, &c);
    if (rc)
        mset_free(out);
    return rc;
}

/* Build an auto-refresh view's members over every applied write and
 * install them; the caller holds write_mu, and keeps holding it until the
 * view's hook runs for the next write (kd__views_on_write of a registered
 * view), so no write slips between the scan and the hook. */
static int build_auto_locked(kd_db *db, kd__view *v)
{
    mset m = {0};
    int rc = compute_members(db, v, 1, KD_TIME_MAX, &m);
    if (!rc) {
        pthread_rwlock_wrlock(&db->qs->lock);
        mset_free(&v->members);
        v->members = m;
        v->built = 1;
        v->last_ts = db->last_ts;
        pthread_rwlock_unlock(&db->qs->lock);
    }
    return rc;
}

/* The same for a registered view (a refresh, or a rebuild when read). */
static int build_auto(kd_db *db, kd__view *v)
{
    pthread_mutex_lock(&db->write_mu);
    int rc = build_auto_locked(db, v);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

void kd__views_on_write(kd_db *db, const kd__applied *w)
{
    kd__qstate *qs = db->qs;
    if (!qs || !qs->n_views)
        return;
    pthread_rwlock_wrlock(&qs->lock);
    for (size_t i = 0; i < qs->n_views; i++) {
        kd__view *v = qs->views[i];
        if (!v->auto_refresh || !v->built || strcmp(v->source, w->ns))
            continue;
        v->last_ts = w->rec->ts;
        const kd_filter *f = kd__query_filter(v->q);
        int match = w->value && (!f || kd__filter_eval(f, (kd__jv){w->value, w->value_len}));
        if (!match) {
            mset_del(&v->members, w->k);
        } else if (mset_put(&v->members, w->k, w->rec->ts)) {
            /* Out of memory: the members are no longer right; rebuild them
             * when the view is next read. */
            v->built = 0;
        }
    }
    pthread_rwlock_unlock(&qs->lock);
}

int kd__views_hold(kd_db *db, kd__view_pin **pins, size_t *n)
{
    kd__qstate *qs = db->qs;
    *pins = NULL;
    *n = 0;
    if (!qs)
        return KD_OK;
    pthread_mutex_lock(&qs->def_mu);
    pthread_rwlock_rdlock(&qs->lock);
    int rc = KD_OK;
    if (qs->n_views && !(*pins = malloc(qs->n_views * sizeof **pins)))
        rc = KD_ENOMEM;
    for (size_t i = 0; i < qs->n_views && !rc; i++)
        if (!qs->views[i]->auto_refresh)
            (*pins)[(*n)++] = (kd__view_pin){qs->views[i]->source, qs->views[i]->as_of};
    pthread_rwlock_unlock(&qs->lock);
    if (rc)
        pthread_mutex_unlock(&qs->def_mu);
    return rc;
}

void kd__views_release(kd_db *db)
{
    if (db->qs)
        pthread_mutex_unlock(&db->qs->def_mu);
}

/* ------------------------------------------------------------------------
 * Definitions in the log
 * ---------------------------------------------------------------------- */

static int put_str(kd__buf *b, const char *name, const char *s)
{
    int rc = kd__buf_putc(b, '"');
    if (!rc)
        rc = kd__buf_puts(b, name);
    if (!rc)
        rc = kd__buf_puts(b, "\":");
    if (!rc)
        rc = kd__json_write_string(b, s, strlen(s));
    return rc;
}

/* Write v's definition (members sorted by name: canonical JSON). */
static int write_def(kd_db *db, const kd__view *v, const char *expect, int64_t *ts)
{
    kd__buf b = KD__BUF_INIT;
    int rc = kd__buf_printf(&b, "{\"as_of\":%lld,\"auto_refresh\":%s,\"created\":%lld,", (long long)v->as_of,
                            v->auto_refresh ? "true" : "false", (long long)v->created);
    if (!rc)
        rc = put_str(&b, "description", v->description);
    if (!rc)
        rc = kd__buf_putc(&b, ',');
    if (!rc)
        rc = put_str(&b, "name", kd__qns_local(v->name));
    if (!rc)
        rc = kd__buf_printf(&b, ",\"query\":%s,\"refreshed\":%lld,", v->query_json, (long long)v->refreshed);
    if (!rc)
        rc = put_str(&b, "source", kd__qns_local(v->source));
    if (!rc)
        rc = kd__buf_putc(&b, '}');
    if (rc) {
        kd__buf_free(&b);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    char defs_ns[KD__QNS_MAX];
    kd_write w = {kd__qns_sibling(v->name, KD__NS_VIEWS, defs_ns), kd__qns_local(v->name), b.data, b.len, expect};
    kd_version ver;
    kd__allow_reserved(1);
    rc = kd__commit(db, &w, 1, &ver);
    kd__allow_reserved(0);
    kd__buf_free(&b);
    if (!rc && ts)
        *ts = ver.timestamp;
    return rc;
}

static int check_view_name(kd_db *db, const char *name)
{
    if (!name || !*name)
        return kd__err(db, KD_EINVALID, "a view needs a name");
    size_t n = strlen(name);
    if (n > 255)
        return kd__err(db, KD_ETOOBIG, "view name is %zu bytes; the limit is 255", n);
    if (!kd__utf8_valid(name, n))
        return kd__err(db, KD_EINVALID, "view name is not valid UTF-8");
    return KD_OK;
}

int kd_view_create(kd_db *db, const char *name, const char *source_ns, const kd_query *q, const char *description,
                   int auto_refresh)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    int rc = check_view_name(db, name);
    if (rc)
        return rc;
    if (!source_ns)
        return kd__err(db, KD_EINVALID, "a view needs a source namespace");
    KD__WS_NS(db, name);
    KD__WS_NS(db, source_ns);
    if ((rc = kd__check_names(db, source_ns, "-")))
        return rc;
    if (!q)
        return kd__err(db, KD_EINVALID, "a view needs a query");
    if (kd__query_has_extras(q))
        return kd__err(db, KD_EINVALID, "a view's query is a filter, sort, select, offset and limit over the "
                       "current values: no aggregate, group, \"at\", \"from\", \"to\" or \"latest\"");
    kd__view *v = calloc(1, sizeof *v);
    char err[256];
    size_t qlen;
    if (!v || !(v->name = strdup(name)) || !(v->source = strdup(source_ns)) ||
        !(v->description = strdup(description ? description : "")) ||
        kd_query_to_json(q, &v->query_json, &qlen)) {
        view_free(v);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    if ((rc = kd_query_parse(v->query_json, qlen, &v->q, err, sizeof err))) {
        view_free(v);
        return kd__err(db, rc, "view query: %s", err);
    }
    v->auto_refresh = auto_refresh ? 1 : 0;
    kd__qstate *qs = db->qs;
    pthread_mutex_lock(&qs->def_mu);
    pthread_rwlock_rdlock(&qs->lock);
    ssize_t at = find_view(qs, name);
    pthread_rwlock_unlock(&qs->lock);
    if (at >= 0) {
        rc = kd__err(db, KD_EEXISTS, "a view named '%s' already exists", name);
        goto fail;
    }
    /* The content of a new view is its query's result as of now: the
     * latest visible write (the as-of point kept in "as_of"). */
    v->created = v->refreshed = kd_now();
    v->as_of = kd__visible(db);
    if ((rc = write_def(db, v, KD_EXPECT_ABSENT, NULL)))
        goto fail;
    /* An auto-refresh view is built and registered under one hold of
     * write_mu: a write applied between its scan and its registration
     * would be in neither (the view then stayed wrong until reopened). */
    if (v->auto_refresh) {
        pthread_mutex_lock(&db->write_mu);
        rc = build_auto_locked(db, v);
    } else {
        mset m = {0};
        if (!(rc = compute_members(db, v, 0, v->as_of, &m))) {
            v->members = m;
            v->built = 1;
        }
        pthread_mutex_lock(&db->write_mu);
    }
    int build_rc = rc;
    char build_msg[600] = "";
    if (rc) {
        /* Defined in the log but not built (out of memory, or a value it
         * covers cannot be read): it is built when next read or at the
         * next open, and the caller hears why now (as kd_index_create). */
        snprintf(build_msg, sizeof build_msg, "%s", kd_errmsg(db));
        v->built = 0;
    }
    pthread_rwlock_wrlock(&qs->lock);
    int reg = register_view(qs, v);
    if (!reg && v->auto_refresh)
        __atomic_add_fetch(&db->hooks, 1, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&qs->lock);
    pthread_mutex_unlock(&db->write_mu);
    pthread_mutex_unlock(&qs->def_mu);
    if (reg) {
        view_free(v);
        return kd__err(db, KD_ENOMEM, "out of memory (view '%s' is defined and comes back at the next open)",
                       name);
    }
    if (build_rc)
        return kd__err(db, build_rc, "view '%s' is defined but could not be built: %s", name, build_msg);
    return KD_OK;
fail:
    pthread_mutex_unlock(&qs->def_mu);
    view_free(v);
    return rc;
}

int kd_view_delete(kd_db *db, const char *name)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    int rc = check_view_name(db, name);
    if (rc)
        return rc;
    KD__WS_NS(db, name);
    kd__qstate *qs = db->qs;
    char defs_ns[KD__QNS_MAX];
    pthread_mutex_lock(&qs->def_mu);
    kd__allow_reserved(1);
    kd__ws_internal(1);
    rc = kd_delete(db, kd__qns_sibling(name, KD__NS_VIEWS, defs_ns), kd__qns_local(name), NULL);
    kd__ws_internal(0);
    kd__allow_reserved(0);
    if (rc == KD_ENOTFOUND || rc == KD_EDELETED) {
        pthread_mutex_unlock(&qs->def_mu);
        return kd__err(db, KD_ENOTFOUND, "no view named '%s'", name);
    }
    kd__view *gone = NULL;
    if (!rc) {
        pthread_mutex_lock(&db->write_mu);
        pthread_rwlock_wrlock(&qs->lock);
        ssize_t at = find_view(qs, name);
        if (at >= 0) {
            gone = qs->views[at];
            memmove(&qs->views[at], &qs->views[at + 1], (qs->n_views - (size_t)at - 1) * sizeof *qs->views);
            qs->n_views--;
            if (gone->auto_refresh)
                __atomic_sub_fetch(&db->hooks, 1, __ATOMIC_RELEASE);
        }
        pthread_rwlock_unlock(&qs->lock);
        pthread_mutex_unlock(&db->write_mu);
    }
    pthread_mutex_unlock(&qs->def_mu);
    view_free(gone);
    return rc;
}

/* "cannot <what> view NAME: <why>", why being the message of the failure
 * (which names the damaged file, for one) when there is one. */
static int view_failed(kd_db *db, int rc, const char *what, const char *name)
{
    char why[512];
    /* A read that met damage said where; other failures (out of memory)
     * set no message, so an older one must not be shown. */
    snprintf(why, sizeof why, "%s", rc == KD_ECORRUPT && kd_errmsg(db)[0] ? kd_errmsg(db) : kd_strerror(rc));
    return kd__err(db, rc, "cannot %s view '%s': %s", what, kd__qns_local(name), why);
}

int kd_view_refresh(kd_db *db, const char *name)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    int rc = check_view_name(db, name);
    if (rc)
        return rc;
    KD__WS_NS(db, name);
    kd__qstate *qs = db->qs;
    pthread_mutex_lock(&qs->def_mu);
    /* Definitions change only under def_mu, so v stays while we hold it. */
    pthread_rwlock_rdlock(&qs->lock);
    ssize_t at = find_view(qs, name);
    kd__view *v = at >= 0 ? qs->views[at] : NULL;
    pthread_rwlock_unlock(&qs->lock);
    if (!v) {
        pthread_mutex_unlock(&qs->def_mu);
        return kd__err(db, KD_ENOTFOUND, "no view named '%s'", name);
    }
    int64_t t = kd__visible(db);
    int64_t old = v->refreshed, old_as_of = v->as_of;
    v->refreshed = kd_now();
    v->as_of = t;
    rc = write_def(db, v, NULL, NULL);
    if (rc) {
        v->refreshed = old;
        v->as_of = old_as_of;
    } else if (v->auto_refresh) {
        rc = build_auto(db, v);
    } else {
        mset m = {0};
        if (!(rc = compute_members(db, v, 0, t, &m))) {
            pthread_rwlock_wrlock(&qs->lock);
            mset_free(&v->members);
            v->members = m;
            v->built = 1;
            pthread_rwlock_unlock(&qs->lock);
        } else {
            /* The definition says as_of = t now, and compaction keeps only
             * the versions of that point: the old members go, and the next
             * read builds them anew. */
            pthread_rwlock_wrlock(&qs->lock);
            mset_free(&v->members);
            v->built = 0;
            pthread_rwlock_unlock(&qs->lock);
            rc = view_failed(db, rc, "refresh", name);
        }
    }
    pthread_mutex_unlock(&qs->def_mu);
    return rc;
}

/* Copy v's members out (qs->lock held for reading). */
static int snapshot_members(const kd__view *v, const kd__key ***keys, int64_t **ts, size_t *n)
{
    size_t cnt = v->members.n;
    *keys = malloc((cnt ? cnt : 1) * sizeof **keys);
    *ts = malloc((cnt ? cnt : 1) * sizeof **ts);
    if (!*keys || !*ts) {
        free(*keys);
        free(*ts);
        return KD_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < v->members.cap; i++)
        if (v->members.slot[i].key) {
            (*keys)[k] = v->members.slot[i].key;
            (*ts)[k++] = v->members.slot[i].ts;
        }
    *n = k;
    return KD_OK;
}

int kd_view_query(kd_db *db, const char *name, size_t offset, size_t limit, kd_result **out)
{
    if (!db || !out)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    int rc = check_view_name(db, name);
    if (rc)
        return rc;
    KD__WS_NS(db, name);
    kd__qstate *qs = db->qs;
    /* def_mu keeps the view alive and serializes lazy builds. */
    pthread_mutex_lock(&qs->def_mu);
    pthread_rwlock_rdlock(&qs->lock);
    ssize_t at = find_view(qs, name);
    kd__view *v = at >= 0 ? qs->views[at] : NULL;
    int built = v && v->built;
    pthread_rwlock_unlock(&qs->lock);
    if (!v) {
        pthread_mutex_unlock(&qs->def_mu);
        return kd__err(db, KD_ENOTFOUND, "no view named '%s'", name);
    }
    if (!built) {
        if (v->auto_refresh) {
            rc = build_auto(db, v);
        } else {
            mset m = {0};
            if (!(rc = compute_members(db, v, 0, v->as_of, &m))) {
                pthread_rwlock_wrlock(&qs->lock);
                mset_free(&v->members);
                v->members = m;
                v->built = 1;
                pthread_rwlock_unlock(&qs->lock);
            }
        }
        if (rc) {
            pthread_mutex_unlock(&qs->def_mu);
            return view_failed(db, rc, "build", name);
        }
    }
    const kd__key **keys = NULL;
    int64_t *ts = NULL;
    size_t n = 0;
    pthread_rwlock_rdlock(&qs->lock);
    /* An auto view holds every applied write; when one is not yet visible
     * (sync=always, before its fsync) the members are ahead of what readers
     * may see: answer from the members as of visible_ts instead. */
    int ahead = v->auto_refresh && v->last_ts > kd__visible(db);
    if (!ahead)
        rc = snapshot_members(v, &keys, &ts, &n);
    pthread_rwlock_unlock(&qs->lock);
    if (ahead) {
        /* compute_members reads only the definition (source, query), which
         * no writer changes; the members are a set of our own */
        mset m = {0};
        if (!(rc = compute_members(db, v, 0, kd__visible(db), &m))) {
            kd__view tmp = {.members = m};
            rc = snapshot_members(&tmp, &keys, &ts, &n);
            mset_free(&m);
        }
    }
    if (!rc)
        rc = kd__query_run_keys(db, v->source, v->q, keys, ts, n, offset, limit, out);
    pthread_mutex_unlock(&qs->def_mu);
    free(keys);
    free(ts);
    if (rc == KD_ENOMEM)
        return kd__err(db, rc, "out of memory");
    return rc;
}

void kd_view_list_free(kd_view_info *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        free(list[i].name);
        free(list[i].source);
        free(list[i].query);
        free(list[i].description);
    }
    free(list);
}

static int cmp_vinfo(const void *a, const void *b)
{
    return strcmp(((const kd_view_info *)a)->name, ((const kd_view_info *)b)->name);
}

int kd_view_list(kd_db *db, kd_view_info **out, size_t *n)
{
    if (!db || !out || !n)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    kd__qstate *qs = db->qs;
    pthread_rwlock_rdlock(&qs->lock);
    kd_view_info *l = calloc(qs->n_views ? qs->n_views : 1, sizeof *l);
    int rc = l ? KD_OK : KD_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < qs->n_views && !rc; i++) {
        const kd__view *v = qs->views[i];
        const char *local;
        if (!kd__ws_owns(ws_, v->name, strlen(v->name), &local))
            continue;
        l[k].name = strdup(local);
        l[k].source = strdup(kd__qns_local(v->source));
        l[k].query = strdup(v->query_json);
        l[k].description = strdup(v->description);
        l[k].auto_refresh = v->auto_refresh;
        l[k].created = v->created;
        l[k].refreshed = v->refreshed;
        if (!l[k].name || !l[k].source || !l[k].query || !l[k].description)
            rc = KD_ENOMEM;
        k++;
    }
    pthread_rwlock_unlock(&qs->lock);
    if (rc) {
        kd_view_list_free(l, k);
        return kd__err(db, rc, "out of memory");
    }
    qsort(l, k, sizeof *l, cmp_vinfo);
    *out = l;
    *n = k;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Open and close
 * ---------------------------------------------------------------------- */

static char *jv_strdup(kd__jv v)
{
    if (!v.p || kd__jv_type(v) != KD__J_STRING)
        return NULL;
    kd__buf b = KD__BUF_INIT;
    if (kd__jv_string(v, &b) || kd__buf_putc(&b, '\0')) {
        kd__buf_free(&b);
        return NULL;
    }
    return b.data;
}

static int64_t jv_i64(kd__jv v)
{
    int64_t x = 0;
    if (v.p && kd__jv_type(v) == KD__J_NUMBER)
        kd__jv_int64(v, &x);
    return x;
}

#define MEMBER(def, name) kd__jv_member(def, "\"" name "\"", sizeof(name) + 1)

/* One definition from the log; NULL with *rc = KD_OK when malformed. */
static kd__view *parse_def(kd_db *db, kd__jv def, int64_t ts, int *rc)
{
    *rc = KD_OK;
    kd__view *v = calloc(1, sizeof *v);
    if (!v) {
        *rc = KD_ENOMEM;
        return NULL;
    }
    kd__jv q = MEMBER(def, "query"), a = MEMBER(def, "auto_refresh");
    v->name = jv_strdup(MEMBER(def, "name"));
    v->source = jv_strdup(MEMBER(def, "source"));
    v->description = jv_strdup(MEMBER(def, "description"));
    char err[256];
    if (!v->name || !v->source || !v->description || !q.p || kd__jv_type(q) != KD__J_OBJECT ||
        !(v->query_json = strndup(q.p, q.len)) || kd_query_parse(q.p, q.len, &v->q, err, sizeof err)) {
        kd__log(db, KD_LOG_WARN, "a view definition is malformed; ignored");
        view_free(v);
        return NULL;
    }
    v->auto_refresh = a.p && kd__jv_type(a) == KD__J_TRUE;
    v->created = jv_i64(MEMBER(def, "created"));
    if (!v->created)
        v->created = ts;
    v->refreshed = jv_i64(MEMBER(def, "refreshed"));
    /* Before "as_of" was kept, "refreshed" held the as-of point. */
    kd__jv as_of = MEMBER(def, "as_of");
    v->as_of = as_of.p ? jv_i64(as_of) : v->refreshed;
    return v;
}

typedef struct load_ctx {
    kd_db *db;
    int rc;
} load_ctx;

static int load_page(void *arg, const kd__scan_item *it, size_t n)
{
    load_ctx *c = arg;
    for (size_t i = 0; i < n; i++) {
        int rc;
        kd__view *v = parse_def(c->db, (kd__jv){it[i].value, it[i].value_len}, it[i].ts, &rc);
        if (!v && rc)
            return c->rc = rc;
        const kd__ns *defs = it[i].key->ns;
        if (v && strcmp(defs->ws, KD__DEFAULT_WS)) {
            /* a workspace's view: name and source are qualified */
            char *qn = malloc(defs->ws_len + 2 + strlen(v->name)), *qs = malloc(defs->ws_len + 2 + strlen(v->source));
            if (!qn || !qs) {
                free(qn);
                free(qs);
                view_free(v);
                return c->rc = KD_ENOMEM;
            }
            sprintf(qn, "%s%c%s", defs->ws, KD__WS_SEP, v->name);
            sprintf(qs, "%s%c%s", defs->ws, KD__WS_SEP, v->source);
            free(v->name);
            free(v->source);
            v->name = qn;
            v->source = qs;
        }
        if (v && (rc = register_view(c->db->qs, v))) {
            view_free(v);
            return c->rc = rc;
        }
    }
    return KD_OK;
}

int kd__views_open(kd_db *db, char *err, size_t errlen)
{
    kd__err(db, KD_OK, "%s", ""); /* so that a message read below is this open's */
    load_ctx c = {db, KD_OK};
    /* every workspace's _kd.views (opening: no writer runs) */
    int rc = KD_OK;
    for (size_t i = 0; i < db->ix.ns_count && !rc; i++) {
        const kd__ns *s = db->ix.ns_list[i];
        char q[KD__QNS_MAX];
        if (!strcmp(s->name, KD__NS_VIEWS))
            rc = kd__scan_raw(db, kd__qns_of(s, q), KD_TIME_MAX, load_page, &c);
    }
    kd__qstate *qs = db->qs;
    /* Auto-refresh views are rebuilt now so the hook can keep them; manual
     * ones when first read. Each auto view counts in db->hooks, built or
     * not (kd_view_delete takes it off; an unbuilt one is built when read,
     * and the hook skips it until then). */
    for (size_t i = 0; i < qs->n_views && !rc; i++) {
        if (!qs->views[i]->auto_refresh)
            continue;
        rc = build_auto(db, qs->views[i]);
        if (rc == KD_ECORRUPT) {
            /* A value cannot be read (a lost dictionary, a damaged segment):
             * the database still opens; reading the view meets the damage. */
            kd__log(db, KD_LOG_ERROR, "view %s is not built: %s", kd__qns_local(qs->views[i]->name), kd_errmsg(db));
            rc = KD_OK;
        }
        if (!rc)
            __atomic_add_fetch(&db->hooks, 1, __ATOMIC_RELEASE);
    }
    if (rc)
        snprintf(err, errlen, "cannot load the views: %s", kd_errmsg(db)[0] ? kd_errmsg(db) : kd_strerror(rc));
    return rc;
}

void kd__views_close(kd_db *db)
{
    kd__qstate *qs = db->qs;
    if (!qs)
        return;
    for (size_t i = 0; i < qs->n_views; i++)
        view_free(qs->views[i]);
    free(qs->views);
    qs->views = NULL;
    qs->n_views = qs->cap_views = 0;
}
