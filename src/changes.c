/*
 * changes.c — kd_changes: the log replayed as a stream of writes, in log
 * order, for export, and later for backups, sync and watch streams.
 *
 * It walks the segments as they were when it started (like kd_verify) and
 * decodes each transaction. A value stored in the same transaction is taken
 * from there (the writer stores new values in the order of the writes that
 * first use them, so a cursor finds them); any other value was stored
 * earlier and is read through the index like any get.
 *
 * Starting late. A walk that reads a sealed segment whole notes the
 * segment's greatest write timestamp (kd__seg.max_ts); later walks skip a
 * sealed segment whose noted timestamp is at or before `since` without
 * opening it. So paging through the log (export --history through a
 * server, a watch stream's catch-up) reads the segments before its cursor
 * once, not once per page.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "store/segment.h"

typedef struct cstate {
    kd_db *db;
    const char *ws;      /* workspace */
    size_t ws_len;
    int is_default;      /* it is "default", which is never dropped */
    const char *ns;      /* filter, or NULL */
    size_t ns_len;
    int64_t since, until;
    unsigned flags;      /* KD_CHANGES_* */
    kd_change_fn fn;
    void *ctx;
    int stopped;         /* what fn returned, when it stopped us */
    int64_t seg_max;     /* greatest write timestamp seen in this segment */
    kd__buf value;       /* NUL-terminated copy of a value */
    uint32_t dict;       /* the segment's dictionary (set by the walk) */
} cstate;

/* Did write w go with its dropped workspace (kd__ns.dropped_before)? A
 * tombstone too: compaction flags no tombstone pruned. */
static int went_with_workspace(kd_db *db, const kd__write_rec *w)
{
    pthread_rwlock_rdlock(&db->ix_lock);
    const kd__ns *s = kd__index_ns_find(&db->ix, w->ws, w->ws_len, w->ns, w->ns_len);
    int gone = s && s->dropped_before && w->ts < s->dropped_before;
    pthread_rwlock_unlock(&db->ix_lock);
    return gone;
}

static int emit_txn(void *arg, uint64_t seg, uint64_t off, uint8_t type, const uint8_t *payload, size_t len, char *why,
                    size_t whylen)
{
    cstate *st = arg;
    kd__txn_cursor c;
    if (type != KD__REC_TXN || kd__txn_open(&c, payload, len, why, whylen))
        return KD_ECORRUPT;
    /* Values of this transaction, in order. */
    kd__value_rec vals[64];
    kd__value_rec *v = vals;
    if (c.n_values > 64 && !(v = malloc(c.n_values * sizeof *v)))
        return KD_ENOMEM;
    int rc = KD_OK;
    for (uint32_t i = 0; i < c.n_values && !rc; i++)
        if (kd__txn_next_value(&c, &v[i], why, whylen))
            rc = KD_ECORRUPT;
    uint32_t cursor = 0;
    for (uint32_t i = 0; i < c.n_writes && !rc; i++) {
        kd__write_rec w;
        if (kd__txn_next_write(&c, &w, why, whylen)) {
            rc = KD_ECORRUPT;
            break;
        }
        if (w.ts > st->seg_max)
            st->seg_max = w.ts;
        int deleted = (w.flags & KD__WRITE_DELETED) != 0;
        int fresh = !deleted && cursor < c.n_values && !memcmp(v[cursor].version_id, w.version_id, KD__HASH_LEN);
        const kd__value_rec *mine = fresh ? &v[cursor++] : NULL;
        if (w.ts <= st->since || w.ts > st->until)
            continue;
        if (w.ws_len != st->ws_len || memcmp(w.ws, st->ws, w.ws_len))
            continue;
        /* the database's own namespaces stay inside; vectors are user data */
        if (w.ns_len >= 3 && !memcmp(w.ns, "_kd", 3) && !kd__is_vectors_ns(w.ns, w.ns_len))
            continue;
        if (st->ns && (w.ns_len != st->ns_len || memcmp(w.ns, st->ns, w.ns_len)))
            continue;
        /* A pruned write is not a change one can replay: its value is gone,
         * or it went with its dropped workspace (then its value may still
         * be stored for another write, which does not bring it back). It
         * is given only to a reader that asked (KD_CHANGES_PRUNED). */
        int gone = (w.flags & KD__WRITE_PRUNED)                            ? KD_PRUNED_RETENTION
                   : !st->is_default && went_with_workspace(st->db, &w) ? KD_PRUNED_WORKSPACE
                                                                          : 0;
        if (gone && !(st->flags & KD_CHANGES_PRUNED))
            continue;

        char ns[256], key[1025];
        memcpy(ns, w.ns, w.ns_len);
        ns[w.ns_len] = '\0';
        memcpy(key, w.key, w.key_len);
        key[w.key_len] = '\0';
        kd_change ch;
        memset(&ch, 0, sizeof ch);
        ch.ns = ns;
        ch.key = key;
        ch.version.timestamp = w.ts;
        ch.version.deleted = deleted;
        kd__hex_encode(w.write_id, KD__HASH_LEN, ch.version.write_id);
        if (w.n_parents)
            kd__hex_encode(w.parent, KD__HASH_LEN, ch.version.previous_write_id);
        kd__hex_encode(w.node, 16, ch.node_id);
        char *owned = NULL;
        if (gone) {
            ch.version.pruned = gone;
            if (!deleted)
                kd__hex_encode(w.version_id, KD__HASH_LEN, ch.version.version_id);
        } else if (!deleted) {
            kd__hex_encode(w.version_id, KD__HASH_LEN, ch.version.version_id);
            if (mine && mine->zstd) {
                if ((rc = kd__zvalue_decode(st->db->zdicts, st->dict, mine->data, mine->len, KD__REC_MAX_PAYLOAD,
                                            &st->value, why, whylen)))
                    break;
                ch.value = st->value.data;
                ch.value_len = st->value.len;
            } else if (mine) {
                kd__buf_reset(&st->value);
                if (kd__buf_append(&st->value, mine->data, mine->len)) {
                    rc = KD_ENOMEM;
                    break;
                }
                ch.value = st->value.data;
                ch.value_len = mine->len;
            } else {
                rc = kd_get_value(st->db, ch.version.version_id, &owned, &ch.value_len);
                if (rc == KD_EPRUNED) { /* retention removed it: not a change one can replay */
                    rc = KD_OK;
                    if (!(st->flags & KD_CHANGES_PRUNED))
                        continue;
                    ch.version.pruned = KD_PRUNED_RETENTION;
                    ch.value_len = 0;
                }
                if (rc)
                    break;
                ch.value = owned;
            }
        }
        int r = st->fn(st->ctx, &ch);
        free(owned);
        if (r) {
            st->stopped = r;
            rc = r;
        }
    }
    if (v != vals)
        free(v);
    return rc;
}

