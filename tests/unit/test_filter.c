/*
 * test_filter.c — the filter language (src/query/filter.c, filter_parse.c)
 * through the public kd_filter_* functions and kd__filter_eval.
 *
 * Every operator on present, missing and null fields; ranges only within
 * a type; contains / in / matches (PCRE2, unicode) semantics; precedence
 * and parentheses; deep paths and array indexes; errors with their column
 * and what was expected; the JSON form and both round trips; matching
 * non-canonical input; the nesting bounds. Property tests over generated
 * documents and filters check De Morgan and friends, and that every
 * generated filter survives text -> tree -> text and JSON -> tree -> JSON
 * with the same answers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "json/json.h"
#include "korudelta.h"
#include "query/filter.h"
#include "query/jv.h"
#include "util/buf.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static kd_filter *P(const char *text)
{
    kd_filter *f = NULL;
    char err[300];
    if (kd_filter_parse(text, &f, err, sizeof err) != KD_OK) {
        fprintf(stderr, "    parse [%s]: %s\n", text, err);
        return NULL;
    }
    return f;
}

/* kd_filter_match of filter text on a document: 1, 0, or -1 when the
 * filter does not parse (or a negative code). */
static int M(const char *filter, const char *doc)
{
    kd_filter *f = P(filter);
    if (!f)
        return -1;
    int r = kd_filter_match(f, doc, strlen(doc));
    kd_filter_free(f);
    return r;
}

#define MATCH(filter, doc, want)                                                                         \
    do {                                                                                                 \
        int got_ = M(filter, doc);                                                                       \
        if (got_ != (want)) {                                                                            \
            fprintf(stderr, "%s:%d: [%s] on %s gave %d, wanted %d\n", __FILE__, __LINE__, filter, doc, \
                    got_, (int)(want));                                                                  \
            harness_current_failed = 1;                                                                  \
            return;                                                                                      \
        }                                                                                                \
    } while (0)

/* Parsing fails with "column <col>: " and the message contains `has`. */
static int bad_(const char *text, int col, const char *has, int line)
{
    kd_filter *f = NULL;
    char err[400] = "", want[32];
    int rc = kd_filter_parse(text, &f, err, sizeof err);
    snprintf(want, sizeof want, "column %d: ", col);
    if (rc != KD_EINVALID || f != NULL || strncmp(err, want, strlen(want)) != 0 || !strstr(err, has)) {
        fprintf(stderr, "%s:%d: [%s]: rc %d, message \"%s\"; wanted \"%s...%s...\"\n", __FILE__, line, text, rc, err,
                want, has);
        kd_filter_free(f);
        return 0;
    }
    return 1;
}
#define BAD(text, col, has) CHECK(bad_(text, col, has, __LINE__))

static char *to_json(const kd_filter *f)
{
    char *j = NULL;
    size_t n = 0;
    if (kd_filter_to_json(f, &j, &n) != KD_OK)
        return NULL;
    if (strlen(j) != n) {
        kd_free(j);
        return NULL;
    }
    return j;
}

static char *to_text(const kd_filter *f)
{
    char *t = NULL;
    size_t n = 0;
    if (kd_filter_to_text(f, &t, &n) != KD_OK)
        return NULL;
    if (strlen(t) != n) {
        kd_free(t);
        return NULL;
    }
    return t;
}

/* The text form of `text` after parsing is `want`. */
static int text_is_(const char *text, const char *want, int line)
{
    kd_filter *f = P(text);
    char *t = f ? to_text(f) : NULL;
    int ok = t && strcmp(t, want) == 0;
    if (!ok)
        fprintf(stderr, "%s:%d: to_text [%s] = [%s], wanted [%s]\n", __FILE__, line, text, t ? t : "(null)", want);
    kd_free(t);
    kd_filter_free(f);
    return ok;
}
#define TEXT_IS(text, want) CHECK(text_is_(text, want, __LINE__))

static int json_is_(const char *text, const char *want, int line)
{
    kd_filter *f = P(text);
    char *j = f ? to_json(f) : NULL;
    int ok = j && strcmp(j, want) == 0;
    if (!ok)
        fprintf(stderr, "%s:%d: to_json [%s] = %s, wanted %s\n", __FILE__, line, text, j ? j : "(null)", want);
    kd_free(j);
    kd_filter_free(f);
    return ok;
}
#define JSON_IS(text, want) CHECK(json_is_(text, want, __LINE__))

/* ------------------------------------------------------------------------
 * Operators
 * ---------------------------------------------------------------------- */

static void test_eq_ne(void)
{
    MATCH("a = 1", "{\"a\":1}", 1);
    MATCH("a == 1", "{\"a\":1}", 1);
    MATCH("a = 1", "{\"a\":1.0}", 1);
    MATCH("a = 1.0", "{\"a\":1}", 1);
    MATCH("a = 100", "{\"a\":1e2}", 1);
    MATCH("a = 1", "{\"a\":2}", 0);
    MATCH("a = 1", "{}", 0);
    MATCH("a = 1", "{\"a\":null}", 0);
    MATCH("a = 1", "{\"a\":\"1\"}", 0);
    MATCH("a = 1", "{\"a\":true}", 0);
    MATCH("a = 1", "[1]", 0);
    MATCH("a = 1", "1", 0);
    MATCH("a != 1", "{}", 1);
    MATCH("a != 1", "{\"a\":null}", 1);
    MATCH("a != 1", "{\"a\":1}", 0);
    MATCH("a != 1", "{\"a\":1.0}", 0);
    MATCH("a != 1", "{\"a\":\"1\"}", 1);
    MATCH("a = null", "{\"a\":null}", 1);
    MATCH("a = null", "{}", 0);
    MATCH("a != null", "{}", 1);
    MATCH("a != null", "{\"a\":0}", 1);
    MATCH("a != null", "{\"a\":null}", 0);
    MATCH("a = true", "{\"a\":true}", 1);
    MATCH("a = false", "{\"a\":true}", 0);
    MATCH("a = \"x\"", "{\"a\":\"x\"}", 1);
    MATCH("a = \"x\"", "{\"a\":\"X\"}", 0);
    MATCH("a = \"x\\\"y\"", "{\"a\":\"x\\u0022y\"}", 1);
    MATCH("a = \"\\u00e9\"", "{\"a\":\"\xc3\xa9\"}", 1);
    MATCH("a = -0.0", "{\"a\":0}", 1);
    /* Whole arrays and objects; numbers inside by value. */
    MATCH("a = [1, 2]", "{\"a\":[1,2.0]}", 1);
    MATCH("a = [1, 2]", "{\"a\":[2,1]}", 0);
    MATCH("a = [1, 2]", "{\"a\":[1,2,3]}", 0);
    MATCH("a = {\"b\": 1}", "{\"a\":{\"b\":1.0}}", 1);
    MATCH("a = {\"b\": 1}", "{\"a\":{\"b\":1,\"c\":2}}", 0);
    MATCH("a != [1]", "{\"a\":[1.0]}", 0);
    /* Integers beyond 64 bits, exactly. */
    MATCH("id = 505874924095815681", "{\"id\":505874924095815681}", 1);
    MATCH("id = 505874924095815681", "{\"id\":505874924095815682}", 0);
    MATCH("id = 123456789012345678901234567890", "{\"id\":123456789012345678901234567890}", 1);
    MATCH("id = 123456789012345678901234567890", "{\"id\":123456789012345678901234567891}", 0);
    MATCH("id = 9007199254740993", "{\"id\":9007199254740992.0}", 0);
}

