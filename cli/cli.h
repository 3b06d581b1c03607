/*
 * cli.h — what the pieces of the `kdelta` command share.
 *
 * kdelta is a thin shell over the public API (include/korudelta.h) and
 * nothing else: main.c parses the command line into a `struct cli` and
 * dispatches; commands.c (set, get, delete), log.c, info.c (list, status,
 * verify), query.c, watch.c (watch, unwatch), view.c, index.c and the others
 * do the work; input.c reads values and names; output.c prints records and
 * reports errors; help.c holds the help texts.
 *
 * Every command returns an exit status (enum cli_exit). Errors are reported
 * with cli_error()/cli_kd_error(): exactly one line on stderr,
 * "kdelta: <what>: <why>".
 */
#ifndef KD_CLI_H
#define KD_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "korudelta.h"

/* Exit statuses; documented in docs/CLI.md and `kdelta --help`. */
enum cli_exit {
    CLI_OK = 0,
    CLI_ERROR = 1,    /* I/O, disk full, out of memory, format, anything else */
    CLI_USAGE = 2,    /* unknown command or option, missing argument */
    CLI_NOTFOUND = 3, /* never written, deleted, or no version at that time */
    CLI_INVALID = 4,  /* bad JSON, name, reserved namespace, too big, bad TIME or NS/KEY */
    CLI_BUSY = 5,     /* database locked by another process past the busy timeout */
    CLI_CONFLICT = 6, /* conditional write failed (reserved) */
    CLI_CORRUPT = 7   /* the database failed a checksum or hash check */
};

/* Most bytes kdelta reads from stdin or a file for one value, whitespace
 * between tokens included (what counts against the value's own limit is
 * said at cli_read_value). */
#define CLI_MAX_INPUT ((size_t)1 << 30)

/* One query option that may repeat, in the order given (query.c). */
enum cli_qkind { CLI_Q_SORT, CLI_Q_AGGREGATE, CLI_Q_GROUP_BY };
struct cli_qopt {
    enum cli_qkind kind;
    const char *op;    /* CLI_Q_AGGREGATE: "count", "sum", "avg", "min", "max", "distinct" */
    const char *value; /* the field (NULL for count), or the sort spec "FIELD[:desc]" */
};

/* The options only `kdelta vector` takes (vector.c). */
struct cli_vector_options {
    const char *model;     /* --model M: put (required), search (only that model) */
    const char *meta;      /* --meta JSON: put */
    const char *metric;    /* --metric cosine|dot|l2: search */
    const char *min_score; /* --min-score S: search */
    int64_t top;           /* -k/--top N: search, 0 = not given (10) */
    int64_t ef;            /* --ef N: search */
    int ef_set;
};

/* The watches of a `kdelta shell` session (watch.c). */
struct cli_watch;
struct cli_watches {
    struct cli_watch *v;
    size_t n, cap;
    unsigned next_id; /* ids shown to people: 1, 2, ... */
};

