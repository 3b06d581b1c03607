/*
 * test_query.c — queries (src/query/query*.c): the JSON form and its errors,
 * filter + sort + projection + paging, deterministic order over mixed
 * types, aggregations (exact big sums, true distinct, group by with missing
 * vs null), as-of queries against a brute-force replay of kd_get_at,
 * history queries, secondary-index candidates, and queries running while
 * a writer writes.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"
#include "query/qrun.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static kd_db *open_fresh(const char *tag, char *dir)
{
    snprintf(dir, 256, "/tmp/kd_test_query_%s_XXXXXX", tag);
    if (!mkdtemp(dir))
        abort();
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_db *db = NULL;
    char err[256];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "open: %s\n", err);
    kd_options_free(o);
    return db;
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
}

static int put(kd_db *db, const char *ns, const char *key, const char *json)
{
    int rc = kd_put(db, ns, key, json, strlen(json), NULL);
    if (rc)
        fprintf(stderr, "put %s/%s %s: %s\n", ns, key, json, kd_errmsg(db));
    return rc;
}

/* Parse and run; NULL (with a message) on any error. */
static kd_result *runq(kd_db *db, const char *ns, const char *json)
{
    kd_query *q = NULL;
    char err[256];
    int rc = kd_query_parse(json, strlen(json), &q, err, sizeof err);
    if (rc) {
        fprintf(stderr, "parse %s: %s\n", json, err);
        return NULL;
    }
    kd_result *r = NULL;
    rc = kd_query_run(db, ns, q, &r);
    if (rc)
        fprintf(stderr, "run %s: %s: %s\n", json, kd_errname(rc), kd_errmsg(db));
    kd_query_free(q);
    return r;
}

static kd_result *histq(kd_db *db, const char *ns, const char *key, const char *json, int *rcp)
{
    kd_query *q = NULL;
    char err[256];
    int rc = kd_query_parse(json, strlen(json), &q, err, sizeof err);
    if (rc) {
        fprintf(stderr, "parse %s: %s\n", json, err);
        *rcp = rc;
        return NULL;
    }
    kd_result *r = NULL;
    *rcp = kd_query_history(db, ns, key, q, &r);
    kd_query_free(q);
    return r;
}

/* "key=value;key=value" of the rows (value "-" for NULL). */
static char *rows_text(const kd_result *r)
{
    static char buf[65536];
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->n_rows && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s=%s", i ? ";" : "", r->rows[i].key,
                              r->rows[i].value ? r->rows[i].value : "-");
    return buf;
}

/* Keys of the rows joined by ','. */
static char *keys_text(const kd_result *r)
{
    static char buf[65536];
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->n_rows && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? "," : "", r->rows[i].key);
    return buf;
}

/* The aggregates of a query, as a string (copied); NULL on failure. */
static char *aggq(kd_db *db, const char *ns, const char *json)
{
    kd_result *r = runq(db, ns, json);
    if (!r)
        return NULL;
    char *s = r->aggregates ? strdup(r->aggregates) : NULL;
    if (r->n_rows || !s || strlen(s) != r->aggregates_len) {
        fprintf(stderr, "aggregates of %s: rows %zu, %s\n", json, r->n_rows, s ? s : "(none)");
        free(s);
        s = NULL;
    }
    kd_result_free(r);
    return s;
}

static int same_version(const kd_version *a, const kd_version *b)
{
    return !strcmp(a->version_id, b->version_id) && !strcmp(a->write_id, b->write_id) &&
           !strcmp(a->previous_write_id, b->previous_write_id) && a->timestamp == b->timestamp &&
           a->deleted == b->deleted;
}

/* The canonical form of JSON text (for expected numbers like 2.0). */
static const char *canon(const char *s)
{
    static char buf[8192];
    char *c = NULL;
    if (kd_json_canonical(s, strlen(s), &c, NULL, NULL, 0))
        return "(bad expected JSON)";
    snprintf(buf, sizeof buf, "%s", c);
    kd_free(c);
    return buf;
}

static uint32_t rnd_simple(int i)
{
    uint32_t x = (uint32_t)i * 2654435761u + 0x9e3779b9u;
    x ^= x >> 15;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    return x;
}

static int is_canonical(const char *s)
{
    char *c = NULL;
    int ok = kd_json_canonical(s, strlen(s), &c, NULL, NULL, 0) == KD_OK && !strcmp(c, s);
    kd_free(c);
    return ok;
}

/* ------------------------------------------------------------------------
 * Rows: filter, sort, projection, paging
 * ---------------------------------------------------------------------- */

static void fill_people(kd_db *db)
{
    put(db, "p", "e", "{\"name\":\"Eve\",\"age\":31}");
    put(db, "p", "a", "{\"name\":\"Ann\",\"age\":31,\"address\":{\"city\":\"Oslo\",\"zip\":\"0150\"},\"tags\":[\"x\",\"y\"]}");
    put(db, "p", "c", "{\"name\":\"Cid\",\"age\":40,\"address\":{\"city\":\"Oslo\"},\"tags\":[\"z\"]}");
    put(db, "p", "b", "{\"name\":\"Bob\",\"age\":25,\"address\":{\"city\":\"Bergen\"}}");
    put(db, "p", "f", "{\"name\":\"Fay\",\"age\":50}");
    put(db, "p", "d", "{\"name\":\"Dan\",\"age\":35}");
    kd_delete(db, "p", "f", NULL);
    put(db, "other", "z", "{\"age\":99}");
}

static void test_rows(void)
{
    char dir[256];
    kd_db *db = open_fresh("rows", dir);
    CHECK(db);
    fill_people(db);

    kd_result *r = runq(db, "p", "{\"filter\":\"age > 30\",\"sort\":[\"age:desc\",\"name\"],"
                                 "\"select\":[\"name\",\"address.city\",\"tags.0\"],\"offset\":1,\"limit\":2}");
    CHECK(r);
    CHECK_EQ_INT(r->total, 4);
    CHECK_EQ_INT(r->n_rows, 2);
    CHECK(r->aggregates == NULL);
    CHECK_EQ_STR(rows_text(r), "d={\"name\":\"Dan\"};a={\"address.city\":\"Oslo\",\"name\":\"Ann\",\"tags.0\":\"x\"}");
    /* Rows carry the version of the value they show. */
    for (size_t i = 0; i < r->n_rows; i++) {
        kd_version v;
        CHECK_RC(kd_get(db, "p", r->rows[i].key, NULL, NULL, &v), KD_OK);
        CHECK(same_version(&v, &r->rows[i].version));
        CHECK_EQ_INT(strlen(r->rows[i].value), r->rows[i].value_len);
    }
    /* kd_result_json: total, then the version records of kd_version_json. */
    char *js = NULL;
    size_t jl = 0;
    CHECK_RC(kd_result_json(db, "p", r, &js, &jl), KD_OK);
    CHECK_EQ_INT(strlen(js), jl);
    char *rec0 = NULL, *rec1 = NULL;
    CHECK_RC(kd_version_json("p", "d", r->rows[0].value, r->rows[0].value_len, &r->rows[0].version, &rec0, NULL),
             KD_OK);
    CHECK_RC(kd_version_json("p", "a", r->rows[1].value, r->rows[1].value_len, &r->rows[1].version, &rec1, NULL),
             KD_OK);
    char want[4096];
    snprintf(want, sizeof want, "{\"total\":4,\"rows\":[%s,%s]}", rec0, rec1);
    CHECK_EQ_STR(js, want);
    kd_free(js);
    kd_free(rec0);
    kd_free(rec1);
    kd_result_free(r);

    /* No filter, no sort: every live key in key order, whole values. */
    CHECK((r = runq(db, "p", "{}")));
    CHECK_EQ_INT(r->total, 5);
    CHECK_EQ_STR(keys_text(r), "a,b,c,d,e");
    char *v = NULL;
    CHECK_RC(kd_get(db, "p", "c", &v, NULL, NULL), KD_OK);
    CHECK_EQ_STR(r->rows[2].value, v);
    kd_free(v);
    kd_result_free(r);

    /* Paging past the end, limit 0, offset alone. */
    CHECK((r = runq(db, "p", "{\"offset\":10}")));
    CHECK_EQ_INT(r->total, 5);
    CHECK_EQ_INT(r->n_rows, 0);
    CHECK(r->rows == NULL);
    kd_result_free(r);
    CHECK((r = runq(db, "p", "{\"limit\":0,\"filter\":\"age >= 31\"}")));
    CHECK_EQ_INT(r->total, 4);
    CHECK_EQ_INT(r->n_rows, 0);
    kd_result_free(r);
    CHECK((r = runq(db, "p", "{\"offset\":3}")));
    CHECK_EQ_STR(keys_text(r), "d,e");
    kd_result_free(r);
    /* The top-k path (small limit over many matches) agrees with a full sort. */
    CHECK((r = runq(db, "p", "{\"sort\":[\"age\"],\"limit\":1}")));
    CHECK_EQ_STR(keys_text(r), "b");
    kd_result_free(r);

    /* A namespace that does not exist is empty. */
    CHECK((r = runq(db, "nothing", "{\"filter\":\"age > 1\"}")));
    CHECK_EQ_INT(r->total, 0);
    CHECK_EQ_INT(r->n_rows, 0);
    CHECK_RC(kd_result_json(db, "nothing", r, &js, NULL), KD_OK);
    CHECK_EQ_STR(js, "{\"total\":0,\"rows\":[]}");
    kd_free(js);
    kd_result_free(r);

    /* Misuse */
    kd_query *q = NULL;
    CHECK_RC(kd_query_parse("{}", 2, &q, NULL, 0), KD_OK);
    CHECK_RC(kd_query_run(db, "", q, &r), KD_EINVALID);
    CHECK_RC(kd_query_run(db, "p", NULL, &r), KD_EMISUSE);
    CHECK_RC(kd_query_run(NULL, "p", q, &r), KD_EMISUSE);
    CHECK_RC(kd_query_run(db, "_kd.views", q, &r), KD_ERESERVED);
    CHECK_RC(kd_query_history(db, "_kdx", "k", q, &r), KD_ERESERVED);
    kd_query_free(q);
    kd_result_free(NULL);
    kd_query_free(NULL);
    kd_close(db);
    rm_rf(dir);
}

