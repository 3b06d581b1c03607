/*
 * subs.c — change subscriptions: kd_subscribe, kd_sub_next, kd_event_clear,
 * kd_unsubscribe, and the hooks the commit path calls (subs.h, hooks.h).
 *
 * How an event travels. The writer, holding write_mu, calls
 * kd__subs_on_commit once per applied write in log order. For each
 * subscriber it runs a cheap match test (type, namespace, key, filter); the
 * first subscriber that wants the write makes the writer build one shared
 * event (one allocation holding names, values and the version record) and
 * every interested subscriber's queue takes a pointer to it, counted by one
 * atomic reference count. The writer never waits for a subscriber: a full
 * queue drops the event and counts it.
 *
 * A reader (kd_sub_next) hands out the event at the head of its queue only
 * once the database's visible_ts has reached the event's timestamp: with
 * sync=always the hook runs before the fsync, and a write must not be seen
 * before it is durable. Readers therefore wait for visibility, not for the
 * push: kd__subs_published (called whenever visible_ts moves) wakes them.
 * Every event is pushed before its timestamp is published (a write's
 * timestamp is always above visible_ts while the hook runs), so the hook
 * itself never needs to signal.
 *
 * Overflow. Each queued slot carries the number of events dropped just
 * before it (and the timestamp of the last of them); the subscriber also
 * keeps the count dropped after its newest queued event. The marker thus
 * never needs a slot of its own: kd_sub_next returns the queued events, then
 * one KD_EVENT_MISSED with the exact count of the gap, then what came after.
 *
 * Locks, outermost first: write_mu (or sync_mu, when publishing after an
 * fsync) → subs->mu (the list of subscribers) → sub->mu (one queue). The
 * list changes only with both write_mu and subs->mu held, so the hook reads
 * it under write_mu alone and readers under subs->mu alone. A subscriber is
 * freed when its last reference goes: the list holds one, and every thread
 * inside kd_sub_next holds one.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_int.h"
#include "filter.h"
#include "json/json.h"
#include "subs.h"
#include "util/sha.h"

#define SUB_QUEUE_DEFAULT 10000
#define SUB_QUEUE_MAX (1u << 30)
#define SUB_RING_FIRST 64

/* ------------------------------------------------------------------------
 * Structures
 * ---------------------------------------------------------------------- */

/* One write as delivered, shared by every subscriber that queued it. */
typedef struct sev {
    int refs; /* atomic */
    unsigned type;
    kd_version version;
    const char *ns, *key, *value, *prev; /* into data[]; value/prev may be NULL */
    size_t ns_len, key_len, value_len, prev_len;
    char data[];
} sev;

typedef struct slot {
    sev *ev;
    uint64_t missed;   /* events dropped just before this one */
    int64_t missed_ts; /* timestamp of the last of them */
} slot;

typedef struct sub {
    uint64_t id;
    int refs; /* atomic: the list's, plus one per thread inside kd_sub_next */
    /* What it wants (immutable after subscribe). */
    char *ws;       /* its handle's workspace (NULL: default) */
    char *ns, *key; /* NULL: any */
    size_t ns_len, key_len;
    unsigned types;
    kd_filter *filter;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot *ring; /* circular: count slots from head */
    size_t cap, head, count;
    size_t limit;       /* most events held (kd_sub_options.queue) */
    uint64_t missed;    /* dropped after the newest queued event */
    int64_t missed_ts;
    int waiting;        /* threads blocked in kd_sub_next */
    int closed;         /* unsubscribed */
} sub;

struct kd__subs {
    pthread_mutex_t mu;
    sub **list;
    size_t n, cap;
    uint64_t next_id;
    int waiters; /* atomic: threads blocked in kd_sub_next, all subscribers */
};

