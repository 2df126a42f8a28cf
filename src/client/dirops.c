/* SPDX-License-Identifier: MIT */
/*
 * libp9c: operations on names inside a directory fid: mkdir, symlink,
 * mknod, link, rename, renameat, unlinkat.
 */
#include "client/p9c_impl.h"

#include <errno.h>

/*
 * Send a create-like request (Tmkdir, Tsymlink, Tmknod) and return the new
 * object's qid: each of Rmkdir, Rsymlink and Rmknod is just qid[13].
 */
static int
rpc_qid(struct p9c_conn *c, const struct p9_fcall *t, struct p9_qid *qid)
{
    struct p9c_reply *rep;
    int err;

    err = p9c_rpc(c, t, &rep);
    if (err != 0) {
        return err;
    }
    if (qid != NULL) {
        switch (rep->f.type) {
        case P9_RSYMLINK: *qid = rep->f.u.rsymlink.qid; break;
        case P9_RMKNOD: *qid = rep->f.u.rmknod.qid; break;
        default: *qid = rep->f.u.rmkdir.qid; break;
        }
    }
    p9c_reply_free(rep);
    return 0;
}

int
p9c_mkdir(struct p9c_fid *dir, const char *name, uint32_t mode, uint32_t gid,
          struct p9_qid *qid)
{
    struct p9_fcall t = {.type = P9_TMKDIR};
    int err;

    err = p9c_mkstr(&t.u.tmkdir.name, name);
    if (err != 0) {
        return err;
    }
    t.u.tmkdir.dfid = dir->fid;
    t.u.tmkdir.mode = mode;
    t.u.tmkdir.gid = gid;
    return rpc_qid(dir->conn, &t, qid);
}

int
p9c_symlink(struct p9c_fid *dir, const char *name, const char *target,
            uint32_t gid, struct p9_qid *qid)
{
    struct p9_fcall t = {.type = P9_TSYMLINK};

    if (p9c_mkstr(&t.u.tsymlink.name, name) != 0 ||
        p9c_mkstr(&t.u.tsymlink.symtgt, target) != 0) {
        return -ENAMETOOLONG;
    }
    t.u.tsymlink.fid = dir->fid;
    t.u.tsymlink.gid = gid;
    return rpc_qid(dir->conn, &t, qid);
}

int
p9c_mknod(struct p9c_fid *dir, const char *name, uint32_t mode, uint32_t major,
          uint32_t minor, uint32_t gid, struct p9_qid *qid)
{
    struct p9_fcall t = {.type = P9_TMKNOD};
    int err;

    err = p9c_mkstr(&t.u.tmknod.name, name);
    if (err != 0) {
        return err;
    }
    t.u.tmknod.dfid = dir->fid;
    t.u.tmknod.mode = mode;
    t.u.tmknod.major = major;
    t.u.tmknod.minor = minor;
    t.u.tmknod.gid = gid;
    return rpc_qid(dir->conn, &t, qid);
}

int
p9c_link(struct p9c_fid *dir, struct p9c_fid *f, const char *name)
{
    struct p9_fcall t = {.type = P9_TLINK};
    int err;

    err = p9c_mkstr(&t.u.tlink.name, name);
    if (err != 0) {
        return err;
    }
    t.u.tlink.dfid = dir->fid;
    t.u.tlink.fid = f->fid;
    return p9c_rpc0(dir->conn, &t);
}

int
p9c_rename(struct p9c_fid *f, struct p9c_fid *dir, const char *name)
{
    struct p9_fcall t = {.type = P9_TRENAME};
    int err;

    err = p9c_mkstr(&t.u.trename.name, name);
    if (err != 0) {
        return err;
    }
    t.u.trename.fid = f->fid;
    t.u.trename.dfid = dir->fid;
    return p9c_rpc0(f->conn, &t);
}

int
p9c_renameat(struct p9c_fid *olddir, const char *oldname,
             struct p9c_fid *newdir, const char *newname)
{
    struct p9_fcall t = {.type = P9_TRENAMEAT};

    if (p9c_mkstr(&t.u.trenameat.oldname, oldname) != 0 ||
        p9c_mkstr(&t.u.trenameat.newname, newname) != 0) {
        return -ENAMETOOLONG;
    }
    t.u.trenameat.olddirfid = olddir->fid;
    t.u.trenameat.newdirfid = newdir->fid;
    return p9c_rpc0(olddir->conn, &t);
}

int
p9c_unlinkat(struct p9c_fid *dir, const char *name, uint32_t flags)
{
    struct p9_fcall t = {.type = P9_TUNLINKAT};
    int err;

    err = p9c_mkstr(&t.u.tunlinkat.name, name);
    if (err != 0) {
        return err;
    }
    t.u.tunlinkat.dirfd = dir->fid;
    t.u.tunlinkat.flags = flags;
    return p9c_rpc0(dir->conn, &t);
}
