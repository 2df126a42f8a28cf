/* SPDX-License-Identifier: MIT */
/*
 * Byte-stream transports (see stream.h).
 *
 * Threads: one loop thread accepts on the listeners; every connection has
 * a thread of its own that reads and frames its messages and writes what
 * the socket did not take at once.  A request that arrives alone (nothing
 * else of that connection in flight, nothing more buffered) runs right on
 * the connection's thread: a closed-loop client costs no hand-over at all.
 * Requests that arrive while others are in flight (pipelining) go to the
 * worker pool and run concurrently.  Tfsync, which can take long, always
 * goes to the pool.
 *
 * Framing: size[4] is validated against the session's msize by the core
 * (p9s_frame_len) before a buffer is allocated for the message.  A frame
 * error or a duplicate tag closes only that connection.
 *
 * Writing: replies are sent without blocking by whichever thread finishes
 * the request; what the socket does not take is queued and sent by the
 * connection's thread when the socket is writable, so a worker never
 * blocks on a slow reader.  A connection stops being read while it has
 * PAUSE_AT requests pending or OQ_PAUSE_BYTES of replies queued: a client
 * that does not read its replies only stalls itself.
 *
 * Lifetime: when the peer goes away the connection thread shuts the socket
 * down, calls p9s_conn_close() and exits; the fd is closed and the struct
 * freed in release(), after the last worker has sent or dropped its reply,
 * so a worker never writes to a recycled fd number.
 */
#include "transport/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "virtfs/p9.h"
#include "virtfs/server.h"

#define STAGE_SIZE (64 * 1024)
#define BIG_FRAME (8 * 1024) /* larger partial frames skip the staging copy */
#define PAUSE_AT 128         /* stop reading with this many requests pending */
#define OQ_PAUSE_BYTES (8u << 20) /* ... or this much output queued */
#define CONN_STACK (256 * 1024)
#define MAX_CONNS 4096       /* a thread each; beyond this, refused */

/* Reply bytes the socket did not take yet. */
struct obuf {
    struct obuf *next;
    size_t len;
    size_t off;
    uint8_t data[];
};

struct listener {
    int fd;
    char name[128];
    struct listener *next;
};

struct xconn {
    struct xp_loop *loop;
    int rfd;
    int wfd;
    int evfd;               /* wakes the connection thread */
    bool sock;              /* rfd is a socket (send/shutdown usable) */
    bool last;
    char peer[160];
    struct p9s_conn *sc;
    struct xconn *open_prev, *open_next; /* loop's open list (open_lock) */
    pthread_mutex_t wlock;  /* one writer at a time; guards the fields below */
    bool dead;              /* the write side failed */
    bool closing;           /* the connection thread is done with it */
    bool stopping;          /* shutdown: answer what is in flight, then close */
    unsigned pending;       /* submitted, not yet sent/dropped */
    struct obuf *oq_head;   /* output queue */
    struct obuf *oq_tail;
    size_t oq_bytes;
    /* read state (connection thread only) */
    uint8_t *stage;
    size_t stage_len;       /* bytes in stage */
    uint8_t *big;           /* a frame larger than what is staged */
    size_t big_len;
    size_t big_got;
};

struct xmsg {
    struct xconn *xc;
    struct iovec in;
    struct iovec out;
    uint8_t *outbuf;
};

struct xp_loop {
    struct p9s_server *srv;
    int epfd;
    struct listener *listeners;
    atomic_int nconns;
    atomic_bool last_gone;
    bool have_last;
    pthread_mutex_t open_lock;
    struct xconn *open;     /* connections whose thread runs (open_lock) */
};

static const struct p9s_conn_ops xconn_ops;

static void xconn_drop_output_locked(struct xconn *xc);

/* ---- listening -------------------------------------------------------- */

static int
listen_unix(const char *path, char *msg, size_t msgsize)
{
    struct sockaddr_un sa;
    struct stat st;
    mode_t old_mask;
    int rc;
    int fd;
    int err;

    if (strlen(path) >= sizeof(sa.sun_path) || path[0] == '\0') {
        snprintf(msg, msgsize, "unix socket path too long or empty: %s",
                 path);
        return -ENAMETOOLONG;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(msg, msgsize, "%s exists and is not a socket", path);
            return -EEXIST;
        }
        unlink(path); /* a stale socket from an earlier run */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = -errno;
        snprintf(msg, msgsize, "socket: %s", strerror(-err));
        return err;
    }
    /* owner-only socket whatever the process umask (the passthrough
     * backend sets umask 0): a local user who can connect can attach as
     * any uid when virtfsd runs as root */
    old_mask = umask(0177);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old_mask);
    if (rc < 0 || listen(fd, 128) < 0) {
        err = -errno;
        snprintf(msg, msgsize, "bind/listen %s: %s", path, strerror(-err));
        close(fd);
        return err;
    }
    return fd;
}

