/*
 * test_checkpoint.c — index checkpoints: opening from a checkpoint plus the
 * log after it gives exactly the index a full replay gives; a damaged,
 * stale or foreign checkpoint is ignored, never trusted; checkpoints taken
 * while writers run are consistent; the upkeep thread writes them when due.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"
#include "util/crc32c.h"
#include "util/sha.h"

static void make_dir(const char *tag, char *dir)
{
    snprintf(dir, 256, "/tmp/kd_test_ckpt_%s_XXXXXX", tag);
    if (!mkdtemp(dir))
        abort();
}

static kd_db *open_db(const char *dir, uint64_t ckpt_bytes, uint32_t upkeep_ms, size_t seg_size)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_checkpoint_bytes(o, ckpt_bytes);
    kd_options_set_upkeep_interval(o, upkeep_ms);
    if (seg_size)
        kd_options_set_segment_size(o, seg_size);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err) != KD_OK) {
        fprintf(stderr, "open %s: %s\n", dir, err);
        db = NULL;
    }
    kd_options_free(o);
    return db;
}

/* Every namespace, key and version the index holds, with the value bytes,
 * hashed: two indexes with the same digest hold the same history. */
static void digest(kd_db *db, char out[65], uint64_t *versions)
{
    kd__sha h;
    kd__sha_init(&h);
    kd__buf scratch = {0};
    uint64_t nv = 0;
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < db->ix.ns_count; i++) {
        kd__ns *ns = db->ix.ns_list[i];
        kd__sha_update(&h, ns->name, ns->name_len + 1);
        for (size_t j = 0; j < ns->n_all; j++) {
            kd__key *k = ns->all[j];
            kd__sha_update(&h, k->name, (size_t)k->len + 1);
            for (uint32_t v = 0; v < k->n; v++) {
                kd__sha_update(&h, &k->vers[v].ts, sizeof k->vers[v].ts);
                kd__sha_update(&h, k->vers[v].write_id, KD__HASH_LEN);
                if (k->vers[v].value != KD__NO_VALUE) {
                    const char *p;
                    size_t len;
                    if (kd__value_bytes(db, k->vers[v].value, &scratch, &p, &len) == KD_OK)
                        kd__sha_update(&h, p, len);
                    else
                        kd__sha_update(&h, "?", 1);
                }
                nv++;
            }
        }
    }
    pthread_rwlock_unlock(&db->ix_lock);
    uint8_t d[32];
    kd__sha_final(&h, d);
    kd__hex_encode(d, 32, out);
    kd__buf_free(&scratch);
    if (versions)
        *versions = nv;
}

static void field_root(kd_db *db, char out[65])
{
    kd_root *r;
    size_t n;
    out[0] = '\0';
    if (kd_roots(db, &r, &n) == KD_OK) {
        snprintf(out, 65, "%s", r[n - 1].hex);
        kd_free(r);
    }
}

/* A history with updates, deletes, a batch, a second namespace, a view
 * definition and repeated values (stored once). */
static int fill(kd_db *db, int from, int to)
{
    char key[32], val[96];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "k%d", i % 37);
        snprintf(val, sizeof val, "{\"i\":%d,\"tag\":\"%s\"}", i, i % 5 ? "odd" : "five");
        if (kd_put(db, i % 3 ? "users" : "items", key, val, strlen(val), NULL) != KD_OK)
            return -1;
        if (i % 11 == 0 && i % 3 && kd_delete(db, "users", key, NULL) != KD_OK)
            return -1;
        if (i % 17 == 0 && kd_put(db, "same", key, "1", 1, NULL) != KD_OK)
            return -1;
    }
    kd_write w[3] = {{.ns = "batch", .key = "a", .json = "[1]", .len = 3},
                     {.ns = "batch", .key = "b", .json = "[2]", .len = 3},
                     {.ns = "users", .key = "k1", .json = "null", .len = 4}};
    return kd_put_batch(db, w, 3, NULL) == KD_OK ? 0 : -1;
}

static int ckpt_exists(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/index.ckpt", dir);
    return access(p, F_OK) == 0;
}

static void remove_ckpt(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/index.ckpt", dir);
    unlink(p);
}

/* Digest and root of the database in dir opened with the checkpoint, then
 * without it (full replay): they must agree with each other and `want`;
 * `used` says whether the first open must have used the checkpoint. */
