/*
 * identity.c — self-sovereign identities: Ed25519 key pairs (OpenSSL EVP)
 * with a proof of work, key files, login signatures and session tokens.
 *
 * The proof of work is over the identity's public document in canonical
 * JSON ({"created_at","nonce","public_key","user_data"}), so anyone can
 * recompute it from what is registered; a server never takes a client's
 * word for the difficulty. Secrets live only in kd_identity (wiped on
 * free) and in the key file text the caller asks for.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth.h"
#include "../util/buf.h"
#include "../util/sha.h"

#define KEYFILE_FORMAT "korudelta-identity-v1"
#define MAX_USER_DATA 4096
#define MAX_NONCE 9007199254740992ull /* 2^53: exact in every JSON reader */

struct kd_identity {
    uint8_t seed[32];
    uint8_t pub[32];
    char pub_hex[KD_AUTH_KEY_HEX];
    char created_at[40];
    uint64_t nonce;
    unsigned difficulty; /* leading zero bits of the document's hash */
    char *user_data;     /* canonical JSON object */
    EVP_PKEY *pkey;
};

/* ------------------------------------------------------------------------
 * Shared helpers (auth.h)
 * ---------------------------------------------------------------------- */

int kd__auth_fail(char *errbuf, size_t errlen, int rc, const char *fmt, ...)
{
    if (errbuf && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int kd__auth_parse(const char *text, size_t len, size_t max, const char *what, kd__jnode **out, char *errbuf,
                   size_t errlen)
{
    *out = NULL;
    if (!text)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "%s: missing", what);
    if (len > max)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "%s: larger than %zu bytes", what, max);
    char err[200] = "", *canon = NULL;
    size_t clen = 0;
    int rc = kd_json_canonical(text, len, &canon, &clen, err, sizeof err);
    if (rc == KD_ENOMEM)
        return kd__auth_fail(errbuf, errlen, rc, "out of memory");
    if (rc)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "%s: invalid JSON: %s", what, err);
    rc = kd__jdom_parse(canon, clen, out);
    kd_free(canon);
    if (rc == KD_ENOMEM)
        return kd__auth_fail(errbuf, errlen, rc, "out of memory");
    if (rc)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "%s: invalid JSON", what);
    if ((*out)->type != KD__J_OBJECT) {
        kd__jdom_free(*out);
        *out = NULL;
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "%s: expected a JSON object", what);
    }
    return KD_OK;
}

const kd__jnode *kd__auth_member(const kd__jnode *obj, const char *name)
{
    size_t pos;
    size_t i = kd__jdom_find(obj, name, strlen(name), &pos);
    return i == (size_t)-1 ? NULL : obj->u.members[i].value;
}

int kd__auth_is_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Is pub a key nobody holds a secret for: a point of small order (its y
 * is that of one of the eight points P with 8P = 0, whatever the sign
 * bit) or an encoding of y >= p? A "signature" by such a key can be made
 * without any secret, and OpenSSL's verify accepts some. The y values
 * were computed from the curve equation (a point of full order times the
 * group order lands in the 8-torsion). */
