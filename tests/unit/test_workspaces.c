/*
 * test_workspaces.c — isolated workspaces: the API (create, list, open,
 * drop, errors), and the property that every read, listing, history,
 * stats count, query, view, index lookup, vector search, change stream and
 * subscription event of one workspace sees only its own data, checked
 * against a model over random operations in three workspaces that use the
 * same namespace and key names, across reopening (with and without a
 * checkpoint), and through a backup and restore.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "korudelta.h"

static kd_db *open_db(const char *dir)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_db *db = NULL;
    char err[256];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "open: %s\n", err);
    kd_options_free(o);
    return db;
}

static void rm_rf(const char *d)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
}

static int has_byte_ff(const char *s)
{
    return s && strchr(s, '\xff') != NULL;
}

/* ------------------------------------------------------------------------
 * The API
 * ---------------------------------------------------------------------- */

static void test_api(void)
{
    char dir[256];
    harness_tmpdir("ws", "api", dir);
    kd_db *db = open_db(dir);
    CHECK(db != NULL);
    CHECK_EQ_STR(kd_workspace_name(db), "default");

    kd_db *a = NULL;
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_ENOTFOUND);
    CHECK(a == NULL);
    CHECK(strstr(kd_errmsg(db), "no workspace named 'A'") != NULL);
    CHECK_RC(kd_workspace_create(db, "A"), KD_OK);
    CHECK_RC(kd_workspace_create(db, "A"), KD_EEXISTS);
    CHECK_RC(kd_workspace_create(db, "default"), KD_EEXISTS);
    CHECK_RC(kd_workspace_create(db, ""), KD_EINVALID);
    CHECK_RC(kd_workspace_create(db, NULL), KD_EINVALID);
    CHECK_RC(kd_workspace_create(db, "_kdx"), KD_ERESERVED);
    CHECK_RC(kd_workspace_create(db, "bad\xff"), KD_EINVALID);
    char big[300];
    memset(big, 'w', 256);
    big[256] = '\0';
    CHECK_RC(kd_workspace_create(db, big), KD_ETOOBIG);
    CHECK_RC(kd_workspace_drop(db, "default"), KD_EINVALID);
    CHECK_RC(kd_workspace_drop(db, "nope"), KD_ENOTFOUND);
    CHECK_RC(kd_workspace_create(db, "b:c / ü"), KD_OK);

    char **names;
    size_t n;
    CHECK_RC(kd_workspace_list(db, &names, &n), KD_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(names[0], "A");
    CHECK_EQ_STR(names[1], "b:c / ü");
    CHECK_EQ_STR(names[2], "default");
    kd_free_list(names, n);

    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);
    CHECK_EQ_STR(kd_workspace_name(a), "A");
    kd_db *d = NULL;
    CHECK_RC(kd_workspace_open(a, "default", &d), KD_OK); /* from a workspace handle */
    CHECK_EQ_STR(kd_workspace_name(d), "default");

    /* the same write in two workspaces: separate keys, different write_ids */
    kd_version v1, v2;
    CHECK_RC(kd_put(a, "users", "u1", "{\"n\":1}", 7, &v1), KD_OK);
    CHECK_RC(kd_put(d, "users", "u1", "{\"n\":1}", 7, &v2), KD_OK);
    CHECK_EQ_STR(v1.version_id, v2.version_id);
    CHECK(strcmp(v1.write_id, v2.write_id) != 0);
    CHECK_RC(kd_put(a, "users", "only-a", "2", 1, NULL), KD_OK);
    CHECK(kd_contains(a, "users", "only-a"));
    CHECK(!kd_contains(db, "users", "only-a"));
    CHECK_RC(kd_get(db, "users", "only-a", NULL, NULL, NULL), KD_ENOTFOUND);
    /* messages name the namespace as the caller knows it */
    CHECK_RC(kd_get(a, "users", "zz", NULL, NULL, NULL), KD_ENOTFOUND);
    CHECK(strstr(kd_errmsg(a), "users/zz") != NULL);
    CHECK(!has_byte_ff(kd_errmsg(a)));
    CHECK_RC(kd_put(a, "_kd.views", "x", "1", 1, NULL), KD_ERESERVED);
    CHECK_RC(kd_put(a, "", "x", "1", 1, NULL), KD_EINVALID);
    CHECK_RC(kd_put(a, "users\xff", "x", "1", 1, NULL), KD_EINVALID);
    CHECK(!has_byte_ff(kd_errmsg(a)));
    /* conditions see the workspace's own key */
    CHECK_RC(kd_put_if(a, "users", "u1", "3", 1, v2.write_id, NULL), KD_ECONFLICT);
    CHECK_RC(kd_put_if(a, "users", "u1", "3", 1, v1.write_id, NULL), KD_OK);

    /* drop: gone from the listing, no new handle; the old one still works */
    CHECK_RC(kd_workspace_drop(db, "A"), KD_OK);
    CHECK_RC(kd_workspace_drop(db, "A"), KD_ENOTFOUND);
    CHECK_RC(kd_workspace_list(db, &names, &n), KD_OK);
    CHECK_EQ_INT(n, 2);
    kd_free_list(names, n);
    kd_db *a2 = NULL;
    CHECK_RC(kd_workspace_open(db, "A", &a2), KD_ENOTFOUND);
    CHECK(kd_contains(a, "users", "only-a"));
    CHECK_RC(kd_close(a), KD_OK);
    CHECK_RC(kd_close(d), KD_OK);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);

    /* reopen: the drop is remembered; creating again shows the data again */
    db = open_db(dir);
    CHECK(db != NULL);
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_ENOTFOUND);
    CHECK_RC(kd_workspace_create(db, "A"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);
    char *json;
    size_t len;
    CHECK_RC(kd_get(a, "users", "u1", &json, &len, NULL), KD_OK);
    CHECK_EQ_STR(json, "3");
    kd_free(json);
    CHECK_RC(kd_get(db, "users", "u1", &json, &len, NULL), KD_OK);
    CHECK_EQ_STR(json, "{\"n\":1}");
    kd_free(json);
    CHECK_RC(kd_close(a), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * The property: random operations in three workspaces against a model
 * ---------------------------------------------------------------------- */

#define NWS 3
#define NNS 2
#define NKEYS 6
#define NVEC 4

static const char *WS[NWS] = {"default", "A", "B"};
static const char *NS[NNS] = {"n1", "n2"};

typedef struct model {
    int val[NWS][NNS][NKEYS]; /* -1 never, -2 deleted, else x */
    int vers[NWS][NNS][NKEYS];
    int vec[NWS][NVEC];        /* 1 live */
    int vec_writes[NWS];
    int writes[NWS];           /* user namespace writes */
    int events[NWS];           /* since the subscription */
} model;

static uint64_t rng = 88172645463325252ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

typedef struct env {
    kd_db *db;
    kd_db *h[NWS];
    uint64_t sub[NWS];
} env;

static int env_open(env *e, const char *dir, int first)
{
    e->db = open_db(dir);
    if (!e->db)
        return 1;
    for (int w = 0; w < NWS; w++) {
        if (first && w && kd_workspace_create(e->db, WS[w]))
            return 1;
        if (kd_workspace_open(e->db, WS[w], &e->h[w]))
            return 1;
        if (first) {
            /* an index and an auto-refresh view of the same names in each */
            kd_query *q = NULL;
            char err[200];
            if (kd_index_create(e->h[w], "n1", "x") ||
                kd_query_parse("{\"filter\":\"x >= 50\"}", 20, &q, err, sizeof err) ||
                kd_view_create(e->h[w], "big", "n1", q, NULL, 1)) {
                fprintf(stderr, "setup: %s\n", kd_errmsg(e->h[w]));
                kd_query_free(q);
                return 1;
            }
            kd_query_free(q);
        }
        if (kd_subscribe(e->h[w], NULL, &e->sub[w]))
            return 1;
    }
    return 0;
}

static void env_close(env *e)
{
    for (int w = 0; w < NWS; w++) {
        kd_unsubscribe(e->h[w], e->sub[w]);
        kd_close(e->h[w]);
    }
    kd_close(e->db);
}

static void key_name(char *buf, int k)
{
    sprintf(buf, "k%d", k);
}

/* One random operation; 0 on success. */
static int step(env *e, model *m)
{
    int w = (int)rnd(NWS), ns = (int)rnd(NNS), k = (int)rnd(NKEYS), op = (int)rnd(10);
    char key[16], val[32];
    key_name(key, k);
    if (op < 5) {
        int x = (int)rnd(100);
        sprintf(val, "{\"x\":%d}", x);
        if (kd_put(e->h[w], NS[ns], key, val, strlen(val), NULL))
            return 1;
        m->val[w][ns][k] = x;
        m->vers[w][ns][k]++;
        m->writes[w]++;
        m->events[w]++;
    } else if (op < 7) {
        int rc = kd_delete(e->h[w], NS[ns], key, NULL);
        int want = m->val[w][ns][k] == -1 ? KD_ENOTFOUND : m->val[w][ns][k] == -2 ? KD_EDELETED : KD_OK;
        if (rc != want)
            return 1;
        if (!rc) {
            m->val[w][ns][k] = -2;
            m->vers[w][ns][k]++;
            m->writes[w]++;
            m->events[w]++;
        }
    } else if (op < 8) {
        /* a batch over both namespaces */
        kd_write b[2];
        char v0[32], v1[32], k1[16];
        int x0 = (int)rnd(100), x1 = (int)rnd(100), kk = (int)rnd(NKEYS);
        key_name(k1, kk);
        sprintf(v0, "{\"x\":%d}", x0);
        sprintf(v1, "{\"x\":%d}", x1);
        b[0] = (kd_write){NS[0], key, v0, strlen(v0), NULL};
        b[1] = (kd_write){NS[1], k1, v1, strlen(v1), NULL};
        if (kd_put_batch(e->h[w], b, 2, NULL))
            return 1;
        m->val[w][0][k] = x0;
        m->vers[w][0][k]++;
        m->val[w][1][kk] = x1;
        m->vers[w][1][kk]++;
        m->writes[w] += 2;
        m->events[w] += 2;
    } else {
        int vi = (int)rnd(NVEC);
        char vk[16], meta[32];
        sprintf(vk, "v%d", vi);
        if (op == 9 && m->vec[w][vi]) {
            if (kd_vector_delete(e->h[w], "emb", vk, NULL))
                return 1;
            m->vec[w][vi] = 0;
        } else {
            float v[3] = {1.0f + (float)rnd(5), 1.0f + (float)w, 1.0f + (float)vi};
            sprintf(meta, "{\"ws\":\"%s\"}", WS[w]);
            if (kd_vector_put(e->h[w], "emb", vk, "m", v, 3, meta, strlen(meta), NULL))
                return 1;
            m->vec[w][vi] = 1;
        }
        m->vec_writes[w]++;
        m->events[w]++;
    }
    return 0;
}

typedef struct count_ctx {
    int n, bad;
} count_ctx;

static int count_scan(void *ctx, const char *key, const char *value, size_t value_len, const kd_version *v)
{
    (void)key;
    (void)v;
    count_ctx *cc = ctx;
    cc->n++;
    if (value_len < 5 || memcmp(value, "{\"x\":", 5))
        cc->bad++;
    return 0;
}

static int count_change(void *ctx, const kd_change *c)
{
    count_ctx *cc = ctx;
    cc->n++;
    if (has_byte_ff(c->ns))
        cc->bad++;
    return 0;
}

/* Everything workspace w shows agrees with the model. */
static void check_ws(env *e, const model *m, int w, int subs)
{
    kd_db *h = e->h[w];
    char key[16];
    int live_ns[NNS] = {0}, keys = 0, live = 0, versions = 0, big = 0;
    for (int ns = 0; ns < NNS; ns++) {
        for (int k = 0; k < NKEYS; k++) {
            key_name(key, k);
            char *json = NULL;
            size_t len;
            int rc = kd_get(h, NS[ns], key, &json, &len, NULL);
            int want = m->val[w][ns][k];
            if (want == -1) {
                CHECK_RC(rc, KD_ENOTFOUND);
            } else if (want == -2) {
                CHECK_RC(rc, KD_EDELETED);
            } else {
                CHECK_RC(rc, KD_OK);
                char expect[32];
                sprintf(expect, "{\"x\":%d}", want);
                CHECK_EQ_STR(json, expect);
                live_ns[ns]++;
                live++;
                if (ns == 0 && want >= 50)
                    big++;
            }
            kd_free(json);
            kd_version *hist = NULL;
            size_t nh = 0;
            rc = kd_history(h, NS[ns], key, KD_TIME_MIN, KD_TIME_MAX, 0, 0, &hist, &nh);
            CHECK_RC(rc, m->vers[w][ns][k] ? KD_OK : KD_ENOTFOUND);
            CHECK_EQ_INT(nh, m->vers[w][ns][k]);
            kd_free(hist);
            if (m->vers[w][ns][k])
                keys++;
            versions += m->vers[w][ns][k];
        }
        char **list;
        size_t nl;
        CHECK_RC(kd_list_keys(h, NS[ns], NULL, NULL, 0, &list, &nl), KD_OK);
        CHECK_EQ_INT(nl, live_ns[ns]);
        kd_free_list(list, nl);
        count_ctx sc = {0, 0};
        CHECK_RC(kd_scan(h, NS[ns], NULL, NULL, 0, KD_TIME_MAX, count_scan, &sc), KD_OK);
        CHECK_EQ_INT(sc.n, live_ns[ns]);
        CHECK_EQ_INT(sc.bad, 0);
    }
    char **names;
    size_t nn;
    CHECK_RC(kd_list_namespaces(h, &names, &nn), KD_OK);
    CHECK_EQ_INT(nn, (live_ns[0] > 0) + (live_ns[1] > 0));
    for (size_t i = 0; i < nn; i++)
        CHECK(!strcmp(names[i], "n1") || !strcmp(names[i], "n2"));
    kd_free_list(names, nn);

    kd_stats st;
    CHECK_RC(kd_stats_get(h, &st), KD_OK);
    CHECK_EQ_INT(st.keys, keys);
    CHECK_EQ_INT(st.live_keys, live);
    if (w) /* the default handle's figure is the whole database's */
        CHECK_EQ_INT(st.versions, versions);

    /* a query (through the secondary index on x) and the view */
    kd_query *q = NULL;
    char err[200];
    CHECK_RC(kd_query_parse("{\"filter\":\"x >= 50\"}", 20, &q, err, sizeof err), KD_OK);
    kd_result *r = NULL;
    int rc = kd_query_run(h, "n1", q, &r);
    kd_query_free(q);
    CHECK_RC(rc, KD_OK);
    CHECK_EQ_INT(r->n_rows, big);
    kd_result_free(r);
    CHECK_RC(kd_view_query(h, "big", 0, 0, &r), KD_OK);
    CHECK_EQ_INT(r->n_rows, big);
    kd_result_free(r);
    kd_view_info *vl;
    size_t nv;
    CHECK_RC(kd_view_list(h, &vl, &nv), KD_OK);
    CHECK_EQ_INT(nv, 1);
    CHECK_EQ_STR(vl[0].name, "big");
    CHECK_EQ_STR(vl[0].source, "n1");
    kd_view_list_free(vl, nv);
    kd_index_info *il;
    size_t ni;
    CHECK_RC(kd_index_list(h, NULL, &il, &ni), KD_OK);
    CHECK_EQ_INT(ni, 1);
    CHECK_EQ_STR(il[0].ns, "n1");
    kd_index_list_free(il, ni);

    /* vectors: every namespace searched, only this workspace's found */
    int nvec = 0;
    for (int i = 0; i < NVEC; i++)
        nvec += m->vec[w][i];
    float qv[3] = {1, 1, 1};
    kd_vector_hit *hits = NULL;
    size_t nhits = 0;
    CHECK_RC(kd_vector_search(h, NULL, qv, 3, 100, NULL, &hits, &nhits), KD_OK);
    CHECK_EQ_INT(nhits, nvec);
    char meta[32];
    sprintf(meta, "{\"ws\":\"%s\"}", WS[w]);
    for (size_t i = 0; i < nhits; i++) {
        CHECK_EQ_STR(hits[i].ns, "emb");
        CHECK_EQ_STR(hits[i].meta, meta);
    }
    kd_vector_hits_free(hits, nhits);
    kd_vector_info *vi;
    size_t nvi;
    CHECK_RC(kd_vector_stats(h, NULL, &vi, &nvi), KD_OK);
    CHECK_EQ_INT(nvi, nvec ? 1 : 0);
    if (nvi) {
        CHECK_EQ_STR(vi[0].ns, "emb");
        CHECK_EQ_INT(vi[0].vectors, nvec);
    }
    kd_vector_stats_free(vi, nvi);

    /* the change stream: this workspace's writes, vectors included */
    count_ctx cc = {0, 0};
    CHECK_RC(kd_changes(h, NULL, KD_TIME_MIN, count_change, &cc), KD_OK);
    CHECK_EQ_INT(cc.n, m->writes[w] + m->vec_writes[w]);
    CHECK_EQ_INT(cc.bad, 0);

    if (subs) {
        int got = 0;
        kd_event ev;
        while (kd_sub_next(h, e->sub[w], 0, &ev) == KD_OK) {
            CHECK(ev.type != KD_EVENT_MISSED);
            CHECK(!has_byte_ff(ev.ns));
            CHECK(!strcmp(ev.ns, "n1") || !strcmp(ev.ns, "n2") || !strcmp(ev.ns, "_kd.vec.emb"));
            got++;
            kd_event_clear(&ev);
        }
        CHECK_EQ_INT(got, m->events[w]);
        /* another workspace's handle does not reach this subscription */
        CHECK_RC(kd_sub_next(e->h[(w + 1) % NWS], e->sub[w], 0, &ev), KD_ENOTFOUND);
    }
}

static void check_all(env *e, model *m, int subs, int *ok)
{
    *ok = 0;
    for (int w = 0; w < NWS; w++) {
        harness_current_failed = 0;
        check_ws(e, m, w, subs);
        if (harness_current_failed) {
            fprintf(stderr, "  (in workspace %s)\n", WS[w]);
            return;
        }
        m->events[w] = 0;
    }
    *ok = 1;
}

static void test_isolation_property(void)
{
    char dir[256];
    harness_tmpdir("ws", "prop", dir);
    model *m = calloc(1, sizeof *m);
    CHECK(m != NULL);
    memset(m->val, -1, sizeof m->val);
    for (int w = 0; w < NWS; w++)
        for (int ns = 0; ns < NNS; ns++)
            for (int k = 0; k < NKEYS; k++)
                m->val[w][ns][k] = -1;
    env e;
    memset(&e, 0, sizeof e);
    CHECK(env_open(&e, dir, 1) == 0);
    int ok = 0;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 150; i++)
            if (step(&e, m)) {
                fprintf(stderr, "step failed: %s\n", kd_errmsg(e.db));
                CHECK(0);
            }
        check_all(&e, m, 1, &ok);
        CHECK(ok);
        if (round == 1)
            CHECK_RC(kd_checkpoint(e.h[1]), KD_OK); /* the next open starts from it */
        env_close(&e);
        memset(m->events, 0, sizeof m->events);
        CHECK(env_open(&e, dir, 0) == 0);
        check_all(&e, m, 0, &ok);
        CHECK(ok);
    }
    kd_verify_report rep;
    CHECK_RC(kd_verify(e.h[2], &rep), KD_OK);
    env_close(&e);
    free(m);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Backup and restore carry every workspace
 * ---------------------------------------------------------------------- */

static void roots_text(kd_db *db, char *out, size_t len)
{
    kd_root *r;
    size_t n;
    out[0] = '\0';
    if (kd_roots(db, &r, &n))
        return;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, len - l, "%s=%s\n", r[i].name, r[i].hex);
    }
    kd_free(r);
}

