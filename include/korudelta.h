/*
 * korudelta.h — the public C API of KoruDelta, an embedded causal database
 * for JSON values that keeps every version.
 *
 * This header is the whole public surface and its reference manual. The CLI,
 * the server and the language bindings use nothing else.
 *
 * Model (see docs/FORMAT.md for bytes):
 *   - A database is a directory. (workspace, namespace, key) -> JSON value.
 *     kd_open() gives a handle on the workspace "default".
 *   - Every put or delete appends an immutable *version*: version_id is the
 *     hex SHA-256 of the value's canonical JSON; write_id is a hex SHA-256
 *     linking the write to its parent write (previous_write_id), so the
 *     history of a key is a verifiable hash chain.
 *   - Timestamps are int64 nanoseconds since the Unix epoch (UTC), strictly
 *     increasing across the whole database.
 *   - A delete is a tombstone version. null is an ordinary value.
 *
 * Conventions:
 *   - Every fallible call returns int: KD_OK (0) or a negative KD_E* code.
 *     kd_errmsg(db) gives the detailed message of the calling thread's last
 *     failed call on that handle (valid until that thread's next call on it).
 *   - Names (namespace, key) are NUL-terminated UTF-8: namespace 1..255
 *     bytes, key 1..1024 bytes. Namespaces starting with "_kd" are reserved.
 *   - Memory returned through out-parameters is owned by the caller and must
 *     be released with kd_free() (or the dedicated free function named).
 *   - A handle may be used from many threads at once.
 *   - The library never prints, never exits, never aborts on bad input or
 *     on out-of-memory.
 *
 * Everything here was added in version 0.1.0 unless noted otherwise.
 */
#ifndef KORUDELTA_H
#define KORUDELTA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KD_BUILDING_LIBRARY)
#define KD_EXPORT __attribute__((visibility("default")))
#else
#define KD_EXPORT
#endif

/* ------------------------------------------------------------------------
 * Versions
 * ---------------------------------------------------------------------- */

#define KD_VERSION_MAJOR 0
#define KD_VERSION_MINOR 6
#define KD_VERSION_PATCH 0
#define KD_VERSION_STRING "0.6.0"
#define KD_VERSION_NUMBER (KD_VERSION_MAJOR * 10000 + KD_VERSION_MINOR * 100 + KD_VERSION_PATCH)

/* Library version at run time, as "0.6.0"; compare with KD_VERSION_STRING. */
KD_EXPORT const char *kd_libversion(void);
/* KD_VERSION_NUMBER of the library actually linked. */
KD_EXPORT int kd_libversion_number(void);

/* ------------------------------------------------------------------------
 * Status codes. Append-only: a code's number never changes.
 * ---------------------------------------------------------------------- */

#define KD_ERRNO_MAP(X)                                                               \
    X(NOTFOUND, -1, "not found")                                                      \
    X(DELETED, -2, "key was deleted")                                                 \
    X(NOVERSION, -3, "no version at or before the given time")                        \
    X(CONFLICT, -4, "conditional write failed: the key's current write_id differs")   \
    X(INVALID, -5, "invalid input")                                                   \
    X(CORRUPT, -6, "database file is corrupt")                                        \
    X(BUSY, -7, "database is locked by another process")                              \
    X(IO, -8, "input/output error")                                                   \
    X(NOSPACE, -9, "no space left on device")                                         \
    X(NOMEM, -10, "out of memory")                                                    \
    X(MISUSE, -11, "library used incorrectly")                                        \
    X(FORMAT, -12, "database was written by a newer, unsupported format version")    \
    X(TOOBIG, -13, "value or name is too large")                                      \
    X(RESERVED, -14, "namespace is reserved for the database itself")                 \
    X(TIMEOUT, -15, "timed out")                                                      \
    X(EXISTS, -16, "already exists")                                                  \
    X(PRUNED, -17, "the value was removed by a retention policy")

enum {
    KD_OK = 0,
#define KD__ERR_ENUM(name, code, text) KD_E##name = code,
    KD_ERRNO_MAP(KD__ERR_ENUM)
#undef KD__ERR_ENUM
};

/* Short English description of a status code ("not found"). Never NULL. */
KD_EXPORT const char *kd_strerror(int status);
/* Name of a status code ("KD_ENOTFOUND", "KD_OK"). Never NULL. */
KD_EXPORT const char *kd_errname(int status);

/* ------------------------------------------------------------------------
 * Opening and closing
 * ---------------------------------------------------------------------- */

typedef struct kd_db kd_db;
typedef struct kd_options kd_options;

/* Durability of writes. */
typedef enum kd_sync {
    KD_SYNC_ALWAYS = 0,   /* default: a write returns once it is on stable storage
                             (concurrent writers share one fsync: group commit) */
    KD_SYNC_INTERVAL = 1, /* fsync at least every interval_ms; a crash of the OS may
                             lose the last interval_ms of writes */
    KD_SYNC_NONE = 2      /* never fsync; data reaches the OS on every write, so a
                             crash of the process loses nothing, a crash of the OS may */
} kd_sync;

typedef enum kd_log_level { KD_LOG_ERROR = 0, KD_LOG_WARN = 1, KD_LOG_INFO = 2, KD_LOG_DEBUG = 3 } kd_log_level;

/* Log callback: called from any thread of the library; `msg` is valid only
 * during the call. */
typedef void (*kd_log_fn)(void *ctx, kd_log_level level, const char *msg);

/* Options, set before kd_open(). kd_options_new() returns NULL only on OOM. */
KD_EXPORT kd_options *kd_options_new(void);
KD_EXPORT void kd_options_free(kd_options *opts); /* NULL is a no-op */
/* Durability (default KD_SYNC_ALWAYS). interval_ms is used by KD_SYNC_INTERVAL
 * (default 100). Returns KD_EINVALID for an unknown mode or interval 0. */
KD_EXPORT int kd_options_set_sync(kd_options *opts, kd_sync mode, uint32_t interval_ms);
/* How long kd_open() waits for another process's lock (default 10000 ms;
 * 0 = fail at once with KD_EBUSY). */
KD_EXPORT int kd_options_set_busy_timeout(kd_options *opts, uint32_t ms);
/* Largest accepted value in canonical bytes (default
 * KD_DEFAULT_MAX_VALUE_SIZE, 16 MiB; at most 1 GiB). */
KD_EXPORT int kd_options_set_max_value_size(kd_options *opts, size_t bytes);
/* The maximum value size of a database opened without
 * kd_options_set_max_value_size, so that a client reading a value can
 * stop once it is sure to be too large. (0.5.0) */
#define KD_DEFAULT_MAX_VALUE_SIZE ((size_t)16 << 20)
/* Bytes of canonical values kept in the hot cache (0 = no cache). Without
 * this call the cache's size follows the memory budget (see
 * kd_options_set_max_memory); with it, this fixed size wins. */
KD_EXPORT int kd_options_set_cache_size(kd_options *opts, size_t bytes);
/* Memory budget of the database, in bytes: what it keeps in the process
 * for the in-memory index (I), the vector indexes (V), pages of the log
 * mapped into the process (at most a window W = max(budget/32, 256 KiB)
 * read plus W written between trims), and the hot value cache, which gets
 * what is left: cache = clamp(budget - I - V - 2W, budget/16, budget/2),
 * resized as the index and vector indexes grow (unless
 * kd_options_set_cache_size fixed it). When the index holds more than
 * half the budget, the upkeep thread (kd_options_set_upkeep_interval)
 * writes a checkpoint and moves the version metadata of keys not written
 * in the 5 s before it out of RAM into that file's mapping (upkeep task
 * "index_release"). What cannot move (key entries, the table of values,
 * the vector indexes) is not refused when it outgrows the budget: the
 * cache then stays at its floor. 0 = the default: 25% of physical RAM, at
 * least 64 MiB. KD_EINVALID for a budget under 8 MiB. (0.4.0) */
KD_EXPORT int kd_options_set_max_memory(kd_options *opts, uint64_t bytes);
/* Where the library's log lines go (default: nowhere). */
KD_EXPORT int kd_options_set_log(kd_options *opts, kd_log_fn fn, void *ctx, kd_log_level max_level);
/* Create the directory if missing (default 1). */
KD_EXPORT int kd_options_set_create(kd_options *opts, int create);
/* Size at which a new log segment is started (default 256 MiB; at least
 * 64 KiB, at most 1 GiB). Small segments are for tests. */
KD_EXPORT int kd_options_set_segment_size(kd_options *opts, size_t bytes);

/* Open (creating if allowed) the database in directory `path`; `opts` may be
 * NULL for defaults and is not retained. On success *out is a handle on the
 * workspace "default". On failure *out is set to NULL and, when `errbuf` is
 * not NULL, a message is written there (at most errlen bytes, NUL-terminated).
 * Errors: KD_EBUSY (locked by another process past the busy timeout),
 * KD_ECORRUPT (message names file and offset), KD_EFORMAT, KD_EIO, KD_ENOSPACE,
 * KD_EINVALID (bad path or options), KD_ENOMEM. */
KD_EXPORT int kd_open(const char *path, const kd_options *opts, kd_db **out, char *errbuf, size_t errlen);

/* Flush, sync and release everything. NULL is a no-op. Returns the status of
 * the final sync (the handle is released in any case). */
KD_EXPORT int kd_close(kd_db *db);

/* ------------------------------------------------------------------------
 * Workspaces (0.4.0): isolated keyspaces inside one database
 *
 * A workspace handle has the same type as the database's handle and the
 * whole data API works on it unchanged, reading and writing only that
 * workspace: values, history, batches, conditions, listings, scans,
 * changes/import, queries, views, secondary indexes, vectors and
 * subscriptions. Names follow the namespace rules (1–255 bytes of UTF-8,
 * no NUL); names starting with _kd are reserved. "default" always exists
 * and is what kd_open returns. Which workspaces exist is versioned in the
 * log (creating and dropping are writes), so it survives reopening.
 * Database-wide on any handle: kd_stats_get's log, cache, value and vector
 * figures (keys, live_keys and namespaces count the handle's workspace;
 * versions too, except on the default workspace), kd_roots, kd_verify, kd_checkpoint, kd_upkeep_status,
 * kd_backup (every workspace), kd_get_value (values are content-addressed)
 * and kd_auth_put/kd_auth_delete.
 * ---------------------------------------------------------------------- */

/* A handle on workspace `name` of db's database (db may itself be a
 * workspace handle). Close it with kd_close, which then frees only the
 * handle: the database stays open. Every workspace handle must be closed
 * before the database's own handle; using one after that is not allowed.
 * Errors: KD_ENOTFOUND (no such workspace: create it first; "default"
 * always exists), KD_EINVALID / KD_ETOOBIG (bad name), KD_ERESERVED,
 * KD_ENOMEM. A handle opened before the workspace is dropped goes on
 * working; handles opened after it are refused. (0.4.0) */
