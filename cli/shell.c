/*
 * shell.c — `kdelta shell`: every kdelta command at a prompt, on one open
 * database.
 *
 * A line is split into words the way a POSIX shell splits them (single
 * quotes, double quotes, backslash), so JSON can be typed as it is, and the
 * words run through the same command table as `kdelta COMMAND ...`
 * (cli_parse / cli_run_command in main.c) with the session's database
 * handle: the database is opened once, when the shell starts.
 *
 * On a terminal the line editor is libedit (emacs keys, ~/.editrc), with a
 * history file ($KORU_HISTORY, else ~/.korudelta/shell_history, mode 0600)
 * and Tab completion of command names, options, namespaces and NS/KEY names.
 * When stdin is not a terminal there is no prompt and no line editor: lines
 * are read from stdin and every command prints exactly what the one-shot
 * command prints, so scripts can pipe commands in. In both cases an error
 * prints its usual one line and the shell goes on; the exit status is that
 * of the last command that failed (0 if none did).
 *
 * `watch` registers a change subscription on the session's handle (watch.c);
 * after every command the shell prints the events waiting on each watch, so
 * the writes of a command are followed by their event lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <histedit.h>
#include <locale.h>
#include <langinfo.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "store.h"

#define PROMPT "kdelta> "
#define PROMPT_MORE "   ...> "
#define HISTORY_SIZE 1000
#define COMPLETE_MAX 5000 /* names fetched for one completion */

/* ------------------------------------------------------------------------
 * Words: splitting a line like a POSIX shell
 * ---------------------------------------------------------------------- */

enum quote { Q_NONE, Q_SINGLE, Q_DOUBLE };

struct words {
    char **v;         /* the words, malloc'd */
    int n, cap;
    /* how the text ended (used by completion and continuation lines) */
    int in_word;      /* the text ends inside a word (v[n-1]) */
    enum quote quote; /* a quote is still open */
    int escape;       /* a backslash waits for its character */
    size_t start;     /* offset in the text where the last word began */
};

static void words_free(struct words *w)
{
    for (int i = 0; i < w->n; i++)
        free(w->v[i]);
    free(w->v);
    memset(w, 0, sizeof *w);
}

struct buf {
    char *s;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_addc(struct buf *b, char ch)
{
    buf_add(b, &ch, 1);
}

/* Split `text` into words. Outside quotes a backslash keeps the next
 * character (backslash-newline joins lines); in single quotes everything is
 * kept; in double quotes a backslash only escapes '"', '\' and a newline. */
static void split_words(const char *text, size_t len, struct words *w)
{
    struct buf cur = {0};
    int in_word = 0, quoted = 0;
    memset(w, 0, sizeof *w);
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (w->escape) {
            w->escape = 0;
            if (w->quote == Q_DOUBLE && ch != '"' && ch != '\\' && ch != '\n')
                buf_addc(&cur, '\\');
            if (ch != '\n')
                buf_addc(&cur, ch);
            else if (i + 1 == len)
                w->escape = 1; /* backslash-newline at the end: the command goes on */
            continue;
        }
        if (w->quote == Q_SINGLE) {
            if (ch == '\'')
                w->quote = Q_NONE;
            else
                buf_addc(&cur, ch);
            continue;
        }
        if (w->quote == Q_DOUBLE) {
            if (ch == '\\')
                w->escape = 1;
            else if (ch == '"')
                w->quote = Q_NONE;
            else
                buf_addc(&cur, ch);
            continue;
        }
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            if (in_word && (cur.len || quoted)) {
                if (w->n == w->cap) {
                    w->cap = w->cap ? w->cap * 2 : 8;
                    w->v = xrealloc(w->v, sizeof(char *) * (size_t)w->cap);
                }
                w->v[w->n++] = cur.s ? cur.s : xstrdup("");
                memset(&cur, 0, sizeof cur);
            }
            in_word = quoted = 0;
            continue;
        }
        if (!in_word) {
            in_word = 1;
            w->start = i;
        }
        if (ch == '\\') {
            w->escape = 1;
        } else if (ch == '\'' || ch == '"') {
            w->quote = ch == '\'' ? Q_SINGLE : Q_DOUBLE;
            quoted = 1;
        } else {
            buf_addc(&cur, ch);
        }
    }
    if (in_word && (cur.len || quoted || w->quote != Q_NONE || w->escape)) {
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 8;
            w->v = xrealloc(w->v, sizeof(char *) * (size_t)w->cap);
        }
        w->v[w->n++] = cur.s ? cur.s : xstrdup("");
        w->in_word = 1;
    } else {
        free(cur.s);
    }
}

