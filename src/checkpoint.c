/*
 * checkpoint.c — the in-memory index written to <dir>/index.ckpt, so that
 * opening costs reading the checkpoint plus replaying the log after it
 * instead of replaying the whole log (docs/FORMAT.md, "Index checkpoint").
 *
 * Writing runs while writes go on. The position, roots and counts are taken
 * under write_mu (so they describe one moment of the log: every record up
 * to the newest is applied); then the index is copied out in small pieces,
 * each under the shared index lock, keeping only versions with a timestamp
 * at or before that moment. The log's writer never waits longer than one
 * piece. The file is written beside its final name, synced and renamed.
 *
 * Loading trusts nothing it cannot check cheaply: the header and body carry
 * CRC-32C checksums, every count and index is bounded, and the log must
 * still hold the named record with the same storage root (which, through
 * the hash chain, stands for every write before it). Anything wrong means
 * the checkpoint is ignored (and logged) and the whole log is replayed; a
 * checkpoint is a cache, never the only copy of anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "util/crc32c.h"
#include "util/le.h"

#define CKPT_FILE "index.ckpt"
#define CKPT_MAGIC "KDCKPT\0\n"
#define CKPT_VERSION 2u
#define CKPT_ROOTS 4u /* storage, views, vectors, auth (a file with another count is not used) */
#define CKPT_FIXED 96u
#define CKPT_HEADER (CKPT_FIXED + 32u * CKPT_ROOTS + 4u)

_Static_assert(sizeof(kd__ver) == 44, "kd__ver is stored as is");
_Static_assert(sizeof(kd__val) == 44, "kd__val is stored as is");

/* ------------------------------------------------------------------------
 * Where the checkpoint stands against the log
 * ---------------------------------------------------------------------- */

void kd__ckpt_mark(kd_db *db, uint64_t seg, uint64_t end)
{
    __atomic_store_n(&db->ckpt_seg, seg, __ATOMIC_RELAXED);
    __atomic_store_n(&db->ckpt_end, end, __ATOMIC_RELAXED);
}

void kd__checkpoint_lag(kd_db *db, uint64_t *tail, uint64_t *covered)
{
    /* Without ckpt_mu (a compaction or consolidation holds it for a whole
     * segment rewrite, and kd_stats asks): an estimate, exact when no
     * checkpoint is being written. */
    uint64_t cseg = __atomic_load_n(&db->ckpt_seg, __ATOMIC_RELAXED);
    uint64_t cend = __atomic_load_n(&db->ckpt_end, __ATOMIC_RELAXED);
    uint64_t total = 0, cov = 0;
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < db->nsegs; i++) {
        uint64_t size = __atomic_load_n(&db->segs[i].size, __ATOMIC_RELAXED);
        total += size;
        if (db->segs[i].no < cseg)
            cov += size;
        else if (db->segs[i].no == cseg)
            cov += cend;
    }
    pthread_rwlock_unlock(&db->ix_lock);
    *covered = cov;
    *tail = total - cov;
}

int kd__checkpoint_due(kd_db *db)
{
    if (!db->opt.checkpoint_bytes)
        return 0;
    uint64_t tail, covered;
    kd__checkpoint_lag(db, &tail, &covered);
    /* Opening replays the tail; rewriting the whole index costs about a
     * third of the log it covers. Waiting for the tail to reach an eighth
     * of what is covered keeps both bounded: replay under an eighth of the
     * log, rewriting under ~3x the log over the database's life. */
    uint64_t need = covered / 8 > db->opt.checkpoint_bytes ? covered / 8 : db->opt.checkpoint_bytes;
    return tail >= need;
}

/* ------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------- */

typedef struct ckw {
    int fd;
    uint8_t *buf;
    size_t n, cap;
    uint32_t crc;  /* CRC-32C of the body so far */
    uint64_t body; /* body bytes written */
    int err;       /* errno of the first failed write */
} ckw;

static void ckw_flush(ckw *w)
{
    if (!w->n || w->err)
        return;
    w->crc = kd__crc32c_more(w->crc, w->buf, w->n);
    size_t done = 0;
    while (done < w->n) {
        ssize_t r = write(w->fd, w->buf + done, w->n - done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            w->err = errno;
            return;
        }
        done += (size_t)r;
    }
    w->body += w->n;
    w->n = 0;
}

/* Gather bytes; they are written out by ckw_flush between pieces, never
 * while the index lock is held (a write can wait on the disk). */
