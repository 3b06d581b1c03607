/*
 * test_store.c — the storage engine through the public API: versions and
 * their chain, get_at boundaries, deletes, conditions, batches, listings,
 * reopen (replay), torn tails, corruption, format version, locking, stats,
 * roots and verify.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/fs.h>
#include <sys/syscall.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"

static char dir[256];

static void fresh_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/kd_test_store_XXXXXX");
    if (!mkdtemp(dir))
        abort();
    rmdir(dir); /* kd_open creates it */
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

static char seg_path[512];
static const char *segment(int n)
{
    snprintf(seg_path, sizeof seg_path, "%s/log-%08d.kdl", dir, n);
    return seg_path;
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) ? -1 : (long)st.st_size;
}

static void test_put_get_chain(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    const char *vals[] = {"\"A\"", "\"B\"", "\"A\"", "\"B\"", "\"A\""};
    kd_version v[5];
    for (int i = 0; i < 5; i++)
        CHECK_RC(kd_put(db, "ns", "k", vals[i], strlen(vals[i]), &v[i]), KD_OK);
    CHECK_EQ_STR(v[0].previous_write_id, "");
    for (int i = 1; i < 5; i++) {
        CHECK_EQ_STR(v[i].previous_write_id, v[i - 1].write_id);
        CHECK(v[i].timestamp > v[i - 1].timestamp);
        CHECK(strcmp(v[i].write_id, v[i - 1].write_id) != 0);
    }
    CHECK_EQ_STR(v[0].version_id, v[2].version_id);
    CHECK_EQ_STR(v[1].version_id, v[3].version_id);
    CHECK(strcmp(v[0].version_id, v[1].version_id) != 0);

    kd_version *h;
    size_t n;
    CHECK_RC(kd_history(db, "ns", "k", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 5);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_STR(h[i].write_id, v[i].write_id);
    kd_free(h);
    CHECK_RC(kd_history(db, "ns", "k", KD_TIME_MIN, KD_TIME_MAX, 2, KD_HISTORY_NEWEST_FIRST, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(h[0].write_id, v[4].write_id);
    CHECK_EQ_STR(h[1].write_id, v[3].write_id);
    kd_free(h);
    CHECK_RC(kd_history(db, "ns", "k", v[1].timestamp, v[3].timestamp, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(h[0].write_id, v[1].write_id);
    kd_free(h);

    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.versions, 5);
    CHECK_EQ_INT(st.unique_values, 2);
    CHECK_EQ_INT(st.keys, 1);

    char *json;
    size_t len;
    kd_version meta;
    CHECK_RC(kd_get(db, "ns", "k", &json, &len, &meta), KD_OK);
    CHECK_EQ_STR(json, "\"A\"");
    CHECK_EQ_INT(len, 3);
    CHECK_EQ_STR(meta.write_id, v[4].write_id);
    kd_free(json);

    /* Reopen: everything replays identically. */
    kd_root *r1, *r2;
    size_t nr;
    CHECK_RC(kd_roots(db, &r1, &nr), KD_OK);
    CHECK_EQ_INT(kd_close(db), KD_OK);
    db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_RC(kd_roots(db, &r2, &nr), KD_OK);
    CHECK_EQ_STR(r1[0].hex, r2[0].hex);
    CHECK_EQ_STR(r1[1].hex, r2[1].hex);
    kd_free(r1);
    kd_free(r2);
    CHECK_RC(kd_history(db, "ns", "k", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 5);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_STR(h[i].write_id, v[i].write_id);
        CHECK_EQ_STR(h[i].version_id, v[i].version_id);
        CHECK_EQ_INT(h[i].timestamp, v[i].timestamp);
    }
    kd_free(h);
    /* New writes after reopen continue the chain with later timestamps. */
    kd_version v6;
    CHECK_RC(kd_put(db, "ns", "k", "1", 1, &v6), KD_OK);
    CHECK_EQ_STR(v6.previous_write_id, v[4].write_id);
    CHECK(v6.timestamp > v[4].timestamp);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions, 6);
    kd_close(db);
    rm_rf(dir);
}

static void test_get_at_boundaries(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    kd_version v[3];
    CHECK_RC(kd_put(db, "n", "k", "1", 1, &v[0]), KD_OK);
    CHECK_RC(kd_put(db, "n", "k", "2", 1, &v[1]), KD_OK);
    CHECK_RC(kd_delete(db, "n", "k", &v[2]), KD_OK);
    CHECK(v[2].deleted);
    char *json = NULL;
    kd_version m;
    CHECK_RC(kd_get_at(db, "n", "k", v[0].timestamp - 1, &json, NULL, &m), KD_ENOVERSION);
    CHECK_RC(kd_get_at(db, "n", "k", v[0].timestamp, &json, NULL, &m), KD_OK);
    CHECK_EQ_STR(json, "1");
    kd_free(json);
    CHECK_RC(kd_get_at(db, "n", "k", v[1].timestamp - 1, &json, NULL, &m), KD_OK);
    CHECK_EQ_STR(json, "1");
    kd_free(json);
    CHECK_RC(kd_get_at(db, "n", "k", v[1].timestamp, &json, NULL, &m), KD_OK);
    CHECK_EQ_STR(json, "2");
    kd_free(json);
    CHECK_RC(kd_get_at(db, "n", "k", v[2].timestamp - 1, &json, NULL, &m), KD_OK);
    CHECK_EQ_STR(json, "2");
    kd_free(json);
    CHECK_RC(kd_get_at(db, "n", "k", v[2].timestamp, &json, NULL, &m), KD_EDELETED);
    CHECK(m.deleted);
    CHECK_RC(kd_get_at(db, "n", "k", KD_TIME_MAX, &json, NULL, &m), KD_EDELETED);
    CHECK_RC(kd_get(db, "n", "k", &json, NULL, &m), KD_EDELETED);
    CHECK_RC(kd_get(db, "n", "nope", &json, NULL, &m), KD_ENOTFOUND);
    CHECK_RC(kd_get_at(db, "n", "nope", 0, &json, NULL, &m), KD_ENOTFOUND);
    CHECK_EQ_INT(kd_contains(db, "n", "k"), 0);
    CHECK_RC(kd_delete(db, "n", "k", NULL), KD_EDELETED);
    CHECK_RC(kd_delete(db, "n", "nope", NULL), KD_ENOTFOUND);
    /* get_value still reaches old values by version_id */
    CHECK_RC(kd_get_value(db, v[0].version_id, &json, NULL), KD_OK);
    CHECK_EQ_STR(json, "1");
    kd_free(json);
    kd_close(db);
    rm_rf(dir);
}

static void test_conditions_and_batch(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    kd_version a, b;
    CHECK_RC(kd_put_if(db, "n", "k", "1", 1, KD_EXPECT_ABSENT, &a), KD_OK);
    CHECK_RC(kd_put_if(db, "n", "k", "2", 1, KD_EXPECT_ABSENT, &b), KD_ECONFLICT);
    CHECK(strstr(kd_errmsg(db), a.write_id) != NULL);
    CHECK_RC(kd_put_if(db, "n", "k", "2", 1, a.write_id, &b), KD_OK);
    CHECK_RC(kd_put_if(db, "n", "k", "3", 1, a.write_id, NULL), KD_ECONFLICT);
    CHECK_RC(kd_put_if(db, "n", "k", "3", 1, "zz", NULL), KD_EINVALID);
    CHECK_RC(kd_delete_if(db, "n", "k", a.write_id, NULL), KD_ECONFLICT);
    CHECK_RC(kd_delete_if(db, "n", "k", b.write_id, NULL), KD_OK);
    CHECK_RC(kd_put_if(db, "n", "k", "4", 1, KD_EXPECT_ABSENT, NULL), KD_OK);

    kd_stats before, after;
    CHECK_RC(kd_stats_get(db, &before), KD_OK);
    /* A batch with a failing condition writes nothing. */
    kd_write w[3] = {{"n", "x", "1", 1, NULL}, {"n", "y", "2", 1, NULL}, {"n", "k", "5", 1, KD_EXPECT_ABSENT}};
    CHECK_RC(kd_put_batch(db, w, 3, NULL), KD_ECONFLICT);
    CHECK(strstr(kd_errmsg(db), "batch write 2") != NULL);
    /* Bad JSON in a batch writes nothing. */
    kd_write bad[2] = {{"n", "x", "1", 1, NULL}, {"n", "y", "x", 1, NULL}};
    CHECK_RC(kd_put_batch(db, bad, 2, NULL), KD_EINVALID);
    CHECK_RC(kd_stats_get(db, &after), KD_OK);
    CHECK_EQ_INT(after.versions, before.versions);
    CHECK_EQ_INT(kd_contains(db, "n", "x"), 0);

    /* Same key twice in a batch chains inside the batch. */
    kd_write ok[3] = {{"n", "x", "1", 1, KD_EXPECT_ABSENT}, {"n", "x", "2", 1, NULL}, {"n", "x", NULL, 0, NULL}};
    kd_version out[3];
    CHECK_RC(kd_put_batch(db, ok, 3, out), KD_OK);
    CHECK_EQ_STR(out[1].previous_write_id, out[0].write_id);
    CHECK_EQ_STR(out[2].previous_write_id, out[1].write_id);
    CHECK(out[2].deleted);
    CHECK(out[0].timestamp < out[1].timestamp && out[1].timestamp < out[2].timestamp);

    /* Large batch (table path) */
    enum { N = 1000 };
    static kd_write big[N];
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "b%04d", i % 500);
        big[i] = (kd_write){"big", keys[i], "[1]", 3, NULL};
    }
    static kd_version bo[N];
    CHECK_RC(kd_put_batch(db, big, N, bo), KD_OK);
    CHECK_EQ_STR(bo[700].previous_write_id, bo[200].write_id);
    CHECK_EQ_STR(bo[200].previous_write_id, "");
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    kd_close(db);
    rm_rf(dir);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keys added between listings (few or many, sorting before, among or after
 * those listed already) are listed in byte order: the sorted view takes
 * the new keys in by a merge. */
static void test_listing_after_additions(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    enum { ROUNDS = 12, MAX = 2000 };
    static char names[MAX][16];
    char *want[MAX];
    size_t total = 0;
    uint32_t x = 12345;
    for (int round = 0; round < ROUNDS; round++) {
        size_t add = round % 3 == 0 ? 1 : round % 3 == 1 ? 7 : 300;
        for (size_t i = 0; i < add && total < MAX; i++) {
            x = x * 1103515245u + 12345u;
            /* round 5 adds only keys before all others, round 6 after */
            snprintf(names[total], sizeof names[total], "%s%08x", round == 5 ? "0" : round == 6 ? "z" : "m",
                     (unsigned)(x >> 1));
            CHECK_RC(kd_put(db, "S", names[total], "1", 1, NULL), KD_OK);
            want[total] = names[total];
            total++;
        }
        qsort(want, total, sizeof *want, cmp_cstr);
        char **got = NULL;
        size_t n = 0;
        CHECK_RC(kd_list_keys(db, "S", NULL, NULL, 0, &got, &n), KD_OK);
        CHECK_EQ_INT(n, total);
        for (size_t i = 0; i < n && i < total; i++)
            if (strcmp(got[i], want[i]) != 0) {
                CHECK_EQ_STR(got[i], want[i]);
                break;
            }
        kd_free_list(got, n);
    }
    kd_close(db);
}

static void test_names_and_listing(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_RC(kd_put(db, "a:b", "c", "1", 1, NULL), KD_OK);
    CHECK_RC(kd_put(db, "a", "b:c", "2", 1, NULL), KD_OK);
    char *json;
    CHECK_RC(kd_get(db, "a:b", "c", &json, NULL, NULL), KD_OK);
    CHECK_EQ_STR(json, "1");
    kd_free(json);
    CHECK_RC(kd_get(db, "a", "b:c", &json, NULL, NULL), KD_OK);
    CHECK_EQ_STR(json, "2");
    kd_free(json);
    CHECK_RC(kd_put(db, "_kdx", "k", "1", 1, NULL), KD_ERESERVED);
    CHECK_RC(kd_put(db, "", "k", "1", 1, NULL), KD_EINVALID);
    CHECK_RC(kd_put(db, "n", "", "1", 1, NULL), KD_EINVALID);
    char longns[300];
    memset(longns, 'n', 256);
    longns[256] = 0;
    CHECK_RC(kd_put(db, longns, "k", "1", 1, NULL), KD_ETOOBIG);
    longns[255] = 0;
    CHECK_RC(kd_put(db, longns, "k", "1", 1, NULL), KD_OK);
    static char longkey[1100];
    memset(longkey, 'k', 1025);
    longkey[1025] = 0;
    CHECK_RC(kd_put(db, "n", longkey, "1", 1, NULL), KD_ETOOBIG);
    longkey[1024] = 0;
    CHECK_RC(kd_put(db, "n", longkey, "1", 1, NULL), KD_OK);

    const char *ks[] = {"b", "a", "ab", "c", "aa", "abc"};
    for (int i = 0; i < 6; i++)
        CHECK_RC(kd_put(db, "L", ks[i], "0", 1, NULL), KD_OK);
    CHECK_RC(kd_delete(db, "L", "c", NULL), KD_OK);
    char **names;
    size_t n;
    CHECK_RC(kd_list_keys(db, "L", NULL, NULL, 0, &names, &n), KD_OK);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_STR(names[0], "a");
    CHECK_EQ_STR(names[1], "aa");
    CHECK_EQ_STR(names[2], "ab");
    CHECK_EQ_STR(names[3], "abc");
    CHECK_EQ_STR(names[4], "b");
    kd_free_list(names, n);
    CHECK_RC(kd_list_keys(db, "L", "a", "aa", 2, &names, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(names[0], "ab");
    CHECK_EQ_STR(names[1], "abc");
    kd_free_list(names, n);
    CHECK_RC(kd_list_keys(db, "L", "ab", NULL, 0, &names, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    kd_free_list(names, n);
    CHECK_RC(kd_list_keys(db, "nothing", NULL, NULL, 0, &names, &n), KD_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_RC(kd_put(db, "gone", "k", "1", 1, NULL), KD_OK);
    CHECK_RC(kd_delete(db, "gone", "k", NULL), KD_OK);
    CHECK_RC(kd_list_namespaces(db, &names, &n), KD_OK);
    CHECK_EQ_INT(n, 5); /* L, a, a:b, n, nnn… */
    CHECK_EQ_STR(names[0], "L");
    CHECK_EQ_STR(names[1], "a");
    CHECK_EQ_STR(names[2], "a:b");
    kd_free_list(names, n);
    kd_close(db);
    rm_rf(dir);
}

/* kd_check_name answers, without a database, what a write would: the same
 * status and the same message, for the key too unless it is NULL. */
static void test_check_name(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    static char longns[300], longkey[1100];
    memset(longns, 'n', 256);
    memset(longkey, 'k', 1025);
    struct {
        const char *ns, *key;
    } cases[] = {{"ok", "fine"}, {"_kdx", "k"}, {"", "k"}, {"n", ""}, {longns, "k"}, {"n", longkey},
                 {"bad\xff", "k"}, {"n", "bad\xfe"}, {"_kd", ""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[2048] = "";
        int want = kd_put(db, cases[i].ns, cases[i].key, "1", 1, NULL);
        CHECK_RC(kd_check_name(cases[i].ns, cases[i].key, why, sizeof why), want);
        if (want != KD_OK)
            CHECK_EQ_STR(why, kd_errmsg(db));
    }
    char why[256] = "";
    CHECK_RC(kd_check_name("n", NULL, why, sizeof why), KD_OK); /* the namespace alone */
    CHECK_RC(kd_check_name("_kdq", NULL, why, sizeof why), KD_ERESERVED);
    CHECK(strstr(why, "'_kdq' is reserved") != NULL);
    CHECK_RC(kd_check_name(NULL, "k", why, sizeof why), KD_EINVALID);
    CHECK_EQ_STR(why, "namespace is missing");
    CHECK_RC(kd_check_name("n", "k", NULL, 0), KD_OK);
    /* A read of a name no key can have fails as its write does (it said
     * "not found"); reserved namespaces stay readable (the database's own). */
    char *json = NULL;
    size_t len = 0;
    kd_version *hist = NULL;
    size_t nh = 0;
    CHECK_RC(kd_get(db, "n", longkey, &json, &len, NULL), KD_ETOOBIG);
    CHECK(strstr(kd_errmsg(db), "key is 1025 bytes") != NULL);
    CHECK_RC(kd_get_at(db, longns, "k", kd_now(), &json, &len, NULL), KD_ETOOBIG);
    CHECK_RC(kd_history(db, "n", "bad\xfe", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &hist, &nh), KD_EINVALID);
    CHECK_RC(kd_get(db, "n", "missing", &json, &len, NULL), KD_ENOTFOUND);
    CHECK_RC(kd_get(db, "_kd.views", "missing", &json, &len, NULL), KD_ENOTFOUND);
    kd_close(db);
    rm_rf(dir);
}

/* Cut the newest segment at every offset inside its last record: the
 * database opens and only that record is gone. */
/* Files log-N.kdl.torn-OFF in the database directory: torn tails kept
 * aside before they were cut; the size of the last one found in *bytes. */
static int torn_files(long *bytes)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, ".kdl.torn-")) {
            char p[600];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            if (bytes)
                *bytes = file_size(p);
            n++;
        }
    if (d)
        closedir(d);
    return n;
}

static void test_torn_tail(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_RC(kd_put(db, "n", "a", "{\"x\":1}", 7, NULL), KD_OK);
    CHECK_RC(kd_put(db, "n", "b", "{\"y\":2}", 7, NULL), KD_OK);
    /* While open, the segment has space reserved beyond its end; closing
     * cuts it, so sizes are measured between opens. */
    kd_close(db);
    long before_last = file_size(segment(1));
    db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_RC(kd_put(db, "n", "c", "{\"z\":3}", 7, NULL), KD_OK);
    kd_close(db);
    long full = file_size(segment(1));
    CHECK(full > before_last);
    char *orig = malloc((size_t)full);
    int fd = open(segment(1), O_RDONLY);
    CHECK(read(fd, orig, (size_t)full) == full);
    close(fd);
    /* Each cut twice: the file ends there, or (as after a crash with space
     * reserved ahead) zero bytes follow. */
    for (long step = 0; step < 2 * (full - before_last); step++) {
        long cut = before_last + step / 2;
        fd = open(segment(1), O_WRONLY | O_TRUNC);
        CHECK(write(fd, orig, (size_t)cut) == cut);
        if (step % 2)
            CHECK(ftruncate(fd, cut + 65536) == 0);
        close(fd);
        db = open_db(KD_SYNC_NONE);
        CHECK(db);
        CHECK_EQ_INT(kd_contains(db, "n", "a"), 1);
        CHECK_EQ_INT(kd_contains(db, "n", "b"), 1);
        CHECK_EQ_INT(kd_contains(db, "n", "c"), 0);
        kd_verify_report rep;
        CHECK_RC(kd_verify(db, &rep), KD_OK);
        /* The cut tail is gone from disk and new writes append cleanly. */
        CHECK_RC(kd_put(db, "n", "d", "4", 1, NULL), KD_OK);
        kd_close(db);
        db = open_db(KD_SYNC_NONE);
        CHECK(db);
        CHECK_EQ_INT(kd_contains(db, "n", "d"), 1);
        kd_close(db);
    }
    CHECK_EQ_INT(torn_files(NULL), 0); /* one record written in part: nothing kept */
    free(orig);
    rm_rf(dir);
}

/* One flipped byte in an older record: open fails naming file and offset. */
static void test_flipped_byte(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_RC(kd_put(db, "n", "a", "\"hello\"", 7, NULL), KD_OK);
    kd_close(db);
    long second = file_size(segment(1));
    db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_RC(kd_put(db, "n", "b", "\"world\"", 7, NULL), KD_OK);
    kd_close(db);
    /* Every byte of the first record (after the 32-byte segment header). */
    for (long off = 32; off < second; off++) {
        int fd = open(segment(1), O_RDWR);
        unsigned char c;
        CHECK(pread(fd, &c, 1, off) == 1);
        c ^= 0x40;
        CHECK(pwrite(fd, &c, 1, off) == 1);
        close(fd);
        kd_db *bad = NULL;
        char err[512];
        kd_options *o = kd_options_new();
        kd_options_set_busy_timeout(o, 0);
        int rc = kd_open(dir, o, &bad, err, sizeof err);
        kd_options_free(o);
        CHECK_RC(rc, KD_ECORRUPT);
        CHECK(bad == NULL);
        CHECK(strstr(err, "log-00000001.kdl") != NULL);
        CHECK(strstr(err, "offset 32") != NULL);
        fd = open(segment(1), O_RDWR);
        c ^= 0x40;
        CHECK(pwrite(fd, &c, 1, off) == 1);
        close(fd);
    }
    db = open_db(KD_SYNC_NONE);
    CHECK(db);
    kd_close(db);
    rm_rf(dir);
}

/* Writes key kNN (NN from `from` to `to` - 1) with values of ~3,000 bytes,
 * so that their records span several 4 KiB pages. */
static int put_big(kd_db *db, int from, int to)
{
    char key[8], val[3100];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        int n = snprintf(val, sizeof val, "\"%02d", i);
        memset(val + n, 'a' + i % 26, 3000);
        val[n + 3000] = '"';
        if (kd_put(db, "n", key, val, (size_t)n + 3001, NULL) != KD_OK)
            return -1;
    }
    return 0;
}

static int zero_bytes(const char *path, long off, long len)
{
    char *z = calloc(1, (size_t)len);
    int fd = open(path, O_RDWR);
    int ok = z && fd >= 0 && pwrite(fd, z, (size_t)len, off) == len;
    if (fd >= 0)
        close(fd);
    free(z);
    return ok ? 0 : -1;
}

static int open_rc(char *err, size_t errlen)
{
    kd_db *db = NULL;
    kd_options *o = kd_options_new();
    kd_options_set_busy_timeout(o, 0);
    int rc = kd_open(dir, o, &db, err, errlen);
    kd_options_free(o);
    if (db)
        kd_close(db);
    return rc;
}

/* After a crash the kernel may have written later pages of a group of
 * unacknowledged records but not an earlier one, which reads as zeros
 * (the space was zero-filled), or reads as it was at an earlier writeback
 * (zeros after the records written by then): that is a torn tail, cut from
 * the first damaged record on, not corruption. Zeros that end before the
 * page does, or a lost page in a sealed segment, are still corruption.
 * (The file is edited by hand: k00..k07 stand for what was synced, k08..
 * k11 for a group of writes not yet acknowledged.) */
static void test_lost_page_in_the_tail(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_EQ_INT(put_big(db, 0, 8), 0);
    kd_close(db);
    long acked = file_size(segment(1)); /* k00..k07 */
    db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_EQ_INT(put_big(db, 8, 12), 0);
    kd_close(db);
    long full = file_size(segment(1));
    long page = (acked + 4095) & ~4095L; /* the first page wholly after k07 */
    CHECK(page + 4096 < full);
    char *orig = malloc((size_t)full);
    int fd = open(segment(1), O_RDONLY);
    CHECK(orig && read(fd, orig, (size_t)full) == full);
    close(fd);

    /* The page k08 begins in as it was before k08 was written, the pages
     * after it written: k08..k11 go. */
    char err[512];
    CHECK(acked % 4096 != 0);
    CHECK_EQ_INT(zero_bytes(segment(1), acked, 4096 - acked % 4096), 0);
    db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_EQ_INT(kd_contains(db, "n", "k07"), 1);
    for (int i = 8; i < 12; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%02d", i);
        CHECK_EQ_INT(kd_contains(db, "n", key), 0);
    }
    kd_close(db);
    fd = open(segment(1), O_WRONLY | O_TRUNC);
    CHECK(write(fd, orig, (size_t)full) == full);
    close(fd);

    /* The same page written back while k08 was being copied into it
     * (through the mapping): its header and a few bytes, then zeros. */
    CHECK(acked % 4096 < 4096 - 100);
    CHECK_EQ_INT(zero_bytes(segment(1), acked + 40, 4096 - (acked + 40) % 4096), 0);
    db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_EQ_INT(kd_contains(db, "n", "k07"), 1);
    CHECK_EQ_INT(kd_contains(db, "n", "k08"), 0);
    CHECK_EQ_INT(kd_contains(db, "n", "k11"), 0);
    kd_close(db);
    fd = open(segment(1), O_WRONLY | O_TRUNC);
    CHECK(write(fd, orig, (size_t)full) == full);
    close(fd);

    /* Less than a page of zeros inside k08..k11, ending before the page
     * does: still corruption. */
    CHECK_EQ_INT(zero_bytes(segment(1), page + 100, 1000), 0);
    CHECK_RC(open_rc(err, sizeof err), KD_ECORRUPT);
    CHECK(strstr(err, "log-00000001.kdl") != NULL);

    /* A whole page: k00..k07 stay, the records from the torn one on go,
     * kept aside in a file (a device that lost a write would leave the
     * same, with acknowledged records in it). */
    CHECK_EQ_INT(zero_bytes(segment(1), page, 4096), 0);
    int torn_before = torn_files(NULL);
    db = open_db(KD_SYNC_NONE);
    CHECK(db);
    long kept_bytes = 0;
    CHECK_EQ_INT(torn_files(&kept_bytes), torn_before + 1);
    CHECK(kept_bytes > 4096 && kept_bytes <= full - acked);
    for (int i = 0; i < 8; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%02d", i);
        CHECK_EQ_INT(kd_contains(db, "n", key), 1);
    }
    int present = 1, kept = 8;
    for (int i = 8; i < 12; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%02d", i);
        int c = kd_contains(db, "n", key);
        CHECK(c == 0 || present); /* no hole: once one is gone, the rest are */
        present = c == 1;
        kept += c == 1;
    }
    CHECK(kept < 12);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_put(db, "n", "after", "1", 1, NULL), KD_OK);
    kd_close(db);
    db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_EQ_INT(kd_contains(db, "n", "after"), 1);
    kd_close(db);

    /* The same page in a sealed segment: corruption. */
    rm_rf(dir);
    fresh_dir();
    kd_options *o = kd_options_new();
    kd_options_set_segment_size(o, 64 << 10);
    db = NULL;
    CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
    kd_options_free(o);
    CHECK_EQ_INT(put_big(db, 0, 30), 0); /* segment 1 fills past 64 KiB */
    kd_close(db);
    CHECK(file_size(segment(2)) > 0);
    CHECK_EQ_INT(zero_bytes(segment(1), 8192, 4096), 0);
    CHECK_RC(open_rc(err, sizeof err), KD_ECORRUPT);
    CHECK(strstr(err, "log-00000001.kdl") != NULL);
    free(orig);
    rm_rf(dir);
}

/* A crash while creating the newest segment can leave it header-long with
 * the header's bytes unwritten (zeros): it holds no record and gets its
 * header again. Longer, it was synced with its header before it grew: a
 * bad header there is damage, whatever follows. */
static void test_zero_newest_segment(void)
{
    static const long sizes[] = {0, 20, 32};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        fresh_dir();
        kd_db *db = open_db(KD_SYNC_ALWAYS);
        CHECK(db);
        CHECK_RC(kd_put(db, "n", "a", "1", 1, NULL), KD_OK);
        kd_close(db);
        int fd = open(segment(2), O_RDWR | O_CREAT, 0644);
        CHECK(fd >= 0 && ftruncate(fd, sizes[i]) == 0);
        close(fd);
        db = open_db(KD_SYNC_ALWAYS);
        CHECK(db);
        CHECK_EQ_INT(kd_contains(db, "n", "a"), 1);
        CHECK_RC(kd_put(db, "n", "b", "2", 1, NULL), KD_OK);
        kd_close(db);
        db = open_db(KD_SYNC_ALWAYS);
        CHECK(db);
        CHECK_EQ_INT(kd_contains(db, "n", "b"), 1);
        kd_verify_report rep;
        CHECK_RC(kd_verify(db, &rep), KD_OK);
        kd_close(db);
        rm_rf(dir);
    }
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    CHECK_RC(kd_put(db, "n", "a", "1", 1, NULL), KD_OK);
    kd_close(db);
    char err[512];
    static const long damaged[] = {33, 4096, 100000};
    for (size_t i = 0; i < sizeof damaged / sizeof damaged[0]; i++) {
        int fd = open(segment(2), O_RDWR | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0 && ftruncate(fd, damaged[i]) == 0);
        close(fd);
        CHECK_RC(open_rc(err, sizeof err), KD_ECORRUPT);
        CHECK(strstr(err, "log-00000002.kdl") != NULL);
    }
    rm_rf(dir);
}

/* A process that exits without kd_close leaves the reserved zero tail. */
static void test_unclean_exit(void)
{
    fresh_dir();
    pid_t pid = fork();
    if (pid == 0) {
        kd_db *child = open_db(KD_SYNC_ALWAYS);
        if (!child || kd_put(child, "n", "a", "1", 1, NULL) || kd_put(child, "n", "b", "2", 1, NULL))
            _exit(1);
        _exit(0); /* no kd_close */
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(file_size(segment(1)) > 1000); /* the reserve is still there */
    kd_db *db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    CHECK_EQ_INT(kd_contains(db, "n", "a"), 1);
    CHECK_EQ_INT(kd_contains(db, "n", "b"), 1);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions, 2);
    CHECK_RC(kd_put(db, "n", "c", "3", 1, NULL), KD_OK);
    kd_close(db);
    db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    CHECK_EQ_INT(kd_contains(db, "n", "c"), 1);
    kd_close(db);
    rm_rf(dir);
}

/* A process started with stdin, stdout and stderr closed: the database's
 * files must not become fds 0-2, or the process's next printf (or an error
 * message on stderr) lands in the log or the lock. The child writes to fds
 * 0-2 after every call, as a careless program would. */
static void test_closed_standard_fds(void)
{
    fresh_dir();
    pid_t pid = fork();
    if (pid == 0) {
        close(0);
        close(1);
        close(2);
        static const char junk[] = "printed by the application\n";
        kd_db *child = open_db(KD_SYNC_ALWAYS);
        for (int fd = 0; fd <= 2; fd++)
            (void)!write(fd, junk, sizeof junk - 1);
        if (!child || kd_put(child, "n", "a", "1", 1, NULL) || kd_put(child, "n", "b", "2", 1, NULL))
            _exit(1);
        for (int fd = 0; fd <= 2; fd++)
            (void)!write(fd, junk, sizeof junk - 1);
        kd_close(child);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kd_db *db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions, 2);
    CHECK_EQ_INT(kd_contains(db, "n", "a"), 1);
    CHECK_EQ_INT(kd_contains(db, "n", "b"), 1);
    kd_close(db);
    rm_rf(dir);
}

/* Several sealed segments of 64 KiB (sync none), then closed; with a
 * checkpoint written halfway when `ckpt`. */
static int write_segments(int ckpt)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_db *db = NULL;
    int rc = kd_open(dir, o, &db, NULL, 0);
    kd_options_free(o);
    static char val[2100];
    for (int i = 0; i < 200 && !rc; i++) {
        int n = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%02000d\"}", i, i);
        rc = kd_put(db, "s", i % 2 ? "odd" : "even", val, (size_t)n, NULL);
        if (!rc && ckpt && i == 60)
            rc = kd_checkpoint(db);
    }
    kd_close(db);
    return rc;
}

