/*
 * workloads_auth.c — what the server's auth checks cost per call: checking
 * an identity document (proof of work recomputed, fields checked), a
 * login signature, a signed capability (Ed25519 verify of its canonical
 * JSON), and hashing a session token (what every authenticated request
 * does before its lookup). There is no peer: each is one OpenSSL call plus
 * our parsing, and bench/http/run.py measures the requests/s that matter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* Run fn n times; ns per call. */
static double per_call(int (*fn)(void *), void *arg, int n)
{
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < n; i++)
        if (fn(arg) != KD_OK)
            bench_die("auth_verify: a check failed that must pass");
    return (double)(bench_now_ns() - t0) / n;
}

typedef struct auth_fixture {
    char *doc;
    size_t doc_len;
    char *grant;
    size_t grant_len;
    char key[KD_AUTH_KEY_HEX];
    char challenge[65];
    char sig[KD_AUTH_SIG_HEX];
    char token[65];
} auth_fixture;

static int check_identity(void *arg)
{
    auth_fixture *f = arg;
    char key[KD_AUTH_KEY_HEX], err[128];
    return kd_auth_check_identity(f->doc, f->doc_len, 8, key, NULL, NULL, NULL, err, sizeof err);
}

static int check_grant(void *arg)
{
    auth_fixture *f = arg;
    kd_grant g;
    char err[128];
    return kd_grant_verify(f->grant, f->grant_len, &g, err, sizeof err);
}

static int check_login(void *arg)
{
    auth_fixture *f = arg;
    return kd_auth_verify_login(f->key, f->challenge, "bench-server", "login", f->sig);
}

static int hash_token(void *arg)
{
    auth_fixture *f = arg;
    char h[KD_AUTH_KEY_HEX];
    return kd_auth_token_hash(f->token, h);
}

void bench_w_auth_verify(void)
{
    bench_result *r = bench_result_new("auth_verify", "checks/s");
    if (!(g_cfg.sides & BENCH_SIDE_KD))
        return;
    kd_identity *id = NULL;
    char err[256];
    if (kd_identity_generate("bench", 8, &id, err, sizeof err) != KD_OK)
        bench_die("kd_identity_generate: %s", err);
    auth_fixture f = {0};
    if (kd_identity_document(id, &f.doc, &f.doc_len) != KD_OK)
        bench_die("kd_identity_document failed");
    snprintf(f.key, sizeof f.key, "%s", kd_identity_key(id));
    kd_grant g = {0};
    snprintf(g.grantee, sizeof g.grantee, "%s", f.key);
    snprintf(g.workspace, sizeof g.workspace, "default");
    snprintf(g.ns_pattern, sizeof g.ns_pattern, "orders*");
    g.perm = KD_PERM_WRITE;
    if (kd_grant_sign(id, &g, &f.grant, &f.grant_len, err, sizeof err) != KD_OK)
        bench_die("kd_grant_sign: %s", err);
    if (kd_auth_random_hex(32, f.challenge) != KD_OK || kd_auth_random_hex(32, f.token) != KD_OK ||
        kd_identity_sign_login(id, f.challenge, "bench-server", "login", f.sig) != KD_OK)
        bench_die("auth_verify: cannot prepare a login");
    int n = g_cfg.quick ? 200 : 5000;
    double ident = per_call(check_identity, &f, n);
    double grant = per_call(check_grant, &f, n);
    double login = per_call(check_login, &f, n);
    double token = per_call(hash_token, &f, n * 20);
    r->kd.ran = 1;
    r->kd.ops = (uint64_t)n;
    r->kd.rate = 1e9 / grant;
    r->kd.seconds = grant * n / 1e9;
    r->kd.median_ns = r->kd.p99_ns = -1;
    snprintf(r->kd.text, sizeof r->kd.text, "%.1f us/grant", grant / 1e3);
    r->no_ratio = 1;
    r->met = -1;
    bench_result_extra(r, "identity_check_us", ident / 1e3);
    bench_result_extra(r, "grant_verify_us", grant / 1e3);
    bench_result_extra(r, "login_verify_us", login / 1e3);
    bench_result_extra(r, "token_hash_ns", token);
    snprintf(r->note, sizeof r->note,
             "per call: identity document check %.1f us (proof of work recomputed), signed capability verify %.1f "
             "us (the server caches verified grants by id), login signature %.1f us, session token hash %.0f ns "
             "(every authenticated request)",
             ident / 1e3, grant / 1e3, login / 1e3, token);
    kd_free(f.doc);
    kd_free(f.grant);
    kd_identity_free(id);
}
