/*
 * fuzz_record.c — libFuzzer target for the log-record decoder
 * (src/store/format.c) and the segment walker (src/store/segment.c).
 *
 * Every input is used three ways:
 *   (a) as a TXN payload: kd__txn_open, then every value and write through
 *       the cursor, then kd__txn_close; every byte the decoder hands out is
 *       read (and written ids are recomputed), so a length that points past
 *       the input is caught by AddressSanitizer;
 *   (b) as a record: kd__rec_header_decode on the first 16 bytes, and when
 *       the header holds, (a) on the payload it describes (cut to what is
 *       present);
 *   (c) as a segment file: byte 0 selects the mode —
 *         odd:  the input is the whole file, as is (a real segment starts
 *               with 'K', which is odd);
 *         even: a valid segment header for segment 1 is written first, then
 *               the input after byte 0; bit 2 makes the target fix up the
 *               record checksums so that mutated payloads reach the decoder;
 *       in both, bit 1 selects the walker's "newest" (torn-tail) rule and
 *       bit 3 a read limit of 3/4 of the file;
 *       kd__segment_walk then runs with a callback that decodes each TXN
 *       fully. It must return a status code, never crash.
 * One temporary file per process (/tmp/kd_fuzz_record.<pid>) is rewritten
 * for (c) and removed at exit.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "korudelta.h"
#include "store/format.h"
#include "store/segment.h"
#include "util/crc32c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink; /* keeps the reads of decoded bytes */

static void touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++)
        x ^= b[i];
    sink ^= x;
}

/* Decode one TXN payload completely. Returns 0 when it is well-formed. */
static int decode_txn(const uint8_t *p, size_t len)
{
    char err[256];
    kd__txn_cursor c;
    if (kd__txn_open(&c, p, len, err, sizeof err))
        return -1;
    for (uint32_t i = 0; i < c.n_values; i++) {
        kd__value_rec v;
        if (kd__txn_next_value(&c, &v, err, sizeof err))
            return -1;
        /* The value must lie inside the payload, where the offset says. */
        if ((const uint8_t *)v.data != p + v.offset || (size_t)v.offset + v.len > len)
            abort();
        touch(v.data, v.len);
    }
    for (uint32_t i = 0; i < c.n_writes; i++) {
        kd__write_rec w;
        if (kd__txn_next_write(&c, &w, err, sizeof err))
            return -1;
        if (w.ws_len == 0 || w.ns_len == 0 || w.key_len == 0 || w.n_parents > 1)
            abort(); /* the decoder promises these */
        touch(w.ws, w.ws_len);
        touch(w.ns, w.ns_len);
        touch(w.key, w.key_len);
        uint8_t id[KD__HASH_LEN];
        kd__write_id(&w, id);
        touch(id, sizeof id);
    }
    if (kd__txn_close(&c, err, sizeof err))
        return -1;
    if (c.pos != len)
        abort();
    return 0;
}

static int walk_record(void *ctx, uint64_t seg_no, uint64_t off, uint8_t type, const uint8_t *payload, size_t len,
                       char *why, size_t whylen)
{
    (void)ctx;
    (void)seg_no;
    (void)off;
    if (type != KD__REC_TXN) {
        snprintf(why, whylen, "unknown record type %u", type);
        return KD_ECORRUPT;
    }
    if (decode_txn(payload, len)) {
        snprintf(why, whylen, "bad transaction");
        return KD_ECORRUPT;
    }
    return KD_OK;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the checksums of the records in b[0..n) (a segment body). */
static void fix_checksums(uint8_t *b, size_t n)
{
    size_t off = 0;
    while (n - off >= KD__REC_HEADER_LEN) {
        uint32_t len = rd32(b + off);
        if (len <= n - off - KD__REC_HEADER_LEN)
            wr32(b + off + 8, kd__crc32c(b + off + KD__REC_HEADER_LEN, len));
        wr32(b + off + 12, kd__crc32c(b + off, 12));
        if (len > n - off - KD__REC_HEADER_LEN)
            break;
        off += KD__REC_HEADER_LEN + len;
    }
}

static char tmp_path[64];

static void remove_tmp(void)
{
    if (tmp_path[0])
        unlink(tmp_path);
}

static int write_file(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    if (!tmp_path[0]) {
        snprintf(tmp_path, sizeof tmp_path, "/tmp/kd_fuzz_record.%ld", (long)getpid());
        atexit(remove_tmp);
    }
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = (alen == 0 || write(fd, a, alen) == (ssize_t)alen) && (blen == 0 || write(fd, b, blen) == (ssize_t)blen);
    close(fd);
    return ok ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* (a) the input as a TXN payload */
    decode_txn(data, size);

    /* (b) the input as a record: header, then its payload */
    if (size >= KD__REC_HEADER_LEN) {
        uint8_t type;
        uint32_t len, pcrc;
        if (kd__rec_header_decode(data, &type, &len, &pcrc) == 0) {
            size_t have = size - KD__REC_HEADER_LEN;
            decode_txn(data + KD__REC_HEADER_LEN, len < have ? len : have);
        }
    }

    /* (c) the input as a segment file */
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    int rc;
    if (mode & 1) {
        rc = write_file(data, size, NULL, 0);
    } else {
        uint8_t hdr[KD__SEG_HEADER_LEN];
        kd__seg_header_encode(hdr, 1, KD__FORMAT_PLAIN, 0);
        uint8_t *body = NULL;
        size_t blen = size - 1;
        if (blen) {
            body = malloc(blen);
            if (!body)
                return 0;
            memcpy(body, data + 1, blen);
            if (mode & 4)
                fix_checksums(body, blen);
        }
        rc = write_file(hdr, sizeof hdr, body, blen);
        free(body);
    }
    if (rc == 0) {
        uint64_t end = 0, fsize = 0;
        char err[512];
        int newest = (mode >> 1) & 1;
        /* Bit 3: read only the first 3/4 of the file, as kd_verify does
         * with the length it knows. */
        uint64_t file_len = (mode & 1) ? size : KD__SEG_HEADER_LEN + size - 1;
        uint64_t limit = (mode & 8) ? file_len * 3 / 4 + 1 : 0;
        rc = kd__segment_walk(tmp_path, 1, limit, newest, walk_record, NULL, NULL, &end, &fsize, err, sizeof err);
        if (limit && fsize > limit)
            abort();
        if (rc == KD_OK && (end > fsize || end < KD__SEG_HEADER_LEN))
            abort(); /* a good walk ends inside the file, after the header */
        if (rc != KD_OK && rc != KD_ECORRUPT && rc != KD_EFORMAT && rc != KD_EIO)
            abort();
        if (rc != KD_OK && !err[0])
            abort(); /* every failure says why */
    }
    return 0;
}
