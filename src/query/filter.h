/*
 * filter.h — the filter tree behind kd_filter (private).
 *
 * Three ways in (text language, JSON form) and one way to run it:
 * kd__filter_eval over a canonical value. The text grammar is in
 * docs/QUERY.md; both forms build this tree, and both can be written back.
 */
#ifndef KD_QUERY_FILTER_H
#define KD_QUERY_FILTER_H

#include "korudelta.h"
#include "jv.h"

typedef enum kd__fop {
    KD__F_EQ,
    KD__F_NE,
    KD__F_GT,
    KD__F_GTE,
    KD__F_LT,
    KD__F_LTE,
    KD__F_CONTAINS,
    KD__F_EXISTS,
    KD__F_MATCHES,
    KD__F_IN,
    KD__F_AND,
    KD__F_OR,
    KD__F_NOT,
    KD__F_TRUE /* matches everything (an empty filter) */
} kd__fop;

typedef struct kd__fnode {
    kd__fop op;
    kd__path path;     /* comparisons, contains, exists, matches, in */
    char *value;       /* canonical JSON literal (contains, comparisons); for
                        * in: a canonical array; for matches: the pattern */
    size_t value_len;
    void *re;          /* matches: compiled pcre2_code_8 */
    struct kd__fnode **kids; /* and/or: n_kids >= 2; not: 1 */
    size_t n_kids;
} kd__fnode;

struct kd_filter {
    kd__fnode *root;
};

/* 1 if the canonical value v matches f, else 0. v may be missing (a
 * tombstone): then only filters true of an absent document match. */
int kd__filter_eval(const kd_filter *f, kd__jv v);


kd_filter *kd__filter_copy(const kd_filter *f);

#endif
