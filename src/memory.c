/*
 * memory.c — the memory budget (kd_options_set_max_memory) and how it is
 * split between the parts of the database that hold memory.
 *
 * The budget B bounds what the database itself keeps in the process:
 *   - the in-memory index's heap (I, kd_stats.index_bytes),
 *   - the vector indexes (V, kd_stats.vector_index_bytes),
 *   - pages of the log mapped into the process (the segments are read and
 *     the newest one written through mappings), at most a window W for
 *     reads plus W for writes between trims,
 *   - the hot value cache, which takes what is left:
 *         cache = clamp(B - I - V - 2W, B/16, B/2)
 *     (an explicit kd_options_set_cache_size wins and is not changed).
 * The index and vector indexes grow with the data; the cache shrinks as
 * they do (evicting at once), re-checked after every B/64 of index growth
 * and on every upkeep tick. The index should keep within B/2: past that,
 * the upkeep thread writes a checkpoint and moves the version arrays of
 * keys not written lately into its mapping (kd__checkpoint_release), when
 * the keys' own arrays grew by B/16 since the last time or that time left
 * keys behind for being written lately.
 *
 * Log pages: a page read or written through a mapping stays counted in the
 * process's RSS (as RssFile: clean or written-back page cache, reclaimable,
 * but counted) until it is unmapped. kd_get and its relatives copy values
 * out with pread (read.c), which maps nothing; scans and queries read
 * values in place, and cold keys' versions are read in place from the
 * checkpoint's mapping. So once W bytes were read through mappings since
 * the last trim (counted in 64 KiB fault-around windows), every sealed mapping is dropped
 * with madvise(MADV_DONTNEED); once W bytes were appended, the written part
 * of the newest segment's mapping is dropped the same way. Both mappings
 * are of files (read-only, or shared), so dropping pages loses nothing: the
 * next access faults them back from the page cache. The checkpoint's
 * mapping (versions of keys not written since open) is trimmed with the
 * read mappings.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "vector/vstore.h"

#define MIB (1024ull * 1024)

static int64_t mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

uint64_t kd__mem_default_budget(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGE_SIZE);
    uint64_t ram = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
    uint64_t b = ram / 4;
    return b < KD__MEM_DEFAULT_MIN ? KD__MEM_DEFAULT_MIN : b;
}

uint64_t kd__mem_window(uint64_t budget)
{
    uint64_t w = budget / 32;
    return w < 256 * 1024 ? 256 * 1024 : w;
}

uint64_t kd__mem_cache_share(uint64_t budget, uint64_t index_bytes, uint64_t vector_bytes)
{
    uint64_t lo = budget / 16, hi = budget / 2, taken = index_bytes + vector_bytes + 2 * kd__mem_window(budget);
    uint64_t c = taken < budget ? budget - taken : 0;
    return c < lo ? lo : c > hi ? hi : c;
}

static int explicit_cache(const kd_db *db)
{
    return db->opt.cache_size_set;
}

size_t kd__mem_open(kd_db *db)
{
    db->mem.budget = db->opt.max_memory ? db->opt.max_memory : kd__mem_default_budget();
    db->mem.window = kd__mem_window(db->mem.budget);
    if (explicit_cache(db))
        return db->opt.cache_size;
    return (size_t)kd__mem_cache_share(db->mem.budget, 0, 0);
}

static void apply(kd_db *db, uint64_t index_bytes, uint64_t vector_bytes)
{
    __atomic_store_n(&db->mem.ix_seen, index_bytes, __ATOMIC_RELAXED);
    if (explicit_cache(db))
        return;
    size_t want = (size_t)kd__mem_cache_share(db->mem.budget, index_bytes, vector_bytes);
    if (want != kd__cache_capacity(&db->cache))
        kd__cache_set_capacity(&db->cache, want);
}

void kd__mem_rebalance(kd_db *db)
{
    uint64_t vectors, vbytes;
    kd__vstore_totals(db, &vectors, &vbytes);
    __atomic_store_n(&db->mem.vec_bytes, vbytes, __ATOMIC_RELAXED);
    pthread_rwlock_rdlock(&db->ix_lock);
    uint64_t ib = db->ix.bytes;
    pthread_rwlock_unlock(&db->ix_lock);
    apply(db, ib, vbytes);
    kd__mem_trim_reads(db, 0);
}

int kd__mem_index_over(kd_db *db)
{
    pthread_rwlock_rdlock(&db->ix_lock);
    uint64_t ib = db->ix.bytes, heap = db->ix.ver_heap;
    pthread_rwlock_unlock(&db->ix_lock);
    if (ib <= db->mem.budget / 2 || mono_now() < db->mem.next_release)
        return 0;
    return heap >= db->mem.heap_after + db->mem.budget / 16 || db->mem.young_keys > 0;
}

void kd__mem_released(kd_db *db)
{
    pthread_rwlock_rdlock(&db->ix_lock);
    db->mem.heap_after = db->ix.ver_heap;
    pthread_rwlock_unlock(&db->ix_lock);
    db->mem.next_release = mono_now() + KD__RELEASE_MIN_AGE_NS;
    kd__mem_rebalance(db); /* the cache may grow back */
    kd__mem_trim_reads(db, 1); /* the pages the release read leave the process */
}

