/* SPDX-License-Identifier: MIT */
/*
 * Passthrough backend: the export, node lifetime and the ops table.
 *
 * A node owns one O_PATH|O_NOFOLLOW descriptor and the (dev, ino) it had
 * when opened.  Nodes are refcounted with C11 atomics and are not deduped:
 * two walks to the same file give two nodes with the same qid.
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

static const struct be_ops pt_ops = {
    .user_get = pt_user_get,
    .user_put = pt_user_put,
    .user_enter = pt_user_enter,
    .root = pt_root,
    .walk1 = pt_walk1,
    .node_get = pt_node_get,
    .node_put = pt_node_put,
    .qid = pt_qid,
    .getattr = pt_getattr,
    .setattr = pt_setattr,
    .statfs = pt_statfs,
    .readlink = pt_readlink,
    .open = pt_open,
    .create = pt_create,
    .close = pt_close,
    .handle_limits = pt_handle_limits,
    .read = pt_read,
    .write = pt_write,
    .fsync = pt_fsync,
    .readdir = pt_readdir,
    .mkdir = pt_mkdir,
    .mknod = pt_mknod,
    .symlink = pt_symlink,
    .link = pt_link,
    .renameat = pt_renameat,
    .unlinkat = pt_unlinkat,
    .rename = pt_rename,
    .remove = pt_remove,
    .getxattr = pt_getxattr,
    .listxattr = pt_listxattr,
    .setxattr = pt_setxattr,
    .removexattr = pt_removexattr,
    .lock = pt_lock,
    .getlock = pt_getlock,
    .destroy = pt_destroy,
};

void
pt_proc_path(char buf[PT_PROC_PATH_MAX], int fd)
{
    snprintf(buf, PT_PROC_PATH_MAX, "/proc/self/fd/%d", fd);
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

/*
 * Make a node that takes ownership of the O_PATH descriptor 'fd' (closed
 * on failure too).  Fills *st when given.
 */
int
pt_node_new(int fd, struct be_node **out, struct stat *st)
{
    struct stat sb;
    struct be_node *n;
    int err;

    err = pt_fstat(fd, &sb);
    if (err < 0) {
        goto out_close;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        err = -ENOMEM;
        goto out_close;
    }
    atomic_init(&n->refs, 1);
    n->fd = fd;
    n->dev = sb.st_dev;
    n->ino = sb.st_ino;
    n->type = sb.st_mode & S_IFMT;
    if (st != NULL) {
        *st = sb;
    }
    *out = n;
    return 0;

out_close:
    close(fd);
    return err;
}

void
pt_node_get(struct backend *be, struct be_node *n)
{
    (void)be;
    atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
}

void
pt_node_put(struct backend *be, struct be_node *n)
{
    (void)be;
    if (n == NULL) {
        return;
    }
    if (atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) == 1) {
        close(n->fd);
        free(n);
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
 * an error for the create, the object keeps the kernel's group.
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

        if (err == -EPERM || err == -EACCES) {
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
    if (opt->multiuser && geteuid() != 0) {
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
    err = pt_node_new(fd, &pb->root, &st);
    if (err < 0) {
        goto out_free;
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
    pt_cred_init(pb);
    err = pt_qid_init(pb);
    if (err < 0) {
        goto out_put;
    }
    /*
     * Modes from the wire already carry the guest's umask; the server's
     * own must not be applied on top (umask is per process: this is a
     * process-wide setting, as in virtiofsd).
     */
    umask(0);
    pb->be.ops = &pt_ops;
    pb->be.priv = pb;
    *out = &pb->be;
    return 0;

out_put:
    pt_node_put(NULL, pb->root);
out_free:
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
    pt_node_put(be, pb->root);
    pt_qid_fini(pb);
    free(pb);
}
