/*
 * retention.c — retention policies: parsing, their canonical text, storing
 * them in _kd.retention, and deciding which versions of a key they keep.
 */
#include "retention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "json/dom.h"
#include "json/json.h"

/* ------------------------------------------------------------------------
 * Parsing and writing
 * ---------------------------------------------------------------------- */

static int bad(char *why, size_t whylen, const char *msg)
{
    snprintf(why, whylen, "%s", msg);
    return KD_EINVALID;
}

static int duration_of(const kd__jnode *n, int64_t *ns)
{
    return n->type == KD__J_STRING && strlen(n->u.text) == n->len ? kd_duration_parse(n->u.text, ns) : KD_EINVALID;
}

static const kd__jnode *member(const kd__jnode *obj, const char *name)
{
    for (size_t i = 0; i < obj->len; i++)
        if (!strcmp(obj->u.members[i].name, name))
            return obj->u.members[i].value;
    return NULL;
}

static int thin_cmp(const void *a, const void *b)
{
    const kd__thin_rule *x = a, *y = b;
    return x->after < y->after ? -1 : x->after > y->after;
}

static int parse_thin(const kd__jnode *arr, kd__policy *p, char *why, size_t whylen)
{
    if (arr->type != KD__J_ARRAY || arr->len == 0 || arr->len > KD__THIN_MAX)
        return bad(why, whylen, "\"thin\" must be an array of 1 to 16 {\"after\", \"every\"} rules");
    for (size_t i = 0; i < arr->len; i++) {
        const kd__jnode *r = arr->u.items[i];
        if (r->type != KD__J_OBJECT || r->len != 2 || !member(r, "after") || !member(r, "every"))
            return bad(why, whylen, "each \"thin\" rule is {\"after\": DURATION, \"every\": DURATION}");
        kd__thin_rule *t = &p->thin[i];
        if (duration_of(member(r, "after"), &t->after) || duration_of(member(r, "every"), &t->every))
            return bad(why, whylen, "\"after\" and \"every\" are durations such as \"90m\", \"12h\", \"7d\", \"2w\"");
        for (size_t j = 0; j < i; j++)
            if (p->thin[j].after == t->after)
                return bad(why, whylen, "two \"thin\" rules have the same \"after\"");
    }
    p->n_thin = arr->len;
    qsort(p->thin, p->n_thin, sizeof p->thin[0], thin_cmp);
    return KD_OK;
}

int kd__policy_parse(const char *json, size_t len, kd__policy *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    kd__jnode *root = NULL;
    kd__buf canon = {0};
    char err[160];
    int rc = kd__json_canonicalize(json, len, &canon, err, sizeof err);
    if (rc == KD_EINVALID)
        snprintf(why, whylen, "the policy is not valid JSON: %s", err);
    else if (rc == KD_OK)
        rc = kd__jdom_parse(canon.data, canon.len, &root);
    kd__buf_free(&canon);
    if (rc)
        return rc;
    if (root->type != KD__J_OBJECT || root->len == 0) {
        rc = bad(why, whylen, "the policy is an object with at least one of \"keep_last\", \"keep_newer_than\", "
                 "\"thin\"");
        goto out;
    }
    for (size_t i = 0; i < root->len && !rc; i++) {
        const char *name = root->u.members[i].name;
        const kd__jnode *v = root->u.members[i].value;
        if (!strcmp(name, "keep_last")) {
            char *end;
            unsigned long long n = v->type == KD__J_NUMBER ? strtoull(v->u.text, &end, 10) : 0;
            if (v->type != KD__J_NUMBER || *end || v->u.text[0] == '-' || n == 0 || n > UINT32_MAX)
                rc = bad(why, whylen, "\"keep_last\" is a whole number from 1 to 4294967295");
            else
                out->keep_last = (uint32_t)n;
        } else if (!strcmp(name, "keep_newer_than")) {
            if (duration_of(v, &out->keep_newer_than))
                rc = bad(why, whylen, "\"keep_newer_than\" is a duration such as \"90m\", \"12h\", \"30d\", \"2w\"");
        } else if (!strcmp(name, "thin")) {
            rc = parse_thin(v, out, why, whylen);
        } else {
            snprintf(why, whylen, "unknown member \"%.64s\" (known: keep_last, keep_newer_than, thin)", name);
            rc = KD_EINVALID;
        }
    }
out:
    kd__jdom_free(root);
    return rc;
}

static int put_duration(kd__buf *b, const char *name, int64_t ns)
{
    char d[32], t[96];
    kd_duration_format(ns, d, sizeof d);
    snprintf(t, sizeof t, "\"%s\":\"%s\"", name, d);
    return kd__buf_append(b, t, strlen(t));
}

int kd__policy_write(const kd__policy *p, kd__buf *b)
{
    /* Members in byte order, as canonical JSON has them. */
    int rc = kd__buf_append(b, "{", 1);
    const char *sep = "";
    char t[64];
    if (!rc && p->keep_last) {
        snprintf(t, sizeof t, "\"keep_last\":%u", p->keep_last);
        rc = kd__buf_append(b, t, strlen(t));
        sep = ",";
    }
    if (!rc && p->keep_newer_than) {
        rc = kd__buf_append(b, sep, strlen(sep));
        if (!rc)
            rc = put_duration(b, "keep_newer_than", p->keep_newer_than);
        sep = ",";
    }
    if (!rc && p->n_thin) {
        rc = kd__buf_append(b, sep, strlen(sep));
        if (!rc)
            rc = kd__buf_append(b, "\"thin\":[", 8);
        for (size_t i = 0; i < p->n_thin && !rc; i++) {
            rc = kd__buf_append(b, i ? ",{" : "{", i ? 2 : 1);
            if (!rc)
                rc = put_duration(b, "after", p->thin[i].after);
            if (!rc)
                rc = kd__buf_append(b, ",", 1);
            if (!rc)
                rc = put_duration(b, "every", p->thin[i].every);
            if (!rc)
                rc = kd__buf_append(b, "}", 1);
        }
        if (!rc)
            rc = kd__buf_append(b, "]", 1);
    }
    if (!rc)
        rc = kd__buf_append(b, "}", 1);
    return rc;
}

