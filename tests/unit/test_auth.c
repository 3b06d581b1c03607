/*
 * test_auth.c — unit tests for the auth subsystem (src/auth): identities
 * and their proof of work, key files, signatures and login messages,
 * token hashing, capabilities (signing, tampering, scope matching) and the
 * auth causal root.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "korudelta.h"

static kd_identity *make(const char *name, unsigned bits)
{
    kd_identity *id = NULL;
    char err[256];
    if (kd_identity_generate(name, bits, &id, err, sizeof err) != KD_OK) {
        fprintf(stderr, "generate: %s\n", err);
        return NULL;
    }
    return id;
}

/* Leading zero bits of the SHA-256 of the document, counted here from
 * the hex digest the check function cannot see: mine again via check. */
static void test_pow(void)
{
    kd_identity *id = make("alice", 10);
    CHECK(id);
    char *doc = NULL;
    size_t len = 0;
    CHECK_RC(kd_identity_document(id, &doc, &len), KD_OK);
    char key[KD_AUTH_KEY_HEX], err[256];
    unsigned bits = 0;
    CHECK_RC(kd_auth_check_identity(doc, len, 10, key, &bits, NULL, NULL, err, sizeof err), KD_OK);
    CHECK(bits >= 10);
    CHECK_EQ_STR(key, kd_identity_key(id));
    /* A minimum above what was mined is refused, whatever the document says. */
    CHECK_RC(kd_auth_check_identity(doc, len, bits + 1, key, NULL, NULL, NULL, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "proof of work too weak"));
    /* Changing the nonce breaks the work (almost surely: 2^-10 chance of
     * still passing, so the check uses bits + 1 on a changed nonce... we
     * instead assert the count moved or stayed below the minimum). */
    char *n = strstr(doc, "\"nonce\":");
    CHECK(n);
    char *bad = malloc(len + 32);
    CHECK(bad);
    int pre = (int)(n - doc) + 8;
    const char *after = n + 8 + strspn(n + 8, "0123456789");
    unsigned long long nonce = strtoull(n + 8, NULL, 10);
    int found_weak = 0;
    for (unsigned long long k = 1; k < 64 && !found_weak; k++) {
        snprintf(bad, len + 32, "%.*s%llu%s", pre, doc, nonce + k, after);
        unsigned b2 = 0;
        int rc = kd_auth_check_identity(bad, strlen(bad), 0, key, &b2, NULL, NULL, err, sizeof err);
        CHECK_RC(rc, KD_OK);
        if (b2 < 10)
            found_weak = 1;
    }
    CHECK(found_weak);
    /* A claimed "difficulty" member is not part of the document: refused. */
    snprintf(bad, len + 32, "%.*s,\"difficulty\":99}", (int)len - 1, doc);
    CHECK_RC(kd_auth_check_identity(bad, strlen(bad), 0, key, NULL, NULL, NULL, err, sizeof err), KD_EINVALID);
    free(bad);
    kd_free(doc);
    kd_identity_free(id);
}

static void test_identity_bad_documents(void)
{
    char key[KD_AUTH_KEY_HEX], err[256];
    const char *bad[] = {
        "",
        "[]",
        "{}",
        "{\"created_at\":\"2026-01-01T00:00:00.000000000Z\",\"nonce\":1,\"public_key\":\"zz\",\"user_data\":{}}",
        "{\"created_at\":\"yesterday\",\"nonce\":1,\"public_key\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"user_data\":{}}",
        "{\"created_at\":\"2026-01-01T00:00:00.000000000Z\",\"nonce\":-1,\"public_key\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"user_data\":{}}",
        "{\"created_at\":\"2026-01-01T00:00:00.000000000Z\",\"nonce\":1.5,\"public_key\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"user_data\":{}}",
        "{\"created_at\":\"2026-01-01T00:00:00.000000000Z\",\"nonce\":1,\"public_key\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"user_data\":[]}",
        "{\"created_at\":\"2026-01-01T00:00:00.000000000Z\",\"nonce\":1,\"public_key\":"
        "\"00000000000000000000000000000000000000000000000000000000000000AA\",\"user_data\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK_RC(kd_auth_check_identity(bad[i], strlen(bad[i]), 0, key, NULL, NULL, NULL, err, sizeof err),
                 KD_EINVALID);
        CHECK(err[0]);
    }
    /* The same document with a valid key shape passes at difficulty 0. */
    const char *ok = "{\"created_at\":\"2026-01-01T00:00:00.000000000Z\",\"nonce\":1,\"public_key\":"
                     "\"00000000000000000000000000000000000000000000000000000000000000aa\",\"user_data\":{}}";
    CHECK_RC(kd_auth_check_identity(ok, strlen(ok), 0, key, NULL, NULL, NULL, err, sizeof err), KD_OK);
}

