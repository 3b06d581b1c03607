/*
 * backup.c — `kdelta backup FILE [--at TIME] [--incremental --since PREV |
 * --current-only]`,
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
#include "remote.h"
#include "store.h"

static const char *kind_name(int kind)
{
    return kind == KD_BACKUP_FULL ? "full" : kind == KD_BACKUP_CURRENT_ONLY ? "current-only" : "incremental";
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

/* {"file": FILE, …the members of kd_backup_info_json…} and a newline. */
static int print_info_json(const char *file, const kd_backup_info *i)
{
    char *json = NULL;
    size_t len = 0;
    if (kd_backup_info_json(i, &json, &len) != KD_OK)
        return cli_error(CLI_ERROR, "kdelta", "out of memory");
    fputs("{\"file\":", stdout);
    cli_print_json_string(file, strlen(file));
    printf(",%s\n", json + 1);
    kd_free(json);
    return CLI_OK;
}

/* The answer of POST /api/v1/backup (kd_backup_info_json plus "file") back
 * into *i. 0, or -1 when a member is missing. */
static int info_from_json(const char *j, size_t len, kd_backup_info *i)
{
    memset(i, 0, sizeof *i);
    struct {
        const char *path;
        char *dst;
        size_t size;
    } strs[] = {
        {"node_id", i->node_id, sizeof i->node_id},
        {"base.roots.storage", i->base.storage_root, KD_ID_HEX}, {"base.roots.views", i->base.views_root, KD_ID_HEX},
        {"base.roots.vectors", i->base.vectors_root, KD_ID_HEX}, {"base.roots.auth", i->base.auth_root, KD_ID_HEX},
        {"base.roots.field", i->base.field_root, KD_ID_HEX},
        {"end.roots.storage", i->end.storage_root, KD_ID_HEX}, {"end.roots.views", i->end.views_root, KD_ID_HEX},
        {"end.roots.vectors", i->end.vectors_root, KD_ID_HEX}, {"end.roots.auth", i->end.auth_root, KD_ID_HEX},
        {"end.roots.field", i->end.field_root, KD_ID_HEX},
    };
    for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) {
        const char *v;
        size_t vl;
        char *text = NULL;
        size_t tl;
        if (kd_json_path(j, len, strs[k].path, &v, &vl) != KD_OK) {
            if (strstr(strs[k].path, "views") || strstr(strs[k].path, "vectors") || strstr(strs[k].path, "auth")) {
                /* absent: all zero */
                memset(strs[k].dst, '0', KD_ID_HEX - 1);
                strs[k].dst[KD_ID_HEX - 1] = '\0';
                continue;
            }
            return -1;
        }
        if (kd_json_unquote(v, vl, &text, &tl) != KD_OK)
            return -1;
        snprintf(strs[k].dst, strs[k].size, "%s", text);
        kd_free(text);
    }
    struct {
        const char *path;
        uint64_t *dst;
    } nums[] = {
        {"base.txns", &i->base.txns}, {"base.writes", &i->base.writes}, {"end.txns", &i->end.txns},
        {"end.writes", &i->end.writes}, {"txns", &i->txns}, {"writes", &i->writes},
        {"log_bytes", &i->log_bytes}, {"file_bytes", &i->file_bytes},
    };
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        const char *v;
        size_t vl;
        if (kd_json_path(j, len, nums[k].path, &v, &vl) != KD_OK)
            return -1;
        *nums[k].dst = strtoull(v, NULL, 10);
    }
    struct {
        const char *path;
        int64_t *dst;
    } times[] = {{"created", &i->created}, {"base.timestamp", &i->base.timestamp}, {"end.timestamp", &i->end.timestamp}};
    for (size_t k = 0; k < sizeof times / sizeof times[0]; k++) {
        const char *v;
        size_t vl;
        char *text = NULL;
        size_t tl;
        if (kd_json_path(j, len, times[k].path, &v, &vl) != KD_OK)
            return -1;
        if (vl == 4 && !memcmp(v, "null", 4))
            continue;
        int bad = kd_json_unquote(v, vl, &text, &tl) != KD_OK || kd_time_parse(text, times[k].dst, NULL, 0) != KD_OK;
        kd_free(text);
        if (bad)
            return -1;
    }
    const char *v;
    size_t vl;
    if (kd_json_path(j, len, "kind", &v, &vl) != KD_OK)
        return -1;
    i->kind = vl == 6 && !memcmp(v, "\"full\"", 6)              ? KD_BACKUP_FULL
              : vl == 14 && !memcmp(v, "\"current-only\"", 14) ? KD_BACKUP_CURRENT_ONLY
                                                              : KD_BACKUP_INCREMENTAL;
    return 0;
}

