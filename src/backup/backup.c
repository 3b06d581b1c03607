/*
 * backup.c — kd_backup (an online, consistent backup of the log) and
 * kd_backup_info_read. The file format is in bfile.c; restoring is
 * restore.c.
 *
 * Consistency without stopping writers: the log is append-only, so the
 * end position (newest segment, its size, the roots and the last
 * timestamp) is read in one short critical section under write_mu, and
 * the records before it are then copied from the segment files while
 * writes go on after it. Every record copied is checked on the way (its
 * checksums, structure and increasing timestamps) and the views, vectors
 * and auth roots are recomputed, so the header's end position is derived
 * from the very bytes in the file; write_ids and the storage root chain
 * are recomputed by restore (and by kd_verify), not here.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../db_int.h"
#include "../retention.h"
#include "../rewrite.h"
#include "../store/segment.h"
#include "../util/le.h"
#include "backup_int.h"
#include "bfile.h"

#define DEFAULT_LEVEL 1

static int errno_rc(int e)
{
    return e == ENOSPC || e == EDQUOT ? KD_ENOSPACE : e == ENOMEM ? KD_ENOMEM : e == ENOENT ? KD_ENOTFOUND : KD_EIO;
}

/* ------------------------------------------------------------------------
 * Describing a file (header + trailer)
 * ---------------------------------------------------------------------- */

void kd__bk_pos_public(const kd__bk_pos *p, kd_backup_pos *out)
{
    uint8_t field[KD__HASH_LEN];
    out->timestamp = p->ts;
    out->txns = p->txns;
    out->writes = p->writes;
    kd__hex_encode(p->storage, KD__HASH_LEN, out->storage_root);
    kd__hex_encode(p->views, KD__HASH_LEN, out->views_root);
    kd__hex_encode(p->vectors, KD__HASH_LEN, out->vectors_root);
    kd__hex_encode(p->auth, KD__HASH_LEN, out->auth_root);
    kd__field_root(p->storage, p->views, p->vectors, p->auth, field);
    kd__hex_encode(field, KD__HASH_LEN, out->field_root);
}

void kd__bk_info_public(const kd__bk_header *h, uint64_t file_bytes, kd_backup_info *out)
{
    memset(out, 0, sizeof *out);
    out->kind = h->kind == KD__BK_FULL      ? KD_BACKUP_FULL
                : h->kind == KD__BK_CURRENT ? KD_BACKUP_CURRENT_ONLY
                                            : KD_BACKUP_INCREMENTAL;
    kd__hex_encode(h->node, 16, out->node_id);
    out->created = h->created;
    kd__bk_pos_public(&h->base, &out->base);
    kd__bk_pos_public(&h->end, &out->end);
    out->txns = h->txns;
    out->writes = h->writes;
    out->log_bytes = h->raw_bytes;
    out->file_bytes = file_bytes;
}

int kd__bk_describe(const char *path, kd__bk_header *h, uint64_t *file_bytes, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open backup %s: %s", path, strerror(e));
        return errno_rc(e);
    }
    int rc = KD_OK;
    struct stat st;
    uint8_t hdr[KD__BK_HEADER_LEN], tr[KD__BK_TRAILER_LEN];
    char why[300];
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat backup %s: %s", path, strerror(errno));
        rc = KD_EIO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a file", path);
        rc = KD_EINVALID;
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < KD__BK_HEADER_LEN + KD__BK_TRAILER_LEN) {
        if (size >= 8 && pread(fd, hdr, 8, 0) == 8 && memcmp(hdr, KD__BK_MAGIC, 8) != 0)
            snprintf(err, errlen, "%s: not a KoruDelta backup file (bad magic at offset 0)", path);
        else
            snprintf(err, errlen, "%s: file of %llu bytes is truncated (a backup has at least %d)", path,
                     (unsigned long long)size, KD__BK_HEADER_LEN + KD__BK_TRAILER_LEN);
        rc = KD_ECORRUPT;
        goto out;
    }
    if (pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
        pread(fd, tr, sizeof tr, (off_t)(size - sizeof tr)) != (ssize_t)sizeof tr) {
        snprintf(err, errlen, "cannot read backup %s: %s", path, strerror(errno ? errno : EIO));
        rc = KD_EIO;
        goto out;
    }
    if ((rc = kd__bk_header_decode(hdr, h, why, sizeof why))) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto out;
    }
    if (kd__bk_trailer_check(tr, hdr) != 0) {
        snprintf(err, errlen, "%s: the trailer is damaged or missing (the file is truncated or corrupt)", path);
        rc = KD_ECORRUPT;
        goto out;
    }
    *file_bytes = size;