KD_EXPORT int kd_workspace_open(kd_db *db, const char *name, kd_db **out);
/* Create workspace `name` (a versioned write). Errors: KD_EEXISTS (it
 * exists, or is "default"), KD_EINVALID / KD_ETOOBIG (bad name),
 * KD_ERESERVED, KD_EIO, KD_ENOSPACE. (0.4.0) */
KD_EXPORT int kd_workspace_create(kd_db *db, const char *name);
/* The same, with the creation's timestamp `at` instead of now (0: now),
 * for importing a workspace's history (kd_import_versions), whose versions
 * must come after everything in the database, the workspace's creation
 * included: `at` just before the first of them. It must be after the
 * database's newest write and not after now (else KD_EINVALID). (0.6.0) */
KD_EXPORT int kd_workspace_create_at(kd_db *db, const char *name, int64_t at);
/* Drop workspace `name` (a versioned write): it leaves the listing, no new
 * handle can be opened on it, and handles already open refuse writes
 * (KD_ENOTFOUND) until it is created again. Its data stays in the log and
 * its history until compaction; creating the same name again makes it
 * visible again; after a compaction it comes back empty (its versions
 * pruned, KD_PRUNED_WORKSPACE). Errors: KD_ENOTFOUND, KD_EINVALID ("default" cannot be dropped,
 * bad name), KD_ERESERVED, KD_EIO. (0.4.0) */
KD_EXPORT int kd_workspace_drop(kd_db *db, const char *name);
/* The existing workspaces, "default" included, sorted byte-wise. Free with
 * kd_free_list(*names, *n). Errors: KD_ENOMEM. (0.4.0) */
KD_EXPORT int kd_workspace_list(kd_db *db, char ***names, size_t *n);
/* The workspace of a handle ("default" for kd_open's); valid while the
 * handle is open. (0.4.0) */
KD_EXPORT const char *kd_workspace_name(const kd_db *db);

/* Detailed message of this thread's last failed call on `db` ("" if none). */
KD_EXPORT const char *kd_errmsg(kd_db *db);

/* Release memory returned by the library. NULL is a no-op. */
KD_EXPORT void kd_free(void *p);

/* ------------------------------------------------------------------------
 * Versions and values
 * ---------------------------------------------------------------------- */

#define KD_ID_HEX 65 /* 64 hex digits + NUL */

/* Metadata of one version. Plain data, no pointers: copy it freely. */
typedef struct kd_version {
    char version_id[KD_ID_HEX];        /* SHA-256 of the canonical value; "" for a tombstone */
    char write_id[KD_ID_HEX];          /* hash of this write, linking to its parent */
    char previous_write_id[KD_ID_HEX]; /* "" for the first version of the key */
    int64_t timestamp;                 /* ns since the Unix epoch, UTC */
    int deleted;                       /* 1 for a tombstone */
    int pruned;                        /* nonzero when the value is gone:
                                          KD_PRUNED_RETENTION, a policy's
                                          compaction removed it (0.4.0), or
                                          KD_PRUNED_WORKSPACE, it went with
                                          its dropped workspace. Reading it
                                          gives KD_EPRUNED; the ids stay */
} kd_version;

#define KD_PRUNED_RETENTION 1
/* The version's workspace was dropped and then compacted: the workspace,
 * if made again, starts without it (its value may still be stored for
 * another version; that does not bring it back). */
#define KD_PRUNED_WORKSPACE 2

/* Check a namespace, and the key when `key` is not NULL, as every write
 * does: not empty, at most 255 (namespace) and 1024 (key) bytes, valid
 * UTF-8, and a namespace not starting with _kd (reserved). KD_OK, or
 * KD_EINVALID, KD_ETOOBIG or KD_ERESERVED with the write's own message in
 * errbuf. Needs no database, so a client can check names before it opens
 * (or creates) one. (0.5.0) */
KD_EXPORT int kd_check_name(const char *ns, const char *key, char *errbuf, size_t errlen);

/* Store `json` (len bytes, any JSON text) as the new value of ns/key. The
 * value is validated and stored in canonical form. On success *out (if not
 * NULL) describes the new version.
 * Errors: KD_EINVALID (bad JSON or name; kd_errmsg says where), KD_ETOOBIG,
 * KD_ERESERVED, KD_EIO, KD_ENOSPACE. */
KD_EXPORT int kd_put(kd_db *db, const char *ns, const char *key, const char *json, size_t len, kd_version *out);

/* Value of `expect` for conditional writes: the key must have no live value
 * (never written, or deleted). Any other non-NULL `expect` is a write_id
 * (64 hex digits) that must equal the key's current write_id. */
#define KD_EXPECT_ABSENT ""

/* kd_put with a condition; expect NULL = unconditional. KD_ECONFLICT when
 * the condition does not hold (nothing is written). */
KD_EXPORT int kd_put_if(kd_db *db, const char *ns, const char *key, const char *json, size_t len,
                        const char *expect, kd_version *out);

/* Current value of ns/key. *json (if json not NULL) receives the canonical
 * JSON, NUL-terminated, length in *len (if len not NULL); free with kd_free().
 * *meta (if not NULL) receives the version. Errors: KD_ENOTFOUND (never
 * written, or its versions went with its dropped workspace), KD_EDELETED
 * (latest version is a tombstone; *meta describes it), KD_EPRUNED (a
 * compaction removed the latest version's value: only in a copy restored
 * from a backup --at a time before that compaction; the key is then not
 * listed, as for kd_contains). */
KD_EXPORT int kd_get(kd_db *db, const char *ns, const char *key, char **json, size_t *len, kd_version *meta);

/* The timestamp of the newest write visible now and at or before `at`
 * (KD_TIME_MAX: any), a deletion too, of key in namespace ns, or of any
 * key of ns when key is NULL, in *ts; 0 when there is none. A change
 * stream that starts from it misses nothing of that scope, and tells
 * nothing of writes outside it (unlike kd_stats_get's last_timestamp, the
 * whole database's). It looks at every key of ns: O(keys). Bad or
 * reserved names are KD_EINVALID / KD_ETOOBIG / KD_ERESERVED. (0.6.0) */
KD_EXPORT int kd_newest_write(kd_db *db, const char *ns, const char *key, int64_t at, int64_t *ts);

/* Value as it was at time `ts`: the latest version with timestamp <= ts.
 * Errors: KD_ENOTFOUND (key never written), KD_ENOVERSION (no version at or
 * before ts), KD_EDELETED (the version at ts is a tombstone; *meta set). */
KD_EXPORT int kd_get_at(kd_db *db, const char *ns, const char *key, int64_t ts, char **json, size_t *len,
                        kd_version *meta);

/* Canonical value with the given version_id (64 hex digits), as in a history
 * entry. Errors: KD_ENOTFOUND, KD_EINVALID. */
KD_EXPORT int kd_get_value(kd_db *db, const char *version_id, char **json, size_t *len);

/* Write a tombstone for ns/key. Errors: KD_ENOTFOUND (never written),
 * KD_EDELETED (already deleted; nothing written). */
KD_EXPORT int kd_delete(kd_db *db, const char *ns, const char *key, kd_version *out);
/* kd_delete with a condition (see kd_put_if). */
KD_EXPORT int kd_delete_if(kd_db *db, const char *ns, const char *key, const char *expect, kd_version *out);

/* 1 if ns/key has a live (not deleted) value, 0 otherwise (also on error). */
KD_EXPORT int kd_contains(kd_db *db, const char *ns, const char *key);

/* ------------------------------------------------------------------------
 * History
 * ---------------------------------------------------------------------- */

#define KD_TIME_MIN INT64_MIN
#define KD_TIME_MAX INT64_MAX
#define KD_HISTORY_NEWEST_FIRST 1u

/* Versions of ns/key with from <= timestamp <= to, oldest first (newest first
 * with KD_HISTORY_NEWEST_FIRST). With limit > 0 at most `limit` versions are
 * returned: the oldest ones, or with KD_HISTORY_NEWEST_FIRST the newest ones.
 * *out is an array of *n versions (free with kd_free); *out is NULL when
 * *n == 0. Errors: KD_ENOTFOUND (key never written). */
KD_EXPORT int kd_history(kd_db *db, const char *ns, const char *key, int64_t from, int64_t to, size_t limit,
                         unsigned flags, kd_version **out, size_t *n);

/* ------------------------------------------------------------------------
 * Atomic batches
 * ---------------------------------------------------------------------- */

/* One write of a batch. json == NULL means delete. expect as in kd_put_if. */
typedef struct kd_write {
    const char *ns;
    const char *key;
    const char *json;
    size_t len;
    const char *expect;
} kd_write;

/* Apply `n` writes atomically: all become visible and durable together, or
 * none does. A key may appear several times (applied in order). `out` (if not
 * NULL) receives n versions. A failing condition gives KD_ECONFLICT, bad
 * input KD_EINVALID/KD_ETOOBIG/KD_ERESERVED; kd_errmsg names the index of the
 * failing write. Deleting a key that is absent or deleted is KD_ENOTFOUND /
 * KD_EDELETED. */
KD_EXPORT int kd_put_batch(kd_db *db, const kd_write *writes, size_t n, kd_version *out);

/* ------------------------------------------------------------------------
 * Deferred durability (0.4.0): durable writes without a thread waiting
 * ---------------------------------------------------------------------- */

/* For servers that answer many concurrent writers under KD_SYNC_ALWAYS
 * without a thread blocked on each fsync. Between kd_defer_begin(db) and
 * kd_defer_end(db), writes the calling thread makes on db (kd_put*,
 * kd_delete*, kd_put_batch, on db or on a workspace handle of the same
 * database) return as soon as they are in the log and applied, without
 * waiting for their fsync. Nothing else changes: readers do not see such a
 * write until it is durable, as with any write under KD_SYNC_ALWAYS, and a
 * failed write is reported as always. kd_defer_end returns a ticket: 0 when
 * no write was deferred (none succeeded, or the database does not use
 * KD_SYNC_ALWAYS, whose writes never wait). kd_sync_ticket(db, ticket)
 * returns once every write up to the ticket is on stable storage; one fsync
 * serves all tickets up to it (group commit), and a ticket already durable
 * returns at once. A deferred write must not be reported as done before
 * kd_sync_ticket returned KD_OK for its ticket. kd_sync_ticket may be called
 * from any thread (typically one thread for many tickets: the largest
 * covers the smaller). The window is per thread and does not nest;
 * kd_defer_begin(NULL) and kd_defer_end(NULL) do nothing (end returns 0).
 * Errors of kd_sync_ticket: KD_EMISUSE (db NULL), KD_EIO (the fsync failed:
 * the database refuses writes until reopened, as after a failed fsync of
 * any write). (0.4.0) */
