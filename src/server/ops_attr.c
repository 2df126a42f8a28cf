/* SPDX-License-Identifier: MIT */
/* Attributes: Tgetattr, Tsetattr, Tstatfs, Treadlink. */
#include "server/srv_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/*
 * Fid 'num' (+1 ref, acting as its user), its node (+1 ref) and its open
 * handle if any, for the attribute ops.  Release with attr_put().
 */
static struct fid *
attr_fid(struct p9s_req *r, uint32_t num, struct be_node **n,
         struct be_handle **h, int *err)
{
    struct fid *f = req_fid(r, num, err);

    if (f == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&f->lock);
    if (f->kind == FID_XATTR_READ || f->kind == FID_XATTR_WRITE) {
        pthread_mutex_unlock(&f->lock);
        fid_put(f);
        *err = -EINVAL;
        return NULL;
    }
    *n = f->node;
    f->be->ops->node_get(f->be, *n);
    *h = f->h; /* lives as long as the fid: we hold a ref */
    pthread_mutex_unlock(&f->lock);
    return f;
}

static void
attr_put(struct fid *f, struct be_node *n)
{
    f->be->ops->node_put(f->be, n);
    fid_put(f);
}

int
op_getattr(struct p9s_req *r)
{
    struct p9_tgetattr *t = &r->t.u.tgetattr;
    struct be_handle *h;
    struct be_node *n;
    struct fid *f;
    int err;

    f = attr_fid(r, t->fid, &n, &h, &err);
    if (f == NULL) {
        return err;
    }
    err = BE_CALL(f, getattr, n, h, t->request_mask, &r->r.u.rgetattr);
    attr_put(f, n);
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

    f = attr_fid(r, t->fid, &n, &h, &err);
    if (f == NULL) {
        return err;
    }
    err = BE_CALL(f, setattr, n, h, t);
    attr_put(f, n);
    return err;
}

int
op_statfs(struct p9s_req *r)
{
    struct be_handle *h;
    struct be_node *n;
    struct fid *f;
    int err;

    f = attr_fid(r, r->t.u.tstatfs.fid, &n, &h, &err);
    if (f == NULL) {
        return err;
    }
    err = BE_CALL(f, statfs, n, &r->r.u.rstatfs);
    attr_put(f, n);
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

    f = attr_fid(r, r->t.u.treadlink.fid, &n, &h, &err);
    if (f == NULL) {
        return err;
    }
    len = BE_CALL(f, readlink, n, rb.target, sizeof(rb.target));
    attr_put(f, n);
    if (len < 0) {
        return (int)len;
    }
    if (len > UINT16_MAX) {
        return -ENAMETOOLONG;
    }
    /* p9s_respond encodes on this same thread, right after */
    r->r.u.rreadlink.target.s = rb.target;
    r->r.u.rreadlink.target.len = (uint16_t)len;
    return 0;
}
