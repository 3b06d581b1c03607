/*
 * test_patch.c — JSON Patch (RFC 6902) and JSON Pointer (RFC 6901):
 * kd_json_diff() and kd_json_patch() (src/json/patch.c, src/json/dom.c).
 *
 *   - unit cases: every operation, pointer escapes, array index rules,
 *     error messages (operation index and problem), atomicity, the depth
 *     limit, exact diff output for small inputs;
 *   - the RFC 6902 conformance suite (json-patch-tests: tests.json and
 *     spec_tests.json) from $KORU_SHARED_DATA, else KD_SOURCE_DIR
 *     "/../shared/data": every case not marked "disabled" must give the
 *     expected document (compared in canonical form) or, when it carries
 *     "error", must fail. Without the data that part prints SKIP;
 *   - a property test: 20,000+ random pairs of related documents (nesting,
 *     arrays, unicode with astral characters and escapes, integers beyond
 *     2^64, floats, names needing ~0/~1, empty containers) with
 *     patch(a, diff(a, b)) == b byte for byte, diff(a, a) == [], and the
 *     diff itself canonical.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "json/dom.h"
#include "json/json.h"
#include "korudelta.h"
#include "util/buf.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static char errbuf[1024];

/* kd_json_patch on two C strings; returns the status, *out (malloc'd) or NULL. */
static int apply(const char *doc, const char *patch, char **out)
{
    size_t len = 0;
    errbuf[0] = '\0';
    int rc = kd_json_patch(doc, strlen(doc), patch, strlen(patch), out, &len, errbuf, sizeof errbuf);
    if (rc == KD_OK && strlen(*out) != len)
        return -1000;
    return rc;
}

static int diff(const char *a, const char *b, char **out)
{
    size_t len = 0;
    errbuf[0] = '\0';
    return kd_json_diff(a, strlen(a), b, strlen(b), out, &len, errbuf, sizeof errbuf);
}

/* The patch applies and gives exactly `want`. */
#define CHECK_PATCH(doc, patch, want)                                                   \
    do {                                                                                \
        char *o_ = NULL;                                                                \
        int r_ = apply(doc, patch, &o_);                                                \
        if (r_ != KD_OK)                                                                \
            fprintf(stderr, "  patch failed: %s\n", errbuf);                            \
        CHECK_RC(r_, KD_OK);                                                            \
        int same_ = strcmp(o_, want) == 0;                                              \
        if (!same_)                                                                     \
            fprintf(stderr, "  got %s\n  want %s\n", o_, want);                         \
        kd_free(o_);                                                                    \
        CHECK(same_);                                                                   \
    } while (0)

/* The patch fails with KD_EINVALID, no output, and a message containing `msg`. */
#define CHECK_PATCH_FAILS(doc, patch, msg)                                              \
    do {                                                                                \
        char *o_ = (char *)1;                                                           \
        CHECK_RC(apply(doc, patch, &o_), KD_EINVALID);                                  \
        CHECK(o_ == NULL);                                                              \
        if (!strstr(errbuf, msg))                                                       \
            fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", errbuf, msg);            \
        CHECK(strstr(errbuf, msg) != NULL);                                             \
    } while (0)

#define CHECK_DIFF(a, b, want)                                                          \
    do {                                                                                \
        char *o_ = NULL;                                                                \
        CHECK_RC(diff(a, b, &o_), KD_OK);                                               \
        int same_ = strcmp(o_, want) == 0;                                              \
        if (!same_)                                                                     \
            fprintf(stderr, "  diff got %s\n  want %s\n", o_, want);                    \
        char *r_ = NULL;                                                                \
        int ok_ = apply(a, o_, &r_) == KD_OK;                                           \
        char *cb_ = NULL;                                                               \
        kd_json_canonical(b, strlen(b), &cb_, NULL, NULL, 0);                           \
        ok_ = ok_ && cb_ && strcmp(r_, cb_) == 0;                                       \
        kd_free(o_);                                                                    \
        kd_free(r_);                                                                    \
        kd_free(cb_);                                                                   \
        CHECK(same_);                                                                   \
        CHECK(ok_);                                                                     \
    } while (0)

/* ------------------------------------------------------------------------
 * Unit cases: operations
 * ---------------------------------------------------------------------- */

static void test_add(void)
{
    CHECK_PATCH("{}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":1}]", "{\"a\":1}");
    CHECK_PATCH("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":2}]", "{\"a\":2}"); /* replaces */
    CHECK_PATCH("{\"b\":1}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":[]}]", "{\"a\":[],\"b\":1}");
    CHECK_PATCH("[1,2]", "[{\"op\":\"add\",\"path\":\"/0\",\"value\":0}]", "[0,1,2]");
    CHECK_PATCH("[1,2]", "[{\"op\":\"add\",\"path\":\"/2\",\"value\":3}]", "[1,2,3]");
    CHECK_PATCH("[1,2]", "[{\"op\":\"add\",\"path\":\"/-\",\"value\":3}]", "[1,2,3]");
    CHECK_PATCH("[]", "[{\"op\":\"add\",\"path\":\"/-\",\"value\":{\"x\":null}}]", "[{\"x\":null}]");
    CHECK_PATCH("1", "[{\"op\":\"add\",\"path\":\"\",\"value\":{\"b\":1,\"a\":2}}]", "{\"a\":2,\"b\":1}");
    CHECK_PATCH("{}", "[{\"op\":\"add\",\"path\":\"/\",\"value\":1}]", "{\"\":1}"); /* "/" is the name "" */
    CHECK_PATCH("{\"\":{}}", "[{\"op\":\"add\",\"path\":\"//\",\"value\":1}]", "{\"\":{\"\":1}}");
    /* Members stay sorted, values canonical. */
    CHECK_PATCH("{\"a\":1,\"c\":3}", "[{\"op\":\"add\",\"path\":\"/b\",\"value\":1.50}]", "{\"a\":1,\"b\":1.5,\"c\":3}");
}

