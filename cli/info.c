/*
 * info.c — commands about the whole database: list, status, verify.
 *
 * Human output is aligned "label  value" lines; --json output is one JSON
 * object or array per command, written here with kd_json_quote() for every
 * string so names are exact.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"
#include "server_int.h" /* ks_kd_code: the error codes the server uses */

/* ------------------------------------------------------------------------
 * list
 * ---------------------------------------------------------------------- */

int cmd_list(struct cli *c)
{
    char **names = NULL;
    size_t n = 0;
    char *ns = NULL;
    int status;
    if (c->nargs == 1) {
        ns = cli_ns_arg(c->args[0]);
        if ((status = cli_check_name(ns, NULL)) != CLI_OK)
            goto done;
    }
    if ((status = cli_open(c)) != CLI_OK)
        goto done;
    int rc = ns ? st_list_keys(c, ns, NULL, NULL, 0, &names, &n) : st_list_namespaces(c, &names, &n);
    if (rc != KD_OK) {
        char *shown = ns ? cli_display(ns, NULL, 200) : xstrdup("list");
        status = cli_kd_error(c, rc, shown);
        free(shown);
        goto done;
    }
    if (c->json)
        fputc('[', stdout);
    for (size_t i = 0; i < n; i++) {
        if (c->json) {
            if (i)
                fputc(',', stdout);
            if ((status = cli_print_json_string(names[i], strlen(names[i]))) != CLI_OK)
                goto done;
        } else {
            char *shown = cli_display(names[i], NULL, 0);
            puts(shown);
            free(shown);
        }
    }
    if (c->json)
        fputs("]\n", stdout);
done:
    kd_free_list(names, n);
    free(ns);
    return cli_finish_output(status);
}

/* ------------------------------------------------------------------------
 * status
 * ---------------------------------------------------------------------- */

static int upkeep_json(const kd_task_status *tasks, size_t n)
{
    char t[40], code[32];
    int status;
    fputs(",\"upkeep\":[", stdout);
    for (size_t i = 0; i < n; i++) {
        const kd_task_status *k = &tasks[i];
        printf("%s{\"task\":", i ? "," : "");
        if ((status = cli_print_json_string(k->name, strnlen(k->name, sizeof k->name))) != CLI_OK)
            return status;
        printf(",\"runs\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"last_run\":", k->runs, k->failures);
        if (k->last_run)
            printf("\"%s\"", cli_time_utc(k->last_run, t));
        else
            fputs("null", stdout);
        printf(",\"last_duration_us\":%" PRId64 ",\"last_status\":\"%s\",\"message\":", k->last_duration_ns / 1000,
               ks_kd_code(k->last_status, code, sizeof code));
        if ((status = cli_print_json_string(k->message, strnlen(k->message, sizeof k->message))) != CLI_OK)
            return status;
        fputc('}', stdout);
    }
    fputc(']', stdout);
    return CLI_OK;
}

/* Share of cache lookups that were hits, 0 before any. */
static double hit_rate(const kd_stats *s)
{
    uint64_t n = s->cache_hits + s->cache_misses;
    return n ? (double)s->cache_hits / (double)n : 0.0;
}

static int status_json(const char *path, const kd_stats *s, const kd_root *roots, size_t nroots,
                       const kd_task_status *tasks, size_t ntasks)
{
    char t[40];
    int status;
    fputs("{\"path\":", stdout);
    if ((status = cli_print_json_string(path, strlen(path))) != CLI_OK)
        return status;
    printf(",\"keys\":%" PRIu64 ",\"live_keys\":%" PRIu64 ",\"versions\":%" PRIu64 ",\"values\":%" PRIu64
           ",\"namespaces\":%" PRIu64 ",\"disk_bytes\":%" PRIu64 ",\"segments\":%" PRIu64
           ",\"index_bytes\":%" PRIu64 ",\"cache_bytes\":%" PRIu64 ",\"cache_hits\":%" PRIu64
           ",\"cache_misses\":%" PRIu64 ",\"replay_bytes\":%" PRIu64 ",\"index_mapped_bytes\":%" PRIu64,
           s->keys, s->live_keys, s->versions, s->unique_values, s->namespaces, s->disk_bytes, s->segments,
           s->index_bytes, s->cache_bytes, s->cache_hits, s->cache_misses, s->replay_bytes, s->index_mapped_bytes);
    printf(",\"memory_budget\":%" PRIu64 ",\"memory_used\":%" PRIu64 ",\"cache_capacity\":%" PRIu64
           ",\"cache_hit_rate\":%.4f,\"vector_index_bytes\":%" PRIu64 ",\"log_window_bytes\":%" PRIu64
           ",\"log_trims\":%" PRIu64,
           s->memory_budget, s->memory_used, s->cache_capacity, hit_rate(s), s->vector_index_bytes, s->log_window_bytes,
           s->log_trims);
    if (s->last_timestamp)
        printf(",\"last_write\":\"%s\"", cli_time_utc(s->last_timestamp, t));
    else
        fputs(",\"last_write\":null", stdout);
    fputs(",\"roots\":{", stdout);
    for (size_t i = 0; i < nroots; i++) {
        if (i)
            fputc(',', stdout);
        if ((status = cli_print_json_string(roots[i].name, strnlen(roots[i].name, sizeof roots[i].name))) != CLI_OK)
            return status;
        printf(":\"%s\"", roots[i].hex);
    }
    fputc('}', stdout);
    if ((status = upkeep_json(tasks, ntasks)) != CLI_OK)
        return status;
    fputs("}\n", stdout);
    return CLI_OK;
}