out:
    close(fd);
    return rc;
}

int kd_backup_info_read(const char *path, kd_backup_info *info, char *errbuf, size_t errlen)
{
    char tmp[1];
    if (!errbuf || !errlen) {
        errbuf = tmp;
        errlen = sizeof tmp;
    }
    errbuf[0] = '\0';
    if (!path || !*path || !info) {
        snprintf(errbuf, errlen, "kd_backup_info_read: path and info are required");
        return KD_EMISUSE;
    }
    kd__bk_header h;
    uint64_t size = 0;
    int rc = kd__bk_describe(path, &h, &size, errbuf, errlen);
    if (rc)
        return rc;
    kd__bk_info_public(&h, size, info);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Temporary files: "<path>.tmp-<random>", held with flock while written
 * ---------------------------------------------------------------------- */

/* Split path into directory and file name (dir is "." when none). */
static void split_path(const char *path, char *dir, size_t dirlen, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, dirlen, ".");
        *base = path;
    } else if (slash == path) {
        snprintf(dir, dirlen, "/");
        *base = slash + 1;
    } else {
        snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
        *base = slash + 1;
    }
}

/* Remove "<base>.tmp-*" files that nobody holds: what a killed backup of
 * the same path left (a running one holds its file's flock). */
static void clean_stale_tmp(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t bl = strlen(base);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, base, bl) != 0 || strncmp(de->d_name + bl, ".tmp-", 5) != 0 ||
            strlen(de->d_name + bl + 5) != KD__TEMP_SUFFIX_LEN)
            continue;
        int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            unlinkat(dirfd(d), de->d_name, 0);
        close(fd);
    }
    closedir(d);
}

/* rename without replacing an existing file. */
static int rename_noreplace(const char *from, const char *to)
{
#ifdef SYS_renameat2
    if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
#endif
    if (link(from, to) != 0)
        return -1;
    unlink(from);
    return 0;
}

/* ------------------------------------------------------------------------
 * kd_backup
 * ---------------------------------------------------------------------- */

typedef struct copy_ctx {
    kd_db *db;
    uint32_t dict;   /* the segment's dictionary (set by the walk) */
    kd__buf plain;   /* a record rebuilt: plain values, or only the current ones */
    kd__buf value;
    const kd__idset *current; /* current-only: the version_ids of the current versions */
    /* An incremental on top of a current-only backup (KD__BK_INCREMENTAL_CO):
     * where its records begin in the log (segment, offset). A write in it
     * whose value is stored before that gets the value again in its record
     * (older_values). base_seg 0: none needed. */
    int sparse_base;
    uint64_t base_seg, base_off;
    kd__buf older;            /* those values' bytes, for one record */
    kd__bk_writer *w;
    kd__bk_pos pos;  /* after the last record seen */
    kd__bk_pos base; /* where the file starts */
    int copying;     /* base reached */
    int64_t at;
    int done;        /* past `at`: stop */
    const char *since;
    char msg[600];
    int msg_rc;
    /* An incremental backup, before its base: the compactions recorded
     * there (`done`), and the ones that flagged writes there (`flagged`).
     * A compaction in `flagged` but not in `recorded` ran after the previous
     * backup was made, over records that backup holds (see copy_record). */
    uint8_t recorded[65536 / 8], flagged[65536 / 8];
    /* The compactions whose record, as of the backup's end, says "done".
     * A write flagged pruned by any other (one made after the end, or cut
     * short) is relabelled KD__COMPACTION_CURRENT_ONLY: its value is gone,
     * and the record that accounts for it is not in the backup. */
    uint8_t done_by_end[65536 / 8];
} copy_ctx;

#define BIT_SET(a, n) ((a)[(n) >> 3] |= (uint8_t)(1u << ((n) & 7)))
#define BIT_HAS(a, n) (((a)[(n) >> 3] >> ((n) & 7)) & 1u)

/* The compaction numbers a record's writes carry (pruned flags) or record
 * (keys of _kd.compactions): into c->flagged and c->recorded, before the base;
 * after it, 1 when a write carries the number of a compaction that also
 * flagged writes before the base after the previous backup was made. */
