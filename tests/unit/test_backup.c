/*
 * test_backup.c — kd_backup, kd_restore and kd_backup_info_read.
 *
 * A restored database must hold the very same log: the test compares the
 * record streams of source and copy byte for byte (so every version_id,
 * write_id, timestamp and reserved-namespace write — views, indexes,
 * vectors — is identical), the roots, and reads through the API. Chains
 * of incrementals restore to the source; wrong order, gaps and files of
 * another database are refused; every single-byte flip and every
 * truncation of a small backup is refused and creates nothing; a backup
 * taken while another thread writes is a consistent prefix of the log;
 * --at cuts at a transaction boundary; a backup killed midway leaves no
 * file, and its temporary file is removed by the next backup.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backup/backup_int.h"
#include "harness.h"
#include "korudelta.h"
#include "store/format.h"
#include "store/segment.h"
#include "util/crc32c.h"
#include "util/sha.h"

static char root_dir[256];

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", root_dir, name);
}

static kd_db *open_at(const char *dir)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_busy_timeout(o, 0);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "open %s: %s\n", dir, err);
    kd_options_free(o);
    return db;
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Entries of root_dir whose name starts with prefix. */
static int count_prefixed(const char *prefix)
{
    DIR *d = opendir(root_dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

/* ---- the log of a database directory, record by record ---- */

typedef struct digest {
    kd__sha sha;
    uint64_t records;
    uint8_t roots[4096][KD__HASH_LEN]; /* root after each record (first 4096) */
} digest;

static int dig_rec(void *ctx, uint64_t seg, uint64_t off, uint8_t type, const uint8_t *payload, size_t len,
                   char *why, size_t whylen)
{
    digest *d = ctx;
    uint8_t t = type;
    kd__sha_update(&d->sha, &t, 1);
    kd__sha_update(&d->sha, payload, len);
    if (d->records < 4096 && len >= KD__TXN_HEADER_LEN)
        memcpy(d->roots[d->records], payload + 8, KD__HASH_LEN);
    d->records++;
    return 0;
}

/* SHA-256 over every record of the log in dir (which must be closed). */
static int log_digest(const char *dir, digest *d, uint8_t out[KD__HASH_LEN], uint64_t *nsegs)
{
    kd__sha_init(&d->sha);
    d->records = 0;
    uint64_t no = 1;
    for (;; no++) {
        char p[512], name[32];
        snprintf(p, sizeof p, "%s/log-%08llu.kdl", dir, (unsigned long long)no);
        (void)name;
        if (!exists(p))
            break;
        uint64_t end, size;
        char err[512];
        if (kd__segment_walk(p, no, 0, 0, dig_rec, d, NULL, &end, &size, err, sizeof err)) {
            fprintf(stderr, "walk: %s\n", err);
            return -1;
        }
    }
    if (nsegs)
        *nsegs = no - 1;
    kd__sha_final(&d->sha, out);
    return 0;
}

static digest dg1, dg2;

static int same_log(const char *a, const char *b)
{
    uint8_t x[KD__HASH_LEN], y[KD__HASH_LEN];
    if (log_digest(a, &dg1, x, NULL) || log_digest(b, &dg2, y, NULL))
        return 0;
    if (dg1.records != dg2.records)
        fprintf(stderr, "records: %llu vs %llu\n", (unsigned long long)dg1.records, (unsigned long long)dg2.records);
    return dg1.records == dg2.records && !memcmp(x, y, KD__HASH_LEN);
}

/* Roots as one string ("storage=…;views=…;…"). */
static void roots_text(kd_db *db, char *out, size_t n)
{
    kd_root *r = NULL;
    size_t k = 0;
    out[0] = '\0';
    if (kd_roots(db, &r, &k))
        return;
    size_t used = 0;
    for (size_t i = 0; i < k; i++)
        used += (size_t)snprintf(out + used, used < n ? n - used : 0, "%s=%s;", r[i].name, r[i].hex);
    kd_free(r);
}

static void roots_of_dir(const char *dir, char *out, size_t n)
{
    kd_db *db = open_at(dir);
    out[0] = '\0';
    if (db) {
        roots_text(db, out, n);
        kd_close(db);
    }
}

/* ---- filling a database ---- */

static void fill(kd_db *db, int from, int to)
{
    char key[32], val[128];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "k%03d", i % 37);
        snprintf(val, sizeof val, "{\"n\":%d,\"age\":%d,\"s\":\"%0*d\"}", i, 20 + i % 50, 10 + i % 60, i);
        kd_put(db, "users", key, val, strlen(val), NULL);
        if (i % 11 == 5)
            kd_delete(db, "users", key, NULL);
        if (i % 13 == 0) {
            kd_write w[3] = {{"orders", "a", "1", 1, NULL}, {"orders", "b", "[1,2]", 5, NULL}, {"orders", "a", "2", 1, NULL}};
            kd_put_batch(db, w, 3, NULL);
        }
        if (i % 17 == 3) {
            float v[3] = {(float)i, 1.0f, -0.5f};
            snprintf(key, sizeof key, "v%d", i % 5);
            kd_vector_put(db, "docs", key, "m1", v, 3, "{\"t\":1}", 7, NULL);
        }
    }
}

static kd_db *make_source(const char *dir)
{
    kd_db *db = open_at(dir);
    if (!db)
        return NULL;
    fill(db, 0, 60);
    kd_index_create(db, "users", "age");
    kd_query *q = NULL;
    char err[256];
    const char *qj = "{\"filter\":\"age > 40\"}";
    if (kd_query_parse(qj, strlen(qj), &q, err, sizeof err) == 0) {
        kd_view_create(db, "older", "users", q, "test view", 1);
        kd_query_free(q);
    }
    fill(db, 60, 120);
    /* The auth subsystem's reserved namespace (and its root) comes along too. */
    kd_auth_put(db, "identity/test", "{\"name\":\"t\"}", 12, NULL, NULL);
    return db;
}

