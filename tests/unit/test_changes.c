/*
 * test_changes.c — kd_changes (the log as a stream) and kd_import_versions
 * (replaying it elsewhere): the round trip keeps every id, timestamp and
 * root; forged or out-of-order imports are refused whole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"
#include "store/format.h"

typedef struct rec {
    char ns[64], key[64];
    char *value; /* NULL for a tombstone */
    kd_version v;
    char node[33];
} rec;

typedef struct recs {
    rec *r;
    size_t n, cap;
    size_t stop_after; /* 0 = never */
} recs;

static int collect(void *ctx, const kd_change *c)
{
    recs *l = ctx;
    if (l->stop_after && l->n == l->stop_after)
        return 42;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->r = realloc(l->r, l->cap * sizeof *l->r);
    }
    rec *r = &l->r[l->n++];
    snprintf(r->ns, sizeof r->ns, "%s", c->ns);
    snprintf(r->key, sizeof r->key, "%s", c->key);
    r->value = c->value ? strdup(c->value) : NULL;
    if (c->value && strlen(c->value) != c->value_len)
        abort();
    r->v = c->version;
    memcpy(r->node, c->node_id, 33);
    return 0;
}

static void free_recs(recs *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->r[i].value);
    free(l->r);
    memset(l, 0, sizeof *l);
}

static kd_db *open_fresh(const char *tag, char *dir)
{
    snprintf(dir, 256, "/tmp/kd_test_changes_%s_XXXXXX", tag);
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

/* A small history: puts, updates back to old values, deletes, a batch that
 * writes the same new value twice, two namespaces. */
static int fill(kd_db *db)
{
    char v[64], k[16];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "k%d", i % 37);
        int n = snprintf(v, sizeof v, "{\"n\":%d}", i % 50);
        if (kd_put(db, i % 3 ? "a" : "b", k, v, (size_t)n, NULL))
            return -1;
        if (i % 41 == 40 && kd_delete(db, i % 3 ? "a" : "b", k, NULL))
            return -1;
    }
    kd_write w[4] = {{"a", "x", "\"same\"", 6, NULL}, {"a", "y", "\"same\"", 6, NULL}, {"b", "x", "[1,2]", 5, NULL},
                     {"a", "x", NULL, 0, NULL}};
    return kd_put_batch(db, w, 4, NULL);
}

static void test_changes_stream(void)
{
    char dir[256];
    kd_db *db = open_fresh("a", dir);
    CHECK(db);
    CHECK_EQ_INT(fill(db), KD_OK);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    recs all = {0};
    CHECK_RC(kd_changes(db, NULL, KD_TIME_MIN, collect, &all), KD_OK);
    CHECK_EQ_INT(all.n, st.versions);
    for (size_t i = 1; i < all.n; i++)
        CHECK(all.r[i].v.timestamp > all.r[i - 1].v.timestamp);
    /* Every change agrees with the key's history and its stored value. */
    for (size_t i = 0; i < all.n; i++) {
        rec *r = &all.r[i];
        kd_version *h;
        size_t n;
        CHECK_RC(kd_history(db, r->ns, r->key, r->v.timestamp, r->v.timestamp, 0, 0, &h, &n), KD_OK);
        CHECK_EQ_INT(n, 1);
        CHECK_EQ_STR(h[0].write_id, r->v.write_id);
        CHECK_EQ_STR(h[0].previous_write_id, r->v.previous_write_id);
        CHECK_EQ_STR(h[0].version_id, r->v.version_id);
        CHECK_EQ_INT(h[0].deleted, r->value == NULL);
        kd_free(h);
        if (r->value) {
            char *val;
            CHECK_RC(kd_get_value(db, r->v.version_id, &val, NULL), KD_OK);
            CHECK_EQ_STR(val, r->value);
            kd_free(val);
        }
    }
    /* Filters: namespace, since; early stop returns the callback's value. */
    recs only_b = {0}, later = {0}, three = {.stop_after = 3};
    CHECK_RC(kd_changes(db, "b", KD_TIME_MIN, collect, &only_b), KD_OK);
    size_t nb = 0;
    for (size_t i = 0; i < all.n; i++)
        nb += !strcmp(all.r[i].ns, "b");
    CHECK_EQ_INT(only_b.n, nb);
    CHECK_RC(kd_changes(db, NULL, all.r[99].v.timestamp, collect, &later), KD_OK);
    CHECK_EQ_INT(later.n, all.n - 100);
    CHECK_EQ_STR(later.r[0].v.write_id, all.r[100].v.write_id);
    CHECK_EQ_INT(kd_changes(db, NULL, KD_TIME_MIN, collect, &three), 42);
    CHECK_EQ_INT(three.n, 3);
    free_recs(&only_b);
    free_recs(&later);
    free_recs(&three);
    free_recs(&all);
    kd_close(db);
    rm_rf(dir);
}

