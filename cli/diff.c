/*
 * diff.c — `kdelta diff NS/KEY [--from REF] [--to REF]`: what changed
 * between two versions of a key, as a JSON Patch (RFC 6902, --json) or as
 * one line per changed path with the old and the new value.
 *
 * A REF names one state of the key's history (kd_history, oldest first):
 *   ~N        N versions before the current one (~0 = current)
 *   N         the N-th version from the oldest, 0-based
 *   HEX       a write_id, or a unique prefix of at least 8 hex digits
 *   TIME      the latest version at or before TIME (kd_time_parse syntax)
 * A string of 8 or more digits is tried as a write_id prefix first, then
 * as N. --to defaults to the current version, --from to the version just
 * before --to's (before the first version: nothing). A tombstone, the state
 * before the first version, and a default --from that went with its
 * dropped workspace diff as "absent": from absent to a
 * value is {"op":"add","path":""}, the other way {"op":"remove","path":""}.
 *
 * The patch comes from kd_json_diff(). For people, each operation's old
 * value is needed too; it is read back with one more kd_json_patch() on a
 * wrapper {"d": FROM, "o": []}: before every remove or replace of path P, a
 * "copy" from /d+P to /o/- records the value about to go. Everything here
 * goes through the public API only.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Resolving a REF to a state of the key
 * ---------------------------------------------------------------------- */

/* A state: index into the history, or -1 for "before the first version". */
struct state {
    long index;
    const kd_version *v; /* NULL when index is -1 */
};

struct refctx {
    struct cli *c;
    const char *shown; /* NS/KEY for messages */
    const kd_version *vs;
    size_t n;
};

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static int all_hex(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s))
            return 0;
    return 1;
}

/* Index of the only version whose write_id starts with `ref` (any case):
 * >= 0 found, -1 none, -2 ambiguous (reported, CLI_INVALID returned via *status). */
static long by_write_id(struct refctx *r, const char *opt, const char *ref, int *status)
{
    char want[KD_ID_HEX];
    size_t len = strlen(ref);
    if (len < 8 || len > 64)
        return -1;
    for (size_t i = 0; i <= len; i++)
        want[i] = (char)tolower((unsigned char)ref[i]);
    long found = -1;
    size_t matches = 0;
    for (size_t i = 0; i < r->n; i++)
        if (strncmp(r->vs[i].write_id, want, len) == 0) {
            found = (long)i;
            matches++;
        }
    if (matches <= 1)
        return found;
    char list[1024];
    size_t used = 0, shown = 0;
    list[0] = '\0';
    for (size_t i = 0; i < r->n && used < sizeof list - 100; i++) {
        if (strncmp(r->vs[i].write_id, want, len) != 0)
            continue;
        if (shown++ == 5) {
            used += (size_t)snprintf(list + used, sizeof list - used, ", ...");
            break;
        }
        char t[40];
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s (#%zu, %s)", shown > 1 ? ", " : "",
                                 r->vs[i].write_id, i, cli_time(r->vs[i].timestamp, t));
    }
    *status = cli_error(CLI_INVALID, r->shown, "%s '%s': ambiguous write_id prefix, %zu versions match: %s; give more digits",
                        opt, ref, matches, list);
    return -2;
}

/* Is `ref` (given to option `opt`) a REF at all? Checked before the
 * database is opened; resolve() then finds the version it names. */
static int ref_syntax(const char *shown, const char *opt, const char *ref)
{
    if (ref[0] == '~')
        return all_digits(ref + 1) ? CLI_OK
                                   : cli_error(CLI_INVALID, shown,
                                               "%s '%s': expected ~N, N a whole number of versions back", opt, ref);
    if (all_digits(ref) || (all_hex(ref) && strlen(ref) >= 8))
        return CLI_OK;
    int64_t ts;
    char err[256];
    if (kd_time_parse(ref, &ts, err, sizeof err) != KD_OK)
        return cli_error(CLI_INVALID, shown,
                         "%s '%s': not a version: use a TIME (%s), a write_id or a prefix of 8+ hex digits, ~N "
                         "(N versions back) or N (0 = oldest)",
                         opt, ref, err);
    return CLI_OK;
}