static void setup(void)
{
    snprintf(root_dir, sizeof root_dir, "/tmp/kd_test_backup_XXXXXX");
    if (!mkdtemp(root_dir))
        abort();
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root_dir);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
}

/* ------------------------------------------------------------------------ */

static void test_full_roundtrip(void)
{
    setup();
    char src[300], bk[300], dst[300], r1[1024], r2[1024];
    path_in(src, sizeof src, "src");
    path_in(bk, sizeof bk, "full.kdb");
    path_in(dst, sizeof dst, "dst");
    kd_db *db = make_source(src);
    CHECK(db != NULL);
    kd_backup_info info;
    CHECK_RC(kd_backup(db, bk, NULL, &info), KD_OK);
    CHECK_EQ_INT(info.kind, KD_BACKUP_FULL);
    CHECK(info.txns > 100);
    CHECK(info.writes >= info.txns);
    CHECK(info.file_bytes > 0 && info.file_bytes < info.log_bytes);
    CHECK_EQ_INT(info.base.timestamp, 0);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(info.end.timestamp, st.last_timestamp);
    CHECK_EQ_INT(info.end.writes, st.versions);
    roots_text(db, r1, sizeof r1);
    kd_root *roots;
    size_t nroots;
    CHECK_RC(kd_roots(db, &roots, &nroots), KD_OK);
    CHECK_EQ_INT(nroots, 5); /* storage, views, vectors, auth, field */
    CHECK_EQ_STR(roots[3].name, "auth");
    CHECK_EQ_STR(info.end.auth_root, roots[3].hex);
    CHECK_EQ_STR(info.end.field_root, roots[4].hex);
    CHECK_EQ_STR(info.end.storage_root, roots[0].hex);
    kd_free(roots);
    /* A backup never overwrites. */
    CHECK_RC(kd_backup(db, bk, NULL, NULL), KD_EEXISTS);
    CHECK_RC(kd_close(db), KD_OK);

    kd_backup_info ri, fi;
    char err[1024];
    CHECK_RC(kd_backup_info_read(bk, &fi, err, sizeof err), KD_OK);
    CHECK_EQ_INT(fi.txns, info.txns);
    CHECK_EQ_STR(fi.end.field_root, info.end.field_root);
    CHECK_EQ_STR(fi.node_id, info.node_id);
    const char *files[] = {bk};
    CHECK_RC(kd_restore(files, 1, dst, &ri, err, sizeof err), KD_OK);
    CHECK_EQ_STR(ri.end.field_root, info.end.field_root);
    CHECK(same_log(src, dst));
    roots_of_dir(dst, r2, sizeof r2);
    CHECK_EQ_STR(r1, r2);
    /* The copy has a new node id but the same data. */
    char n1[64] = "", n2[64] = "", p[400];
    snprintf(p, sizeof p, "%s/NODE", src);
    FILE *f = fopen(p, "r");
    CHECK(f && fgets(n1, sizeof n1, f));
    fclose(f);
    snprintf(p, sizeof p, "%s/NODE", dst);
    f = fopen(p, "r");
    CHECK(f && fgets(n2, sizeof n2, f));
    fclose(f);
    CHECK(strcmp(n1, n2) != 0);
    CHECK(strncmp(n1, info.node_id, 32) == 0);

    kd_db *a = open_at(src), *b = open_at(dst);
    CHECK(a && b);
    /* Every version of every user key, through the API. */
    char **keys;
    size_t nk;
    CHECK_RC(kd_list_keys(a, "users", NULL, NULL, 0, &keys, &nk), KD_OK);
    CHECK(nk > 10);
    for (size_t i = 0; i < nk; i++) {
        kd_version *h1, *h2;
        size_t n1v, n2v;
        CHECK_RC(kd_history(a, "users", keys[i], KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h1, &n1v), KD_OK);
        CHECK_RC(kd_history(b, "users", keys[i], KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h2, &n2v), KD_OK);
        CHECK_EQ_INT(n1v, n2v);
        for (size_t j = 0; j < n1v; j++) {
            CHECK_EQ_STR(h1[j].version_id, h2[j].version_id);
            CHECK_EQ_STR(h1[j].write_id, h2[j].write_id);
            CHECK_EQ_STR(h1[j].previous_write_id, h2[j].previous_write_id);
            CHECK_EQ_INT(h1[j].timestamp, h2[j].timestamp);
            CHECK_EQ_INT(h1[j].deleted, h2[j].deleted);
        }
        kd_free(h1);
        kd_free(h2);
    }
    kd_free_list(keys, nk);
    /* Views, indexes and vectors came along. */
    kd_view_info *vl;
    size_t nv;
    CHECK_RC(kd_view_list(b, &vl, &nv), KD_OK);
    CHECK_EQ_INT(nv, 1);
    CHECK_EQ_STR(vl[0].name, "older");
    kd_view_list_free(vl, nv);
    kd_index_info *il;
    size_t ni;
    CHECK_RC(kd_index_list(b, NULL, &il, &ni), KD_OK);
    CHECK_EQ_INT(ni, 1);
    CHECK_EQ_STR(il[0].field, "age");
    kd_index_list_free(il, ni);
    kd_vector *v1, *v2;
    CHECK_RC(kd_vector_get(a, "docs", "v3", &v1), KD_OK);
    CHECK_RC(kd_vector_get(b, "docs", "v3", &v2), KD_OK);
    CHECK_EQ_STR(v1->version.write_id, v2->version.write_id);
    CHECK(v1->dim == 3 && memcmp(v1->values, v2->values, 3 * sizeof(float)) == 0);
    kd_vector_free(v1);
    kd_vector_free(v2);
    kd_verify_report rep;
    CHECK_RC(kd_verify(b, &rep), KD_OK);
    kd_close(a);
    kd_close(b);

    /* An empty database backs up and restores too; a non-empty target is refused. */
    char e[300], ebk[300];
    path_in(e, sizeof e, "empty");
    path_in(ebk, sizeof ebk, "empty.kdb");
    db = open_at(e);
    CHECK(db);
    CHECK_RC(kd_backup(db, ebk, NULL, &info), KD_OK);
    CHECK_EQ_INT(info.txns, 0);
    kd_close(db);
    const char *ef[] = {ebk};
    char edst[300];
    path_in(edst, sizeof edst, "edst");
    CHECK(mkdir(edst, 0755) == 0); /* an empty directory is fine */
    CHECK_RC(kd_restore(ef, 1, edst, NULL, err, sizeof err), KD_OK);
    CHECK_RC(kd_restore(ef, 1, dst, NULL, err, sizeof err), KD_EEXISTS);
    CHECK(strstr(err, "not empty") != NULL);
    teardown();
}

