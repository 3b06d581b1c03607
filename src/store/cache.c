/*
 * cache.c — CLOCK value cache; see cache.h.
 */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include "korudelta.h"

static size_t bucket_of(const kd__cache *c, uint32_t vidx)
{
    return (size_t)((vidx * 0x9e3779b1u) >> 7) & (c->nbuckets - 1);
}

int kd__cache_init(kd__cache *c, size_t capacity)
{
    memset(c, 0, sizeof *c);
    c->capacity = capacity;
    c->nbuckets = 1024;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (!c->buckets)
        return KD_ENOMEM;
    pthread_rwlock_init(&c->lock, NULL);
    return KD_OK;
}

void kd__cache_free(kd__cache *c)
{
    if (!c->buckets)
        return;
    for (size_t i = 0; i < c->nring; i++)
        free(c->ring[i]);
    free(c->ring);
    free(c->buckets);
    pthread_rwlock_destroy(&c->lock);
    memset(c, 0, sizeof *c);
}

static kd__centry *find(const kd__cache *c, uint32_t vidx)
{
    for (kd__centry *e = c->buckets[bucket_of(c, vidx)]; e; e = e->next)
        if (e->vidx == vidx)
            return e;
    return NULL;
}

size_t kd__cache_capacity(kd__cache *c)
{
    return __atomic_load_n(&c->capacity, __ATOMIC_RELAXED);
}

int kd__cache_get(kd__cache *c, uint32_t vidx, char **out, size_t *len)
{
    if (!kd__cache_capacity(c))
        return 0;
    int rc = 0;
    pthread_rwlock_rdlock(&c->lock);
    kd__centry *e = find(c, vidx);
    if (e) {
        if (!__atomic_load_n(&e->ref, __ATOMIC_RELAXED))
            __atomic_store_n(&e->ref, 1, __ATOMIC_RELAXED);
        if (out) {
            char *p = malloc((size_t)e->len + 1);
            if (p) {
                memcpy(p, e->data, e->len);
                p[e->len] = '\0';
                *out = p;
                rc = 1;
            } else {
                rc = -1;
            }
        } else {
            rc = 1;
        }
        if (len)
            *len = e->len;
    }
    pthread_rwlock_unlock(&c->lock);
    if (rc == 1)
        __atomic_fetch_add(&c->hits, 1, __ATOMIC_RELAXED);
    else if (rc == 0)
        __atomic_fetch_add(&c->misses, 1, __ATOMIC_RELAXED);
    return rc;
}

static void unlink_entry(kd__cache *c, kd__centry *victim)
{
    kd__centry **pp = &c->buckets[bucket_of(c, victim->vidx)];
    while (*pp != victim)
        pp = &(*pp)->next;
    *pp = victim->next;
    c->used -= victim->len;
}

static void grow_buckets(kd__cache *c)
{
    size_t nb = c->nbuckets * 2;
    kd__centry **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* keep the old table: slower, still correct */
    kd__centry **old = c->buckets;
    size_t oldn = c->nbuckets;
    c->buckets = b;
    c->nbuckets = nb;
    for (size_t i = 0; i < oldn; i++) {
        kd__centry *e = old[i];
        while (e) {
            kd__centry *next = e->next;
            size_t j = bucket_of(c, e->vidx);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(old);
}

/* Evict with CLOCK until `need` more bytes fit. A victim's ring slot takes
 * the ring's last entry, which the hand then examines next. Lock held. */
static void evict_for(kd__cache *c, size_t need)
{
    while (c->used + need > c->capacity && c->nring) {
        if (c->hand >= c->nring)
            c->hand = 0;
        kd__centry *v = c->ring[c->hand];
        if (__atomic_load_n(&v->ref, __ATOMIC_RELAXED)) {
            __atomic_store_n(&v->ref, 0, __ATOMIC_RELAXED);
            c->hand++;
            continue;
        }
        unlink_entry(c, v);
        free(v);
        c->ring[c->hand] = c->ring[--c->nring];
    }
}

void kd__cache_set_capacity(kd__cache *c, size_t capacity)
{
    if (!c->buckets)
        return;
    pthread_rwlock_wrlock(&c->lock);
    __atomic_store_n(&c->capacity, capacity, __ATOMIC_RELAXED);
    evict_for(c, 0);
    pthread_rwlock_unlock(&c->lock);
}

void kd__cache_put(kd__cache *c, uint32_t vidx, const char *data, size_t len)
{
    size_t limit = kd__cache_capacity(c);
    if (!limit || len > limit / 8 || len > UINT32_MAX)
        return;
    kd__centry *e = malloc(sizeof *e + len);
    if (!e)
        return;
    e->vidx = vidx;
    e->len = (uint32_t)len;
    e->ref = 0;
    memcpy(e->data, data, len);

    pthread_rwlock_wrlock(&c->lock);
    if (find(c, vidx)) {
        pthread_rwlock_unlock(&c->lock);
        free(e);
        return;
    }
    /* the capacity may have shrunk since it was read above */
    if (len > c->capacity / 8) {
        pthread_rwlock_unlock(&c->lock);
        free(e);
        return;
    }
    evict_for(c, len);
    if (c->nring == c->cap_ring) {
        size_t cap = c->cap_ring ? c->cap_ring * 2 : 256;
        kd__centry **r = realloc(c->ring, cap * sizeof *r);
        if (!r) {
            pthread_rwlock_unlock(&c->lock);
            free(e);
            return;
        }
        c->ring = r;
        c->cap_ring = cap;
    }
    c->ring[c->nring++] = e;
    size_t b = bucket_of(c, vidx);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    c->used += len;
    if (c->nring > c->nbuckets)
        grow_buckets(c);
    pthread_rwlock_unlock(&c->lock);
}
