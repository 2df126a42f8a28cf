/* SPDX-License-Identifier: MIT */
/* Attributes: Tgetattr, Tsetattr, Tstatfs, Treadlink. */
#include "server/srv_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* Node and (if open) handle of a fid, for attribute ops. */
static int
attr_target(struct fid *f, struct be_node **n, struct be_handle **h)
{
    pthread_mutex_lock(&f->lock);
    if (f->kind == FID_XATTR_READ || f->kind == FID_XATTR_WRITE) {
        pthread_mutex_unlock(&f->lock);
        return -EINVAL;
    }
    *n = f->node;
    f->be->ops->node_get(f->be, *n);
    *h = f->h; /* lives as long as the fid: we hold a ref */
    pthread_mutex_unlock(&f->lock);
    return 0;
}

int
op_getattr(struct p9s_req *r)
{
    struct p9_tgetattr *t = &r->t.u.tgetattr;
    struct be_handle *h;
    struct be_node *n;
    struct fid *f;
    int err;

    f = req_fid(r, t->fid, &err);
    if (f == NULL) {
        return err;
    }
    err = attr_target(f, &n, &h);
    if (err == 0) {
        err = BE_CALL(f, getattr, n, h, t->request_mask, &r->r.u.rgetattr);
        f->be->ops->node_put(f->be, n);
    }
    fid_put(f);
    return err;
}

int
op_setattr(struct p9s_req *r)
{
    struct p9_tsetattr *t = &r->t.u.tsetattr;
    struct be_handle *h;
    struct be_node *n;
    struct fid *f;
    int err;

    f = req_fid(r, t->fid, &err);
    if (f == NULL) {
        return err;
    }
    err = attr_target(f, &n, &h);
    if (err == 0) {
        err = BE_CALL(f, setattr, n, h, t);
        f->be->ops->node_put(f->be, n);
    }
    fid_put(f);
    return err;
}

int
op_statfs(struct p9s_req *r)
{
    struct be_handle *h;
    struct be_node *n;
    struct fid *f;
    int err;

    f = req_fid(r, r->t.u.tstatfs.fid, &err);
    if (f == NULL) {
        return err;
    }
    err = attr_target(f, &n, &h);
    if (err == 0) {
        err = BE_CALL(f, statfs, n, &r->r.u.rstatfs);
        f->be->ops->node_put(f->be, n);
    }
    fid_put(f);
    return err;
}

/* Rreadlink's string must outlive the handler: keep it in the request. */
struct readlink_buf {
    char target[PATH_MAX];
};

int
op_readlink(struct p9s_req *r)
{
    static _Thread_local struct readlink_buf rb;
    struct be_handle *h;
    struct be_node *n;
    struct fid *f;
    ssize_t len;
    int err;

    f = req_fid(r, r->t.u.treadlink.fid, &err);
    if (f == NULL) {
        return err;
    }
    err = attr_target(f, &n, &h);
    if (err == 0) {
        len = f->be->ops->readlink == NULL
                  ? -ENOSYS
                  : f->be->ops->readlink(f->be, n, rb.target,
                                         sizeof(rb.target));
        f->be->ops->node_put(f->be, n);
        if (len < 0) {
            err = (int)len;
        } else if (len > UINT16_MAX) {
            err = -ENAMETOOLONG;
        } else {
            /* p9s_respond encodes on this same thread, right after */
            r->r.u.rreadlink.target.s = rb.target;
            r->r.u.rreadlink.target.len = (uint16_t)len;
        }
    }
    fid_put(f);
    return err;
}