static void test_projection(void)
{
    char dir[256];
    kd_db *db = open_fresh("proj", dir);
    CHECK(db);
    put(db, "n", "k1", "{\"a\":{\"b\":[10,{\"c\":\"deep\"},[true]]},\"a.b\":\"dotted\",\"arr\":[1,2,3],\"z\":null}");
    put(db, "n", "k2", "[\"x\",\"y\"]");
    put(db, "n", "k3", "42");
    kd_result *r = runq(db, "n", "{\"select\":[\"a.b.1.c\",\"a.b.2.0\",\"arr.2\",\"arr.9\",\"\\\"a.b\\\"\",\"z\","
                                 "\"0\",\"a.b.0\"]}");
    CHECK(r);
    CHECK_EQ_INT(r->n_rows, 3);
    CHECK_EQ_STR(r->rows[0].value,
                 "{\"\\\"a.b\\\"\":\"dotted\",\"a.b.0\":10,\"a.b.1.c\":\"deep\",\"a.b.2.0\":true,\"arr.2\":3,\"z\":null}");
    CHECK(is_canonical(r->rows[0].value));
    CHECK_EQ_STR(r->rows[1].value, "{\"0\":\"x\"}"); /* array index on a top-level array */
    CHECK_EQ_STR(r->rows[2].value, "{}");            /* nothing applies to a number */
    kd_result_free(r);
    kd_close(db);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Order
 * ---------------------------------------------------------------------- */

static void test_ties(void)
{
    char dir[256];
    kd_db *db = open_fresh("ties", dir);
    CHECK(db);
    /* Created in a scrambled order, so creation order is not key order. */
    char k[16], v[64];
    for (int i = 0; i < 200; i++) {
        int j = (i * 73) % 200;
        snprintf(k, sizeof k, "k%03d", j);
        snprintf(v, sizeof v, "{\"v\":%d,\"w\":%d}", j % 3, j);
        CHECK_EQ_INT(put(db, "t", k, v), KD_OK);
    }
    const char *qs[] = {"{\"sort\":[\"v\"]}", "{\"sort\":[\"v:desc\"]}", "{\"sort\":[\"v\"],\"limit\":7}",
                        "{\"sort\":[\"v:desc\"],\"offset\":5,\"limit\":3}"};
    for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++) {
        kd_result *r1 = runq(db, "t", qs[qi]), *r2 = runq(db, "t", qs[qi]);
        CHECK(r1 && r2);
        CHECK_EQ_INT(r1->n_rows, r2->n_rows);
        for (size_t i = 0; i < r1->n_rows; i++)
            CHECK_EQ_STR(r1->rows[i].key, r2->rows[i].key);
        /* Within equal sort values, keys ascend. */
        for (size_t i = 1; i < r1->n_rows; i++) {
            int a = r1->rows[i - 1].value[5] - '0', b = r1->rows[i].value[5] - '0';
            int desc = strstr(qs[qi], "desc") != NULL;
            CHECK(desc ? a >= b : a <= b);
            if (a == b)
                CHECK(strcmp(r1->rows[i - 1].key, r1->rows[i].key) < 0);
        }
        kd_result_free(r1);
        kd_result_free(r2);
    }
    kd_result *r = runq(db, "t", "{\"sort\":[\"v:desc\"],\"offset\":5,\"limit\":3}");
    CHECK(r);
    /* v = 2: k002, k005, k008, k011, k014, k017, k020, … */
    CHECK_EQ_STR(keys_text(r), "k017,k020,k023");
    kd_result_free(r);
    kd_close(db);
    rm_rf(dir);
}

static void test_mixed_types(void)
{
    char dir[256];
    kd_db *db = open_fresh("mixed", dir);
    CHECK(db);
    /* Keys chosen so that key order differs from value order. */
    put(db, "m", "k01", "{\"x\":{\"a\":1},\"g\":1}");
    put(db, "m", "k02", "{\"x\":[1,2],\"g\":2}");
    put(db, "m", "k03", "{\"x\":[1],\"g\":1}");
    put(db, "m", "k04", "{\"x\":\"b\",\"g\":2}");
    put(db, "m", "k05", "{\"x\":\"a\",\"g\":1}");
    put(db, "m", "k06", "{\"x\":10,\"g\":2}");
    put(db, "m", "k07", "{\"x\":9.5,\"g\":1}");
    put(db, "m", "k08", "{\"x\":-3,\"g\":2}");
    put(db, "m", "k09", "{\"x\":true,\"g\":1}");
    put(db, "m", "k10", "{\"x\":false,\"g\":2}");
    put(db, "m", "k11", "{\"x\":null,\"g\":1}");
    put(db, "m", "k12", "{\"g\":2}");
    put(db, "m", "k13", "{\"x\":123456789012345678901234567890,\"g\":1}");
    put(db, "m", "k14", "\"not an object\"");
    kd_result *r = runq(db, "m", "{\"sort\":[\"x\"]}");
    CHECK(r);
    /* missing (k12, k14 by key) < null < false < true < numbers < strings < arrays < objects */
    CHECK_EQ_STR(keys_text(r), "k12,k14,k11,k10,k09,k08,k07,k06,k13,k05,k04,k03,k02,k01");
    kd_result_free(r);
    CHECK((r = runq(db, "m", "{\"sort\":[\"x:desc\"]}")));
    CHECK_EQ_STR(keys_text(r), "k01,k02,k03,k04,k05,k13,k06,k07,k08,k09,k10,k11,k12,k14");
    kd_result_free(r);
    /* Two fields: g descending (missing last), then x ascending. */
    CHECK((r = runq(db, "m", "{\"sort\":[{\"field\":\"g\",\"order\":\"desc\"},\"x:asc\"]}")));
    CHECK_EQ_STR(keys_text(r), "k12,k10,k08,k06,k04,k02,k11,k09,k07,k13,k05,k03,k01,k14");
    kd_result_free(r);
    kd_close(db);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Aggregations
 * ---------------------------------------------------------------------- */

#define ALL_AGGS "[\"count\",\"sum:p\",\"avg:p\",\"min:p\",\"max:p\",\"distinct:p\",\"count_distinct:p\"]"

static void test_agg_empty(void)
{
    char dir[256];
    kd_db *db = open_fresh("aggempty", dir);
    CHECK(db);
    char *a = aggq(db, "none", "{\"aggregate\":" ALL_AGGS "}");
    CHECK(a);
    CHECK_EQ_STR(a, "{\"avg:p\":null,\"count\":0,\"count_distinct:p\":0,\"distinct:p\":[],\"max:p\":null,"
                    "\"min:p\":null,\"sum:p\":0}");
    free(a);
    put(db, "e", "k", "{\"p\":1}");
    CHECK((a = aggq(db, "e", "{\"filter\":\"p > 5\",\"aggregate\":" ALL_AGGS "}")));
    CHECK_EQ_STR(a, "{\"avg:p\":null,\"count\":0,\"count_distinct:p\":0,\"distinct:p\":[],\"max:p\":null,"
                    "\"min:p\":null,\"sum:p\":0}");
    free(a);
    CHECK((a = aggq(db, "none", "{\"group_by\":[\"c\"]}")));
    CHECK_EQ_STR(a, "{\"groups\":[]}");
    free(a);
    kd_result *r = runq(db, "e", "{\"aggregate\":[\"count\"]}");
    CHECK(r);
    char *js = NULL;
    CHECK_RC(kd_result_json(db, "e", r, &js, NULL), KD_OK);
    CHECK_EQ_STR(js, "{\"total\":1,\"aggregates\":{\"count\":1}}");
    kd_free(js);
    kd_result_free(r);
    kd_close(db);
    rm_rf(dir);
}

static void test_agg_mixed(void)
{
    char dir[256];
    kd_db *db = open_fresh("aggmixed", dir);
    CHECK(db);
    const char *vals[] = {"1", "2", "\"x\"", "null", "true", "3.5", "[1]", NULL, "2", "\"x\""};
    char k[16], v[64];
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "k%d", i);
        if (vals[i])
            snprintf(v, sizeof v, "{\"p\":%s}", vals[i]);
        else
            snprintf(v, sizeof v, "{\"q\":1}");
        CHECK_EQ_INT(put(db, "m", k, v), KD_OK);
    }
    char *a = aggq(db, "m", "{\"aggregate\":" ALL_AGGS "}");
    CHECK(a);
    /* numbers 1, 2, 3.5, 2: sum 8.5, avg 2.125; min/max over everything
     * present and not null: true < numbers < strings < arrays */
    CHECK_EQ_STR(a, canon("{\"avg:p\":2.125,\"count\":10,\"count_distinct:p\":7,"
                          "\"distinct:p\":[null,true,1,2,3.5,\"x\",[1]],\"max:p\":[1],\"min:p\":true,\"sum:p\":8.5}"));
    CHECK(is_canonical(a));
    free(a);
    /* Strings among numbers only: sum/avg ignore the strings; numbers
     * sort before strings. */
    put(db, "m2", "a", "{\"p\":5}");
    put(db, "m2", "b", "{\"p\":\"abc\"}");
    put(db, "m2", "c", "{\"p\":3}");
    put(db, "m2", "d", "{\"p\":\"b\"}");
    put(db, "m2", "e", "{\"p\":10.25}");
    CHECK((a = aggq(db, "m2", "{\"aggregate\":[\"min:p\",\"max:p\",\"sum:p\",\"avg:p\"]}")));
    CHECK_EQ_STR(a, canon("{\"avg:p\":6.083333333333333,\"max:p\":\"b\",\"min:p\":3,\"sum:p\":18.25}"));
    free(a);
    /* Integers only: exact, an integer; avg is a non-integer number. */
    CHECK((a = aggq(db, "m", "{\"filter\":\"p in [1, 2]\",\"aggregate\":[\"sum:p\",\"avg:p\"]}")));
    CHECK_EQ_STR(a, canon("{\"avg:p\":1.6666666666666667,\"sum:p\":5}"));
    free(a);
    CHECK((a = aggq(db, "m", "{\"filter\":\"p = 2\",\"aggregate\":[\"sum:p\",\"avg:p\"]}")));
    CHECK_EQ_STR(a, canon("{\"avg:p\":2.0,\"sum:p\":4}"));
    free(a);
    /* The object form of an aggregation names the same thing. */
    CHECK((a = aggq(db, "m", "{\"aggregate\":[{\"op\":\"count_distinct\",\"field\":\"p\"},{\"op\":\"count\"}]}")));
    CHECK_EQ_STR(a, "{\"count\":10,\"count_distinct:p\":7}");
    free(a);
    kd_close(db);
    rm_rf(dir);
}

