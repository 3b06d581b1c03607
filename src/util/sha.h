/*
 * sha.h — SHA-256 for content addresses, write ids and causal roots.
 *
 * A thin layer over OpenSSL's SHA-256 (SHA-NI accelerated where the CPU has
 * it). Domain separation is the caller's job: every hash the database
 * defines starts with its own tag (see docs/FORMAT.md).
 */
#ifndef KD_UTIL_SHA_H
#define KD_UTIL_SHA_H

#include <stddef.h>
#include <stdint.h>

#define KD__HASH_LEN 32

typedef struct kd__sha {
    /* Big enough for OpenSSL's SHA256_CTX (112 bytes); checked in sha.c. */
    uint64_t opaque[16];
} kd__sha;

void kd__sha_init(kd__sha *s);
void kd__sha_update(kd__sha *s, const void *p, size_t n);
void kd__sha_final(kd__sha *s, uint8_t out[KD__HASH_LEN]);
void kd__sha256(const void *p, size_t n, uint8_t out[KD__HASH_LEN]);

/* Hex: out must hold 2*n+1 bytes; writes a NUL. */
void kd__hex_encode(const uint8_t *in, size_t n, char *out);
/* Parse exactly 2*n lowercase or uppercase hex digits; -1 on bad input. */
int kd__hex_decode(const char *in, size_t n, uint8_t *out);

#endif
