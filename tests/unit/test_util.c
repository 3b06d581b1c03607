/*
 * test_util.c — the small utilities everything rests on: SHA-256 and hex
 * (checked against published test vectors), CRC-32C (both the hardware and
 * the table path must give the standard check value), the growable buffer,
 * and the index's string hash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "korudelta.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/sha.h"
#include "store/index.h"

static void test_sha256_vectors(void)
{
    uint8_t h[32];
    char hex[65];
    kd__sha256("abc", 3, h);
    kd__hex_encode(h, 32, hex);
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    kd__sha256("", 0, h);
    kd__hex_encode(h, 32, hex);
    CHECK_EQ_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* incremental == one shot */
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    kd__sha s;
    kd__sha_init(&s);
    kd__sha_update(&s, msg, 10);
    kd__sha_update(&s, msg + 10, strlen(msg) - 10);
    kd__sha_final(&s, h);
    kd__hex_encode(h, 32, hex);
    CHECK_EQ_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_hex(void)
{
    uint8_t in[40], back[40];
    for (int i = 0; i < 40; i++)
        in[i] = (uint8_t)(i * 37 + 11);
    char hex[81];
    /* every length, so both the 16-byte and the byte-wise paths run */
    for (size_t n = 0; n <= 40; n++) {
        kd__hex_encode(in, n, hex);
        CHECK_EQ_INT(strlen(hex), 2 * n);
        for (size_t i = 0; i < n; i++) {
            char want[3];
            snprintf(want, sizeof want, "%02x", in[i]);
            CHECK(hex[2 * i] == want[0] && hex[2 * i + 1] == want[1]);
        }
        CHECK_EQ_INT(kd__hex_decode(hex, n, back), 0);
        CHECK(memcmp(in, back, n) == 0);
    }
    CHECK_EQ_INT(kd__hex_decode("zz", 1, back), -1);
    CHECK_EQ_INT(kd__hex_decode("AB", 1, back), 0);
    CHECK_EQ_INT(back[0], 0xab);
}

static void test_crc32c(void)
{
    CHECK_EQ_INT(kd__crc32c("123456789", 9), 0xE3069283u);
    CHECK_EQ_INT(kd__crc32c("", 0), 0);
    /* unaligned starts and odd lengths agree with a byte-wise reference */
    uint8_t buf[300];
    for (int i = 0; i < 300; i++)
        buf[i] = (uint8_t)(i * 7);
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; n < 100; n += 7) {
            uint32_t ref = ~0u;
            for (size_t i = 0; i < n; i++) {
                ref ^= buf[off + i];
                for (int k = 0; k < 8; k++)
                    ref = (ref >> 1) ^ (0x82F63B78u & (0u - (ref & 1)));
            }
            CHECK_EQ_INT(kd__crc32c(buf + off, n), ~ref);
        }
}

static void test_buf(void)
{
    kd__buf b = KD__BUF_INIT;
    CHECK_RC(kd__buf_puts(&b, "abc"), KD_OK);
    CHECK_RC(kd__buf_putc(&b, 'd'), KD_OK);
    CHECK_RC(kd__buf_printf(&b, "%d-%s", 42, "x"), KD_OK);
    CHECK_EQ_STR(b.data, "abcd42-x");
    for (int i = 0; i < 10000; i++)
        CHECK_RC(kd__buf_putc(&b, 'z'), KD_OK);
    CHECK_EQ_INT(b.len, 8 + 10000);
    CHECK_EQ_INT(b.data[b.len], '\0');
    size_t len;
    char *p = kd__buf_steal(&b, &len);
    CHECK(p != NULL);
    CHECK_EQ_INT(len, 10008);
    CHECK(b.data == NULL && b.len == 0);
    free(p);
    CHECK_RC(kd__buf_reserve(&b, SIZE_MAX - 4), KD_ENOMEM);
    kd__buf_free(&b);
}

/* kd__grow: doubling from `first`, untouched while there is room, and a
 * size that cannot be counted refused with the array left as it was. */
static void test_grow(void)
{
    size_t cap = 0, n = 0;
    int *a = NULL;
    for (int i = 0; i < 100; i++) {
        int *g = kd__grow(a, &cap, n, sizeof *g, 4);
        CHECK(g != NULL);
        a = g;
        a[n++] = i;
    }
    CHECK_EQ_INT(cap, 128); /* 4, 8, …, 128 */
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(a[i], i);
    CHECK(kd__grow(a, &cap, 50, sizeof *a, 4) == a); /* room left: the same array */
    size_t huge = SIZE_MAX / 2 + 1;
    CHECK(kd__grow(a, &huge, huge, 8, 4) == NULL);
    CHECK(huge == SIZE_MAX / 2 + 1);
    free(a);
}

