/*
 * compact.c — applying retention policies: removing the values of the
 * versions a policy drops from the sealed log segments.
 *
 * A run (kd_compact):
 *   1. plan, under the shared index lock while writes go on: per key, the
 *      versions its namespace's policy drops (retention.c; each workspace
 *      has its own policies), or every value of a dropped workspace's
 *      namespaces, whose writes lie in sealed segments; a value is removed
 *      only when no kept version
 *      anywhere uses it. While planning, the writer notes every stored
 *      value a new write reuses (kd__value_must_restore); under write_mu
 *      those are taken out of the plan, and the rest are marked doomed: from
 *      then on a write of such a value stores its bytes again.
 *   2. write compact.pending (the plan: segments, pruned write_ids, removed
 *      version_ids), synced; then the compaction's "started" record in
 *      _kd.compactions (number, policies, what it plans to remove).
 *   3. remove index.ckpt (its value offsets are about to change), then per
 *      segment: rewrite it beside itself in format 2 — removed values left
 *      out, pruned writes flagged with the compaction's number, everything
 *      else byte for byte — sync, rename over the old file, and under
 *      write_mu and the exclusive index lock point the index at the new
 *      offsets. The old file is closed once no reader holds a pin.
 *   4. the "done" record: how many writes carry this compaction's number
 *      and the SHA-256 of their write_ids in log order (what verify
 *      checks); remove compact.pending; write a fresh checkpoint.
 * A kill before the "started" record leaves the plan unused (opening
 * deletes it); a kill after it is finished by opening (kd__compact_resume):
 * rewriting a segment twice gives the same segment.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "json/json.h"
#include "query/hooks.h"
#include "query/jv.h"
#include "query/views.h"
#include "retention.h"
#include "rewrite.h"
#include "store/segment.h"
#include "store/tail.h"
#include "vector/vstore.h"
#include "util/crc32c.h"
#include "util/le.h"

#define PENDING_NAME "compact.pending"
#define PENDING_MAGIC "KDCOMPCT"
#define PENDING_HEADER 48 /* magic, u32 version, u32 crc, u64 number, n_segs, n_wids, n_vids */

typedef struct pruned {
    int64_t ts;
    kd__hash32 write_id;
    uint32_t vidx;
    uint32_t dropped_ws; /* 1: pruned with its dropped workspace, whether or
                            not its value goes (another version may use it) */
} pruned;

typedef struct plan {
    uint64_t number;
    const char *policies_json; /* for the "started" record (not owned) */
    int64_t as_of;
    pruned *pr;
    size_t n_pr, cap_pr;
    uint8_t *drop; /* per value index: 1 = remove its bytes */
    size_t n_vals;
    uint64_t held;
    int resumed; /* finished at open (kd__compact_resume): no checkpoint afterwards */
    /* What the rewrite needs: the segments to rewrite (ascending), the
     * pruned writes' ids and the removed values' ids (in no order). */
    uint64_t *segs;
    size_t n_segs;
    kd__hash32 *wids;
    size_t n_wids;
    kd__hash32 *vids;
    size_t n_vids;
    kd__idset wset, vset; /* over wids and vids */
    uint64_t bytes_freed, values_freed;
    /* Dropped workspaces whose versions this run prunes: every version
     * older than the workspace's drop (kd__ns.dropped_before). */
    struct gone_ws {
        char *name;
        int64_t before;
    } *dropped;
    size_t n_dropped, cap_dropped;
    /* The records' "dropped" member, as JSON text (empty: none): from the
     * above (drops_json), or from the "started" record when opening
     * finishes the compaction. */
    kd__buf dropped_json;
} plan;

static void plan_free(plan *p)
{
    free(p->pr);
    free(p->drop);
    free(p->segs);
    free(p->wids);
    free(p->vids);
    kd__idset_free(&p->wset);
    kd__idset_free(&p->vset);
    for (size_t i = 0; i < p->n_dropped; i++)
        free(p->dropped[i].name);
    free(p->dropped);
    kd__buf_free(&p->dropped_json);
    memset(p, 0, sizeof *p);
}

static int errno_code(int e)
{
    return e == ENOSPC || e == EDQUOT ? KD_ENOSPACE : e == ENOMEM ? KD_ENOMEM : KD_EIO;
}

static void path_of(const kd_db *db, const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", db->path, name);
}

/* ------------------------------------------------------------------------
 * The writer's side
 * ---------------------------------------------------------------------- */

