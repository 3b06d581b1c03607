/*
 * test_jv.c — values inside canonical JSON text (src/query/jv.h): field
 * paths (parsing, errors with columns, writing back), lookup in nested
 * objects and arrays, the total order of values over a table of every
 * type (every pair checked, so antisymmetry and transitivity hold), the
 * numeric equality filters use, numbers of any size, strings with escapes
 * and non-ASCII bytes, the validating and the trusted skip, and
 * kd_json_path.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "json/json.h"
#include "korudelta.h"
#include "query/jv.h"
#include "util/buf.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

/* Canonical text of a JSON literal, kept in a small ring of buffers so a
 * test can hold a few at once. */
static kd__jv J(const char *json)
{
    static kd__buf ring[8];
    static int next;
    kd__buf *b = &ring[next++ % 8];
    char err[200];
    kd__buf_reset(b);
    if (kd__json_canonicalize(json, strlen(json), b, err, sizeof err) != KD_OK) {
        fprintf(stderr, "bad JSON in test: %s (%s)\n", json, err);
        abort();
    }
    return (kd__jv){b->data, b->len};
}

static int jv_is(kd__jv v, const char *want)
{
    if (!want)
        return v.p == NULL;
    return v.p && v.len == strlen(want) && memcmp(v.p, want, v.len) == 0;
}

/* Value at path (text) in doc (any JSON), compared with want (canonical
 * text, or NULL for missing). */
static int at_is(const char *doc, const char *path, const char *want)
{
    kd__path p;
    char err[200];
    if (kd__path_parse(path, strlen(path), &p, err, sizeof err) != KD_OK) {
        fprintf(stderr, "    path %s: %s\n", path, err);
        return 0;
    }
    kd__jv v = kd__jv_at(J(doc), &p);
    kd__path_free(&p);
    int ok = jv_is(v, want);
    if (!ok)
        fprintf(stderr, "    %s at %s: got %.*s, wanted %s\n", doc, path, v.p ? (int)v.len : 9,
                v.p ? v.p : "(missing)", want ? want : "(missing)");
    return ok;
}

/* kd__path_parse fails with a message starting "column <col>:". */
static int path_bad(const char *path, int col)
{
    kd__path p;
    char err[200] = "", want[32];
    int rc = kd__path_parse(path, strlen(path), &p, err, sizeof err);
    snprintf(want, sizeof want, "column %d: ", col);
    if (rc != KD_EINVALID || strncmp(err, want, strlen(want)) != 0) {
        fprintf(stderr, "    path [%s]: rc %d, message \"%s\", wanted \"%s...\"\n", path, rc, err, want);
        if (rc == KD_OK)
            kd__path_free(&p);
        return 0;
    }
    return 1;
}

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

/* ------------------------------------------------------------------------
 * Paths
 * ---------------------------------------------------------------------- */

static void test_path_parse(void)
{
    kd__path p;
    char err[200];
    CHECK_RC(kd__path_parse("a.b.1", 5, &p, err, sizeof err), KD_OK);
    CHECK_EQ_INT(p.n, 3);
    CHECK_EQ_STR(p.steps[0].name, "a");
    CHECK_EQ_STR(p.steps[0].quoted, "\"a\"");
    CHECK_EQ_INT(p.steps[0].quoted_len, 3);
    CHECK_EQ_INT(p.steps[0].index, -1);
    CHECK_EQ_STR(p.steps[2].name, "1");
    CHECK_EQ_INT(p.steps[2].index, 1);
    kd__path_free(&p);

    const char *q = "\"a.b\".c";
    CHECK_RC(kd__path_parse(q, strlen(q), &p, err, sizeof err), KD_OK);
    CHECK_EQ_INT(p.n, 2);
    CHECK_EQ_STR(p.steps[0].name, "a.b");
    CHECK_EQ_STR(p.steps[1].name, "c");
    kd__path_free(&p);

    q = "\"first name\"";
    CHECK_RC(kd__path_parse(q, strlen(q), &p, err, sizeof err), KD_OK);
    CHECK_EQ_INT(p.n, 1);
    CHECK_EQ_STR(p.steps[0].name, "first name");
    kd__path_free(&p);

    /* Escapes: the name is unescaped, the quoted form canonical. */
    q = "\"x\\\"y\".\"\\u0041\\/\".\"\\u00e9\"";
    CHECK_RC(kd__path_parse(q, strlen(q), &p, err, sizeof err), KD_OK);
    CHECK_EQ_INT(p.n, 3);
    CHECK_EQ_STR(p.steps[0].name, "x\"y");
    CHECK_EQ_STR(p.steps[0].quoted, "\"x\\\"y\"");
    CHECK_EQ_STR(p.steps[1].name, "A/");
    CHECK_EQ_STR(p.steps[1].quoted, "\"A/\"");
    CHECK_EQ_STR(p.steps[2].name, "\xc3\xa9");
    kd__path_free(&p);

    /* A name holding NUL, an empty name, non-ASCII bare names. */
    q = "\"a\\u0000b\".\"\".caf\xc3\xa9";
    CHECK_RC(kd__path_parse(q, strlen(q), &p, err, sizeof err), KD_OK);
    CHECK_EQ_INT(p.n, 3);
    CHECK_EQ_INT(p.steps[0].name_len, 3);
    CHECK(memcmp(p.steps[0].name, "a\0b", 3) == 0);
    CHECK_EQ_STR(p.steps[0].quoted, "\"a\\u0000b\"");
    CHECK_EQ_INT(p.steps[1].name_len, 0);
    CHECK_EQ_STR(p.steps[1].quoted, "\"\"");
    CHECK_EQ_STR(p.steps[2].name, "caf\xc3\xa9");
    kd__path_free(&p);

    /* Array indexes: digits, no leading zero, within int64. */
    struct {
        const char *path;
        int64_t index;
    } idx[] = {{"0", 0},
               {"7", 7},
               {"123", 123},
               {"01", -1},
               {"00", -1},
               {"-1", -1},
               {"1a", -1},
               {"9223372036854775807", INT64_MAX},
               {"9223372036854775808", -1},
               {"99999999999999999999", -1},
               {"\"3\"", 3}};
    for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
        CHECK_RC(kd__path_parse(idx[i].path, strlen(idx[i].path), &p, err, sizeof err), KD_OK);
        int64_t got = p.steps[0].index;
        kd__path_free(&p);
        if (got != idx[i].index)
            fprintf(stderr, "    index of %s: %lld\n", idx[i].path, (long long)got);
        CHECK(got == idx[i].index);
    }
}