/* ------------------------------------------------------------------------
 * Deciding
 * ---------------------------------------------------------------------- */

/* The thinning rule that governs a version of this age: the one with the
 * largest `after` not above it; -1 when the version is younger than all. */
static int thin_rule(const kd__policy *p, int64_t age)
{
    int r = -1;
    for (size_t i = 0; i < p->n_thin && p->thin[i].after <= age; i++)
        r = (int)i;
    return r;
}

void kd__policy_decide(const kd__policy *p, int64_t now, const int64_t *ts, const uint8_t *tombstone, uint32_t n,
                       uint8_t *keep)
{
    for (uint32_t i = 0; i < n; i++) {
        int k = i + 1 == n || tombstone[i];
        if (p->keep_last && n - i <= p->keep_last)
            k = 1;
        if (p->keep_newer_than && ts[i] > now - p->keep_newer_than)
            k = 1;
        if (!k && p->n_thin) {
            /* Keep the newest version of each window: drop this one only
             * when the next is in the same window under the same rule. */
            int r = thin_rule(p, now - ts[i]);
            if (r < 0)
                k = 1;
            else if (thin_rule(p, now - ts[i + 1]) != r ||
                     ts[i] / p->thin[r].every != ts[i + 1] / p->thin[r].every)
                k = 1;
        }
        keep[i] = (uint8_t)k;
    }
}

/* ------------------------------------------------------------------------
 * Storing policies
 * ---------------------------------------------------------------------- */

static int check_user_ns(kd_db *db, const char *ns)
{
    int rc = kd__check_names(db, ns, "x"); /* refuses reserved and bad names */
    return rc;
}

KD_EXPORT int kd_retention_set(kd_db *db, const char *ns, const char *json, size_t len)
{
    if (!db)
        return KD_EMISUSE;
    if (!ns || !json)
        return kd__err(db, KD_EINVALID, "a namespace and a policy are needed");
    int rc = check_user_ns(db, ns);
    if (rc)
        return rc;
    kd__policy p;
    char why[200];
    if (kd__policy_parse(json, len, &p, why, sizeof why))
        return kd__err(db, KD_EINVALID, "retention policy for %s: %s", ns, why);
    kd__buf b = {0};
    if (kd__policy_write(&p, &b)) {
        kd__buf_free(&b);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    kd__allow_reserved(1);
    rc = kd_put(db, KD__NS_RETENTION, ns, b.data, b.len, NULL);
    kd__allow_reserved(0);
    kd__buf_free(&b);
    return rc;
}

KD_EXPORT int kd_retention_get(kd_db *db, const char *ns, char **json, size_t *len)
{
    if (!db)
        return KD_EMISUSE;
    if (!ns || !json)
        return kd__err(db, KD_EINVALID, "a namespace is needed");
    int rc = check_user_ns(db, ns);
    if (rc)
        return rc;
    rc = kd_get(db, KD__NS_RETENTION, ns, json, len, NULL);
    if (rc == KD_ENOTFOUND || rc == KD_EDELETED)
        return kd__err(db, KD_ENOTFOUND, "%s has no retention policy: it keeps its whole history", ns);
    return rc;
}

KD_EXPORT int kd_retention_clear(kd_db *db, const char *ns)
{
    if (!db)
        return KD_EMISUSE;
    if (!ns)
        return kd__err(db, KD_EINVALID, "a namespace is needed");
    int rc = check_user_ns(db, ns);
    if (rc)
        return rc;
    if (!kd_contains(db, KD__NS_RETENTION, ns))
        return kd__err(db, KD_ENOTFOUND, "%s has no retention policy", ns);
    kd__allow_reserved(1);
    rc = kd_delete(db, KD__NS_RETENTION, ns, NULL);
    kd__allow_reserved(0);
    return rc;
}

typedef struct list_ctx {
    kd__buf *out;
    int n;
} list_ctx;

static int list_one(void *arg, const char *key, const char *value, size_t value_len, const kd_version *v)
{
    (void)v;
    list_ctx *c = arg;
    int rc = c->n++ ? kd__buf_putc(c->out, ',') : KD_OK;
    if (!rc)
        rc = kd__json_write_string(c->out, key, strlen(key));
    if (!rc)
        rc = kd__buf_putc(c->out, ':');
    if (!rc)
        rc = kd__buf_append(c->out, value, value_len);
    return rc;
}

KD_EXPORT int kd_retention_list(kd_db *db, char **json, size_t *len)
{
    if (!db || !json)
        return KD_EMISUSE;
    *json = NULL;
    kd__buf b = {0};
    list_ctx c = {&b, 0};
    int rc = kd__buf_append(&b, "{", 1);
    if (!rc)
        rc = kd_scan(db, KD__NS_RETENTION, NULL, NULL, 0, KD_TIME_MAX, list_one, &c);
    if (!rc)
        rc = kd__buf_append(&b, "}", 2); /* with the terminating NUL */
    if (rc) {
        kd__buf_free(&b);
        return rc < 0 ? rc : kd__err(db, KD_ENOMEM, "out of memory");
    }
    *json = b.data;
    if (len)
        *len = b.len - 1;
    return KD_OK;
}
