/*
 * main.c — kd_bench: KoruDelta against SQLite, measured in the same run, on
 * the same machine, in the same directory. `make bench` runs
 *
 *   kd_bench --out bench/out/core.json
 *
 * The workloads come in two suites, each with its own table and JSON file:
 * core (workloads.c) goes to --out, query (workloads_query.c) to
 * --query-out, by default query.json beside the --out file.
 *
 * Options: --out FILE (write the JSON results), --query-out FILE (where the
 * query suite's results go), --only NAME[,NAME…] (run
 * the workloads named, or starting with NAME), --side kd|sqlite (one side
 * only, for profiling), --repeat N (N rounds, each side's median run is
 * kept: for noisy machines), --quick (tiny counts: checks
 * that the benchmark works, the figures mean nothing), --list.
 * Environment: KD_BENCH_DIR (where the temporary databases go, default
 * /tmp), KD_BENCH_OPEN_MB (log size for open_recovery, default 1024),
 * KD_BENCH_SECONDS (time cap per side of each timed phase, default 3),
 * KD_BENCH_QUERY_DOCS (documents of the query suite, default 1,000,000),
 * KD_BENCH_COLD=1 (drop the page cache before timing opens; needs root),
 * KORU_SHARED_DATA (the shared test data holding json-corpus/).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

static char root_buf[4096];

/* The suites, in the order they run. */
typedef struct bench_suite {
    int id; /* BENCH_SUITE_* */
    const bench_workload *list;
    size_t n;
} bench_suite;

static bench_suite suites[2];
static const size_t nsuites = sizeof suites / sizeof suites[0];

static void init_suites(void)
{
    suites[0] = (bench_suite){BENCH_SUITE_CORE, bench_workloads, bench_nworkloads};
    suites[1] = (bench_suite){BENCH_SUITE_QUERY, bench_query_workloads, bench_nquery_workloads};
}