static void test_remove_replace(void)
{
    CHECK_PATCH("{\"a\":1,\"b\":2}", "[{\"op\":\"remove\",\"path\":\"/a\"}]", "{\"b\":2}");
    CHECK_PATCH("[1,2,3]", "[{\"op\":\"remove\",\"path\":\"/1\"}]", "[1,3]");
    CHECK_PATCH("{\"a\":[1,{\"b\":2}]}", "[{\"op\":\"remove\",\"path\":\"/a/1/b\"}]", "{\"a\":[1,{}]}");
    CHECK_PATCH("{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"/a\",\"value\":\"x\"}]", "{\"a\":\"x\"}");
    CHECK_PATCH("[1,2]", "[{\"op\":\"replace\",\"path\":\"/1\",\"value\":null}]", "[1,null]");
    CHECK_PATCH("[1,2]", "[{\"op\":\"replace\",\"path\":\"\",\"value\":true}]", "true");
    CHECK_PATCH_FAILS("{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"/b\"}]", "operation 0 (remove): path \"/b\" does not exist");
    CHECK_PATCH_FAILS("[1]", "[{\"op\":\"remove\",\"path\":\"/1\"}]", "index 1 is out of range");
    CHECK_PATCH_FAILS("[1]", "[{\"op\":\"remove\",\"path\":\"/-\"}]", "\"-\" names no element");
    CHECK_PATCH_FAILS("{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"\"}]", "cannot remove the whole document");
    CHECK_PATCH_FAILS("{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"/b\",\"value\":1}]",
                      "operation 0 (replace): path \"/b\" does not exist");
}

static void test_move_copy(void)
{
    CHECK_PATCH("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/b\"}]", "{\"b\":1}");
    CHECK_PATCH("[1,2,3]", "[{\"op\":\"move\",\"from\":\"/0\",\"path\":\"/-\"}]", "[2,3,1]");
    CHECK_PATCH("[1,2,3]", "[{\"op\":\"move\",\"from\":\"/2\",\"path\":\"/0\"}]", "[3,1,2]");
    CHECK_PATCH("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a/b\",\"path\":\"\"}]", "1");
    CHECK_PATCH("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a\"}]", "{\"a\":1}");
    CHECK_PATCH("{\"a\":[1]}", "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/b\"}]", "{\"a\":[1],\"b\":[1]}");
    CHECK_PATCH("{\"a\":[1]}", "[{\"op\":\"copy\",\"from\":\"\",\"path\":\"/b\"}]", "{\"a\":[1],\"b\":{\"a\":[1]}}");
    CHECK_PATCH("{\"a\":[1]}", "[{\"op\":\"copy\",\"from\":\"/a/0\",\"path\":\"/a/0\"}]", "{\"a\":[1,1]}");
    CHECK_PATCH_FAILS("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/c\"}]", "into itself");
    CHECK_PATCH_FAILS("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"\",\"path\":\"/b\"}]", "into itself");
    CHECK_PATCH_FAILS("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/x\",\"path\":\"/b\"}]", "from \"/x\" does not exist");
    CHECK_PATCH_FAILS("{\"a\":1}", "[{\"op\":\"copy\",\"path\":\"/b\"}]", "operation 0 (copy): missing \"from\"");
    /* "/a/bc" is not inside "/a/b": token-wise prefix only. */
    CHECK_PATCH("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a/b\",\"path\":\"/a/bc\"}]", "{\"a\":{\"bc\":1}}");
}

