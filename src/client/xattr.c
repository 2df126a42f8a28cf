/* SPDX-License-Identifier: MIT */
/*
 * libp9c: extended attributes.  Reading: Txattrwalk gives a new fid and
 * the value size, then Tread on it.  Writing: Txattrcreate turns a fid
 * (here a clone, so the caller's fid is untouched) into a write fid, the
 * value goes with Twrite, and Tclunk commits it (its error is the set's
 * error).  Removal is a set with size 0 and XATTR_REPLACE, as Linux does.
 */
#include "client/p9c_impl.h"

#include <errno.h>
#include <limits.h>

int
p9c_xattrwalk(struct p9c_fid *f, const char *name, struct p9c_fid **out,
              uint64_t *size)
{
    struct p9_fcall t = {.type = P9_TXATTRWALK};
    struct p9c_reply *rep;
    struct p9c_fid *nf;
    int err;

    *out = NULL;
    *size = 0;
    err = p9c_mkstr(&t.u.txattrwalk.name, name);
    if (err != 0) {
        return err;
    }
    nf = p9c_fid_new(f->conn);
    if (nf == NULL) {
        return -ENOMEM;
    }
    t.u.txattrwalk.fid = f->fid;
    t.u.txattrwalk.newfid = nf->fid;
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        p9c_fid_release(nf);
        return err;
    }
    *size = rep->f.u.rxattrwalk.size;
    p9c_reply_free(rep);
    nf->qid = f->qid;
    nf->mode = P9_DOTL_RDONLY;
    *out = nf;
    return 0;
}

int
p9c_xattrcreate(struct p9c_fid *f, const char *name, uint64_t size,
                uint32_t flags)
{
    struct p9_fcall t = {.type = P9_TXATTRCREATE};
    int err;

    err = p9c_mkstr(&t.u.txattrcreate.name, name);
    if (err != 0) {
        return err;
    }
    t.u.txattrcreate.fid = f->fid;
    t.u.txattrcreate.attr_size = size;
    t.u.txattrcreate.flags = flags;
    err = p9c_rpc0(f->conn, &t);
    if (err == 0) {
        f->mode = P9_DOTL_WRONLY;
    }
    return err;
}

ssize_t
p9c_xattr_get(struct p9c_fid *f, const char *name, void *buf, size_t size)
{
    struct p9c_fid *xf;
    uint64_t vsize;
    ssize_t n;
    int err;

    err = p9c_xattrwalk(f, name, &xf, &vsize);
    if (err != 0) {
        return err;
    }
    if (vsize > SSIZE_MAX) {
        n = -EPROTO;
    } else if (size == 0) {
        n = (ssize_t)vsize;
    } else if (vsize > size) {
        n = -ERANGE;
    } else {
        n = p9c_pread(xf, buf, (size_t)vsize, 0);
    }
    p9c_clunk(xf);
    return n;
}

ssize_t
p9c_xattr_list(struct p9c_fid *f, void *buf, size_t size)
{
    return p9c_xattr_get(f, "", buf, size);
}

int
p9c_xattr_set(struct p9c_fid *f, const char *name, const void *value,
              size_t size, uint32_t flags)
{
    struct p9c_fid *xf;
    ssize_t n;
    int err;

    err = p9c_walk(f, "", &xf);
    if (err != 0) {
        return err;
    }
    err = p9c_xattrcreate(xf, name, size, flags);
    if (err != 0) {
        p9c_clunk(xf);
        return err;
    }
    if (size > 0) {
        n = p9c_pwrite(xf, value, size, 0);
        if (n >= 0 && (size_t)n != size) {
            n = -EIO;
        }
        if (n < 0) {
            p9c_clunk(xf);
            return (int)n;
        }
    }
    return p9c_clunk(xf); /* the clunk commits the value */
}

int
p9c_xattr_remove(struct p9c_fid *f, const char *name)
{
    return p9c_xattr_set(f, name, NULL, 0, P9_XATTR_REPLACE);
}
