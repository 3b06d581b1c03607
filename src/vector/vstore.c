/*
 * vstore.c — versioned vectors and their search (kd_vector_*).
 *
 * A vector of (ns, key) is the value of key in the reserved namespace
 * "_kd.vec.<ns>" (the record of vstore.h), written with kd__commit like any
 * value, so durability, history, get_at, delete and the causal roots are
 * the storage engine's. This file adds the live side:
 *
 *   - groups: one per (namespace, model) with a dimension, an HNSW index
 *     (vector_int.h, cosine) over the current vectors, labelled by dense
 *     slots (a freed slot is reused by the next new key), and per slot the
 *     key, the metadata and the vector's length (the index keeps vectors
 *     normalized; every search path scores a vector from that direction
 *     and the length, see "Scores");
 *   - a map from key to (group, slot);
 *   - the commit hook, which moves a key's slot on every write to a vector
 *     namespace, in log order, under write_mu — puts, deletes, batches,
 *     and imports (repair): write.c calls it for every such write;
 *   - claims: a put checks its dimension against its group and holds a
 *     claim on it until its commit is done, so two concurrent puts of one
 *     new (namespace, model) cannot store two dimensions.
 *
 * Visibility: the hook runs before a sync=always write is durable, so the
 * indexes may be ahead of what readers may see. Such writes are kept in a
 * short "pending" list; a search leaves those keys' slots out and scores
 * their visible versions read from the log instead, so it answers exactly
 * for the visible state.
 *
 * Search: cosine goes to each group's index (kd__hnsw_search: itself exact
 * for small groups and selective filters), dot and L2 are brute force over
 * the group's slots, a search of the past is brute force over kd__scan_raw
 * at that time. Results of all groups are merged into one top k.
 *
 * Locking: vs->lock (writer-preferring rwlock) over groups, map, pending
 * and every index: searches and stats read; hook and claims write. Lock
 * order: write_mu, then vs->lock, then ix_lock (a search reads the log's
 * index under vs->lock; the writer never holds ix_lock while it waits for
 * vs->lock).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "json/json.h"
#include "query/filter.h"
#include "query/hooks.h"
#include "vector/vector_int.h"
#include "vector/vstore.h"

/* ------------------------------------------------------------------------
 * Names
 * ---------------------------------------------------------------------- */

/* The (qualified) user namespace of a qualified vector namespace
 * ("_kd.vec.ns", or "ws" 0xFF "_kd.vec.ns"), in buf when it needs one. */
static const char *vec_user(const char *qvns, char *buf)
{
    const char *local = kd__qns_local(qvns);
    if (local == qvns)
        return qvns + KD__NS_VEC_PREFIX_LEN;
    size_t w = (size_t)(local - qvns);
    memcpy(buf, qvns, w);
    snprintf(buf + w, KD__QNS_MAX - w, "%s", local + KD__NS_VEC_PREFIX_LEN);
    return buf;
}

/* The same from the index's namespace. */
static const char *vec_user_of(const kd__ns *s, char *buf)
{
    char q[KD__QNS_MAX];
    const char *qv = kd__qns_of(s, q);
    if (qv == s->name)
        return s->name + KD__NS_VEC_PREFIX_LEN;
    return vec_user(qv, buf);
}

/* "_kd.vec." + ns into vns[KD__QNS_MAX], with the checks that only vectors
 * need (the rest is kd__check_names'). A workspace's qualified ns
 * ("ws" 0xFF "ns") gives "ws" 0xFF "_kd.vec.ns". */
static int vec_ns(kd_db *db, const char *ns, char vns[KD__QNS_MAX], const char *where)
{
    if (!ns)
        return kd__err(db, KD_EINVALID, "%snamespace is missing", where);
    const char *local = kd__qns_local(ns);
    size_t w = (size_t)(local - ns);
    memcpy(vns, ns, w);
    vns += w;
    ns = local;
    size_t n = strlen(ns);
    if (n == 0)
        return kd__err(db, KD_EINVALID, "%snamespace is empty", where);
    if (!strncmp(ns, "_kd", 3))
        return kd__err(db, KD_ERESERVED, "%snamespace '%s' is reserved: names starting with _kd belong to the database",
                       where, ns);
    if (n > KD__VSTORE_MAX_NS)
        return kd__err(db, KD_EINVALID,
                       "%snamespace '%.40s...' is %zu bytes; a namespace holding vectors is at most %d bytes (255 "
                       "minus the 8 of the prefix \"" KD__NS_VEC_PREFIX "\")",
                       where, ns, n, KD__VSTORE_MAX_NS);
    memcpy(vns, KD__NS_VEC_PREFIX, KD__NS_VEC_PREFIX_LEN);
    memcpy(vns + KD__NS_VEC_PREFIX_LEN, ns, n + 1);
    return KD_OK;
}

static int check_model(kd_db *db, const char *model, const char *where)
{
    if (!model)
        return kd__err(db, KD_EINVALID, "%smodel is missing", where);
    size_t n = strlen(model);
    if (n == 0 || n > KD__VSTORE_MAX_MODEL)
        return kd__err(db, KD_EINVALID, "%smodel name is %zu bytes; it must be 1 to %d", where, n,
                       KD__VSTORE_MAX_MODEL);
    if (!kd__utf8_valid(model, n))
        return kd__err(db, KD_EINVALID, "%smodel name is not valid UTF-8", where);
    return KD_OK;
}

static int check_dim(kd_db *db, size_t dim, const char *what, const char *where)
{
    if (dim < 1 || dim > KD_VECTOR_MAX_DIM)
        return kd__err(db, KD_EINVALID, "%s%s has %zu dimensions; it must have 1 to %d", where, what, dim,
                       KD_VECTOR_MAX_DIM);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Groups, slots and the key map
 * ---------------------------------------------------------------------- */

kd__vgroup *kd__vstore_group_find(kd__vstore *vs, const char *ns, const char *model)
{
    for (size_t i = 0; i < vs->n_groups; i++)
        if (!strcmp(vs->groups[i]->ns, ns) && !strcmp(vs->groups[i]->model, model))
            return vs->groups[i];
    return NULL;
}

/* ------------------------------------------------------------------------
 * The tail: vectors applied at open but not inserted in the graph yet
 * ---------------------------------------------------------------------- */

static void tail_clear(kd__vgroup *g)
{
    for (uint32_t i = 0; i < g->n_tail; i++)
        free(g->tv[g->tail[i]].v);
    free(g->tv);
    free(g->tail);
    g->tv = NULL;
    g->tail = NULL;
    g->n_tv = g->n_tail = g->cap_tail = 0;
}

/* The direction of the tail's vector of `label` (what the graph will
 * hold), or NULL when it is not in the tail. */
static const float *tail_dir(const kd__vgroup *g, uint32_t label)
{
    return label < g->n_tv && g->tv[label].v ? g->tv[label].v + g->dim : NULL;
}

/* Put a copy of v (g->dim floats, as written) and its direction in the
 * tail under `label` (a live slot, not in the graph). KD_ENOMEM leaves the
 * tail as it was. */
static int tail_add(kd__vgroup *g, uint32_t label, const float *v)
{
    if (label >= g->n_tv) {
        uint32_t n = g->cap_slots > label ? g->cap_slots : label + 1;
        kd__vtail *t = realloc(g->tv, (size_t)n * sizeof *t);
        if (!t)
            return KD_ENOMEM;
        memset(t + g->n_tv, 0, (size_t)(n - g->n_tv) * sizeof *t);
        g->tv = t;
        g->n_tv = n;
    }
    if (g->n_tail == g->cap_tail) {
        uint32_t cap = g->cap_tail ? g->cap_tail * 2 : 64;
        uint32_t *l = realloc(g->tail, (size_t)cap * sizeof *l);
        if (!l)
            return KD_ENOMEM;
        g->tail = l;
        g->cap_tail = cap;
    }
    float *c = malloc((size_t)g->dim * 2 * sizeof *c);
    if (!c)
        return KD_ENOMEM;
    memcpy(c, v, (size_t)g->dim * sizeof *c);
    kd__vec_normalize(v, g->dim, c + g->dim);
    g->tv[label] = (kd__vtail){c, g->n_tail};
    g->tail[g->n_tail++] = label;
    return KD_OK;
}

/* Take `label` out of the tail (a no-op when it is not there); the arrays
 * go once the tail is empty. */
static void tail_drop(kd__vgroup *g, uint32_t label)
{
    if (label >= g->n_tv || !g->tv[label].v)
        return;
    uint32_t pos = g->tv[label].pos, last = g->tail[--g->n_tail];
    g->tail[pos] = last;
    g->tv[last].pos = pos;
    free(g->tv[label].v);
    g->tv[label].v = NULL;
    if (!g->n_tail)
        tail_clear(g);
}

void kd__vstore_group_free(kd__vgroup *g)
{
    if (!g)
        return;
    tail_clear(g);
    for (uint32_t i = 0; i < g->n_slots; i++)
        free(g->slots[i].meta);
    free(g->slots);
    free(g->free_slots);
    kd__hnsw_free(g->h);
    free(g->ns);
    free(g->model);
    free(g);
}

/* Seed of a group's random levels: from its names, so the same writes give
 * the same graph. */
static uint64_t group_seed(const char *ns, const char *model)
{
    return kd__hash_bytes(model, strlen(model), kd__hash_bytes(ns, strlen(ns), 0x6b64766563ull));
}

static int new_index(kd__vstore *vs, const char *ns, const char *model, uint32_t dim, kd__hnsw **h)
{
    return kd__hnsw_new(dim, KD__VEC_COSINE, vs->m, vs->ef_construction, group_seed(ns, model), h);
}

int kd__vstore_group_add(kd__vstore *vs, const char *ns, const char *model, uint32_t dim, kd__vgroup **out)
{
    if (vs->n_groups == vs->cap_groups) {
        size_t cap = vs->cap_groups ? vs->cap_groups * 2 : 8;
        kd__vgroup **v = realloc(vs->groups, cap * sizeof *v);
        if (!v)
            return KD_ENOMEM;
        vs->groups = v;
        vs->cap_groups = cap;
    }
    kd__vgroup *g = calloc(1, sizeof *g);
    if (!g || !(g->ns = strdup(ns)) || !(g->model = strdup(model))) {
        kd__vstore_group_free(g);
        return KD_ENOMEM;
    }
    g->dim = dim;
    int rc = new_index(vs, ns, model, dim, &g->h);
    if (rc) {
        kd__vstore_group_free(g);
        return rc;
    }
    vs->groups[vs->n_groups++] = g;
    *out = g;
    return KD_OK;
}

/* A group without live vectors or claims takes a new dimension: a new,
 * empty index. */
static int group_reset(kd__vstore *vs, kd__vgroup *g, uint32_t dim)
{
    kd__hnsw *h;
    int rc = new_index(vs, g->ns, g->model, dim, &h);
    if (rc)
        return rc;
    kd__hnsw_free(g->h);
    g->h = h;
    tail_clear(g); /* empty already: its vectors are live */
    for (uint32_t i = 0; i < g->n_slots; i++)
        free(g->slots[i].meta);
    g->n_slots = g->n_free = 0;
    g->meta_bytes = 0;
    g->dim = dim;
    g->resets++; /* a save copying the old index starts over */
    return KD_OK;
}

/* A slot for a new vector: a free one, else a new label. The free list
 * always has room for every slot, so releasing one never fails. */
static int slot_take(kd__vgroup *g, uint32_t *out)
{
    if (g->n_free) {
        *out = g->free_slots[--g->n_free];
        return KD_OK;
    }
    if (g->n_slots > KD__HNSW_MAX_LABEL)
        return KD_ENOMEM;
    if (g->n_slots == g->cap_slots) {
        uint32_t cap = g->cap_slots ? g->cap_slots + g->cap_slots / 2 : 64;
        kd__vslot *s = realloc(g->slots, (size_t)cap * sizeof *s);
        if (!s)
            return KD_ENOMEM;
        g->slots = s;
        uint32_t *f = realloc(g->free_slots, (size_t)cap * sizeof *f);
        if (!f)
            return KD_ENOMEM;
        g->free_slots = f;
        g->cap_slots = g->cap_free = cap;
    }
    memset(&g->slots[g->n_slots], 0, sizeof g->slots[0]);
    *out = g->n_slots++;
    return KD_OK;
}

static void slot_release(kd__vgroup *g, uint32_t label)
{
    tail_drop(g, label);
    kd__hnsw_mark(g->h, label); /* for a save copying the group */
    kd__vslot *s = &g->slots[label];
    g->meta_bytes -= s->meta_len;
    free(s->meta);
    memset(s, 0, sizeof *s);
    g->free_slots[g->n_free++] = label;
}

static size_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static kd__vloc *map_find(const kd__vstore *vs, const kd__key *key)
{
    if (!vs->map_cap)
        return NULL;
    size_t mask = vs->map_cap - 1;
    for (size_t i = ptr_hash(key) & mask;; i = (i + 1) & mask) {
        if (!vs->map[i].key)
            return NULL;
        if (vs->map[i].key == key)
            return &vs->map[i];
    }
}

static int map_grow(kd__vstore *vs)
{
    size_t cap = vs->map_cap ? vs->map_cap * 2 : 1024;
    kd__vloc *m = calloc(cap, sizeof *m);
    if (!m)
        return KD_ENOMEM;
    for (size_t i = 0; i < vs->map_cap; i++) {
        if (!vs->map[i].key)
            continue;
        size_t j = ptr_hash(vs->map[i].key) & (cap - 1);
        while (m[j].key)
            j = (j + 1) & (cap - 1);
        m[j] = vs->map[i];
    }
    free(vs->map);
    vs->map = m;
    vs->map_cap = cap;
    return KD_OK;
}

int kd__vstore_map_put(kd__vstore *vs, const kd__key *key, kd__vgroup *g, uint32_t slot)
{
    if ((vs->map_n + 1) * 4 > vs->map_cap * 3 && map_grow(vs))
        return KD_ENOMEM;
    size_t mask = vs->map_cap - 1, i = ptr_hash(key) & mask;
    while (vs->map[i].key && vs->map[i].key != key)
        i = (i + 1) & mask;
    if (!vs->map[i].key)
        vs->map_n++;
    vs->map[i] = (kd__vloc){key, g, slot};
    return KD_OK;
}

/* Remove by backward shift (linear probing keeps no tombstones). */
static void map_del(kd__vstore *vs, kd__vloc *at)
{
    size_t mask = vs->map_cap - 1, i = (size_t)(at - vs->map);
    vs->map[i].key = NULL;
    vs->map_n--;
    for (size_t j = (i + 1) & mask; vs->map[j].key; j = (j + 1) & mask) {
        size_t home = ptr_hash(vs->map[j].key) & mask;
        /* Move j into the hole at i when its home is not in (i, j]. */
        int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            vs->map[i] = vs->map[j];
            vs->map[j].key = NULL;
            i = j;
        }
    }
}