KD_EXPORT void kd_defer_begin(kd_db *db);
KD_EXPORT uint64_t kd_defer_end(kd_db *db);
KD_EXPORT int kd_sync_ticket(kd_db *db, uint64_t ticket);

/* ------------------------------------------------------------------------
 * The log as a stream of changes, and importing it elsewhere
 * ---------------------------------------------------------------------- */

/* One write as the log holds it (what `kdelta export --history` writes). */
typedef struct kd_change {
    const char *ns;    /* NUL-terminated; valid only during the callback */
    const char *key;   /* NUL-terminated; valid only during the callback */
    const char *value; /* canonical JSON, NUL-terminated; NULL for a tombstone */
    size_t value_len;
    kd_version version;
    char node_id[33]; /* 32 hex digits: the node that made the write */
} kd_change;

/* Return 0 to go on; anything else stops kd_changes, which returns it. */
typedef int (*kd_change_fn)(void *ctx, const kd_change *change);

/* Call fn for every write with timestamp > since (KD_TIME_MIN: all), in log
 * order (timestamps strictly increase), for namespace `ns` only or, with
 * ns NULL, every user namespace and every vector namespace
 * (KD_VECTOR_NS_PREFIX + ns, whose values are vector records; 0.3.0), so
 * that the changes carry all user data — of the handle's workspace only.
 * Writes made while it runs may be left out. A write whose value is gone
 * (kd_version.pruned: a compaction removed it, or it went with its
 * dropped workspace) is not a change one can replay and is left out.
 * Errors: KD_EIO, KD_ECORRUPT, KD_ENOMEM, or what fn returned. (0.1.0) */
KD_EXPORT int kd_changes(kd_db *db, const char *ns, int64_t since, kd_change_fn fn, void *ctx);
/* kd_changes with flags. KD_CHANGES_PRUNED: also the writes whose value is
 * gone, with version.pruned set and value NULL (version_id kept; a
 * tombstone that went with its workspace has deleted set too), so that a
 * reader of the log can say which writes it cannot replay. (0.6.0) */
#define KD_CHANGES_PRUNED 1u
KD_EXPORT int kd_changes_ex(kd_db *db, const char *ns, int64_t since, unsigned flags, kd_change_fn fn, void *ctx);

/* One version to import exactly as another database recorded it. */
typedef struct kd_import {
    const char *ns;
    const char *key;
    const char *json; /* the value; NULL for a tombstone */
    size_t len;
    int64_t timestamp;
    const char *node_id;           /* 32 hex digits */
    const char *previous_write_id; /* "" or NULL for the key's first version */
    const char *write_id;          /* 64 hex digits: must match what the fields hash to */
} kd_import;

/* Append n versions with their original timestamps, node ids and write_ids,
 * atomically (all or none). Each timestamp must be greater than every
 * timestamp already in the database and than the previous one in the batch,
 * and not in the future (later writes would all be stamped after it);
 * each previous_write_id must be the key's current write_id; each write_id
 * must be the hash of its fields (so nothing can be forged). The workspace
 * is one of those fields: versions import into a workspace of the same
 * name as the one they were written in (the handle's). Versions of
 * vector namespaces (as kd_changes gives them) are imported too, each
 * value checked to be a vector record; other reserved namespaces are
 * KD_ERESERVED. Errors:
 * KD_EINVALID (kd_errmsg names the index and the problem), KD_ECONFLICT
 * (previous_write_id is not the key's current write_id), KD_ETOOBIG,
 * KD_ERESERVED, KD_EIO, KD_ENOSPACE. (0.1.0) */
KD_EXPORT int kd_import_versions(kd_db *db, const kd_import *versions, size_t n);
/* kd_import_versions into workspace `name`; when it does not exist, it is
 * made 1 ns before versions[0] (kd_workspace_create_at), and only once
 * the versions are known to import: when they are refused, nothing is
 * made. *created (may be NULL) tells whether it was made. Errors: those of
 * kd_import_versions and kd_workspace_create_at. (0.6.0) */
KD_EXPORT int kd_workspace_import(kd_db *db, const char *name, const kd_import *versions, size_t n, int *created);

/* ------------------------------------------------------------------------
 * Listing
 * ---------------------------------------------------------------------- */

/* Namespaces that hold at least one live key, sorted byte-wise, reserved
 * ("_kd…") ones excluded. *names is an array of *n NUL-terminated strings;
 * free with kd_free_list(*names, *n). */
KD_EXPORT int kd_list_namespaces(kd_db *db, char ***names, size_t *n);

/* Live keys of `ns`, sorted byte-wise, that start with `prefix` (NULL or ""
 * = all) and sort strictly after `start_after` (NULL = from the start); at
 * most `limit` (0 = no limit). Free with kd_free_list(). */
KD_EXPORT int kd_list_keys(kd_db *db, const char *ns, const char *prefix, const char *start_after, size_t limit,
                           char ***keys, size_t *n);

KD_EXPORT void kd_free_list(char **list, size_t n);

/* Called by kd_scan for each key: `key` is NUL-terminated; `value` is the
 * canonical JSON, value_len bytes, NOT NUL-terminated; both are valid only
 * during the call. Return 0 to go on; anything else stops the scan. */
typedef int (*kd_scan_fn)(void *ctx, const char *key, const char *value, size_t value_len, const kd_version *version);

/* The keys of `ns` in byte order (prefix, start_after and limit as in
 * kd_list_keys) with their values: the current ones (at = KD_TIME_MAX), or
 * those at time `at`, keys absent or deleted then being skipped. Faster
 * than listing and getting each key, and it leaves the hot cache alone
 * (a scan is not a sign that values are hot). The callback runs without
 * any lock held, so it may call the library; writes made meanwhile may or
 * may not be seen. Returns KD_OK, an error, or what fn returned. (0.1.0) */
KD_EXPORT int kd_scan(kd_db *db, const char *ns, const char *prefix, const char *start_after, size_t limit, int64_t at,
                      kd_scan_fn fn, void *ctx);

/* ------------------------------------------------------------------------
 * Status and verification
 * ---------------------------------------------------------------------- */

typedef struct kd_stats {
    uint64_t keys;          /* keys ever written (user namespaces of the handle's workspace) */
    uint64_t live_keys;     /* keys whose latest version is not a tombstone */
    uint64_t versions;      /* versions, tombstones included: of the whole database
                               for kd_open's handle, of the workspace's user
                               namespaces for another workspace's handle */
    uint64_t unique_values; /* distinct version_ids stored */
    uint64_t namespaces;    /* namespaces with at least one key */
    uint64_t disk_bytes;    /* bytes of log segments on disk */
    uint64_t segments;      /* number of log segments */
    uint64_t index_bytes;   /* RAM held by the in-memory index */
    uint64_t cache_bytes;   /* bytes of values in the hot cache */
    uint64_t cache_hits;
    uint64_t cache_misses;
    int64_t last_timestamp; /* timestamp of the latest write, 0 if none */
    uint64_t log_syncs;     /* fdatasync calls that made log writes durable, since open (0.2.0) */
    uint64_t vectors;            /* vectors in the live vector indexes (0.3.0) */
    uint64_t vector_index_bytes; /* RAM held by the vector indexes (0.3.0) */
    uint64_t replay_bytes;       /* log bytes after the index checkpoint (all of
                                    it when there is none): what opening now
                                    would replay (0.4.0) */
    uint64_t index_mapped_bytes; /* version metadata used in place from the
                                    checkpoint file (keys not written since
                                    open, or since the upkeep task
                                    index_release moved them): page cache,
                                    read on demand, not in index_bytes (0.4.0) */
    /* The memory budget and its use per tier (kd_options_set_max_memory).
     * Hot: cache_bytes of cache_capacity (hit rate cache_hits / (cache_hits
     * + cache_misses)); index: index_bytes on the heap, index_mapped_bytes
     * read in place; vectors: vector_index_bytes. (0.4.0) */
    uint64_t memory_budget;  /* bytes (0.4.0) */
    uint64_t cache_capacity; /* current capacity of the hot cache (0.4.0) */
    uint64_t memory_used;    /* cache_bytes + index_bytes + vector_index_bytes (0.4.0) */
    uint64_t log_window_bytes; /* W: bytes of log read (and W written) through
                                  mappings before their pages are dropped from
                                  the process (0.4.0) */
    uint64_t log_trims;        /* such drops since open (0.4.0) */
} kd_stats;

KD_EXPORT int kd_stats_get(kd_db *db, kd_stats *out);

/* Causal root of one subsystem: a hash over every record it wrote. */
typedef struct kd_root {
    char name[32];          /* "storage", …, and "field" (all roots combined) */
    char hex[KD_ID_HEX];
} kd_root;

/* All roots, "field" last. Free *roots with kd_free. */
KD_EXPORT int kd_roots(kd_db *db, kd_root **roots, size_t *n);

typedef struct kd_verify_report {
    uint64_t segments;
    uint64_t records;
    uint64_t versions;
    uint64_t values;
    uint64_t bytes;    /* bytes of stored values re-hashed */
    char problem[512]; /* first problem found, "" if none */
    uint64_t pruned;   /* writes whose value retention removed, each
                          accounted for by a compaction record (0.4.0) */
} kd_verify_report;

/* Re-read every segment: checksums, value hashes (version_id), write_id
 * hashes, parent links and causal roots. KD_OK when all hold; KD_ECORRUPT
 * otherwise, with report->problem naming file and offset. */
KD_EXPORT int kd_verify(kd_db *db, kd_verify_report *report);

/* ------------------------------------------------------------------------
 * Upkeep: checkpoints and other work the database does on its own (0.4.0)
 * ---------------------------------------------------------------------- */

/* How often the database's own thread looks for due work, in ms (default
 * 5000; 0 = no thread: checkpoints are then written only by kd_checkpoint
 * and at close, and vectors an open after a crash left out of the HNSW
 * graphs (kd_vector_info.unindexed) are inserted only by kd_checkpoint).
 * The thread inserts those at once after the open, not after the
 * interval. */
KD_EXPORT int kd_options_set_upkeep_interval(kd_options *opts, uint32_t ms);

/* An index checkpoint (docs/FORMAT.md) lets opening read the index instead
 * of replaying the whole log: it then replays only the log written after
 * the checkpoint. One becomes due when that tail reaches the larger of
 * `bytes` and an eighth of the log the checkpoint covers (default 64 MiB;
 * 0 = never on its own). The upkeep thread writes due checkpoints while
 * writes go on, and kd_close writes one when due. */
KD_EXPORT int kd_options_set_checkpoint_bytes(kd_options *opts, uint64_t bytes);

/* How often the upkeep thread applies the retention policies, in ms
 * (default 3600000, hourly; 0 = never: only kd_compact does). It seals the
 * newest log segment for it only once that holds 4 MiB, so the versions in
 * a small newest segment wait for kd_compact or for the segment to fill.
 * Each run is reported as the upkeep task "retention". (0.4.0) */
