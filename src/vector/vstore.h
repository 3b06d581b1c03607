/*
 * vstore.h — the vector store (private side of kd_vector_*).
 *
 * Vectors are ordinary versioned values of the reserved namespaces
 * "_kd.vec.<ns>" (format.h), written through kd__commit, so the log, the
 * history and the causal roots need nothing new. What this subsystem adds
 * lives in memory: one HNSW index (vector_int.h) per (namespace, model) over
 * the current vectors, kept by the commit hook (kd__vstore_on_write), saved
 * next to the log at close and loaded at open when the vectors root still
 * matches (vstore_file.c), else rebuilt from the log.
 *
 * Files:
 *   vstore_codec.c  the stored record, base64, JSON arrays of floats
 *   vstore.c        the live indexes, the hook, kd_vector_* calls, search
 *   vstore_file.c   the index file (save at close, load at open)
 */
#ifndef KD_VECTOR_VSTORE_H
#define KD_VECTOR_VSTORE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "korudelta.h"
#include "util/buf.h"
#include "util/sha.h"

struct kd_db;
struct kd__key;
struct kd__applied;

/* Bounds of kd_options_set_vector_index (the index's own, vector_int.h). */
#define KD__VSTORE_MIN_M 2
#define KD__VSTORE_MAX_M 128
#define KD__VSTORE_MAX_EF 65536

/* Largest user namespace that can hold vectors: 255 - strlen("_kd.vec."). */
#define KD__VSTORE_MAX_NS (255 - 8)
#define KD__VSTORE_MAX_MODEL 255

/* ------------------------------------------------------------------------
 * The stored record (vstore_codec.c)
 *
 * {"dim":N,"meta":<JSON>,"model":"M","vector":"<base64>"}: canonical JSON,
 * so members come in this order; base64 is RFC 4648 with padding, of N
 * little-endian IEEE-754 float32. Members this version does not know are
 * ignored (a later version may add some).
 * ---------------------------------------------------------------------- */

typedef struct kd__vrec {
    uint32_t dim;
    const char *meta;       /* canonical JSON slice of the input ("null" if none) */
    size_t meta_len;
    char model[KD__VSTORE_MAX_MODEL + 1]; /* unescaped, NUL-terminated */
    size_t model_len;
    const char *b64;        /* base64 text (slice of the input, no quotes) */
    size_t b64_len;
} kd__vrec;

/* Read the record json[0..len), which must be canonical JSON (what the
 * database stores; the fuzz target canonicalizes first). KD_EINVALID with a
 * message in err when it is not a well-formed vector record (the vector
 * bytes are checked by kd__vrec_vector). */
int kd__vrec_parse(const char *json, size_t len, kd__vrec *out, char *err, size_t errlen);
/* Decode the record's vector into out[0..dim). KD_EINVALID (message in err)
 * for bad base64, a length other than dim*4 bytes, or a non-finite
 * component. */
int kd__vrec_vector(const kd__vrec *r, float *out, char *err, size_t errlen);
/* Is json[0..len) (any JSON text) a well-formed vector record, vector
 * included? KD_OK, or KD_EINVALID with the reason in err (KD_ENOMEM). For
 * records that arrive from outside (kd_import_versions). */
int kd__vrec_check(const char *json, size_t len, char *err, size_t errlen);
/* Append the record for (model, v[0..dim), meta) to out. meta must be
 * canonical JSON (meta_len bytes); model valid UTF-8. KD_ENOMEM only. */
int kd__vrec_encode(kd__buf *out, const char *model, size_t model_len, const float *v, uint32_t dim,
                    const char *meta, size_t meta_len);

/* Validate the components: KD_OK, or KD_EINVALID with the message naming
 * the first NaN or infinite component, or saying all are zero. */
int kd__vec_validate(const float *v, size_t dim, char *err, size_t errlen);

/* RFC 4648 base64 with padding. decode: strict (only the alphabet, exact
 * padding, zero unused bits); *n receives the byte count; out must hold
 * len / 4 * 3 bytes. 0 on success, -1 on malformed input. */
int kd__base64_encode(kd__buf *out, const void *p, size_t n);
int kd__base64_decode(const char *in, size_t len, uint8_t *out, size_t *n);

/* ------------------------------------------------------------------------
 * The store (vstore.c)
 * ---------------------------------------------------------------------- */

/* At open, after replay and the query layer: load the saved indexes or
 * rebuild them from the log. Errors (KD_ENOMEM) fail the open. */
int kd__vstore_open(struct kd_db *db, char *err, size_t errlen);
/* Save the indexes to the index file (vstore_file.c) when they changed
 * since it was loaded or saved: always with `force` (kd_checkpoint, and
 * kd_close after the last write), else only once enough vector writes
 * followed the file that replaying them at open would be slow. The
 * indexes are copied into memory a few labels per hold of the lock
 * (writers go on between holds), then encoded and written without it.
 * KD_OK (`what` says what was saved, and stays "" when nothing
 * was due) or the error, described in `what`; a failure loses nothing (the next
 * open applies more writes or rebuilds). */
