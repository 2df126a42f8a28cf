/* SPDX-License-Identifier: MIT */
/*
 * Walking: one name at a time, relative to the parent's O_PATH descriptor,
 * never following a symlink.
 *
 * walk1 opens exactly one element with O_PATH|O_NOFOLLOW, through
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
 * when the kernel has it (plain openat otherwise).  A host symlink becomes
 * a node of type symlink; walking *through* it fails with ENOTDIR because
 * its descriptor is not a directory.  ".." at the export root is the root.
 *
 * pt_locate() finds where a node lives now (for Trename / Tremove): the
 * kernel's current path for the descriptor is only a hint, it is re-walked
 * from the root one element at a time with O_NOFOLLOW and the final name
 * must still be the node's (dev, ino).
 */
#include "pt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* 1 until openat2 is found missing (ENOSYS), then plain openat. */
static atomic_int pt_have_openat2 = 1;

int
pt_check_name(const char *name)
{
    size_t len;

    if (name == NULL || name[0] == '\0') {
        return -ENOENT;
    }
    len = strlen(name);
    if (len > NAME_MAX) {
        return -ENAMETOOLONG;
    }
    if (strchr(name, '/') != NULL || strcmp(name, ".") == 0) {
        return -EINVAL;
    }
    return 0;
}

/*
 * Open one name (no '/', not "..") below 'dirfd' without following any
 * symlink, with O_PATH|O_NOFOLLOW|O_CLOEXEC plus 'extra_flags'.  Returns
 * the descriptor or -errno.
 */
int
pt_open_child(int dirfd, const char *name, int extra_flags)
{
    const int flags = O_PATH | O_NOFOLLOW | O_CLOEXEC | extra_flags;
    struct open_how how;
    int fd;

    if (atomic_load_explicit(&pt_have_openat2, memory_order_relaxed)) {
        memset(&how, 0, sizeof(how));
        how.flags = (uint64_t)flags;
        how.resolve =
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
        if (fd >= 0) {
            return fd;
        }
        if (errno != ENOSYS) {
            return -errno;
        }
        atomic_store_explicit(&pt_have_openat2, 0, memory_order_relaxed);
    }
    fd = openat(dirfd, name, flags);
    if (fd < 0) {
        return -errno;
    }
    return fd;
}

/*
 * 0 if directory 'fd' is the export root or below it: climb ".." until the
 * root's (dev, ino) is met.  Reaching the host's "/" (where ".." is the
 * directory itself) means it is outside: -ENOENT.  Depth is bounded.
 */
static int
pt_beneath_root(struct pt_backend *pb, int fd)
{
    struct stat st;
    struct stat up;
    int cur = fd;
    int err = -ELOOP;

    if (fstat(cur, &st) < 0) {
        return -errno;
    }
    for (int depth = 0; depth < 4096; depth++) {
        int next;

        if (st.st_dev == pb->root->dev && st.st_ino == pb->root->ino) {
            err = 0;
            break;
        }
        next = openat(cur, "..", O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            err = -errno;
            break;
        }
        if (fstat(next, &up) < 0) {
            err = -errno;
            close(next);
            break;
        }
        if (cur != fd) {
            close(cur);
        }
        cur = next;
        if (up.st_dev == st.st_dev && up.st_ino == st.st_ino) {
            err = -ENOENT; /* the host's "/": not below the export */
            break;
        }
        st = up;
    }
    if (cur != fd) {
        close(cur);
    }
    return err;
}

int
pt_walk1(struct backend *be, struct be_node *dir, const char *name,
         struct be_node **out, struct p9_qid *qid)
{
    struct pt_backend *pb = pt_be(be);
    struct stat st;
    int fd;
    int err;

    err = pt_check_name(name);
    if (err < 0) {
        return err;
    }
    if (dir->type != S_IFDIR) {
        /* Never walk through a symlink or a file. */
        return dir->type == S_IFLNK ? -ELOOP : -ENOTDIR;
    }
    if (strcmp(name, "..") == 0) {
        if (pt_is_root(pb, dir)) {
            return pt_root(be, out, qid);
        }
        /*
         * ".." of a directory below the root: RESOLVE_BENEATH would refuse
         * it, so a plain openat, and then proof that the parent is still
         * inside the export (a host process, or a client of an overlapping
         * export, may have moved this directory out of it).
         */
        fd = openat(dir->fd, "..", O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            return -errno;
        }
        err = pt_beneath_root(pb, fd);
        if (err < 0) {
            close(fd);
            return err;
        }
    } else {
        fd = pt_open_child(dir->fd, name, 0);
        if (fd < 0) {
            return fd;
        }
    }
    err = pt_node_new(fd, out, &st);
    if (err < 0) {
        return err;
    }
    pt_stat_to_qid(pb, &st, qid);
    return 0;
}

