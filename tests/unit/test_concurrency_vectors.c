/*
 * test_concurrency_vectors.c — the vectors an open after a crash leaves out
 * of the HNSW graphs (unindexed, vstore.h) are inserted by the upkeep
 * thread while searches and writes go on: every search answers with the
 * exact count and no error meanwhile, the writes (updates and deletes of
 * unindexed vectors among them) land, and afterwards exact searches (L2 and
 * dot are brute force) agree with a model of the final state. A close
 * while vectors are still unindexed neither waits for them nor saves the
 * index file without them. Saving the index file while vectors are
 * written (copied a few labels per hold of the lock) gives a file that is
 * exactly the indexes at its stamp: opened with the writes after it, every
 * key has its last vector and metadata. Run under TSan (`make tsan`, label
 * "concurrency").
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_int.h"
#include "harness.h"
#include "vector/vstore.h"
#include "korudelta.h"

#define DIM 16
#define N_SAVED 3000  /* written before the checkpoint */
#define N_KEYS 4000   /* keys 3000..3999 are new after it */
#define N_UPDATED 500 /* keys 0..499 updated after it */

static float vecs[N_KEYS][DIM];
static int live[N_KEYS];

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void rand_vec(float *v)
{
    for (int i = 0; i < DIM; i++)
        v[i] = (float)((double)(rng() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static kd_db *open_upkeep(const char *dir, uint32_t ms)
{
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 10);
    kd_options_set_upkeep_interval(o, ms);
    kd_db *db = NULL;
    char err[512];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "open %s: %s\n", dir, err);
    kd_options_free(o);
    return db;
}

static int put(kd_db *db, size_t i)
{
    char key[16];
    snprintf(key, sizeof key, "k%05zu", i);
    return kd_vector_put(db, "c", key, "m", vecs[i], DIM, NULL, 0, NULL);
}

static int del(kd_db *db, size_t i)
{
    char key[16];
    snprintf(key, sizeof key, "k%05zu", i);
    return kd_vector_delete(db, "c", key, NULL);
}

static uint64_t unindexed(kd_db *db)
{
    kd_vector_info *l;
    size_t n;
    uint64_t u = 0;
    if (kd_vector_stats(db, NULL, &l, &n))
        return UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        u += l[i].unindexed;
    kd_vector_stats_free(l, n);
    return u;
}

static float saved[N_UPDATED][DIM], after[N_UPDATED][DIM];

/* The database of the crash: keys 0..2999 (0..499 with `saved`) saved by a
 * checkpoint, then 0..499 updated to `after` and 3000..3999 new, and no
 * close. */
static int make_crashed(const char *dir)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        kd_db *db = open_upkeep(dir, 0);
        int bad = !db;
        memcpy(vecs, saved, sizeof saved);
        for (size_t i = 0; i < N_SAVED && !bad; i++)
            bad = put(db, i) != KD_OK;
        bad = bad || kd_checkpoint(db) != KD_OK;
        memcpy(vecs, after, sizeof after);
        for (size_t i = 0; i < N_KEYS && !bad; i++)
            if (i < N_UPDATED || i >= N_SAVED)
                bad = put(db, i) != KD_OK;
        _exit(bad ? 1 : 0); /* as if killed */
    }
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

typedef struct shared {
    kd_db *db;
    int stop;
    uint64_t searches, errors;
} shared;