/* A sealed segment was read whole: note its greatest timestamp (if the
 * segment is still there). */
static void note_max(kd_db *db, uint64_t no, int64_t max_ts)
{
    pthread_mutex_lock(&db->write_mu);
    if (db->nsegs && no >= db->segs[0].no) {
        size_t i = (size_t)(no - db->segs[0].no);
        if (i + 1 < db->nsegs && db->segs[i].no == no)
            db->segs[i].max_ts = max_ts;
    }
    pthread_mutex_unlock(&db->write_mu);
}

int kd_changes(kd_db *db, const char *ns, int64_t since, kd_change_fn fn, void *ctx)
{
    return kd_changes_ex(db, ns, since, 0, fn, ctx);
}

int kd_changes_ex(kd_db *db, const char *ns, int64_t since, unsigned flags, kd_change_fn fn, void *ctx)
{
    if (!db || !fn)
        return KD_EMISUSE;
    if (flags & ~KD_CHANGES_PRUNED)
        return kd__err(db, KD_EINVALID, "kd_changes_ex: unknown flags 0x%x", flags & ~KD_CHANGES_PRUNED);
    KD__WS_ENTER(db);
    cstate st;
    memset(&st, 0, sizeof st);
    st.db = db;
    st.ws = ws_ ? ws_ : KD__DEFAULT_WS;
    st.ws_len = strlen(st.ws);
    st.is_default = !strcmp(st.ws, KD__DEFAULT_WS);
    st.ns = ns;
    st.ns_len = ns ? strlen(ns) : 0;
    st.since = since;
    st.flags = flags;
    st.fn = fn;
    st.ctx = ctx;

    /* The log as it is now; writes not yet visible (not yet durable) are
     * left out like any reader would. */
    pthread_mutex_lock(&db->write_mu);
    size_t nsegs = db->nsegs;
    uint64_t *nos = malloc((nsegs ? nsegs : 1) * 3 * sizeof *nos);
    if (!nos) {
        pthread_mutex_unlock(&db->write_mu);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    uint64_t *sizes = nos + nsegs;
    int64_t *maxs = (int64_t *)(sizes + nsegs);
    for (size_t i = 0; i < nsegs; i++) {
        nos[i] = db->segs[i].no;
        sizes[i] = db->segs[i].size;
        maxs[i] = db->segs[i].max_ts;
    }
    pthread_mutex_unlock(&db->write_mu);
    st.until = kd__visible(db);

    int rc = KD_OK;
    for (size_t i = 0; i < nsegs && !rc; i++) {
        int sealed = i + 1 < nsegs;
        if (sealed && maxs[i] > 0 && maxs[i] <= since)
            continue; /* every write in it is at or before since */
        char name[32], p[4096], err[512];
        snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(nos[i], name));
        uint64_t end, size;
        st.seg_max = 0;
        rc = kd__segment_walk(p, nos[i], sizes[i], 0, emit_txn, &st, &st.dict, &end, &size, err, sizeof err);
        if (rc && !st.stopped)
            kd__err(db, rc, "%s", err);
        if (!rc && sealed && end == sizes[i] && st.seg_max > 0 && !maxs[i])
            note_max(db, nos[i], st.seg_max);
    }
    free(nos);
    kd__buf_free(&st.value);
    if (st.stopped)
        return st.stopped;
    return rc;
}
