/*
 * errors.c — status code names and texts (from KD_ERRNO_MAP), the
 * per-thread, per-handle detailed message, and the log callback plumbing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "db_int.h"

const char *kd_strerror(int status)
{
    switch (status) {
    case KD_OK:
        return "success";
#define KD__ERR_TEXT(name, code, text) \
    case code:                         \
        return text;
        KD_ERRNO_MAP(KD__ERR_TEXT)
#undef KD__ERR_TEXT
    }
    return "unknown error";
}

const char *kd_errname(int status)
{
    switch (status) {
    case KD_OK:
        return "KD_OK";
#define KD__ERR_NAME(name, code, text) \
    case code:                         \
        return "KD_E" #name;
        KD_ERRNO_MAP(KD__ERR_NAME)
#undef KD__ERR_NAME
    }
    return "KD_EUNKNOWN";
}

/* One message per thread; it belongs to the handle that set it. */
static __thread const kd_db *tl_err_db;
static __thread char tl_err_msg[1024];

int kd__err(kd_db *db, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_err_msg, sizeof tl_err_msg, fmt, ap);
    va_end(ap);
    tl_err_db = db;
    return rc;
}

static __thread char tl_ws_msg[1024];

const char *kd_errmsg(kd_db *db)
{
    if (db && db->core) {
        /* A workspace handle: the message was set on the database's handle;
         * its qualified names ("ws" 0xFF "ns") are shown as plain ns. */
        if (tl_err_db != db->core)
            return "";
        size_t w = db->ws ? strlen(db->ws) : 0, k = 0;
        for (const char *p = tl_err_msg; *p && k + 1 < sizeof tl_ws_msg; p++) {
            if (*p == KD__WS_SEP) {
                if (w && k >= w && !memcmp(tl_ws_msg + k - w, db->ws, w))
                    k -= w;
                continue;
            }
            tl_ws_msg[k++] = *p;
        }
        tl_ws_msg[k] = '\0';
        return tl_ws_msg;
    }
    if (db && tl_err_db == db)
        return tl_err_msg;
    return "";
}

void kd__log(kd_db *db, kd_log_level level, const char *fmt, ...)
{
    if (!db->opt.log_fn || level > db->opt.log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    db->opt.log_fn(db->opt.log_ctx, level, msg);
}
