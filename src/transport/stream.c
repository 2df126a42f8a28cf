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
#include <limits.h>
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
#include <time.h>
#include <unistd.h>

#include "util/busypoll.h"
#include "util/fdbudget.h"
#include "util/log.h"
#include "virtfs/p9.h"
#include "virtfs/server.h"

#define STAGE_SIZE (64 * 1024)
#define BIG_FRAME (8 * 1024) /* larger partial frames skip the staging copy */
#define PAUSE_AT 128         /* stop reading with this many requests pending */
#define OQ_PAUSE_BYTES (8u << 20) /* ... or this much output queued */
#define CONN_STACK (256 * 1024)
#define MAX_CONNS 4096        /* a thread each, over all listeners */
#define STAGE_MIN (4 * 1024)  /* a large frame's buffer starts at this ... */
#define ACCEPT_BACKOFF_MS 100 /* accept failed for want of resources */

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
    bool tcp;
    atomic_uint nconns; /* connections counted against this listener */
    long backoff_until; /* ms, monotonic; loop thread only */
    bool paused;        /* out of epoll during a back-off */
    struct listener *next;
};

struct xconn {
    struct xp_loop *loop;
    int rfd;
    int wfd;
    int evfd;          /* wakes the connection thread */
    atomic_uint wakes; /* xconn_wake calls: seen by a spinning thread */
    bool sock;         /* rfd is a socket (send/shutdown usable) */
    bool last;
    char peer[160];
    struct listener *lst;  /* NULL for --stdio and xp_loop_add_conn */
    atomic_bool uncounted; /* no longer counted in lst->nconns */
    atomic_bool attached;  /* an Rattach was sent: never reclaimed */
    atomic_bool mid_frame; /* part of a frame has arrived */
    atomic_long last_rx;   /* ms of the last byte read (or of connect) */
    long frame_t0;         /* ms the current partial frame began (thread) */
    struct p9s_conn *sc;
    struct xconn *open_prev, *open_next; /* loop's open list (open_lock) */
    pthread_mutex_t wlock; /* one writer at a time; guards the fields below */
    bool dead;             /* the write side failed */
    bool closing;          /* the connection thread is done with it */
    bool stopping;         /* shutdown: answer what is in flight, then close */
    unsigned pending;      /* submitted, not yet sent/dropped */
    struct obuf *oq_head;  /* output queue */
    struct obuf *oq_tail;
    size_t oq_bytes;
    /* read state (connection thread only) */
    uint8_t *stage;
    size_t stage_len; /* bytes in stage */
    uint8_t *big;     /* a frame larger than what is staged */
    size_t big_len;   /* its length */
    size_t big_cap;   /* allocated: grows with what has arrived */
    size_t big_got;
    struct bp_state bp; /* busy-poll (connection thread only) */
    /* the data of large Rreads, spliced from the file on its way to the
     * socket (xconn_stage_fd; connection thread only): -1 until the first
     * such read; no_pipe: cannot be had, reads are copied */
    pthread_t thread;
    int pipe_r;
    int pipe_w;
    size_t pipe_cap;
    bool no_pipe;
    unsigned pipe_wait; /* large reads to copy before asking again */
};

/*
 * One request on its way through the core.  A small frame (copied out of
 * the staging buffer) lives at the end of the xmsg, and a small reply in
 * out_inl, so that a metadata RPC costs one allocation here, not three.
 */
#define XMSG_OUT_INLINE 256

struct xmsg {
    struct xconn *xc;
    struct iovec in;
    struct iovec out;
    uint8_t *in_owned; /* in.iov_base when allocated apart, else NULL */
    uint8_t *outbuf;   /* out.iov_base when allocated apart, else NULL */
    size_t piped;      /* reply data waiting in xc's pipe (xconn_stage_fd) */
    uint8_t out_inl[XMSG_OUT_INLINE];
    uint8_t in_inl[]; /* the frame, when it is copied here */
};

struct xp_loop {
    struct p9s_server *srv;
    int epfd;
    struct listener *listeners;
    atomic_int nconns;
    atomic_bool last_gone;
    unsigned max_conns; /* per listener */
    unsigned max_pipes; /* read pipes at once (xconn_pipe) */
    atomic_uint npipes;
    unsigned frame_timeout_ms;
    struct bp_group bp;       /* --busy-poll (see util/busypoll.h) */
    atomic_ulong spliced;     /* Rreads whose data went into the pipe */
    void (*stats_fn)(void *); /* xp_loop_on_stats */
    void *stats_arg;
    bool have_last;
    pthread_mutex_t open_lock;
    struct xconn *open; /* connections whose thread runs (open_lock) */
};

static const struct p9s_conn_ops xconn_ops;

static void xconn_drop_output_locked(struct xconn *xc);

static long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The connection no longer takes a place of its listener (closed, or
 * being reclaimed). */
