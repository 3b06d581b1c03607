/*
 * serve.c — `kdelta serve`: read the server's settings (defaults, then
 * --config FILE, then KORU_LOG, then the command line), refuse a
 * non-loopback address without --insecure, open the database and hand it
 * to the HTTP server (server/http.c, ks_serve) until SIGINT/SIGTERM.
 *
 * The settings are one table (settings[] below) that drives both the
 * config file's keys and the checks of the matching command-line options.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "server.h"
#include "server_int.h"

/* ------------------------------------------------------------------------
 * Settings
 * ---------------------------------------------------------------------- */

struct serve_settings {
    ks_config cfg;
    char *bind;   /* malloc'd when it came from the config file */
    char *owner_doc; /* --owner KEYFILE: the public document of that identity (malloc'd) */
    int sync_set;
    kd_sync sync;
    uint64_t backup_every_s; /* 0: no scheduled backups */
    char *backup_dir;        /* malloc'd */
    unsigned keep;           /* scheduled backups kept; 0 = all */
    int retention_set;       /* --retention-every given */
    uint32_t retention_ms;   /* how often upkeep applies retention; 0 = never */
    int consolidate_set;     /* --consolidate-every or --consolidate-after given */
    uint32_t consolidate_ms, consolidate_after_ms; /* how often upkeep consolidates (0 = never), and from what age */
    uint64_t max_memory;     /* the database's memory budget; 0 = default */
    char auth_only[300];     /* where the config file set the first setting of an authenticated server, or "" */
    char every_from[300], dir_from[300], keep_from[300]; /* where backup_every, backup_dir, backup_keep were set */
};

/* A DURATION (kd_duration_parse: 90s, 30m, 12h, 7d, 2w) of 1 s to 366 d,
 * in seconds. */
static int parse_duration(const char *s, uint64_t *out)
{
    int64_t ns;
    if (kd_duration_parse(s, &ns) != KD_OK || ns > INT64_C(366) * 86400 * 1000000000)
        return 0;
    *out = (uint64_t)(ns / 1000000000);
    return 1;
}

/* A whole number in [min, max] (sizes: cli_parse_size). */
static int parse_uint(const char *s, unsigned long long min, unsigned long long max, unsigned long long *out)
{
    if (!*s || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return 0;
    *out = v;
    return 1;
}

static int parse_log_level(const char *s, int *out)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 1;
        }
    return 0;
}

enum setting_id { S_PORT, S_BIND, S_INSECURE, S_MAX_BODY, S_TIMEOUT, S_MAX_CONNECTIONS, S_SYNC, S_LOG, S_AUTH,
                  S_AUTH_DIFFICULTY, S_OWNER, S_SESSION_TTL, S_BACKUP_EVERY, S_BACKUP_DIR, S_BACKUP_KEEP,
                  S_MAX_MEMORY, S_RETENTION_EVERY, S_CONSOLIDATE_EVERY, S_CONSOLIDATE_AFTER };

