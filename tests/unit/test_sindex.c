/*
 * test_sindex.c — secondary indexes: definitions, persistence, and the
 * property that index-driven candidates give exactly the scan's answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "harness.h"
#include "query/filter.h"
#include "query/sindex.h"

static kd_db *open_db(const char *dir)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_db *db = NULL;
    char err[256];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "open: %s\n", err);
    kd_options_free(o);
    return db;
}

static kd_db *open_fresh(const char *tag, char *dir)
{
    snprintf(dir, 256, "/tmp/kd_test_sindex_%s_XXXXXX", tag);
    if (!mkdtemp(dir))
        abort();
    return open_db(dir);
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
}

/* ---- a set of key names, as a sorted, newline-joined string ---- */

typedef struct names {
    char **v;
    size_t n, cap;
} names;

static void names_add(names *s, const char *k)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = strdup(k);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *names_join(names *s)
{
    qsort(s->v, s->n, sizeof *s->v, cmp_str);
    size_t len = 1;
    for (size_t i = 0; i < s->n; i++)
        len += strlen(s->v[i]) + 1;
    char *out = malloc(len), *p = out;
    *p = '\0';
    for (size_t i = 0; i < s->n; i++) {
        p += sprintf(p, "%s\n", s->v[i]);
        free(s->v[i]);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
    return out;
}

/* ---- the two ways to answer a filter ---- */

typedef struct scan_ctx {
    const kd_filter *f;
    names *out;
} scan_ctx;

static int scan_page(void *arg, const kd__scan_item *it, size_t n)
{
    scan_ctx *c = arg;
    for (size_t i = 0; i < n; i++)
        if (kd__filter_eval(c->f, (kd__jv){it[i].value, it[i].value_len}))
            names_add(c->out, it[i].key->name);
    return 0;
}

/* Matches of f in ns by a full scan at time `at`. */
static char *by_scan(kd_db *db, const char *ns, const kd_filter *f, int64_t at)
{
    names s = {0};
    scan_ctx c = {f, &s};
    if (kd__scan_raw(db, ns, at, scan_page, &c))
        return NULL;
    return names_join(&s);
}

/* Matches of f from the index's candidates, each evaluated at the
 * snapshot. *used = 1 when an index answered. */
static char *by_index(kd_db *db, const char *ns, const kd_filter *f, int *used, int64_t *snap)
{
    const kd__key **keys = NULL;
    size_t n = 0;
    int rc = kd__sindex_candidates(db, ns, f, &keys, &n, snap);
    *used = rc == 1;
    if (rc != 1)
        return NULL;
    names s = {0};
    kd__buf scratch = KD__BUF_INIT;
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < n; i++) {
        uint32_t pos = kd__key_upper(keys[i], *snap);
        if (!pos || keys[i]->vers[pos - 1].value == KD__NO_VALUE)
            continue;
        const char *p;
        size_t len;
        if (kd__value_bytes(db, keys[i]->vers[pos - 1].value, &scratch, &p, &len))
            continue;
        if (kd__filter_eval(f, (kd__jv){p, len}))
            names_add(&s, keys[i]->name);
    }
    pthread_rwlock_unlock(&db->ix_lock);
    kd__buf_free(&scratch);
    free(keys);
    return names_join(&s);
}

/* ---- tests ---- */