/* The parsed command line, and the open database. */
struct cli {
    /* global options */
    const char *db_dir; /* --db, else $KORU_DB, else ~/.korudelta/db (resolved by cli_open) */
    const char *url;    /* --url: talk to this `kdelta serve` instead (store.h) */
    int json;           /* --json */
    int sync_set;       /* --sync given */
    kd_sync sync;
    int64_t busy_ms;    /* --busy-timeout, -1 = library default */
    uint64_t max_memory; /* --max-memory in bytes, 0 = the library's default */
    /* command options */
    const char *at;     /* get --at TIME */
    int64_t limit;      /* log --limit N, 0 = all; query --limit N */
    int limit_set;      /* --limit given */
    int reverse;        /* log --reverse */
    const char *key_field; /* import --key FIELD (dotted path) */
    const char *format;    /* import/export --format, NULL = ndjson */
    int skip_bad;          /* import --skip-bad */
    int64_t batch;         /* import --batch N, 0 = 1000 */
    int history;           /* import/export --history */
    const char *from_ref;  /* diff --from REF */
    const char *to_ref;    /* diff --to REF */
    const char *filter;    /* query/watch --filter EXPR */
    const char *select;    /* query --select a,b.c */
    int64_t offset;        /* query --offset N */
    int offset_set;
    struct cli_qopt *qopts; /* query --sort, aggregates, --group-by, in order (malloc'd by cli_parse) */
    int nqopts;
    const char *types;     /* watch --types insert,update,delete */
    int stop;              /* watch --stop */
    const char *description; /* view create --description TEXT */
    int manual;              /* view create --manual */
    const char *port;        /* serve --port N */
    const char *bind;        /* serve --bind ADDR */
    int insecure;            /* serve --insecure */
    const char *max_body;    /* serve --max-body BYTES */
    const char *timeout;     /* serve --timeout SECONDS */
    const char *config;      /* serve --config FILE */
    const char *backup_every; /* serve --backup-every DURATION */
    const char *backup_dir;   /* serve --backup-dir DIR */
    const char *keep;         /* serve --keep N */
    const char *retention_every; /* serve --retention-every DURATION */
    const char *consolidate_every; /* serve --consolidate-every DURATION|off */
    const char *consolidate_after; /* serve --consolidate-after DURATION */
    int auth;                /* serve --auth */
    const char *auth_difficulty; /* serve --auth-difficulty BITS */
    const char *owner;       /* serve --owner KEYFILE */
    const char *session_ttl; /* serve --session-ttl DURATION */
    const char *identity;    /* --identity KEYFILE: log in to the --url server as this identity */
    const char *workspace;   /* --workspace/-w NAME: data commands work inside that workspace */
    int ws_may_be_missing;   /* set by import --history: cli_open leaves a missing -w workspace to it */
    int ws_missing;          /* ... and cli_open found it missing (db: the database's own handle) */
    int no_login;            /* set by `auth register`: talk to the server without logging in */
    const char *name;        /* auth keygen --name N */
    const char *out;         /* auth keygen --out FILE */
    const char *difficulty;  /* auth keygen --difficulty BITS */
    int show_secret;         /* auth keygen --show-secret */
    const char *prefix;      /* auth grant --prefix P */
    const char *expires;     /* auth grant --expires TIME */
    struct cli_vector_options vector; /* vector --model, --meta, --metric, … */
    int incremental;         /* backup --incremental */
    int current_only;        /* backup --current-only */
    const char *since;       /* backup --since PREVIOUS */
    const char *keep_last;   /* retention set --keep-last N (checked) */
    const char *keep_newer_than; /* retention set --keep-newer-than DURATION */
    const char *thin[16];    /* retention set --thin AFTER:EVERY, in order */
    int n_thin;
    int dry_run;             /* compact --dry-run */
    int64_t older_than;      /* consolidate --older-than DURATION, in ns (0: every sealed segment) */
    /* command and its arguments */
    const char *command;
    const char **args;
    int nargs;
    /* state: the open database, or the server (exactly one, once cli_open succeeded) */
    kd_db *db;             /* with --workspace, a handle on that workspace */
    kd_db *core;           /* with --workspace, the database's own handle (closed after db) */
    struct remote *remote; /* remote.h */
    char *path;         /* directory actually opened, or the server's URL (malloc'd) */
    struct cli_watches *watches; /* the shell's watches; NULL outside `kdelta shell` */
};

/* ---- commands (each returns an exit status) ---------------------------- */
int cmd_set(struct cli *c);
int cmd_get(struct cli *c);
int cmd_delete(struct cli *c);
int cmd_log(struct cli *c);
int cmd_list(struct cli *c);
int cmd_status(struct cli *c);
int cmd_verify(struct cli *c);
int cmd_workspace(struct cli *c); /* workspace.c */
int cmd_import(struct cli *c); /* import.c */
int cmd_export(struct cli *c); /* export.c */
int cmd_shell(struct cli *c);
int cmd_diff(struct cli *c); /* diff.c */
int cmd_repair(struct cli *c); /* repair.c */
int cmd_query(struct cli *c); /* query.c */
int cmd_watch(struct cli *c); /* watch.c */
int cmd_unwatch(struct cli *c);
int cmd_view(struct cli *c);  /* view.c: view create|list|show|refresh|delete */
int cmd_index(struct cli *c); /* index.c: index create|list|drop */
int cmd_serve(struct cli *c); /* serve.c: the HTTP server (server/) */
int cmd_vector(struct cli *c); /* vector.c: vector put|get|log|delete|search|stats */
int cmd_backup(struct cli *c);  /* backup.c: backup FILE, backup info FILE */
int cmd_restore(struct cli *c); /* backup.c */
int cmd_retention(struct cli *c); /* retention.c: retention set|show|clear */
int cmd_compact(struct cli *c);   /* retention.c */
int cmd_consolidate(struct cli *c); /* retention.c */
int cmd_auth(struct cli *c);   /* auth.c: auth keygen|register|whoami|grant|revoke|list */

