/* SPDX-License-Identifier: MIT */
/*
 * Namespace changes: Tmkdir, Tmknod, Tsymlink, Tlink, Trename, Trenameat,
 * Tunlinkat.  Names are checked here before a backend sees them.
 */
#include "server/srv_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* A directory fid's node for a namespace op (not an xattr fid). */
static int
dir_fid(struct p9s_req *r, uint32_t num, struct fid **fp, struct be_node **n)
{
    int err;

    *n = NULL;
    *fp = req_fid(r, num, &err);
    if (*fp == NULL) {
        return err;
    }
    if ((*fp)->kind == FID_XATTR_READ || (*fp)->kind == FID_XATTR_WRITE) {
        fid_put(*fp);
        return -EINVAL;
    }
    *n = fid_node(*fp);
    return 0;
}

static void
dir_put(struct fid *f, struct be_node *n)
{
    f->be->ops->node_put(f->be, n);
    fid_put(f);
}

int
op_mkdir(struct p9s_req *r)
{
    struct p9_tmkdir *t = &r->t.u.tmkdir;
    char name[NAME_MAX + 1];
    struct be_node *d;
    struct fid *f;
    int err;

    err = dir_fid(r, t->dfid, &f, &d);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(f, mkdir, d, name, t->mode, t->gid, &r->r.u.rmkdir.qid);
    }
    dir_put(f, d);
    return err;
}

int
op_mknod(struct p9s_req *r)
{
    struct p9_tmknod *t = &r->t.u.tmknod;
    char name[NAME_MAX + 1];
    struct be_node *d;
    struct fid *f;
    int err;

    err = dir_fid(r, t->dfid, &f, &d);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(f, mknod, d, name, t->mode, t->major, t->minor, t->gid,
                      &r->r.u.rmknod.qid);
    }
    dir_put(f, d);
    return err;
}

int
op_symlink(struct p9s_req *r)
{
    struct p9_tsymlink *t = &r->t.u.tsymlink;
    char name[NAME_MAX + 1];
    char target[PATH_MAX];
    struct be_node *d;
    struct fid *f;
    int err;

    err = dir_fid(r, t->fid, &f, &d);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0 && t->symtgt.len >= sizeof(target)) {
        err = -ENAMETOOLONG;
    }
    if (err == 0 && t->symtgt.len == 0) {
        err = -ENOENT;
    }
    if (err == 0) {
        /* the target is stored, never resolved by the server */
        memcpy(target, t->symtgt.s, t->symtgt.len);
        target[t->symtgt.len] = '\0';
        err = BE_CALL(f, symlink, d, name, target, t->gid,
                      &r->r.u.rsymlink.qid);
    }
    dir_put(f, d);
    return err;
}

/*
 * Two fids of one export, for Tlink, Trenameat and Trename: fails with
 * -EXDEV across exports (read-only gating of the export was done on the
 * first fid by the dispatcher).  Leaves the thread acting as the first
 * fid's user.  On success both pairs must be released with dir_put().
 */
static int
fid_pair(struct p9s_req *r, uint32_t a, uint32_t b, struct fid **fa,
         struct be_node **na, struct fid **fb, struct be_node **nb)
{
    int err;

    err = dir_fid(r, a, fa, na);
    if (err < 0) {
        return err;
    }
    err = dir_fid(r, b, fb, nb);
    if (err < 0) {
        dir_put(*fa, *na);
        return err;
    }
    if ((*fb)->ex != (*fa)->ex) {
        err = -EXDEV;
    } else if ((*fa)->be->ops->user_enter != NULL) {
        err = (*fa)->be->ops->user_enter((*fa)->be, (*fa)->user->bu);
    }
    if (err < 0) {
        dir_put(*fb, *nb);
        dir_put(*fa, *na);
    }
    return err;
}

int
op_link(struct p9s_req *r)
{
    struct p9_tlink *t = &r->t.u.tlink;
    char name[NAME_MAX + 1];
    struct be_node *d;
    struct be_node *target;
    struct fid *f;
    struct fid *tf;
    int err;

    err = fid_pair(r, t->dfid, t->fid, &f, &d, &tf, &target);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(f, link, d, name, target);
    }
    dir_put(tf, target);
    dir_put(f, d);
    return err;
}

int
op_renameat(struct p9s_req *r)
{
    struct p9_trenameat *t = &r->t.u.trenameat;
    char oldname[NAME_MAX + 1];
    char newname[NAME_MAX + 1];
    struct be_node *od;
    struct be_node *nd;
    struct fid *of;
    struct fid *nf;
    int err;

    err = fid_pair(r, t->olddirfid, t->newdirfid, &of, &od, &nf, &nd);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->oldname, oldname, sizeof(oldname), false);
    if (err == 0) {
        err = name_check(&t->newname, newname, sizeof(newname), false);
    }
    if (err == 0) {
        err = BE_CALL(of, renameat, od, oldname, nd, newname);
    }
    dir_put(nf, nd);
    dir_put(of, od);
    return err;
}

int
op_rename(struct p9s_req *r)
{
    struct p9_trename *t = &r->t.u.trename;
    char name[NAME_MAX + 1];
    struct be_node *n;
    struct be_node *nd;
    struct fid *f;
    struct fid *df;
    int err;

    err = fid_pair(r, t->fid, t->dfid, &f, &n, &df, &nd);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(f, rename, n, nd, name);
    }
    dir_put(df, nd);
    dir_put(f, n);
    return err;
}

int
op_unlinkat(struct p9s_req *r)
{
    struct p9_tunlinkat *t = &r->t.u.tunlinkat;
    char name[NAME_MAX + 1];
    struct be_node *d;
    struct fid *f;
    int err;

    if (t->flags & ~(uint32_t)P9_DOTL_AT_REMOVEDIR) {
        return -EINVAL;
    }
    err = dir_fid(r, t->dirfd, &f, &d);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(f, unlinkat, d, name, t->flags);
    }
    dir_put(f, d);
    return err;
}