static void test_ranges(void)
{
    MATCH("age > 30", "{\"age\":31}", 1);
    MATCH("age > 30", "{\"age\":30}", 0);
    MATCH("age > 30", "{\"age\":30.5}", 1);
    MATCH("age > 30", "{\"age\":-31}", 0);
    MATCH("age > 30", "{\"age\":\"31\"}", 0);
    MATCH("age > 30", "{\"age\":null}", 0);
    MATCH("age > 30", "{}", 0);
    MATCH("age > 30", "{\"age\":true}", 0);
    MATCH("age > 30", "{\"age\":[31]}", 0);
    MATCH("age > 30", "{\"age\":{\"x\":31}}", 0);
    MATCH("age >= 30", "{\"age\":30.0}", 1);
    MATCH("age >= 30", "{\"age\":29.999}", 0);
    MATCH("age < 30", "{\"age\":null}", 0);
    MATCH("age < 30", "{}", 0);
    MATCH("age < 30", "{\"age\":\"abc\"}", 0);
    MATCH("age < 30", "{\"age\":-1e+300}", 1);
    MATCH("age <= 30", "{\"age\":30}", 1);
    MATCH("age <= 30", "{\"age\":31}", 0);
    MATCH("name > \"b\"", "{\"name\":\"c\"}", 1);
    MATCH("name > \"b\"", "{\"name\":\"b\"}", 0);
    MATCH("name > \"b\"", "{\"name\":\"ba\"}", 1);
    MATCH("name > \"b\"", "{\"name\":\"B\"}", 0);
    MATCH("name > \"b\"", "{\"name\":5}", 0);
    MATCH("name < \"\xc3\xa9\"", "{\"name\":\"z\"}", 1);
    MATCH("name >= \"a\\n\"", "{\"name\":\"a \"}", 1);
    MATCH("flag > false", "{\"flag\":true}", 1);
    MATCH("flag > false", "{\"flag\":false}", 0);
    MATCH("flag >= false", "{\"flag\":false}", 1);
    MATCH("flag < true", "{\"flag\":false}", 1);
    MATCH("flag < true", "{\"flag\":0}", 0);
    MATCH("flag < true", "{\"flag\":null}", 0);
    /* null, arrays and objects as literals: never. */
    MATCH("x > null", "{\"x\":null}", 0);
    MATCH("x >= null", "{\"x\":null}", 0);
    MATCH("x > null", "{\"x\":1}", 0);
    MATCH("x <= [1]", "{\"x\":[0]}", 0);
    MATCH("x <= [1]", "{\"x\":[1]}", 0);
    MATCH("x > {}", "{\"x\":{\"a\":1}}", 0);
    /* Big and mixed numbers. */
    MATCH("n > 505874924095815681", "{\"n\":505874924095815682}", 1);
    MATCH("n > 505874924095815682", "{\"n\":505874924095815681}", 0);
    MATCH("n < -99999999999999999999999", "{\"n\":-100000000000000000000000}", 1);
    MATCH("n > 1", "{\"n\":1.5}", 1);
    MATCH("n >= 1.0", "{\"n\":1}", 1);
    MATCH("n > 1.0", "{\"n\":1}", 0);
    MATCH("n < 9007199254740992.0", "{\"n\":9007199254740993}", 0);
    MATCH("n > 9007199254740992.0", "{\"n\":9007199254740993}", 1);
}

static void test_contains(void)
{
    MATCH("name contains \"li\"", "{\"name\":\"Alice\"}", 1);
    MATCH("name contains \"Al\"", "{\"name\":\"Alice\"}", 1);
    MATCH("name contains \"ce\"", "{\"name\":\"Alice\"}", 1);
    MATCH("name contains \"al\"", "{\"name\":\"Alice\"}", 0);
    MATCH("name contains \"Alicex\"", "{\"name\":\"Alice\"}", 0);
    MATCH("name contains \"\"", "{\"name\":\"\"}", 1);
    MATCH("name contains \"\xc3\xa9\"", "{\"name\":\"caf\xc3\xa9!\"}", 1);
    /* On unescaped text: an escape is one character. */
    MATCH("s contains \"a\\\"b\"", "{\"s\":\"xa\\\"by\"}", 1);
    MATCH("s contains \"n\"", "{\"s\":\"a\\nb\"}", 0);    /* newline, no letter n */
    MATCH("s contains \"n\"", "{\"s\":\"a\\nbn\"}", 1);
    MATCH("s contains \"\\n\"", "{\"s\":\"a\\nb\"}", 1);
    MATCH("s contains \"\\nb\"", "{\"s\":\"a\\nb\"}", 1);
    MATCH("s contains \"u0001\"", "{\"s\":\"\\u0001\"}", 0);
    MATCH("s contains \"\\u0001\"", "{\"s\":\"x\\u0001\"}", 1);
    MATCH("s contains \"\\\\\"", "{\"s\":\"a\\\\b\"}", 1);    /* a backslash */
    MATCH("s contains \"\\\\n\"", "{\"s\":\"a\\\\nb\"}", 1);  /* backslash, n */
    MATCH("s contains \"\\n\"", "{\"s\":\"a\\\\nb\"}", 0);    /* no newline there */
    MATCH("s contains \"n\"", "{\"s\":\"a\\\\nb\"}", 1);
    MATCH("s contains \"\\\\\\\\\"", "{\"s\":\"a\\\\b\\\\\\\\\"}", 1); /* two backslashes */
    MATCH("s contains \"\\\\\\\\\"", "{\"s\":\"a\\\\b\\\\\"}", 0);
    /* Arrays: some element equal. */
    MATCH("tags contains \"red\"", "{\"tags\":[\"blue\",\"red\"]}", 1);
    MATCH("tags contains \"red\"", "{\"tags\":[\"reddish\"]}", 0);
    MATCH("tags contains \"red\"", "{\"tags\":[]}", 0);
    MATCH("nums contains 1", "{\"nums\":[2,1.0]}", 1);
    MATCH("nums contains [1]", "{\"nums\":[[1],2]}", 1);
    MATCH("nums contains null", "{\"nums\":[null]}", 1);
    MATCH("nums contains {\"a\":1}", "{\"nums\":[{\"a\":1.0}]}", 1);
    /* Objects: a member of that name. */
    MATCH("o contains \"k\"", "{\"o\":{\"k\":null}}", 1);
    MATCH("o contains \"k\"", "{\"o\":{\"kk\":1}}", 0);
    MATCH("o contains \"k k\"", "{\"o\":{\"k k\":1}}", 1);
    MATCH("o contains 1", "{\"o\":{\"1\":1}}", 0);
    /* Anything else: false. */
    MATCH("x contains \"a\"", "{}", 0);
    MATCH("x contains \"a\"", "{\"x\":null}", 0);
    MATCH("x contains 1", "{\"x\":1}", 0);
    MATCH("x contains 1", "{\"x\":\"1\"}", 0);
    MATCH("x contains true", "{\"x\":true}", 0);
}

static void test_exists(void)
{
    MATCH("x exists", "{\"x\":1}", 1);
    MATCH("x exists", "{\"x\":0}", 1);
    MATCH("x exists", "{\"x\":false}", 1);
    MATCH("x exists", "{\"x\":\"\"}", 1);
    MATCH("x exists", "{\"x\":[]}", 1);
    MATCH("x exists", "{\"x\":null}", 0);
    MATCH("x exists", "{}", 0);
    MATCH("x exists", "[]", 0);
    MATCH("not x exists", "{}", 1);
    MATCH("not x exists", "{\"x\":null}", 1);
    MATCH("not x exists", "{\"x\":2}", 0);
    MATCH("deleted_at exists", "{\"deleted_at\":\"2026\"}", 1);
    MATCH("a.b exists", "{\"a\":{\"b\":1}}", 1);
    MATCH("a.b exists", "{\"a\":{\"c\":1}}", 0);
    MATCH("a.b exists", "{\"a\":5}", 0);
}