typedef struct dump_ctx {
    char buf[8192];
    size_t len;
} dump_ctx;

static int dump_change(void *ctx, const kd_change *c)
{
    dump_ctx *d = ctx;
    d->len += (size_t)snprintf(d->buf + d->len, sizeof d->buf - d->len, "%s/%s=%s %s\n", c->ns, c->key,
                               c->value ? c->value : "-", c->version.write_id);
    return d->len >= sizeof d->buf;
}

static void test_backup_restore(void)
{
    char dir[256], bk[300], dst[300];
    harness_tmpdir("ws", "bk", dir);
    snprintf(bk, sizeof bk, "%s.kdb", dir);
    snprintf(dst, sizeof dst, "%s.restored", dir);
    kd_db *db = open_db(dir), *a = NULL;
    CHECK(db != NULL);
    CHECK_RC(kd_workspace_create(db, "A"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);
    for (int i = 0; i < 20; i++) {
        char k[16], v[32];
        sprintf(k, "k%d", i);
        sprintf(v, "{\"i\":%d}", i);
        CHECK_RC(kd_put(db, "ns", k, v, strlen(v), NULL), KD_OK);
        sprintf(v, "{\"i\":%d}", 100 + i);
        CHECK_RC(kd_put(a, "ns", k, v, strlen(v), NULL), KD_OK);
    }
    CHECK_RC(kd_delete(a, "ns", "k3", NULL), KD_OK);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    char r1[1024], r2[1024];
    roots_text(db, r1, sizeof r1);
    dump_ctx d1a = {{0}, 0}, d1d = {{0}, 0};
    CHECK_RC(kd_changes(a, NULL, KD_TIME_MIN, dump_change, &d1a), KD_OK);
    CHECK_RC(kd_changes(db, NULL, KD_TIME_MIN, dump_change, &d1d), KD_OK);
    CHECK_RC(kd_backup(a, bk, NULL, NULL), KD_OK); /* a workspace handle backs up everything */
    CHECK_RC(kd_close(a), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);

    char err[512];
    const char *files[] = {bk};
    CHECK_RC(kd_restore(files, 1, dst, NULL, err, sizeof err), KD_OK);
    db = open_db(dst);
    CHECK(db != NULL);
    roots_text(db, r2, sizeof r2);
    CHECK_EQ_STR(r1, r2);
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);
    dump_ctx d2a = {{0}, 0}, d2d = {{0}, 0};
    CHECK_RC(kd_changes(a, NULL, KD_TIME_MIN, dump_change, &d2a), KD_OK);
    CHECK_RC(kd_changes(db, NULL, KD_TIME_MIN, dump_change, &d2d), KD_OK);
    CHECK_EQ_STR(d1a.buf, d2a.buf);
    CHECK_EQ_STR(d1d.buf, d2d.buf);
    CHECK(strcmp(d2a.buf, d2d.buf) != 0);
    CHECK(!kd_contains(a, "ns", "k3"));
    CHECK(kd_contains(db, "ns", "k3"));
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_close(a), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    rm_rf(dir);
    rm_rf(dst);
    remove(bk);
}

