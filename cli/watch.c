/*
 * watch.c — `kdelta watch [NS[/KEY]]` and `kdelta unwatch [ID]`: change
 * subscriptions (st_subscribe, store.h) shown as one line per event.
 *
 * A local subscription sees the writes made through its own database
 * handle. A one-shot `kdelta watch` would hold the database lock, so no
 * other process could write, and it would see nothing: locally, watching
 * only makes sense inside `kdelta shell`, where `watch` registers a
 * subscription on the session's handle and the shell prints the events
 * waiting on every watch after each command (cli_watch_poll, which never
 * waits). Outside the shell the command says so and exits with status 2.
 *
 * With --url the server holds the database and every client's writes make
 * events: in the shell `watch` works as locally (store_watch.c makes a
 * poll see the events of the command's own writes), and a one-shot
 * `kdelta --url URL watch` prints the events as they come until Ctrl-C
 * (exit 0) or until the server is lost (an error, exit 1).
 *
 * Event lines, for people:
 *   insert users/alice {"name":"Alice"}
 *   update users/alice {"name":"Alicia"}
 *   delete users/alice
 *   missed 120 events
 * and with --json one object per line (docs/CLI.md, "watch"):
 *   {"type":"update","namespace":"users","key":"alice","value":{...},
 *    "previous_value":{...},"version":{"version_id":...,"write_id":...,
 *    "previous_write_id":...,"timestamp":...,"deleted":false}}
 *   {"type":"missed","missed":120}
 */
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

struct cli_watch {
    unsigned id;  /* shown to people */
    uint64_t sub; /* st_subscribe's id */
    int json;     /* --json lines */
    char *what;   /* "users", "users/alice", "every namespace" (printable) */
};

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned bit;
} event_types[] = {
    {"insert", KD_EVENT_INSERT},
    {"update", KD_EVENT_UPDATE},
    {"delete", KD_EVENT_DELETE},
};

#define N_TYPES (sizeof event_types / sizeof event_types[0])

/* --types insert,update,delete -> KD_EVENT_* bits. Exit status. */
static int parse_types(const char *s, unsigned *mask)
{
    *mask = 0;
    for (const char *p = s;;) {
        size_t l = strcspn(p, ",");
        size_t i = 0;
        while (i < N_TYPES && !(strlen(event_types[i].name) == l && memcmp(event_types[i].name, p, l) == 0))
            i++;
        if (i == N_TYPES)
            return cli_error(CLI_USAGE, "--types", "unknown event type '%.*s' (use insert, update, delete, "
                                                   "separated by commas)", (int)(l < 100 ? l : 100), p);
        *mask |= event_types[i].bit;
        if (!p[l])
            return CLI_OK;
        p += l + 1;
    }
}

static const char *type_name(unsigned type)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (event_types[i].bit == type)
            return event_types[i].name;
    return "missed";
}

/* ------------------------------------------------------------------------
 * Events
 * ---------------------------------------------------------------------- */

static void put_json_or_null(const char *json, size_t len)
{
    if (json)
        fwrite(json, 1, len, stdout);
    else
        fputs("null", stdout);
}

static void print_event_json(const kd_event *ev)
{
    char t[48];
    if (ev->type == KD_EVENT_MISSED) {
        printf("{\"type\":\"missed\",\"missed\":%" PRIu64 "}\n", ev->missed);
        return;
    }
    printf("{\"type\":\"%s\",\"namespace\":", type_name(ev->type));
    cli_print_json_string(ev->ns, strlen(ev->ns));
    fputs(",\"key\":", stdout);
    cli_print_json_string(ev->key, strlen(ev->key));
    fputs(",\"value\":", stdout);
    put_json_or_null(ev->value, ev->value_len);
    fputs(",\"previous_value\":", stdout);
    put_json_or_null(ev->prev_value, ev->prev_len);
    const kd_version *v = &ev->version;
    fputs(",\"version\":{\"version_id\":", stdout);
    if (v->deleted || !v->version_id[0])
        fputs("null", stdout);
    else
        printf("\"%s\"", v->version_id);
    printf(",\"write_id\":\"%s\",\"previous_write_id\":", v->write_id);
    if (v->previous_write_id[0])
        printf("\"%s\"", v->previous_write_id);
    else
        fputs("null", stdout);
    printf(",\"timestamp\":\"%s\",\"deleted\":%s", cli_time_utc(v->timestamp, t), v->deleted ? "true" : "false");
    if (v->pruned)
        printf(",\"pruned_by\":\"%s\",\"pruned\":true", v->pruned == KD_PRUNED_WORKSPACE ? "workspace_drop" : "retention");
    fputs("}}\n", stdout);
}