static void *searcher(void *arg)
{
    shared *s = arg;
    uint64_t st = (uint64_t)(uintptr_t)arg ^ 0x1234567ull;
    int metric = 0;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        float q[DIM];
        for (int i = 0; i < DIM; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            q[i] = (float)(int64_t)(st >> 40) / (float)(1 << 23) - 1.0f;
        }
        kd_vector_search_options o = {.metric = (kd_vector_metric)(metric++ % 3)};
        kd_vector_hit *h;
        size_t n;
        /* at least 2,700 vectors are live all along: exactly k come back */
        if (kd_vector_search(s->db, "c", q, DIM, 10, &o, &h, &n) || n != 10)
            __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
        else
            kd_vector_hits_free(h, n);
        __atomic_add_fetch(&s->searches, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Updates of unindexed keys (0..199) and of saved ones (1000..1199),
 * deletes of unindexed new keys (3000..3099) and of saved ones
 * (2000..2099); the model is updated before the threads start. */
static void *writer(void *arg)
{
    shared *s = arg;
    for (size_t i = 0; i < 200; i++)
        if (put(s->db, i) || put(s->db, 1000 + i))
            __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
    for (size_t i = 0; i < 100; i++)
        if (del(s->db, 3000 + i) || del(s->db, 2000 + i))
            __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
    return NULL;
}

static double score(kd_vector_metric m, const float *a, const float *b)
{
    double d = 0, l2 = 0;
    for (int i = 0; i < DIM; i++) {
        d += (double)a[i] * b[i];
        l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    }
    return m == KD_VECTOR_L2 ? sqrt(l2) : d;
}

/* Exact searches (L2 and dot) against the model: the same keys up to near
 * ties at the k-th place, the model's scores. Returns the disagreements. */
static int check_exact(kd_db *db)
{
    int bad = 0;
    for (int r = 0; r < 20; r++) {
        float q[DIM];
        rand_vec(q);
        kd_vector_metric m = r % 2 ? KD_VECTOR_L2 : KD_VECTOR_DOT;
        kd_vector_search_options o = {.metric = m};
        kd_vector_hit *h;
        size_t n;
        if (kd_vector_search(db, "c", q, DIM, 10, &o, &h, &n) || n != 10) {
            bad++;
            continue;
        }
        /* the k-th best score of the model */
        double best[10];
        size_t nb = 0;
        for (size_t i = 0; i < N_KEYS; i++) {
            if (!live[i])
                continue;
            double sc = score(m, q, vecs[i]);
            int better = m == KD_VECTOR_L2 ? 1 : -1;
            if (nb == 10 && !(better * (sc - best[9]) < 0))
                continue;
            size_t j = nb < 10 ? nb++ : 9;
            while (j > 0 && better * (sc - best[j - 1]) < 0) {
                best[j] = best[j - 1];
                j--;
            }
            best[j] = sc;
        }
        for (size_t i = 0; i < n; i++) {
            size_t k = (size_t)strtoul(h[i].key + 1, NULL, 10);
            double sc = k < N_KEYS && live[k] ? score(m, q, vecs[k]) : NAN;
            double tol = 1e-4 * (1 + fabs(sc));
            int worse = m == KD_VECTOR_L2 ? sc > best[9] + tol : sc < best[9] - tol;
            if (!(fabs(sc - h[i].score) <= tol) || worse) {
                fprintf(stderr, "  %s: score %g, model %g, k-th %g\n", h[i].key, h[i].score, sc, best[9]);
                bad++;
                break;
            }
        }
        kd_vector_hits_free(h, n);
    }
    return bad;
}

static void test_index_beside_writes(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/kd_test_cvec_XXXXXX");
    CHECK(mkdtemp(dir));
    for (size_t i = 0; i < N_KEYS; i++)
        rand_vec(vecs[i]);
    memcpy(saved, vecs, sizeof saved);
    for (size_t i = 0; i < N_UPDATED; i++) /* the versions written after the checkpoint */
        rand_vec(after[i]);
    memcpy(vecs, after, sizeof after);
    for (size_t i = 0; i < N_KEYS; i++)
        live[i] = 1;
    CHECK_EQ_INT(make_crashed(dir), 0);

    /* A close right after the open (the upkeep thread has begun inserting)
     * does not save the file without them: the next open applies the same
     * writes again, unless every vector was inserted before the close. */
    kd_db *db = open_upkeep(dir, 3600000);
    CHECK(db);
    CHECK_EQ_INT(db->vs->applied, N_UPDATED + (N_KEYS - N_SAVED));
    CHECK_RC(kd_close(db), KD_OK);
    CHECK((db = open_upkeep(dir, 0)));
    uint64_t applied = db->vs->applied;
    CHECK(applied == 0 || applied == N_UPDATED + (N_KEYS - N_SAVED));
    CHECK_RC(kd_close(db), KD_OK);
    if (!applied) { /* all inserted and saved before the close: crash again */
        fprintf(stderr, "  (every vector was inserted before the close; crashing again)\n");
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", dir);
        CHECK(system(cmd) == 0);
        CHECK_EQ_INT(make_crashed(dir), 0);
    }

    /* Searches and writes while the upkeep thread inserts. */
    CHECK((db = open_upkeep(dir, 3600000)));
    shared s = {db, 0, 0, 0};
    for (size_t i = 0; i < 200; i++) { /* what the writer writes */
        rand_vec(vecs[i]);
        rand_vec(vecs[1000 + i]);
    }
    for (size_t i = 0; i < 100; i++)
        live[3000 + i] = live[2000 + i] = 0;
    pthread_t th[3];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, searcher, &s);
    pthread_create(&th[2], NULL, writer, &s);
    pthread_join(th[2], NULL);
    for (int i = 0; i < 6000 && unindexed(db); i++)
        usleep(10000);
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    fprintf(stderr, "  %llu searches beside the inserts and 600 writes\n", (unsigned long long)s.searches);
    CHECK_EQ_INT(s.errors, 0);
    CHECK_EQ_INT(unindexed(db), 0);
    kd_stats stats;
    CHECK_RC(kd_stats_get(db, &stats), KD_OK);
    CHECK_EQ_INT(stats.vectors, N_KEYS - 200);
    CHECK_EQ_INT(check_exact(db), 0);
    CHECK_RC(kd_close(db), KD_OK);
    /* now saved: nothing to apply, the same answers */
    CHECK((db = open_upkeep(dir, 0)));
    CHECK_EQ_INT(db->vs->applied, 0);
    CHECK_EQ_INT(check_exact(db), 0);
    CHECK_RC(kd_close(db), KD_OK);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* ------------------------------------------------------------------------
 * Saving while writing
 * ---------------------------------------------------------------------- */

#define S_KEYS 1500
#define R_KEYS 10    /* namespace "r": all deleted and put back with the other dimension, again and again */
#define N_GROUPS 40  /* namespaces "n000".. each get one vector: groups created during the saves */

static float s_vecs[S_KEYS][DIM];
static unsigned s_ver[S_KEYS]; /* metadata {"v":N} of the current vector; 0: deleted */
static float r_vecs[R_KEYS][DIM];
static uint32_t r_dim = DIM;
static int r_live; /* the R_KEYS vectors of "r" exist */
static float n_vecs[N_GROUPS][DIM];
static int n_groups;

typedef struct saver_writes {
    kd_db *db;
    int stop;
    uint64_t writes, errors;
} saver_writes;

static uint64_t s_rng = 0xfeedull;

static void s_rand_vec(float *v, uint32_t dim)
{
    for (uint32_t d = 0; d < dim; d++) {
        s_rng = s_rng * 6364136223846793005ull + 1442695040888963407ull;
        v[d] = (float)(int64_t)(s_rng >> 40) / (float)(1 << 23) - 1.0f;
    }
}

static int s_put(kd_db *db, size_t i)
{
    char key[16], meta[32];
    snprintf(key, sizeof key, "s%05zu", i);
    int n = snprintf(meta, sizeof meta, "{\"v\":%u}", s_ver[i]);
    return kd_vector_put(db, "s", key, "m", s_vecs[i], DIM, meta, (size_t)n, NULL);
}

/* Group "r" empty, then full again with the other dimension: a group
 * reset (a new, empty index) between the two. */
static int r_cycle(kd_db *db)
{
    char key[16];
    int bad = 0;
    for (size_t i = 0; i < R_KEYS && r_live; i++) {
        snprintf(key, sizeof key, "r%zu", i);
        bad |= kd_vector_delete(db, "r", key, NULL) != KD_OK;
    }
    r_live = 1;
    r_dim = r_dim == DIM ? DIM / 2 : DIM;
    for (size_t i = 0; i < R_KEYS; i++) {
        snprintf(key, sizeof key, "r%zu", i);
        s_rand_vec(r_vecs[i], r_dim);
        bad |= kd_vector_put(db, "r", key, "m", r_vecs[i], r_dim, NULL, 0, NULL) != KD_OK;
    }
    return bad ? -1 : 0;
}

/* Updates (new vector and metadata) and deletes of random keys of "s",
 * puts of deleted ones, every 40th op a reset cycle of "r" and every 60th
 * a new group, until told to stop; the model is this thread's until it
 * is joined. */
static void *save_writer(void *arg)
{
    saver_writes *w = arg;
    for (uint64_t op = 1; !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); op++) {
        s_rng = s_rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t i = (size_t)(s_rng >> 33) % S_KEYS;
        int rc;
        if (op % 40 == 0) {
            rc = r_cycle(w->db);
        } else if (op % 60 == 0 && n_groups < N_GROUPS) {
            char ns[16];
            snprintf(ns, sizeof ns, "n%03d", n_groups);
            s_rand_vec(n_vecs[n_groups], DIM);
            rc = kd_vector_put(w->db, ns, "x", "m", n_vecs[n_groups], DIM, NULL, 0, NULL);
            n_groups++;
        } else if (s_ver[i] && (s_rng >> 20) % 5 == 0) {
            char key[16];
            snprintf(key, sizeof key, "s%05zu", i);
            rc = kd_vector_delete(w->db, "s", key, NULL);
            s_ver[i] = 0;
        } else {
            s_rand_vec(s_vecs[i], DIM);
            s_ver[i] = (unsigned)op;
            rc = s_put(w->db, i);
        }
        if (rc)
            __atomic_add_fetch(&w->errors, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&w->writes, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *p = n > 0 ? malloc((size_t)n) : NULL;
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

typedef struct log_seen {
    pthread_mutex_t mu;
    int loaded; /* "loaded from vectors.idx" was logged */
} log_seen;

static void on_log(void *ctx, kd_log_level level, const char *msg)
{
    (void)level;
    log_seen *l = ctx;
    pthread_mutex_lock(&l->mu);
    if (strstr(msg, "loaded from " KD__VSTORE_FILE))
        l->loaded = 1;
    pthread_mutex_unlock(&l->mu);
}

/* Is the nearest vector (L2: brute force over the group) to v in ns the
 * key `key`, with metadata `meta` (NULL: not checked)? */
static int nearest_is(kd_db *db, const char *ns, const float *v, uint32_t dim, const char *key, const char *meta)
{
    kd_vector_search_options o = {.metric = KD_VECTOR_L2};
    kd_vector_hit *h;
    size_t n;
    if (kd_vector_search(db, ns, v, dim, 1, &o, &h, &n) || n != 1) {
        fprintf(stderr, "  %s/%s: search failed\n", ns, key);
        return 0;
    }
    int ok = !strcmp(h[0].key, key) && (!meta || (h[0].meta && !strcmp(h[0].meta, meta)));
    if (!ok)
        fprintf(stderr, "  %s/%s: nearest is %s with %s, want %s\n", ns, key, h[0].key,
                h[0].meta ? h[0].meta : "(null)", meta ? meta : "(any)");
    kd_vector_hits_free(h, n);
    return ok;
}

/* Every vector as the model has it: for every key its own vector is its
 * nearest, with its metadata; the number of vectors is the model's (which
 * covers the deleted keys). Returns the disagreements (at most 5 shown). */
static int check_saved_model(kd_db *db)
{
    int bad = 0;
    uint64_t n_live = 0;
    for (size_t i = 0; i < S_KEYS && bad < 5; i++) {
        char key[16], meta[32];
        snprintf(key, sizeof key, "s%05zu", i);
        snprintf(meta, sizeof meta, "{\"v\":%u}", s_ver[i]);
        if (!s_ver[i])
            continue;
        n_live++;
        bad += !nearest_is(db, "s", s_vecs[i], DIM, key, meta);
    }
    for (size_t i = 0; i < R_KEYS && bad < 5; i++) {
        char key[16];
        snprintf(key, sizeof key, "r%zu", i);
        bad += !nearest_is(db, "r", r_vecs[i], r_dim, key, NULL);
    }
    for (int i = 0; i < n_groups && bad < 5; i++) {
        char ns[16];
        snprintf(ns, sizeof ns, "n%03d", i);
        bad += !nearest_is(db, ns, n_vecs[i], DIM, "x", NULL);
    }
    kd_stats st;
    uint64_t want = n_live + R_KEYS + (uint64_t)n_groups;
    if (!bad && (kd_stats_get(db, &st) || st.vectors != want)) {
        fprintf(stderr, "  %llu vectors, the model has %llu\n", (unsigned long long)st.vectors,
                (unsigned long long)want);
        bad++;
    }
    return bad;
}

/* Vector writes the last save made while it copied (its upkeep status), or -1. */
static long long writes_meanwhile(kd_db *db)
{
    kd_task_status *t;
    size_t n;
    long long w = -1;
    if (kd_upkeep_status(db, &t, &n))
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *p = strstr(t[i].message, " holds, ");
        if (!strcmp(t[i].name, "vector_index") && p)
            w = strtoll(p + 8, NULL, 10);
    }
    kd_free(t);
    return w;
}

#define SAVES 4

static void test_save_beside_writes(void)
{
    char dir[256];
    harness_tmpdir("cvec", "save", dir);
    kd_db *db = open_upkeep(dir, 0);
    CHECK(db);
    for (size_t i = 0; i < S_KEYS; i++) {
        s_rand_vec(s_vecs[i], DIM);
        s_ver[i] = 1;
        CHECK_RC(s_put(db, i), KD_OK);
    }
    CHECK_EQ_INT(r_cycle(db), 0);
    /* A few labels per hold, and a pause after each: writes land between
     * the holds of every save. */
    db->vs->save_step_bytes = 4096;
    db->vs->save_pause_us = 300;
    saver_writes w = {db, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, save_writer, &w);
    char path[600];
    snprintf(path, sizeof path, "%s/" KD__VSTORE_FILE, dir);
    char *files[SAVES] = {NULL};
    size_t lens[SAVES] = {0};
    for (int r = 0; r < SAVES; r++) {
        uint64_t before = __atomic_load_n(&w.writes, __ATOMIC_RELAXED);
        while (__atomic_load_n(&w.writes, __ATOMIC_RELAXED) < before + 100)
            usleep(1000);
        CHECK_RC(kd_checkpoint(db), KD_OK);
        long long during = writes_meanwhile(db);
        fprintf(stderr, "  save %d: %lld vector writes while it copied\n", r, during);
        CHECK(during > 0);
        files[r] = read_file(path, &lens[r]);
        CHECK(files[r]);
    }
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    fprintf(stderr, "  %llu vector writes beside %d saves, %d groups created\n", (unsigned long long)w.writes, SAVES,
            n_groups);
    CHECK_EQ_INT(w.errors, 0);
    CHECK_EQ_INT(check_saved_model(db), 0);
    CHECK_RC(kd_close(db), KD_OK);

    /* Each file saved beside the writes, with the writes after it applied
     * at open, gives the model. */
    for (int r = 0; r < SAVES; r++) {
        FILE *f = fopen(path, "wb");
        CHECK(f && files[r] && fwrite(files[r], 1, lens[r], f) == lens[r]);
        if (f)
            fclose(f);
        free(files[r]);
        log_seen seen = {PTHREAD_MUTEX_INITIALIZER, 0};
        kd_options *o = kd_options_new();
        kd_options_set_sync(o, KD_SYNC_NONE, 10);
        kd_options_set_upkeep_interval(o, 0);
        kd_options_set_log(o, on_log, &seen, KD_LOG_INFO);
        char err[512];
        db = NULL;
        CHECK_RC(kd_open(dir, o, &db, err, sizeof err), KD_OK);
        kd_options_free(o);
        CHECK(db);
        if (!db)
            continue;
        CHECK_EQ_INT(seen.loaded, 1);
        CHECK_EQ_INT(check_saved_model(db), 0);
        CHECK_RC(kd_close(db), KD_OK);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    RUN(test_index_beside_writes);
    RUN(test_save_beside_writes);
    return HARNESS_DONE();
}
