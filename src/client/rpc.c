/* SPDX-License-Identifier: MIT */
/*
 * libp9c RPC core: connection object, tag allocation, framing, sending,
 * and the reply demultiplexer.
 *
 * There is no reader thread.  A thread waiting for its reply becomes the
 * reader if nobody else is reading ("leader"): it reads whole frames and
 * hands each one to the request registered under its tag, until its own
 * reply has arrived; then it passes the reader role to another blocked
 * waiter.  A single synchronous caller therefore does write + read with no
 * thread switch, and many threads still overlap their requests on the wire.
 *
 * Rules on input (the server is not trusted): a frame size outside
 * [P9_HDRSZ, rmax] or a reply to a tag with nothing in flight ends the
 * connection with -EPROTO; every pending request then fails with that error.
 */
#include "client/p9c_impl.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

/* The largest errno value (the kernel's include/linux/err.h). */
#define MAX_ERRNO 4095
/* poll() takes an int of milliseconds: a long deadline is waited for in
 * slices of this. */
#define POLL_SLICE_MS 60000

static uint32_t
le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint16_t
le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* ---- connection lifetime ---------------------------------------------------- */

int
p9c_connect_fd(int fd, struct p9c_conn **out)
{
    struct p9c_conn *c;

    *out = NULL;
    if (fd < 0) {
        return -EBADF;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return -ENOMEM;
    }
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    c->tags = calloc(P9C_NTAGS, sizeof(*c->tags));
    c->in = malloc(P9C_INBUF);
    if (c->tags == NULL || c->in == NULL) {
        free(c->tags);
        free(c->in);
        free(c);
        close(fd);
        return -ENOMEM;
    }
    c->fd = fd;
    c->msize = P9_DEFAULT_MSIZE;
    c->rmax = P9_MAX_MSIZE;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->wmu, NULL);
    *out = c;
    return 0;
}

/* Complete r with err/reply; frees it if nobody waits for it (mu held). */
static void
req_complete(struct p9c_req *r, int err, struct p9c_reply *reply)
{
    if (r->abandoned) {
        p9c_reply_free(reply);
        pthread_cond_destroy(&r->cv);
        free(r);
        return;
    }
    r->done = true;
    r->err = err;
    r->reply = reply;
    pthread_cond_signal(&r->cv);
}

/* End the connection: every pending request fails with err (mu held). */
static void
conn_kill(struct p9c_conn *c, int err)
{
    if (c->dead == 0) {
        c->dead = err;
    }
    for (size_t i = 0; i < P9C_NTAGS; i++) {
        struct p9c_req *r = c->tags[i];

        if (r != NULL) {
            c->tags[i] = NULL;
            req_complete(r, c->dead, NULL);
        }
    }
}

void
p9c_close(struct p9c_conn *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    conn_kill(c, -ECONNRESET);
    pthread_mutex_unlock(&c->mu);
    close(c->fd);
    free(c->cur);
    free(c->in);
    free(c->tags);
    free(c->freefids);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->wmu);
    free(c);
}

uint32_t
p9c_msize(const struct p9c_conn *c)
{
    return c->msize;
}

void
p9c_set_timeout(struct p9c_conn *c, unsigned ms)
{
    pthread_mutex_lock(&c->mu);
    c->timeout_ms = ms;
    pthread_mutex_unlock(&c->mu);
}

int
p9c_fd(const struct p9c_conn *c)
{
    return c->fd;
}

int
p9c_error(const struct p9c_conn *c)
{
    struct p9c_conn *m = (struct p9c_conn *)c; /* lock is not logical state */
    int err;

    pthread_mutex_lock(&m->mu);
    err = m->dead;
    pthread_mutex_unlock(&m->mu);
    return err;
}

/* ---- replies ------------------------------------------------------------------ */

void
p9c_reply_free(struct p9c_reply *r)
{
    if (r == NULL) {
        return;
    }
    free(r->frame);
    free(r);
}

