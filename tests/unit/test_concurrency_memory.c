/*
 * test_concurrency_memory.c — moving cold version arrays out of RAM into
 * the checkpoint's mapping (kd__checkpoint_release): values and histories
 * read back identical before and after, also while readers and a writer
 * run during the moves (labelled `concurrency`, so TSan runs it); a key
 * written after the move copies its versions back; mappings no key uses
 * any more are unmapped; the upkeep thread does it when the index is over
 * its share of the budget.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"

enum { KEYS = 400, VERSIONS = 20 };

static void remove_dir(const char *dir)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static kd_db *open_db(const char *dir, uint32_t upkeep_ms, uint64_t budget)
{
    kd_options *o = kd_options_new();
    if (!o)
        abort();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_upkeep_interval(o, upkeep_ms);
    if (budget)
        kd_options_set_max_memory(o, budget);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err) != KD_OK) {
        fprintf(stderr, "open %s: %s\n", dir, err);
        abort();
    }
    kd_options_free(o);
    return db;
}

static void value_of(char *buf, size_t len, int key, int v)
{
    snprintf(buf, len, "{\"k\":%d,\"v\":%d}", key, v);
}

static void put_version(kd_db *db, const char *ns, int key, int v)
{
    char k[32], json[64];
    snprintf(k, sizeof k, "key%05d", key);
    value_of(json, sizeof json, key, v);
    if (kd_put(db, ns, k, json, strlen(json), NULL) != KD_OK) {
        fprintf(stderr, "put: %s\n", kd_errmsg(db));
        abort();
    }
}

/* The history of ns/key is exactly versions 0..n-1, each value readable
 * at its version and the newest the current value. 1 when it is. */
static int history_ok(kd_db *db, const char *ns, int key, int n)
{
    char k[32], want[64];
    snprintf(k, sizeof k, "key%05d", key);
    kd_version *h = NULL;
    size_t nh = 0;
    if (kd_history(db, ns, k, INT64_MIN, INT64_MAX, 0, 0, &h, &nh) != KD_OK)
        return 0;
    int ok = nh == (size_t)n;
    for (size_t i = 0; ok && i < nh; i++) {
        char *v = NULL;
        ok = kd_get_value(db, h[i].version_id, &v, NULL) == KD_OK;
        value_of(want, sizeof want, key, (int)i);
        ok = ok && strcmp(v, want) == 0 && (i == 0 || h[i].timestamp > h[i - 1].timestamp) &&
             (i == 0 ? h[i].previous_write_id[0] == '\0' : strcmp(h[i].previous_write_id, h[i - 1].write_id) == 0);
        kd_free(v);
        if (ok && i == nh / 2) { /* as of that version's time */
            char *at = NULL;
            ok = kd_get_at(db, ns, k, h[i].timestamp, &at, NULL, NULL) == KD_OK && strcmp(at, want) == 0;
            kd_free(at);
        }
    }
    kd_free(h);
    if (!ok)
        return 0;
    char *cur = NULL;
    value_of(want, sizeof want, key, n - 1);
    ok = kd_get(db, ns, k, &cur, NULL, NULL) == KD_OK && strcmp(cur, want) == 0;
    kd_free(cur);
    return ok;
}

static size_t n_maps(kd_db *db)
{
    pthread_rwlock_rdlock(&db->ix_lock);
    size_t n = db->ix.n_maps;
    pthread_rwlock_unlock(&db->ix_lock);
    return n;
}