static void test_test_op(void)
{
    CHECK_PATCH("{\"a\":[1,\"x\",{\"b\":null}]}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":[1,\"x\",{\"b\":null}]}]",
                "{\"a\":[1,\"x\",{\"b\":null}]}");
    /* Member order and escapes do not matter: values are compared. */
    CHECK_PATCH("{\"a\":{\"x\":1,\"y\":\"\\u00e9\"}}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":{\"y\":\"é\",\"x\":1}}]",
                "{\"a\":{\"x\":1,\"y\":\"é\"}}");
    /* Numbers: equal canonical text. 1e2 and 100.0 are the same double; 1 and 1.0 differ. */
    CHECK_PATCH("[100.0]", "[{\"op\":\"test\",\"path\":\"/0\",\"value\":1e2}]", "[100.0]");
    CHECK_PATCH("[123456789012345678901234567890]",
                "[{\"op\":\"test\",\"path\":\"/0\",\"value\":123456789012345678901234567890}]",
                "[123456789012345678901234567890]");
    CHECK_PATCH("[-0]", "[{\"op\":\"test\",\"path\":\"/0\",\"value\":0}]", "[0]");
    CHECK_PATCH_FAILS("[1]", "[{\"op\":\"test\",\"path\":\"/0\",\"value\":1.0}]", "operation 0 (test): test failed");
    CHECK_PATCH_FAILS("[0.0]", "[{\"op\":\"test\",\"path\":\"/0\",\"value\":-0.0}]", "test failed");
    CHECK_PATCH_FAILS("[\"1\"]", "[{\"op\":\"test\",\"path\":\"/0\",\"value\":1}]", "test failed");
    CHECK_PATCH_FAILS("{\"a\":{}}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":[]}]", "test failed");
    CHECK_PATCH_FAILS("[null]", "[{\"op\":\"test\",\"path\":\"/0\"}]", "missing \"value\"");
    CHECK_PATCH("[null]", "[{\"op\":\"test\",\"path\":\"/0\",\"value\":null}]", "[null]");
}

static void test_pointers(void)
{
    const char *doc = "{\"a/b\":1,\"m~n\":2,\"~1\":3,\"\":4,\" \":5,\"\\u0000\":6}";
    CHECK_PATCH(doc, "[{\"op\":\"test\",\"path\":\"/a~1b\",\"value\":1},{\"op\":\"test\",\"path\":\"/m~0n\",\"value\":2},"
                     "{\"op\":\"test\",\"path\":\"/~01\",\"value\":3},{\"op\":\"test\",\"path\":\"/\",\"value\":4},"
                     "{\"op\":\"test\",\"path\":\"/ \",\"value\":5},{\"op\":\"test\",\"path\":\"/\\u0000\",\"value\":6}]",
                "{\"\":4,\"\\u0000\":6,\" \":5,\"a/b\":1,\"m~n\":2,\"~1\":3}");
    CHECK_PATCH_FAILS("{}", "[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]", "must be empty or start with '/'");
    CHECK_PATCH_FAILS("{}", "[{\"op\":\"add\",\"path\":\"/a~2\",\"value\":1}]", "'~' must be followed by '0' or '1'");
    CHECK_PATCH_FAILS("{}", "[{\"op\":\"add\",\"path\":\"/a~\",\"value\":1}]", "'~' must be followed");
    CHECK_PATCH_FAILS("[1,2]", "[{\"op\":\"test\",\"path\":\"/01\",\"value\":2}]", "leading zeros");
    CHECK_PATCH_FAILS("[1,2]", "[{\"op\":\"test\",\"path\":\"/00\",\"value\":1}]", "leading zeros");
    CHECK_PATCH_FAILS("[1,2]", "[{\"op\":\"test\",\"path\":\"/1e0\",\"value\":2}]", "is not an array index");
    CHECK_PATCH_FAILS("[1,2]", "[{\"op\":\"test\",\"path\":\"/+1\",\"value\":2}]", "is not an array index");
    CHECK_PATCH_FAILS("[1,2]", "[{\"op\":\"test\",\"path\":\"/-1\",\"value\":2}]", "is not an array index");
    CHECK_PATCH_FAILS("[1,2]", "[{\"op\":\"test\",\"path\":\"/\",\"value\":2}]", "is not an array index (empty)");
    CHECK_PATCH_FAILS("[1,2]", "[{\"op\":\"add\",\"path\":\"/3\",\"value\":2}]", "index 3 is out of range");
    CHECK_PATCH_FAILS("[1,2]", "[{\"op\":\"add\",\"path\":\"/99999999999999999999999999\",\"value\":2}]", "out of range");
    CHECK_PATCH_FAILS("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a/b\",\"value\":2}]",
                      "path \"/a/b\": \"/a\" is a number, not an object or array");
    CHECK_PATCH_FAILS("{\"q\":{}}", "[{\"op\":\"add\",\"path\":\"/a/b\",\"value\":1}]", "path \"/a/b\": \"/a\" does not exist");
    CHECK_PATCH("[[0,[1]]]", "[{\"op\":\"replace\",\"path\":\"/0/1/0\",\"value\":2}]", "[[0,[2]]]");
    CHECK_PATCH_FAILS("[[0,[1]]]", "[{\"op\":\"replace\",\"path\":\"/0/2/0\",\"value\":2}]",
                      "index 2 is out of range (the array \"/0\" has 2 elements)");
}

static void test_malformed(void)
{
    CHECK_PATCH_FAILS("{}", "{\"op\":\"add\"}", "patch: expected an array of operations, found an object");
    CHECK_PATCH_FAILS("{}", "[1]", "operation 0 (?): an operation must be an object, not a number");
    CHECK_PATCH_FAILS("{}", "[{\"path\":\"/a\"}]", "operation 0 (?): missing \"op\"");
    CHECK_PATCH_FAILS("{}", "[{\"op\":1,\"path\":\"/a\"}]", "\"op\" must be a string");
    CHECK_PATCH_FAILS("{}", "[{\"op\":\"spam\",\"path\":\"/a\"}]", "unknown operation \"spam\"");
    CHECK_PATCH_FAILS("{}", "[{\"op\":\"add\",\"value\":1}]", "operation 0 (add): missing \"path\"");
    CHECK_PATCH_FAILS("{}", "[{\"op\":\"add\",\"path\":null,\"value\":1}]", "\"path\" must be a string");
    CHECK_PATCH_FAILS("{}", "[{\"op\":\"add\",\"path\":\"/a\"}]", "missing \"value\"");
    CHECK_PATCH_FAILS("{}", "[{\"op\":\"move\",\"from\":5,\"path\":\"/a\"}]", "\"from\" must be a string");
    CHECK_PATCH_FAILS("{} x", "[]", "document: invalid JSON at byte 3");
    CHECK_PATCH_FAILS("{}", "[", "patch: invalid JSON at byte 1");
    /* The index counts from 0 and names the failing operation. */
    CHECK_PATCH_FAILS("{}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":1},{\"op\":\"test\",\"path\":\"/a\",\"value\":2}]",
                      "operation 1 (test)");
    /* Extra members are ignored. */
    CHECK_PATCH("{}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":1,\"spurious\":[1]}]", "{\"a\":1}");
    CHECK_PATCH("{\"a\":1}", "[]", "{\"a\":1}");
    /* NULL arguments. */
    char *o = (char *)1;
    CHECK_RC(kd_json_patch("1", 1, "[]", 2, NULL, NULL, NULL, 0), KD_EINVALID);
    CHECK_RC(kd_json_patch(NULL, 3, "[]", 2, &o, NULL, NULL, 0), KD_EINVALID);
    CHECK(o == NULL);
    CHECK_RC(kd_json_diff("1", 1, NULL, 1, &o, NULL, NULL, 0), KD_EINVALID);
    CHECK_RC(kd_json_diff("1", 1, "[", 1, &o, NULL, errbuf, sizeof errbuf), KD_EINVALID);
    CHECK(strstr(errbuf, "second document: invalid JSON") != NULL);
}

/* On an error nothing is returned, whatever earlier operations did; the
 * caller's buffers are untouched (the document is copied). */
static void test_atomic(void)
{
    const char *doc = "{\"a\":1}";
    CHECK_PATCH_FAILS(doc, "[{\"op\":\"remove\",\"path\":\"/a\"},{\"op\":\"add\",\"path\":\"/b\",\"value\":2},"
                           "{\"op\":\"test\",\"path\":\"/b\",\"value\":3}]",
                      "operation 2 (test): test failed");
    CHECK(strcmp(doc, "{\"a\":1}") == 0);
}

static void test_depth_limit(void)
{
    /* 511 nested arrays: adding [] inside the innermost gives 512 (ok);
     * adding [[]] would give 513. */
    kd__buf doc = KD__BUF_INIT, path = KD__BUF_INIT, patch = KD__BUF_INIT;
    for (int i = 0; i < 511; i++)
        kd__buf_putc(&doc, '[');
    for (int i = 0; i < 511; i++)
        kd__buf_putc(&doc, ']');
    for (int i = 0; i < 510; i++)
        kd__buf_puts(&path, "/0");
    kd__buf_printf(&patch, "[{\"op\":\"add\",\"path\":\"%s/0\",\"value\":[]}]", path.data);
    char *o = NULL;
    CHECK_RC(apply(doc.data, patch.data, &o), KD_OK);
    kd_free(o);
    kd__buf_reset(&patch);
    kd__buf_printf(&patch, "[{\"op\":\"add\",\"path\":\"%s/0\",\"value\":[[]]}]", path.data);
    CHECK_RC(apply(doc.data, patch.data, &o), KD_EINVALID);
    CHECK(strstr(errbuf, "deeper than 512") != NULL);
    /* Copying the document into itself doubles it each time: refused
     * once it would outgrow twice the inputs plus 16 MiB. */
    kd__buf_reset(&patch);
    kd__buf_puts(&patch, "[");
    for (int i = 0; i < 600; i++)
        kd__buf_printf(&patch, "%s{\"op\":\"copy\",\"from\":\"\",\"path\":\"/0\"}", i ? "," : "");
    kd__buf_puts(&patch, "]");
    CHECK_RC(apply("[]", patch.data, &o), KD_EINVALID);
    CHECK(strstr(errbuf, "the result would be larger than") != NULL);
    kd__buf_free(&doc);
    kd__buf_free(&path);
    kd__buf_free(&patch);
}

/* ------------------------------------------------------------------------
 * Unit cases: diff
 * ---------------------------------------------------------------------- */

static void test_diff_basic(void)
{
    CHECK_DIFF("{\"a\":1}", "{ \"a\" : 1 }", "[]");
    CHECK_DIFF("1", "1.0", "[{\"op\":\"replace\",\"path\":\"\",\"value\":1.0}]");
    CHECK_DIFF("1e2", "100.0", "[]");
    CHECK_DIFF("null", "false", "[{\"op\":\"replace\",\"path\":\"\",\"value\":false}]");
    CHECK_DIFF("{\"a\":1,\"b\":2}", "{\"b\":3,\"c\":4}",
               "[{\"op\":\"remove\",\"path\":\"/a\"},{\"op\":\"replace\",\"path\":\"/b\",\"value\":3},"
               "{\"op\":\"add\",\"path\":\"/c\",\"value\":4}]");
    CHECK_DIFF("{\"a\":{\"b\":[1]}}", "{\"a\":{\"b\":{}}}", "[{\"op\":\"replace\",\"path\":\"/a/b\",\"value\":{}}]");
    CHECK_DIFF("{\"a/b\":1,\"m~n\":1}", "{\"a/b\":2,\"m~n\":2}",
               "[{\"op\":\"replace\",\"path\":\"/a~1b\",\"value\":2},{\"op\":\"replace\",\"path\":\"/m~0n\",\"value\":2}]");
    CHECK_DIFF("{}", "{\"\":[]}", "[{\"op\":\"add\",\"path\":\"/\",\"value\":[]}]");
    CHECK_DIFF("[]", "{}", "[{\"op\":\"replace\",\"path\":\"\",\"value\":{}}]");
}

static void test_diff_arrays(void)
{
    CHECK_DIFF("[1,2,3]", "[1,2,3,4]", "[{\"op\":\"add\",\"path\":\"/3\",\"value\":4}]");
    CHECK_DIFF("[1,2,3]", "[0,1,2,3]", "[{\"op\":\"add\",\"path\":\"/0\",\"value\":0}]");
    CHECK_DIFF("[1,2,3]", "[1,3]", "[{\"op\":\"remove\",\"path\":\"/1\"}]");
    CHECK_DIFF("[1,2,3]", "[1,9,3]", "[{\"op\":\"replace\",\"path\":\"/1\",\"value\":9}]");
    CHECK_DIFF("[1,2,3,4,5]", "[2,3,9,5,6]",
               "[{\"op\":\"remove\",\"path\":\"/0\"},{\"op\":\"replace\",\"path\":\"/2\",\"value\":9},"
               "{\"op\":\"add\",\"path\":\"/4\",\"value\":6}]");
    CHECK_DIFF("[{\"a\":1,\"b\":2}]", "[{\"a\":1,\"b\":3}]", "[{\"op\":\"replace\",\"path\":\"/0/b\",\"value\":3}]");
    CHECK_DIFF("[1,2]", "[]", "[{\"op\":\"remove\",\"path\":\"/0\"},{\"op\":\"remove\",\"path\":\"/0\"}]");
    CHECK_DIFF("[]", "[[],{}]", "[{\"op\":\"add\",\"path\":\"/0\",\"value\":[]},{\"op\":\"add\",\"path\":\"/1\",\"value\":{}}]");
    /* Reversal: one element kept (LCS), the rest removed and added. */
    CHECK_DIFF("[\"a\",\"b\",\"c\",\"d\"]", "[\"d\",\"c\",\"b\",\"a\"]",
               "[{\"op\":\"remove\",\"path\":\"/0\"},{\"op\":\"remove\",\"path\":\"/0\"},"
               "{\"op\":\"remove\",\"path\":\"/0\"},{\"op\":\"add\",\"path\":\"/1\",\"value\":\"c\"},"
               "{\"op\":\"add\",\"path\":\"/2\",\"value\":\"b\"},{\"op\":\"add\",\"path\":\"/3\",\"value\":\"a\"}]");
}

/* Arrays too large for the LCS table are compared position by position;
 * the patch is longer but still exact. */
static void test_diff_large_arrays(void)
{
    kd__buf a = KD__BUF_INIT, b = KD__BUF_INIT;
    kd__buf_putc(&a, '[');
    kd__buf_putc(&b, '[');
    for (int i = 0; i < 3000; i++) {
        kd__buf_printf(&a, "%s%d", i ? "," : "", i);
        kd__buf_printf(&b, "%s%d", i ? "," : "", (i % 7 == 0) ? -i : i + (i % 3 == 0));
    }
    kd__buf_puts(&b, ",1,2,3]");
    kd__buf_putc(&a, ']');
    char *p = NULL, *r = NULL, *cb = NULL;
    CHECK_RC(diff(a.data, b.data, &p), KD_OK);
    CHECK_RC(apply(a.data, p, &r), KD_OK);
    CHECK_RC(kd_json_canonical(b.data, b.len, &cb, NULL, NULL, 0), KD_OK);
    CHECK(strcmp(r, cb) == 0);
    kd_free(p);
    kd_free(r);
    kd_free(cb);
    kd__buf_free(&a);
    kd__buf_free(&b);
}

/* ------------------------------------------------------------------------
 * RFC 6902 conformance suite
 * ---------------------------------------------------------------------- */

static char data_dir[4096];

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    kd__buf b = KD__BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        kd__buf_append(&b, chunk, n);
    fclose(f);
    return kd__buf_steal(&b, len);
}

