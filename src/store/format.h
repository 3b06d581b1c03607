/*
 * format.h — the bytes of the log (docs/FORMAT.md is the prose version).
 *
 * A database directory holds LOCK, NODE and log segments "log-NNNNNNNN.kdl".
 * Each segment starts with a 32-byte header; then records follow, each a
 * 16-byte record header plus payload. The only record type so far is a
 * transaction (TXN): every put, delete or batch is exactly one TXN record,
 * so one checksum covers a whole batch and recovery keeps it or drops it
 * whole. All integers are little-endian.
 */
#ifndef KD_STORE_FORMAT_H
#define KD_STORE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "../util/sha.h"

#define KD__SEG_MAGIC "KDLOG\0\r\n"
#define KD__SEG_HEADER_LEN 32
/* Segments are written in format 1; compaction (src/compact.c) rewrites
 * sealed ones in format 2, which adds pruned writes; consolidation
 * (src/consolidate.c) in format 3, which adds values stored as zstd frames
 * and the number of the dictionary they were compressed with (header
 * offset 24). A build reads all three. */
#define KD__FORMAT_VERSION 3u
#define KD__FORMAT_PLAIN 1u
#define KD__FORMAT_COMPACTED 2u
#define KD__FORMAT_CONSOLIDATED 3u
#define KD__REC_HEADER_LEN 16
#define KD__REC_TXN 1
/* Cap on one record's payload; keeps offsets inside a segment below 4 GiB. */
#define KD__REC_MAX_PAYLOAD (1536u * 1024 * 1024)

#define KD__TXN_HEADER_LEN 40   /* u32 n_values, u32 n_writes, root_after[32] */
#define KD__VALUE_HEADER_LEN 36 /* version_id[32], u32 len */
/* Format 3 only: bit 31 of a value's length word says its bytes are one
 * zstd frame (the segment's dictionary); the other 31 bits are the stored
 * length. Payloads are at most 1.5 GiB, so the bit is free in every format. */
#define KD__VALUE_ZSTD 0x80000000u
#define KD__WRITE_HEADER_LEN 96 /* see format.c */

#define KD__WRITE_DELETED 1u
/* Format 2 only: the write's value was removed by retention; `pruned_by`
 * is the number of the compaction that removed it (never 0). Not part of
 * the write_id, so a pruned write keeps its id and the roots stay. */
#define KD__WRITE_PRUNED 2u

/* One write as stored. Names point into the payload when decoded. */
typedef struct kd__write_rec {
    int64_t ts;
    uint8_t flags; /* KD__WRITE_DELETED, KD__WRITE_PRUNED */
    uint16_t pruned_by; /* with KD__WRITE_PRUNED: the compaction's number */
    uint8_t n_parents; /* 0 or 1 on one node; a merge (later) has several */
    uint8_t node[16];  /* node that made the write */
    uint8_t version_id[KD__HASH_LEN]; /* zero for a tombstone */
    uint8_t write_id[KD__HASH_LEN];
    uint8_t parent[KD__HASH_LEN]; /* valid when n_parents == 1 */
    const char *ws;
    size_t ws_len;
    const char *ns;
    size_t ns_len;
    const char *key;
    size_t key_len;
} kd__write_rec;

typedef struct kd__value_rec {
    uint8_t version_id[KD__HASH_LEN];
    const char *data; /* the stored bytes: canonical JSON, or a zstd frame */
    uint32_t len;     /* of data */
    uint8_t zstd;     /* 1: data is a zstd frame of the canonical JSON */
    uint32_t offset; /* of data, from the start of the payload (decode only) */
} kd__value_rec;

/* ---- segment header ---- */
/* `dict`: format 3 only, the dictionary its compressed values use (0: none). */
void kd__seg_header_encode(uint8_t out[KD__SEG_HEADER_LEN], uint64_t seg_no, uint32_t format, uint32_t dict);
/* 0 ok, -1 bad magic/checksum (or a dictionary in a format before 3), -2
 * newer format (version in *format). *dict is 0 before format 3. */
int kd__seg_header_decode(const uint8_t in[KD__SEG_HEADER_LEN], uint64_t *seg_no, uint32_t *format, uint32_t *dict);

/* ---- record header ---- */
void kd__rec_header_encode(uint8_t out[KD__REC_HEADER_LEN], uint8_t type, const void *payload, uint32_t len);
/* Returns 0 and sets type, len and payload_crc when the header's own checksum holds. */
int kd__rec_header_decode(const uint8_t in[KD__REC_HEADER_LEN], uint8_t *type, uint32_t *len, uint32_t *payload_crc);