static void
xconn_uncount(struct xconn *xc)
{
    if (xc->lst != NULL && !atomic_exchange(&xc->uncounted, true)) {
        atomic_fetch_sub(&xc->lst->nconns, 1);
    }
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
    loop->max_conns = XP_DEFAULT_MAX_CONNS;
    loop->max_pipes = XP_DEFAULT_READ_PIPES;
    loop->frame_timeout_ms = XP_DEFAULT_FRAME_TIMEOUT * 1000u;
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
xp_loop_set_limits(struct xp_loop *loop, const struct xp_limits *lim)
{
    loop->max_conns = lim->max_conns ? lim->max_conns : XP_DEFAULT_MAX_CONNS;
    loop->max_pipes = lim->read_pipes ? lim->read_pipes : XP_DEFAULT_READ_PIPES;
    loop->frame_timeout_ms = lim->frame_timeout * 1000u;
    bp_group_init(&loop->bp, lim->busy_poll_us);
}

unsigned long
xp_loop_busy_polls(struct xp_loop *loop)
{
    return atomic_load(&loop->bp.spins);
}

unsigned long
xp_loop_spliced_reads(struct xp_loop *loop)
{
    return atomic_load(&loop->spliced);
}

unsigned
xp_loop_read_pipes(struct xp_loop *loop)
{
    return atomic_load(&loop->npipes);
}

void
xp_loop_on_stats(struct xp_loop *loop, void (*fn)(void *), void *arg)
{
    loop->stats_fn = fn;
    loop->stats_arg = arg;
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
    {
        struct sockaddr_storage ss = {.ss_family = AF_UNSPEC};
        socklen_t sl = sizeof(ss);

        l->tcp = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
                 (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
    }
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
    ssize_t r;

    /* first: a spinning thread (xconn_spin) looks at this, not at evfd */
    atomic_fetch_add_explicit(&xc->wakes, 1, memory_order_release);
    r = write(xc->evfd, &one, sizeof(one));
    (void)r; /* a full counter wakes the thread as well */
}

static void *xconn_main(void *arg);
static void xconn_pipe_close(struct xconn *xc);

static int
add_conn(struct xp_loop *loop, struct listener *lst, int rfd, int wfd,
         const char *peer, bool last)
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
    xc->pipe_r = -1;
    xc->pipe_w = -1;
    xc->last = last;
    xc->lst = lst;
    atomic_init(&xc->uncounted, lst == NULL);
    atomic_init(&xc->last_rx, now_ms());
    atomic_init(&xc->wakes, 0);
    snprintf(xc->peer, sizeof(xc->peer), "%s", peer);
    pthread_mutex_init(&xc->wlock, NULL);
    /* the staging buffer comes with the first byte: an idle connection
     * costs no buffer */
    xc->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (xc->evfd < 0) {
        err = -errno;
        goto out_free;
    }
    if (lst != NULL && (xc->evfd = fdbudget_admit(xc->evfd)) < 0) {
        err = xc->evfd; /* the reserve is for control paths */
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
    if (lst != NULL) {
        atomic_fetch_add(&lst->nconns, 1);
    }
    atomic_fetch_add(&loop->nconns, 1);
    open_link(loop, xc);
    log_info("%s: connected", peer); /* before the thread logs anything */
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, CONN_STACK);
    err = -pthread_create(&th, &attr, xconn_main, xc);
    pthread_attr_destroy(&attr);
    if (err < 0) {
        log_err("%s: cannot start a connection thread: %s", peer,
                strerror(-err));
        xconn_uncount(xc);
        open_unlink(loop, xc);
        pthread_mutex_lock(&xc->wlock);
        xc->closing = true;
        pthread_mutex_unlock(&xc->wlock);
        /* the caller keeps (and closes) rfd/wfd on failure */
        xc->rfd = -1;
        xc->wfd = -1;
        p9s_conn_close(xc->sc); /* releases xc */
        return err;
    }
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

int
xp_loop_add_conn(struct xp_loop *loop, int rfd, int wfd, const char *peer,
                 bool last)
{
    return add_conn(loop, NULL, rfd, wfd, peer, last);
}

/* The connection thread is done with this connection. */
static void
xconn_close(struct xconn *xc)
{
    xconn_uncount(xc);
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
    if (xc->rfd >= 0) {
        close(xc->rfd);
    }
    if (xc->wfd != xc->rfd && xc->wfd >= 0) {
        close(xc->wfd);
    }
    close(xc->evfd);
    xconn_pipe_close(xc);
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

/* 'more': more of the reply follows at once (spliced) */
static ssize_t
xconn_write_some(struct xconn *xc, const void *p, size_t n, bool more)
{
    return xc->sock ? send(xc->wfd, p, n,
                           MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0))
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
        ssize_t n =
            xconn_write_some(xc, o->data + o->off, o->len - o->off, false);

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

/*
 * A message for a frame of 'len' bytes: with 'buf' (an owned buffer, which
 * the message takes over, or frees on failure) it is the frame; without,
 * the frame is to be copied into the message.  NULL when out of memory.
 */
static struct xmsg *
xmsg_new(struct xconn *xc, uint8_t *buf, size_t len)
{
    struct xmsg *m = malloc(sizeof(*m) + (buf == NULL ? len : 0));

    if (m == NULL) {
        free(buf);
        return NULL;
    }
    m->xc = xc;
    m->in.iov_base = buf != NULL ? buf : m->in_inl;
    m->in.iov_len = len;
    m->in_owned = buf;
    m->out.iov_base = NULL;
    m->out.iov_len = 0;
    m->outbuf = NULL;
    m->piped = 0;
    return m;
}

static void
xmsg_free(struct xmsg *m)
{
    free(m->in_owned);
    free(m->outbuf);
    free(m);
}

/* Hand one complete frame to the core.  Called with xc->wlock held. */
static int
xconn_submit_locked(struct xconn *xc, struct xmsg *m, bool alone)
{
    unsigned flags = 0;

    xc->pending++;
    if (alone && xc->pending == 1) {
        flags = P9S_SUBMIT_INLINE; /* nothing else in flight: run it here */
    }
    pthread_mutex_unlock(&xc->wlock);
    return p9s_conn_submit_flags(xc->sc, &m->in, 1, m->in.iov_len, m, flags);
}

/* Hand one complete frame (an owned buffer) to the core. */
static int
xconn_submit(struct xconn *xc, uint8_t *buf, size_t len, bool alone)
{
    struct xmsg *m = xmsg_new(xc, buf, len);

    if (m == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&xc->wlock);
    return xconn_submit_locked(xc, m, alone);
}

/*
 * Hand the staging buffer over as the buffer of the 'flen'-byte frame at
 * its start, instead of copying the frame out: what follows the frame
 * moves to a new staging buffer, or, with nothing after it, the next
 * read allocates one.  NULL when out of memory (nothing changed).
 */
static uint8_t *
xconn_take_stage(struct xconn *xc, size_t flen)
{
    uint8_t *buf = xc->stage;
    size_t rest = xc->stage_len - flen;

    if (rest > 0) {
        uint8_t *fresh = malloc(STAGE_SIZE);

        if (fresh == NULL) {
            return NULL;
        }
        memcpy(fresh, buf + flen, rest);
        xc->stage = fresh;
    } else {
        xc->stage = NULL;
    }
    xc->stage_len = rest;
    return buf;
}

/* Parse complete frames out of the staging buffer; *nframes counts them. */
static int
xconn_parse(struct xconn *xc, unsigned *nframes)
{
    size_t pos = 0;
    int err = 0;

    while (xc->stage_len - pos >= 4) {
        long flen;
        struct xmsg *m;
        bool alone;

        /* the pending limit holds per frame, not per read: a read may
         * bring hundreds of small frames (e.g. a chain of Tflush).  The
         * lock taken for this look is held until the frame is submitted
         * (xconn_submit_locked), or released where the loop ends. */
        pthread_mutex_lock(&xc->wlock);
        if (xconn_paused(xc)) {
            pthread_mutex_unlock(&xc->wlock);
            break; /* the rest stays staged until replies drain */
        }
        flen = p9s_frame_len(xc->sc, xc->stage + pos);
        if (flen < 0) {
            pthread_mutex_unlock(&xc->wlock);
            err = -EPROTO;
            break;
        }
        if ((size_t)flen > xc->stage_len - pos) {
            pthread_mutex_unlock(&xc->wlock);
            if ((size_t)flen > BIG_FRAME) {
                /*
                 * A large frame: read the rest straight into its buffer.
                 * The buffer grows with what arrives (a peer that sends
                 * only a size header pins a few KiB, not msize).
                 */
                size_t got = xc->stage_len - pos;
                size_t cap = got * 2 > STAGE_MIN ? got * 2 : STAGE_MIN;

                if (cap > (size_t)flen) {
                    cap = (size_t)flen;
                }
                xc->big = malloc(cap);
                if (xc->big == NULL) {
                    err = -ENOMEM;
                    break;
                }
                xc->big_len = (size_t)flen;
                xc->big_cap = cap;
                xc->big_got = got;
                memcpy(xc->big, xc->stage + pos, got);
                pos = xc->stage_len;
            }
            break;
        }
        if (pos == 0 && (size_t)flen >= STAGE_SIZE / 2) {
            /* a large frame at the start (a Twrite): the staging buffer
             * becomes the frame's, the rest (if any) moves to a new one */
            uint8_t *buf = xconn_take_stage(xc, (size_t)flen);

            m = buf != NULL ? xmsg_new(xc, buf, (size_t)flen) : NULL;
        } else {
            m = xmsg_new(xc, NULL, (size_t)flen);
            if (m != NULL) {
                memcpy(m->in_inl, xc->stage + pos, (size_t)flen);
                pos += (size_t)flen;
            }
        }
        if (m == NULL) {
            pthread_mutex_unlock(&xc->wlock);
            err = -ENOMEM;
            break;
        }
        alone = xc->stage_len - pos < 4; /* nothing more buffered */
        (*nframes)++;
        err = xconn_submit_locked(xc, m, alone);
        if (err < 0) {
            break;
        }
    }
    if (pos > 0) {
        memmove(xc->stage, xc->stage + pos, xc->stage_len - pos);
        xc->stage_len -= pos;
    }
    return err;
}

/* Room for the next read of a large frame; false when out of memory. */
static bool
xconn_big_room(struct xconn *xc)
{
    size_t cap;
    uint8_t *p;

    if (xc->big_got < xc->big_cap) {
        return true;
    }
    /* x4: a large write arriving at full speed is moved at most twice */
    cap = xc->big_cap * 4 < xc->big_len ? xc->big_cap * 4 : xc->big_len;
    p = realloc(xc->big, cap);
    if (p == NULL) {
        return false;
    }
    xc->big = p;
    xc->big_cap = cap;
    return true;
}

/*
 * After reading or parsing: the deadline of a partial frame runs from its
 * first byte (approximated by the time the frame before it completed).
 */
static void
xconn_frame_state(struct xconn *xc, unsigned nframes)
{
    if (xc->stage_len == 0 && xc->big == NULL) {
        xc->frame_t0 = 0;
    } else if (xc->frame_t0 == 0 || nframes > 0) {
        xc->frame_t0 = now_ms();
    }
    atomic_store(&xc->mid_frame, xc->frame_t0 != 0);
}

/*
 * Where the next read goes: the large frame's buffer or the staging buffer
 * (allocated here when a hand-over took it).  False when out of memory.
 */
static bool
xconn_read_room(struct xconn *xc, uint8_t **p, size_t *want)
{
    if (xc->stage == NULL) { /* the first byte, or after a hand-over */
        xc->stage = malloc(STAGE_SIZE);
        if (xc->stage == NULL) {
            return false;
        }
    }
    if (xc->big != NULL) {
        if (!xconn_big_room(xc)) {
            return false;
        }
        *p = xc->big + xc->big_got;
        *want = xc->big_cap - xc->big_got;
    } else {
        *p = xc->stage + xc->stage_len;
        *want = STAGE_SIZE - xc->stage_len;
    }
    return true;
}

/*
 * Read what is there; false when the connection must close.  'first' is
 * the result of a read the busy-poll spin made already (bytes, 0 at the
 * end of the stream, -errno), or XR_NONE.
 */
#define XR_NONE SSIZE_MAX /* no read returns this much */
static bool
xconn_read(struct xconn *xc, ssize_t first)
{
    unsigned nframes = 0;
    bool ok = true;
    bool paused;

    for (int rounds = 0; rounds < 16; rounds++) {
        uint8_t *p;
        size_t want;
        ssize_t n;

        if (!xconn_read_room(xc, &p, &want)) {
            log_peer("%s: out of memory, closing connection", xc->peer);
            return false;
        }
        if (rounds == 0 && first != XR_NONE) {
            n = first; /* read into p by the spin, which had the same room */
        } else {
            n = read(xc->rfd, p, want);
            if (n < 0) {
                n = -errno;
            }
        }
        if (n == 0) {
            return false;
        }
        if (n < 0) {
            if (n == -EAGAIN || n == -EWOULDBLOCK) {
                break;
            }
            ok = n == -EINTR;
            break;
        }
        atomic_store(&xc->last_rx, now_ms());
        if (xc->big != NULL) {
            xc->big_got += (size_t)n;
            if (xc->big_got == xc->big_len) {
                uint8_t *buf = xc->big;

                xc->big = NULL;
                nframes++;
                if (xconn_submit(xc, buf, xc->big_len, xc->stage_len == 0) <
                    0) {
                    return false;
                }
            }
            if ((size_t)n < want) {
                break; /* drained: see below */
            }
            continue;
        }
        xc->stage_len += (size_t)n;
        if (xconn_parse(xc, &nframes) < 0) {
            log_peer("%s: protocol error, closing connection", xc->peer);
            return false;
        }
        pthread_mutex_lock(&xc->wlock);
        paused = xconn_paused(xc);
        pthread_mutex_unlock(&xc->wlock);
        /*
         * A short read drained the socket (or pipe): another read now
         * would only fail with EAGAIN, one syscall per request for a
         * closed-loop client.  poll() is level-triggered and reports
         * whatever arrives next.
         */
        if (paused || (size_t)n < want) {
            break;
        }
    }
    xconn_frame_state(xc, nframes);
    return ok;
}

/*
 * Before sleeping in poll(), try to read without sleeping while the
 * busy-poll rules allow (util/busypoll.h), so that a closed-loop client's
 * next request is read without the sleep and wake-up (two context
 * switches).  The spin reads the connection itself (its descriptor is
 * non-blocking), so a request it catches costs one read() rather than a
 * poll() and then a read(); a wake-up of the thread (xconn_wake) after
 * 'wakes' (the count the caller saw before it looked at the connection's
 * state) is seen in memory and ends the spin.  Returns what the last read
 * returned (bytes, 0 at the end of the stream, or -errno other than
 * EAGAIN) for xconn_read(), or XR_NONE when the caller should poll.
 */
/* A read result of the spin that means "nothing yet, look again". */
static bool
xconn_spin_empty(ssize_t n)
{
    return n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR;
}

static ssize_t
xconn_spin(struct xconn *xc, unsigned wakes)
{
    uint64_t end = bp_spin_begin(&xc->loop->bp, &xc->bp);
    uint64_t t;
    uint8_t *p;
    size_t want;
    ssize_t n;

    if (end == 0) {
        return XR_NONE;
    }
    if (!xconn_read_room(xc, &p, &want)) {
        /* xconn_read() tries again, and says so */
        bp_spin_end(&xc->loop->bp, &xc->bp, bp_now_ns(), true);
        return XR_NONE;
    }
    do {
        n = read(xc->rfd, p, want);
        if (n < 0) {
            n = -errno;
        }
        t = bp_now_ns();
        bp_spin_look(&xc->bp, t);
    } while (xconn_spin_empty(n) && t < end &&
             atomic_load_explicit(&xc->wakes, memory_order_acquire) == wakes);
    if (xconn_spin_empty(n)) {
        /* nothing came (or a wake-up did): poll, which sees either */
        bp_spin_end(&xc->loop->bp, &xc->bp, t,
                    atomic_load_explicit(&xc->wakes, memory_order_relaxed) !=
                        wakes);
        return XR_NONE;
    }
    bp_spin_end(&xc->loop->bp, &xc->bp, t, true);
    return n;
}

static void *
xconn_main(void *arg)
{
    struct xconn *xc = arg;
    struct timespec t_stop = {0};
    unsigned frame_ms = xc->loop->frame_timeout_ms;
    bool bp_on = xc->loop->bp.window_us > 0;

    xc->thread = pthread_self(); /* before the first request is read */
    for (;;) {
        struct pollfd pfd[3];
        int nfd = 0;
        int ri = -1;
        int wi = -1;
        int timeout = -1;
        bool reading;
        bool writing;
        bool stopping;
        uint64_t cnt;
        /* before the state is looked at: a wake-up after this ends a spin */
        unsigned wakes = atomic_load_explicit(&xc->wakes, memory_order_acquire);

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
            timeout = 100;
        }
        if (reading && xc->big == NULL && xc->stage_len >= 4) {
            /* frames staged while reading was paused: submit them first
             * (the socket may have nothing new to wake us for them) */
            size_t before = xc->stage_len;
            unsigned nframes = 0;

            if (xconn_parse(xc, &nframes) < 0) {
                log_peer("%s: protocol error, closing connection", xc->peer);
                break;
            }
            xconn_frame_state(xc, nframes);
            if (xc->stage_len != before) {
                continue;
            }
        }
        if (!stopping && reading && xc->frame_t0 != 0 && frame_ms > 0) {
            /* a partial frame holds a buffer: it has a deadline */
            long left = xc->frame_t0 + (long)frame_ms - now_ms();

            if (left <= 0) {
                log_peer("%s: frame not completed within %u s, closing "
                         "connection",
                         xc->peer, frame_ms / 1000);
                break;
            }
            timeout = (int)left;
        }
        if (reading || xc->wfd == xc->rfd) {
            /* even when not reading, hang-ups are seen on the socket */
            pfd[nfd].fd = xc->rfd;
            pfd[nfd].events =
                (short)((reading ? POLLIN : 0) |
                        (writing && xc->wfd == xc->rfd ? POLLOUT : 0));
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
        if (reading && !writing && !stopping) {
            ssize_t got = xconn_spin(xc, wakes);

            if (got != XR_NONE) {
                /* caught it spinning (so busy-poll is on): read already */
                if (got > 0) {
                    bp_note_request(&xc->loop->bp, xc);
                }
                if (!xconn_read(xc, got)) {
                    break;
                }
                continue;
            }
        }
        bp_sleeping(&xc->loop->bp, &xc->bp);
        if (poll(pfd, (nfds_t)nfd, timeout) < 0 && errno != EINTR) {
            break;
        }
        if (ri >= 0 && (pfd[ri].revents & POLLIN)) {
            bp_woken(&xc->loop->bp, &xc->bp);
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
            } else {
                if (bp_on && (pfd[ri].revents & POLLIN)) {
                    bp_note_request(&xc->loop->bp, xc);
                }
                if (!xconn_read(xc, XR_NONE)) {
                    break;
                }
            }
        }
    }
    xconn_close(xc);
    return NULL;
}

/*
 * The listener 'l' (or, with l == NULL, the whole loop) is full and a
 * client waits: drop the connection that never attached, has nothing in
 * flight and no partial frame, and was idle longest.  A connection that
 * never sent a byte qualifies only here, when someone else needs its
 * place.  Returns true if one was dropped.
 */
static bool
reclaim_one(struct xp_loop *loop, struct listener *l, const char *waiting)
{
    struct xconn *best = NULL;
    long best_rx = 0;
    bool done = false;

    pthread_mutex_lock(&loop->open_lock);
    for (struct xconn *xc = loop->open; xc != NULL; xc = xc->open_next) {
        long rx;
        bool busy;

        if (xc->lst == NULL || (l != NULL && xc->lst != l) ||
            atomic_load(&xc->uncounted) || atomic_load(&xc->attached) ||
            atomic_load(&xc->mid_frame)) {
            continue;
        }
        pthread_mutex_lock(&xc->wlock);
        busy = xc->pending > 0 || xc->oq_head != NULL || xc->closing;
        pthread_mutex_unlock(&xc->wlock);
        rx = atomic_load(&xc->last_rx);
        if (!busy && (best == NULL || rx < best_rx)) {
            best = xc;
            best_rx = rx;
        }
    }
    if (best != NULL) {
        log_peer("%s: dropped (no attach, idle %ld s) to admit a new client "
                 "on %s",
                 best->peer, (now_ms() - best_rx) / 1000, waiting);
        xconn_uncount(best);
        /* its thread sees the hang-up and closes; best stays valid while
         * open_lock is held (it unlinks itself first) */
        shutdown(best->rfd, SHUT_RDWR);
        done = true;
    }
    pthread_mutex_unlock(&loop->open_lock);
    return done;
}

static void
peer_name(struct listener *l, int fd, char *buf, size_t size)
{
    struct sockaddr_storage ss = {.ss_family = AF_UNSPEC};
    socklen_t sl = sizeof(ss);
    char host[64] = "?";
    char port[16] = "?";

    if (l->tcp && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
                    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
        snprintf(buf, size, "%.96s#%d(%s%s%s:%s)", l->name, fd,
                 ss.ss_family == AF_INET6 ? "[" : "", host,
                 ss.ss_family == AF_INET6 ? "]" : "", port);
        return;
    }
    if (!l->tcp) {
        struct ucred uc;
        socklen_t ul = sizeof(uc);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) == 0) {
            snprintf(buf, size, "%.96s#%d(pid %ld uid %u)", l->name, fd,
                     (long)uc.pid, (unsigned)uc.uid);
            return;
        }
    }
    snprintf(buf, size, "%.96s#%d", l->name, fd);
}

