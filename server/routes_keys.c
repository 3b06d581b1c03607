/*
 * routes_keys.c — the key routes of `kdelta serve`: status, listing,
 * get / put / delete of one key (conditional writes, ETags, as-of reads),
 * its history and diffs, atomic batches, and the live change stream
 * GET /api/v1/watch (Server-Sent Events).
 *
 * Every handler reads a ks_request and fills a ks_response (server.h);
 * nothing here touches libmicrohttpd, and only the public API
 * (korudelta.h) is used. Names come from decoded path segments and are
 * validated by the library (its KD_EINVALID / KD_ERESERVED become 400).
 * A version record is exactly what kd_version_json produces; the ETag of a
 * key is its current write_id in quotes.
 *
 * The watch stream is described above its section, further down.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "server.h"
#include "server_int.h"

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */

#define LIST_DEFAULT_LIMIT 1000
#define LIST_MAX_LIMIT 10000

/* Append one version record; value NULL for a tombstone. */
static int add_record(ks_buf *b, const char *ns, const char *key, const char *value, size_t vlen,
                      const kd_version *v)
{
    char *rec = NULL;
    size_t len = 0;
    int rc = kd_version_json(ns, key, value, vlen, v, &rec, &len);
    if (rc != KD_OK)
        return rc;
    ks_buf_add(b, rec, len);
    kd_free(rec);
    return KD_OK;
}

static void set_etag(ks_response *res, const kd_version *v)
{
    snprintf(res->etag, sizeof res->etag, "\"%s\"", v->write_id);
}

