/*
 * upkeep.c — the work a database does on its own: a background thread that
 * wakes every upkeep interval, runs each task that is due, and records how
 * each run went for kd_upkeep_status. Tasks today: "checkpoint" (an index
 * checkpoint when the log after the last one has grown enough),
 * "vector_index" (the vector index file, when enough vector writes
 * followed it; and, after an open that found vector writes after that file,
 * inserting them into the HNSW graphs: vstore.c), "index_release" (when the index holds more
 * than its share of the memory budget: cold version arrays move into the
 * checkpoint's mapping; memory.c, checkpoint.c) and "retention"
 * (kd__compact applying the retention policies, every retention interval;
 * compact.c) and "consolidation" (sealed segments old enough rewritten
 * compressed, every consolidation interval; consolidate.c).
 *
 * A task never holds the log's writer for more than a short piece of work
 * (see checkpoint.c). The thread is stopped first thing in kd_close, which
 * then runs a due checkpoint itself, so a clean close leaves a short tail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_int.h"
#include "vector/vstore.h"

enum { TASK_CHECKPOINT, TASK_VECTORS, TASK_RELEASE, TASK_RETENTION, TASK_CONSOLIDATE, TASK_COUNT };
static const char *const task_names[TASK_COUNT] = {"checkpoint", "vector_index", "index_release", "retention",
                                                   "consolidation"};

/* The upkeep thread seals the newest segment for retention only once it
 * holds this much: small databases do not get a new segment every run. */
#define RETENTION_SEAL_BYTES (4u << 20)

typedef struct kd__upkeep {
    pthread_t thread;
    int running;
    pthread_mutex_t mu; /* guards stop and tasks */
    pthread_cond_t cv;
    int stop;
    kd_task_status tasks[TASK_COUNT];
    int64_t retention_due; /* monotonic ns of the next retention run */
    int64_t consolidate_due;
} kd__upkeep;

static int64_t wall_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void record(kd_db *db, int task, int64_t start, int64_t took, int rc, const char *what)
{
    kd__upkeep *u = db->upkeep;
    if (rc)
        kd__log(db, KD_LOG_WARN, "%s failed: %s", task_names[task], what);
    else
        kd__log(db, KD_LOG_INFO, "%s: %s", task_names[task], what);
    if (!u)
        return;
    pthread_mutex_lock(&u->mu);
    kd_task_status *t = &u->tasks[task];
    t->runs++;
    if (rc)
        t->failures++;
    t->last_run = start;
    t->last_duration_ns = took;
    t->last_status = rc;
    snprintf(t->message, sizeof t->message, "%s", what);
    pthread_mutex_unlock(&u->mu);
}

static int run_checkpoint(kd_db *db)
{
    char what[sizeof ((kd_task_status *)0)->message];
    int64_t start = wall_ns(), t0 = mono_ns();
    int rc = kd__checkpoint_write(db, what, sizeof what);
    record(db, TASK_CHECKPOINT, start, mono_ns() - t0, rc, what);
    return rc;
}

/* The index over its share of the memory budget: a checkpoint, then the
 * version arrays of keys not written since (nor in the few seconds before
 * it) are used in place from it (checkpoint.c, memory.c). */
static void run_release(kd_db *db)
{
    if (run_checkpoint(db) != KD_OK)
        return;
    char what[sizeof ((kd_task_status *)0)->message];
    int64_t start = wall_ns(), t0 = mono_ns();
    int rc = kd__checkpoint_release(db, KD__RELEASE_MIN_AGE_NS, what, sizeof what);
    record(db, TASK_RELEASE, start, mono_ns() - t0, rc, what);
    kd__mem_released(db);
}

/* The vector index file; without `force` only when due (vstore.c). With
 * `force` (kd_checkpoint) the vectors still outside the graphs are
 * inserted first, so that the file can be written. */
