/*
 * server.h — the HTTP server behind `kdelta serve` (libmicrohttpd).
 *
 * Like the CLI, the server uses only the public API (include/korudelta.h).
 * http.c owns the daemon: connections, limits, reading bodies, routing,
 * logging, metrics and shutdown. Handlers live in routes_*.c, one file per
 * group of routes, each exporting a table of ks_route that http.c puts
 * together (ks_route_tables below). A handler reads a ks_request and fills
 * a ks_response; it never touches libmicrohttpd.
 *
 * URL layout (docs/openapi.yaml is the reference): everything under
 * /api/v1, plus /healthz and /metrics. A key is always exactly one path
 * segment, percent-encoded by the client (%2F for '/', %3F for '?', …),
 * so a key named "history" or "a/b" can never be mistaken for a route:
 *   /api/v1/namespaces/{ns}/keys/{key}           one key
 *   /api/v1/namespaces/{ns}/keys/{key}/history   its history
 * The router splits the raw path at '/' first and only then decodes each
 * segment; a bad %-escape is 400.
 */
#ifndef KD_SERVER_H
#define KD_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "korudelta.h"

/* ---- configuration ---------------------------------------------------- */

typedef struct ks_config {
    const char *bind;          /* address, default "127.0.0.1" */
    unsigned port;             /* default 7878; 0 = any free port (tests) */
    int insecure;              /* --insecure: allow a non-loopback bind without auth */
    size_t max_body;           /* request body cap, default 32 MiB (413 beyond) */
    unsigned max_connections;  /* default 1024 */
    unsigned timeout_s;        /* idle/slow client timeout, default 30 s */
    int log_level;             /* kd_log_level: one line per request at INFO */
    const char *backup_dir;    /* --backup-dir: where POST /api/v1/backup writes; NULL = refused */
    /* Auth (server/auth.c, docs/AUTH.md): off unless `auth` is set. */
    int auth;                  /* --auth: every data route needs a session token */
    unsigned auth_difficulty;  /* minimum proof-of-work bits of a registration, default 20 */
    const char *owner_doc;     /* --owner KEYFILE: the owner's public identity document, or NULL */
    int64_t session_ttl_ns;    /* --session-ttl: lifetime of a session, default 24 h */
} ks_config;

void ks_config_defaults(ks_config *cfg);

/* ---- requests and responses ------------------------------------------ */

typedef struct ks_request {
    const char *method;  /* "GET", "PUT", … */
    const char *path;    /* raw path as received, e.g. "/api/v1/namespaces/a/keys/b%2Fc" */
    char **seg;          /* decoded path segments ("api","v1","namespaces","a","keys","b/c") */
    size_t nseg;
    const char *body;    /* request body (NUL-terminated copy), may be empty */
    size_t body_len;
    kd_db *db;           /* the database, or for a /api/v1/ws/{ws}/… route that workspace's handle */
    const char *ws;      /* that {ws}, or NULL (the default workspace) */
    const char *db_dir;  /* the database directory being served */
    const char *backup_dir; /* the server's backup directory, or NULL (ks_config) */
    void *conn;          /* private to http.c */
    void *auth;          /* private to auth.c: the caller once its token was checked, or NULL */
} ks_request;

/* Query-string parameter (decoded), or NULL. */
const char *ks_param(const ks_request *r, const char *name);
/* Request header (case-insensitive name), or NULL. */
const char *ks_header(const ks_request *r, const char *name);
/* The client's network, to tell clients apart: its IPv4 address, or the
 * first 64 bits of its IPv6 address (one host usually holds a whole /64),
 * in net. 0, or -1 when unknown. */
int ks_client_net(const ks_request *r, uint8_t net[16]);

typedef struct ks_response ks_response;
struct ks_response {
    int status;              /* HTTP status, default 200 */
    char *body;              /* malloc'd, owned by the response */
    size_t body_len;
    const char *content_type; /* default "application/json" */
    char etag[80];           /* ETag header value (with quotes) or "" */
    char *location;          /* Location header (malloc'd, ks_location) or NULL */
    char www_authenticate[160]; /* WWW-Authenticate header (401s) or "" */
    /* Streaming responses (Server-Sent Events): when stream is set, http.c
     * calls it repeatedly, one call at a time, each on a worker thread (not
     * always the same); it appends bytes to *out (a malloc'd buffer it may
     * grow) and returns 0 to go on, 1 at the end. It may block up to about a
     * second waiting for data. */
    int (*stream)(void *ctx, char **out, size_t *len);
    void (*stream_free)(void *ctx);
    void *stream_ctx;
    /* The answer to a write, built once the write is durable: http.c may
     * run a key write with deferred durability (kd_defer_begin) and answer
     * only after kd_sync_ticket; a handler that reads the new version back
     * does it in finish, which http.c calls then (at once when nothing was
     * deferred), with the version the handler kept in finish_version. When
     * the write cannot be made durable, finish is not called and the answer
     * is an error. */
    void (*finish)(ks_request *req, ks_response *res);
    kd_version finish_version;
};