int
p9c_check_reply(const struct p9c_reply *r, uint8_t rtype)
{
    if (r->decode_err != 0) {
        return -EPROTO;
    }
    if (r->f.type == P9_RLERROR) {
        uint32_t e = r->f.u.rlerror.ecode;

        /* Linux errnos are 1..MAX_ERRNO; anything else is a broken server. */
        if (e == 0 || e > MAX_ERRNO) {
            return -EPROTO;
        }
        return -(int)e;
    }
    if (r->f.type != rtype) {
        return -EPROTO;
    }
    return 0;
}

/* Wrap a complete frame (ownership taken) into a decoded reply. */
static struct p9c_reply *
reply_new(uint8_t *frame, size_t len)
{
    struct p9c_reply *r = calloc(1, sizeof(*r));
    struct p9_rbuf b;

    if (r == NULL) {
        free(frame);
        return NULL;
    }
    r->frame = frame;
    r->len = len;
    p9_rbuf_init_flat(&b, &r->seg, frame, len);
    r->decode_err = p9_decode(&b, len, &r->f);
    if (r->decode_err == 0 && p9_is_tmsg(r->f.type)) {
        r->decode_err = -EPROTO; /* a server never sends T-messages */
    }
    if (r->decode_err != 0) {
        /* keep type and tag visible even when the body is bad */
        r->f.type = frame[4];
        r->f.tag = le16(frame + 5);
    }
    return r;
}

/* ---- input ------------------------------------------------------------------------ */

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until the fd is readable or the deadline (0 = none) passes. */
static int
wait_readable(struct p9c_conn *c, int64_t deadline)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int n;

    if (deadline == 0) {
        return 0;
    }
    for (;;) {
        int64_t left = deadline - now_ms();

        if (left <= 0) {
            return -ETIMEDOUT;
        }
        n = poll(&p, 1, left > POLL_SLICE_MS ? POLL_SLICE_MS : (int)left);
        if (n > 0) {
            return 0;
        }
        if (n < 0 && errno != EINTR) {
            return -errno;
        }
    }
}

static ssize_t
read_some(struct p9c_conn *c, void *buf, size_t len, int64_t deadline)
{
    ssize_t n;
    int err;

    for (;;) {
        err = wait_readable(c, deadline);
        if (err != 0) {
            return err;
        }
        n = read(c->fd, buf, len);
        if (n > 0) {
            return n;
        }
        if (n == 0) {
            return -ECONNRESET;
        }
        if (errno != EINTR && errno != EAGAIN) {
            return -errno;
        }
    }
}

/*
 * Read one whole frame.  Resumable: partial progress is kept in the
 * connection, so a reader that times out leaves the next one to continue.
 * Returns 0 with *frame (malloc'ed) and *len, or -errno.
 */
static int
read_frame(struct p9c_conn *c, int64_t deadline, uint8_t **frame, uint32_t *len)
{
    ssize_t n;

    while (c->cur == NULL) {
        size_t avail = c->inlen - c->inpos;

        if (avail >= 4) {
            uint32_t size = le32(c->in + c->inpos);

            if (size < P9_HDRSZ || size > c->rmax) {
                log_debug("p9c: reply frame size %u out of bounds", size);
                return -EPROTO;
            }
            c->cur = malloc(size);
            if (c->cur == NULL) {
                return -ENOMEM;
            }
            c->cursize = size;
            c->curgot = 0;
            break;
        }
        if (c->inpos > 0) {
            memmove(c->in, c->in + c->inpos, avail);
            c->inpos = 0;
            c->inlen = avail;
        }
        n = read_some(c, c->in + c->inlen, P9C_INBUF - c->inlen, deadline);
        if (n < 0) {
            return (int)n;
        }
        c->inlen += (size_t)n;
    }
    while (c->curgot < c->cursize) {
        size_t need = c->cursize - c->curgot;
        size_t avail = c->inlen - c->inpos;

        if (avail > 0) {
            size_t k = avail < need ? avail : need;

            memcpy(c->cur + c->curgot, c->in + c->inpos, k);
            c->inpos += k;
            c->curgot += (uint32_t)k;
            continue;
        }
        c->inpos = 0;
        c->inlen = 0;
        if (need >= P9C_INBUF / 2) {
            /* big payload: read straight into the frame */
            n = read_some(c, c->cur + c->curgot, need, deadline);
            if (n < 0) {
                return (int)n;
            }
            c->curgot += (uint32_t)n;
        } else {
            n = read_some(c, c->in, P9C_INBUF, deadline);
            if (n < 0) {
                return (int)n;
            }
            c->inlen = (size_t)n;
        }
    }
    *frame = c->cur;
    *len = c->cursize;
    c->cur = NULL;
    return 0;
}

