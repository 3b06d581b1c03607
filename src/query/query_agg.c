/*
 * query_agg.c — aggregations and group by over a stream of matching values.
 *
 * kd_query_run feeds every match (never just a page) to kd__agg_feed while
 * it scans, so an aggregation keeps nothing per document: per group one
 * accumulator per operation. Groups live in a hash table keyed by the
 * canonical text of the group values (missing and null kept apart); at the
 * end they are ordered by those values in the total order of jv.h.
 *
 * Sums are exact for integers: int64 values go into an __int128, anything
 * bigger (or an __int128 overflow) into a small signed decimal big integer;
 * a single non-integer makes the sum a double (compensated summation).
 * A sum or mean that leaves the doubles on the way but ends inside them
 * is still found: see acc_ratio. docs/QUERY.md "Aggregations" states the
 * rules.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../json/json.h"
#include "../store/index.h" /* kd__hash_bytes */
#include "query.h"

#define HASH_SEED 0x71756572ULL

/* ------------------------------------------------------------------------
 * Big integers: sign and decimal digits, least significant first.
 * ---------------------------------------------------------------------- */

typedef struct big {
    uint8_t *d;
    size_t n, cap; /* n == 0: zero */
    int neg;
} big;

static int big_reserve(big *b, size_t n)
{
    if (n <= b->cap)
        return KD_OK;
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < n)
        cap *= 2;
    uint8_t *d = realloc(b->d, cap);
    if (!d)
        return KD_ENOMEM;
    b->d = d;
    b->cap = cap;
    return KD_OK;
}

/* Digit i (least significant first) of the decimal text s[0..n). */
static inline int digit_at(const char *s, size_t n, size_t i)
{
    return i < n ? s[n - 1 - i] - '0' : 0;
}

/* Compare |b| with the magnitude written in digits s[0..n) (no leading zeros). */
static int big_cmp_mag(const big *b, const char *s, size_t n)
{
    if (b->n != n)
        return b->n < n ? -1 : 1;
    for (size_t i = n; i-- > 0;) {
        int x = b->d[i], y = digit_at(s, n, i);
        if (x != y)
            return x < y ? -1 : 1;
    }
    return 0;
}

/* b += (neg ? -1 : 1) * s, where s[0..n) are decimal digits. */
static int big_add(big *b, int neg, const char *s, size_t n)
{
    while (n > 1 && s[0] == '0')
        s++, n--;
    if (n == 1 && s[0] == '0')
        return KD_OK;
    if (big_reserve(b, (n > b->n ? n : b->n) + 1))
        return KD_ENOMEM;
    if (b->n == 0 || b->neg == neg) {
        size_t m = n > b->n ? n : b->n;
        int carry = 0;
        for (size_t i = 0; i < m; i++) {
            int x = (i < b->n ? b->d[i] : 0) + digit_at(s, n, i) + carry;
            b->d[i] = (uint8_t)(x % 10);
            carry = x / 10;
        }
        b->n = m;
        if (carry)
            b->d[b->n++] = (uint8_t)carry;
        b->neg = neg;
        return KD_OK;
    }
    int c = big_cmp_mag(b, s, n);
    if (c == 0) {
        b->n = 0;
        b->neg = 0;
        return KD_OK;
    }
    int borrow = 0;
    if (c > 0) { /* |b| - s, sign of b */
        for (size_t i = 0; i < b->n; i++) {
            int x = b->d[i] - digit_at(s, n, i) - borrow;
            borrow = x < 0;
            b->d[i] = (uint8_t)(x + (borrow ? 10 : 0));
        }
    } else { /* s - |b|, sign of s */
        for (size_t i = 0; i < n; i++) {
            int x = digit_at(s, n, i) - (i < b->n ? b->d[i] : 0) - borrow;
            borrow = x < 0;
            b->d[i] = (uint8_t)(x + (borrow ? 10 : 0));
        }
        b->n = n;
        b->neg = neg;
    }
    while (b->n && b->d[b->n - 1] == 0)
        b->n--;
    return KD_OK;
}

