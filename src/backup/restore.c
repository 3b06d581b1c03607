/*
 * restore.c — kd_restore: a database directory from a full backup and the
 * incremental backups that follow it.
 *
 * All-or-nothing: the headers of all files are checked first (kinds and
 * the chain base == previous end), then the records of each file are
 * checked completely while they are written into log segments of a new
 * directory "<dir>.restore-<random>" next to dir. That directory is then
 * opened as a database (replaying the log), its roots and counts compared
 * with the last file's end, closed, and renamed to dir. Any failure removes
 * the temporary directory, so a refused restore creates nothing. A restore
 * killed midway leaves only "<dir>.restore-<random>", never dir.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../db_int.h"
#include "../retention.h"
#include "backup_int.h"
#include "bfile.h"

uint64_t kd__restore_segment_size = KD__SEG_TARGET_SIZE;

#define WBUF_MAX (1u << 20)

static int errno_rc(int e)
{
    return e == ENOSPC || e == EDQUOT ? KD_ENOSPACE : e == ENOMEM ? KD_ENOMEM : KD_EIO;
}

/* Remove a directory that holds only files (what a restore creates). */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
    }
    rmdir(dir);
}

/* ------------------------------------------------------------------------
 * Writing segments
 * ---------------------------------------------------------------------- */

typedef struct seg_out {
    const char *dir;
    int fd;
    uint64_t no, size; /* size: bytes in the file including wbuf */
    kd__buf wbuf;      /* bytes not yet written, ending at size */
    char err[8192];
    /* The writes marked pruned by current-only backups
     * (KD__COMPACTION_CURRENT_ONLY), in log order: the compaction record
     * a restore from one writes (account_current_only). */
    kd__sha sha;
    uint64_t marked;
} seg_out;

/* Count the record's writes that a current-only backup marked. */
static void tally_current_only(seg_out *s, const uint8_t *payload, size_t len)
{
    kd__txn_cursor c;
    kd__value_rec v;
    kd__write_rec w;
    char why[200];
    if (kd__txn_open(&c, payload, len, why, sizeof why))
        return; /* kd__bk_read checked it already */
    for (uint32_t i = 0; i < c.n_values; i++)
        if (kd__txn_next_value(&c, &v, why, sizeof why))
            return;
    for (uint32_t i = 0; i < c.n_writes; i++) {
        if (kd__txn_next_write(&c, &w, why, sizeof why))
            return;
        if ((w.flags & KD__WRITE_PRUNED) && w.pruned_by == KD__COMPACTION_CURRENT_ONLY) {
            kd__sha_update(&s->sha, w.write_id, KD__HASH_LEN);
            s->marked++;
        }
    }
}

/* Does the restored log's own record of KD__COMPACTION_CURRENT_ONLY
 * account for exactly the writes it flags? (A backup of a database that
 * was itself restored from a current-only backup holds that record.) */
static int accounted_already(kd_db *db, seg_out *s)
{
    char key[24], *json = NULL, hex[KD_ID_HEX];
    size_t len = 0;
    snprintf(key, sizeof key, "%010u", KD__COMPACTION_CURRENT_ONLY);
    kd__allow_reserved(1);
    int rc = kd_get(db, KD__NS_COMPACTIONS, key, &json, &len, NULL);
    kd__allow_reserved(0);
    kd__comp_tally t = {0};
    if (rc == KD_OK)
        kd__comp_parse(&t, json, len); /* as verify reads it */
    kd_free(json);
    uint8_t digest[KD__HASH_LEN];
    kd__sha sh = s->sha; /* finishing consumes it */
    kd__sha_final(&sh, digest);
    kd__hex_encode(digest, KD__HASH_LEN, hex);
    return t.recorded && t.claimed == s->marked && strcmp(t.digest, hex) == 0;
}

/* The record of the "compaction" of number KD__COMPACTION_CURRENT_ONLY (as
 * kd_compact records its own), so that verify accounts for every pruned
 * write: the writes a current-only backup marked, and those a backup
 * relabelled because the compaction that pruned them is not in it (one
 * made after the backup's end). One write, after the backup's end. */
static int account_current_only(kd_db *db, seg_out *s, int64_t as_of, char *errbuf, size_t errlen)
{
    int rc = kd__compaction_done(db, KD__COMPACTION_CURRENT_ONLY, as_of, 0, NULL, &s->sha, s->marked);
    if (rc)
        snprintf(errbuf, errlen, "cannot record the versions the backup holds without their values: %s",
                 kd_errmsg(db));
    return rc;
}

