/*
 * gen_record_corpus.c — writes the seed corpus of fuzz_record from a real
 * database. Not built by CMake (no fuzz_ prefix); the corpus it produced is
 * committed under tests/fuzz/corpus/fuzz_record/. To regenerate:
 *
 *   cc -std=gnu11 -D_GNU_SOURCE -Iinclude -Isrc tests/fuzz/gen_record_corpus.c \
 *      <library objects or build/libkorudelta.a> -lcrypto -lpthread -o /tmp/gen
 *   /tmp/gen tests/fuzz/corpus/fuzz_record
 *
 * The values used are already canonical JSON, so the bytes do not depend on
 * the JSON writer. Timestamps and the node id differ on every run, so the
 * files differ too; any run gives an equally good corpus.
 *
 * Input layout of fuzz_record (see fuzz_record.c): byte 0 odd = the whole
 * input is a segment file; even = byte 0 is a mode (bit 2 fix checksums)
 * and the rest is a segment body after a valid header; in both, bit 1 =
 * newest (torn-tail rule) and bit 3 = read only 3/4 of the file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "korudelta.h"
#include "store/format.h"
#include "util/crc32c.h"

static const char *out_dir;

static void put_file(const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", out_dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) || fclose(f)) {
        perror(p);
        exit(1);
    }
}

static void must(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "%s: %s\n", what, kd_errname(rc));
        exit(1);
    }
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    char dir[] = "/tmp/kd_gen_corpus_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char db_dir[64];
    snprintf(db_dir, sizeof db_dir, "%s/db", dir);
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_db *db;
    char err[256];
    must(kd_open(db_dir, o, &db, err, sizeof err), "kd_open");
    kd_options_free(o);

    /* A first version, an update, a repeated value, a delete, a batch with a
     * key written twice and a shared value, odd names. */
    must(kd_put(db, "users", "alice", "{\"age\":30,\"name\":\"Alice\"}", 25, NULL), "put");
    must(kd_put(db, "users", "alice", "{\"age\":31,\"name\":\"Alice\"}", 25, NULL), "put");
    must(kd_put(db, "users", "bob", "{\"age\":30,\"name\":\"Alice\"}", 25, NULL), "put");
    must(kd_delete(db, "users", "bob", NULL), "delete");
    must(kd_put(db, "users", "bob", "null", 4, NULL), "put");
    kd_write w[] = {
        {"cfg", "a/b c:\xf0\x9f\x98\x80", "[1,2.5,\"x\"]", 11, NULL},
        {"cfg", "n", "505874924095815681", 18, NULL},
        {"cfg", "n", "\"\\u0000\"", 8, NULL},
        {"cfg", "m", "[1,2.5,\"x\"]", 11, NULL},
    };
    must(kd_put_batch(db, w, 4, NULL), "batch");
    must(kd_put(db, "big", "v", "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"", 74, NULL),
         "put");
    must(kd_close(db), "kd_close");

    char seg[128];
    snprintf(seg, sizeof seg, "%s/log-00000001.kdl", db_dir);
    FILE *f = fopen(seg, "rb");
    if (!f)
        return 1;
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (n <= 32 || n == sizeof buf)
        return 1;
    const uint8_t *body = buf + 32;
    size_t blen = n - 32;

    uint8_t mode;
    put_file("segment-raw", buf, n, NULL, 0); /* 'K' is odd: used as is */
    mode = 0;
    put_file("body-closed", &mode, 1, body, blen);
    mode = 2;
    put_file("body-newest", &mode, 1, body, blen);
    mode = 6;
    put_file("body-newest-fixcrc", &mode, 1, body, blen);
    mode = 4;
    put_file("body-closed-fixcrc", &mode, 1, body, blen);
    mode = 8;
    put_file("body-closed-limit", &mode, 1, body, blen);
    mode = 10;
    put_file("body-newest-limit", &mode, 1, body, blen);

    /* Each record alone (header + payload), and its payload alone. */
    size_t off = 0, last_off = 0;
    int i = 0;
    while (off + 16 <= blen) {
        uint32_t len = rd32(body + off);
        if (len > blen - off - 16)
            break;
        char name[64];
        snprintf(name, sizeof name, "record-%d", i);
        put_file(name, body + off, 16 + len, NULL, 0);
        snprintf(name, sizeof name, "txn-%d", i);
        put_file(name, body + off + 16, len, NULL, 0);
        last_off = off;
        off += 16 + len;
        i++;
    }
    /* Torn tails: cut inside the last record's header and payload; a
     * zero-filled reserve after the log. */
    mode = 2;
    put_file("torn-header", &mode, 1, body, last_off + 7);
    put_file("torn-payload", &mode, 1, body, blen - 5);
    {
        static uint8_t tmp[(1 << 16) + 4096];
        memcpy(tmp, body, blen);
        memset(tmp + blen, 0, 4096);
        put_file("zero-reserve", &mode, 1, tmp, blen + 4096);
        /* A record whose payload is cut and followed by zeros (a crash
         * during a mapped append). */
        memset(tmp + blen - 20, 0, 20);
        put_file("torn-mapped", &mode, 1, tmp, blen + 4096);
    }
    /* Whole files with a header that checks but must be refused: a newer
     * format version, and the wrong segment number. */
    {
        static uint8_t tmp[1 << 16];
        memcpy(tmp, buf, n);
        tmp[8] = 2; /* format version 2 */
        uint32_t crc = kd__crc32c(tmp, 28);
        for (int k = 0; k < 4; k++)
            tmp[28 + k] = (uint8_t)(crc >> (8 * k));
        put_file("newer-format", tmp, n, NULL, 0);
        kd__seg_header_encode(tmp, 2, KD__FORMAT_PLAIN, 0);
        put_file("wrong-segment-number", tmp, n, NULL, 0);
    }
    /* A record of an unknown type with good checksums (fix mode). */
    {
        static uint8_t tmp[1 << 16];
        tmp[0] = 6;
        memcpy(tmp + 1, body, blen);
        tmp[1 + 4] = 9;
        put_file("unknown-type-fixcrc", tmp, blen + 1, NULL, 0);
    }
    fprintf(stderr, "%d records, %zu bytes of segment\n", i, n);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
