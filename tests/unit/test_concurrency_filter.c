/*
 * test_concurrency_filter.c — one compiled filter matched from 4 threads at
 * once (kd_filter_match and kd__filter_eval), with `matches` (PCRE2 and its
 * per-thread match state), subjects with escapes (the per-thread unescape
 * buffer) and a pattern that runs into the match limit. Every answer must
 * be the single-threaded one. Run under ThreadSanitizer by `make tsan`
 * (the name contains "concurrency"); under AddressSanitizer the threads'
 * state must be freed when they exit.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "korudelta.h"
#include "query/filter.h"
#include "query/jv.h"

#define THREADS 4
#define ROUNDS 3000

static const char *const docs[] = {
    "{\"name\":\"\xc3\x84pfel\",\"tags\":[\"red\"],\"n\":5}",
    "{\"name\":\"apple\",\"tags\":[\"red\"],\"n\":5}",
    "{\"name\":\"\xc3\x84\\n\\\"quoted\\\"\",\"tags\":[\"green\"],\"n\":50}",
    "{\"name\":\"\xc3\x89lan\",\"tags\":[],\"n\":7.5}",
    "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaab\",\"tags\":[\"red\"],\"n\":1}",
    "{\"tags\":[\"red\"],\"n\":5}",
};
#define N_DOCS (sizeof docs / sizeof docs[0])

static kd_filter *filter, *slow;
static int expected[N_DOCS], expected_slow[N_DOCS];

typedef struct job {
    int id;
    int failures;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    for (int r = 0; r < ROUNDS; r++) {
        size_t i = (size_t)(r + j->id) % N_DOCS;
        int got = kd_filter_match(filter, docs[i], strlen(docs[i]));
        if (got != expected[i])
            j->failures++;
        if (r % 50 == 0) {
            got = kd_filter_match(slow, docs[i], strlen(docs[i]));
            if (got != expected_slow[i])
                j->failures++;
        }
    }
    return NULL;
}

static void test_threads_share_one_filter(void)
{
    char err[300];
    CHECK_RC(kd_filter_parse("(name matches \"^\\\\p{Lu}\" or name matches \"quoted\") and tags contains \"red\" "
                             "or n >= 50",
                             &filter, err, sizeof err),
             KD_OK);
    CHECK_RC(kd_filter_parse("name matches \"^(a+)+$\"", &slow, err, sizeof err), KD_OK);
    for (size_t i = 0; i < N_DOCS; i++) {
        expected[i] = kd_filter_match(filter, docs[i], strlen(docs[i]));
        expected_slow[i] = kd_filter_match(slow, docs[i], strlen(docs[i]));
    }
    CHECK_EQ_INT(expected[0], 1);
    CHECK_EQ_INT(expected[1], 0);
    CHECK_EQ_INT(expected[2], 1);
    CHECK_EQ_INT(expected[3], 0);
    CHECK_EQ_INT(expected[4], 0);
    CHECK_EQ_INT(expected[5], 0);
    CHECK_EQ_INT(expected_slow[4], 0); /* the limit: no match */

    pthread_t th[THREADS];
    job jobs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t].id = t;
        jobs[t].failures = 0;
        CHECK(pthread_create(&th[t], NULL, worker, &jobs[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        CHECK_EQ_INT(jobs[t].failures, 0);
    kd_filter_free(filter);
    kd_filter_free(slow);
}

/* A copy (as subscriptions keep) used by threads while the original is
 * freed. */
static kd_filter *copy;

static void *copy_worker(void *arg)
{
    int *bad = arg;
    for (int r = 0; r < ROUNDS; r++) {
        size_t i = (size_t)r % N_DOCS;
        int want = i == 0 || i == 3; /* names starting with an upper-case letter */
        if (kd_filter_match(copy, docs[i], strlen(docs[i])) != want)
            (*bad)++;
    }
    return NULL;
}

static void test_copy_across_threads(void)
{
    kd_filter *f = NULL;
    char err[300];
    CHECK_RC(kd_filter_parse("name matches \"^\\\\p{Lu}\\\\p{Ll}\"", &f, err, sizeof err), KD_OK);
    copy = kd__filter_copy(f);
    kd_filter_free(f);
    CHECK(copy);
    pthread_t th[THREADS];
    int bad[THREADS] = {0};
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, copy_worker, &bad[t]) == 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        CHECK_EQ_INT(bad[t], 0);
    kd_filter_free(copy);
}

int main(void)
{
    RUN(test_threads_share_one_filter);
    RUN(test_copy_across_threads);
    return HARNESS_DONE();
}
