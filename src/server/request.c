/* SPDX-License-Identifier: MIT */
/*
 * A request's whole life, in order:
 *
 *   submit   (transport thread) decode, enter the tag table, route
 *   route    P9F_INLINE messages (Tversion, Tflush) run at once; a request
 *            alone on its connection that cannot block runs on the
 *            transport's thread (no hand-over); everything else goes to
 *            the worker pool
 *   dispatch (a worker, or inline) flushed-while-queued, unknown,
 *            malformed and read-only gating, then the op_<name> handler
 *   respond  the single exit: -errno becomes Rlerror, a flushed request
 *            that did not complete is dropped, the reply is encoded into
 *            the transport's buffer and sent
 *   done     retire the tag; the Tflush requests that waited for this one
 *            are answered next, by the same loop (never recursively: a
 *            chain of Tflush of Tflush of ... costs no stack), and a
 *            closing session is released after its last request
 *
 * Flush states (conn->lock):
 *   Tflush(oldtag) arrives (inline):
 *     no such tag in flight   -> Rflush at once
 *     REQ_QUEUED              -> mark flushed; the worker skips the op and
 *                                drops it (no reply), then Rflush
 *     REQ_RUNNING             -> mark flushed, interrupt a blocking syscall
 *                                with SIGURG; when the op ends its reply is
 *                                sent (or dropped if it ended with EINTR),
 *                                then Rflush
 *     REQ_REPLYING            -> the reply is on its way: Rflush after it
 *   So Rflush always comes, and always after the flushed request's reply.
 *   Tclunk and Tremove run even when flushed (they release the fid).
 */
#include "server/srv_int.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define INFLIGHT_MAX 4096 /* per connection; beyond it the peer is hostile */
/* Strings of one message split across virtio buffers: 16 names of 255
 * bytes, a symlink target of PATH_MAX, fit many times over. */
#define SCRATCH_MAX (64 * 1024)
/* A handler that parked its request (Tflush waiting for the flushed one)
 * returns this: the request is answered later, by respond's loop. */
#define REQ_DEFERRED 1

typedef int op_fn(struct p9s_req *r);

/* The message table, from p9_msgs.def: handler, flags, and the offset+1
 * in struct p9_fcall of the fid that decides read-only gating (0: none). */
static const struct op_desc {
    op_fn *fn;
    unsigned flags;
    size_t rofid;
} op_table[P9_NTYPES] = {
#define P9_FID(member) (offsetof(struct p9_fcall, u.member) + 1)
#define P9_NOFID_ 0
#define P9_MSG(NAME, name, ID, FLAGS, FID, RB) [ID] = {op_##name, (FLAGS), FID},
#include "virtfs/p9_msgs.def"
#undef P9_MSG
#undef P9_NOFID_
#undef P9_FID
};

/* ---- the tag table ------------------------------------------------------ */

