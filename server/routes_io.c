/*
 * routes_io.c — whole-database routes of `kdelta serve`: verification, and
 * the reads and writes `kdelta export` and `kdelta import` make over HTTP.
 *
 *   POST /api/v1/verify                 kd_verify, the object of `kdelta verify --json`
 *   POST /api/v1/backup                 kd_backup into the server's --backup-dir
 *   GET  /api/v1/namespaces/{ns}/scan   kd_scan: keys in order with their values, paged by key
 *   GET  /api/v1/changes                kd_changes: the log as writes, paged by timestamp
 *   POST /api/v1/import                 kd_import_versions: versions with their original ids
 *   POST /api/v1/workspaces/{name}/import  kd_workspace_import: the same into a workspace, made
 *                                       first when missing (and only when the versions import)
 *
 * A scan page and a change are version records (kd_version_json), a change
 * with the "node_id" of its write: the lines of `kdelta export --history`,
 * which is also what the import route takes back. Pages are bounded both
 * in records (`limit`, at most PAGE_MAX) and in bytes (about PAGE_BYTES,
 * but always at least one record), and each ends with the cursor of the
 * next one, null on the last:
 *   - a scan's cursor is the page's last key; keys are visited in byte
 *     order, so a key is never given twice and a key that exists the whole
 *     time is never skipped, whatever is written between pages;
 *   - the log's cursor is the timestamp of the page's last write as a TIME
 *     ("@<ns>"). Timestamps strictly increase along the log and kd_changes
 *     only shows writes up to the last visible one, after which every
 *     later write has a later timestamp: resuming after a timestamp can
 *     neither skip a write nor repeat one.
 * Like the other read routes, these refuse reserved ("_kd…") namespaces.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "server_int.h"

#define PAGE_DEFAULT 1000
#define PAGE_MAX 10000
#define PAGE_BYTES ((size_t)4 << 20)
#define PAGE_FULL 1 /* callback: the page is full (library codes are negative) */
#define PAGE_FAILED 2 /* callback: a record could not be written */

/* ------------------------------------------------------------------------
 * Parameters (as the key routes read them)
 * ---------------------------------------------------------------------- */