/* ------------------------------------------------------------------------
 * Running one command line
 * ---------------------------------------------------------------------- */

struct shell {
    struct cli *session; /* the open database and the shell's own options */
    EditLine *el;        /* NULL when not on a terminal */
    History *hist;
    char *history_path;  /* NULL: no history file */
    FILE *out;           /* where prompts and completion lists go */
    struct cli_watches watches; /* `watch` subscriptions on the session's handle */
};

enum { LINE_EXIT = -1 };

static void shell_help(void)
{
    cli_help(stdout, NULL);
    fputs("\nIn the shell: type the commands without 'kdelta'; 'help COMMAND' for one\n"
          "command, 'exit' or 'quit' (or Ctrl-D) to leave. See 'help shell'.\n",
          stdout);
}

/* Run one line's words. Returns the command's exit status, or LINE_EXIT. */
static int run_words(struct shell *sh, struct words *w)
{
    if (w->n == 0)
        return CLI_OK;
    const char *cmd = w->v[0];
    if (strcmp(cmd, "exit") == 0 || strcmp(cmd, "quit") == 0) {
        if (w->n > 1)
            return cli_error(CLI_USAGE, cmd, "takes no arguments");
        return LINE_EXIT;
    }
    if (strcmp(cmd, "help") == 0 && w->n == 1) {
        shell_help();
        return cli_finish_output(CLI_OK);
    }

    char **argv = xmalloc(sizeof(char *) * (size_t)(w->n + 2));
    argv[0] = "kdelta";
    for (int i = 0; i < w->n; i++)
        argv[i + 1] = w->v[i];
    argv[w->n + 1] = NULL;

    struct cli line;
    memset(&line, 0, sizeof line);
    line.busy_ms = -1;
    int status = cli_parse(&line, w->n + 1, argv);
    if (status < 0) {
        if (line.db_dir || line.url || line.sync_set || line.busy_ms >= 0 || line.max_memory) {
            const char *opt = line.db_dir ? "--db" : line.url ? "--url" : line.sync_set ? "--sync"
                              : line.max_memory ? "--max-memory" : "--busy-timeout";
            status = cli_error(CLI_USAGE, opt, "cannot change inside the shell; give it when starting it: "
                                               "kdelta %s VALUE shell", opt);
        } else if (strcmp(line.command, "shell") == 0) {
            status = cli_error(CLI_USAGE, "shell", "already in the shell");
        } else if (line.workspace && strcmp(line.command, "auth") != 0 &&
                   strcmp(line.workspace, sh->session->workspace ? sh->session->workspace : "default") != 0) {
            /* The session's handle is on one workspace: a command must not
             * run in another one than it says (auth grant -w only names
             * the workspace of a grant). */
            status = cli_error(CLI_USAGE, "--workspace", "cannot change inside the shell; give it when starting it: "
                                                         "kdelta -w NAME shell");
        } else {
            line.db = sh->session->db;
            line.remote = sh->session->remote;
            line.url = sh->session->url;
            line.path = sh->session->path;
            line.json |= sh->session->json;
            line.watches = &sh->watches;
            status = cli_run_command(&line);
            /* The session owns the handle; a command never replaces it. */
            if ((line.db && line.db != sh->session->db) || (line.remote && line.remote != sh->session->remote))
                cli_close(&line, status);
        }
    }
    free(line.args);
    free(line.qopts);
    free(argv);
    cli_drop_rest_of_value();
    clearerr(stdin); /* a value read from stdin ('-') ended at Ctrl-D */
    cli_watch_poll(&sh->watches, sh->session); /* the events of this command's writes */
    return status;
}

