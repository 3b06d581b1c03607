/*
 * store_io.c — scans, the change log, atomic batches and imports, locally
 * or on a server (see store.h): what `kdelta export` and `kdelta import`
 * use. Remotely each is the route docs/HTTP.md documents for it:
 *
 *   st_scan             GET  /api/v1/namespaces/{ns}/scan, page after page
 *   st_changes          GET  /api/v1/changes, page after page
 *   st_put_batch        POST /api/v1/batch
 *   st_import_versions  POST /api/v1/import
 *   st_workspace_import POST /api/v1/workspaces/{name}/import
 *
 * Records of pages are read here rather than with rj_record, which keeps
 * every value it reads for st_get_value: an export would hold the whole
 * database in memory. Only one page is in memory at a time.
 *
 * A request body is JSON, so a write whose names are not UTF-8 or whose
 * value is not JSON cannot be sent. Locally the library refuses such a
 * batch and names the write; to give the same answer here, see "Writes
 * that cannot be sent" below.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote.h"
#include "server_int.h"
#include "store.h"

/* Records per page asked of the server (its most; it also stops a page
 * at a few MiB). */
#define IO_PAGE 10000

/* A failure found here, before or instead of a request: its message
 * becomes st_errmsg()'s (formatted apart first: fmt's arguments may point
 * into the message being replaced). */