/* ------------------------------------------------------------------------
 * Applying writes (the commit hook, and the rebuild at open)
 * ---------------------------------------------------------------------- */

/* Make the indexes hold `value` (a record, or NULL for a delete) as the
 * vector of `key` in user namespace ns. A value that is not a vector
 * record (never written by this library) is logged and left out, as it
 * is from searches of the past. With `defer` the vector goes to its
 * group's tail instead of the graph (the open after a crash). Lock held
 * for writing. */
static int apply(kd_db *db, kd__vstore *vs, const kd__key *key, const char *ns, const char *value, size_t len,
                 int defer)
{
    kd__vloc *loc = map_find(vs, key);
    if (loc) {
        kd__vgroup *g = loc->g;
        uint32_t slot = loc->slot;
        kd__hnsw_remove(g->h, slot);
        slot_release(g, slot);
        g->live--;
        map_del(vs, loc);
    }
    if (!value)
        return KD_OK;
    kd__vrec r;
    char err[200];
    int rc = kd__vrec_parse(value, len, &r, err, sizeof err);
    if (!rc)
        rc = kd__vrec_vector(&r, vs->vbuf, err, sizeof err);
    if (!rc && kd__vec_validate(vs->vbuf, r.dim, err, sizeof err))
        rc = KD_EINVALID;
    if (rc == KD_EINVALID) {
        kd__log(db, KD_LOG_WARN, "vector %s/%s is not a valid vector record (%s); it is not indexed", ns, key->name,
                err);
        return KD_OK;
    }
    if (rc)
        return rc;
    kd__vgroup *g = kd__vstore_group_find(vs, ns, r.model);
    if (g && g->dim != r.dim) {
        if (g->live || g->inflight) {
            kd__log(db, KD_LOG_ERROR, "vector %s/%s has %u dimensions but model %s there has %u; indexes disabled "
                    "until reopen", ns, key->name, r.dim, r.model, g->dim);
            return KD_EINVALID;
        }
        if ((rc = group_reset(vs, g, r.dim)))
            return rc;
    }
    if (!g && (rc = kd__vstore_group_add(vs, ns, r.model, r.dim, &g)))
        return rc;
    uint32_t slot;
    if ((rc = slot_take(g, &slot)))
        return rc;
    kd__vslot *s = &g->slots[slot];
    if (!(s->meta = malloc(r.meta_len + 1))) {
        slot_release(g, slot);
        return KD_ENOMEM;
    }
    memcpy(s->meta, r.meta, r.meta_len);
    s->meta[r.meta_len] = '\0';
    s->meta_len = (uint32_t)r.meta_len;
    s->norm = kd__vec_norm(vs->vbuf, r.dim);
    g->meta_bytes += r.meta_len;
    rc = defer ? tail_add(g, slot, vs->vbuf) : kd__hnsw_add(g->h, slot, vs->vbuf, r.dim);
    if (rc) {
        slot_release(g, slot);
        return rc;
    }
    if ((rc = kd__vstore_map_put(vs, key, g, slot))) {
        if (!defer)
            kd__hnsw_remove(g->h, slot);
        slot_release(g, slot); /* and out of the tail */
        return rc;
    }
    s->key = key;
    kd__hnsw_mark(g->h, slot); /* for a save copying the group (the add marked it too, not the tail) */
    g->live++;
    return KD_OK;
}

static void pending_add(kd_db *db, kd__vstore *vs, const kd__key *key, int64_t ts)
{
    int64_t vis = kd__visible(db);
    size_t w = 0;
    for (size_t i = 0; i < vs->n_pend; i++)
        if (vs->pend[i].ts > vis)
            vs->pend[w++] = vs->pend[i];
    vs->n_pend = w;
    if (vs->n_pend == vs->cap_pend) {
        size_t cap = vs->cap_pend ? vs->cap_pend * 2 : 64;
        kd__vpending *p = realloc(vs->pend, cap * sizeof *p);
        if (!p) {
            vs->stale = 1; /* cannot tell searches what is not visible yet */
            return;
        }
        vs->pend = p;
        vs->cap_pend = cap;
    }
    vs->pend[vs->n_pend++] = (kd__vpending){key, ts};
}

void kd__vstore_on_write(kd_db *db, const kd__applied *w)
{
    kd__vstore *vs = db->vs;
    if (!vs || !w->k)
        return;
    pthread_rwlock_wrlock(&vs->lock);
    kd__vectors_root_advance(vs->root, w->rec->write_id);
    if (!vs->stale) {
        char ub[KD__QNS_MAX];
        int rc = apply(db, vs, w->k, vec_user_of(w->k->ns, ub), w->value, w->value_len, 0);
        if (rc) {
            /* The indexes no longer match the log: answer every search from
             * the log until the next open rebuilds them. */
            vs->stale = 1;
            kd__log(db, KD_LOG_ERROR, "vector index update failed (%s); searches are exact scans until reopen",
                    kd_strerror(rc));
        } else {
            pending_add(db, vs, w->k, w->rec->ts);
        }
    }
    vs->last_ts = w->rec->ts;
    vs->applied++;
    pthread_rwlock_unlock(&vs->lock);
}

void kd__vstore_forget(kd_db *db, const kd__key *k)
{
    kd__vstore *vs = db->vs;
    if (!vs)
        return;
    pthread_rwlock_wrlock(&vs->lock);
    char ub[KD__QNS_MAX];
    if (!vs->stale)
        (void)apply(db, vs, k, vec_user_of(k->ns, ub), NULL, 0, 0); /* a removal cannot fail */
    pthread_rwlock_unlock(&vs->lock);
}

/* ------------------------------------------------------------------------
 * Open, save, close
 * ---------------------------------------------------------------------- */

/* At open, after the file is loaded and the log's later writes applied:
 * let go of the vectors that went with their dropped workspace since the
 * file was saved (a compaction, which kd__vstore_forget told only the
 * indexes in memory then). */
static void forget_dropped(kd_db *db, kd__vstore *vs)
{
    for (size_t i = 0; i < vs->n_groups; i++) {
        kd__vgroup *g = vs->groups[i];
        for (uint32_t s = 0; s < g->n_slots; s++) {
            const kd__key *k = g->slots[s].key;
            if (k && k->n && kd__ver_dropped(k->ns, &k->vers[k->n - 1])) {
                char ub[KD__QNS_MAX];
                (void)apply(db, vs, k, vec_user_of(k->ns, ub), NULL, 0, 0); /* a removal cannot fail */
            }
        }
    }
}

