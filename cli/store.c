/*
 * store.c — keys, listings, status and verify, locally or on a server
 * (see store.h). Each remote variant makes the request the HTTP API
 * documents for it (docs/HTTP.md) and reads the answer back into the
 * library's structures.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote.h"
#include "store.h"

const char *st_errmsg(struct cli *c)
{
    if (c->remote)
        return remote_errmsg(c->remote);
    return c->db ? kd_errmsg(c->db) : "";
}

static char *key_path(const char *ns, const char *key)
{
    return remote_path("api/v1/namespaces/%s/keys/%s", ns, key);
}

/* One record answer into *meta and, when json is not NULL, its value. */
static int read_record(struct cli *c, const char *ans, size_t alen, kd_version *meta, char **json, size_t *len)
{
    kd_version v;
    const char *val;
    size_t vl;
    if (rj_record(c->remote, ans, alen, &v, &val, &vl) != KD_OK)
        return remote_bad_answer(c->remote, "a version record");
    if (meta)
        *meta = v;
    if (json) {
        *json = xmalloc(vl + 1);
        memcpy(*json, val ? val : "", vl);
        (*json)[vl] = '\0';
        *len = vl;
    }
    return KD_OK;
}

int st_put(struct cli *c, const char *ns, const char *key, const char *json, size_t len, kd_version *out)
{
    if (!c->remote)
        return kd_put(c->db, ns, key, json, len, out);
    char *path = key_path(ns, key), *ans = NULL;
    size_t alen;
    int rc = remote_call(c->remote, "PUT", path, json, len, &ans, &alen);
    if (rc == KD_OK)
        rc = read_record(c, ans, alen, out, NULL, NULL);
    free(path);
    free(ans);
    return rc;
}

/* The tombstone a deleted key's read found (meta of KD_EDELETED, as the
 * library gives it): the newest version at or before `at`. */
static void deleted_meta(struct cli *c, const char *ns, const char *key, int64_t at, kd_version *meta)
{
    kd_version *vs = NULL;
    size_t n = 0;
    if (st_history(c, ns, key, KD_TIME_MIN, at, 1, KD_HISTORY_NEWEST_FIRST, &vs, &n) == KD_OK && n == 1 &&
        vs[0].deleted)
        *meta = vs[0];
    kd_free(vs);
}

static int remote_get(struct cli *c, const char *ns, const char *key, const int64_t *at, char **json, size_t *len,
                      kd_version *meta)
{
    char *path = key_path(ns, key), *ans = NULL;
    size_t alen;
    if (at)
        remote_time_param(&path, "at", *at);
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen);
    if (rc == KD_OK) {
        rc = read_record(c, ans, alen, meta, json, len);
    } else if (rc == KD_EDELETED && meta) {
        deleted_meta(c, ns, key, at ? *at : KD_TIME_MAX, meta);
    }
    free(path);
    free(ans);
    return rc;
}

int st_get(struct cli *c, const char *ns, const char *key, char **json, size_t *len, kd_version *meta)
{
    if (!c->remote)
        return kd_get(c->db, ns, key, json, len, meta);
    return remote_get(c, ns, key, NULL, json, len, meta);
}

int st_get_at(struct cli *c, const char *ns, const char *key, int64_t ts, char **json, size_t *len,
              kd_version *meta)
{
    if (!c->remote)
        return kd_get_at(c->db, ns, key, ts, json, len, meta);
    return remote_get(c, ns, key, &ts, json, len, meta);
}

int st_get_value(struct cli *c, const char *version_id, char **json, size_t *len)
{
    if (!c->remote)
        return kd_get_value(c->db, version_id, json, len);
    return remote_value(c->remote, version_id, json, len);
}

int st_delete(struct cli *c, const char *ns, const char *key, kd_version *out)
{
    if (!c->remote)
        return kd_delete(c->db, ns, key, out);
    char *path = key_path(ns, key), *ans = NULL;
    size_t alen;
    int rc = remote_call(c->remote, "DELETE", path, NULL, 0, &ans, &alen);
    if (rc == KD_OK)
        rc = read_record(c, ans, alen, out, NULL, NULL);
    free(path);
    free(ans);
    return rc;
}

/* The version record of a key's history answer (its value kept for
 * st_get_value). */
