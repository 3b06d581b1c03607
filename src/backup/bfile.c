/*
 * bfile.c — encoding and decoding of backup files (see bfile.h and
 * docs/FORMAT.md, "Backup file"). The reader is the parser of untrusted
 * bytes that tests/fuzz/fuzz_backup.c fuzzes: every length is checked
 * against a fixed cap and against what is left before it is used, and
 * memory is bounded by one block plus the largest record.
 *
 * Header (384 bytes): magic[8] | u32 format | u32 kind | node[16] |
 *   i64 created | base position (152) | end position (152) | u64 txns |
 *   u64 writes | u64 raw_bytes | u64 blocks | u32 log format | u32 CRC-32C
 * Position (152 bytes): i64 ts | u64 txns | u64 writes | storage[32] |
 *   views[32] | vectors[32] | auth[32]
 * Block: u32 compressed length | u32 raw length | u32 CRC-32C of the
 *   compressed bytes | u32 CRC-32C of the 12 bytes before | one zstd frame
 * Trailer (76 bytes): magic[8] | SHA-256 of the record stream | SHA-256 of
 *   the header | u32 CRC-32C of the 72 bytes before
 */
#include "bfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "../store/format.h"
#include "../util/buf.h"
#include "../util/crc32c.h"
#include "korudelta.h"
#include "../util/le.h"

_Static_assert(8 + 4 + 4 + 16 + 8 + 152 + 152 + 4 * 8 + 4 + 4 == KD__BK_HEADER_LEN, "backup header layout");
_Static_assert(8 + 32 + 32 + 4 == KD__BK_TRAILER_LEN, "backup trailer layout");

static int errno_rc(int e)
{
    return e == ENOSPC || e == EDQUOT ? KD_ENOSPACE : e == ENOMEM ? KD_ENOMEM : KD_EIO;
}

/* ------------------------------------------------------------------------
 * Header and positions
 * ---------------------------------------------------------------------- */

static void pos_encode(const kd__bk_pos *p, uint8_t *out)
{
    kd__put_u64(out, (uint64_t)p->ts);
    kd__put_u64(out + 8, p->txns);
    kd__put_u64(out + 16, p->writes);
    memcpy(out + 24, p->storage, KD__HASH_LEN);
    memcpy(out + 56, p->views, KD__HASH_LEN);
    memcpy(out + 88, p->vectors, KD__HASH_LEN);
    memcpy(out + 120, p->auth, KD__HASH_LEN);
}

static void pos_decode(const uint8_t *in, kd__bk_pos *p)
{
    p->ts = (int64_t)kd__get_u64(in);
    p->txns = kd__get_u64(in + 8);
    p->writes = kd__get_u64(in + 16);
    memcpy(p->storage, in + 24, KD__HASH_LEN);
    memcpy(p->views, in + 56, KD__HASH_LEN);
    memcpy(p->vectors, in + 88, KD__HASH_LEN);
    memcpy(p->auth, in + 120, KD__HASH_LEN);
}

int kd__bk_pos_equal(const kd__bk_pos *a, const kd__bk_pos *b)
{
    return a->ts == b->ts && a->txns == b->txns && a->writes == b->writes &&
           !memcmp(a->storage, b->storage, KD__HASH_LEN) && !memcmp(a->views, b->views, KD__HASH_LEN) &&
           !memcmp(a->vectors, b->vectors, KD__HASH_LEN) && !memcmp(a->auth, b->auth, KD__HASH_LEN);
}

static int pos_is_empty(const kd__bk_pos *p)
{
    return p->ts == 0 && p->txns == 0 && p->writes == 0 && kd__root_is_zero(p->storage) &&
           kd__root_is_zero(p->views) && kd__root_is_zero(p->vectors) && kd__root_is_zero(p->auth);
}

