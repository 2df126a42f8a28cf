/* SPDX-License-Identifier: MIT */
/*
 * Attributes: getattr (statx), setattr, statfs, readlink.
 *
 * Everything goes through the node's O_PATH descriptor (or the open
 * handle's descriptor when the client gave one), never a path from the
 * export root, so they keep working on a renamed or unlinked object.
 * Where the kernel has no fd-based call for an O_PATH descriptor (chmod,
 * truncate), the /proc/self/fd/N magic link names the inode itself.
 */
#include "pt.h"

#include "backend/common/becommon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <unistd.h>

/* 1 until utimensat(fd, "", AT_EMPTY_PATH) is found unsupported. */
static atomic_int pt_have_utimens_empty = 1;

static int
pt_attr_fd(struct be_node *n, struct be_handle *h)
{
    return h != NULL ? h->fd : n->fd;
}

int
pt_getattr(struct backend *be, struct be_node *n, struct be_handle *h,
           uint64_t request_mask, struct p9_rgetattr *out)
{
    struct pt_backend *pb = pt_be(be);
    struct statx stx;
    struct stat st;
    int fd = pt_attr_fd(n, h);

    (void)request_mask; /* statx of everything costs the same */
    memset(out, 0, sizeof(*out));
    if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
              STATX_BASIC_STATS | STATX_BTIME, &stx) < 0) {
        return -errno;
    }
    becommon_statx_to_rgetattr(&stx, out);
    if (pt_mapped(pb)) {
        struct pt_meta m;
        int err = pt_meta_read(pb, n, &m);

        if (err < 0) {
            return err;
        }
        pt_meta_apply(&m, &out->mode, &out->uid, &out->gid, &out->rdev);
    }
    out->uid = pt_id_to_guest(&pb->uidmap, out->uid);
    out->gid = pt_id_to_guest(&pb->gidmap, out->gid);
    /* The qid from the same snapshot (the guest's file type). */
    memset(&st, 0, sizeof(st));
    st.st_mode = out->mode;
    st.st_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
    st.st_ino = stx.stx_ino;
    st.st_mtim.tv_sec = stx.stx_mtime.tv_sec;
    st.st_mtim.tv_nsec = stx.stx_mtime.tv_nsec;
    pt_stat_to_qid(pb, &st, &out->qid);
    return 0;
}

static int
pt_set_mode(struct be_node *n, struct be_handle *h, mode_t mode)
{
    char proc[PT_PROC_PATH_MAX];

    if (n->type == S_IFLNK) {
        return -EOPNOTSUPP; /* Linux symlinks have no mode of their own */
    }
    if (h != NULL) {
        if (fchmod(h->fd, mode) < 0) {
            return -errno;
        }
        return 0;
    }
    pt_proc_path(proc, n->fd);
    if (chmod(proc, mode) < 0) {
        return -errno;
    }
    return 0;
}

static int
pt_set_size(struct be_node *n, struct be_handle *h, uint64_t size)
{
    char proc[PT_PROC_PATH_MAX];

    if (size > (uint64_t)INT64_MAX) {
        return -EFBIG;
    }
    if (n->type == S_IFDIR) {
        return -EISDIR;
    }
    if (n->type != S_IFREG) {
        return -EINVAL;
    }
    /* ftruncate needs a writable descriptor; else truncate the inode. */
    if (h != NULL && (h->oflags & O_ACCMODE) != O_RDONLY) {
        if (ftruncate(h->fd, (off_t)size) < 0) {
            return -errno;
        }
        return 0;
    }
    pt_proc_path(proc, n->fd);
    if (truncate(proc, (off_t)size) < 0) {
        return -errno;
    }
    return 0;
}

static int
pt_set_times(struct be_node *n, const struct timespec ts[2])
{
    char proc[PT_PROC_PATH_MAX];

    if (atomic_load_explicit(&pt_have_utimens_empty, memory_order_relaxed)) {
        if (utimensat(n->fd, "", ts, AT_EMPTY_PATH) == 0) {
            return 0;
        }
        if (errno != EINVAL && errno != ENOENT) {
            return -errno;
        }
        /* Older kernels (< 5.8) do not know AT_EMPTY_PATH here. */
        atomic_store_explicit(&pt_have_utimens_empty, 0, memory_order_relaxed);
    }
    /* The magic link resolves to the inode itself (also for symlinks). */
    pt_proc_path(proc, n->fd);
    if (utimensat(AT_FDCWD, proc, ts, 0) < 0) {
        return -errno;
    }
    return 0;
}