static struct kd__subs *subs_of(const kd_db *db)
{
    return __atomic_load_n(&db->subs, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------------
 * Events and subscribers: lifetime
 * ---------------------------------------------------------------------- */

static void sev_release(sev *e)
{
    if (e && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(e);
}

static unsigned event_type(const kd__applied *w)
{
    if (w->rec->flags & KD__WRITE_DELETED)
        return KD_EVENT_DELETE;
    return w->prev ? KD_EVENT_UPDATE : KD_EVENT_INSERT;
}

static char *put_str(char **at, const char *s, size_t len)
{
    char *p = *at;
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    *at = p + len + 1;
    return p;
}

/* The shared event for w, with one reference (the caller's). */
static sev *sev_build(const kd__applied *w, unsigned type)
{
    const kd__write_rec *r = w->rec;
    size_t value_len = w->value ? w->value_len : 0, prev_len = w->prev ? w->prev_len : 0;
    size_t need = r->ns_len + r->key_len + 2 + (w->value ? value_len + 1 : 0) + (w->prev ? prev_len + 1 : 0);
    sev *e = malloc(sizeof *e + need);
    if (!e)
        return NULL;
    e->refs = 1;
    e->type = type;
    char *at = e->data;
    e->ns = put_str(&at, r->ns, r->ns_len); /* without its workspace */
    e->ns_len = r->ns_len;
    e->key = put_str(&at, w->key, r->key_len);
    e->key_len = r->key_len;
    e->value = w->value ? put_str(&at, w->value, value_len) : NULL;
    e->value_len = value_len;
    e->prev = w->prev ? put_str(&at, w->prev, prev_len) : NULL;
    e->prev_len = prev_len;

    kd_version *v = &e->version;
    v->timestamp = r->ts;
    v->deleted = (r->flags & KD__WRITE_DELETED) ? 1 : 0;
    v->pruned = 0;
    if (v->deleted)
        v->version_id[0] = '\0';
    else
        kd__hex_encode(r->version_id, KD__HASH_LEN, v->version_id);
    kd__hex_encode(r->write_id, KD__HASH_LEN, v->write_id);
    if (r->n_parents)
        kd__hex_encode(r->parent, KD__HASH_LEN, v->previous_write_id);
    else
        v->previous_write_id[0] = '\0';
    return e;
}

static void sub_free(sub *s)
{
    for (size_t i = 0; i < s->count; i++)
        sev_release(s->ring[(s->head + i) % s->cap].ev);
    free(s->ring);
    free(s->ws);
    free(s->ns);
    free(s->key);
    kd_filter_free(s->filter);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void sub_release(sub *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        sub_free(s);
}

/* The subscriber with this id, with a reference taken, or NULL. */
/* Does subscription s belong to workspace ws (NULL: default)? */
static int same_ws(const sub *s, const char *ws)
{
    return (!s->ws && !ws) || (s->ws && ws && !strcmp(s->ws, ws));
}

static sub *sub_get(struct kd__subs *ss, uint64_t id, const char *ws)
{
    sub *found = NULL;
    if (!ss)
        return NULL;
    pthread_mutex_lock(&ss->mu);
    for (size_t i = 0; i < ss->n; i++) {
        if (ss->list[i]->id == id && same_ws(ss->list[i], ws)) {
            found = ss->list[i];
            __atomic_add_fetch(&found->refs, 1, __ATOMIC_RELAXED);
            break;
        }
    }
    pthread_mutex_unlock(&ss->mu);
    return found;
}

/* ------------------------------------------------------------------------
 * The writer's side (hooks.h): runs with write_mu held
 * ---------------------------------------------------------------------- */

static int wants(const sub *s, const kd__applied *w, unsigned type)
{
    if (!(s->types & type))
        return 0;
    const kd__write_rec *r = w->rec;
    if (s->ws ? (r->ws_len != strlen(s->ws) || memcmp(r->ws, s->ws, r->ws_len))
              : (r->ws_len != sizeof KD__DEFAULT_WS - 1 || memcmp(r->ws, KD__DEFAULT_WS, r->ws_len)))
        return 0;
    if (s->ns && (s->ns_len != r->ns_len || memcmp(s->ns, r->ns, s->ns_len)))
        return 0;
    if (s->key && (s->key_len != w->rec->key_len || memcmp(s->key, w->key, s->key_len)))
        return 0;
    if (s->filter) {
        /* The new value, or for a delete the value deleted; one that cannot
         * be read back (a damaged segment, a lost dictionary) matches no
         * filter, as a pruned value does not. */
        const char *v = type == KD_EVENT_DELETE ? w->prev : w->value;
        size_t len = type == KD_EVENT_DELETE ? w->prev_len : w->value_len;
        return v && kd__filter_eval(s->filter, (kd__jv){v, len});
    }
    return 1;
}

/* Make room for one more slot (the ring grows up to the queue's limit). */
static int ring_room(sub *s)
{
    if (s->count < s->cap)
        return 1;
    if (s->cap >= s->limit)
        return 0;
    size_t ncap = s->cap ? s->cap * 2 : SUB_RING_FIRST;
    if (ncap > s->limit)
        ncap = s->limit;
    slot *r = malloc(ncap * sizeof *r);
    if (!r)
        return 0;
    for (size_t i = 0; i < s->count; i++)
        r[i] = s->ring[(s->head + i) % s->cap];
    free(s->ring);
    s->ring = r;
    s->cap = ncap;
    s->head = 0;
    return 1;
}

void kd__subs_on_commit(struct kd_db *db, const kd__applied *w, size_t n)
{
    struct kd__subs *ss = subs_of(db);
    if (!ss)
        return;
    for (size_t i = 0; i < n; i++) {
        const kd__applied *a = &w[i];
        if (a->rec->ns_len >= 3 && !memcmp(a->rec->ns, "_kd", 3) && !kd__is_vectors_ns(a->rec->ns, a->rec->ns_len))
            continue; /* reserved namespaces are the database's own, but for vectors (user data) */
        unsigned type = event_type(a);
        int64_t ts = a->rec->ts;
        sev *e = NULL;
        int build_failed = 0;
        for (size_t j = 0; j < ss->n; j++) {
            sub *s = ss->list[j];
            if (!wants(s, a, type))
                continue;
            pthread_mutex_lock(&s->mu);
            if (!build_failed && !e && ring_room(s) && !(e = sev_build(a, type)))
                build_failed = 1;
            if (!e || !ring_room(s)) {
                s->missed++;
                s->missed_ts = ts;
            } else {
                slot *sl = &s->ring[(s->head + s->count) % s->cap];
                sl->ev = e;
                sl->missed = s->missed;
                sl->missed_ts = s->missed_ts;
                s->missed = 0;
                s->count++;
                __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
                /* Not visible yet in practice (kd__subs_published wakes the
                 * reader); signal only if it already is. */
                if (s->waiting && ts <= kd__visible(db))
                    pthread_cond_broadcast(&s->cv);
            }
            pthread_mutex_unlock(&s->mu);
        }
        sev_release(e);
    }
}

void kd__subs_published(struct kd_db *db)
{
    struct kd__subs *ss = subs_of(db);
    if (!ss)
        return;
    /* Pairs with the fence in kd_sub_next: either we see its waiter, or it
     * sees the new visible_ts before it sleeps. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&ss->waiters, __ATOMIC_SEQ_CST))
        return;
    pthread_mutex_lock(&ss->mu);
    for (size_t i = 0; i < ss->n; i++) {
        sub *s = ss->list[i];
        pthread_mutex_lock(&s->mu);
        if (s->waiting)
            pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&ss->mu);
}

void kd__subs_close(struct kd_db *db)
{
    struct kd__subs *ss = subs_of(db);
    if (!ss)
        return;
    /* db->hooks also counts other followers of writes (secondary
     * indexes): take back only what the subscriptions added. */
    __atomic_sub_fetch(&db->hooks, (int)ss->n, __ATOMIC_RELEASE);
    for (size_t i = 0; i < ss->n; i++)
        sub_free(ss->list[i]);
    free(ss->list);
    pthread_mutex_destroy(&ss->mu);
    free(ss);
    __atomic_store_n(&db->subs, NULL, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------------
 * Public calls
 * ---------------------------------------------------------------------- */

static int check_name(kd_db *db, const char *what, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0)
        return kd__err(db, KD_EINVALID, "subscription %s is empty", what);
    if (n > max)
        return kd__err(db, KD_ETOOBIG, "subscription %s is %zu bytes; the limit is %zu", what, n, max);
    if (!kd__utf8_valid(s, n))
        return kd__err(db, KD_EINVALID, "subscription %s is not valid UTF-8", what);
    return KD_OK;
}

static char *dup_str(const char *s, size_t *len)
{
    *len = strlen(s);
    char *p = malloc(*len + 1);
    if (p)
        memcpy(p, s, *len + 1);
    return p;
}

static struct kd__subs *subs_create(void)
{
    struct kd__subs *ss = calloc(1, sizeof *ss);
    if (!ss)
        return NULL;
    if (pthread_mutex_init(&ss->mu, NULL)) {
        free(ss);
        return NULL;
    }
    return ss;
}

KD_EXPORT int kd_subscribe(kd_db *db, const kd_sub_options *opts, uint64_t *id)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    if (!id)
        return kd__err(db, KD_EINVALID, "kd_subscribe: id is missing");
    *id = 0;
    kd_sub_options none = {0};
    if (!opts)
        opts = &none;
    int rc;
    if (opts->key && !opts->ns)
        return kd__err(db, KD_EINVALID, "a subscription to a key needs its namespace");
    if (opts->ns) {
        if ((rc = check_name(db, "namespace", opts->ns, 255)))
            return rc;
        if (!strncmp(opts->ns, "_kd", 3) && !kd__is_vectors_ns(opts->ns, strlen(opts->ns)))
            return kd__err(db, KD_ERESERVED, "namespace '%s' is reserved: its writes are never delivered",
                           opts->ns);
    }
    if (opts->key && (rc = check_name(db, "key", opts->key, 1024)))
        return rc;
    if (opts->types & ~KD_EVENT_ALL)
        return kd__err(db, KD_EINVALID, "event types 0x%x: only KD_EVENT_INSERT, UPDATE and DELETE can be chosen",
                       opts->types);
    if (opts->queue > SUB_QUEUE_MAX)
        return kd__err(db, KD_EINVALID, "a subscription queue holds at most %u events; asked for %zu",
                       SUB_QUEUE_MAX, opts->queue);

    sub *s = calloc(1, sizeof *s);
    if (!s)
        return kd__err(db, KD_ENOMEM, "out of memory");
    s->refs = 1;
    s->types = opts->types ? opts->types : KD_EVENT_ALL;
    s->limit = opts->queue ? opts->queue : SUB_QUEUE_DEFAULT;
    size_t ws_len;
    if ((ws_ && !(s->ws = dup_str(ws_, &ws_len))) || (opts->ns && !(s->ns = dup_str(opts->ns, &s->ns_len))) ||
        (opts->key && !(s->key = dup_str(opts->key, &s->key_len))) ||
        (opts->filter && !(s->filter = kd__filter_copy(opts->filter)))) {
        free(s->ws);
        free(s->ns);
        free(s->key);
        free(s);
        return kd__err(db, KD_ENOMEM, "out of memory");
    }
    pthread_condattr_t ca;
    int cv_ok = 0;
    if (!pthread_condattr_init(&ca)) {
        cv_ok = !pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) && !pthread_cond_init(&s->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (!cv_ok || pthread_mutex_init(&s->mu, NULL)) {
        if (cv_ok)
            pthread_cond_destroy(&s->cv);
        free(s->ws);
        free(s->ns);
        free(s->key);
        kd_filter_free(s->filter);
        free(s);
        return kd__err(db, KD_ENOMEM, "cannot create a subscription's lock");
    }

    /* Under write_mu the subscription starts at an exact point of the log:
     * it sees every write committed after this one returns. */
    rc = KD_OK;
    pthread_mutex_lock(&db->write_mu);
    struct kd__subs *ss = subs_of(db);
    if (!ss) {
        if (!(ss = subs_create()))
            rc = KD_ENOMEM;
        else
            __atomic_store_n(&db->subs, ss, __ATOMIC_RELEASE);
    }
    if (!rc) {
        pthread_mutex_lock(&ss->mu);
        if (ss->n == ss->cap) {
            size_t ncap = ss->cap ? ss->cap * 2 : 8;
            sub **l = realloc(ss->list, ncap * sizeof *l);
            if (l) {
                ss->list = l;
                ss->cap = ncap;
            } else {
                rc = KD_ENOMEM;
            }
        }
        if (!rc) {
            s->id = ++ss->next_id;
            ss->list[ss->n++] = s;
            __atomic_add_fetch(&db->hooks, 1, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&ss->mu);
    }
    pthread_mutex_unlock(&db->write_mu);
    if (rc) {
        sub_free(s);
        return kd__err(db, rc, "out of memory");
    }
    *id = s->id;
    return KD_OK;
}

KD_EXPORT int kd_unsubscribe(kd_db *db, uint64_t id)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    struct kd__subs *ss = subs_of(db);
    sub *s = NULL;
    if (ss) {
        pthread_mutex_lock(&db->write_mu);
        pthread_mutex_lock(&ss->mu);
        for (size_t i = 0; i < ss->n; i++) {
            if (ss->list[i]->id == id && same_ws(ss->list[i], ws_)) {
                s = ss->list[i];
                memmove(&ss->list[i], &ss->list[i + 1], (ss->n - i - 1) * sizeof *ss->list);
                ss->n--;
                __atomic_sub_fetch(&db->hooks, 1, __ATOMIC_RELEASE);
                break;
            }
        }
        pthread_mutex_unlock(&ss->mu);
        pthread_mutex_unlock(&db->write_mu);
    }
    if (!s)
        return kd__err(db, KD_ENOTFOUND, "no subscription %llu", (unsigned long long)id);
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    sub_release(s);
    return KD_OK;
}

KD_EXPORT void kd_event_clear(kd_event *ev)
{
    if (!ev)
        return;
    free(ev->ns);
    free(ev->key);
    free(ev->value);
    free(ev->prev_value);
    memset(ev, 0, sizeof *ev);
}

static char *dup_bytes(const char *p, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, p, len);
        d[len] = '\0';
    }
    return d;
}

/* The caller's own copy of e. */
static int event_copy(const sev *e, kd_event *ev)
{
    ev->type = e->type;
    ev->version = e->version;
    ev->ns = dup_bytes(e->ns, e->ns_len);
    ev->key = dup_bytes(e->key, e->key_len);
    if (e->value) {
        ev->value = dup_bytes(e->value, e->value_len);
        ev->value_len = e->value_len;
    }
    if (e->prev) {
        ev->prev_value = dup_bytes(e->prev, e->prev_len);
        ev->prev_len = e->prev_len;
    }
    if (!ev->ns || !ev->key || (e->value && !ev->value) || (e->prev && !ev->prev_value)) {
        kd_event_clear(ev);
        return KD_ENOMEM;
    }
    return KD_OK;
}

/* An event the caller could not take (out of memory) goes back to the
 * front of the queue, or, when the writer filled the queue meanwhile,
 * joins the gap that follows it: either way nothing is lost silently. */
static void put_back(sub *s, sev *e)
{
    if (s->count < s->cap) {
        s->head = (s->head + s->cap - 1) % s->cap;
        s->ring[s->head] = (slot){e, 0, 0};
        s->count++;
        return;
    }
    int64_t ts = e->version.timestamp;
    if (s->count) {
        slot *sl = &s->ring[s->head];
        if (!sl->missed)
            sl->missed_ts = ts;
        sl->missed++;
    } else {
        if (!s->missed)
            s->missed_ts = ts;
        s->missed++;
    }
    sev_release(e);
}

KD_EXPORT int kd_sub_next(kd_db *db, uint64_t id, int timeout_ms, kd_event *ev)
{
    if (!db)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    if (!ev)
        return kd__err(db, KD_EINVALID, "kd_sub_next: ev is missing");
    memset(ev, 0, sizeof *ev);
    struct kd__subs *ss = subs_of(db);
    sub *s = sub_get(ss, id, ws_);
    if (!s)
        return kd__err(db, KD_ENOTFOUND, "no subscription %llu", (unsigned long long)id);

    int64_t deadline = timeout_ms > 0 ? kd__mono_ns() + (int64_t)timeout_ms * 1000000 : 0;
    sev *got = NULL;
    int rc;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->closed) {
            rc = KD_ENOTFOUND;
            break;
        }
        int64_t vis = kd__visible(db);
        if (s->count) {
            slot *sl = &s->ring[s->head];
            if (sl->missed && sl->missed_ts <= vis) {
                ev->type = KD_EVENT_MISSED;
                ev->missed = sl->missed;
                sl->missed = 0;
                rc = KD_OK;
                break;
            }
            if (!sl->missed && sl->ev->version.timestamp <= vis) {
                got = sl->ev;
                s->head = (s->head + 1) % s->cap;
                s->count--;
                rc = KD_OK;
                break;
            }
        } else if (s->missed && s->missed_ts <= vis) {
            ev->type = KD_EVENT_MISSED;
            ev->missed = s->missed;
            s->missed = 0;
            rc = KD_OK;
            break;
        }
        /* Nothing deliverable: wait until visible_ts moves or we are
         * unsubscribed. */
        if (timeout_ms == 0 || (timeout_ms > 0 && kd__mono_ns() >= deadline)) {
            rc = KD_ETIMEOUT;
            break;
        }
        s->waiting++;
        __atomic_add_fetch(&ss->waiters, 1, __ATOMIC_SEQ_CST);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (kd__visible(db) == vis) {
            if (timeout_ms < 0) {
                pthread_cond_wait(&s->cv, &s->mu);
            } else {
                struct timespec until = {(time_t)(deadline / 1000000000), (long)(deadline % 1000000000)};
                pthread_cond_timedwait(&s->cv, &s->mu, &until);
            }
        }
        __atomic_sub_fetch(&ss->waiters, 1, __ATOMIC_SEQ_CST);
        s->waiting--;
    }
    pthread_mutex_unlock(&s->mu);

    if (got) {
        /* Copy outside the lock: the writer never waits for a large value. */
        rc = event_copy(got, ev);
        if (rc) {
            pthread_mutex_lock(&s->mu);
            put_back(s, got);
            pthread_mutex_unlock(&s->mu);
            rc = kd__err(db, KD_ENOMEM, "out of memory copying an event (it is delivered again, or counted as missed)");
        } else {
            sev_release(got);
        }
    } else if (rc == KD_ENOTFOUND) {
        rc = kd__err(db, rc, "subscription %llu was cancelled", (unsigned long long)id);
    }
    sub_release(s);
    return rc;
}

int kd__subs_waiters(struct kd_db *db)
{
    struct kd__subs *ss = subs_of(db);
    return ss ? __atomic_load_n(&ss->waiters, __ATOMIC_SEQ_CST) : 0;
}
