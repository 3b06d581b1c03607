/*
 * sindex.h — secondary indexes (private side of kd_index_*).
 *
 * One index covers one field path of one namespace: a balanced tree of
 * (field value, key) entries in the total order of jv.h, one entry per
 * live key that has the field. The commit hook keeps it current; queries
 * ask it for candidate keys (kd__sindex_candidates) and then evaluate the
 * whole filter on each candidate, so results are the same with or without
 * the index.
 */
#ifndef KD_QUERY_SINDEX_H
#define KD_QUERY_SINDEX_H

#include <pthread.h>
#include <stdint.h>

#include "filter.h"
#include "hooks.h"

struct kd_db;
struct kd__key;
typedef struct kd__sindex kd__sindex;

/* The query layer's state of one database handle (db->qs). */
typedef struct kd__qstate {
    pthread_mutex_t def_mu;   /* one definition change at a time */
    pthread_rwlock_t lock;    /* the lists below and every index tree */
    kd__sindex **idx;
    size_t n_idx, cap_idx;
    struct kd__unbuilt *unbuilt; /* defined, but not built: listed, never used */
    size_t n_unbuilt, cap_unbuilt;
    struct kd__view **views; /* views.c */
    size_t n_views, cap_views;
} kd__qstate;

/* Open: load the definitions from the log and build the indexes. */
int kd__sindex_open(struct kd_db *db, char *err, size_t errlen);
void kd__sindex_close(struct kd_db *db);
/* Commit hook: keep the indexes of w->ns current (write_mu held). */
void kd__sindex_on_write(struct kd_db *db, const kd__applied *w);

/* Candidate keys for filter f over namespace ns from an index, when one
 * applies (an eq, in or range test on an indexed path, alone or as a
 * conjunct of a top-level `and`). Returns 1 with *keys (malloc'ed, free()
 * it; may be empty) and *snapshot = the time at which the candidates are
 * exact: evaluate each candidate's version at that time. Returns 0 when no
 * index applies or the index is ahead of what readers may see (then scan);
 * a negative KD_E* code on error. */
int kd__sindex_candidates(struct kd_db *db, const char *ns, const kd_filter *f, const struct kd__key ***keys,
                          size_t *n, int64_t *snapshot);

#endif
