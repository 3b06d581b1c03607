/*
 * util.c — small pieces the route handlers share: filling a ks_response
 * with JSON or with an error body, mapping library status codes to HTTP,
 * percent-decoding, and the default configuration.
 *
 * Everything here is independent of libmicrohttpd (http.c owns that).
 * Allocation failures end the process, as in the CLI (STYLE.md: only the
 * CLI and the server may use abort-on-OOM wrappers).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "server_int.h"

/* ------------------------------------------------------------------------
 * Memory
 * ---------------------------------------------------------------------- */

void *ks_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fputs("kdelta serve: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *ks_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("kdelta serve: out of memory\n", stderr);
        abort();
    }
    return q;
}

char *ks_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(ks_xmalloc(n), s, n);
}

/* ------------------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------------- */

void ks_config_defaults(ks_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bind = "127.0.0.1";
    cfg->port = 7878;
    cfg->insecure = 0;
    cfg->max_body = (size_t)32 << 20;
    cfg->max_connections = 1024;
    cfg->timeout_s = 30;
    cfg->log_level = KD_LOG_INFO;
    cfg->auth = 0;
    cfg->auth_difficulty = 20;
    cfg->owner_doc = NULL;
    cfg->session_ttl_ns = 86400 * (int64_t)1000000000;
}

/* ------------------------------------------------------------------------
 * Responses
 * ---------------------------------------------------------------------- */

void ks_location(ks_response *res, const char *path, size_t len)
{
    free(res->location);
    res->location = ks_xmalloc(len + 1);
    memcpy(res->location, path, len);
    res->location[len] = '\0';
}

void ks_json_take(ks_response *res, int status, char *json, size_t len)
{
    free(res->body);
    res->status = status;
    res->body = json;
    res->body_len = len;
    res->content_type = "application/json";
}

void ks_reply(ks_response *res, int status, ks_buf *b)
{
    size_t len = b->len;
    ks_json_take(res, status, ks_buf_take(b), len);
}

int ks_reserved(ks_response *res, const char *ns)
{
    if (strncmp(ns, "_kd", 3) != 0)
        return 0;
    char why[1500]; /* the library's words, as the CLI and a write give them */
    if (kd_check_name(ns, NULL, why, sizeof why) != KD_ERESERVED)
        snprintf(why, sizeof why, "namespace '%s' is reserved: names starting with _kd belong to the database", ns);
    ks_error(res, 400, "reserved", "%s", why);
    return 1;
}

int ks_from_to(ks_response *res, int64_t from, int64_t to)
{
    if (from <= to)
        return 0;
    ks_error(res, 400, "invalid", "from: is later than to");
    return -1;
}

int ks_time_param(const ks_request *req, ks_response *res, const char *name, int64_t *ts)
{
    const char *s = ks_param(req, name);
    if (!s)
        return 0;
    char err[256];
    if (kd_time_parse(s, ts, err, sizeof err) != KD_OK) {
        ks_error(res, 400, "invalid", "%s: %s", name, err);
        return -1;
    }
    return 1;
}

int ks_uint_param(const ks_request *req, ks_response *res, const char *name, uint64_t min, uint64_t max,
                  uint64_t *out)
{
    const char *s = ks_param(req, name);
    if (!s)
        return 0;
    int ok = *s != '\0' && strlen(s) <= 19;
    for (const char *p = s; ok && *p; p++)
        ok = *p >= '0' && *p <= '9';
    uint64_t v = ok ? strtoull(s, NULL, 10) : 0;
    if (!ok || v < min || v > max) {
        ks_error(res, 400, "invalid", "%s: expected a whole number from %" PRIu64 " to %" PRIu64, name, min, max);
        return -1;
    }
    *out = v;
    return 1;
}

void ks_json(ks_response *res, int status, const char *json, size_t len)
{
    char *b = ks_xmalloc(len + 1);
    memcpy(b, json, len);
    b[len] = '\0';
    ks_json_take(res, status, b, len);
}

/* Append `s` (len bytes) to the buffer as the inside of a JSON string. */
static void json_escape(ks_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
        case '"': ks_buf_add(b, "\\\"", 2); break;
        case '\\': ks_buf_add(b, "\\\\", 2); break;
        case '\n': ks_buf_add(b, "\\n", 2); break;
        case '\r': ks_buf_add(b, "\\r", 2); break;
        case '\t': ks_buf_add(b, "\\t", 2); break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
                ks_buf_add(b, e, 6);
            } else {
                ks_buf_add(b, (const char *)&ch, 1);
            }
        }
    }
}