/* Where segment n's first record ends (its second starts). */
static long first_record_end(int n)
{
    int fd = open(segment(n), O_RDONLY);
    unsigned char h[4];
    long end = fd >= 0 && pread(fd, h, 4, 32) == 4 ? 32 + 16 + (long)(h[0] | h[1] << 8 | h[2] << 16 | (long)h[3] << 24)
                                                   : -1;
    if (fd >= 0)
        close(fd);
    return end;
}

/* History lost from the log must fail the open (it opened as a shorter
 * history, without a word): segment 1 removed; a sealed segment cut at a
 * record boundary (with and without a checkpoint before the cut); the
 * newest segment cut at a record boundary is a crash before those writes,
 * and opens. */
static void test_lost_history_refused(void)
{
    for (int ckpt = 0; ckpt <= 1; ckpt++) {
        fresh_dir();
        CHECK_RC(write_segments(ckpt), KD_OK);
        CHECK(file_size(segment(5)) > 0);
        kd_options *o = kd_options_new();
        kd_db *db = NULL;
        char err[512];
        /* a sealed segment after the checkpoint, cut after its first record */
        char keep[600];
        snprintf(keep, sizeof keep, "%s.seg4", dir);
        CHECK(rename(segment(4), keep) == 0);
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", keep, segment(4));
        CHECK(system(cmd) == 0);
        long cut = first_record_end(4);
        CHECK(cut > 48 && cut < file_size(segment(4)));
        CHECK(truncate(segment(4), cut) == 0);
        CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_ECORRUPT);
        CHECK(strstr(err, "log-00000005.kdl") && strstr(err, "records before this one are missing"));
        CHECK(rename(keep, segment(4)) == 0);
        CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK); /* whole again */
        kd_verify_report rep;
        CHECK_RC(kd_verify(db, &rep), KD_OK);
        kd_close(db);
        /* segment 1 removed */
        snprintf(keep, sizeof keep, "%s.seg1", dir);
        CHECK(rename(segment(1), keep) == 0);
        CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_ECORRUPT);
        CHECK(strstr(err, "log-00000002.kdl: segment 1 is missing before it"));
        CHECK(rename(keep, segment(1)) == 0);
        /* the newest segment cut at a record boundary: opens */
        int last = 5;
        while (file_size(segment(last + 1)) > 0)
            last++;
        cut = first_record_end(last);
        CHECK(cut > 48);
        CHECK(truncate(segment(last), cut) == 0);
        CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
        CHECK_RC(kd_verify(db, &rep), KD_OK);
        kd_close(db);
        kd_options_free(o);
        unlink(keep);
        rm_rf(dir);
    }
}