static void test_agg_sums(void)
{
    char dir[256];
    kd_db *db = open_fresh("aggsum", dir);
    CHECK(db);
    struct {
        const char *vals[4];
        const char *sum;
    } cases[] = {
        {{"9223372036854775807", "9223372036854775807"}, "18446744073709551614"},
        {{"-9223372036854775808", "-9223372036854775808", "-1"}, "-18446744073709551617"},
        {{"123456789012345678901234567890", "987654321098765432109876543210"}, "1111111110111111111011111111100"},
        {{"-123456789012345678901234567890", "1"}, "-123456789012345678901234567889"},
        {{"5", "-123456789012345678901234567890"}, "-123456789012345678901234567885"},
        {{"123456789012345678901234567890", "-123456789012345678901234567890", "7"}, "7"},
        {{"9223372036854775807", "100000000000000000000", "-5"}, "109223372036854775802"},
        {{"99999999999999999999999999999999999999999", "1"}, "100000000000000000000000000000000000000000"},
        {{"1.5", "2.25", "3"}, "6.75"},
        {{"0.1", "0.2", "0.3"}, "0.6"},
        {{"100000000000000000000", "0.5"}, "1.0e+20"},
        {{"-0.0"}, "0.0"},
        {{"1e300", "1e300"}, "2.0e+300"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char ns[16], k[16], v[128];
        snprintf(ns, sizeof ns, "s%zu", c);
        for (int i = 0; i < 4 && cases[c].vals[i]; i++) {
            snprintf(k, sizeof k, "k%d", i);
            snprintf(v, sizeof v, "{\"n\":%s}", cases[c].vals[i]);
            CHECK_EQ_INT(put(db, ns, k, v), KD_OK);
        }
        char *a = aggq(db, ns, "{\"aggregate\":[\"sum:n\"]}");
        CHECK(a);
        /* Compare with the canonical form of the expected number. */
        char want[256], *canon = NULL;
        snprintf(want, sizeof want, "{\"sum:n\":%s}", cases[c].sum);
        CHECK_RC(kd_json_canonical(want, strlen(want), &canon, NULL, NULL, 0), KD_OK);
        if (strcmp(a, canon))
            fprintf(stderr, "case %zu: got %s, want %s\n", c, a, canon);
        CHECK_EQ_STR(a, canon);
        kd_free(canon);
        free(a);
    }
    /* avg of two int64 maxima: a double */
    char *a = aggq(db, "s0", "{\"aggregate\":[\"avg:n\"]}");
    CHECK(a);
    CHECK_EQ_STR(a, canon("{\"avg:n\":9.223372036854776e+18}"));
    free(a);
    kd_close(db);
    rm_rf(dir);
}

/* A mean is a double whenever the true mean is one, however far the sum
 * goes beyond the doubles on the way (floats near the top of the range,
 * integers of 309 digits); a mean that is no double stays null. */
static void test_avg_overflow(void)
{
    char dir[256];
    kd_db *db = open_fresh("avgbig", dir);
    CHECK(db);
    char e308[320], e308x3[320], e308x17[320], e399[420];
    snprintf(e308, sizeof e308, "1%0308d", 0);    /* 10^308, an integer */
    snprintf(e308x3, sizeof e308x3, "3%0308d", 0);  /* 3 * 10^308: no double */
    snprintf(e308x17, sizeof e308x17, "17%0307d", 0); /* 1.7 * 10^308 */
    snprintf(e399, sizeof e399, "1%0399d", 0);    /* 10^399 */
    struct {
        const char *vals[4];
        const char *avg, *sum; /* sum NULL: not checked */
    } cases[] = {
        {{"1e308", "1e308"}, "1.0e+308", "null"},
        {{"1.7e308", "1.7e308", "-1.7e308"}, "5.666666666666667e+307", "1.7e+308"},
        {{"-1.7e308", "-1.7e308", "1"}, "-1.1333333333333334e+308", "null"},
        {{e308, e308}, "1.0e+308", NULL},
        {{e308x17, e308x17, e308x17}, "1.7e+308", NULL},
        {{e308x3, e308x3, "-1.5e308"}, "1.5e+308", "null"},
        {{e399}, "null", e399},
        {{e399, "-1.0e308"}, "null", "null"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char ns[16], k[16], v[512];
        snprintf(ns, sizeof ns, "o%zu", c);
        for (int i = 0; i < 4 && cases[c].vals[i]; i++) {
            snprintf(k, sizeof k, "k%d", i);
            snprintf(v, sizeof v, "{\"g\":\"x\",\"p\":%s}", cases[c].vals[i]);
            CHECK_EQ_INT(put(db, ns, k, v), KD_OK);
        }
        /* one more group of ordinary numbers beside it */
        CHECK_EQ_INT(put(db, ns, "y1", "{\"g\":\"y\",\"p\":1}"), KD_OK);
        CHECK_EQ_INT(put(db, ns, "y2", "{\"g\":\"y\",\"p\":2}"), KD_OK);
        char want[1024];
        snprintf(want, sizeof want, "{\"avg:p\":%s}", cases[c].avg);
        char *a = aggq(db, ns, "{\"filter\":\"g = \\\"x\\\"\",\"aggregate\":[\"avg:p\"]}");
        CHECK(a);
        if (strcmp(a, canon(want)))
            fprintf(stderr, "case %zu: got %s\n", c, a);
        CHECK_EQ_STR(a, canon(want));
        free(a);
        if (cases[c].sum) {
            snprintf(want, sizeof want, "{\"sum:p\":%s}", cases[c].sum);
            CHECK((a = aggq(db, ns, "{\"filter\":\"g = \\\"x\\\"\",\"aggregate\":[\"sum:p\"]}")));
            if (strcmp(a, canon(want)))
                fprintf(stderr, "case %zu: got %s\n", c, a);
            CHECK_EQ_STR(a, canon(want));
            free(a);
        }
        snprintf(want, sizeof want, "{\"groups\":[{\"avg:p\":%s,\"group\":{\"g\":\"x\"}},"
                                    "{\"avg:p\":1.5,\"group\":{\"g\":\"y\"}}]}", cases[c].avg);
        CHECK((a = aggq(db, ns, "{\"group_by\":[\"g\"],\"aggregate\":[\"avg:p\"]}")));
        if (strcmp(a, canon(want)))
            fprintf(stderr, "case %zu: got %s\n", c, a);
        CHECK_EQ_STR(a, canon(want));
        free(a);
    }
    kd_close(db);
    rm_rf(dir);
}

/* A sum of one non-integer is that number: every conversion is exact
 * (short decimals skip strtod; long ones and big exponents do not). */
static void test_sum_one_double(void)
{
    char dir[256];
    kd_db *db = open_fresh("sumone", dir);
    CHECK(db);
    enum { N = 400 };
    static char keys[N][16], vals[N][96];
    static kd_write w[N];
    for (int i = 0; i < N; i++) {
        char digits[24];
        int nd = 1 + (int)(rnd_simple(i) % 18);
        for (int d = 0; d < nd; d++)
            digits[d] = (char)('0' + rnd_simple(i * 31 + d) % 10);
        digits[0] = (char)('1' + rnd_simple(i * 5) % 9); /* JSON: no leading zero */
        digits[nd] = '\0';
        int point = (int)(rnd_simple(i * 7) % (unsigned)(nd + 1));
        int ex = (int)(rnd_simple(i * 13) % 61) - 30;
        snprintf(keys[i], sizeof keys[i], "k%03d", i);
        snprintf(vals[i], sizeof vals[i], "{\"i\":%d,\"n\":%s%.*s%s.%s0e%d}", i, i % 3 ? "" : "-", point, digits,
                 point ? "" : "0", digits + point, i % 4 ? ex : 0);
        w[i] = (kd_write){"s", keys[i], vals[i], strlen(vals[i]), NULL};
    }
    int brc = kd_put_batch(db, w, N, NULL);
    if (brc)
        fprintf(stderr, "%s\n", kd_errmsg(db));
    CHECK_RC(brc, KD_OK);
    char *a = aggq(db, "s", "{\"group_by\":[\"i\"],\"aggregate\":[\"sum:n\"]}");
    CHECK(a);
    const char *p = a;
    for (int i = 0; i < N; i++) {
        char *v = NULL;
        CHECK_RC(kd_get(db, "s", keys[i], &v, NULL, NULL), KD_OK);
        const char *n = strstr(v, "\"n\":") + 4;
        char want[160];
        snprintf(want, sizeof want, "{\"group\":{\"i\":%d},\"sum:n\":%.*s}", i, (int)(strlen(n) - 1), n);
        const char *at = strstr(p, want);
        if (!at)
            fprintf(stderr, "missing %s\n", want);
        kd_free(v);
        CHECK(at);
        p = at + strlen(want);
    }
    free(a);
    kd_close(db);
    rm_rf(dir);
}

static void test_distinct(void)
{
    char dir[256];
    kd_db *db = open_fresh("distinct", dir);
    CHECK(db);
    /* Duplicates far apart in scan order (values cycle with period 7). */
    kd_write w[1000];
    char keys[1000][16], vals[1000][64];
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%04d", (i * 379) % 1000);
        int m = i % 7;
        if (m < 4)
            snprintf(vals[i], sizeof vals[i], "{\"v\":%d,\"o\":{\"a\":%d}}", m, m % 2);
        else if (m == 4)
            snprintf(vals[i], sizeof vals[i], "{\"v\":\"s\",\"o\":[%d]}", i % 2);
        else if (m == 5)
            snprintf(vals[i], sizeof vals[i], "{\"v\":1.0}");
        else
            snprintf(vals[i], sizeof vals[i], "{\"v\":null}");
        w[i] = (kd_write){"d", keys[i], vals[i], strlen(vals[i]), NULL};
    }
    CHECK_RC(kd_put_batch(db, w, 1000, NULL), KD_OK);
    char *a = aggq(db, "d", "{\"aggregate\":[\"distinct:v\",\"count_distinct:v\",\"distinct:o\",\"count\"]}");
    CHECK(a);
    /* 1 and 1.0 are distinct values (the order puts the integer first) */
    CHECK_EQ_STR(a, "{\"count\":1000,\"count_distinct:v\":7,\"distinct:o\":[[0],[1],{\"a\":0},{\"a\":1}],"
                    "\"distinct:v\":[null,0,1,1.0,2,3,\"s\"]}");
    free(a);
    kd_close(db);
    rm_rf(dir);
}

static void test_group_by(void)
{
    char dir[256];
    kd_db *db = open_fresh("group", dir);
    CHECK(db);
    put(db, "g", "k1", "{\"country\":\"SE\",\"city\":\"Lund\",\"price\":10}");
    put(db, "g", "k2", "{\"country\":\"NO\",\"city\":\"Oslo\",\"price\":5}");
    put(db, "g", "k3", "{\"country\":\"NO\",\"city\":\"Bergen\",\"price\":7.5}");
    put(db, "g", "k4", "{\"country\":\"NO\",\"city\":\"Oslo\",\"price\":1}");
    put(db, "g", "k5", "{\"country\":null,\"price\":2}");
    put(db, "g", "k6", "{\"price\":3}");
    put(db, "g", "k7", "{\"city\":\"Oslo\"}");
    put(db, "g", "k8", "[1,2]");
    char *a = aggq(db, "g", "{\"group_by\":[\"country\"],\"aggregate\":[\"count\",\"sum:price\",\"max:city\"]}");
    CHECK(a);
    CHECK_EQ_STR(a, canon("{\"groups\":["
                          "{\"count\":3,\"group\":{},\"max:city\":\"Oslo\",\"sum:price\":3},"
                          "{\"count\":1,\"group\":{\"country\":null},\"max:city\":null,\"sum:price\":2},"
                          "{\"count\":3,\"group\":{\"country\":\"NO\"},\"max:city\":\"Oslo\",\"sum:price\":13.5},"
                          "{\"count\":1,\"group\":{\"country\":\"SE\"},\"max:city\":\"Lund\",\"sum:price\":10}]}"));
    CHECK(is_canonical(a));
    free(a);
    /* Two fields, ordered field by field; the group object's members are
     * sorted by name whatever the group_by order. */
    CHECK((a = aggq(db, "g", "{\"filter\":\"price exists\",\"group_by\":[\"country\",\"city\"]}")));
    CHECK_EQ_STR(a, "{\"groups\":["
                    "{\"count\":1,\"group\":{}},"
                    "{\"count\":1,\"group\":{\"country\":null}},"
                    "{\"count\":1,\"group\":{\"city\":\"Bergen\",\"country\":\"NO\"}},"
                    "{\"count\":2,\"group\":{\"city\":\"Oslo\",\"country\":\"NO\"}},"
                    "{\"count\":1,\"group\":{\"city\":\"Lund\",\"country\":\"SE\"}}]}");
    free(a);
    CHECK((a = aggq(db, "g", "{\"filter\":\"price exists\",\"group_by\":[\"city\",\"country\"],"
                             "\"aggregate\":[\"avg:price\"]}")));
    CHECK_EQ_STR(a, canon("{\"groups\":["
                          "{\"avg:price\":3.0,\"group\":{}},"
                          "{\"avg:price\":2.0,\"group\":{\"country\":null}},"
                          "{\"avg:price\":7.5,\"group\":{\"city\":\"Bergen\",\"country\":\"NO\"}},"
                          "{\"avg:price\":10.0,\"group\":{\"city\":\"Lund\",\"country\":\"SE\"}},"
                          "{\"avg:price\":3.0,\"group\":{\"city\":\"Oslo\",\"country\":\"NO\"}}]}"));
    free(a);
    kd_result *r = runq(db, "g", "{\"group_by\":[\"country\"]}");
    CHECK(r);
    CHECK_EQ_INT(r->total, 8);
    CHECK_EQ_INT(r->n_rows, 0);
    kd_result_free(r);
    kd_close(db);
    rm_rf(dir);
}

/* Many groups (the table grows), each checked against a count by hand. */
static void test_group_many(void)
{
    char dir[256];
    kd_db *db = open_fresh("groupmany", dir);
    CHECK(db);
    enum { N = 3000, G = 500 };
    static char keys[N][16], vals[N][64];
    static kd_write w[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%05d", i);
        snprintf(vals[i], sizeof vals[i], "{\"g\":%d,\"n\":%d}", (i * 7) % G, i);
        w[i] = (kd_write){"m", keys[i], vals[i], strlen(vals[i]), NULL};
    }
    CHECK_RC(kd_put_batch(db, w, N, NULL), KD_OK);
    char *a = aggq(db, "m", "{\"group_by\":[\"g\"],\"aggregate\":[\"count\",\"sum:n\"]}");
    CHECK(a);
    const char *p = a;
    for (int g = 0; g < G; g++) {
        long sum = 0, cnt = 0;
        for (int i = 0; i < N; i++)
            if ((i * 7) % G == g)
                sum += i, cnt++;
        char want[128];
        snprintf(want, sizeof want, "{\"count\":%ld,\"group\":{\"g\":%d},\"sum:n\":%ld}", cnt, g, sum);
        const char *at = strstr(p, want);
        CHECK(at);
        p = at + strlen(want);
    }
    free(a);
    kd_close(db);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * As-of queries against a brute-force replay
 * ---------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void test_as_of(void)
{
    char dir[256];
    kd_db *db = open_fresh("asof", dir);
    CHECK(db);
    enum { NK = 50, OPS = 600 };
    int64_t ts[OPS];
    size_t nts = 0;
    char k[16], v[96];
    for (int i = 0; i < OPS; i++) {
        snprintf(k, sizeof k, "key%02u", rnd() % NK);
        kd_version ver;
        int rc;
        if (rnd() % 5 == 0) {
            rc = kd_delete(db, "a", k, &ver);
            if (rc == KD_ENOTFOUND || rc == KD_EDELETED)
                continue;
        } else {
            uint32_t x = rnd();
            if (x % 10 == 0)
                snprintf(v, sizeof v, "%u", x % 100);
            else if (x % 10 == 1)
                snprintf(v, sizeof v, "{\"n\":\"%u\"}", x % 100);
            else
                snprintf(v, sizeof v, "{\"n\":%u,\"s\":\"v%u\"}", x % 100, x % 7);
            rc = kd_put(db, "a", k, v, strlen(v), &ver);
        }
        CHECK_RC(rc, KD_OK);
        ts[nts++] = ver.timestamp;
    }
    kd_filter *f = NULL;
    CHECK_RC(kd_filter_parse("n >= 40", &f, NULL, 0), KD_OK);
    for (int t = 0; t < 12; t++) {
        int64_t T = t == 0 ? ts[0] - 1 : t == 11 ? ts[nts - 1] + 1000 : ts[rnd() % nts] + (t % 2);
        char qj[160];
        if (t % 2)
            snprintf(qj, sizeof qj, "{\"at\":%lld,\"filter\":\"n >= 40\"}", (long long)T);
        else
            snprintf(qj, sizeof qj, "{\"at\":\"@%lld\",\"filter\":\"n >= 40\"}", (long long)T);
        kd_result *r = runq(db, "a", qj);
        CHECK(r);
        /* Brute force: every key, kd_get_at, the filter; in key order. */
        size_t row = 0;
        for (int i = 0; i < NK; i++) {
            snprintf(k, sizeof k, "key%02d", i);
            char *val = NULL;
            size_t len = 0;
            kd_version meta;
            int rc = kd_get_at(db, "a", k, T, &val, &len, &meta);
            if (rc == KD_OK && kd_filter_match(f, val, len) == 1) {
                CHECK(row < r->n_rows);
                CHECK_EQ_STR(r->rows[row].key, k);
                CHECK_EQ_STR(r->rows[row].value, val);
                CHECK(same_version(&r->rows[row].version, &meta));
                row++;
            }
            kd_free(val);
        }
        CHECK_EQ_INT(row, r->n_rows);
        CHECK_EQ_INT(row, r->total);
        kd_result_free(r);
        /* The same with an aggregation: count agrees. */
        snprintf(qj, sizeof qj, "{\"at\":%lld,\"filter\":\"n >= 40\",\"aggregate\":[\"count\"]}", (long long)T);
        CHECK((r = runq(db, "a", qj)));
        char want[64];
        snprintf(want, sizeof want, "{\"count\":%zu}", row);
        CHECK_EQ_STR(r->aggregates, want);
        kd_result_free(r);
    }
    kd_filter_free(f);
    kd_close(db);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * History queries
 * ---------------------------------------------------------------------- */

static void test_history(void)
{
    char dir[256];
    kd_db *db = open_fresh("hist", dir);
    CHECK(db);
    const char *vals[] = {"{\"n\":1}", "{\"n\":5}", NULL, "{\"n\":7}", "{\"n\":2}", "{\"n\":9}"};
    int64_t ts[6];
    for (int i = 0; i < 6; i++) {
        kd_version v;
        if (vals[i])
            CHECK_RC(kd_put(db, "h", "key", vals[i], strlen(vals[i]), &v), KD_OK);
        else
            CHECK_RC(kd_delete(db, "h", "key", &v), KD_OK);
        ts[i] = v.timestamp;
        put(db, "h", "other", "{\"n\":100}");
    }
    int rc;
    kd_result *r = histq(db, "h", "key", "{}", &rc);
    CHECK_RC(rc, KD_OK);
    CHECK_EQ_INT(r->total, 6);
    CHECK_EQ_STR(rows_text(r), "key={\"n\":1};key={\"n\":5};key=-;key={\"n\":7};key={\"n\":2};key={\"n\":9}");
    kd_version *h;
    size_t nh;
    CHECK_RC(kd_history(db, "h", "key", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &nh), KD_OK);
    CHECK_EQ_INT(nh, 6);
    for (size_t i = 0; i < 6; i++)
        CHECK(same_version(&h[i], &r->rows[i].version));
    CHECK_EQ_INT(r->rows[2].version.deleted, 1);
    kd_free(h);
    char *js = NULL;
    CHECK_RC(kd_result_json(db, "h", r, &js, NULL), KD_OK);
    CHECK(strstr(js, "\"value\":null"));
    kd_free(js);
    kd_result_free(r);

    CHECK((r = histq(db, "h", "key", "{\"filter\":\"n > 1\"}", &rc)));
    CHECK_EQ_INT(r->total, 4);
    CHECK_EQ_STR(rows_text(r), "key={\"n\":5};key={\"n\":7};key={\"n\":2};key={\"n\":9}");
    kd_result_free(r);
    /* A filter true of an absent document still never matches a tombstone. */
    CHECK((r = histq(db, "h", "key", "{\"filter\":\"not m exists\"}", &rc)));
    CHECK_EQ_INT(r->total, 5);
    kd_result_free(r);

    char q[256];
    snprintf(q, sizeof q, "{\"from\":%lld,\"to\":\"@%lld\"}", (long long)ts[1], (long long)ts[4]);
    CHECK((r = histq(db, "h", "key", q, &rc)));
    CHECK_EQ_STR(rows_text(r), "key={\"n\":5};key=-;key={\"n\":7};key={\"n\":2}");
    kd_result_free(r);
    snprintf(q, sizeof q, "{\"from\":%lld,\"to\":%lld}", (long long)ts[1] + 1, (long long)ts[3] - 1);
    CHECK((r = histq(db, "h", "key", q, &rc)));
    CHECK_EQ_STR(rows_text(r), "key=-");
    kd_result_free(r);

    CHECK((r = histq(db, "h", "key", "{\"filter\":\"n > 1\",\"latest\":2}", &rc)));
    CHECK_EQ_INT(r->total, 4);
    CHECK_EQ_STR(rows_text(r), "key={\"n\":2};key={\"n\":9}");
    kd_result_free(r);
    CHECK((r = histq(db, "h", "key", "{\"latest\":4,\"offset\":1,\"limit\":2}", &rc)));
    CHECK_EQ_INT(r->total, 6);
    CHECK_EQ_STR(rows_text(r), "key={\"n\":7};key={\"n\":2}");
    kd_result_free(r);
    CHECK((r = histq(db, "h", "key", "{\"sort\":[\"n:desc\"],\"select\":[\"n\"],\"limit\":3}", &rc)));
    CHECK_EQ_STR(rows_text(r), "key={\"n\":9};key={\"n\":7};key={\"n\":5}");
    kd_result_free(r);
    /* Sorting ascending puts the tombstone (missing) first; ties by time. */
    CHECK((r = histq(db, "h", "key", "{\"sort\":[\"n\"],\"limit\":2}", &rc)));
    CHECK_EQ_STR(rows_text(r), "key=-;key={\"n\":1}");
    kd_result_free(r);
    CHECK((r = histq(db, "h", "key", "{\"aggregate\":[\"count\",\"max:n\",\"sum:n\"]}", &rc)));
    CHECK_EQ_INT(r->total, 6);
    CHECK_EQ_STR(r->aggregates, "{\"count\":6,\"max:n\":9,\"sum:n\":24}");
    kd_result_free(r);
    CHECK((r = histq(db, "h", "key", "{\"latest\":2,\"aggregate\":[\"sum:n\"]}", &rc)));
    CHECK_EQ_STR(r->aggregates, "{\"sum:n\":11}");
    kd_result_free(r);

    CHECK(!histq(db, "h", "never", "{}", &rc));
    CHECK_RC(rc, KD_ENOTFOUND);
    CHECK(!histq(db, "nons", "key", "{}", &rc));
    CHECK_RC(rc, KD_ENOTFOUND);
    CHECK(!histq(db, "h", "key", "{\"at\":\"now\"}", &rc));
    CHECK_RC(rc, KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "at"));
    /* from/to/latest are for history queries only */
    kd_query *qq = NULL;
    CHECK_RC(kd_query_parse("{\"latest\":1}", 12, &qq, NULL, 0), KD_OK);
    CHECK_RC(kd_query_run(db, "h", qq, &r), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "latest"));
    kd_query_free(qq);
    kd_close(db);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * The JSON form: errors and round trip
 * ---------------------------------------------------------------------- */

/* A version whose value retention removed has no value, like a tombstone:
 * a row with value NULL (version.pruned set) without a filter, never a
 * match of one, missing for every field of an aggregation. The query
 * does not fail (it was KD_EPRUNED). */
static void test_history_pruned(void)
{
    char dir[256];
    kd_db *db = open_fresh("histpruned", dir);
    CHECK(db);
    const char *vals[] = {"{\"n\":1}", "{\"n\":5}", NULL, "{\"n\":7}", "{\"n\":2}", "{\"n\":9}"};
    for (int i = 0; i < 6; i++) {
        if (vals[i])
            CHECK_RC(kd_put(db, "h", "key", vals[i], strlen(vals[i]), NULL), KD_OK);
        else
            CHECK_RC(kd_delete(db, "h", "key", NULL), KD_OK);
    }
    CHECK_RC(kd_retention_set(db, "h", "{\"keep_last\":2}", 15), KD_OK);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions_pruned, 3); /* n 1, 5 and 7; the tombstone stays */

    int rc;
    kd_result *r = histq(db, "h", "key", "{}", &rc);
    CHECK_RC(rc, KD_OK);
    CHECK_EQ_INT(r->total, 6);
    CHECK_EQ_STR(rows_text(r), "key=-;key=-;key=-;key=-;key={\"n\":2};key={\"n\":9}");
    const int pruned[] = {1, 1, 0, 1, 0, 0}, deleted[] = {0, 0, 1, 0, 0, 0};
    kd_version *h;
    size_t nh;
    CHECK_RC(kd_history(db, "h", "key", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &nh), KD_OK);
    CHECK_EQ_INT(nh, 6);
    for (size_t i = 0; i < 6; i++) {
        CHECK(same_version(&h[i], &r->rows[i].version));
        CHECK_EQ_INT(r->rows[i].version.pruned, pruned[i]);
        CHECK_EQ_INT(r->rows[i].version.deleted, deleted[i]);
    }
    kd_free(h);
    char *js = NULL;
    CHECK_RC(kd_result_json(db, "h", r, &js, NULL), KD_OK);
    CHECK(strstr(js, "\"value\":null,") && strstr(js, "\"pruned\":true}"));
    kd_free(js);
    kd_result_free(r);

    /* No filter matches a version without a value, not even true. */
    CHECK((r = histq(db, "h", "key", "{\"filter\":\"true\"}", &rc)));
    CHECK_EQ_INT(r->total, 2);
    CHECK_EQ_STR(rows_text(r), "key={\"n\":2};key={\"n\":9}");
    kd_result_free(r);
    CHECK((r = histq(db, "h", "key", "{\"filter\":\"not n exists\"}", &rc)));
    CHECK_EQ_INT(r->total, 0);
    kd_result_free(r);
    CHECK((r = histq(db, "h", "key", "{\"filter\":\"n > 1\",\"select\":[\"n\"]}", &rc)));
    CHECK_EQ_STR(rows_text(r), "key={\"n\":2};key={\"n\":9}");
    kd_result_free(r);
    CHECK((r = histq(db, "h", "key", "{\"select\":[\"n\"],\"sort\":[\"n:desc\"],\"limit\":3}", &rc)));
    CHECK_EQ_STR(rows_text(r), "key={\"n\":9};key={\"n\":2};key=-");
    CHECK_EQ_INT(r->rows[2].version.pruned, 1); /* missing ones by time: the oldest first */
    kd_result_free(r);
    CHECK((r = histq(db, "h", "key", "{\"latest\":1}", &rc)));
    CHECK_EQ_STR(rows_text(r), "key={\"n\":9}");
    kd_result_free(r);

    /* Aggregations: counted as matches, missing for every field. */
    CHECK((r = histq(db, "h", "key", "{\"aggregate\":[\"count\",\"max:n\",\"sum:n\",\"avg:n\",\"distinct:n\"]}", &rc)));
    CHECK_EQ_INT(r->total, 6);
    CHECK_EQ_STR(r->aggregates, canon("{\"avg:n\":5.5,\"count\":6,\"distinct:n\":[2,9],\"max:n\":9,\"sum:n\":11}"));
    kd_result_free(r);
    CHECK((r = histq(db, "h", "key", "{\"filter\":\"true\",\"aggregate\":[\"count\"]}", &rc)));
    CHECK_EQ_STR(r->aggregates, "{\"count\":2}");
    kd_result_free(r);
    kd_close(db);
    rm_rf(dir);
}

static void test_errors(void)
{
    struct {
        const char *json;
        const char *msg; /* the message starts with this */
    } bad[] = {
        {"{", "query: "},
        {"[1]", "query: must be a JSON object"},
        {"{\"bogus\":1}", "\"bogus\": unknown query member"},
        {"{\"filter\":\"age >\"}", "filter: "},
        {"{\"filter\":5}", "filter: must be"},
        {"{\"filter\":{\"nonsense\":[]}}", "filter: "},
        {"{\"sort\":\"a\"}", "sort: must be an array"},
        {"{\"sort\":[\"a\",\"b:up\"]}", "sort[1]: "},
        {"{\"sort\":[\"a\",7]}", "sort[1]: must be"},
        {"{\"sort\":[\"a..b\"]}", "sort[0]: bad path"},
        {"{\"sort\":[{\"field\":\"a\",\"order\":\"up\"}]}", "sort[0].order: "},
        {"{\"sort\":[{\"feld\":\"a\"}]}", "sort[0]: unknown member \"feld\""},
        {"{\"sort\":[{\"order\":\"asc\"}]}", "sort[0]: the object needs \"field\""},
        {"{\"select\":[]}", "select: must not be empty"},
        {"{\"select\":[\"a\",\"\"]}", "select[1]: bad path"},
        {"{\"select\":[\"a\",\"b\",\"a\"]}", "select[2]: \"a\" is named twice"},
        {"{\"select\":[1]}", "select[0]: must be a string"},
        {"{\"offset\":-1}", "offset: must be a non-negative integer"},
        {"{\"limit\":1.5}", "limit: must be a non-negative integer"},
        {"{\"limit\":\"3\"}", "limit: must be a non-negative integer"},
        {"{\"limit\":100000000000000000000}", "limit: 100000000000000000000 is too large (at most 9223372036854775807)"},
        {"{\"offset\":9223372036854775808}", "offset: 9223372036854775808 is too large (at most 9223372036854775807)"},
        {"{\"offset\":-9223372036854775809}", "offset: must be a non-negative integer"},
        {"{\"at\":9223372036854775808}", "at: 9223372036854775808 nanoseconds is out of the 64-bit range"},
        {"{\"at\":1e3}", "at: must be an integer number of nanoseconds"},
        {"{\"latest\":true}", "latest: "},
        {"{\"at\":\"yesterday\"}", "at: "},
        {"{\"at\":1.5}", "at: "},
        {"{\"from\":[]}", "from: "},
        {"{\"to\":\"@x\"}", "to: "},
        {"{\"from\":\"@10\",\"to\":\"@5\"}", "from: is later than to"},
        {"{\"at\":\"@5\",\"latest\":1}", "at: not allowed with latest"},
        {"{\"aggregate\":[]}", "aggregate: must not be empty"},
        {"{\"aggregate\":[\"sum\"]}", "aggregate[0]: sum needs a field"},
        {"{\"aggregate\":[\"count\",\"median:x\"]}", "aggregate[1]: unknown operation \"median\""},
        {"{\"aggregate\":[\"count:x\"]}", "aggregate[0]: count takes no field"},
        {"{\"aggregate\":[\"sum:a\",\"sum:a\"]}", "aggregate[1]: \"sum:a\" is named twice"},
        {"{\"aggregate\":[\"sum:a..\"]}", "aggregate[0]: bad path"},
        {"{\"aggregate\":[{\"field\":\"a\"}]}", "aggregate[0]: the object needs \"op\""},
        {"{\"aggregate\":[{\"op\":\"sum\",\"x\":1}]}", "aggregate[0]: unknown member \"x\""},
        {"{\"aggregate\":[\"count\"],\"limit\":3}", "limit: not allowed with aggregate"},
        {"{\"group_by\":[\"a\"],\"sort\":[\"a\"]}", "sort: not allowed with aggregate"},
        {"{\"group_by\":\"x\"}", "group_by: must be an array"},
        {"{\"group_by\":[\"x\",\"x\"]}", "group_by[1]: \"x\" is named twice"},
        /* the first place that repeats an earlier name, whatever their order */
        {"{\"select\":[\"c\",\"b\",\"a\",\"b\",\"c\"]}", "select[3]: \"b\" is named twice"},
        {"{\"select\":[\"z\",\"a\",\"y\",\"z\",\"a\"]}", "select[3]: \"z\" is named twice"},
        {"{\"select\":[\"a\",\"a.b\",\"ab\",\"a.b\"]}", "select[3]: \"a.b\" is named twice"},
        {"{\"aggregate\":[\"max:b\",\"count\",\"min:a\",\"count\",\"max:b\"]}",
         "aggregate[3]: \"count\" is named twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_query *q = (kd_query *)1;
        char err[512];
        int rc = kd_query_parse(bad[i].json, strlen(bad[i].json), &q, err, sizeof err);
        if (rc != KD_EINVALID || strncmp(err, bad[i].msg, strlen(bad[i].msg)))
            fprintf(stderr, "%s: rc %d, message \"%s\" (want \"%s…\")\n", bad[i].json, rc, err, bad[i].msg);
        CHECK_RC(rc, KD_EINVALID);
        CHECK(q == NULL);
        CHECK(!strncmp(err, bad[i].msg, strlen(bad[i].msg)));
    }
    /* A JSON-form filter's message is the filter's own, not prefixed twice,
     * and its reason survives however deep the node. */
    struct {
        const char *json;
        const char *msg; /* the whole message */
    } whole[] = {
        {"{\"filter\":{\"op\":\"or\",\"args\":[{\"op\":\"true\"},{\"op\":\"eq\",\"field\":\"a\",\"vale\":1}]}}",
         "filter at args.1: unknown member \"vale\" in the \"eq\" node"},
        {"{\"filter\":{\"nonsense\":[]}}", "filter: missing member \"op\""},
    };
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        kd_query *q = (kd_query *)1;
        char err[512];
        CHECK_RC(kd_query_parse(whole[i].json, strlen(whole[i].json), &q, err, sizeof err), KD_EINVALID);
        if (strncmp(err, whole[i].msg, strlen(whole[i].msg)) || strstr(err, "filter: filter"))
            fprintf(stderr, "%s: message \"%s\"\n", whole[i].json, err);
        CHECK(!strncmp(err, whole[i].msg, strlen(whole[i].msg)));
        CHECK(!strstr(err, "filter: filter"));
    }
    {
        char deep[4096], err[512];
        size_t k = (size_t)snprintf(deep, sizeof deep, "{\"filter\":");
        for (int i = 0; i < 129; i++)
            k += (size_t)snprintf(deep + k, sizeof deep - k, "{\"op\":\"not\",\"arg\":");
        k += (size_t)snprintf(deep + k, sizeof deep - k, "{\"op\":\"true\"}");
        for (int i = 0; i < 130; i++)
            deep[k++] = '}';
        kd_query *q = NULL;
        CHECK_RC(kd_query_parse(deep, k, &q, err, sizeof err), KD_EINVALID);
        CHECK_EQ_STR(err, "filter at arg.arg.arg.arg.\xe2\x80\xa6(120 levels)\xe2\x80\xa6.arg.arg.arg.arg: nested deeper "
                          "than 128 levels of and, or, not");
    }
    kd_query *q = NULL;
    CHECK_RC(kd_query_parse("{\"sort\":[\"a\"]}", 14, NULL, NULL, 0), KD_EINVALID);
    CHECK_RC(kd_query_parse(NULL, 3, &q, NULL, 0), KD_EINVALID);
}

static void test_round_trip(void)
{
    const char *qs[] = {
        "{}",
        "{\"filter\":\"age > 30 and status = \\\"active\\\"\",\"sort\":[\"age:desc\",\"name\",\"x:asc\"],"
        "\"select\":[\"name\",\"address.city\",\"tags.0\"],\"offset\":3,\"limit\":10,\"at\":\"2026-01-02T03:04:05.5Z\"}",
        "{\"group_by\":[\"country\",\"city\"],\"aggregate\":[\"count\",\"sum:price\",{\"op\":\"distinct\","
        "\"field\":\"tags\"},\"avg:a.b\",\"min:x\",\"max:x\",\"count_distinct:y\"]}",
        "{\"group_by\":[\"z\"]}",
        "{\"from\":\"@1000\",\"to\":5000,\"latest\":3,\"sort\":[{\"field\":\"\\\"a:b\\\"\",\"order\":\"desc\"}]}",
        "{\"sort\":[\"\\\"a:b\\\":desc\",\"\\\"the end\\\".x\"],\"limit\":0}",
        "{\"select\":[\"\\\"a.b\\\"\",\"and\",\"0\"],\"at\":-5}",
    };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        kd_query *q1 = NULL, *q2 = NULL;
        char err[256], *j1 = NULL, *j2 = NULL;
        size_t l1 = 0, l2 = 0;
        int rc = kd_query_parse(qs[i], strlen(qs[i]), &q1, err, sizeof err);
        if (rc)
            fprintf(stderr, "%s: %s\n", qs[i], err);
        CHECK_RC(rc, KD_OK);
        CHECK_RC(kd_query_to_json(q1, &j1, &l1), KD_OK);
        CHECK_EQ_INT(strlen(j1), l1);
        CHECK(is_canonical(j1));
        rc = kd_query_parse(j1, l1, &q2, err, sizeof err);
        if (rc)
            fprintf(stderr, "%s: %s\n", j1, err);
        CHECK_RC(rc, KD_OK);
        CHECK_RC(kd_query_to_json(q2, &j2, &l2), KD_OK);
        CHECK_EQ_STR(j2, j1);
        kd_free(j1);
        kd_free(j2);
        kd_query_free(q1);
        kd_query_free(q2);
    }
    /* The canonical form itself */
    kd_query *q = NULL;
    char *j = NULL;
    const char *src = "{\"sort\":[\"b:desc\",\"\\\"a:b\\\"\"],\"limit\":5,\"select\":[\"z\",\"a\"],"
                      "\"at\":\"@1700000000000000001\"}";
    CHECK_RC(kd_query_parse(src, strlen(src), &q, NULL, 0), KD_OK);
    CHECK_RC(kd_query_to_json(q, &j, NULL), KD_OK);
    CHECK_EQ_STR(j, "{\"at\":\"2023-11-14T22:13:20.000000001Z\",\"limit\":5,\"select\":[\"a\",\"z\"],"
                    "\"sort\":[{\"field\":\"b\",\"order\":\"desc\"},{\"field\":\"\\\"a:b\\\"\",\"order\":\"asc\"}]}");
    kd_free(j);
    kd_query_free(q);
    const char *agg = "{\"group_by\":[\"c\"],\"aggregate\":[\"sum:p\",{\"op\":\"count\"}]}";
    CHECK_RC(kd_query_parse(agg, strlen(agg), &q, NULL, 0), KD_OK);
    CHECK_RC(kd_query_to_json(q, &j, NULL), KD_OK);
    CHECK_EQ_STR(j, "{\"aggregate\":[\"count\",\"sum:p\"],\"group_by\":[\"c\"]}");
    kd_free(j);
    kd_query_free(q);
}

