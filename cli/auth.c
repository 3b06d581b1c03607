/*
 * auth.c — `kdelta auth …` and logging in with `--url … --identity FILE`.
 *
 *   auth keygen     mine a new identity (library: kd_identity_generate) and
 *                   write its key file, mode 0600, never over an existing one
 *   auth register   send the identity's public document to the server
 *   auth whoami | list | grant | revoke   the server's /api/v1/auth routes
 *
 * Logging in is challenge–response (docs/AUTH.md). The session token is
 * kept in KEYFILE.sessions (mode 0600; one line "URL TOKEN EXPIRES_NS" per
 * server) and reused until it expires or the server stops accepting it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "remote.h"
#include "server_int.h"

#define KEYFILE_MAX (64 * 1024)

/* ------------------------------------------------------------------------
 * Key files
 * ---------------------------------------------------------------------- */

int cli_load_identity(const char *path, kd_identity **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read key file: %s", path, strerror(errno));
        return KD_EIO;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "kdelta: warning: %s holds a secret key but others may read it (chmod 600 %s)\n", path, path);
    char *buf = xmalloc(KEYFILE_MAX + 1);
    size_t n = fread(buf, 1, KEYFILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > KEYFILE_MAX) {
        free(buf);
        snprintf(err, errlen, "%s: %s", path, bad ? "cannot read key file" : "too large for a key file");
        return bad ? KD_EIO : KD_EINVALID;
    }
    char why[400];
    int rc = kd_identity_load(buf, n, out, why, sizeof why);
    memset(buf, 0, n);
    free(buf);
    if (rc)
        snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}

/* Write text to path with mode 0600; never over an existing file unless
 * `replace` (then through a temporary file and rename). */
static int write_private(const char *path, const char *text, size_t len, int replace, char *err, size_t errlen)
{
    char *tmp = NULL;
    const char *target = path;
    if (replace) {
        size_t n = strlen(path) + 8;
        tmp = xmalloc(n);
        snprintf(tmp, n, "%s.tmp", path);
        target = tmp;
        unlink(tmp);
    }
    int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", target,
                 errno == EEXIST ? "already exists: choose another --out (kdelta never overwrites a key file)"
                                 : strerror(errno));
        free(tmp);
        return -1;
    }
    int ok = fchmod(fd, 0600) == 0;
    size_t off = 0;
    while (ok && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += w > 0 ? (size_t)w : 0;
    }
    ok = ok && fsync(fd) == 0;
    int e = errno;
    ok = close(fd) == 0 && ok;
    if (ok && tmp)
        ok = rename(tmp, path) == 0;
    if (!ok) {
        snprintf(err, errlen, "%s: cannot write: %s", target, strerror(e ? e : errno));
        unlink(target);
    }
    free(tmp);
    return ok ? 0 : -1;
}

static char *default_keyfile(void)
{
    const char *home = getenv("HOME");
    if (!home || !*home)
        return NULL;
    size_t n = strlen(home) + 64;
    char *dir = xmalloc(n), *path = xmalloc(n);
    snprintf(dir, n, "%s/.korudelta", home);
    mkdir(dir, 0700);
    snprintf(path, n, "%s/identity.json", dir);
    free(dir);
    return path;
}