/* With --url: POST /api/v1/backup. FILE and PREVIOUS name files of the
 * server's --backup-dir. */
static int remote_backup(struct cli *c, const char *file, kd_backup_info *i, char **server_path, char **answer,
                         size_t *alen)
{
    char *q = NULL;
    size_t ql;
    char body[8400];
    size_t bl = 0;
    const char *names[3] = {"file", "at", "since"};
    const char *vals[3] = {file, c->at, c->since};
    bl += (size_t)snprintf(body + bl, sizeof body - bl, "{");
    for (int k = 0; k < 3; k++) {
        if (!vals[k])
            continue;
        if (kd_json_quote(vals[k], strlen(vals[k]), &q, &ql) != KD_OK || ql > 2000)
            return cli_error(CLI_INVALID, names[k], "too long");
        bl += (size_t)snprintf(body + bl, sizeof body - bl, "%s\"%s\":%s", bl > 1 ? "," : "", names[k], q);
        kd_free(q);
    }
    if (c->current_only)
        bl += (size_t)snprintf(body + bl, sizeof body - bl, "%s\"current_only\":true", bl > 1 ? "," : "");
    bl += (size_t)snprintf(body + bl, sizeof body - bl, "}");
    int rc = st_backup_call(c, body, bl, answer, alen);
    if (rc != KD_OK)
        return cli_kd_error(c, rc, file);
    char *p = rj_string(*answer, *alen, "file");
    if (!p || info_from_json(*answer, *alen, i) != 0) {
        free(p);
        return cli_error(CLI_ERROR, c->path, "the server's answer to the backup is not understood");
    }
    *server_path = p;
    return CLI_OK;
}

static void print_pos_human(const char *label, const kd_backup_pos *p)
{
    char t[48];
    if (!p->timestamp) {
        printf("%-10s the empty log\n", label);
        return;
    }
    printf("%-10s %s (%" PRIu64 " transaction%s, %" PRIu64 " write%s from the start)\n", label,
           cli_time(p->timestamp, t), p->txns, p->txns == 1 ? "" : "s", p->writes, p->writes == 1 ? "" : "s");
    printf("%-10s field %s\n", "", p->field_root);
}

static int backup_info(struct cli *c, const char *file)
{
    kd_backup_info i;
    char err[4400];
    int rc = kd_backup_info_read(file, &i, err, sizeof err);
    if (rc)
        return cli_finish_output(cli_error(cli_exit_status(rc), "backup info", "%s", err)); /* err names the file */
    if (c->json)
        return cli_finish_output(print_info_json(file, &i));
    char t[48], lb[32], fb[32];
    human_bytes(i.log_bytes, lb, sizeof lb);
    human_bytes(i.file_bytes, fb, sizeof fb);
    printf("%-10s %s\n", "file", file);
    printf("%-10s %s\n", "kind", kind_name(i.kind));
    printf("%-10s %s\n", "node", i.node_id);
    printf("%-10s %s\n", "created", cli_time(i.created, t));
    if (i.kind == KD_BACKUP_INCREMENTAL)
        print_pos_human("since", &i.base);
    print_pos_human("up to", &i.end);
    printf("%-10s %" PRIu64 " transaction%s, %" PRIu64 " write%s, %s of log in %s\n", "holds", i.txns,
           i.txns == 1 ? "" : "s", i.writes, i.writes == 1 ? "" : "s", lb, fb);
    return cli_finish_output(CLI_OK);
}

