/*
 * store_upkeep.c — retention policies and compaction, on the local
 * database or through the server's /api/v1/retention and /api/v1/compact
 * (server/routes_upkeep.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote.h"
#include "store.h"

/* The JSON of member `name` of an answer, copied into a kd_free-able
 * string (as the library returns policies). */
static int member_copy(struct cli *c, const char *ans, size_t alen, const char *name, char **out, size_t *len)
{
    const char *v;
    size_t vl;
    if (!rj_member(ans, alen, name, &v, &vl))
        return remote_bad_answer(c->remote, name);
    char *canon = NULL;
    size_t cl = 0;
    char err[64];
    if (kd_json_canonical(v, vl, &canon, &cl, err, sizeof err) != KD_OK)
        return remote_bad_answer(c->remote, name);
    *out = canon;
    if (len)
        *len = cl;
    return KD_OK;
}

int st_retention_set(struct cli *c, const char *ns, const char *json, size_t len)
{
    if (!c->remote)
        return kd_retention_set(c->db, ns, json, len);
    char *path = remote_path("api/v1/retention/%s", ns), *ans = NULL;
    size_t alen;
    int rc = remote_call(c->remote, "PUT", path, json, len, &ans, &alen);
    free(path);
    free(ans);
    return rc;
}

int st_retention_get(struct cli *c, const char *ns, char **json, size_t *len)
{
    if (!c->remote)
        return kd_retention_get(c->db, ns, json, len);
    char *path = remote_path("api/v1/retention/%s", ns), *ans = NULL;
    size_t alen;
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen);
    free(path);
    if (rc == KD_OK)
        rc = member_copy(c, ans, alen, "policy", json, len);
    free(ans);
    return rc;
}

int st_retention_clear(struct cli *c, const char *ns)
{
    if (!c->remote)
        return kd_retention_clear(c->db, ns);
    char *path = remote_path("api/v1/retention/%s", ns), *ans = NULL;
    size_t alen;
    int rc = remote_call(c->remote, "DELETE", path, NULL, 0, &ans, &alen);
    free(path);
    free(ans);
    return rc;
}

int st_retention_list(struct cli *c, char **json, size_t *len)
{
    if (!c->remote)
        return kd_retention_list(c->db, json, len);
    char *ans = NULL;
    size_t alen;
    int rc = remote_call(c->remote, "GET", "api/v1/retention", NULL, 0, &ans, &alen);
    if (rc == KD_OK)
        rc = member_copy(c, ans, alen, "policies", json, len);
    free(ans);
    return rc;
}

int st_compact(struct cli *c, int dry_run, kd_compact_report *r)
{
    if (!c->remote)
        return kd_compact(c->db, dry_run, r);
    memset(r, 0, sizeof *r);
    const char *body = dry_run ? "{\"dry_run\":true}" : "{}";
    char *ans = NULL;
    size_t alen;
    int rc = remote_call(c->remote, "POST", "api/v1/compact", body, strlen(body), &ans, &alen);
    if (rc == KD_OK) {
        r->number = rj_u64(ans, alen, "number");
        r->versions_pruned = rj_u64(ans, alen, "versions_pruned");
        r->values_freed = rj_u64(ans, alen, "values_freed");
        r->bytes_freed = rj_u64(ans, alen, "bytes_freed");
        r->segments_rewritten = rj_u64(ans, alen, "segments_rewritten");
        r->versions_held = rj_u64(ans, alen, "versions_held");
    }
    free(ans);
    return rc;
}

int st_consolidate(struct cli *c, int64_t older_than, kd_consolidate_report *r)
{
    if (!c->remote)
        return kd_consolidate(c->db, older_than, r);
    memset(r, 0, sizeof *r);
    char body[64];
    snprintf(body, sizeof body, "{\"older_than_ns\":%lld}", (long long)older_than);
    char *ans = NULL;
    size_t alen;
    int rc = remote_call(c->remote, "POST", "api/v1/consolidate", body, strlen(body), &ans, &alen);
    if (rc == KD_OK) {
        r->segments = rj_u64(ans, alen, "segments");
        r->values_compressed = rj_u64(ans, alen, "values_compressed");
        r->value_bytes_before = rj_u64(ans, alen, "value_bytes_before");
        r->value_bytes_after = rj_u64(ans, alen, "value_bytes_after");
        r->bytes_saved = rj_u64(ans, alen, "bytes_saved");
        r->dictionary = (uint32_t)rj_u64(ans, alen, "dictionary");
        r->dictionary_trained = rj_u64(ans, alen, "dictionary_trained") != 0;
    }
    free(ans);
    return rc;
}
