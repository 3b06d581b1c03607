/*
 * index.c — hash tables for namespaces, keys and values, and the per-key
 * version arrays; see index.h. Nothing here allocates per version except the
 * amortised growth of a key's array.
 */
#include "index.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "korudelta.h"
#include "../util/le.h"

/* ------------------------------------------------------------------------
 * Hashing
 * ---------------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* From loads only: copying the bytes into a word on the stack and loading
 * that gives the same value, but the byte stores then stall the word load
 * (failed store forwarding): a third of a hot kd_get's time went there. */
uint64_t kd__tail_word(const uint8_t *s, size_t n)
{
    if (n >= 4) /* two loads that overlap when n < 8: the shared bytes agree */
        return kd__get_u32(s) | (uint64_t)kd__get_u32(s + n - 4) << (8 * (n - 4));
    if (n == 0)
        return 0;
    return s[0] | (uint64_t)s[n / 2] << (8 * (n / 2)) | (uint64_t)s[n - 1] << (8 * (n - 1));
}

uint64_t kd__hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const uint8_t *s = p;
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ mix(w)) * 0x9e3779b97f4a7c15ULL;
        s += 8;
        n -= 8;
    }
    h = (h ^ mix(kd__tail_word(s, n) ^ n)) * 0x9e3779b97f4a7c15ULL;
    return mix(h);
}

static uint64_t ns_hash(const char *ws, size_t ws_len, const char *ns, size_t ns_len)
{
    return kd__hash_bytes(ns, ns_len, kd__hash_bytes(ws, ws_len, 0x6b64));
}

static uint64_t key_hash(const kd__ns *ns, const char *key, size_t len)
{
    return kd__hash_bytes(key, len, ns->hash);
}

/* ------------------------------------------------------------------------
 * Setup
 * ---------------------------------------------------------------------- */

int kd__index_init(kd__index *ix)
{
    memset(ix, 0, sizeof *ix);
    ix->ns_nbuckets = 16;
    ix->key_nbuckets = 1024;
    ix->val_nslots = 1024;
    ix->ns_buckets = calloc(ix->ns_nbuckets, sizeof *ix->ns_buckets);
    ix->key_buckets = calloc(ix->key_nbuckets, sizeof *ix->key_buckets);
    ix->val_slots = calloc(ix->val_nslots, sizeof *ix->val_slots);
    if (!ix->ns_buckets || !ix->key_buckets || !ix->val_slots) {
        kd__index_free(ix);
        return KD_ENOMEM;
    }
    ix->bytes = ix->ns_nbuckets * sizeof(void *) + ix->key_nbuckets * sizeof(void *) +
                ix->val_nslots * sizeof(uint32_t);
    return KD_OK;
}

void kd__index_free(kd__index *ix)
{
    for (size_t i = 0; i < ix->ns_count; i++) {
        kd__ns *ns = ix->ns_list[i];
        /* Keys in creation order: they lie in the arena in that order. */
        for (size_t j = 0; j < ns->n_all; j++)
            if (ns->all[j]->cap) /* cap 0: borrowed from the checkpoint's mapping */
                free(ns->all[j]->vers);
        pthread_mutex_destroy(&ns->sort_mu);
        free(ns->ws);
        free(ns->name);
        free(ns->all);
        free(ns->sorted);
        free(ns->recent);
        free(ns);
    }
    free(ix->ns_list);
    for (size_t i = 0; i < ix->n_maps; i++)
        munmap(ix->maps[i].p, ix->maps[i].len);
    free(ix->maps);
    free(ix->ns_buckets);
    free(ix->key_buckets);
    for (size_t i = 0; i < ix->n_chunks; i++)
        free(ix->val_chunks[i]);
    free(ix->val_chunks);
    free(ix->val_slots);
    while (ix->arena) {
        kd__arena_block *next = ix->arena->next;
        free(ix->arena);
        ix->arena = next;
    }
    memset(ix, 0, sizeof *ix);
}

