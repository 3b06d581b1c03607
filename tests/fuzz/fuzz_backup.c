/*
 * fuzz_backup.c — libFuzzer target for the backup-file reader
 * (src/backup/bfile.c): header, blocks (zstd frames), the records cut
 * from the decompressed stream, their hash chains, and the trailer.
 *
 * Byte 0 selects the mode:
 *   odd:  the input is a whole backup file, as is (a real one starts with
 *         'K', which is odd);
 *   even: the input after byte 0 is a record stream; the target wraps it
 *         in a valid file (header, compressed blocks, trailer) with the
 *         writer, so mutated records get past the checksums and reach the
 *         record and TXN decoders and the chain checks.
 * Either way kd__bk_read must return a status code, never crash, and a
 * file it accepts must describe itself consistently. Every record handed
 * to the callback is read in full.
 *
 * Seeds (tests/fuzz/corpus/fuzz_backup): real backup files of small
 * databases (full, incremental, empty) written by `kdelta backup`, and the
 * record streams inside two of them with a 0 byte in front.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backup/bfile.h"
#include "korudelta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static int on_record(void *ctx, const uint8_t *rec, size_t len, const kd__bk_pos *end)
{
    uint8_t x = 0;
    for (size_t i = 0; i < len; i++)
        x ^= rec[i];
    sink ^= x ^ (uint8_t)end->txns;
    (*(uint64_t *)ctx)++;
    return 0;
}

static void read_file(const uint8_t *p, size_t n)
{
    kd__bk_src src = {-1, p, n, 0};
    kd__bk_header h;
    char err[512];
    uint64_t records = 0;
    /* A non-empty buffer is required for mem mode; a zero-length one has no bytes to read. */
    static const uint8_t none[1];
    if (!n)
        src.mem = none;
    int rc = kd__bk_read(&src, &h, on_record, &records, err, sizeof err);
    if (rc == KD_OK && (records != h.txns || src.off != n))
        abort(); /* accepted, but not what it says */
    if (rc != KD_OK && !err[0])
        abort(); /* every refusal says why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1) {
        read_file(data, size);
        return 0;
    }
    /* Wrap the stream in a valid file. */
    int fd = memfd_create("kd_fuzz_backup", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    kd__bk_writer w;
    char err[256];
    if (kd__bk_writer_init(&w, fd, 1, err, sizeof err)) {
        close(fd);
        return 0;
    }
    kd__bk_header h;
    memset(&h, 0, sizeof h);
    h.kind = KD__BK_FULL;
    uint64_t file_bytes = 0;
    int ok = kd__bk_writer_add(&w, data + 1, size - 1, err, sizeof err) == 0;
    /* Counts the reader can only disprove after the last record. */
    h.txns = h.writes = size > 1 ? 1u << 20 : 0;
    h.end.txns = h.end.writes = h.txns;
    h.end.ts = size > 1 ? 1 : 0;
    if (ok)
        ok = kd__bk_writer_finish(&w, &h, &file_bytes, err, sizeof err) == 0;
    kd__bk_writer_free(&w);
    if (ok) {
        uint8_t *buf = malloc(file_bytes ? file_bytes : 1);
        if (buf && pread(fd, buf, file_bytes, 0) == (ssize_t)file_bytes)
            read_file(buf, file_bytes);
        free(buf);
    }
    close(fd);
    return 0;
}
