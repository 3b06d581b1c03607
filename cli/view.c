/*
 * view.c — `kdelta view create|list|show|refresh|delete`: materialized
 * views, named queries over a namespace whose result the database keeps.
 *
 * `view create` takes the options of `kdelta query` (--filter, --sort,
 * --select, --limit, --offset) and turns them into a query the same way
 * (cli_query_compile in query.c), so a view holds exactly what that query
 * would print; `view show` prints the view's rows as `kdelta query` prints
 * a result. A view refreshes itself on every write to its namespace unless
 * it was created with --manual, in which case it changes only on
 * `view refresh`. Definitions live in the database, so each command (a new
 * process) sees the views earlier ones made.
 *
 * Unknown view: exit 3; a name already taken: exit 6 (conflict).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Subcommands and their options
 * ---------------------------------------------------------------------- */

/* Options a subcommand takes, besides the global ones. */
#define VOPT_QUERY 1u /* --filter, --sort, --select, --description, --manual */
#define VOPT_PAGE 2u  /* --limit, --offset */

static int view_create(struct cli *c);
static int view_list(struct cli *c);
static int view_show(struct cli *c);
static int view_refresh(struct cli *c);
static int view_delete(struct cli *c);

static const struct {
    const char *name;
    int (*run)(struct cli *c);
    int nargs; /* after the subcommand */
    unsigned opts;
    const char *usage;
} subs[] = {
    {"create", view_create, 2, VOPT_QUERY | VOPT_PAGE,
     "NAME NS [--filter EXPR] [--sort FIELD[:desc]]... [--select FIELDS] [--limit N] [--offset N] "
     "[--description TEXT] [--manual]"},
    {"list", view_list, 0, 0, ""},
    {"show", view_show, 1, VOPT_PAGE, "NAME [--limit N] [--offset N]"},
    {"refresh", view_refresh, 1, 0, "NAME"},
    {"delete", view_delete, 1, 0, "NAME"},
};

#define NSUBS (sizeof subs / sizeof subs[0])

/* The first option given that `opts` does not allow, or NULL. */
static const char *stray_option(const struct cli *c, unsigned opts)
{
    if (!(opts & VOPT_QUERY)) {
        if (c->filter)
            return "--filter";
        if (c->nqopts)
            return "--sort";
        if (c->select)
            return "--select";
        if (c->description)
            return "--description";
        if (c->manual)
            return "--manual";
    }
    if (!(opts & VOPT_PAGE)) {
        if (c->limit_set)
            return "--limit";
        if (c->offset_set)
            return "--offset";
    }
    return NULL;
}

int cmd_view(struct cli *c)
{
    const char *sub = c->args[0];
    size_t i = 0;
    while (i < NSUBS && strcmp(subs[i].name, sub) != 0)
        i++;
    if (i == NSUBS) {
        char *shown = cli_display(sub, NULL, 60);
        int status = cli_error(CLI_USAGE, "view",
                               "unknown subcommand '%s' (use create, list, show, refresh or delete; "
                               "try 'kdelta help view')",
                               shown);
        free(shown);
        return status;
    }
    char what[32];
    snprintf(what, sizeof what, "view %s", subs[i].name);
    if (c->nargs - 1 != subs[i].nargs)
        return cli_error(CLI_USAGE, what, "%s arguments: usage: kdelta view %s%s%s (try 'kdelta help view')",
                         c->nargs - 1 < subs[i].nargs ? "missing" : "too many", subs[i].name,
                         *subs[i].usage ? " " : "", subs[i].usage);
    const char *stray = stray_option(c, subs[i].opts);
    if (stray)
        return cli_error(CLI_USAGE, stray, "is not an option of '%s' (try 'kdelta help view')", what);
    return subs[i].run(c);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

/* Report a library failure about view `name`: unknown (3), taken (6), or
 * the library's message. */
static int view_error(struct cli *c, int rc, const char *name)
{
    char *shown = cli_display(name, NULL, 200);
    char *what = xmalloc(strlen(shown) + 8);
    sprintf(what, "view %s", shown);
    int status;
    if (rc == KD_ENOTFOUND)
        status = cli_error(CLI_NOTFOUND, what, "no such view ('kdelta view list' shows the views)");
    else if (rc == KD_EEXISTS)
        status = cli_error(CLI_CONFLICT, what, "a view of that name already exists (delete it first, or choose "
                                               "another name)");
    else
        status = cli_kd_error(c, rc, what);
    free(what);
    free(shown);
    return status;
}

/* Check NAME before the database is opened. */
static int check_name(const char *name)
{
    if (!*name)
        return cli_error(CLI_INVALID, "view", "expected a view name, got ''");
    return CLI_OK;
}

/* The definition of view `name` (from kd_view_list), or NULL; *list is
 * freed by the caller with kd_view_list_free(*list, *n). */
static const kd_view_info *find_view(struct cli *c, const char *name, kd_view_info **list, size_t *n, int *rc)
{
    *list = NULL;
    *n = 0;
    if ((*rc = st_view_list(c, list, n)) != KD_OK)
        return NULL;
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*list)[i].name, name) == 0)
            return &(*list)[i];
    *rc = KD_ENOTFOUND;
    return NULL;
}