int cmd_backup(struct cli *c)
{
    int status;
    if (c->nargs == 2 && strcmp(c->args[0], "info") == 0) {
        /* a file on this machine, whether or not --url is given */
        if (c->at || c->since || c->incremental || c->current_only)
            return cli_error(CLI_USAGE, "backup info", "takes no options but --json (usage: kdelta backup info FILE)");
        return backup_info(c, c->args[1]);
    }
    if (c->nargs == 1 && strcmp(c->args[0], "info") == 0) /* a file named info is ./info */
        return cli_error(CLI_USAGE, "backup info", "needs the backup FILE to describe (usage: kdelta backup info FILE)");
    if (c->nargs != 1)
        return cli_error(CLI_USAGE, "backup",
                         "usage: kdelta backup FILE [--at TIME] [--incremental --since PREVIOUS | --current-only] | "
                         "backup info FILE");
    if (c->incremental != (c->since != NULL))
        return cli_error(CLI_USAGE, "backup",
                         c->incremental ? "--incremental needs --since PREVIOUS (the backup it continues)"
                                        : "--since PREVIOUS makes an incremental backup: add --incremental");
    if (c->current_only && c->incremental)
        return cli_error(CLI_USAGE, "backup", "--current-only makes a full backup: it cannot be --incremental");
    kd_backup_options o;
    memset(&o, 0, sizeof o);
    o.since = c->since;
    o.current_only = c->current_only;
    if (c->at) {
        char err[256];
        if (kd_time_parse(c->at, &o.at, err, sizeof err) != KD_OK)
            return cli_error(CLI_INVALID, "--at", "%s", err);
        if (o.at <= 0)
            return cli_error(CLI_INVALID, "--at", "the time must be after 1970-01-01");
    }
    const char *file = c->args[0];
    if (c->url && strchr(file, '/'))
        return cli_error(CLI_USAGE, file,
                         "with --url, FILE (and PREVIOUS) name files in the server's --backup-dir: no '/'");
    if ((status = cli_open(c)) != CLI_OK)
        return cli_finish_output(status);
    kd_backup_info i;
    char *answer = NULL, *where = NULL;
    size_t alen = 0;
    if (c->remote) {
        status = remote_backup(c, file, &i, &where, &answer, &alen);
        if (status != CLI_OK) {
            free(answer);
            return cli_finish_output(status);
        }
    } else {
        int rc = kd_backup(c->db, file, &o, &i);
        if (rc != KD_OK)
            return cli_finish_output(cli_error(cli_exit_status(rc), file, "backup failed: %s",
                                               kd_errmsg(c->db)[0] ? kd_errmsg(c->db) : kd_strerror(rc)));
        where = xstrdup(file);
    }
    if (c->json) {
        status = print_info_json(where, &i);
    } else {
        char t[48], lb[32], fb[32];
        human_bytes(i.log_bytes, lb, sizeof lb);
        human_bytes(i.file_bytes, fb, sizeof fb);
        printf("%s backup %s: %" PRIu64 " transaction%s, %" PRIu64 " write%s, %s of log in %s",
               kind_name(i.kind), where, i.txns, i.txns == 1 ? "" : "s", i.writes,
               i.writes == 1 ? "" : "s", lb, fb);
        if (i.file_bytes && i.log_bytes)
            printf(" (%.1fx)", (double)i.log_bytes / (double)i.file_bytes);
        printf("\n");
        if (i.end.timestamp)
            printf("up to %s, field root %s\n", cli_time(i.end.timestamp, t), i.end.field_root);
        else if (c->at)
            printf("no transaction has all its writes at or before %s: the backup holds no writes\n", c->at);
        else
            printf("the database is empty\n");
    }
    free(answer);
    free(where);
    return cli_finish_output(status);
}

int cmd_restore(struct cli *c)
{
    int status = cli_local_only(c);
    if (status != CLI_OK)
        return status;
    if (c->db) /* inside `kdelta shell`: its database is the target, and --db cannot change there */
        return cli_error(CLI_USAGE, "restore",
                         "cannot run inside the shell, which holds the database open; leave the shell and run "
                         "`kdelta restore FILE... --db NEW_DIR`");
    char *dir = cli_db_dir(c, &status);
    if (!dir)
        return status;
    kd_backup_info i;
    char err[4400];
    int rc = kd_restore((const char *const *)c->args, (size_t)c->nargs, dir, &i, err, sizeof err);
    if (rc != KD_OK) {
        status = cli_error(cli_exit_status(rc), dir, "restore failed: %s", err);
        free(dir);
        return cli_finish_output(status);
    }
    if (c->json) {
        char *json = NULL;
        size_t len = 0;
        if (kd_backup_info_json(&i, &json, &len) != KD_OK) {
            free(dir);
            return cli_error(CLI_ERROR, "kdelta", "out of memory");
        }
        fputs("{\"db\":", stdout);
        cli_print_json_string(dir, strlen(dir));
        printf(",\"files\":%d,%s\n", c->nargs, json + 1);
        kd_free(json);
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
