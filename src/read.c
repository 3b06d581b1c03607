/*
 * read.c — everything that only reads: get, get_at, values by version_id,
 * contains, history and listings. Readers share ix_lock and see only
 * versions with ts <= visible_ts (see db_int.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_int.h"

void kd__fill_version(const kd_db *db, const kd__key *k, uint32_t i, kd_version *out)
{
    const kd__ver *v = &k->vers[i];
    out->timestamp = v->ts;
    out->deleted = v->value == KD__NO_VALUE;
    out->pruned = 0;
    if (out->deleted) {
        out->version_id[0] = '\0';
    } else {
        const kd__val *val = kd__index_val(&db->ix, v->value);
        kd__hex_encode(val->id, KD__HASH_LEN, out->version_id);
        out->pruned = kd__ver_dropped(k->ns, v) ? KD_PRUNED_WORKSPACE : val->seg == KD__VAL_GONE ? KD_PRUNED_RETENTION : 0;
    }
    kd__hex_encode(v->write_id, KD__HASH_LEN, out->write_id);
    if (i > 0)
        kd__hex_encode(k->vers[i - 1].write_id, KD__HASH_LEN, out->previous_write_id);
    else
        out->previous_write_id[0] = '\0';
}

/* Find a key under the read lock; NULL if absent or not yet visible. */
static const kd__key *find_key(const kd_db *db, const char *ns, const char *key)
{
    const kd__ns *n = kd__qns_find(&db->ix, ns, strlen(ns));
    if (!n)
        return NULL;
    const kd__key *k = kd__index_key_find(&db->ix, n, key, strlen(key));
    if (!k || !k->n || k->vers[0].ts > kd__visible(db))
        return NULL;
    return k;
}

/* Read value `vidx` (location copied out under the lock) from the cache or
 * the log. */
typedef struct value_loc {
    uint32_t vidx, len, off; /* len: the bytes stored (a zstd frame when zstd) */
    uint32_t seg, zdict;     /* zdict: the segment's dictionary (zvalue.h) */
    int zstd;                /* consolidation compressed the bytes */
    int fd;             /* -1 when gone */
    const uint8_t *map; /* the segment's read-only mapping, or NULL */
    int gone;           /* retention removed the bytes (KD__VAL_GONE) */
} value_loc;

/* The key's versions, when used in place from a checkpoint's mapping
 * (cap 0), were read through it: they count toward the budget's window. */
static void touch_versions(kd_db *db, const kd__key *k, uint32_t i)
{
    if (!k->cap)
        kd__mem_read_touch(db, &k->vers[i], sizeof(kd__ver));
}

static int pread_full(kd_db *db, const value_loc *loc, void *to, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(loc->fd, (char *)to + done, n - done, (off_t)loc->off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return kd__err(db, KD_EIO, "cannot read a value from the log: %s", r < 0 ? strerror(errno) : "short read");
        done += (size_t)r;
    }
    return KD_OK;
}

/* Decompress the stored frame `raw` of a compressed value into out. */
static int unpack(kd_db *db, const value_loc *loc, const void *raw, kd__buf *out)
{
    char why[512];
    int rc = kd__zvalue_decode(db->zdicts, loc->zdict, raw, loc->len, KD__REC_MAX_PAYLOAD, out, why, sizeof why);
    if (rc == KD_ECORRUPT) {
        char name[32];
        return kd__err(db, rc, "%s/%s offset %u: %s", db->path, kd__seg_name(loc->seg, name), loc->off, why);
    }
    return rc ? kd__err(db, rc, "out of memory") : KD_OK;
}

/* The value's length in bytes, without reading all of it. */
static int value_len(kd_db *db, const value_loc *loc, size_t *len)
{
    if (!loc->zstd) {
        *len = loc->len;
        return KD_OK;
    }
    uint8_t head[KD__ZFRAME_HEADER_MAX];
    size_t n = loc->len < sizeof head ? loc->len : sizeof head;
    uint64_t size;
    int rc = pread_full(db, loc, head, n);
    if (!rc && kd__zvalue_size(head, n, &size)) {
        char name[32];
        rc = kd__err(db, KD_ECORRUPT, "%s/%s offset %u: a compressed value is not a zstd frame with its size",
                     db->path, kd__seg_name(loc->seg, name), loc->off);
    }
    if (!rc)
        *len = (size_t)size;
    return rc;
}

