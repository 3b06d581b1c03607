/*
 * vstore_codec.c — the bytes of a stored vector and the text forms of a
 * vector: the record {"dim","meta","model","vector"} (vstore.h), strict
 * base64, the public JSON-array parser and writer, and metric names.
 *
 * Everything here is pure (no database, no locks), so the fuzz target
 * (tests/fuzz/fuzz_vector.c) drives it directly. The record parser works
 * on canonical JSON, as stored; it checks every member it uses and never
 * reads outside the slice.
 */
#include <locale.h>
#include <stdarg.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "query/jv.h"
#include "vector/vstore.h"
#include "../util/le.h"

/* ------------------------------------------------------------------------
 * Numbers in the C locale (the process may have set another LC_NUMERIC)
 * ---------------------------------------------------------------------- */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static float parse_float(const char *s)
{
    pthread_once(&c_locale_once, c_locale_init);
    if (c_locale)
        return strtof_l(s, NULL, c_locale);
    return strtof(s, NULL);
}

/* ------------------------------------------------------------------------
 * Base64 (RFC 4648, with padding)
 * ---------------------------------------------------------------------- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int kd__base64_encode(kd__buf *out, const void *p, size_t n)
{
    const uint8_t *s = p;
    size_t need = (n + 2) / 3 * 4;
    int rc = kd__buf_reserve(out, need);
    if (rc)
        return rc;
    char *o = out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = b64_alphabet[x >> 18];
        *o++ = b64_alphabet[(x >> 12) & 63];
        *o++ = b64_alphabet[(x >> 6) & 63];
        *o++ = b64_alphabet[x & 63];
    }
    if (n - i == 1) {
        uint32_t x = (uint32_t)s[i] << 16;
        *o++ = b64_alphabet[x >> 18];
        *o++ = b64_alphabet[(x >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *o++ = b64_alphabet[x >> 18];
        *o++ = b64_alphabet[(x >> 12) & 63];
        *o++ = b64_alphabet[(x >> 6) & 63];
        *o++ = '=';
    }
    out->len += need;
    out->data[out->len] = '\0';
    return KD_OK;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int kd__base64_decode(const char *in, size_t len, uint8_t *out, size_t *n)
{
    *n = 0;
    if (len % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + j];
            if (c == '=' && last && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad) /* a character after '=' */
                return -1;
            if ((v[j] = b64_value(c)) < 0)
                return -1;
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* The bits the padding leaves unused must be zero, so each byte
         * string has exactly one encoding. */
        if ((pad == 1 && (x & 0xff)) || (pad == 2 && (x & 0xffff)))
            return -1;
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(x >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)x;
    }
    *n = o;
    return 0;
}

/* ------------------------------------------------------------------------
 * Components
 * ---------------------------------------------------------------------- */

int kd__vec_validate(const float *v, size_t dim, char *err, size_t errlen)
{
    int nonzero = 0;
    for (size_t i = 0; i < dim; i++) {
        if (isnan(v[i])) {
            snprintf(err, errlen, "component %zu is NaN", i);
            return KD_EINVALID;
        }
        if (isinf(v[i])) {
            snprintf(err, errlen, "component %zu is %sInf", i, v[i] < 0 ? "-" : "+");
            return KD_EINVALID;
        }
        if (v[i] != 0.0f)
            nonzero = 1;
    }
    if (!nonzero) {
        snprintf(err, errlen, "all %zu components are zero (a zero vector has no direction)", dim);
        return KD_EINVALID;
    }
    /* The index normalizes vectors: their length must be a finite float. */
    double sum = 0;
    for (size_t i = 0; i < dim; i++)
        sum += (double)v[i] * (double)v[i];
    if (!(sqrt(sum) < 3.4e38)) {
        snprintf(err, errlen, "the vector's length overflows float32");
        return KD_EINVALID;
    }
    return KD_OK;
}

/* Little-endian float32 bytes, whatever the host's order. */
static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    kd__put_u32(p, u);
}

