/*
 * test_distance.c — the vector distance kernels of src/vector/distance.c.
 *
 * Every kernel this CPU can run (portable, avx2, avx512) is checked against
 * a double-precision reference on random data of awkward lengths, at
 * unaligned addresses, with a relative tolerance; against exact answers on
 * one-hot vectors (a lost, doubled or shifted element shows up exactly);
 * and with NaN planted just outside the arrays (a kernel that reads past
 * either end returns NaN). The run-time choice and the KD_SIMD override
 * are checked in child processes (the choice is made once per process).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "korudelta.h"
#include "vector/vector_int.h"

static const char *const KERNELS[] = {"portable", "avx2", "avx512"};
static const size_t LENGTHS[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 96, 127, 128, 129, 255,
                                 1000, 4095, 4096};
#define NLEN (sizeof LENGTHS / sizeof LENGTHS[0])
#define PAD 8 /* floats of room on each side */

static uint64_t rng = 0x243F6A8885A308D3ull;

static double unif(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)((rng >> 11) + 1) * 0x1.0p-53;
}

static float gauss(void)
{
    return (float)(sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * unif()));
}

/* A buffer of n floats at float offset `off` inside a padded allocation,
 * with NaN in the padding on both sides. */
static float *poisoned(float *block, size_t n, size_t off)
{
    for (size_t i = 0; i < n + 2 * PAD; i++)
        block[i] = NAN;
    return block + PAD + off;
}

static int close_rel(double got, double want, double scale, double rel)
{
    return fabs(got - want) <= rel * scale + 1e-30;
}

/* ------------------------------------------------------------------------
 * Kernels against the reference
 * ---------------------------------------------------------------------- */

static void check_kernel_random(const kd__vec_kernels *k)
{
    float *ba = malloc((4096 + 2 * PAD + 8) * sizeof(float)), *bb = malloc((4096 + 2 * PAD + 8) * sizeof(float));
    CHECK(ba && bb);
    int bad = 0;
    for (size_t li = 0; li < NLEN && !bad; li++) {
        size_t n = LENGTHS[li];
        for (size_t off = 0; off < 4 && !bad; off++) {
            float *a = poisoned(ba, n + 8, off), *b = poisoned(bb, n + 8, (off * 3) % 5);
            for (size_t i = 0; i < n; i++) {
                a[i] = gauss();
                b[i] = gauss() * 4.0f;
            }
            for (size_t i = n; i < n + 8; i++)
                a[i] = b[i] = NAN; /* right after the end */
            double dot = 0, mag = 0, l2 = 0, na = 0;
            for (size_t i = 0; i < n; i++) {
                dot += (double)a[i] * b[i];
                mag += fabs((double)a[i] * b[i]);
                l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
                na += (double)a[i] * a[i];
            }
            float gd = k->dot(a, b, n), gl = k->l2sq(a, b, n), gn = k->dot(a, a, n);
            if (!close_rel(gd, dot, mag, 1e-5) || !close_rel(gl, l2, l2, 1e-5) || !close_rel(gn, na, na, 1e-5)) {
                fprintf(stderr, "    %s n=%zu off=%zu: dot %.9g want %.9g; l2sq %.9g want %.9g; a.a %.9g want %.9g\n",
                        k->name, n, off, gd, dot, gl, l2, gn, na);
                bad = 1;
            }
        }
    }
    free(ba);
    free(bb);
    CHECK(!bad);
}

/* One-hot a: dot(a, b) = 3 * b[j] and l2sq(a, 0) = 9 exactly, whatever the
 * order of the sums; b holds distinct values, so reading b at the wrong
 * index gives a wrong answer. */
