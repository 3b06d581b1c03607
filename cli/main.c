/*
 * main.c — the `kdelta` command: parse the command line, then dispatch.
 *
 * Options may appear before or after the command, in `--opt VALUE` or
 * `--opt=VALUE` form; `--` ends the options. An argument that starts with
 * '-' followed by a digit is a value, not an option (`kdelta set n/x -5`),
 * and "-" alone means stdin. Everything is validated before the database is
 * opened, so a usage error never creates or touches a database.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "remote.h"

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */

enum opt_id { OPT_DB, OPT_URL, OPT_JSON, OPT_SYNC, OPT_BUSY, OPT_HELP, OPT_VERSION, OPT_AT, OPT_LIMIT, OPT_REVERSE,
              OPT_MAX_MEMORY,
              /* import and export (numbered apart, so the list above can grow) */
              OPT_KEY = 100, OPT_FORMAT, OPT_SKIP_BAD, OPT_BATCH, OPT_HISTORY,
              /* diff */
              OPT_FROM = 200, OPT_TO,
              /* query and watch */
              OPT_FILTER = 300, OPT_SORT, OPT_SELECT, OPT_OFFSET, OPT_COUNT, OPT_SUM, OPT_AVG, OPT_MIN, OPT_MAX,
              OPT_DISTINCT, OPT_GROUP_BY, OPT_TYPES, OPT_STOP,
              /* view */
              OPT_DESCRIPTION = 400, OPT_MANUAL,
              /* serve */
              OPT_PORT = 500, OPT_BIND, OPT_INSECURE, OPT_MAX_BODY, OPT_TIMEOUT, OPT_CONFIG, OPT_AUTH,
              OPT_AUTH_DIFFICULTY, OPT_OWNER, OPT_SESSION_TTL, OPT_BACKUP_EVERY, OPT_BACKUP_DIR, OPT_KEEP,
              OPT_RETENTION_EVERY, OPT_CONSOLIDATE_EVERY, OPT_CONSOLIDATE_AFTER,
              /* auth */
              OPT_IDENTITY = 700, OPT_NAME, OPT_OUT, OPT_DIFFICULTY, OPT_SHOW_SECRET, OPT_PREFIX, OPT_EXPIRES,
              /* vector */
              OPT_MODEL = 600, OPT_META, OPT_TOP, OPT_METRIC, OPT_MIN_SCORE, OPT_EF,
              /* backup */
              OPT_INCREMENTAL = 800, OPT_SINCE, OPT_CURRENT_ONLY,
              /* workspaces */
              OPT_WORKSPACE = 900,
              /* retention and compact */
              OPT_KEEP_LAST = 1000, OPT_KEEP_NEWER_THAN, OPT_THIN, OPT_DRY_RUN, OPT_OLDER_THAN };

