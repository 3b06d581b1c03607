/*
 * test_repair.c — kd_repair on databases damaged in several ways: a flipped
 * byte in a value, in a record header, a missing and a truncated middle
 * segment. Each time: exactly the damaged records and the versions that
 * depended on them are reported lost, everything else survives, the result
 * opens and verifies, and the damaged files are kept aside. A healthy
 * database is left alone; a kill during repair leaves the original intact.
 * A damaged NODE file is replaced by a new node id, and said so.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "korudelta.h"

static char dir[256];
static char lines[64][512];
static int nlines;

static void on_lost(void *ctx, const char *d)
{
    (void)ctx;
    if (nlines < 64)
        snprintf(lines[nlines++], sizeof lines[0], "%s", d);
}

static int reported(const char *needle)
{
    int n = 0;
    for (int i = 0; i < nlines; i++)
        n += strstr(lines[i], needle) != NULL;
    return n;
}

/* Run a shell command; fmt has up to three %s, each replaced by arg. */
static void sh(const char *fmt, const char *arg)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, arg, arg, arg);
    if (system(cmd))
        fprintf(stderr, "command failed: %s\n", cmd);
}

static kd_options *opts(void)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_options_set_busy_timeout(o, 0);
    return o;
}

static kd_db *open_db(void)
{
    kd_options *o = opts();
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "open: %s\n", err);
    kd_options_free(o);
    return db;
}

static void fresh(void)
{
    snprintf(dir, sizeof dir, "/tmp/kd_test_repair_XXXXXX");
    if (!mkdtemp(dir))
        abort();
    nlines = 0;
}

static void cleanup(void)
{
    sh("rm -rf '%s' '%s'.damaged-* '%s'.repair-new", dir);
}

static int do_repair(kd_repair_report *rep, char *kept)
{
    kd_options *o = opts();
    char err[512];
    nlines = 0;
    int rc = kd_repair(dir, o, on_lost, NULL, rep, kept, 512, err, sizeof err);
    if (rc)
        fprintf(stderr, "repair: %s\n", err);
    kd_options_free(o);
    return rc;
}

static void flip(const char *file, long off)
{
    int fd = open(file, O_RDWR);
    unsigned char c;
    if (pread(fd, &c, 1, off) != 1)
        abort();
    c ^= 0x20;
    if (pwrite(fd, &c, 1, off) != 1)
        abort();
    close(fd);
}

static long fsize(const char *p)
{
    struct stat sb;
    return stat(p, &sb) ? -1 : (long)sb.st_size;
}

static char segp[512];
static const char *seg(int n)
{
    snprintf(segp, sizeof segp, "%s/log-%08d.kdl", dir, n);
    return segp;
}

static void test_healthy_left_alone(void)
{
    fresh();
    kd_db *db = open_db();
    CHECK(db);
    CHECK_RC(kd_put(db, "n", "a", "1", 1, NULL), KD_OK);
    kd_close(db);
    kd_repair_report rep;
    char kept[512];
    CHECK_RC(do_repair(&rep, kept), KD_OK);
    CHECK_EQ_INT(rep.records_lost + rep.versions_lost, 0);
    CHECK_EQ_INT(rep.versions_kept, 1);
    CHECK_EQ_STR(kept, "");
    CHECK_EQ_INT(nlines, 0);
    db = open_db();
    CHECK(db);
    CHECK_EQ_INT(kd_contains(db, "n", "a"), 1);
    kd_close(db);
    cleanup();
}

/* A healthy database in a directory its user may not write to (it may
 * write the database's own): "nothing to repair", as as its owner could.
 * Repair builds its copy beside the database; it failed here with "cannot
 * create DIR.repair-new: Permission denied". A damaged one says why it
 * cannot be repaired there. Needs root (to become another user). */
