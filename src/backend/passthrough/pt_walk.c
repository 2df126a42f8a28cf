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
 * ".." below it is the directory's parent link, checked against the
 * kernel (pt_walk_dotdot).
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
#include <sys/stat.h>
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
#define PT_BENEATH_MAX_DEPTH 4096
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
    for (int depth = 0; depth < PT_BENEATH_MAX_DEPTH; depth++) {
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

/* ".." steps per openat in pt_verify_links: 3 bytes each, under PATH_MAX. */
#define PT_DOTDOT_CHUNK 1024

/*
 * Is directory node 'p' still below the root, as its parent links say?
 * Its link depth L (hops to the root) is counted in memory; then the
 * kernel climbs "../../.." from p's descriptor, up to PT_DOTDOT_CHUNK
 * levels per openat, and after exactly L levels must stand on the root.
 * If it does, the root is an ancestor of p now.  That is a few syscalls
 * whatever the depth (the kernel's ".." steps are cheap), where climbing
 * one openat at a time costs three syscalls per level.
 * Returns 0, -ESTALE when the links are stale or unknown or p is not
 * there (the caller then climbs the slow way), or another -errno.
 */
static int
pt_verify_links(struct pt_backend *pb, struct be_node *p)
{
    static char dots[PT_DOTDOT_CHUNK * 3];
    struct stat st;
    size_t depth = 0;
    int cur;
    int err = 0;

    if (p == pb->root) {
        return 0;
    }
    pthread_mutex_lock(&pb->nt_lock);
    for (struct be_node *a = p; a != pb->root; a = a->parent) {
        if (a == NULL || ++depth > (1u << 20)) {
            pthread_mutex_unlock(&pb->nt_lock);
            return -ESTALE;
        }
    }
    pthread_mutex_unlock(&pb->nt_lock);
    if (dots[0] == '\0') {
        /* idempotent: every thread writes the same bytes */
        for (size_t i = 0; i < PT_DOTDOT_CHUNK; i++) {
            memcpy(dots + 3 * i, "../", 3);
        }
    }
    err = pt_pin(pb, p);
    if (err < 0) {
        return err;
    }
    cur = p->fd;
    while (depth > 0) {
        size_t k = depth < PT_DOTDOT_CHUNK ? depth : PT_DOTDOT_CHUNK;
        char buf[PT_DOTDOT_CHUNK * 3];
        int nfd;

        memcpy(buf, dots, k * 3);
        buf[k * 3 - 1] = '\0';
        atomic_fetch_add_explicit(&pb->st_verify_calls, 1,
                                  memory_order_relaxed);
        nfd = openat(cur, buf, O_PATH | O_DIRECTORY | O_CLOEXEC);
        err = nfd < 0 ? -errno : 0;
        if (cur != p->fd) {
            close(cur);
        }
        if (nfd < 0) {
            pt_unpin(pb, p);
            return err == -EMFILE || err == -ENFILE || err == -ENOMEM ? err
                                                                      : -ESTALE;
        }
        cur = nfd;
        depth -= k;
    }
    if (fstat(cur, &st) < 0) {
        err = -errno;
    } else if (st.st_dev != pb->root->dev || st.st_ino != pb->root->ino) {
        err = -ESTALE;
    }
    close(cur);
    pt_unpin(pb, p);
    return err;
}

/*
 * ".." of directory 'dir' below the root.  The answer is dir's parent link
 * when the kernel agrees that it is dir's parent now (one openat and one
 * fstat) and the link chain still leads down from the root
 * (pt_verify_links).  Otherwise (the host moved something) the old proof
 * runs: climb ".." to the root, and the link is repaired.
 */
static int
pt_walk_dotdot(struct pt_backend *pb, struct be_node *dir, struct be_node **out,
               struct p9_qid *qid)
{
    struct be_node *p;
    struct stat st;
    int fd;
    int err;

    fd = openat(dir->fd, "..", O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    err = pt_fstat(fd, &st);
    if (err < 0) {
        close(fd);
        return err;
    }
    pthread_mutex_lock(&pb->nt_lock);
    p = dir->parent;
    if (p != NULL) {
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&pb->nt_lock);
    if (p != NULL && p->dev == st.st_dev && p->ino == st.st_ino) {
        err = pt_verify_links(pb, p);
        if (err == 0) {
            atomic_fetch_add_explicit(&pb->st_dotdot_fast, 1,
                                      memory_order_relaxed);
            close(fd);
            pt_stat_to_qid(pb, &st, qid);
            *out = p;
            return 0;
        }
        if (err != -ESTALE) {
            close(fd);
            pt_node_put(&pb->be, p);
            return err;
        }
    }
    pt_node_put(&pb->be, p);
    /*
     * RESOLVE_BENEATH would refuse "..", so a plain openat, and then proof
     * that the parent is still inside the export (a host process, or a
     * client of an overlapping export, may have moved this directory out
     * of it).
     */
    atomic_fetch_add_explicit(&pb->st_dotdot_slow, 1, memory_order_relaxed);
    err = pt_beneath_root(pb, fd);
    if (err < 0) {
        close(fd);
        return err;
    }
    /*
     * Known or not, the parent's own link is left alone (unknown if new),
     * and so is dir's: its name in the new parent is not known here.  The
     * next walk by name repairs both.
     */
    err = pt_node_new(pb, fd, NULL, NULL, out, &st);
    if (err < 0) {
        return err;
    }
    pt_stat_to_qid(pb, &st, qid);
    return 0;
}

/*
 * A repeated walk: the node last linked as 'name' in 'dir' (the child
 * index, no syscall), if it still holds its descriptor and the name still
 * is that inode: one fstatat instead of openat2 + fstat + close.
 * Returns 0 with *out, -ENOENT when the name is gone, or 1: take the open
 * path (no candidate, candidate without a descriptor, another inode, any
 * other error).
 *
 * Why this confines as well as the open path: the candidate's descriptor
 * was itself opened by a confined walk (or reopened and checked to be the
 * same file); fstatat of one element (no '/', not "." or "..") with
 * AT_SYMLINK_NOFOLLOW follows nothing, relative to dir's descriptor, as
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) would; and the candidate
 * is pinned with its descriptor open across the fstatat, so its inode
 * cannot be freed and its (dev, ino) reused: equal (dev, ino) is the same
 * inode, the node the open path would have found in the table.
 */
static int
pt_walk_cached(struct pt_backend *pb, struct be_node *dir, const char *name,
               struct be_node **out, struct p9_qid *qid)
{
    struct be_node *c;
    struct stat st;
    bool stale = false;
    int err = 1;

    c = pt_node_child(pb, dir, name);
    if (c == NULL) {
        return 1;
    }
    if (pt_pin_if_open(pb, c) < 0) {
        pt_node_put(&pb->be, c);
        return 1; /* reclaimed: the open path compares handles */
    }
    atomic_fetch_add_explicit(&pb->st_walk_probe, 1, memory_order_relaxed);
    if (fstatat(dir->fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) {
            err = -ENOENT;
            stale = true;
        }
    } else if (st.st_dev == c->dev && st.st_ino == c->ino) {
        err = 0;
    } else {
        stale = true;
    }
    pt_unpin(pb, c);
    if (err != 0) {
        if (stale) {
            /* c's link is stale (the host renamed, removed or replaced
             * the name): not kept idle, so that its descriptor does not
             * keep a deleted file; the open path links the new file */
            pt_node_unname(pb, dir, name);
        }
        pt_node_put(&pb->be, c);
        return err;
    }
    atomic_fetch_add_explicit(&pb->st_walk_fast, 1, memory_order_relaxed);
    pt_stat_to_qid(pb, &st, qid);
    *out = c;
    return 0;
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
    if (pt_meta_hidden_name(pb, name)) {
        return -ENOENT; /* mapped-file metadata is not the guest's */
    }
    if (dir->type != S_IFDIR) {
        /* Never walk through a symlink or a file. */
        return dir->type == S_IFLNK ? -ELOOP : -ENOTDIR;
    }
    if (strcmp(name, "..") == 0) {
        if (pt_is_root(pb, dir)) {
            return pt_root(be, out, qid);
        }
        return pt_walk_dotdot(pb, dir, out, qid);
    }
    err = pt_walk_cached(pb, dir, name, out, qid);
    if (err <= 0) {
        return err;
    }
    fd = pt_open_child(dir->fd, name, 0);
    if (fd < 0 && pt_fd_pressure(pb, fd, "walk")) {
        fd = pt_open_child(dir->fd, name, 0);
    }
    if (fd < 0) {
        return fd;
    }
    err = pt_node_new(pb, fd, dir, name, out, &st);
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
static int
pt_locate_by_path(struct pt_backend *pb, struct be_node *n, int *parent_fd,
                  char **name)
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

/*
 * Find the directory and name under which node 'n' is reachable now.
 * On success *parent_fd is a new O_PATH descriptor of the parent and *name
 * a malloc'd copy of the last element.  Fails with -EBUSY for the root,
 * -ENOENT for an unlinked node, -ESTALE if the node is not (or no longer)
 * reachable from the export root.
 *
 * The node's parent link is tried first: it is the name the client used
 * last (for a file with several hard links, the link the client means),
 * and pt_verify_links proves the parent is still below the root.  When
 * the link is unknown or stale, the kernel's current path for the
 * descriptor is the hint, re-walked from the root one element at a time.
 */
int
pt_locate(struct pt_backend *pb, struct be_node *n, int *parent_fd, char **name)
{
    struct be_node *p;
    struct stat st;
    char *nm = NULL;
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
    pthread_mutex_lock(&pb->nt_lock);
    p = n->parent;
    if (p != NULL && n->name != NULL) {
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
        nm = strdup(n->name);
    } else {
        p = NULL;
    }
    pthread_mutex_unlock(&pb->nt_lock);
    if (p != NULL && nm != NULL && pt_verify_links(pb, p) == 0 &&
        pt_pin(pb, p) >= 0) {
        int dfd = -1;

        if (fstatat(p->fd, nm, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            st.st_dev == n->dev && st.st_ino == n->ino) {
            dfd = fcntl(p->fd, F_DUPFD_CLOEXEC, 0);
        }
        pt_unpin(pb, p);
        if (dfd >= 0) {
            pt_node_put(&pb->be, p);
            *parent_fd = dfd;
            *name = nm;
            return 0;
        }
    }
    free(nm);
    pt_node_put(&pb->be, p);
    err = pt_locate_by_path(pb, n, parent_fd, name);
    return err;
}
