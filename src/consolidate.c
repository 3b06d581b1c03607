/*
 * consolidate.c — the cold tier: sealed log segments whose writes are all
 * older than a threshold, rewritten with their values compressed by zstd
 * (kd_consolidate; the upkeep task "consolidation").
 *
 * A run:
 *   1. seals the newest segment when its writes are all older than the
 *      cutoff (the upkeep thread only once it holds 4 MiB);
 *   2. picks the sealed segments not consolidated yet (format below 3)
 *      whose newest write is older than the cutoff: the next segment's
 *      first write is later than all of theirs;
 *   3. takes the dictionary: the newest zdict file; if there is none, one
 *      trained from a sample of those segments' values, kept (written and
 *      synced before any segment names it) only when it compresses the
 *      sample at least 10 % smaller than no dictionary does;
 *   4. per segment, under compact_mu and ckpt_mu (let go in between, so a
 *      backup, verify or compaction waits for one segment only): removes
 *      index.ckpt (value offsets change) and rewrites it (rewrite.c: each
 *      value compressed when that makes it smaller; format 3, naming the
 *      dictionary); the upkeep thread first checks the disk has room;
 *   5. writes a fresh checkpoint.
 * A crash leaves every segment either as it was or consolidated (each is
 * renamed into place whole); a dictionary written by a run that then
 * crashed is used by the next.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "rewrite.h"
#include "store/segment.h"

#define ZLEVEL 3                    /* zstd level: cold data is written once, read now and then */
#define SEAL_BYTES (4u << 20)       /* the upkeep thread seals a newest segment this big */
#define SAMPLE_BYTES (4u << 20)     /* values sampled to train a dictionary */
#define SAMPLE_PIECE (8u << 10)     /* at most this much of one value */
#define SAMPLE_MIN_COUNT 64         /* fewer samples: no dictionary */
#define SAMPLE_MIN_BYTES (32u << 10)
#define DICT_BYTES (64u << 10)      /* a trained dictionary's size at most */
#define DICT_CHECK 2000             /* samples compressed to judge a dictionary */
#define SPARE_BYTES (256u << 20)    /* free disk space the upkeep thread leaves beside a rewrite */

typedef struct sampler {
    kd__buf bytes;
    size_t *sizes;
    size_t n, cap;
    size_t budget; /* bytes this segment may still add */
} sampler;

static int sample_txn(void *arg, uint64_t seg, uint64_t off, uint8_t type, const uint8_t *payload, size_t len,
                      char *why, size_t whylen)
{
    (void)seg, (void)off;
    sampler *s = arg;
    kd__txn_cursor c;
    if (type != KD__REC_TXN || kd__txn_open(&c, payload, len, why, whylen))
        return KD_ECORRUPT;
    for (uint32_t i = 0; i < c.n_values; i++) {
        kd__value_rec v;
        if (kd__txn_next_value(&c, &v, why, whylen))
            return KD_ECORRUPT;
        if (v.zstd || !v.len)
            continue;
        size_t take = v.len < SAMPLE_PIECE ? v.len : SAMPLE_PIECE;
        size_t *grown = kd__grow(s->sizes, &s->cap, s->n, sizeof *grown, 1024);
        if (!grown)
            return KD_ENOMEM;
        s->sizes = grown;
        if (kd__buf_append(&s->bytes, v.data, take))
            return KD_ENOMEM;
        s->sizes[s->n++] = take;
        if (take >= s->budget)
            return 1; /* enough from this segment */
        s->budget -= take;
    }
    return KD_OK;
}

/* Compressed size of the first DICT_CHECK samples with `e`. */
static uint64_t sample_cost(kd__zenc *e, const sampler *s, kd__buf *scratch)
{
    uint64_t total = 0;
    size_t at = 0;
    for (size_t i = 0; i < s->n && i < DICT_CHECK; i++) {
        int c = kd__zenc_value(e, s->bytes.data + at, s->sizes[i], scratch);
        total += c == 1 ? scratch->len : s->sizes[i];
        at += s->sizes[i];
    }
    return total;
}

/* A dictionary for segments `nos`: the newest one there is, else one
 * trained now (written as number 1 + the newest), else none (*no = 0). */
