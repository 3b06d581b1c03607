/*
 * hnsw.c — approximate nearest-neighbour search over float32 vectors: a
 * hierarchical navigable small world graph (Y. Malkov, D. Yashunin,
 * "Efficient and robust approximate nearest neighbor search using
 * Hierarchical Navigable Small World graphs", 2016/2018), written from the
 * paper's algorithms 1, 2, 4 and 5; plus deletes, in-place updates, exact
 * filtered search and a checksummed on-disk form. API and thread safety:
 * vector_int.h.
 *
 * The graph. Every node has a level L drawn as floor(-ln(U) * mL) with
 * mL = 1/ln(M), and belongs to layers 0..L. On layer 0 a node keeps up to
 * 2M neighbours, on the others up to M. One node of the highest level is
 * the entry point. Insertion (algorithm 1): greedy descent from the entry
 * point to layer L+1, then on each layer L..0 a beam search of width
 * ef_construction (algorithm 2) whose result is thinned by the neighbour
 * heuristic (algorithm 4: keep a candidate only if it is closer to the new
 * node than to every neighbour already kept) to M links; each chosen
 * neighbour links back, and a neighbour whose list overflows re-selects its
 * list with the same heuristic. Search (algorithm 5): greedy descent to
 * layer 1, beam search of width max(ef, k) on layer 0.
 *
 * Storage. Per-slot arrays indexed by the caller's label: vectors (one
 * 64-byte-aligned flat array of dim floats per slot), level-0 links (one
 * flat array of 1 + 2M uint32 per slot: count, then neighbours), level and
 * flags (a byte each), and a pointer per slot to its upper-layer links
 * (L blocks of 1 + M uint32) for the ~1/M nodes above layer 0.
 *
 * Distances. Internally every metric is a distance, lower = closer:
 * squared L2 for l2, minus the dot product for dot and cosine (cosine
 * vectors are stored normalized, so that is 1 - cosine shifted by 1).
 * Scores are converted at the end (vector_int.h); a cosine score is then
 * computed as kd__vec_cosine of the two directions, exact for a vector
 * and itself, where -distance is off by rounding.
 *
 * Deletes mark the node; it keeps routing searches, never enters results.
 * An add of a label already present replaces its vector in place and links
 * the node again from its new position (its old inbound links remain; they
 * only cost routing quality, never correctness).
 *
 * Failures. kd__hnsw_add computes everything that can fail (array growth,
 * scratch memory, the beam searches and neighbour choices) before it
 * changes the graph, so KD_ENOMEM leaves the index as it was.
 *
 * On disk (format version 1, little-endian):
 *   preamble  16 bytes: magic "KDHNSW\r\n", u32 format version, u32 CRC-32C
 *             of the 12 bytes before it;
 *   blocks    u32 payload length (<= 1 MiB), u32 check, payload; the check
 *             is CRC-32C(payload) XOR (seq * 0x9E3779B1 + 0x7F4A7C15), seq
 *             counting blocks from 0, so blocks cannot be dropped or
 *             reordered unnoticed; an empty block ends the file, and
 *             nothing may follow it.
 *   content   (the concatenated payloads): u32 dim, u32 metric, u32 M,
 *             u32 ef_construction, u64 random state, u32 slots, u32 nodes
 *             present, u32 nodes live, u32 entry point (0xffffffff if
 *             none), i32 top level (-1 if none); then per slot: u8 flags
 *             (0 absent, 1 live, 3 removed); for a present slot u8 level,
 *             dim float32, and for each layer 0..level a u32 count and that
 *             many u32 neighbour labels.
 * Load checks each block's check before using its bytes, every count
 * against its bound before allocating, and afterwards every link (target
 * present, on that layer, not the node itself), the counts and the entry
 * point.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "korudelta.h"
#include "util/crc32c.h"
#include "vector/vector_int.h"
#include "../util/le.h"

#define NONE UINT32_MAX
#define MAX_LEVEL 16 /* levels 0..16; with M >= 2 reaching 16 has p <= 2^-16 per node */
#define F_PRESENT 1u
#define F_DELETED 2u
#define ABORTED 1 /* search_layer: budget exhausted */

typedef struct pair {
    float d;
    uint32_t id;
} pair;

/* Scratch memory of one search or insert; a pool of them lets searches run
 * concurrently without allocating each time. */
typedef struct scratch {
    struct scratch *next;
    uint16_t *visited; /* tag per slot: visited in the current search if == epoch */
    size_t nvisited;
    uint16_t epoch;
    pair *cand; /* min-heap of candidates to expand */
    size_t ccap;
    pair *res; /* max-heap of the best results so far */
    size_t rcap;
    pair *sel; /* sorted results, neighbour re-selection */
    size_t scap;
    float *q; /* the query (normalized under cosine) */
    pair *plan; /* insert: chosen neighbours per layer, M per layer */
    uint32_t plan_n[MAX_LEVEL + 1];
    size_t bytes;
    size_t ef_max; /* the widest search (or insert) its heaps were reserved for */
} scratch;

struct kd__hnsw {
    uint32_t dim, M, M0, efc;
    kd__vec_metric metric;
    int l2;
    double ml;
    uint64_t rng;
    kd__vec_fn dot, l2sq;

    uint32_t cap;      /* slots allocated */
    uint32_t nslots;   /* 1 + highest label present (or removed) */
    uint32_t npresent; /* nodes in the graph */
    uint32_t nlive;    /* nodes not removed */
    uint32_t entry;    /* NONE when empty */
    int maxlevel;      /* -1 when empty */

    char *vraw; /* vectors: malloc'ed block, vec = vraw + voff is 64-aligned */
    size_t voff;
    float *vec;
    uint32_t *links0; /* cap * (1 + M0) */
    uint8_t *level;
    uint8_t *flags;
    uint32_t **upper; /* NULL or level * (1 + M) */
    size_t upper_bytes;

    pthread_mutex_t pool_mu; /* guards pool and scratch_bytes */
    scratch *pool;
    size_t scratch_bytes;

    /* Changed labels while a copy is made (kd__hnsw_track_begin): one bit
     * per label below changed_bits; NULL when not tracking. */
    uint64_t *changed;
    uint32_t changed_bits;
    int changed_lost; /* a mark found no memory: the copy cannot finish */
};

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */

static inline const float *vec_of(const kd__hnsw *h, uint32_t id)
{
    return h->vec + (size_t)id * h->dim;
}

static inline uint32_t *links_at(const kd__hnsw *h, uint32_t id, int lc)
{
    if (lc == 0)
        return h->links0 + (size_t)id * (1 + h->M0);
    return h->upper[id] + (size_t)(lc - 1) * (1 + h->M);
}

/* Note that `id` changed, for a copy being made (see kd__hnsw_track_begin). */
static void mark(kd__hnsw *h, uint32_t id)
{
    if (!h->changed)
        return;
    if (id >= h->changed_bits) {
        uint64_t bits = (uint64_t)id + 1 > (uint64_t)h->cap ? (uint64_t)id + 1 : h->cap;
        size_t old = ((size_t)h->changed_bits + 63) / 64, words = (size_t)((bits + 63) / 64);
        uint64_t *c = realloc(h->changed, words * sizeof *c);
        if (!c) {
            h->changed_lost = 1;
            return;
        }
        memset(c + old, 0, (words - old) * sizeof *c);
        h->changed = c;
        h->changed_bits = (uint32_t)(words * 64 > UINT32_MAX ? UINT32_MAX : words * 64);
    }
    h->changed[id / 64] |= UINT64_C(1) << (id % 64);
}

static inline float dist(const kd__hnsw *h, const float *a, const float *b)
{
    return h->l2 ? h->l2sq(a, b, h->dim) : -h->dot(a, b, h->dim);
}

/* The score of a result at distance d from the query q (prepared), node
 * vector v. Cosine: kd__vec_cosine of the two directions, with qq =
 * dot(q, q), so exactly 1 for the node's own vector and never outside
 * [-1, 1] (-d alone is ~1e-7 off either way). */