/*
 * Which capabilities to raise around a chmod/chown of a non-root fid in
 * multiuser mode (pt_cred.c runs it with CAP_DAC_OVERRIDE only, so the
 * kernel checks ownership by fsuid).  What the server can verify, it
 * does; group membership it cannot (9P does not carry it), and the guest
 * kernel's word stands for it, as in QEMU and diod:
 *  - chmod by the owner: CAP_FSETID, so a set-gid bit on a group the guest
 *    says the owner is in survives (the guest stripped it if not).
 *  - chmod by a non-owner that only removes set-id bits (what a 6.12
 *    client sends before a non-owner's write): CAP_FOWNER and CAP_FSETID
 *    (the mode asked for is applied as is; it can only keep a bit that is
 *    already set).  The same mode again is a no-op success: the guest
 *    sends it when the host kernel cleared the bits first (open with
 *    O_TRUNC by a non-owner, then the client's own clearing).  Anything
 *    else by a non-owner is the kernel's EPERM.
 *  - chgrp by the owner (uid unchanged): CAP_CHOWN and CAP_FSETID; the
 *    kernel still clears S_ISUID, and S_ISGID with group-exec, as chown
 *    always does.  Giving a file away (another uid) stays the kernel's
 *    EPERM.
 * Between the fstat and the change the owner could change; only root can
 * do that, and the window is one syscall.
 */
static int
pt_setattr_caps(struct pt_backend *pb, struct be_node *n, uint32_t valid,
                const struct p9_tsetattr *in, uint64_t *caps, bool *skip_mode)
{
    struct stat st;
    uid_t uid = pt_current_uid();
    int err;

    *caps = 0;
    *skip_mode = false;
    if (!(valid & (P9_SETATTR_MODE | P9_SETATTR_UID | P9_SETATTR_GID))) {
        return 0;
    }
    if (!pb->multiuser) {
        /*
         * Root serving as itself for a non-root fid: everything but
         * CAP_FSETID is held; chmod/chown get it back so that a set-gid
         * bit is kept as before (the daemon is in no guest group).
         */
        if (uid != 0) {
            *caps = PT_CAP(CAP_FSETID);
        }
        return 0;
    }
    if (!pt_cred_limited(pb)) {
        return 0;
    }
    err = pt_fstat(n->fd, &st);
    if (err < 0) {
        return err;
    }
    if (valid & P9_SETATTR_MODE) {
        mode_t cur = st.st_mode & 07777;
        mode_t want = pt_mode_bits(pb, n->type, in->mode);

        if (st.st_uid == uid) {
            *caps |= PT_CAP(CAP_FSETID);
        } else if (want == cur) {
            /*
             * The bits are gone already: the host kernel cleared them when
             * the same open(O_TRUNC) or write reached it first, and the
             * guest's copy of the mode is older.  Nothing to change.
             */
            *skip_mode = true;
        } else if ((want & ~cur) == 0 &&
                   ((cur ^ want) & ~(mode_t)(S_ISUID | S_ISGID)) == 0) {
            /* FSETID: keep the set-gid bit when only S_ISUID goes. */
            *caps |= PT_CAP(CAP_FOWNER) | PT_CAP(CAP_FSETID);
        }
    }
    if ((valid & P9_SETATTR_GID) && st.st_uid == uid &&
        (!(valid & P9_SETATTR_UID) || (uid_t)in->uid == uid)) {
        *caps |= PT_CAP(CAP_CHOWN) | PT_CAP(CAP_FSETID);
    }
    return 0;
}

/*
 * chmod/chown in a mapped model change the stored metadata only; the host
 * inode keeps the daemon's owner and fmode/dmode.  The host kernel checks
 * nothing here (the daemon owns every file), so the server applies the
 * owner rules a local kernel would, with the stored owner, for a non-root
 * fid: chmod by the owner (or a change that only removes set-id bits, as
 * the 6.12 client sends before a non-owner's write), chgrp by the owner,
 * a new uid by root only.  Group membership is the guest kernel's word,
 * as in passthrough.  The set-id clearing that chown implies arrives from
 * the guest as a mode in the same request.
 */