static float get_f32(const uint8_t *p)
{
    uint32_t u = kd__get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------------------
 * The record
 * ---------------------------------------------------------------------- */

int kd__vrec_encode(kd__buf *out, const char *model, size_t model_len, const float *v, uint32_t dim,
                    const char *meta, size_t meta_len)
{
    uint8_t *bytes = malloc((size_t)dim * 4);
    if (!bytes)
        return KD_ENOMEM;
    for (uint32_t i = 0; i < dim; i++)
        put_f32(bytes + 4 * (size_t)i, v[i]);
    int rc = kd__buf_printf(out, "{\"dim\":%u,\"meta\":", dim);
    if (!rc)
        rc = kd__buf_append(out, meta, meta_len);
    if (!rc)
        rc = kd__buf_puts(out, ",\"model\":");
    if (!rc)
        rc = kd__json_write_string(out, model, model_len);
    if (!rc)
        rc = kd__buf_puts(out, ",\"vector\":\"");
    if (!rc)
        rc = kd__base64_encode(out, bytes, (size_t)dim * 4);
    if (!rc)
        rc = kd__buf_puts(out, "\"}");
    free(bytes);
    return rc == KD_EINVALID ? KD_EINVALID : rc ? KD_ENOMEM : KD_OK;
}

static int name_is(kd__jv name, const char *quoted)
{
    size_t n = strlen(quoted);
    return name.len == n && !memcmp(name.p, quoted, n);
}

int kd__vrec_parse(const char *json, size_t len, kd__vrec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    kd__jv obj = {json, len};
    if (!json || len < 2 || json[0] != '{' || kd__jv_skip_trusted(json, json + len) != len) {
        snprintf(err, errlen, "not a JSON object");
        return KD_EINVALID;
    }
    int have_dim = 0, have_meta = 0, have_model = 0, have_vector = 0;
    size_t pos = 0;
    kd__jv name, val;
    while (kd__jv_next_member(obj, &pos, &name, &val)) {
        if (name_is(name, "\"dim\"")) {
            int64_t d;
            if (!kd__jv_int64(val, &d) || d < 1 || d > KD_VECTOR_MAX_DIM) {
                snprintf(err, errlen, "\"dim\" is not an integer from 1 to %d", KD_VECTOR_MAX_DIM);
                return KD_EINVALID;
            }
            out->dim = (uint32_t)d;
            have_dim = 1;
        } else if (name_is(name, "\"meta\"")) {
            out->meta = val.p;
            out->meta_len = val.len;
            have_meta = 1;
        } else if (name_is(name, "\"model\"")) {
            if (kd__jv_type(val) != KD__J_STRING) {
                snprintf(err, errlen, "\"model\" is not a string");
                return KD_EINVALID;
            }
            kd__buf m = KD__BUF_INIT;
            int rc = kd__jv_string(val, &m);
            if (rc) {
                kd__buf_free(&m);
                snprintf(err, errlen, rc == KD_ENOMEM ? "out of memory" : "\"model\" is not a string");
                return rc;
            }
            int ok = m.len >= 1 && m.len <= KD__VSTORE_MAX_MODEL && !memchr(m.data, '\0', m.len) &&
                     kd__utf8_valid(m.data, m.len);
            if (ok) {
                memcpy(out->model, m.data, m.len);
                out->model[m.len] = '\0';
                out->model_len = m.len;
            }
            kd__buf_free(&m);
            if (!ok) {
                snprintf(err, errlen, "\"model\" is not 1 to %d bytes of UTF-8 without NUL", KD__VSTORE_MAX_MODEL);
                return KD_EINVALID;
            }
            have_model = 1;
        } else if (name_is(name, "\"vector\"")) {
            if (kd__jv_type(val) != KD__J_STRING || val.len < 2) {
                snprintf(err, errlen, "\"vector\" is not a string");
                return KD_EINVALID;
            }
            out->b64 = val.p + 1;
            out->b64_len = val.len - 2;
            have_vector = 1;
        }
        /* other members: a later version's; ignored */
    }
    if (pos != len - 1 && !(len == 2 && pos == 0)) {
        snprintf(err, errlen, "not a well-formed JSON object");
        return KD_EINVALID;
    }
    if (!have_dim || !have_meta || !have_model || !have_vector) {
        snprintf(err, errlen, "member \"%s\" is missing",
                 !have_dim ? "dim" : !have_meta ? "meta" : !have_model ? "model" : "vector");
        return KD_EINVALID;
    }
    return KD_OK;
}

int kd__vrec_vector(const kd__vrec *r, float *out, char *err, size_t errlen)
{
    size_t want = (size_t)r->dim * 4;
    if (r->b64_len != (want + 2) / 3 * 4) {
        snprintf(err, errlen, "\"vector\" holds %zu base64 characters; %u dimensions need %zu", r->b64_len, r->dim,
                 (want + 2) / 3 * 4);
        return KD_EINVALID;
    }
    uint8_t *bytes = malloc(want + 3);
    if (!bytes) {
        snprintf(err, errlen, "out of memory");
        return KD_ENOMEM;
    }
    size_t n;
    if (kd__base64_decode(r->b64, r->b64_len, bytes, &n) || n != want) {
        free(bytes);
        snprintf(err, errlen, "\"vector\" is not base64 of %zu bytes", want);
        return KD_EINVALID;
    }
    for (uint32_t i = 0; i < r->dim; i++)
        out[i] = get_f32(bytes + 4 * (size_t)i);
    free(bytes);
    for (uint32_t i = 0; i < r->dim; i++)
        if (!isfinite(out[i])) {
            snprintf(err, errlen, "component %u is not finite", i);
            return KD_EINVALID;
        }
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Public text helpers
 * ---------------------------------------------------------------------- */

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

int kd_vector_metric_parse(const char *name, kd_vector_metric *out, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out)
        return KD_EMISUSE;
    if (name && !strcmp(name, "cosine"))
        *out = KD_VECTOR_COSINE;
    else if (name && !strcmp(name, "dot"))
        *out = KD_VECTOR_DOT;
    else if (name && !strcmp(name, "l2"))
        *out = KD_VECTOR_L2;
    else {
        set_err(errbuf, errlen, "unknown metric '%.100s': use cosine, dot or l2", name ? name : "(null)");
        return KD_EINVALID;
    }
    return KD_OK;
}

const char *kd_vector_metric_name(kd_vector_metric m)
{
    switch (m) {
    case KD_VECTOR_COSINE:
        return "cosine";
    case KD_VECTOR_DOT:
        return "dot";
    case KD_VECTOR_L2:
        return "l2";
    }
    return NULL;
}

int kd_vector_check(const float *v, size_t dim, char *errbuf, size_t errlen)
{
    char why[256];
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!v || dim == 0 || dim > KD_VECTOR_MAX_DIM) {
        set_err(errbuf, errlen, "a vector has 1 to %d numbers; this one has %zu", KD_VECTOR_MAX_DIM, v ? dim : 0);
        return KD_EINVALID;
    }
    int rc = kd__vec_validate(v, dim, why, sizeof why);
    if (rc)
        set_err(errbuf, errlen, "%s", why);
    return rc;
}

