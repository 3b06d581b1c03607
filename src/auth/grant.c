/*
 * grant.c — capabilities: signed grants of a permission over a scope
 * (workspace, namespace pattern, optional key prefix), their signature
 * checks and scope matching, and the auth subsystem's writes to the
 * reserved namespace _kd.auth.
 *
 * A grant's signature covers "korudelta-grant-v1\0" followed by the
 * canonical JSON of the grant without its "signature" member; its id is
 * the SHA-256 of the canonical JSON with the signature. Both are rebuilt
 * from the parsed fields, so whatever spelling a client sends, what is
 * checked is what the fields mean.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "../db_int.h"
#include "../util/buf.h"
#include "../util/sha.h"

#define GRANT_TAG "korudelta-grant-v1"

int kd_perm_parse(const char *name, kd_perm *out)
{
    if (!name || !out)
        return KD_EINVALID;
    if (strcmp(name, "read") == 0)
        *out = KD_PERM_READ;
    else if (strcmp(name, "write") == 0)
        *out = KD_PERM_WRITE;
    else if (strcmp(name, "admin") == 0)
        *out = KD_PERM_ADMIN;
    else
        return KD_EINVALID;
    return KD_OK;
}

const char *kd_perm_name(kd_perm p)
{
    switch (p) {
    case KD_PERM_READ: return "read";
    case KD_PERM_WRITE: return "write";
    case KD_PERM_ADMIN: return "admin";
    }
    return NULL;
}

int kd_auth_ns_match(const char *pattern, const char *ns)
{
    if (!pattern || !ns)
        return 0;
    /* Glob with '*' only: greedy with one backtrack point (linear time). */
    const char *p = pattern, *s = ns, *star = NULL, *mark = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            mark = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++mark;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

int kd_grant_covers(const kd_grant *g, const char *ns, const char *key, kd_perm perm)
{
    if (!g || !ns || (int)g->perm < (int)perm || !kd_auth_ns_match(g->ns_pattern, ns))
        return 0;
    if (!g->has_prefix)
        return 1;
    return key && strncmp(key, g->prefix, strlen(g->prefix)) == 0;
}

/* ------------------------------------------------------------------------
 * Canonical form
 * ---------------------------------------------------------------------- */

static int put_string(kd__buf *b, const char *s)
{
    char *q = NULL;
    size_t ql = 0;
    int rc = kd_json_quote(s, strlen(s), &q, &ql);
    if (rc)
        return rc;
    rc = kd__buf_append(b, q, ql);
    kd_free(q);
    return rc;
}

static int put_time(kd__buf *b, int64_t ts)
{
    char t[40];
    if (kd_time_format(ts, t, sizeof t) != KD_OK)
        return KD_EINVALID;
    return kd__buf_printf(b, "\"%s\"", t);
}

/* The grant's canonical JSON, with "signature" when sig is not NULL. */
static int grant_json(const kd_grant *g, const char *sig, kd__buf *b)
{
    int rc = kd__buf_puts(b, "{\"expires\":");
    if (!rc)
        rc = g->expires ? put_time(b, g->expires) : kd__buf_puts(b, "null");
    if (!rc)
        rc = kd__buf_printf(b, ",\"grantee\":\"%s\",\"granter\":\"%s\",\"issued_at\":", g->grantee, g->granter);
    if (!rc)
        rc = put_time(b, g->issued);
    if (!rc)
        rc = kd__buf_puts(b, ",\"namespace\":");
    if (!rc)
        rc = put_string(b, g->ns_pattern);
    if (!rc)
        rc = kd__buf_printf(b, ",\"permission\":\"%s\",\"prefix\":", kd_perm_name(g->perm));
    if (!rc)
        rc = g->has_prefix ? put_string(b, g->prefix) : kd__buf_puts(b, "null");
    if (!rc && sig)
        rc = kd__buf_printf(b, ",\"signature\":\"%s\"", sig);
    if (!rc)
        rc = kd__buf_puts(b, ",\"workspace\":");
    if (!rc)
        rc = put_string(b, g->workspace);
    if (!rc)
        rc = kd__buf_puts(b, "}");
    return rc;
}

/* The bytes a grant's signature covers. */
static int signed_bytes(const kd_grant *g, kd__buf *b)
{
    int rc = kd__buf_append(b, GRANT_TAG, sizeof GRANT_TAG);
    return rc ? rc : grant_json(g, NULL, b);
}

