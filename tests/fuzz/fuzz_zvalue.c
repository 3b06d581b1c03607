/*
 * fuzz_zvalue.c — libFuzzer target for what consolidation reads back
 * (src/store/zvalue.c): dictionary files (zdict-NNNNNNNN, untrusted bytes
 * on disk) and stored zstd frames of values.
 *
 * First byte even: the rest is a stored frame, decoded without a
 * dictionary and with a dictionary that is missing; either it decodes to at
 * most the limit or it is refused with a reason. First byte odd: the rest is
 * a dictionary file; reading it either refuses it or gives bytes with which
 * compressing and decoding a value gives that value back. Both: compressing
 * the input and decoding it gives the input back.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "korudelta.h"
#include "store/zvalue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT (1u << 20)

static char dir[64];

static void remove_dir(void)
{
    rmdir(dir);
}

static void round_trip(const void *dict, size_t dict_len, uint32_t no, const uint8_t *v, size_t n)
{
    kd__zenc *e = kd__zenc_new(dict, dict_len, no, 3);
    if (!e)
        return; /* zstd refused the dictionary */
    kd__buf z = KD__BUF_INIT, out = KD__BUF_INIT;
    int c = kd__zenc_value(e, v, n, &z);
    if (c == 1) {
        kd__zdicts *zd = kd__zdicts_new(dir);
        char why[300];
        if (!zd || kd__zvalue_decode(zd, no, z.data, z.len, LIMIT, &out, why, sizeof why) != KD_OK ||
            out.len != n || (n && memcmp(out.data, v, n)))
            abort();
        kd__zdicts_free(zd);
    }
    kd__buf_free(&z);
    kd__buf_free(&out);
    kd__zenc_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/kd-fuzz-zvalue-%d", (int)getpid());
        if (mkdir(dir, 0700) != 0)
            return 0;
        atexit(remove_dir);
    }
    if (size < 1)
        return 0;
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    char why[300];
    if (data[0] & 1) {
        char p[128];
        snprintf(p, sizeof p, "%s/zdict-00000001", dir);
        FILE *f = fopen(p, "wb");
        if (!f)
            return 0;
        fwrite(rest, 1, n, f);
        fclose(f);
        kd__buf d = KD__BUF_INIT;
        int rc = kd__zdict_read(dir, 1, &d, why, sizeof why);
        if (rc == KD_OK) {
            if (d.len == 0 || d.len > KD__ZDICT_MAX)
                abort();
            static const char sample[] = "{\"id\":17,\"name\":\"a sample value\",\"tags\":[\"x\",\"y\"]}";
            round_trip(d.data, d.len, 1, (const uint8_t *)sample, sizeof sample - 1);
        } else if (!why[0]) {
            abort(); /* a refusal says why */
        }
        kd__buf_free(&d);
        unlink(p);
        return 0;
    }
    kd__zdicts *zd = kd__zdicts_new(dir);
    if (!zd)
        return 0;
    kd__buf out = KD__BUF_INIT;
    why[0] = '\0';
    int rc = kd__zvalue_decode(zd, 0, rest, n, LIMIT, &out, why, sizeof why);
    if ((rc == KD_OK && out.len > LIMIT) || (rc != KD_OK && rc != KD_ENOMEM && !why[0]))
        abort();
    why[0] = '\0';
    rc = kd__zvalue_decode(zd, 7, rest, n, LIMIT, &out, why, sizeof why); /* zdict-00000007 is missing */
    if (rc == KD_OK || (rc != KD_ENOMEM && !why[0]))
        abort();
    kd__buf_free(&out);
    kd__zdicts_free(zd);
    round_trip(NULL, 0, 0, rest, n);
    return 0;
}
