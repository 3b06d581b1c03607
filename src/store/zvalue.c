/*
 * zvalue.c — zstd frames of values and the dictionaries they use (zvalue.h).
 *
 * Frames are made without a checksum and without the dictionary's id (the
 * record's CRC-32C covers the stored bytes, the version_id the decoded ones,
 * and the segment header names the dictionary), but with the content size,
 * so a reader knows what to allocate before it decompresses.
 */
#define ZDICT_STATIC_LINKING_ONLY
#include "zvalue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zdict.h>
#include <zstd.h>

#include "../util/crc32c.h"
#include "../util/le.h"
#include "korudelta.h"

typedef struct loaded {
    uint32_t no;
    ZSTD_DDict *dd; /* NULL: the file was missing or damaged (why) */
    char why[256];
} loaded;

/* Decompression contexts kept for reuse (each ~100 KiB): at most this
 * many, whatever the number of reader threads. */
#define DCTX_KEEP 8

struct kd__zdicts {
    pthread_mutex_t mu; /* guards everything below */
    char *dir;
    loaded *d;
    size_t n, cap;
    ZSTD_DCtx *idle[DCTX_KEEP];
    size_t n_idle;
};

struct kd__zenc {
    ZSTD_CCtx *cctx;
    ZSTD_CDict *cdict;
    uint32_t dict;
};

/* A decompression context: an idle one, or a new one. NULL: no memory. */
static ZSTD_DCtx *dctx_take(kd__zdicts *z)
{
    pthread_mutex_lock(&z->mu);
    ZSTD_DCtx *d = z->n_idle ? z->idle[--z->n_idle] : NULL;
    pthread_mutex_unlock(&z->mu);
    return d ? d : ZSTD_createDCtx();
}

static void dctx_give(kd__zdicts *z, ZSTD_DCtx *d)
{
    pthread_mutex_lock(&z->mu);
    if (z->n_idle < DCTX_KEEP) {
        z->idle[z->n_idle++] = d;
        d = NULL;
    }
    pthread_mutex_unlock(&z->mu);
    ZSTD_freeDCtx(d);
}

char *kd__zdict_name(uint32_t no, char *out)
{
    snprintf(out, 24, "zdict-%08u", no);
    return out;
}

kd__zdicts *kd__zdicts_new(const char *dir)
{
    kd__zdicts *z = calloc(1, sizeof *z);
    if (!z || !(z->dir = strdup(dir))) {
        free(z);
        return NULL;
    }
    pthread_mutex_init(&z->mu, NULL);
    return z;
}

void kd__zdicts_free(kd__zdicts *z)
{
    if (!z)
        return;
    for (size_t i = 0; i < z->n; i++)
        ZSTD_freeDDict(z->d[i].dd);
    for (size_t i = 0; i < z->n_idle; i++)
        ZSTD_freeDCtx(z->idle[i]);
    free(z->d);
    free(z->dir);
    pthread_mutex_destroy(&z->mu);
    free(z);
}

/* The loaded dictionary `no` (mu held): loaded now if need be. NULL with
 * why set when it cannot be used; a missing or damaged file is remembered
 * (the file is immutable) until the database reopens, an I/O error not. */
static const ZSTD_DDict *ddict_get(kd__zdicts *z, uint32_t no, char *why, size_t whylen, int *nomem)
{
    for (size_t i = 0; i < z->n; i++)
        if (z->d[i].no == no) {
            if (!z->d[i].dd)
                snprintf(why, whylen, "%s", z->d[i].why);
            return z->d[i].dd;
        }
    loaded *grown = kd__grow(z->d, &z->cap, z->n, sizeof *grown, 4);
    if (!grown) {
        *nomem = 1;
        return NULL;
    }
    z->d = grown;
    loaded *l = &z->d[z->n];
    memset(l, 0, sizeof *l);
    l->no = no;
    kd__buf b = KD__BUF_INIT;
    int rc = kd__zdict_read(z->dir, no, &b, l->why, sizeof l->why);
    if (rc == KD_ENOMEM) {
        kd__buf_free(&b);
        *nomem = 1;
        return NULL;
    }
    if (rc == KD_EIO) { /* may pass (too many open files…): not remembered, the next read tries again */
        snprintf(why, whylen, "%s", l->why);
        kd__buf_free(&b);
        return NULL;
    }
    if (rc == KD_ENOTFOUND) {
        char name[24];
        snprintf(l->why, sizeof l->why, "%s/%s is missing: the values compressed with it cannot be read", z->dir,
                 kd__zdict_name(no, name));
    }
    /* Bytes that are not a zstd dictionary are used as raw content, like
     * zstd does; the checksum above is what tells damage. */
    if (!rc && !(l->dd = ZSTD_createDDict(b.data, b.len))) {
        kd__buf_free(&b);
        *nomem = 1;
        return NULL;
    }
    kd__buf_free(&b);
    z->n++;
    if (!l->dd)
        snprintf(why, whylen, "%s", l->why);
    return l->dd;
}

