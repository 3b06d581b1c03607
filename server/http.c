/*
 * http.c — the daemon behind `kdelta serve`: libmicrohttpd with a pool of
 * event threads (poll), workers for whatever may block and a durability
 * thread for key writes under sync=always (connections suspended while they
 * wait), limits on the request line and headers (414, 431) and
 * on bodies (413, a chunked one as soon as it passes the cap), routing of the raw
 * path (split at '/' first, then each segment percent-decoded, so "%2F"
 * stays inside a key), responses (JSON, ETag/Location, Server-Sent Event
 * streams), one log line per request, /healthz, /metrics and the graceful
 * shutdown on SIGINT/SIGTERM.
 *
 * Handlers (routes_*.c) see only ks_request/ks_response (server.h); this
 * file is the only one that talks to libmicrohttpd.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "server.h"
#include "lone.h"
#include "server_int.h"

/* ------------------------------------------------------------------------
 * Logging
 * ---------------------------------------------------------------------- */

static atomic_int log_level = KD_LOG_INFO;

void ks_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

/* While the server runs, log lines go through a queue to a writer thread,
 * which writes what gathered in one go at most every millisecond: an event
 * thread never waits for the log file (with a line per request, direct
 * writes from the two event threads cost about a third of a request's
 * time). Outside ks_serve, and once it stops, lines are written at once.
 * When stderr does not keep up, a writer waits once LOG_QUEUE_MAX bytes are
 * queued (as it waited for the write before). */
#define LOG_QUEUE_MAX ((size_t)4 << 20)
static pthread_mutex_t lg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lg_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t lg_room_cv = PTHREAD_COND_INITIALIZER; /* the queue was taken */
static char *lg_buf;
static size_t lg_len, lg_cap;
static int lg_on, lg_quit, lg_sleeping;
static pthread_t lg_thread;

static void *log_main(void *arg)
{
    (void)arg;
    char *mine = NULL;
    size_t mine_cap = 0;
    pthread_mutex_lock(&lg_mu);
    for (;;) {
        while (!lg_len && !lg_quit) {
            lg_sleeping = 1;
            pthread_cond_wait(&lg_cv, &lg_mu);
            lg_sleeping = 0;
        }
        if (!lg_len)
            break;
        if (!lg_quit) { /* let a few more lines gather */
            pthread_mutex_unlock(&lg_mu);
            struct timespec pause = {0, 1000 * 1000};
            nanosleep(&pause, NULL);
            pthread_mutex_lock(&lg_mu);
        }
        /* take the buffer, leave an empty one */
        char *full = lg_buf;
        size_t len = lg_len, cap = lg_cap;
        lg_buf = mine;
        lg_cap = mine_cap;
        lg_len = 0;
        pthread_cond_broadcast(&lg_room_cv);
        pthread_mutex_unlock(&lg_mu);
        fwrite(full, 1, len, stderr);
        fflush(stderr);
        mine = full;
        mine_cap = cap;
        pthread_mutex_lock(&lg_mu);
    }
    pthread_mutex_unlock(&lg_mu);
    free(mine);
    return NULL;
}

static void log_async_start(void)
{
    pthread_mutex_lock(&lg_mu);
    lg_quit = 0;
    lg_on = pthread_create(&lg_thread, NULL, log_main, NULL) == 0;
    pthread_mutex_unlock(&lg_mu);
}

/* Write what is queued and go back to direct writes. */
static void log_async_stop(void)
{
    pthread_mutex_lock(&lg_mu);
    if (!lg_on) {
        pthread_mutex_unlock(&lg_mu);
        return;
    }
    lg_quit = 1;
    pthread_cond_signal(&lg_cv);
    pthread_mutex_unlock(&lg_mu);
    pthread_join(lg_thread, NULL);
    pthread_mutex_lock(&lg_mu);
    lg_on = 0;
    if (lg_len) /* lines queued after the writer's last round */
        fwrite(lg_buf, 1, lg_len, stderr);
    pthread_cond_broadcast(&lg_room_cv);
    free(lg_buf);
    lg_buf = NULL;
    lg_len = lg_cap = 0;
    pthread_mutex_unlock(&lg_mu);
}

static void log_write(int level, const char *msg)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    /* the time to the second, formatted once a second per thread */
    static __thread time_t t_sec = -1;
    static __thread char t_when[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != t_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        if (!strftime(t_when, sizeof t_when, "%Y-%m-%dT%H:%M:%S", &tm))
            t_when[0] = '\0';
        t_sec = ts.tv_sec;
    }
    char line[2200];
    int n = snprintf(line, sizeof line, "%s.%06ldZ kdelta %s: %s\n", t_when, ts.tv_nsec / 1000,
                     names[level >= 0 && level <= 3 ? level : 3], msg);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (len == sizeof line - 1)
        line[len - 1] = '\n'; /* cut: still one line */
    pthread_mutex_lock(&lg_mu);
    while (lg_on && lg_len > LOG_QUEUE_MAX)
        pthread_cond_wait(&lg_room_cv, &lg_mu);
    if (lg_on) {
        if (lg_len + len > lg_cap) {
            size_t cap = lg_cap ? lg_cap : 16384;
            while (cap < lg_len + len)
                cap *= 2;
            lg_buf = ks_xrealloc(lg_buf, cap);
            lg_cap = cap;
        }
        memcpy(lg_buf + lg_len, line, len);
        lg_len += len;
        if (lg_sleeping)
            pthread_cond_signal(&lg_cv);
        pthread_mutex_unlock(&lg_mu);
        return;
    }
    pthread_mutex_unlock(&lg_mu);
    fwrite(line, 1, len, stderr);
}

void ks_log(int level, const char *fmt, ...)
{
    if (level > atomic_load(&log_level))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_write(level, msg);
}

void ks_log_fn(void *ctx, kd_log_level level, const char *msg)
{
    (void)ctx;
    if ((int)level <= atomic_load(&log_level))
        log_write((int)level, msg);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (KD_LOG_DEBUG > atomic_load(&log_level))
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_write(KD_LOG_DEBUG, msg);
}

/* ------------------------------------------------------------------------
 * Routes: the tables of routes_*.c plus our own, split into segments once
 * ---------------------------------------------------------------------- */

static int h_healthz(ks_request *req, ks_response *res);
static int h_metrics(ks_request *req, ks_response *res);

static const ks_route own_routes[] = {
    {"GET", "healthz", h_healthz, "healthz"},
    {"GET", "metrics", h_metrics, "metrics"},
    {NULL, NULL, NULL, NULL},
};

#define MAX_SEGS KS_MAX_SEGS

/* A compiled route (parse.c); metric is an index into the metric names. */
typedef ks_route_pat route;

/* Metric route names: every distinct route name, plus these for requests
 * that match no route. */
enum { M_NOT_FOUND, M_INVALID, M_FIXED };
#define MAX_METRIC_ROUTES 256

static route *routes;
static size_t n_routes;
static const char *metric_names[MAX_METRIC_ROUTES];
static size_t n_metric_names;

static int metric_index(const char *name)
{
    for (size_t i = 0; i < n_metric_names; i++)
        if (strcmp(metric_names[i], name) == 0)
            return (int)i;
    if (n_metric_names == MAX_METRIC_ROUTES)
        return M_NOT_FOUND;
    metric_names[n_metric_names] = name;
    return (int)n_metric_names++;
}

static void add_table(const ks_route *t)
{
    for (; t->method; t++) {
        routes = ks_xrealloc(routes, (n_routes + 1) * sizeof *routes);
        route *r = &routes[n_routes];
        ks_route_compile(r, t);
        r->metric = metric_index(t->name ? t->name : t->pattern);
        n_routes++;
    }
}

static void routes_init(void)
{
    n_metric_names = 0;
    metric_index("not_found");
    metric_index("invalid");
    add_table(own_routes);
    add_table(ks_routes_keys);
    add_table(ks_routes_query);
    add_table(ks_routes_io);
    add_table(ks_routes_vector);
    add_table(ks_routes_ws);
    add_table(ks_routes_auth);
    add_table(ks_routes_upkeep);
}

static void routes_free(void)
{
    for (size_t i = 0; i < n_routes; i++)
        ks_route_pat_free(&routes[i]);
    free(routes);
    routes = NULL;
    n_routes = 0;
}

/* ------------------------------------------------------------------------
 * Metrics (all counters are relaxed atomics: cheap and thread-safe)
 * ---------------------------------------------------------------------- */

static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"};
#define N_METHODS (sizeof method_names / sizeof method_names[0])

static int method_index(const char *m)
{
    for (size_t i = 0; i + 1 < N_METHODS; i++)
        if (strcmp(method_names[i], m) == 0)
            return (int)i;
    return (int)N_METHODS - 1;
}

/* Upper bounds of the latency buckets, in microseconds (50 µs .. 10 s). */
static const uint64_t bucket_us[] = {50,     100,    250,    500,     1000,    2500,    5000,    10000,   25000,
                                     50000,  100000, 250000, 500000,  1000000, 2500000, 5000000, 10000000};
#define N_BUCKETS (sizeof bucket_us / sizeof bucket_us[0])