int kd__vstore_save(struct kd_db *db, int force, char *what, size_t whatlen);
/* Free everything (also after a failed open; safe to call twice). */
void kd__vstore_free(struct kd_db *db);
/* Commit hook for one write to a "_kd.vec.*" namespace (write_mu held). */
void kd__vstore_on_write(struct kd_db *db, const struct kd__applied *w);
/* Would versions v[0..n) (kd_import_versions: qualified namespaces) break
 * the rule that all live vectors of one (namespace, model) have one
 * dimension, against the database's vectors and each other, row by row?
 * KD_OK, KD_EINVALID naming the row, or KD_ENOMEM. Rows that are not
 * vector records are left to kd_import_versions. */
int kd__vstore_import_check(struct kd_db *db, const struct kd_import *v, size_t n);
/* Around an import of vector versions: its check and its commit (see
 * import_gate). */
void kd__vstore_import_begin(struct kd_db *db);
void kd__vstore_import_end(struct kd_db *db);
/* Key k's vector went with its dropped workspace (compact.c): out of the
 * index, as by a delete, with the vectors root as it is (no write
 * happened). Under write_mu. */
void kd__vstore_forget(struct kd_db *db, const struct kd__key *k);
/* Live vectors and index memory over all groups (kd_stats). */
void kd__vstore_totals(struct kd_db *db, uint64_t *vectors, uint64_t *bytes);

/* Unindexed vectors. The open that finds vector writes in the log after
 * the index file (a crash) applies them to the groups' slots, metadata and
 * key map but not to the graphs: each such vector waits, as written, in
 * its group's tail (kd__vgroup), where searches score it by brute force.
 * kd__vstore_index_tail moves them into the graphs: it takes the store's
 * lock for writing for about KD__VSTORE_TAIL_HOLD_NS at a time (at least
 * one insert), lets waiting writers and searches in between, and returns
 * when the tails are empty or, after at least one such hold, when `stop`
 * (may be NULL; read atomically) is nonzero or `budget_ns` (0: none) has
 * passed. *indexed
 * (may be NULL) receives how many it inserted. KD_OK, or KD_ENOMEM (what
 * failed stays in its tail, still searched). The upkeep thread calls it
 * (task "vector_index"), and kd_checkpoint before it saves. */
#define KD__VSTORE_TAIL_HOLD_NS 2000000
int kd__vstore_index_tail(struct kd_db *db, int64_t budget_ns, const int *stop, uint64_t *indexed);
/* Vectors waiting in the tails (0 when none). */
uint64_t kd__vstore_unindexed(struct kd_db *db);

/* ------------------------------------------------------------------------
 * Shared by vstore.c and vstore_file.c (not for the rest of the library)
 * ---------------------------------------------------------------------- */

struct kd__hnsw;

/* One labelled slot of a group's index. */
typedef struct kd__vslot {
    const struct kd__key *key; /* NULL: free (its label is removed from the index) */
    char *meta;                /* canonical JSON, NUL-terminated (malloc'ed) */
    uint32_t meta_len;
    float norm;                /* kd__vec_norm of the vector as written (the index keeps its direction) */
} kd__vslot;

/* A vector of the tail (by label): its components as written (the graph
 * normalizes them when it takes them), then its direction (searches score
 * it from that, as they will from the graph's), and its place in the tail
 * list. */
typedef struct kd__vtail {
    float *v;                  /* 2 * dim floats (malloc'ed); NULL: the label is not in the tail */
    uint32_t pos;              /* index in kd__vgroup.tail */
} kd__vtail;

/* The vectors of one (namespace, model). */
typedef struct kd__vgroup {
    char *ns;                  /* user namespace (without the prefix) */
    char *model;
    uint32_t dim;
    struct kd__hnsw *h;
    kd__vslot *slots;          /* by label */
    uint32_t n_slots, cap_slots;
    uint32_t *free_slots;      /* labels of free slots, reused first */
    uint32_t n_free, cap_free;
    uint64_t live;
    uint64_t meta_bytes;
    int inflight;              /* puts that claimed this dimension and are not finished */
    uint32_t resets;           /* times the group took a new dimension (a new, empty index) */
    /* The tail: live slots whose vector is not in the graph yet (see
     * kd__vstore_index_tail). tv covers labels below n_tv (NULL, 0 when
     * the group never had a tail); tail lists the labels, unordered. */
    kd__vtail *tv;
    uint32_t n_tv;
    uint32_t *tail;
    uint32_t n_tail, cap_tail;
} kd__vgroup;

/* Where a key's current vector sits. */
typedef struct kd__vloc {
    const struct kd__key *key; /* NULL: empty hash slot */
    kd__vgroup *g;
    uint32_t slot;
} kd__vloc;

/* A write applied to the indexes but possibly not yet visible to readers
 * (sync=always before its fsync): searches answer such keys from the log. */
typedef struct kd__vpending {
    const struct kd__key *key;
    int64_t ts;
} kd__vpending;

