/*
 * repair.c — `kdelta repair`: salvage a damaged database with kd_repair,
 * printing every lost record and version, then a summary. The database must
 * not be open anywhere (repair takes its lock like any other command).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_lost(void *ctx, const char *description)
{
    struct cli *c = ctx;
    if (c->json) {
        fputs("{\"lost\":", stdout);
        cli_print_json_string(description, strlen(description));
        fputs("}\n", stdout);
    } else {
        printf("lost: %s\n", description);
    }
}

int cmd_repair(struct cli *c)
{
    int status = cli_local_only(c);
    if (status != CLI_OK)
        return status;
    if (c->db) /* inside `kdelta shell`, which holds the database open */
        return cli_error(CLI_USAGE, "repair",
                         "cannot run inside the shell, which holds the database open; leave the shell and run "
                         "`kdelta repair`");
    char *dir = cli_db_dir(c, &status);
    if (!dir)
        return status;
    kd_options *opts = kd_options_new();
    if (!opts) {
        free(dir);
        return cli_error(CLI_ERROR, "kdelta", "out of memory");
    }
    if (c->busy_ms >= 0)
        kd_options_set_busy_timeout(opts, (uint32_t)c->busy_ms);
    kd_repair_report r;
    char kept[4200], err[4400];
    int rc = kd_repair(dir, opts, print_lost, c, &r, kept, sizeof kept, err, sizeof err);
    kd_options_free(opts);
    if (rc != KD_OK) {
        status = cli_error(cli_exit_status(rc), dir, "repair failed: %s", err);
        free(dir);
        return cli_finish_output(status);
    }
    int changed = kept[0] != '\0';
    if (c->json) {
        printf("{\"repaired\":%s,\"segments\":%" PRIu64 ",\"records_kept\":%" PRIu64 ",\"records_lost\":%" PRIu64
               ",\"versions_kept\":%" PRIu64 ",\"versions_lost\":%" PRIu64 ",\"keys_affected\":%" PRIu64
               ",\"compactions_recorded\":%" PRIu64 ",\"segments_lost\":%" PRIu64 ",\"new_node_id\":",
               changed ? "true" : "false", r.segments, r.records_kept, r.records_lost, r.versions_kept,
               r.versions_lost, r.keys_affected, r.compactions_recorded, r.segments_lost);
        if (r.new_node_id[0])
            printf("\"%s\"", r.new_node_id); /* hex digits: nothing to escape */
        else
            fputs("null", stdout);
        fputs(",\"damaged_copy\":", stdout);
        if (changed)
            cli_print_json_string(kept, strlen(kept));
        else
            fputs("null", stdout);
        fputs("}\n", stdout);
    } else if (!changed) {
        printf("%s: nothing to repair (%" PRIu64 " version%s in %" PRIu64 " segment%s are intact)\n", dir,
               r.versions_kept, r.versions_kept == 1 ? "" : "s", r.segments, r.segments == 1 ? "" : "s");
    } else {
        printf("repaired %s: kept %" PRIu64 " version%s; lost %" PRIu64 " record%s and %" PRIu64
               " later version%s of %" PRIu64 " key%s\n",
               dir, r.versions_kept, r.versions_kept == 1 ? "" : "s", r.records_lost, r.records_lost == 1 ? "" : "s",
               r.versions_lost, r.versions_lost == 1 ? "" : "s", r.keys_affected, r.keys_affected == 1 ? "" : "s");
        if (r.segments_lost)
            printf("and %" PRIu64 " whole segment%s missing from the log, whose records cannot be counted\n",
                   r.segments_lost, r.segments_lost == 1 ? " was" : "s were");
        if (r.compactions_recorded)
            printf("recorded %" PRIu64 " compaction%s anew whose record was missing or no longer matched (written by "
                   "repair, counting the pruned writes salvaged)\n",
                   r.compactions_recorded, r.compactions_recorded == 1 ? "" : "s");
        if (r.new_node_id[0])
            printf("the database has a new node id %s (NODE was damaged or missing)\n", r.new_node_id);
        printf("the damaged files are kept in %s\n", kept);
    }
    free(dir);
    return cli_finish_output(status);
}