static int read_value(kd_db *db, const value_loc *loc, char **json, size_t *len)
{
    if (loc->gone)
        return kd__err(db, KD_EPRUNED, "the value was removed by a retention policy (compaction); its version_id "
                       "and write_id remain in the history");
    if (!json) {
        size_t n;
        int rc = len ? value_len(db, loc, &n) : KD_OK;
        if (!rc && len)
            *len = n;
        return rc;
    }
    int hit = kd__cache_get(&db->cache, loc->vidx, json, len);
    if (hit == 1)
        return KD_OK;
    if (hit < 0)
        return kd__err(db, KD_ENOMEM, "out of memory");
    /* Copied out with pread, not from the segment's mapping: the value is
     * copied either way, and a page read through the mapping would stay in
     * the process's resident memory until dropped (memory.c); pread leaves
     * it in the page cache only. */
    kd__buf raw = KD__BUF_INIT, out = KD__BUF_INIT;
    int rc = kd__buf_reserve(&raw, loc->len) ? kd__err(db, KD_ENOMEM, "out of memory reading a value of %u bytes",
                                                       loc->len)
                                             : pread_full(db, loc, raw.data, loc->len);
    if (!rc) {
        raw.len = loc->len;
        raw.data[raw.len] = '\0';
        if (loc->zstd && !(rc = unpack(db, loc, raw.data, &out))) {
            kd__buf_free(&raw);
            raw = out;
        } else if (loc->zstd) {
            kd__buf_free(&out);
        }
    }
    if (rc) {
        kd__buf_free(&raw);
        return rc;
    }
    size_t n;
    char *p = kd__buf_steal(&raw, &n);
    kd__cache_put(&db->cache, loc->vidx, p, n);
    *json = p;
    if (len)
        *len = n;
    return KD_OK;
}

static void locate(const kd_db *db, uint32_t vidx, value_loc *loc)
{
    const kd__val *v = kd__index_val(&db->ix, vidx);
    loc->vidx = vidx;
    loc->len = kd__val_bytes(v);
    loc->zstd = kd__val_zstd(v);
    loc->off = v->off;
    loc->seg = v->seg;
    loc->gone = v->seg == KD__VAL_GONE;
    if (loc->gone) {
        loc->fd = -1;
        loc->map = NULL;
        loc->zdict = 0;
        return;
    }
    const kd__seg *s = &db->segs[v->seg - db->segs[0].no];
    loc->fd = s->fd;
    loc->map = s->rmap;
    loc->zdict = s->zdict;
}

/* The bytes of the value at `loc` (not gone; its segment pinned): in the
 * mapping, or read (pread) or decompressed into scratch. Not through the
 * cache: scans must not make values look hot. */
static int loc_bytes(kd_db *db, const value_loc *loc, kd__buf *scratch, const char **p, size_t *len)
{
    const char *raw;
    kd__buf_reset(scratch);
    if (loc->map) {
        raw = (const char *)loc->map + loc->off;
        kd__mem_read_touch(db, raw, loc->len); /* trimmed by the next read or upkeep tick */
    } else {
        if (kd__buf_reserve(scratch, loc->len))
            return kd__err(db, KD_ENOMEM, "out of memory");
        int rc = pread_full(db, loc, scratch->data, loc->len);
        if (rc)
            return rc;
        scratch->len = loc->len;
        raw = scratch->data;
    }
    if (!loc->zstd) {
        *p = raw;
        *len = loc->len;
        return KD_OK;
    }
    kd__buf out = KD__BUF_INIT;
    int rc = unpack(db, loc, raw, &out);
    kd__buf_free(scratch);
    *scratch = out;
    if (rc)
        return rc;
    *p = scratch->data;
    *len = scratch->len;
    return KD_OK;
}

