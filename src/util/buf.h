/*
 * buf.h — a growable byte buffer for the library (like curl's dynbuf).
 *
 * Every append checks for overflow and allocation failure and returns
 * KD_ENOMEM instead of aborting; the buffer keeps a NUL after its data so
 * text can be handed out as a C string.
 */
#ifndef KD_UTIL_BUF_H
#define KD_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct kd__buf {
    char *data; /* NULL until the first append */
    size_t len;
    size_t cap;
} kd__buf;

#define KD__BUF_INIT {NULL, 0, 0}

/* Make room for `extra` more bytes (plus the trailing NUL). */
int kd__buf_reserve(kd__buf *b, size_t extra);
int kd__buf_append(kd__buf *b, const void *p, size_t n);
int kd__buf_putc(kd__buf *b, char c);
int kd__buf_puts(kd__buf *b, const char *s);
int kd__buf_printf(kd__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Give the data to the caller (free with free()); the buffer becomes empty. */
char *kd__buf_steal(kd__buf *b, size_t *len);
void kd__buf_reset(kd__buf *b); /* len = 0, keeps memory */
void kd__buf_free(kd__buf *b);

/* Room for one more element in a growing array: when n == *cap, the array
 * (elements of `size` bytes) is reallocated to twice *cap (`first` when
 * empty). Returns the array, possibly moved, with *cap updated; NULL when
 * out of memory, the array then left as it was. */
void *kd__grow(void *arr, size_t *cap, size_t n, size_t size, size_t first);

#endif
