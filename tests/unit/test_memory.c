/*
 * test_memory.c — the memory budget: the rule that splits it (cache =
 * clamp(B - I - V - 2W, B/16, B/2)), its option's bad inputs, the cache
 * shrinking as the index grows, an explicit cache size winning, and a load
 * of more than 10x a small budget that reads back exactly while the
 * process's resident memory stays within the budget plus a stated overhead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1 /* shadow memory and quarantine: RSS says nothing */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

#define MIB ((uint64_t)1024 * 1024)

static void remove_dir(const char *dir)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* kB value of a /proc/self/status line ("VmRSS:"), -1 if absent. */
static long long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n)) {
            v = strtoll(line + n, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static void test_split_rule(void)
{
    uint64_t b = 64 * MIB, w = kd__mem_window(b);
    CHECK_EQ_INT(w, 2 * MIB);
    CHECK_EQ_INT(kd__mem_window(8 * MIB), 256 * 1024); /* the window's floor */
    /* nothing else held: the ceiling, half the budget */
    CHECK_EQ_INT(kd__mem_cache_share(b, 0, 0), b / 2);
    /* in between: what the index, vectors and window leave */
    CHECK_EQ_INT(kd__mem_cache_share(b, 30 * MIB, 2 * MIB), b - 30 * MIB - 2 * MIB - 2 * w);
    /* an index larger than the budget: the floor, a sixteenth */
    CHECK_EQ_INT(kd__mem_cache_share(b, 100 * MIB, 0), b / 16);
    CHECK_EQ_INT(kd__mem_cache_share(b, 0, b), b / 16);
    /* monotonic: more index, never more cache */
    uint64_t prev = UINT64_MAX;
    for (uint64_t i = 0; i <= 80 * MIB; i += MIB) {
        uint64_t c = kd__mem_cache_share(b, i, 0);
        CHECK(c <= prev);
        CHECK(c >= b / 16 && c <= b / 2);
        prev = c;
    }
    uint64_t d = kd__mem_default_budget();
    CHECK(d >= 64 * MIB);
    long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && ps > 0 && (uint64_t)pages * (uint64_t)ps / 4 >= 64 * MIB)
        CHECK_EQ_INT(d, (uint64_t)pages * (uint64_t)ps / 4);
}

static void test_option_errors(void)
{
    CHECK_RC(kd_options_set_max_memory(NULL, 64 * MIB), KD_EMISUSE);
    kd_options *o = kd_options_new();
    CHECK(o);
    CHECK_RC(kd_options_set_max_memory(o, 8 * MIB - 1), KD_EINVALID);
    CHECK_RC(kd_options_set_max_memory(o, 1), KD_EINVALID);
    CHECK_RC(kd_options_set_max_memory(o, 8 * MIB), KD_OK);
    CHECK_RC(kd_options_set_max_memory(o, 0), KD_OK); /* back to the default */
    char dir[256];
    harness_tmpdir("mem", "default", dir);
    kd_db *db = NULL;
    CHECK_RC(kd_open(dir, o, &db, NULL, 0), KD_OK);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.memory_budget, kd__mem_default_budget());
    CHECK_EQ_INT(st.cache_capacity, kd__mem_cache_share(st.memory_budget, st.index_bytes, 0));
    CHECK_EQ_INT(st.log_window_bytes, kd__mem_window(st.memory_budget));
    CHECK_EQ_INT(st.memory_used, st.cache_bytes + st.index_bytes + st.vector_index_bytes);
    kd_close(db);
    kd_options_free(o);
    remove_dir(dir);
}

static void put_n(kd_db *db, const char *ns, int from, int to, size_t value_len)
{
    char *json = malloc(value_len + 3), key[32];
    if (!json)
        abort();
    for (int i = from; i < to; i++) {
        int h = snprintf(json, value_len + 3, "\"%08d", i);
        memset(json + h, 'a' + i % 26, value_len - (size_t)h + 1);
        json[value_len + 1] = '"';
        json[value_len + 2] = '\0';
        snprintf(key, sizeof key, "k%08d", i);
        if (kd_put(db, ns, key, json, value_len + 2, NULL) != KD_OK) {
            fprintf(stderr, "put %s: %s\n", key, kd_errmsg(db));
            abort();
        }
    }
    free(json);
}

/* The value put_n wrote for i, checked without building it. */
static int value_ok(const char *got, size_t len, int i, size_t value_len)
{
    char head[16];
    int h = snprintf(head, sizeof head, "\"%08d", i);
    if (len != value_len + 2 || memcmp(got, head, (size_t)h) || got[len - 1] != '"')
        return 0;
    for (size_t j = (size_t)h; j < len - 1; j++)
        if (got[j] != 'a' + i % 26)
            return 0;
    return 1;
}