/* Exporting a workspace's changes and importing them into a workspace of
 * the same name elsewhere reproduces it (write_ids hash the workspace). */
typedef struct imp_ctx {
    kd_db *to;
    int rc;
} imp_ctx;

static int import_change(void *ctx, const kd_change *c)
{
    imp_ctx *x = ctx;
    kd_import im = {c->ns,          c->key,   c->value, c->value_len, c->version.timestamp, c->node_id,
                    c->version.previous_write_id, c->version.write_id};
    x->rc = kd_import_versions(x->to, &im, 1);
    return x->rc;
}

static void test_export_import(void)
{
    char d1[256], d2[256];
    harness_tmpdir("ws", "ex1", d1);
    harness_tmpdir("ws", "ex2", d2);
    kd_db *s = open_db(d1), *t = open_db(d2), *sa = NULL, *ta = NULL, *tb = NULL;
    CHECK(s && t);
    CHECK_RC(kd_workspace_create(s, "A"), KD_OK);
    CHECK_RC(kd_workspace_create(t, "A"), KD_OK);
    CHECK_RC(kd_workspace_create(t, "B"), KD_OK);
    CHECK_RC(kd_workspace_open(s, "A", &sa), KD_OK);
    CHECK_RC(kd_workspace_open(t, "A", &ta), KD_OK);
    CHECK_RC(kd_workspace_open(t, "B", &tb), KD_OK);
    CHECK_RC(kd_put(sa, "n", "k", "1", 1, NULL), KD_OK);
    CHECK_RC(kd_put(sa, "n", "k", "2", 1, NULL), KD_OK);
    imp_ctx x = {ta, 0};
    CHECK_RC(kd_changes(sa, NULL, KD_TIME_MIN, import_change, &x), KD_OK);
    char *json;
    CHECK_RC(kd_get(ta, "n", "k", &json, NULL, NULL), KD_OK);
    CHECK_EQ_STR(json, "2");
    kd_free(json);
    CHECK(!kd_contains(t, "n", "k"));
    /* into another workspace the write_ids do not match */
    x.to = tb;
    CHECK_RC(kd_changes(sa, NULL, KD_TIME_MIN, import_change, &x), KD_EINVALID);
    CHECK(!kd_contains(tb, "n", "k"));
    kd_close(sa);
    kd_close(ta);
    kd_close(tb);
    kd_close(s);
    kd_close(t);
    rm_rf(d1);
    rm_rf(d2);
}

