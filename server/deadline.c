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
 * one, unless bytes wait unread in the socket (then the server is behind,
 * not the client), it sends a 408 with a JSON error and shuts the socket down (its
 * sending side at once, its reading side a second later: see sweep), and
 * libmicrohttpd closes the connection as it would for a client that went
 * away. A request cut off this way is never handled, and a request answered
 * early (a 413 before its body) gets no 408 on top: the cut, the handler's
 * start and an early answer race on one compare-and-swap of one word.
 *
 * Time the whole process was stopped (SIGSTOP, a frozen VM, a long stall)
 * is the server's, not the client's: the sweeper notices it as a late
 * wake-up and moves every deadline on by it (stall_ns). Without this, a
 * request that came whole during the stall and was read from the socket as
 * the process woke could be cut before its handler started.
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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include <linux/sockios.h>

#include "server_int.h"

enum { BODY_BYTES_PER_S = 16 * 1024, SWEEP_MS = 500 };
#define SWEEP_NS (SWEEP_MS * 1000000LL)
#define CUT_GRACE_NS 1000000000LL
/* A sweep this much later than planned means the process was stopped. */
#define STALL_SLACK_NS 500000000LL

/* The state of a connection's request, in one word:
 *   > 0   the deadline, ns on clock_ns(), always even; bit 0 set when
 *         a response is queued already (ANSWERED: cut without a 408)
 *   0     no deadline: the request is in whole and being answered
 *   CUT   cut off */
#define CUT (-1)
#define ANSWERED 1LL

struct ks_conn {
    struct ks_conn *prev, *next; /* the registry, under reg_mu */
    int fd;
    atomic_llong state;
    atomic_int in_body; /* the deadline is the body's (for the message) */
    int64_t cut_at;     /* when it was cut off (0: not yet); under reg_mu */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ks_conn *reg_head;
static int64_t timeout_ns;
static atomic_ullong n_cut;
static atomic_llong stall_ns; /* the process was stopped this long in all */

static pthread_t sweeper;
static int sweeper_running;
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv; /* on CLOCK_MONOTONIC: a wall clock step must not stall the sweeps */
static int stop_flag;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The clock deadlines run on: CLOCK_MONOTONIC less the stalls. */
static int64_t clock_ns(void)
{
    return now_ns() - atomic_load(&stall_ns);
}

/* A new deadline (for a new request: not answered), unless the
 * connection was cut off already. */
static void set_deadline(ks_conn *c, long long to)
{
    long long d = atomic_load(&c->state);
    while (d != CUT && !atomic_compare_exchange_weak(&c->state, &d, to & ~ANSWERED))
        ;
}

ks_conn *ks_conn_opened(int fd)
{
    ks_conn *c = ks_xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    c->fd = fd;
    atomic_init(&c->state, (clock_ns() + 2 * timeout_ns) & ~ANSWERED);
    atomic_init(&c->in_body, 0);
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
    set_deadline(c, clock_ns() + 2 * timeout_ns);
}

void ks_conn_headers_in(ks_conn *c)
{
    if (!c)
        return;
    atomic_store(&c->in_body, 1);
    set_deadline(c, clock_ns() + timeout_ns);
}

void ks_conn_body(ks_conn *c, size_t bytes)
{
    if (!c)
        return;
    long long more = (long long)(bytes * (1000000000ull / BODY_BYTES_PER_S)) & ~ANSWERED;
    long long d = atomic_load(&c->state);
    while (d > 0 && !atomic_compare_exchange_weak(&c->state, &d, d + more))
        ;
}

int ks_conn_answered(ks_conn *c)
{
    if (!c)
        return 1;
    long long d = atomic_load(&c->state);
    while (d > 0 && !(d & ANSWERED) && !atomic_compare_exchange_weak(&c->state, &d, d | ANSWERED))
        ;
    return d != CUT;
}

int ks_conn_request_in(ks_conn *c)
{
    if (!c)
        return 1;
    long long d = atomic_load(&c->state);
    while (d != CUT && !atomic_compare_exchange_weak(&c->state, &d, 0))
        ;
    return d != CUT;
}

int ks_conn_was_cut(const ks_conn *c)
{
    return c && atomic_load(&c->state) == CUT;
}

unsigned long long ks_deadline_cuts(void)
{
    return atomic_load(&n_cut);
}

/* The 408, written straight to the socket: while a request arrives
 * unanswered, libmicrohttpd sends nothing on it but, rarely, a response of
 * its own to a malformed request, which the 408 could then follow. */
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
    int blen =
        snprintf(body, sizeof body, "{\"error\":{\"code\":\"request_timeout\",\"message\":\"%s\"}}\n", msg);
    char out[512];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n\r\n%s",
                     blen, body);
    if (n > 0 && (size_t)n < sizeof out)
        (void)send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Has the client sent bytes the server has not read yet? */
static int unread_input(int fd)
{
    int queued = 0;
    return ioctl(fd, SIOCINQ, &queued) == 0 && queued > 0;
}

static void sweep(void)
{
    int64_t now = clock_ns();
    unsigned cut_heads = 0, cut_bodies = 0;
    pthread_mutex_lock(&reg_mu);
    for (ks_conn *c = reg_head; c; c = c->next) {
        if (c->cut_at) {
            /* libmicrohttpd goes on reading what the client sends after
             * the cut (a request completed now is refused), so the client
             * can read its 408 before the connection goes; after a grace
             * second, its reading side is shut too and libmicrohttpd closes
             * it (unread input then resets the connection). */
            if (c->cut_at > 0 && now - c->cut_at >= CUT_GRACE_NS) {
                shutdown(c->fd, SHUT_RD);
                c->cut_at = -1;
            }
            continue;
        }
        long long d = atomic_load(&c->state);
        if (d <= 0 || now <= (d & ~ANSWERED) || unread_input(c->fd) ||
            !atomic_compare_exchange_strong(&c->state, &d, CUT))
            continue;
        int in_body = atomic_load(&c->in_body);
        if (!(d & ANSWERED))
            send_408(c, in_body);
        shutdown(c->fd, SHUT_WR);
        c->cut_at = now;
        *(in_body ? &cut_bodies : &cut_heads) += 1;
    }
    pthread_mutex_unlock(&reg_mu);
    /* Logged outside reg_mu: a full log queue must not hold up the event
     * threads opening and closing connections. */
    if (cut_heads || cut_bodies) {
        atomic_fetch_add(&n_cut, cut_heads + cut_bodies);
        ks_log(KD_LOG_INFO, "408: cut off connections whose request did not arrive in time: %u in its header fields, "
               "%u in its body", cut_heads, cut_bodies);
    }
}

static void *sweeper_main(void *arg)
{
    (void)arg;
    int64_t last = now_ns();
    pthread_mutex_lock(&stop_mu);
    while (!stop_flag) {
        struct timespec until; /* stop_cv waits on CLOCK_MONOTONIC */
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += SWEEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&stop_cv, &stop_mu, &until);
        if (stop_flag)
            break;
        pthread_mutex_unlock(&stop_mu);
        int64_t woke = now_ns();
        if (woke - last > SWEEP_NS + STALL_SLACK_NS)
            atomic_fetch_add(&stall_ns, woke - last - SWEEP_NS);
        last = woke;
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
    atomic_store(&stall_ns, 0);
    stop_flag = 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&stop_cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&sweeper, NULL, sweeper_main, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&stop_cv);
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
    pthread_cond_destroy(&stop_cv);
    sweeper_running = 0;
}