static void test_newer_format_refused(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    CHECK_RC(kd_put(db, "n", "a", "1", 1, NULL), KD_OK);
    kd_close(db);
    /* Rewrite the header with format version 99 and a valid checksum: the
     * format is refused, not called corrupt. Checksum computed by reopening
     * is not possible from here, so patch version and expect FORMAT or
     * CORRUPT? No: compute CRC-32C here. */
    unsigned char hdr[32];
    int fd = open(segment(1), O_RDWR);
    CHECK(pread(fd, hdr, 32, 0) == 32);
    hdr[8] = 99;
    uint32_t crc = ~0u;
    for (int i = 0; i < 28; i++) {
        crc ^= hdr[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
    }
    crc = ~crc;
    for (int i = 0; i < 4; i++)
        hdr[28 + i] = (unsigned char)(crc >> (8 * i));
    CHECK(pwrite(fd, hdr, 32, 0) == 32);
    close(fd);
    char err[512];
    kd_db *bad = NULL;
    CHECK_RC(kd_open(dir, NULL, &bad, err, sizeof err), KD_EFORMAT);
    CHECK(strstr(err, "format version 99") != NULL);
    rm_rf(dir);
}

static void test_lock_busy(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    kd_options *o = kd_options_new();
    kd_options_set_busy_timeout(o, 100);
    kd_db *second = NULL;
    char err[512];
    CHECK_RC(kd_open(dir, o, &second, err, sizeof err), KD_EBUSY);
    CHECK(strstr(err, "locked") != NULL);
    kd_close(db);
    CHECK_RC(kd_open(dir, o, &second, err, sizeof err), KD_OK);
    kd_close(second);
    kd_options_free(o);
    rm_rf(dir);
}

static void test_bad_dir(void)
{
    kd_db *db = NULL;
    char err[512];
    CHECK_RC(kd_open("/proc/version/db", NULL, &db, err, sizeof err), KD_EIO);
    CHECK(strstr(err, "/proc/version/db") != NULL);
    CHECK(db == NULL);
    CHECK_RC(kd_open("", NULL, &db, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_open("/etc/hostname", NULL, &db, err, sizeof err), KD_EINVALID);
}

static void test_value_cache_and_reread(void)
{
    fresh_dir();
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_cache_size(o, 64 * 1024); /* small: forces log reads */
    kd_db *db = NULL;
    char err[512];
    CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
    kd_options_free(o);
    char val[2000];
    for (int i = 0; i < 500; i++) {
        int n = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%0900d\"}", i, i);
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        CHECK_RC(kd_put(db, "c", key, val, (size_t)n, NULL), KD_OK);
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 500; i++) {
            char key[16], *json;
            snprintf(key, sizeof key, "k%d", i);
            int n = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%0900d\"}", i, i);
            size_t len;
            CHECK_RC(kd_get(db, "c", key, &json, &len, NULL), KD_OK);
            CHECK_EQ_INT(len, n);
            CHECK(memcmp(json, val, len) == 0);
            kd_free(json);
        }
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK(st.cache_bytes <= 64 * 1024);
    CHECK(st.cache_misses > 0);
    kd_close(db);
    rm_rf(dir);
}

