/*
 * log.c — `kdelta log NS/KEY`: the history of one key, newest first like
 * `git log` (oldest first with --reverse), as blocks for people or, with
 * --json, as a JSON array of version records with their values.
 *
 * --limit N keeps the newest N versions; --reverse only changes the order
 * they are shown in (as in git).
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

/* Value of one version (NULL for a tombstone); kd_free() it. */
static int version_value(struct cli *c, const kd_version *v, const char *shown, char **val, size_t *len)
{
    *val = NULL;
    *len = 0;
    if (v->deleted || v->pruned)
        return CLI_OK;
    int rc = st_get_value(c, v->version_id, val, len);
    if (rc != KD_OK) {
        char what[1200];
        snprintf(what, sizeof what, "%s: version %s", shown, v->version_id);
        return cli_kd_error(c, rc, what);
    }
    return CLI_OK;
}

static void print_block(struct cli *c, const kd_version *v, const char *val, size_t len, int first)
{
    char t[40];
    const char *reset = cli_sgr(c, CLI_RESET);
    if (!first)
        fputc('\n', stdout);
    printf("write    %s%s%s\n", cli_sgr(c, CLI_YELLOW), v->write_id, reset);
    printf("time     %s\n", cli_time(v->timestamp, t));
    if (v->deleted)
        printf("version  %sdeleted%s\n", cli_sgr(c, CLI_RED), reset);
    else
        printf("version  %s\n", v->version_id);
    printf("parent   %s\n", v->previous_write_id[0] ? v->previous_write_id : "none");
    if (v->pruned) {
        printf("value    %s(removed %s)%s\n", cli_sgr(c, CLI_DIM),
               v->pruned == KD_PRUNED_WORKSPACE ? "with its dropped workspace" : "by retention", reset);
    } else if (!v->deleted) {
        fputs("value    ", stdout);
        fwrite(val, 1, len, stdout);
        fputc('\n', stdout);
    }
}

int cmd_log(struct cli *c)
{
    char *ns = NULL, *key = NULL, *shown = NULL;
    kd_version *vs = NULL;
    size_t n = 0;
    int status = cli_split_name(c->args[0], &ns, &key);
    if (status != CLI_OK)
        goto done;
    shown = cli_display(ns, key, 0);
    if ((status = cli_open(c)) != CLI_OK)
        goto done;

    int rc = st_history(c, ns, key, KD_TIME_MIN, KD_TIME_MAX, (size_t)c->limit, KD_HISTORY_NEWEST_FIRST, &vs, &n);
    if (rc == KD_ENOTFOUND) {
        status = cli_error(CLI_NOTFOUND, shown, "not found: never written");
        goto done;
    }
    if (rc != KD_OK) {
        status = cli_kd_error(c, rc, shown);
        goto done;
    }
    if (c->json)
        fputs(n ? "[\n" : "[", stdout);
    for (size_t i = 0; i < n; i++) {
        const kd_version *v = &vs[c->reverse ? n - 1 - i : i];
        char *val;
        size_t len;
        if ((status = version_value(c, v, shown, &val, &len)) != CLI_OK)
            goto done;
        if (c->json) {
            char *rec = NULL;
            size_t reclen = 0;
            rc = kd_version_json(ns, key, val, len, v, &rec, &reclen);
            kd_free(val);
            if (rc != KD_OK) {
                status = cli_error(cli_exit_status(rc), shown, "cannot format the version record: %s",
                                   kd_strerror(rc));
                goto done;
            }
            fwrite(rec, 1, reclen, stdout);
            fputs(i + 1 < n ? ",\n" : "\n", stdout);
            kd_free(rec);
        } else {
            print_block(c, v, val, len, i == 0);
            kd_free(val);
        }
    }
    if (c->json)
        fputs("]\n", stdout);
done:
    kd_free(vs);
    free(ns);
    free(key);
    free(shown);
    return cli_finish_output(status);
}
