/*
 * repair.c — kd_repair: salvage what is intact in a damaged database.
 *
 * The damaged log is read record by record, tolerating damage: a record
 * whose header checksum holds but whose payload does not is skipped by its
 * length; after a damaged header the walk looks for the next plausible
 * record header (its own checksum holds, known type, length that fits).
 * Every intact write is re-checked (write_id, timestamp order, parent link,
 * value present) and replayed with kd_import_versions into a new database
 * built beside the old one. A write that fails a check is lost, and so is
 * every later write of the same key (its parent is gone). Each loss is
 * reported through the callback.
 *
 * Two things the salvaged log alone would get wrong are settled after it:
 * a compaction whose pruned writes no salvaged record accounts for gets a
 * "done" record anew (else the result would not verify and nothing could
 * be salvaged), and a NODE that holds no node id is replaced by a new one.
 * Both are reported. When nothing at all was lost, the database must open:
 * repair never calls a database that does not open healthy.
 *
 * Only when the new database is complete and synced is it swapped in, with
 * one atomic directory exchange (renameat2 RENAME_EXCHANGE); the old files
 * are then moved to <path>.damaged-<time>. The new directory carries a
 * REPAIRING marker until the swap is done, so an interrupted repair can tell
 * an unfinished new build (deleted on the next run) from a swapped-out
 * original (kept).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "json/json.h"
#include "retention.h"
#include "util/crc32c.h"

#define MARKER "REPAIRING"

typedef struct rstate {
    kd_db *dst;
    kd_lost_fn lost;
    void *ctx;
    kd_repair_report *rep;
    int64_t last_ts;
    kd__index heads; /* per key: the last salvaged write (or a "broken" mark) */
    kd__buf value;
    kd__zdicts *zd;  /* the damaged database's dictionaries */
    uint32_t dict;   /* the segment's dictionary (from its header) */
    kd__comp_tallies comp; /* the salvaged pruned writes and compaction records */
    char stop_why[800]; /* why the repair stopped without changing anything */
} rstate;