static int seg_flush(seg_out *s)
{
    size_t done = 0;
    uint64_t off = s->size - s->wbuf.len;
    while (done < s->wbuf.len) {
        ssize_t w = pwrite(s->fd, s->wbuf.data + done, s->wbuf.len - done, (off_t)(off + done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            snprintf(s->err, sizeof s->err, "cannot write segment %llu in %s: %s", (unsigned long long)s->no, s->dir,
                     strerror(e));
            return errno_rc(e);
        }
        done += (size_t)w;
    }
    kd__buf_reset(&s->wbuf);
    return KD_OK;
}

static int seg_close(seg_out *s)
{
    if (s->fd < 0)
        return KD_OK;
    int rc = seg_flush(s);
    if (!rc && fdatasync(s->fd) != 0) {
        int e = errno;
        snprintf(s->err, sizeof s->err, "cannot sync segment %llu in %s: %s", (unsigned long long)s->no, s->dir,
                 strerror(e));
        rc = errno_rc(e);
    }
    close(s->fd);
    s->fd = -1;
    return rc;
}

static int seg_new(seg_out *s)
{
    int rc = seg_close(s);
    if (rc)
        return rc;
    char name[32], p[4096];
    s->no++;
    snprintf(p, sizeof p, "%s/%s", s->dir, kd__seg_name(s->no, name));
    s->fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        int e = errno;
        snprintf(s->err, sizeof s->err, "cannot create %s: %s", p, strerror(e));
        return errno_rc(e);
    }
    uint8_t hdr[KD__SEG_HEADER_LEN];
    kd__seg_header_encode(hdr, s->no, KD__FORMAT_COMPACTED, 0); /* may hold pruned writes */
    s->size = 0;
    if (kd__buf_append(&s->wbuf, hdr, sizeof hdr)) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return KD_ENOMEM;
    }
    s->size = sizeof hdr;
    return KD_OK;
}

/* Append one record (header + payload), starting a new segment first when
 * the current one has reached the segment size, as the log does. */
static int seg_add(void *ctx, const uint8_t *rec, size_t len, const kd__bk_pos *end)
{
    seg_out *s = ctx;
    int rc;
    tally_current_only(s, rec + KD__REC_HEADER_LEN, len - KD__REC_HEADER_LEN);
    if (s->fd < 0 || s->size >= kd__restore_segment_size)
        if ((rc = seg_new(s)))
            return rc;
    if (s->wbuf.len + len > WBUF_MAX && (rc = seg_flush(s)))
        return rc;
    if (len > WBUF_MAX) {
        /* A large record goes straight to the file. */
        size_t done = 0;
        while (done < len) {
            ssize_t w = pwrite(s->fd, rec + done, len - done, (off_t)(s->size + done));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                int e = errno;
                snprintf(s->err, sizeof s->err, "cannot write segment %llu in %s: %s", (unsigned long long)s->no,
                         s->dir, strerror(e));
                return errno_rc(e);
            }
            done += (size_t)w;
        }
    } else if (kd__buf_append(&s->wbuf, rec, len)) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return KD_ENOMEM;
    }
    s->size += len;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * kd_restore
 * ---------------------------------------------------------------------- */

static int dir_state(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT)
            return KD_OK;
        snprintf(err, errlen, "cannot use %s: %s", dir, strerror(errno));
        return KD_EIO;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a directory; restore needs a new or empty directory", dir);
        return KD_EEXISTS;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return KD_EIO;
    }
    struct dirent *de;
    int empty = 1;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            empty = 0;
    closedir(d);
    if (!empty) {
        snprintf(err, errlen, "%s is not empty; restore needs a new or empty directory", dir);
        return KD_EEXISTS;
    }
    return KD_OK;
}

