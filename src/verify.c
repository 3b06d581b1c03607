/*
 * verify.c — kd_verify: re-read the whole log and check everything that can
 * be checked: record checksums (by the segment walker), that every stored
 * value hashes to its version_id, that every write_id is the hash of its
 * write, that each write's parent is the key's previous write, that
 * timestamps strictly increase, and that the causal root chain matches the
 * root stored in every transaction and the database's current root, and
 * that the views and vectors roots recomputed from the log are the
 * database's current ones, and that the live index (which may have come
 * from a checkpoint) holds exactly the log's versions and value locations.
 *
 * It rebuilds a private index while walking, so it needs no help from the
 * live one and runs while writes continue (it checks the log as it was when
 * it started).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_int.h"
#include "retention.h"
#include "store/segment.h"

/* ------------------------------------------------------------------------
 * Compaction accounting (retention.h), shared with kd_repair
 * ---------------------------------------------------------------------- */

static kd__comp_tally *tally(kd__comp_tallies *ts, uint64_t number)
{
    if (number > UINT16_MAX)
        return NULL;
    if (number >= ts->n) {
        size_t n = (size_t)number + 16;
        kd__comp_tally *t = realloc(ts->t, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + ts->n, 0, (n - ts->n) * sizeof *t);
        for (size_t i = ts->n; i < n; i++)
            kd__sha_init(&t[i].sha);
        ts->t = t;
        ts->n = n;
    }
    return &ts->t[number];
}

int kd__comp_flagged(kd__comp_tallies *ts, uint64_t number, const uint8_t write_id[KD__HASH_LEN])
{
    kd__comp_tally *t = tally(ts, number);
    if (!t)
        return KD_ENOMEM; /* pruned_by is 16 bits: only allocation fails */
    t->seen++;
    kd__sha_update(&t->sha, write_id, KD__HASH_LEN);
    return KD_OK;
}

/* compact.c writes a record as canonical JSON with members "digest" and
 * "pruned" and its number as the key. */
int kd__comp_record(kd__comp_tallies *ts, const char *key_bytes, size_t key_len, const char *json, size_t len)
{
    char key[24];
    if (key_len >= sizeof key)
        return KD_OK;
    memcpy(key, key_bytes, key_len);
    key[key_len] = '\0';
    uint64_t number = strtoull(key, NULL, 10);
    if (!number || number > UINT16_MAX)
        return KD_OK;
    kd__comp_tally *t = tally(ts, number);
    if (!t)
        return KD_ENOMEM;
    kd__comp_parse(t, json, len); /* the last record of a number wins: "started", then "done" */
    return KD_OK;
}

void kd__comp_parse(kd__comp_tally *t, const char *json, size_t len)
{
    const char *d = memmem(json, len, "\"digest\":\"", 10);
    const char *p = memmem(json, len, "\"pruned\":", 9);
    t->started = 1;
    t->recorded = 0;
    if (!d || !p || (size_t)(json + len - d) < 10 + 64 || !memmem(json, len, "\"state\":\"done\"", 14))
        return;
    t->recorded = 1;
    memcpy(t->digest, d + 10, 64);
    t->digest[64] = '\0';
    t->claimed = strtoull(p + 9, NULL, 10);
}

void kd__comp_digest(const kd__comp_tally *t, uint8_t out[KD__HASH_LEN])
{
    kd__sha sh = t->sha; /* finishing consumes it */
    kd__sha_final(&sh, out);
}