static void test_release_reads_back(void)
{
    char dir[256], what[600];
    harness_tmpdir("cmem", "back", dir);
    kd_db *db = open_db(dir, 0, 0);
    for (int v = 0; v < VERSIONS; v++)
        for (int k = 0; k < KEYS; k++)
            put_version(db, "h", k, v);
    kd_stats before, after;
    CHECK_RC(kd_stats_get(db, &before), KD_OK);
    CHECK_EQ_INT(before.index_mapped_bytes, 0);
    /* no checkpoint yet: nothing to move into */
    CHECK_RC(kd__checkpoint_release(db, 0, what, sizeof what), KD_OK);
    CHECK(strstr(what, "no checkpoint") != NULL);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    CHECK_RC(kd__checkpoint_release(db, 0, what, sizeof what), KD_OK);
    fprintf(stderr, "  %s\n", what);
    CHECK_RC(kd_stats_get(db, &after), KD_OK);
    CHECK_EQ_INT(after.index_mapped_bytes, (uint64_t)KEYS * VERSIONS * sizeof(kd__ver));
    CHECK(after.index_bytes + (uint64_t)KEYS * VERSIONS * sizeof(kd__ver) <= before.index_bytes);
    CHECK_EQ_INT(after.versions, before.versions);
    CHECK_EQ_INT(n_maps(db), 1);
    for (int k = 0; k < KEYS; k++)
        CHECK(history_ok(db, "h", k, VERSIONS));

    /* a key written since copies its versions back into RAM */
    for (int k = 0; k < KEYS; k += 4)
        put_version(db, "h", k, VERSIONS);
    CHECK_RC(kd_stats_get(db, &after), KD_OK);
    CHECK_EQ_INT(after.index_mapped_bytes, (uint64_t)(KEYS - KEYS / 4) * VERSIONS * sizeof(kd__ver));
    for (int k = 0; k < KEYS; k++)
        CHECK(history_ok(db, "h", k, VERSIONS + (k % 4 == 0)));

    /* the age limit: keys written just before the checkpoint stay */
    CHECK_RC(kd_checkpoint(db), KD_OK);
    CHECK_RC(kd__checkpoint_release(db, INT64_C(3600) * 1000000000, what, sizeof what), KD_OK);
    CHECK(strncmp(what, "0 keys", 6) == 0);
    CHECK_EQ_INT(n_maps(db), 1); /* the new mapping served no key: unmapped again */

    /* all move to the newest checkpoint; the old mapping, unused, goes */
    CHECK_RC(kd__checkpoint_release(db, 0, what, sizeof what), KD_OK);
    fprintf(stderr, "  %s\n", what);
    CHECK_RC(kd_stats_get(db, &after), KD_OK);
    CHECK_EQ_INT(after.index_mapped_bytes, after.versions * sizeof(kd__ver));
    CHECK_EQ_INT(n_maps(db), 1);
    CHECK(strstr(what, "(1 unmapped)") != NULL);
    for (int k = 0; k < KEYS; k++)
        CHECK(history_ok(db, "h", k, VERSIONS + (k % 4 == 0)));
    CHECK_RC(kd_close(db), KD_OK);

    /* and after reopening (from that checkpoint) */
    db = open_db(dir, 0, 0);
    for (int k = 0; k < KEYS; k++)
        CHECK(history_ok(db, "h", k, VERSIONS + (k % 4 == 0)));
    CHECK_RC(kd_close(db), KD_OK);
    remove_dir(dir);
}

/* A checkpoint file that is not the one the database wrote is refused. */
static void test_release_refuses_other_file(void)
{
    char dir[256], what[600], path[300];
    harness_tmpdir("cmem", "other", dir);
    kd_db *db = open_db(dir, 0, 0);
    for (int k = 0; k < 50; k++)
        put_version(db, "h", k, 0);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    snprintf(path, sizeof path, "%s/index.ckpt", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f);
    fseek(f, 300, SEEK_SET);
    fputc('!', f); /* the body no longer checks */
    fclose(f);
    kd_stats before, after;
    CHECK_RC(kd_stats_get(db, &before), KD_OK);
    CHECK_RC(kd__checkpoint_release(db, 0, what, sizeof what), KD_EIO);
    CHECK(strstr(what, "checksum") != NULL);
    CHECK_RC(kd_stats_get(db, &after), KD_OK);
    CHECK_EQ_INT(after.index_bytes, before.index_bytes);
    CHECK_EQ_INT(after.index_mapped_bytes, 0);
    CHECK(unlink(path) == 0);
    CHECK_RC(kd__checkpoint_release(db, 0, what, sizeof what), KD_EIO);
    CHECK_EQ_INT(n_maps(db), 0);
    for (int k = 0; k < 50; k++)
        CHECK(history_ok(db, "h", k, 1));
    CHECK_RC(kd_close(db), KD_OK);
    remove_dir(dir);
}

/* ------------------------------------------------------------------------
 * Under concurrent readers and a writer
 * ---------------------------------------------------------------------- */

typedef struct shared {
    kd_db *db;
    int stop;     /* atomic */
    int failures; /* atomic */
    int written;  /* atomic: versions the writer added to each hot key */
    long reads;   /* atomic */
} shared;

