/*
 * verify.c — kd_verify: re-read the whole log and check everything that can
 * be checked: record checksums (by the segment walker), that every stored
 * value hashes to its version_id, that every write_id is the hash of its
 * write, that each write's parent is the key's previous write, that
 * timestamps strictly increase, and that the causal root chain matches the
 * root stored in every transaction and the database's current root, and
 * that the views and vectors roots recomputed from the log are the
 * database's current ones.
 *
 * It rebuilds a private index while walking, so it needs no help from the
 * live one and runs while writes continue (it checks the log as it was when
 * it started).
 */
#include <stdio.h>
#include <string.h>

#include "db_int.h"
#include "store/segment.h"

typedef struct vstate {
    kd__index ix;
    int64_t last_ts;
    uint8_t root[KD__HASH_LEN];
    uint8_t views_root[KD__HASH_LEN];
    uint8_t vectors_root[KD__HASH_LEN];
    uint8_t auth_root[KD__HASH_LEN];
    kd_verify_report *rep;
} vstate;

static int verify_txn(void *ctx, uint64_t seg, uint64_t off, uint8_t type, const uint8_t *payload, size_t len,
                      char *why, size_t whylen)
{
    vstate *st = ctx;
    st->rep->records++;
    if (type != KD__REC_TXN) {
        snprintf(why, whylen, "unknown record type %u", type);
        return KD_ECORRUPT;
    }
    kd__txn_cursor c;
    if (kd__txn_open(&c, payload, len, why, whylen))
        return KD_ECORRUPT;
    for (uint32_t i = 0; i < c.n_values; i++) {
        kd__value_rec v;
        if (kd__txn_next_value(&c, &v, why, whylen))
            return KD_ECORRUPT;
        uint8_t h[KD__HASH_LEN];
        kd__sha256(v.data, v.len, h);
        if (memcmp(h, v.version_id, KD__HASH_LEN)) {
            char hex[KD_ID_HEX];
            kd__hex_encode(v.version_id, KD__HASH_LEN, hex);
            snprintf(why, whylen, "value %u does not hash to its version_id %.16s…", i, hex);
            return KD_ECORRUPT;
        }
        uint32_t idx;
        if (kd__index_value_find(&st->ix, v.version_id) == KD__NO_VALUE) {
            if (kd__index_value_add(&st->ix, v.version_id, (uint32_t)seg, (uint32_t)(off + v.offset), v.len, &idx))
                return KD_ENOMEM;
            st->rep->values++;
        }
        st->rep->bytes += v.len;
    }
    for (uint32_t i = 0; i < c.n_writes; i++) {
        kd__write_rec w;
        if (kd__txn_next_write(&c, &w, why, whylen))
            return KD_ECORRUPT;
        uint8_t id[KD__HASH_LEN];
        kd__write_id(&w, id);
        if (memcmp(id, w.write_id, KD__HASH_LEN)) {
            snprintf(why, whylen, "write %u (%.*s/%.*s): write_id does not match its contents", i, (int)w.ns_len,
                     w.ns, (int)w.key_len, w.key);
            return KD_ECORRUPT;
        }
        if (w.ts <= st->last_ts) {
            snprintf(why, whylen, "write %u: timestamp does not increase", i);
            return KD_ECORRUPT;
        }
        st->last_ts = w.ts;
        kd__ver v = {.ts = w.ts, .value = KD__NO_VALUE};
        memcpy(v.write_id, w.write_id, KD__HASH_LEN);
        if (!(w.flags & KD__WRITE_DELETED)) {
            v.value = kd__index_value_find(&st->ix, w.version_id);
            if (v.value == KD__NO_VALUE) {
                snprintf(why, whylen, "write %u refers to a value that is not stored before it", i);
                return KD_ECORRUPT;
            }
        }
        kd__ns *ns;
        kd__key *k;
        if (kd__index_ns_get(&st->ix, w.ws, w.ws_len, w.ns, w.ns_len, &ns) ||
            kd__index_key_get(&st->ix, ns, w.key, w.key_len, &k))
            return KD_ENOMEM;
        int parent_ok = k->n ? (w.n_parents == 1 && !memcmp(w.parent, k->vers[k->n - 1].write_id, KD__HASH_LEN))
                             : w.n_parents == 0;
        if (!parent_ok) {
            snprintf(why, whylen, "write %u (%.*s/%.*s): parent is not the key's previous write", i, (int)w.ns_len,
                     w.ns, (int)w.key_len, w.key);
            return KD_ECORRUPT;
        }
        if (kd__index_append(&st->ix, k, &v))
            return KD_ENOMEM;
        kd__root_advance(st->root, w.write_id);
        if (kd__is_views_ns(w.ns, w.ns_len))
            kd__views_root_advance(st->views_root, w.write_id);
        else if (kd__is_vectors_ns(w.ns, w.ns_len))
            kd__vectors_root_advance(st->vectors_root, w.write_id);
        else if (kd__is_auth_ns(w.ns, w.ns_len))
            kd__auth_root_advance(st->auth_root, w.write_id);
        st->rep->versions++;
    }
    if (kd__txn_close(&c, why, whylen))
        return KD_ECORRUPT;
    if (memcmp(st->root, c.root_after, KD__HASH_LEN)) {
        snprintf(why, whylen, "causal root chain broken: the stored root differs from the recomputed one");
        return KD_ECORRUPT;
    }
    return KD_OK;
}

