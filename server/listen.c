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
 * event threads by descriptor number (the next thread if one is full), and
 * descriptors come in turn, so the threads get about half each.
 *
 * Owning the socket also makes "stop accepting" at shutdown plain: stop
 * this thread and close the socket.
 *
 * At max_connections, libmicrohttpd closes a connection it is handed: the
 * client is refused at once rather than left waiting in the backlog.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "server_int.h"

struct ks_listener {
    int fd;          /* the listening socket */
    int stop[2];     /* a pipe: writing to stop[1] ends the thread */
    struct MHD_Daemon *daemon;
    pthread_t thread;
};

int ks_listen_socket(const struct sockaddr *addr, unsigned len, unsigned *port)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

/* Errors of accept() that concern one connection (or a passing shortage);
 * the next accept() may well succeed. */
static int accept_error_passes(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM;
}

static void *accept_main(void *arg)
{
    ks_listener *l = arg;
    struct pollfd p[2] = {{l->fd, POLLIN, 0}, {l->stop[0], POLLIN, 0}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            ks_log(KD_LOG_ERROR, "listening socket: poll failed: %s", strerror(errno));
            return NULL;
        }
        if (p[1].revents)
            return NULL;
        if (!(p[0].revents & POLLIN))
            continue;
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int c = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) {
            if (!accept_error_passes(errno)) {
                /* Out of descriptors or memory: say so and give the
                 * server a moment to close some instead of spinning. */
                ks_log(KD_LOG_WARN, "cannot accept a connection: %s", strerror(errno));
                struct timespec pause = {0, 100 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
            continue;
        }
        /* On failure (at max_connections, out of memory) libmicrohttpd
         * has closed the socket and logged why. */
        (void)MHD_add_connection(l->daemon, c, (struct sockaddr *)&peer, plen);
    }
}

int ks_listener_start(ks_listener **out, int fd, struct MHD_Daemon *daemon)
{
    ks_listener *l = ks_xmalloc(sizeof *l);
    l->fd = fd;
    l->daemon = daemon;
    if (pipe2(l->stop, O_CLOEXEC) != 0) {
        free(l);
        return -1;
    }
    int rc = pthread_create(&l->thread, NULL, accept_main, l);
    if (rc != 0) {
        close(l->stop[0]);
        close(l->stop[1]);
        free(l);
        errno = rc;
        return -1;
    }
    *out = l;
    return 0;
}

void ks_listener_stop(ks_listener *l)
{
    if (!l)
        return;
    char b = 1;
    while (write(l->stop[1], &b, 1) < 0 && errno == EINTR)
        ;
    pthread_join(l->thread, NULL);
    close(l->stop[0]);
    close(l->stop[1]);
    close(l->fd);
    free(l);
}