/* One view as a JSON object (no newline). */
static int print_info_json(const kd_view_info *v)
{
    char t[48];
    int status;
    fputs("{\"name\":", stdout);
    if ((status = cli_print_json_string(v->name, strlen(v->name))) != CLI_OK)
        return status;
    fputs(",\"source\":", stdout);
    if ((status = cli_print_json_string(v->source, strlen(v->source))) != CLI_OK)
        return status;
    printf(",\"query\":%s,\"description\":", v->query);
    if ((status = cli_print_json_string(v->description, strlen(v->description))) != CLI_OK)
        return status;
    printf(",\"auto_refresh\":%s,\"created\":\"%s\"", v->auto_refresh ? "true" : "false", cli_time_utc(v->created, t));
    if (v->refreshed)
        printf(",\"refreshed\":\"%s\"}", cli_time_utc(v->refreshed, t));
    else
        fputs(",\"refreshed\":null}", stdout);
    return CLI_OK;
}

/* Rows in view `name` now; 0 if it cannot be read. */
static uint64_t view_rows(struct cli *c, const char *name)
{
    kd_result *r = NULL;
    uint64_t n = 0;
    if (st_view_query(c, name, 0, 1, &r) == KD_OK)
        n = r->total;
    st_result_free(c, r);
    return n;
}

/* After create and refresh: one line for people, the definition for --json. */
static int report(struct cli *c, const char *name, const char *done)
{
    kd_view_info *list = NULL;
    size_t n = 0;
    int rc, status = CLI_OK;
    const kd_view_info *v = find_view(c, name, &list, &n, &rc);
    if (!v) {
        status = view_error(c, rc, name);
    } else if (c->json) {
        if ((status = print_info_json(v)) == CLI_OK)
            fputc('\n', stdout);
    } else {
        char *shown = cli_display(name, NULL, 0), *src = cli_display(v->source, NULL, 0);
        uint64_t rows = view_rows(c, name);
        printf("%s view %s on %s (%s): %" PRIu64 " row%s\n", done, shown, src,
               v->auto_refresh ? "auto refresh" : "manual: changes only on 'view refresh'", rows,
               rows == 1 ? "" : "s");
        free(src);
        free(shown);
    }
    kd_view_list_free(list, n);
    return status;
}

/* ------------------------------------------------------------------------
 * The subcommands
 * ---------------------------------------------------------------------- */

static int view_create(struct cli *c)
{
    const char *name = c->args[1];
    char *ns = cli_ns_arg(c->args[2]);
    kd_query *q = NULL;
    int status, rc;
    if ((status = check_name(name)) != CLI_OK)
        goto done;
    if (!*ns) {
        status = cli_error(CLI_INVALID, "view create", "expected a namespace, got ''");
        goto done;
    }
    if ((status = cli_check_name(ns, NULL)) != CLI_OK || (status = cli_query_compile(c, &q, NULL, NULL)) != CLI_OK)
        goto done;
    if ((status = cli_open(c)) != CLI_OK)
        goto done;
    rc = st_view_create(c, name, ns, q, c->description ? c->description : "", !c->manual);
    if (rc == KD_ERESERVED) { /* the source namespace */
        char *shown = cli_display(ns, NULL, 200);
        status = cli_kd_error(c, rc, shown);
        free(shown);
        goto done;
    }
    if (rc != KD_OK) {
        status = view_error(c, rc, name);
        goto done;
    }
    status = report(c, name, "created");
done:
    kd_query_free(q);
    free(ns);
    return cli_finish_output(status);
}

