/*
 * test_compact.c — retention policies and compaction: a policy's decisions
 * on generated histories, compaction removing exactly the values of the
 * versions a policy drops (and nothing else), reading pruned versions,
 * verify telling pruning from tampering, reopening, storing a pruned value
 * again, and kill -9 at random moments of a compaction.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"
#include "retention.h"
#include "rewrite.h"
#include "store/format.h"
#include "util/crc32c.h"

#define SEC INT64_C(1000000000)

static kd_db *open_db(const char *dir)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_upkeep_interval(o, 0);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err) != KD_OK) {
        fprintf(stderr, "open %s: %s\n", dir, err);
        db = NULL;
    }
    kd_options_free(o);
    return db;
}

/* Value number i of a key: distinct, about 1 KiB, so segments fill. */
static void value_of(const char *key, int i, char *out, size_t len)
{
    int n = snprintf(out, len, "{\"i\":%d,\"key\":\"%s\",\"pad\":\"", i, key); /* canonical order */
    for (; n < 1000; n++)
        out[n] = (char)('a' + (i + n) % 26);
    snprintf(out + n, len - (size_t)n, "\"}");
}

/* ---- the policy decisions ---- */

static void decide(const char *json, int64_t now, const int64_t *ts, uint32_t n, uint8_t *keep)
{
    kd__policy p;
    char why[200];
    uint8_t *tomb = calloc(n, 1);
    if (kd__policy_parse(json, strlen(json), &p, why, sizeof why) != KD_OK) {
        fprintf(stderr, "policy %s: %s\n", json, why);
        memset(keep, 9, n);
        free(tomb);
        return;
    }
    kd__policy_decide(&p, now, ts, tomb, n, keep);
    free(tomb);
}

static void test_policy_keep_last_and_newer_than(void)
{
    int64_t now = 1000000 * SEC, ts[10];
    uint8_t keep[10];
    for (int i = 0; i < 10; i++)
        ts[i] = now - (10 - i) * 3600 * SEC; /* hourly, oldest 10 h ago */
    decide("{\"keep_last\": 3}", now, ts, 10, keep);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(keep[i], i >= 7);
    decide("{\"keep_newer_than\": \"4h\"}", now, ts, 10, keep);
    for (int i = 0; i < 10; i++) /* ages 10h … 1h: younger than 4h are ages 3h, 2h, 1h */
        CHECK_EQ_INT(keep[i], i >= 7);
    decide("{\"keep_last\": 5, \"keep_newer_than\": \"2h\"}", now, ts, 10, keep);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(keep[i], i >= 5);
    decide("{\"keep_last\": 1}", now, ts, 10, keep); /* the newest is always kept */
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(keep[i], i == 9);
}

static void test_policy_thinning(void)
{
    /* One version every 10 minutes for 3 days; keep everything younger than
     * 1 day, one per hour after 1 day, one per 6 hours after 2 days. */
    enum { N = 3 * 24 * 6 };
    static int64_t ts[N];
    static uint8_t keep[N];
    int64_t now = 500 * 24 * 3600 * SEC; /* a multiple of every window */
    for (int i = 0; i < N; i++)
        ts[i] = now - (int64_t)(N - i) * 600 * SEC + 1;
    decide("{\"thin\": [{\"after\": \"1d\", \"every\": \"1h\"}, {\"after\": \"2d\", \"every\": \"6h\"}]}", now, ts, N,
           keep);
    int young = 0, hourly = 0, six = 0;
    for (int i = 0; i < N; i++) {
        int64_t age = now - ts[i];
        if (age < 24 * 3600 * SEC) {
            CHECK_EQ_INT(keep[i], 1);
            young++;
            continue;
        }
        /* kept exactly when it is the last of its window under its rule */
        int64_t every = age < 48 * 3600 * SEC ? 3600 * SEC : 6 * 3600 * SEC;
        int64_t next_age = now - ts[i + 1];
        int64_t next_every = next_age < 24 * 3600 * SEC ? 0 : next_age < 48 * 3600 * SEC ? 3600 * SEC : 6 * 3600 * SEC;
        int last = next_every != every || ts[i] / every != ts[i + 1] / every;
        if (keep[i] != last)
            fprintf(stderr, "i=%d age=%lld every=%lld next_every=%lld\n", i, (long long)(age / SEC),
                    (long long)(every / SEC), (long long)(next_every / SEC));
        CHECK_EQ_INT(keep[i], last);
        if (keep[i] && every == 3600 * SEC)
            hourly++;
        else if (keep[i])
            six++;
    }
    CHECK_EQ_INT(young, 144);
    CHECK(hourly >= 23 && hourly <= 25);
    CHECK(six >= 4 && six <= 5);
}

static void test_policy_errors(void)
{
    char dir[256];
    harness_tmpdir("compact", "perr", dir);
    kd_db *db = open_db(dir);
    CHECK(db);
    const char *bad[] = {"{}", "[]", "{\"keep_last\": 0}", "{\"keep_last\": -1}", "{\"keep_last\": 1.5}",
                         "{\"keep_newer_than\": \"7x\"}", "{\"keep_newer_than\": 7}", "{\"thin\": []}",
                         "{\"thin\": [{\"after\": \"1d\"}]}", "{\"keep_last\": 2, \"kep\": 1}", "{", "nope"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_RC(kd_retention_set(db, "n", bad[i], strlen(bad[i])), KD_EINVALID);
    CHECK_RC(kd_retention_set(db, "_kd.views", "{\"keep_last\":2}", 15), KD_ERESERVED);
    char *json = NULL;
    CHECK_RC(kd_retention_get(db, "n", &json, NULL), KD_ENOTFOUND);
    CHECK_RC(kd_retention_clear(db, "n"), KD_ENOTFOUND);
    /* canonical form: durations in the largest exact unit, rules sorted */
    const char *p = "{\"thin\":[{\"every\":\"86400s\",\"after\":\"2160h\"},{\"after\":\"168h\",\"every\":\"60m\"}],"
                    "\"keep_newer_than\":\"1440m\"}";
    CHECK_RC(kd_retention_set(db, "n", p, strlen(p)), KD_OK);
    CHECK_RC(kd_retention_get(db, "n", &json, NULL), KD_OK);
    CHECK_EQ_STR(json, "{\"keep_newer_than\":\"1d\",\"thin\":[{\"after\":\"1w\",\"every\":\"1h\"},"
                       "{\"after\":\"90d\",\"every\":\"1d\"}]}");
    kd_free(json);
    CHECK_RC(kd_retention_list(db, &json, NULL), KD_OK);
    CHECK(strstr(json, "\"n\":{") != NULL);
    kd_free(json);
    CHECK_RC(kd_retention_clear(db, "n"), KD_OK);
    CHECK_RC(kd_retention_get(db, "n", &json, NULL), KD_ENOTFOUND);
    kd_close(db);
}

/* ---- compaction ---- */

/* Open files of this process that were deleted or replaced and live in dir
 * (a rewritten segment's old file still holding its disk space). */
static int deleted_files_open(const char *dir)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[300], target[600];
        snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(p, target, sizeof target - 1);
        if (l <= 0)
            continue;
        target[l] = '\0';
        n += !strncmp(target, dir, strlen(dir)) && strstr(target, "(deleted)") != NULL;
    }
    if (d)
        closedir(d);
    return n;
}

enum { VERSIONS = 300, OTHER = 40 };

/* n/k: VERSIONS versions, each value distinct; n/shared: versions whose
 * value equals one of n/k's old ones; other/k: untouched. */
static int fill(kd_db *db)
{
    char v[1100];
    for (int i = 0; i < VERSIONS; i++) {
        value_of("k", i, v, sizeof v);
        if (kd_put(db, "n", "k", v, strlen(v), NULL))
            return -1;
        if (i < OTHER) {
            value_of("o", i, v, sizeof v);
            if (kd_put(db, "other", "k", v, strlen(v), NULL))
                return -1;
        }
    }
    value_of("k", 5, v, sizeof v); /* n/k's version 5 value, kept by "other2" */
    if (kd_put(db, "other2", "same", v, strlen(v), NULL))
        return -1;
    return kd_delete(db, "n", "gone", NULL) == KD_ENOTFOUND ? 0 : 0;
}

/* A new database (in dir) holding fill()'s history, with the policy
 * "keep the last 10" on n; NULL when that fails. */
static kd_db *filled_db(const char *tag, char *dir)
{
    harness_tmpdir("compact", tag, dir);
    kd_db *db = open_db(dir);
    if (db && (fill(db) || kd_retention_set(db, "n", "{\"keep_last\":10}", 16) != KD_OK)) {
        kd_close(db);
        db = NULL;
    }
    return db;
}

