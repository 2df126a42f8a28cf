/* SPDX-License-Identifier: MIT */
/*
 * Passthrough backend: the export, node lifetime and the ops table.
 *
 * A node owns one O_PATH|O_NOFOLLOW descriptor and the (dev, ino) it had
 * when opened.  Nodes are refcounted with C11 atomics and shared: the
 * export's node table maps (dev, ino) to the one node for that object, so
 * any number of fids (over any number of connections) to one file cost
 * one node and one descriptor.  The table holds no reference: the last
 * put unhashes the node.  An object's node lives as long as some fid or a
 * child's parent link uses it, so while it lives its descriptor pins the
 * inode and (dev, ino) cannot be reused by another file.
 */
#include "pt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

static void pt_destroy(struct backend *be);

/*
 * The ops as the core sees them: each pins the nodes it is given for the
 * duration of the op (pt_fdcache.c), so the op code can use n->fd.
 */
#define PB(be) pt_be(be)

static int
pt_op_walk1(struct backend *be, struct be_node *dir, const char *name,
            struct be_node **out, struct p9_qid *qid)
{
    int err = pt_pin(PB(be), dir);

    if (err < 0) {
        return err;
    }
    err = pt_walk1(be, dir, name, out, qid);
    pt_unpin(PB(be), dir);
    return err;
}

static int
pt_op_qid(struct backend *be, struct be_node *n, struct p9_qid *qid)
{
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    err = pt_qid(be, n, qid);
    pt_unpin(PB(be), n);
    return err;
}

static int
pt_op_getattr(struct backend *be, struct be_node *n, struct be_handle *h,
              uint64_t request_mask, struct p9_rgetattr *out)
{
    int err;

    if (h != NULL) {
        err = pt_hpin(PB(be), h); /* uses h->fd only */
        if (err < 0) {
            return err;
        }
        err = pt_getattr(be, n, h, request_mask, out);
        pt_hunpin(PB(be), h);
        return err;
    }
    err = pt_pin(PB(be), n);
    if (err < 0) {
        return err;
    }
    err = pt_getattr(be, n, h, request_mask, out);
    pt_unpin(PB(be), n);
    return err;
}

static int
pt_op_setattr(struct backend *be, struct be_node *n, struct be_handle *h,
              const struct p9_tsetattr *in)
{
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    if (h != NULL && (err = pt_hpin(PB(be), h)) < 0) {
        pt_unpin(PB(be), n);
        return err;
    }
    err = pt_setattr(be, n, h, in);
    if (h != NULL) {
        pt_hunpin(PB(be), h);
    }
    pt_unpin(PB(be), n);
    return err;
}

static int
pt_op_statfs(struct backend *be, struct be_node *n, struct p9_rstatfs *out)
{
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    err = pt_statfs(be, n, out);
    pt_unpin(PB(be), n);
    return err;
}

static ssize_t
pt_op_readlink(struct backend *be, struct be_node *n, char *buf, size_t size)
{
    ssize_t len;
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    len = pt_readlink(be, n, buf, size);
    pt_unpin(PB(be), n);
    return len;
}

static int
pt_op_open(struct backend *be, struct be_node *n, uint32_t flags,
           struct be_handle **out, struct p9_qid *qid, uint32_t *iounit)
{
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    err = pt_open(be, n, flags, out, qid, iounit);
    pt_unpin(PB(be), n);
    return err;
}

static int
pt_op_create(struct backend *be, struct be_node *dir, const char *name,
             uint32_t flags, uint32_t mode, uint32_t gid,
             struct be_node **node_out, struct be_handle **out,
             struct p9_qid *qid, uint32_t *iounit)
{
    int err = pt_pin(PB(be), dir);

    if (err < 0) {
        return err;
    }
    err =
        pt_create(be, dir, name, flags, mode, gid, node_out, out, qid, iounit);
    pt_unpin(PB(be), dir);
    return err;
}

static ssize_t
pt_op_write(struct backend *be, struct be_handle *h, const struct iovec *iov,
            int iovcnt, uint64_t off)
{
    ssize_t len;
    int err = pt_hpin(PB(be), h);

    if (err < 0) {
        return err;
    }
    len = pt_write(be, h, iov, iovcnt, off);
    pt_hunpin(PB(be), h);
    return len;
}

static ssize_t
pt_op_read(struct backend *be, struct be_handle *h, const struct iovec *iov,
           int iovcnt, uint64_t off)
{
    ssize_t len;
    int err = pt_hpin(PB(be), h);

    if (err < 0) {
        return err;
    }
    len = pt_read(be, h, iov, iovcnt, off);
    pt_hunpin(PB(be), h);
    return len;
}