int kd__value_must_restore(kd_db *db, uint32_t vidx)
{
    if (kd__value_gone(db, vidx) || (vidx < db->n_doomed && db->doomed[vidx]))
        return 1;
    if (db->compact_watch && !db->watch_overflow) {
        uint32_t *h = kd__grow(db->watch_hits, &db->cap_watch_hits, db->n_watch_hits, sizeof *h, 256);
        if (!h) {
            db->watch_overflow = 1; /* the compaction gives up, safely */
            return 0;
        }
        db->watch_hits = h;
        db->watch_hits[db->n_watch_hits++] = vidx;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Planning
 * ---------------------------------------------------------------------- */

typedef struct policy_entry {
    char *ws, *ns;
    kd__policy p;
} policy_entry;

typedef struct policies {
    policy_entry *e;
    size_t n, cap;
    char **live;    /* the workspaces that exist (kd_workspace_list) */
    size_t n_live;
    const char *ws; /* the workspace being collected */
    kd__buf json;   /* {"<workspace>": {"<ns>": policy, …}, …}: for the compaction record */
} policies;

static int collect_policy(void *arg, const char *key, const char *value, size_t value_len, const kd_version *v)
{
    (void)v;
    policies *ps = arg;
    policy_entry *grown = kd__grow(ps->e, &ps->cap, ps->n, sizeof *grown, 8);
    if (!grown)
        return KD_ENOMEM;
    ps->e = grown;
    char why[200];
    policy_entry *e = &ps->e[ps->n];
    if (kd__policy_parse(value, value_len, &e->p, why, sizeof why))
        return KD_OK; /* written by kd_retention_set, so always valid; skip otherwise */
    e->ws = strdup(ps->ws);
    e->ns = strdup(key);
    if (!e->ws || !e->ns) {
        free(e->ws);
        free(e->ns);
        return KD_ENOMEM;
    }
    ps->n++;
    return KD_OK;
}

static void policies_free(policies *ps)
{
    kd_free_list(ps->live, ps->n_live);
    for (size_t i = 0; i < ps->n; i++) {
        free(ps->e[i].ws);
        free(ps->e[i].ns);
    }
    free(ps->e);
    kd__buf_free(&ps->json);
}

/* Every workspace's policies (each workspace has its own _kd.retention). */
static int collect_policies(kd_db *db, policies *ps)
{
    char **names = NULL;
    size_t n = 0;
    int rc = kd_workspace_list(db, &names, &n);
    if (!rc)
        rc = kd__buf_putc(&ps->json, '{');
    int first = 1;
    for (size_t i = 0; i < n && !rc; i++) {
        kd_db *h = db;
        if (strcmp(names[i], KD__DEFAULT_WS) && (rc = kd_workspace_open(db, names[i], &h))) {
            /* Dropped since it was listed: its policies no longer matter.
             * It stays in `live`, so this compaction leaves its data to
             * the next one (its drop time is not taken here). */
            if (rc == KD_ENOTFOUND) {
                rc = KD_OK;
                continue;
            }
            break;
        }
        ps->ws = names[i];
        size_t before = ps->n;
        rc = kd_scan(h, KD__NS_RETENTION, NULL, NULL, 0, KD_TIME_MAX, collect_policy, ps);
        char *list = NULL;
        size_t len = 0;
        if (!rc && ps->n > before && !(rc = kd_retention_list(h, &list, &len))) {
            if (!first)
                rc = kd__buf_putc(&ps->json, ',');
            first = 0;
            if (!rc)
                rc = kd__json_write_string(&ps->json, names[i], strlen(names[i]));
            if (!rc)
                rc = kd__buf_putc(&ps->json, ':');
            if (!rc)
                rc = kd__buf_append(&ps->json, list, len);
        }
        kd_free(list);
        if (h != db)
            kd_close(h);
        if (rc == KD_ENOTFOUND && h != db) /* dropped while it was read */
            rc = KD_OK;
    }
    if (!rc)
        rc = kd__buf_append(&ps->json, "}", 2); /* with the NUL */
    ps->live = names;
    ps->n_live = n;
    ps->ws = NULL;
    return rc;
}

static const kd__policy *policy_of(const policies *ps, const kd__ns *ns)
{
    for (size_t i = 0; i < ps->n; i++)
        if (!strcmp(ps->e[i].ns, ns->name) && !strcmp(ps->e[i].ws, ns->ws))
            return &ps->e[i].p;
    return NULL;
}

/* A namespace of user data: a user namespace, or the vectors of one
 * ("_kd.vec.X"). A workspace's other reserved namespaces (its view, index
 * and retention definitions, …) are the database's. */
static int user_data(const kd__ns *ns)
{
    return strncmp(ns->name, "_kd", 3) || kd__is_vectors_ns(ns->name, ns->name_len);
}

static int64_t drop_time(kd_db *db, const kd__ns *ns);

/* A namespace of a workspace that exists again: does it hold versions from
 * before its drop that no compaction has cut yet? (One first written after
 * the drop holds none, though no cut was ever recorded on it.) */
static int drop_pending(kd_db *db, const kd__ns *ns)
{
    int64_t t = drop_time(db, ns);
    if (t <= ns->dropped_before)
        return 0;
    for (size_t k = 0; k < ns->n_all; k++)
        if (ns->all[k]->n && ns->all[k]->vers[0].ts < t)
            return 1;
    return 0;
}

/* What happens to a namespace's versions: RULE_KEEP all of them, RULE_POLICY
 * (*pol decides), or RULE_DROP every one before the cut — the user data of
 * a dropped workspace (its other reserved namespaces stay: opening reads
 * them), also when it was made again since its drop: the versions from
 * before the drop go (planned_cut), *pol decides on the rest. */
enum { RULE_KEEP, RULE_POLICY, RULE_DROP };
static int rule_of(kd_db *db, const policies *ps, const kd__ns *ns, const kd__policy **pol)
{
    *pol = NULL;
    int live = 0;
    for (size_t i = 0; i < ps->n_live && !live; i++)
        live = !strcmp(ps->live[i], ns->ws);
    if (!live)
        return user_data(ns) ? RULE_DROP : RULE_KEEP;
    *pol = policy_of(ps, ns);
    if (user_data(ns) && drop_pending(db, ns))
        return RULE_DROP;
    return *pol ? RULE_POLICY : RULE_KEEP;
}

/* Add version v to the writes this run prunes. */
static int add_pruned(plan *pl, const kd__ver *v, int dropped_ws)
{
    pruned *grown = kd__grow(pl->pr, &pl->cap_pr, pl->n_pr, sizeof *grown, 1024);
    if (!grown)
        return KD_ENOMEM;
    pl->pr = grown;
    pruned *x = &pl->pr[pl->n_pr++];
    x->ts = v->ts;
    memcpy(x->write_id, v->write_id, KD__HASH_LEN);
    x->vidx = v->value;
    x->dropped_ws = (uint32_t)dropped_ws;
    return KD_OK;
}

/* When ns's workspace was last dropped: the time of the newest visible
 * tombstone of its name in _kd.workspaces (0: never). Its user data older
 * than that went with it; anything newer was written after it was made
 * again (during this compaction, perhaps) and stays. */
static int64_t drop_time(kd_db *db, const kd__ns *ns)
{
    const kd__ns *w = kd__index_ns_find(&db->ix, KD__DEFAULT_WS, sizeof KD__DEFAULT_WS - 1, KD__NS_WORKSPACES,
                                        sizeof KD__NS_WORKSPACES - 1);
    const kd__key *k = w ? kd__index_key_find(&db->ix, w, ns->ws, ns->ws_len) : NULL;
    for (uint32_t i = k ? kd__key_upper(k, kd__visible(db)) : 0; i > 0; i--)
        if (k->vers[i - 1].value == KD__NO_VALUE)
            return k->vers[i - 1].ts;
    return 0;
}

/* The cut of a dropped workspace's namespace this run: its drop time, when
 * every write before that is sealed (the caller seals first when a
 * dropped workspace waits: compact_run); else 0, nothing (a later run). */
static int64_t dropped_cut(kd_db *db, const kd__ns *ns, int64_t sealed_before)
{
    int64_t t = drop_time(db, ns);
    return t <= sealed_before ? t : 0;
}

/* The cut of a dropped workspace's namespace this run (plan_cuts), 0 for
 * none. */
static int64_t planned_cut(const plan *pl, const kd__ns *ns)
{
    for (size_t i = 0; i < pl->n_dropped; i++)
        if (strlen(pl->dropped[i].name) == ns->ws_len && !memcmp(pl->dropped[i].name, ns->ws, ns->ws_len))
            return pl->dropped[i].before;
    return 0;
}

/* Note ns's workspace among the dropped ones (once), with its cut. */
static int note_dropped(plan *pl, const kd__ns *ns, int64_t before)
{
    for (size_t i = 0; i < pl->n_dropped; i++)
        if (strlen(pl->dropped[i].name) == ns->ws_len && !memcmp(pl->dropped[i].name, ns->ws, ns->ws_len))
            return KD_OK;
    struct gone_ws *grown = kd__grow(pl->dropped, &pl->cap_dropped, pl->n_dropped, sizeof *grown, 8);
    if (!grown)
        return KD_ENOMEM;
    pl->dropped = grown;
    if (!(pl->dropped[pl->n_dropped].name = strndup(ns->ws, ns->ws_len)))
        return KD_ENOMEM;
    pl->dropped[pl->n_dropped++].before = before;
    return KD_OK;
}

/* Each dropped workspace's cut this run, decided once for the whole plan
 * (shared index lock held, not let go meanwhile): one whose namespaces are
 * not all cut that far yet. */
static int plan_cuts(kd_db *db, const policies *ps, int64_t sealed_before, plan *pl)
{
    int rc = KD_OK;
    for (size_t s = 0; s < db->ix.ns_count && !rc; s++) {
        const kd__ns *ns = db->ix.ns_list[s];
        const kd__policy *pol;
        if (rule_of(db, ps, ns, &pol) != RULE_DROP)
            continue;
        int64_t cut = dropped_cut(db, ns, sealed_before);
        if (cut > ns->dropped_before)
            rc = note_dropped(pl, ns, cut);
    }
    return rc;
}

/* Under the shared index lock, which it lets writers through every PLAN_PIECE
 * versions: which versions go, and which values. A version written
 * meanwhile is newer than sealed_before (kept), and one that reuses a value
 * is noted by the writer (kd__value_must_restore), so the pieces need not
 * see one moment. */
#define PLAN_PIECE 16384

/* Keep the version current at each manual view's as-of point (those of
 * namespace `qns`): the view shows it until its next refresh. */
static void keep_pinned(const kd__view_pin *pins, size_t n_pins, const char *qns, const int64_t *ts, uint32_t n,
                        uint8_t *keep)
{
    for (size_t p = 0; p < n_pins; p++) {
        if (strcmp(pins[p].source, qns))
            continue;
        uint32_t lo = 0, hi = n; /* the first version newer than as_of */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (ts[mid] <= pins[p].as_of)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo > 0)
            keep[lo - 1] = 1;
    }
}

static int plan_versions(kd_db *db, const policies *ps, const kd__view_pin *pins, size_t n_pins,
                         int64_t sealed_before, plan *pl)
{
    size_t since_relock = 0;
    kd__index *ix = &db->ix;
    pl->n_vals = ix->n_vals;
    uint8_t *cand = calloc(pl->n_vals ? pl->n_vals : 1, 1); /* 1 = some dropped version uses it */
    uint8_t *kept = calloc(pl->n_vals ? pl->n_vals : 1, 1); /* 1 = some kept version uses it */
    int64_t *ts = NULL;
    uint8_t *tomb = NULL, *keep = NULL;
    size_t cap = 0;
    int rc = cand && kept ? KD_OK : KD_ENOMEM;
    for (size_t s = 0; s < ix->ns_count && !rc; s++) {
        const kd__ns *ns = ix->ns_list[s];
        const kd__policy *pol;
        int rule = rule_of(db, ps, ns, &pol);
        int64_t cut = rule == RULE_DROP ? planned_cut(pl, ns) : 0;
        char qbuf[KD__QNS_MAX];
        const char *qns = kd__qns_of(ns, qbuf);
        for (size_t k = 0; k < ns->n_all && !rc; k++) {
            if ((since_relock += ns->all[k]->n) >= PLAN_PIECE) {
                kd__ix_relock(db, NULL, NULL);
                since_relock = 0;
            }
            const kd__key *key = ns->all[k];
            if (pol && key->n > cap) {
                cap = key->n;
                free(ts), free(tomb), free(keep);
                ts = malloc(cap * sizeof *ts);
                tomb = malloc(cap), keep = malloc(cap);
                if (!ts || !tomb || !keep) {
                    rc = KD_ENOMEM;
                    break;
                }
            }
            if (pol) {
                for (uint32_t i = 0; i < key->n; i++) {
                    ts[i] = key->vers[i].ts;
                    tomb[i] = key->vers[i].value == KD__NO_VALUE;
                }
                kd__policy_decide(pol, pl->as_of, ts, tomb, key->n, keep);
                keep_pinned(pins, n_pins, qns, ts, key->n, keep);
            }
            for (uint32_t i = 0; i < key->n; i++) {
                uint32_t vi = key->vers[i].value;
                if (vi == KD__NO_VALUE || vi >= pl->n_vals || kd__value_gone(db, vi))
                    continue;
                if (kd__ver_dropped(ns, &key->vers[i]))
                    cand[vi] = 1; /* pruned already, with its dropped workspace */
                else if (rule == RULE_KEEP || (rule == RULE_POLICY && keep[i]) ||
                         (rule == RULE_DROP && key->vers[i].ts >= cut && (!pol || keep[i])))
                    kept[vi] = 1;
                else if (key->vers[i].ts >= sealed_before)
                    kept[vi] = 1, pl->held++; /* in the newest segment: a later run */
                else
                    cand[vi] = 1;
            }
        }
    }
    /* A version is pruned when its value goes, or with its dropped
     * workspace; a value goes when only dropped versions use it. */
    if (!rc && !(pl->drop = calloc(pl->n_vals ? pl->n_vals : 1, 1)))
        rc = KD_ENOMEM;
    /* A segment rewrite removes a value by its id, wherever it lies: an id
     * with a second stored entry (a compaction failed after the value was
     * stored again) is left alone, or the copy a kept version uses would
     * go too. The next open merges the two. */
    for (size_t v = 0; !rc && v < pl->n_vals; v++)
        pl->drop[v] = cand[v] && !kept[v] && !kd__index_value_twin(ix, (uint32_t)v);
    for (size_t s = 0; s < ix->ns_count && !rc; s++) {
        const kd__ns *ns = ix->ns_list[s];
        const kd__policy *pol;
        int rule = rule_of(db, ps, ns, &pol);
        int64_t cut = rule == RULE_DROP ? planned_cut(pl, ns) : 0;
        if (rule == RULE_KEEP)
            continue;
        for (size_t k = 0; k < ns->n_all && !rc; k++) {
            if ((since_relock += ns->all[k]->n) >= PLAN_PIECE) {
                kd__ix_relock(db, NULL, NULL);
                since_relock = 0;
            }
            const kd__key *key = ns->all[k];
            for (uint32_t i = 0; i < key->n && !rc; i++) {
                const kd__ver *v = &key->vers[i];
                if (v->value == KD__NO_VALUE || v->value >= pl->n_vals || kd__value_gone(db, v->value) ||
                    kd__ver_dropped(ns, v))
                    continue;
                if (rule == RULE_DROP && v->ts < cut)
                    rc = add_pruned(pl, v, 1);
                else if (pl->drop[v->value])
                    rc = add_pruned(pl, v, 0);
            }
        }
    }
    free(cand), free(kept), free(ts), free(tomb), free(keep);
    return rc;
}

/* Under write_mu: values a write reused while we planned stay. */
static void plan_take_hits(kd_db *db, plan *pl)
{
    for (size_t i = 0; i < db->n_watch_hits; i++)
        if (db->watch_hits[i] < pl->n_vals)
            pl->drop[db->watch_hits[i]] = 0;
}

/* Then, without holding writers: the pruned writes' ids and the removed
 * values' ids (the rewrite looks them up in hash sets, set_build). */
static int plan_lists(kd_db *db, plan *pl)
{
    size_t n = 0;
    for (size_t i = 0; i < pl->n_pr; i++)
        if (pl->pr[i].dropped_ws || pl->drop[pl->pr[i].vidx])
            pl->pr[n++] = pl->pr[i];
    pl->n_pr = n;
    if (pl->n_pr && !(pl->wids = malloc(pl->n_pr * sizeof *pl->wids)))
        return KD_ENOMEM;
    for (size_t i = 0; i < pl->n_pr; i++)
        memcpy(pl->wids[i], pl->pr[i].write_id, KD__HASH_LEN);
    pl->n_wids = pl->n_pr;
    size_t nv = 0;
    for (size_t v = 0; v < pl->n_vals; v++)
        nv += pl->drop[v];
    if (nv && !(pl->vids = malloc(nv * sizeof *pl->vids)))
        return KD_ENOMEM;
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t v = 0; v < pl->n_vals; v++)
        if (pl->drop[v]) {
            const kd__val *val = kd__index_val(&db->ix, (uint32_t)v);
            memcpy(pl->vids[pl->n_vids++], val->id, KD__HASH_LEN);
            pl->bytes_freed += KD__VALUE_HEADER_LEN + kd__val_bytes(val);
        }
    pthread_rwlock_unlock(&db->ix_lock);
    pl->values_freed = pl->n_vids;
    return KD_OK;
}