static inline float to_score(const kd__hnsw *h, float d, const float *v, float qq)
{
    if (h->metric == KD__VEC_COSINE)
        return kd__vec_cosine(-d, qq, h->dot(v, v, h->dim));
    return h->l2 ? sqrtf(d > 0 ? d : 0) : -d;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static int random_level(kd__hnsw *h)
{
    double u = (double)((splitmix64(&h->rng) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
    double l = -log(u) * h->ml;
    return l >= MAX_LEVEL ? MAX_LEVEL : (int)l;
}

/* Copy v into out, normalized under cosine. KD_EINVALID for NaN/Inf or a
 * zero vector under cosine. */
static int prepare(const kd__hnsw *h, const float *v, float *out)
{
    if (kd__vec_check(v, h->dim))
        return KD_EINVALID;
    if (h->metric != KD__VEC_COSINE)
        memcpy(out, v, (size_t)h->dim * sizeof(float));
    else if (kd__vec_normalize(v, h->dim, out) == 0.0f)
        return KD_EINVALID;
    return KD_OK;
}

/* Ordering of results: by distance, ties by label. */
static inline int worse(pair a, pair b)
{
    return a.d > b.d || (a.d == b.d && a.id > b.id);
}

/* Candidates: min-heap by distance. */
static inline void cand_push(pair *a, size_t *n, pair x)
{
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (a[p].d <= x.d)
            break;
        a[i] = a[p];
        i = p;
    }
    a[i] = x;
}

static inline pair cand_pop(pair *a, size_t *n)
{
    pair top = a[0], x = a[--*n];
    size_t m = *n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && a[c + 1].d < a[c].d)
            c++;
        if (a[c].d >= x.d)
            break;
        a[i] = a[c];
        i = c;
    }
    if (m)
        a[i] = x;
    return top;
}

/* Results: max-heap by worse(). */
static inline void res_push(pair *a, size_t *n, pair x)
{
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!worse(x, a[p]))
            break;
        a[i] = a[p];
        i = p;
    }
    a[i] = x;
}

static inline void res_sift_down(pair *a, size_t m, pair x)
{
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && worse(a[c + 1], a[c]))
            c++;
        if (!worse(a[c], x))
            break;
        a[i] = a[c];
        i = c;
    }
    a[i] = x;
}

static inline void res_replace_top(pair *a, size_t n, pair x)
{
    res_sift_down(a, n, x);
}

static inline pair res_pop(pair *a, size_t *n)
{
    pair top = a[0];
    size_t m = --*n;
    if (m)
        res_sift_down(a, m, a[m]);
    return top;
}

/* Empty the result heap into out[0..n) best first. */
static void res_drain_sorted(pair *heap, size_t n, pair *out)
{
    while (n) {
        pair p = res_pop(heap, &n);
        out[n] = p;
    }
}

/* ------------------------------------------------------------------------
 * Arrays and scratch memory
 * ---------------------------------------------------------------------- */

/* Make room for slots below `need`: exactly that many if `exact`, else
 * with 1.5x headroom. */
static int grow(kd__hnsw *h, uint32_t need, int exact)
{
    if (need <= h->cap)
        return KD_OK;
    uint64_t nc = exact ? need : (uint64_t)h->cap + h->cap / 2;
    if (nc < need)
        nc = need;
    if (nc < 16 && !exact)
        nc = 16;
    if (nc > (uint64_t)KD__HNSW_MAX_LABEL + 1)
        nc = (uint64_t)KD__HNSW_MAX_LABEL + 1;
    size_t per = (size_t)h->dim * sizeof(float) + (size_t)(1 + h->M0) * sizeof(uint32_t) + 2 + sizeof(uint32_t *);
    if (nc > (SIZE_MAX - 64) / per)
        return KD_ENOMEM;
    uint32_t ncap = (uint32_t)nc;

    /* Vectors: realloc keeps the data; restore the 64-byte alignment if
     * the block moved to an address with another offset. */
    size_t used = (size_t)h->cap * h->dim * sizeof(float);
    char *raw = realloc(h->vraw, (size_t)ncap * h->dim * sizeof(float) + 64);
    if (!raw)
        return KD_ENOMEM;
    size_t off = (64 - ((uintptr_t)raw & 63)) & 63;
    if (off != h->voff && used)
        memmove(raw + off, raw + h->voff, used);
    h->vraw = raw;
    h->voff = off;
    h->vec = (float *)(void *)(raw + off);

    uint32_t *l0 = realloc(h->links0, (size_t)ncap * (1 + h->M0) * sizeof(uint32_t));
    if (!l0)
        return KD_ENOMEM;
    h->links0 = l0;
    uint8_t *lv = realloc(h->level, ncap);
    if (!lv)
        return KD_ENOMEM;
    h->level = lv;
    uint8_t *fl = realloc(h->flags, ncap);
    if (!fl)
        return KD_ENOMEM;
    h->flags = fl;
    uint32_t **up = realloc(h->upper, (size_t)ncap * sizeof(uint32_t *));
    if (!up)
        return KD_ENOMEM;
    h->upper = up;

    for (uint32_t i = h->cap; i < ncap; i++) {
        h->links0[(size_t)i * (1 + h->M0)] = 0;
        h->level[i] = 0;
        h->flags[i] = 0;
        h->upper[i] = NULL;
    }
    h->cap = ncap;
    return KD_OK;
}

static void scratch_free(scratch *s)
{
    if (!s)
        return;
    free(s->visited);
    free(s->cand);
    free(s->res);
    free(s->sel);
    free(s->q);
    free(s->plan);
    free(s);
}

/* Grow *p (elements of size sz) to at least `need`; doubles. */
static int grow_arr(void **p, size_t *cap, size_t need, size_t sz, size_t *bytes)
{
    if (need <= *cap)
        return KD_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * sz);
    if (!np)
        return KD_ENOMEM;
    *bytes += (nc - *cap) * sz;
    *p = np;
    *cap = nc;
    return KD_OK;
}

/* A scratch sized for this index (visited tags for every slot, room for a
 * neighbour re-selection), or NULL if out of memory. */
static scratch *scratch_get(kd__hnsw *h)
{
    pthread_mutex_lock(&h->pool_mu);
    scratch *s = h->pool;
    if (s)
        h->pool = s->next;
    pthread_mutex_unlock(&h->pool_mu);

    size_t before = 0, added = 0;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        s->q = malloc((size_t)h->dim * sizeof(float));
        s->plan = malloc((size_t)(MAX_LEVEL + 1) * h->M * sizeof(pair));
        if (!s->q || !s->plan) {
            scratch_free(s);
            return NULL;
        }
        s->bytes = sizeof *s + (size_t)h->dim * sizeof(float) + (size_t)(MAX_LEVEL + 1) * h->M * sizeof(pair);
        added = s->bytes;
    }
    before = s->bytes;
    int rc = KD_OK;
    if (s->nvisited < h->cap) {
        uint16_t *v = realloc(s->visited, (size_t)h->cap * sizeof(uint16_t));
        if (!v) {
            rc = KD_ENOMEM;
        } else {
            memset(v, 0, (size_t)h->cap * sizeof(uint16_t));
            s->bytes += (h->cap - s->nvisited) * sizeof(uint16_t);
            s->visited = v;
            s->nvisited = h->cap;
            s->epoch = 0;
        }
    }
    if (!rc)
        rc = grow_arr((void **)&s->sel, &s->scap, (size_t)h->M0 + 1, sizeof(pair), &s->bytes);
    added += s->bytes - before;
    pthread_mutex_lock(&h->pool_mu);
    h->scratch_bytes += added;
    pthread_mutex_unlock(&h->pool_mu);
    if (rc) {
        pthread_mutex_lock(&h->pool_mu);
        s->next = h->pool;
        h->pool = s;
        pthread_mutex_unlock(&h->pool_mu);
        return NULL;
    }
    return s;
}

/* A search wider than this (and than ef_construction) gives its heaps back
 * after use: one wide search (ef up to KD__HNSW_MAX_EF, ~6 MB of heaps)
 * then costs its memory once, not for as long as the index lives. The
 * rest of the scratch (visited tags, one per slot) is kept. */
#define KEEP_EF 1024