static void report(rstate *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(rstate *st, const char *fmt, ...)
{
    if (!st->lost)
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    st->lost(st->ctx, line);
}

/* A key whose chain was broken keeps this mark as its head: every later
 * write of it is lost too. */
static const uint8_t BROKEN[KD__HASH_LEN] = {0xff, 0xff, 0xff, 0xff};

static int head_get(rstate *st, const kd__write_rec *w, kd__key **k)
{
    kd__ns *ns;
    int rc = kd__index_ns_get(&st->heads, w->ws, w->ws_len, w->ns, w->ns_len, &ns);
    return rc ? rc : kd__index_key_get(&st->heads, ns, w->key, w->key_len, k);
}

static void set_head(rstate *st, kd__key *k, int64_t ts, const uint8_t id[KD__HASH_LEN])
{
    kd__ver v = {.ts = ts, .value = 0};
    memcpy(v.write_id, id, KD__HASH_LEN);
    if (k->n)
        k->vers[0] = v; /* only the head matters */
    else
        kd__index_append(&st->heads, k, &v);
}

/* Count a salvaged write for the compaction accounting, as verify does: a
 * pruned write under its compaction's number, a compaction record under
 * its own (json: the write's value, NULL for a tombstone or pruned write). */
static int tally_write(rstate *st, const kd__write_rec *w, const char *json, size_t len)
{
    if (w->flags & KD__WRITE_PRUNED)
        return kd__comp_flagged(&st->comp, w->pruned_by, w->write_id);
    if (json && w->ns_len == strlen(KD__NS_COMPACTIONS) && !memcmp(w->ns, KD__NS_COMPACTIONS, w->ns_len))
        return kd__comp_record(&st->comp, w->key, w->key_len, json, len);
    return KD_OK;
}

/* Salvage the writes of one intact TXN payload. */
static int salvage_txn(rstate *st, const char *file, uint64_t off, const uint8_t *payload, size_t len)
{
    kd__txn_cursor c;
    char why[256];
    if (kd__txn_open(&c, payload, len, why, sizeof why)) {
        report(st, "%s offset %llu: record lost: %s", file, (unsigned long long)off, why);
        st->rep->records_lost++;
        return KD_OK;
    }
    kd__value_rec vals[64], *v = vals;
    if (c.n_values > 64 && !(v = malloc(c.n_values * sizeof *v)))
        return KD_ENOMEM;
    int rc = KD_OK, bad = 0;
    kd__buf *plain = NULL; /* the decompressed values of a consolidated segment */
    for (uint32_t i = 0; i < c.n_values && !bad; i++)
        bad = kd__txn_next_value(&c, &v[i], why, sizeof why);
    for (uint32_t i = 0; i < c.n_values && !bad; i++) {
        if (!v[i].zstd)
            continue;
        if (!plain && !(plain = calloc(c.n_values, sizeof *plain))) {
            rc = KD_ENOMEM;
            goto out;
        }
        int z = kd__zvalue_decode(st->zd, st->dict, v[i].data, v[i].len, KD__REC_MAX_PAYLOAD, &plain[i], why,
                                  sizeof why);
        if (z == KD_ENOMEM) {
            rc = z;
            goto out;
        }
        bad = z != KD_OK;
        v[i].data = plain[i].data;
        v[i].len = (uint32_t)plain[i].len;
        v[i].zstd = 0;
    }
    for (uint32_t i = 0; i < c.n_values && !bad; i++) {
        uint8_t h[KD__HASH_LEN];
        kd__sha256(v[i].data, v[i].len, h);
        if (memcmp(h, v[i].version_id, KD__HASH_LEN))
            snprintf(why, sizeof why, "value %u does not hash to its version_id", i), bad = 1;
    }
    if (bad) {
        report(st, "%s offset %llu: record lost: %s", file, (unsigned long long)off, why);
        st->rep->records_lost++;
        goto out;
    }
    st->rep->records_kept++;
    for (uint32_t i = 0; i < c.n_writes && !rc; i++) {
        kd__write_rec w;
        if (kd__txn_next_write(&c, &w, why, sizeof why)) {
            report(st, "%s offset %llu: rest of record lost: %s", file, (unsigned long long)off, why);
            st->rep->records_lost++;
            break;
        }
        kd__key *k;
        if ((rc = head_get(st, &w, &k)))
            break;
        char wid[KD_ID_HEX], vid[KD_ID_HEX], node[33], prev[KD_ID_HEX] = "";
        kd__hex_encode(w.write_id, KD__HASH_LEN, wid);
        kd__hex_encode(w.version_id, KD__HASH_LEN, vid);
        kd__hex_encode(w.node, 16, node);
        if (w.n_parents)
            kd__hex_encode(w.parent, KD__HASH_LEN, prev);
        const char *problem = NULL;
        uint8_t id[KD__HASH_LEN];
        kd__write_id(&w, id);
        int deleted = (w.flags & KD__WRITE_DELETED) != 0;
        int pruned = (w.flags & KD__WRITE_PRUNED) != 0; /* its value was removed by retention */
        if (k->n && !memcmp(k->vers[0].write_id, BROKEN, KD__HASH_LEN))
            problem = "an earlier version of this key was lost";
        else if (memcmp(id, w.write_id, KD__HASH_LEN))
            problem = "write_id does not match its contents";
        else if (w.ts <= st->last_ts)
            problem = "timestamp does not increase";
        else if (k->n ? (w.n_parents != 1 || memcmp(w.parent, k->vers[0].write_id, KD__HASH_LEN)) : w.n_parents != 0)
            problem = "parent is not the key's previous salvaged version";

        /* The value: in this record, or already salvaged. */
        char *owned = NULL;
        const char *json = NULL;
        size_t jlen = 0;
        if (!problem && !deleted && !pruned) {
            for (uint32_t j = 0; j < c.n_values && !json; j++)
                if (!memcmp(v[j].version_id, w.version_id, KD__HASH_LEN)) {
                    json = v[j].data;
                    jlen = v[j].len;
                }
            if (!json) {
                int g = kd_get_value(st->dst, vid, &owned, &jlen);
                if (g == KD_ENOMEM) {
                    rc = g;
                    break;
                }
                json = owned;
                if (!json)
                    problem = "its value was stored in a lost record";
            }
        }
        if (!problem) {
            /* a workspace's write keeps its workspace: "ws" 0xFF "ns" */
            char ns[KD__QNS_MAX], key[1025];
            size_t at = 0;
            if (w.ws_len != sizeof KD__DEFAULT_WS - 1 || memcmp(w.ws, KD__DEFAULT_WS, w.ws_len)) {
                memcpy(ns, w.ws, w.ws_len);
                ns[w.ws_len] = KD__WS_SEP;
                at = w.ws_len + 1;
            }
            memcpy(ns + at, w.ns, w.ns_len);
            ns[at + w.ns_len] = '\0';
            memcpy(key, w.key, w.key_len);
            key[w.key_len] = '\0';
            kd_import imp = {ns, key, deleted ? NULL : json, jlen, w.ts, node, prev, wid};
            kd__allow_reserved(1); /* view and index definitions are salvaged too */
            kd__ws_internal(1);
            int r = pruned ? kd__import_pruned(st->dst, &w) : kd_import_versions(st->dst, &imp, 1);
            kd__ws_internal(0);
            kd__allow_reserved(0);
            if (r == KD_ENOMEM || r == KD_EIO || r == KD_ENOSPACE) {
                free(owned);
                rc = r;
                break;
            }
            if (r)
                problem = kd_errmsg(st->dst);
            else if ((rc = tally_write(st, &w, deleted ? NULL : json, jlen))) {
                free(owned);
                break;
            }
        }
        free(owned);
        if (problem) {
            if (!k->n || memcmp(k->vers[0].write_id, BROKEN, KD__HASH_LEN))
                st->rep->keys_affected++;
            char t[40];
            kd_time_format(w.ts, t, sizeof t);
            report(st, "%s offset %llu: version lost: %.*s/%.*s write %s at %s: %s", file, (unsigned long long)off,
                   (int)w.ns_len, w.ns, (int)w.key_len, w.key, wid, t, problem);
            st->rep->versions_lost++;
            set_head(st, k, w.ts, BROKEN);
            continue;
        }
        st->rep->versions_kept++;
        st->last_ts = w.ts;
        set_head(st, k, w.ts, w.write_id);
    }
    if (!rc && kd__txn_close(&c, why, sizeof why)) {
        report(st, "%s offset %llu: record has trailing bytes: %s", file, (unsigned long long)off, why);
        st->rep->records_lost++;
    }
out:
    for (uint32_t i = 0; plain && i < c.n_values; i++)
        kd__buf_free(&plain[i]);
    free(plain);
    if (v != vals)
        free(v);
    return rc;
}

/* A damaged payload may still show which keys it held: name them (best
 * effort, as " (held ns/key, ...)") and mark their chains broken, so later
 * versions of those keys are reported lost for the right reason. */
static int damaged_keys(rstate *st, const uint8_t *payload, size_t len, char *out, size_t n)
{
    out[0] = '\0';
    kd__txn_cursor c;
    char why[256];
    if (kd__txn_open(&c, payload, len, why, sizeof why))
        return KD_OK;
    for (uint32_t i = 0; i < c.n_values; i++) {
        kd__value_rec v;
        if (kd__txn_next_value(&c, &v, why, sizeof why))
            return KD_OK;
    }
    size_t used = 0;
    for (uint32_t i = 0; i < c.n_writes; i++) {
        kd__write_rec w;
        if (kd__txn_next_write(&c, &w, why, sizeof why) || !kd__utf8_valid(w.ns, w.ns_len) ||
            !kd__utf8_valid(w.key, w.key_len))
            break;
        kd__key *k;
        int rc = head_get(st, &w, &k);
        if (rc)
            return rc;
        if (!k->n || memcmp(k->vers[0].write_id, BROKEN, KD__HASH_LEN))
            st->rep->keys_affected++;
        set_head(st, k, w.ts, BROKEN);
        if (used < n)
            used += (size_t)snprintf(out + used, n - used, "%s%.*s/%.*s", i ? ", " : " (held ", (int)w.ns_len, w.ns,
                                     (int)w.key_len, w.key);
    }
    if (used && used < n)
        snprintf(out + used, n - used, ")");
    return KD_OK;
}

/* Does a plausible record header start at p (len bytes available)? */
static int plausible(const uint8_t *p, uint64_t avail)
{
    uint8_t type;
    uint32_t len, pcrc;
    if (avail < KD__REC_HEADER_LEN || kd__rec_header_decode(p, &type, &len, &pcrc))
        return 0;
    return type == KD__REC_TXN && len <= avail - KD__REC_HEADER_LEN;
}

static int all_zero(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Salvage one segment file, whatever state it is in. */
static int salvage_segment(rstate *st, const char *dir, uint64_t no, int newest)
{
    char name[32], p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, kd__seg_name(no, name));
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        report(st, "%s: unreadable (%s): all its records lost", name, strerror(errno));
        st->rep->records_lost++;
        if (fd >= 0)
            close(fd);
        return KD_OK;
    }
    uint64_t size = (uint64_t)sb.st_size;
    st->rep->segments++;
    /* Every anomaly counts as a loss, even one that holds no record: the
     * original would not open, so it must be rewritten. */
    if (size < KD__SEG_HEADER_LEN) {
        report(st, "%s: shorter than a segment header (%llu bytes)", name, (unsigned long long)size);
        st->rep->records_lost++;
        close(fd);
        return KD_OK;
    }
    uint8_t *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        report(st, "%s: cannot be mapped (%s): all its records lost", name, strerror(errno));
        st->rep->records_lost++;
        return KD_OK;
    }
    uint64_t hno;
    uint32_t format;
    int h = kd__seg_header_decode(map, &hno, &format, &st->dict);
    if (h == -2) {
        munmap(map, size);
        return KD_EFORMAT;
    }
    if (h == 0 && hno == no && st->dict) {
        /* A consolidated segment whose dictionary is missing or damaged is
         * not damage in the log: salvaging without it would drop every
         * compressed value. Stop, and say what to restore. */
        kd__buf d = KD__BUF_INIT;
        char why[300];
        int drc = kd__zdict_read(dir, st->dict, &d, why, sizeof why);
        kd__buf_free(&d);
        if (drc) {
            munmap(map, size);
            snprintf(st->stop_why, sizeof st->stop_why,
                     "%s names dictionary zdict-%08u, which cannot be read (%s): put the file back (from a copy of "
                     "the directory) and run repair again; nothing was changed", name, st->dict, why);
            return drc == KD_ENOMEM ? KD_ENOMEM : KD_ECORRUPT;
        }
    }
    if (h != 0 || hno != no) {
        st->dict = 0; /* unknown: compressed values of this segment are lost */
        report(st, "%s offset 0: damaged segment header (its records are read anyway)", name);
        st->rep->records_lost++;
    }
    /* A damaged segment header does not stop us: records are self-checking. */
    uint64_t off = KD__SEG_HEADER_LEN;
    int rc = KD_OK;
    while (off < size && !rc) {
        uint8_t type;
        uint32_t len, pcrc;
        uint64_t left = size - off;
        if (left >= KD__REC_HEADER_LEN && !kd__rec_header_decode(map + off, &type, &len, &pcrc) &&
            len <= left - KD__REC_HEADER_LEN) {
            const uint8_t *payload = map + off + KD__REC_HEADER_LEN;
            if (type == KD__REC_TXN && kd__crc32c(payload, len) == pcrc) {
                rc = salvage_txn(st, name, off, payload, len);
            } else {
                char keys[1024];
                rc = damaged_keys(st, payload, len, keys, sizeof keys);
                report(st, "%s offset %llu: record lost: %s%s", name, (unsigned long long)off,
                       type == KD__REC_TXN ? "payload checksum mismatch" : "unknown record type", keys);
                st->rep->records_lost++;
            }
            off += KD__REC_HEADER_LEN + len;
            continue;
        }
        if (all_zero(map + off, left)) {
            if (!newest) { /* only the newest segment may end in reserve */
                report(st, "%s offset %llu: %llu zero bytes at the end of an older segment", name,
                       (unsigned long long)off, (unsigned long long)left);
                st->rep->records_lost++;
            }
            break; /* reserved space, never written */
        }
        /* Damage: find the next plausible record header. */
        uint64_t next = off + 1;
        while (next < size && !plausible(map + next, size - next))
            next++;
        if (next >= size && newest)
            report(st, "%s offset %llu: torn or damaged tail of %llu bytes dropped", name, (unsigned long long)off,
                   (unsigned long long)left);
        else
            report(st, "%s offset %llu: %llu damaged bytes skipped (records in them lost)", name,
                   (unsigned long long)off, (unsigned long long)(next - off));
        st->rep->records_lost++;
        off = next;
    }
    munmap(map, size);
    return rc;
}