static int note_compactions(copy_ctx *c, const uint8_t *payload, size_t len, int after_base)
{
    kd__txn_cursor cur;
    kd__value_rec v;
    kd__write_rec w;
    char why[256];
    if (kd__txn_open(&cur, payload, len, why, sizeof why))
        return 0;
    for (uint32_t i = 0; i < cur.n_values; i++)
        if (kd__txn_next_value(&cur, &v, why, sizeof why))
            return 0;
    for (uint32_t i = 0; i < cur.n_writes; i++) {
        if (kd__txn_next_write(&cur, &w, why, sizeof why))
            return 0;
        if (after_base) {
            if ((w.flags & KD__WRITE_PRUNED) && BIT_HAS(c->flagged, w.pruned_by) && !BIT_HAS(c->recorded, w.pruned_by))
                return w.pruned_by;
            continue;
        }
        if (w.flags & KD__WRITE_PRUNED)
            BIT_SET(c->flagged, w.pruned_by);
        if (w.ns_len == strlen(KD__NS_COMPACTIONS) && !memcmp(w.ns, KD__NS_COMPACTIONS, w.ns_len) &&
            w.key_len == 10) {
            unsigned n = 0;
            for (size_t k = 0; k < 10; k++)
                n = n * 10 + (unsigned)(w.key[k] - '0');
            if (n < 65536)
                BIT_SET(c->recorded, n);
        }
    }
    return 0;
}

#define STOP 1 /* a positive callback result: stop walking, no error */

/* A write a current-only backup marks pruned: a version whose value it
 * leaves out (not a tombstone, not pruned already, not current). */
static int leaves_out(const copy_ctx *c, const kd__write_rec *w)
{
    return c->current && !(w->flags & (KD__WRITE_DELETED | KD__WRITE_PRUNED)) &&
           !kd__idset_has(c->current, w->version_id);
}

/* A write flagged pruned by a compaction the backup holds no "done"
 * record of (see done_by_end). */
static int relabels(const copy_ctx *c, const kd__write_rec *w)
{
    return (w->flags & KD__WRITE_PRUNED) && w->pruned_by != KD__COMPACTION_CURRENT_ONLY &&
           !BIT_HAS(c->done_by_end, w->pruned_by);
}

/* Into c->done_by_end: the compactions whose newest record at or before
 * `end` is a "done" one. Compaction records are never deleted, and none is
 * written while a backup runs (it holds compact_mu). */
static int compactions_done(copy_ctx *c, int64_t end)
{
    char **keys = NULL;
    size_t n = 0;
    kd__allow_reserved(1);
    int rc = kd_list_keys(c->db, KD__NS_COMPACTIONS, NULL, NULL, 0, &keys, &n);
    for (size_t i = 0; !rc && i < n; i++) {
        unsigned long long number = strtoull(keys[i], NULL, 10);
        char *json = NULL;
        size_t len = 0;
        int grc = kd_get_at(c->db, KD__NS_COMPACTIONS, keys[i], end, &json, &len, NULL);
        if (grc == KD_OK && number < 65536 && memmem(json, len, "\"state\":\"done\"", 14))
            BIT_SET(c->done_by_end, number);
        else if (grc != KD_OK && grc != KD_ENOTFOUND && grc != KD_ENOVERSION && grc != KD_EPRUNED)
            rc = grc; /* not there yet at the end, or a "started" record a current-only backup left out */
        kd_free(json);
    }
    kd__allow_reserved(0);
    kd_free_list(keys, n);
    return rc == KD_ENOTFOUND ? KD_OK : rc;
}

/* The record as a backup holds it. Backups hold plain records
 * (KD__BK_LOG_FORMAT): the values of a consolidated segment are
 * decompressed. A current-only backup keeps the values of current versions
 * only, and marks the writes of the others pruned by
 * KD__COMPACTION_CURRENT_ONLY (the write_ids and roots do not change), the
 * number writes flagged by a compaction the backup holds no record of take
 * as well (relabels). The record is rebuilt into c->plain when anything
 * changes: 1; 0 when it is copied as it is; or a KD_* code. */
