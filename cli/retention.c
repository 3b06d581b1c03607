/*
 * retention.c — `kdelta retention set NS [--keep-last N] [--keep-newer-than
 * DURATION] [--thin AFTER:EVERY]...`, `kdelta retention show [NS]`,
 * `kdelta retention clear NS`, `kdelta compact [--dry-run]` and `kdelta
 * consolidate [--older-than D]`, over kd_retention_*, kd_compact and
 * kd_consolidate (locally or through the server).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

/* The policy JSON the options describe, into buf; CLI_OK or a usage error. */
static int policy_of_options(const struct cli *c, char *buf, size_t len)
{
    if (!c->keep_last && !c->keep_newer_than && !c->n_thin)
        return cli_error(CLI_USAGE, "retention set", "give at least one of --keep-last N, --keep-newer-than DURATION, "
                         "--thin AFTER:EVERY");
    size_t n = (size_t)snprintf(buf, len, "{");
    const char *sep = "";
    int64_t ns;
    if (c->keep_last) {
        n += (size_t)snprintf(buf + n, len - n, "\"keep_last\":%s", c->keep_last);
        sep = ",";
    }
    if (c->keep_newer_than) {
        if (kd_duration_parse(c->keep_newer_than, &ns) != KD_OK)
            return cli_error(CLI_USAGE, "--keep-newer-than", "expected a duration from 1s to 36600d, such as 90m, 12h, 30d or 2w, got '%s'",
                             c->keep_newer_than);
        n += (size_t)snprintf(buf + n, len - n, "%s\"keep_newer_than\":\"%s\"", sep, c->keep_newer_than);
        sep = ",";
    }
    if (c->n_thin) {
        n += (size_t)snprintf(buf + n, len - n, "%s\"thin\":[", sep);
        for (int i = 0; i < c->n_thin; i++) {
            const char *t = c->thin[i], *colon = strchr(t, ':');
            char after[32];
            size_t al = colon ? (size_t)(colon - t) : 0;
            if (!colon || al == 0 || al >= sizeof after)
                return cli_error(CLI_USAGE, "--thin", "expected AFTER:EVERY, e.g. 7d:1h (after 7 days, one version per "
                                 "hour), got '%s'", t);
            memcpy(after, t, al);
            after[al] = '\0';
            if (kd_duration_parse(after, &ns) != KD_OK || kd_duration_parse(colon + 1, &ns) != KD_OK)
                return cli_error(CLI_USAGE, "--thin", "expected AFTER:EVERY with durations such as 7d:1h, got '%s'", t);
            n += (size_t)snprintf(buf + n, len - n, "%s{\"after\":\"%s\",\"every\":\"%s\"}", i ? "," : "", after,
                                  colon + 1);
        }
        n += (size_t)snprintf(buf + n, len - n, "]");
    }
    if (n + 2 > len)
        return cli_error(CLI_USAGE, "retention set", "policy too long");
    snprintf(buf + n, len - n, "}");
    return CLI_OK;
}

static void print_policy(struct cli *c, const char *ns, const char *policy, size_t len)
{
    if (c->json) {
        fputs("{\"namespace\":", stdout);
        cli_print_json_string(ns, strlen(ns));
        printf(",\"policy\":%.*s}\n", (int)len, policy);
    } else {
        printf("%s: %.*s\n", ns, (int)len, policy);
    }
}

static int retention_set(struct cli *c, const char *ns)
{
    char policy[2048];
    int status = cli_check_name(ns, NULL);
    if (status == CLI_OK)
        status = policy_of_options(c, policy, sizeof policy);
    if (status != CLI_OK || (status = cli_open(c)) != CLI_OK)
        return status;
    int rc = st_retention_set(c, ns, policy, strlen(policy));
    char *json = NULL;
    size_t len = 0;
    if (rc == KD_OK)
        rc = st_retention_get(c, ns, &json, &len);
    if (rc != KD_OK)
        return cli_kd_error(c, rc, ns);
    print_policy(c, ns, json, len);
    if (!c->json)
        printf("nothing is removed until `kdelta compact` runs (or the server's upkeep does)\n");
    kd_free(json);
    return CLI_OK;
}

static int retention_show(struct cli *c, const char *ns)
{
    int status = cli_open(c);
    if (status != CLI_OK)
        return status;
    char *json = NULL;
    size_t len = 0;
    int rc = ns ? st_retention_get(c, ns, &json, &len) : st_retention_list(c, &json, &len);
    if (rc != KD_OK)
        return cli_kd_error(c, rc, ns ? ns : "retention");
    if (ns) {
        print_policy(c, ns, json, len);
    } else if (c->json) {
        printf("{\"policies\":%.*s}\n", (int)len, json);
    } else if (len <= 2) {
        printf("no retention policies: every namespace keeps its whole history\n");
    } else {
        /* {"ns":{…},"ns2":{…}} (canonical): one line per namespace */
        for (size_t i = 1; i < len && json[i] == '"';) {
            size_t name_end = i + 1;
            while (json[name_end] != '"')
                name_end += json[name_end] == '\\' ? 2 : 1;
            size_t p = name_end + 2, depth = 0, end = p; /* past the '"' and ':' */
            for (int in_str = 0; end < len; end++) {
                char ch = json[end];
                if (in_str)
                    in_str = ch == '\\' ? (end++, 1) : ch != '"';
                else if (ch == '"')
                    in_str = 1;
                else if (ch == '{' || ch == '[')
                    depth++;
                else if ((ch == '}' || ch == ']') && --depth == 0)
                    break;
            }
            printf("%.*s: %.*s\n", (int)(name_end - i - 1), json + i + 1, (int)(end + 1 - p), json + p);
            i = end + 2; /* past the '}' and ',' */
        }
    }
    kd_free(json);
    return CLI_OK;
}