void kd__bk_header_encode(const kd__bk_header *h, uint8_t out[KD__BK_HEADER_LEN])
{
    memset(out, 0, KD__BK_HEADER_LEN);
    memcpy(out, KD__BK_MAGIC, 8);
    kd__put_u32(out + 8, KD__BK_FORMAT_VERSION);
    kd__put_u32(out + 12, h->kind);
    memcpy(out + 16, h->node, 16);
    kd__put_u64(out + 32, (uint64_t)h->created);
    pos_encode(&h->base, out + 40);
    pos_encode(&h->end, out + 192);
    kd__put_u64(out + 344, h->txns);
    kd__put_u64(out + 352, h->writes);
    kd__put_u64(out + 360, h->raw_bytes);
    kd__put_u64(out + 368, h->blocks);
    kd__put_u32(out + 376, h->log_format);
    kd__put_u32(out + 380, kd__crc32c(out, 380));
}

int kd__bk_header_decode(const uint8_t in[KD__BK_HEADER_LEN], kd__bk_header *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    if (memcmp(in, KD__BK_MAGIC, 8) != 0) {
        snprintf(err, errlen, "not a KoruDelta backup file (bad magic at offset 0)");
        return KD_ECORRUPT;
    }
    if (kd__crc32c(in, 380) != kd__get_u32(in + 380)) {
        snprintf(err, errlen, "header checksum mismatch (offset 380)");
        return KD_ECORRUPT;
    }
    uint32_t fmt = kd__get_u32(in + 8);
    if (fmt != KD__BK_FORMAT_VERSION) {
        snprintf(err, errlen, "backup format version %u; this build reads backup format version %u", fmt,
                 KD__BK_FORMAT_VERSION);
        return fmt > KD__BK_FORMAT_VERSION ? KD_EFORMAT : KD_ECORRUPT;
    }
    h->kind = kd__get_u32(in + 12);
    memcpy(h->node, in + 16, 16);
    h->created = (int64_t)kd__get_u64(in + 32);
    pos_decode(in + 40, &h->base);
    pos_decode(in + 192, &h->end);
    h->txns = kd__get_u64(in + 344);
    h->writes = kd__get_u64(in + 352);
    h->raw_bytes = kd__get_u64(in + 360);
    h->blocks = kd__get_u64(in + 368);
    h->log_format = kd__get_u32(in + 376);
    if (h->log_format < KD__FORMAT_PLAIN || h->log_format > KD__BK_LOG_FORMAT) { /* 1 and 2 are read alike */
        snprintf(err, errlen, "records of log format version %u; this build reads log format versions %u to %u",
                 h->log_format, KD__FORMAT_PLAIN, KD__BK_LOG_FORMAT);
        return h->log_format > KD__BK_LOG_FORMAT ? KD_EFORMAT : KD_ECORRUPT;
    }
    const char *bad = NULL;
    int incremental = h->kind == KD__BK_INCREMENTAL || h->kind == KD__BK_INCREMENTAL_CO;
    if (!incremental && h->kind != KD__BK_FULL && h->kind != KD__BK_CURRENT)
        bad = "unknown kind";
    else if (!incremental && !pos_is_empty(&h->base))
        bad = "a full backup whose base is not the empty log";
    else if (h->end.ts < h->base.ts || h->base.ts < 0 || h->end.txns - h->base.txns != h->txns ||
             h->end.writes - h->base.writes != h->writes || h->end.txns < h->base.txns ||
             h->end.writes < h->base.writes)
        bad = "base, end and counts disagree";
    else if (h->writes < h->txns || (h->txns == 0) != (h->raw_bytes == 0) || (h->txns == 0 && h->writes != 0))
        bad = "counts disagree";
    else if (h->txns == 0 && !kd__bk_pos_equal(&h->base, &h->end))
        bad = "no records but end differs from base";
    else if (h->blocks > h->raw_bytes || (h->raw_bytes && h->blocks < (h->raw_bytes + KD__BK_BLOCK_MAX - 1) /
                                                                          KD__BK_BLOCK_MAX))
        bad = "block count does not fit the byte count";
    if (bad) {
        snprintf(err, errlen, "header fields are inconsistent: %s", bad);
        return KD_ECORRUPT;
    }
    return KD_OK;
}