/* The values a record of an incremental backup on top of a current-only
 * one must carry again: those of its writes (neither tombstones nor pruned)
 * stored before the backup's base, which the current-only backup may have
 * left out (a write may reuse an old value: values are stored once). Into
 * c->older as [version_id, u32 length, bytes]...; the count is returned,
 * or a KD_* code (< 0) with `err` set. */
static int older_values(copy_ctx *c, const uint8_t *payload, size_t len, char *err, size_t errlen)
{
    kd__buf_reset(&c->older);
    if (!c->base_seg)
        return 0;
    kd__txn_cursor cur;
    kd__value_rec v;
    kd__write_rec w;
    char why[200];
    if (kd__txn_open(&cur, payload, len, why, sizeof why))
        return 0;
    for (uint32_t i = 0; i < cur.n_values; i++)
        if (kd__txn_next_value(&cur, &v, why, sizeof why))
            return 0;
    int added = 0;
    kd__buf scratch = KD__BUF_INIT;
    for (uint32_t i = 0; i < cur.n_writes; i++) {
        if (kd__txn_next_write(&cur, &w, why, sizeof why))
            break;
        if (w.flags & (KD__WRITE_DELETED | KD__WRITE_PRUNED))
            continue;
        /* Where the index has the value tells it: a value stored in this
         * record, or again after the base, is located there. One added
         * already for an earlier write of the record is not added twice. */
        int added_already = 0;
        for (size_t at = 0; at < c->older.len && !added_already;
             at += KD__VALUE_HEADER_LEN + kd__get_u32((const uint8_t *)c->older.data + at + 32))
            added_already = !memcmp(c->older.data + at, w.version_id, KD__HASH_LEN);
        if (added_already)
            continue;
        pthread_rwlock_rdlock(&c->db->ix_lock);
        uint32_t vidx = kd__index_value_find(&c->db->ix, w.version_id);
        const kd__val *val = vidx == KD__NO_VALUE ? NULL : kd__index_val(&c->db->ix, vidx);
        int before = val && val->seg != KD__VAL_GONE &&
                     (val->seg < c->base_seg || (val->seg == c->base_seg && val->off < c->base_off));
        const char *bytes = NULL;
        size_t n = 0;
        int rc = before ? kd__value_bytes(c->db, vidx, &scratch, &bytes, &n) : KD_OK;
        if (!rc && before && kd__txn_put_value(&c->older, w.version_id, bytes, (uint32_t)n, 0))
            rc = KD_ENOMEM;
        pthread_rwlock_unlock(&c->db->ix_lock);
        if (rc) {
            snprintf(err, errlen, "cannot copy the value of %.*s/%.*s stored before the previous backup: %s",
                     (int)(w.ns_len < 200 ? w.ns_len : 200), w.ns, (int)(w.key_len < 200 ? w.key_len : 200), w.key,
                     rc == KD_ENOMEM ? "out of memory" : kd_errmsg(c->db)[0] ? kd_errmsg(c->db) : kd_strerror(rc));
            kd__buf_free(&scratch);
            return rc;
        }
        added += before;
    }
    kd__buf_free(&scratch);
    return added;
}