/* Check n/k's history against "keep the last 10": every version is listed;
 * pruned ones (all but the last 10, unless still in the newest segment or
 * sharing a kept value) read as KD_EPRUNED, the rest read back exactly. */
static void check_history(kd_db *db, uint64_t *pruned_out)
{
    kd_version *h = NULL;
    size_t n = 0;
    CHECK_RC(kd_history(db, "n", "k", 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, VERSIONS);
    uint64_t pruned = 0;
    char want[1100];
    for (size_t i = 0; i < n; i++) {
        char *got = NULL;
        int rc = kd_get_at(db, "n", "k", h[i].timestamp, &got, NULL, NULL);
        value_of("k", (int)i, want, sizeof want);
        if (h[i].pruned) {
            pruned++;
            CHECK(i < VERSIONS - 10);
            CHECK(i != 5); /* its value is still used by other2/same */
            CHECK_RC(rc, KD_EPRUNED);
            CHECK_EQ_INT(h[i].version_id[0] != '\0', 1); /* the ids stay */
        } else {
            CHECK_RC(rc, KD_OK);
            CHECK_EQ_STR(got, want);
        }
        kd_free(got);
    }
    kd_free(h);
    char *got = NULL;
    for (int i = 0; i < OTHER; i++) {
        kd_version *oh = NULL;
        size_t on = 0;
        CHECK_RC(kd_history(db, "other", "k", 0, KD_TIME_MAX, 0, 0, &oh, &on), KD_OK);
        CHECK_EQ_INT(on, OTHER);
        CHECK_RC(kd_get_at(db, "other", "k", oh[i].timestamp, &got, NULL, NULL), KD_OK);
        value_of("o", i, want, sizeof want);
        CHECK_EQ_STR(got, want);
        kd_free(got);
        kd_free(oh);
    }
    CHECK_RC(kd_get(db, "other2", "same", &got, NULL, NULL), KD_OK);
    value_of("k", 5, want, sizeof want);
    CHECK_EQ_STR(got, want);
    kd_free(got);
    *pruned_out = pruned;
}

static void test_compact_keep_last(void)
{
    char dir[256];
    harness_tmpdir("compact", "last", dir);
    kd_db *db = open_db(dir);
    CHECK(db);
    CHECK_RC(fill(db), 0);
    kd_stats before;
    CHECK_RC(kd_stats_get(db, &before), KD_OK);
    CHECK(before.segments > 3);
    kd_root *r0 = NULL;
    size_t nr0 = 0;
    CHECK_RC(kd_roots(db, &r0, &nr0), KD_OK);

    kd_compact_report dry, rep;
    CHECK_RC(kd_compact(db, 1, &dry), KD_OK); /* no policy: nothing */
    CHECK_EQ_INT(dry.versions_pruned, 0);
    CHECK_RC(kd_retention_set(db, "n", "{\"keep_last\":10}", 16), KD_OK);
    CHECK_RC(kd_compact(db, 1, &dry), KD_OK);
    CHECK(dry.versions_pruned > 200);
    CHECK_EQ_INT(dry.number, 0);
    uint64_t pruned = 99;
    check_history(db, &pruned);
    CHECK_EQ_INT(pruned, 0); /* a dry run changes nothing */

    kd_stats s1, s2;
    CHECK_RC(kd_stats_get(db, &s1), KD_OK);
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_EQ_INT(rep.number, 1);
    CHECK_EQ_INT(rep.versions_pruned, dry.versions_pruned);
    CHECK_RC(kd_stats_get(db, &s2), KD_OK);
    CHECK_EQ_INT(s2.unique_values, s1.unique_values - rep.values_freed + 2); /* + its two records */
    CHECK_EQ_INT(rep.values_freed, dry.values_freed);
    CHECK(rep.bytes_freed > 200 * 1000);
    CHECK(rep.segments_rewritten > 0);
    CHECK_EQ_INT(deleted_files_open(dir), 0); /* no reader: the old files are closed at once */
    CHECK_EQ_INT(rep.versions_pruned + rep.versions_held, VERSIONS - 10 - 1);
    check_history(db, &pruned);
    CHECK_EQ_INT(pruned, rep.versions_pruned);

    kd_verify_report vr;
    int vrc = kd_verify(db, &vr);
    if (vrc)
        fprintf(stderr, "verify: %s\n", vr.problem);
    CHECK_RC(vrc, KD_OK);
    CHECK_EQ_INT(vr.pruned, rep.versions_pruned);
    /* The storage root chain is that of the same writes: pruning adds one
     * record (the compaction's) and changes no write_id. */
    kd_stats after;
    CHECK_RC(kd_stats_get(db, &after), KD_OK);
    CHECK(after.disk_bytes < before.disk_bytes);

    /* A second run finds nothing more to do in the sealed segments. */
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions_pruned, 0);

    /* Storing a pruned value again stores its bytes again. */
    char v[1100];
    value_of("k", 3, v, sizeof v);
    CHECK_RC(kd_put(db, "again", "k", v, strlen(v), NULL), KD_OK);
    char *got = NULL;
    CHECK_RC(kd_get(db, "again", "k", &got, NULL, NULL), KD_OK);
    CHECK_EQ_STR(got, v);
    kd_free(got);
    kd_close(db);

    /* Reopened from the checkpoint the compaction wrote, and from the log
     * alone: the same. */
    for (int from_log = 0; from_log < 2; from_log++) {
        if (from_log) {
            char p[512];
            snprintf(p, sizeof p, "%s/index.ckpt", dir);
            unlink(p);
        }
        db = open_db(dir);
        CHECK(db);
        kd_stats s3;
        CHECK_RC(kd_stats_get(db, &s3), KD_OK);
        CHECK_EQ_INT(s3.unique_values, s2.unique_values + 1); /* + the value "again" stored anew */
        check_history(db, &pruned);
        CHECK_EQ_INT(pruned, vr.pruned); /* version 3 stays pruned (RETENTION.md) */
        kd_close(db);
    }
    db = open_db(dir);
    CHECK(db);
    check_history(db, &pruned);
    CHECK_EQ_INT(pruned, vr.pruned);
    CHECK_RC(kd_get(db, "again", "k", &got, NULL, NULL), KD_OK);
    CHECK_EQ_STR(got, v);
    kd_free(got);
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_root *r1 = NULL;
    size_t nr1 = 0;
    CHECK_RC(kd_roots(db, &r1, &nr1), KD_OK);
    CHECK(strcmp(r0[0].hex, r1[0].hex) != 0); /* later writes advanced it */
    kd_free(r0);
    kd_free(r1);
    kd_close(db);
}

/* Find the first write of ns/key in segment `no` of dir and set its pruned
 * flag with the given compaction number, fixing the checksums (what someone
 * hiding a change would do). Returns 0 when done. */
static int forge_prune(const char *dir, uint64_t no, const char *ns, uint16_t number)
{
    char p[512];
    snprintf(p, sizeof p, "%s/log-%08llu.kdl", dir, (unsigned long long)no);
    int fd = open(p, O_RDWR);
    if (fd < 0)
        return -1;
    struct stat st;
    fstat(fd, &st);
    uint8_t *b = malloc((size_t)st.st_size);
    if (pread(fd, b, (size_t)st.st_size, 0) != st.st_size)
        return -1;
    int done = -1;
    size_t off = KD__SEG_HEADER_LEN;
    while (done && off + KD__REC_HEADER_LEN <= (size_t)st.st_size) {
        uint8_t type;
        uint32_t len, pcrc;
        if (kd__rec_header_decode(b + off, &type, &len, &pcrc))
            break;
        uint8_t *pl = b + off + KD__REC_HEADER_LEN;
        kd__txn_cursor c;
        char why[200];
        kd__value_rec v;
        kd__write_rec w;
        kd__txn_open(&c, pl, len, why, sizeof why);
        for (uint32_t i = 0; i < c.n_values; i++)
            kd__txn_next_value(&c, &v, why, sizeof why);
        size_t wpos = c.pos;
        if (!kd__txn_next_write(&c, &w, why, sizeof why) && w.ns_len == strlen(ns) && !memcmp(w.ns, ns, w.ns_len) &&
            !(w.flags & 3)) {
            pl[wpos + 8] |= KD__WRITE_PRUNED;
            pl[wpos + 14] = (uint8_t)number;
            pl[wpos + 15] = (uint8_t)(number >> 8);
            kd__rec_header_encode(b + off, type, pl, len);
            done = 0;
        }
        off += KD__REC_HEADER_LEN + len;
    }
    if (!done && pwrite(fd, b, (size_t)st.st_size, 0) != st.st_size)
        done = -1;
    free(b);
    close(fd);
    return done;
}