static void test_in(void)
{
    MATCH("country in [\"NO\", \"SE\"]", "{\"country\":\"NO\"}", 1);
    MATCH("country in [\"NO\", \"SE\"]", "{\"country\":\"SE\"}", 1);
    MATCH("country in [\"NO\", \"SE\"]", "{\"country\":\"DK\"}", 0);
    MATCH("country in [\"NO\", \"SE\"]", "{}", 0);
    MATCH("country in [\"NO\", \"SE\"]", "{\"country\":null}", 0);
    MATCH("country in [\"NO\", \"SE\"]", "{\"country\":[\"NO\"]}", 0);
    MATCH("n in [1, 2]", "{\"n\":2.0}", 1);
    MATCH("n in [1, 2]", "{\"n\":3}", 0);
    MATCH("n in []", "{\"n\":3}", 0);
    MATCH("n in [null]", "{\"n\":null}", 1);
    MATCH("n in [null]", "{}", 0);
    MATCH("n in [[1], {\"a\": 2}]", "{\"n\":{\"a\":2}}", 1);
    MATCH("not n in [1]", "{}", 1);
}

static void test_matches(void)
{
    MATCH("name matches \"^A\"", "{\"name\":\"Alice\"}", 1);
    MATCH("name matches \"^A\"", "{\"name\":\"bob\"}", 0);
    MATCH("name matches \"li\"", "{\"name\":\"Alice\"}", 1); /* unanchored */
    MATCH("name matches \"^A\"", "{\"name\":5}", 0);
    MATCH("name matches \"^A\"", "{\"name\":[\"Alice\"]}", 0);
    MATCH("name matches \"^A\"", "{}", 0);
    MATCH("name matches \"^A\"", "{\"name\":null}", 0);
    MATCH("name matches \"(?i)^alice$\"", "{\"name\":\"ALICE\"}", 1);
    MATCH("name matches \"^\\\\d{3}-\\\\d{4}$\"", "{\"name\":\"555-1234\"}", 1);
    /* Unicode: UTF and UCP. */
    MATCH("name matches \"^\xc3\x84\"", "{\"name\":\"\xc3\x84pfel\"}", 1);
    MATCH("name matches \"^\xc3\x84\"", "{\"name\":\"Apfel\"}", 0);
    MATCH("name matches \"^\\\\p{Lu}\"", "{\"name\":\"\xc3\x89lan\"}", 1);
    MATCH("name matches \"^\\\\p{Lu}\"", "{\"name\":\"\xc3\xa9lan\"}", 0);
    MATCH("name matches \"^\\\\p{L}+$\"", "{\"name\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"}", 1);
    MATCH("name matches \"^\\\\p{L}+$\"", "{\"name\":\"abc1\"}", 0);
    MATCH("name matches \"^\\\\w+$\"", "{\"name\":\"\xc3\xa9t\xc3\xa9\"}", 1); /* \w is unicode (UCP) */
    MATCH("name matches \"^.$\"", "{\"name\":\"\xc3\xa9\"}", 1);               /* one character */
    MATCH("name matches \"^(?i)\xc3\xa9\"", "{\"name\":\"\xc3\x89\"}", 1);
    /* ZWJ emoji: woman, ZWJ, laptop — one extended grapheme cluster. */
    const char *tech = "{\"name\":\"\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb\"}";
    MATCH("name matches \"^\\\\X$\"", tech, 1);
    MATCH("name matches \"^.$\"", tech, 0);
    MATCH("name matches \"\xf0\x9f\x92\xbb$\"", tech, 1);
    MATCH("name matches \"\\u200d\"", tech, 1);
    MATCH("name matches \"^\\\\p{So}\"", tech, 1);
    /* Subjects with escapes are unescaped first. */
    MATCH("s matches \"^a\\nb$\"", "{\"s\":\"a\\nb\"}", 1);
    MATCH("s matches \"^a\\\"b$\"", "{\"s\":\"a\\\"b\"}", 1);
    MATCH("s matches \"\\\\\\\\\"", "{\"s\":\"a\\\\b\"}", 1);
    MATCH("s matches \"\\\\\\\\\"", "{\"s\":\"ab\"}", 0);
    MATCH("s matches \"^a\\u0000b$\"", "{\"s\":\"a\\u0000b\"}", 1);
    MATCH("s matches \"^a.b$\"", "{\"s\":\"a\\tb\"}", 1);
    /* A pathological pattern stops at the match limit: no match. */
    MATCH("s matches \"^(a+)+$\"", "{\"s\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"}", 0);
    MATCH("s matches \"^(a|a)*$\"", "{\"s\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"}", 0);
    MATCH("s matches \"^(a+)+$\"", "{\"s\":\"aaaa\"}", 1);

    /* Invalid patterns: errors at parse time, at the pattern's column. */
    BAD("name matches \"(\"", 14, "invalid regular expression");
    BAD("name matches \"[a-\"", 14, "missing terminating ]");
    BAD("name matches \"\\\\p{Nope}\"", 14, "invalid regular expression");
    BAD("name matches \"a{2,1}\"", 14, "invalid regular expression");
    BAD("name matches 5", 14, "expected the pattern as a JSON string");
    BAD("name matches ^A", 14, "expected the pattern as a JSON string");
    BAD("name matches", 13, "expected the pattern");
}

/* ------------------------------------------------------------------------
 * Logic, precedence, paths
 * ---------------------------------------------------------------------- */

static void test_logic(void)
{
    const char *a = "{\"a\":1}", *b = "{\"b\":1}", *bc = "{\"b\":1,\"c\":1}", *ac = "{\"a\":1,\"c\":1}";
    /* and binds tighter than or. */
    MATCH("a = 1 or b = 1 and c = 1", a, 1);
    MATCH("a = 1 or b = 1 and c = 1", b, 0);
    MATCH("a = 1 or b = 1 and c = 1", bc, 1);
    MATCH("(a = 1 or b = 1) and c = 1", a, 0);
    MATCH("(a = 1 or b = 1) and c = 1", ac, 1);
    MATCH("b = 1 and c = 1 or a = 1", a, 1);
    /* not binds tighter than and. */
    MATCH("not a = 1 and b = 1", b, 1);
    MATCH("not a = 1 and b = 1", ac, 0);
    MATCH("not (a = 1 and c = 1)", a, 1);
    MATCH("not (a = 1 and c = 1)", ac, 0);
    MATCH("not not a = 1", a, 1);
    MATCH("not not not a = 1", a, 0);
    MATCH("not(a = 1)", a, 0);
    /* Upper-case and, or, not. */
    MATCH("a = 1 AND c = 1", ac, 1);
    MATCH("a = 2 OR c = 1", ac, 1);
    MATCH("NOT a = 1", ac, 0);
    MATCH("a=1 and(c=1)", ac, 1);
    MATCH("(a=1)and(c=1)", ac, 1);
    MATCH("\ta = 1\nand\r\nc = 1  ", ac, 1);
    MATCH("((((a = 1))))", a, 1);
    MATCH("a = 1 and b = 1 and c = 1", bc, 0);
    MATCH("a = 2 or b = 2 or c = 1", bc, 1);
    /* true matches everything, also a missing document. */
    MATCH("true", "null", 1);
    MATCH("true and a = 1", a, 1);
    MATCH("not true", a, 0);
    kd_filter *f = P("true");
    CHECK(f);
    CHECK_EQ_INT(kd__filter_eval(f, KD__JV_MISSING), 1);
    kd_filter_free(f);
    /* A missing document (tombstone): only what is true of nothing. */
    f = P("a != 1 and not b exists and not c = 2");
    CHECK(f);
    CHECK_EQ_INT(kd__filter_eval(f, KD__JV_MISSING), 1);
    kd_filter_free(f);
    f = P("a = 1 or b exists");
    CHECK(f);
    CHECK_EQ_INT(kd__filter_eval(f, KD__JV_MISSING), 0);
    kd_filter_free(f);
}

