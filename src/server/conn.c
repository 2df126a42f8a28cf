/* SPDX-License-Identifier: MIT */
/*
 * Sessions: one per transport connection (or virtio device).  Keeps the
 * negotiated msize, the fid table and the table of in-flight tags, and
 * implements the flush state machine:
 *
 *   Tflush(oldtag) arrives (transport thread, inline):
 *     no such tag in flight   -> Rflush at once
 *     REQ_QUEUED              -> mark flushed; the worker skips the op and
 *                                drops it (no reply), then Rflush
 *     REQ_RUNNING             -> mark flushed, interrupt a blocking syscall
 *                                with SIGURG; when the op ends its reply is
 *                                sent (or dropped if it ended with EINTR),
 *                                then Rflush
 *   So Rflush always comes, and always after the flushed request's reply.
 *   Tclunk and Tremove run even when flushed (they release the fid).
 */
#include "server/srv_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define INFLIGHT_MAX 4096 /* per connection; beyond it the peer is hostile */
/* Strings of one message split across virtio buffers: 16 names of 255
 * bytes, a symlink target of PATH_MAX, fit many times over. */
#define SCRATCH_MAX (64 * 1024)

static unsigned
tag_hash(uint16_t tag)
{
    return tag & (TAG_BUCKETS - 1);
}

struct p9s_conn *
p9s_conn_new(struct p9s_server *srv, const struct p9s_conn_ops *ops, void *tp,
             const char *peer)
{
    struct p9s_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->srv = srv;
    c->ops = ops;
    c->tp = tp;
    snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "?");
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->msize, srv->msize);
    fid_table_init(&c->fids);
    atomic_fetch_add(&srv->nconns, 1);
    log_debug("%s: session opened", c->peer);
    return c;
}

uint32_t
p9s_conn_msize(struct p9s_conn *c)
{
    return atomic_load(&c->msize);
}