static void test_path_errors(void)
{
    CHECK(path_bad("", 1));
    CHECK(path_bad(".a", 1));
    CHECK(path_bad("a..b", 3));
    CHECK(path_bad("a.", 3));
    CHECK(path_bad("a b", 2));
    CHECK(path_bad("ab=1", 3));
    CHECK(path_bad("a.\"bc", 3));
    CHECK(path_bad("a.\"b\\x\"", 3));
    CHECK(path_bad("\"a\x01\"", 1));
    CHECK(path_bad("x\xff", 1)); /* invalid UTF-8 in a bare name */
    CHECK(path_bad("\"a\"b", 4));
    CHECK(path_bad("a.(b)", 3));

    /* The message says what was found and what was expected. */
    kd__path p;
    char err[200];
    CHECK_RC(kd__path_parse("a..b", 4, &p, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "expected a field name") != NULL);
    CHECK(strstr(err, "'.'") != NULL);
    CHECK_RC(kd__path_parse("first name", 10, &p, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "quote") != NULL);
    /* NULL error buffer is fine. */
    CHECK_RC(kd__path_parse("a..b", 4, &p, NULL, 0), KD_EINVALID);

    /* The prefix form stops where a path cannot continue. */
    size_t end = 0;
    const char *t = "xx items.1.\"a b\" > 3";
    CHECK_RC(kd__path_parse_prefix(t, strlen(t), 3, &end, &p, err, sizeof err), KD_OK);
    CHECK_EQ_INT(end, 16);
    CHECK_EQ_INT(p.n, 3);
    CHECK_EQ_STR(p.steps[2].name, "a b");
    kd__path_free(&p);
    /* Columns count from the start of the whole text. */
    t = "ab = c..d";
    CHECK_RC(kd__path_parse_prefix(t, strlen(t), 5, &end, &p, err, sizeof err), KD_EINVALID);
    CHECK(strncmp(err, "column 8: ", 10) == 0);
}

/* path -> text -> path gives the same steps; text is as expected. */
static int write_is(const char *path, const char *want)
{
    kd__path p, p2;
    kd__buf b = KD__BUF_INIT;
    char err[200];
    int ok = 0;
    if (kd__path_parse(path, strlen(path), &p, err, sizeof err) != KD_OK)
        return 0;
    if (kd__path_write(&b, &p) == KD_OK && b.len == strlen(want) && memcmp(b.data, want, b.len) == 0 &&
        kd__path_parse(b.data, b.len, &p2, err, sizeof err) == KD_OK) {
        ok = p2.n == p.n;
        for (size_t i = 0; ok && i < p.n; i++)
            ok = p.steps[i].name_len == p2.steps[i].name_len &&
                 memcmp(p.steps[i].name, p2.steps[i].name, p.steps[i].name_len) == 0 &&
                 strcmp(p.steps[i].quoted, p2.steps[i].quoted) == 0 && p.steps[i].index == p2.steps[i].index;
        kd__path_free(&p2);
    }
    if (!ok)
        fprintf(stderr, "    write %s: got %.*s, wanted %s\n", path, (int)b.len, b.data ? b.data : "", want);
    kd__path_free(&p);
    kd__buf_free(&b);
    return ok;
}