int kd__bk_trailer_check(const uint8_t tr[KD__BK_TRAILER_LEN], const uint8_t hdr[KD__BK_HEADER_LEN])
{
    uint8_t sum[KD__HASH_LEN];
    kd__sha256(hdr, KD__BK_HEADER_LEN, sum);
    if (memcmp(tr, KD__BK_TRAILER_MAGIC, 8) != 0 || kd__crc32c(tr, 72) != kd__get_u32(tr + 72) ||
        memcmp(tr + 40, sum, KD__HASH_LEN) != 0)
        return -1;
    return 0;
}

int kd__bk_pos_advance(kd__bk_pos *pos, const uint8_t *payload, size_t len, int check, char *err, size_t errlen)
{
    kd__txn_cursor c;
    char why[256];
    if (kd__txn_open(&c, payload, len, why, sizeof why))
        goto bad;
    kd__value_rec v;
    for (uint32_t i = 0; i < c.n_values; i++) {
        if (kd__txn_next_value(&c, &v, why, sizeof why))
            goto bad;
        if (v.zstd && check) { /* a backup's records are never consolidated */
            snprintf(why, sizeof why, "value %u is marked compressed", i);
            goto bad;
        }
    }
    for (uint32_t i = 0; i < c.n_writes; i++) {
        kd__write_rec w;
        if (kd__txn_next_write(&c, &w, why, sizeof why))
            goto bad;
        if (w.ts <= pos->ts || w.ts >= INT64_C(7258118400000000000)) {
            snprintf(why, sizeof why, "write %u: timestamp %lld is not after the previous one (%lld)", i,
                     (long long)w.ts, (long long)pos->ts);
            goto bad;
        }
        if (check) {
            uint8_t id[KD__HASH_LEN];
            kd__write_id(&w, id);
            if (memcmp(id, w.write_id, KD__HASH_LEN) != 0) {
                snprintf(why, sizeof why, "write %u: write_id does not match its fields", i);
                goto bad;
            }
            kd__root_advance(pos->storage, w.write_id);
        }
        if (kd__is_views_ns(w.ns, w.ns_len))
            kd__views_root_advance(pos->views, w.write_id);
        else if (kd__is_vectors_ns(w.ns, w.ns_len))
            kd__vectors_root_advance(pos->vectors, w.write_id);
        else if (kd__is_auth_ns(w.ns, w.ns_len))
            kd__auth_root_advance(pos->auth, w.write_id);
        pos->ts = w.ts;
        pos->writes++;
    }
    if (kd__txn_close(&c, why, sizeof why))
        goto bad;
    if (!check)
        memcpy(pos->storage, c.root_after, KD__HASH_LEN);
    else if (memcmp(c.root_after, pos->storage, KD__HASH_LEN) != 0) {
        snprintf(why, sizeof why, "the storage root it records is not the one its writes lead to");
        goto bad;
    }
    pos->txns++;
    return KD_OK;
bad:
    snprintf(err, errlen, "%s", why);
    return KD_ECORRUPT;
}

/* ------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n, uint64_t off, char *err, size_t errlen)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = pwrite(fd, b, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            snprintf(err, errlen, "write failed: %s", strerror(e));
            return errno_rc(e);
        }
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return KD_OK;
}

int kd__bk_writer_init(kd__bk_writer *w, int fd, int level, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->fd = fd;
    w->level = level;
    w->comp_cap = ZSTD_compressBound(KD__BK_BLOCK_MAX);
    w->cctx = ZSTD_createCCtx();
    w->raw = malloc(KD__BK_BLOCK_MAX);
    w->comp = malloc(w->comp_cap);
    if (!w->cctx || !w->raw || !w->comp) {
        kd__bk_writer_free(w);
        snprintf(err, errlen, "out of memory");
        return KD_ENOMEM;
    }
    kd__sha_init(&w->sha);
    w->off = KD__BK_HEADER_LEN; /* the header is written last */
    return KD_OK;
}