/* Decimal text of an __int128 into buf (>= 42 bytes); returns the text. */
static char *i128_text(__int128 v, char *buf, size_t size)
{
    unsigned __int128 m = v < 0 ? (unsigned __int128)0 - (unsigned __int128)v : (unsigned __int128)v;
    char *p = buf + size;
    *--p = '\0';
    do {
        *--p = (char)('0' + (int)(m % 10));
        m /= 10;
    } while (m);
    if (v < 0)
        *--p = '-';
    return p;
}

static int big_add_i128(big *b, __int128 v)
{
    char buf[48];
    char *t = i128_text(v, buf, sizeof buf);
    return t[0] == '-' ? big_add(b, 1, t + 1, strlen(t + 1)) : big_add(b, 0, t, strlen(t));
}

static int big_write(kd__buf *out, const big *b)
{
    if (b->n == 0)
        return kd__buf_putc(out, '0');
    if (kd__buf_reserve(out, b->n + 1))
        return KD_ENOMEM;
    if (b->neg)
        out->data[out->len++] = '-';
    for (size_t i = b->n; i-- > 0;)
        out->data[out->len++] = (char)('0' + b->d[i]);
    out->data[out->len] = '\0';
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Sets of distinct values (canonical texts; equal texts = equal values)
 * ---------------------------------------------------------------------- */

typedef struct dent {
    size_t off;
    size_t len;
    uint64_t hash;
} dent;

typedef struct dset {
    kd__buf text;
    dent *e;
    size_t n, cap;
    uint32_t *slots; /* index + 1; 0 = empty */
    size_t nslots;   /* power of two */
} dset;

static int dset_grow(dset *s)
{
    size_t ns = s->nslots ? s->nslots * 2 : 16;
    uint32_t *sl = calloc(ns, sizeof *sl);
    if (!sl)
        return KD_ENOMEM;
    for (size_t i = 0; i < s->n; i++) {
        size_t j = (size_t)s->e[i].hash & (ns - 1);
        while (sl[j])
            j = (j + 1) & (ns - 1);
        sl[j] = (uint32_t)(i + 1);
    }
    free(s->slots);
    s->slots = sl;
    s->nslots = ns;
    return KD_OK;
}

static int dset_add(dset *s, kd__jv v)
{
    if (s->n >= UINT32_MAX - 1)
        return KD_ENOMEM;
    if ((s->n + 1) * 2 > s->nslots && dset_grow(s))
        return KD_ENOMEM;
    uint64_t h = kd__hash_bytes(v.p, v.len, HASH_SEED);
    size_t j = (size_t)h & (s->nslots - 1);
    while (s->slots[j]) {
        const dent *e = &s->e[s->slots[j] - 1];
        if (e->hash == h && e->len == v.len && !memcmp(s->text.data + e->off, v.p, v.len))
            return KD_OK;
        j = (j + 1) & (s->nslots - 1);
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        dent *e = realloc(s->e, cap * sizeof *e);
        if (!e)
            return KD_ENOMEM;
        s->e = e;
        s->cap = cap;
    }
    dent *e = &s->e[s->n];
    e->off = s->text.len;
    e->len = v.len;
    e->hash = h;
    if (kd__buf_append(&s->text, v.p, v.len))
        return KD_ENOMEM;
    s->slots[j] = (uint32_t)(++s->n);
    return KD_OK;
}

static int cmp_dent(const void *a, const void *b, void *ctx)
{
    const char *t = ctx;
    const dent *x = a, *y = b;
    return kd__jv_cmp((kd__jv){t + x->off, x->len}, (kd__jv){t + y->off, y->len});
}

static int dset_write(kd__buf *out, dset *s)
{
    if (s->n > 1)
        qsort_r(s->e, s->n, sizeof *s->e, cmp_dent, s->text.data);
    if (kd__buf_putc(out, '['))
        return KD_ENOMEM;
    for (size_t i = 0; i < s->n; i++) {
        if (i && kd__buf_putc(out, ','))
            return KD_ENOMEM;
        if (kd__buf_append(out, s->text.data + s->e[i].off, s->e[i].len))
            return KD_ENOMEM;
    }
    return kd__buf_putc(out, ']');
}

static void dset_free(dset *s)
{
    kd__buf_free(&s->text);
    free(s->e);
    free(s->slots);
}

/* ------------------------------------------------------------------------
 * Accumulators
 * ---------------------------------------------------------------------- */

typedef struct acc {
    /* sum, avg */
    __int128 isum;
    big *big;          /* integers beyond __int128 (NULL until needed) */
    double fsum, fcomp; /* non-integers, Neumaier-compensated */
    int fscaled;        /* fsum and fcomp are scaled by 2^-FSCALE */
    uint64_t nnum;
    int has_float;
    /* min, max */
    int has_best;
    kd__buf best;
    /* distinct, count_distinct */
    dset *set;
} acc;

static void acc_free(acc *c)
{
    if (c->big)
        free(c->big->d);
    free(c->big);
    kd__buf_free(&c->best);
    if (c->set)
        dset_free(c->set);
    free(c->set);
}

/* A non-integer canonical number as a double, without strtod when it is
 * short: at most 15 significant digits and a power of ten up to 22 are
 * both exact doubles, so one multiplication or division rounds correctly
 * (Clinger's fast path). Longer ones go to kd__jv_double. */
static double number_double(kd__jv v)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *p = v.p, *end = v.p + v.len;
    int neg = p < end && *p == '-';
    p += neg;
    uint64_t m = 0;
    int digits = 0, frac = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        if (digits || *p != '0')
            m = m * 10 + (uint64_t)(*p - '0'), digits++;
    if (p < end && *p == '.')
        for (p++; p < end && *p >= '0' && *p <= '9'; p++, frac++)
            if (digits || *p != '0')
                m = m * 10 + (uint64_t)(*p - '0'), digits++;
    long ex = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = p < end && *p == '-';
        if (p < end && (*p == '-' || *p == '+'))
            p++;
        for (; p < end && *p >= '0' && *p <= '9' && ex < 10000; p++)
            ex = ex * 10 + (*p - '0');
        if (eneg)
            ex = -ex;
    }
    ex -= frac;
    if (p != end || digits > 15 || ex < -22 || ex > 22)
        return kd__jv_double(v);
    double d = ex < 0 ? (double)m / pow10[-ex] : (double)m * pow10[ex];
    return neg ? -d : d;
}