static void test_incremental_chain(void)
{
    setup();
    char src[300], other[300], full[300], inc1[300], inc2[300], ofull[300], oinc[300], dst[300];
    char r_inc1[1024], r_now[1024], r2[1024], err[2048];
    path_in(src, sizeof src, "src");
    path_in(other, sizeof other, "other");
    path_in(full, sizeof full, "full.kdb");
    path_in(inc1, sizeof inc1, "inc1.kdb");
    path_in(inc2, sizeof inc2, "inc2.kdb");
    path_in(ofull, sizeof ofull, "ofull.kdb");
    path_in(oinc, sizeof oinc, "oinc.kdb");
    path_in(dst, sizeof dst, "dst");
    kd_db *db = make_source(src);
    CHECK(db);
    kd_backup_info bi, i1, i2;
    CHECK_RC(kd_backup(db, full, NULL, &bi), KD_OK);
    fill(db, 200, 260);
    kd_backup_options o = {0};
    o.since = full;
    CHECK_RC(kd_backup(db, inc1, &o, &i1), KD_OK);
    CHECK_EQ_INT(i1.kind, KD_BACKUP_INCREMENTAL);
    CHECK_EQ_STR(i1.base.field_root, bi.end.field_root);
    CHECK(i1.txns > 0 && i1.txns < bi.txns);
    roots_text(db, r_inc1, sizeof r_inc1);
    fill(db, 300, 340);
    o.since = inc1;
    CHECK_RC(kd_backup(db, inc2, &o, &i2), KD_OK);
    CHECK_EQ_INT(i2.base.writes, i1.end.writes);
    roots_text(db, r_now, sizeof r_now);
    /* Nothing new: an empty incremental is still a valid link. */
    char inc3[300];
    path_in(inc3, sizeof inc3, "inc3.kdb");
    o.since = inc2;
    kd_backup_info i3;
    CHECK_RC(kd_backup(db, inc3, &o, &i3), KD_OK);
    CHECK_EQ_INT(i3.txns, 0);
    /* --at before the previous backup's end. */
    char bad[300];
    path_in(bad, sizeof bad, "bad.kdb");
    o.since = inc1;
    o.at = bi.end.timestamp;
    CHECK_RC(kd_backup(db, bad, &o, NULL), KD_EINVALID);
    CHECK(!exists(bad));
    o.at = 0;

    /* Another database's backups. */
    kd_db *odb = open_at(other);
    CHECK(odb);
    fill(odb, 0, 30);
    CHECK_RC(kd_backup(odb, ofull, NULL, NULL), KD_OK);
    fill(odb, 30, 40);
    o.since = ofull;
    CHECK_RC(kd_backup(odb, oinc, &o, NULL), KD_OK);
    /* ... are not a base for this one's incrementals. */
    CHECK_RC(kd_backup(db, bad, &o, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "not a backup of this database") != NULL);
    CHECK(!exists(bad));
    o.since = "/nonexistent/x.kdb";
    CHECK_RC(kd_backup(db, bad, &o, NULL), KD_ENOTFOUND);
    kd_close(odb);
    CHECK_RC(kd_close(db), KD_OK);

    const char *chain[] = {full, inc1, inc2, inc3};
    CHECK_RC(kd_restore(chain, 4, dst, NULL, err, sizeof err), KD_OK);
    CHECK(same_log(src, dst));
    roots_of_dir(dst, r2, sizeof r2);
    CHECK_EQ_STR(r2, r_now);
    char dst2[300];
    path_in(dst2, sizeof dst2, "dst2");
    CHECK_RC(kd_restore(chain, 2, dst2, NULL, err, sizeof err), KD_OK);
    roots_of_dir(dst2, r2, sizeof r2);
    CHECK_EQ_STR(r2, r_inc1);

    /* Refusals: each names the file at fault and creates nothing. */
    char dst3[300];
    path_in(dst3, sizeof dst3, "dst3");
    const char *order[] = {full, inc2, inc1};
    CHECK_RC(kd_restore(order, 3, dst3, NULL, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, inc2) != NULL && strstr(err, "gap") != NULL);
    const char *swap[] = {full, inc1, inc2, inc1};
    CHECK_RC(kd_restore(swap, 4, dst3, NULL, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "wrong order") != NULL);
    const char *gap[] = {full, inc2};
    CHECK_RC(kd_restore(gap, 2, dst3, NULL, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "gap") != NULL);
    const char *foreign[] = {full, oinc};
    CHECK_RC(kd_restore(foreign, 2, dst3, NULL, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, oinc) != NULL);
    const char *inc_first[] = {inc1, inc2};
    CHECK_RC(kd_restore(inc_first, 2, dst3, NULL, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "starts with a full backup") != NULL);
    const char *two_full[] = {full, ofull};
    CHECK_RC(kd_restore(two_full, 2, dst3, NULL, err, sizeof err), KD_EINVALID);
    const char *missing[] = {full, "/nonexistent/x.kdb"};
    CHECK_RC(kd_restore(missing, 2, dst3, NULL, err, sizeof err), KD_ENOTFOUND); /* as kd_backup_info */
    CHECK(strstr(err, "/nonexistent/x.kdb") != NULL);
    CHECK(!exists(dst3));
    CHECK_EQ_INT(count_prefixed("dst3.restore-"), 0);
    teardown();
}