typedef struct histo {
    atomic_uint_fast64_t bucket[N_BUCKETS + 1]; /* last: over 10 s */
    atomic_uint_fast64_t sum_us, count;
} histo;

static histo histos[MAX_METRIC_ROUTES];

/* Request counters by (route, method, status): an open-addressing table
 * whose keys are claimed with a compare-and-swap. */
#define N_COUNTERS 4096
static struct counter {
    atomic_uint_fast64_t key; /* 0 = free; else 1 + route<<16 | method<<10 | status */
    atomic_uint_fast64_t n;
} counters[N_COUNTERS];

static atomic_long open_subs;
static atomic_long in_flight;
static uint64_t versions_at_start;

/* Open connections by event thread: each thread takes the next number the
 * first time it sees a connection. Shows whether connections are spread
 * over the threads (see listen.c). */
#define MAX_EVENT_THREADS 8
static atomic_long thread_connections[MAX_EVENT_THREADS];
static atomic_uint n_event_threads;   /* numbers handed out */
static unsigned event_threads;        /* threads in the pool */
static _Thread_local int event_thread_ix = -1;

/* A connection starts or ends on its event thread; `cls` is the listener,
 * which keeps the count against max_connections. */
static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    if (event_thread_ix < 0)
        event_thread_ix = (int)(atomic_fetch_add(&n_event_threads, 1) % MAX_EVENT_THREADS);
    int started = toe == MHD_CONNECTION_NOTIFY_STARTED;
    atomic_fetch_add(&thread_connections[event_thread_ix], started ? 1 : -1);
    if (started) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? ks_conn_opened(ci->connect_fd) : NULL;
    } else {
        ks_conn_closed(*socket_context);
        *socket_context = NULL;
        ks_listener_closed(cls);
    }
}

/* The connection's request deadline (set in on_connection). */
static ks_conn *conn_clock(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void ks_metrics_subscriptions(int delta)
{
    atomic_fetch_add(&open_subs, delta);
}

static void metrics_count(int route_ix, const char *method, int status, uint64_t us)
{
    if (status < 0 || status > 999)
        status = 999;
    uint64_t key = 1 + ((uint64_t)route_ix << 16 | (uint64_t)method_index(method) << 10 | (uint64_t)status);
    size_t h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 52) % N_COUNTERS;
    for (size_t i = 0; i < N_COUNTERS; i++) {
        struct counter *c = &counters[(h + i) % N_COUNTERS];
        uint_fast64_t k = atomic_load_explicit(&c->key, memory_order_acquire);
        if (k == 0) {
            uint_fast64_t expect = 0;
            if (atomic_compare_exchange_strong(&c->key, &expect, key))
                k = key;
            else
                k = expect;
        }
        if (k == key) {
            atomic_fetch_add_explicit(&c->n, 1, memory_order_relaxed);
            break;
        }
    }
    histo *hs = &histos[route_ix];
    size_t b = 0;
    while (b < N_BUCKETS && us > bucket_us[b])
        b++;
    atomic_fetch_add_explicit(&hs->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hs->sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&hs->count, 1, memory_order_relaxed);
}

static void metrics_reset(void)
{
    for (size_t i = 0; i < N_COUNTERS; i++) {
        atomic_store(&counters[i].key, 0);
        atomic_store(&counters[i].n, 0);
    }
    for (size_t i = 0; i < MAX_METRIC_ROUTES; i++) {
        for (size_t b = 0; b <= N_BUCKETS; b++)
            atomic_store(&histos[i].bucket[b], 0);
        atomic_store(&histos[i].sum_us, 0);
        atomic_store(&histos[i].count, 0);
    }
    atomic_store(&open_subs, 0);
    atomic_store(&in_flight, 0);
    for (size_t i = 0; i < MAX_EVENT_THREADS; i++)
        atomic_store(&thread_connections[i], 0);
    atomic_store(&n_event_threads, 0);
}

static int h_metrics(ks_request *req, ks_response *res)
{
    ks_buf b = {0};
    ks_buf_printf(&b, "# HELP kd_http_requests_total HTTP requests answered, by route, method and status.\n"
                      "# TYPE kd_http_requests_total counter\n");
    for (size_t i = 0; i < N_COUNTERS; i++) {
        uint64_t key = atomic_load_explicit(&counters[i].key, memory_order_acquire);
        uint64_t n = atomic_load_explicit(&counters[i].n, memory_order_relaxed);
        if (!key || !n)
            continue;
        key--;
        ks_buf_printf(&b, "kd_http_requests_total{route=\"%s\",method=\"%s\",status=\"%u\"} %llu\n",
                      metric_names[key >> 16], method_names[(key >> 10) & 63], (unsigned)(key & 1023),
                      (unsigned long long)n);
    }
    ks_buf_printf(&b, "# HELP kd_http_request_duration_seconds Time from a request's first byte seen by the "
                      "handler to its last byte sent, by route.\n"
                      "# TYPE kd_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < n_metric_names; r++) {
        histo *h = &histos[r];
        uint64_t count = atomic_load_explicit(&h->count, memory_order_relaxed);
        if (!count)
            continue;
        uint64_t cum = 0;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
            ks_buf_printf(&b, "kd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                          metric_names[r], (double)bucket_us[i] / 1e6, (unsigned long long)cum);
        }
        cum += atomic_load_explicit(&h->bucket[N_BUCKETS], memory_order_relaxed);
        ks_buf_printf(&b, "kd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", metric_names[r],
                      (unsigned long long)cum);
        ks_buf_printf(&b, "kd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", metric_names[r],
                      (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
        ks_buf_printf(&b, "kd_http_request_duration_seconds_count{route=\"%s\"} %llu\n", metric_names[r],
                      (unsigned long long)cum);
    }
    ks_buf_printf(&b, "# HELP kd_http_requests_in_flight Requests being answered now.\n"
                      "# TYPE kd_http_requests_in_flight gauge\n"
                      "kd_http_requests_in_flight %ld\n",
                  atomic_load(&in_flight));
    ks_buf_printf(&b, "# HELP kd_http_connections Open connections, by event thread.\n"
                      "# TYPE kd_http_connections gauge\n");
    for (unsigned t = 0; t < event_threads; t++)
        ks_buf_printf(&b, "kd_http_connections{thread=\"%u\"} %ld\n", t, atomic_load(&thread_connections[t]));
    ks_buf_printf(&b, "# HELP kd_http_request_timeouts_total Connections cut off because a request did not arrive in "
                      "time (answered 408, unless answered already).\n"
                      "# TYPE kd_http_request_timeouts_total counter\n"
                      "kd_http_request_timeouts_total %llu\n",
                  ks_deadline_cuts());
    if (ks_auth_enabled())
        ks_buf_printf(&b, "# HELP kd_auth_sessions Sessions not expired (with --auth).\n"
                          "# TYPE kd_auth_sessions gauge\n"
                          "kd_auth_sessions %ld\n",
                      ks_auth_sessions());
    ks_buf_printf(&b, "# HELP kd_open_subscriptions Open change streams (GET /api/v1/watch).\n"
                      "# TYPE kd_open_subscriptions gauge\n"
                      "kd_open_subscriptions %ld\n",
                  atomic_load(&open_subs));
    kd_stats st;
    if (kd_stats_get(req->db, &st) == KD_OK) {
        uint64_t lookups = st.cache_hits + st.cache_misses;
        ks_buf_printf(&b,
                      "# HELP kd_writes_total Versions written (tombstones included) since the server started.\n"
                      "# TYPE kd_writes_total counter\n"
                      "kd_writes_total %llu\n"
                      "# HELP kd_fsyncs_total fdatasync calls that made log writes durable (group commit: one per group).\n"
                      "# TYPE kd_fsyncs_total counter\n"
                      "kd_fsyncs_total %llu\n"
                      "# HELP kd_log_bytes Bytes of log segments on disk.\n"
                      "# TYPE kd_log_bytes gauge\n"
                      "kd_log_bytes %llu\n"
                      "# HELP kd_keys Keys ever written (user namespaces).\n"
                      "# TYPE kd_keys gauge\n"
                      "kd_keys %llu\n"
                      "# HELP kd_live_keys Keys whose latest version is not a deletion.\n"
                      "# TYPE kd_live_keys gauge\n"
                      "kd_live_keys %llu\n"
                      "# HELP kd_versions Versions stored, tombstones included.\n"
                      "# TYPE kd_versions gauge\n"
                      "kd_versions %llu\n"
                      "# HELP kd_cache_hits_total Value reads answered from the hot cache.\n"
                      "# TYPE kd_cache_hits_total counter\n"
                      "kd_cache_hits_total %llu\n"
                      "# HELP kd_cache_misses_total Value reads that went to the log.\n"
                      "# TYPE kd_cache_misses_total counter\n"
                      "kd_cache_misses_total %llu\n"
                      "# HELP kd_cache_hit_ratio Hits over lookups since open (0 before any lookup).\n"
                      "# TYPE kd_cache_hit_ratio gauge\n"
                      "kd_cache_hit_ratio %.6f\n",
                      (unsigned long long)(st.versions >= versions_at_start ? st.versions - versions_at_start : 0),
                      (unsigned long long)st.log_syncs, (unsigned long long)st.disk_bytes, (unsigned long long)st.keys,
                      (unsigned long long)st.live_keys, (unsigned long long)st.versions,
                      (unsigned long long)st.cache_hits, (unsigned long long)st.cache_misses,
                      lookups ? (double)st.cache_hits / (double)lookups : 0.0);
        ks_buf_printf(&b,
                      "# HELP kd_memory_budget_bytes The database's memory budget (--max-memory).\n"
                      "# TYPE kd_memory_budget_bytes gauge\n"
                      "kd_memory_budget_bytes %llu\n"
                      "# HELP kd_memory_used_bytes Hot cache, index and vector index bytes held now.\n"
                      "# TYPE kd_memory_used_bytes gauge\n"
                      "kd_memory_used_bytes %llu\n"
                      "# HELP kd_memory_bytes Memory held, by tier: cache (hot values), index (in RAM), "
                      "index_mapped (version metadata used in place from the checkpoint file), vectors.\n"
                      "# TYPE kd_memory_bytes gauge\n"
                      "kd_memory_bytes{tier=\"cache\"} %llu\n"
                      "kd_memory_bytes{tier=\"index\"} %llu\n"
                      "kd_memory_bytes{tier=\"index_mapped\"} %llu\n"
                      "kd_memory_bytes{tier=\"vectors\"} %llu\n"
                      "# HELP kd_cache_capacity_bytes Current capacity of the hot cache (its share of the budget).\n"
                      "# TYPE kd_cache_capacity_bytes gauge\n"
                      "kd_cache_capacity_bytes %llu\n",
                      (unsigned long long)st.memory_budget, (unsigned long long)st.memory_used,
                      (unsigned long long)st.cache_bytes, (unsigned long long)st.index_bytes,
                      (unsigned long long)st.index_mapped_bytes, (unsigned long long)st.vector_index_bytes,
                      (unsigned long long)st.cache_capacity);
    }
    size_t len = b.len;
    ks_json_take(res, 200, ks_buf_take(&b), len);
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 0;
}

static int h_healthz(ks_request *req, ks_response *res)
{
    (void)req;
    static const char ok[] = "{\"status\":\"ok\"}";
    ks_json(res, 200, ok, sizeof ok - 1);
    return 0;
}

/* ------------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------- */

static atomic_int stopping;
static kd_db *serve_db;
static const char *serve_dir;
static const char *serve_backup_dir;
static const ks_config *serve_cfg;

int ks_stopping(void)
{
    return atomic_load(&stopping);
}

/* ------------------------------------------------------------------------
 * Workers: threads for whatever may block, off the event threads
 *
 * libmicrohttpd runs a few event threads (a thread pool with poll), each
 * serving many connections. What may take long runs on a worker thread
 * instead while its connection is suspended: every handler but the quick
 * key routes, and each wait of a change stream for its next events. A
 * worker is started when a job finds none idle, so a slow job never
 * delays another; up to WORKERS_IDLE idle ones are kept for the next jobs.
 * ---------------------------------------------------------------------- */

typedef struct work {
    struct work *next;
    void (*run)(struct work *w);
} work;

#define WORKERS_IDLE 8

static pthread_mutex_t wk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wk_cv = PTHREAD_COND_INITIALIZER;      /* a job, or quit */
static pthread_cond_t wk_gone_cv = PTHREAD_COND_INITIALIZER; /* a worker left */
static work *wk_head, *wk_tail;
static size_t wk_queued, wk_idle, wk_threads;
static int wk_quit;

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wk_mu);
    for (;;) {
        while (!wk_head && !wk_quit && wk_idle < WORKERS_IDLE) {
            wk_idle++;
            pthread_cond_wait(&wk_cv, &wk_mu);
            wk_idle--;
        }
        if (!wk_head)
            break; /* quitting, or enough idle workers already */
        work *w = wk_head;
        wk_head = w->next;
        if (!wk_head)
            wk_tail = NULL;
        wk_queued--;
        pthread_mutex_unlock(&wk_mu);
        w->run(w);
        pthread_mutex_lock(&wk_mu);
    }
    wk_threads--;
    pthread_cond_broadcast(&wk_gone_cv);
    pthread_mutex_unlock(&wk_mu);
    return NULL;
}