static void ckw_put(ckw *w, const void *p, size_t n)
{
    if (w->err || n == 0)
        return;
    if (n > w->cap - w->n) {
        size_t cap = w->cap * 2 > w->n + n ? w->cap * 2 : w->n + n;
        uint8_t *b = realloc(w->buf, cap);
        if (!b) {
            w->err = ENOMEM;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->n, p, n);
    w->n += n;
}

static void ckw_flush_cb(void *w)
{
    ckw_flush(w);
}

typedef struct snap {
    uint64_t seg, rec_off, end;
    int64_t ts;
    uint8_t roots[CKPT_ROOTS][KD__HASH_LEN];
    size_t n_ns, n_vals;
    uint64_t keys, versions; /* counted while writing */
} snap;

/* Pieces of work done under one hold of the shared lock. */
enum { PIECE_VERSIONS = 8192, PIECE_KEYS = 512 };

/* The versions of one key up to s->ts, in pieces. */
static void write_key(kd_db *db, ckw *w, snap *s, uint32_t ns_index, kd__key *k, int *held)
{
    uint32_t n = kd__key_upper(k, s->ts);
    if (n == 0)
        return;
    uint8_t h[10];
    kd__put_u32(h, ns_index);
    h[4] = (uint8_t)(k->len & 0xff);
    h[5] = (uint8_t)(k->len >> 8);
    kd__put_u32(h + 6, n);
    ckw_put(w, h, sizeof h);
    ckw_put(w, k->name, k->len);
    /* versions start 4-byte aligned (the body starts so): opening uses
     * them in place, in the mapping */
    static const uint8_t zeros[3];
    ckw_put(w, zeros, (4 - (w->body + w->n) % 4) % 4);
    for (uint32_t i = 0; i < n;) {
        uint32_t take = n - i < PIECE_VERSIONS ? n - i : PIECE_VERSIONS;
        /* k->vers may move when the writer grows it between pieces; the
         * first n entries never change. */
        ckw_put(w, &k->vers[i], (size_t)take * sizeof(kd__ver));
        i += take;
        if (i < n)
            kd__ix_relock(db, ckw_flush_cb, w);
    }
    s->keys++;
    s->versions += n;
    *held += 1 + n / 64;
}

static void write_body(kd_db *db, ckw *w, snap *s)
{
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < s->n_ns; i++) {
        const kd__ns *ns = db->ix.ns_list[i];
        uint8_t l = (uint8_t)ns->ws_len;
        ckw_put(w, &l, 1);
        ckw_put(w, ns->ws, ns->ws_len);
        l = (uint8_t)ns->name_len;
        ckw_put(w, &l, 1);
        ckw_put(w, ns->name, ns->name_len);
    }
    for (size_t i = 0; i < s->n_ns && !w->err; i++) {
        kd__ns *ns = db->ix.ns_list[i];
        int held = 0;
        for (size_t j = 0; j < ns->n_all && !w->err; j++) {
            write_key(db, w, s, (uint32_t)i, ns->all[j], &held);
            if (held >= PIECE_KEYS) {
                held = 0;
                kd__ix_relock(db, ckw_flush_cb, w); /* ns_list may move; the namespace does not */
            }
        }
    }
    uint8_t end[10];
    kd__put_u32(end, UINT32_MAX); /* no namespace has this index: the keys end */
    memset(end + 4, 0, 6);
    ckw_put(w, end, sizeof end);
    for (size_t v = 0; v < s->n_vals && !w->err;) {
        size_t chunk = v >> KD__VAL_CHUNK_BITS, in = v & ((1u << KD__VAL_CHUNK_BITS) - 1);
        size_t take = (1u << KD__VAL_CHUNK_BITS) - in;
        if (take > s->n_vals - v)
            take = s->n_vals - v;
        ckw_put(w, &db->ix.val_chunks[chunk][in], take * sizeof(kd__val));
        v += take;
        kd__ix_relock(db, ckw_flush_cb, w);
    }
    pthread_rwlock_unlock(&db->ix_lock);
    ckw_flush(w);
}