/* n bytes, 8-aligned, from the arena. */
static void *arena_alloc(kd__index *ix, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    kd__arena_block *b = ix->arena;
    if (!b || b->size - b->used < n) {
        /* Blocks grow from 16 KiB to 1 MiB, so small databases stay small. */
        size_t size = b ? (b->size < (1u << 20) ? b->size * 2 : b->size) : (16u << 10);
        if (size < n)
            size = n;
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
        b->used = 0;
        b->size = size;
        b->next = ix->arena;
        ix->arena = b;
        ix->bytes += sizeof *b + size;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

int kd__index_reserve(kd__index *ix, size_t keys, size_t values)
{
    size_t kb = pow2_at_least(keys), vs = pow2_at_least(values + values * 2 / 3 + 1);
    if (kb > ix->key_nbuckets && ix->key_count == 0) {
        kd__key **b = calloc(kb, sizeof *b);
        if (!b)
            return KD_ENOMEM;
        free(ix->key_buckets);
        ix->bytes += (kb - ix->key_nbuckets) * sizeof(void *);
        ix->key_buckets = b;
        ix->key_nbuckets = kb;
    }
    if (vs > ix->val_nslots && ix->n_vals == 0) {
        uint32_t *v = calloc(vs, sizeof *v);
        if (!v)
            return KD_ENOMEM;
        free(ix->val_slots);
        ix->bytes += (vs - ix->val_nslots) * sizeof *v;
        ix->val_slots = v;
        ix->val_nslots = vs;
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Namespaces
 * ---------------------------------------------------------------------- */

kd__ns *kd__index_ns_find(const kd__index *ix, const char *ws, size_t ws_len, const char *ns, size_t ns_len)
{
    uint64_t h = ns_hash(ws, ws_len, ns, ns_len);
    for (kd__ns *n = ix->ns_buckets[h & (ix->ns_nbuckets - 1)]; n; n = n->next)
        if (n->hash == h && n->name_len == ns_len && n->ws_len == ws_len && !memcmp(n->name, ns, ns_len) &&
            !memcmp(n->ws, ws, ws_len))
            return n;
    return NULL;
}

static int ns_grow(kd__index *ix)
{
    size_t nb = ix->ns_nbuckets * 2;
    kd__ns **b = calloc(nb, sizeof *b);
    if (!b)
        return KD_ENOMEM;
    for (size_t i = 0; i < ix->ns_count; i++) {
        kd__ns *n = ix->ns_list[i];
        n->next = b[n->hash & (nb - 1)];
        b[n->hash & (nb - 1)] = n;
    }
    free(ix->ns_buckets);
    ix->bytes += (nb - ix->ns_nbuckets) * sizeof(void *);
    ix->ns_buckets = b;
    ix->ns_nbuckets = nb;
    return KD_OK;
}

int kd__index_ns_get(kd__index *ix, const char *ws, size_t ws_len, const char *ns, size_t ns_len, kd__ns **out)
{
    kd__ns *n = kd__index_ns_find(ix, ws, ws_len, ns, ns_len);
    if (n) {
        *out = n;
        return KD_OK;
    }
    if (ix->ns_count + 1 > ix->ns_nbuckets && ns_grow(ix))
        return KD_ENOMEM;
    /* ns_list grows in powers of two alongside the count. */
    if ((ix->ns_count & (ix->ns_count - 1)) == 0) {
        size_t cap = ix->ns_count ? ix->ns_count * 2 : 4;
        kd__ns **l = realloc(ix->ns_list, cap * sizeof *l);
        if (!l)
            return KD_ENOMEM;
        ix->ns_list = l;
    }
    n = calloc(1, sizeof *n);
    if (!n)
        return KD_ENOMEM;
    n->ws = malloc(ws_len + 1);
    n->name = malloc(ns_len + 1);
    if (!n->ws || !n->name) {
        free(n->ws);
        free(n->name);
        free(n);
        return KD_ENOMEM;
    }
    memcpy(n->ws, ws, ws_len);
    n->ws[ws_len] = '\0';
    memcpy(n->name, ns, ns_len);
    n->name[ns_len] = '\0';
    n->ws_len = ws_len;
    n->name_len = ns_len;
    n->hash = ns_hash(ws, ws_len, ns, ns_len);
    pthread_mutex_init(&n->sort_mu, NULL);
    n->next = ix->ns_buckets[n->hash & (ix->ns_nbuckets - 1)];
    ix->ns_buckets[n->hash & (ix->ns_nbuckets - 1)] = n;
    ix->ns_list[ix->ns_count++] = n;
    ix->bytes += sizeof *n + ws_len + ns_len + 2 + sizeof(void *);
    *out = n;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Keys
 * ---------------------------------------------------------------------- */

kd__key *kd__index_key_find(const kd__index *ix, const kd__ns *ns, const char *key, size_t len)
{
    uint64_t h = key_hash(ns, key, len);
    for (kd__key *k = ix->key_buckets[h & (ix->key_nbuckets - 1)]; k; k = k->next)
        if (k->hash == h && k->ns == ns && k->len == len && !memcmp(k->name, key, len))
            return k;
    return NULL;
}

static int key_grow(kd__index *ix)
{
    size_t nb = ix->key_nbuckets * 2;
    kd__key **b = calloc(nb, sizeof *b);
    if (!b)
        return KD_ENOMEM;
    for (size_t i = 0; i < ix->key_nbuckets; i++) {
        kd__key *k = ix->key_buckets[i];
        while (k) {
            kd__key *next = k->next;
            k->next = b[k->hash & (nb - 1)];
            b[k->hash & (nb - 1)] = k;
            k = next;
        }
    }
    free(ix->key_buckets);
    ix->bytes += (nb - ix->key_nbuckets) * sizeof(void *);
    ix->key_buckets = b;
    ix->key_nbuckets = nb;
    return KD_OK;
}

int kd__index_key_get(kd__index *ix, kd__ns *ns, const char *key, size_t len, kd__key **out)
{
    kd__key *k = kd__index_key_find(ix, ns, key, len);
    if (k) {
        *out = k;
        return KD_OK;
    }
    if (ix->key_count + 1 > ix->key_nbuckets && key_grow(ix))
        return KD_ENOMEM;
    if (ns->n_all == ns->cap_all) {
        size_t cap = ns->cap_all ? ns->cap_all * 2 : 8;
        kd__key **a = realloc(ns->all, cap * sizeof *a);
        if (!a)
            return KD_ENOMEM;
        ix->bytes += (cap - ns->cap_all) * sizeof *a;
        ns->all = a;
        ns->cap_all = cap;
    }
    k = arena_alloc(ix, sizeof *k + len + 1);
    if (!k)
        return KD_ENOMEM;
    memset(k, 0, sizeof *k);
    memcpy(k->name, key, len);
    k->name[len] = '\0';
    k->len = (uint16_t)len;
    k->ns = ns;
    k->hash = key_hash(ns, key, len);
    k->next = ix->key_buckets[k->hash & (ix->key_nbuckets - 1)];
    ix->key_buckets[k->hash & (ix->key_nbuckets - 1)] = k;
    ix->key_count++;
    ns->all[ns->n_all++] = k;
    ns->keys++;
    *out = k; /* its bytes are counted with the arena block */
    return KD_OK;
}

/* The mapping that holds p, or NULL. */
static kd__ixmap *map_of(const kd__index *ix, const void *p)
{
    for (size_t i = 0; i < ix->n_maps; i++)
        if ((const char *)p >= (const char *)ix->maps[i].p &&
            (const char *)p < (const char *)ix->maps[i].p + ix->maps[i].len)
            return &ix->maps[i];
    return NULL;
}

int kd__index_map_add(kd__index *ix, void *p, size_t len, uint64_t users)
{
    kd__ixmap *m = realloc(ix->maps, (ix->n_maps + 1) * sizeof *m);
    if (!m)
        return KD_ENOMEM;
    ix->maps = m;
    m[ix->n_maps++] = (kd__ixmap){p, len, users};
    return KD_OK;
}

size_t kd__index_maps_trim(kd__index *ix)
{
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < ix->n_maps; i++) {
        if (ix->maps[i].users) {
            ix->maps[kept++] = ix->maps[i];
        } else {
            munmap(ix->maps[i].p, ix->maps[i].len);
            dropped++;
        }
    }
    ix->n_maps = kept;
    return dropped;
}

/* Remember a write's timestamp in its namespace's ring (kd__ns.recent).
 * Without memory for the ring, nothing is remembered: a ring allocated
 * later holds only writes newer than any it missed, which is all its
 * reader assumes. */
static void note_recent(kd__index *ix, kd__ns *s, int64_t ts)
{
    if (!s->recent) {
        if (!(s->recent = malloc(KD__NS_RECENT * sizeof *s->recent)))
            return;
        ix->bytes += KD__NS_RECENT * sizeof *s->recent;
    }
    s->recent[s->n_recent++ % KD__NS_RECENT] = ts;
}

int64_t kd__ns_newest_recent(const kd__ns *s, int64_t upto)
{
    uint64_t have = s->n_recent < KD__NS_RECENT ? s->n_recent : KD__NS_RECENT;
    for (uint64_t j = 1; s->recent && j <= have; j++) {
        int64_t ts = s->recent[(s->n_recent - j) % KD__NS_RECENT];
        if (ts <= upto)
            return ts;
    }
    /* Before the ring's oldest: the seed, unless the ring has overwritten
     * writes since (then something between them may be missing). */
    int64_t seed = __atomic_load_n(&s->seed_ts, __ATOMIC_RELAXED);
    if (s->n_recent < KD__NS_RECENT && seed > 0 && seed <= upto)
        return seed;
    return -1;
}

int kd__index_append(kd__index *ix, kd__key *k, const kd__ver *v)
{
    if (k->n == k->cap || k->cap == 0) { /* full, or borrowed */
        kd__ver *nv;
        uint32_t cap;
        if (k->cap == 0 && k->n) {
            /* Versions borrowed from the checkpoint's mapping: the first
             * write since open copies them into memory of our own. */
            cap = k->n + k->n / 2 + 1;
            if (!(nv = malloc((size_t)cap * sizeof *nv)))
                return KD_ENOMEM;
            memcpy(nv, k->vers, (size_t)k->n * sizeof *nv);
            kd__ixmap *m = map_of(ix, k->vers);
            if (m)
                m->users--;
            ix->bytes += (size_t)cap * sizeof *nv;
            ix->ver_heap += (size_t)cap * sizeof *nv;
            ix->borrowed -= (size_t)k->n * sizeof *nv;
        } else {
            cap = k->cap < 4 ? (k->cap ? 4 : 1) : k->cap + k->cap / 2;
            if (!(nv = realloc(k->vers, (size_t)cap * sizeof *nv)))
                return KD_ENOMEM;
            ix->bytes += (size_t)(cap - k->cap) * sizeof *nv;
            ix->ver_heap += (size_t)(cap - k->cap) * sizeof *nv;
        }
        k->vers = nv;
        k->cap = cap;
    }
    int was_live = k->n && kd__ver_live(k->ns, &k->vers[k->n - 1]);
    int is_live = kd__ver_live(k->ns, v);
    k->vers[k->n++] = *v;
    note_recent(ix, k->ns, v->ts);
    if (was_live != is_live) {
        if (is_live)
            k->ns->live++;
        else
            k->ns->live--;
    }
    ix->versions++;
    return KD_OK;
}

void kd__index_ns_recount(kd__ns *s)
{
    uint64_t live = 0;
    for (size_t i = 0; i < s->n_all; i++) {
        const kd__key *k = s->all[i];
        live += k->n && kd__ver_live(s, &k->vers[k->n - 1]);
    }
    s->live = live;
}

void kd__index_key_borrow(kd__index *ix, kd__key *k, const kd__ver *vers)
{
    if (k->cap) {
        free(k->vers);
        ix->bytes -= (size_t)k->cap * sizeof(kd__ver);
        ix->ver_heap -= (size_t)k->cap * sizeof(kd__ver);
        ix->borrowed += (size_t)k->n * sizeof(kd__ver);
    } else { /* borrowed already, from an older mapping: the same bytes */
        kd__ixmap *old = map_of(ix, k->vers);
        if (old)
            old->users--;
    }
    kd__ixmap *m = map_of(ix, vers);
    if (m)
        m->users++;
    k->vers = (kd__ver *)vers;
    k->cap = 0;
}

const kd__ver *kd__key_at(const kd__key *k, int64_t at)
{
    uint32_t i = kd__key_upper(k, at);
    return i ? &k->vers[i - 1] : NULL;
}

uint32_t kd__key_upper(const kd__key *k, int64_t at)
{
    uint32_t lo = 0, hi = k->n;
    /* Fast path: the latest version is the usual answer. */
    if (hi && k->vers[hi - 1].ts <= at)
        return hi;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (k->vers[mid].ts <= at)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ------------------------------------------------------------------------
 * Values
 * ---------------------------------------------------------------------- */

static uint64_t id_hash(const uint8_t id[KD__HASH_LEN])
{
    uint64_t h;
    memcpy(&h, id, 8); /* a SHA-256 is already uniformly distributed */
    return h;
}

/* An id has more than one entry once its value, removed by a compaction,
 * is stored again: the old entry stays KD__VAL_GONE for the versions that
 * lost it (a pruned version never comes back), the new one serves the
 * rest. Entries are placed in the order they are made (here, when
 * rehashing and when loading), so the newest is the last of its id along
 * the probe sequence. */
uint32_t kd__index_value_find(const kd__index *ix, const uint8_t id[KD__HASH_LEN])
{
    size_t mask = ix->val_nslots - 1;
    uint32_t newest = KD__NO_VALUE;
    for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
        uint32_t s = ix->val_slots[i];
        if (!s)
            return newest;
        if (!memcmp(kd__index_val(ix, s - 1)->id, id, KD__HASH_LEN))
            newest = s - 1;
    }
}

int kd__index_value_twin(const kd__index *ix, uint32_t vidx)
{
    const kd__val *me = kd__index_val(ix, vidx);
    size_t mask = ix->val_nslots - 1;
    for (size_t i = id_hash(me->id) & mask;; i = (i + 1) & mask) {
        uint32_t s = ix->val_slots[i];
        if (!s)
            return 0;
        const kd__val *v = kd__index_val(ix, s - 1);
        if (s - 1 != vidx && v->seg != KD__VAL_GONE && !memcmp(v->id, me->id, KD__HASH_LEN))
            return 1;
    }
}

uint32_t kd__index_value_find_at(const kd__index *ix, const uint8_t id[KD__HASH_LEN], uint32_t seg, uint32_t off)
{
    size_t mask = ix->val_nslots - 1;
    for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
        uint32_t s = ix->val_slots[i];
        if (!s)
            return KD__NO_VALUE;
        const kd__val *v = kd__index_val(ix, s - 1);
        if (v->seg == seg && v->off == off && !memcmp(v->id, id, KD__HASH_LEN))
            return s - 1;
    }
}

static int val_rehash(kd__index *ix)
{
    size_t ns = ix->val_nslots * 2;
    uint32_t *slots = calloc(ns, sizeof *slots);
    if (!slots)
        return KD_ENOMEM;
    for (size_t v = 0; v < ix->n_vals; v++) {
        size_t i = id_hash(kd__index_val(ix, (uint32_t)v)->id) & (ns - 1);
        while (slots[i])
            i = (i + 1) & (ns - 1);
        slots[i] = (uint32_t)v + 1;
    }
    free(ix->val_slots);
    ix->bytes += (ns - ix->val_nslots) * sizeof *slots;
    ix->val_slots = slots;
    ix->val_nslots = ns;
    return KD_OK;
}

int kd__index_value_add(kd__index *ix, const uint8_t id[KD__HASH_LEN], uint32_t seg, uint32_t off, uint32_t stored,
                        int fresh, uint32_t *idx)
{
    if (ix->n_vals >= UINT32_MAX - 1)
        return KD_ENOMEM;
    /* Keep the load factor at or below 3/5: with linear probing a miss
     * (every new value is one) then costs under four probes on average. */
    if ((ix->n_vals + 1) * 5 > ix->val_nslots * 3 && val_rehash(ix))
        return KD_ENOMEM;
    if (ix->n_vals == ix->n_chunks << KD__VAL_CHUNK_BITS) {
        if (ix->n_chunks == ix->cap_chunks) {
            size_t cap = ix->cap_chunks ? ix->cap_chunks * 2 : 16;
            kd__val **c = realloc(ix->val_chunks, cap * sizeof *c);
            if (!c)
                return KD_ENOMEM;
            ix->bytes += (cap - ix->cap_chunks) * sizeof *c;
            ix->val_chunks = c;
            ix->cap_chunks = cap;
        }
        kd__val *chunk = malloc(sizeof *chunk << KD__VAL_CHUNK_BITS);
        if (!chunk)
            return KD_ENOMEM;
        ix->val_chunks[ix->n_chunks++] = chunk;
        ix->bytes += sizeof *chunk << KD__VAL_CHUNK_BITS;
    }
    /* One probe sequence finds the id's newest entry and the free slot
     * after it, where a new entry goes. */
    size_t mask = ix->val_nslots - 1;
    size_t i = id_hash(id) & mask;
    uint32_t newest = KD__NO_VALUE;
    for (; ix->val_slots[i]; i = (i + 1) & mask)
        if (!memcmp(kd__index_val(ix, ix->val_slots[i] - 1)->id, id, KD__HASH_LEN))
            newest = ix->val_slots[i] - 1;
    /* Found: a value stored twice keeps its first copy; a removed one is
     * found removed. Stored again after a compaction removed it: a new
     * entry (the old one stays removed for the versions that lost it). */
    if (newest != KD__NO_VALUE && !fresh && (seg == KD__VAL_GONE || kd__index_val(ix, newest)->seg != KD__VAL_GONE)) {
        *idx = newest;
        return KD_OK;
    }
    kd__val *v = kd__index_val(ix, (uint32_t)ix->n_vals);
    memcpy(v->id, id, KD__HASH_LEN);
    v->seg = seg;
    v->off = off;
    v->stored = stored;
    ix->values_gone += seg == KD__VAL_GONE;
    ix->val_slots[i] = (uint32_t)ix->n_vals + 1;
    *idx = (uint32_t)ix->n_vals++;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Bulk loading (from a checkpoint)
 * ---------------------------------------------------------------------- */

int kd__index_keys_load(kd__index *ix, const kd__key_load *keys, size_t n, int borrow)
{
    if (ix->key_count)
        return KD_EINVALID;
    if (kd__index_reserve(ix, n, 0))
        return KD_ENOMEM;
    uint64_t *hashes = malloc((n ? n : 1) * sizeof *hashes);
    if (!hashes)
        return KD_ENOMEM;
    for (size_t i = 0; i < n; i++)
        hashes[i] = key_hash(keys[i].ns, keys[i].name, keys[i].len);
    size_t mask = ix->key_nbuckets - 1;
    enum { AHEAD = 16 };
    int rc = KD_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        if (i + AHEAD < n)
            __builtin_prefetch(&ix->key_buckets[hashes[i + AHEAD] & mask], 1);
        const kd__key_load *l = &keys[i];
        kd__ns *ns = l->ns;
        if (ns->n_all == ns->cap_all) {
            size_t cap = ns->cap_all ? ns->cap_all * 2 : 8;
            kd__key **a = realloc(ns->all, cap * sizeof *a);
            if (!a) {
                rc = KD_ENOMEM;
                break;
            }
            ix->bytes += (cap - ns->cap_all) * sizeof *a;
            ns->all = a;
            ns->cap_all = cap;
        }
        kd__key *k = arena_alloc(ix, sizeof *k + l->len + 1);
        kd__ver *v = borrow ? (kd__ver *)l->vers : malloc((size_t)l->n * sizeof *v);
        if (!k || !v) {
            if (!borrow)
                free(v);
            rc = KD_ENOMEM;
            break;
        }
        memset(k, 0, sizeof *k);
        memcpy(k->name, l->name, l->len);
        k->name[l->len] = '\0';
        k->len = l->len;
        k->ns = ns;
        k->hash = hashes[i];
        if (!borrow)
            memcpy(v, l->vers, (size_t)l->n * sizeof *v);
        k->vers = v;
        k->n = l->n;
        k->cap = borrow ? 0 : l->n;
        k->next = ix->key_buckets[k->hash & mask];
        ix->key_buckets[k->hash & mask] = k;
        ix->key_count++;
        ns->all[ns->n_all++] = k;
        ns->keys++;
        if (kd__ver_live(ns, &v[l->n - 1]))
            ns->live++;
        ix->versions += l->n;
        if (borrow) {
            ix->borrowed += (size_t)l->n * sizeof *v;
        } else {
            ix->bytes += (size_t)l->n * sizeof *v;
            ix->ver_heap += (size_t)l->n * sizeof *v;
        }
    }
    free(hashes);
    return rc;
}

int kd__index_values_load(kd__index *ix, const void *recs, size_t n, size_t room)
{
    if (ix->n_vals || n >= UINT32_MAX - 1)
        return KD_EINVALID;
    /* Slots for these values and `room` more at the load factor that
     * value_add keeps, so the log tail replayed next does not rehash. */
    size_t want = pow2_at_least((n + room) * 5 / 3 + 1);
    if (want > ix->val_nslots) {
        uint32_t *s = calloc(want, sizeof *s);
        if (!s)
            return KD_ENOMEM;
        free(ix->val_slots);
        ix->bytes += (want - ix->val_nslots) * sizeof *s;
        ix->val_slots = s;
        ix->val_nslots = want;
    }
    size_t chunks = (n + (1u << KD__VAL_CHUNK_BITS) - 1) >> KD__VAL_CHUNK_BITS;
    size_t cap = 16;
    while (cap < chunks)
        cap *= 2;
    kd__val **c = realloc(ix->val_chunks, cap * sizeof *c);
    if (!c)
        return KD_ENOMEM;
    ix->val_chunks = c;
    ix->bytes += (cap - ix->cap_chunks) * sizeof *c;
    ix->cap_chunks = cap;
    const uint8_t *src = recs;
    for (size_t i = 0; i < chunks; i++) {
        kd__val *chunk = malloc(sizeof *chunk << KD__VAL_CHUNK_BITS);
        if (!chunk)
            return KD_ENOMEM; /* kd__index_free frees the chunks made so far */
        size_t here = n - (i << KD__VAL_CHUNK_BITS);
        if (here > (1u << KD__VAL_CHUNK_BITS))
            here = 1u << KD__VAL_CHUNK_BITS;
        memcpy(chunk, src, here * sizeof *chunk);
        src += here * sizeof *chunk;
        for (size_t j = 0; j < here; j++)
            ix->values_gone += chunk[j].seg == KD__VAL_GONE;
        ix->val_chunks[ix->n_chunks++] = chunk;
        ix->bytes += sizeof *chunk << KD__VAL_CHUNK_BITS;
    }
    /* The ids are distinct (they were one table's keys), so each goes to
     * the first free slot from its home without comparing. The slot of a
     * value a few places ahead is prefetched: a random table access per
     * value is what this loop would otherwise wait on. */
    size_t mask = ix->val_nslots - 1;
    enum { AHEAD = 16 };
    for (size_t v = 0; v < n; v++) {
        if (v + AHEAD < n)
            __builtin_prefetch(&ix->val_slots[id_hash(kd__index_val(ix, (uint32_t)(v + AHEAD))->id) & mask], 1);
        size_t i = id_hash(kd__index_val(ix, (uint32_t)v)->id) & mask;
        while (ix->val_slots[i])
            i = (i + 1) & mask;
        ix->val_slots[i] = (uint32_t)v + 1;
    }
    ix->n_vals = n;
    return KD_OK;
}