static int pick_dictionary(kd_db *db, const uint64_t *nos, size_t n, kd__buf *dict, uint32_t *no, int *trained)
{
    char why[600];
    *trained = 0;
    *no = kd__zdict_newest(db->path);
    if (*no) {
        int rc = kd__zdict_read(db->path, *no, dict, why, sizeof why);
        return rc ? kd__err(db, rc, "%s", why) : KD_OK;
    }
    sampler s;
    memset(&s, 0, sizeof s);
    int rc = KD_OK;
    size_t per = SAMPLE_BYTES / (n ? n : 1);
    for (size_t i = 0; i < n && !rc; i++) {
        char name[32], p[4096];
        snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(nos[i], name));
        s.budget = per < SAMPLE_PIECE ? SAMPLE_PIECE : per;
        uint64_t end, size;
        rc = kd__segment_walk(p, nos[i], 0, 0, sample_txn, &s, NULL, &end, &size, why, sizeof why);
        if (rc == 1)
            rc = KD_OK;
        if (rc)
            rc = kd__err(db, rc, "%s", why);
    }
    if (!rc && s.n >= SAMPLE_MIN_COUNT && s.bytes.len >= SAMPLE_MIN_BYTES &&
        kd__zdict_train(s.bytes.data, s.sizes, (unsigned)s.n, DICT_BYTES, dict) == KD_OK) {
        kd__zenc *with = kd__zenc_new(dict->data, dict->len, 1, ZLEVEL), *without = kd__zenc_new(NULL, 0, 0, ZLEVEL);
        kd__buf scratch = KD__BUF_INIT;
        if (!with || !without) {
            rc = kd__err(db, KD_ENOMEM, "out of memory");
        } else if (sample_cost(with, &s, &scratch) * 10 <= sample_cost(without, &s, &scratch) * 9) {
            *no = 1;
            rc = kd__zdict_write(db->path, *no, dict->data, dict->len, why, sizeof why);
            if (rc)
                rc = kd__err(db, rc, "%s", why);
            *trained = !rc;
        }
        kd__buf_free(&scratch);
        kd__zenc_free(with);
        kd__zenc_free(without);
    }
    if (!*trained)
        *no = 0;
    kd__buf_free(&s.bytes);
    free(s.sizes);
    return rc;
}

/* The sealed segments to consolidate (compact_mu held): *out, ascending. */
static int pick_segments(kd_db *db, int64_t cutoff, uint64_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&db->write_mu);
    size_t nsegs = db->nsegs;
    uint64_t *nos = malloc(nsegs * sizeof *nos);
    uint64_t active_size = db->segs[nsegs - 1].size;
    int64_t last_ts = db->last_ts;
    for (size_t i = 0; nos && i < nsegs; i++)
        nos[i] = db->segs[i].no;
    pthread_mutex_unlock(&db->write_mu);
    if (!nos)
        return kd__err(db, KD_ENOMEM, "out of memory");
    int rc = KD_OK;
    size_t n = 0;
    for (size_t i = 0; i + 1 < nsegs && !rc; i++) {
        uint32_t format, dict;
        int64_t next_first;
        if ((rc = kd__seg_read_header(db, nos[i], &format, &dict)) || format >= KD__FORMAT_CONSOLIDATED)
            continue;
        if ((rc = kd__seg_first_ts(db, nos[i + 1], i + 2 == nsegs ? active_size : 0, &next_first)))
            break;
        if (next_first == INT64_MAX) /* the newest segment is empty */
            next_first = last_ts + 1;
        if (next_first <= cutoff)
            nos[n++] = nos[i]; /* every write of segment i is before next_first */
    }
    if (rc || !n) {
        free(nos);
        return rc;
    }
    *out = nos;
    *n_out = n;
    return KD_OK;
}

/* Segment `no` rewritten compressed (compact_mu held): index.ckpt goes
 * first (value offsets change), under ckpt_mu. */
static int rewrite_one(kd_db *db, const kd__rewrite_spec *sp, uint64_t no, kd__rewrite_stats *st)
{
    char p[4200];
    int rc = KD_OK;
    pthread_mutex_lock(&db->ckpt_mu);
    snprintf(p, sizeof p, "%s/index.ckpt", db->path);
    if (unlink(p) != 0 && errno != ENOENT)
        rc = kd__err(db, KD_EIO, "consolidation: cannot remove %s: %s", p, strerror(errno));
    else if (kd__fsync_dir(db->path))
        rc = kd__err(db, KD_EIO, "consolidation: cannot sync %s", db->path);
    if (!rc) {
        kd__ckpt_mark(db, 0, 0);
        rc = kd__seg_rewrite(db, sp, no, st);
    }
    pthread_mutex_unlock(&db->ckpt_mu);
    if (!rc && kd__fsync_dir(db->path))
        rc = kd__err(db, KD_EIO, "consolidation: cannot sync %s", db->path);
    return rc;
}

/* The upkeep thread rewrites a segment only when the disk has room for
 * its copy and some to spare, so that writers never find the disk full
 * because of it; a full disk is logged once per run. */
static int room_for(kd_db *db, uint64_t no)
{
    struct statvfs fs;
    pthread_rwlock_rdlock(&db->ix_lock);
    uint64_t size = db->segs[no - db->segs[0].no].size;
    pthread_rwlock_unlock(&db->ix_lock);
    if (statvfs(db->path, &fs) != 0)
        return 1; /* cannot tell: the rewrite's own errors say */
    uint64_t free_bytes = (uint64_t)fs.f_bavail * fs.f_frsize;
    if (free_bytes >= size + SPARE_BYTES)
        return 1;
    kd__log(db, KD_LOG_WARN, "consolidation: %llu bytes free, %llu needed to rewrite segment %llu and leave %u MiB "
            "for writes: skipped", (unsigned long long)free_bytes, (unsigned long long)(size + SPARE_BYTES),
            (unsigned long long)no, SPARE_BYTES >> 20);
    return 0;
}