/* Set the Location header (a copy of path). */
void ks_location(ks_response *res, const char *path, size_t len);
/* Set a JSON body (copies len bytes). */
void ks_json(ks_response *res, int status, const char *json, size_t len);
/* Take a malloc'd body. */
void ks_json_take(ks_response *res, int status, char *json, size_t len);
/* {"error":{"code":"<code>","message":"<message>"}} with status. */
void ks_error(ks_response *res, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Map a library status (and kd_errmsg(db)) to an error response:
 * NOTFOUND/DELETED/NOVERSION 404, INVALID/TOOBIG(413 for bodies)/RESERVED 400,
 * CONFLICT 412, EXISTS 409, BUSY 503, NOSPACE 507, others 500. The code is
 * the lower-case error name without KD_E ("not_found", "conflict", …). */
void ks_kd_error(ks_response *res, kd_db *db, int rc);

/* ---- routing ---------------------------------------------------------- */

typedef int (*ks_handler)(ks_request *req, ks_response *res);

/* One route: method and pattern of segments, e.g.
 * {"GET", "api/v1/namespaces/{ns}/keys/{key}", handler}. A "{name}"
 * segment matches any one segment; its decoded value is ks_var(req, "name"). */
typedef struct ks_route {
    const char *method;
    const char *pattern;
    ks_handler handler;
    const char *name; /* for metrics and logs, e.g. "key_get" */
} ks_route;

const char *ks_var(const ks_request *r, const char *name);

/* Route tables, each ending with a {NULL} entry (routes_*.c). */
extern const ks_route ks_routes_keys[];    /* keys, history, diff, listing, batch, status */
extern const ks_route ks_routes_query[];   /* queries, views, indexes */
extern const ks_route ks_routes_upkeep[];  /* retention policies and compaction */
extern const ks_route ks_routes_io[];      /* verify, and whole-database export and import */
extern const ks_route ks_routes_vector[];  /* vectors: put, get, history, delete, search, stats */
extern const ks_route ks_routes_ws[];      /* workspaces: list, create, drop */
extern const ks_route ks_routes_auth[];    /* auth: register, challenge, login, logout, whoami, grants */

/* ---- auth (auth.c) ----------------------------------------------------- */

/* With --auth, may the caller of req do `perm` on ns/key (key NULL: the
 * whole namespace)? Always 1 when the server runs without --auth. Used by
 * handlers to filter listings, searches and streams. */
int ks_may(const ks_request *req, const char *ns, const char *key, kd_perm perm);
/* May the caller do perm on every namespace (1 without --auth)? */
int ks_may_all(const ks_request *req, kd_perm perm);
/* Before a route under /api/v1/ws/{ws}/ (with --auth): a caller who holds
 * no valid grant in ws (and is not the owner) is answered 404 as if ws did
 * not exist, whether it does or not: its name is not the caller's to
 * learn. 0 to go on (req->auth set for ks_auth_gate), -1 with res set
 * (401 without a valid session, or that 404). */
int ks_auth_workspace_gate(ks_request *req, ks_response *res, const char *ws);
/* May the caller read every namespace of the default workspace (the owner
 * may), which is what learning of the whole database's activity (its last
 * write, its status) takes? 1 without --auth. */
int ks_may_database(const ks_request *req);
/* May the caller read anything at all in namespace ns (some key prefix)? */
int ks_may_some(const ks_request *req, const char *ns);
/* The key prefixes the caller may read keys of ns under: 1 when it may
 * read all of ns (or without --auth), with no list; otherwise 0, with *out
 * the prefixes its read grants on ns reach (a grant's own, or the narrower
 * ones its granters still administer), sorted and none extending another
 * (so the key ranges they start are disjoint and in order); free with
 * kd_free_list. */
int ks_read_prefixes(const ks_request *req, const char *ns, char ***out, size_t *n);
/* May the caller read anything in workspace ws (a valid grant there, or
 * owner)? 1 without --auth. */
int ks_may_workspace(const ks_request *req, const char *ws);
/* A copy of the caller's rights that outlives the request (for streams);
 * NULL without --auth. ks_may_copy answers as ks_may. */
void *ks_auth_copy(const ks_request *req);
int ks_may_copy(void *copy, const char *ns, const char *key, kd_perm perm);
/* Is the session a copy was made from still valid (not expired, not
 * logged out)? Looked up again at most every few seconds. 1 without --auth. */
int ks_auth_copy_valid(void *copy);
void ks_auth_copy_free(void *copy);

/* ---- the server ------------------------------------------------------- */

/* Run until SIGINT/SIGTERM: stop accepting, finish requests in flight,
 * return 0. The URL is printed on stdout once listening and recorded in
 * the database directory (file "SERVER") so a local command that finds the
 * database locked can name it. */
int ks_serve(kd_db *db, const char *db_dir, const ks_config *cfg);

/* 1 once the server is shutting down: a streaming handler ends its stream
 * (returns 1) when it sees this, so shutdown takes at most about a second. */
int ks_stopping(void);

/* Open subscriptions, for /metrics (kd_open_subscriptions): the watch route
 * adds 1 when a stream starts and -1 when it ends. Thread-safe. */
void ks_metrics_subscriptions(int delta);

#endif
