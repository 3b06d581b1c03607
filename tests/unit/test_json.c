/*
 * test_json.c — the JSON parser and canonical writer (src/json/json.h) and
 * the public helpers built on them (kd_json_canonical, kd_json_quote,
 * kd_version_json).
 *
 * Expected outputs follow the canonical rules of docs/JSON.md. Every
 * accepted input is also checked to be a fixed point (canonicalizing the
 * output again gives the same bytes); every rejected input must give
 * KD_EINVALID, a message "invalid JSON at byte N: <what>" with N inside the
 * offending token, and leave the output buffer at its original length.
 * Doubles are checked against an independent oracle built from printf's
 * correctly rounded "%.*e" (shortest digits that strtod reads back).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "json/json.h"
#include "korudelta.h"
#include "util/buf.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

#define PRE "PRE"
#define PRELEN 3

/* Print up to 120 bytes of s, non-printable bytes as \xHH. */
static void show(const char *label, const char *s, size_t n)
{
    fprintf(stderr, "    %s (%zu bytes): \"", label, n);
    for (size_t i = 0; i < n && i < 120; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "%s\"\n", n > 120 ? "..." : "");
}

/* Canonicalize `in` into a fresh buffer that already holds PRE. */
static int canon(const char *in, size_t len, kd__buf *out, char *err, size_t errlen)
{
    kd__buf_reset(out);
    if (kd__buf_puts(out, PRE))
        abort();
    err[0] = '\0';
    return kd__json_canonicalize(in, len, out, err, errlen);
}

/* 1 if `in` is accepted, gives exactly `want` after PRE, and `want` is a
 * fixed point. Prints what differs otherwise. */
static int ok_(const char *in, size_t len, const char *want, size_t wantlen, int line)
{
    kd__buf out = KD__BUF_INIT, again = KD__BUF_INIT;
    char err[512];
    int good = 0;
    int rc = canon(in, len, &out, err, sizeof err);
    if (rc != KD_OK) {
        fprintf(stderr, "  line %d: rejected (rc %d: %s)\n", line, rc, err);
        show("input", in, len);
        goto done;
    }
    if (out.len < PRELEN || memcmp(out.data, PRE, PRELEN) != 0) {
        fprintf(stderr, "  line %d: output did not keep the existing buffer content\n", line);
        goto done;
    }
    if (out.len - PRELEN != wantlen || memcmp(out.data + PRELEN, want, wantlen) != 0) {
        fprintf(stderr, "  line %d: wrong canonical form\n", line);
        show("input", in, len);
        show("want", want, wantlen);
        show("got", out.data + PRELEN, out.len - PRELEN);
        goto done;
    }
    if (out.data[out.len] != '\0') {
        fprintf(stderr, "  line %d: output not NUL-terminated\n", line);
        goto done;
    }
    rc = canon(out.data + PRELEN, out.len - PRELEN, &again, err, sizeof err);
    if (rc != KD_OK || again.len != out.len || memcmp(again.data, out.data, out.len) != 0) {
        fprintf(stderr, "  line %d: canonical form is not a fixed point (rc %d %s)\n", line, rc, err);
        show("first", out.data + PRELEN, out.len - PRELEN);
        if (rc == KD_OK)
            show("second", again.data + PRELEN, again.len - PRELEN);
        goto done;
    }
    good = 1;
done:
    kd__buf_free(&out);
    kd__buf_free(&again);
    return good;
}

/* Byte offset from "invalid JSON at byte N: <what>", or -1 if the message
 * does not have that shape. */
static long msg_offset(const char *msg)
{
    static const char prefix[] = "invalid JSON at byte ";
    if (strncmp(msg, prefix, sizeof prefix - 1) != 0)
        return -1;
    const char *p = msg + sizeof prefix - 1;
    if (*p < '0' || *p > '9')
        return -1;
    char *end;
    long n = strtol(p, &end, 10);
    if (end[0] != ':' || end[1] != ' ' || end[2] == '\0')
        return -1;
    return n;
}

/* 1 if `in` is rejected with KD_EINVALID, a well-formed message whose byte
 * offset is in [lo, hi], and the output buffer untouched. */
static int bad_(const char *in, size_t len, long lo, long hi, const char *needle, int line)
{
    kd__buf out = KD__BUF_INIT;
    char err[512];
    int good = 0;
    int rc = canon(in, len, &out, err, sizeof err);
    if (rc != KD_EINVALID) {
        fprintf(stderr, "  line %d: wanted KD_EINVALID, got rc %d\n", line, rc);
        show("input", in, len);
        if (rc == KD_OK)
            show("output", out.data + PRELEN, out.len - PRELEN);
        goto done;
    }
    if (out.len != PRELEN || memcmp(out.data, PRE, PRELEN) != 0) {
        fprintf(stderr, "  line %d: output buffer changed on error (len %zu)\n", line, out.len);
        goto done;
    }
    long n = msg_offset(err);
    if (n < 0) {
        fprintf(stderr, "  line %d: malformed message \"%s\"\n", line, err);
        goto done;
    }
    if (n < lo || n > hi) {
        if (lo == hi)
            fprintf(stderr, "  line %d: wanted byte %ld, message \"%s\"\n", line, lo, err);
        else
            fprintf(stderr, "  line %d: wanted byte in [%ld, %ld], message \"%s\"\n", line, lo, hi, err);
        show("input", in, len);
        goto done;
    }
    if (needle && !strstr(err, needle)) {
        fprintf(stderr, "  line %d: message \"%s\" lacks \"%s\"\n", line, err, needle);
        goto done;
    }
    good = 1;
done:
    kd__buf_free(&out);
    return good;
}

/* Literal inputs (sizeof, so embedded NULs count). */
#define OK(in, want) CHECK(ok_((in), sizeof(in) - 1, (want), sizeof(want) - 1, __LINE__))
#define OKN(in, len, want, wantlen) CHECK(ok_((in), (len), (want), (wantlen), __LINE__))
#define SAME(in) OK(in, in)
/* Rejected at exactly byte n, or anywhere in [lo, hi]. */
#define BAD(in, n) CHECK(bad_((in), sizeof(in) - 1, (n), (n), NULL, __LINE__))
#define BADR(in, lo, hi) CHECK(bad_((in), sizeof(in) - 1, (lo), (hi), NULL, __LINE__))
#define BADM(in, lo, hi, needle) CHECK(bad_((in), sizeof(in) - 1, (lo), (hi), (needle), __LINE__))
#define BADN(in, len, lo, hi) CHECK(bad_((in), (len), (lo), (hi), NULL, __LINE__))

/* ------------------------------------------------------------------------
 * Literals, structure, whitespace
 * ---------------------------------------------------------------------- */

static void test_literals(void)
{
    SAME("true");
    SAME("false");
    SAME("null");
    SAME("[true,false,null]");
    SAME("[]");
    SAME("{}");
    SAME("[[],{},[[]]]");
    SAME("\"\"");
    OK("[ ]", "[]");
    OK("{ }", "{}");
    BAD("True", 0);
    BADR("nul", 0, 3);
    BADR("nulx", 0, 3);
    BAD("nulll", 4);
    BAD("truex", 4);
    BAD("true false", 5);
    BADR("nan", 0, 1);
    BAD("NaN", 0);
    BAD("Infinity", 0);
    BADR("-Infinity", 0, 1);
    BADR("[NaN]", 1, 1);
    BADR("[-Infinity]", 1, 2);
    BAD("undefined", 0);
    BAD("'a'", 0);
}

static void test_structure_errors(void)
{
    BAD("", 0);
    BAD(" ", 1);
    BAD(" \t\r\n", 4);
    BAD("[", 1);
    BAD("]", 0);
    BAD("[1,]", 3);
    BAD("[,1]", 1);
    BAD("[1 2]", 3);
    BAD("[1]]", 3);
    BAD("[1] x", 4);
    BAD("[1]x", 3);
    BAD("{} {}", 3);
    BAD("1 2", 2);
    BAD("{", 1);
    BAD("{\"a\"", 4);
    BAD("{\"a\":", 5);
    BAD("{\"a\" 1}", 5);
    BAD("{\"a\":1,}", 7);
    BAD("{\"a\":1 \"b\":2}", 7);
    BAD("{a:1}", 1);
    BAD("{1:1}", 1);
    BAD("{\"a\"::1}", 5);
    BAD("{,}", 1);
    BAD("[}", 1);
    BAD("{]", 1);
    BAD("[\"a\":1]", 4);
    BAD("{\"a\":1]", 6);
    BAD("\"abc", 4);
    BAD("[\"abc", 5);
    BADN("[1]\0", 4, 3, 3);
    BADN("\0", 1, 0, 0);
    BADN("[\0]", 3, 1, 1);
}

