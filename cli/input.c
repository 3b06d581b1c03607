/*
 * input.c — what kdelta reads: NS/KEY arguments, values (inline, stdin or
 * @FILE), and the database location, which it opens.
 *
 * Values are read whole into memory, stopping once one is sure to be over
 * the database's maximum value size (or over CLI_MAX_INPUT bytes in all);
 * the library validates the JSON and judges the stored size exactly.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "remote.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Memory
 * ---------------------------------------------------------------------- */

static void out_of_memory(void)
{
    fputs("kdelta: out of memory\n", stderr);
    exit(CLI_ERROR);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        out_of_memory();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        out_of_memory();
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

/* ------------------------------------------------------------------------
 * Names and values
 * ---------------------------------------------------------------------- */

int cli_split_name(const char *arg, char **ns, char **key)
{
    const char *slash = strchr(arg, '/');
    char *shown = cli_display(arg, NULL, 120);
    int rc = CLI_OK;
    if (!slash)
        rc = cli_error(CLI_INVALID, shown, "expected NS/KEY, e.g. users/alice (no '/' found)");
    else if (slash == arg)
        rc = cli_error(CLI_INVALID, shown, "expected NS/KEY, e.g. users/alice (the namespace before '/' is empty)");
    else if (slash[1] == '\0')
        rc = cli_error(CLI_INVALID, shown, "expected NS/KEY, e.g. users/alice (the key after '/' is empty)");
    free(shown);
    if (rc != CLI_OK)
        return rc;
    size_t nslen = (size_t)(slash - arg);
    *ns = xmalloc(nslen + 1);
    memcpy(*ns, arg, nslen);
    (*ns)[nslen] = '\0';
    *key = xstrdup(slash + 1);
    if ((rc = cli_check_name(*ns, *key)) != CLI_OK) {
        free(*ns);
        free(*key);
        *ns = *key = NULL;
    }
    return rc;
}

char *cli_ns_arg(const char *arg)
{
    char *ns = xstrdup(arg);
    size_t l = strlen(ns);
    if (l > 1 && ns[l - 1] == '/')
        ns[l - 1] = '\0';
    return ns;
}

int cli_check_name(const char *ns, const char *key)
{
    char why[1500];
    int rc = kd_check_name(ns, key, why, sizeof why);
    if (rc == KD_OK)
        return CLI_OK;
    char *shown = cli_display(ns, key, 120);
    int status = cli_error(cli_exit_status(rc), shown, "%s", why);
    free(shown);
    return status;
}

/* How much of a value read so far can reach its stored (canonical) form:
 * every byte but the whitespace between tokens, which that form drops, so
 * a pretty-printed value is judged by what it stores. Only strings need
 * telling apart from the rest, hence this small scanner and not a parser.
 * Escapes spelled longer than needed (\u0041), duplicate members and long
 * spellings of numbers shrink too: such rare input may be refused here
 * though it would fit; the library judges the stored size exactly. */
struct value_size {
    size_t counted;
    int in_string, escaped;
};

static void count_value_bytes(struct value_size *vs, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (vs->in_string) {
            if (vs->escaped)
                vs->escaped = 0;
            else if (ch == '\\')
                vs->escaped = 1;
            else if (ch == '"')
                vs->in_string = 0;
        } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            continue;
        } else if (ch == '"') {
            vs->in_string = 1;
        }
        vs->counted++;
    }
}

/* Set when a value from stdin was refused before its end (see
 * cli_drop_rest_of_value). */
static int stdin_cut;

#define READ_STEP ((size_t)1 << 20) /* the limits are checked after each step */

/* Is f the command stream itself: stdin, or a file naming it (@/dev/stdin,
 * @/proc/self/fd/0)? The shell must then drop the rest of a value cut
 * short, or it would run as commands. */