static void test_definitions(void)
{
    char dir[256];
    kd_db *db = open_fresh("defs", dir);
    CHECK(db);
    CHECK_RC(kd_put(db, "users", "a", "{\"age\":3}", 9, NULL), KD_OK);
    CHECK_RC(kd_put(db, "users", "b", "{\"name\":\"x\"}", 12, NULL), KD_OK);
    CHECK_RC(kd_index_create(db, "users", "age"), KD_OK);
    CHECK_RC(kd_index_create(db, "users", "age"), KD_EEXISTS);
    CHECK_RC(kd_index_create(db, "users", "a..b"), KD_EINVALID);
    CHECK_RC(kd_index_create(db, "_kd.x", "age"), KD_ERESERVED);
    CHECK_RC(kd_index_create(db, "users", "\"first name\""), KD_OK);
    kd_index_info *l;
    size_t n;
    CHECK_RC(kd_index_list(db, NULL, &l, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(l[0].field, "\"first name\"");
    CHECK_EQ_INT(l[0].entries, 0);
    CHECK_EQ_STR(l[1].field, "age");
    CHECK_EQ_INT(l[1].entries, 1); /* b has no age */
    kd_index_list_free(l, n);
    /* Definitions are not user data: listings and stats do not show them. */
    char **ns;
    CHECK_RC(kd_list_namespaces(db, &ns, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    kd_free_list(ns, n);
    /* They advance the views root, and verify agrees. */
    kd_root *roots;
    CHECK_RC(kd_roots(db, &roots, &n), KD_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(roots[1].name, "views");
    char views_hex[KD_ID_HEX];
    memcpy(views_hex, roots[1].hex, KD_ID_HEX);
    kd_free(roots);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);

    /* Reopen: the definitions come back, rebuilt, with the same root. */
    db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_index_list(db, "users", &l, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(l[1].entries, 1);
    kd_index_list_free(l, n);
    CHECK_RC(kd_roots(db, &roots, &n), KD_OK);
    CHECK_EQ_STR(roots[1].hex, views_hex);
    kd_free(roots);
    CHECK_RC(kd_index_drop(db, "users", "age"), KD_OK);
    CHECK_RC(kd_index_drop(db, "users", "age"), KD_ENOTFOUND);
    CHECK_RC(kd_index_list(db, NULL, &l, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    kd_index_list_free(l, n);
    CHECK_RC(kd_close(db), KD_OK);
    db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_index_list(db, NULL, &l, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    kd_index_list_free(l, n);
    /* A dropped index can be created again. */
    CHECK_RC(kd_index_create(db, "users", "age"), KD_OK);
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* A random field value of any type; NULL = leave the field out. */
static const char *random_value(char *buf)
{
    switch (rnd(9)) {
    case 0:
        return NULL;
    case 1:
        return "null";
    case 2:
        return rnd(2) ? "true" : "false";
    case 3:
        sprintf(buf, "%u.5", rnd(10));
        return buf;
    case 4:
        sprintf(buf, "%u.0", rnd(10)); /* numerically equal to an integer */
        return buf;
    case 5:
        sprintf(buf, "\"s%u\"", rnd(6));
        return buf;
    case 6:
        return "[1,2]";
    default:
        sprintf(buf, "%u", rnd(10));
        return buf;
    }
}

static const char *filters[] = {
    "age = 3",          "age = 3.0",          "age = \"s2\"",        "age = null",        "age = true",
    "age in [1, 2.5, \"s1\", null]",          "age in [4, 4.0]",     "age > 5",           "age >= 5",
    "age < 2.5",        "age <= 0",           "age > \"s3\"",        "age < true",        "age >= false",
    "age > 2 and tag = \"a\"",                "tag = \"b\" and age in [7, 8]",          "age = [1,2]",
    "age > 3 and age < 7",
};

static void check_all_filters(kd_db *db, int want_index)
{
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++) {
        kd_filter *f;
        char err[256];
        CHECK_RC(kd_filter_parse(filters[i], &f, err, sizeof err), KD_OK);
        int used;
        int64_t snap = 0;
        char *a = by_index(db, "docs", f, &used, &snap);
        int container = strstr(filters[i], "[1,2]") != NULL;
        if (want_index && !container && !used) {
            fprintf(stderr, "index not used for: %s\n", filters[i]);
            kd_filter_free(f);
            CHECK(0);
        }
        if (used) {
            char *b = by_scan(db, "docs", f, snap);
            if (strcmp(a, b))
                fprintf(stderr, "filter %s\nindex:\n%sscan:\n%s", filters[i], a, b);
            int same = !strcmp(a, b);
            free(a);
            free(b);
            kd_filter_free(f);
            CHECK(same);
        } else {
            free(a);
            kd_filter_free(f);
        }
    }
}

/* Random puts, updates and deletes of documents whose field takes values
 * of every type: after each phase, every filter answered from the index
 * equals the full scan, also after reopening. */
static void test_index_equals_scan(void)
{
    char dir[256];
    kd_db *db = open_fresh("prop", dir);
    CHECK(db);
    /* Some data before the index exists, some after. */
    for (int phase = 0; phase < 4; phase++) {
        for (int i = 0; i < 600; i++) {
            char key[16], buf[32], doc[128];
            snprintf(key, sizeof key, "k%03u", rnd(150));
            if (rnd(8) == 0) {
                int rc = kd_delete(db, "docs", key, NULL);
                CHECK(rc == KD_OK || rc == KD_ENOTFOUND || rc == KD_EDELETED);
                continue;
            }
            const char *v = random_value(buf);
            const char *tag = rnd(2) ? "a" : "b";
            if (v)
                snprintf(doc, sizeof doc, "{\"age\":%s,\"tag\":\"%s\"}", v, tag);
            else
                snprintf(doc, sizeof doc, "{\"tag\":\"%s\"}", tag);
            CHECK_RC(kd_put(db, "docs", key, doc, strlen(doc), NULL), KD_OK);
        }
        if (phase == 0)
            CHECK_RC(kd_index_create(db, "docs", "age"), KD_OK);
        check_all_filters(db, phase > 0 || 1);
        if (harness_current_failed)
            return;
        if (phase == 2) {
            CHECK_RC(kd_close(db), KD_OK);
            db = open_db(dir);
            CHECK(db);
            check_all_filters(db, 1);
            if (harness_current_failed)
                return;
        }
    }
    /* A batch that writes one key twice keeps one entry for it. */
    kd_write w[2] = {{"docs", "k000", "{\"age\":1}", 9, NULL}, {"docs", "k000", "{\"age\":2}", 9, NULL}};
    CHECK_RC(kd_put_batch(db, w, 2, NULL), KD_OK);
    check_all_filters(db, 1);
    kd_close(db);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_definitions);
    RUN(test_index_equals_scan);
    return HARNESS_DONE();
}
