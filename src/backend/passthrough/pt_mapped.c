/* SPDX-License-Identifier: MIT */
/*
 * The mapped security models: the guest's owner, group, mode (file type
 * included) and device number live beside the file, not in the host inode,
 * in the on-disk format of QEMU's local backend, so that a directory one
 * server wrote reads the same through the other.
 *
 *   mapped-xattr  xattrs on the object itself: user.virtfs.uid,
 *                 user.virtfs.gid, user.virtfs.mode (4 bytes each,
 *                 little-endian) and user.virtfs.rdev (8 bytes,
 *                 little-endian).  A hard link shares them (one inode).
 *   mapped-file   a text file per name, DIR/.virtfs_metadata/NAME, with
 *                 lines "virtfs.uid=%d", "virtfs.gid=%d", "virtfs.mode=%d",
 *                 "virtfs.rdev=%d" (each optional); the export root's own
 *                 is .virtfs_metadata_root in the root.  Hard links share
 *                 it through a hard link of the metadata file.
 *
 * A field that is absent is the host inode's.  On the host every object is
 * a regular file or a directory the daemon owns, with mode fmode/dmode;
 * device nodes, FIFOs, sockets and symlinks are regular files (a symlink's
 * target is its content), so nothing the guest makes is a real device,
 * set-id binary or link on the host.
 */
#include "pt.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#define PT_META_X_UID "user.virtfs.uid"
#define PT_META_X_GID "user.virtfs.gid"
#define PT_META_X_MODE "user.virtfs.mode"
#define PT_META_X_RDEV "user.virtfs.rdev"
/* Longest metadata file we read: four short lines. */
#define PT_META_FILE_MAX 256

bool
pt_meta_hidden_name(const struct pt_backend *pb, const char *name)
{
    return pb->model == PT_SM_MAPPED_FILE &&
           (strcmp(name, PT_META_DIR) == 0 || strcmp(name, PT_META_ROOT) == 0);
}

static int
pt_meta_xget32(const char *proc, const char *name, uint32_t *v)
{
    uint32_t le;
    ssize_t len = getxattr(proc, name, &le, sizeof(le));

    if (len < 0) {
        return errno == ENODATA || errno == ENOTSUP ? 0 : -errno;
    }
    if (len != (ssize_t)sizeof(le)) {
        return 0; /* not ours: ignore, as QEMU would read garbage */
    }
    *v = le32toh(le);
    return 1;
}

static int
pt_meta_xread(int fd, struct pt_meta *m)
{
    char proc[PT_PROC_PATH_MAX];
    uint64_t le64;
    ssize_t len;
    int r;

    pt_proc_path(proc, fd);
    r = pt_meta_xget32(proc, PT_META_X_UID, &m->uid);
    if (r < 0) {
        return r;
    }
    m->have |= r ? PT_META_UID : 0;
    r = pt_meta_xget32(proc, PT_META_X_GID, &m->gid);
    if (r < 0) {
        return r;
    }
    m->have |= r ? PT_META_GID : 0;
    r = pt_meta_xget32(proc, PT_META_X_MODE, &m->mode);
    if (r < 0) {
        return r;
    }
    m->have |= r ? PT_META_MODE : 0;
    len = getxattr(proc, PT_META_X_RDEV, &le64, sizeof(le64));
    if (len == (ssize_t)sizeof(le64)) {
        m->rdev = le64toh(le64);
        m->have |= PT_META_RDEV;
    } else if (len < 0 && errno != ENODATA && errno != ENOTSUP) {
        return -errno;
    }
    return 0;
}

static int
pt_meta_xwrite(int fd, const struct pt_meta *m)
{
    char proc[PT_PROC_PATH_MAX];
    uint32_t le;
    uint64_t le64;

    pt_proc_path(proc, fd);
    if (m->have & PT_META_UID) {
        le = htole32(m->uid);
        if (setxattr(proc, PT_META_X_UID, &le, sizeof(le), 0) < 0) {
            return -errno;
        }
    }
    if (m->have & PT_META_GID) {
        le = htole32(m->gid);
        if (setxattr(proc, PT_META_X_GID, &le, sizeof(le), 0) < 0) {
            return -errno;
        }
    }
    if (m->have & PT_META_MODE) {
        le = htole32(m->mode);
        if (setxattr(proc, PT_META_X_MODE, &le, sizeof(le), 0) < 0) {
            return -errno;
        }
    }
    if (m->have & PT_META_RDEV) {
        le64 = htole64(m->rdev);
        if (setxattr(proc, PT_META_X_RDEV, &le64, sizeof(le64), 0) < 0) {
            return -errno;
        }
    }
    return 0;
}

