/*
 * test_sync_order.c — what must be durable before what.
 *
 * A power loss keeps only what was synced, so each file the database makes
 * durable must not point at anything that is not durable yet. fdatasync,
 * fsync, rename, mkdir and unlink are wrapped to record their order, and
 * each test checks one rule on that trace. The log is opened with
 * sync=none, where no write syncs it by itself: only the rule can.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "korudelta.h"

/* ------------------------------------------------------------------------
 * The trace
 * ---------------------------------------------------------------------- */

typedef enum { EV_SYNC, EV_RENAME, EV_MKDIR, EV_UNLINK } ev_kind;

typedef struct ev {
    ev_kind kind;
    char path[512]; /* synced file or directory; rename's source */
    char to[512];   /* rename's destination */
} ev;

enum { MAX_EV = 4096 };
static ev trace[MAX_EV];
static int n_ev;
static int tracing;

static void record(ev_kind kind, const char *path, const char *to)
{
    if (!__atomic_load_n(&tracing, __ATOMIC_ACQUIRE))
        return;
    int i = __atomic_fetch_add(&n_ev, 1, __ATOMIC_ACQ_REL);
    if (i >= MAX_EV)
        return;
    trace[i].kind = kind;
    snprintf(trace[i].path, sizeof trace[i].path, "%s", path);
    snprintf(trace[i].to, sizeof trace[i].to, "%s", to ? to : "");
}

static void record_fd(int fd)
{
    char link[64], target[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = '\0';
    record(EV_SYNC, target, NULL);
}

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
    int rc = __real_fdatasync(fd);
    if (rc == 0)
        record_fd(fd);
    return rc;
}

static int fail_torn_sync; /* fsync of a kept torn tail fails (EIO) */

int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __wrap_fsync(int fd)
{
    if (fail_torn_sync) {
        char link[64], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        if (strstr(target, ".kdl.torn-")) {
            errno = EIO;
            return -1;
        }
    }
    int rc = __real_fsync(fd);
    if (rc == 0)
        record_fd(fd);
    return rc;
}

int __real_rename(const char *from, const char *to);
int __wrap_rename(const char *from, const char *to);
int __wrap_rename(const char *from, const char *to)
{
    int rc = __real_rename(from, to);
    if (rc == 0)
        record(EV_RENAME, from, to);
    return rc;
}

int __real_mkdir(const char *path, mode_t mode);
int __wrap_mkdir(const char *path, mode_t mode);
int __wrap_mkdir(const char *path, mode_t mode)
{
    int rc = __real_mkdir(path, mode);
    if (rc == 0)
        record(EV_MKDIR, path, NULL);
    return rc;
}

int __real_unlink(const char *path);
int __wrap_unlink(const char *path);
int __wrap_unlink(const char *path)
{
    int rc = __real_unlink(path);
    if (rc == 0)
        record(EV_UNLINK, path, NULL);
    return rc;
}

static void trace_start(void)
{
    n_ev = 0;
    __atomic_store_n(&tracing, 1, __ATOMIC_RELEASE);
}

static void trace_stop(void)
{
    __atomic_store_n(&tracing, 0, __ATOMIC_RELEASE);
    if (n_ev > MAX_EV)
        n_ev = MAX_EV;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int is_log(const char *path)
{
    const char *base = strrchr(path, '/');
    return base && strncmp(base, "/log-", 5) == 0 && ends_with(base, ".kdl");
}

/* Index of the first event at or after `from` of `kind` whose path (or,
 * for a rename, destination) ends with `suffix`; -1 if none. */
static int find(int from, ev_kind kind, const char *suffix)
{
    for (int i = from; i < n_ev; i++)
        if (trace[i].kind == kind && ends_with(kind == EV_RENAME ? trace[i].to : trace[i].path, suffix))
            return i;
    return -1;
}

/* Index of the last such event, -1 if none. */
static int find_last(ev_kind kind, const char *suffix)
{
    for (int i = n_ev - 1; i >= 0; i--)
        if (trace[i].kind == kind && ends_with(kind == EV_RENAME ? trace[i].to : trace[i].path, suffix))
            return i;
    return -1;
}

/* Is there a sync of a log segment in events [from, to)? */
static int log_synced_between(int from, int to)
{
    for (int i = from < 0 ? 0 : from; i < to; i++)
        if (trace[i].kind == EV_SYNC && is_log(trace[i].path))
            return 1;
    return 0;
}

static void dump_trace(void)
{
    static const char *const names[] = {"sync", "rename", "mkdir", "unlink"};
    for (int i = 0; i < n_ev; i++)
        fprintf(stderr, "  %2d %-6s %s%s%s\n", i, names[trace[i].kind], trace[i].path, trace[i].to[0] ? " -> " : "",
                trace[i].to);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static char dir[256], db_dir[400];

static kd_db *open_db(const char *path, kd_sync mode)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, mode, 60000);
    kd_options_set_upkeep_interval(o, 0);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(path, o, &db, err, sizeof err))
        fprintf(stderr, "kd_open %s: %s\n", path, err);
    kd_options_free(o);
    return db;
}