static const struct setting {
    const char *key;    /* in the config file */
    const char *option; /* on the command line, or NULL */
    enum setting_id id;
} settings[] = {
    {"port", "--port", S_PORT},
    {"bind", "--bind", S_BIND},
    {"insecure", "--insecure", S_INSECURE},
    {"max_body", "--max-body", S_MAX_BODY},
    {"timeout", "--timeout", S_TIMEOUT},
    {"max_connections", NULL, S_MAX_CONNECTIONS},
    {"sync", "--sync", S_SYNC},
    {"log", NULL, S_LOG},
    {"auth", "--auth", S_AUTH},
    {"auth_difficulty", "--auth-difficulty", S_AUTH_DIFFICULTY},
    {"owner", "--owner", S_OWNER},
    {"session_ttl", "--session-ttl", S_SESSION_TTL},
    {"backup_every", "--backup-every", S_BACKUP_EVERY},
    {"backup_dir", "--backup-dir", S_BACKUP_DIR},
    {"backup_keep", "--keep", S_BACKUP_KEEP},
    {"retention_every", "--retention-every", S_RETENTION_EVERY},
    {"consolidate_every", "--consolidate-every", S_CONSOLIDATE_EVERY},
    {"consolidate_after", "--consolidate-after", S_CONSOLIDATE_AFTER},
    {"max_memory", "--max-memory", S_MAX_MEMORY},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Apply one setting; `from` names its origin in messages ("--port",
 * "FILE:3: port"). Returns -1 to go on, or an exit status. */
static int parse_bool(const char *value, int *out)
{
    if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
        *out = 1;
    else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
        *out = 0;
    else
        return 0;
    return 1;
}

static int apply(struct serve_settings *s, enum setting_id id, const char *value, const char *from, int from_file)
{
    unsigned long long n;
    if (from_file && !s->auth_only[0] && (id == S_AUTH_DIFFICULTY || id == S_OWNER || id == S_SESSION_TTL))
        snprintf(s->auth_only, sizeof s->auth_only, "%s", from);
    /* the backup settings are checked together at the end: name each's origin */
    if (id == S_BACKUP_EVERY || id == S_BACKUP_DIR || id == S_BACKUP_KEEP)
        snprintf(id == S_BACKUP_EVERY ? s->every_from : id == S_BACKUP_DIR ? s->dir_from : s->keep_from,
                 sizeof s->every_from, "%s", from);
    switch (id) {
    case S_AUTH:
        if (!parse_bool(value, &s->cfg.auth))
            return cli_error(CLI_USAGE, from, "expected true or false, got '%s'", value);
        break;
    case S_AUTH_DIFFICULTY:
        if (!parse_uint(value, 0, KD_AUTH_MAX_DIFFICULTY, &n))
            return cli_error(CLI_USAGE, from, "expected proof-of-work bits, 0 to %d, got '%s'", KD_AUTH_MAX_DIFFICULTY,
                             value);
        s->cfg.auth_difficulty = (unsigned)n;
        break;
    case S_SESSION_TTL:
        if (ks_parse_duration(value, &s->cfg.session_ttl_ns) != 0)
            return cli_error(CLI_USAGE, from, "expected a duration such as 3600, 90s, 30m, 12h or 7d, got '%s'", value);
        break;
    case S_OWNER: {
        kd_identity *ident = NULL;
        char err[512];
        int rc = cli_load_identity(value, &ident, err, sizeof err);
        if (rc != KD_OK)
            return cli_error(rc == KD_EINVALID ? CLI_INVALID : CLI_ERROR, from, "%s", err);
        char *doc = NULL;
        size_t len = 0;
        rc = kd_identity_document(ident, &doc, &len);
        kd_identity_free(ident);
        if (rc != KD_OK)
            return cli_error(CLI_ERROR, from, "%s", kd_strerror(rc));
        free(s->owner_doc);
        s->owner_doc = xstrdup(doc);
        kd_free(doc);
        s->cfg.owner_doc = s->owner_doc;
        break;
    }
    case S_PORT:
        if (!parse_uint(value, 0, 65535, &n))
            return cli_error(CLI_USAGE, from, "expected a port number 0 to 65535 (0 = any free port), got '%s'", value);
        s->cfg.port = (unsigned)n;
        break;
    case S_BIND:
        if (!*value)
            return cli_error(CLI_USAGE, from, "needs an address, e.g. 127.0.0.1");
        if (from_file) {
            free(s->bind);
            s->bind = xstrdup(value);
            s->cfg.bind = s->bind;
        } else {
            s->cfg.bind = value;
        }
        break;
    case S_INSECURE:
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
            s->cfg.insecure = 1;
        else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
            s->cfg.insecure = 0;
        else
            return cli_error(CLI_USAGE, from, "expected true or false, got '%s'", value);
        break;
    case S_MAX_BODY: {
        uint64_t bytes;
        if (!cli_parse_size(value, 1, (uint64_t)1 << 30, &bytes))
            return cli_error(CLI_USAGE, from, "expected bytes, 1 to 1G (suffix K, M or G allowed), got '%s'", value);
        s->cfg.max_body = (size_t)bytes;
        break;
    }
    case S_TIMEOUT:
        if (!parse_uint(value, 1, 86400, &n))
            return cli_error(CLI_USAGE, from, "expected seconds, 1 to 86400, got '%s'", value);
        s->cfg.timeout_s = (unsigned)n;
        break;
    case S_MAX_CONNECTIONS:
        if (!parse_uint(value, 1, 100000, &n))
            return cli_error(CLI_USAGE, from, "expected a number of connections, 1 to 100000, got '%s'", value);
        s->cfg.max_connections = (unsigned)n;
        break;
    case S_SYNC:
        s->sync_set = 1;
        if (strcmp(value, "always") == 0)
            s->sync = KD_SYNC_ALWAYS;
        else if (strcmp(value, "interval") == 0)
            s->sync = KD_SYNC_INTERVAL;
        else if (strcmp(value, "none") == 0)
            s->sync = KD_SYNC_NONE;
        else
            return cli_error(CLI_USAGE, from, "unknown mode '%s' (use always, interval or none)", value);
        break;
    case S_BACKUP_EVERY:
        if (!parse_duration(value, &s->backup_every_s))
            return cli_error(CLI_USAGE, from, "expected a duration such as 90s, 30m, 24h or 7d (1 s to 366 d), got '%s'",
                             value);
        break;
    case S_MAX_MEMORY:
        if (!cli_parse_size(value, CLI_MAX_MEMORY_MIN, CLI_MAX_MEMORY_MAX, &s->max_memory))
            return cli_error(CLI_USAGE, from, "expected a size from 8M to 1024T, such as 512M or 2G, got '%s'", value);
        break;
    case S_RETENTION_EVERY: {
        uint64_t sec = 0;
        if (strcmp(value, "off") != 0 && (!parse_duration(value, &sec) || sec > 49ull * 86400))
            return cli_error(CLI_USAGE, from, "expected a duration such as 30m, 1h or 1d (1 s to 49 d), or off, "
                             "got '%s'", value);
        s->retention_set = 1;
        s->retention_ms = (uint32_t)(sec * 1000);
        break;
    }
    case S_CONSOLIDATE_EVERY:
    case S_CONSOLIDATE_AFTER: {
        uint64_t sec = 0;
        int off_ok = id == S_CONSOLIDATE_EVERY && strcmp(value, "off") == 0;
        if (!off_ok && (!parse_duration(value, &sec) || sec > 49ull * 86400))
            return cli_error(CLI_USAGE, from, "expected a duration such as 5m, 1h or 1d (1 s to 49 d)%s, got '%s'",
                             id == S_CONSOLIDATE_EVERY ? ", or off" : "", value);
        s->consolidate_set = 1;
        if (id == S_CONSOLIDATE_EVERY)
            s->consolidate_ms = (uint32_t)(sec * 1000);
        else
            s->consolidate_after_ms = (uint32_t)(sec * 1000);
        break;
    }
    case S_BACKUP_DIR:
        if (!*value)
            return cli_error(CLI_USAGE, from, "needs a directory");
        free(s->backup_dir);
        s->backup_dir = xstrdup(value);
        break;
    case S_BACKUP_KEEP:
        if (!parse_uint(value, 0, 100000, &n))
            return cli_error(CLI_USAGE, from, "expected a number of backups to keep, 0 (all) to 100000, got '%s'",
                             value);
        s->keep = (unsigned)n;
        break;
    case S_LOG: {
        int level;
        if (!parse_log_level(value, &level))
            return cli_error(CLI_USAGE, from, "unknown level '%s' (use error, warn, info or debug)", value);
        s->cfg.log_level = level;
        break;
    }
    }
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

enum { CONFIG_MAX_BYTES = 64 * 1024, CONFIG_MAX_LINE = 1023 };

/* The whole config file (at most CONFIG_MAX_BYTES), NUL-terminated, in
 * *text; or a usage error. A settings file is small text: /dev/zero, a
 * binary or a log given by mistake is refused, not read for ever. */
static int slurp_config(const char *file, char **text)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return cli_error(CLI_USAGE, file, "cannot read config file: %s", strerror(errno));
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return cli_error(CLI_USAGE, file, "cannot read config file: out of memory");
    }
    size_t n = fread(buf, 1, CONFIG_MAX_BYTES + 1, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    int status = -1;
    if (err)
        status = cli_error(CLI_USAGE, file, "cannot read config file: %s", strerror(err));
    else if (n > CONFIG_MAX_BYTES)
        status = cli_error(CLI_USAGE, file, "config file is larger than %d KiB: not a settings file?",
                           CONFIG_MAX_BYTES / 1024);
    else if (memchr(buf, '\0', n))
        status = cli_error(CLI_USAGE, file, "config file holds a NUL byte: not a text file?");
    if (status >= 0) {
        free(buf);
        return status;
    }
    buf[n] = '\0';
    *text = buf;
    return -1;
}

/* One `key = value` line (trimmed, not blank, not a comment). */
static int config_line(struct serve_settings *s, const char *file, int lineno, char *l)
{
    char from[300];
    char *eq = strchr(l, '=');
    if (!eq) {
        snprintf(from, sizeof from, "%.200s:%d", file, lineno);
        return cli_error(CLI_USAGE, from, "expected 'key = value'");
    }
    *eq = '\0';
    char *key = trim(l), *value = trim(eq + 1);
    size_t vl = strlen(value);
    if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
        value[vl - 1] = '\0';
        value++;
    }
    const struct setting *st = NULL;
    for (size_t i = 0; i < COUNT(settings); i++)
        if (strcmp(settings[i].key, key) == 0)
            st = &settings[i];
    snprintf(from, sizeof from, "%.200s:%d: %.60s", file, lineno, key);
    if (!st)
        return cli_error(CLI_USAGE, from,
                         "unknown setting (known: port, bind, insecure, max_body, timeout, max_connections, "
                         "sync, log, auth, auth_difficulty, owner, session_ttl, backup_every, backup_dir, "
                         "backup_keep, max_memory, retention_every, consolidate_every, consolidate_after)");
    return apply(s, st->id, value, from, 1);
}

