/* SPDX-License-Identifier: MIT */
/*
 * POSIX byte-range locks as open-file-description (OFD) locks on the
 * handle's descriptor: each open handle (each guest fid) is its own lock
 * owner, so two guest clients conflict with each other and with host
 * processes using fcntl(F_SETLK) locks.  Locks never block a worker: a
 * conflict is P9_LOCK_BLOCKED and the client retries (the Linux client
 * polls for blocking locks).  Closing the handle drops its locks.
 *
 * Lock records.  The kernel keeps one record per contiguous range of one
 * type and owner, and walks the inode's whole list on every F_OFD_SETLK,
 * so a guest setting thousands of disjoint ranges costs host kernel
 * memory and makes every lock on the file slower.  Each handle keeps a
 * copy of its own records, merged and split the way the kernel does it
 * (for one owner: a new lock absorbs overlapping or adjacent locks of its
 * type and cuts away the overlapped parts of the other type; an unlock
 * cuts), so it knows before the fcntl how many records the request adds,
 * and charges them to the session's lock budget: beyond it the request
 * fails with ENOLCK, as POSIX allows ("too many segment locks").
 */
#include "pt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 9P range (start, length; 0 = to EOF) to a struct flock. */
static int
pt_flock(uint8_t type, uint64_t start, uint64_t length, struct flock *fl)
{
    memset(fl, 0, sizeof(*fl));
    switch (type) {
    case P9_LOCK_TYPE_RDLCK:
        fl->l_type = F_RDLCK;
        break;
    case P9_LOCK_TYPE_WRLCK:
        fl->l_type = F_WRLCK;
        break;
    case P9_LOCK_TYPE_UNLCK:
        fl->l_type = F_UNLCK;
        break;
    default:
        return -EINVAL;
    }
    if (start > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    /* A range reaching past the largest offset means "to EOF". */
    if (length > (uint64_t)INT64_MAX - start) {
        length = 0;
    }
    fl->l_whence = SEEK_SET;
    fl->l_start = (off_t)start;
    fl->l_len = (off_t)length;
    fl->l_pid = 0; /* required for OFD locks */
    return 0;
}

void
pt_handle_limits(struct backend *be, struct be_handle *h,
                 const struct be_limits *lim)
{
    (void)be;
    h->lim = *lim;
}

void
pt_handle_release(struct be_handle *h)
{
    if (h->dbuf != NULL) {
        free(h->dbuf);
        h->dbuf = NULL;
        be_budget_uncharge(h->lim.mem, PT_DIRBUF);
    }
    be_budget_uncharge(h->lim.locks, h->nlocks);
    free(h->locks);
    h->locks = NULL;
    h->nlocks = 0;
}

static int
pt_lockrec_cmp(const void *a, const void *b)
{
    const struct pt_lockrec *x = a;
    const struct pt_lockrec *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

/* Append the parts of 'r' outside [s, e]. */
static size_t
pt_lockrec_cut(const struct pt_lockrec *r, int64_t s, int64_t e,
               struct pt_lockrec *out, size_t n)
{
    if (r->end < s || r->start > e) {
        out[n++] = *r;
        return n;
    }
    if (r->start < s) {
        out[n] = *r;
        out[n++].end = s - 1;
    }
    if (r->end > e) {
        out[n] = *r;
        out[n++].start = e + 1;
    }
    return n;
}

/*
 * The records the handle would hold after 'fl' succeeds, into a new array
 * (*out, *nout); -ENOMEM.
 */
static int
pt_lockrec_apply(const struct be_handle *h, const struct flock *fl,
                 struct pt_lockrec **out, size_t *nout)
{
    int64_t s = fl->l_start;
    int64_t e = fl->l_len == 0 ? INT64_MAX : fl->l_start + fl->l_len - 1;
    int64_t ms = s;
    int64_t me = e;
    struct pt_lockrec *v;
    size_t n = 0;

    /* each old record gives at most two pieces, plus the new one */
    v = malloc((2 * h->nlocks + 1) * sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < h->nlocks; i++) {
        const struct pt_lockrec *r = &h->locks[i];
        bool touches = r->end >= s - (s > 0) &&
                       (e == INT64_MAX || r->start <= e + 1);

        if (fl->l_type != F_UNLCK && r->type == fl->l_type && touches) {
            /* merged into the new lock */
            ms = r->start < ms ? r->start : ms;
            me = r->end > me ? r->end : me;
            continue;
        }
        n = pt_lockrec_cut(r, s, e, v, n);
    }
    if (fl->l_type != F_UNLCK) {
        v[n].start = ms;
        v[n].end = me;
        v[n].type = fl->l_type;
        n++;
    }
    qsort(v, n, sizeof(*v), pt_lockrec_cmp);
    *out = v;
    *nout = n;
    return 0;
}

int
pt_lock(struct backend *be, struct be_handle *h, const struct p9_tlock *in,
        uint8_t *status)
{
    struct pt_lockrec *next = NULL;
    struct flock fl;
    size_t nnext;
    uint64_t add = 0;
    int err;

    (void)be;
    err = pt_flock(in->type, in->start, in->length, &fl);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&h->lock);
    err = pt_lockrec_apply(h, &fl, &next, &nnext);
    if (err < 0) {
        goto out_unlock;
    }
    if (nnext > h->nlocks) {
        add = nnext - h->nlocks;
        if (!be_budget_charge(h->lim.locks, add)) {
            err = -ENOLCK;
            goto out_unlock;
        }
    }
    if (fcntl(h->fd, F_OFD_SETLK, &fl) < 0) {
        err = -errno;
        be_budget_uncharge(h->lim.locks, add);
        if (err == -EAGAIN || err == -EACCES) {
            *status = P9_LOCK_BLOCKED;
            err = 0;
        }
        goto out_unlock;
    }
    if (nnext < h->nlocks) {
        be_budget_uncharge(h->lim.locks, h->nlocks - nnext);
    }
    free(h->locks);
    h->locks = next;
    h->nlocks = nnext;
    next = NULL;
    *status = P9_LOCK_SUCCESS;

out_unlock:
    pthread_mutex_unlock(&h->lock);
    free(next);
    return err;
}

int
pt_getlock(struct backend *be, struct be_handle *h,
           const struct p9_tgetlock *in, struct p9_rgetlock *out)
{
    struct flock fl;
    int err;

    (void)be;
    err = pt_flock(in->type, in->start, in->length, &fl);
    if (err < 0) {
        return err;
    }
    /*
     * The Linux client sends Tgetlock with type UNLCK whatever the caller
     * of F_GETLK asked for (seen on 6.1 and 6.12): probe with a write
     * lock, which any existing lock conflicts with, so the conflict is
     * reported instead of "unlocked".
     */
    if (fl.l_type == F_UNLCK) {
        fl.l_type = F_WRLCK;
    }
    if (fcntl(h->fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    memset(out, 0, sizeof(*out));
    out->client_id.s = "";
    out->client_id.len = 0;
    if (fl.l_type == F_UNLCK) {
        out->type = P9_LOCK_TYPE_UNLCK;
        out->start = in->start;
        out->length = in->length;
        out->proc_id = in->proc_id;
        return 0;
    }
    out->type = fl.l_type == F_RDLCK ? P9_LOCK_TYPE_RDLCK : P9_LOCK_TYPE_WRLCK;
    out->start = (uint64_t)fl.l_start;
    out->length = (uint64_t)fl.l_len;
    /* -1 for an OFD lock holder; a process's pid for a classic lock. */
    out->proc_id = (uint32_t)fl.l_pid;
    return 0;
}