/* Queue w; wake an idle worker, or start one when every idle worker is
 * already claimed by a queued job. */
static void work_submit(work *w)
{
    w->next = NULL;
    pthread_mutex_lock(&wk_mu);
    if (wk_tail)
        wk_tail->next = w;
    else
        wk_head = w;
    wk_tail = w;
    wk_queued++;
    int started = 0;
    if (wk_queued > wk_idle) {
        pthread_attr_t at;
        pthread_t t;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&t, &at, worker_main, NULL) == 0;
        pthread_attr_destroy(&at);
        if (started)
            wk_threads++;
        else
            ks_log(KD_LOG_WARN, "cannot start a worker thread: the request waits for a busy one");
    }
    if (!started)
        pthread_cond_signal(&wk_cv);
    pthread_mutex_unlock(&wk_mu);
}

/* When the server stops (no job left): let the workers go, wait for them. */
static void workers_stop(void)
{
    pthread_mutex_lock(&wk_mu);
    wk_quit = 1;
    pthread_cond_broadcast(&wk_cv);
    while (wk_threads)
        pthread_cond_wait(&wk_gone_cv, &wk_mu);
    wk_quit = 0;
    pthread_mutex_unlock(&wk_mu);
}

/* Connections suspended now (each resumed later by its job): the server
 * stops only when there are none. */
static atomic_long n_suspended;

static void suspend(struct MHD_Connection *mc)
{
    atomic_fetch_add(&n_suspended, 1);
    MHD_suspend_connection(mc);
}

static void resume(struct MHD_Connection *mc)
{
    MHD_resume_connection(mc);
    atomic_fetch_sub(&n_suspended, 1);
}

enum { PH_READ, PH_WORKER, PH_DURABLE, PH_READY };

typedef struct param {
    char *name, *value;
} param;

/* Everything about one request; ks_request.conn points here. */
typedef struct req_state {
    int started;       /* the access handler has seen the headers */
    const char *raw_uri; /* the request target as received (path?query), in MHD's buffer */
    size_t raw_len;      /* its strlen: shorter than the target when it holds a NUL */
    struct MHD_Connection *mc;
    ks_conn *clock;    /* the connection's request deadline (deadline.c) */
    ks_request req;
    char *method;
    char *path;
    const route *rt;
    int metric;
    int status;        /* what was answered, for the log and metrics */
    int responded;     /* a response is queued */
    int bad_params;
    /* An error found when the headers came in (bad path, no route, wrong
     * method), answered once the body is read so keep-alive survives. */
    size_t dropped;    /* body bytes dropped after an early error */
    int closed_early;  /* answered in the middle of the body (413), connection closed */
    int early_status;
    const char *early_code;
    char early_msg[256];
    char allow[160];
    struct timespec start;
    ks_buf body;
    param *params;
    size_t nparams;
    const char *var_names[MAX_SEGS];
    const char *var_values[MAX_SEGS];
    size_t nvars;
    /* Once the whole request is in: answered on the event thread (PH_READ),
     * or the connection is suspended while a worker runs the handler
     * (PH_WORKER) or while the write it made becomes durable (PH_DURABLE);
     * then resumed to send st->res (PH_READY). */
    int phase;
    ks_response res;
    int hrc;              /* what the handler returned */
    work job;             /* the handler's run on a worker */
    kd_db *ticket_db;     /* a deferred write (kd_defer_end): its database */
    uint64_t ticket;      /* and ticket, 0 = none */
    int sync_rc;          /* kd_sync_ticket's answer */
    struct req_state *dq_next; /* in the durability queue */
} req_state;

const char *ks_param(const ks_request *r, const char *name)
{
    const req_state *st = r->conn;
    for (size_t i = 0; i < st->nparams; i++)
        if (strcmp(st->params[i].name, name) == 0)
            return st->params[i].value;
    return NULL;
}

const char *ks_header(const ks_request *r, const char *name)
{
    const req_state *st = r->conn;
    return MHD_lookup_connection_value(st->mc, MHD_HEADER_KIND, name);
}

int ks_client_net(const ks_request *r, uint8_t net[16])
{
    const req_state *st = r->conn;
    const union MHD_ConnectionInfo *ci = st ? MHD_get_connection_info(st->mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    memset(net, 0, 16);
    if (sa && sa->sa_family == AF_INET) {
        memcpy(net, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, v4mapped, 12) == 0) { /* an IPv4 client of a dual-stack socket */
            memcpy(net, a + 12, 4);
        } else {
            net[4] = 6; /* apart from every IPv4 address */
            memcpy(net + 8, a, 8);
        }
        return 0;
    }
    return -1;
}

const char *ks_var(const ks_request *r, const char *name)
{
    const req_state *st = r->conn;
    for (size_t i = 0; i < st->nvars; i++)
        if (strcmp(st->var_names[i], name) == 0)
            return st->var_values[i];
    return NULL;
}