static void test_path_write_copy(void)
{
    CHECK(write_is("a.b.1", "a.b.1"));
    CHECK(write_is("\"a\".\"b\"", "a.b"));
    CHECK(write_is("\"a.b\".c", "\"a.b\".c"));
    CHECK(write_is("\"first name\"", "\"first name\""));
    CHECK(write_is("\"and\".\"IN\".\"null\"", "\"and\".\"IN\".\"null\""));
    CHECK(write_is("\"\".x", "\"\".x"));
    CHECK(write_is("\"\\u0041\\n\"", "\"A\\n\""));
    CHECK(write_is("caf\xc3\xa9._$-", "caf\xc3\xa9._$-"));

    kd__path p, c;
    char err[200];
    CHECK_RC(kd__path_parse("a.\"x y\".3", 9, &p, err, sizeof err), KD_OK);
    CHECK_RC(kd__path_copy(&p, &c), KD_OK);
    kd__path_free(&p);
    CHECK_EQ_INT(c.n, 3);
    CHECK_EQ_STR(c.steps[1].name, "x y");
    CHECK_EQ_STR(c.steps[1].quoted, "\"x y\"");
    CHECK_EQ_INT(c.steps[2].index, 3);
    kd__path_free(&c);
    kd__path_free(&c); /* twice is harmless */
}

/* ------------------------------------------------------------------------
 * Lookup
 * ---------------------------------------------------------------------- */

static void test_lookup(void)
{
    const char *doc = "{\"a\":{\"b\":[10,{\"c\":\"x\"},30]},\"items\":[{\"x\":1},{\"x\":2}],\"01\":\"lz\","
                      "\"1\":\"one\",\"a.b\":5,\"first name\":\"Ann\",\"n\":null,\"e\":[],\"o\":{}}";
    CHECK(at_is(doc, "items.1.x", "2"));
    CHECK(at_is(doc, "items.0", "{\"x\":1}"));
    CHECK(at_is(doc, "items.2.x", NULL));
    CHECK(at_is(doc, "items.99999999999999999999", NULL));
    CHECK(at_is(doc, "items.01", NULL)); /* a leading zero is a member name only */
    CHECK(at_is(doc, "items.x", NULL));
    CHECK(at_is(doc, "a.b.0", "10"));
    CHECK(at_is(doc, "a.b.2", "30"));
    CHECK(at_is(doc, "a.b.1.c", "\"x\""));
    CHECK(at_is(doc, "a.b.1.c.d", NULL));
    CHECK(at_is(doc, "a.b.0.x", NULL));
    CHECK(at_is(doc, "a.b.3", NULL));
    CHECK(at_is(doc, "01", "\"lz\""));
    CHECK(at_is(doc, "1", "\"one\""));
    CHECK(at_is(doc, "\"a.b\"", "5"));
    CHECK(at_is(doc, "\"first name\"", "\"Ann\""));
    CHECK(at_is(doc, "n", "null"));
    CHECK(at_is(doc, "n.x", NULL));
    CHECK(at_is(doc, "e", "[]"));
    CHECK(at_is(doc, "e.0", NULL));
    CHECK(at_is(doc, "o", "{}"));
    CHECK(at_is(doc, "o.x", NULL));
    CHECK(at_is(doc, "zzz", NULL));
    CHECK(at_is(doc, "A", NULL));
    CHECK(at_is("[[1,[2,3]],4]", "0.1.1", "3"));
    CHECK(at_is("[[1,[2,3]],4]", "1", "4"));
    CHECK(at_is("\"str\"", "0", NULL));
    CHECK(at_is("5", "a", NULL));

    /* Names with escapes, controls and non-ASCII bytes, in canonical
     * (unescaped byte) order, each found; the sorted early stop must not
     * stop too soon around the quote character (0x22). */
    const char *names = "{\"a\":1,\"a \":2,\"a!\":3,\"a\\\"\":4,\"a\\\\\":5,\"a\\n\":6,\"\\u0001\":7,"
                        "\"\xc3\xa9\":8,\"\xf0\x9f\x98\x80\":9,\"z\":10,\"\":11}";
    CHECK(at_is(names, "a", "1"));
    CHECK(at_is(names, "\"a \"", "2"));
    CHECK(at_is(names, "\"a!\"", "3"));
    CHECK(at_is(names, "\"a\\\"\"", "4"));
    CHECK(at_is(names, "\"a\\\\\"", "5"));
    CHECK(at_is(names, "\"a\\n\"", "6"));
    CHECK(at_is(names, "\"\\u0001\"", "7"));
    CHECK(at_is(names, "\xc3\xa9", "8"));
    CHECK(at_is(names, "\xf0\x9f\x98\x80", "9"));
    CHECK(at_is(names, "z", "10"));
    CHECK(at_is(names, "\"\"", "11"));
    CHECK(at_is(names, "\"a#\"", NULL));
    CHECK(at_is(names, "b", NULL));

    /* Missing in, missing out. */
    kd__path p;
    char err[100];
    CHECK_RC(kd__path_parse("a", 1, &p, err, sizeof err), KD_OK);
    CHECK(kd__jv_at(KD__JV_MISSING, &p).p == NULL);
    kd__path_free(&p);
}