static const kd__jnode *member(const kd__jnode *obj, const char *name)
{
    size_t i = kd__jdom_find(obj, name, strlen(name), NULL);
    return i == (size_t)-1 ? NULL : obj->u.members[i].value;
}

static int suite_passed, suite_disabled, suite_failed, suite_errors_expected;

static void run_suite_file(const char *name)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/json-patch-tests/%s", data_dir, name);
    size_t len = 0;
    char *text = read_file(path, &len);
    CHECK(text != NULL);
    kd__buf canon = KD__BUF_INIT;
    char err[256];
    CHECK_RC(kd__json_canonicalize(text, len, &canon, err, sizeof err), KD_OK);
    free(text);
    kd__jnode *cases = NULL;
    CHECK_RC(kd__jdom_parse(canon.data, canon.len, &cases), KD_OK);
    kd__buf_free(&canon);
    CHECK(cases->type == KD__J_ARRAY);
    int bad = 0;
    for (size_t i = 0; i < cases->len; i++) {
        const kd__jnode *c = cases->u.items[i];
        const kd__jnode *doc = member(c, "doc"), *patch = member(c, "patch"), *expected = member(c, "expected"),
                        *error = member(c, "error"), *disabled = member(c, "disabled"), *comment = member(c, "comment");
        if (!doc || !patch)
            continue; /* a comment-only record */
        if (disabled && disabled->type == KD__J_TRUE) {
            suite_disabled++;
            continue;
        }
        kd__buf d = KD__BUF_INIT, p = KD__BUF_INIT, e = KD__BUF_INIT;
        kd__jdom_write(&d, doc);
        kd__jdom_write(&p, patch);
        char *out = NULL;
        size_t outlen = 0;
        char msg[1024];
        int rc = kd_json_patch(d.data, d.len, p.data, p.len, &out, &outlen, msg, sizeof msg);
        int ok;
        if (error) {
            suite_errors_expected++;
            ok = rc == KD_EINVALID && out == NULL && strncmp(msg, "operation ", 10) == 0;
        } else if (expected) {
            kd__jdom_write(&e, expected);
            ok = rc == KD_OK && outlen == e.len && memcmp(out, e.data, e.len) == 0;
        } else {
            ok = rc == KD_OK;
        }
        if (ok) {
            suite_passed++;
        } else {
            bad++;
            suite_failed++;
            fprintf(stderr, "  %s case %zu (%.*s): rc %d, %s\n    doc %s\n    patch %s\n    got %s\n    want %s\n", name,
                    i, comment ? (int)comment->len : 0, comment ? comment->u.text : "", rc, rc ? msg : "ok", d.data,
                    p.data, out ? out : "(none)", error ? error->u.text : (e.data ? e.data : "success"));
        }
        kd_free(out);
        kd__buf_free(&d);
        kd__buf_free(&p);
        kd__buf_free(&e);
    }
    kd__jdom_free(cases);
    CHECK_EQ_INT(bad, 0);
}

