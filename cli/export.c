/*
 * export.c — `kdelta export [NS]`: the database (or one namespace) as JSON
 * lines on stdout, streamed.
 *
 *   default      the current state: one line per live key,
 *                {"namespace":NS,"key":KEY,"value":VALUE}, namespaces and
 *                keys in byte order (kd_list_namespaces, then one kd_scan
 *                per namespace).
 *   --at TIME    the state as of TIME, same shape: every key that had a live
 *                value at TIME (kd_get_at), including keys deleted since.
 *                The keys ever written up to TIME come from kd_changes.
 *   --history    every version in log order (timestamps increasing), as the
 *                version record of kd_version_json plus "node_id": what
 *                `kdelta import --history` reads back. With --at, only the
 *                versions up to TIME.
 *   --format json  the same objects as one JSON array ("[", one per line
 *                with commas, "]").
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"


/* ------------------------------------------------------------------------
 * Output
 * ---------------------------------------------------------------------- */

struct out {
    int array;  /* --format json */
    uint64_t n; /* objects written */
};

static void emit_begin(struct out *o)
{
    if (o->array)
        fputs(o->n ? ",\n" : "[\n", stdout);
}

static void emit_end(struct out *o)
{
    if (!o->array)
        fputc('\n', stdout);
    o->n++;
}

static void finish_array(struct out *o)
{
    if (o->array)
        fputs(o->n ? "\n]\n" : "[]\n", stdout);
}

/* Quote a name into a malloc'd JSON literal (exits on OOM like xmalloc). */
static char *quoted(const char *s, size_t *len)
{
    char *q = NULL;
    if (kd_json_quote(s, strlen(s), &q, len) != KD_OK) {
        fputs("kdelta: out of memory\n", stderr);
        exit(CLI_ERROR);
    }
    return q;
}

/* 1 if `s` needs no escaping in a JSON string: printable ASCII but '"'
 * and '\\' (most keys; the rest go through kd_json_quote). */
static int plain_ascii(const char *s, size_t *len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (; *p; p++)
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
            return 0;
    *len = (size_t)(p - (const unsigned char *)s);
    return 1;
}

/* {"namespace":<qns>,"key":<qkey>,"value":<json>} */
static void emit_state(struct out *o, const char *qns, size_t qnslen, const char *key, const char *json, size_t len)
{
    size_t klen;
    emit_begin(o);
    fputs("{\"namespace\":", stdout);
    fwrite(qns, 1, qnslen, stdout);
    fputs(",\"key\":", stdout);
    if (plain_ascii(key, &klen)) {
        fputc('"', stdout);
        fwrite(key, 1, klen, stdout);
        fputc('"', stdout);
    } else {
        char *qk = quoted(key, &klen);
        fwrite(qk, 1, klen, stdout);
        kd_free(qk);
    }
    fputs(",\"value\":", stdout);
    fwrite(json, 1, len, stdout);
    fputc('}', stdout);
    emit_end(o);
}

/* ------------------------------------------------------------------------
 * Current state
 * ---------------------------------------------------------------------- */

struct scan_out {
    struct out *o;
    const char *qns;
    size_t qnslen;
};

static int emit_scanned(void *ctx, const char *key, const char *value, size_t len, const kd_version *v)
{
    struct scan_out *s = ctx;
    (void)v;
    emit_state(s->o, s->qns, s->qnslen, key, value, len);
    return 0;
}

static int export_ns_current(struct cli *c, struct out *o, const char *ns)
{
    size_t qnslen;
    char *qns = quoted(ns, &qnslen);
    struct scan_out s = {o, qns, qnslen};
    int status = CLI_OK;
    /* One pass over the keys in order with their values (kd_scan). */
    int rc = kd_scan(c->db, ns, NULL, NULL, 0, KD_TIME_MAX, emit_scanned, &s);
    if (rc != KD_OK) {
        char *shown = cli_display(ns, NULL, 200);
        status = cli_kd_error(c, rc, shown);
        free(shown);
    }
    kd_free(qns);
    return status;
}

