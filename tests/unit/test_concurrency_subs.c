/*
 * test_concurrency_subs.c — subscriptions beside concurrent writers (run
 * under ThreadSanitizer by `make tsan`): subscribers that keep up see every
 * write exactly once in log order; a stalled subscriber never holds writers
 * back and is told exactly how much it missed; subscribing and
 * unsubscribing race with writers; kd_unsubscribe wakes a waiting reader;
 * with sync=always nothing is delivered before it is visible.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"
#include "query/subs.h"

static char dir[256];
static kd_db *db;

static void fresh(kd_sync mode)
{
    snprintf(dir, sizeof dir, "/tmp/kd_test_conc_subs_XXXXXX");
    if (!mkdtemp(dir))
        abort();
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, mode, 5);
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err)) {
        fprintf(stderr, "open: %s\n", err);
        abort();
    }
    kd_options_free(o);
}

static void cleanup(void)
{
    kd_close(db);
    db = NULL;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
}

/* ------------------------------------------------------------------------
 * Writers: each records the versions its puts returned
 * ---------------------------------------------------------------------- */

typedef struct writer_arg {
    int no, n;
    const char *ns;
    kd_version *got; /* n entries, or NULL */
    int failures;
} writer_arg;

static void *writer(void *p)
{
    writer_arg *w = p;
    for (int i = 0; i < w->n; i++) {
        char key[32], val[64];
        snprintf(key, sizeof key, "w%d-%d", w->no, i % 50);
        int len = snprintf(val, sizeof val, "{\"w\":%d,\"i\":%d,\"s\":\"w%d\"}", w->no, i, w->no);
        int rc = kd_put(db, w->ns, key, val, (size_t)len, w->got ? &w->got[i] : NULL);
        if (rc != KD_OK) {
            fprintf(stderr, "put failed: %s\n", kd_errmsg(db));
            w->failures++;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Readers: collect write_ids in delivery order
 * ---------------------------------------------------------------------- */

typedef struct reader_arg {
    uint64_t id;
    size_t want;      /* stop after this many write events */
    char (*ids)[KD_ID_HEX];
    size_t n;
    int out_of_order, missed, timeouts, errors, invisible, bad_fields;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *r = p;
    int64_t last = 0;
    while (r->n < r->want) {
        kd_event ev;
        int rc = kd_sub_next(db, r->id, 10000, &ev);
        if (rc == KD_ETIMEOUT) {
            r->timeouts++;
            break;
        }
        if (rc != KD_OK) {
            r->errors++;
            break;
        }
        if (ev.type == KD_EVENT_MISSED) {
            r->missed += (int)ev.missed;
        } else {
            if (ev.version.timestamp <= last)
                r->out_of_order++;
            if (ev.version.timestamp > kd__visible(db))
                r->invisible++;
            if (!ev.ns || !ev.key || !ev.value || ev.type != (ev.prev_value ? KD_EVENT_UPDATE : KD_EVENT_INSERT))
                r->bad_fields++;
            last = ev.version.timestamp;
            memcpy(r->ids[r->n++], ev.version.write_id, KD_ID_HEX);
        }
        kd_event_clear(&ev);
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, KD_ID_HEX);
}

/* The write_ids the readers saw are exactly the ones the writers got. */
static int same_ids(char (*seen)[KD_ID_HEX], size_t n_seen, writer_arg *w, int n_writers)
{
    size_t total = 0;
    for (int i = 0; i < n_writers; i++)
        total += (size_t)w[i].n;
    if (total != n_seen)
        return 0;
    char(*want)[KD_ID_HEX] = malloc(total * KD_ID_HEX);
    char(*got)[KD_ID_HEX] = malloc(total * KD_ID_HEX);
    if (!want || !got)
        abort();
    size_t k = 0;
    for (int i = 0; i < n_writers; i++)
        for (int j = 0; j < w[i].n; j++)
            memcpy(want[k++], w[i].got[j].write_id, KD_ID_HEX);
    memcpy(got, seen, total * KD_ID_HEX);
    qsort(want, total, KD_ID_HEX, cmp_id);
    qsort(got, total, KD_ID_HEX, cmp_id);
    int ok = !memcmp(want, got, total * KD_ID_HEX);
    for (size_t i = 1; ok && i < total; i++)
        if (!memcmp(got[i - 1], got[i], KD_ID_HEX))
            ok = 0; /* seen twice */
    free(want);
    free(got);
    return ok;
}

/* ------------------------------------------------------------------------ */

enum { KEEP_WRITES = 5000 };

/* 2 writers x 5,000 rapid writes; two subscribers reading in their own
 * threads see all 10,000, once each, timestamps strictly increasing; a
 * third, whose filter (a regular expression, run on the writers' threads)
 * picks writer 0, sees exactly writer 0's writes. */
static void test_keeping_up(void)
{
    fresh(KD_SYNC_NONE);
    reader_arg r[3];
    memset(r, 0, sizeof r);
    kd_filter *f = NULL;
    CHECK_RC(kd_filter_parse("s matches \"^w0$\"", &f, NULL, 0), KD_OK);
    for (int i = 0; i < 3; i++) {
        kd_sub_options o = {.filter = i == 2 ? f : NULL};
        CHECK_RC(kd_subscribe(db, &o, &r[i].id), KD_OK);
        r[i].want = i == 2 ? KEEP_WRITES : 2 * KEEP_WRITES;
        r[i].ids = malloc(r[i].want * KD_ID_HEX);
        CHECK(r[i].ids);
    }
    kd_filter_free(f);
    writer_arg w[2];
    pthread_t rt[3], wt[2];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&rt[i], NULL, reader, &r[i]) == 0);
    for (int i = 0; i < 2; i++) {
        w[i] = (writer_arg){.no = i, .n = KEEP_WRITES, .ns = "hot", .got = calloc(KEEP_WRITES, sizeof(kd_version))};
        CHECK(w[i].got);
        CHECK(pthread_create(&wt[i], NULL, writer, &w[i]) == 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(wt[i], NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(rt[i], NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(w[i % 2].failures, 0);
        CHECK_EQ_INT(r[i].timeouts, 0);
        CHECK_EQ_INT(r[i].errors, 0);
        CHECK_EQ_INT(r[i].missed, 0);
        CHECK_EQ_INT(r[i].out_of_order, 0);
        CHECK_EQ_INT(r[i].invisible, 0);
        CHECK_EQ_INT(r[i].bad_fields, 0);
        CHECK_EQ_INT(r[i].n, r[i].want);
        CHECK(same_ids(r[i].ids, r[i].n, w, i == 2 ? 1 : 2));
    }
    kd_event ev;
    CHECK_RC(kd_sub_next(db, r[0].id, 0, &ev), KD_ETIMEOUT);
    CHECK_RC(kd_sub_next(db, r[2].id, 0, &ev), KD_ETIMEOUT);
    for (int i = 0; i < 3; i++)
        free(r[i].ids);
    for (int i = 0; i < 2; i++)
        free(w[i].got);
    cleanup();
}

/* A subscriber that never reads: writers all complete, and afterwards it
 * gets the oldest `queue` events and the exact count of the rest. */
static void test_stalled(void)
{
    fresh(KD_SYNC_NONE);
    uint64_t id;
    kd_sub_options o = {.queue = 64};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_OK);
    writer_arg w[2];
    pthread_t wt[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (writer_arg){.no = i, .n = 2000, .ns = "s"};
        CHECK(pthread_create(&wt[i], NULL, writer, &w[i]) == 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(wt[i], NULL);
    CHECK_EQ_INT(w[0].failures + w[1].failures, 0);
    kd_event ev;
    int64_t last = 0;
    for (int i = 0; i < 64; i++) {
        CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
        CHECK(ev.type != KD_EVENT_MISSED);
        CHECK(ev.version.timestamp > last);
        last = ev.version.timestamp;
        kd_event_clear(&ev);
    }
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_MISSED);
    CHECK_EQ_INT(ev.missed, 4000 - 64);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_ETIMEOUT);
    cleanup();
}

/* Subscriptions come and go while writers write; every call returns a
 * sensible code and each subscription's events stay in order. */
static int churn_bad;

static void *churner(void *p)
{
    long no = (long)p;
    for (int round = 0; round < 150; round++) {
        uint64_t id;
        kd_sub_options o = {.queue = (size_t)(1 + round % 20)};
        if (round % 3 == 1)
            o.ns = "c";
        if (round % 3 == 2) {
            o.ns = "c";
            o.key = "w0-1";
        }
        if (kd_subscribe(db, &o, &id) != KD_OK) {
            __atomic_add_fetch(&churn_bad, 1, __ATOMIC_RELAXED);
            continue;
        }
        int64_t last = 0;
        for (int i = 0; i < 30; i++) {
            kd_event ev;
            int rc = kd_sub_next(db, id, i % 5 == 0 ? 1 : 0, &ev);
            if (rc == KD_ETIMEOUT)
                continue;
            if (rc != KD_OK) {
                __atomic_add_fetch(&churn_bad, 1, __ATOMIC_RELAXED);
                break;
            }
            if (ev.type != KD_EVENT_MISSED) {
                if (ev.version.timestamp <= last)
                    __atomic_add_fetch(&churn_bad, 1, __ATOMIC_RELAXED);
                last = ev.version.timestamp;
            }
            kd_event_clear(&ev);
        }
        /* Another thread's id may be gone already: NOTFOUND is fine. */
        kd_event ev;
        int rc = kd_sub_next(db, id ^ 1, 0, &ev);
        if (rc == KD_OK)
            kd_event_clear(&ev);
        else if (rc != KD_ETIMEOUT && rc != KD_ENOTFOUND)
            __atomic_add_fetch(&churn_bad, 1, __ATOMIC_RELAXED);
        if (kd_unsubscribe(db, id) != KD_OK)
            __atomic_add_fetch(&churn_bad, 1, __ATOMIC_RELAXED);
        (void)no;
    }
    return NULL;
}

static void test_churn(void)
{
    fresh(KD_SYNC_NONE);
    int hooks_before = __atomic_load_n(&db->hooks, __ATOMIC_ACQUIRE);
    writer_arg w[2];
    pthread_t wt[2], ct[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (writer_arg){.no = i, .n = 3000, .ns = "c"};
        CHECK(pthread_create(&wt[i], NULL, writer, &w[i]) == 0);
    }
    for (long i = 0; i < 2; i++)
        CHECK(pthread_create(&ct[i], NULL, churner, (void *)i) == 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(wt[i], NULL);
        pthread_join(ct[i], NULL);
    }
    CHECK_EQ_INT(w[0].failures + w[1].failures, 0);
    CHECK_EQ_INT(churn_bad, 0);
    CHECK_EQ_INT(__atomic_load_n(&db->hooks, __ATOMIC_ACQUIRE), hooks_before); /* all gone */
    cleanup();
}

/* A reader asleep in kd_sub_next (no timeout) returns KD_ENOTFOUND when its
 * subscription is cancelled. */
typedef struct waiter_arg {
    uint64_t id;
    int rc;
} waiter_arg;

static void *waiter(void *p)
{
    waiter_arg *a = p;
    kd_event ev;
    a->rc = kd_sub_next(db, a->id, -1, &ev);
    if (a->rc == KD_OK)
        kd_event_clear(&ev);
    return NULL;
}

static void test_unsubscribe_wakes(void)
{
    fresh(KD_SYNC_NONE);
    waiter_arg a = {0, 1};
    CHECK_RC(kd_subscribe(db, &(kd_sub_options){.ns = "quiet"}, &a.id), KD_OK);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waiter, &a) == 0);
    while (kd__subs_waiters(db) == 0)
        usleep(1000);
    /* Writes elsewhere wake nobody for good. */
    CHECK_RC(kd_put(db, "loud", "k", "1", 1, NULL), KD_OK);
    CHECK_RC(kd_unsubscribe(db, a.id), KD_OK);
    pthread_join(t, NULL);
    CHECK_RC(a.rc, KD_ENOTFOUND);
    CHECK_EQ_INT(kd__subs_waiters(db), 0);
    cleanup();
}

/* A reader asleep in kd_sub_next wakes for a write (and only gets it once
 * it is visible). */
static void test_wakes_for_write(void)
{
    fresh(KD_SYNC_NONE);
    reader_arg r;
    memset(&r, 0, sizeof r);
    CHECK_RC(kd_subscribe(db, NULL, &r.id), KD_OK);
    r.want = 1;
    r.ids = malloc(KD_ID_HEX);
    CHECK(r.ids);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, reader, &r) == 0);
    while (kd__subs_waiters(db) == 0)
        usleep(1000);
    kd_version v;
    CHECK_RC(kd_put(db, "n", "k", "1", 1, &v), KD_OK);
    pthread_join(t, NULL);
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_STR(r.ids[0], v.write_id);
    free(r.ids);
    cleanup();
}