static const struct option_def {
    const char *name;  /* long name, with "--" */
    char short_name;   /* 0 if none */
    int has_value;
    enum opt_id id;
    const char *only;  /* command(s) the option belongs to ("import,export"), NULL = global */
} options[] = {
    {"--db", 0, 1, OPT_DB, NULL},
    {"--url", 0, 1, OPT_URL, NULL},
    {"--identity", 0, 1, OPT_IDENTITY, NULL},
    {"--workspace", 'w', 1, OPT_WORKSPACE, NULL},
    {"--json", 0, 0, OPT_JSON, NULL},
    {"--sync", 0, 1, OPT_SYNC, NULL},
    {"--busy-timeout", 0, 1, OPT_BUSY, NULL},
    {"--max-memory", 0, 1, OPT_MAX_MEMORY, NULL},
    {"--help", 'h', 0, OPT_HELP, NULL},
    {"--version", 0, 0, OPT_VERSION, NULL},
    {"--at", 0, 1, OPT_AT, "get,export,query,vector,backup"},
    {"--limit", 'n', 1, OPT_LIMIT, "log,query,view,vector"},
    {"--reverse", 0, 0, OPT_REVERSE, "log,vector"},
    {"--key", 0, 1, OPT_KEY, "import"},
    {"--format", 0, 1, OPT_FORMAT, "import,export"},
    {"--skip-bad", 0, 0, OPT_SKIP_BAD, "import"},
    {"--batch", 0, 1, OPT_BATCH, "import"},
    {"--history", 0, 0, OPT_HISTORY, "import,export"},
    {"--from", 0, 1, OPT_FROM, "diff"},
    {"--to", 0, 1, OPT_TO, "diff"},
    {"--filter", 0, 1, OPT_FILTER, "query,watch,view,vector"},
    {"--sort", 0, 1, OPT_SORT, "query,view"},
    {"--select", 0, 1, OPT_SELECT, "query,view"},
    {"--offset", 0, 1, OPT_OFFSET, "query,view"},
    {"--count", 0, 0, OPT_COUNT, "query"},
    {"--sum", 0, 1, OPT_SUM, "query"},
    {"--avg", 0, 1, OPT_AVG, "query"},
    {"--min", 0, 1, OPT_MIN, "query"},
    {"--max", 0, 1, OPT_MAX, "query"},
    {"--distinct", 0, 1, OPT_DISTINCT, "query"},
    {"--group-by", 0, 1, OPT_GROUP_BY, "query"},
    {"--types", 0, 1, OPT_TYPES, "watch"},
    {"--stop", 0, 0, OPT_STOP, "watch"},
    {"--description", 0, 1, OPT_DESCRIPTION, "view"},
    {"--manual", 0, 0, OPT_MANUAL, "view"},
    {"--port", 0, 1, OPT_PORT, "serve"},
    {"--bind", 0, 1, OPT_BIND, "serve"},
    {"--insecure", 0, 0, OPT_INSECURE, "serve"},
    {"--max-body", 0, 1, OPT_MAX_BODY, "serve"},
    {"--timeout", 0, 1, OPT_TIMEOUT, "serve"},
    {"--config", 0, 1, OPT_CONFIG, "serve"},
    {"--backup-every", 0, 1, OPT_BACKUP_EVERY, "serve"},
    {"--backup-dir", 0, 1, OPT_BACKUP_DIR, "serve"},
    {"--keep", 0, 1, OPT_KEEP, "serve"},
    {"--retention-every", 0, 1, OPT_RETENTION_EVERY, "serve"},
    {"--consolidate-every", 0, 1, OPT_CONSOLIDATE_EVERY, "serve"},
    {"--consolidate-after", 0, 1, OPT_CONSOLIDATE_AFTER, "serve"},
    {"--auth", 0, 0, OPT_AUTH, "serve"},
    {"--auth-difficulty", 0, 1, OPT_AUTH_DIFFICULTY, "serve"},
    {"--owner", 0, 1, OPT_OWNER, "serve"},
    {"--session-ttl", 0, 1, OPT_SESSION_TTL, "serve"},
    {"--name", 0, 1, OPT_NAME, "auth"},
    {"--out", 0, 1, OPT_OUT, "auth"},
    {"--difficulty", 0, 1, OPT_DIFFICULTY, "auth"},
    {"--show-secret", 0, 0, OPT_SHOW_SECRET, "auth"},
    {"--prefix", 0, 1, OPT_PREFIX, "auth"},
    {"--expires", 0, 1, OPT_EXPIRES, "auth"},
    {"--model", 0, 1, OPT_MODEL, "vector"},
    {"--meta", 0, 1, OPT_META, "vector"},
    {"--top", 'k', 1, OPT_TOP, "vector"},
    {"--metric", 0, 1, OPT_METRIC, "vector"},
    {"--min-score", 0, 1, OPT_MIN_SCORE, "vector"},
    {"--ef", 0, 1, OPT_EF, "vector"},
    {"--incremental", 0, 0, OPT_INCREMENTAL, "backup"},
    {"--current-only", 0, 0, OPT_CURRENT_ONLY, "backup"},
    {"--since", 0, 1, OPT_SINCE, "backup"},
    {"--keep-last", 0, 1, OPT_KEEP_LAST, "retention"},
    {"--keep-newer-than", 0, 1, OPT_KEEP_NEWER_THAN, "retention"},
    {"--thin", 0, 1, OPT_THIN, "retention"},
    {"--dry-run", 0, 0, OPT_DRY_RUN, "compact"},
    {"--older-than", 0, 1, OPT_OLDER_THAN, "consolidate"},
};