int kd__auth_key_is_weak(const uint8_t pub[32])
{
    static const uint8_t small_y[5][32] = {
        {0}, /* order 4: y = 0 */
        {1}, /* order 1: the neutral point */
        {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, /* order 2 */
        {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
         0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05}, /* order 8 */
        {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
         0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a}, /* order 8 */
    };
    uint8_t y[32];
    memcpy(y, pub, 32);
    y[31] &= 0x7f; /* the sign of x */
    for (size_t i = 0; i < 5; i++)
        if (!memcmp(y, small_y[i], 32))
            return 1;
    /* y >= p = 2^255 - 19: 7f ff .. ff (little-endian) with a low byte >= ed */
    if (y[31] != 0x7f || y[0] < 0xed)
        return 0;
    for (size_t i = 1; i < 31; i++)
        if (y[i] != 0xff)
            return 0;
    return 1;
}

int kd__auth_verify_raw(const uint8_t pub[32], const void *msg, size_t len, const uint8_t sig[64])
{
    if (kd__auth_key_is_weak(pub))
        return 0;
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    if (!pk)
        return 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(ctx, sig, 64, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return ok;
}

/* A string member that is exactly n lower-case hex digits, decoded. */
static int hex_member(const kd__jnode *obj, const char *name, size_t n, uint8_t *out, char *errbuf, size_t errlen)
{
    const kd__jnode *v = kd__auth_member(obj, name);
    if (!v || v->type != KD__J_STRING || v->len != 2 * n || !kd__auth_is_hex(v->u.text, v->len) ||
        kd__hex_decode(v->u.text, n, out) != 0)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "\"%s\" must be %zu lower-case hex digits", name, 2 * n);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Proof of work
 * ---------------------------------------------------------------------- */

static unsigned leading_zero_bits(const uint8_t h[KD__HASH_LEN])
{
    unsigned bits = 0;
    for (int i = 0; i < KD__HASH_LEN; i++) {
        if (h[i] == 0) {
            bits += 8;
            continue;
        }
        for (int b = 7; b >= 0 && !(h[i] >> b & 1); b--)
            bits++;
        break;
    }
    return bits;
}

/* The public document, canonical: members in byte order. */
static int document(const kd_identity *id, kd__buf *b)
{
    return kd__buf_printf(b, "{\"created_at\":\"%s\",\"nonce\":%llu,\"public_key\":\"%s\",\"user_data\":%s}",
                          id->created_at, (unsigned long long)id->nonce, id->pub_hex, id->user_data);
}

/* Try nonces from 0 until the document's hash has `difficulty` zero bits:
 * the part before the nonce is hashed once. */
static int mine(kd_identity *id, unsigned difficulty)
{
    char head[128], tail[256 + MAX_USER_DATA];
    int hl = snprintf(head, sizeof head, "{\"created_at\":\"%s\",\"nonce\":", id->created_at);
    int tl = snprintf(tail, sizeof tail, ",\"public_key\":\"%s\",\"user_data\":%s}", id->pub_hex, id->user_data);
    if (hl < 0 || (size_t)hl >= sizeof head || tl < 0 || (size_t)tl >= sizeof tail)
        return KD_EINVALID;
    kd__sha base;
    kd__sha_init(&base);
    kd__sha_update(&base, head, (size_t)hl);
    for (uint64_t nonce = 0; nonce <= MAX_NONCE; nonce++) {
        char digits[24];
        int dl = snprintf(digits, sizeof digits, "%llu", (unsigned long long)nonce);
        kd__sha s = base;
        uint8_t h[KD__HASH_LEN];
        kd__sha_update(&s, digits, (size_t)dl);
        kd__sha_update(&s, tail, (size_t)tl);
        kd__sha_final(&s, h);
        unsigned bits = leading_zero_bits(h);
        if (bits >= difficulty) {
            id->nonce = nonce;
            id->difficulty = bits;
            return KD_OK;
        }
    }
    return KD_EINVALID;
}

/* ------------------------------------------------------------------------
 * Identities
 * ---------------------------------------------------------------------- */

static int set_key(kd_identity *id)
{
    id->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, id->seed, 32);
    size_t publen = 32;
    if (!id->pkey || EVP_PKEY_get_raw_public_key(id->pkey, id->pub, &publen) != 1 || publen != 32)
        return KD_EIO;
    kd__hex_encode(id->pub, 32, id->pub_hex);
    return KD_OK;
}

void kd_identity_free(kd_identity *id)
{
    if (!id)
        return;
    OPENSSL_cleanse(id->seed, sizeof id->seed);
    EVP_PKEY_free(id->pkey);
    free(id->user_data);
    free(id);
}

int kd_identity_generate(const char *name, unsigned difficulty, kd_identity **out, char *errbuf, size_t errlen)
{
    if (!out)
        return KD_EMISUSE;
    *out = NULL;
    if (difficulty > KD_AUTH_MAX_DIFFICULTY)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "difficulty %u: at most %d bits", difficulty,
                             KD_AUTH_MAX_DIFFICULTY);
    char *ud = NULL;
    size_t udlen = 0;
    if (name) {
        size_t nl = strlen(name);
        if (nl == 0 || nl > 255)
            return kd__auth_fail(errbuf, errlen, KD_EINVALID, "name: 1 to 255 bytes");
        char *q = NULL;
        size_t ql = 0;
        int rc = kd_json_quote(name, nl, &q, &ql);
        if (rc)
            return kd__auth_fail(errbuf, errlen, rc, "name: %s", rc == KD_ENOMEM ? "out of memory" : "not UTF-8");
        kd__buf b = KD__BUF_INIT;
        rc = kd__buf_printf(&b, "{\"name\":%s}", q);
        kd_free(q);
        if (rc)
            return kd__auth_fail(errbuf, errlen, KD_ENOMEM, "out of memory");
        ud = kd__buf_steal(&b, &udlen);
    } else {
        ud = strdup("{}");
        if (!ud)
            return kd__auth_fail(errbuf, errlen, KD_ENOMEM, "out of memory");
    }
    kd_identity *id = calloc(1, sizeof *id);
    if (!id) {
        free(ud);
        return kd__auth_fail(errbuf, errlen, KD_ENOMEM, "out of memory");
    }
    id->user_data = ud;
    int rc;
    if (RAND_bytes(id->seed, 32) != 1) {
        rc = kd__auth_fail(errbuf, errlen, KD_EIO, "no random bytes from the operating system");
        goto fail;
    }
    if ((rc = set_key(id))) {
        kd__auth_fail(errbuf, errlen, rc, "the crypto library cannot make Ed25519 keys");
        goto fail;
    }
    kd_time_format(kd_now(), id->created_at, sizeof id->created_at);
    if ((rc = mine(id, difficulty))) {
        kd__auth_fail(errbuf, errlen, rc, "no nonce reached %u bits", difficulty);
        goto fail;
    }
    *out = id;
    return KD_OK;
fail:
    kd_identity_free(id);
    return rc;
}

