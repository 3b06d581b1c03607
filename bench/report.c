/*
 * report.c — how kd_bench shows its results: a table on stdout (one row per
 * workload: both figures, their ratio, latency percentiles, the target and
 * whether it is met, then the notes) and the JSON file given by --out, whose
 * shape docs/BENCH.md documents. Each suite (core, query) gets its own table
 * and its own file, in the same shape:
 *
 *   {"machine": {...}, "<workload>": {"korudelta": x, "sqlite": y,
 *    "ratio": x/y, "unit": "...", "median_ns": ..., ...}, ...}
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* ------------------------------------------------------------------------
 * Number formatting for the table
 * ---------------------------------------------------------------------- */

static void fmt_rate(char *buf, size_t len, const bench_side *s, const char *unit)
{
    if (s->text[0]) {
        snprintf(buf, len, "%s", s->text);
        return;
    }
    if (!s->ran) {
        snprintf(buf, len, "-");
        return;
    }
    double v = s->rate;
    if (strcmp(unit, "% of floor") == 0)
        snprintf(buf, len, "%.1f%%", v);
    else if (strcmp(unit, "B/version") == 0)
        snprintf(buf, len, "%.1f B", v);
    else if (strcmp(unit, "MB/s") == 0)
        snprintf(buf, len, "%.0f MB/s", v);
    else if (v >= 1e6)
        snprintf(buf, len, "%.2fM/s", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, len, "%.1fk/s", v / 1e3);
    else
        snprintf(buf, len, "%.0f/s", v);
}

static void fmt_ns(char *buf, size_t len, double ns)
{
    if (ns < 0)
        snprintf(buf, len, "-");
    else if (ns < 1e3)
        snprintf(buf, len, "%.0fns", ns);
    else if (ns < 1e6)
        snprintf(buf, len, "%.1fus", ns / 1e3);
    else
        snprintf(buf, len, "%.1fms", ns / 1e6);
}

static void fmt_lat(char *buf, size_t len, const bench_side *s)
{
    char a[32], b[32];
    if (s->median_ns < 0) {
        snprintf(buf, len, "-");
        return;
    }
    fmt_ns(a, sizeof a, s->median_ns);
    fmt_ns(b, sizeof b, s->p99_ns);
    snprintf(buf, len, "%s / %s", a, b);
}

/* 1 when some result belongs to `suite`. */
static int suite_has_results(int suite)
{
    for (size_t i = 0; i < bench_result_count(); i++)
        if (bench_result_at(i)->suite == suite)
            return 1;
    return 0;
}

void bench_print_table(int suite)
{
    size_t n = bench_result_count();
    if (!suite_has_results(suite))
        return;
    if (suite == BENCH_SUITE_QUERY)
        printf("\nQueries (documents scanned per second; query_index_*: lookups per second; "
               "query_view_write_cost: puts per second)\n");
    printf("\n%-26s %14s %16s %8s  %-21s %-21s %-26s %s\n", "workload", "korudelta", "sqlite", "ratio",
           "kd p50 / p99", "sqlite p50 / p99", "target", "met");
    for (int i = 0; i < 150; i++)
        putchar('-');
    putchar('\n');
    for (size_t i = 0; i < n; i++) {
        const bench_result *r = bench_result_at(i);
        if (r->suite != suite)
            continue;
        char kd[40], sq[40], ratio[16], kl[80], sl[80];
        fmt_rate(kd, sizeof kd, &r->kd, r->unit);
        fmt_rate(sq, sizeof sq, &r->sq, r->unit);
        double x = bench_ratio(r);
        if (x >= 0)
            snprintf(ratio, sizeof ratio, "%.2fx", x);
        else
            snprintf(ratio, sizeof ratio, "-");
        fmt_lat(kl, sizeof kl, &r->kd);
        fmt_lat(sl, sizeof sl, &r->sq);
        const char *met = !r->target ? "" : r->met == 1 ? "yes" : r->met == 0 ? "NO" : "n/a";
        printf("%-26s %14s %16s %8s  %-21s %-21s %-26s %s\n", r->name, kd, sq, ratio, kl, sl,
               r->target ? r->target : "-", met);
    }
    printf("\nNotes:\n");
    for (size_t i = 0; i < n; i++) {
        const bench_result *r = bench_result_at(i);
        if (r->suite == suite && r->note[0])
            printf("  %-26s %s\n", r->name, r->note);
    }
    printf("  Latencies are per operation, timer overhead (%.0f ns) subtracted. Ratio = korudelta / sqlite.\n",
           bench_timer_overhead_ns());
    printf("  Load average (other processes): %.2f at the start, %.2f at the end, on %ld CPUs.\n", g_cfg.load_start,
           bench_loadavg(), sysconf(_SC_NPROCESSORS_ONLN));
}