/* ------------------------------------------------------------------------
 * History file
 * ---------------------------------------------------------------------- */

/* $KORU_HISTORY, else ~/.korudelta/shell_history (creating ~/.korudelta).
 * malloc'd; NULL when there is no home directory. */
static char *history_path(void)
{
    const char *env = getenv("KORU_HISTORY");
    if (env && *env)
        return xstrdup(env);
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home || !*home)
        return NULL;
    size_t n = strlen(home) + sizeof "/.korudelta/shell_history";
    char *path = xmalloc(n);
    snprintf(path, n, "%s/.korudelta", home);
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        free(path);
        return NULL;
    }
    snprintf(path, n, "%s/.korudelta/shell_history", home);
    return path;
}

/* Save the whole history (at most HISTORY_SIZE lines) after every command,
 * so a killed shell loses nothing. The file is created 0600: commands may
 * hold values worth keeping private. Only regular files are written (a
 * history of /dev/null means none). */
static void history_save(struct shell *sh)
{
    if (!sh->history_path)
        return;
    struct stat st;
    if (lstat(sh->history_path, &st) == 0 && !S_ISREG(st.st_mode))
        return;
    int fd = open(sh->history_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    fchmod(fd, 0600);
    close(fd);
    HistEvent ev;
    history(sh->hist, &ev, H_SAVE, sh->history_path);
}

/* ------------------------------------------------------------------------
 * Completion
 * ---------------------------------------------------------------------- */

struct candidates {
    char **v;
    size_t n, cap;
    int more; /* the listing was cut at COMPLETE_MAX */
};

static void cand_add(struct candidates *c, const char *s, const char *suffix)
{
    if (strchr(s, '\n') || strchr(s, '\r')) /* cannot be typed on one line */
        return;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 32;
        c->v = xrealloc(c->v, sizeof(char *) * c->cap);
    }
    size_t a = strlen(s), b = strlen(suffix);
    char *p = xmalloc(a + b + 1);
    memcpy(p, s, a);
    memcpy(p + a, suffix, b + 1);
    c->v[c->n++] = p;
}

static void cand_free(struct candidates *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i]);
    free(c->v);
}

/* Everything the word `text` (the n-th word of the line, the command being
 * `cmd`) could become. Names get a trailing '/' (namespaces) or ' '. */