/* kd_workspace_create_at: the creation at a given time, after everything
 * in the database and not in the future (what importing a workspace's
 * history into a new database needs). */
static void test_create_at(void)
{
    char d[256];
    harness_tmpdir("ws", "at", d);
    kd_db *db = open_db(d), *a = NULL;
    CHECK(db);
    int64_t at = kd_now() - 1000000000;
    CHECK_RC(kd_workspace_create_at(db, "A", at), KD_OK);
    kd_version *h = NULL;
    size_t n = 0;
    kd__allow_reserved(1);
    int rc = kd_history(db, "_kd.workspaces", "A", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n);
    kd__allow_reserved(0);
    CHECK_RC(rc, KD_OK);
    CHECK(n == 1 && h[0].timestamp == at);
    kd_free(h);
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);
    kd_version v;
    CHECK_RC(kd_put(a, "n", "k", "1", 1, &v), KD_OK);
    CHECK(v.timestamp > at);
    /* not after the newest write, or in the future: refused, nothing made */
    CHECK_RC(kd_workspace_create_at(db, "B", v.timestamp), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "newest write") != NULL);
    CHECK_RC(kd_workspace_create_at(db, "B", kd_now() + 3600000000000LL), KD_EINVALID);
    CHECK(strstr(kd_errmsg(db), "future") != NULL);
    kd_db *b = NULL;
    CHECK_RC(kd_workspace_open(db, "B", &b), KD_ENOTFOUND);
    CHECK_RC(kd_workspace_create_at(db, "B", 0), KD_OK); /* 0: now */
    kd_verify_report vr;
    CHECK_RC(kd_verify(db, &vr), KD_OK);
    kd_close(a);
    kd_close(db);
    rm_rf(d);
}

