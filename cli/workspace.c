/*
 * workspace.c — `kdelta workspace create|list|drop`: the isolated
 * workspaces of a database. The global option --workspace/-w NAME makes
 * every data command work inside one (cli_open, and the /ws/{ws}/ routes
 * of a server); this command works on the database itself, so -w does
 * not apply to it. Unknown workspace: exit 3; one that exists already:
 * exit 6; a bad or reserved name: exit 4. Over --url, creating and
 * dropping need admin rights on the workspace.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

static int ws_create(struct cli *c);
static int ws_list(struct cli *c);
static int ws_drop(struct cli *c);

static const struct {
    const char *name;
    int (*run)(struct cli *c);
    int nargs; /* after the subcommand */
    const char *usage;
} subs[] = {
    {"create", ws_create, 1, "NAME"},
    {"list", ws_list, 0, ""},
    {"drop", ws_drop, 1, "NAME"},
};

#define NSUBS (sizeof subs / sizeof subs[0])

int cmd_workspace(struct cli *c)
{
    const char *sub = c->args[0];
    size_t i = 0;
    while (i < NSUBS && strcmp(subs[i].name, sub) != 0)
        i++;
    if (i == NSUBS) {
        char *shown = cli_display(sub, NULL, 60);
        int status = cli_error(CLI_USAGE, "workspace",
                               "unknown subcommand '%s' (use create, list or drop; try 'kdelta help workspace')",
                               shown);
        free(shown);
        return status;
    }
    int n = c->nargs - 1;
    char what[32];
    snprintf(what, sizeof what, "workspace %s", subs[i].name);
    if (n != subs[i].nargs)
        return cli_error(CLI_USAGE, what, "%s arguments: usage: kdelta workspace %s%s%s (try 'kdelta help workspace')",
                         n < subs[i].nargs ? "missing" : "too many", subs[i].name, *subs[i].usage ? " " : "",
                         subs[i].usage);
    if (c->workspace)
        return cli_error(CLI_USAGE, "--workspace",
                         "does not apply to 'kdelta workspace', which works on the database's workspaces");
    if (subs[i].nargs && !*c->args[1])
        return cli_error(CLI_INVALID, what, "expected a workspace name, got ''");
    return subs[i].run(c);
}

static int ws_error(struct cli *c, int rc, const char *name)
{
    char *shown = cli_display(name, NULL, 200);
    char *what = xmalloc(strlen(shown) + 16);
    sprintf(what, "workspace %s", shown);
    int status;
    if (rc == KD_EEXISTS)
        status = cli_error(CLI_CONFLICT, what, "already exists ('kdelta workspace list' shows the workspaces)");
    else
        status = cli_kd_error(c, rc, what);
    free(what);
    free(shown);
    return status;
}

static int ws_create(struct cli *c)
{
    const char *name = c->args[1];
    int status, rc;
    if ((status = cli_open(c)) != CLI_OK)
        return status;
    if ((rc = st_workspace_create(c, name)) != KD_OK)
        return ws_error(c, rc, name);
    if (c->json) {
        fputs("{\"workspace\":", stdout);
        if ((status = cli_print_json_string(name, strlen(name))) == CLI_OK)
            fputs(",\"created\":true}\n", stdout);
    } else {
        char *shown = cli_display(name, NULL, 0);
        printf("created workspace %s\n", shown);
        free(shown);
    }
    return cli_finish_output(status);
}

static int ws_drop(struct cli *c)
{
    const char *name = c->args[1];
    int status, rc;
    if ((status = cli_open(c)) != CLI_OK)
        return status;
    if ((rc = st_workspace_drop(c, name)) != KD_OK)
        return ws_error(c, rc, name);
    if (c->json) {
        fputs("{\"workspace\":", stdout);
        if ((status = cli_print_json_string(name, strlen(name))) == CLI_OK)
            fputs(",\"dropped\":true}\n", stdout);
    } else {
        char *shown = cli_display(name, NULL, 0);
        printf("dropped workspace %s (its data stays in the log until compaction)\n", shown);
        free(shown);
    }
    return cli_finish_output(status);
}

static int ws_list(struct cli *c)
{
    int status, rc;
    char **names = NULL;
    size_t n = 0;
    if ((status = cli_open(c)) != CLI_OK)
        return status;
    if ((rc = st_workspace_list(c, &names, &n)) != KD_OK)
        return cli_kd_error(c, rc, "workspace list");
    if (c->json) {
        fputc('[', stdout);
        for (size_t i = 0; i < n && status == CLI_OK; i++) {
            if (i)
                fputc(',', stdout);
            status = cli_print_json_string(names[i], strlen(names[i]));
        }
        if (status == CLI_OK)
            fputs("]\n", stdout);
    } else {
        for (size_t i = 0; i < n; i++) {
            char *shown = cli_display(names[i], NULL, 0);
            printf("%s\n", shown);
            free(shown);
        }
    }
    kd_free_list(names, n);
    return cli_finish_output(status);
}
