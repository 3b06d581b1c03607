/*
 * workspace.c — isolated workspaces inside one database (DESIGN.md §2).
 *
 * A workspace handle is a small struct kd_db whose `core` points at the
 * database's handle; every public function turns it into (core, ws) first
 * (KD__WS_ENTER in db_int.h) and qualifies its namespace arguments. Which
 * workspaces exist is recorded by writes to the reserved namespace
 * _kd.workspaces of the default workspace (key = name): creating puts the
 * key, dropping deletes it, so both are versioned and survive reopening.
 * A dropped workspace's data stays in the log (and its history) until
 * compaction; creating the same name again makes it visible again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "json/json.h"
#include "util/buf.h"

const char *kd__qns_of(const kd__ns *s, char *buf)
{
    if (s->ws_len == sizeof KD__DEFAULT_WS - 1 && !memcmp(s->ws, KD__DEFAULT_WS, s->ws_len))
        return s->name;
    memcpy(buf, s->ws, s->ws_len);
    buf[s->ws_len] = KD__WS_SEP;
    memcpy(buf + s->ws_len + 1, s->name, s->name_len + 1);
    return buf;
}

int kd__ws_qualify(kd_db *db, const char *ws, const char *ns, char *buf)
{
    size_t n = strlen(ns);
    if (n == 0)
        return kd__err(db, KD_EINVALID, "namespace is empty");
    if (n > 255)
        return kd__err(db, KD_ETOOBIG, "namespace is %zu bytes; the limit is 255", n);
    if (!kd__utf8_valid(ns, n))
        return kd__err(db, KD_EINVALID, "namespace is not valid UTF-8");
    if (!ws) {
        memcpy(buf, ns, n + 1);
        return KD_OK;
    }
    size_t w = strlen(ws);
    memcpy(buf, ws, w);
    buf[w] = KD__WS_SEP;
    memcpy(buf + w + 1, ns, n + 1);
    return KD_OK;
}

int kd__ws_qualify_each(kd_db *db, const char *ws, const void *items, size_t n, size_t size, size_t ns_off,
                        const char *what, void **copy, char **names)
{
    char *q = malloc(n ? n * size : 1);
    char *nm = q ? malloc(n ? n * KD__QNS_MAX : 1) : NULL;
    *copy = NULL;
    *names = NULL;
    if (!nm) {
        free(q);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    memcpy(q, items, n * size);
    for (size_t i = 0; i < n; i++) {
        const char **ns = (const char **)(void *)(q + i * size + ns_off);
        if (!*ns)
            continue;
        int rc = kd__ws_qualify(db, ws, *ns, nm + i * KD__QNS_MAX);
        if (rc) {
            if (what) {
                char why[512];
                snprintf(why, sizeof why, "%s", kd_errmsg(db));
                rc = kd__err(db, rc, "%s %zu: %s", what, i, why);
            }
            free(q);
            free(nm);
            return rc;
        }
        *ns = nm + i * KD__QNS_MAX;
    }
    *copy = q;
    *names = nm;
    return KD_OK;
}

const char *kd__qns_sibling(const char *q, const char *local, char *buf)
{
    const char *s = strchr(q, KD__WS_SEP);
    size_t w = s ? (size_t)(s - q) + 1 : 0, n = strlen(local);
    if (n > 255)
        n = 255;
    memcpy(buf, q, w);
    memcpy(buf + w, local, n);
    buf[w + n] = '\0';
    return buf;
}

int kd__ws_owns(const char *ws, const char *q, size_t qlen, const char **local)
{
    const char *s = memchr(q, KD__WS_SEP, qlen);
    if (!ws) {
        if (s)
            return 0;
        if (local)
            *local = q;
        return 1;
    }
    size_t w = strlen(ws);
    if (!s || (size_t)(s - q) != w || memcmp(q, ws, w))
        return 0;
    if (local)
        *local = s + 1;
    return 1;
}

static __thread int ws_internal;

void kd__ws_internal(int on)
{
    ws_internal = on;
}

int kd__ws_internal_on(void)
{
    return ws_internal;
}

int kd__ws_check_plain(kd_db *db, const char *ns)
{
    if (ws_internal || !strchr(ns, KD__WS_SEP))
        return KD_OK;
    return kd__err(db, KD_EINVALID, "namespace is not valid UTF-8");
}

/* ------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------- */

static int check_ws_name(kd_db *db, const char *name)
{
    if (!name || !*name)
        return kd__err(db, KD_EINVALID, "a workspace needs a name");
    size_t n = strlen(name);
    if (n > 255)
        return kd__err(db, KD_ETOOBIG, "workspace name is %zu bytes; the limit is 255", n);
    if (!kd__utf8_valid(name, n))
        return kd__err(db, KD_EINVALID, "workspace name is not valid UTF-8");
    if (!strncmp(name, "_kd", 3))
        return kd__err(db, KD_ERESERVED, "workspace '%s' is reserved: names starting with _kd belong to the database",
                       name);
    return KD_OK;
}

static int is_default(const char *name)
{
    return !strcmp(name, KD__DEFAULT_WS);
}