static void print_event(const kd_event *ev)
{
    if (ev->type == KD_EVENT_MISSED) {
        printf("%smissed %" PRIu64 " event%s%s (more came than the watch holds)\n", cli_sgr(NULL, CLI_RED),
               ev->missed, ev->missed == 1 ? "" : "s", cli_sgr(NULL, CLI_RESET));
        return;
    }
    const char *colour = ev->type == KD_EVENT_INSERT ? CLI_GREEN : ev->type == KD_EVENT_UPDATE ? CLI_YELLOW : CLI_RED;
    char *shown = cli_display(ev->ns, ev->key, 0);
    printf("%s%s%s %s", cli_sgr(NULL, colour), type_name(ev->type), cli_sgr(NULL, CLI_RESET), shown);
    if (ev->value) {
        fputc(' ', stdout);
        fwrite(ev->value, 1, ev->value_len, stdout);
    } else if (ev->version.pruned && !ev->version.deleted) {
        printf(" %s(value removed %s)%s", cli_sgr(NULL, CLI_DIM),
               ev->version.pruned == KD_PRUNED_WORKSPACE ? "with its dropped workspace" : "by retention",
               cli_sgr(NULL, CLI_RESET));
    }
    fputc('\n', stdout);
    free(shown);
}

static void watch_free(struct cli_watch *w)
{
    free(w->what);
}

/* Why a subscription failed: the server's or the stream's message with
 * --url, else the status's text (as before --url existed). */
static const char *why(struct cli *c, uint64_t sub, int rc)
{
    const char *m = st_sub_errmsg(c, sub);
    return m[0] ? m : kd_strerror(rc);
}

/* Drop watch i (its subscription is gone), saying why. */
static void lost(struct cli *c, struct cli_watches *ws, size_t i, int rc)
{
    char what[64];
    snprintf(what, sizeof what, "watch %u", ws->v[i].id);
    cli_error(cli_exit_status(rc), what, "ended: %s", why(c, ws->v[i].sub, rc));
    st_unsubscribe(c, ws->v[i].sub);
    watch_free(&ws->v[i]);
    memmove(&ws->v[i], &ws->v[i + 1], sizeof ws->v[i] * (ws->n - i - 1));
    ws->n--;
}

/* Every watch's queue holds its events in write order; print them all
 * merged into one write order (by timestamp, which is unique per write;
 * the same write seen by two watches prints once per watch, in watch
 * order). A "missed" marker keeps its place after the watch's previous
 * event.
 *
 * A watch is asked until it has nothing (KD_ETIMEOUT), and then not again
 * in this poll: with --url its first st_sub_next of a poll catches up with
 * the server's last write, which makes the events of the command's own
 * writes print after it, as locally — and a poll round ends when the
 * queue is empty (store_watch.c, "Polls"). */
void cli_watch_poll(struct cli_watches *ws, struct cli *c)
{
    size_t n = ws->n;
    if (!n)
        return;
    kd_event *head = xmalloc(sizeof(kd_event) * n);
    int *has = xmalloc(sizeof(int) * n);  /* head[i] holds an event */
    int *done = xmalloc(sizeof(int) * n); /* watch i had nothing more */
    int64_t *last = xmalloc(sizeof(int64_t) * n);
    for (size_t i = 0; i < n; i++) {
        has[i] = done[i] = 0;
        last[i] = INT64_MIN;
    }
    for (;;) {
        size_t best = n;
        int64_t best_ts = 0;
        for (size_t i = 0; i < ws->n; i++) {
            if (!has[i] && !done[i]) {
                memset(&head[i], 0, sizeof head[i]);
                int rc = st_sub_next(c, ws->v[i].sub, 0, &head[i]);
                if (rc == KD_OK) {
                    has[i] = 1;
                } else if (rc == KD_ETIMEOUT) {
                    done[i] = 1;
                } else {
                    lost(c, ws, i, rc);
                    memmove(&has[i], &has[i + 1], sizeof *has * (ws->n - i));
                    memmove(&done[i], &done[i + 1], sizeof *done * (ws->n - i));
                    memmove(&head[i], &head[i + 1], sizeof *head * (ws->n - i));
                    memmove(&last[i], &last[i + 1], sizeof *last * (ws->n - i));
                    i--;
                    continue;
                }
            }
            if (!has[i])
                continue;
            int64_t ts = head[i].type == KD_EVENT_MISSED ? last[i] : head[i].version.timestamp;
            if (best == n || ts < best_ts) {
                best = i;
                best_ts = ts;
            }
        }
        if (best == n)
            break;
        if (ws->v[best].json)
            print_event_json(&head[best]);
        else
            print_event(&head[best]);
        last[best] = best_ts;
        kd_event_clear(&head[best]);
        has[best] = 0;
    }
    free(head);
    free(has);
    free(done);
    free(last);
    fflush(stdout);
}