static void encode_header(uint8_t *h, const snap *s, uint64_t body, uint32_t body_crc)
{
    memset(h, 0, CKPT_HEADER);
    memcpy(h, CKPT_MAGIC, 8);
    kd__put_u32(h + 8, CKPT_VERSION);
    kd__put_u32(h + 12, CKPT_ROOTS);
    kd__put_u64(h + 16, s->seg);
    kd__put_u64(h + 24, s->rec_off);
    kd__put_u64(h + 32, s->end);
    kd__put_u64(h + 40, (uint64_t)s->ts);
    kd__put_u64(h + 48, s->n_ns);
    kd__put_u64(h + 56, s->keys);
    kd__put_u64(h + 64, s->versions);
    kd__put_u64(h + 72, s->n_vals);
    kd__put_u64(h + 80, body);
    kd__put_u32(h + 88, body_crc);
    for (unsigned r = 0; r < CKPT_ROOTS; r++)
        memcpy(h + CKPT_FIXED + 32 * r, s->roots[r], KD__HASH_LEN);
    kd__put_u32(h + CKPT_HEADER - 4, kd__crc32c(h, CKPT_HEADER - 4));
}

static int io_rc(int en)
{
    return en == ENOSPC || en == EDQUOT ? KD_ENOSPACE : en == ENOMEM ? KD_ENOMEM : KD_EIO;
}

int kd__checkpoint_write(kd_db *db, char *what, size_t whatlen)
{
    snap s;
    memset(&s, 0, sizeof s);
    pthread_mutex_lock(&db->ckpt_mu);
    pthread_mutex_lock(&db->write_mu);
    int failed = kd__failed(db);
    s.seg = db->last_rec_seg;
    s.rec_off = db->last_rec_off;
    s.end = db->last_rec_end;
    s.ts = db->last_ts;
    memcpy(s.roots[0], db->root, KD__HASH_LEN);
    memcpy(s.roots[1], db->views_root, KD__HASH_LEN);
    memcpy(s.roots[2], db->vectors_root, KD__HASH_LEN);
    memcpy(s.roots[3], db->auth_root, KD__HASH_LEN);
    pthread_rwlock_rdlock(&db->ix_lock);
    s.n_ns = db->ix.ns_count;
    s.n_vals = db->ix.n_vals;
    pthread_rwlock_unlock(&db->ix_lock);
    pthread_mutex_unlock(&db->write_mu);

    int rc = KD_OK;
    if (failed) {
        snprintf(what, whatlen, "skipped: the database refuses writes after a failed sync");
        rc = KD_EIO;
        goto out;
    }
    if (s.seg == 0 || (s.seg == db->ckpt_seg && s.end == db->ckpt_end)) {
        snprintf(what, whatlen, "nothing new to checkpoint");
        goto out;
    }
    char path[4200], tmp[4200];
    snprintf(path, sizeof path, "%s/" CKPT_FILE, db->path);
    snprintf(tmp, sizeof tmp, "%s/" CKPT_FILE ".tmp", db->path);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ckw w = {.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), .cap = 1u << 20};
    if (w.fd < 0) {
        rc = io_rc(errno);
        snprintf(what, whatlen, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    uint8_t h[CKPT_HEADER];
    memset(h, 0, sizeof h); /* a header that cannot pass until the end */
    if (!(w.buf = malloc(w.cap))) {
        close(w.fd);
        unlink(tmp);
        rc = KD_ENOMEM;
        snprintf(what, whatlen, "out of memory");
        goto out;
    }
    if (pwrite(w.fd, h, sizeof h, 0) != (ssize_t)sizeof h)
        w.err = errno ? errno : EIO;
    else if (lseek(w.fd, sizeof h, SEEK_SET) < 0)
        w.err = errno;
    if (!w.err)
        write_body(db, &w, &s);
    free(w.buf);
    if (!w.err) {
        encode_header(h, &s, w.body, w.crc);
        if (pwrite(w.fd, h, sizeof h, 0) != (ssize_t)sizeof h || fdatasync(w.fd) != 0)
            w.err = errno ? errno : EIO;
    }
    close(w.fd);
    /* The log it names must be durable before the checkpoint is: opening
     * trusts the checkpoint for every record before its end (only the
     * last one is read again), so a checkpoint over log pages a crash
     * lost would open a log with holes. */
    if (!w.err && kd__sync_log(db) != KD_OK) {
        unlink(tmp);
        rc = KD_EIO;
        snprintf(what, whatlen, "not written: %s", kd_errmsg(db));
        goto out;
    }
    if (!w.err && (rename(tmp, path) != 0 || kd__fsync_dir(db->path) != 0))
        w.err = errno ? errno : EIO;
    if (w.err) {
        unlink(tmp);
        rc = io_rc(w.err);
        snprintf(what, whatlen, "cannot write %s: %s", path, strerror(w.err));
        goto out;
    }
    kd__ckpt_mark(db, s.seg, s.end);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    snprintf(what, whatlen, "%llu keys, %llu versions, %zu values, %llu bytes in %.0f ms",
             (unsigned long long)s.keys, (unsigned long long)s.versions, s.n_vals,
             (unsigned long long)(w.body + sizeof h), ms);
out:
    pthread_mutex_unlock(&db->ckpt_mu);
    return rc;
}

/* ------------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p;
    size_t left;
} rd;

static const uint8_t *take(rd *r, size_t n)
{
    if (n > r->left)
        return NULL;
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

/* The record at (seg, off) of the log ends at `end` and carries `root`. */
static int log_holds(kd_db *db, uint64_t seg, uint64_t off, uint64_t end, const uint8_t *root, char *why,
                     size_t whylen)
{
    char name[32], p[4200];
    snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(seg, name));
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "%s: %s", name, strerror(errno));
        return 0;
    }
    int ok = 0;
    uint8_t hdr[KD__REC_HEADER_LEN], *payload = NULL;
    uint8_t type;
    uint32_t len, crc;
    if (off < KD__SEG_HEADER_LEN || pread(fd, hdr, sizeof hdr, (off_t)off) != (ssize_t)sizeof hdr ||
        kd__rec_header_decode(hdr, &type, &len, &crc) != 0)
        snprintf(why, whylen, "no record at offset %llu of %s", (unsigned long long)off, name);
    else if (off + KD__REC_HEADER_LEN + len != end || len < KD__TXN_HEADER_LEN)
        snprintf(why, whylen, "the record at offset %llu of %s has another length", (unsigned long long)off, name);
    else if (!(payload = malloc(len)))
        snprintf(why, whylen, "out of memory");
    else if (pread(fd, payload, len, (off_t)(off + KD__REC_HEADER_LEN)) != (ssize_t)len ||
             kd__crc32c(payload, len) != crc)
        snprintf(why, whylen, "the record at offset %llu of %s does not check", (unsigned long long)off, name);
    else if (memcmp(payload + 8, root, KD__HASH_LEN))
        snprintf(why, whylen, "the log at offset %llu of %s has another history", (unsigned long long)off, name);
    else
        ok = 1;
    free(payload);
    close(fd);
    return ok;
}

