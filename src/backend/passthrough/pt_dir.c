/* SPDX-License-Identifier: MIT */
/*
 * Directories and the namespace: readdir, mkdir, mknod, symlink, link,
 * renameat, unlinkat, and rename/remove of a node wherever it is now.
 *
 * Every namespace call is an *at() call relative to a directory node's
 * O_PATH descriptor with a single checked name, so nothing here ever
 * resolves a multi-element path or follows a symlink.
 *
 * readdir runs getdents64 on the handle's open descriptor after an lseek
 * to the client's offset: the offsets handed out are the host's own d_off
 * cookies, so a later Treaddir resumes exactly where the previous one
 * stopped (the host file system guarantees stability of the cookies under
 * concurrent adds/removes of *other* entries).  The handle's mutex keeps
 * the lseek+getdents64 pair atomic.  Qids come from d_ino/d_type without a
 * stat (the directory's device is used for remapping, so a mount point
 * inside the export shows its underlying directory's inode here).
 */
#include "pt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct pt_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* A name for a new or existing entry: checked, and never "..". */
static int
pt_check_entry(const char *name)
{
    int err = pt_check_name(name);

    if (err < 0) {
        return err;
    }
    if (strcmp(name, "..") == 0) {
        return -EINVAL;
    }
    return 0;
}

/* Common checks for an op that changes directory 'dir'. */
static int
pt_dir_mut(struct pt_backend *pb, struct be_node *dir, const char *name)
{
    int err = pt_check_entry(name);

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
        return -EINVAL; /* mapped-file's own metadata, as QEMU answers */
    }
    return 0;
}

static uint8_t
pt_dtype_to_qtype(unsigned char t)
{
    switch (t) {
    case DT_DIR: return P9_QTDIR;
    case DT_LNK: return P9_QTSYMLINK;
    default: return P9_QTFILE;
    }
}

static unsigned char
pt_mode_to_dtype(mode_t mode)
{
    return (unsigned char)((mode & S_IFMT) >> 12);
}

/*
 * Read-ahead.  getdents64 fills a buffer of the worker thread (one per
 * thread, for the thread's life), never one per handle.  When a reply is
 * full before the buffer is used up, the entries left over are copied to
 * the handle (h->dbuf, exactly their size, charged to the session's
 * memory budget), so the next Treaddir resumes without lseek -- which
 * makes e.g. ext4 rebuild its hash-order cache.  Without budget they are
 * dropped and the next Treaddir seeks to its offset instead.  So a handle
 * pins memory only while a listing is paused mid-batch, within budget.
 */
static pthread_key_t pt_dirbuf_key;
static pthread_once_t pt_dirbuf_once = PTHREAD_ONCE_INIT;

static void
pt_dirbuf_key_init(void)
{
    (void)pthread_key_create(&pt_dirbuf_key, free);
}

static char *
pt_thread_dirbuf(void)
{
    char *buf;

    pthread_once(&pt_dirbuf_once, pt_dirbuf_key_init);
    buf = pthread_getspecific(pt_dirbuf_key);
    if (buf == NULL) {
        buf = malloc(PT_DIRBUF);
        if (buf != NULL && pthread_setspecific(pt_dirbuf_key, buf) != 0) {
            free(buf);
            buf = NULL;
        }
    }
    return buf;
}

/* Drop the handle's leftovers and their charge. */
void
pt_dirbuf_release(struct be_handle *h)
{
    if (h->dsnap != NULL) {
        if (h->dsnap_charged) {
            be_budget_uncharge(h->lim.mem, (uint64_t)h->dlen);
        }
        pt_dirsnap_put(h->dsnap);
        h->dsnap = NULL;
        h->dsnap_charged = false;
        h->dbuf = NULL;
    } else if (h->dbuf != NULL) {
        free(h->dbuf);
        h->dbuf = NULL;
        be_budget_uncharge(h->lim.mem, (uint64_t)h->dlen);
    }
    h->dlen = 0;
    h->dpos = 0;
    h->dend = false;
}

/*
 * A listing from offset 0: serve it from the listing cache if the
 * directory is unchanged, or read it whole into a new snapshot (which the
 * cache keeps if it may).  Otherwise leave the handle to seek and read
 * the usual way.  Caller holds h->lock.
 */