/* ------------------------------------------------------------------------
 * Log pages
 * ---------------------------------------------------------------------- */

static size_t page_floor(uint64_t n)
{
    uint64_t ps = (uint64_t)sysconf(_SC_PAGE_SIZE);
    return (size_t)(n - n % ps);
}

void kd__mem_trim_reads(kd_db *db, int force)
{
    if (!force && __atomic_load_n(&db->mem.read_touched, __ATOMIC_RELAXED) < db->mem.window)
        return;
    int expect = 0;
    if (!__atomic_compare_exchange_n(&db->mem.trimming, &expect, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return; /* another thread is at it */
    __atomic_store_n(&db->mem.read_touched, 0, __ATOMIC_RELAXED);
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < db->nsegs; i++) {
        size_t len = page_floor(__atomic_load_n(&db->segs[i].size, __ATOMIC_RELAXED) + sysconf(_SC_PAGE_SIZE) - 1);
        if (db->segs[i].rmap && len)
            madvise((void *)db->segs[i].rmap, len, MADV_DONTNEED);
    }
    for (size_t i = 0; i < db->ix.n_maps; i++)
        madvise(db->ix.maps[i].p, db->ix.maps[i].len, MADV_DONTNEED);
    pthread_rwlock_unlock(&db->ix_lock);
    __atomic_fetch_add(&db->mem.trims, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&db->mem.trimming, 0, __ATOMIC_RELEASE);
}

void kd__mem_read_touch(kd_db *db, const void *addr, size_t len)
{
    /* What stays mapped is not just the bytes read: a page fault on a file
     * mapping also maps the neighbouring pages already in the page cache
     * ("fault-around", 64 KiB aligned by default). So a read counts every
     * 64 KiB window it spans, except the window the last read ended in
     * (a scan reads on through the same window): a bound, not a measure. */
    const uintptr_t fw = KD__FAULT_AROUND;
    uintptr_t a = (uintptr_t)addr, first = a / fw, last = (a + (len ? len - 1 : 0)) / fw;
    uintptr_t prev = __atomic_exchange_n(&db->mem.last_window, last, __ATOMIC_RELAXED);
    uint64_t windows = (uint64_t)(last - first) + (prev != first);
    if (windows)
        __atomic_fetch_add(&db->mem.read_touched, windows * fw, __ATOMIC_RELAXED);
}

void kd__mem_after_append(kd_db *db)
{
    /* write_mu held: the tail and ix.bytes change only under it */
    if (db->appended - db->mem.tail_trimmed >= db->mem.window && db->tail.map && db->nsegs) {
        size_t len = page_floor(db->segs[db->nsegs - 1].size);
        if (len)
            madvise(db->tail.map, len, MADV_DONTNEED);
        db->mem.tail_trimmed = db->appended;
        __atomic_fetch_add(&db->mem.trims, 1, __ATOMIC_RELAXED);
    }
    uint64_t ib = db->ix.bytes, seen = __atomic_load_n(&db->mem.ix_seen, __ATOMIC_RELAXED);
    uint64_t step = db->mem.budget / 64;
    if (ib > seen + step || ib + step < seen)
        apply(db, ib, __atomic_load_n(&db->mem.vec_bytes, __ATOMIC_RELAXED));
}

/* ------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------- */

int kd_options_set_max_memory(kd_options *o, uint64_t bytes)
{
    if (!o)
        return KD_EMISUSE;
    if (bytes && bytes < KD__MEM_MIN_BUDGET)
        return KD_EINVALID;
    o->max_memory = bytes;
    return KD_OK;
}