int kd_workspace_open(kd_db *db, const char *name, kd_db **out)
{
    if (!db || !out)
        return KD_EMISUSE;
    *out = NULL;
    if (db->core)
        db = db->core;
    int rc = check_ws_name(db, name);
    if (rc)
        return rc;
    if (!is_default(name) && !kd_contains(db, KD__NS_WORKSPACES, name))
        return kd__err(db, KD_ENOTFOUND, "no workspace named '%s' (create it first)", name);
    kd_db *h = calloc(1, sizeof *h);
    if (!h)
        return kd__err(db, KD_ENOMEM, "out of memory");
    h->core = db;
    if (!is_default(name) && !(h->ws = strdup(name))) {
        free(h);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    *out = h;
    return KD_OK;
}

const char *kd_workspace_name(const kd_db *db)
{
    return db && db->core && db->ws ? db->ws : KD__DEFAULT_WS;
}

void kd__workspace_close(kd_db *h)
{
    free(h->ws);
    free(h);
}

int kd_workspace_create(kd_db *db, const char *name)
{
    return kd_workspace_create_at(db, name, 0);
}

int kd_workspace_create_at(kd_db *db, const char *name, int64_t at)
{
    if (!db)
        return KD_EMISUSE;
    if (db->core)
        db = db->core;
    int rc = check_ws_name(db, name);
    if (rc)
        return rc;
    if (is_default(name))
        return kd__err(db, KD_EEXISTS, "workspace 'default' always exists");
    kd__buf b = KD__BUF_INIT;
    if (kd__buf_puts(&b, "{\"name\":") || kd__json_write_string(&b, name, strlen(name)) || kd__buf_putc(&b, '}')) {
        kd__buf_free(&b);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    kd_write w = {KD__NS_WORKSPACES, name, b.data, b.len, KD_EXPECT_ABSENT};
    kd__allow_reserved(1);
    rc = kd__commit_at(db, &w, 1, at, NULL);
    kd__allow_reserved(0);
    kd__buf_free(&b);
    if (rc == KD_ECONFLICT)
        return kd__err(db, KD_EEXISTS, "workspace '%s' already exists", name);
    return rc;
}

int kd_workspace_import(kd_db *db, const char *name, const kd_import *versions, size_t n, int *created)
{
    if (created)
        *created = 0;
    if (!db)
        return KD_EMISUSE;
    if (db->core)
        db = db->core;
    int rc = check_ws_name(db, name);
    if (rc)
        return rc;
    if (!versions || n == 0)
        return kd__err(db, KD_EINVALID, "nothing to import");
    kd_db *h = NULL;
    rc = kd_workspace_open(db, name, &h);
    if (rc == KD_ENOTFOUND) {
        /* Made only once the versions are known to import: a workspace
         * made for a history that is then refused could never take one
         * (its creation is a newer write than any history). */
        if (versions[0].timestamp <= 1)
            return kd__err(db, KD_EINVALID, "cannot make workspace '%s' before the first version: its time is the "
                           "first nanosecond of 1970", name);
        if ((rc = kd__import_check(db, name, versions, n)) ||
            (rc = kd_workspace_create_at(db, name, versions[0].timestamp - 1)) ||
            (rc = kd_workspace_open(db, name, &h)))
            return rc;
        if (created)
            *created = 1;
    } else if (rc) {
        return rc;
    }
    rc = kd_import_versions(h, versions, n);
    if (rc) /* the message is the workspace handle's */
        kd__err(db, rc, "%s", kd_errmsg(h));
    kd_close(h);
    return rc;
}

int kd_workspace_drop(kd_db *db, const char *name)
{
    if (!db)
        return KD_EMISUSE;
    if (db->core)
        db = db->core;
    int rc = check_ws_name(db, name);
    if (rc)
        return rc;
    if (is_default(name))
        return kd__err(db, KD_EINVALID, "the default workspace cannot be dropped");
    kd_write w = {KD__NS_WORKSPACES, name, NULL, 0, NULL};
    kd__allow_reserved(1);
    rc = kd__commit(db, &w, 1, NULL);
    kd__allow_reserved(0);
    if (rc == KD_ENOTFOUND || rc == KD_EDELETED)
        return kd__err(db, KD_ENOTFOUND, "no workspace named '%s'", name);
    return rc;
}

int kd_workspace_list(kd_db *db, char ***names, size_t *n)
{
    if (!db || !names || !n)
        return KD_EMISUSE;
    if (db->core)
        db = db->core;
    *names = NULL;
    *n = 0;
    char **keys = NULL;
    size_t nk = 0;
    int rc = kd_list_keys(db, KD__NS_WORKSPACES, NULL, NULL, 0, &keys, &nk);
    if (rc == KD_ENOTFOUND) {
        rc = KD_OK;
        keys = NULL;
        nk = 0;
    }
    if (rc)
        return rc;
    char **l = malloc((nk + 1) * sizeof *l);
    if (!l) {
        kd_free_list(keys, nk);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    /* "default" sorts among the others byte-wise */
    size_t k = 0, i = 0;
    int placed = 0;
    for (; i <= nk; i++) {
        if (!placed && (i == nk || strcmp(KD__DEFAULT_WS, keys[i]) < 0)) {
            if (!(l[k] = strdup(KD__DEFAULT_WS))) {
                kd_free_list(l, k);
                for (; i < nk; i++)
                    free(keys[i]);
                free(keys);
                return kd__err(db, KD_ENOMEM, "out of memory");
            }
            k++;
            placed = 1;
        }
        if (i < nk)
            l[k++] = keys[i];
    }
    free(keys);
    *names = l;
    *n = k;
    return KD_OK;
}