static int consolidate_run(kd_db *db, int64_t cutoff, int upkeep, int *relocked, kd_consolidate_report *out)
{
    /* Seal the newest segment when all of it is old enough. */
    pthread_mutex_lock(&db->write_mu);
    uint64_t active = db->segs[db->nsegs - 1].size;
    int64_t last_ts = db->last_ts;
    pthread_mutex_unlock(&db->write_mu);
    int rc = KD_OK;
    if (active > KD__SEG_HEADER_LEN && last_ts < cutoff && (!upkeep || active >= SEAL_BYTES))
        rc = kd__seal_segment(db);
    uint64_t *nos = NULL;
    size_t n = 0;
    if (!rc)
        rc = pick_segments(db, cutoff, &nos, &n);
    if (rc || !n)
        return rc;
    kd__buf dict = KD__BUF_INIT;
    uint32_t dict_no = 0;
    rc = pick_dictionary(db, nos, n, &dict, &dict_no, &out->dictionary_trained);
    kd__zenc *enc = NULL;
    if (!rc && !(enc = kd__zenc_new(dict_no ? dict.data : NULL, dict_no ? dict.len : 0, dict_no, ZLEVEL)))
        rc = kd__err(db, KD_ENOMEM, "out of memory (or a damaged dictionary zdict-%08u)", dict_no);
    kd__buf_free(&dict);
    out->dictionary = dict_no;
    kd__rewrite_spec sp = {.enc = enc, .cancelled = upkeep ? kd__upkeep_stopping : NULL};
    kd__rewrite_stats st = {0};
    /* One segment at a time, each under compact_mu (held on entry) and
     * ckpt_mu, both let go in between: a backup, verify or compaction
     * waits for one segment, not for the whole run. */
    for (size_t i = 0; i < n && !rc; i++) {
        if (i > 0) {
            pthread_mutex_unlock(&db->compact_mu);
            if (upkeep ? kd__upkeep_stopping(db) || pthread_mutex_trylock(&db->compact_mu)
                       : pthread_mutex_lock(&db->compact_mu)) {
                *relocked = 0; /* the rest next time */
                break;
            }
        }
        if (upkeep && !room_for(db, nos[i]))
            break;
        rc = rewrite_one(db, &sp, nos[i], &st);
    }
    kd__zenc_free(enc);
    free(nos);
    out->segments = st.segments;
    out->values_compressed = st.values_compressed;
    out->value_bytes_before = st.value_bytes_in;
    out->value_bytes_after = st.value_bytes_out;
    out->bytes_saved = st.bytes_saved;
    if (st.segments) {
        kd__seg_release_retired(db); /* else the upkeep thread or close does */
        char what[256];
        if (kd__checkpoint_write(db, what, sizeof what))
            kd__log(db, KD_LOG_WARN, "consolidation: no checkpoint written afterwards: %s", kd_errmsg(db));
    }
    return rc;
}

int kd__consolidate(kd_db *db, int64_t older_than_ns, int upkeep, kd_consolidate_report *out)
{
    kd_consolidate_report ignored;
    if (!out)
        out = &ignored;
    memset(out, 0, sizeof *out);
    if (!db)
        return KD_EMISUSE;
    if (older_than_ns < 0)
        return kd__err(db, KD_EINVALID, "the age of the segments to consolidate must not be negative");
    if (kd__failed(db))
        return kd__err(db, KD_EIO, "the database stopped writing after an I/O error; reopen it");
    /* The upkeep thread does not wait behind a backup or a compaction. */
    if (upkeep) {
        if (pthread_mutex_trylock(&db->compact_mu))
            return KD_OK;
    } else {
        pthread_mutex_lock(&db->compact_mu);
    }
    int64_t cutoff = older_than_ns ? kd_now() - older_than_ns : INT64_MAX;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int held = 1; /* consolidate_run lets compact_mu go between segments */
    int rc = consolidate_run(db, cutoff, upkeep, &held, out);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (held)
        pthread_mutex_unlock(&db->compact_mu);
    if (!rc && out->segments)
        kd__log(db, KD_LOG_INFO, "consolidation: %llu segments, %llu values compressed (%llu → %llu bytes), "
                "dictionary %u%s, %llu bytes of log freed in %.0f ms", (unsigned long long)out->segments,
                (unsigned long long)out->values_compressed, (unsigned long long)out->value_bytes_before,
                (unsigned long long)out->value_bytes_after, out->dictionary,
                out->dictionary_trained ? " (trained now)" : "", (unsigned long long)out->bytes_saved,
                (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    return rc;
}

KD_EXPORT int kd_consolidate(kd_db *db, int64_t older_than_ns, kd_consolidate_report *out)
{
    if (db && db->core) /* a workspace handle: the whole database */
        db = db->core;
    kd_consolidate_report r;
    memset(&r, 0, sizeof r);
    struct timespec t0, t1, wall;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_REALTIME, &wall);
    int rc = kd__consolidate(db, older_than_ns, 0, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (db && rc != KD_EINVALID) /* reported as the upkeep task, as kd_compact is */
        kd__upkeep_consolidation_ran(db, (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec,
                                     (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec), rc,
                                     &r);
    if (out)
        *out = r;
    return rc;
}