/* Shared body of get and get_at. */
static int get_at(kd_db *db, const char *ns, const char *key, int64_t at, int is_at, char **json, size_t *len,
                  kd_version *meta)
{
    if (!db)
        return KD_EMISUSE;
    if (json)
        *json = NULL;
    if (!ns || !key || !*ns || !*key)
        return kd__err(db, KD_EINVALID, "namespace and key must be non-empty");
    pthread_rwlock_rdlock(&db->ix_lock);
    const kd__key *k = find_key(db, ns, key);
    if (!k) {
        pthread_rwlock_unlock(&db->ix_lock);
        return kd__read_miss(db, ns, key);
    }
    int64_t vis = kd__visible(db);
    uint32_t i = kd__key_upper(k, at < vis ? at : vis);
    if (i == 0) {
        pthread_rwlock_unlock(&db->ix_lock);
        char t[40];
        kd_time_format(at, t, sizeof t);
        return kd__err(db, KD_ENOVERSION, "%s/%s: no version at or before %s", ns, key, t);
    }
    const kd__ver *v = &k->vers[i - 1];
    if (meta)
        kd__fill_version(db, k, i - 1, meta);
    if (kd__ver_dropped(k->ns, v)) {
        /* It went with its workspace, dropped then compacted; the
         * workspace, made again since, starts empty. */
        pthread_rwlock_unlock(&db->ix_lock);
        if (!is_at)
            return kd__err(db, KD_ENOTFOUND, "%s/%s: not found: its versions were removed when its workspace was "
                           "dropped (and compacted)", ns, key);
        char t[40];
        if (v->value == KD__NO_VALUE) {
            kd_time_format(at, t, sizeof t);
            return kd__err(db, KD_EDELETED, "%s/%s: was deleted at %s", ns, key, t);
        }
        kd_time_format(at, t, sizeof t);
        return kd__err(db, KD_EPRUNED, "%s/%s: the version at %s was removed when its workspace was dropped (and "
                       "compacted); its version_id and write_id remain in the history", ns, key, t);
    }
    if (v->value == KD__NO_VALUE) {
        pthread_rwlock_unlock(&db->ix_lock);
        if (is_at) {
            char t[40];
            kd_time_format(at, t, sizeof t);
            return kd__err(db, KD_EDELETED, "%s/%s: was deleted at %s", ns, key, t);
        }
        return kd__err(db, KD_EDELETED, "%s/%s: deleted", ns, key);
    }
    if (!is_at && kd__value_gone(db, v->value)) {
        /* Retention never prunes a key's newest version, but a copy
         * restored from a backup --at a time before a compaction holds
         * versions that compaction pruned later, this one among them (and
         * a compaction of a dropped workspace before kd__ns.dropped_before
         * existed pruned them too). */
        pthread_rwlock_unlock(&db->ix_lock);
        char t[40];
        kd_time_format(v->ts, t, sizeof t);
        return kd__err(db, KD_EPRUNED, "%s/%s: the value of its newest version (%s) was removed by a compaction; its "
                       "version_id and write_id remain in the history", ns, key, t);
    }
    value_loc loc;
    locate(db, v->value, &loc);
    touch_versions(db, k, i - 1);
    kd__seg_pin(db);
    pthread_rwlock_unlock(&db->ix_lock);
    kd__mem_trim_reads(db, 0); /* keeps mapped pages within the budget */
    int rc = read_value(db, &loc, json, len);
    kd__seg_unpin(db);
    return rc;
}

int kd_get(kd_db *db, const char *ns, const char *key, char **json, size_t *len, kd_version *meta)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    return get_at(db, ns, key, INT64_MAX, 0, json, len, meta);
}

/* The timestamp of k's newest version visible at vis, 0 when none (or
 * when it went with its dropped workspace). */
static int64_t newest_visible(kd_db *db, const kd__key *k, int64_t vis)
{
    uint32_t i = k ? kd__key_upper(k, vis) : 0;
    if (i == 0)
        return 0;
    touch_versions(db, k, i - 1);
    return kd__ver_dropped(k->ns, &k->vers[i - 1]) ? 0 : k->vers[i - 1].ts;
}