KD_EXPORT int kd_options_set_retention_interval(kd_options *opts, uint32_t ms);

/* Consolidation (the cold tier, kd_consolidate) by the upkeep thread: how
 * often it looks for sealed segments to consolidate, in ms (default
 * 300000, every 5 minutes; 0 = never: only kd_consolidate does), and how
 * old the newest write of a segment must be for it to qualify, in ms
 * (default 3600000, one hour). It seals the newest segment for it once that
 * holds 4 MiB and its last write is that old. Each run that did something
 * is reported as the upkeep task "consolidation". (0.4.0) */
KD_EXPORT int kd_options_set_consolidation(kd_options *opts, uint32_t every_ms, uint32_t after_ms);

/* Write a checkpoint of everything written so far, now, and the vector
 * index file. Vectors that an open after a crash left out of the graphs
 * (kd_vector_info.unindexed) are inserted first (~1 ms each), so that the
 * file can hold them. Writes may go on meanwhile; they wait at most for
 * one small piece of the copy (or a few inserts). Errors:
 * KD_EIO, KD_ENOSPACE (nothing is lost: the previous checkpoint, if any,
 * stays; kd_errmsg says what failed), KD_ENOMEM. */
KD_EXPORT int kd_checkpoint(kd_db *db);

/* How one kind of upkeep work last went. */
typedef struct kd_task_status {
    char name[32];            /* "checkpoint", "vector_index", "index_release" (0.4.0) */
    uint64_t runs, failures;  /* since open */
    int64_t last_run;         /* start of the last run (ns since the epoch); 0 = never */
    int64_t last_duration_ns;
    int last_status;          /* KD_OK or the error of the last run */
    char message[200];        /* what the last run did, or why it failed */
} kd_task_status;

/* One entry per kind of upkeep work. Free *tasks with kd_free. */
KD_EXPORT int kd_upkeep_status(kd_db *db, kd_task_status **tasks, size_t *n);

/* ------------------------------------------------------------------------
 * Retention and compaction (0.4.0; docs/RETENTION.md)
 * ---------------------------------------------------------------------- */

/* A namespace's retention policy is JSON with at least one rule:
 *   {"keep_last": N,                  the N newest versions of each key
 *    "keep_newer_than": "30d",        versions younger than this
 *    "thin": [{"after": "7d", "every": "1h"}, …]}
 *                                     versions older than `after`: the newest
 *                                     one in each `every` window (windows
 *                                     counted from the Unix epoch); with several
 *                                     rules the one with the largest `after`
 *                                     that applies; versions younger than the
 *                                     smallest `after` are kept
 * A version is kept when any rule keeps it. The newest version of every key
 * and every tombstone are always kept. Durations: kd_duration_parse. Policies
 * are versioned writes in the reserved namespace _kd.retention; they change
 * nothing until kd_compact runs. */

/* Set ns's policy (replacing any). KD_EINVALID (bad JSON, unknown member,
 * no rule, bad number or duration: kd_errmsg says which), KD_ERESERVED (ns
 * is reserved), KD_EIO, KD_ENOSPACE. */
KD_EXPORT int kd_retention_set(kd_db *db, const char *ns, const char *json, size_t len);
/* ns's policy as canonical JSON in *json (kd_free), durations written in
 * the largest unit that is exact ("7d", "90m", "45s"). KD_ENOTFOUND when
 * ns has none. */
KD_EXPORT int kd_retention_get(kd_db *db, const char *ns, char **json, size_t *len);
/* Remove ns's policy: its history is kept in full again from now on
 * (what a compaction already removed stays removed). KD_ENOTFOUND. */
KD_EXPORT int kd_retention_clear(kd_db *db, const char *ns);
/* Every policy: *json (kd_free) is {"<ns>": policy, …}, sorted. */
KD_EXPORT int kd_retention_list(kd_db *db, char **json, size_t *len);

/* What kd_compact did, or on a dry run would do. */
typedef struct kd_compact_report {
    uint64_t number;             /* the compaction's number (1, 2, …); 0 when
                                    nothing was pruned or on a dry run */
    uint64_t versions_pruned;    /* versions whose value this run removed */
    uint64_t values_freed;       /* distinct values removed from the log */
    uint64_t bytes_freed;        /* log bytes those values occupied */
    uint64_t segments_rewritten;
    uint64_t versions_held;      /* versions a policy drops that were written
                                    while the compaction ran (they are in the
                                    newest segment, never rewritten): the next
                                    compaction takes them */
} kd_compact_report;

/* Apply the retention policies now: every version a policy drops (as of
 * now) loses its value; its write_id, version_id, timestamp and place in
 * the hash chain stay, so history still lists it (kd_version.pruned) and
 * kd_verify still checks every chain and root. Values still used by a kept
 * version anywhere stay. The newest log segment is sealed first (a new one
 * is started); sealed segments are rewritten (format 2) and
 * swapped in one at a time; a kill at any moment leaves a complete
 * database (opening finishes an interrupted compaction). A compaction
 * record in _kd.compactions states how many writes it pruned and a digest
 * of their write_ids, so kd_verify tells pruning from tampering. Writes go
 * on meanwhile. With dry_run nothing changes and `out` says what would be
 * freed. The old file of a rewritten segment is closed, returning its disk
 * space, once no reader is using it (at once when idle; else the upkeep
 * thread retries, and kd_close at the latest). Errors: KD_EIO,
 * KD_ENOSPACE (nothing lost: a segment is replaced only when its rewrite is
 * complete and synced), KD_ENOMEM, KD_EBUSY (an earlier compaction in this
 * process was cut short by one of those: reopening finishes it, and until
 * then no other runs). */
KD_EXPORT int kd_compact(kd_db *db, int dry_run, kd_compact_report *out);

/* What kd_consolidate did. */
typedef struct kd_consolidate_report {
    uint64_t segments;           /* segments rewritten compressed */
    uint64_t values_compressed;  /* values now stored as zstd frames */
    uint64_t value_bytes_before; /* those values' bytes before and after */
    uint64_t value_bytes_after;
    uint64_t bytes_saved;        /* log bytes freed */
    uint32_t dictionary;         /* the dictionary used (0: none) */
    int dictionary_trained;      /* 1: trained by this run */
} kd_consolidate_report;

/* Consolidate the cold log: every sealed segment whose newest write is
 * older than `older_than_ns` (0: every sealed segment) and that is not
 * consolidated yet is rewritten with each value compressed by zstd, with a
 * dictionary trained once from this database's values (kept in the file
 * zdict-NNNNNNNN; docs/FORMAT.md) when one helps, synced, and swapped in.
 * The newest segment is sealed first when it holds writes older than that.
 * Values, version_ids, write_ids, timestamps and roots do not change;
 * reading a compressed value decompresses it (and the value cache keeps
 * it decompressed). Reads and writes go on meanwhile; a crash at any
 * moment leaves each segment either as it was or consolidated. Errors:
 * KD_EINVALID (older_than_ns < 0), KD_ECORRUPT (a segment header or the
 * dictionary file fails its checks; nothing changed), KD_EIO, KD_ENOSPACE
 * (nothing lost), KD_ENOMEM. A consolidated segment has log format
 * version 3, which builds before 0.4.0 refuse to open (docs/FORMAT.md).
 * (0.4.0) */
KD_EXPORT int kd_consolidate(kd_db *db, int64_t older_than_ns, kd_consolidate_report *out);

/* Salvage a damaged database. Every intact record is copied into a new log
 * (hash chains re-verified: a version whose value or parent was lost is
 * lost too, as is anything damaged); `lost` is called once per lost record
 * or version with a one-line description (file, offset, keys). Only when
 * the new log is complete does it replace the old one (one atomic directory
 * exchange); the damaged files are kept in `<path>.damaged-<time>`, whose
 * name is written to kept_dir (if not NULL). A kill at any moment leaves
 * either the old or the new database, never a mix. The database must not
 * be open. KD_OK also when nothing was lost; then the database is opened
 * once to check that it opens, and when it does not, that error is
 * returned (repair cannot fix what made it fail). A damaged NODE file is
 * a loss: the repaired database gets a new node id (new_node_id). A
 * compaction whose salvaged pruned writes no record accounts for gets a
 * record anew (compactions_recorded), reported through `lost`. (0.1.0) */
typedef struct kd_repair_report {
    uint64_t segments;
    uint64_t records_kept, records_lost;
    uint64_t versions_kept, versions_lost;
    uint64_t keys_affected; /* keys that lost at least one version */
    /* Compactions whose writes no salvaged record accounted for (their
     * record in _kd.compactions, or some of the writes it counts, were
     * lost): a "done" record was written anew for each, counting exactly
     * the writes the salvaged log flags with its number (0.5.0). */
    uint64_t compactions_recorded;
    /* The NODE file did not hold a node id, or was missing from a database
     * with a log: the repaired database has this new one (32 hex digits);
     * "" when NODE was intact, or when nothing needed repair (0.5.0). */
    char new_node_id[33];
    /* Segment files missing from the numbering (log-N.kdl absent between
     * others): their records are lost and cannot be counted, so they are
     * not in records_lost (0.6.0). */
    uint64_t segments_lost;
} kd_repair_report;

typedef void (*kd_lost_fn)(void *ctx, const char *description);

KD_EXPORT int kd_repair(const char *path, const kd_options *opts, kd_lost_fn lost, void *ctx,
                        kd_repair_report *report, char *kept_dir, size_t kept_len, char *errbuf, size_t errlen);

/* ------------------------------------------------------------------------
 * Backups (docs/FORMAT.md, "Backup file")
 * ---------------------------------------------------------------------- */

/* A backup file holds the log's TXN records exactly as the log holds them
 * (zstd-compressed, checksummed, with a SHA-256 of the whole record
 * stream), so a restore reproduces every version_id, write_id, timestamp
 * and causal root, reserved namespaces (views, indexes, vectors, auth)
 * included.
 * A full backup starts at the empty log; an incremental one continues
 * exactly from the end of a previous backup of the same history. */

#define KD_BACKUP_FULL 1
#define KD_BACKUP_INCREMENTAL 2
#define KD_BACKUP_CURRENT_ONLY 3 /* a full backup holding only current values (0.4.0) */

/* A point in a database's history: just after the transaction whose last
 * write has timestamp `timestamp` (0 and all-zero roots: the empty log).
 * Roots are 64 hex digits; views_root/vectors_root/auth_root are all zeros
 * when those subsystems were never written. (0.4.0) */
