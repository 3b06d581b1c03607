/*
 * bench.h — shared declarations of kd_bench, the KoruDelta benchmark.
 *
 * kd_bench runs each workload twice in one process: once against KoruDelta
 * (through include/korudelta.h only) and once against SQLite configured as a
 * history table at matching durability (workloads_sqlite.c). Both sides use
 * the same values, keys and query times, and files in the same temporary
 * directory. main.c holds the list of workloads and the options; report.c
 * prints the table and writes the JSON file; util.c holds timing, sampling,
 * value generation and file helpers. docs/BENCH.md explains every figure.
 */
#ifndef KD_BENCH_H
#define KD_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "korudelta.h"

/* ------------------------------------------------------------------------
 * Run configuration (set once by main.c, read everywhere)
 * ---------------------------------------------------------------------- */

typedef struct bench_config {
    int quick;             /* --quick: tiny counts, checks the benchmark works */
    double seconds;        /* time cap for one side of one timed phase */
    const char *root;      /* temporary directory holding every database */
    const char *data_dir;  /* shared test data (json-corpus), NULL if absent */
    size_t open_mb;        /* size of the log built for open_recovery */
    int cold;              /* KD_BENCH_COLD=1: drop the page cache before opens */
    unsigned sides;        /* BENCH_SIDE_* to run (--side; default both) */
    double load_start;     /* 1-minute load average when the run started */
} bench_config;

extern bench_config g_cfg;

#define BENCH_SIDE_KD 1u
#define BENCH_SIDE_SQLITE 2u

/* ------------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------- */

#define BENCH_MAX_EXTRA 12

/* One side (KoruDelta or SQLite) of one workload. */
typedef struct bench_side {
    int ran;            /* 1 when a figure was measured */
    double rate;        /* in the result's unit (ops/s, MB/s, B/version, ...) */
    uint64_t ops;       /* operations (or values, versions) counted */
    double seconds;     /* wall time of the measured phase */
    double median_ns;   /* per-operation latency, < 0 when not sampled */
    double p99_ns;
    uint64_t samples;   /* operations timed one by one */
    char text[32];     /* when set: shown in the table instead of `rate`, which is
                           then no figure in the unit (the JSON gets null) */
} bench_side;

typedef struct bench_extra {
    char name[48];
    double value;
} bench_extra;

typedef struct bench_result {
    char name[48];
    const char *unit;       /* of rate: "ops/s", "values/s", "versions/s", "MB/s", ... */
    bench_side kd, sq;
    int no_ratio;           /* 1: the two figures are not comparable */
    const char *target;     /* e.g. ">= 500k/s and >= 5x"; NULL when none */
    int met;                /* 1 met, 0 missed, -1 not judged (missing figure) */
    char note[256];
    bench_extra extra[BENCH_MAX_EXTRA];
    int nextra;
    int suite;              /* BENCH_SUITE_*: which table and JSON file (set by main.c) */
} bench_result;

/* Results are reported in suites, each with its own table and JSON file:
 * core (bench/out/core.json) and query (bench/out/query.json). */
#define BENCH_SUITE_CORE 0
#define BENCH_SUITE_QUERY 1

/* A new result appended to the run's list (never NULL: exits on OOM). */
bench_result *bench_result_new(const char *name, const char *unit);
/* The result named `name`, NULL when that workload did not run. */
bench_result *bench_result_find(const char *name);
void bench_result_extra(bench_result *r, const char *name, double value);
double bench_extra_get(const bench_result *r, const char *name); /* 0 when absent */
/* --repeat: merge the results from index `first` on that share a name into
 * one each, keeping for each side the run with the median rate (rows
 * without a KoruDelta figure are ranked by their first extra figure). */
void bench_results_collapse(size_t first);
double bench_ratio(const bench_result *r); /* kd/sqlite, or < 0 */
size_t bench_result_count(void);
bench_result *bench_result_at(size_t i); /* in the order they were created */

/* report.c: the table and the JSON file of one suite's results. */
void bench_print_table(int suite);
int bench_write_json(const char *path, int suite);

/* ------------------------------------------------------------------------
 * Timing and latency samples (util.c)
 * ---------------------------------------------------------------------- */

uint64_t bench_now_ns(void);           /* CLOCK_MONOTONIC */
int64_t bench_wall_ns(void);           /* CLOCK_REALTIME */
double bench_timer_overhead_ns(void);  /* median cost of one bench_now_ns() pair */

/* Per-operation latencies, in ns. */
typedef struct bench_samples {
    uint64_t *ns;
    size_t n, cap;
} bench_samples;