static int rebuild_record(copy_ctx *c, const uint8_t *payload, size_t len, char *why, size_t whylen)
{
    kd__txn_cursor cur;
    kd__value_rec v;
    kd__write_rec w;
    if (kd__txn_open(&cur, payload, len, why, whylen))
        return KD_ECORRUPT;
    int older = older_values(c, payload, len, why, whylen);
    if (older < 0)
        return older;
    int change = older > 0;
    uint32_t kept = (uint32_t)older;
    for (uint32_t i = 0; i < cur.n_values; i++) {
        if (kd__txn_next_value(&cur, &v, why, whylen))
            return KD_ECORRUPT;
        int keep = !c->current || kd__idset_has(c->current, v.version_id);
        kept += keep;
        change |= v.zstd || !keep;
    }
    for (uint32_t i = 0; i < cur.n_writes && !change; i++) {
        if (kd__txn_next_write(&cur, &w, why, whylen))
            return KD_ECORRUPT;
        change = leaves_out(c, &w) || relabels(c, &w);
    }
    if (!change)
        return 0;
    kd__buf *b = &c->plain;
    kd__buf_reset(b);
    if (kd__buf_reserve(b, KD__REC_HEADER_LEN + KD__TXN_HEADER_LEN + len + c->older.len))
        return KD_ENOMEM;
    b->len = KD__REC_HEADER_LEN;
    kd__txn_open(&cur, payload, len, why, whylen);
    kd__txn_put_header(b, kept, cur.n_writes, cur.root_after);
    for (uint32_t i = 0; i < cur.n_values; i++) {
        kd__txn_next_value(&cur, &v, why, whylen);
        if (c->current && !kd__idset_has(c->current, v.version_id))
            continue;
        const char *data;
        size_t n;
        int rc = kd__zvalue_plain(c->db->zdicts, c->dict, &v, &c->value, &data, &n, why, whylen);
        if (rc)
            return rc;
        if (kd__txn_put_value(b, v.version_id, data, (uint32_t)n, 0))
            return KD_ENOMEM;
    }
    if (kd__buf_append(b, c->older.data, c->older.len)) /* values must precede the writes */
        return KD_ENOMEM;
    for (uint32_t i = 0; i < cur.n_writes; i++) {
        if (kd__txn_next_write(&cur, &w, why, whylen))
            return KD_ECORRUPT;
        if (leaves_out(c, &w) || relabels(c, &w)) {
            w.flags |= KD__WRITE_PRUNED;
            w.pruned_by = KD__COMPACTION_CURRENT_ONLY;
        }
        if (kd__txn_put_write(b, &w))
            return KD_ENOMEM;
    }
    size_t plen = b->len - KD__REC_HEADER_LEN;
    if (plen > KD__REC_MAX_PAYLOAD) {
        snprintf(why, whylen, "a record would exceed the largest record once its values are decompressed");
        return KD_EINVALID;
    }
    kd__rec_header_encode((uint8_t *)b->data, KD__REC_TXN, b->data + KD__REC_HEADER_LEN, (uint32_t)plen);
    return 1;
}

/* The version_ids of the newest version at or before `when` of every key,
 * tombstones aside: what a current-only backup keeps. The shared index lock
 * lets writers through every 16384 keys (keys added meanwhile are newer). */
static int current_values(kd_db *db, int64_t when, kd__hash32 **ids, size_t *n, kd__idset *set)
{
    size_t cap = 0, cnt = 0, seen = 0;
    kd__hash32 *v = NULL;
    int rc = KD_OK;
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < db->ix.ns_count && !rc; i++)
        for (size_t j = 0; j < db->ix.ns_list[i]->n_all && !rc; j++) {
            if (++seen % 16384 == 0)
                kd__ix_relock(db, NULL, NULL);
            const kd__key *k = db->ix.ns_list[i]->all[j];
            uint32_t pos = kd__key_upper(k, when);
            if (!pos || kd__ver_value(db, k, pos - 1) == KD__NO_VALUE) /* gone with its workspace, too */
                continue;
            kd__hash32 *grown = kd__grow(v, &cap, cnt, sizeof *v, 4096);
            if (!grown) {
                rc = KD_ENOMEM;
                break;
            }
            v = grown;
            memcpy(v[cnt++], kd__index_val(&db->ix, k->vers[pos - 1].value)->id, KD__HASH_LEN);
        }
    pthread_rwlock_unlock(&db->ix_lock);
    if (!rc)
        rc = kd__idset_build(set, v, cnt);
    *ids = v;
    *n = cnt;
    return rc;
}

