/*
 * bfile.h — the bytes of a backup file (docs/FORMAT.md, "Backup file"),
 * shared by kd_backup (writer), kd_restore and kd_backup_info_read (reader)
 * and fuzzed by tests/fuzz/fuzz_backup.c.
 *
 * A backup file is a 384-byte header, then blocks (each a 16-byte block
 * header and one zstd frame) whose decompressed bytes, concatenated, are the
 * log's raw TXN records exactly as the log holds them, then a 76-byte
 * trailer. The reader checks everything it reads before using it and
 * replays the records' hash chains from the header's base position, so a
 * file it accepts continues exactly from `base` and ends exactly at `end`.
 */
#ifndef KD_BACKUP_BFILE_H
#define KD_BACKUP_BFILE_H

#include <stddef.h>
#include <stdint.h>

#include "../util/sha.h"

#define KD__BK_MAGIC "KDBAK\0\r\n"
#define KD__BK_TRAILER_MAGIC "KDBEND\r\n"
#define KD__BK_FORMAT_VERSION 1u
#define KD__BK_HEADER_LEN 384
#define KD__BK_TRAILER_LEN 76
#define KD__BK_BLOCK_HEADER_LEN 16
/* Largest decompressed block; the writer fills blocks up to this size. */
#define KD__BK_BLOCK_MAX (4u << 20)

#define KD__BK_FULL 1u
#define KD__BK_INCREMENTAL 2u
#define KD__BK_CURRENT 3u /* full, with only the current values (writes of the others marked pruned) */
/* Incremental on top of a current-only backup (or of one of these): a
 * write whose value is stored before its base carries the value again. */
#define KD__BK_INCREMENTAL_CO 4u

/* A position in a database's history: just after the TXN whose last write
 * has timestamp `ts` (0 and zero roots: the empty log). txns and writes
 * count everything from the start of the log. */
typedef struct kd__bk_pos {
    int64_t ts;
    uint64_t txns, writes;
    uint8_t storage[KD__HASH_LEN], views[KD__HASH_LEN], vectors[KD__HASH_LEN], auth[KD__HASH_LEN];
} kd__bk_pos;

/* The record format of backups: format 2 (pruned writes possible), never
 * 3: consolidated values are decompressed when backed up (backup.c), so a
 * backup needs no dictionary and its records restore into any segment. */
#define KD__BK_LOG_FORMAT KD__FORMAT_COMPACTED

typedef struct kd__bk_header {
    uint32_t kind; /* KD__BK_FULL, KD__BK_INCREMENTAL, KD__BK_CURRENT or KD__BK_INCREMENTAL_CO */
    uint8_t node[16];
    int64_t created;
    kd__bk_pos base, end;
    uint64_t txns, writes, raw_bytes, blocks; /* in this file */
    uint32_t log_format; /* format version of the records (KD__BK_LOG_FORMAT) */
} kd__bk_header;

void kd__bk_header_encode(const kd__bk_header *h, uint8_t out[KD__BK_HEADER_LEN]);
/* Checks magic, versions, checksum and that the fields agree with each
 * other. KD_ECORRUPT or KD_EFORMAT (newer format) with a message. */
int kd__bk_header_decode(const uint8_t in[KD__BK_HEADER_LEN], kd__bk_header *h, char *err, size_t errlen);
int kd__bk_pos_equal(const kd__bk_pos *a, const kd__bk_pos *b);

/* Advance a position over one TXN payload (already checked against its
 * record checksum): checks the payload's structure and strictly increasing
 * timestamps, advances the views, vectors and auth roots, and takes the storage
 * root the TXN records. With `check`, every write's write_id is recomputed
 * and the storage root too, which must equal the recorded one (restore
 * does this; a backup copies a log whose records the database already
 * trusts). KD_ECORRUPT with a message. */
int kd__bk_pos_advance(kd__bk_pos *pos, const uint8_t *payload, size_t len, int check, char *err, size_t errlen);

/* 0 when the trailer's magic and checksum hold and it names this header
 * (its SHA-256); -1 otherwise. */
int kd__bk_trailer_check(const uint8_t tr[KD__BK_TRAILER_LEN], const uint8_t hdr[KD__BK_HEADER_LEN]);

/* ---- writing ---- */
typedef struct kd__bk_writer {
    int fd;
    int level;
    void *cctx; /* ZSTD_CCtx */
    uint8_t *raw;
    size_t raw_len;
    uint8_t *comp;
    size_t comp_cap;
    kd__sha sha;
    uint64_t raw_total, blocks, off;
} kd__bk_writer;

/* Start writing at offset 0 of fd (the header is written by finish). */
int kd__bk_writer_init(kd__bk_writer *w, int fd, int level, char *err, size_t errlen);
/* Append record bytes to the stream. KD_EIO / KD_ENOSPACE / KD_ENOMEM. */
int kd__bk_writer_add(kd__bk_writer *w, const void *p, size_t n, char *err, size_t errlen);
/* Flush, write the trailer, then the header at offset 0 (h->raw_bytes and
 * h->blocks are filled in here); *file_bytes gets the file's size. */
int kd__bk_writer_finish(kd__bk_writer *w, kd__bk_header *h, uint64_t *file_bytes, char *err, size_t errlen);
void kd__bk_writer_free(kd__bk_writer *w);

/* ---- reading ---- */

/* Where the bytes come from: a file descriptor or a memory buffer. */
typedef struct kd__bk_src {
    int fd; /* used when mem is NULL */
    const uint8_t *mem;
    size_t mem_len;
    uint64_t off; /* bytes consumed */
} kd__bk_src;

/* Called once per record, in order: rec is the 16-byte record header
 * followed by its payload (len bytes in all), checked; valid during the
 * call only. `end` is the position after the record. Return 0 to go on. */
typedef int (*kd__bk_rec_fn)(void *ctx, const uint8_t *rec, size_t len, const kd__bk_pos *end);

/* Read a whole backup file from src: header, every block, every record
 * (checksums, structure, hash chains from base to end), trailer, and that
 * nothing follows. fn may be NULL. On success *h is the header. Errors:
 * KD_ECORRUPT (message says what failed and where), KD_EFORMAT, KD_EIO,
 * KD_ENOMEM, or what fn returned. */
int kd__bk_read(kd__bk_src *src, kd__bk_header *h, kd__bk_rec_fn fn, void *ctx, char *err, size_t errlen);

#endif