static void check_kernel_onehot(const kd__vec_kernels *k)
{
    float *ba = malloc((4096 + 2 * PAD + 8) * sizeof(float)), *bb = malloc((4096 + 2 * PAD + 8) * sizeof(float)),
          *bz = malloc((4096 + 2 * PAD + 8) * sizeof(float));
    CHECK(ba && bb && bz);
    int bad = 0;
    for (size_t li = 0; li < NLEN && !bad; li++) {
        size_t n = LENGTHS[li];
        float *a = poisoned(ba, n, 1), *b = poisoned(bb, n, 2), *z = poisoned(bz, n, 3);
        for (size_t i = 0; i < n; i++) {
            a[i] = 0.0f;
            b[i] = (float)(i + 1) * 0.5f;
            z[i] = 0.0f;
        }
        size_t step = n > 300 ? 37 : 1;
        for (size_t j = 0; j < n && !bad; j += step) {
            a[j] = 3.0f;
            float gd = k->dot(a, b, n), gl = k->l2sq(a, z, n), gs = k->l2sq(z, a, n);
            if (gd != 3.0f * b[j] || gl != 9.0f || gs != 9.0f) {
                fprintf(stderr, "    %s n=%zu j=%zu: dot %.9g want %.9g; l2sq %.9g / %.9g want 9\n", k->name, n, j, gd,
                        3.0f * b[j], gl, gs);
                bad = 1;
            }
            a[j] = 0.0f;
        }
        if (k->dot(a, b, n) != 0.0f || k->l2sq(b, b, n) != 0.0f) {
            fprintf(stderr, "    %s n=%zu: zero vector or equal vectors give nonzero\n", k->name, n);
            bad = 1;
        }
    }
    free(ba);
    free(bb);
    free(bz);
    CHECK(!bad);
}

static void test_kernels(void)
{
    int ran = 0;
    for (size_t i = 0; i < 3; i++) {
        const kd__vec_kernels *k = kd__vec_kernels_named(KERNELS[i]);
        if (!k) {
            fprintf(stderr, "    (kernel %s: not supported by this CPU, skipped)\n", KERNELS[i]);
            continue;
        }
        CHECK_EQ_STR(k->name, KERNELS[i]);
        ran++;
        int before = harness_current_failed;
        check_kernel_random(k);
        if (harness_current_failed != before)
            return;
        check_kernel_onehot(k);
        if (harness_current_failed)
            return;
    }
    CHECK(ran >= 1);
    CHECK(kd__vec_kernels_named("portable") != NULL);
    CHECK(kd__vec_kernels_named("sse9") == NULL);
    CHECK(kd__vec_kernels_named(NULL) == NULL);
}

/* The wrappers use the active kernels; results equal the named ones. */
static void test_wrappers(void)
{
    const kd__vec_kernels *k = kd__vec_kernels_active();
    CHECK(k != NULL);
    CHECK_EQ_STR(kd__vec_kernel_name(), k->name);
    CHECK(kd__vec_kernels_named(k->name) == k || getenv("KD_SIMD"));
    float a[33], b[33];
    for (int i = 0; i < 33; i++) {
        a[i] = gauss();
        b[i] = gauss();
    }
    CHECK(kd__vec_dot(a, b, 33) == k->dot(a, b, 33));
    CHECK(kd__vec_l2sq(a, b, 33) == k->l2sq(a, b, 33));
    double n2 = 0;
    for (int i = 0; i < 33; i++)
        n2 += (double)a[i] * a[i];
    CHECK(close_rel(kd__vec_norm(a, 33), sqrt(n2), sqrt(n2), 1e-6));
    CHECK(kd__vec_norm(a, 0) == 0.0f);
}

/* Lengths and directions are computed in double, so they neither overflow
 * nor underflow for any vector a put accepts, and are the same with every
 * kernel; a cosine from them is exactly 1 for a vector and itself, and
 * never leaves [-1, 1]. */