/* kd_workspace_import: into a workspace that does not exist, it is made
 * just before the history, and only when the history imports; refused (a
 * history recorded in another workspace), nothing is made. */
typedef struct keep_ctx {
    kd_import v[8];
    char text[8][4][80]; /* ns, key, value, node_id, previous, write_id: copies */
    char ids[8][2][KD_ID_HEX];
    size_t n;
} keep_ctx;

static int keep_change(void *ctx, const kd_change *c)
{
    keep_ctx *k = ctx;
    if (k->n == 8)
        return 1;
    size_t i = k->n++;
    snprintf(k->text[i][0], 80, "%s", c->ns);
    snprintf(k->text[i][1], 80, "%s", c->key);
    snprintf(k->text[i][2], 80, "%.*s", (int)c->value_len, c->value ? c->value : "");
    snprintf(k->text[i][3], 80, "%s", c->node_id);
    snprintf(k->ids[i][0], KD_ID_HEX, "%s", c->version.previous_write_id);
    snprintf(k->ids[i][1], KD_ID_HEX, "%s", c->version.write_id);
    k->v[i] = (kd_import){k->text[i][0], k->text[i][1], c->value ? k->text[i][2] : NULL, c->value_len,
                          c->version.timestamp, k->text[i][3], k->ids[i][0], k->ids[i][1]};
    return 0;
}