static int
pt_setattr_mapped(struct pt_backend *pb, struct be_node *n,
                  const struct p9_tsetattr *in)
{
    const uint32_t v = in->valid;
    uid_t uid = pt_current_uid();
    struct pt_meta cur;
    struct pt_meta m = {0};
    struct stat st;
    uint32_t cmode;
    uint32_t cuid;
    uint32_t cgid;
    uint64_t crdev = 0;
    int err;

    err = pt_fstat(n->fd, &st);
    if (err < 0) {
        return err;
    }
    err = pt_meta_read(pb, n, &cur);
    if (err < 0) {
        return err;
    }
    cmode = st.st_mode;
    cuid = st.st_uid;
    cgid = st.st_gid;
    pt_meta_apply(&cur, &cmode, &cuid, &cgid, &crdev);
    if (v & P9_SETATTR_MODE) {
        uint32_t want = pt_mode_bits(pb, cmode & S_IFMT, in->mode);
        uint32_t was = cmode & 07777;

        if (uid != 0 && cuid != uid && want != was &&
            !((want & ~was) == 0 &&
              ((was ^ want) & ~(uint32_t)(S_ISUID | S_ISGID)) == 0)) {
            return -EPERM;
        }
        m.mode = (cmode & S_IFMT) | want;
        m.have |= PT_META_MODE;
    }
    if (v & P9_SETATTR_UID) {
        if (uid != 0 && in->uid != cuid) {
            return -EPERM;
        }
        m.uid = in->uid;
        m.have |= PT_META_UID;
    }
    if (v & P9_SETATTR_GID) {
        if (uid != 0 && in->gid != cgid && cuid != uid) {
            return -EPERM;
        }
        m.gid = in->gid;
        m.have |= PT_META_GID;
    }
    if ((m.have & (PT_META_UID | PT_META_GID)) && !(m.have & PT_META_MODE) &&
        !(cur.have & PT_META_MODE)) {
        /*
         * First metadata of an object the host made: record its mode too,
         * so that readers (QEMU included) see one consistent set.
         */
        m.mode = cmode;
        m.have |= PT_META_MODE;
    }
    return pt_meta_write(pb, n, &m);
}

/*
 * Order follows the kernel's own notify_change users (and QEMU): mode,
 * owner, size, times.  Not atomic: a failure in a later step leaves the
 * earlier ones applied, as with a sequence of syscalls in the guest.
 */
