/* SPDX-License-Identifier: MIT */
/*
 * Open files: open, create, read, write, fsync, close.
 *
 * open reopens the node's inode through /proc/self/fd/N.  The magic link
 * names the inode the O_PATH descriptor holds, so a name swapped for a
 * symlink after the walk cannot redirect the open.  Only regular files,
 * directories and FIFOs (opened O_NONBLOCK so a worker never waits for a
 * peer) are opened: symlinks give ELOOP, sockets ENXIO, and device nodes
 * EPERM -- a Linux guest handles device nodes and FIFOs itself and never
 * sends Tlopen for them, and a guest-made device node must not become a
 * door to host devices.
 *
 * Set-id bits: a request of a non-root fid runs without CAP_FSETID in every
 * mode (pt_cred.c), so the kernel clears S_ISUID/S_ISGID on write and
 * truncation itself, before the data lands and under the inode lock, as
 * for a local writer.  The server never clears them after the fact.
 */
#include "pt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/common/becommon.h"

/* Tries of the create -> EEXIST -> open-existing path against races. */
#define PT_CREATE_TRIES 4

/* P9_DOTL open flags to host open(2) flags (explicit: values differ by arch).
 */
static int
pt_oflags(uint32_t flags, int *out)
{
    static const struct {
        uint32_t p9;
        int host;
    } map[] = {
        {P9_DOTL_TRUNC, O_TRUNC},         {P9_DOTL_APPEND, O_APPEND},
        {P9_DOTL_NONBLOCK, O_NONBLOCK},   {P9_DOTL_DSYNC, O_DSYNC},
        {P9_DOTL_DIRECTORY, O_DIRECTORY}, {P9_DOTL_SYNC, O_SYNC},
    };
    int f;

    /*
     * Dropped on purpose: CREATE/EXCL (create handles them), NOCTTY,
     * FASYNC (no signals to the guest), DIRECT (not every host fs takes
     * it; QEMU drops it too), NOATIME (EPERM for non-owners), NOFOLLOW
     * (the node is already the object), CLOEXEC (always set), LARGEFILE.
     */
    switch (flags & 3u) {
    case P9_DOTL_RDONLY: f = O_RDONLY; break;
    case P9_DOTL_WRONLY: f = O_WRONLY; break;
    case P9_DOTL_RDWR: f = O_RDWR; break;
    default: return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (flags & map[i].p9) {
            f |= map[i].host;
        }
    }
    *out = f;
    return 0;
}

static int
pt_handle_new(struct pt_backend *pb, struct be_node *n, int fd, int oflags,
              bool created, struct be_handle **out)
{
    struct be_handle *h;
    int err;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return -ENOMEM;
    }
    err = pthread_mutex_init(&h->lock, NULL);
    if (err != 0) {
        free(h);
        return -err;
    }
    pt_node_get(NULL, n);
    h->node = n;
    h->fd = fd;
    atomic_fetch_add_explicit(&pb->fd_files, 1, memory_order_relaxed);
    /*
     * Open files that carry state of their own keep their descriptor:
     * directories (the readdir stream), FIFOs, and files this server just
     * created (a reopen would re-check a mode the creator may not have).
     * Held locks and unlinked files are found when reclaiming.
     */
    pt_hcache_adopt(pb, h, n->type != S_IFREG || created);
    h->oflags = oflags;
    *out = h;
    return 0;
}

/*
 * Open node 'n' for I/O; host flags already converted.  'nowait'
 * (BE_OPEN_NOWAIT): -EAGAIN instead of waiting.  An open of a regular file
 * waits only for the break of a lease a host process holds (O_NONBLOCK
 * fails with EWOULDBLOCK instead, and starts the break) or for a
 * truncation; directories and FIFOs never wait (FIFOs are opened
 * O_NONBLOCK anyway).
 */
static int
pt_open_node(struct pt_backend *pb, struct be_node *n, int oflags, bool nowait,
             struct be_handle **out, struct p9_qid *qid)
{
    char proc[PT_PROC_PATH_MAX];
    struct stat st;
    bool lease = false; /* a regular file: a host lease could make it wait */
    int fd;
    int err;

