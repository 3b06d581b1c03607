/*
 * write.c — the single write path. kd_put, kd_delete, their conditional
 * forms and kd_put_batch all build a list of kd_write and call kd__commit,
 * which turns it into one TXN record:
 *
 *   1. outside any lock: check names, canonicalize and hash values;
 *   2. under write_mu: resolve each key's current head (earlier writes of the
 *      same batch count), check conditions, assign timestamps, compute
 *      write_ids and the new causal root, encode the record, append it;
 *   3. still under write_mu: apply the record to the index (exclusive
 *      ix_lock, briefly) — invisible to readers until visible_ts moves;
 *   4. after write_mu: make it durable per the sync mode (group commit for
 *      sync=always) and publish visible_ts.
 * If the append fails, nothing was applied and nothing changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "query/hooks.h"
#include "json/json.h"
#include "vector/vstore.h"

int kd__seg_create(kd_db *db, uint64_t no, char *err, size_t errlen);

int64_t kd__visible(const kd_db *db)
{
    return __atomic_load_n(&db->visible_ts, __ATOMIC_ACQUIRE);
}

static void publish(kd_db *db, int64_t ts)
{
    int64_t cur = __atomic_load_n(&db->visible_ts, __ATOMIC_RELAXED);
    while (cur < ts && !__atomic_compare_exchange_n(&db->visible_ts, &cur, ts, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
    if (kd__hooks_wanted(&db->hooks))
        kd__hooks_published(db);
}

static int errno_rc(int err)
{
    return (err == ENOSPC || err == EDQUOT) ? KD_ENOSPACE : err == ENOMEM ? KD_ENOMEM : KD_EIO;
}

/* ------------------------------------------------------------------------
 * Validation
 * ---------------------------------------------------------------------- */

/* What is wrong with a name, in `why`; KD_OK when nothing is. */
static int name_problem(const char *what, const char *s, size_t max, char *why, size_t whylen)
{
    if (!s)
        return snprintf(why, whylen, "%s is missing", what), KD_EINVALID;
    size_t n = strlen(s);
    if (n == 0)
        return snprintf(why, whylen, "%s is empty", what), KD_EINVALID;
    if (n > max)
        return snprintf(why, whylen, "%s is %zu bytes; the limit is %zu", what, n, max), KD_ETOOBIG;
    if (!kd__utf8_valid(s, n))
        return snprintf(why, whylen, "%s is not valid UTF-8", what), KD_EINVALID;
    return KD_OK;
}

/* The checks of kd_check_name (of the key too unless `ns_only`);
 * `reserved_ok` lets _kd namespaces pass. */
static int names_problem(const char *ns, const char *key, int ns_only, int reserved_ok, char *why, size_t whylen)
{
    int rc = name_problem("namespace", ns, 255, why, whylen);
    if (!rc && !ns_only)
        rc = name_problem("key", key, 1024, why, whylen);
    if (!rc && !reserved_ok && !strncmp(ns, "_kd", 3)) {
        snprintf(why, whylen, "namespace '%s' is reserved: names starting with _kd belong to the database", ns);
        rc = KD_ERESERVED;
    }
    return rc;
}

int kd_check_name(const char *ns, const char *key, char *errbuf, size_t errlen)
{
    char why[1400];
    int rc = names_problem(ns, key, key == NULL, 0, why, sizeof why);
    if (rc && errbuf && errlen)
        snprintf(errbuf, errlen, "%s", why);
    return rc;
}

int kd__read_miss(kd_db *db, const char *ns, const char *key)
{
    char why[1400];
    int rc = names_problem(kd__qns_local(ns), key, 0, 1, why, sizeof why);
    return rc ? kd__err(db, rc, "%s", why) : kd__err(db, KD_ENOTFOUND, "%s/%s: not found", ns, key);
}

static __thread int allow_reserved;

void kd__allow_reserved(int on)
{
    allow_reserved = on;
}

int kd__check_names(kd_db *db, const char *ns, const char *key)
{
    if (ns) /* a workspace's qualified name: its namespace part is checked */
        ns = kd__qns_local(ns);
    char why[1400];
    int rc = names_problem(ns, key, 0, allow_reserved, why, sizeof why);
    return rc ? kd__err(db, rc, "%s", why) : KD_OK;
}

/* ------------------------------------------------------------------------
 * Clock
 * ---------------------------------------------------------------------- */

int64_t kd_now(void);

/* ------------------------------------------------------------------------
 * Durability
 * ---------------------------------------------------------------------- */

/* Before syncing, a leader gives writers that are still preparing or
 * appending a moment to join its group (PostgreSQL's commit_delay, but only
 * while other writers are actually in flight, and never longer than the
 * last sync took): one fsync then covers more commits. It yields instead of
 * sleeping: a sleeping leader, woken by the writer completing its group,
 * measured slower on 2 vCPUs (docs/BENCH.md, "Group commit and the put
 * path"). */
static void gather_group(kd_db *db)
{
    int64_t budget = __atomic_load_n(&db->last_sync_ns, __ATOMIC_RELAXED);
    if (budget > 200000)
        budget = 200000;
    int64_t deadline = kd__mono_ns() + budget;
    while (__atomic_load_n(&db->unsynced, __ATOMIC_ACQUIRE) < __atomic_load_n(&db->committers, __ATOMIC_ACQUIRE) &&
           kd__mono_ns() < deadline)
        sched_yield();
}

/* Writers waiting for a sync sleep on sync_gen, a futex word the syncing
 * writer bumps after each fsync, and wake all at once: each then reads
 * `synced` itself, so none queues on a mutex behind the others. The wake
 * call is skipped when nobody sleeps (a lone writer): a sleeper counts
 * itself in sync_waiters before it sleeps, and the syncing writer reads
 * that count after bumping the word (both sequentially consistent), so
 * either it sees the sleeper or the sleeper sees the new word. */
