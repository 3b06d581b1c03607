/*
 * rewrite.c — one sealed segment rewritten beside itself and swapped in
 * (rewrite.h).
 *
 * The new file `log-NNNNNNNN.kdl.compact` is the old one record for record:
 * values left out or compressed as the spec says (n_values, the record's
 * length and both checksums recomputed), pruned writes flagged, every other
 * byte as it was. It is synced and renamed over the old file; a crash
 * leaves either file whole. Then, under write_mu and the exclusive index
 * lock, the index is pointed at the new offsets and the old file's
 * descriptor and mapping are retired until no reader holds a pin.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rewrite.h"
#include "store/segment.h"
#include "store/tail.h"

#define OUT_PIECE (8u << 20) /* a rewrite buffers this much before writing */

int kd__idset_build(kd__idset *s, const kd__hash32 *ids, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    s->ids = ids;
    if (!(s->slots = calloc(cap, sizeof *s->slots)))
        return KD_ENOMEM;
    s->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t h;
        memcpy(&h, ids[i], sizeof h);
        size_t j = (size_t)h & s->mask;
        while (s->slots[j])
            j = (j + 1) & s->mask;
        s->slots[j] = (uint32_t)i + 1;
    }
    return KD_OK;
}

int kd__idset_has(const kd__idset *s, const uint8_t *id)
{
    if (!s || !s->slots)
        return 0;
    uint64_t h;
    memcpy(&h, id, sizeof h);
    for (size_t j = (size_t)h & s->mask; s->slots[j]; j = (j + 1) & s->mask)
        if (!memcmp(s->ids[s->slots[j] - 1], id, KD__HASH_LEN))
            return 1;
    return 0;
}

void kd__idset_free(kd__idset *s)
{
    free(s->slots);
    memset(s, 0, sizeof *s);
}

typedef struct first_ts_ctx {
    int64_t ts;
} first_ts_ctx;

static int first_ts_cb(void *arg, uint64_t seg, uint64_t off, uint8_t type, const uint8_t *payload, size_t len,
                       char *why, size_t whylen)
{
    (void)seg, (void)off, (void)type;
    first_ts_ctx *c = arg;
    kd__txn_cursor cur;
    kd__value_rec v;
    kd__write_rec w;
    if (kd__txn_open(&cur, payload, len, why, whylen))
        return KD_ECORRUPT;
    for (uint32_t i = 0; i < cur.n_values; i++)
        if (kd__txn_next_value(&cur, &v, why, whylen))
            return KD_ECORRUPT;
    if (kd__txn_next_write(&cur, &w, why, whylen))
        return KD_ECORRUPT;
    c->ts = w.ts;
    return 1; /* stop: one record is enough */
}

int kd__seg_first_ts(kd_db *db, uint64_t no, uint64_t limit, int64_t *ts)
{
    char name[32], p[4096], err[512];
    snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(no, name));
    first_ts_ctx c = {INT64_MAX};
    uint64_t end, size;
    int rc = kd__segment_walk(p, no, limit, 1, first_ts_cb, &c, NULL, &end, &size, err, sizeof err);
    if (rc != KD_OK && rc != 1)
        return kd__err(db, rc, "%s", err);
    *ts = c.ts;
    return KD_OK;
}

static int errno_code(int e)
{
    return e == ENOSPC || e == EDQUOT ? KD_ENOSPACE : e == ENOMEM ? KD_ENOMEM : KD_EIO;
}

/* Where a value of the segment went. */
typedef struct moved {
    kd__hash32 id;
    uint32_t old_off, new_off; /* new_off 0: removed */
    uint32_t stored;           /* its new kd__val.stored */
    uint32_t vidx;             /* in the value table (resolve) */
} moved;

typedef struct rewrite {
    const kd__rewrite_spec *sp;
    kd__rewrite_stats *st;
    kd__zenc *enc;    /* sp->enc, unless the segment is consolidated already */
    int fd;           /* the new file, written in pieces of OUT_PIECE */
    uint64_t flushed; /* bytes of it written so far (out holds what follows) */
    kd__buf out;      /* the new segment */
    kd__buf rec;      /* one record's new payload */
    kd__buf z;        /* one compressed value */
    moved *mv;
    size_t n_mv, cap_mv;
    int changed;
    kd_db *db;
    uint64_t records;
    int cancelled;    /* sp->cancelled said so: stop, change nothing */
} rewrite;

static int add_moved(rewrite *rw, const uint8_t *id, uint64_t old_off, uint64_t new_off, uint32_t stored)
{
    moved *grown = kd__grow(rw->mv, &rw->cap_mv, rw->n_mv, sizeof *grown, 1024);
    if (!grown)
        return KD_ENOMEM;
    rw->mv = grown;
    moved *m = &rw->mv[rw->n_mv++];
    memcpy(m->id, id, KD__HASH_LEN);
    m->old_off = (uint32_t)old_off;
    m->new_off = (uint32_t)new_off;
    m->stored = stored;
    return KD_OK;
}