/* ---- TXN payload ----
 * Encoding is done by the writer in pieces (header, values, writes) so that
 * nothing is copied twice; decoding walks the payload with a cursor. */
void kd__txn_put_header(kd__buf *b, uint32_t n_values, uint32_t n_writes, const uint8_t root[KD__HASH_LEN]);
/* `zstd`: data is a zstd frame (format 3 segments only). */
int kd__txn_put_value(kd__buf *b, const uint8_t id[KD__HASH_LEN], const char *data, uint32_t len, int zstd);
int kd__txn_put_write(kd__buf *b, const kd__write_rec *w);

typedef struct kd__txn_cursor {
    const uint8_t *p;
    size_t len;
    size_t pos;
    uint32_t n_values, n_writes;
    uint32_t values_done, writes_done;
    uint8_t root_after[KD__HASH_LEN];
} kd__txn_cursor;

/* All return 0 on success, -1 when the payload is malformed (a message
 * describing the problem is written to err). */
int kd__txn_open(kd__txn_cursor *c, const void *payload, size_t len, char *err, size_t errlen);
int kd__txn_next_value(kd__txn_cursor *c, kd__value_rec *v, char *err, size_t errlen);
int kd__txn_next_write(kd__txn_cursor *c, kd__write_rec *w, char *err, size_t errlen);
/* After all values and writes: -1 if bytes are left over. */
int kd__txn_close(kd__txn_cursor *c, char *err, size_t errlen);

/* ---- hashes (domain-separated) ---- */
void kd__write_id(const kd__write_rec *w, uint8_t out[KD__HASH_LEN]);
/* The storage root advances once per write, in log order:
 * root' = SHA-256(tag || root || write_id). Per write, not per record, so
 * the root depends only on the sequence of writes, not on how they were
 * grouped into batches (an export re-imported in other batches has the
 * same root). */
void kd__root_advance(uint8_t root[KD__HASH_LEN], const uint8_t write_id[KD__HASH_LEN]);
/* The views subsystem (view and index definitions): writes to the
 * reserved namespaces _kd.views and _kd.indexes also advance its root,
 * root' = SHA-256("korudelta.root.views.v1\0" ‖ root ‖ write_id). */
#define KD__NS_VIEWS "_kd.views"
#define KD__NS_INDEXES "_kd.indexes"
int kd__is_views_ns(const char *ns, size_t len);
void kd__views_root_advance(uint8_t root[KD__HASH_LEN], const uint8_t write_id[KD__HASH_LEN]);
/* The vector subsystem: the vectors of user namespace X are the values of
 * the reserved namespace "_kd.vec.X" (src/vector/vstore.h), and every write
 * to such a namespace also advances the vectors root,
 * root' = SHA-256("korudelta.root.vectors.v1\0" ‖ root ‖ write_id). */
#define KD__NS_VEC_PREFIX "_kd.vec."
#define KD__NS_VEC_PREFIX_LEN 8
int kd__is_vectors_ns(const char *ns, size_t len);
void kd__vectors_root_advance(uint8_t root[KD__HASH_LEN], const uint8_t write_id[KD__HASH_LEN]);
/* The auth subsystem (identities, sessions, capabilities) writes in the
 * reserved namespace _kd.auth; each write there also advances the auth
 * root, root' = SHA-256("korudelta.root.auth.v1\0" ‖ root ‖ write_id). */
#define KD__NS_AUTH "_kd.auth"
int kd__is_auth_ns(const char *ns, size_t len);
void kd__auth_root_advance(uint8_t root[KD__HASH_LEN], const uint8_t write_id[KD__HASH_LEN]);
/* Field root over the subsystem roots (storage, views, vectors, auth, in that
 * order); a subsystem whose root is still all zero (never written) is left
 * out, so adding subsystems does not change the field root of databases
 * that do not use them. */
void kd__field_root(const uint8_t storage_root[KD__HASH_LEN], const uint8_t views_root[KD__HASH_LEN],
                    const uint8_t vectors_root[KD__HASH_LEN], const uint8_t auth_root[KD__HASH_LEN],
                    uint8_t out[KD__HASH_LEN]);
/* 1 if all 32 bytes are zero. */
int kd__root_is_zero(const uint8_t root[KD__HASH_LEN]);

#endif
