/*
 * dom.h — a small in-memory tree of a JSON value, for JSON Patch (patch.c).
 *
 * The tree is built only from canonical JSON (the output of
 * kd__json_canonicalize), so its parser can be simple: no whitespace, no
 * duplicate names, members already sorted. It is still careful: it never
 * reads outside its input, refuses anything it does not expect, and is
 * iterative with at most KD_JSON_MAX_DEPTH open containers.
 *
 * Invariants every function here relies on (and patch.c maintains):
 *   - a tree nests at most KD_JSON_MAX_DEPTH containers deep, so the few
 *     recursive functions below (free, copy, equal, write, depth) recurse
 *     at most that far;
 *   - object members are sorted by name (memcmp order, a prefix first) and
 *     names are unique, so writing a tree gives canonical JSON directly;
 *   - numbers keep their canonical text, strings their unescaped UTF-8
 *     bytes (which may contain NUL: lengths are always explicit).
 */
#ifndef KD_JSON_DOM_H
#define KD_JSON_DOM_H

#include <stddef.h>

#include "../util/buf.h"

typedef enum kd__jtype {
    KD__J_NULL,
    KD__J_FALSE,
    KD__J_TRUE,
    KD__J_NUMBER,
    KD__J_STRING,
    KD__J_ARRAY,
    KD__J_OBJECT
} kd__jtype;

typedef struct kd__jnode kd__jnode;

typedef struct kd__jmember {
    char *name; /* unescaped UTF-8, NUL-terminated (may also contain NUL) */
    size_t name_len;
    kd__jnode *value;
} kd__jmember;

struct kd__jnode {
    kd__jtype type;
    size_t len; /* NUMBER/STRING: bytes of text; ARRAY/OBJECT: number of items */
    size_t cap; /* ARRAY/OBJECT: allocated items */
    union {
        char *text;           /* NUMBER: canonical text; STRING: unescaped bytes */
        kd__jnode **items;    /* ARRAY */
        kd__jmember *members; /* OBJECT, sorted by name */
    } u;
};

/* Build the tree of canonical JSON text `in` (len bytes). KD_OK, KD_ENOMEM,
 * or KD_EINVALID when the text is not canonical JSON as expected. */
int kd__jdom_parse(const char *in, size_t len, kd__jnode **out);

/* Free a tree (NULL is a no-op). */
void kd__jdom_free(kd__jnode *n);

/* Deep copy; NULL on out-of-memory. */
kd__jnode *kd__jdom_copy(const kd__jnode *n);

/* 1 if the two values are equal JSON values (same type, same canonical
 * number text, same string bytes, equal members / elements), else 0. */
int kd__jdom_equal(const kd__jnode *a, const kd__jnode *b);

/* Containers nested in n: 0 for a scalar, 1 for [] or {}, 2 for [[]]. */
size_t kd__jdom_depth(const kd__jnode *n);

/* Roughly the bytes of n's canonical JSON (escapes not counted), at least
 * 1 per node: what patch.c uses to bound the size of a result. */
size_t kd__jdom_weight(const kd__jnode *n);

/* Append the canonical JSON of n to out. */
int kd__jdom_write(kd__buf *out, const kd__jnode *n);

/* Objects: index of the member named name[0..len) or, when absent, (size_t)-1
 * with *pos set to where it would be inserted. */
size_t kd__jdom_find(const kd__jnode *obj, const char *name, size_t len, size_t *pos);

/* Set member name to value (taking ownership of value; an existing value
 * is freed). KD_ENOMEM leaves obj unchanged and value still the caller's. */
int kd__jdom_set(kd__jnode *obj, const char *name, size_t len, kd__jnode *value);

/* Detach the member at index i of obj and return its value. */
kd__jnode *kd__jdom_take_member(kd__jnode *obj, size_t i);

/* Insert value at index i (0..len) of arr, taking ownership. KD_ENOMEM
 * leaves arr unchanged. */
int kd__jdom_insert(kd__jnode *arr, size_t i, kd__jnode *value);

/* Detach the element at index i (< len) of arr and return it. */
kd__jnode *kd__jdom_take_item(kd__jnode *arr, size_t i);

#endif
