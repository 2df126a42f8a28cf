/* SPDX-License-Identifier: MIT */
/*
 * Session messages: Tversion, Tauth, Tattach, Tflush, Tclunk, Tremove,
 * and Twalk, plus the helpers every handler uses.
 *
 * Handlers return 0 (the reply in r->r is encoded by p9s_respond) or
 * -errno (p9s_respond turns it into Rlerror).  They never encode errors.
 */
#include "server/srv_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

int
name_check(const struct p9_str *s, char *buf, size_t size, bool allow_dotdot)
{
    if (s->len == 0) {
        return -ENOENT;
    }
    if (s->len >= size) {
        return -ENAMETOOLONG;
    }
    if (memchr(s->s, '/', s->len) != NULL) {
        return -EINVAL;
    }
    memcpy(buf, s->s, s->len);
    buf[s->len] = '\0';
    if (strcmp(buf, ".") == 0) {
        return -EINVAL;
    }
    if (strcmp(buf, "..") == 0 && !allow_dotdot) {
        return -EINVAL;
    }
    return 0;
}

const struct p9s_export *
srv_find_export(struct p9s_server *srv, const char *aname)
{
    if (aname[0] == '\0') {
        return srv->nexports == 1 ? &srv->exports[0] : NULL;
    }
    for (int i = 0; i < srv->nexports; i++) {
        const struct p9s_export *ex = &srv->exports[i];

        if ((ex->name != NULL && strcmp(ex->name, aname) == 0) ||
            strcmp(ex->path, aname) == 0) {
            return ex;
        }
    }
    /* an aname with a trailing slash names the same directory */
    for (int i = 0; i < srv->nexports; i++) {
        const struct p9s_export *ex = &srv->exports[i];
        size_t n = strlen(ex->path);

        if (strncmp(ex->path, aname, n) == 0 &&
            strspn(aname + n, "/") == strlen(aname + n)) {
            return ex;
        }
    }
    return NULL;
}

int
op_version(struct p9s_req *r)
{
    struct p9_tversion *t = &r->t.u.tversion;
    struct p9_rversion *o = &r->r.u.rversion;
    uint32_t msize = t->msize;

    if (msize > r->conn->srv->msize) {
        msize = r->conn->srv->msize;
    }
    if (msize < P9_MIN_MSIZE) {
        log_peer("%s: Tversion msize %u below %u", r->conn->peer, t->msize,
                 P9_MIN_MSIZE);
        return -EINVAL;
    }
    /* a new session: every fid of the old one is clunked */
    conn_reset_session(r->conn);
    o->msize = msize;
    if (t->version.len == sizeof(P9_VERSION_L) - 1 &&
        memcmp(t->version.s, P9_VERSION_L, t->version.len) == 0) {
        o->version.s = P9_VERSION_L;
        atomic_store(&r->conn->msize, msize);
    } else {
        o->version.s = "unknown";
    }
    o->version.len = (uint16_t)strlen(o->version.s);
    return 0;
}

int
op_auth(struct p9s_req *r)
{
    (void)r;
    return -EOPNOTSUPP;
}

int
op_attach(struct p9s_req *r)
{
    struct p9_tattach *t = &r->t.u.tattach;
    const struct p9s_export *ex;
    struct backend *be;
    struct be_user *bu = NULL;
    struct suser *u;
    struct be_node *root;
    struct fid *f;
    char aname[PATH_MAX];
    char uname[256];
    int err;

    if (t->afid != P9_NOFID) {
        return -EINVAL; /* no authentication: afid must be NOFID */
    }
    if (t->aname.len >= sizeof(aname) || t->uname.len >= sizeof(uname)) {
        return -ENAMETOOLONG;
    }
    memcpy(aname, t->aname.s, t->aname.len);
    aname[t->aname.len] = '\0';
    memcpy(uname, t->uname.s, t->uname.len);
    uname[t->uname.len] = '\0';
    ex = srv_find_export(r->conn->srv, aname);
    if (ex == NULL) {
        log_peer("%s: attach to unknown export '%s'", r->conn->peer, aname);
        return -ENOENT;
    }
    be = ex->be;
    if (be->ops->user_get != NULL) {
        err = be->ops->user_get(be, uname, t->n_uname, &bu);
        if (err < 0) {
            return err;
        }
    }
    u = suser_new(be, bu);
    if (u == NULL) {
        if (bu != NULL && be->ops->user_put != NULL) {
            be->ops->user_put(be, bu);
        }
        return -ENOMEM;
    }
    if (be->ops->user_enter != NULL) {
        err = be->ops->user_enter(be, bu);
        if (err < 0) {
            goto out_user;
        }
    }
    err = be->ops->root(be, &root, &r->r.u.rattach.qid);
    if (err < 0) {
        goto out_user;
    }
    f = fid_new(&r->conn->fids, t->fid, ex, u, root, &err);
    if (f == NULL) {
        be->ops->node_put(be, root);
        goto out_user;
    }
    fid_put(f);
    return 0;

out_user:
    suser_put(u);
    return err;
}