static unsigned
tag_hash(uint16_t tag)
{
    return tag & (TAG_BUCKETS - 1);
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

/* ---- submit and route --------------------------------------------------- */

/*
 * May 'r' block for long (so that running it on the transport's thread
 * would keep that thread from reading a Tflush)?  The table says which
 * messages may; Tlcreate only may when it could open an existing FIFO:
 * with O_EXCL an existing name fails with EEXIST instead, so the open
 * cannot wait for a peer (the usual create of a new file: inline).
 * Likewise Tlopen with O_DIRECTORY (opendir): anything but a directory
 * fails with ENOTDIR before an open could wait.
 */
static bool
req_may_block(const struct p9s_req *r, const struct op_desc *op)
{
    if (!(op->flags & P9F_MAYBLOCK)) {
        return false;
    }
    if (r->t.type == P9_TLCREATE &&
        (r->t.u.tlcreate.flags & P9_DOTL_EXCL) != 0) {
        return false;
    }
    if (r->t.type == P9_TLOPEN &&
        (r->t.u.tlopen.flags & P9_DOTL_DIRECTORY) != 0) {
        return false;
    }
    return true;
}

/*
 * The two that may block only rarely (Tlopen, Tlcreate without O_EXCL):
 * on the transport's thread they are tried without waiting when the
 * backend can give up before it would wait (BE_OPEN_NOWAIT); the usual
 * open of a file then costs no hand-over to a worker.
 */
static bool
req_try_nowait(struct p9s_req *r)
{
    if (r->t.type != P9_TLOPEN && r->t.type != P9_TLCREATE) {
        return false;
    }
    r->nowait = true;
    atomic_fetch_add_explicit(&r->conn->srv->opens_nowait, 1,
                              memory_order_relaxed);
    return true;
}

static void
trace_request(struct p9s_req *r)
{
    char line[512];

    if (r->decode_err == 0) {
        p9_format(&r->t, line, sizeof(line));
    } else {
        snprintf(line, sizeof(line), "%s tag %u (malformed: %s)",
                 p9_type_name(r->t.type) ? p9_type_name(r->t.type) : "T?",
                 r->t.tag, strerror(-r->decode_err));
    }
    log_trace("%s <- %s", r->conn->peer, line);
}

/* Decode into a new request; NULL (cookie dropped) with *err on failure. */
static struct p9s_req *
req_decode(struct p9s_conn *c, const struct iovec *iov, int iovcnt, size_t len,
           void *cookie, int *err)
{
    struct p9s_req *r;
    struct p9_rbuf b;
    uint32_t size;

    if (len < P9_HDRSZ || len > atomic_load(&c->msize)) {
        /* virtio hands us whole chains: bound them by msize here too */
        log_peer("%s: message of %zu bytes (msize %u), closing", c->peer, len,
                 atomic_load(&c->msize));
        *err = -EPROTO;
        goto out_drop;
    }
    r = atomic_exchange_explicit(&c->spare, NULL, memory_order_acquire);
    if (r != NULL) {
        memset(r, 0, sizeof(*r));
    } else {
        r = calloc(1, sizeof(*r));
    }
    if (r == NULL) {
        *err = -ENOMEM;
        goto out_drop;
    }
    r->conn = c;
    r->cookie = cookie;
    r->in = iov;
    r->incnt = iovcnt;
    r->inlen = len;
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    p9_rbuf_init(&b, iov, iovcnt, len, NULL, 0);
    if (p9_decode_hdr(&b, len, &size, &r->t.type, &r->t.tag) < 0) {
        log_peer("%s: undecodable message header, closing", c->peer);
        *err = -EPROTO;
        goto out_free;
    }
    if (iovcnt > 1 && r->t.type != P9_TWRITE) {
        /* strings may straddle segments (virtio): room to copy them; a
         * message whose split strings need more is malformed (EPROTO) */
        size_t n = len < SCRATCH_MAX ? len : SCRATCH_MAX;

        r->scratch = malloc(n);
        if (r->scratch == NULL) {
            *err = -ENOMEM;
            goto out_free;
        }
        b.scratch = r->scratch;
        b.scratch_len = n;
        b.scratch_used = 0;
    }
    r->decode_err = p9_decode_body(&b, &r->t);
    return r;

out_free:
    req_free(r);
out_drop:
    c->ops->drop(c, cookie);
    return NULL;
}

int
p9s_conn_submit(struct p9s_conn *c, const struct iovec *iov, int iovcnt,
                size_t len, void *cookie)
{
    return p9s_conn_submit_flags(c, iov, iovcnt, len, cookie, 0);
}

int
p9s_conn_submit_flags(struct p9s_conn *c, const struct iovec *iov, int iovcnt,
                      size_t len, void *cookie, unsigned flags)
{
    const struct op_desc *op;
    struct p9s_req *r;
    int err;

    r = req_decode(c, iov, iovcnt, len, cookie, &err);
    if (r == NULL) {
        return err;
    }
    if (c->srv->trace) {
        trace_request(r);
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
                 "closing",
                 c->peer, r->t.tag);
        c->ops->drop(c, cookie);
        req_free(r);
        return -EPROTO;
    }
    r->tag_next = c->tags[tag_hash(r->t.tag)];
    c->tags[tag_hash(r->t.tag)] = r;
    c->inflight++;
    r->state = REQ_QUEUED;
    pthread_mutex_unlock(&c->lock);

    /* route */
    /* here: P9F_INLINE messages (Tversion orders the session, Tflush parks
     * itself), and a request alone on its connection that cannot block (no
     * hand-over) or is tried without waiting; the rest goes to the pool */
    op = &op_table[r->t.type];
    if (r->decode_err == 0 &&
        ((op->flags & P9F_INLINE) ||
         ((flags & P9S_SUBMIT_INLINE) &&
          (!req_may_block(r, op) || req_try_nowait(r))))) {
        p9s_dispatch(r);
    } else {
        workq_push(c->srv, r);
    }
    return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

/* A worker is about to run 'r': false if it was flushed while queued. */
static bool
req_start(struct p9s_req *r)
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

/* 'r' (tried with nowait, unchanged) would wait: a worker runs it again.
 * A Tflush cannot have come in between: it would be read by the thread
 * that ran 'r'. */
static void
req_requeue(struct p9s_req *r)
{
    struct p9s_conn *c = r->conn;

    pthread_mutex_lock(&c->lock);
    r->nowait = false;
    r->state = REQ_QUEUED;
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add_explicit(&c->srv->opens_requeued, 1, memory_order_relaxed);
    workq_push(c->srv, r);
}

static bool
req_on_readonly(struct p9s_req *r, const struct op_desc *op)
{
    struct fid *f;
    uint32_t num;
    bool ro;

    if (op->rofid == 0) {
        return false;
    }
    memcpy(&num, (const char *)&r->t + op->rofid - 1, sizeof(num));
    f = fid_get(&r->conn->fids, num);
    if (f == NULL) {
        return false; /* the op reports EBADF */
    }
    ro = f->ex->readonly;
    fid_put(f);
    return ro;
}

void
p9s_dispatch(struct p9s_req *r)
{
    const struct op_desc *op = &op_table[r->t.type];
    bool run = req_start(r);
    int err;

    if (!run && !(op->flags & P9F_MUSTRUN)) {
        err = -EINTR; /* flushed while queued: dropped by respond */
    } else if (r->decode_err == -EOPNOTSUPP || op->fn == NULL ||
               !p9_is_tmsg(r->t.type)) {
        log_peer("%s: unsupported message type %u", r->conn->peer, r->t.type);
        err = -EOPNOTSUPP;
    } else if (r->decode_err < 0) {
        log_peer("%s: malformed %s (tag %u)", r->conn->peer,
                 p9_type_name(r->t.type), r->t.tag);
        err = r->decode_err;
    } else if (!(op->flags & (P9F_RO | P9F_MUSTRUN)) &&
               req_on_readonly(r, op)) {
        err = -EROFS;
    } else {
        err = op->fn(r);
        if (err == REQ_DEFERRED) {
            return; /* answered when the request it waits for is done */
        }
        if (err == REQ_REQUEUE || (err == -EAGAIN && r->nowait)) {
            req_requeue(r); /* it would have waited: see r->nowait */
            return;
        }
    }
    p9s_respond(r, err);
}

/* Tflush, inline: park behind the flushed request, or answer at once. */
int
op_flush(struct p9s_req *r)
{
    struct p9s_conn *c = r->conn;
    struct p9s_req *old;
    int ret = 0;

    pthread_mutex_lock(&c->lock);
    old = tag_find(c, r->t.u.tflush.oldtag, true);
    if (old != NULL && old != r) {
        old->flushed = true;
        r->flush_next = old->flushers;
        old->flushers = r;
        if (old->state == REQ_RUNNING) {
            /* interrupt a blocking syscall (FIFO open, ...) */
            pthread_kill(old->worker, SIGURG);
        }
        ret = REQ_DEFERRED;
    }
    pthread_mutex_unlock(&c->lock);
    return ret;
}

/* ---- respond and done ----------------------------------------------------- */

int
req_out(struct p9s_req *r, size_t need)
{
    struct p9s_conn *c = r->conn;
    int err;

    if (!r->have_out) {
        err = c->ops->reply_buf(c, r->cookie, need, &r->out, &r->outcnt);
        if (err < 0) {
            return err;
        }
        r->have_out = true;
        p9_wbuf_init(&r->w, r->out, r->outcnt);
    }
    return 0;
}

static void
trace_reply(struct p9s_req *r)
{
    char line[512];

    p9_format(&r->r, line, sizeof(line));
    log_trace("%s -> %s", r->conn->peer, line);
}

/*
 * An Rread whose data the transport holds (stage_fd): only the header goes
 * into the reply space, with the size and count of the data that follows.
 */
static long
req_encode_staged(struct p9s_req *r)
{
    uint32_t n = r->r.u.rread.data.len;
    long len = -1;

    r->r.u.rread.data.len = 0;
    if (req_out(r, p9_encoded_size(&r->r)) == 0) {
        p9_wbuf_init(&r->w, r->out, r->outcnt);
        len = p9_encode(&r->w, &r->r);
    }
    r->r.u.rread.data.len = n;
    if (len < 0) {
        return len;
    }
    /* size[4] type[1] tag[2] count[4] */
    p9_wbuf_patch_u32(&r->w, 0, (uint32_t)len + n);
    p9_wbuf_patch_u32(&r->w, 7, n);
    return len + n;
}

/* Encode and send (or drop) the reply of 'r'. */
static void
req_reply(struct p9s_req *r, int err)
{
    struct p9s_conn *c = r->conn;
    struct timespec now;
    bool drop;
    long len = -1;

    assert(!r->responded);
    r->responded = true;

    pthread_mutex_lock(&c->lock);
    drop = r->flushed && (err == -EINTR || c->closing);
    r->state = REQ_REPLYING; /* from here the peer may reuse the tag */
    pthread_mutex_unlock(&c->lock);

    if (!drop) {
        r->r.tag = r->t.tag;
        if (err < 0) {
            r->r.type = P9_RLERROR;
            r->r.u.rlerror.ecode = p9_errno_to_dotl(-err);
        } else {
            r->r.type = (uint8_t)(r->t.type + 1);
        }
        if (r->staged > 0 && r->r.type == P9_RREAD) {
            len = req_encode_staged(r);
        } else if (req_out(r, p9_encoded_size(&r->r)) == 0) {
            p9_wbuf_init(&r->w, r->out, r->outcnt);
            len = p9_encode(&r->w, &r->r);
        }
        if (len < 0 && err >= 0) {
            /* the reply does not fit what the transport gave us */
            log_peer("%s: reply to %s does not fit (%ld)", c->peer,
                     p9_type_name(r->t.type), len);
            r->r.type = P9_RLERROR;
            r->r.u.rlerror.ecode = p9_errno_to_dotl(ENOBUFS);
            p9_wbuf_init(&r->w, r->out, r->outcnt);
            len = p9_encode(&r->w, &r->r);
        }
        drop = len < 0;
    }
    if (drop) {
        c->ops->drop(c, r->cookie);
    } else {
        if (c->srv->trace) {
            trace_reply(r);
        }
        c->ops->send(c, r->cookie, (size_t)len);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    stats_record(c->srv, r->t.type,
                 (uint64_t)(now.tv_sec - r->start.tv_sec) * 1000000000u +
                     (uint64_t)now.tv_nsec - (uint64_t)r->start.tv_nsec,
                 err < 0);
}

/*
 * Retire 'r' and free it.  Returns the Tflush requests that waited for it,
 * in arrival order, for the caller to answer; sets *release when the
 * closing session's last request is gone.
 */
static struct p9s_req *
req_done(struct p9s_req *r, bool *release)
{
    struct p9s_conn *c = r->conn;
    struct p9s_req *fl;
    struct p9s_req *ordered = NULL;

    pthread_mutex_lock(&c->lock);
    r->state = REQ_DONE;
    tag_remove(c, r);
    fl = r->flushers;
    r->flushers = NULL;
    c->inflight--;
    /* the flushers are still in flight, so no release while they wait */
    *release = c->closing && c->inflight == 0 && !c->released;
    if (*release) {
        c->released = true;
    }
    if (!c->closing &&
        atomic_load_explicit(&c->spare, memory_order_relaxed) == NULL) {
        /* kept for the next request of this session, which saves an
         * allocation per request; under the lock, because once it is
         * dropped the session may be released by another thread */
        free(r->scratch);
        r->scratch = NULL;
        atomic_store_explicit(&c->spare, r, memory_order_release);
        r = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    if (r != NULL) {
        req_free(r);
    }
    while (fl != NULL) { /* parked newest first: reverse */
        struct p9s_req *next = fl->flush_next;

        fl->flush_next = ordered;
        ordered = fl;
        fl = next;
    }
    return ordered;
}

/*
 * The single exit.  Answers 'r', then, in the same loop, every Tflush
 * that waited for it (Rflush after the flushed reply), every Tflush that
 * waited for those, and so on: iterative, so the depth of a flush chain
 * costs no stack.
 */
void
p9s_respond(struct p9s_req *r, int err)
{
    struct p9s_conn *c = r->conn;
    struct p9s_req *todo = NULL;
    struct p9s_req *tail = NULL;
    bool release = false;

    for (;;) {
        struct p9s_req *fl;
        bool rel;

        req_reply(r, err);
        fl = req_done(r, &rel);
        release = release || rel;
        if (fl != NULL) {
            struct p9s_req *last = fl;

            while (last->flush_next != NULL) {
                last = last->flush_next;
            }
            if (tail == NULL) {
                todo = fl;
            } else {
                tail->flush_next = fl;
            }
            tail = last;
        }
        if (todo == NULL) {
            break;
        }
        r = todo;
        todo = r->flush_next;
        if (todo == NULL) {
            tail = NULL;
        }
        r->flush_next = NULL;
        err = 0; /* Rflush */
    }
    if (release) {
        conn_release(c);
    }
}