static int run_vectors(kd_db *db, int force)
{
    char what[sizeof ((kd_task_status *)0)->message];
    int64_t start = wall_ns(), t0 = mono_ns();
    uint64_t indexed = 0;
    int rc = force ? kd__vstore_index_tail(db, 0, NULL, &indexed) : KD_OK;
    size_t off = 0;
    if (indexed) /* before what the save says */
        off = (size_t)snprintf(what, sizeof what, "%llu vectors inserted into the graphs; ",
                               (unsigned long long)indexed);
    if (rc) {
        snprintf(what, sizeof what, "inserting %llu unindexed vectors into the graphs: out of memory",
                 (unsigned long long)kd__vstore_unindexed(db));
    } else {
        rc = kd__vstore_save(db, force, what + off, sizeof what - off);
        if (off && !what[off])
            what[off - 2] = '\0'; /* the save had nothing to say */
    }
    if (rc || what[0])
        record(db, TASK_VECTORS, start, mono_ns() - t0, rc, what);
    return rc;
}

/* One slice (at most this long) of inserting the vectors an open after a
 * crash left out of the graphs; returns 1 when some remain and the slice
 * made progress (the thread then goes on without waiting). */
#define VECTOR_TAIL_SLICE_NS 1000000000
static int run_vector_tail(kd_db *db, kd__upkeep *u)
{
    if (!kd__vstore_unindexed(db))
        return 0;
    char what[sizeof ((kd_task_status *)0)->message];
    int64_t start = wall_ns(), t0 = mono_ns();
    uint64_t indexed = 0;
    int rc = kd__vstore_index_tail(db, VECTOR_TAIL_SLICE_NS, &u->stop, &indexed);
    uint64_t left = kd__vstore_unindexed(db);
    if (rc)
        snprintf(what, sizeof what, "inserting unindexed vectors into the graphs: out of memory; %llu left",
                 (unsigned long long)left);
    else
        snprintf(what, sizeof what, "%llu vectors written before the last open inserted into the graphs; %llu left",
                 (unsigned long long)indexed, (unsigned long long)left);
    if (rc || indexed)
        record(db, TASK_VECTORS, start, mono_ns() - t0, rc, what);
    return !rc && indexed && left;
}

void kd__upkeep_retention_ran(kd_db *db, int64_t start, int64_t took, int rc, const kd_compact_report *r)
{
    char what[sizeof ((kd_task_status *)0)->message];
    if (rc)
        snprintf(what, sizeof what, "%s", kd_errmsg(db));
    else if (!r->versions_pruned)
        snprintf(what, sizeof what, "nothing to prune%s", r->versions_held ? " in sealed segments yet" : "");
    else
        snprintf(what, sizeof what, "compaction %llu: pruned %llu versions, %llu bytes of values, %llu segments",
                 (unsigned long long)r->number, (unsigned long long)r->versions_pruned,
                 (unsigned long long)r->bytes_freed, (unsigned long long)r->segments_rewritten);
    record(db, TASK_RETENTION, start, took, rc, what);
}

static void run_retention(kd_db *db)
{
    pthread_rwlock_rdlock(&db->ix_lock);
    int seal = __atomic_load_n(&db->segs[db->nsegs - 1].size, __ATOMIC_RELAXED) >= RETENTION_SEAL_BYTES;
    pthread_rwlock_unlock(&db->ix_lock);
    kd_compact_report r;
    int64_t start = wall_ns(), t0 = mono_ns();
    int rc = kd__compact(db, 0, seal, 0, &r);
    if (rc || r.versions_pruned || r.versions_held)
        kd__upkeep_retention_ran(db, start, mono_ns() - t0, rc, &r);
}

void kd__upkeep_consolidation_ran(kd_db *db, int64_t start, int64_t took, int rc, const kd_consolidate_report *r)
{
    char what[sizeof ((kd_task_status *)0)->message];
    if (rc)
        snprintf(what, sizeof what, "%s", kd_errmsg(db));
    else if (!r->segments)
        snprintf(what, sizeof what, "nothing to consolidate");
    else
        snprintf(what, sizeof what, "%llu segments: %llu values compressed, %llu → %llu bytes (dictionary %u)",
                 (unsigned long long)r->segments, (unsigned long long)r->values_compressed,
                 (unsigned long long)r->value_bytes_before, (unsigned long long)r->value_bytes_after, r->dictionary);
    record(db, TASK_CONSOLIDATE, start, took, rc, what);
}