static void to_imports(const recs *l, size_t from, size_t n, kd_import *out)
{
    for (size_t i = 0; i < n; i++) {
        const rec *r = &l->r[from + i];
        out[i] = (kd_import){r->ns, r->key, r->value, r->value ? strlen(r->value) : 0, r->v.timestamp, r->node,
                             r->v.previous_write_id, r->v.write_id};
    }
}

static void test_round_trip(void)
{
    char d1[256], d2[256];
    kd_db *src = open_fresh("src", d1);
    kd_db *dst = open_fresh("dst", d2);
    CHECK(src && dst);
    CHECK_EQ_INT(fill(src), KD_OK);
    recs all = {0};
    CHECK_RC(kd_changes(src, NULL, KD_TIME_MIN, collect, &all), KD_OK);
    kd_import *imp = calloc(all.n, sizeof *imp);
    to_imports(&all, 0, all.n, imp);
    /* Batches of varying size: grouping must not matter. */
    size_t done = 0, step = 1;
    while (done < all.n) {
        size_t n = step < all.n - done ? step : all.n - done;
        CHECK_RC(kd_import_versions(dst, imp + done, n), KD_OK);
        done += n;
        step = step * 3 % 97 + 1;
    }
    kd_root *r1, *r2;
    size_t n1, n2;
    CHECK_RC(kd_roots(src, &r1, &n1), KD_OK);
    CHECK_RC(kd_roots(dst, &r2, &n2), KD_OK);
    CHECK_EQ_INT(n1, n2);
    for (size_t i = 0; i < n1; i++)
        CHECK_EQ_STR(r1[i].hex, r2[i].hex);
    kd_free(r1);
    kd_free(r2);
    recs again = {0};
    CHECK_RC(kd_changes(dst, NULL, KD_TIME_MIN, collect, &again), KD_OK);
    CHECK_EQ_INT(again.n, all.n);
    for (size_t i = 0; i < all.n; i++) {
        CHECK_EQ_STR(again.r[i].v.write_id, all.r[i].v.write_id);
        CHECK_EQ_INT(again.r[i].v.timestamp, all.r[i].v.timestamp);
        CHECK_EQ_STR(again.r[i].node, all.r[i].node);
    }
    kd_verify_report rep;
    CHECK_RC(kd_verify(dst, &rep), KD_OK);
    /* Importing the same versions again is refused (time does not move back). */
    CHECK_RC(kd_import_versions(dst, imp, 1), KD_EINVALID);
    /* Local writes after an import continue the chains. */
    kd_version v;
    CHECK_RC(kd_put(dst, "a", "k1", "true", 4, &v), KD_OK);
    kd_version cur;
    CHECK_RC(kd_get(src, "a", "k1", NULL, NULL, &cur), KD_OK);
    CHECK_EQ_STR(v.previous_write_id, cur.write_id);
    free(imp);
    free_recs(&again);
    free_recs(&all);
    kd_close(src);
    kd_close(dst);
    rm_rf(d1);
    rm_rf(d2);
}

static void test_forgeries_refused(void)
{
    char d1[256], d2[256];
    kd_db *src = open_fresh("src2", d1);
    kd_db *dst = open_fresh("dst2", d2);
    CHECK(src && dst);
    CHECK_RC(kd_put(src, "n", "k", "1", 1, NULL), KD_OK);
    CHECK_RC(kd_put(src, "n", "k", "2", 1, NULL), KD_OK);
    CHECK_RC(kd_put(src, "n", "j", "3", 1, NULL), KD_OK);
    recs all = {0};
    CHECK_RC(kd_changes(src, NULL, KD_TIME_MIN, collect, &all), KD_OK);
    CHECK_EQ_INT(all.n, 3);
    kd_import imp[3];
    to_imports(&all, 0, 3, imp);
    kd_stats st;

    kd_import bad[3];
    memcpy(bad, imp, sizeof bad);
    bad[1].json = "22"; /* value changed: the write_id no longer matches */
    bad[1].len = 2;
    CHECK_RC(kd_import_versions(dst, bad, 3), KD_EINVALID);
    CHECK(strstr(kd_errmsg(dst), "import 1") != NULL);
    memcpy(bad, imp, sizeof bad);
    bad[1].previous_write_id = ""; /* claims to be first */
    CHECK_RC(kd_import_versions(dst, bad, 3), KD_ECONFLICT);
    memcpy(bad, imp, sizeof bad);
    bad[2].timestamp = bad[1].timestamp; /* time does not move forward */
    CHECK_RC(kd_import_versions(dst, bad, 3), KD_EINVALID);
    memcpy(bad, imp, sizeof bad);
    bad[0].node_id = "nothex";
    CHECK_RC(kd_import_versions(dst, bad, 3), KD_EINVALID);
    memcpy(bad, imp, sizeof bad);
    bad[0].ns = "_kd.auth";
    CHECK_RC(kd_import_versions(dst, bad, 3), KD_ERESERVED);
    CHECK_RC(kd_stats_get(dst, &st), KD_OK);
    CHECK_EQ_INT(st.versions, 0); /* nothing of any refused batch */
    /* Skipping the first version breaks the chain. */
    CHECK_RC(kd_import_versions(dst, imp + 1, 2), KD_ECONFLICT);
    CHECK_RC(kd_import_versions(dst, imp, 3), KD_OK);
    CHECK_RC(kd_stats_get(dst, &st), KD_OK);
    CHECK_EQ_INT(st.versions, 3);
    free_recs(&all);
    kd_close(src);
    kd_close(dst);
    rm_rf(d1);
    rm_rf(d2);
}