static void io_fail(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void io_fail(struct cli *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    remote_fail(c->remote, 0, "%s", msg);
}

/* ------------------------------------------------------------------------
 * Records of a page
 * ---------------------------------------------------------------------- */

typedef struct io_rec {
    char *ns, *key;     /* malloc'd */
    const char *value;  /* a slice of the answer; NULL for a tombstone */
    size_t value_len;
    kd_version v;
    char node_id[33];   /* changes only */
} io_rec;

static void copy_hex(char *dst, size_t hexlen, const char *json, size_t len, const char *name)
{
    char *s = rj_string(json, len, name);
    dst[0] = '\0';
    if (s && strlen(s) == hexlen)
        memcpy(dst, s, hexlen + 1);
    free(s);
}

/* A version record (kd_version_json's form, plus "node_id" in the log)
 * into *r. KD_EIO when it is not one. */
static int read_rec(const char *rec, size_t len, io_rec *r)
{
    memset(r, 0, sizeof *r);
    const char *del, *val;
    size_t dl, vl;
    if (!rj_member(rec, len, "deleted", &del, &dl) || !rj_member(rec, len, "value", &val, &vl))
        return KD_EIO;
    r->ns = rj_string(rec, len, "namespace");
    r->key = rj_string(rec, len, "key");
    if (!r->ns || !r->key) {
        free(r->ns);
        free(r->key);
        return KD_EIO;
    }
    r->v.deleted = dl == 4 && memcmp(del, "true", 4) == 0;
    if (!r->v.deleted) {
        r->value = val;
        r->value_len = vl;
    }
    copy_hex(r->v.version_id, KD_ID_HEX - 1, rec, len, "version_id");
    copy_hex(r->v.write_id, KD_ID_HEX - 1, rec, len, "write_id");
    copy_hex(r->v.previous_write_id, KD_ID_HEX - 1, rec, len, "previous_write_id");
    copy_hex(r->node_id, sizeof r->node_id - 1, rec, len, "node_id");
    r->v.timestamp = rj_time(rec, len, "timestamp");
    return KD_OK;
}

static void rec_free(io_rec *r)
{
    free(r->ns);
    free(r->key);
}

/* GET one page: the array `member` of the answer (a slice of *ans, which
 * the caller frees) and the cursor "next" (malloc'd, NULL on the last
 * page). */
static int get_page(struct cli *c, const char *path, const char *member, char **ans, const char **list,
                    size_t *llen, char **next)
{
    size_t alen;
    *next = NULL;
    int rc = remote_call(c->remote, "GET", path, NULL, 0, ans, &alen);
    if (rc != KD_OK)
        return rc;
    if (!rj_member(*ans, alen, member, list, llen) || *llen == 0 || **list != '[') {
        io_fail(c, "the server at %s answered without \"%s\"", remote_url(c->remote), member);
        return KD_EIO;
    }
    *next = rj_string(*ans, alen, "next");
    return KD_OK;
}

static void page_limit(char **path, size_t want)
{
    char l[32];
    snprintf(l, sizeof l, "%zu", want < IO_PAGE ? want : (size_t)IO_PAGE);
    remote_param(path, "limit", l);
}

/* ------------------------------------------------------------------------
 * Scans and the change log
 * ---------------------------------------------------------------------- */

int st_scan(struct cli *c, const char *ns, const char *prefix, const char *start_after, size_t limit, int64_t at,
            kd_scan_fn fn, void *ctx)
{
    if (!c->remote)
        return kd_scan(c->db, ns, prefix, start_after, limit, at, fn, ctx);
    char *after = start_after ? xstrdup(start_after) : NULL;
    size_t done = 0;
    int rc = KD_OK;
    while (rc == KD_OK) {
        char *path = remote_path("api/v1/namespaces/%s/scan", ns), *ans = NULL, *next = NULL;
        const char *list;
        size_t llen;
        page_limit(&path, limit ? limit - done : IO_PAGE);
        if (prefix && *prefix)
            remote_param(&path, "prefix", prefix);
        if (after)
            remote_param(&path, "after", after);
        if (at != KD_TIME_MAX)
            remote_time_param(&path, "at", at);
        rc = get_page(c, path, "versions", &ans, &list, &llen, &next);
        free(path);
        size_t pos = 0;
        const char *rec;
        size_t rlen;
        while (rc == KD_OK && kd_json_next(list, llen, &pos, NULL, NULL, &rec, &rlen) == 1) {
            io_rec r;
            if ((rc = read_rec(rec, rlen, &r)) != KD_OK)
                break;
            rc = fn(ctx, r.key, r.value ? r.value : "null", r.value ? r.value_len : 4, &r.v);
            rec_free(&r);
            done++;
        }
        free(ans);
        free(after);
        after = next;
        if (!after || (limit && done >= limit))
            break;
    }
    free(after);
    return rc;
}

int st_changes(struct cli *c, const char *ns, int64_t since, kd_change_fn fn, void *ctx)
{
    if (!c->remote)
        return kd_changes(c->db, ns, since, fn, ctx);
    char *from = NULL;
    ks_buf value = {0}; /* the change's value, NUL-terminated as kd_change promises */
    int rc = KD_OK;
    while (rc == KD_OK) {
        char *path = xstrdup("api/v1/changes"), *ans = NULL, *next = NULL;
        const char *list;
        size_t llen;
        page_limit(&path, IO_PAGE);
        if (ns)
            remote_param(&path, "ns", ns);
        if (from)
            remote_param(&path, "since", from);
        else if (since != KD_TIME_MIN)
            remote_time_param(&path, "since", since);
        rc = get_page(c, path, "changes", &ans, &list, &llen, &next);
        free(path);
        size_t pos = 0;
        const char *rec;
        size_t rlen;
        while (rc == KD_OK && kd_json_next(list, llen, &pos, NULL, NULL, &rec, &rlen) == 1) {
            io_rec r;
            if ((rc = read_rec(rec, rlen, &r)) != KD_OK)
                break;
            kd_change ch;
            memset(&ch, 0, sizeof ch);
            ch.ns = r.ns;
            ch.key = r.key;
            ch.version = r.v;
            memcpy(ch.node_id, r.node_id, sizeof ch.node_id);
            if (r.value) {
                value.len = 0;
                ks_buf_add(&value, r.value, r.value_len);
                ch.value = value.p;
                ch.value_len = r.value_len;
            }
            rc = fn(ctx, &ch);
            rec_free(&r);
        }
        free(ans);
        free(from);
        from = next;
        if (!from)
            break;
    }
    free(from);
    free(value.p);
    return rc;
}

/* ------------------------------------------------------------------------
 * Request bodies of batches and imports
 * ---------------------------------------------------------------------- */

enum { SENT, BAD_NAME, BAD_VALUE };

/* "namespace":…,"key":… — BAD_NAME when one cannot be a JSON string
 * (NULL, or not UTF-8: kd_json_quote checks UTF-8 as the library checks
 * names). */
static int add_names(ks_buf *b, const char *ns, const char *key)
{
    char *q = NULL;
    size_t ql;
    if (!ns || kd_json_quote(ns, strlen(ns), &q, &ql) != KD_OK)
        return BAD_NAME;
    ks_buf_add(b, "\"namespace\":", 12);
    ks_buf_add(b, q, ql);
    kd_free(q);
    q = NULL;
    if (!key || kd_json_quote(key, strlen(key), &q, &ql) != KD_OK)
        return BAD_NAME;
    ks_buf_add(b, ",\"key\":", 7);
    ks_buf_add(b, q, ql);
    kd_free(q);
    return SENT;
}

/* ,"value":<canonical> — BAD_VALUE, with the parser's message in err
 * (the library's size, 256), when json is not JSON. */
static int add_value(ks_buf *b, const char *json, size_t len, char err[256])
{
    char *canon = NULL;
    size_t cl = 0;
    if (kd_json_canonical(json, len, &canon, &cl, err, 256) != KD_OK) {
        kd_free(canon);
        return BAD_VALUE;
    }
    ks_buf_add(b, ",\"value\":", 9);
    ks_buf_add(b, canon, cl);
    kd_free(canon);
    return SENT;
}

/* One write of a batch body (no leading comma). */
static int add_write(ks_buf *b, const kd_write *w, char err[256])
{
    ks_buf_add(b, "{", 1);
    int r = add_names(b, w->ns, w->key);
    if (r == SENT && w->json)
        r = add_value(b, w->json, w->len, err);
    else if (r == SENT)
        ks_buf_add(b, ",\"delete\":true", 14);
    if (r == SENT && w->expect && !*w->expect) {
        ks_buf_add(b, ",\"if_none_match\":\"*\"", 20);
    } else if (r == SENT && w->expect) {
        ks_buf_add(b, ",\"if_match\":", 12);
        ks_json_string(b, w->expect, strlen(w->expect)); /* the server checks it */
    }
    ks_buf_add(b, "}", 1);
    return r;
}

/* An id of a version: a string, or null for NULL. Bytes that are not
 * UTF-8 become '?': such an id is refused either way, and the library's
 * message for it does not quote it. */
static void add_id(ks_buf *b, const char *name, const char *id)
{
    ks_buf_printf(b, ",\"%s\":", name);
    if (id)
        ks_json_string(b, id, strlen(id));
    else
        ks_buf_add(b, "null", 4);
}

/* One version of an import body (no leading comma). */
static int add_version(ks_buf *b, const kd_import *v, char err[256])
{
    ks_buf_add(b, "{", 1);
    int r = add_names(b, v->ns, v->key);
    if (r == SENT && v->json)
        r = add_value(b, v->json, v->len, err);
    else if (r == SENT)
        ks_buf_add(b, ",\"deleted\":true", 15);
    if (r == SENT) {
        ks_buf_printf(b, ",\"timestamp\":\"@%" PRId64 "\"", v->timestamp);
        add_id(b, "node_id", v->node_id);
        add_id(b, "previous_write_id", v->previous_write_id);
        add_id(b, "write_id", v->write_id);
    }
    ks_buf_add(b, "}", 1);
    return r;
}

/* ------------------------------------------------------------------------
 * Writes that cannot be sent
 *
 * The library checks a batch (kd_put_batch and kd_import_versions alike)
 * in two passes: first, write by write, its names and then its value (and
 * their sizes); then, under the writer's lock, the conditions (or for an
 * import the timestamps, parents and write_ids). It answers with the first
 * failure. When write `bad` cannot be sent, the answer is therefore
 * either a first-pass failure of an earlier write or of bad's own names,
 * or bad's own failure. The first pass is left to the library on the
 * server: a probe sends the writes before `bad`, then `bad` with names
 * that can travel (of the same lengths, so that the length checks come
 * out alike) and the value null, then one write that cannot pass the
 * second pass — so that the probe never writes anything. A refusal from
 * the first pass is the answer; otherwise bad's own failure is, worded as
 * the library words it (src/write.c; import.c reads the index from it).
 * ---------------------------------------------------------------------- */

/* A name that can travel, of the same length ("x" for NULL, whose failure
 * comes before any length check). malloc'd. */
static char *stand_in(const char *name)
{
    size_t l = name ? strlen(name) : 1;
    char *s = xmalloc(l + 1);
    memset(s, 'x', l);
    s[l] = '\0';
    return s;
}

static int utf8_ok(const char *s)
{
    char *q = NULL;
    size_t ql;
    int ok = kd_json_quote(s, strlen(s), &q, &ql) == KD_OK;
    kd_free(q);
    return ok;
}

/* The failure of write `i` of `n` that the library would give. */
static int own_failure(struct cli *c, size_t n, size_t i, const char *ns, const char *key, int kind, const char *err)
{
    if (kind == BAD_VALUE) {
        if (n > 1)
            io_fail(c, "batch write %zu (%s/%s): %s", i, ns, key, err);
        else
            io_fail(c, "%s/%s: %s", ns, key, err);
        return KD_EINVALID;
    }
    const char *why = !ns ? "namespace is missing"
                      : !utf8_ok(ns) ? "namespace is not valid UTF-8"
                      : !key        ? "key is missing"
                                    : "key is not valid UTF-8";
    if (n > 1)
        io_fail(c, "batch write %zu: %s", i, why);
    else
        io_fail(c, "%s", why);
    return KD_EINVALID;
}

/* The probe's answer, rc and message: a first-pass failure is the batch's
 * answer (for a batch of one write, without the "batch write 0: " the
 * probe's two writes gave it); KD_OK when the first pass held. */
static int probe_answer(struct cli *c, int rc, int import, size_t n)
{
    const char *msg = st_errmsg(c);
    int held = import ? rc == KD_OK || ((rc == KD_EINVALID || rc == KD_ECONFLICT) && strncmp(msg, "import ", 7) == 0)
                      : rc == KD_OK || rc == KD_ECONFLICT || rc == KD_ENOTFOUND || rc == KD_EDELETED;
    if (held)
        return KD_OK;
    if (n == 1 && strncmp(msg, "batch write 0: ", 15) == 0)
        io_fail(c, "%s", msg + 15);
    return rc;
}

static int probe_batch(struct cli *c, const kd_write *w, size_t n, size_t bad, int kind, const char *err)
{
    char *ns = kind == BAD_NAME ? stand_in(w[bad].ns) : xstrdup(w[bad].ns);
    char *key = kind == BAD_NAME ? stand_in(w[bad].key) : xstrdup(w[bad].key);
    static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";
    kd_write last[2] = {{ns, key, "null", 4, NULL}, {ns, key, NULL, 0, zeros}};
    ks_buf b = {0};
    char e[256];
    ks_buf_add(&b, "{\"writes\":[", 11);
    for (size_t i = 0; i < bad; i++) {
        add_write(&b, &w[i], e);
        ks_buf_add(&b, ",", 1);
    }
    add_write(&b, &last[0], e);
    ks_buf_add(&b, ",", 1);
    add_write(&b, &last[1], e);
    ks_buf_add(&b, "]}", 2);
    int rc = remote_call(c->remote, "POST", "api/v1/batch", b.p, b.len, NULL, NULL);
    rc = probe_answer(c, rc, 0, n);
    if (rc == KD_OK)
        rc = own_failure(c, n, bad, w[bad].ns, w[bad].key, kind, err);
    free(b.p);
    free(ns);
    free(key);
    return rc;
}

static int probe_import(struct cli *c, const char *path, const kd_import *v, size_t n, size_t bad, int kind,
                        const char *err)
{
    char *ns = kind == BAD_NAME ? stand_in(v[bad].ns) : xstrdup(v[bad].ns);
    char *key = kind == BAD_NAME ? stand_in(v[bad].key) : xstrdup(v[bad].key);
    /* the second has the first's timestamp, which cannot pass */
    kd_import last = v[bad];
    last.ns = ns;
    last.key = key;
    last.json = "null";
    last.len = 4;
    ks_buf b = {0};
    char e[256];
    ks_buf_add(&b, "{\"versions\":[", 13);
    for (size_t i = 0; i < bad; i++) {
        add_version(&b, &v[i], e);
        ks_buf_add(&b, ",", 1);
    }
    add_version(&b, &last, e);
    ks_buf_add(&b, ",", 1);
    add_version(&b, &last, e);
    ks_buf_add(&b, "]}", 2);
    int rc = remote_call(c->remote, "POST", path, b.p, b.len, NULL, NULL);
    rc = probe_answer(c, rc, 1, n);
    if (rc == KD_OK)
        rc = own_failure(c, n, bad, v[bad].ns, v[bad].key, kind, err);
    free(b.p);
    free(ns);
    free(key);
    return rc;
}

/* ------------------------------------------------------------------------
 * Batches and imports
 * ---------------------------------------------------------------------- */

int st_put_batch(struct cli *c, const kd_write *writes, size_t n, kd_version *out)
{
    if (!c->remote)
        return kd_put_batch(c->db, writes, n, out);
    /* The server takes an empty batch (200, no versions); the library
     * does not, and both modes answer alike. */
    if (!writes || n == 0)
        return remote_fail(c->remote, KD_EINVALID, "a batch needs at least one write");
    ks_buf b = {0};
    char err[256] = "";
    int kind = SENT;
    size_t i;
    ks_buf_add(&b, "{\"writes\":[", 11);
    for (i = 0; i < n && kind == SENT; i++) {
        if (i)
            ks_buf_add(&b, ",", 1);
        kind = add_write(&b, &writes[i], err);
    }
    ks_buf_add(&b, "]}", 2);
    int rc;
    if (kind != SENT) {
        rc = probe_batch(c, writes, n, i - 1, kind, err);
    } else {
        char *ans = NULL;
        size_t alen;
        rc = remote_call(c->remote, "POST", "api/v1/batch", b.p, b.len, out ? &ans : NULL, &alen);
        if (rc == KD_OK && out) {
            const char *list, *rec;
            size_t llen, rlen, pos = 0, got = 0;
            if (rj_member(ans, alen, "versions", &list, &llen)) {
                while (got < n && kd_json_next(list, llen, &pos, NULL, NULL, &rec, &rlen) == 1 &&
                       rj_record(c->remote, rec, rlen, &out[got], NULL, NULL) == KD_OK)
                    got++;
            }
            if (got != n) {
                io_fail(c, "the server at %s answered the batch without its %zu versions", remote_url(c->remote), n);
                rc = KD_EIO;
            }
        }
        free(ans);
    }
    free(b.p);
    return rc;
}

/* POST the versions to `path` (an import route); the answer in *ans. */
static int import_remote(struct cli *c, const char *path, const kd_import *versions, size_t n, char **ans,
                         size_t *alen)
{
    if (!versions || n == 0)
        return remote_fail(c->remote, KD_EINVALID, "nothing to import");
    ks_buf b = {0};
    char err[256] = "";
    int kind = SENT;
    size_t i;
    ks_buf_add(&b, "{\"versions\":[", 13);
    for (i = 0; i < n && kind == SENT; i++) {
        if (i)
            ks_buf_add(&b, ",", 1);
        kind = add_version(&b, &versions[i], err);
    }
    ks_buf_add(&b, "]}", 2);
    int rc = kind != SENT ? probe_import(c, path, versions, n, i - 1, kind, err)
                          : remote_call(c->remote, "POST", path, b.p, b.len, ans, alen);
    free(b.p);
    return rc;
}

int st_import_versions(struct cli *c, const kd_import *versions, size_t n)
{
    if (!c->remote)
        return kd_import_versions(c->db, versions, n);
    return import_remote(c, "api/v1/import", versions, n, NULL, NULL);
}

int st_workspace_import(struct cli *c, const char *name, const kd_import *versions, size_t n, int *created)
{
    *created = 0;
    if (!c->remote)
        return kd_workspace_import(c->db, name, versions, n, created);
    char *path = remote_path("api/v1/workspaces/%s/import", name), *ans = NULL;
    size_t alen = 0;
    const char *v;
    size_t vl;
    int rc = import_remote(c, path, versions, n, &ans, &alen);
    if (rc == KD_OK)
        *created = rj_member(ans, alen, "created", &v, &vl) && vl == 4 && !memcmp(v, "true", 4);
    free(ans);
    free(path);
    return rc;
}
