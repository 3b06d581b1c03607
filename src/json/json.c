/*
 * json.c — one-pass JSON validator and canonical writer (see json.h and
 * docs/JSON.md for the rules).
 *
 * The parser is iterative: an explicit stack of open containers, bounded by
 * KD_JSON_MAX_DEPTH, so no input can exhaust the C stack. It writes the
 * canonical form straight into the output buffer as it reads. Objects are
 * the only thing that needs a second look: each member is written as it
 * comes and its position remembered; when the object closes, if its names
 * were not already strictly ascending (the common case for machine-written
 * JSON), its members are sorted in place, and duplicates dropped
 * (last wins). Inner objects close first, so sorting works inside out.
 *
 * Strings are copied 16 bytes at a time while no byte needs attention
 * ('"', '\\', control characters, non-ASCII); non-ASCII is validated as
 * UTF-8 sequence by sequence.
 */
#include "json.h"

#include <emmintrin.h>
#include <stdarg.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "korudelta.h"

/* ------------------------------------------------------------------------
 * Per-thread scratch (member positions, sort space), freed at thread exit
 * ---------------------------------------------------------------------- */

typedef struct member {
    size_t key_off; /* offset in out of the key's opening quote */
    size_t key_end; /* offset just after the key's closing quote */
    int escaped;    /* the written name contains a backslash escape */
} member;

typedef struct scratch {
    member *mem;
    size_t mem_cap;
    uint32_t *idx, *tmp;
    size_t idx_cap;
    kd__buf copy;
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void scratch_free(void *arg)
{
    scratch *s = arg;
    free(s->mem);
    free(s->idx);
    free(s->tmp);
    kd__buf_free(&s->copy);
    free(s);
}

static void once_init(void)
{
    pthread_key_create(&scratch_key, scratch_free);
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static scratch *get_scratch(void)
{
    pthread_once(&scratch_once, once_init);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s)) {
            free(s);
            return NULL;
        }
    }
    return s;
}

/* Large documents leave large buffers; give them back. */
static void scratch_trim(scratch *s)
{
    if (s->mem_cap > 65536) {
        free(s->mem);
        s->mem = NULL;
        s->mem_cap = 0;
    }
    if (s->idx_cap > 65536) {
        free(s->idx);
        free(s->tmp);
        s->idx = s->tmp = NULL;
        s->idx_cap = 0;
    }
    if (s->copy.cap > (1u << 20))
        kd__buf_free(&s->copy);
}

/* ------------------------------------------------------------------------
 * UTF-8
 * ---------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence starting at p (lead byte >= 0x80), or 0
 * if invalid (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF)
        return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && p[1] > 0x9F)
            return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && p[1] > 0x8F)
            return 0; /* beyond U+10FFFF */
        return 4;
    }
    return 0;
}

int kd__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t n = utf8_seq(p, end);
        if (!n)
            return 0;
        p += n;
    }
    return 1;
}

/* ------------------------------------------------------------------------
 * Output helpers
 * ---------------------------------------------------------------------- */

#define ENSURE(out, n)                                                  \
    do {                                                                \
        if ((out)->len + (n) + 1 > (out)->cap && kd__buf_reserve((out), (n))) \
            goto nomem;                                                 \
    } while (0)

static const char hexdig[] = "0123456789abcdef";

/* Canonical escape of byte c (< 0x20, '"' or '\\') into o; returns length. */
static size_t escape_byte(unsigned char c, char *o)
{
    o[0] = '\\';
    switch (c) {
    case '"': o[1] = '"'; return 2;
    case '\\': o[1] = '\\'; return 2;
    case '\b': o[1] = 'b'; return 2;
    case '\f': o[1] = 'f'; return 2;
    case '\n': o[1] = 'n'; return 2;
    case '\r': o[1] = 'r'; return 2;
    case '\t': o[1] = 't'; return 2;
    default:
        o[1] = 'u';
        o[2] = '0';
        o[3] = '0';
        o[4] = hexdig[c >> 4];
        o[5] = hexdig[c & 15];
        return 6;
    }
}

