/* SPDX-License-Identifier: MIT */
/*
 * The overlay backend: one writable upper directory over read-only lower
 * trees, with the semantics and on-disk format of the kernel's overlayfs.
 *
 * Layer 0 is the upper, layers 1..n the lowers (leftmost on top).  A node
 * keeps one O_PATH descriptor per layer that holds the object (for a
 * merged directory several, for anything else only the topmost); every
 * name is resolved with one openat(O_PATH | O_NOFOLLOW) below a
 * descriptor, never a path string, so nothing leaves a layer.  Lower
 * objects are only ever opened O_RDONLY: every change first copies the
 * object up (parents first) through the work directory and a rename.
 *
 * Locking: one mutex per export guards node descriptors (a copy-up adds
 * fd[0] to nodes), all namespace changes and copy-ups.  Reads and writes
 * on open handles run without it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "backend/common/becommon.h"
#include "backend/overlay/overlay.h"

#define OV_NL (OV_MAX_LOWERS + 1)
#define OV_PROC_MAX 64
#define OV_QMAP_SIZE 4096

struct ov_qmap_ent {
    dev_t dev;
    ino_t ino;
    uint64_t qpath;
    struct ov_qmap_ent *next;
};

struct ov_backend {
    struct backend be;
    int nl;            /* layers: 1 + nlowers */
    int rootfd[OV_NL]; /* O_PATH roots */
    int workfd;        /* O_PATH work directory */
    bool readonly;
    const char *xprefix; /* "trusted.overlay." or "user.overlay." */
    pthread_mutex_t lock;
    uint64_t tmpseq;
    dev_t devs[255]; /* qid device index table */
    int ndevs;
    struct ov_qmap_ent *qmap[OV_QMAP_SIZE]; /* copied-up file -> old qid */
};

struct be_node {
    atomic_uint ref;
    struct be_node *parent; /* NULL at the root; holds a reference */
    char *name;
    mode_t type; /* S_IFMT bits */
    int top;     /* layer serving the object */
    uint64_t qpath;
    int fd[OV_NL]; /* O_PATH per layer or -1 */
};

struct ov_dent {
    char *name;
    uint8_t type;
    struct p9_qid qid;
};

struct be_handle {
    struct be_node *n;
    int fd;
    bool listed;
    struct ov_dent *ents; /* directories: merged listing, made at the
                               first readdir, kept until close */
    size_t nents;
    struct be_budget *mem; /* the session's, charged for the listing */
    uint64_t charged;
    struct be_budget *locks; /* the session's lock-record budget */
    struct be_budget *fds;   /* the session's descriptor budget, when
                                charged for fd */
    pthread_mutex_t lock_mu;
    uint64_t nlocks; /* lock requests granted since the last
                               whole-file unlock: an upper bound of the
                               records the kernel holds for this fd */
};

/* What a lookup of one name found. */
struct ov_look {
    int fd[OV_NL];
    int top;
    mode_t type;
    uint64_t qpath;
};

struct be_user {
    uid_t uid;
};

/* The attached user of the request on this thread: owner of what it makes. */
static _Thread_local uid_t ov_cur_uid;

#define OV_NOGID ((uint32_t)-1)

static struct ov_backend *
ov_be(struct backend *be)
{
    return (struct ov_backend *)be->priv;
}

/* How /proc/self/fd/N is named; ov_reroot() may change it at start. */
static const char *ov_proc_fd = "/proc/self/fd/";

static void
ov_proc(char buf[OV_PROC_MAX], int fd)
{
    snprintf(buf, OV_PROC_MAX, "%s%d", ov_proc_fd, fd);
}

static bool
ov_private_xattr(const char *name)
{
    return strncmp(name, "trusted.overlay.", 16) == 0 ||
           strncmp(name, "user.overlay.", 13) == 0;
}

static int
ov_fstat(int fd, struct stat *st)
{
    if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
        return -errno;
    }
    return 0;
}

static bool
ov_has_xattr(int fd, const char *suffix, const char *want)
{
    static const char *const pfx[] = {"trusted.overlay.", "user.overlay."};
    char path[OV_PROC_MAX];
    char name[64];
    char val[8];

    ov_proc(path, fd);
    for (size_t i = 0; i < 2; i++) {
        ssize_t len;

        snprintf(name, sizeof(name), "%s%s", pfx[i], suffix);
        len = getxattr(path, name, val, sizeof(val));
        if (len < 0) {
            continue;
        }
        if (want == NULL || ((size_t)len == strlen(want) &&
                             memcmp(val, want, (size_t)len) == 0)) {
            return true;
        }
    }
    return false;
}

/* A whiteout: a 0/0 character device, or (the xattr form) an empty
 * regular file or fifo carrying overlay.whiteout. */
static bool
ov_is_whiteout(int fd, const struct stat *st)
{
    if (S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0)) {
        return true;
    }
    if ((S_ISREG(st->st_mode) && st->st_size == 0) || S_ISFIFO(st->st_mode)) {
        return ov_has_xattr(fd, "whiteout", NULL);
    }
    return false;
}

/* ---- qids ------------------------------------------------------------------ */

/*
 * qid.path = device index (8 bits) | inode (56 bits).  A merged or
 * copied-up object keeps the identity of its lower object: a directory
 * takes the topmost lower directory's, and a copied-up file is entered in
 * a map (upper dev, ino) -> old qid path (in memory: after a restart a
 * copied-up file has the upper file's qid).
 */
static uint64_t
ov_qpath_of(struct ov_backend *ob, dev_t dev, ino_t ino)
{
    int idx = -1;

    for (int i = 0; i < ob->ndevs; i++) {
        if (ob->devs[i] == dev) {
            idx = i;
            break;
        }
    }
    if (idx < 0 && ob->ndevs < 255) {
        idx = ob->ndevs++;
        ob->devs[idx] = dev;
    }
    if (idx < 0) {
        idx = 255;
    }
    return ((uint64_t)idx << 56) | ((uint64_t)ino & ((1ULL << 56) - 1));
}

static size_t
ov_qmap_slot(dev_t dev, ino_t ino)
{
    return (size_t)((ino * 0x9e3779b97f4a7c15ULL) ^ dev) % OV_QMAP_SIZE;
}

static bool
ov_qmap_find(struct ov_backend *ob, dev_t dev, ino_t ino, uint64_t *qpath)
{
    for (struct ov_qmap_ent *e = ob->qmap[ov_qmap_slot(dev, ino)]; e;
         e = e->next) {
        if (e->dev == dev && e->ino == ino) {
            *qpath = e->qpath;
            return true;
        }
    }
    return false;
}

static void
ov_qmap_add(struct ov_backend *ob, dev_t dev, ino_t ino, uint64_t qpath)
{
    struct ov_qmap_ent *e = malloc(sizeof(*e));
    size_t slot = ov_qmap_slot(dev, ino);

    if (e == NULL) {
        return; /* the qid changes; not fatal */
    }
    e->dev = dev;
    e->ino = ino;
    e->qpath = qpath;
    e->next = ob->qmap[slot];
    ob->qmap[slot] = e;
}

static uint8_t
ov_qtype(mode_t type)
{
    if (S_ISDIR(type)) {
        return P9_QTDIR;
    }
    if (S_ISLNK(type)) {
        return P9_QTSYMLINK;
    }
    return P9_QTFILE;
}

static uint8_t
ov_dtype(mode_t type)
{
    return (uint8_t)(IFTODT(type));
}

static int
ov_look_qpath(struct ov_backend *ob, struct ov_look *lk)
{
    struct stat st;
    int id = lk->top;
    int err;

    if (S_ISDIR(lk->type)) {
        for (int i = 1; i < ob->nl; i++) {
            if (lk->fd[i] >= 0) {
                id = i;
                break;
            }
        }
    }
    err = ov_fstat(lk->fd[id], &st);
    if (err < 0) {
        return err;
    }
    if (id == 0 && ov_qmap_find(ob, st.st_dev, st.st_ino, &lk->qpath)) {
        return 0;
    }
    lk->qpath = ov_qpath_of(ob, st.st_dev, st.st_ino);
    return 0;
}

/* ---- lookup ------------------------------------------------------------------ */

static void
ov_look_close(struct ov_look *lk)
{
    for (int i = 0; i < OV_NL; i++) {
        if (lk->fd[i] >= 0) {
            close(lk->fd[i]);
            lk->fd[i] = -1;
        }
    }
}

/*
 * Resolve 'name' in the merged directory 'dir': the topmost layer with the
 * name wins; a whiteout hides it below; a directory collects the
 * directories of the same name below it until an opaque one or a
 * non-directory.  -ENOENT when nothing is visible.
 */
static int
ov_lookup(struct ov_backend *ob, struct be_node *dir, const char *name,
          struct ov_look *lk)
{
    int err;

    for (int i = 0; i < OV_NL; i++) {
        lk->fd[i] = -1;
    }
    lk->top = -1;
    lk->type = 0;
    for (int i = 0; i < ob->nl; i++) {
        struct stat st;
        int fd;

        if (dir->fd[i] < 0) {
            continue;
        }
        fd = openat(dir->fd[i], name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR) {
                continue;
            }
            err = -errno;
            goto fail;
        }
        err = ov_fstat(fd, &st);
        if (err < 0) {
            close(fd);
            goto fail;
        }
        if (ov_is_whiteout(fd, &st)) {
            close(fd);
            break;
        }
        if (lk->top < 0) {
            lk->top = i;
            lk->type = st.st_mode & S_IFMT;
            lk->fd[i] = fd;
            if (!S_ISDIR(st.st_mode) || ov_has_xattr(fd, "opaque", "y")) {
                break;
            }
            continue;
        }
        /* below a directory: only directories merge */
        if (!S_ISDIR(st.st_mode)) {
            close(fd);
            break;
        }
        lk->fd[i] = fd;
        if (ov_has_xattr(fd, "opaque", "y")) {
            break;
        }
    }
    if (lk->top < 0) {
        return -ENOENT;
    }
    err = ov_look_qpath(ob, lk);
    if (err < 0) {
        goto fail;
    }
    return 0;