/* Names of the reserved vector namespaces ("_kd.vec.…") that have keys. */
static int vector_namespaces(kd_db *db, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cnt = 0, cap = 0;
    char **v = NULL;
    int rc = KD_OK;
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < db->ix.ns_count && !rc; i++) {
        const kd__ns *s = db->ix.ns_list[i];
        if (!kd__is_vectors_ns(s->name, s->name_len) || !s->n_all)
            continue; /* every workspace's: names qualified */
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = KD_ENOMEM;
                break;
            }
            v = nv;
        }
        char q[KD__QNS_MAX];
        if (!(v[cnt] = strdup(kd__qns_of(s, q))))
            rc = KD_ENOMEM;
        else
            cnt++;
    }
    pthread_rwlock_unlock(&db->ix_lock);
    if (rc) {
        kd_free_list(v, cnt);
        return rc;
    }
    *out = v;
    *n = cnt;
    return KD_OK;
}

typedef struct rebuild_ctx {
    kd_db *db;
    kd__vstore *vs;
    const char *ns; /* user namespace */
    uint64_t count;
} rebuild_ctx;

static int rebuild_page(void *arg, const kd__scan_item *items, size_t n)
{
    rebuild_ctx *c = arg;
    for (size_t i = 0; i < n; i++) {
        int rc = apply(c->db, c->vs, items[i].key, c->ns, items[i].value, items[i].value_len, 0);
        if (rc == KD_EINVALID) { /* a dimension clash, logged: search the log instead */
            c->vs->stale = 1;
            continue;
        }
        if (rc)
            return rc;
        c->count++;
    }
    return KD_OK;
}

static void clear_groups(kd__vstore *vs)
{
    for (size_t i = 0; i < vs->n_groups; i++)
        kd__vstore_group_free(vs->groups[i]);
    vs->n_groups = 0;
    free(vs->map);
    vs->map = NULL;
    vs->map_cap = vs->map_n = 0;
}

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Every version of every vector namespace, oldest first: what the vectors
 * root chains over, in log order (timestamps are unique and increasing). */
typedef struct vwrite {
    int64_t ts;
    const kd__key *key;
    uint32_t pos; /* in key->vers */
} vwrite;