/* A field name with ':' in the string form of sort, and a round-tripped
 * query giving the same result as the original. */
static void test_round_trip_runs(void)
{
    char dir[256];
    kd_db *db = open_fresh("rtrun", dir);
    CHECK(db);
    put(db, "r", "k1", "{\"a:b\":3,\"n\":1}");
    put(db, "r", "k2", "{\"a:b\":1,\"n\":2}");
    put(db, "r", "k3", "{\"a:b\":2,\"n\":3}");
    const char *src = "{\"filter\":\"n >= 1\",\"sort\":[\"\\\"a:b\\\":desc\"],\"select\":[\"n\"],\"limit\":2}";
    kd_query *q1 = NULL, *q2 = NULL;
    CHECK_RC(kd_query_parse(src, strlen(src), &q1, NULL, 0), KD_OK);
    char *j = NULL;
    size_t jl;
    CHECK_RC(kd_query_to_json(q1, &j, &jl), KD_OK);
    CHECK_RC(kd_query_parse(j, jl, &q2, NULL, 0), KD_OK);
    kd_result *r1 = NULL, *r2 = NULL;
    CHECK_RC(kd_query_run(db, "r", q1, &r1), KD_OK);
    CHECK_RC(kd_query_run(db, "r", q2, &r2), KD_OK);
    CHECK_EQ_STR(rows_text(r1), "k1={\"n\":1};k3={\"n\":3}");
    char t1[256];
    snprintf(t1, sizeof t1, "%s", rows_text(r1));
    CHECK_EQ_STR(rows_text(r2), t1);
    kd_result_free(r1);
    kd_result_free(r2);
    kd_query_free(q1);
    kd_query_free(q2);
    kd_free(j);
    kd_close(db);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Secondary indexes give the same answers as a scan
 * ---------------------------------------------------------------------- */

static void test_index_same(void)
{
    char dir[256];
    kd_db *db = open_fresh("index", dir);
    CHECK(db);
    char k[16], v[64];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "k%03d", (i * 17) % 300);
        snprintf(v, sizeof v, "{\"c\":\"%c\",\"n\":%d}", 'A' + i % 5, i % 40);
        CHECK_EQ_INT(put(db, "x", k, v), KD_OK);
    }
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof k, "k%03d", i * 7);
        CHECK_RC(kd_delete(db, "x", k, NULL), KD_OK);
    }
    const char *qs[] = {
        "{\"filter\":\"c = \\\"B\\\"\"}",
        "{\"filter\":\"c = \\\"B\\\" and n > 10\",\"sort\":[\"n:desc\"],\"limit\":5}",
        "{\"filter\":\"c in [\\\"A\\\", \\\"E\\\"]\",\"aggregate\":[\"count\",\"sum:n\"]}",
        "{\"filter\":\"n >= 35\",\"group_by\":[\"c\"]}",
    };
    enum { NQ = sizeof qs / sizeof qs[0] };
    char *before[NQ];
    for (size_t i = 0; i < NQ; i++) {
        kd_result *r = runq(db, "x", qs[i]);
        CHECK(r);
        CHECK_RC(kd_result_json(db, "x", r, &before[i], NULL), KD_OK);
        kd_result_free(r);
    }
    int rc = kd_index_create(db, "x", "c");
    if (rc == KD_OK)
        rc = kd_index_create(db, "x", "n");
    CHECK_RC(rc, KD_OK);
    for (size_t i = 0; i < NQ; i++) {
        kd_result *r = runq(db, "x", qs[i]);
        CHECK(r);
        char *after = NULL;
        CHECK_RC(kd_result_json(db, "x", r, &after, NULL), KD_OK);
        CHECK_EQ_STR(after, before[i]);
        kd_free(after);
        kd_free(before[i]);
        kd_result_free(r);
    }
    kd_close(db);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * kd__query_run_keys (views)
 * ---------------------------------------------------------------------- */