/* Small segments: writes rotate through many files; everything reads back,
 * survives reopen and verifies; a torn tail in the newest segment is cut. */
static void test_segment_rotation(void)
{
    fresh_dir();
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_options_set_cache_size(o, 0);
    CHECK_RC(kd_options_set_segment_size(o, 1000), KD_EINVALID);
    kd_db *db = NULL;
    char err[512];
    CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
    static char val[1100];
    kd_version first;
    for (int i = 0; i < 400; i++) {
        int n = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%01000d\"}", i, i);
        char key[16];
        snprintf(key, sizeof key, "k%d", i % 50);
        CHECK_RC(kd_put(db, "r", key, val, (size_t)n, i == 0 ? &first : NULL), KD_OK);
    }
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK(st.segments >= 6);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_EQ_INT(rep.segments, st.segments);
    CHECK_EQ_INT(rep.versions, 400);
    kd_close(db);
    CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
    for (int i = 350; i < 400; i++) {
        int n = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%01000d\"}", i, i);
        char key[16], *json;
        snprintf(key, sizeof key, "k%d", i % 50);
        CHECK_RC(kd_get(db, "r", key, &json, NULL, NULL), KD_OK);
        CHECK(strlen(json) == (size_t)n && memcmp(json, val, (size_t)n) == 0);
        kd_free(json);
    }
    /* The first value, in segment 1, is still reachable. */
    char *json;
    CHECK_RC(kd_get_value(db, first.version_id, &json, NULL), KD_OK);
    CHECK(strstr(json, "\"i\":0,") != NULL);
    kd_free(json);
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    kd_close(db);
    kd_options_free(o);
    rm_rf(dir);
}