static int read_history_record(struct cli *c, const char *rec, size_t len, kd_version *v)
{
    return rj_record(c->remote, rec, len, v, NULL, NULL);
}

void st_history_params(char **path, int64_t from, int64_t to, size_t limit, unsigned flags)
{
    if (from != KD_TIME_MIN)
        remote_time_param(path, "from", from);
    if (to != KD_TIME_MAX)
        remote_time_param(path, "to", to);
    if (limit) {
        char l[32];
        snprintf(l, sizeof l, "%zu", limit);
        remote_param(path, "limit", l);
    }
    if (flags & KD_HISTORY_NEWEST_FIRST)
        remote_param(path, "order", "desc");
}

int st_remote_history(struct cli *c, char *path, int64_t from, int64_t to, size_t limit, unsigned flags,
                      st_record_fn read, const char *what, kd_version **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char *ans = NULL;
    size_t alen;
    st_history_params(&path, from, to, limit, flags);
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen);
    const char *list;
    size_t llen;
    if (rc == KD_OK && !rj_member(ans, alen, "versions", &list, &llen))
        rc = remote_bad_answer(c->remote, what);
    if (rc == KD_OK) {
        size_t pos = 0, cap = 0;
        const char *rec;
        size_t rlen;
        while (rc == KD_OK && kd_json_next(list, llen, &pos, NULL, NULL, &rec, &rlen) == 1) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 16;
                *out = xrealloc(*out, cap * sizeof **out);
            }
            if ((rc = read(c, rec, rlen, &(*out)[*n])) == KD_OK)
                (*n)++;
            else
                rc = remote_bad_answer(c->remote, what);
        }
    }
    if (rc != KD_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    free(path);
    free(ans);
    return rc;
}

int st_history(struct cli *c, const char *ns, const char *key, int64_t from, int64_t to, size_t limit,
               unsigned flags, kd_version **out, size_t *n)
{
    if (!c->remote)
        return kd_history(c->db, ns, key, from, to, limit, flags, out, n);
    return st_remote_history(c, remote_path("api/v1/namespaces/%s/keys/%s/history", ns, key), from, to, limit,
                             flags, read_history_record, "a history", out, n);
}

/* GET a listing whose answer holds the string array `member`. */
static int remote_names(struct cli *c, const char *path, const char *member, char ***names, size_t *n,
                        char **next)
{
    char *ans = NULL;
    size_t alen;
    const char *list;
    size_t llen;
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen);
    if (rc == KD_OK && (!rj_member(ans, alen, member, &list, &llen) || rj_string_list(list, llen, names, n)))
        rc = remote_bad_answer(c->remote, "a listing");
    if (rc == KD_OK && next)
        *next = rj_string(ans, alen, "next");
    free(ans);
    return rc;
}

int st_list_namespaces(struct cli *c, char ***names, size_t *n)
{
    if (!c->remote)
        return kd_list_namespaces(c->db, names, n);
    return remote_names(c, "api/v1/namespaces", "namespaces", names, n, NULL);
}

/* The server pages keys (at most this many per answer). */
#define KEYS_PAGE 10000