/* Resolve `ref` (given to option `opt`, ref_syntax checked) into *st.
 * Returns an exit status. */
static int resolve(struct refctx *r, const char *opt, const char *ref, struct state *st)
{
    int status = CLI_OK;
    long last = (long)r->n - 1;
    long idx = -1;

    if (ref[0] == '~') {
        char *end;
        unsigned long long back = strtoull(ref + 1, &end, 10);
        if (back > (unsigned long long)last)
            return cli_error(CLI_NOTFOUND, r->shown, "%s '%s': not found: the key has %zu version%s (~0 to ~%ld)",
                             opt, ref, r->n, r->n == 1 ? "" : "s", last);
        idx = last - (long)back;
    } else if (all_hex(ref) && strlen(ref) >= 8) {
        idx = by_write_id(r, opt, ref, &status);
        if (idx == -2)
            return status;
        if (idx < 0 && !all_digits(ref))
            return cli_error(CLI_NOTFOUND, r->shown, "%s '%s': not found: no version of the key has a write_id starting with %s",
                             opt, ref, ref);
    }
    if (idx < 0 && all_digits(ref)) {
        char *end;
        unsigned long long i = strtoull(ref, &end, 10);
        if (i > (unsigned long long)last)
            return cli_error(CLI_NOTFOUND, r->shown,
                             "%s '%s': not found: the key has %zu version%s (0 to %ld, oldest first)%s", opt, ref,
                             r->n, r->n == 1 ? "" : "s", last,
                             strlen(ref) >= 8 ? "; nor is it a write_id prefix" : "");
        idx = (long)i;
    }
    if (idx < 0) {
        int64_t ts;
        char err[256];
        if (kd_time_parse(ref, &ts, err, sizeof err) != KD_OK)
            return ref_syntax(r->shown, opt, ref);
        for (size_t i = 0; i < r->n && r->vs[i].timestamp <= ts; i++)
            idx = (long)i;
        if (idx < 0) {
            char t[40];
            return cli_error(CLI_NOTFOUND, r->shown, "%s '%s': not found: no version at or before that time (the first is at %s)",
                             opt, ref, cli_time(r->vs[0].timestamp, t));
        }
    }
    st->index = idx;
    st->v = &r->vs[idx];
    return CLI_OK;
}

/* ------------------------------------------------------------------------
 * Reading canonical JSON (what the library returns) without a parser
 * ---------------------------------------------------------------------- */

/* End of the JSON value starting at p. The text is canonical JSON from
 * the library (no whitespace), so counting brackets outside strings is
 * enough. Returns NULL if the text ends first. */
static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;
    do {
        if (p >= end)
            return NULL;
        char ch = *p;
        if (ch == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            if (p >= end)
                return NULL;
            p++;
        } else if (ch == '[' || ch == '{') {
            depth++, p++;
        } else if (ch == ']' || ch == '}') {
            depth--, p++;
        } else if (ch == ',' || ch == ':') {
            p++;
        } else {
            while (p < end && *p != ',' && *p != ':' && *p != ']' && *p != '}')
                p++;
        }
    } while (depth > 0);
    return p;
}

static int expect(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return 0;
    *p += n;
    return 1;
}

/* One operation of a patch made by kd_json_diff: {"op":"X","path":P[,"value":V]}. */
struct op {
    char kind;           /* 'a'dd, 'r'emove, 'c' replace */
    const char *path;    /* the path's string literal, quotes included */
    size_t path_len;
    const char *value;   /* NULL for remove */
    size_t value_len;
    const char *old;     /* the value before (remove, replace), or NULL */
    size_t old_len;
};

