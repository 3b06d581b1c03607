/*
 * export.c — `kdelta export [NS]`: the database (or one namespace) as JSON
 * lines on stdout, streamed.
 *
 *   default      the current state: one line per live key,
 *                {"namespace":NS,"key":KEY,"value":VALUE}, namespaces and
 *                keys in byte order (kd_list_namespaces, then one kd_scan
 *                per namespace).
 *   --at TIME    the state as of TIME, same shape: every key that had a live
 *                value at TIME, including keys deleted since (kd_scan at
 *                TIME of each namespace written up to TIME, which
 *                kd_changes gives; a namespace whose keys are all deleted
 *                now is not listed by kd_list_namespaces).
 *   --history    every version in log order (timestamps increasing), as the
 *                version record of kd_version_json plus "node_id": what
 *                `kdelta import --history` reads back. With --at, only the
 *                versions up to TIME.
 *   --format json  the same objects as one JSON array ("[", one per line
 *                with commas, "]").
 *
 * The database is reached through store.h (st_*): the directory, or with
 * `kdelta --url` a server, whose answers are the same records.
 * Reserved namespaces ("_kd…") are the database's own and are refused, as
 * import and the server refuse them.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

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

static int export_ns(struct cli *c, struct out *o, const char *ns, int64_t at)
{
    size_t qnslen;
    char *qns = quoted(ns, &qnslen);
    struct scan_out s = {o, qns, qnslen};
    int status = CLI_OK;
    /* One pass over the keys in order with their values then (kd_scan). */
    int rc = st_scan(c, ns, NULL, NULL, 0, at, emit_scanned, &s);
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
        return export_ns(c, o, ns, KD_TIME_MAX);
    char **names = NULL;
    size_t n = 0;
    int rc = st_list_namespaces(c, &names, &n);
    if (rc != KD_OK)
        return cli_kd_error(c, rc, "export");
    int status = CLI_OK;
    for (size_t i = 0; i < n && status == CLI_OK; i++)
        status = export_ns(c, o, names[i], KD_TIME_MAX);
    kd_free_list(names, n);
    return status;
}

/* ------------------------------------------------------------------------
 * State at a time: the namespaces written up to TIME, then kd_scan at TIME
 * ---------------------------------------------------------------------- */

struct names {
    int64_t at;
    char **v; /* distinct namespaces, malloc'd */
    size_t n, cap;
};

#define STOP_PAST_TIME 1 /* returned by the callback once past TIME */