static int cmp_vwrite(const void *a, const void *b)
{
    const vwrite *x = a, *y = b;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

/* Caller holds write_mu (keys and versions cannot change). */
static int vector_writes(kd_db *db, vwrite **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cnt = 0, cap = 0;
    vwrite *v = NULL;
    for (size_t i = 0; i < db->ix.ns_count; i++) {
        const kd__ns *s = db->ix.ns_list[i];
        if (!kd__is_vectors_ns(s->name, s->name_len))
            continue;
        for (size_t j = 0; j < s->n_all; j++) {
            const kd__key *k = s->all[j];
            for (uint32_t p = 0; p < k->n; p++) {
                if (cnt == cap) {
                    cap = cap ? cap * 2 : 1024;
                    vwrite *nv = realloc(v, cap * sizeof *nv);
                    if (!nv) {
                        free(v);
                        return KD_ENOMEM;
                    }
                    v = nv;
                }
                v[cnt++] = (vwrite){k->vers[p].ts, k, p};
            }
        }
    }
    qsort(v, cnt, sizeof *v, cmp_vwrite);
    *out = v;
    *n = cnt;
    return KD_OK;
}

/* The index file held the vector writes up to `ts`, whose vectors root was
 * `root`; the log has more. Check that the log's vector writes up to ts
 * chain to that root (so the file is of this history), then apply the
 * writes after it: to slots, metadata and the key map at once, their
 * vectors to the groups' tails (an HNSW insert costs ~1 ms; the upkeep
 * thread makes them, kd__vstore_index_tail). KD_ENOTFOUND (why set) when the file is of another
 * history; KD_ENOMEM; KD_EINVALID for a dimension clash (then rebuild). */
static int catch_up(kd_db *db, kd__vstore *vs, const uint8_t root[KD__HASH_LEN], int64_t ts, uint64_t *applied,
                    char *why, size_t whylen)
{
    *applied = 0;
    pthread_mutex_lock(&db->write_mu);
    vwrite *w;
    size_t n;
    int rc = vector_writes(db, &w, &n);
    if (rc) {
        pthread_mutex_unlock(&db->write_mu);
        return rc;
    }
    uint8_t chain[KD__HASH_LEN] = {0};
    size_t i = 0;
    for (; i < n && w[i].ts <= ts; i++)
        kd__vectors_root_advance(chain, w[i].key->vers[w[i].pos].write_id);
    if (memcmp(chain, root, KD__HASH_LEN) || i == 0 || w[i - 1].ts != ts) {
        snprintf(why, whylen, KD__VSTORE_FILE " is of another history than the log");
        rc = KD_ENOTFOUND;
    }
    kd__buf scratch = KD__BUF_INIT;
    for (; i < n && !rc; i++) {
        const kd__key *k = w[i].key;
        const kd__ver *v = &k->vers[w[i].pos];
        uint32_t vidx = kd__ver_value(db, k, w[i].pos); /* none: deleted, or gone with its workspace */
        const char *value = NULL;
        size_t len = 0;
        if (vidx != KD__NO_VALUE && (rc = kd__value_bytes(db, vidx, &scratch, &value, &len)))
            break;
        char ub[KD__QNS_MAX];
        rc = apply(db, vs, k, vec_user_of(k->ns, ub), value, len, 1);
        kd__vectors_root_advance(chain, v->write_id);
        vs->last_ts = v->ts;
        (*applied)++;
    }
    if (!rc && memcmp(chain, db->vectors_root, KD__HASH_LEN)) {
        snprintf(why, whylen, "the log's vector writes do not chain to its vectors root");
        rc = KD_ENOTFOUND;
    }
    kd__buf_free(&scratch);
    free(w);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

static int rebuild(kd_db *db, kd__vstore *vs, uint64_t *count)
{
    char **names;
    size_t nn;
    int rc = vector_namespaces(db, &names, &nn);
    if (rc)
        return rc;
    *count = 0;
    pthread_mutex_lock(&db->write_mu);
    for (size_t i = 0; i < nn && !rc; i++) {
        char ub[KD__QNS_MAX];
        rebuild_ctx c = {db, vs, vec_user(names[i], ub), 0};
        rc = kd__scan_raw_applied(db, names[i], rebuild_page, &c);
        *count += c.count;
    }
    /* the newest vector write: what a file saved now would hold */
    for (size_t i = 0; i < nn && !rc; i++) {
        const kd__ns *s = kd__qns_find(&db->ix, names[i], strlen(names[i]));
        for (size_t j = 0; s && j < s->n_all; j++)
            if (s->all[j]->n && s->all[j]->vers[s->all[j]->n - 1].ts > vs->last_ts)
                vs->last_ts = s->all[j]->vers[s->all[j]->n - 1].ts;
    }
    pthread_mutex_unlock(&db->write_mu);
    kd_free_list(names, nn);
    return rc;
}

/* Bytes copied per hold of the lock while a save copies the indexes
 * (holds of 0.4-0.9 ms measured at 128 dimensions), and passes over the labels that changed meanwhile before the
 * last hold copies the rest whatever their number. */
#define SAVE_STEP_BYTES (1u << 20)
#define SAVE_PASSES 4

int kd__vstore_open(kd_db *db, char *err, size_t errlen)
{
    kd__vstore *vs = calloc(1, sizeof *vs);
    if (!vs || !(vs->vbuf = malloc(KD_VECTOR_MAX_DIM * sizeof *vs->vbuf))) {
        free(vs);
        snprintf(err, errlen, "out of memory");
        return KD_ENOMEM;
    }
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Searches must not starve the commit hook, which holds write_mu. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&vs->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_rwlock_init(&vs->import_gate, NULL);
    pthread_mutex_init(&vs->save_mu, NULL);
    vs->save_step_bytes = SAVE_STEP_BYTES;
    vs->m = db->opt.vec_m;
    vs->ef_construction = db->opt.vec_ef_construction;
    vs->ef_search = db->opt.vec_ef_search;
    db->vs = vs;
    const char *simd_note = kd__vec_kernel_note();
    if (simd_note)
        kd__log(db, KD_LOG_WARN, "vector kernels: %s", simd_note);
    memcpy(vs->root, db->vectors_root, KD__HASH_LEN);
    if (kd__root_is_zero(db->vectors_root))
        return KD_OK; /* no vector was ever written */

    double t0 = mono_s();
    char why[512] = "";
    uint8_t file_root[KD__HASH_LEN];
    int64_t file_ts = 0;
    uint64_t applied = 0;
    int rc = kd__vstore_file_load(db, vs, file_root, &file_ts, why, sizeof why);
    if (rc == KD_OK) {
        vs->last_ts = file_ts;
        if (memcmp(file_root, db->vectors_root, KD__HASH_LEN))
            rc = catch_up(db, vs, file_root, file_ts, &applied, why, sizeof why);
    }
    if (rc == KD_OK)
        forget_dropped(db, vs);
    if (rc == KD_OK) {
        /* The file holds what it held; the writes applied after it make it
         * due for saving again. */
        memcpy(vs->saved_root, file_root, KD__HASH_LEN);
        vs->have_saved = 1;
        vs->applied = applied;
        uint64_t live = 0, tail = 0;
        for (size_t i = 0; i < vs->n_groups; i++) {
            live += vs->groups[i]->live;
            tail += vs->groups[i]->n_tail;
        }
        double dt = mono_s() - t0;
        kd__log(db, KD_LOG_INFO,
                "vector indexes: %llu vectors loaded from " KD__VSTORE_FILE ", %llu later writes applied, in %.3f s; "
                "%llu vectors wait to enter the graphs",
                (unsigned long long)live, (unsigned long long)applied, dt, (unsigned long long)tail);
    } else {
        if (rc != KD_ENOTFOUND || why[0])
            kd__log(db, KD_LOG_WARN, "vector index file not used (%s); rebuilding from the log", why);
        clear_groups(vs);
        vs->stale = 0;
        vs->last_ts = 0;
        uint64_t count = 0;
        t0 = mono_s();
        rc = rebuild(db, vs, &count);
        if (rc) {
            snprintf(err, errlen, "cannot build the vector indexes: %s", kd_strerror(rc));
            return rc;
        }
        vs->applied = count ? count : 1; /* not saved yet */
        double dt = mono_s() - t0;
        kd__log(db, KD_LOG_INFO, "vector indexes: %llu vectors rebuilt from the log in %.3f s (%.0f vectors/s)",
                (unsigned long long)count, dt, dt > 0 ? (double)count / dt : 0.0);
    }
    return KD_OK;
}

/* Is a save due? Lock held. */
static int save_due(kd_db *db, kd__vstore *vs, int force, char *what, size_t whatlen)
{
    uint64_t live = 0, tail = 0;
    for (size_t i = 0; i < vs->n_groups; i++) {
        live += vs->groups[i]->live;
        tail += vs->groups[i]->n_tail;
    }
    /* Replaying a vector write at open costs an HNSW insert (~1 ms) once
     * the upkeep thread makes it: save once an eighth of the vectors, at
     * least 1000 writes, would replay. The file holds graphs only: while
     * vectors wait in a tail it is not written (the one from before stays
     * valid: the next open applies the writes after it again). */
    uint64_t need = force ? 1 : (live / 8 > 1000 ? live / 8 : 1000);
    int due = !vs->stale && !kd__root_is_zero(vs->root) && vs->applied - vs->applied_saved >= need &&
              !(vs->have_saved && !memcmp(vs->saved_root, vs->root, KD__HASH_LEN));
    if (due && tail) {
        due = 0;
        if (force) {
            snprintf(what, whatlen, "not saved: %llu vectors are not in the graphs yet", (unsigned long long)tail);
            kd__log(db, KD_LOG_INFO, "vector index file not saved: %llu vectors are not in the graphs yet; the "
                    "next open applies the writes after the file from before", (unsigned long long)tail);
        }
    }
    return due;
}

/* A hold of the lock for reading by a save, timed: the vector writers
 * wait that long (and every writer behind them on write_mu). */
typedef struct save_holds {
    double t0, max_ms;
    unsigned n;
} save_holds;

static void hold_begin(kd__vstore *vs, save_holds *h)
{
    pthread_rwlock_rdlock(&vs->lock);
    h->t0 = mono_s();
}

static void hold_end(kd__vstore *vs, save_holds *h)
{
    double ms = (mono_s() - h->t0) * 1e3;
    pthread_rwlock_unlock(&vs->lock);
    if (ms > h->max_ms)
        h->max_ms = ms;
    h->n++;
    if (vs->save_pause_us)
        usleep(vs->save_pause_us);
}

/* Copy the indexes for a save, in holds of the lock that let writers in
 * between (vstore_file.c); the last hold stamps the copy with the root of
 * that moment, and *live, *mark receive the vectors and `applied` then,
 * *during the vector writes made while the copy was made.
 * KD_ECONFLICT when an update failed meanwhile (vs->stale: the indexes
 * are no longer the log's, nothing may be saved), else as the snapshot
 * functions. */
static int save_copy(kd__vstore *vs, kd__vsnap **out, uint8_t root[KD__HASH_LEN], uint64_t *live, uint64_t *mark,
                     uint64_t *during, save_holds *holds)
{
    kd__vsnap *snap = NULL;
    hold_begin(vs, holds);
    uint64_t first = vs->applied;
    int rc = vs->stale ? KD_ECONFLICT : kd__vstore_file_snapshot_begin(vs, &snap);
    hold_end(vs, holds);
    if (!rc)
        rc = kd__vstore_file_snapshot_reserve(snap);
    for (int pass = 0; !rc && pass < SAVE_PASSES; pass++) {
        size_t in_pass = 0, copied;
        int more = 1;
        kd__vstore_file_snapshot_pass(snap);
        while (!rc && more) {
            hold_begin(vs, holds);
            rc = vs->stale ? KD_ECONFLICT : kd__vstore_file_snapshot_step(snap, vs->save_step_bytes, &copied, &more);
            hold_end(vs, holds);
            in_pass += copied;
        }
        if (in_pass < 256) /* few changed during the pass: the last hold takes them */
            break;
    }
    hold_begin(vs, holds);
    if (!rc)
        rc = vs->stale ? KD_ECONFLICT : kd__vstore_file_snapshot_finish(vs, snap, vs->root, vs->last_ts);
    if (!rc) {
        memcpy(root, vs->root, KD__HASH_LEN);
        *mark = vs->applied;
        *during = vs->applied - first;
        *live = 0;
        for (size_t i = 0; i < vs->n_groups; i++)
            *live += vs->groups[i]->live;
    }
    kd__vstore_file_snapshot_end(snap);
    hold_end(vs, holds);
    if (rc) {
        kd__vstore_file_snapshot_free(snap);
        snap = NULL;
    }
    *out = snap;
    return rc;
}

int kd__vstore_save(kd_db *db, int force, char *what, size_t whatlen)
{
    kd__vstore *vs = db->vs;
    what[0] = '\0'; /* stays empty when nothing was due */
    if (!vs)
        return KD_OK;
    pthread_mutex_lock(&vs->save_mu);
    pthread_rwlock_rdlock(&vs->lock);
    int due = save_due(db, vs, force, what, whatlen);
    pthread_rwlock_unlock(&vs->lock);
    if (!due) {
        pthread_mutex_unlock(&vs->save_mu);
        return KD_OK;
    }
    char *bytes = NULL;
    size_t len = 0;
    uint8_t root[KD__HASH_LEN];
    uint64_t live = 0, mark = 0, during = 0;
    save_holds holds = {0, 0, 0};
    kd__vsnap *snap;
    int rc = save_copy(vs, &snap, root, &live, &mark, &during, &holds);
    if (rc == KD_ECONFLICT) { /* an update failed meanwhile: nothing is saved until reopen */
        pthread_mutex_unlock(&vs->save_mu);
        return KD_OK;
    }
    if (rc == KD_OK)
        rc = kd__vstore_file_encode(snap, &bytes, &len);
    kd__vstore_file_snapshot_free(snap);
    if (rc == KD_OK)
        rc = kd__vstore_file_write(db, bytes, len, what, whatlen);
    else
        snprintf(what, whatlen, "%s",
                 rc == KD_ETOOBIG     ? "a group is too large to save"
                 : rc == KD_EINVALID ? "the copy of the indexes was incomplete (a bug; nothing was saved)"
                                     : "out of memory");
    free(bytes);
    if (rc == KD_OK) {
        pthread_rwlock_wrlock(&vs->lock);
        memcpy(vs->saved_root, root, KD__HASH_LEN);
        vs->have_saved = 1;
        vs->applied_saved = mark;
        pthread_rwlock_unlock(&vs->lock);
        snprintf(what, whatlen,
                 "%llu vectors, %zu bytes; writers held at most %.2f ms at a time (%u holds, %llu vector writes "
                 "meanwhile)",
                 (unsigned long long)live, len, holds.max_ms, holds.n, (unsigned long long)during);
    }
    pthread_mutex_unlock(&vs->save_mu);
    return rc;
}

void kd__vstore_free(kd_db *db)
{
    kd__vstore *vs = db->vs;
    if (!vs)
        return;
    clear_groups(vs);
    free(vs->groups);
    free(vs->pend);
    free(vs->vbuf);
    pthread_rwlock_destroy(&vs->lock);
    pthread_rwlock_destroy(&vs->import_gate);
    pthread_mutex_destroy(&vs->save_mu);
    free(vs);
    db->vs = NULL;
}

static uint64_t group_bytes(const kd__vgroup *g)
{
    return kd__hnsw_memory(g->h) + (uint64_t)g->cap_slots * (sizeof(kd__vslot) + sizeof(uint32_t)) +
           g->meta_bytes + g->live * (sizeof(kd__vloc) * 4 / 3) + (uint64_t)g->n_tv * sizeof(kd__vtail) +
           (uint64_t)g->cap_tail * sizeof(uint32_t) + (uint64_t)g->n_tail * g->dim * 2 * sizeof(float);
}

void kd__vstore_totals(kd_db *db, uint64_t *vectors, uint64_t *bytes)
{
    *vectors = *bytes = 0;
    kd__vstore *vs = db->vs;
    if (!vs)
        return;
    pthread_rwlock_rdlock(&vs->lock);
    for (size_t i = 0; i < vs->n_groups; i++) {
        *vectors += vs->groups[i]->live;
        *bytes += group_bytes(vs->groups[i]);
    }
    pthread_rwlock_unlock(&vs->lock);
}

uint64_t kd__vstore_unindexed(kd_db *db)
{
    kd__vstore *vs = db->vs;
    uint64_t n = 0;
    if (!vs)
        return 0;
    pthread_rwlock_rdlock(&vs->lock);
    for (size_t i = 0; i < vs->n_groups; i++)
        n += vs->groups[i]->n_tail;
    pthread_rwlock_unlock(&vs->lock);
    return n;
}

int kd__vstore_index_tail(kd_db *db, int64_t budget_ns, const int *stop, uint64_t *indexed)
{
    kd__vstore *vs = db->vs;
    uint64_t done = 0;
    int rc = KD_OK;
    if (indexed)
        *indexed = 0;
    if (!vs)
        return KD_OK;
    double t0 = mono_s();
    for (int more = 1; more && !rc;) {
        more = 0;
        pthread_rwlock_wrlock(&vs->lock);
        double h0 = mono_s();
        for (size_t gi = 0; gi < vs->n_groups && !vs->stale && !more;) {
            kd__vgroup *g = vs->groups[gi];
            if (!g->n_tail) {
                gi++;
                continue;
            }
            uint32_t label = g->tail[g->n_tail - 1];
            rc = kd__hnsw_add(g->h, label, g->tv[label].v, g->dim);
            if (rc == KD_ENOMEM)
                break; /* it stays in the tail, searched there */
            if (rc) {
                /* validated when it was applied: the group no longer
                 * matches its vectors, so searches go to the log */
                vs->stale = 1;
                kd__log(db, KD_LOG_ERROR, "vector index insert failed (%s); searches are exact scans until reopen",
                        kd_strerror(rc));
                break;
            }
            tail_drop(g, label);
            done++;
            /* writers and searches wait meanwhile: a few inserts at a time */
            if ((mono_s() - h0) * 1e9 >= KD__VSTORE_TAIL_HOLD_NS)
                more = 1;
        }
        pthread_rwlock_unlock(&vs->lock);
        if (more &&
            ((stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE)) || (budget_ns && (mono_s() - t0) * 1e9 >= budget_ns)))
            break;
        if (more) {
            struct timespec pause = {0, 50000}; /* let the waiting writer or search in */
            nanosleep(&pause, NULL);
        }
    }
    if (indexed)
        *indexed = done;
    return rc == KD_ENOMEM ? KD_ENOMEM : KD_OK;
}

/* ------------------------------------------------------------------------
 * Writes
 * ---------------------------------------------------------------------- */

/* Claim the dimension of (ns, model) for one put: KD_OK with the group's
 * claim count raised, or KD_EINVALID when its live or claimed vectors have
 * another dimension. Lock held for writing. */
static int claim(kd_db *db, kd__vstore *vs, const char *ns, const char *model, uint32_t dim, const char *where,
                 kd__vgroup **out)
{
    kd__vgroup *g = kd__vstore_group_find(vs, ns, model);
    int rc = KD_OK;
    if (g && g->dim != dim) {
        if (g->live || g->inflight)
            return kd__err(db, KD_EINVALID,
                           "%svector has %u dimensions but the vectors of model '%s' in namespace '%s' have %u",
                           where, dim, model, ns, g->dim);
        rc = group_reset(vs, g, dim);
    } else if (!g) {
        rc = kd__vstore_group_add(vs, ns, model, dim, &g);
    }
    if (rc)
        return kd__err(db, rc, "%sout of memory", where);
    g->inflight++;
    *out = g;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Imports: the one-dimension rule
 * ---------------------------------------------------------------------- */

/* A (namespace, model) an import touches: its dimension and how many live
 * vectors it has, the database's and then the batch's, row by row. */
typedef struct igroup {
    char *ns, *model;
    uint32_t dim;
    uint64_t live;
} igroup;

/* A key of a vector namespace the batch writes: the group its newest
 * version in the batch is live in (-1: none). */
typedef struct ikey {
    const char *vns, *key; /* the import row's strings */
    long group;
} ikey;

typedef struct icheck {
    kd_db *db;
    kd__vstore *vs;
    igroup *groups;
    size_t n_groups, cap_groups;
    ikey *keys; /* open addressing, power of two */
    size_t mask;
} icheck;

static long igroup_of(icheck *c, const char *ns, const char *model)
{
    for (size_t i = 0; i < c->n_groups; i++)
        if (!strcmp(c->groups[i].ns, ns) && !strcmp(c->groups[i].model, model))
            return (long)i;
    if (c->n_groups == c->cap_groups) {
        size_t cap = c->cap_groups ? 2 * c->cap_groups : 8;
        igroup *g = realloc(c->groups, cap * sizeof *g);
        if (!g)
            return -1;
        c->groups = g;
        c->cap_groups = cap;
    }
    igroup *g = &c->groups[c->n_groups];
    if (!(g->ns = strdup(ns)) || !(g->model = strdup(model))) {
        free(g->ns);
        return -1;
    }
    /* A put still in flight holds its dimension as a live vector would. */
    const kd__vgroup *t = kd__vstore_group_find(c->vs, ns, model);
    g->dim = t ? t->dim : 0;
    g->live = t ? t->live + (uint64_t)t->inflight : 0;
    return (long)c->n_groups++;
}

/* The slot of (vns, key) in the batch's key table. */
static ikey *ikey_at(icheck *c, const char *vns, const char *key)
{
    size_t nl = strlen(vns);
    size_t i = (size_t)kd__hash_bytes(key, strlen(key), kd__hash_bytes(vns, nl, 0)) & c->mask;
    for (;; i = (i + 1) & c->mask)
        if (!c->keys[i].key || (!strcmp(c->keys[i].key, key) && !strcmp(c->keys[i].vns, vns)))
            return &c->keys[i];
}

/* The group the key's current vector in the database is live in, -1 when
 * it has none; -2 out of memory. vs->lock and ix_lock held. */
static long db_group(icheck *c, const char *vns, const char *key)
{
    const kd__ns *s = kd__qns_find(&c->db->ix, vns, strlen(vns));
    const kd__key *k = s ? kd__index_key_find(&c->db->ix, s, key, strlen(key)) : NULL;
    const kd__vloc *loc = k ? map_find(c->vs, k) : NULL;
    if (!loc)
        return -1;
    long g = igroup_of(c, loc->g->ns, loc->g->model);
    return g < 0 ? -2 : g;
}

void kd__vstore_import_begin(kd_db *db)
{
    if (db->vs)
        pthread_rwlock_wrlock(&db->vs->import_gate);
}

void kd__vstore_import_end(kd_db *db)
{
    if (db->vs)
        pthread_rwlock_unlock(&db->vs->import_gate);
}

int kd__vstore_import_check(kd_db *db, const kd_import *v, size_t n)
{
    kd__vstore *vs = db->vs;
    if (!vs)
        return KD_OK;
    size_t rows = 0;
    for (size_t i = 0; i < n; i++)
        rows += v[i].ns && kd__is_vectors_ns(kd__qns_local(v[i].ns), strlen(kd__qns_local(v[i].ns)));
    if (!rows)
        return KD_OK;
    icheck c = {db, vs, NULL, 0, 0, NULL, 0};
    size_t cap = 16;
    while (cap < 2 * rows)
        cap *= 2;
    c.keys = calloc(cap, sizeof *c.keys);
    c.mask = cap - 1;
    kd__buf canon = KD__BUF_INIT;
    int rc = c.keys ? KD_OK : KD_ENOMEM;
    pthread_rwlock_rdlock(&vs->lock);
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < n && !rc; i++) {
        const char *vns = v[i].ns;
        if (!vns || !v[i].key || !kd__is_vectors_ns(kd__qns_local(vns), strlen(kd__qns_local(vns))))
            continue;
        ikey *k = ikey_at(&c, vns, v[i].key);
        long was = k->key ? k->group : db_group(&c, vns, v[i].key);
        if (was == -2) {
            rc = KD_ENOMEM;
            break;
        }
        long now = -1;
        kd__vrec r;
        char err[200];
        kd__buf_reset(&canon);
        /* (a value that is not a record was refused before this check) */
        if (v[i].json && !kd__json_canonicalize(v[i].json, v[i].len, &canon, err, sizeof err) &&
            !kd__vrec_parse(canon.data, canon.len, &r, err, sizeof err)) {
            char ub[KD__QNS_MAX];
            const char *uns = vec_user(vns, ub);
            if ((now = igroup_of(&c, uns, r.model)) < 0) {
                rc = KD_ENOMEM;
                break;
            }
            /* As for a put, the key's own vector still counts: a key's
             * vector changes dimension only after a delete (or once no
             * other vector of the model is live). */
            igroup *g = &c.groups[now];
            if (g->live && g->dim != r.dim) {
                rc = kd__err(db, KD_EINVALID,
                             "import %zu (%s/%s): vector has %u dimensions but the vectors of model '%s' in "
                             "namespace '%s' have %u (all live vectors of one namespace and model have one "
                             "dimension)", i, kd__qns_local(uns), v[i].key, r.dim, r.model, kd__qns_local(uns),
                             g->dim);
                break;
            }
            g->dim = r.dim;
            g->live++;
        }
        if (was >= 0)
            c.groups[was].live--;
        k->vns = vns;
        k->key = v[i].key;
        k->group = now;
    }
    pthread_rwlock_unlock(&db->ix_lock);
    pthread_rwlock_unlock(&vs->lock);
    if (rc == KD_ENOMEM)
        rc = kd__err(db, KD_ENOMEM, "out of memory");
    for (size_t i = 0; i < c.n_groups; i++) {
        free(c.groups[i].ns);
        free(c.groups[i].model);
    }
    free(c.groups);
    free(c.keys);
    kd__buf_free(&canon);
    return rc;
}

int kd_vector_put_batch(kd_db *db, const kd_vector_write *writes, size_t n, kd_version *out)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    if (ws_ && writes && n && n <= 1000000) {
        /* a workspace's batch: the same writes with qualified namespaces */
        void *q;
        char *names;
        int rc = kd__ws_qualify_each(db, ws_, writes, n, sizeof *writes, offsetof(kd_vector_write, ns), NULL, &q,
                                     &names);
        if (!rc) {
            kd__ws_internal(1);
            rc = kd_vector_put_batch(db, q, n, out);
            kd__ws_internal(0);
        }
        free(q);
        free(names);
        return rc;
    }
    for (size_t i = 0; writes && i < n && i <= 1000000; i++)
        if (writes[i].ns && kd__ws_check_plain(db, writes[i].ns))
            return KD_EINVALID;
    kd__vstore *vs = db->vs;
    if (!vs)
        return kd__err(db, KD_EMISUSE, "the database is not open");
    if (!writes || n == 0)
        return kd__err(db, KD_EINVALID, "a batch needs at least one write");
    if (n > 1000000)
        return kd__err(db, KD_ETOOBIG, "a batch holds at most 1,000,000 writes; got %zu", n);
    kd_write *kw = calloc(n, sizeof *kw);
    char(*vns)[KD__QNS_MAX] = malloc(n * sizeof *vns);
    size_t *off = malloc(n * sizeof *off);
    kd__vgroup **claimed = calloc(n, sizeof *claimed);
    kd__buf recs = KD__BUF_INIT, meta = KD__BUF_INIT;
    int rc = KD_OK, gated = 0;
    if (!kw || !vns || !off || !claimed) {
        rc = kd__err(db, KD_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const kd_vector_write *w = &writes[i];
        char where[48] = "";
        if (n > 1)
            snprintf(where, sizeof where, "batch write %zu: ", i);
        if ((rc = vec_ns(db, w->ns, vns[i], where)) || (rc = check_model(db, w->model, where)) ||
            (rc = check_dim(db, w->dim, "vector", where)))
            break;
        if (!w->key) {
            rc = kd__err(db, KD_EINVALID, "%skey is missing", where);
            break;
        }
        if (!w->v) {
            rc = kd__err(db, KD_EINVALID, "%svector is missing", where);
            break;
        }
        char why[200];
        if (kd__vec_validate(w->v, w->dim, why, sizeof why)) {
            rc = kd__err(db, KD_EINVALID, "%s%s/%s: %s", where, w->ns, w->key, why);
            break;
        }
        kd__buf_reset(&meta);
        if (w->meta) {
            rc = kd__json_canonicalize(w->meta, w->meta_len, &meta, why, sizeof why);
            if (rc == KD_EINVALID) {
                rc = kd__err(db, rc, "%s%s/%s: meta: %s", where, w->ns, w->key, why);
                break;
            }
        } else {
            rc = kd__buf_puts(&meta, "null");
        }
        off[i] = recs.len;
        if (rc || (rc = kd__vrec_encode(&recs, w->model, strlen(w->model), w->v, (uint32_t)w->dim, meta.data,
                                        meta.len))) {
            rc = kd__err(db, KD_ENOMEM, "out of memory");
            break;
        }
        kw[i].ns = vns[i];
        kw[i].key = w->key;
        kw[i].len = recs.len - off[i];
    }
    if (rc)
        goto out;
    for (size_t i = 0; i < n; i++)
        kw[i].json = recs.data + off[i]; /* recs no longer moves */

    pthread_rwlock_rdlock(&vs->import_gate);
    gated = 1;
    pthread_rwlock_wrlock(&vs->lock);
    for (size_t i = 0; i < n && !rc; i++) {
        char where[48] = "";
        if (n > 1)
            snprintf(where, sizeof where, "batch write %zu: ", i);
        rc = claim(db, vs, writes[i].ns, writes[i].model, (uint32_t)writes[i].dim, where, &claimed[i]);
    }
    pthread_rwlock_unlock(&vs->lock);
    if (!rc) {
        kd__allow_reserved(1);
        rc = kd__commit(db, kw, n, out);
        kd__allow_reserved(0);
    }
out:
    if (claimed) {
        int any = 0;
        for (size_t i = 0; i < n && !any; i++)
            any = claimed[i] != NULL;
        if (any) {
            pthread_rwlock_wrlock(&vs->lock);
            for (size_t i = 0; i < n; i++)
                if (claimed[i])
                    claimed[i]->inflight--;
            pthread_rwlock_unlock(&vs->lock);
        }
    }
    if (gated)
        pthread_rwlock_unlock(&vs->import_gate);
    free(kw);
    free(vns);
    free(off);
    free(claimed);
    kd__buf_free(&recs);
    kd__buf_free(&meta);
    return rc;
}

int kd_vector_put(kd_db *db, const char *ns, const char *key, const char *model, const float *v, size_t dim,
                  const char *meta, size_t meta_len, kd_version *out)
{
    kd_vector_write w = {ns, key, model, v, dim, meta, meta_len};
    return kd_vector_put_batch(db, &w, 1, out);
}

int kd_vector_delete(kd_db *db, const char *ns, const char *key, kd_version *out)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    char vns[KD__QNS_MAX];
    int rc = vec_ns(db, ns, vns, "");
    if (rc)
        return rc;
    if (!key)
        return kd__err(db, KD_EINVALID, "key is missing");
    kd_write w = {vns, key, NULL, 0, NULL};
    kd__allow_reserved(1);
    rc = kd__commit(db, &w, 1, out);
    kd__allow_reserved(0);
    if (rc == KD_ENOTFOUND)
        return kd__err(db, rc, "no vector at %s/%s", ns, key);
    if (rc == KD_EDELETED)
        return kd__err(db, rc, "the vector at %s/%s is already deleted", ns, key);
    return rc;
}