/* Split the patch into ops (*ops malloc'd). 0 if it is not as expected. */
static int split_patch(const char *p, size_t len, struct op **ops, size_t *n)
{
    const char *end = p + len;
    size_t cap = 0;
    *ops = NULL;
    *n = 0;
    if (!expect(&p, end, "["))
        return 0;
    if (expect(&p, end, "]"))
        return p == end;
    for (;;) {
        struct op o;
        memset(&o, 0, sizeof o);
        if (!expect(&p, end, "{\"op\":\""))
            return 0;
        if (expect(&p, end, "add\""))
            o.kind = 'a';
        else if (expect(&p, end, "remove\""))
            o.kind = 'r';
        else if (expect(&p, end, "replace\""))
            o.kind = 'c';
        else
            return 0;
        if (!expect(&p, end, ",\"path\":"))
            return 0;
        o.path = p;
        if (!(p = skip_value(p, end)))
            return 0;
        o.path_len = (size_t)(p - o.path);
        if (expect(&p, end, ",\"value\":")) {
            o.value = p;
            if (!(p = skip_value(p, end)))
                return 0;
            o.value_len = (size_t)(p - o.value);
        }
        if (!expect(&p, end, "}") || (o.kind == 'r') != (o.value == NULL))
            return 0;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *ops = xrealloc(*ops, cap * sizeof **ops);
        }
        (*ops)[(*n)++] = o;
        if (expect(&p, end, "]"))
            return p == end;
        if (!expect(&p, end, ","))
            return 0;
    }
}

/* Fill in the old values of remove and replace operations (see the top of
 * the file). The buffer holding them is returned in *keep (kd_free it).
 * On any failure the old values are simply left out. */
static void find_old_values(const char *from, size_t from_len, struct op *ops, size_t n, char **keep)
{
    size_t cap = from_len + 64, used = 0;
    char *doc = xmalloc(cap);
    used = (size_t)snprintf(doc, cap, "{\"d\":");
    memcpy(doc + used, from, from_len);
    used += from_len;
    memcpy(doc + used, ",\"o\":[]}", 9);
    used += 8;

    size_t pcap = 64, plen = 0;
    char *patch = xmalloc(pcap);
#define PUT(s, l)                                                                                                      \
    do {                                                                                                               \
        size_t l_ = (l);                                                                                               \
        while (plen + l_ + 1 > pcap)                                                                                   \
            patch = xrealloc(patch, pcap *= 2);                                                                        \
        memcpy(patch + plen, (s), l_);                                                                                 \
        plen += l_;                                                                                                    \
    } while (0)
#define PUTS(s) PUT((s), strlen(s))
    PUTS("[");
    size_t olds = 0;
    for (size_t i = 0; i < n; i++) {
        const struct op *o = &ops[i];
        /* "/d" + the path: the literal without its opening quote */
        if (o->kind != 'a') {
            PUT(olds + i ? "," : "", olds + i ? 1 : 0);
            PUTS("{\"op\":\"copy\",\"from\":\"/d");
            PUT(o->path + 1, o->path_len - 1);
            PUTS(",\"path\":\"/o/-\"}");
            olds++;
        }
        PUT(olds + i ? "," : "", olds + i ? 1 : 0);
        const char *name = o->kind == 'a' ? "add" : o->kind == 'r' ? "remove" : "replace";
        PUTS("{\"op\":\"");
        PUTS(name);
        PUTS("\",\"path\":\"/d");
        PUT(o->path + 1, o->path_len - 1);
        if (o->value) {
            PUTS(",\"value\":");
            PUT(o->value, o->value_len);
        }
        PUTS("}");
    }
    PUTS("]");
#undef PUTS
#undef PUT

    char *out = NULL;
    size_t outlen = 0;
    *keep = NULL;
    if (kd_json_patch(doc, used, patch, plen, &out, &outlen, NULL, 0) == KD_OK) {
        /* {"d":TO,"o":[old, old, ...]} */
        const char *p = out, *end = out + outlen;
        int ok = expect(&p, end, "{\"d\":") && (p = skip_value(p, end)) && expect(&p, end, ",\"o\":[");
        for (size_t i = 0; ok && i < n; i++) {
            if (ops[i].kind == 'a')
                continue;
            const char *v = p;
            if (!(p = skip_value(p, end))) {
                ok = 0;
                break;
            }
            ops[i].old = v;
            ops[i].old_len = (size_t)(p - v);
            if (!expect(&p, end, ",") && !expect(&p, end, "]"))
                ok = 0;
        }
        if (ok) {
            *keep = out;
        } else {
            kd_free(out);
            for (size_t i = 0; i < n; i++)
                ops[i].old = NULL;
        }
    }
    free(doc);
    free(patch);
}