int kd__json_write_string(kd__buf *out, const char *s, size_t len)
{
    if (!kd__utf8_valid(s, len))
        return KD_EINVALID;
    if (kd__buf_reserve(out, len + 2))
        return KD_ENOMEM;
    out->data[out->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\') {
            if (kd__buf_reserve(out, 6 + (len - i)))
                return KD_ENOMEM;
            out->len += escape_byte(c, out->data + out->len);
        } else {
            out->data[out->len++] = (char)c;
        }
    }
    out->data[out->len++] = '"';
    out->data[out->len] = '\0';
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Comparing canonical member names by their unescaped bytes
 * ---------------------------------------------------------------------- */

static int unhex(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

/* Next unescaped byte of a canonical string body; *i advances. */
static unsigned char next_byte(const char *s, size_t *i)
{
    unsigned char c = (unsigned char)s[*i];
    if (c != '\\') {
        (*i)++;
        return c;
    }
    char e = s[*i + 1];
    *i += 2;
    switch (e) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u': {
        unsigned char v = (unsigned char)(unhex(s[*i + 2]) << 4 | unhex(s[*i + 3]));
        *i += 4;
        return v;
    }
    default: return (unsigned char)e; /* '"' or '\\' */
    }
}

/* Byte-wise order of two plain byte strings, shorter prefix first. */
static inline int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
    return (alen > blen) - (alen < blen);
}

/* a, b: canonical string bodies (without quotes); `escaped` says whether
 * either may contain a backslash escape, which must be compared decoded. */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen, int escaped)
{
    if (!escaped)
        return bytes_cmp(a, alen, b, blen);
    size_t i = 0, j = 0;
    while (i < alen && j < blen) {
        unsigned char x = next_byte(a, &i), y = next_byte(b, &j);
        if (x != y)
            return x < y ? -1 : 1;
    }
    return (i < alen) - (j < blen);
}

static int member_cmp(const char *base, const member *a, const member *b)
{
    return name_cmp(base + a->key_off + 1, a->key_end - a->key_off - 2, base + b->key_off + 1,
                    b->key_end - b->key_off - 2, a->escaped | b->escaped);
}