typedef struct keyset {
    const kd__key *k[64];
    int64_t ts[64];
    size_t n;
} keyset;

static int collect_keys(void *ctx, const kd__scan_item *it, size_t n)
{
    keyset *s = ctx;
    for (size_t i = 0; i < n && s->n < 64; i++) {
        s->k[s->n] = it[i].key;
        s->ts[s->n++] = it[i].ts;
    }
    return 0;
}

static void test_run_keys(void)
{
    char dir[256];
    kd_db *db = open_fresh("runkeys", dir);
    CHECK(db);
    char k[16], v[64];
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "k%d", i);
        snprintf(v, sizeof v, "{\"n\":%d,\"m\":%d}", (i * 3) % 10, i);
        CHECK_EQ_INT(put(db, "v", k, v), KD_OK);
    }
    keyset s = {0};
    CHECK_RC(kd__scan_raw(db, "v", KD_TIME_MAX, collect_keys, &s), KD_OK);
    CHECK_EQ_INT(s.n, 10);
    /* Later versions must not change what the view shows. */
    put(db, "v", "k1", "{\"n\":100}");
    const char *src = "{\"sort\":[\"n:desc\"],\"select\":[\"n\"],\"offset\":1,\"limit\":6}";
    kd_query *q = NULL;
    CHECK_RC(kd_query_parse(src, strlen(src), &q, NULL, 0), KD_OK);
    CHECK(kd__query_filter(q) == NULL);
    CHECK_EQ_INT(kd__query_has_extras(q), 0);
    kd_result *r = NULL;
    CHECK_RC(kd__query_run_keys(db, "v", q, s.k, s.ts, s.n, 2, 3, &r), KD_OK);
    /* n by key: k0 0, k1 3, k2 6, k3 9, k4 2, k5 5, k6 8, k7 1, k8 4, k9 7;
     * desc: k3 k6 k9 k2 k5 k8 k1 k4 k7 k0; q's window [1,7): k6 k9 k2 k5 k8 k1;
     * then [2, 5) of that: k2 k5 k8 */
    CHECK_EQ_INT(r->total, 6);
    CHECK_EQ_STR(rows_text(r), "k2={\"n\":6};k5={\"n\":5};k8={\"n\":4}");
    kd_result_free(r);
    CHECK_RC(kd__query_run_keys(db, "v", q, s.k, s.ts, s.n, 4, 0, &r), KD_OK);
    CHECK_EQ_STR(keys_text(r), "k8,k1");
    kd_result_free(r);
    kd_query_free(q);
    const char *agg = "{\"aggregate\":[\"count\"]}";
    CHECK_RC(kd_query_parse(agg, strlen(agg), &q, NULL, 0), KD_OK);
    CHECK_EQ_INT(kd__query_has_extras(q), 1);
    kd_query_free(q);
    kd_close(db);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Queries while a writer writes
 * ---------------------------------------------------------------------- */

