/*
 * remote.c — the HTTP client behind `kdelta --url` (see remote.h).
 *
 * One curl easy handle per connection, reused so that the commands of a
 * shell session, or the many requests of an import, share one kept-alive
 * TCP connection. Answers are read whole (they are bounded by what the
 * command asked for), canonicalized, and errors turned back into the
 * library's status codes by their names (server/util.c ks_kd_code).
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "remote.h"
#include "server_int.h"

/* Values received in records, by version_id, so that the commands that
 * read a version's value after its metadata (log, diff, set --json) need
 * no request per value. Chained hash table; emptied by remote_forget. */
struct kept_value {
    struct kept_value *next;
    char id[KD_ID_HEX];
    size_t len;
    char value[];
};
#define KEPT_BUCKETS 1024

struct remote {
    CURL *curl;
    char *base; /* "http://host:port", no trailing '/' */
    char msg[1024];
    char auth[120]; /* "Authorization: Bearer <token>" or "" */
    char *ws_prefix; /* "ws/{ws}/" percent-encoded, or NULL (remote_set_workspace) */
    struct kept_value *kept[KEPT_BUCKETS];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int remote_open(const char *url, struct remote **out, const char **err)
{
    *out = NULL;
    size_t l = strlen(url);
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        *err = "expected http://HOST:PORT (the address `kdelta serve` prints)";
        return KD_EINVALID;
    }
    const char *host = strstr(url, "//") + 2;
    if (!*host || *host == '/' || strpbrk(url, " ?#")) {
        *err = "expected http://HOST:PORT (the address `kdelta serve` prints)";
        return KD_EINVALID;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        *err = "cannot initialise libcurl";
        return KD_EIO;
    }
    struct remote *r = xmalloc(sizeof *r);
    memset(r, 0, sizeof *r);
    if (!(r->curl = curl_easy_init())) {
        free(r);
        *err = "cannot initialise libcurl";
        return KD_EIO;
    }
    while (l > 0 && url[l - 1] == '/')
        l--;
    r->base = xmalloc(l + 1);
    memcpy(r->base, url, l);
    r->base[l] = '\0';
    *out = r;
    return KD_OK;
}

static void forget_values(struct remote *r)
{
    for (size_t i = 0; i < KEPT_BUCKETS; i++) {
        for (struct kept_value *k = r->kept[i], *next; k; k = next) {
            next = k->next;
            free(k);
        }
        r->kept[i] = NULL;
    }
}

void remote_close(struct remote *r)
{
    if (!r)
        return;
    forget_values(r);
    curl_easy_cleanup(r->curl);
    free(r->base);
    free(r->ws_prefix);
    free(r);
}

const char *remote_url(const struct remote *r)
{
    return r->base;
}

const char *remote_auth_header(const struct remote *r)
{
    return r->auth;
}

void remote_set_token(struct remote *r, const char *token)
{
    if (token && strlen(token) < 80)
        snprintf(r->auth, sizeof r->auth, "Authorization: Bearer %s", token);
    else
        r->auth[0] = '\0';
}

void remote_set_workspace(struct remote *r, const char *ws)
{
    free(r->ws_prefix);
    r->ws_prefix = ws ? remote_path("ws/%s/", ws) : NULL;
}

/* The path a request goes to: with a workspace, its data routes under
 * api/v1/ws/{ws}/ (malloc'd). */
char *remote_request_path(const struct remote *r, const char *path)
{
    static const char *const whole[] = {"auth/", "workspaces", "verify", "backup", "compact", "consolidate"};
    const char *rest = strncmp(path, "api/v1/", 7) ? NULL : path + 7;
    for (size_t i = 0; rest && i < sizeof whole / sizeof *whole; i++)
        if (!strncmp(rest, whole[i], strlen(whole[i])))
            rest = NULL;
    if (!r->ws_prefix || !rest)
        return xstrdup(path);
    char *p = xmalloc(strlen(path) + strlen(r->ws_prefix) + 1);
    sprintf(p, "api/v1/%s%s", r->ws_prefix, rest);
    return p;
}

const char *remote_errmsg(const struct remote *r)
{
    return r ? r->msg : "";
}

int remote_fail(struct remote *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    return rc;
}

int remote_bad_answer(struct remote *r, const char *what)
{
    return remote_fail(r, KD_EIO, "the server at %s sent %s that kdelta cannot read", r->base, what);
}

