/*
 * fuzz_retention.c — libFuzzer target for retention policies (src/retention.c:
 * the JSON a client sends to PUT /api/v1/retention/{ns}) and durations
 * (kd_duration_parse).
 *
 * A policy that parses must write a canonical form that parses back to the
 * same policy and writes the same text again, and deciding on a generated
 * history must keep the newest version and every tombstone. Anything else
 * must be refused with a reason, never crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "retention.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    int64_t ns;
    if (kd_duration_parse(text, &ns) == KD_OK) {
        char back[32];
        int64_t again;
        if (ns <= 0 || kd_duration_format(ns, back, sizeof back) != KD_OK || kd_duration_parse(back, &again) ||
            again != ns)
            abort();
    }
    kd__policy p, q;
    char why[200];
    if (kd__policy_parse(text, size, &p, why, sizeof why) == KD_OK) {
        kd__buf a = {0}, b = {0};
        if (kd__policy_write(&p, &a) || kd__policy_parse(a.data, a.len, &q, why, sizeof why) ||
            kd__policy_write(&q, &b) || a.len != b.len || memcmp(a.data, b.data, a.len))
            abort();
        kd__buf_free(&a);
        kd__buf_free(&b);
        enum { N = 64 };
        int64_t ts[N];
        uint8_t tomb[N], keep[N];
        int64_t now = INT64_C(1800000000) * 1000000000;
        for (int i = 0; i < N; i++) {
            ts[i] = now - (int64_t)(N - i) * (INT64_C(1) << (i % 40));
            tomb[i] = (uint8_t)(data[i % size] & 1);
        }
        for (int i = 1; i < N; i++)
            if (ts[i] <= ts[i - 1])
                ts[i] = ts[i - 1] + 1;
        kd__policy_decide(&p, now, ts, tomb, N, keep);
        for (int i = 0; i < N; i++)
            if ((i == N - 1 || tomb[i]) && !keep[i])
                abort();
    } else if (!why[0]) {
        abort(); /* refused without a reason */
    }
    free(text);
    return 0;
}
