/* SPDX-License-Identifier: MIT */
/*
 * libp9c: addresses, fid numbers and handles, attach, clunk, remove.
 *
 * Fid numbers come from a free list plus a counter, all below
 * P9C_FID_USER_BASE.  A number is reused only after its Tclunk/Tremove
 * reply (or failure) came back, since the fid is gone either way then.
 */
#include "client/p9c_impl.h"
#include "util/sock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- addresses ---------------------------------------------------------------- */

int
p9c_connect(const char *addr, struct p9c_conn **out)
{
    int fd = -1;
    int err;

    *out = NULL;
    if (addr == NULL) {
        return -EINVAL;
    }
    if (strncmp(addr, "unix:", 5) == 0) {
        fd = sock_connect_unix(addr + 5);
        err = fd < 0 ? fd : 0;
    } else if (strncmp(addr, "tcp:", 4) == 0) {
        fd = sock_connect_tcp(addr + 4);
        err = fd < 0 ? fd : 0;
    } else if (strncmp(addr, "fd:", 3) == 0) {
        char *end;
        long n = strtol(addr + 3, &end, 10);

        if (addr[3] < '0' || addr[3] > '9' || *end != '\0' || n > INT32_MAX) {
            return -EINVAL;
        }
        fd = (int)n;
        err = 0;
    } else if (strchr(addr, '/') != NULL) {
        fd = sock_connect_unix(addr);
        err = fd < 0 ? fd : 0;
    } else {
        return -EINVAL;
    }
    if (err != 0) {
        return err;
    }
    return p9c_connect_fd(fd, out);
}

int
p9c_mount(const char *addr, uint32_t msize, const char *uname, uint32_t n_uname,
          const char *aname, struct p9c_conn **conn_out,
          struct p9c_fid **root_out)
{
    struct p9c_conn *c;
    int err;

    *conn_out = NULL;
    *root_out = NULL;
    err = p9c_connect(addr, &c);
    if (err != 0) {
        return err;
    }
    err = p9c_version(c, msize);
    if (err != 0) {
        goto out_close;
    }
    err = p9c_attach(c, uname, n_uname, aname, root_out);
    if (err != 0) {
        goto out_close;
    }
    *conn_out = c;
    return 0;

out_close:
    p9c_close(c);
    return err;
}

/* ---- fid numbers and handles ----------------------------------------------------- */

static uint32_t
fidnum_get(struct p9c_conn *c)
{
    uint32_t n = P9_NOFID;

    pthread_mutex_lock(&c->mu);
    if (c->nfree > 0) {
        n = c->freefids[--c->nfree];
    } else if (c->nextfid < P9C_FID_USER_BASE) {
        n = c->nextfid++;
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void
fidnum_put(struct p9c_conn *c, uint32_t n)
{
    pthread_mutex_lock(&c->mu);
    if (c->nfree == c->capfree) {
        size_t cap = c->capfree ? c->capfree * 2 : 64;
        uint32_t *p = realloc(c->freefids, cap * sizeof(*p));

        if (p == NULL) {
            /* leak the number rather than fail a clunk */
            pthread_mutex_unlock(&c->mu);
            return;
        }
        c->freefids = p;
        c->capfree = cap;
    }
    c->freefids[c->nfree++] = n;
    pthread_mutex_unlock(&c->mu);
}

struct p9c_fid *
p9c_fid_new(struct p9c_conn *c)
{
    struct p9c_fid *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    f->fid = fidnum_get(c);
    if (f->fid == P9_NOFID) {
        free(f);
        return NULL;
    }
    f->conn = c;
    f->mode = -1;
    f->owned = true;
    return f;
}

void
p9c_fid_release(struct p9c_fid *f)
{
    if (f == NULL) {
        return;
    }
    if (f->owned) {
        fidnum_put(f->conn, f->fid);
    }
    free(f);
}

struct p9c_fid *
p9c_fid_wrap(struct p9c_conn *c, uint32_t fid, const struct p9_qid *qid)
{
    struct p9c_fid *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    f->conn = c;
    f->fid = fid;
    f->mode = -1;
    if (qid != NULL) {
        f->qid = *qid;
    }
    return f;
}

void
p9c_fid_forget(struct p9c_fid *f)
{
    p9c_fid_release(f);
}

/* ---- attach, clunk, remove --------------------------------------------------------- */

int
p9c_attach(struct p9c_conn *c, const char *uname, uint32_t n_uname,
           const char *aname, struct p9c_fid **out)
{
    struct p9_fcall t = {.type = P9_TATTACH};
    struct p9c_reply *rep;
    struct p9c_fid *f;
    int err;

    *out = NULL;
    t.u.tattach.afid = P9_NOFID;
    t.u.tattach.n_uname = n_uname;
    if (p9c_mkstr(&t.u.tattach.uname, uname) != 0 ||
        p9c_mkstr(&t.u.tattach.aname, aname) != 0) {
        return -ENAMETOOLONG;
    }
    f = p9c_fid_new(c);
    if (f == NULL) {
        return -ENOMEM;
    }
    t.u.tattach.fid = f->fid;
    err = p9c_rpc(c, &t, &rep);
    if (err != 0) {
        p9c_fid_release(f);
        return err;
    }
    f->qid = rep->f.u.rattach.qid;
    p9c_reply_free(rep);
    *out = f;
    return 0;
}

static int
clunk_or_remove(struct p9c_fid *f, uint8_t type)
{
    struct p9_fcall t = {.type = type};
    int err;

    if (f == NULL) {
        return 0;
    }
    /* tclunk and tremove have the same layout: one fid */
    if (type == P9_TCLUNK) {
        t.u.tclunk.fid = f->fid;
    } else {
        t.u.tremove.fid = f->fid;
    }
    err = p9c_rpc0(f->conn, &t);
    if (err == -ETIMEDOUT) {
        /* the server may still hold it: never reuse this number */
        f->owned = false;
    }
    p9c_fid_release(f);
    return err;
}

int
p9c_clunk(struct p9c_fid *f)
{
    return clunk_or_remove(f, P9_TCLUNK);
}

int
p9c_remove(struct p9c_fid *f)
{
    return clunk_or_remove(f, P9_TREMOVE);
}
