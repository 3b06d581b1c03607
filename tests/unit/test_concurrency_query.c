/*
 * test_concurrency_query.c — queries, an index and a view used while
 * writers write and an index is created and dropped over and over (for
 * ThreadSanitizer). Every row returned must match the filter; once the
 * writers stop, the view, the indexed query and a plain scan agree. So do
 * views created while writers write (a write applied between a new view's
 * scan and its registration was in neither, for good).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "korudelta.h"

#define WRITES 3000
static const char *FILTER = "age >= 50 and tag = \"a\"";
static const char *QUERY = "{\"filter\":\"age >= 50 and tag = \\\"a\\\"\",\"sort\":[\"age:desc\"]}";

typedef struct shared {
    kd_db *db;
    int stop;      /* atomic */
    int bad;       /* atomic: a row that does not match */
    int failures;  /* atomic: calls that failed */
    int seed;
} shared;

static void *writer(void *arg)
{
    shared *s = arg;
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(s->seed + 1);
    for (int i = 0; i < WRITES; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char key[16], doc[64];
        snprintf(key, sizeof key, "k%03u", (unsigned)(x % 200));
        int rc;
        if (x % 9 == 0) {
            rc = kd_delete(s->db, "docs", key, NULL);
            if (rc == KD_ENOTFOUND || rc == KD_EDELETED)
                rc = KD_OK;
        } else {
            snprintf(doc, sizeof doc, "{\"age\":%u,\"tag\":\"%c\"}", (unsigned)(x >> 20) % 100,
                     (x >> 40) % 2 ? 'a' : 'b');
            rc = kd_put(s->db, "docs", key, doc, strlen(doc), NULL);
        }
        if (rc)
            __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void check_rows(shared *s, const kd_filter *f, const kd_result *r)
{
    for (size_t i = 0; i < r->n_rows; i++)
        if (kd_filter_match(f, r->rows[i].value, r->rows[i].value_len) != 1)
            __atomic_add_fetch(&s->bad, 1, __ATOMIC_RELAXED);
}

static void *reader(void *arg)
{
    shared *s = arg;
    kd_filter *f;
    kd_query *q;
    char err[256];
    if (kd_filter_parse(FILTER, &f, err, sizeof err) ||
        kd_query_parse(QUERY, strlen(QUERY), &q, err, sizeof err)) {
        __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        kd_result *r;
        if (kd_query_run(s->db, "docs", q, &r) == KD_OK) {
            check_rows(s, f, r);
            kd_result_free(r);
        } else {
            __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
        }
        if (kd_view_query(s->db, "hot", 0, 0, &r) == KD_OK) {
            check_rows(s, f, r);
            kd_result_free(r);
        } else {
            __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
        }
    }
    kd_filter_free(f);
    kd_query_free(q);
    return NULL;
}

static void *definer(void *arg)
{
    shared *s = arg;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        if (kd_index_create(s->db, "docs", "tag") != KD_OK || kd_index_drop(s->db, "docs", "tag") != KD_OK)
            __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static char *result_text(kd_db *db, kd_result *r)
{
    char *json = NULL;
    size_t len;
    if (kd_result_json(db, "docs", r, &json, &len))
        return NULL;
    kd_result_free(r);
    return json;
}

/* A new database in dir (a mkdtemp template), sync=none, into *db. */
static void open_fresh(char *dir, kd_db **db)
{
    *db = NULL;
    CHECK(mkdtemp(dir));
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    CHECK_RC(kd_open(dir, o, db, NULL, 0), KD_OK);
    kd_options_free(o);
}

static void test_queries_while_writing(void)
{
    char dir[] = "/tmp/kd_test_cq_XXXXXX";
    kd_db *db;
    open_fresh(dir, &db);
    CHECK(db != NULL);
    CHECK_RC(kd_index_create(db, "docs", "age"), KD_OK);
    kd_query *q;
    char err[256];
    CHECK_RC(kd_query_parse(QUERY, strlen(QUERY), &q, err, sizeof err), KD_OK);
    CHECK_RC(kd_view_create(db, "hot", "docs", q, NULL, 1), KD_OK);

    shared s = {db, 0, 0, 0, 0};
    shared s2 = s;
    pthread_t w1, w2, rd, df;
    s2.seed = 1;
    pthread_create(&w1, NULL, writer, &s);
    pthread_create(&w2, NULL, writer, &s2);
    pthread_create(&rd, NULL, reader, &s);
    pthread_create(&df, NULL, definer, &s);
    pthread_join(w1, NULL);
    pthread_join(w2, NULL);
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
    pthread_join(rd, NULL);
    pthread_join(df, NULL);
    CHECK_EQ_INT(s.failures + s2.failures, 0);
    CHECK_EQ_INT(s.bad, 0);

    /* Quiet now: view, indexed query and plain scan give one answer. */
    kd_result *r;
    CHECK_RC(kd_view_query(db, "hot", 0, 0, &r), KD_OK);
    char *view = result_text(db, r);
    CHECK_RC(kd_query_run(db, "docs", q, &r), KD_OK);
    char *indexed = result_text(db, r);
    CHECK_RC(kd_index_drop(db, "docs", "age"), KD_OK);
    CHECK_RC(kd_query_run(db, "docs", q, &r), KD_OK);
    char *scanned = result_text(db, r);
    CHECK(view && indexed && scanned);
    CHECK_EQ_STR(view, scanned);
    CHECK_EQ_STR(indexed, scanned);
    free(view);
    free(indexed);
    free(scanned);
    kd_query_free(q);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    kd_close(db);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

#define MANY_KEYS 20000
#define NEW_VIEWS 12

/* Writes random keys of "many" until told to stop. */
static void *churn(void *arg)
{
    shared *s = arg;
    uint64_t x = 0x2545f4914f6cdd1dull * (uint64_t)(s->seed + 1);
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char key[16], doc[64];
        snprintf(key, sizeof key, "k%05u", (unsigned)(x % MANY_KEYS));
        snprintf(doc, sizeof doc, "{\"age\":%u,\"tag\":\"%c\"}", (unsigned)(x >> 20) % 100, (x >> 40) % 2 ? 'a' : 'b');
        if (kd_put(s->db, "many", key, doc, strlen(doc), NULL))
            __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_views_created_while_writing(void)
{
    char dir[] = "/tmp/kd_test_cv_XXXXXX";
    kd_db *db;
    open_fresh(dir, &db);
    CHECK(db != NULL);
    for (unsigned i = 0; i < MANY_KEYS; i++) {
        char key[16], doc[64];
        snprintf(key, sizeof key, "k%05u", i);
        snprintf(doc, sizeof doc, "{\"age\":%u,\"tag\":\"%c\"}", i % 100, i % 3 ? 'a' : 'b');
        CHECK_RC(kd_put(db, "many", key, doc, strlen(doc), NULL), KD_OK);
    }
    kd_query *q;
    char err[256];
    CHECK_RC(kd_query_parse(QUERY, strlen(QUERY), &q, err, sizeof err), KD_OK);
    shared s = {db, 0, 0, 0, 0}, s2 = s;
    s2.seed = 1;
    pthread_t w1, w2;
    pthread_create(&w1, NULL, churn, &s);
    pthread_create(&w2, NULL, churn, &s2);
    for (int i = 0; i < NEW_VIEWS; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%02d", i);
        CHECK_RC(kd_view_create(db, name, "many", q, NULL, 1), KD_OK);
    }
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&s2.stop, 1, __ATOMIC_RELEASE);
    pthread_join(w1, NULL);
    pthread_join(w2, NULL);
    CHECK_EQ_INT(s.failures + s2.failures, 0);

    kd_result *r;
    CHECK_RC(kd_query_run(db, "many", q, &r), KD_OK);
    char *scanned = result_text(db, r);
    CHECK(scanned != NULL);
    for (int i = 0; i < NEW_VIEWS && scanned; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%02d", i);
        CHECK_RC(kd_view_query(db, name, 0, 0, &r), KD_OK);
        char *view = result_text(db, r);
        CHECK(view && strcmp(view, scanned) == 0);
        free(view);
    }
    free(scanned);
    kd_query_free(q);
    kd_close(db);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    RUN(test_queries_while_writing);
    RUN(test_views_created_while_writing);
    return HARNESS_DONE();
}