static void test_paths(void)
{
    const char *doc = "{\"a\":{\"b\":[10,{\"c\":5}]},\"items\":[{\"x\":1},{\"x\":2}],\"01\":\"lz\",\"1\":\"one\","
                      "\"a.b\":{\"c\":7},\"first name\":\"Ann\",\"and\":3,\"caf\xc3\xa9\":1}";
    MATCH("a.b.1.c = 5", doc, 1);
    MATCH("a.b.0 = 10", doc, 1);
    MATCH("a.b.2 exists", doc, 0);
    MATCH("items.1.x = 2", doc, 1);
    MATCH("items.1.x > 1 and items.0.x < 2", doc, 1);
    MATCH("items.01.x exists", doc, 0); /* leading zero: a member name only */
    MATCH("01 = \"lz\"", doc, 1);
    MATCH("1 = \"one\"", doc, 1);
    MATCH("\"1\" = \"one\"", doc, 1);
    MATCH("\"a.b\".c = 7", doc, 1);
    MATCH("a.b.c exists", doc, 0);
    MATCH("\"first name\" = \"Ann\"", doc, 1);
    MATCH("\"first name\" contains \"n\"", doc, 1);
    MATCH("\"and\" = 3", doc, 1);
    MATCH("caf\xc3\xa9 = 1", doc, 1);
    MATCH("\"caf\\u00e9\" = 1", doc, 1);
    MATCH("a.b.1.c.d exists", doc, 0);
    MATCH("0 = 1", "[1]", 1);
    MATCH("0.0 = 1", "[[1]]", 1);
}

/* ------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */

static void test_errors(void)
{
    BAD("", 1, "empty filter");
    BAD("   ", 1, "empty filter");
    BAD("status = active", 10, "bare word active is not a value; quote it: \"active\"");
    BAD("age > 30 and status == active", 24, "bare word active is not a value; quote it: \"active\"");
    BAD("a = b.c", 5, "bare word b.c is not a value; quote it: \"b.c\"");
    BAD("a = tru", 5, "bare word tru");
    BAD("a = True", 5, "bare word True");
    BAD("age >", 6, "expected a value after >");
    BAD("age > 30 and", 13, "expected a condition");
    BAD("age > 30 or ", 13, "expected a condition");
    BAD("age 30", 5, "expected an operator after the field age");
    BAD("age", 4, "expected an operator");
    BAD("age =< 3", 6, "expected a value");
    BAD("a ! 1", 4, "expected '=' after '!'");
    BAD("a !", 4, "expected '=' after '!'");
    BAD("x in 1, 2", 6, "expected a JSON array after in");
    BAD("(a = 1", 7, "expected and, or or ')' to close the '(' at column 1");
    BAD("((a = 1) and b = 2", 19, "to close the '(' at column 1");
    BAD("a = 1)", 6, "unmatched ')'");
    BAD("a = 1 b = 2", 7, "expected and, or or the end of the filter, found \"b\"");
    BAD("a = 1 And b = 2", 7, "expected and, or or the end");
    BAD("a = 1 AND", 10, "expected a condition");
    BAD("a = 01", 6, "leading zeros");
    BAD("a = [1,]", 8, "expected a value");
    BAD("a = {\"x\" 1}", 10, "expected ':'");
    BAD("a = \"abc", 5, "unterminated string");
    BAD("a = \"a\\x\"", 7, "bad value");
    BAD("a = [1, 2", 5, "unclosed '['");
    BAD("a = {", 5, "unclosed '{'");
    BAD("a = 1e400", 5, "out of range");
    BAD("a = -", 6, "bad value");
    BAD("a = 1.", 7, "bad value");
    BAD("a = 1and b = 2", 6, "expected a space after the value");
    BAD("a = truex", 5, "bare word truex");
    BAD("a = 1.2.3", 8, "bad value");
    BAD("a = @", 5, "expected a value after =");
    BAD("and = 1", 1, "keyword and; quote a field with that name: \"and\"");
    BAD("a = 1 and or = 2", 11, "keyword or");
    BAD("exists", 1, "keyword exists");
    BAD("null = 1", 1, "keyword null");
    BAD("true = 1", 1, "keyword true; quote a field with that name: \"true\"");
    BAD("a = 1 or true exists", 10, "keyword true");
    BAD("true x", 6, "expected and, or or the end");
    BAD("not", 4, "expected a condition");
    BAD("= 1", 1, "expected a condition");
    BAD(")", 1, "expected a condition");
    BAD("a..b = 1", 3, "expected a field name");
    BAD("a. = 1", 3, "expected a field name");
    BAD("\"a = 1", 1, "unterminated quoted name");
    BAD("caf\xff = 1", 1, "invalid UTF-8");
    BAD("x exists y", 10, "expected and, or or the end");
    BAD("x existsy", 3, "expected an operator");
    BAD("x in 5", 6, "expected a JSON array after in");
    BAD("x in \"NO\"", 6, "expected a JSON array after in");
    BAD("x in NO", 6, "bare word NO is not a value; quote it: \"NO\"");
    BAD("x in", 5, "expected a JSON array");
    BAD("x contains", 11, "expected a value after contains");
    BAD("x CONTAINS 1", 3, "expected an operator");
    BAD("x = \"\xff\"", 6, "bad value");
    BAD("x = [\"a\", b]", 11, "bad value");
    /* kd_filter_parse misuse. */
    kd_filter *f = (kd_filter *)1;
    char err[100];
    CHECK_RC(kd_filter_parse(NULL, &f, err, sizeof err), KD_EINVALID);
    CHECK(f == NULL);
    CHECK_RC(kd_filter_parse("a = 1", NULL, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_filter_parse("a = ", &f, NULL, 0), KD_EINVALID);
}

/* Random damage to valid filters: whatever fails names a column within
 * the text (+1 for the end), and whatever parses prints and re-parses. */
static void test_errors_always_have_columns(void)
{
    const char *seeds[] = {"age > 30 and status = \"active\"", "not (a.b.1 in [1, \"x\"] or c matches \"^[a-z]+$\")",
                           "\"first name\" contains \"An\" and x exists", "a != {\"k\": [1, 2.5e3, null]}"};
    const char junk[] = "()\"[]{}.=!<> andornot\\,:1ex";
    uint32_t seed = 7;
    char buf[128];
    for (int it = 0; it < 20000; it++) {
        const char *s = seeds[it % 4];
        size_t n = strlen(s);
        memcpy(buf, s, n + 1);
        int edits = 1 + (int)(seed % 3);
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % n;
            int kind = (int)((seed >> 4) % 3);
            char c = junk[(seed >> 16) % (sizeof junk - 1)];
            if (kind == 0) {
                buf[at] = c;
            } else if (kind == 1 && n + 1 < sizeof buf) {
                memmove(buf + at + 1, buf + at, n - at + 1);
                buf[at] = c;
                n++;
            } else if (n > 1) {
                memmove(buf + at, buf + at + 1, n - at);
                n--;
            }
        }
        kd_filter *f = NULL;
        char err[400] = "";
        int rc = kd_filter_parse(buf, &f, err, sizeof err);
        if (rc == KD_OK) {
            char *t = to_text(f);
            kd_filter *g = t ? P(t) : NULL;
            CHECK(g != NULL);
            kd_free(t);
            kd_filter_free(g);
            kd_filter_free(f);
            continue;
        }
        size_t col = 0;
        if (rc != KD_EINVALID || sscanf(err, "column %zu: ", &col) != 1 || col < 1 || col > n + 1 ||
            strlen(err) < 12) {
            fprintf(stderr, "    [%s]: rc %d, \"%s\"\n", buf, rc, err);
            CHECK(0);
        }
    }
}

/* ------------------------------------------------------------------------
 * Text and JSON forms
 * ---------------------------------------------------------------------- */