int kd__zvalue_decode(kd__zdicts *z, uint32_t dict, const void *src, size_t n, size_t max, kd__buf *out, char *why,
                      size_t whylen)
{
    kd__buf_reset(out);
    unsigned long long size = ZSTD_getFrameContentSize(src, n);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
        snprintf(why, whylen, "a compressed value is not a zstd frame with its size");
        return KD_ECORRUPT;
    }
    if (size > max) {
        snprintf(why, whylen, "a compressed value declares %llu bytes, over the limit of %zu", size, max);
        return KD_ECORRUPT;
    }
    if (kd__buf_reserve(out, (size_t)size))
        return KD_ENOMEM;
    const ZSTD_DDict *dd = NULL;
    if (dict) {
        int nomem = 0;
        pthread_mutex_lock(&z->mu);
        dd = ddict_get(z, dict, why, whylen, &nomem);
        pthread_mutex_unlock(&z->mu);
        if (!dd)
            return nomem ? KD_ENOMEM : KD_ECORRUPT;
    }
    ZSTD_DCtx *d = dctx_take(z);
    if (!d)
        return KD_ENOMEM;
    size_t r = dd ? ZSTD_decompress_usingDDict(d, out->data, (size_t)size, src, n, dd)
                  : ZSTD_decompressDCtx(d, out->data, (size_t)size, src, n);
    dctx_give(z, d);
    if (ZSTD_isError(r) || r != size) {
        snprintf(why, whylen, "a compressed value does not decompress: %s",
                 ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short frame");
        return KD_ECORRUPT;
    }
    out->len = (size_t)size;
    out->data[out->len] = '\0';
    return KD_OK;
}

int kd__zvalue_plain(kd__zdicts *z, uint32_t dict, const kd__value_rec *v, kd__buf *buf, const char **data,
                     size_t *len, char *why, size_t whylen)
{
    if (!v->zstd) {
        *data = v->data;
        *len = v->len;
        return KD_OK;
    }
    int rc = kd__zvalue_decode(z, dict, v->data, v->len, KD__REC_MAX_PAYLOAD, buf, why, whylen);
    if (rc)
        return rc;
    *data = buf->data;
    *len = buf->len;
    return KD_OK;
}

int kd__zvalue_size(const void *src, size_t n, uint64_t *size)
{
    unsigned long long s = ZSTD_getFrameContentSize(src, n);
    if (s == ZSTD_CONTENTSIZE_ERROR || s == ZSTD_CONTENTSIZE_UNKNOWN)
        return -1;
    *size = s;
    return 0;
}

/* ------------------------------------------------------------------------
 * Compression
 * ---------------------------------------------------------------------- */

kd__zenc *kd__zenc_new(const void *dict, size_t dict_len, uint32_t dict_no, int level)
{
    kd__zenc *e = calloc(1, sizeof *e);
    if (!e || !(e->cctx = ZSTD_createCCtx()))
        goto fail;
    e->dict = dict_no;
    ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_checksumFlag, 0);
    ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_contentSizeFlag, 1);
    ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_dictIDFlag, 0);
    if (dict && dict_len) {
        if (!(e->cdict = ZSTD_createCDict(dict, dict_len, level)) ||
            ZSTD_isError(ZSTD_CCtx_refCDict(e->cctx, e->cdict)))
            goto fail;
    }
    return e;
fail:
    kd__zenc_free(e);
    return NULL;
}

void kd__zenc_free(kd__zenc *e)
{
    if (!e)
        return;
    ZSTD_freeCCtx(e->cctx);
    ZSTD_freeCDict(e->cdict);
    free(e);
}

uint32_t kd__zenc_dict(const kd__zenc *e)
{
    return e->dict;
}

int kd__zenc_value(kd__zenc *e, const void *src, size_t n, kd__buf *out)
{
    kd__buf_reset(out);
    size_t bound = ZSTD_compressBound(n);
    if (kd__buf_reserve(out, bound))
        return KD_ENOMEM;
    size_t r = ZSTD_compress2(e->cctx, out->data, bound, src, n);
    if (ZSTD_isError(r) || r >= n)
        return 0; /* incompressible (or refused): kept as it is */
    out->len = r;
    return 1;
}

