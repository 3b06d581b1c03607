/*
 * subs.h — change subscriptions (private side of kd_subscribe & co).
 */
#ifndef KD_QUERY_SUBS_H
#define KD_QUERY_SUBS_H

#include "hooks.h"

void kd__subs_on_commit(struct kd_db *db, const kd__applied *w, size_t n);
void kd__subs_published(struct kd_db *db);
void kd__subs_close(struct kd_db *db);

#endif