/* created_at: exactly the text kd_time_format gives for its time. */
static int check_created_at(const kd__jnode *v, char out[40], char *errbuf, size_t errlen)
{
    int64_t ts;
    char again[40];
    if (!v || v->type != KD__J_STRING || v->len >= 40 || kd_time_parse(v->u.text, &ts, NULL, 0) != KD_OK ||
        kd_time_format(ts, again, sizeof again) != KD_OK || strcmp(again, v->u.text) != 0)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID,
                             "\"created_at\" must be an RFC 3339 UTC time with 9 fraction digits and Z");
    memcpy(out, v->u.text, v->len + 1);
    return KD_OK;
}

static int check_nonce(const kd__jnode *v, uint64_t *out, char *errbuf, size_t errlen)
{
    int ok = v && v->type == KD__J_NUMBER && v->len >= 1 && v->len <= 16;
    for (size_t i = 0; ok && i < v->len; i++)
        ok = v->u.text[i] >= '0' && v->u.text[i] <= '9';
    uint64_t n = ok ? strtoull(v->u.text, NULL, 10) : 0;
    if (!ok || n > MAX_NONCE)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "\"nonce\" must be a whole number from 0 to 2^53");
    *out = n;
    return KD_OK;
}

static int check_user_data(const kd__jnode *v, char **out, char *errbuf, size_t errlen)
{
    if (!v || v->type != KD__J_OBJECT)
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "\"user_data\" must be a JSON object");
    kd__buf b = KD__BUF_INIT;
    if (kd__jdom_write(&b, v)) {
        kd__buf_free(&b);
        return kd__auth_fail(errbuf, errlen, KD_ENOMEM, "out of memory");
    }
    if (b.len > MAX_USER_DATA) {
        kd__buf_free(&b);
        return kd__auth_fail(errbuf, errlen, KD_EINVALID, "\"user_data\" is larger than %d bytes", MAX_USER_DATA);
    }
    size_t n;
    *out = kd__buf_steal(&b, &n);
    return KD_OK;
}

int kd_identity_load(const char *text, size_t len, kd_identity **out, char *errbuf, size_t errlen)
{
    if (!out)
        return KD_EMISUSE;
    *out = NULL;
    kd__jnode *root;
    int rc = kd__auth_parse(text, len, 64 * 1024, "key file", &root, errbuf, errlen);
    if (rc)
        return rc;
    kd_identity *id = calloc(1, sizeof *id);
    if (!id) {
        kd__jdom_free(root);
        return kd__auth_fail(errbuf, errlen, KD_ENOMEM, "out of memory");
    }
    const kd__jnode *fmt = kd__auth_member(root, "format");
    const kd__jnode *diff = kd__auth_member(root, "difficulty");
    uint8_t pub[32];
    uint64_t d = 0;
    if (!fmt || fmt->type != KD__J_STRING || strcmp(fmt->u.text, KEYFILE_FORMAT) != 0) {
        rc = kd__auth_fail(errbuf, errlen, KD_EINVALID, "not a key file: \"format\" must be \"" KEYFILE_FORMAT "\"");
    } else if ((rc = hex_member(root, "secret_key", 32, id->seed, errbuf, errlen)) ||
               (rc = hex_member(root, "public_key", 32, pub, errbuf, errlen)) ||
               (rc = check_created_at(kd__auth_member(root, "created_at"), id->created_at, errbuf, errlen)) ||
               (rc = check_nonce(kd__auth_member(root, "nonce"), &id->nonce, errbuf, errlen)) ||
               (rc = check_user_data(kd__auth_member(root, "user_data"), &id->user_data, errbuf, errlen)) ||
               (rc = check_nonce(diff, &d, errbuf, errlen))) {
        /* message set */
    } else if (d > 256) {
        rc = kd__auth_fail(errbuf, errlen, KD_EINVALID, "\"difficulty\" must be 0 to 256");
    } else if ((rc = set_key(id))) {
        kd__auth_fail(errbuf, errlen, rc, "the crypto library cannot load Ed25519 keys");
    } else if (memcmp(pub, id->pub, 32) != 0) {
        rc = kd__auth_fail(errbuf, errlen, KD_EINVALID, "the secret key does not belong to the public key");
    }
    id->difficulty = (unsigned)d;
    kd__jdom_free(root);
    if (rc) {
        kd_identity_free(id);
        return rc;
    }
    *out = id;
    return KD_OK;
}