int kd__zdict_train(const void *samples, const size_t *sizes, unsigned n, size_t cap, kd__buf *out)
{
    kd__buf_reset(out);
    if (kd__buf_reserve(out, cap))
        return KD_ENOMEM;
    size_t r = ZDICT_trainFromBuffer(out->data, cap, samples, sizes, n);
    if (ZDICT_isError(r))
        return KD_EINVALID;
    out->len = r;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Dictionary files: magic[8], u32 number, u32 length, u32 CRC-32C of the
 * dictionary, u32 CRC-32C of bytes 0..19, then the dictionary.
 * ---------------------------------------------------------------------- */

int kd__zdict_write(const char *dir, uint32_t no, const void *d, size_t n, char *why, size_t whylen)
{
    char name[24], path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, kd__zdict_name(no, name));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    uint8_t h[KD__ZDICT_HEADER_LEN];
    memcpy(h, KD__ZDICT_MAGIC, 8);
    kd__put_u32(h + 8, no);
    kd__put_u32(h + 12, (uint32_t)n);
    kd__put_u32(h + 16, kd__crc32c(d, n));
    kd__put_u32(h + 20, kd__crc32c(h, 20));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(why, whylen, "cannot create %s: %s", tmp, strerror(errno));
        return errno == ENOSPC ? KD_ENOSPACE : KD_EIO;
    }
    int e = 0;
    errno = 0;
    if (write(fd, h, sizeof h) != (ssize_t)sizeof h || write(fd, d, n) != (ssize_t)n)
        e = errno ? errno : ENOSPC; /* a short write without an error: the disk is full */
    if (!e && fsync(fd) != 0)
        e = errno;
    close(fd);
    if (!e && rename(tmp, path) != 0)
        e = errno;
    if (!e) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0)
            e = errno;
        if (dfd >= 0)
            close(dfd);
    }
    if (e) {
        unlink(tmp);
        snprintf(why, whylen, "cannot write %s: %s", path, strerror(e));
        return e == ENOSPC || e == EDQUOT ? KD_ENOSPACE : KD_EIO;
    }
    return KD_OK;
}

int kd__zdict_read(const char *dir, uint32_t no, kd__buf *out, char *why, size_t whylen)
{
    char name[24], path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, kd__zdict_name(no, name));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
        return errno == ENOENT ? KD_ENOTFOUND : KD_EIO;
    }
    uint8_t h[KD__ZDICT_HEADER_LEN];
    struct stat st;
    int rc = KD_OK;
    if (fstat(fd, &st) != 0 || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, KD__ZDICT_MAGIC, 8) ||
        kd__get_u32(h + 20) != kd__crc32c(h, 20)) {
        snprintf(why, whylen, "%s: damaged dictionary header (offset 0)", path);
        rc = KD_ECORRUPT;
    }
    uint32_t len = rc ? 0 : kd__get_u32(h + 12);
    if (!rc && (kd__get_u32(h + 8) != no || len == 0 || len > KD__ZDICT_MAX ||
                (uint64_t)st.st_size != KD__ZDICT_HEADER_LEN + (uint64_t)len)) {
        snprintf(why, whylen, "%s: the header does not match the file (number %u, %u bytes)", path,
                 kd__get_u32(h + 8), len);
        rc = KD_ECORRUPT;
    }
    kd__buf_reset(out);
    if (!rc && kd__buf_reserve(out, len))
        rc = KD_ENOMEM;
    if (!rc && pread(fd, out->data, len, KD__ZDICT_HEADER_LEN) != (ssize_t)len) {
        snprintf(why, whylen, "cannot read %s", path);
        rc = KD_EIO;
    }
    if (!rc && kd__crc32c(out->data, len) != kd__get_u32(h + 16)) {
        snprintf(why, whylen, "%s: dictionary checksum mismatch (offset %d)", path, KD__ZDICT_HEADER_LEN);
        rc = KD_ECORRUPT;
    }
    if (!rc)
        out->len = len;
    close(fd);
    return rc;
}

uint32_t kd__zdict_newest(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint32_t best = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned no;
        char rest;
        if (sscanf(e->d_name, "zdict-%8u%c", &no, &rest) == 1 && strlen(e->d_name) == 14 && no > best)
            best = no;
    }
    closedir(d);
    return best;
}