/* Stop watching a listener for a while: accept cannot succeed now. */
static void
listener_backoff(struct xp_loop *loop, struct listener *l)
{
    struct epoll_event ev = {.events = 0, .data.ptr = l};

    l->backoff_until = now_ms() + ACCEPT_BACKOFF_MS;
    if (!l->paused && epoll_ctl(loop->epfd, EPOLL_CTL_MOD, l->fd, &ev) == 0) {
        l->paused = true;
    }
}

static void
listeners_resume(struct xp_loop *loop)
{
    long now = now_ms();

    for (struct listener *l = loop->listeners; l != NULL; l = l->next) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};

        if (l->paused && now >= l->backoff_until &&
            epoll_ctl(loop->epfd, EPOLL_CTL_MOD, l->fd, &ev) == 0) {
            l->paused = false;
        }
    }
}

/*
 * Accept failed for want of descriptors or memory.  Log it, then take the
 * waiting client off the backlog with a spare descriptor and close it, so
 * it sees the refusal instead of hanging (true: go on with the next one);
 * without a spare, back off.
 */
static bool
accept_starved(struct xp_loop *loop, struct listener *l, int err)
{
    int fd = -1;

    log_peer("accept on %s: %s; refusing new clients for now", l->name,
             strerror(err));
    if ((err == EMFILE || err == ENFILE) && fdbudget_release(1) == 1) {
        fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            close(fd);
        }
        fdbudget_refill();
    }
    if (fd < 0) {
        listener_backoff(loop, l); /* nothing to do but wait */
    }
    return fd >= 0; /* one refused: the next waiting client may follow */
}