static void test_lengths_and_cosine(void)
{
    float big[5] = {1e20f, 2e19f, 0, 0, 3}, tiny[2] = {1e-40f, 0}, huge[2] = {3e38f, 3e38f}, one[2] = {1, 1};
    float zero[3] = {0, 0, 0}, d[5];
    /* big's square overflows float32, tiny's underflows, huge's length is
     * beyond float32 (a query may be) */
    CHECK(kd__vec_norm(big, 5) == (float)sqrt((double)big[0] * big[0] + (double)big[1] * big[1] + 9));
    CHECK(kd__vec_norm(tiny, 2) == 1e-40f);
    CHECK(isinf(kd__vec_norm(huge, 2)));
    CHECK(kd__vec_normalize(tiny, 2, d) == 1e-40f);
    CHECK(d[0] == 1.0f && d[1] == 0.0f);
    CHECK(isinf(kd__vec_normalize(huge, 2, d)));
    CHECK(d[0] == (float)sqrt(0.5) && d[1] == d[0]);
    CHECK(kd__vec_normalize(zero, 3, d) == 0.0f);
    CHECK(d[0] == 0.0f && d[1] == 0.0f && d[2] == 0.0f);
    CHECK(kd__vec_normalize(big, 5, d) == kd__vec_norm(big, 5));
    CHECK(d[4] > 0.0f && d[2] == 0.0f);
    /* the reference score does not overflow either */
    CHECK(kd__vec_score(KD__VEC_COSINE, huge, one, 2) == 1.0f);
    CHECK(kd__vec_score(KD__VEC_COSINE, tiny, tiny, 2) == 1.0f);

    CHECK(kd__vec_cosine(1.0000001f, 1.0f, 1.0f) == 1.0f);
    CHECK(kd__vec_cosine(-1.0000001f, 1.0f, 1.0f) == -1.0f);
    CHECK(kd__vec_cosine(0.5f, 0.0f, 1.0f) == 0.0f);
    float v[300];
    for (size_t n = 1; n <= 300; n += 7) {
        for (size_t i = 0; i < n; i++)
            v[i] = gauss() * (float)(1 + 100 * unif());
        float len = kd__vec_normalize(v, n, v);
        CHECK(len > 0 && isfinite(len));
        float vv = kd__vec_dot(v, v, n);
        CHECK(fabsf(vv - 1.0f) < 1e-5f);
        CHECK(kd__vec_cosine(vv, vv, vv) == 1.0f);
    }
}

static void test_check_and_metrics(void)
{
    float v[5] = {1, 2, 3, 4, 5};
    CHECK_RC(kd__vec_check(v, 5), KD_OK);
    CHECK_RC(kd__vec_check(v, 0), KD_OK);
    CHECK_RC(kd__vec_check(NULL, 5), KD_EINVALID);
    float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        v[4] = bad[i];
        CHECK_RC(kd__vec_check(v, 5), KD_EINVALID);
    }
    v[4] = 5;

    kd__vec_metric m = KD__VEC_L2;
    CHECK_RC(kd__vec_metric_parse("cosine", &m), KD_OK);
    CHECK_EQ_INT(m, KD__VEC_COSINE);
    CHECK_RC(kd__vec_metric_parse("dot", &m), KD_OK);
    CHECK_EQ_INT(m, KD__VEC_DOT);
    CHECK_RC(kd__vec_metric_parse("l2", &m), KD_OK);
    CHECK_EQ_INT(m, KD__VEC_L2);
    CHECK_RC(kd__vec_metric_parse("L2", &m), KD_EINVALID);
    CHECK_RC(kd__vec_metric_parse("euclid", &m), KD_EINVALID);
    CHECK_RC(kd__vec_metric_parse(NULL, &m), KD_EINVALID);
    CHECK_EQ_STR(kd__vec_metric_name(KD__VEC_COSINE), "cosine");
    CHECK_EQ_STR(kd__vec_metric_name(KD__VEC_DOT), "dot");
    CHECK_EQ_STR(kd__vec_metric_name(KD__VEC_L2), "l2");
    CHECK(kd__vec_metric_name((kd__vec_metric)3) == NULL);
}

static void test_score(void)
{
    float a[3] = {1, 2, 2}, b[3] = {2, 4, 4}, c[3] = {-1, -2, -2}, z[3] = {0, 0, 0}, e[3] = {2, 0, 0};
    CHECK(fabsf(kd__vec_score(KD__VEC_COSINE, a, b, 3) - 1.0f) < 1e-6f);
    CHECK(fabsf(kd__vec_score(KD__VEC_COSINE, a, c, 3) + 1.0f) < 1e-6f);
    CHECK(kd__vec_score(KD__VEC_COSINE, a, z, 3) == 0.0f);
    CHECK(fabsf(kd__vec_score(KD__VEC_COSINE, a, e, 3) - 1.0f / 3.0f) < 1e-6f);
    CHECK(kd__vec_score(KD__VEC_DOT, a, b, 3) == 18.0f);
    CHECK(kd__vec_score(KD__VEC_L2, a, b, 3) == 3.0f); /* the distance, not its square */
    CHECK(kd__vec_score(KD__VEC_L2, a, a, 3) == 0.0f);
}