static void run_consolidation(kd_db *db)
{
    kd_consolidate_report r;
    int64_t start = wall_ns(), t0 = mono_ns();
    int rc = kd__consolidate(db, (int64_t)db->opt.consolidate_after_ms * 1000000, 1, &r);
    if (rc || r.segments)
        kd__upkeep_consolidation_ran(db, start, mono_ns() - t0, rc, &r);
}

int kd__upkeep_stopping(kd_db *db)
{
    kd__upkeep *u = db->upkeep;
    if (!u)
        return 0;
    pthread_mutex_lock(&u->mu);
    int stop = u->stop;
    pthread_mutex_unlock(&u->mu);
    return stop;
}

/* The next time anything is due: the periodic tasks, or retention or
 * consolidation, which keep their own intervals (shorter ones than the
 * upkeep interval too: they were rounded up to it). */
static int64_t next_due(const kd_db *db, const kd__upkeep *u, int64_t due)
{
    if (db->opt.retention_ms && u->retention_due < due)
        due = u->retention_due;
    if (db->opt.consolidate_ms && u->consolidate_due < due)
        due = u->consolidate_due;
    return due;
}

static void *upkeep_main(void *arg)
{
    kd_db *db = arg;
    kd__upkeep *u = db->upkeep;
    const int64_t every = (int64_t)db->opt.upkeep_ms * 1000000;
    int64_t due = mono_ns() + every; /* of the periodic tasks */
    /* Vectors an open after a crash left out of the graphs are inserted at
     * once, one slice after another, the periodic tasks still running on
     * their interval in between. */
    int busy = kd__vstore_unindexed(db) > 0;
    pthread_mutex_lock(&u->mu);
    while (!u->stop) {
        if (!busy) {
            int64_t wait = next_due(db, u, due) - mono_ns();
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            if (wait > 0) {
                ts.tv_nsec += (long)(wait % 1000000000);
                ts.tv_sec += (time_t)(wait / 1000000000) + ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&u->cv, &u->mu, &ts);
            }
        }
        if (u->stop)
            break;
        pthread_mutex_unlock(&u->mu);
        busy = !kd__failed(db) && run_vector_tail(db, u);
        if (mono_ns() < next_due(db, u, due)) {
            pthread_mutex_lock(&u->mu);
            continue;
        }
        if (mono_ns() >= due) {
            if (!kd__failed(db) && kd__checkpoint_due(db))
                run_checkpoint(db);
            if (!kd__failed(db))
                run_vectors(db, 0);
            kd__mem_rebalance(db);
            if (!kd__failed(db) && kd__mem_index_over(db))
                run_release(db);
            kd__seg_release_retired(db);
            due = mono_ns() + every;
        }
        /* Due again an interval later, also when a failed database skips
         * the run (a due time left in the past would never let it sleep). */
        if (db->opt.retention_ms && mono_ns() >= u->retention_due) {
            if (!kd__failed(db))
                run_retention(db);
            u->retention_due = mono_ns() + (int64_t)db->opt.retention_ms * 1000000;
        }
        if (db->opt.consolidate_ms && mono_ns() >= u->consolidate_due) {
            if (!kd__failed(db))
                run_consolidation(db);
            u->consolidate_due = mono_ns() + (int64_t)db->opt.consolidate_ms * 1000000;
        }
        pthread_mutex_lock(&u->mu);
    }
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

int kd__upkeep_start(kd_db *db)
{
    kd__upkeep *u = calloc(1, sizeof *u);
    if (!u)
        return KD_ENOMEM;
    pthread_mutex_init(&u->mu, NULL);
    pthread_cond_init(&u->cv, NULL);
    for (int i = 0; i < TASK_COUNT; i++)
        snprintf(u->tasks[i].name, sizeof u->tasks[i].name, "%s", task_names[i]);
    u->retention_due = mono_ns() + (int64_t)db->opt.retention_ms * 1000000;
    u->consolidate_due = mono_ns() + (int64_t)db->opt.consolidate_ms * 1000000;
    db->upkeep = u;
    if (db->opt.upkeep_ms) {
        if (kd__thread_start(&u->thread, upkeep_main, db, "kd-upkeep") != 0)
            return KD_ENOMEM; /* kd__upkeep_stop frees u */
        u->running = 1;
    }
    return KD_OK;
}