/* ------------------------------------------------------------------------
 * Paths
 * ---------------------------------------------------------------------- */

/* Append s percent-encoded (everything but A-Z a-z 0-9 - . _ ~). */
static void add_encoded(ks_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_' || ch == '~') {
            ks_buf_add(b, (const char *)p, 1);
        } else {
            char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            ks_buf_add(b, esc, 3);
        }
    }
}

char *remote_path(const char *fmt, ...)
{
    ks_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    for (const char *p = fmt; *p; p++) {
        if (p[0] == '%' && p[1] == 's') {
            const char *seg = va_arg(ap, const char *);
            /* "." and ".." would be dot segments, which URL handling
             * resolves away (RFC 3986 5.2.4): encode them */
            if (strcmp(seg, ".") == 0)
                ks_buf_add(&b, "%2E", 3);
            else if (strcmp(seg, "..") == 0)
                ks_buf_add(&b, "%2E%2E", 6);
            else
                add_encoded(&b, seg);
            p++;
        } else {
            ks_buf_add(&b, p, 1);
        }
    }
    va_end(ap);
    return ks_buf_take(&b);
}

void remote_time_param(char **path, const char *name, int64_t ts)
{
    char t[32];
    snprintf(t, sizeof t, "@%" PRId64, ts);
    remote_param(path, name, t);
}

void remote_param(char **path, const char *name, const char *value)
{
    ks_buf b = {0};
    ks_buf_add(&b, *path, strlen(*path));
    ks_buf_add(&b, strchr(*path, '?') ? "&" : "?", 1);
    add_encoded(&b, name);
    ks_buf_add(&b, "=", 1);
    add_encoded(&b, value);
    free(*path);
    *path = ks_buf_take(&b);
}

/* ------------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------- */

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
    ks_buf_add(ctx, data, size * n);
    return size * n;
}

/* The library status named by an error code of the server ("not_found"). */
int remote_status_of_code(const char *code, long http)
{
    char buf[64];
    for (int rc = -1; rc >= -64; rc--) {
        if (strcmp(kd_errname(rc), "KD_EUNKNOWN") != 0 && strcmp(ks_kd_code(rc, buf, sizeof buf), code) == 0)
            return rc;
    }
    /* the HTTP layer's own codes */
    if (http == 404)
        return KD_ENOTFOUND;
    if (http == 413)
        return KD_ETOOBIG;
    if (http == 503)
        return KD_EBUSY;
    return http >= 400 && http < 500 ? KD_EINVALID : KD_EIO;
}

/* Turn a non-2xx answer into a status, with its message in r->msg. */
static int answer_error(struct remote *r, long http, const char *body, size_t len)
{
    char *canon = NULL;
    size_t clen = 0;
    char err[256];
    const char *e;
    size_t elen;
    if (kd_json_canonical(body, len, &canon, &clen, err, sizeof err) == KD_OK &&
        rj_member(canon, clen, "error", &e, &elen)) {
        char *code = rj_string(e, elen, "code"), *message = rj_string(e, elen, "message");
        snprintf(r->msg, sizeof r->msg, "%s", message ? message : "");
        int rc = remote_status_of_code(code ? code : "", http);
        free(code);
        free(message);
        kd_free(canon);
        return rc;
    }
    kd_free(canon);
    snprintf(r->msg, sizeof r->msg, "the server at %s answered HTTP %ld", r->base, http);
    return remote_status_of_code("", http);
}

/* Set up r->curl for method + path; returns the headers to free. */
static struct curl_slist *prepare(struct remote *r, const char *method, const char *path, const char *const *extra)
{
    CURL *h = r->curl;
    curl_easy_reset(h);
    char *full = remote_request_path(r, path);
    size_t ul = strlen(r->base) + strlen(full) + 2;
    char *url = xmalloc(ul);
    snprintf(url, ul, "%s/%s", r->base, full);
    free(full);
    curl_easy_setopt(h, CURLOPT_URL, url);
    free(url); /* libcurl copies option strings */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L); /* the path is exactly what remote_path built */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Expect:"); /* no 100-continue round trip for large bodies */
    if (r->auth[0])
        hdr = curl_slist_append(hdr, r->auth);
    for (; extra && *extra; extra++)
        hdr = curl_slist_append(hdr, *extra);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    return hdr;
}

static int transport_error(struct remote *r, CURLcode cc)
{
    snprintf(r->msg, sizeof r->msg, "cannot reach the server at %s: %s", r->base, curl_easy_strerror(cc));
    return KD_EIO;
}