static int is_hex_id(const char *s, size_t len)
{
    if (len != 64)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Copy a 64-hex id in lower case into out[KD_ID_HEX]. */
static void copy_id(char *out, const char *s)
{
    for (size_t i = 0; i < 64; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[64] = '\0';
}

/* ------------------------------------------------------------------------
 * Reading canonical JSON (what kd_json_canonical returns), through the
 * library's walk (kd_json_next, kd_json_unquote)
 * ---------------------------------------------------------------------- */

/* Members of an object or elements of an array, in order. */
typedef struct jiter {
    const char *v;
    size_t len, pos;
    int bad; /* the text was not canonical JSON */
} jiter;

static int jiter_open(jiter *it, const char *v, size_t len, char open)
{
    if (!len || v[0] != open)
        return 0;
    it->v = v;
    it->len = len;
    it->pos = 0;
    it->bad = 0;
    return 1;
}

/* Next member (name is its string literal, quotes included) or element.
 * 0 at the end (or on text that is not canonical JSON). */
static int jiter_next(jiter *it, const char **name, size_t *nlen, const char **val, size_t *vlen)
{
    int r = kd_json_next(it->v, it->len, &it->pos, name, nlen, val, vlen);
    if (r < 0)
        it->bad = 1;
    return r == 1;
}

static int lit_is(const char *lit, size_t len, const char *s)
{
    return strlen(s) == len && memcmp(lit, s, len) == 0;
}

/* The text of a JSON string literal (quotes included) as a malloc'd
 * NUL-terminated string; NULL when it is not a string or holds U+0000
 * (a name cannot). */
static char *junquote(const char *lit, size_t len)
{
    char *out;
    size_t n;
    if (kd_json_unquote(lit, len, &out, &n) != KD_OK)
        return NULL;
    if (strlen(out) != n) {
        kd_free(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Status and listing
 * ---------------------------------------------------------------------- */

/* Like `kdelta status --json`, without "path" (the server does not show
 * its directory), plus the library version. */
static int h_status(ks_request *req, ks_response *res)
{
    kd_stats s;
    kd_root *roots = NULL;
    size_t nroots = 0;
    int rc = kd_stats_get(req->db, &s);
    if (rc == KD_OK)
        rc = kd_roots(req->db, &roots, &nroots);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"path\":", 8);
    ks_json_string(&b, req->db_dir ? req->db_dir : "", req->db_dir ? strlen(req->db_dir) : 0);
    ks_buf_printf(&b,
                  ",\"keys\":%" PRIu64 ",\"live_keys\":%" PRIu64 ",\"versions\":%" PRIu64 ",\"values\":%" PRIu64
                  ",\"namespaces\":%" PRIu64 ",\"disk_bytes\":%" PRIu64 ",\"segments\":%" PRIu64
                  ",\"index_bytes\":%" PRIu64 ",\"cache_bytes\":%" PRIu64 ",\"cache_hits\":%" PRIu64
                  ",\"cache_misses\":%" PRIu64 ",\"replay_bytes\":%" PRIu64 ",\"index_mapped_bytes\":%" PRIu64,
                  s.keys, s.live_keys, s.versions, s.unique_values, s.namespaces, s.disk_bytes, s.segments,
                  s.index_bytes, s.cache_bytes, s.cache_hits, s.cache_misses, s.replay_bytes, s.index_mapped_bytes);
    uint64_t lookups = s.cache_hits + s.cache_misses;
    ks_buf_printf(&b,
                  ",\"memory_budget\":%" PRIu64 ",\"memory_used\":%" PRIu64 ",\"cache_capacity\":%" PRIu64
                  ",\"cache_hit_rate\":%.4f,\"vector_index_bytes\":%" PRIu64 ",\"log_window_bytes\":%" PRIu64
                  ",\"log_trims\":%" PRIu64,
                  s.memory_budget, s.memory_used, s.cache_capacity,
                  lookups ? (double)s.cache_hits / (double)lookups : 0.0, s.vector_index_bytes, s.log_window_bytes,
                  s.log_trims);
    char t[48];
    if (s.last_timestamp && kd_time_format(s.last_timestamp, t, sizeof t) == KD_OK)
        ks_buf_printf(&b, ",\"last_write\":\"%s\"", t);
    else
        ks_buf_add(&b, ",\"last_write\":null", 18);
    ks_buf_add(&b, ",\"roots\":{", 10);
    for (size_t i = 0; i < nroots; i++) {
        if (i)
            ks_buf_add(&b, ",", 1);
        ks_json_string(&b, roots[i].name, strnlen(roots[i].name, sizeof roots[i].name));
        ks_buf_printf(&b, ":\"%s\"", roots[i].hex);
    }
    ks_buf_add(&b, "}", 1);
    kd_task_status *tasks = NULL;
    size_t ntasks = 0;
    if (kd_upkeep_status(req->db, &tasks, &ntasks) == KD_OK) {
        ks_buf_add(&b, ",\"upkeep\":[", 11);
        for (size_t i = 0; i < ntasks; i++) {
            const kd_task_status *k = &tasks[i];
            char code[32];
            ks_buf_add(&b, i ? ",{\"task\":" : "{\"task\":", i ? 9 : 8);
            ks_json_string(&b, k->name, strnlen(k->name, sizeof k->name));
            ks_buf_printf(&b, ",\"runs\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"last_run\":", k->runs, k->failures);
            if (k->last_run && kd_time_format(k->last_run, t, sizeof t) == KD_OK)
                ks_buf_printf(&b, "\"%s\"", t);
            else
                ks_buf_add(&b, "null", 4);
            ks_buf_printf(&b, ",\"last_duration_us\":%" PRId64 ",\"last_status\":\"%s\",\"message\":",
                          k->last_duration_ns / 1000, ks_kd_code(k->last_status, code, sizeof code));
            ks_json_string(&b, k->message, strnlen(k->message, sizeof k->message));
            ks_buf_add(&b, "}", 1);
        }
        ks_buf_add(&b, "]", 1);
        kd_free(tasks);
    }
    ks_buf_printf(&b, ",\"version\":\"%s\"}", kd_libversion());
    kd_free(roots);
    ks_reply(res, 200, &b);
    return 0;
}

static void add_name_list(ks_buf *b, char **names, size_t n)
{
    ks_buf_add(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            ks_buf_add(b, ",", 1);
        ks_json_string(b, names[i], strlen(names[i]));
    }
    ks_buf_add(b, "]", 1);
}

static int list_in_ranges(ks_request *req, const char *ns, char **ranges, size_t nranges, const char *prefix,
                          const char *after, size_t want, char ***out, size_t *n);

/* Is namespace ns (which holds a live key) listed for this caller? Yes
 * without --auth or when it may read all of ns (no listing of its keys:
 * that sorts them); else when a key under its grants' prefixes is live. */
static int namespace_shown(ks_request *req, const char *ns)
{
    char **ranges = NULL, **one = NULL;
    size_t nranges = 0, k = 0;
    if (ks_read_prefixes(req, ns, &ranges, &nranges))
        return 1;
    int shown = nranges && list_in_ranges(req, ns, ranges, nranges, NULL, NULL, 1, &one, &k) == KD_OK && k;
    kd_free_list(one, k);
    kd_free_list(ranges, nranges);
    return shown;
}

static int h_namespaces(ks_request *req, ks_response *res)
{
    char **names = NULL;
    size_t n = 0;
    int rc = kd_list_namespaces(req->db, &names, &n);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    /* With --auth: only namespaces that hold a key the caller may read
     * (a grant on a key prefix of every namespace does not list them all). */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (namespace_shown(req, names[i]))
            names[kept++] = names[i];
        else
            free(names[i]);
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"namespaces\":", 14);
    add_name_list(&b, names, kept);
    ks_buf_add(&b, "}", 1);
    kd_free_list(names, kept);
    ks_reply(res, 200, &b);
    return 0;
}

/* The first `want` keys of ns after `after` (NULL: from the start) that
 * start with `prefix` (NULL: any) and start with one of `ranges` (sorted,
 * none extending another: ks_read_prefixes) and that the caller may read.
 * Only those ranges are listed, so a caller who may read few keys of a
 * large namespace costs what it may read, not the namespace; the check of
 * each key (ks_may) still decides, so neither the page nor its cursor ever
 * names a key the caller may not read. */
static int list_in_ranges(ks_request *req, const char *ns, char **ranges, size_t nranges, const char *prefix,
                          const char *after, size_t want, char ***out, size_t *n)
{
    const char *p = prefix ? prefix : "";
    size_t plen = strlen(p);
    char **acc = ks_xmalloc((want ? want : 1) * sizeof *acc);
    size_t got = 0;
    int rc = KD_OK;
    for (size_t i = 0; i < nranges && got < want && rc == KD_OK; i++) {
        /* keys that start with both p and ranges[i]: the longer of the two,
         * when it extends the other */
        const char *range = strncmp(ranges[i], p, plen) == 0                    ? ranges[i]
                            : strncmp(p, ranges[i], strlen(ranges[i])) == 0 ? p
                                                                                : NULL;
        if (!range)
            continue;
        char *cursor = after ? ks_xstrdup(after) : NULL;
        while (got < want) {
            char **keys = NULL;
            size_t k = 0, asked = want - got;
            rc = kd_list_keys(req->db, ns, range, cursor, asked, &keys, &k);
            if (rc != KD_OK)
                break;
            for (size_t j = 0; j < k && got < want; j++)
                if (ks_may(req, ns, keys[j], KD_PERM_READ))
                    acc[got++] = ks_xstrdup(keys[j]);
            free(cursor);
            cursor = k ? ks_xstrdup(keys[k - 1]) : NULL;
            kd_free_list(keys, k);
            if (k < asked)
                break;
        }
        free(cursor);
    }
    if (rc != KD_OK) {
        kd_free_list(acc, got);
        return rc;
    }
    *out = acc;
    *n = got;
    return KD_OK;
}

/* kd_list_keys as the caller may see it (--auth): all of ns when it may
 * read all of it, else only keys under its grants' prefixes. */
static int list_readable(ks_request *req, const char *ns, const char *prefix, const char *after, size_t want,
                         char ***out, size_t *n)
{
    char **ranges = NULL;
    size_t nranges = 0;
    if (ks_read_prefixes(req, ns, &ranges, &nranges))
        return kd_list_keys(req->db, ns, prefix, after, want, out, n);
    int rc = list_in_ranges(req, ns, ranges, nranges, prefix, after, want, out, n);
    kd_free_list(ranges, nranges);
    return rc;
}

/* GET …/keys?prefix=&after=&limit=: one page of live keys in byte order;
 * "next" is the cursor for the following page (the page's last key, to
 * pass as after=), null on the last page. */
static int h_keys(ks_request *req, ks_response *res)
{
    uint64_t limit = LIST_DEFAULT_LIMIT;
    if (ks_uint_param(req, res, "limit", 1, LIST_MAX_LIMIT, &limit) < 0)
        return 0;
    if (ks_reserved(res, ks_var(req, "ns")))
        return 0;
    const char *prefix = ks_param(req, "prefix"), *after = ks_param(req, "after");
    char **keys = NULL;
    size_t n = 0;
    /* One more than asked says whether another page follows. */
    int rc = list_readable(req, ks_var(req, "ns"), prefix, after, (size_t)limit + 1, &keys, &n);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    size_t shown = n > limit ? (size_t)limit : n;
    ks_buf b = {0};
    ks_buf_add(&b, "{\"keys\":", 8);
    add_name_list(&b, keys, shown);
    ks_buf_add(&b, ",\"next\":", 8);
    if (n > limit)
        ks_json_string(&b, keys[shown - 1], strlen(keys[shown - 1]));
    else
        ks_buf_add(&b, "null", 4);
    ks_buf_add(&b, "}", 1);
    kd_free_list(keys, n);
    ks_reply(res, 200, &b);
    return 0;
}

/* ------------------------------------------------------------------------
 * One key: get, put, delete
 * ---------------------------------------------------------------------- */

/* The not-found family with a precise message (like `kdelta get`). */
static void missing(ks_response *res, kd_db *db, int rc, const char *ns, const char *key, const kd_version *meta,
                    int64_t at)
{
    char t1[48], t2[48];
    if (rc == KD_ENOTFOUND) {
        /* a key with versions is not found when they went with its
         * workspace (dropped, compacted, then made again): as kdelta says */
        kd_version *first = NULL;
        size_t n = 0;
        int had = kd_history(db, ns, key, KD_TIME_MIN, KD_TIME_MAX, 1, 0, &first, &n) == KD_OK && n > 0;
        kd_free(first);
        ks_error(res, 404, "not_found", had ? "not found: its versions were removed when its workspace was dropped "
                                              "(and compacted)"
                                            : "not found: never written");
    } else if (rc == KD_EDELETED) {
        if (meta && meta->write_id[0] && kd_time_format(meta->timestamp, t1, sizeof t1) == KD_OK)
            ks_error(res, 404, "deleted", "deleted at %s (write %s)", t1, meta->write_id);
        else
            ks_error(res, 404, "deleted", "deleted");
    } else if (rc == KD_ENOVERSION) {
        kd_version *first = NULL;
        size_t n = 0;
        if (kd_time_format(at, t1, sizeof t1) != KD_OK)
            snprintf(t1, sizeof t1, "@%" PRId64, at);
        if (kd_history(db, ns, key, KD_TIME_MIN, KD_TIME_MAX, 1, 0, &first, &n) == KD_OK && n > 0 &&
            kd_time_format(first[0].timestamp, t2, sizeof t2) == KD_OK)
            ks_error(res, 404, "no_version", "no version at or before %s (the first is at %s)", t1, t2);
        else
            ks_error(res, 404, "no_version", "no version at or before %s", t1);
        kd_free(first);
    } else {
        ks_kd_error(res, db, rc);
    }
}

static int h_get(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    if (ks_reserved(res, ns))
        return 0;
    int64_t at = 0;
    int has_at = ks_time_param(req, res, "at", &at);
    if (has_at < 0)
        return 0;
    char *json = NULL;
    size_t len = 0;
    kd_version v;
    memset(&v, 0, sizeof v);
    int rc = has_at ? kd_get_at(req->db, ns, key, at, &json, &len, &v) : kd_get(req->db, ns, key, &json, &len, &v);
    if (rc != KD_OK) {
        missing(res, req->db, rc, ns, key, &v, at);
        kd_free(json);
        return 0;
    }
    ks_buf b = {0};
    rc = add_record(&b, ns, key, json, len, &v);
    kd_free(json);
    if (rc != KD_OK) {
        free(b.p);
        ks_kd_error(res, NULL, rc);
        return 0;
    }
    set_etag(res, &v);
    ks_reply(res, 200, &b);
    return 0;
}

/* Preconditions of a write, from If-Match / If-None-Match. */
enum cond { COND_NONE, COND_ID, COND_ABSENT, COND_EXISTS };

/* Parse the headers; -1 after an error response. id receives the write_id
 * for COND_ID. */
static int conditions(const ks_request *req, ks_response *res, char id[KD_ID_HEX], enum cond *cond)
{
    const char *im = ks_header(req, "If-Match"), *inm = ks_header(req, "If-None-Match");
    *cond = COND_NONE;
    if (im && inm) {
        ks_error(res, 400, "invalid", "If-Match and If-None-Match: give one of them, not both");
        return -1;
    }
    if (im) {
        while (*im == ' ' || *im == '\t')
            im++;
        size_t l = strlen(im);
        while (l && (im[l - 1] == ' ' || im[l - 1] == '\t'))
            l--;
        if (l == 1 && im[0] == '*') {
            *cond = COND_EXISTS;
        } else if (l == 66 && im[0] == '"' && im[65] == '"' && is_hex_id(im + 1, 64)) {
            copy_id(id, im + 1);
            *cond = COND_ID;
        } else {
            ks_error(res, 400, "invalid",
                     "If-Match: expected one write_id in double quotes (\"<64 hex digits>\", as the ETag) or *");
            return -1;
        }
    }
    if (inm) {
        while (*inm == ' ' || *inm == '\t')
            inm++;
        size_t l = strlen(inm);
        while (l && (inm[l - 1] == ' ' || inm[l - 1] == '\t'))
            l--;
        if (l != 1 || inm[0] != '*') {
            ks_error(res, 400, "invalid", "If-None-Match: only * is supported (the key must have no value)");
            return -1;
        }
        *cond = COND_ABSENT;
    }
    return 0;
}

/* conditions() for tests/fuzz/fuzz_server.c (server_int.h). */
_Static_assert((int)COND_NONE == KS_COND_NONE && (int)COND_ID == KS_COND_ID && (int)COND_ABSENT == KS_COND_ABSENT &&
                   (int)COND_EXISTS == KS_COND_EXISTS,
               "enum cond and KS_COND_* differ");
int ks_conditions(const ks_request *req, ks_response *res, char id[KD_ID_HEX], int *cond)
{
    enum cond c = COND_NONE;
    int rc = conditions(req, res, id, &c);
    *cond = (int)c;
    return rc;
}

/* 1 if the version before v (its parent) is absent, a tombstone, or went
 * with its dropped workspace (made again since). */
static int was_absent(kd_db *db, const char *ns, const char *key, const kd_version *v)
{
    if (!v->previous_write_id[0])
        return 1;
    kd_version *prev = NULL;
    size_t n = 0;
    int absent = 0;
    if (kd_history(db, ns, key, KD_TIME_MIN, v->timestamp - 1, 1, KD_HISTORY_NEWEST_FIRST, &prev, &n) == KD_OK &&
        n == 1)
        absent = prev[0].deleted || prev[0].pruned == KD_PRUNED_WORKSPACE;
    kd_free(prev);
    return absent;
}

/* A write failed: 412 for a failed condition, else the library's error
 * (a value over the size limit is 413). */
static void write_failed(ks_response *res, kd_db *db, int rc, const char *ns, const char *key)
{
    if (rc == KD_ETOOBIG && strlen(ns) <= kd_max_namespace_len() && strlen(key) <= kd_max_key_len()) {
        ks_kd_error(res, db, rc);
        res->status = 413;
        return;
    }
    if (rc == KD_ENOTFOUND || rc == KD_EDELETED)
        missing(res, db, rc, ns, key, NULL, 0);
    else
        ks_kd_error(res, db, rc);
}

/* If-Match: * — the key must have a value. The library has no such
 * condition, so it is read and then required by write_id; a concurrent
 * write in between is retried a few times. */
#define EXISTS_TRIES 16

/* The key's current write_id into id; otherwise an error response (412
 * when it has no value) and not KD_OK. */
static int current_id(ks_response *res, kd_db *db, const char *ns, const char *key, char id[KD_ID_HEX])
{
    kd_version cur;
    int rc = kd_get(db, ns, key, NULL, NULL, &cur);
    if (rc == KD_ENOTFOUND || rc == KD_EDELETED)
        ks_error(res, 412, "conflict", "%s/%s: If-Match: * but the key has no value", ns, key);
    else if (rc != KD_OK)
        ks_kd_error(res, db, rc);
    else
        memcpy(id, cur.write_id, KD_ID_HEX);
    return rc;
}

static void put_answer(ks_request *req, ks_response *res);

static int h_put(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    if (ks_reserved(res, ns))
        return 0;
    char id[KD_ID_HEX];
    enum cond cond;
    if (conditions(req, res, id, &cond) < 0)
        return 0;
    kd_version v;
    int rc;
    for (int tries = 0;; tries++) {
        const char *expect = NULL;
        if (cond == COND_ID)
            expect = id;
        else if (cond == COND_ABSENT)
            expect = KD_EXPECT_ABSENT;
        else if (cond == COND_EXISTS) {
            if (current_id(res, req->db, ns, key, id) != KD_OK)
                return 0;
            expect = id;
        }
        rc = kd_put_if(req->db, ns, key, req->body, req->body_len, expect, &v);
        if (rc != KD_ECONFLICT || cond != COND_EXISTS || tries + 1 == EXISTS_TRIES)
            break;
    }
    if (rc != KD_OK) {
        write_failed(res, req->db, rc, ns, key);
        return 0;
    }
    res->finish_version = v;
    res->finish = put_answer;
    return 0;
}

/* The answer to a PUT (ks_response.finish): the version record, 201 when
 * the key had no value before. Runs once the write is durable. */
static void put_answer(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    const kd_version v = res->finish_version;
    int status = was_absent(req->db, ns, key, &v) ? 201 : 200;
    /* The value as stored is the canonical form of the body: making it
     * again costs less than reading it back (the write does not fill the
     * hot cache, so that read is a pread of the log). */
    char *json = NULL;
    size_t len = 0;
    int rc = kd_json_canonical(req->body, req->body_len, &json, &len, NULL, 0);
    if (rc != KD_OK)
        rc = kd_get_value(req->db, v.version_id, &json, &len);
    ks_buf b = {0};
    if (rc == KD_OK)
        rc = add_record(&b, ns, key, json, len, &v);
    kd_free(json);
    if (rc != KD_OK) {
        free(b.p);
        ks_kd_error(res, req->db, rc);
        return;
    }
    set_etag(res, &v);
    if (status == 201)
        ks_location(res, req->path, strlen(req->path));
    ks_reply(res, status, &b);
}

static int h_delete(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    if (ks_reserved(res, ns))
        return 0;
    char id[KD_ID_HEX];
    enum cond cond;
    if (conditions(req, res, id, &cond) < 0)
        return 0;
    kd_version v;
    int rc;
    for (int tries = 0;; tries++) {
        if (cond == COND_EXISTS && (rc = current_id(res, req->db, ns, key, id)) != KD_OK)
            return 0;
        const char *expect = cond == COND_ID || cond == COND_EXISTS ? id : cond == COND_ABSENT ? KD_EXPECT_ABSENT : NULL;
        rc = kd_delete_if(req->db, ns, key, expect, &v);
        if (rc != KD_ECONFLICT || cond != COND_EXISTS || tries + 1 == EXISTS_TRIES)
            break;
    }
    if (rc != KD_OK) {
        write_failed(res, req->db, rc, ns, key);
        return 0;
    }
    ks_buf b = {0};
    rc = add_record(&b, ns, key, NULL, 0, &v);
    if (rc != KD_OK) {
        free(b.p);
        ks_kd_error(res, NULL, rc);
        return 0;
    }
    set_etag(res, &v);
    ks_reply(res, 200, &b);
    return 0;
}

/* ------------------------------------------------------------------------
 * History and diff
 * ---------------------------------------------------------------------- */

/* GET …/history?from=&to=&limit=&order=asc|desc: the versions with
 * from <= timestamp <= to, oldest first (asc, the default) or newest first;
 * limit (0 or absent: all) keeps the oldest (asc) or newest (desc) ones.
 * Each record has its value (null for a tombstone). */
static int h_history(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    if (ks_reserved(res, ns))
        return 0;
    int64_t from = KD_TIME_MIN, to = KD_TIME_MAX;
    uint64_t limit = 0;
    if (ks_time_param(req, res, "from", &from) < 0 || ks_time_param(req, res, "to", &to) < 0 ||
        ks_from_to(res, from, to) < 0 || ks_uint_param(req, res, "limit", 0, (uint64_t)1 << 40, &limit) < 0)
        return 0;
    const char *order = ks_param(req, "order");
    unsigned flags = 0;
    if (order && strcmp(order, "asc") != 0) {
        if (strcmp(order, "desc") != 0) {
            ks_error(res, 400, "invalid", "order: expected asc or desc");
            return 0;
        }
        flags = KD_HISTORY_NEWEST_FIRST;
    }
    kd_version *vs = NULL;
    size_t n = 0;
    int rc = kd_history(req->db, ns, key, from, to, (size_t)limit, flags, &vs, &n);
    if (rc != KD_OK) {
        missing(res, req->db, rc, ns, key, NULL, 0);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"versions\":[", 13);
    for (size_t i = 0; i < n && rc == KD_OK; i++) {
        char *json = NULL;
        size_t len = 0;
        if (i)
            ks_buf_add(&b, ",", 1);
        if (!vs[i].deleted && !vs[i].pruned) /* a pruned one is listed with "value": null */
            rc = kd_get_value(req->db, vs[i].version_id, &json, &len);
        if (rc == KD_OK)
            rc = add_record(&b, ns, key, json, len, &vs[i]);
        kd_free(json);
    }
    kd_free(vs);
    if (rc != KD_OK) {
        free(b.p);
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf_add(&b, "]}", 2);
    ks_reply(res, 200, &b);
    return 0;
}

/* A REF (from=, to=) names one state of the key, with the rules of
 * `kdelta diff` (cli/diff.c), plus "latest":
 *   latest    the current version (= ~0)
 *   ~N        N versions before the current one
 *   N         the N-th version from the oldest, 0-based
 *   HEX       a write_id, or a unique prefix of at least 8 hex digits
 *   TIME      the latest version at or before TIME (kd_time_parse syntax)
 * A string of 8 or more digits is tried as a write_id prefix first, then
 * as N. Resolves to an index into vs (oldest first); -1 after an error
 * response (400 invalid, 404 not_found). */
static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static long resolve_ref(ks_response *res, const char *what, const char *ref, const kd_version *vs, size_t n)
{
    long last = (long)n - 1;
    size_t rlen = strlen(ref);
    if (strcmp(ref, "latest") == 0)
        return last;
    if (ref[0] == '~') {
        if (!all_digits(ref + 1) || rlen > 20) {
            ks_error(res, 400, "invalid", "%s: expected ~N, N a whole number of versions back", what);
            return -1;
        }
        unsigned long long back = strtoull(ref + 1, NULL, 10);
        if (back > (unsigned long long)last) {
            ks_error(res, 404, "not_found", "%s: the key has %zu version%s (~0 to ~%ld)", what, n, n == 1 ? "" : "s",
                     last);
            return -1;
        }
        return last - (long)back;
    }
    int hex = rlen >= 8 && rlen <= 64;
    for (size_t i = 0; hex && i < rlen; i++)
        hex = isxdigit((unsigned char)ref[i]) != 0;
    if (hex) {
        long found = -1;
        size_t matches = 0;
        for (size_t i = 0; i < n; i++)
            if (strncasecmp(vs[i].write_id, ref, rlen) == 0) {
                found = (long)i;
                matches++;
            }
        if (matches > 1) {
            ks_error(res, 400, "invalid", "%s: ambiguous write_id prefix, %zu versions match; give more digits", what,
                     matches);
            return -1;
        }
        if (found >= 0)
            return found;
        if (!all_digits(ref)) {
            ks_error(res, 404, "not_found", "%s: no version of the key has a write_id starting with %s", what, ref);
            return -1;
        }
    }
    if (all_digits(ref)) {
        unsigned long long i = rlen > 19 ? ULLONG_MAX : strtoull(ref, NULL, 10);
        if (i > (unsigned long long)last) {
            ks_error(res, 404, "not_found", "%s: the key has %zu version%s (0 to %ld, oldest first)%s", what, n,
                     n == 1 ? "" : "s", last, rlen >= 8 ? "; nor is it a write_id prefix" : "");
            return -1;
        }
        return (long)i;
    }
    int64_t ts;
    char err[256];
    if (kd_time_parse(ref, &ts, err, sizeof err) != KD_OK) {
        ks_error(res, 400, "invalid",
                 "%s: not a version: use latest, a TIME (%s), a write_id or a prefix of 8+ hex digits, ~N (N versions "
                 "back) or N (0 = oldest)",
                 what, err);
        return -1;
    }
    long idx = -1;
    for (size_t i = 0; i < n && vs[i].timestamp <= ts; i++)
        idx = (long)i;
    if (idx < 0) {
        char t[48];
        kd_time_format(vs[0].timestamp, t, sizeof t);
        ks_error(res, 404, "not_found", "%s: no version at or before that time (the first is at %s)", what, t);
    }
    return idx;
}

/* Value of state idx (NULL when absent: before the first version, a
 * tombstone, or, as the default `from` (`before`), a version that went with
 * its dropped workspace). A pruned version named has none, even where its
 * value is still stored for another version: 410, and -1. */
static int state_value(kd_db *db, ks_response *res, const kd_version *vs, long idx, int before, char **val,
                       size_t *len)
{
    *val = NULL;
    *len = 0;
    if (idx < 0 || vs[idx].deleted || (before && vs[idx].pruned == KD_PRUNED_WORKSPACE))
        return KD_OK;
    if (vs[idx].pruned) {
        ks_error(res, 410, "pruned", "the value of version %s was removed by compaction; its version_id and write_id "
                 "remain in the history", vs[idx].version_id);
        return -1;
    }
    int rc = kd_get_value(db, vs[idx].version_id, val, len);
    if (rc != KD_OK) {
        ks_kd_error(res, db, rc);
        return -1;
    }
    return KD_OK;
}

/* GET …/diff?from=REF&to=REF → {"from":W|null,"to":W,"patch":[…]}: the JSON
 * Patch turning the state `from` into the state `to` (write_ids of both;
 * from null = before the first version). to defaults to the current
 * version, from to the one just before to. An absent state (tombstone,
 * before the first version, or a default from gone with its dropped
 * workspace) diffs as in the CLI: adding or removing the
 * whole value at path "". */
static int h_diff(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns"), *key = ks_var(req, "key");
    if (ks_reserved(res, ns))
        return 0;
    const char *from_ref = ks_param(req, "from"), *to_ref = ks_param(req, "to");
    kd_version *vs = NULL;
    size_t n = 0;
    char *a = NULL, *b = NULL, *patch = NULL;
    size_t alen = 0, blen = 0, plen = 0;
    int rc = kd_history(req->db, ns, key, KD_TIME_MIN, KD_TIME_MAX, 0, 0, &vs, &n);
    if (rc == KD_OK && n == 0)
        rc = KD_ENOTFOUND;
    if (rc != KD_OK) {
        missing(res, req->db, rc, ns, key, NULL, 0);
        goto done;
    }
    long to = (long)n - 1, from;
    if (to_ref && (to = resolve_ref(res, "to", to_ref, vs, n)) < 0)
        goto done;
    from = to - 1;
    if (from_ref && (from = resolve_ref(res, "from", from_ref, vs, n)) < 0)
        goto done;
    if (state_value(req->db, res, vs, from, !from_ref, &a, &alen) != KD_OK ||
        state_value(req->db, res, vs, to, 0, &b, &blen) != KD_OK)
        goto done;
    ks_buf out = {0};
    ks_buf_add(&out, "{\"from\":", 8);
    if (from >= 0)
        ks_buf_printf(&out, "\"%s\"", vs[from].write_id);
    else
        ks_buf_add(&out, "null", 4);
    ks_buf_printf(&out, ",\"to\":\"%s\",\"patch\":", vs[to].write_id);
    if (a && b) {
        char err[512];
        rc = kd_json_diff(a, alen, b, blen, &patch, &plen, err, sizeof err);
        if (rc != KD_OK) {
            free(out.p);
            ks_error(res, 500, "internal", "cannot compute the diff: %s", err);
            goto done;
        }
        ks_buf_add(&out, patch, plen);
    } else if (b) {
        ks_buf_add(&out, "[{\"op\":\"add\",\"path\":\"\",\"value\":", 31);
        ks_buf_add(&out, b, blen);
        ks_buf_add(&out, "}]", 2);
    } else if (a) {
        ks_buf_add(&out, "[{\"op\":\"remove\",\"path\":\"\"}]", 27);
    } else {
        ks_buf_add(&out, "[]", 2);
    }
    ks_buf_add(&out, "}", 1);
    ks_reply(res, 200, &out);
done:
    kd_free(patch);
    kd_free(a);
    kd_free(b);
    kd_free(vs);
    return 0;
}

/* ------------------------------------------------------------------------
 * Atomic batches
 * ---------------------------------------------------------------------- */

/* POST /api/v1/batch {"writes":[W, …]} with each W
 *   {"namespace":S, "key":S, "value":ANY}                 a put
 *   {"namespace":S, "key":S, "delete":true}                a delete ("value" absent or null)
 * plus optionally "if_match":"<write_id>" (the key's current write_id must
 * be that) or "if_none_match":"*" (the key must have no value). All writes
 * apply or none (kd_put_batch); the answer is {"versions":[records…]} in
 * the order of the writes. Errors name the index of the failing write. */
struct bw {
    char *ns, *key;
    char expect[KD_ID_HEX];
    enum { BW_ANY, BW_ID, BW_ABSENT } cond;
};

static int h_batch(ks_request *req, ks_response *res)
{
    char *canon = NULL;
    size_t clen = 0;
    char err[512];
    kd_write *ws = NULL;
    struct bw *bw = NULL;
    kd_version *out = NULL;
    size_t n = 0, cap = 0;
    int rc = kd_json_canonical(req->body, req->body_len, &canon, &clen, err, sizeof err);
    if (rc != KD_OK) {
        ks_error(res, 400, "invalid", "body: %s", err);
        return 0;
    }
    jiter top, arr, obj;
    const char *name, *val, *writes = NULL;
    size_t nlen, vlen, wlen = 0;
    if (!jiter_open(&top, canon, clen, '{')) {
        ks_error(res, 400, "invalid", "body: expected an object {\"writes\": [...]}");
        goto done;
    }
    while (jiter_next(&top, &name, &nlen, &val, &vlen)) {
        if (!lit_is(name, nlen, "\"writes\"")) {
            ks_error(res, 400, "invalid", "body: unknown member %.*s (expected \"writes\")", (int)(nlen < 100 ? nlen : 100),
                     name);
            goto done;
        }
        writes = val;
        wlen = vlen;
    }
    if (!writes || !jiter_open(&arr, writes, wlen, '[')) {
        ks_error(res, 400, "invalid", "body: \"writes\" must be an array of writes");
        goto done;
    }
    while (jiter_next(&arr, &name, &nlen, &val, &vlen)) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            ws = ks_xrealloc(ws, cap * sizeof *ws);
            bw = ks_xrealloc(bw, cap * sizeof *bw);
        }
        kd_write *w = &ws[n];
        struct bw *x = &bw[n];
        memset(w, 0, sizeof *w);
        memset(x, 0, sizeof *x);
        n++;
        size_t i = n - 1;
        if (!jiter_open(&obj, val, vlen, '{')) {
            ks_error(res, 400, "invalid", "writes[%zu]: expected an object", i);
            goto done;
        }
        const char *value = NULL;
        size_t value_len = 0;
        int del = 0, has_del = 0, has_im = 0, has_inm = 0;
        const char *mname, *mval;
        size_t mnlen, mvlen;
        while (jiter_next(&obj, &mname, &mnlen, &mval, &mvlen)) {
            if (lit_is(mname, mnlen, "\"namespace\"") || lit_is(mname, mnlen, "\"key\"")) {
                int is_ns = mname[1] == 'n';
                char *s = junquote(mval, mvlen);
                if (!s) {
                    ks_error(res, 400, "invalid", "writes[%zu]: \"%s\" must be a string (without U+0000)", i,
                             is_ns ? "namespace" : "key");
                    goto done;
                }
                free(is_ns ? x->ns : x->key);
                *(is_ns ? &x->ns : &x->key) = s;
            } else if (lit_is(mname, mnlen, "\"value\"")) {
                value = mval;
                value_len = mvlen;
            } else if (lit_is(mname, mnlen, "\"delete\"")) {
                if (!lit_is(mval, mvlen, "true") && !lit_is(mval, mvlen, "false")) {
                    ks_error(res, 400, "invalid", "writes[%zu]: \"delete\" must be true or false", i);
                    goto done;
                }
                has_del = 1;
                del = mval[0] == 't';
            } else if (lit_is(mname, mnlen, "\"if_match\"")) {
                if (lit_is(mval, mvlen, "null"))
                    continue;
                if (mvlen != 66 || mval[0] != '"' || !is_hex_id(mval + 1, 64)) {
                    ks_error(res, 400, "invalid", "writes[%zu]: \"if_match\" must be a write_id (64 hex digits)", i);
                    goto done;
                }
                copy_id(x->expect, mval + 1);
                has_im = 1;
            } else if (lit_is(mname, mnlen, "\"if_none_match\"")) {
                if (lit_is(mval, mvlen, "null"))
                    continue;
                if (!lit_is(mval, mvlen, "\"*\"")) {
                    ks_error(res, 400, "invalid", "writes[%zu]: \"if_none_match\" must be \"*\" (the key has no value)",
                             i);
                    goto done;
                }
                has_inm = 1;
            } else {
                ks_error(res, 400, "invalid",
                         "writes[%zu]: unknown member %.*s (expected namespace, key, value, delete, if_match, "
                         "if_none_match)",
                         i, (int)(mnlen < 100 ? mnlen : 100), mname);
                goto done;
            }
        }
        (void)has_del;
        if (!x->ns || !x->key) {
            ks_error(res, 400, "invalid", "writes[%zu]: \"namespace\" and \"key\" are required", i);
            goto done;
        }
        if (has_im && has_inm) {
            ks_error(res, 400, "invalid", "writes[%zu]: give \"if_match\" or \"if_none_match\", not both", i);
            goto done;
        }
        if (del && value && !lit_is(value, value_len, "null")) {
            ks_error(res, 400, "invalid", "writes[%zu]: a delete has no value", i);
            goto done;
        }
        if (!del && !value) {
            ks_error(res, 400, "invalid", "writes[%zu]: \"value\" is missing (or \"delete\": true for a delete)", i);
            goto done;
        }
        w->ns = x->ns;
        w->key = x->key;
        if (!del) {
            w->json = value;
            w->len = value_len;
        }
        x->cond = has_im ? BW_ID : has_inm ? BW_ABSENT : BW_ANY;
    }
    /* Only now: bw may have moved while it grew. */
    for (size_t i = 0; i < n; i++)
        ws[i].expect = bw[i].cond == BW_ID ? bw[i].expect : bw[i].cond == BW_ABSENT ? KD_EXPECT_ABSENT : NULL;
    if (arr.bad) {
        ks_error(res, 400, "invalid", "body: \"writes\" is not a well-formed array");
        goto done;
    }
    /* A name over its length limit is 400 too_big; it is looked for in
     * every write first, so that a too_big from the library is about the
     * values (or the batch's size): 413, as for a single PUT. */
    for (size_t i = 0; i < n; i++) {
        char why[256];
        if (kd_check_name(ws[i].ns, ws[i].key, why, sizeof why) == KD_ETOOBIG) {
            if (n > 1)
                ks_error(res, 400, "too_big", "batch write %zu: %s", i, why);
            else
                ks_error(res, 400, "too_big", "%s", why);
            goto done;
        }
    }
    out = ks_xmalloc((n ? n : 1) * sizeof *out);
    rc = n ? kd_put_batch(req->db, ws, n, out) : KD_OK;
    if (rc != KD_OK) {
        switch (rc) {
        case KD_ENOTFOUND: ks_error(res, 404, "not_found", "%s", kd_errmsg(req->db)); break;
        case KD_EDELETED: ks_error(res, 404, "deleted", "%s", kd_errmsg(req->db)); break;
        case KD_ETOOBIG: ks_error(res, 413, "too_big", "%s", kd_errmsg(req->db)); break;
        default: ks_kd_error(res, req->db, rc);
        }
        goto done;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"versions\":[", 13);
    for (size_t i = 0; i < n && rc == KD_OK; i++) {
        if (i)
            ks_buf_add(&b, ",", 1);
        rc = add_record(&b, ws[i].ns, ws[i].key, ws[i].json, ws[i].len, &out[i]);
    }
    if (rc != KD_OK) {
        free(b.p);
        ks_kd_error(res, NULL, rc);
        goto done;
    }
    ks_buf_add(&b, "]}", 2);
    ks_reply(res, 200, &b);
done:
    for (size_t i = 0; i < n; i++) {
        free(bw[i].ns);
        free(bw[i].key);
    }
    free(bw);
    free(ws);
    free(out);
    kd_free(canon);
    return 0;
}

/* ------------------------------------------------------------------------
 * The change stream: GET /api/v1/watch (Server-Sent Events)
 *
 * Query: ns, key (needs ns), types (insert,update,delete), filter (text
 * form), queue (events held for a slow client, default the library's
 * 10,000), and where to resume: the Last-Event-ID header or ?last_event_id=.
 * Each event is
 *     id: <timestamp of the write, ns>
 *     event: insert|update|delete
 *     data: {"type","namespace","key","value","previous_value","version":
 *            {"version_id","write_id","previous_write_id","timestamp","deleted"}}
 * (the same line as `kdelta watch --json`), or, when the subscription's
 * queue overflowed, "event: missed" with {"type":"missed","missed":N} and
 * the id of the last event delivered before the gap: reconnecting with it
 * replays the gap from the log. The stream opens with a comment and an
 * "id:" line without data (the point where it starts, so even a client that
 * saw no event can resume), and carries ": ping" comments every 15 s.
 *
 * Resuming without loss or doubles. The subscription is made first; only
 * then is the log replayed (kd_changes, since = the given id, the same
 * choice of events). The replay runs in its own thread, which hands SSE
 * text to the connection through a bounded buffer (so a long replay holds
 * neither the connection's thread nor unbounded memory). Afterwards live
 * events with a timestamp at or below the last one delivered are skipped.
 * One gap remains: a write whose commit ran before the subscription but
 * that became visible (durable) only after the replay began (or, for a
 * stream without Last-Event-ID, after its starting point) is in neither.
 * It is closed by one more pass over the log (since = last delivered) when
 * the first live event arrives — by then every earlier write is visible,
 * since events are delivered in timestamp order once visible — and, if
 * the stream is idle, once after a second.
 *
 * Replayed events. kd_changes gives the write, not the event: the type
 * and the previous value are found by reading the key's version before
 * this one (kd_history up to timestamp-1, then kd_get_value). So a key
 * written again after a delete is an insert, as live; a delete's filter
 * is matched against the value it removed, as live.
 * ---------------------------------------------------------------------- */

#define WATCH_BUF_CAP ((size_t)1 << 20)     /* replay text waiting for the connection */
#define WATCH_CHUNK ((size_t)256 << 10)     /* bytes handed over per stream call */
#define WATCH_PING_NS (15 * (int64_t)1000000000)
#define WATCH_WAIT_MS 1000
#define WATCH_QUEUE_MAX 1000000
#define REPLAY_LIMIT 1 /* kd_changes callback: reached the limit */
#define REPLAY_STOP 2  /* kd_changes callback: the stream is closing */

typedef struct watch {
    kd_db *db;
    uint64_t sub;
    char *ns, *key;
    unsigned types;
    kd_filter *filter;
    void *auth;       /* with --auth: the caller's rights (ks_auth_copy); events it may not read are skipped */
    int64_t last;     /* timestamp of the last event delivered (or the start) */
    int64_t start;    /* the start (live: the last visible write when it opened) */
    int64_t start_id; /* the id that names the start to the client (see h_watch) */
    int hello;        /* the opening lines were sent */
    int catchup_live; /* pass over the log due at the first live event */
    int catchup_idle; /* … or after a quiet second */
    int64_t last_out; /* monotonic ns of the last bytes sent */
    /* Replay thread. */
    int replaying;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* data came, space freed, done, stop */
    ks_buf rbuf;
    int done, stop, rc;
    int64_t since, replay_last;
    char errmsg[512];
} watch;

typedef struct replay {
    watch *w;
    int64_t last, limit;
    ks_buf *out; /* direct passes write here; the thread uses w->rbuf */
    int threaded;
} replay;

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static const char *event_name(unsigned type)
{
    return type == KD_EVENT_INSERT ? "insert" : type == KD_EVENT_UPDATE ? "update" : type == KD_EVENT_DELETE ? "delete"
                                                                                                            : "missed";
}

static void add_json_or_null(ks_buf *b, const char *json, size_t len)
{
    if (json)
        ks_buf_add(b, json, len);
    else
        ks_buf_add(b, "null", 4);
}

/* One SSE event for a write. */
static void add_event(ks_buf *b, unsigned type, const char *ns, const char *key, const char *value, size_t vlen,
                      const char *prev, size_t plen, const kd_version *v)
{
    char t[48];
    if (kd_time_format(v->timestamp, t, sizeof t) != KD_OK)
        snprintf(t, sizeof t, "@%" PRId64, v->timestamp);
    ks_buf_printf(b, "id: %" PRId64 "\nevent: %s\ndata: {\"type\":\"%s\",\"namespace\":", v->timestamp,
                  event_name(type), event_name(type));
    ks_json_string(b, ns, strlen(ns));
    ks_buf_add(b, ",\"key\":", 7);
    ks_json_string(b, key, strlen(key));
    ks_buf_add(b, ",\"value\":", 9);
    add_json_or_null(b, value, vlen);
    ks_buf_add(b, ",\"previous_value\":", 18);
    add_json_or_null(b, prev, plen);
    ks_buf_add(b, ",\"version\":{\"version_id\":", 25);
    if (v->deleted || !v->version_id[0])
        ks_buf_add(b, "null", 4);
    else
        ks_buf_printf(b, "\"%s\"", v->version_id);
    ks_buf_printf(b, ",\"write_id\":\"%s\",\"previous_write_id\":", v->write_id);
    if (v->previous_write_id[0])
        ks_buf_printf(b, "\"%s\"", v->previous_write_id);
    else
        ks_buf_add(b, "null", 4);
    ks_buf_printf(b, ",\"timestamp\":\"%s\",\"deleted\":%s", t, v->deleted ? "true" : "false");
    if (v->pruned) /* replayed: its value is gone (as a history lists it) */
        ks_buf_printf(b, ",\"pruned_by\":\"%s\",\"pruned\":true",
                      v->pruned == KD_PRUNED_WORKSPACE ? "workspace_drop" : "retention");
    ks_buf_add(b, "}}\n\n", 4);
}

static void add_error_event(ks_buf *b, int rc, const char *msg)
{
    char code[32];
    ks_buf_add(b, "event: error\ndata: {\"error\":{\"code\":", 36);
    const char *c = ks_kd_code(rc, code, sizeof code);
    ks_json_string(b, c, strlen(c));
    ks_buf_add(b, ",\"message\":", 11);
    ks_json_string(b, msg, strlen(msg));
    ks_buf_add(b, "}}\n\n", 4);
}

/* kd_changes callback: turn a write into an event of this watch, if it
 * wants it. */
static int replay_cb(void *ctx, const kd_change *c)
{
    replay *r = ctx;
    watch *w = r->w;
    const kd_version *v = &c->version;
    if (v->timestamp >= r->limit)
        return REPLAY_LIMIT;
    if (r->threaded && __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE))
        return REPLAY_STOP;
    if (v->timestamp <= r->last || (w->key && strcmp(c->key, w->key) != 0))
        return 0;
    if (w->auth && !ks_may_copy(w->auth, c->ns, c->key, KD_PERM_READ))
        return 0;

    /* Type and previous value from the version before this one. */
    unsigned type = v->deleted ? KD_EVENT_DELETE : KD_EVENT_INSERT;
    char *prev = NULL;
    size_t plen = 0;
    if (v->previous_write_id[0]) {
        kd_version *pv = NULL;
        size_t n = 0;
        if (kd_history(w->db, c->ns, c->key, KD_TIME_MIN, v->timestamp - 1, 1, KD_HISTORY_NEWEST_FIRST, &pv, &n) ==
                KD_OK &&
            n == 1) {
            if (!pv[0].deleted && pv[0].pruned != KD_PRUNED_WORKSPACE) {
                if (!v->deleted)
                    type = KD_EVENT_UPDATE;
                if (kd_get_value(w->db, pv[0].version_id, &prev, &plen) != KD_OK)
                    prev = NULL, plen = 0;
            }
        } else if (!v->deleted) {
            type = KD_EVENT_UPDATE; /* cannot tell: a parent exists */
        }
        kd_free(pv);
    }
    int want = (w->types & type) != 0;
    /* A put whose value a compaction removed (or that went with its
     * dropped workspace) cannot be matched any more: it is given marked
     * pruned whatever the filter, so a resumed stream says which writes it
     * cannot show rather than leaving them out without a word. */
    if (want && w->filter && !(v->pruned && !v->deleted)) {
        const char *fv = c->value ? c->value : prev;
        size_t flen = c->value ? c->value_len : plen;
        want = fv && kd_filter_match(w->filter, fv, flen) == 1;
    }
    if (!want) {
        kd_free(prev);
        return 0;
    }
    if (!r->threaded) {
        add_event(r->out, type, c->ns, c->key, c->value, c->value_len, prev, plen, v);
        kd_free(prev);
        r->last = v->timestamp;
        return 0;
    }
    ks_buf ev = {0};
    add_event(&ev, type, c->ns, c->key, c->value, c->value_len, prev, plen, v);
    kd_free(prev);
    pthread_mutex_lock(&w->mu);
    while (w->rbuf.len >= WATCH_BUF_CAP && !w->stop)
        pthread_cond_wait(&w->cv, &w->mu);
    int stop = w->stop;
    if (!stop) {
        ks_buf_add(&w->rbuf, ev.p, ev.len);
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    free(ev.p);
    if (stop)
        return REPLAY_STOP;
    r->last = v->timestamp;
    return 0;
}

static void *replay_main(void *arg)
{
    watch *w = arg;
    replay r = {w, w->since, INT64_MAX, NULL, 1};
    int rc = kd_changes_ex(w->db, w->ns, w->since, KD_CHANGES_PRUNED, replay_cb, &r);
    pthread_mutex_lock(&w->mu);
    if (rc < 0)
        snprintf(w->errmsg, sizeof w->errmsg, "replaying the log: %s", kd_errmsg(w->db)[0] ? kd_errmsg(w->db) : kd_strerror(rc));
    w->rc = rc < 0 ? rc : KD_OK;
    w->replay_last = r.last;
    w->done = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* One pass over the log from the last event delivered, in the
 * connection's thread, up to (not including) timestamp `limit`. */
static void catch_up(watch *w, int64_t limit, ks_buf *b)
{
    replay r = {w, w->last, limit, b, 0};
    int rc = kd_changes_ex(w->db, w->ns, w->last, KD_CHANGES_PRUNED, replay_cb, &r);
    if (rc < 0)
        ks_log(KD_LOG_WARN, "watch: catching up from the log failed: %s", kd_strerror(rc));
    w->last = r.last;
}

/* The id of the stream's position as the client may see it: the last
 * event it was sent, or the id of the start. */
static int64_t shown_id(const watch *w)
{
    return w->last == w->start ? w->start_id : w->last;
}

/* Deliver one live event (skipping what the log already gave). */
static void live_event(watch *w, const kd_event *ev, ks_buf *b)
{
    if (ev->type == KD_EVENT_MISSED) {
        ks_buf_printf(b, "id: %" PRId64 "\nevent: missed\ndata: {\"type\":\"missed\",\"missed\":%" PRIu64 "}\n\n",
                      shown_id(w), ev->missed);
        return;
    }
    int64_t ts = ev->version.timestamp;
    if (ts <= w->last)
        return;
    if (w->catchup_live) {
        w->catchup_live = w->catchup_idle = 0;
        catch_up(w, ts, b);
        if (ts <= w->last)
            return;
    }
    if (w->auth && !ks_may_copy(w->auth, ev->ns, ev->key, KD_PERM_READ))
        return;
    add_event(b, ev->type, ev->ns, ev->key, ev->value, ev->value_len, ev->prev_value, ev->prev_len, &ev->version);
    w->last = ts;
}

static int watch_stream(void *ctx, char **out, size_t *len)
{
    watch *w = ctx;
    ks_buf b = {0};
    int end = 0;
    if (!w->hello) {
        w->hello = 1;
        ks_buf_printf(&b, ": kdelta watch\nid: %" PRId64 "\n\n", shown_id(w));
        goto give;
    }
    if (ks_stopping()) {
        end = 1;
        goto give;
    }
    if (w->replaying) {
        pthread_mutex_lock(&w->mu);
        if (!w->rbuf.len && !w->done) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += WATCH_WAIT_MS / 1000;
            pthread_cond_timedwait(&w->cv, &w->mu, &until);
        }
        b = w->rbuf;
        memset(&w->rbuf, 0, sizeof w->rbuf);
        int done = w->done;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        if (done) {
            pthread_join(w->thread, NULL);
            w->replaying = 0;
            if (w->rc != KD_OK) {
                add_error_event(&b, w->rc, w->errmsg);
                end = 1;
            } else {
                w->last = w->replay_last;
                w->catchup_live = w->catchup_idle = 1;
            }
        }
        goto give;
    }
    kd_event ev;
    memset(&ev, 0, sizeof ev);
    int rc = kd_sub_next(w->db, w->sub, WATCH_WAIT_MS, &ev);
    for (size_t count = 0; rc == KD_OK; count++) {
        live_event(w, &ev, &b);
        kd_event_clear(&ev);
        if (b.len >= WATCH_CHUNK || count >= 1000)
            break;
        rc = kd_sub_next(w->db, w->sub, 0, &ev);
    }
    if (rc == KD_ETIMEOUT && w->catchup_idle && !b.len) {
        w->catchup_idle = 0;
        catch_up(w, INT64_MAX, &b);
    } else if (rc != KD_OK && rc != KD_ETIMEOUT) {
        /* KD_ENOTFOUND: the subscription is gone (database closing). */
        if (rc != KD_ENOTFOUND)
            add_error_event(&b, rc, kd_strerror(rc));
        end = 1;
    }
give:
    /* A session that expired or logged out ends the stream, saying so:
     * skipping every event from then on would look like a quiet one. */
    if (!end && w->auth && !ks_auth_copy_valid(w->auth)) {
        static const char gone[] = "event: error\ndata: {\"error\":{\"code\":\"unauthorized\",\"message\":"
                                   "\"the session of this watch ended (it expired or logged out): log in again\"}}\n\n";
        ks_buf_add(&b, gone, sizeof gone - 1);
        end = 1;
    }
    if (!b.len && !end && mono_ns() - w->last_out >= WATCH_PING_NS)
        ks_buf_add(&b, ": ping\n\n", 8);
    if (b.len) {
        *out = ks_xrealloc(*out, *len + b.len + 1);
        memcpy(*out + *len, b.p, b.len);
        *len += b.len;
        (*out)[*len] = '\0';
        w->last_out = mono_ns();
    }
    free(b.p);
    return end;
}

static void watch_free(void *ctx)
{
    watch *w = ctx;
    if (!w)
        return;
    if (w->replaying) {
        pthread_mutex_lock(&w->mu);
        __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    if (w->sub) {
        kd_unsubscribe(w->db, w->sub);
        ks_metrics_subscriptions(-1);
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->rbuf.p);
    kd_filter_free(w->filter);
    ks_auth_copy_free(w->auth);
    free(w->ns);
    free(w->key);
    free(w);
}

/* types=insert,update,delete → KD_EVENT_* bits; 0 after an error response. */
static unsigned parse_types(ks_response *res, const char *s)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"insert", KD_EVENT_INSERT}, {"update", KD_EVENT_UPDATE}, {"delete", KD_EVENT_DELETE}};
    unsigned mask = 0;
    for (const char *p = s;;) {
        size_t l = strcspn(p, ","), i = 0;
        const char *item = p;
        size_t il = l;
        while (il && (*item == ' ' || *item == '\t')) /* blanks around items are dropped, as in a query's lists */
            item++, il--;
        while (il && (item[il - 1] == ' ' || item[il - 1] == '\t'))
            il--;
        while (i < 3 && !(strlen(names[i].name) == il && memcmp(names[i].name, item, il) == 0))
            i++;
        if (i == 3) {
            ks_error(res, 400, "invalid", "types: unknown event type '%.*s' (use insert, update, delete, separated by commas)",
                     (int)(l < 100 ? l : 100), p);
            return 0;
        }
        mask |= names[i].bit;
        if (!p[l])
            return mask;
        p += l + 1;
    }
}

