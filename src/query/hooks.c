/*
 * hooks.c — hands each committed transaction to the parts of the query
 * layer that follow writes (hooks.h).
 */
#include "hooks.h"
#include "subs.h"

void kd__hooks_on_commit(struct kd_db *db, const kd__applied *w, size_t n)
{
    kd__subs_on_commit(db, w, n);
}

void kd__hooks_published(struct kd_db *db)
{
    kd__subs_published(db);
}

void kd__hooks_close(struct kd_db *db)
{
    kd__subs_close(db);
}
