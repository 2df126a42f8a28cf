/* SPDX-License-Identifier: MIT */
/*
 * Extended attributes and locks.
 *
 * Txattrwalk makes a new fid holding a snapshot of the value (or of the
 * name list when the name is empty); the client reads it with Tread.
 * Txattrcreate turns the fid into a write-xattr fid: the client writes the
 * value with Twrite and the attribute is set at Tclunk (fid.c).  Values are
 * bounded by XATTR_SIZE_MAX before anything is allocated.
 *
 * Both kinds pin memory until Tclunk, so both are charged to the session's
 * memory budget (--session-mem): a snapshot when it is taken (beyond the
 * budget Txattrwalk answers ENOMEM), a value as its Twrite data arrives --
 * not at the size Txattrcreate announces -- (beyond it Twrite answers
 * ENOSPC, as setxattr does on a full file system).
 */
#include "server/srv_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#ifndef XATTR_SIZE_MAX
#define XATTR_SIZE_MAX 65536
#endif
#ifndef XATTR_NAME_MAX
#define XATTR_NAME_MAX 255
#endif

static int
xattr_name(const struct p9_str *s, char *buf, size_t size)
{
    if (s->len >= size) {
        return -ERANGE;
    }
    memcpy(buf, s->s, s->len);
    buf[s->len] = '\0';
    return 0;
}

/* Read a value or list into a new buffer charged to 'mem' (*charged
 * bytes); the size may change between the probe and the read, so retry a
 * few times. */
static ssize_t
xattr_fetch(struct fid *f, struct be_node *n, const char *name,
            struct be_budget *mem, uint8_t **out, uint64_t *charged)
{
    const struct be_ops *ops = f->be->ops;

    for (int tries = 0; tries < 4; tries++) {
        ssize_t size;
        ssize_t got;
        uint8_t *buf;

        size = name[0] ? (ops->getxattr ? ops->getxattr(f->be, n, name, NULL, 0)
                                        : -ENOSYS)
                       : (ops->listxattr ? ops->listxattr(f->be, n, NULL, 0)
                                         : -ENOSYS);
        if (size < 0) {
            return size;
        }
        if (size > XATTR_SIZE_MAX) {
            return -E2BIG;
        }
        if (!be_budget_charge(mem, (uint64_t)size)) {
            return -ENOMEM; /* the session pins its budget already */
        }
        buf = malloc(size ? (size_t)size : 1);
        if (buf == NULL) {
            be_budget_uncharge(mem, (uint64_t)size);
            return -ENOMEM;
        }
        got = name[0] ? ops->getxattr(f->be, n, name, buf, (size_t)size)
                      : ops->listxattr(f->be, n, (char *)buf, (size_t)size);
        if (got < 0) {
            free(buf);
            be_budget_uncharge(mem, (uint64_t)size);
            if (got == -ERANGE) {
                continue;
            }
            return got;
        }
        *out = buf;
        *charged = (uint64_t)size;
        return got;
    }
    return -ERANGE;
}

int
op_xattrwalk(struct p9s_req *r)
{
    struct p9_txattrwalk *t = &r->t.u.txattrwalk;
    char name[XATTR_NAME_MAX + 1];
    struct fid_use u;
    struct fid *f;
    struct fid *nf;
    uint8_t *buf = NULL;
    uint64_t charged = 0;
    ssize_t size;
    int err;

    err = fid_take(r, t->fid, FT_NOXATTR | FT_NODE, &u);
    if (err < 0) {
        return err;
    }
    f = u.f;
    err = xattr_name(&t->name, name, sizeof(name));
    if (err < 0) {
        goto out_put;
    }
    size = xattr_fetch(f, u.node, name, &r->conn->mem, &buf, &charged);
    if (size < 0) {
        err = (int)size;
        if (err == -ENOMEM) {
            log_peer("%s: session memory budget spent (%llu bytes; "
                     "--session-mem), Txattrwalk answers ENOMEM",
                     r->conn->peer, (unsigned long long)r->conn->mem.max);
        }
        goto out_put;
    }
    suser_ref(f->user);
    nf = fid_new(&r->conn->fids, t->newfid, f->ex, f->user, u.node, &err);
    if (nf == NULL) {
        suser_put(f->user);
        free(buf);
        be_budget_uncharge(&r->conn->mem, charged);
        goto out_put;
    }
    u.node = NULL; /* the new fid took it */
    pthread_mutex_lock(&nf->lock);
    nf->kind = FID_XATTR_READ;
    nf->xbuf = buf;
    nf->xcap = charged;
    nf->xsize = (uint64_t)size;
    nf->xfill = (uint64_t)size;
    pthread_mutex_unlock(&nf->lock);
    fid_put(nf);
    r->r.u.rxattrwalk.size = (uint64_t)size;

out_put:
    fid_drop(&u);
    return err;
}

