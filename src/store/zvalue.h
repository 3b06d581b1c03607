/*
 * zvalue.h — values stored as zstd frames by consolidation, and the
 * per-database dictionaries they are compressed with (docs/FORMAT.md,
 * "Consolidated segments (format 3)" and "Dictionary files").
 *
 * A dictionary is an immutable file `zdict-NNNNNNNN` in the database
 * directory, named by a number from 1; a format 3 segment names the one its
 * values use in its header (0: none). Dictionaries are loaded on first use
 * and kept until the database closes.
 */
#ifndef KD_STORE_ZVALUE_H
#define KD_STORE_ZVALUE_H

#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "format.h"

#define KD__ZDICT_MAGIC "KDZDICT\0"
#define KD__ZDICT_HEADER_LEN 24
#define KD__ZDICT_MAX (1u << 20) /* a dictionary file holds at most 1 MiB */

typedef struct kd__zdicts kd__zdicts;

/* The dictionaries of database directory `dir` (copied). NULL: no memory. */
kd__zdicts *kd__zdicts_new(const char *dir);
void kd__zdicts_free(kd__zdicts *z);

/* Decompress one stored value: `src` is a zstd frame made with dictionary
 * `dict` (0: none) that declares its content size, at most `max` bytes.
 * The bytes go to `out` (reset first; a NUL follows them). Thread-safe.
 * KD_OK; KD_ECORRUPT with `why` (damaged frame, size over max, missing or
 * damaged dictionary file); KD_ENOMEM. */
int kd__zvalue_decode(kd__zdicts *z, uint32_t dict, const void *src, size_t n, size_t max, kd__buf *out, char *why,
                      size_t whylen);

/* The canonical bytes of value record v, from a segment whose dictionary
 * is `dict`: v's own bytes (*data points into the record), or, for a zstd
 * frame, decompressed into buf. Errors as kd__zvalue_decode. */
int kd__zvalue_plain(kd__zdicts *z, uint32_t dict, const kd__value_rec *v, kd__buf *buf, const char **data,
                     size_t *len, char *why, size_t whylen);

/* The size a stored frame declares (its first bytes are enough: at most
 * KD__ZFRAME_HEADER_MAX). 0 ok, -1 not a frame that declares one. */
#define KD__ZFRAME_HEADER_MAX 18
int kd__zvalue_size(const void *src, size_t n, uint64_t *size);

/* Compression, for consolidation: one encoder per thread. */
typedef struct kd__zenc kd__zenc;
/* `dict` (dict_len bytes, may be NULL) is dictionary number `dict_no`.
 * NULL: no memory, or zstd refused the dictionary. */
kd__zenc *kd__zenc_new(const void *dict, size_t dict_len, uint32_t dict_no, int level);
void kd__zenc_free(kd__zenc *e);
uint32_t kd__zenc_dict(const kd__zenc *e);
/* Compress src into out (reset first). 1: smaller, store out; 0: not
 * smaller, store src as it is; KD_ENOMEM. */
int kd__zenc_value(kd__zenc *e, const void *src, size_t n, kd__buf *out);

/* Train a dictionary of at most `cap` bytes from n samples laid end to end
 * in `samples` (sizes[i] bytes each). KD_OK with out set; KD_EINVAL when
 * zstd cannot make one from them (too few or too small); KD_ENOMEM. */
int kd__zdict_train(const void *samples, const size_t *sizes, unsigned n, size_t cap, kd__buf *out);
/* Write dictionary `no` into dir (temp file, fsync, rename, dir fsync).
 * KD_OK or a KD_* code with why. */
int kd__zdict_write(const char *dir, uint32_t no, const void *d, size_t n, char *why, size_t whylen);
/* Read and check dictionary `no` of dir into out. KD_OK; KD_ENOTFOUND;
 * KD_ECORRUPT with why; KD_EIO; KD_ENOMEM. */
int kd__zdict_read(const char *dir, uint32_t no, kd__buf *out, char *why, size_t whylen);
/* The highest dictionary number present in dir (0: none). */
uint32_t kd__zdict_newest(const char *dir);
/* "zdict-NNNNNNNN" into out (at least 24 bytes). */
char *kd__zdict_name(uint32_t no, char *out);

#endif