/* ------------------------------------------------------------------------
 * Run-time choice, in fresh processes
 * ---------------------------------------------------------------------- */

/* Run this executable with --child and KD_SIMD=value (NULL: unset); read
 * "name|note" from its output. */
static int child_choice(const char *value, char *out, size_t outlen)
{
    int fd[2];
    if (pipe(fd))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 1);
        if (value)
            setenv("KD_SIMD", value, 1);
        else
            unsetenv("KD_SIMD");
        execl("/proc/self/exe", "test_distance", "--child", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < outlen && (r = read(fd[0], out + n, outlen - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static float broken_dot(const float *a, const float *b, size_t n)
{
    return kd__vec_kernels_named("portable")->dot(a, b, n) + (n == 37 ? 0.01f : 0.0f);
}

/* The check that keeps kernels which disagree with the reference from
 * being chosen: every kernel this CPU runs passes it; one that is wrong at
 * one length only is caught at that length. */
static void test_kernels_check(void)
{
    for (size_t i = 0; i < 3; i++) {
        const kd__vec_kernels *k = kd__vec_kernels_named(KERNELS[i]);
        if (k)
            CHECK_EQ_INT(kd__vec_kernels_check(k), 0);
    }
    const kd__vec_kernels *p = kd__vec_kernels_named("portable");
    kd__vec_kernels broken = {"broken", broken_dot, p->l2sq};
    CHECK_EQ_INT(kd__vec_kernels_check(&broken), 37);
    kd__vec_kernels swapped = {"swapped", p->l2sq, p->dot};
    CHECK_EQ_INT(kd__vec_kernels_check(&swapped), 1);
}

static void test_dispatch(void)
{
    char out[256];
    const char *best = kd__vec_kernels_named("avx512") ? "avx512" : kd__vec_kernels_named("avx2") ? "avx2" : "portable";

    CHECK(child_choice(NULL, out, sizeof out) == 0);
    char want[128];
    snprintf(want, sizeof want, "%s|", best);
    CHECK_EQ_STR(out, want); /* the best kernel, no note */

    CHECK(child_choice("portable", out, sizeof out) == 0);
    CHECK_EQ_STR(out, "portable|");
    CHECK(child_choice("auto", out, sizeof out) == 0);
    CHECK_EQ_STR(out, want);

    for (size_t i = 0; i < 3; i++) {
        CHECK(child_choice(KERNELS[i], out, sizeof out) == 0);
        if (kd__vec_kernels_named(KERNELS[i])) {
            snprintf(want, sizeof want, "%s|", KERNELS[i]);
            CHECK_EQ_STR(out, want);
        } else { /* refused: the best one runs, and the note says why */
            snprintf(want, sizeof want, "%s|KD_SIMD=%s ignored: this CPU cannot run it; using %s", best, KERNELS[i],
                     best);
            CHECK_EQ_STR(out, want);
        }
    }
    CHECK(child_choice("neon", out, sizeof out) == 0);
    snprintf(want, sizeof want, "%s|KD_SIMD=neon ignored: unknown (portable|avx2|avx512); using %s", best, best);
    CHECK_EQ_STR(out, want);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        const char *note = kd__vec_kernel_note();
        printf("%s|%s", kd__vec_kernel_name(), note ? note : "");
        return 0;
    }
    RUN(test_kernels);
    RUN(test_wrappers);
    RUN(test_check_and_metrics);
    RUN(test_score);
    RUN(test_lengths_and_cosine);
    RUN(test_kernels_check);
    RUN(test_dispatch);
    return HARNESS_DONE();
}
