/*
 * backup.c — `kdelta backup FILE [--at TIME] [--incremental --since PREV]`,
 * `kdelta backup info FILE` and `kdelta restore FILE [INCREMENTAL...]
 * --db DIR`, over kd_backup, kd_backup_info_read and kd_restore.
 *
 * A backup reads the database directory (it opens the database, or uses the
 * shell's open handle: writes may go on meanwhile), so it runs where the
 * database is; with --url both commands refuse, like repair.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *kind_name(int kind)
{
    return kind == KD_BACKUP_FULL ? "full" : "incremental";
}

static int zero_hex(const char *hex)
{
    for (; *hex; hex++)
        if (*hex != '0')
            return 0;
    return 1;
}

static void human_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " bytes", n);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
}

static void print_pos_json(const kd_backup_pos *p)
{
    char t[48];
    fputs("{\"timestamp\":", stdout);
    if (p->timestamp)
        printf("\"%s\"", cli_time_utc(p->timestamp, t));
    else
        fputs("null", stdout);
    printf(",\"txns\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"roots\":{\"storage\":\"%s\"", p->txns, p->writes,
           p->storage_root);
    if (!zero_hex(p->views_root))
        printf(",\"views\":\"%s\"", p->views_root);
    if (!zero_hex(p->vectors_root))
        printf(",\"vectors\":\"%s\"", p->vectors_root);
    printf(",\"field\":\"%s\"}}", p->field_root);
}

/* The members every answer shares, after "{". */
static void print_info_json(const kd_backup_info *i)
{
    char t[48];
    printf("\"kind\":\"%s\",\"node_id\":\"%s\",\"created\":\"%s\",\"base\":", kind_name(i->kind), i->node_id,
           cli_time_utc(i->created, t));
    print_pos_json(&i->base);
    fputs(",\"end\":", stdout);
    print_pos_json(&i->end);
    printf(",\"txns\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"log_bytes\":%" PRIu64 ",\"file_bytes\":%" PRIu64,
           i->txns, i->writes, i->log_bytes, i->file_bytes);
}

static void print_pos_human(const struct cli *c, const char *label, const kd_backup_pos *p)
{
    char t[48];
    if (!p->timestamp) {
        printf("%-10s the empty log\n", label);
        return;
    }
    printf("%-10s %s (%" PRIu64 " transaction%s, %" PRIu64 " write%s from the start)\n", label,
           cli_time(p->timestamp, t), p->txns, p->txns == 1 ? "" : "s", p->writes, p->writes == 1 ? "" : "s");
    printf("%-10s field %s\n", "", p->field_root);
    (void)c;
}

static int backup_info(struct cli *c, const char *file)
{
    kd_backup_info i;
    char err[4400];
    int rc = kd_backup_info_read(file, &i, err, sizeof err);
    if (rc)
        return cli_finish_output(cli_error(cli_exit_status(rc), file, "%s", err));
    if (c->json) {
        fputs("{\"file\":", stdout);
        cli_print_json_string(file, strlen(file));
        fputc(',', stdout);
        print_info_json(&i);
        fputs("}\n", stdout);
        return cli_finish_output(CLI_OK);
    }
    char t[48], lb[32], fb[32];
    human_bytes(i.log_bytes, lb, sizeof lb);
    human_bytes(i.file_bytes, fb, sizeof fb);
    printf("%-10s %s\n", "file", file);
    printf("%-10s %s\n", "kind", kind_name(i.kind));
    printf("%-10s %s\n", "node", i.node_id);
    printf("%-10s %s\n", "created", cli_time(i.created, t));
    if (i.kind == KD_BACKUP_INCREMENTAL)
        print_pos_human(c, "since", &i.base);
    print_pos_human(c, "up to", &i.end);
    printf("%-10s %" PRIu64 " transaction%s, %" PRIu64 " write%s, %s of log in %s\n", "holds", i.txns,
           i.txns == 1 ? "" : "s", i.writes, i.writes == 1 ? "" : "s", lb, fb);
    return cli_finish_output(CLI_OK);
}