static int flush_block(kd__bk_writer *w, char *err, size_t errlen)
{
    if (!w->raw_len)
        return KD_OK;
    size_t n = ZSTD_compressCCtx(w->cctx, w->comp, w->comp_cap, w->raw, w->raw_len, w->level);
    if (ZSTD_isError(n)) {
        snprintf(err, errlen, "compression failed: %s", ZSTD_getErrorName(n));
        return KD_ENOMEM;
    }
    uint8_t bh[KD__BK_BLOCK_HEADER_LEN];
    kd__put_u32(bh, (uint32_t)n);
    kd__put_u32(bh + 4, (uint32_t)w->raw_len);
    kd__put_u32(bh + 8, kd__crc32c(w->comp, n));
    kd__put_u32(bh + 12, kd__crc32c(bh, 12));
    int rc = write_all(w->fd, bh, sizeof bh, w->off, err, errlen);
    if (!rc)
        rc = write_all(w->fd, w->comp, n, w->off + sizeof bh, err, errlen);
    if (rc)
        return rc;
    w->off += sizeof bh + n;
    w->blocks++;
    w->raw_len = 0;
    return KD_OK;
}

int kd__bk_writer_add(kd__bk_writer *w, const void *p, size_t n, char *err, size_t errlen)
{
    const uint8_t *b = p;
    kd__sha_update(&w->sha, p, n);
    w->raw_total += n;
    while (n) {
        size_t room = KD__BK_BLOCK_MAX - w->raw_len;
        size_t take = n < room ? n : room;
        memcpy(w->raw + w->raw_len, b, take);
        w->raw_len += take;
        b += take;
        n -= take;
        if (w->raw_len == KD__BK_BLOCK_MAX) {
            int rc = flush_block(w, err, errlen);
            if (rc)
                return rc;
        }
    }
    return KD_OK;
}

int kd__bk_writer_finish(kd__bk_writer *w, kd__bk_header *h, uint64_t *file_bytes, char *err, size_t errlen)
{
    int rc = flush_block(w, err, errlen);
    if (rc)
        return rc;
    h->raw_bytes = w->raw_total;
    h->blocks = w->blocks;
    h->log_format = KD__BK_LOG_FORMAT;
    uint8_t hdr[KD__BK_HEADER_LEN], tr[KD__BK_TRAILER_LEN];
    kd__bk_header_encode(h, hdr);
    memcpy(tr, KD__BK_TRAILER_MAGIC, 8);
    kd__sha_final(&w->sha, tr + 8);
    kd__sha256(hdr, sizeof hdr, tr + 40);
    kd__put_u32(tr + 72, kd__crc32c(tr, 72));
    if ((rc = write_all(w->fd, tr, sizeof tr, w->off, err, errlen)) ||
        (rc = write_all(w->fd, hdr, sizeof hdr, 0, err, errlen)))
        return rc;
    *file_bytes = w->off + sizeof tr;
    return KD_OK;
}

void kd__bk_writer_free(kd__bk_writer *w)
{
    ZSTD_freeCCtx(w->cctx);
    free(w->raw);
    free(w->comp);
    w->cctx = NULL;
    w->raw = w->comp = NULL;
}

/* ------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------- */

/* Read exactly n bytes; 1 when fewer were left (truncation), -1 on error. */
static int src_read(kd__bk_src *s, void *buf, size_t n, int *err_no)
{
    if (s->mem) {
        if (s->off > s->mem_len || n > s->mem_len - s->off)
            return 1;
        memcpy(buf, s->mem + s->off, n);
        s->off += n;
        return 0;
    }
    uint8_t *b = buf;
    while (n) {
        ssize_t r = read(s->fd, b, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            *err_no = errno;
            return -1;
        }
        if (r == 0)
            return 1;
        b += r;
        n -= (size_t)r;
        s->off += (uint64_t)r;
    }
    return 0;
}

typedef struct reader {
    kd__bk_src *src;
    char *err;
    size_t errlen;
} reader;

static int need(reader *r, void *buf, size_t n, const char *what)
{
    int en = 0;
    uint64_t at = r->src->off;
    int x = src_read(r->src, buf, n, &en);
    if (x == 1) {
        snprintf(r->err, r->errlen, "file is truncated: %s at offset %llu is incomplete", what,
                 (unsigned long long)at);
        return KD_ECORRUPT;
    }
    if (x < 0) {
        snprintf(r->err, r->errlen, "cannot read %s at offset %llu: %s", what, (unsigned long long)at, strerror(en));
        return KD_EIO;
    }
    return KD_OK;
}