static void scratch_put(kd__hnsw *h, scratch *s)
{
    size_t keep = h->efc > KEEP_EF ? h->efc : KEEP_EF;
    size_t freed = 0;
    if (s->ef_max > keep) {
        freed = (s->rcap + s->scap + s->ccap) * sizeof(pair);
        free(s->res);
        free(s->sel);
        free(s->cand);
        s->res = s->sel = s->cand = NULL;
        s->rcap = s->scap = s->ccap = 0;
        s->ef_max = 0;
        s->bytes -= freed;
    }
    pthread_mutex_lock(&h->pool_mu);
    h->scratch_bytes -= freed;
    s->next = h->pool;
    h->pool = s;
    pthread_mutex_unlock(&h->pool_mu);
}

/* Make sure the heaps of s can hold what a search of width ef does; the
 * candidate heap also grows during the search. Updates the byte count. */
static int scratch_reserve(kd__hnsw *h, scratch *s, size_t ef)
{
    size_t before = s->bytes;
    if (ef > s->ef_max)
        s->ef_max = ef;
    int rc = grow_arr((void **)&s->res, &s->rcap, ef + 1, sizeof(pair), &s->bytes);
    if (!rc)
        rc = grow_arr((void **)&s->sel, &s->scap, ef + 1, sizeof(pair), &s->bytes);
    if (!rc)
        rc = grow_arr((void **)&s->cand, &s->ccap, 4 * ef + 64, sizeof(pair), &s->bytes);
    if (s->bytes != before) {
        pthread_mutex_lock(&h->pool_mu);
        h->scratch_bytes += s->bytes - before;
        pthread_mutex_unlock(&h->pool_mu);
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Index life cycle and accessors
 * ---------------------------------------------------------------------- */

int kd__hnsw_new(uint32_t dim, kd__vec_metric metric, uint32_t M, uint32_t ef_construction, uint64_t seed,
                 kd__hnsw **out)
{
    if (!out)
        return KD_EINVALID;
    *out = NULL;
    if (dim == 0 || dim > KD__VEC_MAX_DIM || !kd__vec_metric_name(metric))
        return KD_EINVALID;
    if (M == 0)
        M = KD__HNSW_DEFAULT_M;
    if (M < KD__HNSW_MIN_M || M > KD__HNSW_MAX_M)
        return KD_EINVALID;
    if (ef_construction == 0)
        ef_construction = KD__HNSW_DEFAULT_EF_CONSTRUCTION;
    if (ef_construction < M)
        ef_construction = M;
    if (ef_construction > KD__HNSW_MAX_EF)
        ef_construction = KD__HNSW_MAX_EF;

    kd__hnsw *h = calloc(1, sizeof *h);
    if (!h)
        return KD_ENOMEM;
    if (pthread_mutex_init(&h->pool_mu, NULL)) {
        free(h);
        return KD_ENOMEM;
    }
    const kd__vec_kernels *k = kd__vec_kernels_active();
    h->dim = dim;
    h->metric = metric;
    h->l2 = metric == KD__VEC_L2;
    h->M = M;
    h->M0 = 2 * M;
    h->efc = ef_construction;
    h->ml = 1.0 / log((double)M);
    h->rng = seed;
    h->dot = k->dot;
    h->l2sq = k->l2sq;
    h->entry = NONE;
    h->maxlevel = -1;
    *out = h;
    return KD_OK;
}

void kd__hnsw_free(kd__hnsw *h)
{
    if (!h)
        return;
    if (h->upper)
        for (uint32_t i = 0; i < h->cap; i++)
            free(h->upper[i]);
    free(h->upper);
    free(h->vraw);
    free(h->links0);
    free(h->level);
    free(h->flags);
    scratch *s = h->pool;
    while (s) {
        scratch *n = s->next;
        scratch_free(s);
        s = n;
    }
    free(h->changed);
    pthread_mutex_destroy(&h->pool_mu);
    free(h);
}

/* ------------------------------------------------------------------------
 * Copies made in pieces while writers go on (vector_int.h)
 * ---------------------------------------------------------------------- */

int kd__hnsw_empty_like(const kd__hnsw *h, kd__hnsw **out)
{
    return kd__hnsw_new(h->dim, h->metric, h->M, h->efc, h->rng, out);
}

int kd__hnsw_track_begin(kd__hnsw *h, uint32_t n)
{
    if (n < h->nslots)
        n = h->nslots;
    size_t words = ((size_t)n + 63) / 64;
    uint64_t *c = calloc(words ? words : 1, sizeof *c);
    if (!c)
        return KD_ENOMEM;
    for (uint32_t i = 0; i < n / 64; i++)
        c[i] = UINT64_MAX;
    if (n % 64)
        c[n / 64] = (UINT64_C(1) << (n % 64)) - 1;
    free(h->changed);
    h->changed = c;
    h->changed_bits = (uint32_t)(words * 64 > UINT32_MAX ? UINT32_MAX : words * 64);
    h->changed_lost = 0;
    return KD_OK;
}

void kd__hnsw_mark(kd__hnsw *h, uint32_t label)
{
    if (h)
        mark(h, label);
}

uint32_t kd__hnsw_track_next(const kd__hnsw *h, uint32_t from)
{
    if (!h->changed)
        return UINT32_MAX;
    size_t words = ((size_t)h->changed_bits + 63) / 64;
    for (size_t w = from / 64; w < words; w++) {
        uint64_t bits = h->changed[w];
        if (w == from / 64)
            bits &= UINT64_MAX << (from % 64);
        if (bits)
            return (uint32_t)(w * 64 + (size_t)__builtin_ctzll(bits));
    }
    return UINT32_MAX;
}

int kd__hnsw_copy_label(kd__hnsw *h, kd__hnsw *c, uint32_t label)
{
    if (label < h->nslots) {
        int rc = grow(c, label + 1, 0);
        if (rc)
            return rc;
        uint32_t *up = NULL;
        size_t up_bytes = h->upper[label] ? (size_t)h->level[label] * (1 + h->M) * sizeof(uint32_t) : 0;
        if (up_bytes && !(up = malloc(up_bytes)))
            return KD_ENOMEM;
        if (up)
            memcpy(up, h->upper[label], up_bytes);
        if (c->upper[label])
            c->upper_bytes -= (size_t)c->level[label] * (1 + c->M) * sizeof(uint32_t);
        free(c->upper[label]);
        c->upper[label] = up;
        c->upper_bytes += up_bytes;
        memcpy(c->vec + (size_t)label * c->dim, vec_of(h, label), (size_t)h->dim * sizeof(float));
        memcpy(links_at(c, label, 0), links_at(h, label, 0), (size_t)(1 + h->M0) * sizeof(uint32_t));
        c->level[label] = h->level[label];
        c->flags[label] = h->flags[label];
        if (label >= c->nslots)
            c->nslots = label + 1;
    } else if (label < c->cap) { /* never in h (a slot of the owner's only) */
        if (c->upper[label])
            c->upper_bytes -= (size_t)c->level[label] * (1 + c->M) * sizeof(uint32_t);
        free(c->upper[label]);
        c->upper[label] = NULL;
        c->flags[label] = 0;
        c->level[label] = 0;
        c->links0[(size_t)label * (1 + c->M0)] = 0;
    }
    if (h->changed && label < h->changed_bits)
        h->changed[label / 64] &= ~(UINT64_C(1) << (label % 64));
    return KD_OK;
}

int kd__hnsw_copy_finish(const kd__hnsw *h, kd__hnsw *c)
{
    if (h->changed_lost)
        return KD_ENOMEM;
    if (kd__hnsw_track_next(h, 0) != UINT32_MAX)
        return KD_EINVALID; /* labels left to copy: a misuse */
    c->nslots = h->nslots;
    c->npresent = h->npresent;
    c->nlive = h->nlive;
    c->entry = h->entry;
    c->maxlevel = h->maxlevel;
    c->rng = h->rng;
    return KD_OK;
}

void kd__hnsw_track_end(kd__hnsw *h)
{
    if (!h)
        return;
    free(h->changed);
    h->changed = NULL;
    h->changed_bits = 0;
    h->changed_lost = 0;
}

int kd__hnsw_reserve(kd__hnsw *h, uint32_t n)
{
    if (!h || n > KD__HNSW_MAX_LABEL + 1u)
        return KD_EINVALID;
    uint32_t old = h->cap;
    int rc = grow(h, n, 1);
    /* Fault the new vectors' pages in now (the other arrays were written
     * by grow), not at the first add or copy of each. */
    if (!rc && h->cap > old)
        memset(h->vec + (size_t)old * h->dim, 0, (size_t)(h->cap - old) * h->dim * sizeof(float));
    return rc;
}

size_t kd__hnsw_count(const kd__hnsw *h)
{
    return h ? h->npresent : 0;
}

size_t kd__hnsw_live(const kd__hnsw *h)
{
    return h ? h->nlive : 0;
}

int kd__hnsw_contains(const kd__hnsw *h, uint32_t label)
{
    return h && label < h->nslots && (h->flags[label] & (F_PRESENT | F_DELETED)) == F_PRESENT;
}

const float *kd__hnsw_vector(const kd__hnsw *h, uint32_t label)
{
    return kd__hnsw_contains(h, label) ? vec_of(h, label) : NULL;
}

uint32_t kd__hnsw_dim(const kd__hnsw *h)
{
    return h ? h->dim : 0;
}

kd__vec_metric kd__hnsw_metric(const kd__hnsw *h)
{
    return h ? h->metric : KD__VEC_COSINE;
}

uint32_t kd__hnsw_M(const kd__hnsw *h)
{
    return h ? h->M : 0;
}

uint32_t kd__hnsw_ef_construction(const kd__hnsw *h)
{
    return h ? h->efc : 0;
}

size_t kd__hnsw_scratch_bytes(const kd__hnsw *h)
{
    if (!h)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)&h->pool_mu);
    size_t n = h->scratch_bytes;
    pthread_mutex_unlock((pthread_mutex_t *)&h->pool_mu);
    return n;
}