/* The index's string hash, as it is defined: 8-byte little-endian words,
 * then the last n % 8 bytes as one word, zero above them. (The index reads
 * whole words in the machine's order; every supported machine is
 * little-endian, and the hash is never stored.) A reference written out
 * here on purpose, mixing function included: it is what the index's code
 * is checked against, so it must not be that code. */
static uint64_t ref_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t ref_word(const uint8_t *s, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)s[i] << (8 * i);
    return w;
}

static uint64_t ref_hash(const uint8_t *s, size_t n, uint64_t seed)
{
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL);
    for (; n >= 8; s += 8, n -= 8)
        h = (h ^ ref_mix(ref_word(s, 8))) * 0x9e3779b97f4a7c15ULL;
    h = (h ^ ref_mix(ref_word(s, n) ^ n)) * 0x9e3779b97f4a7c15ULL;
    return ref_mix(h);
}

/* kd__tail_word reads a short tail with overlapping loads: for every length
 * and byte pattern it must give the bytes' little-endian word, and read
 * nothing past them (each tail is its own exact-size allocation, so
 * AddressSanitizer sees any read past it). */
static void test_tail_word(void)
{
    static const uint8_t fills[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
    for (size_t n = 0; n < 8; n++) {
        for (size_t f = 0; f < sizeof fills; f++) {
            for (size_t vary = 0; vary <= n; vary++) { /* one byte differs (none when vary == n) */
                uint8_t *s = malloc(n ? n : 1);
                CHECK(s != NULL);
                memset(s, fills[f], n);
                if (vary < n)
                    s[vary] ^= 0x5a;
                CHECK(kd__tail_word(s, n) == ref_word(s, n));
                free(s);
            }
        }
    }
}

/* kd__hash_bytes reads a short tail with overlapping loads: every length
 * and alignment must give the defined value, each byte must count, and no
 * byte past the string may be read (each string is its own exact-size
 * allocation, so AddressSanitizer sees any read past it). */
static void test_hash_bytes(void)
{
    for (size_t n = 0; n <= 40; n++) {
        for (size_t off = 0; off < 8; off++) {
            uint8_t *block = malloc(off + n + 1);
            CHECK(block != NULL);
            uint8_t *s = block + off;
            for (size_t i = 0; i < n; i++)
                s[i] = (uint8_t)(0x9d * (i + 1) + 7 * off);
            uint8_t *exact = malloc(n ? n : 1);
            CHECK(exact != NULL);
            memcpy(exact, s, n);
            uint64_t h = kd__hash_bytes(exact, n, 0x6b64);
            CHECK(h == ref_hash(s, n, 0x6b64));
            CHECK(kd__hash_bytes(s, n, 0x6b64) == h);
            CHECK(kd__hash_bytes(exact, n, 1) != h);
            for (size_t i = 0; i < n; i++) {
                exact[i] ^= 0x20;
                CHECK(kd__hash_bytes(exact, n, 0x6b64) != h);
                exact[i] ^= 0x20;
            }
            free(exact);
            free(block);
        }
    }
}

static void test_errors_table(void)
{
    CHECK_EQ_STR(kd_errname(KD_OK), "KD_OK");
    CHECK_EQ_STR(kd_errname(KD_ENOTFOUND), "KD_ENOTFOUND");
    CHECK_EQ_STR(kd_errname(KD_ERESERVED), "KD_ERESERVED");
    CHECK_EQ_STR(kd_strerror(KD_EBUSY), "database is locked by another process");
    CHECK_EQ_STR(kd_errname(-999), "KD_EUNKNOWN");
    CHECK_EQ_STR(kd_libversion(), KD_VERSION_STRING);
    CHECK_EQ_INT(kd_libversion_number(), KD_VERSION_NUMBER);
    CHECK_EQ_STR(kd_errmsg(NULL), "");
    kd_close(NULL);
    kd_free(NULL);
    kd_options_free(NULL);
}

int main(void)
{
    RUN(test_sha256_vectors);
    RUN(test_hex);
    RUN(test_crc32c);
    RUN(test_buf);
    RUN(test_grow);
    RUN(test_tail_word);
    RUN(test_hash_bytes);
    RUN(test_errors_table);
    return HARNESS_DONE();
}