typedef struct kd__vstore {
    /* Writer-preferring reader-writer lock over everything below and every
     * group's index: searches read, the commit hook and claims write. */
    pthread_rwlock_t lock;
    pthread_mutex_t save_mu;   /* one save at a time (kd__vstore_save); taken before `lock` */
    /* An import of vectors holds it for writing from its dimension check to
     * the end of its commit, a vector put for reading from its claim to the
     * end of its commit: between the two, neither can store a dimension the
     * other did not see. Taken before write_mu and `lock`. */
    pthread_rwlock_t import_gate;
    size_t save_step_bytes;    /* bytes a save copies per hold of `lock` (tests make it small) */
    unsigned save_pause_us;    /* pause after each hold (0; tests let writers in between) */
    kd__vgroup **groups;
    size_t n_groups, cap_groups;
    kd__vloc *map;             /* open addressing by key pointer */
    size_t map_cap, map_n;
    kd__vpending *pend;
    size_t n_pend, cap_pend;
    int stale;                 /* an update failed: searches go to the log until reopen */
    uint8_t root[KD__HASH_LEN]; /* vectors root of the writes the indexes hold */
    int64_t last_ts;           /* timestamp of the last vector write the indexes hold */
    uint64_t applied;          /* vector writes applied since open (the hook) */
    uint64_t applied_saved;    /* `applied` when the index file was last loaded or saved */
    uint8_t saved_root[KD__HASH_LEN]; /* vectors root of the index file loaded or saved */
    int have_saved;
    uint32_t m, ef_construction, ef_search;
    float *vbuf;               /* writer's decode buffer (KD_VECTOR_MAX_DIM floats) */
} kd__vstore;

/* Group of (ns, model), or NULL. Lock held. */
kd__vgroup *kd__vstore_group_find(kd__vstore *vs, const char *ns, const char *model);
/* New empty group (index created) appended to vs; lock held for writing. */
int kd__vstore_group_add(kd__vstore *vs, const char *ns, const char *model, uint32_t dim, kd__vgroup **out);
/* Record key -> (g, slot) in the map; lock held for writing. */
int kd__vstore_map_put(kd__vstore *vs, const struct kd__key *key, kd__vgroup *g, uint32_t slot);
void kd__vstore_group_free(kd__vgroup *g);

/* Index file (vstore_file.c).
 *
 * snapshot: a copy of what a save needs (each live group's labels with key,
 * norm and metadata, and a copy of its graph), made in pieces while
 * writers go on. One saver at a time (save_mu). begin (lock held for
 * reading; KD_ENOMEM) starts noting changed labels in every group and
 * counts all as changed; reserve (no lock: it touches only the copy)
 * allocates and touches the copy's memory, so that the steps do not fault
 * it in while they hold the lock; a pass's steps (lock held for reading, released
 * in between) copy changed labels, about `budget` bytes per step, and say
 * how many they copied and whether the pass has more; pass starts a new
 * pass over the labels changed since. finish (lock held for reading, the
 * hold in which the copy becomes exact) copies what is left, adds groups
 * that gained vectors, and stamps the copy with `root` and `ts` (the vectors
 * root and timestamp of the last vector write the groups hold); KD_ENOMEM,
 * or KD_EINVALID if labels stayed marked or a group has a tail (neither
 * can happen: tails come from an open, before any save). end (lock held for reading) stops
 * the noting, after finish or a failure; free needs no lock.
 *
 * encode: the whole file from a finished snapshot, as bytes in *out
 * (malloc'd), no lock needed. write: put those bytes in <dir>/vectors.idx
 * atomically (temp file, fsync, rename, directory fsync); KD_EIO or
 * KD_ENOSPACE with a message. load: read the file into vs (which must be
 * empty) and give its root and timestamp; KD_OK when loaded, KD_ENOTFOUND
 * when there is no file, it has another format or other index parameters
 * (then rebuild), another error (message in err) when it is unreadable or
 * damaged (then rebuild too). Keys are looked up in db's index; a key
 * without a live vector at the file's timestamp makes the file unusable. */
#define KD__VSTORE_FILE "vectors.idx"
typedef struct kd__vsnap kd__vsnap;
int kd__vstore_file_snapshot_begin(kd__vstore *vs, kd__vsnap **out);
int kd__vstore_file_snapshot_reserve(kd__vsnap *snap);
int kd__vstore_file_snapshot_step(kd__vsnap *snap, size_t budget, size_t *copied, int *more);
void kd__vstore_file_snapshot_pass(kd__vsnap *snap);
int kd__vstore_file_snapshot_finish(kd__vstore *vs, kd__vsnap *snap, const uint8_t root[KD__HASH_LEN], int64_t ts);
void kd__vstore_file_snapshot_end(kd__vsnap *snap);
void kd__vstore_file_snapshot_free(kd__vsnap *snap);
int kd__vstore_file_encode(const kd__vsnap *snap, char **out, size_t *out_len);
int kd__vstore_file_write(struct kd_db *db, const char *bytes, size_t len, char *err, size_t errlen);
int kd__vstore_file_load(struct kd_db *db, kd__vstore *vs, uint8_t root[KD__HASH_LEN], int64_t *ts, char *err,
                         size_t errlen);

#endif
