/*
 * jv.h — reading values inside canonical JSON text without building a tree.
 *
 * Queries look at millions of stored values, which are canonical JSON
 * (json.h): no whitespace, members sorted, minimal escapes, numbers in
 * canonical text. A kd__jv is a slice of such text holding one value; the
 * functions here find members and elements, and compare values, by walking
 * the text. They trust that the text is canonical JSON (the database only
 * stores that) but never read outside the slice.
 *
 * The one order used everywhere (sort, min/max, range filters, group by,
 * secondary indexes), docs/QUERY.md "Order of values":
 *   missing < null < false < true < numbers < strings < arrays < objects
 * numbers by their exact value (integers at any size; an integer and a
 * non-integer exactly too: 9007199254740993 > 9007199254740992.0; equal
 * values then ordered integer first, -0.0 before 0.0, so the order stays
 * total), strings by the bytes of their UTF-8
 * (unescaped), arrays element by element then shorter first, objects
 * member by member (name, then value) then fewer first.
 */
#ifndef KD_QUERY_JV_H
#define KD_QUERY_JV_H

#include <stddef.h>
#include <stdint.h>

#include "../json/dom.h" /* kd__jtype */
#include "../util/buf.h"

/* One value: p[0..len) is its canonical text. p == NULL means missing. */
typedef struct kd__jv {
    const char *p;
    size_t len;
} kd__jv;

#define KD__JV_MISSING ((kd__jv){NULL, 0})

/* Type from the first byte. Only for a value that is not missing. */
kd__jtype kd__jv_type(kd__jv v);

/* Bytes taken by the value starting at p (p < end), or 0 if it is not
 * well-formed canonical JSON within [p, end). */
size_t kd__jv_skip(const char *p, const char *end);

/* One step of a field path (filter.h builds these). */
typedef struct kd__pstep {
    char *name;      /* unescaped UTF-8 member name, NUL-terminated */
    size_t name_len;
    char *quoted;    /* the name as a canonical JSON string, with quotes */
    size_t quoted_len;
    int64_t index;   /* the name read as an array index (digits, no leading
                      * zero, fits int64), or -1: applies only to arrays */
} kd__pstep;

typedef struct kd__path {
    kd__pstep *steps;
    size_t n;
} kd__path;

/* Parse a dotted path ("a.b.1", "\"a.b\".c": a quoted step is a JSON
 * string, so any name can be written). KD_EINVALID with a message naming
 * the byte column on a bad path. */
int kd__path_parse(const char *text, size_t len, kd__path *out, char *err, size_t errlen);
/* The path as text that kd__path_parse reads back (quoting where needed). */
int kd__path_write(kd__buf *out, const kd__path *path);
void kd__path_free(kd__path *path);
int kd__path_copy(const kd__path *from, kd__path *to);

/* Value at `path` inside v: a member by name in an object, an element by
 * index in an array; missing when any step does not apply. */
kd__jv kd__jv_at(kd__jv v, const kd__path *path);

/* Number of elements of an array / members of an object. */
size_t kd__jv_count(kd__jv v);
/* Iterate an array's elements: start with *pos = 0; returns 1 and sets
 * *out for each element, then 0. */
int kd__jv_next_item(kd__jv arr, size_t *pos, kd__jv *out);
/* Iterate an object's members (name as a quoted JSON string slice). */
int kd__jv_next_member(kd__jv obj, size_t *pos, kd__jv *name, kd__jv *value);

/* Unescaped bytes of a string value (appended to out). */
int kd__jv_string(kd__jv s, kd__buf *out);

/* Total order above: <0, 0, >0. Missing values may be passed. Equal (0)
 * exactly when the canonical texts are equal. */
int kd__jv_cmp(kd__jv a, kd__jv b);

/* The same order, except that numbers compare by value only: 0 for 1 and
 * 1.0, or 0.0 and -0.0, also inside arrays and objects (so [1,2] > [1.0]
 * here, while kd__jv_cmp puts [1,2] first). A total preorder (exact, so
 * transitive). What filters use for =, !=, in, contains and the ranges. */
int kd__jv_cmp_value(kd__jv a, kd__jv b);

/* Two numbers by value (0 for 1 and 1.0): kd__jv_cmp_value for numbers,
 * without the dispatch on types. */
int kd__jv_num_cmp(kd__jv a, kd__jv b);

/* Strings a and b (values with quotes) by the bytes of their unescaped
 * UTF-8, without unescaping into a copy. */
int kd__jv_str_cmp(kd__jv a, kd__jv b);

/* Member of object obj whose name, as a canonical JSON string with
 * quotes, is quoted[0..qlen); missing if none or obj is not an object. */
kd__jv kd__jv_member(kd__jv obj, const char *quoted, size_t qlen);

/* Bytes taken by the value at p, trusting that it is canonical JSON (no
 * validation) but never reading at or past end; 0 when it runs off the
 * end. Much faster than kd__jv_skip; what the lookups above use. */
size_t kd__jv_skip_trusted(const char *p, const char *end);

/* 1 if the number v is an integer (no fraction, no exponent). */
int kd__jv_is_int(kd__jv v);

/* Parse a path at the start of text[start..len) and stop at the first
 * byte that cannot continue it (*end: its offset). Columns in messages
 * count from text[0]. What the filter language uses for its fields. */
int kd__path_parse_prefix(const char *text, size_t len, size_t start, size_t *end, kd__path *out,
                          char *err, size_t errlen);

/* 1 if byte c may appear in an unquoted path step: ASCII letters, digits,
 * '_', '-', '$', and any byte >= 0x80 (UTF-8, checked). */
int kd__path_bare_char(unsigned char c);

/* Number value as a double (for sum/avg over floats). */
double kd__jv_double(kd__jv v);
/* 1 and *out set when the number is an integer that fits int64. */
int kd__jv_int64(kd__jv v, int64_t *out);

#endif
