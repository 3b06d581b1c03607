/*
 * rewrite.h — rewriting a sealed log segment beside itself and swapping it
 * in while readers and writers go on. Compaction (compact.c) leaves values
 * out and flags pruned writes; consolidation (consolidate.c) compresses
 * values. Both keep every record, every write and every root as they were.
 */
#ifndef KD_REWRITE_H
#define KD_REWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "db_int.h"

typedef uint8_t kd__hash32[KD__HASH_LEN];

/* A hash set over n ids (SHA-256 outputs: their first 8 bytes are already
 * uniformly spread). The ids are not copied. */
typedef struct kd__idset {
    const kd__hash32 *ids;
    uint32_t *slots; /* index + 1, 0 = empty */
    size_t mask;
} kd__idset;

int kd__idset_build(kd__idset *s, const kd__hash32 *ids, size_t n); /* KD_OK or KD_ENOMEM */
int kd__idset_has(const kd__idset *s, const uint8_t *id);
void kd__idset_free(kd__idset *s);

typedef struct kd__rewrite_spec {
    /* Compaction: the values to leave out and the writes to flag as pruned
     * by compaction `number` (NULL: none). Every write flagged with
     * `number` (now or before) goes into `digest`/`marked`, in log order. */
    const kd__idset *drop_values, *prune_writes;
    uint16_t number;
    kd__sha *digest;
    uint64_t *marked;
    /* Consolidation: compress the values with `enc` (NULL: leave them). A
     * segment already consolidated is never compressed again. */
    kd__zenc *enc;
    /* When set and it returns 1 (checked every few thousand records), the
     * rewrite stops: the new file is removed, the segment stays as it was,
     * and kd__seg_rewrite returns KD_OK. For the upkeep thread, so that
     * kd_close need not wait for a whole segment. */
    int (*cancelled)(kd_db *db);
} kd__rewrite_spec;

typedef struct kd__rewrite_stats {
    uint64_t segments;    /* rewritten and swapped in */
    uint64_t bytes_saved; /* file bytes */
    uint64_t values_compressed;
    uint64_t value_bytes_in, value_bytes_out; /* of the values compressed: before and after */
} kd__rewrite_stats;

/* The format version and dictionary in the header of segment `no`.
 * KD_OK, or KD_ECORRUPT with the message set. */
int kd__seg_read_header(kd_db *db, uint64_t no, uint32_t *format, uint32_t *dict);

/* Rewrite sealed segment `no` as `sp` says, sync it, rename it over the old
 * file and point the index at it (under write_mu and the exclusive index
 * lock). The caller holds compact_mu and ckpt_mu and has removed
 * index.ckpt (value offsets change). A segment the spec leaves as it is is
 * not replaced. KD_OK, or a KD_* code with the message set (the old
 * segment stays in use). */
int kd__seg_rewrite(kd_db *db, const kd__rewrite_spec *sp, uint64_t no, kd__rewrite_stats *st);

#endif
