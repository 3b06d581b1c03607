/*
 * index.h — the in-memory index: every key's version list and the table of
 * stored values (one entry per version_id).
 *
 * The index holds no locks of its own: the database (db.c) guards it with
 * one reader-writer lock — readers share it, the writer takes it exclusively
 * only while it applies a transaction that is already in the log.
 *
 * Memory: a version costs 44 bytes (kd__ver) plus, for a new value, 44 bytes
 * (kd__val) and a slot of the value hash; see docs/FORMAT.md.
 */
#ifndef KD_STORE_INDEX_H
#define KD_STORE_INDEX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/sha.h"
#include "format.h"

#define KD__NO_VALUE UINT32_MAX /* kd__ver.value of a tombstone */

typedef struct __attribute__((packed, aligned(4))) kd__ver {
    int64_t ts;
    uint8_t write_id[KD__HASH_LEN];
    uint32_t value; /* index into the value table, KD__NO_VALUE = tombstone */
} kd__ver;

/* kd__val.seg of a value that retention removed from the log (compact.c):
 * its version_id is still known, its bytes are not. */
#define KD__VAL_GONE 0u

typedef struct kd__val {
    uint8_t id[KD__HASH_LEN]; /* version_id */
    uint32_t seg;             /* segment number holding the bytes, or KD__VAL_GONE */
    uint32_t off;             /* offset of the bytes in that segment file */
    uint32_t stored;          /* their length; KD__VALUE_ZSTD set: a zstd frame (consolidated) */
} kd__val;

/* Bytes the value takes in the log, and whether they are a zstd frame. */
static inline uint32_t kd__val_bytes(const kd__val *v)
{
    return v->stored & ~KD__VALUE_ZSTD;
}
static inline int kd__val_zstd(const kd__val *v)
{
    return (v->stored & KD__VALUE_ZSTD) != 0;
}

struct kd__key;

typedef struct kd__ns {
    struct kd__ns *next; /* hash chain */
    uint64_t hash;
    char *ws;
    size_t ws_len;
    char *name; /* NUL-terminated */
    size_t name_len;
    uint64_t keys, live;
    /* Versions older than this (ns since the epoch; 0 = none) went with
     * their workspace: it was dropped, then compacted (compact.c). They
     * stay in the history, marked pruned, but no read shows their values,
     * even where the same bytes are stored for another version. */
    int64_t dropped_before;
    /* The timestamps of the namespace's last KD__NS_RECENT writes indexed
     * since the open (a ring: writes are indexed in timestamp order; NULL
     * before the first), so that its newest visible write is found without
     * walking its keys (kd_newest_write). n_recent counts them all. */
    int64_t *recent;
    uint64_t n_recent;
    /* The namespace's newest write when a reader last walked its keys with
     * the ring still empty (atomic; 0 = none): after an open, the writes
     * of a namespace not written since come from the checkpoint, not the
     * ring, and this spares walking them again. Written under the index
     * read lock (no write can be indexed meanwhile), so every write the
     * ring holds is newer. */
    int64_t seed_ts;
    struct kd__key **all; /* in creation order */
    size_t n_all, cap_all;
    /* Sorted view for listings, rebuilt lazily under sort_mu when keys were
     * added since (n_sorted != n_all). */
    pthread_mutex_t sort_mu;
    struct kd__key **sorted;
    size_t n_sorted;
} kd__ns;

enum { KD__NS_RECENT = 32 };

typedef struct kd__key {
    struct kd__key *next; /* hash chain */
    uint64_t hash;
    kd__ns *ns;
    kd__ver *vers; /* oldest first; with cap 0 and n > 0, borrowed from the
                      checkpoint's mapping (read-only) */
    uint32_t n, cap;
    uint16_t len;
    char name[]; /* NUL-terminated key */
} kd__key;

/* A checkpoint file mapped read-only, whose version arrays `users` keys
 * use in place (cap 0). */
typedef struct kd__ixmap {
    void *p;
    size_t len;
    uint64_t users;
} kd__ixmap;

/* Keys are never freed one by one (a key, once written, stays), so they
 * are carved from large blocks: no per-key allocation overhead, and closing
 * a database with millions of keys frees a few blocks. */
typedef struct kd__arena_block {
    struct kd__arena_block *next;
    size_t used, size;
    char data[];
} kd__arena_block;

typedef struct kd__index {
    kd__ns **ns_buckets;
    size_t ns_nbuckets, ns_count;
    kd__ns **ns_list; /* all namespaces, creation order */

    kd__key **key_buckets;
    size_t key_nbuckets, key_count;

    /* Values live in fixed-size chunks: no slack beyond the last chunk and
     * no copying as the table grows. */
    kd__val **val_chunks;
    size_t n_vals, n_chunks, cap_chunks;
    uint32_t *val_slots; /* open addressing: index+1, 0 = empty */
    size_t val_nslots;

    kd__arena_block *arena; /* newest first */

    uint64_t versions;
    uint64_t values_gone; /* entries of the value table that are KD__VAL_GONE */
    uint64_t bytes;    /* RAM held, approximately */
    uint64_t borrowed; /* version bytes read in place from the checkpoint's
                          mapping (page cache, loaded on demand), not in bytes */
    uint64_t ver_heap; /* of bytes: the keys' own version arrays (capacity) */
    kd__ixmap *maps;   /* unmapped by kd__index_maps_trim or kd__index_free */
    size_t n_maps;
} kd__index;

#define KD__VAL_CHUNK_BITS 12 /* 4096 values (176 KiB) per chunk */

