/*
 * segment.h — walking the records of one log segment file, with the
 * recovery rules, for both opening (replay) and kd_verify.
 */
#ifndef KD_STORE_SEGMENT_H
#define KD_STORE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

/* Called for each record whose checksums hold. `off` is the record's offset
 * in the file; the payload starts at off + KD__REC_HEADER_LEN. Return KD_OK
 * to go on, KD_ECORRUPT (with `why` set) or another code to stop. */
typedef int (*kd__rec_fn)(void *ctx, uint64_t seg_no, uint64_t off, uint8_t type, const uint8_t *payload,
                          size_t len, char *why, size_t whylen);

/* Walk segment `no` in file `path`, reading at most `limit` bytes (0 = the
 * whole file). `dict` (may be NULL) gets the segment's dictionary number
 * (format 3; 0: none) before the first record is passed to fn, so that fn
 * can decompress values (zvalue.h). With `newest`, a torn tail (see db.c) ends the walk quietly;
 * otherwise it is corruption. On success *valid_end is the offset after the
 * last good record and *file_size the size seen. Errors: KD_ECORRUPT and
 * KD_EFORMAT with a message naming file and offset in err, KD_EIO, or what
 * the callback returned. */
int kd__segment_walk(const char *path, uint64_t no, uint64_t limit, int newest, kd__rec_fn fn, void *ctx,
                     uint32_t *dict, uint64_t *valid_end, uint64_t *file_size, char *err, size_t errlen);
/* The same, starting at the record at offset `start` (a record boundary
 * known from a checkpoint; 0 = the first record). */
int kd__segment_walk_from(const char *path, uint64_t no, uint64_t start, uint64_t limit, int newest, kd__rec_fn fn,
                          void *ctx, uint32_t *dict, uint64_t *valid_end, uint64_t *file_size, char *err, size_t errlen);

#endif
