/*
 * fuzz_server.c — libFuzzer target for the request parsing of
 * `kdelta serve` (server/), without libmicrohttpd and without a database.
 *
 * The input reads like an HTTP request:
 *     METHOD SP TARGET LF            (no space: the line is a GET's target)
 *     Name: value LF                 (headers, up to an empty line)
 *     LF
 *     body                           (the rest, any bytes)
 * and goes where the server takes it (http.c on_request):
 *   - the target is cut at '?'; the path is split at '/' and each segment
 *     percent-decoded (ks_split_path), then matched against the real route
 *     tables (ks_routes_keys, ks_routes_query, ks_routes_io,
 *     ks_routes_vector, ks_routes_upkeep, ks_routes_ws, plus healthz and metrics as
 *     in http.c) with ks_route_find / ks_allowed_methods;
 *   - the query string is split as libmicrohttpd 0.9.75 splits it ('&',
 *     then the first '=', '+' as a space; a trailing empty argument is
 *     dropped) and each name and value decoded as http.c's collect_param
 *     does (ks_percent_decode);
 *   - the If-Match / If-None-Match headers go through ks_conditions, the
 *     parameters through the GET query builder (ks_query_from_params, then
 *     ks_query_compile, which calls kd_query_parse);
 *   - when a route matches and the path and parameters are valid, its
 *     handler runs with a NULL database (every library call then answers
 *     KD_EMISUSE), so everything a handler parses before it touches the
 *     database is fuzzed too: batch bodies, Last-Event-ID, types and
 *     filters of the watch stream, history and listing parameters, view
 *     and index bodies, import bodies, vector bodies and search requests,
 *     compact bodies.
 * Checked: nothing crashes, leaks or reads out of bounds (ASan); the split
 * agrees with a reference decoder written here (a decoded segment never
 * holds a NUL, a bad escape is always refused); a decoded segment
 * re-encoded decodes to the same bytes; a matched route has the most
 * literal segments and rebuilding its path from the variables matches it
 * again with the same values; an accepted If-Match is exactly one quoted
 * write_id or *, an accepted If-None-Match exactly *; the GET query text
 * is a JSON object; every response body is valid JSON; a watch request
 * that got past its parameters had a valid Last-Event-ID.
 *
 * ks_param, ks_header, ks_client_net, ks_var, ks_stopping,
 * ks_metrics_subscriptions and ks_log (http.c) are defined here over the parsed request. The replay
 * driver (replay_main.c) runs the same function over
 * tests/fuzz/corpus/fuzz_server/ as an ordinary ctest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json/json.h"
#include "korudelta.h"
#include "server.h"
#include "server_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_server: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* ------------------------------------------------------------------------
 * The request, and http.c's accessors over it
 * ---------------------------------------------------------------------- */

#define MAX_HEADERS 64

typedef struct fz_param {
    char *name, *value;
} fz_param;

typedef struct fz_req {
    fz_param *params;
    size_t nparams;
    char *hname[MAX_HEADERS], *hvalue[MAX_HEADERS];
    size_t nheaders;
    const char *var_names[KS_MAX_SEGS];
    const char *var_values[KS_MAX_SEGS];
    size_t nvars;
} fz_req;

const char *ks_param(const ks_request *r, const char *name)
{
    const fz_req *f = r->conn;
    for (size_t i = 0; i < f->nparams; i++)
        if (strcmp(f->params[i].name, name) == 0)
            return f->params[i].value;
    return NULL;
}

int ks_client_net(const ks_request *r, uint8_t net[16])
{
    (void)r;
    memset(net, 0, 16); /* every request from one client */
    net[0] = 127;
    return 0;
}

const char *ks_header(const ks_request *r, const char *name)
{
    const fz_req *f = r->conn;
    for (size_t i = 0; i < f->nheaders; i++)
        if (strcasecmp(f->hname[i], name) == 0)
            return f->hvalue[i];
    return NULL;
}

const char *ks_var(const ks_request *r, const char *name)
{
    const fz_req *f = r->conn;
    for (size_t i = 0; i < f->nvars; i++)
        if (strcmp(f->var_names[i], name) == 0)
            return f->var_values[i];
    return NULL;
}

int ks_stopping(void)
{
    return 0;
}

void ks_metrics_subscriptions(int delta)
{
    (void)delta;
}

void ks_log(int level, const char *fmt, ...)
{
    (void)level;
    (void)fmt;
}

/* ------------------------------------------------------------------------
 * The route table, compiled once as http.c's routes_init does
 * ---------------------------------------------------------------------- */

