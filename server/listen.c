/*
 * listen.c — the server's listening socket and the thread that accepts on
 * it, handing each connection to libmicrohttpd with MHD_add_connection.
 *
 * Why not let libmicrohttpd listen: each of its event threads polls the one
 * listening socket and accepts whatever it wakes for first, so a burst of
 * connections (a client opening 64 at once) lands mostly on one thread.
 * Measured with 64 connections of durable PUTs: one event thread used 69 %
 * of a CPU and the other 18 %, and every request of the busy thread waited
 * behind its neighbours. MHD_add_connection spreads connections over the
 * event threads by descriptor number, and descriptors come in turn, so the
 * threads get about half each.
 *
 * The connection limit is kept here, for the whole server: at
 * max_connections open, this thread stops accepting (new clients wait in
 * the backlog, as with libmicrohttpd's own listening) until a connection
 * closes (ks_listener_closed). libmicrohttpd's own limit is set above ours
 * for every event thread, since it splits its limit evenly and our
 * spreading is only about even. (A connection libmicrohttpd drops before
 * it starts, for want of memory in its event thread, is never reported
 * closed and keeps its slot.)
 *
 * Owning the socket also makes "stop accepting" at shutdown plain: stop
 * this thread and close the socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "server_int.h"

struct ks_listener {
    int fd;            /* the listening socket */
    int stop[2];       /* a pipe: writing to stop[1] ends the thread */
    int wake;          /* eventfd: a connection closed while all were taken */
    unsigned max;      /* max_connections */
    atomic_uint open;  /* handed to libmicrohttpd and not closed since */
    struct MHD_Daemon *daemon;
    pthread_t thread;
    int running;
    int64_t last_warn_ns; /* accept errors are logged at most every 10 s */
};

int ks_listen_socket(const struct sockaddr *addr, unsigned len, unsigned *port)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    /* A restart must not wait for the old connections' TIME_WAIT. */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* "::" means IPv6 only, as an IPv4 address means IPv4 only. */
    if (addr->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (bind(fd, addr, (socklen_t)len) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (bound.ss_family == AF_INET6)
        *port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    else
        *port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return fd;
}

void ks_raise_fd_limit(unsigned max_connections)
{
    /* One descriptor per connection, plus the database's files and the
     * server's own (log segments, pipes, watch streams): 256 to spare. */
    rlim_t want = (rlim_t)max_connections + 256;
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur >= want)
        return;
    rlim_t was = r.rlim_cur;
    r.rlim_cur = r.rlim_max == RLIM_INFINITY || r.rlim_max > want ? want : r.rlim_max;
    if (r.rlim_cur > was && setrlimit(RLIMIT_NOFILE, &r) != 0)
        r.rlim_cur = was;
    if (r.rlim_cur < want)
        ks_log(KD_LOG_WARN,
               "max_connections %u needs about %llu open files, but the limit is %llu (ulimit -n): "
               "connections past it wait until others close",
               max_connections, (unsigned long long)want, (unsigned long long)r.rlim_cur);
}

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Out of descriptors or memory: nothing to accept with until something is
 * freed. Other errors of accept() concern one connection (Linux reports a
 * new connection's pending network error there) and the next may succeed. */
static int out_of_resources(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* The listening socket itself is unusable: not a passing condition. */
static int socket_broken(int e)
{
    return e == EBADF || e == EINVAL || e == ENOTSOCK || e == EFAULT;
}

static void warn_limited(ks_listener *l, int level, const char *what, int e)
{
    int64_t now = mono_ns();
    if (l->last_warn_ns && now - l->last_warn_ns < 10 * (int64_t)1000000000)
        return;
    l->last_warn_ns = now;
    ks_log(level, "%s: %s (logged at most every 10 s)", what, strerror(e));
}

/* Sleep until `ms` pass, a connection closes, or the thread must stop.
 * Returns 1 when it must stop. */
static int pause_for(ks_listener *l, int ms)
{
    struct pollfd p[2] = {{l->stop[0], POLLIN, 0}, {l->wake, POLLIN, 0}};
    if (poll(p, 2, ms) > 0 && p[0].revents)
        return 1;
    return 0;
}

static void *accept_main(void *arg)
{
    ks_listener *l = arg;
    for (;;) {
        /* At the limit, leave the listening socket out of the poll: new
         * clients wait in the backlog until a connection closes. */
        int full = atomic_load(&l->open) >= l->max;
        struct pollfd p[3] = {{l->stop[0], POLLIN, 0}, {l->wake, POLLIN, 0}, {full ? -1 : l->fd, POLLIN, 0}};
        if (poll(p, 3, -1) < 0) {
            if (errno != EINTR) {
                warn_limited(l, KD_LOG_ERROR, "listening socket: poll failed", errno);
                if (pause_for(l, 100))
                    return NULL;
            }
            continue;
        }
        if (p[0].revents)
            return NULL;
        if (p[1].revents) {
            eventfd_t v;
            (void)eventfd_read(l->wake, &v);
        }
        if (full || !p[2].revents)
            continue;
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int c = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) {
            int e = errno;
            if (out_of_resources(e)) {
                warn_limited(l, KD_LOG_WARN, "cannot accept a connection", e);
                if (pause_for(l, 100))
                    return NULL;
            } else if (socket_broken(e)) {
                warn_limited(l, KD_LOG_ERROR, "listening socket", e);
                if (pause_for(l, 1000))
                    return NULL;
            }
            continue;
        }
        /* Counted before it is handed over: its close may come at once. */
        atomic_fetch_add(&l->open, 1);
        if (MHD_add_connection(l->daemon, c, (struct sockaddr *)&peer, plen) != MHD_YES) {
            /* libmicrohttpd closed the socket (out of memory) */
            ks_listener_closed(l);
        }
    }
}

ks_listener *ks_listener_new(int fd, unsigned max_connections)
{
    ks_listener *l = ks_xmalloc(sizeof *l);
    memset(l, 0, sizeof *l);
    l->fd = fd;
    l->max = max_connections;
    atomic_init(&l->open, 0);
    l->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wake < 0) {
        free(l);
        return NULL;
    }
    if (pipe2(l->stop, O_CLOEXEC) != 0) {
        int e = errno;
        close(l->wake);
        free(l);
        errno = e;
        return NULL;
    }
    return l;
}

int ks_listener_start(ks_listener *l, struct MHD_Daemon *daemon)
{
    l->daemon = daemon;
    int rc = pthread_create(&l->thread, NULL, accept_main, l);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    l->running = 1;
    return 0;
}

void ks_listener_closed(ks_listener *l)
{
    /* Wake the thread only when this close frees a slot it waits for. */
    if (atomic_fetch_sub(&l->open, 1) >= l->max)
        (void)eventfd_write(l->wake, 1);
}

void ks_listener_stop(ks_listener *l)
{
    if (!l || !l->running)
        return;
    char b = 1;
    while (write(l->stop[1], &b, 1) < 0 && errno == EINTR)
        ;
    pthread_join(l->thread, NULL);
    l->running = 0;
    close(l->fd);
    l->fd = -1;
}

void ks_listener_free(ks_listener *l)
{
    if (!l)
        return;
    ks_listener_stop(l);
    if (l->fd >= 0)
        close(l->fd);
    close(l->stop[0]);
    close(l->stop[1]);
    close(l->wake);
    free(l);
}