static int collect_ns(void *ctx, const kd_change *ch)
{
    struct names *nm = ctx;
    if (ch->version.timestamp > nm->at)
        return STOP_PAST_TIME;
    /* The log also holds the database's own namespaces (a key's vectors
     * live in "_kd.vec.NS"): reserved, not exported. */
    if (strncmp(ch->ns, "_kd", 3) == 0)
        return 0;
    /* Few namespaces, written in runs: look at the last one first. */
    for (size_t i = nm->n; i-- > 0;)
        if (strcmp(nm->v[i], ch->ns) == 0)
            return 0;
    if (nm->n == nm->cap) {
        nm->cap = nm->cap ? nm->cap * 2 : 16;
        nm->v = xrealloc(nm->v, nm->cap * sizeof *nm->v);
    }
    nm->v[nm->n++] = xstrdup(ch->ns);
    return 0;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static int export_at(struct cli *c, struct out *o, const char *ns, int64_t at)
{
    if (ns)
        return export_ns(c, o, ns, at);
    struct names nm;
    memset(&nm, 0, sizeof nm);
    nm.at = at;
    int status = CLI_OK;
    int rc = st_changes(c, NULL, KD_TIME_MIN, collect_ns, &nm);
    if (rc != KD_OK && rc != STOP_PAST_TIME)
        status = cli_kd_error(c, rc, "export");
    if (nm.n > 1)
        qsort(nm.v, nm.n, sizeof *nm.v, cmp_str);
    for (size_t i = 0; i < nm.n && status == CLI_OK; i++)
        status = export_ns(c, o, nm.v[i], at);
    for (size_t i = 0; i < nm.n; i++)
        free(nm.v[i]);
    free(nm.v);
    return status;
}

/* ------------------------------------------------------------------------
 * History
 * ---------------------------------------------------------------------- */

/* Each key's last exported write, to notice a version whose parent is not
 * in the export: kd_changes leaves out versions whose values retention
 * removed (compaction), and `import --history` cannot replay past such a
 * gap. 16 bytes a key, so an export of many keys stays small: a 64-bit hash
 * of the name and a 63-bit hash of the write_id (a collision could only
 * make this advisory count wrong, with odds far below one in a million for
 * ten million keys). Open addressing, grown at three quarters full. */
struct last_write {
    uint64_t name;  /* hash of ns, NUL, key; 0 = empty slot */
    uint64_t write; /* low 63 bits: the last write's tag (0 before the key's
                       first version); top bit: this key had a gap */
};

#define GAP_BIT (1ull << 63)

struct hist {
    struct cli *c;
    struct out *o;
    int64_t at;
    int status;
    struct last_write *keys;
    size_t nkeys, cap;
    uint64_t gaps;     /* versions whose parent was not exported */
    uint64_t gap_keys; /* keys with at least one */
};

#define FNV_BASIS 1469598103934665603ull

static uint64_t fnv1a(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t name_hash(const char *ns, const char *key)
{
    uint64_t h = fnv1a(FNV_BASIS, ns, strlen(ns) + 1); /* its NUL separates ns from key */
    h = fnv1a(h, key, strlen(key));
    return h ? h : 1;
}

/* A write_id's tag (its hash, top bit cleared), or 0 for "" (no parent). */
static uint64_t write_tag(const char *write_id)
{
    return *write_id ? (fnv1a(FNV_BASIS, write_id, strlen(write_id)) | 1) & ~GAP_BIT : 0;
}

/* The slot of `name`: found, or the empty one where it belongs. */
static struct last_write *key_slot(struct last_write *keys, size_t cap, uint64_t name)
{
    for (size_t i = name & (cap - 1);; i = (i + 1) & (cap - 1))
        if (keys[i].name == name || keys[i].name == 0)
            return &keys[i];
}

static void keys_grow(struct hist *h)
{
    size_t cap = h->cap ? h->cap * 2 : 4096;
    struct last_write *keys = xmalloc(cap * sizeof *keys);
    memset(keys, 0, cap * sizeof *keys);
    for (size_t i = 0; i < h->cap; i++)
        if (h->keys[i].name)
            *key_slot(keys, cap, h->keys[i].name) = h->keys[i];
    free(h->keys);
    h->keys = keys;
    h->cap = cap;
}

/* Note ch as its key's last exported write, counting a gap before it. */
static void note_write(struct hist *h, const kd_change *ch)
{
    if (4 * (h->nkeys + 1) > 3 * h->cap)
        keys_grow(h);
    uint64_t name = name_hash(ch->ns, ch->key);
    struct last_write *slot = key_slot(h->keys, h->cap, name);
    if (!slot->name) {
        slot->name = name;
        h->nkeys++;
    }
    if (write_tag(ch->version.previous_write_id) != (slot->write & ~GAP_BIT)) { /* 0 = no parent */
        h->gaps++;
        h->gap_keys += !(slot->write & GAP_BIT);
        slot->write |= GAP_BIT;
    }
    slot->write = (slot->write & GAP_BIT) | write_tag(ch->version.write_id);
}

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
    note_write(h, ch);
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
    struct hist h = {c, o, at, CLI_OK, NULL, 0, 0, 0, 0};
    int rc = st_changes(c, ns, KD_TIME_MIN, emit_change, &h);
    free(h.keys);
    if (h.status != CLI_OK)
        return h.status;
    if (rc != KD_OK && rc != STOP_PAST_TIME)
        return cli_kd_error(c, rc, "export");
    if (h.gaps)
        fprintf(stderr,
                "kdelta: export: %" PRIu64 " version%s of %" PRIu64 " key%s follow%s versions whose values retention "
                "removed (compaction), which an export cannot hold: `kdelta import --history` stops at the first "
                "of them; `kdelta backup` and `restore` copy a compacted database exactly\n",
                h.gaps, h.gaps == 1 ? "" : "s", h.gap_keys, h.gap_keys == 1 ? "" : "s", h.gaps == 1 ? "s" : "");
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
        nsbuf = cli_ns_arg(ns);
        ns = nsbuf;
        if (!*ns) {
            free(nsbuf);
            return cli_error(CLI_INVALID, "export", "the namespace is empty");
        }
        if ((status = cli_check_name(ns, NULL)) != CLI_OK) {
            free(nsbuf);
            return status;
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