void bench_samples_init(bench_samples *s, size_t cap);
void bench_samples_add(bench_samples *s, uint64_t ns); /* ignored once full */
void bench_samples_merge(bench_samples *dst, const bench_samples *src);
/* Sort, subtract the timer overhead, and store median/p99 into `side`. */
void bench_samples_finish(bench_samples *s, bench_side *side);
void bench_samples_free(bench_samples *s);

/*
 * The common single-threaded loop. `op(ctx, i)` performs operation i and
 * returns 0 (or exits the process on error). Phase 1 runs untimed until
 * `max_ops` operations or g_cfg.seconds have passed and gives the rate;
 * phase 2 then times `sample_ops` further operations one by one for the
 * median and p99. When `time_each` is set, phase 1 already times every
 * operation (for slow operations, where two clock reads cost nothing) and
 * phase 2 is skipped. Operation indexes continue across phases.
 * Returns the number of operations performed in total.
 */
typedef int (*bench_op_fn)(void *ctx, uint64_t i);
uint64_t bench_run_loop(bench_side *side, bench_op_fn op, void *ctx, uint64_t max_ops, uint64_t sample_ops,
                        int time_each);

/* ------------------------------------------------------------------------
 * Data, files, errors (util.c)
 * ---------------------------------------------------------------------- */

#define BENCH_MAX_VALUE 8192
#define BENCH_KEY_MAX 48 /* buffer size for bench_make_key (prefix <= 16 bytes) */

/* Write into buf a JSON object of exactly `size` bytes (40..BENCH_MAX_VALUE),
 * distinct for every i: {"n":i,"pad":"abcd…"}. Returns the length (== size). */
size_t bench_make_value(char *buf, size_t size, uint64_t i);
/* Key of operation i of a workload spread over nkeys keys (0: key i):
 * "<prefix>k0000042". buf holds BENCH_KEY_MAX bytes. */
void bench_make_key(char *buf, const char *prefix, uint64_t i, uint64_t nkeys);
/* A 64-hex-digit id cheaply derived from i (the SQLite side's version_id:
 * the same bytes as KoruDelta's, without hashing). */
void bench_fake_id(char out[KD_ID_HEX], uint64_t i);

uint64_t bench_rand(uint64_t *state); /* xorshift64*, deterministic */
/* `count` query times spread uniformly over [ts[0], ts[n-1]], from a fixed
 * seed so both sides ask at the same relative positions. Free with free(). */
int64_t *bench_query_times(const int64_t *ts, uint64_t n, uint64_t count);

/* "<root>/<name>" into buf. */
void bench_path(char *buf, size_t buflen, const char *name);
/* Remove a file or directory tree (missing is fine). */
void bench_rm_rf(const char *path);
/* Total bytes of regular files under path (a directory or one file). */
uint64_t bench_du(const char *path);
/* Flush dirty pages of the filesystem holding path (and, with g_cfg.cold,
 * drop the page cache when permitted). */
void bench_settle(const char *path);
/* Read a whole file; NULL when it cannot be read. Free with free(). */
char *bench_read_file(const char *path, size_t *len);

/* Print a message and exit(1) (the temporary directory is removed at exit). */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void *bench_xmalloc(size_t n);

/* KoruDelta helpers (workloads_kd.c). */
kd_db *kdb_open(const char *dir, kd_sync sync);
void kdb_close(kd_db *db); /* dies when kd_close fails */
/* Exit with kd_errmsg when rc is not KD_OK. */
void kdb_check(kd_db *db, int rc, const char *what);

/* 1-minute load average (other processes competing for the machine), -1 if unknown. */
double bench_loadavg(void);

/* Version of the KoruDelta library linked, "0.1.0". */
const char *bench_kd_version(void);

/* Machine description for the report (util.c). */
void bench_machine_info(char *cpu, size_t cpulen, char *kernel, size_t kernlen, char *fs, size_t fslen);


/* ------------------------------------------------------------------------
 * The two sides of each workload: workloads_kd.c (KoruDelta) and
 * workloads_sqlite.c (the SQLite history table). Each function builds what
 * it needs at `path` (a directory for KoruDelta, a file for SQLite), measures,
 * and leaves the files for the caller to remove.
 * ---------------------------------------------------------------------- */

#define BENCH_NS "bench" /* the namespace every workload writes */