static ssize_t
pt_op_read_fd(struct backend *be, struct be_handle *h, uint64_t off,
              size_t count, be_fd_sink *sink, void *arg)
{
    ssize_t len;
    int err;

    if (h->node->type != S_IFREG || off > (uint64_t)INT64_MAX) {
        return -ENOTSUP; /* read says why */
    }
    err = pt_hpin(PB(be), h);
    if (err < 0) {
        return err;
    }
    len = sink(arg, h->fd, off, count);
    pt_hunpin(PB(be), h);
    return len;
}

static int
pt_op_fsync(struct backend *be, struct be_handle *h, bool datasync)
{
    int err = pt_hpin(PB(be), h);

    if (err < 0) {
        return err;
    }
    err = pt_fsync(be, h, datasync);
    pt_hunpin(PB(be), h);
    return err;
}

/* A lock lives in the open file description: that file keeps its
 * descriptor from the first lock on. */
static int
pt_op_lock(struct backend *be, struct be_handle *h, const struct p9_tlock *in,
           uint8_t *status)
{
    int err = pt_hpin(PB(be), h);

    if (err < 0) {
        return err;
    }
    if (in->type != P9_LOCK_TYPE_UNLCK) {
        err = pt_hcache_keep(PB(be), h);
    }
    if (err == 0) {
        err = pt_lock(be, h, in, status);
    }
    pt_hunpin(PB(be), h);
    return err;
}

static int
pt_op_getlock(struct backend *be, struct be_handle *h,
              const struct p9_tgetlock *in, struct p9_rgetlock *out)
{
    int err = pt_hpin(PB(be), h);

    if (err < 0) {
        return err;
    }
    err = pt_getlock(be, h, in, out);
    pt_hunpin(PB(be), h);
    return err;
}

static int
pt_op_mkdir(struct backend *be, struct be_node *dir, const char *name,
            uint32_t mode, uint32_t gid, struct p9_qid *qid)
{
    int err = pt_pin(PB(be), dir);

    if (err < 0) {
        return err;
    }
    err = pt_mkdir(be, dir, name, mode, gid, qid);
    pt_unpin(PB(be), dir);
    return err;
}

static int
pt_op_mknod(struct backend *be, struct be_node *dir, const char *name,
            uint32_t mode, uint32_t major, uint32_t minor, uint32_t gid,
            struct p9_qid *qid)
{
    int err = pt_pin(PB(be), dir);

    if (err < 0) {
        return err;
    }
    err = pt_mknod(be, dir, name, mode, major, minor, gid, qid);
    pt_unpin(PB(be), dir);
    return err;
}

static int
pt_op_symlink(struct backend *be, struct be_node *dir, const char *name,
              const char *target, uint32_t gid, struct p9_qid *qid)
{
    int err = pt_pin(PB(be), dir);

    if (err < 0) {
        return err;
    }
    err = pt_symlink(be, dir, name, target, gid, qid);
    pt_unpin(PB(be), dir);
    return err;
}

static int
pt_op_link(struct backend *be, struct be_node *dir, const char *name,
           struct be_node *target)
{
    int err = pt_pin2(PB(be), dir, target);

    if (err < 0) {
        return err;
    }
    err = pt_link(be, dir, name, target);
    pt_unpin2(PB(be), dir, target);
    return err;
}

static int
pt_op_renameat(struct backend *be, struct be_node *olddir, const char *oldname,
               struct be_node *newdir, const char *newname)
{
    int err = pt_pin2(PB(be), olddir, newdir);

    if (err < 0) {
        return err;
    }
    err = pt_renameat(be, olddir, oldname, newdir, newname);
    pt_unpin2(PB(be), olddir, newdir);
    return err;
}

static int
pt_op_unlinkat(struct backend *be, struct be_node *dir, const char *name,
               uint32_t flags)
{
    int err = pt_pin(PB(be), dir);

    if (err < 0) {
        return err;
    }
    err = pt_unlinkat(be, dir, name, flags);
    pt_unpin(PB(be), dir);
    return err;
}

static int
pt_op_rename(struct backend *be, struct be_node *n, struct be_node *newdir,
             const char *newname)
{
    int err = pt_pin2(PB(be), n, newdir);

    if (err < 0) {
        return err;
    }
    err = pt_rename(be, n, newdir, newname);
    pt_unpin2(PB(be), n, newdir);
    return err;
}

static int
pt_op_remove(struct backend *be, struct be_node *n)
{
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    err = pt_remove(be, n);
    pt_unpin(PB(be), n);
    return err;
}

static ssize_t
pt_op_getxattr(struct backend *be, struct be_node *n, const char *name,
               void *buf, size_t size)
{
    ssize_t len;
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    len = pt_getxattr(be, n, name, buf, size);
    pt_unpin(PB(be), n);
    return len;
}