static void test_to_text(void)
{
    TEXT_IS("a = 1 and b = 2 or c = 3", "a = 1 and b = 2 or c = 3");
    TEXT_IS("a=1 AND (b==2 OR c=3)", "a = 1 and (b = 2 or c = 3)");
    TEXT_IS("(a = 1 and b = 2) and c = 3", "(a = 1 and b = 2) and c = 3");
    TEXT_IS("a = 1 or (b = 2 or c = 3)", "a = 1 or (b = 2 or c = 3)");
    TEXT_IS("a = 1 or (b = 2 and c = 3)", "a = 1 or b = 2 and c = 3");
    TEXT_IS("not (a = 1)", "not a = 1");
    TEXT_IS("not (a = 1 or b = 1)", "not (a = 1 or b = 1)");
    TEXT_IS("NOT NOT x exists", "not not x exists");
    TEXT_IS("\"first name\" == \"x\"", "\"first name\" = \"x\"");
    TEXT_IS("\"a\".\"b\" != [1, 2.50, {\"z\":1, \"a\":2}]", "a.b != [1,2.5,{\"a\":2,\"z\":1}]");
    TEXT_IS("\"and\".x >= 1E2", "\"and\".x >= 100.0");
    TEXT_IS("name matches \"^\\\\d+\\u00e9\"", "name matches \"^\\\\d+\xc3\xa9\"");
    TEXT_IS("c in [ \"NO\" , \"SE\" ]", "c in [\"NO\",\"SE\"]");
    TEXT_IS("t contains \"x\" and u < -0.0", "t contains \"x\" and u < -0.0");
    TEXT_IS("true", "true");
}

