/*
 * util.c — the helpers every workload of kd_bench shares: clocks, the
 * timed loop and its latency samples, deterministic keys and values,
 * temporary files, machine description and the list of results.
 *
 * Latency: every sampled operation is bracketed by two CLOCK_MONOTONIC reads
 * (vDSO, no system call). The median cost of such an empty bracket is
 * measured once and subtracted from each sample, so a 100 ns get is not
 * reported as 130 ns; docs/BENCH.md says so, and the JSON carries the
 * overhead as "timer_overhead_ns".
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

bench_config g_cfg;

/* ------------------------------------------------------------------------
 * Errors and memory
 * ---------------------------------------------------------------------- */

void bench_die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("kd_bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void *bench_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        bench_die("out of memory (%zu bytes)", n);
    return p;
}

/* ------------------------------------------------------------------------
 * Clocks
 * ---------------------------------------------------------------------- */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t bench_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double bench_timer_overhead_ns(void)
{
    static double cached = -1;
    enum { N = 20001 };
    if (cached >= 0)
        return cached;
    uint64_t *d = bench_xmalloc(N * sizeof *d);
    for (int i = 0; i < N; i++) {
        uint64_t t0 = bench_now_ns();
        uint64_t t1 = bench_now_ns();
        d[i] = t1 - t0;
    }
    qsort(d, N, sizeof *d, cmp_u64);
    cached = (double)d[N / 2];
    free(d);
    return cached;
}

/* ------------------------------------------------------------------------
 * Latency samples
 * ---------------------------------------------------------------------- */

void bench_samples_init(bench_samples *s, size_t cap)
{
    s->ns = cap ? bench_xmalloc(cap * sizeof *s->ns) : NULL;
    s->n = 0;
    s->cap = cap;
}

void bench_samples_add(bench_samples *s, uint64_t ns)
{
    if (s->n < s->cap)
        s->ns[s->n++] = ns;
}

void bench_samples_merge(bench_samples *dst, const bench_samples *src)
{
    for (size_t i = 0; i < src->n; i++)
        bench_samples_add(dst, src->ns[i]);
}

static double percentile(const uint64_t *sorted, size_t n, double q)
{
    size_t idx = (size_t)(q * (double)(n - 1) + 0.5);
    if (idx >= n)
        idx = n - 1;
    return (double)sorted[idx];
}

void bench_samples_finish(bench_samples *s, bench_side *side)
{
    side->median_ns = side->p99_ns = -1;
    side->samples = s->n;
    if (s->n == 0)
        return;
    double ov = bench_timer_overhead_ns();
    qsort(s->ns, s->n, sizeof *s->ns, cmp_u64);
    double med = percentile(s->ns, s->n, 0.50) - ov;
    double p99 = percentile(s->ns, s->n, 0.99) - ov;
    side->median_ns = med > 0 ? med : 0;
    side->p99_ns = p99 > 0 ? p99 : 0;
}

void bench_samples_free(bench_samples *s)
{
    free(s->ns);
    s->ns = NULL;
    s->n = s->cap = 0;
}

/* ------------------------------------------------------------------------
 * The timed loop
 * ---------------------------------------------------------------------- */

uint64_t bench_run_loop(bench_side *side, bench_op_fn op, void *ctx, uint64_t max_ops, uint64_t sample_ops,
                        int time_each)
{
    bench_samples s;
    uint64_t i = 0;
    uint64_t cap_ns = (uint64_t)(g_cfg.seconds * 1e9);

    bench_samples_init(&s, time_each ? (max_ops < 2000000 ? max_ops : 2000000) : sample_ops);

    /* Phase 1: throughput. The clock is read every 64 operations only,
     * unless every operation is timed anyway. */
    uint64_t start = bench_now_ns(), now = start;
    if (time_each) {
        while (i < max_ops && now - start < cap_ns) {
            uint64_t t0 = bench_now_ns();
            op(ctx, i++);
            now = bench_now_ns();
            bench_samples_add(&s, now - t0);
        }
    } else {
        while (i < max_ops) {
            op(ctx, i++);
            if ((i & 63) == 0 && (now = bench_now_ns()) - start >= cap_ns)
                break;
        }
        now = bench_now_ns();
    }
    side->ran = 1;
    side->ops = i;
    side->seconds = (double)(now - start) / 1e9;
    side->rate = side->seconds > 0 ? (double)i / side->seconds : 0;

    /* Phase 2: one by one, for the latency distribution. */
    if (!time_each) {
        for (uint64_t k = 0; k < sample_ops; k++) {
            uint64_t t0 = bench_now_ns();
            op(ctx, i++);
            bench_samples_add(&s, bench_now_ns() - t0);
        }
    }
    bench_samples_finish(&s, side);
    bench_samples_free(&s);
    return i;
}

/* ------------------------------------------------------------------------
 * Keys, values, ids
 * ---------------------------------------------------------------------- */

/* Decimal digits of v into out (no NUL); returns the count. Formats by hand:
 * snprintf would cost a noticeable share of a 2 us put, on both sides. */