void cli_watch_end(struct cli_watches *ws, struct cli *c)
{
    for (size_t i = 0; i < ws->n; i++) {
        st_unsubscribe(c, ws->v[i].sub);
        watch_free(&ws->v[i]);
    }
    free(ws->v);
    memset(ws, 0, sizeof *ws);
}

/* ------------------------------------------------------------------------
 * The commands
 * ---------------------------------------------------------------------- */

static int not_in_shell(struct cli *c, const char *cmd)
{
    if (!strcmp(cmd, "unwatch"))
        return cli_error(CLI_USAGE, cmd, "only inside `kdelta shell`, where it ends the watches `watch` started there");
    if (c->url) /* a one-shot watch streams; there is nothing to end */
        return cli_error(CLI_USAGE, cmd,
                         "only inside `kdelta shell`, whose watches it ends; a one-shot `kdelta --url URL watch` "
                         "runs until Ctrl-C");
    return cli_error(CLI_USAGE, cmd,
                     "only inside `kdelta shell`: a one-shot `kdelta %s` would hold the database lock, so no "
                     "other process could write while it ran and there would be nothing to see; in the shell, "
                     "`watch` prints the events of the writes made there after each command. To watch the writes "
                     "of every process, watch a server: `kdelta --url URL watch` (kdelta serve)",
                     cmd);
}

/* ------------------------------------------------------------------------
 * One-shot `kdelta --url URL watch`: events as they come
 * ---------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

#define FOLLOW_WAIT_MS 100 /* how soon Ctrl-C is noticed */

/* Print the events of `sub` until SIGINT or SIGTERM (exit status 0) or
 * until the subscription ends (its error). */