/* Public keys no secret belongs to: the eight points of small order (each
 * sign of x) and encodings of y >= p. A "signature" by one needs no
 * secret (R = the neutral point or the key itself, S = 0 verified under
 * OpenSSL for two of them), so identities with them are refused and no
 * signature by them verifies. */
static void test_weak_keys_refused(void)
{
    static const char *const weak[] = {
        "0100000000000000000000000000000000000000000000000000000000000000", /* order 1 */
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* order 2 */
        "0000000000000000000000000000000000000000000000000000000000000000", /* order 4 */
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", /* order 8 */
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* y = p */
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", /* y = p + 1 */
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    };
    for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++) {
        char doc[400], key[KD_AUTH_KEY_HEX], err[256] = "";
        snprintf(doc, sizeof doc,
                 "{\"created_at\":\"2026-01-01T00:00:00.000000000Z\",\"nonce\":1,\"public_key\":\"%s\","
                 "\"user_data\":{}}", weak[i]);
        CHECK_RC(kd_auth_check_identity(doc, strlen(doc), 0, key, NULL, NULL, NULL, err, sizeof err), KD_EINVALID);
        CHECK(strstr(err, "small order") != NULL);
        char neutral_r[129], self_r[129];
        snprintf(neutral_r, sizeof neutral_r, "%s%064d", weak[0], 0);
        snprintf(self_r, sizeof self_r, "%s%064d", weak[i], 0);
        CHECK_RC(kd_auth_verify(weak[i], "any message", 11, neutral_r), KD_EINVALID);
        CHECK_RC(kd_auth_verify(weak[i], "any message", 11, self_r), KD_EINVALID);
    }
    /* y = p - 2, a canonical y of no small-order point, is not refused as weak. */
    const char *fine = "{\"created_at\":\"2026-01-01T00:00:00.000000000Z\",\"nonce\":1,\"public_key\":"
                       "\"ebffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f\",\"user_data\":{}}";
    char key[KD_AUTH_KEY_HEX], err[256];
    CHECK_RC(kd_auth_check_identity(fine, strlen(fine), 0, key, NULL, NULL, NULL, err, sizeof err), KD_OK);
}