size_t kd__hnsw_memory(const kd__hnsw *h)
{
    if (!h)
        return 0;
    size_t n = sizeof *h;
    if (h->vraw)
        n += (size_t)h->cap * h->dim * sizeof(float) + 64;
    n += (size_t)h->cap * ((1 + h->M0) * sizeof(uint32_t) + 2 + sizeof(uint32_t *));
    n += h->upper_bytes;
    pthread_mutex_lock((pthread_mutex_t *)&h->pool_mu);
    n += h->scratch_bytes;
    pthread_mutex_unlock((pthread_mutex_t *)&h->pool_mu);
    return n;
}

/* ------------------------------------------------------------------------
 * Search on one layer (paper, algorithm 2)
 * ---------------------------------------------------------------------- */

/* Vectors asked for ahead of their distance computation, and how many cache
 * lines of each. Walks at 100,000 x 128 with 1-3 ahead and 1, 2 or 8 lines
 * were within 15 % of each other on the (shared) development machine;
 * 3 ahead, whole vectors (up to 512 bytes) was among the best. */
#define PREFETCH_AHEAD 3
#define PREFETCH_LINES 8

/* Ask for a node's vector (up to PREFETCH_LINES cache lines of it). */
static inline void prefetch_vec(const kd__hnsw *h, uint32_t id)
{
    const char *p = (const char *)vec_of(h, id);
    size_t bytes = (size_t)h->dim * sizeof(float), lines = (bytes + 63) / 64;
    if (lines > PREFETCH_LINES)
        lines = PREFETCH_LINES;
    for (size_t i = 0; i < lines; i++)
        __builtin_prefetch(p + 64 * i);
}

/* Greedy walk on layer lc from *cur towards q (the beam of width 1). */
static void greedy(const kd__hnsw *h, const float *q, uint32_t *cur, float *dcur, int lc, uint64_t *ndist)
{
    for (;;) {
        const uint32_t *ln = links_at(h, *cur, lc);
        uint32_t cnt = ln[0], best = *cur;
        for (uint32_t j = 1; j <= cnt; j++) {
            float d = dist(h, q, vec_of(h, ln[j]));
            if (d < *dcur) {
                *dcur = d;
                best = ln[j];
            }
        }
        *ndist += cnt;
        if (best == *cur)
            return;
        *cur = best;
    }
}

/* What may enter the results of a layer search. */
typedef struct want {
    int query;                 /* 1: skip removed nodes and apply accept */
    uint32_t exclude;          /* insert/update: the node itself (NONE if none) */
    kd__hnsw_accept_fn accept; /* may be NULL */
    void *ctx;
    uint64_t budget;           /* distance computations before giving up; 0 = none */
    uint64_t ndist, naccept;   /* counters */
} want;

static inline int eligible(const kd__hnsw *h, want *w, uint32_t id)
{
    if (!w->query)
        return id != w->exclude;
    if (h->flags[id] & F_DELETED)
        return 0;
    if (!w->accept)
        return 1;
    w->naccept++;
    return w->accept(id, w->ctx) != 0;
}

/* Beam search of width ef on layer lc from entry point ep. The best
 * (at most ef) eligible nodes are left in s->res as a max-heap of *nres.
 * Returns KD_OK, ABORTED (budget spent) or KD_ENOMEM. */