static ssize_t
pt_op_listxattr(struct backend *be, struct be_node *n, char *buf, size_t size)
{
    ssize_t len;
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    len = pt_listxattr(be, n, buf, size);
    pt_unpin(PB(be), n);
    return len;
}

static int
pt_op_setxattr(struct backend *be, struct be_node *n, const char *name,
               const void *value, size_t size, uint32_t flags)
{
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    err = pt_setxattr(be, n, name, value, size, flags);
    pt_unpin(PB(be), n);
    return err;
}

static int
pt_op_removexattr(struct backend *be, struct be_node *n, const char *name)
{
    int err = pt_pin(PB(be), n);

    if (err < 0) {
        return err;
    }
    err = pt_removexattr(be, n, name);
    pt_unpin(PB(be), n);
    return err;
}

static const struct be_ops pt_ops = {
    .user_get = pt_user_get,
    .user_put = pt_user_put,
    .user_enter = pt_user_enter,
    .root = pt_root,
    .walk1 = pt_op_walk1,
    .node_get = pt_node_get,
    .node_put = pt_node_put,
    .qid = pt_op_qid,
    .getattr = pt_op_getattr,
    .setattr = pt_op_setattr,
    .statfs = pt_op_statfs,
    .readlink = pt_op_readlink,
    .open = pt_op_open,
    .create = pt_op_create,
    .open_nowait = true,
    .close = pt_close,
    .handle_limits = pt_handle_limits,
    .read = pt_op_read,
    .read_fd = pt_op_read_fd,
    .write = pt_op_write,
    .fsync = pt_op_fsync,
    .readdir = pt_readdir,
    .mkdir = pt_op_mkdir,
    .mknod = pt_op_mknod,
    .symlink = pt_op_symlink,
    .link = pt_op_link,
    .renameat = pt_op_renameat,
    .unlinkat = pt_op_unlinkat,
    .rename = pt_op_rename,
    .remove = pt_op_remove,
    .getxattr = pt_op_getxattr,
    .listxattr = pt_op_listxattr,
    .setxattr = pt_op_setxattr,
    .removexattr = pt_op_removexattr,
    .lock = pt_op_lock,
    .getlock = pt_op_getlock,
    .destroy = pt_destroy,
    .dump_stats = pt_dump_stats,
    .host_dirs = pt_host_dirs,
    .reroot = pt_reroot,
};

/* How /proc/self/fd/N is named: changed by pt_reroot() only, before any
 * thread but the first exists (a confinement without /proc makes it
 * relative to the working directory). */
static const char *pt_proc_fd = "/proc/self/fd/";

void
pt_proc_path(char buf[PT_PROC_PATH_MAX], int fd)
{
    snprintf(buf, PT_PROC_PATH_MAX, "%s%d", pt_proc_fd, fd);
}

void
pt_set_proc_fd(const char *prefix)
{
    pt_proc_fd = prefix;
}

int
pt_fstat(int fd, struct stat *st)
{
    if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
        return -errno;
    }
    return 0;
}

bool
pt_is_root(struct pt_backend *pb, const struct be_node *n)
{
    return n->dev == pb->root->dev && n->ino == pb->root->ino;
}

#define PT_NT_INIT 256
/* Unreferenced nodes kept for repeated walks, at most (and at most a
 * quarter of the descriptor budget). */
#define PT_IDLE_MAX 1024

static size_t
pt_nt_hash(dev_t dev, ino_t ino, size_t size)
{
    uint64_t h = (uint64_t)ino * UINT64_C(0x9E3779B97F4A7C15);

    h ^= (uint64_t)dev * UINT64_C(0xC2B2AE3D27D4EB4F);
    h ^= h >> 31;
    return (size_t)(h & (size - 1));
}

/* Caller holds nt_lock.  Growth failure keeps the old (slower) table. */
static void
pt_nt_grow(struct pt_backend *pb)
{
    size_t nsize = pb->nt_size ? pb->nt_size * 2 : PT_NT_INIT;
    struct be_node **nt = calloc(nsize, sizeof(struct be_node *));

    if (nt == NULL) {
        return;
    }
    for (size_t i = 0; i < pb->nt_size; i++) {
        struct be_node *n = pb->nt[i];

        while (n != NULL) {
            struct be_node *next = n->hnext;
            size_t b = pt_nt_hash(n->dev, n->ino, nsize);

            n->hnext = nt[b];
            nt[b] = n;
            n = next;
        }
    }
    free(pb->nt);
    pb->nt = nt;
    pb->nt_size = nsize;
}