typedef struct writer_ctx {
    kd_db *db;
    int n;
    int failed;
} writer_ctx;

static void *writer(void *arg)
{
    writer_ctx *w = arg;
    char k[16], v[64];
    for (int i = 0; i < w->n; i++) {
        snprintf(k, sizeof k, "w%05d", i);
        snprintf(v, sizeof v, "{\"i\":%d,\"g\":%d}", i, i % 4);
        if (kd_put(w->db, "c", k, v, strlen(v), NULL))
            w->failed = 1;
        if (i % 3 == 2) {
            snprintf(k, sizeof k, "w%05d", i - 1);
            if (kd_delete(w->db, "c", k, NULL))
                w->failed = 1;
        }
    }
    return NULL;
}

static void test_concurrent(void)
{
    char dir[256];
    kd_db *db = open_fresh("conc", dir);
    CHECK(db);
    writer_ctx w = {db, 3000, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, writer, &w) == 0);
    uint64_t last = 0;
    int bad = 0; /* each run is one snapshot: live keys never drop by more than 1 */
    for (int i = 0; i < 40; i++) {
        kd_result *r = runq(db, "c", i % 2 ? "{\"filter\":\"i >= 0\",\"sort\":[\"i:desc\"],\"limit\":5}"
                                           : "{\"group_by\":[\"g\"],\"aggregate\":[\"count\",\"sum:i\"]}");
        if (!r) {
            bad = 1;
            break;
        }
        if (i % 2) {
            /* live keys only grow here (each delete follows a put) */
            if (r->total + 1 < last)
                bad = 1;
            last = r->total;
            for (size_t j = 1; j < r->n_rows; j++)
                if (strcmp(r->rows[j - 1].key, r->rows[j].key) <= 0)
                    bad = 1;
        }
        kd_result_free(r);
    }
    pthread_join(t, NULL);
    CHECK(!bad);
    CHECK(!w.failed);
    kd_result *r = runq(db, "c", "{\"aggregate\":[\"count\"]}");
    CHECK(r);
    CHECK_EQ_INT(r->total, 2000);
    kd_result_free(r);
    kd_close(db);
    rm_rf(dir);
}