typedef struct hdr {
    uint64_t seg, rec_off, end;
    int64_t ts;
    uint64_t n_ns, n_keys, n_versions, n_vals, body;
    uint32_t body_crc;
    const uint8_t *roots;
} hdr;

static int parse_header(const uint8_t *m, size_t size, hdr *h, char *why, size_t whylen)
{
    if (size < CKPT_HEADER || memcmp(m, CKPT_MAGIC, 8)) {
        snprintf(why, whylen, "not a checkpoint");
        return 0;
    }
    if (kd__get_u32(m + 8) != CKPT_VERSION || kd__get_u32(m + 12) != CKPT_ROOTS) {
        snprintf(why, whylen, "written in another checkpoint format (version %u, %u roots)", kd__get_u32(m + 8),
                 kd__get_u32(m + 12));
        return 0;
    }
    if (kd__crc32c(m, CKPT_HEADER - 4) != kd__get_u32(m + CKPT_HEADER - 4)) {
        snprintf(why, whylen, "header checksum mismatch");
        return 0;
    }
    h->seg = kd__get_u64(m + 16);
    h->rec_off = kd__get_u64(m + 24);
    h->end = kd__get_u64(m + 32);
    h->ts = (int64_t)kd__get_u64(m + 40);
    h->n_ns = kd__get_u64(m + 48);
    h->n_keys = kd__get_u64(m + 56);
    h->n_versions = kd__get_u64(m + 64);
    h->n_vals = kd__get_u64(m + 72);
    h->body = kd__get_u64(m + 80);
    h->body_crc = kd__get_u32(m + 88);
    h->roots = m + CKPT_FIXED;
    if (h->body != size - CKPT_HEADER) {
        snprintf(why, whylen, "%llu body bytes instead of %llu", (unsigned long long)(size - CKPT_HEADER),
                 (unsigned long long)h->body);
        return 0;
    }
    /* Every count must fit the body (a namespace takes 4 bytes at least, a
     * key 11, a version or a value 44) before anything is allocated. */
    if (h->n_vals >= UINT32_MAX - 1 || h->n_ns > h->body / 4 || h->n_keys > h->body / 11 ||
        h->n_versions > h->body / 44 || h->n_vals > h->body / 44 ||
        h->n_ns * 4 + h->n_keys * 11 + h->n_versions * 44 + h->n_vals * 44 > h->body) {
        snprintf(why, whylen, "counts that do not fit the file");
        return 0;
    }
    return 1;
}