/* The newest write the caller may read of the stream's scope, at most
 * `upto`: of key, of namespace ns (the gate asked for all of it), or of
 * every namespace of the workspace it may read whole. */
static int64_t readable_newest(ks_request *req, const char *ns, const char *key, int64_t upto)
{
    int64_t newest = 0, t = 0;
    if (ns) {
        if (kd_newest_write(req->db, ns, key, upto, &t) == KD_OK)
            newest = t;
    } else {
        char **names = NULL;
        size_t n = 0;
        if (kd_list_namespaces(req->db, &names, &n) == KD_OK)
            for (size_t i = 0; i < n; i++)
                if (ks_may(req, names[i], NULL, KD_PERM_READ) &&
                    kd_newest_write(req->db, names[i], NULL, upto, &t) == KD_OK && t > newest)
                    newest = t;
        kd_free_list(names, n);
    }
    return newest;
}

static int h_watch(ks_request *req, ks_response *res)
{
    watch *w = ks_xmalloc(sizeof *w);
    memset(w, 0, sizeof *w);
    w->db = req->db;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    const char *ns = ks_param(req, "ns"), *key = ks_param(req, "key"), *types = ks_param(req, "types");
    const char *filter = ks_param(req, "filter");
    const char *lei = ks_header(req, "Last-Event-ID"), *lei_name = "Last-Event-ID";
    if (!lei || !*lei) {
        lei = ks_param(req, "last_event_id");
        lei_name = "last_event_id (Last-Event-ID)";
    }
    uint64_t queue = 0;
    int resume = 0, whole_db = ks_may_database(req);
    if (ks_uint_param(req, res, "queue", 1, WATCH_QUEUE_MAX, &queue) < 0)
        goto fail;
    if (types && !(w->types = parse_types(res, types)))
        goto fail;
    if (filter) {
        char err[512];
        if (kd_filter_parse(filter, &w->filter, err, sizeof err) != KD_OK) {
            ks_error(res, 400, "invalid", "filter: %s", err);
            goto fail;
        }
    }
    if (lei) {
        /* The id of an event this database sent: 0 up to its newest write.
         * A later one would hide every live event until the clock passed
         * it, so it is refused like a malformed one; but not for a caller
         * who may not read the whole database, whom the refusal would tell
         * when the database was last written: its stream resumes from the
         * id it gave, as any other. */
        const char *p = lei;
        int ok = *p && strlen(p) <= 19;
        for (; ok && *p; p++)
            ok = *p >= '0' && *p <= '9';
        errno = 0;
        long long v = ok ? strtoll(lei, NULL, 10) : 0;
        if (!ok || errno) {
            ks_error(res, 400, "invalid",
                     "%s: expected the id of an event (its timestamp in nanoseconds, a whole number from 0)", lei_name);
            goto fail;
        }
        kd_stats s;
        int src = kd_stats_get(req->db, &s);
        if (src != KD_OK) {
            ks_kd_error(res, req->db, src);
            goto fail;
        }
        if ((int64_t)v > s.last_timestamp && whole_db) {
            ks_error(res, 400, "invalid",
                     "%s: %lld is after the newest event of this database (%" PRId64
                     "); resume with the id of an event this server sent",
                     lei_name, v, s.last_timestamp);
            goto fail;
        }
        w->since = (int64_t)v;
        resume = 1;
    }
    w->ns = ns ? ks_xstrdup(ns) : NULL;
    w->auth = ks_auth_copy(req);
    w->key = key ? ks_xstrdup(key) : NULL;
    if (!w->types)
        w->types = KD_EVENT_ALL;
    kd_sub_options o = {w->ns, w->key, w->types, w->filter, (size_t)queue};
    int rc = kd_subscribe(req->db, &o, &w->sub);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        goto fail;
    }
    ks_metrics_subscriptions(1);
    if (resume) {
        w->last = w->start = w->start_id = w->since;
        w->replaying = 1;
        if (pthread_create(&w->thread, NULL, replay_main, w) != 0) {
            w->replaying = 0;
            ks_error(res, 503, "busy", "cannot start a thread to replay the log");
            goto fail;
        }
    } else {
        /* Live only: from the last visible write. A write committed
         * before the subscription but not yet durable (sync=always) is
         * after that point and not queued: the same gap as a resume's,
         * closed the same way (one pass over the log at the first live
         * event, or after a quiet second). */
        kd_stats s;
        int src = kd_stats_get(req->db, &s);
        if (src != KD_OK) { /* no starting point: the catch-up would replay the whole log */
            ks_kd_error(res, req->db, src);
            goto fail;
        }
        w->last = w->start = w->start_id = s.last_timestamp;
        w->catchup_live = w->catchup_idle = 1;
        /* The database's last write tells of every workspace's writes
         * (and logins): a caller who may not read the whole database is
         * told the newest write it may read instead. Resuming from there
         * misses nothing; it may give again events from before the
         * stream began, in namespaces it may read only in part. */
        if (!whole_db)
            w->start_id = readable_newest(req, ns, key, s.last_timestamp);
    }
    w->last_out = mono_ns();
    res->status = 200;
    res->content_type = "text/event-stream";
    res->stream = watch_stream;
    res->stream_free = watch_free;
    res->stream_ctx = w;
    return 0;