int kd_newest_write(kd_db *db, const char *ns, const char *key, int64_t at, int64_t *ts)
{
    if (!db || !ts)
        return KD_EMISUSE;
    *ts = 0;
    KD__WS_ENTER(db);
    char why[1400];
    int rc = kd_check_name(ns, key, why, sizeof why);
    if (rc)
        return kd__err(db, rc, "%s", why);
    KD__WS_NS(db, ns);
    pthread_rwlock_rdlock(&db->ix_lock);
    int64_t vis = kd__visible(db);
    if (at < vis)
        vis = at;
    kd__ns *n = kd__qns_find(&db->ix, ns, strlen(ns));
    if (n && key) {
        *ts = newest_visible(db, kd__index_key_find(&db->ix, n, key, strlen(key)), vis);
    } else if (n && (*ts = kd__ns_newest_recent(n, vis)) >= 0) {
        /* every write after it is in the ring too, and later than vis */
        if (n->dropped_before && *ts < n->dropped_before)
            *ts = 0; /* it went with a dropped workspace, and so did all before it */
    } else if (n) {
        *ts = 0;
        int64_t newest = 0;
        for (size_t i = 0; i < n->n_all; i++) {
            const kd__key *k = n->all[i];
            int64_t t = newest_visible(db, k, vis);
            if (t > *ts)
                *ts = t;
            if (k->n && k->vers[k->n - 1].ts > newest)
                newest = k->vers[k->n - 1].ts;
        }
        if (!n->n_recent) /* see kd__ns.seed_ts */
            __atomic_store_n(&n->seed_ts, newest, __ATOMIC_RELAXED);
    }
    pthread_rwlock_unlock(&db->ix_lock);
    kd__mem_trim_reads(db, 0);
    return KD_OK;
}

int kd_get_at(kd_db *db, const char *ns, const char *key, int64_t ts, char **json, size_t *len, kd_version *meta)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    return get_at(db, ns, key, ts, 1, json, len, meta);
}

int kd_get_value(kd_db *db, const char *version_id, char **json, size_t *len)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    if (json)
        *json = NULL;
    uint8_t id[KD__HASH_LEN];
    if (!version_id || strlen(version_id) != 64 || kd__hex_decode(version_id, KD__HASH_LEN, id))
        return kd__err(db, KD_EINVALID, "version_id must be 64 hex digits");
    pthread_rwlock_rdlock(&db->ix_lock);
    uint32_t vidx = kd__index_value_find(&db->ix, id);
    if (vidx == KD__NO_VALUE) {
        pthread_rwlock_unlock(&db->ix_lock);
        return kd__err(db, KD_ENOTFOUND, "no value with version_id %s", version_id);
    }
    value_loc loc;
    locate(db, vidx, &loc);
    kd__seg_pin(db);
    pthread_rwlock_unlock(&db->ix_lock);
    int rc = read_value(db, &loc, json, len);
    kd__seg_unpin(db);
    return rc;
}

/* Has k a value now? Not when its newest version is a tombstone, went
 * with its dropped workspace, or had its value removed by a compaction
 * (retention never does that to a newest version, but a copy restored
 * from a backup --at an earlier time holds such versions: the key reads as
 * absent there, as in scans and queries, and kd_get says why). */
static int key_live(const kd_db *db, const kd__key *k)
{
    uint32_t pos = kd__key_upper(k, kd__visible(db));
    return pos && kd__ver_value(db, k, pos - 1) != KD__NO_VALUE;
}

int kd_contains(kd_db *db, const char *ns, const char *key)
{
    if (!db || !ns || !key)
        return 0;
    KD__WS_ENTER(db);
    char q[KD__QNS_MAX];
    if (ws_) {
        if (kd__ws_qualify(db, ws_, ns, q))
            return 0;
        ns = q;
    } else if (kd__ws_check_plain(db, ns)) {
        return 0;
    }
    pthread_rwlock_rdlock(&db->ix_lock);
    const kd__key *k = find_key(db, ns, key);
    int live = k && key_live(db, k);
    pthread_rwlock_unlock(&db->ix_lock);
    return live;
}

