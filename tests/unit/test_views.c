/*
 * test_views.c — materialized views: definitions, errors, persistence, and
 * the property that an incrementally kept view always equals running its
 * query in full (and a manual view equals its query as of its refresh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "korudelta.h"

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
    snprintf(dir, 256, "/tmp/kd_test_views_%s_XXXXXX", tag);
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

static kd_query *parse(const char *json)
{
    kd_query *q = NULL;
    char err[256];
    if (kd_query_parse(json, strlen(json), &q, err, sizeof err))
        fprintf(stderr, "query %s: %s\n", json, err);
    return q;
}

/* Rows as text "key=value\n…" in result order (NULL on error). */
static char *rows_text(const kd_result *r)
{
    size_t len = 1;
    for (size_t i = 0; i < r->n_rows; i++)
        len += strlen(r->rows[i].key) + r->rows[i].value_len + 2;
    char *out = malloc(len), *p = out;
    *p = '\0';
    for (size_t i = 0; i < r->n_rows; i++)
        p += sprintf(p, "%s=%s\n", r->rows[i].key, r->rows[i].value ? r->rows[i].value : "-");
    return out;
}

static char *view_text(kd_db *db, const char *name)
{
    kd_result *r = NULL;
    if (kd_view_query(db, name, 0, 0, &r)) {
        fprintf(stderr, "view %s: %s\n", name, kd_errmsg(db));
        return NULL;
    }
    char *t = rows_text(r);
    kd_result_free(r);
    return t;
}

static char *query_text(kd_db *db, const char *ns, const char *json)
{
    kd_query *q = parse(json);
    kd_result *r = NULL;
    if (!q || kd_query_run(db, ns, q, &r)) {
        kd_query_free(q);
        return NULL;
    }
    char *t = rows_text(r);
    kd_result_free(r);
    kd_query_free(q);
    return t;
}

static const char *VQ = "{\"filter\":\"status = \\\"active\\\" and age > 20\",\"sort\":[\"age:desc\"],"
                        "\"select\":[\"name\",\"age\"]}";

