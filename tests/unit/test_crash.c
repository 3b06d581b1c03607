/*
 * test_crash.c — crash safety with kill -9 (DESIGN.md §3, issue 2 item 6).
 *
 * A child process opens the database with sync=always and writes in a loop:
 * puts of new keys, updates and deletes of a few hot keys, and small
 * batches. After every write that returned KD_OK it sends the parent one
 * fixed-size message (key, write_id, version_id, previous_write_id,
 * timestamp). The parent SIGKILLs the child at a random moment, reopens the
 * database itself and checks:
 *   - every acknowledged write is in its key's history with the same
 *     write_id, version_id, parent and timestamp;
 *   - kd_get of a key returns its last acknowledged write or a later one;
 *   - every key's history is an unbroken chain with increasing timestamps;
 *   - batches are all-or-nothing (every key of a batch names the batch and
 *     its size; all of them or none are present);
 *   - kd_verify passes.
 * Then it starts the next cycle on the same directory. A write may be present
 * without an ack (killed between its fsync and the report): that is allowed.
 *
 * Variants: one writer thread in the child, several (group commit),
 * sync=none (whose promise is that a crash of the process loses nothing),
 * and index checkpoints written all the time by the upkeep thread (issue
 * 7), so that kills land while one is written and reopening uses the last
 * complete one; kd_verify then also compares that index with the log.
 * The seed is printed at start; KD_CRASH_SEED=<n> reproduces a run's choices
 * (the kill moments themselves depend on timing).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "korudelta.h"

#define HOT_KEYS 4
#define MAX_THREADS 4

/* ------------------------------------------------------------------------
 * Random numbers (xorshift64*): the same seed gives the same choices.
 * ---------------------------------------------------------------------- */

static uint64_t rnd_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint32_t rnd_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(rnd_next(s) % n);
}

static uint64_t seed_mix(uint64_t a, uint64_t b)
{
    uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull);
    x ^= x >> 31;
    return x ? x : 1;
}

/* ------------------------------------------------------------------------
 * The message a child sends for each acknowledged write. Smaller than
 * PIPE_BUF, so writes from several threads never interleave.
 * ---------------------------------------------------------------------- */

enum { MSG_READY = 1, MSG_ACK = 2, MSG_ERROR = 3 };

typedef struct msg {
    int32_t kind;
    int32_t deleted;
    int64_t ts;
    char ns[16];
    char key[48];
    char write_id[KD_ID_HEX];
    char version_id[KD_ID_HEX];
    char prev[KD_ID_HEX];
    char text[200]; /* MSG_ERROR: what failed */
} msg;

_Static_assert(sizeof(msg) <= 4096, "a message must be written atomically to a pipe");

/* ------------------------------------------------------------------------
 * Child: the writer
 * ---------------------------------------------------------------------- */

typedef struct child_ctx {
    kd_db *db;
    int fd;       /* write end of the pipe */
    int cycle;
    int thread;
    uint64_t seed;
} child_ctx;