static int reopen_agrees(const char *dir, int used, const char *want_digest, const char *want_root)
{
    char d1[65], r1[65], d2[65], r2[65];
    kd_db *db = open_db(dir, 0, 0, 0);
    if (!db)
        return 0;
    if ((db->ckpt_seg != 0) != used) {
        fprintf(stderr, "the checkpoint was %sused\n", used ? "not " : "");
        kd_close(db);
        return 0;
    }
    digest(db, d1, NULL);
    field_root(db, r1);
    kd_close(db);
    remove_ckpt(dir);
    if (!(db = open_db(dir, 0, 0, 0)))
        return 0;
    digest(db, d2, NULL);
    field_root(db, r2);
    kd_verify_report rep;
    int ok = kd_verify(db, &rep) == KD_OK;
    kd_close(db);
    if (strcmp(d1, want_digest) || strcmp(d2, want_digest))
        fprintf(stderr, "digest: want %s, with checkpoint %s, replayed %s\n", want_digest, d1, d2);
    if (strcmp(r1, want_root) || strcmp(r2, want_root))
        fprintf(stderr, "root: want %s, with checkpoint %s, replayed %s\n", want_root, r1, r2);
    return ok && !strcmp(d1, want_digest) && !strcmp(d2, want_digest) && !strcmp(r1, want_root) &&
           !strcmp(r2, want_root);
}

/* Checkpoint in the middle of a history; the tail after it is replayed. */
static void test_checkpoint_then_tail(void)
{
    char dir[256], d[65], r[65];
    make_dir("tail", dir);
    kd_db *db = open_db(dir, 0, 0, 0);
    CHECK(db);
    CHECK(fill(db, 0, 300) == 0);
    kd_query *q;
    const char *qs = "{\"filter\":\"tag = \\\"odd\\\"\"}";
    CHECK_RC(kd_query_parse(qs, strlen(qs), &q, NULL, 0), KD_OK);
    CHECK_RC(kd_view_create(db, "odd", "users", q, NULL, 1), KD_OK);
    kd_query_free(q);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    CHECK(ckpt_exists(dir));
    CHECK(fill(db, 300, 500) == 0);
    digest(db, d, NULL);
    field_root(db, r);
    kd_close(db);
    CHECK(reopen_agrees(dir, 1, d, r));
    /* A view defined before the checkpoint still works after it. */
    db = open_db(dir, 0, 0, 0);
    CHECK(db);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    kd_close(db);
    db = open_db(dir, 0, 0, 0);
    CHECK(db);
    kd_view_info *views;
    size_t nviews;
    CHECK_RC(kd_view_list(db, &views, &nviews), KD_OK);
    CHECK_EQ_INT(nviews, 1);
    kd_view_list_free(views, nviews);
    kd_close(db);
}

/* After an open from a checkpoint, versions are used in place; a key's
 * first new version moves its history into memory, intact. */
static void test_mapped_versions(void)
{
    char dir[256], d[65], r[65];
    make_dir("mapped", dir);
    kd_db *db = open_db(dir, 0, 0, 0);
    CHECK(db);
    CHECK(fill(db, 0, 200) == 0);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    kd_close(db);
    db = open_db(dir, 0, 0, 0);
    CHECK(db);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK(st.index_mapped_bytes > 0);
    CHECK_EQ_INT(st.index_mapped_bytes, st.versions * 44);
    kd_version *h;
    size_t n_before, n_after;
    CHECK_RC(kd_history(db, "items", "k0", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n_before), KD_OK);
    kd_free(h);
    for (int i = 0; i < 3; i++)
        CHECK_RC(kd_put(db, "items", "k0", "[\"new\"]", 7, NULL), KD_OK);
    kd_stats st2;
    CHECK_RC(kd_stats_get(db, &st2), KD_OK);
    CHECK_EQ_INT(st2.index_mapped_bytes, st.index_mapped_bytes - n_before * 44);
    CHECK_RC(kd_history(db, "items", "k0", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n_after), KD_OK);
    CHECK_EQ_INT(n_after, n_before + 3);
    for (size_t i = 1; i < n_after; i++)
        CHECK_EQ_STR(h[i].previous_write_id, h[i - 1].write_id);
    kd_free(h);
    digest(db, d, NULL);
    field_root(db, r);
    kd_close(db);
    CHECK(reopen_agrees(dir, 1, d, r)); /* the close wrote no checkpoint: the old one and the tail */
}

