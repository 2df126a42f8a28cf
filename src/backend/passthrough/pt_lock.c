/* SPDX-License-Identifier: MIT */
/*
 * POSIX byte-range locks as open-file-description (OFD) locks on the
 * handle's descriptor: each open handle (each guest fid) is its own lock
 * owner, so two guest clients conflict with each other and with host
 * processes using fcntl(F_SETLK) locks.  Locks never block a worker: a
 * conflict is P9_LOCK_BLOCKED and the client retries (the Linux client
 * polls for blocking locks).  Closing the handle drops its locks.
 */
#include "pt.h"

#include <errno.h>
#include <fcntl.h>
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

int
pt_lock(struct backend *be, struct be_handle *h, const struct p9_tlock *in,
        uint8_t *status)
{
    struct flock fl;
    int err;

    (void)be;
    err = pt_flock(in->type, in->start, in->length, &fl);
    if (err < 0) {
        return err;
    }
    if (fcntl(h->fd, F_OFD_SETLK, &fl) < 0) {
        err = -errno;
        if (err == -EAGAIN || err == -EACCES) {
            *status = P9_LOCK_BLOCKED;
            return 0;
        }
        return err;
    }
    *status = P9_LOCK_SUCCESS;
    return 0;
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