int kd_identity_keyfile(const kd_identity *id, char **out, size_t *len)
{
    if (!id || !out)
        return KD_EMISUSE;
    char seed_hex[65];
    kd__hex_encode(id->seed, 32, seed_hex);
    kd__buf b = KD__BUF_INIT;
    int rc = kd__buf_printf(&b,
                            "{\"created_at\":\"%s\",\"difficulty\":%u,\"format\":\"" KEYFILE_FORMAT
                            "\",\"nonce\":%llu,\"public_key\":\"%s\",\"secret_key\":\"%s\",\"user_data\":%s}",
                            id->created_at, id->difficulty, (unsigned long long)id->nonce, id->pub_hex, seed_hex,
                            id->user_data);
    OPENSSL_cleanse(seed_hex, sizeof seed_hex);
    if (rc) {
        kd__buf_free(&b);
        return KD_ENOMEM;
    }
    size_t n;
    *out = kd__buf_steal(&b, &n);
    if (len)
        *len = n;
    return KD_OK;
}

int kd_identity_document(const kd_identity *id, char **out, size_t *len)
{
    if (!id || !out)
        return KD_EMISUSE;
    kd__buf b = KD__BUF_INIT;
    if (document(id, &b)) {
        kd__buf_free(&b);
        return KD_ENOMEM;
    }
    size_t n;
    *out = kd__buf_steal(&b, &n);
    if (len)
        *len = n;
    return KD_OK;
}

const char *kd_identity_key(const kd_identity *id)
{
    return id ? id->pub_hex : "";
}

static int sign_raw(const kd_identity *id, const void *msg, size_t len, char sig[KD_AUTH_SIG_HEX])
{
    uint8_t raw[64];
    size_t n = sizeof raw;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, id->pkey) == 1 &&
             EVP_DigestSign(ctx, raw, &n, msg, len) == 1 && n == 64;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return KD_EIO;
    kd__hex_encode(raw, 64, sig);
    return KD_OK;
}

int kd_identity_sign(const kd_identity *id, const void *msg, size_t len, char sig[KD_AUTH_SIG_HEX])
{
    if (!id || !sig || (!msg && len))
        return KD_EMISUSE;
    return sign_raw(id, msg ? msg : "", len, sig);
}

int kd_auth_check_identity(const char *doc, size_t len, unsigned min_difficulty, char key[KD_AUTH_KEY_HEX],
                           unsigned *bits, char **canon, size_t *canon_len, char *errbuf, size_t errlen)
{
    if (!key)
        return KD_EMISUSE;
    if (canon)
        *canon = NULL;
    kd__jnode *root;
    int rc = kd__auth_parse(doc, len, 16 * 1024, "identity", &root, errbuf, errlen);
    if (rc)
        return rc;
    kd_identity id;
    memset(&id, 0, sizeof id);
    if (root->len != 4) {
        rc = kd__auth_fail(errbuf, errlen, KD_EINVALID,
                           "identity: expected exactly the members created_at, nonce, public_key and user_data");
    } else if ((rc = hex_member(root, "public_key", 32, id.pub, errbuf, errlen)) ||
               (kd__auth_key_is_weak(id.pub) &&
                (rc = kd__auth_fail(errbuf, errlen, KD_EINVALID, "\"public_key\" is a point of small order or not "
                                    "in canonical form: no secret key belongs to it (generate a new identity)"))) ||
               (rc = check_created_at(kd__auth_member(root, "created_at"), id.created_at, errbuf, errlen)) ||
               (rc = check_nonce(kd__auth_member(root, "nonce"), &id.nonce, errbuf, errlen)) ||
               (rc = check_user_data(kd__auth_member(root, "user_data"), &id.user_data, errbuf, errlen))) {
        /* message set */
    }
    kd__jdom_free(root);
    if (rc) {
        free(id.user_data);
        return rc;
    }
    kd__hex_encode(id.pub, 32, id.pub_hex);
    kd__buf b = KD__BUF_INIT;
    if (document(&id, &b)) {
        free(id.user_data);
        kd__buf_free(&b);
        return kd__auth_fail(errbuf, errlen, KD_ENOMEM, "out of memory");
    }
    free(id.user_data);
    uint8_t h[KD__HASH_LEN];
    kd__sha256(b.data, b.len, h);
    unsigned got = leading_zero_bits(h);
    if (got < min_difficulty) {
        kd__buf_free(&b);
        return kd__auth_fail(errbuf, errlen, KD_EINVALID,
                             "proof of work too weak: the identity's hash has %u leading zero bits, this server "
                             "needs %u (mine a new key with a higher difficulty)",
                             got, min_difficulty);
    }
    memcpy(key, id.pub_hex, KD_AUTH_KEY_HEX);
    if (bits)
        *bits = got;
    if (canon) {
        size_t n;
        *canon = kd__buf_steal(&b, &n);
        if (canon_len)
            *canon_len = n;
    }
    kd__buf_free(&b);
    return KD_OK;
}

