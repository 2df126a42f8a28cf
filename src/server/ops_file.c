/* SPDX-License-Identifier: MIT */
/*
 * Open files: Tlopen, Tlcreate, Tread, Twrite, Tfsync, Treaddir, and the
 * reads and writes of xattr fids.
 *
 * Tread and Treaddir data go straight into the transport's reply buffer
 * (guest memory on virtio): the handler asks for the reply space, reads
 * into the segments after the 11-byte header, and leaves data.ptr NULL so
 * p9s_respond only writes the header.
 */
#include "server/srv_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define RREAD_HDR 11 /* size[4] type[1] tag[2] count[4] */
#define MAX_IOV 1024

static bool
open_wants_write(uint32_t flags)
{
    return (flags & 3) != P9_DOTL_RDONLY ||
           (flags & (P9_DOTL_TRUNC | P9_DOTL_CREATE)) != 0;
}

/*
 * A request tried on the transport's thread (r->nowait): REQ_REQUEUE if
 * fid f's backend cannot give up before it would wait, else 0 with
 * BE_OPEN_NOWAIT added to *flags (the backend's -EAGAIN then moves the
 * request to a worker: p9s_dispatch).
 */
static int
nowait_flags(const struct p9s_req *r, const struct fid *f, uint32_t *flags)
{
    if (!r->nowait) {
        return 0;
    }
    if (!f->be->ops->open_nowait) {
        return REQ_REQUEUE;
    }
    *flags |= BE_OPEN_NOWAIT;
    return 0;
}

int
op_lopen(struct p9s_req *r)
{
    struct p9_tlopen *t = &r->t.u.tlopen;
    struct p9_rlopen *o = &r->r.u.rlopen;
    uint32_t flags = t->flags & ~BE_OPEN_NOWAIT; /* never from the wire */
    struct be_handle *h;
    struct fid_use u;
    struct fid *f;
    int err;

    err = fid_take(r, t->fid, FT_UNOPENED | FT_NODE, &u);
    if (err < 0) {
        return err;
    }
    f = u.f;
    if (f->ex->readonly && open_wants_write(flags)) {
        err = -EROFS;
        goto out_put;
    }
    err = nowait_flags(r, f, &flags);
    if (err == 0) {
        err = BE_CALL(f, open, u.node, flags, &h, &o->qid, &o->iounit);
    }
    if (err != 0) {
        goto out_put;
    }
    pthread_mutex_lock(&f->lock);
    if (f->kind != FID_NONE) {
        pthread_mutex_unlock(&f->lock);
        f->be->ops->close(f->be, h);
        err = -EBUSY; /* a concurrent Tlopen won */
        goto out_put;
    }
    err = conn_handle_limits(r->conn, f->be, h);
    if (err < 0) {
        pthread_mutex_unlock(&f->lock);
        f->be->ops->close(f->be, h);
        goto out_put;
    }
    f->h = h;
    f->open_flags = flags & ~BE_OPEN_NOWAIT;
    f->kind = (o->qid.type & P9_QTDIR) ? FID_DIR : FID_FILE;
    pthread_mutex_unlock(&f->lock);

out_put:
    fid_drop(&u);
    return err;
}

int
op_lcreate(struct p9s_req *r)
{
    struct p9_tlcreate *t = &r->t.u.tlcreate;
    struct p9_rlcreate *o = &r->r.u.rlcreate;
    uint32_t flags = t->flags & ~BE_OPEN_NOWAIT; /* never from the wire */
    char name[NAME_MAX + 1];
    struct be_handle *h;
    struct be_node *n;
    struct be_node *old;
    struct fid_use u;
    struct fid *f;
    int err;

    err = fid_take(r, t->fid, FT_UNOPENED | FT_NODE, &u);
    if (err < 0) {
        return err;
    }
    f = u.f;
    err = name_check(&t->name, name, sizeof(name), false);
    if (err < 0) {
        goto out_put;
    }
    /* a created file keeps its descriptor (struct be_limits.fds): refuse
     * before creating anything when the session has no room left */
    if (atomic_load_explicit(&r->conn->fds.used, memory_order_relaxed) >=
        r->conn->fds.max) {
        err = conn_fds_full(r->conn);
        goto out_put;
    }
    err = nowait_flags(r, f, &flags);
    if (err == 0) {
        err = BE_CALL(f, create, u.node, name, flags, t->mode, t->gid, &n, &h,
                      &o->qid, &o->iounit);
    }
    if (err != 0) {
        goto out_put;
    }
    /* the fid now stands for the new, open file */
    pthread_mutex_lock(&f->lock);
    if (f->kind != FID_NONE) {
        pthread_mutex_unlock(&f->lock);
        f->be->ops->close(f->be, h);
        f->be->ops->node_put(f->be, n);
        err = -EBUSY;
        goto out_put;
    }
    err = conn_handle_limits(r->conn, f->be, h);
    if (err < 0) {
        /* only when other opens filled the budget since the check
         * above: the file exists, the fid stays what it was */
        pthread_mutex_unlock(&f->lock);
        f->be->ops->close(f->be, h);
        f->be->ops->node_put(f->be, n);
        goto out_put;
    }
    old = f->node;
    f->node = n;
    f->h = h;
    f->open_flags = flags & ~BE_OPEN_NOWAIT;
    f->kind = FID_FILE;
    pthread_mutex_unlock(&f->lock);
    f->be->ops->node_put(f->be, old);

out_put:
    fid_drop(&u);
    return err;
}