int kd_history(kd_db *db, const char *ns, const char *key, int64_t from, int64_t to, size_t limit, unsigned flags,
               kd_version **out, size_t *n)
{
    if (!db || !out || !n)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    *out = NULL;
    *n = 0;
    if (!ns || !key || !*ns || !*key)
        return kd__err(db, KD_EINVALID, "namespace and key must be non-empty");
    KD__WS_NS(db, ns);
    pthread_rwlock_rdlock(&db->ix_lock);
    const kd__key *k = find_key(db, ns, key);
    if (!k) {
        pthread_rwlock_unlock(&db->ix_lock);
        return kd__read_miss(db, ns, key);
    }
    int64_t vis = kd__visible(db);
    if (to > vis)
        to = vis;
    /* [lo, hi) = versions with from <= ts <= to */
    uint32_t lo = from == INT64_MIN ? 0 : kd__key_upper(k, from - 1);
    uint32_t hi = kd__key_upper(k, to);
    if (hi <= lo) {
        pthread_rwlock_unlock(&db->ix_lock);
        return KD_OK;
    }
    size_t cnt = hi - lo;
    if (limit && cnt > limit) {
        if (flags & KD_HISTORY_NEWEST_FIRST)
            lo = hi - (uint32_t)limit;
        else
            hi = lo + (uint32_t)limit;
        cnt = limit;
    }
    kd_version *v = malloc(cnt * sizeof *v);
    if (!v) {
        pthread_rwlock_unlock(&db->ix_lock);
        return kd__err(db, KD_ENOMEM, "out of memory for %zu versions", cnt);
    }
    /* Neighbouring entries share ids (one's write_id is the next one's
     * previous_write_id): encode each id once. */
    for (size_t j = 0; j < cnt; j++) {
        int newest_first = (flags & KD_HISTORY_NEWEST_FIRST) != 0;
        uint32_t i = newest_first ? hi - 1 - (uint32_t)j : lo + (uint32_t)j;
        const kd__ver *ver = &k->vers[i];
        kd_version *o = &v[j];
        o->timestamp = ver->ts;
        o->deleted = ver->value == KD__NO_VALUE;
        o->pruned = 0;
        if (o->deleted) {
            o->version_id[0] = '\0';
        } else {
            const kd__val *val = kd__index_val(&db->ix, ver->value);
            kd__hex_encode(val->id, KD__HASH_LEN, o->version_id);
            o->pruned = kd__ver_dropped(k->ns, ver)   ? KD_PRUNED_WORKSPACE
                        : val->seg == KD__VAL_GONE ? KD_PRUNED_RETENTION
                                                   : 0;
        }
        if (newest_first && j > 0)
            memcpy(o->write_id, v[j - 1].previous_write_id, KD_ID_HEX);
        else
            kd__hex_encode(ver->write_id, KD__HASH_LEN, o->write_id);
        if (i == 0)
            o->previous_write_id[0] = '\0';
        else if (!newest_first && j > 0)
            memcpy(o->previous_write_id, v[j - 1].write_id, KD_ID_HEX);
        else
            kd__hex_encode(k->vers[i - 1].write_id, KD__HASH_LEN, o->previous_write_id);
    }
    if (!k->cap) /* versions read in place from a checkpoint's mapping */
        kd__mem_read_touch(db, &k->vers[lo ? lo - 1 : 0], (size_t)(hi - (lo ? lo - 1 : 0)) * sizeof(kd__ver));
    pthread_rwlock_unlock(&db->ix_lock);
    kd__mem_trim_reads(db, 0);
    *out = v;
    *n = cnt;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Listings
 * ---------------------------------------------------------------------- */

void kd_free_list(char **list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

typedef struct name_list {
    char **v;
    size_t n, cap;
} name_list;

static int list_add(name_list *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return KD_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s)))
        return KD_ENOMEM;
    l->n++;
    return KD_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}


int kd_list_namespaces(kd_db *db, char ***names, size_t *n)
{
    if (!db || !names || !n)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    name_list l = {0};
    int rc = KD_OK;
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < db->ix.ns_count && !rc; i++) {
        const kd__ns *ns = db->ix.ns_list[i];
        if (strcmp(ns->ws, ws_ ? ws_ : KD__DEFAULT_WS) || !strncmp(ns->name, "_kd", 3) || !ns->live)
            continue;
        /* live counts unpublished writes too: confirm one visible live key. */
        int any = 0;
        for (size_t j = 0; j < ns->n_all && !any; j++)
            any = key_live(db, ns->all[j]);
        if (any)
            rc = list_add(&l, ns->name);
    }
    pthread_rwlock_unlock(&db->ix_lock);
    if (rc) {
        kd_free_list(l.v, l.n);
        return kd__err(db, rc, "out of memory");
    }
    if (l.n)
        qsort(l.v, l.n, sizeof *l.v, cmp_str);
    *names = l.v;
    *n = l.n;
    return KD_OK;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp((*(kd__key *const *)a)->name, (*(kd__key *const *)b)->name);
}

/* Sort the namespace's key view if keys were added since it was sorted:
 * the new keys (the end of `all`, in creation order) are sorted alone and
 * merged in from the back, so a listing after a write costs a pass over
 * the view, not a sort of all of it (a namespace of a million keys took
 * ~0.25 s per listing after each new key).
 * The caller holds ix_lock (shared) and the namespace's sort_mu. */