static int auth_keygen(struct cli *c)
{
    unsigned long bits = 20;
    if (c->difficulty) {
        char *end;
        errno = 0;
        bits = strtoul(c->difficulty, &end, 10);
        if (!*c->difficulty || *end || errno || c->difficulty[0] == '-' || bits > KD_AUTH_MAX_DIFFICULTY)
            return cli_error(CLI_USAGE, "--difficulty", "expected proof-of-work bits, 0 to %d, got '%s'",
                             KD_AUTH_MAX_DIFFICULTY, c->difficulty);
    }
    if (c->name && (!*c->name || strlen(c->name) > 255))
        return cli_error(CLI_USAGE, "--name", "expected 1 to 255 bytes");
    char *path = c->out ? xstrdup(c->out) : default_keyfile();
    if (!path)
        return cli_error(CLI_USAGE, "auth keygen", "HOME is not set: give --out FILE");
    if (access(path, F_OK) == 0) {
        int st = cli_error(CLI_USAGE, path, "already exists: choose another --out (kdelta never overwrites a key file)");
        free(path);
        return st;
    }
    kd_identity *id = NULL;
    char err[512];
    int rc = kd_identity_generate(c->name, (unsigned)bits, &id, err, sizeof err);
    if (rc) {
        free(path);
        return cli_error(cli_exit_status(rc), "auth keygen", "%s", err);
    }
    char *kf = NULL;
    size_t kl = 0;
    int status = CLI_OK;
    if (kd_identity_keyfile(id, &kf, &kl) != KD_OK) {
        status = cli_error(CLI_ERROR, "auth keygen", "out of memory");
    } else {
        kf = realloc(kf, kl + 2);
        if (!kf) {
            status = cli_error(CLI_ERROR, "auth keygen", "out of memory");
        } else {
            kf[kl++] = '\n';
            kf[kl] = '\0';
            if (write_private(path, kf, kl, 0, err, sizeof err) != 0)
                status = cli_error(CLI_ERROR, "auth keygen", "%s", err);
        }
    }
    if (status == CLI_OK) {
        if (c->json) {
            printf("{\"file\":");
            cli_print_json_string(path, strlen(path));
            printf(",\"public_key\":\"%s\"}\n", kd_identity_key(id));
        } else {
            printf("created identity %s\nkey file %s (mode 0600: it holds the secret key)\n", kd_identity_key(id),
                   path);
        }
        if (c->show_secret)
            fputs(kf, stdout);
    }
    if (kf) {
        memset(kf, 0, kl);
        kd_free(kf);
    }
    kd_identity_free(id);
    free(path);
    return cli_finish_output(status);
}

/* ------------------------------------------------------------------------
 * Logging in
 * ---------------------------------------------------------------------- */

static char *sessions_path(const char *keyfile)
{
    size_t n = strlen(keyfile) + 16;
    char *p = xmalloc(n);
    snprintf(p, n, "%s.sessions", keyfile);
    return p;
}

