/*
 * routes_ws.c — workspaces over HTTP (DESIGN.md §2).
 *
 *   GET    /api/v1/workspaces          kd_workspace_list: {"workspaces":[names]} (with --auth: those
 *                                       the caller holds a grant in)
 *   POST   /api/v1/workspaces          kd_workspace_create {"name"} → 201 {"workspace"}; with
 *                                       "at": TIME, kd_workspace_create_at (before importing
 *                                       the workspace's history)
 *   DELETE /api/v1/workspaces/{name}   kd_workspace_drop → {"workspace","dropped":true}
 *
 * Every data route also exists as /api/v1/ws/{ws}/… (the route tables);
 * http.c runs those on the handle of workspace {ws}, which ks_ws_handle
 * gives: handles are opened once and kept until the server stops (a
 * stream may outlive its request's handler), and each request checks that
 * the workspace still exists, so a dropped one answers 404 at once.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server_int.h"

static struct {
    pthread_mutex_t mu;
    char **names;
    kd_db **handles;
    size_t n;
} W = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0};

kd_db *ks_ws_handle(kd_db *db, const char *name, int *rc)
{
    kd_db *check = NULL;
    /* exists now? (and a valid name) */
    if ((*rc = kd_workspace_open(db, name, &check)) != KD_OK)
        return NULL;
    pthread_mutex_lock(&W.mu);
    for (size_t i = 0; i < W.n; i++)
        if (strcmp(W.names[i], name) == 0) {
            kd_db *h = W.handles[i];
            pthread_mutex_unlock(&W.mu);
            kd_close(check);
            return h;
        }
    W.names = ks_xrealloc(W.names, (W.n + 1) * sizeof *W.names);
    W.handles = ks_xrealloc(W.handles, (W.n + 1) * sizeof *W.handles);
    W.names[W.n] = ks_xstrdup(name);
    W.handles[W.n] = check;
    W.n++;
    pthread_mutex_unlock(&W.mu);
    return check;
}

void ks_ws_close_all(void)
{
    pthread_mutex_lock(&W.mu);
    for (size_t i = 0; i < W.n; i++) {
        kd_close(W.handles[i]);
        free(W.names[i]);
    }
    free(W.names);
    free(W.handles);
    W.names = NULL;
    W.handles = NULL;
    W.n = 0;
    pthread_mutex_unlock(&W.mu);
}

/* The string member "name" of a workspace body (malloc'd), or NULL after a
 * 400 response. */
char *ks_ws_body_name(const ks_request *req, ks_response *res)
{
    const char *v = NULL;
    size_t vl = 0, cl = 0;
    char *canon = NULL;
    if (kd_json_canonical(req->body, req->body_len, &canon, &cl, NULL, 0) != KD_OK ||
        kd_json_path(canon, cl, "name", &v, &vl) != KD_OK || vl < 2 || v[0] != '"') {
        kd_free(canon);
        ks_error(res, 400, "invalid", "the body must be {\"name\": WORKSPACE}");
        return NULL;
    }
    char *name = NULL;
    size_t nl = 0;
    int rc = kd_json_unquote(v, vl, &name, &nl);
    kd_free(canon);
    if (rc != KD_OK || strlen(name) != nl) {
        kd_free(name);
        ks_error(res, 400, "invalid", "the workspace name must be a string without NUL");
        return NULL;
    }
    char *out = ks_xstrdup(name);
    kd_free(name);
    return out;
}

static int ws_list(ks_request *req, ks_response *res)
{
    char **names = NULL;
    size_t n = 0;
    int rc = kd_workspace_list(req->db, &names, &n);
    if (rc) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"workspaces\":[", 15);
    /* With --auth: only the workspaces the caller holds a grant in. */
    for (size_t i = 0, shown = 0; i < n; i++) {
        if (!ks_may_workspace(req, names[i]))
            continue;
        if (shown++)
            ks_buf_add(&b, ",", 1);
        ks_json_string(&b, names[i], strlen(names[i]));
    }
    ks_buf_add(&b, "]}", 2);
    kd_free_list(names, n);
    ks_reply(res, 200, &b);
    return 0;
}