static size_t put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t k = 0; k < n; k++)
        out[k] = tmp[n - 1 - k];
    return n;
}

#define PAD_PERIOD 26

size_t bench_make_value(char *buf, size_t size, uint64_t i)
{
    /* {"n":<i>,"pad":"<pad>"}: the pad is a slice of a fixed alphabet
     * pattern; the value is distinct through n. */
    static char pattern[PAD_PERIOD + BENCH_MAX_VALUE];
    if (!pattern[0])
        for (size_t k = 0; k < sizeof pattern; k++)
            pattern[k] = (char)('a' + k % PAD_PERIOD);
    if (size > BENCH_MAX_VALUE || size < 40)
        bench_die("value size %zu out of range", size);
    size_t head = 0;
    memcpy(buf, "{\"n\":", 5);
    head = 5;
    head += put_u64(buf + head, i);
    memcpy(buf + head, ",\"pad\":\"", 8);
    head += 8;
    size_t padlen = size - head - 2;
    memcpy(buf + head, pattern + i % PAD_PERIOD, padlen);
    buf[size - 2] = '"';
    buf[size - 1] = '}';
    return size;
}

void bench_make_key(char *buf, const char *prefix, uint64_t i, uint64_t nkeys)
{
    /* Scatter consecutive operations over the key space (multiplicative
     * hashing), so neither side gets a purely sequential index insert. */
    uint64_t k = nkeys ? (i * 0x9E3779B97F4A7C15ull >> 17) % nkeys : i;
    size_t n = strlen(prefix);
    memcpy(buf, prefix, n);
    buf[n++] = 'k';
    char digits[20];
    size_t d = put_u64(digits, k);
    for (size_t z = d; z < 7; z++)
        buf[n++] = '0';
    memcpy(buf + n, digits, d);
    buf[n + d] = '\0';
}

void bench_fake_id(char out[KD_ID_HEX], uint64_t i)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
    for (int k = 0; k < 64; k++) {
        out[k] = hex[x & 15];
        x = (x >> 4) | (x << 60);
        if ((k & 15) == 15)
            x ^= 0xD1B54A32D192ED03ull;
    }
    out[64] = '\0';
}

uint64_t bench_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

int64_t *bench_query_times(const int64_t *ts, uint64_t n, uint64_t count)
{
    int64_t *q = bench_xmalloc(count * sizeof *q);
    uint64_t seed = 0x5EEDBA5Eull;
    uint64_t span = (uint64_t)(ts[n - 1] - ts[0]);
    for (uint64_t i = 0; i < count; i++)
        q[i] = ts[0] + (int64_t)(span ? bench_rand(&seed) % (span + 1) : 0);
    return q;
}

/* ------------------------------------------------------------------------
 * Files
 * ---------------------------------------------------------------------- */

void bench_path(char *buf, size_t buflen, const char *name)
{
    int n = snprintf(buf, buflen, "%s/%s", g_cfg.root, name);
    if (n < 0 || (size_t)n >= buflen)
        bench_die("path too long: %s/%s", g_cfg.root, name);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "kd_bench: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

void bench_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode))
        nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    else
        remove(path);
}

static uint64_t du_total;

static int du_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F && S_ISREG(st->st_mode))
        du_total += (uint64_t)st->st_size;
    return 0;
}

uint64_t bench_du(const char *path)
{
    du_total = 0;
    nftw(path, du_cb, 16, FTW_PHYS);
    return du_total;
}

void bench_settle(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        syncfs(fd);
        close(fd);
    }
    if (g_cfg.cold) {
        int dc = open("/proc/sys/vm/drop_caches", O_WRONLY);
        if (dc < 0 || write(dc, "3\n", 2) != 2)
            fprintf(stderr, "kd_bench: KD_BENCH_COLD: cannot drop the page cache (%s); measuring warm\n",
                    strerror(errno));
        if (dc >= 0)
            close(dc);
    }
}

char *bench_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    char *buf = bench_xmalloc((size_t)size + 1);
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[size] = '\0';
    *len = (size_t)size;
    return buf;
}

/* ------------------------------------------------------------------------
 * Machine
 * ---------------------------------------------------------------------- */