/*
 * The metadata file of 'name' in 'dirfd' (name NULL: the root's).  Opened
 * without following symlinks at either step; -ENOENT if there is none.
 */
static int
pt_meta_fopen(int dirfd, const char *name, int flags, bool mkdir_ok)
{
    int mfd;
    int fd;

    if (name == NULL) {
        fd = openat(dirfd, PT_META_ROOT, flags | O_NOFOLLOW | O_CLOEXEC, 0600);
        return fd < 0 ? -errno : fd;
    }
    mfd = openat(dirfd, PT_META_DIR,
                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (mfd < 0 && errno == ENOENT && mkdir_ok) {
        if (mkdirat(dirfd, PT_META_DIR, 0700) < 0 && errno != EEXIST) {
            return -errno;
        }
        mfd = openat(dirfd, PT_META_DIR,
                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (mfd < 0) {
        return -errno;
    }
    fd = openat(mfd, name, flags | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fd = -errno;
    }
    close(mfd);
    return fd;
}

static void
pt_meta_parse(char *buf, struct pt_meta *m)
{
    static const struct {
        const char *key;
        unsigned bit;
    } keys[] = {
        {"virtfs.uid=", PT_META_UID},
        {"virtfs.gid=", PT_META_GID},
        {"virtfs.mode=", PT_META_MODE},
        {"virtfs.rdev=", PT_META_RDEV},
    };
    char *save = NULL;

    for (char *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            size_t kl = strlen(keys[i].key);
            long long v;

            if (strncmp(line, keys[i].key, kl) != 0) {
                continue;
            }
            /* QEMU writes these with %d: a signed int. */
            v = strtoll(line + kl, NULL, 10);
            m->have |= keys[i].bit;
            switch (keys[i].bit) {
            case PT_META_UID: m->uid = (uint32_t)v; break;
            case PT_META_GID: m->gid = (uint32_t)v; break;
            case PT_META_MODE: m->mode = (uint32_t)v; break;
            default: m->rdev = (uint64_t)(uint32_t)v; break;
            }
        }
    }
}

static int
pt_meta_fread(int dirfd, const char *name, struct pt_meta *m)
{
    char buf[PT_META_FILE_MAX + 1];
    ssize_t len;
    int fd = pt_meta_fopen(dirfd, name, O_RDONLY, false);

    if (fd == -ENOENT) {
        return 0;
    }
    if (fd < 0) {
        return fd;
    }
    len = pread(fd, buf, PT_META_FILE_MAX, 0);
    close(fd);
    if (len < 0) {
        return -errno;
    }
    buf[len] = '\0';
    pt_meta_parse(buf, m);
    return 0;
}

/* Read-modify-write: fields not in 'm' keep their stored values. */
static int
pt_meta_fwrite(int dirfd, const char *name, const struct pt_meta *m)
{
    struct pt_meta cur = {0};
    char buf[PT_META_FILE_MAX];
    int len = 0;
    int fd;
    int err;

    err = pt_meta_fread(dirfd, name, &cur);
    if (err < 0) {
        return err;
    }
    if (m->have & PT_META_UID) {
        cur.uid = m->uid;
    }
    if (m->have & PT_META_GID) {
        cur.gid = m->gid;
    }
    if (m->have & PT_META_MODE) {
        cur.mode = m->mode;
    }
    if (m->have & PT_META_RDEV) {
        cur.rdev = m->rdev;
    }
    cur.have |= m->have;
    if (cur.have & PT_META_UID) {
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, "virtfs.uid=%d\n",
                        (int)cur.uid);
    }
    if (cur.have & PT_META_GID) {
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, "virtfs.gid=%d\n",
                        (int)cur.gid);
    }
    if (cur.have & PT_META_MODE) {
        len += snprintf(buf + len, sizeof(buf) - (size_t)len,
                        "virtfs.mode=%d\n", (int)cur.mode);
    }
    if (cur.have & PT_META_RDEV) {
        len += snprintf(buf + len, sizeof(buf) - (size_t)len,
                        "virtfs.rdev=%d\n", (int)cur.rdev);
    }
    fd = pt_meta_fopen(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, true);
    if (fd < 0) {
        return fd;
    }
    if (write(fd, buf, (size_t)len) != len) {
        err = errno != 0 ? -errno : -EIO;
    }
    close(fd);
    return err;
}