static int flush_out(rewrite *rw, char *why, size_t whylen)
{
    size_t done = 0;
    while (done < rw->out.len) {
        ssize_t w = write(rw->fd, rw->out.data + done, rw->out.len - done);
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            snprintf(why, whylen, "cannot write the rewritten segment: %s", strerror(e));
            return errno_code(e);
        }
        done += (size_t)w;
    }
    rw->flushed += rw->out.len;
    kd__buf_reset(&rw->out);
    return KD_OK;
}

/* One value into the new record: as it is, or compressed (`plain`: never). */
static int put_value(rewrite *rw, const kd__value_rec *v, int plain, uint64_t old_off, uint64_t rec_at)
{
    kd__buf *r = &rw->rec;
    const char *data = v->data;
    uint32_t len = v->len;
    int zstd = v->zstd;
    if (rw->enc && !zstd && !plain) {
        int c = kd__zenc_value(rw->enc, v->data, v->len, &rw->z);
        if (c < 0)
            return c;
        if (c == 1) {
            rw->st->values_compressed++;
            rw->st->value_bytes_in += v->len;
            rw->st->value_bytes_out += rw->z.len;
            data = rw->z.data;
            len = (uint32_t)rw->z.len;
            zstd = 1;
            rw->changed = 1;
        }
    }
    uint64_t new_off = rec_at + KD__REC_HEADER_LEN + r->len + KD__VALUE_HEADER_LEN;
    if (new_off != old_off)
        rw->changed = 1;
    if (kd__txn_put_value(r, v->version_id, data, len, zstd) ||
        add_moved(rw, v->version_id, old_off, new_off, len | (zstd ? KD__VALUE_ZSTD : 0)))
        return KD_ENOMEM;
    return KD_OK;
}

static int rewrite_txn(void *arg, uint64_t seg, uint64_t off, uint8_t type, const uint8_t *payload, size_t len,
                       char *why, size_t whylen)
{
    (void)seg;
    rewrite *rw = arg;
    const kd__rewrite_spec *sp = rw->sp;
    if (sp->cancelled && rw->records++ % 4096 == 0 && sp->cancelled(rw->db)) {
        rw->cancelled = 1;
        return 1; /* stops the walk */
    }
    kd__txn_cursor c;
    if (type != KD__REC_TXN || kd__txn_open(&c, payload, len, why, whylen))
        return KD_ECORRUPT;
    kd__buf *r = &rw->rec;
    kd__buf_reset(r);
    if (kd__buf_reserve(r, len))
        return KD_ENOMEM;
    /* Values first: count the kept ones, then the header, then them. */
    uint64_t rec_at = rw->flushed + rw->out.len; /* where this record starts in the new file */
    kd__value_rec v;
    uint32_t kept = 0;
    kd__txn_cursor c2 = c;
    for (uint32_t i = 0; i < c.n_values; i++) {
        if (kd__txn_next_value(&c2, &v, why, whylen))
            return KD_ECORRUPT;
        kept += !kd__idset_has(sp->drop_values, v.version_id);
    }
    /* The database's own records (_kd namespaces: definitions, policies,
     * auth, vectors) stay uncompressed, so that opening never needs a
     * dictionary: a lost one costs the values compressed with it, not the
     * database (docs/RETENTION.md, Damage). Their values are the ones the
     * record's _kd writes name. */
    uint8_t own[8][KD__HASH_LEN];
    size_t n_own = 0;
    int own_all = 0; /* more than fit in `own`: keep every value plain */
    for (uint32_t i = 0; i < c.n_writes && !own_all; i++) {
        kd__write_rec w;
        if (kd__txn_next_write(&c2, &w, why, whylen))
            return KD_ECORRUPT;
        if (w.ns_len >= 3 && !memcmp(w.ns, "_kd", 3) && !(w.flags & KD__WRITE_DELETED)) {
            if (n_own < sizeof own / sizeof own[0])
                memcpy(own[n_own++], w.version_id, KD__HASH_LEN);
            else
                own_all = 1;
        }
    }
    kd__txn_put_header(r, kept, c.n_writes, c.root_after);
    for (uint32_t i = 0; i < c.n_values; i++) {
        if (kd__txn_next_value(&c, &v, why, whylen))
            return KD_ECORRUPT;
        uint64_t old_off = off + KD__REC_HEADER_LEN + v.offset;
        if (kd__idset_has(sp->drop_values, v.version_id)) {
            rw->changed = 1;
            if (add_moved(rw, v.version_id, old_off, 0, 0))
                return KD_ENOMEM;
            continue;
        }
        int plain = own_all;
        for (size_t k = 0; k < n_own && !plain; k++)
            plain = !memcmp(own[k], v.version_id, KD__HASH_LEN);
        int rc = put_value(rw, &v, plain, old_off, rec_at);
        if (rc)
            return rc;
    }
    for (uint32_t i = 0; i < c.n_writes; i++) {
        kd__write_rec w;
        if (kd__txn_next_write(&c, &w, why, whylen))
            return KD_ECORRUPT;
        /* A write an earlier compaction pruned keeps that compaction's
         * number (its value may have been stored again since). */
        if (!(w.flags & KD__WRITE_PRUNED) && kd__idset_has(sp->prune_writes, w.write_id)) {
            w.flags |= KD__WRITE_PRUNED;
            w.pruned_by = sp->number;
            rw->changed = 1;
        }
        if (sp->digest && (w.flags & KD__WRITE_PRUNED) && w.pruned_by == sp->number) {
            kd__sha_update(sp->digest, w.write_id, KD__HASH_LEN);
            (*sp->marked)++;
        }
        if (kd__buf_reserve(r, KD__WRITE_HEADER_LEN + KD__HASH_LEN + w.ws_len + w.ns_len + w.key_len) ||
            kd__txn_put_write(r, &w))
            return KD_ENOMEM;
    }
    if (kd__txn_close(&c, why, whylen))
        return KD_ECORRUPT;
    uint8_t hdr[KD__REC_HEADER_LEN];
    kd__rec_header_encode(hdr, KD__REC_TXN, r->data, (uint32_t)r->len);
    if (kd__buf_append(&rw->out, hdr, sizeof hdr) || kd__buf_append(&rw->out, r->data, r->len))
        return KD_ENOMEM;
    return rw->out.len >= OUT_PIECE ? flush_out(rw, why, whylen) : KD_OK;
}