static void test_healthy_in_a_read_only_parent(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "  (not root: cannot become another user; skipped)\n");
        return;
    }
    char parent[] = "/tmp/kd_test_repair_ro_XXXXXX", db[128], tmp[128];
    CHECK(mkdtemp(parent) != NULL);
    CHECK(chmod(parent, 0755) == 0); /* root's: others may enter, not write */
    snprintf(db, sizeof db, "%s/db", parent);
    CHECK(mkdir(db, 0755) == 0);
    CHECK(chown(db, 65534, 65534) == 0);
    snprintf(tmp, sizeof tmp, "%s/tmp", parent); /* the user's TMPDIR, where the copy is built */
    CHECK(mkdir(tmp, 0755) == 0);
    CHECK(chown(tmp, 65534, 65534) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0 || setenv("TMPDIR", tmp, 1) != 0)
            _exit(10);
        kd_db *h = NULL;
        if (kd_open(db, NULL, &h, NULL, 0) != KD_OK || kd_put(h, "n", "a", "1", 1, NULL) != KD_OK)
            _exit(11);
        kd_close(h);
        kd_repair_report rep;
        char err[512];
        int rc = kd_repair(db, NULL, NULL, NULL, &rep, NULL, 0, err, sizeof err);
        if (rc != KD_OK) {
            fprintf(stderr, "  repair: %s\n", err);
            _exit(12);
        }
        _exit(rep.records_lost || rep.versions_lost || rep.versions_kept != 1 ? 13 : 0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
    /* the copy went away with the repair */
    DIR *d = opendir(tmp);
    CHECK(d != NULL);
    int left = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        left += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    if (d)
        closedir(d);
    CHECK_EQ_INT(left, 0);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", parent);
    CHECK(system(cmd) == 0);
}

/* Three records: a=1, b=1, a=2. Damage the one for b: only b is lost. Then
 * damage a's first: a=1 and a=2 (its child) are lost, b stays. */
static void test_flipped_byte_in_value(void)
{
    for (int victim = 0; victim < 2; victim++) {
        fresh();
        kd_db *db = open_db();
        CHECK(db);
        long off[3];
        const char *keys[3] = {"a", "b", "a"};
        const char *vals[3] = {"\"one\"", "\"bee\"", "\"two\""};
        for (int i = 0; i < 3; i++) {
            kd_close(db);
            off[i] = fsize(seg(1));
            db = open_db();
            CHECK_RC(kd_put(db, "n", keys[i], vals[i], 5, NULL), KD_OK);
        }
        kd_close(db);
        int hit = victim == 0 ? 1 : 0;
        flip(seg(1), off[hit] + 16 + 40 + 36 + 1); /* a byte of the stored value */
        kd_repair_report rep;
        char kept[512];
        CHECK_RC(do_repair(&rep, kept), KD_OK);
        CHECK_EQ_INT(rep.records_lost, 1);
        char where[64];
        snprintf(where, sizeof where, "offset %ld", off[hit]);
        CHECK(reported(where) >= 1);
        CHECK(kept[0] != '\0');
        struct stat sb;
        CHECK(stat(kept, &sb) == 0);
        db = open_db();
        CHECK(db);
        kd_verify_report vr;
        CHECK_RC(kd_verify(db, &vr), KD_OK);
        char *json = NULL;
        if (victim == 0) {
            CHECK_EQ_INT(rep.versions_lost, 0);
            CHECK_EQ_INT(rep.versions_kept, 2);
            CHECK_EQ_INT(kd_contains(db, "n", "b"), 0);
            CHECK_RC(kd_get(db, "n", "a", &json, NULL, NULL), KD_OK);
            CHECK_EQ_STR(json, "\"two\"");
        } else {
            CHECK_EQ_INT(rep.versions_lost, 1); /* a=2: its parent a=1 is gone */
            CHECK(reported("n/a") == 2); /* the damaged record names its key, and a=2 */
            CHECK(reported("earlier version of this key was lost") == 1);
            CHECK_EQ_INT(rep.keys_affected, 1);
            CHECK_EQ_INT(kd_contains(db, "n", "a"), 0);
            CHECK_RC(kd_get(db, "n", "b", &json, NULL, NULL), KD_OK);
            CHECK_EQ_STR(json, "\"bee\"");
        }
        kd_free(json);
        kd_close(db);
        cleanup();
    }
}