int kd__comp_check(const kd__comp_tally *t, size_t n, int interrupted, char *problem, size_t len)
{
    if (!t->seen && !t->recorded)
        return KD_OK;
    uint8_t h[KD__HASH_LEN];
    char hex[KD_ID_HEX];
    kd__comp_digest(t, h);
    kd__hex_encode(h, KD__HASH_LEN, hex);
    if (!t->recorded && t->started && (interrupted || !t->seen)) {
        if (!t->seen)
            return KD_OK; /* started, nothing marked yet: opening finishes or drops it */
        snprintf(problem, len, "compaction %zu is unfinished (compact.pending is there): reopen the database to "
                 "finish it", n);
        return KD_ECORRUPT;
    }
    if (!t->recorded) {
        snprintf(problem, len, "%llu writes are marked pruned by compaction %zu, which no compaction record "
                 "accounts for: the log was altered, this is not retention", (unsigned long long)t->seen, n);
        return KD_ECORRUPT;
    }
    if (!t->seen)
        return KD_OK; /* recorded, but this copy of the log still holds those values (restored from a
                         backup taken before it, plus an incremental one after) */
    if (t->seen != t->claimed || strcmp(hex, t->digest)) {
        if (interrupted)
            snprintf(problem, len, "compaction %zu is unfinished (compact.pending is there): reopen the "
                     "database to finish it", n);
        else
            snprintf(problem, len, "compaction %zu recorded %llu pruned writes, the log marks %llu%s: the log "
                     "was altered, this is not retention", n, (unsigned long long)t->claimed,
                     (unsigned long long)t->seen, t->seen == t->claimed ? " but other ones" : "");
        return KD_ECORRUPT;
    }
    return KD_OK;
}

void kd__comp_tallies_free(kd__comp_tallies *ts)
{
    free(ts->t);
    ts->t = NULL;
    ts->n = 0;
}

/* ------------------------------------------------------------------------
 * kd_verify
 * ---------------------------------------------------------------------- */