static int search_layer(const kd__hnsw *h, scratch *s, const float *q, pair ep, size_t ef, int lc, want *w,
                        size_t *nres)
{
    if (++s->epoch == 0) {
        memset(s->visited, 0, s->nvisited * sizeof(uint16_t));
        s->epoch = 1;
    }
    const uint16_t tag = s->epoch;
    uint16_t *vis = s->visited;
    pair *res = s->res;
    size_t nc = 0, nr = 0;
    uint64_t nd = 0;

    if (w->exclude != NONE)
        vis[w->exclude] = tag;
    vis[ep.id] = tag;
    cand_push(s->cand, &nc, ep);
    if (eligible(h, w, ep.id))
        res_push(res, &nr, ep);

    while (nc) {
        pair c = cand_pop(s->cand, &nc);
        if (nr >= ef && c.d > res[0].d)
            break;
        const uint32_t *ln = links_at(h, c.id, lc);
        uint32_t cnt = ln[0];
        /* Room for every neighbour before the loop, so it cannot fail. */
        if (nc + cnt > s->ccap) {
            size_t before = s->bytes;
            if (grow_arr((void **)&s->cand, &s->ccap, nc + cnt, sizeof(pair), &s->bytes))
                return KD_ENOMEM;
            pthread_mutex_lock((pthread_mutex_t *)&h->pool_mu);
            ((kd__hnsw *)h)->scratch_bytes += s->bytes - before;
            pthread_mutex_unlock((pthread_mutex_t *)&h->pool_mu);
        }
        /* Pass 1: the unvisited neighbours (tags are in cache; the
         * vectors are not: start fetching them). Pass 2: their distances,
         * fetching PREFETCH_AHEAD vectors ahead. */
        uint32_t unvisited[2 * KD__HNSW_MAX_M];
        uint32_t nt = 0;
        for (uint32_t j = 1; j <= cnt; j++) {
            uint32_t nb = ln[j];
            if (vis[nb] == tag)
                continue;
            vis[nb] = tag;
            if (nt < PREFETCH_AHEAD)
                prefetch_vec(h, nb);
            unvisited[nt++] = nb;
        }
        for (uint32_t j = 0; j < nt; j++) {
            uint32_t nb = unvisited[j];
            if (j + PREFETCH_AHEAD < nt)
                prefetch_vec(h, unvisited[j + PREFETCH_AHEAD]);
            float d = dist(h, q, vec_of(h, nb));
            if (nr < ef || d < res[0].d) {
                pair p = {d, nb};
                cand_push(s->cand, &nc, p);
                if (eligible(h, w, nb)) {
                    if (nr < ef)
                        res_push(res, &nr, p);
                    else
                        res_replace_top(res, nr, p);
                }
            }
        }
        nd += nt;
        if (w->budget && w->ndist + nd > w->budget) {
            w->ndist += nd;
            *nres = nr;
            return ABORTED;
        }
    }
    w->ndist += nd;
    *nres = nr;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Insertion (paper, algorithms 1 and 4)
 * ---------------------------------------------------------------------- */

/* Neighbour heuristic: from cands (ascending distance to the base node),
 * keep a candidate if it is closer to the base than to every one kept so
 * far; at most m. Writes the kept ones to out (may alias nothing in
 * cands). */
static size_t select_neighbours(const kd__hnsw *h, const pair *cands, size_t n, size_t m, pair *out)
{
    size_t r = 0;
    for (size_t i = 0; i < n && r < m; i++) {
        const float *ve = vec_of(h, cands[i].id);
        int keep = 1;
        for (size_t j = 0; j < r; j++)
            if (dist(h, ve, vec_of(h, out[j].id)) < cands[i].d) {
                keep = 0;
                break;
            }
        if (keep)
            out[r++] = cands[i];
    }
    return r;
}

static void sort_pairs(pair *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        pair x = a[i];
        size_t j = i;
        while (j && worse(a[j - 1], x)) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* Add a link nb -> id on layer lc (d = their distance); if nb's list is
 * full, re-select it with the heuristic among its links and id. */
static void link_back(kd__hnsw *h, scratch *s, uint32_t nb, int lc, uint32_t id, float d)
{
    uint32_t *ln = links_at(h, nb, lc);
    uint32_t cnt = ln[0], mmax = lc ? h->M : h->M0;
    for (uint32_t j = 1; j <= cnt; j++)
        if (ln[j] == id)
            return;
    mark(h, nb);
    if (cnt < mmax) {
        ln[1 + cnt] = id;
        ln[0] = cnt + 1;
        return;
    }
    pair *c = s->sel; /* room for M0 + 1 (scratch_get) */
    const float *vb = vec_of(h, nb);
    for (uint32_t j = 0; j < cnt; j++) {
        c[j].id = ln[1 + j];
        c[j].d = dist(h, vb, vec_of(h, c[j].id));
    }
    c[cnt].id = id;
    c[cnt].d = d;
    sort_pairs(c, cnt + 1);
    /* Keep in c's prefix, then copy: out must not alias the list read. */
    size_t r = 0;
    for (size_t i = 0; i <= cnt && r < mmax; i++) {
        const float *ve = vec_of(h, c[i].id);
        int keep = 1;
        for (size_t j = 0; j < r; j++)
            if (dist(h, ve, vec_of(h, c[j].id)) < c[i].d) {
                keep = 0;
                break;
            }
        if (keep)
            c[r++] = c[i];
    }
    for (size_t j = 0; j < r; j++)
        ln[1 + j] = c[j].id;
    ln[0] = (uint32_t)r;
}

int kd__hnsw_add(kd__hnsw *h, uint32_t label, const float *v, uint32_t n)
{
    if (!h || !v || n != h->dim || label > KD__HNSW_MAX_LABEL)
        return KD_EINVALID;
    if (kd__vec_check(v, h->dim))
        return KD_EINVALID;
    int rc = grow(h, label + 1, 0);
    if (rc)
        return rc;
    scratch *s = scratch_get(h);
    if (!s)
        return KD_ENOMEM;
    uint32_t *up = NULL;
    uint64_t rng_before = h->rng;
    rc = prepare(h, v, s->q);
    if (rc)
        goto out;
    rc = scratch_reserve(h, s, h->efc);
    if (rc)
        goto out;

    int update = label < h->nslots && (h->flags[label] & F_PRESENT);
    int L = update ? h->level[label] : random_level(h);
    if (!update && L > 0) {
        up = calloc((size_t)L * (1 + h->M), sizeof(uint32_t));
        if (!up) {
            rc = KD_ENOMEM;
            goto out;
        }
    }

    /* Phase 1: find the neighbours on every layer; nothing changes yet. */
    int top = L < h->maxlevel ? L : h->maxlevel;
    for (int lc = 0; lc <= MAX_LEVEL; lc++)
        s->plan_n[lc] = 0;
    int others = h->npresent > (update ? 1u : 0u);
    if (others) {
        want w = {0, update ? label : NONE, NULL, NULL, 0, 0, 0};
        uint32_t cur = h->entry;
        float dcur = dist(h, s->q, vec_of(h, cur));
        for (int lc = h->maxlevel; lc > L; lc--)
            greedy(h, s->q, &cur, &dcur, lc, &w.ndist);
        for (int lc = top; lc >= 0; lc--) {
            size_t nres = 0;
            pair ep = {dcur, cur};
            rc = search_layer(h, s, s->q, ep, h->efc, lc, &w, &nres);
            if (rc)
                goto out;
            res_drain_sorted(s->res, nres, s->sel);
            s->plan_n[lc] = (uint32_t)select_neighbours(h, s->sel, nres, h->M, s->plan + (size_t)lc * h->M);
            if (nres) {
                cur = s->sel[0].id;
                dcur = s->sel[0].d;
            }
        }
    }

    /* Phase 2: store the vector, write the node's links, link back. */
    mark(h, label);
    memcpy(h->vec + (size_t)label * h->dim, s->q, (size_t)h->dim * sizeof(float));
    if (!update) {
        h->level[label] = (uint8_t)L;
        h->upper[label] = up;
        h->upper_bytes += (size_t)L * (1 + h->M) * sizeof(uint32_t);
        up = NULL;
        h->links0[(size_t)label * (1 + h->M0)] = 0;
        h->npresent++;
        h->nlive++;
        if (label >= h->nslots)
            h->nslots = label + 1;
    } else if (h->flags[label] & F_DELETED) {
        h->nlive++;
    }
    h->flags[label] = F_PRESENT;
    for (int lc = 0; lc <= L; lc++) {
        uint32_t *ln = links_at(h, label, lc);
        uint32_t cnt = lc <= top ? s->plan_n[lc] : 0;
        const pair *p = s->plan + (size_t)lc * h->M;
        for (uint32_t j = 0; j < cnt; j++)
            ln[1 + j] = p[j].id;
        ln[0] = cnt;
    }
    for (int lc = 0; lc <= top; lc++) {
        const pair *p = s->plan + (size_t)lc * h->M;
        for (uint32_t j = 0; j < s->plan_n[lc]; j++)
            link_back(h, s, p[j].id, lc, label, p[j].d);
    }
    if (h->entry == NONE || L > h->maxlevel) {
        h->entry = label;
        h->maxlevel = L;
    }
    rc = KD_OK;
out:
    if (rc)
        h->rng = rng_before;
    free(up);
    scratch_put(h, s);
    return rc;
}

int kd__hnsw_remove(kd__hnsw *h, uint32_t label)
{
    if (!h)
        return KD_EINVALID;
    if (!kd__hnsw_contains(h, label))
        return KD_ENOTFOUND;
    mark(h, label);
    h->flags[label] |= F_DELETED;
    h->nlive--;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Search (paper, algorithm 5) and brute force
 * ---------------------------------------------------------------------- */

/* Costs for choosing between the graph and brute force, in nanoseconds,
 * measured with 5,000-100,000 clustered vectors of dim 32 and 128 (AMD
 * EPYC, AVX2; graph walks at ef 10 and 40, filters keeping 1-100 %): per
 * slot scanned (flags, and the accept call if any), per distance in the
 * scan (vectors fetched ahead), per distance of a graph walk (including
 * its cache misses and heap work). */
#define COST_SLOT 1.0
#define COST_SLOT_ACCEPT 2.5
#define COST_SCAN(dim) (4.0 + 0.3 * (dim))
#define COST_GRAPH(dim) (100.0 + 0.5 * (dim))
#define GRAPH_MARGIN 0.6

/* Brute force: the best k live accepted nodes into s->res. Slots are
 * filtered a batch at a time, then the batch's distances computed with the
 * vectors fetched a few ahead: with a selective filter the accepted
 * vectors lie far apart and would otherwise each cost a memory latency. */
#define EXACT_BATCH 256
#define EXACT_AHEAD 4
static size_t exact_into(const kd__hnsw *h, scratch *s, const float *q, size_t k, want *w)
{
    pair *res = s->res;
    size_t nr = 0;
    uint32_t ids[EXACT_BATCH];
    for (uint32_t base = 0; base < h->nslots; base += EXACT_BATCH) {
        uint32_t end = h->nslots - base < EXACT_BATCH ? h->nslots : base + EXACT_BATCH, n = 0;
        for (uint32_t id = base; id < end; id++) {
            if (h->flags[id] != F_PRESENT)
                continue;
            if (w->accept) {
                w->naccept++;
                if (!w->accept(id, w->ctx))
                    continue;
            }
            ids[n++] = id;
        }
        for (uint32_t j = 0; j < n && j < EXACT_AHEAD; j++)
            prefetch_vec(h, ids[j]);
        for (uint32_t j = 0; j < n; j++) {
            if (j + EXACT_AHEAD < n)
                prefetch_vec(h, ids[j + EXACT_AHEAD]);
            pair p = {dist(h, q, vec_of(h, ids[j])), ids[j]};
            if (nr < k)
                res_push(res, &nr, p);
            else if (worse(res[0], p))
                res_replace_top(res, nr, p);
        }
        w->ndist += n;
    }
    return nr;
}

/* Copy the best k of the result heap (nr entries) to labels/scores, best
 * first. A cosine score differs from -distance by rounding, so the order
 * is made again by score (insertion: it is nearly sorted already). */
static size_t emit(const kd__hnsw *h, scratch *s, size_t nr, size_t k, uint32_t *labels, float *scores)
{
    while (nr > k)
        res_pop(s->res, &nr);
    res_drain_sorted(s->res, nr, s->sel);
    float qq = h->metric == KD__VEC_COSINE ? h->dot(s->q, s->q, h->dim) : 0.0f;
    for (size_t i = 0; i < nr; i++) {
        uint32_t id = s->sel[i].id;
        float sc = to_score(h, s->sel[i].d, vec_of(h, id), qq);
        size_t j = i;
        for (; j > 0 && h->metric == KD__VEC_COSINE &&
               (scores[j - 1] < sc || (scores[j - 1] == sc && labels[j - 1] > id)); j--) {
            labels[j] = labels[j - 1];
            scores[j] = scores[j - 1];
        }
        labels[j] = id;
        scores[j] = sc;
    }
    return nr;
}

static int search(kd__hnsw *h, const float *q, uint32_t dim, size_t k, size_t ef, kd__hnsw_accept_fn accept, void *ctx,
                  uint32_t *labels, float *scores, size_t *n_out, kd__hnsw_search_info *info, int force_exact)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (n_out)
        *n_out = 0;
    if (!h || !q || !n_out || dim != h->dim || (k && (!labels || !scores)))
        return KD_EINVALID;
    if (kd__vec_check(q, h->dim))
        return KD_EINVALID;
    scratch *s = scratch_get(h);
    if (!s)
        return KD_ENOMEM;
    int rc = prepare(h, q, s->q);
    if (rc || k == 0 || h->nlive == 0)
        goto out;
    if (k > h->nlive)
        k = h->nlive;
    if (ef == 0)
        ef = KD__HNSW_DEFAULT_EF_SEARCH;
    if (ef > KD__HNSW_MAX_EF)
        ef = KD__HNSW_MAX_EF;
    if (ef < k)
        ef = k;
    rc = scratch_reserve(h, s, ef);
    if (rc)
        goto out;

    want w = {1, NONE, accept, ctx, 0, 0, 0};
    kd__hnsw_method method = KD__HNSW_GRAPH;
    double share = 1.0;
    size_t nr = 0;

    if (force_exact || h->nlive <= KD__HNSW_EXACT_MAX_NODES) {
        method = KD__HNSW_EXACT;
    } else if (accept || h->nlive < h->npresent) {
        if (accept) { /* the accepted share, from a sample of the slots */
            uint64_t x = UINT64_C(0x5DEECE66D) ^ h->nslots;
            uint32_t seen = 0, yes = 0;
            for (int i = 0; i < KD__HNSW_SAMPLE; i++) {
                uint32_t id = (uint32_t)(((splitmix64(&x) >> 32) * h->nslots) >> 32);
                if (h->flags[id] != F_PRESENT)
                    continue;
                seen++;
                w.naccept++;
                if (accept(id, ctx))
                    yes++;
            }
            share = seen ? (double)yes / seen : 0.0;
        }
        /* Both costs in graph distance computations (vector_int.h). */
        double in_graph = share * h->nlive / h->npresent; /* share of graph nodes that may be results */
        double exact = (h->nslots * (accept ? COST_SLOT_ACCEPT : COST_SLOT) + share * h->nlive * COST_SCAN(h->dim)) /
                       COST_GRAPH(h->dim);
        double graph = in_graph > 0 ? (4.0 * ef + 200.0) / pow(in_graph, 0.6) : INFINITY;
        /* The walk's cost varies much from query to query: take it only
         * with room below its budget (at 100,000 x 128 with a 10 % filter,
         * walks at ef 128 averaging 0.7 of the budget passed it for half
         * the queries). */
        if (graph > GRAPH_MARGIN * exact)
            method = KD__HNSW_EXACT;
        else
            w.budget = (uint64_t)exact + 1;
    }

    if (method == KD__HNSW_GRAPH) {
        uint32_t cur = h->entry;
        float dcur = dist(h, s->q, vec_of(h, cur));
        w.ndist++;
        for (int lc = h->maxlevel; lc > 0; lc--)
            greedy(h, s->q, &cur, &dcur, lc, &w.ndist);
        pair ep = {dcur, cur};
        rc = search_layer(h, s, s->q, ep, ef, 0, &w, &nr);
        if (rc < 0)
            goto out;
        if (rc == ABORTED || nr < k)
            method = KD__HNSW_FALLBACK;
        rc = KD_OK;
    }
    if (method != KD__HNSW_GRAPH)
        nr = exact_into(h, s, s->q, k, &w);
    *n_out = emit(h, s, nr, k, labels, scores);
    if (info) {
        info->method = method;
        info->distances = w.ndist;
        info->accept_calls = w.naccept;
        info->accept_estimate = share;
    }
out:
    scratch_put(h, s);
    return rc;
}

int kd__hnsw_search_ex(kd__hnsw *h, const float *q, uint32_t n, size_t k, size_t ef, kd__hnsw_accept_fn accept,
                       void *ctx, uint32_t *labels, float *scores, size_t *n_out, kd__hnsw_search_info *info)
{
    return search(h, q, n, k, ef, accept, ctx, labels, scores, n_out, info, 0);
}

int kd__hnsw_search(kd__hnsw *h, const float *q, uint32_t n, size_t k, size_t ef, kd__hnsw_accept_fn accept,
                    void *ctx, uint32_t *labels, float *scores, size_t *n_out)
{
    return search(h, q, n, k, ef, accept, ctx, labels, scores, n_out, NULL, 0);
}

int kd__hnsw_search_exact(kd__hnsw *h, const float *q, uint32_t n, size_t k, size_t ef, kd__hnsw_accept_fn accept,
                          void *ctx, uint32_t *labels, float *scores, size_t *n_out)
{
    return search(h, q, n, k, ef, accept, ctx, labels, scores, n_out, NULL, 1);
}

/* ------------------------------------------------------------------------
 * Saving
 * ---------------------------------------------------------------------- */

#define BLOCK_MAX (1u << 20)
static const char MAGIC[8] = {'K', 'D', 'H', 'N', 'S', 'W', '\r', '\n'};

static uint32_t block_mix(uint32_t seq)
{
    return seq * 0x9E3779B1u + 0x7F4A7C15u;
}

typedef int (*sink_fn)(void *ctx, const void *p, size_t n);

typedef struct writer {
    sink_fn sink;
    void *ctx;
    uint8_t *buf;
    size_t len;
    uint32_t seq;
    int rc;
} writer;

static void w_block(writer *w)
{
    if (w->rc)
        return;
    uint8_t hdr[8];
    kd__put_u32(hdr, (uint32_t)w->len);
    kd__put_u32(hdr + 4, kd__crc32c(w->buf, w->len) ^ block_mix(w->seq++));
    w->rc = w->sink(w->ctx, hdr, 8);
    if (!w->rc && w->len)
        w->rc = w->sink(w->ctx, w->buf, w->len);
    w->len = 0;
}

static void w_put(writer *w, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n && !w->rc) {
        size_t c = BLOCK_MAX - w->len;
        if (c > n)
            c = n;
        memcpy(w->buf + w->len, b, c);
        w->len += c;
        b += c;
        n -= c;
        if (w->len == BLOCK_MAX)
            w_block(w);
    }
}

static void w_u8(writer *w, uint8_t v)
{
    w_put(w, &v, 1);
}

static void w_u32(writer *w, uint32_t v)
{
    uint8_t b[4];
    kd__put_u32(b, v);
    w_put(w, b, 4);
}

static void w_u32s(writer *w, const uint32_t *v, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    w_put(w, v, n * 4);
#else
    for (size_t i = 0; i < n; i++)
        w_u32(w, v[i]);
#endif
}

static void w_floats(writer *w, const float *v, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    w_put(w, v, n * 4);
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        w_u32(w, u);
    }
#endif
}