int kd_restore(const char *const *files, size_t n_files, const char *dir, kd_backup_info *info, char *errbuf,
               size_t errlen)
{
    char tmpbuf[1];
    if (!errbuf || !errlen) {
        errbuf = tmpbuf;
        errlen = sizeof tmpbuf;
    }
    errbuf[0] = '\0';
    if (!files || !dir) {
        snprintf(errbuf, errlen, "kd_restore: files and dir are required");
        return KD_EMISUSE;
    }
    if (n_files == 0) {
        snprintf(errbuf, errlen, "no backup file given");
        return KD_EINVALID;
    }
    kd__keep_std_fds();
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    if (dl == 0 || dl > 3000) {
        snprintf(errbuf, errlen, "database directory path is empty or too long");
        return KD_EINVALID;
    }
    char target[3100];
    snprintf(target, sizeof target, "%.*s", (int)dl, dir);
    for (size_t i = 0; i < n_files; i++)
        if (!files[i]) {
            snprintf(errbuf, errlen, "kd_restore: file %zu is NULL", i);
            return KD_EMISUSE;
        }
    int rc = dir_state(target, errbuf, errlen);
    if (rc)
        return rc;

    /* 1. The chain, from the headers. */
    kd__bk_header *hs = calloc(n_files, sizeof *hs);
    if (!hs) {
        snprintf(errbuf, errlen, "out of memory");
        return KD_ENOMEM;
    }
    uint64_t total_file = 0;
    for (size_t i = 0; i < n_files && !rc; i++) {
        uint64_t size;
        rc = kd__bk_describe(files[i], &hs[i], &size, errbuf, errlen);
        if (rc) /* KD_ENOTFOUND: no such file, as for backup info and --since */
            break;
        total_file += size;
        int incremental = hs[i].kind == KD__BK_INCREMENTAL || hs[i].kind == KD__BK_INCREMENTAL_CO;
        if (i == 0 && incremental) {
            snprintf(errbuf, errlen,
                     "%s is an incremental backup; a restore starts with a full backup (then its incrementals, in "
                     "order)",
                     files[i]);
            rc = KD_EINVALID;
        } else if (i > 0 && incremental && hs[i].kind != KD__BK_INCREMENTAL_CO &&
                   (hs[i - 1].kind == KD__BK_CURRENT || hs[i - 1].kind == KD__BK_INCREMENTAL_CO)) {
            snprintf(errbuf, errlen,
                     "%s continues a current-only backup but was not made on top of one (it lacks the old values "
                     "the current-only backup left out): make it with --since that backup",
                     files[i]);
            rc = KD_EINVALID;
        } else if (i > 0 && !incremental) {
            snprintf(errbuf, errlen, "%s is a full backup; only the first file may be one (the others are "
                     "incrementals, in order)", files[i]);
            rc = KD_EINVALID;
        } else if (i > 0 && !kd__bk_pos_equal(&hs[i].base, &hs[i - 1].end)) {
            char t1[40], t2[40];
            kd_time_format(hs[i].base.ts, t1, sizeof t1);
            kd_time_format(hs[i - 1].end.ts, t2, sizeof t2);
            const char *why = hs[i].base.ts > hs[i - 1].end.ts   ? "a gap: an incremental backup between them is "
                                                                   "missing, or it continues another history"
                              : hs[i].base.ts < hs[i - 1].end.ts ? "wrong order, or a file of another history"
                                                                 : "it belongs to another history";
            snprintf(errbuf, errlen,
                     "%s does not continue %s: it starts at %s (%llu writes), the previous file ends at %s (%llu "
                     "writes): %s",
                     files[i], files[i - 1], t1, (unsigned long long)hs[i].base.writes, t2,
                     (unsigned long long)hs[i - 1].end.writes, why);
            rc = KD_EINVALID;
        }
    }
    if (rc) {
        free(hs);
        return rc;
    }

    /* 2. The records, into a new directory next to dir. */
    char tmpdir[3200];
    char prefix[3120]; /* target (< 3100) + ".restore-" */
    snprintf(prefix, sizeof prefix, "%s.restore-", target);
    if (kd__create_temp(prefix, 1, tmpdir, sizeof tmpdir) < 0) {
        int e = errno;
        snprintf(errbuf, errlen, "cannot create a directory next to %s: %s", target, strerror(e));
        free(hs);
        return errno_rc(e);
    }
    seg_out so;
    memset(&so, 0, sizeof so);
    so.dir = tmpdir;
    so.fd = -1;
    kd__sha_init(&so.sha);
    uint64_t txns = 0, writes = 0, log_bytes = 0;
    for (size_t i = 0; i < n_files && !rc; i++) {
        int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            snprintf(errbuf, errlen, "cannot open %s: %s", files[i], strerror(e));
            rc = errno_rc(e);
            break;
        }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        kd__bk_src src = {fd, NULL, 0, 0};
        kd__bk_header h;
        char why[800];
        so.err[0] = '\0';
        rc = kd__bk_read(&src, &h, seg_add, &so, why, sizeof why);
        close(fd);
        if (rc) {
            snprintf(errbuf, errlen, "%s: %s", files[i], so.err[0] ? so.err : why);
            break;
        }
        if (!kd__bk_pos_equal(&h.base, &hs[i].base) || !kd__bk_pos_equal(&h.end, &hs[i].end)) {
            snprintf(errbuf, errlen, "%s changed while it was being restored", files[i]);
            rc = KD_EINVALID;
            break;
        }
        txns += h.txns;
        writes += h.writes;
        log_bytes += h.raw_bytes;
    }
    if (!rc && so.fd < 0) /* no records at all: an empty log */
        rc = seg_new(&so);
    if (!rc)
        rc = seg_close(&so);
    else
        seg_close(&so);
    if (rc && !errbuf[0])
        snprintf(errbuf, errlen, "%s", so.err);
    kd__buf_free(&so.wbuf);

    /* 3. Open it (replay), compare, close. */
    const kd__bk_pos *end = &hs[n_files - 1].end;
    if (!rc) {
        kd_options *o = kd_options_new();
        kd_db *db = NULL;
        char why[1200];
        if (!o) {
            rc = KD_ENOMEM;
            snprintf(errbuf, errlen, "out of memory");
        } else {
            kd_options_set_create(o, 0);
            kd_options_set_busy_timeout(o, 0);
            rc = kd_open(tmpdir, o, &db, why, sizeof why);
            kd_options_free(o);
            if (rc)
                snprintf(errbuf, errlen, "the restored database does not open: %s", why);
        }
        if (!rc) {
            pthread_mutex_lock(&db->write_mu);
            int same = db->last_ts == end->ts && db->ix.versions == end->writes &&
                       !memcmp(db->root, end->storage, KD__HASH_LEN) &&
                       !memcmp(db->views_root, end->views, KD__HASH_LEN) &&
                       !memcmp(db->vectors_root, end->vectors, KD__HASH_LEN) &&
                       !memcmp(db->auth_root, end->auth, KD__HASH_LEN);
            pthread_mutex_unlock(&db->write_mu);
            if (!same) {
                snprintf(errbuf, errlen, "the restored database's roots differ from the end of %s",
                         files[n_files - 1]);
                rc = KD_ECORRUPT;
            }
            if (!rc && (hs[0].kind == KD__BK_CURRENT || (so.marked && !accounted_already(db, &so))))
                rc = account_current_only(db, &so, hs[0].kind == KD__BK_CURRENT ? hs[0].end.ts : end->ts, errbuf,
                                          errlen);
            int crc = kd_close(db);
            if (!rc && crc) {
                snprintf(errbuf, errlen, "cannot close the restored database: %s", kd_strerror(crc));
                rc = crc;
            }
        }
    }
    /* 4. Into place. */
    if (!rc && kd__fsync_dir(tmpdir) != 0) {
        int e = errno;
        snprintf(errbuf, errlen, "cannot sync %s: %s", tmpdir, strerror(e));
        rc = errno_rc(e);
    }
    if (!rc && rename(tmpdir, target) != 0) {
        int e = errno;
        if (e == ENOTEMPTY || e == EEXIST || e == ENOTDIR) {
            snprintf(errbuf, errlen, "%s is not empty; restore needs a new or empty directory", target);
            rc = KD_EEXISTS;
        } else {
            snprintf(errbuf, errlen, "cannot rename %s to %s: %s", tmpdir, target, strerror(e));
            rc = errno_rc(e);
        }
    }
    if (rc) {
        remove_tree(tmpdir);
        free(hs);
        return rc;
    }
    /* The rename is done; until its directory is synced, a crash could
     * undo it under writes made to the restored database. */
    if (kd__fsync_parent(target) != 0) {
        snprintf(errbuf, errlen, "%s is restored, but the directory holding it cannot be synced: %s; a crash now "
                 "could undo the restore", target, strerror(errno));
        free(hs);
        return KD_EIO;
    }
    if (info) {
        kd__bk_info_public(&hs[n_files - 1], total_file, info);
        kd__bk_pos_public(&hs[0].base, &info->base);
        info->txns = txns;
        info->writes = writes;
        info->log_bytes = log_bytes;
    }
    free(hs);
    return KD_OK;
}