static void
loop_accept(struct xp_loop *loop, struct listener *l)
{
    for (int i = 0; i < 64; i++) {
        char peer[160];
        int one = 1;
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
                 errno == ENOBUFS) &&
                accept_starved(loop, l, errno)) {
                continue;
            }
            return;
        }
        peer_name(l, fd, peer, sizeof(peer));
        fd = fdbudget_admit(fd);
        if (fd < 0) {
            /* the last descriptors are kept for control paths */
            log_peer("%s: refused: descriptors are running out (%u kept in "
                     "reserve)",
                     peer, fdbudget_reserve());
            continue; /* closed again: the next one may be refused too */
        }
        if ((atomic_load(&l->nconns) >= loop->max_conns &&
             !reclaim_one(loop, l, peer)) ||
            (atomic_load(&loop->nconns) >= MAX_CONNS &&
             !reclaim_one(loop, NULL, peer))) {
            log_peer("%s: refused: %u connections on %s (all attached or "
                     "busy)",
                     peer, atomic_load(&l->nconns), l->name);
            close(fd);
            continue;
        }
        if (l->tcp) {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        if (add_conn(loop, l, fd, fd, peer, false) < 0) {
            log_peer("%s: refused: cannot set up the connection", peer);
            close(fd);
        }
    }
}

