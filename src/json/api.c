/*
 * api.c — the public JSON helpers of include/korudelta.h: kd_json_canonical,
 * kd_json_quote and kd_version_json.
 *
 * They are thin wrappers over the library's own parser and writer
 * (json.h), so a caller of the public API gets exactly the bytes the
 * database stores and hashes. Results are built in a kd__buf and handed
 * out NUL-terminated with kd__buf_steal(); the caller frees them with
 * kd_free(). Nothing here aborts: allocation failure is KD_ENOMEM, bad
 * arguments are KD_EINVALID, and *out is NULL (*outlen 0) on any error.
 */
#include <stdio.h>
#include <string.h>

#include "json/json.h"
#include "korudelta.h"
#include "util/buf.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static void set_err(char *errbuf, size_t errlen, const char *msg)
{
    if (errbuf && errlen > 0)
        snprintf(errbuf, errlen, "%s", msg);
}

/* Hand the buffer's bytes to the caller, or clear the outputs on error. */
static int finish(int rc, kd__buf *b, char **out, size_t *outlen)
{
    if (rc == KD_OK) {
        size_t n = 0;
        char *p = kd__buf_steal(b, &n);
        if (!p) {
            rc = KD_ENOMEM;
        } else {
            *out = p;
            if (outlen)
                *outlen = n;
            return KD_OK;
        }
    }
    kd__buf_free(b);
    *out = NULL;
    if (outlen)
        *outlen = 0;
    return rc;
}

/* ------------------------------------------------------------------------
 * kd_json_canonical / kd_json_quote
 * ---------------------------------------------------------------------- */

KD_EXPORT int kd_json_canonical(const char *in, size_t len, char **out, size_t *outlen, char *errbuf, size_t errlen)
{
    kd__buf b = KD__BUF_INIT;
    char local[256];
    char *err = (errbuf && errlen > 0) ? errbuf : local;
    size_t elen = (errbuf && errlen > 0) ? errlen : sizeof local;
    err[0] = '\0';

    if (!out) {
        set_err(errbuf, errlen, "kd_json_canonical: out is NULL");
        return KD_EINVALID;
    }
    if (!in && len > 0) {
        set_err(errbuf, errlen, "kd_json_canonical: input is NULL");
        return finish(KD_EINVALID, &b, out, outlen);
    }
    int rc = kd__json_canonicalize(in ? in : "", len, &b, err, elen);
    if (rc == KD_OK && !b.data)
        rc = kd__buf_reserve(&b, 0); /* cannot happen for valid JSON; be safe */
    if (rc != KD_OK && err[0] == '\0')
        set_err(err, elen, kd_strerror(rc));
    return finish(rc, &b, out, outlen);
}

KD_EXPORT int kd_json_quote(const char *s, size_t len, char **out, size_t *outlen)
{
    kd__buf b = KD__BUF_INIT;
    if (!out)
        return KD_EINVALID;
    if (!s && len > 0)
        return finish(KD_EINVALID, &b, out, outlen);
    int rc = kd__json_write_string(&b, s ? s : "", len);
    return finish(rc, &b, out, outlen);
}

/* ------------------------------------------------------------------------
 * kd_version_json
 * ---------------------------------------------------------------------- */

/* `"name":` followed by the id as a string, or null when it is empty. */
static int put_id(kd__buf *b, const char *name, const char *id)
{
    int rc = kd__buf_puts(b, name);
    if (rc)
        return rc;
    size_t n = strnlen(id, KD_ID_HEX - 1);
    if (n == 0)
        return kd__buf_puts(b, "null");
    return kd__json_write_string(b, id, n);
}

KD_EXPORT int kd_version_json(const char *ns, const char *key, const char *value, size_t value_len,
                              const kd_version *v, char **out, size_t *outlen)
{
    kd__buf b = KD__BUF_INIT;
    char ts[40];
    int rc;

    if (!out)
        return KD_EINVALID;
    if (!ns || !key || !v)
        return finish(KD_EINVALID, &b, out, outlen);
    /* Room for the whole record at once (three ids, the names and the
     * timestamp take ~340 bytes besides the value): growing step by step
     * from 64 bytes reallocated it four times. */
    if (kd__buf_reserve(&b, 360 + strlen(ns) + strlen(key) + (value ? value_len : 4)) != KD_OK)
        return finish(KD_ENOMEM, &b, out, outlen);

    /* Every int64 is within years 1677..2262, so this only fails on misuse;
     * fall back to the "@<ns>" form kd_time_parse() also reads. */
    if (kd_time_format(v->timestamp, ts, sizeof ts) != KD_OK)
        snprintf(ts, sizeof ts, "@%lld", (long long)v->timestamp);

    if ((rc = kd__buf_puts(&b, "{\"namespace\":")) != KD_OK ||
        (rc = kd__json_write_string(&b, ns, strlen(ns))) != KD_OK ||
        (rc = kd__buf_puts(&b, ",\"key\":")) != KD_OK ||
        (rc = kd__json_write_string(&b, key, strlen(key))) != KD_OK ||
        (rc = kd__buf_puts(&b, ",\"value\":")) != KD_OK)
        goto done;
    if (value)
        rc = kd__buf_append(&b, value, value_len);
    else
        rc = kd__buf_puts(&b, "null");
    if (rc != KD_OK ||
        (rc = put_id(&b, ",\"version_id\":", v->version_id)) != KD_OK ||
        (rc = put_id(&b, ",\"write_id\":", v->write_id)) != KD_OK ||
        (rc = put_id(&b, ",\"previous_write_id\":", v->previous_write_id)) != KD_OK ||
        (rc = kd__buf_puts(&b, ",\"timestamp\":")) != KD_OK ||
        (rc = kd__json_write_string(&b, ts, strlen(ts))) != KD_OK ||
        (rc = kd__buf_puts(&b, v->deleted ? ",\"deleted\":true" : ",\"deleted\":false")) != KD_OK ||
        (rc = kd__buf_puts(&b, !v->pruned                           ? "}"
                               : v->pruned == KD_PRUNED_WORKSPACE ? ",\"pruned_by\":\"workspace_drop\",\"pruned\":true}"
                                                                  : ",\"pruned_by\":\"retention\",\"pruned\":true}")) != KD_OK)
        goto done;
    rc = KD_OK;
done:
    return finish(rc, &b, out, outlen);
}