static int same_as_stdin(FILE *f)
{
    struct stat a, b;
    if (f == stdin)
        return 1;
    return fstat(fileno(f), &a) == 0 && fstat(0, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Read all of `f` (`source` in messages, the value `what`): at most
 * CLI_MAX_INPUT bytes, and at most KD_DEFAULT_MAX_VALUE_SIZE that count
 * (struct value_size). */
static int read_all(FILE *f, const char *source, const char *what, char **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    struct value_size vs = {0, 0, 0};
    char *buf = xmalloc(cap + 1);
    int status = CLI_OK;
    for (;;) {
        if (n == cap) {
            cap = cap > CLI_MAX_INPUT / 2 ? CLI_MAX_INPUT + 1 : cap * 2;
            buf = xrealloc(buf, cap + 1);
        }
        size_t want = cap - n < READ_STEP ? cap - n : READ_STEP;
        size_t got = fread(buf + n, 1, want, f);
        count_value_bytes(&vs, buf + n, got);
        if (n == 0 && got >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
            vs.counted -= 3; /* a leading byte order mark, which the library skips */
        n += got;
        if (vs.counted > KD_DEFAULT_MAX_VALUE_SIZE) {
            status = cli_error(cli_exit_status(KD_ETOOBIG), what, "value from %s is more than %zu bytes; the limit is %zu",
                               source, KD_DEFAULT_MAX_VALUE_SIZE, KD_DEFAULT_MAX_VALUE_SIZE);
            goto cut;
        }
        if (n > CLI_MAX_INPUT) { /* nearly all of it whitespace */
            status = cli_error(CLI_INVALID, what, "value from %s is larger than 1 GiB, the most kdelta reads", source);
            goto cut;
        }
        if (got < want) /* fread stops short only at the end or on an error */
            break;
    }
    if (ferror(f)) {
        status = cli_error(CLI_ERROR, source, "cannot read: %s", strerror(errno));
        goto fail;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return CLI_OK;
cut:
    if (same_as_stdin(f))
        stdin_cut = 1;
fail:
    free(buf);
    return status;
}

void cli_drop_rest_of_value(void)
{
    char buf[1 << 16];
    if (!stdin_cut)
        return;
    stdin_cut = 0;
    if (isatty(0)) /* else it would look like the shell stopped answering */
        fprintf(stderr, "kdelta: the rest of that value is skipped, up to the end of input (Ctrl-D)\n");
    while (fread(buf, 1, sizeof buf, stdin) == sizeof buf)
        ;
}

int cli_read_value(const char *arg, const char *what, char **out, size_t *len)
{
    int rc;
    if (strcmp(arg, "-") == 0) {
        rc = read_all(stdin, "stdin", what, out, len);
    } else if (arg[0] == '@') {
        char *shown = cli_display(arg, NULL, 200);
        FILE *f = fopen(arg + 1, "rb");
        if (!f) {
            rc = cli_error(CLI_ERROR, shown, "cannot open: %s", strerror(errno));
        } else {
            rc = read_all(f, shown, what, out, len);
            fclose(f);
        }
        free(shown);
    } else {
        *len = strlen(arg);
        *out = xstrdup(arg);
        rc = CLI_OK;
    }
    /* A leading byte order mark stays: the library's parsers skip one
     * (docs/JSON.md), so a second is refused and error offsets count it. */
    return rc;
}

/* ------------------------------------------------------------------------
 * The database
 * ---------------------------------------------------------------------- */

/* ~/.korudelta/db, creating ~/.korudelta if needed. malloc'd, or NULL after
 * reporting the error in *status. */
static char *default_dir(int *status)
{
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home || !*home) {
        *status = cli_error(CLI_ERROR, "database", "no home directory: set HOME or KORU_DB, or use --db DIR");
        return NULL;
    }
    size_t n = strlen(home) + sizeof "/.korudelta/db";
    char *dir = xmalloc(n);
    snprintf(dir, n, "%s/.korudelta", home);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        *status = cli_error(CLI_ERROR, dir, "cannot create directory: %s", strerror(errno));
        free(dir);
        return NULL;
    }
    snprintf(dir, n, "%s/.korudelta/db", home);
    return dir;
}

/* Library log lines (KORU_LOG) go to stderr with time and level. */
static void log_line(void *ctx, kd_log_level level, const char *msg)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    char when[40];
    (void)ctx;
    fprintf(stderr, "%s kdelta %s: %s\n", cli_time(kd_now(), when), names[level <= KD_LOG_DEBUG ? level : 3], msg);
}

static int log_level(const char *s, kd_log_level *out)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (kd_log_level)i;
            return 1;
        }
    return 0;
}