/* Hand a decoded reply to its request (mu held). */
static void
dispatch(struct p9c_conn *c, struct p9c_reply *rep)
{
    uint16_t tag = le16(rep->frame + 5);
    struct p9c_req *r = c->tags[tag];

    if (r == NULL) {
        log_debug("p9c: reply for tag %u which is not in flight", tag);
        p9c_reply_free(rep);
        conn_kill(c, -EPROTO);
        return;
    }
    c->tags[tag] = NULL;
    if (r->is_flush && rep->frame[4] == P9_RFLUSH) {
        struct p9c_req *o = c->tags[r->flush_oldtag];

        /* Rflush promises no reply will follow for oldtag. */
        if (o != NULL && o != r) {
            c->tags[r->flush_oldtag] = NULL;
            req_complete(o, -EINTR, NULL);
        }
    }
    req_complete(r, 0, rep);
}

/* ---- output -------------------------------------------------------------------- */

static int
send_iov(struct p9c_conn *c, struct iovec *iov, int iovcnt)
{
    struct msghdr mh = {0};
    ssize_t n;
    int err = 0;

    pthread_mutex_lock(&c->wmu);
    while (iovcnt > 0) {
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)iovcnt;
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) {
            n = writev(c->fd, iov, iovcnt);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = -errno;
            break;
        }
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    pthread_mutex_unlock(&c->wmu);
    return err;
}

int
p9c_send_bytes(struct p9c_conn *c, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

    return send_iov(c, &iov, 1);
}

static struct p9c_req *
req_new(struct p9c_conn *c)
{
    struct p9c_req *r = calloc(1, sizeof(*r));

    if (r != NULL) {
        r->conn = c;
        pthread_cond_init(&r->cv, NULL);
    }
    return r;
}

static void
req_free(struct p9c_req *r)
{
    pthread_cond_destroy(&r->cv);
    free(r);
}

/*
 * Register r under a tag (want_tag >= 0: that exact tag, else a free one)
 * and send iov.  On failure r is freed and -errno returned.
 */
static int
req_send(struct p9c_conn *c, struct p9c_req *r, int want_tag, struct iovec *iov,
         int iovcnt, uint8_t *tagp)
{
    int err;

    pthread_mutex_lock(&c->mu);
    if (c->dead != 0) {
        err = c->dead;
        goto out_unlock;
    }
    if (want_tag >= 0) {
        if (c->tags[want_tag] != NULL) {
            err = -EBUSY;
            goto out_unlock;
        }
        r->tag = (uint16_t)want_tag;
    } else {
        unsigned tries = 0;

        /* P9_NOTAG (0xFFFF) is reserved for Tversion. */
        while (c->tags[c->next_tag] != NULL || c->next_tag == P9_NOTAG) {
            c->next_tag++;
            if (++tries > P9C_NTAGS) {
                err = -EAGAIN;
                goto out_unlock;
            }
        }
        r->tag = c->next_tag++;
    }
    c->tags[r->tag] = r;
    pthread_mutex_unlock(&c->mu);

    if (tagp != NULL) {
        tagp[0] = (uint8_t)r->tag;
        tagp[1] = (uint8_t)(r->tag >> 8);
    }
    err = send_iov(c, iov, iovcnt);
    if (err == 0) {
        return 0;
    }
    /* A failed or partial write leaves the stream unusable. */
    pthread_mutex_lock(&c->mu);
    if (c->tags[r->tag] == r) {
        c->tags[r->tag] = NULL;
    }
    conn_kill(c, err);
out_unlock:
    pthread_mutex_unlock(&c->mu);
    req_free(r);
    return err;
}