/* Which value each moved entry is (the entry whose bytes are these, in
 * segment `no`: an id stored again elsewhere has a newer one): looked up
 * under the shared lock, so that the swap itself only stores (entries of
 * the value table never move). */
static void resolve(kd_db *db, uint64_t no, moved *mv, size_t n)
{
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < n; i++)
        mv[i].vidx = kd__index_value_find_at(&db->ix, mv[i].id, (uint32_t)no, mv[i].old_off);
    pthread_rwlock_unlock(&db->ix_lock);
}

/* Point the index at the rewritten segment `no` (write_mu and the
 * exclusive index lock held: the writer reads locations under write_mu). */
static void repoint(kd_db *db, uint64_t no, const moved *mv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (mv[i].vidx == KD__NO_VALUE)
            continue;
        kd__val *v = kd__index_val(&db->ix, mv[i].vidx);
        if (v->seg != no || v->off != mv[i].old_off)
            continue; /* stored again elsewhere meanwhile */
        if (mv[i].new_off) {
            v->off = mv[i].new_off;
            v->stored = mv[i].stored;
        } else {
            v->seg = KD__VAL_GONE;
            v->off = v->stored = 0;
            db->ix.values_gone++;
        }
    }
}

size_t kd__seg_release_retired(kd_db *db)
{
    if (!__atomic_load_n(&db->n_retired, __ATOMIC_ACQUIRE))
        return 0;
    kd__ix_wrlock(db);
    size_t left = db->n_retired;
    /* Pins are taken under the shared lock: with the exclusive one held
     * and none out, nobody holds a pointer into a retired mapping. */
    if (!__atomic_load_n(&db->seg_pins, __ATOMIC_ACQUIRE)) {
        for (size_t i = 0; i < db->n_retired; i++) {
            if (db->retired[i].rmap)
                munmap((void *)db->retired[i].rmap, KD__TAIL_MAP_SIZE);
            close(db->retired[i].fd);
        }
        /* The array stays (kd_close frees it): a rewrite may have reserved
         * its slot already (retire_reserve). */
        __atomic_store_n(&db->n_retired, 0, __ATOMIC_RELEASE);
        left = 0;
    }
    pthread_rwlock_unlock(&db->ix_lock);
    return left;
}

/* Room for one more retired segment, made before the new file is renamed
 * into place: once it is, the swap must not fail. Under the exclusive
 * index lock (readers of `retired` hold it shared). */
static int retire_reserve(kd_db *db)
{
    kd__ix_wrlock(db);
    kd__seg *r = realloc(db->retired, (db->n_retired + 1) * sizeof *r); /* rare: one per segment rewritten */
    if (r)
        db->retired = r;
    pthread_rwlock_unlock(&db->ix_lock);
    return r ? KD_OK : KD_ENOMEM;
}

/* Under write_mu and the exclusive index lock, after retire_reserve. */
static void retire(kd_db *db, const kd__seg *old)
{
    db->retired[db->n_retired] = *old;
    __atomic_store_n(&db->n_retired, db->n_retired + 1, __ATOMIC_RELEASE);
}