static void gen_wait(kd_db *db, uint32_t seen)
{
    __atomic_add_fetch(&db->sync_waiters, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &db->sync_gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
    __atomic_sub_fetch(&db->sync_waiters, 1, __ATOMIC_SEQ_CST);
}

static void gen_wake_all(kd_db *db)
{
    __atomic_add_fetch(&db->sync_gen, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&db->sync_waiters, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, &db->sync_gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* While another writer syncs, one waiting writer (at most one at a time)
 * yields the CPU in a loop until the sync ends, for at most 1.5 times as
 * long as the last sync took; the others sleep on sync_gen. The yielding
 * writer sees the sync end at once and appends its next write while the
 * sleepers are still being woken, and it keeps a virtual CPU awake, so
 * the sleepers wake faster too: with 8 writers, 26,700-27,400 durable
 * puts/s against 21,500-21,600 with all of them asleep, for ~10 % more
 * CPU per put (every writer yielding: 24,300-24,700/s for ~80 % more CPU
 * per put; docs/BENCH.md, "Group commit: one writer yields instead of
 * sleeping").
 * Returns 1 when the sync it waited for has ended, 0 when the caller must
 * sleep. */
static int follow_spin(kd_db *db, uint64_t pos, uint32_t gen)
{
    int none = 0;
    if (!__atomic_compare_exchange_n(&db->sync_spinner, &none, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return 0;
    int64_t budget = __atomic_load_n(&db->last_sync_ns, __ATOMIC_RELAXED) * 3 / 2;
    if (budget > 1000000)
        budget = 1000000;
    int64_t deadline = kd__mono_ns() + budget;
    int ended = 0;
    do {
        if (__atomic_load_n(&db->sync_gen, __ATOMIC_ACQUIRE) != gen ||
            __atomic_load_n(&db->synced, __ATOMIC_ACQUIRE) >= pos) {
            ended = 1;
            break;
        }
        sched_yield();
    } while (kd__mono_ns() < deadline);
    __atomic_store_n(&db->sync_spinner, 0, __ATOMIC_RELEASE);
    return ended;
}

/* Make everything appended so far durable; one caller syncs at a time and
 * the others wait for it (group commit). Publishes visible_ts. */
static int sync_upto(kd_db *db, uint64_t pos)
{
    for (;;) {
        /* Read the generation first: a sync that ends after this read
         * bumps it, so the wait below cannot miss that sync's wake-up. */
        uint32_t gen = __atomic_load_n(&db->sync_gen, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&db->synced, __ATOMIC_ACQUIRE) >= pos &&
            !__atomic_load_n(&db->unsynced_before, __ATOMIC_ACQUIRE))
            return KD_OK;
        if (kd__failed(db))
            return kd__err(db, KD_EIO, "an earlier fsync failed; the database refuses further writes until reopened");
        int idle = 0;
        if (!__atomic_compare_exchange_n(&db->syncing, &idle, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            if (!follow_spin(db, pos, gen))
                gen_wait(db, gen);
            continue;
        }

        gather_group(db);
        pthread_mutex_lock(&db->write_mu);
        uint64_t target = db->appended;
        int64_t target_ts = db->last_ts;
        int fd = db->sync_fd;
        __atomic_store_n(&db->sync_fd_busy, fd, __ATOMIC_RELEASE);
        __atomic_store_n(&db->unsynced, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&db->write_mu);
        int64_t t0 = kd__mono_ns();
        int ok = fdatasync(fd) == 0;
        int en = errno;
        __atomic_store_n(&db->sync_fd_busy, -1, __ATOMIC_RELEASE);
        __atomic_add_fetch(&db->log_syncs, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&db->last_sync_ns, kd__mono_ns() - t0, __ATOMIC_RELAXED);

        int rc = KD_OK;
        if (ok) {
            /* Visible first: a writer whose record this sync covered
             * returns as soon as it sees `synced` (or unsynced_before)
             * move, and then its write must be readable (the server's
             * grant cache, for one, reads right after a revocation).
             * Only the syncing writer stores `synced`, so it only grows.
             * fdatasync syncs the whole segment: the open's too, and
             * older segments were synced when the next one began. */
            publish(db, target_ts);
            if (target > __atomic_load_n(&db->synced, __ATOMIC_RELAXED))
                __atomic_store_n(&db->synced, target, __ATOMIC_RELEASE);
            __atomic_store_n(&db->unsynced_before, 0, __ATOMIC_RELEASE);
        } else {
            /* After a failed fsync the page cache may have dropped the data:
             * the only safe course is to stop writing (PostgreSQL's lesson). */
            kd__set_failed(db);
            rc = kd__err(db, KD_EIO, "fsync failed: %s; the database refuses further writes until reopened",
                         strerror(en));
            kd__log(db, KD_LOG_ERROR, "fsync failed: %s", strerror(en));
        }
        __atomic_store_n(&db->syncing, 0, __ATOMIC_RELEASE);
        gen_wake_all(db);
        if (rc)
            return rc;
    }
}

/* Deferred durability (korudelta.h, kd_defer_begin): the database whose
 * sync=always commits on this thread skip their wait, and the log position
 * the last of them must reach. */
static __thread kd_db *defer_db;
static __thread uint64_t defer_pos;

void kd_defer_begin(kd_db *db)
{
    defer_db = db && db->core ? db->core : db;
    defer_pos = 0;
}

uint64_t kd_defer_end(kd_db *db)
{
    uint64_t t = db && defer_db == (db->core ? db->core : db) ? defer_pos : 0;
    defer_db = NULL;
    defer_pos = 0;
    return t;
}

int kd_sync_ticket(kd_db *db, uint64_t ticket)
{
    if (!db)
        return KD_EMISUSE;
    if (db->core)
        db = db->core;
    return sync_upto(db, ticket);
}

int kd__sync_log(kd_db *db)
{
    pthread_mutex_lock(&db->write_mu);
    uint64_t pos = db->appended;
    pthread_mutex_unlock(&db->write_mu);
    return sync_upto(db, pos);
}

/* ------------------------------------------------------------------------
 * Commit
 * ---------------------------------------------------------------------- */

typedef struct prep {
    size_t canon_off, canon_len; /* in the canonical buffer; len 0 = delete */
    uint8_t vid[KD__HASH_LEN];
    kd__ns *ns;     /* resolved under write_mu, may be NULL (new) */
    kd__key *key;   /* may be NULL (new key) */
    int prev_in_batch; /* index of the previous write to the same key, -1 */
    int same_value_as; /* index of an earlier write of the same value, -1 */
    uint32_t vidx;     /* value index: found before the append, set for new ones when applied */
    uint32_t new_value; /* index among this txn's new values, or UINT32_MAX */
    kd__write_rec rec;
    uint32_t value_off; /* payload offset of this write's new value bytes */
    uint32_t prev_vidx; /* value the key had before this txn, KD__NO_VALUE if none */
    uint32_t restore;   /* a stored value whose bytes this write stores again
                           (retention removed them), else KD__NO_VALUE */
} prep;

/* Per-thread scratch so single puts do not allocate; freed when the thread
 * exits (a pthread key destructor, so leak checkers see no loss). */
typedef struct scratch {
    kd__buf canon;
    prep *preps;
    size_t cap;
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *arg)
{
    scratch *s = arg;
    kd__buf_free(&s->canon);
    free(s->preps);
    free(s);
}

static void scratch_key_init(void)
{
    pthread_key_create(&scratch_key, scratch_free);
}

/* Scratch with room for n preps, or NULL on OOM. */
static scratch *get_scratch(size_t n)
{
    pthread_once(&scratch_once, scratch_key_init);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s)) {
            free(s);
            return NULL;
        }
    }
    if (n > s->cap) {
        size_t cap = n < 16 ? 16 : n;
        prep *p = realloc(s->preps, cap * sizeof *p);
        if (!p)
            return NULL;
        s->preps = p;
        s->cap = cap;
    }
    return s;
}

/* Big batches leave big buffers behind; give them back. */
static void scratch_trim(scratch *s)
{
    if (s->canon.cap > (4u << 20))
        kd__buf_free(&s->canon);
    if (s->cap > 4096) {
        free(s->preps);
        s->preps = NULL;
        s->cap = 0;
    }
}

static int same_key(const kd_write *a, const kd_write *b)
{
    return !strcmp(a->key, b->key) && !strcmp(a->ns, b->ns);
}

/* For each write, the index of the previous write to the same key in this
 * batch (or -1). Small batches compare pairwise; large ones use a table. */
static int link_batch(const kd_write *w, size_t n, prep *p)
{
    if (n <= 16) {
        for (size_t i = 0; i < n; i++) {
            p[i].prev_in_batch = -1;
            for (size_t j = i; j-- > 0;)
                if (same_key(&w[i], &w[j])) {
                    p[i].prev_in_batch = (int)j;
                    break;
                }
        }
        return KD_OK;
    }
    size_t cap = 32;
    while (cap < n * 2)
        cap *= 2;
    int32_t *slot = malloc(cap * sizeof *slot);
    if (!slot)
        return KD_ENOMEM;
    memset(slot, 0xff, cap * sizeof *slot);
    for (size_t i = 0; i < n; i++) {
        uint64_t h = kd__hash_bytes(w[i].key, strlen(w[i].key), kd__hash_bytes(w[i].ns, strlen(w[i].ns), 1));
        size_t s = h & (cap - 1);
        p[i].prev_in_batch = -1;
        while (slot[s] >= 0) {
            if (same_key(&w[i], &w[slot[s]])) {
                p[i].prev_in_batch = slot[s];
                break;
            }
            s = (s + 1) & (cap - 1);
        }
        slot[s] = (int32_t)i;
    }
    free(slot);
    return KD_OK;
}

/* For each value write, the first earlier write in the batch of the same
 * value (or -1), so a batch stores each new value once. */
static int link_values(const kd_write *w, size_t n, prep *p)
{
    if (n <= 16) {
        for (size_t i = 0; i < n; i++) {
            p[i].same_value_as = -1;
            for (size_t j = 0; j < i && w[i].json; j++)
                if (w[j].json && !memcmp(p[j].vid, p[i].vid, KD__HASH_LEN)) {
                    p[i].same_value_as = (int)j;
                    break;
                }
        }
        return KD_OK;
    }
    size_t cap = 32;
    while (cap < n * 2)
        cap *= 2;
    int32_t *slot = malloc(cap * sizeof *slot);
    if (!slot)
        return KD_ENOMEM;
    memset(slot, 0xff, cap * sizeof *slot);
    for (size_t i = 0; i < n; i++) {
        p[i].same_value_as = -1;
        if (!w[i].json)
            continue;
        uint64_t h;
        memcpy(&h, p[i].vid, 8);
        size_t s = h & (cap - 1);
        while (slot[s] >= 0) {
            if (!memcmp(p[slot[s]].vid, p[i].vid, KD__HASH_LEN)) {
                p[i].same_value_as = slot[s];
                break;
            }
            s = (s + 1) & (cap - 1);
        }
        if (p[i].same_value_as < 0)
            slot[s] = (int32_t)i;
    }
    free(slot);
    return KD_OK;
}

/* Current head of a key for the writer: latest version, whether written
 * earlier in this batch or already in the index. */
typedef struct head {
    int exists, live; /* exists: the key has a write, the new one's parent */
    int dropped;      /* that write went with its dropped workspace (made
                         again since): for conditions, the key does not exist */
    uint8_t write_id[KD__HASH_LEN];
} head;

static void head_of(const kd_db *db, const prep *p, size_t i, head *h)
{
    memset(h, 0, sizeof *h);
    if (p[i].prev_in_batch >= 0) {
        const prep *q = &p[p[i].prev_in_batch];
        h->exists = 1;
        h->live = !(q->rec.flags & KD__WRITE_DELETED);
        memcpy(h->write_id, q->rec.write_id, KD__HASH_LEN);
        return;
    }
    if (p[i].key && p[i].key->n) {
        h->exists = 1;
        h->dropped = kd__ver_dropped(p[i].key->ns, &p[i].key->vers[p[i].key->n - 1]);
        h->live = kd__ver_value(db, p[i].key, p[i].key->n - 1) != KD__NO_VALUE; /* as kd_contains */
        memcpy(h->write_id, p[i].key->vers[p[i].key->n - 1].write_id, KD__HASH_LEN);
    }
}

/* Describe an applied transaction to the query layer (hooks.h), one write
 * at a time, in order. Runs under write_mu, so the index cannot change
 * underneath. A previous value that cannot be read back (an unmapped
 * segment whose read fails) is passed as missing. */
static void tell_hooks(kd_db *db, const kd_write *w, size_t n, const prep *p, const kd__buf *canon)
{
    kd__buf prevbuf = KD__BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        kd__applied x;
        x.ns = w[i].ns;
        x.key = w[i].key;
        x.k = p[i].key;
        x.rec = &p[i].rec;
        x.value = w[i].json ? canon->data + p[i].canon_off : NULL;
        x.value_len = w[i].json ? p[i].canon_len : 0;
        x.prev = NULL;
        x.prev_len = 0;
        if (p[i].prev_in_batch >= 0) {
            if (w[p[i].prev_in_batch].json) {
                x.prev = canon->data + p[p[i].prev_in_batch].canon_off;
                x.prev_len = p[p[i].prev_in_batch].canon_len;
            }
        } else if (p[i].prev_vidx != KD__NO_VALUE) {
            if (kd__value_bytes(db, p[i].prev_vidx, &prevbuf, &x.prev, &x.prev_len))
                x.prev = NULL;
        }
        /* Vector indexes first, so a subscriber woken by the event finds
         * the vector in a search. */
        if (kd__is_vectors_ns(x.rec->ns, x.rec->ns_len))
            kd__vstore_on_write(db, &x);
        kd__hooks_on_commit(db, &x, 1);
    }
    kd__buf_free(&prevbuf);
}

/* Does workspace ws (ws_len bytes) exist now, as far as applied writes go?
 * A handle opened on it before it was dropped must not write into it. */
static int ws_exists(const kd_db *db, const char *ws, size_t ws_len)
{
    if (ws_len == sizeof KD__DEFAULT_WS - 1 && !memcmp(ws, KD__DEFAULT_WS, ws_len))
        return 1;
    const kd__ns *s = kd__index_ns_find(&db->ix, KD__DEFAULT_WS, sizeof KD__DEFAULT_WS - 1, KD__NS_WORKSPACES,
                                        sizeof KD__NS_WORKSPACES - 1);
    const kd__key *k = s ? kd__index_key_find(&db->ix, s, ws, ws_len) : NULL;
    return k && k->n && k->vers[k->n - 1].value != KD__NO_VALUE;
}

static int check_cond(kd_db *db, const kd_write *w, const head *h, size_t i, size_t n)
{
    char where[48] = "";
    if (n > 1)
        snprintf(where, sizeof where, " (batch write %zu)", i);
    /* A key whose versions went with its dropped workspace (made again
     * since) does not exist for conditions, as for reads (read.c). */
    int exists = h->exists && !h->dropped;
    if (!w->json) {
        if (!exists)
            return kd__err(db, KD_ENOTFOUND, "cannot delete %s/%s: key not found%s", w->ns, w->key, where);
        if (!h->live)
            return kd__err(db, KD_EDELETED, "cannot delete %s/%s: already deleted%s", w->ns, w->key, where);
    }
    if (!w->expect)
        return KD_OK;
    if (!w->expect[0]) {
        if (h->live) {
            char cur[KD_ID_HEX];
            kd__hex_encode(h->write_id, KD__HASH_LEN, cur);
            return kd__err(db, KD_ECONFLICT, "%s/%s already exists (write_id %s)%s", w->ns, w->key, cur, where);
        }
        return KD_OK;
    }
    uint8_t want[KD__HASH_LEN];
    if (strlen(w->expect) != 64 || kd__hex_decode(w->expect, KD__HASH_LEN, want))
        return kd__err(db, KD_EINVALID, "expected write_id '%s' is not 64 hex digits%s", w->expect, where);
    if (!exists || memcmp(want, h->write_id, KD__HASH_LEN)) {
        char cur[KD_ID_HEX] = "none";
        if (exists)
            kd__hex_encode(h->write_id, KD__HASH_LEN, cur);
        return kd__err(db, KD_ECONFLICT, "%s/%s: current write_id is %s, not %s%s", w->ns, w->key, cur, w->expect,
                       where);
    }
    return KD_OK;
}

int kd__sync_fd_reopen(kd_db *db, char *err, size_t errlen)
{
    /* A sync that read sync_fd under write_mu stores it in sync_fd_busy
     * first and clears it after its fdatasync: a fd not busy now is not
     * used again, since the next sync reads sync_fd anew. At most one of
     * the two can be busy. */
    int busy = __atomic_load_n(&db->sync_fd_busy, __ATOMIC_ACQUIRE);
    if (db->sync_fd_old >= 0 && db->sync_fd_old != busy) {
        close(db->sync_fd_old);
        db->sync_fd_old = -1;
    }
    if (db->sync_fd >= 0) {
        if (db->sync_fd == busy)
            db->sync_fd_old = db->sync_fd;
        else
            close(db->sync_fd);
        db->sync_fd = -1;
    }
    char name[32], p[4096];
    snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(db->segs[db->nsegs - 1].no, name));
    int fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int en = errno;
        snprintf(err, errlen, "cannot open %s: %s", p, strerror(en));
        return errno_rc(en);
    }
    db->sync_fd = fd;
    return KD_OK;
}

