/*
 * fuzz_checkpoint.c — libFuzzer target for loading an index checkpoint
 * (src/checkpoint.c: the index.ckpt file kd_open reads before the log).
 *
 * A small database is made once, in a temporary directory; each input
 * becomes its index.ckpt and the database is opened. The header and body
 * carry CRC-32C checksums and the header must name a record the log has,
 * so the first byte chooses:
 *   0  the rest is the whole file, as it is;
 *   1  the rest is u32 namespaces, u32 keys, u32 versions, u32 values and
 *      then the body: the harness frames it with a header naming the real
 *      last record and roots, with valid checksums, so that the parsing of
 *      the body is what gets fuzzed.
 * Opening must succeed either way (a checkpoint that does not hold is
 * ignored and the log replayed), every key and version it then holds must
 * read without crashing or reading out of bounds (ASan), and kd_verify
 * must pass or name the in-memory index as differing from the log.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_int.h"
#include "korudelta.h"
#include "util/crc32c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static uint64_t last_seg, last_off, last_end;
static int64_t last_ts;
static uint8_t roots[4][32]; /* storage, views, vectors, auth */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_checkpoint: %s\n", what);
    abort();
}

static kd_db *open_db(void)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_options_set_upkeep_interval(o, 0);
    kd_options_set_checkpoint_bytes(o, 0); /* close never writes one */
    kd_options_set_log(o, NULL, NULL, KD_LOG_ERROR);
    kd_db *db = NULL;
    char err[512];
    int rc = kd_open(dir, o, &db, err, sizeof err);
    kd_options_free(o);
    if (rc != KD_OK) {
        fprintf(stderr, "fuzz_checkpoint: open: %s\n", err);
        abort();
    }
    return db;
}

/* The same small history every run, so seeds stay meaningful. */
static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/kd_fuzz_ckpt_XXXXXX");
    if (!mkdtemp(dir))
        die("mkdtemp");
    kd_db *db = open_db();
    const char *ns[] = {"users", "items"};
    for (int i = 0; i < 40; i++) {
        char key[16], val[64];
        snprintf(key, sizeof key, "k%d", i % 7);
        int n = snprintf(val, sizeof val, "{\"i\":%d}", i % 13);
        if (kd_put(db, ns[i % 2], key, val, (size_t)n, NULL) != KD_OK)
            die("put");
        if (i % 9 == 0 && kd_delete(db, ns[i % 2], key, NULL) != KD_OK)
            die("delete");
    }
    last_seg = db->last_rec_seg;
    last_off = db->last_rec_off;
    last_end = db->last_rec_end;
    last_ts = db->last_ts;
    memcpy(roots[0], db->root, 32);
    memcpy(roots[1], db->views_root, 32);
    memcpy(roots[2], db->vectors_root, 32);
    memcpy(roots[3], db->auth_root, 32);
    kd_close(db);
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void write_file(const uint8_t *p, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "%s/index.ckpt", dir);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
        die("cannot write the checkpoint");
}

/* Header (docs/FORMAT.md "Index checkpoint") around a fuzzed body. */
static void write_framed(const uint8_t *in, size_t n)
{
    if (n < 16)
        return write_file(in, n);
    enum { HEADER = 96 + 4 * 32 + 4 };
    size_t body = n - 16;
    uint8_t *f = malloc(HEADER + body);
    if (!f)
        die("out of memory");
    memset(f, 0, HEADER);
    memcpy(f, "KDCKPT\0\n", 8);
    uint32_t version = 2, nroots = 4;
    memcpy(f + 8, &version, 4);
    memcpy(f + 12, &nroots, 4);
    put64(f + 16, last_seg);
    put64(f + 24, last_off);
    put64(f + 32, last_end);
    put64(f + 40, (uint64_t)last_ts);
    put64(f + 48, get32(in));
    put64(f + 56, get32(in + 4));
    put64(f + 64, get32(in + 8));
    put64(f + 72, get32(in + 12));
    put64(f + 80, body);
    memcpy(f + HEADER, in + 16, body);
    uint32_t crc = kd__crc32c(f + HEADER, body);
    memcpy(f + 88, &crc, 4);
    memcpy(f + 96, roots, sizeof roots);
    crc = kd__crc32c(f, HEADER - 4);
    memcpy(f + HEADER - 4, &crc, 4);
    write_file(f, HEADER + body);
    free(f);
}

/* Read every version of every key the index holds. */
static void read_all(kd_db *db)
{
    char **names;
    size_t nn;
    if (kd_list_namespaces(db, &names, &nn) != KD_OK)
        return;
    for (size_t i = 0; i < nn; i++) {
        char **keys;
        size_t nk;
        if (kd_list_keys(db, names[i], NULL, NULL, 0, &keys, &nk) != KD_OK)
            continue;
        for (size_t j = 0; j < nk; j++) {
            kd_version *h;
            size_t nh;
            if (kd_history(db, names[i], keys[j], KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &nh) != KD_OK)
                continue;
            for (size_t v = 0; v < nh; v++) {
                char *json = NULL;
                size_t len;
                if (kd_get_at(db, names[i], keys[j], h[v].timestamp, &json, &len, NULL) == KD_OK)
                    kd_free(json);
            }
            kd_free(h);
        }
        kd_free_list(keys, nk);
    }
    kd_free_list(names, nn);
    /* The log is intact: verify passes, except that it must name an index
     * loaded from a checkpoint that says something else than the log. */
    kd_verify_report r;
    kd_verify(db, &r);
    if (r.problem[0] && (!db->ckpt_seg || !strstr(r.problem, "in-memory index")))
        die("verify failed on an intact log");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0])
        setup();
    if (size == 0)
        return 0;
    if (data[0] == 1)
        write_framed(data + 1, size - 1);
    else
        write_file(data + 1, size - 1);
    kd_db *db = open_db();
    read_all(db);
    kd_close(db);
    return 0;
}
