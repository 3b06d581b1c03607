/*
 * cache.h — the hot tier: a bounded cache of canonical value bytes, keyed
 * by value index, evicted with CLOCK (second chance).
 *
 * Lookups take the cache's lock shared, so readers never wait for readers;
 * only inserting (after a miss read the bytes from the log) takes it
 * exclusively. A value larger than 1/8 of the capacity is never cached.
 */
#ifndef KD_STORE_CACHE_H
#define KD_STORE_CACHE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kd__centry {
    struct kd__centry *next; /* hash chain */
    uint32_t vidx;
    uint32_t len;
    uint8_t ref; /* CLOCK reference bit, set by readers with relaxed atomics */
    char data[];
} kd__centry;

typedef struct kd__cache {
    pthread_rwlock_t lock;
    size_t capacity; /* bytes of data allowed (atomic: the memory budget
                        changes it while readers run; memory.c) */
    size_t used;
    kd__centry **buckets;
    size_t nbuckets;
    kd__centry **ring; /* CLOCK order */
    size_t nring, cap_ring, hand;
    uint64_t hits, misses; /* updated with relaxed atomics */
} kd__cache;

int kd__cache_init(kd__cache *c, size_t capacity);
void kd__cache_free(kd__cache *c);
/* Copy the cached value into a new malloc'd, NUL-terminated buffer.
 * Returns 1 on a hit, 0 on a miss, -1 when the copy could not be allocated. */
int kd__cache_get(kd__cache *c, uint32_t vidx, char **out, size_t *len);
/* Insert after a miss (ignored if present, too large or out of memory). */
void kd__cache_put(kd__cache *c, uint32_t vidx, const char *data, size_t len);
/* Change the capacity; a smaller one evicts (CLOCK order) at once until
 * the values held fit. */
void kd__cache_set_capacity(kd__cache *c, size_t capacity);
size_t kd__cache_capacity(kd__cache *c);

#endif