static void test_verify_tells_tampering(void)
{
    char dir[256];
    kd_db *db = filled_db("tamper", dir);
    CHECK(db);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_EQ_INT(rep.number, 1);
    kd_close(db);
    /* Mark a write of "other" (no policy) pruned "by compaction 1". */
    CHECK_RC(forge_prune(dir, 1, "other", 1), 0);
    db = open_db(dir);
    CHECK(db);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_ECORRUPT);
    CHECK(strstr(vr.problem, "compaction 1 recorded") != NULL);
    CHECK(strstr(vr.problem, "altered") != NULL);
    kd_close(db);
    /* And by a compaction that never happened. */
    CHECK_RC(forge_prune(dir, 2, "other", 7), 0);
    db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_verify(db, &vr), KD_ECORRUPT);
    CHECK(strstr(vr.problem, "altered") != NULL);
    kd_close(db);
}

/* A child process compacting the database in dir (to be killed). */
static pid_t compact_in_child(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        kd_db *c = open_db(dir);
        kd_compact_report r;
        _exit(c && kd_compact(c, 0, &r) == KD_OK ? 0 : 1);
    }
    return pid;
}

static void kill_child(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Repair does not launder tampering: on a log it salvages whole, writes
 * flagged pruned that no record accounts for are left as they are (the
 * value stays readable, verify goes on calling the log altered), instead
 * of being imported as pruned under a compaction record written anew. */
static void test_repair_leaves_tampering_to_verify(void)
{
    char dir[256];
    kd_db *db = filled_db("tamper-repair", dir);
    CHECK(db);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    kd_close(db);
    CHECK_RC(forge_prune(dir, 2, "other", 7), 0); /* a compaction that never ran */
    kd_repair_report rr;
    char kept[512], err[512];
    CHECK_RC(kd_repair(dir, NULL, NULL, NULL, &rr, kept, sizeof kept, err, sizeof err), KD_OK);
    CHECK_EQ_INT(rr.records_lost, 0);
    CHECK_EQ_INT(rr.compactions_recorded, 0);
    db = open_db(dir);
    CHECK(db);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_ECORRUPT);
    CHECK(strstr(vr.problem, "altered") != NULL);
    kd_close(db);
}

/* A compaction killed mid-way (compact.pending there) is not damage:
 * repair leaves it for opening to finish, and records nothing anew. The
 * kills land at random moments; the rounds that leave a compaction
 * pending are the ones that check this. */
static void test_repair_leaves_interrupted_compaction(void)
{
    srand((unsigned)time(NULL) ^ 0x5eed);
    for (int round = 0; round < 8; round++) {
        char dir[256];
        kd_db *db = filled_db("kill-repair", dir);
        CHECK(db);
        kd_close(db);
        pid_t pid = compact_in_child(dir);
        char p[512];
        snprintf(p, sizeof p, "%s/compact.pending", dir);
        /* from the moment the plan is on disk (a wait, not a timing) */
        for (int i = 0; i < 200000 && access(p, F_OK) != 0 && waitpid(pid, NULL, WNOHANG) == 0; i++)
            usleep(10);
        usleep((useconds_t)(round * 800 + rand() % 800));
        kill_child(pid);
        int pending = access(p, F_OK) == 0;
        if (pending) {
            kd_repair_report rr;
            char kept[512], err[512];
            CHECK_RC(kd_repair(dir, NULL, NULL, NULL, &rr, kept, sizeof kept, err, sizeof err), KD_OK);
            CHECK_EQ_INT(rr.records_lost, 0);
            CHECK_EQ_INT(rr.compactions_recorded, 0);
        }
        db = open_db(dir);
        CHECK(db);
        kd_verify_report vr;
        CHECK_RC(kd_verify(db, &vr), KD_OK);
        CHECK(access(p, F_OK) != 0); /* finished or dropped at open */
        /* finished at open: its "done" record keeps the plan's as_of
         * (from its "started" record), not the epoch */
        char *rec = NULL;
        size_t len = 0;
        int grc = pending ? kd_get(db, "_kd.compactions", "0000000001", &rec, &len, NULL) : -99;
        if (grc == KD_OK) {
            CHECK(strstr(rec, "\"as_of\":\"1970-") == NULL);
            CHECK(strstr(rec, "\"as_of\":\"20") != NULL);
        }
        kd_free(rec);
        kd_close(db);
    }
}

/* kill -9 at random moments of a compaction: every reopen gives a database
 * that verifies and reads back (pruned or exact), and a finished one. */
static void test_kill_during_compaction(void)
{
    srand((unsigned)time(NULL));
    for (int round = 0; round < 6; round++) {
        char dir[256];
        kd_db *db = filled_db("kill", dir);
        CHECK(db);
        kd_close(db);
        pid_t pid = compact_in_child(dir);
        usleep((useconds_t)(round * 4000 + rand() % 4000));
        kill_child(pid);
        db = open_db(dir);
        CHECK(db);
        kd_verify_report vr;
        CHECK_RC(kd_verify(db, &vr), KD_OK);
        uint64_t pruned;
        check_history(db, &pruned);
        char p[512];
        snprintf(p, sizeof p, "%s/compact.pending", dir);
        CHECK(access(p, F_OK) != 0); /* finished or dropped at open */
        kd_close(db);
    }
}

/* The upkeep thread applies the policies on its own, and says so: on the
 * retention interval, also when it is shorter than the upkeep interval
 * (it was rounded up to that, 5 s by default). */
static void upkeep_retention(uint32_t upkeep_ms)
{
    char dir[256];
    harness_tmpdir("compact", "upkeep", dir);
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_upkeep_interval(o, upkeep_ms);
    kd_options_set_retention_interval(o, 50);
    kd_options_set_segment_size(o, 64 * 1024);
    kd_db *db = NULL;
    CHECK_RC(kd_open(dir, o, &db, NULL, 0), KD_OK);
    kd_options_free(o);
    CHECK_RC(fill(db), 0);
    CHECK_RC(kd_retention_set(db, "n", "{\"keep_last\":10}", 16), KD_OK);
    kd_task_status *t = NULL;
    size_t n = 0;
    int done = 0;
    for (int i = 0; i < 500 && !done; i++) { /* up to 10 s: waiting, not timing */
        usleep(20000);
        CHECK_RC(kd_upkeep_status(db, &t, &n), KD_OK);
        CHECK_EQ_STR(t[3].name, "retention");
        done = t[3].runs > 0;
        if (done) {
            CHECK_EQ_INT(t[3].last_status, KD_OK);
            CHECK(strstr(t[3].message, "compaction 1: pruned") != NULL);
        }
        kd_free(t);
    }
    CHECK(done);
    uint64_t pruned;
    check_history(db, &pruned);
    CHECK(pruned > 200);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(db);
}

static void test_upkeep_applies_retention(void)
{
    upkeep_retention(20);
}

static void test_retention_keeps_its_own_interval(void)
{
    upkeep_retention(3600 * 1000); /* an hour: retention's 50 ms must not wait for it */
}

static double cpu_seconds(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

/* A database that stopped writing (a failed fsync) skips retention; its
 * due time must still move on, or the upkeep thread never sleeps again
 * (it spun on a core until the database was closed). Not a timing check:
 * a sleeping thread uses next to no CPU, a spinning one all of a core. */
static void test_failed_database_upkeep_sleeps(void)
{
    char dir[256];
    harness_tmpdir("compact", "failed", dir);
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_upkeep_interval(o, 1000);
    kd_options_set_retention_interval(o, 50);
    kd_db *db = NULL;
    CHECK_RC(kd_open(dir, o, &db, NULL, 0), KD_OK);
    kd_options_free(o);
    CHECK_RC(kd_put(db, "n", "k", "1", 1, NULL), KD_OK);
    kd__set_failed(db);
    usleep(200000); /* past the first due time */
    double c0 = cpu_seconds();
    usleep(1000000);
    double used = cpu_seconds() - c0;
    fprintf(stderr, "  %.3f s of CPU in 1 s after the failure\n", used);
    CHECK(used < 0.5);
    kd_close(db);
}

/* Compactions while a writer writes (often values being removed, so it
 * must store them again) and a reader reads: every acknowledged write
 * stays readable as written or reports KD_EPRUNED, and verify passes. */
typedef struct race {
    kd_db *db;
    int stop;
    int errors;
    int writes;
} race;

static void *race_writer(void *arg)
{
    race *r = arg;
    char v[1100];
    for (int i = 0; !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) && i < 4000; i++) {
        /* half of them repeat an old value of n/k */
        value_of("k", i % 2 ? i % VERSIONS : VERSIONS + i, v, sizeof v);
        kd_version out;
        if (kd_put(r->db, "w", "k", v, strlen(v), &out) != KD_OK)
            r->errors++;
        char *got = NULL;
        if (kd_get(r->db, "w", "k", &got, NULL, NULL) != KD_OK || strcmp(got, v))
            r->errors++;
        kd_free(got);
        r->writes++;
    }
    return NULL;
}