static int
listen_tcp(const char *hostport, char *msg, size_t msgsize)
{
    struct addrinfo hints;
    struct addrinfo *res;
    struct addrinfo *ai;
    char host[256];
    const char *colon = strrchr(hostport, ':');
    const char *port;
    int one = 1;
    int fd = -1;
    int err = -EADDRNOTAVAIL;
    size_t hl;

    if (colon == NULL || colon[1] == '\0') {
        snprintf(msg, msgsize, "tcp address must be HOST:PORT: %s", hostport);
        return -EINVAL;
    }
    hl = (size_t)(colon - hostport);
    if (hl >= sizeof(host)) {
        snprintf(msg, msgsize, "host name too long");
        return -EINVAL;
    }
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    /* [::1]:564 */
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    port = colon + 1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    err = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (err != 0) {
        snprintf(msg, msgsize, "%s: %s", hostport, gai_strerror(err));
        return -EINVAL;
    }
    err = -EADDRNOTAVAIL;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, 128) == 0) {
            break;
        }
        err = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(msg, msgsize, "bind/listen %s: %s", hostport,
                 strerror(-err));
        return err;
    }
    return fd;
}

int
xp_listen(const char *spec, char *msg, size_t msgsize)
{
    if (strncmp(spec, "unix:", 5) == 0) {
        return listen_unix(spec + 5, msg, msgsize);
    }
    if (strncmp(spec, "tcp:", 4) == 0) {
        return listen_tcp(spec + 4, msg, msgsize);
    }
    if (strncmp(spec, "fd:", 3) == 0) {
        char *end;
        long n = strtol(spec + 3, &end, 10);
        int acc = 0;
        socklen_t len = sizeof(acc);

        if (*end != '\0' || n < 0 || n > 65535 ||
            getsockopt((int)n, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 ||
            !acc) {
            snprintf(msg, msgsize, "%s is not a listening socket", spec);
            return -EINVAL;
        }
        return (int)n;
    }
    snprintf(msg, msgsize,
             "unknown listen address '%s' (use unix:PATH, tcp:HOST:PORT or "
             "fd:N)",
             spec);
    return -EINVAL;
}
/* ---- loop --------------------------------------------------------------- */

struct xp_loop *
xp_loop_new(struct p9s_server *srv)
{
    struct xp_loop *loop = calloc(1, sizeof(*loop));

    if (loop == NULL) {
        return NULL;
    }
    loop->srv = srv;
    pthread_mutex_init(&loop->open_lock, NULL);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        pthread_mutex_destroy(&loop->open_lock);
        free(loop);
        return NULL;
    }
    return loop;
}

void
xp_loop_free(struct xp_loop *loop)
{
    struct listener *l;

    if (loop == NULL) {
        return;
    }
    while ((l = loop->listeners) != NULL) {
        loop->listeners = l->next;
        close(l->fd);
        free(l);
    }
    close(loop->epfd);
    pthread_mutex_destroy(&loop->open_lock);
    free(loop);
}

int
xp_loop_add_listener(struct xp_loop *loop, int fd, const char *name)
{
    struct epoll_event ev;
    struct listener *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        return -ENOMEM;
    }
    l->fd = fd;
    snprintf(l->name, sizeof(l->name), "%s", name);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = l;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;

        free(l);
        return err;
    }
    l->next = loop->listeners;
    loop->listeners = l;
    return 0;
}

static void
open_link(struct xp_loop *loop, struct xconn *xc)
{
    pthread_mutex_lock(&loop->open_lock);
    xc->open_prev = NULL;
    xc->open_next = loop->open;
    if (loop->open != NULL) {
        loop->open->open_prev = xc;
    }
    loop->open = xc;
    pthread_mutex_unlock(&loop->open_lock);
}