/* ---- auth.c: identities for --identity and serve --owner ----------------- */
/* Read and check a key file (kd_identity_load); KD_EIO / KD_EINVALID with
 * a message naming the file in err. */
int cli_load_identity(const char *path, kd_identity **out, char *err, size_t errlen);
/* --url with --identity: log in (or reuse the cached session) and make
 * every request of c->remote carry the token. An exit status. */
int cli_remote_login(struct cli *c);

/* ---- query.c: queries from options, and tables (also for view.c) ------ */
/* Compile the query the options describe (--filter, --sort, --select,
 * --offset, --limit, --at, aggregates, --group-by) into *q, before any
 * database is opened; a mistake is reported (exit 2 or 4). With `select`,
 * the --select fields (malloc'd, free with cli_free_list) are returned too.
 * Returns an exit status. */
int cli_query_compile(const struct cli *c, kd_query **q, char ***select, size_t *n_select);
/* The "select" paths of a query in canonical JSON form, each as a JSON
 * string literal (malloc'd; free with cli_free_list); none: *n = 0. */
void cli_query_select_names(const char *query_json, size_t len, char ***names, size_t *n);
/* Print the rows of r as `kdelta query` does: a table of the key and each
 * projected path of `names` (JSON string literals; n_names 0 = the whole
 * value), then the count line ("2 of 5 matches (offset 2)", from r and
 * c->offset). */
void cli_print_rows(const struct cli *c, const kd_result *r, char *const *names, size_t n_names);
void cli_free_list(char **v, size_t n);
/* A query in canonical JSON form made shorter for people, still a valid
 * JSON form of the same query: the filter in its text form, sort items as
 * "FIELD" or "FIELD:desc" ({"filter":"age > 30","sort":["age:desc"]}).
 * malloc'd. */
char *cli_query_text(const char *query_json, size_t len);
/* A field path as the library writes it back ("a.\"b c\""), as a JSON
 * string literal (malloc'd); `field` itself, quoted, if it is not a path. */
char *cli_field_name(const char *field);
/* A table of text cells, row after row, the first row being the header;
 * printed with columns aligned two spaces apart (header bold on a terminal). */
struct cli_table {
    char **cells; /* malloc'd */
    size_t n, cap, ncols;
};
void cli_table_add(struct cli_table *t, char *cell); /* takes the malloc'd cell */
void cli_table_print(const struct cli *c, const struct cli_table *t);
void cli_table_free(struct cli_table *t);

/* ---- watch.c: the shell's side of watches ----------------------------- */
/* Print the events waiting on every watch (kd_sub_next without waiting),
 * one line each on stdout. The shell calls it after every command. */
void cli_watch_poll(struct cli_watches *w, struct cli *c);
/* End every watch and free the list (the shell, on leaving). */
void cli_watch_end(struct cli_watches *w, struct cli *c);

/* ---- main.c: the command table, for the shell ------------------------- */
/* Parse argv (argv[0] is the program name) into c, which the caller has
 * zeroed (busy_ms = -1); c->args and c->qopts are malloc'd. Returns -1 when
 * cli_run_command(c) should run, else an exit status (help, --version and
 * usage errors are handled here). */
int cli_parse(struct cli *c, int argc, char **argv);
/* A SIZE: a whole number of bytes with an optional K, M, G or T (powers
 * of 1024; "MiB" and "MB" read the same), in [min, max]: 1 with *out set,
 * 0 if `s` is not one. --max-memory (and serve's max_memory) take
 * CLI_MAX_MEMORY_MIN to _MAX; serve's --max-body 1 to 1G. */
