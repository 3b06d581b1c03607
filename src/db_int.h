/*
 * db_int.h — the database handle and what its parts share (private).
 *
 * Locking, from outermost to innermost:
 *   write_mu  one writer at a time: assigns timestamps, checks conditions,
 *             appends a TXN record to the log, applies it to the index;
 *   ix_lock   reader-writer lock on the index and the segment table: readers
 *             share it; the writer takes it exclusively only while applying;
 *   sync_mu   the sync=interval flusher's sleep. Group commit state (who
 *             is syncing, how far the log is synced) is atomic (write.c).
 * A write becomes visible to readers when visible_ts reaches its timestamp:
 * at once for sync=none/interval, after its fsync for sync=always. Readers
 * ignore versions newer than visible_ts, so they never see half a batch or a
 * write that is not yet durable.
 */
#ifndef KD_DB_INT_H
#define KD_DB_INT_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "korudelta.h"
#include "store/cache.h"
#include "store/format.h"
#include "store/index.h"
#include "store/tail.h"
#include "store/zvalue.h"
#include "util/buf.h"

#define KD__SEG_TARGET_SIZE (256ull * 1024 * 1024) /* default: rotate after this many bytes */
#define KD__DEFAULT_WS "default"
/* Timestamps stay below 2200-01-01 (ns since the epoch), far from int64's
 * end, so incrementing one can never overflow. */
#define KD__TS_LIMIT INT64_C(7258118400000000000)

struct kd_options {
    kd_sync sync;
    uint32_t interval_ms;
    uint32_t busy_timeout_ms;
    size_t max_value_size;
    size_t cache_size;
    int cache_size_set;  /* kd_options_set_cache_size was called: the budget
                            leaves the cache alone (memory.c) */
    uint64_t max_memory; /* kd_options_set_max_memory; 0 = the default */
    kd_log_fn log_fn;
    void *log_ctx;
    kd_log_level log_level;
    int create;
    uint64_t segment_size;
    /* Upkeep (upkeep.c): how often the background thread looks for work
     * (0 = no thread), and the log bytes after the checkpoint that make a
     * new one due (0 = only kd_checkpoint writes one). */
    uint32_t upkeep_ms;
    uint64_t checkpoint_bytes;
    uint32_t retention_ms; /* how often upkeep applies retention (0 = never) */
    uint32_t consolidate_ms;       /* how often upkeep consolidates (0 = never) */
    uint32_t consolidate_after_ms; /* age of a segment's newest write before it qualifies */
    /* Vector indexes (src/vector/vstore.h): HNSW M, ef_construction and
     * the default ef of searches; 0 = the index's defaults. */
    uint32_t vec_m, vec_ef_construction, vec_ef_search;
};

typedef struct kd__seg {
    uint64_t no;
    int fd;
    uint64_t size; /* bytes (only the last segment grows) */
    /* Read-only mapping for reading values without a system call (NULL if
     * mapping failed: reads fall back to pread). It spans KD__TAIL_MAP_SIZE
     * so the newest segment can grow under it; only written bytes are read. */
    const uint8_t *rmap;
    uint32_t zdict; /* dictionary of its compressed values (format 3; 0: none) */
    /* changes.c: the greatest write timestamp in this segment, once it is
     * sealed and a kd_changes walk read it whole (a sealed segment's writes
     * never change; compaction keeps them); 0 = not known. Under write_mu. */
    int64_t max_ts;
} kd__seg;

struct kd_db {
    char *path;
    kd__zdicts *zdicts; /* dictionaries of consolidated segments (zvalue.h) */
    struct kd_options opt;
    int lock_fd;
    uint8_t node[16];

    /* Segments: guarded by ix_lock (readers look up fds), appended by the
     * writer under write_mu + exclusive ix_lock. */
    kd__seg *segs;
    size_t nsegs, cap_segs;