    if (pb->readonly &&
        ((oflags & O_ACCMODE) != O_RDONLY || (oflags & O_TRUNC))) {
        return -EROFS;
    }
    switch (n->type) {
    case S_IFREG:
        if (oflags & O_DIRECTORY) {
            return -ENOTDIR;
        }
        if (nowait && (oflags & O_TRUNC)) {
            return -EAGAIN;
        }
        lease = nowait;
        break;
    case S_IFDIR:
        if ((oflags & O_ACCMODE) != O_RDONLY || (oflags & O_TRUNC)) {
            return -EISDIR;
        }
        oflags |= O_DIRECTORY;
        break;
    case S_IFIFO:
        if (oflags & O_DIRECTORY) {
            return -ENOTDIR;
        }
        oflags |= O_NONBLOCK;
        break;
    case S_IFLNK: return -ELOOP;
    case S_IFSOCK: return -ENXIO;
    default: return -EPERM;
    }
    if ((oflags & O_TRUNC) && pt_mapped(pb)) {
        err = pt_meta_kill_suid(pb, n); /* open(O_TRUNC) is a truncation */
        if (err < 0) {
            return err;
        }
    }
    pt_proc_path(proc, n->fd);
    fd = becommon_open_file(proc, oflags | O_CLOEXEC | O_NOCTTY, lease);
    if (fd < 0 && pt_fd_pressure(pb, fd, "open")) {
        fd = becommon_open_file(proc, oflags | O_CLOEXEC | O_NOCTTY, lease);
    }
    if (fd < 0) {
        return fd;
    }
    if (fstat(fd, &st) < 0) {
        err = -errno;
        goto out_close;
    }
    /* The magic link names the inode; anything else is a kernel surprise. */
    if (st.st_dev != n->dev || st.st_ino != n->ino) {
        err = -ESTALE;
        goto out_close;
    }
    err = pt_handle_new(pb, n, fd, oflags & ~O_TRUNC, false, out);
    if (err < 0) {
        goto out_close;
    }
    pt_stat_to_qid(pb, &st, qid);
    return 0;

out_close:
    close(fd);
    return err;
}

int
pt_open(struct backend *be, struct be_node *n, uint32_t flags,
        struct be_handle **out, struct p9_qid *qid, uint32_t *iounit)
{
    int oflags;
    int err;

    err = pt_oflags(flags, &oflags);
    if (err < 0) {
        return err;
    }
    err = pt_open_node(pt_be(be), n, oflags, (flags & BE_OPEN_NOWAIT) != 0, out,
                       qid);
    if (err < 0) {
        return err;
    }
    *iounit = 0; /* let the client use msize */
    return 0;
}

/*
 * Create 'name' in 'dir' with O_CREAT|O_EXCL|O_NOFOLLOW.  If it exists and
 * the client did not ask for O_EXCL, open the existing object through a
 * one-element O_PATH walk instead, so an existing symlink, device or FIFO
 * is never opened by the create path itself.  The mode is used as given
 * (the guest applied its umask; pt_exact_modes gives this thread umask 0).
 * In multiuser mode the file is made with fsgid = the client's gid
 * (pt_cred_fsgid), so it is born with that group (or the set-gid
 * directory's); otherwise the group is set afterwards where the kernel
 * lets us chown to it (pt_set_gid).
 */