static int copy_record(void *vctx, uint64_t seg, uint64_t off, uint8_t type, const uint8_t *payload, size_t len,
                       char *why, size_t whylen)
{
    copy_ctx *c = vctx;
    if (type != KD__REC_TXN) {
        snprintf(why, whylen, "unknown record type %u", type);
        return KD_ECORRUPT;
    }
    kd__bk_pos next = c->pos;
    int rc = kd__bk_pos_advance(&next, payload, len, 0, why, whylen);
    if (rc)
        return rc;
    if (!c->copying) {
        note_compactions(c, payload, len, 0);
        if (next.ts < c->base.ts) {
            c->pos = next;
            return KD_OK;
        }
        if (next.ts > c->base.ts || !kd__bk_pos_equal(&next, &c->base)) {
            char t[40];
            kd_time_format(c->base.ts, t, sizeof t);
            snprintf(c->msg, sizeof c->msg,
                     "%s is not a backup of this database's history: its end (a transaction ending at %s) is not "
                     "in this log",
                     c->since, t);
            c->msg_rc = KD_EINVALID;
            return STOP;
        }
        c->pos = next;
        c->copying = 1;
        if (c->sparse_base) {
            c->base_seg = seg;
            c->base_off = off + KD__REC_HEADER_LEN + len;
        }
        return KD_OK;
    }
    if (next.ts > c->at) {
        c->done = 1;
        return STOP;
    }
    /* A compaction since the previous backup that pruned versions on both
     * sides of its end: the previous backup still holds the values it
     * removed before that end, so the chain restored from both would mark
     * only part of its writes, which verify cannot tell from tampering. */
    int late = c->since ? note_compactions(c, payload, len, 1) : 0;
    if (late) {
        snprintf(c->msg, sizeof c->msg,
                 "compaction %d, made after %s, pruned versions both before its end and after it: an "
                 "incremental backup on top of it would not restore to this database; take a full backup",
                 late, c->since);
        c->msg_rc = KD_EINVALID;
        return STOP;
    }
    /* The walker hands over the payload in place, right after its record
     * header (segment.h), so the record's bytes are copied exactly, unless
     * consolidation compressed its values. */
    rc = rebuild_record(c, payload, len, why, whylen);
    if (rc < 0 || rc > 1)
        return rc;
    rc = rc == 1 ? kd__bk_writer_add(c->w, (const uint8_t *)c->plain.data, c->plain.len, why, whylen)
                 : kd__bk_writer_add(c->w, payload - KD__REC_HEADER_LEN, KD__REC_HEADER_LEN + len, why, whylen);
    if (rc) {
        /* The backup file failed (a full disk there, say): not this
         * segment, whose name the walker would put first. */
        snprintf(c->msg, sizeof c->msg, "writing the backup file: %s", why);
        c->msg_rc = rc;
        return STOP;
    }
    c->pos = next;
    return KD_OK;
}

static int backup_run(kd_db *db, const char *path, const kd_backup_options *opts, kd_backup_info *info);

int kd_backup(kd_db *db, const char *path, const kd_backup_options *opts, kd_backup_info *info)
{
    if (!db)
        return KD_EMISUSE;
    if (db->core) /* a workspace handle: database-wide */
        db = db->core;
    kd__keep_std_fds();
    /* No compaction meanwhile: it rewrites segments and records itself
     * after our end position, and a backup must hold either none of its
     * work or all of it. Writes go on; only compaction waits. */
    pthread_mutex_lock(&db->compact_mu);
    int rc = backup_run(db, path, opts, info);
    pthread_mutex_unlock(&db->compact_mu);
    return rc;
}