int
p9c_encode(const struct p9_fcall *t, uint8_t **buf, size_t *len)
{
    size_t size = p9_encoded_size(t);
    struct p9_wbuf w;
    struct iovec iov;
    long n;

    *buf = NULL;
    *len = 0;
    if (size < P9_HDRSZ || size > UINT32_MAX) {
        return -EINVAL;
    }
    iov.iov_base = malloc(size);
    if (iov.iov_base == NULL) {
        return -ENOMEM;
    }
    iov.iov_len = size;
    p9_wbuf_init(&w, &iov, 1);
    n = p9_encode(&w, t);
    if (n < 0 || (size_t)n != size) {
        free(iov.iov_base);
        return n < 0 ? (int)n : -EINVAL;
    }
    *buf = iov.iov_base;
    *len = size;
    return 0;
}

int
p9c_start(struct p9c_conn *c, const struct p9_fcall *t, struct p9c_req **out)
{
    struct p9_fcall m;
    uint8_t small[P9C_SMALL_MSG];
    uint8_t hdr[P9C_TWRITE_HDR];
    struct iovec iov[2];
    int iovcnt;
    struct p9_wbuf w;
    struct p9c_req *r;
    uint8_t *heap = NULL;
    size_t size;
    long n;
    int err;

    *out = NULL;
    r = req_new(c);
    if (r == NULL) {
        return -ENOMEM;
    }
    m = *t;
    /* patched in req_send() once the tag is known */
    m.tag = t->type == P9_TVERSION ? P9_NOTAG : 0;
    if (t->type == P9_TFLUSH) {
        r->is_flush = true;
        r->flush_oldtag = t->u.tflush.oldtag;
    }
    if (t->type == P9_TWRITE && t->u.twrite.data.ptr != NULL &&
        t->u.twrite.data.len > P9C_SMALL_MSG) {
        /* Zero copy: header in 'hdr', payload straight from the caller. */
        iov[0].iov_base = hdr;
        iov[0].iov_len = sizeof(hdr);
        iov[1].iov_base = (void *)t->u.twrite.data.ptr;
        iov[1].iov_len = t->u.twrite.data.len;
        iovcnt = 2;
        m.u.twrite.data.ptr = NULL; /* bytes already in place */
        size = sizeof(hdr) + t->u.twrite.data.len;
    } else {
        size = p9_encoded_size(&m);
        if (size <= sizeof(small)) {
            iov[0].iov_base = small;
        } else {
            heap = malloc(size);
            if (heap == NULL) {
                req_free(r);
                return -ENOMEM;
            }
            iov[0].iov_base = heap;
        }
        iov[0].iov_len = size;
        iovcnt = 1;
    }
    if (size > c->msize && t->type != P9_TVERSION) {
        err = -EMSGSIZE;
        goto out_free;
    }
    p9_wbuf_init(&w, iov, iovcnt);
    n = p9_encode(&w, &m);
    if (n < 0 || (size_t)n != size) {
        err = n < 0 ? (int)n : -EINVAL;
        goto out_free;
    }
    if (t->type == P9_TVERSION) {
        err = req_send(c, r, P9_NOTAG, iov, iovcnt, NULL);
    } else {
        err = req_send(c, r, -1, iov, iovcnt, (uint8_t *)iov[0].iov_base + 5);
    }
    free(heap);
    if (err == 0) {
        *out = r;
    }
    return err;

out_free:
    free(heap);
    req_free(r);
    return err;
}