static void test_definitions_and_errors(void)
{
    char dir[256];
    kd_db *db = open_fresh("defs", dir);
    CHECK(db);
    kd_query *q = parse(VQ);
    CHECK(q);
    CHECK_RC(kd_view_create(db, "adults", "users", q, "active adults", 1), KD_OK);
    CHECK_RC(kd_view_create(db, "adults", "users", q, NULL, 1), KD_EEXISTS);
    CHECK_RC(kd_view_create(db, "", "users", q, NULL, 1), KD_EINVALID);
    CHECK_RC(kd_view_create(db, "x", "_kd.views", q, NULL, 1), KD_ERESERVED);
    kd_query *agg = parse("{\"aggregate\":[\"count\"]}");
    CHECK(agg);
    CHECK_RC(kd_view_create(db, "agg", "users", agg, NULL, 1), KD_EINVALID);
    kd_query_free(agg);
    kd_result *r;
    CHECK_RC(kd_view_query(db, "nope", 0, 0, &r), KD_ENOTFOUND);
    CHECK_RC(kd_view_refresh(db, "nope"), KD_ENOTFOUND);
    CHECK_RC(kd_view_delete(db, "nope"), KD_ENOTFOUND);
    CHECK_RC(kd_view_create(db, "manual", "users", q, "", 0), KD_OK);
    kd_query_free(q);
    kd_view_info *l;
    size_t n;
    CHECK_RC(kd_view_list(db, &l, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(l[0].name, "adults");
    CHECK_EQ_STR(l[0].description, "active adults");
    CHECK_EQ_INT(l[0].auto_refresh, 1);
    CHECK_EQ_STR(l[1].name, "manual");
    CHECK_EQ_INT(l[1].auto_refresh, 0);
    /* Creation time is the wall clock, even on an empty database. */
    int64_t now = kd_now();
    CHECK(l[0].created > now - INT64_C(60000000000) && l[0].created <= now);
    kd_view_list_free(l, n);
    CHECK_RC(kd_view_delete(db, "manual"), KD_OK);
    CHECK_RC(kd_view_delete(db, "manual"), KD_ENOTFOUND);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    kd_close(db);
    db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_view_list(db, &l, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    kd_view_list_free(l, n);
    kd_close(db);
    rm_rf(dir);
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void random_writes(kd_db *db, int count)
{
    static const char *status[] = {"active", "idle", "gone"};
    for (int i = 0; i < count; i++) {
        char key[16], doc[128];
        snprintf(key, sizeof key, "u%02u", rnd(60));
        if (rnd(7) == 0) {
            kd_delete(db, "users", key, NULL);
            continue;
        }
        if (rnd(3) == 0) {
            kd_write w[2];
            char d2[128];
            snprintf(doc, sizeof doc, "{\"age\":%u,\"name\":\"%s\",\"status\":\"%s\"}", rnd(40), key, status[rnd(3)]);
            snprintf(d2, sizeof d2, "{\"age\":%u,\"name\":\"%s\",\"status\":\"%s\"}", rnd(40), key, status[rnd(3)]);
            w[0] = (kd_write){"users", key, doc, strlen(doc), NULL};
            w[1] = (kd_write){"users", key, d2, strlen(d2), NULL};
            kd_put_batch(db, w, 2, NULL);
            continue;
        }
        snprintf(doc, sizeof doc, "{\"age\":%u,\"name\":\"%s\",\"status\":\"%s\"}", rnd(40), key, status[rnd(3)]);
        kd_put(db, "users", key, doc, strlen(doc), NULL);
    }
    kd_put(db, "other", "x", "{\"status\":\"active\",\"age\":99}", 28, NULL);
}

static void test_incremental_equals_full(void)
{
    char dir[256];
    kd_db *db = open_fresh("prop", dir);
    CHECK(db);
    random_writes(db, 100);
    kd_query *q = parse(VQ);
    CHECK(q);
    CHECK_RC(kd_view_create(db, "auto", "users", q, NULL, 1), KD_OK);
    CHECK_RC(kd_view_create(db, "manual", "users", q, NULL, 0), KD_OK);
    kd_query_free(q);
    char *frozen = view_text(db, "manual");
    CHECK(frozen);
    for (int round = 0; round < 12; round++) {
        random_writes(db, 80);
        char *a = view_text(db, "auto"), *b = query_text(db, "users", VQ), *m = view_text(db, "manual");
        int ok = a && b && m && !strcmp(a, b) && !strcmp(m, frozen);
        if (!ok)
            fprintf(stderr, "round %d\nview:\n%s\nquery:\n%s\nmanual:\n%s\nfrozen:\n%s\n", round, a, b, m, frozen);
        free(a);
        free(m);
        if (round == 5) {
            /* Refresh the manual view: it now shows the current result. */
            CHECK_RC(kd_view_refresh(db, "manual"), KD_OK);
            free(frozen);
            frozen = view_text(db, "manual");
            CHECK(frozen && !strcmp(frozen, b));
        }
        if (round == 8) {
            kd_close(db);
            db = open_db(dir);
            CHECK(db);
            char *again = view_text(db, "manual");
            CHECK(again && !strcmp(again, frozen));
            free(again);
        }
        free(b);
        CHECK(ok);
    }
    /* Paging inside the view. */
    kd_result *r;
    CHECK_RC(kd_view_query(db, "auto", 1, 2, &r), KD_OK);
    char *all = view_text(db, "auto");
    char *page = rows_text(r);
    CHECK(r->n_rows <= 2);
    /* The page is rows 1..2 of the whole view. */
    const char *p = strchr(all, '\n');
    CHECK(r->n_rows == 0 || (p && !strncmp(p + 1, page, strlen(page))));
    free(all);
    free(page);
    kd_result_free(r);
    free(frozen);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    kd_close(db);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_definitions_and_errors);
    RUN(test_incremental_equals_full);
    return HARNESS_DONE();
}