int kd__seg_read_header(kd_db *db, uint64_t no, uint32_t *format, uint32_t *dict)
{
    char name[32], p[4096];
    snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(no, name));
    uint8_t hdr[KD__SEG_HEADER_LEN];
    uint64_t hno;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    int ok = fd >= 0 && pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr &&
             kd__seg_header_decode(hdr, &hno, format, dict) == 0 && hno == no;
    if (fd >= 0)
        close(fd);
    return ok ? KD_OK : kd__err(db, KD_ECORRUPT, "%s: bad segment header at offset 0", p);
}

/* Under write_mu and the exclusive lock: the new file, renamed into place,
 * replaces the old one in the index (retire_reserve made room). */
static void swap_in(kd_db *db, uint64_t no, int nfd, uint64_t new_size, uint32_t dict, const rewrite *rw)
{
    void *m = mmap(NULL, KD__TAIL_MAP_SIZE, PROT_READ, MAP_SHARED, nfd, 0);
    pthread_mutex_lock(&db->write_mu);
    kd__ix_wrlock(db);
    kd__seg *s = &db->segs[no - db->segs[0].no];
    retire(db, s);
    rw->st->bytes_saved += s->size > new_size ? s->size - new_size : 0;
    rw->st->segments++;
    s->fd = nfd;
    s->rmap = m == MAP_FAILED ? NULL : m;
    s->zdict = dict;
    __atomic_store_n(&s->size, new_size, __ATOMIC_RELAXED);
    repoint(db, no, rw->mv, rw->n_mv);
    pthread_rwlock_unlock(&db->ix_lock);
    pthread_mutex_unlock(&db->write_mu);
}

int kd__seg_rewrite(kd_db *db, const kd__rewrite_spec *sp, uint64_t no, kd__rewrite_stats *st)
{
    char name[32], p[4096], tmp[4200], err[512];
    snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(no, name));
    snprintf(tmp, sizeof tmp, "%s.compact", p);
    uint32_t format, dict;
    int rc = kd__seg_read_header(db, no, &format, &dict);
    if (rc)
        return rc;
    rewrite rw = {.sp = sp, .st = st, .fd = -1, .db = db};
    kd__rewrite_stats before = *st;
    if (format < KD__FORMAT_CONSOLIDATED && sp->enc) {
        rw.enc = sp->enc;
        dict = kd__zenc_dict(sp->enc);
        format = KD__FORMAT_CONSOLIDATED;
        rw.changed = 1; /* marked consolidated even if nothing compresses */
    } else if (format < KD__FORMAT_COMPACTED) {
        format = KD__FORMAT_COMPACTED;
    }
    uint8_t hdr[KD__SEG_HEADER_LEN];
    kd__seg_header_encode(hdr, no, format, dict);
    rc = kd__buf_append(&rw.out, hdr, sizeof hdr);
    if (!rc && (rw.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        rc = kd__err(db, errno_code(errno), "cannot create %s: %s", tmp, strerror(errno));
    if (!rc) {
        uint64_t end = 0, size = 0;
        rc = kd__segment_walk(p, no, 0, 0, rewrite_txn, &rw, NULL, &end, &size, err, sizeof err);
        if (rw.cancelled) {
            rc = KD_OK;
            rw.changed = 0; /* nothing is replaced */
            *st = before;
        }
        if (!rc && !rw.cancelled)
            rc = flush_out(&rw, err, sizeof err);
        if (!rc && !rw.cancelled && fdatasync(rw.fd) != 0) {
            rc = errno_code(errno);
            snprintf(err, sizeof err, "cannot sync the rewritten segment: %s", strerror(errno));
        }
        if (rc)
            rc = kd__err(db, rc, "rewriting %s: %s", name, err);
        close(rw.fd);
        if (rc || !rw.changed)
            unlink(tmp); /* failed, or already as the spec wants it (a resumed run) */
    }
    int nfd = -1;
    if (!rc && rw.changed && retire_reserve(db)) {
        rc = kd__err(db, KD_ENOMEM, "out of memory");
        unlink(tmp);
    }
    if (!rc && rw.changed && ((nfd = open(tmp, O_RDONLY | O_CLOEXEC)) < 0 || rename(tmp, p) != 0)) {
        int e = errno;
        rc = kd__err(db, errno_code(e), "cannot replace %s: %s", p, strerror(e));
        if (nfd >= 0)
            close(nfd);
        unlink(tmp);
    }
    if (!rc && rw.changed) {
        resolve(db, no, rw.mv, rw.n_mv);
        swap_in(db, no, nfd, rw.flushed, dict, &rw);
    }
    kd__buf_free(&rw.out);
    kd__buf_free(&rw.rec);
    kd__buf_free(&rw.z);
    free(rw.mv);
    return rc;
}
