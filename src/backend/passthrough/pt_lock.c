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

#include "backend/common/becommon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * A handle that keeps its descriptor for good (pt_hcache_adopt: a
 * directory, a FIFO, a file this server created) is one unit of the
 * session's descriptor budget from the start; others become one when they
 * take a lock (pt_hcache_keep) or are found unlinked (pt_hreclaim).
 */
int
pt_handle_limits(struct backend *be, struct be_handle *h,
                 const struct be_limits *lim)
{
    struct pt_backend *pb = pt_be(be);
    int err = 0;

    pthread_mutex_lock(&pb->fd_lock);
    if (h->keep && !h->fds_charged && !be_budget_charge(lim->fds, 1)) {
        err = -EMFILE;
    } else {
        h->fds_charged = h->keep;
        h->lim = *lim;
    }
    pthread_mutex_unlock(&pb->fd_lock);
    return err;
}

void
pt_handle_release(struct be_handle *h)
{
    pt_dirbuf_release(h);
    be_budget_uncharge(h->lim.locks, h->nlocks);
    if (h->fds_charged) { /* the handle is no one else's by now */
        be_budget_uncharge(h->lim.fds, 1);
        h->fds_charged = false;
    }
    free(h->locks);
    h->locks = NULL;
    h->nlocks = 0;
    h->locks_cap = 0;
}

/*
 * Where a lock request [s, e] lands among the handle's records (sorted,
 * disjoint, so both starts and ends ascend): the records it touches --
 * overlaps, or borders (a lock merges with a bordering one of its type) --
 * are [lo, hi), and they are replaced by up to three pieces: what is left
 * of the first one before s, the new lock (grown by the records of its
 * type it merges with), and what is left of the last one after e.
 */
struct pt_lockplan {
    size_t lo;
    size_t hi;
    struct pt_lockrec piece[3];
    size_t npiece;
};

static void
pt_lockrec_plan(const struct be_handle *h, const struct flock *fl,
                struct pt_lockplan *p)
{
    int64_t s = fl->l_start;
    int64_t e = fl->l_len == 0 ? INT64_MAX : fl->l_start + fl->l_len - 1;
    int64_t ms = s;
    int64_t me = e;
    bool lock = fl->l_type != F_UNLCK;
    size_t a = 0;
    size_t b = h->nlocks;

    /* first record with end >= s - 1 */
    while (a < b) {
        size_t m = a + (b - a) / 2;

        if (s > 0 && h->locks[m].end < s - 1) {
            a = m + 1;
        } else {
            b = m;
        }
    }
    p->lo = a;
    /* first record with start > e + 1 */
    b = h->nlocks;
    while (a < b) {
        size_t m = a + (b - a) / 2;

        if (e == INT64_MAX || h->locks[m].start <= e + 1) {
            a = m + 1;
        } else {
            b = m;
        }
    }
    p->hi = a;
    p->npiece = 0;
    if (p->lo < p->hi) {
        const struct pt_lockrec *first = &h->locks[p->lo];
        const struct pt_lockrec *last = &h->locks[p->hi - 1];
        struct pt_lockrec right = {0, 0, 0};
        bool have_right = false;

        if (lock && first->type == fl->l_type) {
            ms = first->start < ms ? first->start : ms;
        } else if (first->start < s) {
            p->piece[p->npiece].start = first->start;
            p->piece[p->npiece].end = first->end < s - 1 ? first->end : s - 1;
            p->piece[p->npiece++].type = first->type;
        }
        if (lock && last->type == fl->l_type) {
            me = last->end > me ? last->end : me;
        } else if (last->end > e) {
            right.start = last->start > e + 1 ? last->start : e + 1;
            right.end = last->end;
            right.type = last->type;
            have_right = true;
        }
        if (lock) {
            p->piece[p->npiece].start = ms;
            p->piece[p->npiece].end = me;
            p->piece[p->npiece++].type = fl->l_type;
        }
        if (have_right) {
            p->piece[p->npiece++] = right;
        }
    } else if (lock) {
        p->piece[0].start = s;
        p->piece[0].end = e;
        p->piece[0].type = fl->l_type;
        p->npiece = 1;
    }
}

int
pt_lock(struct backend *be, struct be_handle *h, const struct p9_tlock *in,
        uint8_t *status)
{
    struct pt_lockplan plan;
    struct flock fl;
    size_t nnext;
    uint64_t add = 0;
    int err;

    (void)be;
    err = becommon_flock(in->type, in->start, in->length, &fl);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&h->lock);
    pt_lockrec_plan(h, &fl, &plan);
    nnext = h->nlocks - (plan.hi - plan.lo) + plan.npiece;
    if (nnext > h->nlocks) {
        add = nnext - h->nlocks;
        if (!be_budget_charge(h->lim.locks, add)) {
            err = -ENOLCK;
            goto out_unlock;
        }
    }
    if (nnext > h->locks_cap) {
        /* room first: once the kernel has the lock, the copy must follow */
        size_t cap = h->locks_cap ? h->locks_cap * 2 : 8;
        struct pt_lockrec *v;

        cap = cap < nnext ? nnext : cap;
        v = realloc(h->locks, cap * sizeof(*v));
        if (v == NULL) {
            be_budget_uncharge(h->lim.locks, add);
            err = -ENOLCK;
            goto out_unlock;
        }
        h->locks = v;
        h->locks_cap = cap;
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
    memmove(&h->locks[plan.lo + plan.npiece], &h->locks[plan.hi],
            (h->nlocks - plan.hi) * sizeof(h->locks[0]));
    memcpy(&h->locks[plan.lo], plan.piece, plan.npiece * sizeof(plan.piece[0]));
    h->nlocks = nnext;
    *status = P9_LOCK_SUCCESS;

out_unlock:
    pthread_mutex_unlock(&h->lock);
    return err;
}

int
pt_getlock(struct backend *be, struct be_handle *h,
           const struct p9_tgetlock *in, struct p9_rgetlock *out)
{
    struct flock fl;
    int err;

    (void)be;
    err = becommon_flock(in->type, in->start, in->length, &fl);
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