int
pt_meta_read(struct pt_backend *pb, struct be_node *n, struct pt_meta *m)
{
    char *name;
    int pfd;
    int err;

    memset(m, 0, sizeof(*m));
    if (pb->model == PT_SM_MAPPED_XATTR) {
        return pt_meta_xread(n->fd, m);
    }
    if (pb->model != PT_SM_MAPPED_FILE) {
        return 0;
    }
    if (pt_is_root(pb, n)) {
        return pt_meta_fread(n->fd, NULL, m);
    }
    err = pt_locate(pb, n, &pfd, &name);
    if (err < 0) {
        /* Unlinked but still open: its metadata went with its name. */
        return err == -ENOENT ? 0 : err;
    }
    err = pt_meta_fread(pfd, name, m);
    close(pfd);
    free(name);
    return err;
}

int
pt_meta_write_at(struct pt_backend *pb, int fd, int dirfd, const char *name,
                 const struct pt_meta *m)
{
    if (pb->model == PT_SM_MAPPED_XATTR) {
        return pt_meta_xwrite(fd, m);
    }
    if (pb->model == PT_SM_MAPPED_FILE) {
        return pt_meta_fwrite(dirfd, name, m);
    }
    return 0;
}

int
pt_meta_write(struct pt_backend *pb, struct be_node *n, const struct pt_meta *m)
{
    char *name;
    int pfd;
    int err;

    if (pb->model == PT_SM_MAPPED_XATTR) {
        return pt_meta_xwrite(n->fd, m);
    }
    if (pb->model != PT_SM_MAPPED_FILE) {
        return 0;
    }
    if (pt_is_root(pb, n)) {
        return pt_meta_fwrite(n->fd, NULL, m);
    }
    err = pt_locate(pb, n, &pfd, &name);
    if (err < 0) {
        return err;
    }
    err = pt_meta_fwrite(pfd, name, m);
    close(pfd);
    free(name);
    return err;
}