static void test_iterate(void)
{
    kd__jv a = J("[1,\"x,]\",[2,[3]],{\"k\":\"}\"},null]");
    CHECK_EQ_INT(kd__jv_count(a), 5);
    size_t pos = 0;
    kd__jv x;
    const char *want[] = {"1", "\"x,]\"", "[2,[3]]", "{\"k\":\"}\"}", "null"};
    for (int i = 0; i < 5; i++) {
        CHECK(kd__jv_next_item(a, &pos, &x));
        CHECK(jv_is(x, want[i]));
    }
    CHECK(!kd__jv_next_item(a, &pos, &x));
    CHECK_EQ_INT(kd__jv_count(J("[]")), 0);
    CHECK_EQ_INT(kd__jv_count(J("{}")), 0);
    CHECK_EQ_INT(kd__jv_count(J("3")), 0);
    CHECK_EQ_INT(kd__jv_count(KD__JV_MISSING), 0);

    kd__jv o = J("{\"b\":[1],\"a\\\"\":{\"c\":2}}");
    CHECK_EQ_INT(kd__jv_count(o), 2);
    kd__jv n, v;
    pos = 0;
    CHECK(kd__jv_next_member(o, &pos, &n, &v));
    CHECK(jv_is(n, "\"a\\\"\""));
    CHECK(jv_is(v, "{\"c\":2}"));
    CHECK(kd__jv_next_member(o, &pos, &n, &v));
    CHECK(jv_is(n, "\"b\""));
    CHECK(jv_is(v, "[1]"));
    CHECK(!kd__jv_next_member(o, &pos, &n, &v));

    CHECK_EQ_INT(kd__jv_type(J("null")), KD__J_NULL);
    CHECK_EQ_INT(kd__jv_type(J("false")), KD__J_FALSE);
    CHECK_EQ_INT(kd__jv_type(J("true")), KD__J_TRUE);
    CHECK_EQ_INT(kd__jv_type(J("-1")), KD__J_NUMBER);
    CHECK_EQ_INT(kd__jv_type(J("\"s\"")), KD__J_STRING);
    CHECK_EQ_INT(kd__jv_type(J("[]")), KD__J_ARRAY);
    CHECK_EQ_INT(kd__jv_type(J("{}")), KD__J_OBJECT);
}

/* ------------------------------------------------------------------------
 * Strings and numbers
 * ---------------------------------------------------------------------- */

static void test_strings(void)
{
    kd__buf b = KD__BUF_INIT;
    CHECK_RC(kd__jv_string(J("\"a\\\"b\\\\c\\n\\u0001\\u00e9\\ud83d\\ude00/\""), &b), KD_OK);
    CHECK_EQ_INT(b.len, 14);
    CHECK(memcmp(b.data, "a\"b\\c\n\x01\xc3\xa9\xf0\x9f\x98\x80/", 14) == 0);
    kd__buf_reset(&b);
    CHECK_RC(kd__jv_string(J("\"\""), &b), KD_OK);
    CHECK_EQ_INT(b.len, 0);
    /* Non-canonical escapes also decode (the function is general). */
    const char *raw = "\"\\u0041\\ud83d\\ude00\\/\"";
    kd__buf_reset(&b);
    CHECK_RC(kd__jv_string((kd__jv){raw, strlen(raw)}, &b), KD_OK);
    CHECK_EQ_INT(b.len, 6);
    CHECK(memcmp(b.data, "A\xf0\x9f\x98\x80/", 6) == 0);
    raw = "\"\\ud800\"";
    kd__buf_reset(&b);
    CHECK_RC(kd__jv_string((kd__jv){raw, strlen(raw)}, &b), KD_EINVALID);
    CHECK_RC(kd__jv_string(J("1"), &b), KD_EINVALID);
    kd__buf_free(&b);

    /* Order by unescaped bytes, not by the written text. */
    CHECK(kd__jv_str_cmp(J("\"a\""), J("\"a \"")) < 0);
    CHECK(kd__jv_str_cmp(J("\"a \""), J("\"a\\\"\"")) < 0);   /* 0x20 < 0x22 */
    CHECK(kd__jv_str_cmp(J("\"a\\n\""), J("\"a \"")) < 0);    /* 0x0a < 0x20 */
    CHECK(kd__jv_str_cmp(J("\"a\\\\\""), J("\"aA\"")) > 0);   /* 0x5c > 0x41 */
    CHECK(kd__jv_str_cmp(J("\"a\\u0000\""), J("\"a\"")) > 0); /* longer */
    CHECK(kd__jv_str_cmp(J("\"\\u0001\""), J("\"\\n\"")) < 0);
    CHECK(kd__jv_str_cmp(J("\"\\u001f\""), J("\"\\u0010\"")) > 0);
    CHECK(kd__jv_str_cmp(J("\"\xef\xbf\xbf\""), J("\"\xf0\x90\x80\x80\"")) < 0);
    CHECK(kd__jv_str_cmp(J("\"z\""), J("\"\xc3\xa9\"")) < 0);
    CHECK_EQ_INT(kd__jv_str_cmp(J("\"a\\tb\""), J("\"a\\tb\"")), 0);
}