/* The segments to rewrite: those holding a pruned write or removed value
 * (shared index lock held). */
static int plan_segments(kd_db *db, plan *pl, const uint64_t *nos, const int64_t *firsts, size_t nsealed)
{
    uint8_t *mark = calloc(nsealed ? nsealed : 1, 1);
    if (!mark)
        return KD_ENOMEM;
    for (size_t i = 0; i < pl->n_pr; i++) {
        size_t s = nsealed; /* last segment whose first write is not after it */
        while (s > 0 && firsts[s - 1] > pl->pr[i].ts)
            s--;
        if (s > 0)
            mark[s - 1] = 1;
    }
    for (size_t v = 0; v < pl->n_vals; v++) {
        const kd__val *val = kd__index_val(&db->ix, (uint32_t)v);
        if (pl->drop[v] && val->seg >= nos[0] && val->seg - nos[0] < nsealed)
            mark[val->seg - nos[0]] = 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < nsealed; i++)
        n += mark[i];
    if (n && !(pl->segs = malloc(n * sizeof *pl->segs))) {
        free(mark);
        return KD_ENOMEM;
    }
    for (size_t i = 0; i < nsealed; i++)
        if (mark[i])
            pl->segs[pl->n_segs++] = nos[i];
    free(mark);
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * The plan on disk (compact.pending)
 * ---------------------------------------------------------------------- */

static int pending_write(kd_db *db, const plan *pl)
{
    size_t len = PENDING_HEADER + pl->n_segs * 8 + (pl->n_wids + pl->n_vids) * KD__HASH_LEN;
    uint8_t *b = malloc(len);
    if (!b)
        return kd__err(db, KD_ENOMEM, "out of memory");
    memcpy(b, PENDING_MAGIC, 8);
    kd__put_u64(b + 8, 1); /* version 1; the crc goes into bytes 12..15 below */
    kd__put_u64(b + 16, pl->number);
    kd__put_u64(b + 24, pl->n_segs);
    kd__put_u64(b + 32, pl->n_wids);
    kd__put_u64(b + 40, pl->n_vids);
    uint8_t *p = b + PENDING_HEADER;
    for (size_t i = 0; i < pl->n_segs; i++, p += 8)
        kd__put_u64(p, pl->segs[i]);
    if (pl->n_wids) /* either list may be empty (and NULL) */
        memcpy(p, pl->wids, pl->n_wids * KD__HASH_LEN);
    p += pl->n_wids * KD__HASH_LEN;
    if (pl->n_vids)
        memcpy(p, pl->vids, pl->n_vids * KD__HASH_LEN);
    uint32_t crc = kd__crc32c(b + 16, len - 16);
    for (int i = 0; i < 4; i++)
        b[12 + i] = (uint8_t)(crc >> (8 * i));
    char tmp[4096], dst[4096];
    path_of(db, PENDING_NAME ".tmp", tmp, sizeof tmp);
    path_of(db, PENDING_NAME, dst, sizeof dst);
    int rc = KD_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || kd__write_full(fd, b, len) != 0 || fdatasync(fd) != 0 || rename(tmp, dst) != 0) {
        int e = errno; /* before unlink, which may set it */
        rc = kd__err(db, errno_code(e), "compaction: cannot write %s: %s", dst, strerror(e));
        unlink(tmp);
    }
    if (fd >= 0)
        close(fd);
    free(b);
    if (!rc && kd__fsync_dir(db->path))
        rc = kd__err(db, KD_EIO, "compaction: cannot sync %s", db->path);
    return rc;
}

