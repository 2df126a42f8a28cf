/* SPDX-License-Identifier: MIT */
/*
 * The 9P glue of the vhost-user device: the transport ops the 9P core
 * calls (p9s_conn_ops) and the path of a request from the ring into the
 * core (a stable copy of its bytes, then submission, inline when the
 * guest waits for each reply).
 *
 * 9P workers call the ops concurrently; they only touch the element
 * (cookie) they were given and its virtqueue (vq->lock).
 */
#include "vhost/vhu_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "util/log.h"
#include "virtfs/p9.h"
#include "virtfs/server.h"

/* Chains popped per kick before the socket gets a look again. */
#define VHU_POP_BATCH 256
/* Requests are copied out of guest memory (see stable_request()): the
 * largest request other than Twrite (two strings of the longest 9P length
 * fit: Trenameat), and the copies one device may have in flight.  Linux
 * sends at most a few KiB (16 names of NAME_MAX). */
#define VHU_MAX_REQ_COPY (136u << 10)
#define VHU_MAX_COPIED (64u << 20)
/* Twrite: size[4] type[1] tag[2] fid[4] offset[8] count[4], then data */
#define TWRITE_HDR 23u
/* Where type[1] is in every 9P header (after size[4]). */
#define P9_TYPE_OFF 4

static int
op_reply_buf(struct p9s_conn *c, void *cookie, size_t need,
             const struct iovec **iov, int *iovcnt)
{
    struct vq_elem *e = cookie;
    bool stale;

    (void)c;
    (void)need;
    pthread_mutex_lock(&e->vq->lock);
    stale = !e->vq->started || e->gen != e->vq->gen;
    pthread_mutex_unlock(&e->vq->lock);
    if (stale || e->in_num == 0) {
        return stale ? -ECANCELED : -ENOBUFS;
    }
    *iov = e->iov + e->out_num;
    *iovcnt = e->in_num;
    return 0;
}

/* A request is complete: its copy no longer counts. */
static void
copy_done(struct vhu_dev *d, struct vq_elem *e)
{
    atomic_fetch_sub(&d->copied, e->copy_len);
    e->copy_len = 0;
}

static void
op_send(struct p9s_conn *c, void *cookie, size_t len)
{
    struct vq_elem *e = cookie;
    struct vhu_dev *d = e->opaque;

    (void)c;
    copy_done(d, e);
    vq_push(e, len);
    atomic_fetch_sub(&d->inflight, 1);
}

static void
op_drop(struct p9s_conn *c, void *cookie)
{
    struct vq_elem *e = cookie;
    struct vhu_dev *d = e->opaque;

    /* virtio wants every chain back: return it with nothing written. */
    (void)c;
    copy_done(d, e);
    vq_push(e, 0);
    atomic_fetch_sub(&d->inflight, 1);
}

static void
op_release(struct p9s_conn *c, void *tp)
{
    (void)c;
    vhu_dev_put(tp);
}

static const struct p9s_conn_ops vhu_conn_ops = {
    .reply_buf = op_reply_buf,
    .send = op_send,
    .drop = op_drop,
    .release = op_release,
};

int
vhu_session_open(struct vhu_dev *d)
{
    atomic_fetch_add(&d->refs, 1);
    d->conn = p9s_conn_new(d->srv, &vhu_conn_ops, d, "vhost-user");
    if (d->conn == NULL) {
        atomic_fetch_sub(&d->refs, 1);
        return -ENOMEM;
    }
    return 0;
}

void
vhu_session_close(struct vhu_dev *d)
{
    if (d->conn != NULL) {
        p9s_conn_close(d->conn); /* release() drops the session's ref */
        d->conn = NULL;
    }
}

/* Copy 'len' bytes at offset 'off' of the iovecs into 'dst'. */
static void
iov_gather(uint8_t *dst, const struct iovec *iov, int cnt, size_t off,
           size_t len)
{
    for (int i = 0; i < cnt && len > 0; i++) {
        size_t n;

        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        n = iov[i].iov_len - off;
        if (n > len) {
            n = len;
        }
        memcpy(dst, (const uint8_t *)iov[i].iov_base + off, n);
        dst += n;
        len -= n;
        off = 0;
    }
}

/*
 * The request as the core gets it.  Its bytes are in guest memory, which
 * the guest may rewrite while the core decodes and uses them (strings are
 * borrowed from the message, a name is checked and then used), so the
 * core gets a private copy: the whole message, or for a Twrite its header
 * alone (its payload is file data, which the guest may change as it
 * likes).  Sets iov and cnt (kept in e->copy) and returns 0, or -E2BIG
 * when the copy would be too large, -ENOMEM.
 */
