/*
 * test_fulldisk.c — a full disk (DESIGN.md §3, issue 2 item 6).
 *
 * A 4 MiB tmpfs is mounted on a temporary directory (this needs root; the
 * test prints SKIP and passes when mounting is not permitted). Two filler
 * files are created first, then a database (sync=always) is written until a
 * write fails. The test checks that:
 *   - the failure is KD_ENOSPACE with a message that says so;
 *   - every acknowledged write is still readable, byte for byte, and nothing
 *     of the failed write is visible (stats count only acknowledged writes);
 *   - kd_verify passes, the handle keeps working for reads;
 *   - a batch that does not fit fails whole (no member becomes visible);
 *   - the database can be closed and reopened while the disk is full and
 *     read normally; writes still fail cleanly;
 *   - once the fillers are deleted, writes work again and survive close and
 *     reopen.
 * The mount is removed at the end, also when a check fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "korudelta.h"

#define VALUE_PAD 3000
#define MAX_ACKED 20000

static char mnt[256];       /* the tmpfs mount point */
static char db_dir[300];    /* the database inside it */
static int mounted;

/* ------------------------------------------------------------------------
 * Mount and cleanup
 * ---------------------------------------------------------------------- */

static void cleanup(void)
{
    if (mounted) {
        if (umount2(mnt, MNT_DETACH) != 0)
            fprintf(stderr, "umount %s: %s\n", mnt, strerror(errno));
        mounted = 0;
    }
    if (mnt[0])
        rmdir(mnt);
}

static void on_fatal(int sig)
{
    /* Only async-signal-safe calls; then die of the same signal. */
    if (mounted)
        umount2(mnt, MNT_DETACH);
    rmdir(mnt);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* 1 = mounted, 0 = not permitted (skip), -1 = other failure. */
static int mount_tmpfs(void)
{
    snprintf(mnt, sizeof mnt, "/tmp/kd_test_fulldisk_XXXXXX");
    if (!mkdtemp(mnt)) {
        mnt[0] = '\0';
        return -1;
    }
    if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0700") != 0) {
        int en = errno;
        rmdir(mnt);
        mnt[0] = '\0';
        fprintf(stderr, "mount tmpfs: %s\n", strerror(en));
        return 0;
    }
    mounted = 1;
    atexit(cleanup);
    signal(SIGABRT, on_fatal);
    signal(SIGTERM, on_fatal);
    signal(SIGINT, on_fatal);
    snprintf(db_dir, sizeof db_dir, "%s/db", mnt);
    return 1;
}

/* A file of `bytes` real bytes (tmpfs allocates pages for them). */
static int make_filler(const char *name, size_t bytes)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", mnt, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    char block[4096];
    memset(block, 0x5a, sizeof block);
    for (size_t done = 0; done < bytes;) {
        ssize_t w = write(fd, block, bytes - done < sizeof block ? bytes - done : sizeof block);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    close(fd);
    return 0;
}

/* Take every byte still free: write until the filesystem refuses. Returns
 * the bytes taken, or -1 when it failed for another reason than ENOSPC. */
static long long fill_rest(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", mnt, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return errno == ENOSPC ? 0 : -1;
    char block[4096];
    memset(block, 0xa5, sizeof block);
    long long taken = 0;
    for (;;) {
        ssize_t w = write(fd, block, sizeof block);
        if (w < 0) {
            int en = errno;
            close(fd);
            return en == ENOSPC ? taken : -1;
        }
        taken += w;
    }
}

static int remove_filler(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", mnt, name);
    return unlink(p);
}

/* ------------------------------------------------------------------------
 * What was acknowledged
 * ---------------------------------------------------------------------- */

typedef struct acked {
    unsigned id; /* key "k<id>", value value_of(id) */
    char write_id[KD_ID_HEX];
    char version_id[KD_ID_HEX];
} acked;

static acked acks[MAX_ACKED];
static size_t n_acks;
static unsigned next_id;

