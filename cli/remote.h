/*
 * remote.h — the HTTP client behind `kdelta --url`: one connection to a
 * `kdelta serve` (libcurl, kept alive between requests), requests under
 * /api/v1, and the reading of its JSON answers.
 *
 * Errors come back as library status codes: the server's JSON error
 * {"error":{"code":"not_found","message":"…"}} becomes KD_ENOTFOUND with
 * remote_errmsg() = the message, so commands report them exactly as they
 * report the library's. A server that cannot be reached is KD_EIO.
 *
 * Answers are canonicalized before they are returned, so they can be
 * walked with kd_json_next and their values are canonical as the library's.
 */
#ifndef KD_CLI_REMOTE_H
#define KD_CLI_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "korudelta.h"

struct remote;

/* Check `url` (http://HOST:PORT or https://…, an optional trailing '/') and
 * prepare a connection; nothing is sent yet. KD_EINVALID with *err set
 * (static text) for a URL kdelta cannot use. */
int remote_open(const char *url, struct remote **out, const char **err);
void remote_close(struct remote *r);
const char *remote_url(const struct remote *r);
/* Send "Authorization: Bearer <token>" with every request from now on
 * (token NULL: stop sending it). */
void remote_set_token(struct remote *r, const char *token);
/* That header ("Authorization: Bearer <token>"), "" when none: for
 * requests made without remote_call (the watch stream). */
const char *remote_auth_header(const struct remote *r);
/* Send every data request to workspace `ws` from now on: a path
 * "api/v1/REST" becomes "api/v1/ws/{ws}/REST", but for the routes that
 * are the server's or the database's as a whole (auth, workspaces,
 * verify, backup). ws NULL: the default workspace (plain routes). */
void remote_set_workspace(struct remote *r, const char *ws);
/* The path a request for `path` goes to (the workspace's, see above);
 * malloc'd. For requests made without remote_call (the watch stream). */
char *remote_request_path(const struct remote *r, const char *path);
/* Message of the last request if it failed, "" otherwise. */
const char *remote_errmsg(const struct remote *r);
/* A failure found on the client's side: set the message, return rc. */
int remote_fail(struct remote *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* KD_EIO for an answer that is not what the API documents ("a history"). */
int remote_bad_answer(struct remote *r, const char *what);

/* A request path from `fmt`, in which every "%s" is replaced by the next
 * argument percent-encoded as one path segment ("a/b" -> "a%2Fb"; "." and
 * ".." as %2E and %2E%2E).
 * malloc'd. Only %s is allowed in fmt. */
char *remote_path(const char *fmt, ...);
/* Append the query parameter name=value (percent-encoded) to *path. */
void remote_param(char **path, const char *name, const char *value);
/* Append name=@<ts>: a time the server reads back exactly. */
void remote_time_param(char **path, const char *name, int64_t ts);

/* Send one request (body may be NULL) and read the answer. KD_OK for a 2xx
 * answer, whose body is returned canonical in *resp (malloc'd,
 * NUL-terminated; "" when empty) when resp is not NULL. Otherwise the
 * status the server's error names, remote_errmsg() its message. */
int remote_call(struct remote *r, const char *method, const char *path, const char *body, size_t len, char **resp,
                size_t *resp_len);

/* Stream a GET: every chunk of the answer, as it arrives, goes to `fn`
 * (which returns 0 to go on, anything else to stop: then KD_OK is
 * returned). For an answer that is not 2xx, the error as remote_call. */
typedef int (*remote_chunk_fn)(void *ctx, const char *data, size_t len);
int remote_stream(struct remote *r, const char *path, const char *const *headers, remote_chunk_fn fn, void *ctx);

/* ---- reading canonical JSON answers ---------------------------------- */

/* The member `name` of the object json[0..len): 1 with its value, 0 if
 * absent (or json is not an object). */
int rj_member(const char *json, size_t len, const char *name, const char **val, size_t *vlen);
/* The library status named by a server error code ("not_found"); `http`
 * decides for codes the library does not have. */
int remote_status_of_code(const char *code, long http);
/* The string member `name`, unquoted and malloc'd; NULL if absent, null or
 * not a string. */
char *rj_string(const char *json, size_t len, const char *name);
/* The integer member `name` (>= 0); 0 if absent or not an integer. */
uint64_t rj_u64(const char *json, size_t len, const char *name);
/* The timestamp member `name` (RFC 3339 text) in ns; 0 if absent or null. */
int64_t rj_time(const char *json, size_t len, const char *name);
/* A version record (kd_version_json's form) into *v, and its value (a
 * slice of rec; NULL for a tombstone) when value is not NULL. The value
 * is kept by r for remote_value(). KD_EINVALID if rec is not a record. */
int rj_record(struct remote *r, const char *rec, size_t len, kd_version *v, const char **value, size_t *value_len);
/* The value of a version this connection has received in a record (a
 * copy, malloc'd); KD_ENOTFOUND if it has not. */
int remote_value(struct remote *r, const char *version_id, char **out, size_t *len);
/* Drop the values kept for remote_value (before each command). */
void remote_forget(struct remote *r);
/* A JSON array of strings into a malloc'd list (kd_free_list frees it). */
int rj_string_list(const char *json, size_t len, char ***list, size_t *n);

#endif