static void test_numbers(void)
{
    int64_t i = 0;
    CHECK(kd__jv_int64(J("0"), &i) && i == 0);
    CHECK(kd__jv_int64(J("-42"), &i) && i == -42);
    CHECK(kd__jv_int64(J("9223372036854775807"), &i) && i == INT64_MAX);
    CHECK(kd__jv_int64(J("-9223372036854775808"), &i) && i == INT64_MIN);
    CHECK(!kd__jv_int64(J("9223372036854775808"), &i));
    CHECK(!kd__jv_int64(J("-9223372036854775809"), &i));
    CHECK(!kd__jv_int64(J("1.0"), &i));
    CHECK(!kd__jv_int64(J("\"1\""), &i));
    CHECK(!kd__jv_int64(KD__JV_MISSING, &i));

    CHECK(kd__jv_double(J("1.5")) == 1.5);
    CHECK(kd__jv_double(J("-2")) == -2.0);
    CHECK(kd__jv_double(J("1e+300")) == 1e300);
    CHECK(kd__jv_double(J("505874924095815681")) == 505874924095815681.0);
    /* 100 digits: through the heap copy. */
    char big[102];
    memset(big, '0', 100);
    big[0] = '1';
    big[100] = '\0';
    CHECK(kd__jv_double(J(big)) == 1e99);
    CHECK(kd__jv_is_int(J("12")));
    CHECK(!kd__jv_is_int(J("12.5")));
    CHECK(!kd__jv_is_int(J("1e+30")));

    /* Big integers compare exactly, whatever their size. */
    CHECK(kd__jv_cmp(J("505874924095815681"), J("505874924095815682")) < 0);
    CHECK(kd__jv_cmp_value(J("505874924095815682"), J("505874924095815681")) > 0);
    char b1[102], b2[102];
    memset(b1, '7', 100);
    b1[100] = '\0';
    memcpy(b2, b1, 101);
    b2[99] = '8';
    CHECK(kd__jv_cmp(J(b1), J(b2)) < 0);
    CHECK(kd__jv_cmp_value(J(b1), J(b2)) < 0);
    CHECK_EQ_INT(kd__jv_cmp(J(b1), J(b1)), 0);
    char n1[103] = "-", n2[103] = "-";
    strcat(n1, b1);
    strcat(n2, b2);
    CHECK(kd__jv_cmp(J(n1), J(n2)) > 0);
    CHECK(kd__jv_cmp(J(n1), J("-1")) < 0);
    CHECK(kd__jv_cmp(J(b1), J("1e+300")) < 0);

    /* Integer against non-integer: exactly; equal values are equal for
     * filters and ordered integer first in the total order. */
    CHECK(kd__jv_cmp_value(J("9007199254740993"), J("9007199254740992.0")) > 0);
    CHECK(kd__jv_cmp_value(J("9007199254740991"), J("9007199254740992.0")) < 0);
    CHECK(kd__jv_cmp_value(J("-9007199254740993"), J("-9007199254740992.0")) < 0);
    CHECK_EQ_INT(kd__jv_cmp_value(J("1152921504606846976"), J("1152921504606847000.0")), 0); /* 2^60 */
    CHECK(kd__jv_cmp_value(J("1152921504606846977"), J("1152921504606847000.0")) > 0);
    CHECK_EQ_INT(kd__jv_cmp_value(J("100000000000000000000000000000"), J("1e+29")), 1); /* 1e29 is not a double */
    CHECK_EQ_INT(kd__jv_cmp_value(J("99999999999999991433150857216"), J("1e+29")), 0);
    CHECK(kd__jv_cmp_value(J("3"), J("2.5")) > 0);
    CHECK(kd__jv_cmp_value(J("2"), J("2.5")) < 0);
    CHECK(kd__jv_cmp_value(J("-3"), J("-2.5")) < 0);
    CHECK(kd__jv_cmp_value(J("-2"), J("-2.5")) > 0);
    CHECK(kd__jv_cmp_value(J("-9223372036854775809"), J("-9.3e+18")) > 0);
    CHECK(kd__jv_cmp_value(J("12345678901234567890123"), J("1.2345678901234568e+22")) > 0);
    CHECK(kd__jv_cmp_value(J("12345678901234567741439"), J("1.2345678901234568e+22")) < 0);
    CHECK_EQ_INT(kd__jv_cmp_value(J("12345678901234567741440"), J("1.2345678901234568e+22")), 0);
    CHECK_EQ_INT(kd__jv_cmp_value(J("1"), J("1.0")), 0);
    CHECK(kd__jv_cmp(J("1"), J("1.0")) < 0);
    CHECK(kd__jv_cmp(J("1.0"), J("1")) > 0);
    CHECK_EQ_INT(kd__jv_cmp_value(J("0"), J("-0.0")), 0);
    CHECK_EQ_INT(kd__jv_cmp_value(J("0.0"), J("-0.0")), 0);
    CHECK(kd__jv_cmp(J("-0.0"), J("0.0")) < 0);
    CHECK(kd__jv_cmp_value(J("2"), J("1.5")) > 0);
    CHECK(kd__jv_cmp_value(J("-2"), J("-1.5")) < 0);
    CHECK_EQ_INT(kd__jv_cmp_value(J("100"), J("1e2")), 0);
    CHECK_EQ_INT(kd__jv_cmp_value(J("[1,{\"a\":2}]"), J("[1.0,{\"a\":2.0}]")), 0);
    CHECK(kd__jv_cmp(J("[1,{\"a\":2}]"), J("[1.0,{\"a\":2.0}]")) < 0);
}