static int view_list(struct cli *c)
{
    kd_view_info *list = NULL;
    size_t n = 0;
    int status, rc;
    if ((status = cli_open(c)) != CLI_OK)
        return cli_finish_output(status);
    if ((rc = st_view_list(c, &list, &n)) != KD_OK)
        return cli_finish_output(cli_kd_error(c, rc, "view list"));
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
        struct cli_table t = {.ncols = 5};
        cli_table_add(&t, xstrdup("name"));
        cli_table_add(&t, xstrdup("source"));
        cli_table_add(&t, xstrdup("refresh"));
        cli_table_add(&t, xstrdup("description"));
        cli_table_add(&t, xstrdup("query"));
        for (size_t i = 0; i < n; i++) {
            cli_table_add(&t, cli_display(list[i].name, NULL, 0));
            cli_table_add(&t, cli_display(list[i].source, NULL, 0));
            cli_table_add(&t, xstrdup(list[i].auto_refresh ? "auto" : "manual"));
            cli_table_add(&t, cli_display(list[i].description, NULL, 0));
            cli_table_add(&t, cli_query_text(list[i].query, strlen(list[i].query)));
        }
        cli_table_print(c, &t);
        cli_table_free(&t);
    }
    kd_view_list_free(list, n);
    return cli_finish_output(status);
}

static int view_show(struct cli *c)
{
    const char *name = c->args[1];
    kd_view_info *list = NULL;
    size_t n = 0, n_names = 0;
    char **names = NULL;
    kd_result *r = NULL;
    int status, rc;
    if ((status = check_name(name)) != CLI_OK)
        return cli_finish_output(status);
    if ((status = cli_open(c)) != CLI_OK)
        return cli_finish_output(status);
    const kd_view_info *v = find_view(c, name, &list, &n, &rc);
    if (!v) {
        status = view_error(c, rc, name);
        goto done;
    }
    /* --limit 0 shows no rows but still counts them, as in `kdelta query`
     * (for kd_view_query a limit of 0 means no limit) */
    int none = c->limit_set && c->limit == 0;
    size_t limit = c->limit_set ? (none ? 1 : (size_t)c->limit) : 0;
    if ((rc = st_view_query(c, name, (size_t)c->offset, limit, &r)) != KD_OK) {
        status = view_error(c, rc, name);
        goto done;
    }
    kd_result page = *r;
    if (none)
        page.n_rows = 0;
    if (c->json) {
        char *out = NULL;
        size_t outlen = 0;
        /* the rows carry all it writes: c->db is NULL with --url, and unused */
        if ((rc = kd_result_json(c->db, v->source, &page, &out, &outlen)) != KD_OK) {
            status = view_error(c, rc, name);
            goto done;
        }
        fwrite(out, 1, outlen, stdout);
        fputc('\n', stdout);
        kd_free(out);
    } else {
        cli_query_select_names(v->query, strlen(v->query), &names, &n_names);
        cli_print_rows(c, &page, names, n_names);
    }
done:
    cli_free_list(names, n_names);
    st_result_free(c, r);
    kd_view_list_free(list, n);
    return cli_finish_output(status);
}

static int view_refresh(struct cli *c)
{
    const char *name = c->args[1];
    int status, rc;
    if ((status = check_name(name)) != CLI_OK)
        return cli_finish_output(status);
    if ((status = cli_open(c)) != CLI_OK)
        return cli_finish_output(status);
    if ((rc = st_view_refresh(c, name)) != KD_OK)
        return cli_finish_output(view_error(c, rc, name));
    return cli_finish_output(report(c, name, "refreshed"));
}

static int view_delete(struct cli *c)
{
    const char *name = c->args[1];
    int status, rc;
    if ((status = check_name(name)) != CLI_OK)
        return cli_finish_output(status);
    if ((status = cli_open(c)) != CLI_OK)
        return cli_finish_output(status);
    if ((rc = st_view_delete(c, name)) != KD_OK)
        return cli_finish_output(view_error(c, rc, name));
    if (c->json) {
        fputs("{\"name\":", stdout);
        if ((status = cli_print_json_string(name, strlen(name))) == CLI_OK)
            fputs(",\"deleted\":true}\n", stdout);
    } else {
        char *shown = cli_display(name, NULL, 0);
        printf("deleted view %s\n", shown);
        free(shown);
    }
    return cli_finish_output(status);
}
