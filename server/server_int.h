/*
 * server_int.h — helpers shared by http.c, util.c, parse.c and cli/serve.c
 * that are not part of the handlers' contract (server.h).
 */
#ifndef KD_SERVER_INT_H
#define KD_SERVER_INT_H

#include <stddef.h>
#include <stdint.h>

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
 * escape is malformed, a byte (literal or decoded) is NUL, or the result
 * is not UTF-8. '+' is left. */
char *ks_percent_decode(const char *s, size_t len);

/* Hand a finished buffer to the response as its JSON body. */
void ks_reply(ks_response *res, int status, ks_buf *b);
/* Reserved namespaces ("_kd…") are the database's own: no route reads or
 * writes them (the library refuses writes; reads are refused here). 1 when
 * ns is reserved, after a 400 "reserved" response. */
int ks_reserved(ks_response *res, const char *ns);
/* A TIME query parameter (kd_time_parse syntax): 1 when given, 0 when
 * absent, -1 after an error response. */
int ks_time_param(const ks_request *req, ks_response *res, const char *name, int64_t *ts);
/* A range's from and to: 0 when from <= to, else -1 after a 400 (the
 * same answer as a history query's; an empty range is a mistake). */
int ks_from_to(ks_response *res, int64_t from, int64_t to);
/* A whole-number query parameter in [min, max]: 1 given, 0 absent, -1
 * after an error response. */
int ks_uint_param(const ks_request *req, ks_response *res, const char *name, uint64_t min, uint64_t max,
                  uint64_t *out);

/* HTTP status and error code ("not_found") for a library status. */
int ks_kd_status(int rc);
const char *ks_kd_code(int rc, char *buf, size_t size);

/* The server's log: one line on stderr with time and level, when `level`
 * is at most the configured level. ks_log_fn has the kd_log_fn signature,
 * for kd_options_set_log. */
void ks_log_set_level(int level);
void ks_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ks_log_fn(void *ctx, kd_log_level level, const char *msg);

/* Scheduled backups (schedule.c): a thread writing a full backup of db
 * named "backup-YYYYMMDDTHHMMSSZ.kdb" (UTC) into dir every every_s
 * seconds, keeping the `keep` newest (0 = all), logging each outcome.
 * start: 0, or -1 when the thread cannot start. stop: wakes it, waits for
 * a backup in progress, frees; NULL is a no-op. */
typedef struct ks_backup_schedule ks_backup_schedule;
int ks_backup_schedule_start(kd_db *db, const char *dir, uint64_t every_s, unsigned keep, ks_backup_schedule **out);
void ks_backup_schedule_stop(ks_backup_schedule *s);

/* Is `bind` (a numeric address or a host name) a loopback address?
 * 1 yes, 0 no, -1 it does not resolve. */
int ks_bind_is_loopback(const char *bind);

/* ---- the listening socket (listen.c) ------------------------------------ */

/* A socket bound to `addr` and listening; *port gets the port it was
 * given (the one asked for, or the kernel's choice for port 0). -1 with
 * errno on failure. */
struct sockaddr;
int ks_listen_socket(const struct sockaddr *addr, unsigned len, unsigned *port);

/* Raise the soft limit of open files (up to the hard limit) so that
 * max_connections connections fit beside the database's files; logs a
 * warning when they cannot. */
void ks_raise_fd_limit(unsigned max_connections);

/* The thread that accepts on `fd` and hands each connection to a daemon
 * (MHD_add_connection, which spreads them over its event threads), keeping
 * at most max_connections open. new: takes `fd` (NULL with errno on
 * failure; the caller still owns `fd` then). start: 0, or -1 with errno.
 * closed: a connection it handed over has closed (libmicrohttpd's
 * MHD_CONNECTION_NOTIFY_CLOSED). stop: accepts no more and closes `fd`.
 * free: stops if needed and frees; only after the daemon has stopped, as
 * the daemon's threads call closed until then. NULL is a no-op for both. */
struct MHD_Daemon;
typedef struct ks_listener ks_listener;
ks_listener *ks_listener_new(int fd, unsigned max_connections);
int ks_listener_start(ks_listener *l, struct MHD_Daemon *daemon);
void ks_listener_closed(ks_listener *l);

/* ---- request deadlines (deadline.c) ------------------------------------- */

/* Each connection's deadline for the request it is receiving (why and the
 * numbers: deadline.c). start: before the first connection (timeout_s is
 * --timeout); 0, or -1 with errno. stop: after the last connection closed. */
int ks_deadline_start(unsigned timeout_s);
void ks_deadline_stop(void);
typedef struct ks_conn ks_conn;
ks_conn *ks_conn_opened(int fd);  /* the connection started */
void ks_conn_closed(ks_conn *c);  /* libmicrohttpd reports it closed (NULL: no-op) */
void ks_conn_waiting(ks_conn *c); /* a response is done: the next request may come */
void ks_conn_headers_in(ks_conn *c);
void ks_conn_body(ks_conn *c, size_t bytes); /* body bytes received */
/* A response is about to be queued before the request is in (an early
 * 413): no 408 then. 0 when the connection was cut off already (queue
 * nothing). */