int
p9c_start_raw(struct p9c_conn *c, const void *frame, size_t len,
              struct p9c_req **out)
{
    const uint8_t *p = frame;
    struct iovec iov = {.iov_base = (void *)frame, .iov_len = len};
    struct p9c_req *r;
    int err;

    *out = NULL;
    if (len < P9_HDRSZ) {
        return -EINVAL;
    }
    r = req_new(c);
    if (r == NULL) {
        return -ENOMEM;
    }
    if (p[4] == P9_TFLUSH && len == P9_HDRSZ + 2) {
        r->is_flush = true;
        r->flush_oldtag = le16(p + 7);
    }
    err = req_send(c, r, le16(p + 5), &iov, 1, NULL);
    if (err == 0) {
        *out = r;
    }
    return err;
}

uint16_t
p9c_req_tag(const struct p9c_req *r)
{
    return r->tag;
}

void
p9c_req_abandon(struct p9c_req *r)
{
    struct p9c_conn *c;

    if (r == NULL) {
        return;
    }
    c = r->conn;
    pthread_mutex_lock(&c->mu);
    if (r->done) {
        p9c_reply_free(r->reply);
        req_free(r);
    } else {
        r->abandoned = true;
    }
    pthread_mutex_unlock(&c->mu);
}

/* Pass the reader role to a blocked waiter, if any (mu held). */
static void
handoff(struct p9c_conn *c)
{
    if (!c->reading && c->whead != NULL) {
        pthread_cond_signal(&c->whead->cv);
    }
}

static void
waiter_add(struct p9c_conn *c, struct p9c_req *r)
{
    r->wprev = NULL;
    r->wnext = c->whead;
    if (c->whead != NULL) {
        c->whead->wprev = r;
    }
    c->whead = r;
}

static void
waiter_del(struct p9c_conn *c, struct p9c_req *r)
{
    if (r->wprev != NULL) {
        r->wprev->wnext = r->wnext;
    } else {
        c->whead = r->wnext;
    }
    if (r->wnext != NULL) {
        r->wnext->wprev = r->wprev;
    }
    r->wnext = NULL;
    r->wprev = NULL;
}

int
p9c_wait(struct p9c_req *r, struct p9c_reply **out)
{
    struct p9c_conn *c = r->conn;
    int64_t deadline = 0;
    struct timespec abs;
    int err = 0;

    if (out != NULL) {
        *out = NULL;
    }
    pthread_mutex_lock(&c->mu);
    if (c->timeout_ms != 0) {
        deadline = now_ms() + c->timeout_ms;
        clock_gettime(CLOCK_REALTIME, &abs);
        abs.tv_sec += c->timeout_ms / 1000;
        abs.tv_nsec += (long)(c->timeout_ms % 1000) * 1000000;
        if (abs.tv_nsec >= 1000000000) {
            abs.tv_sec++;
            abs.tv_nsec -= 1000000000;
        }
    }
    while (!r->done) {
        if (!c->reading) {
            uint8_t *frame = NULL;
            uint32_t len = 0;
            struct p9c_reply *rep = NULL;

            c->reading = true;
            pthread_mutex_unlock(&c->mu);
            err = read_frame(c, deadline, &frame, &len);
            if (err == 0) {
                rep = reply_new(frame, len);
                if (rep == NULL) {
                    err = -ENOMEM;
                }
            }
            pthread_mutex_lock(&c->mu);
            c->reading = false;
            if (err == -ETIMEDOUT) {
                break;
            }
            if (err != 0) {
                conn_kill(c, err);
                err = 0;
                continue;
            }
            dispatch(c, rep);
            continue;
        }
        waiter_add(c, r);
        if (deadline != 0) {
            err = pthread_cond_timedwait(&r->cv, &c->mu, &abs);
        } else {
            pthread_cond_wait(&r->cv, &c->mu);
        }
        waiter_del(c, r);
        if (err == ETIMEDOUT && !r->done) {
            break; /* answered as -ETIMEDOUT below */
        }
        err = 0;
    }
    handoff(c);
    if (!r->done) {
        /* timed out: the tag stays reserved until the reply arrives */
        r->abandoned = true;
        pthread_mutex_unlock(&c->mu);
        return -ETIMEDOUT;
    }
    pthread_mutex_unlock(&c->mu);
    err = r->err;
    if (out != NULL && err == 0) {
        *out = r->reply;
    } else {
        p9c_reply_free(r->reply);
    }
    req_free(r);
    return err;
}