int kd__bk_read(kd__bk_src *src, kd__bk_header *h, kd__bk_rec_fn fn, void *ctx, char *err, size_t errlen)
{
    reader r = {src, err, errlen};
    if (errlen)
        err[0] = '\0';
    uint8_t hdr[KD__BK_HEADER_LEN];
    int rc = need(&r, hdr, sizeof hdr, "the header");
    if (rc)
        return rc;
    if ((rc = kd__bk_header_decode(hdr, h, err, errlen)))
        return rc;

    size_t comp_cap = ZSTD_compressBound(KD__BK_BLOCK_MAX);
    uint8_t *comp = malloc(comp_cap), *raw = malloc(KD__BK_BLOCK_MAX);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    kd__buf rec = KD__BUF_INIT; /* the record being assembled */
    if (!comp || !raw || !dctx) {
        snprintf(err, errlen, "out of memory");
        rc = KD_ENOMEM;
        goto out;
    }
    kd__sha sha;
    kd__sha_init(&sha);
    kd__bk_pos pos = h->base;
    uint64_t raw_done = 0, blocks = 0;
    size_t rec_need = KD__REC_HEADER_LEN; /* bytes the current record needs in all */
    uint64_t rec_start = 0;               /* its offset in the record stream */
    while (raw_done < h->raw_bytes) {
        uint64_t boff = src->off;
        uint8_t bh[KD__BK_BLOCK_HEADER_LEN];
        if ((rc = need(&r, bh, sizeof bh, "a block header")))
            goto out;
        uint32_t clen = kd__get_u32(bh), rlen = kd__get_u32(bh + 4);
        if (kd__crc32c(bh, 12) != kd__get_u32(bh + 12)) {
            snprintf(err, errlen, "block %llu: header checksum mismatch at offset %llu", (unsigned long long)blocks,
                     (unsigned long long)boff);
            rc = KD_ECORRUPT;
            goto out;
        }
        if (rlen == 0 || rlen > KD__BK_BLOCK_MAX || rlen > h->raw_bytes - raw_done || clen == 0 ||
            clen > comp_cap || blocks >= h->blocks) {
            snprintf(err, errlen, "block %llu at offset %llu: impossible lengths (%u compressed, %u raw)",
                     (unsigned long long)blocks, (unsigned long long)boff, clen, rlen);
            rc = KD_ECORRUPT;
            goto out;
        }
        if ((rc = need(&r, comp, clen, "a block")))
            goto out;
        if (kd__crc32c(comp, clen) != kd__get_u32(bh + 8)) {
            snprintf(err, errlen, "block %llu: checksum mismatch at offset %llu", (unsigned long long)blocks,
                     (unsigned long long)boff);
            rc = KD_ECORRUPT;
            goto out;
        }
        size_t fsz = ZSTD_findFrameCompressedSize(comp, clen);
        unsigned long long csz = ZSTD_getFrameContentSize(comp, clen);
        size_t got = 0;
        if (!ZSTD_isError(fsz) && fsz == clen && csz == rlen)
            got = ZSTD_decompressDCtx(dctx, raw, rlen, comp, clen);
        if (ZSTD_isError(fsz) || fsz != clen || csz != rlen || ZSTD_isError(got) || got != rlen) {
            snprintf(err, errlen, "block %llu at offset %llu does not decompress to its %u bytes",
                     (unsigned long long)blocks, (unsigned long long)boff, rlen);
            rc = KD_ECORRUPT;
            goto out;
        }
        kd__sha_update(&sha, raw, rlen);
        /* Cut the stream into records. */
        size_t p = 0;
        while (p < rlen) {
            size_t take = rec_need - rec.len;
            if (take > rlen - p)
                take = rlen - p;
            if (kd__buf_append(&rec, raw + p, take)) {
                snprintf(err, errlen, "out of memory");
                rc = KD_ENOMEM;
                goto out;
            }
            p += take;
            if (rec.len < rec_need)
                break;
            const uint8_t *rh = (const uint8_t *)rec.data;
            uint8_t type;
            uint32_t len, pcrc;
            if (rec_need == KD__REC_HEADER_LEN) {
                if (kd__rec_header_decode(rh, &type, &len, &pcrc) || type != KD__REC_TXN ||
                    len > KD__REC_MAX_PAYLOAD) {
                    snprintf(err, errlen, "record %llu (stream offset %llu): bad record header",
                             (unsigned long long)(pos.txns - h->base.txns), (unsigned long long)rec_start);
                    rc = KD_ECORRUPT;
                    goto out;
                }
                if ((uint64_t)KD__REC_HEADER_LEN + len > h->raw_bytes - rec_start) {
                    snprintf(err, errlen, "record %llu (stream offset %llu) runs past the end of the records",
                             (unsigned long long)(pos.txns - h->base.txns), (unsigned long long)rec_start);
                    rc = KD_ECORRUPT;
                    goto out;
                }
                rec_need = KD__REC_HEADER_LEN + (size_t)len;
                if (len)
                    continue;
            }
            kd__rec_header_decode(rh, &type, &len, &pcrc);
            const uint8_t *payload = rh + KD__REC_HEADER_LEN;
            char why[300];
            if (kd__crc32c(payload, len) != pcrc) {
                snprintf(why, sizeof why, "record checksum mismatch");
                rc = KD_ECORRUPT;
            } else if (pos.txns - h->base.txns >= h->txns) {
                snprintf(why, sizeof why, "more records than the header counts");
                rc = KD_ECORRUPT;
            } else {
                rc = kd__bk_pos_advance(&pos, payload, len, 1, why, sizeof why);
            }
            if (rc) {
                snprintf(err, errlen, "record %llu (stream offset %llu): %s",
                         (unsigned long long)(pos.txns - h->base.txns), (unsigned long long)rec_start, why);
                goto out;
            }
            if (fn && (rc = fn(ctx, rh, rec.len, &pos)))
                goto out; /* the callback keeps its own message */
            rec_start += rec.len;
            kd__buf_reset(&rec);
            rec_need = KD__REC_HEADER_LEN;
        }
        raw_done += rlen;
        blocks++;
    }
    if (rec.len) {
        snprintf(err, errlen, "the records end inside record %llu (stream offset %llu)",
                 (unsigned long long)(pos.txns - h->base.txns), (unsigned long long)rec_start);
        rc = KD_ECORRUPT;
        goto out;
    }
    if (blocks != h->blocks || !kd__bk_pos_equal(&pos, &h->end)) {
        snprintf(err, errlen, "the records do not end where the header says (%s)",
                 blocks != h->blocks ? "block count" : "end position");
        rc = KD_ECORRUPT;
        goto out;
    }
    uint64_t toff = src->off;
    uint8_t tr[KD__BK_TRAILER_LEN];
    if ((rc = need(&r, tr, sizeof tr, "the trailer")))
        goto out;
    uint8_t sum[KD__HASH_LEN], hsum[KD__HASH_LEN];
    kd__sha_final(&sha, sum);
    kd__sha256(hdr, sizeof hdr, hsum);
    const char *bad = NULL;
    if (memcmp(tr, KD__BK_TRAILER_MAGIC, 8) != 0)
        bad = "bad trailer magic";
    else if (kd__crc32c(tr, 72) != kd__get_u32(tr + 72))
        bad = "trailer checksum mismatch";
    else if (memcmp(tr + 8, sum, KD__HASH_LEN) != 0)
        bad = "SHA-256 of the records does not match";
    else if (memcmp(tr + 40, hsum, KD__HASH_LEN) != 0)
        bad = "SHA-256 of the header does not match";
    if (bad) {
        snprintf(err, errlen, "%s (trailer at offset %llu)", bad, (unsigned long long)toff);
        rc = KD_ECORRUPT;
        goto out;
    }
    uint8_t extra;
    int en = 0;
    int x = src_read(src, &extra, 1, &en);
    if (x == 0) {
        snprintf(err, errlen, "unexpected bytes after the trailer (offset %llu)", (unsigned long long)(toff + 76));
        rc = KD_ECORRUPT;
    } else if (x < 0) {
        snprintf(err, errlen, "cannot read: %s", strerror(en));
        rc = KD_EIO;
    }
out:
    free(comp);
    free(raw);
    ZSTD_freeDCtx(dctx);
    kd__buf_free(&rec);
    return rc;
}