/* Start the next segment: cut the reserve off the current one, sync it,
 * create and map the new one. */
static int rotate(kd_db *db)
{
    char why[512];
    kd__seg *cur = &db->segs[db->nsegs - 1];
    if (kd__tail_close(&db->tail, cur->size) != KD_OK || fdatasync(cur->fd) != 0) {
        /* The kernel reports a failed writeback once: retrying later
         * could acknowledge data it dropped. Stop writing instead. */
        kd__set_failed(db);
        return kd__err(db, KD_EIO, "cannot finish segment %llu: %s; the database refuses further writes until "
                       "reopened", (unsigned long long)cur->no, strerror(errno));
    }
    kd__ix_wrlock(db);
    int rc = kd__seg_create(db, cur->no + 1, why, sizeof why);
    pthread_rwlock_unlock(&db->ix_lock);
    if (!rc) {
        cur = &db->segs[db->nsegs - 1];
        rc = kd__tail_open(&db->tail, cur->fd, cur->size, why, sizeof why);
    }
    if (!rc)
        rc = kd__sync_fd_reopen(db, why, sizeof why);
    if (rc) {
        kd__set_failed(db); /* no mapped tail to write to: stop writing */
        return kd__err(db, rc, "%s", why);
    }
    return KD_OK;
}