static void
open_unlink(struct xp_loop *loop, struct xconn *xc)
{
    pthread_mutex_lock(&loop->open_lock);
    if (xc->open_prev != NULL) {
        xc->open_prev->open_next = xc->open_next;
    } else if (loop->open == xc) {
        loop->open = xc->open_next;
    }
    if (xc->open_next != NULL) {
        xc->open_next->open_prev = xc->open_prev;
    }
    xc->open_prev = NULL;
    xc->open_next = NULL;
    pthread_mutex_unlock(&loop->open_lock);
}

static void
xconn_wake(struct xconn *xc)
{
    uint64_t one = 1;
    ssize_t r = write(xc->evfd, &one, sizeof(one));

    (void)r; /* a full counter wakes the thread as well */
}

static void *xconn_main(void *arg);

int
xp_loop_add_conn(struct xp_loop *loop, int rfd, int wfd, const char *peer,
                 bool last)
{
    struct xconn *xc = calloc(1, sizeof(*xc));
    pthread_attr_t attr;
    pthread_t th;
    int type;
    socklen_t len = sizeof(type);
    int err;

    if (xc == NULL) {
        return -ENOMEM;
    }
    xc->loop = loop;
    xc->rfd = rfd;
    xc->wfd = wfd;
    xc->sock = getsockopt(rfd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
    xc->last = last;
    snprintf(xc->peer, sizeof(xc->peer), "%s", peer);
    pthread_mutex_init(&xc->wlock, NULL);
    xc->stage = malloc(STAGE_SIZE);
    xc->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (xc->stage == NULL || xc->evfd < 0) {
        err = xc->evfd < 0 ? -errno : -ENOMEM;
        goto out_free;
    }
    xc->sc = p9s_conn_new(loop->srv, &xconn_ops, xc, peer);
    if (xc->sc == NULL) {
        err = -ENOMEM;
        goto out_free;
    }
    fcntl(rfd, F_SETFL, fcntl(rfd, F_GETFL) | O_NONBLOCK);
    if (wfd != rfd) {
        fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
    }
    if (last) {
        loop->have_last = true;
    }
    atomic_fetch_add(&loop->nconns, 1);
    open_link(loop, xc);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, CONN_STACK);
    err = -pthread_create(&th, &attr, xconn_main, xc);
    pthread_attr_destroy(&attr);
    if (err < 0) {
        log_err("%s: cannot start a connection thread: %s", peer,
                strerror(-err));
        open_unlink(loop, xc);
        pthread_mutex_lock(&xc->wlock);
        xc->closing = true;
        pthread_mutex_unlock(&xc->wlock);
        p9s_conn_close(xc->sc); /* releases xc (and closes the fds) */
        return err;
    }
    log_info("%s: connected", peer);
    return 0;

out_free:
    if (xc->evfd >= 0) {
        close(xc->evfd);
    }
    pthread_mutex_destroy(&xc->wlock);
    free(xc->stage);
    free(xc);
    return err;
}

/* The connection thread is done with this connection. */
static void
xconn_close(struct xconn *xc)
{
    open_unlink(xc->loop, xc);
    pthread_mutex_lock(&xc->wlock);
    xc->closing = true;
    xconn_drop_output_locked(xc);
    pthread_mutex_unlock(&xc->wlock);
    if (xc->sock) {
        shutdown(xc->rfd, SHUT_RDWR);
    }
    free(xc->big);
    xc->big = NULL;
    p9s_conn_close(xc->sc); /* may call release (and free xc) at once */
}

static void
xconn_release(struct p9s_conn *c, void *tp)
{
    struct xconn *xc = tp;
    struct xp_loop *loop = xc->loop;
    bool last = xc->last;

    (void)c;
    log_info("%s: disconnected", xc->peer);
    close(xc->rfd);
    if (xc->wfd != xc->rfd) {
        close(xc->wfd);
    }
    close(xc->evfd);
    xconn_drop_output_locked(xc);
    pthread_mutex_destroy(&xc->wlock);
    free(xc->stage);
    free(xc->big);
    free(xc);
    if (last) {
        atomic_store(&loop->last_gone, true);
    }
    atomic_fetch_sub(&loop->nconns, 1);
}

static void
xconn_drop_output_locked(struct xconn *xc)
{
    struct obuf *o;

    while ((o = xc->oq_head) != NULL) {
        xc->oq_head = o->next;
        free(o);
    }
    xc->oq_tail = NULL;
    xc->oq_bytes = 0;
}