static int utf8_ok(const char *s, size_t len)
{
    char *q = NULL;
    size_t ql;
    int rc = kd_json_quote(s, len, &q, &ql);
    kd_free(q);
    return rc == KD_OK;
}

static int check_fields(const kd_grant *g, char *errbuf, size_t errlen)
{
    size_t nl = strnlen(g->ns_pattern, sizeof g->ns_pattern), wl = strnlen(g->workspace, sizeof g->workspace);
    if (strlen(g->grantee) != 64 || !kd__auth_is_hex(g->grantee, 64))
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "grantee: expected a public key (64 lower-case hex digits)");
    if (strlen(g->granter) != 64 || !kd__auth_is_hex(g->granter, 64))
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "granter: expected a public key (64 lower-case hex digits)");
    if (nl == 0 || nl >= sizeof g->ns_pattern || !utf8_ok(g->ns_pattern, nl))
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "namespace: 1 to 255 bytes of UTF-8 ('*' matches any run)");
    if (wl == 0 || wl >= sizeof g->workspace || !utf8_ok(g->workspace, wl))
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "workspace: 1 to 255 bytes of UTF-8");
    if (!strncmp(g->workspace, "_kd", 3))
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "workspace: names starting with _kd are reserved");
    if (g->has_prefix) {
        size_t pl = strnlen(g->prefix, sizeof g->prefix);
        if (pl == 0 || pl >= sizeof g->prefix || !utf8_ok(g->prefix, pl))
            return kd__auth_fail(errbuf, errlen, KD_EINVALID, "prefix: 1 to 1024 bytes of UTF-8");
    }
    if (!kd_perm_name(g->perm))
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "permission: read, write or admin");
    char t[40];
    if (g->issued <= 0 || kd_time_format(g->issued, t, sizeof t) != KD_OK)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "issued_at: not a valid time");
    if (g->expires < 0 || (g->expires && kd_time_format(g->expires, t, sizeof t) != KD_OK))
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "expires: not a valid time");
    return KD_OK;
}

static void grant_id(const kd__buf *signed_json, char id[KD_AUTH_KEY_HEX])
{
    uint8_t h[KD__HASH_LEN];
    kd__sha256(signed_json->data, signed_json->len, h);
    kd__hex_encode(h, KD__HASH_LEN, id);
}

int kd_grant_sign(const kd_identity *granter, kd_grant *g, char **out, size_t *len, char *errbuf, size_t errlen)
{
    if (!granter || !g || !out)
        return KD_EMISUSE;
    *out = NULL;
    const char *key = kd_identity_key(granter);
    if (g->granter[0] && strcmp(g->granter, key) != 0)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "granter: not the signing identity's key");
    memcpy(g->granter, key, KD_AUTH_KEY_HEX);
    if (g->issued == 0)
        g->issued = kd_now();
    int rc = check_fields(g, errbuf, errlen);
    if (rc)
        return rc;
    kd__buf b = KD__BUF_INIT;
    char sig[KD_AUTH_SIG_HEX];
    rc = signed_bytes(g, &b);
    if (!rc)
        rc = kd_identity_sign(granter, b.data, b.len, sig);
    kd__buf_reset(&b);
    if (!rc)
        rc = grant_json(g, sig, &b);
    if (rc) {
        kd__buf_free(&b);
        return kd__auth_fail(errbuf, errlen, rc, "cannot sign the grant: %s", kd_strerror(rc));
    }
    grant_id(&b, g->id);
    size_t n;
    *out = kd__buf_steal(&b, &n);
    if (len)
        *len = n;
    return KD_OK;
}

/* A string member into dst (size bytes); absent or null allowed when
 * `optional` (then *present = 0). */
static int str_member(const kd__jnode *root, const char *name, char *dst, size_t size, int optional, int *present,
                      char *errbuf, size_t errlen)
{
    const kd__jnode *v = kd__auth_member(root, name);
    if (present)
        *present = 0;
    if (!v || v->type == KD__J_NULL) {
        if (optional)
            return KD_OK;
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "grant: \"%s\" is missing", name);
    }
    if (v->type != KD__J_STRING || v->len >= size || memchr(v->u.text, '\0', v->len))
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "grant: \"%s\" must be a string of at most %zu bytes",
                             name, size - 1);
    memcpy(dst, v->u.text, v->len + 1);
    if (present)
        *present = 1;
    return KD_OK;
}

