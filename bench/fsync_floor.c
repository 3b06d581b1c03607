/*
 * fsync_floor.c — how many durable writes per second the disk under the
 * benchmark directory allows at all: a loop of write(128 bytes) +
 * fdatasync() on one file, with no database in the way. Durable put
 * figures (put_always_1w) are read as a share of this floor.
 *
 * Three variants, since file systems treat them differently:
 *   append     the file grows, so every fdatasync also commits the new size;
 *   prealloc   sequential writes into a range reserved with posix_fallocate
 *              (what a log that preallocates its segments does);
 *   overwrite  the same 128 bytes again and again (data only).
 * The floor is the faster of append and prealloc: the most durable small
 * writes per second an append-only log can get from this disk. Overwriting
 * one block in place is often faster still, but no log can write that way;
 * it is reported for information.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

void sysside_fsync_floor(const char *file, bench_fsync_mode mode, bench_side *out)
{
    char rec[128];
    off_t off = 0;
    memset(rec, 'r', sizeof rec);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | (mode == BENCH_FSYNC_APPEND ? O_APPEND : 0), 0644);
    if (fd < 0)
        bench_die("cannot create %s: %s", file, strerror(errno));
    if (mode == BENCH_FSYNC_OVERWRITE && (pwrite(fd, rec, sizeof rec, 0) != (ssize_t)sizeof rec || fsync(fd) != 0))
        bench_die("cannot write %s: %s", file, strerror(errno));
    /* 256 MiB reserved: more than 3 s of 128-byte durable writes can fill. */
    off_t reserve = (off_t)256 << 20;
    if (mode == BENCH_FSYNC_PREALLOC) {
        int rc = posix_fallocate(fd, 0, reserve);
        if (rc != 0 || fsync(fd) != 0)
            bench_die("cannot preallocate %s: %s", file, strerror(rc ? rc : errno));
    }

    bench_samples s;
    bench_samples_init(&s, 1000000);
    uint64_t n = 0, cap = (uint64_t)(g_cfg.seconds * 1e9);
    uint64_t start = bench_now_ns(), now = start;
    while (now - start < cap) {
        uint64_t t0 = now;
        ssize_t w;
        if (mode == BENCH_FSYNC_APPEND)
            w = write(fd, rec, sizeof rec);
        else if (mode == BENCH_FSYNC_PREALLOC) {
            w = pwrite(fd, rec, sizeof rec, off);
            off += (off_t)sizeof rec;
            if (off + (off_t)sizeof rec > reserve)
                off = 0;
        } else
            w = pwrite(fd, rec, sizeof rec, 0);
        if (w != (ssize_t)sizeof rec)
            bench_die("write to %s failed: %s", file, strerror(errno));
        if (fdatasync(fd) != 0)
            bench_die("fdatasync on %s failed: %s", file, strerror(errno));
        now = bench_now_ns();
        bench_samples_add(&s, now - t0);
        n++;
    }
    close(fd);
    out->ran = 1;
    out->ops = n;
    out->seconds = (double)(now - start) / 1e9;
    out->rate = (double)n / out->seconds;
    bench_samples_finish(&s, out);
    bench_samples_free(&s);
}
