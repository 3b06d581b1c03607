/*
 * jv.c — reading values inside canonical JSON text without building a tree
 * (jv.h), field paths, and the one order of values (docs/QUERY.md).
 *
 * Everything here walks the text: a member is found by comparing the
 * canonical quoted name of a path step with the member names while the
 * values in between are skipped, and two values are compared token by
 * token. Nothing allocates except kd__jv_string (into the caller's buffer),
 * the path functions, and the conversion of an integer of 64 digits or
 * more to a double.
 *
 * Two skips: kd__jv_skip validates (for text from outside, e.g.
 * kd_json_path), kd__jv_skip_trusted only finds the end of a value that is
 * assumed canonical, staying inside the slice whatever the bytes are.
 *
 * Strings are compared by their unescaped bytes without unescaping: in
 * canonical text every unescaped byte has exactly one written form (a raw
 * byte, a two-byte escape or \u00XX), so two strings are walked unit by
 * unit and only units that differ are decoded.
 */
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "json/json.h"
#include "korudelta.h"
#include "query/jv.h"

/* ------------------------------------------------------------------------
 * Types and skipping
 * ---------------------------------------------------------------------- */

kd__jtype kd__jv_type(kd__jv v)
{
    switch (v.p ? v.p[0] : 'n') {
    case 'n':
        return KD__J_NULL;
    case 'f':
        return KD__J_FALSE;
    case 't':
        return KD__J_TRUE;
    case '"':
        return KD__J_STRING;
    case '[':
        return KD__J_ARRAY;
    case '{':
        return KD__J_OBJECT;
    default:
        return KD__J_NUMBER;
    }
}

/* First '"' or '\\' in [p, end), or end: 16 bytes at a time where SSE2
 * is there (every x86-64), else byte by byte. Member names and most
 * string values are found this way while skipping. */
static inline const char *scan_quote_or_backslash(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i dq = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(x, dq), _mm_cmpeq_epi8(x, bs)));
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\')
        p++;
    return p;
}

/* End of a string whose opening quote is just before p (trusted): after
 * its closing quote, or NULL when it runs off the end. */
static inline const char *str_end_trusted(const char *p, const char *end)
{
    for (;;) {
        p = scan_quote_or_backslash(p, end);
        if (p >= end)
            return NULL;
        if (*p == '"')
            return p + 1;
        if (end - p < 2)
            return NULL;
        /* An escape: step over the backslash and the byte after it. The
         * four hex digits that follow a \u hold no quote or backslash,
         * so the next scan passes over them like any other bytes. */
        p += 2;
    }
}

/* Bytes that may appear in a number. */
static const unsigned char num_char[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['-'] = 1, ['+'] = 1, ['.'] = 1, ['e'] = 1, ['E'] = 1,
};

/* The fast cases of kd__jv_skip_trusted: strings, numbers and literals
 * directly, containers through the general loop. */
static size_t skip_container(const char *p, const char *end);

static inline size_t skip_fast(const char *p, const char *end)
{
    const char *s = p;
    if (p >= end)
        return 0;
    switch (*p) {
    case '"': {
        const char *q = str_end_trusted(p + 1, end);
        return q ? (size_t)(q - s) : 0;
    }
    case 't':
    case 'n':
        return end - p >= 4 ? 4 : 0;
    case 'f':
        return end - p >= 5 ? 5 : 0;
    case '[':
    case '{':
        return skip_container(p, end);
    default:
        while (p < end && num_char[(unsigned char)*p])
            p++;
        return (size_t)(p - s);
    }
}

static size_t skip_container(const char *p, const char *end)
{
    const char *s = p;
    size_t depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = str_end_trusted(p + 1, end);
            if (!p)
                return 0;
            continue;
        }
        if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            if (--depth == 0)
                return (size_t)(p + 1 - s);
        }
        p++;
    }
    return 0;
}

size_t kd__jv_skip_trusted(const char *p, const char *end)
{
    if (!p)
        return 0;
    return skip_fast(p, end);
}

/* Validating string scan: p at the opening quote; returns the byte after
 * the closing quote or NULL. Raw control characters and bad escapes are
 * refused; UTF-8 is not checked (it cannot make anything read out of
 * bounds). */