typedef struct kd_backup_pos {
    int64_t timestamp;
    uint64_t txns;   /* transactions (log records) from the start of the log */
    uint64_t writes; /* writes (versions) from the start of the log */
    char storage_root[KD_ID_HEX];
    char views_root[KD_ID_HEX];
    char vectors_root[KD_ID_HEX];
    char auth_root[KD_ID_HEX];
    char field_root[KD_ID_HEX]; /* as kd_roots() "field" */
} kd_backup_pos;

/* What a backup file holds. Plain data. (0.4.0) */
typedef struct kd_backup_info {
    int kind;            /* KD_BACKUP_FULL, KD_BACKUP_INCREMENTAL or KD_BACKUP_CURRENT_ONLY */
    char node_id[33];    /* 32 hex digits: the node id of the database backed up */
    int64_t created;     /* when the backup was started (ns since the epoch) */
    kd_backup_pos base;  /* where it continues from (the empty log for a full backup) */
    kd_backup_pos end;   /* where it ends */
    uint64_t txns;       /* transactions in this file */
    uint64_t writes;     /* writes in this file */
    uint64_t log_bytes;  /* bytes of log records in this file (uncompressed) */
    uint64_t file_bytes; /* size of the file */
} kd_backup_info;

/* Options of kd_backup; all-zero (or a NULL pointer) means a full backup
 * of everything written before the call. (0.4.0) */
typedef struct kd_backup_options {
    int64_t at;        /* 0 or KD_TIME_MAX: everything; else only whole transactions
                          whose last write has timestamp <= at */
    const char *since; /* NULL: full backup; else the path of a previous backup (full or
                          incremental) of this database's history: write only what follows
                          its end (an incremental backup) */
    int level;         /* zstd level 1..19; 0 = the default (1: fastest) */
    int current_only;  /* 1: a full backup in which only the current version of every key
                          (as of `at`) keeps its value; every other version keeps its ids,
                          time and place in the hash chains, marked as removed by retention
                          (docs/RETENTION.md), so a restore has the same history, roots and
                          current state, and verifies. Not with `since`. (0.4.0) */
} kd_backup_options;

/* Write a backup of db into the new file `path`, online: the end position
 * is taken in a moment under the writer's lock, then records up to it are
 * copied while writes continue. The file is written as
 * "<path>.tmp-<random>" in the same directory, synced and renamed, and the
 * directory synced, so `path` is either absent or complete; temporary
 * files left by a killed backup of the same path are removed. *info (if
 * not NULL) describes the file written. Errors: KD_EEXISTS (path exists),
 * KD_EINVALID (at before the previous backup's end; `since` is not a
 * valid backup, or not of this database's history: kd_errmsg says which),
 * KD_ENOTFOUND (the `since` file does not exist),
 * KD_ECORRUPT (the log or `since` fails a check; the message names file
 * and offset), KD_EFORMAT, KD_EIO, KD_ENOSPACE, KD_ENOMEM. (0.4.0) */
KD_EXPORT int kd_backup(kd_db *db, const char *path, const kd_backup_options *opts, kd_backup_info *info);

/* Create the database directory `dir` from a full backup followed by zero
 * or more incremental ones (files[0..n_files), in order). Every file is
 * checked completely (checksums, the SHA-256 of its records, every
 * write_id and the hash chains) and each incremental file's base must
 * equal the previous file's end. The database is built in a temporary
 * directory next to dir ("<dir>.restore-<random>", removed on failure),
 * opened (which replays the log), its roots compared with the last file's
 * end, and only then renamed to dir. The restored database gets a new
 * node id (a new NODE file): it holds the same history but is another
 * node; writes keep their original node ids. dir must not exist or be an
 * empty directory. *info (if not NULL) describes the restored position:
 * kind is that of the last file, txns/writes/log_bytes/file_bytes sum
 * over all files. On failure nothing is created and errbuf names the file
 * and what failed. Errors: KD_ENOTFOUND (a file that does not exist, as
 * for kd_backup_info), KD_EINVALID (no files, a file that is not a regular
 * file, the first file is not a full backup, a gap, a wrong order or a
 * file of another history),
 * KD_EEXISTS (dir exists and is not empty), KD_ECORRUPT (a damaged or
 * truncated file), KD_EFORMAT, KD_EIO, KD_ENOSPACE, KD_ENOMEM. (0.4.0) */
KD_EXPORT int kd_restore(const char *const *files, size_t n_files, const char *dir, kd_backup_info *info,
                         char *errbuf, size_t errlen);

/* info as one JSON object (canonical member order as below; free *out
 * with kd_free):
 *   {"kind":"full"|"incremental","node_id":…,"created":TIME,
 *    "base":POS,"end":POS,"txns":N,"writes":N,"log_bytes":N,"file_bytes":N}
 * where POS is {"timestamp":TIME or null for the empty log,"txns":N,
 * "writes":N,"roots":{"storage":…,"views":…,"vectors":…,"auth":…,"field":…}}
 * ("views", "vectors" and "auth" only when not all zero) and TIME is RFC 3339
 * UTC with 9 fraction digits. KD_EMISUSE, KD_ENOMEM. (0.4.0) */
KD_EXPORT int kd_backup_info_json(const kd_backup_info *info, char **out, size_t *len);

/* Describe the backup file at `path` from its header and trailer (both
 * checked; the records are not read: kd_restore checks them). Errors:
 * KD_ENOTFOUND, KD_EINVALID (not a regular file), KD_ECORRUPT, KD_EFORMAT,
 * KD_EIO, with a message in errbuf.
 * (0.4.0) */
KD_EXPORT int kd_backup_info_read(const char *path, kd_backup_info *info, char *errbuf, size_t errlen);

/* ------------------------------------------------------------------------
 * Filters (docs/QUERY.md: the text language, its EBNF, and the JSON form)
 * ---------------------------------------------------------------------- */

/* A compiled filter. Immutable once built: one filter may be matched from
 * many threads at once. */
typedef struct kd_filter kd_filter;

/* Compile the text form, e.g. `age > 30 and not deleted_at exists`.
 * KD_EINVALID with errbuf "column N: …" (1-based, in bytes) for any syntax
 * error, a bare word where a value belongs (the message suggests quotes),
 * or an invalid regular expression. (0.2.0) */
KD_EXPORT int kd_filter_parse(const char *text, kd_filter **out, char *errbuf, size_t errlen);
/* Compile the JSON form of the same tree (len bytes of JSON). KD_EINVALID
 * with errbuf "filter at PLACE: …" (PLACE such as args.1.arg, a deep one
 * shortened in the middle so that the reason always fits errlen) or
 * "filter: …" for the root node or JSON that does not parse. */
KD_EXPORT int kd_filter_from_json(const char *json, size_t len, kd_filter **out, char *errbuf, size_t errlen);
/* The JSON form (canonical JSON; free with kd_free). */
KD_EXPORT int kd_filter_to_json(const kd_filter *f, char **json, size_t *len);
/* The text form, which kd_filter_parse turns back into the same filter. */
KD_EXPORT int kd_filter_to_text(const kd_filter *f, char **text, size_t *len);
/* 1 if the JSON value (len bytes, any JSON text) matches, 0 if not,
 * KD_EINVALID if it is not valid JSON. */
KD_EXPORT int kd_filter_match(const kd_filter *f, const char *json, size_t len);
KD_EXPORT void kd_filter_free(kd_filter *f); /* NULL is a no-op */

/* ------------------------------------------------------------------------
 * Queries (docs/QUERY.md gives the JSON form of a query and of its result)
 * ---------------------------------------------------------------------- */

/* A compiled query: filter, sort, projection, offset/limit, as-of time,
 * aggregations and group by. Immutable; usable from many threads. */
typedef struct kd_query kd_query;

/* Compile a query from its JSON form, e.g.
 *   {"filter": "age > 30", "sort": ["age:desc", "name"], "select": ["name"],
 *    "offset": 0, "limit": 10, "at": "2026-01-01T00:00:00Z"}
 *   {"filter": {...JSON form...}, "group_by": ["country"],
 *    "aggregate": ["count", "sum:price", "distinct:tags"]}
 * KD_EINVALID with a message naming the member at fault. (0.2.0) */
KD_EXPORT int kd_query_parse(const char *json, size_t len, kd_query **out, char *errbuf, size_t errlen);
/* The canonical JSON form of q (free with kd_free). */
KD_EXPORT int kd_query_to_json(const kd_query *q, char **json, size_t *len);
KD_EXPORT void kd_query_free(kd_query *q); /* NULL is a no-op */

/* One row of a result: a key and its (projected) value. */
typedef struct kd_row {
    char *key;       /* NUL-terminated */
    char *value;     /* canonical JSON, NUL-terminated; NULL for a tombstone (history queries) */
    size_t value_len;
    kd_version version;
} kd_row;

typedef struct kd_result {
    uint64_t total;     /* matches before offset and limit */
    kd_row *rows;       /* the page: n_rows rows (none when aggregating) */
    size_t n_rows;
    char *aggregates;   /* aggregations as canonical JSON (docs/QUERY.md), or NULL */
    size_t aggregates_len;
} kd_result;

/* Run q over the live keys of namespace ns (or, when q has "at", over the
 * namespace as it was then). *out is freed with kd_result_free. */
KD_EXPORT int kd_query_run(kd_db *db, const char *ns, const kd_query *q, kd_result **out);
/* Run q over the versions of one key (history query): "from"/"to" bound
 * the time, the filter applies to each version's value (tombstones never
 * match a filter), "latest": N keeps the newest N matches. Rows are
 * oldest first; total counts all matches. A version whose value retention
 * removed (kd_version.pruned) is treated like a tombstone: never a match
 * of a filter, else a row with value NULL, and missing for aggregations;
 * it is not KD_EPRUNED. KD_ENOTFOUND if the key was never written. */
KD_EXPORT int kd_query_history(kd_db *db, const char *ns, const char *key, const kd_query *q, kd_result **out);
/* The result as one JSON object (db is not used and may be NULL, so that
 * a result rebuilt elsewhere can be written), members in this order:
 * {"total":N,"rows":[version records as kd_version_json…]} or
 * {"total":N,"aggregates":…} (aggregates in canonical JSON). */
KD_EXPORT int kd_result_json(const kd_db *db, const char *ns, const kd_result *r, char **json, size_t *len);
KD_EXPORT void kd_result_free(kd_result *r); /* NULL is a no-op */

/* Value at a dotted path (docs/QUERY.md "Field paths") inside the JSON
 * value json[0..len): *out points into json (not a copy), *out_len bytes.
 * KD_ENOTFOUND when the path is absent; KD_EINVALID for a bad path. */
KD_EXPORT int kd_json_path(const char *json, size_t len, const char *path, const char **out, size_t *out_len);

