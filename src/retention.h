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
#include "util/sha.h"

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

/* Compaction accounting (verify.c). Per compaction number: the writes the
 * log flags pruned by it, and what the last record of that number in
 * _kd.compactions says. kd_verify checks that they agree; kd_repair writes
 * a record anew for a number whose salvaged writes no record accounts for. */
typedef struct kd__comp_tally {
    uint64_t seen;       /* pruned writes found */
    kd__sha sha;         /* over their write_ids, in log order */
    int started;         /* a record of this number was found */
    int recorded;        /* the last one found is a "done" record */
    uint64_t claimed;    /* its "pruned" */
    char digest[KD_ID_HEX];
} kd__comp_tally;

typedef struct kd__comp_tallies {
    kd__comp_tally *t; /* indexed by compaction number */
    size_t n;
} kd__comp_tallies;

/* A write flagged pruned by compaction `number`, in log order. KD_ENOMEM. */
int kd__comp_flagged(kd__comp_tallies *ts, uint64_t number, const uint8_t write_id[KD__HASH_LEN]);
/* A record in _kd.compactions (key: the number, 10 digits; json: its
 * value). Keys that are not a compaction number are ignored. KD_ENOMEM. */
int kd__comp_record(kd__comp_tallies *ts, const char *key, size_t key_len, const char *json, size_t len);
/* One record's JSON into t (started; recorded, claimed and digest for a
 * "done" one). */
void kd__comp_parse(kd__comp_tally *t, const char *json, size_t len);
/* Do compaction `number`'s flagged writes agree with its record? KD_OK, or
 * KD_ECORRUPT with the problem. `interrupted`: compact.pending is there. */
int kd__comp_check(const kd__comp_tally *t, size_t number, int interrupted, char *problem, size_t len);
/* The SHA-256 of the tally's write_ids (the tally is left as it is). */
void kd__comp_digest(const kd__comp_tally *t, uint8_t out[KD__HASH_LEN]);
void kd__comp_tallies_free(kd__comp_tallies *ts);

/* compact.c: write the "done" record of compaction `number` to
 * _kd.compactions: `marked` writes, `sha` over their write_ids (not
 * consumed); `dropped` (NULL: none) the "dropped" member's JSON value of
 * its "started" record. `repaired` 0: written by the compaction, as of
 * `t`; 1: written by kd_repair at time `t`, for a record that was lost. */
int kd__compaction_done(kd_db *db, uint64_t number, int64_t t, int repaired, const char *dropped, const kd__sha *sha,
                        uint64_t marked);

#endif