typedef struct vstate {
    kd__index ix;
    int64_t last_ts;
    uint8_t root[KD__HASH_LEN];
    uint8_t views_root[KD__HASH_LEN];
    uint8_t vectors_root[KD__HASH_LEN];
    uint8_t auth_root[KD__HASH_LEN];
    kd_verify_report *rep;
    kd__comp_tallies comp; /* per compaction number: its pruned writes and record */
    kd_db *db;
    uint32_t dict;    /* the segment's dictionary (set by the walk) */
    kd__buf plain;    /* a decompressed value */
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
        const char *bytes;
        size_t n;
        int zrc = kd__zvalue_plain(st->db->zdicts, st->dict, &v, &st->plain, &bytes, &n, why, whylen);
        if (zrc)
            return zrc;
        uint8_t h[KD__HASH_LEN];
        kd__sha256(bytes, n, h);
        if (memcmp(h, v.version_id, KD__HASH_LEN)) {
            char hex[KD_ID_HEX];
            kd__hex_encode(v.version_id, KD__HASH_LEN, hex);
            snprintf(why, whylen, "value %u does not hash to its version_id %.16s…", i, hex);
            return KD_ECORRUPT;
        }
        uint32_t idx = kd__index_value_find(&st->ix, v.version_id);
        if (idx == KD__NO_VALUE || kd__index_val(&st->ix, idx)->seg == KD__VAL_GONE) {
            /* where replay puts it: after the record header */
            if (kd__index_value_add(&st->ix, v.version_id, (uint32_t)seg,
                                    (uint32_t)(off + KD__REC_HEADER_LEN + v.offset),
                                    v.len | (v.zstd ? KD__VALUE_ZSTD : 0), 0, &idx))
                return KD_ENOMEM;
            st->rep->values++;
        }
        st->rep->bytes += n;
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
        if (w.flags & KD__WRITE_PRUNED) {
            if (kd__comp_flagged(&st->comp, w.pruned_by, w.write_id))
                return KD_ENOMEM;
            st->rep->pruned++;
        }
        if (!(w.flags & KD__WRITE_DELETED)) {
            v.value = kd__index_value_find(&st->ix, w.version_id);
            if (v.value == KD__NO_VALUE && (w.flags & KD__WRITE_PRUNED) &&
                kd__index_value_add(&st->ix, w.version_id, KD__VAL_GONE, 0, 0, 0, &v.value))
                return KD_ENOMEM;
            if (v.value == KD__NO_VALUE ||
                (!(w.flags & KD__WRITE_PRUNED) && kd__index_val(&st->ix, v.value)->seg == KD__VAL_GONE)) {
                snprintf(why, whylen, "write %u (%.*s/%.*s%s) refers to a value that is not stored before it", i,
                         (int)w.ns_len, w.ns, (int)w.key_len, w.key, v.value == KD__NO_VALUE ? "" : ", removed");
                return KD_ECORRUPT;
            }
            if (w.ns_len == strlen(KD__NS_COMPACTIONS) && !memcmp(w.ns, KD__NS_COMPACTIONS, w.ns_len)) {
                const kd__val *val = kd__index_val(&st->ix, v.value);
                if (val->seg == seg && val->off >= off + KD__REC_HEADER_LEN &&
                    val->off + (uint64_t)kd__val_bytes(val) <= off + KD__REC_HEADER_LEN + len) {
                    const char *json = (const char *)payload + (val->off - off - KD__REC_HEADER_LEN);
                    size_t n = kd__val_bytes(val);
                    if (kd__val_zstd(val)) {
                        int rc = kd__zvalue_decode(st->db->zdicts, st->dict, json, n, KD__REC_MAX_PAYLOAD, &st->plain,
                                                   why, whylen);
                        if (rc)
                            return rc;
                        json = st->plain.data;
                        n = st->plain.len;
                    }
                    if (kd__comp_record(&st->comp, w.key, w.key_len, json, n))
                        return KD_ENOMEM;
                }
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

/* Does live value entry vidx hold the bytes of `id`? A value can be
 * stored twice (written again while a compaction that then failed was
 * removing it): the live index may point at the second copy where the log,
 * replayed, points at the first. Either is right when its bytes hash to
 * the id. Shared index lock held. */
static int holds_value(kd_db *db, uint32_t vidx, const uint8_t id[KD__HASH_LEN])
{
    kd__buf scratch = KD__BUF_INIT;
    const char *p = NULL;
    size_t n = 0;
    uint8_t h[KD__HASH_LEN];
    int ok = kd__value_bytes(db, vidx, &scratch, &p, &n) == KD_OK;
    if (ok)
        kd__sha256(p, n, h);
    kd__buf_free(&scratch);
    return ok && !memcmp(h, id, KD__HASH_LEN);
}

/* Compare the live index with the one rebuilt from the log, up to the last
 * write verify read (the live one may have more). In pieces under the
 * shared index lock, so writers are never held for long. */
static int index_matches(kd_db *db, vstate *st, char *problem, size_t len)
{
    int64_t upto = st->last_ts;
    uint64_t live_versions = 0;
    int rc = KD_OK;
    enum { PIECE = 512 };
    for (size_t i = 0; i < st->ix.ns_count && !rc; i++) {
        const kd__ns *pns = st->ix.ns_list[i];
        for (size_t j = 0; j < pns->n_all && !rc; j++) {
            if (j == 0)
                pthread_rwlock_rdlock(&db->ix_lock);
            else if (j % PIECE == 0)
                kd__ix_relock(db, NULL, NULL);
            const kd__key *pk = pns->all[j];
            const kd__ns *lns = kd__index_ns_find(&db->ix, pns->ws, pns->ws_len, pns->name, pns->name_len);
            const kd__key *lk = lns ? kd__index_key_find(&db->ix, lns, pk->name, pk->len) : NULL;
            if (!lk || kd__key_upper(lk, upto) != pk->n) {
                snprintf(problem, len, "the in-memory index differs from the log for %.200s/%.200s (%s); reopen "
                         "after deleting index.ckpt", pns->name, pk->name, lk ? "versions" : "missing key");
                rc = KD_ECORRUPT;
                break;
            }
            for (uint32_t v = 0; v < pk->n; v++) {
                const kd__ver *a = &pk->vers[v], *b = &lk->vers[v];
                int same = a->ts == b->ts && !memcmp(a->write_id, b->write_id, KD__HASH_LEN) &&
                           (a->value == KD__NO_VALUE) == (b->value == KD__NO_VALUE);
                if (same && a->value != KD__NO_VALUE) {
                    const kd__val *x = kd__index_val(&st->ix, a->value), *y = kd__index_val(&db->ix, b->value);
                    same = !memcmp(x->id, y->id, KD__HASH_LEN) &&
                           ((x->seg == y->seg && x->off == y->off && x->stored == y->stored) ||
                            (x->seg != KD__VAL_GONE && y->seg != KD__VAL_GONE && holds_value(db, b->value, x->id)));
                }
                if (!same) {
                    snprintf(problem, len, "the in-memory index differs from the log at version %u of %.200s/%.200s; "
                             "reopen after deleting index.ckpt", v, pns->name, pk->name);
                    rc = KD_ECORRUPT;
                    break;
                }
            }
        }
        if (pns->n_all)
            pthread_rwlock_unlock(&db->ix_lock);
    }
    if (rc)
        return rc;
    /* and nothing more than the log up to there */
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < db->ix.ns_count; i++) {
        const kd__ns *ns = db->ix.ns_list[i];
        for (size_t j = 0; j < ns->n_all; j++)
            live_versions += kd__key_upper(ns->all[j], upto);
    }
    pthread_rwlock_unlock(&db->ix_lock);
    if (live_versions != st->rep->versions) {
        snprintf(problem, len, "the in-memory index holds %llu versions up to the log's last write, the log %llu; "
                 "reopen after deleting index.ckpt", (unsigned long long)live_versions,
                 (unsigned long long)st->rep->versions);
        return KD_ECORRUPT;
    }
    return KD_OK;
}

/* Every compaction's pruned writes are the ones its record accounts for. */
static int compactions_match(kd_db *db, vstate *st, char *problem, size_t len)
{
    char pending[4096];
    snprintf(pending, sizeof pending, "%s/compact.pending", db->path);
    int interrupted = access(pending, F_OK) == 0;
    for (size_t n = 1; n < st->comp.n; n++) {
        int rc = kd__comp_check(&st->comp.t[n], n, interrupted, problem, len);
        if (rc)
            return rc;
    }
    return KD_OK;
}

int kd_verify(kd_db *db, kd_verify_report *rep)
{
    if (!db || !rep)
        return KD_EMISUSE;
    if (db->core) /* a workspace handle: database-wide */
        db = db->core;
    memset(rep, 0, sizeof *rep);
    vstate st;
    memset(&st, 0, sizeof st);
    st.rep = rep;
    st.db = db;
    st.last_ts = 0; /* as replay: timestamps are positive */
    if (kd__index_init(&st.ix))
        return kd__err(db, KD_ENOMEM, "out of memory");

    /* Snapshot the segments and their lengths; writes may go on, but no
     * compaction (it replaces segment files). */
    pthread_mutex_lock(&db->compact_mu);
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
        rc = kd__segment_walk(p, nos[i], sizes[i], 0, verify_txn, &st, &st.dict, &end, &size, err, sizeof err);
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
    if (!rc)
        rc = index_matches(db, &st, rep->problem, sizeof rep->problem);
    if (!rc)
        rc = compactions_match(db, &st, rep->problem, sizeof rep->problem);
    pthread_mutex_unlock(&db->compact_mu);
    kd__index_free(&st.ix);
    kd__buf_free(&st.plain);
    kd__comp_tallies_free(&st.comp);
    if (rc == KD_EFORMAT || rc == KD_EIO)
        return kd__err(db, rc, "%s", rep->problem);
    if (rc)
        return kd__err(db, rc == KD_ENOMEM ? rc : KD_ECORRUPT, "%s", rep->problem);
    return KD_OK;
}