    pthread_rwlock_t ix_lock;
    int ix_writers_waiting; /* atomic: writers blocked on ix_lock (kd__ix_wrlock) */
    kd__index ix;
    kd__cache cache;

    pthread_mutex_t write_mu;
    int64_t last_ts;                /* newest timestamp written */
    uint8_t root[KD__HASH_LEN];     /* storage causal root */
    int replay_linking;             /* opening: the next record replayed must follow from root */
    uint8_t views_root[KD__HASH_LEN]; /* views subsystem root (format.h) */
    uint8_t vectors_root[KD__HASH_LEN]; /* vector subsystem root (format.h) */
    uint8_t auth_root[KD__HASH_LEN];    /* auth subsystem root (format.h) */
    uint64_t appended;              /* total bytes appended since open (log position) */
    /* The newest record: its segment, offset and end (0 = none yet). A
     * checkpoint names it, and opening checks the log still holds it. */
    uint64_t last_rec_seg, last_rec_off, last_rec_end;
    kd__buf rec;                    /* record being encoded */
    kd__tail tail;                  /* mapping of the newest segment */
    int failed;                     /* a sync failed: no more writes (KD_EIO) */

    int64_t visible_ts; /* atomic: readers see versions with ts <= this */

    pthread_mutex_t sync_mu; /* with sync_cv: the sync=interval flusher's sleep */
    pthread_cond_t sync_cv;
    int syncing;       /* atomic: a writer is syncing the log (group commit) */
    /* The group commit syncs through sync_fd, a second open file description
     * of the newest segment, never through segs[].fd: Linux reports a failed
     * writeback once per open file description, so an fdatasync of
     * segs[].fd running at the same time (the tail's reserve, a rotation, a
     * seal) could take the error and leave the group commit acknowledging
     * writes that were lost. sync_fd_busy (atomic) is the fd a sync is
     * using, -1 when none; a rotation keeps the previous sync_fd open in
     * sync_fd_old while a sync may still be using it (write.c). Under
     * write_mu. */
    int sync_fd, sync_fd_old, sync_fd_busy;
    uint64_t synced;   /* atomic: log position known durable */
    int unsynced_before; /* atomic: no sync yet since the open (the log may
                            hold an earlier session's unsynced writes) */
    uint32_t sync_gen; /* atomic futex word: bumped when a sync ends */
    int sync_waiters;  /* atomic: writers asleep on sync_gen */
    int sync_spinner;  /* atomic: a writer is yielding in a loop for the sync to end */
    /* Group commit (sync=always): writers inside kd__commit, writers
     * waiting for a sync, and how long the last sync took. */
    int committers;      /* atomic */
    int unsynced;        /* atomic: commits appended since the last sync began */
    int64_t last_sync_ns; /* atomic */
    uint64_t log_syncs;   /* atomic: fdatasync calls of the log (kd_stats) */

    /* Query layer (src/query): subscriptions. `hooks` counts what wants to
     * follow writes (subscribers, …); kd__hooks_on_commit is called only
     * when it is nonzero. */
    int hooks;                /* atomic */
    struct kd__subs *subs;    /* created on first subscribe; see subs.c */
    struct kd__qstate *qs;    /* secondary indexes and views (sindex.h) */
    struct kd__vstore *vs;    /* vector indexes (src/vector/vstore.h) */

    /* Checkpoint of the index (checkpoint.c): ckpt_mu lets one writer of
     * it run at a time and guards the position the file covers. */
    pthread_mutex_t ckpt_mu;
    uint64_t ckpt_seg, ckpt_end; /* 0 = no valid checkpoint; written under ckpt_mu with
                                    kd__ckpt_mark, read there or atomically (an estimate) */
    /* The checkpoint files mapped (the one read at open, and those cold
     * version arrays were moved into since) are the index's: ix.maps. */
    struct kd__upkeep *upkeep;   /* background thread (upkeep.c) */