/* "2.0 KiB" for people (n >= 1024). */
static const char *human_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)n / 1024;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

/* Bytes for people: "512 bytes", "2.0 KiB". */
static const char *some_bytes(uint64_t n, char *buf, size_t len)
{
    if (n < 1024) {
        snprintf(buf, len, "%" PRIu64 " bytes", n);
        return buf;
    }
    return human_bytes(n, buf, len);
}

/* "3 minutes ago" for a timestamp, "" when it is in the future. */
static const char *age(int64_t ts, char *buf, size_t len)
{
    static const struct {
        int64_t secs;
        const char *unit;
    } steps[] = {{86400 * 365, "year"}, {86400 * 7, "week"}, {86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
    int64_t now = kd_now(), secs = (now - ts) / 1000000000;
    buf[0] = '\0';
    if (ts > now)
        return buf;
    if (secs < 1) {
        snprintf(buf, len, "just now");
        return buf;
    }
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (secs >= steps[i].secs) {
            int64_t k = secs / steps[i].secs;
            snprintf(buf, len, "%lld %s%s ago", (long long)k, steps[i].unit, k == 1 ? "" : "s");
            break;
        }
    }
    return buf;
}

static void status_human(struct cli *c, const char *path, const kd_stats *s, const kd_root *roots, size_t nroots,
                         const kd_task_status *tasks, size_t ntasks)
{
    char t[40], size[32], ago[48];
    const char *b = cli_sgr(c, CLI_BOLD), *d = cli_sgr(c, CLI_DIM), *r = cli_sgr(c, CLI_RESET);
    printf("path         %s%s%s\n", b, path, r);
    printf("keys         %" PRIu64 "\n", s->keys);
    printf("live keys    %" PRIu64 "\n", s->live_keys);
    printf("versions     %" PRIu64 "\n", s->versions);
    printf("values       %" PRIu64 "\n", s->unique_values);
    printf("namespaces   %" PRIu64 "\n", s->namespaces);
    if (s->disk_bytes >= 1024)
        printf("disk bytes   %" PRIu64 " (%s) in %" PRIu64 " segment%s\n", s->disk_bytes,
               human_bytes(s->disk_bytes, size, sizeof size), s->segments, s->segments == 1 ? "" : "s");
    else
        printf("disk bytes   %" PRIu64 " in %" PRIu64 " segment%s\n", s->disk_bytes, s->segments,
               s->segments == 1 ? "" : "s");
    if (s->replay_bytes >= 1024)
        printf("replay       %" PRIu64 " (%s) of log after the index checkpoint\n", s->replay_bytes,
               human_bytes(s->replay_bytes, size, sizeof size));
    else
        printf("replay       %" PRIu64 " bytes of log after the index checkpoint\n", s->replay_bytes);
    if (s->memory_budget) { /* a server older than the budget does not report it */
        char a[32], bb[32];
        printf("memory       %s used of a %s budget\n", some_bytes(s->memory_used, a, sizeof a),
               some_bytes(s->memory_budget, bb, sizeof bb));
        printf("  hot cache  %s of %s", some_bytes(s->cache_bytes, a, sizeof a),
               some_bytes(s->cache_capacity, bb, sizeof bb));
        if (s->cache_hits + s->cache_misses)
            printf(", %.1f%% hits (%" PRIu64 " of %" PRIu64 " lookups)\n", 100 * hit_rate(s), s->cache_hits,
                   s->cache_hits + s->cache_misses);
        else
            printf(", no lookups yet\n");
        printf("  index      %s in RAM, %s used in place from the checkpoint\n", some_bytes(s->index_bytes, a, sizeof a),
               some_bytes(s->index_mapped_bytes, bb, sizeof bb));
        printf("  vectors    %s\n", some_bytes(s->vector_index_bytes, a, sizeof a));
    }
    if (s->last_timestamp)
        printf("last write   %s  %s(%s)%s\n", cli_time(s->last_timestamp, t), d,
               age(s->last_timestamp, ago, sizeof ago), r);
    else
        printf("last write   never\n");
    for (size_t i = 0; i < nroots; i++)
        printf("root %-8.*s%s%s%s\n", (int)sizeof roots[i].name, roots[i].name, d, roots[i].hex, r);
    for (size_t i = 0; i < ntasks; i++) {
        const kd_task_status *k = &tasks[i];
        if (!k->last_run) {
            printf("upkeep       %.*s: not run yet\n", (int)sizeof k->name, k->name);
            continue;
        }
        printf("upkeep       %.*s: %" PRIu64 " run%s, last %s: %s%s%s: %.*s\n", (int)sizeof k->name, k->name, k->runs,
               k->runs == 1 ? "" : "s", age(k->last_run, ago, sizeof ago),
               cli_sgr(c, k->last_status == KD_OK ? CLI_GREEN : CLI_RED), k->last_status == KD_OK ? "ok" : "failed",
               r, (int)sizeof k->message, k->message);
    }
}

int cmd_status(struct cli *c)
{
    kd_root *roots = NULL;
    kd_task_status *tasks = NULL;
    size_t nroots = 0, ntasks = 0;
    kd_stats s;
    char *path = NULL;
    int status;
    if ((status = cli_open(c)) != CLI_OK)
        goto done;
    int rc = st_status(c, &s, &roots, &nroots, &tasks, &ntasks, &path);
    if (rc != KD_OK) {
        status = cli_kd_error(c, rc, c->path);
        goto done;
    }
    if (c->json)
        status = status_json(path, &s, roots, nroots, tasks, ntasks);
    else
        status_human(c, path, &s, roots, nroots, tasks, ntasks);
done:
    free(path);
    kd_free(roots);
    free(tasks); /* kd_upkeep_status's array (malloc) or st_status's (xrealloc) */
    return cli_finish_output(status);
}

/* ------------------------------------------------------------------------
 * verify
 * ---------------------------------------------------------------------- */

static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

int cmd_verify(struct cli *c)
{
    kd_verify_report r;
    memset(&r, 0, sizeof r);
    int status;
    if ((status = cli_open(c)) != CLI_OK)
        return cli_finish_output(status);
    int rc = st_verify(c, &r);
    if (rc != KD_OK && rc != KD_ECORRUPT)
        return cli_finish_output(cli_kd_error(c, rc, c->path));
    r.problem[sizeof r.problem - 1] = '\0';
    if (c->json) {
        printf("{\"ok\":%s,\"segments\":%" PRIu64 ",\"records\":%" PRIu64 ",\"versions\":%" PRIu64
               ",\"values\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"pruned\":%" PRIu64 ",\"problem\":",
               rc == KD_OK ? "true" : "false", r.segments, r.records, r.versions, r.values, r.bytes, r.pruned);
        if (rc == KD_OK)
            fputs("null", stdout);
        else if ((status = cli_print_json_string(r.problem, strlen(r.problem))) != CLI_OK)
            return cli_finish_output(status);
        fputs("}\n", stdout);
    } else {
        printf("checked %" PRIu64 " segment%s: %" PRIu64 " record%s, %" PRIu64 " version%s, %" PRIu64
               " value%s (%" PRIu64 " byte%s); checksums, value hashes, write ids, parent links, causal roots\n",
               r.segments, plural(r.segments), r.records, plural(r.records), r.versions, plural(r.versions), r.values,
               plural(r.values), r.bytes, plural(r.bytes));
        if (r.pruned && rc == KD_OK)
            printf("%" PRIu64 " version%s pruned by compactions, each accounted for by a compaction record\n", r.pruned,
                   plural(r.pruned));
        printf("%s%s%s\n", cli_sgr(c, rc == KD_OK ? CLI_GREEN : CLI_RED), rc == KD_OK ? "ok" : "CORRUPT",
               cli_sgr(c, CLI_RESET));
    }
    if (rc == KD_ECORRUPT)
        status = cli_error(CLI_CORRUPT, c->path, "corrupt: %s", r.problem[0] ? r.problem : st_errmsg(c));
    return cli_finish_output(status);
}