static void test_keyfile_roundtrip(void)
{
    kd_identity *id = make("bob \"the\" builder", 4);
    CHECK(id);
    char *kf = NULL;
    size_t kl = 0;
    CHECK_RC(kd_identity_keyfile(id, &kf, &kl), KD_OK);
    CHECK(strstr(kf, "\"secret_key\":\""));
    CHECK(strstr(kf, "\"format\":\"korudelta-identity-v1\""));
    kd_identity *back = NULL;
    char err[256];
    CHECK_RC(kd_identity_load(kf, kl, &back, err, sizeof err), KD_OK);
    CHECK_EQ_STR(kd_identity_key(back), kd_identity_key(id));
    char *d1, *d2;
    CHECK_RC(kd_identity_document(id, &d1, NULL), KD_OK);
    CHECK_RC(kd_identity_document(back, &d2, NULL), KD_OK);
    CHECK_EQ_STR(d1, d2);
    CHECK(strstr(d1, "secret") == NULL);
    kd_free(d1);
    kd_free(d2);
    kd_identity_free(back);
    back = NULL;
    /* A secret key that does not match the public key is refused. */
    char *s = strstr(kf, "\"secret_key\":\"");
    CHECK(s);
    s += 14;
    *s = *s == '0' ? '1' : '0';
    CHECK_RC(kd_identity_load(kf, kl, &back, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "does not belong"));
    CHECK_RC(kd_identity_load("{\"format\":\"x\"}", 14, &back, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_identity_load("not json", 8, &back, err, sizeof err), KD_EINVALID);
    kd_identity_free(back);
    kd_free(kf);
    kd_identity_free(id);
    CHECK_RC(kd_identity_generate(NULL, KD_AUTH_MAX_DIFFICULTY + 1, &id, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_identity_generate("", 0, &id, err, sizeof err), KD_EINVALID);
}

static void test_signatures(void)
{
    kd_identity *a = make(NULL, 0), *b = make(NULL, 0);
    CHECK(a && b);
    char sig[KD_AUTH_SIG_HEX];
    CHECK_RC(kd_identity_sign(a, "hello", 5, sig), KD_OK);
    CHECK_EQ_INT(strlen(sig), 128);
    CHECK_RC(kd_auth_verify(kd_identity_key(a), "hello", 5, sig), KD_OK);
    CHECK_RC(kd_auth_verify(kd_identity_key(a), "hellp", 5, sig), KD_EINVALID);
    CHECK_RC(kd_auth_verify(kd_identity_key(b), "hello", 5, sig), KD_EINVALID);
    sig[10] = sig[10] == 'a' ? 'b' : 'a';
    CHECK_RC(kd_auth_verify(kd_identity_key(a), "hello", 5, sig), KD_EINVALID);
    CHECK_RC(kd_auth_verify(kd_identity_key(a), "hello", 5, "abc"), KD_EINVALID);
    CHECK_RC(kd_auth_verify("xyz", "hello", 5, sig), KD_EINVALID);

    /* Login messages: bound to challenge, server and purpose. */
    char ch[65], ch2[65];
    CHECK_RC(kd_auth_random_hex(32, ch), KD_OK);
    CHECK_RC(kd_auth_random_hex(32, ch2), KD_OK);
    CHECK(strcmp(ch, ch2) != 0);
    CHECK_RC(kd_identity_sign_login(a, ch, "server-1", "login", sig), KD_OK);
    CHECK_RC(kd_auth_verify_login(kd_identity_key(a), ch, "server-1", "login", sig), KD_OK);
    CHECK_RC(kd_auth_verify_login(kd_identity_key(a), ch2, "server-1", "login", sig), KD_EINVALID);
    CHECK_RC(kd_auth_verify_login(kd_identity_key(a), ch, "server-2", "login", sig), KD_EINVALID);
    CHECK_RC(kd_auth_verify_login(kd_identity_key(a), ch, "server-1", "grant", sig), KD_EINVALID);
    CHECK_RC(kd_auth_verify_login(kd_identity_key(b), ch, "server-1", "login", sig), KD_EINVALID);
    CHECK_RC(kd_identity_sign_login(a, "short", "server-1", "login", sig), KD_EINVALID);
    /* A plain signature over other bytes is no login signature. */
    CHECK_RC(kd_identity_sign(a, ch, 64, sig), KD_OK);
    CHECK_RC(kd_auth_verify_login(kd_identity_key(a), ch, "server-1", "login", sig), KD_EINVALID);
    kd_identity_free(a);
    kd_identity_free(b);
}

static void test_token_hash(void)
{
    char h1[KD_AUTH_KEY_HEX], h2[KD_AUTH_KEY_HEX], tok[65];
    CHECK_RC(kd_auth_random_hex(32, tok), KD_OK);
    CHECK_RC(kd_auth_token_hash(tok, h1), KD_OK);
    CHECK_RC(kd_auth_token_hash(tok, h2), KD_OK);
    CHECK_EQ_STR(h1, h2);
    CHECK(strcmp(h1, tok) != 0);
    CHECK_EQ_INT(strlen(h1), 64);
    tok[0] = tok[0] == 'a' ? 'b' : 'a';
    CHECK_RC(kd_auth_token_hash(tok, h2), KD_OK);
    CHECK(strcmp(h1, h2) != 0);
    /* Known answer: SHA-256("korudelta-session-v1\0abc"), computed with
     * `printf 'korudelta-session-v1\0abc' | sha256sum`. */
    CHECK_RC(kd_auth_token_hash("abc", h1), KD_OK);
    CHECK_EQ_STR(h1, "bdbfa3da08f132e4a9341551c67e160de7f97046f35bd36a3d843a718d4d3bb9");
}

static void test_ns_match(void)
{
    CHECK(kd_auth_ns_match("*", "anything"));
    CHECK(kd_auth_ns_match("users", "users"));
    CHECK(!kd_auth_ns_match("users", "users2"));
    CHECK(kd_auth_ns_match("app.*", "app.logs"));
    CHECK(!kd_auth_ns_match("app.*", "app"));
    CHECK(kd_auth_ns_match("*.logs", "a.logs"));
    CHECK(kd_auth_ns_match("a*b*c", "aXXbYYc"));
    CHECK(!kd_auth_ns_match("a*b*c", "aXXbYY"));
    CHECK(kd_auth_ns_match("**", ""));
}

static void test_grants(void)
{
    kd_identity *owner = make(NULL, 0), *alice = make(NULL, 0);
    CHECK(owner && alice);
    kd_grant g;
    memset(&g, 0, sizeof g);
    snprintf(g.grantee, sizeof g.grantee, "%s", kd_identity_key(alice));
    snprintf(g.workspace, sizeof g.workspace, "default");
    snprintf(g.ns_pattern, sizeof g.ns_pattern, "app.*");
    snprintf(g.prefix, sizeof g.prefix, "user/");
    g.has_prefix = 1;
    g.perm = KD_PERM_WRITE;
    char *json = NULL, err[256];
    size_t len = 0;
    CHECK_RC(kd_grant_sign(owner, &g, &json, &len, err, sizeof err), KD_OK);
    CHECK_EQ_STR(g.granter, kd_identity_key(owner));
    kd_grant v;
    CHECK_RC(kd_grant_verify(json, len, &v, err, sizeof err), KD_OK);
    CHECK_EQ_STR(v.id, g.id);
    CHECK_EQ_STR(v.grantee, kd_identity_key(alice));
    CHECK_EQ_STR(v.prefix, "user/");
    CHECK_EQ_INT(v.perm, KD_PERM_WRITE);
    CHECK_EQ_INT(v.expires, 0);
    /* Coverage: write includes read, not admin; prefix and pattern apply. */
    CHECK(kd_grant_covers(&v, "app.x", "user/1", KD_PERM_READ));
    CHECK(kd_grant_covers(&v, "app.x", "user/1", KD_PERM_WRITE));
    CHECK(!kd_grant_covers(&v, "app.x", "user/1", KD_PERM_ADMIN));
    CHECK(!kd_grant_covers(&v, "app.x", "admin/1", KD_PERM_READ));
    CHECK(!kd_grant_covers(&v, "app.x", NULL, KD_PERM_READ));
    CHECK(!kd_grant_covers(&v, "other", "user/1", KD_PERM_READ));

    /* Every single-field tamper breaks the signature. */
    const char *edits[][2] = {
        {"\"permission\":\"write\"", "\"permission\":\"admin\""},
        {"\"namespace\":\"app.*\"", "\"namespace\":\"*\""},
        {"\"prefix\":\"user/\"", "\"prefix\":null"},
        {"\"expires\":null", "\"expires\":\"2099-01-01T00:00:00.000000000Z\""},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *p = strstr(json, edits[i][0]);
        CHECK(p);
        char t[4096];
        snprintf(t, sizeof t, "%.*s%s%s", (int)(p - json), json, edits[i][1], p + strlen(edits[i][0]));
        CHECK_RC(kd_grant_verify(t, strlen(t), &v, err, sizeof err), KD_EINVALID);
        CHECK(strstr(err, "signature"));
    }
    /* Swapping the grantee for another key breaks it too. */
    {
        char t[4096];
        snprintf(t, sizeof t, "%s", json);
        char *p = strstr(t, kd_identity_key(alice));
        CHECK(p);
        memcpy(p, kd_identity_key(owner), 64);
        CHECK_RC(kd_grant_verify(t, strlen(t), &v, err, sizeof err), KD_EINVALID);
    }
    /* A grant signed by someone else but naming owner as granter. */
    kd_grant f = g;
    memset(f.granter, 0, sizeof f.granter);
    char *forged = NULL;
    CHECK_RC(kd_grant_sign(alice, &f, &forged, NULL, err, sizeof err), KD_OK);
    char t[4096];
    snprintf(t, sizeof t, "%s", forged);
    char *p = strstr(t, kd_identity_key(alice));
    /* the granter appears after the grantee: replace the second occurrence */
    CHECK(p);
    p = strstr(p + 64, kd_identity_key(alice));
    CHECK(p);
    memcpy(p, kd_identity_key(owner), 64);
    CHECK_RC(kd_grant_verify(t, strlen(t), &v, err, sizeof err), KD_EINVALID);
    kd_free(forged);
    /* Bad fields are refused when signing. */
    kd_grant b = g;
    b.perm = (kd_perm)9;
    CHECK_RC(kd_grant_sign(owner, &b, &forged, NULL, err, sizeof err), KD_EINVALID);
    b = g;
    snprintf(b.workspace, sizeof b.workspace, "_kd.x"); /* a reserved workspace name */
    CHECK_RC(kd_grant_sign(owner, &b, &forged, NULL, err, sizeof err), KD_EINVALID);
    b = g;
    snprintf(b.workspace, sizeof b.workspace, "other"); /* any other workspace is a scope of its own */
    CHECK_RC(kd_grant_sign(owner, &b, &forged, NULL, err, sizeof err), KD_OK);
    kd_free(forged);
    b = g;
    snprintf(b.granter, sizeof b.granter, "%s", kd_identity_key(alice));
    CHECK_RC(kd_grant_sign(owner, &b, &forged, NULL, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_grant_verify("{}", 2, &v, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_grant_verify("[1]", 3, &v, err, sizeof err), KD_EINVALID);
    kd_free(json);
    kd_identity_free(owner);
    kd_identity_free(alice);
}

static void test_perm_names(void)
{
    kd_perm p;
    CHECK_RC(kd_perm_parse("read", &p), KD_OK);
    CHECK_EQ_INT(p, KD_PERM_READ);
    CHECK_RC(kd_perm_parse("admin", &p), KD_OK);
    CHECK_EQ_INT(p, KD_PERM_ADMIN);
    CHECK_RC(kd_perm_parse("root", &p), KD_EINVALID);
    CHECK_EQ_STR(kd_perm_name(KD_PERM_WRITE), "write");
    CHECK(kd_perm_name((kd_perm)0) == NULL);
}

/* Writes to _kd.auth go through kd_auth_put only, and advance the auth root. */
static void test_store_and_root(void)
{
    char dir[] = "/tmp/kd_test_auth_XXXXXX";
    CHECK(mkdtemp(dir));
    kd_db *db = NULL;
    char err[256];
    CHECK_RC(kd_open(dir, NULL, &db, err, sizeof err), KD_OK);
    kd_root *r = NULL;
    size_t n = 0;
    CHECK_RC(kd_roots(db, &r, &n), KD_OK);
    char field0[KD_ID_HEX];
    snprintf(field0, sizeof field0, "%s", r[n - 1].hex);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(r[i].name, "auth") != 0);
    kd_free(r);
    CHECK_RC(kd_put(db, KD_AUTH_NS, "x", "1", 1, NULL), KD_ERESERVED);
    CHECK_RC(kd_auth_put(db, "identity/a", "{\"a\":1}", 7, NULL, NULL), KD_OK);
    CHECK_RC(kd_auth_put(db, "identity/a", "{\"a\":2}", 7, KD_EXPECT_ABSENT, NULL), KD_ECONFLICT);
    CHECK_RC(kd_roots(db, &r, &n), KD_OK);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found |= strcmp(r[i].name, "auth") == 0;
    CHECK(found);
    CHECK(strcmp(r[n - 1].hex, field0) != 0);
    char auth_root[KD_ID_HEX];
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].name, "auth") == 0)
            snprintf(auth_root, sizeof auth_root, "%s", r[i].hex);
    kd_free(r);
    CHECK_RC(kd_auth_delete(db, "identity/a", NULL), KD_OK);
    char *json = NULL;
    CHECK_RC(kd_get(db, KD_AUTH_NS, "identity/a", &json, NULL, NULL), KD_EDELETED);
    /* Reserved namespaces stay out of the listing. */
    char **names = NULL;
    size_t nn = 0;
    CHECK_RC(kd_list_namespaces(db, &names, &nn), KD_OK);
    for (size_t i = 0; i < nn; i++)
        CHECK(strcmp(names[i], KD_AUTH_NS) != 0);
    kd_free_list(names, nn);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_roots(db, &r, &n), KD_OK);
    char before[KD_ID_HEX];
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].name, "auth") == 0)
            snprintf(before, sizeof before, "%s", r[i].hex);
    CHECK(strcmp(before, auth_root) != 0);
    kd_free(r);
    CHECK_RC(kd_close(db), KD_OK);
    /* The root comes back from the log at reopen. */
    CHECK_RC(kd_open(dir, NULL, &db, err, sizeof err), KD_OK);
    CHECK_RC(kd_roots(db, &r, &n), KD_OK);
    found = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].name, "auth") == 0)
            found = strcmp(r[i].hex, before) == 0;
    CHECK(found);
    kd_free(r);
    CHECK_RC(kd_close(db), KD_OK);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* The auth root of a database opened from an index checkpoint (which
 * replays only the log after it) is the one the whole log gives. */