static int backup_run(kd_db *db, const char *path, const kd_backup_options *opts, kd_backup_info *info)
{
    if (!path || !*path)
        return kd__err(db, KD_EINVALID, "backup path is empty");
    if (strlen(path) > 3000)
        return kd__err(db, KD_EINVALID, "backup path is too long");
    kd_backup_options o = {0};
    if (opts)
        o = *opts;
    int64_t at = (o.at == 0) ? KD_TIME_MAX : o.at;
    int level = o.level ? o.level : DEFAULT_LEVEL;
    if (level < 1 || level > 19)
        return kd__err(db, KD_EINVALID, "compression level %d is out of range (1..19)", o.level);
    if (at < 0)
        return kd__err(db, KD_EINVALID, "backup time is before 1970");
    if (o.current_only && o.since)
        return kd__err(db, KD_EINVALID, "a current-only backup is a full backup: it cannot be incremental (--since)");
    struct stat st;
    if (lstat(path, &st) == 0)
        return kd__err(db, KD_EEXISTS, "%s already exists; a backup never overwrites a file", path);

    copy_ctx c;
    memset(&c, 0, sizeof c);
    c.db = db;
    c.at = at;
    c.since = o.since;
    kd__bk_header h;
    memset(&h, 0, sizeof h);
    h.kind = KD__BK_FULL;
    h.created = kd_now();
    memcpy(h.node, db->node, 16);
    char err[8192];
    if (o.since) {
        kd__bk_header prev;
        uint64_t prev_size;
        int rc = kd__bk_describe(o.since, &prev, &prev_size, err, sizeof err);
        if (rc)
            return kd__err(db, rc == KD_ECORRUPT ? KD_EINVALID : rc, "previous backup: %s", err);
        c.base = prev.end;
        c.sparse_base = prev.kind == KD__BK_CURRENT || prev.kind == KD__BK_INCREMENTAL_CO;
        h.kind = c.sparse_base ? KD__BK_INCREMENTAL_CO : KD__BK_INCREMENTAL;
        kd__bk_pos empty;
        memset(&empty, 0, sizeof empty);
        c.copying = kd__bk_pos_equal(&c.base, &empty); /* it continues from the empty log */
        if (at < c.base.ts) {
            char t1[40], t2[40];
            kd_time_format(at, t1, sizeof t1);
            kd_time_format(c.base.ts, t2, sizeof t2);
            return kd__err(db, KD_EINVALID, "--at %s is before the end of the previous backup %s (%s)", t1, o.since,
                           t2);
        }
    } else {
        c.copying = 1;
        if (o.current_only)
            h.kind = KD__BK_CURRENT;
    }

    /* The end position: one short critical section. */
    pthread_mutex_lock(&db->write_mu);
    uint64_t last_no = db->segs[db->nsegs - 1].no;
    uint64_t last_size = db->segs[db->nsegs - 1].size;
    uint64_t first_no = db->segs[0].no;
    int64_t last_ts = db->last_ts;
    pthread_mutex_unlock(&db->write_mu);
    /* Only durable writes go into a backup (under sync=interval or none,
     * or while a group commit runs, the end may not be synced yet). */
    int rc = kd__sync_log(db);
    if (rc)
        return rc;


    char dir[3100], tmp[3200];
    const char *base;
    split_path(path, dir, sizeof dir, &base);
    clean_stale_tmp(dir, base);
    char prefix[3100];
    snprintf(prefix, sizeof prefix, "%s.tmp-", path);
    int fd = kd__create_temp(prefix, 0, tmp, sizeof tmp);
    if (fd < 0) {
        int e = errno;
        return kd__err(db, errno_rc(e) == KD_ENOTFOUND ? KD_EIO : errno_rc(e), "cannot create %s: %s", tmp,
                       strerror(e));
    }
    flock(fd, LOCK_EX | LOCK_NB); /* marks it as in use for clean_stale_tmp */
    kd__bk_writer w;
    rc = kd__bk_writer_init(&w, fd, level, err, sizeof err);
    if (rc) {
        close(fd);
        unlink(tmp);
        return kd__err(db, rc, "%s", err);
    }
    c.w = &w;
    if (!rc && (rc = compactions_done(&c, at < last_ts ? at : last_ts)))
        snprintf(err, sizeof err, "cannot read the compaction records: %s", kd_errmsg(db));
    /* Current-only: the values to keep, as of the end (versions up to it
     * do not change while the copy runs). */
    kd__hash32 *current_ids = NULL;
    size_t n_current = 0;
    kd__idset current = {0};
    if (!rc && o.current_only) {
        if ((rc = current_values(db, at < last_ts ? at : last_ts, &current_ids, &n_current, &current)))
            snprintf(err, sizeof err, "out of memory listing the current versions");
        c.current = &current;
    }
    for (uint64_t no = first_no; no <= last_no && !c.done && !c.msg_rc && !rc; no++) {
        char name[32], p[4096];
        snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(no, name));
        uint64_t vend, fsize;
        rc = kd__segment_walk(p, no, no == last_no ? last_size : 0, 0, copy_record, &c, &c.dict, &vend, &fsize,
                              err, sizeof err);
        if (rc == STOP)
            rc = KD_OK;
        if (rc)
            break;
    }
    if (!rc && c.msg_rc) {
        rc = c.msg_rc;
        snprintf(err, sizeof err, "%s", c.msg);
    }
    if (!rc && !c.copying) {
        rc = KD_EINVALID;
        char t_base[40], t_end[40];
        kd_time_format(c.base.ts, t_base, sizeof t_base);
        kd_time_format(c.pos.ts, t_end, sizeof t_end);
        snprintf(err, sizeof err,
                 "%s is not a backup of this database's history: its end (%s, %llu writes) is not in this log, "
                 "which ends at %s",
                 o.since, t_base, (unsigned long long)c.base.writes, t_end);
    }
    uint64_t file_bytes = 0;
    if (!rc) {
        h.base = c.base;
        h.end = c.pos;
        h.txns = c.pos.txns - c.base.txns;
        h.writes = c.pos.writes - c.base.writes;
        rc = kd__bk_writer_finish(&w, &h, &file_bytes, err, sizeof err);
    }
    if (!rc && fsync(fd) != 0) {
        int e = errno;
        rc = errno_rc(e);
        snprintf(err, sizeof err, "cannot sync %s: %s", tmp, strerror(e));
    }
    kd__bk_writer_free(&w);
    kd__buf_free(&c.plain);
    kd__buf_free(&c.value);
    kd__buf_free(&c.older);
    kd__idset_free(&current);
    free(current_ids);
    if (!rc && rename_noreplace(tmp, path) != 0) {
        int e = errno;
        rc = e == EEXIST ? KD_EEXISTS : errno_rc(e);
        snprintf(err, sizeof err, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    if (rc) {
        unlink(tmp);
        close(fd);
        return kd__err(db, rc == KD_ENOTFOUND ? KD_EIO : rc, "%s", err);
    }
    close(fd);
    if (kd__fsync_dir(dir) != 0) {
        int e = errno;
        return kd__err(db, errno_rc(e), "cannot sync directory %s: %s", dir, strerror(e));
    }
    kd__log(db, KD_LOG_INFO, "backup %s: %llu transactions, %llu bytes of log in %llu bytes", path,
            (unsigned long long)h.txns, (unsigned long long)h.raw_bytes, (unsigned long long)file_bytes);
    if (info)
        kd__bk_info_public(&h, file_bytes, info);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * kd_backup_info_json
 * ---------------------------------------------------------------------- */

static int zero_hex(const char *hex)
{
    for (; *hex; hex++)
        if (*hex != '0')
            return 0;
    return 1;
}

static int pos_json(kd__buf *b, const kd_backup_pos *p)
{
    char t[48];
    int rc = kd__buf_puts(b, "{\"timestamp\":");
    if (!rc && p->timestamp) {
        kd_time_format(p->timestamp, t, sizeof t);
        rc = kd__buf_printf(b, "\"%s\"", t);
    } else if (!rc) {
        rc = kd__buf_puts(b, "null");
    }
    if (!rc)
        rc = kd__buf_printf(b, ",\"txns\":%llu,\"writes\":%llu,\"roots\":{\"storage\":\"%.64s\"",
                            (unsigned long long)p->txns, (unsigned long long)p->writes, p->storage_root);
    if (!rc && !zero_hex(p->views_root))
        rc = kd__buf_printf(b, ",\"views\":\"%.64s\"", p->views_root);
    if (!rc && !zero_hex(p->vectors_root))
        rc = kd__buf_printf(b, ",\"vectors\":\"%.64s\"", p->vectors_root);
    if (!rc && !zero_hex(p->auth_root))
        rc = kd__buf_printf(b, ",\"auth\":\"%.64s\"", p->auth_root);
    if (!rc)
        rc = kd__buf_printf(b, ",\"field\":\"%.64s\"}}", p->field_root);
    return rc;
}

int kd_backup_info_json(const kd_backup_info *i, char **out, size_t *len)
{
    if (!i || !out)
        return KD_EMISUSE;
    kd__buf b = KD__BUF_INIT;
    char t[48];
    kd_time_format(i->created, t, sizeof t);
    int rc = kd__buf_printf(&b, "{\"kind\":\"%s\",\"node_id\":\"%.32s\",\"created\":\"%s\",\"base\":",
                            i->kind == KD_BACKUP_FULL           ? "full"
                            : i->kind == KD_BACKUP_CURRENT_ONLY ? "current-only"
                                                                : "incremental",
                            i->node_id, t);
    if (!rc)
        rc = pos_json(&b, &i->base);
    if (!rc)
        rc = kd__buf_puts(&b, ",\"end\":");
    if (!rc)
        rc = pos_json(&b, &i->end);
    if (!rc)
        rc = kd__buf_printf(&b, ",\"txns\":%llu,\"writes\":%llu,\"log_bytes\":%llu,\"file_bytes\":%llu}",
                            (unsigned long long)i->txns, (unsigned long long)i->writes,
                            (unsigned long long)i->log_bytes, (unsigned long long)i->file_bytes);
    if (rc) {
        kd__buf_free(&b);
        return KD_ENOMEM;
    }
    *out = kd__buf_steal(&b, len);
    return KD_OK;
}