static int save(const kd__hnsw *h, sink_fn sink, void *ctx)
{
    if (!h)
        return KD_EINVALID;
    writer w = {sink, ctx, malloc(BLOCK_MAX), 0, 0, 0};
    if (!w.buf)
        return KD_ENOMEM;
    uint8_t pre[16];
    memcpy(pre, MAGIC, 8);
    kd__put_u32(pre + 8, KD__HNSW_FORMAT_VERSION);
    kd__put_u32(pre + 12, kd__crc32c(pre, 12));
    w.rc = sink(ctx, pre, sizeof pre);

    w_u32(&w, h->dim);
    w_u32(&w, (uint32_t)h->metric);
    w_u32(&w, h->M);
    w_u32(&w, h->efc);
    w_u32(&w, (uint32_t)h->rng);
    w_u32(&w, (uint32_t)(h->rng >> 32));
    w_u32(&w, h->nslots);
    w_u32(&w, h->npresent);
    w_u32(&w, h->nlive);
    w_u32(&w, h->entry);
    w_u32(&w, (uint32_t)h->maxlevel);
    for (uint32_t id = 0; id < h->nslots && !w.rc; id++) {
        uint8_t f = h->flags[id];
        w_u8(&w, f);
        if (!(f & F_PRESENT))
            continue;
        w_u8(&w, h->level[id]);
        w_floats(&w, vec_of(h, id), h->dim);
        for (int lc = 0; lc <= h->level[id]; lc++) {
            const uint32_t *ln = links_at(h, id, lc);
            w_u32s(&w, ln, 1 + (size_t)ln[0]);
        }
    }
    if (w.len)
        w_block(&w);
    w_block(&w); /* the empty end block */
    free(w.buf);
    return w.rc;
}