int kd_auth_verify(const char *key, const void *msg, size_t len, const char *sig)
{
    uint8_t pub[32], raw[64];
    if (!key || !sig || (!msg && len) || strlen(key) != 64 || strlen(sig) != 128 || !kd__auth_is_hex(key, 64) ||
        !kd__auth_is_hex(sig, 128) || kd__hex_decode(key, 32, pub) || kd__hex_decode(sig, 64, raw))
        return KD_EINVALID;
    return kd__auth_verify_raw(pub, msg ? msg : "", len, raw) ? KD_OK : KD_EINVALID;
}

/* ------------------------------------------------------------------------
 * Login messages and tokens
 * ---------------------------------------------------------------------- */

/* "korudelta-login-v1\0" server_id "\0" purpose "\0" challenge(32 bytes) */
static int login_message(const char *challenge, const char *server_id, const char *purpose, kd__buf *b)
{
    static const char tag[] = "korudelta-login-v1";
    uint8_t raw[32];
    if (!challenge || !server_id || !purpose || !*server_id || !*purpose || strlen(challenge) != 64 ||
        !kd__auth_is_hex(challenge, 64) || kd__hex_decode(challenge, 32, raw))
        return KD_EINVALID;
    if (kd__buf_append(b, tag, sizeof tag) || kd__buf_append(b, server_id, strlen(server_id) + 1) ||
        kd__buf_append(b, purpose, strlen(purpose) + 1) || kd__buf_append(b, raw, 32))
        return KD_ENOMEM;
    return KD_OK;
}

int kd_identity_sign_login(const kd_identity *id, const char *challenge, const char *server_id, const char *purpose,
                           char sig[KD_AUTH_SIG_HEX])
{
    if (!id || !sig)
        return KD_EMISUSE;
    kd__buf b = KD__BUF_INIT;
    int rc = login_message(challenge, server_id, purpose, &b);
    if (!rc)
        rc = sign_raw(id, b.data, b.len, sig);
    kd__buf_free(&b);
    return rc;
}

int kd_auth_verify_login(const char *key, const char *challenge, const char *server_id, const char *purpose,
                         const char *sig)
{
    kd__buf b = KD__BUF_INIT;
    int rc = login_message(challenge, server_id, purpose, &b);
    if (!rc)
        rc = kd_auth_verify(key, b.data, b.len, sig);
    kd__buf_free(&b);
    return rc;
}

int kd_auth_random_hex(size_t nbytes, char *out)
{
    uint8_t raw[64];
    if (!out || nbytes == 0 || nbytes > sizeof raw)
        return KD_EMISUSE;
    if (RAND_bytes(raw, (int)nbytes) != 1)
        return KD_EIO;
    kd__hex_encode(raw, nbytes, out);
    OPENSSL_cleanse(raw, sizeof raw);
    return KD_OK;
}

int kd_auth_token_hash(const char *token, char out[KD_AUTH_KEY_HEX])
{
    static const char tag[] = "korudelta-session-v1";
    if (!token || !out)
        return KD_EMISUSE;
    kd__sha s;
    uint8_t h[KD__HASH_LEN];
    kd__sha_init(&s);
    kd__sha_update(&s, tag, sizeof tag);
    kd__sha_update(&s, token, strlen(token));
    kd__sha_final(&s, h);
    kd__hex_encode(h, KD__HASH_LEN, out);
    return KD_OK;
}