int kd_vector_parse(const char *json, size_t len, float **out, size_t *dim, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out || !dim)
        return KD_EMISUSE;
    *out = NULL;
    *dim = 0;
    if (!json) {
        set_err(errbuf, errlen, "vector is missing");
        return KD_EINVALID;
    }
    kd__buf canon = KD__BUF_INIT;
    char jerr[256];
    int rc = kd__json_canonicalize(json, len, &canon, jerr, sizeof jerr);
    if (rc) {
        kd__buf_free(&canon);
        if (rc == KD_EINVALID)
            set_err(errbuf, errlen, "%s", jerr);
        return rc;
    }
    kd__jv arr = {canon.data, canon.len};
    if (kd__jv_type(arr) != KD__J_ARRAY) {
        kd__buf_free(&canon);
        set_err(errbuf, errlen, "a vector is a JSON array of numbers");
        return KD_EINVALID;
    }
    size_t n = kd__jv_count(arr);
    if (n == 0 || n > KD_VECTOR_MAX_DIM) {
        kd__buf_free(&canon);
        set_err(errbuf, errlen, "a vector has 1 to %d numbers; this array has %zu", KD_VECTOR_MAX_DIM, n);
        return KD_EINVALID;
    }
    float *v = malloc(n * sizeof *v);
    if (!v) {
        kd__buf_free(&canon);
        return KD_ENOMEM;
    }
    size_t pos = 0, i = 0;
    kd__jv item;
    rc = KD_OK;
    while (!rc && kd__jv_next_item(arr, &pos, &item)) {
        if (kd__jv_type(item) != KD__J_NUMBER) {
            set_err(errbuf, errlen, "element %zu is not a number", i);
            rc = KD_EINVALID;
            break;
        }
        char small[64], *text = small;
        if (item.len >= sizeof small && !(text = malloc(item.len + 1))) {
            rc = KD_ENOMEM;
            break;
        }
        memcpy(text, item.p, item.len);
        text[item.len] = '\0';
        v[i] = parse_float(text);
        if (text != small)
            free(text);
        if (!isfinite(v[i])) {
            set_err(errbuf, errlen, "element %zu (%.*s%s) is beyond the range of float32", i,
                    (int)(item.len > 40 ? 40 : item.len), item.p, item.len > 40 ? "..." : "");
            rc = KD_EINVALID;
        }
        i++;
    }
    kd__buf_free(&canon);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *dim = n;
    return KD_OK;
}