int
xp_loop_run(struct xp_loop *loop, atomic_int *stop, atomic_int *stats)
{
    struct epoll_event evs[16];

    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        int n;

        if (loop->have_last && atomic_load(&loop->last_gone)) {
            break;
        }
        if (stats != NULL &&
            atomic_exchange_explicit(stats, 0, memory_order_relaxed)) {
            log_force(true); /* asked for: shown whatever --log-level */
            p9s_server_dump_stats(loop->srv);
            log_info("stats: busy-poll: %lu spins on connection threads",
                     atomic_load(&loop->bp.spins));
            log_info("stats: reads spliced from the file (no copy through "
                     "a reply buffer): %lu",
                     atomic_load(&loop->spliced));
            if (loop->stats_fn != NULL) {
                loop->stats_fn(loop->stats_arg);
            }
            log_force(false);
        }
        bool paused = false;

        listeners_resume(loop);
        for (struct listener *l = loop->listeners; l != NULL; l = l->next) {
            paused |= l->paused;
        }
        n = epoll_wait(loop->epfd, evs, 16, paused ? 20 : 200);
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

/* ---- Rread data spliced from the file ------------------------------------ */

static void
xconn_pipe_close(struct xconn *xc)
{
    if (xc->pipe_r >= 0) {
        close(xc->pipe_r);
        close(xc->pipe_w);
        atomic_fetch_sub(&xc->loop->npipes, 1);
    }
    xc->pipe_r = -1;
    xc->pipe_w = -1;
}

/*
 * The connection's pipe, made with its first large read and sized for the
 * session's msize where the kernel allows (pipe-max-size, the user's pipe
 * pages); false if it cannot be had: then reads are copied, as before.
 * Its two descriptors are the connection's, like its socket; they never
 * come from the reserve (util/fdbudget.h).  At most max_pipes connections
 * hold one at once: a pipe's pages count against the pipe quota of the
 * daemon's user, which other processes of that user share.  A connection
 * refused one tries again 1,024 large reads later.
 */
static bool
xconn_pipe(struct xconn *xc)
{
    int p[2];
    int cap;
    uint32_t want = p9s_conn_msize(xc->sc) + 4096u;

    if (xc->pipe_r >= 0) {
        return true;
    }
    if (xc->no_pipe || xc->pipe_wait > 0) {
        xc->pipe_wait -= xc->pipe_wait > 0;
        return false;
    }
    if (atomic_fetch_add(&xc->loop->npipes, 1) >= xc->loop->max_pipes) {
        atomic_fetch_sub(&xc->loop->npipes, 1);
        xc->pipe_wait = 1024;
        return false;
    }
    xc->no_pipe = true; /* one try per connection */
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
        atomic_fetch_sub(&xc->loop->npipes, 1);
        return false;
    }
    if (xc->lst != NULL &&
        ((p[0] = fdbudget_admit(p[0])) < 0 || fdbudget_admit(p[1]) < 0)) {
        if (p[0] >= 0) {
            close(p[0]); /* admit closed p[1] */
        } else {
            close(p[1]);
        }
        atomic_fetch_sub(&xc->loop->npipes, 1);
        return false;
    }
    (void)fcntl(p[1], F_SETPIPE_SZ, (int)want); /* else the default */
    cap = fcntl(p[1], F_GETPIPE_SZ);
    if (cap < 2 * 4096) {
        close(p[0]);
        close(p[1]);
        atomic_fetch_sub(&xc->loop->npipes, 1);
        return false;
    }
    xc->pipe_r = p[0];
    xc->pipe_w = p[1];
    xc->pipe_cap = (size_t)cap;
    xc->no_pipe = false;
    return true;
}

