/*
 * lone.h — when a durable key write may sync on its own event thread.
 *
 * Under sync=always, key writes are answered after an fsync that covers
 * them. Several concurrent writes share one fsync made by the durability
 * thread (server/http.c); a lone writer (one connection writing) syncs on
 * its event thread instead, which saves two thread wake-ups per write.
 *
 * A write is lone when no sync is running, nothing is queued for the
 * durability thread, and the last sync covered one write, made by the same
 * connection, with no other durable write starting while it ran. Both
 * conditions on the last sync matter. Judged by the size of the last group
 * alone, a server under 64 connections could fall to one write per fsync
 * (about 3,300/s instead of 25,000/s): when one event thread held most of
 * the connections, each of its writes synced inline while it could not
 * read the next request, so no other write started and every group was
 * one; and when the other event thread's writes queued behind an inline
 * sync, the durability thread synced them as groups of one too.
 *
 * Header-only so that a unit test can drive it (tests/unit/test_lone.c).
 */
#ifndef KS_LONE_H
#define KS_LONE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ks_lone {
    atomic_uint_fast64_t started; /* durable writes made so far */
    atomic_int syncing;           /* syncs in progress (inline or the durability thread's) */
    atomic_int shared;            /* the last sync had company: more than one write, or others started */
    _Atomic(const void *) last;   /* the connection whose write the last sync covered alone, or NULL */
} ks_lone;

/* A durable write was made (before asking whether it may sync inline). */
static inline void ks_lone_started(ks_lone *l)
{
    atomic_fetch_add(&l->started, 1);
}

/* A sync begins; the returned mark goes to ks_lone_sync_end. */
static inline uint64_t ks_lone_sync_begin(ks_lone *l)
{
    atomic_fetch_add(&l->syncing, 1);
    return atomic_load(&l->started);
}

/* A sync of `group` writes that began at `mark` ended; `conn` made the
 * write when the group was one. */
static inline void ks_lone_sync_end(ks_lone *l, uint64_t mark, size_t group, const void *conn)
{
    int company = group > 1 || atomic_load(&l->started) != mark;
    atomic_store(&l->shared, company);
    atomic_store(&l->last, group == 1 ? conn : NULL);
    atomic_fetch_sub(&l->syncing, 1);
}

/* May a write made just now by connection `conn` sync inline?
 * queue_empty: nothing waits for
 * the durability thread. The caller holds the queue's lock, as the
 * durability thread does for its ks_lone_sync_begin, so two writes cannot
 * both find no sync running. When it returns 1, a sync has begun: *mark is
 * for ks_lone_sync_end. */
static inline int ks_lone_try(ks_lone *l, int queue_empty, const void *conn, uint64_t *mark)
{
    if (!queue_empty || atomic_load(&l->syncing) != 0 || atomic_load(&l->shared) || atomic_load(&l->last) != conn)
        return 0;
    *mark = ks_lone_sync_begin(l);
    return 1;
}

#endif