static const struct command_def {
    const char *name;
    int (*run)(struct cli *c);
    int min_args, max_args;
    const char *synopsis;
} commands[] = {
    {"set", cmd_set, 2, 2, "NS/KEY VALUE"},
    {"get", cmd_get, 1, 1, "NS/KEY [--at TIME]"},
    {"delete", cmd_delete, 1, 1, "NS/KEY"},
    {"log", cmd_log, 1, 1, "NS/KEY [--limit N] [--reverse]"},
    {"diff", cmd_diff, 1, 1, "NS/KEY [--from REF] [--to REF]"},
    {"list", cmd_list, 0, 1, "[NS]"},
    {"status", cmd_status, 0, 0, ""},
    {"verify", cmd_verify, 0, 0, ""},
    {"repair", cmd_repair, 0, 0, ""},
    {"backup", cmd_backup, 1, 2, "FILE [--at TIME] [--incremental --since PREVIOUS | --current-only] | info FILE"},
    {"restore", cmd_restore, 1, INT_MAX, "FILE [INCREMENTAL...] --db DIR"},
    {"retention", cmd_retention, 1, 2, "set NS [--keep-last N] [--keep-newer-than DURATION] [--thin AFTER:EVERY]... | show [NS] | clear NS"},
    {"compact", cmd_compact, 0, 0, "[--dry-run]"},
    {"consolidate", cmd_consolidate, 0, 0, "[--older-than DURATION]"},
    {"import", cmd_import, 1, 2, "NS FILE [--key FIELD] [--format ndjson|json|header-ndjson] [--skip-bad] [--batch N]"},
    {"export", cmd_export, 0, 1, "[NS] [--at TIME] [--history] [--format ndjson|json]"},
    /* one line per row: tests/e2e/test_help_docs.py reads this table. view
     * and index check the arguments of each subcommand themselves. */
    {"query", cmd_query, 1, 1, "NS [--filter EXPR] [--sort FIELD[:desc]]... [--select FIELDS] [--limit N] [--offset N] [--at TIME] [AGGREGATE]... [--group-by FIELD]..."},
    {"watch", cmd_watch, 0, 1, "[NS[/KEY]] [--types insert,update,delete] [--filter EXPR] [--stop]"},
    {"unwatch", cmd_unwatch, 0, 1, "[ID]"},
    {"view", cmd_view, 1, INT_MAX, "create NAME NS [QUERY OPTIONS] | list | show NAME [--limit N] [--offset N] | refresh NAME | delete NAME"},
    {"index", cmd_index, 1, INT_MAX, "create NS FIELD | list [NS] | drop NS FIELD"},
    {"vector", cmd_vector, 1, INT_MAX, "put NS/KEY VECTOR --model M [--meta JSON] | get NS/KEY [--at TIME] | log NS/KEY [--limit N] [--reverse] | delete NS/KEY | search [NS] VECTOR [-k N] [--at TIME] [--filter EXPR] [--metric cosine|dot|l2] [--model M] [--min-score S] [--ef N] | stats [NS]"},
    {"shell", cmd_shell, 0, 0, ""},
    {"serve", cmd_serve, 0, 0, "[--port N] [--bind ADDR] [--insecure] [--max-body BYTES] [--timeout SECONDS] [--config FILE] [--auth [--auth-difficulty BITS] [--owner KEYFILE] [--session-ttl DURATION]] [--backup-dir DIR [--backup-every DURATION [--keep N]]] [--retention-every DURATION] [--consolidate-every DURATION] [--consolidate-after DURATION]"},
    {"workspace", cmd_workspace, 1, 2, "create NAME | list | drop NAME"},
    {"auth", cmd_auth, 1, INT_MAX, "keygen [--name N] [--out FILE] [--difficulty BITS] [--show-secret] | register | whoami | grant GRANTEE NS_PATTERN read|write|admin [--prefix P] [--expires TIME] | revoke GRANT_ID | list"},
    {"help", NULL, 0, 1, "[COMMAND]"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct option_def *find_option(const char *arg, size_t namelen)
{
    for (size_t i = 0; i < COUNT(options); i++) {
        const struct option_def *o = &options[i];
        if (arg[1] == '-') {
            if (strlen(o->name) == namelen && memcmp(o->name, arg, namelen) == 0)
                return o;
        } else if (o->short_name && arg[1] == o->short_name && namelen == 2) {
            return o;
        }
    }
    return NULL;
}

/* Is `command` in the comma-separated list `only`? */
static int option_of(const char *only, const char *command)
{
    size_t n = strlen(command);
    for (const char *p = only; *p;) {
        size_t l = strcspn(p, ",");
        if (l == n && memcmp(p, command, n) == 0)
            return 1;
        p += l + (p[l] == ',');
    }
    return 0;
}

static const struct command_def *find_command(const char *name)
{
    for (size_t i = 0; i < COUNT(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int cli_parse_number(const char *s, int64_t min, int64_t max, int64_t *out)
{
    /* strtoll would skip any leading white space and take a '+' */
    if (!(*s >= '0' && *s <= '9') && !(*s == '-' && s[1] >= '0' && s[1] <= '9'))
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return 0;
    *out = v;
    return 1;
}

/* The usage error for a count option (--limit, --offset) that is not a
 * whole number from 0 to INT64_MAX. */
static int count_error(const char *opt, const char *value)
{
    if (value[0] && strspn(value, "0123456789") == strlen(value))
        return cli_error(CLI_USAGE, opt, "%s is too large (at most %" PRId64 ")", value, INT64_MAX);
    return cli_error(CLI_USAGE, opt, "expected a whole number >= 0, got '%s'", value);
}

int cli_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!*s || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return 0;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: break;
    }
    if (shift) {
        end++;
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        else if (*end == 'B')
            end++;
    }
    if (*end || v > UINT64_MAX >> shift)
        return 0;
    v <<= shift;
    if (v < min || v > max)
        return 0;
    *out = v;
    return 1;
}

static int usage_error(const char *what, const char *why)
{
    return cli_error(CLI_USAGE, what, "%s (try 'kdelta --help')", why);
}

/* A repeatable query option, kept in command line order. */
static void add_qopt(struct cli *c, enum cli_qkind kind, const char *op, const char *value)
{
    c->qopts[c->nqopts].kind = kind;
    c->qopts[c->nqopts].op = op;
    c->qopts[c->nqopts].value = value;
    c->nqopts++;
}

/* Apply one option. Returns -1 to go on, or an exit status. */
static int apply_option(struct cli *c, const struct option_def *o, const char *value, int *want_help,
                        int *want_version)
{
    int64_t n;
    switch (o->id) {
    case OPT_DB:
        if (!*value)
            return usage_error("--db", "needs a directory");
        c->db_dir = value;
        break;
    case OPT_URL:
        if (!*value)
            return usage_error("--url", "needs a server address, e.g. --url http://127.0.0.1:7878");
        c->url = value;
        break;
    case OPT_JSON:
        c->json = 1;
        break;
    case OPT_SYNC:
        c->sync_set = 1;
        if (strcmp(value, "always") == 0)
            c->sync = KD_SYNC_ALWAYS;
        else if (strcmp(value, "interval") == 0)
            c->sync = KD_SYNC_INTERVAL;
        else if (strcmp(value, "none") == 0)
            c->sync = KD_SYNC_NONE;
        else
            return cli_error(CLI_USAGE, "--sync", "unknown mode '%s' (use always, interval or none)", value);
        break;
    case OPT_BUSY:
        if (!cli_parse_number(value, 0, UINT32_MAX, &n))
            return cli_error(CLI_USAGE, "--busy-timeout", "expected milliseconds (0 to %u), got '%s'",
                             (unsigned)UINT32_MAX, value);
        c->busy_ms = n;
        break;
    case OPT_MAX_MEMORY:
        if (!cli_parse_size(value, CLI_MAX_MEMORY_MIN, CLI_MAX_MEMORY_MAX, &c->max_memory))
            return cli_error(CLI_USAGE, "--max-memory", "expected a size from 8M to 1024T, such as 512M or 2G, got '%s'",
                             value);
        break;
    case OPT_HELP:
        *want_help = 1;
        break;
    case OPT_VERSION:
        *want_version = 1;
        break;
    case OPT_AT:
        c->at = value;
        break;
    case OPT_LIMIT:
        if (!cli_parse_number(value, 0, INT64_MAX, &n))
            return count_error("--limit", value);
        c->limit = n;
        c->limit_set = 1;
        break;
    case OPT_REVERSE:
        c->reverse = 1;
        break;
    case OPT_KEY:
        c->key_field = value;
        break;
    case OPT_FORMAT:
        c->format = value;
        break;
    case OPT_SKIP_BAD:
        c->skip_bad = 1;
        break;
    case OPT_BATCH:
        if (!cli_parse_number(value, 1, 1000000, &n))
            return cli_error(CLI_USAGE, "--batch", "expected rows per batch, 1 to 1000000, got '%s'", value);
        c->batch = n;
        break;
    case OPT_HISTORY:
        c->history = 1;
        break;
    case OPT_FROM:
        c->from_ref = value;
        break;
    case OPT_TO:
        c->to_ref = value;
        break;
    case OPT_FILTER:
        if (c->filter) /* the later one silently replaced the earlier */
            return usage_error("--filter", "given twice: join the conditions in one filter, e.g. --filter 'a = 1 and "
                                           "b = 2'");
        c->filter = value;
        break;
    case OPT_SORT:
        if (!*value)
            return usage_error("--sort", "needs a field, e.g. --sort age or --sort age:desc");
        add_qopt(c, CLI_Q_SORT, NULL, value);
        break;
    case OPT_SELECT:
        if (!*value)
            return usage_error("--select", "needs field names, e.g. --select name,address.city");
        c->select = value;
        break;
    case OPT_OFFSET:
        if (!cli_parse_number(value, 0, INT64_MAX, &n))
            return count_error("--offset", value);
        c->offset = n;
        c->offset_set = 1;
        break;
    case OPT_COUNT:
        add_qopt(c, CLI_Q_AGGREGATE, "count", NULL);
        break;
    case OPT_SUM:
    case OPT_AVG:
    case OPT_MIN:
    case OPT_MAX:
    case OPT_DISTINCT:
        if (!*value)
            return usage_error(o->name, "needs a field, e.g. --sum price");
        add_qopt(c, CLI_Q_AGGREGATE, o->name + 2, value);
        break;
    case OPT_GROUP_BY:
        if (!*value)
            return usage_error("--group-by", "needs a field, e.g. --group-by country");
        add_qopt(c, CLI_Q_GROUP_BY, NULL, value);
        break;
    case OPT_TYPES:
        c->types = value;
        break;
    case OPT_STOP:
        c->stop = 1;
        break;
    case OPT_DESCRIPTION:
        c->description = value;
        break;
    case OPT_MANUAL:
        c->manual = 1;
        break;
    case OPT_PORT:
        c->port = value;
        break;
    case OPT_BIND:
        if (!*value)
            return usage_error("--bind", "needs an address, e.g. --bind 127.0.0.1");
        c->bind = value;
        break;
    case OPT_INSECURE:
        c->insecure = 1;
        break;
    case OPT_MAX_BODY:
        c->max_body = value;
        break;
    case OPT_TIMEOUT:
        c->timeout = value;
        break;
    case OPT_CONFIG:
        c->config = value;
        break;
    case OPT_BACKUP_EVERY:
        c->backup_every = value;
        break;
    case OPT_BACKUP_DIR:
        c->backup_dir = value;
        break;
    case OPT_RETENTION_EVERY:
        c->retention_every = value;
        break;
    case OPT_CONSOLIDATE_EVERY:
        c->consolidate_every = value;
        break;
    case OPT_CONSOLIDATE_AFTER:
        c->consolidate_after = value;
        break;
    case OPT_KEEP:
        c->keep = value;
        break;
    case OPT_AUTH:
        c->auth = 1;
        break;
    case OPT_AUTH_DIFFICULTY:
        c->auth_difficulty = value;
        break;
    case OPT_OWNER:
        if (!*value)
            return usage_error("--owner", "needs a key file (kdelta auth keygen --out FILE)");
        c->owner = value;
        break;
    case OPT_SESSION_TTL:
        c->session_ttl = value;
        break;
    case OPT_IDENTITY:
        if (!*value)
            return usage_error("--identity", "needs a key file (kdelta auth keygen --out FILE)");
        c->identity = value;
        break;
    case OPT_NAME:
        c->name = value;
        break;
    case OPT_OUT:
        if (!*value)
            return usage_error("--out", "needs a file name");
        c->out = value;
        break;
    case OPT_DIFFICULTY:
        c->difficulty = value;
        break;
    case OPT_SHOW_SECRET:
        c->show_secret = 1;
        break;
    case OPT_PREFIX:
        if (!*value)
            return usage_error("--prefix", "needs a key prefix");
        c->prefix = value;
        break;
    case OPT_EXPIRES:
        c->expires = value;
        break;
    case OPT_MODEL:
        c->vector.model = value;
        break;
    case OPT_META:
        c->vector.meta = value;
        break;
    case OPT_TOP:
        if (!cli_parse_number(value, 1, KD_VECTOR_MAX_K, &n))
            return cli_error(CLI_USAGE, "-k/--top", "expected a whole number from 1 to %d, got '%s'", KD_VECTOR_MAX_K,
                             value);
        c->vector.top = n;
        break;
    case OPT_METRIC:
        c->vector.metric = value;
        break;
    case OPT_MIN_SCORE:
        c->vector.min_score = value;
        break;
    case OPT_EF:
        if (!cli_parse_number(value, 0, 1000000000, &n))
            return cli_error(CLI_USAGE, "--ef", "expected a whole number >= 0 (0 = the default), got '%s'", value);
        c->vector.ef = n;
        c->vector.ef_set = 1;
        break;
    case OPT_CURRENT_ONLY:
        c->current_only = 1;
        break;
    case OPT_INCREMENTAL:
        c->incremental = 1;
        break;
    case OPT_WORKSPACE:
        if (!*value)
            return usage_error("--workspace", "needs a workspace name (kdelta workspace list shows them)");
        c->workspace = value;
        break;
    case OPT_SINCE:
        if (!*value)
            return usage_error("--since", "needs the previous backup file");
        c->since = value;
        break;
    case OPT_KEEP_LAST:
        if (!cli_parse_number(value, 1, UINT32_MAX, &n))
            return cli_error(CLI_USAGE, "--keep-last", "expected a whole number from 1 to 4294967295, got '%s'", value);
        c->keep_last = value;
        break;
    case OPT_KEEP_NEWER_THAN:
        c->keep_newer_than = value;
        break;
    case OPT_THIN:
        if (c->n_thin == (int)(sizeof c->thin / sizeof c->thin[0]))
            return cli_error(CLI_USAGE, "--thin", "at most 16 thinning rules");
        c->thin[c->n_thin++] = value;
        break;
    case OPT_DRY_RUN:
        c->dry_run = 1;
        break;
    case OPT_OLDER_THAN:
        if (kd_duration_parse(value, &c->older_than) != KD_OK)
            return usage_error("--older-than", "expected a duration such as 30m, 2h or 7d");
        break;
    }
    return -1;
}

const char *cli_command_name(size_t i)
{
    return i < COUNT(commands) ? commands[i].name : NULL;
}

const char *cli_option_name(size_t i)
{
    return i < COUNT(options) ? options[i].name : NULL;
}

/* Parse argv into c. Returns -1 to run the command, or an exit status. */
int cli_parse(struct cli *c, int argc, char **argv)
{
    int want_help = 0, want_version = 0, options_done = 0;
    unsigned char seen[COUNT(options)] = {0}; /* options[i] was given; checked once the command is known */
    c->args = xmalloc(sizeof(char *) * (size_t)(argc + 1));
    c->qopts = xmalloc(sizeof(struct cli_qopt) * (size_t)(argc + 1));

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int is_option = !options_done && a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9');
        if (!is_option) {
            if (!c->command)
                c->command = a;
            else
                c->args[c->nargs++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = 1;
            continue;
        }
        const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
        size_t namelen = eq ? (size_t)(eq - a) : strlen(a);
        const struct option_def *o = find_option(a, namelen);
        if (!o) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(namelen < 60 ? namelen : 60), a);
            return cli_error(CLI_USAGE, name, "unknown option (try 'kdelta --help')");
        }
        const char *value = NULL;
        if (o->has_value) {
            if (eq) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                return cli_error(CLI_USAGE, o->name, "needs a value (try 'kdelta --help')");
            }
        } else if (eq) {
            return cli_error(CLI_USAGE, o->name, "takes no value");
        }
        seen[o - options] = 1;
        int rc = apply_option(c, o, value, &want_help, &want_version);
        if (rc >= 0)
            return rc;
    }

    if (want_version) {
        printf("kdelta %s (libkorudelta %s)\n", KD_VERSION_STRING, kd_libversion());
        return cli_finish_output(CLI_OK);
    }
    if (want_help || (c->command && strcmp(c->command, "help") == 0)) {
        const char *topic = NULL;
        if (c->command && strcmp(c->command, "help") != 0)
            topic = c->command;
        else if (c->nargs > 0)
            topic = c->args[0];
        else if (c->command && want_help) /* kdelta help --help */
            topic = c->command;
        if (topic && !find_command(topic))
            return cli_error(CLI_USAGE, topic, "unknown command (try 'kdelta --help')");
        if (c->command && strcmp(c->command, "help") == 0 && c->nargs > 1)
            return cli_error(CLI_USAGE, "help", "takes one COMMAND, got %d arguments", c->nargs);
        cli_help(stdout, topic);
        return cli_finish_output(CLI_OK);
    }
    if (!c->command)
        return cli_error(CLI_USAGE, "usage", "no command given (try 'kdelta --help')");

    const struct command_def *cmd = find_command(c->command);
    if (!cmd)
        return cli_error(CLI_USAGE, c->command, "unknown command (try 'kdelta --help')");
    /* Every command option belongs to exactly one command. */
    for (size_t i = 0; i < COUNT(options); i++) {
        const struct option_def *o = &options[i];
        if (seen[i] && o->only && !option_of(o->only, cmd->name))
            return cli_error(CLI_USAGE, o->name, "is an option of '%s', not of '%s' (try 'kdelta help %s')", o->only,
                             cmd->name, cmd->name);
    }
    /* With --url the server owns the database and decides how it is opened. */
    if (c->url && (c->db_dir || c->sync_set || c->busy_ms >= 0 || c->max_memory))
        return cli_error(CLI_USAGE, "--url",
                         "%s applies to a local database; with --url the server's own options decide (give one or the "
                         "other)",
                         c->db_dir ? "--db" : c->sync_set ? "--sync" : c->max_memory ? "--max-memory" : "--busy-timeout");
    if (c->identity && !c->url)
        return cli_error(CLI_USAGE, "--identity", "logs in to a server: give --url too");
    if (c->nargs < cmd->min_args || c->nargs > cmd->max_args) {
        char why[400];
        snprintf(why, sizeof why, "%s arguments: usage: kdelta %s %s", c->nargs < cmd->min_args ? "missing" : "too many",
                 cmd->name, cmd->synopsis);
        return usage_error(cmd->name, why);
    }
    return -1;
}

int cli_run_command(struct cli *c)
{
    if (c->remote) /* values kept from the previous command of a shell */
        remote_forget(c->remote);
    return find_command(c->command)->run(c);
}

/* Started with stdin, stdout or stderr closed (a cron job, `<&- >&-`),
 * the first file kdelta opens (an input, an export's output, the
 * database's lock or log) would become that fd, and what kdelta prints
 * would be written into it: each closed one is pointed at /dev/null first
 * (the library guards its own files the same way, for other programs). */
static void keep_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF && open("/dev/null", O_RDWR) < 0)
            return;
}

int main(int argc, char **argv)
{
    keep_std_fds();
    struct cli c;
    memset(&c, 0, sizeof c);
    c.busy_ms = -1;
    int rc = cli_parse(&c, argc, argv);
    if (rc < 0)
        rc = cli_run_command(&c);
    if (c.db || c.remote)
        rc = cli_close(&c, rc);
    free(c.path);
    free(c.args);
    free(c.qopts);
    return rc;
}