static void *race_reader(void *arg)
{
    race *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        kd_version *h = NULL;
        size_t n = 0;
        if (kd_history(r->db, "n", "k", 0, KD_TIME_MAX, 0, 0, &h, &n) != KD_OK) {
            r->errors++;
            continue;
        }
        for (size_t i = 0; i < n; i += 7) {
            char *got = NULL, want[1100];
            int rc = kd_get_at(r->db, "n", "k", h[i].timestamp, &got, NULL, NULL);
            value_of("k", (int)i, want, sizeof want);
            if (!(rc == KD_EPRUNED || (rc == KD_OK && !strcmp(got, want))))
                r->errors++;
            kd_free(got);
        }
        kd_free(h);
    }
    return NULL;
}

static void test_compact_while_writing(void)
{
    char dir[256];
    kd_db *db = filled_db("race", dir);
    CHECK(db);
    CHECK_RC(kd_retention_set(db, "w", "{\"keep_last\":3}", 15), KD_OK);
    race r = {.db = db};
    pthread_t w, rd;
    pthread_create(&w, NULL, race_writer, &r);
    pthread_create(&rd, NULL, race_reader, &r);
    int runs = 0;
    for (int i = 0; i < 8; i++) {
        kd_compact_report rep;
        CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
        runs += rep.number > 0;
        usleep(10000);
    }
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    pthread_join(w, NULL);
    pthread_join(rd, NULL);
    CHECK_EQ_INT(r.errors, 0);
    CHECK(runs >= 1);
    kd_verify_report vr;
    int vrc = kd_verify(db, &vr);
    if (vrc)
        fprintf(stderr, "verify: %s\n", vr.problem);
    CHECK_RC(vrc, KD_OK);
    /* the last 3 versions of w/k read back; older ones are whole or pruned */
    kd_version *h = NULL;
    size_t n = 0;
    CHECK_RC(kd_history(db, "w", "k", 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, r.writes);
    for (size_t i = 0; i < n; i++) {
        char *got = NULL, want[1100];
        int rc = kd_get_at(db, "w", "k", h[i].timestamp, &got, NULL, NULL);
        value_of("k", i % 2 ? (int)(i % VERSIONS) : VERSIONS + (int)i, want, sizeof want);
        CHECK(rc == KD_OK || (rc == KD_EPRUNED && i + 3 < n));
        if (rc == KD_OK)
            CHECK_EQ_STR(got, want);
        kd_free(got);
    }
    kd_free(h);
    kd_close(db);
    db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(db);
}

/* Repair of a damaged compacted database keeps the pruned writes as
 * they are (ids, chain) and loses only what the damage took. */
static void test_repair_keeps_pruned(void)
{
    char dir[256];
    kd_db *db = filled_db("repair", dir);
    CHECK(db);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK(rep.versions_pruned > 200);
    kd_close(db);
    /* the victim's record starts where the newest segment ends now */
    char p[512];
    DIR *d = opendir(dir);
    uint64_t last = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (!strncmp(e->d_name, "log-", 4) && strtoull(e->d_name + 4, NULL, 10) > last)
            last = strtoull(e->d_name + 4, NULL, 10);
    if (d)
        closedir(d);
    snprintf(p, sizeof p, "%s/log-%08llu.kdl", dir, (unsigned long long)last);
    struct stat sb;
    CHECK(stat(p, &sb) == 0);
    db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_put(db, "z", "victim", "\"damaged\"", 9, NULL), KD_OK);
    CHECK_RC(kd_put(db, "z", "after", "\"fine\"", 6, NULL), KD_OK);
    kd_close(db);
    int fd = open(p, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    off_t at = sb.st_size + 16 + 40 + 36 + 1; /* a byte of the stored value */
    CHECK(pread(fd, &b, 1, at) == 1);
    b ^= 0x20;
    CHECK(pwrite(fd, &b, 1, at) == 1);
    close(fd);
    kd_repair_report rr;
    char kept[512], err[512];
    CHECK_RC(kd_repair(dir, NULL, NULL, NULL, &rr, kept, sizeof kept, err, sizeof err), KD_OK);
    CHECK_EQ_INT(rr.records_lost, 1); /* z/victim's record only */
    CHECK_EQ_INT(rr.versions_lost, 0);
    db = open_db(dir);
    CHECK(db);
    kd_verify_report vr;
    int vrc = kd_verify(db, &vr);
    if (vrc)
        fprintf(stderr, "verify: %s\n", vr.problem);
    CHECK_RC(vrc, KD_OK);
    CHECK_EQ_INT(vr.pruned, rep.versions_pruned);
    uint64_t pruned;
    check_history(db, &pruned);
    CHECK_EQ_INT(pruned, rep.versions_pruned);
    CHECK_EQ_INT(kd_contains(db, "z", "victim"), 0);
    CHECK_EQ_INT(kd_contains(db, "z", "after"), 1);
    kd_close(db);
}

/* A full backup taken before a compaction plus an incremental one after:
 * the restored log holds every value again and the compaction's records;
 * verify accepts that (nothing is marked pruned that is not accounted for). */
static void test_backup_across_compaction(void)
{
    char dir[256], full[300], inc[300], out[300];
    kd_db *db = filled_db("bk", dir);
    CHECK(db);
    snprintf(full, sizeof full, "%s.full.kdb", dir);
    snprintf(inc, sizeof inc, "%s.inc.kdb", dir);
    snprintf(out, sizeof out, "%s.restored", dir);
    CHECK_RC(kd_backup(db, full, NULL, NULL), KD_OK);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK(rep.versions_pruned > 200);
    kd_backup_options o = {.since = full};
    CHECK_RC(kd_backup(db, inc, &o, NULL), KD_OK);
    kd_root *r0 = NULL;
    size_t n0 = 0;
    CHECK_RC(kd_roots(db, &r0, &n0), KD_OK);
    kd_close(db);
    const char *files[2] = {full, inc};
    char err[512];
    CHECK_RC(kd_restore(files, 2, out, NULL, err, sizeof err), KD_OK);
    db = open_db(out);
    CHECK(db);
    kd_verify_report vr;
    int vrc = kd_verify(db, &vr);
    if (vrc)
        fprintf(stderr, "verify: %s\n", vr.problem);
    CHECK_RC(vrc, KD_OK);
    CHECK_EQ_INT(vr.pruned, 0);
    uint64_t pruned;
    check_history(db, &pruned);
    CHECK_EQ_INT(pruned, 0); /* every value is back */
    kd_root *r1 = NULL;
    size_t n1 = 0;
    CHECK_RC(kd_roots(db, &r1, &n1), KD_OK);
    CHECK_EQ_STR(r0[n0 - 1].hex, r1[n1 - 1].hex); /* the same history: the same field root */
    kd_free(r0);
    kd_free(r1);
    kd_close(db);
    unlink(full);
    unlink(inc);
}

/* A compaction that pruned versions on both sides of the previous backup's
 * end: an incremental backup on top of that backup is refused (the chain
 * would restore to a log that marks only part of the compaction's writes),
 * and nothing is written; a full backup then works, and so does an
 * incremental on top of it. */
static void test_incremental_refused_across_compaction(void)
{
    char dir[256], full[300], inc[300], full2[300], inc2[300];
    kd_db *db = filled_db("bk2", dir);
    CHECK(db);
    snprintf(full, sizeof full, "%s.full.kdb", dir);
    snprintf(inc, sizeof inc, "%s.inc.kdb", dir);
    snprintf(full2, sizeof full2, "%s.full2.kdb", dir);
    snprintf(inc2, sizeof inc2, "%s.inc2.kdb", dir);
    CHECK_RC(kd_backup(db, full, NULL, NULL), KD_OK);
    char v[1100];
    for (int i = 0; i < 40; i++) { /* versions after the backup's end, some of them dropped too */
        value_of("k", 1000 + i, v, sizeof v);
        CHECK_RC(kd_put(db, "n", "k", v, strlen(v), NULL), KD_OK);
    }
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK(rep.versions_pruned > 200);
    kd_backup_options o = {.since = full};
    CHECK_RC(kd_backup(db, inc, &o, NULL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "take a full backup") != NULL);
    CHECK(access(inc, F_OK) != 0);
    CHECK_RC(kd_backup(db, full2, NULL, NULL), KD_OK);
    CHECK_RC(kd_put(db, "n", "later", "1", 1, NULL), KD_OK);
    kd_backup_options o2 = {.since = full2};
    CHECK_RC(kd_backup(db, inc2, &o2, NULL), KD_OK);
    kd_close(db);
    unlink(full);
    unlink(full2);
    unlink(inc2);
}

/* A workspace's policy applies to its namespace, not to the namespace of
 * the same name in another workspace. */
static void test_workspace_policies(void)
{
    char dir[256];
    harness_tmpdir("compact", "ws", dir);
    kd_db *db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_workspace_create(db, "A"), KD_OK);
    kd_db *a = NULL;
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);
    char v[1100];
    for (int i = 0; i < 200; i++) {
        value_of("k", i, v, sizeof v);
        CHECK_RC(kd_put(db, "n", "k", v, strlen(v), NULL), KD_OK);
        value_of("a", i, v, sizeof v);
        CHECK_RC(kd_put(a, "n", "k", v, strlen(v), NULL), KD_OK);
    }
    CHECK_RC(kd_retention_set(a, "n", "{\"keep_last\":5}", 15), KD_OK);
    char *json = NULL;
    CHECK_RC(kd_retention_get(db, "n", &json, NULL), KD_ENOTFOUND); /* default has none */
    CHECK_RC(kd_retention_get(a, "n", &json, NULL), KD_OK);
    kd_free(json);
    kd_compact_report rep;
    CHECK_RC(kd_compact(a, 0, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions_pruned, 195);
    kd_version *h = NULL;
    size_t n = 0;
    CHECK_RC(kd_history(db, "n", "k", 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(h[i].pruned, 0);
    kd_free(h);
    CHECK_RC(kd_history(a, "n", "k", 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 200);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(h[i].pruned, i < 195);
    kd_free(h);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    CHECK_EQ_INT(vr.pruned, 195);
    kd_close(a);
    /* A dropped workspace's values all go at the next compaction (its
     * writes stay in the history); created again, it is empty (get never
     * meets a pruned version: not found) and its history shows them pruned. */
    CHECK_RC(kd_workspace_create(db, "B"), KD_OK);
    kd_db *b = NULL;
    CHECK_RC(kd_workspace_open(db, "B", &b), KD_OK);
    for (int i = 0; i < 20; i++) {
        value_of("b", i, v, sizeof v);
        CHECK_RC(kd_put(b, "n", "k", v, strlen(v), NULL), KD_OK);
    }
    kd_close(b);
    CHECK_RC(kd_workspace_drop(db, "B"), KD_OK);
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions_pruned, 20); /* the newest too: the workspace is gone */
    CHECK_RC(kd_workspace_create(db, "B"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "B", &b), KD_OK);
    CHECK_RC(kd_get(b, "n", "k", &json, NULL, NULL), KD_ENOTFOUND);
    CHECK_EQ_INT(kd_contains(b, "n", "k"), 0);
    CHECK_RC(kd_history(b, "n", "k", 0, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 20);
    CHECK_EQ_INT(h[19].pruned, KD_PRUNED_WORKSPACE);
    kd_free(h);
    /* Writes agree with reads: nothing to delete, and "must not exist"
     * holds. */
    CHECK_RC(kd_delete(b, "n", "k", NULL), KD_ENOTFOUND);
    CHECK_RC(kd_put_if(b, "n", "k", "1", 1, KD_EXPECT_ABSENT, NULL), KD_OK);
    CHECK_RC(kd_get(b, "n", "k", &json, NULL, NULL), KD_OK);
    CHECK_EQ_STR(json, "1");
    kd_free(json);
    kd_close(b);
    int vrc = kd_verify(db, &vr);
    if (vrc)
        fprintf(stderr, "verify: %s\n", kd_errmsg(db));
    CHECK_RC(vrc, KD_OK);
    CHECK_EQ_INT(vr.pruned, 215);
    kd_close(db);
    db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(db);
}

/* The library's own (db_int.h), for what the upkeep thread does. */
int kd__seal_segment(kd_db *db);
int kd__compact(kd_db *db, int dry_run, int seal, int wait, kd_compact_report *out);

/* kd__seal_segment, wrapped (CMakeLists.txt links this test with
 * --wrap=kd__seal_segment): seal_hook, when set, runs once first, as
 * another client of the database would while a compaction starts. */
int __real_kd__seal_segment(kd_db *db);
static void (*seal_hook)(kd_db *db);
int __wrap_kd__seal_segment(kd_db *db);
int __wrap_kd__seal_segment(kd_db *db)
{
    void (*hook)(kd_db *) = seal_hook;
    seal_hook = NULL;
    if (hook)
        hook(db);
    return __real_kd__seal_segment(db);
}

/* kd_workspace_list, wrapped the same way: list_hook, when set, runs once
 * after the list is made, as another client dropping a workspace then. */
int __real_kd_workspace_list(kd_db *db, char ***names, size_t *n);
static void (*list_hook)(kd_db *db);
int __wrap_kd_workspace_list(kd_db *db, char ***names, size_t *n);
int __wrap_kd_workspace_list(kd_db *db, char ***names, size_t *n)
{
    int rc = __real_kd_workspace_list(db, names, n);
    void (*hook)(kd_db *) = list_hook;
    list_hook = NULL;
    if (hook)
        hook(db);
    return rc;
}

static void drop_w(kd_db *db)
{
    kd_workspace_drop(db, "W");
}

/* kd__seg_rewrite, wrapped: rewrite_hook, when set, runs once before the
 * first segment of a compaction is rewritten, as another client would. */
int __real_kd__seg_rewrite(kd_db *db, const kd__rewrite_spec *sp, uint64_t no, kd__rewrite_stats *st);
static void (*rewrite_hook)(kd_db *db);
int __wrap_kd__seg_rewrite(kd_db *db, const kd__rewrite_spec *sp, uint64_t no, kd__rewrite_stats *st);
int __wrap_kd__seg_rewrite(kd_db *db, const kd__rewrite_spec *sp, uint64_t no, kd__rewrite_stats *st)
{
    void (*hook)(kd_db *) = rewrite_hook;
    rewrite_hook = NULL;
    if (hook)
        hook(db);
    return __real_kd__seg_rewrite(db, sp, no, st);
}

/* fdatasync, wrapped: pending_hook, when set, runs once when a compaction
 * syncs its plan (compact.pending), and that sync then fails (EIO). */
int __real_fdatasync(int fd);
static kd_db *pending_db;
static void (*pending_hook)(kd_db *db);
int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
    void (*hook)(kd_db *) = pending_hook;
    if (hook) {
        char link[64], target[600];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0 && (target[n] = '\0', strstr(target, "compact.pending"))) {
            pending_hook = NULL;
            hook(pending_db);
            errno = EIO;
            return -1;
        }
    }
    return __real_fdatasync(fd);
}

/* unlink, wrapped: while pending_stuck is set, compact.pending cannot be
 * removed (EPERM), as on a file made immutable. */
int __real_unlink(const char *path);
static int pending_stuck;
int __wrap_unlink(const char *path);
int __wrap_unlink(const char *path)
{
    if (pending_stuck && strstr(path, "compact.pending") && !strstr(path, ".tmp")) {
        errno = EPERM;
        return -1;
    }
    return __real_unlink(path);
}

/* Live keys of a handle's workspace (UINT64_MAX when stats fail). */
static uint64_t live_keys(kd_db *h)
{
    kd_stats st;
    memset(&st, 0, sizeof st);
    return kd_stats_get(h, &st) == KD_OK ? st.live_keys : UINT64_MAX;
}

/* What a workspace made again after drop + compaction shows of key n/k:
 * nothing (get, contains, listing, live count), its history all pruned. */
static void check_gone(kd_db *w, const char *key, size_t versions)
{
    char *json = NULL;
    CHECK_RC(kd_get(w, "n", key, &json, NULL, NULL), KD_ENOTFOUND);
    CHECK(json == NULL);
    CHECK_EQ_INT(kd_contains(w, "n", key), 0);
    kd_version *h = NULL;
    size_t n = 0;
    CHECK_RC(kd_history(w, "n", key, KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, versions);
    for (size_t i = 0; i < n; i++)
        CHECK(h[i].deleted || h[i].pruned == KD_PRUNED_WORKSPACE);
    if (n)
        CHECK_RC(kd_get_at(w, "n", key, h[n - 1].timestamp, &json, NULL, NULL),
                 h[n - 1].deleted ? KD_EDELETED : KD_EPRUNED);
    kd_free(h);
}

/* Values are content-addressed: a dropped workspace's value may also be
 * stored for a version elsewhere, before the compaction or after it. The
 * workspace, made again, still starts empty: a version goes with its
 * workspace, whether or not its bytes stay for another. */
static void test_dropped_workspace_shares_values(void)
{
    char dir[256];
    harness_tmpdir("compact", "wsshare", dir);
    kd_db *db = open_db(dir);
    CHECK(db);
    CHECK_RC(kd_put(db, "other", "x", "{\"n\":1}", 7, NULL), KD_OK); /* shared before */
    CHECK_RC(kd_workspace_create(db, "W"), KD_OK);
    kd_db *w = NULL;
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    CHECK_RC(kd_put(w, "n", "shared", "{\"n\":1}", 7, NULL), KD_OK);
    CHECK_RC(kd_put(w, "n", "later", "{\"n\":2}", 7, NULL), KD_OK);
    CHECK_RC(kd_put(w, "n", "del", "{\"n\":3}", 7, NULL), KD_OK);
    CHECK_RC(kd_delete(w, "n", "del", NULL), KD_OK);
    CHECK_RC(kd_index_create(w, "n", "n"), KD_OK);
    kd_close(w);
    CHECK_RC(kd_workspace_drop(db, "W"), KD_OK);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions_pruned, 3); /* the shared one too */
    CHECK_EQ_INT(rep.values_freed, 2);    /* but not its value */
    CHECK_RC(kd_workspace_create(db, "W"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    CHECK_RC(kd_put(db, "other", "y", "{\"n\":2}", 7, NULL), KD_OK); /* shared after */
    for (int round = 0; round < 3; round++) {
        check_gone(w, "shared", 1);
        check_gone(w, "later", 1);
        check_gone(w, "del", 2);
        CHECK_EQ_INT(live_keys(w), 0);
        char **keys = NULL;
        size_t nk = 9;
        CHECK_RC(kd_list_keys(w, "n", NULL, NULL, 0, &keys, &nk), KD_OK);
        CHECK_EQ_INT(nk, 0);
        kd_free_list(keys, nk);
        kd_query *q = NULL; /* through the index on n */
        static const char qj[] = "{\"filter\":\"n >= 0\"}";
        CHECK_RC(kd_query_parse(qj, sizeof qj - 1, &q, NULL, 0), KD_OK);
        kd_result *res = NULL;
        CHECK_RC(kd_query_run(w, "n", q, &res), KD_OK);
        CHECK(res && res->total == 0);
        kd_result_free(res);
        kd_query_free(q);
        /* again after reopening: by replay, then from a checkpoint */
        kd_close(w);
        if (round == 1)
            CHECK_RC(kd_checkpoint(db), KD_OK);
        kd_close(db);
        CHECK((db = open_db(dir)));
        CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    }
    /* Written again: a new key, with the old versions still pruned. */
    CHECK_RC(kd_put_if(w, "n", "shared", "{\"n\":1}", 7, KD_EXPECT_ABSENT, NULL), KD_OK);
    CHECK_EQ_INT(live_keys(w), 1);
    kd_version *h = NULL;
    size_t n = 0;
    CHECK_RC(kd_history(w, "n", "shared", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    CHECK(n == 2 && h[0].pruned == KD_PRUNED_WORKSPACE && !h[1].pruned);
    kd_free(h);
    /* A second compaction keeps that and removes the value "other/y" no
     * longer shares once it is deleted; nothing is pruned twice. */
    CHECK_RC(kd_delete(db, "other", "y", NULL), KD_OK);
    CHECK_RC(kd_retention_set(db, "other", "{\"keep_last\":1}", 15), KD_OK);
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    char *json = NULL;
    CHECK_RC(kd_get(w, "n", "shared", &json, NULL, NULL), KD_OK);
    CHECK_EQ_STR(json, "{\"n\":1}");
    kd_free(json);
    check_gone(w, "later", 1);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(w);
    kd_close(db);
    CHECK((db = open_db(dir)));
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    CHECK_EQ_INT(live_keys(w), 1);
    check_gone(w, "later", 1);
    /* A backup of current versions only keeps what says which versions
     * went with the workspace (the compaction's current "done" record). */
    CHECK_RC(kd_put(db, "other", "z", "{\"n\":2}", 7, NULL), KD_OK); /* "later"'s value, current again */
    char bk[300], out[300], err[512];
    snprintf(bk, sizeof bk, "%s.co.kdb", dir);
    snprintf(out, sizeof out, "%s.co-restored", dir);
    kd_backup_options o = {.current_only = 1};
    CHECK_RC(kd_backup(db, bk, &o, NULL), KD_OK);
    kd_close(w);
    kd_close(db);
    const char *files[1] = {bk};
    CHECK_RC(kd_restore(files, 1, out, NULL, err, sizeof err), KD_OK);
    CHECK((db = open_db(out)));
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    CHECK_EQ_INT(live_keys(w), 1);
    check_gone(w, "later", 1);
    kd_close(w);
    kd_close(db);
    unlink(bk);
}

/* A fresh database in a temporary directory named after `tag`, with
 * workspace W created and a handle on it; 0 when a step failed. */
static int db_with_w(const char *tag, char *dir, kd_db **db, kd_db **w)
{
    harness_tmpdir("compact", tag, dir);
    *w = NULL;
    *db = open_db(dir);
    return *db && kd_workspace_create(*db, "W") == KD_OK && kd_workspace_open(*db, "W", w) == KD_OK;
}

/* Workspace W made again, and written, while a compaction that found it
 * dropped starts: what was written after the drop stays. */
static void make_w_again(kd_db *db)
{
    kd_db *w = NULL;
    if (kd_workspace_create(db, "W") != KD_OK || kd_workspace_open(db, "W", &w) != KD_OK ||
        kd_put(w, "n", "new", "{\"n\":42}", 8, NULL) != KD_OK)
        fprintf(stderr, "make_w_again: %s\n", kd_errmsg(db));
    kd_close(w);
}

static void test_workspace_made_again_during_compaction(void)
{
    char dir[256];
    kd_db *db = NULL, *w = NULL;
    CHECK(db_with_w("wsrace", dir, &db, &w));
    CHECK_RC(kd_put(w, "n", "old", "{\"o\":1}", 7, NULL), KD_OK);
    kd_close(w);
    CHECK_RC(kd_workspace_drop(db, "W"), KD_OK);
    seal_hook = make_w_again;
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK(seal_hook == NULL); /* it ran */
    CHECK_EQ_INT(rep.versions_pruned, 1);
    for (int round = 0; round < 2; round++) {
        CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
        char *json = NULL;
        CHECK_RC(kd_get(w, "n", "new", &json, NULL, NULL), KD_OK);
        CHECK_EQ_STR(json, "{\"n\":42}");
        kd_free(json);
        CHECK_RC(kd_get(w, "n", "old", &json, NULL, NULL), KD_ENOTFOUND);
        CHECK_EQ_INT(live_keys(w), 1);
        kd_close(w);
        kd_verify_report vr;
        CHECK_RC(kd_verify(db, &vr), KD_OK);
        kd_close(db);
        CHECK((db = open_db(dir)));
    }
    kd_close(db);
}

/* The upkeep thread compacts without sealing the newest segment; a dropped
 * workspace's writes there must go too, or it would come back half empty:
 * the newest segment is sealed for it. */
static void test_dropped_workspace_in_the_newest_segment(void)
{
    char dir[256];
    kd_db *db = NULL, *w = NULL;
    CHECK(db_with_w("wsnewest", dir, &db, &w));
    CHECK_RC(kd_put(w, "n", "a", "{\"a\":1}", 7, NULL), KD_OK);
    CHECK_RC(kd__seal_segment(db), KD_OK);
    CHECK_RC(kd_put(w, "n", "b", "{\"b\":1}", 7, NULL), KD_OK); /* in the newest segment */
    kd_close(w);
    CHECK_RC(kd_workspace_drop(db, "W"), KD_OK);
    kd_compact_report rep;
    memset(&rep, 0, sizeof rep);
    CHECK_RC(kd__compact(db, 0, 0, 1, &rep), KD_OK); /* as the upkeep thread does */
    CHECK_EQ_INT(rep.versions_pruned, 2);
    CHECK_RC(kd_workspace_create(db, "W"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    check_gone(w, "a", 1);
    check_gone(w, "b", 1);
    CHECK_EQ_INT(live_keys(w), 0);
    kd_close(w);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(db);
}

/* A handle opened on a workspace before it was dropped writes nothing
 * into it afterwards (it would survive the compaction, in a workspace made
 * again that must come back empty). */
static void test_stale_workspace_handle(void)
{
    char dir[256];
    kd_db *db = NULL, *w = NULL;
    CHECK(db_with_w("wsstale", dir, &db, &w));
    CHECK_RC(kd_put(w, "n", "a", "{\"a\":1}", 7, NULL), KD_OK);
    CHECK_RC(kd_workspace_drop(db, "W"), KD_OK);
    CHECK_RC(kd_put(w, "n", "late", "{\"late\":1}", 10, NULL), KD_ENOTFOUND);
    CHECK(strstr(kd_errmsg(w), "no workspace named 'W'") != NULL);
    CHECK_RC(kd_delete(w, "n", "a", NULL), KD_ENOTFOUND);
    /* made again, the same handle writes into the new one */
    CHECK_RC(kd_workspace_create(db, "W"), KD_OK);
    CHECK_RC(kd_put(w, "n", "b", "{\"b\":1}", 7, NULL), KD_OK);
    kd_close(w);
    kd_close(db);
}

/* A compaction cut short in a running process (its segment rewrite fails)
 * leaves its plan for the next open; no other compaction runs before then
 * (it would plan over writes flagged in part), and opening finishes it. */
static void test_compaction_cut_short_then_again(void)
{
    char dir[256], blocker[300];
    kd_db *db = NULL, *w = NULL;
    CHECK(db_with_w("cutshort", dir, &db, &w));
    CHECK_RC(kd_put(w, "n", "a", "{\"u\":1}", 7, NULL), KD_OK);
    kd_close(w);
    CHECK_RC(kd_put(db, "d", "x", "{\"s\":1}", 7, NULL), KD_OK);
    CHECK_RC(kd_retention_set(db, "r", "{\"keep_last\":1}", 15), KD_OK);
    CHECK_RC(kd_put(db, "r", "k", "{\"u\":1}", 7, NULL), KD_OK); /* W's value, pruned by the policy */
    CHECK_RC(kd_put(db, "r", "k", "{\"z\":9}", 7, NULL), KD_OK);
    CHECK_RC(kd_workspace_drop(db, "W"), KD_OK);
    /* the rewrite of the first segment cannot create its new file */
    snprintf(blocker, sizeof blocker, "%s/log-00000001.kdl.compact", dir);
    CHECK(mkdir(blocker, 0755) == 0);
    kd_compact_report rep;
    CHECK(kd_compact(db, 0, &rep) != KD_OK);
    CHECK(rmdir(blocker) == 0);
    CHECK_RC(kd_compact(db, 0, &rep), KD_EBUSY);
    CHECK(strstr(kd_errmsg(db), "cut short") != NULL);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(db);
    CHECK((db = open_db(dir))); /* finishes it */
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    CHECK_RC(kd_workspace_create(db, "W"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    check_gone(w, "a", 1);
    kd_close(w);
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(db);
    CHECK((db = open_db(dir)));
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(db);
}

/* A compaction walks a dropped workspace's live keys to take them out of
 * its indexes, letting writers in every few milliseconds. The workspace is
 * made again as the compaction starts (seal_hook), a third of its old keys
 * written again, then other keys until the compaction has ended: the keys
 * written again stay in the index, the others go. */
#define FORGET_KEYS 30000
static kd_db *forget_w;
static int forget_written[FORGET_KEYS]; /* read after the join */
static int forget_stop;                 /* atomic */
static pthread_t forget_thread;
static int forget_started;

static void *rewrite_thirds(void *arg)
{
    (void)arg;
    for (int i = 0; i < FORGET_KEYS; i += 3) {
        char key[16], val[32];
        snprintf(key, sizeof key, "k%d", i);
        int n = snprintf(val, sizeof val, "{\"n\":%d}", -1 - i);
        if (kd_put(forget_w, "n", key, val, (size_t)n, NULL) == KD_OK)
            forget_written[i] = 1;
    }
    /* then writes elsewhere keep coming while the compaction walks */
    for (unsigned i = 0; !__atomic_load_n(&forget_stop, __ATOMIC_ACQUIRE); i++) {
        char key[16];
        snprintf(key, sizeof key, "b%u", i % 100);
        kd_put(forget_w, "busy", key, "{\"b\":1}", 7, NULL);
    }
    return NULL;
}

static void start_rewriting(kd_db *db)
{
    if (kd_workspace_create(db, "W") == KD_OK && kd_workspace_open(db, "W", &forget_w) == KD_OK)
        forget_started = pthread_create(&forget_thread, NULL, rewrite_thirds, NULL) == 0;
}

static size_t query_total(kd_db *w, const char *filter)
{
    char qj[128];
    int n = snprintf(qj, sizeof qj, "{\"filter\":\"%s\"}", filter);
    kd_query *q = NULL;
    kd_result *res = NULL;
    size_t total = (size_t)-1;
    if (kd_query_parse(qj, (size_t)n, &q, NULL, 0) == KD_OK && kd_query_run(w, "n", q, &res) == KD_OK)
        total = res->total;
    kd_result_free(res);
    kd_query_free(q);
    return total;
}

static void test_dropped_workspace_forgotten_while_written(void)
{
    char dir[256];
    kd_db *db = NULL, *w = NULL;
    CHECK(db_with_w("forget", dir, &db, &w));
    CHECK_RC(kd_index_create(w, "n", "n"), KD_OK);
    for (int i = 0; i < FORGET_KEYS; i++) {
        char key[16], val[32];
        snprintf(key, sizeof key, "k%d", i);
        int n = snprintf(val, sizeof val, "{\"n\":%d}", i);
        CHECK_RC(kd_put(w, "n", key, val, (size_t)n, NULL), KD_OK);
    }
    kd_close(w);
    CHECK_RC(kd_workspace_drop(db, "W"), KD_OK);
    seal_hook = start_rewriting;
    kd_compact_report rep;
    int rc = kd_compact(db, 0, &rep);
    __atomic_store_n(&forget_stop, 1, __ATOMIC_RELEASE);
    CHECK(forget_started);
    pthread_join(forget_thread, NULL);
    CHECK_RC(rc, KD_OK);
    size_t written = 0;
    for (int i = 0; i < FORGET_KEYS; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        CHECK_EQ_INT(kd_contains(forget_w, "n", key), forget_written[i]);
        written += forget_written[i] != 0;
    }
    CHECK_EQ_INT(written, (FORGET_KEYS + 2) / 3);
    CHECK_EQ_INT(query_total(forget_w, "n < 0"), written);
    CHECK_EQ_INT(query_total(forget_w, "n >= 0"), 0);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(forget_w);
    kd_close(db);
}

/* A workspace dropped while a compaction gathers the retention policies
 * (after it listed the workspaces): the compaction goes on (it failed
 * with "no workspace named 'W'"); the next one takes the drop. */
static void test_workspace_dropped_while_policies_are_read(void)
{
    char dir[256];
    kd_db *db = NULL, *w = NULL;
    CHECK(db_with_w("droplist", dir, &db, &w));
    CHECK_RC(kd_put(w, "n", "k", "1", 1, NULL), KD_OK);
    CHECK_RC(kd_retention_set(w, "n", "{\"keep_last\":1}", 15), KD_OK);
    kd_close(w);
    kd_compact_report rep;
    for (int dry = 1; dry >= 0; dry--) {
        CHECK_RC(kd_workspace_create(db, "W"), dry ? KD_EEXISTS : KD_OK);
        list_hook = drop_w;
        CHECK_RC(kd_compact(db, dry, &rep), KD_OK);
        CHECK(list_hook == NULL);
    }
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(db);
}

/* A version whose value a compaction removed stays pruned when the same
 * value is written again, by another key: in this process, after
 * reopening (replay), from a checkpoint, and after another compaction.
 * It read the value again (get_at, history), while verify still counted
 * it pruned. The new write reads its value. */
static int pruned_at(kd_db *db, int64_t at)
{
    char *json = NULL;
    size_t len = 0;
    int rc = kd_get_at(db, "n", "k", at, &json, &len, NULL);
    kd_free(json);
    return rc;
}

static void test_pruned_stays_pruned_when_its_value_returns(void)
{
    char dir[256];
    kd_db *db = filled_db("restored", dir);
    CHECK(db);
    kd_version *h = NULL;
    size_t nh = 0;
    CHECK_RC(kd_history(db, "n", "k", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &nh), KD_OK);
    CHECK_EQ_INT(nh, VERSIONS);
    int64_t t7 = h[7].timestamp;
    kd_free(h);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_RC(pruned_at(db, t7), KD_EPRUNED);
    char v[1100];
    value_of("k", 7, v, sizeof v); /* version 7's value, now by another key */
    CHECK_RC(kd_put(db, "again", "x", v, strlen(v), NULL), KD_OK);
    for (int round = 0; round < 4; round++) {
        CHECK_RC(pruned_at(db, t7), KD_EPRUNED);
        CHECK_RC(kd_history(db, "n", "k", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &nh), KD_OK);
        int pruned = h[7].pruned;
        kd_free(h);
        CHECK_EQ_INT(pruned, KD_PRUNED_RETENTION);
        char *json = NULL;
        size_t len = 0;
        CHECK_RC(kd_get(db, "again", "x", &json, &len, NULL), KD_OK);
        int same = len == strlen(v) && !memcmp(json, v, len);
        kd_free(json);
        CHECK(same);
        kd_verify_report vr;
        CHECK_RC(kd_verify(db, &vr), KD_OK);
        if (round == 1)
            CHECK_RC(kd_checkpoint(db), KD_OK);
        if (round == 2)
            CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
        kd_close(db); /* rounds 1-3 read it back: replay, checkpoint, compacted */
        db = open_db(dir);
        CHECK(db);
    }
    kd_close(db);
}

/* A value a compaction is removing, written again for another key while
 * the compaction runs: n/a's old version {"x":1} goes, n/c keeps it. */
static const char RESTORED[] = "{\"x\":1}";

static void put_restored(kd_db *db)
{
    if (kd_put(db, "n", "c", RESTORED, sizeof RESTORED - 1, NULL) != KD_OK)
        fprintf(stderr, "put_restored: %s\n", kd_errmsg(db));
}

static void put_restored_and_die(kd_db *db)
{
    put_restored(db);
    _exit(0); /* killed mid-compaction: the plan is on disk, seg 1 not rewritten */
}

static kd_db *db_with_restorable(const char *tag, char *dir)
{
    harness_tmpdir("compact", tag, dir);
    kd_db *db = open_db(dir);
    if (db && (kd_retention_set(db, "n", "{\"keep_last\":1}", 15) || kd_put(db, "n", "a", RESTORED, 7, NULL) ||
               kd_put(db, "n", "a", "{\"x\":2}", 7, NULL))) {
        kd_close(db);
        db = NULL;
    }
    return db;
}

static int reads_restored(kd_db *db)
{
    char *json = NULL;
    size_t len = 0;
    int ok = kd_get(db, "n", "c", &json, &len, NULL) == KD_OK && len == 7 && !memcmp(json, RESTORED, 7);
    kd_free(json);
    kd_verify_report vr;
    return ok && kd_verify(db, &vr) == KD_OK;
}

/* Close *db, open dir again into *db: 1 when it opened and n/c still
 * reads the restored value (and verify passes). */
static int reopen_reads_restored(kd_db **db, const char *dir)
{
    kd_close(*db);
    *db = open_db(dir);
    return *db && reads_restored(*db);
}

/* In a child: a compaction that, as it starts rewriting, sees its value
 * stored again and is killed (put_restored_and_die). 1 when the child
 * died that way. */
static int crash_storing_again(kd_db *db)
{
    pid_t pid = fork();
    if (pid == 0) {
        rewrite_hook = put_restored_and_die;
        kd_compact_report rep;
        kd_compact(db, 0, &rep);
        _exit(1);
    }
    int status;
    return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Killed after the value was stored again: opening finishes the
 * compaction, and n/c still reads it (its entry was the first copy's,
 * which the finished compaction removed), from the log and then from the
 * checkpoint written later. */
static void test_crash_after_a_removed_value_is_stored_again(void)
{
    char dir[256];
    kd_db *db = db_with_restorable("restore-crash", dir);
    CHECK(db);
    CHECK(crash_storing_again(db));
    CHECK(reopen_reads_restored(&db, dir));
    CHECK_RC(kd_checkpoint(db), KD_OK);
    CHECK(reopen_reads_restored(&db, dir));
    kd_close(db);
}

/* A compaction fails (its plan cannot be synced) after the value was
 * stored again: two entries hold it. The next compaction, which rewrites
 * the segment of the new copy for another reason, must not remove it. */
static void test_failed_compaction_then_another(void)
{
    char dir[256];
    kd_db *db = db_with_restorable("restore-fail", dir);
    CHECK(db);
    pending_db = db;
    pending_hook = put_restored;
    kd_compact_report rep;
    CHECK(kd_compact(db, 0, &rep) != KD_OK);
    CHECK(pending_hook == NULL);
    CHECK(reads_restored(db));
    CHECK_RC(kd_put(db, "n", "d", "{\"p\":1}", 7, NULL), KD_OK);
    CHECK_RC(kd_put(db, "n", "d", "{\"p\":2}", 7, NULL), KD_OK);
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK(rep.versions_pruned > 0);
    CHECK(reads_restored(db));
    CHECK(reopen_reads_restored(&db, dir));
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK); /* merged at open: now n/a's old version can go */
    CHECK(reads_restored(db));
    kd_close(db);
}

/* A compaction cut short whose plan file cannot be removed once opening
 * has finished it: the open succeeds (it opened itself again and again,
 * until the stack ran out), and the next open, once the file can go,
 * finishes cleanly. */
static void test_interrupted_compaction_plan_stuck(void)
{
    char dir[256];
    kd_db *db = db_with_restorable("plan-stuck", dir);
    CHECK(db);
    CHECK(crash_storing_again(db));
    kd_close(db);
    pending_stuck = 1;
    db = open_db(dir);
    pending_stuck = 0;
    CHECK(db);
    CHECK(reads_restored(db));
    CHECK(reopen_reads_restored(&db, dir));
    char p[512];
    snprintf(p, sizeof p, "%s/compact.pending", dir);
    CHECK(access(p, F_OK) != 0);
    kd_close(db);
}

/* Three versions of n2/k, {"<tag>":0} to {"<tag>":2}; 1 when all went in. */
static int put_three(kd_db *w, const char *tag)
{
    for (int i = 0; i < 3; i++) {
        char v[64];
        int n = snprintf(v, sizeof v, "{\"%s\":%d}", tag, i);
        if (kd_put(w, "n2", "k", v, (size_t)n, NULL) != KD_OK)
            return 0;
    }
    return 1;
}

/* A workspace dropped, compacted and made again, in one process: a
 * namespace first written after that is governed by its retention policy
 * at once (it was taken for the dropped workspace's, for one run: the
 * policy skipped, a record written for nothing); and in a workspace made
 * again before the compaction, the pre-drop versions and the ones its
 * policy drops go in the same run. */
static void test_workspace_made_again_keeps_its_policies(void)
{
    char dir[256];
    kd_db *db = NULL, *w = NULL;
    CHECK(db_with_w("again-policy", dir, &db, &w));
    CHECK_RC(kd_put(w, "u", "k", "{\"old\":1}", 9, NULL), KD_OK);
    kd_close(w);
    CHECK_RC(kd_workspace_drop(db, "W"), KD_OK);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_RC(kd_workspace_create(db, "W"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    CHECK_RC(kd_retention_set(w, "n2", "{\"keep_last\":1}", 15), KD_OK);
    CHECK(put_three(w, "n2"));
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions_pruned, 2);
    /* dropped again, made again, written, with a policy: one run does both */
    kd_close(w);
    CHECK_RC(kd_workspace_drop(db, "W"), KD_OK);
    CHECK_RC(kd_workspace_create(db, "W"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    CHECK_RC(kd_retention_set(w, "n2", "{\"keep_last\":1}", 15), KD_OK);
    CHECK(put_three(w, "again"));
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_EQ_INT(rep.versions_pruned, 1 + 2); /* the kept one of before the drop; 2 of the 3 after it */
    char *json = NULL;
    size_t len = 0;
    CHECK_RC(kd_get(w, "n2", "k", &json, &len, NULL), KD_OK);
    int newest = len == 11 && !memcmp(json, "{\"again\":2}", 11);
    kd_free(json);
    CHECK(newest);
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(w);
    kd_close(db);
}

int main(void)
{
    RUN(test_policy_keep_last_and_newer_than);
    RUN(test_policy_thinning);
    RUN(test_policy_errors);
    RUN(test_compact_keep_last);
    RUN(test_verify_tells_tampering);
    RUN(test_kill_during_compaction);
    RUN(test_upkeep_applies_retention);
    RUN(test_retention_keeps_its_own_interval);
    RUN(test_failed_database_upkeep_sleeps);
    RUN(test_compact_while_writing);
    RUN(test_repair_keeps_pruned);
    RUN(test_repair_leaves_tampering_to_verify);
    RUN(test_repair_leaves_interrupted_compaction);
    RUN(test_backup_across_compaction);
    RUN(test_incremental_refused_across_compaction);
    RUN(test_workspace_policies);
    RUN(test_dropped_workspace_shares_values);
    RUN(test_workspace_made_again_during_compaction);
    RUN(test_dropped_workspace_in_the_newest_segment);
    RUN(test_stale_workspace_handle);
    RUN(test_compaction_cut_short_then_again);
    RUN(test_dropped_workspace_forgotten_while_written);
    RUN(test_workspace_dropped_while_policies_are_read);
    RUN(test_pruned_stays_pruned_when_its_value_returns);
    RUN(test_crash_after_a_removed_value_is_stored_again);
    RUN(test_failed_compaction_then_another);
    RUN(test_interrupted_compaction_plan_stuck);
    RUN(test_workspace_made_again_keeps_its_policies);
    return HARNESS_DONE();
}