/* Imports in the future are refused (every later write would be stamped
 * after them), beyond the clock's limit or not. A database whose clock
 * stands at the last timestamp it allows (one that imported such a
 * version before the refusal existed, simulated here): the next put takes
 * the limit, the one after is refused cleanly (no overflow to a negative
 * time), and the database still opens. */
static void test_timestamp_limit(void)
{
    char d1[256];
    kd_db *db = open_fresh("limit", d1);
    CHECK(db);
    kd__write_rec w;
    memset(&w, 0, sizeof w);
    w.ts = KD__TS_LIMIT - 1;
    memset(w.node, 0xab, 16);
    w.ws = "default";
    w.ws_len = 7;
    w.ns = "n";
    w.ns_len = 1;
    w.key = "k";
    w.key_len = 1;
    kd__sha256("1", 1, w.version_id);
    kd__write_id(&w, w.write_id);
    char node[33], wid[65];
    kd__hex_encode(w.node, 16, node);
    kd__hex_encode(w.write_id, 32, wid);
    kd_import far = {"n", "k", "1", 1, INT64_MAX, node, "", wid};
    CHECK_RC(kd_import_versions(db, &far, 1), KD_EINVALID);
    kd_import last = {"n", "k", "1", 1, KD__TS_LIMIT - 1, node, "", wid};
    CHECK_RC(kd_import_versions(db, &last, 1), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "is in the future (now is ") != NULL);
    CHECK_EQ_INT(kd_contains(db, "n", "k"), 0);
    db->last_ts = KD__TS_LIMIT - 1;
    CHECK_RC(kd_put(db, "n", "j", "2", 1, NULL), KD_OK); /* takes the limit itself */
    CHECK_RC(kd_put(db, "n", "j", "3", 1, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "limit") != NULL);
    kd_close(db);
    kd_options *o = kd_options_new();
    CHECK_RC(kd_open(d1, o, &db, NULL, 0), KD_OK);
    kd_options_free(o);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions, 1);
    kd_close(db);
    rm_rf(d1);
}

/* A failing name in a batch: the message keeps the reason. */
static void test_batch_name_message(void)
{
    char d1[256];
    kd_db *db = open_fresh("msg", d1);
    CHECK(db);
    kd_write w[3] = {{"n", "a", "1", 1, NULL}, {"n", "b", "1", 1, NULL}, {"", "c", "1", 1, NULL}};
    CHECK_RC(kd_put_batch(db, w, 3, NULL), KD_EINVALID);
    CHECK_EQ_STR(kd_errmsg(db), "batch write 2: namespace is empty");
    kd_close(db);
    rm_rf(d1);
}

/* A stream that starts late does not read the sealed segments that end
 * before it: once a walk has read a sealed segment whole, its last
 * timestamp is known, and later walks from past it skip the file. Shown by
 * damaging the first segment after a full walk: a stream from a later
 * point still works (and gives exactly the tail of the full stream),
 * while one from the start finds the damage. */