void kd__upkeep_stop(kd_db *db)
{
    kd__upkeep *u = db->upkeep;
    if (!u)
        return;
    if (u->running) {
        pthread_mutex_lock(&u->mu);
        __atomic_store_n(&u->stop, 1, __ATOMIC_RELEASE); /* read outside mu by the vector insert loop */
        pthread_cond_broadcast(&u->cv);
        pthread_mutex_unlock(&u->mu);
        pthread_join(u->thread, NULL);
        u->running = 0;
    }
}

void kd__upkeep_free(kd_db *db)
{
    kd__upkeep *u = db->upkeep;
    if (!u)
        return;
    kd__upkeep_stop(db);
    pthread_mutex_destroy(&u->mu);
    pthread_cond_destroy(&u->cv);
    free(u);
    db->upkeep = NULL;
}

void kd__upkeep_at_close(kd_db *db)
{
    kd__upkeep_stop(db);
    /* Closing has no writers to hold up: a tail of checkpoint_bytes is
     * enough to write one, so a clean close leaves the next open at most
     * that much log to replay. */
    uint64_t tail, covered;
    kd__checkpoint_lag(db, &tail, &covered);
    if (!kd__failed(db) && db->opt.checkpoint_bytes && tail >= db->opt.checkpoint_bytes)
        run_checkpoint(db);
}

/* ------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------- */

int kd_options_set_upkeep_interval(kd_options *o, uint32_t ms)
{
    if (!o)
        return KD_EMISUSE;
    o->upkeep_ms = ms;
    return KD_OK;
}

int kd_options_set_retention_interval(kd_options *o, uint32_t ms)
{
    if (!o)
        return KD_EMISUSE;
    o->retention_ms = ms;
    return KD_OK;
}

int kd_options_set_consolidation(kd_options *o, uint32_t every_ms, uint32_t after_ms)
{
    if (!o)
        return KD_EMISUSE;
    o->consolidate_ms = every_ms;
    o->consolidate_after_ms = after_ms;
    return KD_OK;
}

int kd_options_set_checkpoint_bytes(kd_options *o, uint64_t bytes)
{
    if (!o)
        return KD_EMISUSE;
    o->checkpoint_bytes = bytes;
    return KD_OK;
}

int kd_checkpoint(kd_db *db)
{
    if (!db)
        return KD_EMISUSE;
    if (db->core) /* a workspace handle: database-wide */
        db = db->core;
    int task = TASK_CHECKPOINT, rc = run_checkpoint(db);
    if (rc == KD_OK) {
        task = TASK_VECTORS;
        rc = run_vectors(db, 1);
    }
    if (rc) {
        kd_task_status t;
        pthread_mutex_lock(&db->upkeep->mu);
        t = db->upkeep->tasks[task];
        pthread_mutex_unlock(&db->upkeep->mu);
        return kd__err(db, rc, "%s failed: %s", task_names[task], t.message);
    }
    return KD_OK;
}

int kd_upkeep_status(kd_db *db, kd_task_status **tasks, size_t *n)
{
    if (!db || !tasks || !n)
        return KD_EMISUSE;
    if (db->core) /* a workspace handle: database-wide */
        db = db->core;
    kd_task_status *t = malloc(sizeof *t * TASK_COUNT);
    if (!t)
        return kd__err(db, KD_ENOMEM, "out of memory");
    pthread_mutex_lock(&db->upkeep->mu);
    memcpy(t, db->upkeep->tasks, sizeof *t * TASK_COUNT);
    pthread_mutex_unlock(&db->upkeep->mu);
    *tasks = t;
    *n = TASK_COUNT;
    return KD_OK;
}