int
op_clunk(struct p9s_req *r)
{
    struct fid *f = fid_unlink(&r->conn->fids, r->t.u.tclunk.fid);
    int err;

    if (f == NULL) {
        return -EBADF;
    }
    err = fid_xattr_commit(f); /* a write-xattr fid sets its value now */
    fid_put(f); /* the table's reference; the object goes on its last put */
    return err;
}

int
op_remove(struct p9s_req *r)
{
    struct fid *f = fid_unlink(&r->conn->fids, r->t.u.tremove.fid);
    struct fid_use u;
    int err;

    if (f == NULL) {
        return -EBADF;
    }
    /* Tremove clunks the fid whatever happens (even when flushed) */
    if (f->ex->readonly) {
        fid_put(f);
        return -EROFS;
    }
    err = fid_take_ref(f, FT_NOXATTR | FT_NODE, &u);
    if (err < 0) {
        return err;
    }
    err = BE_CALL(u.f, remove, u.node);
    fid_drop(&u);
    return err;
}

int
op_walk(struct p9s_req *r)
{
    struct p9_twalk *t = &r->t.u.twalk;
    struct p9_rwalk *o = &r->r.u.rwalk;
    struct fid_use u;
    struct fid *f;
    struct fid *nf;
    struct be_node *cur;
    struct be_node *next;
    struct backend *be;
    char name[NAME_MAX + 1];
    int err;

    err = fid_take(r, t->fid, FT_NOXATTR | FT_NODE, &u);
    if (err < 0) {
        return err;
    }
    f = u.f;
    be = f->be;
    if (t->newfid != t->fid) {
        nf = fid_get(&r->conn->fids, t->newfid);
        if (nf != NULL) {
            fid_put(nf);
            err = -EEXIST;
            goto out_put;
        }
    } else if (u.kind != FID_NONE && t->nwname > 0) {
        err = -EBUSY; /* an open fid cannot move */
        goto out_put;
    }
    cur = u.node;
    u.node = NULL; /* the walk's own reference from here */
    o->nwqid = 0;
    for (unsigned i = 0; i < t->nwname; i++) {
        err = name_check(&t->wname[i], name, sizeof(name), true);
        if (err == 0) {
            err = be->ops->walk1(be, cur, name, &next, &o->wqid[i]);
        }
        if (err < 0) {
            break;
        }
        be->ops->node_put(be, cur);
        cur = next;
        o->nwqid = (uint16_t)(i + 1);
    }
    if (o->nwqid < t->nwname) {
        /* partial walk: the qids so far; newfid stays unbound */
        be->ops->node_put(be, cur);
        if (o->nwqid == 0) {
            goto out_put;
        }
        err = 0;
        goto out_put;
    }
    err = 0;
    if (t->newfid == t->fid) {
        pthread_mutex_lock(&f->lock);
        next = f->node;
        f->node = cur;
        pthread_mutex_unlock(&f->lock);
        be->ops->node_put(be, next);
    } else {
        suser_ref(f->user);
        nf = fid_new(&r->conn->fids, t->newfid, f->ex, f->user, cur, &err);
        if (nf == NULL) {
            suser_put(f->user);
            be->ops->node_put(be, cur);
        } else {
            fid_put(nf);
        }
    }

out_put:
    fid_drop(&u);
    return err;
}
