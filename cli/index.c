/*
 * index.c — `kdelta index create|list|drop`: secondary indexes on one
 * field of one namespace.
 *
 * An index changes how fast `kdelta query` answers eq, in and range
 * filters on its field, never what it answers. Definitions live in the
 * database, so an index made by one command serves every later one.
 * Unknown index: exit 3; one that exists already: exit 6 (conflict); a bad
 * field path or a reserved namespace: exit 4.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

static int index_create(struct cli *c);
static int index_list(struct cli *c);
static int index_drop(struct cli *c);

static const struct {
    const char *name;
    int (*run)(struct cli *c);
    int min_args, max_args; /* after the subcommand */
    const char *usage;
} subs[] = {
    {"create", index_create, 2, 2, "NS FIELD"},
    {"list", index_list, 0, 1, "[NS]"},
    {"drop", index_drop, 2, 2, "NS FIELD"},
};

#define NSUBS (sizeof subs / sizeof subs[0])

int cmd_index(struct cli *c)
{
    const char *sub = c->args[0];
    size_t i = 0;
    while (i < NSUBS && strcmp(subs[i].name, sub) != 0)
        i++;
    if (i == NSUBS) {
        char *shown = cli_display(sub, NULL, 60);
        int status = cli_error(CLI_USAGE, "index",
                               "unknown subcommand '%s' (use create, list or drop; try 'kdelta help index')", shown);
        free(shown);
        return status;
    }
    int n = c->nargs - 1;
    char what[32];
    snprintf(what, sizeof what, "index %s", subs[i].name);
    if (n < subs[i].min_args || n > subs[i].max_args)
        return cli_error(CLI_USAGE, what, "%s arguments: usage: kdelta index %s %s (try 'kdelta help index')",
                         n < subs[i].min_args ? "missing" : "too many", subs[i].name, subs[i].usage);
    return subs[i].run(c);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

/* Check NS and FIELD before the database is opened. */
static int check_args(const char *ns, const char *field)
{
    if (!*ns)
        return cli_error(CLI_INVALID, "index", "expected a namespace, got ''");
    if (!*field)
        return cli_error(CLI_INVALID, "index", "expected a field path (e.g. age or address.city), got ''");
    return cli_check_name(ns, NULL);
}

/* Report a library failure about the index on ns/field. */
static int index_error(struct cli *c, int rc, const char *ns, const char *field)
{
    char *sns = cli_display(ns, NULL, 200), *sf = cli_display(field, NULL, 200);
    char *what = xmalloc(strlen(sns) + strlen(sf) + 16);
    sprintf(what, "index %s %s", sns, sf);
    int status;
    if (rc == KD_ENOTFOUND)
        status = cli_error(CLI_NOTFOUND, what, "no such index ('kdelta index list' shows the indexes)");
    else if (rc == KD_EEXISTS)
        status = cli_error(CLI_CONFLICT, what, "an index on that field already exists");
    else
        status = cli_kd_error(c, rc, what);
    free(what);
    free(sf);
    free(sns);
    return status;
}

/* The index of `list` on the path `field` (any spelling of it), or NULL. */
static const kd_index_info *find_index(const kd_index_info *list, size_t n, const char *ns, const char *field)
{
    char *want = cli_field_name(field);
    const kd_index_info *found = NULL;
    for (size_t i = 0; i < n && !found; i++) {
        char *q = NULL;
        size_t qlen = 0;
        if (strcmp(list[i].ns, ns) == 0 && kd_json_quote(list[i].field, strlen(list[i].field), &q, &qlen) == KD_OK &&
            strlen(want) == qlen && memcmp(want, q, qlen) == 0)
            found = &list[i];
        kd_free(q);
    }
    free(want);
    return found;
}

/* One index as a JSON object (no newline). */
static int print_info_json(const kd_index_info *ix)
{
    char t[48];
    int status;
    fputs("{\"namespace\":", stdout);
    if ((status = cli_print_json_string(ix->ns, strlen(ix->ns))) != CLI_OK)
        return status;
    fputs(",\"field\":", stdout);
    if ((status = cli_print_json_string(ix->field, strlen(ix->field))) != CLI_OK)
        return status;
    printf(",\"entries\":%" PRIu64 ",\"created\":\"%s\"", ix->entries, cli_time_utc(ix->created, t));
    if (ix->built) {
        fputs(",\"built\":true,\"error\":null}", stdout);
        return CLI_OK;
    }
    fputs(",\"built\":false,\"error\":", stdout);
    if ((status = cli_print_json_string(ix->error, strlen(ix->error))) != CLI_OK)
        return status;
    fputc('}', stdout);
    return CLI_OK;
}

/* The human listing: a table, "not built" in place of the entries of an
 * index that could not be built, then a line for each of those with why. */
static void print_list(struct cli *c, const kd_index_info *list, size_t n)
{
    struct cli_table t = {.ncols = 3};
    cli_table_add(&t, xstrdup("namespace"));
    cli_table_add(&t, xstrdup("field"));
    cli_table_add(&t, xstrdup("entries"));
    for (size_t i = 0; i < n; i++) {
        char num[32];
        snprintf(num, sizeof num, "%" PRIu64, list[i].entries);
        cli_table_add(&t, cli_display(list[i].ns, NULL, 0));
        cli_table_add(&t, cli_display(list[i].field, NULL, 0));
        cli_table_add(&t, xstrdup(list[i].built ? num : "not built"));
    }
    cli_table_print(c, &t);
    cli_table_free(&t);
    for (size_t i = 0; i < n; i++) {
        if (list[i].built)
            continue;
        char *sns = cli_display(list[i].ns, NULL, 0), *sf = cli_display(list[i].field, NULL, 0);
        char *why = cli_display(list[i].error[0] ? list[i].error : "the reason is not known", NULL, 0);
        printf("%s %s: not built: %s\n", sns, sf, why);
        free(why);
        free(sf);
        free(sns);
    }
}

/* ------------------------------------------------------------------------
 * The subcommands
 * ---------------------------------------------------------------------- */

static int index_create(struct cli *c)
{
    char *ns = cli_ns_arg(c->args[1]);
    const char *field = c->args[2];
    kd_index_info *list = NULL;
    size_t n = 0;
    int status, rc;
    if ((status = check_args(ns, field)) != CLI_OK || (status = cli_open(c)) != CLI_OK)
        goto done;
    if ((rc = st_index_create(c, ns, field)) != KD_OK) {
        status = index_error(c, rc, ns, field);
        goto done;
    }
    if ((rc = st_index_list(c, ns, &list, &n)) != KD_OK) {
        status = index_error(c, rc, ns, field);
        goto done;
    }
    const kd_index_info *ix = find_index(list, n, ns, field);
    if (!ix) { /* dropped by another process in between */
        status = index_error(c, KD_ENOTFOUND, ns, field);
        goto done;
    }
    if (c->json) {
        if ((status = print_info_json(ix)) == CLI_OK)
            fputc('\n', stdout);
    } else {
        char *sns = cli_display(ix->ns, NULL, 0), *sf = cli_display(ix->field, NULL, 0);
        printf("created index on %s %s: %" PRIu64 " entr%s\n", sns, sf, ix->entries, ix->entries == 1 ? "y" : "ies");
        free(sf);
        free(sns);
    }
done:
    kd_index_list_free(list, n);
    free(ns);
    return cli_finish_output(status);
}

static int index_list(struct cli *c)
{
    char *ns = c->nargs > 1 ? cli_ns_arg(c->args[1]) : NULL;
    kd_index_info *list = NULL;
    size_t n = 0;
    int status, rc;
    if (ns && !*ns) {
        status = cli_error(CLI_INVALID, "index", "expected a namespace, got ''");
        goto done;
    }
    if ((ns && (status = cli_check_name(ns, NULL)) != CLI_OK) || (status = cli_open(c)) != CLI_OK)
        goto done;
    if ((rc = st_index_list(c, ns, &list, &n)) != KD_OK) {
        char *shown = ns ? cli_display(ns, NULL, 200) : xstrdup("index list");
        status = cli_kd_error(c, rc, shown);
        free(shown);
        goto done;
    }
    if (c->json) {
        fputc('[', stdout);
        for (size_t i = 0; i < n && status == CLI_OK; i++) {
            if (i)
                fputc(',', stdout);
            status = print_info_json(&list[i]);
        }
        if (status == CLI_OK)
            fputs("]\n", stdout);
    } else if (n) {
        print_list(c, list, n);
    }
done:
    kd_index_list_free(list, n);
    free(ns);
    return cli_finish_output(status);
}

static int index_drop(struct cli *c)
{
    char *ns = cli_ns_arg(c->args[1]);
    const char *field = c->args[2];
    char *name = NULL;
    int status, rc;
    if ((status = check_args(ns, field)) != CLI_OK || (status = cli_open(c)) != CLI_OK)
        goto done;
    if ((rc = st_index_drop(c, ns, field)) != KD_OK) {
        status = index_error(c, rc, ns, field);
        goto done;
    }
    name = cli_field_name(field); /* the path as the library writes it, quoted */
    if (c->json) {
        fputs("{\"namespace\":", stdout);
        if ((status = cli_print_json_string(ns, strlen(ns))) == CLI_OK)
            printf(",\"field\":%s,\"dropped\":true}\n", name);
    } else {
        /* as `index create` shows it: the path written back, unquoted */
        char *path = NULL, *sf;
        size_t plen = 0;
        if (kd_json_unquote(name, strlen(name), &path, &plen) == KD_OK)
            sf = cli_display(path, NULL, 0);
        else
            sf = cli_display(field, NULL, 0);
        kd_free(path);
        char *sns = cli_display(ns, NULL, 0);
        printf("dropped index on %s %s\n", sns, sf);
        free(sf);
        free(sns);
    }
done:
    free(name);
    free(ns);
    return cli_finish_output(status);
}
