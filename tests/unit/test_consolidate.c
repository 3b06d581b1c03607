/*
 * test_consolidate.c — consolidation (the cold tier): sealed segments
 * rewritten with zstd-compressed values and a trained dictionary. Every
 * read path gives back the same bytes (get, get_at, by version_id, scans,
 * queries, the change feed, verify, backup and restore, repair), the roots
 * stay, reopening works with and without a checkpoint, compaction and
 * consolidation combine, a damaged or missing dictionary is a clear error,
 * and a kill -9 at any moment leaves a complete database.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"
#include "rewrite.h"

#define KEYS 120
#define VERSIONS 6

static kd_db *open_db(const char *dir)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_upkeep_interval(o, 0);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_options_set_cache_size(o, 0); /* every read goes to the log */
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err) != KD_OK) {
        fprintf(stderr, "open %s: %s\n", dir, err);
        db = NULL;
    }
    kd_options_free(o);
    return db;
}

/* Version v of key k: a record shaped like an application's, canonical. */
static void value_of(int k, int v, char *out, size_t len)
{
    snprintf(out, len,
             "{\"address\":{\"city\":\"City %d\",\"street\":\"%d Long Street Name\",\"zip\":\"%05d\"},"
             "\"email\":\"user%d@example.com\",\"id\":%d,\"name\":\"User Number %d\",\"status\":\"%s\","
             "\"tags\":[\"customer\",\"newsletter\",\"tier-%d\"],\"version\":%d}",
             k % 17, k * 3, k * 7 % 100000, k, k, k, v % 2 ? "active" : "inactive", k % 4, v);
}

/* KEYS keys × VERSIONS versions in "users", the last version of every
 * tenth key deleted, a vector, and one value shared by two keys. */