static void *reader(void *arg)
{
    shared *s = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        int k = (int)(rand_r(&seed) % KEYS);
        if (k % 2 == 0) { /* cold keys: the whole history */
            if (!history_ok(s->db, "c", k, VERSIONS))
                __atomic_fetch_add(&s->failures, 1, __ATOMIC_RELAXED);
        } else { /* hot keys: at least what the writer finished */
            int done = __atomic_load_n(&s->written, __ATOMIC_ACQUIRE);
            char key[32];
            snprintf(key, sizeof key, "key%05d", k);
            kd_version *h = NULL;
            size_t nh = 0;
            if (kd_history(s->db, "c", key, INT64_MIN, INT64_MAX, 0, 0, &h, &nh) != KD_OK ||
                nh < (size_t)(VERSIONS + done))
                __atomic_fetch_add(&s->failures, 1, __ATOMIC_RELAXED);
            for (size_t i = 1; i < nh; i++)
                if (strcmp(h[i].previous_write_id, h[i - 1].write_id) != 0)
                    __atomic_fetch_add(&s->failures, 1, __ATOMIC_RELAXED);
            kd_free(h);
        }
        __atomic_fetch_add(&s->reads, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *writer(void *arg)
{
    shared *s = arg;
    for (int round = 0; !__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE) && round < 200; round++) {
        for (int k = 1; k < KEYS; k += 2)
            put_version(s->db, "c", k, VERSIONS + round);
        __atomic_store_n(&s->written, round + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void test_release_under_readers_and_writer(void)
{
    char dir[256], what[600];
    harness_tmpdir("cmem", "conc", dir);
    kd_db *db = open_db(dir, 0, 0);
    for (int v = 0; v < VERSIONS; v++)
        for (int k = 0; k < KEYS; k++)
            put_version(db, "c", k, v);
    shared s = {.db = db};
    pthread_t r[3], w;
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&r[i], NULL, reader, &s) == 0);
    CHECK(pthread_create(&w, NULL, writer, &s) == 0);
    int moved_rounds = 0;
    for (int i = 0; i < 6; i++) {
        CHECK_RC(kd_checkpoint(db), KD_OK);
        CHECK_RC(kd__checkpoint_release(db, 0, what, sizeof what), KD_OK);
        if (strncmp(what, "0 keys", 6) != 0)
            moved_rounds++;
        CHECK(n_maps(db) <= 2); /* the newest, and at most one older still in use */
        usleep(20000);
    }
    fprintf(stderr, "  last: %s\n", what);
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 3; i++)
        pthread_join(r[i], NULL);
    pthread_join(w, NULL);
    CHECK_EQ_INT(__atomic_load_n(&s.failures, __ATOMIC_RELAXED), 0);
    CHECK(s.reads > 0);
    CHECK(moved_rounds > 0);
    for (int k = 0; k < KEYS; k += 2)
        CHECK(history_ok(db, "c", k, VERSIONS));
    for (int k = 1; k < KEYS; k += 2)
        CHECK(history_ok(db, "c", k, VERSIONS + s.written));
    CHECK_RC(kd_close(db), KD_OK);
    remove_dir(dir);
}

/* The upkeep thread moves cold versions when the index is over half the
 * budget (8 MiB budget, ~200k versions of 44 bytes on the heap). */
static void test_upkeep_releases_over_budget(void)
{
    char dir[256];
    harness_tmpdir("cmem", "upkeep", dir);
    kd_db *db = open_db(dir, 50, 8u << 20);
    kd_write w[1000];
    char keys[1000][16];
    for (int i = 0; i < 1000; i++)
        snprintf(keys[i], sizeof keys[i], "k%04d", i);
    for (int round = 0; round < 120; round++) {
        for (int i = 0; i < 1000; i++)
            w[i] = (kd_write){.ns = "u", .key = keys[i], .json = "1", .len = 1};
        CHECK_RC(kd_put_batch(db, w, 1000, NULL), KD_OK);
    }
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    uint64_t before = st.index_bytes;
    CHECK(before > 4u << 20);
    /* the writes are older than KD__RELEASE_MIN_AGE_NS after a while; the
     * release then moves the keys in batches, so wait for all of them (a
     * partly done release was caught here under TSan) — up to 30 s */
    int done = 0;
    for (int i = 0; i < 600 && !done; i++) {
        usleep(50000);
        CHECK_RC(kd_stats_get(db, &st), KD_OK);
        done = st.index_mapped_bytes == st.versions * sizeof(kd__ver);
    }
    CHECK(done);
    kd_task_status *t = NULL;
    size_t nt = 0;
    CHECK_RC(kd_upkeep_status(db, &t, &nt), KD_OK);
    int found = 0;
    for (size_t i = 0; i < nt; i++)
        if (!strcmp(t[i].name, "index_release")) {
            found = t[i].runs > 0 && t[i].last_status == KD_OK;
            fprintf(stderr, "  upkeep index_release: %s\n", t[i].message);
        }
    free(t);
    CHECK(found);
    CHECK(st.index_bytes < before);
    CHECK_EQ_INT(st.index_mapped_bytes, st.versions * sizeof(kd__ver));
    fprintf(stderr, "  index %llu -> %llu bytes in RAM for %llu versions (%.1f -> %.1f bytes per version)\n",
            (unsigned long long)before, (unsigned long long)st.index_bytes, (unsigned long long)st.versions,
            (double)before / (double)st.versions, (double)st.index_bytes / (double)st.versions);
    CHECK_RC(kd_close(db), KD_OK);
    remove_dir(dir);
}

int main(void)
{
    RUN(test_release_reads_back);
    RUN(test_release_refuses_other_file);
    RUN(test_release_under_readers_and_writer);
    RUN(test_upkeep_releases_over_budget);
    return HARNESS_DONE();
}
