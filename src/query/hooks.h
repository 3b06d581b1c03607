/*
 * hooks.h — what the commit path tells the query layer (private).
 *
 * Subscriptions (and, later, secondary indexes and views) follow every
 * write. The commit path (write.c) calls kd__hooks_on_commit once per
 * transaction, with write_mu held, after the transaction is in the log and
 * applied to the index, in log order — but for sync=always before it is
 * durable: whatever is delivered to users must wait until visible_ts
 * reaches the write (kd__hooks_published is called whenever it moves).
 * Hooks run on the writer's thread: they must be quick and bounded, never
 * take write_mu, and never wait for a reader.
 */
#ifndef KD_QUERY_HOOKS_H
#define KD_QUERY_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "../store/format.h"

struct kd_db;
struct kd__key;

typedef struct kd__applied {
    const char *ns, *key;       /* NUL-terminated */
    const struct kd__key *k;    /* the key in the index */
    const kd__write_rec *rec;   /* ts, flags, write_id, version_id, parent */
    const char *value;          /* new canonical value, NULL for a delete */
    size_t value_len;
    const char *prev;           /* live value before this write, NULL if none */
    size_t prev_len;
} kd__applied;

/* Nonzero when some hook wants writes (so the writer only gathers the
 * kd__applied array when someone listens). Read without locks. */
static inline int kd__hooks_wanted(const int *counter)
{
    return __atomic_load_n(counter, __ATOMIC_ACQUIRE) != 0;
}

/* Called with write_mu held, after a transaction of n writes is applied. */
void kd__hooks_on_commit(struct kd_db *db, const kd__applied *w, size_t n);
/* Key w->k went with its dropped workspace (compact.c): secondary indexes
 * and views let go of it as of a delete (w->value NULL, w->prev its value
 * then, w->rec only a time); subscribers hear nothing, as no write
 * happened. Under write_mu, ix_lock not held. */
void kd__hooks_on_dropped(struct kd_db *db, const kd__applied *w);
/* visible_ts moved forward (any thread; no lock held). */
void kd__hooks_published(struct kd_db *db);
/* At open, after replay: load index (and view) definitions and build them. */
int kd__hooks_open(struct kd_db *db, char *err, size_t errlen);
/* At close, after the last write: free what the hooks hold (also after a
 * failed open; safe to call twice). */
void kd__hooks_close(struct kd_db *db);

#endif