/* The cache shrinks as the index grows, evicting at once; an explicit
 * cache size is left alone. */
static void test_cache_follows_index(void)
{
    char dir[256];
    harness_tmpdir("mem", "follow", dir);
    kd_options *o = kd_options_new();
    CHECK(o);
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_max_memory(o, 8 * MIB);
    kd_db *db = NULL;
    CHECK_RC(kd_open(dir, o, &db, NULL, 0), KD_OK);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.memory_budget, 8 * MIB);
    uint64_t first = st.cache_capacity;
    CHECK_EQ_INT(first, kd__mem_cache_share(8 * MIB, st.index_bytes, 0));
    /* fill the cache: 400 values of 8 KiB, each read twice */
    put_n(db, "c", 0, 400, 8192);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 400; i++) {
            char key[32], *v = NULL;
            size_t len = 0;
            snprintf(key, sizeof key, "k%08d", i);
            CHECK_RC(kd_get(db, "c", key, &v, &len, NULL), KD_OK);
            CHECK(value_ok(v, len, i, 8192));
            kd_free(v);
        }
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK(st.cache_hits > 0);
    CHECK(st.cache_bytes > first / 2);
    /* grow the index by tiny values until the cache is at its floor */
    put_n(db, "small", 0, 120000, 10);
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK(st.index_bytes > 4 * MIB);
    CHECK(st.cache_capacity < first);
    /* sized after the last B/64 step of index growth */
    CHECK(st.cache_capacity <= kd__mem_cache_share(8 * MIB, st.index_bytes - 8 * MIB / 64, 0));
    CHECK(st.cache_bytes <= st.cache_capacity);
    kd_close(db);

    /* an explicit cache size wins */
    kd_options_set_cache_size(o, 3 * MIB);
    CHECK_RC(kd_open(dir, o, &db, NULL, 0), KD_OK);
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.cache_capacity, 3 * MIB);
    put_n(db, "small", 120000, 150000, 10);
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.cache_capacity, 3 * MIB);
    kd_close(db);
    kd_options_free(o);
    remove_dir(dir);
}

/* More than 10x the budget: 32 MiB budget, 352 MiB of values (default
 * segment size, so the log's newest segment is 256 MiB of mapping). Every
 * value reads back exactly (twice: the second pass after the cache has
 * turned over), and the peak resident set (VmHWM) stays within the
 * process's size before opening + the budget + 16 MiB of overhead (the
 * tail's reserve of 8 MiB, populated ahead of writes, and allocator slack).
 * Without the trimming of mapped log pages the peak would be about the
 * size of the log. */
static void test_ten_times_budget(void)
{
    enum { N = 11264, LEN = 32 * 1024 };
    const uint64_t budget = 32 * MIB, overhead = 16 * MIB;
    char dir[256];
    harness_tmpdir("mem", "tenx", dir);
    /* Reset the peak (VmHWM) to the current resident set (Linux >= 4.0). */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    int hwm_reset = cr && fputs("5", cr) >= 0;
    if (cr && fclose(cr) != 0)
        hwm_reset = 0;
    long long base_hwm = status_kb("VmHWM:"), base_rss = status_kb("VmRSS:");
    kd_options *o = kd_options_new();
    CHECK(o);
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_max_memory(o, budget);
    kd_db *db = NULL;
    CHECK_RC(kd_open(dir, o, &db, NULL, 0), KD_OK);
    put_n(db, "big", 0, N, LEN);
    long long after_write = status_kb("VmRSS:");
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N; i++) {
            int j = pass ? (int)(((long long)i * 7919) % N) : i; /* second pass out of order */
            char key[32], *v = NULL;
            size_t len = 0;
            snprintf(key, sizeof key, "k%08d", j);
            CHECK_RC(kd_get(db, "big", key, &v, &len, NULL), KD_OK);
            if (!value_ok(v, len, j, LEN)) {
                kd_free(v);
                CHECK(!"value read back differs");
            }
            kd_free(v);
        }
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    long long hwm = status_kb("VmHWM:"), rss = status_kb("VmRSS:"), anon = status_kb("RssAnon:"),
              file = status_kb("RssFile:");
    fprintf(stderr,
            "  %" PRIu64 " MiB of log, budget %" PRIu64 " MiB: RSS before open %lld KiB, after writing %lld KiB, "
            "after reading %lld KiB (anon %lld, file %lld), peak %lld KiB (before: %lld); cache %" PRIu64
            " of %" PRIu64 " KiB, index %" PRIu64 " KiB, %" PRIu64 " trims\n",
            st.disk_bytes / MIB, budget / MIB, base_rss, after_write, rss, anon, file, hwm, base_hwm,
            st.cache_bytes / 1024, st.cache_capacity / 1024, st.index_bytes / 1024, st.log_trims);
    kd_close(db);
    kd_options_free(o);
    remove_dir(dir);
    CHECK(st.disk_bytes >= 10 * budget);
    CHECK(st.log_trims > 0);
    CHECK(st.cache_bytes <= st.cache_capacity && st.cache_capacity <= budget / 2);
    if (UNDER_SANITIZER) {
        fprintf(stderr, "  (under a sanitizer: resident memory is not checked)\n");
        return;
    }
    CHECK(hwm > 0 && base_hwm > 0);
    if (!hwm_reset) /* an older peak would hide this test's */
        CHECK(base_hwm <= base_rss + 1024);
    CHECK((uint64_t)(hwm - base_rss) * 1024 <= budget + overhead);
}