/* A namespace or key over its limit, in the path or in a parameter: 400
 * too_big on every route, as a write of it is, and not a miss (a read
 * would answer 404 or an empty list, as if such a key could exist).
 * 1 with the message in msg, 0 when every name is within its limit. */
static int name_over_limit(const req_state *st, char *msg, size_t size)
{
    static const struct {
        const char *name, *what;
        int in_path, is_ns;
    } names[] = {
        {"ns", "namespace", 1, 1}, {"key", "key", 1, 0},       {"ns", "ns", 0, 1},
        {"key", "key", 0, 0},      {"prefix", "prefix", 0, 0}, {"after", "after", 0, 0},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = names[i].in_path ? ks_var(&st->req, names[i].name) : ks_param(&st->req, names[i].name);
        size_t max = names[i].is_ns ? kd_max_namespace_len() : kd_max_key_len(), n = v ? strlen(v) : 0;
        if (n > max) {
            snprintf(msg, size, "%s%s is %zu bytes; the limit is %zu", names[i].in_path ? "" : "parameter ",
                     names[i].what, n, max);
            return 1;
        }
    }
    return 0;
}

/* libmicrohttpd calls this to unescape the path and the query arguments:
 * it does nothing, so the router sees the raw path (and decodes each
 * segment itself) and ks_param decodes the arguments. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static enum MHD_Result collect_param(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    req_state *st = cls;
    char *n = ks_percent_decode(key, strlen(key));
    char *v = ks_percent_decode(value ? value : "", value ? strlen(value) : 0);
    if (!n || !v) {
        free(n);
        free(v);
        st->bad_params = 1;
        return MHD_NO;
    }
    st->params = ks_xrealloc(st->params, (st->nparams + 1) * sizeof *st->params);
    st->params[st->nparams].name = n;
    st->params[st->nparams].value = v;
    st->nparams++;
    return MHD_YES;
}

/* A request's state is a few KiB: too big for malloc's per-thread cache,
 * and allocating it took ~7% of a request's time (malloc consolidating its
 * free lists each time). Each event thread keeps the states it freed for
 * its next requests instead (up to STATE_CACHE; freed when it exits). */
#define STATE_CACHE 64

typedef struct state_cache {
    size_t n;
    req_state *free[STATE_CACHE];
} state_cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_free(void *arg)
{
    state_cache *c = arg;
    for (size_t i = 0; i < c->n; i++)
        free(c->free[i]);
    free(c);
}

static void cache_key_init(void)
{
    if (pthread_key_create(&cache_key, cache_free) != 0)
        abort(); /* no key: the server cannot run (like an allocation failure) */
}

static state_cache *my_cache(void)
{
    pthread_once(&cache_once, cache_key_init);
    state_cache *c = pthread_getspecific(cache_key);
    if (!c) {
        c = ks_xmalloc(sizeof *c);
        c->n = 0;
        if (pthread_setspecific(cache_key, c) != 0) {
            free(c);
            return NULL;
        }
    }
    return c;
}

static req_state *state_get(void)
{
    state_cache *c = my_cache();
    req_state *st = c && c->n ? c->free[--c->n] : ks_xmalloc(sizeof *st);
    memset(st, 0, sizeof *st);
    return st;
}

static void state_put(req_state *st)
{
    state_cache *c = my_cache();
    if (c && c->n < STATE_CACHE)
        c->free[c->n++] = st;
    else
        free(st);
}

static void state_free(req_state *st)
{
    ks_auth_request_free(&st->req);
    for (size_t i = 0; i < st->req.nseg; i++)
        free(st->req.seg[i]);
    free(st->req.seg);
    for (size_t i = 0; i < st->nparams; i++) {
        free(st->params[i].name);
        free(st->params[i].value);
    }
    free(st->params);
    free(st->body.p);
    /* an answer prepared but never sent (the connection ended first) */
    free(st->res.body);
    free(st->res.location);
    if (st->res.stream_free)
        st->res.stream_free(st->res.stream_ctx);
    free(st->method);
    free(st->path);
    state_put(st);
}

/* Splitting the path, matching routes and the Allow list of a 405 are in
 * parse.c (ks_split_path, ks_route_find, ks_allowed_methods). */

/* ------------------------------------------------------------------------
 * Responses
 * ---------------------------------------------------------------------- */

typedef struct stream_state {
    struct MHD_Connection *mc;
    int (*fn)(void *ctx, char **out, size_t *len);
    void (*free_fn)(void *ctx);
    void *ctx;
    char *buf;
    size_t len, off;
    int ended;
    int failed;  /* the client went away, or the stream failed with nothing to send */
    work job;    /* a call of fn on a worker */
} stream_state;

/* Has the client closed its end? (Without this, a stream that has nothing
 * to send would notice only at its next keep-alive comment.) */