static int h_own(ks_request *req, ks_response *res)
{
    (void)req;
    ks_json(res, 200, "{}", 2);
    return 0;
}

static const ks_route own_routes[] = {
    {"GET", "healthz", h_own, "healthz"},
    {"GET", "metrics", h_own, "metrics"},
    {NULL, NULL, NULL, NULL},
};

static ks_route_pat *routes;
static size_t n_routes;
static int verbose; /* FUZZ_SERVER_VERBOSE=1: one line per request on stderr */

static void add_table(const ks_route *t)
{
    for (; t->method; t++) {
        routes = ks_xrealloc(routes, (n_routes + 1) * sizeof *routes);
        ks_route_compile(&routes[n_routes++], t);
    }
}

static void routes_init(void)
{
    if (routes)
        return;
    verbose = getenv("FUZZ_SERVER_VERBOSE") != NULL;
    add_table(own_routes);
    add_table(ks_routes_keys);
    add_table(ks_routes_query);
    add_table(ks_routes_io);
    add_table(ks_routes_vector);
    add_table(ks_routes_upkeep);
    add_table(ks_routes_ws);
}

/* ------------------------------------------------------------------------
 * Reference decoding and encoding
 * ---------------------------------------------------------------------- */

static int hexdigit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* %HH decoding of s[0..n) into out (n bytes suffice): its length, or -1
 * when an escape is malformed, a byte (literal or decoded) is NUL, or the
 * result is not UTF-8 (the library's validator: the server has its own). */
static long ref_decode(const unsigned char *s, size_t n, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == '%') {
            if (n - i < 3 || hexdigit(s[i + 1]) < 0 || hexdigit(s[i + 2]) < 0)
                return -1;
            c = (unsigned char)(hexdigit(s[i + 1]) * 16 + hexdigit(s[i + 2]));
            i += 3;
        } else {
            i++;
        }
        if (c == 0)
            return -1;
        out[o++] = c;
    }
    return kd__utf8_valid((const char *)out, o) ? (long)o : -1;
}