char *cli_db_dir(struct cli *c, int *status)
{
    const char *env = getenv("KORU_DB");
    if (c->db_dir)
        return xstrdup(c->db_dir);
    if (env && *env)
        return xstrdup(env);
    return default_dir(status);
}

/* The URL a running `kdelta serve` recorded in the directory (first line
 * of DIR/SERVER), if that server process is still alive (second line
 * "pid N"); malloc'd, or NULL. */
static char *server_url(const char *dir)
{
    size_t n = strlen(dir) + sizeof "/SERVER";
    char *path = xmalloc(n);
    snprintf(path, n, "%s/SERVER", dir);
    FILE *f = fopen(path, "r");
    free(path);
    if (!f)
        return NULL;
    char url[256], pidline[64];
    char *res = NULL;
    if (fgets(url, sizeof url, f) && strncmp(url, "http://", 7) == 0) {
        url[strcspn(url, "\r\n")] = '\0';
        long pid = 0;
        if (fgets(pidline, sizeof pidline, f) && sscanf(pidline, "pid %ld", &pid) == 1 && pid > 0 &&
            (kill((pid_t)pid, 0) == 0 || errno == EPERM))
            res = xstrdup(url);
    }
    fclose(f);
    return res;
}

int cli_open_failed(const char *dir, int rc, const char *err)
{
    if (rc != KD_EBUSY)
        return cli_error(cli_exit_status(rc), dir, "cannot open database: %s", err[0] ? err : kd_strerror(rc));
    /* say what to do next, in kdelta's terms */
    char *url = server_url(dir);
    int status;
    if (url)
        status = cli_error(CLI_BUSY, dir,
                           "cannot open database: %s; a kdelta server is serving this database at %s: "
                           "give --url %s to send the command to it, or stop the server first",
                           err[0] ? err : kd_strerror(rc), url, url);
    else
        status = cli_error(CLI_BUSY, dir, "cannot open database: %s%s", err[0] ? err : kd_strerror(rc),
                           strstr(err, "busy timeout") ? " (--busy-timeout MS)"
                                                       : "; wait for it to finish, or raise --busy-timeout MS");
    free(url);
    return status;
}

int cli_serve_open_failed(const char *dir, int rc, const char *err)
{
    char *url = rc == KD_EBUSY ? server_url(dir) : NULL;
    if (!url)
        return cli_open_failed(dir, rc, err);
    int status = cli_error(CLI_BUSY, dir, "cannot serve this database: a kdelta server is already serving it at %s",
                           url);
    free(url);
    return status;
}

/* --url: a server instead of a directory (remote.h). Nothing is sent
 * yet; the first request tells whether the server is there. */
static int open_remote(struct cli *c)
{
    const char *why = "", *lv = getenv("KORU_LOG");
    kd_log_level level;
    if (lv && *lv && !log_level(lv, &level)) /* checked as locally, though the server does the logging */
        return cli_error(CLI_USAGE, "KORU_LOG", "unknown level '%s' (use error, warn, info or debug)", lv);
    int rc = remote_open(c->url, &c->remote, &why);
    if (rc != KD_OK)
        return cli_error(rc == KD_EINVALID ? CLI_USAGE : cli_exit_status(rc), "--url", "%s: %s", c->url, why);
    c->path = xstrdup(remote_url(c->remote));
    if (c->workspace)
        remote_set_workspace(c->remote, c->workspace);
    int status = CLI_OK;
    if (c->identity && !c->no_login)
        status = cli_remote_login(c);
    if (status == CLI_OK && c->workspace && strcmp(c->workspace, "default") != 0 &&
        !(c->command && strcmp(c->command, "auth") == 0)) {
        /* as locally: a workspace that does not exist is said so at once
         * (auth grant -w only names the workspace of a grant) */
        char **names = NULL;
        size_t n = 0, i = 0;
        rc = st_workspace_list(c, &names, &n);
        if (rc != KD_OK)
            return cli_kd_error(c, rc, "--workspace");
        while (i < n && strcmp(names[i], c->workspace) != 0)
            i++;
        kd_free_list(names, n);
        if (i == n && c->ws_may_be_missing && !c->identity) /* with --auth, maybe not ours to see */
            c->ws_missing = 1;
        else if (i == n) {
            char *shown = cli_display(c->workspace, NULL, 200);
            /* with --auth the server lists only the workspaces the caller holds a grant in */
            status = c->identity ? cli_error(CLI_NOTFOUND, "--workspace", "no workspace named '%s' that this "
                                             "identity holds a grant in", shown)
                                 : cli_error(CLI_NOTFOUND, "--workspace", "no workspace named '%s' (create it first)",
                                             shown);
            free(shown);
        }
    }
    return status;
}

