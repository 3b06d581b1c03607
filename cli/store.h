/*
 * store.h — the database a command talks to: the local directory (the
 * library, kd_*) or, with `kdelta --url`, a `kdelta serve` over HTTP
 * (remote.c).
 *
 * Every st_* function has the signature and the meaning of the kd_*
 * function of the same name, with the command's `struct cli` in place of
 * the handle; commands call only these, so both modes print the same
 * output from the same code. What they return is freed as the kd_*
 * counterpart says (kd_free, kd_free_list, kd_index_list_free, …: in
 * remote mode those buffers are malloc'd, which kd_free releases) — except
 * results, which need st_result_free.
 *
 * Errors are library status codes in both modes; st_errmsg() is the detail
 * (kd_errmsg, or the server's message).
 *
 *   store.c        opening, keys, listings, status, verify
 *   store_query.c  queries, views, indexes
 *   store_watch.c  subscriptions (the server's watch stream)
 *   store_io.c     scans, the change log, batches and imports
 *   store_vector.c vectors: put, get, delete, history, search, stats
 */
#ifndef KD_CLI_STORE_H
#define KD_CLI_STORE_H

#include "cli.h"

/* "" when there is none. */
const char *st_errmsg(struct cli *c);
/* Is the command talking to a server? */
static inline int st_remote(const struct cli *c)
{
    return c->remote != NULL;
}

/* ---- store.c ---------------------------------------------------------- */
/* For the store files: GET a history answer ({"versions":[records]}) at
 * `path` (malloc'd; taken and freed) with kd_history's from, to, limit
 * and flags as parameters, each record read into a kd_version by `read`;
 * `what` names the answer in an error ("a history"). */
typedef int (*st_record_fn)(struct cli *c, const char *rec, size_t len, kd_version *v);
/* The query parameters of a history request (from/to unless KD_TIME_MIN /
 * KD_TIME_MAX, limit unless 0, order=desc), appended to *path. */
void st_history_params(char **path, int64_t from, int64_t to, size_t limit, unsigned flags);
int st_remote_history(struct cli *c, char *path, int64_t from, int64_t to, size_t limit, unsigned flags,
                      st_record_fn read, const char *what, kd_version **out, size_t *n);
int st_put(struct cli *c, const char *ns, const char *key, const char *json, size_t len, kd_version *out);
int st_get(struct cli *c, const char *ns, const char *key, char **json, size_t *len, kd_version *meta);
int st_get_at(struct cli *c, const char *ns, const char *key, int64_t ts, char **json, size_t *len,
              kd_version *meta);
/* In remote mode: only versions whose records this command has received
 * (from st_put, st_get*, st_history); others are KD_ENOTFOUND. */
int st_get_value(struct cli *c, const char *version_id, char **json, size_t *len);
int st_delete(struct cli *c, const char *ns, const char *key, kd_version *out);
int st_history(struct cli *c, const char *ns, const char *key, int64_t from, int64_t to, size_t limit,
               unsigned flags, kd_version **out, size_t *n);
int st_list_namespaces(struct cli *c, char ***names, size_t *n);
int st_list_keys(struct cli *c, const char *ns, const char *prefix, const char *start_after, size_t limit,
                 char ***keys, size_t *n);
/* kd_stats_get and kd_roots at once, and the database directory (malloc'd;
 * locally c->path, remotely the server's). */
int st_status(struct cli *c, kd_stats *stats, kd_root **roots, size_t *n_roots, kd_task_status **tasks,
              size_t *n_tasks, char **path);
int st_verify(struct cli *c, kd_verify_report *report);
/* POST /api/v1/backup (remote only; cli/backup.c): the answer in *answer (malloc'd). */
/* Retention and compaction (store_upkeep.c). */
int st_retention_set(struct cli *c, const char *ns, const char *json, size_t len);
int st_retention_get(struct cli *c, const char *ns, char **json, size_t *len);
int st_retention_clear(struct cli *c, const char *ns);
int st_retention_list(struct cli *c, char **json, size_t *len);
int st_compact(struct cli *c, int dry_run, kd_compact_report *r);
int st_consolidate(struct cli *c, int64_t older_than, kd_consolidate_report *r);

int st_backup_call(struct cli *c, const char *body, size_t len, char **answer, size_t *alen);

/* The workspaces of the database (kd_workspace_create, _drop, _list;
 * remotely POST/DELETE/GET /api/v1/workspaces). */
