/*
 * distance.c — the vector distance kernels (dot product, squared L2) in
 * portable C, AVX2+FMA and AVX-512F, with one set chosen at run time.
 *
 * The SIMD versions are compiled with per-function target attributes, so
 * the library itself needs no -mavx2 and still runs on any x86-64 (and
 * builds elsewhere, where only the portable kernels exist). The choice is
 * made once, under pthread_once, from __builtin_cpu_supports (which also
 * checks that the OS saves the wide registers) and the KD_SIMD variable,
 * and only among kernels that agree with a double-precision reference on
 * every length up to 80 (every code path); see vector_int.h. Every kernel keeps several partial sums (4 or 8 per
 * lane group) so the adds pipeline; tails shorter than one register are
 * read with masked loads, never past the end of the arrays.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "korudelta.h"
#include "vector/vector_int.h"

#if defined(__x86_64__) || defined(__i386__)
#define KD__VEC_X86 1
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------------
 * Metric names
 * ---------------------------------------------------------------------- */

int kd__vec_metric_parse(const char *name, kd__vec_metric *out)
{
    if (!name || !out)
        return KD_EINVALID;
    if (strcmp(name, "cosine") == 0)
        *out = KD__VEC_COSINE;
    else if (strcmp(name, "dot") == 0)
        *out = KD__VEC_DOT;
    else if (strcmp(name, "l2") == 0)
        *out = KD__VEC_L2;
    else
        return KD_EINVALID;
    return KD_OK;
}

const char *kd__vec_metric_name(kd__vec_metric m)
{
    switch (m) {
    case KD__VEC_COSINE:
        return "cosine";
    case KD__VEC_DOT:
        return "dot";
    case KD__VEC_L2:
        return "l2";
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Portable kernels: eight partial sums, which compilers keep in registers
 * (and may vectorize with the baseline SIMD of the target).
 * ---------------------------------------------------------------------- */

static float dot_portable(const float *a, const float *b, size_t n)
{
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    for (int j = 0; i < n; i++, j++)
        s[j] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static float l2sq_portable(const float *a, const float *b, size_t n)
{
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float d = a[i + j] - b[i + j];
            s[j] += d * d;
        }
    for (int j = 0; i < n; i++, j++) {
        float d = a[i] - b[i];
        s[j] += d * d;
    }
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static const kd__vec_kernels k_portable = {"portable", dot_portable, l2sq_portable};

#ifdef KD__VEC_X86
/* ------------------------------------------------------------------------
 * AVX2 + FMA: four 8-lane accumulators (32 floats per step), then 8 at a
 * time, then a masked load of the last 1..7.
 * ---------------------------------------------------------------------- */

/* Row r holds r all-ones lanes, then zeros: the mask for a tail of r. */
static const int32_t avx2_tail_masks[8][8] = {
    {0, 0, 0, 0, 0, 0, 0, 0},      {-1, 0, 0, 0, 0, 0, 0, 0},      {-1, -1, 0, 0, 0, 0, 0, 0},
    {-1, -1, -1, 0, 0, 0, 0, 0},   {-1, -1, -1, -1, 0, 0, 0, 0},   {-1, -1, -1, -1, -1, 0, 0, 0},
    {-1, -1, -1, -1, -1, -1, 0, 0}, {-1, -1, -1, -1, -1, -1, -1, 0},
};

__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    lo = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, lo);
    lo = _mm_add_ss(lo, sh);
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < n) {
        __m256i m = _mm256_loadu_si256((const __m256i *)avx2_tail_masks[n - i]);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

__attribute__((target("avx2,fma"))) static float l2sq_avx2(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2);
        s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __m256i m = _mm256_loadu_si256((const __m256i *)avx2_tail_masks[n - i]);
        __m256 d = _mm256_sub_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m));
        s1 = _mm256_fmadd_ps(d, d, s1);
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static const kd__vec_kernels k_avx2 = {"avx2", dot_avx2, l2sq_avx2};

/* ------------------------------------------------------------------------
 * AVX-512F: four 16-lane accumulators (64 floats per step), then 16 at a
 * time, then one masked load (lanes past the end are neither read nor
 * faulted on). Compiled everywhere, run only where the CPU has AVX-512F.
 * ---------------------------------------------------------------------- */

__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(),
           s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

__attribute__((target("avx512f"))) static float l2sq_avx512(const float *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(),
           s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
        __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2);
        s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        s1 = _mm512_fmadd_ps(d, d, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static const kd__vec_kernels k_avx512 = {"avx512", dot_avx512, l2sq_avx512};

static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#endif /* KD__VEC_X86 */

/* ------------------------------------------------------------------------
 * Run-time choice
 * ---------------------------------------------------------------------- */

static pthread_once_t choose_once = PTHREAD_ONCE_INIT;
static const kd__vec_kernels *active = &k_portable;
static char note[160];
static int have_note;

const kd__vec_kernels *kd__vec_kernels_named(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, "portable") == 0)
        return &k_portable;
#ifdef KD__VEC_X86
    if (strcmp(name, "avx2") == 0)
        return cpu_has_avx2() ? &k_avx2 : NULL;
    if (strcmp(name, "avx512") == 0)
        return cpu_has_avx512() ? &k_avx512 : NULL;
#endif
    return NULL;
}