/* The cached token for url, if any and not about to expire. */
static int cached_token(const char *file, const char *url, char tok[65])
{
    FILE *f = fopen(file, "r");
    if (!f)
        return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char u[1500], t[80];
        long long exp;
        if (sscanf(line, "%1499s %79s %lld", u, t, &exp) == 3 && strcmp(u, url) == 0 && strlen(t) == 64 &&
            exp > kd_now() + 60 * (int64_t)1000000000) {
            memcpy(tok, t, 65);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

static void save_token(const char *file, const char *url, const char *tok, int64_t exp)
{
    ks_buf b = {0};
    FILE *f = fopen(file, "r");
    if (f) {
        char line[2048];
        while (fgets(line, sizeof line, f)) {
            char u[1500];
            if (sscanf(line, "%1499s", u) == 1 && strcmp(u, url) != 0 && strchr(line, '\n'))
                ks_buf_add(&b, line, strlen(line));
        }
        fclose(f);
    }
    ks_buf_printf(&b, "%s %s %lld\n", url, tok, (long long)exp);
    char err[512];
    if (write_private(file, b.p, b.len, 1, err, sizeof err) != 0)
        fprintf(stderr, "kdelta: warning: cannot cache the session: %s\n", err);
    memset(b.p, 0, b.len);
    free(b.p);
}

int cli_remote_login(struct cli *c)
{
    kd_identity *id = NULL;
    char err[600];
    int rc = cli_load_identity(c->identity, &id, err, sizeof err);
    if (rc)
        return cli_error(rc == KD_EINVALID ? CLI_INVALID : CLI_ERROR, "--identity", "%s", err);
    char *cache = sessions_path(c->identity);
    const char *url = remote_url(c->remote);
    char tok[65];
    int status = CLI_OK;
    if (cached_token(cache, url, tok)) {
        remote_set_token(c->remote, tok);
        char *resp = NULL;
        if (remote_call(c->remote, "GET", "api/v1/auth/whoami", NULL, 0, &resp, NULL) == KD_OK) {
            free(resp);
            goto done;
        }
        free(resp);
        remote_set_token(c->remote, NULL);
    }
    char *resp = NULL, *ch = NULL, *server = NULL, *token = NULL;
    size_t len = 0;
    rc = remote_call(c->remote, "POST", "api/v1/auth/challenge", "{}", 2, &resp, &len);
    if (rc == KD_OK) {
        ch = rj_string(resp, len, "challenge");
        server = rj_string(resp, len, "server_id");
    }
    free(resp);
    resp = NULL;
    char sig[KD_AUTH_SIG_HEX];
    if (rc == KD_OK && (!ch || !server || kd_identity_sign_login(id, ch, server, "login", sig) != KD_OK))
        rc = remote_bad_answer(c->remote, "a login challenge");
    if (rc == KD_OK) {
        char body[512];
        int n = snprintf(body, sizeof body, "{\"challenge\":\"%s\",\"public_key\":\"%s\",\"signature\":\"%s\"}", ch,
                         kd_identity_key(id), sig);
        rc = remote_call(c->remote, "POST", "api/v1/auth/login", body, (size_t)n, &resp, &len);
    }
    if (rc == KD_OK) {
        token = rj_string(resp, len, "token");
        int64_t exp = rj_time(resp, len, "expires_at");
        if (!token || strlen(token) != 64) {
            rc = remote_bad_answer(c->remote, "a session token");
        } else {
            remote_set_token(c->remote, token);
            save_token(cache, url, token, exp);
        }
    }
    if (rc != KD_OK)
        status = cli_error(cli_exit_status(rc), "login", "%s: %s", url,
                           *remote_errmsg(c->remote) ? remote_errmsg(c->remote) : kd_strerror(rc));
    free(resp);
    free(ch);
    free(server);
    free(token);
done:
    free(cache);
    kd_identity_free(id);
    return status;
}

/* ------------------------------------------------------------------------
 * Commands against the server
 * ---------------------------------------------------------------------- */

static int need_server(struct cli *c, const char *sub)
{
    if (!c->url || !c->identity)
        return cli_error(CLI_USAGE, sub, "talks to a server as an identity: give --url URL --identity KEYFILE");
    return CLI_OK;
}

static int call_error(struct cli *c, int rc, const char *what)
{
    const char *m = remote_errmsg(c->remote);
    /* "already registered" / "grant already stored": a conflict (exit 6),
     * as for a view or index that exists. */
    return cli_error(rc == KD_EEXISTS ? CLI_CONFLICT : cli_exit_status(rc), what, "%s", *m ? m : kd_strerror(rc));
}

static int auth_register(struct cli *c)
{
    int status = need_server(c, "auth register");
    if (status)
        return status;
    c->no_login = 1;
    if ((status = cli_open(c)) != CLI_OK)
        return status;
    kd_identity *id = NULL;
    char err[600];
    int rc = cli_load_identity(c->identity, &id, err, sizeof err);
    if (rc)
        return cli_error(rc == KD_EINVALID ? CLI_INVALID : CLI_ERROR, "--identity", "%s", err);
    char *doc = NULL, *resp = NULL;
    size_t dl = 0, len = 0;
    rc = kd_identity_document(id, &doc, &dl);
    if (rc == KD_OK)
        rc = remote_call(c->remote, "POST", "api/v1/auth/register", doc, dl, &resp, &len);
    if (rc != KD_OK) {
        status = call_error(c, rc, "auth register");
    } else if (c->json) {
        printf("%s\n", resp);
    } else {
        const char *v;
        size_t vl;
        int owner = rj_member(resp, len, "owner", &v, &vl) && vl == 4 && !memcmp(v, "true", 4);
        printf("registered %s%s\n", kd_identity_key(id), owner ? " (owner of this server)" : "");
    }
    kd_free(doc);
    free(resp);
    kd_identity_free(id);
    return cli_finish_output(status);
}

/* GET a route and print its answer (--json) or `show` it. */
static int get_and_show(struct cli *c, const char *sub, const char *path, void (*show)(const char *, size_t))
{
    int status = need_server(c, sub);
    if (status || (status = cli_open(c)) != CLI_OK)
        return status;
    char *resp = NULL;
    size_t len = 0;
    int rc = remote_call(c->remote, "GET", path, NULL, 0, &resp, &len);
    if (rc != KD_OK)
        status = call_error(c, rc, sub);
    else if (c->json)
        printf("%s\n", resp);
    else
        show(resp, len);
    free(resp);
    return cli_finish_output(status);
}

/* An RFC 3339 UTC time from the server, for people: local time with its
 * offset (docs/CLI.md), or as given when it does not parse. */
static const char *local_time(const char *utc, char buf[40])
{
    int64_t ts;
    if (!utc || kd_time_parse(utc, &ts, NULL, 0) != KD_OK)
        return utc ? utc : "?";
    return cli_time(ts, buf);
}

static void show_grant(const char *item, size_t len)
{
    const char *g;
    size_t gl;
    char *id = rj_string(item, len, "id");
    const char *v;
    size_t vl;
    int valid = rj_member(item, len, "valid", &v, &vl) && vl == 4 && !memcmp(v, "true", 4);
    int expired = rj_member(item, len, "expired", &v, &vl) && vl == 4 && !memcmp(v, "true", 4);
    if (!rj_member(item, len, "grant", &g, &gl)) {
        free(id);
        return;
    }
    char *perm = rj_string(g, gl, "permission"), *ns = rj_string(g, gl, "namespace");
    char *prefix = rj_string(g, gl, "prefix"), *grantee = rj_string(g, gl, "grantee");
    char *granter = rj_string(g, gl, "granter"), *expires = rj_string(g, gl, "expires");
    char t[40];
    printf("%s  %s on %s%s%s  to %.16s… by %.16s…%s%s%s\n", id ? id : "?", perm ? perm : "?", ns ? ns : "?",
           prefix ? " prefix " : "", prefix ? prefix : "", grantee ? grantee : "?", granter ? granter : "?",
           expires ? " until " : "", expires ? local_time(expires, t) : "", valid     ? ""
           : expired ? "  (not valid: expired)"
                     : "  (not valid: bad signature, or its granter's admin grant was revoked or is over four granters deep)");
    free(id);
    free(perm);
    free(ns);
    free(prefix);
    free(grantee);
    free(granter);
    free(expires);
}

static void show_grants(const char *json, size_t len)
{
    const char *arr;
    size_t al;
    if (!rj_member(json, len, "grants", &arr, &al))
        return;
    size_t pos = 0, n = 0;
    const char *v;
    size_t vl;
    while (kd_json_next(arr, al, &pos, NULL, NULL, &v, &vl) == 1) {
        show_grant(v, vl);
        n++;
    }
    if (!n)
        printf("no grants\n");
}

static void show_whoami(const char *json, size_t len)
{
    char *key = rj_string(json, len, "public_key"), *exp = rj_string(json, len, "expires_at");
    const char *v;
    size_t vl;
    int owner = rj_member(json, len, "owner", &v, &vl) && vl == 4 && !memcmp(v, "true", 4);
    char t[40];
    printf("identity %s%s\nsession expires %s\n", key ? key : "?", owner ? " (owner: admin of everything)" : "",
           local_time(exp, t));
    show_grants(json, len);
    free(key);
    free(exp);
}

static int auth_grant(struct cli *c)
{
    if (c->nargs != 4)
        return cli_error(CLI_USAGE, "auth grant", "usage: kdelta auth grant GRANTEE NS_PATTERN read|write|admin "
                                                  "[--prefix P] [--expires TIME]");
    int status = need_server(c, "auth grant");
    if (status)
        return status;
    kd_grant g;
    memset(&g, 0, sizeof g);
    const char *grantee = c->args[1];
    char err[600];
    if (strlen(grantee) == 64 && strspn(grantee, "0123456789abcdef") == 64) {
        memcpy(g.grantee, grantee, 65);
    } else {
        kd_identity *who = NULL;
        FILE *f = fopen(grantee, "r");
        if (!f)
            return cli_error(CLI_USAGE, "auth grant",
                             "GRANTEE: expected a public key (64 hex digits) or a key file, got '%s'", grantee);
        fclose(f);
        int rc = cli_load_identity(grantee, &who, err, sizeof err);
        if (rc)
            return cli_error(CLI_INVALID, "auth grant", "%s", err);
        memcpy(g.grantee, kd_identity_key(who), 65);
        kd_identity_free(who);
    }
    if (strlen(c->args[2]) >= sizeof g.ns_pattern || !*c->args[2])
        return cli_error(CLI_USAGE, "auth grant", "NS_PATTERN: 1 to 255 bytes");
    snprintf(g.ns_pattern, sizeof g.ns_pattern, "%s", c->args[2]);
    if (kd_perm_parse(c->args[3], &g.perm) != KD_OK)
        return cli_error(CLI_USAGE, "auth grant", "permission: expected read, write or admin, got '%s'", c->args[3]);
    /* -w NAME: a grant in that workspace (each grant covers one) */
    snprintf(g.workspace, sizeof g.workspace, "%s", c->workspace ? c->workspace : "default");
    if (c->prefix) {
        if (strlen(c->prefix) >= sizeof g.prefix)
            return cli_error(CLI_USAGE, "--prefix", "at most 1024 bytes");
        snprintf(g.prefix, sizeof g.prefix, "%s", c->prefix);
        g.has_prefix = 1;
    }
    if (c->expires && kd_time_parse(c->expires, &g.expires, err, sizeof err) != KD_OK)
        return cli_error(CLI_INVALID, "--expires", "%s", err);
    if ((status = cli_open(c)) != CLI_OK)
        return status;
    kd_identity *id = NULL;
    int rc = cli_load_identity(c->identity, &id, err, sizeof err);
    if (rc)
        return cli_error(CLI_INVALID, "--identity", "%s", err);
    char *json = NULL, *resp = NULL;
    size_t jl = 0, len = 0;
    rc = kd_grant_sign(id, &g, &json, &jl, err, sizeof err);
    kd_identity_free(id);
    if (rc)
        return cli_error(cli_exit_status(rc), "auth grant", "%s", err);
    rc = remote_call(c->remote, "POST", "api/v1/auth/grants", json, jl, &resp, &len);
    if (rc != KD_OK)
        status = call_error(c, rc, "auth grant");
    else if (c->json)
        printf("%s\n", resp);
    else
        printf("granted %s\n", g.id);
    kd_free(json);
    free(resp);
    return cli_finish_output(status);
}

static int auth_revoke(struct cli *c)
{
    if (c->nargs != 2)
        return cli_error(CLI_USAGE, "auth revoke", "usage: kdelta auth revoke GRANT_ID");
    int status = need_server(c, "auth revoke");
    if (status || (status = cli_open(c)) != CLI_OK)
        return status;
    char *path = remote_path("api/v1/auth/grants/%s", c->args[1]), *resp = NULL;
    int rc = remote_call(c->remote, "DELETE", path, NULL, 0, &resp, NULL);
    if (rc != KD_OK)
        status = call_error(c, rc, "auth revoke");
    else if (c->json)
        printf("%s\n", resp);
    else
        printf("revoked %s\n", c->args[1]);
    free(path);
    free(resp);
    return cli_finish_output(status);
}

int cmd_auth(struct cli *c)
{
    const char *sub = c->args[0];
    static const struct {
        const char *name;
        int nargs;
    } subs[] = {{"keygen", 1}, {"register", 1}, {"whoami", 1}, {"list", 1}, {"grant", 4}, {"revoke", 2}};
    int known = 0;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(sub, subs[i].name) == 0) {
            known = 1;
            if (c->nargs != subs[i].nargs && strcmp(sub, "grant") != 0 && strcmp(sub, "revoke") != 0)
                return cli_error(CLI_USAGE, "auth", "'auth %s' takes no arguments", sub);
        }
    if (!known)
        return cli_error(CLI_USAGE, "auth", "unknown subcommand '%s' (keygen, register, whoami, grant, revoke, list)",
                         sub);
    int keygen = strcmp(sub, "keygen") == 0;
    if (!keygen && (c->name || c->out || c->difficulty || c->show_secret))
        return cli_error(CLI_USAGE, c->name ? "--name" : c->out ? "--out" : c->difficulty ? "--difficulty"
                                                                                           : "--show-secret",
                         "is an option of 'auth keygen'");
    if (strcmp(sub, "grant") != 0 && (c->prefix || c->expires))
        return cli_error(CLI_USAGE, c->prefix ? "--prefix" : "--expires", "is an option of 'auth grant'");
    if (keygen) {
        if (c->url)
            return cli_error(CLI_USAGE, "auth keygen", "makes a key file here: it takes no --url");
        return auth_keygen(c);
    }
    if (strcmp(sub, "register") == 0)
        return auth_register(c);
    if (strcmp(sub, "whoami") == 0)
        return get_and_show(c, "auth whoami", "api/v1/auth/whoami", show_whoami);
    if (strcmp(sub, "list") == 0)
        return get_and_show(c, "auth list", "api/v1/auth/grants", show_grants);
    if (strcmp(sub, "grant") == 0)
        return auth_grant(c);
    return auth_revoke(c);
}