typedef struct scanned {
    char keys[32][16];
    char vals[32][32];
    int n, stop_at;
} scanned;

static int on_scan(void *ctx, const char *key, const char *value, size_t len, const kd_version *v)
{
    scanned *s = ctx;
    if (s->stop_at && s->n == s->stop_at)
        return 99;
    snprintf(s->keys[s->n], sizeof s->keys[0], "%s", key);
    snprintf(s->vals[s->n], sizeof s->vals[0], "%.*s", (int)len, value);
    if (v->deleted || strlen(v->write_id) != 64)
        return -1000;
    s->n++;
    return 0;
}

/* kd_scan agrees with listing and getting: order, prefix, start_after,
 * limit, state at a time (a key deleted since is included), early stop. */
static void test_scan(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    const char *ks[] = {"b", "a", "ab", "c", "aa", "abc"};
    for (int i = 0; i < 6; i++) {
        char v[16];
        int n = snprintf(v, sizeof v, "[%d]", i);
        CHECK_RC(kd_put(db, "S", ks[i], v, (size_t)n, NULL), KD_OK);
    }
    kd_version before;
    CHECK_RC(kd_put(db, "S", "c", "\"c2\"", 4, &before), KD_OK);
    CHECK_RC(kd_delete(db, "S", "c", NULL), KD_OK);
    scanned s = {0};
    CHECK_RC(kd_scan(db, "S", NULL, NULL, 0, KD_TIME_MAX, on_scan, &s), KD_OK);
    CHECK_EQ_INT(s.n, 5);
    const char *want[] = {"a", "aa", "ab", "abc", "b"};
    for (int i = 0; i < 5; i++) {
        char *json;
        CHECK_EQ_STR(s.keys[i], want[i]);
        CHECK_RC(kd_get(db, "S", want[i], &json, NULL, NULL), KD_OK);
        CHECK_EQ_STR(s.vals[i], json);
        kd_free(json);
    }
    memset(&s, 0, sizeof s);
    CHECK_RC(kd_scan(db, "S", "a", "aa", 2, KD_TIME_MAX, on_scan, &s), KD_OK);
    CHECK_EQ_INT(s.n, 2);
    CHECK_EQ_STR(s.keys[0], "ab");
    CHECK_EQ_STR(s.keys[1], "abc");
    memset(&s, 0, sizeof s);
    CHECK_RC(kd_scan(db, "S", NULL, NULL, 0, before.timestamp, on_scan, &s), KD_OK);
    CHECK_EQ_INT(s.n, 6); /* c was live then */
    CHECK_EQ_STR(s.keys[5], "c");
    CHECK_EQ_STR(s.vals[5], "\"c2\"");
    memset(&s, 0, sizeof s);
    s.stop_at = 3;
    CHECK_EQ_INT(kd_scan(db, "S", NULL, NULL, 0, KD_TIME_MAX, on_scan, &s), 99);
    CHECK_EQ_INT(s.n, 3);
    memset(&s, 0, sizeof s);
    CHECK_RC(kd_scan(db, "nothing", NULL, NULL, 0, KD_TIME_MAX, on_scan, &s), KD_OK);
    CHECK_EQ_INT(s.n, 0);
    kd_close(db);
    rm_rf(dir);
}