/* ------------------------------------------------------------------------
 * The total order
 * ---------------------------------------------------------------------- */

static void test_order_table(void)
{
    static char big1[110], big2[110], huge[410], negbig[40];
    memset(big1, '0', 100);
    big1[0] = '1';
    big1[100] = '\0';
    memcpy(big2, big1, 101);
    big2[99] = '1';
    memset(huge, '9', 400);
    huge[400] = '\0';
    snprintf(negbig, sizeof negbig, "-1%029d", 0);

    /* In ascending order; NULL is the missing value. */
    const char *table[] = {
        NULL,
        "null",
        "false",
        "true",
        negbig,
        "-1e+29",
        "-1.5",
        "-1",
        "0",
        "-0.0",
        "0.0",
        "5e-324",
        "1",
        "1.0",
        "1.5",
        "9007199254740992",
        "9007199254740992.0",
        "9007199254740993",
        "9007199254740994.0",
        "9007199254740995",
        "505874924095815681",
        "505874924095815682",
        big1,
        big2,
        "1e+300",
        huge,
        "\"\"",
        "\"\\u0000\"",
        "\"\\n\"",
        "\" \"",
        "\"\\\"\"",
        "\"A\"",
        "\"\\\\\"",
        "\"a\"",
        "\"a\\n\"",
        "\"a \"",
        "\"a\\\"\"",
        "\"a\\\\\"",
        "\"ab\"",
        "\"\xc3\xa9\"",
        "\"\xef\xbf\xbf\"",
        "\"\xf0\x9f\x98\x80\"",
        "[]",
        "[null]",
        "[1]",
        "[1,2]",
        "[1.0]",
        "[2]",
        "[\"a\"]",
        "[[]]",
        "[{}]",
        "{}",
        "{\"a\":null}",
        "{\"a\":1}",
        "{\"a\":1,\"b\":2}",
        "{\"a\":1.0}",
        "{\"a\":[]}",
        "{\"a \":0}",
        "{\"b\":0}",
    };
    size_t n = sizeof table / sizeof table[0];
    kd__buf *bufs = calloc(n, sizeof *bufs);
    kd__jv *v = calloc(n, sizeof *v);
    CHECK(bufs && v);
    for (size_t i = 0; i < n; i++) {
        if (!table[i]) {
            v[i] = KD__JV_MISSING;
            continue;
        }
        char err[200];
        if (kd__json_canonicalize(table[i], strlen(table[i]), &bufs[i], err, sizeof err) != KD_OK ||
            bufs[i].len != strlen(table[i]) || memcmp(bufs[i].data, table[i], bufs[i].len) != 0) {
            fprintf(stderr, "    table entry %zu is not canonical: %s\n", i, table[i]);
            harness_current_failed = 1;
            goto done;
        }
        v[i] = (kd__jv){bufs[i].data, bufs[i].len};
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int want = i < j ? -1 : i > j;
            int got = sign(kd__jv_cmp(v[i], v[j]));
            if (got != want) {
                fprintf(stderr, "    cmp(%s, %s) = %d, wanted %d\n", table[i] ? table[i] : "missing",
                        table[j] ? table[j] : "missing", got, want);
                harness_current_failed = 1;
                goto done;
            }
            /* The value order agrees with the total order on scalars,
             * except that it may say equal (numbers by value). */
            int gv = sign(kd__jv_cmp_value(v[i], v[j]));
            int scalar = !table[i] || !table[j] || (table[i][0] != '[' && table[i][0] != '{');
            if (scalar && gv != want && gv != 0) {
                fprintf(stderr, "    cmp_value(%s, %s) = %d, total order says %d\n",
                        table[i] ? table[i] : "missing", table[j] ? table[j] : "missing", gv, want);
                harness_current_failed = 1;
                goto done;
            }
            if (gv != -sign(kd__jv_cmp_value(v[j], v[i]))) {
                harness_current_failed = 1;
                fprintf(stderr, "    cmp_value not antisymmetric at %zu, %zu\n", i, j);
                goto done;
            }
        }
    }
    /* The value order is a total preorder too: transitive over all
     * triples (its own order; [1,2] > [1.0] there, as [1,2] > [1]). */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int ij = sign(kd__jv_cmp_value(v[i], v[j]));
            for (size_t k = 0; k < n; k++) {
                int jk = sign(kd__jv_cmp_value(v[j], v[k]));
                int ik = sign(kd__jv_cmp_value(v[i], v[k]));
                if ((ij <= 0 && jk <= 0 && ik > 0) || (ij == 0 && jk == 0 && ik != 0)) {
                    fprintf(stderr, "    cmp_value not transitive: %zu %zu %zu\n", i, j, k);
                    harness_current_failed = 1;
                    goto done;
                }
            }
        }
    /* The numbers equal by value, and no others. */
    struct {
        const char *a, *b;
    } eqv[] = {{"0", "-0.0"},
               {"0", "0.0"},
               {"-0.0", "0.0"},
               {"1", "1.0"},
               {"9007199254740992", "9007199254740992.0"},
               {"[1]", "[1.0]"},
               {"{\"a\":1}", "{\"a\":1.0}"}};
    size_t n_eq = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (kd__jv_cmp_value(v[i], v[j]) == 0) {
                int listed = 0;
                for (size_t k = 0; k < sizeof eqv / sizeof eqv[0]; k++)
                    listed |= table[i] && table[j] && strcmp(table[i], eqv[k].a) == 0 && strcmp(table[j], eqv[k].b) == 0;
                if (!listed) {
                    fprintf(stderr, "    unexpected value equality %s = %s\n", table[i], table[j]);
                    harness_current_failed = 1;
                    goto done;
                }
                n_eq++;
            }
    if (n_eq != sizeof eqv / sizeof eqv[0]) {
        fprintf(stderr, "    %zu value equalities, wanted %zu\n", n_eq, sizeof eqv / sizeof eqv[0]);
        harness_current_failed = 1;
    }