/* The config file: `key = value` lines; '#' starts a comment line; blank
 * lines are skipped. An unknown key, a bad value, a line over
 * CONFIG_MAX_LINE bytes or a file that is not small text is a usage error. */
static int read_config(struct serve_settings *s, const char *file)
{
    char *text = NULL;
    int status = slurp_config(file, &text);
    if (status >= 0)
        return status;
    int lineno = 0;
    char *start = text;
    if (!strncmp(start, "\xEF\xBB\xBF", 3)) /* a byte order mark some editors write */
        start += 3;
    for (char *l = start; status < 0 && *l;) {
        char *nl = strchr(l, '\n');
        char *next = nl ? nl + 1 : l + strlen(l);
        if (nl)
            *nl = '\0';
        lineno++;
        if (strlen(l) > CONFIG_MAX_LINE) {
            char from[300];
            snprintf(from, sizeof from, "%.200s:%d", file, lineno);
            status = cli_error(CLI_USAGE, from, "line longer than %d bytes", CONFIG_MAX_LINE);
            break;
        }
        l = trim(l);
        if (*l && *l != '#')
            status = config_line(s, file, lineno, l);
        l = next;
    }
    free(text);
    return status;
}

/* ------------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------- */

int cmd_serve(struct cli *c)
{
    struct serve_settings s;
    memset(&s, 0, sizeof s);
    ks_config_defaults(&s.cfg);
    s.consolidate_ms = 300u * 1000; /* the library's defaults (kd_options_set_consolidation), */
    s.consolidate_after_ms = 3600u * 1000; /* for the one of the two not given */
    int status = -1;
    if (cli_local_only(c) != CLI_OK)
        return CLI_USAGE;
    if (c->db) /* inside `kdelta shell`, which holds the database open */
        return cli_error(CLI_USAGE, "serve",
                         "cannot run inside the shell, which holds the database open; leave the shell and run "
                         "`kdelta serve`");

    if (c->config)
        status = read_config(&s, c->config);
    const char *lv = getenv("KORU_LOG");
    if (status < 0 && lv && *lv)
        status = apply(&s, S_LOG, lv, "KORU_LOG", 0);
    if (status < 0 && c->port)
        status = apply(&s, S_PORT, c->port, "--port", 0);
    if (status < 0 && c->bind)
        status = apply(&s, S_BIND, c->bind, "--bind", 0);
    if (status < 0 && c->insecure)
        s.cfg.insecure = 1;
    if (status < 0 && c->max_body)
        status = apply(&s, S_MAX_BODY, c->max_body, "--max-body", 0);
    if (status < 0 && c->timeout)
        status = apply(&s, S_TIMEOUT, c->timeout, "--timeout", 0);
    if (status < 0 && c->auth)
        s.cfg.auth = 1;
    if (status < 0 && !s.cfg.auth && (c->auth_difficulty || c->owner || c->session_ttl))
        status = cli_error(CLI_USAGE, c->auth_difficulty ? "--auth-difficulty" : c->owner ? "--owner" : "--session-ttl",
                           "is an option of an authenticated server: add --auth");
    if (status < 0 && c->auth_difficulty)
        status = apply(&s, S_AUTH_DIFFICULTY, c->auth_difficulty, "--auth-difficulty", 0);
    if (status < 0 && c->owner)
        status = apply(&s, S_OWNER, c->owner, "--owner", 0);
    if (status < 0 && c->session_ttl)
        status = apply(&s, S_SESSION_TTL, c->session_ttl, "--session-ttl", 0);
    if (status < 0 && c->sync_set) {
        s.sync_set = 1;
        s.sync = c->sync;
    }
    if (status < 0 && c->max_memory)
        s.max_memory = c->max_memory;
    if (status < 0 && c->backup_every)
        status = apply(&s, S_BACKUP_EVERY, c->backup_every, "--backup-every", 0);
    if (status < 0 && c->backup_dir)
        status = apply(&s, S_BACKUP_DIR, c->backup_dir, "--backup-dir", 0);
    if (status < 0 && c->keep)
        status = apply(&s, S_BACKUP_KEEP, c->keep, "--keep", 0);
    if (status < 0 && c->retention_every)
        status = apply(&s, S_RETENTION_EVERY, c->retention_every, "--retention-every", 0);
    if (status < 0 && c->consolidate_every)
        status = apply(&s, S_CONSOLIDATE_EVERY, c->consolidate_every, "--consolidate-every", 0);
    if (status < 0 && c->consolidate_after)
        status = apply(&s, S_CONSOLIDATE_AFTER, c->consolidate_after, "--consolidate-after", 0);
    /* An owner (or a difficulty, a session length) without auth would
     * otherwise serve an open database without a word. */
    if (status < 0 && !s.cfg.auth && s.auth_only[0])
        status = cli_error(CLI_USAGE, s.auth_only, "is a setting of an authenticated server: add 'auth = true' "
                           "(or --auth)");
    if (status < 0 && s.backup_every_s && !s.backup_dir)
        status = cli_error(CLI_USAGE, s.every_from, "scheduled backups need a backup directory too (--backup-dir DIR, "
                           "or backup_dir)");
    if (status < 0 && s.keep && !s.backup_every_s)
        status = cli_error(CLI_USAGE, s.keep_from, "applies to scheduled backups (--backup-every and --backup-dir, or "
                           "backup_every and backup_dir)");
    if (status < 0 && s.backup_dir && mkdir(s.backup_dir, 0755) != 0 && errno != EEXIST)
        status = cli_error(CLI_USAGE, s.dir_from, "cannot create %s: %s", s.backup_dir, strerror(errno));
    struct stat bst;
    if (status < 0 && s.backup_dir && (stat(s.backup_dir, &bst) != 0 || !S_ISDIR(bst.st_mode)))
        status = cli_error(CLI_USAGE, s.dir_from, "%s is not a directory", s.backup_dir);
    if (status < 0 && s.backup_dir && access(s.backup_dir, W_OK | X_OK) != 0)
        status = cli_error(CLI_USAGE, s.dir_from, "%s is not a writable directory: %s", s.backup_dir,
                           strerror(errno));
    if (status < 0 && s.backup_dir) { /* absolute: the path is logged and given to clients */
        char *real = realpath(s.backup_dir, NULL);
        if (real) {
            free(s.backup_dir);
            s.backup_dir = real;
        }
    }
    if (status >= 0)
        goto done;

    int lo = ks_bind_is_loopback(s.cfg.bind);
    if (lo < 0) {
        status = cli_error(CLI_USAGE, "--bind", "cannot resolve address '%s'", s.cfg.bind);
        goto done;
    }
    if (!lo && !s.cfg.auth && !s.cfg.insecure) {
        status = cli_error(CLI_USAGE, "--bind",
                           "%s is not a loopback address: without authentication (--auth) anyone who can reach it could read and "
                           "write every key. Add --auth (recommended), or --insecure to serve it open anyway",
                           s.cfg.bind);
        goto done;
    }
    if (!lo && !s.cfg.auth)
        fprintf(stderr,
                "kdelta: warning: serving on %s without authentication (--insecure): anyone who can reach this "
                "address can read and write every key\n",
                s.cfg.bind);

    /* Open the database; the library logs through the server's log. */
    char *dir = cli_db_dir(c, &status);
    if (!dir)
        goto done;
    kd_options *opts = kd_options_new();
    if (!opts) {
        free(dir);
        status = cli_error(CLI_ERROR, "kdelta", "out of memory");
        goto done;
    }
    int rc = KD_OK;
    if (s.sync_set)
        rc = kd_options_set_sync(opts, s.sync, 100);
    if (rc == KD_OK && c->busy_ms >= 0)
        rc = kd_options_set_busy_timeout(opts, (uint32_t)c->busy_ms);
    if (rc == KD_OK && s.retention_set)
        rc = kd_options_set_retention_interval(opts, s.retention_ms);
    if (rc == KD_OK && s.consolidate_set)
        rc = kd_options_set_consolidation(opts, s.consolidate_ms, s.consolidate_after_ms);
    if (rc == KD_OK && s.max_memory)
        rc = kd_options_set_max_memory(opts, s.max_memory);
    if (rc == KD_OK)
        rc = kd_options_set_log(opts, ks_log_fn, NULL, (kd_log_level)s.cfg.log_level);
    if (rc != KD_OK) {
        kd_options_free(opts);
        free(dir);
        status = cli_error(cli_exit_status(rc), "options", "%s", kd_strerror(rc));
        goto done;
    }
    char err[512] = "";
    ks_log_set_level(s.cfg.log_level);
    rc = kd_open(dir, opts, &c->db, err, sizeof err);
    kd_options_free(opts);
    if (rc != KD_OK) {
        c->db = NULL;
        status = cli_serve_open_failed(dir, rc, err);
        free(dir);
        goto done;
    }
    char *real = realpath(dir, NULL);
    if (real) {
        free(dir);
        dir = real;
    }
    c->path = dir;

    s.cfg.backup_dir = s.backup_dir;
    /* Scheduled backups run beside the server and stop before the
     * database is closed. */
    ks_backup_schedule *sched = NULL;
    if (s.backup_every_s && ks_backup_schedule_start(c->db, s.backup_dir, s.backup_every_s, s.keep, &sched) != 0) {
        status = cli_error(CLI_ERROR, "--backup-every", "cannot start the backup thread");
        goto done;
    }
    /* Runs until SIGINT/SIGTERM; main() closes the database (kd_close
     * flushes and syncs) and reports a failing final sync. */
    status = ks_serve(c->db, c->path, &s.cfg) == 0 ? CLI_OK : CLI_ERROR;
    ks_backup_schedule_stop(sched);

done:
    free(s.bind);
    free(s.backup_dir);
    free(s.owner_doc);
    return status;
}