static void send_msg(int fd, const msg *m)
{
    const char *p = (const char *)m;
    size_t done = 0;
    while (done < sizeof *m) {
        ssize_t w = write(fd, p + done, sizeof *m - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(5);
        done += (size_t)w;
    }
}

static void child_fail(int fd, const char *what, int rc, const char *detail)
{
    msg m;
    memset(&m, 0, sizeof m);
    m.kind = MSG_ERROR;
    snprintf(m.text, sizeof m.text, "%s: %s (%s)", what, kd_errname(rc), detail ? detail : "");
    send_msg(fd, &m);
    _exit(3);
}

static void send_ack(int fd, const char *ns, const char *key, const kd_version *v)
{
    msg m;
    memset(&m, 0, sizeof m);
    m.kind = MSG_ACK;
    m.deleted = v->deleted;
    m.ts = v->timestamp;
    snprintf(m.ns, sizeof m.ns, "%s", ns);
    snprintf(m.key, sizeof m.key, "%s", key);
    memcpy(m.write_id, v->write_id, KD_ID_HEX);
    memcpy(m.version_id, v->version_id, KD_ID_HEX);
    memcpy(m.prev, v->previous_write_id, KD_ID_HEX);
    send_msg(fd, &m);
}

/* A JSON value of roughly `pad` bytes; canonical as written. */
static size_t make_value(char *buf, size_t cap, int cycle, int thread, unsigned seq, unsigned pad)
{
    int n = snprintf(buf, cap, "{\"c\":%d,\"p\":\"", cycle);
    for (unsigned i = 0; i < pad && (size_t)n + 40 < cap; i++)
        buf[n++] = (char)('a' + (seq + i) % 26);
    n += snprintf(buf + n, cap - (size_t)n, "\",\"s\":%u,\"t\":%d}", seq, thread);
    return (size_t)n;
}

static void *child_writer(void *arg)
{
    child_ctx *c = arg;
    uint64_t rs = c->seed;
    static char vbuf[MAX_THREADS][4][9000];
    char(*val)[9000] = vbuf[c->thread];
    for (unsigned seq = 0; seq < 1000000; seq++) {
        uint32_t op = rnd_below(&rs, 100);
        kd_version v[4];
        if (op < 35) {
            /* A new key. Sometimes a larger value, so records span pages. */
            char key[48];
            snprintf(key, sizeof key, "d%d-%d-%u", c->cycle, c->thread, seq);
            unsigned pad = rnd_below(&rs, 8) == 0 ? 2000 + rnd_below(&rs, 6000) : rnd_below(&rs, 200);
            size_t len = make_value(val[0], sizeof val[0], c->cycle, c->thread, seq, pad);
            int rc = kd_put(c->db, "crash", key, val[0], len, &v[0]);
            if (rc)
                child_fail(c->fd, "kd_put (new key)", rc, kd_errmsg(c->db));
            send_ack(c->fd, "crash", key, &v[0]);
        } else if (op < 80) {
            /* Update a hot key; values repeat (A-B-A), so some are stored once. */
            char key[48];
            snprintf(key, sizeof key, "hot%u", rnd_below(&rs, HOT_KEYS));
            const char *vals[] = {"1", "\"two\"", "[3,3,3]", "{\"four\":4}", "null"};
            const char *j = vals[rnd_below(&rs, 5)];
            char own[64];
            if (rnd_below(&rs, 2)) {
                snprintf(own, sizeof own, "{\"c\":%d,\"s\":%u}", c->cycle, seq);
                j = own;
            }
            int rc = kd_put(c->db, "crash", key, j, strlen(j), &v[0]);
            if (rc)
                child_fail(c->fd, "kd_put (hot key)", rc, kd_errmsg(c->db));
            send_ack(c->fd, "crash", key, &v[0]);
        } else if (op < 85) {
            char key[48];
            snprintf(key, sizeof key, "hot%u", rnd_below(&rs, HOT_KEYS));
            int rc = kd_delete(c->db, "crash", key, &v[0]);
            if (rc == KD_OK)
                send_ack(c->fd, "crash", key, &v[0]);
            else if (rc != KD_EDELETED && rc != KD_ENOTFOUND)
                child_fail(c->fd, "kd_delete", rc, kd_errmsg(c->db));
        } else {
            /* A batch: 2-4 new keys in namespace "batch" (each names its
             * batch and size), sometimes plus a hot key update. */
            unsigned nb = 2 + rnd_below(&rs, 3);
            int with_hot = rnd_below(&rs, 2);
            unsigned members = with_hot ? nb - 1 : nb; /* in namespace "batch" */
            kd_write w[4];
            char keys[4][48];
            for (unsigned i = 0; i < members; i++) {
                snprintf(keys[i], sizeof keys[i], "%d-%d-%u-%u-of-%u", c->cycle, c->thread, seq, i, members);
                unsigned pad = rnd_below(&rs, 4) == 0 ? 3000 : rnd_below(&rs, 100);
                size_t len = make_value(val[i], sizeof val[i], c->cycle, c->thread, seq * 4 + i, pad);
                w[i] = (kd_write){"batch", keys[i], val[i], len, NULL};
            }
            if (with_hot) {
                snprintf(keys[nb - 1], sizeof keys[nb - 1], "hot%u", rnd_below(&rs, HOT_KEYS));
                w[nb - 1] = (kd_write){"crash", keys[nb - 1], "\"from a batch\"", 14, NULL};
            }
            int rc = kd_put_batch(c->db, w, nb, v);
            if (rc)
                child_fail(c->fd, "kd_put_batch", rc, kd_errmsg(c->db));
            for (unsigned i = 0; i < nb; i++)
                send_ack(c->fd, w[i].ns, w[i].key, &v[i]);
        }
    }
    return NULL;
}

/* Set by test_crash_checkpoints: the child writes index checkpoints as
 * often as it can; the parent counts reopens that used one. */
static int g_checkpoint_often, g_checkpoint_used;

static void child_main(const char *dir, int fd, int cycle, int threads, kd_sync sync, uint64_t seed)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, sync, 0);
    if (g_checkpoint_often) {
        kd_options_set_checkpoint_bytes(o, 16 << 10);
        kd_options_set_upkeep_interval(o, 1);
    }
    kd_options_set_busy_timeout(o, 20000);
    kd_db *db = NULL;
    char err[512];
    int rc = kd_open(dir, o, &db, err, sizeof err);
    kd_options_free(o);
    if (rc)
        child_fail(fd, "kd_open in the child", rc, err);
    msg m;
    memset(&m, 0, sizeof m);
    m.kind = MSG_READY;
    send_msg(fd, &m);
    child_ctx ctx[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        ctx[t] = (child_ctx){db, fd, cycle, t, seed_mix(seed, (uint64_t)t + 1)};
        if (threads == 1)
            child_writer(&ctx[t]);
        else if (pthread_create(&tid[t], NULL, child_writer, &ctx[t]) != 0)
            child_fail(fd, "pthread_create", 0, strerror(errno));
    }
    for (int t = 0; threads > 1 && t < threads; t++)
        pthread_join(tid[t], NULL);
    _exit(0); /* ran out of work before being killed: fine */
}