/* Every single-byte flip and every truncation of a small backup file. */
static void test_corruption(void)
{
    setup();
    char src[300], bk[300], bad[300], dst[300], err[2048];
    path_in(src, sizeof src, "src");
    path_in(bk, sizeof bk, "b.kdb");
    path_in(bad, sizeof bad, "bad.kdb");
    path_in(dst, sizeof dst, "dst");
    kd_db *db = open_at(src);
    CHECK(db);
    fill(db, 0, 8);
    CHECK_RC(kd_index_create(db, "users", "age"), KD_OK);
    kd_backup_info info;
    CHECK_RC(kd_backup(db, bk, NULL, &info), KD_OK);
    kd_close(db);
    int fd = open(bk, O_RDONLY);
    CHECK(fd >= 0);
    static uint8_t orig[1 << 16];
    ssize_t n = read(fd, orig, sizeof orig);
    close(fd);
    CHECK(n > 400 && n < (ssize_t)sizeof orig);
    CHECK_EQ_INT(n, info.file_bytes);
    const char *files[] = {bad};
    int refused = 0;
    for (ssize_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            orig[i] ^= (uint8_t)(1u << bit);
            fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            CHECK(fd >= 0 && write(fd, orig, (size_t)n) == n);
            close(fd);
            orig[i] ^= (uint8_t)(1u << bit);
            int rc = kd_restore(files, 1, dst, NULL, err, sizeof err);
            if (rc == KD_OK) {
                fprintf(stderr, "flip of bit %d at offset %zd accepted\n", bit, i);
                CHECK(0);
            }
            CHECK(rc == KD_ECORRUPT || rc == KD_EFORMAT);
            CHECK(strstr(err, bad) != NULL);
            CHECK(!exists(dst));
            refused++;
        }
    }
    CHECK_EQ_INT(refused, 2 * n);
    CHECK_EQ_INT(count_prefixed("dst.restore-"), 0);
    /* Truncations, including to nothing, and a byte appended. */
    for (ssize_t len = 0; len <= n; len++) {
        fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0);
        CHECK(write(fd, orig, (size_t)len) == len);
        if (len == n)
            CHECK(write(fd, "x", 1) == 1);
        close(fd);
        int rc = kd_restore(files, 1, dst, NULL, err, sizeof err);
        CHECK(rc == KD_ECORRUPT);
        CHECK(!exists(dst));
    }
    CHECK_EQ_INT(count_prefixed("dst.restore-"), 0);
    /* Not a backup at all. */
    fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(write(fd, "{\"hello\": 1}\n", 13) == 13);
    close(fd);
    CHECK_RC(kd_backup_info_read(bad, &info, err, sizeof err), KD_ECORRUPT);
    CHECK(strstr(err, "not a KoruDelta backup") != NULL);
    /* The original is fine. */
    const char *good[] = {bk};
    CHECK_RC(kd_restore(good, 1, dst, NULL, err, sizeof err), KD_OK);
    teardown();
}

/* A backup while another thread writes is a prefix of the log at a
 * transaction boundary. */