/* KD_OK with the plan read, KD_ENOTFOUND when there is none, KD_ECORRUPT
 * when it is damaged (written in part: nothing was done after it). */
static int pending_read(kd_db *db, plan *pl)
{
    char p[4096];
    path_of(db, PENDING_NAME, p, sizeof p);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? KD_ENOTFOUND : KD_EIO;
    off_t size = lseek(fd, 0, SEEK_END);
    uint8_t *b = size >= PENDING_HEADER && size < (off_t)1 << 40 ? malloc((size_t)size) : NULL;
    int rc = KD_ECORRUPT;
    if (b && pread(fd, b, (size_t)size, 0) == size && !memcmp(b, PENDING_MAGIC, 8)) {
        uint32_t crc = (uint32_t)b[12] | (uint32_t)b[13] << 8 | (uint32_t)b[14] << 16 | (uint32_t)b[15] << 24;
        uint64_t ns = kd__get_u64(b + 24), nw = kd__get_u64(b + 32), nv = kd__get_u64(b + 40);
        size_t want = PENDING_HEADER + ns * 8 + (nw + nv) * KD__HASH_LEN;
        if (ns < (1u << 24) && nw < (1ull << 34) && nv < (1ull << 34) && want == (size_t)size &&
            crc == kd__crc32c(b + 16, (size_t)size - 16)) {
            pl->number = kd__get_u64(b + 16);
            pl->segs = malloc(ns ? ns * 8 : 1);
            pl->wids = malloc(nw ? nw * KD__HASH_LEN : 1);
            pl->vids = malloc(nv ? nv * KD__HASH_LEN : 1);
            rc = pl->segs && pl->wids && pl->vids ? KD_OK : KD_ENOMEM;
            if (!rc) {
                const uint8_t *q = b + PENDING_HEADER;
                for (size_t i = 0; i < ns; i++, q += 8)
                    pl->segs[i] = kd__get_u64(q);
                memcpy(pl->wids, q, nw * KD__HASH_LEN);
                memcpy(pl->vids, q + nw * KD__HASH_LEN, nv * KD__HASH_LEN);
                pl->n_segs = ns, pl->n_wids = nw, pl->n_vids = nv;
            }
        }
    }
    free(b);
    close(fd);
    return rc;
}