/*
 * conn ops stage_fd: splice the read's data from the file into the
 * connection's pipe (page references, no copy); xconn_send splices them on
 * to the socket after the header.  Only on the connection's own thread (a
 * request that arrived alone runs there), only on a socket, and only when
 * the pages of the range fit the pipe at once.
 */
static ssize_t
xconn_stage_fd(struct p9s_conn *c, void *cookie, int fd, uint64_t off,
               size_t count)
{
    struct xmsg *m = cookie;
    struct xconn *xc = m->xc;
    loff_t pos = (loff_t)off;
    size_t got = 0;

    (void)c;
    if (!xc->sock || !pthread_equal(pthread_self(), xc->thread) ||
        m->piped != 0 || !xconn_pipe(xc) ||
        off % 4096u + count > xc->pipe_cap) {
        return -ENOTSUP;
    }
    while (got < count) {
        ssize_t n = splice(fd, &pos, xc->pipe_w, NULL, count - got, 0);

        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0 || got > 0) {
            break; /* end of file; or short: an error comes with the next */
        }
        /* EINVAL: no splice from this file; read() copies */
        return errno == EINVAL || errno == EAGAIN ? -ENOTSUP : -errno;
    }
    m->piped = got;
    if (got > 0) {
        atomic_fetch_add(&xc->loop->spliced, 1); /* before the client has it */
    }
    return (ssize_t)got;
}

