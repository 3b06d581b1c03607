/*
 * harness.h — the tiny unit-test harness (modelled on libuv's runner).
 *
 * A test file defines functions `static void test_x(void)` and lists them in
 * main() with RUN(test_x). CHECK* macros print file:line and the failing
 * expression, mark the current test failed and return from it.
 * The process exits 1 if any test failed, so ctest reports it.
 */
#ifndef KD_TEST_HARNESS_H
#define KD_TEST_HARNESS_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h" /* kd__create_temp */

static int harness_failed;
static int harness_current_failed;
static int harness_run, harness_bad;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
            harness_current_failed = 1;                                                 \
            return;                                                                     \
        }                                                                               \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                              \
    do {                                                                                \
        long long va_ = (long long)(a), vb_ = (long long)(b);                           \
        if (va_ != vb_) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, \
                    __LINE__, #a, #b, va_, vb_);                                        \
            harness_current_failed = 1;                                                 \
            return;                                                                     \
        }                                                                               \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                              \
    do {                                                                                \
        const char *sa_ = (a), *sb_ = (b);                                              \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n",       \
                    __FILE__, __LINE__, #a, #b, sa_ ? sa_ : "(null)",                    \
                    sb_ ? sb_ : "(null)");                                              \
            harness_current_failed = 1;                                                 \
            return;                                                                     \
        }                                                                               \
    } while (0)

/* Status-code check: prints the code's name on failure. */
#define CHECK_RC(expr, want)                                                            \
    do {                                                                                \
        int rc_ = (expr);                                                               \
        if (rc_ != (want)) {                                                            \
            fprintf(stderr, "%s:%d: %s returned %d, wanted %d\n", __FILE__, __LINE__,   \
                    #expr, rc_, (int)(want));                                           \
            harness_current_failed = 1;                                                 \
            return;                                                                     \
        }                                                                               \
    } while (0)

#define RUN(fn)                                                                         \
    do {                                                                                \
        harness_current_failed = 0;                                                     \
        harness_run++;                                                                  \
        fn();                                                                           \
        if (harness_current_failed) {                                                   \
            harness_bad++;                                                              \
            harness_failed = 1;                                                         \
            fprintf(stderr, "FAIL %s\n", #fn);                                          \
        } else {                                                                        \
            fprintf(stderr, "ok   %s\n", #fn);                                          \
        }                                                                               \
    } while (0)

#define HARNESS_DONE()                                                                  \
    (fprintf(stderr, "%d passed, %d failed\n", harness_run - harness_bad, harness_bad), \
     harness_failed ? 1 : 0)

/* A new empty directory /tmp/kd_test_<suite>_<tag>_<random> in dir (at
 * least 256 bytes); aborts when it cannot be made. */
static inline void harness_tmpdir(const char *suite, const char *tag, char *dir)
{
    char prefix[160];
    snprintf(prefix, sizeof prefix, "/tmp/kd_test_%s_%s_", suite, tag);
    if (kd__create_temp(prefix, 1, dir, 256) < 0)
        abort();
}

#endif