static int export_current(struct cli *c, struct out *o, const char *ns)
{
    if (ns)
        return export_ns_current(c, o, ns);
    char **names = NULL;
    size_t n = 0;
    int rc = kd_list_namespaces(c->db, &names, &n);
    if (rc != KD_OK)
        return cli_kd_error(c, rc, "export");
    int status = CLI_OK;
    for (size_t i = 0; i < n && status == CLI_OK; i++)
        status = export_ns_current(c, o, names[i]);
    kd_free_list(names, n);
    return status;
}

/* ------------------------------------------------------------------------
 * State at a time: the names written up to TIME, then kd_get_at each
 * ---------------------------------------------------------------------- */

struct names {
    int64_t at;
    char *buf; /* "ns\0key\0" back to back */
    size_t len, cap;
    size_t *offs;
    size_t n, ncap;
};

#define STOP_PAST_TIME 1 /* returned by the callback once past TIME */

static int collect_name(void *ctx, const kd_change *ch)
{
    struct names *nm = ctx;
    if (ch->version.timestamp > nm->at)
        return STOP_PAST_TIME;
    size_t a = strlen(ch->ns) + 1, b = strlen(ch->key) + 1;
    /* Consecutive writes to one key are common: keep one. */
    if (nm->n && strcmp(nm->buf + nm->offs[nm->n - 1], ch->ns) == 0 &&
        strcmp(nm->buf + nm->offs[nm->n - 1] + a, ch->key) == 0)
        return 0;
    if (nm->len + a + b > nm->cap) {
        nm->cap = (nm->len + a + b) * 2;
        nm->buf = xrealloc(nm->buf, nm->cap);
    }
    if (nm->n == nm->ncap) {
        nm->ncap = nm->ncap ? nm->ncap * 2 : 1024;
        nm->offs = xrealloc(nm->offs, nm->ncap * sizeof *nm->offs);
    }
    nm->offs[nm->n++] = nm->len;
    memcpy(nm->buf + nm->len, ch->ns, a);
    memcpy(nm->buf + nm->len + a, ch->key, b);
    nm->len += a + b;
    return 0;
}

static const char *g_sort_buf; /* qsort has no context argument */

static int cmp_names(const void *x, const void *y)
{
    const char *a = g_sort_buf + *(const size_t *)x, *b = g_sort_buf + *(const size_t *)y;
    int c = strcmp(a, b);
    if (c)
        return c;
    return strcmp(a + strlen(a) + 1, b + strlen(b) + 1);
}

static int export_at(struct cli *c, struct out *o, const char *ns, int64_t at)
{
    struct names nm;
    memset(&nm, 0, sizeof nm);
    nm.at = at;
    int status = CLI_OK;
    int rc = kd_changes(c->db, ns, KD_TIME_MIN, collect_name, &nm);
    if (rc != KD_OK && rc != STOP_PAST_TIME) {
        status = cli_kd_error(c, rc, "export");
        goto done;
    }
    g_sort_buf = nm.buf;
    if (nm.n > 1)
        qsort(nm.offs, nm.n, sizeof *nm.offs, cmp_names);
    char *qns = NULL;
    size_t qnslen = 0;
    const char *prev_ns = NULL, *prev_key = NULL;
    for (size_t i = 0; i < nm.n && status == CLI_OK; i++) {
        const char *n_ns = nm.buf + nm.offs[i], *n_key = n_ns + strlen(n_ns) + 1;
        if (prev_ns && strcmp(prev_ns, n_ns) == 0 && strcmp(prev_key, n_key) == 0)
            continue; /* the same key written again later */
        if (!prev_ns || strcmp(prev_ns, n_ns) != 0) {
            kd_free(qns);
            qns = quoted(n_ns, &qnslen);
        }
        prev_ns = n_ns;
        prev_key = n_key;
        char *json = NULL;
        size_t len = 0;
        rc = kd_get_at(c->db, n_ns, n_key, at, &json, &len, NULL);
        if (rc == KD_OK) {
            emit_state(o, qns, qnslen, n_key, json, len);
        } else if (rc != KD_ENOTFOUND && rc != KD_ENOVERSION && rc != KD_EDELETED) {
            char *shown = cli_display(n_ns, n_key, 200);
            status = cli_kd_error(c, rc, shown);
            free(shown);
        }
        kd_free(json);
    }
    kd_free(qns);
done:
    free(nm.buf);
    free(nm.offs);
    return status;
}