/* ------------------------------------------------------------------------
 * Parent: what was acknowledged
 * ---------------------------------------------------------------------- */

typedef struct ack {
    int64_t ts;
    int deleted;
    int cycle;
    char write_id[KD_ID_HEX];
    char version_id[KD_ID_HEX];
    char prev[KD_ID_HEX];
} ack;

typedef struct tkey {
    char ns[16];
    char key[48];
    ack *acks;
    size_t n, cap;
} tkey;

typedef struct tracker {
    tkey *keys;
    size_t n, cap;
    int32_t *slots; /* open addressing over keys, -1 = empty */
    size_t nslots;
    size_t total_acks;
} tracker;

static uint64_t name_hash(const char *ns, const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = ns; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

static void tracker_free(tracker *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->keys[i].acks);
    free(t->keys);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return q;
}

static void tracker_rehash(tracker *t)
{
    t->nslots = t->nslots ? t->nslots * 2 : 1024;
    t->slots = xrealloc(t->slots, t->nslots * sizeof *t->slots);
    memset(t->slots, 0xff, t->nslots * sizeof *t->slots);
    for (size_t i = 0; i < t->n; i++) {
        size_t s = name_hash(t->keys[i].ns, t->keys[i].key) & (t->nslots - 1);
        while (t->slots[s] >= 0)
            s = (s + 1) & (t->nslots - 1);
        t->slots[s] = (int32_t)i;
    }
}

static tkey *tracker_get(tracker *t, const char *ns, const char *key)
{
    if (t->n * 2 >= t->nslots)
        tracker_rehash(t);
    size_t s = name_hash(ns, key) & (t->nslots - 1);
    while (t->slots[s] >= 0) {
        tkey *k = &t->keys[t->slots[s]];
        if (!strcmp(k->ns, ns) && !strcmp(k->key, key))
            return k;
        s = (s + 1) & (t->nslots - 1);
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->keys = xrealloc(t->keys, t->cap * sizeof *t->keys);
    }
    tkey *k = &t->keys[t->n];
    memset(k, 0, sizeof *k);
    snprintf(k->ns, sizeof k->ns, "%s", ns);
    snprintf(k->key, sizeof k->key, "%s", key);
    t->slots[s] = (int32_t)t->n++;
    return k;
}