/* Reply space for Rread/Rreaddir and the data segments after the header. */
static int
data_out(struct p9s_req *r, uint32_t count, struct iovec *iov, int *iovcnt,
         uint32_t *room)
{
    uint32_t msize = p9s_conn_msize(r->conn);
    size_t avail;
    int n;
    int err;

    if (count > msize - RREAD_HDR) {
        count = msize - RREAD_HDR;
    }
    err = req_out(r, RREAD_HDR + (size_t)count);
    if (err < 0) {
        return err;
    }
    avail = p9_wbuf_room(&r->w);
    if (avail < RREAD_HDR) {
        return -ENOBUFS;
    }
    if (count > avail - RREAD_HDR) {
        count = (uint32_t)(avail - RREAD_HDR);
    }
    n = p9_wbuf_iov(&r->w, RREAD_HDR, count, iov, MAX_IOV);
    if (n < 0) {
        return n;
    }
    *iovcnt = n;
    *room = count;
    return 0;
}

static int
xattr_read(struct p9s_req *r, struct fid *f, uint64_t off, uint32_t count)
{
    struct iovec iov[MAX_IOV];
    int iovcnt;
    uint32_t room;
    size_t done = 0;
    int err;

    err = data_out(r, count, iov, &iovcnt, &room);
    if (err < 0) {
        return err;
    }
    if (off < f->xsize) {
        size_t want = f->xsize - off < room ? (size_t)(f->xsize - off) : room;

        for (int i = 0; i < iovcnt && done < want; i++) {
            size_t n =
                iov[i].iov_len < want - done ? iov[i].iov_len : want - done;
            memcpy(iov[i].iov_base, f->xbuf + off + done, n);
            done += n;
        }
    }
    r->r.u.rread.data.len = (uint32_t)done;
    r->r.u.rread.data.ptr = NULL;
    return 0;
}

/* Reads at least this large go through the transport's stage_fd. */
#define STAGE_READ_MIN (16u * 1024)

static ssize_t
stage_sink(void *arg, int fd, uint64_t off, size_t count)
{
    struct p9s_req *r = arg;

    return r->conn->ops->stage_fd(r->conn, r->cookie, fd, off, count);
}

/*
 * A large read of a file whose backend lends its descriptor, on a
 * transport that can send from it: the data goes from the file to the
 * transport without a copy into the reply space.  -ENOTSUP: read it.
 */
static int
read_staged(struct p9s_req *r, struct fid_use *u, const struct p9_tread *t)
{
    uint32_t msize = p9s_conn_msize(r->conn);
    uint32_t count = t->count;
    ssize_t n;

    if (count < STAGE_READ_MIN || r->conn->ops->stage_fd == NULL ||
        u->f->be->ops->read_fd == NULL || msize <= RREAD_HDR) {
        return -ENOTSUP;
    }
    if (count > msize - RREAD_HDR) {
        count = msize - RREAD_HDR;
    }
    n = u->f->be->ops->read_fd(u->f->be, u->h, t->offset, count, stage_sink, r);
    if (n < 0) {
        return (int)n;
    }
    r->staged = (uint32_t)n;
    r->r.u.rread.data.len = (uint32_t)n;
    r->r.u.rread.data.ptr = NULL;
    return 0;
}

int
op_read(struct p9s_req *r)
{
    struct p9_tread *t = &r->t.u.tread;
    struct iovec iov[MAX_IOV];
    int iovcnt;
    uint32_t room;
    struct fid_use u;
    ssize_t n;
    int err;

    err = fid_take(r, t->fid, 0, &u);
    if (err < 0) {
        return err;
    }
    if (u.kind == FID_XATTR_READ) {
        err = xattr_read(r, u.f, t->offset, t->count);
        goto out_put;
    }
    if (u.kind != FID_FILE) {
        err = u.kind == FID_DIR ? -EISDIR : -EBADF;
        goto out_put;
    }
    err = read_staged(r, &u, t);
    if (err != -ENOTSUP) {
        goto out_put;
    }
    err = data_out(r, t->count, iov, &iovcnt, &room);
    if (err < 0) {
        goto out_put;
    }
    n = room == 0 ? 0 : BE_CALL(u.f, read, u.h, iov, iovcnt, t->offset);
    if (n < 0) {
        err = (int)n;
        goto out_put;
    }
    r->r.u.rread.data.len = (uint32_t)n;
    r->r.u.rread.data.ptr = NULL;

out_put:
    fid_drop(&u);
    return err;
}