static int rm_tree(const char *path)
{
    char cmd[8400];
    /* Paths are ours (built from the database path); quote defensively. */
    if (strchr(path, '\''))
        return -1;
    snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", path);
    return system(cmd) == 0 ? 0 : -1;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void damaged_name(const char *path, char *out, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, n, "%s.damaged-%s", path, stamp);
    for (int i = 2; exists(out) && i < 1000; i++)
        snprintf(out, n, "%s.damaged-%s-%d", path, stamp, i);
}

/* ------------------------------------------------------------------------
 * What the log does not hold: the node id, the compaction accounting
 * ---------------------------------------------------------------------- */

/* A NODE that holds no node id is a loss: the new database keeps the new
 * id kd_open gave it, and the report says so; the writes in the log keep
 * the ids they were made with. The id is not guessed from the log: a
 * restored database's log may hold only its source's writes, and two
 * databases with one id would make the log's provenance lie. */
static void node_lost(rstate *st, const char *why)
{
    kd__hex_encode(st->dst->node, 16, st->rep->new_node_id);
    report(st, "NODE: %s: the node id is lost; the repaired database has a new one, %s (the writes in the log keep "
           "the node ids they were made with)", why, st->rep->new_node_id);
}

/* A compaction whose salvaged pruned writes no salvaged record accounts
 * for (its record, or some of the writes it counts, were in lost records)
 * would fail verify, and the whole repair with it. Those writes are real
 * history whose values a compaction removed: keep them, and write a "done"
 * record anew that counts exactly them, marked as written by repair.
 *
 * Only where the damage explains the mismatch: when this salvage lost
 * records, or when a compaction's "started" record is there without its
 * "done" one and no compaction is pending (a "done" record that was the
 * log's last record, cut by an open as a torn write). On a log salvaged
 * whole, any other mismatch is left to verify ("the log was altered"):
 * recording it would launder a tampered log. And a compaction that is
 * pending (compact.pending) is not damage: opening finishes it. */