static ssize_t
xconn_write_some(struct xconn *xc, const void *p, size_t n)
{
    return xc->sock ? send(xc->wfd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)
                    : write(xc->wfd, p, n);
}

/* The write side failed: nothing more goes out (wlock held). */
static void
xconn_write_failed(struct xconn *xc)
{
    xc->dead = true;
    xconn_drop_output_locked(xc);
    if (xc->sock) {
        shutdown(xc->wfd, SHUT_RDWR); /* the reader sees EOF and closes */
    }
}

/* Send queued output without blocking (wlock held). */
static void
xconn_flush_output(struct xconn *xc)
{
    struct obuf *o;

    while ((o = xc->oq_head) != NULL && !xc->dead) {
        ssize_t n = xconn_write_some(xc, o->data + o->off, o->len - o->off);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                xconn_write_failed(xc);
            }
            break;
        }
        o->off += (size_t)n;
        xc->oq_bytes -= (size_t)n;
        if (o->off == o->len) {
            xc->oq_head = o->next;
            if (xc->oq_head == NULL) {
                xc->oq_tail = NULL;
            }
            free(o);
        }
    }
}

static bool
xconn_paused(struct xconn *xc)
{
    return xc->pending >= PAUSE_AT || xc->oq_bytes >= OQ_PAUSE_BYTES;
}

/* Hand one complete frame (owned buffer) to the core. */
static int
xconn_submit(struct xconn *xc, uint8_t *buf, size_t len, bool alone)
{
    struct xmsg *m = calloc(1, sizeof(*m));
    unsigned flags = 0;

    if (m == NULL) {
        free(buf);
        return -ENOMEM;
    }
    m->xc = xc;
    m->in.iov_base = buf;
    m->in.iov_len = len;
    pthread_mutex_lock(&xc->wlock);
    xc->pending++;
    if (alone && xc->pending == 1) {
        flags = P9S_SUBMIT_INLINE; /* nothing else in flight: run it here */
    }
    pthread_mutex_unlock(&xc->wlock);
    return p9s_conn_submit_flags(xc->sc, &m->in, 1, len, m, flags);
}

/* Parse complete frames out of the staging buffer. */
static int
xconn_parse(struct xconn *xc)
{
    size_t pos = 0;
    int err = 0;

    while (xc->stage_len - pos >= 4) {
        long flen;
        uint8_t *buf;
        bool alone;
        bool paused;

        /* the pending limit holds per frame, not per read: a read may
         * bring hundreds of small frames (e.g. a chain of Tflush) */
        pthread_mutex_lock(&xc->wlock);
        paused = xconn_paused(xc);
        pthread_mutex_unlock(&xc->wlock);
        if (paused) {
            break; /* the rest stays staged until replies drain */
        }
        flen = p9s_frame_len(xc->sc, xc->stage + pos);
        if (flen < 0) {
            err = -EPROTO;
            break;
        }
        if ((size_t)flen > xc->stage_len - pos) {
            if ((size_t)flen > BIG_FRAME) {
                /* a large frame: read the rest straight into its buffer */
                xc->big = malloc((size_t)flen);
                if (xc->big == NULL) {
                    err = -ENOMEM;
                    break;
                }
                xc->big_len = (size_t)flen;
                xc->big_got = xc->stage_len - pos;
                memcpy(xc->big, xc->stage + pos, xc->big_got);
                pos = xc->stage_len;
            }
            break;
        }
        buf = malloc((size_t)flen);
        if (buf == NULL) {
            err = -ENOMEM;
            break;
        }
        memcpy(buf, xc->stage + pos, (size_t)flen);
        pos += (size_t)flen;
        alone = xc->stage_len - pos < 4; /* nothing more buffered */
        err = xconn_submit(xc, buf, (size_t)flen, alone);
        if (err < 0) {
            break;
        }
    }
    memmove(xc->stage, xc->stage + pos, xc->stage_len - pos);
    xc->stage_len -= pos;
    return err;
}