    /* Compaction (compact.c). compact_mu: one at a time. While one plans,
     * `compact_watch` is set and the writer notes in watch_hits every
     * stored value a new write reuses (those must not be removed); once
     * planned, doomed[vidx] marks the values being removed, which a new
     * write stores afresh instead of reusing. All under write_mu. A
     * rewritten segment's old file and mapping stay (readers may hold
     * pointers into them) in `retired` until close. */
    pthread_mutex_t compact_mu;
    int compact_watch;
    uint32_t *watch_hits;
    size_t n_watch_hits, cap_watch_hits;
    int watch_overflow;
    uint8_t *doomed;
    size_t n_doomed;
    kd__seg *retired;
    size_t n_retired;        /* written under the exclusive index lock */
    /* Readers that took a segment's fd or mapping under the shared index
     * lock and use it after releasing the lock (get, scans) hold a pin
     * meanwhile; retired segments are closed only when there are none. */
    int seg_pins;            /* atomic */
    /* The memory budget (memory.c). budget and window are set at open;
     * the rest are atomics except tail_trimmed (write_mu). */
    struct {
        uint64_t budget, window;
        uint64_t ix_seen;      /* index bytes the cache was last sized for */
        uint64_t vec_bytes;    /* vector index bytes, as of the last rebalance */
        uint64_t read_touched; /* bytes read through log mappings since the last trim */
        uintptr_t last_window; /* the 64 KiB window the last such read ended in */
        uint64_t tail_trimmed; /* db->appended at the last trim of the tail */
        uint64_t trims;        /* madvise passes over the log mappings */
        /* Upkeep thread only: ix.ver_heap after the last release, the keys
         * it left for being written lately, and when to look again. */
        uint64_t heap_after, young_keys;
        int64_t next_release;
        int trimming;
    } mem;

    /* sync=interval flusher */
    pthread_t flusher;
    int flusher_running;
    int stopping;

    /* Workspace handles (workspace.c): a handle from kd_workspace_open is
     * a struct kd_db with only these two set: `core` is the database's own
     * handle (NULL in that handle itself) and `ws` the workspace's name
     * (NULL for "default", so such a handle acts exactly like the core). */
    kd_db *core;
    char *ws;
};

/* ------------------------------------------------------------------------
 * Workspaces (workspace.c)
 *
 * Above the storage layer a namespace of a workspace other than "default"
 * is one qualified string: ws, the byte 0xFF, ns. 0xFF never occurs in
 * valid UTF-8, so no user name can collide with a qualified one, and the
 * default workspace keeps plain names (existing databases are unchanged).
 * Views, indexes, vectors and subscriptions work on these strings; the
 * storage layer (write.c, read.c, the index) splits them into the record's
 * (ws, ns). Reserved namespaces of a workspace are qualified the same way
 * ("ws" 0xFF "_kd.views").
 * ---------------------------------------------------------------------- */

#define KD__WS_SEP '\xff'
#define KD__QNS_MAX (255 + 1 + 255 + 1)
#define KD__NS_WORKSPACES "_kd.workspaces" /* default workspace: key = name */

/* Split a qualified name of qlen bytes into workspace and namespace. */
static inline void kd__qns_split(const char *q, size_t qlen, const char **ws, size_t *ws_len, const char **ns,
                                 size_t *ns_len)
{
    const char *s = memchr(q, KD__WS_SEP, qlen);
    if (!s) {
        *ws = KD__DEFAULT_WS;
        *ws_len = sizeof KD__DEFAULT_WS - 1;
        *ns = q;
        *ns_len = qlen;
    } else {
        *ws = q;
        *ws_len = (size_t)(s - q);
        *ns = s + 1;
        *ns_len = qlen - (size_t)(s - q) - 1;
    }
}
/* The namespace part of a qualified name (the name itself for default). */
static inline const char *kd__qns_local(const char *q)
{
    const char *s = strchr(q, KD__WS_SEP);
    return s ? s + 1 : q;
}
/* The index's namespace for a qualified name; NULL when absent. */
static inline kd__ns *kd__qns_find(const kd__index *ix, const char *q, size_t qlen)
{
    const char *ws, *ns;
    size_t wl, nl;
    kd__qns_split(q, qlen, &ws, &wl, &ns, &nl);
    return kd__index_ns_find(ix, ws, wl, ns, nl);
}
/* The qualified name of an index namespace, in buf (KD__QNS_MAX bytes). */
const char *kd__qns_of(const kd__ns *s, char *buf);
/* ws (NULL = default) + "\xff" + ns into buf (KD__QNS_MAX bytes), ns
 * checked to be a namespace name (1–255 bytes of UTF-8). */
