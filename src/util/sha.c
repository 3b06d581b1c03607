/*
 * sha.c — SHA-256 and hex helpers; see sha.h.
 *
 * Uses OpenSSL's low-level SHA256_* functions: they are deprecated in
 * OpenSSL 3 in favour of EVP, but they use the same accelerated code without
 * EVP's per-call dispatch, which matters when every put hashes three times.
 */
#define OPENSSL_API_COMPAT 0x10100000L
#include "sha.h"

#include <assert.h>
#include <emmintrin.h>
#include <pthread.h>
#include <string.h>
#include <openssl/sha.h>

static_assert(sizeof(SHA256_CTX) <= sizeof(kd__sha), "kd__sha too small for SHA256_CTX");

void kd__sha_init(kd__sha *s)
{
    SHA256_Init((SHA256_CTX *)s);
}

void kd__sha_update(kd__sha *s, const void *p, size_t n)
{
    SHA256_Update((SHA256_CTX *)s, p, n);
}

void kd__sha_final(kd__sha *s, uint8_t out[KD__HASH_LEN])
{
    SHA256_Final(out, (SHA256_CTX *)s);
}

void kd__sha256(const void *p, size_t n, uint8_t out[KD__HASH_LEN])
{
    /* Not SHA256(): in OpenSSL 3 it fetches the algorithm on every call,
     * which costs more than hashing a small value. */
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, p, n);
    SHA256_Final(out, &c);
}

/* Two hex digits per byte from one table lookup: ids are encoded for every
 * version a history call returns, so this is on a hot path. */
static char hexpairs[256][2];
static pthread_once_t hex_once = PTHREAD_ONCE_INIT;

static void hex_init(void)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 256; i++) {
        hexpairs[i][0] = digits[i >> 4];
        hexpairs[i][1] = digits[i & 15];
    }
}

/* 16 bytes to 32 hex digits with SSE2: split nibbles, map 0-9 to '0'-'9'
 * and 10-15 to 'a'-'f', interleave high and low. */
static inline void hex16(const uint8_t *in, char *out)
{
    const __m128i mask = _mm_set1_epi8(0x0f), nine = _mm_set1_epi8(9);
    const __m128i zero = _mm_set1_epi8('0'), gap = _mm_set1_epi8('a' - '0' - 10);
    __m128i x = _mm_loadu_si128((const __m128i *)in);
    __m128i lo = _mm_and_si128(x, mask);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), mask);
    lo = _mm_add_epi8(_mm_add_epi8(lo, zero), _mm_and_si128(_mm_cmpgt_epi8(lo, nine), gap));
    hi = _mm_add_epi8(_mm_add_epi8(hi, zero), _mm_and_si128(_mm_cmpgt_epi8(hi, nine), gap));
    _mm_storeu_si128((__m128i *)out, _mm_unpacklo_epi8(hi, lo));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_unpackhi_epi8(hi, lo));
}

void kd__hex_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        hex16(in + i, out + 2 * i);
    if (i < n) {
        pthread_once(&hex_once, hex_init);
        for (; i < n; i++)
            memcpy(out + 2 * i, hexpairs[in[i]], 2);
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int kd__hex_decode(const char *in, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(in[2 * i]);
        if (hi < 0)
            return -1;
        int lo = hexval(in[2 * i + 1]);
        if (lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