/* Size of each segment file, for checking value positions. */
static int seg_sizes(kd_db *db, const uint64_t *segs, size_t nsegs, uint64_t *sizes)
{
    for (size_t i = 0; i < nsegs; i++) {
        char name[32], p[4200];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(segs[i], name));
        if (stat(p, &st) != 0)
            return 0;
        sizes[i] = (uint64_t)st.st_size;
    }
    return 1;
}

static int load_body(kd_db *db, const hdr *h, rd *r, const uint64_t *segs, const uint64_t *sizes, size_t nsegs,
                     uint64_t tail_bytes, char *why, size_t whylen)
{
    const uint8_t *body = r->p; /* 4-byte aligned in the mapping */
    kd__index *ix = &db->ix;
    /* Room for the tail too: a write costs ~150 bytes of log at least. */
    size_t room = (size_t)(tail_bytes / 150);
    if (h->n_keys + room < SIZE_MAX / 2 && kd__index_reserve(ix, (size_t)(h->n_keys + room), 0))
        return KD_ENOMEM;
    kd__ns **ns = calloc(h->n_ns ? h->n_ns : 1, sizeof *ns);
    kd__key_load *kl = NULL;
    if (!ns)
        return KD_ENOMEM;
    int rc = KD_OK;
#define BAD(...) do { snprintf(why, whylen, __VA_ARGS__); rc = KD_ECORRUPT; goto out; } while (0)
    for (uint64_t i = 0; i < h->n_ns; i++) {
        const uint8_t *l, *ws, *nl, *name;
        if (!(l = take(r, 1)) || !*l || !(ws = take(r, *l)) || !(nl = take(r, 1)) || !*nl || !(name = take(r, *nl)))
            BAD("namespace %llu is cut short", (unsigned long long)i);
        if (kd__index_ns_find(ix, (const char *)ws, *l, (const char *)name, *nl))
            BAD("namespace %llu appears twice", (unsigned long long)i);
        if ((rc = kd__index_ns_get(ix, (const char *)ws, *l, (const char *)name, *nl, &ns[i])))
            goto out;
    }
    uint64_t keys = 0, versions = 0;
    if (!(kl = malloc((h->n_keys ? h->n_keys : 1) * sizeof *kl))) {
        rc = KD_ENOMEM;
        goto out;
    }
    for (;;) {
        const uint8_t *kh = take(r, 10), *name, *vers;
        if (!kh)
            BAD("key %llu is cut short", (unsigned long long)keys);
        uint32_t nsi = kd__get_u32(kh), n = kd__get_u32(kh + 6);
        size_t len = (size_t)kh[4] | (size_t)kh[5] << 8;
        if (nsi == UINT32_MAX)
            break;
        if (keys == h->n_keys || nsi >= h->n_ns || len == 0 || len > 1024 || n == 0 || !(name = take(r, len)) ||
            !take(r, (4 - (size_t)(r->p - body) % 4) % 4) || !(vers = take(r, (size_t)n * sizeof(kd__ver))))
            BAD("key %llu is malformed", (unsigned long long)keys);
        int64_t prev = 0;
        for (uint32_t i = 0; i < n; i++) {
            kd__ver v;
            memcpy(&v, vers + (size_t)i * sizeof v, sizeof v);
            if (v.ts <= prev || v.ts > h->ts || (v.value != KD__NO_VALUE && v.value >= h->n_vals))
                BAD("version %u of key %llu is out of bounds", i, (unsigned long long)keys);
            prev = v.ts;
        }
        kl[keys++] = (kd__key_load){ns[nsi], (const char *)name, (uint16_t)len, n, vers};
        versions += n;
    }
    if (keys != h->n_keys || versions != h->n_versions)
        BAD("%llu keys and %llu versions instead of %llu and %llu", (unsigned long long)keys,
            (unsigned long long)versions, (unsigned long long)h->n_keys, (unsigned long long)h->n_versions);
    /* Keys are distinct: the writer took each from the index once. Their
     * versions stay in the mapping until a key gets a new one. */
    if ((rc = kd__index_keys_load(ix, kl, (size_t)keys, 1)))
        goto out;
    const uint8_t *vals = take(r, (size_t)h->n_vals * sizeof(kd__val));
    if (!vals || r->left)
        BAD("the value table has another size");
    for (uint64_t i = 0; i < h->n_vals; i++) {
        kd__val v;
        memcpy(&v, vals + i * sizeof v, sizeof v);
        if (v.seg == KD__VAL_GONE) /* removed by retention: only its id is kept */
            continue;
        /* segment numbers have no gaps (opening checks it next) */
        size_t s = v.seg >= segs[0] && v.seg - segs[0] < nsegs ? (size_t)(v.seg - segs[0]) : nsegs;
        if (s == nsegs || segs[s] != v.seg || v.seg > h->seg || v.off < KD__SEG_HEADER_LEN ||
            (uint64_t)v.off + kd__val_bytes(&v) > sizes[s])
            BAD("value %llu lies outside the log", (unsigned long long)i);
    }
    rc = kd__index_values_load(ix, vals, (size_t)h->n_vals, room);
#undef BAD
out:
    free(kl);
    free(ns);
    return rc;
}

