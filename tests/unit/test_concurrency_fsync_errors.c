/*
 * test_concurrency_fsync_errors.c — a failed writeback is never
 * acknowledged, whoever else syncs the log at the same moment.
 *
 * Linux reports a failed writeback once per open file description: the
 * first fdatasync through a description after the failure gets EIO, later
 * ones through it get 0, and the pages that could not be written are not
 * written again. So if two fdatasync calls share a description, one can
 * take the error and the other return 0 for data that never reached the
 * disk. fdatasync is wrapped here with a model of that rule (one
 * description per fd: the library never dups a log fd), and a writeback
 * failure is made to happen while a durable put syncs and a seal syncs the
 * same segment.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "korudelta.h"

/* ------------------------------------------------------------------------
 * fdatasync, wrapped
 * ---------------------------------------------------------------------- */

enum { MAX_FD = 4096 };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int wb_errors;        /* writeback failures so far */
static int seen[MAX_FD];     /* per fd: failures already reported through it */
static int armed;            /* the next log sync meets a writeback failure */
static int first_waiting;    /* that sync waits for another one to end */
static int others_done;      /* log syncs ended while it waited */

static int is_log_segment(int fd)
{
    char link[64], target[600];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return 0;
    target[n] = '\0';
    const char *base = strrchr(target, '/');
    return base && strncmp(base, "/log-", 5) == 0;
}

/* Wait for the flag, at most 5 s (a build that never makes the second
 * sync must fail the test, not hang it). Under mu. */
static void wait_for(const int *flag)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    while (!*flag && pthread_cond_timedwait(&cv, &mu, &until) == 0)
        ;
}

static int bad_fd_syncs; /* fdatasync of a fd that was not open */
static int slow_syncs;   /* log syncs start 300 us late (a rotation may run meanwhile) */

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
    if (fd < 0 || fd >= MAX_FD || !is_log_segment(fd)) {
        int rc = __real_fdatasync(fd);
        if (rc != 0 && errno == EBADF)
            __atomic_add_fetch(&bad_fd_syncs, 1, __ATOMIC_RELAXED);
        return rc;
    }
    if (__atomic_load_n(&slow_syncs, __ATOMIC_RELAXED))
        usleep(300);
    pthread_mutex_lock(&mu);
    int first = armed;
    if (first) {
        /* A page of the log fails to reach the disk while this sync runs;
         * another sync of the log runs and ends before this one does. */
        armed = 0;
        wb_errors++;
        first_waiting = 1;
        pthread_cond_broadcast(&cv);
        wait_for(&others_done);
    }
    pthread_mutex_unlock(&mu);

    int rc = __real_fdatasync(fd);
    if (rc != 0 && errno == EBADF)
        __atomic_add_fetch(&bad_fd_syncs, 1, __ATOMIC_RELAXED);

    pthread_mutex_lock(&mu);
    if (rc == 0 && seen[fd] < wb_errors) {
        seen[fd] = wb_errors;
        errno = EIO;
        rc = -1;
    }
    if (!first && first_waiting) {
        others_done = 1;
        pthread_cond_broadcast(&cv);
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

/* ------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------- */

static char dir[256];

typedef struct put_job {
    kd_db *db;
    int rc;
} put_job;

static void *durable_put(void *arg)
{
    put_job *j = arg;
    j->rc = kd_put(j->db, "t", "b", "2", 1, NULL);
    return NULL;
}

/* A durable put syncs; meanwhile another put, too large for the space the
 * tail has reserved, reserves more and syncs the segment's new length, and
 * a page of the log fails to be written. The first put must not be
 * acknowledged (it was, while both syncs shared one open file
 * description), and the database stops writing. */
static void test_failed_writeback_during_a_reserve_is_not_acknowledged(void)
{
    harness_tmpdir("fsync_errors", "reserve", dir);
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_ALWAYS, 0);
    kd_db *db = NULL;
    char err[512];
    int rc = kd_open(dir, o, &db, err, sizeof err);
    kd_options_free(o);
    if (rc)
        fprintf(stderr, "kd_open: %s\n", err);
    CHECK_RC(rc, KD_OK);
    /* A first put, so that the tail's reserve is made before the test. */
    CHECK_RC(kd_put(db, "t", "a", "1", 1, NULL), KD_OK);

    pthread_mutex_lock(&mu);
    armed = 1;
    pthread_mutex_unlock(&mu);
    put_job job = {db, -1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, durable_put, &job) == 0);
    pthread_mutex_lock(&mu);
    wait_for(&first_waiting);
    int put_is_syncing = first_waiting;
    pthread_mutex_unlock(&mu);

    /* 9 MB: past the 8 MiB the tail reserves at a time */
    size_t big_len = 9000000;
    char *big = malloc(big_len);
    CHECK(big != NULL);
    memset(big, 'x', big_len);
    big[0] = big[big_len - 1] = '"';
    int big_rc = put_is_syncing ? kd_put(db, "t", "big", big, big_len, NULL) : -1;
    free(big);
    pthread_join(th, NULL);
    CHECK(put_is_syncing);
    CHECK_RC(job.rc, KD_EIO);
    CHECK(big_rc != KD_OK);
    /* Nothing more is written, and what was acknowledged is still read. */
    CHECK_RC(kd_put(db, "t", "c", "3", 1, NULL), KD_EIO);
    char *json = NULL;
    size_t len = 0;
    CHECK_RC(kd_get(db, "t", "a", &json, &len, NULL), KD_OK);
    CHECK_EQ_STR(json, "1");
    kd_free(json);
    kd_close(db);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

