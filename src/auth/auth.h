/*
 * auth.h — what the auth subsystem's files share (private).
 *
 * identity.c holds key pairs, proof of work, signatures and tokens;
 * grant.c holds capabilities (signing, verifying, matching) and the
 * writes to the reserved namespace _kd.auth. Both read JSON through the
 * canonical form and the small tree of src/json/dom.h.
 */
#ifndef KD_AUTH_AUTH_H
#define KD_AUTH_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "korudelta.h"
#include "../json/dom.h"

/* Copy a message into errbuf (may be NULL) and return rc. */
int kd__auth_fail(char *errbuf, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Parse JSON text of at most max bytes into a tree of its canonical form;
 * KD_EINVALID (message) or KD_ENOMEM. `what` names the input in messages. */
int kd__auth_parse(const char *text, size_t len, size_t max, const char *what, kd__jnode **out, char *errbuf,
                   size_t errlen);
/* Member name of object obj, or NULL. */
const kd__jnode *kd__auth_member(const kd__jnode *obj, const char *name);
/* 1 if s[0..len) is exactly len lower-case hex digits. */
int kd__auth_is_hex(const char *s, size_t len);
/* Verify an Ed25519 signature (raw bytes): 1 valid, 0 not. */
int kd__auth_verify_raw(const uint8_t pub[32], const void *msg, size_t len, const uint8_t sig[64]);
/* A public key no secret belongs to (small order, or y not canonical):
 * every signature check with it fails, and identities with it are refused. */
int kd__auth_key_is_weak(const uint8_t pub[32]);

#endif