static void test_suite_tests(void)
{
    run_suite_file("tests.json");
}

static void test_suite_spec(void)
{
    run_suite_file("spec_tests.json");
}

/* ------------------------------------------------------------------------
 * Property: patch(a, diff(a, b)) == b
 * ---------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)((rng_state >> 11) % n);
}

/* Pieces of strings: ASCII, JSON escapes, pointer specials, 2-, 3- and
 * 4-byte UTF-8 raw and as \u escapes (a surrogate pair for U+1F600). */
static const char *const str_parts[] = {
    "a", "b", "key", " ", "~", "/", "~1", "~0", "\\\"", "\\\\", "\\n", "\\t", "\\u0000", "\\u001f", "\\/",
    "é", "\\u00e9", "€", "\\u20ac", "😀", "\\ud83d\\ude00", "𝄞", "\xef\xbf\xbf", "\\uffff", "0", "-", "",
};
static const char *const names[] = {
    "a", "b", "c", "", "~", "/", "a/b", "m~n", "~1", "~0", "0", "-", "é", "😀", "\\u0000", "ab", "aa", "A",
};
static const char *const numbers[] = {
    "0", "1", "-1", "1.0", "-0.0", "0.0", "1.5", "1e2", "100.0", "3.141592653589793", "1e-7", "2.5e+30",
    "18446744073709551616", "-18446744073709551617", "123456789012345678901234567890123456789",
    "9007199254740993", "1E400" /* not used: see gen_scalar */, "42", "-7", "0.1",
};

