/*
 * tail.c — the mapped tail segment; see tail.h.
 */
#include "tail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "korudelta.h"

#define RESERVE_STEP (8ull << 20) /* grow the file 8 MiB at a time */

int kd__tail_open(kd__tail *t, int fd, uint64_t size, char *err, size_t errlen)
{
    t->fd = fd;
    t->alloc = size;
    t->map = mmap(NULL, KD__TAIL_MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (t->map == MAP_FAILED) {
        t->map = NULL;
        snprintf(err, errlen, "cannot map the log segment for writing: %s", strerror(errno));
        return errno == ENOMEM ? KD_ENOMEM : KD_EIO;
    }
    return KD_OK;
}

/* Write zeros over [from, to): real, written blocks (not the "unwritten"
 * extents fallocate makes), so a later fdatasync of records stored there is
 * a pure data flush with no extent conversion to journal. errno on failure. */
static int zero_fill(int fd, uint64_t from, uint64_t to)
{
    static const char zeros[65536];
    while (from < to) {
        size_t n = to - from < sizeof zeros ? (size_t)(to - from) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, (off_t)from);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : ENOSPC;
        from += (uint64_t)w;
    }
    return 0;
}

int kd__tail_reserve(kd__tail *t, uint64_t end, int durable, char *err, size_t errlen)
{
    if (end <= t->alloc)
        return KD_OK;
    if (end > KD__TAIL_MAP_SIZE) {
        snprintf(err, errlen, "segment would exceed %llu bytes", (unsigned long long)KD__TAIL_MAP_SIZE);
        return KD_ETOOBIG;
    }
    /* Reserve a whole step when the disk allows, else just what is needed. */
    uint64_t want = (end + RESERVE_STEP - 1) / RESERVE_STEP * RESERVE_STEP;
    uint64_t need = (end + 4095) / 4096 * 4096;
    if (want > KD__TAIL_MAP_SIZE)
        want = KD__TAIL_MAP_SIZE;
    int rc = zero_fill(t->fd, t->alloc, want);
    if (rc == ENOSPC || rc == EDQUOT) {
        /* Give back what the step's zeros took (they filled the disk), then
         * take just what is needed: a compaction's seal on a nearly full
         * disk left no room for its rewrite. */
        if (ftruncate(t->fd, (off_t)t->alloc) != 0) {
            /* the smaller fill below still tells whether there is room */
        }
        want = need;
        rc = zero_fill(t->fd, t->alloc, want);
    }
    /* Make the new length durable now, once per step, so that syncing a
     * commit later flushes data only. */
    if (!rc && durable && fdatasync(t->fd) != 0)
        rc = errno;
    if (rc) {
        /* Put the length back so the file stays as it was. */
        if (ftruncate(t->fd, (off_t)t->alloc) != 0) {
            /* nothing more to do: recovery treats a zero tail as the end */
        }
        snprintf(err, errlen, "cannot reserve space in the log: %s", strerror(rc));
        return (rc == ENOSPC || rc == EDQUOT) ? KD_ENOSPACE : KD_EIO;
    }
#ifdef MADV_POPULATE_WRITE
    /* Map the new pages now, in one call, rather than one page fault per
     * 4 KiB of appends; harmless where the kernel does not support it. */
    madvise(t->map + t->alloc, want - t->alloc, MADV_POPULATE_WRITE);
#endif
    t->alloc = want;
    return KD_OK;
}

int kd__tail_close(kd__tail *t, uint64_t size)
{
    if (!t->map)
        return KD_OK; /* never opened (or already closed) */
    munmap(t->map, KD__TAIL_MAP_SIZE);
    t->map = NULL;
    if (t->alloc != size) {
        if (ftruncate(t->fd, (off_t)size) != 0)
            return KD_EIO; /* alloc stays: the reserve is still there */
        t->alloc = size;
    }
    return KD_OK;
}
