/*
 * commands.c — the commands that touch one key: set, get, delete.
 *
 * Each validates its arguments first (NS/KEY, VALUE, TIME), then opens the
 * database, calls the public API once and prints the result: a short line
 * for people, or with --json the version record (DESIGN.md §2).
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

/* Short form of an id for people: the first 12 hex digits. */
static const char *short_id(const char *id, char *buf)
{
    size_t n = strnlen(id, 12);
    memcpy(buf, id, n);
    buf[n] = '\0';
    return buf;
}

/* "Not found" for a key that has no versions, or whose versions went with
 * its workspace (dropped, compacted, then made again): the history says. */
static int report_absent(struct cli *c, const char *ns, const char *key, const char *shown)
{
    kd_version *first = NULL;
    size_t n = 0;
    int had = st_history(c, ns, key, KD_TIME_MIN, KD_TIME_MAX, 1, 0, &first, &n) == KD_OK && n > 0;
    kd_free(first);
    if (had)
        return cli_error(CLI_NOTFOUND, shown,
                         "not found: its versions were removed when its workspace was dropped (and compacted)");
    return cli_error(CLI_NOTFOUND, shown, "not found: never written");
}

/* The not-found family, with what exactly was not found. */
static int report_missing(struct cli *c, int rc, const char *ns, const char *key, const char *shown,
                          const kd_version *meta, int64_t at)
{
    char t1[40], t2[40];
    if (rc == KD_ENOTFOUND)
        return report_absent(c, ns, key, shown);
    if (rc == KD_EDELETED) {
        if (meta && meta->write_id[0])
            return cli_error(CLI_NOTFOUND, shown, "not found: deleted at %s (write %s)", cli_time(meta->timestamp, t1),
                             meta->write_id);
        return cli_error(CLI_NOTFOUND, shown, "not found: deleted");
    }
    if (rc == KD_ENOVERSION) {
        /* Say when the first version is, so the user can pick a better time. */
        kd_version *first = NULL;
        size_t n = 0;
        int status;
        if (st_history(c, ns, key, KD_TIME_MIN, KD_TIME_MAX, 1, 0, &first, &n) == KD_OK && n > 0)
            status = cli_error(CLI_NOTFOUND, shown, "not found: no version at or before %s (the first is at %s)",
                               cli_time(at, t1), cli_time(first[0].timestamp, t2));
        else
            status = cli_error(CLI_NOTFOUND, shown, "not found: no version at or before %s", cli_time(at, t1));
        kd_free(first);
        return status;
    }
    return cli_kd_error(c, rc, shown);
}

/* The value is JSON: checked before the database is opened, so that a typo
 * never creates one (the library checks it again as it stores it). */
/* The canonical form of `set`'s value (kd_free it), made before the
 * database is opened, so that bad JSON never creates one. It is what is
 * sent: over --url, the whitespace of a pretty-printed value does not count
 * against the server's body cap. */
static int canonical_value(const char *value, size_t len, const char *shown, char **canon, size_t *clen)
{
    char err[512];
    int rc = kd_json_canonical(value, len, canon, clen, err, sizeof err);
    return rc == KD_OK ? CLI_OK : cli_error(cli_exit_status(rc), shown, "%s", rc == KD_EINVALID ? err : kd_strerror(rc));
}

int cmd_set(struct cli *c)
{
    char *ns = NULL, *key = NULL, *value = NULL, *shown = NULL, *canon = NULL;
    size_t len = 0, canon_len = 0;
    int status = cli_split_name(c->args[0], &ns, &key);
    if (status != CLI_OK)
        goto done;
    shown = cli_display(ns, key, 0);
    status = cli_read_value(c->args[1], shown, &value, &len);
    if (status != CLI_OK)
        goto done;
    if ((status = canonical_value(value, len, shown, &canon, &canon_len)) != CLI_OK || (status = cli_open(c)) != CLI_OK)
        goto done;

    kd_version v;
    int rc = st_put(c, ns, key, canon, canon_len, &v);
    if (rc != KD_OK) {
        status = cli_kd_error(c, rc, shown);
        goto done;
    }
    if (c->json) {
        char *stored = NULL;
        size_t clen = 0;
        rc = st_get_value(c, v.version_id, &stored, &clen);
        if (rc != KD_OK) {
            status = cli_kd_error(c, rc, shown);
            goto done;
        }
        status = cli_print_record(c, ns, key, stored, clen, &v);
        kd_free(stored);
    } else {
        char a[16], b[16], t[40];
        printf("%s  version %s  write %s  at %s\n", shown, short_id(v.version_id, a), short_id(v.write_id, b),
               cli_time(v.timestamp, t));
    }
done:
    free(ns);
    free(key);
    free(value);
    kd_free(canon);
    free(shown);
    return cli_finish_output(status);
}

int cmd_get(struct cli *c)
{
    char *ns = NULL, *key = NULL, *shown = NULL, *json = NULL;
    size_t len = 0;
    int64_t at = 0;
    int status = cli_split_name(c->args[0], &ns, &key);
    if (status != CLI_OK)
        goto done;
    if (c->at) {
        char err[512];
        if (kd_time_parse(c->at, &at, err, sizeof err) != KD_OK) {
            status = cli_error(CLI_INVALID, "--at", "%s", err);
            goto done;
        }
    }
    shown = cli_display(ns, key, 0);
    if ((status = cli_open(c)) != CLI_OK)
        goto done;

    kd_version v;
    memset(&v, 0, sizeof v);
    int rc = c->at ? st_get_at(c, ns, key, at, &json, &len, &v) : st_get(c, ns, key, &json, &len, &v);
    if (rc != KD_OK) {
        status = report_missing(c, rc, ns, key, shown, &v, at);
        goto done;
    }
    if (c->json) {
        status = cli_print_record(c, ns, key, json, len, &v);
    } else {
        fwrite(json, 1, len, stdout);
        fputc('\n', stdout);
    }
done:
    kd_free(json);
    free(ns);
    free(key);
    free(shown);
    return cli_finish_output(status);
}

int cmd_delete(struct cli *c)
{
    char *ns = NULL, *key = NULL, *shown = NULL;
    int status = cli_split_name(c->args[0], &ns, &key);
    if (status != CLI_OK)
        goto done;
    shown = cli_display(ns, key, 0);
    if ((status = cli_open(c)) != CLI_OK)
        goto done;

    kd_version v;
    memset(&v, 0, sizeof v);
    int rc = st_delete(c, ns, key, &v);
    if (rc == KD_ENOTFOUND) {
        status = report_absent(c, ns, key, shown);
    } else if (rc == KD_EDELETED) {
        status = cli_error(CLI_NOTFOUND, shown, "not found: already deleted");
    } else if (rc != KD_OK) {
        status = cli_kd_error(c, rc, shown);
    } else if (c->json) {
        status = cli_print_record(c, ns, key, NULL, 0, &v);
    } else {
        char b[16], t[40];
        printf("%s  deleted  write %s  at %s\n", shown, short_id(v.write_id, b), cli_time(v.timestamp, t));
    }
done:
    free(ns);
    free(key);
    free(shown);
    return cli_finish_output(status);
}
