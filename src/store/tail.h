/*
 * tail.h — appending to the newest log segment through a shared memory
 * mapping.
 *
 * Appends are memcpy into a MAP_SHARED mapping of the segment file: the
 * bytes are in the kernel's page cache as soon as they are copied, so a
 * crash of the process loses nothing, and no system call is made per write
 * (fdatasync still makes them durable). Space is reserved ahead in 8 MiB
 * steps by writing zeros, so a full disk shows up as a clean ENOSPC at
 * reservation time instead of a SIGBUS on a later store, and syncing a
 * commit never has to change the file's size or extents. The reserved but
 * unused end of the file is zero bytes; recovery treats a zero tail as the
 * end of the log, and closing truncates it away.
 */
#ifndef KD_STORE_TAIL_H
#define KD_STORE_TAIL_H

#include <stddef.h>
#include <stdint.h>

/* Virtual size of the mapping: larger than any segment can grow
 * (rotation at 256 MiB + one record of at most 1.5 GiB). */
#define KD__TAIL_MAP_SIZE (2ull << 30)

typedef struct kd__tail {
    int fd;
    uint8_t *map;   /* NULL when not mapped */
    uint64_t alloc; /* bytes of the file reserved (its current length) */
} kd__tail;

/* Map segment file `fd` whose length is `size`. */
int kd__tail_open(kd__tail *t, int fd, uint64_t size, char *err, size_t errlen);
/* Make sure bytes [0, end) are reserved on disk; with `durable`, the new
 * length is synced too. KD_ENOSPACE / KD_EIO. */
int kd__tail_reserve(kd__tail *t, uint64_t end, int durable, char *err, size_t errlen);
/* Unmap and cut the file back to `size` bytes (dropping the reserve). */
int kd__tail_close(kd__tail *t, uint64_t size);

#endif