int remote_call(struct remote *r, const char *method, const char *path, const char *body, size_t len, char **resp,
                size_t *resp_len)
{
    if (resp)
        *resp = NULL;
    if (resp_len)
        *resp_len = 0;
    r->msg[0] = '\0';
    struct curl_slist *hdr = prepare(r, method, path, NULL);
    ks_buf in = {0};
    if (body) {
        curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, &in);
    CURLcode cc = curl_easy_perform(r->curl);
    curl_slist_free_all(hdr);
    if (cc != CURLE_OK) {
        free(in.p);
        return transport_error(r, cc);
    }
    long http = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &http);
    if (http < 200 || http > 299) {
        int rc = answer_error(r, http, in.p ? in.p : "", in.len);
        free(in.p);
        return rc;
    }
    if (!resp) {
        free(in.p);
        return KD_OK;
    }
    if (in.len == 0) {
        free(in.p);
        *resp = xstrdup("");
        return KD_OK;
    }
    char err[256];
    int rc = kd_json_canonical(in.p, in.len, resp, resp_len, err, sizeof err);
    free(in.p);
    if (rc != KD_OK) {
        snprintf(r->msg, sizeof r->msg, "the server at %s answered with invalid JSON: %s", r->base, err);
        return KD_EIO;
    }
    return KD_OK;
}

/* Streaming: chunks go to the caller once the answer is known to be 2xx;
 * an error answer is collected whole for answer_error. */
struct stream {
    struct remote *r;
    remote_chunk_fn fn;
    void *ctx;
    int ok;       /* answer is 2xx */
    int stopped;  /* fn asked to stop */
    ks_buf error; /* body of an error answer */
};

static size_t stream_chunk(char *data, size_t size, size_t n, void *ctx)
{
    struct stream *s = ctx;
    if (!s->ok) {
        long http = 0;
        curl_easy_getinfo(s->r->curl, CURLINFO_RESPONSE_CODE, &http);
        if (http < 200 || http > 299) {
            ks_buf_add(&s->error, data, size * n);
            return size * n;
        }
        s->ok = 1;
    }
    if (s->fn(s->ctx, data, size * n) != 0) {
        s->stopped = 1;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    return size * n;
}

int remote_stream(struct remote *r, const char *path, const char *const *headers, remote_chunk_fn fn, void *ctx)
{
    r->msg[0] = '\0';
    struct curl_slist *hdr = prepare(r, "GET", path, headers);
    struct stream s = {.r = r, .fn = fn, .ctx = ctx};
    curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, stream_chunk);
    curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, &s);
    CURLcode cc = curl_easy_perform(r->curl);
    curl_slist_free_all(hdr);
    long http = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &http);
    int rc = KD_OK;
    if (s.stopped)
        rc = KD_OK;
    else if (cc != CURLE_OK)
        rc = transport_error(r, cc);
    else if (http < 200 || http > 299)
        rc = answer_error(r, http, s.error.p ? s.error.p : "", s.error.len);
    free(s.error.p);
    return rc;
}

/* ------------------------------------------------------------------------
 * Reading answers
 * ---------------------------------------------------------------------- */

int rj_member(const char *json, size_t len, const char *name, const char **val, size_t *vlen)
{
    if (len == 0 || json[0] != '{')
        return 0;
    size_t pos = 0, nl = strlen(name);
    const char *n;
    size_t nlen;
    while (kd_json_next(json, len, &pos, &n, &nlen, val, vlen) == 1) {
        /* member names of the server's answers are plain ASCII: their
         * canonical literal is the name in quotes */
        if (nlen == nl + 2 && memcmp(n + 1, name, nl) == 0)
            return 1;
    }
    return 0;
}

char *rj_string(const char *json, size_t len, const char *name)
{
    const char *v;
    size_t vl;
    char *s = NULL;
    size_t sl;
    if (!rj_member(json, len, name, &v, &vl) || vl == 0 || v[0] != '"' || kd_json_unquote(v, vl, &s, &sl) != KD_OK)
        return NULL;
    return s;
}

uint64_t rj_u64(const char *json, size_t len, const char *name)
{
    const char *v;
    size_t vl;
    uint64_t n = 0;
    if (!rj_member(json, len, name, &v, &vl))
        return 0;
    for (size_t i = 0; i < vl && v[i] >= '0' && v[i] <= '9'; i++)
        n = n * 10 + (uint64_t)(v[i] - '0');
    return n;
}