static void find_candidates(struct shell *sh, int index, const char *cmd, const char *text, struct candidates *out)
{
    size_t tl = strlen(text);
    const char *name;
    if (index == 0 || (index == 1 && strcmp(cmd, "help") == 0)) {
        for (size_t i = 0; (name = cli_command_name(i)); i++)
            if (strncmp(name, text, tl) == 0)
                cand_add(out, name, " ");
        if (index == 0) {
            static const char *extra[] = {"exit", "quit"};
            for (size_t i = 0; i < 2; i++)
                if (strncmp(extra[i], text, tl) == 0)
                    cand_add(out, extra[i], " ");
        }
        return;
    }
    /* Subcommands of `view` and `index`. */
    static const char *view_subs[] = {"create", "list", "show", "refresh", "delete", NULL};
    static const char *index_subs[] = {"create", "list", "drop", NULL};
    static const char *vector_subs[] = {"put", "get", "log", "delete", "search", "stats", NULL};
    const char **subs = !strcmp(cmd, "view")     ? view_subs
                        : !strcmp(cmd, "index")  ? index_subs
                        : !strcmp(cmd, "vector") ? vector_subs
                                                 : NULL;
    if (index == 1 && subs && text[0] != '-') {
        for (size_t i = 0; subs[i]; i++)
            if (strncmp(subs[i], text, tl) == 0)
                cand_add(out, subs[i], " ");
        return;
    }
    if (text[0] == '-') {
        for (size_t i = 0; (name = cli_option_name(i)); i++)
            if (strncmp(name, text, tl) == 0)
                cand_add(out, name, " ");
        return;
    }
    struct cli *db = sh->session;
    char **names = NULL;
    size_t n = 0;
    const char *slash = strchr(text, '/');
    if (slash) {
        char *ns = xmalloc((size_t)(slash - text) + 1);
        memcpy(ns, text, (size_t)(slash - text));
        ns[slash - text] = '\0';
        if (st_list_keys(db, ns, slash + 1, NULL, COMPLETE_MAX, &names, &n) == KD_OK) {
            struct buf full = {0};
            for (size_t i = 0; i < n; i++) {
                full.len = 0;
                buf_add(&full, ns, strlen(ns));
                buf_addc(&full, '/');
                buf_add(&full, names[i], strlen(names[i]));
                cand_add(out, full.s, " ");
            }
            free(full.s);
            out->more = n == COMPLETE_MAX;
        }
        free(ns);
    } else if (st_list_namespaces(db, &names, &n) == KD_OK) {
        for (size_t i = 0; i < n; i++)
            if (strncmp(names[i], text, tl) == 0)
                cand_add(out, names[i], "/");
    }
    kd_free_list(names, n);
}

/* Append `s` escaped for the quote state the word is in. */
static void add_quoted(struct buf *b, const char *s, size_t n, enum quote q)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (q == Q_SINGLE && ch == '\'')
            buf_add(b, "'\\''", 4);
        else if (q == Q_DOUBLE && (ch == '"' || ch == '\\'))
            buf_addc(b, '\\'), buf_addc(b, ch);
        else if (q == Q_NONE && strchr(" \t'\"\\", ch))
            buf_addc(b, '\\'), buf_addc(b, ch);
        else
            buf_addc(b, ch);
    }
}

/* Show the candidates in columns below the line. */
static void list_candidates(struct shell *sh, const struct candidates *c)
{
    size_t width = 0;
    char **shown = xmalloc(sizeof(char *) * c->n);
    for (size_t i = 0; i < c->n; i++) {
        shown[i] = cli_display(c->v[i], NULL, 60);
        size_t l = strlen(shown[i]);
        if (l > width)
            width = l;
    }
    width += 2;
    size_t cols = 80 / width ? 80 / width : 1, rows = (c->n + cols - 1) / cols;
    size_t shown_rows = rows > 40 ? 40 : rows;
    fputc('\n', sh->out);
    for (size_t r = 0; r < shown_rows; r++) {
        for (size_t col = 0; col < cols; col++) {
            size_t i = col * rows + r;
            if (i < c->n)
                fprintf(sh->out, "%-*s", (int)width, shown[i]);
        }
        fputc('\n', sh->out);
    }
    if (shown_rows < rows || c->more)
        fprintf(sh->out, "(more; type a longer prefix)\n");
    for (size_t i = 0; i < c->n; i++)
        free(shown[i]);
    free(shown);
}

/* libedit's Tab: complete the word before the cursor as far as it is
 * unambiguous; when it cannot go further, list the choices. */