static void test_whitespace(void)
{
    OK(" \t\n\r{ \"a\" : [ 1 , 2 ] ,\n\"b\"\t:\rnull } \r\n\t ", "{\"a\":[1,2],\"b\":null}");
    OK("\n1\n", "1");
    OK("  \"x\"  ", "\"x\"");
    /* Only the four JSON whitespace characters. */
    BAD("\v1", 0);
    BAD("\f1", 0);
    BAD("1\v", 1);
    BAD("[1,\f2]", 3);
    BAD("\xc2\xa0" "1", 0);            /* NO-BREAK SPACE */
    BAD("\xe2\x80\x8b" "1", 0);        /* ZERO WIDTH SPACE */
    BAD("[1\xe3\x80\x80]", 2);          /* IDEOGRAPHIC SPACE */
    BAD("\x1c" "1", 0);
}

static void test_bom(void)
{
    OK("\xef\xbb\xbf{}", "{}");
    OK("\xef\xbb\xbf 1 ", "1");
    OK("\xef\xbb\xbf{\"b\":1,\"a\":2}", "{\"a\":2,\"b\":1}");
    /* Offsets count the BOM's bytes. */
    BAD("\xef\xbb\xbf[1,]", 6);
    BAD("\xef\xbb\xbf", 3);
    BAD("\xef\xbb\xbf ", 4);
    /* Anywhere but the very start it is an error outside strings... */
    BAD(" \xef\xbb\xbf{}", 1);
    BAD("\xef\xbb\xbf\xef\xbb\xbf{}", 3);
    BAD("[\xef\xbb\xbf" "1]", 1);
    BAD("[]\xef\xbb\xbf", 2);
    BAD("{\"a\":1}\xef\xbb\xbf", 7);
    /* ...and an ordinary character inside them. */
    SAME("\"\xef\xbb\xbf\"");
    OK("\"\\ufeff\"", "\"\xef\xbb\xbf\"");
    OK("\xef\xbb\xbf\"\xef\xbb\xbf\"", "\"\xef\xbb\xbf\"");
    /* A partial BOM is invalid UTF-8. */
    BADR("\xef\xbb{}", 0, 2);
    BADR("\xef{}", 0, 1);
    /* UTF-16 BOMs are not UTF-8 at all. */
    BAD("\xff\xfe[]", 0);
    BAD("\xfe\xff[]", 0);
}

/* ------------------------------------------------------------------------
 * Depth
 * ---------------------------------------------------------------------- */

/* n nested arrays, closed when `close`, with `inner` in the middle. */
static char *nested_arrays(size_t n, int close, const char *inner, size_t *len)
{
    size_t il = strlen(inner);
    char *s = malloc(2 * n + il + 1);
    if (!s)
        abort();
    memset(s, '[', n);
    memcpy(s + n, inner, il);
    size_t l = n + il;
    if (close) {
        memset(s + l, ']', n);
        l += n;
    }
    s[l] = '\0';
    *len = l;
    return s;
}

/* n nested objects {"a":{"a":...}} with `inner` as the innermost value. */
static char *nested_objects(size_t n, int close, const char *inner, size_t *len)
{
    size_t il = strlen(inner);
    char *s = malloc(6 * n + il + 1);
    if (!s)
        abort();
    size_t l = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(s + l, "{\"a\":", 5);
        l += 5;
    }
    memcpy(s + l, inner, il);
    l += il;
    if (close) {
        memset(s + l, '}', n);
        l += n;
    }
    s[l] = '\0';
    *len = l;
    return s;
}

static void test_depth_limit(void)
{
    size_t len;
    char *s;
    int good;

    CHECK_EQ_INT(KD_JSON_MAX_DEPTH, 512);

    s = nested_arrays(512, 1, "", &len);
    good = ok_(s, len, s, len, __LINE__);
    free(s);
    CHECK(good);

    s = nested_arrays(512, 1, "1", &len);
    good = ok_(s, len, s, len, __LINE__);
    free(s);
    CHECK(good);

    s = nested_arrays(513, 1, "", &len);
    good = bad_(s, len, 512, 512, NULL, __LINE__);
    free(s);
    CHECK(good);

    s = nested_arrays(513, 1, "1", &len);
    good = bad_(s, len, 512, 512, NULL, __LINE__);
    free(s);
    CHECK(good);

    s = nested_objects(512, 1, "{}", &len); /* 513 levels */
    good = bad_(s, len, 512 * 5, 512 * 5, NULL, __LINE__);
    free(s);
    CHECK(good);

    s = nested_objects(511, 1, "{}", &len); /* 512 levels */
    good = ok_(s, len, s, len, __LINE__);
    free(s);
    CHECK(good);

    s = nested_objects(512, 1, "null", &len);
    good = ok_(s, len, s, len, __LINE__);
    free(s);
    CHECK(good);

    s = nested_objects(513, 1, "null", &len);
    good = bad_(s, len, 512 * 5, 512 * 5, NULL, __LINE__);
    free(s);
    CHECK(good);

    /* Mixed: [{"a":[{"a":... alternating, 512 levels then 513. */
    for (int extra = 0; extra < 2; extra++) {
        size_t levels = 512 + (size_t)extra;
        kd__buf b = KD__BUF_INIT;
        size_t bad_at = 0;
        for (size_t i = 0; i < levels; i++) {
            if (i == 512)
                bad_at = b.len;
            if (kd__buf_puts(&b, (i % 2) ? "{\"a\":" : "["))
                abort();
        }
        if (kd__buf_puts(&b, "0"))
            abort();
        for (size_t i = levels; i-- > 0;)
            if (kd__buf_putc(&b, (i % 2) ? '}' : ']'))
                abort();
        good = extra ? bad_(b.data, b.len, (long)bad_at, (long)bad_at, NULL, __LINE__)
                     : ok_(b.data, b.len, b.data, b.len, __LINE__);
        kd__buf_free(&b);
        CHECK(good);
    }

    /* Depth comes back down: many siblings at depth 512 are fine. */
    {
        kd__buf b = KD__BUF_INIT;
        for (int i = 0; i < 511; i++)
            kd__buf_putc(&b, '[');
        for (int i = 0; i < 100; i++)
            kd__buf_puts(&b, i ? ",[]" : "[]");
        for (int i = 0; i < 511; i++)
            kd__buf_putc(&b, ']');
        good = ok_(b.data, b.len, b.data, b.len, __LINE__);
        kd__buf_free(&b);
        CHECK(good);
    }
}

static void test_deep_no_crash(void)
{
    size_t len;
    char *s;
    int good;

    s = nested_arrays(100000, 0, "", &len);
    good = bad_(s, len, 512, 512, NULL, __LINE__);
    free(s);
    CHECK(good);

    s = nested_arrays(100000, 1, "", &len);
    good = bad_(s, len, 512, 512, NULL, __LINE__);
    free(s);
    CHECK(good);

    s = nested_objects(100000, 0, "", &len);
    good = bad_(s, len, 512 * 5, 512 * 5, NULL, __LINE__);
    free(s);
    CHECK(good);

    s = nested_objects(100000, 1, "1", &len);
    good = bad_(s, len, 512 * 5, 512 * 5, NULL, __LINE__);
    free(s);
    CHECK(good);

    /* [{[{[{ ... without names: rejected somewhere, never a crash. */
    {
        kd__buf b = KD__BUF_INIT;
        for (int i = 0; i < 100000; i++)
            kd__buf_puts(&b, "[{\"\":");
        good = bad_(b.data, b.len, 0, (long)b.len, NULL, __LINE__);
        kd__buf_free(&b);
        CHECK(good);
    }
}

/* ------------------------------------------------------------------------
 * Numbers
 * ---------------------------------------------------------------------- */

static void test_integers(void)
{
    SAME("0");
    SAME("1");
    SAME("-1");
    SAME("42");
    SAME("9007199254740993");
    SAME("505874924095815681");
    SAME("9223372036854775807");
    SAME("9223372036854775808");
    SAME("-9223372036854775809");
    SAME("18446744073709551616");
    SAME("100000000000000000000000000001");
    SAME("-12345678901234567890123456789012345678901234567890");
    SAME("[505874924095815681,-505874924095815681]");
    OK("-0", "0");
    OK("[-0,0,-0]", "[0,0,0]");
    OK("{\"a\":-0}", "{\"a\":0}");
    /* 1000 digits, kept exactly. */
    {
        char s[1002];
        s[0] = '7';
        for (int i = 1; i < 1000; i++)
            s[i] = (char)('0' + i % 10);
        s[1000] = '\0';
        OKN(s, 1000, s, 1000);
    }
}