static int fill(kd_db *db)
{
    char v[600];
    for (int ver = 0; ver < VERSIONS; ver++)
        for (int k = 0; k < KEYS; k++) {
            char key[32];
            snprintf(key, sizeof key, "u%03d", k);
            value_of(k, ver, v, sizeof v);
            if (kd_put(db, "users", key, v, strlen(v), NULL))
                return -1;
        }
    for (int k = 0; k < KEYS; k += 10) {
        char key[32];
        snprintf(key, sizeof key, "u%03d", k);
        if (kd_delete(db, "users", key, NULL))
            return -1;
    }
    value_of(1, 1, v, sizeof v);
    if (kd_put(db, "copy", "same", v, strlen(v), NULL))
        return -1;
    float vec[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    return kd_vector_put(db, "emb", "doc1", "m", vec, 8, "{\"lang\":\"en\"}", 13, NULL) ? -1 : 0;
}

/* Every version of every key reads back exactly (get_at and by id), the
 * current ones through get, a scan and a query. */
static void check_all(kd_db *db)
{
    char want[600];
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof key, "u%03d", k);
        kd_version *h = NULL;
        size_t n = 0;
        CHECK_RC(kd_history(db, "users", key, 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
        CHECK_EQ_INT(n, VERSIONS + (k % 10 == 0));
        for (size_t i = 0; i < n && i < VERSIONS; i++) {
            char *got = NULL, *by_id = NULL;
            size_t len = 0;
            value_of(k, (int)i, want, sizeof want);
            CHECK_RC(kd_get_at(db, "users", key, h[i].timestamp, &got, &len, NULL), KD_OK);
            CHECK_EQ_STR(got ? got : "", want);
            CHECK_EQ_INT(len, strlen(want));
            CHECK_RC(kd_get_value(db, h[i].version_id, &by_id, &len), KD_OK);
            CHECK_EQ_STR(by_id ? by_id : "", want);
            size_t only_len = 0;
            CHECK_RC(kd_get_value(db, h[i].version_id, NULL, &only_len), KD_OK);
            CHECK_EQ_INT(only_len, strlen(want));
            kd_free(got);
            kd_free(by_id);
        }
        kd_free(h);
        char *cur = NULL;
        int rc = kd_get(db, "users", key, &cur, NULL, NULL);
        if (k % 10 == 0) {
            CHECK_RC(rc, KD_EDELETED);
        } else {
            CHECK_RC(rc, KD_OK);
            value_of(k, VERSIONS - 1, want, sizeof want);
            CHECK_EQ_STR(cur ? cur : "", want);
        }
        kd_free(cur);
    }
    char *same = NULL;
    CHECK_RC(kd_get(db, "copy", "same", &same, NULL, NULL), KD_OK);
    value_of(1, 1, want, sizeof want);
    CHECK_EQ_STR(same ? same : "", want);
    kd_free(same);
    kd_vector *vec = NULL;
    CHECK_RC(kd_vector_get(db, "emb", "doc1", &vec), KD_OK);
    CHECK(vec && vec->dim == 8 && vec->values[7] == 8.0f);
    kd_vector_free(vec);
}

typedef struct scan_seen {
    int n, bad;
} scan_seen;

static int scan_cb(void *ctx, const char *key, const char *value, size_t value_len, const kd_version *version)
{
    (void)version;
    scan_seen *s = ctx;
    int k = atoi(key + 1);
    char want[600];
    value_of(k, VERSIONS - 1, want, sizeof want);
    s->bad += strlen(want) != value_len || memcmp(want, value, value_len);
    s->n++;
    return 0;
}

static void check_scans(kd_db *db)
{
    scan_seen s = {0, 0};
    CHECK_RC(kd_scan(db, "users", NULL, NULL, 0, KD_TIME_MAX, scan_cb, &s), KD_OK);
    CHECK_EQ_INT(s.n, KEYS - KEYS / 10);
    CHECK_EQ_INT(s.bad, 0);
    /* A query reads values through the raw scan: the filter sees them. */
    const char *qs = "{\"filter\":\"status = \\\"active\\\" and address.city = \\\"City 3\\\"\"}";
    kd_query *q = NULL;
    CHECK_RC(kd_query_parse(qs, strlen(qs), &q, NULL, 0), KD_OK);
    kd_result *r = NULL;
    CHECK_RC(kd_query_run(db, "users", q, &r), KD_OK);
    int expect = 0;
    for (int k = 0; k < KEYS; k++)
        expect += k % 10 != 0 && k % 17 == 3 && (VERSIONS - 1) % 2 == 1;
    CHECK(r && (int)r->total == expect && expect > 0);
    kd_result_free(r);
    kd_query_free(q);
}

typedef struct feed {
    int values, bad;
} feed;

static int change_cb(void *ctx, const kd_change *c)
{
    feed *f = ctx;
    if (!c->value || strcmp(c->ns, "users"))
        return 0;
    char want[600];
    int k = atoi(c->key + 1);
    /* the version is the "version" member, the last one */
    const char *at = strstr(c->value, "\"version\":");
    int v = at ? atoi(at + 10) : -1;
    value_of(k, v, want, sizeof want);
    f->bad += strlen(want) != c->value_len || strcmp(want, c->value);
    f->values++;
    return 0;
}

static void field_root(kd_db *db, char *out)
{
    kd_root *r = NULL;
    size_t n = 0;
    CHECK_RC(kd_roots(db, &r, &n), KD_OK);
    snprintf(out, 80, "%s", n ? r[n - 1].hex : "");
    kd_free(r);
}

static uint64_t disk_bytes(kd_db *db)
{
    kd_stats st;
    return kd_stats_get(db, &st) == KD_OK ? st.disk_bytes : 0;
}

static void verify_ok(kd_db *db)
{
    kd_verify_report vr;
    int rc = kd_verify(db, &vr);
    if (rc)
        fprintf(stderr, "verify: %s\n", vr.problem);
    CHECK_RC(rc, KD_OK);
}

static kd_db *filled(const char *tag, char *dir)
{
    harness_tmpdir("consolidate", tag, dir);
    kd_db *db = open_db(dir);
    if (db && fill(db)) {
        kd_close(db);
        db = NULL;
    }
    return db;
}

static void test_consolidate_reads_back(void)
{
    char dir[256], root0[80], root1[80];
    kd_db *db = filled("rt", dir);
    CHECK(db);
    field_root(db, root0);
    uint64_t before = disk_bytes(db);
    CHECK(before > 0);
    kd_consolidate_report r;
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    CHECK(r.segments >= 2);
    CHECK(r.values_compressed >= (uint64_t)KEYS * (VERSIONS - 1));
    CHECK(r.value_bytes_after * 2 < r.value_bytes_before); /* alike records compress well */
    CHECK_EQ_INT(r.dictionary, 1);
    CHECK_EQ_INT(r.dictionary_trained, 1);
    CHECK(r.bytes_saved > 0);
    CHECK(disk_bytes(db) < before);
    char p[400];
    snprintf(p, sizeof p, "%s/zdict-00000001", dir);
    CHECK(access(p, F_OK) == 0);
    field_root(db, root1);
    CHECK_EQ_STR(root0, root1);
    check_all(db);
    check_scans(db);
    feed f = {0, 0};
    CHECK_RC(kd_changes(db, NULL, KD_TIME_MIN, change_cb, &f), KD_OK);
    CHECK_EQ_INT(f.values, KEYS * VERSIONS);
    CHECK_EQ_INT(f.bad, 0);
    verify_ok(db);
    /* Nothing left to do: everything sealed is consolidated. */
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    CHECK_EQ_INT(r.segments, 0);
    kd_close(db);

    /* Reopen from the checkpoint the run wrote, then by replaying the log. */
    db = open_db(dir);
    CHECK(db);
    check_all(db);
    field_root(db, root1);
    CHECK_EQ_STR(root0, root1);
    kd_close(db);
    snprintf(p, sizeof p, "%s/index.ckpt", dir);
    unlink(p);
    db = open_db(dir);
    CHECK(db);
    check_all(db);
    check_scans(db);
    verify_ok(db);
    kd_close(db);
}

/* Later runs use the dictionary there is; values written after a run,
 * compaction of consolidated segments, and consolidation of compacted ones. */
static void test_again_and_with_compaction(void)
{
    char dir[256];
    kd_db *db = filled("again", dir);
    CHECK(db);
    kd_consolidate_report r;
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    CHECK_EQ_INT(r.dictionary_trained, 1);
    char v[600];
    for (int k = 0; k < KEYS; k++) { /* values unlike the others (a shared value is kept) */
        char key[32];
        snprintf(key, sizeof key, "x%03d", k);
        value_of(k + KEYS, 0, v, sizeof v);
        CHECK_RC(kd_put(db, "more", key, v, strlen(v), NULL), KD_OK);
    }
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    CHECK(r.segments >= 1);
    CHECK_EQ_INT(r.dictionary, 1);
    CHECK_EQ_INT(r.dictionary_trained, 0);
    /* An hour-old threshold finds nothing: every write is newer. */
    CHECK_RC(kd_put(db, "more", "late", "1", 1, NULL), KD_OK);
    CHECK_RC(kd_consolidate(db, INT64_C(3600000000000), &r), KD_OK);
    CHECK_EQ_INT(r.segments, 0);
    CHECK_RC(kd_consolidate(db, -1, &r), KD_EINVALID);
    /* Compaction of consolidated segments: the kept values stay compressed
     * and readable, the dropped ones are gone, verify tells it is pruning. */
    CHECK_RC(kd_retention_set(db, "users", "{\"keep_last\":1}", 15), KD_OK);
    kd_compact_report cr;
    CHECK_RC(kd_compact(db, 0, &cr), KD_OK);
    CHECK(cr.versions_pruned > 0);
    verify_ok(db);
    for (int k = 1; k < KEYS; k += 7) {
        if (k % 10 == 0)
            continue;
        char key[32], want[600], *got = NULL;
        snprintf(key, sizeof key, "u%03d", k);
        value_of(k, VERSIONS - 1, want, sizeof want);
        CHECK_RC(kd_get(db, "users", key, &got, NULL, NULL), KD_OK);
        CHECK_EQ_STR(got ? got : "", want);
        kd_free(got);
        kd_version *h = NULL;
        size_t n = 0;
        CHECK_RC(kd_history(db, "users", key, 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
        CHECK(n == VERSIONS && h[0].pruned);
        CHECK_RC(kd_get_at(db, "users", key, h[0].timestamp, &got, NULL, NULL), KD_EPRUNED);
        kd_free(h);
    }
    for (int k = 0; k < KEYS; k++) {
        char key[32], want[600], *got = NULL;
        snprintf(key, sizeof key, "x%03d", k);
        value_of(k + KEYS, 0, want, sizeof want);
        CHECK_RC(kd_get(db, "more", key, &got, NULL, NULL), KD_OK);
        CHECK_EQ_STR(got ? got : "", want);
        kd_free(got);
    }
    kd_close(db);
    db = open_db(dir);
    CHECK(db);
    verify_ok(db);
    kd_close(db);
}

/* A backup of a consolidated database restores the same history, in
 * plain segments: the backup carries values, not dictionaries. */
static void test_backup_restore(void)
{
    char dir[256], file[300], out[300], root0[80], root1[80];
    kd_db *db = filled("bk", dir);
    CHECK(db);
    kd_consolidate_report r;
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    CHECK(r.values_compressed > 0);
    snprintf(file, sizeof file, "%s.kdb", dir);
    snprintf(out, sizeof out, "%s.restored", dir);
    CHECK_RC(kd_backup(db, file, NULL, NULL), KD_OK);
    field_root(db, root0);
    kd_close(db);
    const char *files[1] = {file};
    char err[512];
    int rc = kd_restore(files, 1, out, NULL, err, sizeof err);
    if (rc)
        fprintf(stderr, "restore: %s\n", err);
    CHECK_RC(rc, KD_OK);
    db = open_db(out);
    CHECK(db);
    field_root(db, root1);
    CHECK_EQ_STR(root0, root1);
    check_all(db);
    verify_ok(db);
    kd_close(db);
    char p[400];
    snprintf(p, sizeof p, "%s/zdict-00000001", out);
    CHECK(access(p, F_OK) != 0);
    unlink(file);
}

/* The indexes of db: `want` of them not built (users.name, saying why_has). */
static void check_unbuilt(kd_db *db, int want, const char *why_has)
{
    kd_index_info *l = NULL;
    size_t n = 0;
    int unbuilt = 0;
    CHECK_RC(kd_index_list(db, NULL, &l, &n), KD_OK);
    for (size_t i = 0; i < n; i++) {
        if (l[i].built) {
            CHECK_EQ_STR(l[i].error, "");
            continue;
        }
        unbuilt++;
        CHECK_EQ_STR(l[i].ns, "users");
        CHECK_EQ_STR(l[i].field, "name");
        CHECK_EQ_INT(l[i].entries, 0);
        CHECK(l[i].created > 0);
        CHECK(strstr(l[i].error, why_has) != NULL);
    }
    kd_index_list_free(l, n);
    CHECK_EQ_INT(unbuilt, want);
}

/* An index that cannot be built at open (its values compressed with a
 * lost dictionary) is listed as not built, with why, until it is dropped;
 * created again it fails with why and is listed the same way. */
static void test_unbuilt_index_is_listed(void)
{
    char dir[256], p[400];
    kd_db *db = filled("unbuilt", dir);
    CHECK(db);
    CHECK_RC(kd_index_create(db, "users", "name"), KD_OK);
    kd_consolidate_report r;
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    CHECK_RC(kd_index_create(db, "fresh", "x"), KD_OK); /* over no value: built */
    kd_close(db);
    snprintf(p, sizeof p, "%s/zdict-00000001", dir);
    CHECK(unlink(p) == 0);
    db = open_db(dir);
    CHECK(db);
    check_unbuilt(db, 1, "zdict-00000001");
    CHECK_RC(kd_index_create(db, "users", "name"), KD_EEXISTS);
    CHECK_RC(kd_index_drop(db, "users", "name"), KD_OK);
    check_unbuilt(db, 0, "");
    CHECK_RC(kd_index_drop(db, "users", "name"), KD_ENOTFOUND);
    CHECK_RC(kd_index_create(db, "users", "name"), KD_ECORRUPT);
    CHECK(strstr(kd_errmsg(db), "could not be built") != NULL);
    check_unbuilt(db, 1, "zdict-00000001");
    kd_close(db);
    db = open_db(dir);
    CHECK(db);
    check_unbuilt(db, 1, "zdict-00000001");
    kd_index_info *l = NULL;
    size_t n = 0;
    CHECK_RC(kd_index_list(db, "fresh", &l, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(l[0].built, 1);
    kd_index_list_free(l, n);
    CHECK_RC(kd_index_list(db, "users", &l, &n), KD_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(l[0].built, 0);
    kd_index_list_free(l, n);
    kd_close(db);
}

/* A damaged or missing dictionary: reads of the values it compressed fail
 * with KD_ECORRUPT naming the file; nothing crashes; verify reports it. */
static void test_damaged_dictionary(void)
{
    char dir[256], p[400];
    kd_db *db = filled("dict", dir);
    CHECK(db);
    kd_consolidate_report r;
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    CHECK_EQ_INT(r.dictionary, 1);
    kd_close(db);
    snprintf(p, sizeof p, "%s/zdict-00000001", dir);
    int fd = open(p, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    CHECK(pread(fd, &b, 1, 100) == 1);
    b ^= 0x40;
    CHECK(pwrite(fd, &b, 1, 100) == 1);
    close(fd);
    db = open_db(dir);
    CHECK(db);
    char *got = NULL;
    CHECK_RC(kd_get_at(db, "users", "u001", 1, &got, NULL, NULL), KD_ENOVERSION); /* before any write */
    kd_version *h = NULL;
    size_t n = 0;
    CHECK_RC(kd_history(db, "users", "u001", 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK(n > 0);
    CHECK_RC(kd_get_at(db, "users", "u001", h[0].timestamp, &got, NULL, NULL), KD_ECORRUPT);
    CHECK(strstr(kd_errmsg(db), "zdict-00000001") != NULL);
    kd_free(h);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_ECORRUPT);
    CHECK(strstr(vr.problem, "zdict-00000001") != NULL);
    kd_close(db);
    unlink(p);
    db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_history(db, "users", "u001", 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_RC(kd_get_at(db, "users", "u001", h[0].timestamp, &got, NULL, NULL), KD_ECORRUPT);
    CHECK(strstr(kd_errmsg(db), "missing") != NULL);
    kd_free(h);
    /* A delete whose previous value cannot be read: a subscriber without a
     * filter hears of it; no filter matches it, not even `true` (as the
     * server's watch and as a pruned value: docs/QUERY.md). */
    CHECK_RC(kd_get(db, "users", "u001", &got, NULL, NULL), KD_ECORRUPT);
    kd_filter *t = NULL;
    char ferr[128];
    CHECK_RC(kd_filter_parse("true", &t, ferr, sizeof ferr), KD_OK);
    kd_sub_options all = {"users", NULL, 0, NULL, 0}, matching = {"users", NULL, 0, t, 0};
    uint64_t id_all = 0, id_matching = 0;
    CHECK_RC(kd_subscribe(db, &all, &id_all), KD_OK);
    CHECK_RC(kd_subscribe(db, &matching, &id_matching), KD_OK);
    kd_filter_free(t);
    CHECK_RC(kd_delete(db, "users", "u001", NULL), KD_OK);
    kd_event ev;
    memset(&ev, 0, sizeof ev);
    CHECK_RC(kd_sub_next(db, id_all, 2000, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_DELETE);
    kd_event_clear(&ev);
    CHECK_RC(kd_sub_next(db, id_matching, 0, &ev), KD_ETIMEOUT);
    kd_close(db);
}

/* kill -9 at random moments of a consolidation: every reopen verifies and
 * reads everything back. */
static void test_kill_during_consolidation(void)
{
    srand((unsigned)time(NULL));
    for (int round = 0; round < 6; round++) {
        char dir[256], tag[16];
        snprintf(tag, sizeof tag, "kill%d", round);
        kd_db *db = filled(tag, dir);
        CHECK(db);
        kd_close(db);
        pid_t pid = fork();
        if (pid == 0) {
            kd_db *c = open_db(dir);
            kd_consolidate_report r;
            _exit(c && kd_consolidate(c, 0, &r) == KD_OK ? 0 : 1);
        }
        usleep((useconds_t)(round * 3000 + rand() % 3000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        db = open_db(dir);
        CHECK(db);
        verify_ok(db);
        check_all(db);
        kd_consolidate_report r;
        CHECK_RC(kd_consolidate(db, 0, &r), KD_OK); /* finishes what is left */
        check_all(db);
        kd_close(db);
    }
}

/* Readers on other threads while segments are swapped under them. */
typedef struct reader_arg {
    kd_db *db;
    int stop, errors, reads; /* atomics: two readers and the main thread */
} reader_arg;

static void *reader(void *p)
{
    reader_arg *a = p;
    char want[600];
    for (unsigned i = 0; !__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE); i++) {
        int k = 1 + (int)(i * 7919 % (KEYS - 1));
        if (k % 10 == 0)
            continue;
        char key[32], *got = NULL;
        snprintf(key, sizeof key, "u%03d", k);
        value_of(k, VERSIONS - 1, want, sizeof want);
        if (kd_get(a->db, "users", key, &got, NULL, NULL) != KD_OK || strcmp(got, want))
            __atomic_add_fetch(&a->errors, 1, __ATOMIC_RELAXED);
        kd_free(got);
        __atomic_add_fetch(&a->reads, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_consolidate_while_reading(void)
{
    char dir[256];
    kd_db *db = filled("conc", dir);
    CHECK(db);
    reader_arg a = {db, 0, 0, 0};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, reader, &a);
    kd_consolidate_report r;
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    CHECK(r.segments > 0);
    __atomic_store_n(&a.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(a.reads > 0);
    CHECK_EQ_INT(a.errors, 0);
    check_all(db);
    kd_close(db);
}

/* The upkeep thread consolidates on its own and says so in its status. */
static void test_upkeep_consolidates(void)
{
    char dir[256];
    kd_db *db = filled("upkeep", dir);
    CHECK(db);
    kd_close(db);
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_upkeep_interval(o, 20);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_options_set_consolidation(o, 20, 0);
    char err[512];
    CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
    kd_options_free(o);
    int runs = 0;
    for (int i = 0; i < 500 && !runs; i++) {
        usleep(20000);
        kd_task_status *t;
        size_t n;
        CHECK_RC(kd_upkeep_status(db, &t, &n), KD_OK);
        for (size_t j = 0; j < n; j++)
            if (!strcmp(t[j].name, "consolidation") && t[j].runs) {
                runs = (int)t[j].runs;
                CHECK_EQ_INT(t[j].last_status, KD_OK);
                CHECK(strstr(t[j].message, "values compressed") != NULL);
            }
        kd_free(t);
    }
    CHECK(runs > 0);
    check_all(db);
    kd_close(db);
    char p[400];
    snprintf(p, sizeof p, "%s/zdict-00000001", dir);
    CHECK(access(p, F_OK) == 0);
}

/* Repair of a consolidated database whose log lost a record: the rest is
 * salvaged, compressed values decompressed on the way. */
static void lost_line(void *ctx, const char *line)
{
    (void)line;
    (*(int *)ctx)++;
}

static void test_repair_consolidated(void)
{
    char dir[256], p[400];
    kd_db *db = filled("repair", dir);
    CHECK(db);
    kd_consolidate_report r;
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    kd_close(db);
    /* Damage a byte in the middle of the second segment. */
    snprintf(p, sizeof p, "%s/log-00000002.kdl", dir);
    struct stat st;
    CHECK(stat(p, &st) == 0);
    int fd = open(p, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    off_t at = st.st_size / 2;
    CHECK(pread(fd, &b, 1, at) == 1);
    b ^= 0x01;
    CHECK(pwrite(fd, &b, 1, at) == 1);
    close(fd);
    int lost = 0;
    kd_repair_report rep;
    char err[512], kept[512];
    int rc = kd_repair(dir, NULL, lost_line, &lost, &rep, kept, sizeof kept, err, sizeof err);
    if (rc)
        fprintf(stderr, "repair: %s\n", err);
    CHECK_RC(rc, KD_OK);
    CHECK(rep.records_lost >= 1);
    CHECK(rep.versions_kept > (uint64_t)KEYS * 3);
    db = open_db(dir);
    CHECK(db);
    verify_ok(db);
    /* What was kept reads back as it was written. */
    int same = 0;
    for (int k = 0; k < KEYS; k++) {
        char key[32], want[600], *got = NULL;
        snprintf(key, sizeof key, "u%03d", k);
        kd_version *h = NULL;
        size_t n = 0;
        if (kd_history(db, "users", key, 0, KD_TIME_MAX, 0, 0, &h, &n) != KD_OK)
            continue;
        for (size_t i = 0; i < n && i < VERSIONS; i++) {
            if (h[i].deleted)
                continue;
            CHECK_RC(kd_get_at(db, "users", key, h[i].timestamp, &got, NULL, NULL), KD_OK);
            value_of(k, (int)i, want, sizeof want);
            CHECK_EQ_STR(got ? got : "", want);
            same++;
            kd_free(got);
        }
        kd_free(h);
    }
    CHECK(same > KEYS * 3);
    kd_close(db);
}

/* A rewrite told to stop (kd_close stopping the upkeep thread) leaves the
 * segment exactly as it was, no temporary file, and counts nothing. */
static int always(kd_db *db)
{
    (void)db;
    return 1;
}

static void test_cancelled_rewrite(void)
{
    char dir[256], p[400], tmp[420];
    kd_db *db = filled("cancel", dir);
    CHECK(db);
    snprintf(p, sizeof p, "%s/log-00000001.kdl", dir);
    snprintf(tmp, sizeof tmp, "%s.compact", p);
    size_t before_len = 0, after_len = 0;
    FILE *f = fopen(p, "rb");
    CHECK(f);
    char *before = malloc(1 << 20), *after = malloc(1 << 20);
    before_len = fread(before, 1, 1 << 20, f);
    fclose(f);
    kd__zenc *enc = kd__zenc_new(NULL, 0, 0, 3);
    CHECK(enc);
    kd__rewrite_spec sp = {.enc = enc, .cancelled = always};
    kd__rewrite_stats st = {0};
    pthread_mutex_lock(&db->compact_mu);
    pthread_mutex_lock(&db->ckpt_mu);
    CHECK_RC(kd__seg_rewrite(db, &sp, 1, &st), KD_OK);
    pthread_mutex_unlock(&db->ckpt_mu);
    pthread_mutex_unlock(&db->compact_mu);
    kd__zenc_free(enc);
    CHECK_EQ_INT(st.segments, 0);
    CHECK_EQ_INT(st.values_compressed, 0);
    CHECK(access(tmp, F_OK) != 0);
    f = fopen(p, "rb");
    CHECK(f);
    after_len = fread(after, 1, 1 << 20, f);
    fclose(f);
    CHECK(before_len > 0 && before_len == after_len && !memcmp(before, after, before_len));
    free(before);
    free(after);
    check_all(db);
    kd_close(db);
}

/* Repair of a consolidated database whose dictionary is missing stops
 * with that named, and changes nothing: put back, the database is whole. */
static void test_repair_without_dictionary(void)
{
    char dir[256], p[400], q[400];
    kd_db *db = filled("repdict", dir);
    CHECK(db);
    kd_consolidate_report r;
    CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
    kd_close(db);
    snprintf(p, sizeof p, "%s/zdict-00000001", dir);
    snprintf(q, sizeof q, "%s.aside", dir);
    CHECK(rename(p, q) == 0);
    kd_repair_report rep;
    char err[1024], kept[512];
    int lost = 0;
    CHECK_RC(kd_repair(dir, NULL, lost_line, &lost, &rep, kept, sizeof kept, err, sizeof err), KD_ECORRUPT);
    CHECK(strstr(err, "zdict-00000001") != NULL);
    CHECK(rename(q, p) == 0);
    db = open_db(dir);
    CHECK(db);
    check_all(db);
    verify_ok(db);
    kd_close(db);
}

/* The upkeep thread leaves a segment alone when the disk lacks room for
 * its copy plus 256 MiB (writers must not find the disk full because of
 * it); kd_consolidate, asked for, goes ahead. On a 32 MiB tmpfs (needs
 * root; skipped otherwise). */
static void test_upkeep_needs_room(void)
{
    char mnt[64] = "/tmp/kd_test_consolidate_room_XXXXXX", dir[128];
    if (!mkdtemp(mnt)) {
        CHECK(0);
        return;
    }
    if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=32m,mode=0700") != 0) {
        fprintf(stderr, "  SKIP: mount tmpfs: %s\n", strerror(errno));
        rmdir(mnt);
        return;
    }
    snprintf(dir, sizeof dir, "%s/db", mnt);
    kd_db *db = open_db(dir);
    CHECK(db);
    if (db && fill(db) == 0) {
        kd_consolidate_report r;
        CHECK_RC(kd__consolidate(db, 0, 1, &r), KD_OK); /* as the upkeep thread */
        CHECK_EQ_INT(r.segments, 0);
        CHECK_RC(kd_consolidate(db, 0, &r), KD_OK);
        CHECK(r.segments > 0);
        check_all(db);
    }
    if (db)
        kd_close(db);
    umount2(mnt, MNT_DETACH);
    rmdir(mnt);
}

int main(void)
{
    RUN(test_consolidate_reads_back);
    RUN(test_again_and_with_compaction);
    RUN(test_backup_restore);
    RUN(test_damaged_dictionary);
    RUN(test_unbuilt_index_is_listed);
    RUN(test_kill_during_consolidation);
    RUN(test_consolidate_while_reading);
    RUN(test_upkeep_consolidates);
    RUN(test_repair_consolidated);
    RUN(test_cancelled_rewrite);
    RUN(test_repair_without_dictionary);
    RUN(test_upkeep_needs_room);
    return HARNESS_DONE();
}
