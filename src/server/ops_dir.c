/* SPDX-License-Identifier: MIT */
/*
 * Namespace changes: Tmkdir, Tmknod, Tsymlink, Tlink, Trename, Trenameat,
 * Tunlinkat.  Names are checked here before a backend sees them.
 */
#include "server/srv_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#define DIR_TAKE (FT_NOXATTR | FT_NODE)

int
op_mkdir(struct p9s_req *r)
{
    struct p9_tmkdir *t = &r->t.u.tmkdir;
    char name[NAME_MAX + 1];
    struct fid_use d;
    int err;

    err = fid_take(r, t->dfid, DIR_TAKE, &d);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(d.f, mkdir, d.node, name, t->mode, t->gid,
                      &r->r.u.rmkdir.qid);
    }
    fid_drop(&d);
    return err;
}

int
op_mknod(struct p9s_req *r)
{
    struct p9_tmknod *t = &r->t.u.tmknod;
    char name[NAME_MAX + 1];
    struct fid_use d;
    int err;

    err = fid_take(r, t->dfid, DIR_TAKE, &d);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(d.f, mknod, d.node, name, t->mode, t->major, t->minor,
                      t->gid, &r->r.u.rmknod.qid);
    }
    fid_drop(&d);
    return err;
}

int
op_symlink(struct p9s_req *r)
{
    struct p9_tsymlink *t = &r->t.u.tsymlink;
    char name[NAME_MAX + 1];
    char target[PATH_MAX];
    struct fid_use d;
    int err;

    err = fid_take(r, t->fid, DIR_TAKE, &d);
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
        err = BE_CALL(d.f, symlink, d.node, name, target, t->gid,
                      &r->r.u.rsymlink.qid);
    }
    fid_drop(&d);
    return err;
}

/*
 * Two fids of one export, for Tlink, Trenameat and Trename: fails with
 * -EXDEV across exports (read-only gating of the export was done on the
 * first fid by the dispatcher).  Leaves the thread acting as the first
 * fid's user.  On success both must be released with fid_drop().
 */
static int
fid_take_pair(struct p9s_req *r, uint32_t a, uint32_t b, struct fid_use *ua,
              struct fid_use *ub)
{
    int err;

    err = fid_take(r, a, DIR_TAKE, ua);
    if (err < 0) {
        return err;
    }
    err = fid_take(r, b, DIR_TAKE, ub);
    if (err < 0) {
        fid_drop(ua);
        return err;
    }
    if (ub->f->ex != ua->f->ex) {
        err = -EXDEV;
    } else if (ua->f->be->ops->user_enter != NULL) {
        err = ua->f->be->ops->user_enter(ua->f->be, ua->f->user->bu);
    }
    if (err < 0) {
        fid_drop(ub);
        fid_drop(ua);
    }
    return err;
}

int
op_link(struct p9s_req *r)
{
    struct p9_tlink *t = &r->t.u.tlink;
    char name[NAME_MAX + 1];
    struct fid_use d;
    struct fid_use target;
    int err;

    err = fid_take_pair(r, t->dfid, t->fid, &d, &target);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(d.f, link, d.node, name, target.node);
    }
    fid_drop(&target);
    fid_drop(&d);
    return err;
}

int
op_renameat(struct p9s_req *r)
{
    struct p9_trenameat *t = &r->t.u.trenameat;
    char oldname[NAME_MAX + 1];
    char newname[NAME_MAX + 1];
    struct fid_use od;
    struct fid_use nd;
    int err;

    err = fid_take_pair(r, t->olddirfid, t->newdirfid, &od, &nd);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->oldname, oldname, sizeof(oldname), false);
    if (err == 0) {
        err = name_check(&t->newname, newname, sizeof(newname), false);
    }
    if (err == 0) {
        err = BE_CALL(od.f, renameat, od.node, oldname, nd.node, newname);
    }
    fid_drop(&nd);
    fid_drop(&od);
    return err;
}

int
op_rename(struct p9s_req *r)
{
    struct p9_trename *t = &r->t.u.trename;
    char name[NAME_MAX + 1];
    struct fid_use n;
    struct fid_use nd;
    int err;

    err = fid_take_pair(r, t->fid, t->dfid, &n, &nd);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(n.f, rename, n.node, nd.node, name);
    }
    fid_drop(&nd);
    fid_drop(&n);
    return err;
}

int
op_unlinkat(struct p9s_req *r)
{
    struct p9_tunlinkat *t = &r->t.u.tunlinkat;
    char name[NAME_MAX + 1];
    struct fid_use d;
    int err;

    if (t->flags & ~(uint32_t)P9_DOTL_AT_REMOVEDIR) {
        return -EINVAL;
    }
    err = fid_take(r, t->dirfd, DIR_TAKE, &d);
    if (err < 0) {
        return err;
    }
    err = name_check(&t->name, name, sizeof(name), false);
    if (err == 0) {
        err = BE_CALL(d.f, unlinkat, d.node, name, t->flags);
    }
    fid_drop(&d);
    return err;
}