static void test_workspace_import(void)
{
    char d1[256], d2[256];
    harness_tmpdir("ws", "imp1", d1);
    harness_tmpdir("ws", "imp2", d2);
    kd_db *src = open_db(d1), *dst = NULL, *a = NULL;
    CHECK(src);
    CHECK_RC(kd_workspace_create(src, "A"), KD_OK);
    CHECK_RC(kd_workspace_open(src, "A", &a), KD_OK);
    CHECK_RC(kd_put(a, "n", "k", "1", 1, NULL), KD_OK);
    CHECK_RC(kd_put(a, "n", "k", "2", 1, NULL), KD_OK);
    CHECK_RC(kd_put(a, "n", "j", "[3]", 3, NULL), KD_OK);
    keep_ctx *k = calloc(1, sizeof *k);
    CHECK(k);
    CHECK_RC(kd_changes(a, NULL, KD_TIME_MIN, keep_change, k), KD_OK);
    CHECK_EQ_INT(k->n, 3);
    kd_close(a);
    kd_close(src);
    dst = open_db(d2);
    CHECK(dst);
    int created = -1;
    CHECK_RC(kd_workspace_import(dst, "B", k->v, k->n, &created), KD_EINVALID); /* recorded in A */
    CHECK(strstr(kd_errmsg(dst), "does not match") != NULL);
    CHECK_EQ_INT(created, 0);
    char **names = NULL;
    size_t nn = 0;
    CHECK_RC(kd_workspace_list(dst, &names, &nn), KD_OK);
    CHECK_EQ_INT(nn, 1); /* default only: nothing was made */
    kd_free_list(names, nn);
    CHECK_RC(kd_workspace_import(dst, "A", k->v, 2, &created), KD_OK);
    CHECK_EQ_INT(created, 1);
    CHECK_RC(kd_workspace_import(dst, "A", k->v + 2, 1, &created), KD_OK); /* exists now */
    CHECK_EQ_INT(created, 0);
    CHECK_RC(kd_workspace_open(dst, "A", &a), KD_OK);
    char *json = NULL;
    size_t len = 0;
    CHECK_RC(kd_get(a, "n", "j", &json, &len, NULL), KD_OK);
    CHECK(len == 3 && !memcmp(json, "[3]", 3));
    kd_free(json);
    kd_verify_report vr;
    CHECK_RC(kd_verify(dst, &vr), KD_OK);
    kd_close(a);
    kd_close(dst);
    free(k);
    rm_rf(d1);
    rm_rf(d2);
}

/* A caller on the default workspace cannot reach another workspace by
 * spelling its internal name ("ws" 0xFF "ns"): such names are refused. */