int kd__seal_segment(kd_db *db)
{
    /* Flush the segment's pages first, without holding writers (as any
     * sync: a failure stops writing): rotate() syncs it again under
     * write_mu, with little left to write then. */
    kd__sync_log(db);
    pthread_mutex_lock(&db->write_mu);
    int rc = kd__failed(db) ? kd__err(db, KD_EIO, "the database stopped writing after an I/O error; reopen it")
                            : KD_OK;
    if (!rc && db->segs[db->nsegs - 1].size > KD__SEG_HEADER_LEN)
        rc = rotate(db);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

/* pwrite header and payload at `off`, finishing short writes. A failure
 * here is an I/O error (the space was reserved), so writing stops. */
static int write_at(kd_db *db, int fd, const uint8_t *hdr, const char *payload, size_t len, uint64_t off)
{
    struct iovec iov[2] = {{(void *)hdr, KD__REC_HEADER_LEN}, {(void *)payload, len}};
    size_t total = KD__REC_HEADER_LEN + len, done = 0;
    while (done < total) {
        ssize_t w;
        if (done == 0) {
            w = pwritev(fd, iov, 2, (off_t)off);
        } else {
            const char *src = done < KD__REC_HEADER_LEN ? (const char *)hdr + done
                                                       : payload + (done - KD__REC_HEADER_LEN);
            size_t n = done < KD__REC_HEADER_LEN ? KD__REC_HEADER_LEN - done : total - done;
            w = pwrite(fd, src, n, (off_t)(off + done));
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int en = w < 0 ? errno : EIO;
            kd__set_failed(db);
            return kd__err(db, errno_rc(en), "cannot write to the log: %s; the database refuses further writes "
                                             "until reopened", strerror(en));
        }
        done += (size_t)w;
    }
    return KD_OK;
}

/* Append header+payload at the end of the newest segment (rotating first
 * when it is full). Nothing is written unless space was reserved. */
static int append_record(kd_db *db, const uint8_t *hdr, const char *payload, size_t len, uint32_t *seg,
                         uint64_t *off)
{
    int rc;
    uint64_t size_now = db->segs[db->nsegs - 1].size;
    if ((size_now >= db->opt.segment_size || size_now + KD__REC_HEADER_LEN + len > KD__TAIL_MAP_SIZE) &&
        (rc = rotate(db)))
        return rc;
    kd__seg *cur = &db->segs[db->nsegs - 1];
    size_t total = KD__REC_HEADER_LEN + len;
    char why[512];
    if ((rc = kd__tail_reserve(&db->tail, cur->size + total, db->opt.sync != KD_SYNC_NONE, why, sizeof why))) {
        if (rc == KD_EIO) /* a failed sync of the reserve: see rotate() */
            kd__set_failed(db);
        return kd__err(db, rc, "%s", why);
    }
    if (db->opt.sync == KD_SYNC_ALWAYS) {
        /* An fsync after every commit write-protects the mapped tail page,
         * so a store through the mapping would take a page fault each time;
         * pwrite into the reserved (already written) blocks is cheaper. */
        if ((rc = write_at(db, cur->fd, hdr, payload, len, cur->size)))
            return rc;
    } else {
        /* Header first: a crash in the middle leaves a valid header followed
         * by a partial payload and zeros, which recovery recognises as torn. */
        memcpy(db->tail.map + cur->size, hdr, KD__REC_HEADER_LEN);
        __atomic_signal_fence(__ATOMIC_SEQ_CST); /* keep the compiler from moving the header after */
        memcpy(db->tail.map + cur->size + KD__REC_HEADER_LEN, payload, len);
    }
    *seg = (uint32_t)cur->no;
    *off = cur->size;
    db->last_rec_seg = cur->no;
    db->last_rec_off = cur->size;
    db->last_rec_end = cur->size + total;
    /* Readers (stats) read sizes without write_mu. */
    __atomic_store_n(&cur->size, cur->size + total, __ATOMIC_RELAXED);
    db->appended += total;
    kd__mem_after_append(db);
    return KD_OK;
}

static int commit(kd_db *db, const kd_write *writes, const kd_import *raw, int64_t at, size_t n, kd_version *out,
                  prep *p, kd__buf *canon);

/* `raw`, when not NULL, gives for each write the timestamp, node, parent and
 * write_id it must have (kd_import_versions); otherwise they are made here,
 * the timestamp `at` when it is not 0 (kd__commit_at), else now. */
static int commit_with_scratch(kd_db *db, const kd_write *writes, const kd_import *raw, int64_t at, size_t n,
                               kd_version *out)
{
    if (!db)
        return KD_EMISUSE;
    if (!writes || n == 0)
        return kd__err(db, KD_EINVALID, "a batch needs at least one write");
    if (n > 1000000)
        return kd__err(db, KD_ETOOBIG, "a batch holds at most 1,000,000 writes; got %zu", n);
    scratch *s = get_scratch(n);
    if (!s)
        return kd__err(db, KD_ENOMEM, "out of memory");
    kd__buf_reset(&s->canon);
    __atomic_add_fetch(&db->committers, 1, __ATOMIC_RELEASE);
    int rc = commit(db, writes, raw, at, n, out, s->preps, &s->canon);
    __atomic_sub_fetch(&db->committers, 1, __ATOMIC_RELEASE);
    scratch_trim(s);
    return rc;
}

int kd__commit(kd_db *db, const kd_write *writes, size_t n, kd_version *out)
{
    return commit_with_scratch(db, writes, NULL, 0, n, out);
}

int kd__commit_at(kd_db *db, const kd_write *writes, size_t n, int64_t at, kd_version *out)
{
    return commit_with_scratch(db, writes, NULL, at, n, out);
}

/* The checks kd_import_versions makes instead of check_cond: the parent is
 * the key's head, the timestamp moves forward, the write_id is honest. */
static int check_raw(kd_db *db, const kd_import *v, const head *h, int64_t prev_ts, int64_t now, size_t i,
                     uint8_t node[16], uint8_t write_id[KD__HASH_LEN])
{
    if (v->timestamp >= KD__TS_LIMIT)
        return kd__err(db, KD_EINVALID, "import %zu (%s/%s): timestamp %lld is beyond the year 2200", i, v->ns,
                       v->key, (long long)v->timestamp);
    if (v->timestamp > now) {
        /* Every later write would be stamped after it: "now", relative
         * times and retention by age would all be off by the difference. */
        char t[40], t_now[40];
        kd_time_format(v->timestamp, t, sizeof t);
        kd_time_format(now, t_now, sizeof t_now);
        return kd__err(db, KD_EINVALID, "import %zu (%s/%s): its time %s is in the future (now is %s): a history "
                       "from a clock ahead of this one imports once that time has passed", i, v->ns, v->key, t, t_now);
    }
    if (v->timestamp <= prev_ts) {
        char t[40], t_prev[40];
        kd_time_format(v->timestamp, t, sizeof t);
        kd_time_format(prev_ts, t_prev, sizeof t_prev);
        return kd__err(db, KD_EINVALID, "import %zu (%s/%s): its time %s is not after %s (%s): versions import "
                       "in time order, after everything in the database", i, v->ns, v->key, t, t_prev,
                       i ? "the previous version's in the batch" : "the database's newest write");
    }
    if (!v->node_id || strlen(v->node_id) != 32 || kd__hex_decode(v->node_id, 16, node))
        return kd__err(db, KD_EINVALID, "import %zu (%s/%s): node_id must be 32 hex digits", i, v->ns, v->key);
    if (!v->write_id || strlen(v->write_id) != 64 || kd__hex_decode(v->write_id, KD__HASH_LEN, write_id))
        return kd__err(db, KD_EINVALID, "import %zu (%s/%s): write_id must be 64 hex digits", i, v->ns, v->key);
    const char *prev = v->previous_write_id ? v->previous_write_id : "";
    uint8_t want[KD__HASH_LEN];
    if (!*prev) {
        if (h->exists)
            return kd__err(db, KD_ECONFLICT, "import %zu (%s/%s): has no previous_write_id but the key already has "
                           "versions", i, v->ns, v->key);
        return KD_OK;
    }
    if (strlen(prev) != 64 || kd__hex_decode(prev, KD__HASH_LEN, want))
        return kd__err(db, KD_EINVALID, "import %zu (%s/%s): previous_write_id must be 64 hex digits", i, v->ns,
                       v->key);
    if (!h->exists)
        return kd__err(db, KD_ECONFLICT, "import %zu (%s/%s): previous_write_id %s is a write this database does "
                       "not have (the key has no versions yet): the versions before it are missing, as in an "
                       "export of versions whose values retention removed", i, v->ns, v->key, prev);
    if (memcmp(want, h->write_id, KD__HASH_LEN))
        return kd__err(db, KD_ECONFLICT, "import %zu (%s/%s): previous_write_id %s is not the key's current write",
                       i, v->ns, v->key, prev);
    return KD_OK;
}

/* Set by kd__import_check: commit checks everything and writes nothing. */
static __thread int import_dry;

/* The versions into workspace `ws` of the database (`db` the core handle):
 * the same versions with qualified namespaces (write_ids hash the
 * workspace, so only versions recorded in a workspace of this name import
 * into it). */
static int import_into(kd_db *db, const char *ws, const kd_import *versions, size_t n)
{
    void *q;
    char *names;
    int rc = kd__ws_qualify_each(db, ws, versions, n, sizeof *versions, offsetof(kd_import, ns), NULL, &q, &names);
    if (!rc) {
        int was = kd__ws_internal_on();
        kd__ws_internal(1);
        rc = kd_import_versions(db, q, n);
        kd__ws_internal(was);
    }
    free(q);
    free(names);
    return rc;
}

int kd__import_check(kd_db *db, const char *ws, const kd_import *versions, size_t n)
{
    import_dry = 1;
    int rc = import_into(db, ws, versions, n);
    import_dry = 0;
    return rc;
}

int kd_import_versions(kd_db *db, const kd_import *versions, size_t n)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    if (!versions || n == 0)
        return kd__err(db, KD_EINVALID, "nothing to import");
    if (n > 1000000)
        return kd__err(db, KD_ETOOBIG, "an import batch holds at most 1,000,000 versions; got %zu", n);
    if (ws_)
        return import_into(db, ws_, versions, n);
    for (size_t i = 0; i < n; i++)
        if (versions[i].ns && kd__ws_check_plain(db, versions[i].ns))
            return kd__err(db, KD_EINVALID, "import %zu: namespace is not valid UTF-8", i);
    /* Vectors are user data kept in reserved namespaces (_kd.vec.NS): their
     * versions are imported like any other, once each is checked to be a
     * vector record. Every other _kd namespace stays refused. */
    int vectors = 0, other_reserved = 0;
    for (size_t i = 0; i < n; i++) {
        const char *ns = versions[i].ns ? kd__qns_local(versions[i].ns) : NULL;
        if (!ns || strncmp(ns, "_kd", 3))
            continue;
        if (!kd__is_vectors_ns(ns, strlen(ns))) {
            other_reserved = 1;
            continue;
        }
        vectors = 1;
        char why[256];
        int rc = versions[i].json ? kd__vrec_check(versions[i].json, versions[i].len, why, sizeof why) : KD_OK;
        if (rc == KD_ENOMEM)
            return kd__err(db, rc, "out of memory");
        if (rc)
            return kd__err(db, rc, "import %zu (%s/%s): not a vector record: %s", i, ns,
                           versions[i].key ? versions[i].key : "", why);
    }
    /* Vector versions: checked against the live vectors, with vector puts
     * held off until they are committed (kd__vstore_import_begin). */
    int rc;
    if (vectors) {
        kd__vstore_import_begin(db);
        if ((rc = kd__vstore_import_check(db, versions, n))) {
            kd__vstore_import_end(db);
            return rc;
        }
    }
    kd_write *w = malloc(n * sizeof *w);
    if (!w) {
        if (vectors)
            kd__vstore_import_end(db);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        w[i] = (kd_write){versions[i].ns, versions[i].key, versions[i].json, versions[i].len, NULL};
    int allow = vectors && !other_reserved;
    if (allow)
        kd__allow_reserved(1);
    rc = commit_with_scratch(db, w, versions, 0, n, NULL);
    if (allow)
        kd__allow_reserved(0);
    if (vectors)
        kd__vstore_import_end(db);
    free(w);
    return rc;
}

static int commit(kd_db *db, const kd_write *writes, const kd_import *raw, int64_t at, size_t n, kd_version *out,
                  prep *p, kd__buf *canon)
{
    int rc;

    /* 1. Names and values, outside any lock. */
    size_t total_values = 0;
    for (size_t i = 0; i < n; i++) {
        const kd_write *w = &writes[i];
        if ((rc = kd__check_names(db, w->ns, w->key))) {
            if (n > 1) {
                char why[512];
                snprintf(why, sizeof why, "%s", kd_errmsg(db)); /* kd__err reuses that buffer */
                kd__err(db, rc, "batch write %zu: %s", i, why);
            }
            return rc;
        }
        memset(&p[i], 0, sizeof p[i]);
        p[i].new_value = UINT32_MAX;
        p[i].restore = KD__NO_VALUE;
        if (!w->json)
            continue;
        char err[256];
        size_t start = canon->len;
        rc = kd__json_canonicalize(w->json, w->len, canon, err, sizeof err);
        if (rc == KD_EINVALID)
            return n > 1 ? kd__err(db, rc, "batch write %zu (%s/%s): %s", i, w->ns, w->key, err)
                         : kd__err(db, rc, "%s/%s: %s", w->ns, w->key, err);
        if (rc)
            return kd__err(db, rc, "out of memory");
        p[i].canon_off = start;
        p[i].canon_len = canon->len - start;
        if (p[i].canon_len > db->opt.max_value_size)
            return n > 1 ? kd__err(db, KD_ETOOBIG, "batch write %zu (%s/%s): value is %zu bytes; the limit is %zu", i,
                                   w->ns, w->key, p[i].canon_len, db->opt.max_value_size)
                         : kd__err(db, KD_ETOOBIG, "%s/%s: value is %zu bytes; the limit is %zu", w->ns, w->key,
                                   p[i].canon_len, db->opt.max_value_size);
        total_values += p[i].canon_len;
        if (total_values > KD__REC_MAX_PAYLOAD / 2)
            return kd__err(db, KD_ETOOBIG, "batch values add up to more than %u bytes", KD__REC_MAX_PAYLOAD / 2);
    }
    for (size_t i = 0; i < n; i++)
        if (writes[i].json)
            kd__sha256(canon->data + p[i].canon_off, p[i].canon_len, p[i].vid);
    if ((rc = link_batch(writes, n, p)) || (rc = link_values(writes, n, p)))
        return kd__err(db, rc, "out of memory");

    /* 2. Under the writer lock. */
    pthread_mutex_lock(&db->write_mu);
    if (kd__failed(db)) {
        pthread_mutex_unlock(&db->write_mu);
        return kd__err(db, KD_EIO, "an earlier fsync failed; the database refuses further writes until reopened");
    }
    int64_t ts = db->last_ts;
    uint8_t root[KD__HASH_LEN], views_root[KD__HASH_LEN], vectors_root[KD__HASH_LEN], auth_root[KD__HASH_LEN];
    memcpy(root, db->root, KD__HASH_LEN);
    memcpy(views_root, db->views_root, KD__HASH_LEN);
    memcpy(vectors_root, db->vectors_root, KD__HASH_LEN);
    memcpy(auth_root, db->auth_root, KD__HASH_LEN);
    uint32_t n_new = 0;
    int has_vec = 0; /* vector writes always reach the vector indexes */
    size_t payload_len = KD__TXN_HEADER_LEN;
    int64_t now = kd_now();
    for (size_t i = 0; i < n; i++) {
        const kd_write *w = &writes[i];
        const char *wsp, *nsp;
        size_t ws_len, ns_len, key_len = strlen(w->key);
        kd__qns_split(w->ns, strlen(w->ns), &wsp, &ws_len, &nsp, &ns_len);
        p[i].ns = kd__index_ns_find(&db->ix, wsp, ws_len, nsp, ns_len);
        p[i].key = p[i].ns ? kd__index_key_find(&db->ix, p[i].ns, w->key, key_len) : NULL;
        head h;
        head_of(db, p, i, &h);
        p[i].prev_vidx = p[i].key && p[i].key->n ? kd__ver_value(db, p[i].key, p[i].key->n - 1) : KD__NO_VALUE;
        kd__write_rec *r = &p[i].rec;
        uint8_t given_id[KD__HASH_LEN];
        if (raw) {
            if ((rc = check_raw(db, &raw[i], &h, ts, now, i, r->node, given_id)))
                goto unlock;
            ts = raw[i].timestamp;
        } else {
            if (!ws_exists(db, wsp, ws_len)) {
                rc = kd__err(db, KD_ENOTFOUND, "no workspace named '%.*s' (it was dropped)", (int)ws_len, wsp);
                goto unlock;
            }
            if ((rc = check_cond(db, w, &h, i, n)))
                goto unlock;
            if (ts >= KD__TS_LIMIT) {
                rc = kd__err(db, KD_EINVALID, "the database's clock is at its limit (%lld): no later timestamp "
                             "can be given", (long long)ts);
                goto unlock;
            }
            if (at && i == 0 && (at <= ts || at > now)) {
                char t_at[40], t_last[40];
                kd_time_format(at, t_at, sizeof t_at);
                kd_time_format(ts, t_last, sizeof t_last);
                rc = at > now ? kd__err(db, KD_EINVALID, "a write at %s would be in the future", t_at)
                              : kd__err(db, KD_EINVALID, "a write at %s would not come after the database's newest "
                                        "write (%s)", t_at, t_last);
                goto unlock;
            }
            ts = at && i == 0 ? at : now > ts ? now : ts + 1;
            memcpy(r->node, db->node, 16);
        }
        r->ts = ts;
        r->flags = w->json ? 0 : KD__WRITE_DELETED;
        r->n_parents = h.exists ? 1 : 0;
        if (h.exists)
            memcpy(r->parent, h.write_id, KD__HASH_LEN);
        if (w->json) {
            memcpy(r->version_id, p[i].vid, KD__HASH_LEN);
            p[i].vidx = kd__index_value_find(&db->ix, p[i].vid);
            if (p[i].vidx != KD__NO_VALUE && kd__value_must_restore(db, p[i].vidx)) {
                p[i].restore = p[i].vidx;
                p[i].vidx = KD__NO_VALUE;
            }
            if (p[i].vidx == KD__NO_VALUE && p[i].same_value_as < 0) {
                p[i].new_value = n_new++;
                payload_len += KD__VALUE_HEADER_LEN + p[i].canon_len;
            }
        }
        r->ws = wsp;
        r->ws_len = ws_len;
        r->ns = nsp;
        r->ns_len = ns_len;
        r->key = w->key;
        r->key_len = key_len;
        kd__write_id(r, r->write_id);
        if (raw && memcmp(r->write_id, given_id, KD__HASH_LEN)) {
            rc = kd__err(db, KD_EINVALID,
                         "import %zu (%s/%s): write_id %s does not match the version's contents (its workspace, "
                         "namespace, key, value, time, parent and node: was it edited, or written in another "
                         "workspace?)", i, w->ns, w->key, raw[i].write_id);
            goto unlock;
        }
        kd__root_advance(root, r->write_id);
        if (kd__is_views_ns(nsp, ns_len))
            kd__views_root_advance(views_root, r->write_id);
        else if (kd__is_vectors_ns(nsp, ns_len)) {
            kd__vectors_root_advance(vectors_root, r->write_id);
            has_vec = 1;
        } else if (kd__is_auth_ns(nsp, ns_len)) {
            kd__auth_root_advance(auth_root, r->write_id);
        }
        payload_len += KD__WRITE_HEADER_LEN + (size_t)r->n_parents * KD__HASH_LEN + r->ws_len + ns_len + key_len;
    }
    if (payload_len > KD__REC_MAX_PAYLOAD) {
        rc = kd__err(db, KD_ETOOBIG, "transaction of %zu bytes exceeds the record limit", payload_len);
        goto unlock;
    }

    if (import_dry) /* kd__import_check: every check passed */
        goto unlock;

    /* Encode: values first (in write order), then writes. */
    kd__buf *rec = &db->rec;
    kd__buf_reset(rec);
    if ((rc = kd__buf_reserve(rec, payload_len))) {
        rc = kd__err(db, rc, "out of memory");
        goto unlock;
    }
    kd__txn_put_header(rec, n_new, (uint32_t)n, root);
    for (size_t i = 0; i < n; i++)
        if (p[i].new_value != UINT32_MAX) {
            p[i].value_off = (uint32_t)(rec->len + KD__VALUE_HEADER_LEN);
            kd__txn_put_value(rec, p[i].vid, canon->data + p[i].canon_off, (uint32_t)p[i].canon_len, 0);
        }
    for (size_t i = 0; i < n; i++)
        kd__txn_put_write(rec, &p[i].rec);

    uint8_t hdr[KD__REC_HEADER_LEN];
    kd__rec_header_encode(hdr, KD__REC_TXN, rec->data, (uint32_t)rec->len);
    uint32_t seg = 0;
    uint64_t rec_off = 0;
    if ((rc = append_record(db, hdr, rec->data, rec->len, &seg, &rec_off)))
        goto unlock;

    /* 3. Apply. The record is in the log; only memory can fail now. */
    kd__ix_wrlock(db);
    for (size_t i = 0; i < n && !rc; i++) {
        kd__ver v;
        v.ts = p[i].rec.ts;
        memcpy(v.write_id, p[i].rec.write_id, KD__HASH_LEN);
        v.value = KD__NO_VALUE;
        if (writes[i].json) {
            if (p[i].vidx == KD__NO_VALUE && p[i].same_value_as >= 0) {
                p[i].vidx = p[p[i].same_value_as].vidx;
            } else if (p[i].vidx == KD__NO_VALUE) {
                uint64_t voff = rec_off + KD__REC_HEADER_LEN + p[i].value_off;
                /* Values enter the hot cache when first read, not when
                 * written: writes stay cheap, and only what is read is hot. */
                /* A value a compaction removed or is removing gets a new
                 * entry: the old one goes on to be removed, for the
                 * versions that lose it. */
                rc = kd__index_value_add(&db->ix, p[i].vid, seg, (uint32_t)voff, (uint32_t)p[i].canon_len,
                                         p[i].restore != KD__NO_VALUE, &p[i].vidx);
            }
            v.value = p[i].vidx;
        }
        /* Keys found before the append are reused; new ones are created
         * once (a later write of the same key in the batch reuses it). */
        kd__key *k = p[i].key;
        if (!k && p[i].prev_in_batch >= 0)
            k = p[i].key = p[p[i].prev_in_batch].key;
        if (!k && !rc) {
            kd__ns *ns;
            rc = kd__index_ns_get(&db->ix, p[i].rec.ws, p[i].rec.ws_len, p[i].rec.ns, p[i].rec.ns_len, &ns);
            if (!rc)
                rc = kd__index_key_get(&db->ix, ns, writes[i].key, p[i].rec.key_len, &k);
            p[i].key = k;
        }
        if (!rc)
            rc = kd__index_append(&db->ix, k, &v);
    }
    pthread_rwlock_unlock(&db->ix_lock);
    if (rc) {
        /* The log holds the write but memory does not: stop writing rather
         * than serve a state that differs from the log. Reopen recovers. */
        kd__set_failed(db);
        rc = kd__err(db, KD_ENOMEM, "out of memory while indexing a logged write; reopen the database");
        goto unlock;
    }
    db->last_ts = ts;
    memcpy(db->root, root, KD__HASH_LEN);
    memcpy(db->views_root, views_root, KD__HASH_LEN);
    memcpy(db->vectors_root, vectors_root, KD__HASH_LEN);
    memcpy(db->auth_root, auth_root, KD__HASH_LEN);
    if (has_vec || kd__hooks_wanted(&db->hooks))
        tell_hooks(db, writes, n, p, canon);
    uint64_t pos = db->appended;
    if (db->opt.sync != KD_SYNC_ALWAYS)
        publish(db, ts);
    else
        __atomic_add_fetch(&db->unsynced, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&db->write_mu);

    /* 4. Durability (or, deferred, the ticket for kd_sync_ticket). */
    if (db->opt.sync == KD_SYNC_ALWAYS && defer_db == db) {
        if (pos > defer_pos)
            defer_pos = pos;
    } else if (db->opt.sync == KD_SYNC_ALWAYS && (rc = sync_upto(db, pos))) {
        return rc;
    }

    if (out) {
        for (size_t i = 0; i < n; i++) {
            kd_version *o = &out[i];
            const kd__write_rec *r = &p[i].rec;
            o->timestamp = r->ts;
            o->deleted = (r->flags & KD__WRITE_DELETED) ? 1 : 0;
            o->pruned = 0;
            if (o->deleted)
                o->version_id[0] = '\0';
            else
                kd__hex_encode(r->version_id, KD__HASH_LEN, o->version_id);
            kd__hex_encode(r->write_id, KD__HASH_LEN, o->write_id);
            if (r->n_parents)
                kd__hex_encode(r->parent, KD__HASH_LEN, o->previous_write_id);
            else
                o->previous_write_id[0] = '\0';
        }
    }
    return KD_OK;

unlock:
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

int kd__import_pruned(kd_db *db, const kd__write_rec *w)
{
    pthread_mutex_lock(&db->write_mu);
    int rc = KD_OK;
    kd__ns *ns = kd__index_ns_find(&db->ix, w->ws, w->ws_len, w->ns, w->ns_len);
    kd__key *k = ns ? kd__index_key_find(&db->ix, ns, w->key, w->key_len) : NULL;
    int parent_ok = k && k->n ? w->n_parents == 1 && !memcmp(w->parent, k->vers[k->n - 1].write_id, KD__HASH_LEN)
                              : w->n_parents == 0;
    uint8_t id[KD__HASH_LEN];
    kd__write_id(w, id);
    if (!(w->flags & KD__WRITE_PRUNED) || !w->pruned_by || w->ts <= db->last_ts || !parent_ok ||
        memcmp(id, w->write_id, KD__HASH_LEN)) {
        rc = kd__err(db, KD_EINVALID, "pruned write of %.*s/%.*s: its ids, parent or time do not follow",
                     (int)w->ns_len, w->ns, (int)w->key_len, w->key);
        goto unlock;
    }
    uint8_t root[KD__HASH_LEN];
    memcpy(root, db->root, KD__HASH_LEN);
    kd__root_advance(root, w->write_id);
    kd__buf *rec = &db->rec;
    kd__buf_reset(rec);
    size_t len = KD__TXN_HEADER_LEN + KD__WRITE_HEADER_LEN + (size_t)w->n_parents * KD__HASH_LEN + w->ws_len +
                 w->ns_len + w->key_len;
    if ((rc = kd__buf_reserve(rec, len))) {
        rc = kd__err(db, rc, "out of memory");
        goto unlock;
    }
    kd__txn_put_header(rec, 0, 1, root);
    kd__txn_put_write(rec, w);
    uint8_t hdr[KD__REC_HEADER_LEN];
    kd__rec_header_encode(hdr, KD__REC_TXN, rec->data, (uint32_t)rec->len);
    uint32_t seg;
    uint64_t off;
    if ((rc = append_record(db, hdr, rec->data, rec->len, &seg, &off)))
        goto unlock;
    kd__ix_wrlock(db);
    kd__ver v = {.ts = w->ts};
    memcpy(v.write_id, w->write_id, KD__HASH_LEN);
    v.value = kd__index_value_find(&db->ix, w->version_id);
    if (v.value == KD__NO_VALUE)
        rc = kd__index_value_add(&db->ix, w->version_id, KD__VAL_GONE, 0, 0, 0, &v.value);
    if (!rc && !k && !(rc = kd__index_ns_get(&db->ix, w->ws, w->ws_len, w->ns, w->ns_len, &ns)))
        rc = kd__index_key_get(&db->ix, ns, w->key, w->key_len, &k);
    if (!rc)
        rc = kd__index_append(&db->ix, k, &v);
    pthread_rwlock_unlock(&db->ix_lock);
    if (rc) {
        kd__set_failed(db);
        rc = kd__err(db, KD_ENOMEM, "out of memory while indexing a logged write; reopen the database");
        goto unlock;
    }
    memcpy(db->root, root, KD__HASH_LEN);
    db->last_ts = w->ts;
    if (db->opt.sync != KD_SYNC_ALWAYS)
        publish(db, w->ts);
    else
        __atomic_add_fetch(&db->unsynced, 1, __ATOMIC_RELEASE);
    uint64_t pos = db->appended;
    pthread_mutex_unlock(&db->write_mu);
    return db->opt.sync == KD_SYNC_ALWAYS ? sync_upto(db, pos) : KD_OK;
unlock:
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

/* ------------------------------------------------------------------------
 * Public write calls
 * ---------------------------------------------------------------------- */

int kd_put(kd_db *db, const char *ns, const char *key, const char *json, size_t len, kd_version *out)
{
    return kd_put_if(db, ns, key, json, len, NULL, out);
}

int kd_put_if(kd_db *db, const char *ns, const char *key, const char *json, size_t len, const char *expect,
              kd_version *out)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    if (!json)
        return kd__err(db, KD_EINVALID, "value is missing");
    kd_write w = {ns, key, json, len, expect};
    return kd__commit(db, &w, 1, out);
}

int kd_delete(kd_db *db, const char *ns, const char *key, kd_version *out)
{
    return kd_delete_if(db, ns, key, NULL, out);
}

int kd_delete_if(kd_db *db, const char *ns, const char *key, const char *expect, kd_version *out)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    KD__WS_NS(db, ns);
    kd_write w = {ns, key, NULL, 0, expect};
    return kd__commit(db, &w, 1, out);
}

int kd_put_batch(kd_db *db, const kd_write *writes, size_t n, kd_version *out)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    if (!ws_ || !writes || !n || n > 1000000) {
        for (size_t i = 0; writes && i < n && i <= 1000000; i++)
            if (writes[i].ns && kd__ws_check_plain(db, writes[i].ns)) {
                char why[512];
                snprintf(why, sizeof why, "%s", kd_errmsg(db));
                return kd__err(db, KD_EINVALID, "batch write %zu: %s", i, why);
            }
        return kd__commit(db, writes, n, out);
    }
    /* a workspace's batch: the same writes with qualified namespaces */
    void *q;
    char *names;
    int rc = kd__ws_qualify_each(db, ws_, writes, n, sizeof *writes, offsetof(kd_write, ns), "batch write", &q,
                                 &names);
    if (!rc)
        rc = kd__commit(db, q, n, out);
    free(q);
    free(names);
    return rc;
}
