/*
 * crc32c.h — CRC-32C (Castagnoli), the checksum of every log record.
 * Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at run
 * time), a table otherwise; both give identical results.
 */
#ifndef KD_UTIL_CRC32C_H
#define KD_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t kd__crc32c(const void *p, size_t n);
/* Continue a checksum over more bytes: kd__crc32c(a ‖ b) ==
 * kd__crc32c_more(kd__crc32c(a), b), and kd__crc32c_more(0, a) == kd__crc32c(a). */
uint32_t kd__crc32c_more(uint32_t crc, const void *p, size_t n);

#endif