/* Read what is there; false when the connection must close. */
static bool
xconn_read(struct xconn *xc)
{
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n;

        if (xc->big != NULL) {
            n = read(xc->rfd, xc->big + xc->big_got, xc->big_len - xc->big_got);
        } else {
            n = read(xc->rfd, xc->stage + xc->stage_len,
                     STAGE_SIZE - xc->stage_len);
        }
        if (n == 0) {
            return false;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return true;
            }
            return errno == EINTR;
        }
        if (xc->big != NULL) {
            xc->big_got += (size_t)n;
            if (xc->big_got == xc->big_len) {
                uint8_t *buf = xc->big;

                xc->big = NULL;
                if (xconn_submit(xc, buf, xc->big_len, xc->stage_len == 0) <
                    0) {
                    return false;
                }
            }
            continue;
        }
        xc->stage_len += (size_t)n;
        if (xconn_parse(xc) < 0) {
            log_peer("%s: protocol error, closing connection", xc->peer);
            return false;
        }
        pthread_mutex_lock(&xc->wlock);
        n = xconn_paused(xc);
        pthread_mutex_unlock(&xc->wlock);
        if (n) {
            return true;
        }
    }
    return true;
}

static void *
xconn_main(void *arg)
{
    struct xconn *xc = arg;
    struct timespec t_stop = {0};

    for (;;) {
        struct pollfd pfd[3];
        int nfd = 0;
        int ri = -1;
        int wi = -1;
        bool reading;
        bool writing;
        bool stopping;
        uint64_t cnt;

        pthread_mutex_lock(&xc->wlock);
        xconn_flush_output(xc);
        stopping = xc->stopping;
        reading = !xconn_paused(xc) && !xc->dead && !stopping;
        writing = xc->oq_head != NULL && !xc->dead;
        if ((stopping && !writing && xc->pending == 0) || xc->dead) {
            pthread_mutex_unlock(&xc->wlock);
            break; /* shutdown: everything answered; or nobody listens */
        }
        pthread_mutex_unlock(&xc->wlock);
        if (stopping) {
            struct timespec now;

            clock_gettime(CLOCK_MONOTONIC, &now);
            if (t_stop.tv_sec == 0) {
                t_stop = now;
            } else if (now.tv_sec - t_stop.tv_sec > 10) {
                break; /* give up on what cannot be delivered */
            }
        }
        if (reading && xc->big == NULL && xc->stage_len >= 4) {
            /* frames staged while reading was paused: submit them first
             * (the socket may have nothing new to wake us for them) */
            size_t before = xc->stage_len;

            if (xconn_parse(xc) < 0) {
                log_peer("%s: protocol error, closing connection", xc->peer);
                break;
            }
            if (xc->stage_len != before) {
                continue;
            }
        }
        if (reading || xc->wfd == xc->rfd) {
            /* even when not reading, hang-ups are seen on the socket */
            pfd[nfd].fd = xc->rfd;
            pfd[nfd].events = (short)((reading ? POLLIN : 0) |
                                      (writing && xc->wfd == xc->rfd
                                           ? POLLOUT
                                           : 0));
            ri = nfd++;
        }
        if (writing && xc->wfd != xc->rfd) {
            pfd[nfd].fd = xc->wfd;
            pfd[nfd].events = POLLOUT;
            wi = nfd++;
        }
        pfd[nfd].fd = xc->evfd;
        pfd[nfd].events = POLLIN;
        nfd++;
        if (poll(pfd, (nfds_t)nfd, stopping ? 100 : -1) < 0 &&
            errno != EINTR) {
            break;
        }
        if (pfd[nfd - 1].revents & POLLIN) {
            ssize_t r = read(xc->evfd, &cnt, sizeof(cnt));

            (void)r;
        }
        if (wi >= 0 && (pfd[wi].revents & (POLLERR | POLLHUP))) {
            break;
        }
        if (ri >= 0 && (pfd[ri].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (!reading) {
                if (pfd[ri].revents & (POLLHUP | POLLERR)) {
                    break;
                }
            } else if (!xconn_read(xc)) {
                break;
            }
        }
    }
    xconn_close(xc);
    return NULL;
}

static void
loop_accept(struct xp_loop *loop, struct listener *l)
{
    for (int i = 0; i < 64; i++) {
        char peer[160];
        int one = 1;
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* out of descriptors: the pending connection stays in the
                 * backlog; do not spin on it */
                log_peer("accept on %s: %s", l->name, strerror(errno));
                usleep(50000);
            }
            return;
        }
        if (atomic_load(&loop->nconns) >= MAX_CONNS) {
            log_peer("%s: %d connections already, refusing another",
                     l->name, MAX_CONNS);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        snprintf(peer, sizeof(peer), "%s#%d", l->name, fd);
        if (xp_loop_add_conn(loop, fd, fd, peer, false) < 0) {
            close(fd);
        }
    }
}