static size_t value_of(unsigned id, char *buf, size_t cap, unsigned pad)
{
    int n = snprintf(buf, cap, "{\"id\":%u,\"pad\":\"", id);
    for (unsigned i = 0; i < pad && (size_t)n + 8 < cap; i++)
        buf[n++] = (char)('a' + (id * 7 + i) % 26);
    n += snprintf(buf + n, cap - (size_t)n, "\"}");
    return (size_t)n;
}

static kd_db *open_db(int *rc_out)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_ALWAYS, 0);
    kd_options_set_busy_timeout(o, 5000);
    kd_options_set_cache_size(o, 0); /* every read goes back to the log */
    kd_db *db = NULL;
    char err[512];
    int rc = kd_open(db_dir, o, &db, err, sizeof err);
    kd_options_free(o);
    if (rc)
        fprintf(stderr, "kd_open(%s): %s: %s\n", db_dir, kd_errname(rc), err);
    if (rc_out)
        *rc_out = rc;
    return db;
}

/* Put values of about VALUE_PAD bytes until a put fails; returns its code.
 * At most `limit` puts (0 = until failure). */
static int put_until_failure(kd_db *db, size_t limit, char *msg, size_t msglen)
{
    static char val[VALUE_PAD + 64];
    for (size_t i = 0; limit == 0 || i < limit; i++) {
        if (n_acks == MAX_ACKED)
            return 1; /* the disk never filled: the caller fails */
        unsigned id = next_id++;
        char key[32];
        snprintf(key, sizeof key, "k%05u", id);
        size_t len = value_of(id, val, sizeof val, VALUE_PAD);
        kd_version v;
        int rc = kd_put(db, "full", key, val, len, &v);
        if (rc) {
            snprintf(msg, msglen, "%s", kd_errmsg(db));
            /* The key of the failed write must not exist. */
            if (kd_contains(db, "full", key))
                return 2;
            return rc;
        }
        acked *a = &acks[n_acks++];
        a->id = id;
        memcpy(a->write_id, v.write_id, KD_ID_HEX);
        memcpy(a->version_id, v.version_id, KD_ID_HEX);
    }
    return KD_OK;
}

/* Every acknowledged write reads back exactly; stats count exactly them;
 * verify passes. Returns a description of the first problem or NULL. */
static char problem[1024];
static const char *check_all(kd_db *db)
{
    static char val[VALUE_PAD + 64];
    problem[0] = '\0';
    for (size_t i = 0; i < n_acks; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%05u", acks[i].id);
        char *json = NULL;
        size_t len = 0;
        kd_version meta;
        int rc = kd_get(db, "full", key, &json, &len, &meta);
        size_t want_len = value_of(acks[i].id, val, sizeof val, VALUE_PAD);
        if (rc != KD_OK) {
            snprintf(problem, sizeof problem, "acknowledged full/%s: kd_get says %s (%s)", key, kd_errname(rc),
                     kd_errmsg(db));
        } else if (len != want_len || memcmp(json, val, len) != 0) {
            snprintf(problem, sizeof problem, "acknowledged full/%s reads back %zu different bytes", key, len);
        } else if (strcmp(meta.write_id, acks[i].write_id) || strcmp(meta.version_id, acks[i].version_id)) {
            snprintf(problem, sizeof problem, "acknowledged full/%s has write_id %s, acknowledged %s", key,
                     meta.write_id, acks[i].write_id);
        }
        kd_free(json);
        if (problem[0])
            return problem;
    }
    kd_stats st;
    if (kd_stats_get(db, &st) != KD_OK) {
        snprintf(problem, sizeof problem, "kd_stats_get failed");
        return problem;
    }
    if (st.versions != n_acks || st.keys != n_acks) {
        snprintf(problem, sizeof problem, "stats: %llu versions and %llu keys, but %zu writes were acknowledged",
                 (unsigned long long)st.versions, (unsigned long long)st.keys, n_acks);
        return problem;
    }
    kd_verify_report rep;
    int rc = kd_verify(db, &rep);
    if (rc != KD_OK || rep.problem[0]) {
        snprintf(problem, sizeof problem, "kd_verify: %s: %s", kd_errname(rc), rep.problem);
        return problem;
    }
    if (rep.versions != n_acks) {
        snprintf(problem, sizeof problem, "kd_verify saw %llu versions, %zu acknowledged",
                 (unsigned long long)rep.versions, n_acks);
        return problem;
    }
    return NULL;
}