static void test_number_syntax_errors(void)
{
    BADR("01", 0, 1);
    BADR("-01", 0, 2);
    BADR("00", 0, 1);
    BADR("[01]", 1, 2);
    BADR("1.", 0, 2);
    BADR("[1.]", 1, 3);
    BAD(".5", 0);
    BAD("[.5]", 1);
    BADR("1.e5", 0, 2);
    BADR("-", 0, 1);
    BADR("[-]", 1, 2);
    BAD("+1", 0);
    BAD("--1", 1);
    BADR("-.5", 0, 1);
    BADR("1e", 0, 2);
    BADR("1e+", 0, 3);
    BADR("1E-", 0, 3);
    BADR("1ee5", 0, 2);
    BADR("1e5.0", 3, 3);
    BAD("1.5.", 3);
    BAD("0x10", 1);
    BADR("1_000", 1, 1);
    BAD("[1,2,3 4]", 7);
    BADR("-a", 0, 1);
}

static void test_doubles_fixed(void)
{
    OK("1.0", "1.0");
    OK("1e2", "100.0");
    OK("1E2", "100.0");
    OK("1e+2", "100.0");
    OK("-0.0", "-0.0");
    OK("0.0", "0.0");
    OK("0e0", "0.0");
    OK("-0e5", "-0.0");
    OK("0.000", "0.0");
    OK("1.5e3", "1500.0");
    OK("0.5", "0.5");
    OK("123.456", "123.456");
    OK("0.000001", "0.000001");
    OK("1e-6", "0.000001");
    OK("1e-7", "1e-7");
    OK("0.0000001", "1e-7");
    OK("1.5e-7", "1.5e-7");
    OK("1e21", "1e+21");
    OK("1e20", "100000000000000000000.0");
    OK("1e22", "1e+22");
    OK("-1e21", "-1e+21");
    OK("999999999999999999999.0", "1e+21");
    OK("5e-324", "5e-324");
    OK("4.9e-324", "5e-324");
    OK("1e-400", "0.0");
    OK("-1e-400", "-0.0");
    OK("1.7976931348623157e308", "1.7976931348623157e+308");
    OK("2.2250738585072014e-308", "2.2250738585072014e-308");
    OK("0.1", "0.1");
    OK("0.30000000000000004", "0.30000000000000004");
    OK("1.000", "1.0");
    OK("10.50", "10.5");
    OK("0.1e1", "1.0");
    OK("123e-2", "1.23");
    OK("2.5e-5", "0.000025");
    OK("-1.5", "-1.5");
    OK("9007199254740993.0", "9007199254740992.0");
    OK("1152921504606846976.0", "1152921504606847000.0"); /* 2^60: shortest digits */
    OK("123456789012345678901234.0", "1.2345678901234569e+23");
    OK("9.99999999999999e-7", "9.99999999999999e-7");
    OK("0.00000099", "9.9e-7");
    OK("1.2345e-10", "1.2345e-10");
    OK("1.5e300", "1.5e+300");
    OK("100e-2", "1.0");
    OK("0.00001e1", "0.0001");
    OK("100000000000000000000000000000e-10", "10000000000000000000.0");
    OK("[1.0,1,-0.0,-0]", "[1.0,1,-0.0,0]");
    OK("{\"x\":2.50}", "{\"x\":2.5}");
    /* Very long mantissas still round correctly. */
    OK("0.1000000000000000055511151231257827021181583404541015625", "0.1");
    OK("3.14159265358979323846264338327950288419716939937510582097494459", "3.141592653589793");
}

static void test_doubles_range(void)
{
    BADM("1e400", 0, 5, "number out of range");
    BADM("-1e400", 0, 6, "number out of range");
    BADM("[1e309]", 1, 6, "number out of range");
    BADM("1.7976931348623159e308", 0, 22, "number out of range");
    BADM("{\"a\":[-1.5e99999]}", 6, 16, "number out of range");
    /* Largest finite double rounds down, not to infinity. */
    OK("1.7976931348623158e308", "1.7976931348623157e+308");
}

/* Oracle: the canonical text of a finite double per docs/JSON.md. */
static void oracle_double(double v, char *out, size_t outlen)
{
    char tmp[64];
    if (v == 0) {
        snprintf(out, outlen, "%s", signbit(v) ? "-0.0" : "0.0");
        return;
    }
    /* The fewest digits p for which some p-digit decimal reads back as v:
     * printf's nearest one (glibc rounds exactly: the closest, ties to
     * even) when it does, else the closer of the two next to it that do,
     * as integers m x 10^q; Python's repr of every power of two is the
     * independent check (tests/e2e/test_values.py). */
    int neg = signbit(v) != 0;
    double a = fabs(v);
    char digits[32];
    int nd = 0, e = 0;
    for (int p = 1; p <= 17 && !nd; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, a);
        char *mark = strchr(tmp, 'e');
        int ex = atoi(mark + 1);
        unsigned long long m = 0;
        for (const char *s = tmp; s < mark; s++)
            if (*s != '.')
                m = m * 10 + (unsigned long long)(*s - '0');
        long double best = -1;
        static const int deltas[3] = {0, -1, 1};
        for (int i = 0; i < 3 && !(i > 0 && nd); i++) {
            int delta = deltas[i];
            char cand[64];
            snprintf(cand, sizeof cand, "%llue%d", m + (unsigned long long)(long long)delta, ex - (p - 1));
            if (strtod(cand, NULL) != a)
                continue;
            long double dist = fabsl(strtold(cand, NULL) - (long double)a);
            if (best >= 0 && dist >= best)
                continue;
            best = dist;
            /* digits of m + delta, and the exponent of its first digit */
            char md[32];
            int k = snprintf(md, sizeof md, "%llu", m + (unsigned long long)(long long)delta);
            memcpy(digits, md, (size_t)k + 1);
            nd = k;
            e = ex - (p - 1) + (k - 1);
        }
    }
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    char *o = out;
    size_t left = outlen;