/* The status of the checkpoint task tells what happened. */
static void test_status(void)
{
    char dir[256];
    make_dir("status", dir);
    kd_db *db = open_db(dir, 0, 0, 0);
    CHECK(db);
    kd_task_status *t;
    size_t n;
    CHECK_RC(kd_upkeep_status(db, &t, &n), KD_OK);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_STR(t[0].name, "checkpoint");
    CHECK_EQ_STR(t[1].name, "vector_index");
    CHECK_EQ_STR(t[2].name, "index_release");
    CHECK_EQ_STR(t[3].name, "retention");
    CHECK_EQ_STR(t[4].name, "consolidation");
    CHECK_EQ_INT(t[0].runs, 0);
    kd_free(t);
    CHECK(fill(db, 0, 20) == 0);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    CHECK_RC(kd_checkpoint(db), KD_OK); /* nothing new: still fine */
    CHECK_RC(kd_upkeep_status(db, &t, &n), KD_OK);
    CHECK_EQ_INT(t[0].runs, 2);
    CHECK_EQ_INT(t[0].failures, 0);
    CHECK_EQ_INT(t[0].last_status, KD_OK);
    CHECK(t[0].last_run > 0);
    CHECK(strstr(t[0].message, "nothing new") != NULL);
    kd_free(t);
    kd_close(db);
}

/* Flip bytes of the checkpoint, cut it, or bring one from another
 * database: opening ignores it and gives the replayed state. */
static void test_damaged_checkpoint_is_ignored(void)
{
    char dir[256], other[256], d[65], r[65], p[512];
    make_dir("damaged", dir);
    kd_db *db = open_db(dir, 0, 0, 0);
    CHECK(db);
    CHECK(fill(db, 0, 200) == 0);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    digest(db, d, NULL);
    field_root(db, r);
    kd_close(db);
    snprintf(p, sizeof p, "%s/index.ckpt", dir);
    struct stat st;
    CHECK(stat(p, &st) == 0);
    size_t size = (size_t)st.st_size;
    uint8_t *good = malloc(size);
    FILE *f = fopen(p, "rb");
    CHECK(f && fread(good, 1, size, f) == size);
    fclose(f);
    /* header bytes one by one, then a sample of the body */
    for (size_t at = 0; at < size; at += at < 200 ? 1 : 97) {
        f = fopen(p, "wb");
        good[at] ^= 0x20;
        CHECK(fwrite(good, 1, size, f) == size);
        good[at] ^= 0x20;
        fclose(f);
        db = open_db(dir, 0, 0, 0);
        CHECK(db);
        CHECK(db->ckpt_seg == 0);
        char d2[65];
        digest(db, d2, NULL);
        kd_close(db);
        if (strcmp(d, d2))
            fprintf(stderr, "flip at %zu changed the state\n", at);
        CHECK_EQ_STR(d2, d);
    }
    /* cut short */
    CHECK(truncate(p, (off_t)(size / 2)) == 0);
    CHECK(reopen_agrees(dir, 0, d, r));
    /* a checkpoint of another database */
    make_dir("other", other);
    db = open_db(other, 0, 0, 0);
    CHECK(db);
    CHECK(fill(db, 0, 210) == 0);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    kd_close(db);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp %s/index.ckpt %s/index.ckpt", other, dir);
    CHECK(system(cmd) == 0);
    CHECK(reopen_agrees(dir, 0, d, r));
    free(good);
}

/* A checkpoint that passes every check but says something the log does
 * not (here: a value one byte shorter) is used, and kd_verify finds it. */
