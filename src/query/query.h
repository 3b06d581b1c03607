/*
 * query.h — the compiled query behind kd_query, and what the three query
 * files share (private).
 *
 *   query_json.c  the JSON form: kd_query_parse, kd_query_to_json, kd_query_free
 *   query_agg.c   aggregations and group by over a stream of values
 *   query.c       running a query: kd_query_run, kd_query_history, results
 *
 * docs/QUERY.md ("Queries") is the user's description of all of this.
 */
#ifndef KD_QUERY_QUERY_H
#define KD_QUERY_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "filter.h"
#include "jv.h"
#include "korudelta.h"

/* A field named in sort, select, group_by or an aggregation. */
typedef struct kd__qfield {
    kd__path path;
    char *text;      /* the path as kd__path_write writes it, NUL-terminated */
    size_t text_len;
    char *quoted;    /* text as a JSON string (a member name in results) */
    size_t quoted_len;
    int desc;        /* sort only: 1 for descending */
} kd__qfield;

typedef enum kd__aop {
    KD__A_COUNT,
    KD__A_SUM,
    KD__A_AVG,
    KD__A_MIN,
    KD__A_MAX,
    KD__A_DISTINCT,
    KD__A_COUNT_DISTINCT
} kd__aop;

typedef struct kd__qagg {
    kd__aop op;
    kd__qfield field; /* unused (zeroed) for count */
    char *name;       /* "count" or "op:path": the member name in results */
    size_t name_len;
    char *quoted;     /* name as a JSON string */
    size_t quoted_len;
} kd__qagg;

struct kd_query {
    kd_filter *filter; /* NULL: everything matches */
    kd__qfield *sort;  /* in priority order */
    size_t n_sort;
    kd__qfield *select; /* sorted by text (the order of the projected members) */
    size_t n_select;
    kd__qagg *aggs; /* sorted by name (the order of the result members) */
    size_t n_aggs;
    kd__qfield *group; /* in the order given (groups are ordered field by field) */
    size_t n_group;
    size_t *group_by_name; /* indexes into group, sorted by text */
    uint64_t offset, limit;
    int has_limit;
    int has_at;
    int64_t at;
    int has_from, has_to, has_latest;
    int64_t from, to;
    uint64_t latest;
};

/* Byte-wise order of member names (a prefix first), as canonical JSON
 * orders object members. */
int kd__name_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* ------------------------------------------------------------------------
 * Aggregation (query_agg.c): feed every matching value, then write the
 * "aggregates" JSON of docs/QUERY.md.
 * ---------------------------------------------------------------------- */

typedef struct kd__agg kd__agg;

/* q must have n_aggs > 0 and outlive the aggregator. KD_OK or KD_ENOMEM. */
int kd__agg_new(const kd_query *q, kd__agg **out);
/* One matching document (missing for a tombstone of a history query).
 * Copies what it keeps. KD_OK or KD_ENOMEM. */
int kd__agg_feed(kd__agg *a, kd__jv doc);
/* Append the canonical JSON of the aggregations to out. */
int kd__agg_finish(kd__agg *a, kd__buf *out);
void kd__agg_free(kd__agg *a);

/* Append a double as canonical JSON (a non-integer number; null when not
 * finite). */
int kd__write_double(kd__buf *out, double x);

#endif