static void
pt_dir_from_cache(struct pt_backend *pb, struct be_handle *h)
{
    struct pt_dirsnap *snap = NULL;
    struct stat st;
    int r;

    if (fstat(h->fd, &st) < 0) {
        return;
    }
    pt_dirbuf_release(h);
    /* a snapshot dropped here left the fd anywhere; a fill moves it: the
     * usual way must seek */
    h->dvalid = false;
    r = pt_dircache_get(pb, &st, &snap);
    if (r == 0) {
        /* charged to the session while it is read, and then its length
         * while the handle holds it (like a paused listing) */
        snap = pt_dircache_fill(pb, h->fd, &st, h->lim.mem);
        h->dsnap_charged = snap != NULL;
    }
    if (snap != NULL) {
        h->dsnap = snap;
        h->dbuf = (char *)pt_dirsnap_data(snap, &h->dlen);
        h->dpos = 0;
        h->dcur = 0;
        h->dvalid = true;
    }
}

/* The listing stops mid-snapshot: the handle keeps it while the
 * session's memory budget allows, else the next call seeks. */
static void
pt_dir_keep_snap(struct be_handle *h)
{
    if (h->dsnap == NULL || h->dsnap_charged) {
        return;
    }
    if (be_budget_charge(h->lim.mem, (uint64_t)h->dlen)) {
        h->dsnap_charged = true;
        return;
    }
    pt_dirbuf_release(h);
    h->dvalid = false; /* the fd is not where dcur says */
}

/* Emit the entries in buf[*pos, len); 1 when the reply is full (the
 * entry at *pos did not fit), 0 when all were taken. */
