/*
 * buf.c — growable byte buffer; see buf.h.
 */
#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "korudelta.h"

int kd__buf_reserve(kd__buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return KD_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return KD_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap += cap / 2 + 64;
    char *p = realloc(b->data, cap);
    if (!p)
        return KD_ENOMEM;
    b->data = p;
    b->cap = cap;
    return KD_OK;
}

int kd__buf_append(kd__buf *b, const void *p, size_t n)
{
    int rc = kd__buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KD_OK;
}

int kd__buf_putc(kd__buf *b, char c)
{
    if (b->len + 1 >= b->cap) {
        int rc = kd__buf_reserve(b, 1);
        if (rc)
            return rc;
    }
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return KD_OK;
}

int kd__buf_puts(kd__buf *b, const char *s)
{
    return kd__buf_append(b, s, strlen(s));
}

int kd__buf_printf(kd__buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return KD_EINVALID;
    int rc = kd__buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return KD_OK;
}

char *kd__buf_steal(kd__buf *b, size_t *len)
{
    if (!b->data && kd__buf_reserve(b, 0))
        return NULL;
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void kd__buf_reset(kd__buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void kd__buf_free(kd__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void *kd__grow(void *arr, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return arr;
    size_t want = *cap ? *cap * 2 : first;
    if (want < *cap || want > SIZE_MAX / size)
        return NULL;
    void *p = realloc(arr, want * size);
    if (p)
        *cap = want;
    return p;
}
