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
 * connection, with no other durable write starting and no other sync
 * running while it ran. The conditions on the last sync matter. Judged by
 * the size of the last group alone, a server under 64 connections could
 * fall to one write per fsync (about 3,300/s instead of 25,000/s): when
 * one event thread held most of the connections, each of its writes
 * synced inline while it could not read the next request, so no other
 * write started and every group was one; and when the other event
 * thread's writes queued behind an inline sync, the durability thread
 * synced them as groups of one too.
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
    atomic_uint_fast64_t begun;   /* syncs begun so far */
    atomic_int syncing;           /* syncs in progress (inline or the durability thread's) */
    atomic_int shared;            /* the last sync had company: more than one write, others started,
                                     or another sync ran beside it */
    atomic_uintptr_t last;        /* the connection whose write the last sync covered alone, or 0 */
} ks_lone;

/* What a sync saw when it began (ks_lone_sync_begin), for ks_lone_sync_end. */
typedef struct ks_lone_mark {
    uint64_t started, begun;
    int beside; /* another sync was running */
} ks_lone_mark;

/* A durable write was made (before asking whether it may sync inline). */
static inline void ks_lone_started(ks_lone *l)
{
    atomic_fetch_add(&l->started, 1);
}

/* A sync begins. Called, like ks_lone_sync_end and ks_lone_try, with the
 * durability queue's lock held, so a sync's end never interleaves with
 * another's. */
static inline ks_lone_mark ks_lone_sync_begin(ks_lone *l)
{
    ks_lone_mark m;
    m.beside = atomic_fetch_add(&l->syncing, 1) != 0;
    m.begun = atomic_fetch_add(&l->begun, 1) + 1;
    m.started = atomic_load(&l->started);
    return m;
}

/* A sync of `group` writes that began at `m` ended; `conn` made the write
 * when the group was one. Two syncs that overlapped both count as having
 * had company, whichever ends last. */
static inline void ks_lone_sync_end(ks_lone *l, ks_lone_mark m, size_t group, const void *conn)
{
    int company = group > 1 || m.beside || atomic_load(&l->started) != m.started || atomic_load(&l->begun) != m.begun;
    atomic_store(&l->shared, company);
    atomic_store(&l->last, group == 1 && !company ? (uintptr_t)conn : 0);
    atomic_fetch_sub(&l->syncing, 1);
}

/* May a write made just now by connection `conn` sync inline? queue_empty:
 * nothing waits for the durability thread. The caller holds the queue's
 * lock, so two writes cannot both find no sync running. When it returns
 * 1, a sync has begun: *m is for ks_lone_sync_end. */
static inline int ks_lone_try(ks_lone *l, int queue_empty, const void *conn, ks_lone_mark *m)
{
    if (!queue_empty || atomic_load(&l->syncing) != 0 || atomic_load(&l->shared) ||
        atomic_load(&l->last) != (uintptr_t)conn)
        return 0;
    *m = ks_lone_sync_begin(l);
    return 1;
}

#endif