/* Once the running sum of non-integers overflows, it goes on scaled by
 * 2^-FSCALE (exact, bar addends already near the bottom of the
 * subnormals): fewer than 2^64 finite doubles cannot overflow then. */
#define FSCALE 64

static void fsum_add(acc *c, double d)
{
    if (c->fscaled)
        d = ldexp(d, -FSCALE);
    double t = c->fsum + d;
    if (isinf(t) && !c->fscaled) {
        c->fsum = ldexp(c->fsum, -FSCALE);
        c->fcomp = ldexp(c->fcomp, -FSCALE);
        c->fscaled = 1;
        d = ldexp(d, -FSCALE);
        t = c->fsum + d;
    }
    if (fabs(c->fsum) >= fabs(d))
        c->fcomp += (c->fsum - t) + d;
    else
        c->fcomp += (d - t) + c->fsum;
    c->fsum = t;
}

static int acc_sum(acc *c, kd__jv v)
{
    if (!v.p || kd__jv_type(v) != KD__J_NUMBER)
        return KD_OK;
    c->nnum++;
    if (!kd__jv_is_int(v)) {
        fsum_add(c, number_double(v));
        c->has_float = 1;
        return KD_OK;
    }
    int64_t i;
    if (kd__jv_int64(v, &i)) {
        if (!__builtin_add_overflow(c->isum, (__int128)i, &c->isum))
            return KD_OK;
        /* 2^127 reached: move the running sum into the big integer */
        if (!c->big && !(c->big = calloc(1, sizeof *c->big)))
            return KD_ENOMEM;
        if (big_add_i128(c->big, c->isum))
            return KD_ENOMEM;
        c->isum = i;
        return KD_OK;
    }
    if (!c->big && !(c->big = calloc(1, sizeof *c->big)))
        return KD_ENOMEM;
    return v.p[0] == '-' ? big_add(c->big, 1, v.p + 1, v.len - 1) : big_add(c->big, 0, v.p, v.len);
}