static int sort_keys(kd__ns *s)
{
    size_t old = s->n_sorted, n = s->n_all, add = n - old;
    if (add == 0)
        return KD_OK;
    kd__key **fresh = malloc(add * sizeof *fresh);
    if (!fresh)
        return KD_ENOMEM;
    memcpy(fresh, s->all + old, add * sizeof *fresh);
    qsort(fresh, add, sizeof *fresh, cmp_key);
    kd__key **v = realloc(s->sorted, n * sizeof *v);
    if (!v) {
        free(fresh);
        return KD_ENOMEM;
    }
    /* Merge from the back: v[0..old) sorted, fresh[0..add) sorted, into
     * v[0..n). Names are distinct, so no two compare equal. */
    size_t i = old, j = add, k = n;
    while (j > 0) {
        if (i > 0 && strcmp(v[i - 1]->name, fresh[j - 1]->name) > 0)
            v[--k] = v[--i];
        else
            v[--k] = fresh[--j];
    }
    free(fresh);
    s->sorted = v;
    s->n_sorted = n;
    return KD_OK;
}

/* Position of the first sorted key > after (or >= prefix when after is
 * NULL). The caller holds the namespace's sort_mu with the view sorted. */
static size_t scan_start(const kd__ns *s, const char *prefix, const char *after)
{
    const char *from = prefix;
    int exclusive = 0;
    if (after && strcmp(after, prefix) >= 0) {
        from = after;
        exclusive = 1;
    }
    size_t lo = 0, hi = s->n_sorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->sorted[mid]->name, from);
        if (c < 0 || (exclusive && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int kd_list_keys(kd_db *db, const char *ns, const char *prefix, const char *start_after, size_t limit, char ***keys,
                 size_t *n)
{
    if (!db || !keys || !n)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    *keys = NULL;
    *n = 0;
    if (!ns || !*ns)
        return kd__err(db, KD_EINVALID, "namespace must be non-empty");
    KD__WS_NS(db, ns);
    if (!prefix)
        prefix = "";
    size_t plen = strlen(prefix);
    name_list l = {0};
    int rc = KD_OK;
    pthread_rwlock_rdlock(&db->ix_lock);
    kd__ns *s = kd__qns_find(&db->ix, ns, strlen(ns));
    if (!s) {
        pthread_rwlock_unlock(&db->ix_lock);
        return KD_OK;
    }
    pthread_mutex_lock(&s->sort_mu);
    if ((rc = sort_keys(s)))
        goto out;
    for (size_t i = scan_start(s, prefix, start_after); i < s->n_sorted && !rc; i++) {
        const kd__key *k = s->sorted[i];
        if (strncmp(k->name, prefix, plen) != 0)
            break;
        if (!key_live(db, k))
            continue;
        if (limit && l.n >= limit)
            break;
        rc = list_add(&l, k->name);
    }
out:
    pthread_mutex_unlock(&s->sort_mu);
    pthread_rwlock_unlock(&db->ix_lock);
    if (rc) {
        kd_free_list(l.v, l.n);
        return kd__err(db, rc, "out of memory");
    }
    *keys = l.v;
    *n = l.n;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Scans
 * ---------------------------------------------------------------------- */

#define SCAN_PAGE 256

typedef struct scan_item {
    size_t key_off; /* in the page's name buffer */
    value_loc loc;
    kd_version version;
} scan_item;

/* Collect up to SCAN_PAGE keys after `after` under the read lock. Sets
 * *more when the page is full (there may be more keys). */
static int scan_page(kd_db *db, const char *ns, const char *prefix, const char *after, size_t want, int64_t at,
                     scan_item *items, size_t *n, kd__buf *names, int *more)
{
    *n = 0;
    *more = 0;
    kd__buf_reset(names);
    size_t plen = strlen(prefix);
    int rc = KD_OK;
    pthread_rwlock_rdlock(&db->ix_lock);
    kd__ns *s = kd__qns_find(&db->ix, ns, strlen(ns));
    if (!s) {
        kd__seg_pin(db); /* as below: the caller unpins */
        pthread_rwlock_unlock(&db->ix_lock);
        return KD_OK;
    }
    int64_t vis = kd__visible(db);
    int64_t when = at < vis ? at : vis;
    pthread_mutex_lock(&s->sort_mu);
    if ((rc = sort_keys(s)))
        goto out;
    for (size_t i = scan_start(s, prefix, after); i < s->n_sorted; i++) {
        const kd__key *k = s->sorted[i];
        if (strncmp(k->name, prefix, plen) != 0)
            break;
        uint32_t pos = kd__key_upper(k, when);
        if (!pos || kd__ver_value(db, k, pos - 1) == KD__NO_VALUE)
            continue;
        if (*n == want) {
            *more = 1;
            break;
        }
        scan_item *it = &items[(*n)++];
        it->key_off = names->len;
        if ((rc = kd__buf_append(names, k->name, (size_t)k->len + 1)))
            break;
        locate(db, k->vers[pos - 1].value, &it->loc);
        touch_versions(db, k, pos - 1);
        kd__fill_version(db, k, pos - 1, &it->version);
    }
out:
    pthread_mutex_unlock(&s->sort_mu);
    if (!rc)
        kd__seg_pin(db); /* the caller reads the page's values, then unpins */
    pthread_rwlock_unlock(&db->ix_lock);
    return rc;
}

int kd_scan(kd_db *db, const char *ns, const char *prefix, const char *start_after, size_t limit, int64_t at,
            kd_scan_fn fn, void *ctx)
{
    if (!db || !fn)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    if (!ns || !*ns)
        return kd__err(db, KD_EINVALID, "namespace must be non-empty");
    KD__WS_NS(db, ns);
    if (!prefix)
        prefix = "";
    scan_item *items = malloc(SCAN_PAGE * sizeof *items);
    kd__buf names = KD__BUF_INIT, val = KD__BUF_INIT;
    char *after = start_after ? strdup(start_after) : NULL;
    if (!items || (start_after && !after)) {
        free(items);
        free(after);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    int rc = KD_OK;
    size_t done = 0;
    for (;;) {
        size_t want = SCAN_PAGE, n;
        if (limit && limit - done < want)
            want = limit - done;
        int more;
        if ((rc = scan_page(db, ns, prefix, after, want, at, items, &n, &names, &more))) {
            kd__err(db, rc, "out of memory");
            break;
        }
        for (size_t i = 0; i < n && !rc; i++) {
            const char *v;
            size_t vlen;
            if ((rc = loc_bytes(db, &items[i].loc, &val, &v, &vlen)))
                break;
            rc = fn(ctx, names.data + items[i].key_off, v, vlen, &items[i].version);
        }
        kd__seg_unpin(db);
        done += n;
        kd__mem_trim_reads(db, 0);
        if (rc || !more || !n || (limit && done >= limit))
            break;
        free(after);
        if (!(after = strdup(names.data + items[n - 1].key_off))) {
            rc = kd__err(db, KD_ENOMEM, "out of memory");
            break;
        }
    }
    free(items);
    free(after);
    kd__buf_free(&names);
    kd__buf_free(&val);
    return rc;
}

/* ------------------------------------------------------------------------
 * Raw scans for queries (db_int.h)
 * ---------------------------------------------------------------------- */

#define RAW_PAGE 2048

static int scan_raw(kd_db *db, const char *ns, int64_t at, int applied, kd__scan_raw_fn fn, void *ctx);

int kd__scan_raw(kd_db *db, const char *ns, int64_t at, kd__scan_raw_fn fn, void *ctx)
{
    return scan_raw(db, ns, at, 0, fn, ctx);
}

int kd__scan_raw_applied(kd_db *db, const char *ns, kd__scan_raw_fn fn, void *ctx)
{
    return scan_raw(db, ns, KD_TIME_MAX, 1, fn, ctx);
}

static int scan_raw(kd_db *db, const char *ns, int64_t at, int applied, kd__scan_raw_fn fn, void *ctx)
{
    kd__scan_item *items = malloc(RAW_PAGE * sizeof *items);
    value_loc *locs = malloc(RAW_PAGE * sizeof *locs);
    kd__buf copy = KD__BUF_INIT; /* values of unmapped segments, and decompressed ones */
    kd__buf zraw = KD__BUF_INIT, zout = KD__BUF_INIT;
    if (!items || !locs) {
        free(items);
        free(locs);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    int rc = KD_OK;
    size_t next = 0; /* position in the namespace's creation-order list */
    for (;;) {
        size_t n = 0, unmapped = 0;
        pthread_rwlock_rdlock(&db->ix_lock);
        kd__ns *s = kd__qns_find(&db->ix, ns, strlen(ns));
        int64_t vis = applied ? KD_TIME_MAX : kd__visible(db);
        int64_t when = at < vis ? at : vis;
        while (s && next < s->n_all && n < RAW_PAGE) {
            const kd__key *k = s->all[next++];
            uint32_t pos = kd__key_upper(k, when);
            if (!pos || kd__ver_value(db, k, pos - 1) == KD__NO_VALUE)
                continue;
            kd__scan_item *it = &items[n];
            it->key = k;
            it->pos = pos - 1;
            it->ts = k->vers[pos - 1].ts;
            locate(db, k->vers[pos - 1].value, &locs[n]);
            touch_versions(db, k, pos - 1);
            it->value_len = locs[n].len;
            if (!locs[n].map || locs[n].zstd)
                unmapped++;
            n++;
        }
        int more = s && next < s->n_all;
        kd__seg_pin(db); /* until fn is done with the values */
        pthread_rwlock_unlock(&db->ix_lock);
        if (unmapped) {
            /* A segment that could not be mapped (rare), or values that
             * consolidation compressed: read or decompress those into one
             * buffer, then point at it. */
            kd__buf_reset(&copy);
            size_t *offs = malloc(n * sizeof *offs);
            if (!offs) {
                kd__seg_unpin(db);
                rc = kd__err(db, KD_ENOMEM, "out of memory");
                break;
            }
            for (size_t i = 0; i < n && !rc; i++) {
                if (locs[i].map && !locs[i].zstd)
                    continue;
                offs[i] = copy.len;
                const void *raw = locs[i].map ? locs[i].map + locs[i].off : NULL;
                if (raw)
                    kd__mem_read_touch(db, raw, locs[i].len); /* the budget counts mapped pages read */
                if (!raw) {
                    if ((rc = kd__buf_reserve(&zraw, locs[i].len)) ||
                        (rc = pread_full(db, &locs[i], zraw.data, locs[i].len))) {
                        rc = rc == KD_ENOMEM ? kd__err(db, rc, "out of memory") : rc;
                        break;
                    }
                    raw = zraw.data;
                }
                if (!locs[i].zstd) {
                    if (kd__buf_append(&copy, raw, locs[i].len)) {
                        rc = kd__err(db, KD_ENOMEM, "out of memory");
                        break;
                    }
                    continue;
                }
                if ((rc = unpack(db, &locs[i], raw, &zout)))
                    break;
                items[i].value_len = zout.len;
                if (kd__buf_append(&copy, zout.data, zout.len)) {
                    rc = kd__err(db, KD_ENOMEM, "out of memory");
                    break;
                }
            }
            for (size_t i = 0; i < n && !rc; i++)
                if (!locs[i].map || locs[i].zstd)
                    items[i].value = copy.data + offs[i];
            free(offs);
            if (rc) {
                kd__seg_unpin(db);
                break;
            }
        }
        for (size_t i = 0; i < n; i++)
            if (locs[i].map && !locs[i].zstd) {
                items[i].value = (const char *)locs[i].map + locs[i].off;
                kd__mem_read_touch(db, items[i].value, locs[i].len);
            }
        if (n)
            rc = fn(ctx, items, n);
        kd__seg_unpin(db);
        if (rc)
            break;
        kd__mem_trim_reads(db, 0);
        if (!more)
            break;
    }
    free(items);
    free(locs);
    kd__buf_free(&copy);
    kd__buf_free(&zraw);
    kd__buf_free(&zout);
    return rc;
}

void kd__fill_versions(kd_db *db, const kd__key *const *keys, const uint32_t *pos, size_t n, kd_version *out)
{
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < n; i++)
        kd__fill_version(db, keys[i], pos[i], &out[i]);
    pthread_rwlock_unlock(&db->ix_lock);
}

int kd__value_bytes(kd_db *db, uint32_t vidx, kd__buf *scratch, const char **p, size_t *len)
{
    value_loc loc;
    locate(db, vidx, &loc);
    if (loc.gone)
        return KD_EPRUNED;
    return loc_bytes(db, &loc, scratch, p, len);
}