static void test_no_way_around(void)
{
    char dir[256];
    harness_tmpdir("ws", "guard", dir);
    kd_db *db = open_db(dir), *a = NULL;
    CHECK(db != NULL);
    CHECK_RC(kd_workspace_create(db, "A"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);
    CHECK_RC(kd_put(a, "users", "u", "1", 1, NULL), KD_OK);
    float v[2] = {1, 0};
    CHECK_RC(kd_vector_put(a, "emb", "x", "m", v, 2, NULL, 0, NULL), KD_OK);
    const char *q = "A\xffusers";
    CHECK_RC(kd_put(db, q, "u", "2", 1, NULL), KD_EINVALID);
    CHECK_RC(kd_get(db, q, "u", NULL, NULL, NULL), KD_EINVALID);
    CHECK(!kd_contains(db, q, "u"));
    CHECK_RC(kd_delete(db, q, "u", NULL), KD_EINVALID);
    kd_version *h = NULL;
    size_t nh = 0;
    CHECK_RC(kd_history(db, q, "u", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &nh), KD_EINVALID);
    char **l = NULL;
    size_t nl = 0;
    CHECK_RC(kd_list_keys(db, q, NULL, NULL, 0, &l, &nl), KD_EINVALID);
    kd_write w = {q, "u", "3", 1, NULL};
    CHECK_RC(kd_put_batch(db, &w, 1, NULL), KD_EINVALID);
    kd_import im = {q, "u", "4", 1, kd_now(), "00000000000000000000000000000000", NULL, "00"};
    CHECK_RC(kd_import_versions(db, &im, 1), KD_EINVALID);
    kd_vector *vec = NULL;
    CHECK_RC(kd_vector_get(db, "A\xff" "emb", "x", &vec), KD_EINVALID);
    CHECK_RC(kd_vector_put(db, "A\xff" "emb", "y", "m", v, 2, NULL, 0, NULL), KD_EINVALID);
    CHECK_RC(kd_index_create(db, q, "x"), KD_EINVALID);
    kd_query *qq = NULL;
    char err[200];
    CHECK_RC(kd_query_parse("{}", 2, &qq, err, sizeof err), KD_OK);
    kd_result *r = NULL;
    int rc = kd_query_run(db, q, qq, &r);
    CHECK_RC(kd_view_create(db, "v", q, qq, NULL, 1), KD_EINVALID);
    kd_query_free(qq);
    CHECK_RC(rc, KD_EINVALID);
    /* nothing changed in A */
    char *json = NULL;
    CHECK_RC(kd_get(a, "users", "u", &json, NULL, NULL), KD_OK);
    CHECK_EQ_STR(json, "1");
    kd_free(json);
    CHECK_RC(kd_history(a, "users", "u", KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &nh), KD_OK);
    CHECK_EQ_INT(nh, 1);
    kd_free(h);
    kd_close(a);
    kd_close(db);
    rm_rf(dir);
}

static void on_lost(void *ctx, const char *what)
{
    (void)ctx;
    fprintf(stderr, "lost: %s\n", what);
}

/* Repair salvages every workspace's writes into the same workspace. */
static void test_repair_keeps_workspaces(void)
{
    char dir[256];
    harness_tmpdir("ws", "repair", dir);
    kd_db *db = open_db(dir), *a = NULL;
    CHECK(db != NULL);
    CHECK_RC(kd_workspace_create(db, "A"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);
    CHECK_RC(kd_put(a, "n", "k", "\"in A\"", 6, NULL), KD_OK);
    CHECK_RC(kd_put(db, "n", "k", "\"in default\"", 12, NULL), KD_OK);
    kd_query *q = NULL;
    char err[512];
    CHECK_RC(kd_query_parse("{}", 2, &q, err, sizeof err), KD_OK);
    CHECK_RC(kd_view_create(a, "all", "n", q, NULL, 1), KD_OK);
    kd_query_free(q);
    char r1[1024], r2[1024];
    roots_text(db, r1, sizeof r1);
    kd_close(a);
    kd_close(db);
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_repair_report rep;
    char kept[512];
    int rc = kd_repair(dir, o, on_lost, NULL, &rep, kept, sizeof kept, err, sizeof err);
    kd_options_free(o);
    if (rc)
        fprintf(stderr, "repair: %s\n", err);
    CHECK_RC(rc, KD_OK);
    CHECK_EQ_INT(rep.versions_lost, 0);
    db = open_db(dir);
    CHECK(db != NULL);
    roots_text(db, r2, sizeof r2);
    CHECK_EQ_STR(r1, r2);
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);
    char *json = NULL;
    CHECK_RC(kd_get(a, "n", "k", &json, NULL, NULL), KD_OK);
    CHECK_EQ_STR(json, "\"in A\"");
    kd_free(json);
    CHECK_RC(kd_get(db, "n", "k", &json, NULL, NULL), KD_OK);
    CHECK_EQ_STR(json, "\"in default\"");
    kd_free(json);
    kd_result *res = NULL;
    CHECK_RC(kd_view_query(a, "all", 0, 0, &res), KD_OK);
    CHECK_EQ_INT(res->n_rows, 1);
    kd_result_free(res);
    kd_close(a);
    kd_close(db);
    rm_rf(dir);
    if (kept[0])
        rm_rf(kept);
}

/* kd_newest_write of a namespace against the timestamps its writes got,
 * for every `at` from before the first write to after the last: its answer
 * comes from the namespace's ring of recent writes when the ring holds it,
 * else from a walk of its keys (an `at` older than the ring, or a reopened
 * database whose ring starts empty). */
static void check_newest_all(kd_db *db, const char *ns, const int64_t *ts, size_t n)
{
    for (size_t i = 0; i <= n; i++) {
        int64_t at = i < n ? ts[i] : KD_TIME_MAX, got = -1;
        CHECK_RC(kd_newest_write(db, ns, NULL, at, &got), KD_OK);
        CHECK(got == (i < n ? ts[i] : ts[n - 1]));
        CHECK_RC(kd_newest_write(db, ns, NULL, at - 1, &got), KD_OK);
        CHECK(got == (i == 0 ? 0 : i < n ? ts[i - 1] : ts[n - 1]));
    }
}

static void test_newest_write_ring(void)
{
    char dir[256];
    harness_tmpdir("ws", "newest_ring", dir);
    kd_db *db = NULL;
    char err[256];
    CHECK_RC(kd_open(dir, NULL, &db, err, sizeof err), KD_OK);
    enum { N = 100 }; /* over three times the ring */
    int64_t ts[N + 10];
    kd_version v;
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i % 7);
        if (i % 5 == 4 && i >= 7 && (i - 7) % 5 != 4) /* the key is live: put at i - 7 */
            CHECK_RC(kd_delete(db, "n", key, &v), KD_OK);
        else
            CHECK_RC(kd_put(db, "n", key, "1", 1, &v), KD_OK);
        ts[i] = v.timestamp;
        CHECK_RC(kd_put(db, "other", key, "2", 1, NULL), KD_OK); /* not n's */
    }
    check_newest_all(db, "n", ts, N);
    CHECK_RC(kd_checkpoint(db), KD_OK); /* the next open reads the index from it, not the log */
    kd_close(db);
    CHECK_RC(kd_open(dir, NULL, &db, err, sizeof err), KD_OK);
    check_newest_all(db, "n", ts, N); /* an empty ring: walks, then the seed */
    check_newest_all(db, "n", ts, N);
    for (int i = N; i < N + 10; i++) { /* a ring shorter than the history */
        CHECK_RC(kd_put(db, "n", "k", "3", 1, &v), KD_OK);
        ts[i] = v.timestamp;
    }
    check_newest_all(db, "n", ts, N + 10);

    /* Versions that went with a dropped workspace (dropped, compacted,
     * made again) are no one's newest write, from the ring as by a walk. */
    kd_db *w = NULL;
    CHECK_RC(kd_workspace_create(db, "W"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    for (int i = 0; i < 5; i++)
        CHECK_RC(kd_put(w, "n", "k", "4", 1, NULL), KD_OK);
    kd_close(w);
    CHECK_RC(kd_workspace_drop(db, "W"), KD_OK);
    kd_compact_report rep;
    CHECK_RC(kd_compact(db, 0, &rep), KD_OK);
    CHECK_RC(kd_workspace_create(db, "W"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "W", &w), KD_OK);
    int64_t got = -1;
    CHECK_RC(kd_newest_write(w, "n", NULL, KD_TIME_MAX, &got), KD_OK);
    CHECK(got == 0);
    CHECK_RC(kd_put(w, "n", "k2", "5", 1, &v), KD_OK);
    CHECK_RC(kd_newest_write(w, "n", NULL, KD_TIME_MAX, &got), KD_OK);
    CHECK(got == v.timestamp);
    CHECK_RC(kd_newest_write(w, "n", NULL, v.timestamp - 1, &got), KD_OK);
    CHECK(got == 0);
    kd_close(w);
    kd_close(db);
    rm_rf(dir);
}

/* kd_newest_write: the newest visible write of a key or namespace of the
 * handle's own workspace, deletions included; nothing of other workspaces
 * or of writes not yet durable (deferred under sync=always). */
static void test_newest_write(void)
{
    char dir[256];
    harness_tmpdir("ws", "newest", dir);
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_ALWAYS, 0);
    kd_db *db = NULL, *a = NULL;
    char err[256];
    CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
    kd_options_free(o);
    CHECK_RC(kd_workspace_create(db, "A"), KD_OK);
    CHECK_RC(kd_workspace_open(db, "A", &a), KD_OK);

    int64_t ts = -1;
    CHECK_RC(kd_newest_write(a, "n", NULL, KD_TIME_MAX, &ts), KD_OK);
    CHECK(ts == 0); /* no such namespace */
    kd_version v1, v2, v3, v4;
    CHECK_RC(kd_put(db, "n", "k1", "1", 1, &v1), KD_OK);
    CHECK_RC(kd_put(a, "n", "x", "2", 1, &v2), KD_OK);
    CHECK_RC(kd_delete(a, "n", "x", &v3), KD_OK);
    CHECK_RC(kd_put(db, "n", "k2", "3", 1, &v4), KD_OK);
    CHECK(v1.timestamp < v2.timestamp && v2.timestamp < v3.timestamp && v3.timestamp < v4.timestamp);

    CHECK_RC(kd_newest_write(a, "n", NULL, KD_TIME_MAX, &ts), KD_OK);
    CHECK(ts == v3.timestamp); /* the deletion; not default's later write */
    CHECK_RC(kd_newest_write(a, "n", "x", KD_TIME_MAX, &ts), KD_OK);
    CHECK(ts == v3.timestamp);
    CHECK_RC(kd_newest_write(db, "n", NULL, KD_TIME_MAX, &ts), KD_OK);
    CHECK(ts == v4.timestamp);
    CHECK_RC(kd_newest_write(db, "n", "k1", KD_TIME_MAX, &ts), KD_OK);
    CHECK(ts == v1.timestamp);
    CHECK_RC(kd_newest_write(db, "n", "nope", KD_TIME_MAX, &ts), KD_OK);
    CHECK(ts == 0);
    CHECK_RC(kd_newest_write(a, "other", NULL, KD_TIME_MAX, &ts), KD_OK);
    CHECK(ts == 0);

    /* A deferred write counts once it is durable (visible), not before. */
    kd_defer_begin(a);
    kd_version v5;
    CHECK_RC(kd_put(a, "n", "y", "4", 1, &v5), KD_OK);
    uint64_t ticket = kd_defer_end(a);
    CHECK(ticket != 0);
    CHECK_RC(kd_newest_write(a, "n", NULL, KD_TIME_MAX, &ts), KD_OK);
    CHECK(ts == v3.timestamp);
    CHECK_RC(kd_sync_ticket(a, ticket), KD_OK);
    CHECK_RC(kd_newest_write(a, "n", NULL, KD_TIME_MAX, &ts), KD_OK);
    CHECK(ts == v5.timestamp);

    /* at bounds it: the newest write at or before a time */
    CHECK_RC(kd_newest_write(db, "n", NULL, v4.timestamp - 1, &ts), KD_OK);
    CHECK(ts == v1.timestamp);
    CHECK_RC(kd_newest_write(a, "n", NULL, v3.timestamp - 1, &ts), KD_OK);
    CHECK(ts == v2.timestamp);
    CHECK_RC(kd_newest_write(a, "n", NULL, v1.timestamp, &ts), KD_OK);
    CHECK(ts == 0);

    CHECK_RC(kd_newest_write(a, NULL, NULL, KD_TIME_MAX, &ts), KD_EINVALID);
    CHECK_RC(kd_newest_write(a, "n", "", KD_TIME_MAX, &ts), KD_EINVALID);
    CHECK_RC(kd_newest_write(a, "_kd.auth", NULL, KD_TIME_MAX, &ts), KD_ERESERVED);
    char big[1100];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_RC(kd_newest_write(a, "n", big, KD_TIME_MAX, &ts), KD_ETOOBIG);
    CHECK_RC(kd_newest_write(a, "n", NULL, KD_TIME_MAX, NULL), KD_EMISUSE);
    CHECK_RC(kd_newest_write(NULL, "n", NULL, KD_TIME_MAX, &ts), KD_EMISUSE);
    kd_close(a);
    kd_close(db);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_api);
    RUN(test_no_way_around);
    RUN(test_repair_keeps_workspaces);
    RUN(test_isolation_property);
    RUN(test_backup_restore);
    RUN(test_export_import);
    RUN(test_create_at);
    RUN(test_workspace_import);
    RUN(test_newest_write);
    RUN(test_newest_write_ring);
    return HARNESS_DONE();
}