void bench_machine_info(char *cpu, size_t cpulen, char *kernel, size_t kernlen, char *fs, size_t fslen)
{
    snprintf(cpu, cpulen, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *p = strchr(line, ':');
                if (p) {
                    p++;
                    while (*p == ' ' || *p == '\t')
                        p++;
                    p[strcspn(p, "\n")] = '\0';
                    snprintf(cpu, cpulen, "%s", p);
                }
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(kernel, kernlen, "%s %s %s", u.sysname, u.release, u.machine);
    else
        snprintf(kernel, kernlen, "unknown");

    struct statfs sf;
    snprintf(fs, fslen, "unknown");
    if (g_cfg.root && statfs(g_cfg.root, &sf) == 0) {
        const char *name = NULL;
        switch ((unsigned long)sf.f_type) {
        case 0xEF53: name = "ext2/3/4"; break;
        case 0x58465342: name = "xfs"; break;
        case 0x9123683E: name = "btrfs"; break;
        case 0x01021994: name = "tmpfs"; break;
        case 0x794C7630: name = "overlayfs"; break;
        case 0x2FC12FC1: name = "zfs"; break;
        case 0xF2F52010: name = "f2fs"; break;
        default: break;
        }
        if (name)
            snprintf(fs, fslen, "%s", name);
        else
            snprintf(fs, fslen, "0x%lx", (unsigned long)sf.f_type);
    }
}

double bench_loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

const char *bench_kd_version(void)
{
    /* From the number, not kd_version(): the library actually linked. */
    static char buf[32];
    int n = kd_libversion_number();
    snprintf(buf, sizeof buf, "%d.%d.%d", n / 10000, n / 100 % 100, n % 100);
    return buf;
}

/* ------------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------- */

static bench_result *results;
static size_t nresults, capresults;

bench_result *bench_result_new(const char *name, const char *unit)
{
    if (nresults == capresults) {
        size_t cap = capresults ? capresults * 2 : 32;
        bench_result *r = realloc(results, cap * sizeof *r);
        if (!r)
            bench_die("out of memory");
        results = r;
        capresults = cap;
    }
    bench_result *r = &results[nresults++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->unit = unit;
    r->kd.median_ns = r->kd.p99_ns = -1;
    r->sq.median_ns = r->sq.p99_ns = -1;
    r->met = -1;
    return r;
}

bench_result *bench_result_find(const char *name)
{
    for (size_t i = 0; i < nresults; i++)
        if (strcmp(results[i].name, name) == 0)
            return &results[i];
    return NULL;
}

size_t bench_result_count(void)
{
    return nresults;
}

bench_result *bench_result_at(size_t i)
{
    return &results[i];
}

void bench_result_extra(bench_result *r, const char *name, double value)
{
    if (r->nextra >= BENCH_MAX_EXTRA)
        bench_die("too many extra figures for %s", r->name);
    snprintf(r->extra[r->nextra].name, sizeof r->extra[r->nextra].name, "%s", name);
    r->extra[r->nextra].value = value;
    r->nextra++;
}

double bench_extra_get(const bench_result *r, const char *name)
{
    for (int i = 0; i < r->nextra; i++)
        if (strcmp(r->extra[i].name, name) == 0)
            return r->extra[i].value;
    return 0;
}

static double rank_kd(const bench_result *r)
{
    if (r->kd.ran)
        return r->kd.rate;
    return r->nextra ? r->extra[0].value : 0;
}

/* Index (into idx[0..n)) of the run whose rank is the median. */
static size_t median_run(const size_t *idx, size_t n, int sqlite)
{
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        double vi = sqlite ? results[idx[i]].sq.rate : rank_kd(&results[idx[i]]);
        size_t below = 0, equal_before = 0;
        for (size_t j = 0; j < n; j++) {
            double vj = sqlite ? results[idx[j]].sq.rate : rank_kd(&results[idx[j]]);
            if (vj < vi)
                below++;
            else if (vj == vi && j < i)
                equal_before++;
        }
        if (below + equal_before == (n - 1) / 2) {
            best = i;
            break;
        }
    }
    return idx[best];
}

void bench_results_collapse(size_t first)
{
    size_t out = first;
    size_t *idx = bench_xmalloc((nresults - first + 1) * sizeof *idx);
    char *done = calloc(nresults + 1, 1);
    bench_result *merged = bench_xmalloc((nresults - first + 1) * sizeof *merged);
    size_t nmerged = 0;
    if (!done)
        bench_die("out of memory");
    for (size_t i = first; i < nresults; i++) {
        if (done[i])
            continue;
        size_t n = 0;
        for (size_t j = i; j < nresults; j++)
            if (!done[j] && strcmp(results[j].name, results[i].name) == 0) {
                idx[n++] = j;
                done[j] = 1;
            }
        bench_result m = results[median_run(idx, n, 0)];
        const bench_result *sq = &results[median_run(idx, n, 1)];
        m.sq = sq->sq;
        /* SQLite's own extra figures come from the run its column comes from. */
        for (int e = 0; e < m.nextra; e++)
            if (strncmp(m.extra[e].name, "sqlite_", 7) == 0)
                m.extra[e].value = bench_extra_get(sq, m.extra[e].name);
        if (n > 1 && m.nextra < BENCH_MAX_EXTRA) {
            snprintf(m.extra[m.nextra].name, sizeof m.extra[m.nextra].name, "runs");
            m.extra[m.nextra++].value = (double)n;
        }
        merged[nmerged++] = m;
    }
    for (size_t k = 0; k < nmerged; k++)
        results[out++] = merged[k];
    nresults = out;
    free(idx);
    free(done);
    free(merged);
}

double bench_ratio(const bench_result *r)
{
    if (r->no_ratio || !r->kd.ran || !r->sq.ran || r->sq.rate <= 0)
        return -1;
    return r->kd.rate / r->sq.rate;
}
