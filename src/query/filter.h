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


/* A deep copy (the regular expressions recompiled); NULL on out of
 * memory. */
kd_filter *kd__filter_copy(const kd_filter *f);

/* ---- shared by filter.c and filter_parse.c ---- */

/* Limits, the same for the text and the JSON form, so that either form of
 * an accepted filter is accepted back: at most KD__FILTER_MAX_NEST and/or/
 * not nodes on any path from the root (and at most that many parentheses
 * and nots open in the text), literals nested at most
 * KD__FILTER_MAX_VALUE_DEPTH deep. Together they keep the JSON form within
 * the JSON parser's depth limit. */
#define KD__FILTER_MAX_NEST 128
#define KD__FILTER_MAX_VALUE_DEPTH 128

kd__fnode *kd__fnode_new(kd__fop op);
void kd__fnode_free(kd__fnode *n); /* NULL is a no-op */
/* Append kid to an and/or/not node; KD_ENOMEM leaves kid to the caller. */
int kd__fnode_add(kd__fnode *n, kd__fnode *kid);
/* Compile n->value[0..value_len) (the pattern) into n->re. KD_EINVALID
 * with "invalid regular expression: ..." in err. */
int kd__fnode_compile(kd__fnode *n, char *err, size_t errlen);
/* JSON nesting of a canonical value: 0 for a scalar, 1 for [] or {}. */
size_t kd__filter_value_depth(const char *p, size_t len);

/* The text parser (filter_parse.c): the tree of text[0..len). */
int kd__filter_parse_text(const char *text, size_t len, kd__fnode **root, char *err, size_t errlen);

#endif
