/*
 * test_concurrency.c — many threads on one handle: N writers x M writes to
 * one key give exactly N*M versions in one unbroken chain (for each sync
 * mode); readers running beside writers never see half a batch and always
 * get a value that was written. Run under ThreadSanitizer by `make tsan`.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "korudelta.h"

enum { WRITERS = 8, WRITES = 200 };

static char dir[256];
static kd_db *db;
static int stop_readers;
static int reader_errors;

static void fresh(kd_sync mode)
{
    snprintf(dir, sizeof dir, "/tmp/kd_test_conc_XXXXXX");
    if (!mkdtemp(dir))
        abort();
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, mode, 5);
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err)) {
        fprintf(stderr, "open: %s\n", err);
        abort();
    }
    kd_options_free(o);
}

static void cleanup(void)
{
    kd_close(db);
    db = NULL;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
}

static void *writer(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < WRITES; i++) {
        char v[64];
        int n = snprintf(v, sizeof v, "{\"w\":%ld,\"i\":%d}", id, i);
        if (kd_put(db, "c", "hot", v, (size_t)n, NULL) != KD_OK) {
            fprintf(stderr, "put failed: %s\n", kd_errmsg(db));
            return (void *)1;
        }
    }
    return NULL;
}

static void check_one_chain(kd_sync mode)
{
    fresh(mode);
    pthread_t t[WRITERS];
    for (long i = 0; i < WRITERS; i++)
        pthread_create(&t[i], NULL, writer, (void *)i);
    int failed = 0;
    for (int i = 0; i < WRITERS; i++) {
        void *r;
        pthread_join(t[i], &r);
        failed |= r != NULL;
    }
    CHECK(!failed);
    kd_version *h;
    size_t n;
    CHECK_RC(kd_history(db, "c", "hot", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, WRITERS * WRITES);
    CHECK_EQ_STR(h[0].previous_write_id, "");
    int chain_ok = 1;
    for (size_t i = 1; i < n; i++)
        if (strcmp(h[i].previous_write_id, h[i - 1].write_id) || h[i].timestamp <= h[i - 1].timestamp)
            chain_ok = 0;
    kd_free(h);
    CHECK(chain_ok);
    /* Each writer's values all arrived: count distinct version ids = N*M. */
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.unique_values, WRITERS * WRITES);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    cleanup();
    /* Reopen is not needed here: test_store covers replay. */
}

static void test_chain_sync_none(void)
{
    check_one_chain(KD_SYNC_NONE);
}

static void test_chain_sync_always(void)
{
    check_one_chain(KD_SYNC_ALWAYS);
}

static void test_chain_sync_interval(void)
{
    check_one_chain(KD_SYNC_INTERVAL);
}

/* Writers put batches {x: i, y: i} (and i in a key of their own); readers
 * pick a published instant T and read both keys as of T: they must come
 * from the same batch. A writer reads its own key back at once: a write is
 * readable when kd_put_batch returns, also when another writer's fsync
 * covered it (that sync must publish before the writer can return). */
static void *batch_writer(void *arg)
{
    long id = (long)arg;
    char own[16];
    snprintf(own, sizeof own, "w%ld", id);
    for (int i = 0; i < WRITES; i++) {
        char v[64];
        int n = snprintf(v, sizeof v, "%ld", id * 100000 + i);
        kd_write w[3] = {{"pair", "x", v, (size_t)n, NULL}, {"pair", "y", v, (size_t)n, NULL},
                         {"own", own, v, (size_t)n, NULL}};
        if (kd_put_batch(db, w, 3, NULL) != KD_OK)
            return (void *)1;
        char *back = NULL;
        int rc = kd_get(db, "own", own, &back, NULL, NULL);
        int same = rc == KD_OK && strcmp(back, v) == 0;
        if (!same)
            fprintf(stderr, "writer %ld: its write %s read back as %s (rc %d)\n", id, v, back ? back : "-", rc);
        kd_free(back);
        if (!same)
            return (void *)1;
    }
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop_readers, __ATOMIC_RELAXED)) {
        kd_stats st;
        if (kd_stats_get(db, &st) != KD_OK) {
            __atomic_add_fetch(&reader_errors, 1, __ATOMIC_RELAXED);
            continue;
        }
        char *x = NULL, *y = NULL;
        int rx = kd_get_at(db, "pair", "x", st.last_timestamp, &x, NULL, NULL);
        int ry = kd_get_at(db, "pair", "y", st.last_timestamp, &y, NULL, NULL);
        if (rx == KD_OK && ry == KD_OK) {
            if (strcmp(x, y) != 0) {
                fprintf(stderr, "half a batch seen: x=%s y=%s\n", x, y);
                __atomic_add_fetch(&reader_errors, 1, __ATOMIC_RELAXED);
            }
        } else if (!((rx == KD_ENOTFOUND || rx == KD_ENOVERSION) && (ry == KD_ENOTFOUND || ry == KD_ENOVERSION))) {
            /* Nothing at T is fine for both (T may predate the first batch,
             * which may become visible between the two calls). */
            fprintf(stderr, "reader: x rc %d, y rc %d\n", rx, ry);
            __atomic_add_fetch(&reader_errors, 1, __ATOMIC_RELAXED);
        }
        kd_free(x);
        kd_free(y);
        /* A plain get must always succeed once anything was written. */
        char *z = NULL;
        int rz = kd_get(db, "pair", "x", &z, NULL, NULL);
        if (rz != KD_OK && rz != KD_ENOTFOUND)
            __atomic_add_fetch(&reader_errors, 1, __ATOMIC_RELAXED);
        kd_free(z);
    }
    return NULL;
}

static void check_readers_writers(kd_sync mode)
{
    fresh(mode);
    __atomic_store_n(&stop_readers, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&reader_errors, 0, __ATOMIC_RELAXED);
    pthread_t r[3], w[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&r[i], NULL, reader, NULL);
    for (long i = 0; i < 3; i++)
        pthread_create(&w[i], NULL, batch_writer, (void *)i);
    int failed = 0;
    for (int i = 0; i < 3; i++) {
        void *res;
        pthread_join(w[i], &res);
        failed |= res != NULL;
    }
    __atomic_store_n(&stop_readers, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++)
        pthread_join(r[i], NULL);
    CHECK(!failed);
    CHECK_EQ_INT(__atomic_load_n(&reader_errors, __ATOMIC_RELAXED), 0);
    kd_version *h;
    size_t n;
    CHECK_RC(kd_history(db, "pair", "x", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    kd_free(h);
    CHECK_EQ_INT(n, 3 * WRITES);
    cleanup();
}

static void test_readers_writers_none(void)
{
    check_readers_writers(KD_SYNC_NONE);
}

static void test_readers_writers_always(void)
{
    check_readers_writers(KD_SYNC_ALWAYS);
}

int main(void)
{
    RUN(test_chain_sync_none);
    RUN(test_chain_sync_always);
    RUN(test_chain_sync_interval);
    RUN(test_readers_writers_none);
    RUN(test_readers_writers_always);
    return HARNESS_DONE();
}