int
p9c_rpc_raw(struct p9c_conn *c, const void *frame, size_t len,
            struct p9c_reply **out)
{
    struct p9c_req *r;
    int err;

    *out = NULL;
    err = p9c_start_raw(c, frame, len, &r);
    if (err != 0) {
        return err;
    }
    return p9c_wait(r, out);
}

int
p9c_rpc(struct p9c_conn *c, const struct p9_fcall *t, struct p9c_reply **out)
{
    struct p9c_reply *rep = NULL;
    struct p9c_req *r;
    int err;

    *out = NULL;
    err = p9c_start(c, t, &r);
    if (err != 0) {
        return err;
    }
    err = p9c_wait(r, &rep);
    if (err != 0) {
        return err;
    }
    err = p9c_check_reply(rep, (uint8_t)(t->type + 1));
    if (err != 0) {
        p9c_reply_free(rep);
        return err;
    }
    *out = rep;
    return 0;
}

int
p9c_rpc0(struct p9c_conn *c, const struct p9_fcall *t)
{
    struct p9c_reply *rep;
    int err = p9c_rpc(c, t, &rep);

    p9c_reply_free(rep);
    return err;
}

int
p9c_flush(struct p9c_conn *c, uint16_t oldtag)
{
    struct p9_fcall t = {.type = P9_TFLUSH};

    t.u.tflush.oldtag = oldtag;
    return p9c_rpc0(c, &t);
}

int
p9c_version(struct p9c_conn *c, uint32_t msize)
{
    struct p9_fcall t = {.type = P9_TVERSION};
    struct p9c_reply *rep;
    uint32_t got;
    int err;

    if (msize == 0) {
        msize = P9_DEFAULT_MSIZE;
    }
    if (msize > P9_MAX_MSIZE) {
        msize = P9_MAX_MSIZE;
    }
    t.tag = P9_NOTAG;
    t.u.tversion.msize = msize;
    err = p9c_mkstr(&t.u.tversion.version, P9_VERSION_L);
    if (err != 0) {
        return err;
    }
    pthread_mutex_lock(&c->mu);
    c->rmax = msize; /* Rversion itself cannot be larger */
    pthread_mutex_unlock(&c->mu);
    err = p9c_rpc(c, &t, &rep);
    if (err != 0) {
        return err;
    }
    got = rep->f.u.rversion.msize;
    if (rep->f.u.rversion.version.len != strlen(P9_VERSION_L) ||
        memcmp(rep->f.u.rversion.version.s, P9_VERSION_L,
               strlen(P9_VERSION_L)) != 0) {
        err = -EPROTONOSUPPORT;
    } else if (got > msize || got < P9_MIN_MSIZE) {
        err = -EPROTO;
    } else {
        pthread_mutex_lock(&c->mu);
        c->msize = got;
        c->rmax = got;
        pthread_mutex_unlock(&c->mu);
    }
    p9c_reply_free(rep);
    return err;
}

int
p9c_mkstr(struct p9_str *out, const char *s)
{
    size_t n;

    if (s == NULL) {
        s = "";
    }
    n = strlen(s);
    if (n > UINT16_MAX) {
        return -ENAMETOOLONG;
    }
    out->s = s;
    out->len = (uint16_t)n;
    return 0;
}