/* ------------------------------------------------------------------------
 * Reads
 * ---------------------------------------------------------------------- */

void kd_vector_free(kd_vector *v)
{
    free(v); /* one block */
}

/* One block: the struct, the floats, then ns, key, model and meta. */
static int make_vector(kd_db *db, const char *ns, const char *key, const char *json, size_t len,
                       const kd_version *ver, kd_vector **out)
{
    kd__vrec r;
    char err[200];
    int rc = kd__vrec_parse(json, len, &r, err, sizeof err);
    if (rc == KD_EINVALID)
        return kd__err(db, KD_ECORRUPT, "%s/%s: the stored value is not a vector: %s", ns, key, err);
    if (rc)
        return kd__err(db, rc, "out of memory");
    size_t nl = strlen(ns) + 1, kl = strlen(key) + 1;
    size_t size = sizeof(kd_vector) + (size_t)r.dim * sizeof(float) + nl + kl + r.model_len + 1 + r.meta_len + 1;
    kd_vector *v = malloc(size);
    if (!v)
        return kd__err(db, KD_ENOMEM, "out of memory");
    v->values = (float *)(v + 1);
    if ((rc = kd__vrec_vector(&r, v->values, err, sizeof err))) {
        free(v);
        if (rc == KD_EINVALID)
            return kd__err(db, KD_ECORRUPT, "%s/%s: the stored value is not a vector: %s", ns, key, err);
        return kd__err(db, rc, "out of memory");
    }
    char *p = (char *)(v->values + r.dim);
    v->ns = memcpy(p, ns, nl);
    p += nl;
    v->key = memcpy(p, key, kl);
    p += kl;
    v->model = memcpy(p, r.model, r.model_len + 1);
    p += r.model_len + 1;
    v->meta = memcpy(p, r.meta, r.meta_len);
    v->meta[r.meta_len] = '\0';
    v->meta_len = r.meta_len;
    v->dim = r.dim;
    v->version = *ver;
    *out = v;
    return KD_OK;
}