int kd__checkpoint_load(kd_db *db, const uint64_t *segs, size_t nsegs, uint64_t *seg, uint64_t *end)
{
    *seg = *end = 0;
    char path[4200], why[600] = "";
    snprintf(path, sizeof path, "%s/" CKPT_FILE, db->path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            kd__log(db, KD_LOG_WARN, "%s: %s; replaying the whole log", path, strerror(errno));
        return KD_OK;
    }
    struct stat st;
    uint8_t *m = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        kd__log(db, KD_LOG_WARN, "%s: cannot read it; replaying the whole log", path);
        return KD_OK;
    }
    size_t size = (size_t)st.st_size;
    uint64_t *sizes = calloc(nsegs ? nsegs : 1, sizeof *sizes);
    int rc = KD_OK, used = 0;
    hdr h;
    if (!sizes) {
        rc = KD_ENOMEM;
        goto out;
    }
    if (!parse_header(m, size, &h, why, sizeof why))
        goto out;
    if (!nsegs || h.seg < segs[0] || h.seg > segs[nsegs - 1]) {
        snprintf(why, sizeof why, "it names segment %llu, which the log does not have", (unsigned long long)h.seg);
        goto out;
    }
    if (!seg_sizes(db, segs, nsegs, sizes)) {
        snprintf(why, sizeof why, "cannot stat the segments");
        goto out;
    }
    if (!log_holds(db, h.seg, h.rec_off, h.end, h.roots, why, sizeof why))
        goto out;
    if (kd__crc32c(m + CKPT_HEADER, (size_t)h.body) != h.body_crc) {
        snprintf(why, sizeof why, "body checksum mismatch");
        goto out;
    }
    uint64_t tail = 0;
    for (size_t i = 0; i < nsegs; i++)
        if (segs[i] > h.seg)
            tail += sizes[i];
        else if (segs[i] == h.seg)
            tail += sizes[i] - h.end;
    rd r = {m + CKPT_HEADER, (size_t)h.body};
    rc = load_body(db, &h, &r, segs, sizes, nsegs, tail, why, sizeof why);
    if (rc == KD_ECORRUPT) {
        rc = KD_OK;
        goto out;
    }
    if (rc)
        goto out;
    /* the versions point into it: the index unmaps it when no key uses it
     * any more, or at close */
    if ((rc = kd__index_map_add(&db->ix, m, size, h.n_keys)))
        goto out; /* ENOMEM: kd_open fails and frees the index */
    used = 1;
    memcpy(db->root, h.roots, KD__HASH_LEN);
    memcpy(db->views_root, h.roots + 32, KD__HASH_LEN);
    memcpy(db->vectors_root, h.roots + 64, KD__HASH_LEN);
    memcpy(db->auth_root, h.roots + 96, KD__HASH_LEN);
    db->last_ts = h.ts;
    db->last_rec_seg = h.seg;
    db->last_rec_off = h.rec_off;
    db->last_rec_end = h.end;
    kd__ckpt_mark(db, h.seg, h.end);
    *seg = h.seg;
    *end = h.end;
    kd__log(db, KD_LOG_INFO, "%s: loaded %llu keys, %llu versions; replaying the log after it", path,
            (unsigned long long)h.n_keys, (unsigned long long)h.n_versions);