int cmd_backup(struct cli *c)
{
    int status = cli_local_only(c);
    if (status != CLI_OK)
        return status;
    if (c->nargs == 2 && strcmp(c->args[0], "info") == 0) {
        if (c->at || c->since || c->incremental)
            return cli_error(CLI_USAGE, "backup info", "takes no options but --json (usage: kdelta backup info FILE)");
        return backup_info(c, c->args[1]);
    }
    if (c->nargs != 1)
        return cli_error(CLI_USAGE, "backup",
                         "usage: kdelta backup FILE [--at TIME] [--incremental --since PREVIOUS] | backup info FILE");
    if (c->incremental != (c->since != NULL))
        return cli_error(CLI_USAGE, "backup",
                         c->incremental ? "--incremental needs --since PREVIOUS (the backup it continues)"
                                        : "--since PREVIOUS makes an incremental backup: add --incremental");
    kd_backup_options o;
    memset(&o, 0, sizeof o);
    o.since = c->since;
    if (c->at) {
        char err[256];
        if (kd_time_parse(c->at, &o.at, err, sizeof err) != KD_OK)
            return cli_error(CLI_INVALID, "--at", "%s", err);
        if (o.at <= 0)
            return cli_error(CLI_INVALID, "--at", "the time must be after 1970-01-01");
    }
    const char *file = c->args[0];
    if ((status = cli_open(c)) != CLI_OK)
        return cli_finish_output(status);
    kd_backup_info i;
    int rc = kd_backup(c->db, file, &o, &i);
    if (rc != KD_OK)
        return cli_finish_output(cli_error(cli_exit_status(rc), file, "backup failed: %s",
                                           kd_errmsg(c->db)[0] ? kd_errmsg(c->db) : kd_strerror(rc)));
    if (c->json) {
        fputs("{\"file\":", stdout);
        cli_print_json_string(file, strlen(file));
        fputc(',', stdout);
        print_info_json(&i);
        fputs("}\n", stdout);
        return cli_finish_output(CLI_OK);
    }
    char t[48], lb[32], fb[32];
    human_bytes(i.log_bytes, lb, sizeof lb);
    human_bytes(i.file_bytes, fb, sizeof fb);
    printf("%s backup %s: %" PRIu64 " transaction%s, %" PRIu64 " write%s, %s of log in %s", kind_name(i.kind), file,
           i.txns, i.txns == 1 ? "" : "s", i.writes, i.writes == 1 ? "" : "s", lb, fb);
    if (i.file_bytes && i.log_bytes)
        printf(" (%.1fx)", (double)i.log_bytes / (double)i.file_bytes);
    printf("\n");
    if (i.end.timestamp)
        printf("up to %s, field root %s\n", cli_time(i.end.timestamp, t), i.end.field_root);
    else
        printf("the database is empty\n");
    return cli_finish_output(CLI_OK);
}

int cmd_restore(struct cli *c)
{
    int status = cli_local_only(c);
    if (status != CLI_OK)
        return status;
    char *dir = cli_db_dir(c, &status);
    if (!dir)
        return status;
    if (c->db && c->path && strcmp(c->path, dir) == 0) {
        free(dir);
        return cli_error(CLI_USAGE, "restore",
                         "cannot restore into the database the shell holds open; give another --db DIR");
    }
    kd_backup_info i;
    char err[4400];
    int rc = kd_restore((const char *const *)c->args, (size_t)c->nargs, dir, &i, err, sizeof err);
    if (rc != KD_OK) {
        status = cli_error(cli_exit_status(rc), dir, "restore failed: %s", err);
        free(dir);
        return cli_finish_output(status);
    }
    if (c->json) {
        fputs("{\"db\":", stdout);
        cli_print_json_string(dir, strlen(dir));
        printf(",\"files\":%d,", c->nargs);
        print_info_json(&i);
        fputs("}\n", stdout);
    } else {
        char t[48], lb[32];
        human_bytes(i.log_bytes, lb, sizeof lb);
        printf("restored %s from %d file%s: %" PRIu64 " transaction%s, %" PRIu64 " write%s, %s of log\n", dir,
               c->nargs, c->nargs == 1 ? "" : "s", i.txns, i.txns == 1 ? "" : "s", i.writes,
               i.writes == 1 ? "" : "s", lb);
        if (i.end.timestamp)
            printf("up to %s, field root %s (checked)\n", cli_time(i.end.timestamp, t), i.end.field_root);
        printf("the restored database has its own new node id\n");
    }
    free(dir);
    return cli_finish_output(CLI_OK);
}