static int contains_nocase(const char *hay, const char *needle)
{
    return strcasestr(hay, needle) != NULL;
}

/* Bytes of the segment file on disk. */
static long long segment_size(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/log-00000001.kdl", db_dir);
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

#define CHECK_ALL(db)                                                                   \
    do {                                                                                \
        const char *why_ = check_all(db);                                               \
        if (why_)                                                                       \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, why_);                  \
        CHECK(why_ == NULL);                                                            \
    } while (0)

/* ------------------------------------------------------------------------
 * The test: one story on one filesystem, step by step
 * ---------------------------------------------------------------------- */

static void test_full_disk(void)
{
    char msg[1024];
    CHECK(make_filler("filler-big", 1u << 20) == 0);
    CHECK(make_filler("filler-small", 256u << 10) == 0);
    int orc;
    kd_db *db = open_db(&orc);
    CHECK_RC(orc, KD_OK);

    /* 1. Fill the disk. */
    int rc = put_until_failure(db, 0, msg, sizeof msg);
    fprintf(stderr, "  disk full after %zu acknowledged puts: %s: %s\n", n_acks, kd_errname(rc), msg);
    CHECK(rc != 1);            /* the disk did fill up */
    CHECK(rc != 2);            /* the failed write is not visible */
    CHECK(n_acks > 100);       /* a fair amount was written first */
    CHECK_RC(rc, KD_ENOSPACE);
    CHECK(contains_nocase(msg, "no space"));
    CHECK_ALL(db);

    /* Again: still a clean error, state unchanged. */
    CHECK_RC(put_until_failure(db, 3, msg, sizeof msg), KD_ENOSPACE);
    CHECK_ALL(db);

    /* 2. A batch that does not fit fails whole. Free a little room first
     * so that part of it would fit. */
    CHECK(remove_filler("filler-small") == 0);
    {
        enum { NB = 120 };
        static char vals[NB][VALUE_PAD + 64];
        kd_write w[NB];
        char keys[NB][32];
        for (int i = 0; i < NB; i++) {
            snprintf(keys[i], sizeof keys[i], "b%03d", i);
            size_t len = value_of(100000u + (unsigned)i, vals[i], sizeof vals[i], VALUE_PAD);
            w[i] = (kd_write){"full", keys[i], vals[i], len, NULL};
        }
        kd_stats before, after;
        CHECK_RC(kd_stats_get(db, &before), KD_OK);
        rc = kd_put_batch(db, w, NB, NULL);
        fprintf(stderr, "  batch of %d x %d bytes: %s: %s\n", NB, VALUE_PAD, kd_errname(rc), kd_errmsg(db));
        CHECK_RC(rc, KD_ENOSPACE);
        CHECK(contains_nocase(kd_errmsg(db), "no space"));
        CHECK_RC(kd_stats_get(db, &after), KD_OK);
        CHECK_EQ_INT(after.versions, before.versions);
        CHECK_EQ_INT(after.disk_bytes, before.disk_bytes);
        for (int i = 0; i < NB; i++) {
            CHECK_EQ_INT(kd_contains(db, "full", keys[i]), 0);
            CHECK_RC(kd_get(db, "full", keys[i], NULL, NULL, NULL), KD_ENOTFOUND);
        }
        CHECK_ALL(db);
    }

    /* The freed room is usable by single writes. */
    CHECK_RC(put_until_failure(db, 10, msg, sizeof msg), KD_OK);
    CHECK_ALL(db);

    /* 3. Full again, and then not a single byte free: close and reopen
     * work, reads work, writes fail cleanly. */
    rc = put_until_failure(db, 0, msg, sizeof msg);
    CHECK_RC(rc, KD_ENOSPACE);
    CHECK(fill_rest("filler-rest") >= 0);
    CHECK_RC(put_until_failure(db, 1, msg, sizeof msg), KD_ENOSPACE);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    /* Nothing of the failed writes was left in the file. */
    CHECK_EQ_INT(segment_size(), (long long)st.disk_bytes);
    db = open_db(&orc);
    CHECK_RC(orc, KD_OK);
    CHECK_ALL(db);
    CHECK_RC(put_until_failure(db, 2, msg, sizeof msg), KD_ENOSPACE);
    CHECK_ALL(db);

    /* Creating another database on the full disk fails clearly, and works
     * once there is room (nothing half-created gets in the way). This is
     * also where space is freed for step 4. */
    {
        char other[400], err[512];
        snprintf(other, sizeof other, "%s/db2", mnt);
        kd_db *db2 = NULL;
        rc = kd_open(other, NULL, &db2, err, sizeof err);
        fprintf(stderr, "  new database on a full disk: %s: %s\n", kd_errname(rc), err);
        CHECK_RC(rc, KD_ENOSPACE);
        CHECK(db2 == NULL);
        CHECK(contains_nocase(err, "no space"));
        CHECK(remove_filler("filler-rest") == 0);
        CHECK(remove_filler("filler-big") == 0);
        CHECK_RC(kd_open(other, NULL, &db2, err, sizeof err), KD_OK);
        CHECK_RC(kd_put(db2, "x", "y", "1", 1, NULL), KD_OK);
        CHECK_RC(kd_close(db2), KD_OK);
        CHECK_RC(kd_open(other, NULL, &db2, err, sizeof err), KD_OK);
        CHECK_RC(kd_get(db2, "x", "y", NULL, NULL, NULL), KD_OK);
        kd_verify_report rep;
        CHECK_RC(kd_verify(db2, &rep), KD_OK);
        CHECK_RC(kd_close(db2), KD_OK);
    }

    /* 4. With space freed, writes work again and survive close + reopen. */
    size_t before_free = n_acks;
    CHECK_RC(put_until_failure(db, 200, msg, sizeof msg), KD_OK);
    CHECK_EQ_INT(n_acks, before_free + 200);
    CHECK_ALL(db);
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    CHECK_EQ_INT(segment_size(), (long long)st.disk_bytes);
    db = open_db(&orc);
    CHECK_RC(orc, KD_OK);
    CHECK_ALL(db);
    CHECK_RC(kd_close(db), KD_OK);
    fprintf(stderr, "  %zu acknowledged writes, all read back after reopen\n", n_acks);
}