/* Scans of more keys than one internal page (256) resume correctly. */
typedef struct walk {
    char **keys;
    size_t n, seen;
    int bad;
} walk;

static int on_walk(void *ctx, const char *key, const char *value, size_t len, const kd_version *v)
{
    walk *w = ctx;
    char num[32];
    (void)v;
    snprintf(num, sizeof num, "%.*s", (int)len, value); /* value is not NUL-terminated */
    if (w->seen >= w->n || strcmp(w->keys[w->seen], key) != 0 || atoi(key + 1) != atoi(num))
        w->bad++;
    w->seen++;
    return 0;
}

static void test_scan_many(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_NONE);
    CHECK(db);
    for (int i = 0; i < 1000; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "k%04d", i);
        int n = snprintf(v, sizeof v, "%d", i);
        CHECK_RC(kd_put(db, "M", k, v, (size_t)n, NULL), KD_OK);
        if (i % 7 == 3)
            CHECK_RC(kd_delete(db, "M", k, NULL), KD_OK);
    }
    char **keys;
    size_t n;
    CHECK_RC(kd_list_keys(db, "M", NULL, NULL, 0, &keys, &n), KD_OK);
    walk w = {keys, n, 0, 0};
    CHECK_RC(kd_scan(db, "M", NULL, NULL, 0, KD_TIME_MAX, on_walk, &w), KD_OK);
    CHECK_EQ_INT(w.bad, 0);
    CHECK_EQ_INT(w.seen, n);
    CHECK(n > 800);
    kd_free_list(keys, n);
    kd_close(db);
    rm_rf(dir);
}

