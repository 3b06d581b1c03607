/*
 * json.h — the library's JSON parser and canonical writer.
 *
 * Canonical JSON (DESIGN.md §2) is what the database stores, hashes and
 * returns: members sorted by name (byte-wise UTF-8), duplicate names
 * last-wins, no insignificant whitespace, strings with only the escapes JSON
 * requires, integers exactly as written (any number of digits), non-integers
 * as the shortest text that round-trips the IEEE double, always with "." or
 * an exponent; -0.0 preserved. docs/FORMAT.md gives the exact rules.
 */
#ifndef KD_JSON_H
#define KD_JSON_H

#include <stddef.h>

#include "../util/buf.h"

#define KD_JSON_MAX_DEPTH 512

/* Parse `in` (len bytes) and append its canonical form to `out`.
 * Returns KD_OK, KD_EINVALID (err receives a message naming the byte offset
 * and the problem, e.g. "invalid JSON at byte 12: expected ':'"), or
 * KD_ENOMEM. On error `out` is left at its original length. Never recurses
 * deeper than a fixed bound: nesting beyond KD_JSON_MAX_DEPTH is an error. */
int kd__json_canonicalize(const char *in, size_t len, kd__buf *out, char *err, size_t errlen);

/* Append `s` (len bytes, must be valid UTF-8) as a JSON string literal,
 * quoted, with only the escapes JSON requires. KD_EINVALID if s is not valid
 * UTF-8. */
int kd__json_write_string(kd__buf *out, const char *s, size_t len);

/* 1 if s[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int kd__utf8_valid(const char *s, size_t len);

#endif
