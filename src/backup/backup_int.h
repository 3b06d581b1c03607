/*
 * backup_int.h — what backup.c and restore.c share (private).
 */
#ifndef KD_BACKUP_INT_H
#define KD_BACKUP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "bfile.h"
#include "korudelta.h"

/* Read and check the header and trailer of the backup file at path (the
 * records are not read). Errors as kd_backup_info_read; the message names
 * the file. */
int kd__bk_describe(const char *path, kd__bk_header *h, uint64_t *file_bytes, char *err, size_t errlen);
void kd__bk_pos_public(const kd__bk_pos *p, kd_backup_pos *out);
void kd__bk_info_public(const kd__bk_header *h, uint64_t file_bytes, kd_backup_info *out);

/* Size at which kd_restore starts a new segment (the log's default,
 * 256 MiB); tests lower it to see several segments. */
extern uint64_t kd__restore_segment_size;

#endif