/* The checker must be able to fail: a write it never made is reported. */
static void test_checker_detects_loss(void)
{
    int orc;
    kd_db *db = open_db(&orc);
    CHECK_RC(orc, KD_OK);
    acked saved = acks[n_acks];
    acks[n_acks] = (acked){.id = 999999};
    n_acks++;
    const char *p = check_all(db);
    n_acks--;
    acks[n_acks] = saved;
    kd_close(db);
    CHECK(p != NULL);
    CHECK(strstr(p, "k999999") != NULL);
}

/* A backup onto a full disk (the 4 MiB tmpfs; the database elsewhere):
 * KD_ENOSPACE naming the backup file, not a segment of the database (it
 * read "…/log-00000003.kdl: at offset 32: write failed: No space left on
 * device", which sends an operator to the wrong disk). */
static void test_backup_to_full_disk(void)
{
    char src[256], bk[512], cmd[600];
    snprintf(src, sizeof src, "/tmp/kd_test_fullbk_XXXXXX");
    CHECK(mkdtemp(src) != NULL);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", mnt);
    CHECK(system(cmd) == 0);
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_segment_size(o, 1 << 20);
    kd_db *db = NULL;
    CHECK_RC(kd_open(src, o, &db, NULL, 0), KD_OK);
    kd_options_free(o);
    /* ~12 MiB of values that zstd halves at best (hex of a xorshift stream): over the 4 MiB */
    static char val[4200];
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 3000; i++) {
        val[0] = '"';
        for (int j = 1; j < 4097; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            val[j] = "0123456789abcdef"[x & 15];
        }
        val[4097] = '"';
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        CHECK_RC(kd_put(db, "n", key, val, 4098, NULL), KD_OK);
    }
    snprintf(bk, sizeof bk, "%s/b.kdb", mnt);
    int rc = kd_backup(db, bk, NULL, NULL);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", kd_errmsg(db));
    kd_close(db);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'/*", src, mnt);
    CHECK(system(cmd) == 0);
    fprintf(stderr, "  backup onto the full disk: %s: %s\n", kd_errname(rc), msg);
    CHECK_RC(rc, KD_ENOSPACE);
    CHECK(strstr(msg, "writing the backup file") != NULL);
    CHECK(strstr(msg, "log-") == NULL);
}