/* Walk the array or object json[0..len) (canonical JSON, as the library
 * returns it and kd_json_canonical makes it): start with *pos = 0; each
 * call returns 1 with the next element, or member — *name then points at
 * its name as a JSON string literal, quotes included, name_len bytes
 * (for an array *name is NULL) — and its value; 0 after the last one.
 * Slices point into json. KD_EINVALID when json is not a canonical array
 * or object (checked when *pos is 0, so the walk never reads outside it).
 * name and name_len may be NULL. (0.2.0) */
KD_EXPORT int kd_json_next(const char *json, size_t len, size_t *pos, const char **name, size_t *name_len,
                           const char **value, size_t *value_len);
/* The text a JSON string literal lit[0..len) (quotes included, canonical
 * or not) holds, unescaped and NUL-terminated; free *out with kd_free.
 * KD_EINVALID when lit is not one string literal. (0.2.0) */
KD_EXPORT int kd_json_unquote(const char *lit, size_t len, char **out, size_t *out_len);

/* ------------------------------------------------------------------------
 * Secondary indexes
 * ---------------------------------------------------------------------- */

/* An index on one field path of one namespace, kept up to date on every
 * write and used by kd_query_run for eq, in and range filters (results
 * are identical with and without it). Definitions are stored in the log
 * (reserved namespace _kd.indexes) and rebuilt in memory at open.
 * kd_index_create: KD_EEXISTS if that index exists (built or not); KD_EINVALID
 * for a bad path or name; when the definition is written but the index
 * cannot be built (a value it covers cannot be read: KD_ECORRUPT), that
 * error, and the index stays defined, not built, until the next open.
 * kd_index_drop: KD_ENOTFOUND if it does not exist; an index that is not
 * built is dropped like any other. (0.2.0) */
KD_EXPORT int kd_index_create(kd_db *db, const char *ns, const char *field);
KD_EXPORT int kd_index_drop(kd_db *db, const char *ns, const char *field);

typedef struct kd_index_info {
    char *ns;
    char *field;       /* path text */
    uint64_t entries;  /* live keys that have the field (0 when not built) */
    int64_t created;   /* timestamp of its definition */
    int built;         /* 0: defined, but it could not be built at open or at
                        * create; queries scan instead; built again at the
                        * next open (0.5.0) */
    char *error;       /* why it is not built; "" when built (0.5.0) */
} kd_index_info;

/* Indexes of ns (NULL: all), built or not, sorted by namespace then field.
 * Free with kd_index_list_free. */
KD_EXPORT int kd_index_list(kd_db *db, const char *ns, kd_index_info **out, size_t *n);
KD_EXPORT void kd_index_list_free(kd_index_info *list, size_t n);

/* ------------------------------------------------------------------------
 * Materialized views
 * ---------------------------------------------------------------------- */

/* A view is a named query (filter, sort, select; no aggregates, no "at")
 * over a source namespace whose result is kept. An auto-refresh view is
 * maintained on every write to its namespace (incrementally: one filter
 * evaluation per write, never a rescan); a manual view shows the result
 * as of its last refresh. Definitions are stored in the log (reserved
 * namespace _kd.views) and come back after reopen. Names: 1-255 bytes of
 * UTF-8. kd_view_create: KD_EEXISTS for a duplicate name; KD_EINVALID for a
 * query with aggregates or "at"; when the definition is written but the
 * view cannot be built (a value it covers cannot be read: KD_ECORRUPT),
 * that error, and the view stays defined, built when next read or at the
 * next open. Unknown names: KD_ENOTFOUND. (0.2.0) */
KD_EXPORT int kd_view_create(kd_db *db, const char *name, const char *source_ns, const kd_query *q,
                             const char *description, int auto_refresh);
KD_EXPORT int kd_view_delete(kd_db *db, const char *name);
/* Recompute a view now (a manual view's content changes only here). */
KD_EXPORT int kd_view_refresh(kd_db *db, const char *name);
/* The view's rows in its query's order, from offset, at most limit (0 = all);
 * total = rows in the view. Free with kd_result_free. */
KD_EXPORT int kd_view_query(kd_db *db, const char *name, size_t offset, size_t limit, kd_result **out);

typedef struct kd_view_info {
    char *name;
    char *source;
    char *query;        /* canonical JSON form of the query */
    char *description;  /* "" if none */
    int auto_refresh;
    int64_t created;
    int64_t refreshed;  /* last refresh (manual views); 0 if never */
} kd_view_info;

/* All views sorted by name. Free with kd_view_list_free. */
KD_EXPORT int kd_view_list(kd_db *db, kd_view_info **out, size_t *n);
KD_EXPORT void kd_view_list_free(kd_view_info *list, size_t n);

/* ------------------------------------------------------------------------
 * Change subscriptions
 * ---------------------------------------------------------------------- */

#define KD_EVENT_INSERT 1u   /* a key got a value and had none (new, or deleted before) */
#define KD_EVENT_UPDATE 2u   /* a key with a value got a new one */
#define KD_EVENT_DELETE 4u   /* a key's value was deleted */
#define KD_EVENT_ALL 7u
#define KD_EVENT_MISSED 8u   /* not a write: the queue overflowed, `missed` writes were dropped */

/* One event. Owned by the caller after kd_sub_next; release with kd_event_clear. */
typedef struct kd_event {
    unsigned type;         /* one KD_EVENT_* */
    char *ns, *key;        /* NUL-terminated */
    char *value;           /* new value (canonical JSON, NUL-terminated); NULL for a delete */
    size_t value_len;
    char *prev_value;      /* value before an update or delete; NULL for an insert */
    size_t prev_len;
    kd_version version;    /* the new version (a tombstone for a delete) */
    uint64_t missed;       /* KD_EVENT_MISSED: how many events were dropped */
} kd_event;

typedef struct kd_sub_options {
    const char *ns;          /* NULL: every user namespace and every vector namespace
                              * (KD_VECTOR_NS_PREFIX + ns: vector writes arrive there) */
    const char *key;         /* NULL: every key of ns (needs ns) */
    unsigned types;          /* KD_EVENT_INSERT|UPDATE|DELETE; 0 means all */
    const kd_filter *filter; /* NULL, or a filter on the new value (for a delete: the previous value); copied */
    size_t queue;            /* events held for a slow subscriber; 0 means 10,000 */
} kd_sub_options;

/* Subscribe to writes made in this handle's workspace (puts, deletes,
 * batches, imports; through any handle on it), in log order, each delivered once it is durable/visible.
 * Writers never wait for subscribers: a full queue drops events and the
 * subscriber is then told exactly how many it missed. (0.2.0) */
KD_EXPORT int kd_subscribe(kd_db *db, const kd_sub_options *opts, uint64_t *id);
/* Wait up to timeout_ms (0: do not wait; <0: forever) for the next event.
 * KD_OK with *ev filled; KD_ETIMEOUT when none came; KD_ENOTFOUND for an
 * unknown id (also once unsubscribed). */
KD_EXPORT int kd_sub_next(kd_db *db, uint64_t id, int timeout_ms, kd_event *ev);
KD_EXPORT void kd_event_clear(kd_event *ev);
/* KD_ENOTFOUND for an unknown id. A thread waiting in kd_sub_next on it
 * returns KD_ENOTFOUND. */
KD_EXPORT int kd_unsubscribe(kd_db *db, uint64_t id);

/* ------------------------------------------------------------------------
 * JSON helpers (the same code the database uses)
 * ---------------------------------------------------------------------- */

/* Validate `in` and return its canonical form (NUL-terminated, free with
 * kd_free). On KD_EINVALID, errbuf receives a message with the byte offset. */
KD_EXPORT int kd_json_canonical(const char *in, size_t len, char **out, size_t *outlen, char *errbuf, size_t errlen);

/* JSON Patch (RFC 6902). kd_json_diff: a patch that turns `a` into `b`
 * (both any JSON text; output is a canonical JSON array of operations,
 * free with kd_free). kd_json_patch: apply `patch` to `doc`; the result is
 * canonical JSON. KD_EINVALID with a message in errbuf for bad JSON, a
 * malformed patch, or an operation that cannot apply (failed "test",
 * missing path, index out of range). (0.1.0) */
KD_EXPORT int kd_json_diff(const char *a, size_t alen, const char *b, size_t blen, char **patch, size_t *patchlen,
                           char *errbuf, size_t errlen);
KD_EXPORT int kd_json_patch(const char *doc, size_t doclen, const char *patch, size_t patchlen, char **out,
                            size_t *outlen, char *errbuf, size_t errlen);

/* `s` (len bytes of UTF-8) as a JSON string literal with quotes. */
KD_EXPORT int kd_json_quote(const char *s, size_t len, char **out, size_t *outlen);

/* The version record, one line of JSON with the members in this order:
 * {"namespace","key","value","version_id","write_id","previous_write_id",
 *  "timestamp","deleted"}, and "pruned_by", "pruned": true last for a
 * pruned version (0.4.0): "retention" (KD_PRUNED_RETENTION) or
 * "workspace_drop" (KD_PRUNED_WORKSPACE). `value` is JSON text copied as given (pass NULL
 * for null, as for a tombstone); empty ids become null; timestamp is RFC 3339
 * UTC with 9 fraction digits and Z. Free *out with kd_free. */
KD_EXPORT int kd_version_json(const char *ns, const char *key, const char *value, size_t value_len,
                              const kd_version *v, char **out, size_t *outlen);

/* ------------------------------------------------------------------------
 * Time helpers
 * ---------------------------------------------------------------------- */

/* Nanoseconds since the Unix epoch now (wall clock). */
KD_EXPORT int64_t kd_now(void);
/* Format ts as RFC 3339 UTC with 9 fraction digits and Z into buf (>= 36). */
KD_EXPORT int kd_time_format(int64_t ts, char *buf, size_t buflen);
/* Parse TIME: RFC 3339 (any number of fraction digits, Z or ±hh:mm),
 * "@<ns since epoch>", or relative to now ("-90s", "-5m", "-2h", "-3d"
 * before it, "+30d" after it; also "now"). KD_EINVALID with a message in errbuf otherwise. */
KD_EXPORT int kd_time_parse(const char *text, int64_t *ts, char *errbuf, size_t errlen);

/* Parse a duration: a whole number followed by s, m, h, d or w ("90s",
 * "30m", "12h", "7d", "2w"; no suffix = seconds), above 0 and at most
 * 36600 days (100 years of 366 days).
 * *ns receives nanoseconds. KD_EINVALID otherwise. (0.4.0) */
KD_EXPORT int kd_duration_parse(const char *text, int64_t *ns);
/* Write ns (a positive multiple of a second) in the largest unit that is
 * exact ("7d", "36h", "90s") into buf (>= 24 bytes). (0.4.0) */
KD_EXPORT int kd_duration_format(int64_t ns, char *buf, size_t buflen);

/* Limits, for bindings. */
KD_EXPORT size_t kd_max_namespace_len(void); /* 255 */
KD_EXPORT size_t kd_max_key_len(void);       /* 1024 */