/* Every byte but the unreserved ones of RFC 3986 as %HH (malloc'd). */
static char *encode(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = ks_xmalloc(3 * n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ks_percent_decode on an exact-size copy (so ASan sees a read past it),
 * checked against ref_decode and, when it succeeds, against a round trip
 * through encode(). */
static char *decode_checked(const char *s, size_t n)
{
    char *copy = ks_xmalloc(n ? n : 1);
    memcpy(copy, s, n);
    char *got = ks_percent_decode(copy, n);
    unsigned char *want = ks_xmalloc(n ? n : 1);
    long wlen = ref_decode((const unsigned char *)copy, n, want);
    free(copy);
    if ((got == NULL) != (wlen < 0))
        die("ks_percent_decode disagrees with the reference on success", got ? got : "(refused)");
    if (got) {
        if (strlen(got) != (size_t)wlen || memcmp(got, want, (size_t)wlen) != 0)
            die("ks_percent_decode disagrees with the reference on the bytes", got);
        char *enc = encode(got, (size_t)wlen);
        char *again = ks_percent_decode(enc, strlen(enc));
        if (!again || strcmp(again, got) != 0)
            die("decode(encode(decoded)) differs", enc);
        free(again);
        free(enc);
    }
    free(want);
    return got;
}

/* ------------------------------------------------------------------------
 * Checks on answers
 * ---------------------------------------------------------------------- */

static void check_json(const char *what, const char *s, size_t n)
{
    char *canon = NULL, err[256];
    size_t clen = 0;
    if (!s)
        die(what, "no text");
    if (kd_json_canonical(s, n, &canon, &clen, err, sizeof err) != KD_OK)
        die(what, err);
    kd_free(canon);
}

/* Check and release a response. */
static void response_done(ks_response *res, const char *what)
{
    if (res->stream)
        die(what, "a stream without a database");
    if (res->body) {
        if (!res->content_type || strcmp(res->content_type, "application/json") == 0)
            check_json(what, res->body, res->body_len);
        if (strlen(res->body) != res->body_len)
            die(what, "body length");
    }
    if (res->status < 100 || res->status > 599)
        die(what, "status out of range");
    if (verbose)
        fprintf(stderr, "  %s: %d %.300s\n", what, res->status, res->body ? res->body : "");
    free(res->body);
    memset(res, 0, sizeof *res);
    res->status = 200;
}

/* ------------------------------------------------------------------------
 * Pieces of the request
 * ---------------------------------------------------------------------- */

/* s[0..n) trimmed of spaces and tabs at both ends, as conditions() reads. */
static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t'))
        (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

static void check_conditions(ks_request *req, fz_req *f)
{
    ks_response res;
    memset(&res, 0, sizeof res);
    res.status = 200;
    char id[KD_ID_HEX];
    memset(id, 'x', sizeof id);
    int cond = -1;
    int rc = ks_conditions(req, &res, id, &cond);
    const char *im = ks_header(req, "If-Match"), *inm = ks_header(req, "If-None-Match");
    if (rc == 0) {
        if (res.body)
            die("If-Match: an accepted header left a response", res.body);
        if (im && inm)
            die("If-Match and If-None-Match both accepted", NULL);
        size_t n = im ? strlen(im) : inm ? strlen(inm) : 0;
        const char *s = im ? im : inm;
        if (s)
            trim(&s, &n);
        switch (cond) {
        case KS_COND_NONE:
            if (im || inm)
                die("a condition header gave no condition", im ? im : inm);
            break;
        case KS_COND_ID:
            if (!im || n != 66 || s[0] != '"' || s[65] != '"')
                die("If-Match: accepted without one quoted id", im);
            for (size_t i = 0; i < 64; i++)
                if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')) ||
                    (s[1 + i] | 0x20) != id[i])
                    die("If-Match: write_id is not the header's in lower case", im);
            if (id[64] != '\0')
                die("If-Match: write_id not terminated", im);
            break;
        case KS_COND_EXISTS:
            if (!im || n != 1 || s[0] != '*')
                die("If-Match: * accepted from something else", im);
            break;
        case KS_COND_ABSENT:
            if (!inm || n != 1 || s[0] != '*')
                die("If-None-Match: * accepted from something else", inm);
            break;
        default:
            die("ks_conditions: unknown condition", NULL);
        }
    } else {
        if (rc != -1 || !res.body || res.status != 400)
            die("If-Match: a refusal without a 400 response", NULL);
        if (!im && !inm)
            die("If-Match: refused without a header", NULL);
    }
    (void)f;
    response_done(&res, "If-Match response");
}

static void check_query_params(ks_request *req)
{
    ks_response res;
    memset(&res, 0, sizeof res);
    res.status = 200;
    char *json = NULL;
    size_t len = 0;
    if (ks_query_from_params(req, &res, &json, &len) != 0) {
        if (json || !res.body)
            die("GET query: refused without an error response (or with text)", json);
        response_done(&res, "GET query error");
        return;
    }
    if (res.body)
        die("GET query: built with an error response", res.body);
    if (!json || len < 2 || json[0] != '{' || strlen(json) != len)
        die("GET query: text is not an object", json);
    check_json("GET query text", json, len);
    kd_query *q = ks_query_compile(&res, json, len, "");
    if (q) {
        if (res.body)
            die("GET query: compiled with an error response", res.body);
        kd_query_free(q);
    } else if (!res.body || (res.status != 400 && res.status != 500)) {
        die("GET query: not compiled, without a 400", json);
    }
    free(json);
    response_done(&res, "GET query compile");
}

/* Is the Last-Event-ID the watch route reads valid: an optional '-', then
 * 1 to 19 digits, within int64? */
static int lei_valid(const char *s)
{
    const char *p = s + (*s == '-');
    size_t n = strlen(p);
    if (n == 0 || n > 19 || strspn(p, "0123456789") != n)
        return 0;
    /* 19 digits may pass INT64_MAX (9223372036854775807, or ...808 below 0) */
    const char *lim = *s == '-' ? "9223372036854775808" : "9223372036854775807";
    return n < 19 || strcmp(p, lim) <= 0;
}

/* The query string as libmicrohttpd 0.9.75 splits it, each name and value
 * decoded as collect_param does. 0, or -1 when the server answers 400. */
static int parse_query(fz_req *f, const char *q, size_t n)
{
    char *args = ks_xmalloc(n + 1);
    memcpy(args, q, n);
    args[n] = '\0';
    int rc = 0;
    for (char *a = args; *a && rc == 0;) {
        char *amp = strchr(a, '&'), *eq = strchr(a, '=');
        if (amp)
            *amp = '\0';
        if (eq && amp && eq > amp)
            eq = NULL;
        if (eq)
            *eq++ = '\0';
        for (char *p = a; *p; p++)
            if (*p == '+')
                *p = ' ';
        for (char *p = eq; p && *p; p++)
            if (*p == '+')
                *p = ' ';
        char *name = decode_checked(a, strlen(a));
        char *value = decode_checked(eq ? eq : "", eq ? strlen(eq) : 0);
        if (!name || !value) {
            free(name);
            free(value);
            rc = -1;
            break;
        }
        f->params = ks_xrealloc(f->params, (f->nparams + 1) * sizeof *f->params);
        f->params[f->nparams].name = name;
        f->params[f->nparams].value = value;
        f->nparams++;
        if (!amp)
            break;
        a = amp + 1;
    }
    free(args);
    return rc;
}

/* ------------------------------------------------------------------------
 * Routing
 * ---------------------------------------------------------------------- */

/* Split url as ks_split_path should: rc and segments, checked against it. */
static int split_checked(ks_request *req, const char *url)
{
    int rc = ks_split_path(req, url);
    if (url[0] != '/') {
        if (rc != -1 || req->nseg)
            die("a path without '/' was split", url);
        return rc;
    }
    int want = 0;
    size_t nseg = 0;
    for (const char *p = url + 1;;) {
        size_t l = strcspn(p, "/");
        if (nseg == KS_MAX_SEGS) {
            want = -2;
            break;
        }
        char *s = decode_checked(p, l);
        if (!s) {
            want = -1;
            break;
        }
        if (nseg >= req->nseg || strcmp(req->seg[nseg], s) != 0)
            die("ks_split_path: a segment differs", url);
        free(s);
        nseg++;
        if (!p[l])
            break;
        p += l + 1;
    }
    if (rc != want || nseg != req->nseg)
        die("ks_split_path: result differs", url);
    if (rc == 0 && (req->nseg < 1 || req->nseg > KS_MAX_SEGS))
        die("ks_split_path: segment count", url);
    return rc;
}

static void check_route(const ks_route_pat *rt, const char *method, char **seg, size_t nseg, int path_matched)
{
    int any = 0, best = -1;
    const ks_route_pat *first_best = NULL;
    for (size_t i = 0; i < n_routes; i++) {
        int lits = ks_route_match(&routes[i], seg, nseg);
        if (lits < 0)
            continue;
        any = 1;
        if (ks_method_matches(routes[i].r->method, method) && lits > best) {
            best = lits;
            first_best = &routes[i];
        }
    }
    if (any != path_matched)
        die("ks_route_find: path_matched is wrong", method);
    if (rt != first_best)
        die("ks_route_find: not the first route with the most literal segments", method);
    char allow[160];
    memset(allow, 'x', sizeof allow);
    ks_allowed_methods(routes, n_routes, seg, nseg, allow, sizeof allow);
    if (!memchr(allow, '\0', sizeof allow))
        die("Allow: not terminated", NULL);
    if ((allow[0] != '\0') != any)
        die("Allow: empty for a path that matches (or not for one that does not)", allow);
    if (!rt)
        return;
    /* the path rebuilt from the pattern and the variables routes the same */
    ks_buf path = {0};
    for (size_t i = 0; i < rt->nseg; i++) {
        ks_buf_add(&path, "/", 1);
        if (rt->segs[i]) {
            char *e = encode(rt->segs[i], strlen(rt->segs[i]));
            ks_buf_add(&path, e, strlen(e));
            free(e);
        } else {
            char *e = encode(seg[i], strlen(seg[i]));
            ks_buf_add(&path, e, strlen(e));
            free(e);
        }
    }
    ks_request again;
    memset(&again, 0, sizeof again);
    if (ks_split_path(&again, path.p) != 0 || again.nseg != nseg)
        die("rebuilt path does not split", path.p);
    for (size_t i = 0; i < nseg; i++)
        if (strcmp(again.seg[i], seg[i]) != 0)
            die("rebuilt path splits differently", path.p);
    int pm = 0;
    if (ks_route_find(routes, n_routes, method, again.seg, again.nseg, &pm) != rt || !pm)
        die("rebuilt path routes elsewhere", path.p);
    for (size_t i = 0; i < again.nseg; i++)
        free(again.seg[i]);
    free(again.seg);
    free(path.p);
}

/* ------------------------------------------------------------------------
 * The target
 * ---------------------------------------------------------------------- */

/* The next line of [*p, end) without its LF (and a CR before it). */
static int next_line(const char **p, const char *end, const char **line, size_t *len)
{
    if (*p >= end)
        return 0;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *stop = nl ? nl : end;
    *line = *p;
    *len = (size_t)(stop - *p);
    if (*len && (*line)[*len - 1] == '\r')
        (*len)--;
    *p = nl ? nl + 1 : end;
    return 1;
}

/* A NUL-terminated copy of s[0..n) cut at its first NUL (what a C string
 * from libmicrohttpd would hold). */
static char *cstr(const char *s, size_t n)
{
    const char *z = memchr(s, '\0', n);
    if (z)
        n = (size_t)(z - s);
    char *out = ks_xmalloc(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    routes_init();
    const char *in = (const char *)data, *end = in + size, *p = in;
    const char *line = "";
    size_t len = 0;
    next_line(&p, end, &line, &len);

    /* the request line */
    const char *sp = memchr(line, ' ', len);
    char *method = sp ? cstr(line, (size_t)(sp - line)) : ks_xstrdup("GET");
    const char *target = sp ? sp + 1 : line;
    size_t tlen = sp ? len - (size_t)(sp - line) - 1 : len;

    /* any bytes through the decoder */
    free(decode_checked(target, tlen));

    fz_req f;
    memset(&f, 0, sizeof f);
    ks_request req;
    memset(&req, 0, sizeof req);
    req.method = method;
    req.conn = &f;
    req.db = NULL;

    /* headers, then the body */
    while (next_line(&p, end, &line, &len) && len) {
        const char *colon = memchr(line, ':', len);
        if (!colon || colon == line || f.nheaders == MAX_HEADERS)
            continue;
        const char *v = colon + 1;
        while (v < line + len && (*v == ' ' || *v == '\t'))
            v++;
        f.hname[f.nheaders] = cstr(line, (size_t)(colon - line));
        f.hvalue[f.nheaders] = cstr(v, (size_t)(line + len - v));
        f.nheaders++;
    }
    size_t body_len = (size_t)(end - p);
    char *body = ks_xmalloc(body_len + 1);
    memcpy(body, p, body_len);
    body[body_len] = '\0';
    req.body = body;
    req.body_len = body_len;

    /* the path (a NUL in the target is refused by http.c) and the query */
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    int has_nul = memchr(target, '\0', tlen) != NULL;
    char *url = cstr(target, plen);
    req.path = url;
    int rc = has_nul ? -1 : split_checked(&req, url);
    int bad_params = 0;
    if (rc != -1 && q)
        bad_params = parse_query(&f, q + 1, tlen - plen - 1) != 0;

    int path_matched = 0;
    const ks_route_pat *rt = NULL;
    if (rc == 0) {
        rt = ks_route_find(routes, n_routes, method, req.seg, req.nseg, &path_matched);
        check_route(rt, method, req.seg, req.nseg, path_matched);
    }

    /* the handlers' parsers, whatever the route */
    check_conditions(&req, &f);
    if (!bad_params)
        check_query_params(&req);

    /* the route's handler, as http.c would call it (no database) */
    if (rt && !bad_params) {
        for (size_t i = 0; i < rt->nseg; i++)
            if (rt->vars[i]) {
                f.var_names[f.nvars] = rt->vars[i];
                f.var_values[f.nvars] = req.seg[i];
                f.nvars++;
            }
        ks_response res;
        memset(&res, 0, sizeof res);
        res.status = 200;
        int hrc = rt->r->handler(&req, &res);
        if (hrc != 0 && !res.body)
            die("handler failed without a response", rt->r->name);
        /* An empty batch is answered without the database: nothing to do. */
        int empty_batch = strcmp(rt->r->name, "batch") == 0 && res.status == 200 && res.body &&
                          strcmp(res.body, "{\"versions\":[]}") == 0;
        /* A server without --backup-dir (as here) refuses backups first. */
        int no_backup_dir = strcmp(rt->r->name, "backup") == 0 && res.status == 403 && !req.backup_dir;
        if (rt->r->handler != h_own && res.status != 400 && res.status != 404 && res.status != 500 && !empty_batch &&
            !no_backup_dir)
            die("a handler without a database answered", rt->r->name);
        if (strcmp(rt->r->name, "watch") == 0 && res.status == 500) {
            /* got as far as kd_subscribe: every parameter was valid */
            const char *lei = ks_header(&req, "Last-Event-ID");
            if (!lei || !*lei)
                lei = ks_param(&req, "last_event_id");
            if (lei && !lei_valid(lei))
                die("watch: a bad Last-Event-ID was accepted", lei);
        }
        response_done(&res, rt->r->name);
    }

    for (size_t i = 0; i < req.nseg; i++)
        free(req.seg[i]);
    free(req.seg);
    for (size_t i = 0; i < f.nparams; i++) {
        free(f.params[i].name);
        free(f.params[i].value);
    }
    free(f.params);
    for (size_t i = 0; i < f.nheaders; i++) {
        free(f.hname[i]);
        free(f.hvalue[i]);
    }
    free(url);
    free(body);
    free(method);
    return 0;
}