/* A database of ~0.9 MiB under keep_last 1 on the 4 MiB disk, `free_kib`
 * left free by a filler; then kd_compact. Its rc, its message in msg. */
static int compact_with_free(long long free_kib, char *msg, size_t msglen)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", mnt);
    if (system(cmd) != 0)
        return -1;
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_upkeep_interval(o, 0);
    kd_db *db = NULL;
    int rc = kd_open(db_dir, o, &db, NULL, 0);
    kd_options_free(o);
    if (rc)
        return -1;
    rc = kd_retention_set(db, "r", "{\"keep_last\":1}", 15);
    char val[400];
    for (int it = 0; it < 6 && !rc; it++)
        for (int i = 0; i < 300 && !rc; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", i);
            int n = snprintf(val, sizeof val, "{\"it\":%d,\"i\":%d,\"pad\":\"%0300d\"}", it, i, 0);
            rc = kd_put(db, "r", key, val, (size_t)n, NULL);
        }
    /* the filler takes all but free_kib of what is left */
    long long all = fill_rest("probe");
    remove_filler("probe");
    if (rc || all < free_kib * 1024 || make_filler("fill", (size_t)(all - free_kib * 1024)) != 0) {
        kd_close(db);
        return -1;
    }
    kd_compact_report rep;
    rc = kd_compact(db, 0, &rep);
    snprintf(msg, msglen, "%s", kd_errmsg(db));
    kd_verify_report vr;
    if (kd_verify(db, &vr) != KD_OK)
        rc = -2;
    kd_close(db);
    remove_filler("fill");
    return rc;
}

/* A compaction, the way to free space, must not need 8 MiB more than its
 * rewrite: sealing the newest segment reserved a whole 8 MiB step, which
 * kept the blocks it took even when it fell back to a small reserve, so
 * the rewrite found no room. With almost nothing free it fails naming the
 * full disk (a short write of its plan was reported with the errno of a
 * later unlink, "No such file or directory"). */
static void test_compact_on_a_nearly_full_disk(void)
{
    char msg[1024];
    int rc = compact_with_free(2048, msg, sizeof msg);
    fprintf(stderr, "  compact with 2 MiB free: %s %s\n", kd_errname(rc), rc ? msg : "");
    CHECK_RC(rc, KD_OK);
    rc = compact_with_free(40, msg, sizeof msg);
    fprintf(stderr, "  compact with 40 KiB free: %s: %s\n", kd_errname(rc), msg);
    CHECK_RC(rc, KD_ENOSPACE);
    CHECK(strstr(msg, "No space left") != NULL);
}

int main(void)
{
    int m = mount_tmpfs();
    if (m == 0) {
        printf("SKIP: cannot mount tmpfs (need root)\n");
        return 0;
    }
    if (m < 0) {
        fprintf(stderr, "cannot create a mount point in /tmp\n");
        return 1;
    }
    RUN(test_checker_detects_loss);
    RUN(test_full_disk);
    RUN(test_backup_to_full_disk);
    RUN(test_compact_on_a_nearly_full_disk);
    int rc = HARNESS_DONE();
    cleanup();
    return rc;
}
