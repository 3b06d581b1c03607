/*
 * segment.c — the record walker shared by replay and verify; see segment.h.
 * The file is mapped read-only; every length is checked against the bytes
 * present before it is used.
 */
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/crc32c.h"
#include "format.h"
#include "korudelta.h"

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Does the damaged record at [from, to) look like pages that a crash kept
 * from the disk? The newest segment's space is zeros on disk before records
 * are written over it, and the kernel writes dirty pages back in any order,
 * even while a record is being copied into one: after a crash, a page of
 * unacknowledged records may read as it was at an earlier writeback (the
 * bytes copied by then, zeros after) or not at all (zeros), while later
 * pages hold their new bytes. So: on some 4 KiB page the record overlaps,
 * the zeros that run to the end of the page begin inside the record (at
 * its start, or 32 bytes or more before the page ends: a record's last
 * byte or two may be zero by chance). */
static int torn_by_lost_pages(const uint8_t *map, uint64_t size, uint64_t from, uint64_t to)
{
    enum { PAGE = 4096, MIN_RUN = 32 };
    for (uint64_t p = from & ~(uint64_t)(PAGE - 1); p < to && p < size; p += PAGE) {
        uint64_t end = p + PAGE < size ? p + PAGE : size;
        uint64_t zeros = end; /* where the zeros running to `end` begin */
        while (zeros > p && map[zeros - 1] == 0)
            zeros--;
        if (zeros < (to < end ? to : end) && (zeros <= from || end - zeros >= MIN_RUN))
            return 1;
    }
    return 0;
}

int kd__segment_walk(const char *path, uint64_t no, uint64_t limit, int newest, kd__rec_fn fn, void *ctx,
                     uint32_t *dict, uint64_t *valid_end, uint64_t *file_size, char *err, size_t errlen)
{
    return kd__segment_walk_from(path, no, 0, limit, newest, fn, ctx, dict, valid_end, file_size, err, errlen);
}

int kd__segment_walk_from(const char *path, uint64_t no, uint64_t start, uint64_t limit, int newest, kd__rec_fn fn,
                          void *ctx, uint32_t *dict, uint64_t *valid_end, uint64_t *file_size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return KD_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return KD_EIO;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (limit && limit < size)
        size = limit;
    *file_size = size;
    *valid_end = 0;
    if (size < KD__SEG_HEADER_LEN) {
        close(fd);
        snprintf(err, errlen, "%s: file of %llu bytes is too short for a segment header (offset 0)", path,
                 (unsigned long long)size);
        return KD_ECORRUPT;
    }
    uint8_t *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
        return KD_EIO;
    }
    madvise(map, size, MADV_SEQUENTIAL);
    int rc = KD_OK;
    char why[256];
    uint64_t hdr_no;
    uint32_t format, zdict;
    int h = kd__seg_header_decode(map, &hdr_no, &format, &zdict);
    if (h == -2) {
        snprintf(err, errlen, "%s was written by format version %u; this build reads format version %u", path,
                 format, KD__FORMAT_VERSION);
        rc = KD_EFORMAT;
        goto done;
    }
    if (h != 0 || hdr_no != no) {
        snprintf(err, errlen, "%s: bad segment header at offset 0", path);
        rc = KD_ECORRUPT;
        goto done;
    }
    if (dict)
        *dict = zdict;
    if (start > size) {
        snprintf(err, errlen, "%s: ends at offset %llu, before the checkpointed record end at offset %llu", path,
                 (unsigned long long)size, (unsigned long long)start);
        rc = KD_ECORRUPT;
        goto done;
    }
    uint64_t off = start > KD__SEG_HEADER_LEN ? start : KD__SEG_HEADER_LEN;
    while (off < size) {
        uint64_t left = size - off;
        uint8_t type;
        uint32_t len, pcrc;
        if (left < KD__REC_HEADER_LEN) {
            if (newest)
                break; /* torn header */
            snprintf(err, errlen, "%s: truncated record header at offset %llu", path, (unsigned long long)off);
            rc = KD_ECORRUPT;
            goto done;
        }
        if (kd__rec_header_decode(map + off, &type, &len, &pcrc) != 0) {
            /* Only zeros after this header: the header itself is a partly
             * written one (or zero-filled reserve): the write never landed.
             * Or its pages never reached the disk (torn_by_lost_pages). */
            if (newest && (all_zero(map + off + KD__REC_HEADER_LEN, left - KD__REC_HEADER_LEN) ||
                           torn_by_lost_pages(map, size, off, off + KD__REC_HEADER_LEN)))
                break;
            snprintf(err, errlen, "%s: record header checksum mismatch at offset %llu", path,
                     (unsigned long long)off);
            rc = KD_ECORRUPT;
            goto done;
        }
        if (len > left - KD__REC_HEADER_LEN) {
            if (newest)
                break; /* torn payload */
            snprintf(err, errlen, "%s: record at offset %llu runs past the end of the file", path,
                     (unsigned long long)off);
            rc = KD_ECORRUPT;
            goto done;
        }
        const uint8_t *payload = map + off + KD__REC_HEADER_LEN;
        uint64_t next = off + KD__REC_HEADER_LEN + len;
        if (kd__crc32c(payload, len) != pcrc) {
            /* The last record never fully reached the disk, or a page of
             * it did not while later ones did. Either way no write from
             * here on was acknowledged: the sync that acknowledged it would
             * have made this record durable too. */
            if (newest && (next == size || all_zero(map + next, size - next) ||
                           torn_by_lost_pages(map, size, off, next)))
                break;
            snprintf(err, errlen, "%s: record checksum mismatch at offset %llu", path, (unsigned long long)off);
            rc = KD_ECORRUPT;
            goto done;
        }
        why[0] = '\0';
        rc = fn(ctx, no, off, type, payload, len, why, sizeof why);
        if (rc) {
            if (rc == KD_ECORRUPT)
                snprintf(err, errlen, "%s: bad record at offset %llu: %s", path, (unsigned long long)off, why);
            else
                snprintf(err, errlen, "%s: at offset %llu: %s", path, (unsigned long long)off,
                         why[0] ? why : kd_strerror(rc));
            goto done;
        }
        off = next;
    }
    *valid_end = off;
done:
    munmap(map, *file_size);
    return rc;
}