int cli_local_only(struct cli *c)
{
    if (!c->url)
        return CLI_OK;
    return cli_error(CLI_USAGE, c->command,
                     "works on the database directory itself, not through a server: run it on the server's "
                     "machine without --url (stop the server first)");
}

int cli_open(struct cli *c)
{
    int status = CLI_OK;
    char *dir;
    if (c->db || c->remote) /* already open: the shell runs every command on its handle */
        return CLI_OK;
    if (c->url)
        return open_remote(c);
    if (!(dir = cli_db_dir(c, &status)))
        return status;

    kd_options *opts = kd_options_new();
    if (!opts) {
        free(dir);
        return cli_error(CLI_ERROR, "kdelta", "out of memory");
    }
    int rc = KD_OK;
    if (c->sync_set)
        rc = kd_options_set_sync(opts, c->sync, 100);
    if (rc == KD_OK && c->busy_ms >= 0)
        rc = kd_options_set_busy_timeout(opts, (uint32_t)c->busy_ms);
    if (rc == KD_OK && c->max_memory)
        rc = kd_options_set_max_memory(opts, c->max_memory);
    const char *lv = getenv("KORU_LOG");
    if (rc == KD_OK && lv && *lv) {
        kd_log_level level;
        if (!log_level(lv, &level)) {
            kd_options_free(opts);
            free(dir);
            return cli_error(CLI_USAGE, "KORU_LOG", "unknown level '%s' (use error, warn, info or debug)", lv);
        }
        rc = kd_options_set_log(opts, log_line, NULL, level);
    }
    if (rc != KD_OK) {
        kd_options_free(opts);
        free(dir);
        return cli_error(cli_exit_status(rc), "options", "%s", kd_strerror(rc));
    }

    char err[512] = "";
    rc = kd_open(dir, opts, &c->db, err, sizeof err);
    kd_options_free(opts);
    if (rc != KD_OK) {
        c->db = NULL;
        status = cli_open_failed(dir, rc, err);
        free(dir);
        return status;
    }
    char *real = realpath(dir, NULL);
    if (real) {
        free(dir);
        dir = real;
    }
    c->path = dir;
    if (c->workspace) {
        kd_db *ws = NULL;
        rc = kd_workspace_open(c->db, c->workspace, &ws);
        if (rc == KD_ENOTFOUND && c->ws_may_be_missing) {
            c->ws_missing = 1;
            return CLI_OK;
        }
        if (rc != KD_OK) {
            status = cli_error(cli_exit_status(rc), "--workspace", "%s", kd_errmsg(c->db));
            kd_close(c->db);
            c->db = NULL;
            return status;
        }
        c->core = c->db;
        c->db = ws;
    }
    return CLI_OK;
}

int cli_close(struct cli *c, int status)
{
    if (c->remote) {
        remote_close(c->remote);
        c->remote = NULL;
        return status;
    }
    if (c->core) { /* the workspace's handle first, then the database */
        kd_close(c->db);
        c->db = c->core;
        c->core = NULL;
    }
    int rc = kd_close(c->db);
    c->db = NULL;
    if (rc != KD_OK && status == CLI_OK)
        return cli_error(cli_exit_status(rc), c->path ? c->path : "database", "closing failed: %s", kd_strerror(rc));
    return status;
}