static void auth_root_of(kd_db *db, char out[KD_ID_HEX])
{
    kd_root *r = NULL;
    size_t n = 0;
    out[0] = '\0';
    if (kd_roots(db, &r, &n) != KD_OK)
        return;
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].name, "auth") == 0)
            snprintf(out, KD_ID_HEX, "%s", r[i].hex);
    kd_free(r);
}

static void test_root_through_checkpoint(void)
{
    char dir[] = "/tmp/kd_test_auth_ckpt_XXXXXX";
    CHECK(mkdtemp(dir));
    kd_db *db = NULL;
    char err[256], before[KD_ID_HEX], after[KD_ID_HEX];
    CHECK_RC(kd_open(dir, NULL, &db, err, sizeof err), KD_OK);
    CHECK_RC(kd_auth_put(db, "owner", "{\"public_key\":\"x\"}", 18, NULL, NULL), KD_OK);
    CHECK_RC(kd_put(db, "n", "k", "1", 1, NULL), KD_OK);
    CHECK_RC(kd_checkpoint(db), KD_OK);
    CHECK_RC(kd_put(db, "n", "k", "2", 1, NULL), KD_OK);
    auth_root_of(db, before);
    CHECK(before[0]);
    CHECK_RC(kd_close(db), KD_OK);
    CHECK_RC(kd_open(dir, NULL, &db, err, sizeof err), KD_OK);
    auth_root_of(db, after);
    CHECK_EQ_STR(after, before);
    kd_verify_report rep;
    CHECK_RC(kd_verify(db, &rep), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    RUN(test_pow);
    RUN(test_identity_bad_documents);
    RUN(test_weak_keys_refused);
    RUN(test_keyfile_roundtrip);
    RUN(test_signatures);
    RUN(test_token_hash);
    RUN(test_ns_match);
    RUN(test_grants);
    RUN(test_perm_names);
    RUN(test_store_and_root);
    RUN(test_root_through_checkpoint);
    return HARNESS_DONE();
}