done:
    for (size_t i = 0; i < n; i++)
        kd__buf_free(&bufs[i]);
    free(bufs);
    free(v);
}

/* ------------------------------------------------------------------------
 * Skipping
 * ---------------------------------------------------------------------- */

/* kd__jv_skip over an exact-size heap copy (ASan sees any overread). */
static size_t skip_of(const char *s, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (!c)
        abort();
    memcpy(c, s, n);
    size_t r = kd__jv_skip(c, c + n);
    size_t t = kd__jv_skip_trusted(c, c + n);
    if (t > n)
        r = (size_t)-1;
    free(c);
    return r;
}

static void test_skip(void)
{
    const char *good[] = {"0", "-0", "12", "-1.5e+3", "1E-2", "true", "false", "null", "\"\"", "\"a\\\"\\u00fF\"",
                          "[]", "{}", "[1,[2,{\"a\":[]}],\"]\"]", "{\"a\":{\"b\":[null]},\"c\":\"}\"}"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t n = strlen(good[i]);
        if (skip_of(good[i], n) != n)
            fprintf(stderr, "    skip(%s) = %zu\n", good[i], skip_of(good[i], n));
        CHECK(skip_of(good[i], n) == n);
    }
    /* A value followed by more text: its own length. */
    CHECK_EQ_INT(skip_of("[1,2]xyz", 8), 5);
    CHECK_EQ_INT(skip_of("01", 2), 1);
    CHECK_EQ_INT(skip_of("\"a\",1", 5), 3);

    const char *bad[] = {"", "[", "]", "[1,]", "[1 ]", " 1", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}",
                         "\"abc", "\"a\\", "\"a\\x\"", "\"\\u12\"", "\"\\u12g4\"", "tru", "nul", "fals",
                         "-", "1.", "1e", "1e+", ".5", "+1", "[1}", "{\"a\":1]", "x", "[\"a\"", "{\"a\":1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i]);
        if (skip_of(bad[i], n) != 0)
            fprintf(stderr, "    skip(%s) = %zu, wanted 0\n", bad[i], skip_of(bad[i], n));
        CHECK(skip_of(bad[i], n) == 0);
    }
    CHECK_EQ_INT(skip_of("\"a\x01\"", 4), 0);
    CHECK_EQ_INT(kd__jv_skip(NULL, NULL), 0);

    /* Nesting: 512 levels pass, 513 do not. */
    char deep[2 * 520];
    for (int levels = 511; levels <= 514; levels++) {
        memset(deep, '[', (size_t)levels);
        memset(deep + levels, ']', (size_t)levels);
        size_t got = skip_of(deep, 2 * (size_t)levels);
        if (levels <= KD_JSON_MAX_DEPTH)
            CHECK(got == 2 * (size_t)levels);
        else
            CHECK(got == 0);
    }

    /* Garbage: neither skip reads outside the slice, and the trusted one
     * never claims more than it was given. */
    uint32_t seed = 12345;
    const char alphabet[] = "[]{}\",:\\01tfnu";
    char buf[40];
    for (int it = 0; it < 20000; it++) {
        size_t n = 1 + (seed % 39);
        for (size_t k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            buf[k] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        size_t got = skip_of(buf, n);
        CHECK(got != (size_t)-1);
        CHECK(got <= n);
    }
}

/* ------------------------------------------------------------------------
 * kd_json_path
 * ---------------------------------------------------------------------- */