static void pending_remove(kd_db *db)
{
    char p[4096];
    path_of(db, PENDING_NAME, p, sizeof p);
    if (unlink(p) != 0 && errno != ENOENT) /* the next open finishes it again: harmless, but say so */
        kd__log(db, KD_LOG_WARN, "cannot remove %s: %s", p, strerror(errno));
    kd__fsync_dir(db->path);
}

/* The writes a compaction marked, in log order: its "done" record. */
typedef struct tally {
    kd__sha sha;
    uint64_t marked;
} tally;

static int write_record(kd_db *db, const plan *pl, const tally *done);

/* Steps 3 and 4: the checkpoint goes, the segments are rewritten, the
 * "done" record says which writes were marked, the plan file goes, a fresh
 * checkpoint is written. *marked: writes this compaction marked. */
static int apply_plan(kd_db *db, plan *pl, uint64_t *saved, uint64_t *rewritten, uint64_t *marked)
{
    char p[4096];
    if (kd__idset_build(&pl->wset, pl->wids, pl->n_wids) || kd__idset_build(&pl->vset, pl->vids, pl->n_vids))
        return kd__err(db, KD_ENOMEM, "out of memory");
    int rc = KD_OK;
    tally t;
    kd__sha_init(&t.sha);
    t.marked = 0;
    kd__rewrite_spec sp = {.drop_values = &pl->vset, .prune_writes = &pl->wset, .number = (uint16_t)pl->number,
                           .digest = &t.sha, .marked = &t.marked};
    kd__rewrite_stats rs = {0};
    pthread_mutex_lock(&db->ckpt_mu);
    path_of(db, "index.ckpt", p, sizeof p);
    if (unlink(p) != 0 && errno != ENOENT)
        rc = kd__err(db, KD_EIO, "compaction: cannot remove %s: %s", p, strerror(errno));
    else if (kd__fsync_dir(db->path))
        rc = kd__err(db, KD_EIO, "compaction: cannot sync %s", db->path);
    if (!rc)
        kd__ckpt_mark(db, 0, 0);
    for (size_t i = 0; i < pl->n_segs && !rc; i++) {
        pthread_rwlock_rdlock(&db->ix_lock);
        int skip = pl->segs[i] < db->segs[0].no || pl->segs[i] >= db->segs[db->nsegs - 1].no;
        pthread_rwlock_unlock(&db->ix_lock);
        if (skip)
            continue; /* never the newest segment */
        rc = kd__seg_rewrite(db, &sp, pl->segs[i], &rs);
    }
    *saved += rs.bytes_saved;
    *rewritten += rs.segments;
    pthread_mutex_unlock(&db->ckpt_mu);
    if (!rc && kd__fsync_dir(db->path))
        rc = kd__err(db, KD_EIO, "compaction: cannot sync %s", db->path);
    if (!rc)
        rc = write_record(db, pl, &t);
    if (rc)
        return rc;
    *marked = t.marked;
    pending_remove(db);
    kd__seg_release_retired(db); /* else the upkeep thread or close does */
    char what[256];
    if (!pl->resumed && kd__checkpoint_write(db, what, sizeof what))
        kd__log(db, KD_LOG_WARN, "compaction %llu: no checkpoint written afterwards: %s",
                (unsigned long long)pl->number, kd_errmsg(db));
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Dropped workspaces: which versions went with them
 * ---------------------------------------------------------------------- */

/* Is ns user data of workspace `name` whose versions before `before` are
 * not all cut yet? */
static int cut_due(const kd__ns *ns, const char *name, int64_t before)
{
    return user_data(ns) && ns->dropped_before < before && strlen(name) == ns->ws_len &&
           !memcmp(name, ns->ws, ns->ws_len);
}

#define HOLD_NS 2000000 /* the longest drops_forget holds write_mu at a time */

/* Called holding write_mu: let the writers waiting for it have it, then
 * take it back. Unlocking alone is not enough: the unlocking thread takes
 * the mutex again before a woken waiter runs. So it waits (yielding, at
 * most 1 ms) until another thread holds it, or no writer is in flight. */
static void let_writers_in(kd_db *db)
{
    pthread_mutex_unlock(&db->write_mu);
    int64_t until = kd__mono_ns() + 1000000;
    for (;;) {
        sched_yield();
        if (pthread_mutex_trylock(&db->write_mu) != 0) {
            pthread_mutex_lock(&db->write_mu); /* a writer has it: after it */
            return;
        }
        if (!__atomic_load_n(&db->committers, __ATOMIC_ACQUIRE) || kd__mono_ns() >= until)
            return;
        pthread_mutex_unlock(&db->write_mu);
    }
}

/* Secondary indexes, views and vector indexes let go of workspace `name`'s
 * keys that were live and go with it (their newest version older than
 * `before`), as of a delete. Called while their values are still stored,
 * just before the compaction removes them; should it then fail, those keys
 * stay readable (uncut) but out of the indexes until the database is
 * reopened, which also finishes the compaction. */
static void drops_forget(kd_db *db, const char *name, int64_t before)
{
    if (!db->qs && !db->vs)
        return;
    pthread_mutex_lock(&db->write_mu); /* the index holds still; the hooks run under it (hooks.h) */
    kd__buf prev = KD__BUF_INIT;
    size_t walked = 0;
    int64_t held_since = kd__mono_ns();
    for (size_t i = 0; i < db->ix.ns_count; i++) {
        const kd__ns *ns = db->ix.ns_list[i];
        if (!cut_due(ns, name, before))
            continue;
        for (size_t k = 0; k < ns->n_all; k++) {
            /* Writers get the lock every HOLD_NS (each key may cost a
             * value read from the log and index updates): a large dropped
             * workspace must not stall them for the whole walk. Lists only
             * grow, in creation order, so the walk resumes where it was;
             * a key written meanwhile is newer than `before` and stays. */
            if (++walked % 32 == 0 && kd__mono_ns() - held_since >= HOLD_NS) {
                let_writers_in(db);
                held_since = kd__mono_ns();
            }
            const kd__key *key = ns->all[k];
            uint32_t vidx = key->n ? kd__ver_value(db, key, key->n - 1) : KD__NO_VALUE;
            if (vidx == KD__NO_VALUE || key->vers[key->n - 1].ts >= before)
                continue;
            if (kd__is_vectors_ns(ns->name, ns->name_len)) {
                kd__vstore_forget(db, key);
                continue;
            }
            char qbuf[KD__QNS_MAX];
            kd__write_rec rec;
            memset(&rec, 0, sizeof rec);
            rec.ts = db->last_ts;
            kd__applied x = {.ns = kd__qns_of(ns, qbuf), .key = key->name, .k = key, .rec = &rec};
            if (kd__value_bytes(db, vidx, &prev, &x.prev, &x.prev_len) == KD_OK)
                kd__hooks_on_dropped(db, &x);
        }
    }
    kd__buf_free(&prev);
    pthread_mutex_unlock(&db->write_mu);
}

/* The user data of workspace `name` loses its versions older than
 * `before` (kd__ns.dropped_before), once the compaction flagged them
 * pruned in the log; live keys are counted again. */
static void drops_cut(kd_db *db, const char *name, int64_t before)
{
    pthread_mutex_lock(&db->write_mu);
    kd__ix_wrlock(db);
    for (size_t i = 0; i < db->ix.ns_count; i++) {
        kd__ns *ns = db->ix.ns_list[i];
        if (cut_due(ns, name, before)) {
            ns->dropped_before = before;
            kd__index_ns_recount(ns);
        }
    }
    pthread_rwlock_unlock(&db->ix_lock);
    pthread_mutex_unlock(&db->write_mu);
}

/* The records' "dropped" member from the plan's dropped workspaces:
 * {NAME:TIME,…}, each TIME the one before which NAME's versions went. */
static int drops_json(plan *pl)
{
    if (!pl->n_dropped)
        return KD_OK;
    kd__buf *b = &pl->dropped_json;
    int rc = kd__buf_putc(b, '{');
    for (size_t i = 0; !rc && i < pl->n_dropped; i++) {
        char t[40];
        kd_time_format(pl->dropped[i].before, t, sizeof t);
        rc = (i && kd__buf_putc(b, ',')) || kd__json_write_string(b, pl->dropped[i].name, strlen(pl->dropped[i].name)) ||
             kd__buf_printf(b, ":\"%s\"", t);
    }
    return rc || kd__buf_putc(b, '}') ? KD_ENOMEM : KD_OK;
}

/* A member of a record at a dotted path (missing when it has none). */
static kd__jv record_at(const char *json, size_t len, const char *path)
{
    kd__path p;
    if (kd__path_parse(path, strlen(path), &p, NULL, 0))
        return KD__JV_MISSING;
    kd__jv v = kd__jv_at((kd__jv){json, len}, &p);
    kd__path_free(&p);
    return v;
}

/* A record's "dropped" member, if it has one, applied: an object from
 * workspace names to the time before which their versions went. */
static int drops_apply_record(kd_db *db, const char *json, size_t len)
{
    kd__jv dropped = record_at(json, len, "dropped");
    if (!dropped.p)
        return KD_OK;
    if (kd__jv_type(dropped) != KD__J_OBJECT)
        return KD_ECORRUPT;
    kd__buf name = KD__BUF_INIT, text = KD__BUF_INIT;
    int rc = KD_OK;
    size_t pos = 0;
    kd__jv n, t;
    while (!rc && kd__jv_next_member(dropped, &pos, &n, &t)) {
        int64_t before = 0;
        kd__buf_reset(&name);
        kd__buf_reset(&text);
        if (kd__jv_type(t) != KD__J_STRING || kd__jv_string(n, &name) || kd__buf_putc(&name, '\0') ||
            strlen(name.data) + 1 != name.len || kd__jv_string(t, &text) || kd__buf_putc(&text, '\0') ||
            kd_time_parse(text.data, &before, NULL, 0))
            rc = KD_ECORRUPT;
        else
            drops_cut(db, name.data, before);
    }
    kd__buf_free(&name);
    kd__buf_free(&text);
    return rc;
}

int kd__compact_load_drops(kd_db *db)
{
    char **keys = NULL;
    size_t n = 0;
    kd__allow_reserved(1);
    int rc = kd_list_keys(db, KD__NS_COMPACTIONS, NULL, NULL, 0, &keys, &n);
    /* The "done" records: a compaction cut short applies its cut once
     * opening has finished it (kd__compact_resume). */
    for (size_t i = 0; !rc && i < n; i++) {
        char *json = NULL;
        size_t len = 0;
        if (!(rc = kd_get(db, KD__NS_COMPACTIONS, keys[i], &json, &len, NULL)) &&
            memmem(json, len, "\"state\":\"done\"", 14) && (rc = drops_apply_record(db, json, len)) == KD_ECORRUPT)
            kd__err(db, rc, "%s/%s: its \"dropped\" member does not map workspace names to times", KD__NS_COMPACTIONS,
                    keys[i]);
        kd_free(json);
    }
    kd__allow_reserved(0);
    kd_free_list(keys, n);
    return rc == KD_ENOTFOUND ? KD_OK : rc;
}

/* ------------------------------------------------------------------------
 * The compaction record
 * ---------------------------------------------------------------------- */

static int next_number(kd_db *db, uint64_t *out)
{
    char **keys = NULL;
    size_t n = 0;
    int rc = kd_list_keys(db, KD__NS_COMPACTIONS, NULL, NULL, 0, &keys, &n);
    if (rc)
        return rc;
    /* 10-digit keys sort by number; the current-only backups' number is
     * not one of ours. */
    size_t i = n;
    while (i > 0 && strtoull(keys[i - 1], NULL, 10) >= KD__COMPACTION_CURRENT_ONLY)
        i--;
    uint64_t last = i ? strtoull(keys[i - 1], NULL, 10) : 0;
    kd_free_list(keys, n);
    if (last + 1 >= KD__COMPACTION_CURRENT_ONLY)
        return kd__err(db, KD_EINVALID, "this database has had %llu compactions, the most one log can record",
                       (unsigned long long)last);
    *out = last + 1;
    return KD_OK;
}

static int put_record(kd_db *db, uint64_t number, const kd__buf *b)
{
    char key[24];
    snprintf(key, sizeof key, "%010llu", (unsigned long long)number);
    kd__allow_reserved(1);
    int rc = kd_put(db, KD__NS_COMPACTIONS, key, b->data, b->len, NULL);
    kd__allow_reserved(0);
    /* Durable whatever the sync mode: "started" before any segment
     * changes, "done" before the plan file goes (opening reads both). */
    return rc ? rc : kd__sync_log(db->core ? db->core : db);
}

/* The "done" record: what verify checks (members in canonical order). A
 * record that kd_repair writes for a lost one cannot know when the
 * compaction ran: it says when it was written instead ("repaired"). */
int kd__compaction_done(kd_db *db, uint64_t number, int64_t t, int repaired, const char *dropped, const kd__sha *sha,
                        uint64_t marked)
{
    char hex[KD_ID_HEX], when[40];
    uint8_t digest[KD__HASH_LEN];
    kd__sha sh = *sha;
    kd__sha_final(&sh, digest);
    kd__hex_encode(digest, KD__HASH_LEN, hex);
    kd_time_format(t, when, sizeof when);
    kd__buf b = {0};
    int rc = kd__buf_printf(&b, "{%s%s%s\"digest\":\"%s\",%s%s%s\"number\":%llu,\"pruned\":%llu,%s%s%s\"state\":\"done\"}",
                            repaired ? "" : "\"as_of\":\"", repaired ? "" : when, repaired ? "" : "\",", hex,
                            dropped ? "\"dropped\":" : "", dropped ? dropped : "", dropped ? "," : "",
                            (unsigned long long)number, (unsigned long long)marked,
                            repaired ? "\"repaired\":\"" : "", repaired ? when : "", repaired ? "\"," : "");
    rc = rc ? kd__err(db, KD_ENOMEM, "out of memory") : put_record(db, number, &b);
    kd__buf_free(&b);
    return rc;
}

/* The compaction's record in _kd.compactions: first "started" (before any
 * segment changes: opening then knows to finish it), then "done" with the
 * number and digest of the writes it marked (what verify checks). */
static int write_record(kd_db *db, const plan *pl, const tally *done)
{
    /* Both say which versions went with their dropped workspaces (what
     * opening reads: kd__compact_load_drops); "done", the key's current
     * version, so that a backup of current versions only keeps it too. */
    const char *dropped = pl->dropped_json.len ? pl->dropped_json.data : NULL;
    if (done)
        return kd__compaction_done(db, pl->number, pl->as_of, 0, dropped, &done->sha, done->marked);
    char t[40];
    kd_time_format(pl->as_of, t, sizeof t);
    const char *pols = pl->policies_json ? pl->policies_json : "{}";
    kd__buf b = {0};
    int rc = kd__buf_printf(&b, "{\"as_of\":\"%s\",\"bytes\":%llu,%s%s%s", t, (unsigned long long)pl->bytes_freed,
                            dropped ? "\"dropped\":" : "", dropped ? dropped : "", dropped ? "," : "");
    rc = rc || kd__buf_printf(&b, "\"number\":%llu,\"policies\":%s,\"state\":\"started\",\"values\":%llu,"
                              "\"versions\":%zu}", (unsigned long long)pl->number, pols,
                              (unsigned long long)pl->values_freed, pl->n_pr);
    rc = rc ? kd__err(db, KD_ENOMEM, "out of memory") : put_record(db, pl->number, &b);
    kd__buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------------------
 * kd_compact
 * ---------------------------------------------------------------------- */

static void stop_watch(kd_db *db)
{
    db->compact_watch = 0;
    db->watch_overflow = 0;
    db->n_watch_hits = 0;
}

static int compact_run(kd_db *db, int dry_run, int seal, kd_compact_report *out)
{
    policies ps = {0};
    int rc = collect_policies(db, &ps);
    /* A compaction cut short in this process (a full disk) left its plan:
     * opening finishes it. Another one now would plan over writes it
     * flagged in part, and values it is removing. */
    char pending[4096];
    path_of(db, PENDING_NAME, pending, sizeof pending);
    if (!dry_run && access(pending, F_OK) == 0) {
        policies_free(&ps);
        return kd__err(db, KD_EBUSY, "an earlier compaction was cut short (%s is there); it is finished when the "
                       "database is next opened, and no other compaction runs until then", pending);
    }
    /* Some namespace belongs to a workspace dropped since its last cut:
     * the newest segment is sealed first, whoever asks, so that every
     * write before the drop is in a sealed segment and goes this run (a
     * workspace made again must come back empty, not half). */
    int dropped_ws = 0;
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; !rc && i < db->ix.ns_count && !dropped_ws; i++) {
        const kd__policy *pol;
        const kd__ns *ns = db->ix.ns_list[i];
        dropped_ws = rule_of(db, &ps, ns, &pol) == RULE_DROP && drop_time(db, ns) > ns->dropped_before;
    }
    pthread_rwlock_unlock(&db->ix_lock);
    if (rc || (!ps.n && !dropped_ws)) {
        policies_free(&ps);
        return rc < 0 ? rc : rc ? kd__err(db, KD_ENOMEM, "out of memory") : KD_OK;
    }
    if ((seal || dropped_ws) && !dry_run && (rc = kd__seal_segment(db))) {
        policies_free(&ps);
        return rc;
    }
    plan pl = {0};
    pl.as_of = kd_now();
    pl.policies_json = ps.json.data;
    /* Sealed segments and where each begins (by timestamp), and the last
     * write so far: everything later goes to the newest segment or after. */
    pthread_mutex_lock(&db->write_mu);
    size_t nsealed = db->nsegs - 1;
    uint64_t *nos = malloc((nsealed + 1) * sizeof *nos);
    int64_t *firsts = malloc((nsealed + 1) * sizeof *firsts);
    uint64_t active_size = db->segs[nsealed].size;
    int64_t last_ts = db->last_ts;
    for (size_t i = 0; nos && i <= nsealed; i++)
        nos[i] = db->segs[i].no;
    pthread_mutex_unlock(&db->write_mu);
    if (!nos || !firsts)
        rc = kd__err(db, KD_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i <= nsealed; i++)
        rc = kd__seg_first_ts(db, nos[i], i == nsealed ? active_size : 0, &firsts[i]);
    /* A dry run that would seal counts the newest segment as sealed. */
    int64_t sealed_before = rc ? 0 : seal && dry_run ? INT64_MAX : firsts[nsealed];
    if (!dry_run && sealed_before > last_ts) /* the newest segment was empty */
        sealed_before = last_ts + 1;

    if (!rc && !dry_run) {
        pthread_mutex_lock(&db->write_mu);
        stop_watch(db);
        db->compact_watch = 1;
        pthread_mutex_unlock(&db->write_mu);
    }
    if (!rc) {
        kd__view_pin *pins = NULL;
        size_t n_pins = 0;
        if (!(rc = kd__views_hold(db, &pins, &n_pins))) {
            pthread_rwlock_rdlock(&db->ix_lock);
            rc = plan_cuts(db, &ps, sealed_before, &pl);
            if (!rc)
                rc = plan_versions(db, &ps, pins, n_pins, sealed_before, &pl);
            pthread_rwlock_unlock(&db->ix_lock);
            kd__views_release(db);
            free(pins);
        }
        if (rc)
            rc = kd__err(db, rc, "out of memory planning the compaction");
    }
    /* The writer's own copy of what goes (it clears entries it stores
     * again), made under write_mu: writers wait for a copy of one byte per
     * value, nothing more. */
    uint8_t *doomed = NULL;
    if (!rc && !dry_run && !(doomed = malloc(pl.n_vals ? pl.n_vals : 1)))
        rc = kd__err(db, KD_ENOMEM, "out of memory");
    if (!dry_run) {
        pthread_mutex_lock(&db->write_mu);
        if (!rc && db->watch_overflow)
            rc = kd__err(db, KD_ENOMEM, "out of memory noting values reused during the compaction");
        if (!rc) {
            plan_take_hits(db, &pl);
            memcpy(doomed, pl.drop, pl.n_vals);
            db->doomed = doomed;
            db->n_doomed = pl.n_vals;
        }
        stop_watch(db);
        pthread_mutex_unlock(&db->write_mu);
    }
    if (!rc && (rc = plan_lists(db, &pl)))
        rc = kd__err(db, rc, "out of memory");
    if (!rc && (rc = drops_json(&pl)))
        rc = kd__err(db, rc, "out of memory");
    if (!rc) {
        pthread_rwlock_rdlock(&db->ix_lock);
        rc = plan_segments(db, &pl, nos, firsts, nsealed);
        pthread_rwlock_unlock(&db->ix_lock);
    }
    if (!rc && dry_run && seal) /* the newest segment would be rewritten too */
        for (size_t i = 0; i < pl.n_pr; i++)
            if (pl.pr[i].ts >= firsts[nsealed]) {
                pl.n_segs++;
                break;
            }
    if (!rc) {
        out->versions_pruned = pl.n_pr;
        out->values_freed = pl.values_freed;
        out->bytes_freed = pl.bytes_freed;
        out->versions_held = pl.held;
        out->segments_rewritten = dry_run ? pl.n_segs : 0;
    }
    if (!rc && !dry_run && (pl.n_pr || pl.n_vids || pl.n_dropped)) {
        if (!(rc = next_number(db, &pl.number)) && !(rc = pending_write(db, &pl)) &&
            !(rc = write_record(db, &pl, NULL))) {
            for (size_t i = 0; i < pl.n_dropped; i++)
                drops_forget(db, pl.dropped[i].name, pl.dropped[i].before);
            uint64_t saved = 0;
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            rc = apply_plan(db, &pl, &saved, &out->segments_rewritten, &out->versions_pruned);
            clock_gettime(CLOCK_MONOTONIC, &b);
            /* Only once its writes are flagged pruned in the log: a version
             * hidden by the cut counts as pruned already (plan_versions). */
            for (size_t i = 0; !rc && i < pl.n_dropped; i++)
                drops_cut(db, pl.dropped[i].name, pl.dropped[i].before);
            out->number = pl.number;
            kd__log(db, KD_LOG_INFO, "compaction %llu: %llu writes pruned, %llu values (%llu bytes) removed, %llu "
                    "segments rewritten in %.0f ms, %llu bytes of log freed", (unsigned long long)pl.number,
                    (unsigned long long)out->versions_pruned, (unsigned long long)pl.values_freed,
                    (unsigned long long)pl.bytes_freed, (unsigned long long)out->segments_rewritten,
                    (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6,
                    (unsigned long long)saved);
        }
        if (rc && pl.number) {
            /* Not recorded: the plan file is useless; recorded: reopening
             * finishes the work. */
            char key[24];
            snprintf(key, sizeof key, "%010llu", (unsigned long long)pl.number);
            kd__allow_reserved(1);
            int recorded = kd_contains(db, KD__NS_COMPACTIONS, key) == 1;
            kd__allow_reserved(0);
            if (!recorded)
                pending_remove(db);
        }
    }
    if (doomed) {
        pthread_mutex_lock(&db->write_mu);
        if (db->doomed == doomed) {
            db->doomed = NULL;
            db->n_doomed = 0;
        }
        pthread_mutex_unlock(&db->write_mu);
        free(doomed);
    }
    free(nos);
    free(firsts);
    plan_free(&pl);
    policies_free(&ps);
    return rc;
}

KD_EXPORT int kd_compact(kd_db *db, int dry_run, kd_compact_report *out)
{
    if (db && db->core) /* a workspace handle: the whole database */
        db = db->core;
    kd_compact_report r;
    memset(&r, 0, sizeof r);
    struct timespec t0, t1, wall;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_REALTIME, &wall);
    int rc = kd__compact(db, dry_run, 1, 1, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!dry_run && db)
        kd__upkeep_retention_ran(db, (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec,
                                 (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec), rc, &r);
    if (out)
        *out = r;
    return rc;
}

int kd__compact(kd_db *db, int dry_run, int seal, int wait, kd_compact_report *out)
{
    if (!db)
        return KD_EMISUSE;
    kd_compact_report ignored;
    if (!out)
        out = &ignored;
    memset(out, 0, sizeof *out);
    if (kd__failed(db))
        return kd__err(db, KD_EIO, "the database stopped writing after an I/O error; reopen it");
    /* The upkeep thread does not wait behind a backup or kd_compact: it
     * tries again next time. */
    if (!wait) {
        if (pthread_mutex_trylock(&db->compact_mu))
            return KD_OK;
    } else {
        pthread_mutex_lock(&db->compact_mu);
    }
    int rc = compact_run(db, dry_run, seal, out);
    pthread_mutex_unlock(&db->compact_mu);
    return rc;
}

/* ------------------------------------------------------------------------
 * Finishing an interrupted compaction at open
 * ---------------------------------------------------------------------- */

/* The as_of of a "started" record (canonical JSON: "as_of" is its first
 * member); 0 when it has none. */
static int64_t started_as_of(const char *json)
{
    static const char prefix[] = "{\"as_of\":\"";
    if (strncmp(json, prefix, sizeof prefix - 1) != 0)
        return 0;
    const char *t = json + sizeof prefix - 1;
    const char *end = strchr(t, '"');
    char when[64];
    int64_t ts = 0;
    if (!end || (size_t)(end - t) >= sizeof when)
        return 0;
    memcpy(when, t, (size_t)(end - t));
    when[end - t] = '\0';
    return kd_time_parse(when, &ts, NULL, 0) == KD_OK ? ts : 0;
}

int kd__compact_resume(kd_db *db)
{
    plan pl = {0};
    int rc = pending_read(db, &pl);
    if (rc == KD_ENOTFOUND)
        return KD_OK;
    if (rc == KD_ECORRUPT) {
        kd__log(db, KD_LOG_WARN, "%s/%s is incomplete (a crash while it was written): removed; nothing was compacted",
                db->path, PENDING_NAME);
        pending_remove(db);
        return KD_OK;
    }
    if (rc)
        return kd__err(db, rc, "cannot read %s/%s", db->path, PENDING_NAME);
    char key[24];
    snprintf(key, sizeof key, "%010llu", (unsigned long long)pl.number);
    char *started = NULL;
    size_t started_len = 0;
    kd__allow_reserved(1);
    int recorded = kd_get(db, KD__NS_COMPACTIONS, key, &started, &started_len, NULL) == KD_OK;
    kd__allow_reserved(0);
    /* The plan's time is in its "started" record (compact.pending does not
     * hold it): the "done" record says the same as_of. */
    if (recorded) {
        pl.as_of = started_as_of(started);
        kd__jv dropped = record_at(started, started_len, "dropped");
        if (dropped.p && kd__buf_append(&pl.dropped_json, dropped.p, dropped.len)) {
            kd_free(started);
            plan_free(&pl);
            return kd__err(db, KD_ENOMEM, "out of memory");
        }
    }
    if (!recorded) {
        kd__log(db, KD_LOG_INFO, "compaction %llu was interrupted before it changed anything: dropped",
                (unsigned long long)pl.number);
        pending_remove(db);
        kd_free(started);
        plan_free(&pl);
        return KD_OK;
    }
    kd__log(db, KD_LOG_INFO, "finishing compaction %llu, interrupted by a crash", (unsigned long long)pl.number);
    uint64_t saved = 0, rewritten = 0, marked = 0;
    pl.resumed = 1;
    rc = apply_plan(db, &pl, &saved, &rewritten, &marked);
    /* Its writes are flagged now: its dropped workspaces' cut holds. */
    if (!rc && drops_apply_record(db, started, started_len))
        rc = kd__err(db, KD_ECORRUPT, "compaction %llu: its \"dropped\" member does not map workspace names to times",
                     (unsigned long long)pl.number);
    kd_free(started);
    plan_free(&pl);
    return rc ? rc : 1;
}