/*
 * A send of reply bytes (send, write or splice, wlock held) returned n:
 * true when the caller goes on (bytes went out, or EINTR: again); false
 * when the socket is full (EAGAIN: the connection thread sends the rest)
 * or the write side failed (then marked so).
 */
static bool
xconn_sent(struct xconn *xc, ssize_t n)
{
    if (n > 0 || (n < 0 && errno == EINTR)) {
        return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        xconn_write_failed(xc);
    }
    return false;
}

/* Splice up to 'n' piped bytes to the socket while it takes them (wlock
 * held); returns how many are still in the pipe. */
static size_t
xconn_splice_out(struct xconn *xc, size_t n)
{
    while (n > 0 && !xc->dead) {
        ssize_t k =
            splice(xc->pipe_r, NULL, xc->wfd, NULL, n, SPLICE_F_NONBLOCK);

        if (!xconn_sent(xc, k)) {
            break;
        }
        n -= k > 0 ? (size_t)k : 0;
    }
    return n;
}

/* Read the 'n' bytes left in the pipe into dst (for the output queue);
 * 0, or -1 with the pipe closed. */
static int
xconn_pipe_drain(struct xconn *xc, uint8_t *dst, size_t n)
{
    while (n > 0) {
        ssize_t k = read(xc->pipe_r, dst, n);

        if (k > 0) {
            dst += k;
            n -= (size_t)k;
        } else if (k < 0 && errno == EINTR) {
            continue;
        } else {
            xconn_pipe_close(xc);
            return -1;
        }
    }
    return 0;
}