/* The exact integer part: into *b (when big integers were involved) or *i. */
static int acc_int_total(acc *c, big **b, __int128 *i)
{
    *b = NULL;
    *i = c->isum;
    if (!c->big)
        return KD_OK;
    if (big_add_i128(c->big, c->isum))
        return KD_ENOMEM;
    c->isum = 0;
    *b = c->big;
    return KD_OK;
}

/* The decimal text of the integer t (digits, '-' allowed) divided by d,
 * into out as digits and a power of ten ("-12345e-3"), which strtod reads
 * in any locale. The digits stop at the exact end or after 80 significant
 * ones, followed by a nonzero sticky digit, and strtod rounds that as it
 * would the exact quotient: a quotient by d < 2^66 that is halfway
 * between two doubles ends within 80 digits, and one that is not is
 * farther from every halfway point than the digits cut off. */
static int div_text(const char *t, unsigned __int128 d, kd__buf *out)
{
    unsigned __int128 r = 0;
    int sig = 0;
    size_t frac = 0;
    if (*t == '-' && kd__buf_putc(out, *t++))
        return KD_ENOMEM;
    for (;;) {
        if (*t)
            r = r * 10 + (unsigned)(*t++ - '0');
        else if (r && sig < 80)
            r *= 10, frac++;
        else
            break;
        int q = (int)(r / d);
        r %= d;
        if (q || sig) {
            if (kd__buf_putc(out, (char)('0' + q)))
                return KD_ENOMEM;
            sig++;
        }
    }
    if ((!sig && kd__buf_putc(out, '0')) || (r && kd__buf_putc(out, '1')))
        return KD_ENOMEM;
    return kd__buf_printf(out, "e-%zu", frac + (r != 0));
}

/* (sum of the numbers) / n as a double, for sum (n = 1) and avg. Plain
 * double arithmetic when nothing overflows, so ordinary results are
 * those of one division of the sum. Otherwise the integer part is divided
 * exactly in decimal and every term is halved (exact in binary) and
 * doubled back at the end, so the result is finite when the true value
 * is a double. */
static double acc_ratio(acc *c, uint64_t n, int *rc)
{
    big *b;
    __int128 i;
    kd__buf t = KD__BUF_INIT, q = KD__BUF_INIT;
    double ints, floats = c->fsum + c->fcomp, r = 0;
    if ((*rc = acc_int_total(c, &b, &i)))
        return 0;
    if (b) {
        if ((*rc = big_write(&t, b)))
            goto done;
        ints = strtod(t.data, NULL);
    } else {
        char buf[48];
        ints = (double)i;
        if ((*rc = kd__buf_puts(&t, i128_text(i, buf, sizeof buf))))
            goto done;
    }
    r = (ints + ldexp(floats, c->fscaled ? FSCALE : 0)) / (double)n;
    if (isfinite(r))
        goto done;
    if ((*rc = div_text(t.data, (unsigned __int128)n * 2, &q)))
        goto done;
    r = 2 * (strtod(q.data, NULL) + ldexp(floats / (double)n, (c->fscaled ? FSCALE : 0) - 1));
done:
    kd__buf_free(&t);
    kd__buf_free(&q);
    return r;
}

static int acc_minmax(acc *c, kd__jv v, int want_max)
{
    if (!v.p || kd__jv_type(v) == KD__J_NULL)
        return KD_OK;
    if (c->has_best) {
        int r = kd__jv_cmp(v, (kd__jv){c->best.data, c->best.len});
        if (want_max ? r <= 0 : r >= 0)
            return KD_OK;
    }
    kd__buf_reset(&c->best);
    if (kd__buf_append(&c->best, v.p, v.len))
        return KD_ENOMEM;
    c->has_best = 1;
    return KD_OK;
}