/* An open that fails after replaying some segments closes what it opened
 * and nothing else (it once truncated fd 0). */
static void test_failed_open_leaves_fds_alone(void)
{
    fresh_dir();
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_db *db = NULL;
    char err[512];
    CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
    static char val[2100];
    for (int i = 0; i < 200; i++) {
        int n = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%02000d\"}", i, i);
        CHECK_RC(kd_put(db, "s", "k", val, (size_t)n, NULL), KD_OK);
    }
    kd_close(db);
    /* damage segment 2 of several */
    int fd = open(segment(2), O_RDWR);
    unsigned char c = 0xff;
    CHECK(pwrite(fd, &c, 1, 100) == 1);
    close(fd);
    char probe[] = "/tmp/kd_test_fd0_XXXXXX";
    int pfd = mkstemp(probe);
    CHECK(pfd >= 0);
    CHECK(write(pfd, "hello", 5) == 5);
    int saved = dup(0);
    CHECK(dup2(pfd, 0) == 0);
    int rc = kd_open(dir, o, &db, err, sizeof err);
    dup2(saved, 0);
    close(saved);
    close(pfd);
    kd_options_free(o);
    CHECK_RC(rc, KD_ECORRUPT);
    CHECK_EQ_INT(file_size(probe), 5);
    unlink(probe);
    rm_rf(dir);
}