/* Small values: what stays mapped is whole pages, so a read of 100 bytes
 * counts a page (plus one for the key's versions) toward the window. Random
 * reads of 100,000 such values (a log of ~20 MiB, cache off, every key's
 * versions in the checkpoint's mapping), a scan of them all and histories
 * leave at most 2W (W = 256 KiB) of read pages mapped. */
static int count_cb(void *ctx, const char *key, const char *json, size_t len, const kd_version *v)
{
    (void)key;
    (void)v;
    if (len != 102 || json[0] != '"')
        return -1;
    (*(int *)ctx)++;
    return 0;
}

static void test_small_values_pages(void)
{
    enum { N = 100000 };
    int scanned = 0;
    char dir[256];
    harness_tmpdir("mem", "small", dir);
    kd_options *o = kd_options_new();
    CHECK(o);
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_max_memory(o, 8 * MIB);
    kd_options_set_cache_size(o, 0);
    kd_options_set_upkeep_interval(o, 0);
    kd_db *db = NULL;
    CHECK_RC(kd_open(dir, o, &db, NULL, 0), KD_OK);
    put_n(db, "s", 0, N, 100);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    /* nothing of the log mapped yet; every key's versions in the checkpoint's mapping */
    CHECK_RC(kd_open(dir, o, &db, NULL, 0), KD_OK);
    kd_stats st;
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    CHECK_EQ_INT(st.index_mapped_bytes, (uint64_t)N * sizeof(kd__ver));
    /* a scan reads every value through the mapping, in order */
    CHECK_RC(kd_scan(db, "s", "", NULL, 0, INT64_MAX, count_cb, &scanned), KD_OK);
    CHECK_EQ_INT(scanned, N);
    long long file0 = status_kb("RssFile:"), peak = file0;
    uint64_t seed = 1;
    for (int r = 0; r < N; r++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int i = (int)((seed >> 33) % N);
        char key[32], *v = NULL;
        size_t len = 0;
        snprintf(key, sizeof key, "k%08d", i);
        CHECK_RC(kd_get(db, "s", key, &v, &len, NULL), KD_OK);
        int ok = value_ok(v, len, i, 100);
        kd_free(v);
        CHECK(ok);
        if (r % 64 == 0) {
            kd_version *h = NULL;
            size_t nh = 0;
            CHECK_RC(kd_history(db, "s", key, INT64_MIN, INT64_MAX, 0, 0, &h, &nh), KD_OK);
            kd_free(h);
            CHECK_EQ_INT(nh, 1);
        }
        if (r % 512 == 0) {
            long long f = status_kb("RssFile:");
            if (f > peak)
                peak = f;
        }
    }
    CHECK_RC(kd_stats_get(db, &st), KD_OK);
    fprintf(stderr, "  RssFile %lld KiB after open, at most %lld KiB while reading; %" PRIu64 " trims\n", file0, peak,
            st.log_trims);
    CHECK(st.log_trims > 10);
    CHECK((peak - file0) * 1024 <= (long long)(2 * kd__mem_window(8 * MIB)));
    /* A query reads its rows' values again after its scan: those pages
     * stayed mapped until the next read (about 4x the log here). */
    kd_query *q = NULL;
    kd_result *res = NULL;
    CHECK_RC(kd_query_parse("{}", 2, &q, NULL, 0), KD_OK);
    CHECK_RC(kd_query_run(db, "s", q, &res), KD_OK);
    long long fq = status_kb("RssFile:");
    CHECK(res && res->n_rows == N);
    fprintf(stderr, "  RssFile %lld KiB after a query of all %d values\n", fq, N);
    CHECK((fq - file0) * 1024 <= (long long)(2 * kd__mem_window(8 * MIB)));
    kd_result_free(res);
    kd_query_free(q);
    kd_close(db);
    kd_options_free(o);
    remove_dir(dir);
}

int main(void)
{
    RUN(test_ten_times_budget); /* first: nothing else has grown the heap yet */
    RUN(test_split_rule);
    RUN(test_option_errors);
    RUN(test_cache_follows_index);
    RUN(test_small_values_pages);
    return HARNESS_DONE();
}