out:
    if (!used && rc == KD_OK) {
        /* Start again from an empty index: the log has everything. */
        kd__index_free(&db->ix);
        rc = kd__index_init(&db->ix);
        kd__log(db, KD_LOG_WARN, "%s is not used (%s); replaying the whole log", path, why);
    }
    free(sizes);
    if (!used)
        munmap(m, size);
    return rc;
}

/* ------------------------------------------------------------------------
 * Moving cold version arrays into the checkpoint's mapping
 * ---------------------------------------------------------------------- */

/* Keys, and versions, moved under one hold of the writers' locks. */
enum { RELEASE_BATCH = 256, RELEASE_VERSIONS = 16384 };

typedef struct rel_item {
    kd__ns *ns;
    const char *name;
    uint16_t len;
    uint32_t n;
    const kd__ver *vers;
} rel_item;

static int64_t mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

typedef struct rel_tally {
    uint64_t keys, versions, freed, young;
    int64_t max_hold, total_hold;
    size_t batches;
} rel_tally;

/* One batch under write_mu + the exclusive ix_lock: every key that still
 * has exactly the versions the file holds (none newer, none newer than
 * cutoff) uses them in place. */
static void release_batch(kd_db *db, const rel_item *it, size_t n, int64_t cutoff, rel_tally *t)
{
    /* Fault the batch's pages of the mapping in before taking the locks,
     * so the writers do not wait on them. */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)it[i].vers, *end = p + (size_t)it[i].n * sizeof(kd__ver);
        for (; p < end; p += 4096)
            sink ^= *p;
        sink ^= end[-1];
    }
    (void)sink;
    pthread_mutex_lock(&db->write_mu);
    kd__ix_wrlock(db);
    int64_t t0 = mono_now();
    for (size_t i = 0; i < n; i++) {
        kd__key *k = kd__index_key_find(&db->ix, it[i].ns, it[i].name, it[i].len);
        if (!k || k->vers == it[i].vers)
            continue;
        if (k->n != it[i].n || k->vers[k->n - 1].ts > cutoff) { /* written since, or lately */
            t->young++;
            continue;
        }
        if (memcmp(k->vers, it[i].vers, (size_t)k->n * sizeof(kd__ver)))
            continue;
        uint64_t before = db->ix.bytes;
        kd__index_key_borrow(&db->ix, k, it[i].vers);
        t->freed += before - db->ix.bytes;
        t->keys++;
        t->versions += k->n;
    }
    int64_t held = mono_now() - t0;
    pthread_rwlock_unlock(&db->ix_lock);
    pthread_mutex_unlock(&db->write_mu);
    t->batches++;
    t->total_hold += held;
    if (held > t->max_hold)
        t->max_hold = held;
}