static int
stable_request(struct vhu_dev *d, struct vq_elem *e, const struct iovec **iov,
               int *cnt)
{
    uint8_t hdr[TWRITE_HDR];
    bool twrite = false;
    size_t clen = e->out_len;
    size_t off;
    struct iovec *v;
    uint8_t *bytes;
    int n = 1;

    if (e->out_len > p9s_conn_msize(d->conn)) {
        /* The core refuses it from its length alone: nothing to copy. */
        *iov = e->iov;
        *cnt = e->out_num;
        return 0;
    }
    if (e->out_len >= TWRITE_HDR) {
        /* Read once: what decides is what the core will see. */
        iov_gather(hdr, e->iov, e->out_num, 0, TWRITE_HDR);
        /* out_len >= TWRITE_HDR: iov_gather filled hdr (the analyzer
         * does not follow its loop) */
        /* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
        twrite = hdr[P9_TYPE_OFF] == P9_TWRITE;
    }
    if (twrite) {
        clen = TWRITE_HDR;
        n += e->out_num; /* at most: the payload's guest buffers */
    } else if (clen > VHU_MAX_REQ_COPY) {
        return -E2BIG;
    }
    if (atomic_fetch_add(&d->copied, clen) + clen > VHU_MAX_COPIED) {
        atomic_fetch_sub(&d->copied, clen);
        return -E2BIG;
    }
    e->copy = malloc((size_t)n * sizeof(*v) + clen);
    if (e->copy == NULL) {
        atomic_fetch_sub(&d->copied, clen);
        return -ENOMEM;
    }
    e->copy_len = clen;
    v = e->copy;
    bytes = (uint8_t *)(v + n);
    n = 1;
    v[0] = (struct iovec){.iov_base = bytes, .iov_len = clen};
    if (!twrite) {
        iov_gather(bytes, e->iov, e->out_num, 0, clen);
    } else {
        memcpy(bytes, hdr, TWRITE_HDR);
        off = TWRITE_HDR;
        for (int i = 0; i < e->out_num; i++) {
            if (off >= e->iov[i].iov_len) {
                off -= e->iov[i].iov_len;
                continue;
            }
            v[n].iov_base = (uint8_t *)e->iov[i].iov_base + off;
            v[n].iov_len = e->iov[i].iov_len - off;
            n++;
            off = 0;
        }
    }
    *iov = v;
    *cnt = n;
    return 0;
}

/*
 * Hand a chain to the 9P core.  'alone': the ring held nothing after it;
 * with nothing else in flight either, the request may run right on the
 * device thread (the core decides which requests qualify), saving the
 * hand-over to a worker for a guest that waits for each reply.
 */
static void
submit(struct vhu_dev *d, struct vq_elem *e, bool alone)
{
    const struct iovec *iov;
    unsigned flags = 0;
    int cnt;
    int err;

    if (e->out_len < P9_HDRSZ || d->conn == NULL) {
        /* Too short to be a 9P message: hand it back untouched. */
        log_peer("vhost-user: request of %zu bytes returned", e->out_len);
        vq_push(e, 0);
        return;
    }
    err = stable_request(d, e, &iov, &cnt);
    if (err < 0) {
        vq_fail(e->vq, "request of %zu bytes cannot be copied (%d)", e->out_len,
                err);
        vq_push(e, 0);
        return;
    }
    e->opaque = d;
    if (atomic_fetch_add(&d->inflight, 1) == 0 && alone) {
        flags = P9S_SUBMIT_INLINE;
    }
    err = p9s_conn_submit_flags(d->conn, iov, cnt, e->out_len, e, flags);
    if (err < 0) {
        /*
         * The element was dropped (returned).  The 9P stream cannot go on
         * (bad header, duplicate tag): start a new session, which the
         * guest has to begin with Tversion like any other.
         */
        log_peer("vhost-user: 9P session reset after a bad request (%d)", err);
        vhu_session_close(d);
        if (vhu_session_open(d) < 0) {
            log_err("vhost-user: cannot open a new 9P session");
        }
    }
}

/*
 * Busy-poll: the ring is empty and not yet re-armed (with EVENT_IDX the
 * guest does not kick meanwhile).  If the rules allow (util/busypoll.h)
 * and no request of this device is still being served (the guest waits
 * for nothing of ours: its next request may be at hand), watch the ring's
 * index for the window.  True if a chain arrived.
 */
static bool
ring_spin(struct vhu_dev *d, struct vq *vq)
{
    uint64_t end;
    uint64_t t;
    bool caught;

    /* a stopped ring (GET_VRING_BASE, or moved out of guest memory) has
     * no valid avail pointer; this thread handles the messages that start
     * and stop it, so it stays as it is while we spin */
    if (d->bp == NULL || atomic_load(&d->inflight) != 0 || !vq_is_started(vq)) {
        return false;
    }
    end = bp_spin_begin(d->bp, &d->bps);
    if (end == 0) {
        return false;
    }
    do {
        bp_relax();
        caught = vq_avail_pending(vq);
        t = bp_now_ns();
        bp_spin_look(&d->bps, t);
    } while (!caught && t < end && !atomic_load(&d->guard->faulted));
    bp_spin_end(d->bp, &d->bps, t, caught);
    return caught;
}

/* Pop up to a batch; true if the ring may still hold more. */
bool
vhu_ring_process(struct vhu_dev *d, int i)
{
    struct vq *vq = &d->vq[i];
    struct vq_elem *e;
    struct vq_elem *next = NULL;
    int n = 0;
    int r = 0;

    if (!vq->enabled || d->mem == NULL || atomic_load(&d->guard->faulted)) {
        return false;
    }
    for (;;) {
        while (n < VHU_POP_BATCH) {
            if (next != NULL) {
                e = next;
                next = NULL;
            } else if ((r = vq_pop(vq, d->mem, &e)) != 1) {
                break;
            }
            /* look one ahead: is this request alone in the ring? */
            r = vq_pop(vq, d->mem, &next);
            if (r != 1) {
                next = NULL;
            }
            submit(d, e, r == 0);
            n++;
            if (r < 0) {
                break;
            }
        }
        if (next != NULL) {
            submit(d, next, false); /* popped already: must go now */
            return true;
        }
        if (n >= VHU_POP_BATCH) {
            return true;
        }
        if (r < 0) {
            vhu_dev_signal_broken(d);
            return false;
        }
        if (n > 0 && d->bp != NULL) {
            bp_note_request(d->bp, d);
        }
        if (ring_spin(d, vq)) {
            continue;
        }
        /* Empty: re-arm notifications, then look once more (a chain added
         * between the last pop and the re-arm would get no kick). */
        if (!vq_enable_notify(vq)) {
            return false;
        }
    }
}

void
vhu_dev_process(struct vhu_dev *d, int i)
{
    while (vhu_ring_process(d, i)) {
    }
}