int
xp_loop_run(struct xp_loop *loop, volatile sig_atomic_t *stop,
            volatile sig_atomic_t *stats)
{
    struct epoll_event evs[16];

    while (!*stop) {
        int n;

        if (loop->have_last && atomic_load(&loop->last_gone)) {
            break;
        }
        if (stats != NULL && *stats) {
            *stats = 0;
            p9s_server_dump_stats(loop->srv);
        }
        n = epoll_wait(loop->epfd, evs, 16, 200);
        for (int i = 0; i < n; i++) {
            loop_accept(loop, evs[i].data.ptr);
        }
    }
    return 0;
}

void
xp_loop_shutdown(struct xp_loop *loop, unsigned timeout_ms)
{
    struct timespec t0;
    struct timespec now;
    long waited = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* every connection thread answers what it has read, then closes */
    pthread_mutex_lock(&loop->open_lock);
    for (struct xconn *xc = loop->open; xc != NULL; xc = xc->open_next) {
        pthread_mutex_lock(&xc->wlock);
        xc->stopping = true;
        pthread_mutex_unlock(&xc->wlock);
        xconn_wake(xc);
    }
    pthread_mutex_unlock(&loop->open_lock);
    /* sessions are released once their last request is done */
    while (atomic_load(&loop->nconns) > 0 && waited < 2L * timeout_ms) {
        usleep(10000);
        clock_gettime(CLOCK_MONOTONIC, &now);
        waited = (now.tv_sec - t0.tv_sec) * 1000 +
                 (now.tv_nsec - t0.tv_nsec) / 1000000;
    }
}

/* ---- the transport side of the core contract ------------------------------ */

static int
xconn_reply_buf(struct p9s_conn *c, void *cookie, size_t need,
                const struct iovec **iov, int *iovcnt)
{
    struct xmsg *m = cookie;

    (void)c;
    if (m->outbuf == NULL || m->out.iov_len < need) {
        free(m->outbuf);
        m->outbuf = malloc(need);
        if (m->outbuf == NULL) {
            return -ENOMEM;
        }
        m->out.iov_base = m->outbuf;
        m->out.iov_len = need;
    }
    *iov = &m->out;
    *iovcnt = 1;
    return 0;
}

static void
xmsg_done(struct xmsg *m, bool queued)
{
    struct xconn *xc = m->xc;
    bool wake;

    pthread_mutex_lock(&xc->wlock);
    wake = queued || xconn_paused(xc) || xc->stopping;
    xc->pending--;
    pthread_mutex_unlock(&xc->wlock);
    if (wake) {
        xconn_wake(xc); /* resume reading, send the queue, or finish */
    }
    free(m->in.iov_base);
    free(m->outbuf);
    free(m);
}

static void
xconn_send(struct p9s_conn *c, void *cookie, size_t len)
{
    struct xmsg *m = cookie;
    struct xconn *xc = m->xc;
    const uint8_t *p = m->outbuf;
    size_t left = len;
    bool queued = false;

    (void)c;
    pthread_mutex_lock(&xc->wlock);
    if (xc->oq_head == NULL) {
        while (left > 0 && !xc->dead) {
            ssize_t n = xconn_write_some(xc, p, left);

            if (n > 0) {
                p += n;
                left -= (size_t)n;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            } else {
                xconn_write_failed(xc);
            }
        }
    }
    if (left > 0 && !xc->dead && !xc->closing) {
        /* the connection thread sends the rest when the socket drains */
        struct obuf *o = malloc(sizeof(*o) + left);

        if (o == NULL) {
            xconn_write_failed(xc); /* cannot keep the stream intact */
        } else {
            o->next = NULL;
            o->len = left;
            o->off = 0;
            memcpy(o->data, p, left);
            if (xc->oq_tail != NULL) {
                xc->oq_tail->next = o;
            } else {
                xc->oq_head = o;
            }
            xc->oq_tail = o;
            xc->oq_bytes += left;
            queued = true;
        }
    }
    pthread_mutex_unlock(&xc->wlock);
    xmsg_done(m, queued);
}

static void
xconn_drop(struct p9s_conn *c, void *cookie)
{
    (void)c;
    xmsg_done(cookie, false);
}

static const struct p9s_conn_ops xconn_ops = {
    .reply_buf = xconn_reply_buf,
    .send = xconn_send,
    .drop = xconn_drop,
    .release = xconn_release,
};