static void gen_string(kd__buf *b)
{
    kd__buf_putc(b, '"');
    int n = (int)rnd(4);
    for (int i = 0; i < n; i++)
        kd__buf_puts(b, str_parts[rnd(sizeof str_parts / sizeof *str_parts)]);
    kd__buf_putc(b, '"');
}

static void gen_scalar(kd__buf *b)
{
    switch (rnd(6)) {
    case 0:
        kd__buf_puts(b, (const char *[]){"null", "true", "false"}[rnd(3)]);
        break;
    case 1:
    case 2: {
        const char *num;
        do
            num = numbers[rnd(sizeof numbers / sizeof *numbers)];
        while (strcmp(num, "1E400") == 0);
        kd__buf_puts(b, num);
        break;
    }
    default:
        gen_string(b);
    }
}

static void gen_value(kd__buf *b, int depth);

static void gen_container(kd__buf *b, int depth, int object)
{
    int n = (int)rnd(depth > 3 ? 3 : 6);
    kd__buf_putc(b, object ? '{' : '[');
    for (int i = 0; i < n; i++) {
        if (i)
            kd__buf_putc(b, ',');
        if (object)
            kd__buf_printf(b, "\"%s\":", names[rnd(sizeof names / sizeof *names)]);
        gen_value(b, depth + 1);
    }
    kd__buf_putc(b, object ? '}' : ']');
}