/* ------------------------------------------------------------------------
 * Vectors (docs/VECTORS.md)
 * ---------------------------------------------------------------------- */

/* A vector is a versioned value: (namespace, key) holds a float32 vector
 * of 1..KD_VECTOR_MAX_DIM components with a model name (1..255 bytes of
 * UTF-8) and optional JSON metadata. It is stored as the value of the same
 * key in the reserved namespace KD_VECTOR_NS_PREFIX + ns ("_kd.vec.docs"
 * for "docs"), as canonical JSON
 *   {"dim":N,"meta":<JSON or null>,"model":"M","vector":"<base64 of N
 *    little-endian float32>"}
 * so its version_id is the SHA-256 of bytes that include the model, and
 * its history, get_at and delete are those of that key (kd_history,
 * kd_list_keys and kd_scan work on the reserved namespace too, read-only).
 * A user namespace that holds vectors is therefore at most
 * 255 - 8 = 247 bytes.
 *
 * Rules: all live vectors of one (namespace, model) share one dimension;
 * components must be finite (no NaN, no ±Inf) and not all zero, and the
 * vector's length (Euclidean norm) below 3.4e38, within float32's range.
 * Search: the top k by cosine similarity (default), dot product or L2
 * distance, live or as of a past time, with a model, a minimum score and a
 * filter on the metadata. Each (namespace, model) has an HNSW index over
 * its current vectors, kept up to date by every vector write, used for
 * cosine searches; other metrics, selective filters and small sets are
 * answered exactly (brute force). Indexes are saved next to the log at
 * close and loaded at open when they still match the log, else rebuilt.
 *
 * Vector writes go through the normal commit path: durable per the sync
 * mode, hash-chained, advancing the "vectors" causal root (kd_roots), and
 * delivered to subscriptions as writes to the reserved namespace. */

#define KD_VECTOR_MAX_DIM 4096
#define KD_VECTOR_MAX_K 10000
#define KD_VECTOR_NS_PREFIX "_kd.vec."

typedef enum kd_vector_metric {
    KD_VECTOR_COSINE = 0, /* cosine similarity in [-1, 1]; higher is closer */
    KD_VECTOR_DOT = 1,    /* dot product; higher is closer */
    KD_VECTOR_L2 = 2      /* Euclidean distance (not squared); LOWER is closer */
} kd_vector_metric;

/* "cosine", "dot" or "l2" -> *out. KD_EINVALID for anything else, with
 * "unknown metric '<name>': use cosine, dot or l2" in errbuf (may be NULL).
 * (0.3.0) */
KD_EXPORT int kd_vector_metric_parse(const char *name, kd_vector_metric *out, char *errbuf, size_t errlen);
/* "cosine", "dot", "l2"; NULL for a value outside the enum. (0.3.0) */
KD_EXPORT const char *kd_vector_metric_name(kd_vector_metric m);

/* HNSW parameters of the vector indexes, set before kd_open: m (links per
 * node; 0 = default 16, else 2..128), ef_construction (0 = default 200)
 * and ef_search (the default ef of searches; 0 = 100); efs at most 65536.
 * An index saved with another m or ef_construction is rebuilt at open.
 * KD_EINVALID for values out of range. (0.3.0) */
KD_EXPORT int kd_options_set_vector_index(kd_options *opts, uint32_t m, uint32_t ef_construction, uint32_t ef_search);

/* Store vector v (dim floats, copied) as the new value of ns/key, with
 * model name `model` and metadata meta[0..meta_len) (any JSON text, stored
 * canonical; meta NULL = none, stored as null). On success *out (if not
 * NULL) describes the new version (version_id covers vector, model and
 * metadata). Errors, all KD_EINVALID with kd_errmsg naming the problem
 * unless noted: dim 0 or > KD_VECTOR_MAX_DIM; a NaN or infinite component
 * (the message gives its index); all components zero; a length beyond
 * float32 ("the vector's length overflows float32", e.g. {3e38, 3e38}); a
 * model that is empty, longer than 255 bytes or not UTF-8; a dimension
 * other than that of the live vectors of the same namespace and model (the
 * message names both dimensions); invalid metadata JSON (the message gives
 * the byte); a namespace longer than 247 bytes; bad names as kd_put
 * (KD_ERESERVED for a namespace starting with "_kd"); KD_ETOOBIG, KD_EIO,
 * KD_ENOSPACE as kd_put. (0.3.0) */
KD_EXPORT int kd_vector_put(kd_db *db, const char *ns, const char *key, const char *model, const float *v, size_t dim,
                            const char *meta, size_t meta_len, kd_version *out);

/* One vector write of a batch (kd_vector_put's arguments). */
typedef struct kd_vector_write {
    const char *ns;
    const char *key;
    const char *model;
    const float *v;
    size_t dim;
    const char *meta; /* NULL = none */
    size_t meta_len;
} kd_vector_write;

/* n vector puts as one atomic batch (kd_put_batch): all or none. `out`
 * (if not NULL) receives n versions. Errors as kd_vector_put; kd_errmsg
 * names the index of the failing write. (0.3.0) */
KD_EXPORT int kd_vector_put_batch(kd_db *db, const kd_vector_write *writes, size_t n, kd_version *out);

/* A vector as read back. Free with kd_vector_free. */
typedef struct kd_vector {
    char *ns;          /* NUL-terminated (the user namespace, without the prefix) */
    char *key;
    char *model;
    float *values;     /* dim components */
    size_t dim;
    char *meta;        /* canonical JSON, NUL-terminated; "null" when none */
    size_t meta_len;
    kd_version version;
} kd_vector;

/* Current vector of ns/key. Errors: KD_ENOTFOUND (no vector ever written
 * there), KD_EDELETED (deleted), KD_ECORRUPT (the stored value is not a
 * vector record). (0.3.0) */
KD_EXPORT int kd_vector_get(kd_db *db, const char *ns, const char *key, kd_vector **out);
/* The vector as it was at time ts (the latest version with timestamp <=
 * ts). Errors: KD_ENOTFOUND, KD_ENOVERSION (none at or before ts),
 * KD_EDELETED (deleted at ts), KD_ECORRUPT. (0.3.0) */
KD_EXPORT int kd_vector_get_at(kd_db *db, const char *ns, const char *key, int64_t ts, kd_vector **out);
KD_EXPORT void kd_vector_free(kd_vector *v); /* NULL is a no-op */

/* Write a tombstone for the vector of ns/key. Errors: KD_ENOTFOUND (no
 * vector ever written), KD_EDELETED (already deleted). (0.3.0) */
KD_EXPORT int kd_vector_delete(kd_db *db, const char *ns, const char *key, kd_version *out);

/* Versions of the vector of ns/key, exactly as kd_history (from, to,
 * limit, flags; free *out with kd_free); read one with kd_vector_get_at
 * at its timestamp. KD_ENOTFOUND if none was ever written. (0.3.0) */
KD_EXPORT int kd_vector_history(kd_db *db, const char *ns, const char *key, int64_t from, int64_t to, size_t limit,
                                unsigned flags, kd_version **out, size_t *n);

/* Options of a search; all-zero (or a NULL pointer) means: cosine, any
 * model, no minimum score, no filter, the default ef, now. */
typedef struct kd_vector_search_options {
    kd_vector_metric metric;
    const char *model;        /* only vectors of this model; NULL = any model (of the query's dimension) */
    int has_min_score;        /* 1: drop hits whose score is worse than min_score, i.e. */
    float min_score;          /*   below it (cosine, dot) or above it (l2: a maximum distance) */
    const kd_filter *filter;  /* on each vector's metadata (kd_filter_parse); NULL = none */
    size_t ef;                /* candidate list of the HNSW search; 0 = the default; larger = better recall */
    int64_t at;               /* 0 or KD_TIME_MAX: now; else search the vectors as they were at this time */
} kd_vector_search_options;

/* One result. */
typedef struct kd_vector_hit {
    char *ns;          /* NUL-terminated, the user namespace */
    char *key;
    char *model;
    float score;       /* per the metric: similarity, or L2 distance */
    char *meta;        /* canonical JSON, NUL-terminated; "null" when none */
    size_t meta_len;
    kd_version version; /* the version the score was computed from */
} kd_vector_hit;

/* The k vectors nearest to query (dim floats) in namespace ns (NULL:
 * every namespace), best first (ties by namespace, then key), in *hits
 * (*n entries; free with kd_vector_hits_free; NULL when *n is 0).
 * Only vectors of the query's dimension take part: with opts->model set,
 * a different dimension of that model's vectors is KD_EINVALID naming
 * both; without it, if vectors exist but none has the query's dimension,
 * KD_EINVALID too. The count is exact: *n = min(k, vectors that pass the
 * model, filter and min_score); which ones is exact for searches of the
 * past, other metrics than cosine, selective filters and small sets, and
 * approximate otherwise (HNSW: recall@10 >= 0.95 at the defaults; raise
 * ef for more). A vector updated after opts->at is found with its old
 * value, one created after it is not found, one deleted after it is.
 * Errors: KD_EINVALID (k 0 or > KD_VECTOR_MAX_K, dim out of range, NaN or
 * infinite query component, zero query under cosine, unknown metric, bad
 * ns or model), KD_ENOMEM, KD_EIO. (0.3.0) */
KD_EXPORT int kd_vector_search(kd_db *db, const char *ns, const float *query, size_t dim, size_t k,
                               const kd_vector_search_options *opts, kd_vector_hit **hits, size_t *n);
KD_EXPORT void kd_vector_hits_free(kd_vector_hit *hits, size_t n); /* NULL is a no-op */

/* One (namespace, model) of the vector store. */
typedef struct kd_vector_info {
    char *ns;
    char *model;
    size_t dim;
    uint64_t vectors;      /* live vectors */
    uint64_t index_bytes;  /* RAM of its index (graph, vectors, metadata) */
    uint64_t unindexed;    /* of `vectors`, those written before a crash and not
                              in the graph yet: searches score them by brute
                              force until the upkeep thread (or kd_checkpoint)
                              inserts them; 0 normally (0.4.0) */
} kd_vector_info;

/* The (namespace, model) pairs holding live vectors, in namespace ns
 * (NULL: all), sorted by namespace then model. Free with
 * kd_vector_stats_free. A namespace that cannot hold vectors is refused
 * as by the other vector calls: KD_ERESERVED ("_kd…"), KD_EINVALID (empty,
 * or over 247 bytes: 255 less the prefix "_kd.vec."). (0.3.0) */
KD_EXPORT int kd_vector_stats(kd_db *db, const char *ns, kd_vector_info **out, size_t *n);
KD_EXPORT void kd_vector_stats_free(kd_vector_info *list, size_t n); /* NULL is a no-op */