/* Stable merge sort of member indices by name. */
static void sort_members(const char *base, const member *m, uint32_t *idx, uint32_t *tmp, size_t n)
{
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = member_cmp(base, &m[idx[j]], &m[idx[i]]) < 0 ? idx[j++] : idx[i++];
            while (i < mid)
                tmp[k++] = idx[i++];
            while (j < hi)
                tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

/* Rewrite the object whose '{' is at out[obj_start] with members m[0..n)
 * (in input order) sorted by name, later duplicates replacing earlier ones.
 * out->len is the end of the last member (before '}'). */
static int rebuild_object(kd__buf *out, scratch *s, size_t obj_start, const member *m, size_t n)
{
    if (n > s->idx_cap) {
        size_t cap = n < 64 ? 64 : n;
        uint32_t *a = realloc(s->idx, cap * sizeof *a);
        if (!a)
            return KD_ENOMEM;
        s->idx = a;
        uint32_t *b = realloc(s->tmp, cap * sizeof *b);
        if (!b)
            return KD_ENOMEM;
        s->tmp = b;
        s->idx_cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        s->idx[i] = (uint32_t)i;
    sort_members(out->data, m, s->idx, s->tmp, n);

    /* Copy the members' text aside, then write them back in order. */
    size_t region = obj_start + 1, end = out->len;
    kd__buf_reset(&s->copy);
    if (kd__buf_append(&s->copy, out->data + region, end - region))
        return KD_ENOMEM;
    out->len = region;
    int first = 1;
    for (size_t k = 0; k < n; k++) {
        uint32_t i = s->idx[k];
        /* Equal names are adjacent and in input order: keep the last. */
        if (k + 1 < n) {
            uint32_t j = s->idx[k + 1];
            size_t ai = m[i].key_off - region, aj = m[j].key_off - region;
            if (!name_cmp(s->copy.data + ai + 1, m[i].key_end - m[i].key_off - 2, s->copy.data + aj + 1,
                          m[j].key_end - m[j].key_off - 2, m[i].escaped | m[j].escaped))
                continue;
        }
        size_t from = m[i].key_off - region;
        size_t to = (i + 1 < n ? m[i + 1].key_off - 1 : end) - region; /* without the comma */
        if (!first)
            out->data[out->len++] = ',';
        memcpy(out->data + out->len, s->copy.data + from, to - from);
        out->len += to - from;
        first = 0;
    }
    return KD_OK;
}

/* Write "invalid JSON at byte N: <what>" into err (if there is room). */
static void set_error(char *err, size_t errlen, size_t at, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void set_error(char *err, size_t errlen, size_t at, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "invalid JSON at byte %zu: %s", at, what);
}

/* ------------------------------------------------------------------------
 * Numbers
 * ---------------------------------------------------------------------- */

/* Does d[0].d[1..n-1] x 10^e read back as v? */
static int reads_back(const char *d, int n, int e, double v)
{
    char buf[48];
    int k = 0;
    buf[k++] = d[0];
    buf[k++] = '.';
    for (int i = 1; i < n; i++)
        buf[k++] = d[i];
    snprintf(buf + k, sizeof buf - (size_t)k, "e%d", e);
    return strtod_l(buf, NULL, c_locale) == v;
}

/* The n-digit decimal next to d x 10^*e, one unit in its last place up
 * (dir > 0) or down, carrying or borrowing into the exponent. */
static void step_digits(char *d, int n, int *e, int dir)
{
    int i = n - 1;
    if (dir > 0) {
        while (i >= 0 && d[i] == '9')
            d[i--] = '0';
        if (i >= 0) {
            d[i]++;
        } else { /* 99..9 + 1 = 100..0, one place up */
            d[0] = '1';
            (*e)++;
        }
    } else {
        while (i >= 0 && d[i] == '0')
            d[i--] = '9';
        if (i < 0) /* cannot be: d[0] is not '0' */
            return;
        d[i]--;
        if (d[0] == '0') { /* 100..0 - 1 = 99..9, one place down */
            for (int j = 0; j < n; j++)
                d[j] = '9';
            (*e)--;
        }
    }
}

/* Shortest decimal digits that round-trip `v` (> 0, finite): digits into
 * d (no dot, no trailing zeros), returns their count; *exp10 such that
 * v = d[0].d[1..] x 10^exp10. Of the decimals with that many digits that
 * read back as v, the one closest to v (ECMAScript's rule): printf's
 * correctly rounded one, else its neighbour on v's other side, which
 * reads back where the gap below v is half the one above (v a power of
 * two: 2^-24 is 5.960464477539063e-8, not the 17 digits of printf). */
static int shortest_digits(double v, char *d, int *exp10)
{
    char buf[40];
    int n = 0, e = 0;
    for (int prec = 0; prec < 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec, v); /* "D[.DDD]e[+-]XX" */
        n = 0;
        const char *p = buf;
        for (; *p && *p != 'e'; p++)
            if (*p >= '0' && *p <= '9')
                d[n++] = *p;
        e = atoi(p + 1);
        double near = strtod_l(buf, NULL, c_locale);
        if (near == v)
            break;
        step_digits(d, n, &e, near < v ? 1 : -1);
        if (reads_back(d, n, e, v))
            break;
    }
    *exp10 = e;
    while (n > 1 && d[n - 1] == '0')
        n--;
    return n;
}

/* Significant digits of a (valid) number token, without leading or
 * trailing zeros, into d (at most 16 are kept; returns 16 or more when
 * there are more, 0 for zero), and *exp10 so the value is
 * d[0].d[1..] x 10^exp10. */
static int token_digits(const char *tok, size_t len, char *d, int *exp10)
{
    size_t i = 0, nd = 0;
    long point = -1, first = -1, pos = 0; /* positions in the digit string */
    if (i < len && tok[i] == '-')
        i++;
    for (; i < len && tok[i] != 'e' && tok[i] != 'E'; i++) {
        if (tok[i] == '.') {
            point = pos;
            continue;
        }
        if (first < 0 && tok[i] != '0')
            first = pos;
        if (first >= 0 && nd < 17)
            d[nd++] = tok[i];
        else if (first >= 0)
            nd = 17; /* too many: the caller takes the slow path */
        pos++;
    }
    if (first < 0)
        return 0;
    if (point < 0)
        point = pos;
    long ex = 0;
    if (i < len) {
        i++;
        int neg = tok[i] == '-';
        if (tok[i] == '+' || tok[i] == '-')
            i++;
        for (; i < len; i++)
            if (ex < 100000)
                ex = ex * 10 + (tok[i] - '0');
        if (neg)
            ex = -ex;
    }
    while (nd > 1 && nd <= 16 && d[nd - 1] == '0')
        nd--;
    *exp10 = (int)(point - 1 - first + ex);
    return (int)nd;
}

/* Append the canonical text of a non-integer number token. */
static int write_double(kd__buf *out, const char *tok, size_t len, char *err, size_t errlen, size_t at)
{
    char small[64], *text = small;
    if (len >= sizeof small) {
        text = malloc(len + 1);
        if (!text)
            return KD_ENOMEM;
    }
    memcpy(text, tok, len);
    text[len] = '\0';
    double v = strtod_l(text, NULL, c_locale);
    if (text != small)
        free(text);
    if (isinf(v)) {
        set_error(err, errlen, at, "number out of range");
        return KD_EINVALID;
    }
    char o[64];
    size_t n = 0;
    if (signbit(v)) {
        o[n++] = '-';
        v = -v;
    }
    if (v == 0) {
        memcpy(o + n, "0.0", 3);
        n += 3;
    } else {
        char d[24];
        int e;
        int nd = token_digits(tok, len, d, &e);
        /* Up to 15 significant digits name exactly one double, so they are
         * its shortest form (subnormals have less precision: not there). */
        if (nd == 0 || nd > 15 || v < 1e-300)
            nd = shortest_digits(v, d, &e);
        if (v < 1e21 && e >= nd - 1) {
            /* integral: all digits, zeros, ".0" */
            memcpy(o + n, d, (size_t)nd);
            n += (size_t)nd;
            for (int z = 0; z < e - (nd - 1); z++)
                o[n++] = '0';
            memcpy(o + n, ".0", 2);
            n += 2;
        } else if (v >= 1e-6 && v < 1e21) {
            if (e >= 0) {
                memcpy(o + n, d, (size_t)e + 1);
                n += (size_t)e + 1;
                o[n++] = '.';
                memcpy(o + n, d + e + 1, (size_t)(nd - e - 1));
                n += (size_t)(nd - e - 1);
            } else {
                o[n++] = '0';
                o[n++] = '.';
                for (int z = 0; z < -e - 1; z++)
                    o[n++] = '0';
                memcpy(o + n, d, (size_t)nd);
                n += (size_t)nd;
            }
        } else {
            o[n++] = d[0];
            if (nd > 1) {
                o[n++] = '.';
                memcpy(o + n, d + 1, (size_t)nd - 1);
                n += (size_t)nd - 1;
            }
            n += (size_t)snprintf(o + n, sizeof o - n, "e%c%d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        }
    }
    return kd__buf_append(out, o, n);
}

/* ------------------------------------------------------------------------
 * The parser
 * ---------------------------------------------------------------------- */

typedef struct frame {
    size_t out_start; /* offset of '{' or '[' in out */
    size_t mem_base;  /* first member of this object in scratch->mem */
    char type;        /* '{' or '[' */
    char sorted;      /* object names strictly ascending so far */
} frame;

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

#define FAIL(...)                                                       \
    do {                                                                \
        set_error(err, errlen, (size_t)(p - start), __VA_ARGS__);       \
        goto fail;                                                      \
    } while (0)

/* First non-whitespace byte at or after p (pretty-printed input has long
 * runs of indentation, so 16 bytes are checked at a time). */
static inline const char *skip_ws(const char *p, const char *end)
{
    if (p < end && !is_ws((unsigned char)*p))
        return p;
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        __m128i ws = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(' ')),
                                               _mm_cmpeq_epi8(x, _mm_set1_epi8('\n'))),
                                  _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('\r')),
                                               _mm_cmpeq_epi8(x, _mm_set1_epi8('\t'))));
        unsigned mask = (unsigned)_mm_movemask_epi8(ws) ^ 0xFFFFu;
        if (mask)
            return p + __builtin_ctz(mask);
        p += 16;
    }
    while (p < end && is_ws((unsigned char)*p))
        p++;
    return p;
}