static int sink_file(void *ctx, const void *p, size_t n)
{
    return fwrite(p, 1, n, (FILE *)ctx) == n ? KD_OK : KD_EIO;
}

static int sink_buf(void *ctx, const void *p, size_t n)
{
    return kd__buf_append((kd__buf *)ctx, p, n);
}

int kd__hnsw_save(const kd__hnsw *h, FILE *f)
{
    if (!f)
        return KD_EINVALID;
    return save(h, sink_file, f);
}

int kd__hnsw_save_buf(const kd__hnsw *h, kd__buf *out)
{
    if (!out)
        return KD_EINVALID;
    return save(h, sink_buf, out);
}

/* ------------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------- */

/* Read up to n bytes; *got < n only at the end of the input. */
typedef int (*source_fn)(void *ctx, void *p, size_t n, size_t *got);

typedef struct reader {
    source_fn src;
    void *ctx;
    uint8_t *buf; /* payload of the current block */
    size_t len, pos;
    uint64_t off;       /* input offset of the next unread byte */
    uint64_t block_off; /* input offset of the current block */
    uint32_t seq;
    int ended; /* the end block was read */
    int rc;
    char *err;
    size_t errlen;
} reader;

__attribute__((format(printf, 3, 4))) static int r_fail(reader *r, int rc, const char *fmt, ...)
{
    if (r->rc)
        return r->rc;
    r->rc = rc;
    if (r->err && r->errlen) {
        int n = snprintf(r->err, r->errlen, "vector index: ");
        if (n >= 0 && (size_t)n < r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + n, r->errlen - n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

static int r_raw(reader *r, void *p, size_t n, const char *what)
{
    size_t got = 0;
    int rc = r->src(r->ctx, p, n, &got);
    if (rc)
        return r_fail(r, rc, "read error at byte %llu", (unsigned long long)r->off);
    r->off += got;
    if (got < n)
        return r_fail(r, KD_ECORRUPT, "truncated at byte %llu (in %s)", (unsigned long long)r->off, what);
    return KD_OK;
}

static int r_block(reader *r)
{
    if (r->rc)
        return r->rc;
    if (r->ended)
        return r_fail(r, KD_ECORRUPT, "content continues past the end block at byte %llu",
                      (unsigned long long)r->block_off);
    uint8_t hdr[8];
    r->block_off = r->off;
    if (r_raw(r, hdr, 8, "a block header"))
        return r->rc;
    uint32_t len = kd__get_u32(hdr), check = kd__get_u32(hdr + 4);
    if (len > BLOCK_MAX)
        return r_fail(r, KD_ECORRUPT, "block at byte %llu claims %u bytes (at most %u)",
                      (unsigned long long)r->block_off, len, BLOCK_MAX);
    if (len && r_raw(r, r->buf, len, "a block"))
        return r->rc;
    if ((kd__crc32c(r->buf, len) ^ block_mix(r->seq)) != check)
        return r_fail(r, KD_ECORRUPT, "checksum mismatch in block %u at byte %llu", r->seq,
                      (unsigned long long)r->block_off);
    r->seq++;
    r->len = len;
    r->pos = 0;
    if (len == 0)
        r->ended = 1;
    return KD_OK;
}

static int r_get(reader *r, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        if (r->rc)
            return r->rc;
        if (r->pos == r->len) {
            if (r->ended || r_block(r))
                return r_fail(r, KD_ECORRUPT, "content ends early (block at byte %llu)",
                              (unsigned long long)r->block_off);
            if (r->ended)
                return r_fail(r, KD_ECORRUPT, "content ends early (end block at byte %llu)",
                              (unsigned long long)r->block_off);
            continue;
        }
        size_t c = r->len - r->pos;
        if (c > n)
            c = n;
        memcpy(b, r->buf + r->pos, c);
        r->pos += c;
        b += c;
        n -= c;
    }
    return r->rc;
}

static uint32_t r_u32(reader *r)
{
    uint8_t b[4] = {0};
    r_get(r, b, 4);
    return kd__get_u32(b);
}

static uint8_t r_u8(reader *r)
{
    uint8_t b = 0;
    r_get(r, &b, 1);
    return b;
}

static void r_u32s(reader *r, uint32_t *v, size_t n)
{
    r_get(r, v, n * 4);
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
    for (size_t i = 0; i < n; i++)
        v[i] = kd__get_u32((const uint8_t *)&v[i]);
#endif
}

/* Check what the blocks cannot: the graph is consistent. */
static int check_graph(reader *r, const kd__hnsw *h)
{
    uint32_t present = 0, live = 0;
    int top = -1;
    for (uint32_t id = 0; id < h->nslots; id++) {
        if (!(h->flags[id] & F_PRESENT))
            continue;
        present++;
        if (!(h->flags[id] & F_DELETED))
            live++;
        if (h->level[id] > top)
            top = h->level[id];
        for (int lc = 0; lc <= h->level[id]; lc++) {
            const uint32_t *ln = links_at(h, id, lc);
            for (uint32_t j = 1; j <= ln[0]; j++) {
                uint32_t t = ln[j];
                if (t >= h->nslots || !(h->flags[t] & F_PRESENT) || h->level[t] < lc || t == id)
                    return r_fail(r, KD_ECORRUPT, "node %u links on layer %d to %u, which is not there", id,
                                  lc, t);
            }
        }
    }
    if (present != h->npresent || live != h->nlive)
        return r_fail(r, KD_ECORRUPT, "header says %u nodes (%u live), found %u (%u live)", h->npresent,
                      h->nlive, present, live);
    if (present == 0 ? (h->entry != NONE || h->maxlevel != -1)
                     : (h->entry >= h->nslots || !(h->flags[h->entry] & F_PRESENT) ||
                        h->level[h->entry] != h->maxlevel || top != h->maxlevel))
        return r_fail(r, KD_ECORRUPT, "bad entry point %u (top level %d)", h->entry, h->maxlevel);
    return KD_OK;
}

static int load(source_fn src, void *ctx, kd__hnsw **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return KD_EINVALID;
    *out = NULL;
    reader r = {.src = src, .ctx = ctx, .err = err, .errlen = errlen};
    kd__hnsw *h = NULL;
    float *v = NULL;

    uint8_t pre[16];
    if (r_raw(&r, pre, sizeof pre, "the preamble"))
        goto fail;
    if (memcmp(pre, MAGIC, 8) != 0) {
        r_fail(&r, KD_ECORRUPT, "not an index file (bad magic)");
        goto fail;
    }
    if (kd__crc32c(pre, 12) != kd__get_u32(pre + 12)) {
        r_fail(&r, KD_ECORRUPT, "checksum mismatch in the preamble");
        goto fail;
    }
    uint32_t version = kd__get_u32(pre + 8);
    if (version != KD__HNSW_FORMAT_VERSION) {
        r_fail(&r, version > KD__HNSW_FORMAT_VERSION ? KD_EFORMAT : KD_ECORRUPT,
               "format version %u (this library reads %u)", version, KD__HNSW_FORMAT_VERSION);
        goto fail;
    }
    r.buf = malloc(BLOCK_MAX);
    if (!r.buf) {
        r.rc = KD_ENOMEM;
        goto fail;
    }

    uint32_t dim = r_u32(&r), metric = r_u32(&r), M = r_u32(&r), efc = r_u32(&r);
    uint64_t rng = r_u32(&r);
    rng |= (uint64_t)r_u32(&r) << 32;
    uint32_t nslots = r_u32(&r), npresent = r_u32(&r), nlive = r_u32(&r), entry = r_u32(&r);
    int32_t maxlevel = (int32_t)r_u32(&r);
    if (r.rc)
        goto fail;
    if (dim == 0 || dim > KD__VEC_MAX_DIM || metric > KD__VEC_L2 || M < KD__HNSW_MIN_M || M > KD__HNSW_MAX_M ||
        efc < M || efc > KD__HNSW_MAX_EF || nslots > KD__HNSW_MAX_LABEL + 1u || npresent > nslots ||
        nlive > npresent || maxlevel < -1 || maxlevel > MAX_LEVEL) {
        r_fail(&r, KD_ECORRUPT, "bad header (dim %u, metric %u, M %u, ef_construction %u, %u slots)", dim, metric,
               M, efc, nslots);
        goto fail;
    }
    r.rc = kd__hnsw_new(dim, (kd__vec_metric)metric, M, efc, rng, &h);
    if (r.rc)
        goto fail;
    v = malloc((size_t)dim * sizeof(float));
    if (!v) {
        r.rc = KD_ENOMEM;
        goto fail;
    }

    /* Slots: arrays grow as slots arrive, so a lying count cannot make us
     * allocate more than the input holds. */
    for (uint32_t id = 0; id < nslots; id++) {
        uint8_t f = r_u8(&r);
        if (r.rc)
            goto fail;
        if (id >= h->cap && (r.rc = grow(h, id + 1, 0)) != KD_OK)
            goto fail;
        if (f == 0)
            continue;
        if (f != F_PRESENT && f != (F_PRESENT | F_DELETED)) {
            r_fail(&r, KD_ECORRUPT, "slot %u has bad flags %u", id, f);
            goto fail;
        }
        uint8_t L = r_u8(&r);
        if (r.rc)
            goto fail;
        if (L > MAX_LEVEL) {
            r_fail(&r, KD_ECORRUPT, "slot %u has level %u (at most %d)", id, L, MAX_LEVEL);
            goto fail;
        }
        r_u32s(&r, (uint32_t *)v, dim);
        if (r.rc)
            goto fail;
        if (kd__vec_check(v, dim)) {
            r_fail(&r, KD_ECORRUPT, "slot %u holds a NaN or infinite component", id);
            goto fail;
        }
        memcpy(h->vec + (size_t)id * dim, v, (size_t)dim * sizeof(float));
        if (L > 0) {
            h->upper[id] = calloc((size_t)L * (1 + h->M), sizeof(uint32_t));
            if (!h->upper[id]) {
                r.rc = KD_ENOMEM;
                goto fail;
            }
            h->upper_bytes += (size_t)L * (1 + h->M) * sizeof(uint32_t);
        }
        h->level[id] = L;
        h->flags[id] = f;
        h->nslots = id + 1;
        for (int lc = 0; lc <= L; lc++) {
            uint32_t *ln = links_at(h, id, lc);
            uint32_t cnt = r_u32(&r), mmax = lc ? h->M : h->M0;
            if (r.rc)
                goto fail;
            if (cnt > mmax) {
                ln[0] = 0;
                r_fail(&r, KD_ECORRUPT, "slot %u has %u links on layer %d (at most %u)", id, cnt, lc, mmax);
                goto fail;
            }
            ln[0] = 0;
            r_u32s(&r, ln + 1, cnt);
            if (r.rc)
                goto fail;
            ln[0] = cnt;
        }
    }
    h->nslots = nslots;
    h->npresent = npresent;
    h->nlive = nlive;
    h->entry = entry;
    h->maxlevel = maxlevel;
    if (check_graph(&r, h))
        goto fail;
    /* The content must end exactly with the end block, the input with it. */
    if (r.pos != r.len) {
        r_fail(&r, KD_ECORRUPT, "%zu unexpected bytes after the last slot", r.len - r.pos);
        goto fail;
    }
    if (r_block(&r))
        goto fail;
    if (!r.ended) {
        r_fail(&r, KD_ECORRUPT, "unexpected data after the last slot (block at byte %llu)",
               (unsigned long long)r.block_off);
        goto fail;
    }
    uint8_t extra;
    size_t got = 0;
    if (src(ctx, &extra, 1, &got)) {
        r_fail(&r, KD_EIO, "read error at byte %llu", (unsigned long long)r.off);
        goto fail;
    }
    if (got) {
        r_fail(&r, KD_ECORRUPT, "trailing bytes after the end block at byte %llu", (unsigned long long)r.off);
        goto fail;
    }
    free(v);
    free(r.buf);
    *out = h;
    return KD_OK;
fail:
    if (!r.rc)
        r.rc = KD_ECORRUPT;
    if (h) {
        /* nslots may be past what was read: free() walks cap, not nslots. */
        kd__hnsw_free(h);
    }
    free(v);
    free(r.buf);
    return r.rc;
}

static int source_file(void *ctx, void *p, size_t n, size_t *got)
{
    FILE *f = ctx;
    *got = fread(p, 1, n, f);
    return *got < n && ferror(f) ? KD_EIO : KD_OK;
}

typedef struct memsrc {
    const uint8_t *p;
    size_t n, pos;
} memsrc;

static int source_mem(void *ctx, void *p, size_t n, size_t *got)
{
    memsrc *m = ctx;
    size_t c = m->n - m->pos;
    if (c > n)
        c = n;
    if (c)
        memcpy(p, m->p + m->pos, c);
    m->pos += c;
    *got = c;
    return KD_OK;
}

int kd__hnsw_load(FILE *f, kd__hnsw **out, char *errbuf, size_t errlen)
{
    if (!f)
        return KD_EINVALID;
    return load(source_file, f, out, errbuf, errlen);
}

int kd__hnsw_load_mem(const void *p, size_t n, kd__hnsw **out, char *errbuf, size_t errlen)
{
    if (!p && n)
        return KD_EINVALID;
    memsrc m = {p, n, 0};
    return load(source_mem, &m, out, errbuf, errlen);
}