int
op_xattrcreate(struct p9s_req *r)
{
    struct p9_txattrcreate *t = &r->t.u.txattrcreate;
    char name[XATTR_NAME_MAX + 1];
    struct fid_use u;
    struct fid *f;
    char *xname;
    int err;

    err = fid_take(r, t->fid, FT_UNOPENED, &u);
    if (err < 0) {
        return err;
    }
    f = u.f;
    if (t->flags & ~(uint32_t)(P9_XATTR_CREATE | P9_XATTR_REPLACE)) {
        err = -EINVAL;
        goto out_put;
    }
    if (t->attr_size > XATTR_SIZE_MAX) {
        err = -E2BIG;
        goto out_put;
    }
    err = xattr_name(&t->name, name, sizeof(name));
    if (err == 0 && name[0] == '\0') {
        err = -EINVAL;
    }
    if (err < 0) {
        goto out_put;
    }
    /* the value buffer grows as Twrite brings data (fid_xbuf_reserve) */
    xname = strdup(name);
    if (xname == NULL) {
        err = -ENOMEM;
        goto out_put;
    }
    pthread_mutex_lock(&f->lock);
    if (f->kind != FID_NONE) {
        pthread_mutex_unlock(&f->lock);
        free(xname);
        err = -EBUSY;
        goto out_put;
    }
    f->kind = FID_XATTR_WRITE;
    f->xname = xname;
    f->xsize = t->attr_size;
    f->xfill = 0;
    f->xflags = t->flags;
    pthread_mutex_unlock(&f->lock);

out_put:
    fid_drop(&u);
    return err;
}

/* The fid of a Tlock/Tgetlock: open (a lock needs an open file). */
static int
lock_take(struct p9s_req *r, uint32_t num, uint8_t type, struct fid_use *u)
{
    int err = fid_take(r, num, FT_OPEN, u);

    if (err == 0 && type > P9_LOCK_TYPE_UNLCK) {
        fid_drop(u);
        err = -EINVAL;
    }
    return err;
}

int
op_lock(struct p9s_req *r)
{
    struct p9_tlock *t = &r->t.u.tlock;
    struct fid_use u;
    int err;

    err = lock_take(r, t->fid, t->type, &u);
    if (err < 0) {
        return err;
    }
    err = BE_CALL(u.f, lock, u.h, t, &r->r.u.rlock.status);
    if (err == -ENOLCK) {
        /* a lock record more, or (the file's first lock) a descriptor
         * more kept for good */
        log_peer("%s: lock records (--max-locks %llu) or descriptors held "
                 "(--session-fds %llu) of the session at the limit, Tlock "
                 "answers ENOLCK",
                 r->conn->peer, (unsigned long long)r->conn->locks.max,
                 (unsigned long long)r->conn->fds.max);
    }
    fid_drop(&u);
    return err;
}

int
op_getlock(struct p9s_req *r)
{
    struct p9_tgetlock *t = &r->t.u.tgetlock;
    struct fid_use u;
    int err;

    err = lock_take(r, t->fid, t->type, &u);
    if (err < 0) {
        return err;
    }
    err = BE_CALL(u.f, getlock, u.h, t, &r->r.u.rgetlock);
    fid_drop(&u);
    return err;
}