int kd__checkpoint_release(kd_db *db, int64_t min_age_ns, char *what, size_t whatlen)
{
    char path[4200], why[600] = "";
    snprintf(path, sizeof path, "%s/" CKPT_FILE, db->path);
    /* Under ckpt_mu the file is the one ckpt_seg/ckpt_end describe (a
     * writer renames it into place under ckpt_mu). */
    pthread_mutex_lock(&db->ckpt_mu);
    uint64_t cseg = db->ckpt_seg, cend = db->ckpt_end;
    uint8_t *m = MAP_FAILED;
    size_t size = 0;
    int en = 0;
    if (cseg) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0)
            en = errno;
        else if (st.st_size > 0 &&
                 (m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
            en = errno;
        else
            size = (size_t)st.st_size;
        if (fd >= 0)
            close(fd);
    }
    pthread_mutex_unlock(&db->ckpt_mu);
    if (!cseg) {
        snprintf(what, whatlen, "no checkpoint to move versions into yet");
        return KD_OK;
    }
    if (m == MAP_FAILED) {
        snprintf(what, whatlen, "cannot map %s: %s", path, strerror(en ? en : EINVAL));
        return io_rc(en ? en : EIO);
    }
    hdr h;
    int rc = KD_OK;
    kd__ns **ns = NULL;
    rel_item *items = NULL;
    rel_tally t = {0};
    if (!parse_header(m, size, &h, why, sizeof why) || kd__crc32c(m + CKPT_HEADER, (size_t)h.body) != h.body_crc) {
        snprintf(what, whatlen, "%s: %s", path, why[0] ? why : "body checksum mismatch");
        rc = KD_EIO;
        goto out;
    }
    if (h.seg != cseg || h.end != cend) {
        snprintf(what, whatlen, "%s is not the checkpoint this database last wrote or loaded", path);
        rc = KD_EBUSY;
        goto out;
    }
    ns = calloc(h.n_ns ? h.n_ns : 1, sizeof *ns);
    items = malloc(RELEASE_BATCH * sizeof *items);
    if (!ns || !items) {
        snprintf(what, whatlen, "out of memory");
        rc = KD_ENOMEM;
        goto out;
    }
    /* Register the mapping first (so a key moved into it is counted), with
     * no users: if none moves, the trim at the end unmaps it. */
    pthread_mutex_lock(&db->write_mu);
    kd__ix_wrlock(db);
    rc = kd__index_map_add(&db->ix, m, size, 0);
    pthread_rwlock_unlock(&db->ix_lock);
    pthread_mutex_unlock(&db->write_mu);
    if (rc) {
        snprintf(what, whatlen, "out of memory");
        goto out;
    }
    uint8_t *mine = m;
    m = MAP_FAILED; /* the index's now */

    rd r = {mine + CKPT_HEADER, (size_t)h.body};
    const uint8_t *body = r.p;
    pthread_rwlock_rdlock(&db->ix_lock);
    for (uint64_t i = 0; i < h.n_ns; i++) {
        const uint8_t *l, *ws, *nl, *name;
        if (!(l = take(&r, 1)) || !(ws = take(&r, *l)) || !(nl = take(&r, 1)) || !(name = take(&r, *nl)))
            break;
        ns[i] = kd__index_ns_find(&db->ix, (const char *)ws, *l, (const char *)name, *nl); /* never freed */
    }
    pthread_rwlock_unlock(&db->ix_lock);
    /* written before both the checkpoint's moment and min_age ago */
    uint64_t batch_versions = 0;
    int64_t cutoff = kd_now() - min_age_ns;
    if (cutoff > h.ts)
        cutoff = h.ts;
    size_t n = 0;
    for (;;) {
        const uint8_t *kh = take(&r, 10), *name, *vers;
        if (!kh)
            break;
        uint32_t nsi = kd__get_u32(kh), nv = kd__get_u32(kh + 6);
        size_t len = (size_t)kh[4] | (size_t)kh[5] << 8;
        if (nsi == UINT32_MAX || nsi >= h.n_ns || !(name = take(&r, len)) ||
            !take(&r, (4 - (size_t)(r.p - body) % 4) % 4) || !(vers = take(&r, (size_t)nv * sizeof(kd__ver))))
            break;
        if (!ns[nsi] || nv == 0)
            continue;
        items[n++] = (rel_item){ns[nsi], (const char *)name, (uint16_t)len, nv, (const kd__ver *)(const void *)vers};
        batch_versions += nv;
        if (n == RELEASE_BATCH || batch_versions >= RELEASE_VERSIONS) {
            release_batch(db, items, n, cutoff, &t);
            n = 0;
            batch_versions = 0;
        }
    }
    if (n)
        release_batch(db, items, n, cutoff, &t);
    pthread_mutex_lock(&db->write_mu);
    kd__ix_wrlock(db);
    size_t unmapped = kd__index_maps_trim(&db->ix);
    db->mem.young_keys = t.young;
    size_t maps = db->ix.n_maps;
    pthread_rwlock_unlock(&db->ix_lock);
    pthread_mutex_unlock(&db->write_mu);
    snprintf(what, whatlen,
             "%llu keys (%llu versions) moved to the checkpoint, %llu bytes freed, %llu kept (written lately); "
             "writers held %zux, max %.0f us, mean %.0f us; %zu mapping%s (%zu unmapped)",
             (unsigned long long)t.keys, (unsigned long long)t.versions, (unsigned long long)t.freed,
             (unsigned long long)t.young, t.batches,
             (double)t.max_hold / 1e3, t.batches ? (double)t.total_hold / 1e3 / (double)t.batches : 0.0, maps,
             maps == 1 ? "" : "s", unmapped);
out:
    free(items);
    free(ns);
    if (m != MAP_FAILED)
        munmap(m, size);
    return rc;
}