static void fresh(const char *tag)
{
    harness_tmpdir("sync_order", tag, dir);
    snprintf(db_dir, sizeof db_dir, "%s/db", dir);
}

static int put_n(kd_db *db, const char *key, int n)
{
    for (int i = 0; i < n; i++) {
        char v[32];
        int len = snprintf(v, sizeof v, "%d", i);
        if (kd_put(db, "t", key, v, (size_t)len, NULL) != KD_OK)
            return -1;
    }
    return 0;
}

static void cleanup(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* ------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------- */

/* A checkpoint names the newest record, and opening trusts it for every
 * record before that one: the log is synced before the checkpoint is put
 * in place. */
static void test_log_synced_before_checkpoint(void)
{
    fresh("ckpt");
    kd_db *db = open_db(db_dir, KD_SYNC_NONE);
    CHECK(db != NULL);
    CHECK_EQ_INT(put_n(db, "k", 50), 0);
    trace_start();
    int rc = kd_checkpoint(db);
    trace_stop();
    CHECK_RC(rc, KD_OK);
    int placed = find(0, EV_RENAME, "/index.ckpt");
    if (placed < 0 || !log_synced_between(0, placed))
        dump_trace();
    CHECK(placed >= 0);
    CHECK(log_synced_between(0, placed));
    kd_close(db);
    cleanup();
}

/* The same when the unsynced writes are an earlier session's (sync=none
 * closes without syncing the log, and a crash leaves them in the page
 * cache): the next session syncs the log before its first checkpoint or
 * backup, though it wrote nothing itself. */
static void test_log_of_an_earlier_session_synced(void)
{
    fresh("earlier");
    kd_db *db = open_db(db_dir, KD_SYNC_NONE);
    CHECK(db != NULL);
    CHECK_EQ_INT(put_n(db, "k", 50), 0);
    kd_close(db);
    static const kd_sync modes[] = {KD_SYNC_NONE, KD_SYNC_ALWAYS};
    for (int m = 0; m < 2; m++) {
        db = open_db(db_dir, modes[m]);
        CHECK(db != NULL);
        trace_start();
        int rc = kd_checkpoint(db);
        trace_stop();
        CHECK_RC(rc, KD_OK);
        int placed = find(0, EV_RENAME, "/index.ckpt");
        if (placed < 0 || !log_synced_between(0, placed))
            dump_trace();
        CHECK(placed >= 0);
        CHECK(log_synced_between(0, placed));
        kd_close(db);
        /* a later session: its first write does not sync (sync=none) */
        db = open_db(db_dir, KD_SYNC_NONE);
        CHECK(db != NULL);
        char file[450];
        snprintf(file, sizeof file, "%s/b%d.kdb", dir, m);
        trace_start();
        rc = kd_backup(db, file, NULL, NULL);
        trace_stop();
        CHECK_RC(rc, KD_OK);
        if (!log_synced_between(0, n_ev))
            dump_trace();
        CHECK(log_synced_between(0, n_ev));
        CHECK_EQ_INT(put_n(db, "more", 10), 0); /* unsynced for the next round */
        kd_close(db);
    }
    cleanup();
}

/* A new database's directory entry is durable before the open returns
 * (before any write in it can be acknowledged). */
static void test_new_database_directory_synced(void)
{
    fresh("mkdir");
    trace_start();
    kd_db *db = open_db(db_dir, KD_SYNC_ALWAYS);
    trace_stop();
    CHECK(db != NULL);
    int made = find(0, EV_MKDIR, "/db");
    int parent_synced = -1;
    for (int i = made + 1; made >= 0 && i < n_ev && parent_synced < 0; i++)
        if (trace[i].kind == EV_SYNC && strcmp(trace[i].path, dir) == 0)
            parent_synced = i;
    if (parent_synced < 0)
        dump_trace();
    CHECK(made >= 0);
    CHECK(parent_synced > made);
    kd_close(db);
    cleanup();
}

/* A parent directory this process may write in but not read (mode 0333)
 * cannot be opened to sync: the open goes on (it was refused with
 * "Permission denied" once the directory was made). Needs root to switch
 * to another user; skipped otherwise. */
static void test_new_database_in_an_unreadable_parent(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "  (skipped: not root)\n");
        return;
    }
    fresh("wonly");
    char parent[300];
    snprintf(parent, sizeof parent, "%s/p", dir);
    CHECK(mkdir(parent, 0333) == 0);
    CHECK(chmod(parent, 0333) == 0 && chown(parent, 65534, 65534) == 0 && chown(dir, 65534, 65534) == 0);
    snprintf(db_dir, sizeof db_dir, "%s/db", parent);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(3);
        kd_db *db = open_db(db_dir, KD_SYNC_ALWAYS);
        int ok = db && kd_put(db, "t", "k", "1", 1, NULL) == KD_OK;
        if (db)
            kd_close(db);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
    cleanup();
}