static int time_member(const kd__jnode *root, const char *name, int optional, int64_t *out, char *errbuf,
                       size_t errlen)
{
    char t[64], again[40];
    int present;
    int rc = str_member(root, name, t, sizeof t, optional, &present, errbuf, errlen);
    *out = 0;
    if (rc || !present)
        return rc;
    if (kd_time_parse(t, out, NULL, 0) != KD_OK || kd_time_format(*out, again, sizeof again) != KD_OK ||
        strcmp(again, t) != 0 || *out <= 0)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID,
                             "grant: \"%s\" must be an RFC 3339 UTC time with 9 fraction digits and Z", name);
    return KD_OK;
}

int kd_grant_verify(const char *json, size_t len, kd_grant *g, char *errbuf, size_t errlen)
{
    if (!g)
        return KD_EMISUSE;
    memset(g, 0, sizeof *g);
    kd__jnode *root;
    int rc = kd__auth_parse(json, len, 8 * 1024, "grant", &root, errbuf, errlen);
    if (rc)
        return rc;
    char perm[16], sig[KD_AUTH_SIG_HEX + 1];
    if (root->len != 9) {
        rc = kd__auth_fail(errbuf, errlen, KD_EINVALID,
                           "grant: expected exactly the members expires, grantee, granter, issued_at, namespace, "
                           "permission, prefix, signature and workspace");
    } else if ((rc = str_member(root, "grantee", g->grantee, sizeof g->grantee, 0, NULL, errbuf, errlen)) ||
               (rc = str_member(root, "granter", g->granter, sizeof g->granter, 0, NULL, errbuf, errlen)) ||
               (rc = str_member(root, "workspace", g->workspace, sizeof g->workspace, 0, NULL, errbuf, errlen)) ||
               (rc = str_member(root, "namespace", g->ns_pattern, sizeof g->ns_pattern, 0, NULL, errbuf, errlen)) ||
               (rc = str_member(root, "prefix", g->prefix, sizeof g->prefix, 1, &g->has_prefix, errbuf, errlen)) ||
               (rc = str_member(root, "permission", perm, sizeof perm, 0, NULL, errbuf, errlen)) ||
               (rc = str_member(root, "signature", sig, sizeof sig, 0, NULL, errbuf, errlen)) ||
               (rc = time_member(root, "issued_at", 0, &g->issued, errbuf, errlen)) ||
               (rc = time_member(root, "expires", 1, &g->expires, errbuf, errlen))) {
        /* message set */
    } else if (kd_perm_parse(perm, &g->perm) != KD_OK) {
        rc = kd__auth_fail(errbuf, errlen, KD_EINVALID, "grant: \"permission\" must be read, write or admin");
    } else {
        rc = check_fields(g, errbuf, errlen);
    }
    kd__jdom_free(root);
    kd__buf b = KD__BUF_INIT;
    if (!rc && (rc = signed_bytes(g, &b)) != KD_OK)
        kd__auth_fail(errbuf, errlen, rc, "out of memory");
    if (!rc && kd_auth_verify(g->granter, b.data, b.len, sig) != KD_OK)
        rc = kd__auth_fail(errbuf, errlen, KD_EINVALID, "grant: the signature is not the granter's");
    kd__buf_reset(&b);
    if (!rc && (rc = grant_json(g, sig, &b)) != KD_OK)
        kd__auth_fail(errbuf, errlen, rc, "out of memory");
    if (!rc)
        grant_id(&b, g->id);
    kd__buf_free(&b);
    if (rc) {
        memset(g, 0, sizeof *g);
        return rc;
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Records in _kd.auth
 * ---------------------------------------------------------------------- */

int kd_auth_put(kd_db *db, const char *key, const char *json, size_t len, const char *expect, kd_version *out)
{
    if (!db)
        return KD_EMISUSE;
    if (db->core) /* a workspace handle: database-wide */
        db = db->core;
    kd__allow_reserved(1);
    int rc = kd_put_if(db, KD_AUTH_NS, key, json, len, expect, out);
    kd__allow_reserved(0);
    return rc;
}

int kd_auth_delete(kd_db *db, const char *key, kd_version *out)
{
    if (!db)
        return KD_EMISUSE;
    if (db->core) /* a workspace handle: database-wide */
        db = db->core;
    kd__allow_reserved(1);
    int rc = kd_delete(db, KD_AUTH_NS, key, out);
    kd__allow_reserved(0);
    return rc;
}