/* The kernel's idea of where 'fd' is now (a hint only). */
static int
pt_fd_path(int fd, char *buf, size_t size)
{
    char proc[PT_PROC_PATH_MAX];
    ssize_t len;

    pt_proc_path(proc, fd);
    len = readlink(proc, buf, size);
    if (len < 0) {
        return -errno;
    }
    if ((size_t)len >= size) {
        return -ENAMETOOLONG;
    }
    buf[len] = '\0';
    return 0;
}

/*
 * Find the directory and name under which node 'n' is reachable now.
 * On success *parent_fd is a new O_PATH descriptor of the parent and *name
 * a malloc'd copy of the last element.  Fails with -EBUSY for the root,
 * -ENOENT for an unlinked node, -ESTALE if the node is not (or no longer)
 * reachable from the export root under the path the kernel reports.
 */
int
pt_locate(struct pt_backend *pb, struct be_node *n, int *parent_fd, char **name)
{
    char *npath;
    char *rpath;
    char *rel;
    char *last;
    char *p;
    struct stat st;
    size_t rlen;
    int dfd;
    int err;

    if (pt_is_root(pb, n)) {
        return -EBUSY;
    }
    if (fstat(n->fd, &st) < 0) {
        return -errno;
    }
    if (st.st_nlink == 0) {
        return -ENOENT;
    }
    npath = malloc(PATH_MAX);
    rpath = malloc(PATH_MAX);
    if (npath == NULL || rpath == NULL) {
        err = -ENOMEM;
        goto out_free;
    }
    err = pt_fd_path(n->fd, npath, PATH_MAX);
    if (err < 0) {
        goto out_free;
    }
    err = pt_fd_path(pb->root->fd, rpath, PATH_MAX);
    if (err < 0) {
        goto out_free;
    }
    rlen = strlen(rpath);
    if (rlen == 1) {
        rlen = 0; /* export root is "/" */
    }
    if (strncmp(npath, rpath, rlen) != 0 || npath[rlen] != '/') {
        /* Moved out of the export (or the export root moved). */
        err = -ESTALE;
        goto out_free;
    }
    rel = npath + rlen + 1;
    last = strrchr(rel, '/');
    dfd = fcntl(pb->root->fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0) {
        err = -errno;
        goto out_free;
    }
    /* Walk the intermediate elements, one O_NOFOLLOW open each. */
    p = rel;
    while (last != NULL && p < last) {
        char *slash = strchr(p, '/');
        int nfd;

        *slash = '\0';
        if (pt_check_name(p) < 0 || strcmp(p, "..") == 0) {
            close(dfd);
            err = -ESTALE;
            goto out_free;
        }
        nfd = pt_open_child(dfd, p, O_DIRECTORY);
        close(dfd);
        if (nfd < 0) {
            err = nfd == -ENOENT || nfd == -ENOTDIR || nfd == -ELOOP ? -ESTALE
                                                                     : nfd;
            goto out_free;
        }
        dfd = nfd;
        p = slash + 1;
    }
    if (pt_check_name(p) < 0 || strcmp(p, "..") == 0) {
        close(dfd);
        err = -ESTALE;
        goto out_free;
    }
    /* The name must still be this very object. */
    if (fstatat(dfd, p, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        err = errno == ENOENT ? -ESTALE : -errno;
        close(dfd);
        goto out_free;
    }
    if (st.st_dev != n->dev || st.st_ino != n->ino) {
        close(dfd);
        err = -ESTALE;
        goto out_free;
    }
    *name = strdup(p);
    if (*name == NULL) {
        close(dfd);
        err = -ENOMEM;
        goto out_free;
    }
    *parent_fd = dfd;
    err = 0;

out_free:
    free(npath);
    free(rpath);
    return err;
}
