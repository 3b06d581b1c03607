/*
 * hooks.c — hands each committed write to the parts of the query layer
 * that follow writes (hooks.h): secondary indexes, views, then subscriptions.
 */
#include <string.h>

#include "../db_int.h"
#include "hooks.h"
#include "sindex.h"
#include "subs.h"
#include "views.h"

void kd__hooks_on_commit(struct kd_db *db, const kd__applied *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(kd__qns_local(w[i].ns), "_kd", 3) != 0) {
            kd__sindex_on_write(db, &w[i]);
            kd__views_on_write(db, &w[i]);
        }
    kd__subs_on_commit(db, w, n);
}

void kd__hooks_on_dropped(struct kd_db *db, const kd__applied *w)
{
    if (strncmp(kd__qns_local(w->ns), "_kd", 3) != 0) {
        kd__sindex_on_write(db, w);
        kd__views_on_write(db, w);
    }
}

void kd__hooks_published(struct kd_db *db)
{
    kd__subs_published(db);
}

int kd__hooks_open(struct kd_db *db, char *err, size_t errlen)
{
    int rc = kd__sindex_open(db, err, errlen);
    return rc ? rc : kd__views_open(db, err, errlen);
}

void kd__hooks_close(struct kd_db *db)
{
    kd__subs_close(db);
    kd__views_close(db);
    kd__sindex_close(db);
}