/* A process waiting for the lock while the directory is swapped (as
 * kd_repair does) must end up holding the lock of the directory now at that
 * path, not of the file it first opened. */
static void test_lock_follows_directory_swap(void)
{
    fresh_dir();
    char other[300];
    snprintf(other, sizeof other, "%s.other", dir);
    CHECK(mkdir(other, 0755) == 0);
    int opened[2], ready[2], done[2];
    CHECK(pipe(opened) == 0 && pipe(ready) == 0 && pipe(done) == 0);
    /* Fork first: a child forked after the open would share the parent's
     * lock (flock belongs to the open file, which fork shares). */
    pid_t pid = fork();
    if (pid == 0) {
        int fd;
        char err[256], x;
        /* Only the parent writes these: then a parent that stops early
         * gives the child end-of-file instead of leaving it waiting. */
        close(opened[1]);
        close(done[1]);
        close(ready[0]);
        if (read(opened[0], &x, 1) != 1)
            _exit(2);
        int rc = kd__lock_dir(dir, 10000, &fd, err, sizeof err);
        char r = rc == KD_OK ? 'y' : 'n';
        if (write(ready[1], &r, 1) != 1)
            _exit(2);
        if (read(done[0], &x, 1) != 1)
            _exit(2);
        _exit(0);
    }
    kd_db *a = open_db(KD_SYNC_NONE);
    CHECK(a);
    CHECK(write(opened[1], "x", 1) == 1);
    usleep(100000); /* the child is now waiting on the first LOCK */
    CHECK(syscall(SYS_renameat2, AT_FDCWD, other, AT_FDCWD, dir, RENAME_EXCHANGE) == 0);
    kd_close(a); /* releases the lock on the old LOCK, now in `other` */
    char r;
    CHECK(read(ready[0], &r, 1) == 1);
    CHECK(r == 'y');
    /* The child must hold the LOCK that is at `dir` now. */
    int fd;
    char err[256];
    CHECK_RC(kd__lock_dir(dir, 0, &fd, err, sizeof err), KD_EBUSY);
    CHECK(write(done[1], "x", 1) == 1);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", other);
    CHECK(system(cmd) == 0);
    rm_rf(dir);
}

/* The temporary files of writes that a crash interrupted (a segment's
 * rewrite, the checkpoint's, the vector index's, a dictionary's, ...) are
 * removed at open; nothing else in the directory is touched, and the data
 * is all there. Fails if the open leaves any of them. */
static void test_leftovers_removed(void)
{
    fresh_dir();
    kd_db *db = open_db(KD_SYNC_ALWAYS);
    CHECK(db);
    CHECK_RC(kd_put(db, "ns", "k", "{\"a\":1}", 7, NULL), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    static const char *const leftovers[] = {"log-00000001.kdl.compact", "index.ckpt.tmp", "vectors.idx.tmp",
                                            "NODE.tmp", "compact.pending.tmp", "zdict-00000002.tmp"};
    static const char *const kept[] = {"notes.txt", "log-00000001.kdl.bak", "zdict-2.tmp", "mine.tmp"};
    char p[600];
    for (size_t i = 0; i < sizeof leftovers / sizeof *leftovers; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, leftovers[i]);
        FILE *f = fopen(p, "w");
        CHECK(f && fputs("partial", f) >= 0);
        if (f)
            fclose(f);
    }
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, kept[i]);
        FILE *f = fopen(p, "w");
        CHECK(f);
        if (f)
            fclose(f);
    }
    CHECK((db = open_db(KD_SYNC_ALWAYS)));
    for (size_t i = 0; i < sizeof leftovers / sizeof *leftovers; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, leftovers[i]);
        if (access(p, F_OK) == 0)
            fprintf(stderr, "  %s is still there\n", leftovers[i]);
        CHECK(access(p, F_OK) != 0);
    }
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, kept[i]);
        CHECK(access(p, F_OK) == 0);
    }
    char *val = NULL;
    size_t len = 0;
    CHECK_RC(kd_get(db, "ns", "k", &val, &len, NULL), KD_OK);
    CHECK(val && len == 7 && !memcmp(val, "{\"a\":1}", 7));
    kd_free(val);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_put_get_chain);
    RUN(test_get_at_boundaries);
    RUN(test_check_name);
    RUN(test_conditions_and_batch);
    RUN(test_names_and_listing);
    RUN(test_listing_after_additions);
    RUN(test_torn_tail);
    RUN(test_flipped_byte);
    RUN(test_lost_page_in_the_tail);
    RUN(test_zero_newest_segment);
    RUN(test_unclean_exit);
    RUN(test_closed_standard_fds);
    RUN(test_lost_history_refused);
    RUN(test_newer_format_refused);
    RUN(test_lock_busy);
    RUN(test_bad_dir);
    RUN(test_value_cache_and_reread);
    RUN(test_segment_rotation);
    RUN(test_scan);
    RUN(test_scan_many);
    RUN(test_failed_open_leaves_fds_alone);
    RUN(test_lock_follows_directory_swap);
    RUN(test_leftovers_removed);
    return HARNESS_DONE();
}