#define CLI_MAX_MEMORY_MIN ((uint64_t)8 << 20)
#define CLI_MAX_MEMORY_MAX ((uint64_t)1 << 50)
int cli_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* A whole decimal number in [min, max], as every numeric option takes it
 * (--limit, --batch, -k, unwatch's ID): 1 with *out set, 0 if `s` is not
 * one (empty, a sign '+', leading spaces, trailing characters, out of
 * range). Leading zeros are allowed. */
int cli_parse_number(const char *s, int64_t min, int64_t max, int64_t *out);
int cli_run_command(struct cli *c);
/* Name of the i-th command / option ("--db"), NULL past the end. */
const char *cli_command_name(size_t i);
const char *cli_option_name(size_t i);

/* ---- help.c ----------------------------------------------------------- */
/* Full help (command NULL) or one command's help, on `out`. 0 if known. */
int cli_help(FILE *out, const char *command);

/* ---- input.c ---------------------------------------------------------- */
/* Split "NS/KEY" at the first '/' and check both (cli_check_name). On
 * success *ns and *key are malloc'd. */
int cli_split_name(const char *arg, char **ns, char **key);
/* NS as typed where a command takes a namespace alone: without a trailing
 * '/' ("users/" is namespace users). malloc'd. */
char *cli_ns_arg(const char *arg);
/* A name a command reads, writes or queries, checked before the database
 * is opened with the library's own words (kd_check_name), so that a bad or
 * reserved name never creates a database. key NULL: the namespace alone. */
int cli_check_name(const char *ns, const char *key);
/* VALUE as typed: JSON text, "-" (stdin) or "@FILE". *out is malloc'd
 * (NUL-terminated); a leading UTF-8 byte order mark stays (the library
 * skips one). From stdin or a file, reading stops, and the value is
 * refused (exit 4, `what` naming it in the message), once it holds more
 * than KD_DEFAULT_MAX_VALUE_SIZE bytes besides the whitespace between
 * tokens: it could not be stored, and the input may never end. */
int cli_read_value(const char *arg, const char *what, char **out, size_t *len);
/* In the shell: when a value read from stdin was refused before its end,
 * read and drop the rest, up to the end of the input, so that none of it
 * is taken for commands. A no-op otherwise. */
void cli_drop_rest_of_value(void);
/* Open the database named by the options (creating ~/.korudelta when the
 * default location is used), or with --url prepare the connection to the
 * server. */
int cli_open(struct cli *c);
/* The database directory the command line names (--db, $KORU_DB, or the
 * default, whose parent is created), malloc'd; NULL with *status set. */
char *cli_db_dir(struct cli *c, int *status);
/* Report a failed kd_open of `dir` (rc, and the errbuf text `err`) and
 * return the exit status; when the database is locked and a kdelta server
 * recorded itself in the directory (file SERVER), its URL is named. */
int cli_open_failed(const char *dir, int rc, const char *err);
/* The same for `kdelta serve`, which cannot hand its work to the server
 * already serving the directory: it names that server instead. */
int cli_serve_open_failed(const char *dir, int rc, const char *err);
/* Refuse a command that needs the database directory itself (repair,
 * serve) when --url is given; CLI_OK otherwise. */
int cli_local_only(struct cli *c);
/* Close it; a failing final sync is reported. */
int cli_close(struct cli *c, int status);

/* ---- output.c --------------------------------------------------------- */
/* Report "kdelta: <what>: <why>" on stderr (one line) and return `status`. */
int cli_error(int status, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Report a library failure `rc` about `what` (with the library's or the
 * server's detail, st_errmsg); returns the mapped status. */
int cli_kd_error(struct cli *c, int rc, const char *what);
/* Exit status for a library status code. */
int cli_exit_status(int rc);
/* "ns/key" for messages and human output: control characters escaped,
 * cut at `max` bytes (0 = no limit) on a UTF-8 boundary. malloc'd. */
char *cli_display(const char *ns, const char *key, size_t max);
/* Timestamp for people: RFC 3339 in local time with its offset
 * ("2026-11-26T16:48:58.123456789+01:00"; "Z" when local time is UTC), which
 * --at accepts back. Into buf (>= 40 bytes). */
const char *cli_time(int64_t ts, char *buf);
/* Timestamp for programs (--json): RFC 3339 UTC, 9 fraction digits, "Z". */
const char *cli_time_utc(int64_t ts, char *buf);
/* Terminal styling: `sgr` (one of CLI_BOLD...) when colours are on for this
 * output, else "". Colours are on only when stdout is a terminal, TERM is
 * not "dumb", NO_COLOR is not set (to any value) and --json is not given. */
#define CLI_BOLD "\033[1m"
#define CLI_DIM "\033[2m"
#define CLI_RED "\033[31m"
#define CLI_GREEN "\033[32m"
#define CLI_YELLOW "\033[33m"
#define CLI_RESET "\033[0m"
const char *cli_sgr(const struct cli *c, const char *sgr);
/* Print the version record (one line, newline-terminated). */
int cli_print_record(struct cli *c, const char *ns, const char *key, const char *value, size_t len,
                     const kd_version *v);
/* Print `s` (len bytes) as a JSON string literal. */
int cli_print_json_string(const char *s, size_t len);
/* Flush stdout; report a write error. */
int cli_finish_output(int status);

/* ---- memory: abort-on-OOM wrappers (the CLI may die on OOM) ----------- */
void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