int ks_conn_answered(ks_conn *c);
/* The request is in whole: no deadline until the next. 0 when it was cut
 * off already (it must not be handled). */
int ks_conn_request_in(ks_conn *c);
int ks_conn_was_cut(const ks_conn *c);
unsigned long long ks_deadline_cuts(void); /* connections cut off since start */
void ks_listener_stop(ks_listener *l);
void ks_listener_free(ks_listener *l);

/* ---- workspaces (routes_ws.c) ------------------------------------------- */

/* The kept handle on workspace `name` of db, or NULL with *rc (KD_ENOTFOUND:
 * no such workspace now; KD_EINVALID…: a bad name). Valid until
 * ks_ws_close_all, which the server calls when it stops. */
kd_db *ks_ws_handle(kd_db *db, const char *name, int *rc);
void ks_ws_close_all(void);
/* The "name" of a {"name": …} body (malloc'd), or NULL after a 400. */
char *ks_ws_body_name(const ks_request *req, ks_response *res);

/* ---- auth (auth.c) ------------------------------------------------------ */

/* At start with cfg->auth: the server's id and owner in _kd.auth (0), or
 * -1 with a message in err. */
int ks_auth_start(kd_db *db, const ks_config *cfg, char *err, size_t errlen);
void ks_auth_stop(void);
int ks_auth_enabled(void);
/* Sessions that have not expired (for /metrics; 0 without --auth). */
long ks_auth_sessions(void);
/* Before a handler runs (with --auth): check the Bearer token and the
 * caller's rights for route `name`. 0 to go on (req->auth set), -1 after a
 * 401/403/400 response. */
int ks_auth_gate(ks_request *req, ks_response *res, const char *name);
void ks_auth_request_free(ks_request *req);
/* Parse "Bearer <64 hex>" (case-insensitive scheme, one space or more):
 * 1 with the token copied to tok, 0 if malformed (fuzzed). */
int ks_auth_bearer(const char *header, char tok[65]);
/* A duration "90s", "30m", "12h", "7d" or plain seconds (fuzzed): 0 with
 * *ns set, -1 if malformed or not in 1 s .. 10 years. */
int ks_parse_duration(const char *s, int64_t *ns);

/* ---- routing (parse.c: no libmicrohttpd, fuzzed by tests/fuzz/fuzz_server.c) */

#define KS_MAX_SEGS 32

/* A route's pattern split into segments once (http.c keeps the table). */
typedef struct ks_route_pat {
    const ks_route *r;
    size_t nseg;
    char *segs[KS_MAX_SEGS]; /* literal segment, or NULL for a {var} */
    char *vars[KS_MAX_SEGS]; /* variable name for a {var} segment */
    int metric;              /* http.c: index into the metric names */
} ks_route_pat;

void ks_route_compile(ks_route_pat *r, const ks_route *t);
void ks_route_pat_free(ks_route_pat *r);
/* Split the raw path at '/' and decode each segment into req->seg and
 * req->nseg (which the caller frees, whatever the result). 0, or -1 on a
 * bad escape or NUL (400), -2 when there are too many segments (404). */
int ks_split_path(ks_request *req, const char *url);
/* Does the pattern match these segments? The number of literal segments
 * matched (for precedence), -1 if not. */
int ks_route_match(const ks_route_pat *r, char **seg, size_t nseg);
/* The route's method is the request's (HEAD also takes a GET route). */
int ks_method_matches(const char *route_method, const char *method);
/* The route for method and segments: the matching pattern with the most
 * literal segments, or NULL; *path_matched tells whether any pattern
 * matched the path with another method (405). */
const ks_route_pat *ks_route_find(const ks_route_pat *routes, size_t n, const char *method, char **seg, size_t nseg,
                                  int *path_matched);
/* "GET, HEAD, PUT": the methods of every route whose pattern matches. */
void ks_allowed_methods(const ks_route_pat *routes, size_t n_routes, char **seg, size_t nseg, char *out, size_t size);

/* ---- pieces of the handlers, exposed for tests/fuzz/fuzz_server.c ------ */

/* routes_keys.c: the preconditions of a write from its If-Match and
 * If-None-Match headers; -1 after an error response. *cond is one of
 * KS_COND_*; id receives the write_id (lower case) for KS_COND_ID. */
enum { KS_COND_NONE, KS_COND_ID, KS_COND_ABSENT, KS_COND_EXISTS };
int ks_conditions(const ks_request *req, ks_response *res, char id[KD_ID_HEX], int *cond);

/* routes_query.c: the JSON text of the query GET …/namespaces/{ns}/query
 * builds from its parameters (malloc'd, *json and *len), 0; or -1 after an
 * error response (*json NULL). */
int ks_query_from_params(const ks_request *req, ks_response *res, char **json, size_t *len);
/* routes_query.c: the query compiled from its JSON text as the routes do
 * (empty text is {}); NULL after an error response whose message starts
 * with prefix. */
kd_query *ks_query_compile(ks_response *res, const char *json, size_t len, const char *prefix);

#endif
