/* SPDX-License-Identifier: MIT */
/* Attributes: Tgetattr, Tsetattr, Tstatfs, Treadlink. */
#include "server/srv_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#define ATTR_TAKE (FT_NOXATTR | FT_NODE)

int
op_getattr(struct p9s_req *r)
{
    struct p9_tgetattr *t = &r->t.u.tgetattr;
    struct fid_use u;
    int err;

    err = fid_take(r, t->fid, ATTR_TAKE, &u);
    if (err < 0) {
        return err;
    }
    err = BE_CALL(u.f, getattr, u.node, u.h, t->request_mask, &r->r.u.rgetattr);
    fid_drop(&u);
    return err;
}

int
op_setattr(struct p9s_req *r)
{
    struct p9_tsetattr *t = &r->t.u.tsetattr;
    struct fid_use u;
    int err;

    err = fid_take(r, t->fid, ATTR_TAKE, &u);
    if (err < 0) {
        return err;
    }
    err = BE_CALL(u.f, setattr, u.node, u.h, t);
    fid_drop(&u);
    return err;
}

int
op_statfs(struct p9s_req *r)
{
    struct fid_use u;
    int err;

    err = fid_take(r, r->t.u.tstatfs.fid, ATTR_TAKE, &u);
    if (err < 0) {
        return err;
    }
    err = BE_CALL(u.f, statfs, u.node, &r->r.u.rstatfs);
    fid_drop(&u);
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
    struct fid_use u;
    ssize_t len;
    int err;

    err = fid_take(r, r->t.u.treadlink.fid, ATTR_TAKE, &u);
    if (err < 0) {
        return err;
    }
    len = BE_CALL(u.f, readlink, u.node, rb.target, sizeof(rb.target));
    fid_drop(&u);
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