static int acc_distinct(acc *c, kd__jv v)
{
    if (!v.p)
        return KD_OK;
    if (!c->set && !(c->set = calloc(1, sizeof *c->set)))
        return KD_ENOMEM;
    return dset_add(c->set, v);
}

static int acc_feed(const kd__qagg *a, acc *c, kd__jv doc)
{
    if (a->op == KD__A_COUNT)
        return KD_OK; /* counted per group */
    kd__jv v = doc.p ? kd__jv_at(doc, &a->field.path) : KD__JV_MISSING;
    switch (a->op) {
    case KD__A_SUM:
    case KD__A_AVG: return acc_sum(c, v);
    case KD__A_MIN: return acc_minmax(c, v, 0);
    case KD__A_MAX: return acc_minmax(c, v, 1);
    default: return acc_distinct(c, v);
    }
}

int kd__write_double(kd__buf *out, double x)
{
    if (!isfinite(x))
        return kd__buf_puts(out, "null");
    /* "d.ddd…e±xx": a non-integer token whatever x is; the canonical
     * writer turns it into the shortest text naming x. */
    char t[64];
    int n = snprintf(t, sizeof t, "%.17e", x);
    if (n < 0 || (size_t)n >= sizeof t)
        return kd__buf_puts(out, "null");
    size_t sep = t[0] == '-' ? 2 : 1;
    if (t[sep] != '.' && t[sep] != 'e')
        t[sep] = '.'; /* a locale's decimal comma */
    char e[64];
    return kd__json_canonicalize(t, (size_t)n, out, e, sizeof e) ? KD_ENOMEM : KD_OK;
}