int st_list_keys(struct cli *c, const char *ns, const char *prefix, const char *start_after, size_t limit,
                 char ***keys, size_t *n)
{
    if (!c->remote)
        return kd_list_keys(c->db, ns, prefix, start_after, limit, keys, n);
    *keys = NULL;
    *n = 0;
    char *after = start_after ? xstrdup(start_after) : NULL;
    int rc = KD_OK;
    for (;;) {
        size_t want = limit ? limit - *n : KEYS_PAGE;
        char l[32], *path = remote_path("api/v1/namespaces/%s/keys", ns), *next = NULL, **page = NULL;
        size_t got = 0;
        snprintf(l, sizeof l, "%zu", want < KEYS_PAGE ? want : KEYS_PAGE);
        remote_param(&path, "limit", l);
        if (prefix && *prefix)
            remote_param(&path, "prefix", prefix);
        if (after)
            remote_param(&path, "after", after);
        rc = remote_names(c, path, "keys", &page, &got, &next);
        free(path);
        if (rc != KD_OK)
            break;
        *keys = xrealloc(*keys, (*n + got + 1) * sizeof **keys);
        if (got) /* an empty page is a NULL list */
            memcpy(*keys + *n, page, got * sizeof *page);
        *n += got;
        free(page);
        free(after);
        after = next;
        if (!after || (limit && *n >= limit))
            break;
    }
    free(after);
    if (rc != KD_OK) {
        kd_free_list(*keys, *n);
        *keys = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- status ------------------------------------------------------------ */

/* The "roots" object of a status answer, in the library's order ("field"
 * last; canonical JSON sorts it in among the others). */
static void read_roots(const char *obj, size_t olen, kd_root **roots, size_t *n)
{
    size_t pos = 0;
    const char *name, *hex;
    size_t nl, hl;
    while (kd_json_next(obj, olen, &pos, &name, &nl, &hex, &hl) == 1) {
        *roots = xrealloc(*roots, (*n + 1) * sizeof **roots);
        kd_root *r = &(*roots)[(*n)++];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%.*s", nl >= 2 ? (int)nl - 2 : 0, name + 1);
        snprintf(r->hex, sizeof r->hex, "%.*s", hl >= 2 ? (int)hl - 2 : 0, hex + 1);
    }
    for (size_t i = 0; i + 1 < *n; i++) {
        if (strcmp((*roots)[i].name, "field") == 0) {
            kd_root field = (*roots)[i];
            memmove(&(*roots)[i], &(*roots)[i + 1], (*n - i - 1) * sizeof **roots);
            (*roots)[*n - 1] = field;
            break;
        }
    }
}

/* The server's "upkeep" array (docs/HTTP.md) back into kd_task_status. */
static void read_upkeep(const char *arr, size_t alen, kd_task_status **tasks, size_t *n)
{
    size_t pos = 0;
    const char *el;
    size_t el_len;
    while (kd_json_next(arr, alen, &pos, NULL, NULL, &el, &el_len) == 1) {
        *tasks = xrealloc(*tasks, (*n + 1) * sizeof **tasks);
        kd_task_status *t = &(*tasks)[(*n)++];
        memset(t, 0, sizeof *t);
        char *name = rj_string(el, el_len, "task"), *msg = rj_string(el, el_len, "message");
        snprintf(t->name, sizeof t->name, "%s", name ? name : "");
        snprintf(t->message, sizeof t->message, "%s", msg ? msg : "");
        free(name);
        free(msg);
        t->runs = rj_u64(el, el_len, "runs");
        t->failures = rj_u64(el, el_len, "failures");
        t->last_run = rj_time(el, el_len, "last_run");
        t->last_duration_ns = (int64_t)rj_u64(el, el_len, "last_duration_us") * 1000;
        char *code = rj_string(el, el_len, "last_status");
        t->last_status = !code || !strcmp(code, "ok") ? KD_OK : remote_status_of_code(code, 500);
        free(code);
    }
}

int st_status(struct cli *c, kd_stats *stats, kd_root **roots, size_t *n_roots, kd_task_status **tasks,
              size_t *n_tasks, char **path)
{
    *roots = NULL;
    *n_roots = 0;
    *tasks = NULL;
    *n_tasks = 0;
    *path = NULL;
    if (!c->remote) {
        int rc = kd_stats_get(c->db, stats);
        if (rc == KD_OK)
            rc = kd_roots(c->db, roots, n_roots);
        if (rc == KD_OK)
            rc = kd_upkeep_status(c->db, tasks, n_tasks);
        if (rc == KD_OK)
            *path = xstrdup(c->path);
        return rc;
    }
    char *ans = NULL;
    size_t alen;
    const char *obj;
    size_t olen;
    int rc = remote_call(c->remote, "GET", "api/v1/status", NULL, 0, &ans, &alen);
    if (rc == KD_OK && !rj_member(ans, alen, "roots", &obj, &olen))
        rc = remote_bad_answer(c->remote, "a status");
    if (rc == KD_OK) {
        memset(stats, 0, sizeof *stats);
        stats->keys = rj_u64(ans, alen, "keys");
        stats->live_keys = rj_u64(ans, alen, "live_keys");
        stats->versions = rj_u64(ans, alen, "versions");
        stats->unique_values = rj_u64(ans, alen, "values");
        stats->namespaces = rj_u64(ans, alen, "namespaces");
        stats->disk_bytes = rj_u64(ans, alen, "disk_bytes");
        stats->segments = rj_u64(ans, alen, "segments");
        stats->index_bytes = rj_u64(ans, alen, "index_bytes");
        stats->cache_bytes = rj_u64(ans, alen, "cache_bytes");
        stats->cache_hits = rj_u64(ans, alen, "cache_hits");
        stats->cache_misses = rj_u64(ans, alen, "cache_misses");
        stats->replay_bytes = rj_u64(ans, alen, "replay_bytes");
        stats->index_mapped_bytes = rj_u64(ans, alen, "index_mapped_bytes");
        stats->memory_budget = rj_u64(ans, alen, "memory_budget");
        stats->memory_used = rj_u64(ans, alen, "memory_used");
        stats->cache_capacity = rj_u64(ans, alen, "cache_capacity");
        stats->vector_index_bytes = rj_u64(ans, alen, "vector_index_bytes");
        stats->log_window_bytes = rj_u64(ans, alen, "log_window_bytes");
        stats->log_trims = rj_u64(ans, alen, "log_trims");
        stats->last_timestamp = rj_time(ans, alen, "last_write");
        read_roots(obj, olen, roots, n_roots);
        if (rj_member(ans, alen, "upkeep", &obj, &olen))
            read_upkeep(obj, olen, tasks, n_tasks);
        *path = rj_string(ans, alen, "path");
        if (!*path)
            *path = xstrdup(c->path);
    }
    free(ans);
    return rc;
}

int st_verify(struct cli *c, kd_verify_report *report)
{
    if (!c->remote)
        return kd_verify(c->db, report);
    char *ans = NULL;
    size_t alen;
    memset(report, 0, sizeof *report);
    int rc = remote_call(c->remote, "POST", "api/v1/verify", NULL, 0, &ans, &alen);
    if (rc == KD_OK) {
        report->segments = rj_u64(ans, alen, "segments");
        report->records = rj_u64(ans, alen, "records");
        report->versions = rj_u64(ans, alen, "versions");
        report->values = rj_u64(ans, alen, "values");
        report->bytes = rj_u64(ans, alen, "bytes");
        report->pruned = rj_u64(ans, alen, "pruned");
        char *problem = rj_string(ans, alen, "problem");
        if (problem) {
            snprintf(report->problem, sizeof report->problem, "%s", problem);
            rc = KD_ECORRUPT;
        }
        free(problem);
    }
    free(ans);
    return rc;
}

/* POST /api/v1/backup with a JSON body (cli/backup.c builds it and reads
 * the answer); remote only. */
int st_backup_call(struct cli *c, const char *body, size_t len, char **answer, size_t *alen)
{
    if (!c->remote)
        return KD_EMISUSE;
    return remote_call(c->remote, "POST", "api/v1/backup", body, len, answer, alen);
}

/* ------------------------------------------------------------------------
 * Workspaces (workspace.c)
 * ---------------------------------------------------------------------- */

int st_workspace_create(struct cli *c, const char *name)
{
    return st_workspace_create_at(c, name, 0);
}

int st_workspace_create_at(struct cli *c, const char *name, int64_t at)
{
    if (!c->remote)
        return kd_workspace_create_at(c->core ? c->core : c->db, name, at);
    char *q = NULL;
    size_t ql = 0;
    if (kd_json_quote(name, strlen(name), &q, &ql) != KD_OK)
        return remote_fail(c->remote, KD_EINVALID, "the workspace name is not valid UTF-8");
    char *body = xmalloc(ql + 48);
    int bl = at ? snprintf(body, ql + 48, "{\"at\":\"@%lld\",\"name\":%s}", (long long)at, q)
                : snprintf(body, ql + 48, "{\"name\":%s}", q);
    kd_free(q);
    int rc = remote_call(c->remote, "POST", "api/v1/workspaces", body, (size_t)bl, NULL, NULL);
    free(body);
    return rc;
}

int st_workspace_drop(struct cli *c, const char *name)
{
    if (!c->remote)
        return kd_workspace_drop(c->core ? c->core : c->db, name);
    char *path = remote_path("api/v1/workspaces/%s", name);
    int rc = remote_call(c->remote, "DELETE", path, NULL, 0, NULL, NULL);
    free(path);
    return rc;
}

int st_workspace_list(struct cli *c, char ***names, size_t *n)
{
    if (!c->remote)
        return kd_workspace_list(c->core ? c->core : c->db, names, n);
    return remote_names(c, "api/v1/workspaces", "workspaces", names, n, NULL);
}