int
pt_create(struct backend *be, struct be_node *dir, const char *name,
          uint32_t flags, uint32_t mode, uint32_t gid,
          struct be_node **node_out, struct be_handle **out, struct p9_qid *qid,
          uint32_t *iounit)
{
    struct pt_backend *pb = pt_be(be);
    char proc[PT_PROC_PATH_MAX];
    struct be_node *n = NULL;
    struct stat st;
    int oflags;
    int cflags;
    int fd = -1;
    int pfd;
    int err;

    err = pt_check_name(name);
    if (err < 0) {
        return err;
    }
    if (pb->readonly) {
        return -EROFS;
    }
    if (dir->type != S_IFDIR) {
        return -ENOTDIR;
    }
    if (pt_meta_hidden_name(pb, name)) {
        return -EINVAL;
    }
    err = pt_id_to_host(&pb->gidmap, gid, &gid); /* --translate-gid */
    if (err < 0) {
        return err;
    }
    err = pt_oflags(flags, &oflags);
    if (err < 0) {
        return err;
    }
    if (oflags & O_DIRECTORY) {
        return -EINVAL; /* as open(2) with O_CREAT|O_DIRECTORY */
    }
    if (strcmp(name, "..") == 0) {
        return (flags & P9_DOTL_EXCL) ? -EEXIST : -EISDIR;
    }
    cflags = oflags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY;
    pt_exact_modes();
    for (int tries = 0; tries < PT_CREATE_TRIES; tries++) {
        uint32_t saved_gid;

        err = pt_cred_fsgid(pb, gid, &saved_gid);
        if (err < 0) {
            return err;
        }
        /* Mapped models: the host file is the daemon's, mode fmode. */
        fd =
            openat(dir->fd, name, cflags,
                   pt_mapped(pb) ? pb->fmode : pt_mode_bits(pb, S_IFREG, mode));
        err = fd >= 0 ? 0 : -errno;
        if (fd < 0 && pt_fd_pressure(pb, err, "create")) {
            fd = openat(dir->fd, name, cflags, pt_mode_bits(pb, S_IFREG, mode));
            err = fd >= 0 ? 0 : -errno;
        }
        pt_cred_fsgid_restore(pb, saved_gid);
        if (fd >= 0) {
            break;
        }
        if (err != -EEXIST || (flags & P9_DOTL_EXCL)) {
            return err;
        }
        if (flags & BE_OPEN_NOWAIT) {
            return -EAGAIN; /* opening what exists may wait (a lease) */
        }
        pfd = pt_open_child(dir->fd, name, 0);
        if (pfd == -ENOENT) {
            continue; /* removed in between: try creating again */
        }
        if (pfd < 0) {
            return pfd;
        }
        err = pt_node_new(pb, pfd, dir, name, &n, NULL);
        if (err < 0) {
            return err;
        }
        if (n->type == S_IFDIR) {
            err = -EISDIR;
        } else if ((err = pt_pin(pb, n)) >= 0) {
            err = pt_open_node(pb, n, oflags, false, out, qid);
            pt_unpin(pb, n);
        }
        if (err < 0) {
            pt_node_put(be, n);
            return err;
        }
        *node_out = n;
        *iounit = 0;
        return 0;
    }
    if (fd < 0) {
        return -EEXIST;
    }
    /* An O_PATH descriptor for the node, from the open file itself. */
    pt_proc_path(proc, fd);
    pfd = open(proc, O_PATH | O_CLOEXEC);
    if (pfd < 0) {
        err = -errno;
        goto out_close;
    }
    err = pt_node_new(pb, pfd, dir, name, &n, &st);
    if (err < 0) {
        goto out_close;
    }
    err = pt_pin(pb, n);
    if (err < 0) {
        goto out_put;
    }
    if (pt_mapped(pb)) {
        struct pt_meta m = {0};

        m.have = PT_META_UID | PT_META_MODE;
        m.uid = pt_current_uid();
        m.mode = S_IFREG | pt_mode_bits(pb, S_IFREG, mode);
        if (gid != (uint32_t)-1) {
            m.gid = gid;
            m.have |= PT_META_GID;
        }
        err = pt_meta_write_at(pb, n->fd, dir->fd, name, &m);
    } else {
        if (pb->model == PT_SM_NONE) {
            /* QEMU's "none": give it to the fid's user if we can (a
             * failure leaves it the daemon's, as QEMU does) */
            if (fchownat(n->fd, "", pt_current_uid(), (gid_t)-1,
                         AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
                errno = 0;
            }
        }
        err = pt_set_gid(n->fd, &st, gid);
    }
    pt_unpin(pb, n);
    if (err < 0) {
        goto out_put;
    }
    err = pt_handle_new(pb, n, fd, oflags & ~O_TRUNC, true, out);
    if (err < 0) {
        goto out_put;
    }
    pt_stat_to_qid(pb, &st, qid);
    *node_out = n;
    *iounit = 0;
    return 0;

out_put:
    pt_node_put(be, n);
out_close:
    close(fd);
    /* Do not leave a half-made file behind if we made it. */
    (void)unlinkat(dir->fd, name, 0);
    pt_meta_unlink(pb, dir->fd, name);
    return err;
}

void
pt_close(struct backend *be, struct be_handle *h)
{
    if (h == NULL) {
        return;
    }
    if (pt_hcache_forget(pt_be(be), h)) {
        pt_handle_free(pt_be(be), h);
    }
}

/* The rest of pt_close, also run by the reclaimer for a handle it held. */
void
pt_handle_free(struct pt_backend *pb, struct be_handle *h)
{
    if (h->fd >= 0) {
        close(h->fd);
        atomic_fetch_sub_explicit(&pb->fd_files, 1, memory_order_relaxed);
    }
    pthread_mutex_destroy(&h->lock);
    pt_node_put(&pb->be, h->node);
    pt_handle_release(h); /* read-ahead and lock records, uncharged */
    free(h);
}

ssize_t
pt_read(struct backend *be, struct be_handle *h, const struct iovec *iov,
        int iovcnt, uint64_t off)
{
    ssize_t n;

    (void)be;
    if (off > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    if (h->node->type == S_IFDIR) {
        return -EISDIR;
    }
    n = preadv(h->fd, iov, iovcnt, (off_t)off);
    if (n < 0) {
        return -errno;
    }
    return n;
}

ssize_t
pt_write(struct backend *be, struct be_handle *h, const struct iovec *iov,
         int iovcnt, uint64_t off)
{
    struct pt_backend *pb = pt_be(be);
    ssize_t n;

    if (pb->readonly) {
        return -EROFS;
    }
    if (off > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    if (pt_mapped(pb)) {
        /* Only the open file is pinned for I/O; the metadata needs the
         * node's descriptor too. */
        int err = pt_pin(pb, h->node); /* the descriptor, or -errno */

        if (err >= 0) {
            err = pt_meta_kill_suid(pb, h->node);
            pt_unpin(pb, h->node);
        }
        if (err < 0) {
            return err;
        }
    }
    n = pwritev(h->fd, iov, iovcnt, (off_t)off);
    if (n < 0) {
        return -errno;
    }
    return n;
}

int
pt_fsync(struct backend *be, struct be_handle *h, bool datasync)
{
    (void)be;
    if ((datasync ? fdatasync(h->fd) : fsync(h->fd)) < 0) {
        return -errno;
    }
    return 0;
}