/* Parse a JSON array of numbers (len bytes, e.g. "[0.1, -2, 3e-4]") into
 * floats (each rounded to the nearest float32): *out (free with kd_free)
 * holds *dim values. KD_EINVALID, with errbuf saying what and where, for
 * invalid JSON, anything but a non-empty array of numbers, more than
 * KD_VECTOR_MAX_DIM elements, or an element beyond float range (index
 * given). (0.3.0) */
KD_EXPORT int kd_vector_parse(const char *json, size_t len, float **out, size_t *dim, char *errbuf, size_t errlen);
/* Would kd_vector_put store this vector? KD_OK, or KD_EINVALID with errbuf
 * saying why: 0 or more than KD_VECTOR_MAX_DIM components, a NaN or
 * infinite one, all zeros (no direction), or a length beyond float32.
 * For checking input before a database is opened. (0.6.0) */
KD_EXPORT int kd_vector_check(const float *v, size_t dim, char *errbuf, size_t errlen);
/* v (dim floats) as a JSON array, each element the shortest decimal text
 * that reads back to the same float32 (free *out with kd_free).
 * KD_EINVALID for a NaN or infinite element. (0.3.0) */
KD_EXPORT int kd_vector_to_json(const float *v, size_t dim, char **out, size_t *len);


/* ------------------------------------------------------------------------
 * Auth: self-sovereign identities, login signatures, session tokens and
 * capabilities (docs/AUTH.md gives every text form). (0.4.0)
 * ---------------------------------------------------------------------- */

/* An identity is an Ed25519 key pair plus a proof of work: the SHA-256 of
 * the canonical JSON of its public document
 *   {"created_at":"<RFC 3339>","nonce":N,"public_key":"<64 hex>","user_data":{…}}
 * has at least D leading zero bits. Keys and signatures are lower-case
 * hex: a public key 64 digits (32 bytes), a secret key 64 digits (the
 * 32-byte Ed25519 seed), a signature 128 digits (64 bytes).
 *
 * The library keeps the auth subsystem's records in the reserved
 * namespace KD_AUTH_NS (written only with kd_auth_put / kd_auth_delete;
 * read with kd_get, kd_history and kd_scan like any namespace); every
 * write there advances the "auth" causal root (kd_roots). */

#define KD_AUTH_NS "_kd.auth"
#define KD_AUTH_KEY_HEX 65        /* 64 hex digits + NUL: public key, token, hashes */
#define KD_AUTH_SIG_HEX 129       /* 128 hex digits + NUL: a signature */
#define KD_AUTH_MAX_DIFFICULTY 32 /* proof-of-work bits accepted by kd_identity_generate */

typedef struct kd_identity kd_identity;

/* Make a new identity: a fresh Ed25519 key pair, mined until its public
 * document's hash has `difficulty` (0..KD_AUTH_MAX_DIFFICULTY) leading
 * zero bits (about 2^difficulty hashes: 20 bits take about a second).
 * `name` (NULL = none; at most 255 bytes of UTF-8) goes into user_data as
 * {"name":…}. created_at is now. Free with kd_identity_free.
 * Errors: KD_EINVALID (difficulty or name; message in errbuf), KD_ENOMEM,
 * KD_EIO (no randomness or no Ed25519 in the crypto library). (0.4.0) */
KD_EXPORT int kd_identity_generate(const char *name, unsigned difficulty, kd_identity **out, char *errbuf,
                                   size_t errlen);
/* Read a key file's text (kd_identity_keyfile's output), checking that
 * the secret key matches the public key. It does not check the proof of
 * work (kd_auth_check_identity does). KD_EINVALID with a message in
 * errbuf for anything else; KD_ENOMEM. (0.4.0) */
KD_EXPORT int kd_identity_load(const char *text, size_t len, kd_identity **out, char *errbuf, size_t errlen);
KD_EXPORT void kd_identity_free(kd_identity *id); /* NULL is a no-op; wipes the secret */
/* The key file: one line of canonical JSON
 *   {"created_at","difficulty","format":"korudelta-identity-v1","nonce",
 *    "public_key","secret_key","user_data"}
 * including the SECRET key (free *out with kd_free). (0.4.0) */
KD_EXPORT int kd_identity_keyfile(const kd_identity *id, char **out, size_t *len);
/* The public document (no secret), what a server registers (kd_free). */
KD_EXPORT int kd_identity_document(const kd_identity *id, char **out, size_t *len);
/* The public key as 64 hex digits; valid as long as id. */
KD_EXPORT const char *kd_identity_key(const kd_identity *id);
/* Sign msg[0..len) with the identity's secret key into sig (128 hex
 * digits + NUL). KD_EIO if the crypto library fails. (0.4.0) */
KD_EXPORT int kd_identity_sign(const kd_identity *id, const void *msg, size_t len, char sig[KD_AUTH_SIG_HEX]);

/* Check an identity's public document doc[0..len) as a server must: it
 * is an object with exactly the four members, created_at in the canonical
 * RFC 3339 form of kd_time_format, nonce a whole number 0..2^53, the
 * public key 64 lower-case hex digits, user_data
 * an object of at most 4 KiB; its proof of work is recomputed here (the
 * document's own claims are never trusted) and must reach min_difficulty.
 * On KD_OK, key receives the public key, *bits (if not NULL) the leading
 * zero bits found, and *canon (if not NULL) the canonical document (free
 * with kd_free). KD_EINVALID with a message in errbuf otherwise. (0.4.0) */
KD_EXPORT int kd_auth_check_identity(const char *doc, size_t len, unsigned min_difficulty, char key[KD_AUTH_KEY_HEX],
                                     unsigned *bits, char **canon, size_t *canon_len, char *errbuf, size_t errlen);

/* Verify signature sig (128 hex digits) of msg[0..len) by public key key
 * (64 hex digits). KD_OK if valid; KD_EINVALID for a bad signature, a
 * malformed key or signature. (0.4.0) */
KD_EXPORT int kd_auth_verify(const char *key, const void *msg, size_t len, const char *sig);

/* Login signatures. The signed message is domain-separated:
 *   "korudelta-login-v1\0" ‖ server_id ‖ "\0" ‖ purpose ‖ "\0" ‖ challenge
 * where challenge is the 32 raw bytes of the 64-hex-digit challenge,
 * server_id the server's identity (docs/AUTH.md) and purpose a short word
 * ("login"). kd_identity_sign_login fills sig; kd_auth_verify_login
 * returns KD_OK when sig is key's signature of that message, else
 * KD_EINVALID (also for a malformed challenge, an empty server_id or
 * purpose). (0.4.0) */
KD_EXPORT int kd_identity_sign_login(const kd_identity *id, const char *challenge, const char *server_id,
                                     const char *purpose, char sig[KD_AUTH_SIG_HEX]);
KD_EXPORT int kd_auth_verify_login(const char *key, const char *challenge, const char *server_id, const char *purpose,
                                   const char *sig);

/* nbytes (1..64) random bytes from the operating system's generator, as
 * 2*nbytes hex digits + NUL in out. KD_EIO if no randomness. (0.4.0) */
KD_EXPORT int kd_auth_random_hex(size_t nbytes, char *out);
/* The stored form of a session token (any text, normally 64 hex digits
 * from kd_auth_random_hex(32)): hex SHA-256 of
 * "korudelta-session-v1\0" ‖ token. A server keeps only this. (0.4.0) */
KD_EXPORT int kd_auth_token_hash(const char *token, char out[KD_AUTH_KEY_HEX]);

/* Permissions, each including the ones before it. */
typedef enum kd_perm { KD_PERM_READ = 1, KD_PERM_WRITE = 2, KD_PERM_ADMIN = 3 } kd_perm;
/* "read", "write", "admin" <-> kd_perm; parse returns KD_EINVALID for
 * anything else, name returns NULL outside the enum. (0.4.0) */
KD_EXPORT int kd_perm_parse(const char *name, kd_perm *out);
KD_EXPORT const char *kd_perm_name(kd_perm p);

/* A capability: granter lets grantee do `perm` on the keys of namespaces
 * matching ns_pattern ('*' matches any run of bytes, every other byte
 * itself) in workspace, optionally only keys starting with prefix, until
 * `expires` (0 = never). */
typedef struct kd_grant {
    char id[KD_AUTH_KEY_HEX];      /* hex SHA-256 of the signed grant's canonical JSON (set by sign/verify) */
    char granter[KD_AUTH_KEY_HEX]; /* public keys */
    char grantee[KD_AUTH_KEY_HEX];
    char workspace[256];           /* "default" for now */
    char ns_pattern[256];
    char prefix[1025];             /* "" when has_prefix is 0 */
    int has_prefix;
    kd_perm perm;
    int64_t issued;                /* ns since the epoch */
    int64_t expires;               /* 0 = never */
} kd_grant;

/* Sign g (its id is ignored; granter must be the identity's key, or
 * empty to mean it) as the granter. *out (kd_free) is the signed grant:
 * canonical JSON {"expires","grantee","granter","issued_at","namespace",
 * "permission","prefix","signature","workspace"} (expires and prefix null
 * when absent); g->id and g->granter are filled. KD_EINVALID for bad
 * fields (message in errbuf). (0.4.0) */
KD_EXPORT int kd_grant_sign(const kd_identity *granter, kd_grant *g, char **out, size_t *len, char *errbuf,
                            size_t errlen);
/* Parse a signed grant and verify its signature by its granter: KD_OK
 * with *g filled (g->id included), KD_EINVALID (bad JSON, bad or missing
 * member, bad signature: message in errbuf). Expiry is not checked here:
 * compare g->expires with the time of use. (0.4.0) */
KD_EXPORT int kd_grant_verify(const char *json, size_t len, kd_grant *g, char *errbuf, size_t errlen);
/* Does g cover doing `perm` on ns/key? key NULL asks about the whole
 * namespace (a grant with a prefix does not cover it). 1 or 0; expiry and
 * workspace are not looked at. (0.4.0) */
KD_EXPORT int kd_grant_covers(const kd_grant *g, const char *ns, const char *key, kd_perm perm);
/* Does ns match pattern ('*' = any run of bytes)? 1 or 0. (0.4.0) */
KD_EXPORT int kd_auth_ns_match(const char *pattern, const char *ns);

/* Write json (any JSON text) as the value of key in KD_AUTH_NS, with the
 * condition `expect` of kd_put_if (NULL = none); kd_auth_delete writes a
 * tombstone. Versioned and durable like every write, advancing the auth
 * root. Errors as kd_put_if / kd_delete. (0.4.0) */
KD_EXPORT int kd_auth_put(kd_db *db, const char *key, const char *json, size_t len, const char *expect,
                          kd_version *out);
KD_EXPORT int kd_auth_delete(kd_db *db, const char *key, kd_version *out);

#ifdef __cplusplus
}
#endif
#endif /* KORUDELTA_H */