static int vector_get(kd_db *db, const char *ns, const char *key, int64_t ts, int is_at, kd_vector **out)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    if (!out)
        return kd__err(db, KD_EINVALID, "out is NULL");
    *out = NULL;
    char vns[KD__QNS_MAX];
    int rc = vec_ns(db, ns, vns, "");
    if (rc)
        return rc;
    if (!key || !*key)
        return kd__err(db, KD_EINVALID, "key must be non-empty");
    char *json = NULL;
    size_t len = 0;
    kd_version ver;
    kd__ws_internal(1);
    rc = is_at ? kd_get_at(db, vns, key, ts, &json, &len, &ver) : kd_get(db, vns, key, &json, &len, &ver);
    kd__ws_internal(0);
    const char *uns = kd__qns_local(ns); /* as the caller named it */
    if (rc == KD_ENOTFOUND)
        return kd__err(db, rc, "no vector at %s/%s", uns, key);
    if (rc == KD_EDELETED)
        return kd__err(db, rc, "the vector at %s/%s was deleted", uns, key);
    if (rc == KD_ENOVERSION) {
        char t[40];
        kd_time_format(ts, t, sizeof t);
        return kd__err(db, rc, "the vector at %s/%s has no version at or before %s", uns, key, t);
    }
    if (rc == KD_EPRUNED) {
        /* the reason, without the reserved namespace it names ("_kd.vec.NS/KEY: …") */
        char why[600], named[KD__QNS_MAX + 1100];
        snprintf(named, sizeof named, "%s/%s: ", vns, key);
        const char *m = kd_errmsg(db);
        snprintf(why, sizeof why, "%s", strncmp(m, named, strlen(named)) ? m : m + strlen(named));
        return kd__err(db, rc, "the vector at %s/%s: %s", uns, key, why);
    }
    if (rc)
        return rc;
    rc = make_vector(db, kd__qns_local(ns), key, json, len, &ver, out);
    free(json);
    return rc;
}

int kd_vector_get(kd_db *db, const char *ns, const char *key, kd_vector **out)
{
    return vector_get(db, ns, key, INT64_MAX, 0, out);
}

int kd_vector_get_at(kd_db *db, const char *ns, const char *key, int64_t ts, kd_vector **out)
{
    return vector_get(db, ns, key, ts, 1, out);
}

int kd_vector_history(kd_db *db, const char *ns, const char *key, int64_t from, int64_t to, size_t limit,
                      unsigned flags, kd_version **out, size_t *n)
{
    if (!db || !out || !n)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    *out = NULL;
    *n = 0;
    char vns[KD__QNS_MAX];
    int rc = vec_ns(db, ns, vns, "");
    if (rc)
        return rc;
    if (!key || !*key)
        return kd__err(db, KD_EINVALID, "key must be non-empty");
    kd__ws_internal(1);
    rc = kd_history(db, vns, key, from, to, limit, flags, out, n);
    kd__ws_internal(0);
    if (rc == KD_ENOTFOUND)
        return kd__err(db, rc, "no vector at %s/%s", ns, key);
    return rc;
}

/* ------------------------------------------------------------------------
 * Stats
 * ---------------------------------------------------------------------- */

void kd_vector_stats_free(kd_vector_info *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        free(list[i].ns);
        free(list[i].model);
    }
    free(list);
}

static int cmp_info(const void *a, const void *b)
{
    const kd_vector_info *x = a, *y = b;
    int c = strcmp(x->ns, y->ns);
    return c ? c : strcmp(x->model, y->model);
}

int kd_vector_stats(kd_db *db, const char *ns, kd_vector_info **out, size_t *n)
{
    if (!db || !out || !n)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    *out = NULL;
    *n = 0;
    char vns[KD__QNS_MAX];
    int vrc;
    if (ns && (vrc = vec_ns(db, ns, vns, ""))) /* a reserved name is refused, as by every vector call */
        return vrc;
    kd__vstore *vs = db->vs;
    if (!vs)
        return KD_OK;
    pthread_rwlock_rdlock(&vs->lock);
    kd_vector_info *l = calloc(vs->n_groups ? vs->n_groups : 1, sizeof *l);
    size_t k = 0;
    int rc = l ? KD_OK : KD_ENOMEM;
    for (size_t i = 0; i < vs->n_groups && !rc; i++) {
        const kd__vgroup *g = vs->groups[i];
        const char *local;
        if (!g->live || (ns && strcmp(ns, g->ns)) || !kd__ws_owns(ws_, g->ns, strlen(g->ns), &local))
            continue;
        l[k].ns = strdup(local);
        l[k].model = strdup(g->model);
        l[k].dim = g->dim;
        l[k].vectors = g->live;
        l[k].unindexed = g->n_tail;
        l[k].index_bytes = group_bytes(g);
        if (!l[k].ns || !l[k].model)
            rc = KD_ENOMEM;
        k++;
    }
    pthread_rwlock_unlock(&vs->lock);
    if (rc) {
        kd_vector_stats_free(l, k);
        return kd__err(db, rc, "out of memory");
    }
    if (k > 1)
        qsort(l, k, sizeof *l, cmp_info);
    if (!k) {
        free(l);
        l = NULL;
    }
    *out = l;
    *n = k;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Search: candidates and the top k
 * ---------------------------------------------------------------------- */

typedef struct cand {
    float score;
    const kd__key *key;
    char *ns, *model, *meta; /* owned once in the top k */
    uint32_t meta_len;
} cand;

typedef struct topk {
    kd_vector_metric metric;
    cand *c; /* binary heap, worst at the top */
    size_t n, k;
} topk;

/* NaN (an overflowing dot product) counts as the worst score. */
static int score_better(kd_vector_metric m, float a, float b)
{
    if (isnan(b))
        return !isnan(a);
    if (isnan(a))
        return 0;
    return m == KD_VECTOR_L2 ? a < b : a > b;
}

/* 1 if a comes before b in the results: better score, then namespace,
 * then key. */
static int cand_before(kd_vector_metric m, const cand *a, const cand *b)
{
    if (score_better(m, a->score, b->score))
        return 1;
    if (score_better(m, b->score, a->score))
        return 0;
    int c = strcmp(a->ns, b->ns);
    if (c)
        return c < 0;
    return strcmp(a->key->name, b->key->name) < 0;
}

static void cand_free(cand *c)
{
    free(c->ns);
    free(c->model);
    free(c->meta);
}

static void heap_down(topk *t, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        /* the heap's top is the candidate that comes last */
        if (l < t->n && cand_before(t->metric, &t->c[w], &t->c[l]))
            w = l;
        if (r < t->n && cand_before(t->metric, &t->c[w], &t->c[r]))
            w = r;
        if (w == i)
            return;
        cand x = t->c[i];
        t->c[i] = t->c[w];
        t->c[w] = x;
        i = w;
    }
}

static void heap_up(topk *t, size_t i)
{
    while (i) {
        size_t p = (i - 1) / 2;
        if (!cand_before(t->metric, &t->c[p], &t->c[i]))
            return;
        cand x = t->c[i];
        t->c[i] = t->c[p];
        t->c[p] = x;
        i = p;
    }
}

/* 1 if a candidate with this score, ns and key would enter the top k. */
static int topk_wants(const topk *t, const cand *proto)
{
    return t->n < t->k || cand_before(t->metric, proto, &t->c[0]);
}