void
pt_meta_unlink(struct pt_backend *pb, int dirfd, const char *name)
{
    int mfd;

    if (pb->model != PT_SM_MAPPED_FILE) {
        return;
    }
    mfd = openat(dirfd, PT_META_DIR,
                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (mfd < 0) {
        return;
    }
    (void)unlinkat(mfd, name, 0);
    close(mfd);
}

/*
 * Before removing directory 'name' in mapped-file: its .virtfs_metadata
 * (invisible to the guest, which saw it empty) must go first or rmdir
 * fails with ENOTEMPTY.  Only metadata files that no name uses remain in it.
 */
int
pt_meta_rmdir_prep(struct pt_backend *pb, int dirfd, const char *name)
{
    int dfd;
    int mfd;
    char buf[4096];
    long nread;

    if (pb->model != PT_SM_MAPPED_FILE) {
        return 0;
    }
    dfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        return 0; /* let the rmdir report it */
    }
    mfd = openat(dfd, PT_META_DIR,
                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (mfd >= 0) {
        /* Only remove metadata of names that no longer exist. */
        while ((nread = getdents64(mfd, buf, sizeof(buf))) > 0) {
            for (long pos = 0; pos < nread;) {
                struct dirent64 *d = (struct dirent64 *)(buf + pos);
                struct stat st;

                pos += d->d_reclen;
                if (strcmp(d->d_name, ".") == 0 ||
                    strcmp(d->d_name, "..") == 0) {
                    continue;
                }
                if (fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
                    errno == ENOENT) {
                    (void)unlinkat(mfd, d->d_name, 0);
                }
            }
        }
        close(mfd);
        (void)unlinkat(dfd, PT_META_DIR, AT_REMOVEDIR);
    }
    close(dfd);
    return 0;
}

int
pt_meta_rename(struct pt_backend *pb, int odir, const char *oname, int ndir,
               const char *nname)
{
    int omfd;
    int nmfd;
    int err = 0;

    if (pb->model != PT_SM_MAPPED_FILE) {
        return 0;
    }
    omfd = openat(odir, PT_META_DIR,
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (omfd < 0) {
        /* No metadata to move; drop the target's stale one if any. */
        pt_meta_unlink(pb, ndir, nname);
        return 0;
    }
    if (faccessat(omfd, oname, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
        close(omfd);
        pt_meta_unlink(pb, ndir, nname);
        return 0;
    }
    if (mkdirat(ndir, PT_META_DIR, 0700) < 0 && errno != EEXIST) {
        err = -errno;
        close(omfd);
        return err;
    }
    nmfd = openat(ndir, PT_META_DIR,
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nmfd < 0) {
        err = -errno;
    } else {
        if (renameat(omfd, oname, nmfd, nname) < 0) {
            err = -errno;
        }
        close(nmfd);
    }
    close(omfd);
    return err;
}

int
pt_meta_link(struct pt_backend *pb, int odir, const char *oname, int ndir,
             const char *nname)
{
    int omfd;
    int nmfd;
    int err = 0;

    if (pb->model != PT_SM_MAPPED_FILE) {
        return 0;
    }
    omfd = openat(odir, PT_META_DIR,
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (omfd < 0) {
        return 0;
    }
    if (mkdirat(ndir, PT_META_DIR, 0700) < 0 && errno != EEXIST) {
        err = -errno;
        close(omfd);
        return err;
    }
    nmfd = openat(ndir, PT_META_DIR,
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nmfd < 0) {
        err = -errno;
    } else {
        if (linkat(omfd, oname, nmfd, nname, 0) < 0 && errno != ENOENT) {
            err = -errno;
        }
        close(nmfd);
    }
    close(omfd);
    return err;
}

void
pt_meta_apply(const struct pt_meta *m, uint32_t *mode, uint32_t *uid,
              uint32_t *gid, uint64_t *rdev)
{
    if (m->have & PT_META_UID) {
        *uid = m->uid;
    }
    if (m->have & PT_META_GID) {
        *gid = m->gid;
    }
    if (m->have & PT_META_MODE) {
        *mode = m->mode;
    }
    if (m->have & PT_META_RDEV) {
        *rdev = m->rdev;
    }
}

/*
 * A write or truncation by a non-root fid clears the stored set-uid bit,
 * and set-gid (see below), before the data lands: what the
 * kernel does for a local writer without CAP_FSETID (in passthrough the
 * host kernel does it; here the bits are not real, so the server must).
 * A 6.12 client asks for the same with a Tsetattr first; a 6.1 client
 * relies on the server.
 */
int
pt_meta_kill_suid(struct pt_backend *pb, struct be_node *n)
{
    struct pt_meta m;
    struct pt_meta w = {0};
    uint32_t kill = S_ISUID;
    int err;

    if (!pt_mapped(pb) || n->type != S_IFREG || pt_current_uid() == 0) {
        return 0;
    }
    err = pt_meta_read(pb, n, &m);
    if (err < 0) {
        return err;
    }
    if (!(m.have & PT_META_MODE)) {
        return 0;
    }
    /*
     * Set-gid goes with group-exec, or when the writer is not in the
     * file's group (the kernel's in_group_or_capable; the groups known
     * here are the host's for the fid's uid, as in passthrough).
     */
    if (!(m.have & PT_META_GID)) {
        struct stat st;

        err = pt_fstat(n->fd, &st);
        if (err < 0) {
            return err;
        }
        m.gid = st.st_gid;
    }
    if ((m.mode & S_IXGRP) ||
        ((m.mode & S_ISGID) && !pt_current_in_group((gid_t)m.gid))) {
        kill |= S_ISGID;
    }
    if (!(m.mode & kill)) {
        return 0;
    }
    w.have = PT_META_MODE;
    w.mode = m.mode & ~kill;
    return pt_meta_write(pb, n, &w);
}