static int
xattr_write(struct p9s_req *r, struct fid *f, const struct p9_twrite *t,
            uint32_t *count)
{
    uint64_t off = t->offset;
    uint32_t len = t->data.len;
    bool spent = false;
    int err = 0;

    pthread_mutex_lock(&f->lock);
    if (off > f->xsize || len > f->xsize - off) {
        err = -ENOSPC; /* beyond the size announced in Txattrcreate */
    } else if (len > 0 && fid_xbuf_reserve(f, off + len) < 0) {
        err = -ENOSPC; /* the session's memory budget is spent */
        spent = true;
    } else {
        if (len > 0) { /* an empty xattr has no buffer: NULL + 0 is UB */
            p9_data_copy(&t->data, f->xbuf + off);
        }
        if (off + len > f->xfill) {
            f->xfill = off + len;
        }
        *count = len;
    }
    pthread_mutex_unlock(&f->lock);
    if (spent) {
        log_peer("%s: session memory budget spent (%llu bytes; "
                 "--session-mem), xattr Twrite answers ENOSPC",
                 r->conn->peer, (unsigned long long)r->conn->mem.max);
    }
    return err;
}

int
op_write(struct p9s_req *r)
{
    struct p9_twrite *t = &r->t.u.twrite;
    struct iovec iov[MAX_IOV];
    struct fid_use u;
    ssize_t n;
    int iovcnt;
    int err;

    err = fid_take(r, t->fid, 0, &u);
    if (err < 0) {
        return err;
    }
    if (u.kind == FID_XATTR_WRITE) {
        err = xattr_write(r, u.f, t, &r->r.u.rwrite.count);
        goto out_put;
    }
    if (u.kind != FID_FILE) {
        err = u.kind == FID_DIR ? -EISDIR : -EBADF;
        goto out_put;
    }
    iovcnt = p9_data_iov(&t->data, iov, MAX_IOV);
    if (iovcnt < 0) {
        err = -EINVAL;
        goto out_put;
    }
    n = t->data.len == 0 ? 0 : BE_CALL(u.f, write, u.h, iov, iovcnt, t->offset);
    if (n < 0) {
        err = (int)n;
        goto out_put;
    }
    r->r.u.rwrite.count = (uint32_t)n;

out_put:
    fid_drop(&u);
    return err;
}

int
op_fsync(struct p9s_req *r)
{
    struct p9_tfsync *t = &r->t.u.tfsync;
    struct fid_use u;
    int err;

    err = fid_take(r, t->fid, FT_OPEN, &u);
    if (err < 0) {
        return err;
    }
    err = BE_CALL(u.f, fsync, u.h, t->datasync != 0);
    fid_drop(&u);
    return err;
}

struct readdir_ctx {
    struct p9_wbuf w;
    size_t used;
};

static int
readdir_emit(void *arg, const struct p9_qid *qid, uint64_t off, uint8_t type,
             const char *name, size_t namelen)
{
    struct readdir_ctx *ctx = arg;
    struct p9_dirent d;

    if (namelen > UINT16_MAX ||
        p9_dirent_size(namelen) > p9_wbuf_room(&ctx->w)) {
        return 1;
    }
    d.qid = *qid;
    d.offset = off;
    d.type = type;
    d.name.s = name;
    d.name.len = (uint16_t)namelen;
    p9_put_dirent(&ctx->w, &d);
    ctx->used += p9_dirent_size(namelen);
    return 0;
}

int
op_readdir(struct p9s_req *r)
{
    struct p9_treaddir *t = &r->t.u.treaddir;
    struct iovec iov[MAX_IOV];
    struct readdir_ctx ctx;
    struct fid_use u;
    uint32_t room;
    int iovcnt;
    int err;

    err = fid_take(r, t->fid, 0, &u);
    if (err < 0) {
        return err;
    }
    if (u.kind != FID_DIR) {
        err = u.kind == FID_FILE ? -ENOTDIR : -EBADF;
        goto out_put;
    }
    err = data_out(r, t->count, iov, &iovcnt, &room);
    if (err < 0) {
        goto out_put;
    }
    p9_wbuf_init(&ctx.w, iov, iovcnt);
    ctx.used = 0;
    err = BE_CALL(u.f, readdir, u.h, t->offset, readdir_emit, &ctx);
    if (err < 0) {
        goto out_put;
    }
    r->r.u.rreaddir.data.len = (uint32_t)ctx.used;
    r->r.u.rreaddir.data.ptr = NULL;

out_put:
    fid_drop(&u);
    return err;
}