static int record_compactions(rstate *st, const char *path)
{
    char pending[4300];
    snprintf(pending, sizeof pending, "%s/compact.pending", path);
    int interrupted = access(pending, F_OK) == 0;
    int lost_some = st->rep->records_lost > 0 || st->rep->segments_lost > 0;
    for (size_t n = 1; n < st->comp.n; n++) {
        const kd__comp_tally *t = &st->comp.t[n];
        char problem[400], was[300], hex[KD_ID_HEX];
        if (!t->seen || kd__comp_check(t, n, interrupted && !lost_some, problem, sizeof problem) == KD_OK)
            continue;
        int torn_done = t->started && !t->recorded && !interrupted;
        if (!lost_some && !torn_done)
            continue;
        unsigned long long seen = t->seen, claimed = t->claimed;
        if (!t->recorded && interrupted)
            snprintf(was, sizeof was, "it was interrupted (compact.pending) and cannot be finished on the salvaged "
                     "log: the %llu writes it had flagged pruned are recorded, the rest of its pruning is not done",
                     seen);
        else if (!t->recorded)
            snprintf(was, sizeof was, "no record accounts for the %llu writes flagged pruned by it (%s)", seen,
                     t->started ? "only its \"started\" record in " KD__NS_COMPACTIONS " was salvaged"
                                : "no record of it in " KD__NS_COMPACTIONS " was salvaged");
        else if (seen < claimed)
            snprintf(was, sizeof was, "its record accounts for %llu pruned writes, %llu of them salvaged", claimed,
                     seen);
        else
            snprintf(was, sizeof was, "its record accounts for %llu pruned writes, the salvaged log flags %llu",
                     claimed, seen);
        int rc = kd__compaction_done(st->dst, n, kd_now(), 1, NULL, &t->sha, t->seen);
        if (rc)
            return rc;
        uint8_t h[KD__HASH_LEN];
        kd__comp_digest(t, h);
        kd__hex_encode(h, KD__HASH_LEN, hex);
        report(st, "compaction %zu: %s: recorded anew from the salvaged log (%llu pruned writes, digest %.12s…)", n,
               was, seen, hex);
        st->rep->compactions_recorded++;
    }
    return KD_OK;
}