static const char *scan_string(const char *p, const char *end)
{
    p++;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c != '\\') {
            p++;
            continue;
        }
        if (end - p < 2)
            return NULL;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            break;
        case 'u':
            if (end - p < 6)
                return NULL;
            for (int i = 2; i < 6; i++) {
                char h = p[i];
                if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
                    return NULL;
            }
            p += 6;
            break;
        default:
            return NULL;
        }
    }
    return NULL;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static const char *scan_number(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end || !is_digit(*p))
        return NULL;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    return p;
}

static const char *scan_word(const char *p, const char *end, const char *w, size_t n)
{
    if ((size_t)(end - p) < n || memcmp(p, w, n) != 0)
        return NULL;
    return p + n;
}

size_t kd__jv_skip(const char *p, const char *end)
{
    unsigned char stack[KD_JSON_MAX_DEPTH]; /* 'a' array, 'o' object */
    size_t depth = 0;
    const char *s = p;
    if (!p || !end || p >= end)
        return 0;

value:
    if (p >= end)
        return 0;
    switch (*p) {
    case '{':
        if (depth == KD_JSON_MAX_DEPTH)
            return 0;
        stack[depth++] = 'o';
        p++;
        if (p < end && *p == '}') {
            p++;
            depth--;
            goto after;
        }
        goto member;
    case '[':
        if (depth == KD_JSON_MAX_DEPTH)
            return 0;
        stack[depth++] = 'a';
        p++;
        if (p < end && *p == ']') {
            p++;
            depth--;
            goto after;
        }
        goto value;
    case '"':
        p = scan_string(p, end);
        break;
    case 't':
        p = scan_word(p, end, "true", 4);
        break;
    case 'f':
        p = scan_word(p, end, "false", 5);
        break;
    case 'n':
        p = scan_word(p, end, "null", 4);
        break;
    default:
        p = scan_number(p, end);
        break;
    }
    if (!p)
        return 0;
    goto after;

member:
    if (p >= end || *p != '"')
        return 0;
    p = scan_string(p, end);
    if (!p || p >= end || *p != ':')
        return 0;
    p++;
    goto value;

after:
    if (depth == 0)
        return (size_t)(p - s);
    if (p >= end)
        return 0;
    if (stack[depth - 1] == 'a') {
        if (*p == ',') {
            p++;
            goto value;
        }
        if (*p == ']') {
            p++;
            depth--;
            goto after;
        }
        return 0;
    }
    if (*p == ',') {
        p++;
        goto member;
    }
    if (*p == '}') {
        p++;
        depth--;
        goto after;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Arrays and objects
 * ---------------------------------------------------------------------- */

int kd__jv_next_item(kd__jv arr, size_t *pos, kd__jv *out)
{
    if (!arr.p || arr.len < 2 || arr.p[0] != '[')
        return 0;
    size_t i = *pos ? *pos : 1;
    size_t last = arr.len - 1; /* the closing bracket */
    if (i >= last)
        return 0;
    size_t n = kd__jv_skip_trusted(arr.p + i, arr.p + last);
    if (n == 0)
        return 0;
    out->p = arr.p + i;
    out->len = n;
    i += n;
    if (i < last && arr.p[i] == ',')
        i++;
    *pos = i;
    return 1;
}

int kd__jv_next_member(kd__jv obj, size_t *pos, kd__jv *name, kd__jv *value)
{
    if (!obj.p || obj.len < 2 || obj.p[0] != '{')
        return 0;
    size_t i = *pos ? *pos : 1;
    size_t last = obj.len - 1;
    if (i >= last || obj.p[i] != '"')
        return 0;
    const char *q = str_end_trusted(obj.p + i + 1, obj.p + last);
    if (!q || q >= obj.p + last || *q != ':')
        return 0;
    size_t nl = (size_t)(q - (obj.p + i));
    size_t vi = i + nl + 1;
    size_t n = kd__jv_skip_trusted(obj.p + vi, obj.p + last);
    if (n == 0)
        return 0;
    name->p = obj.p + i;
    name->len = nl;
    value->p = obj.p + vi;
    value->len = n;
    i = vi + n;
    if (i < last && obj.p[i] == ',')
        i++;
    *pos = i;
    return 1;
}

size_t kd__jv_count(kd__jv v)
{
    size_t pos = 0, n = 0;
    kd__jv a, b;
    if (!v.p)
        return 0;
    if (v.p[0] == '[') {
        while (kd__jv_next_item(v, &pos, &a))
            n++;
    } else if (v.p[0] == '{') {
        while (kd__jv_next_member(v, &pos, &a, &b))
            n++;
    }
    return n;
}

/* ------------------------------------------------------------------------
 * Strings
 * ---------------------------------------------------------------------- */

static int hexval(char h)
{
    if (h >= '0' && h <= '9')
        return h - '0';
    if (h >= 'a' && h <= 'f')
        return h - 'a' + 10;
    if (h >= 'A' && h <= 'F')
        return h - 'A' + 10;
    return -1;
}

static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* One written unit of a canonical string at p (p < end): its unescaped
 * byte, *adv its written length. Canonical text escapes only single bytes
 * (", \ and controls), so a unit is always one byte once unescaped. */
static unsigned unit_at(const char *p, const char *end, size_t *adv)
{
    unsigned char c = (unsigned char)*p;
    if (c != '\\' || end - p < 2) {
        *adv = 1;
        return c;
    }
    *adv = 2;
    switch (p[1]) {
    case 'b':
        return 8;
    case 'f':
        return 12;
    case 'n':
        return 10;
    case 'r':
        return 13;
    case 't':
        return 9;
    case 'u':
        if (end - p >= 6) {
            long v = hex4(p + 2);
            if (v >= 0 && v < 0x80) {
                *adv = 6;
                return (unsigned)v;
            }
        }
        *adv = 1;
        return c;
    default:
        return (unsigned char)p[1];
    }
}

/* Contents a[0..na) and b[0..nb) of two canonical strings (no quotes). */
static int str_cmp_raw(const char *a, size_t na, const char *b, size_t nb)
{
    const char *ea = a + na, *eb = b + nb;
    while (a < ea && b < eb) {
        if (*a == *b && *a != '\\') {
            a++;
            b++;
            continue;
        }
        if (*a != '\\' && *b != '\\')
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        size_t da, db;
        unsigned ua = unit_at(a, ea, &da), ub = unit_at(b, eb, &db);
        if (ua != ub)
            return ua < ub ? -1 : 1;
        a += da;
        b += db;
    }
    if (a < ea)
        return 1;
    if (b < eb)
        return -1;
    return 0;
}

int kd__jv_str_cmp(kd__jv a, kd__jv b)
{
    if (a.len < 2 || b.len < 2)
        return a.len < b.len ? -1 : a.len > b.len;
    return str_cmp_raw(a.p + 1, a.len - 2, b.p + 1, b.len - 2);
}

static int put_utf8(kd__buf *out, unsigned long cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return kd__buf_append(out, u, n);
}

int kd__jv_string(kd__jv s, kd__buf *out)
{
    if (!s.p || s.len < 2 || s.p[0] != '"')
        return KD_EINVALID;
    const char *p = s.p + 1, *end = s.p + s.len - 1;
    int rc = kd__buf_reserve(out, (size_t)(end - p));
    if (rc)
        return rc;
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        const char *stop = bs ? bs : end;
        if (stop > p && (rc = kd__buf_append(out, p, (size_t)(stop - p))) != 0)
            return rc;
        p = stop;
        if (p >= end)
            break;
        if (end - p < 2)
            return KD_EINVALID;
        char e = p[1];
        unsigned long cp;
        p += 2;
        switch (e) {
        case 'b':
            cp = 8;
            break;
        case 'f':
            cp = 12;
            break;
        case 'n':
            cp = 10;
            break;
        case 'r':
            cp = 13;
            break;
        case 't':
            cp = 9;
            break;
        case 'u': {
            if (end - p < 4)
                return KD_EINVALID;
            long v = hex4(p);
            if (v < 0)
                return KD_EINVALID;
            p += 4;
            cp = (unsigned long)v;
            if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                long lo = hex4(p + 2);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
                    p += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000)
                return KD_EINVALID;
            break;
        }
        default:
            cp = (unsigned char)e;
            break;
        }
        if ((rc = put_utf8(out, cp)) != 0)
            return rc;
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Numbers
 * ---------------------------------------------------------------------- */

static pthread_once_t num_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void num_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static double to_double(const char *s)
{
    pthread_once(&num_once, num_init);
    if (c_locale)
        return strtod_l(s, NULL, c_locale);
    return strtod(s, NULL);
}

int kd__jv_is_int(kd__jv v)
{
    for (size_t i = 0; i < v.len; i++) {
        char c = v.p[i];
        if (c == '.' || c == 'e' || c == 'E')
            return 0;
    }
    return 1;
}

double kd__jv_double(kd__jv v)
{
    char small[64];
    if (!v.p || v.len == 0)
        return 0.0;
    if (v.len < sizeof small) {
        memcpy(small, v.p, v.len);
        small[v.len] = '\0';
        return to_double(small);
    }
    char *big = malloc(v.len + 1);
    if (big) {
        memcpy(big, v.p, v.len);
        big[v.len] = '\0';
        double d = to_double(big);
        free(big);
        return d;
    }
    /* Out of memory (only integers get this long): the first 40 digits,
     * a sticky digit for the rest, and the exponent. Off by at most an
     * ulp, which only matters against a double of the same magnitude. */
    size_t neg = v.p[0] == '-', digits = v.len - neg;
    int sticky = 0;
    for (size_t i = neg + 40; i < v.len; i++)
        if (v.p[i] != '0')
            sticky = 1;
    int n = snprintf(small, sizeof small, "%s%.40s%se%zu", neg ? "-" : "", v.p + neg, sticky ? "1" : "0",
                     digits - 41);
    if (n < 0 || (size_t)n >= sizeof small)
        return neg ? -HUGE_VAL : HUGE_VAL;
    return to_double(small);
}

int kd__jv_int64(kd__jv v, int64_t *out)
{
    if (!v.p || v.len == 0 || kd__jv_type(v) != KD__J_NUMBER || !kd__jv_is_int(v))
        return 0;
    size_t i = v.p[0] == '-';
    if (i == v.len)
        return 0;
    uint64_t acc = 0, lim = i ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < v.len; i++) {
        if (!is_digit(v.p[i]))
            return 0;
        unsigned d = (unsigned)(v.p[i] - '0');
        if (acc > (lim - d) / 10)
            return 0;
        acc = acc * 10 + d;
    }
    if (v.p[0] == '-')
        *out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
    else
        *out = (int64_t)acc;
    return 1;
}

/* Two canonical integers exactly: sign, then number of digits, then the
 * digits. */
static int int_cmp(kd__jv a, kd__jv b)
{
    int na = a.p[0] == '-', nb = b.p[0] == '-';
    if (na != nb)
        return na ? -1 : 1;
    size_t la = a.len - (size_t)na, lb = b.len - (size_t)nb;
    int r = 0;
    if (la != lb) {
        r = la < lb ? -1 : 1;
    } else {
        for (size_t i = 0; i < la; i++) {
            unsigned char x = (unsigned char)a.p[na + i], y = (unsigned char)b.p[nb + i];
            if (x != y) {
                r = x < y ? -1 : 1;
                break;
            }
        }
    }
    return na ? -r : r;
}

/* Sign of (integer a - d), exactly, for a finite or infinite double d.
 * Small values compare as doubles (both exact); otherwise d's floor is
 * written as its exact decimal digits (glibc prints doubles exactly) and
 * compared digit by digit. */
static int int_vs_double(kd__jv a, double d)
{
    int64_t i;
    if (isinf(d))
        return d > 0 ? -1 : 1;
    if (kd__jv_int64(a, &i) && i > -(INT64_C(1) << 53) && i < (INT64_C(1) << 53) && fabs(d) < 0x1p53) {
        double x = (double)i;
        return x < d ? -1 : x > d;
    }
    double fl = floor(d);
    char buf[400];
    int n;
    if (fabs(fl) < 0x1p62)
        n = snprintf(buf, sizeof buf, "%lld", (long long)fl);
    else
        n = snprintf(buf, sizeof buf, "%.0f", fl);
    if (n <= 0 || (size_t)n >= sizeof buf)
        return 0; /* cannot happen: |d| < 2^1024 has at most 309 digits */
    int r = int_cmp(a, (kd__jv){buf, (size_t)n});
    if (r != 0)
        return r;
    return fl < d ? -1 : 0;
}

/* Numbers by exact value. numeric: 0 for equal values; else equal values
 * are ordered integer first, then by text (-0.0 before 0.0), so 0 only
 * for equal texts. */
static int num_cmp(kd__jv a, kd__jv b, int numeric)
{
    int ia = kd__jv_is_int(a), ib = kd__jv_is_int(b);
    int r;
    if (ia && ib)
        return int_cmp(a, b);
    if (ia) {
        r = int_vs_double(a, kd__jv_double(b));
    } else if (ib) {
        r = -int_vs_double(b, kd__jv_double(a));
    } else {
        double da = kd__jv_double(a), db = kd__jv_double(b);
        r = da < db ? -1 : da > db;
    }
    if (r || numeric)
        return r;
    if (ia != ib)
        return ia ? -1 : 1;
    size_t n = a.len < b.len ? a.len : b.len;
    r = memcmp(a.p, b.p, n);
    if (r)
        return r < 0 ? -1 : 1;
    return a.len < b.len ? -1 : a.len > b.len;
}

int kd__jv_num_cmp(kd__jv a, kd__jv b)
{
    return num_cmp(a, b, 1);
}

/* ------------------------------------------------------------------------
 * The order of values
 * ---------------------------------------------------------------------- */

static int rank(kd__jv v)
{
    if (!v.p || v.len == 0)
        return 0;
    switch (v.p[0]) {
    case 'n':
        return 1;
    case 'f':
        return 2;
    case 't':
        return 3;
    case '"':
        return 5;
    case '[':
        return 6;
    case '{':
        return 7;
    default:
        return 4;
    }
}

/* Canonical values nest at most KD_JSON_MAX_DEPTH deep, so the recursion
 * is bounded; deeper text (never canonical) is compared by its bytes. */
static int cmp_impl(kd__jv a, kd__jv b, int numeric, int depth)
{
    int ra = rank(a), rb = rank(b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    switch (ra) {
    case 4:
        return num_cmp(a, b, numeric);
    case 5:
        return kd__jv_str_cmp(a, b);
    case 6:
    case 7:
        break;
    default:
        return 0;
    }
    if (depth > KD_JSON_MAX_DEPTH + 8) {
        size_t n = a.len < b.len ? a.len : b.len;
        int r = memcmp(a.p, b.p, n);
        if (r)
            return r < 0 ? -1 : 1;
        return a.len < b.len ? -1 : a.len > b.len;
    }
    size_t pa = 0, pb = 0;
    for (;;) {
        kd__jv xa, xb, na, nb;
        int ha, hb, r;
        if (ra == 6) {
            ha = kd__jv_next_item(a, &pa, &xa);
            hb = kd__jv_next_item(b, &pb, &xb);
        } else {
            ha = kd__jv_next_member(a, &pa, &na, &xa);
            hb = kd__jv_next_member(b, &pb, &nb, &xb);
        }
        if (!ha || !hb)
            return ha == hb ? 0 : (ha ? 1 : -1);
        if (ra == 7 && (r = kd__jv_str_cmp(na, nb)) != 0)
            return r;
        if ((r = cmp_impl(xa, xb, numeric, depth + 1)) != 0)
            return r;
    }
}

int kd__jv_cmp(kd__jv a, kd__jv b)
{
    return cmp_impl(a, b, 0, 0);
}

int kd__jv_cmp_value(kd__jv a, kd__jv b)
{
    return cmp_impl(a, b, 1, 0);
}

/* ------------------------------------------------------------------------
 * Lookup
 * ---------------------------------------------------------------------- */

kd__jv kd__jv_member(kd__jv obj, const char *quoted, size_t qlen)
{
    if (!obj.p || obj.len < 2 || obj.p[0] != '{' || qlen < 2)
        return KD__JV_MISSING;
    const char *p = obj.p + 1, *end = obj.p + obj.len - 1;
    unsigned char want0 = (unsigned char)quoted[1];
    while (p < end && *p == '"') {
        /* p: a member name. Equal names have equal canonical text, and
         * the name's closing quote lines up with the wanted one. */
        unsigned char c0 = (unsigned char)p[1];
        if (c0 == want0 && (size_t)(end - p) > qlen && memcmp(p, quoted, qlen) == 0 && p[qlen] == ':') {
            const char *v = p + qlen + 1;
            size_t n = skip_fast(v, end);
            return n ? (kd__jv){v, n} : KD__JV_MISSING;
        }
        const char *q = str_end_trusted(p + 1, end);
        if (!q || q >= end || *q != ':')
            return KD__JV_MISSING;
        /* Members are sorted: past the name, it is not there. Most names
         * differ from it at their first byte. */
        if (c0 != want0 && c0 != '\\' && want0 != '\\' && c0 != '"' && want0 != '"') {
            if (c0 > want0)
                return KD__JV_MISSING;
        } else if (str_cmp_raw(p + 1, (size_t)(q - 1 - (p + 1)), quoted + 1, qlen - 2) > 0) {
            return KD__JV_MISSING;
        }
        const char *v = q + 1;
        size_t n = skip_fast(v, end);
        if (n == 0)
            return KD__JV_MISSING;
        p = v + n;
        if (p < end && *p == ',')
            p++;
        else
            break;
    }
    return KD__JV_MISSING;
}

static kd__jv item_at(kd__jv arr, int64_t index)
{
    size_t pos = 0;
    kd__jv x;
    while (kd__jv_next_item(arr, &pos, &x)) {
        if (index-- == 0)
            return x;
    }
    return KD__JV_MISSING;
}

kd__jv kd__jv_at(kd__jv v, const kd__path *path)
{
    for (size_t i = 0; i < path->n && v.p; i++) {
        const kd__pstep *st = &path->steps[i];
        if (v.len == 0)
            return KD__JV_MISSING;
        if (v.p[0] == '{')
            v = kd__jv_member(v, st->quoted, st->quoted_len);
        else if (v.p[0] == '[' && st->index >= 0)
            v = item_at(v, st->index);
        else
            return KD__JV_MISSING;
    }
    return v;
}

/* ------------------------------------------------------------------------
 * Field paths
 * ---------------------------------------------------------------------- */

int kd__path_bare_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '$' || c >= 0x80;
}

static void path_err(char *err, size_t errlen, size_t col, const char *fmt, const char *arg)
{
    char msg[200];
    if (!err || errlen == 0)
        return;
    snprintf(msg, sizeof msg, fmt, arg);
    snprintf(err, errlen, "column %zu: %s", col, msg);
}

/* What is at text[i], for messages: 'x', "end of text", or a byte in hex. */
static const char *describe(const char *text, size_t len, size_t i, char *buf, size_t n)
{
    if (i >= len)
        return "the end";
    unsigned char c = (unsigned char)text[i];
    if (c > 0x20 && c < 0x7f)
        snprintf(buf, n, "'%c'", c);
    else if (c == ' ')
        snprintf(buf, n, "a space");
    else
        snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

static int64_t step_index(const char *name, size_t n)
{
    if (n == 0 || n > 19 || (n > 1 && name[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(name[i]))
            return -1;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    return (int64_t)v;
}

void kd__path_free(kd__path *path)
{
    if (!path)
        return;
    for (size_t i = 0; i < path->n; i++) {
        free(path->steps[i].name);
        free(path->steps[i].quoted);
    }
    free(path->steps);
    path->steps = NULL;
    path->n = 0;
}

/* Append a step from its unescaped name and canonical quoted form (both
 * copied). */
static int path_push(kd__path *p, size_t *cap, const char *name, size_t nlen, const char *q, size_t qlen)
{
    if (p->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        kd__pstep *s = realloc(p->steps, nc * sizeof *s);
        if (!s)
            return KD_ENOMEM;
        p->steps = s;
        *cap = nc;
    }
    kd__pstep *st = &p->steps[p->n];
    st->name = malloc(nlen + 1);
    st->quoted = malloc(qlen + 1);
    if (!st->name || !st->quoted) {
        free(st->name);
        free(st->quoted);
        return KD_ENOMEM;
    }
    memcpy(st->name, name, nlen);
    st->name[nlen] = '\0';
    st->name_len = nlen;
    memcpy(st->quoted, q, qlen);
    st->quoted[qlen] = '\0';
    st->quoted_len = qlen;
    st->index = step_index(name, nlen);
    p->n++;
    return KD_OK;
}

/* Byte after the closing quote of the JSON string at text[i] (a quote),
 * scanning raw text, or len + 1 when it is not closed. */
static size_t quoted_end(const char *text, size_t len, size_t i)
{
    i++;
    while (i < len) {
        if (text[i] == '"')
            return i + 1;
        i += text[i] == '\\' ? 2 : 1;
    }
    return len + 1;
}

int kd__path_parse_prefix(const char *text, size_t len, size_t start, size_t *end, kd__path *out, char *err,
                          size_t errlen)
{
    kd__path p = {NULL, 0};
    size_t cap = 0, i = start;
    kd__buf q = KD__BUF_INIT, name = KD__BUF_INIT;
    char what[32];
    int rc = KD_OK;

    out->steps = NULL;
    out->n = 0;
    for (;;) {
        kd__buf_reset(&q);
        kd__buf_reset(&name);
        if (i < len && text[i] == '"') {
            size_t e = quoted_end(text, len, i);
            if (e > len) {
                path_err(err, errlen, i + 1, "%s", "unterminated quoted name in a field path");
                rc = KD_EINVALID;
                goto fail;
            }
            char jerr[160];
            rc = kd__json_canonicalize(text + i, e - i, &q, jerr, sizeof jerr);
            if (rc == KD_EINVALID) {
                const char *m = strstr(jerr, ": ");
                path_err(err, errlen, i + 1, "bad quoted name in a field path: %s", m ? m + 2 : jerr);
                goto fail;
            }
            if (rc)
                goto fail;
            if ((rc = kd__jv_string((kd__jv){q.data, q.len}, &name)) != 0)
                goto fail;
            if ((rc = kd__buf_reserve(&name, 0)) != 0)
                goto fail;
            i = e;
        } else {
            size_t s = i;
            while (i < len && kd__path_bare_char((unsigned char)text[i]))
                i++;
            if (i == s) {
                path_err(err, errlen, i + 1,
                         "expected a field name (letters, digits, _ - $, or a quoted \"name\"), found %s",
                         describe(text, len, i, what, sizeof what));
                rc = KD_EINVALID;
                goto fail;
            }
            if (!kd__utf8_valid(text + s, i - s)) {
                path_err(err, errlen, s + 1, "%s", "invalid UTF-8 in a field name");
                rc = KD_EINVALID;
                goto fail;
            }
            if ((rc = kd__buf_append(&name, text + s, i - s)) != 0 ||
                (rc = kd__json_write_string(&q, text + s, i - s)) != 0)
                goto fail;
        }
        if ((rc = path_push(&p, &cap, name.data ? name.data : "", name.len, q.data, q.len)) != 0)
            goto fail;
        if (i < len && text[i] == '.') {
            i++;
            continue;
        }
        break;
    }
    kd__buf_free(&q);
    kd__buf_free(&name);
    *out = p;
    *end = i;
    return KD_OK;

fail:
    kd__buf_free(&q);
    kd__buf_free(&name);
    kd__path_free(&p);
    return rc;
}

int kd__path_parse(const char *text, size_t len, kd__path *out, char *err, size_t errlen)
{
    size_t end = 0;
    char what[32];
    if (!text || len == 0) {
        out->steps = NULL;
        out->n = 0;
        path_err(err, errlen, 1, "%s", "empty field path");
        return KD_EINVALID;
    }
    int rc = kd__path_parse_prefix(text, len, 0, &end, out, err, errlen);
    if (rc)
        return rc;
    if (end != len) {
        path_err(err, errlen, end + 1,
                 "unexpected %s in a field path (quote names with other characters: \"first name\")",
                 describe(text, len, end, what, sizeof what));
        kd__path_free(out);
        return KD_EINVALID;
    }
    return KD_OK;
}

/* Words of the filter language: a step spelled like one is quoted, so
 * the text form of any filter parses back. */
static int is_keyword(const char *s, size_t n)
{
    static const char *const kw[] = {"and", "or", "not", "contains", "exists", "matches",
                                     "in",  "true", "false", "null"};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++) {
        if (strlen(kw[i]) == n && strncasecmp(kw[i], s, n) == 0)
            return 1;
    }
    return 0;
}

int kd__path_write(kd__buf *out, const kd__path *path)
{
    int rc = KD_OK;
    for (size_t i = 0; i < path->n && rc == KD_OK; i++) {
        const kd__pstep *st = &path->steps[i];
        int bare = st->name_len > 0 && !is_keyword(st->name, st->name_len);
        for (size_t j = 0; j < st->name_len && bare; j++)
            bare = kd__path_bare_char((unsigned char)st->name[j]);
        if (i > 0)
            rc = kd__buf_putc(out, '.');
        if (rc == KD_OK)
            rc = bare ? kd__buf_append(out, st->name, st->name_len) : kd__buf_append(out, st->quoted, st->quoted_len);
    }
    return rc;
}

int kd__path_copy(const kd__path *from, kd__path *to)
{
    kd__path p = {NULL, 0};
    size_t cap = 0;
    for (size_t i = 0; i < from->n; i++) {
        const kd__pstep *st = &from->steps[i];
        int rc = path_push(&p, &cap, st->name, st->name_len, st->quoted, st->quoted_len);
        if (rc) {
            kd__path_free(&p);
            return rc;
        }
    }
    *to = p;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * kd_json_path (public)
 * ---------------------------------------------------------------------- */

KD_EXPORT int kd_json_path(const char *json, size_t len, const char *path, const char **out, size_t *out_len)
{
    kd__path p;
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!json || !path || !out || !out_len || len == 0)
        return KD_EINVALID;
    if (kd__jv_skip(json, json + len) != len)
        return KD_EINVALID;
    int rc = kd__path_parse(path, strlen(path), &p, NULL, 0);
    if (rc)
        return rc;
    kd__jv v = kd__jv_at((kd__jv){json, len}, &p);
    kd__path_free(&p);
    if (!v.p)
        return KD_ENOTFOUND;
    *out = v.p;
    *out_len = v.len;
    return KD_OK;
}

KD_EXPORT int kd_json_next(const char *json, size_t len, size_t *pos, const char **name, size_t *name_len,
                           const char **value, size_t *value_len)
{
    if (!json || !pos || !value || !value_len || len < 2 || (json[0] != '[' && json[0] != '{'))
        return KD_EINVALID;
    if (*pos == 0 && kd__jv_skip(json, json + len) != len)
        return KD_EINVALID;
    kd__jv v = {json, len}, n = {NULL, 0}, item;
    int more = json[0] == '[' ? kd__jv_next_item(v, pos, &item) : kd__jv_next_member(v, pos, &n, &item);
    if (!more)
        return 0;
    if (name)
        *name = n.p;
    if (name_len)
        *name_len = n.len;
    *value = item.p;
    *value_len = item.len;
    return 1;
}

KD_EXPORT int kd_json_unquote(const char *lit, size_t len, char **out, size_t *out_len)
{
    if (!lit || !out)
        return KD_EINVALID;
    *out = NULL;
    /* Any JSON string literal: canonicalize it first (validates it and
     * leaves only the escapes JSON requires), then unescape. */
    kd__buf canon = KD__BUF_INIT, text = KD__BUF_INIT;
    char err[128];
    int rc = kd__json_canonicalize(lit, len, &canon, err, sizeof err);
    if (!rc && (canon.len < 2 || canon.data[0] != '"'))
        rc = KD_EINVALID;
    if (!rc)
        rc = kd__jv_string((kd__jv){canon.data, canon.len}, &text);
    if (!rc)
        rc = kd__buf_reserve(&text, 0);
    kd__buf_free(&canon);
    if (rc) {
        kd__buf_free(&text);
        return rc;
    }
    text.data[text.len] = '\0';
    if (out_len)
        *out_len = text.len;
    *out = kd__buf_steal(&text, NULL);
    return KD_OK;
}