/* sync=always, 4 writers: every event is delivered, none before it is
 * visible (that is, durable). */
static void test_sync_always(void)
{
    fresh(KD_SYNC_ALWAYS);
    enum { W = 4, N = 150 };
    reader_arg r;
    memset(&r, 0, sizeof r);
    CHECK_RC(kd_subscribe(db, NULL, &r.id), KD_OK);
    r.want = W * N;
    r.ids = malloc(r.want * KD_ID_HEX);
    CHECK(r.ids);
    pthread_t rt, wt[W];
    writer_arg w[W];
    CHECK(pthread_create(&rt, NULL, reader, &r) == 0);
    for (int i = 0; i < W; i++) {
        w[i] = (writer_arg){.no = i, .n = N, .ns = "d", .got = calloc(N, sizeof(kd_version))};
        CHECK(w[i].got);
        CHECK(pthread_create(&wt[i], NULL, writer, &w[i]) == 0);
    }
    for (int i = 0; i < W; i++)
        pthread_join(wt[i], NULL);
    pthread_join(rt, NULL);
    for (int i = 0; i < W; i++)
        CHECK_EQ_INT(w[i].failures, 0);
    CHECK_EQ_INT(r.timeouts + r.errors + r.missed + r.out_of_order + r.bad_fields, 0);
    CHECK_EQ_INT(r.invisible, 0);
    CHECK_EQ_INT(r.n, W * N);
    CHECK(same_ids(r.ids, r.n, w, W));
    free(r.ids);
    for (int i = 0; i < W; i++)
        free(w[i].got);
    cleanup();
}

int main(void)
{
    RUN(test_keeping_up);
    RUN(test_stalled);
    RUN(test_churn);
    RUN(test_unsubscribe_wakes);
    RUN(test_wakes_for_write);
    RUN(test_sync_always);
    return HARNESS_DONE();
}
