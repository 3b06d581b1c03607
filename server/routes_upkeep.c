/*
 * routes_upkeep.c — retention policies and compaction over HTTP.
 *
 *   GET    /api/v1/retention            {"policies": {"<ns>": policy, …}}
 *   GET    /api/v1/retention/{ns}       {"namespace", "policy"}
 *   PUT    /api/v1/retention/{ns}       body: the policy; answers as GET
 *   DELETE /api/v1/retention/{ns}       {"namespace", "cleared": true}
 *   POST   /api/v1/compact              body (optional): {"dry_run": true};
 *                                       the kd_compact_report as JSON
 *   POST   /api/v1/consolidate          body (optional): {"older_than_ns": N};
 *                                       the kd_consolidate_report as JSON
 * The retention routes also exist under /api/v1/ws/{ws}/ (each workspace
 * has its own policies); compaction and consolidation are database-wide.
 * A policy is the JSON of kd_retention_set (docs/RETENTION.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_int.h"

static void policy_reply(ks_response *res, int status, const char *ns, const char *policy, size_t len)
{
    ks_buf b = {0};
    ks_buf_add(&b, "{\"namespace\":", 13);
    ks_json_string(&b, ns, strlen(ns));
    ks_buf_add(&b, ",\"policy\":", 10);
    ks_buf_add(&b, policy, len);
    ks_buf_add(&b, "}", 1);
    ks_reply(res, status, &b);
}

static int h_retention_list(ks_request *req, ks_response *res)
{
    char *json = NULL;
    size_t len = 0;
    int rc = kd_retention_list(req->db, &json, &len);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"policies\":", 12);
    ks_buf_add(&b, json, len);
    ks_buf_add(&b, "}", 1);
    kd_free(json);
    ks_reply(res, 200, &b);
    return 0;
}

/* Answer with ns's policy as stored (canonical), or the error. */
static int reply_policy(ks_request *req, ks_response *res, const char *ns)
{
    char *json = NULL;
    size_t len = 0;
    int rc = kd_retention_get(req->db, ns, &json, &len);
    if (rc != KD_OK)
        ks_kd_error(res, req->db, rc);
    else
        policy_reply(res, 200, ns, json, len);
    kd_free(json);
    return 0;
}

static int h_retention_get(ks_request *req, ks_response *res)
{
    return reply_policy(req, res, ks_var(req, "ns"));
}

static int h_retention_put(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns");
    int rc = kd_retention_set(req->db, ns, req->body, req->body_len);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    return reply_policy(req, res, ns);
}

static int h_retention_delete(ks_request *req, ks_response *res)
{
    const char *ns = ks_var(req, "ns");
    int rc = kd_retention_clear(req->db, ns);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_add(&b, "{\"namespace\":", 13);
    ks_json_string(&b, ns, strlen(ns));
    ks_buf_add(&b, ",\"cleared\":true}", 16);
    ks_reply(res, 200, &b);
    return 0;
}

/* An optional JSON body in canonical form: 0 with *canon NULL when the
 * body is empty (or blank), 0 with *canon set (kd_free it), -1 when it is
 * not JSON. */
static int optional_body(const ks_request *req, char **canon, size_t *clen)
{
    *canon = NULL;
    size_t i = 0, n = req->body_len;
    const char *s = req->body;
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t'))
        i++;
    if (i == n)
        return 0;
    char err[160];
    return kd_json_canonical(s, n, canon, clen, err, sizeof err) == KD_OK ? 0 : -1;
}

/* The body is empty, {} or {"dry_run": true|false}. */
static int dry_run_of(const ks_request *req, int *dry)
{
    *dry = 0;
    char *canon;
    size_t clen;
    if (optional_body(req, &canon, &clen))
        return -1;
    int rc = 0;
    if (canon && !strcmp(canon, "{\"dry_run\":true}"))
        *dry = 1;
    else if (canon && strcmp(canon, "{\"dry_run\":false}") && strcmp(canon, "{}"))
        rc = -1;
    kd_free(canon);
    return rc;
}

