/*
 * schedule.c — scheduled backups of the served database (`kdelta serve
 * --backup-every DURATION --backup-dir D --keep N`).
 *
 * One thread sleeps on a condition variable; every DURATION it writes a
 * full backup (kd_backup, online: requests go on meanwhile) named by the
 * UTC time, "backup-YYYYMMDDTHHMMSSZ.kdb", into D, logs the outcome, and
 * then removes the oldest such files beyond the N newest (N = 0 keeps
 * them all). Stopping wakes the thread and waits for a backup in progress
 * to finish, so shutdown never leaves one half-done. A kill leaves only a
 * temporary file, "<name>.tmp-<random>"; the library removes those of a
 * path when it next backs up to that path, which a scheduled name never
 * is, so each run first removes the ones of scheduled names that nobody
 * holds (a backup holds its temporary file's flock while it writes it).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "server_int.h"

struct ks_backup_schedule {
    kd_db *db;
    char *dir;
    uint64_t every_s;
    unsigned keep;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
};

/* 1 if name is "backup-YYYYMMDDTHHMMSSZ.kdb". */
static int is_backup_name(const char *name)
{
    static const char pat[] = "backup-DDDDDDDDTDDDDDDZ.kdb";
    if (strlen(name) != sizeof pat - 1)
        return 0;
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] == 'D') {
            if (name[i] < '0' || name[i] > '9')
                return 0;
        } else if (name[i] != pat[i]) {
            return 0;
        }
    }
    return 1;
}

/* 1 if name is a scheduled backup's temporary file: "<backup name>.tmp-"
 * and the library's 16 random hex digits. */
static int is_backup_temp(const char *name)
{
    char head[sizeof "backup-DDDDDDDDTDDDDDDZ.kdb"];
    size_t hl = sizeof head - 1;
    if (strlen(name) != hl + 5 + 16 || strncmp(name + hl, ".tmp-", 5) != 0 ||
        strspn(name + hl + 5, "0123456789abcdef") != 16)
        return 0;
    memcpy(head, name, hl);
    head[hl] = '\0';
    return is_backup_name(head);
}

/* Remove the temporary files killed scheduled backups left. */
static void remove_stale_temps(struct ks_backup_schedule *s)
{
    DIR *d = opendir(s->dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_backup_temp(de->d_name))
            continue;
        int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && unlinkat(dirfd(d), de->d_name, 0) == 0)
            ks_log(KD_LOG_INFO, "backup: removed %s/%s, left by a backup that did not finish", s->dir, de->d_name);
        close(fd);
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Remove the oldest scheduled backups beyond the `keep` newest. */
static void prune(struct ks_backup_schedule *s)
{
    if (!s->keep)
        return;
    DIR *d = opendir(s->dir);
    if (!d) {
        ks_log(KD_LOG_WARN, "backup: cannot list %s to remove old backups: %s", s->dir, strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_backup_name(de->d_name))
            continue;
        names = ks_xrealloc(names, (n + 1) * sizeof *names);
        names[n++] = ks_xstrdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str); /* the names sort by time */
    for (size_t i = 0; i + s->keep < n; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", s->dir, names[i]);
        if (unlink(p) == 0)
            ks_log(KD_LOG_INFO, "backup: removed %s (keeping the %u newest)", p, s->keep);
        else
            ks_log(KD_LOG_WARN, "backup: cannot remove %s: %s", p, strerror(errno));
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void run_one(struct ks_backup_schedule *s)
{
    remove_stale_temps(s);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char name[64], p[4200];
    strftime(name, sizeof name, "backup-%Y%m%dT%H%M%SZ.kdb", &tm);
    snprintf(p, sizeof p, "%s/%s", s->dir, name);
    kd_backup_info info;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = kd_backup(s->db, p, NULL, &info);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (rc != KD_OK) {
        ks_log(KD_LOG_ERROR, "backup: %s failed: %s", p, kd_errmsg(s->db)[0] ? kd_errmsg(s->db) : kd_strerror(rc));
        return;
    }
    ks_log(KD_LOG_INFO, "backup: wrote %s: %llu transactions, %llu writes, %llu bytes of log in %llu bytes, %.2f s",
           p, (unsigned long long)info.txns, (unsigned long long)info.writes, (unsigned long long)info.log_bytes,
           (unsigned long long)info.file_bytes, secs);
    prune(s);
}

static void *schedule_main(void *arg)
{
    struct ks_backup_schedule *s = arg;
    pthread_mutex_lock(&s->mu);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!s->stopping) {
        next.tv_sec += (time_t)s->every_s;
        while (!s->stopping) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec >= next.tv_nsec))
                break;
            pthread_cond_timedwait(&s->cv, &s->mu, &next);
        }
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->mu);
        run_one(s);
        pthread_mutex_lock(&s->mu);
        /* A backup longer than the interval: the next one starts from now. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec + (time_t)s->every_s)
            next = now;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int ks_backup_schedule_start(kd_db *db, const char *dir, uint64_t every_s, unsigned keep, ks_backup_schedule **out)
{
    struct ks_backup_schedule *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->db = db;
    s->dir = ks_xstrdup(dir);
    s->every_s = every_s;
    s->keep = keep;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->thread, NULL, schedule_main, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s->dir);
        free(s);
        return -1;
    }
    if (keep)
        ks_log(KD_LOG_INFO, "backup: a full backup into %s every %llu s, keeping the %u newest", dir,
               (unsigned long long)every_s, keep);
    else
        ks_log(KD_LOG_INFO, "backup: a full backup into %s every %llu s, keeping all", dir,
               (unsigned long long)every_s);
    *out = s;
    return 0;
}

void ks_backup_schedule_stop(ks_backup_schedule *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->dir);
    free(s);
}