/* Messages come from the library and from handlers and may quote user
 * input; bytes that are not valid UTF-8 become '?' so the body is always
 * valid JSON. Length of the sequence at s, 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t need = (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (!need || need > n || s[0] == 0xc0 || s[0] == 0xc1 || s[0] > 0xf4)
        return 0;
    for (size_t i = 1; i < need; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] > 0x8f))
        return 0; /* overlong, a surrogate, or past U+10FFFF */
    return need;
}

void ks_json_string(ks_buf *b, const char *s, size_t len)
{
    ks_buf_add(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        size_t l = utf8_len((const unsigned char *)s + i, len - i);
        if (!l) {
            ks_buf_add(b, "?", 1);
            i++;
            continue;
        }
        json_escape(b, s + i, l);
        i += l;
    }
    ks_buf_add(b, "\"", 1);
}

void ks_error(ks_response *res, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    ks_buf b = {0};
    ks_buf_add(&b, "{\"error\":{\"code\":", 17);
    ks_json_string(&b, code, strlen(code));
    ks_buf_add(&b, ",\"message\":", 11);
    ks_json_string(&b, msg, (size_t)n);
    ks_buf_add(&b, "}}", 2);
    size_t len = b.len;
    ks_json_take(res, status, ks_buf_take(&b), len);
}

int ks_kd_status(int rc)
{
    switch (rc) {
    case KD_ENOTFOUND:
    case KD_EDELETED:
    case KD_ENOVERSION:
        return 404;
    case KD_EINVALID:
    case KD_ERESERVED:
    case KD_ETOOBIG:
        return 400;
    case KD_ECONFLICT:
        return 412;
    case KD_EEXISTS:
        return 409;
    case KD_EPRUNED:
        return 410; /* it was there; retention removed it */
    case KD_EBUSY:
    case KD_ETIMEOUT:
        return 503;
    case KD_ENOSPACE:
        return 507;
    default:
        return 500;
    }
}

const char *ks_kd_code(int rc, char *buf, size_t size)
{
    /* "KD_ENOTFOUND" -> "not_found": the name without KD_E, lower case,
     * with the few two-word names split. */
    switch (rc) {
    case KD_ENOTFOUND: return "not_found";
    case KD_ENOVERSION: return "no_version";
    case KD_ENOSPACE: return "no_space";
    case KD_ENOMEM: return "no_memory";
    case KD_ETOOBIG: return "too_big";
    default: break;
    }
    const char *name = kd_errname(rc);
    if (strncmp(name, "KD_E", 4) == 0)
        name += 4;
    else if (strncmp(name, "KD_", 3) == 0)
        name += 3;
    size_t i = 0;
    for (; name[i] && i + 1 < size; i++)
        buf[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
    buf[i] = '\0';
    return buf;
}

void ks_kd_error(ks_response *res, kd_db *db, int rc)
{
    char code[32];
    const char *msg = db ? kd_errmsg(db) : "";
    if (!msg || !*msg)
        msg = kd_strerror(rc);
    ks_error(res, ks_kd_status(rc), ks_kd_code(rc, code, sizeof code), "%s", msg);
}

/* ------------------------------------------------------------------------
 * Growing buffers
 * ---------------------------------------------------------------------- */

void ks_buf_add(ks_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = ks_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void ks_buf_printf(ks_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        ks_buf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = ks_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ks_buf_add(b, big, (size_t)n);
    free(big);
}

char *ks_buf_take(ks_buf *b)
{
    char *p = b->p ? b->p : ks_xstrdup("");
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ------------------------------------------------------------------------
 * Percent-decoding
 * ---------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *ks_percent_decode(const char *s, size_t len)
{
    char *out = ks_xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '\0')
            goto bad;
        if (c == '%') {
            if (i + 2 >= len)
                goto bad;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                goto bad;
            c = (char)(hi << 4 | lo);
            if (c == '\0')
                goto bad;
            i += 2;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    /* Names and parameters are text: a read of a name that is not UTF-8
     * is as bad a request as a write of one. */
    for (size_t i = 0, l; i < o; i += l)
        if (!(l = utf8_len((const unsigned char *)out + i, o - i)))
            goto bad;
    return out;
bad:
    free(out);
    return NULL;
}