fail:
    watch_free(w);
    return 0;
}

/* ------------------------------------------------------------------------
 * The table
 * ---------------------------------------------------------------------- */

const ks_route ks_routes_keys[] = {
    {"GET", "api/v1/status", h_status, "status"},
    {"GET", "api/v1/namespaces", h_namespaces, "namespaces"},
    {"GET", "api/v1/namespaces/{ns}/keys", h_keys, "keys_list"},
    {"GET", "api/v1/namespaces/{ns}/keys/{key}", h_get, "key_get"},
    {"PUT", "api/v1/namespaces/{ns}/keys/{key}", h_put, "key_put"},
    {"DELETE", "api/v1/namespaces/{ns}/keys/{key}", h_delete, "key_delete"},
    {"GET", "api/v1/namespaces/{ns}/keys/{key}/history", h_history, "key_history"},
    {"GET", "api/v1/namespaces/{ns}/keys/{key}/diff", h_diff, "key_diff"},
    {"POST", "api/v1/batch", h_batch, "batch"},
    {"GET", "api/v1/watch", h_watch, "watch"},
    /* the same in workspace {ws} (DESIGN.md §2): http.c runs them on its handle */
    {"GET", "api/v1/ws/{ws}/status", h_status, "status"},
    {"GET", "api/v1/ws/{ws}/namespaces", h_namespaces, "namespaces"},
    {"GET", "api/v1/ws/{ws}/namespaces/{ns}/keys", h_keys, "keys_list"},
    {"GET", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}", h_get, "key_get"},
    {"PUT", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}", h_put, "key_put"},
    {"DELETE", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}", h_delete, "key_delete"},
    {"GET", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}/history", h_history, "key_history"},
    {"GET", "api/v1/ws/{ws}/namespaces/{ns}/keys/{key}/diff", h_diff, "key_diff"},
    {"POST", "api/v1/ws/{ws}/batch", h_batch, "batch"},
    {"GET", "api/v1/ws/{ws}/watch", h_watch, "watch"},
    {NULL, NULL, NULL, NULL},
};