static void test_late_start_skips_sealed_segments(void)
{
    char d1[256];
    snprintf(d1, sizeof d1, "/tmp/kd_test_changes_skip_XXXXXX");
    if (!mkdtemp(d1))
        abort();
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_db *db = NULL;
    CHECK_RC(kd_open(d1, o, &db, NULL, 0), KD_OK);
    kd_options_free(o);
    CHECK(db);
    static char val[1100];
    for (int i = 0; i < 400; i++) {
        int n = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%01000d\"}", i, i);
        char key[16];
        snprintf(key, sizeof key, "k%d", i % 50);
        CHECK_RC(kd_put(db, "r", key, val, (size_t)n, NULL), KD_OK);
    }
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK(st.segments >= 5);

    /* a walk that stops early records nothing it did not read whole */
    recs part = {0};
    part.stop_after = 3;
    CHECK_RC(kd_changes(db, NULL, KD_TIME_MIN, collect, &part), 42);
    free_recs(&part);
    recs all = {0};
    CHECK_RC(kd_changes(db, NULL, KD_TIME_MIN, collect, &all), KD_OK);
    CHECK_EQ_INT(all.n, 400);

    /* damage the middle of the first segment */
    uint64_t *nos = NULL;
    size_t nn = 0;
    char err[256], name[32], path[512];
    CHECK_RC(kd__list_segments(d1, &nos, &nn, err, sizeof err), KD_OK);
    CHECK(nn >= 5);
    snprintf(path, sizeof path, "%s/%s", d1, kd__seg_name(nos[0], name));
    free(nos);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f) {
        CHECK(fseek(f, 30000, SEEK_SET) == 0);
        int ch = fgetc(f);
        CHECK(fseek(f, 30000, SEEK_SET) == 0);
        fputc(ch ^ 0x55, f);
        fclose(f);
    }

    /* from the 300th write on: the first segment is not read */
    recs tail = {0};
    int64_t since = all.r[299].v.timestamp;
    CHECK_RC(kd_changes(db, NULL, since, collect, &tail), KD_OK);
    CHECK_EQ_INT(tail.n, 100);
    for (size_t i = 0; i < tail.n && i + 300 < all.n; i++) {
        CHECK_EQ_STR(tail.r[i].v.write_id, all.r[i + 300].v.write_id);
        CHECK_EQ_STR(tail.r[i].key, all.r[i + 300].key);
        CHECK(tail.r[i].value && all.r[i + 300].value && strcmp(tail.r[i].value, all.r[i + 300].value) == 0);
    }
    free_recs(&tail);
    /* one namespace filter and a stop work the same from there */
    recs some = {0};
    some.stop_after = 5;
    CHECK_RC(kd_changes(db, "r", since, collect, &some), 42);
    CHECK_EQ_INT(some.n, 5);
    CHECK_EQ_STR(some.r[0].v.write_id, all.r[300].v.write_id);
    free_recs(&some);
    /* from the start: the damage is found */
    recs from0 = {0};
    CHECK_RC(kd_changes(db, NULL, KD_TIME_MIN, collect, &from0), KD_ECORRUPT);
    free_recs(&from0);
    free_recs(&all);
    kd_close(db);
    rm_rf(d1);
}

/* kd_changes leaves out writes whose value a compaction removed;
 * kd_changes_ex with KD_CHANGES_PRUNED gives them marked, value NULL. */
static void test_pruned_writes_on_request(void)
{
    char dir[256];
    kd_db *db = open_fresh("p", dir);
    CHECK(db != NULL);
    for (int i = 1; i <= 3; i++) {
        char v[32];
        int n = snprintf(v, sizeof v, "{\"v\":%d}", i);
        CHECK_RC(kd_put(db, "u", "a", v, (size_t)n, NULL), KD_OK);
    }
    CHECK_RC(kd_retention_set(db, "u", "{\"keep_last\":1}", 15), KD_OK);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK(rep.versions_pruned == 2);

    recs plain = {0}, all = {0};
    CHECK_RC(kd_changes(db, "u", KD_TIME_MIN, collect, &plain), KD_OK);
    CHECK_RC(kd_changes_ex(db, "u", KD_TIME_MIN, KD_CHANGES_PRUNED, collect, &all), KD_OK);
    CHECK(plain.n == 1 && plain.r[0].value && strcmp(plain.r[0].value, "{\"v\":3}") == 0);
    CHECK(all.n == 3);
    for (size_t i = 0; i < all.n && all.n == 3; i++) {
        CHECK_EQ_INT(all.r[i].v.pruned, i < 2 ? KD_PRUNED_RETENTION : 0);
        CHECK((all.r[i].value == NULL) == (i < 2));
        CHECK(!all.r[i].v.deleted && strlen(all.r[i].v.version_id) == 64);
    }
    if (all.n == 3 && plain.n == 1)
        CHECK_EQ_STR(all.r[2].v.write_id, plain.r[0].v.write_id);
    CHECK_RC(kd_changes_ex(db, "u", KD_TIME_MIN, 2, collect, &all), KD_EINVALID);
    free_recs(&plain);
    free_recs(&all);
    kd_close(db);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_changes_stream);
    RUN(test_round_trip);
    RUN(test_forgeries_refused);
    RUN(test_timestamp_limit);
    RUN(test_batch_name_message);
    RUN(test_late_start_skips_sealed_segments);
    RUN(test_pruned_writes_on_request);
    return HARNESS_DONE();
}
