/*
 * fuzz_auth.c — libFuzzer target for everything that parses untrusted
 * auth input: key files (kd_identity_load), identity documents sent to
 * /api/v1/auth/register (kd_auth_check_identity), signed grants
 * (kd_grant_verify), signatures and login messages (kd_auth_verify,
 * kd_auth_verify_login), the Authorization header (ks_auth_bearer) and
 * durations (ks_parse_duration).
 *
 * The first byte picks the parser; the rest is its input. Properties
 * checked besides "no crash, no leak": an accepted key file loads back
 * the same key from its own key file; an accepted identity document is
 * accepted again in its canonical form with the same key and bits; an
 * accepted grant verifies again from the grant it was parsed into only if
 * signed by its granter (so any accepted grant's fields are covered by
 * the signature: its id is stable across a re-verify of the same text);
 * an accepted Bearer header gives 64 lower-case hex digits. The replay
 * driver runs tests/fuzz/corpus/fuzz_auth/ as an ordinary ctest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "korudelta.h"
#include "server_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What http.c would give server/util.c (not linked here). */
const char *ks_param(const ks_request *r, const char *name)
{
    (void)r;
    (void)name;
    return NULL;
}

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_auth: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    unsigned which = data[0] % 6;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    char *text = malloc(len + 1);
    if (!text)
        return 0;
    memcpy(text, in, len);
    text[len] = '\0';
    char err[512];
    switch (which) {
    case 0: {
        kd_identity *id = NULL;
        if (kd_identity_load(in, len, &id, err, sizeof err) == KD_OK) {
            char *kf = NULL;
            size_t kl = 0;
            kd_identity *back = NULL;
            if (kd_identity_keyfile(id, &kf, &kl) != KD_OK || kd_identity_load(kf, kl, &back, err, sizeof err) != KD_OK ||
                strcmp(kd_identity_key(id), kd_identity_key(back)) != 0)
                fail("a loaded key file does not round-trip");
            kd_free(kf);
            kd_identity_free(back);
            kd_identity_free(id);
        } else if (!err[0]) {
            fail("key file refused without a message");
        }
        break;
    }
    case 1: {
        char key[KD_AUTH_KEY_HEX], key2[KD_AUTH_KEY_HEX];
        unsigned bits = 0, bits2 = 0;
        char *canon = NULL;
        size_t cl = 0;
        if (kd_auth_check_identity(in, len, 0, key, &bits, &canon, &cl, err, sizeof err) == KD_OK) {
            if (kd_auth_check_identity(canon, cl, bits, key2, &bits2, NULL, NULL, err, sizeof err) != KD_OK ||
                strcmp(key, key2) != 0 || bits != bits2)
                fail("an accepted identity is not accepted again in canonical form");
            kd_free(canon);
        }
        break;
    }
    case 2: {
        kd_grant g, g2;
        if (kd_grant_verify(in, len, &g, err, sizeof err) == KD_OK) {
            if (kd_grant_verify(in, len, &g2, err, sizeof err) != KD_OK || strcmp(g.id, g2.id) != 0)
                fail("grant verification is not stable");
            (void)kd_grant_covers(&g, "ns", "key", KD_PERM_READ);
        }
        break;
    }
    case 3: {
        /* key(64) sig(128) message… */
        if (len >= 192) {
            char key[65], sig[129];
            memcpy(key, in, 64);
            key[64] = '\0';
            memcpy(sig, in + 64, 128);
            sig[128] = '\0';
            (void)kd_auth_verify(key, in + 192, len - 192, sig);
            (void)kd_auth_verify_login(key, text + 192, "server", "login", sig);
        }
        break;
    }
    case 4: {
        char tok[65];
        if (ks_auth_bearer(text, tok)) {
            if (strlen(tok) != 64 || strspn(tok, "0123456789abcdef") != 64)
                fail("Bearer accepted a token that is not 64 lower-case hex digits");
        }
        break;
    }
    case 5: {
        int64_t ns = 0;
        if (ks_parse_duration(text, &ns) == 0 && ns < 1000000000)
            fail("a duration under one second was accepted");
        (void)kd_auth_ns_match(text, "app.logs");
        break;
    }
    }
    free(text);
    return 0;
}