int kd_verify(kd_db *db, kd_verify_report *rep)
{
    if (!db || !rep)
        return KD_EMISUSE;
    memset(rep, 0, sizeof *rep);
    vstate st;
    memset(&st, 0, sizeof st);
    st.rep = rep;
    st.last_ts = 0; /* as replay: timestamps are positive */
    if (kd__index_init(&st.ix))
        return kd__err(db, KD_ENOMEM, "out of memory");

    /* Snapshot the segments and their lengths; writes may go on. */
    pthread_mutex_lock(&db->write_mu);
    size_t nsegs = db->nsegs;
    uint64_t nos[nsegs ? nsegs : 1], sizes[nsegs ? nsegs : 1];
    for (size_t i = 0; i < nsegs; i++) {
        nos[i] = db->segs[i].no;
        sizes[i] = db->segs[i].size;
    }
    uint8_t root_now[KD__HASH_LEN], views_now[KD__HASH_LEN], vectors_now[KD__HASH_LEN], auth_now[KD__HASH_LEN];
    memcpy(root_now, db->root, KD__HASH_LEN);
    memcpy(views_now, db->views_root, KD__HASH_LEN);
    memcpy(vectors_now, db->vectors_root, KD__HASH_LEN);
    memcpy(auth_now, db->auth_root, KD__HASH_LEN);
    pthread_mutex_unlock(&db->write_mu);

    int rc = KD_OK;
    for (size_t i = 0; i < nsegs && !rc; i++) {
        char name[32], p[4096], err[512];
        snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(nos[i], name));
        uint64_t end, size;
        rc = kd__segment_walk(p, nos[i], sizes[i], 0, verify_txn, &st, &end, &size, err, sizeof err);
        if (rc) {
            snprintf(rep->problem, sizeof rep->problem, "%s", err);
        } else if (size < sizes[i]) {
            snprintf(rep->problem, sizeof rep->problem, "%.400s: file is shorter than the %llu bytes already read", p,
                     (unsigned long long)sizes[i]);
            rc = KD_ECORRUPT;
        }
        rep->segments++;
    }
    /* The root recomputed from the whole log must be the database's root
     * (unless writes went on meanwhile, which verify cannot see). */
    if (!rc) {
        pthread_mutex_lock(&db->write_mu);
        int unchanged = db->nsegs == nsegs && db->segs[nsegs - 1].size == sizes[nsegs - 1];
        pthread_mutex_unlock(&db->write_mu);
        if (unchanged && memcmp(st.root, root_now, KD__HASH_LEN)) {
            snprintf(rep->problem, sizeof rep->problem, "causal root differs from the one recomputed from the log");
            rc = KD_ECORRUPT;
        } else if (unchanged && memcmp(st.views_root, views_now, KD__HASH_LEN)) {
            snprintf(rep->problem, sizeof rep->problem,
                     "views root differs from the one recomputed from the log");
            rc = KD_ECORRUPT;
        } else if (unchanged && memcmp(st.vectors_root, vectors_now, KD__HASH_LEN)) {
            snprintf(rep->problem, sizeof rep->problem,
                     "vectors root differs from the one recomputed from the log");
            rc = KD_ECORRUPT;
        } else if (unchanged && memcmp(st.auth_root, auth_now, KD__HASH_LEN)) {
            snprintf(rep->problem, sizeof rep->problem, "auth root differs from the one recomputed from the log");
            rc = KD_ECORRUPT;
        }
    }
    kd__index_free(&st.ix);
    if (rc == KD_EFORMAT || rc == KD_EIO)
        return kd__err(db, rc, "%s", rep->problem);
    if (rc)
        return kd__err(db, rc == KD_ENOMEM ? rc : KD_ECORRUPT, "%s", rep->problem);
    return KD_OK;
}