fail:
    ov_look_close(lk);
    return err;
}

/* Does any lower layer of 'dir' hold 'name' at all (a whiteout too)? */
static bool
ov_lower_has(struct ov_backend *ob, struct be_node *dir, const char *name)
{
    struct stat st;

    for (int i = 1; i < ob->nl; i++) {
        if (dir->fd[i] >= 0 &&
            fstatat(dir->fd[i], name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- nodes ------------------------------------------------------------------- */

static int
ov_node_from(struct be_node *parent, const char *name, struct ov_look *lk,
             struct be_node **out)
{
    struct be_node *n = calloc(1, sizeof(*n));

    if (n == NULL || (n->name = strdup(name)) == NULL) {
        free(n);
        return -ENOMEM;
    }
    atomic_init(&n->ref, 1);
    n->parent = parent;
    if (parent != NULL) {
        atomic_fetch_add(&parent->ref, 1);
    }
    n->type = lk->type;
    n->top = lk->top;
    n->qpath = lk->qpath;
    for (int i = 0; i < OV_NL; i++) {
        n->fd[i] = lk->fd[i];
        lk->fd[i] = -1;
    }
    *out = n;
    return 0;
}

static void
ov_node_get(struct backend *be, struct be_node *n)
{
    (void)be;
    atomic_fetch_add(&n->ref, 1);
}

static void
ov_node_put(struct backend *be, struct be_node *n)
{
    while (n != NULL && atomic_fetch_sub(&n->ref, 1) == 1) {
        struct be_node *p = n->parent;

        for (int i = 0; i < OV_NL; i++) {
            if (n->fd[i] >= 0) {
                close(n->fd[i]);
            }
        }
        free(n->name);
        free(n);
        n = p;
    }
    (void)be;
}

/*
 * The qid of a node: path from its identity (kept on copy-up), version
 * from the serving object's mtime as passthrough does, so it changes when
 * the file does and not when it is copied up (copy-up keeps the times).
 */
static void
ov_fill_qid(const struct be_node *n, struct p9_qid *qid)
{
    struct stat st;

    qid->type = ov_qtype(n->type);
    qid->version = 0;
    if (ov_fstat(n->fd[n->top], &st) == 0) {
        qid->version = becommon_qid_version(st.st_mtim.tv_sec,
                                            (uint32_t)st.st_mtim.tv_nsec);
    }
    qid->path = n->qpath;
}

/*
 * The ancestors of n (n first) that have no upper object, up to the first
 * that has one or the root: a malloc'ed array in *out, its length in *len.
 * A deep chain is walked with a loop, not recursion (a worker's stack is
 * small); lock held.
 */
static int
ov_chain_no_upper(struct be_node *n, struct be_node ***out, size_t *len)
{
    struct be_node **v = NULL;
    size_t nv = 0;
    size_t cap = 0;

    for (struct be_node *c = n; c != NULL && c->fd[0] < 0; c = c->parent) {
        if (nv == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct be_node **g = realloc(v, ncap * sizeof(struct be_node *));

            if (g == NULL) {
                free(v);
                return -ENOMEM;
            }
            v = g;
            cap = ncap;
        }
        v[nv++] = c;
    }
    *out = v;
    *len = nv;
    return 0;
}

/*
 * Another node of the same object may have copied it up: adopt the upper
 * objects of n and its ancestors if they are there now (lock held).
 */
static void
ov_refresh(struct ov_backend *ob, struct be_node *n)
{
    struct be_node **v;
    size_t nv;

    (void)ob;
    if (ov_chain_no_upper(n, &v, &nv) < 0) {
        return;
    }
    /* top down: each from its parent's upper directory */
    for (size_t i = nv; i-- > 0;) {
        struct be_node *c = v[i];
        struct stat st;
        int fd;

        if (c->parent == NULL || c->parent->fd[0] < 0) {
            break;
        }
        fd = openat(c->parent->fd[0], c->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            break;
        }
        if (ov_fstat(fd, &st) < 0 || ov_is_whiteout(fd, &st) ||
            (st.st_mode & S_IFMT) != c->type) {
            close(fd);
            break;
        }
        c->fd[0] = fd;
        c->top = 0;
    }
    free(v);
}

/* ---- copy-up ------------------------------------------------------------------ */

static void
ov_tmpname(struct ov_backend *ob, char buf[64])
{
    snprintf(buf, 64, "#ov-%ld-%llu", (long)getpid(),
             (unsigned long long)++ob->tmpseq);
}

/* Copy every xattr but overlay's own from 'src' (O_PATH) to 'dst' (a
 * path under /proc).  ACLs are xattrs (system.posix_acl_*) and come too. */
static int
ov_copy_xattrs(int src, const char *dstpath)
{
    char path[OV_PROC_MAX];
    char *list = NULL;
    char *val = NULL;
    ssize_t len;
    int err = 0;

    ov_proc(path, src);
    len = listxattr(path, NULL, 0);
    if (len <= 0) {
        return (len < 0 && errno != ENOTSUP) ? -errno : 0;
    }
    list = malloc((size_t)len);
    if (list == NULL) {
        return -ENOMEM;
    }
    len = listxattr(path, list, (size_t)len);
    if (len < 0) {
        err = -errno;
        goto out;
    }
    for (char *name = list; name < list + len; name += strlen(name) + 1) {
        ssize_t vlen;

        if (ov_private_xattr(name)) {
            continue;
        }
        vlen = getxattr(path, name, NULL, 0);
        if (vlen < 0) {
            err = -errno;
            goto out;
        }
        free(val);
        val = malloc((size_t)vlen + 1);
        if (val == NULL) {
            err = -ENOMEM;
            goto out;
        }
        vlen = getxattr(path, name, val, (size_t)vlen);
        if (vlen < 0 || setxattr(dstpath, name, val, (size_t)vlen, 0) < 0) {
            /* security.* can be refused to us on some file systems */
            if (errno == ENOTSUP || errno == EPERM) {
                continue;
            }
            err = -errno;
            goto out;
        }
    }
out:
    free(val);
    free(list);
    return err;
}

static int
ov_copy_data(int in, int out, off_t size)
{
    off_t done = 0;

    if (ioctl(out, FICLONE, in) == 0) {
        return 0;
    }
    while (done < size) {
        ssize_t r =
            copy_file_range(in, NULL, out, NULL, (size_t)(size - done), 0);
        if (r < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                      errno == EOPNOTSUPP)) {
            char buf[65536];

            r = pread(in, buf, sizeof(buf), done);
            if (r > 0 && pwrite(out, buf, (size_t)r, done) != r) {
                return errno ? -errno : -EIO;
            }
            if (r > 0) {
                done += r;
                continue;
            }
        }
        if (r < 0) {
            return -errno;
        }
        if (r == 0) {
            break; /* the lower shrank under us: copy what there is */
        }
        done += r;
    }
    return 0;
}

/*
 * Build a copy of the object 'src' (O_PATH, stat 'st') as 'tmp' in the
 * work directory, owner, mode, times and xattrs included.
 */
static int
ov_copy_to_work(struct ov_backend *ob, int src, const struct stat *st,
                const char *tmp)
{
    char tpath[OV_PROC_MAX + NAME_MAX + 2];
    char wpath[OV_PROC_MAX];
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    int out = -1;
    int in = -1;
    int err = 0;

    ov_proc(wpath, ob->workfd);
    snprintf(tpath, sizeof(tpath), "%s/%s", wpath, tmp);
    switch (st->st_mode & S_IFMT) {
    case S_IFDIR:
        if (mkdirat(ob->workfd, tmp, 0700) < 0) {
            return -errno;
        }
        break;
    case S_IFREG: {
        char spath[OV_PROC_MAX];

        ov_proc(spath, src);
        in = open(spath, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            return -errno;
        }
        out =
            openat(ob->workfd, tmp,
                   O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (out < 0) {
            err = -errno;
            close(in);
            return err;
        }
        err = ov_copy_data(in, out, st->st_size);
        if (err == 0 && fsync(out) < 0) {
            err = -errno;
        }
        close(in);
        if (err < 0) {
            goto fail;
        }
        break;
    }
    case S_IFLNK: {
        char target[PATH_MAX + 1];
        ssize_t len = readlinkat(src, "", target, PATH_MAX);

        if (len < 0) {
            return -errno;
        }
        target[len] = '\0';
        if (symlinkat(target, ob->workfd, tmp) < 0) {
            return -errno;
        }
        if (fchownat(ob->workfd, tmp, st->st_uid, st->st_gid,
                     AT_SYMLINK_NOFOLLOW) < 0 ||
            utimensat(ob->workfd, tmp, ts, AT_SYMLINK_NOFOLLOW) < 0) {
            err = -errno;
            goto fail;
        }
        return 0;
    }
    default:
        if (mknodat(ob->workfd, tmp, st->st_mode & (S_IFMT | 0600),
                    st->st_rdev) < 0) {
            return -errno;
        }
        break;
    }
    err = ov_copy_xattrs(src, tpath);
    if (err < 0) {
        goto fail;
    }
    if (fchownat(ob->workfd, tmp, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) <
            0 &&
        errno != EPERM) {
        err = -errno;
        goto fail;
    }
    /* after chown, which clears set-id bits */
    if (fchmodat(ob->workfd, tmp, st->st_mode & 07777, 0) < 0 ||
        utimensat(ob->workfd, tmp, ts, AT_SYMLINK_NOFOLLOW) < 0) {
        err = -errno;
        goto fail;
    }
    if (out >= 0) {
        close(out);
    }
    return 0;
fail:
    if (out >= 0) {
        close(out);
    }
    unlinkat(ob->workfd, tmp, S_ISDIR(st->st_mode) ? AT_REMOVEDIR : 0);
    return err;
}

/* Give node 'n', whose parent has one, an upper object; lock held. */
static int
ov_copy_up_one(struct ov_backend *ob, struct be_node *n)
{
    char tmp[64];
    struct stat st;
    struct stat ust;
    int fd;
    int err;

    err = ov_fstat(n->fd[n->top], &st);
    if (err < 0) {
        return err;
    }
    ov_tmpname(ob, tmp);
    err = ov_copy_to_work(ob, n->fd[n->top], &st, tmp);
    if (err < 0) {
        return err;
    }
    /* The one step that makes it visible: either the old (lower) object
     * is seen or the complete copy, never a part of it. */
    if (renameat2(ob->workfd, tmp, n->parent->fd[0], n->name,
                  RENAME_NOREPLACE) < 0) {
        err = -errno;
        unlinkat(ob->workfd, tmp, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
        return err;
    }
    fd = openat(n->parent->fd[0], n->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    if (!S_ISDIR(n->type) && ov_fstat(fd, &ust) == 0) {
        ov_qmap_add(ob, ust.st_dev, ust.st_ino, n->qpath);
    }
    n->fd[0] = fd;
    n->top = 0;
    return 0;
}

/* Give node 'n' an upper object, its ancestors first (iteratively: the
 * lower tree may be deep); lock held. */
static int
ov_copy_up(struct ov_backend *ob, struct be_node *n)
{
    struct be_node **v;
    size_t nv;
    int err;

    ov_refresh(ob, n);
    if (n->fd[0] >= 0) {
        return 0;
    }
    err = ov_chain_no_upper(n, &v, &nv);
    if (err < 0) {
        return err;
    }
    if (nv > 0 && v[nv - 1]->parent == NULL) {
        err = -EIO; /* the root always has its upper */
    }
    for (size_t i = nv; err == 0 && i-- > 0;) {
        err = ov_copy_up_one(ob, v[i]);
    }
    free(v);
    return err;
}

/* ---- users ------------------------------------------------------------------- */

/*
 * Layered exports act as the daemon itself (no fsuid switching): access
 * checks are the guest kernel's, as for a guest's own root file system.
 * What a user creates is given to that user (n_uname, else a numeric
 * uname, else root) when the daemon may chown.
 */
static int
ov_user_get(struct backend *be, const char *uname, uint32_t n_uname,
            struct be_user **out)
{
    struct be_user *u = calloc(1, sizeof(*u));

    (void)be;
    if (u == NULL) {
        return -ENOMEM;
    }
    if (n_uname != P9_NONUNAME) {
        u->uid = n_uname;
    } else if (uname != NULL && uname[0] >= '0' && uname[0] <= '9') {
        char *end;
        unsigned long v = strtoul(uname, &end, 10);

        u->uid = (*end == '\0' && v < UINT32_MAX) ? (uid_t)v : 0;
    }
    *out = u;
    return 0;
}

static void
ov_user_put(struct backend *be, struct be_user *u)
{
    (void)be;
    free(u);
}

static int
ov_user_enter(struct backend *be, struct be_user *u)
{
    (void)be;
    ov_cur_uid = u->uid;
    return 0;
}

/* ---- walk ----------------------------------------------------------------------- */

static int
ov_root(struct backend *be, struct be_node **out, struct p9_qid *qid)
{
    struct ov_backend *ob = ov_be(be);
    struct ov_look lk;
    int err;

    for (int i = 0; i < OV_NL; i++) {
        lk.fd[i] = -1;
    }
    for (int i = 0; i < ob->nl; i++) {
        lk.fd[i] = fcntl(ob->rootfd[i], F_DUPFD_CLOEXEC, 0);
        if (lk.fd[i] < 0) {
            err = -errno;
            ov_look_close(&lk);
            return err;
        }
    }
    lk.top = 0;
    lk.type = S_IFDIR;
    pthread_mutex_lock(&ob->lock);
    err = ov_look_qpath(ob, &lk);
    pthread_mutex_unlock(&ob->lock);
    if (err == 0) {
        err = ov_node_from(NULL, "/", &lk, out);
    }
    if (err < 0) {
        ov_look_close(&lk);
        return err;
    }
    ov_fill_qid(*out, qid);
    return 0;
}

static int
ov_walk1(struct backend *be, struct be_node *dir, const char *name,
         struct be_node **out, struct p9_qid *qid)
{
    struct ov_backend *ob = ov_be(be);
    struct ov_look lk;
    int err;

    if (!S_ISDIR(dir->type)) {
        return -ENOTDIR;
    }
    if (strcmp(name, "..") == 0) {
        struct be_node *p;

        pthread_mutex_lock(&ob->lock); /* a rename may move dir */
        p = dir->parent != NULL ? dir->parent : dir;
        ov_node_get(be, p);
        pthread_mutex_unlock(&ob->lock);
        *out = p;
        ov_fill_qid(p, qid);
        return 0;
    }
    pthread_mutex_lock(&ob->lock);
    ov_refresh(ob, dir);
    err = ov_lookup(ob, dir, name, &lk);
    if (err == 0) {
        err = ov_node_from(dir, name, &lk, out);
        if (err < 0) {
            ov_look_close(&lk);
        }
    }
    pthread_mutex_unlock(&ob->lock);
    if (err == 0) {
        ov_fill_qid(*out, qid);
    }
    return err;
}

static int
ov_qid(struct backend *be, struct be_node *n, struct p9_qid *qid)
{
    (void)be;
    ov_fill_qid(n, qid);
    return 0;
}

/* ---- attributes ------------------------------------------------------------------- */

static int
ov_getattr(struct backend *be, struct be_node *n, struct be_handle *h,
           uint64_t request_mask, struct p9_rgetattr *out)
{
    struct ov_backend *ob = ov_be(be);
    struct statx stx;
    int rc;

    (void)request_mask;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ob->lock);
    ov_refresh(ob, n);
    if (h != NULL && h->fd >= 0 && !S_ISDIR(n->type)) {
        rc = statx(h->fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME,
                   &stx);
    } else {
        rc = statx(n->fd[n->top], "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
                   STATX_BASIC_STATS | STATX_BTIME, &stx);
    }
    if (rc < 0) {
        rc = -errno;
    }
    pthread_mutex_unlock(&ob->lock);
    if (rc < 0) {
        return rc;
    }
    becommon_statx_to_rgetattr(&stx, out);
    /* the qid from the same snapshot */
    out->qid.type = ov_qtype(n->type);
    out->qid.version =
        becommon_qid_version(stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec);
    out->qid.path = n->qpath;
    return 0;
}

static void
ov_ts(uint32_t valid, uint32_t now_bit, uint32_t set_bit, uint64_t sec,
      uint64_t nsec, struct timespec *ts)
{
    if (!(valid & now_bit)) {
        ts->tv_nsec = UTIME_OMIT;
    } else if (valid & set_bit) {
        ts->tv_sec = (time_t)sec;
        ts->tv_nsec = (long)nsec;
    } else {
        ts->tv_nsec = UTIME_NOW;
    }
}

static int
ov_setattr(struct backend *be, struct be_node *n, struct be_handle *h,
           const struct p9_tsetattr *in)
{
    struct ov_backend *ob = ov_be(be);
    char path[OV_PROC_MAX];
    int fd;
    int err;

    (void)h;
    pthread_mutex_lock(&ob->lock);
    err = ov_copy_up(ob, n);
    fd = n->fd[0];
    pthread_mutex_unlock(&ob->lock);
    if (err < 0) {
        return err;
    }
    ov_proc(path, fd);
    if ((in->valid & P9_SETATTR_MODE) && !S_ISLNK(n->type) &&
        chmod(path, in->mode & 07777) < 0) {
        return -errno;
    }
    if ((in->valid & (P9_SETATTR_UID | P9_SETATTR_GID)) &&
        fchownat(fd, "", (in->valid & P9_SETATTR_UID) ? in->uid : (uid_t)-1,
                 (in->valid & P9_SETATTR_GID) ? in->gid : (gid_t)-1,
                 AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
        return -errno;
    }
    if (in->valid & P9_SETATTR_SIZE) {
        if (!S_ISREG(n->type)) {
            return S_ISDIR(n->type) ? -EISDIR : -EINVAL;
        }
        if (truncate(path, (off_t)in->size) < 0) {
            return -errno;
        }
    }
    if ((in->valid & (P9_SETATTR_ATIME | P9_SETATTR_MTIME)) &&
        !S_ISLNK(n->type)) {
        struct timespec ts[2];

        ov_ts(in->valid, P9_SETATTR_ATIME, P9_SETATTR_ATIME_SET, in->atime_sec,
              in->atime_nsec, &ts[0]);
        ov_ts(in->valid, P9_SETATTR_MTIME, P9_SETATTR_MTIME_SET, in->mtime_sec,
              in->mtime_nsec, &ts[1]);
        if (utimensat(AT_FDCWD, path, ts, 0) < 0) {
            return -errno;
        }
    }
    return 0;
}

static int
ov_statfs(struct backend *be, struct be_node *n, struct p9_rstatfs *out)
{
    struct ov_backend *ob = ov_be(be);
    struct statfs sf;

    (void)n;
    if (fstatfs(ob->rootfd[0], &sf) < 0) {
        return -errno;
    }
    memset(out, 0, sizeof(*out));
    out->type = 0x794c7630; /* OVERLAYFS_SUPER_MAGIC */
    out->bsize = (uint32_t)sf.f_bsize;
    out->blocks = sf.f_blocks;
    out->bfree = sf.f_bfree;
    out->bavail = sf.f_bavail;
    out->files = sf.f_files;
    out->ffree = sf.f_ffree;
    out->fsid = 0;
    out->namelen = (uint32_t)sf.f_namelen;
    return 0;
}

static ssize_t
ov_readlink(struct backend *be, struct be_node *n, char *buf, size_t size)
{
    struct ov_backend *ob = ov_be(be);
    ssize_t len;

    if (!S_ISLNK(n->type)) {
        return -EINVAL;
    }
    pthread_mutex_lock(&ob->lock);
    ov_refresh(ob, n);
    len = readlinkat(n->fd[n->top], "", buf, size);
    if (len < 0) {
        len = -errno;
    }
    pthread_mutex_unlock(&ob->lock);
    return len;
}

/* ---- directories ------------------------------------------------------------------ */

/* One entry of one layer of a merged directory. */
struct ov_raw {
    char *name;
    int layer;
    uint8_t dtype;
    ino_t ino;
};

static int
ov_rawcmp(const void *a, const void *b)
{
    const struct ov_raw *x = a;
    const struct ov_raw *y = b;
    int c = strcmp(x->name, y->name);

    return c != 0 ? c : x->layer - y->layer;
}

static void
ov_free_raw(struct ov_raw *raw, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(raw[i].name);
    }
    free(raw);
}

/* Every entry of every layer of 'dir' (with d_type and d_ino). */
static int
ov_layer_entries(struct ov_backend *ob, struct be_node *dir,
                 struct ov_raw **out, size_t *count)
{
    struct ov_raw *raw = NULL;
    size_t n = 0;
    size_t cap = 0;
    int err = 0;

    for (int i = 0; i < ob->nl; i++) {
        struct dirent *de;
        DIR *d;
        int fd;

        if (dir->fd[i] < 0) {
            continue;
        }
        fd = openat(dir->fd[i], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            err = -errno;
            goto fail;
        }
        d = fdopendir(fd);
        if (d == NULL) {
            err = -errno;
            close(fd);
            goto fail;
        }
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
                continue;
            }
            if (n == cap) {
                struct ov_raw *nr;

                cap = cap ? cap * 2 : 64;
                nr = realloc(raw, cap * sizeof(*raw));
                if (nr == NULL) {
                    err = -ENOMEM;
                    closedir(d);
                    goto fail;
                }
                raw = nr;
            }
            raw[n].name = strdup(de->d_name);
            if (raw[n].name == NULL) {
                err = -ENOMEM;
                closedir(d);
                goto fail;
            }
            raw[n].layer = i;
            raw[n].dtype = de->d_type;
            raw[n].ino = de->d_ino;
            n++;
        }
        closedir(d);
    }
    if (n > 0) {
        qsort(raw, n, sizeof(*raw), ov_rawcmp);
    }
    *out = raw;
    *count = n;
    return 0;
fail:
    ov_free_raw(raw, n);
    return err;
}

/* The type of a raw entry, a stat when the file system gave no d_type. */
static mode_t
ov_raw_type(struct be_node *dir, const struct ov_raw *r, struct stat *st,
            bool *have_st)
{
    *have_st = false;
    if (r->dtype != DT_UNKNOWN) {
        return DTTOIF(r->dtype);
    }
    if (fstatat(dir->fd[r->layer], r->name, st, AT_SYMLINK_NOFOLLOW) < 0) {
        return 0;
    }
    *have_st = true;
    return st->st_mode & S_IFMT;
}

/*
 * Does 'name' in layer directory 'dirfd' carry an overlay.whiteout xattr
 * (either prefix)?  One llistxattr through the directory's /proc link,
 * not openat + fstat + two getxattr + close: readdir asks this for every
 * empty file of every layer.  The final name is not followed.
 */
static bool
ov_xwhiteout_at(int dirfd, const char *name)
{
    char path[OV_PROC_MAX + NAME_MAX + 2];
    char list[1024];
    ssize_t len;

    snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, name);
    len = llistxattr(path, list, sizeof(list));
    if (len < 0 && errno == ERANGE) {
        /* many xattrs: ask for the two names themselves */
        return lgetxattr(path, "trusted.overlay.whiteout", NULL, 0) >= 0 ||
               lgetxattr(path, "user.overlay.whiteout", NULL, 0) >= 0;
    }
    for (ssize_t i = 0; i < len;) {
        const char *x = list + i;

        if (strcmp(x, "trusted.overlay.whiteout") == 0 ||
            strcmp(x, "user.overlay.whiteout") == 0) {
            return true;
        }
        i += (ssize_t)strnlen(x, (size_t)(len - i)) + 1;
    }
    return false;
}

/* Is raw entry 'r' a whiteout?  Only character devices and (the xattr
 * form) empty regular files and fifos need a look: one fstatat for a
 * device or a regular file, one llistxattr for an empty file or fifo. */
static bool
ov_raw_whiteout(struct be_node *dir, const struct ov_raw *r, mode_t type)
{
    struct stat st;

    if (!S_ISCHR(type) && !S_ISREG(type) && !S_ISFIFO(type)) {
        return false;
    }
    if (!S_ISFIFO(type)) {
        if (fstatat(dir->fd[r->layer], r->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            return false;
        }
        if (S_ISCHR(st.st_mode)) {
            return st.st_rdev == makedev(0, 0);
        }
        if (!S_ISREG(st.st_mode) || st.st_size != 0) {
            return false;
        }
    }
    return ov_xwhiteout_at(dir->fd[r->layer], r->name);
}

/*
 * The merged listing of 'dir' (lock held), made once per open handle so
 * offsets (index + 1) resume exactly whatever changes meanwhile.  One
 * pass over every layer's entries sorted by (name, layer): the topmost
 * entry of a name decides (a whiteout hides it); qids follow the walk's
 * rule from d_ino (a merged directory: its topmost lower directory).
 */
static int
ov_list(struct ov_backend *ob, struct be_node *dir, struct ov_dent **out,
        size_t *count)
{
    struct ov_dent *ents;
    struct ov_raw *raw = NULL;
    dev_t devs[OV_NL];
    size_t n = 0;
    size_t k = 0;
    int err;

    for (int i = 0; i < ob->nl; i++) {
        struct stat st;

        devs[i] =
            (dir->fd[i] >= 0 && ov_fstat(dir->fd[i], &st) == 0) ? st.st_dev : 0;
    }
    err = ov_layer_entries(ob, dir, &raw, &n);
    if (err < 0) {
        return err;
    }
    ents = calloc(n + 2, sizeof(*ents));
    if (ents == NULL) {
        ov_free_raw(raw, n);
        return -ENOMEM;
    }
    for (int i = 0; i < 2; i++) {
        struct be_node *d = (i == 1 && dir->parent) ? dir->parent : dir;

        ents[k].name = strdup(i == 0 ? "." : "..");
        ents[k].type = DT_DIR;
        ov_fill_qid(d, &ents[k].qid);
        if (ents[k].name == NULL) {
            err = -ENOMEM;
            goto fail;
        }
        k++;
    }
    for (size_t i = 0; i < n;) {
        size_t end = i + 1;
        struct ov_raw *top = &raw[i];
        struct ov_raw *id = top;
        struct stat st;
        bool have_st;
        mode_t type;

        while (end < n && strcmp(raw[end].name, top->name) == 0) {
            end++;
        }
        type = ov_raw_type(dir, top, &st, &have_st);
        if (type == 0 || ov_raw_whiteout(dir, top, type)) {
            i = end;
            continue;
        }
        if (S_ISDIR(type) && end > i + 1) {
            /* a merged directory takes its topmost lower directory's
             * identity, unless it is opaque */
            int fd = -1;
            bool opaque = false;

            if (top->layer == 0) {
                fd = openat(dir->fd[0], top->name,
                            O_PATH | O_NOFOLLOW | O_CLOEXEC);
                opaque = fd >= 0 && ov_has_xattr(fd, "opaque", "y");
                if (fd >= 0) {
                    close(fd);
                }
            }
            if (!opaque && top->layer == 0) {
                struct stat lst;
                bool lhave;
                mode_t lt = ov_raw_type(dir, &raw[i + 1], &lst, &lhave);

                if (S_ISDIR(lt)) {
                    id = &raw[i + 1];
                }
            }
        }
        ents[k].name = top->name;
        top->name = NULL;
        ents[k].type = ov_dtype(type);
        ents[k].qid.type = ov_qtype(type);
        if (id->layer != 0 ||
            !ov_qmap_find(ob, devs[0], id->ino, &ents[k].qid.path)) {
            ents[k].qid.path = ov_qpath_of(ob, devs[id->layer], id->ino);
        }
        k++;
        i = end;
    }
    ov_free_raw(raw, n);
    *out = ents;
    *count = k;
    return 0;
fail:
    for (size_t i = 0; i < k; i++) {
        free(ents[i].name);
    }
    free(ents);
    ov_free_raw(raw, n);
    return err;
}

static void
ov_free_ents(struct ov_dent *ents, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ents[i].name);
    }
    free(ents);
}

/* Merged-empty: nothing visible in it. */
static int
ov_dir_empty(struct ov_backend *ob, struct be_node *dir)
{
    struct ov_dent *ents;
    size_t n;
    int err = ov_list(ob, dir, &ents, &n);

    if (err < 0) {
        return err;
    }
    ov_free_ents(ents, n);
    return n > 2 ? -ENOTEMPTY : 0;
}

/* Remove the whiteouts an upper directory about to go may hold. */
static int
ov_clear_whiteouts(int dirfd)
{
    struct dirent *de;
    DIR *d;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = 0;

    if (fd < 0) {
        return -errno;
    }
    d = fdopendir(fd);
    if (d == NULL) {
        err = -errno;
        close(fd);
        return err;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        /* the caller checked it is merged-empty: only whiteouts remain */
        if (unlinkat(fd, de->d_name, 0) < 0) {
            err = -errno;
            break;
        }
    }
    closedir(d);
    return err;
}

static int
ov_readdir(struct backend *be, struct be_handle *h, uint64_t offset,
           be_dirent_fn *fn, void *ctx)
{
    struct ov_backend *ob = ov_be(be);

    if (!S_ISDIR(h->n->type)) {
        return -ENOTDIR;
    }
    if (!h->listed) {
        uint64_t bytes = 0;
        int err;

        pthread_mutex_lock(&ob->lock);
        ov_refresh(ob, h->n);
        err = ov_list(ob, h->n, &h->ents, &h->nents);
        pthread_mutex_unlock(&ob->lock);
        if (err < 0) {
            return err;
        }
        for (size_t i = 0; i < h->nents; i++) {
            bytes += sizeof(h->ents[i]) + strlen(h->ents[i].name) + 1;
        }
        /* kept between requests: the session pays for it, or it fails */
        if (!be_budget_charge(h->mem, bytes)) {
            ov_free_ents(h->ents, h->nents);
            h->ents = NULL;
            h->nents = 0;
            return -ENOMEM;
        }
        h->charged = bytes;
        h->listed = true;
    }
    for (uint64_t i = offset; i < h->nents; i++) {
        const struct ov_dent *e = &h->ents[i];

        if (fn(ctx, &e->qid, i + 1, e->type, e->name, strlen(e->name)) != 0) {
            break;
        }
    }
    return 0;
}

/* ---- open files ------------------------------------------------------------------- */

static int
ov_oflags(uint32_t flags, int *out)
{
    int f;

    switch (flags & 3u) {
    case P9_DOTL_RDONLY: f = O_RDONLY; break;
    case P9_DOTL_WRONLY: f = O_WRONLY; break;
    case P9_DOTL_RDWR: f = O_RDWR; break;
    default: return -EINVAL;
    }
    if (flags & P9_DOTL_TRUNC) {
        f |= O_TRUNC;
    }
    if (flags & P9_DOTL_APPEND) {
        f |= O_APPEND;
    }
    if (flags & P9_DOTL_DSYNC) {
        f |= O_DSYNC;
    }
    if (flags & P9_DOTL_SYNC) {
        f |= O_SYNC;
    }
    *out = f | O_CLOEXEC;
    return 0;
}

static bool
ov_writes(int oflags)
{
    return (oflags & O_ACCMODE) != O_RDONLY || (oflags & O_TRUNC);
}

static int
ov_open(struct backend *be, struct be_node *n, uint32_t flags,
        struct be_handle **out, struct p9_qid *qid, uint32_t *iounit)
{
    struct ov_backend *ob = ov_be(be);
    bool nowait = (flags & BE_OPEN_NOWAIT) != 0;
    char path[OV_PROC_MAX];
    struct be_handle *h;
    int oflags;
    int err;
    int fd;

    err = ov_oflags(flags, &oflags);
    if (err < 0) {
        return err;
    }
    if (!S_ISREG(n->type) && !S_ISDIR(n->type)) {
        return S_ISLNK(n->type) ? -ELOOP : -EPERM;
    }
    if (S_ISDIR(n->type) && ov_writes(oflags)) {
        return -EISDIR;
    }
    if (nowait && (oflags & O_TRUNC)) {
        return -EAGAIN; /* a truncation may take long */
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return -ENOMEM;
    }
    h->fd = -1;
    pthread_mutex_init(&h->lock_mu, NULL);
    /* BE_OPEN_NOWAIT: not behind a copy-up, and none of our own */
    if (!nowait) {
        pthread_mutex_lock(&ob->lock);
    } else if (pthread_mutex_trylock(&ob->lock) != 0) {
        free(h);
        return -EAGAIN;
    }
    if (ov_writes(oflags) && nowait && n->top != 0) {
        err = -EAGAIN;
    } else if (ov_writes(oflags)) {
        err = ov_copy_up(ob, n);
    } else {
        ov_refresh(ob, n);
    }
    /* a lower object is only ever opened read-only */
    fd = n->fd[n->top];
    if (err == 0 && n->top != 0 && ov_writes(oflags)) {
        err = -EROFS;
    }
    pthread_mutex_unlock(&ob->lock);
    if (err < 0) {
        free(h);
        return err;
    }
    if (S_ISREG(n->type)) {
        ov_proc(path, fd);
        h->fd = becommon_open_file(path, oflags, nowait);
        if (h->fd < 0) {
            err = h->fd;
            free(h);
            return err;
        }
    }
    h->n = n;
    ov_node_get(be, n);
    *out = h;
    ov_fill_qid(n, qid);
    *iounit = 0;
    return 0;
}

static void
ov_close(struct backend *be, struct be_handle *h)
{
    if (h->fd >= 0) {
        close(h->fd);
    }
    ov_free_ents(h->ents, h->nents);
    be_budget_uncharge(h->mem, h->charged);
    be_budget_uncharge(h->locks, h->nlocks);
    be_budget_uncharge(h->fds, 1);
    pthread_mutex_destroy(&h->lock_mu);
    ov_node_put(be, h->n);
    free(h);
}

/* ---- locks: OFD locks on the open file ---------------------------------------- */

static int
ov_lock(struct backend *be, struct be_handle *h, const struct p9_tlock *in,
        uint8_t *status)
{
    struct flock fl;
    int err;

    (void)be;
    *status = P9_LOCK_ERROR;
    if (h->fd < 0) {
        return -EBADF;
    }
    err = becommon_flock(in->type, in->start, in->length, &fl);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&h->lock_mu);
    /* every lock taken may add records (an unlock may split one): charge
     * one for each until a whole-file unlock lets all of them go */
    if (!be_budget_charge(h->locks, 1)) {
        pthread_mutex_unlock(&h->lock_mu);
        return -ENOLCK;
    }
    if (fcntl(h->fd, F_OFD_SETLK, &fl) < 0) {
        err = -errno;
        be_budget_uncharge(h->locks, 1);
        if (err == -EAGAIN || err == -EACCES) {
            *status = P9_LOCK_BLOCKED;
            err = 0;
        }
    } else {
        h->nlocks++;
        if (fl.l_type == F_UNLCK && in->start == 0 && in->length == 0) {
            be_budget_uncharge(h->locks, h->nlocks);
            h->nlocks = 0;
        }
        *status = P9_LOCK_SUCCESS;
    }
    pthread_mutex_unlock(&h->lock_mu);
    return err;
}