static int client_gone(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return 0;
    struct pollfd pfd = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* On a worker, with the connection suspended: the stream's next bytes
 * (fn may wait about a second for events). */
static void stream_fetch(work *w)
{
    stream_state *s = (stream_state *)((char *)w - offsetof(stream_state, job));
    if (client_gone(s->mc)) {
        s->failed = 1;
    } else {
        size_t len = 0;
        int rc = s->fn(s->ctx, &s->buf, &len);
        s->len = s->buf ? len : 0;
        s->off = 0;
        if (rc != 0)
            s->ended = 1;
        if (rc < 0 && s->len == 0)
            s->failed = 1;
    }
    resume(s->mc);
}

/* libmicrohttpd asks for more of the stream (on an event thread): what is
 * at hand, or, when nothing is, a worker is sent for more and the
 * connection suspended until it has it (0: nothing yet). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_state *s = cls;
    if (s->off == s->len) {
        if (s->failed)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->ended || ks_stopping())
            return MHD_CONTENT_READER_END_OF_STREAM;
        s->job.run = stream_fetch;
        suspend(s->mc);
        work_submit(&s->job);
        return 0;
    }
    size_t n = s->len - s->off;
    if (n > max)
        n = max;
    memcpy(buf, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream_state *s = cls;
    if (s->free_fn)
        s->free_fn(s->ctx);
    free(s->buf);
    free(s);
}

static enum MHD_Result send_response(req_state *st, ks_response *res, const char *allow)
{
    struct MHD_Response *r;
    int status = res->status ? res->status : 200;
    const char *ctype = res->content_type;
    int stream_headers = 0; /* an event stream's headers, with or without the stream */
    if (res->stream && strcmp(st->method, "HEAD") == 0) {
        /* HEAD gets the stream's headers and nothing else: libmicrohttpd
         * would still end a chunked body ("0\r\n\r\n"), bytes the client
         * then reads as the start of its next response. */
        if (res->stream_free)
            res->stream_free(res->stream_ctx);
        res->stream = NULL;
        res->stream_free = NULL;
        res->stream_ctx = NULL;
        stream_headers = 1;
    }
    if (res->stream) {
        stream_state *s = ks_xmalloc(sizeof *s);
        memset(s, 0, sizeof *s);
        s->mc = st->mc;
        s->fn = res->stream;
        s->free_fn = res->stream_free;
        s->ctx = res->stream_ctx;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
        if (!r) {
            stream_free(s);
        } else {
            stream_headers = 1;
        }
        res->stream = NULL; /* the stream is the response's now (or freed) */
        res->stream_free = NULL;
        res->stream_ctx = NULL;
        free(res->body);
        res->body = NULL;
    } else {
        r = MHD_create_response_from_buffer(res->body_len, res->body ? res->body : (void *)"",
                                            res->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!r)
            free(res->body);
        res->body = NULL;
    }
    if (!r) {
        free(res->location);
        res->location = NULL;
        return MHD_NO;
    }
    if (stream_headers) {
        if (!ctype || strcmp(ctype, "application/json") == 0)
            ctype = "text/event-stream";
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype ? ctype : "application/json");
    if (res->etag[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, res->etag);
    if (res->location)
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, res->location);
    free(res->location);
    res->location = NULL;
    if (res->www_authenticate[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, res->www_authenticate);
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (ks_stopping())
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    st->status = status;
    st->responded = 1;
    enum MHD_Result ret = MHD_queue_response(st->mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(req_state *st, int status, const char *code, const char *msg, const char *allow)
{
    ks_response res;
    memset(&res, 0, sizeof res);
    ks_error(&res, status, code, "%s", msg);
    return send_response(st, &res, allow);
}

/* Is the media type of a Content-Type header application/json? */
static int is_json_type(const char *ct)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t l = strcspn(ct, "; \t");
    return l == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

/* Is a charset name one whose text is UTF-8 as it is (UTF-8 itself, its
 * common alias, or ASCII, a subset)? */
static int utf8_charset(const char *v, size_t len)
{
    static const char *const names[] = {"utf-8", "utf8", "us-ascii"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (len == strlen(names[i]) && strncasecmp(v, names[i], len) == 0)
            return 1;
    return 0;
}

/* Does a Content-Type header declare a charset whose text is not UTF-8?
 * Its parameters follow the media type as `; name=value` or
 * `; name="quoted value"` (a quoted value may hold ';' and \-escapes);
 * every charset parameter is checked. */
static int foreign_charset(const char *ct)
{
    const char *p = ct + strcspn(ct, ";");
    while (*p == ';') {
        p++;
        p += strspn(p, " \t");
        const char *name = p;
        size_t name_len = strcspn(p, "=; \t");
        p += name_len;
        p += strspn(p, " \t");
        char value[16];
        size_t len = 0, full = 0; /* full: the value's whole length */
        if (*p == '=') {
            p++;
            p += strspn(p, " \t");
            int quoted = *p == '"';
            for (p += quoted; *p && (quoted ? *p != '"' : *p != ';' && *p != ' ' && *p != '\t'); p++, full++) {
                if (quoted && *p == '\\' && p[1])
                    p++;
                if (len < sizeof value)
                    value[len++] = *p;
            }
            p += quoted && *p == '"';
        }
        p += strcspn(p, ";");
        if (name_len == 7 && strncasecmp(name, "charset", 7) == 0 && (full != len || !utf8_charset(value, len)))
            return 1;
    }
    return 0;
}

/* Is a Content-Encoding header anything but identity (a compressed body)? */
static int encoded(const char *ce)
{
    for (const char *p = ce; *p;) {
        p += strspn(p, " \t,");
        size_t l = strcspn(p, " \t,");
        if (l && !(l == 8 && strncasecmp(p, "identity", 8) == 0))
            return 1;
        p += l;
    }
    return 0;
}

/* Why the body cannot be read as JSON in UTF-8 as sent (NULL: it can),
 * looking at every Content-Type and Content-Encoding field, repeated ones
 * too. */
static enum MHD_Result body_form_field(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
    (void)kind;
    const char **problem = cls;
    if (!value)
        return MHD_YES;
    if (strcasecmp(name, MHD_HTTP_HEADER_CONTENT_TYPE) == 0) {
        if (!is_json_type(value))
            *problem = "the body must be JSON (Content-Type: application/json)";
        else if (foreign_charset(value))
            *problem = "the body must be JSON in UTF-8: a Content-Type charset other than utf-8 is not taken";
    } else if (strcasecmp(name, MHD_HTTP_HEADER_CONTENT_ENCODING) == 0 && encoded(value)) {
        *problem = "the body must be sent as is: a Content-Encoding (gzip, br, deflate, ...) is not taken";
    }
    return *problem ? MHD_NO : MHD_YES;
}

static const char *body_form_problem(struct MHD_Connection *mc)
{
    const char *problem = NULL;
    MHD_get_connection_values(mc, MHD_HEADER_KIND, body_form_field, &problem);
    return problem;
}

/* ------------------------------------------------------------------------
 * Durability: key writes under sync=always are made with deferred
 * durability on the event thread (kd_defer_begin); their connections wait,
 * suspended, in this queue. One thread syncs up to the newest ticket
 * queued (one fsync for all of them: group commit) and resumes every
 * connection it covers; writes arriving meanwhile form the next group.
 * ---------------------------------------------------------------------- */

static pthread_mutex_t dq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dq_cv = PTHREAD_COND_INITIALIZER;
static struct req_state *dq_head;
static int dq_quit;
static pthread_t dq_thread;
static int dq_running;
/* kd_errmsg of the last failed kd_sync_ticket (messages are per thread);
 * written by the durability thread before it resumes the connections. */
static char dq_errmsg[512];

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Which writes sync on their own event thread (lone.h, durable_inline). */
static ks_lone dq_lone;

static void *durable_main(void *arg)
{
    (void)arg;
    size_t last_group = 0;
    int64_t last_sync_ns = 0;
    pthread_mutex_lock(&dq_mu);
    for (;;) {
        while (!dq_head && !dq_quit)
            pthread_cond_wait(&dq_cv, &dq_mu);
        if (!dq_head)
            break;
        /* With concurrent writers (the last group had several), let the
         * group fill for half as long as the last sync took (at most 1 ms):
         * fewer, larger groups cost less CPU and fewer wake-ups per write
         * (without this wait, 64 connections gave ~10 writes per fsync and
         * a lower rate). Half, not the whole: the sleep overshoots by a
         * quarter of a millisecond here, and once connections were spread
         * over both event threads the whole length measured ~8% slower
         * (docs/BENCH.md). A lone writer (the last group was one) is not
         * delayed. */
        if (last_group > 1 && !dq_quit) {
            int64_t gather_ns = last_sync_ns / 2;
            struct timespec wait = {0, gather_ns < 1000000 ? (long)gather_ns : 1000000L};
            pthread_mutex_unlock(&dq_mu);
            nanosleep(&wait, NULL);
            pthread_mutex_lock(&dq_mu);
        }
        req_state *list = dq_head;
        dq_head = NULL;
        ks_lone_mark mark = ks_lone_sync_begin(&dq_lone);
        pthread_mutex_unlock(&dq_mu);
        last_group = 0;
        for (req_state *e = list; e; e = e->dq_next)
            last_group++;
        const void *list_conn = list->mc;
        int64_t t0 = now_ns();
        while (list) {
            /* the newest ticket of the first entry's database covers all of
             * that database's entries (the server has one database, whose
             * workspaces share its log) */
            kd_db *db = list->ticket_db;
            uint64_t upto = 0;
            for (req_state *e = list; e; e = e->dq_next)
                if (e->ticket_db == db && e->ticket > upto)
                    upto = e->ticket;
            int rc = kd_sync_ticket(db, upto);
            if (rc != KD_OK)
                snprintf(dq_errmsg, sizeof dq_errmsg, "%s", kd_errmsg(db));
            req_state **pp = &list;
            while (*pp) {
                req_state *e = *pp;
                if (e->ticket_db != db) {
                    pp = &e->dq_next;
                    continue;
                }
                *pp = e->dq_next;
                e->sync_rc = rc;
                e->phase = PH_READY;
                resume(e->mc);
            }
        }
        last_sync_ns = now_ns() - t0;
        pthread_mutex_lock(&dq_mu);
        ks_lone_sync_end(&dq_lone, mark, last_group, last_group == 1 ? list_conn : NULL);
    }
    pthread_mutex_unlock(&dq_mu);
    return NULL;
}

/* A lone writer (lone.h: no sync running, none queued, the last sync had
 * no company) syncs its own write on its event thread, as a thread per
 * connection did: handing it to the durability thread and back costs two
 * thread wake-ups per write, which for one connection is most of a
 * durable PUT beside its fsync. The event thread's other connections wait
 * for that one fsync. Returns 1 when it synced (st->sync_rc set), 0 when
 * the write must queue. */
static int durable_inline(req_state *st)
{
    ks_lone_mark mark = {0, 0, 0};
    ks_lone_started(&dq_lone);
    pthread_mutex_lock(&dq_mu);
    int lone = ks_lone_try(&dq_lone, !dq_head, st->mc, &mark);
    pthread_mutex_unlock(&dq_mu);
    if (!lone)
        return 0;
    st->sync_rc = kd_sync_ticket(st->ticket_db, st->ticket);
    if (st->sync_rc != KD_OK) {
        pthread_mutex_lock(&dq_mu);
        snprintf(dq_errmsg, sizeof dq_errmsg, "%s", kd_errmsg(st->ticket_db));
        pthread_mutex_unlock(&dq_mu);
    }
    pthread_mutex_lock(&dq_mu);
    ks_lone_sync_end(&dq_lone, mark, 1, st->mc);
    pthread_mutex_unlock(&dq_mu);
    return 1;
}

static void durable_wait(req_state *st)
{
    pthread_mutex_lock(&dq_mu);
    st->dq_next = dq_head;
    dq_head = st;
    pthread_cond_signal(&dq_cv);
    pthread_mutex_unlock(&dq_mu);
}

static int durable_start(void)
{
    dq_quit = 0;
    dq_running = pthread_create(&dq_thread, NULL, durable_main, NULL) == 0;
    return dq_running ? 0 : -1;
}

static void durable_stop(void)
{
    if (!dq_running)
        return;
    pthread_mutex_lock(&dq_mu);
    dq_quit = 1;
    pthread_cond_signal(&dq_cv);
    pthread_mutex_unlock(&dq_mu);
    pthread_join(dq_thread, NULL);
    dq_running = 0;
}

/* ------------------------------------------------------------------------
 * The access handler: called once when the headers are in, once per
 * piece of the body, and once more when the body is complete.
 * ---------------------------------------------------------------------- */

/* Our limits on what comes before the body (see ks_serve on the memory
 * libmicrohttpd gives a connection: both fit in it together, with room, so
 * a request over them reaches on_request and gets a JSON 414 / 431). */
#define KS_MAX_TARGET (16 * 1024)       /* request target (path and query) */
#define KS_MAX_HEADER_BYTES (8 * 1024)  /* header lines ("Name: value\r\n") in all */
#define KS_MAX_HEADERS 64               /* header fields */

typedef struct header_size {
    size_t bytes, count;
    const char *length;  /* the first Content-Length */
    int length_conflict; /* another Content-Length that differs, or one beside Transfer-Encoding */
    int chunked;         /* a Transfer-Encoding was given */
} header_size;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    header_size *h = cls;
    h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
    h->count++;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (h->length && strcmp(h->length, value ? value : ""))
            h->length_conflict = 1;
        if (!h->length)
            h->length = value ? value : "";
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        h->chunked = 1;
    }
    if (h->length && h->chunked)
        h->length_conflict = 1;
    return MHD_YES;
}

/* Answer `status` with our JSON error in the middle of a request body,
 * where libmicrohttpd accepts no response: written to the socket here
 * (the event thread serving this connection is the only one touching it
 * now, and nothing of this request was sent yet), with "Connection: close";
 * the caller then returns MHD_NO
 * so that libmicrohttpd closes the connection without reading the rest. */
static void answer_and_close(req_state *st, int status, const char *code, const char *msg)
{
    st->status = status;
    st->responded = 1;
    st->closed_early = 1;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(st->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci || !ks_conn_answered(st->clock)) /* cut off: the 408 went out */
        return;
    ks_response res;
    memset(&res, 0, sizeof res);
    ks_error(&res, status, code, "%s", msg);
    const char *reason = MHD_get_reason_phrase_for((unsigned)status);
    ks_buf b = {0};
    ks_buf_printf(&b,
                  "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\n\r\n",
                  status, reason && *reason ? reason : "Error", res.body_len);
    ks_buf_add(&b, res.body ? res.body : "", res.body_len);
    free(res.body);
    /* The socket is non-blocking: wait for room, at most a few seconds. */
    size_t off = 0;
    for (int waits = 0; off < b.len && waits < 50;) {
        ssize_t n = send(ci->connect_fd, b.p + off, b.len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            struct pollfd pfd = {.fd = ci->connect_fd, .events = POLLOUT};
            poll(&pfd, 1, 100);
            waits++;
        } else {
            break;
        }
    }
    shutdown(ci->connect_fd, SHUT_WR);
    free(b.p);
}

/* Called by libmicrohttpd with the request target (path and query, NUL-
 * terminated where the HTTP version began) before anything else: the
 * request's state starts here, and its start time. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *mc)
{
    (void)cls;
    req_state *st = state_get();
    clock_gettime(CLOCK_MONOTONIC, &st->start);
    st->mc = mc;
    st->clock = conn_clock(mc);
    st->raw_uri = uri;
    st->raw_len = strlen(uri);
    return st;
}

/* Does the request target hold a NUL byte? libmicrohttpd cuts the target
 * (and so the path) at it without saying so; but the HTTP version follows
 * the target in its buffer, so a target whose strlen stops short of the
 * version had a NUL. (When the version is elsewhere, nothing is known.) */
static int target_has_nul(const req_state *st, const char *version)
{
    const char *end = st->raw_uri + st->raw_len;
    if (version <= st->raw_uri || version > st->raw_uri + 128 * 1024)
        return 0;
    return version != end + 1 && version[-1] == '\0';
}

/* Routes answered on the event thread: quick and never waiting (a key
 * write under sync=always defers its fsync to the durability thread).
 * Workspace routes are not: their first request opens the workspace. */
static int runs_inline(const req_state *st)
{
    const char *name = st->rt->r->name;
    if (ks_var(&st->req, "ws"))
        return 0;
    return !strcmp(name, "key_get") || !strcmp(name, "key_put") || !strcmp(name, "key_delete") ||
           !strcmp(name, "healthz");
}

/* The query parameters each route takes, by route name (the same for its
 * /api/v1/ws/{ws}/ form): any other is 400, as an unknown member of a JSON
 * body is, so a typo (?limt=) is never silently ignored. A route not
 * listed here is not checked: /healthz and /metrics (probes and scrapers
 * may add parameters of their own, a cache buster say). */
static const struct {
    const char *route;
    const char *params; /* ", "-separated; "" = none */
} route_params[] = {
    {"status", ""},
    {"namespaces", ""},
    {"keys_list", "prefix, after, limit"},
    {"key_get", "at"},
    {"key_put", ""},
    {"key_delete", ""},
    {"key_history", "from, to, limit, order"},
    {"key_diff", "from, to"},
    {"batch", ""},
    {"watch", "ns, key, types, filter, queue, last_event_id"},
    {"verify", ""},
    {"scan", "prefix, after, limit, at"},
    {"changes", "ns, since, limit"},
    {"import", ""},
    {"workspace_import", ""},
    {"backup", ""},
    {"vector_put", ""},
    {"vector_get", "at"},
    {"vector_delete", ""},
    {"vector_history", "from, to, limit, order"},
    {"vector_search", ""},
    {"vector_search_all", ""},
    {"vector_stats", ""},
    {"vector_stats_all", ""},
    {"retention_list", ""},
    {"retention_get", ""},
    {"retention_set", ""},
    {"retention_clear", ""},
    {"compact", ""},
    {"consolidate", ""},
    {"workspaces_list", ""},
    {"workspace_create", ""},
    {"workspace_drop", ""},
    {"auth_register", ""},
    {"auth_challenge", ""},
    {"auth_login", ""},
    {"auth_logout", ""},
    {"auth_whoami", ""},
    {"auth_grants_list", ""},
    {"auth_grant_create", ""},
    {"auth_grant_revoke", ""},
    {"query", ""},
    {"query_get", "filter, sort, select, offset, limit, at, aggregate, group_by"},
    {"history_query", ""},
    {"views_list", ""},
    {"view_create", ""},
    {"view_get", ""},
    {"view_delete", ""},
    {"view_rows", "offset, limit"},
    {"view_refresh", ""},
    {"indexes_list", "ns"},
    {"index_create", ""},
    {"index_drop", ""},
};

/* Is `name` one of the ", "-separated words of list? */
static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ",");
        if (l == n && memcmp(p, name, n) == 0)
            return 1;
        p += l;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

/* 0, or -1 after answering 400 for the first parameter the route does not
 * take. */
static int check_params(const req_state *st, ks_response *res)
{
    if (st->nparams == 0) /* most requests: nothing to look up */
        return 0;
    const char *rname = st->rt->r->name, *allowed = NULL;
    for (size_t i = 0; i < sizeof route_params / sizeof route_params[0] && !allowed; i++)
        if (strcmp(route_params[i].route, rname) == 0)
            allowed = route_params[i].params;
    if (!allowed)
        return 0;
    for (size_t i = 0; i < st->nparams; i++) {
        const char *name = st->params[i].name;
        if (in_list(allowed, name))
            continue;
        if (*allowed)
            ks_error(res, 400, "invalid", "unknown query parameter '%.100s' (this route takes %s)", name, allowed);
        else
            ks_error(res, 400, "invalid", "unknown query parameter '%.100s' (this route takes none)", name);
        return -1;
    }
    return 0;
}

/* Run the route's handler into st->res; with defer, a write it makes under
 * sync=always (or the auth check, which may delete an expired session)
 * leaves its ticket in st->ticket instead of waiting. */
static void run_route(req_state *st, int defer)
{
    ks_response *res = &st->res;
    if (defer)
        kd_defer_begin(st->req.db);
    /* A /api/v1/ws/{ws}/… route runs on that workspace's handle. */
    const char *ws = ks_var(&st->req, "ws");
    int wrc = KD_OK;
    char why[512] = "";
    if (ws && !(st->req.ws = ws, st->req.db = ks_ws_handle(serve_db, ws, &wrc))) {
        st->req.db = serve_db;
        snprintf(why, sizeof why, "%s", kd_errmsg(serve_db)[0] ? kd_errmsg(serve_db) : kd_strerror(wrc));
    }
    /* With --auth, whether a workspace exists is told only to those who
     * hold something in it (a bad name is refused as such first). */
    int bad_name = wrc == KD_EINVALID || wrc == KD_ETOOBIG || wrc == KD_ERESERVED;
    if (ws && ks_auth_enabled() && !bad_name && ks_auth_workspace_gate(&st->req, res, ws) != 0) {
        /* answered */
    } else if (wrc != KD_OK) {
        char code[32];
        ks_error(res, ks_kd_status(wrc), ks_kd_code(wrc, code, sizeof code), "%s", why);
    } else if ((!ks_auth_enabled() || ks_auth_gate(&st->req, res, st->rt->r->name) == 0) &&
               check_params(st, res) == 0) {
        st->hrc = st->rt->r->handler(&st->req, res);
    }
    if (defer) {
        st->ticket = kd_defer_end(serve_db);
        st->ticket_db = serve_db;
    }
}

/* Finish the answer (after a deferred write became durable: its finish
 * step; or an error when it could not) and queue it. */
static enum MHD_Result answer(req_state *st)
{
    ks_response *res = &st->res;
    if (st->ticket && st->sync_rc != KD_OK) {
        if (res->stream_free)
            res->stream_free(res->stream_ctx);
        free(res->body);
        free(res->location);
        memset(res, 0, sizeof *res);
        char code[32];
        ks_error(res, ks_kd_status(st->sync_rc), ks_kd_code(st->sync_rc, code, sizeof code), "%s",
                 dq_errmsg[0] ? dq_errmsg : kd_strerror(st->sync_rc));
    } else if (res->finish) {
        void (*fin)(ks_request *, ks_response *) = res->finish;
        res->finish = NULL;
        fin(&st->req, res);
    }
    if (st->hrc != 0 && !res->body && !res->stream)
        ks_error(res, 500, "internal", "the handler failed");
    return send_response(st, res, NULL);
}

/* On a worker: the handler, then the connection resumes to answer. */
static void handler_job(work *w)
{
    req_state *st = (req_state *)((char *)w - offsetof(req_state, job));
    run_route(st, 0);
    if (st->res.finish) {
        void (*fin)(ks_request *, ks_response *) = st->res.finish;
        st->res.finish = NULL;
        fin(&st->req, &st->res);
    }
    st->phase = PH_READY;
    resume(st->mc);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)cls;
    req_state *st = *con_cls;
    if (!st) /* no URI callback (cannot happen): start here */
        *con_cls = st = on_uri(NULL, url, mc);
    if (!st->started) {
        st->started = 1;
        ks_conn_headers_in(st->clock);
        atomic_fetch_add(&in_flight, 1);
        st->method = ks_xstrdup(method);
        st->path = ks_xstrdup(url);
        st->metric = M_INVALID;
        st->req.method = st->method;
        st->req.path = st->path;
        st->req.db = serve_db;
        st->req.db_dir = serve_dir;
        st->req.backup_dir = serve_backup_dir;
        st->req.conn = st;

        header_size hs = {0, 0, NULL, 0, 0};
        MHD_get_connection_values(mc, MHD_HEADER_KIND, count_header, &hs);
        int over = st->raw_len > KS_MAX_TARGET || hs.bytes > KS_MAX_HEADER_BYTES || hs.count > KS_MAX_HEADERS;
        int rc = over ? -3 : target_has_nul(st, version) ? -1 : ks_split_path(&st->req, url);
        if (over && st->raw_len > KS_MAX_TARGET) {
            st->early_status = 414;
            st->early_code = "uri_too_long";
            snprintf(st->early_msg, sizeof st->early_msg,
                     "the request target (path and query) is longer than %d bytes", KS_MAX_TARGET);
        } else if (over) {
            st->early_status = 431;
            st->early_code = "headers_too_large";
            snprintf(st->early_msg, sizeof st->early_msg,
                     "the header fields are over %d bytes in all, or more than %d of them", KS_MAX_HEADER_BYTES,
                     KS_MAX_HEADERS);
        } else if (rc == -1) {
            st->early_status = 400;
            st->early_code = "invalid";
            snprintf(st->early_msg, sizeof st->early_msg, "bad percent-encoding, a NUL byte or invalid UTF-8 in the path");
        } else {
            MHD_get_connection_values(mc, MHD_GET_ARGUMENT_KIND, collect_param, st);
            if (st->bad_params) {
                st->early_status = 400;
                st->early_code = "invalid";
                snprintf(st->early_msg, sizeof st->early_msg,
                         "bad percent-encoding, a NUL byte or invalid UTF-8 in the query string");
            }
        }
        int path_matched = 0;
        st->rt = rc == 0 ? ks_route_find(routes, n_routes, st->method, st->req.seg, st->req.nseg, &path_matched) : NULL;
        if (st->early_status) {
            st->rt = NULL;
        } else if (!st->rt && path_matched) {
            ks_allowed_methods(routes, n_routes, st->req.seg, st->req.nseg, st->allow, sizeof st->allow);
            st->metric = M_NOT_FOUND;
            for (size_t i = 0; i < n_routes; i++)
                if (ks_route_match(&routes[i], st->req.seg, st->req.nseg) >= 0) {
                    st->metric = routes[i].metric;
                    break;
                }
            st->early_status = 405;
            st->early_code = "method_not_allowed";
            snprintf(st->early_msg, sizeof st->early_msg, "method %.20s is not allowed here (allowed: %s)", method,
                     st->allow);
        } else if (!st->rt) {
            st->metric = M_NOT_FOUND;
            st->early_status = 404;
            st->early_code = "not_found";
            snprintf(st->early_msg, sizeof st->early_msg, "no such route");
        } else {
            st->metric = st->rt->metric;
            for (size_t i = 0; i < st->rt->nseg; i++)
                if (st->rt->vars[i]) {
                    st->var_names[st->nvars] = st->rt->vars[i];
                    st->var_values[st->nvars] = st->req.seg[i];
                    st->nvars++;
                }
            if (name_over_limit(st, st->early_msg, sizeof st->early_msg)) {
                st->early_status = 400;
                st->early_code = "too_big";
            }
        }
        if (hs.length_conflict) {
            /* Where the body ends is ambiguous: a proxy in front may read
             * it otherwise than libmicrohttpd (which takes the first), and
             * what one takes for body the other takes for the next request
             * (RFC 9112 §6.3). Answered and closed, nothing read. */
            if (!ks_conn_answered(st->clock))
                return MHD_NO;
            answer_and_close(st, 400, "invalid", "conflicting Content-Length headers, or Content-Length with "
                             "Transfer-Encoding: where the body ends is ambiguous");
            return MHD_NO;
        }
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == ERANGE || n > serve_cfg->max_body) {
                char msg[128];
                snprintf(msg, sizeof msg, "request body larger than %zu bytes", serve_cfg->max_body);
                if (!ks_conn_answered(st->clock)) /* cut off: the 408 went out */
                    return MHD_NO;
                return send_error(st, 413, "too_big", msg, NULL);
            }
        }
        return MHD_YES;
    }

    if (st->responded) { /* answered early (413): drop whatever still arrives */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        ks_conn_body(st->clock, *upload_data_size);
        /* A body without Content-Length (chunked) that passes the cap:
         * answered now, and the connection closed (the rest is not read). */
        if (!st->early_status && st->body.len + *upload_data_size > serve_cfg->max_body) {
            char msg[128];
            snprintf(msg, sizeof msg, "request body larger than %zu bytes", serve_cfg->max_body);
            answer_and_close(st, 413, "too_big", msg);
            *upload_data_size = 0;
            return MHD_NO;
        }
        /* Any body of a request whose answer is known already (404, 405,
         * 400, 414, 431): the rest is read and dropped and the answer given
         * at its end, so keep-alive survives; past a cap's worth (at least
         * 1 MiB) the connection is closed. */
        if (st->early_status) {
            size_t slack = serve_cfg->max_body > ((size_t)1 << 20) ? serve_cfg->max_body : (size_t)1 << 20;
            st->dropped += *upload_data_size;
            *upload_data_size = 0;
            if (st->dropped > slack) {
                st->status = st->early_status;
                return MHD_NO;
            }
            return MHD_YES;
        }
        ks_buf_add(&st->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }

    /* The whole request is in; it is not handled if it came too late. */
    if (!ks_conn_request_in(st->clock))
        return MHD_NO;
    if (st->phase == PH_READY) /* resumed: the worker or the fsync is done */
        return answer(st);
    if (st->early_status)
        return send_error(st, st->early_status, st->early_code, st->early_msg, st->allow[0] ? st->allow : NULL);
    const char *form_problem = st->body.len ? body_form_problem(mc) : NULL;
    if (form_problem)
        return send_error(st, 415, "unsupported_media_type", form_problem, NULL);
    st->req.body = st->body.p ? st->body.p : "";
    st->req.body_len = st->body.len;
    memset(&st->res, 0, sizeof st->res);
    st->res.status = 200;
    /* While the server stops, everything runs here: no connection may be
     * suspended when the daemon stops (see ks_serve). */
    int stopping_now = ks_stopping();
    if (!runs_inline(st) && !stopping_now) {
        st->phase = PH_WORKER;
        st->job.run = handler_job;
        suspend(mc);
        work_submit(&st->job);
        return MHD_YES;
    }
    run_route(st, !stopping_now);
    if (st->ticket && durable_inline(st)) {
        st->phase = PH_READY;
        return answer(st);
    }
    if (st->ticket) {
        st->phase = PH_DURABLE;
        suspend(mc);
        durable_wait(st);
        return MHD_YES;
    }
    return answer(st);
}