typedef struct writer_arg {
    kd_db *db;
    int stop; /* atomic */
    int n;    /* atomic: writes made */
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *a = p;
    char key[32], val[64];
    while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
        int n = __atomic_load_n(&a->n, __ATOMIC_RELAXED); /* only this thread writes it */
        snprintf(key, sizeof key, "w%d", n % 50);
        snprintf(val, sizeof val, "{\"i\":%d}", n);
        if (n % 7 == 0) {
            kd_write w[2] = {{"conc", key, val, strlen(val), NULL}, {"conc", "pair", val, strlen(val), NULL}};
            kd_put_batch(a->db, w, 2, NULL);
        } else {
            kd_put(a->db, "conc", key, val, strlen(val), NULL);
        }
        __atomic_fetch_add(&a->n, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void test_concurrent_writes(void)
{
    setup();
    char src[300], err[2048];
    path_in(src, sizeof src, "src");
    kd_db *db = open_at(src);
    CHECK(db);
    fill(db, 0, 20);
    writer_arg a = {db, 0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, writer_main, &a) == 0);
    kd_backup_info infos[4];
    char bks[4][300];
    for (int i = 0; i < 4; i++) {
        while (__atomic_load_n(&a.n, __ATOMIC_ACQUIRE) < 200 * (i + 1))
            usleep(1000);
        char name[32];
        snprintf(name, sizeof name, "c%d.kdb", i);
        path_in(bks[i], sizeof bks[i], name);
        kd_backup_options o = {0};
        o.since = i ? bks[i - 1] : NULL;
        int rc = kd_backup(db, bks[i], &o, &infos[i]);
        if (rc) {
            __atomic_store_n(&a.stop, 1, __ATOMIC_RELEASE);
            pthread_join(t, NULL);
            fprintf(stderr, "backup: %s\n", kd_errmsg(db));
            CHECK(0);
        }
    }
    __atomic_store_n(&a.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    CHECK_RC(kd_close(db), KD_OK);
    uint8_t sum[KD__HASH_LEN];
    static digest srcd;
    CHECK(log_digest(src, &srcd, sum, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        char dst[300], name[32];
        snprintf(name, sizeof name, "d%d", i);
        path_in(dst, sizeof dst, name);
        const char *files[] = {bks[0], bks[1], bks[2], bks[3]};
        CHECK_RC(kd_restore(files, (size_t)i + 1, dst, NULL, err, sizeof err), KD_OK);
        kd_db *r = open_at(dst);
        CHECK(r);
        kd_verify_report rep;
        CHECK_RC(kd_verify(r, &rep), KD_OK);
        kd_root *roots;
        size_t nr;
        CHECK_RC(kd_roots(r, &roots, &nr), KD_OK);
        kd_close(r);
        /* The copy's storage root is the source's root after record k. */
        uint64_t k = infos[i].end.txns;
        CHECK(k >= 1 && k <= srcd.records && k <= 4096);
        char hex[KD_ID_HEX];
        kd__hex_encode(srcd.roots[k - 1], KD__HASH_LEN, hex);
        CHECK_EQ_STR(roots[0].hex, hex);
        kd_free(roots);
    }
    teardown();
}

static void test_at(void)
{
    setup();
    char src[300], bk[300], bk2[300], dst[300], err[2048];
    path_in(src, sizeof src, "src");
    path_in(bk, sizeof bk, "at.kdb");
    path_in(bk2, sizeof bk2, "at2.kdb");
    path_in(dst, sizeof dst, "dst");
    kd_db *db = open_at(src);
    CHECK(db);
    kd_version v[20];
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        CHECK_RC(kd_put(db, "t", key, "1", 1, &v[i]), KD_OK);
    }
    kd_backup_options o = {0};
    o.at = v[9].timestamp;
    kd_backup_info info;
    CHECK_RC(kd_backup(db, bk, &o, &info), KD_OK);
    CHECK_EQ_INT(info.writes, 10);
    CHECK_EQ_INT(info.end.timestamp, v[9].timestamp);
    /* Between two writes: the earlier one is the end. */
    o.at = v[14].timestamp - 1;
    CHECK_RC(kd_backup(db, bk2, &o, &info), KD_OK);
    CHECK_EQ_INT(info.writes, 14);
    kd_close(db);
    const char *files[] = {bk};
    CHECK_RC(kd_restore(files, 1, dst, NULL, err, sizeof err), KD_OK);
    db = open_at(dst);
    CHECK(db);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.versions, 10);
    CHECK_EQ_INT(st.last_timestamp, v[9].timestamp);
    kd_version got;
    CHECK_RC(kd_get(db, "t", "k9", NULL, NULL, &got), KD_OK);
    CHECK_EQ_STR(got.write_id, v[9].write_id);
    CHECK_RC(kd_get(db, "t", "k10", NULL, NULL, NULL), KD_ENOTFOUND);
    kd_close(db);
    teardown();
}

/* Restore a backup and verify the result; the restored database, open. */
static kd_db *restore_verified(const char *const *files, size_t n, const char *dir)
{
    char err[2048];
    int rc = kd_restore(files, n, dir, NULL, err, sizeof err);
    if (rc) {
        fprintf(stderr, "restore: %s\n", err);
        return NULL;
    }
    kd_db *db = open_at(dir);
    kd_verify_report vr;
    if (db && (rc = kd_verify(db, &vr)) != KD_OK) {
        fprintf(stderr, "verify %s: %s\n", dir, vr.problem);
        kd_close(db);
        return NULL;
    }
    return db;
}

/* The number of versions of one compaction record (_kd.compactions/NUMBER). */
static size_t record_versions(kd_db *db, const char *number)
{
    kd_version *h = NULL;
    size_t n = 0;
    kd__allow_reserved(1);
    int rc = kd_history(db, "_kd.compactions", number, 0, KD_TIME_MAX, 0, 0, &h, &n);
    kd__allow_reserved(0);
    kd_free(h);
    return rc == KD_OK ? n : 0;
}

/* A backup --at T of versions that a compaction after T pruned: their
 * values are gone, and the compaction's record is not in the backup. The
 * restored database holds them as versions without values, accounted for
 * by the backups' number (65535), and verifies. */
static void test_at_before_compaction(void)
{
    setup();
    char src[300], bk1[300], bk2[300], bk3[300], bk4[300], r1[300], r2[300], r3[300], r4[300];
    path_in(src, sizeof src, "src");
    path_in(bk1, sizeof bk1, "before1.kdb");
    path_in(bk2, sizeof bk2, "between.kdb");
    path_in(bk3, sizeof bk3, "again.kdb");
    path_in(bk4, sizeof bk4, "again_at.kdb");
    path_in(r1, sizeof r1, "r1");
    path_in(r2, sizeof r2, "r2");
    path_in(r3, sizeof r3, "r3");
    path_in(r4, sizeof r4, "r4");
    kd_db *db = open_at(src);
    CHECK(db);
    kd_version v[8];
    char digit[2] = "0";
    for (int i = 0; i < 4; i++, digit[0]++)
        CHECK_RC(kd_put(db, "t", "k", digit, 1, &v[i]), KD_OK);
    CHECK_RC(kd_put(db, "u", "other", "\"x\"", 3, NULL), KD_OK);
    CHECK_RC(kd_retention_set(db, "t", "{\"keep_last\":1}", 15), KD_OK);
    kd_compact_report cr;
    CHECK_RC(kd_compact(db, 0, &cr), KD_OK); /* compaction 1: versions 0-2 of t/k */
    CHECK_EQ_INT(cr.versions_pruned, 3);
    for (int i = 4; i < 8; i++, digit[0]++)
        CHECK_RC(kd_put(db, "t", "k", digit, 1, &v[i]), KD_OK);
    CHECK_RC(kd_compact(db, 0, &cr), KD_OK); /* compaction 2: versions 3-6 */
    CHECK_EQ_INT(cr.versions_pruned, 4);

    /* Before both compactions: all six pruned versions by number 65535. */
    kd_backup_options o = {0};
    kd_backup_info info;
    o.at = v[3].timestamp;
    CHECK_RC(kd_backup(db, bk1, &o, &info), KD_OK);
    CHECK_EQ_INT(info.writes, 4);
    const char *f1[] = {bk1};
    kd_db *r = restore_verified(f1, 1, r1);
    CHECK(r);
    kd_version *h = NULL;
    size_t n = 0;
    CHECK_RC(kd_history(r, "t", "k", 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 4);
    int pruned = 0;
    for (size_t i = 0; i < n; i++)
        pruned += h[i].pruned != 0;
    kd_free(h);
    CHECK_EQ_INT(pruned, 4); /* the newest too: compaction 2 took it later */
    CHECK_RC(kd_get_at(r, "t", "k", v[2].timestamp, NULL, NULL, NULL), KD_EPRUNED);
    /* The key has no value there: not listed; get says why. */
    char *cur = NULL;
    CHECK_RC(kd_get(r, "t", "k", &cur, NULL, NULL), KD_EPRUNED);
    CHECK(cur == NULL && strstr(kd_errmsg(r), "newest version") != NULL);
    CHECK_EQ_INT(kd_contains(r, "t", "k"), 0);
    char **keys = NULL;
    size_t nk = 9;
    CHECK_RC(kd_list_keys(r, "t", NULL, NULL, 0, &keys, &nk), KD_OK);
    CHECK_EQ_INT(nk, 0);
    kd_free_list(keys, nk);
    CHECK_EQ_INT(record_versions(r, "0000065535"), 1);
    CHECK_EQ_INT(record_versions(r, "0000000001"), 0);
    kd_close(r);

    /* Between them: compaction 1's record is in, compaction 2's is not. */
    o.at = v[6].timestamp;
    CHECK_RC(kd_backup(db, bk2, &o, &info), KD_OK);
    const char *f2[] = {bk2};
    r = restore_verified(f2, 1, r2);
    CHECK(r);
    CHECK_EQ_INT(record_versions(r, "0000000001"), 2); /* started, done */
    CHECK_EQ_INT(record_versions(r, "0000065535"), 1);
    char *val = NULL;
    CHECK_RC(kd_get_at(r, "t", "k", v[6].timestamp, &val, NULL, NULL), KD_EPRUNED);
    CHECK_RC(kd_get(r, "u", "other", &val, NULL, NULL), KD_OK);
    CHECK_EQ_STR(val, "\"x\"");
    kd_free(val);

    /* A full backup of that restored database restores to the same log:
     * its record for 65535 already accounts for every write it flags. */
    CHECK_RC(kd_backup(r, bk3, NULL, &info), KD_OK);
    kd_close(r);
    const char *f3[] = {bk3};
    r = restore_verified(f3, 1, r3);
    CHECK(r);
    CHECK_EQ_INT(record_versions(r, "0000065535"), 1);
    kd_stats st;
    CHECK_RC(kd_stats_get(r, &st), KD_OK);
    CHECK_EQ_INT(st.versions, info.writes);
    /* ... and one --at before its 65535 record counts them again. */
    o.at = v[6].timestamp;
    CHECK_RC(kd_backup(r, bk4, &o, &info), KD_OK);
    kd_close(r);
    const char *f4[] = {bk4};
    r = restore_verified(f4, 1, r4);
    CHECK(r);
    CHECK_EQ_INT(record_versions(r, "0000065535"), 1);
    kd_close(r);
    kd_close(db);
    teardown();
}

/* Restored segments are cut at the segment size, each with its header. */
static void test_segments(void)
{
    setup();
    char src[300], bk[300], dst[300], err[2048];
    path_in(src, sizeof src, "src");
    path_in(bk, sizeof bk, "s.kdb");
    path_in(dst, sizeof dst, "dst");
    kd_db *db = make_source(src);
    CHECK(db);
    fill(db, 1000, 2000);
    CHECK_RC(kd_backup(db, bk, NULL, NULL), KD_OK);
    kd_close(db);
    uint64_t saved = kd__restore_segment_size;
    kd__restore_segment_size = 64 * 1024;
    const char *files[] = {bk};
    int rc = kd_restore(files, 1, dst, NULL, err, sizeof err);
    kd__restore_segment_size = saved;
    CHECK_RC(rc, KD_OK);
    uint8_t x[KD__HASH_LEN];
    uint64_t nsegs = 0;
    CHECK(log_digest(dst, &dg1, x, &nsegs) == 0); /* walks each segment: headers checked */
    CHECK(nsegs >= 3);
    CHECK(same_log(src, dst));
    teardown();
}

/* A backup killed at any moment leaves no file; the next backup of the
 * same path removes the temporary file. */
/* The log format a backup records: 1 (written before compaction existed)
 * and 2 are read, anything newer is refused as from a newer build. */
static int backup_with_log_format(const char *from, const char *to, uint32_t format)
{
    static uint8_t b[1 << 16];
    int fd = open(from, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, b, sizeof b) : -1;
    if (fd >= 0)
        close(fd);
    if (n < 400 || n == (ssize_t)sizeof b)
        return -1;
    for (int i = 0; i < 4; i++)
        b[376 + i] = (uint8_t)(format >> (8 * i));
    uint32_t crc = kd__crc32c(b, 380); /* the header's own checksum */
    for (int i = 0; i < 4; i++)
        b[380 + i] = (uint8_t)(crc >> (8 * i));
    uint8_t *tr = b + n - KD__BK_TRAILER_LEN; /* the trailer holds the header's SHA-256 */
    kd__sha256(b, KD__BK_HEADER_LEN, tr + 40);
    crc = kd__crc32c(tr, 72);
    for (int i = 0; i < 4; i++)
        tr[72 + i] = (uint8_t)(crc >> (8 * i));
    fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int ok = fd >= 0 && write(fd, b, (size_t)n) == n;
    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

static void test_log_formats(void)
{
    setup();
    char src[300], bk[300], v1[300], v3[300], dst[300], err[2048];
    path_in(src, sizeof src, "src");
    path_in(bk, sizeof bk, "b.kdb");
    path_in(v1, sizeof v1, "v1.kdb");
    path_in(v3, sizeof v3, "v3.kdb");
    path_in(dst, sizeof dst, "dst");
    kd_db *db = open_at(src);
    CHECK(db);
    fill(db, 0, 8);
    CHECK_RC(kd_backup(db, bk, NULL, NULL), KD_OK);
    kd_close(db);
    CHECK(backup_with_log_format(bk, v1, 1) == 0);
    CHECK(backup_with_log_format(bk, v3, 3) == 0);
    kd_backup_info info;
    int irc = kd_backup_info_read(v1, &info, err, sizeof err);
    if (irc)
        fprintf(stderr, "%s\n", err);
    CHECK_RC(irc, KD_OK);
    const char *files[] = {v1};
    CHECK_RC(kd_restore(files, 1, dst, NULL, err, sizeof err), KD_OK);
    CHECK_RC(kd_backup_info_read(v3, &info, err, sizeof err), KD_EFORMAT);
    CHECK(strstr(err, "log format version 3") != NULL);
}

static void test_kill(void)
{
    setup();
    char src[300], bk[300], err[2048];
    path_in(src, sizeof src, "src");
    path_in(bk, sizeof bk, "k.kdb");
    kd_db *db = open_at(src);
    CHECK(db);
    static char big[20000];
    memset(big, 'a', sizeof big);
    big[0] = '"';
    big[sizeof big - 2] = '"';
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 800; i++) {
        char key[16];
        snprintf(key, sizeof key, "b%d", i);
        big[1 + i % 1000] = (char)('b' + i % 20);
        CHECK_RC(kd_put(db, "big", key, big, strlen(big), NULL), KD_OK);
    }
    kd_close(db);
    int seen_partial = 0, seen_done = 0;
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            kd_db *c = open_at(src);
            _exit(c && kd_backup(c, bk, NULL, NULL) == KD_OK ? 0 : 1);
        }
        usleep((useconds_t)(2000 + round * 6000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (exists(bk)) {
            kd_backup_info info;
            CHECK_RC(kd_backup_info_read(bk, &info, err, sizeof err), KD_OK);
            seen_done++;
            unlink(bk);
        } else {
            seen_partial += count_prefixed("k.kdb.tmp-") > 0;
        }
    }
    fprintf(stderr, "    killed backups: %d left a temporary file, %d had finished\n", seen_partial, seen_done);
    /* A stale temporary file the next backup must remove. */
    char stale[400];
    snprintf(stale, sizeof stale, "%s.tmp-0123456789abcdef", bk); /* KD__TEMP_SUFFIX_LEN hex digits */
    int fd = open(stale, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    close(fd);
    db = open_at(src);
    CHECK(db);
    CHECK_RC(kd_backup(db, bk, NULL, NULL), KD_OK);
    kd_close(db);
    CHECK_EQ_INT(count_prefixed("k.kdb.tmp-"), 0);
    CHECK(exists(bk));
    teardown();
}


/* ---- current-only backups ---- */

/* Every key of ns in `a` and `b` has the same history (write_ids, times);
 * the current version reads the same; in `b` an older version reads the
 * same or is pruned. *pruned counts the pruned ones of `b`. */
static void same_history_current_values(kd_db *a, kd_db *b, const char *ns, uint64_t *pruned)
{
    char **keys = NULL;
    size_t nk = 0;
    CHECK_RC(kd_list_keys(a, ns, NULL, NULL, 0, &keys, &nk), KD_OK);
    CHECK(nk > 0);
    for (size_t i = 0; i < nk; i++) {
        kd_version *ha = NULL, *hb = NULL;
        size_t na = 0, nb = 0;
        CHECK_RC(kd_history(a, ns, keys[i], 0, KD_TIME_MAX, 0, 0, &ha, &na), KD_OK);
        CHECK_RC(kd_history(b, ns, keys[i], 0, KD_TIME_MAX, 0, 0, &hb, &nb), KD_OK);
        CHECK_EQ_INT(na, nb);
        for (size_t v = 0; v < na && v < nb; v++) {
            CHECK_EQ_STR(ha[v].write_id, hb[v].write_id);
            CHECK_EQ_INT(ha[v].timestamp, hb[v].timestamp);
            CHECK_EQ_INT(ha[v].deleted, hb[v].deleted);
            if (ha[v].deleted)
                continue;
            char *va = NULL, *vb = NULL;
            int ra = kd_get_at(a, ns, keys[i], ha[v].timestamp, &va, NULL, NULL);
            int rb = kd_get_at(b, ns, keys[i], hb[v].timestamp, &vb, NULL, NULL);
            if (v + 1 == na) {
                CHECK_RC(rb, KD_OK); /* the current version keeps its value */
                CHECK(!hb[v].pruned);
            }
            if (rb == KD_EPRUNED) {
                CHECK(hb[v].pruned);
                (*pruned)++;
            } else if (ra == KD_OK) {
                CHECK_RC(rb, KD_OK);
                CHECK_EQ_STR(va, vb ? vb : "");
            }
            kd_free(va);
            kd_free(vb);
        }
        kd_free(ha);
        kd_free(hb);
    }
    kd_free_list(keys, nk);
}

static void test_current_only(void)
{
    char src[512], full[512], cur[512], inc[512], out[512], out2[512];
    path_in(src, sizeof src, "co_src");
    path_in(full, sizeof full, "co_full.kdb");
    path_in(cur, sizeof cur, "co_cur.kdb");
    path_in(inc, sizeof inc, "co_inc.kdb");
    path_in(out, sizeof out, "co_out");
    path_in(out2, sizeof out2, "co_out2");
    kd_db *db = make_source(src);
    CHECK(db);
    /* a compaction of its own before, and consolidated segments */
    CHECK_RC(kd_retention_set(db, "orders", "{\"keep_last\":2}", 15), KD_OK);
    kd_compact_report cr;
    CHECK_RC(kd_compact(db, 0, &cr), KD_OK);
    kd_consolidate_report zr;
    CHECK_RC(kd_consolidate(db, 0, &zr), KD_OK);
    fill(db, 120, 160);

    kd_backup_info fi, ci;
    CHECK_RC(kd_backup(db, full, NULL, &fi), KD_OK);
    kd_backup_options co = {.current_only = 1};
    CHECK_RC(kd_backup(db, cur, &co, &ci), KD_OK);
    CHECK_EQ_INT(ci.kind, KD_BACKUP_CURRENT_ONLY);
    CHECK_EQ_INT(ci.writes, fi.writes);  /* every write, */
    CHECK(ci.log_bytes < fi.log_bytes);   /* fewer values */
    CHECK_EQ_STR(ci.end.field_root, fi.end.field_root);
    kd_backup_info ri;
    char err[1024];
    CHECK_RC(kd_backup_info_read(cur, &ri, err, sizeof err), KD_OK);
    CHECK_EQ_INT(ri.kind, KD_BACKUP_CURRENT_ONLY);
    /* current-only is a full backup: not incremental */
    char bad[512];
    path_in(bad, sizeof bad, "co_bad.kdb");
    kd_backup_options both = {.current_only = 1, .since = full};
    CHECK_RC(kd_backup(db, bad, &both, NULL), KD_EINVALID);
    CHECK(!exists(bad));

    /* Restored: same histories and current values, older values pruned,
     * and verify accounts for every pruned write. */
    const char *files[2] = {cur, inc};
    int rc = kd_restore(files, 1, out, NULL, err, sizeof err);
    if (rc)
        fprintf(stderr, "restore: %s\n", err);
    CHECK_RC(rc, KD_OK);
    kd_db *r = open_at(out);
    CHECK(r);
    kd_verify_report vr;
    rc = kd_verify(r, &vr);
    if (rc)
        fprintf(stderr, "verify: %s\n", vr.problem);
    CHECK_RC(rc, KD_OK);
    uint64_t pruned = 0;
    same_history_current_values(db, r, "users", &pruned);
    same_history_current_values(db, r, "orders", &pruned);
    CHECK(pruned > 50);
    CHECK(vr.pruned >= pruned);
    kd_vector *vec = NULL;
    CHECK_RC(kd_vector_get(r, "docs", "v3", &vec), KD_OK);
    kd_vector_free(vec);
    /* Compactions go on in the restored database with their own numbers. */
    for (int i = 0; i < 3; i++)
        CHECK_RC(kd_put(r, "fresh", "k", i == 0 ? "0" : i == 1 ? "1" : "2", 1, NULL), KD_OK);
    CHECK_RC(kd_retention_set(r, "fresh", "{\"keep_last\":1}", 15), KD_OK);
    CHECK_RC(kd_compact(r, 0, &cr), KD_OK);
    CHECK(cr.versions_pruned >= 1 && cr.number >= 1 && cr.number < 65535);
    CHECK_RC(kd_verify(r, &vr), KD_OK);
    kd_close(r);

    /* An incremental backup continues a current-only one. */
    fill(db, 160, 200);
    kd_backup_options io = {.since = cur};
    CHECK_RC(kd_backup(db, inc, &io, NULL), KD_OK);
    /* An incremental made on top of the full backup (which ends where the
     * current-only one does) lacks the old values: refused after it. */
    char plain_inc[512], out3[512];
    path_in(plain_inc, sizeof plain_inc, "co_plain_inc.kdb");
    path_in(out3, sizeof out3, "co_out3");
    kd_backup_options po = {.since = full};
    CHECK_RC(kd_backup(db, plain_inc, &po, NULL), KD_OK);
    const char *wrong[2] = {cur, plain_inc};
    CHECK_RC(kd_restore(wrong, 2, out3, NULL, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "current-only") != NULL);
    CHECK(!exists(out3));
    rc = kd_restore(files, 2, out2, NULL, err, sizeof err);
    if (rc)
        fprintf(stderr, "restore chain: %s\n", err);
    CHECK_RC(rc, KD_OK);
    r = open_at(out2);
    CHECK(r);
    rc = kd_verify(r, &vr);
    if (rc)
        fprintf(stderr, "verify chain: %s\n", vr.problem);
    CHECK_RC(rc, KD_OK);
    pruned = 0;
    same_history_current_values(db, r, "users", &pruned);
    kd_close(r);
    kd_close(db);
}

int main(void)
{
    RUN(test_full_roundtrip);
    RUN(test_incremental_chain);
    RUN(test_corruption);
    RUN(test_concurrent_writes);
    RUN(test_at);
    RUN(test_at_before_compaction);
    RUN(test_segments);
    RUN(test_log_formats);
    RUN(test_current_only);
    RUN(test_kill);
    return HARNESS_DONE();
}