static void test_verify_compares_index(void)
{
    char dir[256], p[512];
    make_dir("verify", dir);
    kd_db *db = open_db(dir, 0, 0, 0);
    CHECK(db);
    CHECK(fill(db, 0, 50) == 0);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    kd_close(db);
    snprintf(p, sizeof p, "%s/index.ckpt", dir);
    FILE *f = fopen(p, "r+b");
    CHECK(f);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long size = ftell(f);
    uint8_t *m = malloc((size_t)size);
    CHECK(fseek(f, 0, SEEK_SET) == 0 && fread(m, 1, (size_t)size, f) == (size_t)size);
    uint32_t len, crc;
    memcpy(&len, m + size - 4, 4); /* the last value's length */
    len--;
    memcpy(m + size - 4, &len, 4);
    enum { HEADER = 96 + 4 * 32 + 4 }; /* 4 roots: storage, views, vectors, auth */
    crc = kd__crc32c(m + HEADER, (size_t)size - HEADER);
    memcpy(m + 88, &crc, 4);
    crc = kd__crc32c(m, HEADER - 4);
    memcpy(m + HEADER - 4, &crc, 4);
    CHECK(fseek(f, 0, SEEK_SET) == 0 && fwrite(m, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    free(m);
    db = open_db(dir, 0, 0, 0);
    CHECK(db);
    CHECK(db->ckpt_seg != 0);
    kd_verify_report r;
    CHECK_RC(kd_verify(db, &r), KD_ECORRUPT);
    CHECK(strstr(r.problem, "in-memory index differs") != NULL);
    kd_close(db);
    /* without the checkpoint the log alone is sound */
    remove_ckpt(dir);
    db = open_db(dir, 0, 0, 0);
    CHECK(db);
    CHECK_RC(kd_verify(db, &r), KD_OK);
    kd_close(db);
}

/* The log lost the record the checkpoint names (a crash took the unsynced
 * end): the checkpoint is ignored, the state is what the log holds. */
static void test_log_shorter_than_checkpoint(void)
{
    char dir[256], d[65], r[65], seg[512];
    make_dir("short", dir);
    kd_db *db = open_db(dir, 0, 0, 0);
    CHECK(db);
    CHECK(fill(db, 0, 100) == 0);
    kd_close(db);
    snprintf(seg, sizeof seg, "%s/log-00000001.kdl", dir);
    struct stat st;
    CHECK(stat(seg, &st) == 0);
    off_t before = st.st_size;
    db = open_db(dir, 0, 0, 0);
    CHECK(db);
    digest(db, d, NULL);
    field_root(db, r);
    CHECK_RC(kd_put(db, "users", "late", "true", 4, NULL), KD_OK);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    kd_close(db);
    CHECK(truncate(seg, before) == 0); /* the last write never reached the disk */
    CHECK(ckpt_exists(dir));
    CHECK(reopen_agrees(dir, 0, d, r));
}

/* Many small segments: the checkpoint covers whole ones, which opening
 * then does not read, and old values still read from them. */
static void test_many_segments(void)
{
    char dir[256], d[65], r[65];
    make_dir("segs", dir);
    kd_db *db = open_db(dir, 0, 0, 64 << 10);
    CHECK(db);
    char val[600];
    memset(val, 0, sizeof val);
    for (int i = 0; i < 400; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i % 50);
        int n = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%0500d\"}", i, i);
        CHECK_RC(kd_put(db, "big", key, val, (size_t)n, NULL), KD_OK);
        if (i == 250)
            CHECK_RC(kd_checkpoint(db), KD_OK);
    }
    kd_stats s;
    CHECK_RC(kd_stats_get(db, &s), KD_OK);
    CHECK(s.segments > 3);
    digest(db, d, NULL);
    field_root(db, r);
    kd_close(db);
    CHECK(reopen_agrees(dir, 1, d, r));
    /* the oldest version, stored in the first segment */
    db = open_db(dir, 0, 0, 64 << 10);
    CHECK(db);
    kd_version *h;
    size_t n;
    CHECK_RC(kd_history(db, "big", "k0", KD_TIME_MIN, KD_TIME_MAX, 1, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    char *json;
    size_t len;
    CHECK_RC(kd_get_at(db, "big", "k0", h[0].timestamp, &json, &len, NULL), KD_OK);
    CHECK(strncmp(json, "{\"i\":0,", 7) == 0);
    kd_free(json);
    kd_free(h);
    kd_close(db);
}

typedef struct writer_arg {
    kd_db *db;
    int n, failed;
    int done; /* atomic: puts made so far */
} writer_arg;

static void *writer(void *p)
{
    writer_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        char key[32], val[64];
        snprintf(key, sizeof key, "w%d", i % 500);
        int len = snprintf(val, sizeof val, "{\"n\":%d}", i);
        if (kd_put(a->db, "live", key, val, (size_t)len, NULL) != KD_OK)
            a->failed++;
        __atomic_store_n(&a->done, i + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* Checkpoints written while a writer runs are each a consistent prefix:
 * opening with the last one plus the tail loses and repeats nothing. */
static void test_checkpoint_while_writing(void)
{
    char dir[256], d[65], r[65];
    make_dir("concurrent", dir);
    kd_db *db = open_db(dir, 0, 0, 0);
    CHECK(db);
    writer_arg a = {db, 20000, 0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, writer, &a) == 0);
    int checkpoints = 0;
    for (int i = 0; i < 5; i++) {
        /* Each checkpoint after another sixth of the writes, so that they
         * fall among the writes however the threads are scheduled (a
         * checkpoint of the empty database names no record to use). */
        while (__atomic_load_n(&a.done, __ATOMIC_ACQUIRE) < (i + 1) * a.n / 6)
            usleep(500);
        if (kd_checkpoint(db) == KD_OK)
            checkpoints++;
    }
    pthread_join(t, NULL);
    CHECK_EQ_INT(a.failed, 0);
    CHECK_EQ_INT(checkpoints, 5);
    uint64_t versions;
    digest(db, d, &versions);
    CHECK_EQ_INT(versions, 20000);
    field_root(db, r);
    kd_close(db);
    CHECK(reopen_agrees(dir, 1, d, r));
}

/* The upkeep thread writes a checkpoint once enough log follows it. */
static void test_upkeep_thread(void)
{
    char dir[256], d[65], r[65];
    make_dir("upkeep", dir);
    kd_db *db = open_db(dir, 64 << 10, 5, 0);
    CHECK(db);
    CHECK(fill(db, 0, 2000) == 0);
    kd_task_status *t = NULL;
    size_t n = 0;
    uint64_t runs = 0;
    for (int waited = 0; waited < 2000 && runs == 0; waited++) { /* up to 20 s on a loaded machine */
        usleep(10000);
        CHECK_RC(kd_upkeep_status(db, &t, &n), KD_OK);
        runs = t[0].runs;
        CHECK_EQ_INT(t[0].failures, 0);
        kd_free(t);
    }
    CHECK(runs >= 1);
    CHECK(ckpt_exists(dir));
    digest(db, d, NULL);
    field_root(db, r);
    kd_close(db);
    CHECK(reopen_agrees(dir, 1, d, r));
}

/* The library's own threads (upkeep; the sync=interval flusher) block
 * every signal, so that a process's SIGTERM reaches the application's
 * handler (the server's graceful shutdown) and never kills it through a
 * thread that did not expect it. Read from /proc: each thread's SigBlk. */
static void test_threads_block_signals(void)
{
    char dir[256];
    make_dir("signals", dir);
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_INTERVAL, 50);
    kd_options_set_upkeep_interval(o, 1000);
    kd_db *db = NULL;
    char err[256];
    CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
    kd_options_free(o);
    DIR *d = opendir("/proc/self/task");
    CHECK(d);
    struct dirent *e;
    int others = 0, unblocked = 0;
    pid_t me = (pid_t)syscall(SYS_gettid);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == me)
            continue;
        char p[300], line[256];
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(p, "r");
        int ours = f && fgets(line, sizeof line, f) && !strncmp(line, "kd-", 3); /* not a sanitizer's */
        if (f)
            fclose(f);
        if (!ours)
            continue;
        snprintf(p, sizeof p, "/proc/self/task/%s/status", e->d_name);
        if (!(f = fopen(p, "r")))
            continue;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "SigBlk:", 7))
                continue;
            unsigned long long mask = strtoull(line + 7, NULL, 16);
            others++;
            /* SIGINT 2, SIGTERM 15: bit n-1 */
            if (!(mask & (1ull << 1)) || !(mask & (1ull << 14)))
                unblocked++;
        }
        fclose(f);
    }
    closedir(d);
    kd_close(db);
    CHECK_EQ_INT(others, 2); /* kd-flusher and kd-upkeep */
    CHECK_EQ_INT(unblocked, 0);
}

int main(void)
{
    RUN(test_checkpoint_then_tail);
    RUN(test_status);
    RUN(test_mapped_versions);
    RUN(test_damaged_checkpoint_is_ignored);
    RUN(test_log_shorter_than_checkpoint);
    RUN(test_verify_compares_index);
    RUN(test_many_segments);
    RUN(test_checkpoint_while_writing);
    RUN(test_upkeep_thread);
    RUN(test_threads_block_signals);
    return HARNESS_DONE();
}