typedef struct put_params {
    size_t value_size; /* bytes of each JSON value */
    uint64_t nkeys;    /* keys the writes are spread over (per writer) */
    uint64_t max_ops;  /* values to write at most; g_cfg.seconds caps too */
    int threads;       /* writers, each on its own keys */
    int durable;       /* KD_SYNC_ALWAYS / synchronous=FULL, else none / OFF */
    size_t batch;      /* 0: one value per call; n: n values per batch/transaction */
} put_params;

/* Rate = values per second; latency is per call (per batch when batch > 0). */
void kdside_put(const char *dir, const put_params *p, bench_side *out);
void sqside_put(const char *file, const put_params *p, bench_side *out);

/* Point lookup of one hot key among `other_keys` others. */
void kdside_get_hot(const char *dir, uint64_t other_keys, bench_side *out);
void sqside_get_hot(const char *file, uint64_t other_keys, bench_side *out);

/* Lookup at random times on one key with `versions` versions. */
void kdside_get_at(const char *dir, uint64_t versions, bench_side *out);
void sqside_get_at(const char *file, uint64_t versions, bench_side *out);

/* Whole history of one key with `versions` versions; rate = versions/s,
 * latency per scan. */
void kdside_history(const char *dir, uint64_t versions, bench_side *out);
void sqside_history(const char *file, uint64_t versions, bench_side *out);

/* Build about `bytes` of data with 4 KB values, close, then time opening.
 * KoruDelta: rate = MB (2^20 bytes) of log replayed per second of kd_open.
 * SQLite: out->seconds = open + first point query (not a replay: no rate). */
void kdside_open(const char *dir, uint64_t bytes, bench_side *out, bench_result *r);
void sqside_open(const char *file, uint64_t bytes, bench_side *out, bench_result *r);

/* Index RAM per version after writing keys x versions_per_key versions. */
void kdside_ram(const char *dir, uint64_t keys, uint64_t versions_per_key, bench_side *out, bench_result *r);

/* Canonicalize (KoruDelta) / json() (SQLite) `text` repeatedly; MB/s. */
void kdside_json(const char *text, size_t len, bench_side *out);
void sqside_json(const char *text, size_t len, bench_side *out);

/* The disk's floor: write(128 B) + fdatasync on a file in g_cfg.root,
 * growing the file, writing into a preallocated range, or overwriting. */
typedef enum bench_fsync_mode { BENCH_FSYNC_APPEND, BENCH_FSYNC_PREALLOC, BENCH_FSYNC_OVERWRITE } bench_fsync_mode;
void sysside_fsync_floor(const char *file, bench_fsync_mode mode, bench_side *out);

/* import_ndjson and export_ndjson (workloads_import.c): the kdelta binary
 * against SQLite loading / dumping the same NDJSON file. */
void bench_w_import_ndjson(void);
/* Opening with an index checkpoint (workloads_upkeep.c). */
void bench_w_open_checkpoint(void);
/* The cost of auth checks per call (workloads_auth.c). */
void bench_w_auth_verify(void);
/* One compaction under a retention policy, and write latency meanwhile. */
void bench_w_compact(void);
/* Compression ratio of consolidation on json-corpus (workloads_consolidate.c). */
void bench_w_consolidate(void);
/* Write latency while a consolidation runs (workloads_upkeep.c). */
void bench_w_put_p99_consolidate(void);
/* RAM per version and read latency, hot against cold (workloads_memory.c). */
void bench_w_memory_tiers(void);
void bench_w_export_ndjson(void);
/* backup and restore (workloads_backup.c): kd_backup / kd_restore against
 * SQLite's VACUUM INTO and backup API over the same documents. */
void bench_w_backup(void);
void bench_w_restore(void);

/* Workload list (workloads.c). */
typedef struct bench_workload {
    const char *name;
    const char *what;
    void (*run)(void);
    /* > 1: this workload and its neighbours with the same value run that
     * many times in turn (A B C A B C ...), each side keeping its median
     * run: for figures bound to a disk whose speed drifts from one second
     * to the next (the fsync floor and the durable puts judged against it) */
    int rounds;
} bench_workload;

extern const bench_workload bench_workloads[];
extern const size_t bench_nworkloads;
/* The query suite (workloads_query.c): kd_query_run against SQLite's
 * json_extract() over the same documents, loaded once and shared by the
 * query workloads; bench_query_cleanup closes and removes them. */
extern const bench_workload bench_query_workloads[];
extern const size_t bench_nquery_workloads;
void bench_query_cleanup(void);
/* Judge targets that combine several workloads (fsync floor shares, 8w/1w). */
void bench_finalize(void);

#endif