static int follow(struct cli *c, uint64_t sub)
{
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int status = CLI_OK;
    while (!interrupted) {
        kd_event ev;
        int rc = st_sub_next(c, sub, FOLLOW_WAIT_MS, &ev);
        if (rc == KD_ETIMEOUT)
            continue;
        if (rc != KD_OK) {
            status = cli_error(cli_exit_status(rc), "watch", "%s", why(c, sub, rc));
            break;
        }
        if (c->json)
            print_event_json(&ev);
        else
            print_event(&ev);
        kd_event_clear(&ev);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            status = cli_finish_output(CLI_OK); /* reports the write error */
            break;
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    st_unsubscribe(c, sub);
    return status;
}

/* End watch i: unsubscribe and say so. */
static int stop(struct cli *c, size_t i)
{
    struct cli_watches *ws = c->watches;
    struct cli_watch *w = &ws->v[i];
    st_unsubscribe(c, w->sub);
    if (c->json)
        printf("{\"unwatch\":%u}\n", w->id);
    else
        printf("stopped watch %u (%s)\n", w->id, w->what);
    watch_free(w);
    memmove(w, w + 1, sizeof *w * (ws->n - i - 1));
    ws->n--;
    return CLI_OK;
}

static int stop_all(struct cli *c)
{
    while (c->watches->n)
        stop(c, 0);
    return cli_finish_output(CLI_OK);
}

int cmd_watch(struct cli *c)
{
    int one_shot = !c->watches;
    if (one_shot && (!c->url || c->stop))
        return not_in_shell(c, c->url && c->stop ? "watch --stop" : "watch");
    if (c->stop) {
        if (c->nargs || c->types || c->filter)
            return cli_error(CLI_USAGE, "--stop", "takes nothing else: `watch --stop` ends every watch; "
                                                  "`unwatch ID` ends one");
        return stop_all(c);
    }

    unsigned types = KD_EVENT_ALL;
    int status = CLI_OK;
    if (c->types && (status = parse_types(c->types, &types)) != CLI_OK)
        return status;

    char *ns = NULL, *key = NULL, *what = NULL;
    kd_filter *f = NULL;
    if (c->nargs) {
        const char *arg = c->args[0], *slash = strchr(arg, '/');
        size_t nslen = slash ? (size_t)(slash - arg) : strlen(arg);
        if (nslen == 0) {
            char *shown = cli_display(arg, NULL, 120);
            status = cli_error(CLI_INVALID, shown, "expected NS or NS/KEY, e.g. users or users/alice (the "
                                                   "namespace is empty)");
            free(shown);
            goto done;
        }
        ns = xmalloc(nslen + 1);
        memcpy(ns, arg, nslen);
        ns[nslen] = '\0';
        if (slash && slash[1]) /* "users/" watches the whole namespace */
            key = xstrdup(slash + 1);
        if ((status = cli_check_name(ns, key)) != CLI_OK)
            goto done;
        what = cli_display(ns, key, 200);
    } else {
        what = xstrdup("every namespace");
    }
    if (c->filter) {
        char err[1024];
        int rc = kd_filter_parse(c->filter, &f, err, sizeof err);
        if (rc != KD_OK) {
            status = cli_error(cli_exit_status(rc), "--filter", "%s", err);
            goto done;
        }
    }

    kd_sub_options opts;
    memset(&opts, 0, sizeof opts);
    opts.ns = ns;
    opts.key = key;
    opts.types = types;
    opts.filter = f;
    uint64_t sub = 0;
    if (one_shot && (status = cli_open(c)) != CLI_OK)
        goto done;
    int rc = st_subscribe(c, &opts, &sub);
    if (rc != KD_OK) {
        const char *m = st_sub_errmsg(c, 0);
        const char *about = one_shot ? "watch" : what;
        status = m[0] ? cli_error(cli_exit_status(rc), about, "%s", m) : cli_kd_error(c, rc, about);
        goto done;
    }
    if (one_shot) {
        status = follow(c, sub);
        goto done;
    }

    struct cli_watches *ws = c->watches;
    if (ws->n == ws->cap) {
        ws->cap = ws->cap ? ws->cap * 2 : 4;
        ws->v = xrealloc(ws->v, sizeof(struct cli_watch) * ws->cap);
    }
    struct cli_watch *w = &ws->v[ws->n++];
    w->id = ++ws->next_id;
    w->sub = sub;
    w->json = c->json;
    w->what = what;
    what = NULL;
    if (c->json) {
        printf("{\"watch\":%u}\n", w->id);
    } else {
        printf("watch %u: %s", w->id, w->what);
        if (types != KD_EVENT_ALL) {
            const char *sep = " (";
            for (size_t i = 0; i < N_TYPES; i++)
                if (types & event_types[i].bit) {
                    printf("%s%s", sep, event_types[i].name);
                    sep = ", ";
                }
            fputc(')', stdout);
        }
        if (c->filter) {
            char *shown = cli_display(c->filter, NULL, 0);
            printf(" where %s", shown);
            free(shown);
        }
        printf("; events print after each command, 'unwatch %u' stops it\n", w->id);
    }
done:
    kd_filter_free(f);
    free(ns);
    free(key);
    free(what);
    return cli_finish_output(status);
}

int cmd_unwatch(struct cli *c)
{
    if (!c->watches)
        return not_in_shell(c, "unwatch");
    if (!c->nargs)
        return stop_all(c);
    /* Watches are numbered from 1 in an unsigned int: anything else is no
     * number `watch` printed (strtoul would wrap "-1" and cut one too big). */
    int64_t id;
    if (!cli_parse_number(c->args[0], 1, UINT_MAX, &id)) {
        char *shown = cli_display(c->args[0], NULL, 60);
        int status = cli_error(CLI_USAGE, "unwatch",
                               "expected a watch number from 1 to %u (as `watch` printed it), got '%s'", UINT_MAX,
                               shown);
        free(shown);
        return status;
    }
    for (size_t i = 0; i < c->watches->n; i++)
        if (c->watches->v[i].id == id)
            return cli_finish_output(stop(c, i));
    return cli_error(CLI_NOTFOUND, "unwatch", "no watch %" PRId64 " (%zu active)", id, c->watches->n);
}
