/*
 * store_watch.c — change subscriptions (st_subscribe, st_sub_next,
 * st_unsubscribe; store.h): the library's kd_subscribe and its kin on a
 * local database, and with --url the server's watch stream, GET
 * /api/v1/watch (Server-Sent Events; docs/HTTP.md, "The watch stream").
 *
 * A remote subscription is a thread with its own curl handle (the
 * session's handle, c->remote, stays with the main thread). The thread
 * reads the stream as it comes, turns each event into a kd_event and
 * queues it; st_sub_next takes from the queue. The queue is bounded like
 * the library's (kd_sub_options.queue, default 10000): when it is full,
 * events are counted and handed out as one KD_EVENT_MISSED after the
 * events queued before them — what a local subscription does. The server
 * is asked to hold many more (the thread never stops reading), so drops
 * happen here, where the library would drop them, not on the server.
 *
 * What is sent over the stream:
 *   - one-shot `kdelta --url … watch`: the namespace, key, types and filter
 *     go to the server, which sends only what matches;
 *   - in a shell (c->watches set): every write of every namespace, selected
 *     here with the same rules (kd__subs' "wants"), because the shell's
 *     polls need to know how far the stream has come (see "Polls").
 *
 * Polls. The shell prints, after each command, the events of that
 * command's writes (st_sub_next with timeout 0, like kd_sub_next). Locally
 * they are queued before the write returns; over HTTP the write's answer
 * may arrive before its event. So a poll in a shell first catches up: it
 * asks the server for its last write (GET /api/v1/status, "last_write")
 * and waits until the stream has passed it. As the shell's stream carries
 * every write, each write's id (its timestamp) shows up on it — except
 * writes to the database's own namespaces (view, index and vector
 * definitions), which make no events. So whenever the stream stays quiet
 * short of the target, the poll asks the log whether any write after the
 * stream's position is left to come (GET /api/v1/changes?since=…&limit=1);
 * none: caught up. The wait is bounded (CATCH_UP_MS); what comes later
 * prints at a later poll. A poll is one round: it catches up at its first
 * call and ends when it finds the queue empty (KD_ETIMEOUT).
 *
 * Reconnecting. Event ids are write timestamps and a reconnect with
 * Last-Event-ID replays from the server's log what came after, nothing
 * lost or repeated. The thread reconnects so when the server reports that
 * it dropped events (`event: missed`, its own queue was full), and when a
 * stream that was open breaks (a few tries within about two seconds). If
 * that fails, or the server answers an error, the subscription ends:
 * st_sub_next returns its queued events, then the error (KD_EIO for a lost
 * server), with st_sub_errmsg() saying what happened.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remote.h"
#include "server_int.h"
#include "store.h"

#define QUEUE_DEFAULT 10000             /* as the library's default queue */
#define QUEUE_FIRST 64                  /* the queue's first allocation; it doubles up to the limit */
#define SERVER_QUEUE "1000000"          /* events the server may hold for us (its maximum) */
#define EVENT_MAX ((size_t)40 << 20)    /* longest event: two values of 16 MiB, names and version */
#define ERROR_BODY_MAX ((size_t)64 << 10)
#define CONNECT_TIMEOUT_MS 10000L
#define STALL_SECONDS 45L               /* nothing at all for this long (the server pings every 15 s): lost */
#define CATCH_UP_MS 60000               /* longest wait of a poll for the stream to reach the server's last write */
#define QUIET_MS 50                     /* a stream quiet this long short of it: ask the log (doubling, up to …) */
#define QUIET_MAX_MS 3200

/* Pauses before the tries to reconnect a broken stream. */
static const int retry_ms[] = {100, 400, 1500};
#define RETRIES (sizeof retry_ms / sizeof retry_ms[0])

/* One event waiting, with the number of events dropped just before it. */
struct slot {
    kd_event ev;
    uint64_t missed;
};

struct rsub {
    struct rsub *next;
    uint64_t id;
    struct remote *owner; /* the connection it was made on (c->remote) */
    /* What it selects (immutable while the thread runs). */
    char *ns, *key; /* NULL: any */
    unsigned types;
    kd_filter *filter; /* our copy; NULL: none */
    size_t limit;      /* most events queued */
    int everything;    /* the stream carries every write (a shell's): polls catch up */
    char *url;         /* the stream's URL */
    char *auth;        /* its Authorization header line, "" when none */
    char *base;        /* the server, for messages */