/* The optional member "at" (a TIME string) of a create body: 0 when absent;
 * -1 after a 400 response. */
static int body_at(const ks_request *req, ks_response *res, int64_t *at)
{
    const char *v = NULL;
    size_t vl = 0, cl = 0;
    char *canon = NULL, *text = NULL, err[256] = "";
    *at = 0;
    if (kd_json_canonical(req->body, req->body_len, &canon, &cl, NULL, 0) != KD_OK ||
        kd_json_path(canon, cl, "at", &v, &vl) != KD_OK) {
        kd_free(canon);
        return 0;
    }
    size_t tl = 0;
    int rc = vl >= 2 && v[0] == '"' ? kd_json_unquote(v, vl, &text, &tl) : KD_EINVALID;
    if (rc == KD_OK && (strlen(text) != tl || kd_time_parse(text, at, err, sizeof err) != KD_OK || *at <= 0))
        rc = KD_EINVALID;
    kd_free(canon);
    kd_free(text);
    if (rc != KD_OK) {
        ks_error(res, 400, "invalid", "\"at\" must be a TIME string (RFC 3339 or @<nanoseconds>)%s%s", err[0] ? ": " : "",
                 err);
        return -1;
    }
    return 0;
}

/* A create body holds "name" and, optionally, "at": any other member is
 * 400 (a mistyped "At" would otherwise make the workspace now). 0, or -1
 * after the response. */
static int body_members_known(const ks_request *req, ks_response *res)
{
    char *canon = NULL;
    size_t cl = 0, pos = 0, nl, vl;
    const char *name, *v;
    if (kd_json_canonical(req->body, req->body_len, &canon, &cl, NULL, 0) != KD_OK)
        return 0; /* ks_ws_body_name answers it */
    int rc = 0;
    while (!rc && kd_json_next(canon, cl, &pos, &name, &nl, &v, &vl) == 1)
        if (!(nl == 6 && !memcmp(name, "\"name\"", 6)) && !(nl == 4 && !memcmp(name, "\"at\"", 4))) {
            ks_error(res, 400, "invalid", "body: unknown member %.*s (expected \"name\", \"at\")",
                     (int)(nl < 100 ? nl : 100), name);
            rc = -1;
        }
    kd_free(canon);
    return rc;
}

static int ws_create(ks_request *req, ks_response *res)
{
    char *name = ks_ws_body_name(req, res);
    if (!name)
        return 0;
    if (body_members_known(req, res) < 0) {
        free(name);
        return 0;
    }
    int64_t at;
    if (body_at(req, res, &at) < 0) {
        free(name);
        return 0;
    }
    int rc = kd_workspace_create_at(req->db, name, at);
    if (rc) {
        ks_kd_error(res, req->db, rc);
        free(name);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"workspace\":", 13);
    ks_json_string(&b, name, strlen(name));
    ks_buf_add(&b, "}", 1);
    free(name);
    ks_reply(res, 201, &b);
    return 0;
}

static int ws_drop(ks_request *req, ks_response *res)
{
    const char *name = ks_var(req, "name");
    int rc = kd_workspace_drop(req->db, name);
    if (rc) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"workspace\":", 13);
    ks_json_string(&b, name, strlen(name));
    ks_buf_add(&b, ",\"dropped\":true}", 16);
    ks_reply(res, 200, &b);
    return 0;
}

const ks_route ks_routes_ws[] = {
    {"GET", "api/v1/workspaces", ws_list, "workspaces_list"},
    {"POST", "api/v1/workspaces", ws_create, "workspace_create"},
    {"DELETE", "api/v1/workspaces/{name}", ws_drop, "workspace_drop"},
    {NULL, NULL, NULL, NULL},
};