static void cleanup(void)
{
    if (root_buf[0]) {
        bench_rm_rf(root_buf);
        root_buf[0] = '\0';
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kd_bench [--out FILE] [--query-out FILE] [--only NAME[,NAME...]] [--side kd|sqlite] [--repeat N]\n"
            "                [--quick] [--list]\n"
            "  --out FILE    write results as JSON to FILE (the query suite's: query.json beside it)\n"
            "  --query-out FILE  write the query suite's results as JSON to FILE\n"
            "  --only NAMES  run only these workloads (a name, or a prefix such as 'put')\n"
            "  --side SIDE   run only one side: kd (korudelta) or sqlite (for profiling)\n"
            "  --repeat N    run every workload N times (in rounds), keep each side's median run\n"
            "  --quick       tiny counts: checks that the benchmark works\n"
            "  --list        list the workloads\n"
            "environment: KD_BENCH_DIR, KD_BENCH_OPEN_MB, KD_BENCH_CKPT_VERSIONS, KD_BENCH_SECONDS, KD_BENCH_COLD,\n"
            "             KD_BENCH_IO_DOCS, KD_BENCH_QUERY_DOCS, KD_BENCH_BACKUP_DOCS, KORU_SHARED_DATA\n"
            "             (see docs/BENCH.md)\n");
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The shared data directory: $KORU_SHARED_DATA, else ../shared/data from
 * the current directory (make runs from the repository), else beside the
 * source tree this file was compiled from. */
static const char *find_data_dir(void)
{
    static char buf[4096];
    const char *env = getenv("KORU_SHARED_DATA");
    if (env && *env)
        return is_dir(env) ? env : NULL;
    if (is_dir("../shared/data/json-corpus"))
        return "../shared/data";
    snprintf(buf, sizeof buf, "%s", __FILE__);
    char *slash = strrchr(buf, '/');
    if (slash) {
        *slash = '\0'; /* …/bench */
        size_t used = strlen(buf);
        snprintf(buf + used, sizeof buf - used, "/../../shared/data");
        if (is_dir(buf))
            return buf;
    }
    return NULL;
}

/* 1 if workload `name` is selected by the comma-separated `only` list. */
static int selected(const char *only, const char *name)
{
    if (!only)
        return 1;
    const char *p = only;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n > 0 && strncmp(name, p, n) == 0)
            return 1;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

/* Exit with an error when an --only item selects nothing. */
static void check_only(const char *only)
{
    const char *p = only;
    while (*p) {
        size_t n = strcspn(p, ",");
        int any = 0;
        for (size_t s = 0; s < nsuites; s++)
            for (size_t i = 0; i < suites[s].n; i++)
                if (n > 0 && strncmp(suites[s].list[i].name, p, n) == 0)
                    any = 1;
        if (!any) {
            fprintf(stderr, "kd_bench: no workload named '%.*s'; --list shows them\n", (int)n, p);
            exit(2);
        }
        p += n;
        if (*p == ',')
            p++;
    }
}

/* 1 when `only` selects some workload of suite s. */
static int suite_selected(const bench_suite *s, const char *only)
{
    for (size_t i = 0; i < s->n; i++)
        if (selected(only, s->list[i].name))
            return 1;
    return 0;
}

/* The query suite's file when only --out is given: query.json beside it. */
static const char *default_query_out(const char *out)
{
    static char buf[4096];
    const char *slash = strrchr(out, '/');
    if (!slash)
        return "query.json";
    snprintf(buf, sizeof buf, "%.*s/query.json", (int)(slash - out), out);
    return buf;
}

static int write_suite(const char *path, int suite)
{
    if (bench_write_json(path, suite) != 0) {
        fprintf(stderr, "kd_bench: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    printf("\nResults written to %s\n", path);
    return 0;
}

/* One run of one workload; "[round/rounds]" in its progress lines when it
 * runs more than once. */
static void run_workload(const bench_suite *suite, const bench_workload *w, int round, int rounds)
{
    if (rounds > 1)
        fprintf(stderr, "kd_bench: [%d/%d] %-18s %s ...\n", round, rounds, w->name, w->what);
    else
        fprintf(stderr, "kd_bench: %-18s %s ...\n", w->name, w->what);
    uint64_t t0 = bench_now_ns();
    size_t first = bench_result_count();
    w->run();
    for (size_t k = first; k < bench_result_count(); k++)
        bench_result_at(k)->suite = suite->id;
    fprintf(stderr, "kd_bench: %-18s done in %.1f s\n", w->name, (double)(bench_now_ns() - t0) / 1e9);
}

int main(int argc, char **argv)
{
    const char *out = NULL, *query_out = NULL, *only = NULL;
    int repeat = 1;

    init_suites();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(argv[i], "--query-out") == 0 && i + 1 < argc) {
            query_out = argv[++i];
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--side") == 0 && i + 1 < argc) {
            i++;
            if (strcmp(argv[i], "korudelta") == 0 || strcmp(argv[i], "kd") == 0)
                g_cfg.sides = BENCH_SIDE_KD;
            else if (strcmp(argv[i], "sqlite") == 0)
                g_cfg.sides = BENCH_SIDE_SQLITE;
            else {
                usage(stderr);
                return 2;
            }
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            repeat = atoi(argv[++i]);
            if (repeat < 1 || repeat > 99) {
                usage(stderr);
                return 2;
            }
        } else if (strcmp(argv[i], "--quick") == 0) {
            g_cfg.quick = 1;
        } else if (strcmp(argv[i], "--list") == 0) {
            for (size_t s = 0; s < nsuites; s++)
                for (size_t k = 0; k < suites[s].n; k++)
                    printf("%-20s %s\n", suites[s].list[k].name, suites[s].list[k].what);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (only)
        check_only(only);
    if (!g_cfg.sides)
        g_cfg.sides = BENCH_SIDE_KD | BENCH_SIDE_SQLITE;

    g_cfg.seconds = g_cfg.quick ? 0.2 : 3.0;
    const char *env = getenv("KD_BENCH_SECONDS");
    if (env && atof(env) > 0)
        g_cfg.seconds = atof(env);
    g_cfg.open_mb = g_cfg.quick ? 16 : 1024;
    env = getenv("KD_BENCH_OPEN_MB");
    if (env && atol(env) > 0)
        g_cfg.open_mb = (size_t)atol(env);
    env = getenv("KD_BENCH_COLD");
    g_cfg.cold = env && strcmp(env, "1") == 0;
    g_cfg.data_dir = find_data_dir();

    const char *base = getenv("KD_BENCH_DIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(root_buf, sizeof root_buf, "%s/kd_bench.XXXXXX", base);
    if (!mkdtemp(root_buf)) {
        fprintf(stderr, "kd_bench: cannot create a directory in %s: %s\n", base, strerror(errno));
        return 1;
    }
    g_cfg.root = root_buf;
    atexit(cleanup);

    g_cfg.load_start = bench_loadavg();
    /* Warm the timer-overhead measurement before any workload. */
    bench_timer_overhead_ns();
    fprintf(stderr, "kd_bench: korudelta %s, databases in %s%s\n", bench_kd_version(), root_buf,
            g_cfg.quick ? " (quick: figures are not meaningful)" : "");

    /* With --repeat, whole rounds are repeated (so that slow drifts of the
     * machine hit every workload alike) and each side keeps its median run.
     * Within a round, a group of workloads with rounds > 1 takes turns that
     * many times (not under --quick or --repeat). */
    int collapse = repeat > 1;
    for (int round = 1; round <= repeat; round++) {
        for (size_t s = 0; s < nsuites; s++) {
            for (size_t i = 0; i < suites[s].n;) {
                size_t end = i + 1;
                int turns = 1;
                if (suites[s].list[i].rounds > 1 && repeat == 1 && !g_cfg.quick) {
                    while (end < suites[s].n && suites[s].list[end].rounds == suites[s].list[i].rounds)
                        end++;
                    turns = suites[s].list[i].rounds;
                }
                for (int turn = 1; turn <= turns; turn++)
                    for (size_t j = i; j < end; j++)
                        if (selected(only, suites[s].list[j].name)) {
                            run_workload(&suites[s], &suites[s].list[j], repeat > 1 ? round : turn,
                                         repeat > 1 ? repeat : turns);
                            collapse |= turns > 1;
                        }
                i = end;
            }
        }
    }
    /* The query suite's documents stay loaded across rounds; free them now. */
    bench_query_cleanup();
    if (collapse)
        bench_results_collapse(0);
    bench_finalize();
    for (size_t s = 0; s < nsuites; s++)
        bench_print_table(suites[s].id);

    /* Each suite's file is written when some of its workloads ran. */
    int rc = 0;
    if (out && suite_selected(&suites[0], only))
        rc |= write_suite(out, BENCH_SUITE_CORE);
    if (!query_out && out)
        query_out = default_query_out(out);
    if (query_out && suite_selected(&suites[1], only))
        rc |= write_suite(query_out, BENCH_SUITE_QUERY);
    return rc;
}
