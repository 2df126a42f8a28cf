/* SPDX-License-Identifier: MIT */
/*
 * libp9c: lopen, lcreate, read, write, fsync.  Reads and writes are split
 * into chunks of at most iounit (or msize - P9_IOHDRSZ when the server
 * gives no iounit), and the server's counts are checked against what was
 * asked before any byte is used.
 */
#include "client/p9c_impl.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

uint32_t
p9c_iosize(const struct p9c_fid *f)
{
    uint32_t max = p9c_msize(f->conn) - P9_IOHDRSZ;

    if (f->iounit != 0 && f->iounit < max) {
        max = f->iounit;
    }
    return max;
}

int
p9c_open(struct p9c_fid *f, uint32_t flags)
{
    struct p9_fcall t = {.type = P9_TLOPEN};
    struct p9c_reply *rep;
    int err;

    t.u.tlopen.fid = f->fid;
    t.u.tlopen.flags = flags;
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    f->qid = rep->f.u.rlopen.qid;
    f->iounit = rep->f.u.rlopen.iounit;
    f->mode = (int32_t)flags;
    p9c_reply_free(rep);
    return 0;
}

int
p9c_create(struct p9c_fid *dir, const char *name, uint32_t flags, uint32_t mode,
           uint32_t gid)
{
    struct p9_fcall t = {.type = P9_TLCREATE};
    struct p9c_reply *rep;
    int err;

    err = p9c_mkstr(&t.u.tlcreate.name, name);
    if (err != 0) {
        return err;
    }
    t.u.tlcreate.fid = dir->fid;
    t.u.tlcreate.flags = flags;
    t.u.tlcreate.mode = mode;
    t.u.tlcreate.gid = gid;
    err = p9c_rpc(dir->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    dir->qid = rep->f.u.rlcreate.qid;
    dir->iounit = rep->f.u.rlcreate.iounit;
    dir->mode = (int32_t)flags;
    p9c_reply_free(rep);
    return 0;
}

/* One Tread of at most 'count' bytes (count <= io max). */
static ssize_t
read_once(struct p9c_fid *f, void *buf, uint32_t count, uint64_t offset)
{
    struct p9_fcall t = {.type = P9_TREAD};
    struct p9c_reply *rep;
    uint32_t got;
    int err;

    t.u.tread.fid = f->fid;
    t.u.tread.offset = offset;
    t.u.tread.count = count;
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    got = rep->f.u.rread.data.len;
    if (got > count) {
        p9c_reply_free(rep);
        return -EPROTO;
    }
    p9_data_copy(&rep->f.u.rread.data, buf);
    p9c_reply_free(rep);
    return got;
}

ssize_t
p9c_pread(struct p9c_fid *f, void *buf, size_t count, uint64_t offset)
{
    uint32_t max = p9c_iosize(f);
    size_t done = 0;

    if (count > SSIZE_MAX) {
        count = SSIZE_MAX;
    }
    while (done < count) {
        size_t want = count - done;
        ssize_t n;

        if (want > max) {
            want = max;
        }
        n = read_once(f, (char *)buf + done, (uint32_t)want, offset + done);
        if (n < 0) {
            return done > 0 ? (ssize_t)done : n;
        }
        done += (size_t)n;
        if ((size_t)n < want) {
            break; /* short read: end of file (or of what is there now) */
        }
    }
    return (ssize_t)done;
}

static ssize_t
write_once(struct p9c_fid *f, const void *buf, uint32_t count, uint64_t offset)
{
    struct p9_fcall t = {.type = P9_TWRITE};
    struct p9c_reply *rep;
    uint32_t got;
    int err;

    t.u.twrite.fid = f->fid;
    t.u.twrite.offset = offset;
    t.u.twrite.data.len = count;
    t.u.twrite.data.ptr = buf;
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    got = rep->f.u.rwrite.count;
    p9c_reply_free(rep);
    if (got > count) {
        return -EPROTO;
    }
    return got;
}

ssize_t
p9c_pwrite(struct p9c_fid *f, const void *buf, size_t count, uint64_t offset)
{
    uint32_t max = p9c_iosize(f);
    size_t done = 0;

    if (count > SSIZE_MAX) {
        count = SSIZE_MAX;
    }
    do {
        size_t want = count - done;
        ssize_t n;

        if (want > max) {
            want = max;
        }
        n = write_once(f, (const char *)buf + done, (uint32_t)want,
                       offset + done);
        if (n < 0) {
            return done > 0 ? (ssize_t)done : n;
        }
        done += (size_t)n;
        if ((size_t)n < want) {
            break;
        }
    } while (done < count);
    return (ssize_t)done;
}

int
p9c_fsync(struct p9c_fid *f, bool datasync)
{
    struct p9_fcall t = {.type = P9_TFSYNC};

    t.u.tfsync.fid = f->fid;
    t.u.tfsync.datasync = datasync ? 1 : 0;
    return p9c_rpc0(f->conn, &t);
}