static inline kd__val *kd__index_val(const kd__index *ix, uint32_t i)
{
    return &ix->val_chunks[i >> KD__VAL_CHUNK_BITS][i & ((1u << KD__VAL_CHUNK_BITS) - 1)];
}

uint64_t kd__hash_bytes(const void *p, size_t n, uint64_t seed);
/* The last n < 8 bytes of a string as one little-endian word, zero above
 * them (kd__hash_bytes' tail); reads only s[0 .. n-1]. */
uint64_t kd__tail_word(const uint8_t *s, size_t n);

int kd__index_init(kd__index *ix);
/* Start with room for about `keys` keys and `values` values (a hint, e.g.
 * from the size of the log, to spare rehashing while replaying it). */
int kd__index_reserve(kd__index *ix, size_t keys, size_t values);
void kd__index_free(kd__index *ix);

/* Lookups; NULL when absent. */
kd__ns *kd__index_ns_find(const kd__index *ix, const char *ws, size_t ws_len, const char *ns, size_t ns_len);
kd__key *kd__index_key_find(const kd__index *ix, const kd__ns *ns, const char *key, size_t len);
/* Index of the value with this id (its newest entry: see index.c), or
 * KD__NO_VALUE. */
uint32_t kd__index_value_find(const kd__index *ix, const uint8_t id[KD__HASH_LEN]);
/* Has value vidx's id another entry whose bytes are stored (not
 * KD__VAL_GONE)? Only after a compaction that failed once a value it meant
 * to remove had been stored again (until the next open merges them). */
int kd__index_value_twin(const kd__index *ix, uint32_t vidx);
/* The entry of this id whose bytes are at seg/off, or KD__NO_VALUE. */
uint32_t kd__index_value_find_at(const kd__index *ix, const uint8_t id[KD__HASH_LEN], uint32_t seg, uint32_t off);

/* Mutations (writer, exclusive lock). Return KD_OK or KD_ENOMEM. */
int kd__index_ns_get(kd__index *ix, const char *ws, size_t ws_len, const char *ns, size_t ns_len, kd__ns **out);
int kd__index_key_get(kd__index *ix, kd__ns *ns, const char *key, size_t len, kd__key **out);
/* Find the value with this id, or add it (then at seg/off, `stored` as in
 * kd__val). When the id's newest entry is KD__VAL_GONE and seg is not, or
 * when `fresh`, a new entry is made: bytes stored again never bring back
 * the versions that lost them. */
int kd__index_value_add(kd__index *ix, const uint8_t id[KD__HASH_LEN], uint32_t seg, uint32_t off, uint32_t stored,
                        int fresh, uint32_t *idx);
/* Append a version (its ts must be greater than the key's last). */
int kd__index_append(kd__index *ix, kd__key *k, const kd__ver *v);
/* The newest write of namespace s at or before `upto` when its ring
 * (kd__ns.recent) or its seed (kd__ns.seed_ts) tells it; -1 when they do
 * not (then walk the keys). */
int64_t kd__ns_newest_recent(const kd__ns *s, int64_t upto);

/* Loading a checkpoint (checkpoint.c) into an index that was just made:
 * add n distinct keys, none yet in the index, each with its versions (n
 * packed kd__ver at `vers`, at least one, 4-byte aligned): copied, or with
 * `borrow` used where they are (a mapping that outlives the index; such a
 * key has cap 0 until its first new version copies them); and fill the empty
 * value table with n packed kd__val, with slots for `room` more values.
 * KD_OK, KD_EINVALID (the index is not empty), KD_ENOMEM. */
typedef struct kd__key_load {
    kd__ns *ns;
    const char *name;
    uint16_t len;
    uint32_t n;
    const void *vers;
} kd__key_load;
int kd__index_keys_load(kd__index *ix, const kd__key_load *keys, size_t n, int borrow);
int kd__index_values_load(kd__index *ix, const void *recs, size_t n, size_t room);

/* Hand the index a read-only mapping of a checkpoint that `users` keys
 * borrow from (kd__index_keys_load with borrow); the index unmaps it.
 * KD_OK or KD_ENOMEM (then the caller still owns it). */
int kd__index_map_add(kd__index *ix, void *p, size_t len, uint64_t users);
/* Let key k use `vers` (its n versions, identical, inside a mapping given
 * with kd__index_map_add) in place of its own array, which is freed. The
 * writer's exclusive locks are held. */
void kd__index_key_borrow(kd__index *ix, kd__key *k, const kd__ver *vers);
/* Unmap the mappings no key uses any more; returns how many. The writer's
 * exclusive locks are held. */
size_t kd__index_maps_trim(kd__index *ix);

/* 1 when version v of a key in namespace s went with its dropped
 * workspace (kd__ns.dropped_before). */
static inline int kd__ver_dropped(const kd__ns *s, const kd__ver *v)
{
    return s->dropped_before && v->ts < s->dropped_before;
}
/* 1 when a key whose newest version is v has a value now (live). */
static inline int kd__ver_live(const kd__ns *s, const kd__ver *v)
{
    return v->value != KD__NO_VALUE && !kd__ver_dropped(s, v);
}
/* The key's live count in its namespace, after ns->dropped_before moved:
 * counted again. */
void kd__index_ns_recount(kd__ns *s);

/* Latest version with ts <= at, or NULL. */
const kd__ver *kd__key_at(const kd__key *k, int64_t at);
/* Position of the first version with ts > at (0..n). */
uint32_t kd__key_upper(const kd__key *k, int64_t at);

#endif