int64_t rj_time(const char *json, size_t len, const char *name)
{
    char *text = rj_string(json, len, name);
    int64_t ts = 0;
    char err[128];
    if (text && kd_time_parse(text, &ts, err, sizeof err) != KD_OK)
        ts = 0;
    free(text);
    return ts;
}

static void copy_id(char dst[KD_ID_HEX], const char *json, size_t len, const char *name)
{
    char *s = rj_string(json, len, name);
    dst[0] = '\0';
    if (s && strlen(s) == KD_ID_HEX - 1)
        memcpy(dst, s, KD_ID_HEX);
    free(s);
}

static size_t kept_bucket(const char *id)
{
    size_t h = 0;
    for (int i = 0; i < 8 && id[i]; i++)
        h = h * 31 + (unsigned char)id[i];
    return h % KEPT_BUCKETS;
}

static void keep_value(struct remote *r, const char *id, const char *value, size_t len)
{
    size_t b = kept_bucket(id);
    for (struct kept_value *k = r->kept[b]; k; k = k->next)
        if (strcmp(k->id, id) == 0)
            return;
    struct kept_value *k = xmalloc(sizeof *k + len + 1);
    memcpy(k->id, id, KD_ID_HEX);
    k->len = len;
    memcpy(k->value, value, len);
    k->value[len] = '\0';
    k->next = r->kept[b];
    r->kept[b] = k;
}

int rj_record(struct remote *r, const char *rec, size_t len, kd_version *v, const char **value, size_t *value_len)
{
    memset(v, 0, sizeof *v);
    const char *val = NULL, *del;
    size_t vl = 0, dl;
    if (!rj_member(rec, len, "write_id", &del, &dl) || !rj_member(rec, len, "deleted", &del, &dl))
        return KD_EINVALID;
    copy_id(v->version_id, rec, len, "version_id");
    copy_id(v->write_id, rec, len, "write_id");
    copy_id(v->previous_write_id, rec, len, "previous_write_id");
    v->timestamp = rj_time(rec, len, "timestamp");
    v->deleted = dl == 4 && memcmp(del, "true", 4) == 0;
    const char *pr;
    size_t pl;
    v->pruned = rj_member(rec, len, "pruned", &pr, &pl) && pl == 4 && memcmp(pr, "true", 4) == 0;
    if (v->pruned && rj_member(rec, len, "pruned_by", &pr, &pl) && pl == 16 && memcmp(pr, "\"workspace_drop\"", 16) == 0)
        v->pruned = KD_PRUNED_WORKSPACE;
    if (!v->deleted && rj_member(rec, len, "value", &val, &vl) && v->version_id[0])
        keep_value(r, v->version_id, val, vl);
    else
        val = NULL, vl = 0;
    if (value)
        *value = val;
    if (value_len)
        *value_len = vl;
    return KD_OK;
}

int remote_value(struct remote *r, const char *version_id, char **out, size_t *len)
{
    for (struct kept_value *k = r->kept[kept_bucket(version_id)]; k; k = k->next) {
        if (strcmp(k->id, version_id) == 0) {
            *out = xmalloc(k->len + 1);
            memcpy(*out, k->value, k->len + 1);
            *len = k->len;
            return KD_OK;
        }
    }
    snprintf(r->msg, sizeof r->msg, "version %s: its value was not sent by the server", version_id);
    return KD_ENOTFOUND;
}

void remote_forget(struct remote *r)
{
    if (r)
        forget_values(r);
}

int rj_string_list(const char *json, size_t len, char ***list, size_t *n)
{
    *list = NULL;
    *n = 0;
    size_t pos = 0, cap = 0;
    const char *v;
    size_t vl;
    if (len == 0 || json[0] != '[')
        return KD_EINVALID;
    int more;
    while ((more = kd_json_next(json, len, &pos, NULL, NULL, &v, &vl)) == 1) {
        char *s = NULL;
        size_t sl;
        if (kd_json_unquote(v, vl, &s, &sl) != KD_OK) {
            kd_free_list(*list, *n);
            *list = NULL;
            *n = 0;
            return KD_EINVALID;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *list = xrealloc(*list, cap * sizeof **list);
        }
        (*list)[(*n)++] = s;
    }
    return more < 0 ? KD_EINVALID : KD_OK;
}