#define SKIP_WS() (p = skip_ws(p, end))

/* How many leading bytes of p match the literal (to point at the first
 * wrong byte in an error). */
static size_t literal_match(const char *p, const char *end, const char *lit)
{
    size_t n = 0;
    while (lit[n] && p + n < end && p[n] == lit[n])
        n++;
    return n;
}

/* Describe the byte at p for error messages. */
static const char *found(const char *p, const char *end, char *buf, size_t n)
{
    if (p >= end)
        return "end of input";
    unsigned char c = (unsigned char)*p;
    if (c >= 0x21 && c < 0x7f)
        snprintf(buf, n, "'%c'", c);
    else
        snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

int kd__json_canonicalize(const char *in, size_t len, kd__buf *out, char *err, size_t errlen)
{
    const size_t out_start = out->len;
    const char *start = in, *p = in, *end = in + len;
    char fb[16];
    frame stack[KD_JSON_MAX_DEPTH + 1];
    int depth = 0;
    scratch *s = get_scratch();
    if (!s)
        return KD_ENOMEM;
    size_t nmem = 0;
    int in_key = 0; /* the string being read is a member name */
    if (!err)
        errlen = 0;
    if (errlen)
        err[0] = '\0';

    if (len >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
        p += 3; /* a UTF-8 byte order mark at the very start is ignored */
    ENSURE(out, len + 16);
    SKIP_WS();

value:
    if (p >= end)
        FAIL("expected a value, found end of input");
    switch (*p) {
    case '{':
        if (depth == KD_JSON_MAX_DEPTH)
            FAIL("nesting deeper than %d", KD_JSON_MAX_DEPTH);
        stack[depth].out_start = out->len;
        stack[depth].mem_base = nmem;
        stack[depth].type = '{';
        stack[depth].sorted = 1;
        depth++;
        ENSURE(out, 1);
        out->data[out->len++] = '{';
        p++;
        SKIP_WS();
        if (p < end && *p == '}') {
            p++;
            depth--;
            ENSURE(out, 1);
            out->data[out->len++] = '}';
            goto after_value;
        }
        goto member;
    case '[':
        if (depth == KD_JSON_MAX_DEPTH)
            FAIL("nesting deeper than %d", KD_JSON_MAX_DEPTH);
        stack[depth].out_start = out->len;
        stack[depth].type = '[';
        depth++;
        ENSURE(out, 1);
        out->data[out->len++] = '[';
        p++;
        SKIP_WS();
        if (p < end && *p == ']') {
            p++;
            depth--;
            ENSURE(out, 1);
            out->data[out->len++] = ']';
            goto after_value;
        }
        goto value;
    case '"':
        goto string;
    case 't':
        if (end - p >= 4 && !memcmp(p, "true", 4)) {
            ENSURE(out, 4);
            memcpy(out->data + out->len, "true", 4);
            out->len += 4;
            p += 4;
            goto after_value;
        }
        p += literal_match(p, end, "true");
        FAIL("invalid literal (expected true), found %s", found(p, end, fb, sizeof fb));
    case 'f':
        if (end - p >= 5 && !memcmp(p, "false", 5)) {
            ENSURE(out, 5);
            memcpy(out->data + out->len, "false", 5);
            out->len += 5;
            p += 5;
            goto after_value;
        }
        p += literal_match(p, end, "false");
        FAIL("invalid literal (expected false), found %s", found(p, end, fb, sizeof fb));
    case 'n':
        if (end - p >= 4 && !memcmp(p, "null", 4)) {
            ENSURE(out, 4);
            memcpy(out->data + out->len, "null", 4);
            out->len += 4;
            p += 4;
            goto after_value;
        }
        p += literal_match(p, end, "null");
        FAIL("invalid literal (expected null), found %s", found(p, end, fb, sizeof fb));
    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        goto number;
    default:
        FAIL("expected a value, found %s", found(p, end, fb, sizeof fb));
    }

member:
    /* At a member name inside an object (whitespace skipped). */
    if (p >= end || *p != '"')
        FAIL("expected a member name in double quotes, found %s", found(p, end, fb, sizeof fb));
    {
        if (nmem == s->mem_cap) {
            size_t cap = s->mem_cap ? s->mem_cap * 2 : 64;
            member *m = realloc(s->mem, cap * sizeof *m);
            if (!m)
                goto nomem;
            s->mem = m;
            s->mem_cap = cap;
        }
        s->mem[nmem].key_off = out->len;
    }
    in_key = 1;
    goto string;

after_key:
    /* The name was written; record it, check order, expect ':'. */
    {
        frame *f = &stack[depth - 1];
        member *m = &s->mem[nmem];
        m->key_end = out->len;
        m->escaped = memchr(out->data + m->key_off + 1, '\\', m->key_end - m->key_off - 2) != NULL;
        if (f->sorted && nmem > f->mem_base && member_cmp(out->data, &s->mem[nmem - 1], m) >= 0)
            f->sorted = 0;
        nmem++;
        SKIP_WS();
        if (p >= end || *p != ':')
            FAIL("expected ':' after a member name, found %s", found(p, end, fb, sizeof fb));
        p++;
        ENSURE(out, 1);
        out->data[out->len++] = ':';
        SKIP_WS();
        goto value;
    }

after_value:
    if (depth == 0)
        goto done;
    SKIP_WS();
    if (p >= end)
        FAIL("expected ',' or '%c', found end of input", stack[depth - 1].type == '{' ? '}' : ']');
    if (stack[depth - 1].type == '[') {
        if (*p == ',') {
            p++;
            ENSURE(out, 1);
            out->data[out->len++] = ',';
            SKIP_WS();
            goto value;
        }
        if (*p == ']') {
            p++;
            depth--;
            ENSURE(out, 1);
            out->data[out->len++] = ']';
            goto after_value;
        }
        FAIL("expected ',' or ']', found %s", found(p, end, fb, sizeof fb));
    }
    if (*p == ',') {
        p++;
        ENSURE(out, 1);
        out->data[out->len++] = ',';
        SKIP_WS();
        goto member;
    }
    if (*p == '}') {
        frame *f = &stack[depth - 1];
        p++;
        if (!f->sorted) {
            int rc = rebuild_object(out, s, f->out_start, s->mem + f->mem_base, nmem - f->mem_base);
            if (rc)
                goto nomem;
        }
        nmem = f->mem_base;
        depth--;
        ENSURE(out, 1);
        out->data[out->len++] = '}';
        goto after_value;
    }
    FAIL("expected ',' or '}', found %s", found(p, end, fb, sizeof fb));

string:
    /* p at the opening quote; writes the canonical string. */
    {
        const char *str_start = p;
        p++;
        ENSURE(out, 1);
        out->data[out->len++] = '"';
        for (;;) {
            /* Fast path: 16 plain ASCII bytes at a time. */
            while (end - p >= 16) {
                __m128i x = _mm_loadu_si128((const __m128i *)p);
                __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                                                        _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
                                           _mm_cmplt_epi8(x, _mm_set1_epi8(0x20))); /* signed: also >= 0x80 */
                int mask = _mm_movemask_epi8(bad);
                ENSURE(out, 16);
                _mm_storeu_si128((__m128i *)(out->data + out->len), x);
                if (mask == 0) {
                    out->len += 16;
                    p += 16;
                    continue;
                }
                int k = __builtin_ctz((unsigned)mask);
                out->len += (size_t)k;
                p += k;
                break;
            }
            if (p >= end)
                FAIL("unterminated string (opened at byte %zu)", (size_t)(str_start - start));
            unsigned char c = (unsigned char)*p;
            if (c == '"') {
                p++;
                ENSURE(out, 1);
                out->data[out->len++] = '"';
                break;
            }
            if (c >= 0x20 && c < 0x80 && c != '\\') {
                ENSURE(out, 1);
                out->data[out->len++] = (char)c;
                p++;
                continue;
            }
            if (c < 0x20)
                FAIL("control character 0x%02x in a string must be escaped", c);
            if (c >= 0x80) {
                /* Validate a whole run of non-ASCII text, then copy it. */
                const char *run = p;
                while (p < end && (unsigned char)*p >= 0x80) {
                    size_t n = utf8_seq((const unsigned char *)p, (const unsigned char *)end);
                    if (!n)
                        FAIL("invalid UTF-8 in a string");
                    p += n;
                }
                ENSURE(out, (size_t)(p - run));
                memcpy(out->data + out->len, run, (size_t)(p - run));
                out->len += (size_t)(p - run);
                continue;
            }
            /* backslash escape */
            if (end - p < 2)
                FAIL("unterminated escape in a string");
            char e = p[1];
            unsigned cp;
            switch (e) {
            case '"': cp = '"'; p += 2; break;
            case '\\': cp = '\\'; p += 2; break;
            case '/': cp = '/'; p += 2; break;
            case 'b': cp = '\b'; p += 2; break;
            case 'f': cp = '\f'; p += 2; break;
            case 'n': cp = '\n'; p += 2; break;
            case 'r': cp = '\r'; p += 2; break;
            case 't': cp = '\t'; p += 2; break;
            case 'u': {
                cp = 0;
                if (end - p < 6)
                    FAIL("incomplete \\u escape");
                for (int i = 2; i < 6; i++) {
                    char h = p[i];
                    int v = h >= '0' && h <= '9' ? h - '0'
                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                   : -1;
                    if (v < 0)
                        FAIL("invalid hex digit in \\u escape");
                    cp = cp << 4 | (unsigned)v;
                }
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    FAIL("lone low surrogate \\u%04x", cp);
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo = 0;
                    int ok = end - p >= 12 && p[6] == '\\' && p[7] == 'u';
                    for (int i = 8; ok && i < 12; i++) {
                        char h = p[i];
                        int v = h >= '0' && h <= '9' ? h - '0'
                                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                       : -1;
                        if (v < 0)
                            ok = 0;
                        lo = lo << 4 | (unsigned)(v < 0 ? 0 : v);
                    }
                    if (!ok || lo < 0xDC00 || lo > 0xDFFF)
                        FAIL("high surrogate \\u%04x not followed by a low surrogate", cp);
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 12;
                } else {
                    p += 6;
                }
                break;
            }
            default:
                FAIL("invalid escape '\\%c'", (e >= 0x21 && e < 0x7f) ? e : '?');
            }
            ENSURE(out, 6);
            char *o = out->data + out->len;
            if (cp < 0x20 || cp == '"' || cp == '\\') {
                out->len += escape_byte((unsigned char)cp, o);
            } else if (cp < 0x80) {
                o[0] = (char)cp;
                out->len += 1;
            } else if (cp < 0x800) {
                o[0] = (char)(0xC0 | cp >> 6);
                o[1] = (char)(0x80 | (cp & 0x3F));
                out->len += 2;
            } else if (cp < 0x10000) {
                o[0] = (char)(0xE0 | cp >> 12);
                o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                o[2] = (char)(0x80 | (cp & 0x3F));
                out->len += 3;
            } else {
                o[0] = (char)(0xF0 | cp >> 18);
                o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                o[3] = (char)(0x80 | (cp & 0x3F));
                out->len += 4;
            }
        }
        if (in_key) {
            in_key = 0;
            goto after_key;
        }
        goto after_value;
    }

number:
    {
        const char *tok = p;
        int is_int = 1;
        if (*p == '-')
            p++;
        if (p >= end || *p < '0' || *p > '9')
            FAIL("expected a digit after '-'");
        if (*p == '0') {
            p++;
            if (p < end && *p >= '0' && *p <= '9')
                FAIL("leading zeros are not allowed");
        } else {
            while (p < end && *p >= '0' && *p <= '9')
                p++;
        }
        if (p < end && *p == '.') {
            is_int = 0;
            p++;
            if (p >= end || *p < '0' || *p > '9')
                FAIL("expected a digit after '.'");
            while (p < end && *p >= '0' && *p <= '9')
                p++;
        }
        if (p < end && (*p == 'e' || *p == 'E')) {
            is_int = 0;
            p++;
            if (p < end && (*p == '+' || *p == '-'))
                p++;
            if (p >= end || *p < '0' || *p > '9')
                FAIL("expected a digit in the exponent");
            while (p < end && *p >= '0' && *p <= '9')
                p++;
        }
        size_t n = (size_t)(p - tok);
        if (is_int) {
            if (n == 2 && tok[0] == '-' && tok[1] == '0') {
                tok++; /* -0 is 0 */
                n = 1;
            }
            ENSURE(out, n);
            memcpy(out->data + out->len, tok, n);
            out->len += n;
        } else {
            int rc = write_double(out, tok, n, err, errlen, (size_t)(tok - start));
            if (rc == KD_EINVALID)
                goto fail;
            if (rc)
                goto nomem;
        }
        goto after_value;
    }

done:
    SKIP_WS();
    if (p < end)
        FAIL("unexpected %s after the value", found(p, end, fb, sizeof fb));
    out->data[out->len] = '\0';
    scratch_trim(s);
    return KD_OK;

nomem:
    out->len = out_start;
    if (out->data)
        out->data[out->len] = '\0';
    scratch_trim(s);
    if (errlen)
        snprintf(err, errlen, "out of memory");
    return KD_ENOMEM;

fail:
    out->len = out_start;
    if (out->data)
        out->data[out->len] = '\0';
    scratch_trim(s);
    return KD_EINVALID;
}