static void tracker_add(tracker *t, const msg *m, int cycle)
{
    tkey *k = tracker_get(t, m->ns, m->key);
    if (k->n == k->cap) {
        k->cap = k->cap ? k->cap * 2 : 4;
        k->acks = xrealloc(k->acks, k->cap * sizeof *k->acks);
    }
    ack *a = &k->acks[k->n++];
    a->ts = m->ts;
    a->deleted = m->deleted;
    a->cycle = cycle;
    memcpy(a->write_id, m->write_id, KD_ID_HEX);
    memcpy(a->version_id, m->version_id, KD_ID_HEX);
    memcpy(a->prev, m->prev, KD_ID_HEX);
    a->write_id[KD_ID_HEX - 1] = a->version_id[KD_ID_HEX - 1] = a->prev[KD_ID_HEX - 1] = '\0';
    t->total_acks++;
}

/* ------------------------------------------------------------------------
 * Parent: running one cycle
 * ---------------------------------------------------------------------- */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Read one whole message; 1 = got one, 0 = EOF, -1 = error. */
static int read_msg(int fd, msg *m)
{
    char *p = (char *)m;
    size_t done = 0;
    while (done < sizeof *m) {
        ssize_t r = read(fd, p + done, sizeof *m - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return done == 0 ? 0 : -1;
        done += (size_t)r;
    }
    return 1;
}

typedef struct cycle_result {
    size_t acks;
    int killed;       /* 1 if our SIGKILL ended the child */
    int ready;        /* the child had opened the database */
    char error[256];  /* "" or why the cycle itself failed */
} cycle_result;

/* Fork a writer, kill it at a random moment, collect its acks. */
static void run_cycle(const char *dir, int cycle, int threads, kd_sync sync, uint64_t *rs, uint64_t seed,
                      tracker *t, cycle_result *res)
{
    memset(res, 0, sizeof *res);
    int pfd[2];
    if (pipe(pfd) != 0) {
        snprintf(res->error, sizeof res->error, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(res->error, sizeof res->error, "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return;
    }
    if (pid == 0) {
        close(pfd[0]);
        child_main(dir, pfd[1], cycle, threads, sync, seed_mix(seed, (uint64_t)cycle * 131 + (uint64_t)threads));
        _exit(0);
    }
    close(pfd[1]);

    /* When to kill: 1 in 8 cycles at 0-10 ms after the fork (maybe during
     * open); 3 in 8 right after the N-th ack; otherwise 0-30 ms after the
     * child reports it is ready. */
    uint32_t mode = rnd_below(rs, 8);
    int64_t start = mono_us(), deadline = -1;
    uint32_t after_acks = 0, delay_us = 0;
    if (mode == 0) {
        deadline = start + rnd_below(rs, 10000);
    } else if (mode <= 3) {
        after_acks = 1 + rnd_below(rs, 40);
    } else {
        delay_us = rnd_below(rs, 30001);
    }
    int killed = 0, eof = 0;
    size_t acks = 0;
    const int64_t give_up = start + 30 * 1000000; /* the child must be ready by then */
    while (!eof) {
        int64_t now = mono_us();
        if (!killed && deadline >= 0 && now >= deadline) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        if (!killed && !res->ready && now >= give_up) {
            kill(pid, SIGKILL);
            killed = 1;
            snprintf(res->error, sizeof res->error, "child did not open the database within 30 s");
        }
        int timeout = -1;
        if (!killed) {
            int64_t until = deadline >= 0 ? deadline : give_up;
            timeout = until > now ? (int)((until - now + 999) / 1000) : 0;
        }
        struct pollfd p = {pfd[0], POLLIN, 0};
        int pr = poll(&p, 1, timeout);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        msg m;
        int r = read_msg(pfd[0], &m);
        if (r <= 0) {
            if (r < 0 && !res->error[0])
                snprintf(res->error, sizeof res->error, "reading the pipe failed");
            eof = 1;
            break;
        }
        if (m.kind == MSG_READY) {
            res->ready = 1;
            if (mode > 3)
                deadline = mono_us() + delay_us;
        } else if (m.kind == MSG_ACK) {
            m.ns[sizeof m.ns - 1] = m.key[sizeof m.key - 1] = '\0';
            tracker_add(t, &m, cycle);
            acks++;
            if (!killed && after_acks && acks == after_acks) {
                kill(pid, SIGKILL);
                killed = 1;
            }
        } else if (m.kind == MSG_ERROR) {
            m.text[sizeof m.text - 1] = '\0';
            snprintf(res->error, sizeof res->error, "child failed: %s", m.text);
        }
    }
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    res->acks = acks;
    res->killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (!res->error[0] && !res->killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        snprintf(res->error, sizeof res->error, "child ended with status 0x%x", (unsigned)status);
}

/* ------------------------------------------------------------------------
 * Parent: checking the database after a crash
 * ---------------------------------------------------------------------- */

static char fail_msg[1024];

#define FAILF(...)                                                                  \
    do {                                                                            \
        snprintf(fail_msg, sizeof fail_msg, __VA_ARGS__);                           \
        return -1;                                                                  \
    } while (0)

/* The history entry with timestamp ts (binary search; history is ordered). */
static const kd_version *hist_find(const kd_version *h, size_t n, int64_t ts)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h[mid].timestamp < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && h[lo].timestamp == ts ? &h[lo] : NULL;
}

static int check_chain(const char *ns, const char *key, const kd_version *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *want_prev = i ? h[i - 1].write_id : "";
        if (strcmp(h[i].previous_write_id, want_prev))
            FAILF("%s/%s: version %zu links to '%s', not to the previous write '%s'", ns, key, i,
                  h[i].previous_write_id, want_prev);
        if (i && h[i].timestamp <= h[i - 1].timestamp)
            FAILF("%s/%s: version %zu timestamp does not increase", ns, key, i);
        if (!h[i].deleted && strlen(h[i].version_id) != 64)
            FAILF("%s/%s: version %zu has no version_id", ns, key, i);
        if (strlen(h[i].write_id) != 64)
            FAILF("%s/%s: version %zu has no write_id", ns, key, i);
    }
    return 0;
}

static int check_key(kd_db *db, const tkey *k)
{
    kd_version *h = NULL;
    size_t n = 0;
    int rc = kd_history(db, k->ns, k->key, KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n);
    if (rc)
        FAILF("%s/%s: %zu acknowledged writes, but kd_history says %s (%s)", k->ns, k->key, k->n, kd_errname(rc),
              kd_errmsg(db));
    int bad = check_chain(k->ns, k->key, h, n);
    const ack *last = NULL;
    for (size_t i = 0; i < k->n && !bad; i++) {
        const ack *a = &k->acks[i];
        const kd_version *v = hist_find(h, n, a->ts);
        if (!v || strcmp(v->write_id, a->write_id)) {
            snprintf(fail_msg, sizeof fail_msg,
                     "LOST acknowledged write: %s/%s write_id %s (ts %lld, acked in cycle %d) is not in the history "
                     "(%zu versions)",
                     k->ns, k->key, a->write_id, (long long)a->ts, a->cycle, n);
            bad = -1;
        } else if (strcmp(v->version_id, a->version_id) || v->deleted != a->deleted ||
                   strcmp(v->previous_write_id, a->prev)) {
            snprintf(fail_msg, sizeof fail_msg,
                     "%s/%s write %s: recovered as version '%s' deleted=%d parent '%s'; acknowledged as '%s' "
                     "deleted=%d parent '%s'",
                     k->ns, k->key, a->write_id, v->version_id, v->deleted, v->previous_write_id, a->version_id,
                     a->deleted, a->prev);
            bad = -1;
        }
        if (!last || a->ts > last->ts)
            last = a;
    }
    free(h);
    if (bad)
        return -1;
    if (last) {
        kd_version cur;
        memset(&cur, 0, sizeof cur);
        rc = kd_get(db, k->ns, k->key, NULL, NULL, &cur);
        if (rc != KD_OK && rc != KD_EDELETED)
            FAILF("%s/%s: kd_get says %s (%s)", k->ns, k->key, kd_errname(rc), kd_errmsg(db));
        if ((rc == KD_EDELETED) != cur.deleted)
            FAILF("%s/%s: kd_get returned %s but deleted=%d", k->ns, k->key, kd_errname(rc), cur.deleted);
        if (cur.timestamp < last->ts)
            FAILF("%s/%s: kd_get returns a version (ts %lld) older than the last acknowledged write %s (ts %lld)",
                  k->ns, k->key, (long long)cur.timestamp, last->write_id, (long long)last->ts);
        if (cur.timestamp == last->ts && strcmp(cur.write_id, last->write_id))
            FAILF("%s/%s: kd_get returns write %s, acknowledged was %s", k->ns, k->key, cur.write_id,
                  last->write_id);
    }
    return 0;
}

/* Every key in namespace "batch" is "<cycle>-<thread>-<seq>-<i>-of-<n>":
 * a batch is either wholly present or wholly absent. */
static int check_batches(kd_db *db, size_t *nbatches)
{
    char **keys = NULL;
    size_t n = 0;
    int rc = kd_list_keys(db, "batch", NULL, NULL, 0, &keys, &n);
    *nbatches = 0;
    if (rc == KD_ENOTFOUND || (rc == KD_OK && n == 0)) {
        kd_free_list(keys, n);
        return 0;
    }
    if (rc)
        FAILF("kd_list_keys(batch): %s (%s)", kd_errname(rc), kd_errmsg(db));
    /* Sorted byte-wise, so the members of one batch are adjacent. */
    int bad = 0;
    for (size_t i = 0; i < n && !bad;) {
        int c, t, idx, total;
        unsigned seq;
        if (sscanf(keys[i], "%d-%d-%u-%d-of-%d", &c, &t, &seq, &idx, &total) != 5 || total < 1 || total > 4) {
            snprintf(fail_msg, sizeof fail_msg, "unexpected batch key '%s'", keys[i]);
            bad = 1;
            break;
        }
        char prefix[48];
        int plen = snprintf(prefix, sizeof prefix, "%d-%d-%u-", c, t, seq);
        size_t j = i;
        int seen = 0;
        while (j < n && !strncmp(keys[j], prefix, (size_t)plen)) {
            int idx2, total2;
            if (sscanf(keys[j] + plen, "%d-of-%d", &idx2, &total2) != 2 || total2 != total || idx2 < 0 ||
                idx2 >= total || (seen & (1 << idx2))) {
                snprintf(fail_msg, sizeof fail_msg, "batch %s: unexpected member '%s'", prefix, keys[j]);
                bad = 1;
                break;
            }
            seen |= 1 << idx2;
            j++;
        }
        if (!bad && seen != (1 << total) - 1) {
            snprintf(fail_msg, sizeof fail_msg, "PARTIAL batch %s (of %d): only members 0x%x are present", prefix,
                     total, (unsigned)seen);
            bad = 1;
        }
        (*nbatches)++;
        i = j;
    }
    kd_free_list(keys, n);
    return bad ? -1 : 0;
}

static int torn_cuts; /* reopens that cut a torn write or unused reserve off the log (summary) */

static void count_torn(void *ctx, kd_log_level level, const char *m)
{
    (void)ctx;
    (void)level;
    if (strstr(m, "torn"))
        torn_cuts++;
}

/* Open the crashed database and check everything; 0 = fine. */
static int check_db(const char *dir, tracker *t, kd_stats *st_out)
{
    kd_options *o = kd_options_new();
    kd_options_set_log(o, count_torn, NULL, KD_LOG_WARN);
    kd_options_set_busy_timeout(o, 30000);
    kd_options_set_cache_size(o, 0); /* read every value back from the log */
    kd_db *db = NULL;
    char err[512];
    int rc = kd_open(dir, o, &db, err, sizeof err);
    kd_options_free(o);
    if (rc)
        FAILF("reopening after the crash failed: %s: %s", kd_errname(rc), err);
    int bad = 0;
    for (size_t i = 0; i < t->n && !bad; i++)
        bad = check_key(db, &t->keys[i]);

    /* Every key, acknowledged or not, must be a proper chain. */
    char **keys = NULL;
    size_t nk = 0;
    if (!bad && kd_list_keys(db, "crash", NULL, NULL, 0, &keys, &nk) == KD_OK) {
        for (size_t i = 0; i < nk && !bad; i++) {
            kd_version *h = NULL;
            size_t n = 0;
            rc = kd_history(db, "crash", keys[i], KD_TIME_MIN, KD_TIME_MAX, 0, 0, &h, &n);
            if (rc) {
                snprintf(fail_msg, sizeof fail_msg, "crash/%s is listed but kd_history says %s", keys[i],
                         kd_errname(rc));
                bad = -1;
            } else {
                bad = check_chain("crash", keys[i], h, n);
            }
            free(h);
        }
    }
    kd_free_list(keys, nk);

    size_t nbatches = 0;
    if (!bad)
        bad = check_batches(db, &nbatches);
    kd_stats st;
    memset(&st, 0, sizeof st);
    if (!bad && kd_stats_get(db, &st) == KD_OK && st.replay_bytes + 32 * st.segments < st.disk_bytes)
        g_checkpoint_used++; /* the open read part of the log from a checkpoint */
    if (!bad && st.versions < t->total_acks) {
        snprintf(fail_msg, sizeof fail_msg, "stats: %llu versions, but %zu writes were acknowledged",
                 (unsigned long long)st.versions, t->total_acks);
        bad = -1;
    }
    if (!bad) {
        kd_verify_report rep;
        rc = kd_verify(db, &rep);
        if (rc || rep.problem[0]) {
            snprintf(fail_msg, sizeof fail_msg, "kd_verify: %s: %s", kd_errname(rc), rep.problem);
            bad = -1;
        } else if (rep.versions != st.versions) {
            snprintf(fail_msg, sizeof fail_msg, "kd_verify saw %llu versions, the index has %llu",
                     (unsigned long long)rep.versions, (unsigned long long)st.versions);
            bad = -1;
        }
    }
    rc = kd_close(db);
    if (!bad && rc)
        FAILF("kd_close: %s", kd_errname(rc));
    if (st_out)
        *st_out = st;
    return bad;
}

/* ------------------------------------------------------------------------
 * The tests
 * ---------------------------------------------------------------------- */

static uint64_t g_seed;

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", d);
}

static void crash_loop(int threads, kd_sync sync, int cycles)
{
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/kd_test_crash_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    char db_dir[300];
    snprintf(db_dir, sizeof db_dir, "%s/db", dir);
    uint64_t rs = seed_mix(g_seed, (uint64_t)threads * 3 + (uint64_t)sync);
    tracker t;
    memset(&t, 0, sizeof t);
    int killed_writing = 0, ok = 1;
    torn_cuts = 0;
    kd_stats st;
    memset(&st, 0, sizeof st);
    for (int cycle = 0; cycle < cycles && ok; cycle++) {
        cycle_result res;
        run_cycle(db_dir, cycle, threads, sync, &rs, g_seed, &t, &res);
        if (res.error[0]) {
            fprintf(stderr, "cycle %d (seed %llu, %d threads, sync %d): %s\n", cycle, (unsigned long long)g_seed,
                    threads, (int)sync, res.error);
            ok = 0;
            break;
        }
        if (res.killed && res.ready)
            killed_writing++;
        if (check_db(db_dir, &t, &st) != 0) {
            fprintf(stderr, "cycle %d (seed %llu, %d threads, sync %d, %zu acks this cycle): %s\n", cycle,
                    (unsigned long long)g_seed, threads, (int)sync, res.acks, fail_msg);
            fprintf(stderr, "database kept for inspection in %s\n", db_dir);
            ok = 0;
        }
    }
    fprintf(stderr,
            "  %d threads, sync=%s: %d cycles, %d kills while writing, %d tails cut on reopen, %zu acknowledged "
            "writes, %llu versions, %zu keys tracked\n",
            threads, sync == KD_SYNC_NONE ? "none" : "always", cycles, killed_writing, torn_cuts, t.total_acks,
            (unsigned long long)st.versions, t.n);
    size_t total = t.total_acks;
    tracker_free(&t);
    CHECK(ok);
    rm_rf(dir);
    /* The test must have exercised something. */
    CHECK(total > (size_t)cycles);
    CHECK(killed_writing >= cycles / 2);
}

static void test_crash_one_writer(void)
{
    crash_loop(1, KD_SYNC_ALWAYS, 100);
}

static void test_crash_group_commit(void)
{
    crash_loop(MAX_THREADS, KD_SYNC_ALWAYS, 50);
}

/* korudelta.h: with sync=none "a crash of the process loses nothing". */
static void test_crash_sync_none(void)
{
    crash_loop(2, KD_SYNC_NONE, 25);
}

/* Kills while checkpoints are written: every reopen must give exactly
 * the log's history whether it used a checkpoint or not. */
static void test_crash_checkpoints(void)
{
    g_checkpoint_often = 1;
    g_checkpoint_used = 0;
    crash_loop(2, KD_SYNC_ALWAYS, 30);
    g_checkpoint_often = 0;
    fprintf(stderr, "  %d reopens used a checkpoint\n", g_checkpoint_used);
    CHECK(g_checkpoint_used > 0);
}

/* The checker itself must be able to fail: a database missing an
 * acknowledged write, or with a write that differs, is reported. */
static void test_checker_detects_loss(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/kd_test_crash_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    char db_dir[300];
    snprintf(db_dir, sizeof db_dir, "%s/db", dir);
    kd_db *db = NULL;
    char err[256];
    CHECK_RC(kd_open(db_dir, NULL, &db, err, sizeof err), KD_OK);
    kd_version v;
    CHECK_RC(kd_put(db, "crash", "hot0", "1", 1, &v), KD_OK);
    CHECK_RC(kd_close(db), KD_OK);

    tracker t;
    memset(&t, 0, sizeof t);
    msg m;
    memset(&m, 0, sizeof m);
    m.kind = MSG_ACK;
    snprintf(m.ns, sizeof m.ns, "crash");
    snprintf(m.key, sizeof m.key, "hot0");
    memcpy(m.write_id, v.write_id, KD_ID_HEX);
    memcpy(m.version_id, v.version_id, KD_ID_HEX);
    m.ts = v.timestamp;
    tracker_add(&t, &m, 0);
    int good = check_db(db_dir, &t, NULL);

    /* An ack the database never saw. */
    m.ts = v.timestamp + 1;
    m.write_id[0] = m.write_id[0] == 'a' ? 'b' : 'a';
    tracker_add(&t, &m, 0);
    int lost = check_db(db_dir, &t, NULL);
    char lost_msg[sizeof fail_msg];
    memcpy(lost_msg, fail_msg, sizeof lost_msg);
    tracker_free(&t);

    /* A parent link that differs from the acknowledged one. */
    memset(&t, 0, sizeof t);
    m.ts = v.timestamp;
    memcpy(m.write_id, v.write_id, KD_ID_HEX);
    snprintf(m.prev, sizeof m.prev, "%064d", 7);
    tracker_add(&t, &m, 0);
    int wrong = check_db(db_dir, &t, NULL);
    tracker_free(&t);
    rm_rf(dir);
    CHECK_EQ_INT(good, 0);
    CHECK(lost != 0);
    CHECK(strstr(lost_msg, "LOST acknowledged write") != NULL);
    CHECK(wrong != 0);
}

int main(void)
{
    const char *s = getenv("KD_CRASH_SEED");
    g_seed = s && *s ? strtoull(s, NULL, 0) : 20240611ull;
    if (!g_seed)
        g_seed = 1;
    fprintf(stderr, "test_crash: seed %llu (set KD_CRASH_SEED to change)\n", (unsigned long long)g_seed);
    signal(SIGPIPE, SIG_IGN);
    RUN(test_checker_detects_loss);
    RUN(test_crash_one_writer);
    RUN(test_crash_group_commit);
    RUN(test_crash_sync_none);
    RUN(test_crash_checkpoints);
    return HARNESS_DONE();
}