/* The request's log line (at info). */
static void log_request(const req_state *st, int status, int64_t us, const char *how)
{
    /* The raw path, with anything unprintable escaped. */
    char path[600];
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)st->path;
    for (; *p && o + 5 < sizeof path; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '\\')
            o += (size_t)snprintf(path + o, sizeof path - o, "\\x%02x", *p);
        else
            path[o++] = (char)*p;
    }
    if (*p) { /* cut: say so */
        o = o > sizeof path - 4 ? sizeof path - 4 : o;
        memcpy(path + o, "...", 3);
        o += 3;
    }
    path[o] = '\0';
    if (st->closed_early)
        how = " (answered before the end of the body; connection closed)";
    ks_log(KD_LOG_INFO, "%s %s %d %lldus%s", st->method, path, status, (long long)us, how);
}

/* How a request ended, for its log line ("" when answered). */
static const char *how_it_ended(const req_state *st, enum MHD_RequestTerminationCode toe)
{
    switch (st->closed_early ? MHD_REQUEST_TERMINATED_COMPLETED_OK : toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return " (timed out)";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return " (client went away)";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return " (server shutdown)";
    default: return " (connection error)";
    }
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    ks_conn_waiting(conn_clock(mc));
    req_state *st = *con_cls;
    if (!st)
        return;
    if (!st->started) { /* answered by libmicrohttpd itself (malformed, too large headers) */
        ks_log(KD_LOG_DEBUG, "request rejected before its headers were complete");
        state_free(st);
        *con_cls = NULL;
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - st->start.tv_sec) * 1000000 + (now.tv_nsec - st->start.tv_nsec) / 1000;
    if (us < 0)
        us = 0;
    /* Cut off by deadline.c: answered 408, or (answered early already)
     * the rest of its body did not arrive in time. */
    int cut = ks_conn_was_cut(st->clock);
    int status = cut && !st->responded ? 408 : st->status;
    const char *how = !cut             ? how_it_ended(st, toe)
                      : st->responded ? " (the rest of the body did not arrive in time; connection closed)"
                                      : " (the request did not arrive in time; connection closed)";
    if (atomic_load(&log_level) >= KD_LOG_INFO)
        log_request(st, status, us, how);
    metrics_count(st->metric, st->method, status, (uint64_t)us);
    state_free(st);
    *con_cls = NULL;
    atomic_fetch_sub(&in_flight, 1);
}