static unsigned char complete(EditLine *el, int ch)
{
    (void)ch;
    struct shell *sh = NULL;
    el_get(el, EL_CLIENTDATA, &sh);
    const LineInfo *li = el_line(el);
    struct words w;
    split_words(li->buffer, (size_t)(li->cursor - li->buffer), &w);
    unsigned char rc = CC_ERROR;
    if (w.escape)
        goto done;
    int index = w.in_word ? w.n - 1 : w.n;
    const char *text = w.in_word ? w.v[w.n - 1] : "";
    const char *cmd = w.n > 0 && index > 0 ? w.v[0] : "";

    struct candidates c = {0};
    find_candidates(sh, index, cmd, text, &c);
    if (c.n == 0) {
        cand_free(&c);
        goto done;
    }
    /* longest common prefix, never cutting a UTF-8 sequence */
    size_t common = strlen(c.v[0]);
    for (size_t i = 1; i < c.n; i++) {
        size_t k = 0;
        while (k < common && c.v[i][k] == c.v[0][k])
            k++;
        common = k;
    }
    if (c.n > 1 || c.more)
        while (common > 0 && ((unsigned char)c.v[0][common] & 0xC0) == 0x80)
            common--;
    size_t tl = strlen(text);
    if (common > tl) {
        struct buf ins = {0};
        const char *add = c.v[0] + tl;
        size_t addlen = common - tl;
        int finished = c.n == 1 && !c.more && add[addlen - 1] == ' ';
        if (finished)
            addlen--; /* the space goes after any closing quote */
        add_quoted(&ins, add, addlen, w.quote);
        if (finished) {
            if (w.quote != Q_NONE)
                buf_addc(&ins, w.quote == Q_SINGLE ? '\'' : '"');
            buf_addc(&ins, ' ');
        }
        rc = el_insertstr(el, ins.s) == 0 ? CC_REFRESH : CC_ERROR;
        free(ins.s);
    } else if (c.n > 1 || c.more) {
        list_candidates(sh, &c);
        rc = CC_REDISPLAY;
    }
    cand_free(&c);
done:
    words_free(&w);
    return rc;
}

/* ------------------------------------------------------------------------
 * The interactive loop
 * ---------------------------------------------------------------------- */

static const char *prompt_first(EditLine *el)
{
    (void)el;
    return PROMPT;
}