int
pt_setattr(struct backend *be, struct be_node *n, struct be_handle *h,
           const struct p9_tsetattr *win)
{
    struct pt_backend *pb = pt_be(be);
    const uint32_t v = win->valid;
    struct p9_tsetattr tin = *win;
    const struct p9_tsetattr *in = &tin;
    uint64_t caps;
    uint64_t saved;
    bool skip_mode;
    int err;

    if (pb->readonly) {
        return -EROFS;
    }
    /* --translate-uid/--translate-gid: the new owner in host ids. */
    if (v & P9_SETATTR_UID) {
        err = pt_id_to_host(&pb->uidmap, win->uid, &tin.uid);
        if (err < 0) {
            return err;
        }
    }
    if (v & P9_SETATTR_GID) {
        err = pt_id_to_host(&pb->gidmap, win->gid, &tin.gid);
        if (err < 0) {
            return err;
        }
    }
    if (pt_mapped(pb) &&
        (v & (P9_SETATTR_MODE | P9_SETATTR_UID | P9_SETATTR_GID))) {
        err = pt_setattr_mapped(pb, n, in);
        if (err < 0) {
            return err;
        }
        /* The rest (size, times) is the host file's, done as the daemon. */
        if (!(v & (P9_SETATTR_SIZE | P9_SETATTR_ATIME | P9_SETATTR_MTIME))) {
            return 0;
        }
        struct p9_tsetattr rest = *in;

        rest.valid &= ~(uint32_t)(P9_SETATTR_MODE | P9_SETATTR_UID |
                                  P9_SETATTR_GID | P9_SETATTR_CTIME);
        return pt_setattr(be, n, h, &rest);
    }
    err = pt_setattr_caps(pb, n, v, in, &caps, &skip_mode);
    if (err < 0) {
        return err;
    }
    if ((v & P9_SETATTR_MODE) && !skip_mode) {
        err = pt_cred_raise(pb, caps & ~PT_CAP(CAP_CHOWN), &saved);
        if (err == 0) {
            err = pt_set_mode(n, h, pt_mode_bits(pb, n->type, in->mode));
        }
        pt_cred_restore(pb, saved);
        if (err < 0) {
            return err;
        }
    }
    if (v & (P9_SETATTR_UID | P9_SETATTR_GID)) {
        uid_t uid = (v & P9_SETATTR_UID) ? (uid_t)in->uid : (uid_t)-1;
        gid_t gid = (v & P9_SETATTR_GID) ? (gid_t)in->gid : (gid_t)-1;

        /* The kernel clears S_ISUID/S_ISGID of a non-directory here. */
        err = pt_cred_raise(pb, caps & PT_CAP(CAP_CHOWN) ? caps : 0, &saved);
        if (err == 0 && fchownat(n->fd, "", uid, gid,
                                 AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
            err = -errno;
        }
        pt_cred_restore(pb, saved);
        if (err < 0) {
            return err;
        }
    }
    if (v & P9_SETATTR_SIZE) {
        err = pt_meta_kill_suid(pb, n); /* mapped models only */
        if (err == 0) {
            err = pt_set_size(n, h, in->size);
        }
        if (err < 0) {
            return err;
        }
    }
    if (v & (P9_SETATTR_ATIME | P9_SETATTR_MTIME)) {
        struct timespec ts[2];

        ts[0].tv_sec = 0;
        ts[0].tv_nsec = UTIME_OMIT;
        ts[1] = ts[0];
        if (v & P9_SETATTR_ATIME) {
            if (v & P9_SETATTR_ATIME_SET) {
                ts[0].tv_sec = (time_t)in->atime_sec;
                ts[0].tv_nsec = (long)in->atime_nsec;
            } else {
                ts[0].tv_nsec = UTIME_NOW;
            }
        }
        if (v & P9_SETATTR_MTIME) {
            if (v & P9_SETATTR_MTIME_SET) {
                ts[1].tv_sec = (time_t)in->mtime_sec;
                ts[1].tv_nsec = (long)in->mtime_nsec;
            } else {
                ts[1].tv_nsec = UTIME_NOW;
            }
        }
        /*
         * "Now" for one of the two times (the client's truncate and write
         * paths send mtime alone) is an explicit time update to the kernel
         * (utimensat with times), which only the owner may make; a local
         * writer's own update needs only write access, which is the
         * guest's check.  So a non-root fid gets CAP_FOWNER for updates
         * to the current time, never for times it chose.
         */
        caps = 0;
        if (pt_cred_limited(pb) &&
            !(v & (P9_SETATTR_ATIME_SET | P9_SETATTR_MTIME_SET))) {
            caps = PT_CAP(CAP_FOWNER);
        }
        err = pt_cred_raise(pb, caps, &saved);
        if (err == 0) {
            err = pt_set_times(n, ts);
        }
        pt_cred_restore(pb, saved);
        if (err < 0) {
            return err;
        }
    }
    if ((v & P9_SETATTR_CTIME) &&
        !(v & (P9_SETATTR_MODE | P9_SETATTR_UID | P9_SETATTR_GID |
               P9_SETATTR_SIZE | P9_SETATTR_ATIME | P9_SETATTR_MTIME))) {
        /*
         * ctime alone: a chown to (-1, -1) changes nothing but ctime
         * (notify_change always sets ATTR_CTIME); every other change above
         * already touched ctime.
         */
        if (fchownat(n->fd, "", (uid_t)-1, (gid_t)-1,
                     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
            return -errno;
        }
    }
    return 0;
}

int
pt_statfs(struct backend *be, struct be_node *n, struct p9_rstatfs *out)
{
    struct statfs sf;

    (void)be;
    if (fstatfs(n->fd, &sf) < 0) {
        return -errno;
    }
    memset(out, 0, sizeof(*out));
    out->type = (uint32_t)sf.f_type;
    out->bsize = (uint32_t)sf.f_bsize;
    out->blocks = sf.f_blocks;
    out->bfree = sf.f_bfree;
    out->bavail = sf.f_bavail;
    out->files = sf.f_files;
    out->ffree = sf.f_ffree;
    out->fsid = (uint64_t)(uint32_t)sf.f_fsid.__val[0] |
                (uint64_t)(uint32_t)sf.f_fsid.__val[1] << 32;
    out->namelen = (uint32_t)sf.f_namelen;
    return 0;
}

/* A mapped symlink is a regular file holding the target (QEMU's format). */
static ssize_t
pt_readlink_mapped(struct pt_backend *pb, struct be_node *n, char *buf,
                   size_t size)
{
    char proc[PT_PROC_PATH_MAX];
    struct pt_meta m;
    ssize_t len;
    int fd;
    int err;

    err = pt_meta_read(pb, n, &m);
    if (err < 0) {
        return err;
    }
    if (!(m.have & PT_META_MODE) || !S_ISLNK(m.mode)) {
        return -EINVAL;
    }
    pt_proc_path(proc, n->fd);
    fd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return -errno;
    }
    len = pread(fd, buf, size, 0);
    if (len < 0) {
        len = -errno;
    }
    close(fd);
    return len;
}

ssize_t
pt_readlink(struct backend *be, struct be_node *n, char *buf, size_t size)
{
    struct pt_backend *pb = pt_be(be);
    ssize_t len;

    if (pt_mapped(pb) && n->type == S_IFREG) {
        return pt_readlink_mapped(pb, n, buf, size);
    }
    if (n->type != S_IFLNK) {
        return -EINVAL;
    }
    len = readlinkat(n->fd, "", buf, size);
    if (len < 0) {
        return -errno;
    }
    return len;
}