/* Shortest "%.*g" text (in the C locale) that reads back as f. */
static int write_float(kd__buf *b, float f)
{
    /* "-0" would be read as the integer 0 (canonical JSON keeps -0.0
     * only as a non-integer). */
    if (f == 0.0f)
        return kd__buf_puts(b, signbit(f) ? "-0.0" : "0");
    pthread_once(&c_locale_once, c_locale_init);
    locale_t old = c_locale ? uselocale(c_locale) : (locale_t)0;
    char t[48];
    for (int p = 1; p <= 9; p++) {
        snprintf(t, sizeof t, "%.*g", p, (double)f);
        if (parse_float(t) == f)
            break;
    }
    if (old)
        uselocale(old);
    return kd__buf_puts(b, t);
}

int kd_vector_to_json(const float *v, size_t dim, char **out, size_t *len)
{
    if (!out)
        return KD_EMISUSE;
    *out = NULL;
    if (len)
        *len = 0;
    if (!v && dim)
        return KD_EINVALID;
    for (size_t i = 0; i < dim; i++)
        if (!isfinite(v[i]))
            return KD_EINVALID;
    kd__buf b = KD__BUF_INIT;
    int rc = kd__buf_putc(&b, '[');
    for (size_t i = 0; i < dim && !rc; i++) {
        if (i)
            rc = kd__buf_putc(&b, ',');
        if (!rc)
            rc = write_float(&b, v[i]);
    }
    if (!rc)
        rc = kd__buf_putc(&b, ']');
    if (rc) {
        kd__buf_free(&b);
        return KD_ENOMEM;
    }
    size_t n;
    *out = kd__buf_steal(&b, &n);
    if (len)
        *len = n;
    return KD_OK;
}

int kd__vrec_check(const char *json, size_t len, char *err, size_t errlen)
{
    kd__buf canon = KD__BUF_INIT;
    int rc = kd__json_canonicalize(json, len, &canon, err, errlen);
    kd__vrec r;
    if (!rc)
        rc = kd__vrec_parse(canon.data, canon.len, &r, err, errlen);
    if (!rc) {
        /* the vector too, as a put checks it: not zero, a finite length */
        float *v = malloc(sizeof(float) * (r.dim ? r.dim : 1));
        rc = v ? kd__vrec_vector(&r, v, err, errlen) : KD_ENOMEM;
        if (!rc)
            rc = kd__vec_validate(v, r.dim, err, errlen);
        free(v);
    }
    kd__buf_free(&canon);
    return rc;
}