static void test_json_path(void)
{
    const char *doc = "{\"a\":{\"b\":[1,{\"c\":\"x\"}]},\"n\":null}";
    const char *out = NULL;
    size_t len = 0;
    CHECK_RC(kd_json_path(doc, strlen(doc), "a.b.1.c", &out, &len), KD_OK);
    CHECK(len == 3 && memcmp(out, "\"x\"", 3) == 0);
    CHECK(out > doc && out < doc + strlen(doc)); /* points into the input */
    CHECK_RC(kd_json_path(doc, strlen(doc), "n", &out, &len), KD_OK);
    CHECK(len == 4 && memcmp(out, "null", 4) == 0);
    CHECK_RC(kd_json_path(doc, strlen(doc), "a.b.2", &out, &len), KD_ENOTFOUND);
    CHECK(out == NULL && len == 0);
    CHECK_RC(kd_json_path(doc, strlen(doc), "a..b", &out, &len), KD_EINVALID);
    CHECK_RC(kd_json_path(doc, strlen(doc), "", &out, &len), KD_EINVALID);
    CHECK_RC(kd_json_path(doc, strlen(doc) - 1, "a", &out, &len), KD_EINVALID);
    CHECK_RC(kd_json_path("[1] ", 4, "0", &out, &len), KD_EINVALID);
    CHECK_RC(kd_json_path("", 0, "0", &out, &len), KD_EINVALID);
    CHECK_RC(kd_json_path(NULL, 0, "0", &out, &len), KD_EINVALID);
    CHECK_RC(kd_json_path(doc, strlen(doc), NULL, &out, &len), KD_EINVALID);
    CHECK_RC(kd_json_path("[1,2]", 5, "1", &out, &len), KD_OK);
    CHECK(len == 1 && *out == '2');
}

/* kd_json_next / kd_json_unquote: the public walk over canonical JSON that
 * the CLI and the server use instead of their own parsers. */
static void test_json_next_and_unquote(void)
{
    const char *obj = "{\"a\":[1,{\"x\":\"}\"}],\"b\\\"c\":\"q\\\\\",\"d\":null}";
    size_t pos = 0, nl, vl, n = 0;
    const char *name, *val;
    const char *want_names[] = {"\"a\"", "\"b\\\"c\"", "\"d\""};
    const char *want_vals[] = {"[1,{\"x\":\"}\"}]", "\"q\\\\\"", "null"};
    int r;
    while ((r = kd_json_next(obj, strlen(obj), &pos, &name, &nl, &val, &vl)) == 1) {
        CHECK(n < 3);
        CHECK(nl == strlen(want_names[n]) && !memcmp(name, want_names[n], nl));
        CHECK(vl == strlen(want_vals[n]) && !memcmp(val, want_vals[n], vl));
        n++;
    }
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(n, 3);
    /* arrays: no names */
    const char *arr = "[\"s\",2,[],{}]";
    pos = 0;
    n = 0;
    while (kd_json_next(arr, strlen(arr), &pos, &name, &nl, &val, &vl) == 1) {
        CHECK(name == NULL);
        n++;
    }
    CHECK_EQ_INT(n, 4);
    pos = 0;
    CHECK_EQ_INT(kd_json_next("[]", 2, &pos, NULL, NULL, &val, &vl), 0);
    /* not canonical, cut short, or not a container: refused before reading */
    const char *bad[] = {"[1, 2]", "{\"a\":1", "\"s\"", "[1,]", "{\"a\" :1}", "7"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pos = 0;
        CHECK_EQ_INT(kd_json_next(bad[i], strlen(bad[i]), &pos, &name, &nl, &val, &vl), KD_EINVALID);
    }
    char *t;
    size_t tl;
    CHECK_RC(kd_json_unquote("\"a\\u00e9\\n\\\"\"", strlen("\"a\\u00e9\\n\\\"\""), &t, &tl), KD_OK);
    CHECK(tl == 5 && !memcmp(t, "a\xc3\xa9\n\"", 5));
    kd_free(t);
    CHECK_RC(kd_json_unquote("\"\\ud83d\\ude00\"", strlen("\"\\ud83d\\ude00\""), &t, &tl), KD_OK); /* a surrogate pair */
    CHECK(tl == 4 && !memcmp(t, "\xf0\x9f\x98\x80", 4));
    kd_free(t);
    CHECK_RC(kd_json_unquote("\"x\\u0000y\"", strlen("\"x\\u0000y\""), &t, &tl), KD_OK); /* NUL kept: the length says so */
    CHECK(tl == 3 && t[1] == '\0');
    kd_free(t);
    CHECK_RC(kd_json_unquote("\"\"", strlen("\"\""), &t, &tl), KD_OK);
    CHECK(tl == 0 && t[0] == '\0');
    kd_free(t);
    const char *nots[] = {"1", "\"a", "\"\\x\"", "\"a\" \"b\"", "[\"a\"]", "\"\\ud800\""};
    for (size_t i = 0; i < sizeof nots / sizeof *nots; i++)
        CHECK_RC(kd_json_unquote(nots[i], strlen(nots[i]), &t, &tl), KD_EINVALID);
}

int main(void)
{
    RUN(test_path_parse);
    RUN(test_path_errors);
    RUN(test_path_write_copy);
    RUN(test_lookup);
    RUN(test_iterate);
    RUN(test_strings);
    RUN(test_numbers);
    RUN(test_order_table);
    RUN(test_skip);
    RUN(test_json_path);
    RUN(test_json_next_and_unquote);
    return HARNESS_DONE();
}