/* A damaged record header: the walk finds the next record again. */
static void test_flipped_header(void)
{
    fresh();
    kd_db *db = open_db();
    CHECK(db);
    char key[16];
    for (int i = 0; i < 20; i++) {
        char val[32];
        snprintf(key, sizeof key, "k%02d", i);
        snprintf(val, sizeof val, "[1,2,1%02d]", i); /* distinct: every record the same size */
        CHECK_RC(kd_put(db, "n", key, val, 9, NULL), KD_OK);
    }
    kd_close(db);
    long size = fsize(seg(1));
    long rec = (size - 32) / 20; /* records are the same size */
    flip(seg(1), 32 + 5 * rec + 2); /* length field of record 5 */
    kd_repair_report rep;
    char kept[512];
    CHECK_RC(do_repair(&rep, kept), KD_OK);
    CHECK_EQ_INT(rep.records_lost, 1);
    CHECK_EQ_INT(rep.versions_kept, 19);
    db = open_db();
    CHECK(db);
    CHECK_EQ_INT(kd_contains(db, "n", "k05"), 0);
    CHECK_EQ_INT(kd_contains(db, "n", "k04"), 1);
    CHECK_EQ_INT(kd_contains(db, "n", "k06"), 1);
    CHECK_EQ_INT(kd_contains(db, "n", "k19"), 1);
    kd_close(db);
    cleanup();
}

/* Many segments; then a middle one goes missing or is cut short. */
static void fill_segments(int *nseg)
{
    kd_db *db = open_db();
    static char val[2100];
    for (int i = 0; i < 200; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%03d", i % 40);
        int n = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%02000d\"}", i, i);
        if (kd_put(db, "s", key, val, (size_t)n, NULL))
            abort();
    }
    kd_stats st;
    kd_stats_get(db, &st);
    *nseg = (int)st.segments;
    kd_close(db);
}

static void test_missing_segment(void)
{
    fresh();
    int nseg;
    fill_segments(&nseg);
    CHECK(nseg >= 4);
    CHECK(unlink(seg(2)) == 0);
    kd_repair_report rep;
    char kept[512];
    CHECK_RC(do_repair(&rep, kept), KD_OK);
    CHECK(reported("log-00000002.kdl: segment missing") == 1);
    CHECK_EQ_INT(rep.segments_lost, 1); /* counted as a segment: its records cannot be counted */
    CHECK_EQ_INT(rep.records_lost, 0);
    CHECK(rep.versions_lost > 0);
    CHECK(rep.keys_affected > 0);
    CHECK_EQ_INT(rep.versions_kept + rep.versions_lost + 0 <= 200, 1);
    kd_db *db = open_db();
    CHECK(db);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    CHECK_EQ_INT(vr.versions, rep.versions_kept);
    kd_close(db);
    cleanup();
}

static void test_truncated_middle_segment(void)
{
    fresh();
    int nseg;
    fill_segments(&nseg);
    CHECK(nseg >= 4);
    long size = fsize(seg(2));
    CHECK(truncate(seg(2), size / 2) == 0);
    kd_repair_report rep;
    char kept[512];
    CHECK_RC(do_repair(&rep, kept), KD_OK);
    CHECK(reported("log-00000002.kdl offset") >= 1);
    CHECK(rep.versions_lost > 0);
    kd_db *db = open_db();
    CHECK(db);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    CHECK_EQ_INT(vr.versions, rep.versions_kept);
    /* Versions from segment 1 are all there. */
    CHECK_EQ_INT(kd_contains(db, "s", "k000"), 1);
    kd_close(db);
    cleanup();
}

/* kill -9 at random moments during a repair: the database at `dir` is
 * always either the untouched original or the complete repaired one. */