static int acc_write(const kd__qagg *a, acc *c, uint64_t count, kd__buf *out)
{
    int rc = KD_OK;
    switch (a->op) {
    case KD__A_COUNT: return kd__buf_printf(out, "%llu", (unsigned long long)count);
    case KD__A_SUM:
        if (c->has_float) {
            double d = acc_ratio(c, 1, &rc);
            return rc ? rc : kd__write_double(out, d);
        } else {
            big *b;
            __int128 i;
            if ((rc = acc_int_total(c, &b, &i)))
                return rc;
            if (b)
                return big_write(out, b);
            char buf[48];
            return kd__buf_puts(out, i128_text(i, buf, sizeof buf));
        }
    case KD__A_AVG: {
        if (!c->nnum)
            return kd__buf_puts(out, "null");
        double d = acc_ratio(c, c->nnum, &rc);
        return rc ? rc : kd__write_double(out, d);
    }
    case KD__A_MIN:
    case KD__A_MAX:
        return c->has_best ? kd__buf_append(out, c->best.data, c->best.len) : kd__buf_puts(out, "null");
    case KD__A_DISTINCT:
        if (!c->set)
            return kd__buf_puts(out, "[]");
        return dset_write(out, c->set);
    case KD__A_COUNT_DISTINCT:
        return kd__buf_printf(out, "%zu", c->set ? c->set->n : (size_t)0);
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Groups
 * ---------------------------------------------------------------------- */

typedef struct grp {
    size_t key_off, key_len; /* encoded group values in keys */
    uint64_t hash;
    uint64_t count;
} grp;

struct kd__agg {
    const kd_query *q;
    size_t na;
    uint64_t count; /* no group_by */
    acc *accs;      /* no group_by: na; group_by: na per group */
    /* group_by */
    kd__buf keys;
    grp *g;
    size_t ng, capg;
    uint32_t *slots; /* group index + 1 */
    size_t nslots;
    kd__buf scratch;
};

/* Group values are encoded field by field: 0 for missing, or 1, a 4-byte
 * length and the canonical text. */
static int encode_group(kd__agg *a, kd__jv doc)
{
    kd__buf *b = &a->scratch;
    kd__buf_reset(b);
    for (size_t i = 0; i < a->q->n_group; i++) {
        kd__jv v = doc.p ? kd__jv_at(doc, &a->q->group[i].path) : KD__JV_MISSING;
        if (!v.p) {
            if (kd__buf_putc(b, 0))
                return KD_ENOMEM;
            continue;
        }
        if (v.len > UINT32_MAX || kd__buf_reserve(b, 5 + v.len))
            return KD_ENOMEM;
        uint32_t n = (uint32_t)v.len;
        b->data[b->len++] = 1;
        memcpy(b->data + b->len, &n, 4);
        b->len += 4;
        memcpy(b->data + b->len, v.p, v.len);
        b->len += v.len;
    }
    return KD_OK;
}

/* Next field of an encoding at *p. */
static kd__jv decode_field(const char **p)
{
    const char *s = *p;
    if (*s == 0) {
        *p = s + 1;
        return KD__JV_MISSING;
    }
    uint32_t n;
    memcpy(&n, s + 1, 4);
    *p = s + 5 + n;
    return (kd__jv){s + 5, n};
}

static int slots_grow(kd__agg *a)
{
    size_t ns = a->nslots ? a->nslots * 2 : 64;
    uint32_t *sl = calloc(ns, sizeof *sl);
    if (!sl)
        return KD_ENOMEM;
    for (size_t i = 0; i < a->ng; i++) {
        size_t j = (size_t)a->g[i].hash & (ns - 1);
        while (sl[j])
            j = (j + 1) & (ns - 1);
        sl[j] = (uint32_t)(i + 1);
    }
    free(a->slots);
    a->slots = sl;
    a->nslots = ns;
    return KD_OK;
}

/* Index of the group of the encoding in scratch, added if new. */
static int find_group(kd__agg *a, size_t *gi)
{
    if (a->ng >= UINT32_MAX - 1)
        return KD_ENOMEM;
    if ((a->ng + 1) * 2 > a->nslots && slots_grow(a))
        return KD_ENOMEM;
    const char *k = a->scratch.data;
    size_t klen = a->scratch.len;
    uint64_t h = kd__hash_bytes(k, klen, HASH_SEED);
    size_t j = (size_t)h & (a->nslots - 1);
    while (a->slots[j]) {
        const grp *g = &a->g[a->slots[j] - 1];
        if (g->hash == h && g->key_len == klen && !memcmp(a->keys.data + g->key_off, k, klen)) {
            *gi = a->slots[j] - 1;
            return KD_OK;
        }
        j = (j + 1) & (a->nslots - 1);
    }
    if (a->ng == a->capg) {
        size_t cap = a->capg ? a->capg * 2 : 16;
        grp *g = realloc(a->g, cap * sizeof *g);
        if (!g)
            return KD_ENOMEM;
        a->g = g;
        acc *c = realloc(a->accs, cap * a->na * sizeof *c);
        if (!c)
            return KD_ENOMEM;
        a->accs = c;
        a->capg = cap;
    }
    grp *g = &a->g[a->ng];
    g->key_off = a->keys.len;
    g->key_len = klen;
    g->hash = h;
    g->count = 0;
    if (kd__buf_append(&a->keys, k, klen))
        return KD_ENOMEM;
    memset(&a->accs[a->ng * a->na], 0, a->na * sizeof *a->accs);
    a->slots[j] = (uint32_t)(a->ng + 1);
    *gi = a->ng++;
    return KD_OK;
}

int kd__agg_new(const kd_query *q, kd__agg **out)
{
    kd__agg *a = calloc(1, sizeof *a);
    if (!a)
        return KD_ENOMEM;
    a->q = q;
    a->na = q->n_aggs;
    if (!q->n_group && !(a->accs = calloc(a->na ? a->na : 1, sizeof *a->accs))) {
        free(a);
        return KD_ENOMEM;
    }
    *out = a;
    return KD_OK;
}

int kd__agg_feed(kd__agg *a, kd__jv doc)
{
    acc *accs;
    if (!a->q->n_group) {
        a->count++;
        accs = a->accs;
    } else {
        size_t gi;
        if (encode_group(a, doc) || find_group(a, &gi))
            return KD_ENOMEM;
        a->g[gi].count++;
        accs = &a->accs[gi * a->na];
    }
    for (size_t i = 0; i < a->na; i++)
        if (acc_feed(&a->q->aggs[i], &accs[i], doc))
            return KD_ENOMEM;
    return KD_OK;
}

/* {"count":…,"group":{…},"sum:x":…}: the aggregates in name order, with
 * "group" (when grouped) in its place among them. */
static int write_members(kd__agg *a, acc *accs, uint64_t count, const char *group_key, kd__buf *out)
{
    const kd_query *q = a->q;
    int group_done = group_key == NULL, first = 1;
    if (kd__buf_putc(out, '{'))
        return KD_ENOMEM;
    for (size_t i = 0; i <= a->na; i++) {
        if (!group_done && (i == a->na || kd__name_cmp("group", 5, q->aggs[i].name, q->aggs[i].name_len) < 0)) {
            group_done = 1;
            if (kd__buf_puts(out, first ? "\"group\":{" : ",\"group\":{"))
                return KD_ENOMEM;
            first = 0;
            kd__jv vals[q->n_group];
            const char *p = group_key;
            for (size_t f = 0; f < q->n_group; f++)
                vals[f] = decode_field(&p);
            int first_field = 1;
            for (size_t f = 0; f < q->n_group; f++) {
                size_t gf = q->group_by_name[f];
                if (!vals[gf].p)
                    continue;
                if ((!first_field && kd__buf_putc(out, ',')) ||
                    kd__buf_append(out, q->group[gf].quoted, q->group[gf].quoted_len) || kd__buf_putc(out, ':') ||
                    kd__buf_append(out, vals[gf].p, vals[gf].len))
                    return KD_ENOMEM;
                first_field = 0;
            }
            if (kd__buf_putc(out, '}'))
                return KD_ENOMEM;
        }
        if (i == a->na)
            break;
        if ((!first && kd__buf_putc(out, ',')) || kd__buf_append(out, q->aggs[i].quoted, q->aggs[i].quoted_len) ||
            kd__buf_putc(out, ':'))
            return KD_ENOMEM;
        first = 0;
        int rc = acc_write(&q->aggs[i], &accs[i], count, out);
        if (rc)
            return rc;
    }
    return kd__buf_putc(out, '}');
}

static int cmp_groups(const void *x, const void *y, void *ctx)
{
    const kd__agg *a = ctx;
    const grp *g = &a->g[*(const size_t *)x], *h = &a->g[*(const size_t *)y];
    const char *p = a->keys.data + g->key_off, *r = a->keys.data + h->key_off;
    for (size_t f = 0; f < a->q->n_group; f++) {
        int c = kd__jv_cmp(decode_field(&p), decode_field(&r));
        if (c)
            return c;
    }
    return 0;
}

int kd__agg_finish(kd__agg *a, kd__buf *out)
{
    if (!a->q->n_group)
        return write_members(a, a->accs, a->count, NULL, out);
    size_t *order = malloc((a->ng ? a->ng : 1) * sizeof *order);
    if (!order)
        return KD_ENOMEM;
    for (size_t i = 0; i < a->ng; i++)
        order[i] = i;
    if (a->ng > 1)
        qsort_r(order, a->ng, sizeof *order, cmp_groups, a);
    int rc = kd__buf_puts(out, "{\"groups\":[");
    for (size_t i = 0; i < a->ng && !rc; i++) {
        const grp *g = &a->g[order[i]];
        if (i && (rc = kd__buf_putc(out, ',')))
            break;
        rc = write_members(a, &a->accs[order[i] * a->na], g->count, a->keys.data + g->key_off, out);
    }
    if (!rc)
        rc = kd__buf_puts(out, "]}");
    free(order);
    return rc;
}

void kd__agg_free(kd__agg *a)
{
    if (!a)
        return;
    size_t n = a->q->n_group ? a->ng * a->na : a->na;
    for (size_t i = 0; a->accs && i < n; i++)
        acc_free(&a->accs[i]);
    free(a->accs);
    kd__buf_free(&a->keys);
    free(a->g);
    free(a->slots);
    kd__buf_free(&a->scratch);
    free(a);
}