static const char *prompt_more(EditLine *el)
{
    (void)el;
    return PROMPT_MORE;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Line editing needs a UTF-8 character type to handle names beyond ASCII. */
static void utf8_locale(void)
{
    const char *l = setlocale(LC_CTYPE, "");
    if (!l || strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
        setlocale(LC_CTYPE, "C.UTF-8");
}

static int interactive(struct shell *sh)
{
    int last_failure = CLI_OK;
    utf8_locale();
    sh->out = isatty(STDOUT_FILENO) ? stdout : stderr;
    sh->el = el_init("kdelta", stdin, sh->out, stderr);
    sh->hist = history_init();
    if (!sh->el || !sh->hist) {
        if (sh->el)
            el_end(sh->el);
        if (sh->hist)
            history_end(sh->hist);
        return cli_error(CLI_ERROR, "shell", "cannot start the line editor");
    }
    HistEvent ev;
    history(sh->hist, &ev, H_SETSIZE, HISTORY_SIZE);
    history(sh->hist, &ev, H_SETUNIQUE, 1);
    sh->history_path = history_path();
    if (sh->history_path)
        history(sh->hist, &ev, H_LOAD, sh->history_path);

    el_set(sh->el, EL_EDITOR, "emacs");
    el_set(sh->el, EL_HIST, history, sh->hist);
    el_set(sh->el, EL_CLIENTDATA, sh);
    /* The wide form keeps these literals; the narrow one copies them and
     * never frees the copies (a leak LeakSanitizer reports). */
    el_wset(sh->el, EL_ADDFN, L"kd-complete", L"complete a command, option, namespace or key", complete);
    el_set(sh->el, EL_BIND, "^I", "kd-complete", NULL);
    el_source(sh->el, NULL); /* ~/.editrc */

    fprintf(sh->out, "kdelta %s on %s\n'help' lists the commands, 'exit' or Ctrl-D leaves.\n", kd_libversion(),
            sh->session->path);

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);

    struct buf text = {0};
    for (;;) {
        int count = 0;
        el_set(sh->el, EL_PROMPT, text.len ? prompt_more : prompt_first);
        interrupted = 0;
        sigaction(SIGINT, &sa, &old); /* Ctrl-C at the prompt: a fresh line */
        const char *got = el_gets(sh->el, &count);
        sigaction(SIGINT, &old, NULL); /* during a command: stop kdelta */
        if (interrupted) {
            fputc('\n', sh->out);
            text.len = 0;
            el_reset(sh->el);
            continue;
        }
        if (!got || count <= 0) { /* Ctrl-D */
            if (text.len)
                last_failure = cli_error(CLI_USAGE, "shell", "unfinished line at end of input (an open quote?)");
            fputc('\n', sh->out);
            break;
        }
        buf_add(&text, got, (size_t)count);
        struct words w;
        split_words(text.s, text.len, &w);
        if (w.quote != Q_NONE || w.escape) { /* go on reading the same command */
            words_free(&w);
            continue;
        }
        /* The whole command goes into the history once, without trailing blanks. */
        size_t hl = text.len;
        while (hl && strchr(" \t\r\n", text.s[hl - 1]))
            hl--;
        text.s[hl] = '\0';
        const char *p = text.s + strspn(text.s, " \t");
        int status = CLI_OK;
        if (*p) {
            history(sh->hist, &ev, H_ENTER, text.s);
            history_save(sh);
            if (*p != '#')
                status = run_words(sh, &w);
        }
        words_free(&w);
        text.len = 0;
        if (status == LINE_EXIT)
            break;
        if (status != CLI_OK)
            last_failure = status;
    }
    free(text.s);
    el_end(sh->el);
    history_end(sh->hist);
    free(sh->history_path);
    return last_failure;
}

/* ------------------------------------------------------------------------
 * Commands from a pipe
 * ---------------------------------------------------------------------- */

static int from_pipe(struct shell *sh)
{
    int last_failure = CLI_OK;
    struct buf text = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long lineno = 0, first = 0;
    for (;;) {
        n = getline(&line, &cap, stdin);
        if (n < 0) {
            if (ferror(stdin) && errno == EINTR) {
                clearerr(stdin);
                continue;
            }
            if (text.len) {
                char where[48];
                snprintf(where, sizeof where, "line %lu", first);
                last_failure = cli_error(CLI_USAGE, where, "unfinished command at end of input (an open quote?)");
            }
            break;
        }
        lineno++;
        if (memchr(line, '\0', (size_t)n)) {
            /* C strings would cut the command there and run what is left
             * (`delete a/b\0-x` deleted a/b): no name or value holds a NUL. */
            char where[48];
            snprintf(where, sizeof where, "line %lu", lineno);
            last_failure = cli_error(CLI_INVALID, where, "a NUL byte in a command: nothing was run");
            text.len = 0;
            continue;
        }
        if (!text.len) {
            first = lineno;
            const char *p = line + strspn(line, " \t");
            if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0')
                continue;
        }
        buf_add(&text, line, (size_t)n);
        struct words w;
        split_words(text.s, text.len, &w);
        if (w.quote != Q_NONE || w.escape) {
            words_free(&w);
            continue;
        }
        int status = run_words(sh, &w);
        words_free(&w);
        text.len = 0;
        if (status == LINE_EXIT)
            break;
        if (status != CLI_OK)
            last_failure = status;
    }
    free(line);
    free(text.s);
    return last_failure;
}

int cmd_shell(struct cli *c)
{
    int status = cli_open(c);
    if (status != CLI_OK)
        return status;
    struct shell sh;
    memset(&sh, 0, sizeof sh);
    sh.session = c;
    status = isatty(STDIN_FILENO) ? interactive(&sh) : from_pipe(&sh);
    cli_watch_end(&sh.watches, c);
    return cli_finish_output(status);
}