static void gen_value(kd__buf *b, int depth)
{
    uint32_t k = rnd(depth > 4 ? 2 : 5);
    if (k < 2 && depth > 0)
        gen_scalar(b);
    else if (k < 2 || k == 2)
        gen_container(b, depth, 1);
    else if (k == 3)
        gen_container(b, depth, 0);
    else
        gen_scalar(b);
}

/* Two related values: mostly the same structure, with members and
 * elements added, removed, reordered and changed here and there. */
static void gen_pair(kd__buf *a, kd__buf *b, int depth)
{
    uint32_t k = rnd(20);
    if (k < 3 || depth > 5) { /* unrelated */
        gen_value(a, depth);
        gen_value(b, depth);
        return;
    }
    if (k < 6) { /* the same scalar */
        kd__buf s = KD__BUF_INIT;
        gen_scalar(&s);
        kd__buf_append(a, s.data, s.len);
        kd__buf_append(b, s.data, s.len);
        kd__buf_free(&s);
        return;
    }
    int object = k < 13;
    int n = (int)rnd(depth > 2 ? 4 : 8), na = 0, nb = 0;
    kd__buf_putc(a, object ? '{' : '[');
    kd__buf_putc(b, object ? '{' : '[');
    for (int i = 0; i < n; i++) {
        uint32_t where = rnd(10); /* 0-5 both, 6-7 only a, 8-9 only b */
        kd__buf *one = where < 8 ? a : b;
        if (where < 6) {
            if (na++)
                kd__buf_putc(a, ',');
            if (nb++)
                kd__buf_putc(b, ',');
            if (object) {
                const char *name = names[rnd(sizeof names / sizeof *names)];
                kd__buf_printf(a, "\"%s\":", name);
                kd__buf_printf(b, "\"%s\":", name);
            }
            gen_pair(a, b, depth + 1);
            continue;
        }
        if ((one == a ? na++ : nb++))
            kd__buf_putc(one, ',');
        if (object)
            kd__buf_printf(one, "\"%s\":", names[rnd(sizeof names / sizeof *names)]);
        gen_value(one, depth + 1);
    }
    kd__buf_putc(a, object ? '}' : ']');
    kd__buf_putc(b, object ? '}' : ']');
}