enum { WRITERS = 4, PUTS = 400 };

typedef struct writer_job {
    kd_db *db;
    int id, failures;
} writer_job;

static void *writer(void *arg)
{
    writer_job *j = arg;
    char key[32], val[1100];
    for (int i = 0; i < PUTS; i++) {
        snprintf(key, sizeof key, "w%d-%d", j->id, i);
        int n = snprintf(val, sizeof val, "\"%d-%d-", j->id, i);
        memset(val + n, 'x', 1000);
        val[n + 1000] = '"';
        if (kd_put(j->db, "t", key, val, (size_t)n + 1001, NULL) != KD_OK)
            j->failures++;
    }
    return NULL;
}

static kd_db *open_small_segments(void)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_ALWAYS, 0);
    kd_options_set_segment_size(o, 64 << 10);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "kd_open: %s\n", err);
    kd_options_free(o);
    return db;
}

/* Durable writers while the log rotates every ~60 writes: a rotation
 * opens the new segment's sync description and closes the old one only
 * once no sync is using it, so every sync reaches an open log file. */
static void test_rotations_under_durable_writers(void)
{
    harness_tmpdir("fsync_errors", "rotate", dir);
    kd_db *db = open_small_segments();
    CHECK(db != NULL);
    __atomic_store_n(&slow_syncs, 1, __ATOMIC_RELAXED);
    writer_job jobs[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        jobs[i] = (writer_job){db, i, 0};
        CHECK(pthread_create(&th[i], NULL, writer, &jobs[i]) == 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    __atomic_store_n(&slow_syncs, 0, __ATOMIC_RELAXED);
    for (int i = 0; i < WRITERS; i++)
        CHECK_EQ_INT(jobs[i].failures, 0);
    CHECK_EQ_INT(__atomic_load_n(&bad_fd_syncs, __ATOMIC_RELAXED), 0);
    kd_close(db);

    db = open_small_segments();
    CHECK(db != NULL);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.versions, WRITERS * PUTS);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK(rep.segments >= 20);
    kd_close(db);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    RUN(test_rotations_under_durable_writers);
    RUN(test_failed_writeback_during_a_reserve_is_not_acknowledged);
    return HARNESS_DONE();
}