/* ------------------------------------------------------------------------
 * Output
 * ---------------------------------------------------------------------- */

static void print_state(struct cli *c, const char *label, const struct state *st, size_t n)
{
    char t[40];
    fputs(cli_sgr(c, CLI_BOLD), stdout);
    if (st->index < 0) {
        printf("%s  nothing (before the first version)", label);
    } else {
        printf("%s  #%ld of %zu  write %.16s  %s", label, st->index, n, st->v->write_id,
               cli_time(st->v->timestamp, t));
        if (st->v->deleted)
            fputs("  (deleted)", stdout);
        else if (st->v->pruned == KD_PRUNED_WORKSPACE)
            fputs("  (went with its dropped workspace)", stdout);
    }
    printf("%s\n", cli_sgr(c, CLI_RESET));
}

/* The path for people: the pointer's literal without its quotes, or
 * "(whole value)" for "". Escapes stay visible, so it is one line. */
static void print_path(const struct op *o)
{
    if (o->path_len <= 2)
        fputs("(whole value)", stdout);
    else
        fwrite(o->path + 1, 1, o->path_len - 2, stdout);
}

static void print_op(struct cli *c, const struct op *o)
{
    const char *colour = o->kind == 'a' ? CLI_GREEN : o->kind == 'r' ? CLI_RED : CLI_YELLOW;
    fputs(cli_sgr(c, colour), stdout);
    fputc(o->kind == 'a' ? '+' : o->kind == 'r' ? '-' : '~', stdout);
    fputc(' ', stdout);
    print_path(o);
    fputs(": ", stdout);
    if (o->kind != 'a') {
        if (o->old)
            fwrite(o->old, 1, o->old_len, stdout);
        else
            fputs("(old value unknown)", stdout);
    }
    if (o->kind == 'c')
        fputs(" -> ", stdout);
    if (o->value)
        fwrite(o->value, 1, o->value_len, stdout);
    printf("%s\n", cli_sgr(c, CLI_RESET));
}

/* ------------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------- */

/* The value of a state (NULL when absent); kd_free it. `before` is the
 * default --from, the version just before --to: one that went with its
 * dropped workspace is absent there, as a tombstone is (the workspace
 * made again started empty). Named, such a version is an error, like any
 * pruned one: it has a value, which is gone. */
static int state_value(struct cli *c, const char *shown, const struct state *st, int before, char **val, size_t *len)
{
    *val = NULL;
    *len = 0;
    if (st->index < 0 || st->v->deleted || (before && st->v->pruned == KD_PRUNED_WORKSPACE))
        return CLI_OK;
    if (st->v->pruned == KD_PRUNED_WORKSPACE)
        return cli_error(cli_exit_status(KD_EPRUNED), shown,
                         "version %s went with its dropped workspace: its value was removed by compaction; its "
                         "version_id and write_id remain in the history", st->v->version_id);
    /* A pruned version has no value, even where the same value is still
     * stored for another version. */
    if (st->v->pruned)
        return cli_error(cli_exit_status(KD_EPRUNED), shown,
                         "version %s: the value was removed by compaction; its version_id and write_id remain in the "
                         "history", st->v->version_id);
    int rc = st_get_value(c, st->v->version_id, val, len);
    if (rc != KD_OK) {
        char what[1200];
        snprintf(what, sizeof what, "%s: version %s", shown, st->v->version_id);
        return cli_kd_error(c, rc, what);
    }
    return CLI_OK;
}