static int check_pair(const char *a, size_t alen, const char *b, size_t blen, long iter)
{
    char *p = NULL, *r = NULL, *cb = NULL, *pp = NULL, *same = NULL;
    size_t plen = 0, rlen = 0, cblen = 0, pplen = 0;
    char msg[1024];
    int ok = 0;
    if (kd_json_canonical(b, blen, &cb, &cblen, msg, sizeof msg) != KD_OK) {
        fprintf(stderr, "  iteration %ld: generated b is not JSON (%s): %.*s\n", iter, msg, (int)blen, b);
        goto out;
    }
    if (kd_json_diff(a, alen, b, blen, &p, &plen, msg, sizeof msg) != KD_OK) {
        fprintf(stderr, "  iteration %ld: diff failed: %s\n", iter, msg);
        goto out;
    }
    /* The patch is canonical JSON. */
    if (kd_json_canonical(p, plen, &pp, &pplen, NULL, 0) != KD_OK || pplen != plen || memcmp(p, pp, plen) != 0) {
        fprintf(stderr, "  iteration %ld: diff output not canonical: %s\n", iter, p);
        goto out;
    }
    if (kd_json_patch(a, alen, p, plen, &r, &rlen, msg, sizeof msg) != KD_OK) {
        fprintf(stderr, "  iteration %ld: patch failed: %s\n  a %.*s\n  b %.*s\n  patch %s\n", iter, msg, (int)alen, a,
                (int)blen, b, p);
        goto out;
    }
    if (rlen != cblen || memcmp(r, cb, rlen) != 0) {
        fprintf(stderr, "  iteration %ld: patch(a, diff(a, b)) != b\n  a %.*s\n  b %s\n  patch %s\n  got %s\n", iter,
                (int)alen, a, cb, p, r);
        goto out;
    }
    if (kd_json_diff(a, alen, a, alen, &same, NULL, msg, sizeof msg) != KD_OK || strcmp(same, "[]") != 0) {
        fprintf(stderr, "  iteration %ld: diff(a, a) is %s\n", iter, same ? same : msg);
        goto out;
    }
    ok = 1;
out:
    kd_free(p);
    kd_free(r);
    kd_free(cb);
    kd_free(pp);
    kd_free(same);
    return ok;
}

static void test_property(void)
{
    long pairs = 0, nonempty = 0;
    for (long iter = 0; iter < 25000; iter++) {
        kd__buf a = KD__BUF_INIT, b = KD__BUF_INIT;
        if (iter % 5 == 4) {
            gen_value(&a, 0); /* unrelated documents */
            gen_value(&b, 0);
        } else {
            gen_pair(&a, &b, 0);
        }
        int ok = check_pair(a.data, a.len, b.data, b.len, iter) && check_pair(b.data, b.len, a.data, a.len, iter);
        nonempty += a.len != b.len || memcmp(a.data, b.data, a.len) != 0;
        kd__buf_free(&a);
        kd__buf_free(&b);
        CHECK(ok);
        pairs += 2;
    }
    fprintf(stderr, "  property: %ld ordered pairs checked (%ld with differing text)\n", pairs, nonempty);
    CHECK(nonempty > 15000);
}

int main(void)
{
    RUN(test_add);
    RUN(test_remove_replace);
    RUN(test_move_copy);
    RUN(test_test_op);
    RUN(test_pointers);
    RUN(test_malformed);
    RUN(test_atomic);
    RUN(test_depth_limit);
    RUN(test_diff_basic);
    RUN(test_diff_arrays);
    RUN(test_diff_large_arrays);
    RUN(test_property);

    const char *base = getenv("KORU_SHARED_DATA");
    if (base && *base)
        snprintf(data_dir, sizeof data_dir, "%s", base);
    else
        snprintf(data_dir, sizeof data_dir, "%s/../shared/data", KD_SOURCE_DIR);
    char probe[8192];
    struct stat st;
    snprintf(probe, sizeof probe, "%s/json-patch-tests/tests.json", data_dir);
    if (stat(probe, &st) != 0) {
        printf("SKIP: RFC 6902 conformance suite not found at %s/json-patch-tests\n", data_dir);
    } else {
        RUN(test_suite_tests);
        RUN(test_suite_spec);
        fprintf(stderr, "  json-patch-tests: %d passed (%d of them expected errors), %d failed, %d disabled skipped\n",
                suite_passed, suite_errors_expected, suite_failed, suite_disabled);
    }
    return HARNESS_DONE();
}
