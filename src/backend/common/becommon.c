/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the passthrough and overlay backends (becommon.h):
 * one copy, so the two answer a guest identically.
 */
#include "backend/common/becommon.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/sysmacros.h>

int
becommon_flock(uint8_t type, uint64_t start, uint64_t length, struct flock *fl)
{
    memset(fl, 0, sizeof(*fl));
    switch (type) {
    case P9_LOCK_TYPE_RDLCK: fl->l_type = F_RDLCK; break;
    case P9_LOCK_TYPE_WRLCK: fl->l_type = F_WRLCK; break;
    case P9_LOCK_TYPE_UNLCK: fl->l_type = F_UNLCK; break;
    default: return -EINVAL;
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
becommon_statx_to_rgetattr(const struct statx *stx, struct p9_rgetattr *out)
{
    out->valid = P9_GETATTR_BASIC;
    out->mode = stx->stx_mode;
    out->uid = stx->stx_uid;
    out->gid = stx->stx_gid;
    out->nlink = stx->stx_nlink;
    out->rdev = makedev(stx->stx_rdev_major, stx->stx_rdev_minor);
    out->size = stx->stx_size;
    out->blksize = stx->stx_blksize;
    out->blocks = stx->stx_blocks;
    out->atime_sec = (uint64_t)stx->stx_atime.tv_sec;
    out->atime_nsec = stx->stx_atime.tv_nsec;
    out->mtime_sec = (uint64_t)stx->stx_mtime.tv_sec;
    out->mtime_nsec = stx->stx_mtime.tv_nsec;
    out->ctime_sec = (uint64_t)stx->stx_ctime.tv_sec;
    out->ctime_nsec = stx->stx_ctime.tv_nsec;
    if (stx->stx_mask & STATX_BTIME) {
        out->valid |= P9_GETATTR_BTIME;
        out->btime_sec = (uint64_t)stx->stx_btime.tv_sec;
        out->btime_nsec = stx->stx_btime.tv_nsec;
    }
}

uint32_t
becommon_qid_version(int64_t mtime_sec, uint32_t mtime_nsec)
{
    return (uint32_t)((uint64_t)mtime_sec ^ (uint64_t)mtime_nsec);
}

int
becommon_open_file(const char *path, int oflags, bool nowait)
{
    bool clear = nowait && !(oflags & O_NONBLOCK);
    int fd = open(path, oflags | (clear ? O_NONBLOCK : 0));
    int err;

    if (fd < 0) {
        return clear && errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    /* F_SETFL sets O_APPEND and O_NONBLOCK (of our flags): as asked */
    if (clear && fcntl(fd, F_SETFL, oflags & O_APPEND) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    return fd;
}