int cmd_diff(struct cli *c)
{
    char *ns = NULL, *key = NULL, *shown = NULL;
    char *a = NULL, *b = NULL, *patch = NULL, *keep = NULL;
    size_t alen = 0, blen = 0, plen = 0, nops = 0;
    struct op *ops = NULL;
    kd_version *vs = NULL;
    size_t n = 0;
    struct state from, to;
    int rc, status = cli_split_name(c->args[0], &ns, &key);
    if (status != CLI_OK)
        goto done;
    shown = cli_display(ns, key, 0);
    if ((c->from_ref && (status = ref_syntax(shown, "--from", c->from_ref)) != CLI_OK) ||
        (c->to_ref && (status = ref_syntax(shown, "--to", c->to_ref)) != CLI_OK) ||
        (status = cli_open(c)) != CLI_OK)
        goto done;

    rc = st_history(c, ns, key, KD_TIME_MIN, KD_TIME_MAX, 0, 0, &vs, &n);
    if (rc == KD_ENOTFOUND || (rc == KD_OK && n == 0)) {
        status = cli_error(CLI_NOTFOUND, shown, "not found: never written");
        goto done;
    }
    if (rc != KD_OK) {
        status = cli_kd_error(c, rc, shown);
        goto done;
    }
    struct refctx r = {c, shown, vs, n};
    to.index = (long)n - 1;
    to.v = &vs[n - 1];
    if (c->to_ref && (status = resolve(&r, "--to", c->to_ref, &to)) != CLI_OK)
        goto done;
    from.index = to.index - 1;
    from.v = from.index >= 0 ? &vs[from.index] : NULL;
    if (c->from_ref && (status = resolve(&r, "--from", c->from_ref, &from)) != CLI_OK)
        goto done;

    if ((status = state_value(c, shown, &from, !c->from_ref, &a, &alen)) != CLI_OK ||
        (status = state_value(c, shown, &to, 0, &b, &blen)) != CLI_OK)
        goto done;

    if (a && b) {
        char err[512];
        rc = kd_json_diff(a, alen, b, blen, &patch, &plen, err, sizeof err);
        if (rc != KD_OK) {
            status = cli_error(cli_exit_status(rc), shown, "cannot compute the diff: %s", err);
            goto done;
        }
    } else {
        /* Absent on one side (or both): the whole value is added or removed. */
        const char *head = b ? "[{\"op\":\"add\",\"path\":\"\",\"value\":" : a ? "[{\"op\":\"remove\",\"path\":\"\"}]" : "[]";
        plen = strlen(head) + (b ? blen + 2 : 0);
        patch = xmalloc(plen + 1);
        snprintf(patch, plen + 1, "%s%s%s", head, b ? b : "", b ? "}]" : "");
    }

    if (c->json) {
        fwrite(patch, 1, plen, stdout);
        fputc('\n', stdout);
        goto done;
    }
    if (!split_patch(patch, plen, &ops, &nops)) {
        status = cli_error(CLI_ERROR, shown, "unexpected patch from the library: %.200s", patch);
        goto done;
    }
    if (!b)
        for (size_t i = 0; i < nops; i++)
            ops[i].old = a, ops[i].old_len = alen; /* removal of the whole value */
    else if (a && nops)
        find_old_values(a, alen, ops, nops, &keep);
    print_state(c, "from", &from, n);
    print_state(c, "to  ", &to, n);
    if (nops == 0)
        puts("no changes");
    for (size_t i = 0; i < nops; i++)
        print_op(c, &ops[i]);
done:
    free(ops);
    kd_free(keep);
    kd_free(patch);
    kd_free(a);
    kd_free(b);
    kd_free(vs);
    free(ns);
    free(key);
    free(shown);
    return cli_finish_output(status);
}