    pthread_t thread;
    int started;
    CURLM *multi; /* the thread's; curl_multi_wakeup from st_unsubscribe */
    int stop;     /* atomic: st_unsubscribe asked */

    /* Shared with the thread, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the thread: an event, progress, open, ended; st_unsubscribe: stop */
    struct slot *ring;
    size_t cap, head, count;
    uint64_t missed;  /* dropped after the newest queued event */
    int64_t progress; /* id of the newest event read (or of the stream's start) */
    int open;         /* the stream has started */
    int ended;        /* for good: rc and msg say why */
    int rc;
    char msg[1024];

    /* Main thread only. */
    int in_poll;       /* a poll round caught up and has not ended */
    int64_t settled;   /* the log showed no write after progress up to this time */
    char errmsg[1024]; /* st_sub_errmsg */
};

/* The remote subscriptions (main thread only). */
static struct rsub *subs;
static uint64_t next_id;
/* Why the last st_subscribe failed. */
static char subscribe_msg[1024];

/* ------------------------------------------------------------------------
 * Small pieces
 * ---------------------------------------------------------------------- */

static char *dup_bytes(const char *p, size_t len)
{
    char *d = xmalloc(len + 1);
    memcpy(d, p, len);
    d[len] = '\0';
    return d;
}

/* An error answer {"error":{"code","message"}} into a status and message. */
static int error_of(const char *body, size_t len, int fallback, char *msg, size_t size)
{
    char *canon = NULL, err[128];
    size_t clen = 0;
    const char *e;
    size_t elen;
    int rc = fallback;
    if (kd_json_canonical(body, len, &canon, &clen, err, sizeof err) == KD_OK &&
        rj_member(canon, clen, "error", &e, &elen)) {
        char *code = rj_string(e, elen, "code"), *message = rj_string(e, elen, "message");
        if (code)
            rc = remote_status_of_code(code, 500);
        if (message)
            snprintf(msg, size, "%s", message);
        free(code);
        free(message);
    }
    kd_free(canon);
    return rc;
}

/* Condition variables wait on the monotonic clock (cond_init below). */
static void deadline_in(struct timespec *t, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000;
    if (t->tv_nsec >= 1000000000) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000;
    }
}

static int stopping(struct rsub *s)
{
    return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);
}