/* ------------------------------------------------------------------------
 * History
 * ---------------------------------------------------------------------- */

struct hist {
    struct cli *c;
    struct out *o;
    int64_t at;
    int status;
};

static int emit_change(void *ctx, const kd_change *ch)
{
    struct hist *h = ctx;
    if (ch->version.timestamp > h->at)
        return STOP_PAST_TIME;
    char *rec = NULL;
    size_t len = 0;
    int rc = kd_version_json(ch->ns, ch->key, ch->value, ch->value_len, &ch->version, &rec, &len);
    if (rc != KD_OK || len < 2 || rec[len - 1] != '}') {
        char *shown = cli_display(ch->ns, ch->key, 200);
        h->status = cli_error(cli_exit_status(rc ? rc : KD_EINVALID), shown, "cannot format the version record: %s",
                              kd_strerror(rc ? rc : KD_EINVALID));
        free(shown);
        kd_free(rec);
        return STOP_PAST_TIME + 1;
    }
    emit_begin(h->o);
    fwrite(rec, 1, len - 1, stdout);
    fputs(",\"node_id\":\"", stdout);
    fwrite(ch->node_id, 1, strnlen(ch->node_id, 32), stdout);
    fputs("\"}", stdout);
    emit_end(h->o);
    kd_free(rec);
    return 0;
}

static int export_history(struct cli *c, struct out *o, const char *ns, int64_t at)
{
    struct hist h = {c, o, at, CLI_OK};
    int rc = kd_changes(c->db, ns, KD_TIME_MIN, emit_change, &h);
    if (h.status != CLI_OK)
        return h.status;
    if (rc != KD_OK && rc != STOP_PAST_TIME)
        return cli_kd_error(c, rc, "export");
    return CLI_OK;
}

/* ------------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------- */

int cmd_export(struct cli *c)
{
    struct out o;
    memset(&o, 0, sizeof o);
    const char *ns = c->nargs ? c->args[0] : NULL;
    int64_t at = KD_TIME_MAX;
    int status;
    char *nsbuf = NULL;

    if (c->format && strcmp(c->format, "json") == 0)
        o.array = 1;
    else if (c->format && strcmp(c->format, "ndjson") != 0)
        return cli_error(CLI_USAGE, "--format", "unknown format '%s' (export writes ndjson or json)", c->format);
    if (c->at) {
        char err[512];
        if (kd_time_parse(c->at, &at, err, sizeof err) != KD_OK)
            return cli_error(CLI_INVALID, "--at", "%s", err);
    }
    if (ns) {
        size_t l = strlen(ns);
        if (l > 1 && ns[l - 1] == '/') { /* "export users/" means namespace users */
            nsbuf = xstrdup(ns);
            nsbuf[l - 1] = '\0';
            ns = nsbuf;
        }
        if (!*ns) {
            free(nsbuf);
            return cli_error(CLI_INVALID, "export", "the namespace is empty");
        }
    }
    if ((status = cli_open(c)) != CLI_OK) {
        free(nsbuf);
        return status;
    }
    static char obuf[1 << 20];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);

    if (c->history)
        status = export_history(c, &o, ns, at);
    else if (c->at)
        status = export_at(c, &o, ns, at);
    else
        status = export_current(c, &o, ns);
    if (status == CLI_OK)
        finish_array(&o);
    free(nsbuf);
    return cli_finish_output(status);
}