int cmd_retention(struct cli *c)
{
    const char *sub = c->args[0];
    const char *ns = c->nargs > 1 ? c->args[1] : NULL;
    int wants_ns = !strcmp(sub, "set") || !strcmp(sub, "clear");
    if ((wants_ns && !ns) || (!wants_ns && strcmp(sub, "show")))
        return cli_error(CLI_USAGE, "retention", "usage: kdelta retention set NS [--keep-last N] [--keep-newer-than "
                         "DURATION] [--thin AFTER:EVERY]... | show [NS] | clear NS");
    if (strcmp(sub, "set") && (c->keep_last || c->keep_newer_than || c->n_thin))
        return cli_error(CLI_USAGE, "retention", "--keep-last, --keep-newer-than and --thin belong to `retention set`");
    int status;
    if (ns && strcmp(sub, "set") && (status = cli_check_name(ns, NULL)) != CLI_OK) /* set checks its own */
        return cli_finish_output(status);
    if (!strcmp(sub, "set")) {
        status = retention_set(c, ns);
    } else if (!strcmp(sub, "show")) {
        status = retention_show(c, ns);
    } else {
        status = cli_open(c);
        int rc = status == CLI_OK ? st_retention_clear(c, ns) : KD_OK;
        if (status == CLI_OK && rc != KD_OK)
            status = cli_kd_error(c, rc, ns);
        else if (status == CLI_OK && c->json)
            fputs("{\"namespace\":", stdout), cli_print_json_string(ns, strlen(ns)), fputs(",\"cleared\":true}\n", stdout);
        else if (status == CLI_OK)
            printf("%s: retention policy removed; its history is kept in full from now on\n", ns);
    }
    return cli_finish_output(status);
}

int cmd_compact(struct cli *c)
{
    int status = cli_open(c);
    if (status != CLI_OK)
        return cli_finish_output(status);
    kd_compact_report r;
    int rc = st_compact(c, c->dry_run, &r);
    if (rc != KD_OK)
        return cli_finish_output(cli_kd_error(c, rc, c->path ? c->path : "compact"));
    if (c->json) {
        printf("{\"dry_run\":%s,\"number\":%" PRIu64 ",\"versions_pruned\":%" PRIu64 ",\"values_freed\":%" PRIu64
               ",\"bytes_freed\":%" PRIu64 ",\"segments_rewritten\":%" PRIu64 ",\"versions_held\":%" PRIu64 "}\n",
               c->dry_run ? "true" : "false", r.number, r.versions_pruned, r.values_freed, r.bytes_freed,
               r.segments_rewritten, r.versions_held);
    } else if (!r.versions_pruned && !r.values_freed && !r.number) {
        printf("nothing to %s: no version that a retention policy drops lies in a sealed log segment with a "
               "value no kept version uses (a value still in use stays, and so does its version)\n",
               c->dry_run ? "remove" : "compact");
    } else if (!r.versions_pruned && !r.values_freed) {
        printf("compaction %" PRIu64 " recorded in _kd.compactions: nothing was left to prune, but it records that "
               "the versions of a dropped workspace went with it\n", r.number);
    } else {
        printf("%s %" PRIu64 " version%s: %" PRIu64 " value%s, %" PRIu64 " bytes of log, in %" PRIu64 " segment%s\n",
               c->dry_run ? "would prune" : "pruned", r.versions_pruned, r.versions_pruned == 1 ? "" : "s",
               r.values_freed, r.values_freed == 1 ? "" : "s", r.bytes_freed, r.segments_rewritten,
               r.segments_rewritten == 1 ? "" : "s");
        if (!c->dry_run)
            printf("compaction %" PRIu64 " recorded in _kd.compactions; `kdelta verify` accounts for every pruned "
                   "version\n", r.number);
    }
    if (!c->json && r.versions_held)
        printf("%" PRIu64 " more version%s wait in the newest log segment, which is compacted once it is sealed\n",
               r.versions_held, r.versions_held == 1 ? "" : "s");
    return cli_finish_output(CLI_OK);
}

int cmd_consolidate(struct cli *c)
{
    int status = cli_open(c);
    if (status != CLI_OK)
        return cli_finish_output(status);
    kd_consolidate_report r;
    int rc = st_consolidate(c, c->older_than, &r);
    if (rc != KD_OK)
        return cli_finish_output(cli_kd_error(c, rc, c->path ? c->path : "consolidate"));
    if (c->json) {
        printf("{\"segments\":%" PRIu64 ",\"values_compressed\":%" PRIu64 ",\"value_bytes_before\":%" PRIu64
               ",\"value_bytes_after\":%" PRIu64 ",\"bytes_saved\":%" PRIu64 ",\"dictionary\":%u,"
               "\"dictionary_trained\":%s}\n",
               r.segments, r.values_compressed, r.value_bytes_before, r.value_bytes_after, r.bytes_saved,
               r.dictionary, r.dictionary_trained ? "true" : "false");
    } else if (!r.segments) {
        printf("nothing to consolidate: every sealed log segment old enough is consolidated already\n");
    } else {
        printf("consolidated %" PRIu64 " segment%s: %" PRIu64 " value%s compressed from %" PRIu64 " to %" PRIu64
               " bytes; %" PRIu64 " bytes of log freed\n",
               r.segments, r.segments == 1 ? "" : "s", r.values_compressed, r.values_compressed == 1 ? "" : "s",
               r.value_bytes_before, r.value_bytes_after, r.bytes_saved);
        if (r.dictionary)
            printf("dictionary zdict-%08u%s\n", r.dictionary, r.dictionary_trained ? " (trained from this database's "
                   "values now)" : "");
    }
    return cli_finish_output(CLI_OK);
}