static void test_json_form(void)
{
    JSON_IS("a.b = 1", "{\"field\":\"a.b\",\"op\":\"eq\",\"value\":1}");
    JSON_IS("a = 1 and (b = 2 or not c exists)",
            "{\"args\":[{\"field\":\"a\",\"op\":\"eq\",\"value\":1},{\"args\":[{\"field\":\"b\",\"op\":\"eq\","
            "\"value\":2},{\"arg\":{\"field\":\"c\",\"op\":\"exists\"},\"op\":\"not\"}],\"op\":\"or\"}],"
            "\"op\":\"and\"}");
    JSON_IS("name matches \"^A\"", "{\"field\":\"name\",\"op\":\"matches\",\"pattern\":\"^A\"}");
    JSON_IS("c in [\"NO\",\"SE\"]", "{\"field\":\"c\",\"op\":\"in\",\"values\":[\"NO\",\"SE\"]}");
    JSON_IS("\"a.b\".\"c d\" != 1.0", "{\"field\":\"\\\"a.b\\\".\\\"c d\\\"\",\"op\":\"ne\",\"value\":1.0}");
    JSON_IS("x > 1 or x >= 1 or x < 1 or x <= 1 or x contains 1",
            "{\"args\":[{\"field\":\"x\",\"op\":\"gt\",\"value\":1},{\"field\":\"x\",\"op\":\"gte\",\"value\":1},"
            "{\"field\":\"x\",\"op\":\"lt\",\"value\":1},{\"field\":\"x\",\"op\":\"lte\",\"value\":1},"
            "{\"field\":\"x\",\"op\":\"contains\",\"value\":1}],\"op\":\"or\"}");
    JSON_IS("true", "{\"op\":\"true\"}");

    /* From JSON: any JSON text, members in any order. */
    const char *in = " { \"value\" : 30 , \"op\" : \"gt\", \"field\" : \"age\" } ";
    kd_filter *f = NULL;
    char err[300];
    CHECK_RC(kd_filter_from_json(in, strlen(in), &f, err, sizeof err), KD_OK);
    CHECK_EQ_INT(kd_filter_match(f, "{\"age\":31}", 10), 1);
    CHECK_EQ_INT(kd_filter_match(f, "{\"age\":30}", 10), 0);
    char *t = to_text(f);
    CHECK(t && strcmp(t, "age > 30") == 0);
    kd_free(t);
    kd_filter_free(f);

    in = "{\"op\":\"or\",\"args\":[{\"op\":\"matches\",\"field\":\"n\",\"pattern\":\"^\\u00c4\"},"
         "{\"op\":\"in\",\"field\":\"c\",\"values\":[1,2]},{\"op\":\"not\",\"arg\":{\"op\":\"exists\",\"field\":\"z\"}}]}";
    CHECK_RC(kd_filter_from_json(in, strlen(in), &f, err, sizeof err), KD_OK);
    const char *d1 = "{\"n\":\"\xc3\x84x\",\"z\":1}", *d2 = "{\"c\":2.0,\"z\":1}", *d3 = "{\"c\":3,\"z\":1}";
    CHECK_EQ_INT(kd_filter_match(f, d1, strlen(d1)), 1);
    CHECK_EQ_INT(kd_filter_match(f, d2, strlen(d2)), 1);
    CHECK_EQ_INT(kd_filter_match(f, d3, strlen(d3)), 0);
    CHECK_EQ_INT(kd_filter_match(f, "{}", 2), 1);
    t = to_text(f);
    CHECK(t && strcmp(t, "n matches \"^\xc3\x84\" or c in [1,2] or not z exists") == 0);
    kd_free(t);
    kd_filter_free(f);

    /* Errors name the member or op, and where the node is. */
    struct {
        const char *json, *has;
    } bad[] = {
        {"", "filter: invalid JSON at byte 0"},
        {"{\"op\":\"eq\",\"field\":\"a\",\"value\":1", "filter: invalid JSON"},
        {"[]", "filter: expected an object"},
        {"{}", "filter: missing member \"op\""},
        {"{\"op\":1}", "\"op\" must be a string"},
        {"{\"op\":\"equals\",\"field\":\"a\",\"value\":1}", "unknown op \"equals\""},
        {"{\"op\":\"eq\",\"field\":\"a\",\"value\":1,\"extra\":2}", "unknown member \"extra\" in the \"eq\" node"},
        {"{\"op\":\"exists\",\"field\":\"a\",\"value\":1}", "unknown member \"value\" in the \"exists\" node"},
        {"{\"op\":\"not\",\"arg\":{\"op\":\"true\"},\"x\":1}", "unknown member \"x\" in the \"not\" node"},
        {"{\"op\":\"true\",\"x\":1}", "unknown member \"x\" in the \"true\" node"},
        {"{\"op\":\"lt\",\"field\":\"a\",\"value\":1,\"x\":1}", "unknown member \"x\" in the \"lt\" node"},
        {"{\"op\":\"gte\",\"field\":\"a\",\"value\":1,\"x\":1}", "unknown member \"x\" in the \"gte\" node"},
        {"{\"op\":\"eq\",\"value\":1}", "\"eq\" needs \"field\""},
        {"{\"op\":\"eq\",\"field\":5,\"value\":1}", "\"eq\" needs \"field\""},
        {"{\"op\":\"eq\",\"field\":\"a\"}", "\"eq\" needs \"value\""},
        {"{\"op\":\"eq\",\"field\":\"a..b\",\"value\":1}", "bad \"field\": column 3: expected a field name"},
        {"{\"op\":\"eq\",\"field\":\"\",\"value\":1}", "bad \"field\": column 1: empty field path"},
        {"{\"op\":\"in\",\"field\":\"a\",\"values\":1}", "\"values\" of \"in\" must be an array"},
        {"{\"op\":\"in\",\"field\":\"a\"}", "\"in\" needs \"values\""},
        {"{\"op\":\"matches\",\"field\":\"a\",\"pattern\":\"(\"}", "invalid regular expression"},
        {"{\"op\":\"matches\",\"field\":\"a\",\"pattern\":1}", "\"matches\" needs \"pattern\""},
        {"{\"op\":\"and\",\"args\":[{\"op\":\"true\"}]}", "\"and\" needs \"args\": an array of at least 2"},
        {"{\"op\":\"or\",\"args\":{}}", "\"or\" needs \"args\""},
        {"{\"op\":\"not\"}", "missing member \"arg\""},
        {"{\"op\":\"true\",\"x\":1}", "unknown member \"x\""},
        {"{\"op\":\"and\",\"args\":[{\"op\":\"true\"},{\"op\":\"not\",\"arg\":{\"op\":\"eq\",\"field\":\"a\"}}]}",
         "filter at args.1.arg: \"eq\" needs \"value\""},
        {"{\"op\":\"or\",\"args\":[{\"op\":\"true\"},{\"op\":\"bad\"}]}", "filter at args.1: unknown op \"bad\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = (kd_filter *)1;
        err[0] = '\0';
        int rc = kd_filter_from_json(bad[i].json, strlen(bad[i].json), &f, err, sizeof err);
        if (rc != KD_EINVALID || f != NULL || !strstr(err, bad[i].has)) {
            fprintf(stderr, "    from_json %s: rc %d, \"%s\", wanted \"%s\"\n", bad[i].json, rc, err, bad[i].has);
            CHECK(0);
        }
    }
    CHECK_RC(kd_filter_from_json(NULL, 0, &f, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_filter_from_json("{}", 2, NULL, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_filter_to_json(NULL, &t, NULL), KD_EINVALID);
    CHECK(t == NULL);
    CHECK_RC(kd_filter_to_text(NULL, &t, NULL), KD_EINVALID);
    kd_filter_free(NULL);
}

/* parse(text) -> to_text -> parse -> to_json equals parse(text) -> to_json,
 * and from_json(to_json) -> to_json too; all three give the same answers
 * on docs. Returns 0 with a message on any difference. */
static int round_trips(const char *text, const char *const *docs, size_t n_docs)
{
    kd_filter *f = P(text), *g = NULL, *h = NULL, *c = NULL;
    char *t = NULL, *j1 = NULL, *j2 = NULL, *j3 = NULL, *t2 = NULL;
    int ok = 0;
    if (!f || !(t = to_text(f)) || !(j1 = to_json(f)))
        goto done;
    if (!(g = P(t)) || !(j2 = to_json(g)) || strcmp(j1, j2) != 0) {
        fprintf(stderr, "    text round trip of [%s] via [%s]: %s vs %s\n", text, t, j1, j2 ? j2 : "-");
        goto done;
    }
    char err[300];
    if (kd_filter_from_json(j1, strlen(j1), &h, err, sizeof err) != KD_OK || !(j3 = to_json(h)) ||
        strcmp(j1, j3) != 0 || !(t2 = to_text(h)) || strcmp(t, t2) != 0) {
        fprintf(stderr, "    JSON round trip of %s: %s\n", j1, j3 ? j3 : err);
        goto done;
    }
    if (!(c = kd__filter_copy(f)))
        goto done;
    for (size_t i = 0; i < n_docs; i++) {
        size_t len = strlen(docs[i]);
        int a = kd_filter_match(f, docs[i], len), b = kd_filter_match(g, docs[i], len),
            d = kd_filter_match(h, docs[i], len), e = kd_filter_match(c, docs[i], len);
        if (a < 0 || a != b || a != d || a != e) {
            fprintf(stderr, "    [%s] on %s: %d %d %d %d\n", text, docs[i], a, b, d, e);
            goto done;
        }
    }
    ok = 1;
done:
    kd_free(t);
    kd_free(t2);
    kd_free(j1);
    kd_free(j2);
    kd_free(j3);
    kd_filter_free(f);
    kd_filter_free(g);
    kd_filter_free(h);
    kd_filter_free(c);
    return ok;
}

/* ------------------------------------------------------------------------
 * Properties over generated documents and filters
 * ---------------------------------------------------------------------- */

static uint32_t rng = 2463534242u;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng % n;
}

static const char *const lits[] = {"null", "0", "1", "1.0", "2", "-1.5", "\"x\"", "\"y\"", "\"\"", "true",
                                   "false", "[1]", "[1.0,\"x\"]", "{\"k\":1}", "\"a\\nb\""};
#define N_LITS (sizeof lits / sizeof lits[0])
static const char *const fields[] = {"a", "b", "c.d", "e.0"};

static void gen_doc(char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "{");
    const char *names[] = {"a", "b", "c", "e"};
    int first = 1;
    for (int i = 0; i < 4; i++) {
        if (rnd(4) == 0)
            continue; /* missing */
        const char *v = lits[rnd(N_LITS)];
        char inner[64];
        if (i == 2)
            snprintf(inner, sizeof inner, rnd(3) ? "{\"d\":%s}" : "%s", v);
        else if (i == 3)
            snprintf(inner, sizeof inner, rnd(3) ? "[%s,1]" : "%s", v);
        else
            snprintf(inner, sizeof inner, "%s", v);
        n += (size_t)snprintf(out + n, cap - n, "%s\"%s\":%s", first ? "" : ",", names[i], inner);
        first = 0;
    }
    snprintf(out + n, cap - n, "}");
}

static void gen_atom(char *out, size_t cap)
{
    const char *f = fields[rnd(4)];
    const char *v = lits[rnd(N_LITS)];
    switch (rnd(11)) {
    case 0:
        snprintf(out, cap, "%s = %s", f, v);
        break;
    case 1:
        snprintf(out, cap, "%s != %s", f, v);
        break;
    case 2:
        snprintf(out, cap, "%s > %s", f, v);
        break;
    case 3:
        snprintf(out, cap, "%s >= %s", f, v);
        break;
    case 4:
        snprintf(out, cap, "%s < %s", f, v);
        break;
    case 5:
        snprintf(out, cap, "%s <= %s", f, v);
        break;
    case 6:
        snprintf(out, cap, "%s contains %s", f, v);
        break;
    case 7:
        snprintf(out, cap, "%s exists", f);
        break;
    case 8:
        snprintf(out, cap, "%s matches \"%s\"", f, rnd(2) ? "^x" : "\\\\n|y");
        break;
    case 9:
        snprintf(out, cap, "%s in [%s, %s]", f, v, lits[rnd(N_LITS)]);
        break;
    default:
        snprintf(out, cap, "true");
        break;
    }
}

static void gen_filter(char *out, size_t cap, int depth)
{
    if (depth == 0 || rnd(3) == 0) {
        gen_atom(out, cap);
        return;
    }
    char a[400], b[400];
    gen_filter(a, sizeof a, depth - 1);
    gen_filter(b, sizeof b, depth - 1);
    switch (rnd(4)) {
    case 0:
        snprintf(out, cap, "(%s) and (%s)", a, b);
        break;
    case 1:
        snprintf(out, cap, "%s or %s", a, b);
        break;
    case 2:
        snprintf(out, cap, "not (%s)", a);
        break;
    default:
        snprintf(out, cap, "%s and %s", a, b);
        break;
    }
}

/* Two filters agree on every document. */
static int same_on(const char *x, const char *y, char docs[][200], size_t n)
{
    kd_filter *f = P(x), *g = P(y);
    int ok = f && g;
    for (size_t i = 0; ok && i < n; i++) {
        int a = kd_filter_match(f, docs[i], strlen(docs[i])), b = kd_filter_match(g, docs[i], strlen(docs[i]));
        if (a != b || a < 0) {
            fprintf(stderr, "    [%s] = %d but [%s] = %d on %s\n", x, a, y, b, docs[i]);
            ok = 0;
        }
    }
    kd_filter_free(f);
    kd_filter_free(g);
    return ok;
}

static void test_properties(void)
{
    enum { N_DOCS = 200 };
    static char docs[N_DOCS][200];
    for (int i = 0; i < N_DOCS; i++)
        gen_doc(docs[i], sizeof docs[i]);
    char A[1024], B[1024], x[2600], y[2600];
    for (int it = 0; it < 300; it++) {
        gen_filter(A, sizeof A, 2);
        gen_filter(B, sizeof B, 2);
        snprintf(x, sizeof x, "not ((%s) and (%s))", A, B);
        snprintf(y, sizeof y, "not (%s) or not (%s)", A, B);
        CHECK(same_on(x, y, docs, N_DOCS));
        snprintf(x, sizeof x, "not ((%s) or (%s))", A, B);
        snprintf(y, sizeof y, "not (%s) and not (%s)", A, B);
        CHECK(same_on(x, y, docs, N_DOCS));
        snprintf(x, sizeof x, "not not (%s)", A);
        CHECK(same_on(x, A, docs, N_DOCS));
        snprintf(x, sizeof x, "(%s) or (%s)", A, B);
        snprintf(y, sizeof y, "(%s) or (%s)", B, A);
        CHECK(same_on(x, y, docs, N_DOCS));
    }
    for (int it = 0; it < 300; it++) {
        const char *f = fields[rnd(4)];
        const char *v = lits[rnd(N_LITS)], *w = lits[rnd(N_LITS)];
        snprintf(x, sizeof x, "%s != %s", f, v);
        snprintf(y, sizeof y, "not %s = %s", f, v);
        CHECK(same_on(x, y, docs, N_DOCS));
        snprintf(x, sizeof x, "%s in [%s, %s]", f, v, w);
        snprintf(y, sizeof y, "%s = %s or %s = %s", f, v, f, w);
        CHECK(same_on(x, y, docs, N_DOCS));
        /* Ranges: only for literals ranges apply to (number, string, boolean). */
        if (strcmp(v, "null") != 0 && v[0] != '[' && v[0] != '{') {
            snprintf(x, sizeof x, "%s >= %s", f, v);
            snprintf(y, sizeof y, "%s > %s or %s = %s", f, v, f, v);
            CHECK(same_on(x, y, docs, N_DOCS));
            snprintf(x, sizeof x, "%s <= %s", f, v);
            snprintf(y, sizeof y, "%s >= %s and %s = %s or %s < %s", f, v, f, v, f, v);
            CHECK(same_on(x, y, docs, N_DOCS));
        }
        /* exists: present and not null. */
        snprintf(x, sizeof x, "not %s exists", f);
        snprintf(y, sizeof y, "%s = null or not %s exists", f, f);
        CHECK(same_on(x, y, docs, N_DOCS));
        if (strcmp(v, "null") != 0) {
            snprintf(x, sizeof x, "%s = %s", f, v);
            snprintf(y, sizeof y, "%s exists and %s = %s", f, f, v);
            CHECK(same_on(x, y, docs, N_DOCS));
        }
    }
    /* Round trips through both forms, same answers. */
    const char *dp[N_DOCS];
    for (int i = 0; i < N_DOCS; i++)
        dp[i] = docs[i];
    for (int it = 0; it < 300; it++) {
        gen_filter(A, sizeof A, 3);
        CHECK(round_trips(A, dp, N_DOCS));
    }
}

static void test_round_trip_cases(void)
{
    const char *docs[] = {"{}", "{\"a\":1,\"s\":\"x\\\"y\",\"and\":[1,2]}", "{\"first name\":\"A\\u00e9\"}"};
    const char *cases[] = {
        "a = 1",
        "\"and\" contains 2",
        "\"first name\" matches \"^A\\u00e9$\" or \"first name\" = \"x\"",
        "s = \"x\\\"y\" and not (a > 0.5 or a < -1e-7)",
        "(a = 1 or a = 2) and (s exists or s in [\"x\\\"y\", null, [], {}])",
        "not (not a = 1 and not s exists)",
        "a = 1 and (s = 2 and (a = 3 and s = 4))",
        "\"\\u0000\".\"\" = \"\\u0000\"",
        "s matches \"\\\\\\\\\\\\p{L}\\u0000\\n\"",
        "true or a = 1",
        "x = 123456789012345678901234567890123456789",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(round_trips(cases[i], docs, 3));
}

/* ------------------------------------------------------------------------
 * Matching input, bounds
 * ---------------------------------------------------------------------- */

static void test_match_input(void)
{
    kd_filter *f = P("a = 1 and name matches \"^Alice$\"");
    CHECK(f);
    const char *doc = " { \"name\" : \"\\u0041lice\" ,\n \"a\" : 1.0e0 } ";
    CHECK_EQ_INT(kd_filter_match(f, doc, strlen(doc)), 1);
    doc = "{\"a\":2,\"name\":\"Alice\",\"a\":1}"; /* duplicates: last wins */
    CHECK_EQ_INT(kd_filter_match(f, doc, strlen(doc)), 1);
    doc = "{\"a\":1,\"name\":\"Alice\",\"a\":2}";
    CHECK_EQ_INT(kd_filter_match(f, doc, strlen(doc)), 0);
    CHECK_EQ_INT(kd_filter_match(f, "{\"a\":1", 6), KD_EINVALID);
    CHECK_EQ_INT(kd_filter_match(f, "", 0), KD_EINVALID);
    CHECK_EQ_INT(kd_filter_match(f, "{\"a\":1} x", 9), KD_EINVALID);
    CHECK_EQ_INT(kd_filter_match(f, "{\"name\":\"\xff\"}", 11), KD_EINVALID);
    CHECK_EQ_INT(kd_filter_match(f, NULL, 3), KD_EINVALID);
    CHECK_EQ_INT(kd_filter_match(NULL, "{}", 2), KD_EINVALID);
    /* A value that is not the whole buffer: only len bytes count. */
    CHECK_EQ_INT(kd_filter_match(f, "{\"a\":1,\"name\":\"Alice\"}garbage", 22), 1);
    kd_filter_free(f);
    /* kd__filter_eval reads canonical text within its slice. */
    f = P("b.c = 2");
    CHECK(f);
    const char *canon = "{\"a\":1,\"b\":{\"c\":2}}XXXX";
    CHECK_EQ_INT(kd__filter_eval(f, (kd__jv){canon, 19}), 1);
    kd_filter_free(f);
}

static void test_depth_bounds(void)
{
    enum { MAXN = KD__FILTER_MAX_NEST };
    size_t cap = 20 * (MAXN + 10) + 100000;
    char *buf = malloc(cap);
    CHECK(buf);
    kd_filter *f = NULL;
    char err[300];
    /* MAXN parentheses parse, one more does not (error at that column). */
    for (int extra = 0; extra <= 1; extra++) {
        int n = MAXN + extra;
        size_t k = 0;
        for (int i = 0; i < n; i++)
            buf[k++] = '(';
        k += (size_t)snprintf(buf + k, cap - k, "a = 1");
        for (int i = 0; i < n; i++)
            buf[k++] = ')';
        buf[k] = '\0';
        int rc = kd_filter_parse(buf, &f, err, sizeof err);
        if (extra == 0) {
            CHECK_RC(rc, KD_OK);
            CHECK_EQ_INT(kd_filter_match(f, "{\"a\":1}", 7), 1);
            kd_filter_free(f);
        } else {
            CHECK_RC(rc, KD_EINVALID);
            char want[80];
            snprintf(want, sizeof want, "column %d: nested deeper than %d", MAXN + 1, MAXN);
            CHECK(strncmp(err, want, strlen(want)) == 0);
        }
    }
    /* Same for not; and both forms round-trip at the limit. */
    for (int extra = 0; extra <= 1; extra++) {
        size_t k = 0;
        for (int i = 0; i < MAXN + extra; i++)
            k += (size_t)snprintf(buf + k, cap - k, "not ");
        snprintf(buf + k, cap - k, "a = [[[1]]]");
        int rc = kd_filter_parse(buf, &f, err, sizeof err);
        if (extra == 0) {
            CHECK_RC(rc, KD_OK);
            kd_filter_free(f);
            const char *docs[] = {"{\"a\":[[[1]]]}", "{}"};
            CHECK(round_trips(buf, docs, 2));
        } else {
            CHECK_RC(rc, KD_EINVALID);
            CHECK(strstr(err, "nested deeper") != NULL);
        }
    }
    /* and/or nodes nest without parentheses for each: the tree depth is
     * bounded the same way (what the JSON form can hold). */
    {
        size_t k = 0;
        for (int i = 0; i < MAXN / 2 + 2; i++)
            k += (size_t)snprintf(buf + k, cap - k, "(a = 1 or b = 1 and ");
        k += (size_t)snprintf(buf + k, cap - k, "c = 1");
        for (int i = 0; i < MAXN / 2 + 2; i++)
            buf[k++] = ')';
        buf[k] = '\0';
        CHECK_RC(kd_filter_parse(buf, &f, err, sizeof err), KD_EINVALID);
        CHECK(strstr(err, "nested deeper than") != NULL && strstr(err, "and, or, not") != NULL);
        k = 0;
        for (int i = 0; i < MAXN / 2 - 1; i++)
            k += (size_t)snprintf(buf + k, cap - k, "(a = 1 or b = 1 and ");
        k += (size_t)snprintf(buf + k, cap - k, "c = [[[[1]]]]");
        for (int i = 0; i < MAXN / 2 - 1; i++)
            buf[k++] = ')';
        buf[k] = '\0';
        const char *docs[] = {"{\"b\":1,\"c\":[[[[1]]]]}", "{}"};
        CHECK(round_trips(buf, docs, 2));
    }
    /* Far too deep: refused without recursing. */
    memset(buf, '(', 100000);
    buf[100000] = '\0';
    CHECK_RC(kd_filter_parse(buf, &f, err, sizeof err), KD_EINVALID);
    {
        size_t k = 0;
        for (int i = 0; i < 20000; i++)
            k += (size_t)snprintf(buf + k, cap - k, "not ");
        CHECK_RC(kd_filter_parse(buf, &f, err, sizeof err), KD_EINVALID);
    }
    /* Literals: nested at most KD__FILTER_MAX_VALUE_DEPTH. */
    for (int extra = 0; extra <= 1; extra++) {
        int d = KD__FILTER_MAX_VALUE_DEPTH + extra;
        size_t k = (size_t)snprintf(buf, cap, "x = ");
        for (int i = 0; i < d; i++)
            buf[k++] = '[';
        for (int i = 0; i < d; i++)
            buf[k++] = ']';
        buf[k] = '\0';
        int rc = kd_filter_parse(buf, &f, err, sizeof err);
        if (extra == 0) {
            CHECK_RC(rc, KD_OK);
            kd_filter_free(f);
        } else {
            CHECK_RC(rc, KD_EINVALID);
            CHECK(strncmp(err, "column 5: value nested deeper", 29) == 0);
        }
    }
    /* The JSON form: MAXN nested nots, and one more. */
    for (int extra = 0; extra <= 1; extra++) {
        size_t k = 0;
        for (int i = 0; i < MAXN + extra; i++)
            k += (size_t)snprintf(buf + k, cap - k, "{\"op\":\"not\",\"arg\":");
        k += (size_t)snprintf(buf + k, cap - k, "{\"op\":\"exists\",\"field\":\"a\"}");
        for (int i = 0; i < MAXN + extra; i++)
            buf[k++] = '}';
        int rc = kd_filter_from_json(buf, k, &f, err, sizeof err);
        if (extra == 0) {
            CHECK_RC(rc, KD_OK);
            char *t = to_text(f);
            kd_filter *g = t ? P(t) : NULL;
            CHECK(g != NULL);
            kd_free(t);
            kd_filter_free(g);
            kd_filter_free(f);
        } else {
            CHECK_RC(rc, KD_EINVALID);
            CHECK(strstr(err, "nested deeper than") != NULL);
        }
    }
    free(buf);
}

/* JSON-form errors name the node's place and always keep the reason: a
 * long place is cut in the middle, whole steps kept at both ends. */
static void test_json_error_places(void)
{
    char *buf = malloc(100000), err[512];
    CHECK(buf);
    kd_filter *f = NULL;
    struct {
        int depth;       /* nested nots, or (and = 1) ands with the node as args.1 */
        int and;
        const char *leaf;
        size_t errlen;
        const char *want; /* the whole message */
    } cases[] = {
        {KD__FILTER_MAX_NEST + 1, 0, "{\"op\":\"true\"}", 512,
         "filter at arg.arg.arg.arg.\xe2\x80\xa6(120 levels)\xe2\x80\xa6.arg.arg.arg.arg: nested deeper than 128 levels "
         "of and, or, not"},
        {KD__FILTER_MAX_NEST + 1, 0, "{\"op\":\"true\"}", 256,
         "filter at arg.arg.arg.arg.\xe2\x80\xa6(120 levels)\xe2\x80\xa6.arg.arg.arg.arg: nested deeper than 128 levels "
         "of and, or, not"},
        {60, 0, "{\"op\":\"eq\",\"field\":\"a\",\"vale\":1}", 256,
         "filter at arg.arg.arg.arg.\xe2\x80\xa6(52 levels)\xe2\x80\xa6.arg.arg.arg.arg: unknown member \"vale\" in the "
         "\"eq\" node"},
        {10, 1, "{\"op\":\"eq\",\"field\":\"a\",\"vale\":1}", 256,
         "filter at args.1.args.1.args.1.args.1.\xe2\x80\xa6(2 levels)\xe2\x80\xa6.args.1.args.1.args.1.args.1: unknown "
         "member \"vale\" in the \"eq\" node"},
        {8, 1, "{\"op\":\"bad\"}", 256,
         "filter at args.1.args.1.args.1.args.1.args.1.args.1.args.1.args.1: unknown op \"bad\" (expected eq, ne, gt, "
         "gte, lt, lte, contains, exists, matches, in, and, or, not or true)"},
        /* a small buffer: fewer steps, the reason whole */
        {60, 0, "{\"op\":\"eq\",\"field\":\"a\",\"vale\":1}", 80,
         "filter at arg.\xe2\x80\xa6(58 levels)\xe2\x80\xa6.arg: unknown member \"vale\" in the \"eq\" node"},
        {60, 0, "{\"op\":\"eq\",\"field\":\"a\",\"vale\":1}", 70,
         "filter at \xe2\x80\xa6(60 levels)\xe2\x80\xa6: unknown member \"vale\" in the \"eq\" node"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t k = 0;
        for (int i = 0; i < cases[c].depth; i++)
            k += (size_t)snprintf(buf + k, 100000 - k, cases[c].and ? "{\"op\":\"and\",\"args\":[{\"op\":\"true\"},"
                                                                    : "{\"op\":\"not\",\"arg\":");
        k += (size_t)snprintf(buf + k, 100000 - k, "%s", cases[c].leaf);
        for (int i = 0; i < cases[c].depth; i++)
            k += (size_t)snprintf(buf + k, 100000 - k, "%s", cases[c].and ? "]}" : "}");
        memset(err, 'x', sizeof err);
        int rc = kd_filter_from_json(buf, k, &f, err, cases[c].errlen);
        if (strcmp(err, cases[c].want))
            fprintf(stderr, "    case %zu: \"%s\"\n", c, err);
        CHECK_RC(rc, KD_EINVALID);
        CHECK_EQ_STR(err, cases[c].want);
    }
    free(buf);
}

static void test_copy(void)
{
    kd_filter *f = P("name matches \"^\\\\p{Lu}\" and tags contains \"x\"");
    CHECK(f);
    kd_filter *c = kd__filter_copy(f);
    kd_filter_free(f);
    CHECK(c);
    const char *d1 = "{\"name\":\"\xc3\x89\",\"tags\":[\"x\"]}", *d2 = "{\"name\":\"\xc3\xa9\",\"tags\":[\"x\"]}";
    CHECK_EQ_INT(kd_filter_match(c, d1, strlen(d1)), 1);
    CHECK_EQ_INT(kd_filter_match(c, d2, strlen(d2)), 0);
    kd_filter_free(c);
    CHECK(kd__filter_copy(NULL) == NULL);
}

int main(void)
{
    RUN(test_eq_ne);
    RUN(test_ranges);
    RUN(test_contains);
    RUN(test_exists);
    RUN(test_in);
    RUN(test_matches);
    RUN(test_logic);
    RUN(test_paths);
    RUN(test_errors);
    RUN(test_errors_always_have_columns);
    RUN(test_to_text);
    RUN(test_json_form);
    RUN(test_round_trip_cases);
    RUN(test_properties);
    RUN(test_match_input);
    RUN(test_depth_bounds);
    RUN(test_json_error_places);
    RUN(test_copy);
    return HARNESS_DONE();
}