static void test_kill_during_repair(void)
{
    fresh();
    int nseg;
    fill_segments(&nseg);
    unlink(seg(2));
    char orig[600];
    snprintf(orig, sizeof orig, "%s.orig", dir);
    sh("cp -a '%s' '%s.orig'", dir);
    srand(7);
    for (int round = 0; round < 8; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            kd_repair_report rep;
            char kept[512];
            _exit(do_repair(&rep, kept) == KD_OK ? 0 : 1);
        }
        usleep((useconds_t)(rand() % 20000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        /* Either the original segments are unchanged... */
        char cmp[1400];
        snprintf(cmp, sizeof cmp, "cmp -s '%s/log-00000003.kdl' '%s/log-00000003.kdl'", dir, orig);
        int original = system(cmp) == 0;
        kd_options *o = opts();
        kd_db *db = NULL;
        char err[512];
        int orc = kd_open(dir, o, &db, err, sizeof err);
        kd_options_free(o);
        if (original) {
            /* ...and still damaged (a segment is missing), nothing else
             * changed... */
            CHECK_RC(orc, KD_ECORRUPT);
        } else {
            /* ...or the repair finished and the result is whole. */
            CHECK_RC(orc, KD_OK);
            kd_verify_report vr;
            CHECK_RC(kd_verify(db, &vr), KD_OK);
            kd_close(db);
        }
        /* Start the next round from the damaged original again. */
        sh("rm -rf '%s' '%s'.damaged-* '%s'.repair-new", dir);
        char cp[1400];
        snprintf(cp, sizeof cp, "cp -a '%s' '%s'", orig, dir);
        CHECK(system(cp) == 0);
    }
    sh("rm -rf '%s.orig' '%s'", dir);
    cleanup();
}

/* Damage that holds no record (a segment header) still makes the database
 * unopenable: repair must rewrite it, not call it healthy. */
static void test_damaged_segment_header(void)
{
    fresh();
    kd_db *db = open_db();
    CHECK(db);
    CHECK_RC(kd_put(db, "n", "a", "1", 1, NULL), KD_OK);
    kd_close(db);
    flip(seg(1), 20); /* the segment number, covered by the header's CRC */
    kd_options *o = opts();
    char err[512];
    CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_ECORRUPT);
    kd_options_free(o);
    kd_repair_report rep;
    char kept[512];
    CHECK_RC(do_repair(&rep, kept), KD_OK);
    CHECK(reported("damaged segment header") == 1);
    CHECK(kept[0] != '\0');
    db = open_db();
    CHECK(db);
    CHECK_EQ_INT(kd_contains(db, "n", "a"), 1);
    kd_close(db);
    cleanup();
}

/* NODE: a node id is carried into the repaired database as it was; a
 * NODE that holds none is a loss, replaced by a new id that the report
 * names (the database did not open, so "nothing to repair" would be
 * false). */
static void read_node(char out[64])
{
    char p[600];
    snprintf(p, sizeof p, "%s/NODE", dir);
    memset(out, 0, 64);
    int fd = open(p, O_RDONLY);
    if (fd < 0 || read(fd, out, 63) < 0)
        out[0] = '\0';
    if (fd >= 0)
        close(fd);
}

static void write_node(const char *text)
{
    char p[600];
    snprintf(p, sizeof p, "%s/NODE", dir);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static void test_node(void)
{
    fresh();
    kd_db *db = open_db();
    CHECK(db);
    CHECK_RC(kd_put(db, "n", "a", "\"one\"", 5, NULL), KD_OK);
    CHECK_RC(kd_put(db, "n", "b", "\"two\"", 5, NULL), KD_OK);
    kd_close(db);
    char before[64], after[64], kept[512];
    read_node(before);
    flip(seg(1), fsize(seg(1)) - 2); /* n/b's record: the log is damaged, NODE is not */
    kd_repair_report rep;
    CHECK_RC(do_repair(&rep, kept), KD_OK);
    CHECK(kept[0] != '\0');
    CHECK_EQ_STR(rep.new_node_id, "");
    CHECK_EQ_INT(reported("NODE"), 0);
    read_node(after);
    CHECK_EQ_STR(after, before);

    write_node("not a node id at all, but long enough to pass a length check");
    CHECK(open_db() == NULL);
    CHECK_RC(do_repair(&rep, kept), KD_OK);
    CHECK_EQ_INT(rep.records_lost + rep.versions_lost, 0);
    CHECK(kept[0] != '\0');
    CHECK_EQ_INT(reported("NODE: node id is not 32 hex digits (it holds \"not a node id"), 1);
    CHECK_EQ_INT((int)strlen(rep.new_node_id), 32);
    read_node(after);
    CHECK(!strncmp(after, rep.new_node_id, 32) && after[32] == '\n');
    CHECK(strncmp(after, before, 32));
    db = open_db();
    CHECK(db);
    CHECK_EQ_INT(kd_contains(db, "n", "a"), 1);
    kd_close(db);
    CHECK_RC(do_repair(&rep, kept), KD_OK); /* now healthy */
    CHECK_EQ_STR(kept, "");
    cleanup();
}

int main(void)
{
    RUN(test_healthy_left_alone);
    RUN(test_healthy_in_a_read_only_parent);
    RUN(test_flipped_byte_in_value);
    RUN(test_flipped_header);
    RUN(test_missing_segment);
    RUN(test_truncated_middle_segment);
    RUN(test_kill_during_repair);
    RUN(test_damaged_segment_header);
    RUN(test_node);
    return HARNESS_DONE();
}