/* A compaction's "started" record is durable before any segment is
 * replaced, and its "done" record before its plan file goes: opening
 * reads both to finish or account for it. */
static void test_compaction_records_synced(void)
{
    fresh("compact");
    kd_db *db = open_db(db_dir, KD_SYNC_NONE);
    CHECK(db != NULL);
    CHECK_RC(kd_retention_set(db, "t", "{\"keep_last\":1}", 15), KD_OK);
    CHECK_EQ_INT(put_n(db, "k", 200), 0);
    trace_start();
    kd_compact_report rep;
    int rc = kd_compact(db, 0, &rep);
    trace_stop();
    CHECK_RC(rc, KD_OK);
    CHECK(rep.versions_pruned > 0);
    int plan = find(0, EV_RENAME, "/compact.pending");
    int first_seg = plan < 0 ? -1 : find(plan, EV_RENAME, ".kdl");
    int last_seg = find_last(EV_RENAME, ".kdl");
    int plan_gone = find(0, EV_UNLINK, "/compact.pending");
    int ok = plan >= 0 && first_seg > plan && plan_gone > last_seg && log_synced_between(plan, first_seg) &&
             log_synced_between(last_seg, plan_gone);
    if (!ok)
        dump_trace();
    CHECK(plan >= 0);
    CHECK(first_seg > plan);
    CHECK(plan_gone > last_seg);
    CHECK(log_synced_between(plan, first_seg));
    CHECK(log_synced_between(last_seg, plan_gone));
    kd_close(db);
    cleanup();
}

/* A backup holds only writes that are durable in the database. */
static void test_log_synced_before_backup(void)
{
    fresh("backup");
    kd_db *db = open_db(db_dir, KD_SYNC_NONE);
    CHECK(db != NULL);
    CHECK_EQ_INT(put_n(db, "k", 20), 0);
    char file[450];
    snprintf(file, sizeof file, "%s/b.kdb", dir);
    trace_start();
    int rc = kd_backup(db, file, NULL, NULL);
    trace_stop();
    CHECK_RC(rc, KD_OK);
    if (!log_synced_between(0, n_ev))
        dump_trace();
    CHECK(log_synced_between(0, n_ev));
    kd_close(db);
    cleanup();
}

/* A torn tail is kept aside before it is cut; when that copy cannot be
 * made durable, the open fails saying so, and leaves no partial copy. */
static void test_torn_tail_kept_or_open_refused(void)
{
    fresh("torn");
    kd_db *db = open_db(db_dir, KD_SYNC_NONE);
    CHECK(db != NULL);
    char v[3100];
    for (int i = 0; i < 12; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%02d", i);
        int n = snprintf(v, sizeof v, "\"%d", i);
        memset(v + n, 'a' + i, 3000);
        v[n + 3000] = '"';
        CHECK_RC(kd_put(db, "t", key, v, (size_t)n + 3001, NULL), KD_OK);
    }
    kd_close(db);
    char seg[450];
    snprintf(seg, sizeof seg, "%s/log-00000001.kdl", db_dir);
    struct stat st;
    CHECK(stat(seg, &st) == 0 && st.st_size > 5 * 4096);
    /* the second page as if it never reached the disk */
    static char zeros[4096];
    int fd = open(seg, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, zeros, sizeof zeros, 4096) == (ssize_t)sizeof zeros);
    close(fd);
    fail_torn_sync = 1;
    kd_options *o = kd_options_new();
    kd_db *bad = NULL;
    char err[1024];
    int rc = kd_open(db_dir, o, &bad, err, sizeof err);
    fail_torn_sync = 0;
    CHECK_RC(rc, KD_EIO);
    CHECK(strstr(err, "cannot be kept aside") != NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q torn", db_dir);
    CHECK(system(cmd) != 0); /* no partial copy left */
    rc = kd_open(db_dir, o, &bad, err, sizeof err);
    kd_options_free(o);
    CHECK_RC(rc, KD_OK);
    CHECK(system(cmd) == 0); /* kept this time */
    CHECK_EQ_INT(kd_contains(bad, "t", "k00"), 1);
    CHECK_EQ_INT(kd_contains(bad, "t", "k11"), 0);
    kd_close(bad);
    cleanup();
}

int main(void)
{
    RUN(test_log_synced_before_checkpoint);
    RUN(test_log_of_an_earlier_session_synced);
    RUN(test_new_database_directory_synced);
    RUN(test_new_database_in_an_unreadable_parent);
    RUN(test_compaction_records_synced);
    RUN(test_log_synced_before_backup);
    RUN(test_torn_tail_kept_or_open_refused);
    return HARNESS_DONE();
}
