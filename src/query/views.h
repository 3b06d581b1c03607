/*
 * views.h — materialized views (private side of kd_view_*).
 *
 * A view's content is a set of (key, version timestamp) pairs: the keys of
 * its source namespace whose value matched its filter — now, for an
 * auto-refresh view kept by the commit hook, or at its last refresh, for a
 * manual one. Showing a view orders and projects those versions with the
 * view's query (kd__query_run_keys in query.c).
 */
#ifndef KD_QUERY_VIEWS_H
#define KD_QUERY_VIEWS_H

#include "hooks.h"

struct kd_db;

int kd__views_open(struct kd_db *db, char *err, size_t errlen);
void kd__views_close(struct kd_db *db);
/* Commit hook: keep auto-refresh views of w->ns current (write_mu held). */
void kd__views_on_write(struct kd_db *db, const kd__applied *w);

/* Compaction keeps what manual views show: for each key of a view's source
 * namespace, the version current at the view's as-of point. Between
 * kd__views_hold and kd__views_release no view is created, refreshed or
 * dropped, and *pins (malloc'ed: free() it) lists every manual view's
 * qualified source namespace and as-of time, which stay valid until the
 * release. */
typedef struct kd__view_pin {
    const char *source;
    int64_t as_of;
} kd__view_pin;
int kd__views_hold(struct kd_db *db, kd__view_pin **pins, size_t *n);
void kd__views_release(struct kd_db *db);

#endif