#define EMIT(...)                                          \
    do {                                                   \
        int k_ = snprintf(o, left, __VA_ARGS__);           \
        o += k_;                                           \
        left -= (size_t)k_;                                \
    } while (0)
    if (neg)
        EMIT("-");
    if (a < 1e21 && floor(a) == a) {
        EMIT("%s", digits);
        for (int i = nd - 1; i < e; i++)
            EMIT("0");
        EMIT(".0");
    } else if (a >= 1e-6 && a < 1e21) {
        if (e >= 0) {
            EMIT("%.*s.%s", e + 1, digits, digits + e + 1);
        } else {
            EMIT("0.");
            for (int i = 0; i < -e - 1; i++)
                EMIT("0");
            EMIT("%s", digits);
        }
    } else {
        EMIT("%c", digits[0]);
        if (nd > 1)
            EMIT(".%s", digits + 1);
        EMIT("e%c%d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
#undef EMIT
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* One double through the parser: round-trips, matches the oracle, fixed
 * point. Returns 0 (and prints) on failure. */
static int check_double(double v, kd__buf *out, kd__buf *again)
{
    char in[64], want[64], err[256];
    snprintf(in, sizeof in, "%.17g", v);
    if (!strpbrk(in, ".eE")) /* "%.17g" wrote an integer: make it a double */
        strcat(in, ".0");
    oracle_double(v, want, sizeof want);
    kd__buf_reset(out);
    int rc = kd__json_canonicalize(in, strlen(in), out, err, sizeof err);
    if (rc != KD_OK) {
        fprintf(stderr, "  double %s rejected: %s\n", in, err);
        return 0;
    }
    double back = strtod(out->data, NULL);
    if (memcmp(&back, &v, sizeof v) != 0) {
        fprintf(stderr, "  double %s -> %s does not round-trip\n", in, out->data);
        return 0;
    }
    if (!strpbrk(out->data, ".e")) {
        fprintf(stderr, "  double %s -> %s lost its '.' or exponent\n", in, out->data);
        return 0;
    }
    if (strcmp(out->data, want) != 0) {
        fprintf(stderr, "  double %s -> %s, oracle says %s\n", in, out->data, want);
        return 0;
    }
    kd__buf_reset(again);
    rc = kd__json_canonicalize(out->data, out->len, again, err, sizeof err);
    if (rc != KD_OK || again->len != out->len || memcmp(again->data, out->data, out->len) != 0) {
        fprintf(stderr, "  double %s -> %s is not a fixed point\n", in, out->data);
        return 0;
    }
    return 1;
}

/* Short decimals written in many textual shapes (the parser's fast path
 * takes their digits as they are): the result must be what the oracle
 * gives for the double they denote. */
static void test_doubles_short_decimals(void)
{
    kd__buf out = KD__BUF_INIT;
    char in[96], want[64], err[256];
    int failures = 0;
    for (int i = 0; i < 200000 && failures < 10; i++) {
        int ndig = 1 + (int)(rnd() % 15);
        char digits[24];
        for (int k = 0; k < ndig; k++)
            digits[k] = (char)('0' + rnd() % 10);
        digits[0] = (char)('1' + rnd() % 9);
        digits[ndig] = '\0';
        int shape = (int)(rnd() % 4), exp = (int)(rnd() % 600) - 300;
        int lead = (int)(rnd() % 3), trail = (int)(rnd() % 3);
        switch (shape) {
        case 0: /* d.ddd e±N, with trailing zeros */
            snprintf(in, sizeof in, "%s%c.%s%.*se%d", rnd() % 2 ? "-" : "", digits[0], digits + 1, trail, "000", exp);
            if (ndig == 1)
                snprintf(in, sizeof in, "%c.0%.*sE%+d", digits[0], trail, "000", exp);
            break;
        case 1: /* 0.000ddd */
            snprintf(in, sizeof in, "0.%.*s%s%.*s", lead, "000", digits, trail, "000");
            break;
        case 2: /* ddd.ddd */
            snprintf(in, sizeof in, "%.*s.%s%.*s", ndig / 2 + 1, digits, digits + ndig / 2 + 1, trail, "000");
            if (in[strlen(in) - 1] == '.')
                strcat(in, "0");
            break;
        default: /* ddd e-N: exponent makes it a double */
            snprintf(in, sizeof in, "%se%d", digits, exp % 30);
            break;
        }
        double v = strtod(in, NULL);
        if (isinf(v) || v == 0 || fabs(v) < 1e-300)
            continue;
        oracle_double(v, want, sizeof want);
        kd__buf_reset(&out);
        if (kd__json_canonicalize(in, strlen(in), &out, err, sizeof err) != KD_OK || strcmp(out.data, want) != 0) {
            fprintf(stderr, "  %s -> %s, oracle says %s\n", in, out.data ? out.data : err, want);
            failures++;
        }
    }
    kd__buf_free(&out);
    CHECK_EQ_INT(failures, 0);
}

static void test_doubles_random(void)
{
    kd__buf out = KD__BUF_INIT, again = KD__BUF_INIT;
    int failures = 0, ran = 0;
    for (int i = 0; i < 200000 && failures < 10; i++) {
        uint64_t bits = rnd();
        double v;
        memcpy(&v, &bits, sizeof v);
        if (isnan(v) || isinf(v))
            continue;
        ran++;
        if (!check_double(v, &out, &again))
            failures++;
    }
    /* Doubles of every magnitude with short mantissas: 1.5e-7, 2.5e20... */
    for (int e = -330; e <= 310 && failures < 10; e++) {
        static const char *mant[] = {"1", "1.5", "2.5", "9.999", "7", "1.0000000000000002", "4.9406564584124654"};
        for (size_t m = 0; m < sizeof mant / sizeof *mant; m++) {
            char t[64];
            snprintf(t, sizeof t, "%se%d", mant[m], e);
            double v = strtod(t, NULL);
            if (v == 0 || isinf(v))
                continue;
            ran++;
            if (!check_double(v, &out, &again) || !check_double(-v, &out, &again))
                failures++;
        }
    }
    /* Every power of two (asymmetric rounding intervals). */
    for (int e = -1074; e <= 1023 && failures < 10; e++) {
        ran++;
        if (!check_double(ldexp(1.0, e), &out, &again))
            failures++;
    }
    kd__buf_free(&out);
    kd__buf_free(&again);
    fprintf(stderr, "    %d doubles checked\n", ran);
    CHECK_EQ_INT(failures, 0);
}

/* ------------------------------------------------------------------------
 * Objects
 * ---------------------------------------------------------------------- */

static void test_object_order(void)
{
    OK("{\"b\":1,\"a\":2}", "{\"a\":2,\"b\":1}");
    OK("{\"b\":1,\"aa\":2,\"a\":3}", "{\"a\":3,\"aa\":2,\"b\":1}");
    OK("{\"aa\":1,\"a\":2,\"b\":3,\"ab\":4,\"\":5}", "{\"\":5,\"a\":2,\"aa\":1,\"ab\":4,\"b\":3}");
    OK("{\"B\":1,\"a\":2,\"A\":3,\"_\":4,\"1\":5}", "{\"1\":5,\"A\":3,\"B\":1,\"_\":4,\"a\":2}");
    OK("{\"10\":1,\"9\":2,\"1\":3}", "{\"1\":3,\"10\":1,\"9\":2}");
    /* Byte-wise UTF-8: z (7a) < é (c3 a9) < éx < 😀 (f0 9f ...). */
    OK("{\"\xf0\x9f\x98\x80\":3,\"\xc3\xa9x\":4,\"z\":2,\"\xc3\xa9\":1}",
       "{\"z\":2,\"\xc3\xa9\":1,\"\xc3\xa9x\":4,\"\xf0\x9f\x98\x80\":3}");
    /* U+E000 < U+FFFF < U+10000 in UTF-8 byte order (UTF-16 order differs). */
    OK("{\"\\ud800\\udc00\":1,\"\\uffff\":2,\"\\ue000\":3}",
       "{\"\xee\x80\x80\":3,\"\xef\xbf\xbf\":2,\"\xf0\x90\x80\x80\":1}");
    /* Sorted by the unescaped name. */
    OK("{\"\\u0062\":1,\"a\":2}", "{\"a\":2,\"b\":1}");
    OK("{\"a\\u0000\":1,\"a\":2}", "{\"a\":2,\"a\\u0000\":1}");
    OK("{\"a\\u0000b\":1,\"a\\u0000\":2,\"a\\u0001\":3}", "{\"a\\u0000\":2,\"a\\u0000b\":1,\"a\\u0001\":3}");
    OK("{\"\\\"\":1,\"!\":2,\"#\":3}", "{\"!\":2,\"\\\"\":1,\"#\":3}");
    OK("{\"\\\\\":1,\"]\":2,\"[\":3}", "{\"[\":3,\"\\\\\":1,\"]\":2}");
    OK("{\"\\n\":1,\"\\t\":2,\" \":3}", "{\"\\t\":2,\"\\n\":1,\" \":3}");
    OK("{\"\x7f\":1,\"\xc2\x80\":2,\"~\":3}", "{\"~\":3,\"\x7f\":1,\"\xc2\x80\":2}");
    /* Nested objects are sorted too, arrays keep their order. */
    OK("{\"z\":{\"y\":1,\"x\":[{\"b\":1,\"a\":2},3]},\"a\":[3,2,1]}",
       "{\"a\":[3,2,1],\"z\":{\"x\":[{\"a\":2,\"b\":1},3],\"y\":1}}");
}

static void test_object_duplicates(void)
{
    OK("{\"a\":1,\"a\":2}", "{\"a\":2}");
    OK("{\"a\":1,\"b\":2,\"a\":3}", "{\"a\":3,\"b\":2}");
    OK("{\"a\":1,\"\\u0061\":2}", "{\"a\":2}");
    OK("{\"\\u0061\":1,\"a\":2}", "{\"a\":2}");
    OK("{\"a\":{\"x\":1},\"a\":[2]}", "{\"a\":[2]}");
    OK("{\"a\":[1],\"a\":{\"y\":2,\"x\":1}}", "{\"a\":{\"x\":1,\"y\":2}}");
    OK("{\"\":1,\"\":2}", "{\"\":2}");
    OK("{\"a\":1,\"a\":2,\"a\":3,\"b\":0,\"a\":4}", "{\"a\":4,\"b\":0}");
    OK("{\"x\":{\"a\":1,\"a\":null}}", "{\"x\":{\"a\":null}}");
    /* Not duplicates: a prefix, or a different escape value. */
    OK("{\"a\":1,\"a\\u0000\":2}", "{\"a\":1,\"a\\u0000\":2}");
    /* An invalid value in a member that is later overridden is still an error. */
    BADR("{\"a\":tru,\"a\":1}", 5, 8);
    /* Many keys in reverse order; many duplicates. */
    {
        kd__buf in = KD__BUF_INIT, want = KD__BUF_INIT;
        kd__buf_putc(&in, '{');
        for (int i = 2999; i >= 0; i--)
            kd__buf_printf(&in, "%s\"k%05d\":%d", i == 2999 ? "" : ",", i, i);
        kd__buf_putc(&in, '}');
        kd__buf_putc(&want, '{');
        for (int i = 0; i < 3000; i++)
            kd__buf_printf(&want, "%s\"k%05d\":%d", i ? "," : "", i, i);
        kd__buf_putc(&want, '}');
        int good = ok_(in.data, in.len, want.data, want.len, __LINE__);
        kd__buf_free(&in);
        kd__buf_free(&want);
        CHECK(good);
    }
    {
        kd__buf in = KD__BUF_INIT;
        kd__buf_putc(&in, '{');
        for (int i = 0; i < 3000; i++)
            kd__buf_printf(&in, "%s\"k%d\":%d", i ? "," : "", i % 7, i);
        kd__buf_putc(&in, '}');
        const char *want = "{\"k0\":2996,\"k1\":2997,\"k2\":2998,\"k3\":2999,\"k4\":2993,\"k5\":2994,\"k6\":2995}";
        int good = ok_(in.data, in.len, want, strlen(want), __LINE__);
        kd__buf_free(&in);
        CHECK(good);
    }
}

/* ------------------------------------------------------------------------
 * Strings and escapes
 * ---------------------------------------------------------------------- */

static void test_string_escapes(void)
{
    OK("\"\\u0000\"", "\"\\u0000\"");
    OK("\"\\u001f\"", "\"\\u001f\"");
    OK("\"\\u001F\"", "\"\\u001f\"");
    OK("\"a\\u0000b\"", "\"a\\u0000b\"");
    OK("\"\\n\\t\\b\\f\\r\"", "\"\\n\\t\\b\\f\\r\"");
    OK("\"\\u000a\\u0009\\u0008\\u000C\\u000d\"", "\"\\n\\t\\b\\f\\r\"");
    OK("\"\\/\"", "\"/\"");
    SAME("\"/\"");
    SAME("\"\\\"\\\\\"");
    OK("\"\\u0022\\u005c\\u005C\"", "\"\\\"\\\\\\\\\"");
    OK("\"\\u00e9\"", "\"\xc3\xa9\"");
    OK("\"\\u00E9\"", "\"\xc3\xa9\"");
    OK("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");
    OK("\"\\uD83D\\uDE00\"", "\"\xf0\x9f\x98\x80\"");
    OK("\"\\udbff\\udfff\"", "\"\xf4\x8f\xbf\xbf\"");
    OK("\"\\ud800\\udc00\"", "\"\xf0\x90\x80\x80\"");
    OK("\"\\u007f\"", "\"\x7f\"");
    SAME("\"\x7f\"");
    OK("\"\\u0041\\u0020\"", "\"A \"");
    OK("\"\\u2028\\u2029\"", "\"\xe2\x80\xa8\xe2\x80\xa9\"");
    OK("\"\\uffff\\ufffe\"", "\"\xef\xbf\xbf\xef\xbf\xbe\"");
    OK("\"\\u0080\\u07ff\\u0800\"", "\"\xc2\x80\xdf\xbf\xe0\xa0\x80\"");
    SAME("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    SAME("\"<script>'&'</script>\"");
    /* Every control character: the five short forms, \u00xx otherwise. */
    for (int c = 0; c < 0x20; c++) {
        char in[16], want[16];
        snprintf(in, sizeof in, "\"\\u%04X\"", c);
        switch (c) {
        case '\b': strcpy(want, "\"\\b\""); break;
        case '\f': strcpy(want, "\"\\f\""); break;
        case '\n': strcpy(want, "\"\\n\""); break;
        case '\r': strcpy(want, "\"\\r\""); break;
        case '\t': strcpy(want, "\"\\t\""); break;
        default: snprintf(want, sizeof want, "\"\\u%04x\"", c);
        }
        OKN(in, strlen(in), want, strlen(want));
    }
    /* Every other \u escape of the BMP (surrogates aside) becomes raw UTF-8
     * and, going through the escape-free form, stays a fixed point. */
    for (unsigned cp = 0x20; cp < 0x10000; cp++) {
        if (cp >= 0xd800 && cp < 0xe000)
            continue;
        char in[16], want[16];
        snprintf(in, sizeof in, "\"\\u%04x\"", cp);
        size_t wl = 0;
        want[wl++] = '"';
        if (cp == '"' || cp == '\\') {
            want[wl++] = '\\';
            want[wl++] = (char)cp;
        } else if (cp < 0x80) {
            want[wl++] = (char)cp;
        } else if (cp < 0x800) {
            want[wl++] = (char)(0xc0 | (cp >> 6));
            want[wl++] = (char)(0x80 | (cp & 0x3f));
        } else {
            want[wl++] = (char)(0xe0 | (cp >> 12));
            want[wl++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            want[wl++] = (char)(0x80 | (cp & 0x3f));
        }
        want[wl++] = '"';
        if (!ok_(in, strlen(in), want, wl, __LINE__)) {
            fprintf(stderr, "    code point U+%04X\n", cp);
            CHECK(0);
        }
    }
}

static void test_string_errors(void)
{
    /* Lone surrogates: the offset is somewhere in the escape(s). */
    BADR("\"\\ud800\"", 1, 7);
    BADR("\"\\ud800abc\"", 1, 7);
    BADR("\"\\udc00\"", 1, 7);
    BADR("\"\\uDFAA\"", 1, 7);
    BADR("\"\\ud800\\u0041\"", 1, 13);
    BADR("\"\\ud800\\ud800\"", 1, 13);
    BADR("\"\\udc00\\ud800\"", 1, 7);
    BADR("\"\\ud800\\n\"", 1, 8);
    BADR("\"\\ud800\\\"", 1, 8);
    BADR("[\"\\uD888\\u1234\"]", 2, 14);
    BADR("{\"\\uDFAA\":0}", 2, 8);
    BADR("\"\\ud800", 1, 7);
    /* Bad escapes. */
    BADR("\"\\x\"", 1, 2);
    BADR("\"\\'\"", 1, 2);
    BADR("\"\\U0041\"", 1, 2);
    BADR("\"\\u12G4\"", 1, 5);
    BADR("\"\\u12\"", 1, 5);
    BADR("\"\\u\"", 1, 3);
    BADR("\"\\", 1, 2);
    BADR("\"\\a\"", 1, 2);
    BADR("\"\\0\"", 1, 2);
    /* Raw control characters inside strings. */
    BAD("\"a\x01\"", 2);
    BAD("\"\n\"", 1);
    BAD("\"\t\"", 1);
    BAD("\"ab\x1f\"", 3);
    BADN("\"\0\"", 3, 1, 1);
    BADN("{\"a\0\":1}", 8, 3, 3);
}

/* ------------------------------------------------------------------------
 * UTF-8
 * ---------------------------------------------------------------------- */

/* Reference validator: 1 if s[0..n) is valid UTF-8 (RFC 3629). */
static int oracle_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        unsigned need, cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i - 1 < need)
            return 0;
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

static void test_utf8_valid_table(void)
{
    static const struct {
        const char *s;
        int valid;
    } t[] = {
        {"", 1},
        {"abc", 1},
        {"\x7f", 1},
        {"\xc2\x80", 1},
        {"\xdf\xbf", 1},
        {"\xe0\xa0\x80", 1},
        {"\xed\x9f\xbf", 1},
        {"\xee\x80\x80", 1},
        {"\xef\xbf\xbf", 1},
        {"\xef\xbb\xbf", 1},
        {"\xf0\x90\x80\x80", 1},
        {"\xf4\x8f\xbf\xbf", 1},
        {"a\xc3\xa9z\xf0\x9f\x98\x80", 1},
        {"\x80", 0},
        {"\xbf", 0},
        {"\xc0\x80", 0},     /* overlong NUL */
        {"\xc1\xbf", 0},     /* overlong */
        {"\xc0\xaf", 0},
        {"\xc2", 0},         /* truncated */
        {"\xc2\x41", 0},
        {"\xe0\x80\x80", 0}, /* overlong */
        {"\xe0\x9f\xbf", 0},
        {"\xed\xa0\x80", 0}, /* U+D800 */
        {"\xed\xbf\xbf", 0}, /* U+DFFF */
        {"\xed\xa0\x80\xed\xb0\x80", 0}, /* CESU-8 pair */
        {"\xe2\x82", 0},
        {"\xe2\x28\xa1", 0},
        {"\xf0\x80\x80\x80", 0},
        {"\xf0\x8f\xbf\xbf", 0},
        {"\xf4\x90\x80\x80", 0}, /* > U+10FFFF */
        {"\xf5\x80\x80\x80", 0},
        {"\xf0\x9f\x98", 0},
        {"\xf8\x88\x80\x80\x80", 0},
        {"\xfc\x80\x80\x80\x80\x80", 0},
        {"\xfe", 0},
        {"\xff", 0},
        {"abc\xff", 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        int got = kd__utf8_valid(t[i].s, strlen(t[i].s)) ? 1 : 0;
        if (got != t[i].valid) {
            show("utf8", t[i].s, strlen(t[i].s));
            CHECK_EQ_INT(got, t[i].valid);
        }
    }
    /* U+0000 is valid UTF-8 (names refuse NUL separately). */
    CHECK(kd__utf8_valid("a\0b", 3));
}

static void test_utf8_exhaustive(void)
{
    unsigned char s[4];
    long bad = 0;
    /* Every 1-, 2- and 3-byte sequence. */
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        if ((kd__utf8_valid((char *)s, 1) ? 1 : 0) != oracle_utf8(s, 1) && bad++ < 5)
            show("1-byte mismatch", (char *)s, 1);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            if ((kd__utf8_valid((char *)s, 2) ? 1 : 0) != oracle_utf8(s, 2) && bad++ < 5)
                show("2-byte mismatch", (char *)s, 2);
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (unsigned char)c;
                if ((kd__utf8_valid((char *)s, 3) ? 1 : 0) != oracle_utf8(s, 3) && bad++ < 5)
                    show("3-byte mismatch", (char *)s, 3);
            }
        }
    }
    /* Every 4-byte sequence starting F0..F4 with continuation bytes, and
     * random others. */
    for (unsigned a = 0xf0; a <= 0xf4; a++)
        for (unsigned b = 0x80; b < 0xc0; b++)
            for (unsigned c = 0x7f; c <= 0xc0; c++)
                for (unsigned d = 0x7f; d <= 0xc0; d++) {
                    s[0] = (unsigned char)a, s[1] = (unsigned char)b;
                    s[2] = (unsigned char)c, s[3] = (unsigned char)d;
                    if ((kd__utf8_valid((char *)s, 4) ? 1 : 0) != oracle_utf8(s, 4) && bad++ < 5)
                        show("4-byte mismatch", (char *)s, 4);
                }
    for (int i = 0; i < 1000000; i++) {
        uint64_t r = rnd();
        memcpy(s, &r, 4);
        if ((kd__utf8_valid((char *)s, 4) ? 1 : 0) != oracle_utf8(s, 4) && bad++ < 5)
            show("4-byte mismatch", (char *)s, 4);
    }
    CHECK_EQ_INT(bad, 0);
}