/* Caller holds nt_lock. */
static struct be_node *
pt_nt_find(struct pt_backend *pb, dev_t dev, ino_t ino)
{
    struct be_node *n;

    if (pb->nt_size == 0) {
        return NULL;
    }
    for (n = pb->nt[pt_nt_hash(dev, ino, pb->nt_size)]; n != NULL;
         n = n->hnext) {
        if (n->dev == dev && n->ino == ino) {
            return n;
        }
    }
    return NULL;
}

/* Caller holds nt_lock. */
static void
pt_nt_unhash(struct pt_backend *pb, struct be_node *n)
{
    struct be_node **pp;

    if (!n->hashed) {
        return;
    }
    pp = &pb->nt[pt_nt_hash(n->dev, n->ino, pb->nt_size)];
    while (*pp != n) {
        pp = &(*pp)->hnext;
    }
    *pp = n->hnext;
    n->hashed = false;
    pb->nt_count--;
}

/* Caller holds nt_lock. */
static bool
pt_nt_insert(struct pt_backend *pb, struct be_node *n)
{
    size_t b;

    if (pb->nt_count >= pb->nt_size) {
        pt_nt_grow(pb);
    }
    if (pb->nt_size == 0) {
        return false;
    }
    b = pt_nt_hash(n->dev, n->ino, pb->nt_size);
    n->hnext = pb->nt[b];
    pb->nt[b] = n;
    n->hashed = true;
    pb->nt_count++;
    return true;
}

/*
 * The child index: (parent, name) -> the node last linked under that name
 * (a walk, a create, a rename), at most one node per key.  The hash mixes
 * the parent's address, which a client does not know, into FNV-1a.
 */
static uint32_t
pt_ct_hash(const struct be_node *parent, const char *name)
{
    uint64_t h = (uint64_t)(uintptr_t)parent * UINT64_C(0x9E3779B97F4A7C15);

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0';
         p++) {
        h = (h ^ *p) * UINT64_C(0x100000001B3);
    }
    h ^= h >> 29;
    return (uint32_t)h;
}