/* Nothing was lost: the database must open, or repair would say "nothing
 * to repair" about one that does not. (Opening takes the lock: ours is
 * released first.) */
static int check_opens(const char *path, const kd_options *opts, char *errbuf, size_t errlen)
{
    kd_db *db = NULL;
    char why[4096];
    int rc = kd_open(path, opts, &db, why, sizeof why);
    if (rc)
        snprintf(errbuf, errlen, "nothing in the log is damaged, but the database does not open: %s; repair cannot "
                 "fix that, nothing was changed", why);
    kd_close(db);
    return rc;
}

int kd_repair(const char *path, const kd_options *opts, kd_lost_fn lost, void *ctx, kd_repair_report *rep,
              char *kept_dir, size_t kept_len, char *errbuf, size_t errlen)
{
    char dummy_err[8];
    if (!errbuf || !errlen) {
        errbuf = dummy_err;
        errlen = sizeof dummy_err;
    }
    errbuf[0] = '\0';
    kd_repair_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    if (kept_dir && kept_len)
        kept_dir[0] = '\0';
    kd__keep_std_fds();
    if (!path || !*path || strlen(path) > 3000) {
        snprintf(errbuf, errlen, "database path is empty or too long");
        return KD_EINVALID;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(errbuf, errlen, "%s is not a database directory", path);
        return KD_ENOTFOUND;
    }
    int lock_fd = -1, new_lock_fd = -1, rc, swap_rc = KD_OK;
    uint32_t timeout = 10000;
    if (opts)
        timeout = opts->busy_timeout_ms;
    if ((rc = kd__lock_dir(path, timeout, &lock_fd, errbuf, errlen)))
        return rc;

    char fresh[4200], damaged[4200];
    snprintf(fresh, sizeof fresh, "%s.repair-new", path);
    {
        /* A repair killed right after its swap leaves its marker in the
         * live database: remove it, or the next swap would carry it into
         * the copy kept aside and a later run would take that for an
         * unfinished build. */
        char stale[4300];
        snprintf(stale, sizeof stale, "%s/" MARKER, path);
        unlink(stale);
    }
    /* Left over from an interrupted repair? */
    if (exists(fresh)) {
        char marker[4300];
        snprintf(marker, sizeof marker, "%s/" MARKER, fresh);
        if (exists(marker)) {
            rm_tree(fresh); /* an unfinished new build */
        } else {
            damaged_name(path, damaged, sizeof damaged); /* an original swapped out: keep it */
            if (rename(fresh, damaged) != 0) {
                snprintf(errbuf, errlen, "cannot move aside %s: %s", fresh, strerror(errno));
                close(lock_fd);
                return KD_EIO;
            }
        }
    }

    uint64_t *nos = NULL;
    size_t nnos = 0;
    rstate st;
    memset(&st, 0, sizeof st);
    st.lost = lost;
    st.ctx = ctx;
    st.rep = rep;
    st.last_ts = INT64_MIN;
    kd_options *o = kd_options_new();
    if (!o || !(st.zd = kd__zdicts_new(path)) || kd__index_init(&st.heads)) {
        kd__zdicts_free(st.zd);
        kd_options_free(o);
        close(lock_fd);
        snprintf(errbuf, errlen, "out of memory");
        return KD_ENOMEM;
    }
    kd_options_set_sync(o, KD_SYNC_NONE, 0); /* synced once at the end */
    kd_options_set_busy_timeout(o, 0);
    uint8_t node[16];
    char node_why[4400];
    int node_rc = kd__node_read(path, node, node_why, sizeof node_why);
    if (node_rc != KD_OK && node_rc != KD_ENOTFOUND && node_rc != KD_ECORRUPT) {
        snprintf(errbuf, errlen, "%s; nothing was changed", node_why); /* not damage: say why, touch nothing */
        rc = node_rc;
        goto fail;
    }
    /* The copy is built beside the database, to be swapped in. Where that
     * is not allowed, it is built in the temporary directory instead, which
     * is enough to find a healthy database healthy (nothing to swap). */
    char beside[4400] = "";
    if (mkdir(fresh, 0755) != 0) {
        int e = errno;
        const char *tmpdir = getenv("TMPDIR");
        char prefix[4100], aside[4200];
        snprintf(prefix, sizeof prefix, "%s/kdelta-repair-", tmpdir && *tmpdir ? tmpdir : "/tmp");
        /* (a shared directory: the copy holds every record, so owner only,
         * before anything is written into it) */
        if ((e != EACCES && e != EPERM && e != EROFS) || kd__create_temp(prefix, 1, aside, sizeof aside) < 0) {
            snprintf(errbuf, errlen, "cannot create %s: %s", fresh, strerror(e));
            rc = KD_EIO;
            goto fail_keep; /* nothing of ours to remove */
        }
        if (chmod(aside, 0700) != 0) {
            snprintf(errbuf, errlen, "cannot create %s: %s", fresh, strerror(e));
            rmdir(aside);
            rc = KD_EIO;
            goto fail_keep;
        }
        snprintf(beside, sizeof beside, "cannot create %s: %s", fresh, strerror(e));
        snprintf(fresh, sizeof fresh, "%s", aside);
    }
    {
        /* The marker first: a kill before it would leave a directory that
         * the next repair takes for the original. */
        char marker[4300];
        snprintf(marker, sizeof marker, "%s/" MARKER, fresh);
        int mfd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (mfd < 0) {
            snprintf(errbuf, errlen, "cannot create %s: %s", marker, strerror(errno));
            rc = KD_EIO;
            goto fail;
        }
        close(mfd);
    }
    if (node_rc == KD_OK && (rc = kd__node_write(fresh, node, errbuf, errlen)))
        goto fail;
    if ((rc = kd_open(fresh, o, &st.dst, errbuf, errlen)))
        goto fail;
    if (node_rc == KD_ECORRUPT)
        node_lost(&st, node_why);
    if ((rc = kd__list_segments(path, &nos, &nnos, errbuf, errlen)))
        goto fail;
    if (node_rc == KD_ENOTFOUND && nnos) /* not damage (opening makes one), but the id is new: say which */
        kd__hex_encode(st.dst->node, 16, rep->new_node_id);
    for (size_t i = 0; i < nnos && !rc; i++) {
        uint64_t expect = i ? nos[i - 1] + 1 : 1;
        for (uint64_t m = expect; m < nos[i]; m++) {
            char name[32];
            report(&st, "%s: segment missing: all its records lost", kd__seg_name(m, name));
            rep->segments_lost++;
        }
        rc = salvage_segment(&st, path, nos[i], i + 1 == nnos);
        if (rc == KD_EFORMAT)
            snprintf(errbuf, errlen, "%s holds a segment of a newer format version; use a newer kdelta", path);
        else if (rc && st.stop_why[0])
            snprintf(errbuf, errlen, "%s", st.stop_why);
        else if (rc)
            snprintf(errbuf, errlen, "repair stopped: %s", kd_errmsg(st.dst));
    }
    if (!rc && (rc = record_compactions(&st, path)))
        snprintf(errbuf, errlen, "repair stopped: %s", kd_errmsg(st.dst));
    if (rc)
        goto fail;

    /* Nothing lost: the database was healthy; leave it as it is. */
    if (!rep->records_lost && !rep->segments_lost && !rep->versions_lost && !rep->compactions_recorded &&
        node_rc != KD_ECORRUPT) {
        kd_close(st.dst);
        st.dst = NULL;
        rm_tree(fresh);
        close(lock_fd);
        lock_fd = -1;
        if ((rc = check_opens(path, opts, errbuf, errlen)))
            goto fail;
        goto done;
    }
    if (beside[0]) { /* built aside: it cannot be swapped in */
        snprintf(errbuf, errlen, "the database needs repair, and the repaired copy is made beside it, where it "
                 "cannot be: %s (make the directory that holds the database writable)", beside);
        rc = KD_EIO;
        goto fail;
    }
    kd_verify_report vr;
    if ((rc = kd_verify(st.dst, &vr))) {
        snprintf(errbuf, errlen, "the salvaged database does not verify: %s", vr.problem);
        goto fail;
    }
    /* Make the new database durable, then swap it in atomically. */
    {
        int dfd = open(fresh, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = kd_close(st.dst);
        st.dst = NULL;
        for (size_t i = 0; dfd >= 0; i++) {
            /* kd_close synced the log only under sync=always: sync it all now */
            char name[32], p[4300];
            snprintf(p, sizeof p, "%s/%s", fresh, kd__seg_name(i + 1, name));
            int f = open(p, O_RDONLY | O_CLOEXEC);
            if (f < 0)
                break;
            if (fsync(f) != 0)
                rc = KD_EIO;
            close(f);
        }
        if (dfd >= 0) {
            if (fsync(dfd) != 0)
                rc = KD_EIO;
            close(dfd);
        }
        if (rc) {
            snprintf(errbuf, errlen, "cannot make the salvaged database durable");
            goto fail;
        }
    }
    /* Hold the new database's lock across the swap: a process that was
     * waiting on the old LOCK re-checks which file LOCK is and waits here. */
    if ((rc = kd__lock_dir(fresh, 0, &new_lock_fd, errbuf, errlen)))
        goto fail;
    if (syscall(SYS_renameat2, AT_FDCWD, fresh, AT_FDCWD, path, RENAME_EXCHANGE) != 0) {
        snprintf(errbuf, errlen, "cannot swap in the repaired database: %s (the original is untouched; the "
                 "salvaged copy is in %s)", strerror(errno), fresh);
        rc = KD_EIO;
        goto fail_keep;
    }
    /* Swapped: `path` is the repaired database, `fresh` the original. */
    {
        char marker[4300];
        snprintf(marker, sizeof marker, "%s/" MARKER, path);
        unlink(marker);
        damaged_name(path, damaged, sizeof damaged);
        if (rename(fresh, damaged) != 0)
            snprintf(damaged, sizeof damaged, "%s", fresh);
        if (kept_dir && kept_len)
            snprintf(kept_dir, kept_len, "%s", damaged);
        /* The swap and the rename are durable only once their directory
         * is: a crash before could bring the damaged database back under
         * `path` after writes to the repaired one were acknowledged. */
        if (kd__fsync_parent(path) != 0) {
            snprintf(errbuf, errlen, "the repaired database is in place at %s (the original is kept as %s), but the "
                     "directory holding them cannot be synced: %s; a crash now could undo the swap",
                     path, damaged, strerror(errno));
            swap_rc = KD_EIO;
        }
    }
done:
    if (new_lock_fd >= 0)
        close(new_lock_fd);
    kd_options_free(o);
    kd__index_free(&st.heads);
    kd__zdicts_free(st.zd);
    kd__comp_tallies_free(&st.comp);
    free(nos);
    if (lock_fd >= 0)
        close(lock_fd);
    return swap_rc;

fail:
    if (st.dst)
        kd_close(st.dst);
    rm_tree(fresh);
fail_keep:
    if (new_lock_fd >= 0)
        close(new_lock_fd);
    kd_options_free(o);
    kd__index_free(&st.heads);
    kd__zdicts_free(st.zd);
    kd__comp_tallies_free(&st.comp);
    free(nos);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}
