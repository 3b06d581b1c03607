/* Placeholder until subscriptions land (being written). */
#include "subs.h"

void kd__subs_on_commit(struct kd_db *db, const kd__applied *w, size_t n) { (void)db; (void)w; (void)n; }
void kd__subs_published(struct kd_db *db) { (void)db; }
void kd__subs_close(struct kd_db *db) { (void)db; }