/* Caller holds nt_lock. */
static struct be_node *
pt_ct_find(struct pt_backend *pb, const struct be_node *parent,
           const char *name, uint32_t h)
{
    if (pb->ct_size == 0) {
        return NULL;
    }
    for (struct be_node *c = pb->ct[h & (pb->ct_size - 1)]; c != NULL;
         c = c->cnext) {
        if (c->chash == h && c->parent == parent &&
            strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

/* Caller holds nt_lock. */
static void
pt_ct_unhash(struct pt_backend *pb, struct be_node *n)
{
    struct be_node **pp;

    if (!n->chashed) {
        return;
    }
    pp = &pb->ct[n->chash & (pb->ct_size - 1)];
    while (*pp != n) {
        pp = &(*pp)->cnext;
    }
    *pp = n->cnext;
    n->cnext = NULL;
    n->chashed = false;
    pb->ct_count--;
}

/* Caller holds nt_lock.  Growth failure keeps the old (slower) table. */
static void
pt_ct_grow(struct pt_backend *pb)
{
    size_t nsize = pb->ct_size ? pb->ct_size * 2 : PT_NT_INIT;
    struct be_node **ct = calloc(nsize, sizeof(struct be_node *));

    if (ct == NULL) {
        return;
    }
    for (size_t i = 0; i < pb->ct_size; i++) {
        struct be_node *c = pb->ct[i];

        while (c != NULL) {
            struct be_node *next = c->cnext;

            c->cnext = ct[c->chash & (nsize - 1)];
            ct[c->chash & (nsize - 1)] = c;
            c = next;
        }
    }
    free(pb->ct);
    pb->ct = ct;
    pb->ct_size = nsize;
}

/*
 * Index n under its link (n->parent, n->name), displacing whichever node
 * was indexed under that key before (its link went stale: the name was
 * found to be n since).  Caller holds nt_lock.
 */
static void
pt_ct_insert(struct pt_backend *pb, struct be_node *n)
{
    struct be_node *old;
    size_t b;

    if (n->chashed || n->parent == NULL || n->name == NULL) {
        return;
    }
    n->chash = pt_ct_hash(n->parent, n->name);
    old = pt_ct_find(pb, n->parent, n->name, n->chash);
    if (old != NULL) {
        pt_ct_unhash(pb, old);
    }
    if (pb->ct_count >= pb->ct_size) {
        pt_ct_grow(pb);
    }
    if (pb->ct_size == 0) {
        return; /* not indexed: walks of it take the open path */
    }
    b = n->chash & (pb->ct_size - 1);
    n->cnext = pb->ct[b];
    pb->ct[b] = n;
    n->chashed = true;
    pb->ct_count++;
}

/* Caller holds nt_lock. */
static void
pt_idle_del(struct pt_backend *pb, struct be_node *n)
{
    n->idle_prev->idle_next = n->idle_next;
    n->idle_next->idle_prev = n->idle_prev;
    n->idle_prev = n->idle_next = NULL;
    n->idle = false;
    pb->nidle--;
}

/*
 * A new reference to a node found through the node table or the child
 * index.  Caller holds nt_lock: a node at 0 references is idle (every
 * 0 <-> 1 transition happens under nt_lock) and leaves the idle list.
 */
static void
pt_ref_locked(struct pt_backend *pb, struct be_node *n)
{
    if (atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed) == 0 &&
        n->idle) {
        pt_idle_del(pb, n);
    }
}

/*
 * The node last linked as 'name' in 'dir', with a new reference, or NULL
 * (no syscall).  Only a candidate: the caller checks that the name still
 * is that file (pt_walk.c).
 */
struct be_node *
pt_node_child(struct pt_backend *pb, struct be_node *dir, const char *name)
{
    struct be_node *c;

    pthread_mutex_lock(&pb->nt_lock);
    c = pt_ct_find(pb, dir, name, pt_ct_hash(dir, name));
    if (c != NULL && c->hashed) {
        pt_ref_locked(pb, c);
    } else {
        c = NULL;
    }
    pthread_mutex_unlock(&pb->nt_lock);
    return c;
}

/*
 * Free a node that has no references, is off the idle list and is
 * unhashed from both tables (caller held nt_lock for that, released it
 * since); drops the reference its parent link held.
 */
static void
pt_node_release(struct pt_backend *pb, struct be_node *n,
                struct be_node *parent)
{
    pt_fdcache_forget(pb, n);
    pt_node_put(&pb->be, parent);
}

/*
 * A client removed 'name' from 'dir' (unlinkat, or renameat over it): the
 * node indexed under that name is not kept once unused (an idle one goes
 * now, so that its descriptor does not keep a deleted inode's blocks).
 */
void
pt_node_unname(struct pt_backend *pb, struct be_node *dir, const char *name)
{
    struct be_node *c;
    struct be_node *parent = NULL;

    pthread_mutex_lock(&pb->nt_lock);
    c = pt_ct_find(pb, dir, name, pt_ct_hash(dir, name));
    if (c != NULL) {
        pt_ct_unhash(pb, c);
        c->gone = true;
        if (c->idle) {
            pt_idle_del(pb, c);
            pt_nt_unhash(pb, c);
            parent = c->parent;
        } else {
            c = NULL; /* referenced: freed by its last put */
        }
    }
    pthread_mutex_unlock(&pb->nt_lock);
    if (c != NULL) {
        pt_node_release(pb, c, parent);
    }
}

/* Node n (referenced by the caller) was removed by a client (Tremove). */
void
pt_node_gone(struct pt_backend *pb, struct be_node *n)
{
    pthread_mutex_lock(&pb->nt_lock);
    n->gone = true;
    pt_ct_unhash(pb, n);
    pthread_mutex_unlock(&pb->nt_lock);
}

/* Free every idle node (and the parents that become idle on the way). */
void
pt_node_idle_flush(struct pt_backend *pb)
{
    for (;;) {
        struct be_node *n;
        struct be_node *parent;

        pthread_mutex_lock(&pb->nt_lock);
        n = pb->idle.idle_prev;
        if (n == &pb->idle) {
            pthread_mutex_unlock(&pb->nt_lock);
            return;
        }
        pt_idle_del(pb, n);
        pt_nt_unhash(pb, n);
        pt_ct_unhash(pb, n);
        parent = n->parent;
        pthread_mutex_unlock(&pb->nt_lock);
        pt_node_release(pb, n, parent);
    }
}

/*
 * Point n's parent link at (parent, name).  Caller holds nt_lock.  Returns
 * the old parent, whose reference the caller drops after unlocking.  A
 * link that would close a loop (the host moved a directory below one of
 * its own descendants) is cleared instead: a node with an unknown parent
 * answers ".." the slow way.  The root never gets a parent.
 */
static struct be_node *
pt_link_locked(struct pt_backend *pb, struct be_node *n, struct be_node *parent,
               const char *name)
{
    struct be_node *old = n->parent;
    char *nm = NULL;

    if (n == pb->root) {
        return NULL;
    }
    if (parent == old && parent != NULL && n->name != NULL && name != NULL &&
        strcmp(n->name, name) == 0) {
        /* unchanged: the common case of a repeated walk (which proves
         * the name is n's again, should a client have removed it) */
        n->gone = false;
        pt_ct_insert(pb, n);
        return NULL;
    }
    if (parent != NULL && n->type == S_IFDIR) {
        for (struct be_node *a = parent; a != NULL; a = a->parent) {
            if (a == n) {
                parent = NULL;
                break;
            }
        }
    }
    if (parent != NULL && name != NULL) {
        nm = strdup(name);
        if (nm == NULL) {
            parent = NULL; /* no name: unknown parent, still correct */
        }
    } else {
        parent = NULL;
    }
    if (parent != NULL) {
        atomic_fetch_add_explicit(&parent->refs, 1, memory_order_relaxed);
    }
    pt_ct_unhash(pb, n);
    free(n->name);
    n->name = nm;
    n->parent = parent;
    if (parent != NULL) {
        n->gone = false;
        pt_ct_insert(pb, n);
    }
    return old;
}

void
pt_node_relink(struct pt_backend *pb, struct be_node *n, struct be_node *parent,
               const char *name)
{
    struct be_node *old;

    pthread_mutex_lock(&pb->nt_lock);
    old = pt_link_locked(pb, n, parent, name);
    pthread_mutex_unlock(&pb->nt_lock);
    pt_node_put(&pb->be, old);
}

/* A new reference to the node for (dev, ino), or NULL if there is none. */
struct be_node *
pt_node_lookup(struct pt_backend *pb, dev_t dev, ino_t ino)
{
    struct be_node *n;

    pthread_mutex_lock(&pb->nt_lock);
    n = pt_nt_find(pb, dev, ino);
    if (n != NULL) {
        pt_ref_locked(pb, n);
    }
    pthread_mutex_unlock(&pb->nt_lock);
    return n;
}

/*
 * The node for the object O_PATH descriptor 'fd' names (ownership of fd
 * passes here; it is closed on failure, and also when the object already
 * has a node with a descriptor).  The node's parent link becomes
 * (parent, name) when both are given: the most recent way the object was
 * reached.  Fills *st when given.
 *
 * A node found by (dev, ino) that has lost its descriptor (pt_fdcache.c)
 * no longer pins its inode, so the number may have been reused: its file
 * handle (which carries the generation) must match fd's, else that node
 * is stale, leaves the table, and the file gets a new node.
 */
int
pt_node_new(struct pt_backend *pb, int fd, struct be_node *parent,
            const char *name, struct be_node **out, struct stat *st)
{
    struct file_handle *fh = NULL;
    bool have_fh = false;
    int mnt = -1;
    struct be_node *old = NULL;
    struct stat sb;
    struct be_node *n;
    struct be_node *nn = NULL;
    int err;

    err = pt_fstat(fd, &sb);
    if (err < 0) {
        goto out_close;
    }
    if (st != NULL) {
        *st = sb;
    }
    for (;;) {
        bool has_fd;

        pthread_mutex_lock(&pb->nt_lock);
        n = pt_nt_find(pb, sb.st_dev, sb.st_ino);
        if (n == NULL) {
            break; /* still holding nt_lock */
        }
        pt_ref_locked(pb, n);
        pthread_mutex_unlock(&pb->nt_lock);

        pthread_mutex_lock(&pb->fd_lock);
        has_fd = n->fd >= 0;
        pthread_mutex_unlock(&pb->fd_lock);
        if (!has_fd) {
            if (!have_fh) {
                fh = pt_fh_of(fd, &mnt);
                have_fh = true;
            }
            if (n->type != (sb.st_mode & S_IFMT) ||
                (n->fh != NULL && (fh == NULL || !pt_fh_equal(fh, n->fh)))) {
                /* another file with a reused inode number */
                pthread_mutex_lock(&pb->nt_lock);
                pt_nt_unhash(pb, n);
                pthread_mutex_unlock(&pb->nt_lock);
                pt_node_put(&pb->be, n);
                continue;
            }
            if (pt_fdcache_install(pb, n, fd)) {
                fd = -1;
            }
        }
        if (fd >= 0) {
            close(fd);
        }
        free(fh);
        if (parent != NULL) {
            pthread_mutex_lock(&pb->nt_lock);
            old = pt_link_locked(pb, n, parent, name);
            pthread_mutex_unlock(&pb->nt_lock);
            pt_node_put(&pb->be, old);
        }
        *out = n;
        return 0;
    }
    pthread_mutex_unlock(&pb->nt_lock);

    nn = calloc(1, sizeof(*nn));
    if (nn == NULL) {
        free(fh);
        err = -ENOMEM;
        goto out_close;
    }
    atomic_init(&nn->refs, 1);
    nn->fd = fd;
    nn->dev = sb.st_dev;
    nn->ino = sb.st_ino;
    nn->type = sb.st_mode & S_IFMT;
    if (have_fh) {
        nn->fh = fh;
        nn->fh_mnt_ok = fh != NULL && mnt == pb->root_mnt_id;
    }

    pthread_mutex_lock(&pb->nt_lock);
    n = pt_nt_find(pb, sb.st_dev, sb.st_ino);
    if (n != NULL) {
        /* Another walk made it meanwhile: use that one (it has a
         * descriptor: it is brand new). */
        pt_ref_locked(pb, n);
        if (parent != NULL) {
            old = pt_link_locked(pb, n, parent, name);
        }
        pthread_mutex_unlock(&pb->nt_lock);
        pt_node_put(&pb->be, old);
        pt_node_free(nn);
        close(fd);
        *out = n;
        return 0;
    }
    (void)pt_nt_insert(pb, nn); /* not hashed on ENOMEM: a private node */
    if (parent != NULL) {
        (void)pt_link_locked(pb, nn, parent, name);
    }
    /* Pinned until adopted, so the reclaimer cannot see a half-made node. */
    nn->pins = 1;
    pthread_mutex_unlock(&pb->nt_lock);
    pt_fdcache_adopt(pb, nn);
    pt_unpin(pb, nn);
    *out = nn;
    return 0;

out_close:
    close(fd);
    return err;
}

void
pt_node_free(struct be_node *n)
{
    free(n->fh);
    free(n->name);
    free(n);
}

void
pt_node_get(struct backend *be, struct be_node *n)
{
    (void)be;
    atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
}

/*
 * Keep node n, whose last reference just went, on the idle list?  Only a
 * node that a walk can find again without an open: in the node table and
 * the child index.  Caller holds nt_lock.
 */
static bool
pt_keep_idle(struct pt_backend *pb, const struct be_node *n)
{
    return pb->idle_max > 0 && n != pb->root && n->hashed && n->chashed &&
           !n->gone;
}

/*
 * Drop a reference.  The last one keeps the node idle (pt_keep_idle) or
 * unhashes and frees the node under
 * nt_lock (so a concurrent lookup never revives a node being freed), then
 * drops the parent's reference: iteratively, since a deep chain of
 * otherwise unused directories can go at once.
 */
void
pt_node_put(struct backend *be, struct be_node *n)
{
    struct pt_backend *pb = be != NULL ? pt_be(be) : NULL;

    while (n != NULL) {
        unsigned r = atomic_load_explicit(&n->refs, memory_order_relaxed);
        struct be_node *parent;

        if (r > 1) {
            if (atomic_compare_exchange_weak_explicit(&n->refs, &r, r - 1,
                                                      memory_order_acq_rel,
                                                      memory_order_relaxed)) {
                return;
            }
            continue;
        }
        if (pb != NULL) {
            pthread_mutex_lock(&pb->nt_lock);
        }
        if (atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1) {
            if (pb != NULL) {
                pthread_mutex_unlock(&pb->nt_lock);
            }
            return;
        }
        if (pb != NULL && pt_keep_idle(pb, n)) {
            /* kept for the next walk of its name; beyond idle_max the
             * least recently used idle node goes instead */
            struct be_node *victim = NULL;

            n->idle = true;
            n->idle_next = pb->idle.idle_next;
            n->idle_prev = &pb->idle;
            pb->idle.idle_next->idle_prev = n;
            pb->idle.idle_next = n;
            pb->nidle++;
            if (pb->nidle > pb->idle_max) {
                victim = pb->idle.idle_prev;
                pt_idle_del(pb, victim);
            }
            if (victim == NULL) {
                pthread_mutex_unlock(&pb->nt_lock);
                return;
            }
            n = victim;
        }
        if (pb != NULL) {
            pt_nt_unhash(pb, n);
            pt_ct_unhash(pb, n);
        }
        parent = n->parent;
        if (pb != NULL) {
            pthread_mutex_unlock(&pb->nt_lock);
            pt_fdcache_forget(pb, n);
        } else {
            close(n->fd);
            pt_node_free(n);
        }
        n = parent;
    }
}

int
pt_root(struct backend *be, struct be_node **out, struct p9_qid *qid)
{
    struct pt_backend *pb = pt_be(be);
    struct stat st;
    int err;

    err = pt_fstat(pb->root->fd, &st);
    if (err < 0) {
        return err;
    }
    pt_node_get(be, pb->root);
    *out = pb->root;
    pt_stat_to_qid(pb, &st, qid);
    return 0;
}

/*
 * Give a just-created object the group the client asked for, when that
 * differs from what the kernel chose.  The kernel decides whether that is
 * allowed (owner and member of the group, or CAP_CHOWN); a refusal is not
 * an error for the create, the object keeps the kernel's group.  EINVAL is
 * a refusal too: the group has no id in the daemon's user namespace (an
 * unprivileged daemon's sandbox maps only its own ids, and a guest root
 * creates with gid 0).
 */
int
pt_set_gid(int fd, const struct stat *st, uint32_t gid)
{
    if (gid == (uint32_t)-1 || (gid_t)gid == st->st_gid) {
        return 0;
    }
    if (fchownat(fd, "", (uid_t)-1, (gid_t)gid,
                 AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
        int err = -errno;

        if (err == -EPERM || err == -EACCES || err == -EINVAL) {
            return 0;
        }
        return err;
    }
    return 0;
}

int
pt_backend_new(const struct pt_options *opt, struct backend **out)
{
    struct pt_backend *pb;
    struct stat st;
    int fd;
    int err;

    if (opt == NULL || opt->root == NULL || opt->root[0] == '\0') {
        return -EINVAL;
    }
    if (opt->multiuser && opt->model == PT_SM_PASSTHROUGH && geteuid() != 0) {
        log_err("passthrough: multiuser needs root");
        return -EPERM;
    }
    /* /proc/self/fd is how every reopen works; fail early without it. */
    if (access("/proc/self/fd", X_OK) < 0) {
        err = -errno;
        log_err("passthrough: /proc/self/fd not usable: %s", strerror(-err));
        return err;
    }
    /* The configured root is trusted configuration: symlinks are followed. */
    fd = open(opt->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        err = -errno;
        log_err("passthrough: cannot open %s: %s", opt->root, strerror(-err));
        return err;
    }
    pb = calloc(1, sizeof(*pb));
    if (pb == NULL) {
        close(fd);
        return -ENOMEM;
    }
    pb->be.ops = &pt_ops;
    pb->be.priv = pb;
    err = pthread_mutex_init(&pb->nt_lock, NULL);
    if (err != 0) {
        close(fd);
        free(pb);
        return -err;
    }
    err = pt_fdcache_init(pb, opt);
    if (err != 0) {
        close(fd);
        pthread_mutex_destroy(&pb->nt_lock);
        free(pb);
        return err;
    }
    pb->idle.idle_next = pb->idle.idle_prev = &pb->idle;
    /* Idle nodes keep their descriptors (reclaimable like any other),
     * so a quarter of the budget at most. */
    pb->idle_max = (size_t)(pb->fd_budget / 4);
    if (pb->idle_max > PT_IDLE_MAX) {
        pb->idle_max = PT_IDLE_MAX;
    }
    err = pt_node_new(pb, fd, NULL, NULL, &pb->root, &st);
    if (err < 0) {
        goto out_free;
    }
    err = pt_fdcache_probe(pb);
    if (err < 0) {
        goto out_put;
    }
    if (!S_ISDIR(st.st_mode)) {
        err = -ENOTDIR;
        goto out_put;
    }
    pb->readonly = opt->readonly;
    pb->multiuser = opt->multiuser;
    pb->remap_devs = opt->remap_devs;
    pb->nosuid = opt->nosuid;
    pb->nodev = opt->nodev;
    pb->model = opt->model;
    if (opt->uidmap != NULL) {
        pb->uidmap = *opt->uidmap;
    }
    if (opt->gidmap != NULL) {
        pb->gidmap = *opt->gidmap;
    }
    pb->fmode = opt->fmode != 0 ? (mode_t)(opt->fmode & 07777) : 0600;
    pb->dmode = opt->dmode != 0 ? (mode_t)(opt->dmode & 07777) : 0700;
    if (pb->model != PT_SM_PASSTHROUGH) {
        /*
         * Mapped models and "none": the daemon acts as itself on the host
         * (the files are its own); the fid's uid still picks what the
         * request may do (pt_cred.c, pt_xattr.c).
         */
        pb->multiuser = false;
    }
    pt_cred_init(pb);
    err = pt_qid_init(pb);
    if (err < 0) {
        goto out_put;
    }
    err = pt_dircache_init(pb, opt->dir_cache == 0 ? PT_DIRCACHE_DEFAULT
                                                   : opt->dir_cache);
    if (err < 0) {
        pt_qid_fini(pb);
        goto out_put;
    }
    /* exact create modes: per thread, see pt_exact_modes() */
    *out = &pb->be;
    return 0;

out_put:
    pt_node_put(&pb->be, pb->root);
out_free:
    free(pb->nt);
    free(pb->ct);
    pt_fdcache_fini(pb);
    pthread_mutex_destroy(&pb->nt_lock);
    free(pb);
    return err;
}

static void
pt_destroy(struct backend *be)
{
    struct pt_backend *pb;

    if (be == NULL) {
        return;
    }
    pb = pt_be(be);
    pt_node_idle_flush(pb);
    pt_node_put(be, pb->root);
    if (pb->nt_count != 0) {
        log_warn("passthrough: %zu node(s) still referenced at exit",
                 pb->nt_count);
    }
    pt_qid_fini(pb);
    pt_dircache_free(pb);
    free(pb->nt);
    free(pb->ct);
    pt_fdcache_fini(pb);
    pthread_mutex_destroy(&pb->nt_lock);
    free(pb);
}