/* Regression: empty strings in the query's members were read without a
 * terminating NUL (heap over-read under ASan, reachable over HTTP). */
static void test_empty_strings(void)
{
    static const char *bad[] = {
        "{\"filter\":\"\"}", "{\"at\":\"\"}", "{\"sort\":[\"\"]}", "{\"select\":[\"\"]}",
        "{\"aggregate\":[\"\"]}", "{\"group_by\":[\"\"],\"aggregate\":[\"count\"]}",
        "{\"from\":\"\"}", "{\"to\":\"\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kd_query *q = NULL;
        char err[256] = "";
        int rc = kd_query_parse(bad[i], strlen(bad[i]), &q, err, sizeof err);
        if (rc != KD_EINVALID)
            fprintf(stderr, "%s: rc %d\n", bad[i], rc);
        CHECK_RC(rc, KD_EINVALID);
        CHECK(q == NULL);
        CHECK(err[0] != '\0');
    }
}

int main(void)
{
    RUN(test_rows);
    RUN(test_projection);
    RUN(test_ties);
    RUN(test_mixed_types);
    RUN(test_agg_empty);
    RUN(test_agg_mixed);
    RUN(test_agg_sums);
    RUN(test_avg_overflow);
    RUN(test_sum_one_double);
    RUN(test_distinct);
    RUN(test_group_by);
    RUN(test_group_many);
    RUN(test_as_of);
    RUN(test_history);
    RUN(test_history_pruned);
    RUN(test_errors);
    RUN(test_round_trip);
    RUN(test_round_trip_runs);
    RUN(test_index_same);
    RUN(test_run_keys);
    RUN(test_concurrent);
    RUN(test_empty_strings);
    return HARNESS_DONE();
}
