/*
 * test_defer.c — deferred durability (kd_defer_begin, kd_defer_end,
 * kd_sync_ticket): under sync=always a deferred write returns before its
 * fsync, stays invisible until its ticket is synced, and one fsync covers
 * every ticket up to it; elsewhere nothing is deferred.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "korudelta.h"

static char dir[256];

static void fresh_dir(void)
{
    harness_tmpdir("defer", "db", dir);
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", d);
}

static kd_db *open_db(kd_sync mode)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, mode, 50);
    kd_options_set_busy_timeout(o, 0);
    kd_db *db = NULL;
    char err[512];
    int rc = kd_open(dir, o, &db, err, sizeof err);
    kd_options_free(o);
    if (rc)
        fprintf(stderr, "kd_open: %s\n", err);
    return db;
}

static uint64_t syncs(kd_db *db)
{
    kd_stats st;
    return kd_stats_get(db, &st) == KD_OK ? st.log_syncs : UINT64_MAX;
}

static void test_deferred_write_waits_for_its_ticket(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    uint64_t s0 = syncs(db);

    kd_defer_begin(db);
    kd_version v1, v2;
    CHECK_RC(kd_put(db, "ns", "a", "{\"n\":1}", 7, &v1), KD_OK);
    CHECK_RC(kd_put(db, "ns", "b", "[1, 2]", 6, &v2), KD_OK);
    uint64_t t = kd_defer_end(db);
    CHECK(t > 0);
    CHECK(v1.write_id[0] && v2.write_id[0]);
    /* logged and applied, but not durable: no fsync yet, nothing visible */
    CHECK_EQ_INT(syncs(db), s0);
    CHECK_RC(kd_get(db, "ns", "a", NULL, NULL, NULL), KD_ENOTFOUND);
    CHECK_RC(kd_get(db, "ns", "b", NULL, NULL, NULL), KD_ENOTFOUND);

    CHECK_RC(kd_sync_ticket(db, t), KD_OK);
    uint64_t s1 = syncs(db);
    CHECK(s1 > s0);
    char *json = NULL;
    size_t len = 0;
    kd_version got;
    CHECK_RC(kd_get(db, "ns", "a", &json, &len, &got), KD_OK);
    CHECK_EQ_STR(json, "{\"n\":1}");
    CHECK_EQ_STR(got.write_id, v1.write_id);
    kd_free(json);
    CHECK_RC(kd_get(db, "ns", "b", &json, &len, NULL), KD_OK);
    CHECK_EQ_STR(json, "[1,2]");
    kd_free(json);

    /* a ticket already durable costs no fsync; nor does ticket 0 */
    CHECK_RC(kd_sync_ticket(db, t), KD_OK);
    CHECK_RC(kd_sync_ticket(db, 0), KD_OK);
    CHECK_EQ_INT(syncs(db), s1);

    /* a later ticket covers an earlier one: one fsync for both */
    kd_defer_begin(db);
    CHECK_RC(kd_put(db, "ns", "c", "3", 1, NULL), KD_OK);
    uint64_t t1 = kd_defer_end(db);
    kd_defer_begin(db);
    CHECK_RC(kd_delete(db, "ns", "a", NULL), KD_OK);
    uint64_t t2 = kd_defer_end(db);
    CHECK(t1 > t && t2 > t1);
    CHECK_RC(kd_get(db, "ns", "a", NULL, NULL, NULL), KD_OK); /* the delete is not visible yet */
    CHECK_RC(kd_sync_ticket(db, t2), KD_OK);
    CHECK_EQ_INT(syncs(db), s1 + 1);
    CHECK_RC(kd_sync_ticket(db, t1), KD_OK);
    CHECK_EQ_INT(syncs(db), s1 + 1);
    CHECK_RC(kd_get(db, "ns", "c", NULL, NULL, NULL), KD_OK);
    CHECK_RC(kd_get(db, "ns", "a", NULL, NULL, NULL), KD_EDELETED);

    /* durable: still there after reopening */
    kd_close(db);
    db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    CHECK_RC(kd_get(db, "ns", "b", NULL, NULL, NULL), KD_OK);
    CHECK_RC(kd_get(db, "ns", "c", NULL, NULL, NULL), KD_OK);
    kd_close(db);
    rm_rf(dir);
}

