/*
 * deadline.c — every request must arrive whole in bounded time.
 *
 * libmicrohttpd's --timeout is an idle timer: any byte restarts it, so a
 * client sending one byte a second holds its connection (and, with enough
 * such clients, every connection the server has) for ever. Here each
 * connection carries a deadline for the request it is receiving:
 *
 *   - the request line and header fields: 2 x timeout from the previous
 *     response (or the connection's start). The idle timer closes a silent
 *     connection after one timeout, so a client gets at least one timeout
 *     from its first byte;
 *   - the body: one timeout from the end of the headers, plus one second
 *     for every BODY_BYTES_PER_S bytes received (a slow but steady upload
 *     of a large value is not cut off; a trickle is).
 *
 * A request that is in whole has no deadline: answering it may take long
 * (a query, a backup, a watch stream) and sending its answer is bounded by
 * the idle timer. A thread looks at the deadlines twice a second; past
 * one, it sends a 408 with a JSON error and shuts the socket down, and
 * libmicrohttpd closes the connection as it would for a client that went
 * away. A request cut off this way is never handled: the cut and the
 * handler's start race on one compare-and-swap (ks_conn_request_in).
 *
 * The socket is shut down under reg_mu, and a connection leaves the
 * registry under reg_mu when libmicrohttpd reports it closed, which it does
 * before it closes the descriptor: the number can never name another
 * connection's socket here.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "server_int.h"

enum { BODY_BYTES_PER_S = 16 * 1024, SWEEP_MS = 500 };

#define CUT (-1) /* deadline of a connection whose request was cut off */

struct ks_conn {
    struct ks_conn *prev, *next; /* the registry, under reg_mu */
    int fd;
    /* ns on CLOCK_MONOTONIC; 0: no deadline (the request is in whole);
     * CUT: cut off */
    atomic_llong deadline_ns;
    atomic_int in_body;  /* the deadline is the body's (for the message) */
    atomic_int answered; /* a response is queued already: no 408 */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ks_conn *reg_head;
static int64_t timeout_ns;
static atomic_ullong n_cut;

static pthread_t sweeper;
static int sweeper_running;
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv = PTHREAD_COND_INITIALIZER;
static int stop_flag;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Set the deadline to `to`, unless the request was cut off already. */
static void set_deadline(ks_conn *c, long long to)
{
    long long d = atomic_load(&c->deadline_ns);
    while (d != CUT && !atomic_compare_exchange_weak(&c->deadline_ns, &d, to))
        ;
}

ks_conn *ks_conn_opened(int fd)
{
    ks_conn *c = ks_xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    c->fd = fd;
    atomic_init(&c->deadline_ns, now_ns() + 2 * timeout_ns);
    atomic_init(&c->in_body, 0);
    atomic_init(&c->answered, 0);
    pthread_mutex_lock(&reg_mu);
    c->next = reg_head;
    if (reg_head)
        reg_head->prev = c;
    reg_head = c;
    pthread_mutex_unlock(&reg_mu);
    return c;
}

void ks_conn_closed(ks_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&reg_mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        reg_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&reg_mu);
    free(c);
}

void ks_conn_waiting(ks_conn *c)
{
    if (!c)
        return;
    atomic_store(&c->in_body, 0);
    atomic_store(&c->answered, 0);
    set_deadline(c, now_ns() + 2 * timeout_ns);
}

void ks_conn_headers_in(ks_conn *c)
{
    if (!c)
        return;
    atomic_store(&c->in_body, 1);
    set_deadline(c, now_ns() + timeout_ns);
}

void ks_conn_body(ks_conn *c, size_t bytes)
{
    if (!c)
        return;
    long long more = (long long)(bytes * (1000000000ull / BODY_BYTES_PER_S));
    long long d = atomic_load(&c->deadline_ns);
    while (d > 0 && !atomic_compare_exchange_weak(&c->deadline_ns, &d, d + more))
        ;
}

void ks_conn_answered(ks_conn *c)
{
    if (c)
        atomic_store(&c->answered, 1);
}

int ks_conn_request_in(ks_conn *c)
{
    if (!c)
        return 1;
    long long d = atomic_load(&c->deadline_ns);
    while (d != CUT && !atomic_compare_exchange_weak(&c->deadline_ns, &d, 0))
        ;
    return d != CUT;
}

int ks_conn_was_cut(const ks_conn *c)
{
    return c && atomic_load(&c->deadline_ns) == CUT;
}

unsigned long long ks_deadline_cuts(void)
{
    return atomic_load(&n_cut);
}

/* The 408, written straight to the socket: libmicrohttpd is not sending
 * anything on it while a request is arriving. */
static void send_408(ks_conn *c, int in_body)
{
    unsigned t = (unsigned)(timeout_ns / 1000000000);
    char msg[200];
    if (in_body)
        snprintf(msg, sizeof msg,
                 "the request body did not arrive in time (%u s, plus 1 s per %d KiB received); "
                 "the connection is closed",
                 t, BODY_BYTES_PER_S / 1024);
    else
        snprintf(msg, sizeof msg,
                 "the request line and header fields did not arrive within %u s; the connection is closed", 2 * t);
    char body[300];
    int blen = snprintf(body, sizeof body, "{\"error\":{\"code\":\"timeout\",\"message\":\"%s\"}}\n", msg);
    char out[512];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n\r\n%s",
                     blen, body);
    if (n > 0 && (size_t)n < sizeof out)
        (void)send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void sweep(void)
{
    int64_t now = now_ns();
    pthread_mutex_lock(&reg_mu);
    for (ks_conn *c = reg_head; c; c = c->next) {
        long long d = atomic_load(&c->deadline_ns);
        if (d <= 0 || now <= d || !atomic_compare_exchange_strong(&c->deadline_ns, &d, CUT))
            continue;
        int in_body = atomic_load(&c->in_body);
        if (!atomic_load(&c->answered))
            send_408(c, in_body);
        shutdown(c->fd, SHUT_RDWR);
        atomic_fetch_add(&n_cut, 1);
        ks_log(KD_LOG_INFO, "408: a request's %s did not arrive in time; connection closed",
               in_body ? "body" : "header fields");
    }
    pthread_mutex_unlock(&reg_mu);
}

static void *sweeper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&stop_mu);
    while (!stop_flag) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += SWEEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&stop_cv, &stop_mu, &until);
        if (stop_flag)
            break;
        pthread_mutex_unlock(&stop_mu);
        sweep();
        pthread_mutex_lock(&stop_mu);
    }
    pthread_mutex_unlock(&stop_mu);
    return NULL;
}

int ks_deadline_start(unsigned timeout_s)
{
    timeout_ns = (int64_t)timeout_s * 1000000000;
    atomic_store(&n_cut, 0);
    stop_flag = 0;
    int rc = pthread_create(&sweeper, NULL, sweeper_main, NULL);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    sweeper_running = 1;
    return 0;
}

void ks_deadline_stop(void)
{
    if (!sweeper_running)
        return;
    pthread_mutex_lock(&stop_mu);
    stop_flag = 1;
    pthread_cond_signal(&stop_cv);
    pthread_mutex_unlock(&stop_mu);
    pthread_join(sweeper, NULL);
    sweeper_running = 0;
}
