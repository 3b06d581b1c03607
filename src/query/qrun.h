/*
 * qrun.h — what views and indexes need from the query engine (query.c).
 */
#ifndef KD_QUERY_QRUN_H
#define KD_QUERY_QRUN_H

#include <stdint.h>

#include "korudelta.h"

struct kd__key;

/* The query's filter; NULL when it has none (everything matches). */
const kd_filter *kd__query_filter(const kd_query *q);
/* 1 if q aggregates, groups or has "at" (none of which a view can keep). */
int kd__query_has_extras(const kd_query *q);
/* The result of q over exactly these versions — key i at its version with
 * timestamp ts[i], each already known to match q's filter: ordered by q's
 * sort, projected by its select, paged by its offset/limit and then by
 * `offset`/`limit` (0 = no limit); total counts the versions after q's own
 * offset/limit. */
int kd__query_run_keys(kd_db *db, const char *ns, const kd_query *q, const struct kd__key *const *keys,
                       const int64_t *ts, size_t n, size_t offset, size_t limit, kd_result **out);

#endif
