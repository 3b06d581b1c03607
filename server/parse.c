/*
 * parse.c — the router's pure parts, taken out of http.c so that they can
 * be fuzzed without libmicrohttpd (tests/fuzz/fuzz_server.c): splitting the
 * raw request path at '/' and percent-decoding each segment, compiling a
 * route's pattern ("api/v1/namespaces/{ns}/keys/{key}") into segments, and
 * matching a path against the compiled routes (most literal segments wins;
 * the methods of every matching pattern make the Allow header of a 405).
 *
 * http.c owns the compiled table and the request state; nothing here keeps
 * state or talks to libmicrohttpd. Allocation failures end the process
 * (ks_xmalloc), as elsewhere in the server.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"
#include "server_int.h"

/* ------------------------------------------------------------------------
 * Patterns
 * ---------------------------------------------------------------------- */

void ks_route_compile(ks_route_pat *r, const ks_route *t)
{
    memset(r, 0, sizeof *r);
    r->r = t;
    const char *p = t->pattern;
    while (*p == '/')
        p++;
    while (r->nseg < KS_MAX_SEGS) {
        size_t l = strcspn(p, "/");
        if (l >= 2 && p[0] == '{' && p[l - 1] == '}') {
            r->vars[r->nseg] = ks_xmalloc(l - 1);
            memcpy(r->vars[r->nseg], p + 1, l - 2);
            r->vars[r->nseg][l - 2] = '\0';
        } else {
            r->segs[r->nseg] = ks_xmalloc(l + 1);
            memcpy(r->segs[r->nseg], p, l);
            r->segs[r->nseg][l] = '\0';
        }
        r->nseg++;
        if (!p[l])
            break;
        p += l + 1;
    }
}

void ks_route_pat_free(ks_route_pat *r)
{
    for (size_t j = 0; j < r->nseg; j++) {
        free(r->segs[j]);
        free(r->vars[j]);
    }
}

/* ------------------------------------------------------------------------
 * Paths
 * ---------------------------------------------------------------------- */

int ks_split_path(ks_request *req, const char *url)
{
    if (url[0] != '/')
        return -1;
    const char *p = url + 1;
    req->seg = ks_xmalloc(KS_MAX_SEGS * sizeof(char *));
    for (;;) {
        size_t l = strcspn(p, "/");
        if (req->nseg == KS_MAX_SEGS)
            return -2;
        char *s = ks_percent_decode(p, l);
        if (!s)
            return -1;
        req->seg[req->nseg++] = s;
        if (!p[l])
            break;
        p += l + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Matching
 * ---------------------------------------------------------------------- */

int ks_route_match(const ks_route_pat *r, char **seg, size_t nseg)
{
    if (r->nseg != nseg)
        return -1;
    int lits = 0;
    for (size_t i = 0; i < nseg; i++) {
        if (!r->segs[i])
            continue;
        if (strcmp(r->segs[i], seg[i]) != 0)
            return -1;
        lits++;
    }
    return lits;
}

int ks_method_matches(const char *route_method, const char *method)
{
    if (strcmp(route_method, method) == 0)
        return 1;
    return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

const ks_route_pat *ks_route_find(const ks_route_pat *routes, size_t n, const char *method, char **seg, size_t nseg,
                                  int *path_matched)
{
    const ks_route_pat *best = NULL;
    int best_lits = -1;
    *path_matched = 0;
    for (size_t i = 0; i < n; i++) {
        int lits = ks_route_match(&routes[i], seg, nseg);
        if (lits < 0)
            continue;
        *path_matched = 1;
        if (ks_method_matches(routes[i].r->method, method) && lits > best_lits) {
            best = &routes[i];
            best_lits = lits;
        }
    }
    return best;
}

void ks_allowed_methods(const ks_route_pat *routes, size_t n_routes, char **seg, size_t nseg, char *out, size_t size)
{
    out[0] = '\0';
    const char *seen[16];
    size_t n = 0;
    for (size_t i = 0; i < n_routes && n < 15; i++) {
        if (ks_route_match(&routes[i], seg, nseg) < 0)
            continue;
        const char *m = routes[i].r->method;
        int dup = 0;
        for (size_t j = 0; j < n; j++)
            dup |= strcmp(seen[j], m) == 0;
        if (!dup)
            seen[n++] = m;
        if (!dup && strcmp(m, "GET") == 0 && n < 15)
            seen[n++] = "HEAD";
    }
    for (size_t j = 0; j < n; j++) {
        size_t l = strlen(out);
        snprintf(out + l, size - l, "%s%s", j ? ", " : "", seen[j]);
    }
}

/* ------------------------------------------------------------------------
 * Auth headers and durations (server_int.h; fuzzed by fuzz_auth.c)
 * ---------------------------------------------------------------------- */

int ks_auth_bearer(const char *h, char tok[65])
{
    if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return 0;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = 0;
    while (n < 64 && ((h[n] >= '0' && h[n] <= '9') || (h[n] >= 'a' && h[n] <= 'f')))
        n++;
    const char *e = h + n;
    while (*e == ' ' || *e == '\t')
        e++;
    if (n != 64 || *e)
        return 0;
    memcpy(tok, h, 64);
    tok[64] = '\0';
    return 1;
}

int ks_parse_duration(const char *s, int64_t *ns)
{
    int64_t v;
    if (kd_duration_parse(s, &v) != KD_OK || v > INT64_C(10) * 366 * 86400 * 1000000000)
        return -1;
    *ns = v;
    return 0;
}