/* `limit`, 1 to PAGE_MAX (default PAGE_DEFAULT); -1 after an error response. */
static int limit_param(const ks_request *req, ks_response *res, size_t *limit)
{
    uint64_t v = PAGE_DEFAULT;
    int rc = ks_uint_param(req, res, "limit", 1, PAGE_MAX, &v);
    *limit = (size_t)v;
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------------
 * Verify
 * ---------------------------------------------------------------------- */

/* POST /api/v1/verify: 200 with the report whether or not the database
 * holds; "problem" is null when it does. Other failures are errors. */
static int h_verify(ks_request *req, ks_response *res)
{
    kd_verify_report r;
    memset(&r, 0, sizeof r);
    int rc = kd_verify(req->db, &r);
    if (rc != KD_OK && rc != KD_ECORRUPT) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_printf(&b,
                  "{\"ok\":%s,\"segments\":%" PRIu64 ",\"records\":%" PRIu64 ",\"versions\":%" PRIu64
                  ",\"values\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"pruned\":%" PRIu64 ",\"problem\":",
                  rc == KD_OK ? "true" : "false", r.segments, r.records, r.versions, r.values, r.bytes, r.pruned);
    if (rc == KD_OK) {
        ks_buf_add(&b, "null", 4);
    } else {
        const char *p = r.problem;
        size_t pl = strnlen(r.problem, sizeof r.problem);
        if (!pl) { /* the report is empty: the library's message says it */
            p = kd_errmsg(req->db);
            if (!p || !*p)
                p = kd_strerror(rc);
            pl = strlen(p);
        }
        ks_json_string(&b, p, pl);
    }
    ks_buf_add(&b, "}", 1);
    ks_reply(res, 200, &b);
    return 0;
}

/* ------------------------------------------------------------------------
 * Pages of records
 * ---------------------------------------------------------------------- */

typedef struct page {
    ks_buf out;    /* the records so far, comma-separated */
    size_t n, limit;
    int more;      /* another record followed the last one given */
    int rc;        /* kd_version_json's failure */
    ks_buf last;   /* scans: the last key given */
    int64_t last_ts; /* changes: the timestamp of the last write given */
    const char *ns;
} page;

/* Room for one more record? Otherwise the page is over and another record
 * is known to follow. */
static int page_room(page *p)
{
    if (p->n >= p->limit || p->out.len >= PAGE_BYTES) {
        p->more = 1;
        return 0;
    }
    return 1;
}

/* Append one record, with `extra` ("," + members) before its closing brace. */
static int page_add(page *p, const char *ns, const char *key, const char *value, size_t vlen, const kd_version *v,
                    const char *extra)
{
    char *rec = NULL;
    size_t len = 0;
    int rc = kd_version_json(ns, key, value, vlen, v, &rec, &len);
    if (rc != KD_OK || len < 2 || rec[len - 1] != '}') {
        kd_free(rec);
        p->rc = rc != KD_OK ? rc : KD_EINVALID;
        return PAGE_FAILED;
    }
    if (p->n++)
        ks_buf_add(&p->out, ",", 1);
    if (extra) {
        ks_buf_add(&p->out, rec, len - 1);
        ks_buf_add(&p->out, extra, strlen(extra));
        ks_buf_add(&p->out, "}", 1);
    } else {
        ks_buf_add(&p->out, rec, len);
    }
    kd_free(rec);
    return 0;
}

/* The answer {"<member>":[records],"next":<cursor or null>}. */
static void page_reply(ks_response *res, page *p, const char *member, const char *next, size_t next_len)
{
    ks_buf b = {0};
    ks_buf_printf(&b, "{\"%s\":[", member);
    if (p->out.len)
        ks_buf_add(&b, p->out.p, p->out.len);
    ks_buf_add(&b, "],\"next\":", 9);
    if (next)
        ks_json_string(&b, next, next_len);
    else
        ks_buf_add(&b, "null", 4);
    ks_buf_add(&b, "}", 1);
    ks_reply(res, 200, &b);
}

static void page_free(page *p)
{
    free(p->out.p);
    free(p->last.p);
}

/* ------------------------------------------------------------------------
 * Scan
 * ---------------------------------------------------------------------- */

static int scan_cb(void *ctx, const char *key, const char *value, size_t len, const kd_version *v)
{
    page *p = ctx;
    if (!page_room(p))
        return PAGE_FULL;
    int r = page_add(p, p->ns, key, value, len, v, NULL);
    if (r)
        return r;
    p->last.len = 0;
    ks_buf_add(&p->last, key, strlen(key));
    return 0;
}

/* GET …/namespaces/{ns}/scan?prefix=&after=&limit=&at=: live keys in byte
 * order with their values (at TIME: the keys that had a value then, with
 * it), as version records. */
static int h_scan(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns");
    page p;
    memset(&p, 0, sizeof p);
    int64_t at = KD_TIME_MAX;
    if (limit_param(req, res, &p.limit) < 0 || ks_time_param(req, res, "at", &at) < 0 || ks_reserved(res, ns))
        return 0;
    p.ns = ns;
    int rc = kd_scan(req->db, ns, ks_param(req, "prefix"), ks_param(req, "after"), p.limit + 1, at, scan_cb, &p);
    if (rc == PAGE_FAILED)
        ks_kd_error(res, NULL, p.rc);
    else if (rc != KD_OK && rc != PAGE_FULL)
        ks_kd_error(res, req->db, rc);
    else
        page_reply(res, &p, "versions", p.more ? p.last.p : NULL, p.last.len);
    page_free(&p);
    return 0;
}

/* ------------------------------------------------------------------------
 * The change log
 * ---------------------------------------------------------------------- */

static int change_cb(void *ctx, const kd_change *ch)
{
    page *p = ctx;
    if (!page_room(p))
        return PAGE_FULL;
    char extra[64];
    snprintf(extra, sizeof extra, ",\"node_id\":\"%.32s\"", ch->node_id);
    int r = page_add(p, ch->ns, ch->key, ch->value, ch->value_len, &ch->version, extra);
    if (r)
        return r;
    p->last_ts = ch->version.timestamp;
    return 0;
}

/* GET /api/v1/changes?ns=&since=&limit=: the writes with timestamp > since
 * in log order, of one namespace or of all. */
static int h_changes(ks_request *req, ks_response *res)
{
    page p;
    memset(&p, 0, sizeof p);
    int64_t since = KD_TIME_MIN;
    const char *ns = ks_param(req, "ns");
    if (limit_param(req, res, &p.limit) < 0 || ks_time_param(req, res, "since", &since) < 0)
        return 0;
    if (ns && !*ns) {
        ks_error(res, 400, "invalid", "ns: the namespace is empty (leave ns out for every namespace)");
        return 0;
    }
    /* A namespace's vectors are user data, in the log of every namespace:
     * "_kd.vec.NS" may be asked for by name (as a watch may). */
    if (ns && strncmp(ns, KD_VECTOR_NS_PREFIX, strlen(KD_VECTOR_NS_PREFIX)) != 0 && ks_reserved(res, ns))
        return 0;
    int rc = kd_changes(req->db, ns, since, change_cb, &p);
    if (rc == PAGE_FAILED) {
        ks_kd_error(res, NULL, p.rc);
    } else if (rc != KD_OK && rc != PAGE_FULL) {
        ks_kd_error(res, req->db, rc);
    } else {
        char next[32];
        int nl = snprintf(next, sizeof next, "@%" PRId64, p.last_ts);
        page_reply(res, &p, "changes", p.more ? next : NULL, (size_t)nl);
    }
    page_free(&p);
    return 0;
}

/* ------------------------------------------------------------------------
 * Import
 * ---------------------------------------------------------------------- */

/* The strings one version owns. */
typedef struct owned {
    char *ns, *key, *node_id, *prev, *write_id;
} owned;

static int lit_is(const char *lit, size_t len, const char *s)
{
    return strlen(s) == len && memcmp(lit, s, len) == 0;
}

/* A string member into *out (malloc'd; NULL for null); -1 when it is
 * neither, or holds U+0000. */
static int string_or_null(const char *v, size_t vl, char **out)
{
    kd_free(*out);
    *out = NULL;
    if (lit_is(v, vl, "null"))
        return 0;
    size_t n;
    if (kd_json_unquote(v, vl, out, &n) != KD_OK)
        return -1;
    if (strlen(*out) != n) {
        kd_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* One element of "versions" into *imp (strings in *o). 0, or -1 after an
 * error response. */
static int read_version(ks_response *res, size_t i, const char *obj, size_t olen, kd_import *imp, owned *o)
{
    if (!olen || obj[0] != '{') {
        ks_error(res, 400, "invalid", "versions[%zu]: expected a version record (an object)", i);
        return -1;
    }
    const char *value = NULL, *name, *v;
    size_t value_len = 0, pos = 0, nl, vl;
    int deleted = 0, has_ts = 0;
    while (kd_json_next(obj, olen, &pos, &name, &nl, &v, &vl) == 1) {
        const char *what = NULL;
        if (lit_is(name, nl, "\"namespace\"") || lit_is(name, nl, "\"key\"")) {
            char **dst = name[1] == 'n' ? &o->ns : &o->key;
            if (vl == 0 || v[0] != '"' || string_or_null(v, vl, dst) < 0)
                what = name[1] == 'n' ? "\"namespace\" must be a string" : "\"key\" must be a string";
        } else if (lit_is(name, nl, "\"value\"")) {
            value = v;
            value_len = vl;
        } else if (lit_is(name, nl, "\"deleted\"")) {
            if (!lit_is(v, vl, "true") && !lit_is(v, vl, "false"))
                what = "\"deleted\" must be true or false";
            deleted = v[0] == 't';
        } else if (lit_is(name, nl, "\"timestamp\"")) {
            char *t = NULL, err[256];
            if (vl == 0 || v[0] != '"' || string_or_null(v, vl, &t) < 0) {
                what = "\"timestamp\" must be a TIME string";
            } else if (kd_time_parse(t, &imp->timestamp, err, sizeof err) != KD_OK) {
                ks_error(res, 400, "invalid", "versions[%zu]: \"timestamp\": %s", i, err);
                kd_free(t);
                return -1;
            } else {
                has_ts = 1;
            }
            kd_free(t);
        } else if (lit_is(name, nl, "\"node_id\"")) {
            if (string_or_null(v, vl, &o->node_id) < 0)
                what = "\"node_id\" must be a string";
        } else if (lit_is(name, nl, "\"write_id\"")) {
            if (string_or_null(v, vl, &o->write_id) < 0)
                what = "\"write_id\" must be a string";
        } else if (lit_is(name, nl, "\"previous_write_id\"")) {
            if (string_or_null(v, vl, &o->prev) < 0)
                what = "\"previous_write_id\" must be a string or null";
        } else if (lit_is(name, nl, "\"version_id\"")) {
            /* the hash of the value: the library computes it (and
             * write_id, which covers it, is checked) */
        } else {
            ks_error(res, 400, "invalid",
                     "versions[%zu]: unknown member %.*s (expected namespace, key, value, deleted, timestamp, "
                     "node_id, write_id, previous_write_id, version_id)",
                     i, (int)(nl < 100 ? nl : 100), name);
            return -1;
        }
        if (what) {
            ks_error(res, 400, "invalid", "versions[%zu]: %s", i, what);
            return -1;
        }
    }
    if (!o->ns || !o->key || !has_ts) {
        ks_error(res, 400, "invalid", "versions[%zu]: \"namespace\", \"key\" and \"timestamp\" are required", i);
        return -1;
    }
    if (deleted && value && !lit_is(value, value_len, "null")) {
        ks_error(res, 400, "invalid", "versions[%zu]: a tombstone (\"deleted\": true) has no value", i);
        return -1;
    }
    if (!deleted && !value) {
        ks_error(res, 400, "invalid", "versions[%zu]: \"value\" is missing (or \"deleted\": true for a tombstone)",
                 i);
        return -1;
    }
    imp->ns = o->ns;
    imp->key = o->key;
    imp->json = deleted ? NULL : value;
    imp->len = deleted ? 0 : value_len;
    imp->node_id = o->node_id;
    imp->previous_write_id = o->prev;
    imp->write_id = o->write_id;
    return 0;
}

/* The versions of an import body, parsed. */
typedef struct versions {
    char *canon; /* the canonical body the values point into */
    kd_import *imps;
    owned *own;
    size_t n;
} versions;

static void versions_free(versions *vs)
{
    for (size_t i = 0; i < vs->n; i++) {
        kd_free(vs->own[i].ns);
        kd_free(vs->own[i].key);
        kd_free(vs->own[i].node_id);
        kd_free(vs->own[i].prev);
        kd_free(vs->own[i].write_id);
    }
    free(vs->own);
    free(vs->imps);
    kd_free(vs->canon);
    memset(vs, 0, sizeof *vs);
}

/* Parse a body {"versions":[records…]} into *vs. 0, or -1 after an error
 * response (*vs is then freed). */
static int versions_parse(const ks_request *req, ks_response *res, versions *vs)
{
    char err[512];
    size_t clen = 0, cap = 0;
    memset(vs, 0, sizeof *vs);
    if (kd_json_canonical(req->body, req->body_len, &vs->canon, &clen, err, sizeof err) != KD_OK) {
        ks_error(res, 400, "invalid", "body: %s", err);
        goto fail;
    }
    const char *name, *v, *list = NULL;
    size_t nl, vl, llen = 0, pos = 0;
    if (!clen || vs->canon[0] != '{') {
        ks_error(res, 400, "invalid", "body: expected an object {\"versions\": [...]}");
        goto fail;
    }
    while (kd_json_next(vs->canon, clen, &pos, &name, &nl, &v, &vl) == 1) {
        if (!lit_is(name, nl, "\"versions\"")) {
            ks_error(res, 400, "invalid", "body: unknown member %.*s (expected \"versions\")",
                     (int)(nl < 100 ? nl : 100), name);
            goto fail;
        }
        list = v;
        llen = vl;
    }
    if (!list || list[0] != '[') {
        ks_error(res, 400, "invalid", "body: \"versions\" must be an array of version records");
        goto fail;
    }
    pos = 0;
    while (kd_json_next(list, llen, &pos, NULL, NULL, &v, &vl) == 1) {
        if (vs->n == cap) {
            cap = cap ? 2 * cap : 64;
            vs->imps = ks_xrealloc(vs->imps, cap * sizeof *vs->imps);
            vs->own = ks_xrealloc(vs->own, cap * sizeof *vs->own);
        }
        memset(&vs->imps[vs->n], 0, sizeof vs->imps[vs->n]);
        memset(&vs->own[vs->n], 0, sizeof vs->own[vs->n]);
        vs->n++;
        if (read_version(res, vs->n - 1, v, vl, &vs->imps[vs->n - 1], &vs->own[vs->n - 1]) < 0)
            goto fail;
    }
    /* A name over its length limit is 400 too_big, looked for first; a
     * too_big from the library is then about a value (or the number of
     * versions): 413, as for PUT and batches. */
    for (size_t i = 0; i < vs->n; i++) {
        const kd_import *im = &vs->imps[i];
        if (im->ns && im->key && kd_check_name(im->ns, im->key, err, sizeof err) == KD_ETOOBIG) {
            ks_error(res, 400, "too_big", "import %zu: %s", i, err);
            goto fail;
        }
    }
    return 0;
fail:
    versions_free(vs);
    return -1;
}

/* The answer to an import the library refused. */
static void import_refused(ks_response *res, kd_db *db, int rc)
{
    ks_kd_error(res, db, rc);
    if (rc == KD_ETOOBIG)
        res->status = 413;
}

/* POST /api/v1/import {"versions":[records…]}: append versions exactly as
 * another database recorded them (kd_import_versions), all or none. */
static int h_import(ks_request *req, ks_response *res)
{
    versions vs;
    if (versions_parse(req, res, &vs) < 0)
        return 0;
    int rc = kd_import_versions(req->db, vs.imps, vs.n);
    if (rc != KD_OK) {
        import_refused(res, req->db, rc);
    } else {
        ks_buf b = {0};
        ks_buf_printf(&b, "{\"imported\":%zu}", vs.n);
        ks_reply(res, 200, &b);
    }
    versions_free(&vs);
    return 0;
}

/* POST /api/v1/workspaces/{name}/import {"versions":[records…]}: the same
 * into workspace {name}, which is made 1 ns before the first version when
 * it does not exist, and only once the versions are known to import
 * (kd_workspace_import): a workspace made for a history it then refused
 * could never take one. 201 when it was made, else 200. */
static int h_ws_import(ks_request *req, ks_response *res)
{
    const char *name = ks_var(req, "name");
    versions vs;
    if (versions_parse(req, res, &vs) < 0)
        return 0;
    int created = 0;
    int rc = kd_workspace_import(req->db, name, vs.imps, vs.n, &created);
    if (rc != KD_OK) {
        import_refused(res, req->db, rc);
    } else {
        ks_buf b = {0};
        ks_buf_printf(&b, "{\"imported\":%zu,\"workspace\":", vs.n);
        ks_json_string(&b, name, strlen(name));
        ks_buf_printf(&b, ",\"created\":%s}", created ? "true" : "false");
        ks_reply(res, created ? 201 : 200, &b);
    }
    versions_free(&vs);
    return 0;
}

/* ------------------------------------------------------------------------
 * Backups
 * ---------------------------------------------------------------------- */

/* A backup file name inside the server's backup directory: one path
 * segment, not "." or "..", no control characters. 1 ok, else 0. */
static int plain_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || (unsigned char)s[i] < 0x20)
            return 0;
    return 1;
}

/* POST /api/v1/backup {"file": NAME, "at": TIME, "since": NAME, "current_only": BOOL}: kd_backup
 * into the server's --backup-dir (files are named, never paths, so a
 * client cannot write elsewhere); 201 with kd_backup_info_json plus
 * "file" (the path on the server). */
static int h_backup(ks_request *req, ks_response *res)
{
    char *canon = NULL, *file = NULL, *since = NULL, *at_text = NULL, err[512];
    size_t clen = 0;
    int current_only = 0;
    if (!req->backup_dir) {
        ks_error(res, 403, "forbidden",
                 "this server takes no backups over HTTP: start it with --backup-dir DIR (backups are written there)");
        goto done;
    }
    if (kd_json_canonical(req->body, req->body_len, &canon, &clen, err, sizeof err) != KD_OK) {
        ks_error(res, 400, "invalid", "body: %s", err);
        goto done;
    }
    if (!clen || canon[0] != '{') {
        ks_error(res, 400, "invalid", "body: expected an object {\"file\": NAME, \"at\": TIME, \"since\": NAME}");
        goto done;
    }
    const char *name, *v;
    size_t nl, vl, pos = 0;
    while (kd_json_next(canon, clen, &pos, &name, &nl, &v, &vl) == 1) {
        if (lit_is(name, nl, "\"current_only\"")) {
            if (!lit_is(v, vl, "true") && !lit_is(v, vl, "false")) {
                ks_error(res, 400, "invalid", "body: \"current_only\" must be true or false");
                goto done;
            }
            current_only = lit_is(v, vl, "true");
            continue;
        }
        char **dst = lit_is(name, nl, "\"file\"") ? &file : lit_is(name, nl, "\"since\"") ? &since
                     : lit_is(name, nl, "\"at\"") ? &at_text : NULL;
        if (!dst) {
            ks_error(res, 400, "invalid",
                     "body: unknown member %.*s (expected \"file\", \"at\", \"since\", \"current_only\")",
                     (int)(nl < 100 ? nl : 100), name);
            goto done;
        }
        if (string_or_null(v, vl, dst) < 0) {
            ks_error(res, 400, "invalid", "body: %.*s must be a string", (int)(nl < 100 ? nl : 100), name);
            goto done;
        }
    }
    if (!file || !plain_name(file) || (since && !plain_name(since))) {
        ks_error(res, 400, "invalid",
                 "body: \"file\" (and \"since\") must be file names in the server's backup directory, without '/'");
        goto done;
    }
    kd_backup_options o;
    memset(&o, 0, sizeof o);
    o.current_only = current_only;
    if (at_text && kd_time_parse(at_text, &o.at, err, sizeof err) != KD_OK) {
        ks_error(res, 400, "invalid", "\"at\": %s", err);
        goto done;
    }
    if (at_text && o.at <= 0) {
        ks_error(res, 400, "invalid", "\"at\": the time must be after 1970-01-01");
        goto done;
    }
    ks_buf path = {0}, since_path = {0};
    ks_buf_printf(&path, "%s/%s", req->backup_dir, file);
    if (since) {
        ks_buf_printf(&since_path, "%s/%s", req->backup_dir, since);
        o.since = since_path.p;
    }
    kd_backup_info info;
    int rc = kd_backup(req->db, path.p, &o, &info);
    char *json = NULL;
    size_t jl = 0;
    if (rc == KD_OK)
        rc = kd_backup_info_json(&info, &json, &jl);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
    } else {
        ks_buf b = {0};
        ks_buf_add(&b, "{\"file\":", 8);
        ks_json_string(&b, path.p, path.len);
        ks_buf_add(&b, ",", 1);
        ks_buf_add(&b, json + 1, jl - 1);
        ks_reply(res, 201, &b);
        ks_log(KD_LOG_INFO, "backup: wrote %s (requested over HTTP)", path.p);
    }
    kd_free(json);
    free(ks_buf_take(&path));
    free(ks_buf_take(&since_path));
done:
    kd_free(canon);
    kd_free(file);
    kd_free(since);
    kd_free(at_text);
    return 0;
}

/* ------------------------------------------------------------------------
 * The table
 * ---------------------------------------------------------------------- */

const ks_route ks_routes_io[] = {
    {"POST", "api/v1/verify", h_verify, "verify"},
    {"GET", "api/v1/namespaces/{ns}/scan", h_scan, "scan"},
    {"GET", "api/v1/changes", h_changes, "changes"},
    {"POST", "api/v1/import", h_import, "import"},
    {"POST", "api/v1/backup", h_backup, "backup"},
    {"POST", "api/v1/workspaces/{name}/import", h_ws_import, "workspace_import"},
    /* the same in workspace {ws} (DESIGN.md §2): http.c runs them on its handle */
    {"GET", "api/v1/ws/{ws}/namespaces/{ns}/scan", h_scan, "scan"},
    {"GET", "api/v1/ws/{ws}/changes", h_changes, "changes"},
    {"POST", "api/v1/ws/{ws}/import", h_import, "import"},
    {NULL, NULL, NULL, NULL},
};