static int
pt_dir_emit(struct pt_backend *pb, struct be_handle *h, const char *buf,
            long *pos, long len, be_dirent_fn *fn, void *ctx)
{
    while (*pos < len) {
        const struct pt_dirent64 *d = (const void *)(buf + *pos);
        unsigned char dtype = d->d_type;
        struct p9_qid qid;

        if (dtype == DT_UNKNOWN) {
            struct stat st;

            if (fstatat(h->fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                dtype = pt_mode_to_dtype(st.st_mode);
            }
        }
        if (pt_meta_hidden_name(pb, d->d_name)) {
            /* mapped-file's metadata is not the guest's */
            *pos += d->d_reclen;
            h->dcur = (uint64_t)d->d_off;
            continue;
        }
        qid.type = pt_dtype_to_qtype(dtype);
        if (pt_mapped(pb)) {
            /* The host's type is not the guest's: let it ask. */
            dtype = DT_UNKNOWN;
        }
        qid.version = 0;
        qid.path = pt_qid_path(pb, h->node->dev, (ino_t)d->d_ino);
        if (fn(ctx, &qid, (uint64_t)d->d_off, dtype, d->d_name,
               strlen(d->d_name)) != 0) {
            return 1; /* full: this entry stays for the next call */
        }
        *pos += d->d_reclen;
        h->dcur = (uint64_t)d->d_off;
    }
    return 0;
}

/* Keep buf[pos, len) on the handle if the budget allows; else the next
 * call must seek. */
static void
pt_dir_keep(struct be_handle *h, const char *buf, long pos, long len)
{
    uint64_t n = (uint64_t)(len - pos);

    if (be_budget_charge(h->lim.mem, n)) {
        h->dbuf = malloc((size_t)n);
        if (h->dbuf != NULL) {
            memcpy(h->dbuf, buf + pos, (size_t)n);
            h->dlen = (long)n;
            h->dpos = 0;
            return;
        }
        be_budget_uncharge(h->lim.mem, n);
    }
    h->dvalid = false; /* the fd is past entries nobody took */
}

int
pt_readdir(struct backend *be, struct be_handle *h, uint64_t offset,
           be_dirent_fn *fn, void *ctx)
{
    struct pt_backend *pb = pt_be(be);
    char *buf;
    int err = 0;

    if (h->node->type != S_IFDIR) {
        return -ENOTDIR;
    }
    if (offset > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    buf = pt_thread_dirbuf();
    if (buf == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&h->lock);
    if (offset == 0 && pb->dc != NULL) {
        pt_dir_from_cache(pb, h);
    }
    if (!h->dvalid || offset != h->dcur) {
        /* not where the last Treaddir stopped: seek (offsets are the
         * host's directory cookies, so this resumes exactly) */
        pt_dirbuf_release(h);
        h->dvalid = false;
        if (lseek(h->fd, (off_t)offset, SEEK_SET) < 0) {
            err = -errno;
            goto out_unlock;
        }
        h->dcur = offset;
        h->dvalid = true;
    }
    if (h->dend) {
        goto out_unlock; /* a snapshot's listing has ended */
    }
    if (h->dbuf != NULL) {
        bool snap = h->dsnap != NULL;

        if (pt_dir_emit(pb, h, h->dbuf, &h->dpos, h->dlen, fn, ctx)) {
            pt_dir_keep_snap(h); /* read-ahead: still charged */
            goto out_unlock;
        }
        pt_dirbuf_release(h);
        if (snap) {
            h->dend = true; /* the snapshot went to the end */
            goto out_unlock;
        }
    }
    for (;;) {
        long pos = 0;
        long nread = syscall(SYS_getdents64, h->fd, buf, PT_DIRBUF);

        if (nread < 0) {
            /*
             * A removed directory answers ENOENT; it has no entries,
             * so report an empty (ended) directory to the open handle.
             */
            err = errno == ENOENT ? 0 : -errno;
            h->dvalid = false;
            break;
        }
        if (nread == 0) {
            break; /* the end; dcur stays valid for a later call */
        }
        if (pt_dir_emit(pb, h, buf, &pos, nread, fn, ctx)) {
            pt_dir_keep(h, buf, pos, nread);
            break;
        }
    }

out_unlock:
    pthread_mutex_unlock(&h->lock);
    return err;
}

/*
 * The metadata a mapped model stores for a new object: the fid's uid, the
 * request's gid, the guest's type and mode, and a device number.
 */
static struct pt_meta
pt_new_meta(struct pt_backend *pb, mode_t type, uint32_t mode, uint32_t gid,
            bool has_rdev, uint64_t rdev)
{
    struct pt_meta m = {0};

    m.have = PT_META_UID | PT_META_MODE;
    m.uid = pt_current_uid();
    m.mode = type | pt_mode_bits(pb, type, mode);
    if (gid != (uint32_t)-1) {
        m.gid = gid;
        m.have |= PT_META_GID;
    }
    if (has_rdev) {
        m.rdev = rdev;
        m.have |= PT_META_RDEV;
    }
    return m;
}

/*
 * Open the entry just made, set the client's gid (or, in a mapped model,
 * store 'meta'), and return its qid.  If that fails the entry is removed.
 */
static int
pt_finish_new(struct pt_backend *pb, struct be_node *dir, const char *name,
              uint32_t gid, const struct pt_meta *meta, struct p9_qid *qid)
{
    struct stat st;
    int fd;
    int err;

    fd = pt_open_child(dir->fd, name, 0);
    if (fd < 0) {
        return fd;
    }
    err = pt_fstat(fd, &st);
    if (err == 0 && meta != NULL) {
        err = pt_meta_write_at(pb, fd, dir->fd, name, meta);
        st.st_mode = meta->mode;
    } else if (err == 0) {
        if (pb->model == PT_SM_NONE) {
            /* QEMU's "none": give it to the fid's user if we can (a
             * failure leaves it the daemon's, as QEMU does) */
            if (fchownat(fd, "", pt_current_uid(), (gid_t)-1,
                         AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
                errno = 0;
            }
        }
        err = pt_set_gid(fd, &st, gid);
    }
    if (err == 0) {
        pt_stat_to_qid(pb, &st, qid);
    }
    close(fd);
    if (err < 0 && meta != NULL) {
        (void)unlinkat(dir->fd, name, S_ISDIR(meta->mode) ? AT_REMOVEDIR : 0);
        pt_meta_unlink(pb, dir->fd, name);
    }
    return err;
}

/* A mapped model's placeholder for a non-directory: an empty file. */
static int
pt_mapped_file(struct pt_backend *pb, int dirfd, const char *name,
               const char *content)
{
    int fd =
        openat(dirfd, name,
               O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, pb->fmode);
    int err = 0;

    if (fd < 0) {
        return -errno;
    }
    if (content != NULL) {
        size_t len = strlen(content);
        ssize_t w = write(fd, content, len);

        if (w != (ssize_t)len) {
            err = w < 0 ? -errno : -EIO;
        }
    }
    close(fd);
    if (err < 0) {
        (void)unlinkat(dirfd, name, 0);
    }
    return err;
}

int
pt_mkdir(struct backend *be, struct be_node *dir, const char *name,
         uint32_t mode, uint32_t gid, struct p9_qid *qid)
{
    struct pt_backend *pb = pt_be(be);
    int err = pt_dir_mut(pb, dir, name);
    uint32_t saved;

    if (err < 0) {
        return err;
    }
    err = pt_id_to_host(&pb->gidmap, gid, &gid); /* --translate-gid */
    if (err < 0) {
        return err;
    }
    if (pt_mapped(pb)) {
        struct pt_meta m = pt_new_meta(pb, S_IFDIR, mode, gid, false, 0);

        if (mkdirat(dir->fd, name, pb->dmode) < 0) {
            return -errno;
        }
        return pt_finish_new(pb, dir, name, gid, &m, qid);
    }
    err = pt_cred_fsgid(pb, gid, &saved);
    if (err < 0) {
        return err;
    }
    pt_exact_modes();
    err = mkdirat(dir->fd, name, pt_mode_bits(pb, S_IFDIR, mode)) < 0 ? -errno
                                                                      : 0;
    pt_cred_fsgid_restore(pb, saved);
    if (err < 0) {
        return err;
    }
    return pt_finish_new(pb, dir, name, gid, NULL, qid);
}

int
pt_mknod(struct backend *be, struct be_node *dir, const char *name,
         uint32_t mode, uint32_t major, uint32_t minor, uint32_t gid,
         struct p9_qid *qid)
{
    struct pt_backend *pb = pt_be(be);
    int err = pt_dir_mut(pb, dir, name);
    mode_t m = (mode_t)mode;
    uint32_t saved;

    if (err < 0) {
        return err;
    }
    err = pt_id_to_host(&pb->gidmap, gid, &gid); /* --translate-gid */
    if (err < 0) {
        return err;
    }
    switch (m & S_IFMT) {
    case 0: m |= S_IFREG; break;
    case S_IFREG:
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
    case S_IFSOCK: break;
    default: return -EINVAL; /* directories and symlinks have their own ops */
    }
    if (pb->nodev && (S_ISCHR(m) || S_ISBLK(m))) {
        /* Refused outright, for root fids too: it would be a host node. */
        return -EPERM;
    }
    if (pt_mapped(pb)) {
        struct pt_meta meta =
            pt_new_meta(pb, m & S_IFMT, m, gid, true, makedev(major, minor));

        /* Every type is a plain file on the host (QEMU does the same). */
        err = pt_mapped_file(pb, dir->fd, name, NULL);
        if (err < 0) {
            return err;
        }
        return pt_finish_new(pb, dir, name, gid, &meta, qid);
    }
    m = (m & S_IFMT) | pt_mode_bits(pb, m & S_IFMT, m);
    err = pt_cred_fsgid(pb, gid, &saved);
    if (err < 0) {
        return err;
    }
    pt_exact_modes();
    err = mknodat(dir->fd, name, m, makedev(major, minor)) < 0 ? -errno : 0;
    pt_cred_fsgid_restore(pb, saved);
    if (err < 0) {
        return err;
    }
    return pt_finish_new(pb, dir, name, gid, NULL, qid);
}

int
pt_symlink(struct backend *be, struct be_node *dir, const char *name,
           const char *target, uint32_t gid, struct p9_qid *qid)
{
    struct pt_backend *pb = pt_be(be);
    int err = pt_dir_mut(pb, dir, name);
    uint32_t saved;

    if (err < 0) {
        return err;
    }
    err = pt_id_to_host(&pb->gidmap, gid, &gid); /* --translate-gid */
    if (err < 0) {
        return err;
    }
    /* The target is stored, never resolved by the server. */
    if (target == NULL || target[0] == '\0') {
        return -ENOENT;
    }
    if (pt_mapped(pb)) {
        struct pt_meta m = pt_new_meta(pb, S_IFLNK, 0777, gid, false, 0);

        /* A regular file whose content is the target (QEMU's format). */
        err = pt_mapped_file(pb, dir->fd, name, target);
        if (err < 0) {
            return err;
        }
        return pt_finish_new(pb, dir, name, gid, &m, qid);
    }
    err = pt_cred_fsgid(pb, gid, &saved);
    if (err < 0) {
        return err;
    }
    err = symlinkat(target, dir->fd, name) < 0 ? -errno : 0;
    pt_cred_fsgid_restore(pb, saved);
    if (err < 0) {
        return err;
    }
    return pt_finish_new(pb, dir, name, gid, NULL, qid);
}

/*
 * mapped-file keeps metadata per name: the new name's metadata file is a
 * hard link of the old one's, so both names keep sharing it.
 */
static int
pt_link_mapped_file(struct pt_backend *pb, struct be_node *dir,
                    const char *name, struct be_node *target)
{
    char proc[PT_PROC_PATH_MAX];
    char *oname;
    int opfd;
    int err;

    err = pt_locate(pb, target, &opfd, &oname);
    if (err < 0) {
        return err;
    }
    pt_proc_path(proc, target->fd);
    if (linkat(AT_FDCWD, proc, dir->fd, name, AT_SYMLINK_FOLLOW) < 0) {
        err = -errno;
        goto out;
    }
    err = pt_meta_link(pb, opfd, oname, dir->fd, name);
    if (err < 0) {
        (void)unlinkat(dir->fd, name, 0);
    }
out:
    close(opfd);
    free(oname);
    return err;
}

int
pt_link(struct backend *be, struct be_node *dir, const char *name,
        struct be_node *target)
{
    struct pt_backend *pb = pt_be(be);
    char proc[PT_PROC_PATH_MAX];
    int err = pt_dir_mut(pb, dir, name);

    if (err < 0) {
        return err;
    }
    if (target->type == S_IFDIR) {
        return -EPERM;
    }
    if (pb->model == PT_SM_MAPPED_FILE) {
        return pt_link_mapped_file(pb, dir, name, target);
    }
    if (linkat(target->fd, "", dir->fd, name, AT_EMPTY_PATH) == 0) {
        return 0;
    }
    err = -errno;
    if (err != -ENOENT && err != -EPERM) {
        return err;
    }
    /*
     * AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (dropped while fsuid != 0).
     * The magic link names the inode itself, symlinks included.
     */
    pt_proc_path(proc, target->fd);
    if (linkat(AT_FDCWD, proc, dir->fd, name, AT_SYMLINK_FOLLOW) < 0) {
        return -errno;
    }
    return 0;
}

int
pt_renameat(struct backend *be, struct be_node *olddir, const char *oldname,
            struct be_node *newdir, const char *newname)
{
    struct pt_backend *pb = pt_be(be);
    struct be_node *moved;
    struct stat st;
    int err = pt_dir_mut(pb, olddir, oldname);

    if (err < 0) {
        return err;
    }
    err = pt_dir_mut(pb, newdir, newname);
    if (err < 0) {
        return err;
    }
    /* Which object moves, so that its node's link can follow it. */
    if (fstatat(olddir->fd, oldname, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        return -errno;
    }
    if (renameat(olddir->fd, oldname, newdir->fd, newname) < 0) {
        return -errno;
    }
    pt_node_unname(pb, newdir, newname); /* whatever it replaced */
    moved = pt_node_lookup(pb, st.st_dev, st.st_ino);
    if (moved != NULL) {
        pt_node_relink(pb, moved, newdir, newname);
        pt_node_put(be, moved);
    }
    return pt_meta_rename(pb, olddir->fd, oldname, newdir->fd, newname);
}

int
pt_unlinkat(struct backend *be, struct be_node *dir, const char *name,
            uint32_t flags)
{
    struct pt_backend *pb = pt_be(be);
    int err = pt_dir_mut(pb, dir, name);

    if (err < 0) {
        return err;
    }
    if (flags & ~(uint32_t)P9_DOTL_AT_REMOVEDIR) {
        return -EINVAL;
    }
    if (flags & P9_DOTL_AT_REMOVEDIR) {
        pt_meta_rmdir_prep(pb, dir->fd, name);
    }
    if (unlinkat(dir->fd, name,
                 (flags & P9_DOTL_AT_REMOVEDIR) ? AT_REMOVEDIR : 0) < 0) {
        return -errno;
    }
    pt_node_unname(pb, dir, name);
    pt_meta_unlink(pb, dir->fd, name);
    return 0;
}

int
pt_rename(struct backend *be, struct be_node *n, struct be_node *newdir,
          const char *newname)
{
    struct pt_backend *pb = pt_be(be);
    char *name;
    int pfd;
    int err = pt_dir_mut(pb, newdir, newname);

    if (err < 0) {
        return err;
    }
    err = pt_locate(pb, n, &pfd, &name);
    if (err < 0) {
        return err;
    }
    if (renameat(pfd, name, newdir->fd, newname) < 0) {
        err = -errno;
    } else {
        pt_node_unname(pb, newdir, newname); /* whatever it replaced */
        pt_node_relink(pb, n, newdir, newname);
        err = pt_meta_rename(pb, pfd, name, newdir->fd, newname);
    }
    close(pfd);
    free(name);
    return err;
}

int
pt_remove(struct backend *be, struct be_node *n)
{
    struct pt_backend *pb = pt_be(be);
    char *name;
    int pfd;
    int err;

    if (pb->readonly) {
        return -EROFS;
    }
    err = pt_locate(pb, n, &pfd, &name);
    if (err < 0) {
        return err;
    }
    if (n->type == S_IFDIR) {
        pt_meta_rmdir_prep(pb, pfd, name);
    }
    if (unlinkat(pfd, name, n->type == S_IFDIR ? AT_REMOVEDIR : 0) < 0) {
        err = -errno;
    } else {
        pt_node_gone(pb, n);
        pt_meta_unlink(pb, pfd, name);
    }
    close(pfd);
    free(name);
    return err;
}
