/*
 * server_int.h — helpers shared by http.c, util.c and cli/serve.c that are
 * not part of the handlers' contract (server.h).
 */
#ifndef KD_SERVER_INT_H
#define KD_SERVER_INT_H

#include <stddef.h>

#include "server.h"

/* Abort-on-OOM allocation (the server may die on OOM, like the CLI). */
void *ks_xmalloc(size_t n);
void *ks_xrealloc(void *p, size_t n);
char *ks_xstrdup(const char *s);

/* A growing, always NUL-terminated byte buffer. Zero-initialise. */
typedef struct ks_buf {
    char *p;
    size_t len, cap;
} ks_buf;
void ks_buf_add(ks_buf *b, const char *s, size_t n);
void ks_buf_printf(ks_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *ks_buf_take(ks_buf *b); /* the malloc'd text; the buffer is empty again */

/* Append `s` as a JSON string literal (invalid UTF-8 bytes become '?'). */
void ks_json_string(ks_buf *b, const char *s, size_t len);

/* Decode %HH escapes of s[0..len) into a malloc'd string; NULL when an
 * escape is malformed or a byte (literal or decoded) is NUL. '+' is left. */
char *ks_percent_decode(const char *s, size_t len);

/* HTTP status and error code ("not_found") for a library status. */
int ks_kd_status(int rc);
const char *ks_kd_code(int rc, char *buf, size_t size);

/* The server's log: one line on stderr with time and level, when `level`
 * is at most the configured level. ks_log_fn has the kd_log_fn signature,
 * for kd_options_set_log. */
void ks_log_set_level(int level);
void ks_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ks_log_fn(void *ctx, kd_log_level level, const char *msg);

/* Is `bind` (a numeric address or a host name) a loopback address?
 * 1 yes, 0 no, -1 it does not resolve. */
int ks_bind_is_loopback(const char *bind);

#endif