/* The stream is over: say why (the first reason stays). Under s->mu. */
static void end_locked(struct rsub *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void end_locked(struct rsub *s, int rc, const char *fmt, ...)
{
    if (s->ended)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
    s->ended = 1;
    s->rc = rc;
    pthread_cond_broadcast(&s->cv);
}

/* ------------------------------------------------------------------------
 * Events: the server's JSON into kd_event, selection, the queue
 * ---------------------------------------------------------------------- */

static unsigned type_of(const char *name)
{
    if (!name)
        return 0;
    return strcmp(name, "insert") == 0   ? KD_EVENT_INSERT
           : strcmp(name, "update") == 0 ? KD_EVENT_UPDATE
           : strcmp(name, "delete") == 0 ? KD_EVENT_DELETE
                                         : 0;
}

static void copy_id(char dst[KD_ID_HEX], const char *json, size_t len, const char *name)
{
    char *s = rj_string(json, len, name);
    dst[0] = '\0';
    if (s && strlen(s) == KD_ID_HEX - 1)
        memcpy(dst, s, KD_ID_HEX);
    free(s);
}

/* A JSON value member, copied; NULL when absent or null. */
static char *value_member(const char *json, size_t len, const char *name, size_t *vlen)
{
    const char *v;
    size_t vl;
    *vlen = 0;
    if (!rj_member(json, len, name, &v, &vl) || (vl == 4 && memcmp(v, "null", 4) == 0))
        return NULL;
    *vlen = vl;
    return dup_bytes(v, vl);
}

/* The data of an insert/update/delete event (docs/HTTP.md) into *ev.
 * KD_OK, or KD_EIO when it is not such an event. */
static int parse_event(const char *data, size_t len, kd_event *ev)
{
    char *canon = NULL, err[128];
    size_t clen = 0;
    memset(ev, 0, sizeof *ev);
    if (kd_json_canonical(data, len, &canon, &clen, err, sizeof err) != KD_OK)
        return KD_EIO;
    char *type = rj_string(canon, clen, "type");
    ev->type = type_of(type);
    free(type);
    ev->ns = rj_string(canon, clen, "namespace");
    ev->key = rj_string(canon, clen, "key");
    ev->value = value_member(canon, clen, "value", &ev->value_len);
    ev->prev_value = value_member(canon, clen, "previous_value", &ev->prev_len);
    const char *v, *del;
    size_t vl, dl;
    int ok = ev->type && ev->ns && ev->key && rj_member(canon, clen, "version", &v, &vl);
    if (ok) {
        kd_version *ver = &ev->version;
        copy_id(ver->version_id, v, vl, "version_id");
        copy_id(ver->write_id, v, vl, "write_id");
        copy_id(ver->previous_write_id, v, vl, "previous_write_id");
        ver->timestamp = rj_time(v, vl, "timestamp");
        ver->deleted = rj_member(v, vl, "deleted", &del, &dl) && dl == 4 && memcmp(del, "true", 4) == 0;
        /* a replayed write whose value is gone (docs/HTTP.md, "Resuming") */
        if (rj_member(v, vl, "pruned", &del, &dl) && dl == 4 && memcmp(del, "true", 4) == 0)
            ver->pruned = rj_member(v, vl, "pruned_by", &del, &dl) && dl == 16 &&
                                  memcmp(del, "\"workspace_drop\"", 16) == 0
                              ? KD_PRUNED_WORKSPACE
                              : KD_PRUNED_RETENTION;
        ok = ver->write_id[0] && ver->timestamp;
    }
    kd_free(canon);
    if (!ok) {
        kd_event_clear(ev);
        return KD_EIO;
    }
    return KD_OK;
}

/* Does the subscription select this event? The library's rules
 * (src/query/subs.c, wants): type, namespace, key, and the filter on the
 * new value or, for a delete, on the value deleted. */
static int wants(const struct rsub *s, const kd_event *ev)
{
    if (!(s->types & ev->type))
        return 0;
    if (s->ns && strcmp(s->ns, ev->ns) != 0)
        return 0;
    if (s->key && strcmp(s->key, ev->key) != 0)
        return 0;
    if (s->filter && !(ev->version.pruned && ev->type != KD_EVENT_DELETE)) { /* the server's choice */
        const char *v = ev->type == KD_EVENT_DELETE ? ev->prev_value : ev->value;
        size_t len = ev->type == KD_EVENT_DELETE ? ev->prev_len : ev->value_len;
        return v && kd_filter_match(s->filter, v, len) == 1;
    }
    return 1;
}

/* Queue *ev (taken) or count it as missed. Under s->mu. */
static void push_locked(struct rsub *s, kd_event *ev)
{
    if (s->count == s->cap && s->cap < s->limit) {
        size_t ncap = s->cap ? s->cap * 2 : QUEUE_FIRST;
        if (ncap > s->limit)
            ncap = s->limit;
        struct slot *r = xmalloc(ncap * sizeof *r);
        for (size_t i = 0; i < s->count; i++)
            r[i] = s->ring[(s->head + i) % s->cap];
        free(s->ring);
        s->ring = r;
        s->cap = ncap;
        s->head = 0;
    }
    if (s->count == s->cap) {
        s->missed++;
        kd_event_clear(ev);
        return;
    }
    struct slot *sl = &s->ring[(s->head + s->count) % s->cap];
    sl->ev = *ev;
    sl->missed = s->missed;
    s->missed = 0;
    s->count++;
    memset(ev, 0, sizeof *ev);
}

/* The next event for st_sub_next, if any. Under s->mu. */
static int pop_locked(struct rsub *s, kd_event *ev)
{
    if (s->count) {
        struct slot *sl = &s->ring[s->head];
        if (sl->missed) {
            ev->type = KD_EVENT_MISSED;
            ev->missed = sl->missed;
            sl->missed = 0;
            return 1;
        }
        *ev = sl->ev;
        s->head = (s->head + 1) % s->cap;
        s->count--;
        return 1;
    }
    if (s->missed) {
        ev->type = KD_EVENT_MISSED;
        ev->missed = s->missed;
        s->missed = 0;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The stream: one connection, read as Server-Sent Events
 * ---------------------------------------------------------------------- */

/* What a connection ended with, beyond curl's own result. */
enum {
    GO_ON = 0,
    GAP,   /* the server dropped events: reconnect from where we are */
    FATAL, /* the subscription ended (s->ended is set) */
    STOP   /* st_unsubscribe */
};

struct conn {
    struct rsub *s;
    CURL *h;
    long http;    /* the answer's status, once known */
    ks_buf error; /* the body of an error answer */
    int outcome;  /* GO_ON, GAP, FATAL, STOP */
    int got_data; /* a 2xx answer started */
    /* the event being read */
    ks_buf line, data;
    char event[16];
    int64_t id;
    int has_id, has_data, cr;
};

/* A complete event (a blank line came). 0 to go on. */
static int dispatch(struct conn *k)
{
    struct rsub *s = k->s;
    const char *name = k->event;
    int rc = 0;
    if (k->has_data && k->data.len && k->data.p[k->data.len - 1] == '\n')
        k->data.p[--k->data.len] = '\0';
    if (!name[0] && !k->has_data) {
        /* an id alone: the stream's starting point */
        if (k->has_id) {
            pthread_mutex_lock(&s->mu);
            if (k->id > s->progress)
                s->progress = k->id;
            s->open = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
        }
    } else if (strcmp(name, "missed") == 0) {
        k->outcome = GAP;
        rc = 1;
    } else if (strcmp(name, "error") == 0) {
        char msg[512] = "";
        int code = error_of(k->data.p ? k->data.p : "", k->data.len, KD_EIO, msg, sizeof msg);
        pthread_mutex_lock(&s->mu);
        end_locked(s, code, "the server at %s ended the watch: %s", s->base, msg[0] ? msg : kd_strerror(code));
        pthread_mutex_unlock(&s->mu);
        k->outcome = FATAL;
        rc = 1;
    } else if (type_of(name) && k->has_data) {
        kd_event ev;
        if (parse_event(k->data.p, k->data.len, &ev) != KD_OK || !k->has_id) {
            pthread_mutex_lock(&s->mu);
            end_locked(s, KD_EIO, "the server at %s sent a watch event kdelta cannot read", s->base);
            pthread_mutex_unlock(&s->mu);
            k->outcome = FATAL;
            rc = 1;
        } else {
            int want = wants(s, &ev);
            pthread_mutex_lock(&s->mu);
            if (k->id > s->progress) { /* a replay never repeats, but be sure */
                s->progress = k->id;
                s->open = 1;
                if (want)
                    push_locked(s, &ev);
                pthread_cond_broadcast(&s->cv);
            }
            pthread_mutex_unlock(&s->mu);
            kd_event_clear(&ev);
        }
    }
    /* other events: not ours to know (yet) */
    k->event[0] = '\0';
    k->has_id = k->has_data = 0;
    k->data.len = 0;
    return rc;
}

/* One line of the stream (without its end). 0 to go on. */
static int line(struct conn *k, const char *p, size_t len)
{
    if (len == 0)
        return dispatch(k);
    if (p[0] == ':') /* a comment (": ping") */
        return 0;
    const char *colon = memchr(p, ':', len);
    size_t nl = colon ? (size_t)(colon - p) : len;
    const char *v = colon ? colon + 1 : p + len;
    size_t vl = (size_t)(p + len - v);
    if (vl && v[0] == ' ')
        v++, vl--;
    if (nl == 4 && memcmp(p, "data", 4) == 0) {
        ks_buf_add(&k->data, v, vl);
        ks_buf_add(&k->data, "\n", 1);
        k->has_data = 1;
    } else if (nl == 5 && memcmp(p, "event", 5) == 0) {
        size_t n = vl < sizeof k->event - 1 ? vl : sizeof k->event - 1;
        memcpy(k->event, v, n);
        k->event[n] = '\0';
    } else if (nl == 2 && memcmp(p, "id", 2) == 0) {
        int64_t id = 0;
        size_t i = 0;
        int neg = vl && v[0] == '-';
        for (i = neg; i < vl && i < 20 && v[i] >= '0' && v[i] <= '9'; i++)
            id = id * 10 + (v[i] - '0');
        if (i == vl && vl > (size_t)neg) {
            k->id = neg ? -id : id;
            k->has_id = 1;
        }
    }
    return 0;
}

/* Bytes of a 2xx answer: split into lines (LF, CRLF or CR). 0 to go on. */
static int feed(struct conn *k, const char *p, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (k->cr) { /* the LF of a CRLF */
            k->cr = 0;
            if (p[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t j = i;
        while (j < len && p[j] != '\n' && p[j] != '\r')
            j++;
        if (k->line.len + (j - i) + k->data.len > EVENT_MAX) {
            struct rsub *s = k->s;
            pthread_mutex_lock(&s->mu);
            end_locked(s, KD_ETOOBIG, "the server at %s sent a watch event larger than %zu MiB", s->base,
                       EVENT_MAX >> 20);
            pthread_mutex_unlock(&s->mu);
            k->outcome = FATAL;
            return 1;
        }
        ks_buf_add(&k->line, p + i, j - i);
        if (j == len)
            break;
        k->cr = p[j] == '\r';
        int rc = line(k, k->line.p ? k->line.p : "", k->line.len);
        k->line.len = 0;
        if (rc)
            return rc;
        i = j + 1;
    }
    return 0;
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
    struct conn *k = ctx;
    size_t len = size * n;
    if (stopping(k->s)) {
        k->outcome = STOP;
        return 0;
    }
    if (!k->http)
        curl_easy_getinfo(k->h, CURLINFO_RESPONSE_CODE, &k->http);
    if (k->http < 200 || k->http > 299) {
        if (k->error.len < ERROR_BODY_MAX)
            ks_buf_add(&k->error, p, len < ERROR_BODY_MAX - k->error.len ? len : ERROR_BODY_MAX - k->error.len);
        return len;
    }
    k->got_data = 1;
    return feed(k, p, len) ? 0 : len; /* 0 makes curl end the transfer */
}

/* Connect (with Last-Event-ID when resuming) and read until the stream
 * ends. Returns curl's result; k->outcome and k->http say more. */
static CURLcode run_connection(struct rsub *s, struct conn *k, int resume)
{
    memset(k, 0, sizeof *k);
    k->s = s;
    CURLcode cc = CURLE_OUT_OF_MEMORY;
    if (!(k->h = curl_easy_init()))
        return cc;
    struct curl_slist *hdr = curl_slist_append(NULL, "Accept: text/event-stream");
    char lei[64];
    if (resume) {
        pthread_mutex_lock(&s->mu);
        snprintf(lei, sizeof lei, "Last-Event-ID: %" PRId64, s->progress);
        pthread_mutex_unlock(&s->mu);
        hdr = curl_slist_append(hdr, lei);
    }
    if (s->auth[0])
        hdr = curl_slist_append(hdr, s->auth);
    curl_easy_setopt(k->h, CURLOPT_URL, s->url);
    curl_easy_setopt(k->h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(k->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k->h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(k->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(k->h, CURLOPT_LOW_SPEED_TIME, STALL_SECONDS);
    curl_easy_setopt(k->h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(k->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(k->h, CURLOPT_WRITEDATA, k);

    if (curl_multi_add_handle(s->multi, k->h) == CURLM_OK) {
        int running = 1;
        cc = CURLE_OK;
        while (running) {
            if (curl_multi_perform(s->multi, &running) != CURLM_OK) {
                cc = CURLE_RECV_ERROR;
                break;
            }
            if (!running)
                break;
            if (stopping(s)) {
                k->outcome = STOP;
                break;
            }
            curl_multi_poll(s->multi, NULL, 0, 1000, NULL);
        }
        int left;
        for (CURLMsg *m; (m = curl_multi_info_read(s->multi, &left));)
            if (m->msg == CURLMSG_DONE && m->easy_handle == k->h)
                cc = m->data.result;
        curl_multi_remove_handle(s->multi, k->h);
    }
    if (!k->http)
        curl_easy_getinfo(k->h, CURLINFO_RESPONSE_CODE, &k->http);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(k->h);
    free(k->line.p);
    free(k->data.p);
    return cc;
}

/* Sleep ms, or less when unsubscribed. */
static void pause_ms(struct rsub *s, int ms)
{
    struct timespec until;
    deadline_in(&until, ms);
    pthread_mutex_lock(&s->mu);
    while (!stopping(s) && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&s->mu);
}

static void *stream_main(void *arg)
{
    struct rsub *s = arg;
    size_t tries = 0;         /* reconnections tried since the stream last brought something */
    char first_why[256] = ""; /* why it broke then */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int resume = s->open;
        int64_t before = s->progress;
        pthread_mutex_unlock(&s->mu);
        struct conn k;
        CURLcode cc = run_connection(s, &k, resume);
        char msg[512] = "";
        int rc = KD_OK;
        if (k.http && (k.http < 200 || k.http > 299) && k.outcome != STOP)
            rc = error_of(k.error.p ? k.error.p : "", k.error.len,
                          k.http == 404 ? KD_ENOTFOUND : k.http == 503 ? KD_EBUSY : KD_EIO, msg, sizeof msg);
        free(k.error.p);
        if (k.outcome == STOP || k.outcome == FATAL || stopping(s))
            break;
        if (rc != KD_OK) {
            pthread_mutex_lock(&s->mu);
            if (msg[0])
                end_locked(s, rc, "the server at %s refused the watch: %s", s->base, msg);
            else
                end_locked(s, rc, "the server at %s refused the watch: HTTP %ld", s->base, k.http);
            pthread_mutex_unlock(&s->mu);
            break;
        }
        pthread_mutex_lock(&s->mu);
        int open = s->open, advanced = s->progress > before;
        pthread_mutex_unlock(&s->mu);
        if (k.outcome == GAP && advanced) { /* replayed from the log at once */
            tries = 0;
            continue;
        }
        const char *why = k.outcome == GAP    ? "the server dropped events"
                          : cc == CURLE_OK ? "the server closed it"
                                           : curl_easy_strerror(cc);
        if (!open) {
            pthread_mutex_lock(&s->mu);
            end_locked(s, KD_EIO, "cannot reach the server at %s: %s", s->base, why);
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (advanced)
            tries = 0;
        if (tries == 0)
            snprintf(first_why, sizeof first_why, "%s", why);
        if (tries == RETRIES) {
            pthread_mutex_lock(&s->mu);
            end_locked(s, KD_EIO, "lost the watch stream of the server at %s (%s); reconnecting failed: %s", s->base,
                       first_why, why);
            pthread_mutex_unlock(&s->mu);
            break;
        }
        pause_ms(s, retry_ms[tries++]);
        if (stopping(s))
            break;
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Subscriptions
 * ---------------------------------------------------------------------- */

static struct rsub *find(struct cli *c, uint64_t id)
{
    for (struct rsub *s = subs; s; s = s->next)
        if (s->id == id && s->owner == c->remote)
            return s;
    return NULL;
}

static void rsub_free(struct rsub *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        curl_multi_wakeup(s->multi);
        pthread_join(s->thread, NULL);
    }
    if (s->multi)
        curl_multi_cleanup(s->multi);
    for (size_t i = 0; i < s->count; i++)
        kd_event_clear(&s->ring[(s->head + i) % s->cap].ev);
    free(s->ring);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    kd_filter_free(s->filter);
    free(s->ns);
    free(s->key);
    free(s->url);
    free(s->auth);
    free(s->base);
    free(s);
}

/* The server's last write (main thread, session handle); 0 if unknown. */
static int64_t server_last_write(struct cli *c)
{
    char *ans = NULL;
    size_t alen;
    int64_t last = 0;
    if (remote_call(c->remote, "GET", "api/v1/status", NULL, 0, &ans, &alen) == KD_OK)
        last = rj_time(ans, alen, "last_write");
    free(ans);
    return last;
}

/* Is a write to a user namespace after `since` in the server's log?
 * 0 no, 1 yes, -1 cannot tell. */
static int log_has_after(struct cli *c, int64_t since)
{
    char t[32], *ans = NULL;
    size_t alen;
    const char *list;
    size_t llen;
    char *path = xstrdup("api/v1/changes");
    snprintf(t, sizeof t, "@%" PRId64, since);
    remote_param(&path, "since", t);
    remote_param(&path, "limit", "1");
    int r = -1;
    if (remote_call(c->remote, "GET", path, NULL, 0, &ans, &alen) == KD_OK &&
        rj_member(ans, alen, "changes", &list, &llen))
        r = !(llen == 2 && memcmp(list, "[]", 2) == 0);
    free(ans);
    free(path);
    return r;
}

static int remote_subscribe(struct cli *c, const kd_sub_options *opts, uint64_t *id)
{
    subscribe_msg[0] = '\0';
    if (opts->key && !opts->ns) {
        snprintf(subscribe_msg, sizeof subscribe_msg, "a key needs its namespace");
        return KD_EINVALID;
    }
    struct rsub *s = xmalloc(sizeof *s);
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->owner = c->remote;
    s->ns = opts->ns ? xstrdup(opts->ns) : NULL;
    s->key = opts->key ? xstrdup(opts->key) : NULL;
    s->types = opts->types & KD_EVENT_ALL ? opts->types & KD_EVENT_ALL : KD_EVENT_ALL;
    s->limit = opts->queue ? opts->queue : QUEUE_DEFAULT;
    s->everything = c->watches != NULL;
    s->base = xstrdup(remote_url(c->remote));
    s->auth = xstrdup(remote_auth_header(c->remote));
    char *filter_text = NULL;
    size_t flen;
    int rc = KD_OK;
    if (opts->filter) {
        char err[512];
        rc = kd_filter_to_text(opts->filter, &filter_text, &flen);
        if (rc == KD_OK && (rc = kd_filter_parse(filter_text, &s->filter, err, sizeof err)) != KD_OK)
            snprintf(subscribe_msg, sizeof subscribe_msg, "%s", err);
        if (rc != KD_OK)
            goto fail;
    }

    char *path = remote_path("api/v1/watch");
    remote_param(&path, "queue", SERVER_QUEUE);
    if (!s->everything) {
        if (s->ns)
            remote_param(&path, "ns", s->ns);
        if (s->key)
            remote_param(&path, "key", s->key);
        if (s->types != KD_EVENT_ALL) {
            char t[32] = "";
            const char *names[] = {"insert", "update", "delete"};
            for (unsigned i = 0; i < 3; i++)
                if (s->types & (1u << i))
                    snprintf(t + strlen(t), sizeof t - strlen(t), "%s%s", t[0] ? "," : "", names[i]);
            remote_param(&path, "types", t);
        }
        if (filter_text)
            remote_param(&path, "filter", filter_text);
    }
    char *full = remote_request_path(c->remote, path); /* in the workspace of -w */
    free(path);
    size_t ul = strlen(s->base) + strlen(full) + 2;
    s->url = xmalloc(ul);
    snprintf(s->url, ul, "%s/%s", s->base, full);
    free(full);

    if (!(s->multi = curl_multi_init())) {
        rc = KD_ENOMEM;
        snprintf(subscribe_msg, sizeof subscribe_msg, "cannot initialise libcurl");
        goto fail;
    }
    /* Signals are for the main thread (Ctrl-C at the shell's prompt, the
     * one-shot watch's SIGINT/SIGTERM): the thread blocks them all. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int made = pthread_create(&s->thread, NULL, stream_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (made != 0) {
        rc = KD_EIO;
        snprintf(subscribe_msg, sizeof subscribe_msg, "cannot start a thread for the watch stream");
        goto fail;
    }
    s->started = 1;
    /* Subscribed once the stream has started: the server subscribes
     * before it answers, so every later write is seen. */
    pthread_mutex_lock(&s->mu);
    while (!s->open && !s->ended)
        pthread_cond_wait(&s->cv, &s->mu);
    if (!s->open) {
        rc = s->rc;
        snprintf(subscribe_msg, sizeof subscribe_msg, "%s", s->msg);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != KD_OK)
        goto fail;
    kd_free(filter_text);
    s->id = ++next_id;
    s->next = subs;
    subs = s;
    *id = s->id;
    return KD_OK;
fail:
    kd_free(filter_text);
    rsub_free(s);
    return rc;
}

/* A shell's poll round begins: wait until the stream has passed the
 * server's last write (see "Polls" above). */
static void catch_up(struct cli *c, struct rsub *s)
{
    int64_t target = server_last_write(c);
    struct timespec end, now;
    deadline_in(&end, CATCH_UP_MS);
    int quiet_ms = QUIET_MS;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int64_t seen = s->progress > s->settled ? s->progress : s->settled;
        if (seen >= target || s->ended)
            break;
        /* wait for the stream to move, at most quiet_ms */
        struct timespec until;
        deadline_in(&until, quiet_ms);
        if (until.tv_sec > end.tv_sec || (until.tv_sec == end.tv_sec && until.tv_nsec > end.tv_nsec))
            until = end;
        int64_t before = s->progress;
        while (s->progress == before && !s->ended && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT)
            ;
        if (s->progress != before || s->ended)
            continue;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
            break; /* what is late prints at a later poll */
        /* quiet short of the target: is anything left to come? */
        pthread_mutex_unlock(&s->mu);
        int more = log_has_after(c, seen);
        pthread_mutex_lock(&s->mu);
        if (more != 1) {
            if (more == 0 && target > s->settled)
                s->settled = target; /* no write of ours up to target is missing */
            break;
        }
        if (quiet_ms < QUIET_MAX_MS)
            quiet_ms *= 2;
    }
    pthread_mutex_unlock(&s->mu);
}

static int remote_sub_next(struct cli *c, uint64_t id, int timeout_ms, kd_event *ev)
{
    memset(ev, 0, sizeof *ev);
    struct rsub *s = find(c, id);
    if (!s) {
        snprintf(subscribe_msg, sizeof subscribe_msg, "no subscription %" PRIu64, id);
        return KD_ENOTFOUND;
    }
    if (timeout_ms == 0 && s->everything && !s->in_poll) {
        catch_up(c, s);
        s->in_poll = 1;
    }
    struct timespec until;
    if (timeout_ms > 0)
        deadline_in(&until, timeout_ms);
    int rc;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (pop_locked(s, ev)) {
            rc = KD_OK;
            break;
        }
        if (s->ended) {
            rc = s->rc;
            snprintf(s->errmsg, sizeof s->errmsg, "%s", s->msg);
            break;
        }
        if (timeout_ms == 0 ||
            (timeout_ms > 0 ? pthread_cond_timedwait(&s->cv, &s->mu, &until) : pthread_cond_wait(&s->cv, &s->mu)) ==
                ETIMEDOUT) {
            rc = KD_ETIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != KD_OK)
        s->in_poll = 0; /* the round is over */
    return rc;
}

/* ------------------------------------------------------------------------
 * store.h
 * ---------------------------------------------------------------------- */

int st_subscribe(struct cli *c, const kd_sub_options *opts, uint64_t *id)
{
    if (!c->remote)
        return kd_subscribe(c->db, opts, id);
    return remote_subscribe(c, opts, id);
}

int st_sub_next(struct cli *c, uint64_t id, int timeout_ms, kd_event *ev)
{
    if (!c->remote)
        return kd_sub_next(c->db, id, timeout_ms, ev);
    return remote_sub_next(c, id, timeout_ms, ev);
}

int st_unsubscribe(struct cli *c, uint64_t id)
{
    if (!c->remote)
        return kd_unsubscribe(c->db, id);
    for (struct rsub **p = &subs; *p; p = &(*p)->next) {
        if ((*p)->id == id && (*p)->owner == c->remote) {
            struct rsub *s = *p;
            *p = s->next;
            rsub_free(s);
            return KD_OK;
        }
    }
    snprintf(subscribe_msg, sizeof subscribe_msg, "no subscription %" PRIu64, id);
    return KD_ENOTFOUND;
}

/* Why st_subscribe (id 0) or st_sub_next (id) failed last: the server's
 * message or what happened to the stream; "" locally (kd_errmsg). */
const char *st_sub_errmsg(struct cli *c, uint64_t id)
{
    if (!c->remote)
        return "";
    struct rsub *s = id ? find(c, id) : NULL;
    return s && s->errmsg[0] ? s->errmsg : subscribe_msg;
}