long
p9s_frame_len(struct p9s_conn *c, const uint8_t hdr[4])
{
    uint32_t size = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 |
                    (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;

    /* Before Tversion the session msize is the server cap. */
    if (size < P9_HDRSZ || size > atomic_load(&c->msize)) {
        log_peer("%s: bad frame size %u (msize %u)", c->peer, size,
                 atomic_load(&c->msize));
        return -EPROTO;
    }
    return size;
}

/*
 * The request holding 'tag' in flight: QUEUED or RUNNING.  With
 * 'replying', a request whose reply is on its way counts too (Tflush
 * must wait for it), but one that is still queued or running wins: after
 * the peer saw a reply it may reuse the tag at once.
 */
static struct p9s_req *
tag_find(struct p9s_conn *c, uint16_t tag, bool replying)
{
    struct p9s_req *found = NULL;
    struct p9s_req *r;

    for (r = c->tags[tag_hash(tag)]; r != NULL; r = r->tag_next) {
        if (r->t.tag != tag || r->state == REQ_DONE) {
            continue;
        }
        if (r->state != REQ_REPLYING) {
            return r;
        }
        if (replying) {
            found = r;
        }
    }
    return found;
}

static void
tag_remove(struct p9s_conn *c, struct p9s_req *r)
{
    struct p9s_req **pp;

    for (pp = &c->tags[tag_hash(r->t.tag)]; *pp != NULL;
         pp = &(*pp)->tag_next) {
        if (*pp == r) {
            *pp = r->tag_next;
            r->tag_next = NULL;
            return;
        }
    }
}

static void
req_free(struct p9s_req *r)
{
    free(r->scratch);
    free(r);
}

static void
conn_release(struct p9s_conn *c)
{
    /* every request is done: clunk what is left and hand back */
    fid_table_fini(&c->fids);
    atomic_fetch_sub(&c->srv->nconns, 1);
    log_debug("%s: session closed", c->peer);
    c->ops->release(c, c->tp);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/*
 * Called by p9s_respond() after the reply was sent (or dropped): retire
 * the tag, answer Tflush requests waiting on it, and finish the session if
 * it is closing.
 */
void
conn_req_done(struct p9s_req *r, bool sent)
{
    struct p9s_conn *c = r->conn;
    struct p9s_req *fl;
    bool release;

    (void)sent;
    pthread_mutex_lock(&c->lock);
    r->state = REQ_DONE;
    tag_remove(c, r);
    fl = r->flushers;
    r->flushers = NULL;
    pthread_mutex_unlock(&c->lock);

    while (fl != NULL) {
        struct p9s_req *next = fl->flush_next;

        p9s_respond(fl, 0); /* Rflush, after the flushed reply */
        fl = next;
    }

    pthread_mutex_lock(&c->lock);
    c->inflight--;
    release = c->closing && c->inflight == 0 && !c->released;
    if (release) {
        c->released = true;
    }
    pthread_mutex_unlock(&c->lock);
    req_free(r);
    if (release) {
        conn_release(c);
    }
}

/*
 * A worker is about to run 'r'.  Returns false if it was flushed while
 * queued (the op is then skipped unless it must run).
 */
bool
conn_start(struct p9s_req *r)
{
    struct p9s_conn *c = r->conn;
    bool flushed;

    pthread_mutex_lock(&c->lock);
    flushed = r->flushed;
    r->state = REQ_RUNNING;
    r->worker = pthread_self();
    pthread_mutex_unlock(&c->lock);
    return !flushed;
}

void
conn_reset_session(struct p9s_conn *c)
{
    fid_clunk_all(&c->fids);
}

/* Tflush, inline.  Returns true if Rflush must be sent now. */
static bool
conn_flush(struct p9s_req *fr)
{
    struct p9s_conn *c = fr->conn;
    struct p9s_req *old;
    bool now = true;

    pthread_mutex_lock(&c->lock);
    old = tag_find(c, fr->t.u.tflush.oldtag, true);
    if (old != NULL && old != fr) {
        old->flushed = true;
        fr->flush_next = old->flushers;
        old->flushers = fr;
        if (old->state == REQ_RUNNING) {
            /* interrupt a blocking syscall (FIFO open, ...) */
            pthread_kill(old->worker, SIGURG);
        }
        now = false;
    }
    pthread_mutex_unlock(&c->lock);
    return now;
}

/*
 * Requests that may run on the transport's thread (P9S_SUBMIT_INLINE):
 * those that do not wait for another party.  Opens (a FIFO waits for its
 * peer), locks and fsync always go to the pool, so the transport keeps
 * reading (a Tflush for them must get through).
 */
static bool
req_is_quick(const struct p9s_req *r)
{
    switch (r->t.type) {
    case P9_TLOPEN:
    case P9_TLCREATE:
    case P9_TLOCK:
    case P9_TFSYNC:
        return false;
    default:
        return r->decode_err == 0;
    }
}

int
p9s_conn_submit(struct p9s_conn *c, const struct iovec *iov, int iovcnt,
                size_t len, void *cookie)
{
    return p9s_conn_submit_flags(c, iov, iovcnt, len, cookie, 0);
}

int
p9s_conn_submit_flags(struct p9s_conn *c, const struct iovec *iov,
                      int iovcnt, size_t len, void *cookie, unsigned flags)
{
    struct p9s_req *r;
    struct p9_rbuf b;
    uint32_t size;
    int err;

    if (len < P9_HDRSZ || len > atomic_load(&c->msize)) {
        /* virtio hands us whole chains: bound them by msize here too */
        log_peer("%s: message of %zu bytes (msize %u), closing", c->peer,
                 len, atomic_load(&c->msize));
        c->ops->drop(c, cookie);
        return -EPROTO;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        c->ops->drop(c, cookie);
        return -ENOMEM;
    }
    r->conn = c;
    r->cookie = cookie;
    r->in = iov;
    r->incnt = iovcnt;
    r->inlen = len;
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    p9_rbuf_init(&b, iov, iovcnt, len, NULL, 0);
    err = p9_decode_hdr(&b, len, &size, &r->t.type, &r->t.tag);
    if (err < 0) {
        log_peer("%s: undecodable message header, closing", c->peer);
        c->ops->drop(c, cookie);
        req_free(r);
        return -EPROTO;
    }
    if (iovcnt > 1 && r->t.type != P9_TWRITE) {
        /* strings may straddle segments (virtio): room to copy them; a
         * message whose split strings need more is malformed (EPROTO) */
        size_t n = len < SCRATCH_MAX ? len : SCRATCH_MAX;

        r->scratch = malloc(n);
        if (r->scratch == NULL) {
            c->ops->drop(c, cookie);
            req_free(r);
            return -ENOMEM;
        }
        b.scratch = r->scratch;
        b.scratch_len = n;
        b.scratch_used = 0;
    }
    r->decode_err = p9_decode_body(&b, &r->t);
    if (c->srv->trace) {
        char line[512];

        if (r->decode_err == 0) {
            p9_format(&r->t, line, sizeof(line));
        } else {
            snprintf(line, sizeof(line), "%s tag %u (malformed: %s)",
                     p9_type_name(r->t.type) ? p9_type_name(r->t.type)
                                             : "T?",
                     r->t.tag, strerror(-r->decode_err));
        }
        log_msg(LOG_LVL_INFO, "%s <- %s", c->peer, line);
    }

    pthread_mutex_lock(&c->lock);
    if (c->closing) {
        pthread_mutex_unlock(&c->lock);
        c->ops->drop(c, cookie);
        req_free(r);
        return -EPIPE;
    }
    if (tag_find(c, r->t.tag, false) != NULL || c->inflight >= INFLIGHT_MAX) {
        pthread_mutex_unlock(&c->lock);
        log_peer("%s: duplicate in-flight tag %u or too many requests, "
                 "closing", c->peer, r->t.tag);
        c->ops->drop(c, cookie);
        req_free(r);
        return -EPROTO;
    }
    r->tag_next = c->tags[tag_hash(r->t.tag)];
    c->tags[tag_hash(r->t.tag)] = r;
    c->inflight++;
    r->state = REQ_QUEUED;
    pthread_mutex_unlock(&c->lock);

    if (r->decode_err == 0 && r->t.type == P9_TFLUSH) {
        if (conn_flush(r)) {
            p9s_respond(r, 0);
        }
        return 0;
    }
    if (r->decode_err == 0 && r->t.type == P9_TVERSION) {
        /* inline: no other request of this session may race with it in a
         * well-behaved client; running it here keeps msize ordering */
        pthread_mutex_lock(&c->lock);
        r->state = REQ_RUNNING;
        pthread_mutex_unlock(&c->lock);
        p9s_respond(r, op_version(r));
        return 0;
    }
    if ((flags & P9S_SUBMIT_INLINE) && req_is_quick(r)) {
        p9s_dispatch(r); /* one request, no hand-over */
        return 0;
    }
    workq_push(c->srv, r);
    return 0;
}

void
p9s_conn_close(struct p9s_conn *c)
{
    bool release;

    pthread_mutex_lock(&c->lock);
    c->closing = true;
    for (unsigned i = 0; i < TAG_BUCKETS; i++) {
        for (struct p9s_req *r = c->tags[i]; r != NULL; r = r->tag_next) {
            r->flushed = true; /* nobody is listening any more */
            if (r->state == REQ_RUNNING) {
                pthread_kill(r->worker, SIGURG);
            }
        }
    }
    release = c->inflight == 0 && !c->released;
    if (release) {
        c->released = true;
    }
    pthread_mutex_unlock(&c->lock);
    if (release) {
        conn_release(c);
    }
}
