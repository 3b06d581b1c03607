/*
 * subs.h — change subscriptions (private side of kd_subscribe & co).
 *
 * The public calls are in include/korudelta.h; subs.c explains the design.
 * The hooks below are called by hooks.c (see hooks.h for when).
 */
#ifndef KD_QUERY_SUBS_H
#define KD_QUERY_SUBS_H

#include "hooks.h"

void kd__subs_on_commit(struct kd_db *db, const kd__applied *w, size_t n);
void kd__subs_published(struct kd_db *db);
void kd__subs_close(struct kd_db *db);

/* Threads blocked in kd_sub_next right now, over all subscriptions (for
 * tests that must know a reader is asleep before they act). */
int kd__subs_waiters(struct kd_db *db);

#endif