int kd__ws_qualify(kd_db *db, const char *ws, const char *ns, char *buf);
/* A workspace's batch call: a malloc'd *copy of the n structs at `items`
 * (each `size` bytes, with a `const char *` namespace at `ns_off`, NULL
 * left alone) whose namespaces are qualified with workspace `ws`, into
 * *names (malloc'd); free both after. An error names the item as
 * "WHAT i: " when `what` is not NULL. */
int kd__ws_qualify_each(kd_db *db, const char *ws, const void *items, size_t n, size_t size, size_t ns_off,
                        const char *what, void **copy, char **names);
/* The same for a name derived inside a workspace: the qualified name's
 * workspace + `local` (e.g. "_kd.views") into buf. */
const char *kd__qns_sibling(const char *q, const char *local, char *buf);
/* Whether qualified name q (qlen bytes) belongs to workspace ws (NULL =
 * default); *local (if not NULL) receives its namespace part. */
int kd__ws_owns(const char *ws, const char *q, size_t qlen, const char **local);
/* A qualified name reaches the library's public functions only from the
 * library itself (views, indexes, vectors, repair, the workspace batch
 * forms), inside kd__ws_internal(1) … kd__ws_internal(0); from a caller on
 * the default workspace a name with the byte 0xFF is refused (it is not
 * UTF-8), so no caller reaches another workspace by spelling its name. */
void kd__ws_internal(int on);
int kd__ws_internal_on(void);
/* KD_EINVALID (message set) when ns, from a caller, holds the byte 0xFF. */
int kd__ws_check_plain(kd_db *db, const char *ns);
/* Free a workspace handle (kd_close of one). */
void kd__workspace_close(kd_db *h);

/* At the top of a public function, after the NULL check of db: a workspace
 * handle becomes the database's handle and ws_ the workspace (NULL:
 * default). KD__WS_NS then qualifies a namespace argument (NULL stays). */
#define KD__WS_ENTER(db)            \
    const char *ws_ = NULL;         \
    if ((db)->core) {               \
        ws_ = (db)->ws;             \
        (db) = (db)->core;          \
    }                               \
    (void)ws_