/* ------------------------------------------------------------------------
 * Addresses
 * ---------------------------------------------------------------------- */

static int resolve(const char *bind, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(bind, NULL, &hints, &ai) != 0 || !ai)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int ks_bind_is_loopback(const char *bind)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(bind, &ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return 1;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            return a->sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The server
 * ---------------------------------------------------------------------- */

static int write_server_file(const char *db_dir, const char *url)
{
    size_t n = strlen(db_dir) + 32;
    char *path = ks_xmalloc(n), *tmp = ks_xmalloc(n);
    snprintf(path, n, "%s/SERVER", db_dir);
    snprintf(tmp, n, "%s/SERVER.tmp", db_dir);
    int ok = 0;
    FILE *f = fopen(tmp, "w");
    if (f) {
        fprintf(f, "%s\npid %ld\n", url, (long)getpid());
        ok = fflush(f) == 0;
        ok &= fclose(f) == 0;
        ok = ok && rename(tmp, path) == 0;
        if (!ok)
            unlink(tmp);
    }
    free(path);
    free(tmp);
    return ok ? 0 : -1;
}

static void remove_server_file(const char *db_dir)
{
    size_t n = strlen(db_dir) + 16;
    char *path = ks_xmalloc(n);
    snprintf(path, n, "%s/SERVER", db_dir);
    unlink(path);
    free(path);
}

int ks_serve(kd_db *db, const char *db_dir, const ks_config *cfg)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (resolve(cfg->bind, &ss, &sslen) != 0) {
        fprintf(stderr, "kdelta: serve: cannot resolve bind address '%s'\n", cfg->bind);
        return 1;
    }
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)cfg->port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)cfg->port);

    ks_log_set_level(cfg->log_level);
    serve_db = db;
    serve_dir = db_dir;
    serve_backup_dir = cfg->backup_dir;
    serve_cfg = cfg;
    atomic_store(&stopping, 0);
    metrics_reset();
    if (cfg->auth) {
        char err[512];
        if (ks_auth_start(db, cfg, err, sizeof err) != 0) {
            fprintf(stderr, "kdelta: serve: %s\n", err);
            return 1;
        }
    }
    routes_init();
    kd_stats st0;
    versions_at_start = kd_stats_get(db, &st0) == KD_OK ? st0.versions : 0;

    /* SIGINT and SIGTERM are taken with sigwait() by this thread; block them
     * before the daemon starts so its threads inherit the mask. */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    struct sigaction ign, old_pipe;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);

    /* Per-connection memory (request line, headers, buffers). libmicrohttpd
     * zeroes it between keep-alive requests, so it is paid on every request:
     * 32 KiB (its default) holds the longest legal key path (~4 KB encoded)
     * with room for long GET query strings; 64 KiB cost ~7-10% of GET
     * throughput in memset alone. Our own limits (KS_MAX_TARGET,
     * KS_MAX_HEADER_BYTES, KS_MAX_HEADERS: 16 + 8 KiB + 64 fields of ~64
     * bytes of bookkeeping each) fit in it together, so requests over them
     * get our JSON 414/431; only requests past this memory get
     * libmicrohttpd's own (HTML) 414/431, which 0.9.75 cannot hand over. */
    enum { KS_CONNECTION_MEMORY = 32 * 1024 };
    /* A pool of event threads, one per core (at least 2, at most 8), each
     * serving its connections with poll() (epoll measured no faster here,
     * and libmicrohttpd 0.9.75's epoll mode had a quiesce race of its
     * own); what may block runs on workers
     * (work_submit) and durable writes wait on the durability thread, their
     * connections suspended meanwhile. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned pool = ncpu < 2 ? 2 : ncpu > MAX_EVENT_THREADS ? MAX_EVENT_THREADS : (unsigned)ncpu;
    event_threads = pool;
    /* The listening socket is ours (listen.c): libmicrohttpd's own would
     * give most of a burst of connections to one event thread. */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_ITC |
                     MHD_USE_NO_LISTEN_SOCKET;
    unsigned port = cfg->port;
    ks_raise_fd_limit(cfg->max_connections);
    int lfd = ks_listen_socket((struct sockaddr *)&ss, sslen, &port);
    ks_listener *listener = lfd < 0 ? NULL : ks_listener_new(lfd, cfg->max_connections);
    if (!listener) {
        int e = errno;
        if (lfd >= 0)
            close(lfd);
        fprintf(stderr, "kdelta: serve: cannot listen on %s port %u: %s\n", cfg->bind, cfg->port, strerror(e));
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        sigaction(SIGPIPE, &old_pipe, NULL);
        routes_free();
        ks_auth_stop();
        return 1;
    }
    if (durable_start() != 0 || ks_deadline_start(cfg->timeout_s) != 0) {
        int e = errno;
        durable_stop(); /* a no-op when it did not start */
        ks_listener_free(listener);
        fprintf(stderr, "kdelta: serve: cannot start a thread: %s\n", strerror(e));
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        sigaction(SIGPIPE, &old_pipe, NULL);
        routes_free();
        ks_auth_stop();
        return 1;
    }
    /* The listener keeps max_connections for the whole server; each event
     * thread may hold them all, as the spread is only about even (and
     * libmicrohttpd would close what is over an even share). */
    errno = 0;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections * pool,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, listener,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)KS_CONNECTION_MEMORY,
        MHD_OPTION_THREAD_POOL_SIZE, pool,
        MHD_OPTION_END);
    if (!d || ks_listener_start(listener, d) != 0) {
        int e = errno;
        if (d)
            MHD_stop_daemon(d);
        ks_listener_free(listener);
        ks_deadline_stop();
        durable_stop();
        fprintf(stderr, "kdelta: serve: cannot start serving on %s port %u: %s\n", cfg->bind, port,
                e ? strerror(e) : "libmicrohttpd refused to start");
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        sigaction(SIGPIPE, &old_pipe, NULL);
        routes_free();
        ks_auth_stop();
        return 1;
    }
    log_async_start();
    char host[INET6_ADDRSTRLEN + 2];
    if (ss.ss_family == AF_INET6) {
        char a[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof a);
        snprintf(host, sizeof host, "[%s]", a);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
    }
    char url[128];
    snprintf(url, sizeof url, "http://%s:%u/", host, port);
    if (write_server_file(db_dir, url) != 0)
        ks_log(KD_LOG_WARN, "cannot write %s/SERVER: %s", db_dir, strerror(errno));
    printf("KoruDelta serving %s at %s\n", db_dir, url);
    fflush(stdout);
    ks_log(KD_LOG_INFO, "listening at %s (database %s)", url, db_dir);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    ks_log(KD_LOG_INFO, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");

    /* Stop accepting, let the requests in flight finish (streams end when
     * they see ks_stopping), then stop the daemon (which closes idle
     * keep-alive connections and joins every thread). */
    atomic_store(&stopping, 1);
    ks_listener_stop(listener);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (atomic_load(&in_flight) <= 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec >= 10) {
            ks_log(KD_LOG_WARN, "%ld requests still running after 10 s: closing their connections",
                   atomic_load(&in_flight));
            break;
        }
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    /* No connection may be suspended when the daemon stops: wait for the
     * jobs still running (a stream ends within about a second of
     * ks_stopping, a durable write at its fsync; a long handler, such as a
     * backup, finishes first, as it always did). */
    while (atomic_load(&n_suspended) > 0) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    MHD_stop_daemon(d);
    ks_listener_free(listener); /* after the daemon: its threads report closes to it */
    ks_deadline_stop();         /* likewise */
    durable_stop();
    workers_stop();
    remove_server_file(db_dir);
    routes_free();
    ks_ws_close_all(); /* no request runs any more */
    ks_auth_stop();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    ks_log(KD_LOG_INFO, "stopped");
    log_async_stop();
    return 0;
}