/* ---- the transport side of the core contract ------------------------------ */

static int
xconn_reply_buf(struct p9s_conn *c, void *cookie, size_t need,
                const struct iovec **iov, int *iovcnt)
{
    struct xmsg *m = cookie;

    (void)c;
    if (m->out.iov_base == NULL || m->out.iov_len < need) {
        if (need <= sizeof(m->out_inl)) {
            m->out.iov_base = m->out_inl;
        } else {
            free(m->outbuf);
            m->outbuf = malloc(need);
            if (m->outbuf == NULL) {
                m->out.iov_base = NULL;
                return -ENOMEM;
            }
            m->out.iov_base = m->outbuf;
        }
        m->out.iov_len = need;
    }
    *iov = &m->out;
    *iovcnt = 1;
    return 0;
}

/*
 * The request of m is answered (or dropped): one fewer pending, and m is
 * freed.  Called with xc->wlock held, which it drops before it wakes the
 * connection thread (to resume reading, send the queue, or finish).
 */
static void
xmsg_done_locked(struct xmsg *m, bool queued)
{
    struct xconn *xc = m->xc;
    bool wake = queued || xconn_paused(xc) || xc->stopping;

    xc->pending--;
    pthread_mutex_unlock(&xc->wlock);
    if (wake) {
        xconn_wake(xc);
    }
    xmsg_free(m);
}

static void
xmsg_done(struct xmsg *m, bool queued)
{
    pthread_mutex_lock(&m->xc->wlock);
    xmsg_done_locked(m, queued);
}

static void
xconn_send(struct p9s_conn *c, void *cookie, size_t len)
{
    struct xmsg *m = cookie;
    struct xconn *xc = m->xc;
    const uint8_t *p = m->out.iov_base;
    size_t piped = m->piped;
    size_t left;
    bool queued = false;

    (void)c;
    m->piped = 0;
    if (piped >= len) {
        xconn_pipe_close(xc); /* not part of this reply: discard it */
        piped = 0;
    }
    left = len - piped;
    if (len > 4 && p[4] == P9_RATTACH) {
        atomic_store(&xc->attached, true); /* holds fids: never reclaimed */
    }
    pthread_mutex_lock(&xc->wlock);
    if (xc->oq_head == NULL) {
        while (left > 0 && !xc->dead) {
            ssize_t n = xconn_write_some(xc, p, left, piped > 0);

            if (!xconn_sent(xc, n)) {
                break;
            }
            if (n > 0) {
                p += n;
                left -= (size_t)n;
            }
        }
        if (left == 0 && piped > 0) {
            piped = xconn_splice_out(xc, piped);
        }
    }
    if ((left > 0 || piped > 0) && !xc->dead && !xc->closing) {
        /* the connection thread sends the rest when the socket drains */
        struct obuf *o = malloc(sizeof(*o) + left + piped);

        if (o == NULL ||
            (piped > 0 && xconn_pipe_drain(xc, o->data + left, piped) < 0)) {
            free(o);
            xconn_write_failed(xc); /* cannot keep the stream intact */
        } else {
            o->next = NULL;
            o->len = left + piped;
            o->off = 0;
            memcpy(o->data, p, left);
            if (xc->oq_tail != NULL) {
                xc->oq_tail->next = o;
            } else {
                xc->oq_head = o;
            }
            xc->oq_tail = o;
            xc->oq_bytes += left + piped;
            queued = true;
        }
    }
    if (piped > 0 && !queued) {
        xconn_pipe_close(xc); /* what is left in it goes nowhere */
    }
    xmsg_done_locked(m, queued);
}

static void
xconn_drop(struct p9s_conn *c, void *cookie)
{
    struct xmsg *m = cookie;

    (void)c;
    if (m->piped > 0) {
        xconn_pipe_close(m->xc); /* the data of a reply not sent */
    }
    xmsg_done(m, false);
}

static const struct p9s_conn_ops xconn_ops = {
    .reply_buf = xconn_reply_buf,
    .send = xconn_send,
    .stage_fd = xconn_stage_fd,
    .drop = xconn_drop,
    .release = xconn_release,
};