#define KD__WS_NS(db, ns)                                           \
    char ns##_qbuf_[KD__QNS_MAX];                                   \
    if (ws_ && (ns)) {                                              \
        int qrc_ = kd__ws_qualify((db), ws_, (ns), ns##_qbuf_);     \
        if (qrc_)                                                   \
            return qrc_;                                            \
        (ns) = ns##_qbuf_;                                          \
    } else if ((ns) && kd__ws_check_plain((db), (ns))) {            \
        return KD_EINVALID;                                         \
    }

/* After a failed fsync (or a write the log cannot take back) the database
 * refuses further writes until reopened. Read and set from several locks'
 * critical sections, so atomically. */
static inline int kd__failed(const kd_db *db)
{
    return __atomic_load_n(&db->failed, __ATOMIC_ACQUIRE);
}
static inline void kd__set_failed(kd_db *db)
{
    __atomic_store_n(&db->failed, 1, __ATOMIC_RELEASE);
}

/* Record an error message for this thread and handle; returns rc. */
int kd__err(kd_db *db, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void kd__log(kd_db *db, kd_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Names: checks length, UTF-8; reserved namespaces refused unless this
 * thread is inside kd__allow_reserved(1) … kd__allow_reserved(0) (the
 * database's own writes: view and index definitions, repair). */
int kd__check_names(kd_db *db, const char *ns, const char *key);
/* A read found no key ns/key: KD_ENOTFOUND, or the error a write of that
 * name would get (too long, not UTF-8) when no key can have it. Checked on
 * a miss only, so a hit pays nothing; reserved namespaces pass. */
int kd__read_miss(kd_db *db, const char *ns, const char *key);
void kd__allow_reserved(int on);

/* Repair (repair.c): append a write that a compaction pruned, as it is
 * (its value is not stored; ids, parent and time must follow the key's
 * history). KD_EINVALID when they do not. */
int kd__import_pruned(kd_db *db, const kd__write_rec *w);
/* A database directory's node id (the file NODE: 32 hex digits). KD_OK,
 * KD_ENOTFOUND (no NODE), KD_ECORRUPT (not a node id: why says so and
 * shows what it holds, without the path), or the read error. */
int kd__node_read(const char *dir, uint8_t node[16], char *why, size_t n);
/* Write NODE (a temp file, synced, renamed, directory synced). */
int kd__node_write(const char *dir, const uint8_t node[16], char *why, size_t n);

/* Point closed fds 0-2 at /dev/null, so no database file becomes one. */
void kd__keep_std_fds(void);

/* CLOCK_MONOTONIC in nanoseconds: for waits and budgets, never stored. */
static inline int64_t kd__mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The one write path: puts, deletes and batches all end up here. */
int kd__commit(kd_db *db, const kd_write *writes, size_t n, kd_version *out);
/* The same, the first write with timestamp `at` (0: now), which must be
 * after the database's newest write and not after now (KD_EINVALID). */
int kd__commit_at(kd_db *db, const kd_write *writes, size_t n, int64_t at, kd_version *out);
/* Would kd_import_versions take these versions into workspace `ws` (which
 * need not exist yet)? Every check it makes, nothing written. `db` is the
 * core handle. */
int kd__import_check(kd_db *db, const char *ws, const kd_import *versions, size_t n);

/* Helpers shared by readers. */
void kd__fill_version(const kd_db *db, const kd__key *k, uint32_t i, kd_version *out);
int64_t kd__visible(const kd_db *db);

/* Raw scan for queries: the keys of a namespace in creation order (not
 * sorted), each with its version at time `at` (skipping keys absent or
 * deleted then), handed over in pages without any lock held. Key pointers
 * stay valid until close (keys are never freed); values point into the
 * segments' read-only mappings (or a page buffer when a segment is not
 * mapped) and are valid during the callback only. */
typedef struct kd__scan_item {
    const kd__key *key;
    uint32_t pos;      /* index of the version in key->vers */
    int64_t ts;
    const char *value; /* canonical JSON, value_len bytes, not NUL-terminated */
    uint32_t value_len;
} kd__scan_item;
typedef int (*kd__scan_raw_fn)(void *ctx, const kd__scan_item *items, size_t n);
int kd__scan_raw(kd_db *db, const char *ns, int64_t at, kd__scan_raw_fn fn, void *ctx);
/* The same over every applied write, visible or not yet (sync=always
 * before its fsync): for building what the commit hooks then maintain.
 * The caller holds write_mu. */
int kd__scan_raw_applied(kd_db *db, const char *ns, kd__scan_raw_fn fn, void *ctx);
/* kd_version of versions found by kd__scan_raw (takes the read lock once). */
void kd__fill_versions(kd_db *db, const kd__key *const *keys, const uint32_t *pos, size_t n, kd_version *out);

/* 1 when retention removed the bytes of value vidx (compact.c). The
 * caller holds ix_lock or write_mu. */
static inline int kd__value_gone(const kd_db *db, uint32_t vidx)
{
    return kd__index_val(&db->ix, vidx)->seg == KD__VAL_GONE;
}

/* The value of version i of key k for a reader: its number in the value
 * table, or KD__NO_VALUE when it has none to show: a tombstone, a value
 * retention removed, or a version that went with its dropped workspace
 * (kd__ns.dropped_before). The caller holds ix_lock or write_mu. */
static inline uint32_t kd__ver_value(const kd_db *db, const kd__key *k, uint32_t i)
{
    const kd__ver *v = &k->vers[i];
    if (v->value == KD__NO_VALUE || kd__ver_dropped(k->ns, v) || (db->ix.values_gone && kd__value_gone(db, v->value)))
        return KD__NO_VALUE;
    return v->value;
}

/* Value number vidx (from the index) as bytes: a pointer into the
 * segment's mapping, or read (an unmapped segment) or decompressed (a
 * consolidated value) into *scratch. KD_EPRUNED when retention removed it.
 * The caller holds ix_lock or write_mu, and uses *p only while it holds
 * one of them or a segment pin (kd__seg_pin): a segment rewrite unmaps the
 * old file once neither is held. */
int kd__value_bytes(kd_db *db, uint32_t vidx, kd__buf *scratch, const char **p, size_t *len);

/* Checkpoints (checkpoint.c). At open, before replay: load <dir>/index.ckpt
 * into the empty index when it is valid and the log still holds the record
 * it names; then *seg and *end say where replay resumes (0/0: replay all; a bad
 * or stale checkpoint is logged and ignored). Errors: KD_ENOMEM only. */
int kd__checkpoint_load(kd_db *db, const uint64_t *segs, size_t nsegs, uint64_t *seg, uint64_t *end);
/* Write a checkpoint of everything applied now, while writes go on;
 * `what` receives a one-line account. */
int kd__checkpoint_write(kd_db *db, char *what, size_t whatlen);
/* Move the version arrays of cold keys out of RAM: map the checkpoint file
 * (the newest, which this process wrote or loaded) and let every key that
 * has no version after it, and none newer than min_age_ns before its
 * moment, use its versions there, in batches of a few hundred keys under
 * write_mu + the exclusive ix_lock. Mappings no key uses any more are
 * unmapped. `what` receives a one-line account (keys moved, bytes freed,
 * longest hold of the writers). KD_OK; KD_ENOMEM; KD_EIO when the file
 * cannot be read; KD_EBUSY when it is not the checkpoint the database
 * last wrote or loaded (then nothing changes). */
int kd__checkpoint_release(kd_db *db, int64_t min_age_ns, char *what, size_t whatlen);
/* Log bytes written after the checkpoint, and covered by it. */
void kd__checkpoint_lag(kd_db *db, uint64_t *tail, uint64_t *covered);

/* Pins (see seg_pins): take one before releasing the shared index lock
 * when keeping a segment's fd or mapping, drop it when done. */
static inline void kd__seg_pin(kd_db *db)
{
    __atomic_add_fetch(&db->seg_pins, 1, __ATOMIC_ACQ_REL);
}
static inline void kd__seg_unpin(kd_db *db)
{
    __atomic_sub_fetch(&db->seg_pins, 1, __ATOMIC_ACQ_REL);
}
/* Close the segments a compaction replaced, when no reader holds a pin
 * (compact.c; the upkeep thread retries). Returns how many remain. */
size_t kd__seg_release_retired(kd_db *db);

/* Compaction (compact.c). The writer, under write_mu, for a write whose
 * value is already stored as vidx: 1 when it must store the bytes again
 * (retention removed them or is removing them), else 0 (noting the reuse
 * while a compaction plans). */
int kd__value_must_restore(kd_db *db, uint32_t vidx);
/* Start a new segment now, if the current one holds any record, so that
 * everything written so far is in sealed segments. */
int kd__seal_segment(kd_db *db);
/* Open sync_fd on the newest segment (see kd_db), closing the previous one
 * unless a sync is still using it. While opening, or under write_mu. */
int kd__sync_fd_reopen(kd_db *db, char *err, size_t errlen);
/* kd_compact's work. `seal`: first seal the newest segment (kd_compact
 * always; the upkeep thread once it holds 4 MiB). `wait`: wait for a
 * compaction or backup in progress (kd_compact); without it (the upkeep
 * thread) a busy moment returns KD_OK having done nothing. */
/* Record where the checkpoint on disk ends (seg 0: none), under ckpt_mu
 * (checkpoint.c). */
void kd__ckpt_mark(kd_db *db, uint64_t seg, uint64_t end);
int kd__compact(kd_db *db, int dry_run, int seal, int wait, kd_compact_report *out);
/* Record a compaction in the upkeep status ("retention" task). */
void kd__upkeep_retention_ran(kd_db *db, int64_t start, int64_t took, int rc, const kd_compact_report *r);
/* The same for a consolidation (kd_consolidate, or the upkeep thread's). */
void kd__upkeep_consolidation_ran(kd_db *db, int64_t start, int64_t took, int rc, const kd_consolidate_report *r);
/* kd_consolidate's work (consolidate.c); `upkeep`: sealing only a newest
 * segment of 4 MiB or more, not waiting behind a compaction or backup, and
 * stopping between segments when the upkeep thread is asked to stop. */
int kd__consolidate(kd_db *db, int64_t older_than_ns, int upkeep, kd_consolidate_report *out);
/* 1 when kd_close has asked the upkeep thread to stop (upkeep.c). */
int kd__upkeep_stopping(kd_db *db);
/* The first write's timestamp in segment `no` (read up to `limit` bytes, 0:
 * all; INT64_MAX when it holds none) (rewrite.c). */
int kd__seg_first_ts(kd_db *db, uint64_t no, uint64_t limit, int64_t *ts);
/* At open, after replay: finish a compaction a crash interrupted. KD_OK
 * when there was none, 1 when one was finished (the index, built from the
 * log before, is then to be built again: kd_open opens anew), or the error
 * that stopped it (the database is whole; the next open tries again). */
int kd__compact_resume(kd_db *db);
/* At open, after replay and before the query layer builds: the versions
 * that went with dropped workspaces (kd__ns.dropped_before), as the
 * compactions' "done" records in _kd.compactions say (one cut short sets
 * its cut once kd__compact_resume has finished it). */
int kd__compact_load_drops(kd_db *db);

/* Upkeep (upkeep.c): started at the end of kd_open (the thread only with
 * an interval); kd__upkeep_at_close stops the thread and runs a checkpoint
 * when one is due; kd__upkeep_free (from db_release) frees the rest. */
int kd__upkeep_start(kd_db *db);
void kd__upkeep_stop(kd_db *db);
void kd__upkeep_at_close(kd_db *db);
void kd__upkeep_free(kd_db *db);
/* 1 when the log after the checkpoint has grown enough for a new one. */
int kd__checkpoint_due(kd_db *db);

/* pthread_create for the library's own threads: they start with every
 * signal blocked, so a process's signals (SIGTERM for a graceful server
 * shutdown) always go to the application's threads. `name` (at most 15
 * bytes, "kd-…") is what ps and /proc show for the thread. */
int kd__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name);

/* The writer takes ix_lock through kd__ix_wrlock. A long reader that
 * works in pieces (checkpoint, verify) calls kd__ix_relock between them:
 * it releases the shared lock and, while a writer waits for it, steps
 * aside until the writer had its turn — the lock itself prefers readers,
 * so a reader that took it straight back could keep a writer out. */
void kd__ix_wrlock(kd_db *db);
/* `between`, when not NULL, runs while the lock is released (slow work
 * such as writing out what the last piece gathered). */
void kd__ix_relock(kd_db *db, void (*between)(void *), void *arg);

/* A new temporary file (dir 0: opened O_RDWR | O_CLOEXEC, the fd is
 * returned) or directory (dir 1: 0 is returned) named `prefix` followed by
 * KD__TEMP_SUFFIX_LEN random hex digits, created exclusively (a name taken
 * is tried again with new digits); the name goes to out. -1 with errno. */
#define KD__TEMP_SUFFIX_LEN 16
int kd__create_temp(const char *prefix, int dir, char *out, size_t outlen);

/* The memory budget (memory.c). */
#define KD__MEM_MIN_BUDGET (8ull << 20)  /* smallest explicit budget */
#define KD__MEM_DEFAULT_MIN (64ull << 20) /* the default is at least this */
uint64_t kd__mem_default_budget(void);   /* 25% of physical RAM, >= 64 MiB */
uint64_t kd__mem_window(uint64_t budget); /* log bytes mapped between trims */
/* The hot cache's share: clamp(B - I - V - 2W, B/16, B/2). */
uint64_t kd__mem_cache_share(uint64_t budget, uint64_t index_bytes, uint64_t vector_bytes);
/* At open, before the cache exists: sets db->mem; returns the cache's
 * first capacity. */
size_t kd__mem_open(kd_db *db);
/* Size the cache for the index and vector indexes now (no lock held);
 * also trims the read mappings when due. */
void kd__mem_rebalance(kd_db *db);
/* After every append (write_mu held): trim the tail's mapping when W bytes
 * were appended since the last trim; resize the cache when the index grew
 * or shrank by B/64. */
void kd__mem_after_append(kd_db *db);
/* The index holds more than its share (budget/2), and its own version
 * arrays grew by budget/16 since the last release or that release left
 * keys for being written lately (then at most every
 * KD__RELEASE_MIN_AGE_NS): time for kd__checkpoint_release (upkeep.c).
 * kd__mem_released notes that one ran. */
int kd__mem_index_over(kd_db *db);
void kd__mem_released(kd_db *db);
/* Keys written less than this before the checkpoint keep their arrays. */
#define KD__RELEASE_MIN_AGE_NS (INT64_C(5) * 1000000000)
/* Bytes a read fault on a file mapping may map (Linux's fault_around_bytes
 * default): what one read of a value counts toward the window. */
#define KD__FAULT_AROUND (64u * 1024)
/* len bytes at addr were read through a mapping (of the log or of a
 * checkpoint); call kd__mem_trim_reads when no ix_lock is held. */
void kd__mem_read_touch(kd_db *db, const void *addr, size_t len);
/* Drop the pages of the read mappings (segments and checkpoint) when W
 * bytes were read through them since the last time, or always with
 * `force`. Takes ix_lock shared: never call it holding ix_lock. */
void kd__mem_trim_reads(kd_db *db, int force);

/* fsync a directory (after a rename or a new file in it); 0 or -1 (errno). */
int kd__fsync_dir(const char *path);
/* fsync the directory holding `path` (after creating or renaming `path`
 * itself); 0 or -1 (errno). When that directory may not be opened (EACCES,
 * EPERM), syncs the file system through `path` instead (syncfs). */
int kd__fsync_parent(const char *path);
/* Make everything appended to the log so far durable, whatever the sync
 * mode (group commit); KD_EIO when a sync failed. The core handle. */
int kd__sync_log(kd_db *db);
/* write() all n bytes, finishing short writes (a nearly full disk writes
 * what fits, then fails with ENOSPC); 0 or -1 (errno). */
int kd__write_full(int fd, const void *p, size_t n);

/* Segments */
const char *kd__seg_name(uint64_t no, char buf[32]);
/* Sorted numbers of the segment files in dir (free *nos). */
int kd__list_segments(const char *dir, uint64_t **nos, size_t *n, char *err, size_t errlen);
/* Take the database directory's lock (waiting up to timeout_ms) and record
 * "pid command" in it; *fd holds the lock until closed. */
int kd__lock_dir(const char *dir, uint32_t timeout_ms, int *fd, char *err, size_t errlen);

#endif