/* Strings of raw bytes through the parser agree with the oracle. */
static void test_utf8_in_strings(void)
{
    long bad = 0;
    unsigned char in[8];
    for (unsigned a = 0x20; a < 256; a++) {
        for (unsigned b = 0x20; b < 256; b++) {
            if (a == '"' || a == '\\' || b == '"' || b == '\\')
                continue;
            in[0] = '"', in[1] = (unsigned char)a, in[2] = (unsigned char)b, in[3] = '"';
            int want = oracle_utf8(in + 1, 2);
            if (want) {
                if (!ok_((char *)in, 4, (char *)in, 4, __LINE__) && bad++ < 5)
                    fprintf(stderr, "    (valid pair %02x %02x)\n", a, b);
            } else {
                /* The offset is within the two bytes or at the closing quote
                 * that ends a truncated sequence. */
                if (!bad_((char *)in, 4, 1, 3, NULL, __LINE__) && bad++ < 5)
                    fprintf(stderr, "    (invalid pair %02x %02x)\n", a, b);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* The named cases. */
    BADR("\"\xc0\x80\"", 1, 2);
    BADR("\"\xed\xa0\x80\"", 1, 3);
    BADR("\"\xf4\x90\x80\x80\"", 1, 4);
    BADR("\"\xe2\x82\"", 1, 3);
    BADR("\"\xf0\x9f\x98\"", 1, 4);
    BADR("\"abc\xe2\x82", 4, 6);
    BAD("\"\xff\"", 1);
    BAD("\"\x80\"", 1);
    BADR("[\"\xe6\x97\xa5\xd1\x88\xfa\"]", 7, 7);
    BADR("{\"\xc3\":1}", 2, 3);
    /* Outside strings any non-ASCII byte is simply unexpected. */
    BAD("\xc3\xa9", 0);
    BAD("[1,\xf0\x9f\x98\x80]", 3);
}

/* ------------------------------------------------------------------------
 * kd__json_write_string
 * ---------------------------------------------------------------------- */

static int ws_(const char *s, size_t n, const char *want, int line)
{
    kd__buf b = KD__BUF_INIT;
    kd__buf_puts(&b, PRE);
    int rc = kd__json_write_string(&b, s, n);
    int good = rc == KD_OK && b.len == PRELEN + strlen(want) && memcmp(b.data, PRE, PRELEN) == 0 &&
               memcmp(b.data + PRELEN, want, strlen(want)) == 0;
    if (!good) {
        fprintf(stderr, "  line %d: kd__json_write_string rc %d\n", line, rc);
        show("input", s, n);
        show("want", want, strlen(want));
        if (rc == KD_OK)
            show("got", b.data + PRELEN, b.len - PRELEN);
    } else {
        /* What it writes is canonical. */
        good = ok_(b.data + PRELEN, b.len - PRELEN, want, strlen(want), line);
    }
    kd__buf_free(&b);
    return good;
}
#define WS(s, want) CHECK(ws_((s), sizeof(s) - 1, (want), __LINE__))

static void test_write_string(void)
{
    WS("", "\"\"");
    WS("abc", "\"abc\"");
    WS("a\"b", "\"a\\\"b\"");
    WS("a\\b", "\"a\\\\b\"");
    WS("/", "\"/\"");
    WS("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"");
    WS("\x01\x1f\x0b", "\"\\u0001\\u001f\\u000b\"");
    WS("a\0b", "\"a\\u0000b\"");
    WS("\x7f", "\"\x7f\"");
    WS("\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8", "\"\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8\"");
    WS("\xef\xbb\xbf", "\"\xef\xbb\xbf\"");
    /* Invalid UTF-8 is refused. */
    static const char *badv[] = {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe2\x82", "\x80"};
    for (size_t i = 0; i < sizeof badv / sizeof *badv; i++) {
        kd__buf b = KD__BUF_INIT;
        int rc = kd__json_write_string(&b, badv[i], strlen(badv[i]));
        kd__buf_free(&b);
        CHECK_RC(rc, KD_EINVALID);
    }
    /* All 128 ASCII characters, then parse back. */
    {
        char all[128];
        for (int i = 0; i < 128; i++)
            all[i] = (char)i;
        kd__buf b = KD__BUF_INIT, c = KD__BUF_INIT;
        char err[256];
        CHECK_RC(kd__json_write_string(&b, all, sizeof all), KD_OK);
        int rc = kd__json_canonicalize(b.data, b.len, &c, err, sizeof err);
        int same = rc == KD_OK && c.len == b.len && memcmp(c.data, b.data, b.len) == 0;
        kd__buf_free(&b);
        kd__buf_free(&c);
        CHECK(same);
    }
}

/* ------------------------------------------------------------------------
 * Random documents: messy form -> canonical form known by construction
 * ---------------------------------------------------------------------- */

static void ws_rand(kd__buf *b)
{
    static const char w[] = " \t\n\r";
    int n = (int)(rnd() % 4);
    if (rnd() % 2)
        n = 0;
    for (int i = 0; i < n; i++)
        kd__buf_putc(b, w[rnd() % 4]);
}

/* A random string (of a small alphabet so names collide and share prefixes):
 * its raw form goes to `raw` (UTF-8), the canonical literal to `canon`, a
 * messy literal (random \u escapes, \/) to `messy`. */
static void gen_string(kd__buf *raw, kd__buf *canon_out, kd__buf *messy)
{
    static const char *alpha[] = {"a", "b", "aa", "/", "\"", "\\", "\n", "\x01", "\xc3\xa9", "\xf0\x9f\x98\x80", "\x7f", "\xe2\x80\xa8"};
    int n = (int)(rnd() % 4);
    kd__buf_putc(canon_out, '"');
    kd__buf_putc(messy, '"');
    for (int i = 0; i < n; i++) {
        const char *u = alpha[rnd() % (sizeof alpha / sizeof *alpha)];
        kd__buf_puts(raw, u);
        /* canonical */
        if (*u == '"')
            kd__buf_puts(canon_out, "\\\"");
        else if (*u == '\\')
            kd__buf_puts(canon_out, "\\\\");
        else if (*u == '\n')
            kd__buf_puts(canon_out, "\\n");
        else if (*u == '\x01')
            kd__buf_puts(canon_out, "\\u0001");
        else
            kd__buf_puts(canon_out, u);
        /* messy */
        int esc = (int)(rnd() % 3) == 0;
        if (!strcmp(u, "\xf0\x9f\x98\x80"))
            kd__buf_puts(messy, esc ? "\\uD83D\\uDE00" : u);
        else if (!strcmp(u, "\xc3\xa9"))
            kd__buf_puts(messy, esc ? "\\u00E9" : u);
        else if (!strcmp(u, "\xe2\x80\xa8"))
            kd__buf_puts(messy, esc ? "\\u2028" : u);
        else if (*u == '"')
            kd__buf_puts(messy, esc ? "\\u0022" : "\\\"");
        else if (*u == '\\')
            kd__buf_puts(messy, esc ? "\\u005c" : "\\\\");
        else if (*u == '\n')
            kd__buf_puts(messy, esc ? "\\u000A" : "\\n");
        else if (*u == '\x01')
            kd__buf_puts(messy, "\\u0001");
        else if (*u == '/')
            kd__buf_puts(messy, esc ? "\\/" : "/");
        else if (esc && strlen(u) == 1)
            kd__buf_printf(messy, "\\u%04x", (unsigned char)*u);
        else
            kd__buf_puts(messy, u);
    }
    kd__buf_putc(canon_out, '"');
    kd__buf_putc(messy, '"');
}

typedef struct member {
    kd__buf name;  /* raw bytes */
    kd__buf cname; /* canonical literal */
    kd__buf mname; /* messy literal */
    kd__buf cval, mval;
} member;

static int member_cmp(const void *a, const void *b)
{
    const member *x = a, *y = b;
    size_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
    int c = n ? memcmp(x->name.data, y->name.data, n) : 0;
    if (c)
        return c;
    return (x->name.len > y->name.len) - (x->name.len < y->name.len);
}

static void gen_value(int depth, kd__buf *c, kd__buf *m);

static void gen_object(int depth, kd__buf *c, kd__buf *m)
{
    int n = (int)(rnd() % 6);
    member *mem = calloc((size_t)n + 1, sizeof *mem);
    int k = 0;
    for (int i = 0; i < n; i++) {
        member *x = &mem[k];
        memset(x, 0, sizeof *x);
        gen_string(&x->name, &x->cname, &x->mname);
        gen_value(depth + 1, &x->cval, &x->mval);
        /* Unique names in the expected output: a repeated name replaces the
         * earlier member (last wins), so drop the earlier one here. */
        int dup = -1;
        for (int j = 0; j < k; j++)
            if (mem[j].name.len == x->name.len &&
                (x->name.len == 0 || memcmp(mem[j].name.data, x->name.data, x->name.len) == 0))
                dup = j;
        if (dup >= 0) {
            /* messy form keeps both, in order: emit the old one now */
            member *o = &mem[dup];
            kd__buf_free(&o->name);
            kd__buf_free(&o->cname);
            kd__buf_free(&o->cval);
            /* keep o's messy text as a prefix to be emitted before */
            kd__buf pre = KD__BUF_INIT;
            kd__buf_append(&pre, o->mname.data, o->mname.len);
            kd__buf_putc(&pre, ':');
            kd__buf_append(&pre, o->mval.data, o->mval.len);
            kd__buf_putc(&pre, ',');
            kd__buf_append(&pre, x->mname.data, x->mname.len);
            kd__buf_free(&o->mname);
            kd__buf_free(&o->mval);
            kd__buf_free(&x->mname);
            x->mname = pre;
            *o = *x;
            memset(x, 0, sizeof *x);
        } else {
            k++;
        }
    }
    /* messy: in generation order (members kept in their slot order) */
    kd__buf_putc(m, '{');
    ws_rand(m);
    for (int i = 0; i < k; i++) {
        if (i) {
            kd__buf_putc(m, ',');
            ws_rand(m);
        }
        kd__buf_append(m, mem[i].mname.data, mem[i].mname.len);
        ws_rand(m);
        kd__buf_putc(m, ':');
        ws_rand(m);
        kd__buf_append(m, mem[i].mval.data, mem[i].mval.len);
        ws_rand(m);
    }
    kd__buf_putc(m, '}');
    qsort(mem, (size_t)k, sizeof *mem, member_cmp);
    kd__buf_putc(c, '{');
    for (int i = 0; i < k; i++) {
        if (i)
            kd__buf_putc(c, ',');
        kd__buf_append(c, mem[i].cname.data, mem[i].cname.len);
        kd__buf_putc(c, ':');
        kd__buf_append(c, mem[i].cval.data, mem[i].cval.len);
    }
    kd__buf_putc(c, '}');
    for (int i = 0; i <= n; i++) {
        kd__buf_free(&mem[i].name);
        kd__buf_free(&mem[i].cname);
        kd__buf_free(&mem[i].mname);
        kd__buf_free(&mem[i].cval);
        kd__buf_free(&mem[i].mval);
    }
    free(mem);
}

static void gen_value(int depth, kd__buf *c, kd__buf *m)
{
    static const char *nums[][2] = {
        {"0", "0"}, {"-0", "0"}, {"12345678901234567890123", "12345678901234567890123"},
        {"1.0", "1.0"}, {"1E2", "100.0"}, {"-0.0", "-0.0"}, {"0.5e-6", "5e-7"},
        {"2.50", "2.5"}, {"1e21", "1e+21"}, {"-7", "-7"},
    };
    int kind = (int)(rnd() % (depth > 6 ? 4 : 6));
    switch (kind) {
    case 0: {
        static const char *lit[] = {"true", "false", "null"};
        const char *l = lit[rnd() % 3];
        kd__buf_puts(c, l);
        kd__buf_puts(m, l);
        break;
    }
    case 1: {
        size_t i = rnd() % (sizeof nums / sizeof *nums);
        kd__buf_puts(c, nums[i][1]);
        kd__buf_puts(m, nums[i][0]);
        break;
    }
    case 2:
    case 3: {
        kd__buf raw = KD__BUF_INIT;
        gen_string(&raw, c, m);
        kd__buf_free(&raw);
        break;
    }
    case 4: {
        int n = (int)(rnd() % 5);
        kd__buf_putc(c, '[');
        kd__buf_putc(m, '[');
        ws_rand(m);
        for (int i = 0; i < n; i++) {
            if (i) {
                kd__buf_putc(c, ',');
                kd__buf_putc(m, ',');
                ws_rand(m);
            }
            gen_value(depth + 1, c, m);
            ws_rand(m);
        }
        kd__buf_putc(c, ']');
        kd__buf_putc(m, ']');
        break;
    }
    default:
        gen_object(depth, c, m);
    }
}

static void test_random_documents(void)
{
    int bad = 0;
    for (int i = 0; i < 20000 && bad < 5; i++) {
        kd__buf c = KD__BUF_INIT, m = KD__BUF_INIT;
        ws_rand(&m);
        gen_value(0, &c, &m);
        ws_rand(&m);
        if (!ok_(m.data, m.len, c.data, c.len, __LINE__))
            bad++;
        kd__buf_free(&c);
        kd__buf_free(&m);
    }
    CHECK_EQ_INT(bad, 0);
}

/* Every prefix of a valid document is rejected, never read past its end. */
static void test_prefixes(void)
{
    static const char doc[] = "\xef\xbb\xbf{\"a\\u00e9\":[1,-2.5e-3,true,false,null,\"x\\ud83d\\ude00\xc3\xa9\"],\"b\":{}}";
    size_t n = sizeof doc - 1;
    for (size_t k = 0; k < n; k++) {
        char *p = malloc(k ? k : 1); /* exact size so ASan sees any overread */
        memcpy(p, doc, k);
        int good = bad_(p, k, 0, (long)k, NULL, __LINE__);
        free(p);
        if (!good)
            fprintf(stderr, "    prefix of %zu bytes\n", k);
        CHECK(good);
    }
    char *p = malloc(n);
    memcpy(p, doc, n);
    kd__buf out = KD__BUF_INIT;
    char err[256];
    int rc = kd__json_canonicalize(p, n, &out, err, sizeof err);
    free(p);
    kd__buf_free(&out);
    CHECK_RC(rc, KD_OK);
}

/* A tiny error buffer is cut, never overrun; a NULL one is allowed. */
static void test_error_buffer(void)
{
    kd__buf out = KD__BUF_INIT;
    char err[8];
    memset(err, 'Z', sizeof err);
    CHECK_RC(kd__json_canonicalize("[1,]", 4, &out, err, 5), KD_EINVALID);
    CHECK(memchr(err, '\0', 5) != NULL);
    CHECK(err[5] == 'Z');
    CHECK_RC(kd__json_canonicalize("[1,]", 4, &out, NULL, 0), KD_EINVALID);
    memset(err, 'Z', sizeof err);
    CHECK_RC(kd__json_canonicalize("[1,]", 4, &out, err, 0), KD_EINVALID);
    CHECK(err[0] == 'Z');
    CHECK_EQ_INT(out.len, 0);
    kd__buf_free(&out);
}

/* ------------------------------------------------------------------------
 * Public helpers
 * ---------------------------------------------------------------------- */

static void test_public_canonical(void)
{
    char *out = (char *)1;
    size_t outlen = 99;
    char err[256];
    CHECK_RC(kd_json_canonical("{ \"b\" : [1, 2.50], \"a\" : null }", 31, &out, &outlen, err, sizeof err), KD_OK);
    CHECK_EQ_STR(out, "{\"a\":null,\"b\":[1,2.5]}");
    CHECK_EQ_INT(outlen, strlen(out));
    kd_free(out);

    CHECK_RC(kd_json_canonical("1", 1, &out, NULL, NULL, 0), KD_OK);
    CHECK_EQ_STR(out, "1");
    kd_free(out);

    out = (char *)1;
    outlen = 99;
    CHECK_RC(kd_json_canonical("[1,]", 4, &out, &outlen, err, sizeof err), KD_EINVALID);
    CHECK(out == NULL);
    CHECK_EQ_INT(outlen, 0);
    CHECK_EQ_INT(msg_offset(err), 3);

    CHECK_RC(kd_json_canonical("", 0, &out, &outlen, err, sizeof err), KD_EINVALID);
    CHECK_EQ_INT(msg_offset(err), 0);
    CHECK_RC(kd_json_canonical(NULL, 0, &out, &outlen, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_json_canonical(NULL, 5, &out, &outlen, err, sizeof err), KD_EINVALID);
    CHECK(out == NULL);
    CHECK_RC(kd_json_canonical("1", 1, NULL, &outlen, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_json_canonical("[1e999]", 7, &out, &outlen, NULL, 0), KD_EINVALID);
    CHECK_RC(kd_json_canonical("[1e999]", 7, &out, &outlen, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "number out of range") != NULL);

    /* Small errbuf: cut and terminated. */
    char small[6];
    memset(small, 'Z', sizeof small);
    CHECK_RC(kd_json_canonical("x", 1, &out, &outlen, small, 4), KD_EINVALID);
    CHECK(memchr(small, '\0', 4) != NULL);
    CHECK(small[4] == 'Z');

    /* Embedded NUL in a string is escaped; the result is NUL-terminated. */
    CHECK_RC(kd_json_canonical("\"a\\u0000b\"", 10, &out, &outlen, err, sizeof err), KD_OK);
    CHECK_EQ_STR(out, "\"a\\u0000b\"");
    kd_free(out);
}

static void test_public_quote(void)
{
    char *out = NULL;
    size_t outlen = 0;
    CHECK_RC(kd_json_quote("a\"b\\\n/\xc3\xa9", 8, &out, &outlen), KD_OK);
    CHECK_EQ_STR(out, "\"a\\\"b\\\\\\n/\xc3\xa9\"");
    CHECK_EQ_INT(outlen, strlen(out));
    kd_free(out);
    CHECK_RC(kd_json_quote("", 0, &out, &outlen), KD_OK);
    CHECK_EQ_STR(out, "\"\"");
    kd_free(out);
    CHECK_RC(kd_json_quote(NULL, 0, &out, NULL), KD_OK);
    CHECK_EQ_STR(out, "\"\"");
    kd_free(out);
    CHECK_RC(kd_json_quote("a\0b", 3, &out, &outlen), KD_OK);
    CHECK_EQ_STR(out, "\"a\\u0000b\"");
    kd_free(out);
    out = (char *)1;
    CHECK_RC(kd_json_quote("\xff", 1, &out, &outlen), KD_EINVALID);
    CHECK(out == NULL);
    CHECK_EQ_INT(outlen, 0);
    CHECK_RC(kd_json_quote("x", 1, NULL, NULL), KD_EINVALID);
}

static void test_public_version_json(void)
{
    kd_version v;
    memset(&v, 0, sizeof v);
    memset(v.version_id, 'a', 64);
    memset(v.write_id, 'b', 64);
    memset(v.previous_write_id, 'c', 64);
    v.timestamp = INT64_C(1767323045123456789); /* 2026-01-02T03:04:05.123456789Z */
    char *out = NULL;
    size_t outlen = 0;
    const char *val = "{\"b\": 1, \"a\":2}"; /* copied as given, not reformatted */
    CHECK_RC(kd_version_json("users", "al\"ice/\xc3\xa9", val, strlen(val), &v, &out, &outlen), KD_OK);
    char want[1024];
    snprintf(want, sizeof want,
             "{\"namespace\":\"users\",\"key\":\"al\\\"ice/\xc3\xa9\",\"value\":{\"b\": 1, \"a\":2},"
             "\"version_id\":\"%.64s\",\"write_id\":\"%.64s\",\"previous_write_id\":\"%.64s\","
             "\"timestamp\":\"2026-01-02T03:04:05.123456789Z\",\"deleted\":false}",
             v.version_id, v.write_id, v.previous_write_id);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(outlen, strlen(want));
    /* It is one line of valid JSON. */
    char *canon_out = NULL;
    char err[256];
    CHECK_RC(kd_json_canonical(out, outlen, &canon_out, NULL, err, sizeof err), KD_OK);
    CHECK(strchr(out, '\n') == NULL);
    kd_free(canon_out);
    kd_free(out);

    /* Tombstone: no value, no version_id, first version (no parent). */
    v.version_id[0] = '\0';
    v.previous_write_id[0] = '\0';
    v.deleted = 1;
    v.timestamp = 0;
    CHECK_RC(kd_version_json("n", "k", NULL, 0, &v, &out, &outlen), KD_OK);
    snprintf(want, sizeof want,
             "{\"namespace\":\"n\",\"key\":\"k\",\"value\":null,\"version_id\":null,\"write_id\":\"%.64s\","
             "\"previous_write_id\":null,\"timestamp\":\"1970-01-01T00:00:00.000000000Z\",\"deleted\":true}",
             v.write_id);
    CHECK_EQ_STR(out, want);
    kd_free(out);

    /* Negative timestamps and the extremes of int64 still format. */
    v.timestamp = -1;
    CHECK_RC(kd_version_json("n", "k", "1", 1, &v, &out, &outlen), KD_OK);
    CHECK(strstr(out, "\"timestamp\":\"1969-12-31T23:59:59.999999999Z\"") != NULL);
    CHECK(strstr(out, "\"value\":1,") != NULL);
    kd_free(out);
    v.timestamp = INT64_MIN;
    CHECK_RC(kd_version_json("n", "k", "1", 1, &v, &out, &outlen), KD_OK);
    kd_free(out);
    v.timestamp = INT64_MAX;
    CHECK_RC(kd_version_json("n", "k", "1", 1, &v, &out, &outlen), KD_OK);
    kd_free(out);

    /* Misuse and invalid names. */
    out = (char *)1;
    CHECK_RC(kd_version_json("n\xff", "k", NULL, 0, &v, &out, &outlen), KD_EINVALID);
    CHECK(out == NULL);
    CHECK_RC(kd_version_json(NULL, "k", NULL, 0, &v, &out, &outlen), KD_EINVALID);
    CHECK_RC(kd_version_json("n", "k", NULL, 0, NULL, &out, &outlen), KD_EINVALID);
    CHECK_RC(kd_version_json("n", "k", NULL, 0, &v, NULL, &outlen), KD_EINVALID);
}

int main(void)
{
    RUN(test_literals);
    RUN(test_structure_errors);
    RUN(test_whitespace);
    RUN(test_bom);
    RUN(test_depth_limit);
    RUN(test_deep_no_crash);
    RUN(test_integers);
    RUN(test_number_syntax_errors);
    RUN(test_doubles_fixed);
    RUN(test_doubles_range);
    RUN(test_doubles_random);
    RUN(test_doubles_short_decimals);
    RUN(test_object_order);
    RUN(test_object_duplicates);
    RUN(test_string_escapes);
    RUN(test_string_errors);
    RUN(test_utf8_valid_table);
    RUN(test_utf8_exhaustive);
    RUN(test_utf8_in_strings);
    RUN(test_write_string);
    RUN(test_random_documents);
    RUN(test_prefixes);
    RUN(test_public_canonical);
    RUN(test_public_quote);
    RUN(test_public_version_json);
    RUN(test_error_buffer); /* last: a crash here must not hide the others */
    return HARNESS_DONE();
}