static int
ov_getlock(struct backend *be, struct be_handle *h,
           const struct p9_tgetlock *in, struct p9_rgetlock *out)
{
    struct flock fl;
    int err;

    (void)be;
    if (h->fd < 0) {
        return -EBADF;
    }
    err = becommon_flock(in->type, in->start, in->length, &fl);
    if (err < 0) {
        return err;
    }
    if (fl.l_type == F_UNLCK) {
        fl.l_type = F_WRLCK; /* the Linux client asks with UNLCK */
    }
    if (fcntl(h->fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    memset(out, 0, sizeof(*out));
    out->client_id.s = "";
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
    out->proc_id = (uint32_t)fl.l_pid;
    return 0;
}

/* The overlay never reclaims descriptors: every open file is one unit of
 * the session's descriptor budget (a directory holds none between
 * requests). */
static int
ov_handle_limits(struct backend *be, struct be_handle *h,
                 const struct be_limits *lim)
{
    (void)be;
    if (h->fd >= 0) {
        if (!be_budget_charge(lim->fds, 1)) {
            return -EMFILE;
        }
        h->fds = lim->fds;
    }
    h->mem = lim->mem;
    h->locks = lim->locks;
    return 0;
}

static ssize_t
ov_read(struct backend *be, struct be_handle *h, const struct iovec *iov,
        int iovcnt, uint64_t off)
{
    ssize_t r;

    (void)be;
    if (h->fd < 0) {
        return -EISDIR;
    }
    r = preadv(h->fd, iov, iovcnt, (off_t)off);
    return r < 0 ? -errno : r;
}

/* be_ops.read_fd: the open regular file's descriptor, as ov_read uses it
 * (a file opened for reading stays on the layer it was opened on). */
static ssize_t
ov_read_fd(struct backend *be, struct be_handle *h, uint64_t off, size_t count,
           be_fd_sink *sink, void *arg)
{
    (void)be;
    if (h->fd < 0 || !S_ISREG(h->n->type) || off > (uint64_t)INT64_MAX) {
        return -ENOTSUP; /* read says why */
    }
    return sink(arg, h->fd, off, count);
}

static ssize_t
ov_write(struct backend *be, struct be_handle *h, const struct iovec *iov,
         int iovcnt, uint64_t off)
{
    ssize_t r;

    (void)be;
    if (h->fd < 0) {
        return -EISDIR;
    }
    r = pwritev(h->fd, iov, iovcnt, (off_t)off);
    return r < 0 ? -errno : r;
}

static int
ov_fsync(struct backend *be, struct be_handle *h, bool datasync)
{
    (void)be;
    if (h->fd < 0) {
        return 0;
    }
    if ((datasync ? fdatasync(h->fd) : fsync(h->fd)) < 0) {
        return -errno;
    }
    return 0;
}

/* ---- namespace ---------------------------------------------------------------------- */

static int ov_set_xattr_str(struct ov_backend *ob, int fd, const char *what,
                            const char *val);

/* Write a whiteout named 'tmp' in the work directory, to be moved into
 * upper directory 'parentfd'. */
static int
ov_make_whiteout(struct ov_backend *ob, const char *tmp, int parentfd)
{
    char path[OV_PROC_MAX + NAME_MAX + 2];
    char name[64];
    int fd;

    if (mknodat(ob->workfd, tmp, S_IFCHR | 0000, makedev(0, 0)) == 0) {
        return 0;
    }
    if (errno != EPERM) {
        return -errno;
    }
    /* Without CAP_MKNOD: the xattr form (kernel 6.7+, userxattr) */
    fd = openat(ob->workfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    close(fd);
    ov_proc(path, ob->workfd);
    snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", tmp);
    snprintf(name, sizeof(name), "%swhiteout", ob->xprefix);
    if (setxattr(path, name, "", 0, 0) < 0) {
        int err = -errno;

        unlinkat(ob->workfd, tmp, 0);
        return err;
    }
    /*
     * Kernels since 6.7 look for xattr whiteouts only in a directory whose
     * overlay.opaque is "x" (it may hold them; "y" stays opaque): mark the
     * parent, so `mount -t overlay` on the host sees this whiteout too.
     */
    if (!ov_has_xattr(parentfd, "opaque", "y")) {
        int err = ov_set_xattr_str(ob, parentfd, "opaque", "x");

        if (err < 0) {
            unlinkat(ob->workfd, tmp, 0);
            return err;
        }
    }
    return 0;
}

static int
ov_set_xattr_str(struct ov_backend *ob, int fd, const char *what,
                 const char *val)
{
    char path[OV_PROC_MAX];
    char name[64];

    ov_proc(path, fd);
    snprintf(name, sizeof(name), "%s%s", ob->xprefix, what);
    if (setxattr(path, name, val, strlen(val), 0) < 0) {
        return -errno;
    }
    return 0;
}

static int
ov_set_opaque(struct ov_backend *ob, int fd)
{
    return ov_set_xattr_str(ob, fd, "opaque", "y");
}

enum ov_kind { OV_FILE, OV_DIR, OV_SYMLINK, OV_NOD, OV_LINK };

struct ov_mk {
    enum ov_kind kind;
    uint32_t mode;
    dev_t rdev;
    const char *target; /* symlink */
    int linkfd;         /* link: O_PATH of the upper object */
    uint32_t gid;
};

static int
ov_mk_at(int dfd, const char *name, const struct ov_mk *m)
{
    char path[OV_PROC_MAX];
    int fd;

    switch (m->kind) {
    case OV_FILE:
        fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                    m->mode & 07777);
        if (fd < 0) {
            return -errno;
        }
        close(fd);
        break;
    case OV_DIR:
        if (mkdirat(dfd, name, m->mode & 07777) < 0) {
            return -errno;
        }
        break;
    case OV_SYMLINK:
        if (symlinkat(m->target, dfd, name) < 0) {
            return -errno;
        }
        break;
    case OV_NOD:
        if (mknodat(dfd, name, m->mode, m->rdev) < 0) {
            return -errno;
        }
        break;
    case OV_LINK:
        ov_proc(path, m->linkfd);
        if (linkat(AT_FDCWD, path, dfd, name, AT_SYMLINK_FOLLOW) < 0) {
            return -errno;
        }
        return 0;
    }
    if (geteuid() == 0) {
        /* best effort: the daemon owns what it makes otherwise */
        if (fchownat(dfd, name, ov_cur_uid,
                     m->gid != OV_NOGID ? m->gid : (gid_t)-1,
                     AT_SYMLINK_NOFOLLOW) < 0) {
            errno = 0;
        }
    }
    return 0;
}

/*
 * Make a new object 'name' in merged directory 'dir' (lock held): in the
 * upper directly, or, over a whiteout, in the work directory and then
 * exchanged with the whiteout (a directory made there is opaque).
 */
static int
ov_mk(struct ov_backend *ob, struct be_node *dir, const char *name,
      const struct ov_mk *m, struct ov_look *res)
{
    struct ov_look lk;
    struct stat st;
    char tmp[64];
    int err;

    ov_refresh(ob, dir);
    err = ov_lookup(ob, dir, name, &lk);
    if (err == 0) {
        ov_look_close(&lk);
        return -EEXIST;
    }
    if (err != -ENOENT) {
        return err;
    }
    err = ov_copy_up(ob, dir);
    if (err < 0) {
        return err;
    }
    if (fstatat(dir->fd[0], name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        /* nothing there in the upper */
        err = ov_mk_at(dir->fd[0], name, m);
        if (err < 0) {
            return err;
        }
        if (m->kind == OV_DIR && ov_lower_has(ob, dir, name)) {
            /* only reachable under an opaque parent; keep it opaque too */
            int fd = openat(dir->fd[0], name, O_PATH | O_NOFOLLOW | O_CLOEXEC);

            if (fd >= 0) {
                err = ov_set_opaque(ob, fd);
                close(fd);
            }
        }
    } else {
        /* a whiteout */
        ov_tmpname(ob, tmp);
        err = ov_mk_at(ob->workfd, tmp, m);
        if (err < 0) {
            return err;
        }
        if (m->kind == OV_DIR) {
            int fd = openat(ob->workfd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);

            err = fd < 0 ? -errno : ov_set_opaque(ob, fd);
            if (fd >= 0) {
                close(fd);
            }
        }
        if (err == 0 &&
            renameat2(ob->workfd, tmp, dir->fd[0], name, RENAME_EXCHANGE) < 0) {
            err = -errno;
        }
        if (err < 0) {
            unlinkat(ob->workfd, tmp, m->kind == OV_DIR ? AT_REMOVEDIR : 0);
            return err;
        }
        unlinkat(ob->workfd, tmp, 0); /* the old whiteout */
    }
    if (err < 0) {
        return err;
    }
    return ov_lookup(ob, dir, name, res);
}

static int
ov_create(struct backend *be, struct be_node *dir, const char *name,
          uint32_t flags, uint32_t mode, uint32_t gid,
          struct be_node **node_out, struct be_handle **out, struct p9_qid *qid,
          uint32_t *iounit)
{
    struct ov_backend *ob = ov_be(be);
    struct ov_mk m = {.kind = OV_FILE, .mode = mode, .gid = gid};
    struct be_node *n = NULL;
    struct ov_look lk;
    int err;

    if (flags & BE_OPEN_NOWAIT) {
        return -EAGAIN; /* creates run on a worker (ob->lock may wait) */
    }
    pthread_mutex_lock(&ob->lock);
    err = ov_mk(ob, dir, name, &m, &lk);
    if (err == 0) {
        err = ov_node_from(dir, name, &lk, &n);
        if (err < 0) {
            ov_look_close(&lk);
        }
    }
    pthread_mutex_unlock(&ob->lock);
    if (err < 0) {
        return err;
    }
    if (n == NULL) {
        return -EIO; /* ov_node_from sets it on success */
    }
    err = ov_open(be, n, flags & ~(uint32_t)P9_DOTL_TRUNC, out, qid, iounit);
    if (err < 0) {
        ov_node_put(be, n);
        return err;
    }
    *node_out = n;
    return 0;
}

static int
ov_mk_simple(struct backend *be, struct be_node *dir, const char *name,
             const struct ov_mk *m, struct p9_qid *qid)
{
    struct ov_backend *ob = ov_be(be);
    struct ov_look lk;
    int err;

    memset(&lk, 0, sizeof(lk)); /* ov_mk fills it on success */
    pthread_mutex_lock(&ob->lock);
    err = ov_mk(ob, dir, name, m, &lk);
    pthread_mutex_unlock(&ob->lock);
    if (err < 0) {
        return err;
    }
    if (qid != NULL) {
        qid->type = ov_qtype(lk.type);
        qid->version = 0;
        qid->path = lk.qpath;
    }
    ov_look_close(&lk);
    return 0;
}

static int
ov_mkdir(struct backend *be, struct be_node *dir, const char *name,
         uint32_t mode, uint32_t gid, struct p9_qid *qid)
{
    struct ov_mk m = {.kind = OV_DIR, .mode = mode, .gid = gid};

    return ov_mk_simple(be, dir, name, &m, qid);
}

static int
ov_mknod(struct backend *be, struct be_node *dir, const char *name,
         uint32_t mode, uint32_t major, uint32_t minor, uint32_t gid,
         struct p9_qid *qid)
{
    struct ov_mk m = {.kind = OV_NOD,
                      .mode = mode,
                      .rdev = makedev(major, minor),
                      .gid = gid};

    if ((S_ISCHR(mode) || S_ISBLK(mode)) && major == 0 && minor == 0) {
        return -EPERM; /* that is a whiteout on disk */
    }
    return ov_mk_simple(be, dir, name, &m, qid);
}

static int
ov_symlink(struct backend *be, struct be_node *dir, const char *name,
           const char *target, uint32_t gid, struct p9_qid *qid)
{
    struct ov_mk m = {.kind = OV_SYMLINK, .target = target, .gid = gid};

    return ov_mk_simple(be, dir, name, &m, qid);
}

static int
ov_link(struct backend *be, struct be_node *dir, const char *name,
        struct be_node *target)
{
    struct ov_backend *ob = ov_be(be);
    struct ov_mk m = {.kind = OV_LINK, .gid = OV_NOGID};
    struct ov_look lk;
    int err;

    if (S_ISDIR(target->type)) {
        return -EPERM;
    }
    pthread_mutex_lock(&ob->lock);
    err = ov_copy_up(ob, target);
    if (err == 0) {
        m.linkfd = target->fd[0];
        err = ov_mk(ob, dir, name, &m, &lk);
        if (err == 0) {
            ov_look_close(&lk);
        }
    }
    pthread_mutex_unlock(&ob->lock);
    return err;
}

/* Remove 'name' from merged 'dir' (lock held). */
static int
ov_unlink_locked(struct ov_backend *ob, struct be_node *dir, const char *name,
                 uint32_t flags)
{
    struct be_node *child = NULL;
    struct ov_look lk;
    bool isdir;
    bool lower;
    char tmp[64];
    int err;

    ov_refresh(ob, dir);
    err = ov_lookup(ob, dir, name, &lk);
    if (err < 0) {
        return err;
    }
    isdir = S_ISDIR(lk.type);
    /* a lookup stops at the top non-directory: ask the lowers directly */
    lower = ov_lower_has(ob, dir, name);
    if ((flags & P9_DOTL_AT_REMOVEDIR) && !isdir) {
        ov_look_close(&lk);
        return -ENOTDIR;
    }
    if (!(flags & P9_DOTL_AT_REMOVEDIR) && isdir) {
        ov_look_close(&lk);
        return -EISDIR;
    }
    err = ov_node_from(NULL, name, &lk, &child);
    if (err < 0) {
        ov_look_close(&lk);
        return err;
    }
    if (isdir) {
        err = ov_dir_empty(ob, child);
        if (err == 0 && child->fd[0] >= 0) {
            err = ov_clear_whiteouts(child->fd[0]);
        }
        if (err < 0) {
            goto out;
        }
    }
    if (!lower) {
        if (unlinkat(dir->fd[0], name, isdir ? AT_REMOVEDIR : 0) < 0) {
            err = -errno;
        }
        goto out;
    }
    err = ov_copy_up(ob, dir);
    if (err < 0) {
        goto out;
    }
    ov_tmpname(ob, tmp);
    err = ov_make_whiteout(ob, tmp, dir->fd[0]);
    if (err < 0) {
        goto out;
    }
    if (child->fd[0] >= 0) {
        if (renameat2(ob->workfd, tmp, dir->fd[0], name, RENAME_EXCHANGE) < 0) {
            err = -errno;
            unlinkat(ob->workfd, tmp, 0);
            goto out;
        }
        unlinkat(ob->workfd, tmp, isdir ? AT_REMOVEDIR : 0);
    } else if (renameat2(ob->workfd, tmp, dir->fd[0], name, RENAME_NOREPLACE) <
               0) {
        err = -errno;
        unlinkat(ob->workfd, tmp, 0);
    }
out:
    ov_node_put(&ob->be, child);
    return err;
}

static int
ov_unlinkat(struct backend *be, struct be_node *dir, const char *name,
            uint32_t flags)
{
    struct ov_backend *ob = ov_be(be);
    int err;

    pthread_mutex_lock(&ob->lock);
    err = ov_unlink_locked(ob, dir, name, flags);
    pthread_mutex_unlock(&ob->lock);
    return err;
}

static int
ov_remove(struct backend *be, struct be_node *n)
{
    struct ov_backend *ob = ov_be(be);
    int err = -EBUSY;

    pthread_mutex_lock(&ob->lock);
    if (n->parent != NULL) {
        err = ov_unlink_locked(ob, n->parent, n->name,
                               S_ISDIR(n->type) ? P9_DOTL_AT_REMOVEDIR : 0);
    }
    pthread_mutex_unlock(&ob->lock);
    return err;
}

static int
ov_rename_locked(struct ov_backend *ob, struct be_node *od, const char *on,
                 struct be_node *nd, const char *nn)
{
    struct be_node *src = NULL;
    struct be_node *dst = NULL;
    struct ov_look lk;
    bool src_lower;
    bool dst_lower;
    bool merged;
    int err;

    ov_refresh(ob, od);
    ov_refresh(ob, nd);
    err = ov_lookup(ob, od, on, &lk);
    if (err < 0) {
        return err;
    }
    src_lower = ov_lower_has(ob, od, on);
    merged = lk.top > 0;
    for (int i = 1; i < ob->nl; i++) {
        merged = merged || lk.fd[i] >= 0;
    }
    /* a pure upper directory (an opaque one too) moves; a merged or
     * lower one would need redirect_dir */
    if (S_ISDIR(lk.type) && merged) {
        /* no redirect_dir: as overlayfs by default, the client copies */
        ov_look_close(&lk);
        return -EXDEV;
    }
    err = ov_node_from(od, on, &lk, &src);
    if (err < 0) {
        ov_look_close(&lk);
        return err;
    }
    if (od == nd && strcmp(on, nn) == 0) {
        goto out;
    }
    err = ov_lookup(ob, nd, nn, &lk);
    if (err == 0) {
        err = ov_node_from(nd, nn, &lk, &dst);
        if (err < 0) {
            ov_look_close(&lk);
            goto out;
        }
        if (S_ISDIR(dst->type) && !S_ISDIR(src->type)) {
            err = -EISDIR;
        } else if (!S_ISDIR(dst->type) && S_ISDIR(src->type)) {
            err = -ENOTDIR;
        } else if (S_ISDIR(dst->type)) {
            err = ov_dir_empty(ob, dst);
            if (err == 0 && dst->fd[0] >= 0) {
                err = ov_clear_whiteouts(dst->fd[0]);
            }
        }
        if (err < 0) {
            goto out;
        }
    } else if (err != -ENOENT) {
        goto out;
    }
    err = ov_copy_up(ob, src);
    if (err == 0) {
        err = ov_copy_up(ob, nd);
    }
    if (err < 0) {
        goto out;
    }
    dst_lower = ov_lower_has(ob, nd, nn);
    if (dst != NULL && S_ISDIR(dst->type) && dst->fd[0] < 0) {
        dst_lower = true;
    }
    if (S_ISDIR(src->type) && dst_lower) {
        err = ov_set_opaque(ob, src->fd[0]);
        if (err < 0) {
            goto out;
        }
    }
    if (dst != NULL && S_ISDIR(dst->type) && dst->fd[0] >= 0 && dst_lower) {
        /* the merged-empty upper dir goes; the moved one is opaque */
        if (unlinkat(nd->fd[0], nn, AT_REMOVEDIR) < 0) {
            err = -errno;
            goto out;
        }
    }
    if (src_lower) {
        if (renameat2(od->fd[0], on, nd->fd[0], nn, RENAME_WHITEOUT) < 0) {
            char tmp[64];

            if (errno != EPERM && errno != EINVAL) {
                err = -errno;
                goto out;
            }
            /* no RENAME_WHITEOUT: a whiteout made apart, exchanged in */
            ov_tmpname(ob, tmp);
            err = ov_make_whiteout(ob, tmp, od->fd[0]);
            if (err < 0) {
                goto out;
            }
            if (renameat(od->fd[0], on, nd->fd[0], nn) < 0 ||
                renameat2(ob->workfd, tmp, od->fd[0], on, RENAME_NOREPLACE) <
                    0) {
                err = -errno;
                unlinkat(ob->workfd, tmp, 0);
                goto out;
            }
        }
    } else if (renameat(od->fd[0], on, nd->fd[0], nn) < 0) {
        err = -errno;
    }
out:
    if (dst != NULL) {
        ov_node_put(&ob->be, dst);
    }
    if (src != NULL) {
        ov_node_put(&ob->be, src);
    }
    return err;
}

static int
ov_renameat(struct backend *be, struct be_node *olddir, const char *oldname,
            struct be_node *newdir, const char *newname)
{
    struct ov_backend *ob = ov_be(be);
    int err;

    pthread_mutex_lock(&ob->lock);
    err = ov_rename_locked(ob, olddir, oldname, newdir, newname);
    pthread_mutex_unlock(&ob->lock);
    return err;
}

static int
ov_rename(struct backend *be, struct be_node *n, struct be_node *newdir,
          const char *newname)
{
    struct ov_backend *ob = ov_be(be);
    char *nm = strdup(newname);
    int err = -EBUSY;

    if (nm == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&ob->lock);
    if (n->parent != NULL) {
        err = ov_rename_locked(ob, n->parent, n->name, newdir, newname);
    }
    if (err == 0) {
        /* the fid follows its object */
        ov_node_get(be, newdir);
        ov_node_put(be, n->parent);
        n->parent = newdir;
        free(n->name);
        n->name = nm;
        nm = NULL;
    }
    pthread_mutex_unlock(&ob->lock);
    free(nm);
    return err;
}

/* ---- xattrs -------------------------------------------------------------------------- */

static ssize_t
ov_getxattr(struct backend *be, struct be_node *n, const char *name, void *buf,
            size_t size)
{
    struct ov_backend *ob = ov_be(be);
    char path[OV_PROC_MAX];
    ssize_t len;

    if (ov_private_xattr(name)) {
        return -ENODATA;
    }
    if (S_ISLNK(n->type)) {
        return -ENODATA;
    }
    pthread_mutex_lock(&ob->lock);
    ov_refresh(ob, n);
    ov_proc(path, n->fd[n->top]);
    len = getxattr(path, name, buf, size);
    if (len < 0) {
        len = -errno;
    }
    pthread_mutex_unlock(&ob->lock);
    return len;
}

static ssize_t
ov_listxattr(struct backend *be, struct be_node *n, char *buf, size_t size)
{
    struct ov_backend *ob = ov_be(be);
    char path[OV_PROC_MAX];
    char *list = NULL;
    ssize_t len;
    size_t k = 0;

    if (S_ISLNK(n->type)) {
        return 0;
    }
    pthread_mutex_lock(&ob->lock);
    ov_refresh(ob, n);
    ov_proc(path, n->fd[n->top]);
    len = listxattr(path, NULL, 0);
    if (len > 0) {
        list = malloc((size_t)len);
        len = list == NULL ? -ENOMEM : listxattr(path, list, (size_t)len);
    }
    if (len < 0 &&
        ((errno != 0 && list != NULL) || (list == NULL && len != -ENOMEM))) {
        len = -errno;
    }
    pthread_mutex_unlock(&ob->lock);
    if (len < 0) {
        free(list);
        return len;
    }
    for (char *p = list; p != NULL && p < list + len; p += strlen(p) + 1) {
        size_t l = strlen(p) + 1;

        if (ov_private_xattr(p)) {
            continue;
        }
        if (size != 0) {
            if (k + l > size) {
                free(list);
                return -ERANGE;
            }
            memcpy(buf + k, p, l);
        }
        k += l;
    }
    free(list);
    return (ssize_t)k;
}

static int
ov_setxattr(struct backend *be, struct be_node *n, const char *name,
            const void *value, size_t size, uint32_t flags)
{
    struct ov_backend *ob = ov_be(be);
    char path[OV_PROC_MAX];
    int err;

    if (ov_private_xattr(name)) {
        return -EPERM; /* the guest must not forge whiteouts or opacity */
    }
    if (S_ISLNK(n->type)) {
        return -EPERM;
    }
    pthread_mutex_lock(&ob->lock);
    err = ov_copy_up(ob, n);
    if (err == 0) {
        ov_proc(path, n->fd[0]);
        if (setxattr(path, name, value, size,
                     (flags & P9_XATTR_CREATE ? XATTR_CREATE : 0) |
                         (flags & P9_XATTR_REPLACE ? XATTR_REPLACE : 0)) < 0) {
            err = -errno;
        }
    }
    pthread_mutex_unlock(&ob->lock);
    return err;
}

static int
ov_removexattr(struct backend *be, struct be_node *n, const char *name)
{
    struct ov_backend *ob = ov_be(be);
    char path[OV_PROC_MAX];
    int err;

    if (ov_private_xattr(name)) {
        return -ENODATA;
    }
    if (S_ISLNK(n->type)) {
        return -ENODATA;
    }
    pthread_mutex_lock(&ob->lock);
    err = ov_copy_up(ob, n);
    if (err == 0) {
        ov_proc(path, n->fd[0]);
        if (removexattr(path, name) < 0) {
            err = -errno;
        }
    }
    pthread_mutex_unlock(&ob->lock);
    return err;
}

/* ---- confinement ----------------------------------------------------------------- */

/* Upper and work share a mount group: copy-up, whiteouts and new objects
 * are renamed from work into upper, which fails across mounts (EXDEV). */
static int
ov_host_dirs(struct backend *be, struct be_hostdir *out, int max)
{
    struct ov_backend *ob = ov_be(be);
    int n = 0;

    for (int i = 0; i < ob->nl; i++, n++) {
        if (n < max) {
            out[n].fd = ob->rootfd[i];
            out[n].writable = i == 0 && !ob->readonly;
            out[n].mount_group = i == 0 ? 1 : 0;
        }
    }
    if (n < max) {
        out[n].fd = ob->workfd;
        out[n].writable = !ob->readonly;
        out[n].mount_group = 1;
    }
    return n + 1;
}

/* Before any request: only the layer roots and work are open. */
static int
ov_reroot(struct backend *be, const int *fds, int n, const char *proc_fd)
{
    struct ov_backend *ob = ov_be(be);

    if (n != ob->nl + 1) {
        return -EINVAL;
    }
    ov_proc_fd = proc_fd;
    for (int i = 0; i < n; i++) {
        int *mine = i < ob->nl ? &ob->rootfd[i] : &ob->workfd;

        if (dup3(fds[i], *mine, O_CLOEXEC) < 0) {
            return -errno;
        }
    }
    return 0;
}

/* ---- lifetime ------------------------------------------------------------------------ */

static void
ov_destroy(struct backend *be)
{
    struct ov_backend *ob = ov_be(be);

    for (int i = 0; i < ob->nl; i++) {
        close(ob->rootfd[i]);
    }
    close(ob->workfd);
    for (size_t i = 0; i < OV_QMAP_SIZE; i++) {
        while (ob->qmap[i] != NULL) {
            struct ov_qmap_ent *e = ob->qmap[i];

            ob->qmap[i] = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&ob->lock);
    free(ob);
}

static const struct be_ops ov_ops = {
    .user_get = ov_user_get,
    .user_put = ov_user_put,
    .user_enter = ov_user_enter,
    .root = ov_root,
    .walk1 = ov_walk1,
    .node_get = ov_node_get,
    .node_put = ov_node_put,
    .qid = ov_qid,
    .getattr = ov_getattr,
    .setattr = ov_setattr,
    .statfs = ov_statfs,
    .readlink = ov_readlink,
    .open = ov_open,
    .create = ov_create,
    .open_nowait = true,
    .close = ov_close,
    .handle_limits = ov_handle_limits,
    .read = ov_read,
    .read_fd = ov_read_fd,
    .write = ov_write,
    .fsync = ov_fsync,
    .readdir = ov_readdir,
    .mkdir = ov_mkdir,
    .mknod = ov_mknod,
    .symlink = ov_symlink,
    .link = ov_link,
    .renameat = ov_renameat,
    .unlinkat = ov_unlinkat,
    .rename = ov_rename,
    .remove = ov_remove,
    .getxattr = ov_getxattr,
    .listxattr = ov_listxattr,
    .setxattr = ov_setxattr,
    .removexattr = ov_removexattr,
    .lock = ov_lock,
    .getlock = ov_getlock,
    .destroy = ov_destroy,
    .host_dirs = ov_host_dirs,
    .reroot = ov_reroot,
};

/*
 * Drop what a killed daemon left in the work directory: copies that were
 * never renamed into place (invisible, so dropping them loses nothing).
 */
static void
ov_clean_work(int workfd)
{
    struct dirent *de;
    DIR *d;
    int fd = openat(workfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        return;
    }
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "#ov-", 4) != 0) {
            continue;
        }
        if (unlinkat(fd, de->d_name, 0) < 0 && errno == EISDIR) {
            int sub = openat(fd, de->d_name,
                             O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

            /* a directory copy holds at most whiteouts: empty it first */
            if (sub >= 0) {
                (void)ov_clear_whiteouts(sub);
                close(sub);
            }
            (void)unlinkat(fd, de->d_name, AT_REMOVEDIR);
        }
    }
    closedir(d);
}

static int
ov_open_dir(const char *path, bool create)
{
    int fd;

    if (create && mkdir(path, 0755) < 0 && errno != EEXIST) {
        return -errno;
    }
    fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int
ov_backend_new(const struct ov_options *opt, struct backend **out)
{
    struct ov_backend *ob;
    struct stat ust;
    struct stat wst;
    int err;

    if (opt->upper == NULL || opt->work == NULL || opt->nlowers < 1 ||
        opt->nlowers > OV_MAX_LOWERS) {
        return -EINVAL;
    }
    ob = calloc(1, sizeof(*ob));
    if (ob == NULL) {
        return -ENOMEM;
    }
    for (int i = 0; i < OV_NL; i++) {
        ob->rootfd[i] = -1;
    }
    ob->workfd = -1;
    ob->nl = 1 + opt->nlowers;
    ob->readonly = opt->readonly;
    ob->xprefix = geteuid() == 0 ? "trusted.overlay." : "user.overlay.";
    pthread_mutex_init(&ob->lock, NULL);
    ob->be.ops = &ov_ops;
    ob->be.priv = ob;
    err = ov_open_dir(opt->upper, true);
    if (err < 0) {
        goto fail;
    }
    ob->rootfd[0] = err;
    for (int i = 0; i < opt->nlowers; i++) {
        err = ov_open_dir(opt->lowers[i], false);
        if (err < 0) {
            goto fail;
        }
        ob->rootfd[1 + i] = err;
    }
    err = ov_open_dir(opt->work, true);
    if (err < 0) {
        goto fail;
    }
    ob->workfd = err;
    if ((err = ov_fstat(ob->rootfd[0], &ust)) < 0 ||
        (err = ov_fstat(ob->workfd, &wst)) < 0) {
        goto fail;
    }
    if (ust.st_dev != wst.st_dev) {
        err = -EXDEV; /* copy-up renames from work into upper */
        goto fail;
    }
    ov_clean_work(ob->workfd);
    *out = &ob->be;
    return 0;
fail:
    ob->nl = OV_NL;
    for (int i = 0; i < OV_NL; i++) {
        if (ob->rootfd[i] >= 0) {
            close(ob->rootfd[i]);
        }
    }
    if (ob->workfd >= 0) {
        close(ob->workfd);
    }
    pthread_mutex_destroy(&ob->lock);
    free(ob);
    return err;
}