static void test_nothing_deferred(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    /* a failed write leaves no ticket and no trace */
    kd_defer_begin(db);
    CHECK_RC(kd_put(db, "ns", "a", "{bad", 4, NULL), KD_EINVALID);
    CHECK_RC(kd_put_if(db, "ns", "a", "1", 1, "00", NULL), KD_EINVALID);
    CHECK_EQ_INT(kd_defer_end(db), 0);
    /* no window open: an ordinary durable write, visible at once */
    uint64_t s0 = syncs(db);
    CHECK_RC(kd_put(db, "ns", "a", "1", 1, NULL), KD_OK);
    CHECK(syncs(db) > s0);
    CHECK_RC(kd_get(db, "ns", "a", NULL, NULL, NULL), KD_OK);
    CHECK_EQ_INT(kd_defer_end(db), 0); /* the window is closed */
    /* a window on one database does not defer another's writes */
    char other[256];
    snprintf(other, sizeof other, "%s", dir);
    kd_db *db2 = NULL;
    fresh_dir();
    db2 = open_db(KD_SYNC_ALWAYS);
    CHECK(db2);
    kd_defer_begin(db2);
    CHECK_RC(kd_put(db, "ns", "b", "2", 1, NULL), KD_OK);
    CHECK_RC(kd_get(db, "ns", "b", NULL, NULL, NULL), KD_OK);
    CHECK_EQ_INT(kd_defer_end(db2), 0);
    /* an end for another database than the window's gives no ticket */
    kd_defer_begin(db2);
    CHECK_RC(kd_put(db2, "ns", "x", "1", 1, NULL), KD_OK);
    CHECK_EQ_INT(kd_defer_end(db), 0);
    kd_close(db2); /* closing syncs what was logged */
    rm_rf(dir);
    /* NULL handles */
    kd_defer_begin(NULL);
    CHECK_EQ_INT(kd_defer_end(NULL), 0);
    CHECK_RC(kd_sync_ticket(NULL, 1), KD_EMISUSE);
    kd_close(db);
    rm_rf(other);
}

static void test_not_sync_always(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_INTERVAL);
    CHECK(db);
    kd_defer_begin(db);
    CHECK_RC(kd_put(db, "ns", "a", "1", 1, NULL), KD_OK);
    CHECK_EQ_INT(kd_defer_end(db), 0); /* nothing waits under sync=interval */
    CHECK_RC(kd_get(db, "ns", "a", NULL, NULL, NULL), KD_OK);
    kd_close(db);
    rm_rf(dir);
}

static void test_workspace_handle(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    CHECK_RC(kd_workspace_create(db, "w1"), KD_OK);
    kd_db *ws = NULL;
    CHECK_RC(kd_workspace_open(db, "w1", &ws), KD_OK);
    kd_defer_begin(ws);
    CHECK_RC(kd_put(ws, "ns", "k", "\"v\"", 3, NULL), KD_OK);
    uint64_t t = kd_defer_end(ws);
    CHECK(t > 0);
    CHECK_RC(kd_get(ws, "ns", "k", NULL, NULL, NULL), KD_ENOTFOUND);
    CHECK_RC(kd_sync_ticket(ws, t), KD_OK);
    CHECK_RC(kd_get(ws, "ns", "k", NULL, NULL, NULL), KD_OK);
    CHECK_RC(kd_get(db, "ns", "k", NULL, NULL, NULL), KD_ENOTFOUND); /* the default workspace has no such key */
    /* a window opened on the core covers writes through a workspace handle */
    kd_defer_begin(db);
    CHECK_RC(kd_put(ws, "ns", "k2", "1", 1, NULL), KD_OK);
    t = kd_defer_end(db);
    CHECK(t > 0);
    CHECK_RC(kd_sync_ticket(db, t), KD_OK);
    CHECK_RC(kd_get(ws, "ns", "k2", NULL, NULL, NULL), KD_OK);
    kd_close(ws);
    kd_close(db);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_deferred_write_waits_for_its_ticket);
    RUN(test_nothing_deferred);
    RUN(test_not_sync_always);
    RUN(test_workspace_handle);
    return HARNESS_DONE();
}
