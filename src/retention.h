/*
 * retention.h — retention policies (what history a namespace keeps) and
 * the decision, per key, of which versions a policy drops. Compaction
 * (compact.c) applies the decisions; docs/RETENTION.md is the prose.
 */
#ifndef KD_RETENTION_H
#define KD_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include "korudelta.h"
#include "util/buf.h"

#define KD__NS_RETENTION "_kd.retention"   /* key = namespace, value = policy */
#define KD__NS_COMPACTIONS "_kd.compactions" /* key = number (10 digits), value = record */
/* The compaction number that current-only backups use (kd_backup): a
 * restore from one records it; kd_compact never takes it. */
#define KD__COMPACTION_CURRENT_ONLY 65535u
#define KD__THIN_MAX 16

typedef struct kd__thin_rule {
    int64_t after, every; /* ns */
} kd__thin_rule;

typedef struct kd__policy {
    uint32_t keep_last;      /* 0 = rule absent */
    int64_t keep_newer_than; /* ns; 0 = rule absent */
    size_t n_thin;
    kd__thin_rule thin[KD__THIN_MAX]; /* sorted by `after`, ascending */
} kd__policy;

/* Parse and check a policy; KD_EINVALID with the reason in why. */
int kd__policy_parse(const char *json, size_t len, kd__policy *out, char *why, size_t whylen);
/* Canonical JSON of a policy, appended to out. */
int kd__policy_write(const kd__policy *p, kd__buf *out);

/* Which of a key's n versions (oldest first: timestamps ts[i], tombstone[i])
 * the policy keeps as of `now`: keep[i] = 1 or 0. The newest version and
 * every tombstone are always kept. */
void kd__policy_decide(const kd__policy *p, int64_t now, const int64_t *ts, const uint8_t *tombstone, uint32_t n,
                       uint8_t *keep);

#endif