static int h_compact(ks_request *req, ks_response *res)
{
    int dry;
    if (dry_run_of(req, &dry) < 0) {
        ks_error(res, 400, "invalid", "body: expected nothing, {} or {\"dry_run\": true|false}");
        return 0;
    }
    kd_compact_report r;
    int rc = kd_compact(req->db, dry, &r);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_printf(&b,
                  "{\"dry_run\":%s,\"number\":%" PRIu64 ",\"versions_pruned\":%" PRIu64 ",\"values_freed\":%" PRIu64
                  ",\"bytes_freed\":%" PRIu64 ",\"segments_rewritten\":%" PRIu64 ",\"versions_held\":%" PRIu64 "}",
                  dry ? "true" : "false", r.number, r.versions_pruned, r.values_freed, r.bytes_freed,
                  r.segments_rewritten, r.versions_held);
    ks_reply(res, 200, &b);
    return 0;
}

/* The body: nothing, {} or {"older_than_ns": N} (N >= 0). */
static int older_than_of(const ks_request *req, int64_t *ns)
{
    *ns = 0;
    char *canon;
    size_t clen;
    if (optional_body(req, &canon, &clen))
        return -1;
    if (!canon || !strcmp(canon, "{}")) {
        kd_free(canon);
        return 0;
    }
    /* Exactly one member, a whole number: the canonical text says so. */
    const char *v = NULL;
    size_t vl = 0;
    int rc = -1;
    if (kd_json_path(canon, clen, "older_than_ns", &v, &vl) == KD_OK && vl && vl < 20 && v[0] != '-') {
        char num[24], want[64];
        memcpy(num, v, vl);
        num[vl] = '\0';
        char *end;
        long long x = strtoll(num, &end, 10);
        snprintf(want, sizeof want, "{\"older_than_ns\":%lld}", x);
        if (!*end && !strcmp(want, canon)) {
            *ns = x;
            rc = 0;
        }
    }
    kd_free(canon);
    return rc;
}

static int h_consolidate(ks_request *req, ks_response *res)
{
    int64_t older;
    if (older_than_of(req, &older) < 0) {
        ks_error(res, 400, "invalid", "body: expected nothing, {} or {\"older_than_ns\": N} with N >= 0");
        return 0;
    }
    kd_consolidate_report r;
    int rc = kd_consolidate(req->db, older, &r);
    if (rc != KD_OK) {
        ks_kd_error(res, req->db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_printf(&b,
                  "{\"segments\":%" PRIu64 ",\"values_compressed\":%" PRIu64 ",\"value_bytes_before\":%" PRIu64
                  ",\"value_bytes_after\":%" PRIu64 ",\"bytes_saved\":%" PRIu64 ",\"dictionary\":%u,"
                  "\"dictionary_trained\":%s}",
                  r.segments, r.values_compressed, r.value_bytes_before, r.value_bytes_after, r.bytes_saved,
                  r.dictionary, r.dictionary_trained ? "true" : "false");
    ks_reply(res, 200, &b);
    return 0;
}

const ks_route ks_routes_upkeep[] = {
    {"GET", "api/v1/retention", h_retention_list, "retention_list"},
    {"GET", "api/v1/retention/{ns}", h_retention_get, "retention_get"},
    {"PUT", "api/v1/retention/{ns}", h_retention_put, "retention_set"},
    {"DELETE", "api/v1/retention/{ns}", h_retention_delete, "retention_clear"},
    /* each workspace has its own policies (its own _kd.retention) */
    {"GET", "api/v1/ws/{ws}/retention", h_retention_list, "retention_list"},
    {"GET", "api/v1/ws/{ws}/retention/{ns}", h_retention_get, "retention_get"},
    {"PUT", "api/v1/ws/{ws}/retention/{ns}", h_retention_put, "retention_set"},
    {"DELETE", "api/v1/ws/{ws}/retention/{ns}", h_retention_delete, "retention_clear"},
    {"POST", "api/v1/compact", h_compact, "compact"},
    {"POST", "api/v1/consolidate", h_consolidate, "consolidate"},
    {NULL, NULL, NULL, NULL},
};