/* ------------------------------------------------------------------------
 * JSON
 * ---------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    if (fabs(v) >= 1e15 || (v != 0 && fabs(v) < 1e-3)) {
        fprintf(f, "%.6g", v);
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.3f", v);
    char *e = buf + strlen(buf) - 1;
    while (*e == '0')
        *e-- = '\0';
    if (*e == '.')
        *e = '\0';
    fputs(buf, f);
}

static void json_key(FILE *f, const char *k)
{
    fputs(",\n    ", f);
    json_str(f, k);
    fputs(": ", f);
}

static void json_side(FILE *f, const char *prefix, const bench_side *s)
{
    char k[64];
    if (!s->ran)
        return;
    snprintf(k, sizeof k, "%sops", prefix);
    json_key(f, k);
    json_num(f, (double)s->ops);
    snprintf(k, sizeof k, "%sseconds", prefix);
    json_key(f, k);
    json_num(f, s->seconds);
    if (s->median_ns >= 0) {
        snprintf(k, sizeof k, "%smedian_ns", prefix);
        json_key(f, k);
        json_num(f, s->median_ns);
        snprintf(k, sizeof k, "%sp99_ns", prefix);
        json_key(f, k);
        json_num(f, s->p99_ns);
        snprintf(k, sizeof k, "%slatency_samples", prefix);
        json_key(f, k);
        json_num(f, (double)s->samples);
    }
}

int bench_write_json(const char *path, int suite)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    char date[64], cpu[256], kernel[256], fs[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    bench_machine_info(cpu, sizeof cpu, kernel, sizeof kernel, fs, sizeof fs);

    fputs("{\n  \"machine\": {\n    \"nproc\": ", f);
    fprintf(f, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
    json_key(f, "date");
    json_str(f, date);
    json_key(f, "cpu");
    json_str(f, cpu);
    json_key(f, "kernel");
    json_str(f, kernel);
    json_key(f, "filesystem");
    json_str(f, fs);
    json_key(f, "bench_dir");
    json_str(f, g_cfg.root ? g_cfg.root : "");
    json_key(f, "korudelta_version");
    json_str(f, bench_kd_version());
    json_key(f, "sqlite_version");
    json_str(f, sqlite3_libversion());
    json_key(f, "quick");
    fputs(g_cfg.quick ? "true" : "false", f);
    json_key(f, "seconds_per_side");
    json_num(f, g_cfg.seconds);
    json_key(f, "timer_overhead_ns");
    json_num(f, bench_timer_overhead_ns());
    json_key(f, "loadavg_start");
    json_num(f, g_cfg.load_start);
    json_key(f, "loadavg_end");
    json_num(f, bench_loadavg());
    fputs("\n  }", f);

    for (size_t i = 0; i < bench_result_count(); i++) {
        const bench_result *r = bench_result_at(i);
        if (r->suite != suite)
            continue;
        fputs(",\n  ", f);
        json_str(f, r->name);
        fputs(": {\n    \"korudelta\": ", f);
        if (r->kd.ran && !r->kd.text[0])
            json_num(f, r->kd.rate);
        else
            fputs("null", f);
        json_key(f, "sqlite");
        if (r->sq.ran && !r->sq.text[0])
            json_num(f, r->sq.rate);
        else
            fputs("null", f);
        json_key(f, "ratio");
        double x = bench_ratio(r);
        if (x >= 0)
            json_num(f, x);
        else
            fputs("null", f);
        json_key(f, "unit");
        json_str(f, r->unit);
        json_side(f, "", &r->kd);
        json_side(f, "sqlite_", &r->sq);
        for (int e = 0; e < r->nextra; e++) {
            json_key(f, r->extra[e].name);
            json_num(f, r->extra[e].value);
        }
        json_key(f, "target");
        if (r->target)
            json_str(f, r->target);
        else
            fputs("null", f);
        json_key(f, "met");
        fputs(!r->target || r->met < 0 ? "null" : r->met ? "true" : "false", f);
        if (r->note[0]) {
            json_key(f, "note");
            json_str(f, r->note);
        }
        fputs("\n  }", f);
    }
    fputs("\n}\n", f);
    return fclose(f) == 0 ? 0 : -1;
}