int st_workspace_create(struct cli *c, const char *name);
/* The same, made at time `at` (0: now): kd_workspace_create_at. */
int st_workspace_create_at(struct cli *c, const char *name, int64_t at);
int st_workspace_drop(struct cli *c, const char *name);
int st_workspace_list(struct cli *c, char ***names, size_t *n);

/* ---- store_query.c ---------------------------------------------------- */
int st_query_run(struct cli *c, const char *ns, const kd_query *q, kd_result **out);
void st_result_free(struct cli *c, kd_result *r);
int st_view_create(struct cli *c, const char *name, const char *source_ns, const kd_query *q, const char *description,
                   int auto_refresh);
int st_view_delete(struct cli *c, const char *name);
int st_view_refresh(struct cli *c, const char *name);
int st_view_query(struct cli *c, const char *name, size_t offset, size_t limit, kd_result **out);
int st_view_list(struct cli *c, kd_view_info **out, size_t *n);
int st_index_create(struct cli *c, const char *ns, const char *field);
int st_index_drop(struct cli *c, const char *ns, const char *field);
int st_index_list(struct cli *c, const char *ns, kd_index_info **out, size_t *n);

/* ---- store_watch.c ---------------------------------------------------- */
int st_subscribe(struct cli *c, const kd_sub_options *opts, uint64_t *id);
int st_sub_next(struct cli *c, uint64_t id, int timeout_ms, kd_event *ev);
int st_unsubscribe(struct cli *c, uint64_t id);
/* Why st_subscribe (id 0) or st_sub_next on `id` failed, in remote mode
 * (the stream's own message); "" locally, where st_errmsg() tells. */
const char *st_sub_errmsg(struct cli *c, uint64_t id);

/* ---- store_io.c ------------------------------------------------------- */
int st_scan(struct cli *c, const char *ns, const char *prefix, const char *start_after, size_t limit, int64_t at,
            kd_scan_fn fn, void *ctx);
int st_changes(struct cli *c, const char *ns, int64_t since, kd_change_fn fn, void *ctx);
int st_put_batch(struct cli *c, const kd_write *writes, size_t n, kd_version *out);
int st_import_versions(struct cli *c, const kd_import *versions, size_t n);
/* kd_workspace_import: into workspace `name`, made first when missing and
 * only when the versions import; *created tells whether it was made. */
int st_workspace_import(struct cli *c, const char *name, const kd_import *versions, size_t n, int *created);

/* ---- store_vector.c --------------------------------------------------- */
int st_vector_put(struct cli *c, const char *ns, const char *key, const char *model, const float *v, size_t dim,
                  const char *meta, size_t meta_len, kd_version *out);
int st_vector_get(struct cli *c, const char *ns, const char *key, kd_vector **out);
int st_vector_get_at(struct cli *c, const char *ns, const char *key, int64_t ts, kd_vector **out);
int st_vector_delete(struct cli *c, const char *ns, const char *key, kd_version *out);
int st_vector_history(struct cli *c, const char *ns, const char *key, int64_t from, int64_t to, size_t limit,
                      unsigned flags, kd_version **out, size_t *n);
/* A key's whole vector history (kd_vector_history over all time, with
 * limit and flags) and each version's vector, the one read at its
 * timestamp, as `vector log` shows it: (*vecs)[i] belongs to (*out)[i] and
 * is NULL for a deletion. Locally kd_vector_history, then kd_vector_get_at
 * per version (a vector whose write_id is not the version's is
 * KD_ECORRUPT); remotely one request, whose answer carries the vectors.
 * When a version's vector cannot be read (locally), *failed is its index,
 * *out and *n stay (free *out with kd_free) and *vecs is NULL; on any other
 * error nothing is returned and *failed is SIZE_MAX. Free each vector with
 * st_vector_free, *vecs with free() and *out with kd_free. */
int st_vector_log(struct cli *c, const char *ns, const char *key, size_t limit, unsigned flags, kd_version **out,
                  kd_vector ***vecs, size_t *n, size_t *failed);
int st_vector_search(struct cli *c, const char *ns, const float *query, size_t dim, size_t k,
                     const kd_vector_search_options *opts, kd_vector_hit **hits, size_t *n);
int st_vector_stats(struct cli *c, const char *ns, kd_vector_info **out, size_t *n);
/* What st_vector_get*, st_vector_search and st_vector_stats return is
 * freed with these (remotely it is built here, not by the library). */
void st_vector_free(struct cli *c, kd_vector *v);
void st_vector_hits_free(struct cli *c, kd_vector_hit *hits, size_t n);
void st_vector_stats_free(struct cli *c, kd_vector_info *list, size_t n);

#endif