/* Offer proto (borrowed strings): copied in if it makes the top k. */
static int topk_offer(topk *t, const cand *proto)
{
    if (!topk_wants(t, proto))
        return KD_OK;
    cand c = *proto;
    c.ns = strdup(proto->ns);
    c.model = strdup(proto->model);
    c.meta = malloc((size_t)proto->meta_len + 1);
    if (!c.ns || !c.model || !c.meta) {
        cand_free(&c);
        return KD_ENOMEM;
    }
    memcpy(c.meta, proto->meta, proto->meta_len);
    c.meta[proto->meta_len] = '\0';
    if (t->n < t->k) {
        t->c[t->n++] = c;
        heap_up(t, t->n - 1);
    } else {
        cand_free(&t->c[0]);
        t->c[0] = c;
        heap_down(t, 0);
    }
    return KD_OK;
}

static void topk_free(topk *t)
{
    for (size_t i = 0; i < t->n; i++)
        cand_free(&t->c[i]);
    free(t->c);
}

static __thread kd_vector_metric sort_metric; /* qsort has no context */

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return cand_before(sort_metric, x, y) ? -1 : cand_before(sort_metric, y, x) ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * Scores
 *
 * Every path scores a stored vector from its form in the index: its
 * direction (kd__vec_normalize: the graph holds it) and its length (the
 * slot's norm, kd__vec_norm). The tail keeps the direction beside the
 * vector; the log and pending writes compute both from the record. So a
 * vector scores the same, bit for bit, whichever path finds it, now or in
 * the past. The query is taken the same way:
 *   cosine  kd__vec_cosine of the two directions, as the graph computes it
 *           (hnsw.c): exactly 1 for a vector and itself;
 *   dot     length x dot(query, direction);
 *   l2      from the differences of the two vectors rebuilt as direction x
 *           length: a vector and itself are at exactly 0.
 * ---------------------------------------------------------------------- */

typedef struct scorer {
    kd_vector_metric metric;
    uint32_t dim;
    const float *q; /* the query as given */
    float *qdir;    /* its direction */
    float *qhat;    /* direction x length (the query itself when its length is 0 or beyond float32) */
    float qq;       /* dot(qdir, qdir) */
    float *tmp;     /* a stored vector rebuilt (l2) */
    float *dir;     /* the direction of a vector as written */
} scorer;

/* Set sc up for query q (dim floats, kept); mem: 4 * dim floats for it. */
static void scorer_init(scorer *sc, kd_vector_metric m, const float *q, uint32_t dim, float *mem)
{
    sc->metric = m;
    sc->dim = dim;
    sc->q = q;
    sc->qdir = mem;
    sc->qhat = mem + dim;
    sc->tmp = mem + 2 * (size_t)dim;
    sc->dir = mem + 3 * (size_t)dim;
    float len = kd__vec_normalize(q, dim, sc->qdir);
    int rebuild = len > 0.0f && isfinite(len);
    for (uint32_t i = 0; i < dim; i++)
        sc->qhat[i] = rebuild ? sc->qdir[i] * len : q[i];
    sc->qq = kd__vec_dot(sc->qdir, sc->qdir, dim);
}

/* The score of a stored vector of direction dir and length len. */
static float score_stored(scorer *sc, const float *dir, float len)
{
    uint32_t n = sc->dim;
    if (sc->metric == KD_VECTOR_DOT)
        return len * kd__vec_dot(sc->q, dir, n);
    if (sc->metric == KD_VECTOR_L2) {
        for (uint32_t i = 0; i < n; i++)
            sc->tmp[i] = dir[i] * len;
        return sqrtf(kd__vec_l2sq(sc->qhat, sc->tmp, n));
    }
    return kd__vec_cosine(kd__vec_dot(sc->qdir, dir, n), sc->qq, kd__vec_dot(dir, dir, n));
}

/* The same for vector v as written (a record read from the log). */
static float score_written(scorer *sc, const float *v)
{
    float len = kd__vec_normalize(v, sc->dim, sc->dir);
    return score_stored(sc, sc->dir, len);
}

/* ------------------------------------------------------------------------
 * Search of the log (the past, or any time the indexes cannot be used)
 * ---------------------------------------------------------------------- */

typedef struct qctx {
    kd_db *db;
    const float *q;
    uint32_t dim;
    kd_vector_metric metric;
    const char *model;
    const kd_filter *filter;
    topk *top;
    scorer *sc;
    /* dimension check: vectors in scope with another dimension */
    uint64_t matched, other;
    uint32_t other_dim;
    char other_model[KD__VSTORE_MAX_MODEL + 1];
    char other_ns[KD__QNS_MAX];
    float *buf;
    const char *ns; /* user namespace being scanned */
    const char *ws; /* the handle's workspace (NULL: default) */
    int64_t vis;    /* live search: the visible time it answered for */
    int rc;
} qctx;

static void note_other(qctx *c, const char *ns, const char *model, uint32_t dim, uint64_t count)
{
    if (!c->other) {
        c->other_dim = dim;
        snprintf(c->other_model, sizeof c->other_model, "%s", model);
        snprintf(c->other_ns, sizeof c->other_ns, "%s", ns);
    }
    c->other += count;
}

/* Score one stored record for the query, offering it to the top k. */
static int offer_record(qctx *c, const kd__key *key, const char *ns, const char *json, size_t len)
{
    kd__vrec r;
    char err[200];
    if (kd__vrec_parse(json, len, &r, err, sizeof err))
        return KD_OK; /* not a vector record: never indexed either */
    if (c->model && strcmp(c->model, r.model))
        return KD_OK;
    if (r.dim != c->dim) {
        note_other(c, ns, r.model, r.dim, 1);
        return KD_OK;
    }
    c->matched++;
    if (c->filter && !kd__filter_eval(c->filter, (kd__jv){r.meta, r.meta_len}))
        return KD_OK;
    int rc = kd__vrec_vector(&r, c->buf, err, sizeof err);
    if (rc == KD_EINVALID)
        return KD_OK;
    if (rc)
        return rc;
    cand proto = {score_written(c->sc, c->buf), key, (char *)ns, r.model, (char *)r.meta, (uint32_t)r.meta_len};
    return topk_offer(c->top, &proto);
}

static int log_page(void *arg, const kd__scan_item *items, size_t n)
{
    qctx *c = arg;
    for (size_t i = 0; i < n; i++) {
        int rc = offer_record(c, items[i].key, c->ns, items[i].value, items[i].value_len);
        if (rc)
            return c->rc = rc;
    }
    return KD_OK;
}

static int search_log(qctx *c, const char *ns, int64_t at)
{
    kd_db *db = c->db;
    char **names = NULL;
    size_t nn = 0;
    int rc;
    if (ns) {
        char vns[KD__QNS_MAX];
        const char *local = kd__qns_local(ns);
        size_t w = (size_t)(local - ns);
        memcpy(vns, ns, w);
        memcpy(vns + w, KD__NS_VEC_PREFIX, KD__NS_VEC_PREFIX_LEN);
        memcpy(vns + w + KD__NS_VEC_PREFIX_LEN, local, strlen(local) + 1);
        c->ns = ns;
        rc = kd__scan_raw(db, vns, at, log_page, c);
        return c->rc ? c->rc : rc;
    }
    if ((rc = vector_namespaces(db, &names, &nn)))
        return rc;
    for (size_t i = 0; i < nn && !rc; i++) {
        char ub[KD__QNS_MAX];
        if (!kd__ws_owns(c->ws, names[i], strlen(names[i]), NULL))
            continue;
        c->ns = vec_user(names[i], ub);
        rc = kd__scan_raw(db, names[i], at, log_page, c);
        if (c->rc)
            rc = c->rc;
    }
    kd_free_list(names, nn);
    return rc;
}

/* ------------------------------------------------------------------------
 * Search of the live indexes
 * ---------------------------------------------------------------------- */

typedef struct accept_ctx {
    const kd__vgroup *g;
    const kd_filter *filter;
    const uint32_t *excl; /* sorted labels left out (pending keys) */
    size_t n_excl;
} accept_ctx;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int accept_label(uint32_t label, void *arg)
{
    const accept_ctx *a = arg;
    if (label >= a->g->n_slots)
        return 0;
    const kd__vslot *s = &a->g->slots[label];
    if (!s->key)
        return 0;
    if (a->n_excl && bsearch(&label, a->excl, a->n_excl, sizeof *a->excl, cmp_u32))
        return 0;
    return !a->filter || kd__filter_eval(a->filter, (kd__jv){s->meta, s->meta_len});
}

/* Cosine: the group's tail, by brute force, into the top k (the graph
 * search does not see it). */
static int tail_offer(qctx *c, const kd__vgroup *g, accept_ctx *a)
{
    for (uint32_t i = 0; i < g->n_tail; i++) {
        uint32_t l = g->tail[i];
        if (!accept_label(l, a))
            continue;
        const kd__vslot *s = &g->slots[l];
        cand proto = {score_stored(c->sc, tail_dir(g, l), s->norm), s->key, g->ns, g->model, s->meta, s->meta_len};
        int rc = topk_offer(c->top, &proto);
        if (rc)
            return rc;
    }
    return KD_OK;
}

/* Brute force over a group for dot or L2: scores from the direction the
 * graph (or the tail) keeps and the slot's length. */
/* Does slot la (score sa) come before slot lb (score sb) of group g in the
 * results: a better score, then (one group: one namespace) the key, as
 * cand_before orders them. Ties at the k-th place are thus kept by key,
 * not by the order the vectors were written. */
static int slot_before(const kd__vgroup *g, kd_vector_metric m, float sa, uint32_t la, float sb, uint32_t lb)
{
    if (score_better(m, sa, sb))
        return 1;
    if (score_better(m, sb, sa))
        return 0;
    return strcmp(g->slots[la].key->name, g->slots[lb].key->name) < 0;
}

static void group_exact(const kd__vgroup *g, scorer *sc, size_t k, accept_ctx *a, uint32_t *labels, float *scores,
                        size_t *got)
{
    kd_vector_metric m = sc->metric;
    size_t n = 0;
    for (uint32_t l = 0; l < g->n_slots; l++) {
        if (!g->slots[l].key || !accept_label(l, a))
            continue;
        const float *dir = kd__hnsw_vector(g->h, l);
        if (!dir && !(dir = tail_dir(g, l)))
            continue;
        float s = score_stored(sc, dir, g->slots[l].norm);
        /* insertion into the sorted top k (k is small next to the group) */
        if (n == k && !slot_before(g, m, s, l, scores[n - 1], labels[n - 1]))
            continue;
        size_t i = n < k ? n++ : n - 1;
        while (i > 0 && slot_before(g, m, s, l, scores[i - 1], labels[i - 1])) {
            scores[i] = scores[i - 1];
            labels[i] = labels[i - 1];
            i--;
        }
        scores[i] = s;
        labels[i] = l;
    }
    *got = n;
}

static int search_live(qctx *c, const char *ns, size_t k, size_t ef, int *use_log)
{
    kd_db *db = c->db;
    kd__vstore *vs = db->vs;
    *use_log = 0;
    /* room for k + 1: a cosine search asks for one more, to see ties */
    size_t cap = k + 1;
    uint32_t *labels = malloc(cap * sizeof *labels);
    float *scores = malloc(cap * sizeof *scores);
    const kd__key **pk = NULL;
    uint32_t *excl = NULL;
    kd__buf scratch = KD__BUF_INIT;
    if (!labels || !scores) {
        free(labels);
        free(scores);
        return KD_ENOMEM;
    }
    int rc = KD_OK;
    pthread_rwlock_rdlock(&vs->lock);
    if (vs->stale) {
        *use_log = 1;
        goto out;
    }
    /* Taken under the lock: every write up to vis has been through the
     * hook, and every later one is still in the pending list. */
    int64_t vis = c->vis = kd__visible(db);
    size_t np = 0;
    if (vs->n_pend) {
        if (!(pk = malloc(vs->n_pend * sizeof *pk)) || !(excl = malloc(vs->n_pend * sizeof *excl))) {
            rc = KD_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < vs->n_pend; i++) {
            if (vs->pend[i].ts <= vis)
                continue;
            size_t j = 0;
            while (j < np && pk[j] != vs->pend[i].key)
                j++;
            if (j == np)
                pk[np++] = vs->pend[i].key;
        }
    }
    for (size_t gi = 0; gi < vs->n_groups && !rc; gi++) {
        const kd__vgroup *g = vs->groups[gi];
        if ((ns && strcmp(ns, g->ns)) || (c->model && strcmp(c->model, g->model)) || !g->live ||
            !kd__ws_owns(c->ws, g->ns, strlen(g->ns), NULL))
            continue;
        if (g->dim != c->dim) {
            note_other(c, g->ns, g->model, g->dim, g->live);
            continue;
        }
        c->matched += g->live;
        accept_ctx a = {g, c->filter, excl, 0};
        for (size_t i = 0; i < np; i++) {
            const kd__vloc *loc = map_find(vs, pk[i]);
            if (loc && loc->g == g)
                excl[a.n_excl++] = loc->slot;
        }
        if (a.n_excl > 1)
            qsort(excl, a.n_excl, sizeof *excl, cmp_u32);
        size_t got = 0;
        if (c->metric == KD_VECTOR_COSINE) { /* the index picks graph or brute force */
            /* The index breaks ties by label (slot), not by key: ask for
             * more until the last score differs from the k-th, so the top
             * k below keeps tied vectors by key (group_exact does so). */
            for (size_t want = k + 1;; want *= 2) {
                if (want > cap) {
                    uint32_t *nl = realloc(labels, want * sizeof *labels);
                    if (nl)
                        labels = nl;
                    float *nsc = nl ? realloc(scores, want * sizeof *scores) : NULL;
                    if (nsc)
                        scores = nsc;
                    if (!nl || !nsc) {
                        rc = KD_ENOMEM;
                        break;
                    }
                    cap = want;
                }
                rc = kd__hnsw_search(g->h, c->q, c->dim, want, ef, (c->filter || a.n_excl) ? accept_label : NULL, &a,
                                     labels, scores, &got);
                if (rc || got < want || scores[want - 1] != scores[k - 1])
                    break;
            }
            if (!rc && g->n_tail)
                rc = tail_offer(c, g, &a);
        } else
            group_exact(g, c->sc, k, &a, labels, scores, &got);
        for (size_t i = 0; i < got && !rc; i++) {
            const kd__vslot *s = &g->slots[labels[i]];
            cand proto = {scores[i], s->key, g->ns, g->model, s->meta, s->meta_len};
            rc = topk_offer(c->top, &proto);
        }
    }
    /* Keys written after vis: their visible versions, from the log. */
    for (size_t i = 0; i < np && !rc; i++) {
        const kd__key *key = pk[i];
        char ub[KD__QNS_MAX];
        const char *kns = vec_user_of(key->ns, ub);
        if ((ns && strcmp(ns, kns)) || !kd__ws_owns(c->ws, kns, strlen(kns), NULL))
            continue;
        pthread_rwlock_rdlock(&db->ix_lock);
        uint32_t pos = kd__key_upper(key, vis);
        const char *p = NULL;
        size_t len = 0;
        uint32_t vidx = pos ? kd__ver_value(db, key, pos - 1) : KD__NO_VALUE;
        if (vidx != KD__NO_VALUE)
            rc = kd__value_bytes(db, vidx, &scratch, &p, &len);
        kd__seg_pin(db); /* p may point into a segment's mapping: a rewrite must not unmap it meanwhile */
        pthread_rwlock_unlock(&db->ix_lock);
        if (!rc && p)
            rc = offer_record(c, key, kns, p, len);
        kd__seg_unpin(db);
    }
    c->ns = NULL;
out:
    pthread_rwlock_unlock(&vs->lock);
    free(labels);
    free(scores);
    free(pk);
    free(excl);
    kd__buf_free(&scratch);
    return rc;
}

/* ------------------------------------------------------------------------
 * kd_vector_search
 * ---------------------------------------------------------------------- */

void kd_vector_hits_free(kd_vector_hit *hits, size_t n)
{
    for (size_t i = 0; hits && i < n; i++) {
        free(hits[i].ns);
        free(hits[i].key);
        free(hits[i].model);
        free(hits[i].meta);
    }
    free(hits);
}

int kd_vector_search(kd_db *db, const char *ns, const float *query, size_t dim, size_t k,
                     const kd_vector_search_options *opts, kd_vector_hit **hits, size_t *n)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    if (!hits || !n)
        return kd__err(db, KD_EINVALID, "hits and n must not be NULL");
    *hits = NULL;
    *n = 0;
    kd__vstore *vs = db->vs;
    if (!vs)
        return kd__err(db, KD_EMISUSE, "the database is not open");
    kd_vector_search_options none;
    memset(&none, 0, sizeof none);
    if (!opts)
        opts = &none;
    char vns[KD__QNS_MAX];
    int rc;
    if (ns && (rc = vec_ns(db, ns, vns, "")))
        return rc;
    if ((unsigned)opts->metric > KD_VECTOR_L2)
        return kd__err(db, KD_EINVALID, "unknown metric %d: use KD_VECTOR_COSINE, KD_VECTOR_DOT or KD_VECTOR_L2",
                       (int)opts->metric);
    if (opts->model && (rc = check_model(db, opts->model, "")))
        return rc;
    if (k < 1 || k > KD_VECTOR_MAX_K)
        return kd__err(db, KD_EINVALID, "k is %zu; it must be 1 to %d", k, KD_VECTOR_MAX_K);
    if ((rc = check_dim(db, dim, "the query", "")))
        return rc;
    if (!query)
        return kd__err(db, KD_EINVALID, "the query vector is missing");
    for (size_t i = 0; i < dim; i++)
        if (!isfinite(query[i]))
            return kd__err(db, KD_EINVALID, "query component %zu is %s", i, isnan(query[i]) ? "NaN" : "infinite");
    if (opts->metric == KD_VECTOR_COSINE && kd__vec_norm(query, dim) == 0.0f)
        return kd__err(db, KD_EINVALID, "the query is a zero vector: it has no cosine similarity to anything");
    if (opts->has_min_score && isnan(opts->min_score))
        return kd__err(db, KD_EINVALID, "min_score is NaN");
    size_t ef = opts->ef ? opts->ef : vs->ef_search;
    if (ef > KD__VSTORE_MAX_EF)
        ef = KD__VSTORE_MAX_EF;

    topk top = {opts->metric, calloc(k, sizeof(cand)), 0, k};
    float *buf = malloc(dim * 5 * sizeof *buf); /* a record's vector, then the scorer's */
    if (!top.c || !buf) {
        free(top.c);
        free(buf);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    qctx c;
    memset(&c, 0, sizeof c);
    c.db = db;
    c.ws = ws_;
    c.q = query;
    c.dim = (uint32_t)dim;
    c.metric = opts->metric;
    c.model = opts->model;
    c.filter = opts->filter;
    scorer sc;
    scorer_init(&sc, opts->metric, query, (uint32_t)dim, buf + dim);
    c.top = &top;
    c.sc = &sc;
    c.buf = buf;
    int64_t at = opts->at;
    int live = at == 0 || at == KD_TIME_MAX;
    int use_log = !live;
    if (live)
        rc = search_live(&c, ns, k, ef, &use_log);
    if (!rc && use_log) {
        for (size_t i = 0; i < top.n; i++)
            cand_free(&top.c[i]);
        top.n = 0;
        c.matched = c.other = 0;
        /* The time answered for, fixed now so that the versions reported
         * below are the ones scored. */
        int64_t vnow = kd__visible(db);
        if (live || at > vnow)
            at = vnow;
        rc = search_log(&c, ns, at);
    }
    free(buf);
    if (rc) {
        topk_free(&top);
        return kd__err(db, rc, rc == KD_ENOMEM ? "out of memory" : "vector search failed: %s", kd_strerror(rc));
    }
    if (!c.matched && c.other) {
        topk_free(&top);
        return kd__err(db, KD_EINVALID,
                       "the query has %zu dimensions but the vectors of model '%s' in namespace '%s' have %u", dim,
                       c.other_model, c.other_ns, c.other_dim);
    }
    sort_metric = opts->metric;
    if (top.n > 1)
        qsort(top.c, top.n, sizeof *top.c, cmp_cand);
    size_t keep = top.n;
    if (opts->has_min_score)
        for (keep = 0; keep < top.n && !score_better(opts->metric, opts->min_score, top.c[keep].score);)
            keep++;
    kd_vector_hit *h = keep ? calloc(keep, sizeof *h) : NULL;
    if (keep && !h) {
        topk_free(&top);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    /* The versions the scores came from: each key's latest visible
     * version at the time searched. */
    int64_t when = live && !use_log ? c.vis : at;
    pthread_rwlock_rdlock(&db->ix_lock);
    int64_t vis = kd__visible(db);
    if (when > vis)
        when = vis;
    for (size_t i = 0; i < keep; i++) {
        cand *x = &top.c[i];
        uint32_t pos = kd__key_upper(x->key, when);
        if (pos)
            kd__fill_version(db, x->key, pos - 1, &h[i].version);
    }
    pthread_rwlock_unlock(&db->ix_lock);
    for (size_t i = 0; i < keep; i++) {
        cand *x = &top.c[i];
        h[i].ns = x->ns;
        h[i].model = x->model;
        h[i].meta = x->meta;
        h[i].meta_len = x->meta_len;
        h[i].score = x->score;
        x->ns = x->model = x->meta = NULL;
        const char *local = h[i].ns ? kd__qns_local(h[i].ns) : NULL;
        if (local && local != h[i].ns) /* without its workspace */
            memmove(h[i].ns, local, strlen(local) + 1);
        if (!(h[i].key = strdup(x->key->name)))
            rc = KD_ENOMEM;
    }
    topk_free(&top);
    if (rc) {
        kd_vector_hits_free(h, keep);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    *hits = h;
    *n = keep;
    return KD_OK;
}