size_t kd__vec_kernels_check(const kd__vec_kernels *k)
{
    enum { LEN = 80 };
    float a[LEN], b[LEN];
    uint32_t r = 0x9e3779b9u;
    for (size_t i = 0; i < LEN; i++) {
        r = r * 1103515245u + 12345u;
        a[i] = (float)((r >> 8) & 0xffff) / 32768.0f - 1.0f;
        r = r * 1103515245u + 12345u;
        b[i] = (float)((r >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    for (size_t n = 1; n <= LEN; n++) {
        double dot = 0, l2 = 0, scale = 0;
        for (size_t i = 0; i < n; i++) {
            dot += (double)a[i] * b[i];
            l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
            scale += fabs((double)a[i] * b[i]);
        }
        double tol = 1e-5 * (1 + scale + l2), d = k->dot(a, b, n), l = k->l2sq(a, b, n);
        if (!(fabs(d - dot) <= tol) || !(fabs(l - l2) <= tol))
            return n;
    }
    return 0;
}

static void choose(void)
{
    /* The best kernels the CPU runs, unless they disagree with the
     * reference (kernels that cannot be run where they are built are
     * checked here, where they run, before any result is used). */
    const kd__vec_kernels *best = &k_portable;
#ifdef KD__VEC_X86
    const kd__vec_kernels *order[] = {cpu_has_avx512() ? &k_avx512 : NULL, cpu_has_avx2() ? &k_avx2 : NULL};
    for (size_t i = 0; i < 2; i++) {
        size_t bad = order[i] ? kd__vec_kernels_check(order[i]) : 0;
        if (order[i] && !bad) {
            best = order[i];
            break;
        }
        if (bad && !have_note) {
            snprintf(note, sizeof note, "the %s kernels disagree with the reference at length %zu; not used",
                     order[i]->name, bad);
            have_note = 1;
        }
    }
#endif
    const char *want = getenv("KD_SIMD");
    if (want && *want && strcmp(want, "auto") != 0) {
        const kd__vec_kernels *k = kd__vec_kernels_named(want);
        if (k && k != &k_portable && kd__vec_kernels_check(k))
            k = NULL; /* the note above says why */
        if (k) {
            best = k;
        } else if (!have_note) {
            int known = strcmp(want, "portable") == 0 || strcmp(want, "avx2") == 0 || strcmp(want, "avx512") == 0;
            snprintf(note, sizeof note, "KD_SIMD=%.32s ignored: %s; using %s", want,
                     known ? "this CPU cannot run it" : "unknown (portable|avx2|avx512)", best->name);
            have_note = 1;
        }
    }
    active = best;
}

const kd__vec_kernels *kd__vec_kernels_active(void)
{
    pthread_once(&choose_once, choose);
    return active;
}

const char *kd__vec_kernel_name(void)
{
    return kd__vec_kernels_active()->name;
}

const char *kd__vec_kernel_note(void)
{
    kd__vec_kernels_active();
    return have_note ? note : NULL;
}

float kd__vec_dot(const float *a, const float *b, size_t n)
{
    return kd__vec_kernels_active()->dot(a, b, n);
}

float kd__vec_l2sq(const float *a, const float *b, size_t n)
{
    return kd__vec_kernels_active()->l2sq(a, b, n);
}

/* ------------------------------------------------------------------------
 * Lengths, directions, cosines: in double where float32 would overflow or
 * underflow, and in a fixed order, so the same on every CPU and kernel
 * ---------------------------------------------------------------------- */

/* Sum of squares in double: no float32 vector overflows it (4096 *
 * FLT_MAX^2 < DBL_MAX) or loses its smallest components to underflow.
 * Four partial sums, always added in this order. */
static double sum_sq(const float *a, size_t n)
{
    double s[4] = {0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++)
            s[j] += (double)a[i + j] * a[i + j];
    for (; i < n; i++)
        s[0] += (double)a[i] * a[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

float kd__vec_norm(const float *a, size_t n)
{
    return (float)sqrt(sum_sq(a, n));
}

float kd__vec_normalize(const float *v, size_t n, float *out)
{
    double s = sum_sq(v, n);
    if (!(s > 0)) {
        memset(out, 0, n * sizeof *out);
        return 0.0f;
    }
    double inv = 1.0 / sqrt(s);
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(v[i] * inv);
    return (float)sqrt(s);
}

float kd__vec_cosine(float ab, float aa, float bb)
{
    if (!(aa > 0) || !(bb > 0))
        return 0.0f;
    /* aa * bb is exact in double, and so is its square root when aa == bb:
     * ab == aa == bb gives exactly 1 */
    double c = ab / sqrt((double)aa * bb);
    return c > 1 ? 1.0f : c < -1 ? -1.0f : (float)c;
}

int kd__vec_check(const float *v, size_t n)
{
    if (!v)
        return KD_EINVALID;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return KD_EINVALID;
    return KD_OK;
}

float kd__vec_score(kd__vec_metric m, const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0, l2 = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
        l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    }
    switch (m) {
    case KD__VEC_DOT:
        return (float)ab;
    case KD__VEC_L2:
        return (float)sqrt(l2);
    case KD__VEC_COSINE: {
        if (aa == 0 || bb == 0)
            return 0.0f;
        double c = ab / (sqrt(aa) * sqrt(bb));
        return c > 1 ? 1.0f : c < -1 ? -1.0f : (float)c;
    }
    }
    return 0.0f;
}
