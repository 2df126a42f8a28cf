/* SPDX-License-Identifier: MIT */
/*
 * libp9c: getattr, setattr, statfs, readlink.
 */
#include "client/p9c_impl.h"

#include <errno.h>
#include <string.h>

int
p9c_getattr(struct p9c_fid *f, uint64_t mask, struct p9_rgetattr *out)
{
    struct p9_fcall t = {.type = P9_TGETATTR};
    struct p9c_reply *rep;
    int err;

    t.u.tgetattr.fid = f->fid;
    t.u.tgetattr.request_mask = mask;
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    *out = rep->f.u.rgetattr;
    p9c_reply_free(rep);
    return 0;
}

int
p9c_setattr(struct p9c_fid *f, const struct p9_tsetattr *in)
{
    struct p9_fcall t = {.type = P9_TSETATTR};

    t.u.tsetattr = *in;
    t.u.tsetattr.fid = f->fid;
    return p9c_rpc0(f->conn, &t);
}

int
p9c_statfs(struct p9c_fid *f, struct p9_rstatfs *out)
{
    struct p9_fcall t = {.type = P9_TSTATFS};
    struct p9c_reply *rep;
    int err;

    t.u.tstatfs.fid = f->fid;
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    *out = rep->f.u.rstatfs;
    p9c_reply_free(rep);
    return 0;
}

ssize_t
p9c_readlink(struct p9c_fid *f, char *buf, size_t size)
{
    struct p9_fcall t = {.type = P9_TREADLINK};
    struct p9c_reply *rep;
    size_t n;
    int err;

    t.u.treadlink.fid = f->fid;
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    n = rep->f.u.rreadlink.target.len;
    if (n + 1 > size) {
        p9c_reply_free(rep);
        return -ERANGE;
    }
    memcpy(buf, rep->f.u.rreadlink.target.s, n);
    buf[n] = '\0';
    p9c_reply_free(rep);
    return (ssize_t)n;
}
